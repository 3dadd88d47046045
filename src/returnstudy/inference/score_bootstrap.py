"""Score (wild) cluster bootstrap for Poisson results (Kline & Santos 2012).

Re-estimating a Poisson model with absorbed fixed effects for every draw is what the
peers avoid; the score bootstrap perturbs the estimating equations instead.

**PPML and Poisson event studies** (``ppml``, ``event_study(model="ppml")``). For a
coefficient ``b_j`` and the null ``b_j = b0``:

1. *Restricted fit*: PPML with ``b_j`` fixed at ``b0`` (``offset + b0 x_j``), every other
   coefficient and fixed effect re-estimated (the package's own :func:`fit_ppml`), giving
   fitted means ``mu~``.
2. *Linearisation at the restricted estimate*: working weights ``w = omega mu~``
   (``omega``: the fit's weights, 1 if none), score contributions ``x_i omega_i (y_i - mu~_i)``,
   Hessian ``X' W X``. Fixed effects nested in the bootstrap clusters are partialled out
   with weights ``w`` (exact: their scores vanish in every cluster); non-nested ones (year
   effects) are explicit columns, as in the linear wild bootstrap.
3. *Draws*: with one weight ``v_g`` per cluster the perturbed score ``S* = sum_g v_g S_g``
   gives the one-step estimate ``theta* = H^-1 S*`` (``b*_j = b0 + theta*_j``) and the
   bootstrap cluster scores ``v_g S_g - H_g theta*``; their CRV1 norm (the fit's small-sample
   factor ``G/(G-1) (n-1)/(n-K)``) is ``se*`` and ``t* = theta*_j / se*``. No refit per draw:
   each draw costs O(G k).
4. ``p = mean(|t*| >= |t|)``; the observed statistic ``t`` is the same function of the
   scores at ``v = 1`` in every cluster: the t statistic of one Newton step from the
   restricted estimate with its CRV1 standard error, a cluster-robust score (Rao-type)
   statistic, as boottest compares after ML estimation. For least squares it equals the
   Wald t exactly; for Poisson it is close to the Wald t near the estimate and, unlike the
   Wald t, is computed in the same linearised model as the draws. It is in the table as
   ``boot_statistic``.

For least squares these steps are exactly the WCR bootstrap-t (Kline & Santos show the
equivalence; the draws use the same algebra as the linear code,
:func:`~returnstudy.inference.bootstrap.bootstrap_tstats`). ``impose_null=False`` linearises
at the unrestricted estimate (no refit): ``t* = (b* - b_hat) / se*`` against the Wald
``t = (b_hat - b0) / se(b_hat)`` of the fit, percentile-t interval.

*Confidence intervals* by test inversion: the set of ``b0`` whose bootstrap p-value
exceeds ``alpha``, with the same draws for every ``b0`` (boottest reports no interval after
ML estimation; this one follows the same inversion as the linear bootstrap). Each candidate ``b0`` costs one
restricted PPML fit (IRLS with all fixed effects: about the cost of the original fit)
plus O(rows x k) for the scores; the endpoints are bracketed from the Wald interval
outward (or inward) and refined by Brent's method on the continuous gap between ``|t(b0)|``
and the bootstrap critical value ``c(b0)`` (``p(b0) > alpha`` exactly when ``|t| < c``), to
``ci_tol`` standard errors: typically 5-8 restricted fits per endpoint.

**Poisson imputation** (``did_imputation(model="poisson")``): the estimator is
``log(sum Y / sum mu0)``; its influence function (treated term plus the first-stage
Poisson fit) is stored by the estimator. The score bootstrap is the multiplier bootstrap
of its cluster sums ``C_g``: ``tau* - tau = sum_g v_g C_g`` (centred on the estimate, not
studentized, like the linear imputation bootstrap), ``p = mean(|tau* - tau| >= |tau - b0|)``;
the interval inverts that test in closed form (``tau +- `` the ``ceil((1 - alpha) B)``-th
smallest ``|tau* - tau|``).

**Extended TWFE** (``etwfe``, linear and Poisson; :func:`influence_bootstrap`): every aggregate
(simple, group, calendar or event-time ATT; for Poisson ``log(sum mu / sum mu0)``, a nonlinear
function of the cell coefficients and, on the ratio scale, of the fixed effects) has the influence
function ``scores x bread x gradient`` of its delta method; the estimator stores its cluster sums
``C_g`` scaled by the square root of the clustered small-sample factor (``sum_g C_g^2`` is the
reported variance). The same multiplier bootstrap as for Poisson imputation: ``tau* - tau =
sum_g v_g C_g``, unrestricted (centred on the estimate, not studentized), closed-form test
inversion.

Weights: Rademacher or Webb's six-point; with at most 12 clusters and Rademacher weights
every ``2**G`` sign vector is used (see :func:`~returnstudy.inference.bootstrap.make_draws`).
The table reports ``boot_p_value``, ``boot_ci_low``/``boot_ci_high`` (log scale) and
``boot_pct_ci_low``/``boot_pct_ci_high`` (percent change in the rate, ``100 (exp(b) - 1)``).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from returnstudy._progress import progress as _progress
from returnstudy.inference.bootstrap import (
    BootstrapDraws,
    _cluster_sum,
    _weight_values,
    bootstrap_tstats,
    dependent_columns_gram,
    finish_bootstrap,
    make_draws,
)
from returnstudy.models._fe import ConvergenceWarning, FixedEffects, PPMLFit, fit_ppml
from returnstudy.results import EstimationResult

logger = logging.getLogger(__name__)

__all__ = ["influence_bootstrap", "is_etwfe_result", "is_poisson_result", "score_bootstrap"]


def is_etwfe_result(result: EstimationResult) -> bool:
    """True for extended TWFE results (bootstrapped through their aggregates' influence functions)."""
    return isinstance(getattr(result, "design", None), dict) and result.design.get("estimator") == "etwfe"


def _multiplier_test(
    c: np.ndarray, tau: float, null: float, alpha: float, bw: BootstrapDraws, ci: bool,
) -> tuple[float, np.ndarray, float, float]:
    """Multiplier bootstrap of an estimate ``tau`` with cluster influence sums ``c`` (G,):
    ``tau* - tau = c'v`` per draw, ``p = mean(|tau* - tau| >= |tau - null|)`` and the interval of
    nulls not rejected at ``alpha`` in closed form, ``tau +- `` the ``(floor(alpha B) + 1)``-th
    largest ``|tau* - tau|``. Returns (p, tau* per draw, ci low, ci high; NaN without ``ci``)."""
    dev = bw.dot(c)
    p = float(np.mean(np.abs(dev) >= abs(tau - null) - 1e-12))
    lo = hi = np.nan
    if ci:
        a_dev = np.sort(np.abs(dev))
        k = int(np.floor(alpha * a_dev.size + 1e-9))  # p(b0) > alpha <=> |tau - b0| <= (k+1)-th largest
        half = a_dev[a_dev.size - 1 - k] if k < a_dev.size else 0.0
        lo, hi = tau - half, tau + half
    return p, tau + dev, lo, hi


def is_poisson_result(result: EstimationResult) -> bool:
    """True for results the score bootstrap handles (PPML fits, Poisson event studies, Poisson imputation)."""
    if isinstance(result.extra.get("fit"), PPMLFit):
        return True
    return str(result.model) == "did_imputation (poisson)" and result.extra.get("influence") is not None


# --------------------------------------------------------------------------- PPML path
@dataclasses.dataclass
class PoissonScoreProblem:
    """Arrays of a PPML fit needed to linearise it at any null value of one coefficient.

    ``X`` holds the estimated regressors (collinear ones removed), ``offset`` the exposure
    offset (zeros without exposure), ``omega`` the fit's weights (None: unweighted),
    ``cl`` the bootstrap cluster codes 0..G-1.
    """

    y: np.ndarray
    X: np.ndarray
    names: list[str]
    offset: np.ndarray
    omega: np.ndarray | None
    fe: FixedEffects | None
    cl: np.ndarray
    G: int
    beta: np.ndarray
    mu: np.ndarray
    ssc: float
    se: np.ndarray
    tol: float = 1e-10
    n_restricted_fits: int = 0
    _nested: FixedEffects | None = None
    _explicit: np.ndarray | None = None
    _cache: dict[tuple[int, float | None], tuple[np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(
        default_factory=dict)

    def __post_init__(self) -> None:
        fx = self.fe
        explicit: list[np.ndarray] = []
        nested_fx = None
        if fx is not None and fx.n_dims:
            nested = fx.nested_in(self.cl)
            nested_fx = FixedEffects([c for c, f in zip(fx.codes, nested) if f],
                                     [n for n, f in zip(fx.names, nested) if f])
            for c, f, g in zip(fx.codes, nested, fx.n_levels):
                if f:
                    continue
                if g > 2000:
                    raise ValueError(
                        f"score bootstrap: a fixed effect with {g} levels is not nested in the bootstrap clusters; "
                        "cluster at a level containing it")
                D = np.zeros((c.size, g))
                D[np.arange(c.size), c] = 1.0
                explicit.append(D[:, 1:] if (nested_fx.n_dims or explicit) else D)
            if not nested_fx.n_dims:
                nested_fx = None
        self._nested = nested_fx
        self._explicit = np.column_stack(explicit) if explicit else None

    @property
    def n_obs(self) -> int:
        return int(self.y.size)

    def restricted_mu(self, j: int, b0: float) -> np.ndarray:
        """Fitted means of the PPML with coefficient ``j`` fixed at ``b0`` (others and FE re-estimated)."""
        Xo = np.delete(self.X, j, axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                f = fit_ppml(self.y, Xo, self.fe, offset=self.offset + b0 * self.X[:, j], weights=self.omega,
                             tol=self.tol, separation=())
            except ConvergenceWarning as exc:
                raise RuntimeError(f"score bootstrap: restricted PPML fit at {self.names[j]} = {b0:g} "
                                   f"did not converge ({exc})") from exc
        self.n_restricted_fits += 1
        if f.keep.sum() != self.n_obs:
            raise RuntimeError("score bootstrap: the restricted fit dropped observations")
        return f.mu

    def parts(self, j: int, b0: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(p, R, C) of coefficient ``j`` linearised at the fit restricted to ``b_j = b0``
        (``b0=None``: at the unrestricted estimate), as :func:`bootstrap_tstats` takes them."""
        key = (j, b0)
        if key in self._cache:
            return self._cache[key]
        mu = self.mu if b0 is None else self.restricted_mu(j, b0)
        om = np.ones_like(mu) if self.omega is None else self.omega
        w = om * mu
        Z = self.X if self._explicit is None else np.column_stack([self.X, self._explicit])
        Zt = self._nested.demean(Z, weights=w) if self._nested is not None else Z
        sw = np.sqrt(w)[:, None]
        k = self.X.shape[1]
        if Zt.shape[1] > k:  # explicit dummies collinear with the nested effects or each other
            drop = dependent_columns_gram(Zt[:, k:] * sw, Z[:, k:] * sw)
            Zt = np.column_stack([Zt[:, :k], Zt[:, k:][:, ~drop]])
        Xs = Zt * sw
        A = np.linalg.inv(Xs.T @ Xs)
        a = A[j]
        C = _cluster_sum(Zt * (om * (self.y - mu))[:, None], self.cl, self.G)  # cluster score sums S_g
        R = _cluster_sum(Zt * (w * (Zt @ a))[:, None], self.cl, self.G) @ A  # rows A H_g a
        out = (C @ a, R, C)
        self._cache[key] = out
        return out

    def tstats(self, j: int, b0: float | None, draws: BootstrapDraws) -> np.ndarray:
        p, R, C = self.parts(j, b0)
        return bootstrap_tstats(p, R, C, self.ssc, draws)

    def score_t(self, j: int, b0: float) -> float:
        """Observed statistic for the null ``b_j = b0``: the bootstrap statistic at ``v = 1`` in every
        cluster, i.e. the t statistic of one Newton step from the restricted estimate with its
        clustered (CRV1) standard error (a robust score/Rao-type statistic; for least squares it
        is exactly the Wald t)."""
        p, R, C = self.parts(j, b0)
        T = p - R @ C.sum(axis=0)
        return float(p.sum() / np.sqrt(self.ssc * np.sum(T * T)))


def _problem_from_result(result: EstimationResult, cluster: str | None) -> tuple[PoissonScoreProblem, str]:
    """Rebuild the PPML estimation arrays of ``result`` (a ppml or event_study(model='ppml') result)."""
    full = result.extra.get("full_result", result)
    fit, design = full.extra.get("fit"), full.extra.get("design")
    if not isinstance(fit, PPMLFit) or design is None:
        raise TypeError(f"score bootstrap: result of model {result.model!r} is not a PPML fit")
    from returnstudy.models._design import fe_codes

    if cluster is None:
        if not design.clusters:
            raise ValueError("score bootstrap: the result is not clustered; pass cluster=<column>")
        if len(design.clusters) > 1:
            raise ValueError("score bootstrap: multi-way clustering is not supported; pass one cluster column")
        cl_raw, cl_name = design.clusters[0], " x ".join(design.cluster_names)
    else:
        if cluster not in design.frame.columns and "^" not in cluster:
            raise KeyError(f"cluster column {cluster!r} not in the estimation sample; "
                           f"available: {list(design.frame.columns)}")
        cl_raw, cl_name = fe_codes(design.frame, cluster), cluster
    cl, _ = pd.factorize(cl_raw)
    G = int(cl.max()) + 1
    if G < 2:
        raise ValueError("score bootstrap: need at least 2 clusters")
    if design.n_obs != fit.y.size:
        raise RuntimeError("score bootstrap: design and fit have different numbers of rows")
    keep_cols = ~fit.dropped_columns
    X = np.asarray(design.X, dtype=float)[:, keep_cols]
    names = [r for r, d in zip(design.regressors, fit.dropped_columns) if not d]
    exposure = result.design.get("exposure")
    exposure_as = result.design.get("exposure_as", "offset")
    offset = np.zeros(design.n_obs)
    if exposure is not None and exposure_as == "offset":
        col = f"log_{exposure}"
        if col not in design.frame.columns:
            raise RuntimeError(f"score bootstrap: offset column {col!r} missing from the estimation sample")
        offset = design.frame[col].to_numpy(dtype=float)
    omega = None if design.weights is None else np.asarray(design.weights, dtype=float).ravel()
    beta = full.params.reindex(names).to_numpy(dtype=float)
    # the stored fit must be reproduced by its arrays (guards against a mismatched offset or sample)
    check = fit_ppml(design.y, X, design.fe, offset=offset, weights=omega, tol=1e-10, separation=())
    if not np.allclose(check.beta, beta, rtol=1e-6, atol=1e-7 * max(1.0, float(np.max(np.abs(beta))))):
        raise RuntimeError("score bootstrap: re-estimated coefficients differ from the result; cannot bootstrap")
    n = design.n_obs
    df_k = int(full.info.get("df_k", X.shape[1]))
    ssc = (G / (G - 1)) * ((n - 1) / max(n - df_k, 1))
    # clustered SE of the unrestricted fit with the same factor (equal to the result's with its own cluster)
    Cu = _cluster_sum(fit.scores, cl, G) @ fit.bread
    se = np.sqrt(ssc * np.sum(Cu**2, axis=0))
    prob = PoissonScoreProblem(y=np.asarray(design.y, dtype=float), X=X, names=names, offset=offset, omega=omega,
                               fe=design.fe, cl=cl, G=G, beta=check.beta, mu=check.mu, ssc=ssc, se=se)
    return prob, cl_name


#: Test inversion stops searching outward at this many standard errors from the estimate and
#: reports that side of the interval as unbounded (for a log rate ratio, 50 SE is far beyond any
#: effect the data could inform).
MAX_CI_HALF_WIDTH_SE = 50.0


def _not_rejected(gap: Callable[[float], float], b0: float) -> bool:
    """True if ``b0`` is inside the interval; a restricted fit that fails so far out (the fitted
    means overflow or the IRLS does not converge at an extreme null) counts as not rejected, so
    that side of the interval is reported as unbounded rather than guessed."""
    try:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return gap(b0) < 0
    except (ValueError, RuntimeError, FloatingPointError, np.linalg.LinAlgError) as exc:
        logger.warning("score bootstrap interval: restricted fit failed at %g (%s); that side is reported unbounded",
                       b0, exc)
        return True


def _invert_by_refits(gap: Callable[[float], float], est: float, se: float, alpha: float,
                      ci_tol: float) -> tuple[float, float]:
    """Endpoints of the interval {b0 : p(b0) > alpha}, every evaluation a restricted refit.

    ``gap(b0) = |t(b0)| - c(b0)``, with ``c`` the ``(floor(alpha B) + 1)``-th largest ``|t*|`` at
    ``b0``: ``p(b0) > alpha`` exactly when ``gap(b0) < 0`` (up to ties), and unlike the
    step-function p-value the gap is continuous in ``b0``, so Brent's method converges in a
    few evaluations. Bracketing starts at the Wald endpoint and moves outward in steps of
    0.5, 1, 2, ... SE while not rejected (up to ``MAX_CI_HALF_WIDTH_SE`` SE; beyond, or where
    the restricted fit fails, that side is unbounded), or inward by halving towards the estimate while
    rejected; the root is refined to ``ci_tol`` SE.
    """
    z = float(stats.norm.ppf(1 - alpha / 2))
    out = []
    for sign in (-1.0, 1.0):
        start = est + sign * z * se
        g_start = gap(start)
        if g_start < 0:
            inner, step, outer = start, 0.5 * se, start + sign * 0.5 * se
            it = 0
            while _not_rejected(gap, outer) and abs(outer - est) < MAX_CI_HALF_WIDTH_SE * se:
                inner, step = outer, 2 * step
                outer = outer + sign * step
                it += 1
            if _not_rejected(gap, outer):
                out.append(sign * np.inf)
                continue
        else:
            outer, inner = start, est + sign * 0.5 * z * se
            it = 0
            while gap(inner) >= 0 and it < 12:
                outer, inner = inner, est + (inner - est) / 2
                it += 1
            if gap(inner) >= 0:
                out.append(est)
                continue
        lo, hi = min(inner, outer), max(inner, outer)
        out.append(float(optimize.brentq(gap, lo, hi, xtol=ci_tol * se)))
    return out[0], out[1]


# --------------------------------------------------------------------------- public API
def score_bootstrap(
    result: EstimationResult,
    reps: int = 999,
    weights: str = "rademacher",
    seed: int | None = None,
    impose_null: bool = True,
    cluster: str | None = None,
    terms: Sequence[Any] | None = None,
    null: float = 0.0,
    ci: bool = True,
    alpha: float | None = None,
    full_enumeration: bool | None = None,
    ci_tol: float = 1e-3,
) -> EstimationResult:
    """Score cluster bootstrap (Kline-Santos) p-values and intervals for a Poisson result.

    Arguments as :func:`~returnstudy.inference.bootstrap.wild_bootstrap` (which calls this
    for Poisson results). ``null`` and the intervals are on the coefficient (log) scale;
    ``ci_tol`` is the precision of the interval endpoints in standard errors.

    Returns a copy of ``result`` whose table gains ``boot_p_value``, ``boot_ci_low``,
    ``boot_ci_high`` (log scale) and ``boot_pct_ci_low``, ``boot_pct_ci_high``
    (``100 (exp(b) - 1)``: percent change in the rate); ``info["wild_bootstrap"]`` holds
    the settings (including ``n_restricted_fits``), ``extra["bootstrap_draws"]`` the
    bootstrap statistics (t* for PPML, tau* for imputation) at ``null``.
    """
    if reps < 9:
        raise ValueError(f"reps={reps}: need at least 9 draws")
    _weight_values(weights)
    if is_etwfe_result(result):
        return influence_bootstrap(result, reps=reps, weights=weights, seed=seed, impose_null=impose_null,
                                   cluster=cluster, terms=terms, null=null, ci=ci, alpha=alpha,
                                   full_enumeration=full_enumeration)
    if not is_poisson_result(result):
        raise TypeError(f"score bootstrap: result of model {result.model!r} is not a Poisson result "
                        "(supported: ppml, event_study(model='ppml'), did_imputation(model='poisson'), "
                        "etwfe(model='poisson'))")
    alpha = result.alpha if alpha is None else float(alpha)
    rng = np.random.default_rng(seed)
    table = result.table.copy()
    pvals: dict[Any, float] = {}
    lows: dict[Any, float] = {}
    highs: dict[Any, float] = {}
    draws: dict[Any, np.ndarray] = {}
    stat: dict[Any, float] = {}
    settings: dict[str, Any]
    if result.extra.get("influence") is not None and not isinstance(result.extra.get("fit"), PPMLFit):
        psi = np.asarray(result.extra["influence"], dtype=float)
        names_psi = list(result.params.index)[-psi.shape[1]:]
        cl_col = result.design.get("cluster")
        if cl_col is None:
            raise ValueError("score bootstrap: the imputation result was estimated without clusters")
        if cluster is not None and cluster != cl_col:
            raise ValueError(f"score bootstrap: for imputation results the cluster is the one used in estimation "
                             f"({cl_col!r}), got {cluster!r}")
        from returnstudy.models._design import fe_codes

        panel = result.extra["call"]["panel"]
        cl, _ = pd.factorize(fe_codes(panel.loc[result.extra["sample_index"]], cl_col))
        G = int(cl.max()) + 1
        Cs = _cluster_sum(psi, cl, G)
        bw = make_draws(rng, G, reps, weights, full_enumeration)
        treatment = result.design.get("treatment")
        if terms is None:
            terms = [t for t in table.index if t in names_psi or t == treatment]
        terms = list(terms)
        missing = [t for t in terms if t not in table.index]
        if missing:
            raise KeyError(f"terms {missing} not in the result table; available: {list(table.index)}")
        for t in terms:
            key = t if t in names_psi else names_psi[0] if t == treatment else None
            if key is None:
                raise KeyError(f"term {t!r} has no influence function (pre-trend leads are not bootstrapped)")
            j = names_psi.index(key)
            tau = float(result.params.iloc[-psi.shape[1] + j])
            pvals[t], draws[t], lo, hi = _multiplier_test(Cs[:, j], tau, null, alpha, bw, ci)
            if ci:
                lows[t], highs[t] = lo, hi
        method = "score (multiplier) bootstrap of the influence function, centred on the estimate, non-studentized"
        if impose_null:
            logger.info("score bootstrap: the imputation influence-function bootstrap is centred on the estimate "
                        "(impose_null does not apply)")
        settings = {"cluster": cl_col, "n_clusters": G, "impose_null": False,
                    "ci": "test inversion (closed form)" if ci else None}
    else:
        prob, cl_name = _problem_from_result(result, cluster)
        event = result.extra.get("full_result") is not None
        if terms is None:
            terms = list(table.index)
        terms = list(terms)
        missing = [t for t in terms if t not in table.index]
        if missing:
            raise KeyError(f"terms {missing} not in the result table; available: {list(table.index)}")
        if event:
            from returnstudy.models.event_study import _term

            terms = [t for t in terms if np.isfinite(table.loc[t, "std_error"])]  # skip the reference period
            coef_name = {t: _term(int(t)) for t in terms}
        else:
            coef_name = {t: t for t in terms}
        bw = make_draws(rng, prob.G, reps, weights, full_enumeration)
        for t in _progress(terms, "score bootstrap"):
            if coef_name[t] not in prob.names:
                raise KeyError(f"term {t!r} is not an estimated coefficient ({prob.names})")
            j = prob.names.index(coef_name[t])
            b, se = float(prob.beta[j]), float(prob.se[j])
            if impose_null:
                rank = int(np.floor(alpha * bw.n_draws + 1e-9))  # c(b0): (rank+1)-th largest |t*|
                memo: dict[float, float] = {}

                def gap(b0: float, j: int = j, memo: dict[float, float] = memo) -> float:
                    if b0 not in memo:
                        a_t = np.sort(np.abs(prob.tstats(j, float(b0), bw)))
                        crit = a_t[a_t.size - 1 - rank] if rank < a_t.size else 0.0
                        memo[b0] = abs(prob.score_t(j, float(b0))) - crit
                    return memo[b0]

                tstar = prob.tstats(j, float(null), bw)
                t_obs = prob.score_t(j, float(null))
                pvals[t] = float(np.mean(np.abs(tstar) >= abs(t_obs) - 1e-12))
                draws[t] = tstar
                stat[t] = t_obs
                if ci:
                    lows[t], highs[t] = _invert_by_refits(gap, b, se, alpha, ci_tol)
                prob._cache.clear()
            else:
                tstar = prob.tstats(j, None, bw)
                stat[t] = (b - null) / se
                pvals[t] = float(np.mean(np.abs(tstar) >= abs(stat[t]) - 1e-12))
                draws[t] = tstar
                q_lo, q_hi = np.quantile(tstar, [alpha / 2, 1 - alpha / 2])
                lows[t], highs[t] = b - q_hi * se, b - q_lo * se
        method = ("score bootstrap-t (Kline-Santos), null-restricted PPML, CRV1" if impose_null
                  else "score bootstrap-t (Kline-Santos), unrestricted PPML, CRV1")
        settings = {"cluster": cl_name, "n_clusters": prob.G, "n_restricted_fits": prob.n_restricted_fits,
                    "ci": ("test inversion" if impose_null else "percentile-t") if ci else None}
        logger.info("score bootstrap: %d restricted PPML fits", prob.n_restricted_fits)
    if stat:
        table["boot_statistic"] = pd.Series(stat, dtype=float)
    table["boot_p_value"] = pd.Series(pvals, dtype=float)
    if ci:
        table["boot_ci_low"] = pd.Series(lows, dtype=float)
        table["boot_ci_high"] = pd.Series(highs, dtype=float)
        table["boot_pct_ci_low"] = 100.0 * np.expm1(table["boot_ci_low"])
        table["boot_pct_ci_high"] = 100.0 * np.expm1(table["boot_ci_high"])
    settings = {"reps": reps, "weights": weights, "seed": seed, "impose_null": impose_null, "null": null,
                "method": method, "scale": "coefficient (log); pct columns 100 (exp(b) - 1)", **settings}
    return finish_bootstrap(result, table, settings, bw, draws)


def influence_bootstrap(
    result: EstimationResult,
    reps: int = 999,
    weights: str = "rademacher",
    seed: int | None = None,
    impose_null: bool = True,
    cluster: str | None = None,
    terms: Sequence[Any] | None = None,
    null: float = 0.0,
    ci: bool = True,
    alpha: float | None = None,
    full_enumeration: bool | None = None,
) -> EstimationResult:
    """Wild (multiplier) cluster bootstrap of an ``etwfe`` result's aggregates, linear or Poisson.

    Each aggregate of ``result.table`` (simple, group, calendar or event-time ATT; log scale for
    Poisson) is ``tau + sum_g v_g C_g`` per draw, ``C_g`` the cluster sums of its influence function
    (scores x bread x delta-method gradient, scaled so that ``sum_g C_g^2`` is the reported clustered
    variance; ``extra["influence_sums"]``). The bootstrap is unrestricted (centred on the estimate,
    not studentized; ``impose_null`` does not apply and is recorded as False): ``p = mean(|tau* - tau|
    >= |tau - null|)``, interval by closed-form test inversion. Rademacher weights with at most 12
    clusters use all ``2**G`` sign vectors (see :func:`~returnstudy.inference.bootstrap.make_draws`).
    ``cluster`` must be None or the estimation cluster (the influence sums are stored for it).

    Returns a copy of ``result`` whose table gains ``boot_p_value``, ``boot_ci_low``, ``boot_ci_high``
    (and, for Poisson, ``boot_pct_ci_low``/``boot_pct_ci_high`` = ``100 (exp(b) - 1)``);
    ``info["wild_bootstrap"]`` the settings, ``extra["bootstrap_draws"]`` the draws ``tau*`` per term.
    """
    if reps < 9:
        raise ValueError(f"reps={reps}: need at least 9 draws")
    _weight_values(weights)
    if not is_etwfe_result(result):
        raise TypeError(f"influence bootstrap: result of model {result.model!r} is not an etwfe result")
    inf = result.extra.get("influence_sums")
    if inf is None:
        raise ValueError(
            f"influence bootstrap: the etwfe result was estimated with vcov {result.info.get('vcov_type')!r} "
            f"and cluster={result.design.get('cluster')!r}; the bootstrap needs one cluster variable "
            "(re-estimate with cluster=<column>)")
    if cluster is not None and cluster != inf["cluster"]:
        raise ValueError(f"influence bootstrap: the influence sums are stored for the estimation cluster "
                         f"{inf['cluster']!r}; got cluster={cluster!r} (re-estimate with cluster={cluster!r})")
    aggregation = result.info.get("aggregation", "simple")
    sums: pd.DataFrame = inf["sums"][aggregation]
    alpha = result.alpha if alpha is None else float(alpha)
    table = result.table.copy()
    if terms is None:
        terms = [t for t in table.index if np.isfinite(table.loc[t, "std_error"])]
    terms = list(terms)
    missing = [t for t in terms if t not in table.index]
    if missing:
        raise KeyError(f"terms {missing} not in the result table ({aggregation} aggregation); "
                       f"available: {list(table.index)}")
    bad = [t for t in terms if not np.all(np.isfinite(sums[t].to_numpy()))]
    if bad:
        raise ValueError(f"influence bootstrap: terms {bad} have no finite influence function (variance not "
                         "identified)")
    rng = np.random.default_rng(seed)
    bw = make_draws(rng, int(inf["n_clusters"]), reps, weights, full_enumeration)
    pvals: dict[Any, float] = {}
    lows: dict[Any, float] = {}
    highs: dict[Any, float] = {}
    draws: dict[Any, np.ndarray] = {}
    for t in terms:
        tau = float(table.loc[t, "estimate"])
        pvals[t], draws[t], lows[t], highs[t] = _multiplier_test(sums[t].to_numpy(dtype=float), tau, null, alpha,
                                                                 bw, ci)
    if impose_null:
        logger.info("influence bootstrap: the etwfe bootstrap is centred on the estimate (impose_null does not apply)")
    table["boot_p_value"] = pd.Series(pvals, dtype=float)
    poisson = bool(result.is_poisson)
    if ci:
        table["boot_ci_low"] = pd.Series(lows, dtype=float)
        table["boot_ci_high"] = pd.Series(highs, dtype=float)
        if poisson:
            table["boot_pct_ci_low"] = 100.0 * np.expm1(table["boot_ci_low"])
            table["boot_pct_ci_high"] = 100.0 * np.expm1(table["boot_ci_high"])
    settings = {
        "reps": reps, "weights": weights, "seed": seed, "impose_null": False, "null": null,
        "method": ("wild (multiplier) bootstrap of the cluster sums of the aggregates' influence functions "
                   "(scores x bread x delta-method gradient), centred on the estimate, non-studentized"),
        "scale": ("coefficient (log); pct columns 100 (exp(b) - 1)" if poisson else "outcome units"),
        "aggregation": aggregation, "cluster": inf["cluster"], "n_clusters": int(inf["n_clusters"]),
        "ci": "test inversion (closed form)" if ci else None,
    }
    return finish_bootstrap(result, table, settings, bw, draws)
