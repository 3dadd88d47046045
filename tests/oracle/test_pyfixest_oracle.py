"""Cross-checks against pyfixest (feols / fepois): estimates and clustered SEs to 1e-6.

pyfixest is a test-only dependency; these tests are skipped when it is not installed.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _simpanel import make_panel  # noqa: E402

from returnstudy.models.event_study import event_study  # noqa: E402
from returnstudy.models.ppml import ppml  # noqa: E402
from returnstudy.models.twfe import twfe  # noqa: E402

pf = pytest.importorskip("pyfixest")

RTOL = 1e-6
VCOV = {
    "citizen": {"CRV1": "citizen"},
    "geo": {"CRV1": "geo"},
    "corridor": {"CRV1": "corridor"},
    ("citizen", "geo"): {"CRV1": "citizen+geo"},
    None: "hetero",
    "iid": "iid",
}


def _feols(fml: str, data: pd.DataFrame, vcov, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pf.feols(fml, data, vcov=vcov, fixef_tol=1e-13, **kw)


def _fepois(fml: str, data: pd.DataFrame, vcov, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pf.fepois(fml, data, vcov=vcov, fixef_tol=1e-13, iwls_tol=1e-13, iwls_maxiter=100, **kw)


def _compare(res, model, terms) -> None:
    np.testing.assert_allclose(res.params[terms].to_numpy(), model.coef()[terms].to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(res.table.loc[terms, "std_error"].to_numpy(), model.se()[terms].to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(res.table.loc[terms, "p_value"].to_numpy(), model.pvalue()[terms].to_numpy(), rtol=1e-5, atol=1e-12)
    assert res.info["n_obs"] == model._N


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return make_panel(11, n_geo=10, n_citizen=40, zero_corridors=6, orders_scale=20)


@pytest.mark.parametrize("cluster", list(VCOV))
@pytest.mark.parametrize("weights", [None, "orders"])
def test_feols_corridor_year(sim, cluster, weights) -> None:
    terms = ["eu_agreement", "bilateral_binding", "x"]
    res = twfe(sim, "return_rate", terms[:2], controls="x", cluster=cluster, weights=weights)
    data = sim.dropna(subset=["return_rate"])
    m = _feols("return_rate ~ eu_agreement + bilateral_binding + x | corridor + year", data, VCOV[cluster], weights=weights)
    _compare(res, m, terms)


@pytest.mark.parametrize(
    "fe", [("corridor", "geo^year"), ("corridor", "year", "citizen^year"), ("geo", "citizen", "year")]
)
def test_feols_other_fixed_effects(sim, fe) -> None:
    # x and placebo vary within citizen-year (the treatments do not: see below)
    terms = ["x", "placebo"]
    res = twfe(sim, "ihs_return_rate", terms, fe=fe, cluster="citizen")
    data = sim.assign(ihs=np.arcsinh(sim["return_rate"])).dropna(subset=["ihs"])
    m = _feols(f"ihs ~ x + placebo | {' + '.join(fe)}", data, VCOV["citizen"])
    _compare(res, m, terms)
    if "citizen^year" in fe:
        # a citizenship-level treatment is absorbed by citizen x year effects
        with pytest.raises(ValueError, match="collinear"):
            twfe(sim, "return_rate", ["eu_agreement"], fe=fe)


@pytest.mark.parametrize("cluster", ["citizen", ("citizen", "geo"), None, "iid"])
@pytest.mark.parametrize("fe", [("corridor", "year"), ("corridor", "geo^year")])
def test_fepois_offset(sim, cluster, fe) -> None:
    terms = ["eu_agreement", "bilateral_binding", "x"]
    res = ppml(sim, terms[:2], controls="x", fe=fe, cluster=cluster, tol=1e-13)
    data = sim[sim["orders"] > 0].assign(log_orders=lambda d: np.log(d["orders"]))
    m = _fepois(
        f"returns ~ eu_agreement + bilateral_binding + x | {' + '.join(fe)}", data, VCOV[cluster], offset="log_orders"
    )
    _compare(res, m, terms)


def test_fepois_exposure_as_regressor_and_weights(sim) -> None:
    data = sim[sim["orders"] > 0].assign(log_orders=lambda d: np.log(d["orders"]), w=lambda d: 1 + (d["x"] > 0))
    res = ppml(data, ["eu_agreement"], exposure_as="regressor", weights="w", tol=1e-13)
    m = _fepois("returns ~ eu_agreement + log_orders | corridor + year", data, VCOV["citizen"], weights="w")
    _compare(res, m, ["eu_agreement", "log_orders"])


@pytest.mark.parametrize("model", ["twfe", "ppml"])
def test_event_study_matches_pyfixest_with_same_dummies(sim, model) -> None:
    res = event_study(sim, window=(-2, 2), model=model, other_treatments="ignore")
    ys = sim["eu_agreement_years_since"].astype("float64")
    rel = ys.clip(-2, 2)
    data = sim.assign(**{f"d{k + 2}": (rel == k).astype(float) for k in (-2, 0, 1, 2)})
    rhs = "d0 + d2 + d3 + d4"
    if model == "twfe":
        m = _feols(f"return_rate ~ {rhs} | corridor + year", data.dropna(subset=["return_rate"]), VCOV["citizen"])
    else:
        data = data[data["orders"] > 0].assign(log_orders=lambda d: np.log(d["orders"]))
        m = _fepois(f"returns ~ {rhs} | corridor + year", data, VCOV["citizen"], offset="log_orders")
    mine = res.table.drop(index=-1)
    np.testing.assert_allclose(mine["estimate"].to_numpy(), m.coef().to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(mine["std_error"].to_numpy(), m.se().to_numpy(), rtol=RTOL)


# ----------------------------------------------------------------- real data

# EU readmission agreements entering into force within the 2012-2016 window of the
# snapshot (calendar year of entry into force; a simple coding for a numerical check,
# not the study's treatment table): Armenia and Azerbaijan 2014, Turkey and Cape Verde
# 2014 (from October and December: first full year 2015).
EU_IN_FORCE = {"AM": 2014, "AZ": 2014, "TR": 2015, "CV": 2015, "GE": 2011, "PK": 2010, "RS": 2008, "AL": 2006}


@pytest.fixture(scope="module")
def real(real_panel: pd.DataFrame) -> pd.DataFrame:
    """Snapshot panel (load_panel(data_dir=snapshot_dir / "eurostat")) with a simple EU-agreement dummy."""
    panel = real_panel.copy()
    start = panel["citizen"].map(EU_IN_FORCE).astype("float64")
    panel = panel.assign(eu_simple=((panel["year"] >= start) & start.notna()).astype(float))
    sub = panel[panel["year"].between(2012, 2016)]
    assert sub["eu_simple"].sum() > 100
    return sub


@pytest.mark.parametrize("cluster", ["citizen", ("citizen", "geo")])
def test_real_panel_feols(real, cluster) -> None:
    res = twfe(real, "return_rate", ["eu_simple"], cluster=cluster, weights="orders")
    m = _feols("return_rate ~ eu_simple | corridor + year", real.dropna(subset=["return_rate"]), VCOV[cluster], weights="orders")
    _compare(res, m, ["eu_simple"])


@pytest.mark.parametrize("cluster", ["citizen", "geo"])
def test_real_panel_fepois(real, cluster) -> None:
    res = ppml(real, ["eu_simple"], cluster=cluster, tol=1e-13)
    data = real[(real["orders"] > 0) & real["returns"].notna()].assign(log_orders=lambda d: np.log(d["orders"]))
    m = _fepois("returns ~ eu_simple | corridor + year", data, VCOV[cluster], offset="log_orders")
    _compare(res, m, ["eu_simple"])
    assert res.info["converged"]


def test_real_panel_event_study_ppml(real) -> None:
    start = real["citizen"].map(EU_IN_FORCE)
    panel = real.assign(
        eu_simple_cohort=pd.array(start, dtype="Int64"),
        eu_simple_years_since=pd.array(real["year"] - start, dtype="Int64"),
    )
    res = event_study(panel, treatment="eu_simple", window=(-2, 2), model="ppml", other_treatments="ignore")
    rel = (panel["year"] - start).clip(-2, 2)
    est_periods = [k for k in res.table.index if k != -1]
    data = panel.assign(**{f"d{k + 2}": (rel == k).astype(float) for k in est_periods})
    data = data[(data["orders"] > 0) & data["returns"].notna()].assign(log_orders=lambda d: np.log(d["orders"]))
    # corridors in force from the first sample year on are always treated: dropped by default
    data = data[~(data["citizen"].map(EU_IN_FORCE) <= data["year"].min())]
    rhs = " + ".join(f"d{k + 2}" for k in est_periods)
    m = _fepois(f"returns ~ {rhs} | corridor + year", data, VCOV["citizen"], offset="log_orders")
    mine = res.table.drop(index=-1)
    np.testing.assert_allclose(mine["estimate"].to_numpy(), m.coef().to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(mine["std_error"].to_numpy(), m.se().to_numpy(), rtol=RTOL)
    assert res.info["n_obs"] == m._N
