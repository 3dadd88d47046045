"""Imputation DiD: hand-computed cases, pyfixest did2s, GLM oracle, jackknife SEs, drops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from returnstudy.models.imputation import did_imputation
from returnstudy.simulate import simulate_panel


def _tiny() -> pd.DataFrame:
    """A treated in 2002, B and C never; years 2000-2002."""
    y = {("A", 2000): 1.0, ("A", 2001): 2.0, ("A", 2002): 6.0,
         ("B", 2000): 2.0, ("B", 2001): 2.5, ("B", 2002): 3.5,
         ("C", 2000): 0.0, ("C", 2001): 1.5, ("C", 2002): 1.0}
    rows = []
    for (u, t), v in y.items():
        d = 1.0 if (u == "A" and t >= 2002) else 0.0
        rows.append({"geo": "X", "citizen": u, "corridor": f"X-{u}", "year": t, "return_rate": v, "D": d,
                     "D_cohort": 2002 if u == "A" else pd.NA})
    df = pd.DataFrame(rows)
    df["D_cohort"] = df["D_cohort"].astype("Int64")
    return df


def test_hand_computed_two_period_did() -> None:
    """Balanced untreated block: imputed A2002 = mean(A pre) + mean over B, C of (Y_2002 - mean(pre))."""
    p = _tiny()
    r = did_imputation(p, treatment="D", cluster=None)
    a_pre = 1.5
    ctrl = np.mean([3.5 - 2.25, 1.0 - 0.75])
    assert r.coef("D") == pytest.approx(6.0 - (a_pre + ctrl), abs=1e-12)
    assert r.info["n_treated_obs"] == 1


def _sim(effect: str = "heterogeneous", seed: int = 4, **kw) -> pd.DataFrame:
    args = dict(n_geo=8, n_citizen=40, zero_share=0.0, bilateral_share=0.25, effect=effect, years=(2008, 2019))
    args.update(kw)
    return simulate_panel(seed=seed, **args)


def test_matches_pyfixest_did2s_point_estimates() -> None:
    pf = pytest.importorskip("pyfixest")
    p = _sim()
    q = p.dropna(subset=["return_rate"])
    # pyfixest drops first-stage singletons and then misaligns; keep corridors with >= 2 untreated years
    n_untr = q[q["bilateral_binding"] == 0].groupby("corridor").size()
    q = q[q["corridor"].isin(n_untr[n_untr >= 2].index)].copy()
    r = did_imputation(q, "bilateral_binding")
    q["corridor"] = q["corridor"].astype(object)
    q["citizen"] = q["citizen"].astype(object)
    fit = pf.did2s(q, yname="return_rate", first_stage="~ 0 | corridor + year",
                   second_stage="~ bilateral_binding", treatment="bilateral_binding", cluster="citizen")
    # exact oracle: dummy-variable OLS on untreated rows, prediction for treated rows
    u, t = q[q["bilateral_binding"] == 0], q[q["bilateral_binding"] == 1]
    m = smf.ols("return_rate ~ C(corridor) + C(year)", data=u).fit()
    assert r.coef("bilateral_binding") == pytest.approx((t["return_rate"] - m.predict(t)).mean(), abs=1e-10)
    # pyfixest's did2s demeans to its own tolerance (about 1e-8 relative): agreement to 1e-4
    assert r.coef("bilateral_binding") == pytest.approx(float(fit.coef()["bilateral_binding"]), abs=1e-4)
    # event time: second stage on relative-period dummies
    ev = did_imputation(q, "bilateral_binding", event_time=True, horizons=[0, 1, 2, 3])
    q["rel"] = q["bilateral_binding_years_since"].astype("float64").fillna(-1000)
    for h in (0, 1, 2, 3):
        q[f"e{h}"] = ((q["rel"] == h) & (q["bilateral_binding"] == 1)).astype(float)
    q["eother"] = ((q["bilateral_binding"] == 1) & (q["rel"] > 3)).astype(float)
    fit2 = pf.did2s(q, yname="return_rate", first_stage="~ 0 | corridor + year",
                    second_stage="~ e0 + e1 + e2 + e3 + eother", treatment="bilateral_binding", cluster="citizen")
    for h in (0, 1, 2, 3):
        assert ev.table.loc[h, "estimate"] == pytest.approx(float(fit2.coef()[f"e{h}"]), abs=1e-4)
        mask = (t["bilateral_binding_years_since"] == h).to_numpy()
        assert ev.table.loc[h, "estimate"] == pytest.approx((t["return_rate"] - m.predict(t))[mask].mean(), abs=1e-10)


def test_poisson_matches_glm_dummy_fit() -> None:
    p = _sim(n_geo=4, n_citizen=12, bilateral_share=0.4, years=(2008, 2015), seed=9)
    r = did_imputation(p, "bilateral_binding", model="poisson", cluster="citizen")
    q = p[(p["orders"] > 0)].copy()
    # the estimator drops corridors whose untreated returns are all zero
    pos = q[q["bilateral_binding"] == 0].groupby("corridor")["returns"].sum()
    q = q[q["corridor"].isin(pos[pos > 0].index)]
    u = q[q["bilateral_binding"] == 0]
    glm = smf.glm("returns ~ C(corridor) + C(year)", data=u, family=sm.families.Poisson(),
                  offset=np.log(u["orders"])).fit(tol=1e-12)
    t = q[q["bilateral_binding"] == 1]
    mu0 = glm.predict(t, offset=np.log(t["orders"]))
    expect = np.log(t["returns"].sum() / mu0.sum())
    assert r.coef("bilateral_binding") == pytest.approx(expect, abs=1e-7)
    assert r.table.loc["bilateral_binding", "pct_effect"] == pytest.approx(100 * np.expm1(expect), abs=1e-5)


def test_linear_se_close_to_cluster_jackknife() -> None:
    p = _sim(effect="constant", seed=21, n_citizen=30, base_effect=0.2)
    r = did_imputation(p, "bilateral_binding")
    cits = p["citizen"].unique()
    ests = np.array([did_imputation(p[p["citizen"] != c], "bilateral_binding").coef("bilateral_binding") for c in cits])
    G = len(cits)
    jk = np.sqrt((G - 1) / G * np.sum((ests - ests.mean()) ** 2))
    se = r.table.loc["bilateral_binding", "std_error"]
    assert 0.8 < se / jk < 1.25, (se, jk)


def test_poisson_se_matches_sampling_sd() -> None:
    """Constant effect, outcomes redrawn 60 times on a fixed design: RMS(SE) ~ SD(estimates)."""
    p = _sim(effect="constant", seed=21, n_citizen=30, base_effect=0.2)
    rng = np.random.default_rng(0)
    ests, ses = [], []
    for _ in range(60):
        q = p.assign(returns=rng.poisson(p["mu0"] * np.exp(p["true_effect"])).astype(float))
        r = did_imputation(q, "bilateral_binding", model="poisson")
        ests.append(r.coef("bilateral_binding"))
        ses.append(r.table.iloc[0]["std_error"])
    ratio = np.sqrt(np.mean(np.square(ses))) / np.std(ests)
    assert 0.75 < ratio < 1.35, ratio
    assert abs(np.mean(ests) - p.attrs["true_effect"]["att_log_ratio"]) < 3 * np.std(ests) / np.sqrt(60) + 1e-3


def test_drops_corridors_without_untreated_years_and_reports() -> None:
    p = _tiny()
    # make corridor A treated in every year -> no untreated year
    p.loc[p["citizen"] == "A", "D"] = 1.0
    p.loc[p["citizen"] == "A", "D_cohort"] = 2000
    # a second copy of the design under new corridor names (A2 treated in 2002, B2 and C2 never)
    p = pd.concat([p, _tiny().assign(citizen=lambda d: d["citizen"] + "2", corridor=lambda d: d["corridor"] + "2")],
                  ignore_index=True)
    r = did_imputation(p, treatment="D", cluster=None)
    assert r.info["dropped"]["treated corridors with < 1 untreated year(s)"] == 3
    assert r.info["n_treated_obs"] == 1
    with pytest.raises(ValueError, match="binary"):
        q = _tiny()
        q.loc[2, "D"] = 0.5
        did_imputation(q, treatment="D", cluster=None)
    with pytest.raises(ValueError, match="absorbing"):
        q = _tiny()
        q.loc[1, "D"] = 1.0
        did_imputation(q, treatment="D", cluster=None)
    with pytest.raises(KeyError, match="nope"):
        did_imputation(_tiny(), treatment="nope")


def test_unbiased_under_heterogeneous_growing_effects() -> None:
    """Across seeds the Poisson imputation estimate tracks the true log ratio closely."""
    errs = []
    for seed in range(3):
        p = _sim(seed=seed, n_geo=10, n_citizen=60)
        r = did_imputation(p, "bilateral_binding", model="poisson")
        errs.append(r.coef("bilateral_binding") - p.attrs["true_effect"]["att_log_ratio"])
    assert abs(np.mean(errs)) < 0.02


def test_collinear_fixed_effects_geo_by_year() -> None:
    """corridor + geo x year effects (one redundant level per country) match dummy OLS."""
    p = _sim(n_geo=4, n_citizen=25, bilateral_share=0.3, years=(2010, 2017), seed=2)
    q = p.dropna(subset=["return_rate"])
    r = did_imputation(q, "bilateral_binding", fe=("corridor", "geo^year"), cluster=None)
    u, t = q[q["bilateral_binding"] == 0], q[q["bilateral_binding"] == 1]
    with np.errstate(all="ignore"):
        m = smf.ols("return_rate ~ C(corridor) + C(geo):C(year)", data=u).fit()
    assert r.coef("bilateral_binding") == pytest.approx((t["return_rate"] - m.predict(t)).mean(), abs=1e-9)


def test_dependent_columns_finds_redundant_levels() -> None:
    import scipy.sparse as sp

    from returnstudy.models.imputation import dependent_columns

    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(200, 6)).astype(float)
    X = np.column_stack([X, X[:, 0] + X[:, 1], X[:, 2] - X[:, 3] + X[:, 4]])
    dep = dependent_columns(sp.csc_matrix(X.T @ X))
    assert dep.sum() == 2
    assert np.linalg.matrix_rank(X[:, ~dep]) == 6


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_pretrend_leads_match_pyfixest(model: str) -> None:
    """BJS Test 1: lead coefficients and CRV1 errors equal pyfixest on the untreated rows."""
    import warnings

    pf = pytest.importorskip("pyfixest")
    p = _sim(effect="growing", seed=3, bilateral_share=0.3)
    r = did_imputation(p, "bilateral_binding", model=model, event_time=True, horizons=2, pretrends=3)
    q = p.loc[r.extra["sample_index"]]
    q = q[q["bilateral_binding"] == 0].copy()
    rel = q["bilateral_binding_years_since"].astype("float64")
    for k in (1, 2, 3):
        q[f"l{k}"] = (rel == -k).astype(float)
    q["lo"] = np.log(q["orders"])
    q["corridor"], q["citizen"] = q["corridor"].astype(object), q["citizen"].astype(object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model == "linear":
            m = pf.feols("return_rate ~ l3 + l2 + l1 | corridor + year", data=q, vcov={"CRV1": "citizen"},
                         fixef_tol=1e-14)
        else:
            m = pf.fepois("returns ~ l3 + l2 + l1 | corridor + year", data=q, offset="lo", vcov={"CRV1": "citizen"},
                          iwls_tol=1e-12, fixef_tol=1e-12)
    for k in (1, 2, 3):
        assert r.table.loc[-k, "estimate"] == pytest.approx(m.coef()[f"l{k}"], abs=1e-6)
        assert r.table.loc[-k, "std_error"] == pytest.approx(m.se()[f"l{k}"], rel=1e-4)
    assert "leads [-3, -2, -1]" in str(r.info["pretrend_test"])
    assert list(r.table.index) == [-3, -2, -1, 0, 1, 2]


def _true_2x2() -> pd.DataFrame:
    """Two corridors x two years, X-A treated in 2001 (rates = return_rate, counts = returns)."""
    return pd.DataFrame(
        {"geo": "X", "citizen": ["A", "A", "B", "B"], "corridor": ["X-A", "X-A", "X-B", "X-B"],
         "year": [2000, 2001, 2000, 2001], "orders": [100.0, 120.0, 80.0, 90.0], "returns": [20.0, 45.0, 16.0, 21.0],
         "D": [0.0, 1.0, 0.0, 0.0], "D_cohort": pd.array([2001, 2001, None, None], dtype="Int64")}
    ).assign(return_rate=lambda d: d["returns"] / d["orders"])


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_true_two_by_two_point_estimate_with_nan_variance(model: str) -> None:
    p = _true_2x2()
    r = did_imputation(p, treatment="D", model=model)
    if model == "linear":
        did = (45 / 120 - 20 / 100) - (21 / 90 - 16 / 80)
    else:  # log(Y / mu0) with mu0 = orders * rate_A2000 * rate_B2001 / rate_B2000
        did = np.log(45 / 120) - np.log(20 / 100) - (np.log(21 / 90) - np.log(16 / 80))
    assert r.coef("D") == pytest.approx(did, rel=1e-9)
    # 3 untreated rows, 3 fixed-effect parameters: no residual degrees of freedom (was SE ~ 1e-17)
    assert np.isnan(r.table.loc["D", ["std_error", "ci_low", "ci_high", "p_value"]].to_numpy(dtype=float)).all()
    assert any("no residual degrees of freedom (3 observations, 3 parameters)" in n for n in r.info["notes"])
    # one cluster: not identified either, even with residual degrees of freedom
    q = pd.concat([p, p.assign(corridor=p["corridor"] + "2", D=0.0, D_cohort=pd.NA, returns=p["returns"] + 3)],
                  ignore_index=True).assign(geo="X", return_rate=lambda d: d["returns"] / d["orders"])
    r1 = did_imputation(q, treatment="D", model=model, cluster="geo")
    assert np.isnan(r1.table.loc["D", "std_error"]) and any("too few clusters ([1]" in n for n in r1.info["notes"])
    r2 = did_imputation(q, treatment="D", model=model, cluster="corridor")
    assert np.isfinite(r2.table.loc["D", "std_error"]) and r2.table.loc["D", "std_error"] > 0


def test_duplicated_corridor_years_raise() -> None:
    p = pd.concat([_tiny(), _tiny().iloc[[4]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"1 duplicated \(corridor, year\) key\(s\) in 2 rows; first: corridor='X-B', "
                                         r"year=2001 \(rows \[4, 9\]\)"):
        did_imputation(p, treatment="D", cluster=None)


# ----------------------------------------------------------------- rank of the fixed effects
def _dummy_blocks(codes: list[np.ndarray], fit: np.ndarray) -> np.ndarray:
    """Dense ``[D_1, D_2 without its first level, ...]`` over the levels present in ``fit`` rows
    (the design SparseFE builds before removing redundant levels), on the fit rows."""
    blocks = []
    for d, c in enumerate(codes):
        present = np.unique(c[fit])
        D = (c[fit][:, None] == present[None, :]).astype(float)
        blocks.append(D[:, 1:] if d > 0 else D)
    return np.column_stack(blocks)


def _collinear_panels() -> dict[str, tuple[list[np.ndarray], np.ndarray, int]]:
    """Fixed-effect designs with a known number of redundant levels: (codes, fit rows, redundant)."""
    rng = np.random.default_rng(11)
    out: dict[str, tuple[list[np.ndarray], np.ndarray, int]] = {}
    # three blocks of corridors x years that share no row: two extra components
    u = np.r_[np.repeat(np.arange(10), 5), np.repeat(np.arange(10, 20), 5), np.repeat([20, 21, 22], 2)]
    t = np.r_[np.tile(np.arange(5), 10), np.tile(np.arange(5, 10), 10), np.tile([10, 11], 3)]
    out["disconnected"] = ([u, t], np.ones(u.size, dtype=bool), 2)
    # year codes with a gap (year 2 never occurs) and a year (6) seen only on treated rows;
    # one corridor observed only in year 6 is then unpredictable, the rest is connected
    uu, tt = np.meshgrid(np.arange(12), np.array([0, 1, 3, 4, 5, 6]), indexing="ij")
    uu, tt = uu.ravel(), tt.ravel()
    keep = rng.random(uu.size) < 0.8
    keep[tt == 0] = True
    uu, tt = uu[keep], tt[keep]
    out["absent year"] = ([uu, tt], tt != 6, 0)
    # the same fixed effect twice: every level of the copy is redundant but its reference
    g = rng.integers(0, 7, 60)
    g[:7] = np.arange(7)
    out["duplicated"] = ([g, g], np.ones(g.size, dtype=bool), 6)
    # corridor, year and geo x year, corridors nested in 4 geos, unbalanced:
    # geo x year absorbs the year effects (year: all levels but the reference redundant,
    # 7 of 8) and one geo x year level per geo but the first is redundant with the corridors (3)
    cu, cy = np.meshgrid(np.arange(40), np.arange(8), indexing="ij")
    cu, cy = cu.ravel(), cy.ravel()
    m = rng.random(cu.size) < 0.75
    m[cy == 0] = True
    cu, cy = cu[m], cy[m]
    geo = cu % 4
    out["three-way"] = ([cu, cy, geo * 8 + cy], np.ones(cu.size, dtype=bool), 7 + 3)
    # two-way corridor + geo x year (the shipped spec's alternative): one redundant level per geo but one
    out["geo x year"] = ([cu, geo * 8 + cy], np.ones(cu.size, dtype=bool), 3)
    return out


@pytest.mark.parametrize("case", ["disconnected", "absent year", "duplicated", "three-way", "geo x year"])
def test_redundant_fixed_effect_levels_match_dense_rank_and_old_ordering(case: str) -> None:
    """SparseFE drops exactly the rank deficiency of the dummy design (dense SVD rank), keeps a
    full-rank basis of the same column space, and flags as many levels as the previous
    MMD-ordered LU (the levels flagged within a dependent set may differ; the fit does not)."""
    import scipy.sparse as sp

    from returnstudy.models.imputation import SparseFE, dependent_columns

    codes, fit, redundant = _collinear_panels()[case]
    full = _dummy_blocks(codes, fit)
    rank = np.linalg.matrix_rank(full)
    assert full.shape[1] - rank == redundant  # the construction is what the test says
    fe = SparseFE(codes, fit)  # raw codes: gaps (a year that never occurs) are allowed
    assert fe.n_redundant == redundant
    assert fe.p == rank
    Zf = fe.Z[np.flatnonzero(fit)].toarray()
    assert np.linalg.matrix_rank(Zf) == rank  # kept columns independent ...
    assert np.linalg.matrix_rank(np.column_stack([Zf, full])) == rank  # ... spanning every dummy
    G = sp.csc_matrix(full.T @ full)
    for ordering in ("MMD_AT_PLUS_A", "COLAMD"):
        dep = dependent_columns(G, ordering=ordering)
        assert dep.sum() == redundant, ordering
        assert np.linalg.matrix_rank(full[:, ~dep]) == rank, ordering


def test_two_way_dependent_columns_flags_first_year_of_each_extra_component() -> None:
    """Corridors {0,1} x years {0,1} and corridors {2,3} x years {2,3}: columns are 4 corridors and
    years 1..3 (year 0 is the reference); the second block's first year (2, column 5) is redundant."""
    from returnstudy.models.imputation import two_way_dependent_columns

    a = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    b = np.array([0, 1, 0, 1, 2, 3, 2, 3])
    dep = two_way_dependent_columns(a, b, 4, 4)
    assert dep.tolist() == [False, False, False, False, False, True, False]
    # connected panel: nothing redundant
    assert not two_way_dependent_columns(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 2).any()


def test_imputation_on_disconnected_blocks_equals_dummy_ols() -> None:
    """Two groups of corridors observed in disjoint years (a redundant level the rank check must
    find): the imputed effect equals the dummy regression on the untreated rows."""
    p = _sim(n_geo=4, n_citizen=20, bilateral_share=0.3, years=(2010, 2017), seed=5)
    q = p.dropna(subset=["return_rate"])
    early = q["corridor"].astype(str).str.len() % 2 == 0  # an arbitrary split of corridors
    q = q[(early & (q["year"] <= 2013)) | (~early & (q["year"] >= 2014))]
    r = did_imputation(q, "bilateral_binding", cluster=None)
    u, t = q[q["bilateral_binding"] == 0], q[q["bilateral_binding"] == 1]
    t = t.loc[r.extra["sample_index"].intersection(t.index)]
    with np.errstate(all="ignore"):
        m = smf.ols("return_rate ~ C(corridor) + C(year)", data=u).fit()
    assert r.coef("bilateral_binding") == pytest.approx((t["return_rate"] - m.predict(t)).mean(), abs=1e-9)


# ----------------------------------------------------------------- any panel: mpdta
def _mpdta() -> pd.DataFrame:
    moderndid = pytest.importorskip("moderndid")
    d = moderndid.load_mpdta()
    return d.to_pandas() if hasattr(d, "to_pandas") else pd.DataFrame(d)


def test_mpdta_with_its_own_column_names_equals_dummy_ols_and_did2s() -> None:
    """County panel (countyreal, year, first.treat with 0 = never treated, lemp): the imputed ATT
    and event-time effects equal the dummy regression on untreated county-years (statsmodels)
    and pyfixest's did2s; nothing assumes corridor/citizen/year-style columns."""
    d = _mpdta()
    kw = dict(outcome="lemp", unit="countyreal", time="year", cohort="first.treat", cluster="countyreal")
    r = did_imputation(d, **kw)
    g = d["first.treat"].to_numpy()
    D = (g > 0) & (d["year"].to_numpy() >= g)
    u, t = d[~D], d[D]
    with np.errstate(all="ignore"):
        m = smf.ols("lemp ~ C(countyreal) + C(year)", data=u).fit()
    tau = t["lemp"] - m.predict(t)
    assert r.coef("treated") == pytest.approx(tau.mean(), abs=1e-10)
    assert r.info["n_treated_obs"] == int(D.sum()) == 291
    ev = did_imputation(d, event_time=True, **kw)
    rel = (t["year"] - t["first.treat"]).to_numpy()
    for h in range(4):
        assert ev.table.loc[h, "estimate"] == pytest.approx(tau[rel == h].mean(), abs=1e-10)
    # an existing 0/1 column named as the treatment is checked against the cohort and used
    q = d.assign(D=D.astype(float))
    r2 = did_imputation(q, treatment="D", **kw)
    assert r2.coef("D") == pytest.approx(r.coef("treated"), abs=1e-14)
    pf = pytest.importorskip("pyfixest")
    import warnings

    # pyfixest's did2s drops first-stage singletons and then misaligns its arrays: leave out the
    # 2004 cohort (one untreated year, 2003) for this comparison
    q = q[q["first.treat"] != 2004].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = pf.did2s(q, yname="lemp", first_stage="~ 0 | countyreal + year", second_stage="~ D", treatment="D",
                       cluster="countyreal")
    assert did_imputation(q, **kw).coef("treated") == pytest.approx(float(fit.coef()["D"]), abs=1e-6)


def test_named_columns_that_do_not_exist_are_listed() -> None:
    d = _mpdta()
    with pytest.raises(KeyError, match=r"cluster='citizen'.*columns are: \['year', 'countyreal'"):
        did_imputation(d, outcome="lemp", unit="countyreal", cohort="first.treat")  # default cluster
    with pytest.raises(KeyError, match=r"unit='county'.*columns are"):
        did_imputation(d, outcome="lemp", unit="county", cohort="first.treat", cluster="countyreal")
    with pytest.raises(KeyError, match=r"cohort='first_treat'.*columns are"):
        did_imputation(d, outcome="lemp", unit="countyreal", cohort="first_treat", cluster="countyreal")
    bad = d.copy()
    bad.loc[bad.index[0], "first.treat"] = 2004  # county 8001 is a 2007 adopter in its other rows
    with pytest.raises(ValueError, match=r"varies within countyreal=8001"):
        did_imputation(bad, outcome="lemp", unit="countyreal", cohort="first.treat", cluster="countyreal")
    # 'treat' is mpdta's ever-treated group dummy, not the absorbing D_it: refused with the row
    with pytest.raises(ValueError, match="not an absorbing treatment consistent with its adoption year"):
        did_imputation(d, treatment="treat", outcome="lemp", unit="countyreal", cohort="first.treat",
                       cluster="countyreal")
