"""Figures for the parallel-trends sensitivity analysis (matplotlib, Agg-safe, no pyplot).

* :func:`plot_honest_did`: robust confidence intervals against Mbar (relative magnitudes)
  or M (smoothness), the original interval at the left, a zero line (as the R package
  HonestDiD draws them).
* :func:`plot_pretest_power`: the event-study coefficients with their intervals and the
  linear trends the pre-test detects with 50% and 80% power (Roth 2022).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_honest_did", "plot_pretest_power"]


def _axes(ax: Any, size: tuple[float, float] = (6.5, 4.0)) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    from returnstudy.plots import new_figure

    fig = new_figure(size)
    return fig, fig.add_subplot()


def plot_honest_did(table: pd.DataFrame, ax: Any = None, scale: str = "log", title: str | None = None) -> Any:
    """Robust intervals (one per ``m``) and the original interval, from :func:`honest_did`'s table.

    ``scale="pct"`` draws ``100 (exp(x) - 1)`` (Poisson results only).
    """
    need = {"m", "lb", "ub", "original_lb", "original_ub", "restriction", "method"}
    missing = need - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}: pass the output of honest_did")
    if scale not in ("log", "pct"):
        raise ValueError(f"scale={scale!r}: expected 'log' or 'pct'")
    pre = "pct_" if scale == "pct" else ""
    if scale == "pct" and "pct_lb" not in table.columns:
        raise ValueError("scale='pct' needs a Poisson result's table (columns pct_lb, pct_ub)")
    fig, ax = _axes(ax)
    m = table["m"].to_numpy(dtype=float)
    lb, ub = table[f"{pre}lb"].to_numpy(dtype=float), table[f"{pre}ub"].to_numpy(dtype=float)
    olb, oub = float(table[f"{pre}original_lb"].iloc[0]), float(table[f"{pre}original_ub"].iloc[0])
    step = float(np.min(np.diff(np.unique(m)))) if np.unique(m).size > 1 else 1.0
    x_orig = float(m.min()) - step
    ax.vlines([x_orig], [olb], [oub], color="0.35", lw=2.2, label="original (parallel trends)")
    method = str(table["method"].iloc[0])
    ax.vlines(m, lb, ub, color="C0", lw=2.2, label=f"robust ({method})")
    for x, a, b in zip(m, lb, ub):
        ax.plot([x - 0.1 * step, x + 0.1 * step], [a, a], color="C0", lw=1.2)
        ax.plot([x - 0.1 * step, x + 0.1 * step], [b, b], color="C0", lw=1.2)
    ax.plot([x_orig - 0.1 * step, x_orig + 0.1 * step], [olb, olb], color="0.35", lw=1.2)
    ax.plot([x_orig - 0.1 * step, x_orig + 0.1 * step], [oub, oub], color="0.35", lw=1.2)
    ax.axhline(0.0, color="black", lw=0.8)
    rm = str(table["restriction"].iloc[0]) == "relative_magnitude"
    ax.set_xticks([x_orig, *m], ["orig.", *[f"{v:g}" for v in m]])
    ax.set_xlabel("Mbar (post-period violation / largest pre-period change)" if rm
                  else "M (change in the slope of the trend difference per period)")
    unit = "% change" if scale == "pct" else ("log points" if "pct_lb" in table.columns else "outcome units")
    ax.set_ylabel(f"{100 * (1 - float(table['alpha'].iloc[0])):g}% CI ({unit})")
    ax.set_title(title or f"Sensitivity to violations of parallel trends ({'relative magnitudes' if rm else 'smoothness'})",
                 fontsize=10)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return fig


def plot_pretest_power(power: Any, ax: Any = None, title: str | None = None) -> Any:
    """Event-study coefficients (reference period at 0) with the trends detected at each power."""
    c = power.coefficients
    fig, ax = _axes(ax)
    npre = c.n_pre
    pos = np.concatenate([np.arange(-npre, 0), [0], np.arange(1, c.n_post + 1)]).astype(float)
    est = np.concatenate([c.beta[:npre], [0.0], c.beta[npre:]])
    se = np.sqrt(np.concatenate([np.diag(c.sigma)[:npre], [0.0], np.diag(c.sigma)[npre:]]))
    z = 1.959963984540054
    ax.errorbar(pos, est, yerr=z * se, fmt="o", color="black", ms=4, capsize=3, lw=1, label="estimate, 95% CI")
    for i, r in enumerate(power.slopes.itertuples(index=False)):
        ax.plot(pos, r.slope * pos, ls="--" if i == 0 else ":", color=f"C{i + 1}", lw=1.6,
                label=f"trend detected with {r.power:.0%} power (slope {r.slope:+.3g})")
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.axvline(0.0, color="0.8", lw=0.8)
    labels = list(c.labels)
    if len(labels) == c.n_pre + c.n_post:
        ref = "ref."
        ticks = [str(x) for x in labels[:npre]] + [ref] + [str(x) for x in labels[npre:]]
        ax.set_xticks(pos, ticks)
    ax.set_xlabel("Relative period (reference period at 0)")
    ax.set_ylabel("Coefficient (log points)" if c.poisson else "Coefficient")
    t = power.test
    ax.set_title(title or f"Pre-test power: chi2({int(t['df'])}) = {t['statistic']:.2f}, p = {t['p_value']:.3g}", fontsize=10)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return fig
