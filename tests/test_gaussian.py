"""symmetric_sqrt: the PSD square root that seeded normal draws are scaled by (critical values of
C-LF, the pre-test power, sup-t bands), against scipy's sqrtm and its defining properties."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from returnstudy.inference._gaussian import symmetric_sqrt


def _with_repeated_eigenvalue(rng: np.random.Generator, m: int = 6) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return Q @ np.diag([3.0, 1.0, 1.0, 1.0, 0.4, 0.0][:m]) @ Q.T  # a threefold eigenvalue and a zero one


def test_square_root_squares_to_the_covariance_and_equals_scipy_sqrtm() -> None:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    pd_cov = A @ A.T + 0.1 * np.eye(5)
    root = symmetric_sqrt(pd_cov)
    np.testing.assert_allclose(root, root.T, atol=1e-13)
    np.testing.assert_allclose(root @ root, pd_cov, atol=1e-12)
    np.testing.assert_allclose(root, np.real(linalg.sqrtm(pd_cov)), atol=1e-10)
    singular = _with_repeated_eigenvalue(rng)  # rank 5 of 6: still a square root, and PSD
    root = symmetric_sqrt(singular)
    np.testing.assert_allclose(root @ root, singular, atol=1e-12)
    assert np.linalg.eigvalsh(root).min() > -1e-7


def test_square_root_moves_little_when_the_covariance_moves_little() -> None:
    """Perturbations of 1e-13: the threefold eigenvalue's eigenbasis may turn arbitrarily, the
    root does not (it moves by at most the square root of the perturbation, at the zero eigenvalue)."""
    rng = np.random.default_rng(1)
    cov = _with_repeated_eigenvalue(rng)
    root = symmetric_sqrt(cov)
    for _ in range(5):
        E = rng.standard_normal(cov.shape) * 1e-13
        assert np.abs(symmetric_sqrt(cov + E + E.T) - root).max() < 1e-5
    pd_cov = cov + 0.5 * np.eye(len(cov))  # away from zero the root is smooth: changes of the order of the perturbation
    E = rng.standard_normal(cov.shape) * 1e-13
    assert np.abs(symmetric_sqrt(pd_cov + E + E.T) - symmetric_sqrt(pd_cov)).max() < 1e-11
