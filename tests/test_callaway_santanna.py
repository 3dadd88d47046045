"""Callaway-Sant'Anna: hand-computed 2x2s, equality with Sun-Abraham, closed-form SEs, bias."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from returnstudy.models.callaway_santanna import callaway_santanna
from returnstudy.models.sun_abraham import sun_abraham
from returnstudy.simulate import simulate_panel


def _tiny() -> pd.DataFrame:
    """Units A, B adopt 2002 and 2003; C, D never; years 2000-2003."""
    vals = {"A": [1, 2, 5, 7], "B": [2, 2, 3, 6], "C": [0, 1, 1, 2], "D": [1, 1, 3, 2]}
    coh = {"A": 2002, "B": 2003, "C": None, "D": None}
    rows = []
    for u, ys in vals.items():
        for t, v in zip(range(2000, 2004), ys):
            g = coh[u]
            rows.append({"geo": "X", "citizen": u, "corridor": f"X-{u}", "year": t, "y": float(v),
                         "D": float(g is not None and t >= g), "D_cohort": g})
    df = pd.DataFrame(rows)
    df["D_cohort"] = df["D_cohort"].astype("Int64")
    return df


def test_hand_computed_group_time_cells() -> None:
    p = _tiny()
    r = callaway_santanna(p, treatment="D", outcome="y", control="never", event_time=True, cluster=None)
    gt = r.extra["group_time"].set_index(["cohort", "year"])
    # ATT(2002, 2002): A 2->5 (+3), controls C 1->1, D 1->3 (mean +1) => 2
    assert gt.loc[(2002, 2002), "att"] == pytest.approx(2.0)
    # ATT(2002, 2003): A 2->7 (+5), controls 1->2, 1->2 (+1) => 4
    assert gt.loc[(2002, 2003), "att"] == pytest.approx(4.0)
    # ATT(2003, 2003): B 3->6 (+3), base 2002: C 1->2, D 3->2 (0) => 3
    assert gt.loc[(2003, 2003), "att"] == pytest.approx(3.0)
    # varying pre-period (2003, 2001) with base 2000: B 2->2 (0), C 0->1, D 1->1 (+0.5) => -0.5
    assert gt.loc[(2003, 2001), "att"] == pytest.approx(-0.5)
    # event time 0: cohort-size weights equal (1 unit each) => (2 + 3) / 2
    assert r.table.loc[0, "estimate"] == pytest.approx(2.5)
    overall = callaway_santanna(p, treatment="D", outcome="y", cluster=None)
    assert overall.coef("D") == pytest.approx((2 + 4 + 3) / 3)
    # not-yet: for (2002, 2002) B (adopting 2003) joins the controls: B 2->3 (+1) => 3 - (0 + 2 + 1)/3 = 2
    ny = callaway_santanna(p, treatment="D", outcome="y", control="notyet", event_time=True, cluster=None)
    gt2 = ny.extra["group_time"].set_index(["cohort", "year"])
    assert gt2.loc[(2002, 2002), "att"] == pytest.approx(3 - 1.0)
    assert gt2.loc[(2002, 2002), "n_control"] == 3
    assert gt2.loc[(2002, 2003), "n_control"] == 2


def test_single_cell_se_is_two_sample_formula() -> None:
    p = simulate_panel(seed=2, n_geo=5, n_citizen=30, zero_share=0.0, bilateral_share=0.3, years=(2008, 2015))
    r = callaway_santanna(p, control="never", event_time=True, cluster=None)
    gt = r.extra["group_time"]
    row = gt[(gt["e"] == 0)].iloc[0]
    g, t, b = int(row["cohort"]), int(row["year"]), int(row["base_year"])
    w = p.pivot(index="corridor", columns="year", values="return_rate")
    coh = p.groupby("corridor")["bilateral_binding_cohort"].first()
    d = (w[t] - w[b]).dropna()
    dt, dc = d[coh.reindex(d.index) == g], d[coh.reindex(d.index).isna()]
    assert row["att"] == pytest.approx(dt.mean() - dc.mean(), abs=1e-12)
    se = np.sqrt(dt.var(ddof=0) / len(dt) + dc.var(ddof=0) / len(dc))
    assert row["std_error"] == pytest.approx(se, rel=1e-10)


def test_equals_sun_abraham_cells_in_balanced_panel() -> None:
    """Never-treated control, universal base period, balanced panel: CS ATT(g,t) = SA delta_{g,t-g}."""
    p = simulate_panel(seed=6, n_geo=6, n_citizen=40, zero_share=0.0, bilateral_share=0.3, years=(2008, 2017),
                       effect="heterogeneous")
    p = p[p.groupby("corridor")["return_rate"].transform(lambda s: s.notna().all())]
    cs = callaway_santanna(p, control="never", base_period="universal", event_time=True)
    sa = sun_abraham(p, "bilateral_binding")
    gt = cs.extra["group_time"].set_index(["cohort", "e"])["att"]
    cells = sa.extra["cohort_effects"]["estimate"]
    common = gt.index.intersection(cells.index)
    assert len(common) == len(cells)
    np.testing.assert_allclose(gt.loc[common].to_numpy(), cells.loc[common].to_numpy(), atol=1e-8)
    both = cs.table.index.intersection(sa.table.index)
    np.testing.assert_allclose(cs.table.loc[both, "estimate"], sa.table.loc[both, "estimate"], atol=1e-8)


def test_unbiased_for_heterogeneous_growing_effects() -> None:
    errs = []
    for seed in range(4):
        p = simulate_panel(seed=seed, n_geo=10, n_citizen=60, zero_share=0.0, bilateral_share=0.4,
                           effect="heterogeneous", base_effect=0.3)
        r = callaway_santanna(p, control="notyet")
        tr = p[(p["bilateral_binding"] == 1) & p["return_rate"].notna()]
        errs.append((r.coef("bilateral_binding") - tr["true_effect_rate"].mean()) / r.table.iloc[0]["std_error"])
    assert abs(np.mean(errs)) < 1.0


def test_bad_input() -> None:
    p = _tiny()
    with pytest.raises(ValueError, match="control"):
        callaway_santanna(p, treatment="D", outcome="y", control="all")
    with pytest.raises(ValueError, match="base_period"):
        callaway_santanna(p, treatment="D", outcome="y", base_period="fixed")
    q = p[p["D_cohort"].notna()]
    with pytest.raises(ValueError, match="never treated"):
        callaway_santanna(q, treatment="D", outcome="y", control="never")


def test_poisson_cell_equals_imputation_on_the_2x2() -> None:
    """ATT(g, t) (Poisson) = log(sum Y / sum mu0) of the Poisson imputation estimator on the 2x2 sample."""
    from returnstudy.models.imputation import did_imputation

    p = simulate_panel(seed=4, n_geo=6, n_citizen=40, zero_share=0.0, bilateral_share=0.3, years=(2010, 2017),
                       base_effect=0.3)
    coh = p["bilateral_binding_cohort"].astype("float64")
    g = int(coh.dropna().min())
    t, b = g + 2, g - 1
    sub = p[(coh.eq(g) | coh.isna()) & p["year"].isin([b, t])].copy()
    w = sub.pivot(index="corridor", columns="year", values=["returns", "orders"])
    ok = (w["orders"] > 0).all(axis=1) & (w["returns"].sum(axis=1) > 0)
    ok &= ~(sub.groupby("corridor")["bilateral_binding_cohort"].first().notna() & (w["returns"][b] == 0))
    sub = sub[sub["corridor"].isin(ok[ok].index)]
    cs = callaway_santanna(sub, model="poisson", control="never", event_time=True, cluster=None)
    imp = did_imputation(sub, "bilateral_binding", model="poisson", cluster=None)
    cell = cs.extra["group_time"].set_index(["cohort", "year"]).loc[(g, t), "att"]
    assert cell == pytest.approx(imp.coef("bilateral_binding"), abs=1e-8)


def test_poisson_se_matches_sampling_sd() -> None:
    p = simulate_panel(seed=21, n_geo=8, n_citizen=30, zero_share=0.0, bilateral_share=0.25, effect="constant",
                       years=(2008, 2019), base_effect=0.2)
    rng = np.random.default_rng(0)
    ests, ses = [], []
    for _ in range(60):
        q = p.assign(returns=rng.poisson(p["mu0"] * np.exp(p["true_effect"])).astype(float))
        r = callaway_santanna(q, model="poisson", control="notyet")
        ests.append(r.coef("bilateral_binding"))
        ses.append(r.table.iloc[0]["std_error"])
    ratio = np.sqrt(np.mean(np.square(ses))) / np.std(ests)
    # documented: somewhat small when one corridor dominates a cohort (about 5 treated per cohort here)
    assert 0.6 < ratio < 1.3, ratio
    # log of a ratio of small sums: a small upward (Jensen) bias is documented
    assert abs(np.mean(ests) - 0.2) < 0.03


def _true_2x2() -> pd.DataFrame:
    """Two corridors x two years, X-A adopts in 2001."""
    return pd.DataFrame(
        {"geo": "X", "citizen": ["A", "A", "B", "B"], "corridor": ["X-A", "X-A", "X-B", "X-B"],
         "year": [2000, 2001, 2000, 2001], "orders": [100.0, 120.0, 80.0, 90.0], "returns": [20.0, 45.0, 16.0, 21.0],
         "D": [0.0, 1.0, 0.0, 0.0], "D_cohort": pd.array([2001, 2001, None, None], dtype="Int64")}
    ).assign(return_rate=lambda d: d["returns"] / d["orders"])


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_true_two_by_two_point_estimate_with_nan_variance(model: str) -> None:
    r = callaway_santanna(_true_2x2(), treatment="D", model=model)
    if model == "linear":
        did = (45 / 120 - 20 / 100) - (21 / 90 - 16 / 80)
    else:
        did = np.log(45 / 120) - np.log(20 / 100) - (np.log(21 / 90) - np.log(16 / 80))
    assert r.coef("D") == pytest.approx(did, rel=1e-9)
    # one treated and one control corridor: the 2x2 has no residual degrees of freedom (was SE 0.0)
    assert np.isnan(r.table.loc["D", ["std_error", "ci_low", "ci_high", "p_value"]].to_numpy(dtype=float)).all()
    assert np.isnan(r.extra["group_time"]["std_error"]).all()
    assert any("no residual degrees of freedom in group-time cell(s) (cohort, year) [[2001, 2001]]" in n
               for n in r.info["notes"])


def test_single_cluster_and_partly_identified_event_time() -> None:
    p = _tiny()
    one = callaway_santanna(p, treatment="D", outcome="y", control="never", cluster="geo")
    assert np.isnan(one.table["std_error"]).all() and any("too few clusters ([1]" in n for n in one.info["notes"])
    # without D, not-yet-treated controls: cells with one treated and one control corridor have no
    # residual degrees of freedom; cells with a second control keep their standard error
    r = callaway_santanna(p.loc[p["citizen"] != "D"], treatment="D", outcome="y", control="notyet", event_time=True,
                          cluster=None)
    gt = r.extra["group_time"].set_index(["cohort", "year"])
    # (2002, 2001), base 2000: A +1 vs C +1 and B 0 -> control influence -(+-0.5)/2, SE = sqrt(2 * 0.25^2)
    assert gt.loc[(2002, 2001), "std_error"] == pytest.approx(np.sqrt(0.125))
    for cell in ((2002, 2003), (2003, 2002), (2003, 2003)):
        assert gt.loc[cell, "n_control"] == 1 and np.isnan(gt.loc[cell, "std_error"])
    assert np.isnan(r.table.loc[[-1, 0, 1], "std_error"]).all()
    assert np.isfinite(r.table.loc[-2, "std_error"])  # only cell (2003, 2001): controls A and C
    assert r.table.loc[-1, "estimate"] == pytest.approx(0.75)  # point estimates are unaffected
    ok = callaway_santanna(p, treatment="D", outcome="y", control="never", event_time=True, cluster=None)
    assert np.isfinite(ok.table["std_error"]).all()


def test_duplicated_corridor_years_raise() -> None:
    p = pd.concat([_tiny(), _tiny().iloc[[0, 1]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"2 duplicated \(corridor, year\) key\(s\) in 4 rows; first: corridor='X-A', "
                                         r"year=2000 \(rows \[0, 16\]\)"):
        callaway_santanna(p, treatment="D", outcome="y", cluster=None)


# --------------------------------------------------------------------------- any panel: mpdta
# ``mpdta`` (Callaway & Sant'Anna 2021): 500 US counties 2003-2007, log teen employment ``lemp``,
# first minimum-wage increase ``first.treat`` (0: never), log population ``lpop``.
MPDTA = {"outcome": "lemp", "unit": "countyreal", "time": "year", "cohort": "first.treat"}

# R did, README of github.com/bcallaway11/did (version 2.5.0 devel), `att_gt(yname = "lemp",
# gname = "first.treat", idname = "countyreal", tname = "year", xformla = ~1, data = mpdta,
# est_method = "reg")`, summary(out): ATT(g, t) printed to 4 decimals.
R_ATT_GT = {(2004, 2004): -0.0105, (2004, 2005): -0.0704, (2004, 2006): -0.1373, (2004, 2007): -0.1008,
            (2006, 2004): 0.0065, (2006, 2005): -0.0028, (2006, 2006): -0.0046, (2006, 2007): -0.0412,
            (2007, 2004): 0.0305, (2007, 2005): -0.0027, (2007, 2006): -0.0311, (2007, 2007): -0.0261}
# same README, summary(aggte(out, type = "dynamic")): overall -0.0772 (bootstrap SE 0.0196),
# event times -3..3; summary(aggte(out, type = "group")): overall -0.031 (bootstrap SE 0.0123).
R_DYNAMIC = {-3: 0.0305, -2: -0.0006, -1: -0.0245, 0: -0.0199, 1: -0.0510, 2: -0.1373, 3: -0.1008}
R_GROUP = {2004: -0.0797, 2006: -0.0229, 2007: -0.0261}


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    md = pytest.importorskip("moderndid")
    return md.load_mpdta().to_pandas()


def test_mpdta_reproduces_r_did_published_numbers(mpdta: pd.DataFrame) -> None:
    """R did's published mpdta results (README above). Simple -0.0400 and calendar -0.0417 are the
    aggte(type = "simple"/"calendar") values of the same call as quoted from R did's vignette "Getting
    Started with the did Package" (bcallaway11.github.io/did/articles/did-basics.html; the page text was
    not retrievable here) — moderndid, an independent port, gives them to 1e-16 (test below)."""
    r = callaway_santanna(mpdta, **MPDTA, cluster=None)
    assert r.info["cluster"] == "countyreal" and r.info["n_clusters"] == 500 and r.info["n_units"] == 500
    gt = r.extra["group_time"].set_index(["cohort", "year"])
    assert len(gt) == 12
    for cell, att in R_ATT_GT.items():
        assert gt.loc[cell, "att"] == pytest.approx(att, abs=5e-5), cell
    simple = r.aggregate("simple").overall
    assert round(simple["estimate"], 4) == -0.0400
    assert r.coef("ATT") == pytest.approx(simple["estimate"], abs=1e-15)  # the default table is the simple ATT
    assert 0.0115 < simple["std_error"] < 0.0125  # analytic (R's README reports bootstrap SEs)
    dyn = r.aggregate("dynamic").table
    assert dyn.loc["overall", "estimate"] == pytest.approx(-0.0772, abs=5e-5)
    assert dyn.loc["overall", "std_error"] == pytest.approx(0.0196, rel=0.05)
    for e, att in R_DYNAMIC.items():
        assert dyn.loc[e, "estimate"] == pytest.approx(att, abs=5e-5), e
    grp = r.aggregate("group").table
    assert grp.loc["overall", "estimate"] == pytest.approx(-0.031, abs=5e-4)
    assert grp.loc["overall", "std_error"] == pytest.approx(0.0123, rel=0.05)
    for g, att in R_GROUP.items():
        assert grp.loc[g, "estimate"] == pytest.approx(att, abs=5e-5), g
    assert round(r.aggregate("calendar").overall["estimate"], 4) == -0.0417
    ev = callaway_santanna(mpdta, **MPDTA, cluster=None, event_time=True)
    np.testing.assert_allclose(ev.table["estimate"], dyn["estimate"].iloc[:-1].to_numpy(dtype=float), atol=1e-15)
    np.testing.assert_allclose(ev.table["std_error"], dyn["std_error"].iloc[:-1].to_numpy(dtype=float), atol=1e-15)


# R did with the covariate, as printed in the ddml package's article "Diff-in-Diff with ddml"
# (github.com/thomaswiemann/ddml, articles/did.md): `att_gt(yname = "lemp", gname = "first.treat",
# idname = "countyreal", tname = "year", xformla = ~lpop, data = mpdta)` (est_method "dr", the
# default) and `aggte(., type = "dynamic")`: overall -0.0804 (bootstrap SE 0.0195).
R_ATT_GT_LPOP_DR = {(2004, 2004): -0.0145, (2004, 2005): -0.0764, (2004, 2006): -0.1404, (2004, 2007): -0.1069,
                    (2006, 2004): -0.0005, (2006, 2005): -0.0062, (2006, 2006): 0.0010, (2006, 2007): -0.0413,
                    (2007, 2004): 0.0267, (2007, 2005): -0.0046, (2007, 2006): -0.0284, (2007, 2007): -0.0288}
R_DYNAMIC_LPOP_DR = {-3: 0.0267, -2: -0.0036, -1: -0.0232, 0: -0.0211, 1: -0.0530, 2: -0.1404, 3: -0.1069}


def test_mpdta_covariate_spec_reproduces_r_did_published_numbers(mpdta: pd.DataFrame) -> None:
    """Doubly robust 2x2s with lpop (values above, R did via the ddml article)."""
    r = callaway_santanna(mpdta, **MPDTA, cluster=None, covariates=["lpop"])  # est_method="dr" by default
    gt = r.extra["group_time"].set_index(["cohort", "year"])
    for cell, att in R_ATT_GT_LPOP_DR.items():
        assert gt.loc[cell, "att"] == pytest.approx(att, abs=5e-5), cell
    dyn = r.aggregate("dynamic").table
    assert dyn.loc["overall", "estimate"] == pytest.approx(-0.0804, abs=5e-5)
    assert dyn.loc["overall", "std_error"] == pytest.approx(0.0195, rel=0.05)
    for e, att in R_DYNAMIC_LPOP_DR.items():
        assert dyn.loc[e, "estimate"] == pytest.approx(att, abs=5e-5), e


def _moderndid_fit(mpdta: pd.DataFrame, panel: pd.DataFrame | None = None, **kwargs: Any) -> Any:
    md = pytest.importorskip("moderndid")
    import polars as pl

    data = pl.from_pandas(panel if panel is not None else mpdta)
    return md.att_gt(data, yname="lemp", tname="year", idname="countyreal", gname="first.treat", boot=False,
                     cband=False, **kwargs)


def _assert_same_as_moderndid(ours: Any, theirs: Any, tol: float = 1e-10, **agg: Any) -> None:
    md = pytest.importorskip("moderndid")
    cells = {(g, t): (a, s) for g, t, a, s in zip(theirs.groups, theirs.times, theirs.att_gt, theirs.se_gt)}
    gt = ours.extra["group_time"]
    for row in gt.itertuples():
        a, s = cells[(row.cohort, row.year)]
        assert row.att == pytest.approx(a, abs=tol) and row.std_error == pytest.approx(s, abs=tol)
    # moderndid also lists the universal-base reference cells (ATT = 0), which are not reported here
    assert len(gt) == sum(1 for a, s in zip(theirs.att_gt, theirs.se_gt) if not (a == 0 and not s > 0))
    for kind in ("simple", "dynamic", "group", "calendar"):
        kw = {k: v for k, v in agg.items() if kind == "dynamic" or k == "max_e" and kind != "calendar"}
        a = ours.aggregate(kind, **kw)
        b = md.aggte(theirs, type=kind, boot=False, cband=False, **kw)
        assert a.overall["estimate"] == pytest.approx(b.overall_att, abs=tol), kind
        assert a.overall["std_error"] == pytest.approx(b.overall_se, abs=tol), kind
        if kind != "simple":
            np.testing.assert_allclose(a.table["estimate"].iloc[:-1].to_numpy(dtype=float), b.att_by_event, atol=tol)
            np.testing.assert_allclose(a.table["std_error"].iloc[:-1].to_numpy(dtype=float), b.se_by_event, atol=tol)
            assert list(a.table.index[:-1]) == [int(x) for x in b.event_times]


@pytest.mark.parametrize("options, theirs", [
    ({}, {"est_method": "reg"}),
    ({"control": "notyet"}, {"control_group": "notyettreated", "est_method": "reg"}),
    ({"base_period": "universal"}, {"base_period": "universal", "est_method": "reg"}),
    ({"anticipation": 1, "control": "notyet"}, {"anticipation": 1, "control_group": "notyettreated",
                                                 "est_method": "reg"}),
    ({"covariates": ["lpop"], "est_method": "reg"}, {"xformla": "~lpop", "est_method": "reg"}),
    ({"covariates": ["lpop"], "est_method": "ipw"}, {"xformla": "~lpop", "est_method": "ipw"}),
    ({"covariates": ["lpop"], "est_method": "dr"}, {"xformla": "~lpop", "est_method": "dr"}),
    ({"covariates": ["lpop"], "control": "notyet"}, {"xformla": "~lpop", "control_group": "notyettreated"}),
])
def test_mpdta_equals_moderndid(mpdta: pd.DataFrame, options: dict[str, Any], theirs: dict[str, Any]) -> None:
    """moderndid (an independent Python port of R did/DRDID): every ATT(g, t), its analytic SE and every
    aggregation agree to 1e-10 (measured: 1e-16 without covariates, 4e-13 with the logit first step)."""
    ours = callaway_santanna(mpdta, **MPDTA, cluster=None, **options)
    _assert_same_as_moderndid(ours, _moderndid_fit(mpdta, **theirs))


def test_mpdta_covariates_change_the_estimate(mpdta: pd.DataFrame) -> None:
    """Conditioning on log population moves the simple ATT (DR -0.0418 vs -0.0400 unconditional),
    and the three 2x2 estimators differ (they coincide only when the models are saturated)."""
    simple = {m: callaway_santanna(mpdta, **MPDTA, cluster=None, covariates=["lpop"], est_method=m)
              .aggregate("simple").overall["estimate"] for m in ("reg", "ipw", "dr")}
    assert simple["dr"] == pytest.approx(-0.04175, abs=5e-5)
    assert simple["reg"] == pytest.approx(-0.04197, abs=5e-5) and simple["ipw"] == pytest.approx(-0.04178, abs=5e-5)
    # a constant covariate duplicates the intercept: a clear error, not a silently dropped column
    one = mpdta.assign(c=1.0)
    with pytest.raises(ValueError, match="collinear"):
        callaway_santanna(one, **MPDTA, cluster=None, covariates=["c"])


@pytest.mark.parametrize("balance_e, min_e, max_e", [(1, None, None), (None, -2, 2), (0, -1, None), (None, None, 1)])
def test_mpdta_event_window_options_equal_moderndid(mpdta: pd.DataFrame, balance_e: Any, min_e: Any, max_e: Any) -> None:
    kw = {k: v for k, v in {"balance_e": balance_e, "min_e": min_e, "max_e": max_e}.items() if v is not None}
    ours = callaway_santanna(mpdta, **MPDTA, cluster=None)
    _assert_same_as_moderndid(ours, _moderndid_fit(mpdta, est_method="reg"), **kw)


def _unbalanced(mpdta: pd.DataFrame) -> pd.DataFrame:
    drop = mpdta[mpdta["year"] > 2003].sample(frac=0.1, random_state=3).index
    return mpdta.drop(index=drop).reset_index(drop=True)


def test_unbalanced_panel_balance_equals_r_default(mpdta: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
    """unbalanced_panel='balance' is R did's default (units observed in every period): equal to moderndid
    (allow_unbalanced_panel=False) on a panel missing 10% of the post-2003 rows (seeded)."""
    un = _unbalanced(mpdta)
    with caplog.at_level("INFO", logger="returnstudy.models.callaway_santanna"):
        ours = callaway_santanna(un, **MPDTA, cluster=None, unbalanced_panel="balance")
    theirs = _moderndid_fit(mpdta, un, est_method="reg")
    assert ours.info["n_units_dropped_unbalanced"] == 500 - theirs.n_units == 178
    assert any("dropped 178 units not observed in all 5 periods" in m for m in caplog.messages)
    _assert_same_as_moderndid(ours, theirs)
    dr = callaway_santanna(un, **MPDTA, cluster=None, unbalanced_panel="balance", covariates=["lpop"])
    _assert_same_as_moderndid(dr, _moderndid_fit(mpdta, un, xformla="~lpop"))
    # the package default keeps every unit observed in t and the base period: a different sample
    pairwise = callaway_santanna(un, **MPDTA, cluster=None)
    assert pairwise.info["n_units"] == 500
    assert abs(pairwise.coef("ATT") - ours.coef("ATT")) > 1e-3


def test_unbalanced_panel_allow_is_four_period_means() -> None:
    """unbalanced_panel='allow' (R's allow_unbalanced_panel): each 2x2 compares four period means over the
    units observed in each period; influence values sum within units."""
    p = _tiny()
    p = p[~((p["citizen"] == "C") & (p["year"] == 2002))]  # C unobserved in 2002
    r = callaway_santanna(p, treatment="D", outcome="y", control="never", event_time=True, cluster=None,
                          unbalanced_panel="allow")
    gt = r.extra["group_time"].set_index(["cohort", "year"])
    # ATT(2002, 2002), base 2001: A 2->5 (+3); controls in 2002: D 3; in 2001: C 1, D 1 => 3 - (3 - 1) = 1
    assert gt.loc[(2002, 2002), "att"] == pytest.approx(3 - (3.0 - 1.0))
    # ATT(2003, 2003), base 2002: B 3->6 (+3); controls in 2003: C 2, D 2; in 2002: D 3 => 3 - (2 - 3) = 4
    assert gt.loc[(2003, 2003), "att"] == pytest.approx(3 - (2.0 - 3.0))
    # influence of (2002, 2002): C contributes +(1 - 1)/2 = 0; D -(3 - 3)/1 + (1 - 1)/2 = 0; A zero: SE 0
    # (2003, 2001) base 2000, all observed: same as the panel 2x2
    pair = callaway_santanna(p, treatment="D", outcome="y", control="never", event_time=True, cluster=None)
    pg = pair.extra["group_time"].set_index(["cohort", "year"])
    assert gt.loc[(2003, 2001), "att"] == pytest.approx(pg.loc[(2003, 2001), "att"])
    assert gt.loc[(2003, 2001), "std_error"] == pytest.approx(pg.loc[(2003, 2001), "std_error"])
    # (2002, 2002) without C: pairwise uses D only as control
    assert pg.loc[(2002, 2002), "att"] == pytest.approx(3 - 2.0)


def test_allow_equals_pairwise_on_a_balanced_panel() -> None:
    p = simulate_panel(seed=3, n_geo=5, n_citizen=30, zero_share=0.0, bilateral_share=0.3, years=(2008, 2015))
    p = p[p.groupby("corridor")["return_rate"].transform(lambda s: s.notna().all())]
    a = callaway_santanna(p, control="notyet", event_time=True, unbalanced_panel="allow")
    b = callaway_santanna(p, control="notyet", event_time=True)
    c = callaway_santanna(p, control="notyet", event_time=True, unbalanced_panel="balance")
    for other in (b, c):
        np.testing.assert_allclose(a.table[["estimate", "std_error"]], other.table[["estimate", "std_error"]],
                                   rtol=1e-12, atol=1e-14)
    assert c.info["n_units_dropped_unbalanced"] == 0


def test_aggregate_matches_the_default_tables_on_the_package_panel() -> None:
    p = simulate_panel(seed=11, n_geo=8, n_citizen=40, years=(2008, 2018))
    r = callaway_santanna(p, control="notyet")
    ev = callaway_santanna(p, control="notyet", event_time=True)
    assert r.aggregate("simple").overall["estimate"] == pytest.approx(r.coef("bilateral_binding"), abs=1e-14)
    assert r.aggregate("simple").overall["std_error"] == pytest.approx(r.table.iloc[0]["std_error"], abs=1e-14)
    dyn = r.aggregate("dynamic").table
    np.testing.assert_allclose(dyn["estimate"].iloc[:-1].to_numpy(dtype=float), ev.table["estimate"], atol=1e-14)
    np.testing.assert_allclose(dyn["std_error"].iloc[:-1].to_numpy(dtype=float), ev.table["std_error"], atol=1e-14)
    # overall of dynamic: plain mean of the post event times
    post = [k for k in dyn.index[:-1] if k >= 0]
    assert dyn.loc["overall", "estimate"] == pytest.approx(dyn.loc[post, "estimate"].mean(), abs=1e-14)
    # group: each cohort's plain mean of its post cells; calendar: cohort-size weights within a year
    gt = r.extra["group_time"]
    grp = r.aggregate("group").table
    for g, cells in gt[gt["e"] >= 0].groupby("cohort"):
        assert grp.loc[g, "estimate"] == pytest.approx(cells["att"].mean(), abs=1e-14)
    sizes = r.info["cohorts"]
    cal = r.aggregate("calendar").table
    for t, cells in gt[gt["e"] >= 0].groupby("year"):
        w = np.array([sizes[int(g)] for g in cells["cohort"]], dtype=float)
        assert cal.loc[t, "estimate"] == pytest.approx(np.average(cells["att"], weights=w), abs=1e-14)
    s = r.aggregate("group").summary()
    assert "aggregation: group" in s and "overall" in s and "cluster: citizen" in s
    assert "<table" in r.aggregate("calendar")._repr_html_()


def test_poisson_aggregations_on_the_proportional_scale() -> None:
    """Every aggregation of the Poisson model is reported as a percent change in the rate with delta-method
    SE 100 exp(b) se; on a panel with a constant effect of log(1.2) the overall effects recover +20%."""
    p = simulate_panel(seed=21, n_geo=10, n_citizen=60, zero_share=0.0, bilateral_share=0.3, effect="constant",
                       years=(2008, 2019), base_effect=np.log(1.2))
    r = callaway_santanna(p, model="poisson", control="notyet")
    z = 1.959963984540054
    for kind in ("simple", "dynamic", "group", "calendar"):
        t = r.aggregate(kind).table
        b, se = t["estimate"].to_numpy(dtype=float), t["std_error"].to_numpy(dtype=float)
        np.testing.assert_allclose(t["pct_effect"], 100 * np.expm1(b), rtol=1e-12)
        np.testing.assert_allclose(t["pct_std_error"], 100 * np.exp(b) * se, rtol=1e-12)
        np.testing.assert_allclose(t["pct_ci_low"], t["pct_effect"] - z * t["pct_std_error"], rtol=1e-9)
        np.testing.assert_allclose(t["pct_ci_high"], t["pct_effect"] + z * t["pct_std_error"], rtol=1e-9)
        o = t.loc["overall"]
        assert abs(o["pct_effect"] - 20.0) < 3 * o["pct_std_error"], (kind, o["pct_effect"], o["pct_std_error"])


def test_any_panel_column_names_and_errors(mpdta: pd.DataFrame) -> None:
    cols = r"\['year', 'countyreal', 'lpop', 'lemp', 'first.treat', 'treat'\]"
    with pytest.raises(KeyError, match=r"unit='county'; columns in panel: " + cols):
        callaway_santanna(mpdta, outcome="lemp", unit="county", time="year", cohort="first.treat")
    with pytest.raises(KeyError, match=r"cohort='first_treat', covariates\[0\]='pop'; columns in panel: " + cols):
        callaway_santanna(mpdta, outcome="lemp", unit="countyreal", cohort="first_treat", covariates=["pop"])
    with pytest.raises(KeyError, match=r"cluster='state'"):
        callaway_santanna(mpdta, **MPDTA, cluster="state")
    with pytest.raises(KeyError, match=r"treatment column 'bilateral_binding'.*cohort=.*columns in panel: " + cols):
        callaway_santanna(mpdta, outcome="lemp", unit="countyreal")
    bad = mpdta.copy()
    bad.loc[bad.index[0], "first.treat"] = 2006
    with pytest.raises(ValueError, match=r"'first.treat' varies within countyreal=8001"):
        callaway_santanna(bad, **MPDTA)
    with pytest.raises(ValueError, match=r"unbalanced_panel='drop': expected one of \['pairwise', 'balance', 'allow'\]"):
        callaway_santanna(mpdta, **MPDTA, unbalanced_panel="drop")
    with pytest.raises(ValueError, match=r"est_method='aipw'"):
        callaway_santanna(mpdta, **MPDTA, covariates=["lpop"], est_method="aipw")
    with pytest.raises(ValueError, match="type='event'"):
        callaway_santanna(mpdta, **MPDTA).aggregate("event")
    with pytest.raises(ValueError, match="do not apply to type='calendar'"):
        callaway_santanna(mpdta, **MPDTA).aggregate("calendar", max_e=2)
    # the treatment indicator may be named: it is checked against the cohort column, and names the term
    r = callaway_santanna(mpdta.assign(D=lambda d: ((d["first.treat"] > 0) & (d["year"] >= d["first.treat"])) * 1.0),
                          treatment="D", **MPDTA)
    assert r.coef("D") == pytest.approx(-0.039951, abs=1e-6)
    # the package's own cohort column works as before with other unit/time names
    p = _tiny().rename(columns={"corridor": "pair", "year": "period"}).drop(columns=["citizen", "geo"])
    a = callaway_santanna(p, treatment="D", outcome="y", unit="pair", time="period")
    assert a.info["cluster"] == "pair" and a.coef("D") == pytest.approx((2 + 4 + 3) / 3)


def _conditional_trends_panel(seed: int = 5, n: int = 3000) -> pd.DataFrame:
    """Units with covariate x: adoption is likelier for high x and untreated trends rise with x,
    so parallel trends hold only conditional on x. True ATT = 1 in every post cell."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    treated = rng.random(n) < 1 / (1 + np.exp(-(0.8 * x - 0.5)))
    g = np.where(treated, rng.choice([2003, 2004], size=n), 0)
    a = rng.normal(size=n) + x
    rows = []
    for t in range(2001, 2006):
        d = (g > 0) & (t >= g)
        y = a + 0.2 * (t - 2001) + 0.5 * x * (t - 2001) + 1.0 * d + rng.normal(size=n)
        rows.append(pd.DataFrame({"id": np.arange(n), "t": t, "g": g, "x": x, "y": y}))
    return pd.concat(rows, ignore_index=True)


def test_covariates_remove_the_bias_of_conditional_parallel_trends() -> None:
    p = _conditional_trends_panel()
    kw = {"outcome": "y", "unit": "id", "time": "t", "cohort": "g"}
    plain = callaway_santanna(p, **kw, cluster=None).aggregate("simple").overall
    assert (plain["estimate"] - 1.0) / plain["std_error"] > 5  # unconditional: biased upwards
    for method in ("reg", "ipw", "dr"):
        r = callaway_santanna(p, **kw, cluster=None, covariates=["x"], est_method=method)
        o = r.aggregate("simple").overall
        assert abs(o["estimate"] - 1.0) < 3 * o["std_error"], (method, o["estimate"], o["std_error"])
        pre = r.aggregate("dynamic").table.loc[[-2]]
        assert abs(pre["estimate"].iloc[0]) < 3 * pre["std_error"].iloc[0]  # placebo pre-period near zero


@pytest.mark.parametrize("method", ["reg", "ipw", "dr"])
def test_allow_unbalanced_equals_repeated_cross_section_estimators(mpdta: pd.DataFrame, method: str) -> None:
    """With every unit observed once (true repeated cross-sections) unbalanced_panel='allow' is R did's
    panel = FALSE estimator: equal to moderndid's repeated-cross-section 2x2s (reg_did_rc, std_ipw_did_rc,
    drdid_rc), without covariates and with lpop, in every ATT(g, t), SE and aggregation to 1e-10
    (measured 4e-15 without covariates, 5e-12 with the logit first step)."""
    rc = mpdta.sample(frac=0.5, random_state=1).reset_index(drop=True).assign(rid=lambda d: np.arange(len(d)))
    kw = {"outcome": "lemp", "unit": "rid", "time": "year", "cohort": "first.treat", "cluster": None,
          "unbalanced_panel": "allow"}
    md = pytest.importorskip("moderndid")
    import polars as pl

    data = pl.from_pandas(rc)
    plain = callaway_santanna(rc, **kw)
    theirs = md.att_gt(data, yname="lemp", tname="year", idname="rid", gname="first.treat", boot=False, cband=False,
                       est_method=method, panel=False)
    _assert_same_as_moderndid(plain, theirs)
    cov = callaway_santanna(rc, **kw, covariates=["lpop"], est_method=method)
    theirs = md.att_gt(data, yname="lemp", tname="year", idname="rid", gname="first.treat", boot=False, cband=False,
                       est_method=method, panel=False, xformla="~lpop")
    _assert_same_as_moderndid(cov, theirs)


def test_allow_with_covariates_sums_influence_within_units(mpdta: pd.DataFrame) -> None:
    """On an unbalanced panel, 'allow' with covariates has the repeated-cross-section point estimates
    (unit labels do not matter) and sums each unit's observation-level influence values."""
    un = _unbalanced(mpdta)
    kw = {"outcome": "lemp", "time": "year", "cohort": "first.treat", "cluster": None, "unbalanced_panel": "allow",
          "covariates": ["lpop"]}
    panel = callaway_santanna(un, unit="countyreal", **kw)
    rows = callaway_santanna(un.assign(rid=np.arange(len(un))), unit="rid", **kw)
    a, b = panel.extra["group_time"], rows.extra["group_time"]
    np.testing.assert_allclose(a["att"], b["att"], atol=1e-12)
    psi_rows = rows.extra["group_time_effects"].psi
    unit_of_row = pd.factorize(un["countyreal"])[0]
    summed = np.vstack([np.bincount(unit_of_row, weights=psi_rows[:, j], minlength=unit_of_row.max() + 1)
                        for j in range(psi_rows.shape[1])]).T
    # unit codes follow first appearance in both fits
    np.testing.assert_allclose(panel.extra["group_time_effects"].psi, summed, atol=1e-14)
    assert not np.allclose(a["std_error"], b["std_error"])


def test_adoption_period_derived_from_the_treatment_indicator(mpdta: pd.DataFrame) -> None:
    """Without a cohort column the first period with treatment == 1 is the adoption period: same results."""
    d = mpdta.assign(D=lambda x: ((x["first.treat"] > 0) & (x["year"] >= x["first.treat"])) * 1.0)
    ids = {"outcome": "lemp", "unit": "countyreal", "time": "year", "cluster": None}
    for extra in ({}, {"covariates": ["lpop"]}):
        a = callaway_santanna(d.drop(columns=["first.treat"]), treatment="D", **ids, **extra)
        b = callaway_santanna(d, cohort="first.treat", **ids, **extra)
        assert a.coef("D") == pytest.approx(b.coef("ATT"), abs=1e-14)
        assert a.table.loc["D", "std_error"] == pytest.approx(b.table.loc["ATT", "std_error"], abs=1e-14)
