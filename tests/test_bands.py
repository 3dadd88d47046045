"""Sup-t bands: critical values against closed forms and simultaneous coverage by simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from returnstudy.inference.bands import sup_t_bands, sup_t_critical_value
from returnstudy.models.callaway_santanna import callaway_santanna
from returnstudy.results import EstimationResult, make_table
from returnstudy.simulate import simulate_panel


def test_critical_value_closed_forms() -> None:
    # one coefficient: the pointwise normal quantile
    assert sup_t_critical_value(np.eye(1), 0.95, 200_000, seed=0) == pytest.approx(1.96, abs=0.02)
    # K independent: P(max|Z| <= c) = (2 Phi(c) - 1)^K
    K = 5
    c_exact = stats.norm.ppf(0.5 + 0.95 ** (1 / K) / 2)
    assert sup_t_critical_value(np.eye(K), 0.95, 200_000, seed=1) == pytest.approx(c_exact, abs=0.02)
    # perfectly correlated: back to 1.96
    assert sup_t_critical_value(np.ones((4, 4)), 0.95, 200_000, seed=2) == pytest.approx(1.96, abs=0.02)
    with pytest.raises(ValueError, match="level"):
        sup_t_critical_value(np.eye(2), 1.5)


def _fake_result(est: np.ndarray, V: np.ndarray) -> EstimationResult:
    idx = list(range(len(est)))
    return EstimationResult(model="test", params=pd.Series(est, index=idx), vcov=pd.DataFrame(V, index=idx, columns=idx),
                            table=make_table(est, np.sqrt(np.diag(V)), index=idx, index_name="rel_period"))


def test_simultaneous_coverage_gaussian_estimates() -> None:
    """Estimates drawn around a known truth with an AR(1) covariance: joint coverage ~95%."""
    K = 8
    rho = 0.6
    V = 0.04 * rho ** np.abs(np.subtract.outer(np.arange(K), np.arange(K)))
    truth = np.linspace(0, 0.5, K)
    rng = np.random.default_rng(0)
    L = np.linalg.cholesky(V)
    c = None
    cover_band = cover_point = 0
    n = 600
    for i in range(n):
        est = truth + L @ rng.standard_normal(K)
        r = sup_t_bands(_fake_result(est, V), reps=4000, seed=1)
        tab = r.table
        cover_band += np.all((tab["band_low"] <= truth) & (truth <= tab["band_high"]))
        cover_point += np.all((tab["ci_low"] <= truth) & (truth <= tab["ci_high"]))
        c = r.info["sup_t"]["critical_value"]
    assert abs(cover_band / n - 0.95) < 0.03
    assert cover_point / n < 0.85
    assert 1.96 < c < stats.norm.ppf(1 - 0.025 / K)


def test_band_coverage_on_simulated_panels() -> None:
    """Callaway-Sant'Anna event study on null panels: the sup-t band covers all zeros in most draws."""
    covered = 0
    n = 25
    for seed in range(n):
        p = simulate_panel(seed=seed, n_geo=8, n_citizen=40, zero_share=0.0, bilateral_share=0.3, base_effect=0.0,
                           years=(2010, 2018))
        r = callaway_santanna(p, control="notyet", event_time=True, min_e=-3, max_e=3)
        b = sup_t_bands(r, reps=4000, seed=seed)
        covered += bool(np.all((b.table["band_low"] <= 0) & (0 <= b.table["band_high"])))
    assert covered >= 20
    assert "band_low" in b.table and b.info["sup_t"]["critical_value"] > 1.96


def test_skips_reference_row_and_adds_pct_for_poisson() -> None:
    est = np.array([0.1, 0.2])
    V = np.diag([0.01, 0.02])
    tab = make_table(est, np.sqrt(np.diag(V)), index=[0, 1], poisson=True, index_name="rel_period")
    ref = pd.DataFrame({c: [np.nan] for c in tab.columns}, index=pd.Index([-1], name="rel_period"))
    ref["estimate"] = 0.0
    tab = pd.concat([tab, ref]).sort_index()
    r = EstimationResult(model="x", params=pd.Series(est, index=[0, 1]),
                         vcov=pd.DataFrame(V, index=[0, 1], columns=[0, 1]), table=tab)
    b = sup_t_bands(r, reps=2000, seed=0)
    assert np.isnan(b.table.loc[-1, "band_low"])
    assert b.table.loc[1, "pct_band_high"] == pytest.approx(100 * np.expm1(b.table.loc[1, "band_high"]))
