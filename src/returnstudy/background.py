"""Independent pieces of a long run computed in worker processes while the caller goes on.

The report's multiverse section and its one-choice-at-a-time sensitivity need only a spec and
the data, not the fitted models, so they can run in other processes while this one fits the
models, bootstraps them and re-estimates them without each unit. :class:`BackgroundPool` runs
them on joblib's reusable process executor (loky) and hands each result back when it is
asked for; a piece that no worker has started by then is computed in the asking process
instead of being waited for. Every piece is seeded and reads its own inputs, so the results are
the same whichever process computed them and however many workers there are; with ``n_jobs=1``
nothing runs in the background and each piece is computed, in this process, when its result is
asked for.
"""

from __future__ import annotations

import logging
import os
import pickle
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["BackgroundPool", "Pending", "resolve_jobs"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def resolve_jobs(n_jobs: int | None) -> int:
    """Processes to use: ``None`` or 1 -> 1 (this process only), ``-1`` -> every CPU, ``k >= 1`` -> k."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (every CPU), got {n_jobs!r}")
    return max(1, os.cpu_count() or 1) if n_jobs == -1 else n_jobs


#: this worker process's store of prepared inputs, for the pieces of one pool (a run id and the store)
_WORKER_STORE: tuple[str, dict] = ("", {})


def _run_in_worker(fn: Callable[..., T], args: tuple, kwargs: dict, log_level: int, run_id: str) -> T:
    """A piece in a worker: the caller's log level, one BLAS thread, and the store of prepared
    inputs that this worker keeps for the pieces of the same pool (``run_id``; a new pool, e.g.
    the next report, starts an empty one: a file edited in between is read afresh)."""
    global _WORKER_STORE
    from returnstudy._threads import one_blas_thread
    from returnstudy.reuse import reuse_prepared

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(log_level)
    if _WORKER_STORE[0] != run_id:
        _WORKER_STORE = (run_id, {})
    with reuse_prepared(_WORKER_STORE[1]), one_blas_thread():
        return fn(*args, **kwargs)


class Pending(Generic[T]):
    """The result of one piece: computed in a worker (a future) or in this process on first request
    (serially, or when no worker has started it yet: the caller would otherwise wait idle)."""

    def __init__(self, thunk: Callable[[], T], future: Any = None) -> None:
        self._future, self._thunk = future, thunk
        self._done = False
        self._value: T | None = None

    def here_if_unstarted(self) -> bool:
        """Compute the piece in this process if no worker has started it; True when its result is in."""
        if not self._done and (self._future is None or self._future.cancel()):
            self.result()
        return self._done

    def result(self) -> T:
        if not self._done:
            if self._future is not None and not self._future.cancel():
                try:
                    self._value = self._future.result()
                except pickle.PicklingError as exc:  # its arguments cannot be sent to a worker
                    log.info("background piece computed in this process: %s", exc)
                    self._value = self._thunk()  # type: ignore[misc]
            else:
                self._value = self._thunk()  # type: ignore[misc]
            self._done = True
            self._future = self._thunk = None
        return self._value  # type: ignore[return-value]


class BackgroundPool:
    """Submit pieces to ``n_jobs - 1`` worker processes (the caller's process is the n-th)."""

    def __init__(self, n_jobs: int | None = 1) -> None:
        self.n_jobs = resolve_jobs(n_jobs)
        self._executor: Any = None
        self._run_id = uuid.uuid4().hex  # the workers share prepared inputs between this pool's pieces

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Pending[T]:
        """Queue ``fn(*args, **kwargs)`` (pieces start in the order submitted)."""
        def here() -> T:
            return fn(*args, **kwargs)

        if self.n_jobs == 1:
            return Pending(here)
        if self._executor is None:
            from joblib.externals.loky import get_reusable_executor

            self._executor = get_reusable_executor(max_workers=self.n_jobs - 1)
            log.info("background pool: %d worker process(es)", self.n_jobs - 1)
        return Pending(here, self._executor.submit(_run_in_worker, fn, args, kwargs,
                                                   logging.getLogger().getEffectiveLevel(), self._run_id))
