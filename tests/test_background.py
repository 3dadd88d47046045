"""BackgroundPool: the same results in a worker process as in this one; arguments checked."""

from __future__ import annotations

import numpy as np
import pytest

from returnstudy.background import BackgroundPool, resolve_jobs


def _seeded_fit(seed: int) -> tuple[np.ndarray, int]:
    """A seeded least-squares fit and the number of BLAS threads it ran with."""
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, 6))
    y = X @ np.arange(6.0) + rng.normal(size=500)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    threads = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1)
    return beta, threads


def test_worker_results_equal_this_process_and_use_one_blas_thread() -> None:
    serial = BackgroundPool(1)
    calls: list[int] = []
    lazy = serial.submit(lambda: calls.append(1) or _seeded_fit(3))
    assert calls == []  # serial: computed when asked for, in this process
    here = lazy.result()
    assert calls == [1] and lazy.result() is here  # once
    there = BackgroundPool(2).submit(_seeded_fit, 3).result()
    np.testing.assert_array_equal(there[0], here[0])
    assert there[1] == 1
    np.testing.assert_allclose(here[0], np.arange(6.0), atol=0.2)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_n_jobs_is_an_error_naming_the_argument(bad) -> None:
    with pytest.raises(ValueError, match="n_jobs"):
        resolve_jobs(bad)


def test_resolve_jobs() -> None:
    assert resolve_jobs(None) == 1 and resolve_jobs(1) == 1 and resolve_jobs(3) == 3 and resolve_jobs(-1) >= 1


def _pid_after(seconds: float, started: str | None = None) -> int:
    import os
    import time
    from pathlib import Path

    if started:
        Path(started).touch()
    time.sleep(seconds)
    return os.getpid()


def test_a_piece_no_worker_has_started_is_computed_by_the_asking_process(tmp_path) -> None:
    import os
    import time

    pool = BackgroundPool(2)  # one worker
    marker = tmp_path / "started"
    busy = pool.submit(_pid_after, 3.0, str(marker))
    deadline = time.monotonic() + 60
    while not marker.exists():  # wait until the worker runs the first piece (its start-up varies)
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.02)
    queued = [pool.submit(_pid_after, 0.0) for _ in range(6)]
    # the worker is busy and can hold only a couple of pieces in its queue: the last is not waited for
    assert queued[-1].result() == os.getpid()
    assert busy.result() != os.getpid()  # already running in the worker: waited for
    assert all(isinstance(q.result(), int) for q in queued)


def test_a_piece_whose_arguments_cannot_be_sent_is_computed_here() -> None:
    """An argument that cannot be pickled (a lock) cannot reach a worker: the piece is computed by
    the asking process instead of failing."""
    import os
    import threading

    lock = threading.Lock()
    piece = BackgroundPool(2).submit(lambda held: (os.getpid(), held.locked()), lock)
    assert piece.result() == (os.getpid(), False)


def test_a_worker_keeps_prepared_inputs_for_the_pieces_of_one_pool_only() -> None:
    """Pieces of one pool that a worker computes share its store of prepared inputs; a new pool
    starts an empty one."""
    import os

    def in_worker(pool: BackgroundPool) -> tuple[int, int]:
        # wait for the worker (result() would compute a piece no worker has started here)
        return pool.submit(_build_count, "k")._future.result(timeout=120)

    pool = BackgroundPool(2)  # one worker: every piece runs in the same process
    first, second = in_worker(pool), in_worker(pool)
    other = in_worker(BackgroundPool(2))
    assert first[0] == second[0] == other[0] != os.getpid()  # the reusable executor's worker
    assert (second[1], other[1]) == (first[1], first[1] + 1)


def _build_count(key: str) -> tuple[int, int]:
    """This process's id and how many times it has built ``key``'s value (reused within a store)."""
    import os

    from returnstudy.reuse import reused

    def build() -> int:
        global _BUILDS
        _BUILDS += 1
        return _BUILDS

    return os.getpid(), reused("test count", key, build)


_BUILDS = 0
