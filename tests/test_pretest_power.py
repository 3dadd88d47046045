"""Pre-test power against linear trends (Roth 2022): closed forms and simulation checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from returnstudy.inference.pretest_power import pretest_power, slope_for_power


def test_one_lead_slope_has_the_z_test_closed_form() -> None:
    # one lead at position -1 with sd s: the Wald test is |b/s| > z, so
    # power(slope) = Phi(slope/s - z) + Phi(-slope/s - z)
    s, alpha = 0.2, 0.05
    z = stats.norm.ppf(1 - alpha / 2)
    for p in (0.5, 0.8):
        slope = slope_for_power(p, 1, info=1 / s**2, alpha=alpha)
        power = stats.norm.cdf(slope / s - z) + stats.norm.cdf(-slope / s - z)
        assert power == pytest.approx(p, abs=1e-10)
        # and the root of the closed form itself
        root = optimize.brentq(lambda a: stats.norm.cdf(a / s - z) + stats.norm.cdf(-a / s - z) - p, 0, 10)
        assert slope == pytest.approx(root, rel=1e-8)


def test_several_leads_use_the_noncentral_chi2() -> None:
    sigma = np.array([[0.04, 0.01, 0.0, 0.0], [0.01, 0.05, 0.0, 0.0], [0.0, 0.0, 0.06, 0.02], [0.0, 0.0, 0.02, 0.07]])
    beta = np.array([0.1, 0.05, 0.2, 0.3])
    res = pretest_power(beta, sigma, 2, 2)
    t = np.array([-2.0, -1.0])
    info = t @ np.linalg.inv(sigma[:2, :2]) @ t
    crit = stats.chi2.ppf(0.95, 2)
    for r in res.slopes.itertuples(index=False):
        assert stats.ncx2.sf(crit, 2, r.slope**2 * info) == pytest.approx(r.power, abs=1e-9)
        # simulated pass rate of the pre-test under the trend: 1 - power
        assert r.pass_rate_simulated == pytest.approx(1 - r.power, abs=0.005)
    w = beta[:2] @ np.linalg.inv(sigma[:2, :2]) @ beta[:2]
    assert res.test["statistic"] == pytest.approx(w) and res.test["df"] == 2
    assert res.test["p_value"] == pytest.approx(stats.chi2.sf(w, 2))
    # leads above zero before the reference period: a falling trend, negative slope and bias
    assert res.direction == -1 and (res.slopes["slope"] < 0).all()
    # unconditional bias of a linear trend: slope x periods since the reference period
    b = res.bias
    np.testing.assert_allclose(b["bias"], b["slope"] * b["position"])
    assert list(b["position"].unique()) == [1.0, 2.0]
    # post periods uncorrelated with the leads: passing the pre-test does not change their bias
    np.testing.assert_allclose(b["bias_given_pass"], b["bias"], atol=1e-12)


def test_bias_given_pass_matches_truncated_normal_mean() -> None:
    # one lead, one lag with correlation rho: given |b_pre / s| <= z the lead has the mean of a
    # two-sided truncated normal, which moves the lag by rho s_post / s_pre times the shift
    s_pre, s_post, rho = 0.1, 0.15, 0.6
    sigma = np.array([[s_pre**2, rho * s_pre * s_post], [rho * s_pre * s_post, s_post**2]])
    res = pretest_power(np.array([0.05, 0.2]), sigma, 1, 1, n_sim=400_000, seed=3)
    z = stats.norm.ppf(0.975)
    for r in res.bias.itertuples(index=False):
        mu = -r.slope  # the lead sits at position -1
        a, b = (-z * s_pre - mu) / s_pre, (z * s_pre - mu) / s_pre
        mean_pre = stats.truncnorm.mean(a, b, loc=mu, scale=s_pre)
        expected = r.slope * 1 + rho * s_post / s_pre * (mean_pre - mu)
        assert r.bias_given_pass == pytest.approx(expected, abs=3e-4)
        # conditioning on passing pulls the lead towards zero and so the lag the other way
        assert abs(r.bias_given_pass) > abs(r.bias)


def test_pretest_power_on_an_event_study_result_and_plot() -> None:
    import returnstudy as rs
    from returnstudy.honest_plots import plot_pretest_power

    panel = rs.simulate_panel(seed=4, n_geo=6, n_citizen=30, years=(2008, 2018))
    es = rs.event_study(panel, treatment="bilateral_binding", window=(-3, 2), model="ppml")
    res = rs.pretest_power(es)
    wt = es.info["pretrend_test"]
    assert res.test["statistic"] == pytest.approx(wt.statistic, rel=1e-9)
    assert list(res.bias["rel_period"].unique()) == [0, 1, 2]
    assert "power 80%" in res.summary()
    fig = plot_pretest_power(res)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() in ("--", ":")]
    assert len(lines) == 2
    for ln, r in zip(lines, res.slopes.itertuples(index=False)):
        x, y = ln.get_data()
        np.testing.assert_allclose(y, r.slope * np.asarray(x))
    with pytest.raises(ValueError, match="power=0.01"):
        rs.pretest_power(es, power=[0.01])


def test_pretrend_report_paragraph_states_direction_test_and_breakdown() -> None:
    from returnstudy.honest_report import pretrend_report

    class Fake:
        """An event study with a clear pre-trend: leads fall towards the reference year."""

        model = "event_study_twfe"
        is_poisson = False
        design = {"outcome": "return_rate"}
        info: dict = {}
        extra: dict = {}
        params = pd.Series([0.06, 0.03, 0.10, 0.12], index=[-3, -2, 0, 1])
        vcov = pd.DataFrame(np.diag([1e-4, 1e-4, 4e-4, 4e-4]), index=params.index, columns=params.index)

    rep = pretrend_report(Fake(), "EU agreements (linear)")
    assert "return rates fell relative to the controls" in rep.paragraph
    assert "rejects parallel pre-trends" in rep.paragraph and "not causal without further assumptions" in rep.paragraph
    assert rep.pretest["p_value"] < 0.05
    assert rep.verdict.startswith("pre-trends reject")
    # the breakdown value sits where the robust interval first includes zero
    lo_int = rs_honest(Fake(), [max(rep.breakdown.value - rep.breakdown.tol, 0.0), rep.breakdown.value])
    assert lo_int["lb"].iloc[0] > 0 >= lo_int["lb"].iloc[1]
    row = rep.sensitivity.loc[rep.sensitivity["m"] == 1.0].iloc[0]
    assert rep.interval_at_1 == (row["lb"], row["ub"])
    assert f"{rep.breakdown.value:.2g}" in rep.paragraph


def rs_honest(result, m):
    from returnstudy.inference.honest_did import honest_did

    return honest_did(result, m=m)


def test_pretrend_report_separates_no_effect_from_fragile_effect() -> None:
    """A post-period estimate whose own CI includes zero is 'no significant effect', not 'not robust'."""
    from returnstudy.honest_report import pretrend_report

    class Flat:
        model = "event_study_twfe"
        is_poisson = False
        design = {"outcome": "return_rate"}
        info: dict = {}
        extra: dict = {}
        params = pd.Series([0.001, -0.001, 0.01, 0.0], index=[-3, -2, 0, 1])
        vcov = pd.DataFrame(np.diag([1e-4, 1e-4, 4e-4, 4e-4]), index=params.index, columns=params.index)

    rep = pretrend_report(Flat(), "flat")
    sens = rep.sensitivity.iloc[0]
    assert sens["original_lb"] < 0 < sens["original_ub"]          # 0.01 +- 1.96 * 0.02
    assert rep.breakdown.value == 0
    assert rep.verdict == "pre-trends not rejected; no significant effect to begin with"
    assert "not significant even under exact parallel trends" in rep.paragraph
