"""Figures for estimation results (matplotlib; safe with the non-interactive Agg backend).

* :func:`plot_event_study`: estimates by year relative to entry into force with
  confidence intervals, zero line, the reference period marked.
* :func:`plot_coefficients`: one term across several results (specifications).

Poisson results can be drawn as incidence-rate ratios (``scale="irr"``, reference
line at 1) or percentage effects (``scale="pct"``, reference line at 0).

Figures are :class:`NotebookFigure`: plain matplotlib figures, not registered with pyplot
(nothing accumulates in a loop), that show themselves in a Jupyter cell without
``%matplotlib inline`` (``_repr_png_``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .results import EstimationResult

__all__ = ["NotebookFigure", "new_figure", "plot_event_study", "plot_coefficients"]

_SCALES = ("log", "irr", "pct")


class NotebookFigure(Figure):
    """A matplotlib Figure that renders itself as PNG in Jupyter (``_repr_png_``), whatever the backend."""

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


def new_figure(figsize: tuple[float, float]) -> NotebookFigure:
    """A new figure with constrained layout, outside pyplot's global state."""
    return NotebookFigure(figsize=figsize, layout="constrained")


def _new_axes(ax: Any) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    fig = new_figure((7, 4.2))
    return fig, fig.add_subplot()


EXPOSURE_LABELS = {"orders": "order to leave", "found_illegal": "person found illegally present"}


def _per(result: EstimationResult) -> str:
    exposure = result.design.get("exposure")
    return f" per {EXPOSURE_LABELS.get(exposure, exposure)}" if exposure else ""


def _columns(result: EstimationResult, scale: str) -> tuple[pd.DataFrame, float, str]:
    """(estimate, low, high) columns on the requested scale, reference value and axis label."""
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    t = result.table
    poisson = "irr" in t.columns
    if scale != "log" and not poisson:
        raise ValueError(f"scale={scale!r} needs a Poisson result (table with 'irr'); model is {result.model!r}")
    if scale == "irr":
        out = pd.DataFrame({"est": t["irr"], "low": np.exp(t["ci_low"]), "high": np.exp(t["ci_high"])})
        return out, 1.0, "Incidence-rate ratio exp(b)"
    if scale == "pct":
        out = pd.DataFrame({"est": t["pct_effect"], "low": t["pct_ci_low"], "high": t["pct_ci_high"]})
        return out, 0.0, f"Change in {result.design.get('outcome', 'outcome')}{_per(result)} (%)"
    out = pd.DataFrame({"est": t["estimate"], "low": t["ci_low"], "high": t["ci_high"]})
    outcome = result.design.get("outcome", "outcome")
    if poisson:
        label = f"Coefficient (log points, {outcome}{_per(result)})"
    elif outcome == "return_rate":
        label = "Effect on the return rate (returns per order to leave)"
    else:
        label = f"Effect on {outcome}"
    return out, 0.0, label


def _reference_period(result: EstimationResult, x: np.ndarray, is_ref: np.ndarray) -> float:
    """The omitted relative period: from the result's design, else the row without a standard error."""
    ref = result.design.get("reference")
    if ref is None:
        ref = (result.extra.get("call") or {}).get("kwargs", {}).get("ref_period")
    if ref is None and is_ref.any():
        ref = x[is_ref][0]
    return -1.0 if ref is None else float(ref)


def plot_event_study(
    result: EstimationResult, ax: Any = None, scale: str = "log", title: str | None = None,
    reference: int | None = None,
) -> Any:
    """Event-study plot: point estimates and (1 - alpha) intervals by relative period.

    The reference period (estimate fixed at 0 / IRR 1) is drawn as a hollow marker and
    labelled; a dashed vertical line at ``reference + 0.5`` separates the reference period
    and the leads from the lags (``reference`` defaults to the result's reference period).
    Returns the Figure.
    """
    if not isinstance(result, EstimationResult):
        raise TypeError(f"expected an EstimationResult, got {type(result).__name__}")
    vals, ref_value, ylabel = _columns(result, scale)
    try:
        x = np.asarray(vals.index, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError("plot_event_study needs a table indexed by relative period (int)") from exc
    fig, ax = _new_axes(ax)
    se = result.table["std_error"].to_numpy()
    no_se = np.isnan(se)
    own_ref = _reference_period(result, x, no_se)
    # the reference row has no standard error; other rows without one (variance not
    # identified) are still estimates
    is_ref = no_se & (x == own_ref) if np.any(no_se & (x == own_ref)) else no_se
    est = vals["est"].to_numpy(dtype=float)
    lo, hi = vals["low"].to_numpy(dtype=float), vals["high"].to_numpy(dtype=float)
    ok = ~is_ref
    ax.axhline(ref_value, color="0.4", lw=0.9, ls="-")
    ref_period = float(reference) if reference is not None else own_ref
    sep = ax.axvline(ref_period + 0.5, color="0.6", lw=0.8, ls="--")
    sep.set_gid("lead_lag_separator")
    # bands over runs of consecutive estimated periods (not bridged across the reference)
    labelled = False
    run_start = None
    for i in range(len(x) + 1):
        inside = i < len(x) and ok[i] and (run_start is None or x[i] == x[i - 1] + 1)
        if inside and run_start is None:
            run_start = i
        elif not inside and run_start is not None:
            sl = slice(run_start, i)
            ax.fill_between(
                x[sl], lo[sl], hi[sl], color="C0", alpha=0.18, lw=0,
                label=None if labelled else f"{100 * (1 - result.alpha):g}% CI",
            )
            labelled = True
            run_start = i if (i < len(x) and ok[i]) else None
    eb = ax.errorbar(x[ok], est[ok], yerr=[est[ok] - lo[ok], hi[ok] - est[ok]], fmt="o", color="C0", capsize=3, label="estimate")
    eb.lines[0].set_gid("estimates")
    if is_ref.any():
        ax.plot(x[is_ref], est[is_ref], "o", mfc="white", mec="C0", ms=7, label="reference period")
        for xr in x[is_ref]:
            ax.annotate("ref.", (xr, ref_value), textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([str(int(v)) for v in x])
    treatment = result.info.get("treatment") or result.design.get("treatment", "treatment")
    ax.set_xlabel(f"Years relative to entry into force of {treatment} (0 = first year in force)")
    ax.set_ylabel(ylabel)
    if title is None:
        ctrl = result.design.get("control")
        title = f"{result.model}: {treatment}" + (f" (controls: {ctrl})" if ctrl else "")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return fig


def plot_coefficients(
    results: Mapping[str, EstimationResult] | Sequence[EstimationResult],
    term: Any = None,
    ax: Any = None,
    scale: str = "log",
    title: str | None = None,
) -> Any:
    """Coefficient plot of one ``term`` across results (e.g. specifications or estimators).

    ``results`` is a dict label -> result or a list (labelled by model name). ``term``
    defaults to the first row of the first result's table. Horizontal layout: one row
    per result, the point estimate with its confidence interval, and a reference line at
    0 (1 for ``scale="irr"``). Returns the Figure.
    """
    if isinstance(results, Mapping):
        items = list(results.items())
    else:
        items = [(f"{i + 1}. {r.model}", r) for i, r in enumerate(results)]
    if not items:
        raise ValueError("no results to plot")
    for label, r in items:
        if not isinstance(r, EstimationResult):
            raise TypeError(f"result {label!r} is a {type(r).__name__}, not an EstimationResult")
    if term is None:
        term = items[0][1].table.index[0]
    kinds = {label: ("poisson" if r.is_poisson else "linear") for label, r in items}
    if len(set(kinds.values())) > 1:
        raise ValueError(
            f"results mix Poisson (log rate ratio) and linear estimates, which are not on one scale: {kinds}; plot them separately"
        )
    rows = []
    labels = set()
    ref_value = 0.0
    for label, r in items:
        if term not in r.table.index:
            raise KeyError(f"term {term!r} not in result {label!r}; available: {list(r.table.index)}")
        vals, ref_value, axis_label = _columns(r, scale)
        labels.add(axis_label)
        rows.append((label, *vals.loc[term, ["est", "low", "high"]].to_numpy(dtype=float)))
    if len(labels) == 1:
        ylabel = labels.pop()
    elif scale == "pct":
        ylabel = "Change in the outcome per unit of exposure (%)"
    else:
        ylabel = "Coefficient (model scale; outcomes differ between rows)"
    if ax is None:
        fig = new_figure((9, 1.4 + 0.45 * len(rows)))
        ax = fig.add_subplot()
        own_figure = True
    else:
        fig = ax.figure
        own_figure = False
    y = np.arange(len(rows))[::-1]
    est = np.array([r[1] for r in rows])
    lo = np.array([r[2] for r in rows])
    hi = np.array([r[3] for r in rows])
    ax.axvline(ref_value, color="0.4", lw=0.9)
    eb = ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", color="C0", capsize=3)
    eb.lines[0].set_gid("estimates")
    ax.set_yticks(y)
    ax.set_yticklabels([r[0] for r in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(ylabel)
    heading = title or f"{term}: estimates with {100 * (1 - items[0][1].alpha):g}% confidence intervals"
    if own_figure:
        fig.suptitle(heading, fontsize=10)  # laid out with the figure, never clipped
    else:
        ax.set_title(heading, fontsize=9)
    return fig
