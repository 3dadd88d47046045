"""Aggregation of Callaway–Sant'Anna group-time effects (R *did*'s ``aggte``) with influence-function SEs.

Given ATT(g, t) cells, their unit-level influence values and each unit's cohort:

* ``simple``: all post-adoption cells (``t >= g``, ``t <= g + max_e``) weighted by cohort size;
* ``dynamic``: event time ``e = t - g``: cells at ``e`` weighted by cohort size; the overall
  effect is the plain mean over the reported ``e >= 0``. ``balance_e`` keeps only cohorts
  observed for at least ``balance_e`` periods after adoption (and ``e <= balance_e``);
  ``min_e``/``max_e`` restrict the reported event times; with a universal base period the
  reference event time is listed with estimate 0 and no standard error, as in R;
* ``group``: per cohort, the plain mean over its post-adoption cells (``t <= g + max_e``); the
  overall effect weights cohorts by size;
* ``calendar``: per year ``t``, post-adoption cells of that year weighted by cohort size; the
  overall effect is the plain mean over years (``min_e``/``max_e`` do not apply).

``min_e``/``max_e`` restrict the event times of ``dynamic``; ``max_e`` also caps the cells of
``simple`` and ``group`` at ``t <= g + max_e`` (R's behaviour).

Cohort-size weights are estimated shares ``p_g = N_g / N`` of all units; their estimation
enters the influence function (R's ``wif``). The variance sums the influence values within
clusters: ``V = sum_c (sum_{i in c} psi_i)^2`` (no small-sample factor, normal reference).

Poisson cells are log rate ratios; every aggregate is formed on the log scale and is also
reported as a percent change in the rate, ``100 (exp(b) - 1)``, with the delta-method
standard error ``100 exp(b) se`` and the interval ``pct +- z * se_pct``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["GroupTimeEffects", "Aggregate", "AGGREGATION_TYPES", "aggregate_effects", "simple_att",
           "event_time_effects"]

AGGREGATION_TYPES = ("simple", "dynamic", "group", "calendar")


@dataclass
class GroupTimeEffects:
    """ATT(g, t) cells with what aggregation needs.

    ``cells``: one row per (cohort, year) with ``att``, ``e``, ``n_treated``, ``n_control``;
    ``psi``: units x cells influence values (sum scaling); ``unit_cohort``: adoption period per
    unit (NaN: never treated); ``unit_cluster``: cluster code per unit; ``bad_cells``: cells
    whose variance is not identified (no residual degrees of freedom); ``variance_note``: why
    no variance at all is identified (e.g. one cluster), or None.
    """

    cells: pd.DataFrame
    psi: np.ndarray
    unit_cohort: np.ndarray
    unit_cluster: np.ndarray
    n_clusters: int
    model: str = "linear"
    alpha: float = 0.05
    bad_cells: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    variance_note: str | None = None
    reference_cells: pd.DataFrame | None = None

    def with_reference_cells(self) -> GroupTimeEffects:
        """The cells plus the universal-base reference cells (ATT = 0, zero influence), as R's event study."""
        if self.reference_cells is None or self.reference_cells.empty:
            return self
        ref = self.reference_cells
        return GroupTimeEffects(
            cells=pd.concat([self.cells, ref], ignore_index=True),
            psi=np.hstack([self.psi, np.zeros((self.psi.shape[0], len(ref)))]),
            unit_cohort=self.unit_cohort, unit_cluster=self.unit_cluster, n_clusters=self.n_clusters,
            model=self.model, alpha=self.alpha,
            bad_cells=np.concatenate([self.bad_cells, np.zeros(len(ref), dtype=bool)]) if self.bad_cells.size else
            self.bad_cells, variance_note=self.variance_note,
        )

    def cohort_share(self) -> tuple[dict[int, float], dict[int, np.ndarray]]:
        """Cohort shares ``p_g = N_g / N`` and their influence values ``(1{G_i = g} - p_g) / N``."""
        N = float(self.unit_cohort.size)
        shares, infl = {}, {}
        for g in np.unique(self.cells["cohort"].to_numpy()):
            ind = (self.unit_cohort == g).astype(float)
            shares[int(g)] = float(ind.sum()) / N
            infl[int(g)] = (ind - shares[int(g)]) / N
        return shares, infl


@dataclass
class _Agg:
    est: float
    inf: np.ndarray
    uses: np.ndarray  # cells used (bool)


def _cohort_weighted(gte: GroupTimeEffects, sel: np.ndarray) -> _Agg:
    """Cohort-size weighted mean of the selected cells, with the weight-estimation term."""
    shares, infl = gte.cohort_share()
    idx = np.flatnonzero(sel)
    coh = gte.cells["cohort"].to_numpy()[idx].astype(int)
    pg = np.array([shares[g] for g in coh])
    S = pg.sum()
    w = pg / S
    att = gte.cells["att"].to_numpy()[idx]
    est = float(w @ att)
    inf = gte.psi[:, idx] @ w
    # weight-estimation term: d w_k = (d p_k S - p_k sum_j d p_j) / S^2
    dp = np.column_stack([infl[g] for g in coh])
    inf = inf + (dp @ att) / S - (dp.sum(axis=1)) * est / S
    return _Agg(est, inf, sel.copy())


def _plain_mean(parts: list[_Agg]) -> _Agg:
    est = float(np.mean([p.est for p in parts]))
    inf = np.mean(np.column_stack([p.inf for p in parts]), axis=1)
    uses = np.logical_or.reduce([p.uses for p in parts])
    return _Agg(est, inf, uses)


def _group_weighted(gte: GroupTimeEffects, groups: list[int], parts: list[_Agg]) -> _Agg:
    """Cohort-size weighted mean of per-cohort aggregates (with the weight-estimation term)."""
    shares, infl = gte.cohort_share()
    pg = np.array([shares[g] for g in groups])
    S = pg.sum()
    w = pg / S
    att = np.array([p.est for p in parts])
    est = float(w @ att)
    inf = np.column_stack([p.inf for p in parts]) @ w
    dp = np.column_stack([infl[g] for g in groups])
    inf = inf + (dp @ att) / S - dp.sum(axis=1) * est / S
    return _Agg(est, inf, np.logical_or.reduce([p.uses for p in parts]))


def _post(gte: GroupTimeEffects, max_e: float) -> np.ndarray:
    e = gte.cells["e"].to_numpy()
    return (e >= 0) & (e <= max_e)


def simple_att(gte: GroupTimeEffects, max_e: float = np.inf) -> _Agg:
    sel = _post(gte, max_e)
    if not sel.any():
        raise ValueError("no post-adoption group-time cells")
    return _cohort_weighted(gte, sel)


def event_time_effects(
    gte: GroupTimeEffects, balance_e: int | None = None, min_e: float = -np.inf, max_e: float = np.inf
) -> tuple[list[int], list[_Agg]]:
    """Per event time ``e``: cohort-size weighted mean of the cells at ``e`` (R's dynamic aggregation)."""
    cells = gte.cells
    e = cells["e"].to_numpy().astype(int)
    include = np.ones(len(cells), dtype=bool)
    es = np.unique(e)
    if balance_e is not None:
        if int(balance_e) != balance_e or balance_e < 0:
            raise ValueError(f"balance_e={balance_e!r}: expected a non-negative integer")
        last = float(cells["year"].max())
        first = float(cells[["year", "base_year"]].min().min())
        include = (last - cells["cohort"].to_numpy()) >= balance_e
        es = np.unique(e[include])
        es = es[(es <= balance_e) & (es >= balance_e - (last - first))]
    es = es[(es >= min_e) & (es <= max_e)]
    parts = [_cohort_weighted(gte, (e == k) & include) for k in es]
    return [int(k) for k in es], parts


def _variance(gte: GroupTimeEffects, parts: list[_Agg]) -> tuple[np.ndarray, list[int]]:
    """Clustered covariance of the aggregates; rows/columns of aggregates using a bad cell are NaN."""
    infs = np.column_stack([p.inf for p in parts])
    C = np.column_stack([np.bincount(gte.unit_cluster, weights=infs[:, j], minlength=gte.n_clusters)
                         for j in range(infs.shape[1])])
    V = C.T @ C
    if gte.variance_note is not None:
        V[:] = np.nan
        return V, list(range(len(parts)))
    bad = [j for j, p in enumerate(parts) if gte.bad_cells.size and np.any(gte.bad_cells[p.uses])]
    if bad:
        V[bad, :] = np.nan
        V[:, bad] = np.nan
    return V, bad


@dataclass
class Aggregate:
    """One aggregation of group-time effects: a tidy table plus the overall effect.

    ``table`` is indexed by ``level`` (event time, cohort or year; ``"overall"`` last) with
    ``estimate``, ``std_error``, ``ci_low``, ``ci_high``, ``p_value`` (normal reference),
    ``n_cells`` and, for Poisson models, ``pct_effect``, ``pct_std_error``, ``pct_ci_low``,
    ``pct_ci_high`` (percent change in the rate, delta method).
    """

    type: str
    table: pd.DataFrame
    vcov: pd.DataFrame
    info: dict[str, Any]

    @property
    def overall(self) -> pd.Series:
        return self.table.loc["overall"]

    def summary(self, digits: int = 4) -> str:
        head = [f"Callaway & Sant'Anna aggregation: {self.type}"]
        for k in ("model", "outcome", "control_group", "base_period", "est_method", "covariates", "anticipation",
                  "unbalanced_panel", "balance_e", "min_e", "max_e", "cluster", "n_clusters", "n_units"):
            if self.info.get(k) is not None:
                head.append(f"  {k}: {self.info[k]}")
        for note in self.info.get("notes", []):
            head.append(f"  note: {note}")
        return "\n".join(head) + "\n" + self.table.to_string(float_format=lambda v: f"{v:.{digits}f}")

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        lines = "".join(f"<br>{line.strip()}" for line in self.summary().split("\n")[1:] if line.startswith("  "))
        return (f"<p><b>Callaway &amp; Sant'Anna aggregation: {self.type}</b>{lines}</p>"
                + self.table.to_html(float_format=lambda v: f"{v:.4f}"))


def aggregate_effects(
    gte: GroupTimeEffects,
    type: str = "simple",
    balance_e: int | None = None,
    min_e: float = -np.inf,
    max_e: float = np.inf,
    info: dict[str, Any] | None = None,
) -> Aggregate:
    """Aggregate ATT(g, t) as R *did*'s ``aggte(type=...)`` (see the module docstring)."""
    if type not in AGGREGATION_TYPES:
        raise ValueError(f"type={type!r}: expected one of {list(AGGREGATION_TYPES)}")
    if balance_e is not None and type != "dynamic":
        raise ValueError("balance_e applies to type='dynamic' only")
    if type == "calendar" and ((min_e is not None and np.isfinite(min_e)) or (max_e is not None and np.isfinite(max_e))):
        raise ValueError("min_e/max_e do not apply to type='calendar' (every post-adoption cell of a year enters, as in R did)")
    min_e = -np.inf if min_e is None else min_e
    max_e = np.inf if max_e is None else max_e
    cells = gte.cells
    levels: list[Any]
    if type == "simple":
        parts = [simple_att(gte, max_e)]
        levels = ["overall"]
    elif type == "dynamic":
        n_real = len(gte.cells)
        gte = gte.with_reference_cells()
        levels, parts = event_time_effects(gte, balance_e, min_e, max_e)
        reference_only = [j for j, p in enumerate(parts) if not p.uses[:n_real].any()]
        post = [p for k, p in zip(levels, parts) if k >= 0]
        if not post:
            raise ValueError("no post-adoption event times to average")
        parts.append(_plain_mean(post))
        levels.append("overall")
    elif type == "group":
        post = _post(gte, max_e)
        coh = cells["cohort"].to_numpy()
        groups = [int(g) for g in np.unique(coh[post])]
        if not groups:
            raise ValueError("no post-adoption group-time cells")
        parts = []
        for g in groups:
            sel = post & (coh == g)
            idx = np.flatnonzero(sel)
            parts.append(_Agg(float(cells["att"].to_numpy()[idx].mean()), gte.psi[:, idx].mean(axis=1), sel))
        parts.append(_group_weighted(gte, groups, list(parts)))
        levels = [*groups, "overall"]
    else:
        post = _post(gte, np.inf)
        yr = cells["year"].to_numpy()
        years = [int(t) for t in np.unique(yr[post])]
        if not years:
            raise ValueError("no post-adoption group-time cells")
        parts = [_cohort_weighted(gte, post & (yr == t)) for t in years]
        parts.append(_plain_mean(list(parts)))
        levels = [*years, "overall"]
    V, bad = _variance(gte, parts)
    est = np.array([p.est for p in parts])
    if type == "dynamic" and reference_only:  # the reference period is zero by construction: no variance
        V[reference_only, :] = np.nan
        V[:, reference_only] = np.nan
    se = np.sqrt(np.diag(V))
    z = stats.norm.ppf(1 - gte.alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_value = 2 * stats.norm.sf(np.abs(est / se))
    index = pd.Index(levels, name="level", dtype=object)
    table = pd.DataFrame({"estimate": est, "std_error": se, "ci_low": est - z * se, "ci_high": est + z * se,
                          "p_value": p_value, "n_cells": [int(p.uses.sum()) for p in parts]}, index=index)
    if gte.model == "poisson":
        pct = 100.0 * np.expm1(est)
        pct_se = 100.0 * np.exp(est) * se
        table["pct_effect"] = pct
        table["pct_std_error"] = pct_se
        table["pct_ci_low"] = pct - z * pct_se
        table["pct_ci_high"] = pct + z * pct_se
    out_info = dict(info or {})
    out_info.update({"balance_e": balance_e, "min_e": None if np.isinf(min_e) else min_e,
                     "max_e": None if np.isinf(max_e) else max_e})
    notes = list(out_info.get("notes", []))
    if gte.variance_note is not None:
        notes.append(gte.variance_note)
    elif bad:
        notes.append(f"variance not identified for {[levels[j] for j in bad]}: a group-time cell they use has no "
                     "residual degrees of freedom (one treated and one control unit)")
    out_info["notes"] = notes
    return Aggregate(type=type, table=table, vcov=pd.DataFrame(V, index=index, columns=index), info=out_info)
