"""One BLAS thread for the package's numerical work (``threadpoolctl``).

The package's matrix products are small (thousands of rows by a handful of columns, k x k
solves, G x draws bootstrap blocks). A multithreaded BLAS gains nothing on them and, when other
processes share the cores, its waiting threads spin: a score-bootstrap block of 140 clusters x
999 draws took 11 ms with two OpenBLAS threads on a busy 2-core machine and 2.8 ms with one.
Results also stop depending on the machine's thread count (reductions in a threaded BLAS add in
an order that depends on it: the pre-trend sensitivity tables moved by 1e-7 relative).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["one_blas_thread"]


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit every BLAS library loaded in this process to one thread for the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
