"""The multiverse engine: estimate every specification of a grid, sharing the work.

:func:`multiverse` reads the panel once, codes the treatments once per distinct coding,
runs the sample filters once per distinct set of filter choices, builds each distinct
(coding, filters) sample once, and fits every estimator and clustering of the grid on it.
Work is split into tasks (one coding, a block of its samples) that run serially, with
joblib, on a Dask cluster or with Ray; results are identical on every backend and worker
count (fits are deterministic; a per-specification seed derived from the specification's key
is passed to any estimator that takes one). With ``checkpoint=DIR`` each finished task is
written to Parquet, keyed by a hash of the specification, the data vintage, the spec file and
the package version: an interrupted run resumes without refitting what is done, and a changed
input recomputes exactly the affected specifications.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnstudy._progress import progress as _progress
from returnstudy.multiverse_grid import Grid, Specification, load_grid
from returnstudy.spec import StudySpec, load_spec

log = logging.getLogger(__name__)

BACKENDS = ("serial", "joblib", "dask", "ray")
OK, FAILED, UNSUPPORTED, NOT_IDENTIFIED = "ok", "failed", "unsupported", "not identified"
FIT_COLUMNS = ["estimate", "std_error", "ci_low", "ci_high", "p_value", "pct_effect", "pct_ci_low", "pct_ci_high"]
COUNT_COLUMNS = ["n_obs", "n_corridors", "switching_corridors", "switching_citizenships"]
RESULT_COLUMNS = ["spec_id", "treatment", *FIT_COLUMNS, "outcome_mean", *COUNT_COLUMNS, "status", "reason", "seed", "spec_hash"]
#: Exceptions of a model fit that become a ``failed`` row (with the message) instead of stopping the run.
FIT_ERRORS: tuple[type[BaseException], ...] = (ValueError, np.linalg.LinAlgError, KeyError, RuntimeError,
                                               ZeroDivisionError, FloatingPointError, IndexError)


@dataclass(frozen=True)
class EngineContext:
    """What every task needs, shipped once to each worker: the raw panel (before coding and
    filters), the study spec, and the treatments to estimate."""

    raw: pd.DataFrame
    spec: StudySpec
    treatments: tuple[str, ...]
    focal: tuple[str, ...]
    code_treatments: bool = True  # False: the panel already carries its treatment columns (simulated panels)
    token: str = ""  # identifies the panel and spec across pickling (per-process cache of coded panels)

    def coded(self, panel: pd.DataFrame, overrides: Mapping[str, Any]) -> pd.DataFrame:
        """``panel`` with treatment columns under the spec's coding and ``overrides``."""
        if not self.code_treatments:
            if overrides:
                raise ValueError(f"treatment-coding choices {dict(overrides)} need a panel without treatment columns "
                                 "(this run was given a panel with its own treatments)")
            return panel
        from returnstudy.treatments import add_treatments

        coded = add_treatments(panel, **_coding_kwargs(self.spec, overrides))
        if len(coded) != len(panel):  # samples are taken by row position: coding must keep every row
            raise ValueError(f"add_treatments({dict(overrides)}) returned {len(coded)} rows for a panel of {len(panel)}; "
                             "the multiverse needs codings that keep every row (mark dropped corridors with NaN)")
        return coded


@dataclass(frozen=True)
class Task:
    """One coding and a block of its specifications (position, spec, hash, seed), with the row
    index of each filter set (None: the filters need treatment columns, run them on the coded panel)."""

    coding: Mapping[str, Any]
    items: tuple[tuple[int, Specification, str, int], ...]
    filter_index: Mapping[str, Any]


@dataclass
class TaskOutput:
    rows: list[dict[str, Any]]
    fits: int = 0
    samples: int = 0
    codings: int = 0
    seconds: float = 0.0
    task_hash: str = ""
    n_specs: int = 0


# ----------------------------------------------------------------------------- building samples


def varied_spec(spec: StudySpec, filters: Mapping[str, Mapping[str, Any]]) -> StudySpec:
    """``spec`` with each filter step's parameters overridden (``KeyError`` for an unknown step)."""
    for step, overrides in filters.items():
        spec = spec.with_filter(step, **dict(overrides))
    return spec


def _needs_treatments(spec: StudySpec) -> bool:
    return any(f.enabled and f.step == "treatment_variation" for f in spec.filters)


def filter_rows(raw: pd.DataFrame, spec: StudySpec, filters: Mapping[str, Mapping[str, Any]]) -> np.ndarray | None:
    """Positions of the rows of ``raw`` kept by the spec's filters under ``filters`` overrides.

    Filters only drop rows and (except ``treatment_variation``) do not read treatment columns,
    so the rows they keep are the same under every coding: computed once per filter set (within
    a :func:`~returnstudy.reuse.reuse_prepared` block, the rows after each leading run of steps
    are kept for the panel's content and reused by every filter set that starts with the same
    steps). None when a step needs the treatment columns.
    """
    from returnstudy.filters import apply_filters
    from returnstudy.reuse import reused

    v = varied_spec(spec, filters)
    if _needs_treatments(v):
        return None

    # within a report the multiverse, its null test and the sensitivity table filter the same
    # panel (by content) with many filter sets that share their first steps
    held, fingerprint = reused("panel fingerprint", id(raw), lambda: (raw, panel_fingerprint(raw)))
    if held is not raw:  # pragma: no cover - the entry holds ``raw``, so its id is not reused while it lives
        raise RuntimeError("filter_rows: fingerprint cached for another panel")
    numbered: list[pd.DataFrame] = []  # raw with its row positions, built on first need
    rows: np.ndarray | None = None  # None: every row
    done: tuple[str, ...] = ()
    for step in v.filters:  # the steps run in order, each on the rows the previous ones kept

        def run_step(rows: np.ndarray | None = rows, step: Any = step) -> np.ndarray:
            if not numbered:
                numbered.append(raw.assign(_multiverse_row=np.arange(len(raw))))
            before = numbered[0] if rows is None else numbered[0].iloc[rows]
            kept = apply_filters(before, [step]).panel["_multiverse_row"].to_numpy(dtype=np.int64)
            kept.setflags(write=False)
            return kept

        done = (*done, repr(step))
        rows = reused("multiverse filter rows", (fingerprint, done), run_step)
    return np.arange(len(raw), dtype=np.int64) if rows is None else rows


def take_rows(coded: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """The sample at ``positions`` of the coded panel, indexed 0..n-1 as ``apply_filters`` returns it."""
    return coded.iloc[positions].reset_index(drop=True)


def _coding_kwargs(spec: StudySpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {**spec.treatments.add_treatments_kwargs(), **dict(overrides)}


# ----------------------------------------------------------------------------- fitting


def _fit_calls(ctx: EngineContext, model: Mapping[str, Any]) -> tuple[Callable[..., Any] | None, list[tuple[list[str], dict[str, Any]]], str]:
    """The estimator and its calls: one call with ``treatments=[...]`` for estimators taking several,
    else one call per focal treatment. Third item: a reason if the model is unsupported."""
    from returnstudy.runner import ESTIMATORS, estimator

    name = model.get("estimator")
    if name not in ESTIMATORS:
        return None, [], f"unknown estimator {name!r}; available: {sorted(ESTIMATORS)}"
    fn = estimator(name)
    accepted = set(inspect.signature(fn).parameters)
    params = {k: v for k, v in model.items() if k != "estimator"}
    bad = sorted(set(params) - accepted)
    if bad:
        return fn, [], f"{name} has no argument(s) {bad}"
    if "treatments" in params:
        ts = params["treatments"]
        return fn, [([ts] if isinstance(ts, str) else list(ts), params)], ""
    if "treatment" in params:
        return fn, [([params["treatment"]], params)], ""
    if "treatments" in accepted:
        return fn, [(list(ctx.treatments), {**params, "treatments": list(ctx.treatments)})], ""
    return fn, [([t], {**params, "treatment": t}) for t in ctx.focal], ""


@contextlib.contextmanager
def _quiet_estimators() -> Iterator[None]:
    """Estimator notes (collinear regressors dropped, separated rows) are per-fit detail; across
    thousands of specifications they go to DEBUG, and the outcome is in each row's status."""
    lg = logging.getLogger("returnstudy.models")
    old = lg.level
    lg.setLevel(logging.ERROR if log.getEffectiveLevel() > logging.DEBUG else old)
    try:
        yield
    finally:
        lg.setLevel(old)


def _result_row(res: Any, t: str) -> dict[str, Any]:
    row: dict[str, Any] = {c: np.nan for c in FIT_COLUMNS}
    if t in res.table.index:
        r = res.table.loc[t]
        for c in FIT_COLUMNS:
            if c in r.index and pd.notna(r[c]):
                row[c] = float(r[c])
    row["n_obs"] = res.info.get("n_obs")
    row["n_corridors"] = res.info.get("n_corridors")
    return row


def fit_specification(ctx: EngineContext, spec: Specification, sample: pd.DataFrame, seed: int,
                      switching: Callable[[str], tuple[int, int]]) -> tuple[list[dict[str, Any]], int]:
    """Rows (one per treatment) of one specification on its sample, and the number of fits."""
    fn, calls, reason = _fit_calls(ctx, spec.model)
    if reason:
        ts = _treatments_of(ctx, spec.model)
        return [{"treatment": t, "status": UNSUPPORTED, "reason": reason} for t in ts], 0
    rows = []
    for ts, params in calls:
        if "seed" in inspect.signature(fn).parameters and "seed" not in params:
            params = {**params, "seed": seed}
        try:
            with warnings.catch_warnings(), _quiet_estimators():
                warnings.simplefilter("ignore")
                res = fn(sample, **params)
        except FIT_ERRORS as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            log.debug("specification %s failed: %s", spec.key, exc)
            rows += [{"treatment": t, "status": FAILED, "reason": f"{type(exc).__name__}: {msg}"} for t in ts]
            continue
        for t in ts:
            row = _result_row(res, t)
            row["treatment"] = t
            row["status"] = OK if pd.notna(row["estimate"]) else NOT_IDENTIFIED
            row["reason"] = "" if row["status"] == OK else "no estimate: no treated variation left in the sample"
            rows.append(row)
    mean = _mean_rate(sample, spec.model)
    for row in rows:
        row["switching_corridors"], row["switching_citizenships"] = switching(row["treatment"])
        row["outcome_mean"] = mean
    return rows, len(calls)


def _mean_rate(sample: pd.DataFrame, model: Mapping[str, Any]) -> float:
    """Mean return rate of the sample (orders-weighted, i.e. returns / orders, for weighted models):
    the denominator that puts a linear effect on the percent scale."""
    if not {"returns", "orders"} <= set(sample.columns) or sample.empty:
        return float("nan")
    if model.get("weights") == "orders":
        o = sample["orders"].to_numpy(dtype=float)
        return float(np.nansum(sample["returns"].to_numpy(dtype=float)) / np.nansum(o)) if np.nansum(o) > 0 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = sample["returns"].to_numpy(dtype=float) / sample["orders"].to_numpy(dtype=float)
    r = r[np.isfinite(r)]
    return float(r.mean()) if r.size else float("nan")


def _treatments_of(ctx: EngineContext, model: Mapping[str, Any]) -> list[str]:
    if "treatments" in model:
        ts = model["treatments"]
        return [ts] if isinstance(ts, str) else list(ts)
    if "treatment" in model:
        return [model["treatment"]]
    return list(ctx.treatments if "treatments" in _accepted(model) else ctx.focal)


def _accepted(model: Mapping[str, Any]) -> set[str]:
    from returnstudy.runner import ESTIMATORS, estimator

    name = model.get("estimator")
    return set(inspect.signature(estimator(name)).parameters) if name in ESTIMATORS else set()


def run_task(ctx: EngineContext, task: Task) -> TaskOutput:
    """Code the treatments once, build each sample once, fit every specification of the task."""
    from returnstudy.filters import apply_filters
    from returnstudy.identification import switching_units

    t0 = time.perf_counter()
    out = TaskOutput(rows=[], task_hash=_hash(sorted(h for _, _, h, _ in task.items)), n_specs=len(task.items))
    try:
        key = (ctx.token, _canonical_coding(task.coding))
        coded = _CODED.get(key) if ctx.token else None
        if coded is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                coded = ctx.coded(ctx.raw, task.coding)
            out.codings = 1
            if ctx.token:
                _CODED.clear()  # keep one coded panel per process: tasks of one coding run in sequence
                _CODED[key] = coded
    except FIT_ERRORS as exc:
        reason = f"treatment coding failed: {type(exc).__name__}: {exc}"
        for pos, spec, h, seed in task.items:
            for t in _treatments_of(ctx, spec.model):
                out.rows.append({**_ids(pos, spec, h, seed), "treatment": t, "status": FAILED, "reason": reason})
        out.seconds = time.perf_counter() - t0
        return out
    samples: dict[str, pd.DataFrame] = {}
    switch_cache: dict[tuple[str, str], tuple[int, int]] = {}
    for pos, spec, h, seed in task.items:
        fkey = spec.filter_key()
        if fkey not in samples:
            idx = task.filter_index.get(fkey)
            if idx is None:
                samples[fkey] = apply_filters(coded, varied_spec(ctx.spec, spec.filters)).panel
            else:
                samples[fkey] = take_rows(coded, idx)
            out.samples += 1
        sample = samples[fkey]

        def switching(t: str, fkey: str = fkey, sample: pd.DataFrame = sample) -> tuple[int, int]:
            if (fkey, t) not in switch_cache:
                switch_cache[(fkey, t)] = switching_units(sample, t)
            return switch_cache[(fkey, t)]

        rows, fits = fit_specification(ctx, spec, sample, seed, switching)
        out.fits += fits
        out.rows += [{**_ids(pos, spec, h, seed), **r} for r in rows]
    out.seconds = time.perf_counter() - t0
    return out


_CODED: dict[tuple[str, str], pd.DataFrame] = {}


def _canonical_coding(coding: Mapping[str, Any]) -> str:
    return json.dumps({str(k): coding[k] for k in sorted(coding)}, default=str)


def _ids(pos: int, spec: Specification, h: str, seed: int) -> dict[str, Any]:
    return {**dict(spec.choices), "spec_id": pos, "spec_hash": h, "seed": seed}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- backends


class Session:
    """A backend held open for several rounds of tasks (a Dask cluster or Ray started once).

    ``map(fn, ctx, tasks)`` yields ``fn(ctx, task)`` for every task in completion order.
    ``ctx`` is sent once per worker and session (Dask ``scatter(broadcast=True)``, Ray
    ``put``); joblib pickles it once per batch of tasks. ``n_jobs``: workers (joblib, a Dask
    LocalCluster, a local Ray); ``address``: a Dask scheduler (``tcp://host:8786``) or a Ray
    cluster.
    """

    def __init__(self, backend: str = "serial", n_jobs: int | None = None, address: str | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: expected one of {list(BACKENDS)}")
        self.backend, self.n_jobs, self.address = backend, n_jobs, address
        self._client: Any = None
        self._cluster: Any = None
        self._ray_started = False
        self._shared: dict[int, Any] = {}

    def __enter__(self) -> Session:
        if self.backend == "dask":
            try:
                from distributed import Client, LocalCluster
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("backend='dask' needs dask.distributed: pip install 'returnstudy[cluster]'") from exc
            if self.address is None:
                self._cluster = LocalCluster(n_workers=self.n_jobs or 2, threads_per_worker=1, processes=True,
                                             dashboard_address=None)
                self._client = Client(self._cluster)
            else:
                self._client = Client(self.address)
        elif self.backend == "ray":
            try:
                import ray
            except ImportError as exc:  # pragma: no cover - optional extra
                raise ImportError("backend='ray' needs ray: pip install 'returnstudy[ray]'") from exc
            if not ray.is_initialized():
                ray.init(address=self.address, num_cpus=None if self.address else self.n_jobs, log_to_driver=False)
                self._ray_started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._ray_started:
            import ray

            ray.shutdown()
        self._shared.clear()

    def _share(self, ctx: Any) -> Any:
        if id(ctx) not in self._shared:
            if self.backend == "dask":
                self._shared[id(ctx)] = (ctx, self._client.scatter(ctx, broadcast=True))
            else:
                import ray

                self._shared[id(ctx)] = (ctx, ray.put(ctx))
        return self._shared[id(ctx)][1]

    def map(self, fn: Callable[[Any, Any], Any], ctx: Any, tasks: Sequence[Any]) -> Iterator[Any]:
        if self.backend == "serial" or not tasks:
            for t in tasks:
                yield fn(ctx, t)
        elif self.backend == "joblib":
            from joblib import Parallel, cpu_count, delayed

            # contiguous batches: the context is pickled a few times per worker, a coding's tasks stay together
            workers = self.n_jobs if self.n_jobs and self.n_jobs > 0 else cpu_count()
            n_batches = min(len(tasks), 4 * workers)
            bounds = np.linspace(0, len(tasks), n_batches + 1).round().astype(int)
            batches = [list(tasks[bounds[b]:bounds[b + 1]]) for b in range(n_batches)]
            for outs in Parallel(n_jobs=workers, return_as="generator_unordered")(delayed(_batch)(fn, ctx, b) for b in batches):
                yield from outs
        elif self.backend == "dask":
            from distributed import as_completed

            shared = self._share(ctx)
            futures = [self._client.submit(fn, shared, t, pure=False) for t in tasks]
            for fut in as_completed(futures):
                yield fut.result()
        else:
            import ray

            shared = self._share(ctx)
            remote = ray.remote(_call)
            pending = [remote.remote(fn, shared, t) for t in tasks]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])


def execute(fn: Callable[[Any, Any], Any], ctx: Any, tasks: Sequence[Any], backend: str = "serial",
            n_jobs: int | None = None, address: str | None = None) -> Iterator[Any]:
    """Yield ``fn(ctx, task)`` for every task (in completion order) on ``backend`` (one :class:`Session`)."""
    with Session(backend, n_jobs, address) as session:
        yield from session.map(fn, ctx, tasks)


def _call(fn: Callable[[Any, Any], Any], ctx: Any, task: Any) -> Any:
    return fn(ctx, task)


def _batch(fn: Callable[[Any, Any], Any], ctx: Any, tasks: Sequence[Any]) -> list[Any]:
    return [fn(ctx, t) for t in tasks]


# ----------------------------------------------------------------------------- checkpoint


def panel_fingerprint(panel: pd.DataFrame) -> str:
    """Hash of the panel's content (rows, columns and values): a changed panel is a new input."""
    h = pd.util.hash_pandas_object(panel, index=True).to_numpy()
    return hashlib.sha256(h.tobytes() + "|".join(map(str, panel.columns)).encode()).hexdigest()


def vintage_signature(panel: pd.DataFrame) -> dict[str, str]:
    """sha256 of each source table of the panel (its data vintage)."""
    return {str(k): str((v or {}).get("sha256")) for k, v in sorted((panel.attrs.get("vintage") or {}).items())}


class Checkpoint:
    """Parquet part files in a directory, one per finished task; rows keyed by ``spec_hash``."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self, wanted: set[str]) -> pd.DataFrame:
        parts = sorted(self.dir.glob("part-*.parquet"))
        frames = [pd.read_parquet(p) for p in parts]
        if not frames:
            return pd.DataFrame(columns=["spec_hash"])
        done = pd.concat(frames, ignore_index=True)
        return done[done["spec_hash"].isin(wanted)]

    def write(self, out: TaskOutput) -> None:
        if not out.rows:
            return
        target = self.dir / f"part-{out.task_hash[:24]}.parquet"
        tmp = target.with_suffix(".tmp")
        frame = pd.DataFrame(out.rows)
        for c in ("status", "reason", "treatment"):
            frame[c] = frame[c].fillna("").astype(str)
        frame.to_parquet(tmp, index=False)
        tmp.replace(target)


# ----------------------------------------------------------------------------- the engine


def plan_tasks(specs: Sequence[tuple[int, Specification, str, int]], filter_index: Mapping[str, Any], workers: int) -> list[Task]:
    """Group specifications by coding, then split each coding's samples into blocks so that
    there are at least four tasks per worker (a block never splits one sample)."""
    by_coding: dict[str, list[tuple[int, Specification, str, int]]] = {}
    for item in specs:
        by_coding.setdefault(item[1].coding_key(), []).append(item)
    target = max(1, 4 * workers)
    blocks_per_coding = max(1, -(-target // max(1, len(by_coding))))
    tasks = []
    for items in by_coding.values():
        by_filter: dict[str, list[tuple[int, Specification, str, int]]] = {}
        for it in items:
            by_filter.setdefault(it[1].filter_key(), []).append(it)
        groups = list(by_filter.values())
        k = min(blocks_per_coding, len(groups))
        for b in range(k):
            block = [it for g in groups[b::k] for it in g]
            fidx = {it[1].filter_key(): filter_index.get(it[1].filter_key()) for it in block}
            tasks.append(Task(coding=dict(items[0][1].treatments), items=tuple(block), filter_index=fidx))
    return tasks


def _filter_task(ctx: EngineContext, filters: Mapping[str, Mapping[str, Any]]) -> np.ndarray | None:
    return filter_rows(ctx.raw, ctx.spec, filters)


def run_specifications(
    ctx: EngineContext,
    specs: Sequence[Specification],
    *,
    backend: str = "serial",
    n_jobs: int | None = None,
    address: str | None = None,
    checkpoint: str | Path | None = None,
    progress: bool | None = False,
    context_hash: str = "",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Estimate ``specs`` (the one code path of :func:`multiverse` and ``sensitivity``).

    Returns the tidy rows (one per specification x treatment, in specification order) and
    counters: fits, codings, filter runs, samples built, seconds, resumed specifications. Each
    specification's seed (passed to estimators that take one) comes from its key alone.
    """
    import dataclasses

    t0 = time.perf_counter()
    ctx = dataclasses.replace(ctx, token=context_hash or f"process-{id(ctx.raw)}-{time.time_ns()}")
    for s in specs:  # unknown filter steps fail here, before any work
        varied_spec(ctx.spec, s.filters)
    hashes = [_hash([s.content(), context_hash, list(ctx.treatments), list(ctx.focal)]) for s in specs]
    items = [(i, s, h, s.seed()) for i, (s, h) in enumerate(zip(specs, hashes))]
    store = Checkpoint(checkpoint) if checkpoint is not None else None
    done = store.load(set(hashes)) if store is not None else pd.DataFrame(columns=["spec_hash"])
    done_hashes = set(done["spec_hash"])
    todo = [it for it in items if it[2] not in done_hashes]
    if done_hashes:
        log.info("checkpoint %s: %d of %d specifications already done; %d to run", checkpoint, len(items) - len(todo),
                 len(items), len(todo))
    workers = n_jobs or (2 if backend == "dask" and address is None else 1) if backend != "serial" else 1
    filter_sets = {}
    for _, s, _, _ in todo:
        filter_sets.setdefault(s.filter_key(), s.filters)
    keys = list(filter_sets)
    new_rows: list[dict[str, Any]] = []
    with Session(backend, n_jobs, address) as session:
        indices = list(session.map(_indexed(_filter_task), ctx, list(enumerate(filter_sets[k] for k in keys)))) if keys else []
        filter_index = {keys[i]: idx for i, idx in indices}
        tasks = plan_tasks(todo, filter_index, workers)
        counters = {"specifications": len(specs), "resumed": len(items) - len(todo), "filter_runs": len(keys), "codings": 0,
                    "samples": 0, "fits": 0, "tasks": len(tasks), "backend": backend, "workers": workers}
        results = session.map(run_task, ctx, tasks)
        for out in _per_specification(_progress(_spread(results), f"multiverse ({backend}), specifications", progress,
                                                total=len(todo))):
            new_rows += out.rows
            counters["codings"] += out.codings
            counters["samples"] += out.samples
            counters["fits"] += out.fits
            if store is not None:
                store.write(out)
    counters["seconds"] = time.perf_counter() - t0
    log.info("multiverse: panel loaded once (%d rows); %d codings, %d filter runs, %d samples built for %d specifications "
             "(%d fits, %d resumed from checkpoint) in %.1f s on %s", len(ctx.raw), counters["codings"], counters["filter_runs"],
             counters["samples"], len(todo), counters["fits"], counters["resumed"], counters["seconds"], backend)
    old = done.to_dict("records") if len(done) else []
    table = tidy_rows(old + new_rows, [s.choices for s in specs][0].keys() if specs else [], hashes)
    return table, counters


def _spread(results: Iterator[TaskOutput]) -> Iterator[TaskOutput | None]:
    """One item per specification (the task's output, then None for its other specifications),
    so that the progress display counts specifications, their rate and the time left."""
    for out in results:
        yield out
        for _ in range(max(out.n_specs - 1, 0)):
            yield None


def _per_specification(items: Iterator[TaskOutput | None]) -> Iterator[TaskOutput]:
    for it in items:
        if it is not None:
            yield it


def _indexed(fn: Callable[[Any, Any], Any]) -> Callable[[Any, tuple[int, Any]], tuple[int, Any]]:
    return _Indexed(fn)


class _Indexed:
    """Picklable wrapper: ``(i, x) -> (i, fn(ctx, x))``."""

    def __init__(self, fn: Callable[[Any, Any], Any]) -> None:
        self.fn = fn

    def __call__(self, ctx: Any, item: tuple[int, Any]) -> tuple[int, Any]:
        return item[0], self.fn(ctx, item[1])


def tidy_rows(rows: list[dict[str, Any]], choice_columns: Sequence[str], hashes: Sequence[str]) -> pd.DataFrame:
    """One row per specification x treatment in specification order, fixed dtypes (so a
    resumed run and a fresh one give equal tables)."""
    cols = [*choice_columns, *RESULT_COLUMNS]
    t = pd.DataFrame(rows).reindex(columns=cols)
    order = {h: i for i, h in enumerate(hashes)}
    t["spec_id"] = t["spec_hash"].map(order)
    t = t.sort_values(["spec_id"], kind="stable")
    for c in choice_columns:
        t[c] = t[c].astype(str)
    for c in [*FIT_COLUMNS, "outcome_mean"]:
        t[c] = pd.to_numeric(t[c], errors="coerce").astype("float64")
    for c in [*COUNT_COLUMNS, "spec_id", "seed"]:
        t[c] = pd.to_numeric(t[c], errors="coerce").astype("Int64")
    t["seed"] = t["seed"].astype("UInt64") if t["seed"].notna().all() else t["seed"]
    for c in ("treatment", "status", "reason", "spec_hash"):
        t[c] = t[c].fillna("").astype(str)
    # within a specification keep the treatments in the order they were estimated
    return t.reset_index(drop=True)


def spec_grid_path(spec: StudySpec) -> Path | None:
    """The grid named by the spec's ``[report] multiverse`` (relative to the spec file), else None (the shipped grid)."""
    ref = spec.report.get("multiverse")
    if not ref:
        return None
    p = Path(str(ref))
    if not p.is_absolute() and spec.path is not None:
        p = spec.path.parent / p
    return p


def headline_check(grid: Grid, spec: StudySpec) -> list[str]:
    """Where the grid's baseline differs from the spec's treatment coding (listed, not fatal)."""
    base = grid.resolve(grid.baseline())
    coding = spec.treatments.add_treatments_kwargs()
    return [f"baseline {k}={v!r} but spec {spec.study.name!r} has {coding[k]!r}" for k, v in base.treatments.items()
            if k in coding and coding[k] != v]


def multiverse(
    spec: StudySpec | str | Path | None = None,
    data_dir: str | Path | None = None,
    grid: Grid | str | Path | None = None,
    *,
    design: str | None = None,
    n: int | None = None,
    backend: str = "serial",
    n_jobs: int | None = None,
    address: str | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    progress: bool | None = False,
    panel: pd.DataFrame | None = None,
) -> Any:
    """Estimate every specification of ``grid`` on ``spec`` (default: the grid named by the spec's
    ``[report] multiverse``, else ``data/specs/multiverse.toml``).

    ``design``: ``"full"`` (every combination), ``"one_at_a_time"`` (baseline and each option
    alone) or ``"sample"`` (``n`` specifications drawn with ``seed``); None takes the grid's
    ``default_design`` (the shipped grid: a 2,500-specification sample of its full design).
    ``backend``: ``"serial"``, ``"joblib"`` (``n_jobs`` processes), ``"dask"`` (scheduler at
    ``address`` or a LocalCluster of ``n_jobs`` workers) or ``"ray"``. ``checkpoint``: a
    directory of Parquet files; a rerun resumes from it. Returns a
    :class:`~returnstudy.multiverse_result.MultiverseResult`. ``panel``: a corridor-year panel
    that already has its treatment columns (e.g. ``simulate_panel``) instead of reading
    ``data_dir``; then the grid may not vary the treatment coding.
    """
    from returnstudy import __version__
    from returnstudy.multiverse_result import MultiverseResult
    from returnstudy.panel import load_panel

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {list(BACKENDS)}")
    if not isinstance(spec, StudySpec):
        spec = load_spec(spec)
    g = grid if isinstance(grid, Grid) else load_grid(grid if grid is not None else spec_grid_path(spec))
    if design is None:
        design, n, seed = g.default_design, (n if n is not None else g.default_n), (seed or g.default_seed)
    specs, excluded = g.specifications(design, n=n, seed=seed)
    mismatch = headline_check(g, spec)
    for m in mismatch:
        log.warning("multiverse grid %s: %s", g.name, m)
    if panel is None:
        kwargs = spec.data.load_panel_kwargs()
        if data_dir is not None:
            kwargs["data_dir"] = data_dir
        raw = load_panel(**kwargs)
    else:
        raw = panel.reset_index(drop=True)
    treatments = g.treatments or tuple(spec.treatments.types)
    focal = g.focal_treatments or treatments
    ctx = EngineContext(raw=raw, spec=spec, treatments=tuple(treatments), focal=tuple(focal),
                        code_treatments=panel is None)
    context_hash = _hash([vintage_signature(raw), panel_fingerprint(raw), spec.sha256, repr(spec.data), repr(spec.treatments),
                          repr(spec.filters), __version__])
    table, counters = run_specifications(ctx, specs, backend=backend, n_jobs=n_jobs, address=address,
                                         checkpoint=checkpoint, progress=progress, context_hash=context_hash)
    from returnstudy.multiverse_result import add_percent_scale

    table = add_percent_scale(table, specs)
    info = {"design": design, "n": n, "seed": seed, "excluded": excluded, "unavailable": list(g.unavailable),
            "baseline_differs_from_spec": mismatch, **counters, "grid_sha256": g.sha256, "spec_sha256": spec.sha256,
            "vintage": vintage_signature(raw), "version": __version__}
    return MultiverseResult(table=table, grid=g, spec=spec, info=info, context=ctx, specifications=list(specs),
                            context_hash=context_hash)

