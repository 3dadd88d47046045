"""Callaway & Sant'Anna (2021, *J. Econometrics*) group-time average treatment effects.

For every adoption cohort ``g`` and year ``t`` the unconditional (no covariates)
2x2 DiD

    ATT(g, t) = mean_{i in g}(Y_it - Y_ib) - mean_{j in C}(Y_jt - Y_jb)

compares the change of cohort ``g`` between the base year ``b`` and ``t`` with the
change of a control group ``C``:

* ``control="never"``: corridors never treated;
* ``control="notyet"``: never-treated corridors and corridors adopting after
  ``max(t, b)`` (not yet treated in either year).

Base period: post-adoption cells (``t >= g``) always use ``b = g - 1``. Pre-adoption
cells use ``b = t - 1`` with ``base_period="varying"`` (the default of the R
package *did*; pre-period estimates are then year-on-year placebo changes) or
``b = g - 1`` with ``base_period="universal"`` (an event-study-style pre-trend).
Only corridors with the outcome observed in both ``b`` and ``t`` enter a cell.

Aggregation (cohort-size weights, the *did* package's ``aggte``):

* event time ``e``: ``sum_g w_g ATT(g, g + e)``, ``w_g`` proportional to the number of
  corridors in cohort ``g`` among cohorts observed at ``g + e``;
* overall (``event_time=False``): the "simple" ATT, all post cells ``t >= g`` weighted by
  cohort size.

Standard errors come from the influence functions of the 2x2 means, including the
estimation of the cohort-size weights, summed within clusters (default:
citizenship) — analytical, normal reference distribution, no small-sample factor.
They are NaN (with a note) when there is a single cluster or when an aggregate uses a
cell with no residual degrees of freedom (one treated and one control corridor, as in a
2x2), where the influence functions are identically zero.

``model="poisson"`` (returns with ``orders`` as exposure): each cell is the Poisson
imputation 2x2 on the log scale — the untreated model ``Y ~ Poisson(E exp(a_i + b_s))``
is fitted on the control corridors in both years and the treated corridors in the
base year, and ``ATT(g, t) = log(sum_g Y_it / sum_g mu0_it)`` (``pct_effect`` =
100 (exp - 1)). Treated corridors with zero base-year returns stay in (their imputed
count is zero), which keeps the ratio of sums unbiased; cells whose sums are zero are
skipped. Aggregation is on the log scale with the same cohort-size weights. With few
treated corridors per cohort and one of them dominating the counts, the influence-function
standard errors run small (about 0.7 of the sampling SD in the test suite's design) and
the log of a ratio of small sums has a small upward bias: prefer ``did_imputation``
(``model="poisson"``), which uses every untreated year, for inference on counts.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from returnstudy.inference.cluster import variance_not_identified
from returnstudy.models.imputation import did_sample
from returnstudy.results import EstimationResult, make_table

logger = logging.getLogger(__name__)

__all__ = ["callaway_santanna"]


def _poisson_cell(
    yt: np.ndarray, yb: np.ndarray, et: np.ndarray, eb: np.ndarray, T_m: np.ndarray, C_m: np.ndarray,
    tol: float = 1e-12,
) -> tuple[float, np.ndarray] | None:
    """Poisson 2x2 on the log scale with its unit-level influence function (sum scaling).

    Untreated model ``Y_is ~ Poisson(E_is exp(a_i + b_s))`` fitted on control units in both
    years and treated units in the base year; ``r = exp(b_t - b_b)`` solves the profile
    score ``sum_C [Y_jt - (Y_jb + Y_jt) pi_j(r)] = 0`` with ``pi_j = E_jt r / (E_jb + E_jt r)``.
    ``ATT = log(sum_T Y_it) - log(sum_T Y_ib E_it / E_ib) - log r``; influence values are
    the residuals of both ratios (controls with an HC2-type leverage correction). Returns None if a
    sum is zero (the log ratio is undefined).
    """
    q = np.where(T_m, et / np.where(eb > 0, eb, 1.0), 0.0)
    A = float(np.sum(yt[T_m]))
    B = float(np.sum((q * yb)[T_m]))
    n = np.where(C_m, yb + yt, 0.0)
    yct = np.where(C_m, yt, 0.0)
    if A <= 0 or B <= 0 or yct.sum() <= 0 or (n - yct).sum() <= 0:
        return None
    e_t = np.where(C_m, et, 0.0)
    e_b = np.where(C_m, eb, 1.0)
    lr = float(np.log(yct.sum() / (n - yct).sum()))  # start: pooled ratio ignoring exposure changes
    for _ in range(100):
        r = np.exp(lr)
        pi = e_t * r / (e_b + e_t * r)
        U = float(np.sum(yct - n * pi))
        H = float(np.sum(n * pi * (1 - pi)))
        step = U / H
        lr += step
        if abs(step) < tol:
            break
    r = np.exp(lr)
    pi = e_t * r / (e_b + e_t * r)
    H = float(np.sum(n * pi * (1 - pi)))
    # control residuals scaled by 1/sqrt(1 - leverage) (HC2-type). Treated residuals are left
    # unscaled: in cohorts with one or two treated corridors the leverage is near one and the
    # correction explodes; the variance is then somewhat too small when a single corridor
    # dominates its cohort (documented in the module docstring).
    R = A / B
    h_c = np.clip((n * pi * (1 - pi))[C_m] / H, 0.0, 0.99)
    psi = np.zeros(yt.size)
    psi[T_m] = (yt[T_m] - R * (q * yb)[T_m]) / A
    psi[C_m] = -(yct - n * pi)[C_m] / H / np.sqrt(1.0 - h_c)
    return float(np.log(A) - np.log(B) - lr), psi


def callaway_santanna(
    panel: pd.DataFrame,
    treatment: str = "bilateral_binding",
    outcome: str | None = None,
    control: str = "never",
    event_time: bool = False,
    base_period: str = "varying",
    cluster: str | None = "citizen",
    unit: str = "corridor",
    min_e: int | None = None,
    max_e: int | None = None,
    model: str = "linear",
    exposure: str = "orders",
    alpha: float = 0.05,
) -> EstimationResult:
    """Group-time ATTs aggregated to event time or to one overall ATT.

    Parameters
    ----------
    panel : corridor-year panel with the treatment contract columns.
    treatment : binary absorbing treatment (adoption year from ``{treatment}_cohort``).
    outcome : outcome column (default ``return_rate`` for linear, ``returns`` for Poisson).
    control : ``"never"`` or ``"notyet"`` (see module docstring).
    event_time : True: ``.table`` indexed by event time ``e = t - g`` (int);
        False: one row ``term == treatment`` with the simple overall ATT.
    base_period : ``"varying"`` or ``"universal"`` for pre-adoption cells.
    cluster : variable whose clusters the influence functions are summed over
        (None: corridor, i.e. the unit of the panel).
    min_e, max_e : restrict the reported event times.
    model : ``"linear"`` (differences of means) or ``"poisson"`` (log ratios with
        ``exposure``, see the module docstring).

    The group-time table is in ``.extra["group_time"]``.
    """
    if control not in ("never", "notyet"):
        raise ValueError(f"control={control!r}: expected 'never' or 'notyet'")
    if base_period not in ("varying", "universal"):
        raise ValueError(f"base_period={base_period!r}: expected 'varying' or 'universal'")
    if model not in ("linear", "poisson"):
        raise ValueError(f"model={model!r}: expected 'linear' or 'poisson'")
    if outcome is None:
        outcome = "return_rate" if model == "linear" else "returns"
    s = did_sample(panel, treatment, outcome, model, exposure, fe=(unit, "year"), cluster=cluster, unit=unit)
    first_year = np.nanmin(s.year)
    always = ~np.isnan(s.cohort) & (s.cohort <= first_year)
    if always.any():
        s = s.subset(~always, "corridors treated in every sample year (no pre-period)")
    # wide matrices: units x years
    u_codes, u_index = pd.factorize(s.unit)
    years = np.unique(s.year).astype(int)
    y_pos = np.searchsorted(years, s.year.astype(int))
    nU, nT = len(u_index), len(years)
    Y = np.full((nU, nT), np.nan)
    Y[u_codes, y_pos] = s.y
    E = np.full((nU, nT), np.nan)
    if model == "poisson":
        E[u_codes, y_pos] = s.exposure
    coh_u = np.full(nU, np.nan)
    coh_u[u_codes] = s.cohort
    if s.cluster is not None:
        cl_u = np.zeros(nU, dtype=np.int64)
        cl_u[u_codes] = pd.factorize(s.cluster)[0]
        if pd.Series(pd.factorize(s.cluster)[0]).groupby(u_codes).nunique().max() > 1:
            raise ValueError(f"cluster {cluster!r} varies within corridors; cluster at or above the corridor level")
    else:
        cl_u = np.arange(nU)
    G_cl = int(cl_u.max()) + 1
    never = np.isnan(coh_u)
    if control == "never" and not never.any():
        raise ValueError(f"control='never' but no corridor is never treated by {treatment!r}; use control='notyet'")
    cohorts = np.unique(coh_u[~never]).astype(int)
    cohorts = cohorts[cohorts <= years[-1]]
    N = float(nU)
    cells: list[dict[str, Any]] = []
    psis: list[np.ndarray] = []
    year_idx = {int(t): j for j, t in enumerate(years)}
    for g in cohorts:
        if g - 1 not in year_idx:
            logger.info("cohort %d has no year before adoption in the sample; skipped", g)
            continue
        treated_u = coh_u == g
        for t in years:
            t = int(t)
            b = g - 1 if (t >= g or base_period == "universal") else t - 1
            if t == b or b not in year_idx:
                continue
            jt, jb = year_idx[t], year_idx[b]
            if control == "never":
                ctrl_u = never.copy()
            else:
                ctrl_u = never | (coh_u > max(t, b))
                ctrl_u &= ~treated_u
            obs = ~np.isnan(Y[:, jt]) & ~np.isnan(Y[:, jb])
            T_m, C_m = treated_u & obs, ctrl_u & obs
            nT_, nC_ = int(T_m.sum()), int(C_m.sum())
            if nT_ == 0 or nC_ == 0:
                continue
            psi = np.zeros(nU)
            if model == "linear":
                dY = Y[:, jt] - Y[:, jb]
                mT, mC = dY[T_m].mean(), dY[C_m].mean()
                psi[T_m] = (dY[T_m] - mT) / nT_
                psi[C_m] = -(dY[C_m] - mC) / nC_
                att = mT - mC
            else:
                cell = _poisson_cell(Y[:, jt], Y[:, jb], E[:, jt], E[:, jb], T_m, C_m)
                if cell is None:
                    continue
                att, psi = cell
            cells.append({"cohort": g, "year": t, "base_year": b, "e": t - g, "att": att,
                          "n_treated": nT_, "n_control": nC_})
            psis.append(psi)
    if not cells:
        raise ValueError("no estimable group-time cells (check cohorts, years and control group)")
    gt = pd.DataFrame(cells)
    Psi = np.column_stack(psis)  # units x cells
    # cohort sizes (units) and their influence functions (sum scaling)
    p_g = {g: float(np.sum(coh_u == g)) / N for g in cohorts}
    ind_g = {g: ((coh_u == g).astype(float) - p_g[g]) / N for g in cohorts}

    def aggregate(sel: np.ndarray) -> tuple[float, np.ndarray]:
        idx = np.flatnonzero(sel)
        pg = np.array([p_g[int(gt["cohort"].iat[i])] for i in idx])
        S = pg.sum()
        w = pg / S
        att = gt["att"].to_numpy()[idx]
        est = float(w @ att)
        inf = Psi[:, idx] @ w
        # weight-estimation term: d w_i = (d p_i S - p_i sum_j d p_j) / S^2
        dp = np.column_stack([ind_g[int(gt["cohort"].iat[i])] for i in idx])
        inf = inf + (dp @ att) / S - (dp.sum(axis=1)) * est / S
        return est, inf

    e = gt["e"].to_numpy()
    if event_time:
        es = np.unique(e)
        if min_e is not None:
            es = es[es >= min_e]
        if max_e is not None:
            es = es[es <= max_e]
        names: list[Any] = [int(k) for k in es]
        sels = [e == k for k in es]
    else:
        names = [treatment]
        sels = [e >= 0]
        if not sels[0].any():
            raise ValueError("no post-adoption group-time cells")
    est = np.zeros(len(names))
    infs = np.zeros((nU, len(names)))
    for j, sel in enumerate(sels):
        est[j], infs[:, j] = aggregate(sel)
    C = np.column_stack([np.bincount(cl_u, weights=infs[:, j], minlength=G_cl) for j in range(len(names))])
    V = C.T @ C
    # a cell's 2x2 (Y_t - Y_b on a treated indicator; Poisson: unit effects, a year effect
    # and the ATT) leaves n_treated + n_control - 2 residual degrees of freedom; with none
    # left, or a single cluster, the influence functions vanish and the variance is not identified
    cell_df = (gt["n_treated"] + gt["n_control"] - 2).to_numpy()
    var_notes: list[str] = []
    cl_note = variance_not_identified(G_cl, 0, [G_cl])
    if cl_note is not None:
        V[:] = np.nan
        var_notes.append(cl_note)
    else:
        bad = [j for j, sel in enumerate(sels) if np.any(cell_df[sel] <= 0)]
        if bad:
            V[bad, :] = np.nan
            V[:, bad] = np.nan
            cells_bad = gt.loc[cell_df <= 0, ["cohort", "year"]].astype(int).to_numpy().tolist()
            var_notes.append(
                "variance not identified: no residual degrees of freedom in group-time cell(s) (cohort, year) "
                f"{cells_bad} (one treated and one control corridor); standard errors, intervals and p-values "
                f"of {[names[j] for j in bad]} are NaN"
            )
    se = np.sqrt(np.diag(V))
    table = make_table(est, se, index=names, df=None, alpha=alpha, poisson=model == "poisson",
                       index_name="rel_period" if event_time else "term")
    table["n_cells"] = [int(sel.sum()) for sel in sels]
    Ccell = np.column_stack([np.bincount(cl_u, weights=Psi[:, j], minlength=G_cl) for j in range(Psi.shape[1])])
    gt["std_error"] = np.where((cell_df > 0) & (cl_note is None), np.sqrt(np.sum(Ccell**2, axis=0)), np.nan)
    info = s.info()
    info.update(
        {
            "estimator": "Callaway & Sant'Anna group-time ATT (unconditional 2x2 DiD)",
            "model": model,
            "outcome": outcome,
            "treatment": treatment,
            "control_group": ("never-treated corridors" if control == "never"
                              else "never-treated and not-yet-treated corridors (adoption after max(t, base year))"),
            "reference_period": (f"{base_period} base period: year g-1 for post-adoption cells, "
                                 + ("year t-1" if base_period == "varying" else "year g-1") + " for pre-adoption cells"),
            "aggregation": "event time, cohort-size weights" if event_time else "simple ATT over post cells, cohort-size weights",
            "vcov_type": "cluster" if s.cluster is not None else "corridor",
            "vcov_description": "influence functions (incl. estimated cohort weights) summed within clusters",
            "small_sample": "none",
            "n_clusters": G_cl,
            "cluster": cluster if s.cluster is not None else unit,
            "n_group_time_cells": int(len(gt)),
        }
    )
    if s.attrs.get("synthetic"):
        info.setdefault("notes", []).append("SYNTHETIC data (simulate_panel)")
    if var_notes:
        info.setdefault("notes", []).extend(var_notes)
    if model == "poisson":
        info["exposure"] = f"{exposure} (rates per order)"
    return EstimationResult(
        model=f"callaway_santanna ({model})",
        params=pd.Series(est, index=names),
        vcov=pd.DataFrame(V, index=names, columns=names),
        table=table,
        info=info,
        design={"outcome": outcome, "treatment": treatment, "fixed_effects": [unit, "year"], "cluster": cluster,
                "estimator": "callaway_santanna"},
        df_t=None,
        alpha=alpha,
        extra={
            "group_time": gt,
            "call": {"func": callaway_santanna, "panel": panel,
                     "kwargs": {"treatment": treatment, "outcome": outcome, "control": control,
                                "event_time": event_time, "base_period": base_period, "cluster": cluster,
                                "unit": unit, "min_e": min_e, "max_e": max_e, "model": model,
                                "exposure": exposure, "alpha": alpha}},
        },
    )
