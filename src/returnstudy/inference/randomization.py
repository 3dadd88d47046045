"""Randomization inference by permuting adoption dates.

Under the sharp null of no effect in any corridor-year, the assignment of
adoption dates to units is exchangeable. Each draw permutes the adoption
pattern across units and re-estimates:

* ``level="citizen"``: citizenships exchange their adoption patterns — corridor
  ``(geo, c)`` receives the adoption year of ``(geo, pi(c))`` (missing if that
  corridor has none). This keeps the number of treated citizenships, the
  distribution of adoption years and, for EU-style treatments, the set of
  participating reporting countries per citizenship; it is the natural level
  for treatments decided per citizenship (EU agreements).
* ``level="corridor"``: adoption years are permuted across all corridors
  (bilateral-style treatments), keeping the number of treated corridors and
  the timing distribution.

The treatment column, ``{T}_cohort`` and ``{T}_years_since`` are rebuilt from
the permuted adoption years (``T = 1`` from the adoption year on). The p-value
is ``(1 + #{|s*| >= |s|}) / (1 + R)`` for each term, with ``s`` the estimate
(``statistic="estimate"``) or its t statistic (``statistic="t"``) and ``R`` the
number of draws whose re-estimation succeeded. Failed draws (``ValueError`` or
``LinAlgError`` from the estimator, e.g. no treated rows left) are logged with a
warning and counted in ``info``; more than 10% failed draws raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from returnstudy._progress import progress as _progress
from returnstudy.results import EstimationResult

logger = logging.getLogger(__name__)

__all__ = ["randomization_inference", "permute_adoption"]

#: Largest share of permutation draws whose re-estimation may fail before the p-value is refused.
MAX_FAILED_SHARE = 0.10


class _Permuter:
    """Precomputed corridor structure for fast repeated permutations of adoption years."""

    def __init__(self, panel: pd.DataFrame, treatment: str):
        self.coh_col, self.ys_col = f"{treatment}_cohort", f"{treatment}_years_since"
        for col in (treatment, self.coh_col, "geo", "citizen", "year"):
            if col not in panel.columns:
                raise KeyError(f"randomization_inference: column {col!r} not in panel")
        self.panel, self.treatment = panel, treatment
        cohort = panel[self.coh_col].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        self.year = panel["year"].to_numpy(dtype=float)
        self.d = panel[treatment].to_numpy(dtype=float)
        implied = np.where(np.isnan(cohort), 0.0, (self.year >= cohort).astype(float))
        ok = np.isnan(self.d) | (self.d == implied)
        if not ok.all():
            i = np.flatnonzero(~ok)[0]
            raise ValueError(
                f"randomization_inference: {treatment!r} is not the 0/1 indicator year >= {self.coh_col} "
                f"(row {panel.index[i]!r}); permutation needs a binary absorbing treatment"
            )
        self.gi, geos = pd.factorize(panel["geo"].astype(str))
        self.ci, cits = pd.factorize(panel["citizen"].astype(str))
        self.n_geo, self.n_cit = len(geos), len(cits)
        # cohort per (geo, citizen) cell: NaN if never adopted or corridor absent
        M = np.full((self.n_geo, self.n_cit), np.nan)
        first = pd.Series(cohort).groupby([self.gi, self.ci]).first()
        M[first.index.get_level_values(0), first.index.get_level_values(1)] = first.to_numpy(dtype=float)
        self.M = M
        present = np.zeros((self.n_geo, self.n_cit), dtype=bool)
        present[self.gi, self.ci] = True
        self.present = present

    def draw(self, level: str, rng: np.random.Generator) -> pd.DataFrame:
        if level == "citizen":
            perm = rng.permutation(self.n_cit)
            new = self.M[self.gi, perm[self.ci]]
        elif level == "corridor":
            flat = self.M[self.present]
            M2 = np.full_like(self.M, np.nan)
            M2[self.present] = rng.permutation(flat)
            new = M2[self.gi, self.ci]
        else:
            raise ValueError(f"level={level!r}: expected 'citizen' or 'corridor'")
        out = self.panel.copy()
        newD = np.where(np.isnan(new), 0.0, (self.year >= new).astype(float))
        out[self.treatment] = np.where(np.isnan(self.d), np.nan, newD)
        coh = pd.array(np.where(np.isnan(new), 0, new).astype(np.int64), dtype="Int64")
        coh[np.isnan(new)] = pd.NA
        out[self.coh_col] = coh
        if self.ys_col in out.columns:
            out[self.ys_col] = pd.array(self.year.astype(np.int64), dtype="Int64") - coh
        return out


def permute_adoption(
    panel: pd.DataFrame, treatment: str, level: str, rng: np.random.Generator
) -> pd.DataFrame:
    """Copy of ``panel`` with the adoption years of ``treatment`` permuted at ``level``."""
    return _Permuter(panel, treatment).draw(level, rng)


def _refit_spec(
    result: EstimationResult, panel: pd.DataFrame | None, estimator: Callable[[pd.DataFrame], EstimationResult] | None
) -> tuple[pd.DataFrame, Callable[[pd.DataFrame], EstimationResult], str | None]:
    call = result.extra.get("call")
    if estimator is not None:
        if panel is None:
            panel = call["panel"] if call else None
        if panel is None:
            raise ValueError("randomization_inference: pass panel= together with estimator=")
        return panel, estimator, None
    if call is not None:
        kw = dict(call["kwargs"])
        return (call["panel"] if panel is None else panel), (lambda df: call["func"](df, **kw)), kw.get("treatment")
    if panel is None:
        raise ValueError(
            f"randomization_inference: result of {result.model!r} does not record its call; pass panel= "
            "(and estimator= for models other than twfe and ppml)"
        )
    d = result.design
    cl = d.get("cluster")
    cl = tuple(cl) if isinstance(cl, (list, tuple)) and len(cl) else (cl if isinstance(cl, str) else None)
    if result.model == "twfe":
        from returnstudy.models.twfe import twfe

        kw = {"outcome": d["outcome"], "treatments": d["treatments"], "controls": d.get("controls") or None,
              "fe": d["fixed_effects"], "cluster": cl, "weights": d.get("weights")}
        return panel, (lambda df: twfe(df, **kw)), d["treatments"][0]
    if result.model == "ppml":
        from returnstudy.models.ppml import ppml

        kw = {"outcome": d["outcome"], "treatments": d["treatments"], "controls": d.get("controls") or None,
              "fe": d["fixed_effects"], "cluster": cl, "weights": d.get("weights"),
              "exposure": d.get("exposure", "orders"), "exposure_as": d.get("exposure_as", "offset")}
        return panel, (lambda df: ppml(df, **kw)), d["treatments"][0]
    raise ValueError(f"randomization_inference: pass estimator= to re-estimate a {result.model!r} result")


def randomization_inference(
    result: EstimationResult,
    reps: int = 199,
    level: str = "citizen",
    seed: int | None = None,
    panel: pd.DataFrame | None = None,
    treatment: str | None = None,
    terms: Sequence[Any] | None = None,
    statistic: str = "estimate",
    estimator: Callable[[pd.DataFrame], EstimationResult] | None = None,
) -> EstimationResult:
    """Permutation p-values for the terms of ``result`` under the sharp null of no effect.

    Parameters
    ----------
    result : an estimation result; its call is replayed (robust estimators record it;
        ``twfe`` and ``ppml`` are rebuilt from ``result.design`` and need ``panel``).
    reps : number of permutations.
    level : ``"citizen"`` or ``"corridor"`` (see module docstring).
    seed : seed of the numpy Generator.
    panel : the panel the result was estimated on (if not recorded in the result).
    treatment : treatment column whose adoption dates are permuted (default: the result's).
    terms : terms to test (default: the permuted treatment's row if the table has one, as in a
        model with several treatments; otherwise every row, as in an event study).
    statistic : ``"estimate"`` or ``"t"`` (estimate / std_error).
    estimator : callable ``panel -> result`` to use for re-estimation.

    Returns a copy of ``result`` with ``ri_p_value`` in ``.table``, settings in
    ``info["randomization_inference"]`` and the permutation distribution in
    ``extra["ri_draws"]`` (DataFrame, one row per draw; NaN rows for failed draws).
    Draws whose re-estimation fails are left out of the denominator, counted in
    ``info["randomization_inference"]["failed_draws"]`` and reported with a warning;
    ``ValueError`` if more than ``MAX_FAILED_SHARE`` (10%) of the draws fail.
    """
    if reps < 1:
        raise ValueError("reps must be >= 1")
    if statistic not in ("estimate", "t"):
        raise ValueError(f"statistic={statistic!r}: expected 'estimate' or 't'")
    panel, refit, default_treatment = _refit_spec(result, panel, estimator)
    treatment = treatment or default_treatment or result.design.get("treatment")
    if treatment is None:
        raise ValueError("randomization_inference: pass treatment=")
    if terms is None:
        # with several treatments in one model only the permuted treatment's term is under test
        terms = [treatment] if treatment in result.table.index else list(result.table.index)
    terms = list(terms)
    missing = [t for t in terms if t not in result.table.index]
    if missing:
        raise KeyError(f"terms {missing} not in result table {list(result.table.index)}")

    def stat(res: EstimationResult) -> pd.Series:
        tab = res.table.reindex(terms)
        s = tab["estimate"] if statistic == "estimate" else tab["estimate"] / tab["std_error"]
        return s.astype(float)

    observed = stat(result)
    if level not in ("citizen", "corridor"):
        raise ValueError(f"level={level!r}: expected 'citizen' or 'corridor'")
    permuter = _Permuter(panel, treatment)
    rng = np.random.default_rng(seed)
    rows = []
    failures = 0
    first_error: str | None = None
    for i in _progress(range(reps), "randomization inference"):
        perm = permuter.draw(level, rng)
        try:
            rows.append(stat(refit(perm)))
        except (ValueError, np.linalg.LinAlgError) as exc:
            failures += 1
            if first_error is None:
                first_error = f"draw {i}: {type(exc).__name__}: {exc}"
            logger.debug("permutation draw %d failed: %s", i, exc)
            rows.append(pd.Series(np.nan, index=terms))
    if failures > MAX_FAILED_SHARE * reps:
        raise ValueError(
            f"randomization_inference: re-estimation failed in {failures} of {reps} permutation draws "
            f"(more than {MAX_FAILED_SHARE:.0%}); first error: {first_error}"
        )
    if failures:
        logger.warning(
            "randomization_inference: re-estimation failed in %d of %d permutation draws; they are left out of "
            "the p-value denominator (first error: %s)", failures, reps, first_error,
        )
    draws = pd.DataFrame(rows).reset_index(drop=True)
    valid = draws.notna()
    exceed = (draws.abs().ge(observed.abs() - 1e-12, axis=1)) & valid
    n_valid = valid.sum()
    p = (1 + exceed.sum()) / (1 + n_valid)
    table = result.table.copy()
    table["ri_p_value"] = p.reindex(table.index)
    info = dict(result.info)
    info["randomization_inference"] = {
        "reps": reps, "level": level, "seed": seed, "treatment": treatment, "statistic": statistic,
        "failed_draws": failures, "valid_draws": {str(k): int(v) for k, v in n_valid.items()},
    }
    notes = list(info.get("notes", []) or [])
    notes.append(f"randomization inference: {reps} permutations of {treatment} adoption dates across {level}s "
                 f"(seed {seed}); p = (1 + #|s*| >= |s|) / (1 + valid draws)")
    info["notes"] = notes
    return dataclasses.replace(result, table=table, info=info, extra={**result.extra, "ri_draws": draws})
