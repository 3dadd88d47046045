"""Small Monte Carlo: heterogeneous, growing effects with staggered adoption.

TWFE (here PPML with corridor and year effects) is badly biased because already
treated corridors act as controls; the robust estimators are centred on their
estimands. Imputation (linear and Poisson) and the linear Sun-Abraham and
Callaway-Sant'Anna estimators cover close to nominally; the Poisson Sun-Abraham and
Callaway-Sant'Anna intervals under-cover (see ``benchmarks/monte_carlo.py``), and the
tests pin the measured range so that a change in either direction is noticed.
"""

from __future__ import annotations

import numpy as np
import pytest

from returnstudy.simulate import monte_carlo, summarize_monte_carlo

REPS = 40
POISSON_REPS = 60


@pytest.fixture(scope="module")
def summary():
    draws = monte_carlo(
        reps=REPS, scenarios=("heterogeneous",),
        estimators=("twfe_ppml", "imputation_poisson", "imputation_linear", "sun_abraham_poisson", "callaway_santanna",
                    "sun_abraham_linear"),
        n_geo=8, n_citizen=30, years=(2008, 2019), zero_share=0.0, bilateral_share=0.4, base_effect=0.2, seed=1000,
    )
    assert draws["estimate"].notna().all()
    return summarize_monte_carlo(draws).loc["heterogeneous"]


@pytest.fixture(scope="module")
def poisson_summary():
    """Constant effect on panels with the calibrated, heavy-tailed corridor sizes (default zero share)."""
    draws = monte_carlo(
        reps=POISSON_REPS, scenarios=("constant",),
        estimators=("imputation_poisson", "sun_abraham_poisson", "callaway_santanna_poisson"),
        n_geo=8, n_citizen=30, bilateral_share=0.3, base_effect=0.1, seed=20220,
    )
    assert draws["estimate"].notna().all()
    s = summarize_monte_carlo(draws).loc["constant"]
    return s.assign(se_ratio=s["mean_se"] / s["sd_error"])


def test_twfe_biased_robust_estimators_not(summary) -> None:
    twfe_bias = summary.loc["twfe_ppml", "bias"]
    assert twfe_bias < -0.15
    assert summary.loc["twfe_ppml", "coverage"] < 0.5
    for name in ("imputation_poisson", "imputation_linear", "sun_abraham_poisson", "callaway_santanna",
                 "sun_abraham_linear"):
        b, sd = summary.loc[name, "bias"], summary.loc[name, "sd_error"]
        assert abs(b) < 0.15 * abs(twfe_bias), name
        assert abs(b) < 3.5 * sd / np.sqrt(REPS) + 0.005, (name, b, sd)


def test_coverage_near_nominal(summary, poisson_summary) -> None:
    # measured here: imputation Poisson 0.90, imputation linear 1.00, Callaway-Sant'Anna 1.00, Sun-Abraham 0.975
    for name in ("imputation_poisson", "imputation_linear", "callaway_santanna", "sun_abraham_linear"):
        assert summary.loc[name, "coverage"] >= 0.88, (name, summary.loc[name, "coverage"])
    assert summary.loc["imputation_poisson", "mean_se"] == pytest.approx(summary.loc["imputation_poisson", "sd_error"],
                                                                         rel=0.5)
    # imputation Poisson stays near nominal on the heavy-tailed panels too (measured 0.95, mean SE / SD 0.96)
    assert poisson_summary.loc["imputation_poisson", "coverage"] >= 0.88
    assert 0.8 <= poisson_summary.loc["imputation_poisson", "se_ratio"] <= 1.2


def test_poisson_event_study_estimators_under_cover(summary, poisson_summary) -> None:
    """Known limitation, pinned on both sides.

    The citizenship-clustered sandwich variances of the Poisson Sun-Abraham and Callaway-Sant'Anna
    estimators run small when a few large corridors dominate the Poisson weights (the calibrated
    corridor sizes are heavy-tailed: in these panels the largest 5% of corridors carry about 87% of
    the orders and the three largest citizenship clusters about 74%), so their 95% intervals under-cover. Measured with
    ``benchmarks/monte_carlo.py`` (100 panels per scenario, 12 x 50 corridors): coverage 0.81-0.86
    (Sun-Abraham) and 0.85-0.90 (Callaway-Sant'Anna), mean SE / SD of the estimates 0.65-0.84 and
    0.64-0.92. Measured in this test's 60 panels: Sun-Abraham 0.717 (SE ratio 0.56), Callaway-Sant'Anna
    0.883 (0.69). A rise to nominal coverage or a further drop both fail here and call for a look.
    """
    sa, cs = poisson_summary.loc["sun_abraham_poisson"], poisson_summary.loc["callaway_santanna_poisson"]
    assert 0.62 <= sa["coverage"] <= 0.82, sa["coverage"]
    assert 0.45 <= sa["se_ratio"] <= 0.72, sa["se_ratio"]
    assert 0.78 <= cs["coverage"] <= 0.93, cs["coverage"]
    assert 0.55 <= cs["se_ratio"] <= 0.85, cs["se_ratio"]
    # on the equal-sized corridors of the heterogeneous-effect panels Sun-Abraham Poisson under-covers less
    # (measured 0.85)
    assert 0.75 <= summary.loc["sun_abraham_poisson", "coverage"] <= 0.93
