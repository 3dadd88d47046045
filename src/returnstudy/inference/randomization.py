"""Randomization inference by permuting adoption dates.

Under the sharp null of no effect in any unit-period, the assignment of adoption dates is
exchangeable. Each draw permutes adoption dates at ``level`` and re-estimates. Units are
``unit`` (default ``corridor``), periods ``time`` (default ``year``), the adoption date of a
unit is its ``cohort`` (default ``{treatment}_cohort``; first treated period, 0 or missing for
never treated). ``level`` names the column whose values exchange their adoption dates:

* ``level`` = the unit (``"corridor"``, or e.g. ``"countyreal"`` in a county panel): adoption
  dates are permuted across all units, keeping the number of treated units and the timing
  distribution (bilateral-style treatments).
* ``level`` above the unit with a ``within`` column that, together with ``level``, identifies
  a unit (``level="citizen"``, ``within="geo"`` in the corridor panel, the default there):
  levels exchange their adoption patterns, unit ``(w, l)`` receives the adoption date of
  ``(w, pi(l))`` (never treated if that unit has none or does not exist). This keeps the
  number of treated levels, the distribution of adoption dates and, for EU-style treatments,
  the set of participating reporting countries per citizenship: the natural level for
  treatments decided per citizenship (EU agreements).
* ``level`` above the unit without ``within``, with one adoption date per level value (a
  policy adopted by states, observed in counties): adoption dates are permuted across levels
  and every unit takes its level's new date.

The treatment column (``T = 1`` from the adoption period on), the cohort column (in its own
coding of never treated: missing or 0) and ``{T}_years_since`` (if present) are rebuilt from
the permuted dates; missing treatment values stay missing, so the estimation sample does not
change. The p-value is ``(1 + #{|s*| >= |s|}) / (1 + R)`` for each term, with ``s`` the
estimate (``statistic="estimate"``) or its t statistic (``statistic="t"``) and ``R`` the number
of draws whose re-estimation succeeded. Failed draws (``ValueError`` or ``LinAlgError`` from
the estimator, e.g. no treated rows left) are logged with a warning and counted in ``info``;
more than 10% failed draws raise ``ValueError``.

``twfe`` and ``ppml`` results are re-fitted on their fixed design
(:class:`~returnstudy.inference._refit.FixedDesignRefit`: rows, fixed effects, other
regressors and, for PPML, the IRLS start from the observed fit are reused; only the
treatment column changes). Other estimators replay their recorded call on one working copy
of the panel whose permuted columns are overwritten in place each draw.
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


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Codes 0..G-1 in order of first appearance (labels compared as strings)."""
    codes, uniques = pd.factorize(values.astype(str))
    return codes.astype(np.intp), len(uniques)


class _Permuter:
    """Adoption structure of ``treatment`` at ``level`` of a panel, for fast repeated permutations.

    :meth:`new_cohort` draws the permuted adoption date of every row (NaN: never treated),
    :meth:`treatment_values` turns it into the 0/1 treatment, :meth:`apply` writes the
    treatment, cohort and years-since columns into a frame, :meth:`draw` returns a permuted copy.
    """

    def __init__(self, panel: pd.DataFrame, treatment: str, level: str = "citizen", *, unit: str = "corridor",
                 time: str = "year", cohort: str | None = None, within: str | None = None):
        self.panel, self.treatment, self.level, self.time = panel, treatment, level, time
        self.coh_col = cohort or f"{treatment}_cohort"
        self.ys_col = f"{treatment}_years_since"
        cols = list(panel.columns)
        corridor_parts = unit == "corridor" and {"geo", "citizen"} <= set(cols)
        if within is None and corridor_parts and level in ("citizen", "geo"):
            within = "geo" if level == "citizen" else "citizen"
        for arg, col in (("treatment", treatment), ("cohort", self.coh_col), ("time", time), ("level", level),
                         ("within", within)):
            if col is None or col in cols or (col == "corridor" and corridor_parts):
                continue
            raise KeyError(f"randomization_inference: {arg}={col!r} is not a column of the panel; "
                           f"the panel's columns are: {cols}")
        if unit not in cols and not corridor_parts:
            raise KeyError(f"randomization_inference: unit={unit!r} is not a column of the panel; "
                           f"the panel's columns are: {cols}")
        raw = panel[self.coh_col]
        cohort_values = pd.to_numeric(raw).astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        self.zero_coded = bool(raw.notna().all() and (cohort_values == 0).any())
        cohort_values = np.where((cohort_values == 0) | np.isinf(cohort_values), np.nan, cohort_values)
        self.coh_dtype = raw.dtype
        self.year = pd.to_numeric(panel[time]).to_numpy(dtype=float)
        self.d = pd.to_numeric(panel[treatment]).astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        implied = np.where(np.isnan(cohort_values), 0.0, (self.year >= cohort_values).astype(float))
        ok = np.isnan(self.d) | (self.d == implied)
        if not ok.all():
            i = np.flatnonzero(~ok)[0]
            raise ValueError(
                f"randomization_inference: {treatment!r} is not the 0/1 indicator {time} >= {self.coh_col} "
                f"(row {panel.index[i]!r}); permutation needs a binary absorbing treatment"
            )
        # units: the corridor is (geo, citizen), ordered by their codes; any other unit in order of appearance
        if corridor_parts:
            gi, n_g = _codes(panel["geo"])
            ci, n_c = _codes(panel["citizen"])
            key = gi.astype(np.int64) * n_c + ci
            _, ui = np.unique(key, return_inverse=True)
        else:
            ui, _ = _codes(panel[unit])
        ui = ui.astype(np.intp)
        self.n_units = int(ui.max()) + 1 if ui.size else 0
        per_unit = pd.Series(cohort_values).groupby(ui)
        lo, hi = per_unit.min().to_numpy(), per_unit.max().to_numpy()
        bad = np.flatnonzero(~((lo == hi) | np.isnan(lo)))  # missing dates in some rows of a unit are allowed
        if bad.size:
            row = np.flatnonzero(ui == bad[0])[0]
            raise ValueError(f"randomization_inference: {self.coh_col!r} differs within unit {unit}="
                             f"{panel[unit].iloc[row] if unit in cols else panel.index[row]!r}; "
                             "one adoption date per unit is needed")
        self.unit_cohort = lo  # NaN: never treated
        self.ui = ui
        if level == unit or (level == "corridor" and corridor_parts):
            self.mode = "units"
        elif within is not None:
            self.mode = "pattern"
            self.wi, n_w = _codes(panel[within])
            self.li, n_l = _codes(panel[level])
            cell = self.wi.astype(np.int64) * n_l + self.li
            first = pd.Series(ui).groupby(cell).nunique()
            if (first > 1).any():
                raise ValueError(f"randomization_inference: ({within}, {level}) does not identify a unit ({unit}); "
                                 "pass within= naming the column that does")
            M = np.full((n_w, n_l), np.nan)
            M[self.wi, self.li] = cohort_values
            self.M, self.n_level = M, n_l
        else:
            self.mode = "levels"
            self.li, self.n_level = _codes(panel[level])
            per_level = pd.Series(cohort_values).groupby(self.li)
            lo_l, hi_l = per_level.min().to_numpy(), per_level.max().to_numpy()
            cnt, size = per_level.count().to_numpy(), per_level.size().to_numpy()
            uneven = ~((lo_l == hi_l) | np.isnan(lo_l)) | ((cnt != size) & (cnt > 0))
            if uneven.any():
                raise ValueError(
                    f"randomization_inference: adoption dates differ within level {level}="
                    f"{panel[level].iloc[np.flatnonzero(self.li == np.flatnonzero(uneven)[0])[0]]!r}; permute at the "
                    f"unit (level={unit!r}) or pass within= (a column that with {level!r} identifies a {unit})"
                )
            self.level_cohort = lo_l
            unit_level = pd.Series(self.li).groupby(ui).nunique()
            if (unit_level > 1).any():
                raise ValueError(f"randomization_inference: a {unit} lies in several values of {level!r}")

    def new_cohort(self, rng: np.random.Generator) -> np.ndarray:
        """Permuted adoption date of every row (NaN: never treated)."""
        if self.mode == "units":
            return rng.permutation(self.unit_cohort)[self.ui]
        if self.mode == "pattern":
            perm = rng.permutation(self.n_level)
            return self.M[self.wi, perm[self.li]]
        return rng.permutation(self.level_cohort)[self.li]

    def treatment_values(self, new: np.ndarray) -> np.ndarray:
        """0/1 treatment from permuted adoption dates (missing where the observed treatment is)."""
        newD = np.where(np.isnan(new), 0.0, (self.year >= new).astype(float))
        return np.where(np.isnan(self.d), np.nan, newD)

    def apply(self, out: pd.DataFrame, new: np.ndarray) -> None:
        """Write the treatment, cohort and years-since columns for adoption dates ``new`` into ``out``."""
        out[self.treatment] = self.treatment_values(new)
        never = np.isnan(new)
        if self.zero_coded:
            out[self.coh_col] = pd.array(np.where(never, 0, new)).astype(self.coh_dtype)
            coh = None
        elif pd.api.types.is_float_dtype(self.coh_dtype) and not isinstance(self.coh_dtype, pd.api.extensions.ExtensionDtype):
            out[self.coh_col] = new
            coh = None
        else:
            coh = pd.array(np.where(never, 0, new).astype(np.int64), dtype="Int64")
            coh[never] = pd.NA
            out[self.coh_col] = coh
        if self.ys_col in out.columns:
            if coh is None:
                coh = pd.array(np.where(never, 0, new).astype(np.int64), dtype="Int64")
                coh[never] = pd.NA
            out[self.ys_col] = pd.array(self.year.astype(np.int64), dtype="Int64") - coh

    def draw(self, rng: np.random.Generator) -> pd.DataFrame:
        """Copy of the panel with permuted adoption dates."""
        out = self.panel.copy()
        self.apply(out, self.new_cohort(rng))
        return out


def permute_adoption(
    panel: pd.DataFrame, treatment: str, level: str, rng: np.random.Generator, *, unit: str = "corridor",
    time: str = "year", cohort: str | None = None, within: str | None = None,
) -> pd.DataFrame:
    """Copy of ``panel`` with the adoption dates of ``treatment`` permuted at ``level`` (see module doc)."""
    return _Permuter(panel, treatment, level, unit=unit, time=time, cohort=cohort, within=within).draw(rng)


_Refit = Callable[[pd.DataFrame], EstimationResult]


def _refit_spec(
    result: EstimationResult, panel: pd.DataFrame | None, estimator: _Refit | None
) -> tuple[pd.DataFrame, _Refit, str | None, tuple[str, dict[str, Any]] | None, dict[str, Any]]:
    """The panel, a re-estimation callable, the default treatment, ``(model, kwargs)`` of a
    ``twfe``/``ppml`` call that can be re-fitted on its fixed design (else None) and the
    recorded call's keyword arguments."""
    call = result.extra.get("call")
    if estimator is not None:
        if panel is None:
            panel = call["panel"] if call else None
        if panel is None:
            raise ValueError("randomization_inference: pass panel= together with estimator=")
        return panel, estimator, None, None, dict(call["kwargs"]) if call else {}
    if call is not None:
        kw = dict(call["kwargs"])
        return ((call["panel"] if panel is None else panel), (lambda df: call["func"](df, **kw)), kw.get("treatment"),
                None, kw)
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
        return panel, (lambda df: twfe(df, **kw)), d["treatments"][0], ("twfe", kw), {}
    if result.model == "ppml":
        from returnstudy.models.ppml import ppml

        kw = {"outcome": d["outcome"], "treatments": d["treatments"], "controls": d.get("controls") or None,
              "fe": d["fixed_effects"], "cluster": cl, "weights": d.get("weights"),
              "exposure": d.get("exposure", "orders"), "exposure_as": d.get("exposure_as", "offset")}
        return panel, (lambda df: ppml(df, **kw)), d["treatments"][0], ("ppml", kw), {}
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
    estimator: _Refit | None = None,
    *,
    unit: str | None = None,
    time: str | None = None,
    cohort: str | None = None,
    within: str | None = None,
) -> EstimationResult:
    """Permutation p-values for the terms of ``result`` under the sharp null of no effect.

    Parameters
    ----------
    result : an estimation result; its call is replayed (robust estimators record it;
        ``twfe`` and ``ppml`` are rebuilt from ``result.design`` and need ``panel``).
    reps : number of permutations.
    level : column at which adoption dates are exchanged: the unit (``"corridor"``, or e.g.
        ``"countyreal"``) or a coarser column (``"citizen"``); see the module docstring.
    seed : seed of the numpy Generator (the draws depend on the seed and the panel only).
    panel : the panel the result was estimated on (if not recorded in the result).
    treatment : treatment column whose adoption dates are permuted (default: the result's).
    terms : terms to test (default: the permuted treatment's row if the table has one, as in a
        model with several treatments; otherwise every row, as in an event study).
    statistic : ``"estimate"`` or ``"t"`` (estimate / std_error).
    estimator : callable ``panel -> result`` to use for re-estimation.
    unit, time, cohort : the unit and period columns and the adoption-date column (first
        treated period; 0 or missing for never treated). Defaults: the recorded call's
        ``unit``/``time``/``cohort`` if any, else ``"corridor"``, ``"year"``, ``"{treatment}_cohort"``.
    within : with ``level`` above the unit, the column that together with ``level``
        identifies a unit (default ``"geo"`` for ``level="citizen"`` in the corridor panel).

    Returns a copy of ``result`` with ``ri_p_value`` in ``.table``, settings in
    ``info["randomization_inference"]`` and the permutation distribution in
    ``extra["ri_draws"]`` (DataFrame, one row per draw; NaN rows for failed draws).
    Draws whose re-estimation fails are left out of the denominator, counted in
    ``info["randomization_inference"]["failed_draws"]`` and reported with a warning;
    ``ValueError`` if more than ``MAX_FAILED_SHARE`` (10%) of the draws fail.
    """
    from returnstudy.inference._refit import FixedDesignRefit

    if reps < 1:
        raise ValueError("reps must be >= 1")
    if statistic not in ("estimate", "t"):
        raise ValueError(f"statistic={statistic!r}: expected 'estimate' or 't'")
    panel, refit, default_treatment, fixed_spec, call_kw = _refit_spec(result, panel, estimator)
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

    def stat(tab: pd.DataFrame) -> pd.Series:
        tab = tab.reindex(terms)
        s = tab["estimate"] if statistic == "estimate" else tab["estimate"] / tab["std_error"]
        return s.astype(float)

    observed = stat(result.table)
    unit = unit or call_kw.get("unit") or "corridor"
    time = time or call_kw.get("time") or "year"
    cohort = cohort or call_kw.get("cohort")
    permuter = _Permuter(panel, treatment, level, unit=unit, time=time, cohort=cohort, within=within)
    fixed = FixedDesignRefit.build(fixed_spec[0], panel, fixed_spec[1], treatment) if fixed_spec is not None else None
    if fixed is not None and not set(terms) <= set(fixed.names):
        fixed = None
    rng = np.random.default_rng(seed)
    rows = []
    failures = refits = 0
    first_error: str | None = None
    work: pd.DataFrame | None = None  # one working copy for re-estimation from the panel
    for i in _progress(range(reps), "randomization inference"):
        new = permuter.new_cohort(rng)
        try:
            got = None
            if fixed is not None:
                f = fixed.fit(permuter.treatment_values(new), se=statistic == "t")
                if f is not None:
                    tab = pd.DataFrame({"estimate": f.beta, "std_error": f.std_error if f.std_error is not None
                                        else np.nan}, index=f.names)
                    got = stat(tab)
            if got is None:
                if work is None:
                    work = panel.copy()
                permuter.apply(work, new)
                refits += 1
                got = stat(refit(work).table)
            rows.append(got)
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
        "unit": unit, "time": time, "cohort": permuter.coh_col, "permutation": permuter.mode,
        "failed_draws": failures, "valid_draws": {str(k): int(v) for k, v in n_valid.items()},
        "refit": "fixed design" if fixed is not None else "re-estimation from the panel",
        "draws_re_estimated_from_panel": refits,
    }
    notes = list(info.get("notes", []) or [])
    notes.append(f"randomization inference: {reps} permutations of {treatment} adoption dates across {level}s "
                 f"(seed {seed}); p = (1 + #|s*| >= |s|) / (1 + valid draws)")
    info["notes"] = notes
    return dataclasses.replace(result, table=table, info=info, extra={**result.extra, "ri_draws": draws})
