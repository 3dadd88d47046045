"""Synthetic panel: contract columns, known effects, calibration constants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnstudy.simulate import CALIBRATION, TREATMENTS, calibrate_from_snapshot, effect_path, simulate_panel

PANEL_COLUMNS = [
    "geo", "citizen", "year", "corridor", "orders", "returns", "returns_third_country", "found_illegal",
    "return_rate", "orders_lag1", "orders_flag", "returns_flag", "returns_third_country_flag", "found_illegal_flag",
]


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate_panel(seed=3, n_geo=6, n_citizen=20, years=(2008, 2017), effect="growing")


def test_contract_columns_and_dtypes(small: pd.DataFrame) -> None:
    for col in PANEL_COLUMNS:
        assert col in small.columns, col
    assert small["year"].dtype == np.int64
    assert len(small) == 6 * 20 * 10
    assert not small.duplicated(["geo", "citizen", "year"]).any()
    for t in TREATMENTS:
        assert set(np.unique(small[t])) <= {0.0, 1.0}
        assert str(small[f"{t}_cohort"].dtype) == "Int64"
        ys = small[f"{t}_years_since"]
        treated = ys.notna() & (ys >= 0)
        np.testing.assert_array_equal(small[t].to_numpy() == 1.0, treated.to_numpy())
    assert small.attrs["synthetic"] is True
    assert small.attrs["vintage"]["synthetic"]["seed"] == 3


def test_rates_lags_and_determinism(small: pd.DataFrame) -> None:
    pos = small["orders"] > 0
    np.testing.assert_allclose(small.loc[pos, "return_rate"], small.loc[pos, "returns"] / small.loc[pos, "orders"])
    assert small.loc[~pos, "return_rate"].isna().all()
    lag = small.groupby("corridor")["orders"].shift(1)
    np.testing.assert_array_equal(lag.to_numpy(), small["orders_lag1"].to_numpy())
    again = simulate_panel(seed=3, n_geo=6, n_citizen=20, years=(2008, 2017), effect="growing")
    pd.testing.assert_frame_equal(small, again)
    assert not simulate_panel(seed=4, n_geo=6, n_citizen=20, years=(2008, 2017))["returns"].equals(small["returns"])


def test_eu_treatment_is_citizenship_wide_except_nonparticipants() -> None:
    p = simulate_panel(seed=5, n_geo=8, n_citizen=40, eu_share=0.5, n_nonparticipating_geo=2)
    coh = p.groupby(["citizen", "geo"])["eu_agreement_cohort"].first().unstack("geo")
    never_geos = coh.columns[coh.isna().all(axis=0)]
    assert len(never_geos) == 2
    treated_cits = coh.drop(columns=never_geos)
    # identical adoption year across participating geos of a citizenship
    assert (treated_cits.nunique(axis=1, dropna=False) == 1).all()
    assert treated_cits.iloc[:, 0].notna().sum() == 20


def test_true_effect_matches_shape() -> None:
    e = np.array([-1, 0, 1, 2, 4])
    np.testing.assert_allclose(effect_path("constant", 0.1, e), [0, 0.1, 0.1, 0.1, 0.1])
    np.testing.assert_allclose(effect_path("growing", 0.1, e), [0, 0.1, 0.15, 0.2, 0.3])
    np.testing.assert_allclose(effect_path("fading", 0.1, e), [0, 0.1, 0.1 * np.exp(-0.5), 0.1 * np.exp(-1), 0.1 * np.exp(-2)])
    p = simulate_panel(seed=1, n_geo=5, n_citizen=30, effect="growing", bilateral_share=0.3)
    ys = p["bilateral_binding_years_since"].astype("float64").to_numpy()
    expect = np.where(p["bilateral_binding"] > 0, 0.1 * (1 + 0.5 * np.nan_to_num(ys)), 0.0)
    np.testing.assert_allclose(p["true_effect"], expect)
    with pytest.raises(ValueError, match="effect="):
        simulate_panel(seed=1, effect="linear")


def test_poisson_mean_recovers_effect() -> None:
    """Pooled treated returns / imputed mu0 reproduce exp(true effect) (law of large numbers)."""
    p = simulate_panel(seed=11, n_geo=20, n_citizen=100, base_effect=0.3, bilateral_share=0.3, zero_share=0.0)
    tr = p[p["bilateral_binding"] > 0]
    ratio = tr["returns"].sum() / tr["mu0"].sum()
    assert abs(np.log(ratio) - p.attrs["true_effect"]["att_log_ratio"]) < 0.03


def test_zero_share_near_snapshot() -> None:
    p = simulate_panel(seed=2)
    pos = p[p["orders"] > 0]
    assert abs((pos["returns"] == 0).mean() - CALIBRATION["zero_return_share"]) < 0.1
    active = p.groupby("corridor")["orders"].sum() > 0
    assert abs(active.mean() - CALIBRATION["active_share"]) < 0.03


def test_stored_calibration_equals_recomputed(snapshot_dir: Path) -> None:
    assert calibrate_from_snapshot(snapshot_dir) == CALIBRATION
