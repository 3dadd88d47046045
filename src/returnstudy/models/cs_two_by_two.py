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
* :func:`covariate_cross_section`: the Sant'Anna–Zhao repeated-cross-section estimators with
  covariates (``"reg"``, standardized ``"ipw"``, locally efficient ``"dr"``), used for
  unbalanced panels with covariates; influence values per observation;
* :func:`poisson_panel`: the Poisson (log-ratio) 2x2 with an exposure offset.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["unconditional_panel", "covariate_panel", "unconditional_unbalanced", "covariate_cross_section",
           "poisson_panel",
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
    from statsmodels.genmod import families  # imported here: only covariate estimators need it
    from statsmodels.genmod.generalized_linear_model import GLM

    fit = GLM(D, X, family=families.Binomial()).fit(tol=1e-12, maxiter=200)
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


def _ols_group(y: np.ndarray, X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fitted values (all rows) of OLS of y on X among rows with w = 1, and its asymptotic linear representation."""
    Xw = X * w[:, None]
    if np.linalg.matrix_rank(Xw[w > 0]) < X.shape[1]:
        raise ValueError("covariates are collinear within a group-period of a 2x2; drop or combine covariates")
    XtX = Xw.T @ X
    fitted = X @ np.linalg.solve(XtX, Xw.T @ y)
    lin_rep = (X * (w * (y - fitted))[:, None]) @ np.linalg.inv(XtX / y.size)
    return fitted, lin_rep


def covariate_cross_section(
    y: np.ndarray, post: np.ndarray, D: np.ndarray, X: np.ndarray, method: str
) -> tuple[float, np.ndarray]:
    """Sant'Anna–Zhao (2020) repeated-cross-section 2x2 ATT with covariates; observation-level influence.

    One row per observation: outcome ``y``, ``post`` (1: period t, 0: base period), treated
    ``D`` and covariates ``X`` (constant included). ``"reg"``: control outcome regressions per
    period imputed for the treated; ``"ipw"``: Hajek-normalized odds weights per period;
    ``"dr"``: the locally efficient doubly robust estimator (outcome regressions for treated and
    controls in both periods). Returns the ATT and influence values ``IF`` with
    ``att - ATT ~ mean(IF)`` (so ``IF / n`` are sum-scaled).
    """
    if method not in EST_METHODS:
        raise ValueError(f"est_method={method!r}: expected one of {list(EST_METHODS)}")
    n = y.size
    post = post.astype(float)
    D = D.astype(float)
    C0, C1 = (1 - D) * (1 - post), (1 - D) * post
    T0, T1 = D * (1 - post), D * post
    if method == "reg":
        m0, lin0 = _ols_group(y, X, C0)
        m1, lin1 = _ols_group(y, X, C1)
        eta_t1 = np.mean(T1 * y) / np.mean(T1)
        eta_t0 = np.mean(T0 * y) / np.mean(T0)
        eta_c = np.mean(D * (m1 - m0)) / np.mean(D)
        inf_t = (T1 * y - T1 * eta_t1) / np.mean(T1) - (T0 * y - T0 * eta_t0) / np.mean(T0)
        dmu = np.mean(D[:, None] * X, axis=0)
        inf_c = (D * (m1 - m0) - D * eta_c + lin1 @ dmu - lin0 @ dmu) / np.mean(D)
        return float(eta_t1 - eta_t0 - eta_c), inf_t - inf_c
    ps, hess_inv = _logit(D, X)
    ps = np.maximum(ps, 1e-6)
    keep = np.where(D == 1, 1.0, (ps < PS_TRIM).astype(float))
    lin_ps = ((D - ps)[:, None] * X) @ hess_inv
    odds = ps / (1.0 - ps)
    w_t0, w_t1 = keep * T0, keep * T1
    w_c0, w_c1 = keep * odds * C0, keep * odds * C1

    def hajek(w: np.ndarray, v: np.ndarray) -> tuple[float, np.ndarray]:
        m = float(np.mean(w * v) / np.mean(w))
        return m, (w * v - w * m) / np.mean(w)

    if method == "ipw":
        a_t1, i_t1 = hajek(w_t1, y)
        a_t0, i_t0 = hajek(w_t0, y)
        a_c1, i_c1 = hajek(w_c1, y)
        a_c0, i_c0 = hajek(w_c0, y)
        mom = (np.mean((w_c1 * (y - a_c1))[:, None] * X, axis=0) / np.mean(w_c1)
               - np.mean((w_c0 * (y - a_c0))[:, None] * X, axis=0) / np.mean(w_c0))
        inf = (i_t1 - i_t0) - (i_c1 - i_c0 + lin_ps @ mom)
        return float((a_t1 - a_t0) - (a_c1 - a_c0)), inf
    mc0, lin_c0 = _ols_group(y, X, C0)
    mc1, lin_c1 = _ols_group(y, X, C1)
    mt0, lin_t0 = _ols_group(y, X, T0)
    mt1, lin_t1 = _ols_group(y, X, T1)
    mc = post * mc1 + (1 - post) * mc0
    r = y - mc
    a_t1, i_t1 = hajek(w_t1, r)
    a_t0, i_t0 = hajek(w_t0, r)
    a_c1, i_c1 = hajek(w_c1, r)
    a_c0, i_c0 = hajek(w_c0, r)
    w_d, w_d1, w_d0 = keep * D, keep * T1, keep * T0
    a_d1, i_d1 = hajek(w_d, mt1 - mc1)
    a_dt1, i_dt1 = hajek(w_d1, mt1 - mc1)
    a_d0, i_d0 = hajek(w_d, mt0 - mc0)
    a_dt0, i_dt0 = hajek(w_d0, mt0 - mc0)
    att = (a_t1 - a_t0) - (a_c1 - a_c0) + (a_d1 - a_dt1) - (a_d0 - a_dt0)
    # treated part: estimation effect of the control regressions used in the residuals
    inf_t_or = (lin_c1 @ (-np.mean((w_t1 * post)[:, None] * X, axis=0) / np.mean(w_t1))
                + lin_c0 @ (-np.mean((w_t0 * (1 - post))[:, None] * X, axis=0) / np.mean(w_t0)))
    inf_t = i_t1 - i_t0 + inf_t_or
    # control part: propensity score and control regressions
    mom_ps = (np.mean((w_c1 * (r - a_c1))[:, None] * X, axis=0) / np.mean(w_c1)
              - np.mean((w_c0 * (r - a_c0))[:, None] * X, axis=0) / np.mean(w_c0))
    inf_c_or = (lin_c1 @ (-np.mean((w_c1 * post)[:, None] * X, axis=0) / np.mean(w_c1))
                + lin_c0 @ (-np.mean((w_c0 * (1 - post))[:, None] * X, axis=0) / np.mean(w_c0)))
    inf_c = i_c1 - i_c0 + lin_ps @ mom_ps + inf_c_or
    # efficiency terms: treated-group regressions against the control ones
    inf_eff = (i_d1 - i_dt1) - (i_d0 - i_dt0)
    mom1 = np.mean((w_d / np.mean(w_d) - w_d1 / np.mean(w_d1))[:, None] * X, axis=0)
    mom0 = np.mean((w_d / np.mean(w_d) - w_d0 / np.mean(w_d0))[:, None] * X, axis=0)
    inf_or = (lin_t1 - lin_c1) @ mom1 - (lin_t0 - lin_c0) @ mom0
    return float(att), inf_t - inf_c + inf_eff + inf_or


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
