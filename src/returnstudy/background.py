"""Independent pieces of a long run computed in worker processes while the caller goes on.

The report's Part 1, multiverse section and sensitivity need only a spec and the data, not
the fitted models, so they can run in another process while this one fits the models,
bootstraps them and re-estimates them without each unit. :class:`BackgroundPool` hands each piece's result
back when it is asked for; a piece that no worker has started by then is computed in the
asking process instead of being waited for. Every piece is seeded and reads its own inputs,
so the results are the same whichever process computed them, however many workers there are
and however they were started; with ``n_jobs=1`` nothing runs in the background and each
piece is computed, in this process, when its result is asked for.

Workers are started in one of two ways (``start_method``):

* ``"fork"`` (Linux, when no other Python thread is running): the workers are copies of this
  process made when the first piece is submitted, so they import nothing and find every input
  this process has already prepared (the :func:`~returnstudy.reuse.reuse_prepared` store of a
  report: Eurostat tables, panels, codings). They belong to the pool and stop when it is closed.
* ``"loky"`` (elsewhere): joblib's reusable executor, whose workers are fresh interpreters
  (kept between pools); each keeps its own store of prepared inputs per pool.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["BackgroundPool", "Pending", "resolve_jobs", "START_METHODS", "default_start_method", "drain_in_forks"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: how worker processes are started: "auto" picks "fork" where it is safe (see :func:`default_start_method`)
START_METHODS = ("auto", "fork", "loky")


def resolve_jobs(n_jobs: int | None) -> int:
    """Processes to use: ``None`` or 1 -> 1 (this process only), ``-1`` -> every CPU, ``k >= 1`` -> k."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1 (every CPU), got {n_jobs!r}")
    return max(1, os.cpu_count() or 1) if n_jobs == -1 else n_jobs


def default_start_method() -> str:
    """``"fork"`` on Linux when this process runs no Python thread but the main one, else ``"loky"``.

    A forked child inherits the parent's memory but only the forking thread: a lock that another
    Python thread held at that moment (a logging handler's, a queue's) stays locked in the child.
    With the main thread alone there is no such lock; native BLAS pools re-create their threads
    in the child (OpenBLAS shuts its pool down before a fork) and a worker runs one BLAS thread.
    Jupyter kernels run several Python threads, so notebooks get ``"loky"``. macOS and Windows
    have no safe fork and get ``"loky"``.
    """
    alone = threading.active_count() == 1 and threading.current_thread() is threading.main_thread()
    return "fork" if sys.platform.startswith("linux") and alone else "loky"


def _fork_executor(n_workers: int) -> Any:
    """A process pool whose workers are forked from this process at its first submit."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("fork"))


@contextlib.contextmanager
def _quiet_fork() -> Iterator[None]:
    """Python >= 3.12 warns on fork() in a process with native threads: the BLAS pools, which
    re-create their threads in the child (see :func:`default_start_method`). Silenced around our forks."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*multi-threaded, use of fork\(\)", category=DeprecationWarning)
        yield


#: this worker process's store of prepared inputs, for the pieces of one pool (a run id and the store)
_WORKER_STORE: tuple[str, dict] = ("", {})


def _run_in_worker(fn: Callable[..., T], args: tuple, kwargs: dict, log_level: int, run_id: str,
                   share_back: tuple[str, ...] = ()) -> tuple[T, dict]:
    """A piece in a worker: the caller's log level, one BLAS thread, and a store of prepared inputs
    (a forked worker's is the one the caller had when it forked; a loky worker keeps one for the
    pieces of the same pool, ``run_id``, and a new pool starts an empty one: a file edited in between
    is read afresh). Returns the value and the store entries of the ``share_back`` kinds that the
    piece built, for the caller to reuse."""
    global _WORKER_STORE
    from returnstudy._threads import one_blas_thread
    from returnstudy.reuse import reuse_prepared, stored

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(log_level)
    if _WORKER_STORE[0] != run_id:
        _WORKER_STORE = (run_id, {})
    with reuse_prepared(_WORKER_STORE[1]), one_blas_thread():
        before = set(stored(share_back))
        value = fn(*args, **kwargs)
        built = {k: v for k, v in stored(share_back).items() if k not in before}
    return value, built


#: pieces of one forked pool that this process can take back from a busy worker (later ones are
#: left to the workers once queued)
CLAIM_SLOTS = 4096

#: a forked worker's claim flags, inherited from the pool that forked it: one per piece, set by
#: whichever process (the worker or the caller) takes the piece first
_CLAIMS: Any = None

_NOT_RUN = "returnstudy.background: claimed by the caller"


def _claim(flags: Any, slot: int) -> bool:
    """Take piece ``slot``: True for the first process to ask (atomic under the flags' lock)."""
    with flags.get_lock():
        if flags[slot]:
            return False
        flags[slot] = 1
        return True


def _run_pickled(slot: int, payload: bytes) -> tuple[Any, dict]:
    """A forked worker's piece, sent as one pickle (pickled by the caller: see ``BackgroundPool.submit``);
    skipped when the caller has taken it (slot -1: not claimable, always run)."""
    if slot >= 0 and not _claim(_CLAIMS, slot):
        return _NOT_RUN, {}
    return _run_in_worker(*pickle.loads(payload))


class Pending(Generic[T]):
    """The result of one piece: computed in a worker (a future) or in this process on first request
    (serially, or when no worker has started it yet: the caller would otherwise wait idle).

    ``claim``: takes the piece for this process if no worker has (forked workers share claim
    flags with their pool, so a piece queued for a busy worker can still be taken back)."""

    def __init__(self, thunk: Callable[[], T], future: Any = None, claim: Callable[[], bool] | None = None) -> None:
        self._future, self._thunk, self._claim = future, thunk, claim
        self._done = False
        self._value: T | None = None

    def done(self) -> bool:
        """Is the result in, or computed by a worker and waiting to be collected?"""
        return self._done or (self._future is not None and self._future.done())

    def _unstarted(self) -> bool:
        """No worker has started the piece (and none will): it is this process's to compute."""
        if self._future is None:
            return True
        if self._claim is not None:
            return self._claim()
        return bool(self._future.cancel())

    def here_if_unstarted(self) -> bool:
        """Compute the piece in this process if no worker has started it; True when its result is in."""
        if not self._done and self._unstarted():
            self._compute_here()
        return self._done

    def _compute_here(self) -> None:
        if self._future is not None:
            self._future.cancel()  # a forked worker that gets to it skips it (claimed here)
        self._value = self._thunk()  # type: ignore[misc]
        self._done = True
        self._future = self._thunk = self._claim = None

    def result(self) -> T:
        if not self._done:
            if not self._unstarted():
                try:
                    self._value, built = self._future.result()
                except pickle.PicklingError as exc:  # its arguments cannot be sent to a worker
                    log.info("background piece computed in this process: %s", exc)
                    self._value = self._thunk()  # type: ignore[misc]
                else:
                    from returnstudy.reuse import adopt

                    adopt(built)
                self._done = True
                self._future = self._thunk = self._claim = None
            else:
                self._compute_here()
        return self._value  # type: ignore[return-value]


class BackgroundPool:
    """Submit pieces to ``n_jobs - 1`` worker processes (the caller's process is the n-th).

    ``start_method``: "fork", "loky" or "auto" (:func:`default_start_method`). ``share_back``:
    kinds of prepared inputs (:func:`returnstudy.reuse.reused`) that a worker's piece builds and
    this process may reuse (e.g. "quality report"); they are sent back with the piece's result
    and kept in this process's store if it has one. Use the pool as a context manager (or call
    :meth:`close`) so that forked workers stop with it.
    """

    def __init__(self, n_jobs: int | None = 1, *, start_method: str = "auto",
                 share_back: Sequence[str] = ()) -> None:
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, got {start_method!r}")
        self.n_jobs = resolve_jobs(n_jobs)
        self.start_method = start_method
        self.share_back = tuple(share_back)
        self._executor: Any = None
        self._owned = False  # a fork pool's executor is this pool's; loky's reusable one is shared
        self._run_id = uuid.uuid4().hex  # loky workers share prepared inputs between this pool's pieces
        self.method: str | None = None  # how the workers were started (once they are)
        self._flags: Any = None  # forked workers: the pieces' claim flags
        self._slots = 0  # claim flags used

    def __enter__(self) -> BackgroundPool:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None and self._owned and self._executor is not None:
            # leaving on an error (or Ctrl-C): stop the workers instead of waiting for their pieces
            for proc in list((getattr(self._executor, "_processes", None) or {}).values()):
                proc.terminate()
        self.close()

    def close(self) -> None:
        """Stop this pool's forked workers (after the pieces they have started); queued pieces are cancelled."""
        if self._owned and self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor, self._owned = None, False

    @property
    def forked(self) -> bool:
        """Were this pool's workers started by fork (copies of this process)?"""
        return self.method == "fork"

    def _start(self) -> Any:
        method = default_start_method() if self.start_method == "auto" else self.start_method
        if method == "fork":
            import multiprocessing

            global _CLAIMS
            # claim flags in shared memory, inherited by the workers forked at the first submit
            # (get_context raises ValueError where the platform has no fork)
            self._flags = _CLAIMS = multiprocessing.get_context("fork").Array("b", CLAIM_SLOTS, lock=True)
            self._executor, self._owned = _fork_executor(self.n_jobs - 1), True
        else:
            from joblib.externals.loky import get_reusable_executor

            self._executor = get_reusable_executor(max_workers=self.n_jobs - 1)
        self.method = method
        log.info("background pool: %d worker process(es), started by %s", self.n_jobs - 1, method)
        return self._executor

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Pending[T]:
        """Queue ``fn(*args, **kwargs)`` (pieces start in the order submitted). A piece whose function
        or arguments cannot be pickled (a lambda or a lock, for forked workers) is computed here."""
        def here() -> T:
            return fn(*args, **kwargs)

        if self.n_jobs == 1:
            return Pending(here)
        executor = self._executor if self._executor is not None else self._start()
        call = (fn, args, kwargs, logging.getLogger().getEffectiveLevel(), self._run_id, self.share_back)
        if not self._owned:  # loky pickles the call itself (cloudpickle) and reports failures on result()
            return Pending(here, executor.submit(_run_in_worker, *call))
        try:
            payload = pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            log.info("background piece computed in this process (cannot be sent to a worker): %s", exc)
            return Pending(here)
        slot, self._slots = (self._slots, self._slots + 1) if self._slots < CLAIM_SLOTS else (-1, self._slots)
        claim = None if slot < 0 else functools.partial(_claim, self._flags, slot)
        with _quiet_fork():  # the workers fork at the first submit
            return Pending(here, executor.submit(_run_pickled, slot, payload), claim)


#: what forked drainers inherit: the items, the function and the shared position of the next item
_DRAIN: tuple[Sequence[Any], Callable[[Any], Any], Any] | None = None


def _drain(log_level: int) -> list[tuple[int, str]]:
    """Call the inherited function on the next untaken item until none is left; the failures
    (position, message). Runs in each forked drainer and in the parent."""
    from returnstudy._threads import one_blas_thread

    assert _DRAIN is not None
    items, fn, position = _DRAIN
    logging.getLogger().setLevel(log_level)
    failed = []
    with one_blas_thread():
        while True:
            with position.get_lock():
                i = position.value
                position.value += 1
            if i >= len(items):
                return failed
            try:
                fn(items[i])
            except Exception as exc:  # noqa: BLE001 - reported by the parent, naming the item
                failed.append((i, f"{type(exc).__name__}: {exc}"))


def drain_in_forks(items: Sequence[T], fn: Callable[[T], Any], n_workers: int) -> None:
    """``fn(item)`` for every item (for its side effects, e.g. writing a file), shared between this
    process and ``n_workers`` forked copies of it: each takes the next untaken item, so the work
    balances itself and no item is pickled. Without a safe fork (:func:`default_start_method`)
    or with ``n_workers < 1`` every item is done here. Raises ``RuntimeError`` naming the items
    that failed, after every item has been tried.
    """
    global _DRAIN
    import multiprocessing

    n_workers = min(n_workers, max(len(items) - 1, 0))
    level = logging.getLogger().getEffectiveLevel()
    fork = n_workers >= 1 and default_start_method() == "fork"
    ctx = multiprocessing.get_context("fork") if fork else multiprocessing.get_context()
    _DRAIN = (items, fn, ctx.Value("q", 0))
    try:
        failed: list[tuple[int, str]] = []
        if fork:
            executor = _fork_executor(n_workers)
            with _quiet_fork():
                futures = [executor.submit(_drain, level) for _ in range(n_workers)]
            with executor:
                failed += _drain(level)
                for f in futures:
                    failed += f.result()
        else:
            failed += _drain(level)
    finally:
        _DRAIN = None
    if failed:
        raise RuntimeError("; ".join(f"item {i} ({items[i]!r:.80}): {msg}" for i, msg in sorted(failed)))
