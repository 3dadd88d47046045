"""Extended two-way fixed effects (Wooldridge 2021, 2023): linear and Poisson with exposure.

One regression of the outcome on unit (or cohort) and time fixed effects and a dummy for
every *treated cell* ``1{G_i = g} 1{t = s}``: a cohort ``g`` (first treated period) in a
period ``s``. With the cells saturated, each cell coefficient ``tau_gs`` is that cell's
average effect on the treated, identified from the comparison units named by ``control``:

* ``control="notyet"`` (Wooldridge's default): cells are the periods ``s >= g`` (from
  ``g - anticipation`` with anticipation); every untreated unit-period, never treated or
  not yet treated, is a control. Linear, balanced panel, no covariates: the same numbers
  as the imputation estimator (Borusyak, Jaravel and Spiess), as Wooldridge (2021) shows.
* ``control="never"``: cells are every period of a treated cohort except its reference
  period ``g - 1 - anticipation``, so only never-treated units are controls; the cells
  before adoption are placebo (pre-trend) estimates.

``model="poisson"`` fits the same design by Poisson pseudo-maximum likelihood with
absorbed fixed effects and an exposure offset ``log(exposure)`` (returns per order to
leave), as Wooldridge (2023) proposes for non-negative outcomes; the cell coefficients
are log rate ratios. Time-invariant ``covariates`` enter as in Wooldridge: interacted with
the time dummies, with the cohort dummies (cohort effects only; absorbed by unit effects),
and with the cell dummies after centring on the cohort mean.

Aggregation (``simple``, ``group``, ``calendar``, ``event``) averages over the treated
unit-periods of the cells in each aggregate (weights = treated-cell row counts, as
Wooldridge's margins over the treated):

* linear: ``ATT_A = mean over treated rows in A of the predicted effect`` (outcome units);
* Poisson, ``poisson_scale="ratio"`` (default, Wooldridge's average proportional effect):
  ``estimate = log(sum_A mu_it / sum_A mu0_it)`` with ``mu0 = mu exp(-effect)`` the fitted
  counterfactual mean; ``pct_effect = 100 (exp(estimate) - 1)`` is the ATT in levels
  divided by the counterfactual mean, i.e. the percent change in the expected outcome
  (the return rate given orders) of the treated; ``att_level`` is the ATT in levels per
  treated row (expected outcome count);
* Poisson, ``poisson_scale="log_mean"``: ``estimate = mean over A of the log effect``,
  ``pct_effect = 100 (exp(estimate) - 1)``.

Standard errors: the sandwich covariance of the coefficients (clustered by ``cluster``, fixest
small-sample factors, as :func:`returnstudy.models.twfe.twfe` and :func:`returnstudy.models.ppml.ppml`;
the cell coefficients equal pyfixest's saturated regression), propagated to the aggregates by the
delta method with the treated-row weights held fixed. Linear and Poisson ``log_mean`` aggregates are
linear in the cell coefficients. The Poisson ``ratio`` and ``att_level`` aggregates also depend on
the counterfactual means, so their delta method runs over every parameter, the absorbed fixed
effects included (as R's ``etwfe``/``marginaleffects`` with dummy fixed effects), through one
weighted projection on the fixed effects (see :func:`_full_delta_vcov`); with ``cluster="iid"``
the fixed effects are held at their estimates. Intervals for Poisson are on the log scale and
transformed (``pct_ci_low``, ``pct_ci_high``); linear intervals use the t distribution with
G - 1 degrees of freedom, like the regression's.

``extra["event_vcov"]``: the covariance of the event-time aggregates (labelled by ``rel_period``;
with ``control="never"`` the placebo event times before the reference period included), what
:func:`returnstudy.inference.honest_did.honest_did` takes. ``extra["influence_sums"]`` (one-way
clustered fits): for every aggregation the per-cluster sums ``C_g`` of each aggregate's influence
function (row scores x bread x delta-method gradient; the fixed effects' part included for the Poisson
``ratio`` scale), times the square root of the small-sample factor, so that ``sum_g C_g C_g'`` is the
reported covariance; the bootstrap of etwfe results
(:func:`returnstudy.inference.score_bootstrap.influence_bootstrap`) perturbs them.

Caution: a cell whose treated rows all lie in one cluster has a clustered variance near zero;
``info["notes"]`` says how many post-adoption cells are in that case.

Computation: the cell dummies and their interactions are a scipy.sparse design; the fits
(:mod:`returnstudy.models._sparse_fit`) keep every demeaned column as fixed-effect coefficients and the
delta method's influence directions as sparse times dense factors, so memory grows with rows plus
units x cells, never rows x cells (1M rows, 88 cells: under 1 GB peak including the panel). The fit's
``Xd`` and ``scores`` (``extra["fit"]``) are such implicit arrays; ``toarray()`` gives them densely.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from returnstudy.models._absorbing import check_nonabsorbing_choice, drop_nonabsorbing
from returnstudy.models._common import fit_design, vcov_type_of
from returnstudy.models._design import prepare
from returnstudy.models._fe import PPMLFit
from returnstudy.results import EstimationResult, make_table

logger = logging.getLogger(__name__)

__all__ = ["etwfe"]

MODELS = ("linear", "poisson")
CONTROLS = ("notyet", "never")
FE_LEVELS = ("unit", "cohort")
AGGREGATIONS = ("simple", "group", "calendar", "event")
POISSON_SCALES = ("ratio", "log_mean")
_G = "_etwfe_cohort"  # working column: first treated period (NaN: never treated)


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {list(choices)}")


def _num(x: float) -> str:
    """Integer-valued period as text (2012.0 -> '2012')."""
    return str(int(x)) if float(x).is_integer() else str(x)


def _integer_valued(values: np.ndarray, what: str, frame: pd.DataFrame) -> None:
    bad = np.isfinite(values) & (values != np.round(values))
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise ValueError(f"{what} must hold whole periods; row {frame.index[i]!r} has {values[i]}")


def _cohort_values(
    panel: pd.DataFrame, treatment: str | None, cohort: str | None, unit: str, time: str
) -> tuple[np.ndarray, str]:
    """First treated period of each row's unit (NaN: never treated) and where it came from.

    ``cohort`` names a column (0 or missing: never treated); by default ``{treatment}_cohort``,
    else the first period with ``treatment == 1``. A given treatment column is checked against
    the cohorts (``D == 1`` exactly from the first treated period on).
    """
    cols = list(panel.columns)
    for col in (unit, time):
        if col not in panel.columns:
            raise KeyError(f"column {col!r} not in panel; available: {cols}")
    if not pd.api.types.is_numeric_dtype(panel[time]):
        raise ValueError(f"time column {time!r} must be numeric (periods), has dtype {panel[time].dtype}")
    t = panel[time].to_numpy(dtype=float, na_value=np.nan)
    _integer_valued(t, f"time column {time!r}", panel)
    has_d = treatment is not None and treatment in panel.columns
    cohort_col = cohort if cohort is not None else (f"{treatment}_cohort" if treatment is not None else None)
    if cohort_col is not None and cohort_col in panel.columns:
        s = panel[cohort_col]
        if not pd.api.types.is_numeric_dtype(s):
            raise ValueError(f"cohort column {cohort_col!r} must be numeric (first treated period), has dtype {s.dtype}")
        g = s.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        if (g < 0).any():
            i = np.flatnonzero(g < 0)[0]
            raise ValueError(f"cohort column {cohort_col!r} is negative in row {panel.index[i]!r}; use 0 or missing "
                             "for never treated")
        g = np.where(g == 0, np.nan, g)
        source = f"column {cohort_col!r}"
    elif cohort is not None:
        raise KeyError(f"cohort column {cohort!r} not in panel; available: {cols}")
    elif has_d:
        d = panel[treatment].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        codes = pd.factorize(panel[unit])[0]
        first = pd.Series(np.where(d > 0, t, np.inf)).groupby(codes).transform("min").to_numpy()
        g = np.where(np.isinf(first), np.nan, first)
        source = f"first period with {treatment!r} == 1"
    else:
        raise KeyError(
            f"no cohort information: neither {cohort_col!r} nor treatment column {treatment!r} is in the panel; "
            f"pass cohort= (first treated period, 0 or missing for never treated); available: {cols}"
        )
    _integer_valued(g, f"cohort ({source})", panel)
    codes = pd.factorize(panel[unit])[0]
    ok = codes >= 0
    gg = pd.Series(np.where(np.isnan(g), -1.0, g)[ok])
    n_distinct = gg.groupby(codes[ok]).transform("nunique").to_numpy()
    if (n_distinct > 1).any():
        i = np.flatnonzero(ok)[np.flatnonzero(n_distinct > 1)[0]]
        raise ValueError(f"cohort ({source}) varies within {unit}={panel[unit].iloc[i]!r}: one first treated "
                         "period per unit")
    if has_d:
        d = panel[treatment].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        known = ~np.isnan(d)
        if not np.isin(d[known], (0.0, 1.0)).all():
            i = np.flatnonzero(known & ~np.isin(d, (0.0, 1.0)))[0]
            raise ValueError(f"treatment {treatment!r} must be binary 0/1; row {panel.index[i]!r} has {d[i]}")
        implied = ~np.isnan(g) & (t >= np.nan_to_num(g, nan=np.inf))
        bad = known & (implied != (d > 0))
        if bad.any():
            i = np.flatnonzero(bad)[0]
            raise ValueError(
                f"treatment {treatment!r} is not absorbing from its first treated period ({source}): row "
                f"{panel.index[i]!r} ({unit}={panel[unit].iloc[i]!r}, {time}={t[i]:g}) has {treatment}={d[i]:g} but "
                f"cohort {g[i]}; pass cohort= for a panel whose treatment column is not D_it, or treatment=None"
            )
    return g, source


def _aggregate(
    masks: list[np.ndarray], T: np.ndarray, b: np.ndarray, mu: np.ndarray | None, scale: str,
    mu0_zero: np.ndarray | None = None, zero_masks: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Estimates and delta-method gradients (rows) of each aggregate over its treated rows.

    ``T`` holds the treatment regressors of the treated rows (dense or scipy.sparse), ``b`` their
    coefficients; the predicted effect of a row is ``T b`` (log scale for Poisson). Poisson ``ratio``: also the
    ATT in levels per row and its gradient; rows of cells with only zero outcomes (``mu = 0``,
    counterfactual ``mu0_zero``, selected by ``zero_masks``) count in the denominators.
    """
    eff = T @ b
    est = np.full(len(masks), np.nan)
    G = np.zeros((len(masks), T.shape[1]))
    lvl = lvl_G = None
    if mu is not None and scale == "ratio":
        mu0 = mu * np.exp(-eff)
        lvl, lvl_G = np.full(len(masks), np.nan), np.zeros_like(G)
    for j, m in enumerate(masks):
        if mu is None or scale == "log_mean":
            est[j] = eff[m].mean()
            G[j] = _col_sums(T, m) / m.sum()
        else:
            s1, s0, n_a = mu[m].sum(), mu0[m].sum(), m.sum()
            if mu0_zero is not None and zero_masks is not None:
                s0 += mu0_zero[zero_masks[j]].sum()
                n_a += zero_masks[j].sum()
            est[j] = np.log(s1 / s0) if s1 > 0 else -np.inf
            G[j] = _col_sums(T, m, mu[m]) / s1 if s1 > 0 else np.nan
            lvl[j] = (s1 - s0) / n_a
            lvl_G[j] = _col_sums(T, m, mu[m]) / n_a
    return est, G, lvl, lvl_G


def _col_sums(T: Any, m: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
    """Column sums of the rows ``m`` of ``T`` (dense or scipy.sparse), weighted by ``v`` (one per selected row)."""
    if sp.issparse(T):
        Tm = T[np.flatnonzero(m)]
        return np.asarray(Tm.sum(axis=0)).ravel() if v is None else Tm.T @ v
    return T[m].sum(axis=0) if v is None else (v[:, None] * T[m]).sum(axis=0)


def _sum_by(M: Any, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Column sums of ``M`` (n, k) within groups ``codes`` (0..n_groups-1) -> (n_groups, k); ``M`` may be
    implicit scores (:class:`~returnstudy.models._sparse_fit.ImplicitScores`)."""
    if hasattr(M, "cluster_sums"):
        return M.cluster_sums(codes, n_groups)
    M = np.asarray(M, dtype=float).reshape(M.shape[0], -1)
    return np.column_stack([np.bincount(codes, weights=M[:, j], minlength=n_groups) for j in range(M.shape[1])])


def _zero_cell_rows(
    out: Any, pre: Any, in_zero: np.ndarray, fe_cols: Sequence[str], exposure: str | None, names: list[str],
    nonT_names: set[str],
) -> dict[str, Any] | None:
    """Counterfactual means of the rows of cells whose outcomes are all zero (dropped from the Poisson fit
    as separated): ``mu0 = exp(offset + fixed effects + other regressors)`` from the fitted model, with the
    sparse fixed-effect design needed for their delta method. None if a row's unit or period has no
    fitted effect."""
    from returnstudy.models.imputation import SparseFE

    fit, d = out.fit, out.design
    fz = pre.frame.iloc[np.flatnonzero(in_zero)]
    nk, nz = d.n_obs, int(in_zero.sum())
    codes = [pd.factorize(np.concatenate([d.frame[c].to_numpy(), fz[c].to_numpy()]))[0] for c in fe_cols]
    fitmask = np.r_[np.ones(nk, dtype=bool), np.zeros(nz, dtype=bool)]
    fe_obj = SparseFE(codes, fitmask)
    if not fe_obj.ok.all():
        return None
    Zk, Zz = fe_obj.Z[:nk], fe_obj.Z[nk:]
    solve = fe_obj.factor(fitmask, w=fit.weights)
    off_k = np.log(d.frame[exposure].to_numpy(dtype=float)) if exposure is not None else np.zeros(nk)
    off_z = np.log(fz[exposure].to_numpy(dtype=float)) if exposure is not None else np.zeros(nz)
    Xk = d.X[:, [names.index(nm) for nm in out.names]]
    a = solve(Zk.T @ (fit.weights * (fit.eta - off_k - Xk @ out.beta)))
    nt_pos = [i for i, nm in enumerate(out.names) if nm in nonT_names]
    z_cols = [names.index(out.names[i]) for i in nt_pos]
    Xz = (pre.X[np.flatnonzero(in_zero)][:, z_cols].toarray() if sp.issparse(pre.X)
          else pre.X[np.ix_(in_zero, z_cols)])
    mu0 = np.exp(off_z + Zz @ a + Xz @ out.beta[nt_pos])
    return {"mu0": mu0, "Zk": Zk, "Zz": Zz, "solve": solve, "nt_pos": nt_pos, "Xz": Xz, "Xk": Xk}


def _full_delta_vcov(
    out: Any, masks: list[np.ndarray], treated: np.ndarray, T: np.ndarray, bT: np.ndarray, ti: list[int],
    small_sample: str, zero: dict[str, Any] | None = None, zero_masks: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Clustered covariance of the Poisson aggregates ``log(S_A / S0_A)`` and ``(S_A - S0_A) / n_A``
    (``S`` = sum of fitted means, ``S0`` = of counterfactual means over the treated rows ``A``), by the
    delta method over *all* parameters: treatment cells, other regressors and the absorbed fixed effects.

    With ``W`` the full design (regressors and fixed-effect dummies), ``H = W' Omega W`` and the gradient
    ``grad = W' Omega v + e`` (``e`` non-zero on the treatment coefficients only), the influence of row
    ``i`` on an aggregate is ``(y_i - mu_i) u_i`` with ``u = W H^-1 grad = P v + X~ bread e``: ``P`` the
    weighted projection on the span of ``W`` and ``X~`` the regressors net of the fixed effects. The
    sandwich uses the same clusters and small-sample factors as the coefficients. Rows of all-zero
    cells (``zero``) add ``-mu0 W / S0`` to the gradient: their regressor part enters ``e``, their
    fixed-effect part ``b`` gives ``z - X~ bread X' Omega z`` with ``z = D (D' Omega D)^-1 b``.

    Returns the covariance (2m x 2m), the per-row influence values ``(y_i - mu_i) omega_i u_i``
    (n x 2m: the aggregates' scores x bread x gradient; kept implicit, as
    :class:`~returnstudy.models._sparse_fit.ImplicitScores`: ``u`` is the span of the fixed effects and of
    ``X~`` times coefficient matrices, never a dense n x 2m array) and the sandwich's
    :class:`~returnstudy.inference.cluster.VcovDetails` (its small-sample factors).
    """
    from returnstudy.inference.cluster import vcov_details
    from returnstudy.models._common import fe_rank
    from returnstudy.models._sparse_fit import DemeanedColumns, ImplicitColumns, ImplicitScores

    fit = out.fit
    d = out.design
    n = d.n_obs
    wts = fit.weights
    Xd = fit.Xd
    if not isinstance(Xd, DemeanedColumns):
        raise TypeError("the Poisson delta method over all parameters needs the sparse fit (fit_ppml_sparse)")
    mu_all = fit.mu
    eff = T @ bT
    rows = np.flatnonzero(treated)
    mu_tr = mu_all[rows]
    mu0_tr = mu_tr * np.exp(-eff)
    m_ = len(masks)
    c_rows: list[np.ndarray] = []  # the sparse (n, 2m) gradient weights C of the treated rows
    c_cols: list[np.ndarray] = []
    c_vals: list[np.ndarray] = []

    def put(col: int, m: np.ndarray, vals: np.ndarray) -> None:
        c_rows.append(rows[m])
        c_cols.append(np.full(int(m.sum()), col))
        c_vals.append(np.asarray(vals, dtype=float))

    E = np.zeros((Xd.shape[1], 2 * m_))
    Bfe = None if zero is None else np.zeros((zero["Zz"].shape[1], 2 * m_))
    for j, m in enumerate(masks):
        S, S0, n_a = mu_tr[m].sum(), mu0_tr[m].sum(), m.sum()
        mz = None
        if zero is not None and zero_masks is not None and zero_masks[j].any():
            mz = zero_masks[j]
            S0 += zero["mu0"][mz].sum()
            n_a += mz.sum()
        if S > 0:
            put(j, m, mu_tr[m] / S - mu0_tr[m] / S0)
        E[ti, j] = _col_sums(T, m, mu0_tr[m]) / S0
        put(m_ + j, m, (mu_tr[m] - mu0_tr[m]) / n_a)
        E[ti, m_ + j] = _col_sums(T, m, mu0_tr[m]) / n_a
        if mz is not None and Bfe is not None:
            w0 = zero["mu0"][mz]
            for col, den in ((j, S0), (m_ + j, n_a)):
                Bfe[:, col] = -(zero["Zz"][np.flatnonzero(mz)].T @ w0) / den
                E[zero["nt_pos"], col] += -(zero["Xz"][mz].T @ w0) / den
    Vc = sp.csc_matrix((np.concatenate(c_vals) / wts[np.concatenate(c_rows)],
                        (np.concatenate(c_rows), np.concatenate(c_cols))), shape=(n, 2 * m_))
    # u = (Vc - Vd) + X~ b + X~ bread e, column by column: Vc - Vd lies in the span of the fixed effects
    # (kept as its coefficients A), the rest is X~ times a (k, 2m) matrix, so u stays implicit
    A = np.zeros((Xd.Z.shape[1], 2 * m_))
    b = np.zeros((Xd.shape[1], 2 * m_))
    exact = Xd.projection_coef is not None and fit.fe is not None and fit.fe.n_dims > 0
    if exact:  # demeaning is the exact projection: all columns' coefficients by one sparse solve
        A = Xd.projection_coef(Vc, wts)
    for c in range(2 * m_):
        vc = Vc[:, c].toarray().ravel()
        if exact:
            vd = vc - Xd.Z @ A[:, c]
        else:
            vd = fit.fe.demean(vc, weights=wts) if fit.fe is not None and fit.fe.n_dims else vc
            if Xd.Z.shape[1]:
                A[:, c] = Xd.span_coef(vc - vd)
        b[:, c] = fit.bread @ Xd.tdot(wts * vd)
    B = b + fit.bread @ E
    U = ImplicitColumns([(Xd.Z, A)]) + Xd.times(B)
    if Bfe is not None and np.any(Bfe):
        Afe = np.column_stack([zero["solve"](Bfe[:, c]) for c in range(2 * m_)])
        Zk = zero["Zk"]
        XkWZk = np.asarray((sp.csr_matrix(zero["Xk"]).T @ sp.diags(wts)) @ Zk @ Afe)
        U = U + ImplicitColumns([(Zk, Afe)]) + Xd.times(-(fit.bread @ XkWZk))
    scores = ImplicitScores(U, wts * fit.resid)
    k = len(out.names)
    V, det = vcov_details(scores, None, d.clusters if out.details.vcov_type == "cluster" else [], np.eye(2 * m_),
                          small_sample, vcov_type=out.details.vcov_type, df_k=out.df_k,
                          df_resid=n - k - fe_rank(d.fe, n - k), on_unidentified="nan")
    for j, m in enumerate(masks):
        if mu_tr[m].sum() == 0:  # an aggregate of all-zero cells only: log ratio is -inf
            V[j, :], V[:, j] = np.nan, np.nan
    return V, scores, det


def etwfe(
    panel: pd.DataFrame,
    treatment: str | None = "bilateral_binding",
    model: str = "linear",
    outcome: str | None = None,
    exposure: str | None = "orders",
    unit: str = "corridor",
    time: str = "year",
    cohort: str | None = None,
    cluster: str | Sequence[str] | None = "citizen",
    control: str = "notyet",
    fe_level: str = "unit",
    covariates: Sequence[str] = (),
    anticipation: int = 0,
    aggregation: str = "simple",
    poisson_scale: str = "ratio",
    small_sample: str = "fixest-default",
    tol: float = 1e-10,
    alpha: float = 0.05,
    nonabsorbing: str = "drop",
) -> EstimationResult:
    """Wooldridge's extended two-way fixed-effects estimator of a staggered absorbing treatment.

    Parameters
    ----------
    panel : unit-period panel, one row per (``unit``, ``time``).
    treatment : binary absorbing treatment column (checked against the cohorts) and the label
        of the result's row; None with ``cohort=`` when the panel has no D_it column.
    model : ``"linear"`` (default outcome ``return_rate``) or ``"poisson"`` (default ``returns``,
        offset ``log(exposure)``).
    exposure : exposure column of the Poisson model (rows with missing or zero exposure are
        dropped); None: no offset.
    unit, time : unit and period columns (periods are whole numbers, e.g. years).
    cohort : first treated period column (0 or missing: never treated); default
        ``{treatment}_cohort``, else derived from ``treatment``. Cohorts after the last period
        of the sample count as never treated.
    cluster : cluster variable(s) of the sandwich covariance (None: heteroskedasticity-robust).
    control : ``"notyet"`` (never and not-yet-treated unit-periods) or ``"never"``.
    fe_level : ``"unit"`` (unit fixed effects, absorbed) or ``"cohort"`` (cohort dummies, the
        pooled version; same cell effects in balanced panels without covariates).
    covariates : time-invariant numeric columns, interacted as in Wooldridge (2021).
    anticipation : periods before adoption in which effects may start (cells begin at
        ``g - anticipation``; reported at negative event times, left out of the post-period
        aggregates).
    aggregation : which aggregate forms ``.table``: ``"simple"`` (one row ``term == treatment``),
        ``"group"`` (by cohort), ``"calendar"`` (by period) or ``"event"`` (by ``rel_period``
        = period - cohort, with the simple ATT in ``info["overall"]``). All four are in
        ``info["aggregations"]``; the cell coefficients in ``info["cells"]``.
    poisson_scale : ``"ratio"`` or ``"log_mean"`` (see the module docstring).
    small_sample : small-sample correction of the sandwich (``"fixest-default"`` as pyfixest).
    tol : convergence tolerance of the Poisson IRLS (relative change in deviance).
    nonabsorbing : units whose ``treatment`` column switches off inside the sample (no event
        time after the switch-off): ``"drop"`` (default; rows counted in
        ``info["dropped"]["non-absorbing treatment"]``, units named in the notes) or ``"raise"``.
    """
    _choice("model", model, MODELS)
    _choice("control", control, CONTROLS)
    _choice("fe_level", fe_level, FE_LEVELS)
    _choice("aggregation", aggregation, AGGREGATIONS)
    _choice("poisson_scale", poisson_scale, POISSON_SCALES)
    check_nonabsorbing_choice(nonabsorbing)
    if not isinstance(anticipation, (int, np.integer)) or anticipation < 0:
        raise ValueError(f"anticipation={anticipation!r}: expected a whole number of periods >= 0")
    if not isinstance(panel, pd.DataFrame):
        raise TypeError(f"panel must be a pandas DataFrame, got {type(panel).__name__}")
    if isinstance(covariates, str):
        covariates = [covariates]
    covariates = list(covariates)
    missing_cov = [c for c in covariates if c not in panel.columns]
    if missing_cov:
        raise KeyError(f"covariate column(s) {missing_cov} not in panel; available: {list(panel.columns)}")
    poisson = model == "poisson"
    if outcome is None:
        outcome = "returns" if poisson else "return_rate"
    if poisson and exposure is not None and exposure not in panel.columns:
        raise KeyError(f"exposure column {exposure!r} not in panel (model='poisson'; exposure=None for no offset); "
                       f"available: {list(panel.columns)}")
    label = treatment if treatment is not None else "att"
    panel, nonabsorbing_drop = drop_nonabsorbing(panel, treatment, unit, time, nonabsorbing, "etwfe")

    g_all, cohort_source = _cohort_values(panel, treatment, cohort, unit, time)
    work = panel.assign(**{_G: g_all})
    fe_spec = (unit if fe_level == "unit" else _G + "_fe", time)
    if fe_level == "cohort":
        work[_G + "_fe"] = np.nan_to_num(g_all, nan=0.0)
    extra_cols = [_G] + ([exposure] if poisson and exposure is not None else [])
    extra_cols += [unit] if fe_level == "cohort" else []
    design = prepare(work, outcome, covariates, fe=fe_spec, cluster=cluster, extra_columns=extra_cols,
                     keys=(unit, time))
    notes: list[str] = []
    if poisson and exposure is not None:
        e = design.frame[exposure].to_numpy(dtype=float, na_value=np.nan)
        design = design.drop(~(np.isfinite(e) & (e > 0)), f"{exposure} missing or zero (no exposure)")
    if poisson:
        # units or periods whose outcomes are all zero (their fixed effect is -inf), before the cells are built
        while design.fe is not None and design.n_obs:
            all_zero = design.fe.all_zero_groups(design.y)
            if not all_zero.any():
                break
            design = design.drop(all_zero, "fixed-effect groups with all-zero outcome")
    t = design.frame[time].to_numpy(dtype=float)
    g = design.frame[_G].to_numpy(dtype=float)
    late = ~np.isnan(g) & (g > t.max())
    if late.any():
        n_late = int(pd.unique(design.frame[unit].to_numpy()[late]).size)
        notes.append(f"{n_late} unit(s) first treated after the last period ({_num(t.max())}) count as never treated")
        g = np.where(late, np.nan, g)
    ever = ~np.isnan(g)
    start = g - anticipation  # first period of the treated cells
    if control == "notyet":
        in_cell = ever & (t >= np.nan_to_num(start, nan=np.inf))
        missing_control = "no untreated period"
    else:
        if not (~ever).any():
            raise ValueError("control='never' needs never-treated units; the sample has none (use control='notyet')")
        in_cell = ever & (t != start - 1)
        missing_control = "no row in their reference period (cohort - 1 - anticipation)"
    codes = pd.factorize(design.frame[unit])[0]
    n_control = np.bincount(codes, weights=(~in_cell).astype(float))
    no_ctrl = ever & (n_control[codes] == 0)
    if no_ctrl.any():
        design = design.drop(no_ctrl, f"treated units with {missing_control}")
        t, g, in_cell = t[~no_ctrl], g[~no_ctrl], in_cell[~no_ctrl]
    ctrl_t = np.unique(t[~in_cell])
    no_t = in_cell & ~np.isin(t, ctrl_t)
    if no_t.any():
        design = design.drop(no_t, "treated rows in periods without a control row")
        t, g, in_cell = t[~no_t], g[~no_t], in_cell[~no_t]
    if not in_cell.any():
        raise ValueError(f"no treated cells of {label!r} left to estimate (cohorts from {cohort_source})")
    if not (~in_cell).any():
        raise ValueError("no control rows: every row is a treated cell")

    # cell dummies and Wooldridge's covariate interactions
    cell_keys = pd.DataFrame({"g": g[in_cell], "t": t[in_cell]}).drop_duplicates().sort_values(["g", "t"])
    cells = list(zip(cell_keys["g"].to_numpy(), cell_keys["t"].to_numpy()))
    cell_index = {k: j for j, k in enumerate(cells)}
    row_cell = np.full(t.size, -1, dtype=np.int64)
    row_cell[in_cell] = pd.MultiIndex.from_arrays([cell_keys["g"], cell_keys["t"]]).get_indexer(
        pd.MultiIndex.from_arrays([g[in_cell], t[in_cell]]))
    n = t.size
    K = len(cells)
    # the cell dummies (one non-zero per treated row) and their interactions stay sparse: neither fit forms
    # a dense rows x cells array (models._sparse_fit)
    Xc = sp.csr_matrix((np.ones(int(in_cell.sum())), (np.flatnonzero(in_cell), row_cell[in_cell])), shape=(n, K))
    cell_names = [f"{label}_g{_num(a)}_t{_num(b)}" for a, b in cells]
    blocks, names, is_treat = [Xc], list(cell_names), [True] * K
    if covariates:
        frame = design.frame
        ucodes = pd.factorize(frame[unit])[0]
        cohorts = sorted(set(g[~np.isnan(g)]))
        times = np.unique(t)
        for j, x in enumerate(covariates):
            v = design.X[:, j]
            lo = pd.Series(v).groupby(ucodes).transform("min").to_numpy()
            hi = pd.Series(v).groupby(ucodes).transform("max").to_numpy()
            varies = hi - lo > 1e-12 * np.maximum(1.0, np.abs(v))
            if varies.any():
                i = np.flatnonzero(varies)[0]
                raise ValueError(f"covariate {x!r} varies within {unit}={frame[unit].iloc[i]!r}: covariates must be "
                                 "time-invariant (Wooldridge's ETWFE interacts unit-level covariates)")
            first_row = ~pd.Series(ucodes).duplicated().to_numpy()
            xg = {c: v[first_row & (g == c)].mean() for c in cohorts}  # cohort mean over units
            xc = v - np.array([xg.get(c, 0.0) for c in np.nan_to_num(g, nan=-1.0)])
            blocks.append(Xc.multiply(xc[:, None]))
            names += [f"{x}_x_{c}" for c in cell_names]
            is_treat += [True] * K
            tx = np.column_stack([(t == s) * v for s in times[1:]])
            blocks.append(sp.csr_matrix(tx))
            names += [f"{x}_x_t{_num(s)}" for s in times[1:]]
            is_treat += [False] * tx.shape[1]
            if fe_level == "cohort":
                gx = np.column_stack([v] + [(g == c) * v for c in cohorts])
                blocks.append(sp.csr_matrix(gx))
                names += [x] + [f"{x}_x_g{_num(c)}" for c in cohorts]
                is_treat += [False] * gx.shape[1]
    X = sp.hstack(blocks, format="csr")
    design = replace(design, X=X, regressors=names)
    rows_before = design.rows
    offset = np.log(design.frame[exposure].to_numpy(dtype=float)) if poisson and exposure is not None else None

    out = fit_design(design, "ppml" if poisson else "ols", vcov_type=vcov_type_of(cluster),
                     small_sample=small_sample, offset=offset, tol=tol)
    d = out.design
    pos = np.searchsorted(rows_before, d.rows)
    rc = row_cell[pos]
    kept = dict(zip(out.names, range(len(out.names))))
    treat_names = [nm for nm, tr in zip(names, is_treat) if tr and nm in kept]
    lost_cells = [nm for nm in cell_names if nm not in kept]
    zero: list[str] = []
    zero_idx: list[int] = []
    if lost_cells:
        y_pre = design.y
        zero = [nm for j, nm in enumerate(cell_names) if nm in lost_cells and y_pre[row_cell == j].sum() == 0]
        other = [nm for nm in lost_cells if nm not in zero]
        zero_idx = [cell_names.index(nm) for nm in zero]
        if other:
            notes.append(f"cells collinear with the fixed effects, left out of the aggregates: {', '.join(other)}")
    ti = [kept[nm] for nm in treat_names]
    bT = out.beta[ti]
    VT = out.vcov[np.ix_(ti, ti)]
    col_T = [names.index(nm) for nm in treat_names]
    lost_idx = {cell_index[c] for c, nm in zip(cells, cell_names) if nm not in kept}
    treated = (rc >= 0) & ~np.isin(rc, list(lost_idx))
    if not treated.any():
        raise ValueError(f"no estimable treated cell of {label!r}")
    T = d.X[np.flatnonzero(treated)][:, col_T] if sp.issparse(d.X) else d.X[np.ix_(treated, col_T)]
    cell_r = rc[treated]
    cell_g, cell_t = np.array([c[0] for c in cells]), np.array([c[1] for c in cells])
    g_r, t_r = cell_g[cell_r], cell_t[cell_r]
    e_r = t_r - g_r
    post = e_r >= 0
    mu = None
    if poisson:
        fit = out.fit
        assert isinstance(fit, PPMLFit)
        mu = fit.mu[treated]
    df_t = None if poisson else float(out.details.df_t)
    zinfo = None
    if zero:
        in_zero = np.isin(row_cell, zero_idx) & ~np.isin(rows_before, d.rows)
        n_zero = int(in_zero.sum())
        if poisson_scale == "ratio":
            nonT = {nm for nm, tr in zip(names, is_treat) if not tr}
            zinfo = _zero_cell_rows(out, design, in_zero, fe_spec, exposure if poisson else None, names, nonT)
        if zinfo is not None:
            zc = row_cell[in_zero]
            g_z, t_z = cell_g[zc], cell_t[zc]
            notes.append(f"{len(zero)} cell(s) with only zero outcomes (an effect of -100%, no finite Poisson "
                         f"coefficient): their {n_zero} treated row(s) count in the aggregates with fitted mean 0 "
                         f"and their counterfactual means: {', '.join(zero)}")
        else:
            notes.append(f"{len(zero)} cell(s) with only zero outcomes (an effect of -100%, not estimable by Poisson) "
                         f"and their {n_zero} treated row(s) are left out of the aggregates, which therefore lean "
                         f"upward: {', '.join(zero)}")

    full_delta = poisson and poisson_scale == "ratio" and out.details.vcov_type != "iid"
    # one-way clustered: per-cluster sums of the aggregates' influence functions (for the bootstrap)
    one_way = (out.details.vcov_type == "cluster" and len(d.clusters) == 1 and bool(out.details.identified)
               and bool(out.details.factors))
    cl_codes, cl_values, score_sums = None, None, None
    if one_way:
        cl_codes, cl_values = pd.factorize(d.clusters[0])
        if not full_delta:  # aggregates linear in the coefficients: sum_g of scores, then bread and gradient
            score_sums = _sum_by(out.fit.scores, cl_codes, cl_values.size)

    def table_of(groups: list[tuple[Any, str, float]],
                 index_name: str) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame | None]:
        """Aggregates selected by (label, kind, value): kind 'post', 'group', 'calendar' or 'event'.
        Returns the table, the covariance of the estimates and, when one-way clustered, the
        per-cluster influence sums of the estimates scaled so that their cross-product is that
        covariance (None otherwise)."""

        def select(kind: str, val: float, gg: np.ndarray, tt: np.ndarray) -> np.ndarray:
            ee = tt - gg
            if kind == "event":
                return ee == val
            m = ee >= 0
            return m if kind == "post" else m & ((gg if kind == "group" else tt) == val)

        idx = [k for k, _, _ in groups]
        masks = [select(kind, val, g_r, t_r) for _, kind, val in groups]
        zmasks = None if zinfo is None else [select(kind, val, g_z, t_z) for _, kind, val in groups]
        mu0_z = None if zinfo is None else zinfo["mu0"]
        est, Gm, lvl, lvl_G = _aggregate(masks, T, bT, mu, poisson_scale, mu0_z, zmasks)
        m_ = len(masks)
        sums = None
        if full_delta:
            V_all, scores, det = _full_delta_vcov(out, masks, treated, T, bT, ti, small_sample, zinfo, zmasks)
            V, V_lvl = V_all[:m_, :m_], V_all[m_:, m_:]
            if one_way and det.factors:
                sums = np.sqrt(det.factors[0]) * _sum_by(scores, cl_codes, cl_values.size)[:, :m_]
        else:
            V = Gm @ VT @ Gm.T
            V_lvl = None if lvl_G is None else lvl_G @ VT @ lvl_G.T
            if score_sums is not None:
                sums = np.sqrt(out.details.factors[0]) * (score_sums @ (out.fit.bread[:, ti] @ Gm.T))
        sums_df = None
        if sums is not None:
            sums[:, ~np.isfinite(np.diag(V))] = np.nan
            sums_df = pd.DataFrame(sums, index=pd.Index(cl_values, name=d.cluster_names[0]),
                                   columns=pd.Index(idx, name=index_name))
        with np.errstate(invalid="ignore"):
            tab = make_table(est, np.sqrt(np.clip(np.diag(V), 0, None)), index=idx, df=df_t, alpha=alpha,
                             poisson=poisson, index_name=index_name)
        tab["n_treated"] = [int(m.sum()) + (0 if zmasks is None else int(z.sum())) for m, z in
                            zip(masks, zmasks or [np.zeros(0, dtype=bool)] * len(masks))]
        if lvl is not None and V_lvl is not None:
            tab["att_level"] = lvl
            tab["att_level_std_error"] = np.sqrt(np.clip(np.diag(V_lvl), 0, None))
        return tab, V, sums_df

    def _key(x: float) -> Any:
        return int(x) if float(x).is_integer() else x

    if not post.any():
        raise ValueError(f"no post-adoption cells of {label!r} (period >= cohort)")
    g_all_r = g_r[post] if zinfo is None else np.r_[g_r[post], g_z[t_z >= g_z]]
    t_all_r = t_r[post] if zinfo is None else np.r_[t_r[post], t_z[t_z >= g_z]]
    e_all = e_r if zinfo is None else np.r_[e_r, t_z - g_z]
    aggs: dict[str, tuple[pd.DataFrame, np.ndarray, pd.DataFrame | None]] = {
        "simple": table_of([(label, "post", 0.0)], "term"),
        "group": table_of([(_key(c), "group", c) for c in np.unique(g_all_r)], "cohort"),
        "calendar": table_of([(_key(c), "calendar", c) for c in np.unique(t_all_r)], "period"),
        "event": table_of([(int(k), "event", k) for k in np.unique(e_all)], "rel_period"),
    }
    table, V, _ = aggs[aggregation]
    # cell coefficients
    cell_rows = [(a, b, nm) for (a, b), nm in zip(cells, cell_names) if nm in kept]
    ci = [kept[nm] for *_, nm in cell_rows]
    cell_tab = make_table(out.beta[ci], np.sqrt(np.clip(np.diag(out.vcov)[ci], 0, None)),
                          index=range(len(cell_rows)), df=df_t, alpha=alpha, poisson=poisson)
    cell_tab.index = pd.MultiIndex.from_tuples([(int(a), int(b)) for a, b, _ in cell_rows], names=["cohort", "period"])
    cell_tab.insert(0, "rel_period", [int(b - a) for a, b, _ in cell_rows])
    cell_tab.insert(0, "term", [nm for *_, nm in cell_rows])
    per_cell = np.bincount(rc[rc >= 0], minlength=K)
    cell_tab["n_treated"] = [int(per_cell[cell_index[(a, b)]]) for a, b, _ in cell_rows]
    kind = np.where(cell_tab["rel_period"] >= 0, "post",
                    np.where(cell_tab["rel_period"] >= -anticipation, "anticipation", "placebo"))
    cell_tab["kind"] = kind
    cell_V = out.vcov[np.ix_(ci, ci)]
    placebo = list(cell_tab.loc[cell_tab["kind"] == "placebo", "term"])
    pretrend: Any = None
    if placebo:
        cell_res = EstimationResult(model="etwfe cells", params=pd.Series(out.beta[ci], index=cell_tab["term"].to_list()),
                                    vcov=pd.DataFrame(cell_V, index=cell_tab["term"], columns=cell_tab["term"]),
                                    table=cell_tab, df_t=df_t, alpha=alpha)
        pretrend = (f"not available: {out.details.note}" if not out.details.identified else cell_res.wald_test(
            terms=placebo, hypothesis=f"{len(placebo)} placebo cells (before cohort - {1 + anticipation}) jointly zero"))

    units_tr = d.frame[unit].to_numpy()[treated]
    if d.clusters:
        cl_tr = d.clusters[0][treated]
        n_cl = np.array([np.unique(cl_tr[cell_r == c]).size for c in np.unique(cell_r[post])])
        if (n_cl < 2).any():
            notes.append(f"{int((n_cl < 2).sum())} of {n_cl.size} post-adoption cells have treated rows in a single "
                         f"cluster ({d.cluster_names[0]}): their clustered variance is close to zero and the "
                         "standard errors understate the uncertainty of those cells")
    info = d.info()
    info.update(
        vcov_type=out.details.vcov_type,
        vcov_description=out.details.describe() + (
            "; aggregates by the delta method over all parameters incl. fixed effects (weights held fixed)"
            if full_delta else "; aggregates by the delta method (treated-row weights held fixed)"),
        small_sample=out.details.small_sample,
        df_t=out.details.df_t,
        n_clusters=(None if not out.details.n_clusters
                    else (out.details.n_clusters[0] if len(out.details.n_clusters) == 1 else out.details.n_clusters)),
        dropped_regressors=list(out.dropped_regressors),
    )
    if out.details.eigen_fix:
        notes.append("multi-way cluster covariance was not PSD; negative eigenvalues set to zero")
    if not out.details.identified:
        notes.append(out.details.note)
    if isinstance(out.fit, PPMLFit):
        info.update(converged=bool(out.fit.converged), n_iter=int(out.fit.n_iter),
                    n_separated=int(out.fit.separated.sum()))
        if not out.fit.converged:
            notes.append(f"IRLS did NOT converge in {out.fit.n_iter} iterations; estimates are unreliable")
    if panel.attrs.get("synthetic"):
        notes.append("SYNTHETIC data (simulate_panel)")
    info.update(
        estimator="extended two-way fixed effects (Wooldridge)",
        model=model,
        outcome=outcome,
        treatment=label,
        cohort_source=cohort_source,
        unit=unit,
        time=time,
        fe_level=fe_level,
        control_group=("never-treated and not-yet-treated unit-periods" if control == "notyet"
                       else "never-treated units only"),
        reference_period=("all control periods of each unit (cells from cohort - anticipation on)" if control == "notyet"
                          else f"cohort - {1 + anticipation} (the period before the first cell)"),
        anticipation=int(anticipation),
        covariates=list(covariates),
        n_cells=len(cell_rows),
        n_units=int(d.frame[unit].nunique()),
        pretrend_test=pretrend,
        n_treated_obs=int(post.sum()),
        cohorts={(int(c) if float(c).is_integer() else c): int(pd.unique(units_tr[g_r == c]).size)
                 for c in np.unique(g_r)},
        aggregation=aggregation,
        aggregations={k: v[0] for k, v in aggs.items()},
        cells=cell_tab,
        notes=list(info.get("notes", [])) + notes,
    )
    nonabsorbing_drop.record(info)
    if poisson:
        info["exposure"] = f"log({exposure}) offset" if exposure is not None else "none"
        info["poisson_scale"] = (
            "log(sum mu / sum mu0) over treated rows: pct_effect is the ATT in levels over the counterfactual mean"
            if poisson_scale == "ratio" else "mean log effect over treated rows: pct_effect = 100 (exp(mean) - 1)"
        )
    if aggregation == "event":
        info["overall"] = aggs["simple"][0].iloc[0].to_dict()
    params = pd.Series(table["estimate"].to_numpy(), index=table.index, name="estimate")
    return EstimationResult(
        model=f"etwfe ({model})",
        params=params,
        vcov=pd.DataFrame(V, index=table.index, columns=table.index),
        table=table,
        info=info,
        design={"outcome": outcome, "treatment": label, "fixed_effects": list(fe_spec), "cluster": cluster,
                "estimator": "etwfe", "regressors": names},
        df_t=df_t,
        alpha=alpha,
        extra={
            "fit": out.fit,
            "design": d,
            "fit_output": out,
            "cell_vcov": pd.DataFrame(cell_V, index=cell_tab["term"], columns=cell_tab["term"]),
            "aggregation_vcov": {k: v[1] for k, v in aggs.items()},
            "event_vcov": pd.DataFrame(aggs["event"][1], index=aggs["event"][0].index,
                                       columns=aggs["event"][0].index),
            "influence_sums": (None if not one_way else
                               {"cluster": d.cluster_names[0], "n_clusters": int(cl_values.size),
                                "sums": {k: v[2] for k, v in aggs.items()}}),
            "sample_index": d.frame.index,
            "call": {"func": etwfe, "panel": panel,
                     "kwargs": {"treatment": treatment, "model": model, "outcome": outcome, "exposure": exposure,
                                "unit": unit, "time": time, "cohort": cohort, "cluster": cluster, "control": control,
                                "fe_level": fe_level, "covariates": tuple(covariates), "anticipation": anticipation,
                                "aggregation": aggregation, "poisson_scale": poisson_scale,
                                "small_sample": small_sample, "tol": tol, "alpha": alpha,
                                "nonabsorbing": nonabsorbing}},
        },
    )
