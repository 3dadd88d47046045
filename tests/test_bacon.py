"""Goodman-Bacon decomposition: exact reconstruction of TWFE and textbook 2x2s."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from returnstudy.models.bacon import TYPE_EARLY, TYPE_LATE, TYPE_NEVER, bacon_decomposition
from returnstudy.simulate import simulate_panel


def _panel(cohorts: dict[str, float | None], years: range, effect) -> pd.DataFrame:
    rows = []
    for u, g in cohorts.items():
        for t in years:
            d = 0.0 if g is None or t < g else 1.0
            e = 0.0 if d == 0 else effect(t - g)
            rows.append({"corridor": u, "geo": u[:1], "citizen": u, "year": t, "D": d,
                         "y": 0.3 * len(u) + 0.1 * (t - years[0]) + e})
    return pd.DataFrame(rows)


def test_textbook_three_groups_dynamic_effect() -> None:
    """Early (2002), late (2004), never; effect grows by 1 per year after adoption.

    By hand (years 2000-2005): early vs late over 2000-2003: early post (2002, 2003) mean
    effect (1+2)/2 = 1.5, pre 0 -> 1.5; late vs early over 2002-2005: late effect in 2004,
    2005 = 1, 2; early (control) effect pre (2002-03) = 1.5, post (2004-05) = 3.5 ->
    1.5 - (3.5 - 1.5) = -0.5.
    """
    p = _panel({"a": 2002, "b": 2004, "c": None}, range(2000, 2006), lambda e: 1.0 + e)
    r = bacon_decomposition(p, outcome="y", treatment="D")
    comp = r.extra["comparisons"].set_index(["treated", "control"])
    assert comp.loc[("2002", "2004"), "estimate"] == pytest.approx(1.5)
    assert comp.loc[("2004", "2002"), "estimate"] == pytest.approx(-0.5)
    assert comp.loc[("2002", "never treated"), "estimate"] == pytest.approx(np.mean([1, 2, 3, 4]))
    assert comp.loc[("2004", "never treated"), "estimate"] == pytest.approx(1.5)
    ols = smf.ols("y ~ D + C(corridor) + C(year)", data=p).fit().params["D"]
    assert r.coef("twfe") == pytest.approx(ols, abs=1e-10)
    assert r.extra["comparisons"]["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert (r.extra["comparisons"]["estimate"] * r.extra["comparisons"]["weight"]).sum() == pytest.approx(ols, abs=1e-10)


def test_reconstructs_twfe_on_simulated_panel_with_always_treated() -> None:
    p = simulate_panel(seed=7, n_geo=4, n_citizen=20, zero_share=0.0, bilateral_share=0.4, effect="heterogeneous",
                       years=(2008, 2017))
    # make a few corridors treated in every year (cohort before the window)
    always = p["corridor"].isin(p["corridor"].unique()[:5])
    p.loc[always, "bilateral_binding"] = 1.0
    r = bacon_decomposition(p, treatment="bilateral_binding")
    comp = r.extra["comparisons"]
    keep = p.groupby("corridor")["return_rate"].transform(lambda s: s.notna().all())
    q = p[keep]
    ols = smf.ols("return_rate ~ bilateral_binding + C(corridor) + C(year)", data=q).fit().params["bilateral_binding"]
    assert abs(r.coef("twfe") - ols) < 1e-8
    assert abs(comp["weight"].sum() - 1.0) < 1e-8
    assert abs((comp["weight"] * comp["estimate"]).sum() - ols) < 1e-8
    assert "treated vs always treated" in set(comp["type"])
    assert (comp["weight"] > 0).all()
    forb = comp["type"].isin([TYPE_LATE, "treated vs always treated"])
    assert r.info["already_treated_weight_share"] == pytest.approx(comp.loc[forb, "weight"].sum())
    assert {TYPE_NEVER, TYPE_EARLY, TYPE_LATE} <= set(r.table.index)


def test_bad_input() -> None:
    p = _panel({"a": 2002, "b": None}, range(2000, 2004), lambda e: 1.0)
    p.loc[(p["corridor"] == "a") & (p["year"] == 2003), "D"] = 0.0  # switches off
    with pytest.raises(ValueError, match="absorbing"):
        bacon_decomposition(p, outcome="y", treatment="D")
    q = _panel({"a": 2002, "b": None}, range(2000, 2004), lambda e: 1.0)
    q.loc[0, "y"] = np.nan
    with pytest.raises(ValueError, match="balanced"):
        bacon_decomposition(q, outcome="y", treatment="D", balance="error")
    with pytest.raises(KeyError, match="nope"):
        bacon_decomposition(q, outcome="nope", treatment="D")
