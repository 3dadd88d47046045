"""Which corridors identify a treatment effect, counted on the rows a model actually used.

Under corridor fixed effects a corridor carries identifying variation for a treatment only if
the treatment takes more than one value among that corridor's rows in the estimation sample.
The rows a model uses are fewer than the filtered sample: rows with missing values, corridors
whose returns are all zero (Poisson separation), singleton fixed-effect groups are dropped.
Counting switch-ons on the filtered sample therefore overstates how many corridors and
citizenships (the clusters) identify an effect; :func:`switching_counts` counts them on the
rows used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["rows_used", "switching_by_treatment", "switching_corridors", "switching_units", "switching_counts"]


def rows_used(result: Any, sample: pd.DataFrame) -> pd.DataFrame | None:
    """The rows of ``sample`` that the fitted ``result`` used, or None if the result does not say.

    Read from the result's design (``extra["design"].frame``: PPML, linear fixed effects, event
    studies) or its ``extra["sample_index"]`` (imputation, Sun-Abraham). The index labels must
    be those of ``sample`` (the panel the model was given).
    """
    extra = getattr(result, "extra", None) or {}
    index = None
    design = extra.get("design")
    if design is not None and hasattr(design, "frame"):
        index = design.frame.index
    elif "sample_index" in extra:
        index = pd.Index(extra["sample_index"])
    elif "full_result" in extra:
        return rows_used(extra["full_result"], sample)
    if index is None:
        return None
    missing = index.difference(sample.index)
    if len(missing):
        raise KeyError(f"{len(missing)} row label(s) used by the model are not in the sample (first: {missing[0]!r}); "
                       "pass the panel the model was fitted on")
    return sample.loc[index]


def switching_units(rows: pd.DataFrame, treatment: str) -> tuple[int, int]:
    """(corridors, citizenships) whose ``treatment`` varies among ``rows``.

    A corridor counts if its treatment value takes at least two distinct non-missing values
    in ``rows`` (a switch-on, a switch-off, or a change of the share of the year in force);
    the citizenships are those of the counted corridors: with standard errors clustered by
    citizenship, the number of clusters that carry the identifying variation. A treatment
    column absent from ``rows`` counts (0, 0).
    """
    if treatment not in rows.columns or rows.empty:
        return 0, 0
    switching = set(switching_corridors(rows, treatment))
    corridor = _corridor_labels(rows)
    citizens = rows.loc[corridor.isin(switching).to_numpy(), "citizen"]
    return len(switching), int(citizens.nunique())


def _corridor_labels(rows: pd.DataFrame) -> pd.Series:
    return rows["corridor"] if "corridor" in rows.columns else rows["geo"].astype(str) + "-" + rows["citizen"].astype(str)


def switching_corridors(rows: pd.DataFrame, treatment: str, unit: str | None = None) -> list:
    """The corridors (or values of the ``unit`` column) whose ``treatment`` takes at least two
    distinct non-missing values among ``rows`` (sorted; empty if the column is absent): those
    that identify its effect under unit fixed effects (see :func:`switching_units`)."""
    return switching_by_treatment(rows, [treatment], unit)[treatment]


def switching_by_treatment(rows: pd.DataFrame, treatments: Sequence[str], unit: str | None = None) -> dict[str, list]:
    """:func:`switching_corridors` of several treatments at once (one grouping of ``rows``)."""
    present = [t for t in dict.fromkeys(treatments) if t in rows.columns]
    out: dict[str, list] = {t: [] for t in treatments}
    if not present or rows.empty:
        return out
    labels = rows[unit] if unit is not None else _corridor_labels(rows)
    codes, units = pd.factorize(labels, use_na_sentinel=True)  # units: an Index of the labels' own dtype
    grouped = codes >= 0
    for t in present:
        try:
            v = rows[t].to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError):  # not numeric: count distinct values per unit
            distinct = rows.loc[grouped, t].groupby(codes[grouped]).nunique(dropna=True)
            out[t] = sorted(units[distinct.index[distinct.to_numpy() > 1]])
            continue
        # at least two distinct non-missing values <=> the largest exceeds the smallest
        ok = grouped & ~np.isnan(v)
        low = np.full(len(units), np.inf)
        high = np.full(len(units), -np.inf)
        np.minimum.at(low, codes[ok], v[ok])
        np.maximum.at(high, codes[ok], v[ok])
        out[t] = sorted(units[high > low])
    return out


def switching_counts(result: Any, sample: pd.DataFrame, treatment: str) -> tuple[int, int, str]:
    """:func:`switching_units` on the rows ``result`` used; the third item names the basis:
    ``"rows used by the model"`` or, when the result does not record its rows,
    ``"filtered sample"`` (logged)."""
    used = rows_used(result, sample) if result is not None else None
    if used is None:
        if result is not None:
            logger.info("model result does not record its rows: switching units of %s counted on the filtered sample",
                        treatment)
        return (*switching_units(sample, treatment), "filtered sample")
    return (*switching_units(used, treatment), "rows used by the model")
