"""One BLAS thread inside the package's numerical blocks (report, CLI), the caller's setting after."""

from __future__ import annotations

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from returnstudy._threads import one_blas_thread  # noqa: E402


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_one_blas_thread_inside_the_block_and_the_callers_setting_after() -> None:
    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS loaded
    if not _blas_threads():
        pytest.skip("no BLAS library visible to threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert set(_blas_threads()) == {2}
        with one_blas_thread():
            assert set(_blas_threads()) == {1}
            a = np.random.default_rng(0).normal(size=(300, 40))
            inside = a.T @ a
        assert set(_blas_threads()) == {2}
    np.testing.assert_allclose(inside, a.T @ a, rtol=1e-12)
