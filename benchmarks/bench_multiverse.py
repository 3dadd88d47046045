"""Throughput of the multiverse engine on the real snapshot, and what the full grid would cost.

Runs a seeded random sample of the shipped grid (``--specs``, default 120 specifications of
the full design) on the Eurostat snapshot:

* specifications per second serially, with joblib (2 workers) and with a Dask LocalCluster
  (2 workers), checking that the three tables are identical;
* sample builds (codings, filter runs, samples) against specifications;
* peak resident memory of this process and of its worker processes (``ru_maxrss``);
* fits per second inside the permutation null test (``--draws`` draws over ``--null-specs``
  specifications of ``bilateral_binding``);
* the projected wall time of the full grid, and of the full grid x 999 null draws, on 1, 2 and
  32 workers: serial seconds per specification (or per null fit) x count / (workers x
  efficiency), with the parallel efficiency measured on 2 workers (joblib) and assumed to hold
  at 32 (a lower bound on the wall time only if scaling stays that good).

Usage: ``python benchmarks/bench_multiverse.py --data ../shared/data/eurostat [--specs 120]
[--draws 10] [--null-specs 10] [--out benchmarks/results/bench_multiverse.csv]``
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import time
from pathlib import Path

import pandas as pd

from returnstudy.multiverse import multiverse
from returnstudy.multiverse_grid import load_grid


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: kilobytes


def _unit_costs(data: Path) -> dict[str, float]:
    """Mean seconds of one treatment coding and one filter run on the snapshot (3 repetitions)."""
    import returnstudy as rs

    spec = rs.load_spec()
    raw = rs.load_panel(**{**spec.data.load_panel_kwargs(), "data_dir": data})
    t0 = time.perf_counter()
    for _ in range(3):
        rs.add_treatments(raw, **spec.treatments.add_treatments_kwargs())
    coding = (time.perf_counter() - t0) / 3
    t0 = time.perf_counter()
    for _ in range(3):
        rs.apply_filters(raw, spec)
    return {"coding": coding, "filter": (time.perf_counter() - t0) / 3}


def _fit_seconds(grid, data: Path) -> dict[str, float]:  # noqa: ANN001 - Grid
    """Seconds per model fit of each estimator option on the baseline sample (best of 2)."""
    import returnstudy as rs
    from returnstudy.multiverse import EngineContext, fit_specification

    spec = rs.load_spec()
    raw = rs.load_panel(**{**spec.data.load_panel_kwargs(), "data_dir": data})
    sample = rs.apply_filters(rs.add_treatments(raw, **spec.treatments.add_treatments_kwargs()), spec).panel
    ctx = EngineContext(raw=raw, spec=spec, treatments=tuple(grid.treatments or spec.treatments.types),
                        focal=tuple(grid.focal_treatments or spec.treatments.types))
    out = {}
    for o in grid.dimension("estimator").options:
        s = grid.resolve(grid._applicable(grid.baseline() | {"estimator": o.name}))
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            _, fits = fit_specification(ctx, s, sample, 0, lambda _t: (0, 0))
            best = min(best, (time.perf_counter() - t0) / max(fits, 1))
        out[o.name] = best
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "eurostat")
    ap.add_argument("--specs", type=int, default=120)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--null-specs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-default-grid", dest="default_grid", action="store_false",
                    help="skip timing the grid's default design (2,500 specifications)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_multiverse.csv")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    grid = load_grid()
    full = grid.size("full")
    rows = []
    tables = {}
    results = {}
    for backend, n_jobs in (("serial", None), ("joblib", 2), ("dask", 2)):
        t0 = time.perf_counter()
        res = multiverse("wodc", args.data, design="sample", n=args.specs, seed=args.seed, backend=backend, n_jobs=n_jobs)
        secs = time.perf_counter() - t0
        i = res.info
        tables[backend] = res.table
        results[backend] = res
        rows.append({"measure": f"specifications per second, {backend}" + (f" ({n_jobs} workers)" if n_jobs else ""),
                     "value": i["specifications"] / secs, "unit": "spec/s",
                     "note": f"{i['specifications']} specs, {i['fits']} fits, {i['codings']} codings, {i['filter_runs']} filter runs, "
                             f"{i['samples']} samples built, {secs:.1f} s incl. panel load"})
    same = all(tables[b].equals(tables["serial"]) for b in ("joblib", "dask"))
    rows.append({"measure": "tables identical across serial, joblib(2), dask(2)", "value": float(same), "unit": "bool", "note": ""})
    serial_rate = rows[0]["value"]
    eff2 = rows[1]["value"] / (2 * serial_rate)
    rows.append({"measure": "parallel efficiency on 2 workers (joblib)", "value": eff2, "unit": "share", "note": "speed-up / 2"})
    i = results["serial"].info
    rows.append({"measure": "sample builds per specification", "value": i["samples"] / i["specifications"], "unit": "ratio",
                 "note": f"{i['codings']} codings + {i['filter_runs']} filter runs -> {i['samples']} samples for {i['specifications']} specs"})

    if args.default_grid:
        t0 = time.perf_counter()
        res = multiverse("wodc", args.data, backend="joblib", n_jobs=2)  # the grid's default design
        secs = time.perf_counter() - t0
        d = res.info
        rows.append({"measure": f"default grid ({d['design']}, {d['specifications']} specs), joblib 2 workers, wall time",
                     "value": secs, "unit": "s",
                     "note": f"{d['fits']} fits, {d['codings']} codings, {d['filter_runs']} filter runs, {d['samples']} samples built; "
                             f"{d['specifications'] / secs:.1f} spec/s"})
    t0 = time.perf_counter()
    nt = results["serial"].null_test("bilateral_binding", draws=args.draws, seed=args.seed, n_specs=args.null_specs)
    null_secs = time.perf_counter() - t0
    fits_per_s = nt.info["fits"] / nt.info["seconds"]
    rows.append({"measure": "null test fits per second (serial, one core)", "value": fits_per_s, "unit": "fit/s",
                 "note": f"{nt.info['draws']} draws x {nt.info['n_specifications']} specs = {nt.info['fits']} fits, "
                         f"{null_secs:.1f} s incl. setup"})
    rows.append({"measure": "peak memory, this process", "value": _rss_mb(resource.RUSAGE_SELF), "unit": "MB", "note": "ru_maxrss"})
    rows.append({"measure": "peak memory, largest worker process", "value": _rss_mb(resource.RUSAGE_CHILDREN), "unit": "MB",
                 "note": "ru_maxrss of waited-for children"})

    # cost model of the full grid: codings x c + filter runs x f + sum over specifications of fits x seconds per fit
    costs = _unit_costs(args.data)
    per_fit = _fit_seconds(grid, args.data)
    rows.append({"measure": "seconds per treatment coding", "value": costs["coding"], "unit": "s", "note": "add_treatments, mean of 3"})
    rows.append({"measure": "seconds per filter run", "value": costs["filter"], "unit": "s", "note": "apply_filters, mean of 3"})
    for name, sec in per_fit.items():
        rows.append({"measure": f"seconds per fit, {name}", "value": sec, "unit": "s", "note": "baseline sample, best of 2"})
    names = grid.names
    full_choices, _ = grid._choices("full")
    est = pd.Series([c["estimator"] for c in full_choices])
    counts = est.value_counts()
    n_focal = len(grid.focal_treatments or ["x"])
    fits_of = {o.name: (1 if grid.resolve(grid.baseline() | {"estimator": o.name}).model["estimator"] in ("ppml", "twfe") else n_focal)
               for o in grid.dimension("estimator").options}
    full_fits = int(sum(counts[e] * fits_of[e] for e in counts.index))
    fit_seconds = float(sum(counts[e] * fits_of[e] * per_fit[e] for e in counts.index))
    n_codings = len({tuple(c[d] for d in names if any(o.treatments for o in grid.dimension(d).options)) for c in full_choices})
    n_filters = len({tuple(c[d] for d in names if any(o.filters for o in grid.dimension(d).options)) for c in full_choices})
    serial_full = n_codings * costs["coding"] + n_filters * costs["filter"] + fit_seconds
    sec_per_null_fit = 1.0 / fits_per_s
    rows.append({"measure": "full grid size", "value": full, "unit": "specifications",
                 "note": f"after declared exclusions; {full_fits} fits, {n_codings} codings, {n_filters} filter sets"})
    for w in (1, 2, 32):
        eff = 1.0 if w == 1 else eff2
        grid_h = serial_full / (w * eff) / 3600
        null_h = full_fits * 999 * sec_per_null_fit / (w * eff) / 3600
        rows.append({"measure": f"projected full grid, {w} worker(s)", "value": grid_h, "unit": "hours", "note": ""})
        rows.append({"measure": f"projected full grid x 999 null draws, {w} worker(s)", "value": null_h, "unit": "hours", "note": ""})
    env = f"{platform.python_version()} on {os.cpu_count()} cores, {platform.machine()}"
    out = pd.DataFrame(rows)
    out["environment"] = env
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False, float_format="%.6g")
    with pd.option_context("display.width", 200, "display.max_colwidth", 120):
        print(out.drop(columns="environment").to_string(index=False, float_format=lambda x: f"{x:.4g}"))


if __name__ == "__main__":
    main()
