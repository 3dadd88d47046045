"""Wild cluster bootstrap for linear fixed-effects and imputation DiD results.

Two result types are supported:

**Linear TWFE / event-study results** (``twfe``, ``event_study(model="twfe")``):
the WCR bootstrap-t (Cameron, Gelbach & Miller 2008; MacKinnon & Webb):
``y* = fitted_restricted + u_restricted * v_g`` with cluster-level weights ``v_g``
(Rademacher or Webb's six-point), the model is re-estimated for every draw and
``t* = (b*_k - b0) / se*_k`` uses the same CRV1 variance as the original fit. The
symmetric p-value is ``mean(|t*| >= |t|)``. Confidence intervals are obtained
by test inversion (the set of ``b0`` not rejected, same draws for all ``b0``).
``impose_null=False`` gives WCU: residuals from the unrestricted fit,
``t* = (b*_k - b_k) / se*_k`` and an equal-tailed percentile-t interval.

The algebra follows Roodman, MacKinnon, Nielsen & Webb (2019, "Fast and wild"):
fixed effects nested in the bootstrap clusters (corridor effects inside
citizenship clusters) are partialled out once — exact, because the bootstrap
residuals are constant within those groups up to the cluster weight — and
non-nested ones (year effects) are kept as explicit columns. Every draw then
costs O(G^2) through cluster-level score sums; no dummy matrix for the nested
effects is formed and draws are processed in chunks so memory stays bounded.

Weighted fits (``weights="orders"``): weighted least squares with absorbed fixed
effects equals OLS on ``sqrt(w) * y~`` and ``sqrt(w) * X~``, where ``~`` is the
weighted within-transformation; the CRV1 scores ``w u X~`` are the products of the
transformed residuals and regressors. The bootstrap runs on those arrays unchanged,
still with one weight ``v_g`` per cluster.

**Linear imputation results** (``did_imputation(model="linear")``): the estimator
is linear in the outcome, ``tau = v'Y``, with weights ``v`` that annihilate the
fixed effects. Under the null ``tau = tau0`` the restricted model
``Y - tau0 D = FE + u`` is fitted on the untreated and estimand rows and
``tau* = tau0 + sum_g v_g (v'u)_g``. The statistic is not studentized
(the BJS variance is not recomputed per draw): ``p = mean(|tau* - tau0| >= |tau - tau0|)``;
intervals by test inversion (WCR) or percentile (WCU).

Poisson results are not supported (use randomization inference or the analytical
cluster-robust errors).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize
from returnstudy._progress import progress as _progress

from returnstudy.models._fe import FixedEffects, collinear_columns
from returnstudy.results import EstimationResult

logger = logging.getLogger(__name__)

__all__ = ["wild_bootstrap", "bootstrap_weights"]

_WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
_CHUNK_BYTES = 64 * 2**20


def bootstrap_weights(rng: np.random.Generator, n_clusters: int, reps: int, kind: str = "rademacher") -> np.ndarray:
    """Cluster weights, shape (n_clusters, reps): Rademacher (+-1) or Webb's six-point distribution."""
    if kind == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(n_clusters, reps))
    if kind == "webb":
        return rng.choice(_WEBB, size=(n_clusters, reps))
    raise ValueError(f"weights={kind!r}: expected 'rademacher' or 'webb'")


def _cluster_sum(M: np.ndarray, cl: np.ndarray, G: int) -> np.ndarray:
    """Per-cluster column sums of M (n, k) -> (G, k)."""
    M = M.reshape(M.shape[0], -1)
    return np.column_stack([np.bincount(cl, weights=M[:, j], minlength=G) for j in range(M.shape[1])])


def _chunks(G: int, reps: int, width: int = 3) -> int:
    return int(max(1, min(reps, _CHUNK_BYTES // (8 * max(G, 1) * width))))


# --------------------------------------------------------------------------- linear OLS path
@dataclasses.dataclass
class _OLSBoot:
    Xt: np.ndarray  # within-transformed regressors (nested FE out), explicit FE columns appended
    yt: np.ndarray
    A: np.ndarray  # (Xt'Xt)^-1
    beta: np.ndarray
    cl: np.ndarray
    G: int
    ssc: float
    k: int  # number of original regressors (first columns of Xt)

    _cache: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(
        default_factory=dict)

    def _parts(self, j: int, null: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(p0, pm, Q0, Qm): for null b0, p = p0 - b0 pm and Q = Q0 - b0 Qm (restricted residuals are
        linear in b0: u(b0) = u(0) - b0 M_{X-j} X_j)."""
        key = (j, null)
        if key not in self._cache:
            Xt, yt, A = self.Xt, self.yt, self.A
            a = A[j]
            XXa = _cluster_sum(Xt * (Xt @ a)[:, None], self.cl, self.G)
            R = XXa @ A  # rows r_g = A XX_g a
            if null:
                Xo = np.delete(Xt, j, axis=1)
                P = np.linalg.pinv(Xo.T @ Xo) @ Xo.T
                u0 = yt - Xo @ (P @ yt)
                m = Xt[:, j] - Xo @ (P @ Xt[:, j])
            else:
                u0 = yt - Xt @ self.beta
                m = np.zeros_like(u0)
            C0 = _cluster_sum(Xt * u0[:, None], self.cl, self.G)
            Cm = _cluster_sum(Xt * m[:, None], self.cl, self.G)
            self._cache[key] = (C0 @ a, Cm @ a, R @ C0.T, R @ Cm.T)
        return self._cache[key]

    def term_stats(self, j: int, b0: float, null: bool) -> tuple[float, np.ndarray, np.ndarray, float]:
        """(centre, p, Q) so that b* - centre = p'w and the cluster scores of coef j are p*w - Q w."""
        p0, pm, Q0, Qm = self._parts(j, null)
        if null:
            return b0, p0 - b0 * pm, Q0 - b0 * Qm, 0.0
        return float(self.beta[j]), p0, Q0, 0.0

    def se(self, j: int) -> float:
        e = self.yt - self.Xt @ self.beta
        S = _cluster_sum(self.Xt * e[:, None], self.cl, self.G) @ self.A[j]
        return float(np.sqrt(self.ssc * np.sum(S**2)))


def _ols_boot_from_result(result: EstimationResult, cluster: str | None) -> tuple[_OLSBoot, list[str], str]:
    fit = result.extra.get("fit")
    design = result.extra.get("design")
    if fit is None or design is None or not hasattr(fit, "Xd") or hasattr(fit, "mu"):
        raise TypeError(
            f"wild_bootstrap: result of model {result.model!r} is not a linear fixed-effects fit "
            "(supported: twfe, event_study(model='twfe'), did_imputation(model='linear'))"
        )
    from returnstudy.models._design import fe_codes

    if cluster is None:
        if not design.clusters:
            raise ValueError("wild_bootstrap: the result is not clustered; pass cluster=<column>")
        if len(design.clusters) > 1:
            raise ValueError("wild_bootstrap: multi-way clustering is not supported; pass one cluster column")
        cl_raw = design.clusters[0]
        cl_name = " x ".join(design.cluster_names)
    else:
        cl_raw = fe_codes(design.frame, cluster)
        cl_name = cluster
    cl, _ = pd.factorize(cl_raw)
    G = int(cl.max()) + 1
    if G < 2:
        raise ValueError("wild_bootstrap: need at least 2 clusters")
    keep_cols = ~fit.dropped_columns
    X = design.X[:, keep_cols]
    names = [r for r, d in zip(design.regressors, fit.dropped_columns) if not d]
    y = design.y
    w = None if design.weights is None else np.asarray(design.weights, dtype=float).ravel()
    fx: FixedEffects | None = design.fe
    explicit: list[np.ndarray] = []
    if fx is not None and fx.n_dims:
        nested = fx.nested_in(cl)
        fn = FixedEffects([c for c, f in zip(fx.codes, nested) if f], [n for n, f in zip(fx.names, nested) if f])
        for c, f, g in zip(fx.codes, nested, fx.n_levels):
            if not f:
                if g > 2000:
                    raise ValueError(
                        f"wild_bootstrap: a fixed effect with {g} levels is not nested in the bootstrap clusters; "
                        "cluster at a level containing it"
                    )
                D = np.zeros((c.size, g))
                D[np.arange(c.size), c] = 1.0
                explicit.append(D[:, 1:] if (fn.n_dims or explicit) else D)
        Z = np.column_stack([y, X] + explicit)
        if fn.n_dims:
            Zt = fn.demean(Z, weights=w)
        else:
            Zt = Z - (0.0 if explicit else np.average(Z, axis=0, weights=w))
    else:
        Z = np.column_stack([y, X])
        Zt = Z - np.average(Z, axis=0, weights=w)
    if w is not None:  # WLS = OLS on sqrt(w)-scaled, weighted-within-transformed data
        sw = np.sqrt(w)[:, None]
        Zt, Z = Zt * sw, Z * sw
    yt, Xt = Zt[:, 0], Zt[:, 1:]
    k = X.shape[1]
    if Xt.shape[1] > k:
        drop = collinear_columns(Xt[:, k:], Z[:, 1 + k:])
        Xt = np.column_stack([Xt[:, :k], Xt[:, k:][:, ~drop]])
    A = np.linalg.inv(Xt.T @ Xt)
    beta = A @ (Xt.T @ yt)
    orig = result.params.reindex(names).to_numpy(dtype=float)
    if not np.allclose(beta[:k], orig, rtol=1e-6, atol=1e-8 * max(1.0, float(np.max(np.abs(orig))))):
        raise RuntimeError("wild_bootstrap: re-estimated coefficients differ from the result; cannot bootstrap")
    n = yt.size
    df_k = int(result.info.get("df_k", k))
    ssc = (G / (G - 1)) * ((n - 1) / max(n - df_k, 1))
    return _OLSBoot(Xt=Xt, yt=yt, A=A, beta=beta, cl=cl, G=G, ssc=ssc, k=k), names, cl_name


def _ols_tstats(ob: _OLSBoot, j: int, b0: float, null: bool, W: np.ndarray) -> np.ndarray:
    """Bootstrap t statistics for coefficient j, draws in the columns of W (G, B)."""
    centre, p, Q, _ = ob.term_stats(j, b0, null)
    out = np.empty(W.shape[1])
    step = _chunks(ob.G, W.shape[1])
    for s in range(0, W.shape[1], step):
        Wc = W[:, s:s + step]
        num = p @ Wc  # b* - centre
        T = p[:, None] * Wc - Q @ Wc
        se = np.sqrt(ob.ssc * np.sum(T * T, axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + step] = num / se
    return out


# --------------------------------------------------------------------------- imputation path
def _imputation_stats(boot: dict[str, Any], j: int, tau0: float, null: bool, tau_hat: float) -> np.ndarray:
    """Cluster sums s_g with tau* - centre = s'w for estimand j."""
    import scipy.sparse.linalg as spla

    y, D, V, Z, cl = boot["y"], boot["D"], boot["weights"][:, j], boot["Z"], boot["cluster"]
    est_rows = V != 0
    treated = D > 0
    Dj = treated & est_rows
    rows = (~treated) | Dj
    idx = np.flatnonzero(rows)
    Zr = Z[idx]
    lu = spla.splu((Zr.T @ Zr).tocsc())
    if null:
        z = y[idx] - tau0 * Dj[idx]
        u = z - Zr @ lu.solve(Zr.T @ z)
    else:
        # unrestricted: untreated residuals of the untreated-only fit, treated deviations from tau_hat
        z = y[idx] - tau_hat * Dj[idx]
        u0 = ~treated[idx]
        Z0 = Zr[np.flatnonzero(u0)]
        theta = spla.splu((Z0.T @ Z0).tocsc()).solve(Z0.T @ z[u0])
        u = z - Zr @ theta
    G = int(cl.max()) + 1
    return np.bincount(cl[idx], weights=V[idx] * u, minlength=G)


# --------------------------------------------------------------------------- public API
def _invert(pfun: Callable[[float], float], est: float, se: float, alpha: float) -> tuple[float, float]:
    """Endpoints where the bootstrap p-value crosses alpha (bracketing from the estimate outward)."""
    out = []
    for sign in (-1.0, 1.0):
        lo_step = max(se, 1e-12)
        inner, outer = est, est + sign * 2.0 * lo_step
        it = 0
        while pfun(outer) > alpha and it < 30:
            inner, outer = outer, outer + sign * 2.0 * lo_step * (2**it)
            it += 1
        if pfun(outer) > alpha:
            out.append(np.nan)
            continue
        if pfun(inner) <= alpha:
            out.append(inner)
            continue
        out.append(float(optimize.brentq(lambda b: pfun(b) - alpha - 1e-12, inner, outer, xtol=1e-6 * lo_step)))
    return out[0], out[1]


def wild_bootstrap(
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
) -> EstimationResult:
    """Wild cluster bootstrap p-values and confidence intervals.

    Parameters
    ----------
    result : a linear ``twfe`` / ``event_study(model="twfe")`` or ``did_imputation(model="linear")`` result.
    reps : number of bootstrap draws.
    weights : ``"rademacher"`` or ``"webb"`` (six-point; better with few clusters).
    seed : seed of the numpy Generator (the same draws are used for every term and null value).
    impose_null : True = WCR (restricted residuals, test-inversion intervals);
        False = WCU (unrestricted residuals, percentile(-t) intervals).
    cluster : bootstrap cluster column (default: the result's one-way cluster variable).
    terms : terms to bootstrap (default: every term of ``result.table``).
    null : hypothesised value for the p-value.
    ci : compute confidence intervals (test inversion costs about 40 re-evaluations).
    alpha : interval level 1 - alpha (default: the result's alpha).

    Returns a copy of ``result`` whose ``.table`` gains ``boot_p_value``, ``boot_ci_low``
    and ``boot_ci_high``; ``info["wild_bootstrap"]`` records the settings and
    ``extra["bootstrap_draws"]`` the bootstrap statistics per term.
    """
    if reps < 9:
        raise ValueError(f"reps={reps}: need at least 9 draws")
    alpha = result.alpha if alpha is None else float(alpha)
    rng = np.random.default_rng(seed)
    table = result.table.copy()
    boot_imp = result.extra.get("bootstrap")
    if terms is None:
        terms = list(table.index)
        if boot_imp is not None:  # pre-trend leads come from a separate regression: not bootstrapped
            terms = [t for t in terms if t in boot_imp["names"] or t == result.design.get("treatment")]
    terms = list(terms)
    missing = [t for t in terms if t not in table.index]
    if missing:
        raise KeyError(f"terms {missing} not in the result table; available: {list(table.index)}")
    pvals, lows, highs = {}, {}, {}
    draws: dict[Any, np.ndarray] = {}
    if boot_imp is not None and boot_imp.get("kind") == "imputation_linear":
        if cluster is not None and cluster != result.info.get("cluster"):
            raise ValueError("wild_bootstrap: for imputation results the cluster is the one used in estimation")
        cl = boot_imp["cluster"]
        if cl is None:
            raise ValueError("wild_bootstrap: the imputation result was estimated without clusters")
        G = int(cl.max()) + 1
        W = bootstrap_weights(rng, G, reps, weights)
        names = boot_imp["names"]
        method = "WCR, non-studentized (imputation estimator is linear in Y)" if impose_null else "WCU, percentile"
        for t in _progress(terms, "wild bootstrap"):
            key = t if t in names else names[0] if t == result.design.get("treatment") else t
            if key not in names:
                raise KeyError(f"term {t!r} has no bootstrap weights")
            j = names.index(key)
            tau = float(result.params.iloc[j])
            if impose_null:
                def pfun(b0: float, j: int = j, tau: float = tau) -> float:
                    s = _imputation_stats(boot_imp, j, b0, True, tau)
                    return float(np.mean(np.abs(s @ W) >= abs(tau - b0) - 1e-12))

                pvals[t] = pfun(null)
                draws[t] = _imputation_stats(boot_imp, j, null, True, tau) @ W + null
                if ci:
                    se = float(table.loc[t, "std_error"])
                    lows[t], highs[t] = _invert(pfun, tau, se, alpha)
            else:
                dev = _imputation_stats(boot_imp, j, tau, False, tau) @ W
                pvals[t] = float(np.mean(np.abs(dev) >= abs(tau - null) - 1e-12))
                draws[t] = tau + dev
                q_lo, q_hi = np.quantile(dev, [alpha / 2, 1 - alpha / 2])
                lows[t], highs[t] = tau - q_hi, tau - q_lo
        cl_name = result.info.get("cluster")
    else:
        full = result.extra.get("full_result")
        if full is not None:  # event study: table rows are relative periods, coefficients rel_m*/rel_p*
            from returnstudy.models.event_study import _term

            ob, names, cl_name = _ols_boot_from_result(full, cluster)
            coef_name = {t: _term(int(t)) for t in terms}
            terms = [t for t in terms if np.isfinite(table.loc[t, "std_error"])]  # skip the reference period
        else:
            ob, names, cl_name = _ols_boot_from_result(result, cluster)
            coef_name = {t: t for t in terms}
        G = ob.G
        W = bootstrap_weights(rng, G, reps, weights)
        method = "WCR bootstrap-t, CRV1" if impose_null else "WCU bootstrap-t, CRV1"
        for t in _progress(terms, "wild bootstrap"):
            if coef_name[t] not in names:
                raise KeyError(f"term {t!r} is not an estimated coefficient ({names})")
            j = names.index(coef_name[t])
            b, se = float(ob.beta[j]), ob.se(j)
            if impose_null:
                def pfun(b0: float, j: int = j, b: float = b, se: float = se) -> float:
                    tstar = _ols_tstats(ob, j, b0, True, W)
                    return float(np.mean(np.abs(tstar) >= abs((b - b0) / se) - 1e-12))

                tstar = _ols_tstats(ob, j, null, True, W)
                pvals[t] = float(np.mean(np.abs(tstar) >= abs((b - null) / se) - 1e-12))
                draws[t] = tstar
                if ci:
                    lows[t], highs[t] = _invert(pfun, b, se, alpha)
            else:
                tstar = _ols_tstats(ob, j, b, False, W)
                pvals[t] = float(np.mean(np.abs(tstar) >= abs((b - null) / se) - 1e-12))
                draws[t] = tstar
                q_lo, q_hi = np.quantile(tstar, [alpha / 2, 1 - alpha / 2])
                lows[t], highs[t] = b - q_hi * se, b - q_lo * se
    table["boot_p_value"] = pd.Series(pvals)
    if ci:
        table["boot_ci_low"] = pd.Series(lows)
        table["boot_ci_high"] = pd.Series(highs)
    info = dict(result.info)
    info["wild_bootstrap"] = {
        "reps": reps, "weights": weights, "seed": seed, "impose_null": impose_null, "null": null,
        "cluster": cl_name, "n_clusters": G, "method": method,
        "ci": ("test inversion" if impose_null else "percentile" + ("-t" if "bootstrap-t" in method else "")) if ci else None,
    }
    notes = list(info.get("notes", []) or [])
    notes.append(f"wild cluster bootstrap: {method}, {reps} {weights} draws by {cl_name} ({G} clusters), seed {seed}")
    info["notes"] = notes
    return dataclasses.replace(result, table=table, info=info,
                               extra={**result.extra, "bootstrap_draws": draws})
