"""Poisson pseudo-maximum likelihood with absorbed fixed effects (returnstudy.models.ppml)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from _simpanel import make_panel
from returnstudy.models.ppml import ppml


def test_known_constant_effect_recovered_and_placebo_null() -> None:
    z_true, z_placebo = [], []
    for seed in range(5):
        df = make_panel(seed, effect=0.3, n_geo=10, n_citizen=50)
        res = ppml(df, treatments=["eu_agreement", "placebo"])
        est, se = res.table.loc["eu_agreement", ["estimate", "std_error"]]
        z_true.append((est - 0.3) / se)
        pe, pse = res.table.loc["placebo", ["estimate", "std_error"]]
        z_placebo.append(pe / pse)
        assert res.info["converged"]
        assert res.table.loc["eu_agreement", "irr"] == pytest.approx(np.exp(est))
        assert res.table.loc["eu_agreement", "pct_effect"] == pytest.approx(100 * (np.exp(est) - 1))
        assert res.table.loc["eu_agreement", "pct_ci_low"] == pytest.approx(100 * np.expm1(res.table.loc["eu_agreement", "ci_low"]))
    assert np.all(np.abs(z_true) < 3), z_true
    assert np.all(np.abs(z_placebo) < 3), z_placebo


def test_point_estimates_match_statsmodels_glm_with_dummies() -> None:
    df = make_panel(1, n_geo=4, n_citizen=10, years=(2010, 2016))
    res = ppml(df, treatments=["eu_agreement"], controls=["x"], tol=1e-13)
    sub = df[df["orders"] > 0]
    ref = smf.glm(
        "returns ~ eu_agreement + x + C(corridor) + C(year)", sub,
        family=sm.families.Poisson(), offset=np.log(sub["orders"]),
    ).fit(tol=1e-13)
    assert res.coef("eu_agreement") == pytest.approx(ref.params["eu_agreement"], rel=1e-6)
    assert res.coef("x") == pytest.approx(ref.params["x"], rel=1e-6)


def test_zero_corridors_and_bad_exposure_are_dropped_and_reported() -> None:
    df = make_panel(2, n_geo=6, n_citizen=20, zero_corridors=7)
    df.loc[df.index[[0, 5, 9]], "orders"] = 0.0
    df.loc[df.index[[11]], "orders"] = np.nan
    res = ppml(df, treatments=["eu_agreement"])
    dropped = res.info["dropped"]
    expo_ok = df["orders"] > 0
    assert int((~expo_ok).sum()) >= 4
    assert dropped["orders missing or <= 0 (exposure)"] == int((~expo_ok).sum())
    zero_corr = df[expo_ok].groupby("corridor")["returns"].sum()
    zero_rows = df[expo_ok & df["corridor"].isin(zero_corr[zero_corr == 0].index)]
    key = [k for k in dropped if k.startswith("fixed-effect groups with all-zero outcome")]
    assert len(key) == 1 and dropped[key[0]] == len(zero_rows)
    assert res.info["dropped_fe_groups"]["corridor"] == int((zero_corr == 0).sum())
    assert res.info["n_obs"] == int(expo_ok.sum()) - len(zero_rows)
    assert "all-zero outcome" in res.summary()


def test_exposure_as_regressor_estimates_unit_elasticity() -> None:
    df = make_panel(3, n_geo=10, n_citizen=40)
    res = ppml(df, treatments=["eu_agreement"], exposure_as="regressor")
    est, se = res.table.loc["log_orders", ["estimate", "std_error"]]
    assert abs(est - 1.0) < 3 * se  # the simulated returns are proportional to orders
    assert "regressor log(orders)" in res.summary()


def test_separated_treatment_detected() -> None:
    df = make_panel(4, n_geo=5, n_citizen=12, years=(2010, 2016), orders_scale=3)
    rng = np.random.default_rng(0)
    zero_rows = df.index[(df["returns"] == 0) & (df["orders"] > 0)]
    sep = rng.choice(zero_rows, 3, replace=False)
    df["sep"] = 0.0
    df.loc[sep, "sep"] = 1.0
    res = ppml(df, treatments=["eu_agreement", "sep"])
    assert res.info["n_separated"] == 3
    assert res.info["dropped"]["separated by the regressors (iterative rectifier)"] == 3
    assert "sep" in res.info["dropped_regressors"]
    assert "eu_agreement" in res.table.index


def test_performance_5000_corridors_15_years() -> None:
    df = make_panel(5, n_geo=50, n_citizen=100, years=(2006, 2020), missing_share=0.0)
    assert df["corridor"].nunique() == 5000 and len(df) == 75_000
    ppml(df, treatments=["eu_agreement"])  # warm-up (imports)
    t0 = time.perf_counter()
    res = ppml(df, treatments=["eu_agreement"])
    elapsed = time.perf_counter() - t0
    assert res.info["converged"]
    assert elapsed < 2.0, f"PPML on 75,000 rows took {elapsed:.2f}s"


def test_bad_input() -> None:
    df = make_panel(6, n_geo=3, n_citizen=6, years=(2012, 2015))
    with pytest.raises(ValueError, match="negative"):
        ppml(df.assign(returns=-df["returns"] - 1), treatments=["eu_agreement"])
    with pytest.raises(KeyError, match="exposure column 'persons'"):
        ppml(df, treatments=["eu_agreement"], exposure="persons")
    with pytest.raises(ValueError, match="exposure_as"):
        ppml(df, treatments=["eu_agreement"], exposure_as="weight")


def test_true_two_by_two_returns_did_of_log_rates_with_nan_variance() -> None:
    df = pd.DataFrame(
        {
            "geo": ["NL"] * 4,
            "citizen": ["MA", "MA", "DZ", "DZ"],
            "year": np.array([2014, 2015, 2014, 2015], dtype="int64"),
            "orders": [100.0, 120.0, 80.0, 90.0],
            "returns": [20.0, 45.0, 16.0, 21.0],
            "eu_agreement": [0.0, 1.0, 0.0, 0.0],
        }
    )
    for cluster in ("citizen", None):
        res = ppml(df, treatments="eu_agreement", cluster=cluster)
        # saturated Poisson: fitted rates equal observed rates, beta = DiD of log rates
        did = (np.log(45 / 120) - np.log(20 / 100)) - (np.log(21 / 90) - np.log(16 / 80))
        assert res.coef("eu_agreement") == pytest.approx(did, rel=1e-8)
        assert res.table.loc["eu_agreement", "irr"] == pytest.approx(np.exp(did), rel=1e-8)
        cols = ["std_error", "ci_low", "ci_high", "p_value", "pct_ci_low", "pct_ci_high"]
        assert np.isnan(res.table.loc["eu_agreement", cols].to_numpy(dtype=float)).all()
        assert any("no residual degrees of freedom (4 observations, 4 parameters)" in n for n in res.info["notes"])


def test_duplicated_corridor_years_raise_even_without_exposure() -> None:
    df = make_panel(12, n_geo=3, n_citizen=6, years=(2012, 2015))
    # the duplicate has no orders: it would be dropped before estimation, but the panel is still invalid
    extra = df.iloc[[3]].assign(orders=np.nan)
    c3, y3 = df["corridor"].iloc[3], int(df["year"].iloc[3])
    with pytest.raises(ValueError, match=rf"1 duplicated \(corridor, year\) key\(s\) in 2 rows; first: corridor='{c3}', year={y3}"):
        ppml(pd.concat([df, extra], ignore_index=True), treatments="eu_agreement")
