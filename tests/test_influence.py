"""Leave-one-cluster-out influence (returnstudy.influence) against refits by hand,
a simulated panel with one planted outlier citizenship, and the real snapshot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import returnstudy as rs
from returnstudy.inference.influence import influence, without_most_influential
from tests._simpanel import make_panel

TREATMENTS = ["eu_agreement", "bilateral_binding"]


@pytest.fixture(scope="module")
def small_panel() -> pd.DataFrame:
    return make_panel(seed=5, n_geo=6, n_citizen=14, years=(2008, 2016), cohorts=(2011, 2013))


def _row(inf, dropped, term) -> pd.Series:
    t = inf.table
    sel = t[(t["dropped"] == dropped) & (t["term"] == term)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_ppml_leave_one_citizen_out_equals_refit_by_hand(small_panel: pd.DataFrame) -> None:
    full = rs.ppml(small_panel, treatments=TREATMENTS, cluster="citizen")
    inf = influence(full, by="citizen", panel=small_panel, progress=False)
    assert sorted(inf.table["dropped"].unique()) == sorted(small_panel["citizen"].unique())
    treated = small_panel.loc[small_panel["eu_agreement"] > 0, "citizen"].unique()
    for c in (treated[0], sorted(set(small_panel["citizen"]) - set(treated))[0]):
        by_hand = rs.ppml(small_panel[small_panel["citizen"] != c], treatments=TREATMENTS, cluster="citizen")
        for term in TREATMENTS:
            r = _row(inf, c, term)
            h = by_hand.table.loc[term]
            for col in ("estimate", "std_error", "ci_low", "ci_high", "pct_effect"):
                assert r[col] == pytest.approx(h[col], abs=1e-10, rel=1e-10), (c, term, col)
            assert r["change"] == pytest.approx(h["estimate"] - full.table.loc[term, "estimate"], abs=1e-10)
            assert r["pct_change"] == pytest.approx(h["pct_effect"] - full.table.loc[term, "pct_effect"], abs=1e-8)
            assert r["n_obs"] == by_hand.info["n_obs"]
            assert bool(r["identified"])
        assert bool(_row(inf, c, "eu_agreement")["unit_switches"]) == (c in treated)
    np.testing.assert_allclose(inf.full["estimate"], full.table.loc[TREATMENTS, "estimate"], rtol=0, atol=0)


def test_twfe_leave_one_switching_corridor_out_equals_refit_by_hand(small_panel: pd.DataFrame) -> None:
    full = rs.twfe(small_panel, outcome="return_rate", treatments=["eu_agreement"], cluster="citizen", weights="orders")
    inf = influence(full, by="switching", panel=small_panel, progress=False)
    # the switching corridors: every corridor of a treated citizenship adopted inside the window
    d = small_panel.groupby("corridor")["eu_agreement"].nunique()
    assert sorted(inf.table["dropped"]) == sorted(d.index[d > 1])
    corridor = inf.table["dropped"].iloc[3]
    by_hand = rs.twfe(small_panel[small_panel["corridor"] != corridor], outcome="return_rate",
                      treatments=["eu_agreement"], cluster="citizen", weights="orders")
    r = _row(inf, corridor, "eu_agreement")
    assert r["estimate"] == pytest.approx(by_hand.table.loc["eu_agreement", "estimate"], abs=1e-10)
    assert r["std_error"] == pytest.approx(by_hand.table.loc["eu_agreement", "std_error"], abs=1e-10)
    assert r["switching_corridors"] == len(d.index[d > 1]) - 1
    assert "pct_effect" not in inf.table.columns


def test_planted_outlier_citizenship_is_the_most_influential() -> None:
    panel = make_panel(seed=9, n_geo=8, n_citizen=24, effect=0.3, years=(2008, 2018), cohorts=(2011, 2014))
    treated = sorted(panel.loc[panel["eu_agreement"] > 0, "citizen"].unique())
    outlier = treated[2]
    # the outlier's returns are 4 times higher in its treated years: exp(0.3) x 4 instead of exp(0.3)
    hit = (panel["citizen"] == outlier) & (panel["eu_agreement"] > 0)
    panel.loc[hit, "returns"] *= 4.0
    full = rs.ppml(panel, treatments=["eu_agreement"], cluster="citizen")
    top = without_most_influential(full, panel, by="citizen", progress=False).set_index("term").loc["eu_agreement"]
    assert top["dropped"] == outlier
    # the full sample is pulled up by the outlier; without it the estimate is back near the true 0.3
    assert full.table.loc["eu_agreement", "estimate"] > 0.45
    assert abs(top["estimate_without"] - 0.3) < 2 * top["std_error_without"]
    assert top["change"] < -0.15


def test_dropping_the_only_treated_citizenship_leaves_the_treatment_unidentified(small_panel: pd.DataFrame) -> None:
    panel = small_panel.copy()
    only = sorted(panel.loc[panel["bilateral_binding"] > 0, "citizen"].unique())[0]
    panel.loc[panel["citizen"] != only, "bilateral_binding"] = 0.0
    full = rs.ppml(panel, treatments=TREATMENTS, cluster="citizen")
    inf = influence(full, by="citizen", panel=panel, progress=False)
    r = _row(inf, only, "bilateral_binding")
    assert not r["identified"] and np.isnan(r["estimate"]) and r["switching_corridors"] == 0
    assert bool(_row(inf, only, "eu_agreement")["identified"])
    top = inf.most_influential(["bilateral_binding"]).iloc[0]
    assert top["n_unidentified"] == 1 and top["dropped"] != only


def test_robust_estimator_replays_its_recorded_call(small_panel: pd.DataFrame) -> None:
    full = rs.did_imputation(small_panel, treatment="eu_agreement", model="poisson", cluster="citizen")
    inf = influence(full, by="citizen", progress=False)
    c = sorted(small_panel.loc[small_panel["eu_agreement"] > 0, "citizen"].unique())[1]
    by_hand = rs.did_imputation(small_panel[small_panel["citizen"] != c], treatment="eu_agreement", model="poisson",
                                cluster="citizen")
    r = _row(inf, c, "eu_agreement")
    assert r["estimate"] == pytest.approx(by_hand.table.loc["eu_agreement", "estimate"], abs=1e-10)
    assert r["pct_effect"] == pytest.approx(by_hand.table.loc["eu_agreement", "pct_effect"], abs=1e-8)


def test_bad_input_is_refused(small_panel: pd.DataFrame) -> None:
    full = rs.ppml(small_panel, treatments=TREATMENTS, cluster="citizen")
    with pytest.raises(KeyError, match="not a panel column.*citizen"):
        influence(full, by="nationality", panel=small_panel)
    with pytest.raises(ValueError, match="pass the panel the model was fitted on"):
        influence(full, panel=small_panel.iloc[10:])
    with pytest.raises(ValueError, match="pass panel="):
        influence(full)
    with pytest.raises(KeyError, match="terms"):
        influence(full, panel=small_panel, terms=["nope"])


def test_plot_draws_one_panel_per_term_with_the_top_units(small_panel: pd.DataFrame) -> None:
    full = rs.ppml(small_panel, treatments=TREATMENTS, cluster="citizen")
    inf = influence(full, by="citizen", panel=small_panel, progress=False)
    fig = inf.plot(top=5)
    axes = fig.get_axes()
    assert len(axes) == 2
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    sub = inf.table[inf.table["term"] == "eu_agreement"]
    top5 = set(sub.loc[sub["change"].abs().sort_values(ascending=False).index[:5], "dropped"])
    assert set(labels) == top5
    assert axes[0].lines[0].get_xdata()[0] == pytest.approx(full.table.loc["eu_agreement", "pct_effect"])
    with pytest.raises(ValueError, match="scale"):
        inf.plot(scale="irr")
    assert repr(inf).startswith("<InfluenceResult ppml: 14 citizen units")
    assert "eu_agreement" in inf.summary()


def test_real_snapshot_eu_agreement_without_turkey(eurostat_dir) -> None:
    """The headline PPML of the wodc spec: the EU-agreement estimate is carried by one citizenship."""
    run = rs.run_study("wodc", eurostat_dir, models=False)
    sample = run.sample
    treatments = ["eu_agreement", "eu_nonbinding", "bilateral_binding", "bilateral_protocol", "bilateral_nonbinding"]
    full = rs.ppml(sample, treatments=treatments, cluster="citizen")
    top = without_most_influential(full, sample, by="citizen", progress=False).set_index("term")
    eu = top.loc["eu_agreement"]
    assert eu["dropped"] == "TR"
    by_hand = rs.ppml(sample[sample["citizen"] != "TR"], treatments=treatments, cluster="citizen")
    assert eu["pct_effect_without"] == pytest.approx(by_hand.table.loc["eu_agreement", "pct_effect"], abs=1e-8)
    assert abs(eu["full_pct_effect"]) < 2 and eu["pct_effect_without"] > 10


def test_a_call_the_replay_cannot_reproduce_is_refused(small_panel: pd.DataFrame) -> None:
    # twfe/ppml are rebuilt from result.design, which does not record small_sample: the full-sample
    # replay then differs in its standard errors and influence refuses instead of mixing variances
    res = rs.ppml(small_panel, treatments=TREATMENTS, cluster="citizen", small_sample="none")
    with pytest.raises(ValueError, match="std_error"):
        influence(res, panel=small_panel)
    inf = influence(res, panel=small_panel, progress=False,
                    estimator=lambda df: rs.ppml(df, treatments=TREATMENTS, cluster="citizen", small_sample="none"))
    c = sorted(small_panel["citizen"].unique())[0]
    by_hand = rs.ppml(small_panel[small_panel["citizen"] != c], treatments=TREATMENTS, cluster="citizen",
                      small_sample="none")
    assert _row(inf, c, "eu_agreement")["std_error"] == pytest.approx(
        by_hand.table.loc["eu_agreement", "std_error"], abs=1e-12)


def test_any_panel_with_its_own_column_names(small_panel: pd.DataFrame) -> None:
    own = small_panel.drop(columns=["geo", "corridor"]).assign(
        unit_id=small_panel["corridor"].str.replace("-", "/"), period=small_panel["year"], group=small_panel["citizen"]
    ).drop(columns=["citizen", "year"])
    res = rs.ppml(own, treatments=TREATMENTS, unit="unit_id", time="period", cluster="group")
    inf = influence(res, by="switching", panel=own, treatments=["eu_agreement"], progress=False)
    assert inf.by == "unit_id"
    varies = own.groupby("unit_id")["eu_agreement"].nunique()
    assert sorted(inf.table["dropped"].unique()) == sorted(varies.index[varies > 1])
    u = inf.table["dropped"].iloc[0]
    by_hand = rs.ppml(own[own["unit_id"] != u], treatments=TREATMENTS, unit="unit_id", time="period", cluster="group")
    assert _row(inf, u, "eu_agreement")["estimate"] == pytest.approx(by_hand.table.loc["eu_agreement", "estimate"],
                                                                     abs=1e-10)
    assert _row(inf, u, "eu_agreement")["switching_corridors"] == (varies > 1).sum() - 1
    by_group = influence(res, by="group", panel=own, progress=False)
    assert by_group.table["dropped"].nunique() == own["group"].nunique()


@pytest.mark.parametrize("model, by, kwargs", [
    ("ppml", "citizen", {"fe": ["corridor", "year"]}),
    ("ppml", "geo", {"fe": ["corridor", "geo^year"]}),
    ("twfe", "switching", {"fe": ["corridor", "year"], "weights": "orders"}),
])
def test_prepared_design_refits_equal_refits_from_the_panel(small_panel: pd.DataFrame, model: str, by: str,
                                                            kwargs: dict) -> None:
    """twfe/ppml leave-one-out fits drop rows from the prepared design (Poisson fits start from the
    full fit); the same drops made on the panel and re-estimated from scratch (``estimator=``) give
    the same table, errors included. Poisson fits from two starts agree to the IRLS tolerance: the
    warm-started ones are at least as close to a fit iterated to 1e-16 as the cold ones."""
    panel = small_panel
    fn = rs.ppml if model == "ppml" else rs.twfe
    kw = {"treatments": TREATMENTS, "cluster": "citizen", **kwargs}
    full = fn(panel, **kw)
    fast = influence(full, by=by, panel=panel, progress=False).table
    slow = influence(full, by=by, panel=panel, estimator=lambda df: fn(df, **kw), progress=False).table
    assert len(fast) == len(slow) > 0
    rtol = 1e-7 if model == "ppml" else 1e-12  # cold starts stop within the IRLS tolerance
    pd.testing.assert_frame_equal(fast.drop(columns="error"), slow.drop(columns="error"), rtol=rtol, atol=1e-12)
    assert (fast["error"] != "").tolist() == (slow["error"] != "").tolist()
    if model == "ppml":
        tight = influence(full, by=by, panel=panel, progress=False,
                          estimator=lambda df: fn(df, tol=1e-16, maxiter=200, **kw)).table
        for col in ("estimate", "std_error"):
            gap_fast = np.nanmax(np.abs(fast[col] - tight[col]) / tight[col].abs())
            gap_slow = np.nanmax(np.abs(slow[col] - tight[col]) / tight[col].abs())
            assert gap_fast <= max(gap_slow, 1e-11)


def test_prepared_design_refit_that_leaves_no_rows_is_an_unidentified_row() -> None:
    """Two reporters and citizenship-year effects: without one reporter every citizenship-year
    group is a singleton, so no row is left and the refit fails, in both paths alike."""
    panel = make_panel(seed=3, n_geo=2, n_citizen=6, years=(2008, 2014), cohorts=(2010, 2012))
    # a reporter-specific programme from 2011: varies within citizenship-years and within corridors
    panel["pilot"] = ((panel["geo"] == sorted(panel["geo"].unique())[0]) & (panel["year"] >= 2011)).astype(float)
    kw = {"treatments": ["pilot"], "cluster": "citizen", "fe": ["corridor", "citizen^year"], "controls": None}
    full = rs.twfe(panel, outcome="return_rate", **kw)
    fast = influence(full, by="geo", panel=panel, progress=False).table
    slow = influence(full, by="geo", panel=panel, progress=False,
                     estimator=lambda df: rs.twfe(df, outcome="return_rate", **kw)).table
    assert (fast["error"] != "").all() and (slow["error"] != "").all()
    assert not fast["identified"].any() and not slow["identified"].any()


def test_prepared_call_without_rows(small_panel: pd.DataFrame) -> None:
    """Dropping rows from a prepared call equals calling on the smaller panel; dropping every row
    is an error that says so."""
    from returnstudy.models.ppml import prepare_ppml_call

    kw = {"treatments": TREATMENTS, "cluster": "citizen"}
    prepared = prepare_ppml_call(small_panel, **kw)
    citizen = prepared.design.frame["citizen"].to_numpy()
    first = sorted(set(citizen))[0]
    got = prepared.without(citizen == first).fit()
    want = rs.ppml(small_panel[small_panel["citizen"] != first], **kw)
    np.testing.assert_allclose(got.table["estimate"], want.table["estimate"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.table["std_error"], want.table["std_error"], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="no rows left"):
        prepared.without(np.ones(prepared.design.n_obs, dtype=bool))


@pytest.mark.parametrize("model", ["ppml", "twfe"])
def test_fit_output_table_is_the_results_table(small_panel: pd.DataFrame, model: str) -> None:
    """The fit alone (what the leave-one-out loop uses) gives the packaged result's table, number for
    number, and the rows it used."""
    from returnstudy.models.ppml import prepare_ppml_call
    from returnstudy.models.twfe import prepare_twfe_call

    if model == "ppml":
        prepared = prepare_ppml_call(small_panel, treatments=TREATMENTS, cluster="citizen", alpha=0.1)
    else:
        prepared = prepare_twfe_call(small_panel, outcome="return_rate", treatments=TREATMENTS, cluster="citizen")
    drop = prepared.design.frame["citizen"].to_numpy() == sorted(small_panel["citizen"].unique())[0]
    without = prepared.without(drop)
    out, res = without.fit_output(), without.fit()
    pd.testing.assert_frame_equal(without.table(out), res.table, check_exact=True)
    assert out.design.n_obs == res.info["n_obs"] < prepared.design.n_obs


def test_switching_units_equal_distinct_values_per_unit() -> None:
    """Units whose treatment takes two or more distinct non-missing values: numeric columns (with
    missing values, integers, a unit whose values are all missing) and a text column give the
    units that a pandas count of distinct values per unit gives; an absent column gives none."""
    from returnstudy.identification import switching_by_treatment

    rng = np.random.default_rng(0)
    n = 4000
    df = pd.DataFrame({"corridor": rng.choice([f"c{i}" for i in range(250)], n),
                       "a": rng.choice([0.0, 1.0, np.nan], n, p=[0.7, 0.2, 0.1]),
                       "b": (rng.random(n) < 0.02).astype(int),
                       "s": rng.choice(["x", "y"], n, p=[0.99, 0.01])})
    df.loc[df["corridor"] == "c5", "a"] = np.nan
    df["corridor"] = df["corridor"].astype("string")
    got = switching_by_treatment(df, ["a", "b", "s", "absent"])
    for t in ("a", "b", "s"):
        distinct = df.groupby("corridor")[t].nunique(dropna=True)
        want = sorted(distinct.index[distinct > 1])
        assert got[t] == want and 0 < len(want) < 250
    assert got["absent"] == [] and "c5" not in got["a"]


def test_warm_start_matches_rows_by_label_and_starts_cold_without_unique_labels(small_panel: pd.DataFrame) -> None:
    """A leave-one-out Poisson fit warm-started from the full fit equals the cold fit (1e-7 relative,
    the IRLS tolerance) and takes fewer steps; on a panel whose row labels repeat, rows cannot be
    matched and the fit starts cold."""
    from returnstudy.models.ppml import prepare_ppml_call

    kw = {"treatments": TREATMENTS, "cluster": "citizen"}
    prepared = prepare_ppml_call(small_panel, **kw)
    full = prepared.fit()
    warm = prepared.warm_from(full)
    assert warm.start is not None and np.isfinite(warm.start).mean() > 0.9
    drop = prepared.design.frame["citizen"].to_numpy() == sorted(small_panel["citizen"].unique())[1]
    cold_fit, warm_fit = prepared.without(drop).fit(), warm.without(drop).fit()
    np.testing.assert_allclose(warm_fit.table["estimate"], cold_fit.table["estimate"], rtol=1e-9)
    np.testing.assert_allclose(warm_fit.table["std_error"], cold_fit.table["std_error"], rtol=1e-7)
    assert warm_fit.extra["fit"].n_iter < cold_fit.extra["fit"].n_iter
    repeated = small_panel.set_axis(np.zeros(len(small_panel), dtype=int), axis=0)
    again = prepare_ppml_call(repeated, **kw)
    assert again.warm_from(again.fit()).start is None
