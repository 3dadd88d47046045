"""returnstudy.crosscheck: our fixed-effects fits against linearmodels (AbsorbingLS) and
statsmodels (GLM Poisson with dummies), coefficients to 1e-8 and standard errors once the
documented small-sample factors are accounted for."""

from __future__ import annotations

import linearmodels
import numpy as np
import pandas as pd
import pytest

import returnstudy as rs
from returnstudy.crosscheck import crosscheck
from tests._simpanel import make_panel

TREATMENTS = ["eu_agreement", "bilateral_binding"]


def _version(text: str) -> tuple[int, ...]:
    import re

    return tuple(int(p) for p in re.findall(r"\d+", text)[:2])


_LINEARMODELS = _version(linearmodels.__version__)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return make_panel(seed=5, n_geo=6, n_citizen=14, years=(2008, 2016), cohorts=(2011, 2013), zero_corridors=3)


@pytest.fixture(scope="module")
def poisson_panel() -> pd.DataFrame:
    """Small enough for dense dummies: 4 x 10 corridors, 8 years."""
    return make_panel(seed=6, n_geo=4, n_citizen=10, years=(2008, 2015), cohorts=(2011, 2013), zero_corridors=2)


def _agree(table: pd.DataFrame, result, se_rtol: float) -> None:
    np.testing.assert_allclose(table["estimate_reference"], result.params.to_numpy(), rtol=0, atol=1e-8)
    assert table["estimate_diff"].abs().max() < 1e-8
    np.testing.assert_allclose(table["std_error"], table["std_error_reference"], rtol=se_rtol, atol=0)
    assert table["std_error_rel_diff"].abs().max() < se_rtol


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cluster": "citizen", "weights": "orders"},
        {"cluster": "citizen"},
        {"cluster": None},
        {"cluster": "iid", "controls": "x"},
        {"cluster": ["citizen", "geo"]},
    ],
)
def test_linear_fixed_effects_equal_linearmodels_absorbing_ls(panel: pd.DataFrame, kwargs: dict) -> None:
    result = rs.twfe(panel, outcome="return_rate", treatments=TREATMENTS, **kwargs)
    table = crosscheck(result)
    assert table["reference"].iloc[0].startswith("linearmodels") and "AbsorbingLS" in table["reference"].iloc[0]
    assert list(table["term"]) == list(result.params.index)
    _agree(table, result, 1e-9)
    n, K = result.info["n_obs"], result.info["df_k"]
    if isinstance(result.info["n_clusters"], list):  # two-way: one factor with the smaller G
        assert "vcov_eigen_fix" not in result.info
        G = min(result.info["n_clusters"])
        assert table["ssc_factor"].iloc[0] == pytest.approx((n - 1) / (n - K) * G / (G - 1), rel=1e-14)
    elif result.info["vcov_type"] == "cluster":
        G = result.info["n_clusters"]
        assert table["ssc_factor"].iloc[0] == pytest.approx((n - 1) / (n - K) * G / (G - 1), rel=1e-14)
        # linearmodels' own correction counts every absorbed effect from 7.1 (corridors nested in
        # citizenships too): (n-1)/(n-K_all) x G/(G-1) with K_all = slopes + corridors + years - 1;
        # before 7.1 it counted the slopes only
        frame = result.extra["design"].frame
        K_all = len(result.params) + frame["corridor"].nunique() + frame["year"].nunique() - 1
        ratio = table["std_error_reference_own"] / table["std_error_reference_raw"]
        K_lm = K_all if _LINEARMODELS >= (7, 1) else len(result.params)
        np.testing.assert_allclose(ratio, np.sqrt((n - 1) / (n - K_lm) * G / (G - 1)), rtol=1e-10)
        assert K_all > K  # the documented difference: ours leaves the nested corridor effects out


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cluster": "citizen"},
        {"cluster": "citizen", "weights": "orders"},
        {"cluster": None, "exposure_as": "regressor"},
        {"cluster": "iid"},
        {"cluster": ["citizen", "geo"]},
    ],
)
def test_poisson_equals_statsmodels_glm_with_dummies(poisson_panel: pd.DataFrame, kwargs: dict) -> None:
    # PPML's sandwich uses the scores of its last IRLS step: at the default tol (1e-10) its SEs
    # agree with the fully converged GLM to about 1e-6 (relative), at tol=1e-13 to 1e-8
    default = rs.ppml(poisson_panel, treatments=TREATMENTS, **kwargs)
    _agree(crosscheck(default), default, 1e-6)
    result = rs.ppml(poisson_panel, treatments=TREATMENTS, tol=1e-13, **kwargs)
    table = crosscheck(result)
    ref = table["reference"].iloc[0]
    assert ref.startswith("statsmodels") and "GLM Poisson" in ref
    assert ("offset log_orders" in ref) == (kwargs.get("exposure_as", "offset") == "offset")
    # the all-zero corridors PPML drops are not in the rebuild either
    assert result.info["dropped"]
    _agree(table, result, 1e-8)
    if kwargs["cluster"] == "citizen":
        # statsmodels' own correction counts every dummy: G/(G-1) x (n-1)/(n-P), P = all GLM columns
        d = result.extra["design"]
        P = len(result.params) + 1 + sum(np.unique(c).size - 1 for c in d.fe.codes)
        G, n = result.info["n_clusters"], d.n_obs
        ratio = table["std_error_reference_own"] / table["std_error_reference_raw"]
        np.testing.assert_allclose(ratio, np.sqrt(G / (G - 1) * (n - 1) / (n - P)), rtol=1e-10)


def test_event_study_crosschecks_its_regression(poisson_panel: pd.DataFrame) -> None:
    es = rs.event_study(poisson_panel, treatment="eu_agreement", window=(-2, 2), model="ppml", cluster="citizen")
    table = crosscheck(es)
    reg = es.extra["full_result"]
    assert list(table["term"]) == list(reg.params.index)
    assert "offset log_orders" in table["reference"].iloc[0]
    _agree(table, reg, 1e-7)
    # the event-time coefficients are those of the regression
    np.testing.assert_allclose(es.params.to_numpy(), table.set_index("term").loc[["rel_m2", "rel_p0", "rel_p1", "rel_p2"],
                               "estimate_reference"], atol=1e-8)


def test_refusals_are_explicit(panel: pd.DataFrame, poisson_panel: pd.DataFrame) -> None:
    ppml = rs.ppml(panel, treatments=TREATMENTS, cluster="citizen")
    n_dummies = ppml.extra["design"].frame["corridor"].nunique() - 1 + ppml.extra["design"].frame["year"].nunique() - 1
    with pytest.raises(ValueError, match=rf"needs {n_dummies} fixed-effect dummy columns .*max_dummies=10"):
        crosscheck(ppml, max_dummies=10)
    # a two-way variance clipped to be positive semi-definite has no unclipped counterpart to compare
    clipped = rs.twfe(poisson_panel, outcome="return_rate", treatments=TREATMENTS, cluster=["citizen", "geo"],
                      weights="orders")
    assert clipped.info["vcov_eigen_fix"]["n_clipped"] == 1
    with pytest.raises(ValueError, match="not positive semi-definite and was clipped"):
        crosscheck(clipped)
    conventional = rs.twfe(panel, outcome="return_rate", treatments=TREATMENTS, cluster=["citizen", "geo"],
                           small_sample="conventional")
    with pytest.raises(ValueError, match="conventional"):
        crosscheck(conventional)
    imp = rs.did_imputation(panel, treatment="eu_agreement", model="poisson", cluster="citizen")
    with pytest.raises(ValueError, match="supported: twfe, ppml and event_study"):
        crosscheck(imp)


def test_real_snapshot_linear_headline_specs_agree(eurostat_dir) -> None:
    """The wodc spec's linear models (orders-weighted and unweighted) on the snapshot."""
    run = rs.run_study("wodc", eurostat_dir, models=False)
    treatments = ["eu_agreement", "eu_nonbinding", "bilateral_binding", "bilateral_protocol", "bilateral_nonbinding"]
    for weights in ("orders", None):
        result = rs.twfe(run.sample, outcome="return_rate", treatments=treatments, cluster="citizen", weights=weights)
        _agree(crosscheck(result), result, 1e-9)
