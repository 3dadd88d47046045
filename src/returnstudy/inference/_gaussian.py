"""Draws from N(0, Sigma) that move continuously with Sigma.

Scaling standard normal draws by ``V diag(sqrt(lambda))`` (one eigenbasis of Sigma) gives the
right distribution, but with a repeated or nearly repeated eigenvalue the basis that ``eigh``
returns can rotate inside that eigenspace under a perturbation of Sigma at rounding level
(another BLAS thread count, another numpy), and the seeded draws rotate with it: a critical
value simulated from them then moves by its whole Monte Carlo error. The symmetric square
root ``V diag(sqrt(lambda)) V'`` is the same for every eigenbasis, so seeded draws scaled by
it change only as much as Sigma does.
"""

from __future__ import annotations

import numpy as np

__all__ = ["symmetric_sqrt"]


def symmetric_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric positive semi-definite square root of ``cov`` (symmetrised first; negative
    eigenvalues from rounding count as zero): ``z @ symmetric_sqrt(cov)`` has covariance ``cov``
    for rows ``z`` of independent standard normals."""
    cov = np.asarray(cov, dtype=float)
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
