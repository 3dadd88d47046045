"""Callaway-Sant'Anna: hand-computed 2x2s, equality with Sun-Abraham, closed-form SEs, bias."""

from __future__ import annotations

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
