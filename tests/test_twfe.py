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
