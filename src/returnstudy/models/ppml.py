"""Poisson pseudo-maximum-likelihood (PPML) with absorbed fixed effects.

``E[returns_it] = orders_it * exp(sum_T beta_T treatment_T,it + controls + alpha_unit + lambda_time)``

(units and periods: this package's corridors and years by default; ``unit=``/``time=``
name them in any other panel, e.g. counties and years).

With orders to leave as exposure (offset log(orders)), ``exp(beta)`` is the ratio of
return rates (returns per order) with and without the treatment: ``irr`` in the
table, ``pct_effect`` = 100 (irr - 1). Zeros in returns are kept (no log of zero).
Fixed effects are absorbed, never expanded into dummies.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..results import EstimationResult
from ._common import FitOutput, PreparedFit, fit_design, result_from_fit, vcov_type_of
from ._design import Design, check_column_arguments, check_unique_keys, panel_keys, parse_cluster, prepare, resolve_panel_ids
from .twfe import _as_list, _key_meta, _treatment_counts, _unit_of, _unit_period_word

logger = logging.getLogger(__name__)

__all__ = ["ppml", "prepare_ppml", "prepare_ppml_call"]


def prepare_ppml(
    panel: pd.DataFrame,
    regressors: Sequence[str],
    outcome: str = "returns",
    exposure: str | None = "orders",
    exposure_as: str = "offset",
    fe: Sequence[str] = ("corridor", "year"),
    cluster: str | Sequence[str] | None = "citizen",
    weights: str | None = None,
    *,
    keys: Sequence[str] | str | None = "auto",
):
    """Design and offset for a PPML fit: rows with missing/non-positive exposure are dropped
    (counted), ``exposure_as="regressor"`` adds ``log_<exposure>`` as a regressor.
    ``keys``: the (unit, time) columns, checked for duplicates on the whole panel
    (``"auto"``: inferred from ``fe`` by :func:`~returnstudy.models._design.panel_keys`).
    Returns ``(design, offset or None, regressors used)``."""
    if exposure_as not in ("offset", "regressor"):
        raise ValueError(f"exposure_as must be 'offset' or 'regressor', got {exposure_as!r}")
    if outcome not in panel.columns:
        raise KeyError(f"outcome column {outcome!r} not in panel; available: {list(panel.columns)}")
    # before rows without exposure are removed: duplicates anywhere in the panel are an error
    if isinstance(keys, str):
        if keys != "auto":
            raise ValueError(f"keys must be 'auto', None or a sequence of column names, got {keys!r}")
        keys = panel_keys(panel.columns, fe)
    check_unique_keys(panel, keys)
    y = pd.to_numeric(panel[outcome]).astype("float64")
    if (y < 0).any():
        first = panel.index[np.flatnonzero((y < 0).to_numpy())[0]]
        raise ValueError(f"Poisson outcome {outcome!r} has negative values (first: row {first!r})")
    regs = list(regressors)
    pre_dropped: dict[str, int] = {}
    work = panel
    log_name = None
    if exposure is not None:
        if exposure not in panel.columns:
            raise KeyError(f"exposure column {exposure!r} not in panel; available: {list(panel.columns)}")
        e = pd.to_numeric(panel[exposure]).astype("float64")
        bad = (e.isna() | (e <= 0)).to_numpy()
        if len(bad) and bad.all():
            raise ValueError(f"no rows left of {len(bad)}: exposure {exposure!r} is missing or <= 0 in every row")
        if bad.any():
            pre_dropped[f"{exposure} missing or <= 0 (exposure)"] = int(bad.sum())
            work = panel.iloc[np.flatnonzero(~bad)]
        log_name = f"log_{exposure}"
        work = work.assign(**{log_name: np.log(pd.to_numeric(work[exposure]).astype("float64").to_numpy())})
        if exposure_as == "regressor":
            regs = regs + [log_name]
    design = prepare(
        work, outcome, regs, fe=fe, cluster=cluster, weights=weights,
        extra_columns=[log_name] if (log_name and exposure_as == "offset") else (), keys=keys,
    )
    if pre_dropped:
        design.dropped = {**pre_dropped, **design.dropped}
    offset = None
    if exposure is not None and exposure_as == "offset":
        offset = design.frame[log_name].to_numpy(dtype=float)
    return design, offset, regs


def ppml(
    panel: pd.DataFrame,
    treatments: str | Sequence[str] = ("eu_agreement",),
    outcome: str = "returns",
    exposure: str | None = "orders",
    exposure_as: str = "offset",
    fe: Sequence[str] | None = None,
    cluster: str | Sequence[str] | None = "citizen",
    controls: str | Sequence[str] | None = None,
    weights: str | None = None,
    drop_singletons: bool = True,
    separation: Sequence[str] = ("fe", "ir"),
    small_sample: str | Mapping[str, Any] = "fixest-default",
    alpha: float = 0.05,
    tol: float = 1e-10,
    maxiter: int = 100,
    *,
    unit: str | None = None,
    time: str | None = None,
) -> EstimationResult:
    """PPML of a count ``outcome`` (returns) on ``treatments`` with absorbed fixed effects.

    Parameters
    ----------
    exposure, exposure_as
        Orders to leave enter as offset log(orders) (coefficient fixed at 1: effects on the
        return rate) or as a regressor log(orders) (elasticity estimated). Rows with
        exposure missing or <= 0 are dropped and counted. ``exposure=None``: no exposure.
    fe, unit, time, cluster, controls, weights
        As in :func:`~returnstudy.models.twfe.twfe` (``fe=None``: unit and time effects).
    separation
        "fe": drop fixed-effect groups (e.g. corridors) whose outcome is all zero;
        "ir": iterative-rectifier check for separation by the regressors. Counts are in
        ``info["dropped"]``, ``info["dropped_fe_groups"]`` and ``info["n_separated"]``.
    tol, maxiter
        IRLS convergence (relative deviance change) and iteration cap; non-convergence is
        reported in ``info["converged"]``, a note and a warning.

    Inference uses the normal distribution (as fixest for GLMs); SEs are clustered by
    ``cluster`` with the fixest small-sample correction.
    """
    return _prepare_call(
        panel, treatments=treatments, outcome=outcome, exposure=exposure, exposure_as=exposure_as, fe=fe,
        cluster=cluster, controls=controls, weights=weights, drop_singletons=drop_singletons, separation=separation,
        small_sample=small_sample, alpha=alpha, tol=tol, maxiter=maxiter, unit=unit, time=time,
    ).fit()


def prepare_ppml_call(panel: pd.DataFrame, **kwargs: Any) -> PreparedFit:
    """``ppml(panel, **kwargs)`` prepared up to its fit (see :class:`~returnstudy.models._common.PreparedFit`):
    ``prepare_ppml_call(panel, **kw).without(mask).fit()`` (``mask`` over the design rows) equals ``ppml`` on
    the panel without those rows."""
    bound = inspect.signature(ppml).bind(panel, **kwargs)
    bound.apply_defaults()
    args = dict(bound.arguments)
    return _prepare_call(args.pop("panel"), **args)


def _prepare_call(
    panel: pd.DataFrame, *, treatments: str | Sequence[str], outcome: str, exposure: str | None, exposure_as: str,
    fe: Sequence[str] | None, cluster: str | Sequence[str] | None, controls: str | Sequence[str] | None,
    weights: str | None, drop_singletons: bool, separation: Sequence[str], small_sample: str | Mapping[str, Any],
    alpha: float, tol: float, maxiter: int, unit: str | None, time: str | None,
) -> PreparedFit:
    """The body of :func:`ppml`: checks and design, with the fit and its packaging as ``finish``."""
    treat = _as_list(treatments)
    ctrl = _as_list(controls)
    if not treat:
        raise ValueError("treatments must name at least one column")
    keys, fe = resolve_panel_ids(panel.columns, unit, time, fe)
    check_column_arguments(panel, treatments=treat, controls=ctrl or None, fe=fe or None,
                           cluster=parse_cluster(cluster) or None, weights=weights)
    design, offset, regs = prepare_ppml(panel, treat + ctrl, outcome, exposure, exposure_as, fe, cluster, weights,
                                        keys=keys)

    def estimate(design: Design, offset: np.ndarray | None, start: np.ndarray | None) -> FitOutput:
        return fit_design(
            design, "ppml", vcov_type=vcov_type_of(cluster), small_sample=small_sample,
            drop_singletons=drop_singletons, offset=offset, separation=separation, tol=tol, maxiter=maxiter,
            start_eta=start,
        )

    def package(out: FitOutput) -> EstimationResult:
        info: dict[str, Any] = {
            "exposure": None if exposure is None else f"{exposure} ({'offset log(' + exposure + ')' if exposure_as == 'offset' else 'regressor log(' + exposure + ')'})",
            "treatment_counts": _treatment_counts(out.design.frame, treat, _unit_of(keys)),
            "control_group": (
                f"untreated {_unit_period_word(keys)} (never and not-yet treated; already treated years are treated)"
            ),
        }
        return result_from_fit(
            out, "ppml", poisson=True, alpha=alpha, info=info,
            design_meta={"treatments": treat, "controls": ctrl, "exposure": exposure, "exposure_as": exposure_as,
                         **_key_meta(keys)},
        )

    return PreparedFit(design, offset, estimate, package, poisson=True, alpha=alpha)
