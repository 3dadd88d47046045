"""Sun & Abraham (2021, *J. Econometrics*) interaction-weighted event study.

One regression of the outcome on corridor and year fixed effects and a full set
of cohort x relative-period indicators ``1{cohort = g} 1{year - g = k}`` for every
treated cohort ``g`` and every relative period ``k`` except the reference period
(default ``k = -1``). Controls: corridors never treated (``control="never"``) or,
with ``control="last"``, the last-adopting cohort, in which case years from its
adoption onward are dropped. Cohort-specific effects ``delta_{g,k}`` are then
averaged with cohort shares: ``beta_k = sum_g n_{g,k} delta_{g,k} / sum_g n_{g,k}``
where ``n_{g,k}`` is the number of corridor-years of cohort ``g`` at period ``k`` in
the sample; the overall ATT averages the post periods (``k >= 0``) with the same
observation shares. Standard errors: cluster-robust sandwich (CRV1 with the
fixest small-sample factors, as :func:`returnstudy.models.twfe.twfe`) for the
interaction coefficients, propagated linearly to the aggregates (shares treated
as fixed). With no residual degrees of freedom or a single cluster they are NaN
and a note says so.

``model="poisson"`` fits the same design by Poisson pseudo-maximum likelihood
with offset ``log(exposure)``; aggregates are on the log scale with
``pct_effect``. Cohort x period cells whose outcomes are all zero would have an
estimate of minus infinity and are dropped (reported), as are cohorts whose
reference-year outcomes are all zero (separated). Caution: every treated corridor's
level is pinned by its single reference-year count, so with small counts (few
corridors per cohort, a handful of returns each) the log-scale cell effects carry an
upward small-count bias that shows up as non-zero leads; ``did_imputation``, which
uses all untreated years, does not have this problem.

The design is solved exactly with sparse normal equations / Newton steps, so
the hundreds of interaction columns cost milliseconds.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from returnstudy.inference.cluster import VcovDetails, _parse_ssc, variance_not_identified
from returnstudy.models._fe import FixedEffects
from returnstudy.models.imputation import SparseFE, sparse_fit, staggered_sample
from returnstudy.results import EstimationResult, make_table

logger = logging.getLogger(__name__)

__all__ = ["sun_abraham"]


def _sandwich_from_meat(
    meat: np.ndarray,
    n_obs: int,
    df_k: int,
    df_resid: int,
    n_clusters: int | None,
    small_sample: Any,
) -> tuple[np.ndarray, VcovDetails]:
    """One-way cluster-robust (CRV1) or heteroskedasticity-robust (HC1) variance from its meat.

    ``meat`` is ``sum_g s_g s_g'`` of scores that already carry the inverse Hessian (identity
    bread), summed within clusters (``n_clusters`` of them) or per observation (None). Same
    small-sample factors, identification checks and record as
    :func:`returnstudy.inference.cluster.vcov_details`, which needs the (n, k) score matrix.
    """
    k_adj, g_adj, _, label = _parse_ssc(small_sample)
    vcov_type = "hetero" if n_clusters is None else "cluster"
    g_all = [] if n_clusters is None else [int(n_clusters)]
    k = meat.shape[0]
    note = variance_not_identified(n_obs, n_obs - df_resid, g_all, df_k=df_k)
    if note is not None:
        logger.info(note)
        if g_all and g_all[0] >= 2:
            df_t = float(g_all[0] - 1)
        else:
            df_t = float(n_obs - df_k) if n_obs - df_k > 0 else np.nan
        return np.full((k, k), np.nan), VcovDetails(
            vcov_type=vcov_type, n_obs=n_obs, df_k=df_k, n_clusters=g_all, small_sample=label, df_t=df_t,
            identified=False, note=note)
    if df_k >= n_obs:
        raise ValueError(f"degrees of freedom used ({df_k}) not below the number of observations ({n_obs})")
    det = VcovDetails(vcov_type=vcov_type, n_obs=n_obs, df_k=df_k, small_sample=label)
    if n_clusters is None:
        adj = n_obs / (n_obs - df_k) if k_adj else 1.0
        det.factors, det.df_t = [adj], n_obs - df_k
        return adj * meat, det
    g = int(n_clusters)
    fac = (g / (g - 1) if g_adj and g > 1 else 1.0) * ((n_obs - 1) / (n_obs - df_k) if k_adj else 1.0)
    V = fac * meat
    det.n_clusters, det.cluster_terms, det.factors, det.df_t = [g], [(0,)], [fac], g - 1
    return (V + V.T) / 2.0, det


def sun_abraham(
    panel: pd.DataFrame,
    treatment: str | None = None,
    model: str = "linear",
    outcome: str | None = None,
    exposure: str = "orders",
    event_time: bool = True,
    control: str = "never",
    ref_period: int = -1,
    window: tuple[int, int] | None = None,
    fe: tuple[str, ...] | None = None,
    cluster: str | None = "citizen",
    small_sample: str = "fixest-default",
    alpha: float = 0.05,
    unit: str | None = None,
    time: str | None = None,
    cohort: str | None = None,
    nonabsorbing: str = "drop",
) -> EstimationResult:
    """Sun-Abraham event study (or overall ATT) for a staggered binary treatment.

    Parameters
    ----------
    panel : long panel, one row per unit and period (default: the corridor-year panel with
        the treatment contract columns).
    treatment : binary absorbing treatment (adoption year from ``{treatment}_cohort``);
        default ``bilateral_binding``, or with ``cohort=`` a label for the effect
        (``"treated"``) unless it names an existing 0/1 column.
    unit, time : unit and period columns (default ``corridor`` and ``year``).
    cohort : column with each unit's first treated period (0 / NaN: never treated), e.g.
        ``first.treat``; default ``{treatment}_cohort``.
    fe : fixed effects (default unit and time effects ``(unit, time)``).
    model : ``"linear"`` (default outcome ``return_rate``) or ``"poisson"`` (``returns``,
        offset ``log(exposure)``).
    event_time : True: ``.table`` indexed by relative period (int, reference omitted);
        False: one row ``term == treatment`` with the post-period ATT.
    control : ``"never"`` (never-treated corridors) or ``"last"`` (last-treated cohort).
    ref_period : omitted relative period (default -1, the year before adoption).
    window : optional (lo, hi) relative periods to report (estimation stays saturated).
    cluster : one-way cluster variable; None gives heteroskedasticity-robust errors.
    nonabsorbing : units whose ``treatment`` column switches off inside the sample (no event
        time after the switch-off): ``"drop"`` (default; rows counted in
        ``info["dropped"]["non-absorbing treatment"]``, units named in the notes) or ``"raise"``.
    """
    if control not in ("never", "last"):
        raise ValueError(f"control={control!r}: expected 'never' or 'last'")
    s, treatment, outcome, unit, time, fe, nonabsorbing_drop = staggered_sample(
        panel, treatment, outcome, model, exposure, fe, cluster, unit, time, cohort, nonabsorbing, "sun_abraham")
    coh = s.cohort
    first_year = np.nanmin(s.year)
    always = ~np.isnan(coh) & (coh <= first_year)
    if always.any():
        s = s.subset(~always, "corridors treated in every sample year (no pre-period)")
        coh = s.cohort
    cohorts = np.unique(coh[~np.isnan(coh)])
    if control == "never":
        if not np.isnan(coh).any():
            raise ValueError(f"control='never' but no corridor is never treated by {treatment!r}; use control='last'")
        control_desc = "never-treated corridors"
    else:
        if cohorts.size < 2:
            raise ValueError("control='last' needs at least two adoption cohorts")
        last = cohorts.max()
        s = s.subset(s.year < last, f"years from the last cohort's adoption ({int(last)}) on (control='last')")
        s.cohort = np.where(s.cohort == last, np.nan, s.cohort)
        s.rel = s.year - s.cohort
        s.treated = ~np.isnan(s.cohort) & (s.rel >= 0)
        control_desc = f"last-treated cohort ({int(last)}), years before {int(last)}"
    if s.cluster is not None:
        s.cluster = pd.factorize(s.cluster)[0]
    is_t = ~np.isnan(s.cohort)
    cell_key = np.where(is_t & (s.rel != ref_period), s.cohort * 1000 + (s.rel + 500), -1)

    def drop_unanchored() -> None:
        """Cohorts without a reference-period row: their indicators span their corridor effects.

        Poisson: a cohort whose reference-period outcomes are all zero is separated (its
        corridor effects go to minus and its cell effects to plus infinity) and is dropped too.
        """
        nonlocal s, cell_key
        t = ~np.isnan(s.cohort)
        ref_rows = t & (s.rel == ref_period)
        anchored = np.unique(s.cohort[ref_rows])
        bad = t & ~np.isin(s.cohort, anchored)
        if bad.any():
            s = s.subset(~bad, f"cohorts with no observation in the reference period ({ref_period})")
            cell_key = cell_key[~bad]
        if model == "poisson":
            t = ~np.isnan(s.cohort)
            ref_rows = t & (s.rel == ref_period)
            pos = np.unique(s.cohort[ref_rows & (s.y > 0)])
            bad = t & ~np.isin(s.cohort, pos)
            if bad.any():
                s = s.subset(~bad, f"cohorts with all-zero outcomes in the reference period ({ref_period}; separated)")
                cell_key = cell_key[~bad]

    drop_unanchored()
    if model == "poisson":
        if (s.y < 0).any():
            raise ValueError("Poisson outcome must be non-negative")
        # fixed-effect groups and cohort x period cells with only zero outcomes
        while True:
            drop = np.zeros(s.y.size, dtype=bool)
            for c in s.fe_codes:
                c = pd.factorize(c)[0]
                drop |= np.bincount(c, weights=(s.y > 0).astype(float))[c] == 0
            cc = pd.factorize(cell_key)[0]
            zero_cell = (np.bincount(cc, weights=(s.y > 0).astype(float))[cc] == 0) & (cell_key >= 0)
            if drop.any():
                s = s.subset(~drop, "fixed-effect groups with all-zero outcomes")
                cell_key = cell_key[~drop]
                continue
            if zero_cell.any():
                s = s.subset(~zero_cell, "cohort x period cells with all-zero outcomes (separated)")
                cell_key = cell_key[~zero_cell]
                continue
            n_before = s.y.size
            drop_unanchored()
            if s.y.size < n_before:
                continue
            break
        if s.cluster is not None:
            s.cluster = pd.factorize(s.cluster)[0]
    keys = np.unique(cell_key[cell_key >= 0])
    if keys.size == 0:
        raise ValueError("no cohort x relative-period cells to estimate")
    rows = np.flatnonzero(cell_key >= 0)
    cols = np.searchsorted(keys, cell_key[rows])  # keys are sorted and unique
    X = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(s.y.size, keys.size))
    cell_g = (keys // 1000).astype(int)
    cell_k = (keys % 1000 - 500).astype(int)
    fe_codes = [pd.factorize(c)[0] for c in s.fe_codes]
    Zfe = SparseFE(fe_codes, np.ones(s.y.size, dtype=bool)).Z
    offset = np.log(s.exposure) if model == "poisson" else None
    fit = sparse_fit(s.y, X, Zfe, model=model, offset=offset)
    if not fit.converged:
        logger.warning("sun_abraham: Poisson fit did not converge in %d iterations", fit.n_iter)
    delta = fit.theta[: keys.size]
    if model == "poisson" and np.max(np.abs(fit.theta)) > 25:
        logger.warning("sun_abraham: coefficients beyond +/-25 on the log scale; possible undetected separation")
    fx = FixedEffects(fe_codes, names=tuple(fe))
    clusters = [s.cluster] if s.cluster is not None else []
    df_k = keys.size + (fx.n_absorbed(clusters if clusters else None) if fx.n_dims else 0)
    # cluster sums of the cell-coefficient scores, never the rows x cells score matrix
    cl_codes = None if s.cluster is None else pd.factorize(s.cluster)[0]
    meat = fit.coef_score_meat(cl_codes)
    Vd, det = _sandwich_from_meat(meat, s.y.size, df_k, s.y.size - keys.size - Zfe.shape[1],
                                  None if cl_codes is None else int(cl_codes.max()) + 1, small_sample)
    n_cell = np.bincount(cols, minlength=keys.size).astype(float)
    # aggregation matrix: rows = relative periods (or overall ATT)
    periods = np.unique(cell_k)
    if event_time:
        names: list[Any] = [int(k) for k in periods]
        R = np.zeros((len(periods), keys.size))
        for i, k in enumerate(periods):
            m = cell_k == k
            R[i, m] = n_cell[m] / n_cell[m].sum()
    else:
        names = [treatment]
        m = cell_k >= 0
        if not m.any():
            raise ValueError("no post-adoption cells")
        R = np.zeros((1, keys.size))
        R[0, m] = n_cell[m] / n_cell[m].sum()
    est = R @ delta
    V = R @ Vd @ R.T
    se = np.sqrt(np.clip(np.diag(V), 0, None))
    poisson = model == "poisson"
    df_t = None if poisson else float(det.df_t)
    table = make_table(est, se, index=names, df=df_t, alpha=alpha, poisson=poisson,
                       index_name="rel_period" if event_time else "term")
    table["n_obs_cells"] = (R > 0) @ n_cell
    if event_time and window is not None:
        lo, hi = window
        table = table.loc[[k for k in table.index if lo <= k <= hi]]
    info = nonabsorbing_drop.record(s.info())
    info.update(
        {
            "estimator": "Sun & Abraham interaction-weighted event study",
            "model": model,
            "outcome": outcome,
            "treatment": treatment,
            "control_group": control_desc,
            "reference_period": f"relative period {ref_period} of each cohort",
            "vcov_type": det.vcov_type,
            "vcov_description": det.describe() + "; aggregation shares treated as fixed",
            "small_sample": det.small_sample,
            "n_clusters": det.n_clusters[0] if det.n_clusters else None,
            "n_cells": int(keys.size),
        }
    )
    if poisson:
        info["exposure"] = f"log({exposure}) offset"
        info["converged"], info["n_iter"] = bool(fit.converged), int(fit.n_iter)
    cell_table = make_table(delta, np.sqrt(np.clip(np.diag(Vd), 0, None)), index=range(keys.size),
                            df=df_t, alpha=alpha, poisson=poisson)
    cell_table.index = pd.MultiIndex.from_arrays([cell_g, cell_k], names=["cohort", "rel_period"])
    cell_table["n_obs"] = n_cell
    params = pd.Series(est, index=names)
    res = EstimationResult(
        model=f"sun_abraham ({model})",
        params=params,
        vcov=pd.DataFrame(V, index=names, columns=names),
        table=table,
        info=info,
        design={"outcome": outcome, "treatment": treatment, "fixed_effects": list(fe), "cluster": cluster,
                "estimator": "sun_abraham"},
        df_t=df_t,
        alpha=alpha,
        extra={
            "cohort_effects": cell_table,
            "aggregation": pd.DataFrame(R, index=names, columns=cell_table.index),
            "sample_index": s.frame.index,
            "call": {"func": sun_abraham, "panel": panel,
                     "kwargs": {"treatment": treatment, "model": model, "outcome": outcome, "exposure": exposure,
                                "event_time": event_time, "control": control, "ref_period": ref_period,
                                "window": window, "fe": tuple(fe), "cluster": cluster,
                                "small_sample": small_sample, "alpha": alpha, "unit": unit, "time": time,
                                "cohort": cohort, "nonabsorbing": nonabsorbing}},
        },
    )
    if not det.identified:
        res.info.setdefault("notes", []).append(det.note)
    if event_time:
        pre = [k for k in names if k < 0]
        if pre and not det.identified:
            res.info["pretrend_test"] = f"not available: {det.note}"
        elif pre:
            try:
                res.info["pretrend_test"] = res.wald_test(terms=pre, hypothesis=f"leads {pre} jointly zero")
            except (np.linalg.LinAlgError, ValueError) as exc:  # pragma: no cover - degenerate vcov
                logger.info("pre-trend test failed: %s", exc)
    if s.attrs.get("synthetic"):
        res.info.setdefault("notes", []).append("SYNTHETIC data (simulate_panel)")
    return res
