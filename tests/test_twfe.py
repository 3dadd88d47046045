"""Two-way fixed-effects regression (returnstudy.models.twfe)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from _simpanel import make_panel
from returnstudy.models.twfe import twfe


def _two_by_two() -> pd.DataFrame:
    """Two corridors x two years: a textbook difference-in-differences."""
    rows = []
    rng = np.random.default_rng(0)
    for geo in ("NL", "DE", "FR"):
        for cit, treated in (("MA", 1), ("DZ", 0)):
            for year in (2014, 2015):
                rate = 0.2 + 0.05 * (geo == "DE") + 0.03 * (year == 2015) + 0.1 * treated * (year == 2015)
                rate += rng.normal(0, 0.01)
                rows.append((geo, cit, year, 100.0, 100.0 * rate, float(treated and year == 2015)))
    df = pd.DataFrame(rows, columns=["geo", "citizen", "year", "orders", "returns", "eu_agreement"])
    df["corridor"] = df["geo"] + "-" + df["citizen"]
    df["return_rate"] = df["returns"] / df["orders"]
    return df


def test_two_by_two_did_by_hand() -> None:
    df = _two_by_two()
    res = twfe(df, treatments="eu_agreement", cluster="geo")
    m = df.groupby(["citizen", "year"])["return_rate"].mean()
    did = (m["MA", 2015] - m["MA", 2014]) - (m["DZ", 2015] - m["DZ", 2014])
    assert res.coef("eu_agreement") == pytest.approx(did, rel=1e-10)
    assert res.info["n_obs"] == 12 and res.info["n_corridors"] == 6 and res.info["years"] == (2014, 2015)
    assert res.info["n_clusters"] == 3
    assert res.df_t == 2


def test_point_estimates_match_statsmodels_dummies_weighted() -> None:
    df = make_panel(2, n_geo=5, n_citizen=12, years=(2010, 2016))
    res = twfe(df, treatments=["eu_agreement", "bilateral_binding"], weights="orders", controls="x")
    sub = df[df["orders"] > 0]
    ref = smf.wls(
        "return_rate ~ eu_agreement + bilateral_binding + x + C(corridor) + C(year)", sub, weights=sub["orders"]
    ).fit()
    for t in ("eu_agreement", "bilateral_binding", "x"):
        assert res.coef(t) == pytest.approx(ref.params[t], rel=1e-8)
    assert res.info["weights"] == "orders"
    assert list(res.table.index) == ["eu_agreement", "bilateral_binding", "x"]


def test_log_outcome_zero_rules() -> None:
    df = make_panel(3, n_geo=6, n_citizen=15, years=(2010, 2016), orders_scale=8)
    pos = df[(df["orders"] > 0)]
    n_zero = int((pos["returns"] == 0).sum())
    assert n_zero > 20  # the rule matters on this panel
    drop = twfe(df, "log_return_rate", ["eu_agreement"], log_zero_rule="drop")
    assert drop.info["dropped"]["missing log_return_rate"] == n_zero + int((df["orders"] <= 0).sum())
    manual = df.assign(lr=np.log((df["returns"] / df["orders"]).where((df["returns"] > 0) & (df["orders"] > 0))))
    ref = twfe(manual, "lr", ["eu_agreement"])
    assert drop.coef("eu_agreement") == pytest.approx(ref.coef("eu_agreement"), rel=1e-10)
    assert drop.table.loc["eu_agreement", "std_error"] == pytest.approx(ref.table.loc["eu_agreement", "std_error"], rel=1e-10)
    half = twfe(df, "log_return_rate", ["eu_agreement"], log_zero_rule="add_half")
    manual2 = df.assign(lh=np.log((df["returns"] + 0.5) / (df["orders"] + 0.5)).where(df["orders"] > 0))
    assert half.coef("eu_agreement") == pytest.approx(twfe(manual2, "lh", ["eu_agreement"]).coef("eu_agreement"), rel=1e-10)
    assert "add_half" in half.summary()
    ihs = twfe(df, "ihs_return_rate", ["eu_agreement"])
    manual3 = df.assign(ih=np.arcsinh(df["return_rate"]))
    assert ihs.coef("eu_agreement") == pytest.approx(twfe(manual3, "ih", ["eu_agreement"]).coef("eu_agreement"), rel=1e-10)


def test_known_effect_on_linear_outcome_and_placebo() -> None:
    estimates = []
    for seed in range(6):
        df = make_panel(seed, n_geo=8, n_citizen=40)
        rng = np.random.default_rng(100 + seed)
        cor = pd.factorize(df["corridor"])[0]
        df["y"] = (
            rng.normal(size=cor.max() + 1)[cor] + 0.05 * (df["year"] - 2010) + 0.7 * df["eu_agreement"]
            + rng.normal(0, 1, len(df))
        )
        res = twfe(df, "y", ["eu_agreement", "placebo"])
        est, se = res.table.loc["eu_agreement", ["estimate", "std_error"]]
        assert abs(est - 0.7) < 3.5 * se
        estimates.append(est)
        pe, pse = res.table.loc["placebo", ["estimate", "std_error"]]
        assert abs(pe) < 3 * pse
    assert abs(np.mean(estimates) - 0.7) < 0.05


def test_summary_states_sample_fe_clustering_and_drops() -> None:
    df = make_panel(5, n_geo=4, n_citizen=10, years=(2012, 2016))
    df.loc[df.index[:3], "orders"] = np.nan
    df["return_rate"] = (df["returns"] / df["orders"]).where(df["orders"] > 0)
    res = twfe(df, treatments=["eu_agreement"], fe=("corridor", "geo^year"), cluster=("citizen", "geo"))
    s = res.summary()
    assert "Fixed effects: corridor, geo^year" in s
    assert "clustered by citizen x geo" in s
    assert "missing return_rate: 3" in s
    assert "Data vintage: simulated" in s
    assert res.info["n_clusters"] == [10, 4]
    assert "<table" in res._repr_html_()


def test_bad_arguments_raise_clear_errors() -> None:
    df = make_panel(6, n_geo=3, n_citizen=6, years=(2012, 2015))
    with pytest.raises(KeyError, match="not_a_column"):
        twfe(df, treatments=["not_a_column"])
    with pytest.raises(ValueError, match="log_zero_rule"):
        twfe(df, "log_return_rate", ["eu_agreement"], log_zero_rule="add_one")
    with pytest.raises(ValueError, match="treatments"):
        twfe(df, treatments=[])
    with pytest.raises(KeyError, match="nope"):
        twfe(df, treatments=["eu_agreement"], fe=("corridor", "nope^year"))
    bad = df.assign(w=-1.0)
    with pytest.raises(ValueError, match="negative"):
        twfe(bad, treatments=["eu_agreement"], weights="w")
    # a treatment constant within corridor is absorbed: named in the error
    const = df.assign(always=(df["citizen"] == "C001").astype(float))
    with pytest.raises(ValueError, match="collinear"):
        twfe(const, treatments=["always"])


def test_no_fixed_effects_is_pooled_ols_with_intercept() -> None:
    df = make_panel(7, n_geo=4, n_citizen=10, years=(2010, 2016))
    res = twfe(df, treatments=["eu_agreement"], controls=["x"], fe=(), cluster="citizen")
    sub = df.dropna(subset=["return_rate"])
    ref = smf.ols("return_rate ~ eu_agreement + x", sub).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(sub["citizen"])[0]})
    assert res.coef("eu_agreement") == pytest.approx(ref.params["eu_agreement"], rel=1e-10)
    # statsmodels' cluster correction is G/(G-1) (n-1)/(n-k) with k including the intercept
    assert res.table.loc["eu_agreement", "std_error"] == pytest.approx(ref.bse["eu_agreement"], rel=1e-8)
    assert res.info["fixed_effects"] == []


def _true_2x2() -> pd.DataFrame:
    """Exactly two corridors x two years; NL-MA treated in 2015."""
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
    df["corridor"] = df["geo"] + "-" + df["citizen"]
    df["return_rate"] = df["returns"] / df["orders"]
    return df


@pytest.mark.parametrize("cluster", ["citizen", None, "geo"])
def test_true_two_by_two_returns_did_with_nan_variance(cluster) -> None:
    df = _true_2x2()
    res = twfe(df, treatments="eu_agreement", cluster=cluster)
    r = df.set_index(["citizen", "year"])["return_rate"]
    did = (r["MA", 2015] - r["MA", 2014]) - (r["DZ", 2015] - r["DZ", 2014])  # = 0.375 - 0.2 - (0.2333 - 0.2)
    assert did == pytest.approx(0.175 - 0.1 / 3)
    assert res.coef("eu_agreement") == pytest.approx(did, rel=1e-10)
    row = res.table.loc["eu_agreement"]
    assert np.isnan(row[["std_error", "ci_low", "ci_high", "p_value"]].to_numpy(dtype=float)).all()
    assert np.isnan(res.vcov.to_numpy()).all()
    notes = " ".join(res.info["notes"])
    assert "variance not identified" in notes
    # 4 observations: slope + 2 corridor + 1 year parameters leave no residual degrees of freedom;
    # clustering by geo leaves a single cluster as well
    assert "no residual degrees of freedom (4 observations, 4 parameters)" in notes
    assert ("too few clusters ([1]" in notes) == (cluster == "geo")
    assert "NOT IDENTIFIED" in res.summary()


def test_duplicated_corridor_years_raise() -> None:
    df = make_panel(11, n_geo=3, n_citizen=6, years=(2012, 2015))
    dup = pd.concat([df, df.iloc[[4, 7]]])
    c4, y4 = df["corridor"].iloc[4], int(df["year"].iloc[4])
    with pytest.raises(ValueError, match=rf"2 duplicated \(corridor, year\) key\(s\) in 4 rows; first: corridor='{c4}', year={y4}"):
        twfe(dup, treatments="eu_agreement")
    # with its own unit and time identifiers in the fixed effects, the check uses them
    q = df.assign(unit=df["corridor"], period=df["year"] - 2000)
    q = pd.concat([q, q.iloc[[2]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"1 duplicated \(unit, period\) key\(s\) in 2 rows"):
        twfe(q.drop(columns=["corridor", "year"]), treatments="eu_agreement", fe=("unit", "period"))
