"""Two-way fixed-effects (TWFE) linear regression on a unit-period panel.

``outcome_it = sum_T beta_T * treatment_T,it + controls + alpha_unit + lambda_time + e_it``

The unit and period are this package's corridor and year by default; ``unit=`` and
``time=`` name them in any other panel (e.g. ``unit="countyreal", time="year"``).

estimated by least squares with the fixed effects absorbed (within transformation),
optionally weighted (e.g. by orders to leave, so that beta is an orders-weighted
effect on the return rate), with cluster-robust standard errors.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..results import EstimationResult
from ._common import FitOutput, PreparedFit, fit_design, result_from_fit, vcov_type_of
from ._design import DEFAULT_UNIT, Design, check_column_arguments, parse_cluster, prepare, resolve_panel_ids

logger = logging.getLogger(__name__)

__all__ = ["twfe", "build_outcome", "prepare_twfe_call", "LOG_ZERO_RULES"]

LOG_ZERO_RULES = ("drop", "add_half")
DERIVED_OUTCOMES = ("return_rate", "log_return_rate", "ihs_return_rate")


def _as_list(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return list(x)


def build_outcome(panel: pd.DataFrame, outcome: str, log_zero_rule: str = "drop") -> tuple[pd.Series, dict[str, Any]]:
    """The outcome series (aligned with ``panel``) and a note on how it was built.

    * ``"return_rate"``: returns / orders (the panel column; NaN when orders is 0 or missing).
    * ``"log_return_rate"``: log(returns / orders). Zero returns: ``log_zero_rule="drop"``
      leaves them missing (rows dropped and counted); ``"add_half"`` uses
      log((returns + 0.5) / (orders + 0.5)) for every row with orders > 0 (an
      Anscombe-type correction; coefficients are then approximately log-point effects).
    * ``"ihs_return_rate"``: asinh(return_rate), defined at zero; approximately log for
      large values but, as rates are mostly below 1, close to the rate itself.
    * any other numeric column name: used as is.
    """
    meta: dict[str, Any] = {}
    if outcome in DERIVED_OUTCOMES:
        need = ["returns", "orders"] if outcome != "return_rate" or "return_rate" not in panel else ["return_rate"]
        missing = [c for c in need if c not in panel.columns]
        if missing:
            raise KeyError(f"outcome {outcome!r} needs panel column(s) {missing}")
    if outcome == "return_rate":
        if "return_rate" in panel.columns:
            y = pd.to_numeric(panel["return_rate"]).astype("float64")
        else:
            o = panel["orders"].astype("float64")
            y = (panel["returns"].astype("float64") / o).where(o > 0)
        return y, meta
    if outcome == "log_return_rate":
        if log_zero_rule not in LOG_ZERO_RULES:
            raise ValueError(f"log_zero_rule must be one of {LOG_ZERO_RULES}, got {log_zero_rule!r}")
        r = panel["returns"].astype("float64")
        o = panel["orders"].astype("float64")
        if log_zero_rule == "drop":
            y = np.log((r / o).where((o > 0) & (r > 0)))
            meta["n_zero_returns"] = int(((r == 0) & (o > 0)).sum())
            meta["log_zero_rule"] = "drop: rows with zero returns are excluded"
        else:
            y = np.log(((r + 0.5) / (o + 0.5)).where(o > 0))
            meta["log_zero_rule"] = "add_half: log((returns + 0.5) / (orders + 0.5))"
        return y, meta
    if outcome == "ihs_return_rate":
        base, _ = build_outcome(panel, "return_rate")
        return np.arcsinh(base), meta
    if outcome not in panel.columns:
        raise KeyError(f"outcome column {outcome!r} not in panel; available: {list(panel.columns)}")
    return panel[outcome], meta


def twfe(
    panel: pd.DataFrame,
    outcome: str = "return_rate",
    treatments: str | Sequence[str] = ("eu_agreement",),
    fe: Sequence[str] | None = None,
    cluster: str | Sequence[str] | None = "citizen",
    controls: str | Sequence[str] | None = None,
    weights: str | None = None,
    log_zero_rule: str = "drop",
    drop_singletons: bool = True,
    small_sample: str | Mapping[str, Any] = "fixest-default",
    alpha: float = 0.05,
    *,
    unit: str | None = None,
    time: str | None = None,
) -> EstimationResult:
    """Two-way fixed-effects least squares of ``outcome`` on ``treatments`` (+ ``controls``).

    Parameters
    ----------
    outcome
        "return_rate" (returns per order to leave), "log_return_rate", "ihs_return_rate"
        (see :func:`build_outcome`) or any numeric panel column.
    treatments, controls
        Panel columns; the table reports all of them, treatments first.
    fe
        Absorbed fixed effects: "corridor", "year", "geo", "citizen", "geo^year",
        "citizen^year" or any column / "a^b" interaction. Default (None): unit and time
        effects, ``(unit, time)``.
    unit, time
        Columns identifying a panel row (default "corridor" and "year"): one row per
        (unit, time) is required, duplicates raise. Name them for any other panel; when
        neither is named the key is inferred from ``fe`` (see
        :func:`~returnstudy.models._design.resolve_panel_ids`).
    cluster
        "citizen" (default: errors correlated within a country of citizenship across
        reporting countries and years), "geo", "corridor", ("citizen", "geo") for
        two-way (Cameron-Gelbach-Miller), None/"hetero" for HC1, "iid".
    weights
        None, "orders" (orders to leave, an orders-weighted average effect) or a column.
    drop_singletons
        Drop observations alone in a fixed-effect group (as pyfixest; does not change estimates).

    Returns an :class:`EstimationResult` with a t(G-1) reference distribution when clustered.
    """
    return _prepare_call(
        panel, outcome=outcome, treatments=treatments, fe=fe, cluster=cluster, controls=controls, weights=weights,
        log_zero_rule=log_zero_rule, drop_singletons=drop_singletons, small_sample=small_sample, alpha=alpha,
        unit=unit, time=time,
    ).fit()


def prepare_twfe_call(panel: pd.DataFrame, **kwargs: Any) -> PreparedFit:
    """``twfe(panel, **kwargs)`` prepared up to its fit (see :class:`~returnstudy.models._common.PreparedFit`):
    ``prepare_twfe_call(panel, **kw).without(mask).fit()`` (``mask`` over the design rows) equals ``twfe`` on
    the panel without those rows (every outcome transformation is row by row)."""
    bound = inspect.signature(twfe).bind(panel, **kwargs)
    bound.apply_defaults()
    args = dict(bound.arguments)
    return _prepare_call(args.pop("panel"), **args)


def _prepare_call(
    panel: pd.DataFrame, *, outcome: str, treatments: str | Sequence[str], fe: Sequence[str] | None,
    cluster: str | Sequence[str] | None, controls: str | Sequence[str] | None, weights: str | None,
    log_zero_rule: str, drop_singletons: bool, small_sample: str | Mapping[str, Any], alpha: float,
    unit: str | None, time: str | None,
) -> PreparedFit:
    """The body of :func:`twfe`: checks, outcome and design, with the fit and its packaging as ``finish``."""
    treat = _as_list(treatments)
    ctrl = _as_list(controls)
    if not treat:
        raise ValueError("treatments must name at least one column")
    y, meta = build_outcome(panel, outcome, log_zero_rule)
    if outcome in DERIVED_OUTCOMES and (outcome != "return_rate" or "return_rate" not in panel.columns):
        work = panel.assign(**{outcome: y.to_numpy(dtype=float, na_value=np.nan)})
    else:
        work = panel
    keys, fe = resolve_panel_ids(panel.columns, unit, time, fe)
    check_column_arguments(panel, treatments=treat, controls=ctrl or None, fe=fe or None,
                           cluster=parse_cluster(cluster) or None, weights=weights)
    design = prepare(work, outcome, treat + ctrl, fe=fe, cluster=cluster, weights=weights, keys=keys)

    def estimate(design: Design, offset: np.ndarray | None, start: np.ndarray | None) -> FitOutput:
        vt = vcov_type_of(cluster)
        return fit_design(design, "ols", vcov_type=vt, small_sample=small_sample, drop_singletons=drop_singletons)

    def package(out: FitOutput) -> EstimationResult:
        info: dict[str, Any] = {}
        if "log_zero_rule" in meta:
            info["log_zero_rule"] = meta["log_zero_rule"]
        info["treatment_counts"] = _treatment_counts(out.design.frame, treat, _unit_of(keys))
        info["control_group"] = (
            f"untreated {_unit_period_word(keys)} (never and not-yet treated; already treated years are treated)"
        )
        return result_from_fit(
            out, "twfe", poisson=False, alpha=alpha, info=info,
            design_meta={"treatments": treat, "controls": ctrl, "outcome": outcome, **_key_meta(keys)},
        )

    return PreparedFit(design, None, estimate, package, poisson=False, alpha=alpha)


def _unit_of(keys: Sequence[str] | None) -> str:
    """The unit column of a panel key (``corridor`` when the key is unknown)."""
    return keys[0] if keys else DEFAULT_UNIT


def _key_meta(keys: Sequence[str] | None) -> dict[str, str]:
    """``{"unit": ..., "time": ...}`` of a two-column panel key (empty when unknown), for
    ``EstimationResult.design`` (so a re-fit can name the same columns)."""
    return {"unit": keys[0], "time": keys[1]} if keys and len(keys) == 2 else {}


def _unit_period_word(keys: Sequence[str] | None) -> str:
    """'corridor-years' for this package's panel, else '<unit>-<time> rows'."""
    if not keys or tuple(keys) == ("corridor", "year"):
        return "corridor-years"
    return f"{keys[0]}-{keys[1]} rows"


def _treatment_counts(
    frame: pd.DataFrame, treatments: Sequence[str], unit: str = DEFAULT_UNIT
) -> dict[str, dict[str, int]]:
    """Treated rows and treated units (``treated_corridors``: distinct ``unit`` values) per
    treatment column in the estimation sample."""
    out = {}
    codes = pd.factorize(frame[unit])[0] if unit in frame.columns else None  # one integer code per unit
    for t in treatments:
        if t not in frame.columns:
            continue
        v = frame[t].to_numpy(dtype="float64", na_value=np.nan)
        treated = v > 0  # missing counts as untreated
        units = codes[treated]
        corr = int(np.unique(units[units >= 0]).size) if codes is not None else 0
        out[t] = {"treated_rows": int(treated.sum()), "treated_corridors": corr}
    return out
