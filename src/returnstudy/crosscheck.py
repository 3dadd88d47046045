"""Independent rebuild of a fixed-effects fit with the named libraries of the stack.

:func:`crosscheck` re-estimates the result's model on exactly the rows it used (after
singletons, all-zero fixed-effect groups and separated rows were dropped):

* linear fixed effects (``twfe``, linear event studies): ``linearmodels.AbsorbingLS`` with the
  same absorbed effects, weights and clusters;
* Poisson (``ppml``, Poisson event studies): ``statsmodels`` GLM, Poisson family, the same
  offset (log exposure), the fixed effects as dummy columns (an intercept plus all but one
  level of each dimension), same weights and clusters. Dummies make this slow and memory-hungry,
  so it is refused above ``max_dummies`` dummy columns.

Small-sample factors differ by design: ours follow fixest, ``(n-1)/(n-K) x G/(G-1)`` for
clustered errors (two-way: the same factor with G the smaller number of clusters, applied to
every Cameron-Gelbach-Miller term; ``n/(n-K)`` heteroskedasticity-robust, ``n/(n-K)`` iid linear,
``(n-1)/(n-K)`` iid Poisson) where ``K`` counts the slopes and the fixed effects **not nested
in the clusters**; linearmodels' ``debiased=True`` counts every absorbed effect in ``K`` for
clustered errors from version 7.1 (before, only the slopes) and statsmodels' ``use_correction``
counts every dummy. The reference variance is therefore taken without any correction and
multiplied by our factor (``ssc_factor``); the references' own corrected standard errors are
reported beside it (``std_error_reference_own``).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from returnstudy.inference.cluster import _parse_ssc
from returnstudy.results import EstimationResult

logger = logging.getLogger(__name__)

__all__ = ["crosscheck", "MAX_DUMMIES"]

#: Default largest number of fixed-effect dummy columns for the statsmodels Poisson rebuild.
MAX_DUMMIES = 1000

COLUMNS = [
    "term", "estimate", "estimate_reference", "estimate_diff", "std_error", "std_error_reference_raw",
    "ssc_factor", "std_error_reference", "std_error_rel_diff", "std_error_reference_own", "reference",
]


def _ssc_factor(result: EstimationResult, poisson: bool) -> float:
    """Our small-sample variance factor for the result's variance type (see module docstring)."""
    info = result.info
    n, dfk, vt = int(info["n_obs"]), int(info["df_k"]), info["vcov_type"]
    labels = {_parse_ssc(s)[3]: s for s in ("fixest-default", "conventional", "none")}
    rule = labels.get(info.get("small_sample"))
    if rule is None:
        raise ValueError(f"crosscheck: small_sample {info.get('small_sample')!r} is not one of "
                         "'fixest-default', 'conventional', 'none'")
    if rule == "none":
        return 1.0
    if vt == "cluster":
        G = info["n_clusters"]
        if isinstance(G, (list, tuple)):
            if rule == "conventional":
                raise ValueError("crosscheck: multi-way clustering with small_sample='conventional' (one factor per "
                                 "CGM term) is not supported; use 'fixest-default' or 'none'")
            G = min(G)
        return (n - 1) / (n - dfk) * G / (G - 1)
    if vt == "hetero":
        return n / (n - dfk)
    return (n - 1) / (n - dfk) if poisson else n / (n - dfk)


def _pieces(result: EstimationResult) -> tuple[EstimationResult, Any, Any, np.ndarray, list[Any]]:
    """(regression result, design, fit, estimated regressor columns, their names)."""
    extra = getattr(result, "extra", None) or {}
    design, fit = extra.get("design"), extra.get("fit")
    if "full_result" in extra:  # event study: the regression behind the event-time table (exposure from the study)
        inner, *rest = _pieces(extra["full_result"])
        inner_meta = {**inner.design, **{k: v for k, v in result.design.items() if k in ("exposure", "exposure_as")}}
        return (dataclasses.replace(inner, design=inner_meta), *rest)
    if design is None or fit is None or not hasattr(fit, "dropped_columns"):
        raise ValueError(f"crosscheck: a {result.model!r} result does not keep its design and fit; "
                         "supported: twfe, ppml and event_study results")
    keep = ~np.asarray(fit.dropped_columns, dtype=bool)
    names = list(result.params.index)
    if int(keep.sum()) != len(names):
        raise ValueError(f"crosscheck: {int(keep.sum())} estimated columns but {len(names)} parameters")
    if len(design.clusters) > 2:
        raise ValueError(f"crosscheck: {len(design.clusters)}-way clustering ({list(design.cluster_names)}) is not "
                         "supported (the references cluster in one or two ways)")
    if "vcov_eigen_fix" in result.info:
        raise ValueError(
            f"crosscheck: the two-way cluster variance of this {result.model!r} result was not positive semi-definite "
            f"and was clipped ({result.info['vcov_eigen_fix']}); the references do not clip, so there is nothing "
            "comparable; refit with one cluster variable to compare"
        )
    return result, design, fit, design.X[:, keep], names


def _linear(result: EstimationResult, design: Any, X: np.ndarray, names: list[Any]) -> tuple[np.ndarray, ...]:
    from linearmodels import __version__ as lm_version
    from linearmodels.iv.absorbing import AbsorbingLS

    absorb = pd.DataFrame({str(n): pd.Categorical(c) for n, c in zip(design.fe_names, design.fe.codes)})
    exog = pd.DataFrame(X, columns=[str(n) for n in names])
    model = AbsorbingLS(pd.Series(design.y, name=design.outcome), exog, absorb=absorb, weights=design.weights)
    vt = result.info["vcov_type"]
    kw: dict[str, Any] = {"method": "lsmr", "absorb_options": {"atol": 1e-15, "btol": 1e-15, "maxiter": 100_000}}
    if design.weights is None:
        kw = {}
    if vt == "cluster":
        cov = {"cov_type": "clustered", "clusters": pd.DataFrame(
            {f"c{j}": pd.factorize(c)[0] for j, c in enumerate(design.clusters)})}
    else:
        cov = {"cov_type": "robust" if vt == "hetero" else "unadjusted"}
    raw = model.fit(debiased=False, **cov, **kw)
    own = model.fit(debiased=True, **cov, **kw)
    label = f"linearmodels {lm_version} AbsorbingLS ({cov['cov_type']})"
    return raw.params.to_numpy(), raw.std_errors.to_numpy(), own.std_errors.to_numpy(), label


def _poisson(result: EstimationResult, design: Any, X: np.ndarray, names: list[Any],
             max_dummies: int) -> tuple[np.ndarray, ...]:
    from statsmodels import __version__ as sm_version
    from statsmodels.genmod.families import Poisson
    from statsmodels.genmod.generalized_linear_model import GLM

    n_dummies = sum(int(np.unique(c).size) - 1 for c in design.fe.codes)
    if n_dummies > max_dummies:
        raise ValueError(
            f"crosscheck: the statsmodels Poisson rebuild needs {n_dummies} fixed-effect dummy columns "
            f"({', '.join(design.fe_names)}) on {design.n_obs} rows, more than max_dummies={max_dummies}; "
            "run it on a smaller sample or raise max_dummies"
        )
    dummies = [pd.get_dummies(pd.Categorical(c), drop_first=True, dtype=float).to_numpy() for c in design.fe.codes]
    Z = np.column_stack([X, np.ones(design.n_obs)] + dummies)
    meta = result.design
    offset = None
    exposure = meta.get("exposure")
    log_name = f"log_{exposure}" if exposure else None
    if log_name and meta.get("exposure_as", "offset") == "offset" and log_name in design.frame.columns:
        offset = design.frame[log_name].to_numpy(dtype=float)
    model = GLM(design.y, Z, family=Poisson(), offset=offset, var_weights=design.weights)
    vt = result.info["vcov_type"]
    with warnings.catch_warnings():
        # statsmodels warns that robust covariances with var_weights are "not fully supported";
        # for the weighted Poisson score w (y - mu) x they equal ours (tests/test_crosscheck.py)
        warnings.filterwarnings("ignore", message="cov_type not fully supported with var_weights")
        if vt == "cluster":
            groups = np.column_stack([pd.factorize(c)[0] for c in design.clusters])
            groups = groups[:, 0] if groups.shape[1] == 1 else groups
            raw = model.fit(cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False,
                                                         "df_correction": False}, tol=1e-10, maxiter=300)
            own = model.fit(cov_type="cluster", cov_kwds={"groups": groups}, tol=1e-10, maxiter=300,
                            start_params=raw.params)
            cov_label = "cluster"
        elif vt == "hetero":
            raw = model.fit(cov_type="HC0", tol=1e-10, maxiter=300)
            own = model.fit(cov_type="HC1", tol=1e-10, maxiter=300, start_params=raw.params)
            cov_label = "HC0"
        else:
            raw = own = model.fit(tol=1e-10, maxiter=300)
            cov_label = "nonrobust"
    if not raw.converged:
        raise ValueError(f"crosscheck: the statsmodels GLM Poisson rebuild did not converge in {raw.fit_history['iteration']} "
                         "iterations")
    k = X.shape[1]
    label = (f"statsmodels {sm_version} GLM Poisson ({cov_label}; {n_dummies} fixed-effect dummies"
             f"{', offset ' + log_name if offset is not None else ''})")
    return np.asarray(raw.params)[:k], np.asarray(raw.bse)[:k], np.asarray(own.bse)[:k], label


def crosscheck(result: EstimationResult, *, max_dummies: int = MAX_DUMMIES) -> pd.DataFrame:
    """Our estimates and standard errors beside an independent rebuild (see module docstring).

    One row per coefficient: ``estimate`` (ours), ``estimate_reference``, ``estimate_diff``;
    ``std_error`` (ours), ``std_error_reference_raw`` (the reference without small-sample
    correction), ``ssc_factor`` (our variance factor), ``std_error_reference`` (=
    raw x sqrt(factor), comparable with ours), ``std_error_rel_diff``,
    ``std_error_reference_own`` (the reference's own corrected SE) and ``reference`` (library,
    version, variance type). Clusters are those of the result (one or two ways; a two-way
    variance that had to be clipped to be positive semi-definite is refused).
    """
    result, design, fit, X, names = _pieces(result)
    poisson = "pct_effect" in result.table.columns or type(fit).__name__ == "PPMLFit"
    if poisson:
        b, se_raw, se_own, label = _poisson(result, design, X, names, max_dummies)
    else:
        b, se_raw, se_own, label = _linear(result, design, X, names)
    factor = _ssc_factor(result, poisson)
    ours_b = result.params.to_numpy(dtype=float)
    ours_se = np.sqrt(np.clip(np.diag(result.vcov.to_numpy(dtype=float)), 0, None))
    se_ref = se_raw * np.sqrt(factor)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = (ours_se - se_ref) / se_ref
    out = pd.DataFrame({
        "term": names, "estimate": ours_b, "estimate_reference": b, "estimate_diff": ours_b - b,
        "std_error": ours_se, "std_error_reference_raw": se_raw, "ssc_factor": factor,
        "std_error_reference": se_ref, "std_error_rel_diff": rel, "std_error_reference_own": se_own,
        "reference": label,
    }, columns=COLUMNS)
    logger.info("crosscheck %s against %s: max |estimate diff| %.3g, max |SE rel diff| %.3g", result.model, label,
                float(np.nanmax(np.abs(out["estimate_diff"]))), float(np.nanmax(np.abs(rel))))
    return out
