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
    with pytest.raises(ValueError, match="level"):
        permute_adoption(p, "eu_agreement", "geo", rng)


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
