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
