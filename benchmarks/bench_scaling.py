"""How time and memory grow with the number of rows: every estimator, ours beside pyfixest.

Panels: ``simulate_panel(seed=0, n_geo=30, n_citizen=N // 450)``, 30 reporting countries x
15 years (2008-2022), the number of citizenships scaled to give 10k / 67.5k / 300k / 1M
corridor-years (``--sizes``). Each (task, size) runs in a fresh Python process, so its peak
resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own: the process
builds the panel (``setup_rss_mb``: peak after imports, panel and a warm-up fit on a tiny
panel, which also compiles pyfixest's numba kernels), then runs the task ``--reps`` times
(median, min and max wall seconds; ``peak_rss_mb``; ``task_rss_mb`` = peak - setup).

Tasks (ours; pyfixest 0.60 equivalents where they exist, skipped when pyfixest is not installed):

* ``twfe`` / ``feols``, ``ppml`` / ``fepois`` (corridor and year effects, clustered by citizenship);
* ``did_imputation linear`` / ``did2s``, ``did_imputation poisson``;
* ``sun_abraham`` (linear, cohort x period cells) / pyfixest's saturated event study;
* ``callaway_santanna`` (not-yet-treated controls); ``etwfe`` (linear) and ``etwfe poisson`` (returns with the
  log(orders) exposure offset, ratio scale) when ``returnstudy.etwfe`` exists;
* ``wild_bootstrap twfe cluster=corridor 999`` / pyfixest ``wildboottest`` (needs the ``wildboottest`` package);
* ``wild_bootstrap ppml 999`` (the Poisson score bootstrap) when the package routes Poisson results to it;
* ``randomization_inference twfe 999`` (adoption dates permuted across corridors) / pyfixest ``ritest``
  (99 draws, randomization-c; it permutes the treatment column's values), compared per draw;
* ``randomization_inference ppml 99`` (per-draw rate of the Poisson permutation test).

Comparable pairs run on the same rows (pyfixest's did2s misaligns rows when its first stage
drops singletons, so both use corridors with at least two untreated years; the saturated event
study takes the first *observed* treated year as the cohort, so both use corridors observed in
their adoption year). ``max_abs_diff_vs_pyfixest`` is the largest absolute difference of the
point estimates (every Sun-Abraham cell), ``ratio_to_pyfixest`` the time ratio ours / theirs
(per draw for the resampling tasks).
``k_time`` and ``k_memory`` are growth exponents: log(time ratio) / log(row ratio) between
67.5k and 1M rows (``k_range`` says which sizes when those are not both run); memory uses
``task_rss_mb``.

Usage: ``python benchmarks/bench_scaling.py [--sizes 10000,67500,300000,1000000] [--reps 3]
[--tasks twfe,ppml] [--timeout 3600] [--out benchmarks/results/bench_scaling.csv]``.
The full run takes tens of minutes and several GB at 1M rows: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

T = "bilateral_binding"
ROWS_PER_CITIZEN = 30 * 15  # reporting countries x years
DEFAULT_SIZES = (10_000, 67_500, 300_000, 1_000_000)
K_FROM, K_TO = 67_500, 1_000_000


@dataclass(frozen=True)
class Task:
    """One benchmarked call: ``prepare(panel)`` returns the timed callable and a function
    from its result to the point estimates compared across implementations."""

    implementation: str  # "ours" or "pyfixest"
    prepare: Callable[[pd.DataFrame], tuple[Callable[[], Any], Callable[[Any], pd.Series]]]
    counterpart: str | None = None  # the pyfixest task compared with this one
    draws: int | None = None  # permutation/bootstrap draws (for the per-draw time)


# ----------------------------------------------------------------------------- samples


def simulated(rows: int) -> pd.DataFrame:
    """The benchmark panel with about ``rows`` corridor-years."""
    from returnstudy import simulate_panel

    return simulate_panel(seed=0, n_geo=30, n_citizen=max(2, round(rows / ROWS_PER_CITIZEN)), years=(2008, 2022))


def _rate(panel: pd.DataFrame) -> pd.DataFrame:
    return panel.dropna(subset=["return_rate"])


def _did2s_rows(panel: pd.DataFrame) -> pd.DataFrame:
    rate = _rate(panel)
    n_untr = rate[rate[T] == 0].groupby("corridor").size()
    return rate[rate["corridor"].isin(n_untr[n_untr >= 2].index)]


def _saturated_rows(panel: pd.DataFrame) -> pd.DataFrame:
    rate2 = _did2s_rows(panel)
    coh = rate2[f"{T}_cohort"].astype("float64")
    seen = rate2.loc[rate2["year"] == coh, "corridor"].unique()
    return rate2[coh.isna().to_numpy() | rate2["corridor"].isin(seen).to_numpy()]


def _pf_frame(df: pd.DataFrame) -> pd.DataFrame:
    """pyfixest wants plain object/float columns and the cohort as 0 / first treated year."""
    return df.assign(corridor=df["corridor"].astype(object), citizen=df["citizen"].astype(object),
                     g=df[f"{T}_cohort"].astype("float64").fillna(0).astype(int))


def _ours_coef(res: Any) -> pd.Series:
    return pd.Series({T: float(res.coef(T))})


def _pf_coef(res: Any) -> pd.Series:
    return pd.Series({T: float(res.coef()[T])})


def _no_estimate(_res: Any) -> pd.Series:
    return pd.Series(dtype=float)


def _sa_cells(res: Any) -> pd.Series:
    cells = res.extra["cohort_effects"]["estimate"]
    return pd.Series(cells.to_numpy(), index=[f"{int(g)}:{int(k)}" for g, k in cells.index])


def _pf_cells(res: Any) -> pd.Series:
    coef = res.coef()
    key = coef.index.str.extract(r"::(?P<k>-?[\d.]+):.+::(?P<g>-?[\d.]+)$").astype(float).astype(int)
    return pd.Series(coef.to_numpy(), index=[f"{g}:{k}" for g, k in zip(key["g"], key["k"])])


def tasks() -> dict[str, Task]:
    """Every task this run can perform (pyfixest tasks only if it imports)."""
    import returnstudy as rs

    def ours(fn: Callable[[pd.DataFrame], Any], est: Callable[[Any], pd.Series] = _ours_coef,
             sample: Callable[[pd.DataFrame], pd.DataFrame] = lambda p: p):
        def prepare(panel: pd.DataFrame):
            s = sample(panel)
            return (lambda: fn(s)), est
        return prepare

    def with_fit(fit: Callable[[pd.DataFrame], Any], then: Callable[[Any, pd.DataFrame], Any]):
        def prepare(panel: pd.DataFrame):
            res = fit(panel)  # the fit itself is not timed
            return (lambda: then(res, panel)), _no_estimate
        return prepare

    out: dict[str, Task] = {
        "twfe": Task("ours", ours(lambda p: rs.twfe(p, outcome="return_rate", treatments=[T])), "pyfixest feols"),
        "ppml": Task("ours", ours(lambda p: rs.ppml(p, treatments=[T])), "pyfixest fepois"),
        "did_imputation linear": Task("ours", ours(lambda p: rs.did_imputation(p, T, model="linear"),
                                                   sample=_did2s_rows), "pyfixest did2s"),
        "did_imputation poisson": Task("ours", ours(lambda p: rs.did_imputation(p, T, model="poisson"))),
        "sun_abraham": Task("ours", ours(lambda p: rs.sun_abraham(p, T), est=_sa_cells, sample=_saturated_rows),
                            "pyfixest saturated event study"),
        "callaway_santanna": Task("ours", ours(lambda p: rs.callaway_santanna(p, T, control="notyet"))),
        "wild_bootstrap twfe cluster=corridor 999": Task(
            "ours", with_fit(lambda p: rs.twfe(p, outcome="return_rate", treatments=[T], cluster="corridor"),
                             lambda r, _p: rs.wild_bootstrap(r, reps=999, seed=1, ci=False, cluster="corridor")),
            "pyfixest wildboottest cluster=corridor 999", draws=999),
        "randomization_inference twfe 999": Task(
            "ours", with_fit(lambda p: rs.twfe(p, outcome="return_rate", treatments=[T], cluster="corridor"),
                             lambda r, p: rs.randomization_inference(r, reps=999, seed=1, level="corridor", panel=p)),
            "pyfixest ritest 99", draws=999),
        "randomization_inference ppml 99": Task(
            "ours", with_fit(lambda p: rs.ppml(p, treatments=[T]),
                             lambda r, p: rs.randomization_inference(r, reps=99, seed=1, level="corridor", panel=p)), draws=99),
    }
    if hasattr(rs, "etwfe"):
        out["etwfe"] = Task("ours", ours(lambda p: rs.etwfe(p, T)))
        out["etwfe poisson"] = Task("ours", ours(lambda p: rs.etwfe(p, T, model="poisson")))
    try:
        from returnstudy.inference.score_bootstrap import score_bootstrap  # noqa: F401

        out["wild_bootstrap ppml 999 (score)"] = Task(
            "ours", with_fit(lambda p: rs.ppml(p, treatments=[T]),
                             lambda r, _p: rs.wild_bootstrap(r, reps=999, seed=1, ci=False)), draws=999)
    except ImportError:
        pass
    try:
        import pyfixest as pf
    except ImportError:
        return out

    def pf_task(fn: Callable[[pd.DataFrame], Any], est: Callable[[Any], pd.Series] = _pf_coef,
                sample: Callable[[pd.DataFrame], pd.DataFrame] = _rate):
        def prepare(panel: pd.DataFrame):
            s = _pf_frame(sample(panel))
            return (lambda: fn(s)), est
        return prepare

    def positive_orders(p: pd.DataFrame) -> pd.DataFrame:
        q = p[p["orders"] > 0]
        return q.assign(log_orders=np.log(q["orders"].to_numpy(dtype=float)))

    out["pyfixest feols"] = Task("pyfixest", pf_task(
        lambda q: pf.feols(f"return_rate ~ {T} | corridor + year", data=q, vcov={"CRV1": "citizen"})))
    out["pyfixest fepois"] = Task("pyfixest", pf_task(
        lambda q: pf.fepois(f"returns ~ {T} | corridor + year", data=q, offset="log_orders", vcov={"CRV1": "citizen"}),
        sample=positive_orders))
    out["pyfixest did2s"] = Task("pyfixest", pf_task(
        lambda q: pf.did2s(q, yname="return_rate", first_stage="~ 0 | corridor + year", second_stage=f"~ {T}",
                           treatment=T, cluster="citizen"), sample=_did2s_rows))
    out["pyfixest saturated event study"] = Task("pyfixest", pf_task(
        lambda q: pf.event_study(q, yname="return_rate", idname="corridor", tname="year", gname="g",
                                 estimator="saturated", cluster="citizen"), est=_pf_cells, sample=_saturated_rows))

    def pf_after_feols(then: Callable[[Any], Any]):
        def prepare(panel: pd.DataFrame):
            fit = pf.feols(f"return_rate ~ {T} | corridor + year", data=_pf_frame(_rate(panel)), vcov={"CRV1": "corridor"})
            return (lambda: then(fit)), _no_estimate
        return prepare

    out["pyfixest ritest 99"] = Task("pyfixest", pf_after_feols(
        lambda f: f.ritest(resampvar=T, reps=99, rng=np.random.default_rng(1))), draws=99)
    try:
        import wildboottest  # noqa: F401

        out["pyfixest wildboottest cluster=corridor 999"] = Task("pyfixest", pf_after_feols(
            lambda f: f.wildboottest(reps=999, param=T, cluster="corridor", seed=1)), draws=999)
    except ImportError:
        pass
    return out


# ----------------------------------------------------------------------------- one (task, size) in this process


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def worker(name: str, rows: int, reps: int) -> dict[str, Any]:
    """Build the panel, warm up on a tiny panel, time ``reps`` runs; a JSON-able record."""
    import logging

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    task = tasks()[name]
    try:  # imports, numba compilation and first-call costs stay out of the timing
        fn, _ = task.prepare(simulated(ROWS_PER_CITIZEN * 12))
        fn()
    except Exception:  # noqa: BLE001 - a tiny panel may not identify every estimator; the timed runs decide
        pass
    panel = simulated(rows)
    fn, est = task.prepare(panel)
    setup = _rss_mb()
    times, res = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    estimate = est(res)
    return {"task": name, "rows": rows, "n_rows_panel": len(panel), "times": times, "setup_rss_mb": setup,
            "peak_rss_mb": _rss_mb(), "estimate": {str(k): float(v) for k, v in estimate.items()}}


# ----------------------------------------------------------------------------- driver


def run_one(name: str, rows: int, reps: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", name, "--rows", str(rows), "--reps", str(reps)]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"task": name, "rows": rows, "status": f"timeout after {timeout:.0f} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        why = "killed (out of memory?)" if out.returncode < 0 else tail
        return {"task": name, "rows": rows, "status": f"failed: {why}"[:300]}
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    rec["status"] = "ok"
    rec["wall_incl_setup"] = time.perf_counter() - t0
    return rec


def growth(sub: pd.DataFrame, col: str) -> tuple[float, str]:
    """log(col ratio) / log(rows ratio) between K_FROM and K_TO rows (else the smallest and
    largest sizes that ran)."""
    ok = sub[(sub["status"] == "ok") & (sub[col] > 0)].set_index("rows")[col]
    if K_FROM in ok.index and K_TO in ok.index:
        a, b = K_FROM, K_TO
    elif len(ok) >= 2:
        a, b = int(ok.index.min()), int(ok.index.max())
    else:
        return math.nan, ""
    return math.log(ok[b] / ok[a]) / math.log(b / a), f"{a}-{b}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="rows, comma-separated")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per (task, size) process")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_scaling.csv")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.reps)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    available = tasks()
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] or list(available)
    unknown = sorted(set(names) - set(available))
    if unknown:
        ap.error(f"unknown task(s) {unknown}; available: {list(available)}")
    try:
        import pyfixest

        pf_version = pyfixest.__version__
    except ImportError:
        pf_version = "not installed"
        print("pyfixest not installed: its columns are skipped")
    records = []
    for rows in sizes:
        for name in names:
            rec = run_one(name, rows, args.reps, args.timeout)
            times = rec.get("times") or []
            med = statistics.median(times) if times else math.nan
            draws = available[name].draws
            records.append({
                "task": name, "implementation": available[name].implementation, "rows": rows,
                "n_rows_panel": rec.get("n_rows_panel"), "reps": len(times), "median_seconds": med,
                "min_seconds": min(times) if times else math.nan, "max_seconds": max(times) if times else math.nan,
                "draws": draws, "seconds_per_draw": med / draws if draws else math.nan,
                "setup_rss_mb": rec.get("setup_rss_mb", math.nan), "peak_rss_mb": rec.get("peak_rss_mb", math.nan),
                "estimate": json.dumps(rec.get("estimate", {})), "status": rec["status"],
            })
            r = records[-1]
            print(f"{rows:>9,} {name:45s} {r['median_seconds']:9.3f} s {r['peak_rss_mb']:8.0f} MB  {r['status']}",
                  flush=True)
    table = pd.DataFrame(records)
    table["task_rss_mb"] = table["peak_rss_mb"] - table["setup_rss_mb"]
    table["counterpart"] = table["task"].map(lambda t: available[t].counterpart)
    table["ratio_to_pyfixest"] = math.nan
    table["max_abs_diff_vs_pyfixest"] = math.nan
    by = table.set_index(["task", "rows"])
    for i, r in table.iterrows():
        c = r["counterpart"]
        if not isinstance(c, str) or (c, r["rows"]) not in by.index:
            continue
        theirs = by.loc[(c, r["rows"])]
        if r["status"] != "ok" or theirs["status"] != "ok":
            continue
        per_draw = pd.notna(r["draws"]) and pd.notna(theirs["draws"])
        col = "seconds_per_draw" if per_draw else "median_seconds"
        table.loc[i, "ratio_to_pyfixest"] = r[col] / theirs[col]
        a, b = pd.Series(json.loads(r["estimate"])), pd.Series(json.loads(theirs["estimate"]))
        common = a.index.intersection(b.index)
        if len(common) and len(common) == len(a) == len(b):
            table.loc[i, "max_abs_diff_vs_pyfixest"] = float(np.max(np.abs(a[common] - b[common])))
    for name, sub in table.groupby("task", sort=False):
        kt, rng_t = growth(sub, "median_seconds")
        km, _ = growth(sub, "task_rss_mb")
        table.loc[sub.index, ["k_time", "k_memory"]] = [kt, km]
        table.loc[sub.index, "k_range"] = rng_t
    table["environment"] = (f"python {platform.python_version()}, pyfixest {pf_version}, {os.cpu_count()} CPUs, "
                            f"{platform.machine()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, float_format="%.6g")
    show = table[["task", "rows", "median_seconds", "peak_rss_mb", "ratio_to_pyfixest", "max_abs_diff_vs_pyfixest",
                  "k_time", "k_memory", "status"]]
    print(show.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
