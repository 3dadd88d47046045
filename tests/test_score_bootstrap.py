"""Score (Kline-Santos) cluster bootstrap for Poisson results: equal to an independent
full-dummy implementation draw by draw, full enumeration with few clusters, size under the null."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from returnstudy.inference.bootstrap import bootstrap_weights, wild_bootstrap
from returnstudy.inference.score_bootstrap import score_bootstrap
from returnstudy.models.event_study import event_study
from returnstudy.models.imputation import did_imputation
from returnstudy.models.ppml import ppml
from returnstudy.simulate import simulate_panel


def _panel(seed: int, n_citizen: int, n_geo: int = 4, effect: float = 0.2) -> pd.DataFrame:
    return simulate_panel(seed=seed, n_geo=n_geo, n_citizen=n_citizen, zero_share=0.0, bilateral_share=0.35,
                          eu_share=0.3, years=(2010, 2016), base_effect=effect)


def _dummies(codes: np.ndarray, drop_first: bool) -> np.ndarray:
    D = np.zeros((codes.size, int(codes.max()) + 1))
    D[np.arange(codes.size), codes] = 1.0
    return D[:, 1:] if drop_first else D


def _brute_score_tstats(res, term: str, b0: float, W: np.ndarray) -> np.ndarray:
    """Score bootstrap t statistics written out with every fixed effect as a dummy column:
    restricted Poisson GLM (statsmodels), full scores and Hessian, one Newton step per draw.
    Returns (t* per draw, observed statistic = the same step with weight 1 in every cluster)."""
    d = res.extra["design"]
    names = list(res.params.index)
    j = names.index(term)
    frame = d.frame
    X = d.X[:, [names.index(n) for n in names]]
    corr = pd.factorize(frame["corridor"])[0]
    year = pd.factorize(frame["year"])[0]
    cl = pd.factorize(d.clusters[0])[0]
    off = frame["log_orders"].to_numpy(dtype=float)
    others = np.delete(X, j, axis=1)
    Zr = np.column_stack([others, _dummies(corr, False), _dummies(year, True)])
    glm = sm.GLM(d.y, Zr, family=sm.families.Poisson(), offset=off + b0 * X[:, j]).fit(tol=1e-13, maxiter=200)
    mu = glm.fittedvalues
    F = np.column_stack([X, _dummies(corr, False), _dummies(year, True)])  # every parameter
    e = d.y - mu
    G = cl.max() + 1
    S = np.vstack([F[cl == g].T @ e[cl == g] for g in range(G)])  # (G, p) cluster scores
    Hg = [F[cl == g].T @ (mu[cl == g, None] * F[cl == g]) for g in range(G)]
    Hinv = np.linalg.pinv(sum(Hg))
    n = d.y.size
    ssc = G / (G - 1) * (n - 1) / (n - res.info["df_k"])
    out = []
    for b in range(W.shape[1] + 1):
        v = W[:, b] if b < W.shape[1] else np.ones(G)  # last: the observed score statistic (v = 1)
        theta = Hinv @ (S.T @ v)
        Sb = v[:, None] * S - np.vstack([H @ theta for H in Hg])
        V = ssc * Hinv @ (Sb.T @ Sb) @ Hinv
        out.append(theta[j] / np.sqrt(V[j, j]))
    return np.array(out[:-1]), float(out[-1])


@pytest.fixture(scope="module")
def fit16():
    res = ppml(_panel(12, 16), treatments=["bilateral_binding", "eu_agreement"])
    assert res.info["n_clusters"] == 16
    return res


@pytest.mark.parametrize("term,b0", [("bilateral_binding", 0.0), ("eu_agreement", 0.0), ("bilateral_binding", 0.15)])
def test_ppml_score_bootstrap_equals_full_dummy_implementation(fit16, term: str, b0: float) -> None:
    reps = 40
    out = score_bootstrap(fit16, reps=reps, seed=3, null=b0, ci=False, terms=[term])
    W = bootstrap_weights(np.random.default_rng(3), 16, reps)
    brute, t0 = _brute_score_tstats(fit16, term, b0, W)
    np.testing.assert_allclose(out.extra["bootstrap_draws"][term], brute, rtol=1e-6, atol=1e-8)
    assert out.table.loc[term, "boot_statistic"] == pytest.approx(t0, rel=1e-6)
    assert out.table.loc[term, "boot_p_value"] == pytest.approx(np.mean(np.abs(brute) >= abs(t0) - 1e-12))
    # near the estimate the score statistic is the Wald t of the fit
    wald = (fit16.coef(term) - b0) / fit16.table.loc[term, "std_error"]
    assert abs(t0 - wald) < 0.25 * max(1.0, abs(wald))
    # wild_bootstrap dispatches Poisson results to the score bootstrap
    via = wild_bootstrap(fit16, reps=reps, seed=3, null=b0, ci=False, terms=[term])
    assert via.table.loc[term, "boot_p_value"] == out.table.loc[term, "boot_p_value"]
    assert "Kline-Santos" in via.info["wild_bootstrap"]["method"]


def test_observed_statistic_uses_the_fit_standard_error(fit16) -> None:
    from returnstudy.inference.score_bootstrap import _problem_from_result

    prob, _ = _problem_from_result(fit16, None)
    np.testing.assert_allclose(prob.se, fit16.table["std_error"].to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(prob.beta, fit16.params.to_numpy(), rtol=1e-7, atol=1e-9)


def test_confidence_interval_inverts_the_test(fit16) -> None:
    term = "bilateral_binding"
    out = score_bootstrap(fit16, reps=199, seed=1, terms=[term], weights="webb")
    lo, hi = out.table.loc[term, ["boot_ci_low", "boot_ci_high"]]
    b = fit16.coef(term)
    assert lo < b < hi
    width = hi - lo
    for edge, inside, outside in ((lo, lo + 0.01 * width, lo - 0.01 * width), (hi, hi - 0.01 * width, hi + 0.01 * width)):
        p_in = score_bootstrap(fit16, reps=199, seed=1, terms=[term], weights="webb", null=inside, ci=False)
        p_out = score_bootstrap(fit16, reps=199, seed=1, terms=[term], weights="webb", null=outside, ci=False)
        assert p_in.table.loc[term, "boot_p_value"] > 0.05 >= p_out.table.loc[term, "boot_p_value"]
    # proportional scale: 100 (exp(b) - 1) of the log-scale endpoints
    assert out.table.loc[term, "boot_pct_ci_low"] == pytest.approx(100 * np.expm1(lo))
    assert out.table.loc[term, "boot_pct_ci_high"] == pytest.approx(100 * np.expm1(hi))
    # the unrestricted percentile-t interval (no refits) is a different bootstrap interval of similar width
    unr = score_bootstrap(fit16, reps=199, seed=1, terms=[term], weights="webb", impose_null=False)
    lo_u, hi_u = unr.table.loc[term, ["boot_ci_low", "boot_ci_high"]]
    assert lo_u < b < hi_u
    assert abs(width / (hi_u - lo_u) - 1) < 0.35
    assert out.info["wild_bootstrap"]["n_restricted_fits"] <= 40


def test_full_enumeration_equals_loop_over_all_sign_vectors() -> None:
    res = ppml(_panel(5, 9, n_geo=5), treatments=["bilateral_binding"])
    G = res.info["n_clusters"]
    assert G <= 12
    a = score_bootstrap(res, reps=99, seed=1, ci=False)
    b = score_bootstrap(res, reps=499, seed=77, ci=False)
    assert a.info["wild_bootstrap"]["full_enumeration"] and a.info["wild_bootstrap"]["n_draws"] == 2**G
    assert "full enumeration" in a.info["notes"][-1]
    assert a.table["boot_p_value"].iloc[0] == b.table["boot_p_value"].iloc[0]  # seed and reps do not matter
    W = np.array(list(itertools.product([-1.0, 1.0], repeat=G))).T  # (G, 2^G), every sign vector once
    brute, t0 = _brute_score_tstats(res, "bilateral_binding", 0.0, W)
    p_brute = np.mean(np.abs(brute) >= abs(t0) - 1e-12)
    assert a.table["boot_p_value"].iloc[0] == pytest.approx(p_brute)
    np.testing.assert_allclose(np.sort(a.extra["bootstrap_draws"]["bilateral_binding"]), np.sort(brute),
                               rtol=1e-6, atol=1e-8)
    # sampling can be forced; Webb weights are never enumerated
    s = score_bootstrap(res, reps=99, seed=1, ci=False, full_enumeration=False)
    assert s.info["wild_bootstrap"]["n_draws"] == 99
    assert not score_bootstrap(res, reps=99, seed=1, ci=False, weights="webb").info["wild_bootstrap"]["full_enumeration"]


def test_poisson_event_study_terms() -> None:
    p = _panel(12, 16)
    ev = event_study(p, treatment="bilateral_binding", model="ppml", window=(-2, 2))
    b = wild_bootstrap(ev, reps=30, seed=3, ci=False)
    assert np.isnan(b.table.loc[-1, "boot_p_value"])  # reference period
    full = ev.extra["full_result"]
    W = bootstrap_weights(np.random.default_rng(3), 16, 30)
    brute, t0 = _brute_score_tstats(full, "rel_p1", 0.0, W)
    assert b.table.loc[1, "boot_statistic"] == pytest.approx(t0, rel=1e-6)
    np.testing.assert_allclose(b.extra["bootstrap_draws"][1], brute, rtol=1e-6, atol=1e-8)


def test_imputation_poisson_multiplier_bootstrap_of_influence_function() -> None:
    p = _panel(12, 16)
    res = did_imputation(p, "bilateral_binding", model="poisson", event_time=True, horizons=2)
    reps = 999
    b = wild_bootstrap(res, reps=reps, seed=4)
    psi = res.extra["influence"]
    cl = pd.factorize(p.loc[res.extra["sample_index"], "citizen"])[0]
    C = np.vstack([psi[cl == g].sum(axis=0) for g in range(cl.max() + 1)])
    W = bootstrap_weights(np.random.default_rng(4), cl.max() + 1, reps)
    for j, h in enumerate([0, 1, 2]):
        dev = C[:, j + 1] @ W  # column 0 is the overall ATT
        tau = res.table.loc[h, "estimate"]
        np.testing.assert_allclose(b.extra["bootstrap_draws"][h], tau + dev, rtol=1e-12)
        assert b.table.loc[h, "boot_p_value"] == pytest.approx(np.mean(np.abs(dev) >= abs(tau) - 1e-12))
        # the interval is the set of nulls not rejected at 5%
        lo, hi = b.table.loc[h, ["boot_ci_low", "boot_ci_high"]]
        assert np.mean(np.abs(dev) >= abs(tau - (lo + 1e-9)) - 1e-12) > 0.05
        assert np.mean(np.abs(dev) >= abs(tau - (lo - 1e-6)) - 1e-12) <= 0.05
    # Rademacher variance of tau* is the influence-function variance sum_g C_g^2 (the BJS standard error)
    assert np.std(b.extra["bootstrap_draws"][0]) == pytest.approx(res.table.loc[0, "std_error"], rel=0.1)


def test_rejection_rate_under_null_in_binomial_band() -> None:
    """200 tiny panels with no effect (20 clusters): the 5% score bootstrap test rejects
    between 1.5% and 10% of the time (about -2.3/+3.3 binomial s.e. around 5%), and a clear
    effect (log 0.4) is rejected in most of 20 panels."""
    def rejections(effect: float, n: int) -> tuple[np.ndarray, np.ndarray]:
        boot, wald = [], []
        for r in range(n):
            p = simulate_panel(seed=500 + r, n_geo=3, n_citizen=20, zero_share=0.1, bilateral_share=0.4,
                               years=(2010, 2016), base_effect=effect)
            res = ppml(p, treatments=["bilateral_binding"])
            b = score_bootstrap(res, reps=199, seed=r, ci=False, weights="webb")
            boot.append(b.table["boot_p_value"].iloc[0] <= 0.05)
            wald.append(res.table["p_value"].iloc[0] <= 0.05)
        return np.array(boot), np.array(wald)

    boot, wald = rejections(0.0, 200)
    assert 0.015 <= boot.mean() <= 0.10, boot.mean()
    # with 3 corridors of very unequal size per cluster the analytic clustered Wald test over-rejects
    assert wald.mean() > boot.mean() + 0.04, (wald.mean(), boot.mean())
    assert rejections(0.4, 20)[0].mean() >= 0.8


def test_bad_input(fit16) -> None:
    with pytest.raises(ValueError, match="weights="):
        score_bootstrap(fit16, reps=19, weights="normal")
    with pytest.raises(KeyError, match="nope"):
        score_bootstrap(fit16, reps=19, terms=["nope"])
    with pytest.raises(KeyError, match="not in the estimation sample"):
        score_bootstrap(fit16, reps=19, cluster="nope")
    lin = did_imputation(_panel(12, 16), "bilateral_binding")
    with pytest.raises(TypeError, match="not a Poisson result"):
        score_bootstrap(lin, reps=19)
    with pytest.raises(ValueError, match="full_enumeration=True needs"):
        score_bootstrap(fit16, reps=19, weights="webb", full_enumeration=True)


# ---------------------------------------------------------------- extended TWFE: influence-function bootstrap
def _etwfe_influence_sums(res, panel: pd.DataFrame, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Cluster sums of the simple ATT's influence function built independently: every fixed effect a
    dummy column, the fit by least squares (numpy) or Poisson GLM with the exposure offset (statsmodels),
    the Poisson ATT log(sum mu / sum mu0) differentiated numerically over all parameters, influence
    = row score x inverse Hessian x gradient; scaled by the CRV1 factor read off the cell SEs.
    Returns (C (G,), cluster codes in order of first appearance)."""
    s = panel.loc[res.extra["sample_index"]]
    cells = res.info["cells"]
    g = s["bilateral_binding_cohort"].astype("float64").to_numpy()
    t = s["year"].to_numpy()
    T = np.column_stack([((g == a) & (t == b)).astype(float) for a, b in cells.index])
    K = T.shape[1]
    W = np.column_stack([T, _dummies(pd.factorize(s["corridor"])[0], False), _dummies(pd.factorize(s["year"])[0], True)])
    cl = pd.factorize(s["citizen"])[0]
    G = cl.max() + 1
    post = (T @ (cells["rel_period"].to_numpy() >= 0)) > 0
    if model == "linear":
        y = s["return_rate"].to_numpy(dtype=float)
        theta = np.linalg.lstsq(W, y, rcond=None)[0]
        e = y - W @ theta
        Hinv = np.linalg.pinv(W.T @ W)
        w_cells = np.where(cells["rel_period"].to_numpy() >= 0, cells["n_treated"].to_numpy(), 0.0)
        grad = np.r_[w_cells / w_cells.sum(), np.zeros(W.shape[1] - K)]
        assert res.coef("bilateral_binding") == pytest.approx(float(grad @ theta), abs=1e-10)
    else:
        y = s["returns"].to_numpy(dtype=float)
        off = np.log(s["orders"].to_numpy(dtype=float))
        theta = sm.GLM(y, W, family=sm.families.Poisson(), offset=off).fit(tol=1e-14, maxiter=200).params
        mu = np.exp(off + W @ theta)
        e = y - mu
        Hinv = np.linalg.pinv((W * mu[:, None]).T @ W)
        W0 = W.copy()
        W0[:, :K] = 0.0

        def log_ratio(th: np.ndarray) -> float:
            return float(np.log(np.exp(off + W @ th)[post].sum() / np.exp(off + W0 @ th)[post].sum()))

        h = 1e-6
        grad = np.array([(log_ratio(theta + h * u) - log_ratio(theta - h * u)) / (2 * h) for u in np.eye(theta.size)])
        assert res.coef("bilateral_binding") == pytest.approx(log_ratio(theta), abs=1e-9)
    S = np.vstack([W[cl == c].T @ e[cl == c] for c in range(G)])  # (G, p) cluster scores
    Vraw = Hinv @ S.T @ S @ Hinv
    ratio = res.info["cells"]["std_error"].to_numpy() ** 2 / np.diag(Vraw)[:K]  # one CRV1 factor for all cells
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)
    return np.sqrt(ratio[0]) * (S @ Hinv @ grad), cl


def _brute_multiplier(tau: float, C: np.ndarray, W: np.ndarray, null: float = 0.0) -> tuple[np.ndarray, float]:
    """tau* = tau + sum_g v_g C_g for every draw (columns of W), one draw at a time; p-value of the null."""
    draws = []
    for b in range(W.shape[1]):
        acc = tau
        for g in range(W.shape[0]):
            acc += W[g, b] * C[g]
        draws.append(acc)
    draws = np.array(draws)
    return draws, float(np.mean(np.abs(draws - tau) >= abs(tau - null) - 1e-12))


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_etwfe_bootstrap_equals_brute_force_loop_over_draws(model: str) -> None:
    from returnstudy.models.etwfe import etwfe

    p = _panel(21, 16)
    res = etwfe(p, "bilateral_binding", model=model, tol=1e-14)
    G = res.info["n_clusters"]
    assert G == 16
    C, _ = _etwfe_influence_sums(res, p, model)
    stored = res.extra["influence_sums"]["sums"]["simple"]["bilateral_binding"].to_numpy()
    tol = 1e-10 if model == "linear" else 1e-7  # Poisson: numerical gradient (h = 1e-6) and GLM tolerance
    np.testing.assert_allclose(stored, C, rtol=0, atol=tol * np.abs(C).max())
    assert np.sqrt(np.sum(C**2)) == pytest.approx(res.table.loc["bilateral_binding", "std_error"], rel=tol)
    reps = 199
    b = wild_bootstrap(res, reps=reps, seed=5)
    W = bootstrap_weights(np.random.default_rng(5), G, reps)
    tau = res.coef("bilateral_binding")
    brute, p_brute = _brute_multiplier(tau, C, W)
    np.testing.assert_allclose(b.extra["bootstrap_draws"]["bilateral_binding"], brute, rtol=0,
                               atol=10 * tol * np.abs(C).max())
    row = b.table.loc["bilateral_binding"]
    assert row["boot_p_value"] == pytest.approx(p_brute)
    # the interval is the set of nulls the brute-force test does not reject at 5%
    scale = np.abs(C).max()
    for end, inward in ((row["boot_ci_low"], 1.0), (row["boot_ci_high"], -1.0)):
        assert _brute_multiplier(tau, C, W, null=end + inward * 1e-6 * scale)[1] > 0.05
        assert _brute_multiplier(tau, C, W, null=end - inward * 1e-4 * scale)[1] <= 0.05
    info = b.info["wild_bootstrap"]
    assert info["impose_null"] is False and "centred on the estimate" in info["method"]
    assert info["n_draws"] == reps and not info["full_enumeration"]
    if model == "poisson":
        assert row["boot_pct_ci_low"] == pytest.approx(100 * np.expm1(row["boot_ci_low"]), rel=1e-12)
    else:
        assert "boot_pct_ci_low" not in b.table.columns


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_etwfe_bootstrap_enumerates_all_sign_vectors_with_few_clusters(model: str) -> None:
    from returnstudy.models.etwfe import etwfe

    p = _panel(8, 10, n_geo=5)
    res = etwfe(p, "bilateral_binding", model=model, tol=1e-14)
    G = res.info["n_clusters"]
    assert G <= 12
    a = wild_bootstrap(res, reps=99, seed=1)
    assert a.info["wild_bootstrap"]["full_enumeration"] and a.info["wild_bootstrap"]["n_draws"] == 2**G
    assert wild_bootstrap(res, reps=499, seed=9).table.equals(a.table)  # seed and reps not used
    C = res.extra["influence_sums"]["sums"]["simple"]["bilateral_binding"].to_numpy()
    W = np.array(list(itertools.product([-1.0, 1.0], repeat=G))).T  # (G, 2^G), every sign vector once
    tau = res.coef("bilateral_binding")
    brute, p_brute = _brute_multiplier(tau, C, W)
    np.testing.assert_allclose(np.sort(a.extra["bootstrap_draws"]["bilateral_binding"]), np.sort(brute),
                               rtol=1e-12, atol=1e-14)
    assert a.table.loc["bilateral_binding", "boot_p_value"] == pytest.approx(p_brute, abs=1e-15)
    # exact randomisation distribution: the Rademacher variance is sum_g C_g^2 = the clustered variance
    assert np.var(brute) == pytest.approx(res.table.loc["bilateral_binding", "std_error"] ** 2, rel=1e-10)
    # Webb weights and forced sampling are sampled
    assert not wild_bootstrap(res, reps=99, seed=1, weights="webb").info["wild_bootstrap"]["full_enumeration"]


def test_etwfe_bootstrap_event_terms_and_bad_input() -> None:
    from returnstudy.models.etwfe import etwfe

    p = _panel(21, 16)
    res = etwfe(p, "bilateral_binding", model="poisson", control="never", aggregation="event")
    b = score_bootstrap(res, reps=99, seed=2)
    C = res.extra["influence_sums"]["sums"]["event"]
    W = bootstrap_weights(np.random.default_rng(2), 16, 99)
    for e in res.table.index:
        np.testing.assert_allclose(b.extra["bootstrap_draws"][e], res.table.loc[e, "estimate"] + C[e].to_numpy() @ W,
                                   rtol=1e-12)
    assert b.table["boot_p_value"].notna().all() and min(res.table.index) < -1  # placebo periods too
    with pytest.raises(ValueError, match="estimation cluster 'citizen'"):
        wild_bootstrap(res, reps=99, seed=2, cluster="geo")
    with pytest.raises(KeyError, match="not in the result table"):
        wild_bootstrap(res, reps=99, seed=2, terms=[99])
    with pytest.raises(ValueError, match="one cluster variable"):
        wild_bootstrap(etwfe(p, "bilateral_binding", cluster=None), reps=99, seed=2)


def test_interval_inversion_closed_form_and_unbounded_sides():
    """Test inversion on a gap with known roots (est +/- 2 se), and a side where the restricted fit
    fails or never rejects: that side is reported unbounded, not guessed."""
    from returnstudy.inference.score_bootstrap import MAX_CI_HALF_WIDTH_SE, _invert_by_refits

    est, se = 0.3, 0.1
    lo, hi = _invert_by_refits(lambda b: abs(b - est) / se - 2.0, est, se, 0.05, 1e-8)
    assert lo == pytest.approx(est - 2 * se, abs=1e-8) and hi == pytest.approx(est + 2 * se, abs=1e-8)

    def failing(b: float) -> float:
        if b > est + 3 * se:
            raise ValueError("weights must be finite and non-negative")
        return -1.0 if b >= est else abs(b - est) / se - 2.0

    lo, hi = _invert_by_refits(failing, est, se, 0.05, 1e-8)
    assert lo == pytest.approx(est - 2 * se, abs=1e-8) and hi == np.inf

    calls = []

    def never(b: float) -> float:
        calls.append(b)
        return -1.0

    lo, hi = _invert_by_refits(never, est, se, 0.05, 1e-8)
    assert (lo, hi) == (-np.inf, np.inf)
    assert max(abs(b - est) for b in calls) <= (MAX_CI_HALF_WIDTH_SE + 2 * 32) * se
