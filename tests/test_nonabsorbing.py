"""Staggered estimators with a treatment that switches off (an ended or suspended instrument).

Every event study and robust staggered estimator drops the corridors whose treatment is not
absorbing (``nonabsorbing="drop"``, counted in ``info["dropped"]["non-absorbing treatment"]``)
or raises (``nonabsorbing="raise"``). The estimate with a switching-off corridor must equal
the estimate on the panel without that corridor.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

import returnstudy as rs
from returnstudy.models._absorbing import NONABSORBING_REASON, nonabsorbing_units
from returnstudy.models.callaway_santanna import callaway_santanna
from returnstudy.models.etwfe import etwfe
from returnstudy.models.event_study import event_study
from returnstudy.models.imputation import did_imputation
from returnstudy.models.sun_abraham import sun_abraham
from returnstudy.treatments import nonabsorbing_corridors

T = "bilateral_binding"

ESTIMATORS: dict[str, Callable[..., rs.EstimationResult]] = {
    "event_study_twfe": lambda d, **kw: event_study(d, T, model="twfe", **kw),
    "event_study_ppml": lambda d, **kw: event_study(d, T, model="ppml", control="notyet", **kw),
    "sun_abraham": lambda d, **kw: sun_abraham(d, T, **kw),
    "did_imputation": lambda d, **kw: did_imputation(d, T, event_time=True, **kw),
    "did_imputation_poisson": lambda d, **kw: did_imputation(d, T, model="poisson", **kw),
    "callaway_santanna": lambda d, **kw: callaway_santanna(d, T, event_time=True, **kw),
    "etwfe": lambda d, **kw: etwfe(d, T, **kw),
    "etwfe_poisson": lambda d, **kw: etwfe(d, T, model="poisson", **kw),
}


@pytest.fixture(scope="module")
def panels() -> dict[str, object]:
    """A simulated panel, the same with one treated corridor switching off two years after
    adoption (cohort and years-since kept: cohort = first switch-on, as add_treatments codes
    an ended instrument), and the panel without that corridor."""
    p = rs.simulate_panel(seed=3, n_geo=6, n_citizen=25, bilateral_share=0.4)
    active = p.groupby("corridor")["returns"].apply(lambda x: bool((x > 0).all()))  # in every sample
    coh = p.groupby("corridor")[f"{T}_cohort"].first().dropna()
    candidates = [c for c in coh.index if active[c] and coh[c] > p["year"].min() + 1]
    corridor, cohort = candidates[0], int(coh[candidates[0]])
    switching = p.copy()
    off = (switching["corridor"] == corridor) & (switching["year"] >= cohort + 2)
    switching.loc[off, T] = 0.0
    return {"absorbing": p, "switching": switching, "without": p[p["corridor"] != corridor],
            "corridor": corridor, "cohort": cohort, "n_rows": int((p["corridor"] == corridor).sum())}


def test_panel_has_exactly_one_switching_corridor(panels) -> None:
    assert list(nonabsorbing_corridors(panels["absorbing"], T)) == []
    assert list(nonabsorbing_corridors(panels["switching"], T)) == [panels["corridor"]]
    # the adapter on an arbitrary unit column agrees with the helper
    assert nonabsorbing_units(panels["switching"], T, "corridor", "year") == [panels["corridor"]]
    assert panels["n_rows"] == 15  # 2008-2022


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_switching_corridor_is_dropped_and_counted(panels, name: str) -> None:
    fit = ESTIMATORS[name]
    res = fit(panels["switching"])
    ref = fit(panels["without"])
    assert list(res.params.index) == list(ref.params.index)
    np.testing.assert_allclose(res.params.to_numpy(), ref.params.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.vcov.to_numpy(), ref.vcov.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.table["std_error"].to_numpy(dtype=float),
                               ref.table["std_error"].to_numpy(dtype=float), rtol=0, atol=1e-12, equal_nan=True)
    assert res.info["dropped"][NONABSORBING_REASON] == panels["n_rows"]
    assert next(iter(res.info["dropped"])) == NONABSORBING_REASON  # dropped first, before any other reason
    assert NONABSORBING_REASON not in ref.info["dropped"]
    assert res.info["nonabsorbing_units"] == [panels["corridor"]]
    assert any(panels["corridor"] in n and "switches off" in n for n in res.info["notes"])
    # after the drop the corridor leaves the sample: the estimate differs from the one that
    # treats it as still treated (the absorbing panel), i.e. no event time is assigned to it
    full = fit(panels["absorbing"])
    assert np.max(np.abs(res.params.to_numpy() - full.params.to_numpy())) > 1e-8


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_raise_names_the_corridor(panels, name: str) -> None:
    with pytest.raises(ValueError, match=rf"not absorbing.*{panels['corridor']}.*nonabsorbing='drop'"):
        ESTIMATORS[name](panels["switching"], nonabsorbing="raise")


@pytest.mark.parametrize("name", ["event_study_twfe", "sun_abraham", "did_imputation", "callaway_santanna", "etwfe"])
def test_absorbing_panel_unchanged_and_bad_choice(panels, name: str) -> None:
    fit = ESTIMATORS[name]
    a = fit(panels["absorbing"])
    b = fit(panels["absorbing"], nonabsorbing="raise")  # nothing to raise about
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())
    assert NONABSORBING_REASON not in a.info["dropped"] and "nonabsorbing_units" not in a.info
    with pytest.raises(ValueError, match=r"nonabsorbing must be one of \['drop', 'raise'\], got 'keep'"):
        fit(panels["absorbing"], nonabsorbing="keep")


def test_suspension_then_resumption_is_not_absorbing(panels) -> None:
    """A spell 1,0,1 (suspended, then resumed) and a share-rule fall 0.5 -> 1 -> 0.4 are dropped;
    a share-rule rise 0 -> 0.5 -> 1 is absorbing and kept."""
    p = panels["absorbing"]
    c, g = panels["corridor"], panels["cohort"]
    q = p.copy()
    q.loc[(q["corridor"] == c) & (q["year"] == g + 1), T] = 0.0  # one suspended year
    r = did_imputation(q, T)
    ref = did_imputation(panels["without"], T)
    assert r.info["dropped"][NONABSORBING_REASON] == panels["n_rows"]
    assert abs(r.coef(T) - ref.coef(T)) < 1e-12
    share = pd.Series(0.0, index=p.index)
    rows = (p["corridor"] == c).to_numpy()
    years = p.loc[rows, "year"].to_numpy()
    share[rows] = np.select([years == g, years > g], [0.5, 1.0], 0.0)
    assert nonabsorbing_units(p.assign(s=share), "s", "corridor", "year") == []
    share[rows & (p["year"] == p["year"].max()).to_numpy()] = 0.4
    assert nonabsorbing_units(p.assign(s=share), "s", "corridor", "year") == [c]


def test_any_unit_and_time_columns(panels) -> None:
    """Integer unit ids and another period name (as mpdta's countyreal/year): same drop, same estimate."""
    codes = {c: i for i, c in enumerate(sorted(panels["absorbing"]["corridor"].unique()))}

    def renamed(d: pd.DataFrame) -> pd.DataFrame:
        return d.assign(county=d["corridor"].map(codes).astype("int64"), period=d["year"]).drop(
            columns=["corridor", "year"])

    kw = dict(unit="county", time="period", cohort=f"{T}_cohort", fe=("county", "period"))
    r = did_imputation(renamed(panels["switching"]), T, **kw)
    ref = did_imputation(renamed(panels["without"]), T, **kw)
    assert r.info["nonabsorbing_units"] == [codes[panels["corridor"]]]
    assert r.info["dropped"][NONABSORBING_REASON] == panels["n_rows"]
    assert abs(r.coef(T) - ref.coef(T)) < 1e-12
    e = etwfe(renamed(panels["switching"]), T, unit="county", time="period", cohort=f"{T}_cohort")
    e_ref = etwfe(renamed(panels["without"]), T, unit="county", time="period", cohort=f"{T}_cohort")
    assert abs(e.params.iloc[0] - e_ref.params.iloc[0]) < 1e-12
    assert e.info["dropped"][NONABSORBING_REASON] == panels["n_rows"]


def test_event_study_without_corridor_column(panels) -> None:
    """The event study builds ``corridor`` from geo and citizen when absent; the drop follows it."""
    r = event_study(panels["switching"].drop(columns="corridor"), T, model="twfe")
    ref = event_study(panels["without"].drop(columns="corridor"), T, model="twfe")
    assert r.info["nonabsorbing_units"] == [panels["corridor"]]
    np.testing.assert_allclose(r.params.to_numpy(), ref.params.to_numpy(), rtol=0, atol=1e-12)
