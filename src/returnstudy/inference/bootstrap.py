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
costs O(G k) through cluster-level score sums; no dummy matrix for the nested
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

**Poisson results** (``ppml``, ``event_study(model="ppml")``, ``did_imputation(model="poisson")``)
go to the score bootstrap of :mod:`returnstudy.inference.score_bootstrap` (Kline & Santos 2012);
``etwfe`` results, linear and Poisson, to its multiplier bootstrap of the aggregates' influence
functions (:func:`~returnstudy.inference.score_bootstrap.influence_bootstrap`).

**Few clusters**: with Rademacher weights and at most 12 clusters every one of the ``2**G``
sign vectors is used once (full enumeration, as boottest / wildboottest); ``reps`` and the
seed are then not used and the note says so (:func:`make_draws`).

**Memory**: the draws are kept as int8 codes (G x reps bytes) and processed in blocks; the
bootstrap scores use ``R (C' w)`` with (G, k) factors, never a G x G matrix, so memory is
O(rows x k + G x k) (cluster = corridor at 1M rows: see ``benchmarks/mem_wild_bootstrap.py``).
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

from returnstudy.models._fe import FixedEffects
from returnstudy.results import EstimationResult

logger = logging.getLogger(__name__)

__all__ = ["BootstrapDraws", "bootstrap_tstats", "bootstrap_weights", "make_draws", "wild_bootstrap"]

_WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
_CHUNK_BYTES = 16 * 2**20  # per block of draws (G x block floats, a few such temporaries)


_WEIGHT_VALUES = {"rademacher": np.array([-1.0, 1.0]), "webb": _WEBB}
_ENUMERATE_MAX_CLUSTERS = 12
_SINGLE_CALL_DRAWS = 2**20  # cluster x draw cells generated in one call (larger: blocks of rows, int8 codes)


def _weight_values(kind: str) -> np.ndarray:
    if kind not in _WEIGHT_VALUES:
        raise ValueError(f"weights={kind!r}: expected 'rademacher' or 'webb'")
    return _WEIGHT_VALUES[kind]


def bootstrap_weights(rng: np.random.Generator, n_clusters: int, reps: int, kind: str = "rademacher") -> np.ndarray:
    """Cluster weights, shape (n_clusters, reps): Rademacher (+-1) or Webb's six-point distribution."""
    return rng.choice(_weight_values(kind), size=(n_clusters, reps))


@dataclasses.dataclass
class BootstrapDraws:
    """Cluster weights of all draws, stored compactly: ``values[codes]`` is the (G, B) weight matrix.

    ``codes`` are int8 indices into ``values`` (1 byte per cluster and draw instead of 8), so
    the draws of a bootstrap with many clusters never exist as one dense float matrix; the
    statistics are computed on blocks of draws (:meth:`block`). ``enumerated``: the draws
    are all ``2**G`` Rademacher sign vectors (an exact randomisation distribution).
    """

    codes: np.ndarray
    values: np.ndarray
    kind: str
    enumerated: bool = False

    @property
    def n_clusters(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_draws(self) -> int:
        return int(self.codes.shape[1])

    def block(self, start: int, stop: int) -> np.ndarray:
        """Weights of draws ``start:stop`` as a float (G, stop - start) matrix."""
        return self.values[self.codes[:, start:stop]]

    def dot(self, s: np.ndarray) -> np.ndarray:
        """``s @ W`` for a vector of cluster sums ``s`` (G,), one value per draw."""
        out = np.empty(self.n_draws)
        step = _chunks(self.n_clusters, self.n_draws, width=1)
        for a in range(0, self.n_draws, step):
            out[a:a + step] = s @ self.block(a, a + step)
        return out


def make_draws(
    rng: np.random.Generator, n_clusters: int, reps: int, kind: str = "rademacher",
    full_enumeration: bool | None = None,
) -> BootstrapDraws:
    """Cluster weights for a wild bootstrap.

    ``full_enumeration=None`` (default): with Rademacher weights and at most 12 clusters
    every one of the ``2**G`` sign vectors is used once (as boottest / wildboottest do),
    ``reps`` is ignored and ``rng`` is not used; the p-value is then exact for the
    randomisation distribution and does not depend on the seed. ``True`` forces
    enumeration (Rademacher only, G <= 20), ``False`` always samples ``reps`` draws.

    Sampled draws equal :func:`bootstrap_weights` (same generator calls, same order); with
    more than 2**20 cluster x draw cells they are drawn in blocks of rows, which consumes
    the generator's stream identically (block sizes keep an even number of 32-bit words;
    for Webb weights only a rejected 32-bit word, probability 4/2**32 per cell, could shift it).
    """
    values = _weight_values(kind)
    G = int(n_clusters)
    if full_enumeration is None:
        full_enumeration = kind == "rademacher" and G <= _ENUMERATE_MAX_CLUSTERS
    if full_enumeration:
        if kind != "rademacher":
            raise ValueError(f"full_enumeration=True needs weights='rademacher', got {kind!r}")
        if G > 20:
            raise ValueError(f"full_enumeration=True with {G} clusters would need 2**{G} draws (at most 20 clusters)")
        b = np.arange(2**G, dtype=np.int64)
        codes = ((b[None, :] >> np.arange(G, dtype=np.int64)[:, None]) & 1).astype(np.int8)
        return BootstrapDraws(codes=codes, values=values, kind=kind, enumerated=True)
    if G * reps <= _SINGLE_CALL_DRAWS:
        codes = rng.integers(0, values.size, size=(G, reps)).astype(np.int8)
    else:
        codes = np.empty((G, reps), dtype=np.int8)
        rows = max(2, (_SINGLE_CALL_DRAWS // max(reps, 1)) // 2 * 2)  # even: whole 64-bit words per block
        for a in range(0, G, rows):
            codes[a:a + rows] = rng.integers(0, values.size, size=(min(rows, G - a), reps))
    return BootstrapDraws(codes=codes, values=values, kind=kind, enumerated=False)


def _cluster_sum(M: np.ndarray, cl: np.ndarray, G: int, scale: np.ndarray | None = None) -> np.ndarray:
    """Per-cluster column sums of M (n, k) -> (G, k); with ``scale`` (n,), of ``M * scale[:, None]``
    (one column at a time: no n x k temporary)."""
    M = M.reshape(M.shape[0], -1)
    if scale is None:
        return np.column_stack([np.bincount(cl, weights=M[:, j], minlength=G) for j in range(M.shape[1])])
    return np.column_stack([np.bincount(cl, weights=M[:, j] * scale, minlength=G) for j in range(M.shape[1])])


def dependent_columns_gram(Xd: np.ndarray, X: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Columns of ``Xd`` to drop, with the decisions of
    :func:`~returnstudy.models._fe.collinear_columns` (a column is dropped if its sum of squares
    after demeaning is below ``tol`` times that of ``X``, or if its residual sum of squares on the
    earlier kept columns is below ``tol`` times its own), computed from the k x k Gram matrix:
    one matrix product instead of k^2 / 2 passes over the rows (used for the dummies of
    non-nested fixed effects, a few dozen columns)."""
    k = Xd.shape[1]
    gram = Xd.T @ Xd
    ss_d = np.diag(gram).copy()
    ss_raw = np.einsum("ij,ij->j", X, X)
    drop = ss_d <= tol * np.maximum(ss_raw, 1e-300)
    kept: list[int] = []
    for j in range(k):
        if drop[j]:
            continue
        res = ss_d[j]
        if kept:
            g = gram[kept, j]
            res = ss_d[j] - g @ np.linalg.solve(gram[np.ix_(kept, kept)], g)
        if res <= tol * ss_d[j]:
            drop[j] = True
        else:
            kept.append(j)
    return drop


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

    _cache: dict[tuple[int, bool], tuple[np.ndarray, ...]] = dataclasses.field(default_factory=dict)

    def _parts(self, j: int, null: bool) -> tuple[np.ndarray, ...]:
        """(p0, pm, R, C0, Cm): for null b0, p = p0 - b0 pm and the cluster score sums are
        C = C0 - b0 Cm (restricted residuals are linear in b0: u(b0) = u(0) - b0 M_{X-j} X_j).
        The G x G matrix Q = R C' is never formed: Q w = R (C' w) costs O(G k) per draw."""
        key = (j, null)
        if key not in self._cache:
            Xt, yt, A = self.Xt, self.yt, self.A
            a = A[j]
            XXa = _cluster_sum(Xt, self.cl, self.G, scale=Xt @ a)
            R = XXa @ A  # rows r_g = A XX_g a
            if null:
                Xo = np.delete(Xt, j, axis=1)
                P = np.linalg.pinv(Xo.T @ Xo) @ Xo.T
                u0 = yt - Xo @ (P @ yt)
                m = Xt[:, j] - Xo @ (P @ Xt[:, j])
            else:
                u0 = yt - Xt @ self.beta
                m = np.zeros_like(u0)
            C0 = _cluster_sum(Xt, self.cl, self.G, scale=u0)
            Cm = _cluster_sum(Xt, self.cl, self.G, scale=m)
            self._cache[key] = (C0 @ a, Cm @ a, R, C0, Cm)
        return self._cache[key]

    def term_stats(self, j: int, b0: float, null: bool) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(centre, p, R, C) so that b* - centre = p'w and the cluster scores of coef j are
        p*w - R (C' w)."""
        p0, pm, R, C0, Cm = self._parts(j, null)
        if null:
            return b0, p0 - b0 * pm, R, C0 - b0 * Cm
        return float(self.beta[j]), p0, R, C0

    def se(self, j: int) -> float:
        e = self.yt - self.Xt @ self.beta
        S = _cluster_sum(self.Xt, self.cl, self.G, scale=e) @ self.A[j]
        return float(np.sqrt(self.ssc * np.sum(S**2)))


def _ols_boot_from_result(result: EstimationResult, cluster: str | None) -> tuple[_OLSBoot, list[str], str]:
    fit = result.extra.get("fit")
    design = result.extra.get("design")
    if fit is None or design is None or not hasattr(fit, "Xd") or hasattr(fit, "mu"):
        raise TypeError(
            f"wild_bootstrap: result of model {result.model!r} is not a linear fixed-effects fit "
            "(supported: twfe, event_study(model='twfe'), did_imputation(model='linear'); Poisson: ppml, "
            "event_study(model='ppml'), did_imputation(model='poisson'))"
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
    if fx is not None and fx.n_dims:
        nested = fx.nested_in(cl)
        fn = FixedEffects([c for c, f in zip(fx.codes, nested) if f], [n for n, f in zip(fx.names, nested) if f])
        # [y, X, dummies of the non-nested effects (first level dropped unless it is the only effect)],
        # filled in place: no separate dense dummy matrices
        dums: list[tuple[np.ndarray, int]] = []
        for c, f, g in zip(fx.codes, nested, fx.n_levels):
            if not f:
                if g > 2000:
                    raise ValueError(
                        f"wild_bootstrap: a fixed effect with {g} levels is not nested in the bootstrap clusters; "
                        "cluster at a level containing it"
                    )
                dums.append((c, 1 if (fn.n_dims or dums) else 0))
        n_rows, k0 = y.shape[0], X.shape[1]
        width = 1 + k0 + sum(int(c.max()) + 1 - first for c, first in dums) if dums else 1 + k0
        Z = np.zeros((n_rows, width))
        Z[:, 0], Z[:, 1:1 + k0] = y, X
        col = 1 + k0
        for c, first in dums:
            g = int(c.max()) + 1
            sel = c >= first
            Z[np.flatnonzero(sel), col + c[sel] - first] = 1.0
            col += g - first
        explicit = dums
        if fn.n_dims:
            Zt = fn.demean(Z, weights=w)
        else:
            Zt = Z - (0.0 if explicit else np.average(Z, axis=0, weights=w))
    else:
        Z = np.column_stack([y, X])
        Zt = Z - np.average(Z, axis=0, weights=w)
    if w is not None:  # WLS = OLS on sqrt(w)-scaled, weighted-within-transformed data
        sw = np.sqrt(w)[:, None]
        Zt *= sw
        Z *= sw
    yt, Xt = Zt[:, 0], Zt[:, 1:]
    k = X.shape[1]
    if Xt.shape[1] > k:
        drop = dependent_columns_gram(Xt[:, k:], Z[:, 1 + k:])
        del Z
        Xt = np.column_stack([Xt[:, :k], Xt[:, k:][:, ~drop]])
        yt = yt.copy()
        del Zt
    else:
        del Z
    A = np.linalg.inv(Xt.T @ Xt)
    beta = A @ (Xt.T @ yt)
    orig = result.params.reindex(names).to_numpy(dtype=float)
    if not np.allclose(beta[:k], orig, rtol=1e-6, atol=1e-8 * max(1.0, float(np.max(np.abs(orig))))):
        raise RuntimeError("wild_bootstrap: re-estimated coefficients differ from the result; cannot bootstrap")
    n = yt.size
    df_k = int(result.info.get("df_k", k))
    ssc = (G / (G - 1)) * ((n - 1) / max(n - df_k, 1))
    return _OLSBoot(Xt=Xt, yt=yt, A=A, beta=beta, cl=cl, G=G, ssc=ssc, k=k), names, cl_name


def bootstrap_tstats(p: np.ndarray, R: np.ndarray, C: np.ndarray, ssc: float, draws: BootstrapDraws) -> np.ndarray:
    """Bootstrap t statistics ``(b* - centre) / se*`` of one coefficient, one per draw.

    For cluster weights ``w`` (G,): ``b* - centre = p'w`` and the bootstrap cluster scores of
    the coefficient are ``p * w - R (C' w)`` (``R``, ``C``: (G, k)); ``se*`` is their CRV1
    norm times ``sqrt(ssc)``. Memory O(G k + G x block of draws); never G x G.
    """
    B = draws.n_draws
    out = np.empty(B)
    step = _chunks(p.shape[0], B)
    for s in range(0, B, step):
        Wc = draws.block(s, s + step)
        num = p @ Wc  # b* - centre
        T = p[:, None] * Wc - R @ (C.T @ Wc)
        se = np.sqrt(ssc * np.sum(T * T, axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + step] = num / se
    return out


def _ols_tstats(ob: _OLSBoot, j: int, b0: float, null: bool, draws: BootstrapDraws) -> np.ndarray:
    """Bootstrap t statistics for coefficient j of a linear fit."""
    _centre, p, R, C = ob.term_stats(j, b0, null)
    return bootstrap_tstats(p, R, C, ob.ssc, draws)


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
    full_enumeration: bool | None = None,
) -> EstimationResult:
    """Wild cluster bootstrap p-values and confidence intervals.

    Parameters
    ----------
    result : a linear ``twfe`` / ``event_study(model="twfe")`` or ``did_imputation(model="linear")``
        result, or a Poisson result (``ppml``, ``event_study(model="ppml")``,
        ``did_imputation(model="poisson")``), which goes to the score bootstrap
        (:func:`returnstudy.inference.score_bootstrap.score_bootstrap`; same arguments), or an
        ``etwfe`` result, linear or Poisson (unrestricted multiplier bootstrap of its aggregates'
        influence functions, :func:`returnstudy.inference.score_bootstrap.influence_bootstrap`).
    reps : number of bootstrap draws (ignored under full enumeration).
    weights : ``"rademacher"`` or ``"webb"`` (six-point; better with few clusters).
    seed : seed of the numpy Generator (the same draws are used for every term and null value).
    impose_null : True = WCR (restricted residuals, test-inversion intervals);
        False = WCU (unrestricted residuals, percentile(-t) intervals).
    cluster : bootstrap cluster column (default: the result's one-way cluster variable).
    terms : terms to bootstrap (default: every term of ``result.table``).
    null : hypothesised value for the p-value.
    ci : compute confidence intervals (test inversion costs about 40 re-evaluations).
    alpha : interval level 1 - alpha (default: the result's alpha).
    full_enumeration : None (default) = all ``2**G`` Rademacher sign vectors when there are
        at most 12 clusters (exact, seed-free; ``reps`` ignored), sampled draws otherwise;
        True / False force it on / off (see :func:`make_draws`).

    Returns a copy of ``result`` whose ``.table`` gains ``boot_p_value``, ``boot_ci_low``
    and ``boot_ci_high``; ``info["wild_bootstrap"]`` records the settings and
    ``extra["bootstrap_draws"]`` the bootstrap statistics per term.

    Memory is O(rows x regressors + G x regressors) plus the draws as int8 codes
    (G x reps bytes); no G x G matrix is formed.
    """
    if reps < 9:
        raise ValueError(f"reps={reps}: need at least 9 draws")
    _weight_values(weights)
    from returnstudy.inference.score_bootstrap import is_etwfe_result, is_poisson_result, score_bootstrap

    if is_poisson_result(result) or is_etwfe_result(result):  # etwfe: influence-function bootstrap
        return score_bootstrap(result, reps=reps, weights=weights, seed=seed, impose_null=impose_null,
                               cluster=cluster, terms=terms, null=null, ci=ci, alpha=alpha,
                               full_enumeration=full_enumeration)
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
        bw = make_draws(rng, G, reps, weights, full_enumeration)
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
                    return float(np.mean(np.abs(bw.dot(s)) >= abs(tau - b0) - 1e-12))

                pvals[t] = pfun(null)
                draws[t] = bw.dot(_imputation_stats(boot_imp, j, null, True, tau)) + null
                if ci:
                    se = float(table.loc[t, "std_error"])
                    lows[t], highs[t] = _invert(pfun, tau, se, alpha)
            else:
                dev = bw.dot(_imputation_stats(boot_imp, j, tau, False, tau))
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
        bw = make_draws(rng, G, reps, weights, full_enumeration)
        method = "WCR bootstrap-t, CRV1" if impose_null else "WCU bootstrap-t, CRV1"
        for t in _progress(terms, "wild bootstrap"):
            if coef_name[t] not in names:
                raise KeyError(f"term {t!r} is not an estimated coefficient ({names})")
            j = names.index(coef_name[t])
            b, se = float(ob.beta[j]), ob.se(j)
            if impose_null:
                def pfun(b0: float, j: int = j, b: float = b, se: float = se) -> float:
                    tstar = _ols_tstats(ob, j, b0, True, bw)
                    return float(np.mean(np.abs(tstar) >= abs((b - b0) / se) - 1e-12))

                tstar = _ols_tstats(ob, j, null, True, bw)
                pvals[t] = float(np.mean(np.abs(tstar) >= abs((b - null) / se) - 1e-12))
                draws[t] = tstar
                if ci:
                    lows[t], highs[t] = _invert(pfun, b, se, alpha)
            else:
                tstar = _ols_tstats(ob, j, b, False, bw)
                pvals[t] = float(np.mean(np.abs(tstar) >= abs((b - null) / se) - 1e-12))
                draws[t] = tstar
                q_lo, q_hi = np.quantile(tstar, [alpha / 2, 1 - alpha / 2])
                lows[t], highs[t] = b - q_hi, b - q_lo
    table["boot_p_value"] = pd.Series(pvals)
    if ci:
        table["boot_ci_low"] = pd.Series(lows)
        table["boot_ci_high"] = pd.Series(highs)
    settings = {
        "reps": reps, "weights": weights, "seed": seed, "impose_null": impose_null, "null": null,
        "cluster": cl_name, "n_clusters": G, "method": method,
        "ci": ("test inversion" if impose_null else "percentile" + ("-t" if "bootstrap-t" in method else "")) if ci else None,
    }
    return finish_bootstrap(result, table, settings, bw, draws)


def draws_description(bw: BootstrapDraws, reps: int, seed: int | None) -> str:
    """Text for notes: how many draws and of which kind (enumerated or sampled with a seed)."""
    if bw.enumerated:
        return (f"all {bw.n_draws} = 2^{bw.n_clusters} Rademacher sign vectors (full enumeration; "
                f"reps={reps} and the seed are not used)")
    return f"{bw.n_draws} {bw.kind} draws, seed {seed}"


def finish_bootstrap(
    result: EstimationResult, table: pd.DataFrame, settings: dict[str, Any], bw: BootstrapDraws,
    draws: dict[Any, np.ndarray],
) -> EstimationResult:
    """Copy of ``result`` with the bootstrap table, ``info["wild_bootstrap"]`` and a note."""
    reps = int(settings["reps"])
    if bw.enumerated:
        logger.info("wild bootstrap: %d clusters, full enumeration of %d sign vectors (reps=%d ignored)",
                    bw.n_clusters, bw.n_draws, reps)
    settings = {**settings, "n_draws": bw.n_draws, "full_enumeration": bw.enumerated}
    info = dict(result.info)
    info["wild_bootstrap"] = settings
    notes = list(info.get("notes", []) or [])
    if bw.enumerated:
        notes.append(f"wild cluster bootstrap: {settings['method']}, {draws_description(bw, reps, settings['seed'])} "
                     f"by {settings['cluster']} ({settings['n_clusters']} clusters)")
    else:
        notes.append(f"wild cluster bootstrap: {settings['method']}, {bw.n_draws} {bw.kind} draws by "
                     f"{settings['cluster']} ({settings['n_clusters']} clusters), seed {settings['seed']}")
    info["notes"] = notes
    return dataclasses.replace(result, table=table, info=info,
                               extra={**result.extra, "bootstrap_draws": draws})
