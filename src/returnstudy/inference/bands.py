"""Simultaneous (sup-t) confidence bands for event-study coefficients.

For estimates ``b_k`` with covariance ``V`` and standard errors ``s_k`` the band
``b_k +/- c s_k`` covers all ``K`` true coefficients jointly with probability
``level`` when ``c`` is the ``level`` quantile of ``max_k |Z_k|``, ``Z`` drawn
from the estimated correlation matrix ``D^-1/2 V D^-1/2`` (Montiel Olea &
Plagborg-Moller 2019, "Simultaneous confidence bands"). ``Z`` is multivariate
normal, or multivariate t with the result's degrees of freedom when the result
uses a t reference distribution (linear models with clustered errors).
The pointwise critical value is the lower bound of ``c`` and Bonferroni's the upper.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from returnstudy.inference._gaussian import symmetric_sqrt
from returnstudy.results import EstimationResult

logger = logging.getLogger(__name__)

__all__ = ["sup_t_bands", "sup_t_critical_value"]


def sup_t_critical_value(
    corr: np.ndarray, level: float = 0.95, reps: int = 10_000, seed: int | None = None, df: float | None = None
) -> float:
    """``level`` quantile of ``max |Z|`` for ``Z ~ N(0, corr)`` (or multivariate t with ``df``)."""
    corr = np.asarray(corr, dtype=float)
    if not 0 < level < 1:
        raise ValueError(f"level={level}: must be in (0, 1)")
    vals = np.linalg.eigvalsh((corr + corr.T) / 2)
    if vals.min() < -1e-8 * max(1.0, vals.max()):
        raise ValueError("covariance matrix is not positive semi-definite")
    L = symmetric_sqrt(corr)  # seeded draws that move continuously with corr
    rng = np.random.default_rng(seed)
    out = np.empty(reps)
    step = max(1, min(reps, 4_000_000 // max(corr.shape[0], 1)))
    for s in range(0, reps, step):
        m = min(step, reps - s)
        Z = rng.standard_normal((m, corr.shape[0])) @ L
        if df is not None and np.isfinite(df):
            Z = Z / np.sqrt(rng.chisquare(df, size=(m, 1)) / df)
        out[s:s + m] = np.max(np.abs(Z), axis=1)
    return float(np.quantile(out, level))


def sup_t_bands(
    result: EstimationResult,
    level: float = 0.95,
    reps: int = 10_000,
    seed: int | None = None,
    terms: Sequence[Any] | None = None,
) -> EstimationResult:
    """Add simultaneous bands ``band_low``/``band_high`` to the event-study table.

    ``terms`` default: every table row with a positive standard error (the reference
    period, with no standard error, is skipped). Poisson results also get
    ``pct_band_low``/``pct_band_high`` (100 (exp(.) - 1)). The critical value, draws and
    seed are recorded in ``info["sup_t"]``.
    """
    table = result.table.copy()
    se_all = table["std_error"]
    if terms is None:
        terms = [t for t in table.index if np.isfinite(se_all.get(t, np.nan)) and se_all[t] > 0]
    terms = list(terms)
    missing = [t for t in terms if t not in result.vcov.index]
    if missing:
        raise KeyError(f"terms {missing} have no entry in the result's covariance matrix")
    if len(terms) == 0:
        raise ValueError("no terms with a standard error to band")
    V = result.vcov.loc[terms, terms].to_numpy(dtype=float)
    se = np.sqrt(np.diag(V))
    if not np.all(se > 0):
        raise ValueError("all banded terms need a positive variance")
    corr = V / np.outer(se, se)
    c = sup_t_critical_value(corr, level, reps, seed, result.df_t)
    est = table.loc[terms, "estimate"].to_numpy(dtype=float)
    table.loc[terms, "band_low"] = est - c * se
    table.loc[terms, "band_high"] = est + c * se
    if "irr" in table.columns:
        table["pct_band_low"] = 100.0 * np.expm1(table["band_low"])
        table["pct_band_high"] = 100.0 * np.expm1(table["band_high"])
    df = result.df_t
    pointwise = float(stats.norm.ppf(0.5 + level / 2)) if df is None else float(stats.t.ppf(0.5 + level / 2, df))
    info = dict(result.info)
    info["sup_t"] = {"level": level, "critical_value": c, "pointwise_critical_value": pointwise,
                     "reps": reps, "seed": seed, "terms": terms}
    notes = list(info.get("notes", []) or [])
    notes.append(f"sup-t simultaneous {100 * level:g}% bands: critical value {c:.3f} "
                 f"(pointwise {pointwise:.3f}), {reps} draws, seed {seed}")
    info["notes"] = notes
    return dataclasses.replace(result, table=table, info=info)
