"""Randomization inference: permutations keep the design; p-values match exact enumeration."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from returnstudy.inference.randomization import permute_adoption, randomization_inference
from returnstudy.models.imputation import did_imputation
from returnstudy.models.twfe import twfe
from returnstudy.simulate import simulate_panel


def test_permutation_preserves_timing_distribution() -> None:
    p = simulate_panel(seed=1, n_geo=5, n_citizen=30, eu_share=0.3, bilateral_share=0.2, years=(2010, 2018))
    rng = np.random.default_rng(0)
    q = permute_adoption(p, "eu_agreement", "citizen", rng)
    by_cit = lambda df: df.groupby("citizen")["eu_agreement_cohort"].max().dropna().sort_values().to_numpy()  # noqa: E731
    np.testing.assert_array_equal(by_cit(p), by_cit(q))
    assert not p["eu_agreement"].equals(q["eu_agreement"])
    ys = q["eu_agreement_years_since"].astype("float64")
    np.testing.assert_array_equal(q["eu_agreement"].to_numpy() == 1, (ys >= 0).fillna(False).to_numpy())
    # non-participating geos stay non-participating
    part = lambda df: set(df.loc[df["eu_agreement_cohort"].notna(), "geo"])  # noqa: E731
    assert part(q) <= part(p)
    r = permute_adoption(p, "bilateral_binding", "corridor", rng)
    c0 = p.groupby("corridor")["bilateral_binding_cohort"].first().dropna().sort_values().to_numpy()
    c1 = r.groupby("corridor")["bilateral_binding_cohort"].first().dropna().sort_values().to_numpy()
    np.testing.assert_array_equal(c0, c1)
    with pytest.raises(KeyError, match=r"level='region' is not a column.*'geo', 'citizen'"):
        permute_adoption(p, "eu_agreement", "region", rng)


def test_p_value_matches_exact_enumeration() -> None:
    """4 citizenships, one treated: the exact permutation p-value is (#|est_c| >= |obs|) / 4."""
    p = simulate_panel(seed=3, n_geo=6, n_citizen=4, eu_share=0.25, n_nonparticipating_geo=1, zero_share=0.0,
                       years=(2010, 2017), base_effect=0.0, bilateral_share=0.0, bilateral_nonbinding_share=0.0,
                       eu_nonbinding_share=0.0)
    p = p.dropna(subset=["return_rate"])
    res = twfe(p, outcome="return_rate", treatments=["eu_agreement"], cluster=None)
    obs = res.coef("eu_agreement")
    cits = sorted(p["citizen"].unique())
    treated = p.loc[p["eu_agreement_cohort"].notna(), "citizen"].unique()[0]
    ests = []
    for c in cits:  # move the treated pattern to citizenship c (a permutation swapping the two)
        perm = {x: x for x in cits}
        perm[c], perm[treated] = treated, c
        q = p.copy()
        src = p.groupby(["geo", "citizen"])["eu_agreement_cohort"].first()
        new = src.reindex(pd.MultiIndex.from_arrays([q["geo"], q["citizen"].map(perm)])).to_numpy()
        q["eu_agreement_cohort"] = pd.array(new, dtype="Int64")
        q["eu_agreement"] = (q["year"] >= q["eu_agreement_cohort"]).fillna(False).astype(float)
        ests.append(twfe(q, outcome="return_rate", treatments=["eu_agreement"], cluster=None).coef("eu_agreement"))
    exact = np.mean(np.abs(ests) >= abs(obs) - 1e-12)
    ri = randomization_inference(res, reps=200, level="citizen", seed=0, panel=p)
    assert ri.table.loc["eu_agreement", "ri_p_value"] == pytest.approx(exact, abs=0.09)
    assert set(np.round(ri.extra["ri_draws"]["eu_agreement"], 10)) <= set(np.round(ests, 10))


def test_large_effect_rejected_null_not() -> None:
    p = simulate_panel(seed=5, n_geo=6, n_citizen=40, bilateral_share=0.3, base_effect=1.0, years=(2010, 2017))
    res = did_imputation(p, "bilateral_binding", model="poisson")
    ri = randomization_inference(res, reps=39, level="corridor", seed=1)
    assert ri.table["ri_p_value"].iloc[0] == pytest.approx(1 / 40)
    assert ri.info["randomization_inference"]["level"] == "corridor"
    q = simulate_panel(seed=6, n_geo=6, n_citizen=40, bilateral_share=0.3, base_effect=0.0, years=(2010, 2017))
    res0 = did_imputation(q, "bilateral_binding", model="poisson")
    ri0 = randomization_inference(res0, reps=39, level="corridor", seed=1, statistic="t")
    assert ri0.table["ri_p_value"].iloc[0] > 0.05


def test_requires_panel_for_models_without_call() -> None:
    p = simulate_panel(seed=1, n_geo=3, n_citizen=10, years=(2010, 2015), bilateral_share=0.4)
    res = twfe(p, outcome="return_rate", treatments=["bilateral_binding"])
    with pytest.raises(ValueError, match="panel="):
        randomization_inference(res, reps=5)


def test_only_the_permuted_treatment_is_tested_in_a_joint_model() -> None:
    import returnstudy as rs

    panel = rs.simulate_panel(seed=5, n_geo=6, n_citizen=25)
    res = rs.ppml(panel, treatments=["eu_agreement", "bilateral_binding"])
    ri = rs.randomization_inference(res, reps=9, level="corridor", seed=2, panel=panel, treatment="bilateral_binding")
    assert np.isnan(ri.table.loc["eu_agreement", "ri_p_value"])
    p = ri.table.loc["bilateral_binding", "ri_p_value"]
    draws = ri.extra["ri_draws"]["bilateral_binding"].to_numpy()
    assert p == pytest.approx((1 + np.sum(np.abs(draws) >= abs(res.coef("bilateral_binding")))) / (1 + len(draws)))


class _FailingEstimator:
    """twfe re-estimation that raises ValueError on the given (0-based) calls."""

    def __init__(self, fail_on: set[int]) -> None:
        self.fail_on, self.calls = fail_on, 0

    def __call__(self, df: pd.DataFrame):
        i, self.calls = self.calls, self.calls + 1
        if i in self.fail_on:
            raise ValueError(f"no treated corridor-years left (call {i})")
        return twfe(df, outcome="return_rate", treatments=["bilateral_binding"], cluster=None)


def _small_ri_setup():
    p = simulate_panel(seed=7, n_geo=4, n_citizen=12, zero_share=0.0, bilateral_share=0.4, years=(2010, 2016))
    p = p.dropna(subset=["return_rate"]).reset_index(drop=True)
    res = twfe(p, outcome="return_rate", treatments=["bilateral_binding"], cluster=None)
    return p, res


def test_failed_draws_leave_the_denominator_and_warn(caplog: pytest.LogCaptureFixture) -> None:
    p, res = _small_ri_setup()
    reps = 20
    clean = randomization_inference(res, reps=reps, level="corridor", seed=3, panel=p, treatment="bilateral_binding",
                                    estimator=_FailingEstimator(set()))
    assert clean.info["randomization_inference"]["failed_draws"] == 0
    with caplog.at_level("WARNING", logger="returnstudy.inference.randomization"):
        ri = randomization_inference(res, reps=reps, level="corridor", seed=3, panel=p, treatment="bilateral_binding",
                                     estimator=_FailingEstimator({4, 11}))  # 2 of 20 = 10%: allowed
    warn = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warn) == 1 and "2 of 20" in warn[0].getMessage() and "call 4" in warn[0].getMessage()
    assert ri.info["randomization_inference"]["failed_draws"] == 2
    assert ri.info["randomization_inference"]["valid_draws"] == {"bilateral_binding": 18}
    # the permutations themselves do not depend on failures: the surviving draws are the clean run's draws
    d_clean = clean.extra["ri_draws"]["bilateral_binding"].to_numpy()
    d = ri.extra["ri_draws"]["bilateral_binding"].to_numpy()
    assert np.isnan(d[[4, 11]]).all()
    keep = np.setdiff1d(np.arange(reps), [4, 11])
    np.testing.assert_allclose(d[keep], d_clean[keep], rtol=1e-12)
    obs = abs(res.coef("bilateral_binding"))
    expected = (1 + np.sum(np.abs(d_clean[keep]) >= obs - 1e-12)) / (1 + 18)
    assert ri.table.loc["bilateral_binding", "ri_p_value"] == pytest.approx(expected)


def test_too_many_failed_draws_raise(caplog: pytest.LogCaptureFixture) -> None:
    p, res = _small_ri_setup()
    with pytest.raises(ValueError, match=r"failed in 3 of 20 permutation draws.*first error: draw 2: "
                                         r"ValueError: no treated corridor-years left \(call 2\)"):
        randomization_inference(res, reps=20, level="corridor", seed=3, panel=p, treatment="bilateral_binding",
                                estimator=_FailingEstimator({2, 9, 15}))


# ----------------------------------------------------------------------------- any panel, fixed-design re-fits


def _mpdta() -> pd.DataFrame:
    moderndid = pytest.importorskip("moderndid")
    df = moderndid.load_mpdta()
    df = df.to_pandas() if hasattr(df, "to_pandas") else pd.DataFrame(df)
    ft = df["first.treat"].to_numpy()
    df["post"] = ((ft > 0) & (df["year"].to_numpy() >= ft)).astype(float)
    df["emp"] = np.exp(df["lemp"])  # employment (thousands): a count-like outcome for the Poisson fit
    return df


def _brute_force_unit_draws(df: pd.DataFrame, fit, reps: int, seed: int) -> np.ndarray:
    """Permute first.treat across counties with a fresh copy and a fit from scratch per draw."""
    rng = np.random.default_rng(seed)
    units = pd.unique(df["countyreal"])
    first = df.groupby("countyreal", sort=False)["first.treat"].first().reindex(units).to_numpy(dtype=float)
    first[first == 0] = np.nan
    out = []
    for _ in range(reps):
        new = dict(zip(units, rng.permutation(first)))
        q = df.copy()
        ft = q["countyreal"].map(new).to_numpy(dtype=float)
        q["first.treat"] = np.where(np.isnan(ft), 0, ft).astype(np.int64)
        q["post"] = (q["year"].to_numpy() >= ft).astype(float)  # NaN >= year is False: never treated
        out.append(fit(q))
    return np.array(out)


@pytest.mark.parametrize("model", ["twfe", "ppml"])
def test_mpdta_county_permutation_equals_brute_force(model: str) -> None:
    """mpdta with its own names (countyreal, year, first.treat): the permutation p-value equals an
    independent loop that re-fits from scratch with the same draws."""
    import returnstudy as rs

    df = _mpdta()
    kw = dict(fe=["countyreal", "year"], cluster="countyreal", treatments=["post"])
    if model == "twfe":
        fit = lambda d: rs.twfe(d, outcome="lemp", **kw)  # noqa: E731
    else:
        fit = lambda d: rs.ppml(d, outcome="emp", exposure=None, **kw)  # noqa: E731
    res = fit(df)
    reps, seed = 49, 7
    ri = rs.randomization_inference(res, reps=reps, seed=seed, panel=df, level="countyreal", unit="countyreal",
                                    time="year", cohort="first.treat")
    info = ri.info["randomization_inference"]
    assert info["refit"] == "fixed design" and info["draws_re_estimated_from_panel"] == 0
    assert info["permutation"] == "units"
    brute = _brute_force_unit_draws(df, lambda q: fit(q).coef("post"), reps, seed)
    np.testing.assert_allclose(ri.extra["ri_draws"]["post"].to_numpy(), brute, rtol=1e-7, atol=1e-9)
    obs = abs(res.coef("post"))
    expected = (1 + np.sum(np.abs(brute) >= obs - 1e-12)) / (1 + reps)
    assert ri.table.loc["post", "ri_p_value"] == expected
    # the t statistic: the PPML re-fit follows the estimator's IRLS path, so t equals re-estimation
    rit = rs.randomization_inference(res, reps=9, seed=seed, panel=df, level="countyreal", unit="countyreal",
                                     time="year", cohort="first.treat", statistic="t")
    tb = _brute_force_unit_draws(df, lambda q: fit(q).table.loc["post", "estimate"] / fit(q).table.loc["post", "std_error"],
                                 9, seed)
    np.testing.assert_allclose(rit.extra["ri_draws"]["post"].to_numpy(), tb, rtol=1e-9)


def test_state_level_permutation_moves_whole_states() -> None:
    """mpdta's minimum-wage rises are state policies (one first.treat per state), observed in
    counties: level='state' exchanges the states' dates, every county takes its state's new
    date, and the draws equal a loop over the same state permutations."""
    import returnstudy as rs

    df = _mpdta()
    df["state"] = df["countyreal"] // 1000  # FIPS: the state is the county code's leading digits
    assert (df.groupby("state")["first.treat"].nunique() == 1).all()
    df["state_cohort"] = df["first.treat"]
    df["policy"] = df["post"]
    res = rs.twfe(df, outcome="lemp", treatments=["policy"], fe=["countyreal", "year"], cluster="state")
    rng = np.random.default_rng(3)
    q = permute_adoption(df, "policy", "state", rng, unit="countyreal", cohort="state_cohort")
    assert (q.groupby("state")["state_cohort"].nunique() == 1).all()
    np.testing.assert_array_equal(np.sort(q.groupby("state")["state_cohort"].first().to_numpy()),
                                  np.sort(df.groupby("state")["state_cohort"].first().to_numpy()))
    np.testing.assert_array_equal(q["policy"], ((q["state_cohort"] > 0) & (q["year"] >= q["state_cohort"])).astype(float))
    ri = rs.randomization_inference(res, reps=19, seed=5, panel=df, level="state", unit="countyreal",
                                    cohort="state_cohort")
    assert ri.info["randomization_inference"]["permutation"] == "levels"
    states = pd.unique(df["state"].astype(str))
    first = df.groupby(df["state"].astype(str), sort=False)["state_cohort"].first().reindex(states).to_numpy(float)
    first[first == 0] = np.nan
    rng, draws = np.random.default_rng(5), []
    for _ in range(19):
        new = dict(zip(states, rng.permutation(first)))
        ft = df["state"].astype(str).map(new).to_numpy(dtype=float)
        d = df.assign(policy=(df["year"].to_numpy() >= ft).astype(float))
        draws.append(rs.twfe(d, outcome="lemp", treatments=["policy"], fe=["countyreal", "year"], cluster="state").coef("policy"))
    np.testing.assert_allclose(ri.extra["ri_draws"]["policy"].to_numpy(), draws, rtol=1e-9, atol=1e-12)


def test_bad_level_unit_or_cohort_names_the_columns() -> None:
    import returnstudy as rs

    df = _mpdta()
    res = rs.twfe(df, outcome="lemp", treatments=["post"], fe=["countyreal", "year"], cluster="countyreal")
    kw = dict(reps=3, seed=0, panel=df, unit="countyreal", cohort="first.treat")
    with pytest.raises(KeyError, match=r"level='county' is not a column.*'countyreal', 'lpop'"):
        rs.randomization_inference(res, level="county", **kw)
    with pytest.raises(KeyError, match=r"cohort='first_treat' is not a column.*'first.treat'"):
        rs.randomization_inference(res, level="countyreal", **{**kw, "cohort": "first_treat"})
    df["region"] = df["countyreal"] // 10000  # states 10-19, 20-29, ...: dates differ within a region
    with pytest.raises(ValueError, match=r"adoption dates differ within level region=.*within="):
        rs.randomization_inference(res, level="region", **{**kw, "panel": df})


@pytest.mark.parametrize("statistic", ["estimate", "t"])
def test_fixed_design_draws_equal_re_estimation(statistic: str) -> None:
    """PPML and TWFE on a simulated corridor panel: the fixed-design re-fits give the draws (and
    so the p-values) of re-estimating each permuted panel from scratch. PPML draws start from the
    observed fit and take two steps past the criterion: they equal re-estimates iterated to a
    deviance change of 1e-16 (1e-9), closer than the estimator's own cold starts at its default
    tolerance (1e-10), whose t statistics can be off by a few 1e-7."""
    import returnstudy as rs

    p = simulate_panel(seed=11, n_geo=8, n_citizen=40, years=(2008, 2018))
    treat = ["bilateral_binding", "eu_agreement"]
    for res, est, tight in ((rs.ppml(p, treatments=treat), lambda d: rs.ppml(d, treatments=treat),
                             lambda d: rs.ppml(d, treatments=treat, tol=1e-16, maxiter=300)),
                            (rs.twfe(p, treatments=treat, weights="orders"),
                             lambda d: rs.twfe(d, treatments=treat, weights="orders"), None)):
        for level, t in (("citizen", "eu_agreement"), ("corridor", "bilateral_binding")):
            kw = dict(reps=15, seed=4, level=level, panel=p, treatment=t, statistic=statistic)
            fast = randomization_inference(res, **kw)
            slow = randomization_inference(res, estimator=est, **kw)
            assert fast.info["randomization_inference"]["refit"] == "fixed design"
            assert slow.info["randomization_inference"]["refit"] == "re-estimation from the panel"
            np.testing.assert_allclose(fast.extra["ri_draws"][t], slow.extra["ri_draws"][t],
                                       rtol=1e-6 if tight else 1e-7, atol=1e-9)
            assert fast.table.loc[t, "ri_p_value"] == slow.table.loc[t, "ri_p_value"]
            if tight is not None:
                exact = randomization_inference(res, estimator=tight, **kw)
                np.testing.assert_allclose(fast.extra["ri_draws"][t], exact.extra["ri_draws"][t], rtol=1e-9, atol=1e-12)


def test_draws_for_a_seed_are_those_of_the_earlier_permuter() -> None:
    """The permutation order is part of the result: for a seed, the draws and p-values are the
    ones the package gave before the fixed-design re-fit (re-estimating a copied panel per draw;
    values recorded from that implementation)."""
    import returnstudy as rs

    p = simulate_panel(seed=11, n_geo=8, n_citizen=40, years=(2008, 2018))
    res = rs.ppml(p, treatments=["bilateral_binding", "eu_agreement"])
    recorded = {
        ("citizen", "eu_agreement"): (0.35, [0.00614403018506417, 0.029618370671573798, 0.10791356997507176,
                                             0.00042942264670076406]),
        ("corridor", "bilateral_binding"): (0.1, [0.08349213966694041, 0.0013706919815436572, -0.009295105800646792,
                                                  0.012505237941548581]),
    }
    for (level, t), (p_value, first) in recorded.items():
        ri = randomization_inference(res, reps=19, seed=3, level=level, panel=p, treatment=t)
        assert ri.table.loc[t, "ri_p_value"] == pytest.approx(p_value, abs=1e-15)
        np.testing.assert_allclose(ri.extra["ri_draws"][t].to_numpy()[:4], first, rtol=1e-7, atol=1e-10)


def _dense_within(Z: np.ndarray, codes: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """Residuals of the weighted least-squares regression of ``Z`` on every dummy of ``codes``
    (dense dummies, numpy's SVD least squares): the projection the fixed effects remove."""
    D = np.column_stack([np.eye(c.max() + 1)[c] for c in codes])
    sw = np.sqrt(w)[:, None]
    coef = np.linalg.lstsq(D * sw, Z * sw, rcond=None)[0]
    return Z - D @ coef


def test_exact_two_way_projection_equals_dense_least_squares() -> None:
    """Corridor and year effects projected out exactly (FWL with year dummies: the permutation
    re-fits, and the start of FixedEffects.demean) equal the residuals of a dense dummy regression,
    on an unbalanced panel with skewed weights (PPML working weights, the separation check's
    1e11 : 1 weights) and on a design in two disconnected parts."""
    from returnstudy.models._fe import FixedEffects, TwoWayProjection

    rng = np.random.default_rng(0)
    n = 3000
    corridor = rng.integers(0, 400, n)
    year = rng.integers(0, 7, n)
    keep = np.ones(n, dtype=bool)
    keep[rng.choice(n, 500, replace=False)] = False  # unbalanced
    fx = FixedEffects([corridor[keep], year[keep]], names=["corridor", "year"])
    proj = TwoWayProjection.for_(fx)
    assert proj is not None
    Z = rng.normal(size=(keep.sum(), 4)) + corridor[keep, None] * 0.01
    # alternating projections from scratch: a third, redundant dimension (one group) turns the
    # exact start off and changes nothing else
    sweeps_only = FixedEffects([corridor[keep], year[keep], np.zeros(keep.sum(), dtype=int)])
    for w in (np.ones(keep.sum()), np.exp(rng.normal(0, 2, keep.sum())),
              np.where(rng.random(keep.sum()) < 0.5, 1e11, 1.0)):
        exact = proj.demean(Z, w)
        got, sweeps = fx.demean(Z, weights=w, return_iterations=True)
        assert sweeps == 0  # the projection is the fixed point: no sweep is needed to confirm it
        np.testing.assert_array_equal(got, exact)
        np.testing.assert_allclose(got, sweeps_only.demean(Z, weights=w, tol=1e-13), atol=1e-9, rtol=0)
        np.testing.assert_allclose(exact, got, atol=1e-12, rtol=0)
        # the defining properties: weighted group sums of the residual vanish in both dimensions ...
        for codes in fx.codes:
            assert np.abs(np.bincount(codes, weights=w * exact[:, 0])).max() <= 1e-12 * np.abs(w * Z[:, 0]).sum()
        # ... and what was removed is a combination of the dummies (unweighted, well-conditioned check)
        np.testing.assert_allclose(_dense_within(Z - exact, fx.codes, np.ones(len(w))), 0.0, atol=1e-9)
        if w.max() / w.min() < 1e6:  # a dense weighted regression is accurate only for moderate weights
            np.testing.assert_allclose(exact, _dense_within(Z, fx.codes, w), atol=1e-10, rtol=0)
    # two disconnected parts (corridors 0-49 only in years 0-2, 50-99 only in years 3-6)
    c = rng.integers(0, 100, 2000)
    y = np.where(c < 50, rng.integers(0, 3, 2000), rng.integers(3, 7, 2000))
    fx2 = FixedEffects([c, y], names=["corridor", "year"])
    Z2 = rng.normal(size=(2000, 2))
    w2 = np.exp(rng.normal(0, 1, 2000))
    np.testing.assert_allclose(fx2.demean(Z2, weights=w2), _dense_within(Z2, fx2.codes, w2), atol=1e-10, rtol=0)
    assert TwoWayProjection.for_(FixedEffects([corridor], names=["corridor"])) is None
    assert TwoWayProjection.for_(FixedEffects([corridor, rng.integers(0, 300, n)])) is None  # no small dimension


def test_renamed_corridor_panel_gives_the_same_permutations() -> None:
    """Nothing assumes the package's column names: the corridor panel with its identifiers
    renamed (reporter, nationality, pair, period), permuted at level='nationality' within
    'reporter', gives the draws and p-value of the original at level='citizen'."""
    import returnstudy as rs

    p = simulate_panel(seed=2, n_geo=6, n_citizen=30, years=(2010, 2018))
    res = rs.ppml(p, treatments=["eu_agreement"])
    ri = randomization_inference(res, reps=19, seed=8, level="citizen", panel=p)
    names = {"geo": "reporter", "citizen": "nationality", "corridor": "pair", "year": "period",
             "eu_agreement": "policy", "eu_agreement_cohort": "policy_start"}
    q = p.drop(columns=["eu_agreement_years_since"]).rename(columns=names)
    res_q = rs.ppml(q, treatments=["policy"], fe=["pair", "period"], cluster="nationality")
    ri_q = randomization_inference(res_q, reps=19, seed=8, level="nationality", panel=q, unit="pair",
                                   time="period", cohort="policy_start", within="reporter")
    assert ri_q.info["randomization_inference"]["permutation"] == "pattern"
    np.testing.assert_allclose(ri_q.extra["ri_draws"]["policy"], ri.extra["ri_draws"]["eu_agreement"], rtol=1e-9)
    assert ri_q.table.loc["policy", "ri_p_value"] == ri.table.loc["eu_agreement", "ri_p_value"]


def test_multiverse_null_test_fixed_design_equals_re_estimation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The multiverse null test re-fits twfe and ppml specifications on their fixed design; the
    estimates, standard errors and p-values of every draw equal re-estimating each permuted
    sample, so the curve statistics and adjusted p-values are the same."""
    import returnstudy.multiverse_result as mr
    from returnstudy.multiverse import multiverse
    from returnstudy.multiverse_grid import grid_from_dict
    from returnstudy.spec import spec_from_dict

    from tests._simpanel import SIM_GRID, SIM_SPEC_DICT

    spec = spec_from_dict(SIM_SPEC_DICT)
    grid = grid_from_dict(SIM_GRID)
    panel = simulate_panel(seed=4, n_geo=8, n_citizen=30, years=(2010, 2016), bilateral_share=0.3, base_effect=0.2)
    res = multiverse(spec, None, grid, design="full", panel=panel)
    from returnstudy.inference._refit import FixedDesignRefit

    calls = []
    original = FixedDesignRefit.fit
    monkeypatch.setattr(FixedDesignRefit, "fit", lambda self, x, se=False: calls.append(se) or original(self, x, se))
    fast = res.null_test("bilateral_binding", draws=9, seed=3)
    assert calls.count(True) == 36  # every draw of the 4 specifications on the fixed design, with standard errors
    monkeypatch.setattr(mr, "_fixed_design", lambda *a, **k: None)
    slow = res.null_test("bilateral_binding", draws=9, seed=3)
    assert fast.info["fits"] == slow.info["fits"] == 36
    pd.testing.assert_frame_equal(fast.statistics, slow.statistics, rtol=1e-8)
    cols = ["p_permutation", "p_fwer_minp", "p_fwer_romano_wolf", "valid_draws"]
    pd.testing.assert_frame_equal(fast.per_spec[cols], slow.per_spec[cols])
