"""Tests of linear moment inequalities with linear nuisance parameters (Andrews, Roth & Pakes).

The null hypothesis is that some nuisance vector ``t`` satisfies ``E[Y] - X t <= 0`` where
``Y ~ N(mu, Sigma_Y)`` is observed. The statistic is the studentised LP value

``eta = min_{t, e} e  subject to  Y - X t <= e * sigma``,  ``sigma = sqrt(diag(Sigma_Y))``,

equal by LP duality to ``max_g g'Y`` over the vertices ``g`` of the dual polytope
``{g >= 0, X'g = 0, sigma'g = 1}``. The dual polytope does not depend on ``Y``, so its
vertices are enumerated once (every basis of ``k = rank(X) + 1`` moments) and the statistic,
the optimal vertex and the conditioning bounds are then closed-form matrix products for
any number of ``Y`` at once. This makes a test inversion over a fine grid a few matrix
multiplications instead of thousands of linear programs.

* Conditional test: given the optimal vertex ``g*`` and the statistic
  ``S = Y - c eta`` (``c = Sigma_Y g* / g*'Sigma_Y g*``), ``eta`` is normal with variance
  ``g*'Sigma_Y g*`` truncated to ``[V_lo, V_up]``, the range of values for which ``g*`` stays
  optimal; the least favourable mean is zero. Reject when ``eta > max(0, q)`` with ``q`` the
  ``1 - alpha`` quantile of that truncated normal.
* Least-favourable (LF) test: reject when ``eta`` exceeds the ``1 - kappa`` quantile of
  ``eta`` at ``mu = 0`` (simulated with a seed; the draws are scaled by the symmetric square
  root of ``Sigma_Y``, so the critical value does not depend on which eigenbasis a
  repeated eigenvalue gets).
* Conditional-least-favourable hybrid (C-LF): reject when the LF test at ``kappa`` rejects;
  otherwise run the conditional test at level ``(alpha - kappa) / (1 - kappa)`` with
  ``V_up`` capped at the LF critical value.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

from ._gaussian import symmetric_sqrt

logger = logging.getLogger(__name__)

__all__ = ["MomentInequalityTest", "MAX_BASES", "LF_DRAWS"]

#: largest number of candidate bases enumerated for the dual vertices
MAX_BASES = 3_000_000

#: draws for the least-favourable critical value, the 1 - kappa = 99.5% quantile at alpha = 5%:
#: 1,000 draws leave about five beyond it, and on the report's event studies the breakdown
#: Mbar then moved by up to 0.05 from seed to seed; with 10,000 by at most its search tolerance
#: (0.01). The draws cost milliseconds.
LF_DRAWS = 10_000


def _dual_vertices(X: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Vertices (rows) of ``{g >= 0, X'g = 0, sigma'g = 1}``; ``X`` has full column rank."""
    m, r = X.shape
    B = np.vstack([X.T, sigma[None, :]])  # (r+1) x m
    k = r + 1
    n_bases = 1
    for i in range(k):
        n_bases = n_bases * (m - i) // (i + 1)
    if n_bases > MAX_BASES:
        raise ValueError(
            f"{n_bases} candidate bases ({m} moments, {r} nuisance directions) exceed the enumeration limit "
            f"{MAX_BASES}: use fewer pre/post periods or a smaller target"
        )
    combos = np.array(list(itertools.combinations(range(m), k)), dtype=np.intp)
    Bs = np.transpose(B[:, combos], (1, 0, 2))  # (n, k, k): column j of basis = B[:, combos[., j]]
    scale = np.prod(np.linalg.norm(Bs, axis=1), axis=1)
    det = np.linalg.det(Bs)
    ok = np.abs(det) > 1e-10 * np.where(scale > 0, scale, 1.0)
    if not ok.any():
        return np.zeros((0, m))
    rhs = np.zeros((int(ok.sum()), k, 1))
    rhs[:, -1, 0] = 1.0
    sol = np.linalg.solve(Bs[ok], rhs)[:, :, 0]
    feas = np.all(sol >= -1e-9 * np.maximum(1.0, np.abs(sol).max(axis=1, keepdims=True)), axis=1)
    sol, cmb = np.clip(sol[feas], 0.0, None), combos[ok][feas]
    G = np.zeros((sol.shape[0], m))
    np.put_along_axis(G, cmb, sol, axis=1)
    if G.shape[0] > 1:
        G = np.unique(np.round(G, 12), axis=0)
    return G


def _upper_tail(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """P(Z > x | lo <= Z <= hi) for standard normal Z (vectorised, stable in both tails)."""
    x, lo, hi = np.broadcast_arrays(np.asarray(x, float), np.asarray(lo, float), np.asarray(hi, float))
    out = np.full(x.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        right = lo > 0  # whole interval in the right tail: work with upper-tail probabilities
        # right: (Q(x) - Q(hi)) / (Q(lo) - Q(hi)), Q(z) = Phi(-z)
        lqx, lqa, lqb = log_ndtr(-x), log_ndtr(-lo), log_ndtr(-hi)
        r = np.exp(lqx - lqa) * (-np.expm1(lqb - lqx)) / (-np.expm1(lqb - lqa))
        # left: 1 - (Phi(x) - Phi(lo)) / (Phi(hi) - Phi(lo))
        lpx, lpa, lpb = log_ndtr(x), log_ndtr(lo), log_ndtr(hi)
        left = 1.0 - np.exp(lpx - lpb) * (-np.expm1(lpa - lpx)) / (-np.expm1(lpa - lpb))
        out = np.where(right, r, left)
    out = np.where(x >= hi, 0.0, out)
    out = np.where(x <= lo, 1.0, out)
    return np.where(hi - lo <= 0, np.nan, out)


@dataclass
class MomentInequalityTest:
    """Test of ``E[y0 - theta * a] - X t <= 0`` for each candidate ``theta``.

    ``y0`` (m,), ``a`` (m,), ``X`` (m, p), ``sigma_y`` (m, m): moments ``Y(theta) = y0 - theta a``.
    ``method``: ``"conditional"`` or ``"C-LF"``; ``kappa`` the LF first-stage size
    (default ``alpha / 10``, as recommended by Andrews, Roth & Pakes); ``n_sim`` draws and
    ``seed`` for the LF critical value (:data:`LF_DRAWS`).
    """

    y0: np.ndarray
    a: np.ndarray
    X: np.ndarray
    sigma_y: np.ndarray
    alpha: float = 0.05
    method: str = "C-LF"
    kappa: float | None = None
    n_sim: int = LF_DRAWS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("conditional", "C-LF"):
            raise ValueError(f"method must be 'conditional' or 'C-LF', got {self.method!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha}: must be in (0, 1)")
        self.sd = np.sqrt(np.clip(np.diag(self.sigma_y), 0.0, None))
        if np.any(self.sd <= 1e-12 * max(1.0, float(self.sd.max(initial=0.0)))):
            raise ValueError("a moment has zero variance: the covariance matrix of the coefficients is singular")
        X = np.asarray(self.X, dtype=float).reshape(len(self.y0), -1)
        if X.shape[1]:
            U, s, _ = np.linalg.svd(X, full_matrices=False)
            rank = int(np.sum(s > 1e-10 * s[0])) if s.size and s[0] > 0 else 0
            X = U[:, :rank]
        self.Xr = X
        self.G = _dual_vertices(X, self.sd)
        if self.G.shape[0] == 0:
            logger.info("moment test: dual polytope empty, the moments can always be satisfied")
        self.kappa_ = self.alpha / 10 if self.kappa is None else float(self.kappa)
        self.lf_cv = np.inf
        if self.method == "C-LF" and self.G.shape[0]:
            L = symmetric_sqrt(self.sigma_y)  # seeded draws that move continuously with Sigma_Y
            z = np.random.default_rng(self.seed).standard_normal((L.shape[1], self.n_sim))
            eta_sim = np.max(self.G @ (L @ z), axis=0)
            self.lf_cv = float(np.quantile(eta_sim, 1 - self.kappa_))

    def statistic(self, theta: np.ndarray) -> np.ndarray:
        """``eta(theta)`` for an array of theta (``-inf`` when the dual polytope is empty)."""
        theta = np.atleast_1d(np.asarray(theta, dtype=float))
        if self.G.shape[0] == 0:
            return np.full(theta.shape, -np.inf)
        Y = self.y0[:, None] - self.a[:, None] * theta[None, :]
        return np.max(self.G @ Y, axis=0)

    def reject(self, theta: np.ndarray) -> np.ndarray:
        """Boolean array: is ``theta`` rejected at level ``alpha``?"""
        theta = np.atleast_1d(np.asarray(theta, dtype=float))
        if self.G.shape[0] == 0:
            return np.zeros(theta.shape, dtype=bool)
        G = self.G
        Y = self.y0[:, None] - self.a[:, None] * theta[None, :]  # m x n
        GY = G @ Y
        best = np.argmax(GY, axis=0)
        eta = GY[best, np.arange(theta.size)]
        gam = G[best]  # n x m
        SYg = self.sigma_y @ gam.T  # m x n
        s2 = np.einsum("mn,nm->n", SYg, gam)
        c = SYg / s2
        S = Y - c * eta
        den = 1.0 - G @ c
        num = G @ S
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = num / den
        vlo = np.max(np.where(den > 1e-10, ratio, -np.inf), axis=0)
        vup = np.min(np.where(den < -1e-10, ratio, np.inf), axis=0)
        vlo = np.minimum(vlo, eta)
        vup = np.maximum(vup, eta)
        level = self.alpha
        first = np.zeros(theta.size, dtype=bool)
        if self.method == "C-LF":
            first = eta > self.lf_cv
            vup = np.minimum(vup, self.lf_cv)
            level = (self.alpha - self.kappa_) / (1 - self.kappa_)
        sd = np.sqrt(s2)
        tail = _upper_tail(eta / sd, vlo / sd, vup / sd)
        second = (eta > 0) & (tail < level)
        return first | second
