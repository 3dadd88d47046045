"""The 2x2 difference-in-differences behind each Callaway–Sant'Anna ATT(g, t), with influence functions.

Every function returns ``(att, psi)`` where ``psi`` holds one influence value per unit of
the full panel (zero for units outside the 2x2), scaled so that ``att - ATT`` is
approximately ``sum_i psi_i`` (sum scaling: ``psi_i = IF_i / n`` for the ``n`` units of the
2x2). Summing ``psi`` within clusters and squaring gives the clustered variance.

* :func:`unconditional_panel`: difference of mean changes (no covariates);
* :func:`covariate_panel`: Sant'Anna & Zhao (2020, *J. Econometrics*) panel estimators with
  time-invariant covariates: outcome regression (``"reg"``), standardized inverse probability
  weighting (``"ipw"``) and the doubly robust estimator (``"dr"``) — the estimators the R
  packages *DRDID*/*did* call with ``est_method = "reg" / "ipw" / "dr"``, including the
  estimation effects of the first-step logit and OLS fits in the influence function;
* :func:`unconditional_unbalanced`: repeated-cross-section 2x2 of four period means on an
  unbalanced panel (R *did*'s ``allow_unbalanced_panel = TRUE`` without covariates), with
  the observation-level influence values summed within units;
* :func:`poisson_panel`: the Poisson (log-ratio) 2x2 with an exposure offset.
"""

from __future__ import annotations

import logging

import numpy as np
import statsmodels.api as sm

logger = logging.getLogger(__name__)

__all__ = ["unconditional_panel", "covariate_panel", "unconditional_unbalanced", "poisson_panel",
           "EST_METHODS", "PS_TRIM"]

EST_METHODS = ("reg", "ipw", "dr")
#: control units with a propensity score at or above this level get zero weight (as DRDID's trim.level)
PS_TRIM = 0.995


def unconditional_panel(dY: np.ndarray, T_m: np.ndarray, C_m: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean change of the treated minus mean change of the controls (units observed in both years)."""
    nT_, nC_ = int(T_m.sum()), int(C_m.sum())
    mT, mC = dY[T_m].mean(), dY[C_m].mean()
    psi = np.zeros(dY.size)
    psi[T_m] = (dY[T_m] - mT) / nT_
    psi[C_m] = -(dY[C_m] - mC) / nC_
    return float(mT - mC), psi


def _logit(D: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Propensity scores of a logit of D on X (maximum likelihood) and n times its inverse Hessian."""
    fit = sm.GLM(D, X, family=sm.families.Binomial()).fit(tol=1e-12, maxiter=200)
    ps = np.asarray(fit.fittedvalues, dtype=float)
    W = ps * (1.0 - ps)
    hess_inv = np.linalg.inv((X * W[:, None]).T @ X / D.size)
    return np.minimum(ps, 1.0 - 1e-6), hess_inv


def _ols_controls(dY: np.ndarray, X: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fitted changes from OLS of dY on X among controls and the OLS asymptotic linear representation."""
    w = 1.0 - D
    XtX = (X * w[:, None]).T @ X
    beta = np.linalg.solve(XtX, (X * w[:, None]).T @ dY)
    fitted = X @ beta
    n = dY.size
    lin_rep = (X * (w * (dY - fitted))[:, None]) @ np.linalg.inv(XtX / n)
    return fitted, lin_rep


def covariate_panel(
    dY: np.ndarray, X: np.ndarray, T_m: np.ndarray, C_m: np.ndarray, method: str
) -> tuple[float, np.ndarray]:
    """Sant'Anna–Zhao (2020) panel 2x2 ATT with covariates ``X`` (units x k, constant included).

    ``dY`` and ``X`` are over all units; only ``T_m | C_m`` enter. ``method``: ``"reg"``
    (outcome regression of the controls' change on X, imputed for the treated), ``"ipw"``
    (Hajek-normalized odds weights ``p(X) / (1 - p(X))`` on the controls) or ``"dr"``
    (both: weighted controls' residual changes). Controls with ``p(X) >= 0.995`` are trimmed
    (zero weight), as in R's *DRDID*.
    """
    if method not in EST_METHODS:
        raise ValueError(f"est_method={method!r}: expected one of {list(EST_METHODS)}")
    sub = np.flatnonzero(T_m | C_m)
    n = sub.size
    y = dY[sub]
    D = T_m[sub].astype(float)
    Xs = X[sub]
    if np.linalg.matrix_rank(Xs[D == 0]) < Xs.shape[1]:
        raise ValueError("covariates are collinear among the control units of a 2x2; drop or combine covariates")
    psi = np.zeros(dY.size)
    if method == "reg":
        fitted, lin_ols = _ols_controls(y, Xs, D)
        w_t = D
        eta_t = np.mean(w_t * y) / np.mean(w_t)
        eta_c = np.mean(w_t * fitted) / np.mean(w_t)
        inf_t = (w_t * y - w_t * eta_t) / np.mean(w_t)
        inf_c1 = w_t * fitted - w_t * eta_c
        inf_c2 = lin_ols @ np.mean(w_t[:, None] * Xs, axis=0)
        inf = inf_t - (inf_c1 + inf_c2) / np.mean(w_t)
        psi[sub] = inf / n
        return float(eta_t - eta_c), psi
    ps, hess_inv = _logit(D, Xs)
    keep = np.where(D == 1, 1.0, (ps < PS_TRIM).astype(float))
    lin_ps = ((D - ps)[:, None] * Xs) @ hess_inv
    w_t = keep * D
    w_c = keep * ps * (1.0 - D) / (1.0 - ps)
    if method == "ipw":
        eta_t = np.mean(w_t * y) / np.mean(w_t)
        eta_c = np.mean(w_c * y) / np.mean(w_c)
        inf_t = (w_t * y - w_t * eta_t) / np.mean(w_t)
        inf_c1 = w_c * y - w_c * eta_c
        inf_c2 = lin_ps @ np.mean((w_c * (y - eta_c))[:, None] * Xs, axis=0)
        inf = inf_t - (inf_c1 + inf_c2) / np.mean(w_c)
        psi[sub] = inf / n
        return float(eta_t - eta_c), psi
    fitted, lin_ols = _ols_controls(y, Xs, D)
    r = y - fitted
    eta_t = np.mean(w_t * r) / np.mean(w_t)
    eta_c = np.mean(w_c * r) / np.mean(w_c)
    inf_t1 = w_t * r - w_t * eta_t
    inf_t2 = lin_ols @ np.mean(w_t[:, None] * Xs, axis=0)
    inf_t = (inf_t1 - inf_t2) / np.mean(w_t)
    inf_c1 = w_c * r - w_c * eta_c
    inf_c2 = lin_ps @ np.mean((w_c * (r - eta_c))[:, None] * Xs, axis=0)
    inf_c3 = lin_ols @ np.mean(w_c[:, None] * Xs, axis=0)
    inf_c = (inf_c1 + inf_c2 - inf_c3) / np.mean(w_c)
    psi[sub] = (inf_t - inf_c) / n
    return float(eta_t - eta_c), psi


def unconditional_unbalanced(
    yt: np.ndarray, yb: np.ndarray, T_m: np.ndarray, C_m: np.ndarray
) -> tuple[float, np.ndarray] | None:
    """Four period means on an unbalanced panel: (mean_T,t - mean_T,b) - (mean_C,t - mean_C,b).

    Each mean uses every unit of its group observed in that year (NaN: not observed). The
    influence value of a unit is the sum of its observations' ``sign (y - mean) / n_cell``,
    so units observed in both years carry the covariance of their two observations.
    Returns None if a group has no observation in one of the two years.
    """
    psi = np.zeros(yt.size)
    att = 0.0
    for grp, sign_g in ((T_m, 1.0), (C_m, -1.0)):
        for y, sign_t in ((yt, 1.0), (yb, -1.0)):
            m = grp & ~np.isnan(y)
            if not m.any():
                return None
            mean = float(y[m].mean())
            att += sign_g * sign_t * mean
            psi[m] += sign_g * sign_t * (y[m] - mean) / m.sum()
    return att, psi


def poisson_panel(
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
    # dominates its cohort (documented in callaway_santanna's module docstring).
    R = A / B
    h_c = np.clip((n * pi * (1 - pi))[C_m] / H, 0.0, 0.99)
    psi = np.zeros(yt.size)
    psi[T_m] = (yt[T_m] - R * (q * yb)[T_m]) / A
    psi[C_m] = -(yct - n * pi)[C_m] / H / np.sqrt(1.0 - h_c)
    return float(np.log(A) - np.log(B) - lr), psi
