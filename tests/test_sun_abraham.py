"""Sun-Abraham: cohort x period coefficients and aggregates against pyfixest and the dense PPML path."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from returnstudy.models._fe import fit_ppml
from returnstudy.models.sun_abraham import sun_abraham
from returnstudy.models.twfe import twfe
from returnstudy.simulate import simulate_panel


def _balanced(seed: int = 3, effect: str = "heterogeneous") -> pd.DataFrame:
    p = simulate_panel(seed=seed, n_geo=6, n_citizen=40, zero_share=0.0, bilateral_share=0.3, effect=effect,
                       years=(2008, 2017))
    complete = p.groupby("corridor")["return_rate"].transform(lambda s: s.notna().all())
    return p[complete].reset_index(drop=True)


def _pf_frame(p: pd.DataFrame) -> pd.DataFrame:
    q = p.copy()
    q["g"] = q["bilateral_binding_cohort"].astype("float64").fillna(0).astype(int)
    q["rel"] = np.where(q["g"] > 0, q["year"] - q["g"], -1).astype(int)
    for c in ("corridor", "citizen"):
        q[c] = q[c].astype(object)
    return q


def test_cohort_effects_and_aggregates_match_pyfixest_saturated() -> None:
    pf = pytest.importorskip("pyfixest")
    p = _balanced()
    r = sun_abraham(p, "bilateral_binding")
    q = _pf_frame(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pf.feols("return_rate ~ i(rel, g, ref=-1, ref2=0) | corridor + year", data=q,
                     vcov={"CRV1": "citizen"}, fixef_tol=1e-14)
    coef, se = m.coef(), m.se()
    cells = r.extra["cohort_effects"]
    assert len(coef) == len(cells)
    for (g, k), row in cells.iterrows():
        name = f"rel::{k}:g::{g}"
        assert row["estimate"] == pytest.approx(coef[name], abs=1e-6)
        assert row["std_error"] == pytest.approx(se[name], rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = pf.event_study(q, yname="return_rate", idname="corridor", tname="year", gname="g",
                            estimator="saturated", cluster="citizen")
        agg = es.aggregate(agg="period")
    for k, row in agg.iterrows():
        k = int(float(k))
        if k in r.table.index:
            assert r.table.loc[k, "estimate"] == pytest.approx(float(row["Estimate"]), abs=1e-6)
            assert r.table.loc[k, "std_error"] == pytest.approx(float(row["Std. Error"]), rel=1e-4)


def test_hand_two_cohorts_constant_effect_no_noise() -> None:
    """Deterministic outcome a_i + b_t + 0.3 * D: every cell effect is exactly 0.3, pre-periods 0."""
    p = _balanced(seed=5)
    a = pd.factorize(p["corridor"])[0] * 0.01
    b = (p["year"] - 2008) * 0.05
    p = p.assign(return_rate=a + b + 0.3 * p["bilateral_binding"])
    r = sun_abraham(p, "bilateral_binding", cluster=None)
    post = r.table[r.table.index >= 0]
    pre = r.table[r.table.index < 0]
    np.testing.assert_allclose(post["estimate"], 0.3, atol=1e-10)
    np.testing.assert_allclose(pre["estimate"], 0.0, atol=1e-10)
    att = sun_abraham(p, "bilateral_binding", event_time=False, cluster=None)
    assert att.coef("bilateral_binding") == pytest.approx(0.3, abs=1e-10)


def test_poisson_matches_dense_ppml_and_pyfixest() -> None:
    p = simulate_panel(seed=8, n_geo=5, n_citizen=30, zero_share=0.0, bilateral_share=0.3, years=(2010, 2017),
                       effect="growing", base_effect=0.2)
    r = sun_abraham(p, "bilateral_binding", model="poisson")
    cells = r.extra["cohort_effects"]
    # dense within-transformation path of the fixed-effects module on the same sample
    q = p[p["orders"] > 0].copy()
    q = q[q.groupby("corridor")["returns"].transform("sum") > 0]
    c = q["bilateral_binding_cohort"].astype("float64").to_numpy()
    rel = q["year"].to_numpy() - c
    X = np.column_stack([((c == g) & (rel == k)).astype(float) for g, k in cells.index])
    keep = X.sum(axis=1) >= 0
    fit = fit_ppml(q["returns"].to_numpy(), X[keep], [pd.factorize(q["corridor"])[0], pd.factorize(q["year"])[0]],
                   offset=np.log(q["orders"].to_numpy()), separation=("fe",), tol=1e-14)
    if r.info["dropped"].get("cohort x period cells with all-zero outcomes (separated)"):
        pytest.skip("separated cells in this draw")
    np.testing.assert_allclose(cells["estimate"].to_numpy(), fit.beta, atol=1e-6)
    pf = pytest.importorskip("pyfixest")
    qq = _pf_frame(q)
    qq["log_orders"] = np.log(qq["orders"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pf.fepois("returns ~ i(rel, g, ref=-1, ref2=0) | corridor + year", data=qq, offset="log_orders",
                      vcov={"CRV1": "citizen"}, iwls_tol=1e-12, fixef_tol=1e-12)
    for (g, k), row in cells.iterrows():
        name = f"rel::{k}:g::{g}"
        assert row["estimate"] == pytest.approx(m.coef()[name], abs=1e-6)
        assert row["std_error"] == pytest.approx(m.se()[name], rel=1e-3)


def test_robust_to_heterogeneous_growing_effects_where_twfe_is_not() -> None:
    """Early cohorts with growing effects: TWFE is badly biased, Sun-Abraham is not."""
    bias_sa, bias_twfe = [], []
    for seed in range(3):
        p = simulate_panel(seed=seed, n_geo=10, n_citizen=60, zero_share=0.0, bilateral_share=0.5,
                           effect="heterogeneous", base_effect=0.3)
        truth = p.attrs["true_effect"]["att_log_mean"]
        sa = sun_abraham(p, "bilateral_binding", model="poisson", event_time=False)
        bias_sa.append(sa.coef("bilateral_binding") - truth)
        q = p[(p["returns"] > 0) & (p["orders"] > 0)].assign(lrate=lambda d: np.log(d["returns"] / d["orders"]))
        tw = twfe(q, outcome="lrate", treatments="bilateral_binding")
        bias_twfe.append(tw.coef("bilateral_binding") - truth)
    assert abs(np.mean(bias_sa)) < 0.05
    assert abs(np.mean(bias_twfe)) > 0.2
    assert abs(np.mean(bias_twfe)) > 4 * abs(np.mean(bias_sa))


def test_bad_input() -> None:
    p = _balanced()
    with pytest.raises(ValueError, match="control"):
        sun_abraham(p, "bilateral_binding", control="everyone")
    q = p.assign(bilateral_binding_cohort=p["bilateral_binding_cohort"].fillna(2016),
                 bilateral_binding=lambda d: (d["year"] >= d["bilateral_binding_cohort"]).astype(float))
    with pytest.raises(ValueError, match="never treated"):
        sun_abraham(q, "bilateral_binding", control="never")
    r = sun_abraham(q, "bilateral_binding", control="last")
    assert r.info["control_group"].startswith("last-treated cohort (2016)")
    assert r.table.index.max() < 2016 - 2010


def test_poisson_drops_separated_cohort() -> None:
    """A cohort whose reference-year returns are all zero is separated: dropped and reported."""
    p = simulate_panel(seed=8, n_geo=5, n_citizen=30, zero_share=0.0, bilateral_share=0.3, years=(2010, 2017),
                       base_effect=0.2)
    coh = p["bilateral_binding_cohort"].astype("float64")
    g = int(coh.dropna().min())
    ref = (coh == g) & (p["year"] == g - 1)
    p.loc[ref, "returns"] = 0.0
    r = sun_abraham(p, "bilateral_binding", model="poisson")
    key = "cohorts with all-zero outcomes in the reference period (-1; separated)"
    n_rows = int(((coh == g) & (p["orders"] > 0)).sum())
    assert 0 < r.info["dropped"][key] <= n_rows
    assert g not in r.extra["cohort_effects"].index.get_level_values("cohort")
    assert np.all(np.abs(r.table["estimate"]) < 5)


def test_true_two_by_two_point_estimate_with_nan_variance() -> None:
    p = pd.DataFrame(
        {"geo": "X", "citizen": ["A", "A", "B", "B"], "corridor": ["X-A", "X-A", "X-B", "X-B"],
         "year": [2000, 2001, 2000, 2001], "y": [0.2, 0.375, 0.2, 0.25],
         "D": [0.0, 1.0, 0.0, 0.0], "D_cohort": pd.array([2001, 2001, None, None], dtype="Int64")}
    )
    r = sun_abraham(p, "D", outcome="y")
    assert r.table.loc[0, "estimate"] == pytest.approx((0.375 - 0.2) - (0.25 - 0.2), rel=1e-9)
    assert np.isnan(r.table.loc[0, ["std_error", "ci_low", "ci_high", "p_value"]].to_numpy(dtype=float)).all()
    assert any("no residual degrees of freedom (4 observations, 4 parameters)" in n for n in r.info["notes"])


def test_duplicated_corridor_years_raise() -> None:
    p = _balanced()
    dup = pd.concat([p, p.iloc[[10]]], ignore_index=True)
    c, y = p["corridor"].iloc[10], int(p["year"].iloc[10])
    with pytest.raises(ValueError, match=rf"1 duplicated \(corridor, year\) key\(s\) in 2 rows; first: corridor='{c}', year={y}"):
        sun_abraham(dup, "bilateral_binding")


def test_pretrend_test_is_a_wald_test_on_the_leads() -> None:
    from scipy import stats

    from returnstudy.results import WaldTest
    from returnstudy.simulate import simulate_panel

    panel = simulate_panel(seed=2)
    res = sun_abraham(panel, treatment="bilateral_binding", model="poisson", event_time=True)
    test = res.info["pretrend_test"]
    assert isinstance(test, WaldTest)
    leads = [k for k in res.params.index if k < 0]
    b = res.params[leads].to_numpy()
    V = res.vcov.loc[leads, leads].to_numpy()
    chi2 = float(b @ np.linalg.solve(V, b))
    assert test.statistic == pytest.approx(chi2, rel=1e-8)
    assert test.p_value == pytest.approx(stats.chi2.sf(chi2, len(leads)), rel=1e-6)


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_meat_without_score_matrix_equals_the_dense_scores(model: str) -> None:
    """The cluster sums S' diag(r) W H^-1 E_k (and the unclustered A' W' diag(r^2) W A) equal
    the meat built from the rows x cells score matrix, and the sandwich equals vcov_details on
    those dense scores for every small-sample rule and when the variance is not identified."""
    import scipy.sparse as sp

    from returnstudy.inference.cluster import meat_clustered, vcov_details
    from returnstudy.models.imputation import SparseFE, sparse_fit
    from returnstudy.models.sun_abraham import _sandwich_from_meat

    p = _balanced(seed=5)
    q = _pf_frame(p)
    y = q["returns"].to_numpy(float) if model == "poisson" else q["return_rate"].to_numpy(float)
    cells = pd.factorize(np.where(q["g"] > 0, q["g"] * 100 + q["rel"] + 50, -1))[0]
    ref = (q["g"] == 0) | (q["rel"] == -1)
    keys = np.unique(cells[~ref])
    rows = np.flatnonzero(~ref)
    X = sp.csr_matrix((np.ones(rows.size), (rows, np.searchsorted(keys, cells[rows]))), shape=(y.size, keys.size))
    fe = SparseFE([pd.factorize(q["corridor"])[0], pd.factorize(q["year"])[0]], np.ones(y.size, dtype=bool))
    off = np.log(q["orders"].to_numpy(float)) if model == "poisson" else None
    fit = sparse_fit(y, X, fe.Z, model=model, offset=off)
    scores = fit.coef_scores()
    cl = pd.factorize(q["citizen"])[0]
    scale = np.max(np.abs(scores.T @ scores))
    np.testing.assert_allclose(fit.coef_score_meat(cl), meat_clustered(scores, cl), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(fit.coef_score_meat(None), scores.T @ scores, rtol=0, atol=1e-12 * scale)
    # the cluster sums eliminate the corridor block exactly (Schur complement) and equal the
    # sums through the sparse factor
    assert fit._diagonal_block() == q["corridor"].nunique()
    M = (sp.csr_matrix((fit.resid, (cl, np.arange(cl.size)))) @ fit.W).tocsc()
    C = fit._cluster_sums_by_schur(M)
    C_lu = np.asarray(M @ fit._coef_rows())
    np.testing.assert_allclose(C, C_lu, rtol=0, atol=1e-12 * np.abs(C_lu).max())
    n, k = scores.shape
    df_k, df_resid = k + 50, n - k - fe.p
    for ssc in ("fixest-default", "conventional", "none", {"k_adj": False, "G_adj": True}):
        for clusters in ([cl], []):
            vt = "cluster" if clusters else "hetero"
            V0, d0 = vcov_details(scores, None, clusters, np.eye(k), ssc, vcov_type=vt, df_k=df_k,
                                  df_resid=df_resid, on_unidentified="nan")
            meat = fit.coef_score_meat(cl if clusters else None)
            V1, d1 = _sandwich_from_meat(meat, n, df_k, df_resid, int(cl.max()) + 1 if clusters else None, ssc)
            np.testing.assert_allclose(V1, V0, rtol=1e-10, atol=1e-14 * np.max(np.abs(V0)))
            assert (d1.vcov_type, d1.df_t, d1.n_clusters, d1.small_sample) == (
                d0.vcov_type, d0.df_t, d0.n_clusters, d0.small_sample)
            np.testing.assert_allclose(d1.factors, d0.factors, rtol=1e-15)
    # one cluster: not identified, NaN with the same note
    one = np.zeros(n, dtype=int)
    V0, d0 = vcov_details(scores, None, [one], np.eye(k), "fixest-default", df_k=df_k, df_resid=df_resid,
                          on_unidentified="nan")
    V1, d1 = _sandwich_from_meat(fit.coef_score_meat(one), n, df_k, df_resid, 1, "fixest-default")
    assert np.isnan(V1).all() and np.isnan(V0).all()
    assert (d1.identified, d1.note, d1.df_t) == (d0.identified, d0.note, d0.df_t)


def test_mpdta_with_its_own_column_names_matches_pyfixest_saturated() -> None:
    """County panel (countyreal, year, first.treat with 0 = never treated, lemp): cohort x period
    cells and CRV1 errors (clustered by county) equal pyfixest's saturated regression."""
    moderndid = pytest.importorskip("moderndid")
    pf = pytest.importorskip("pyfixest")
    d = moderndid.load_mpdta()
    d = d.to_pandas() if hasattr(d, "to_pandas") else pd.DataFrame(d)
    r = sun_abraham(d, outcome="lemp", unit="countyreal", time="year", cohort="first.treat", cluster="countyreal")
    q = d.assign(g=d["first.treat"], rel=np.where(d["first.treat"] > 0, d["year"] - d["first.treat"], -1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pf.feols("lemp ~ i(rel, g, ref=-1, ref2=0) | countyreal + year", data=q, vcov={"CRV1": "countyreal"})
    coef, se = m.coef(), m.se()
    cells = r.extra["cohort_effects"]
    assert len(cells) == len(coef) == 12
    for (g, k), row in cells.iterrows():
        assert row["estimate"] == pytest.approx(coef[f"rel::{k}:g::{g}"], abs=1e-8)
        assert row["std_error"] == pytest.approx(se[f"rel::{k}:g::{g}"], rel=1e-6)
    assert r.info["n_clusters"] == 500
