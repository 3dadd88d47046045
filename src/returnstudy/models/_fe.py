"""Absorbing high-dimensional fixed effects.

Numerical core shared by every estimator in :mod:`returnstudy.models`:

* :class:`FixedEffects` holds integer group codes for one or more fixed-effect
  dimensions (corridor, year, geo x year, ...) and computes the weighted
  within-transformation (residuals from a weighted projection on all fixed-effect
  dummies) by alternating projections with Irons--Tuck acceleration, using
  ``numpy.bincount`` for the group means. Fixed effects are never expanded into
  dummy columns.
* :func:`absorb` is a functional shortcut for ``FixedEffects(fe).demean(X)``.
* :func:`fit_wls` solves a (weighted) least-squares problem with absorbed fixed effects.
* :func:`fit_ppml` fits a Poisson pseudo-maximum-likelihood model with absorbed fixed
  effects by iteratively reweighted least squares (IRLS), after removing observations
  that are separated (see the function's docstring for what is detected).
* :func:`singleton_mask` flags observations that are alone in a fixed-effect group.

Degrees-of-freedom accounting (:meth:`FixedEffects.n_absorbed`) follows pyfixest's
``ssc(k_fixef="nonnested")`` rule: the levels of every fixed-effect dimension count,
minus one per additional dimension, and a dimension nested in a cluster variable counts
as a single parameter.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "ConvergenceWarning",
    "FixedEffects",
    "OLSFit",
    "PPMLFit",
    "absorb",
    "collinear_columns",
    "fit_ppml",
    "fit_wls",
    "recover_fe",
    "singleton_mask",
]


class ConvergenceWarning(UserWarning):
    """An iterative algorithm (demeaning or IRLS) stopped before reaching its tolerance."""


def _as_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary labels (or non-contiguous integers) to codes 0..G-1."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"fixed-effect codes must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "iu" and arr.size:
        if arr.min() >= 0:
            counts = np.bincount(arr)
            if np.all(counts > 0):
                return arr.astype(np.intp, copy=False), counts.size
    codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError("fixed-effect or cluster codes contain missing values")
    return codes.astype(np.intp, copy=False), len(uniques)


def _combine_codes(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Codes of the intersection (interaction) of several integer code vectors."""
    out = np.zeros(len(columns[0]), dtype=np.int64)
    for col in columns:
        c, g = _as_codes(col)
        out = out * g + c
        out, _ = _as_codes(out)
    return out.astype(np.intp)


#: columns x rows demeaned together: small samples sweep many columns per call, large ones
#: one column at a time (measured: several columns of 4,000+ rows swept together are slower
#: than one at a time, the working arrays leave the cache)
_DEMEAN_BLOCK_ELEMENTS = 16_384


def _row_max_abs(a: np.ndarray) -> np.ndarray:
    """Largest absolute value of each row (each column's largest change in a sweep)."""
    return np.max(np.abs(a), axis=1)


#: IRLS steps taken past the convergence criterion from a warm start (see :func:`poisson_irls`)
WARM_START_POLISH = 2


def _sweep_threshold(x0: np.ndarray, tol: float) -> np.ndarray:
    """Per row of ``x0`` (columns x n): the largest change in a sweep at which it has converged,
    ``tol`` times the column's scale (max(1, RMS))."""
    return tol * np.maximum(1.0, np.sqrt(np.mean(x0 * x0, axis=1)))


#: columns x rows up to which the exact start is computed for all columns in one solve
#: (beyond, block by block, to bound the working memory)
_EXACT_START_ELEMENTS = 4_000_000

#: two-way fixed effects whose smaller dimension has at most this many levels are projected
#: exactly (that dimension's dummies partialled out after demeaning within the larger one)
SMALL_DIMENSION_LEVELS = 60


class TwoWayProjection:
    """Exact weighted within-transformation for two fixed-effect dimensions, one of them small
    (years), by Frisch-Waugh-Lovell: demean the columns within the large dimension's groups
    (exact, one pass), then partial out the small dimension's dummies (one level left out),
    themselves demeaned within the groups. The dummies are never formed: with ``C[g, s]`` the
    weight of group g in level s, their demeaned cross-products are ``diag(sum_g C) -
    sum_g C_g C_g' / w_g`` and their cross-products with a demeaned column are its weighted
    sums per level, so a call costs O(rows x columns + groups x levels^2) instead of the
    sweeps of alternating projections. Columns are rows of a C-ordered ``(columns, n)`` array.
    """

    def __init__(self, fx: FixedEffects) -> None:
        if fx.n_dims != 2:
            raise ValueError(f"TwoWayProjection needs two fixed-effect dimensions, got {fx.n_dims}")
        self.fx = fx
        self.big = int(np.argmax(fx.n_levels))
        self.small = 1 - self.big
        self.cb, self.gb = fx.codes[self.big], fx.n_levels[self.big]
        self.cs, self.gs = fx.codes[self.small], fx.n_levels[self.small]
        self.cell = self.cb.astype(np.int64) * self.gs + self.cs

    @classmethod
    def for_(cls, fx: FixedEffects | None) -> TwoWayProjection | None:
        """The projection for ``fx`` if it has two dimensions, one of them small; else None."""
        if fx is None or fx.n_dims != 2 or min(fx.n_levels) > SMALL_DIMENSION_LEVELS:
            return None
        return cls(fx)

    def demean_rows(self, x: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """``x`` (columns x n) minus its weighted projection on both dimensions' dummies."""
        k, n = x.shape
        cb, gb, cs, gs = self.cb, self.gb, self.cs, self.gs
        ww = np.ones(n) if w is None else w
        wsum = np.bincount(cb, weights=ww, minlength=gb)
        inv = np.divide(1.0, wsum, out=np.zeros_like(wsum), where=wsum > 0)
        v = x * ww
        sums = np.bincount(self.fx._stacked_codes(self.big, k), weights=v.ravel(), minlength=gb * k).reshape(k, gb)
        xc = x - np.take(sums * inv, cb, axis=1)
        if gs < 2:
            return xc
        C = np.bincount(self.cell, weights=ww, minlength=gb * gs).reshape(gb, gs)[:, 1:]
        share = C * inv[:, None]
        A = np.diag(C.sum(axis=0)) - C.T @ share
        vc = xc * ww
        B = np.bincount(self.fx._stacked_codes(self.small, k), weights=vc.ravel(),
                        minlength=gs * k).reshape(k, gs)[:, 1:]
        coef = np.linalg.lstsq(A, B.T, rcond=None)[0]  # (gs - 1) x k
        level = np.vstack([np.zeros((1, k)), coef])  # the left-out level's coefficient is 0
        fitted = np.take(level.T, cs, axis=1) - np.take((share @ coef).T, cb, axis=1)
        return xc - fitted

    def demean(self, Z: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """``Z`` (n x columns) minus its weighted projection on both dimensions' dummies."""
        return self.demean_rows(np.ascontiguousarray(Z.T), w).T

    def effects(self, x: np.ndarray, w: np.ndarray | None = None) -> list[np.ndarray]:
        """The coefficients of ``x``'s weighted projection on both dimensions' dummies, one array
        per dimension in ``fx``'s order (the small dimension's first level is 0; with a
        disconnected design the split between the dimensions is one of several): the fitted
        value of row i is the sum of its levels' coefficients."""
        x = np.asarray(x, dtype=float).ravel()
        cb, gb, cs, gs = self.cb, self.gb, self.cs, self.gs
        ww = np.ones(x.size) if w is None else np.asarray(w, dtype=float).ravel()
        wsum = np.bincount(cb, weights=ww, minlength=gb)
        inv = np.divide(1.0, wsum, out=np.zeros_like(wsum), where=wsum > 0)
        big_mean = np.bincount(cb, weights=ww * x, minlength=gb) * inv
        small = np.zeros(gs)
        big = big_mean
        if gs >= 2:
            C = np.bincount(self.cell, weights=ww, minlength=gb * gs).reshape(gb, gs)[:, 1:]
            share = C * inv[:, None]
            A = np.diag(C.sum(axis=0)) - C.T @ share
            B = np.bincount(cs, weights=ww * (x - big_mean[cb]), minlength=gs)[1:]
            small[1:] = np.linalg.lstsq(A, B, rcond=None)[0]
            big = big_mean - share @ small[1:]
        out = [small, small]
        out[self.big] = big
        return out


class FixedEffects:
    """Group structure of one or more fixed-effect dimensions.

    Parameters
    ----------
    fe
        One 1-D array of group labels per dimension (integer codes 0..G-1 preferred;
        other labels are factorized). All arrays have the observation length ``n``.
    names
        Optional names of the dimensions (e.g. ``("corridor", "year")``), used in
        messages and for nesting checks by name.
    """

    def __init__(self, fe: Sequence[np.ndarray] | np.ndarray, names: Sequence[str] | None = None):
        if isinstance(fe, np.ndarray) and fe.ndim == 2:
            fe = [fe[:, j] for j in range(fe.shape[1])]
        fe = list(fe)
        if names is None:
            names = [f"fe{j}" for j in range(len(fe))]
        if len(names) != len(fe):
            raise ValueError(f"{len(names)} names for {len(fe)} fixed-effect dimensions")
        self.names: tuple[str, ...] = tuple(names)
        self.codes: list[np.ndarray] = []
        self.n_levels: list[int] = []
        n = None
        for name, f in zip(self.names, fe):
            c, g = _as_codes(np.asarray(f))
            if n is None:
                n = c.size
            elif c.size != n:
                raise ValueError(f"fixed effect {name!r} has length {c.size}, expected {n}")
            self.codes.append(c)
            self.n_levels.append(g)
        self.n_obs: int = 0 if n is None else int(n)
        self.counts: list[np.ndarray] = [np.bincount(c, minlength=g) for c, g in zip(self.codes, self.n_levels)]

    # ------------------------------------------------------------------ basics
    @property
    def n_dims(self) -> int:
        return len(self.codes)

    def __repr__(self) -> str:
        dims = ", ".join(f"{n}:{g}" for n, g in zip(self.names, self.n_levels))
        return f"FixedEffects(n_obs={self.n_obs}, levels={{{dims}}})"

    def subset(self, mask: np.ndarray) -> FixedEffects:
        """Fixed effects restricted to the rows where ``mask`` is True (codes re-numbered)."""
        mask = np.asarray(mask, dtype=bool)
        return FixedEffects([c[mask] for c in self.codes], self.names)

    # -------------------------------------------------------------- demeaning
    def _stacked_codes(self, d: int, k: int) -> np.ndarray:
        """Group codes of dimension ``d`` for ``k`` stacked columns: row j uses bins j*G..j*G+G-1."""
        cache = self.__dict__.setdefault("_stacked_cache", {})
        have = cache.get(d)
        if have is None or have.shape[0] < k:
            g = self.n_levels[d]
            have = self.codes[d][None, :] + g * np.arange(k, dtype=np.intp)[:, None]
            cache[d] = have
        return have[:k].ravel()

    def _sweep(self, x: np.ndarray, w: np.ndarray | None, inv_wsums: list[np.ndarray]) -> np.ndarray:
        """One pass of weighted group-mean removal over every dimension, all columns at once.

        ``x`` is (columns, n), C-ordered: each column is a contiguous row, so the group sums
        (one ``bincount`` over all columns, bins offset per column) and the per-column
        reductions of the caller add in the same order as on a single 1-D column.
        """
        k = x.shape[0]
        for d in range(self.n_dims):
            g, codes = self.n_levels[d], self.codes[d]
            v = x if w is None else x * w
            if k == 1:  # plain 1-D group means (same arithmetic, less indexing overhead)
                sums = np.bincount(codes, weights=v[0], minlength=g)
                x = x - (sums * inv_wsums[d])[codes]
            else:
                sums = np.bincount(self._stacked_codes(d, k), weights=v.ravel(), minlength=g * k).reshape(k, g)
                x = x - np.take(sums * inv_wsums[d], codes, axis=1)
        return x

    def demean(
        self,
        X: np.ndarray,
        weights: np.ndarray | None = None,
        tol: float = 1e-10,
        maxiter: int = 10_000,
        return_iterations: bool = False,
        start: np.ndarray | None = None,
    ) -> np.ndarray | tuple[np.ndarray, int]:
        """Weighted within-transformation of the columns of ``X``.

        Returns ``X - P X`` where ``P`` is the weighted orthogonal projection on the span
        of all fixed-effect dummies (weights ``weights``). One dimension is exact in one
        pass; several dimensions use alternating projections accelerated with the
        Irons--Tuck extrapolation, stopping when the largest change in a sweep is below
        ``tol`` times the column's scale (max(1, RMS of the column)). Two dimensions of which
        one is small (at most ``SMALL_DIMENSION_LEVELS`` levels, e.g. corridors and years)
        use the exact projection (:class:`TwoWayProjection`) without sweeps: a column's
        projection is kept when its weighted group means in every dimension (what a sweep
        would remove) are below the same threshold, and swept from there otherwise (the
        reported iteration count is then 0, or the sweeps the short columns took).

        Columns are swept together in blocks of about 16k values (one ``bincount`` per
        dimension and sweep for the whole block, bins offset per column): small samples
        pay the per-call overhead once instead of once per column, large ones (one column
        per block) keep their arrays in cache. Each column keeps its own extrapolation
        step and stops at its own convergence, so the result equals demeaning the columns
        one at a time (same operations in the same order).

        ``start`` (same shape as ``X``) warm-starts the iterations; it must differ from
        ``X`` only by a combination of fixed-effect dummies (e.g. ``X - (X_old - Xd_old)``),
        so the fixed point is unchanged (not needed, and ignored, where the exact start is used).
        """
        X = np.asarray(X, dtype=float)
        one_d = X.ndim == 1
        if one_d:
            X = X[:, None]
        if X.shape[0] != self.n_obs:
            raise ValueError(f"X has {X.shape[0]} rows, fixed effects have {self.n_obs}")
        w = None
        if weights is not None:
            w = np.asarray(weights, dtype=float).ravel()
            if w.shape[0] != self.n_obs:
                raise ValueError(f"weights have {w.shape[0]} rows, expected {self.n_obs}")
            if not np.all(np.isfinite(w)) or (w < 0).any():
                raise ValueError("weights must be finite and non-negative")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values; drop them before demeaning")
        if self.n_dims == 0:
            out = X.copy()
            return (out[:, 0] if one_d else out, 0) if return_iterations else (out[:, 0] if one_d else out)
        wsums = []
        for c, g, cnt in zip(self.codes, self.n_levels, self.counts):
            ws = cnt.astype(float) if w is None else np.bincount(c, weights=w, minlength=g)
            # groups with zero total weight get mean 0 (they do not affect the fit)
            wsums.append(np.divide(1.0, ws, out=np.zeros_like(ws), where=ws > 0))
        x0 = np.ascontiguousarray(X.T)
        # two dimensions, one small: each column's exact projection is the fixed point of the
        # sweeps; it is kept where its weighted group means in every dimension (what a sweep
        # would remove) are within the convergence threshold, else the sweeps start from it
        # (rounding in the small solve left it short)
        projection = self._projection()
        x_start = None if start is None else np.ascontiguousarray(np.asarray(start, dtype=float).reshape(X.shape).T)
        exact = projection is not None
        if exact and x0.size <= _EXACT_START_ELEMENTS:
            x_start = projection.demean_rows(x0, w)  # all columns in one solve
            projection = None
        out = np.empty_like(X)  # same memory layout as the input
        max_it = 0
        # columns in blocks that keep the working arrays cache-sized: one pass over a block
        # costs one call per dimension instead of one per column, without the memory traffic
        # of sweeping a (columns x n) array that no longer fits in cache
        block = max(1, _DEMEAN_BLOCK_ELEMENTS // max(self.n_obs, 1))
        for j0 in range(0, x0.shape[0], block):
            cols = slice(j0, j0 + block)
            if projection is not None:
                first = projection.demean_rows(x0[cols], w)
            else:
                first = None if x_start is None else x_start[cols]
            if exact:
                out_t, it = first, 0
                short = ~self._at_fixed_point(first, w, wsums, _sweep_threshold(x0[cols], tol))
                if short.any():
                    out_t = first.copy()
                    out_t[short], it = self._demean_columns(x0[cols][short], w, wsums, tol, maxiter, first[short])
            else:
                out_t, it = self._demean_columns(x0[cols], w, wsums, tol, maxiter, first)
            out[:, cols] = out_t.T
            max_it = max(max_it, it)
        res = out[:, 0] if one_d else out
        return (res, max_it) if return_iterations else res

    def _projection(self) -> TwoWayProjection | None:
        """The exact two-way projection of these fixed effects (None unless two dimensions, one small)."""
        cache = self.__dict__.setdefault("_projection_cache", [])
        if not cache:
            cache.append(TwoWayProjection.for_(self))
        return cache[0]

    def _at_fixed_point(self, x: np.ndarray, w: np.ndarray | None, inv_wsums: list[np.ndarray],
                        thr: np.ndarray) -> np.ndarray:
        """Per row of ``x`` (columns x n): is every weighted group mean, in every dimension, at most
        ``thr``? (Then a sweep would change no value by more than the convergence threshold.)"""
        k = x.shape[0]
        v = x if w is None else x * w
        ok = np.ones(k, dtype=bool)
        for d in range(self.n_dims):
            g = self.n_levels[d]
            sums = np.bincount(self._stacked_codes(d, k), weights=v.ravel(), minlength=g * k).reshape(k, g)
            ok &= _row_max_abs(sums * inv_wsums[d]) <= thr
        return ok

    def _demean_columns(
        self,
        x0: np.ndarray,
        w: np.ndarray | None,
        wsums: list[np.ndarray],
        tol: float,
        maxiter: int,
        start: np.ndarray | None = None,
    ) -> tuple[np.ndarray, int]:
        """Alternating projections with Irons--Tuck acceleration on the rows of ``x0`` (columns x n)."""
        x = self._sweep(x0 if start is None else start, w, wsums)
        if self.n_dims == 1:
            return x, 1
        k = x0.shape[0]
        thr = _sweep_threshold(x0, tol)
        ww = np.ones(x0.shape[1]) if w is None else w
        out = np.empty_like(x0)
        active = np.arange(k)
        it, max_it = 1, 1

        def finish(done: np.ndarray, value: np.ndarray) -> np.ndarray:
            """Store converged columns; return the mask of columns still iterating."""
            nonlocal active, max_it
            out[active[done]] = value[done]
            max_it = it
            active = active[~done]
            return ~done

        while it < maxiter and active.size:
            x1 = self._sweep(x, w, wsums)
            it += 1
            done = _row_max_abs(x1 - x) <= thr[active]
            if done.any():
                go = finish(done, x1)
                x, x1 = x[go], x1[go]
                if not active.size:
                    break
            x2 = self._sweep(x1, w, wsums)
            it += 1
            delta = x2 - x1
            done = _row_max_abs(delta) <= thr[active]
            if done.any():
                go = finish(done, x2)
                x, x1, x2, delta = x[go], x1[go], x2[go], delta[go]
                if not active.size:
                    break
            # Irons--Tuck extrapolation (weighted inner product: projections are
            # orthogonal in that metric). The extrapolated point stays in
            # x0 + span(fixed-effect dummies), so the fixed point is unchanged.
            d2 = delta - (x1 - x)
            denom = np.sum(ww * d2 * d2, axis=1)
            num = np.sum(ww * delta * d2, axis=1)
            pos = denom > 0
            # alpha = 0 (plain x2: x2 - 0 * delta == x2 exactly) where the step is degenerate
            alpha = np.where(pos, num / np.where(pos, denom, 1.0), 0.0)
            x = x2 - alpha[:, None] * delta
        if active.size:
            out[active] = x
            max_it = it
            warnings.warn(
                f"fixed-effect demeaning did not converge in {maxiter} sweeps (tol={tol:g}) "
                f"for {active.size} of {k} column(s)",
                ConvergenceWarning,
                stacklevel=3,
            )
        return out, max_it

    # ------------------------------------------------- degrees of freedom
    def nested_in(self, cluster: np.ndarray) -> list[bool]:
        """For each dimension: is every fixed-effect level inside a single cluster?"""
        c, _ = _as_codes(np.asarray(cluster))
        out = []
        for codes, g in zip(self.codes, self.n_levels):
            first = np.full(g, -1, dtype=np.int64)
            first[codes[::-1]] = c[::-1]  # cluster of the first occurrence of each level
            out.append(bool(np.all(first[codes] == c)))
        return out

    def n_absorbed(self, clusters: Sequence[np.ndarray] | None = None, rule: str = "nonnested") -> int:
        """Number of fixed-effect parameters used in the (n-1)/(n-k) small-sample factor.

        ``rule="nonnested"`` (pyfixest default, close to fixest's ``fixef.K="nested"``):
        sum of levels over dimensions, minus one for each dimension beyond the first;
        a dimension whose every level lies within one cluster of any cluster variable in
        ``clusters`` contributes one parameter instead of its levels.
        ``rule="full"`` ignores nesting; ``rule="none"`` returns 0.
        Redundancy from disconnected groups is not subtracted (as in pyfixest).
        """
        if rule == "none" or self.n_dims == 0:
            return 0
        if rule not in ("nonnested", "full"):
            raise ValueError(f"rule must be 'nonnested', 'full' or 'none', got {rule!r}")
        k_fe = int(sum(self.n_levels))
        k_adj = k_fe - (self.n_dims - 1)
        if rule == "full" or not clusters:
            return k_adj
        nested = np.zeros(self.n_dims, dtype=bool)
        for cl in clusters:
            nested |= np.array(self.nested_in(cl))
        k_nested = int(sum(g for g, f in zip(self.n_levels, nested) if f))
        return k_adj - k_nested + int(nested.sum())

    def all_zero_groups(self, y: np.ndarray) -> np.ndarray:
        """Mask of observations in a fixed-effect group (any dimension) whose outcome sums to zero."""
        y = np.asarray(y, dtype=float)
        drop = np.zeros(self.n_obs, dtype=bool)
        for codes, g in zip(self.codes, self.n_levels):
            s = np.bincount(codes, weights=(y > 0).astype(float), minlength=g)
            drop |= s[codes] == 0
        return drop


def absorb(
    X: np.ndarray,
    fe: Sequence[np.ndarray] | FixedEffects,
    weights: np.ndarray | None = None,
    tol: float = 1e-10,
    maxiter: int = 10_000,
) -> np.ndarray:
    """Weighted within-transformation of ``X`` (n, k) with respect to the fixed effects ``fe``.

    ``fe`` is a list of integer code vectors (one per dimension) or a :class:`FixedEffects`.
    The result is the residual of a weighted least-squares projection of each column on all
    fixed-effect dummies.
    """
    fx = fe if isinstance(fe, FixedEffects) else FixedEffects(fe)
    return fx.demean(np.asarray(X, dtype=float), weights=weights, tol=tol, maxiter=maxiter)


def singleton_mask(fe: Sequence[np.ndarray] | FixedEffects, max_rounds: int = 100) -> np.ndarray:
    """Observations to drop because they are alone in a fixed-effect group.

    Applied iteratively (dropping a singleton can create new ones), as reghdfe and
    pyfixest do. Singletons do not change point estimates but inflate the apparent
    sample size used in standard errors.
    """
    fx = fe if isinstance(fe, FixedEffects) else FixedEffects(fe)
    keep = np.ones(fx.n_obs, dtype=bool)
    if fx.n_dims == 0:
        return ~keep
    for _ in range(max_rounds):
        changed = False
        for codes, g in zip(fx.codes, fx.n_levels):
            cnt = np.bincount(codes, weights=keep.astype(float), minlength=g)
            single = keep & (cnt[codes] == 1)
            if single.any():
                keep &= ~single
                changed = True
        if not changed:
            break
    return ~keep


def collinear_columns(Xd: np.ndarray, X: np.ndarray | None = None, tol: float = 1e-9) -> np.ndarray:
    """Boolean mask of columns to drop as collinear (after demeaning).

    A column is dropped if its demeaned sum of squares is below ``tol`` times its raw
    sum of squares (collinear with the fixed effects) or if it is linearly dependent on
    earlier columns (sequential Gram-Schmidt on the demeaned columns). The dot products
    are written without BLAS (``einsum``): a threaded BLAS spends more time waking threads
    than computing them, and the permutation re-fits call this once per draw.
    """
    Xd = np.asarray(Xd, dtype=float)
    k = Xd.shape[1]
    drop = np.zeros(k, dtype=bool)
    ss_d = np.einsum("ij,ij->j", Xd, Xd)
    Xr = None if X is None else np.asarray(X, dtype=float)
    ss_raw = ss_d if Xr is None else np.einsum("ij,ij->j", Xr, Xr)
    drop |= ss_d <= tol * np.maximum(ss_raw, 1e-300)
    # sequential orthogonalisation for dependence among the remaining columns
    basis: list[np.ndarray] = []
    for j in range(k):
        if drop[j]:
            continue
        v = Xd[:, j].copy()
        for b in basis:
            v -= np.einsum("i,i->", b, v) * b
        nv = float(np.sqrt(np.einsum("i,i->", v, v)))
        if nv * nv <= tol * ss_d[j]:
            drop[j] = True
        else:
            basis.append(v / nv)
    return drop


@dataclass
class OLSFit:
    """Weighted least squares with absorbed fixed effects.

    ``Xd``/``yd`` are the weighted-demeaned regressors/outcome (not multiplied by
    sqrt(weights)); ``resid`` the within residuals ``yd - Xd @ beta`` (equal to the
    residuals of the full dummy regression); ``bread`` = (Xd' W Xd)^-1;
    ``scores`` = w * resid * Xd (rows sum to zero), the per-observation score contributions.
    """

    beta: np.ndarray
    resid: np.ndarray
    Xd: np.ndarray
    yd: np.ndarray
    weights: np.ndarray | None
    bread: np.ndarray
    scores: np.ndarray
    dropped_columns: np.ndarray
    fe: FixedEffects | None
    y: np.ndarray
    n_iter_demean: int = 0

    @property
    def fitted(self) -> np.ndarray:
        """Fitted values ``y - resid`` on the original scale (including fixed effects)."""
        return self.y - self.resid


def fit_wls(
    y: np.ndarray,
    X: np.ndarray,
    fe: Sequence[np.ndarray] | FixedEffects | None,
    weights: np.ndarray | None = None,
    tol: float = 1e-10,
    maxiter: int = 10_000,
    collin_tol: float = 1e-9,
) -> OLSFit:
    """Least squares of ``y`` on ``X`` and the absorbed fixed effects (Frisch--Waugh--Lovell).

    Columns collinear with the fixed effects or with each other are dropped (their
    coefficient is NaN and they are flagged in ``dropped_columns``).
    """
    y = np.asarray(y, dtype=float).ravel()
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    n, k = X.shape
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows, X has {n}")
    fx = None if fe is None else (fe if isinstance(fe, FixedEffects) else FixedEffects(fe))
    Z = np.column_stack([y, X])
    it = 0
    if fx is not None and fx.n_dims:
        Zd, it = fx.demean(Z, weights=weights, tol=tol, maxiter=maxiter, return_iterations=True)
    else:
        Zd = Z
    yd, Xd_all = Zd[:, 0], Zd[:, 1:]
    drop = collinear_columns(Xd_all, X, collin_tol) if k else np.zeros(0, dtype=bool)
    if drop.any():
        logger.info("dropping %d regressor(s) collinear with the fixed effects or each other", drop.sum())
    Xd = Xd_all[:, ~drop]
    w = None if weights is None else np.asarray(weights, dtype=float).ravel()
    Xw = Xd if w is None else Xd * w[:, None]
    XtX = Xw.T @ Xd
    bread = np.linalg.inv(XtX) if Xd.shape[1] else np.zeros((0, 0))
    b = bread @ (Xw.T @ yd) if Xd.shape[1] else np.zeros(0)
    resid = yd - Xd @ b
    beta = np.full(k, np.nan)
    beta[~drop] = b
    scores = Xd * (resid if w is None else w * resid)[:, None]
    out = OLSFit(
        beta=beta, resid=resid, Xd=Xd, yd=yd, weights=w, bread=bread, scores=scores,
        dropped_columns=drop, fe=fx, y=y, n_iter_demean=it,
    )
    return out


@dataclass
class PPMLFit:
    """Result of :func:`fit_ppml` on the estimation sample (rows where ``keep`` is True).

    Attributes
    ----------
    beta : coefficients on the log scale (NaN for dropped collinear columns).
    mu, eta : fitted means and linear predictor (including offset and fixed effects) on kept rows.
    keep : mask over the input rows; False for rows dropped as separated.
    dropped_zero_fe : mask over the input rows dropped because a fixed-effect group has only zero outcomes.
    dropped_fe_groups : per fixed-effect dimension, number of groups removed for all-zero outcomes.
    separated : mask over the input rows dropped by the iterative-rectifier (regressor) check.
    weights : final IRLS working weights (user weights x mu) on kept rows.
    Xd : regressors demeaned with the final working weights (kept columns only).
    resid : working residuals after demeaning (z~ - Xd beta).
    scores : w * resid * Xd, the score contributions (approximately X~ (y - mu)).
    bread : (Xd' W Xd)^-1, the inverse Hessian.
    """

    beta: np.ndarray
    mu: np.ndarray
    eta: np.ndarray
    converged: bool
    n_iter: int
    deviance: float
    keep: np.ndarray
    dropped_zero_fe: np.ndarray
    dropped_fe_groups: dict[str, int]
    separated: np.ndarray
    separation_checks: tuple[str, ...]
    weights: np.ndarray
    Xd: np.ndarray
    resid: np.ndarray
    scores: np.ndarray
    bread: np.ndarray
    dropped_columns: np.ndarray
    fe: FixedEffects | None
    y: np.ndarray
    possibly_separated: int = 0

    @property
    def n_obs(self) -> int:
        return int(self.keep.sum())


def _poisson_deviance(y: np.ndarray, mu: np.ndarray, w: np.ndarray | None = None) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(y > 0, y * np.log(y / mu), 0.0)
    d = 2.0 * (r - (y - mu))
    return float(np.sum(d if w is None else w * d))


def _separation_ir(
    y: np.ndarray,
    X: np.ndarray,
    fx: FixedEffects | None,
    tol: float = 1e-4,
    maxiter: int = 100,
) -> np.ndarray:
    """Iterative rectifier check (Correia, Guimaraes & Zylkin 2021, 'Verifying the existence
    of maximum likelihood estimates for generalized linear models').

    Regress U (1 for y == 0, else 0) on X and the fixed effects with weight N0/tol^2 on
    interior (y > 0) observations; replace U on boundary observations by max(U_hat, 0)
    and repeat. Boundary observations with U_hat > 0 at convergence are separated.
    """
    interior = y > 0
    if interior.all():
        return np.zeros(y.size, dtype=bool)
    omega = rectifier_weights(interior, tol)

    def demean(Z: np.ndarray) -> np.ndarray:
        return fx.demean(Z, weights=omega, tol=1e-12) if fx is not None and fx.n_dims else Z

    sep = rectifier_iterations(interior, X, omega, tol, maxiter, demean)
    if sep is None:
        warnings.warn("separation check (iterative rectifier) did not converge", ConvergenceWarning, stacklevel=3)
        return np.zeros(y.size, dtype=bool)
    return sep


def rectifier_weights(interior: np.ndarray, tol: float) -> np.ndarray:
    """Weights of the rectifier regressions: N0/tol^2 on interior (y > 0) rows, 1 on the others."""
    n0 = max(int(interior.sum()), 1)
    return np.where(interior, n0 / tol**2, 1.0)


def rectifier_iterations(
    interior: np.ndarray,
    X: np.ndarray,
    omega: np.ndarray,
    tol: float,
    maxiter: int,
    demean: Callable[[np.ndarray], np.ndarray],
    first: np.ndarray | None = None,
    collinear: Callable[[np.ndarray, np.ndarray], np.ndarray] = collinear_columns,
    cross: Callable[[np.ndarray, np.ndarray], np.ndarray] = lambda A, B: A.T @ B,
    times: Callable[[np.ndarray, np.ndarray], np.ndarray] = lambda A, b: A @ b,
) -> np.ndarray | None:
    """The rectifier steps of :func:`_separation_ir`: the mask of separated rows, or None if
    they do not converge in ``maxiter`` steps. ``demean`` partials the fixed effects out of the
    columns of its argument (weights ``omega``); ``first``: the demeaned ``[U0, X]`` of the first
    step if the caller has it; ``collinear``, ``cross`` (A'B) and ``times`` (Ab) are the linear
    algebra (callers may pass BLAS-free versions)."""
    U = (~interior).astype(float)
    for it in range(maxiter):
        Zd = first if it == 0 and first is not None else demean(np.column_stack([U, X]))
        ud, Xd = Zd[:, 0], Zd[:, 1:]
        if Xd.shape[1]:
            keepc = ~collinear(Xd, X)
            Xd = Xd[:, keepc]
            Xw = Xd * omega[:, None]
            b = np.linalg.lstsq(cross(Xw, Xd), cross(Xw, ud), rcond=None)[0]
            resid = ud - times(Xd, b)
        else:
            resid = ud
        uhat = U - resid
        within = (uhat > -0.1 * tol) & (uhat < tol)
        uhat = np.where(interior | within, 0.0, uhat)
        if (uhat >= 0).all():
            return uhat > 0
        U = np.where(interior, 0.0, np.maximum(uhat, 0.0))
    return None


@dataclass
class PPMLRows:
    """The checked inputs of a PPML fit and the rows it keeps after the separation checks
    (``keep``), with what was dropped and why; shared by the dense and the sparse fit."""

    y: np.ndarray
    offset: np.ndarray
    weights: np.ndarray | None
    fe: FixedEffects | None
    keep: np.ndarray
    dropped_zero: np.ndarray
    dropped_groups: dict[str, int]
    separated: np.ndarray
    separation: tuple[str, ...]

    def fit(self, *, mu: np.ndarray, y: np.ndarray, mean_y: float, **fields: Any) -> PPMLFit:
        """The :class:`PPMLFit` of an IRLS on the kept rows; counts (and logs) zero-outcome rows whose
        fitted mean is below 1e-10 times the mean outcome (a sign of undetected separation)."""
        possibly = int(np.sum((y == 0) & (mu < 1e-10 * mean_y)))
        if possibly:
            logger.warning("PPML: %d zero-outcome observations have fitted means near zero (possible separation)",
                           possibly)
        return PPMLFit(mu=mu, y=y, keep=self.keep, dropped_zero_fe=self.dropped_zero,
                       dropped_fe_groups=self.dropped_groups, separated=self.separated,
                       separation_checks=self.separation, possibly_separated=possibly, **fields)


def ppml_rows(
    y: np.ndarray,
    n: int,
    x_finite: bool,
    fe: Sequence[np.ndarray] | FixedEffects | None,
    offset: np.ndarray | None,
    weights: np.ndarray | None,
    separation: Sequence[str],
    separated_by: Callable[[np.ndarray, np.ndarray, FixedEffects | None], np.ndarray],
) -> PPMLRows:
    """Check a PPML fit's inputs (``n`` rows; ``x_finite``: every regressor value is finite) and
    apply the separation checks: ``"fe"`` drops the rows of fixed-effect groups whose outcome is
    all zero (counted per dimension); ``"ir"`` drops the rows that ``separated_by(y_kept,
    keep, fe_kept)`` flags (the iterative rectifier on the kept rows)."""
    y_all = np.asarray(y, dtype=float).ravel()
    if y_all.size != n:
        raise ValueError(f"y has {y_all.size} rows, X has {n}")
    if not np.all(np.isfinite(y_all)) or (y_all < 0).any():
        raise ValueError("Poisson outcome must be finite and non-negative")
    if not x_finite:
        raise ValueError("X contains NaN or infinite values")
    off_all = np.zeros(n) if offset is None else np.asarray(offset, dtype=float).ravel()
    if off_all.size != n or not np.all(np.isfinite(off_all)):
        raise ValueError("offset must be finite with one value per row")
    w_all = None if weights is None else np.asarray(weights, dtype=float).ravel()
    if w_all is not None and (w_all.size != n or not np.all(np.isfinite(w_all)) or (w_all < 0).any()):
        raise ValueError("weights must be finite, non-negative, one per row")
    unknown = set(separation) - {"fe", "ir"}
    if unknown:
        raise ValueError(f"unknown separation check(s) {sorted(unknown)}; use 'fe' and/or 'ir'")
    fx_all = None if fe is None else (fe if isinstance(fe, FixedEffects) else FixedEffects(fe))

    keep = np.ones(n, dtype=bool)
    dropped_zero = np.zeros(n, dtype=bool)
    dropped_groups: dict[str, int] = {}
    if fx_all is not None and "fe" in separation:
        for name, codes, g in zip(fx_all.names, fx_all.codes, fx_all.n_levels):
            s = np.bincount(codes, weights=(y_all > 0).astype(float), minlength=g)
            zero_levels = s == 0
            dropped_groups[name] = int(zero_levels.sum())
            dropped_zero |= zero_levels[codes]
        keep &= ~dropped_zero
        if dropped_zero.any():
            logger.info(
                "PPML: dropped %d observations in fixed-effect groups with only zero outcomes (%s)",
                dropped_zero.sum(), dropped_groups,
            )
    separated = np.zeros(n, dtype=bool)
    if "ir" in separation:
        fx_k = None if fx_all is None else fx_all.subset(keep)
        sep_k = separated_by(y_all[keep], keep, fx_k)
        if sep_k.any():
            separated[np.flatnonzero(keep)[sep_k]] = True
            keep &= ~separated
            logger.warning("PPML: dropped %d observations separated by the regressors", separated.sum())
    if keep.sum() == 0:
        raise ValueError("no observations left after removing separated observations")
    return PPMLRows(y=y_all, offset=off_all, weights=w_all, fe=fx_all, keep=keep, dropped_zero=dropped_zero,
                    dropped_groups=dropped_groups, separated=separated, separation=tuple(separation))


@dataclass
class IRLSState:
    """Where a Poisson IRLS stopped: ``eta``, ``mu`` after the last update; the last step's working
    weights ``weights``, coefficients ``delta`` (kept columns), demeaned working residuals ``resid``
    and demeaned regressors ``Xd`` (what the standard errors are evaluated at, as fixest does)."""

    eta: np.ndarray
    mu: np.ndarray
    weights: np.ndarray
    delta: np.ndarray
    resid: np.ndarray
    Xd: Any
    n_iter: int
    converged: bool
    deviance: float
    crit: float


def poisson_irls(
    y: np.ndarray,
    offset: np.ndarray,
    uw: np.ndarray,
    mu: np.ndarray,
    eta: np.ndarray,
    step: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray, Any]],
    tol: float,
    maxiter: int,
    initial: tuple[np.ndarray, np.ndarray, Any],
    min_steps: int = 1,
    polish: int = 0,
) -> IRLSState:
    """Iteratively reweighted least squares for Poisson with an offset and user weights ``uw``,
    from the fitted means ``mu`` (linear predictor ``eta``). Each iteration forms the working
    outcome ``z = eta - offset + y / mu - 1`` and weights ``uw * mu``; ``step(z, weights, it)``
    returns the weighted least-squares coefficients of the demeaned ``z`` on the demeaned
    regressors, the residuals and the demeaned regressors (dense or implicit: the caller's
    design). Stops when the relative change in deviance is below ``tol`` (fixest's criterion)
    and at least ``min_steps`` steps were taken, then takes ``polish`` more steps; ``initial``
    (delta, resid, Xd) stands for a fit that takes no step.

    ``polish`` is for warm starts. The standard errors are evaluated at the last step's working
    weights, the means of the step before it. Newton steps square the error, so the criterion is
    often first met once those means are at the optimum to machine precision, but it can be met
    one step earlier, with the means still off by up to about the square root of ``tol`` (from
    a start near the optimum, often). Two more steps put them at the optimum: warm-started fits
    are then at least as close to a fit iterated to a deviance change of 1e-16 as cold-started
    ones (whose t statistics were off by up to 3e-7 in the permutation tests' simulated panel).
    """
    last = _poisson_deviance(y, mu, uw)
    delta, resid, Xd = initial
    wts = uw * mu
    converged, it, crit = False, 0, np.inf
    stop = maxiter
    for it in range(1, maxiter + 1):
        z = eta - offset + y / mu - 1.0
        wts = uw * mu
        delta, resid, Xd = step(z, wts, it)
        eta = z - resid + offset
        mu = np.exp(eta)
        dev = _poisson_deviance(y, mu, uw)
        crit = abs(dev - last) / (0.1 + abs(last))
        last = dev
        if not converged and crit < tol and it >= min_steps:
            converged = True
            stop = min(maxiter, it + polish)
        if converged and it >= stop:
            break
    return IRLSState(eta=eta, mu=mu, weights=wts, delta=delta, resid=resid, Xd=Xd, n_iter=it, converged=converged,
                     deviance=last, crit=crit)


def fit_ppml(
    y: np.ndarray,
    X: np.ndarray,
    fe: Sequence[np.ndarray] | FixedEffects | None,
    offset: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    tol: float = 1e-10,
    maxiter: int = 100,
    separation: Sequence[str] = ("fe", "ir"),
    fe_tol: float = 1e-11,
    collin_tol: float = 1e-9,
    start_eta: np.ndarray | None = None,
) -> PPMLFit:
    """Poisson pseudo-maximum likelihood with absorbed fixed effects (IRLS).

    Model: E[y | X, FE] = exp(offset + X beta + sum of fixed effects). Each IRLS step
    demeans the working outcome and ``X`` with weights ``weights * mu`` and solves a
    weighted least-squares problem; iteration stops when the relative change in deviance
    is below ``tol`` (fixest's criterion).

    Separation (an estimate at +/- infinity) is handled before fitting:

    * ``"fe"``: observations in any fixed-effect group whose outcome is all zero are
      dropped (their fixed effect would be -inf); counted per dimension.
    * ``"ir"``: the iterative-rectifier linear-programming check for separation by the
      regressors together with the fixed effects; flagged rows are dropped.

    After fitting, zero-outcome rows with a fitted mean below 1e-10 times the mean
    outcome are counted in ``possibly_separated`` (a sign of undetected separation).
    Non-convergence is reported by ``converged=False`` and a :class:`ConvergenceWarning`.

    ``start_eta`` (one value per row, NaN where unknown): a linear predictor (offset included)
    to start from, e.g. a fit of the same model on a superset of the rows; the iterations then
    run two steps past the criterion (see :func:`poisson_irls`), so the fit ends at the optimum,
    within the IRLS tolerance of a cold start. Rows without a value start where a cold start does.
    """
    X_all = np.asarray(X, dtype=float)
    if X_all.ndim == 1:
        X_all = X_all[:, None]
    n, k = X_all.shape
    rows = ppml_rows(y, n, bool(np.all(np.isfinite(X_all))), fe, offset, weights, separation,
                     lambda y_k, keep, fx_k: _separation_ir(y_k, X_all[keep], fx_k))
    y_all, off_all, w_all, fx_all, keep = rows.y, rows.offset, rows.weights, rows.fe, rows.keep
    y_ = y_all[keep]
    X_ = X_all[keep]
    off = off_all[keep]
    uw = np.ones(y_.size) if w_all is None else w_all[keep]
    fx = None if fx_all is None else fx_all.subset(keep)

    prev: list[np.ndarray] = []  # previous (Z, Zd): warm start, as ppmlhdfe

    def demean(Z: np.ndarray, w: np.ndarray) -> np.ndarray:
        if fx is None or fx.n_dims == 0:
            return Z
        start = None if not prev else Z - (prev[0] - prev[1])
        Zd = fx.demean(Z, weights=w, tol=fe_tol, start=start)
        prev[:] = [Z, Zd]
        return Zd

    mean_y = float(np.average(y_, weights=uw))
    if mean_y <= 0:
        raise ValueError("all outcomes are zero in the estimation sample")
    mu = (y_ + mean_y) / 2.0
    eta = np.log(mu)
    polish = 0
    if start_eta is not None:
        start_eta = np.asarray(start_eta, dtype=float).ravel()
        if start_eta.size != n:
            raise ValueError(f"start_eta has {start_eta.size} values, expected one per row ({n})")
        given = start_eta[keep]
        eta = np.where(np.isfinite(given), given, eta)
        mu = np.exp(eta)
        polish = WARM_START_POLISH
    drop_cols = np.zeros(k, dtype=bool)

    def step(z: np.ndarray, wts: np.ndarray, it: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nonlocal drop_cols
        Zd = demean(np.column_stack([z, X_]), wts)
        zd, Xd_all = Zd[:, 0], Zd[:, 1:]
        if it == 1 and k:
            drop_cols = collinear_columns(Xd_all, X_, collin_tol)
        Xd = Xd_all[:, ~drop_cols]
        if not Xd.shape[1]:
            return np.zeros(0), zd, Xd
        Xw = Xd * wts[:, None]
        delta = np.linalg.solve(Xw.T @ Xd, Xw.T @ zd)
        return delta, zd - Xd @ delta, Xd

    st = poisson_irls(y_, off, uw, mu, eta, step, tol, maxiter, initial=(np.zeros(k), np.zeros(y_.size), X_),
                      polish=polish)
    if not st.converged:
        warnings.warn(
            f"PPML IRLS did not converge in {maxiter} iterations (relative deviance change {st.crit:.2e})",
            ConvergenceWarning,
            stacklevel=2,
        )
    # final quantities at the last working weights (as fixest/pyfixest)
    Xd, wts, resid = st.Xd, st.weights, st.resid
    bread = np.linalg.inv((Xd * wts[:, None]).T @ Xd) if Xd.shape[1] else np.zeros((0, 0))
    scores = Xd * (wts * resid)[:, None]
    beta = np.full(k, np.nan)
    beta[~drop_cols] = st.delta
    return rows.fit(beta=beta, mu=st.mu, eta=st.eta, converged=st.converged, n_iter=st.n_iter, deviance=st.deviance,
                    mean_y=mean_y, weights=wts, Xd=Xd, resid=resid, scores=scores, bread=bread,
                    dropped_columns=drop_cols, fe=fx, y=y_)


def recover_fe(
    resid_total: np.ndarray,
    fe: Sequence[np.ndarray] | FixedEffects,
    weights: np.ndarray | None = None,
    tol: float = 1e-12,
    maxiter: int = 10_000,
) -> list[np.ndarray]:
    """Fixed-effect coefficients from ``v = y - X beta`` (OLS) or ``eta - offset - X beta`` (PPML).

    Solves ``v ~ sum_d D_d a_d`` by alternating (weighted) group means. Normalisation:
    for every dimension after the first, the weighted mean of its effect is zero; the
    first dimension carries the level. Returns one array of coefficients per dimension.
    """
    fx = fe if isinstance(fe, FixedEffects) else FixedEffects(fe)
    v = np.asarray(resid_total, dtype=float).ravel()
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float).ravel()
    wsums = [np.bincount(c, weights=w, minlength=g) for c, g in zip(fx.codes, fx.n_levels)]
    coefs = [np.zeros(g) for g in fx.n_levels]
    for _ in range(maxiter):
        max_change = 0.0
        for d in range(fx.n_dims):
            partial = v - sum(coefs[e][fx.codes[e]] for e in range(fx.n_dims) if e != d)
            s = np.bincount(fx.codes[d], weights=w * partial, minlength=fx.n_levels[d])
            new = np.where(wsums[d] > 0, s / np.where(wsums[d] > 0, wsums[d], 1), 0.0)
            max_change = max(max_change, float(np.max(np.abs(new - coefs[d]))) if new.size else 0.0)
            coefs[d] = new
        if max_change < tol * max(1.0, float(np.max(np.abs(v)))):
            break
    for d in range(1, fx.n_dims):
        m = float(np.sum(wsums[d] * coefs[d]) / np.sum(wsums[d]))
        coefs[d] = coefs[d] - m
        coefs[0] = coefs[0] + m
    return coefs
