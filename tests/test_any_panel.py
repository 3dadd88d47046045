"""The estimators on any panel: named unit, time, cohort and cluster columns.

1. ``mpdta`` (Callaway and Sant'Anna's county teen-employment panel: 500 counties
   ``countyreal``, 2003-2007, adoption year ``first.treat``, 0 = never treated; outcome
   ``lemp`` = log teen employment) with its own column names: TWFE, PPML and the event
   study equal pyfixest's ``feols``/``fepois`` with the same fixed effects and clustering to
   1e-8; the TWFE coefficient is the published -0.0365; the Goodman-Bacon 2x2 estimates
   equal pyfixest regressions on each pair of timing groups and window, and their
   weighted sum equals the TWFE coefficient.
2. This package's panel with its columns renamed (corridor -> u, year -> t, citizen -> c,
   the cohort column -> adopt, geo and the ``*_years_since`` columns removed) gives the
   same estimates as the default names.
3. A column that does not exist is named, with its argument and the panel's columns.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import returnstudy as rs
from returnstudy.models.bacon import TYPE_EARLY, TYPE_LATE, TYPE_NEVER, bacon_decomposition
from returnstudy.models.event_study import event_study
from returnstudy.models.ppml import ppml
from returnstudy.models.twfe import twfe

TOL = 1e-8
IDS = {"unit": "countyreal", "time": "year", "cluster": "countyreal"}
WINDOW = (-4, 3)  # every relative period of mpdta (cohorts 2004, 2006, 2007; years 2003-2007)


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    moderndid = pytest.importorskip("moderndid")
    d = moderndid.load_mpdta()
    d = d.to_pandas() if hasattr(d, "to_pandas") else pd.DataFrame(d)
    # treated: county adopted by this year (mpdta's own "treat" marks ever-treated counties)
    d["treated"] = ((d["year"] >= d["first.treat"]) & (d["first.treat"] > 0)).astype(float)
    # a positive outcome in levels for the Poisson fits: teen employment exp(lemp), with
    # population exp(lpop) as exposure (offset lpop): employment per head
    d["emp"] = np.exp(d["lemp"])
    d["pop"] = np.exp(d["lpop"])
    for k in range(WINDOW[0], WINDOW[1] + 1):
        if k != -1:
            ev = (d["first.treat"] > 0) & (d["year"] - d["first.treat"] == k)
            d[f"ev_{'m' if k < 0 else 'p'}{abs(k)}"] = ev.astype(float)
    return d


@pytest.fixture(scope="module")
def pf():
    return pytest.importorskip("pyfixest")


def _close(ours: pd.Series, theirs: pd.Series, tol: float = TOL) -> None:
    np.testing.assert_allclose(np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float), rtol=tol, atol=tol * 1e-2)


def test_twfe_on_mpdta_equals_pyfixest_and_the_published_estimate(mpdta, pf) -> None:
    res = twfe(mpdta, outcome="lemp", treatments="treated", **IDS)
    ref = pf.feols("lemp ~ treated | countyreal + year", data=mpdta, vcov={"CRV1": "countyreal"})
    _close(res.table["estimate"], ref.coef())
    _close(res.table["std_error"], ref.se())
    # Callaway-Sant'Anna (2021) / R did documentation: TWFE estimate -0.0365 on mpdta
    assert round(float(res.params["treated"]), 4) == -0.0365
    assert res.info["n_obs"] == 2500 and res.info["n_units"] == 500 and res.info["n_clusters"] == 500
    assert res.info["years"] == (2003, 2007) and res.design["fixed_effects"] == ["countyreal", "year"]
    assert res.info["treatment_counts"]["treated"]["treated_corridors"] == 191
    assert "Sample: 2500 countyreal-year rows, 500 units (countyreal), year 2003-2007" in res.summary()
    # fe named explicitly: the same model
    same = twfe(mpdta, outcome="lemp", treatments="treated", fe=("countyreal", "year"), **IDS)
    assert float(same.params["treated"]) == float(res.params["treated"])


def test_ppml_on_mpdta_equals_pyfixest(mpdta, pf) -> None:
    res = ppml(mpdta, treatments="treated", outcome="emp", exposure="pop", tol=1e-14, **IDS)
    ref = pf.fepois("emp ~ treated | countyreal + year", data=mpdta.assign(log_pop=mpdta["lpop"]),
                    vcov={"CRV1": "countyreal"}, offset="log_pop", iwls_tol=1e-14, iwls_maxiter=100)
    _close(res.table["estimate"], ref.coef())
    _close(res.table["std_error"], ref.se())
    # population is constant within county: its offset is absorbed by the county effects
    no_exposure = ppml(mpdta, treatments="treated", outcome="emp", exposure=None, tol=1e-14, **IDS)
    _close(no_exposure.params, res.params)
    assert res.info["n_units"] == 500


@pytest.mark.parametrize("model", ["twfe", "ppml"])
def test_event_study_on_mpdta_equals_pyfixest(mpdta, pf, model) -> None:
    terms = [c for c in mpdta.columns if c.startswith("ev_")]
    if model == "twfe":
        res = event_study(mpdta, treatment="treated", cohort="first.treat", model="twfe", outcome="lemp",
                          window=WINDOW, **IDS)
        ref = pf.feols(f"lemp ~ {' + '.join(terms)} | countyreal + year", data=mpdta, vcov={"CRV1": "countyreal"})
    else:
        res = event_study(mpdta, treatment="treated", cohort="first.treat", model="ppml", outcome="emp",
                          exposure="pop", window=WINDOW, **IDS)
        ref = pf.fepois(f"emp ~ {' + '.join(terms)} | countyreal + year", data=mpdta.assign(log_pop=mpdta["lpop"]),
                        vcov={"CRV1": "countyreal"}, offset="log_pop", iwls_tol=1e-14, iwls_maxiter=100)
    period = {t: (-1 if t[3] == "m" else 1) * int(t[4:]) for t in terms}
    theirs_b = pd.Series({period[t]: v for t, v in ref.coef().items()}).sort_index()
    theirs_se = pd.Series({period[t]: v for t, v in ref.se().items()}).sort_index()
    ours = res.table.drop(index=-1)
    _close(ours["estimate"], theirs_b)
    _close(ours["std_error"], theirs_se)
    assert res.table.loc[-1, "estimate"] == 0
    assert res.info["treated_corridors_by_cohort"] == {2004: 20, 2006: 40, 2007: 131}
    assert res.info["control_group"].startswith("never-treated units (countyreal) (309)")
    assert res.info["cohort"] == "first.treat"


def test_bacon_on_mpdta_reconstructs_twfe_from_pyfixest_2x2s(mpdta, pf) -> None:
    res = bacon_decomposition(mpdta, outcome="lemp", treatment="treated", unit="countyreal", time="year")
    comp = res.extra["comparisons"]
    assert len(comp) == 9  # 3 cohorts: 3 vs never, 3 earlier-vs-later, 3 later-vs-earlier
    beta = float(pf.feols("lemp ~ treated | countyreal + year", data=mpdta).coef()["treated"])
    assert abs(float(res.table.loc["twfe", "estimate"]) - beta) < 1e-12
    assert abs(float((comp["estimate"] * comp["weight"]).sum()) - beta) < 1e-12
    assert abs(float(comp["weight"].sum()) - 1) < 1e-12

    def cohort(label: str) -> int:
        return 0 if label == "never treated" else int(label)

    # each 2x2 is the TWFE regression on its two timing groups over its window
    for r in comp.itertuples():
        g_tr, g_ct = cohort(r.treated), cohort(r.control)
        if r.type in (TYPE_NEVER, TYPE_EARLY):  # before the control group adopts
            years = mpdta["year"] < (g_ct if g_ct else 10_000)
        else:
            assert r.type == TYPE_LATE  # from the (earlier) control group's adoption on
            years = mpdta["year"] >= g_ct
        sub = mpdta[mpdta["first.treat"].isin([g_tr, g_ct]) & years]
        b = float(pf.feols("lemp ~ treated | countyreal + year", data=sub).coef()["treated"])
        assert abs(r.estimate - b) < 1e-10, (r.type, r.treated, r.control, r.estimate, b)
    assert res.info["timing_groups"] == {"2004": 20, "2006": 40, "2007": 131, "never treated": 309}


@pytest.fixture(scope="module")
def renamed() -> tuple[pd.DataFrame, pd.DataFrame]:
    p = rs.simulate_panel(seed=5, n_geo=6, n_citizen=25, years=(2008, 2019))
    q = p.rename(columns={"corridor": "u", "year": "t", "citizen": "c", "bilateral_binding_cohort": "adopt"})
    q = q.drop(columns=["geo"] + [c for c in q.columns if c.endswith("_years_since")])
    return p, q


def _same(a, b) -> None:
    ta, tb = a.table, b.table
    assert list(ta.index) == list(tb.index)
    np.testing.assert_allclose(ta["estimate"].to_numpy(float), tb["estimate"].to_numpy(float), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ta["std_error"].to_numpy(float), tb["std_error"].to_numpy(float), rtol=1e-12,
                               atol=1e-14, equal_nan=True)
    assert a.info["n_obs"] == b.info["n_obs"]


def test_renamed_columns_give_the_same_estimates(renamed) -> None:
    p, q = renamed
    ids = {"unit": "u", "time": "t", "cluster": "c"}
    treat = ["bilateral_binding", "eu_agreement"]
    _same(twfe(p, treatments=treat), twfe(q, treatments=treat, **ids))
    _same(ppml(p, treatments=treat), ppml(q, treatments=treat, **ids))
    _same(ppml(p, treatments=treat, fe=("corridor", "citizen^year")), ppml(q, treatments=treat, fe=("u", "c^t"), **ids))
    for model in ("ppml", "twfe"):
        a = event_study(p, treatment="bilateral_binding", model=model, window=(-3, 3))
        b = event_study(q, treatment="bilateral_binding", cohort="adopt", model=model, window=(-3, 3), **ids)
        _same(a, b)
        assert list(a.info["dropped"].values()) == list(b.info["dropped"].values())
        assert a.info["treated_corridors_by_cohort"] == b.info["treated_corridors_by_cohort"]
    ba = bacon_decomposition(p, treatment="bilateral_binding")
    bb = bacon_decomposition(q, treatment="bilateral_binding", unit="u", time="t")
    np.testing.assert_allclose(ba.table["estimate"], bb.table["estimate"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ba.table["weight"], bb.table["weight"], rtol=1e-12, atol=1e-15)


def test_event_study_cohort_is_checked_against_years_since(renamed) -> None:
    p, _ = renamed
    bad = p.copy()
    i = int(np.flatnonzero(bad["bilateral_binding_cohort"].notna().to_numpy())[0])
    bad.loc[bad.index[i], "bilateral_binding_years_since"] += 1
    with pytest.raises(ValueError, match=r"'bilateral_binding_years_since' differs from year - bilateral_binding_cohort in 1 rows"):
        event_study(bad, treatment="bilateral_binding")


def test_missing_columns_name_the_argument_and_list_the_columns(mpdta) -> None:
    cols = re.escape(str(list(mpdta.columns)))
    with pytest.raises(KeyError, match=r"unit='county' \('county'\); the panel's columns are: " + cols):
        twfe(mpdta, outcome="lemp", treatments="treated", unit="county", time="year", cluster="countyreal")
    # the default cluster (citizen) does not exist in mpdta: say so
    with pytest.raises(KeyError, match=r"cluster=\('citizen',\) \('citizen'\); the panel's columns are: " + cols):
        twfe(mpdta, outcome="lemp", treatments="treated", unit="countyreal", time="year")
    with pytest.raises(KeyError, match=r"time='period'"):
        ppml(mpdta, treatments="treated", outcome="emp", exposure=None, unit="countyreal", time="period",
             cluster="countyreal")
    with pytest.raises(KeyError, match=r"cohort='first_treat' for treatment 'treated'.*the panel's columns are: " + cols):
        event_study(mpdta, treatment="treated", cohort="first_treat", model="twfe", outcome="lemp", **IDS)
    with pytest.raises(KeyError, match=r"controls=\['lpopx'\] \('lpopx'\); the panel's columns are: " + cols):
        event_study(mpdta, treatment="treated", cohort="first.treat", model="twfe", outcome="lemp", controls="lpopx", **IDS)
    with pytest.raises(KeyError, match=r"fe=\('countyreal', 'state\^year'\) \('state'\)"):
        twfe(mpdta, outcome="lemp", treatments="treated", fe=("countyreal", "state^year"), **IDS)
    with pytest.raises(KeyError, match=r"unit='county'.*the panel's columns are: " + cols):
        bacon_decomposition(mpdta, outcome="lemp", treatment="treated", unit="county", time="year")
    with pytest.raises(KeyError, match=r"treatments=\['post'\] \('post'\); the panel's columns are: " + cols):
        ppml(mpdta, treatments="post", outcome="emp", exposure="pop", **IDS)
    with pytest.raises(ValueError, match="unit and time must be different columns"):
        twfe(mpdta, outcome="lemp", treatments="treated", unit="year", time="year", cluster="countyreal")
