"""Least squares and Poisson PML with absorbed fixed effects for sparse regressors, without a dense
rows x regressors array.

The cell dummies of the extended TWFE regression (and their covariate interactions) have one or a
few non-zeros per row, but demeaned on unit and period effects every row of every column is non-zero:
a dense ``X~`` of 1M rows x 88 cells takes 700 MB, and the fit's working arrays several times that.
Here each demeaned column is kept as its fixed-effect coefficients instead: ``X~ = X - Z C`` with
``Z`` the sparse fixed-effect dummies and ``C`` (levels x columns) the coefficients of the projection
that :meth:`FixedEffects.demean` removed, so the columns equal the dense path's to rounding.
Cross-products, fitted values, score sums by cluster and the heteroskedasticity-robust meat are then
sparse products (``X~' W X~ = X'WX - X'WZ C - C'Z'WX + C'Z'WZ C``), at a cost of the non-zeros times
the columns instead of rows times columns squared (:class:`ImplicitColumns`).

:func:`fit_wls_sparse` and :func:`fit_ppml_sparse` take the steps of
:func:`~returnstudy.models._fe.fit_wls` and :func:`~returnstudy.models._fe.fit_ppml` (same demeaning,
warm starts, separation checks, collinearity rule and convergence criterion);
:func:`~returnstudy.models._common.fit_design` uses them when the design's ``X`` is scipy.sparse.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ._fe import FixedEffects, OLSFit, PPMLFit, ppml_rows

logger = logging.getLogger(__name__)

__all__ = ["DemeanedColumns", "ImplicitColumns", "ImplicitScores", "SparseOLSFit", "collinear_from_gram",
           "fit_ppml_sparse", "fit_wls_sparse"]


def _tcross(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A' B`` for tall, narrow arrays without BLAS: a threaded BLAS spends more time waking its threads
    than computing a k x k cross-product of a few thousand rows, and on a busy machine much more."""
    return np.einsum("ij,ik->jk", A, B)


def _diag(w: np.ndarray | None, n: int) -> sp.dia_matrix | None:
    return None if w is None else sp.diags(np.asarray(w, dtype=float).ravel(), shape=(n, n))


class ImplicitColumns:
    """An (n, m) array kept as a sum of sparse times dense factors, ``M = sum_t S_t D_t``
    (``S_t`` sparse (n, p_t), ``D_t`` dense (p_t, m)). Products with ``M`` expand the sum into sparse
    products (cost O(non-zeros x m + p x m^2), no dense n x m array)."""

    def __init__(self, terms: Sequence[tuple[sp.spmatrix, np.ndarray]]):
        self.terms = [(sp.csr_matrix(S, dtype=float), np.asarray(D, dtype=float)) for S, D in terms]
        n, m = self.terms[0][0].shape[0], self.terms[0][1].shape[1]
        for S, D in self.terms:
            if S.shape[0] != n or D.shape != (S.shape[1], m):
                raise ValueError(f"inconsistent factors: S {S.shape}, D {D.shape} for an ({n}, {m}) array")
        self._shape = (int(n), int(m))

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    def columns(self, keep: np.ndarray) -> ImplicitColumns:
        """The columns where ``keep`` is True."""
        keep = np.asarray(keep, dtype=bool)
        return ImplicitColumns([(S, D[:, keep]) for S, D in self.terms])

    def times(self, B: np.ndarray) -> ImplicitColumns:
        """``M B`` for a dense (m, q) ``B``, kept implicit."""
        return ImplicitColumns([(S, D @ B) for S, D in self.terms])

    def __add__(self, other: ImplicitColumns) -> ImplicitColumns:
        return ImplicitColumns(self.terms + other.terms)

    def __matmul__(self, b: np.ndarray) -> np.ndarray:
        """``M b`` for a vector ``b`` (m,)."""
        b = np.asarray(b, dtype=float)
        return sum(S @ (D @ b) for S, D in self.terms)

    def tdot(self, v: np.ndarray) -> np.ndarray:
        """``M' v`` (m,) for a vector ``v`` (n,)."""
        v = np.asarray(v, dtype=float)
        return sum(D.T @ (S.T @ v) for S, D in self.terms)

    def gram(self, w: np.ndarray | None = None) -> np.ndarray:
        """``M' diag(w) M`` (m, m) = ``sum_{t,u} D_t' (S_t' W S_u) D_u``."""
        W = _diag(w, self.shape[0])
        out = np.zeros((self.shape[1], self.shape[1]))
        for a, (Sa, Da) in enumerate(self.terms):
            SaW = Sa.T if W is None else (W @ Sa).T.tocsr()
            for b, (Sb, Db) in enumerate(self.terms):
                if b < a:
                    continue
                P = _tcross(Da, np.asarray((SaW @ Sb) @ Db))
                out += P if a == b else P + P.T
        return out

    def group_sums(self, codes: np.ndarray, n_groups: int, r: np.ndarray) -> np.ndarray:
        """(n_groups, m) sums of ``r_i M_i`` within the groups ``codes`` (0..n_groups-1)."""
        n = self.shape[0]
        ind = sp.csr_matrix((np.asarray(r, dtype=float), (np.asarray(codes), np.arange(n))), shape=(n_groups, n))
        return sum(np.asarray((ind @ S) @ D) for S, D in self.terms)

    def toarray(self) -> np.ndarray:
        """The dense (n, m) array (small problems and tests only)."""
        return sum(np.asarray(S @ D) for S, D in self.terms)


class DemeanedColumns(ImplicitColumns):
    """Sparse regressors net of their fixed-effect projection, ``X~ = X - Z C = X + Z N``.

    ``X`` (n, k) sparse regressors, ``Z`` (n, p) sparse fixed-effect dummies, ``N = -C`` (p, k) minus
    the fixed-effect coefficients of each column's projection (stored once, as the second factor);
    ``span_coef(v)`` gives the coefficients ``(Z'Z)^-1 Z'v`` of a vector ``v`` in the span of ``Z``;
    ``projection_coef(V, w)``, where :meth:`FixedEffects.demean` is the exact projection (else None), the
    coefficients ``(Z'WZ)^-1 Z'WV`` of the weighted projection of sparse columns ``V``.
    """

    def __init__(self, X: sp.spmatrix, Z: sp.spmatrix, N: np.ndarray,
                 span_coef: Callable[[np.ndarray], np.ndarray] | None = None,
                 projection_coef: Callable[[sp.spmatrix, np.ndarray | None], np.ndarray] | None = None):
        X = sp.csr_matrix(X, dtype=float)
        super().__init__([(X, np.eye(X.shape[1])), (Z, N)])
        self.X, self.Z = X, self.terms[1][0]
        self.N = self.terms[1][1]
        self.span_coef = span_coef
        self.projection_coef = projection_coef

    def columns(self, keep: np.ndarray) -> DemeanedColumns:
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            return self
        return DemeanedColumns(self.X[:, np.flatnonzero(keep)], self.Z, self.N[:, keep], self.span_coef,
                               self.projection_coef)

    def __matmul__(self, b: np.ndarray) -> np.ndarray:
        b = np.asarray(b, dtype=float)
        return self.X @ b + self.Z @ (self.N @ b)

    def times(self, B: np.ndarray) -> ImplicitColumns:
        return ImplicitColumns([(self.X, B), (self.Z, self.N @ B)])


class ImplicitScores:
    """Score contributions ``s_i = r_i X~_i`` (rows of ``X~`` times a row factor ``r``) kept implicitly.

    What the sandwich needs of them: ``cluster_sums(codes, g)``, the (g, k) sums of the scores
    within each cluster, and ``cross()``, ``sum_i s_i s_i'`` (the heteroskedasticity-robust meat).
    :func:`returnstudy.inference.cluster.vcov_details` accepts them in place of an (n, k) array.
    """

    def __init__(self, Xd: ImplicitColumns, r: np.ndarray):
        self.Xd = Xd
        self.r = np.asarray(r, dtype=float).ravel()
        if self.r.size != Xd.shape[0]:
            raise ValueError(f"row factor has {self.r.size} rows, X~ has {Xd.shape[0]}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.Xd.shape

    @property
    def ndim(self) -> int:
        return 2

    def cluster_sums(self, codes: np.ndarray, n_groups: int) -> np.ndarray:
        """(n_groups, k) sums of the scores within the groups ``codes`` (0..n_groups-1)."""
        return self.Xd.group_sums(codes, n_groups, self.r)

    def cross(self) -> np.ndarray:
        """``sum_i s_i s_i'`` (k, k)."""
        return self.Xd.gram(self.r**2)

    def toarray(self) -> np.ndarray:
        """The dense (n, k) scores (small problems and tests only)."""
        return self.Xd.toarray() * self.r[:, None]


@dataclass
class SparseOLSFit(OLSFit):
    """:class:`~returnstudy.models._fe.OLSFit` of sparse regressors: ``Xd`` is a
    :class:`DemeanedColumns` and ``scores`` an :class:`ImplicitScores` (both without a dense
    rows x regressors array; ``toarray()`` gives it for small problems)."""


def collinear_from_gram(gram: np.ndarray, ss_raw: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Columns to drop as collinear, from the Gram matrix ``X~'X~`` of the demeaned columns.

    The rule of :func:`~returnstudy.models._fe.collinear_columns`: a column whose demeaned sum of
    squares is below ``tol`` times its raw sum of squares ``ss_raw`` (collinear with the fixed
    effects), or whose squared residual on the earlier kept columns is below ``tol`` times its
    demeaned sum of squares (a Cholesky factor of the kept columns' Gram matrix instead of
    Gram-Schmidt on the rows).
    """
    gram = np.asarray(gram, dtype=float)
    k = gram.shape[0]
    ss_d = np.diag(gram).copy()
    drop = ss_d <= tol * np.maximum(np.asarray(ss_raw, dtype=float), 1e-300)
    basis: list[int] = []
    L = np.zeros((k, k))
    for j in range(k):
        if drop[j]:
            continue
        m = len(basis)
        z = sla.solve_triangular(L[:m, :m], gram[basis, j], lower=True) if m else np.zeros(0)
        r2 = ss_d[j] - float(z @ z)
        if r2 <= tol * ss_d[j]:
            drop[j] = True
            continue
        L[m, :m] = z
        L[m, m] = np.sqrt(r2)
        basis.append(j)
    return drop


class _FESpan:
    """Sparse dummies ``Z`` (n, p) of the fixed effects (redundant levels dropped), the map from a vector
    in their span to its coefficients (``coef(v) = (Z'Z)^-1 Z'v``) and, when :meth:`FixedEffects.demean`
    is the exact projection (two dimensions, one small: :class:`~returnstudy.models._fe.TwoWayProjection`),
    the exact weighted projection coefficients of sparse columns by one sparse solve."""

    def __init__(self, fx: FixedEffects | None, n: int):
        from ._fe import TwoWayProjection
        from .imputation import SparseFE

        self.n = n
        self.sfe = None if fx is None or fx.n_dims == 0 else SparseFE([np.asarray(c) for c in fx.codes],
                                                                        np.ones(n, dtype=bool))
        self.Z = sp.csr_matrix((n, 0)) if self.sfe is None else self.sfe.Z
        self.exact = self.sfe is not None and self.sfe.p > 0 and TwoWayProjection.for_(fx) is not None
        self._solve = self.sfe.factor(np.ones(n, dtype=bool)) if self.sfe is not None and self.sfe.p else None

    def coef(self, v: np.ndarray) -> np.ndarray:
        return np.zeros(0) if self._solve is None else self._solve(self.Z.T @ v)

    def projection_coef(self, X: sp.csc_matrix, w: np.ndarray | None) -> np.ndarray:
        """``(Z'WZ)^-1 Z'W X`` (p, k) for sparse ``X``: the exact weighted projection's coefficients."""
        assert self.sfe is not None
        solve = self._solve if w is None else self.sfe.factor(np.ones(self.n, dtype=bool), w=w)
        ZWX = self.Z.T @ (X if w is None else sp.diags(w) @ X)
        return np.asarray(solve(np.asarray(ZWX.todense())), dtype=float).reshape(self.Z.shape[1], X.shape[1])


def _demean_sparse(
    X: sp.csc_matrix, fx: FixedEffects | None, w: np.ndarray | None, tol: float, maxiter: int,
    span: _FESpan, cols: np.ndarray | None = None, start: DemeanedColumns | None = None, exact: bool = True,
) -> tuple[DemeanedColumns, int]:
    """``X~`` of the columns ``cols`` (default all) of sparse ``X``, as :meth:`FixedEffects.demean` gives
    them: where that is the exact projection (``span.exact``; with ``exact``), by one sparse solve for all
    columns; else each column demeaned on its own (warm start: the same column of ``start``). A warm
    start's coefficients are overwritten; the other columns keep theirs (zero without a start). Returns
    the demeaned columns and the largest number of sweeps (0: exact)."""
    n, k = X.shape
    Z = span.Z
    N = np.zeros((Z.shape[1], k)) if start is None else start.N  # a warm start's coefficients are overwritten
    it = 0
    absorbed = fx is not None and fx.n_dims > 0
    idx = np.arange(k) if cols is None else np.flatnonzero(cols)
    if absorbed and exact and span.exact and idx.size:
        N[:, idx] = -span.projection_coef(X[:, idx], w)
        return DemeanedColumns(X, Z, N, span.coef, span.projection_coef if span.exact else None), 0
    for j in idx:
        if not absorbed:
            break
        x = X[:, j].toarray().ravel()
        x0 = None if start is None else x + Z @ start.N[:, j]
        xd, it_j = fx.demean(x, weights=w, tol=tol, maxiter=maxiter, return_iterations=True, start=x0)
        it = max(it, it_j)
        if Z.shape[1]:
            N[:, j] = span.coef(xd - x)
    return DemeanedColumns(X, Z, N, span.coef, span.projection_coef if span.exact else None), it


def fit_wls_sparse(
    y: np.ndarray,
    X: sp.spmatrix,
    fe: Sequence[np.ndarray] | FixedEffects | None,
    weights: np.ndarray | None = None,
    tol: float = 1e-10,
    maxiter: int = 10_000,
    collin_tol: float = 1e-9,
) -> SparseOLSFit:
    """:func:`~returnstudy.models._fe.fit_wls` for sparse ``X``: the same estimates, with ``X~`` held as
    fixed-effect coefficients (memory O(rows + levels x columns) instead of O(rows x columns)).

    Every column is demeaned on its own by :meth:`FixedEffects.demean` (the dense path's arithmetic);
    the removed part ``x - x~`` lies in the span of the fixed-effect dummies ``Z`` and is stored as
    its coefficients ``(Z'Z)^-1 Z'(x - x~)``.
    """
    y = np.asarray(y, dtype=float).ravel()
    X = sp.csc_matrix(X, dtype=float)
    n, k = X.shape
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows, X has {n}")
    if not np.all(np.isfinite(X.data)):
        raise ValueError("X contains NaN or infinite values; drop them before demeaning")
    fx = None if fe is None else (fe if isinstance(fe, FixedEffects) else FixedEffects(fe))
    w = None if weights is None else np.asarray(weights, dtype=float).ravel()
    it = 0
    if fx is not None and fx.n_dims:
        yd, it = fx.demean(y, weights=w, tol=tol, maxiter=maxiter, return_iterations=True)
    else:
        yd = y.copy()
    Xd_all, it_x = _demean_sparse(X, fx, w, tol, maxiter, _FESpan(fx, n))
    it = max(it, it_x)
    gram = Xd_all.gram()
    gram_w = gram if w is None else Xd_all.gram(w)
    xty = Xd_all.tdot(yd if w is None else w * yd)
    ss_raw = np.asarray(X.multiply(X).sum(axis=0)).ravel()
    drop = collinear_from_gram(gram, ss_raw, collin_tol) if k else np.zeros(0, dtype=bool)
    if drop.any():
        logger.info("dropping %d regressor(s) collinear with the fixed effects or each other", drop.sum())
    keep = ~drop
    Xd = Xd_all.columns(keep)
    XtX = gram_w[np.ix_(keep, keep)]
    bread = np.linalg.inv(XtX) if keep.any() else np.zeros((0, 0))
    b = bread @ xty[keep] if keep.any() else np.zeros(0)
    resid = yd - Xd @ b if keep.any() else yd.copy()
    beta = np.full(k, np.nan)
    beta[keep] = b
    scores = ImplicitScores(Xd, resid if w is None else w * resid)
    return SparseOLSFit(beta=beta, resid=resid, Xd=Xd, yd=yd, weights=w, bread=bread, scores=scores,
                        dropped_columns=drop, fe=fx, y=y, n_iter_demean=it)


def _separation_ir_sparse(
    y: np.ndarray, X: sp.csc_matrix, fx: FixedEffects | None, tol: float = 1e-4, maxiter: int = 100,
) -> np.ndarray:
    """:func:`~returnstudy.models._fe._separation_ir` (iterative rectifier) for sparse ``X``: the same
    steps, with ``X`` demeaned once (its weights do not change between the steps) and kept implicit."""
    from ._fe import ConvergenceWarning, rectifier_weights

    interior = y > 0
    if interior.all():
        return np.zeros(y.size, dtype=bool)
    omega = rectifier_weights(interior, tol)
    absorbed = fx is not None and fx.n_dims > 0
    n, k = X.shape
    keepc = np.zeros(0, dtype=bool)
    if k:
        # column by column as the dense check (weights of 1e13:1 are no case for one sparse solve)
        Xd_all, _ = _demean_sparse(X, fx, omega, 1e-12, 10_000, _FESpan(fx, n), exact=False)
        keepc = ~collinear_from_gram(Xd_all.gram(), np.asarray(X.multiply(X).sum(axis=0)).ravel())
        Xd = Xd_all.columns(keepc)
        XwX = Xd.gram(omega)
    U = (~interior).astype(float)
    for _ in range(maxiter):
        ud = fx.demean(U, weights=omega, tol=1e-12) if absorbed else U
        if keepc.any():
            b = np.linalg.lstsq(XwX, Xd.tdot(omega * ud), rcond=None)[0]
            resid = ud - Xd @ b
        else:
            resid = ud
        uhat = U - resid
        within = (uhat > -0.1 * tol) & (uhat < tol)
        uhat = np.where(interior | within, 0.0, uhat)
        if (uhat >= 0).all():
            return uhat > 0
        U = np.where(interior, 0.0, np.maximum(uhat, 0.0))
    warnings.warn("separation check (iterative rectifier) did not converge", ConvergenceWarning, stacklevel=3)
    return np.zeros(y.size, dtype=bool)


def fit_ppml_sparse(
    y: np.ndarray,
    X: sp.spmatrix,
    fe: Sequence[np.ndarray] | FixedEffects | None,
    offset: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    tol: float = 1e-10,
    maxiter: int = 100,
    separation: Sequence[str] = ("fe", "ir"),
    fe_tol: float = 1e-11,
    collin_tol: float = 1e-9,
) -> PPMLFit:
    """:func:`~returnstudy.models._fe.fit_ppml` for sparse ``X``: the same IRLS steps (warm-started
    demeaning, the same separation checks and convergence rule), with the demeaned regressors of each
    step held as fixed-effect coefficients. ``Xd`` of the result is a :class:`DemeanedColumns`, ``scores``
    an :class:`ImplicitScores`."""
    from ._fe import ConvergenceWarning, poisson_irls

    X_all = sp.csr_matrix(X, dtype=float)
    n, k = X_all.shape
    def separated_by(y_k: np.ndarray, keep: np.ndarray, fx_k: FixedEffects | None) -> np.ndarray:
        return _separation_ir_sparse(y_k, sp.csc_matrix(X_all[np.flatnonzero(keep)]), fx_k)

    rows = ppml_rows(y, n, bool(np.all(np.isfinite(X_all.data))), fe, offset, weights, separation, separated_by)
    y_all, off_all, w_all, fx_all, keep = rows.y, rows.offset, rows.weights, rows.fe, rows.keep
    y_ = y_all[keep]
    X_ = sp.csc_matrix(X_all[np.flatnonzero(keep)])
    off = off_all[keep]
    uw = np.ones(y_.size) if w_all is None else w_all[keep]
    fx = None if fx_all is None else fx_all.subset(keep)
    absorbed = fx is not None and fx.n_dims > 0
    span = _FESpan(fx, y_.size)
    Z = span.Z
    ss_raw = np.asarray(X_.multiply(X_).sum(axis=0)).ravel()

    mean_y = float(np.average(y_, weights=uw))
    if mean_y <= 0:
        raise ValueError("all outcomes are zero in the estimation sample")
    mu = (y_ + mean_y) / 2.0
    eta = np.log(mu)
    drop_cols = np.zeros(k, dtype=bool)
    Xd_all: DemeanedColumns | None = None
    prev_z: tuple[np.ndarray, np.ndarray] | None = None  # previous (z, z~): warm start, as ppmlhdfe

    def step(z: np.ndarray, wts: np.ndarray, it: int) -> tuple[np.ndarray, np.ndarray, DemeanedColumns]:
        nonlocal drop_cols, Xd_all, prev_z
        if absorbed:
            start = None if prev_z is None else z - (prev_z[0] - prev_z[1])
            zd = fx.demean(z, weights=wts, tol=fe_tol, start=start)
            prev_z = (z, zd)
        else:
            zd = z
        Xd_all, _ = _demean_sparse(X_, fx, wts, fe_tol, 10_000, span, cols=~drop_cols, start=Xd_all)
        if it == 1 and k:
            drop_cols = collinear_from_gram(Xd_all.gram(), ss_raw, collin_tol)
        Xd = Xd_all.columns(~drop_cols)
        if not Xd.shape[1]:
            return np.zeros(0), zd, Xd
        delta = np.linalg.solve(Xd.gram(wts), Xd.tdot(wts * zd))
        return delta, zd - Xd @ delta, Xd

    empty = DemeanedColumns(X_[:, []], Z, np.zeros((Z.shape[1], 0)), span.coef,
                            span.projection_coef if span.exact else None)
    st = poisson_irls(y_, off, uw, mu, eta, step, tol, maxiter, initial=(np.zeros(k), np.zeros(y_.size), empty))
    if not st.converged:
        warnings.warn(f"PPML IRLS did not converge in {maxiter} iterations (relative deviance change {st.crit:.2e})",
                      ConvergenceWarning, stacklevel=2)
    Xd, wts, resid = st.Xd, st.weights, st.resid
    bread = np.linalg.inv(Xd.gram(wts)) if Xd.shape[1] else np.zeros((0, 0))
    scores = ImplicitScores(Xd, wts * resid)
    beta = np.full(k, np.nan)
    beta[~drop_cols] = st.delta
    return rows.fit(beta=beta, mu=st.mu, eta=st.eta, converged=st.converged, n_iter=st.n_iter, deviance=st.deviance,
                    mean_y=mean_y, weights=wts, Xd=Xd, resid=resid, scores=scores, bread=bread,
                    dropped_columns=drop_cols, fe=fx, y=y_)
