"""Wall time of ``report`` on the real snapshot, by section, and the cost of a column access.

* ``report``: :func:`returnstudy.report.build_report` on the Eurostat snapshot, best of
  ``--repeat`` runs, serially (``n_jobs=1``) with the time spent in each section (model fits of both specs, the
  multiverse section and its null test, sensitivity, inference checks, Part 3 and claims,
  figures), the treatment coding and grid enumeration inside them (with their call counts),
  and how often the Eurostat tables were read (once per spec panel is the target); then the
  whole report with ``--jobs`` worker processes (wall time only: the sections run elsewhere).
* ``python -m returnstudy report --jobs N`` in a new process (``--cli-jobs``): what a user waits
  for, imports and worker start-up included, and the CPU time of all its processes.
* column access: ``sample[col]`` on the wodc estimation sample, which carries its provenance
  (vintage, treatment coding, filter flow) in ``attrs``, against the same frame without attrs.

Usage: ``python benchmarks/bench_report.py --data ../shared/data/eurostat [--repeat 1] [--jobs 2 3]
[--cli-jobs 2] [--out benchmarks/results/bench_report.csv]``
"""

from __future__ import annotations

import argparse
import functools
import logging
import platform
import tempfile
import time
import timeit
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

SECTIONS = {  # (module, attribute): section label
    ("returnstudy.report", "run_study"): "model fits (both specs)",
    ("returnstudy.multiverse_report", "multiverse_section"): "multiverse section",
    ("returnstudy.multiverse_result", "MultiverseResult.null_test"): "  of which null test",
    ("returnstudy.report", "sensitivity"): "sensitivity (one choice at a time)",
    ("returnstudy.report", "_headline_bootstraps"): "headline score bootstrap",
    ("returnstudy.report", "study_pretrend_reports"): "pre-trend sensitivity (honest DiD)",
    ("returnstudy.inference.influence", "influence"): "influence (leave one unit out)",
    ("returnstudy.report", "_inference_checks"): "inference checks",
    ("returnstudy.quality", "quality_report"): "Part 1 quality (report section and claims)",
    ("returnstudy.report", "_part3_and_claims"): "Part 3 and claims",
    ("returnstudy.report", "write_figure"): "figures (drawn: PNG + data)",
    ("returnstudy.artifacts", "write_figure"): "figures (drawn: PNG + data)",
    ("returnstudy.treatments", "add_treatments"): "treatment coding (within the sections above)",
    ("returnstudy.multiverse_grid", "Grid._enumerate"): "multiverse grid enumeration (within the sections above)",
    ("returnstudy.panel", "read_table"): "Eurostat table reads for panels",
}


def _instrument(times: dict[str, float], counts: dict[str, int]) -> list[Callable[[], None]]:
    """Wrap each section's function to add up its wall time; returns the undo functions."""
    import importlib

    undo = []
    for (mod_name, attr), label in SECTIONS.items():
        owner: Any = importlib.import_module(mod_name)
        if "." in attr:
            cls, attr = attr.split(".")
            owner = getattr(owner, cls)
        original = getattr(owner, attr)

        def make_timed(f: Callable[..., Any], lbl: str) -> Callable[..., Any]:
            @functools.wraps(f)  # keeps the signature: the grid reader inspects add_treatments' arguments
            def timed(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return f(*args, **kwargs)
                finally:
                    times[lbl] += time.perf_counter() - t0
                    counts[lbl] += 1

            return timed

        setattr(owner, attr, make_timed(original, label))
        undo.append(lambda owner=owner, attr=attr, original=original: setattr(owner, attr, original))
    return undo


def column_access(data: Path) -> tuple[float, float, int, int]:
    """Microseconds per ``sample[col]`` with and without provenance in attrs (best of 5 x 2000)."""
    from returnstudy.runner import study_sample

    _, filtered = study_sample(None, data)
    sample = filtered.panel
    plain = sample.copy()
    plain.attrs = {}
    n = 2000
    with_attrs = min(timeit.repeat(lambda: sample["orders"], number=n, repeat=5)) / n * 1e6
    without = min(timeit.repeat(lambda: plain["orders"], number=n, repeat=5)) / n * 1e6
    return with_attrs, without, len(sample), len(sample.attrs)


def cli_report(data: Path, jobs: int, repeat: int) -> tuple[float, float]:
    """Wall time of ``python -m returnstudy report`` in a new process (what a user waits for), best
    of ``repeat``, and the CPU time of that run's processes (user + system, the workers included:
    they are its children)."""
    import resource
    import subprocess
    import sys

    best = (float("inf"), float("nan"))
    for _ in range(max(1, repeat)):
        with tempfile.TemporaryDirectory() as out:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "returnstudy", "report", "--data", str(data), "--out", out,
                            "--jobs", str(jobs), "-q"], check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best = min(best, (wall, cpu))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "eurostat",
                    help="the Eurostat snapshot directory")
    ap.add_argument("--repeat", type=int, default=1, help="report runs; the fastest is kept (default 1)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "bench_report.csv")
    ap.add_argument("--jobs", type=int, nargs="*", default=[2],
                    help="also time the whole report with these n_jobs (processes: see build_report; default 2)")
    ap.add_argument("--cli-jobs", type=int, nargs="*", default=[2],
                    help="also time `python -m returnstudy report --jobs N` in a new process for these N (default 2)")
    args = ap.parse_args(argv)
    if not (args.data / "migr_eiord.csv").is_file():
        ap.error(f"--data {args.data}: no migr_eiord.csv there; pass the snapshot's eurostat directory")
    logging.basicConfig(level=logging.ERROR)
    import matplotlib

    matplotlib.use("Agg")
    from returnstudy.report import build_report

    rows = []
    best: tuple[float, dict[str, float], dict[str, int]] | None = None
    for _ in range(max(1, args.repeat)):
        times: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        undo = _instrument(times, counts)
        try:
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                build_report(out, data_dir=args.data)
                total = time.perf_counter() - t0
        finally:
            for u in undo:
                u()
        if best is None or total < best[0]:
            best = (total, dict(times), dict(counts))
    assert best is not None
    total, times, counts = best
    rows.append({"measure": "report total (n_jobs=1)", "seconds": total, "calls": 1})
    for label in dict.fromkeys(SECTIONS.values()):  # a label may time several functions
        rows.append({"measure": label, "seconds": times.get(label, 0.0), "calls": counts.get(label, 0)})
    for jobs in args.jobs:
        walls = []
        for _ in range(max(1, args.repeat)):
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                build_report(out, data_dir=args.data, n_jobs=jobs)
                walls.append(time.perf_counter() - t0)
        rows.append({"measure": f"report total (n_jobs={jobs}, worker start-up included)", "seconds": min(walls),
                     "calls": 1})
    for jobs in args.cli_jobs:
        wall, cpu = cli_report(args.data, jobs, args.repeat)
        rows.append({"measure": f"python -m returnstudy report --jobs {jobs} (a new process: imports included)",
                     "seconds": wall, "calls": 1})
        rows.append({"measure": f"  CPU of all its processes (--jobs {jobs})", "seconds": cpu, "calls": 1})
    with_attrs, without, n_rows, n_keys = column_access(args.data)
    rows.append({"measure": f"sample[col] with provenance ({n_keys} attrs entries), per access", "seconds": with_attrs * 1e-6,
                 "calls": n_rows})
    rows.append({"measure": "sample[col] without attrs, per access", "seconds": without * 1e-6, "calls": n_rows})
    table = pd.DataFrame(rows)
    table["machine"] = f"{platform.machine()} {platform.python_version()} pandas {pd.__version__}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, float_format="%.6g")
    with pd.option_context("display.width", 120, "display.max_colwidth", 70):
        print(table.drop(columns="machine").to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
