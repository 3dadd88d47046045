"""BackgroundPool: the same results in a worker process as in this one; arguments checked."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from returnstudy.background import BackgroundPool, default_start_method, resolve_jobs


def _seeded_fit(seed: int) -> tuple[np.ndarray, int]:
    """A seeded least-squares fit and the number of BLAS threads it ran with."""
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, 6))
    y = X @ np.arange(6.0) + rng.normal(size=500)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    threads = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1)
    return beta, threads


FORK = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-started workers are used on Linux only")
METHODS = [pytest.param("fork", marks=FORK), "loky"]


@pytest.mark.parametrize("method", METHODS)
def test_worker_results_equal_this_process_and_use_one_blas_thread(method: str) -> None:
    serial = BackgroundPool(1)
    calls: list[int] = []
    lazy = serial.submit(lambda: calls.append(1) or _seeded_fit(3))
    assert calls == []  # serial: computed when asked for, in this process
    here = lazy.result()
    assert calls == [1] and lazy.result() is here  # once
    with BackgroundPool(2, start_method=method) as pool:
        piece = pool.submit(_seeded_fit, 3)
        there = piece._future.result(timeout=120)[0]  # the worker's own result (result() could compute it here)
        assert pool.method == method and pool.forked == (method == "fork")
    np.testing.assert_array_equal(there[0], here[0])
    assert there[1] == 1
    np.testing.assert_allclose(here[0], np.arange(6.0), atol=0.2)


def test_bad_start_method_is_an_error_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="start_method"):
        BackgroundPool(2, start_method="spawn")


@FORK
def test_fork_is_chosen_only_without_other_python_threads() -> None:
    import threading

    assert threading.active_count() == 1 or default_start_method() == "loky"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert default_start_method() == "loky"  # a lock held by that thread could stay locked in a forked child
    finally:
        stop.set()
        other.join()
    if threading.active_count() == 1:
        assert default_start_method() == "fork"


def test_progress_bars_start_no_thread() -> None:
    """tqdm's monitor thread would make forking unsafe (see default_start_method)."""
    import threading

    from returnstudy._progress import bar_class

    before = threading.active_count()
    with bar_class(auto=False)(range(3), disable=False, file=io.StringIO()) as bar:
        assert list(bar) == [0, 1, 2]
        assert threading.active_count() == before


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_n_jobs_is_an_error_naming_the_argument(bad) -> None:
    with pytest.raises(ValueError, match="n_jobs"):
        resolve_jobs(bad)


def test_resolve_jobs() -> None:
    assert resolve_jobs(None) == 1 and resolve_jobs(1) == 1 and resolve_jobs(3) == 3 and resolve_jobs(-1) >= 1


def _pid_after(seconds: float, started: str | None = None, log: str | None = None) -> int:
    import os
    import time
    from pathlib import Path

    if started:
        Path(started).touch()
    time.sleep(seconds)
    if log:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    return os.getpid()


@pytest.mark.parametrize("method", METHODS)
def test_a_piece_no_worker_has_started_is_computed_by_the_asking_process(tmp_path, method: str) -> None:
    import os
    import time

    log = tmp_path / "ran"
    with BackgroundPool(2, start_method=method) as pool:  # one worker
        marker = tmp_path / "started"
        busy = pool.submit(_pid_after, 1.5, str(marker), str(log))
        deadline = time.monotonic() + 60
        while not marker.exists():  # wait until the worker runs the first piece (its start-up varies)
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.02)
        queued = [pool.submit(_pid_after, 0.0, None, str(log)) for _ in range(6)]
        # the worker is busy: the last piece is not waited for (forked workers: none of the queued ones,
        # which this process takes back; loky: those beyond the couple the worker holds in its queue)
        assert queued[-1].result() == os.getpid()
        if method == "fork":
            assert queued[0].result() == os.getpid()
        assert busy.result() != os.getpid()  # already running in the worker: waited for
        assert all(isinstance(q.result(), int) for q in queued)
    assert len(log.read_text().splitlines()) == 7  # every piece ran once: the worker skips those taken back


@pytest.mark.parametrize("method", METHODS)
def test_a_piece_whose_arguments_cannot_be_sent_is_computed_here(method: str) -> None:
    """An argument that cannot be pickled (a lock) cannot reach a worker: the piece is computed by
    the asking process instead of failing."""
    import os
    import threading

    lock = threading.Lock()
    with BackgroundPool(2, start_method=method) as pool:
        piece = pool.submit(lambda held: (os.getpid(), held.locked()), lock)
        assert piece.result() == (os.getpid(), False)


def _in_worker(pool: BackgroundPool, fn, *args):
    """``fn(*args)`` computed by the pool's worker (result() would compute a piece no worker has started here)."""
    piece = pool.submit(fn, *args)
    value, built = piece._future.result(timeout=120)
    return value


def test_a_worker_keeps_prepared_inputs_for_the_pieces_of_one_pool_only() -> None:
    """Pieces of one pool that a loky worker computes share its store of prepared inputs; a new pool
    starts an empty one."""
    import os

    pool = BackgroundPool(2, start_method="loky")  # one worker: every piece runs in the same process
    first, second = _in_worker(pool, _build_count, "k"), _in_worker(pool, _build_count, "k")
    other = _in_worker(BackgroundPool(2, start_method="loky"), _build_count, "k")
    assert first[0] == second[0] == other[0] != os.getpid()  # the reusable executor's worker
    assert (second[1], other[1]) == (first[1], first[1] + 1)


@FORK
def test_forked_workers_find_what_the_caller_prepared_and_send_back_what_they_build() -> None:
    """A forked worker starts with the caller's store of prepared inputs (as it was at the fork);
    the kinds named in ``share_back`` that a piece builds come back to the caller's store."""
    import os

    from returnstudy.reuse import reuse_prepared, reused

    with reuse_prepared():
        mine = reused("test pid", "a", os.getpid)
        with BackgroundPool(2, start_method="fork", share_back=("test pid",)) as pool:
            assert _in_worker(pool, reused, "test pid", "a", os.getpid) == mine  # inherited, not built again
            piece = pool.submit(reused, "test pid", "b", os.getpid)
            worker_pid = piece._future.result(timeout=120)[0]
            assert worker_pid != os.getpid()
            assert piece.result() == worker_pid
            assert reused("test pid", "b", os.getpid) == worker_pid  # adopted: not built here
            other = pool.submit(reused, "test other", "c", os.getpid)
            other._future.result(timeout=120)
            other.result()
            assert reused("test other", "c", os.getpid) == os.getpid()  # not a shared kind: built here
        with BackgroundPool(2, start_method="fork") as fresh:  # a new pool forks from the store as it is now
            assert _in_worker(fresh, reused, "test pid", "b", os.getpid) == worker_pid


def _write_item(item: tuple[str, int]) -> None:
    import os
    import time

    path, i = item
    if i == 3:
        raise ValueError("item three is bad")
    time.sleep(0.05)
    with open(path, "a") as fh:
        fh.write(f"{i} {os.getpid()}\n")


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_drain_in_forks_does_every_item_once_and_names_the_failures(tmp_path, workers: int) -> None:
    import os

    from returnstudy.background import drain_in_forks

    log = str(tmp_path / "done")
    items = [(log, i) for i in range(24)]
    with pytest.raises(RuntimeError, match=r"item 3 .*ValueError: item three is bad") as err:
        drain_in_forks(items, _write_item, workers)
    assert "item 4 " not in str(err.value)
    done = [line.split() for line in open(log).read().splitlines()]
    assert sorted(int(i) for i, _ in done) == [i for i in range(24) if i != 3]  # every other item, once
    pids = {pid for _, pid in done}
    if workers and sys.platform.startswith("linux") and default_start_method() == "fork":
        assert len(pids) > 1 and str(os.getpid()) in pids  # shared with forked copies
    else:
        assert pids == {str(os.getpid())}


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


def _fail(message: str) -> None:
    raise ValueError(message)


@pytest.mark.parametrize("method", METHODS)
def test_an_error_in_a_worker_reaches_the_caller(method: str) -> None:
    import os

    with BackgroundPool(2, start_method=method) as pool:
        piece = pool.submit(_fail, "bad piece")
        with pytest.raises(ValueError, match="bad piece"):
            piece._future.result(timeout=120)  # raised in the worker
        with pytest.raises(ValueError, match="bad piece"):
            piece.result()
        assert pool.submit(os.getpid).result() > 0  # the pool still works
