"""Wild cluster bootstrap: fast algebra equals brute-force re-estimation draw by draw."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from returnstudy.inference.bootstrap import bootstrap_weights, wild_bootstrap
from returnstudy.inference.cluster import cluster_vcov
from returnstudy.models._fe import fit_wls
from returnstudy.models.imputation import did_imputation
from returnstudy.models.twfe import twfe
from returnstudy.simulate import simulate_panel


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    p = simulate_panel(seed=12, n_geo=5, n_citizen=16, zero_share=0.0, bilateral_share=0.3, eu_share=0.3,
                       years=(2010, 2018), base_effect=0.2)
    return p.dropna(subset=["return_rate"]).reset_index(drop=True)


def _brute_twfe(res, term: str, null: bool, W: np.ndarray) -> np.ndarray:
    d, fit = res.extra["design"], res.extra["fit"]
    names = list(res.params.index)
    j = names.index(term)
    codes = pd.factorize(d.clusters[0])[0]
    X = d.X
    if null:
        r = fit_wls(d.y, np.delete(X, j, axis=1), d.fe)
        u = r.resid
    else:
        u = fit.resid
    fitted = d.y - u
    centre = 0.0 if null else float(res.params[term])
    out = []
    for b in range(W.shape[1]):
        ys = fitted + u * W[codes, b]
        f = fit_wls(ys, X, d.fe)
        V = cluster_vcov(f.scores, None, [codes], f.bread, df_k=res.info["df_k"])
        out.append((f.beta[j] - centre) / np.sqrt(V[j, j]))
    return np.array(out)


@pytest.mark.parametrize("impose_null", [True, False])
def test_twfe_fast_equals_brute_force(panel: pd.DataFrame, impose_null: bool) -> None:
    res = twfe(panel, outcome="return_rate", treatments=["bilateral_binding", "eu_agreement"], cluster="citizen")
    reps = 60
    b = wild_bootstrap(res, reps=reps, seed=5, impose_null=impose_null, ci=False)
    G = len(np.unique(res.extra["design"].clusters[0]))
    W = bootstrap_weights(np.random.default_rng(5), G, reps)
    for term in ("bilateral_binding", "eu_agreement"):
        brute = _brute_twfe(res, term, impose_null, W)
        np.testing.assert_allclose(b.extra["bootstrap_draws"][term], brute, rtol=1e-7, atol=1e-9)
        t0 = res.table.loc[term, "estimate"] / res.table.loc[term, "std_error"]
        assert b.table.loc[term, "boot_p_value"] == pytest.approx(np.mean(np.abs(brute) >= abs(t0) - 1e-12))


def test_imputation_fast_equals_brute_force(panel: pd.DataFrame) -> None:
    res = did_imputation(panel, "bilateral_binding")
    reps = 30
    b = wild_bootstrap(res, reps=reps, seed=2, ci=False)
    cl = pd.factorize(panel.loc[res.extra["sample_index"], "citizen"])[0]
    W = bootstrap_weights(np.random.default_rng(2), cl.max() + 1, reps)
    q = panel.loc[res.extra["sample_index"]].copy()
    # restricted model under tau = 0: corridor + year effects on every row
    ols = smf.ols("return_rate ~ C(corridor) + C(year)", data=q).fit()
    fitted, u = ols.fittedvalues.to_numpy(), ols.resid.to_numpy()
    brute = []
    for r in range(reps):
        qs = q.assign(return_rate=fitted + u * W[cl, r])
        brute.append(did_imputation(qs, "bilateral_binding").coef("bilateral_binding"))
    np.testing.assert_allclose(b.extra["bootstrap_draws"]["bilateral_binding"], brute, atol=1e-9)


def test_confidence_interval_is_test_inversion(panel: pd.DataFrame) -> None:
    res = twfe(panel, outcome="return_rate", treatments=["bilateral_binding"], cluster="citizen")
    b = wild_bootstrap(res, reps=199, seed=1)
    lo, hi = b.table.loc["bilateral_binding", ["boot_ci_low", "boot_ci_high"]]
    est = res.coef("bilateral_binding")
    assert lo < est < hi
    # p-value just inside the interval > alpha, just outside <= alpha
    width = hi - lo
    p_in = wild_bootstrap(res, reps=199, seed=1, null=lo + 0.02 * width, ci=False).table["boot_p_value"].iloc[0]
    p_out = wild_bootstrap(res, reps=199, seed=1, null=lo - 0.02 * width, ci=False).table["boot_p_value"].iloc[0]
    assert p_in > 0.05 >= p_out
    # close to the analytical interval in a well-behaved design
    wald = res.table.loc["bilateral_binding", ["ci_low", "ci_high"]].to_numpy()
    assert abs((hi - lo) / (wald[1] - wald[0]) - 1) < 0.35


def _boot_rejections(effect: float, n_panels: int, seed0: int) -> np.ndarray:
    """Rejections at 5% of the WCR bootstrap (Webb weights, 99 draws) on simulated panels, 20 clusters each."""
    out = []
    for r in range(n_panels):
        p = simulate_panel(seed=seed0 + r, n_geo=4, n_citizen=20, zero_share=0.0, years=(2010, 2016),
                           bilateral_share=0.3, base_effect=effect)
        p = p.dropna(subset=["return_rate"])
        res = twfe(p, outcome="return_rate", treatments=["bilateral_binding"], cluster="citizen")
        b = wild_bootstrap(res, reps=99, seed=r, ci=False, weights="webb")
        out.append(b.table["boot_p_value"].iloc[0] <= 0.05)
    return np.array(out)


def test_rejection_rate_near_nominal_under_null_and_high_power_under_alternative() -> None:
    """Size: no effect, 300 panels; the rejection rate must lie in a binomial band around 5%.

    With 300 draws the standard error of a 5% rate is 1.3 points; [2%, 10%] is about -2.4/+3.9 s.e. and
    excludes both a bootstrap that never rejects and one that over-rejects like an unclustered test.
    """
    null = _boot_rejections(0.0, 300, seed0=100)
    assert 0.02 <= null.mean() <= 0.10, null.mean()
    # power: a clear effect (log effect 0.5 on returns) is rejected in most of 30 panels
    alt = _boot_rejections(0.5, 30, seed0=100)
    assert alt.mean() >= 0.8, alt.mean()


def test_bad_input(panel: pd.DataFrame) -> None:
    from returnstudy.models.sun_abraham import sun_abraham

    res = sun_abraham(panel, "bilateral_binding", model="poisson")  # Poisson without a score bootstrap
    with pytest.raises(TypeError, match="not a linear"):
        wild_bootstrap(res, reps=19)
    lin = twfe(panel, outcome="return_rate", treatments=["bilateral_binding"])
    with pytest.raises(ValueError, match="weights="):
        wild_bootstrap(lin, reps=19, weights="normal")
    with pytest.raises(KeyError, match="nope"):
        wild_bootstrap(lin, reps=19, terms=["nope"])


@pytest.mark.skipif(importlib.util.find_spec("wildboottest") is None, reason="wildboottest not installed")
def test_against_pyfixest_wildboottest(panel: pd.DataFrame) -> None:  # pragma: no cover - optional oracle
    import pyfixest as pf

    # integer cluster codes: wildboottest's compiled kernels reject object arrays
    q = panel.assign(corridor=panel["corridor"].astype(object), citizen_id=pd.factorize(panel["citizen"])[0])
    m = pf.feols("return_rate ~ bilateral_binding | corridor + year", data=q, vcov={"CRV1": "citizen_id"})
    ref = m.wildboottest(param="bilateral_binding", reps=9999, seed=1)
    res = twfe(panel, outcome="return_rate", treatments=["bilateral_binding"], cluster="citizen")
    ours = wild_bootstrap(res, reps=9999, seed=1, ci=False).table["boot_p_value"].iloc[0]
    assert abs(float(ref["Pr(>|t|)"]) - ours) < 0.02


def test_chunking_does_not_change_draws(panel: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    import returnstudy.inference.bootstrap as bs

    res = twfe(panel, outcome="return_rate", treatments=["bilateral_binding"], cluster="citizen")
    full = wild_bootstrap(res, reps=99, seed=4, ci=False).extra["bootstrap_draws"]["bilateral_binding"]
    monkeypatch.setattr(bs, "_CHUNK_BYTES", 8 * 16 * 3 * 7)  # a handful of draws per chunk
    small = wild_bootstrap(res, reps=99, seed=4, ci=False).extra["bootstrap_draws"]["bilateral_binding"]
    np.testing.assert_allclose(full, small, rtol=1e-12)


def test_event_study_terms_map_to_coefficients(panel: pd.DataFrame) -> None:
    from returnstudy.models.event_study import event_study

    ev = event_study(panel, treatment="bilateral_binding", model="twfe", window=(-2, 2))
    b = wild_bootstrap(ev, reps=99, seed=3, ci=False)
    assert np.isnan(b.table.loc[-1, "boot_p_value"])  # reference period
    full = wild_bootstrap(ev.extra["full_result"], reps=99, seed=3, ci=False, terms=["rel_p1"])
    assert b.table.loc[1, "boot_p_value"] == full.table.loc["rel_p1", "boot_p_value"]


# --------------------------------------------------------------------------- weighted least squares
@pytest.fixture(scope="module")
def weighted_panel(panel: pd.DataFrame) -> pd.DataFrame:
    """The simulated panel with strongly unequal positive weights (orders to leave, scaled) and a unit weight."""
    rng = np.random.default_rng(8)
    return panel.assign(ystar=panel["return_rate"], w=panel["orders"] * rng.uniform(0.2, 5.0, len(panel)), one=1.0)


def _brute_weighted_twfe(res, q: pd.DataFrame, term: str, other: str, null: bool, W: np.ndarray) -> np.ndarray:
    """Bootstrap t statistics by re-estimating the weighted twfe on every sample y* = fitted + v_g u."""
    if null:  # restricted WLS with explicit corridor and year dummies (statsmodels)
        r = smf.wls(f"ystar ~ {other} + C(corridor) + C(year)", data=q, weights=q["w"]).fit()
        fitted, u = r.fittedvalues.to_numpy(), r.resid.to_numpy()
        centre = 0.0
    else:
        r = smf.wls(f"ystar ~ {term} + {other} + C(corridor) + C(year)", data=q, weights=q["w"]).fit()
        fitted, u = r.fittedvalues.to_numpy(), r.resid.to_numpy()
        centre = float(res.params[term])
        assert r.params[term] == pytest.approx(centre, rel=1e-8)
    codes = pd.factorize(q["citizen"])[0]
    out = []
    for b in range(W.shape[1]):
        rb = twfe(q.assign(ystar=fitted + u * W[codes, b]), outcome="ystar", treatments=[term, other],
                  cluster="citizen", weights="w")
        out.append((rb.table.loc[term, "estimate"] - centre) / rb.table.loc[term, "std_error"])
    return np.array(out)


@pytest.mark.parametrize("impose_null", [True, False])
def test_weighted_twfe_fast_equals_brute_force(weighted_panel: pd.DataFrame, impose_null: bool) -> None:
    terms = ["bilateral_binding", "eu_agreement"]
    res = twfe(weighted_panel, outcome="ystar", treatments=terms, cluster="citizen", weights="w")
    q = weighted_panel.loc[res.extra["design"].frame.index]
    assert len(q) == res.info["n_obs"]
    reps = 25
    b = wild_bootstrap(res, reps=reps, seed=7, impose_null=impose_null, ci=False)
    G = q["citizen"].nunique()
    W = bootstrap_weights(np.random.default_rng(7), G, reps)
    for term, other in (terms, terms[::-1]):
        brute = _brute_weighted_twfe(res, q, term, other, impose_null, W)
        np.testing.assert_allclose(b.extra["bootstrap_draws"][term], brute, rtol=1e-7, atol=1e-9)
        t0 = res.table.loc[term, "estimate"] / res.table.loc[term, "std_error"]
        assert b.table.loc[term, "boot_p_value"] == pytest.approx(np.mean(np.abs(brute) >= abs(t0) - 1e-12))
    # the weights matter: the unweighted bootstrap gives different draws
    unw = wild_bootstrap(twfe(weighted_panel, outcome="ystar", treatments=terms, cluster="citizen"),
                         reps=reps, seed=7, impose_null=impose_null, ci=False)
    assert not np.allclose(unw.extra["bootstrap_draws"]["bilateral_binding"],
                           b.extra["bootstrap_draws"]["bilateral_binding"])


@pytest.mark.parametrize("impose_null", [True, False])
def test_unit_weights_reproduce_unweighted(weighted_panel: pd.DataFrame, impose_null: bool) -> None:
    from returnstudy.models.event_study import event_study

    kw = dict(outcome="ystar", treatments=["bilateral_binding", "eu_agreement"], cluster="citizen")
    a = wild_bootstrap(twfe(weighted_panel, **kw), reps=199, seed=3, impose_null=impose_null)
    b = wild_bootstrap(twfe(weighted_panel, weights="one", **kw), reps=199, seed=3, impose_null=impose_null)
    cols = ["boot_p_value", "boot_ci_low", "boot_ci_high"]
    np.testing.assert_allclose(b.table[cols].to_numpy(), a.table[cols].to_numpy(), rtol=1e-8, atol=1e-10)
    for t in kw["treatments"]:
        np.testing.assert_allclose(b.extra["bootstrap_draws"][t], a.extra["bootstrap_draws"][t], rtol=1e-8, atol=1e-10)
    # weighted event study (same code path through the full coefficient result)
    ekw = dict(treatment="bilateral_binding", model="twfe", window=(-2, 2), outcome="ystar")
    ea = wild_bootstrap(event_study(weighted_panel, **ekw), reps=99, seed=3, impose_null=impose_null, ci=False)
    eb = wild_bootstrap(event_study(weighted_panel, weights="one", **ekw), reps=99, seed=3,
                        impose_null=impose_null, ci=False)
    np.testing.assert_allclose(eb.table["boot_p_value"].to_numpy(), ea.table["boot_p_value"].to_numpy(), equal_nan=True)


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_weighted_bootstrap_rejects_clear_effect_not_null(seed: int) -> None:
    """Orders-weighted twfe on simulated panels: a clear effect (0.5) is rejected, no effect is not."""
    p_values = {}
    for effect in (0.0, 0.5):
        p = simulate_panel(seed=seed, n_geo=4, n_citizen=20, zero_share=0.0, years=(2010, 2016),
                           bilateral_share=0.3, base_effect=effect).dropna(subset=["return_rate"])
        res = twfe(p, outcome="return_rate", treatments=["bilateral_binding"], cluster="citizen", weights="orders")
        b = wild_bootstrap(res, reps=399, seed=seed, weights="webb", ci=False)
        p_values[effect] = b.table.loc["bilateral_binding", "boot_p_value"]
    assert p_values[0.5] <= 0.02, p_values
    assert p_values[0.0] > 0.1, p_values


# --------------------------------------------------------------------------- few clusters: full enumeration
@pytest.fixture(scope="module")
def few_clusters() -> pd.DataFrame:
    p = simulate_panel(seed=31, n_geo=6, n_citizen=9, zero_share=0.0, bilateral_share=0.4, years=(2010, 2017),
                       base_effect=0.2)
    return p.dropna(subset=["return_rate"]).reset_index(drop=True)


@pytest.mark.parametrize("impose_null", [True, False])
def test_full_enumeration_equals_loop_over_all_sign_vectors(few_clusters: pd.DataFrame, impose_null: bool) -> None:
    import itertools

    res = twfe(few_clusters, outcome="return_rate", treatments=["bilateral_binding"], cluster="citizen")
    G = few_clusters["citizen"].nunique()
    assert G == 9
    a = wild_bootstrap(res, reps=99, seed=1, impose_null=impose_null, ci=False)
    b = wild_bootstrap(res, reps=9999, seed=2024, impose_null=impose_null, ci=False)
    info = a.info["wild_bootstrap"]
    assert info["full_enumeration"] and info["n_draws"] == 2**G == 512
    assert "full enumeration" in a.info["notes"][-1] and "reps=99" in a.info["notes"][-1]
    assert a.table["boot_p_value"].iloc[0] == b.table["boot_p_value"].iloc[0]  # no dependence on seed or reps
    W = np.array(list(itertools.product([-1.0, 1.0], repeat=G))).T  # every sign vector once
    brute = _brute_twfe(res, "bilateral_binding", impose_null, W)
    np.testing.assert_allclose(np.sort(a.extra["bootstrap_draws"]["bilateral_binding"]), np.sort(brute),
                               rtol=1e-7, atol=1e-9)
    t0 = res.table["estimate"].iloc[0] / res.table["std_error"].iloc[0]
    assert a.table["boot_p_value"].iloc[0] == pytest.approx(np.mean(np.abs(brute) >= abs(t0) - 1e-12))
    # sampling can be forced, and is seed-dependent
    s = wild_bootstrap(res, reps=99, seed=1, impose_null=impose_null, ci=False, full_enumeration=False)
    assert s.info["wild_bootstrap"]["n_draws"] == 99 and not s.info["wild_bootstrap"]["full_enumeration"]


def test_enumeration_for_linear_imputation(few_clusters: pd.DataFrame) -> None:
    import itertools

    res = did_imputation(few_clusters, "bilateral_binding")
    b = wild_bootstrap(res, reps=99, seed=3, ci=False)
    G = 9
    assert b.info["wild_bootstrap"]["n_draws"] == 2**G
    cl = pd.factorize(few_clusters.loc[res.extra["sample_index"], "citizen"])[0]
    W = np.array(list(itertools.product([-1.0, 1.0], repeat=G))).T
    q = few_clusters.loc[res.extra["sample_index"]]
    ols = smf.ols("return_rate ~ C(corridor) + C(year)", data=q).fit()
    fitted, u = ols.fittedvalues.to_numpy(), ols.resid.to_numpy()
    # the estimator is linear in y: tau(fitted + u v) = tau(fitted) + sum_g v_g tau(u 1[cluster g]),
    # so every one of the 2^G draws follows from G + 1 runs of the estimator on modified outcomes
    base = did_imputation(q.assign(return_rate=fitted), "bilateral_binding").coef("bilateral_binding")
    per = np.array([did_imputation(q.assign(return_rate=np.where(cl == g, u, 0.0)), "bilateral_binding")
                    .coef("bilateral_binding") for g in range(G)])
    brute = base + per @ W
    draws = b.extra["bootstrap_draws"]["bilateral_binding"]
    np.testing.assert_allclose(np.sort(draws), np.sort(brute), atol=1e-9)
    tau = res.coef("bilateral_binding")
    assert b.table["boot_p_value"].iloc[0] == pytest.approx(np.mean(np.abs(brute) >= abs(tau) - 1e-12))


def test_draws_in_blocks_equal_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large G x reps: weights drawn in row blocks (int8 codes) are the same stream as one call."""
    import returnstudy.inference.bootstrap as bs

    for kind in ("rademacher", "webb"):
        ref = bootstrap_weights(np.random.default_rng(9), 101, 77, kind)
        monkeypatch.setattr(bs, "_SINGLE_CALL_DRAWS", 500)
        d = bs.make_draws(np.random.default_rng(9), 101, 77, kind, full_enumeration=False)
        monkeypatch.undo()
        np.testing.assert_array_equal(d.block(0, 77), ref)
        assert d.codes.dtype == np.int8


@pytest.mark.skipif(importlib.util.find_spec("wildboottest") is None, reason="wildboottest not installed")
@pytest.mark.parametrize("seed", [31, 32])
def test_enumeration_agrees_with_wildboottest(seed: int) -> None:  # pragma: no cover - optional oracle
    """9 clusters, all 512 sign vectors in both. wildboottest counts |t*| > |t| strictly and so leaves
    out the two draws v = +-1, which reproduce the sample (|t*| = |t|); we count them as ties
    (|t*| >= |t|): the p-values differ by exactly 2 / 2^G or not at all."""
    from wildboottest.wildboottest import wildboottest

    q = simulate_panel(seed=seed, n_geo=6, n_citizen=9, zero_share=0.0, bilateral_share=0.4, years=(2010, 2017),
                       base_effect=0.0).dropna(subset=["return_rate"]).reset_index(drop=True)
    res = twfe(q, outcome="return_rate", treatments=["bilateral_binding"], cluster="citizen")
    q = q.loc[res.extra["design"].frame.index]  # rows of the fit (singletons dropped)
    model = smf.ols("return_rate ~ bilateral_binding + C(corridor) + C(year)", data=q)
    ref = wildboottest(model, param="bilateral_binding", cluster=pd.factorize(q["citizen"])[0], B=9999,
                       weights_type="rademacher", impose_null=True, bootstrap_type="11", seed=1, show=False)
    ours = wild_bootstrap(res, seed=1, ci=False).table["boot_p_value"].iloc[0]
    p_ref = float(np.asarray(ref["p-value"]).ravel()[0])
    assert 0.05 < ours < 0.95
    assert ours - p_ref == pytest.approx(2 / 2**9, abs=1e-9) or ours == pytest.approx(p_ref, abs=1e-9)


def test_gram_dependence_check_matches_sequential_orthogonalisation() -> None:
    """Dummies of a non-nested effect after demeaning by a nested one: the Gram-matrix check drops
    the same columns as collinear_columns (a duplicated sum of dummies, a column absorbed by the
    fixed effect), and keeps a full set of independent ones."""
    from returnstudy.inference.bootstrap import dependent_columns_gram
    from returnstudy.models._fe import FixedEffects, collinear_columns

    rng = np.random.default_rng(0)
    n = 4000
    corr, year = rng.integers(0, 300, n), rng.integers(0, 12, n)
    D = np.zeros((n, 12))
    D[np.arange(n), year] = 1.0
    X = np.column_stack([D[:, 1:], D[:, 1] + D[:, 2], rng.normal(size=n), np.ones(n)])
    Xd = FixedEffects([corr]).demean(X)
    expected = np.zeros(X.shape[1], dtype=bool)
    expected[[11, 13]] = True  # the sum of two dummies; the constant (absorbed by corridor effects)
    np.testing.assert_array_equal(collinear_columns(Xd, X), expected)
    np.testing.assert_array_equal(dependent_columns_gram(Xd, X), expected)
    w = rng.uniform(0.5, 2.0, n)[:, None] ** 0.5
    Xw = FixedEffects([corr]).demean(X, weights=w[:, 0] ** 2) * w
    np.testing.assert_array_equal(dependent_columns_gram(Xw, X * w), collinear_columns(Xw, X * w))
