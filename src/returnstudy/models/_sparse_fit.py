"""Least squares with absorbed fixed effects for sparse regressors, without a dense rows x regressors array.

The cell dummies of the extended TWFE regression (and their covariate interactions) have one or a
few non-zeros per row, but demeaned on unit and period effects every row of every column is non-zero:
a dense ``X~`` of 1M rows x 88 cells takes 700 MB, and the fit's working arrays several times that.
Here each demeaned column is kept as its fixed-effect coefficients instead: ``X~ = X - Z C`` with
``Z`` the sparse fixed-effect dummies and ``C`` (levels x columns) the coefficients of the projection
that :meth:`FixedEffects.demean` removed, so the columns equal the dense path's to rounding.
Cross-products, fitted values, score sums by cluster and the heteroskedasticity-robust meat are then
sparse products (``X~' W X~ = X'WX - X'WZ C - C'Z'WX + C'Z'WZ C``), at a cost of the non-zeros times
the columns instead of rows times columns squared.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ._fe import FixedEffects, OLSFit

logger = logging.getLogger(__name__)

__all__ = ["DemeanedColumns", "ImplicitScores", "SparseOLSFit", "collinear_from_gram", "fit_wls_sparse"]


def _diag(w: np.ndarray | None, n: int) -> sp.dia_matrix | None:
    return None if w is None else sp.diags(np.asarray(w, dtype=float).ravel(), shape=(n, n))


class DemeanedColumns:
    """Sparse regressors net of their fixed-effect projection, ``X~ = X - Z C``.

    ``X`` (n, k) sparse regressors, ``Z`` (n, p) sparse fixed-effect dummies, ``C`` (p, k) the
    fixed-effect coefficients of each column's projection. Products with ``X~`` expand
    ``X - Z C`` into sparse products (cost O(non-zeros x k + p x k^2), no dense n x k array).
    """

    def __init__(self, X: sp.spmatrix, Z: sp.spmatrix, C: np.ndarray):
        self.X = sp.csr_matrix(X, dtype=float)
        self.Z = sp.csr_matrix(Z, dtype=float)
        self.C = np.asarray(C, dtype=float)
        if self.X.shape[0] != self.Z.shape[0] or self.C.shape != (self.Z.shape[1], self.X.shape[1]):
            raise ValueError(f"inconsistent shapes: X {self.X.shape}, Z {self.Z.shape}, C {self.C.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape

    def columns(self, keep: np.ndarray) -> DemeanedColumns:
        """The columns where ``keep`` is True."""
        keep = np.asarray(keep, dtype=bool)
        return DemeanedColumns(self.X[:, np.flatnonzero(keep)], self.Z, self.C[:, keep])

    def __matmul__(self, b: np.ndarray) -> np.ndarray:
        """``X~ b`` for a vector ``b`` (k,)."""
        b = np.asarray(b, dtype=float)
        return self.X @ b - self.Z @ (self.C @ b)

    def gram(self, w: np.ndarray | None = None) -> np.ndarray:
        """``X~' diag(w) X~`` (k, k) = ``X'WX - X'WZ C - (X'WZ C)' + C'Z'WZ C``."""
        W = _diag(w, self.shape[0])
        XW = self.X.T if W is None else (W @ self.X).T.tocsr()
        XWX = (XW @ self.X).toarray()
        A = (XW @ self.Z) @ self.C
        ZWZ = self.Z.T @ (self.Z if W is None else W @ self.Z)
        return XWX - A - A.T + self.C.T @ (ZWZ @ self.C)

    def tdot(self, v: np.ndarray) -> np.ndarray:
        """``X~' v`` (k,) for a vector ``v`` (n,)."""
        v = np.asarray(v, dtype=float)
        return self.X.T @ v - self.C.T @ (self.Z.T @ v)

    def group_sums(self, codes: np.ndarray, n_groups: int, r: np.ndarray) -> np.ndarray:
        """(n_groups, k) sums of ``r_i X~_i`` within the groups ``codes`` (0..n_groups-1)."""
        n = self.shape[0]
        ind = sp.csr_matrix((np.asarray(r, dtype=float), (np.asarray(codes), np.arange(n))), shape=(n_groups, n))
        return (ind @ self.X).toarray() - (ind @ self.Z) @ self.C

    def toarray(self) -> np.ndarray:
        """The dense (n, k) array (small problems and tests only)."""
        return self.X.toarray() - self.Z @ self.C


class ImplicitScores:
    """Score contributions ``s_i = r_i X~_i`` (rows of ``X~`` times a row factor ``r``) kept implicitly.

    What the sandwich needs of them: ``cluster_sums(codes, g)``, the (g, k) sums of the scores
    within each cluster, and ``cross()``, ``sum_i s_i s_i'`` (the heteroskedasticity-robust meat).
    :func:`returnstudy.inference.cluster.vcov_details` accepts them in place of an (n, k) array.
    """

    def __init__(self, Xd: DemeanedColumns, r: np.ndarray):
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
    from .imputation import SparseFE

    y = np.asarray(y, dtype=float).ravel()
    X = sp.csc_matrix(X, dtype=float)
    n, k = X.shape
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows, X has {n}")
    if not np.all(np.isfinite(X.data)):
        raise ValueError("X contains NaN or infinite values; drop them before demeaning")
    fx = None if fe is None else (fe if isinstance(fe, FixedEffects) else FixedEffects(fe))
    w = None if weights is None else np.asarray(weights, dtype=float).ravel()
    absorbed = fx is not None and fx.n_dims > 0
    it = 0
    if absorbed:
        yd, it = fx.demean(y, weights=w, tol=tol, maxiter=maxiter, return_iterations=True)
        sfe = SparseFE([np.asarray(c) for c in fx.codes], np.ones(n, dtype=bool))
        Z = sfe.Z
        solve = sfe.factor(np.ones(n, dtype=bool)) if sfe.p else None
        C = np.zeros((sfe.p, k))
        for j in range(k):
            x = X[:, j].toarray().ravel()
            xd, it_j = fx.demean(x, weights=w, tol=tol, maxiter=maxiter, return_iterations=True)
            it = max(it, it_j)
            if solve is not None:
                C[:, j] = solve(Z.T @ (x - xd))
    else:
        yd = y.copy()
        Z, C = sp.csr_matrix((n, 0)), np.zeros((0, k))
    Xd_all = DemeanedColumns(X, Z, C)
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
