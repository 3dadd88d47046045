"""Shared fixtures: the offline snapshot beside the repository, and an isolated cache."""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# One BLAS/OpenMP thread per test process, set before numpy is first imported (matplotlib below
# imports it) and inherited by the xdist workers and every subprocess a test starts (CLI runs,
# notebook kernels, joblib/Dask/Ray workers). The suite runs two worker processes on a two-core
# machine; a second BLAS thread per process only oversubscribes the cores, and OpenBLAS threads that
# wait for a busy core spin: a 3105 x 328 SVD took 4 s instead of 0.2 s with both cores busy.
# Numbers are unaffected (the tests hold estimates to 1e-10 and less); a value set outside is kept.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import matplotlib  # noqa: E402
import pytest  # noqa: E402

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(os.environ.get("RETURNSTUDY_SNAPSHOT", REPO.parent / "shared" / "data"))

# Modules whose tests take longest in total, longest first (measured on two workers: a full report,
# multiverse backends incl. starting Dask and Ray, notebook kernels, CLI runs on the snapshot,
# killed and concurrent subprocesses, Monte Carlo fixtures).
# pyproject runs the suite on two pytest-xdist workers with whole files as the unit of work
# (module-scoped fixtures are then computed once) in collection order, so these are collected first:
# started last, one of them would leave a worker running alone.
LONG_MODULES = (
    "test_multiverse.py",
    "test_report.py",
    "test_notebooks.py",
    "test_cli.py",
    "test_runner.py",
    "test_cache_crash.py",
    "test_treatments.py",
    "test_honest_did.py",
    "test_influence.py",
    "test_monte_carlo.py",
    "test_bootstrap.py",
    "test_fetch.py",
    "test_cache_errors.py",
    "test_estimate_baseline.py",
    "test_panel.py",
    "test_cache_concurrency.py",
    "test_etwfe.py",
)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Without pytest-xdist (``-p no:xdist``, or not installed) accept its options from addopts; they do nothing."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist", "parallel runs (pytest-xdist not loaded: these options are ignored)")
    group.addoption("--numprocesses", dest="numprocesses", default=None, metavar="N")
    group.addoption("--dist", dest="dist", default="no")
    group.addoption("--no-loadscope-reorder", dest="loadscopereorder", action="store_false", default=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests of LONG_MODULES to the front, in that order; everything else keeps its order."""
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def snapshot_dir() -> Path:
    """``../shared/data``: the real Eurostat snapshot (never copied into the repository)."""
    if not (SNAPSHOT / "eurostat" / "migr_eiord.csv").is_file():
        pytest.skip(f"offline snapshot not found at {SNAPSHOT}")
    return SNAPSHOT


@pytest.fixture(scope="session")
def eurostat_dir(snapshot_dir: Path) -> Path:
    return snapshot_dir / "eurostat"


@pytest.fixture(scope="session")
def real_panel(eurostat_dir: Path):
    """The corridor-year panel built from the snapshot (read-only: copy before changing)."""
    from returnstudy.panel import load_panel

    return load_panel(eurostat_dir)


@pytest.fixture(scope="session")
def wodc_run(eurostat_dir: Path):
    """``run_study("wodc")`` on the snapshot, once per worker process: the spec's sample and every
    model fit (read-only: copy before changing)."""
    from returnstudy.runner import run_study

    return run_study("wodc", eurostat_dir)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's cache or the network from a test."""
    monkeypatch.setenv("RETURNSTUDY_DATA_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("RETURNSTUDY_EUROSTAT_API", "http://127.0.0.1:9/unreachable")


@pytest.fixture(scope="session", autouse=True)
def _snapshot_tables_parsed_once() -> Iterator[None]:
    """Parse each table of the real snapshot once per test process instead of in every test.

    Most command and pipeline tests read the three snapshot tables (6 MB of SDMX-CSV, about
    0.5 s per read), some of them several times. ``parse_eurostat_bytes`` is a pure function of
    the bytes, the dataset code and the file name (used in messages and to infer the code), so
    for bytes identical to a snapshot file the parsed table is kept, keyed by those three, and
    every caller gets its own deep copy. Anything else (edited copies, the small fixtures, broken
    files) is parsed on every call; the parser itself is tested in test_eurostat.py and runs on
    the first read of each table. Subprocesses (CLI runs, notebook kernels) parse as usual.
    """
    tables_dir = SNAPSHOT / "eurostat"
    if os.environ.get("RETURNSTUDY_TEST_PARSE_EVERY_READ") or not tables_dir.is_dir():
        yield
        return
    import returnstudy.data.eurostat as eurostat
    import returnstudy.data.fetch as fetch
    import returnstudy.data.tables as tables

    parse = eurostat.parse_eurostat_bytes
    snapshot_digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in tables_dir.iterdir() if p.is_file()}
    parsed: dict[tuple[str, str | None, str], Any] = {}

    def parse_snapshot_once(raw: bytes, source: str | Path, dataset: str | None = None) -> Any:
        digest = hashlib.sha256(raw).hexdigest()
        if digest not in snapshot_digests:
            return parse(raw, source, dataset)
        key = (digest, dataset, Path(source).name)
        if key not in parsed:
            parsed[key] = parse(raw, source, dataset)
        table = parsed[key].copy(deep=True)
        table.attrs = copy.deepcopy(parsed[key].attrs)
        return table

    patch = pytest.MonkeyPatch()
    for module in (eurostat, fetch, tables):
        patch.setattr(module, "parse_eurostat_bytes", parse_snapshot_once)
    yield
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _shipped_agreement_tables_read_once() -> Iterator[None]:
    """Read and validate the shipped treatment tables (data/agreements, data/codes) once per test
    process for each content of those files.

    Every coding of treatments reads and validates them (about 0.2 s). ``read_tables`` is a
    function of the two directories and the files in them, so for the shipped directories the
    result is kept, keyed by the sha256 of every file there (an edit gives a new key), and every
    caller gets its own deep copy. Any other directory (the tests' edited copies) is read on
    every call; the validation itself is tested in test_agreement_data.py and runs on the first
    read. RETURNSTUDY_TEST_PARSE_EVERY_READ=1 turns this off.
    """
    if os.environ.get("RETURNSTUDY_TEST_PARSE_EVERY_READ"):
        yield
        return
    import returnstudy.agreement_tables as agreement_tables
    import returnstudy.treatments as treatments

    read = agreement_tables.read_tables
    shipped = (agreement_tables._default_agreements_dir().resolve(), agreement_tables._default_codes_dir().resolve())
    kept: dict[tuple[tuple[str, str], ...], Any] = {}

    def content_key() -> tuple[tuple[str, str], ...]:
        return tuple((str(p), hashlib.sha256(p.read_bytes()).hexdigest())
                     for d in shipped for p in sorted(d.iterdir()) if p.is_file())

    def read_shipped_once(agreements_dir: Path | None, codes_dir: Path | None = None) -> Any:
        adir = Path(agreements_dir).resolve() if agreements_dir is not None else shipped[0]
        cdir = Path(codes_dir).resolve() if codes_dir is not None else shipped[1]
        if (adir, cdir) != shipped:
            return read(agreements_dir, codes_dir)
        key = (("args", f"{agreements_dir}|{codes_dir}"), *content_key())  # paths as given appear in attrs and messages
        if key not in kept:
            kept[key] = read(agreements_dir, codes_dir)
        tables, problems, hashes = kept[key]
        copies = {}
        for name, table in tables.items():
            copies[name] = table.copy(deep=True)
            copies[name].attrs = copy.deepcopy(table.attrs)
        return copies, list(problems), dict(hashes)

    patch = pytest.MonkeyPatch()
    for module in (agreement_tables, treatments):
        patch.setattr(module, "read_tables", read_shipped_once)
    yield
    patch.undo()
