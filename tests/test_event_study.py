"""Event-study estimates (returnstudy.models.event_study)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from _simpanel import make_panel
from returnstudy.models.event_study import event_study, relative_period_dummies

PATH = {k: (0.1 * (k + 1) if k < 3 else 0.4) for k in range(0, 20)}  # 0.1, 0.2, 0.3, 0.4, 0.4, ...


@pytest.mark.parametrize("control", ["never", "notyet"])
def test_ppml_recovers_dynamic_path_and_flat_leads(control: str) -> None:
    for seed in range(3):
        df = make_panel(seed, effect=PATH, n_geo=10, n_citizen=60)
        res = event_study(df, window=(-3, 3), control=control, model="ppml")
        t = res.table
        assert list(t.index) == [-3, -2, -1, 0, 1, 2, 3]
        assert t.loc[-1, "estimate"] == 0 and np.isnan(t.loc[-1, "std_error"]) and t.loc[-1, "irr"] == 1
        for k in (-3, -2):
            assert abs(t.loc[k, "estimate"]) < 3 * t.loc[k, "std_error"]
        for k in range(0, 4):
            true = 0.4 if k == 3 else PATH[k]  # period 3 pools 3+ (all 0.4)
            assert abs(t.loc[k, "estimate"] - true) < 3 * t.loc[k, "std_error"], (seed, k)
        assert res.info["pretrend_test"].p_value > 0.001


def test_twfe_event_study_linear_outcome_and_manual_wald() -> None:
    df = make_panel(7, n_geo=8, n_citizen=50)
    rng = np.random.default_rng(7)
    ys = df["eu_agreement_years_since"].astype("float64").to_numpy()
    eff = np.where(np.isnan(ys), 0.0, np.select([ys == 0, ys == 1, ys >= 2], [0.5, 1.0, 1.5], 0.0))
    cor = pd.factorize(df["corridor"])[0]
    df["y"] = rng.normal(size=cor.max() + 1)[cor] + 0.1 * (df["year"] - 2008) + eff + rng.normal(0, 1, len(df))
    res = event_study(df, window=(-2, 2), model="twfe", outcome="y", other_treatments="ignore")
    t = res.table
    for k, true in ((-2, 0.0), (0, 0.5), (1, 1.0), (2, 1.5)):
        assert abs(t.loc[k, "estimate"] - true) < 3 * t.loc[k, "std_error"]
    # the joint test of leads is the Wald statistic computed by hand
    b = res.params.loc[[-2]].to_numpy()
    V = res.vcov.loc[[-2], [-2]].to_numpy()
    W = float(b @ np.linalg.solve(V, b))
    wt = res.info["pretrend_test"]
    assert wt.statistic == pytest.approx(W, rel=1e-10)
    assert wt.p_value == pytest.approx(stats.f.sf(W, 1, res.df_t), rel=1e-10)
    assert "Joint test of leads" in res.summary()


def test_relative_period_coding_never_vs_notyet() -> None:
    df = pd.DataFrame(
        {
            "geo": ["A"] * 8,
            "citizen": ["X"] * 8,
            "year": np.arange(2010, 2018),
            "corridor": ["A-X"] * 8,
            "eu_agreement_cohort": pd.array([2015] * 8, dtype="Int64"),
            "eu_agreement_years_since": pd.array(np.arange(2010, 2018) - 2015, dtype="Int64"),
        }
    )
    never, periods, dropped = relative_period_dummies(df, "eu_agreement", (-2, 1), -1, "never", True)
    assert periods == [-2, 0, 1]
    # rel -5..-2 pooled into -2; 1, 2 pooled into 1; -1 is the reference (all dummies 0)
    np.testing.assert_array_equal(never["rel_m2"], [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(never["rel_p0"], [0, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(never["rel_p1"], [0, 0, 0, 0, 0, 0, 1, 1])
    notyet, _, _ = relative_period_dummies(df, "eu_agreement", (-2, 1), -1, "notyet", True)
    # years before the window are not-yet-treated controls: no dummy
    np.testing.assert_array_equal(notyet["rel_m2"], [0, 0, 0, 1, 0, 0, 0, 0])
    unbinned, _, dropped = relative_period_dummies(df, "eu_agreement", (-2, 1), -1, "never", False)
    assert len(unbinned) == 4 and dropped == {
        "treated corridor-years before window start -2": 3,
        "treated corridor-years after window end 1": 1,
    }


def test_other_treatments_as_controls_and_dropped() -> None:
    df = make_panel(8, n_geo=6, n_citizen=30)
    res = event_study(df, window=(-2, 2), model="ppml")
    assert "bilateral_binding" in res.info["controls_table"].index
    dropped = event_study(df, window=(-2, 2), model="ppml", other_treatments="drop")
    n_bil = df.loc[df.groupby("corridor")["bilateral_binding"].transform("max") > 0].shape[0]
    key = [k for k in dropped.info["dropped"] if k.startswith("corridors ever treated by")]
    assert dropped.info["dropped"][key[0]] == n_bil


def test_event_study_arguments() -> None:
    df = make_panel(9, n_geo=3, n_citizen=10)
    with pytest.raises(ValueError, match="reference"):
        event_study(df, window=(-2, 2), reference=-4)
    with pytest.raises(ValueError, match="window"):
        event_study(df, window=(1, 3))
    with pytest.raises(KeyError, match="bilateral_nonbinding_cohort"):
        event_study(df, treatment="bilateral_nonbinding")
    with pytest.raises(ValueError, match="control"):
        event_study(df, control="all")
    never_free = df[df["eu_agreement_cohort"].notna()]
    with pytest.raises(ValueError, match="never-treated"):
        event_study(never_free, control="never")


# flat at 0.4 from period 3 to 9 (the longest exposure of adopters inside the panel), then rising:
# only corridors adopted before the panel starts (cohort 1998, years 2008-2020) reach period 10+
PATH_AT = {k: (0.1 * (k + 1) if k < 3 else 0.4 if k <= 9 else 0.4 + 0.15 * (k - 9)) for k in range(0, 30)}


def test_always_treated_corridors_dropped_and_path_recovered() -> None:
    df = make_panel(1, effect=PATH_AT, n_geo=8, n_citizen=40, cohorts=(1998, 2011, 2013, 2015))
    coh = df["eu_agreement_cohort"].astype("float64")
    est_rows = (df["orders"] > 0) & df["returns"].notna()
    first = int(df.loc[est_rows, "year"].min())
    assert first == 2008
    always = (coh <= first).to_numpy()
    n_corr = df.loc[always & est_rows, "corridor"].nunique()
    assert n_corr == 32  # 4 citizenships adopted in 1998 x 8 reporting countries
    res = event_study(df, window=(-3, 3))
    key = [k for k in res.info["dropped"] if k.startswith("always-treated corridors")]
    assert key == [f"always-treated corridors (adopted {first} or earlier: treated in every sample year; {n_corr} corridors)"]
    assert res.info["dropped"][key[0]] == int((always & est_rows).sum())
    assert res.info["n_always_treated"] == n_corr and res.info["always_treated"] == "drop"
    kept = res.extra["design"].frame
    assert not kept["corridor"].isin(df.loc[always, "corridor"]).any()
    t = res.table
    for k in (-3, -2):
        assert abs(t.loc[k, "estimate"]) < 3 * t.loc[k, "std_error"]
    for k in range(0, 4):
        assert abs(t.loc[k, "estimate"] - PATH_AT[k]) < 3 * t.loc[k, "std_error"], k
    # kept, their rising effects sit in the binned period 3 and leak into the year effects
    old = event_study(df, window=(-3, 3), always_treated="keep")
    assert old.info["n_obs"] > res.info["n_obs"] and not any(k.startswith("always") for k in old.info["dropped"])
    assert abs(old.table.loc[3, "estimate"] - 0.4) > 0.3
    # the same corridors go under not-yet-treated controls and with the linear model
    lin = event_study(df, window=(-3, 3), model="twfe", control="notyet", outcome="log_return_rate")
    assert lin.info["n_always_treated"] == n_corr
    with pytest.raises(ValueError, match="always_treated"):
        event_study(df, always_treated="yes")


def test_duplicated_corridor_years_raise() -> None:
    df = make_panel(9, n_geo=3, n_citizen=10)
    dup = pd.concat([df, df.iloc[[6]]], ignore_index=True)
    c, y = df["corridor"].iloc[6], int(df["year"].iloc[6])
    for model in ("ppml", "twfe"):
        with pytest.raises(ValueError, match=rf"1 duplicated \(corridor, year\) key\(s\) in 2 rows; first: corridor='{c}', year={y}"):
            event_study(dup, model=model)


def test_cohort_zero_means_never_treated_and_event_time_is_time_minus_cohort() -> None:
    df = make_panel(9, n_geo=3, n_citizen=10)
    base = event_study(df, treatment="eu_agreement", model="twfe", window=(-2, 2))
    # the first treated period in a column of one's own, 0 for never treated, no years_since column
    q = df.drop(columns=[c for c in df.columns if c.endswith("_years_since")])
    q["adopted"] = q["eu_agreement_cohort"].astype("Float64").fillna(0)
    other = event_study(q, treatment="eu_agreement", cohort="adopted", model="twfe", window=(-2, 2))
    np.testing.assert_array_equal(base.table["estimate"].to_numpy(float), other.table["estimate"].to_numpy(float))
    np.testing.assert_array_equal(base.table["std_error"].to_numpy(float), other.table["std_error"].to_numpy(float))
    assert other.design["cohort"] == "adopted" and other.design["unit"] == "corridor"
    q["adopted"] = q["adopted"] + 0.5
    with pytest.raises(ValueError, match="not a whole number of periods"):
        event_study(q, treatment="eu_agreement", cohort="adopted", model="twfe", window=(-2, 2))


def test_corridor_whose_treatment_switches_off_gets_no_event_time() -> None:
    """An EU agreement suspended two years after entry into force: the corridor is dropped
    (counted and named), so each relative period loses exactly that corridor's rows and the
    estimates equal those without the corridor; nonabsorbing='raise' stops instead."""
    df = make_panel(7, n_geo=8, n_citizen=50)
    rng = np.random.default_rng(7)
    df["y"] = rng.normal(0, 1, len(df)) + 0.1 * (df["year"] - 2008)
    coh = df.groupby("corridor")["eu_agreement_cohort"].first().dropna()
    corridor, g = coh.index[0], int(coh.iloc[0])
    q = df.copy()
    q.loc[(q["corridor"] == corridor) & (q["year"] >= g + 2), "eu_agreement"] = 0.0
    kw = dict(window=(-2, 2), model="twfe", outcome="y", other_treatments="ignore", bin_endpoints=False)
    full = event_study(df, **kw)
    res = event_study(q, **kw)
    ref = event_study(df[df["corridor"] != corridor], **kw)
    np.testing.assert_allclose(res.params.to_numpy(), ref.params.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.vcov.to_numpy(), ref.vcov.to_numpy(), rtol=0, atol=1e-12)
    n_rows = int((df["corridor"] == corridor).sum())
    assert res.info["dropped"]["non-absorbing treatment"] == n_rows
    assert res.info["nonabsorbing_units"] == [corridor]
    # rows of the corridor per relative period (within the window; the others are dropped anyway)
    rel = (df.loc[df["corridor"] == corridor, "year"] - g)
    for k, n in full.info["obs_by_period"].items():
        assert n - res.info["obs_by_period"][k] == int((rel == k).sum()), k
    with pytest.raises(ValueError, match=f"event_study: treatment 'eu_agreement' is not absorbing.*{corridor}"):
        event_study(q, nonabsorbing="raise", **kw)
