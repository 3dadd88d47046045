"""Small Monte Carlo: heterogeneous, growing effects with staggered adoption.

TWFE (here PPML with corridor and year effects) is badly biased because already
treated corridors act as controls; the robust estimators are centred on their
estimands and their 95% intervals cover close to nominally.
"""

from __future__ import annotations

import numpy as np
import pytest

from returnstudy.simulate import monte_carlo, summarize_monte_carlo

REPS = 40


@pytest.fixture(scope="module")
def summary():
    draws = monte_carlo(
        reps=REPS, scenarios=("heterogeneous",),
        estimators=("twfe_ppml", "imputation_poisson", "imputation_linear", "sun_abraham_poisson", "callaway_santanna"),
        n_geo=8, n_citizen=30, years=(2008, 2019), zero_share=0.0, bilateral_share=0.4, base_effect=0.2, seed=1000,
    )
    assert draws["estimate"].notna().all()
    return summarize_monte_carlo(draws).loc["heterogeneous"]


def test_twfe_biased_robust_estimators_not(summary) -> None:
    twfe_bias = summary.loc["twfe_ppml", "bias"]
    assert twfe_bias < -0.15
    assert summary.loc["twfe_ppml", "coverage"] < 0.5
    for name in ("imputation_poisson", "imputation_linear", "sun_abraham_poisson", "callaway_santanna"):
        b, sd = summary.loc[name, "bias"], summary.loc[name, "sd_error"]
        assert abs(b) < 0.15 * abs(twfe_bias), name
        assert abs(b) < 3.5 * sd / np.sqrt(REPS) + 0.005, (name, b, sd)


def test_coverage_near_nominal(summary) -> None:
    for name in ("imputation_poisson", "callaway_santanna"):
        assert 0.85 <= summary.loc[name, "coverage"] <= 1.0, name
    # conservative by construction (BJS variance keeps effect heterogeneity within cells)
    assert summary.loc["imputation_linear", "coverage"] >= 0.9
    # clustered Poisson errors with few dominant clusters run somewhat small
    assert summary.loc["sun_abraham_poisson", "coverage"] >= 0.75
    assert summary.loc["imputation_poisson", "mean_se"] == pytest.approx(summary.loc["imputation_poisson", "sd_error"], rel=0.5)
