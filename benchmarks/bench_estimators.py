"""Time and memory of the staggered-adoption estimators on a full-size synthetic panel.

Panel: ``simulate_panel(seed=0)`` — 30 reporting countries x 150 citizenships
(4,500 corridors) x 15 years = 67,500 corridor-years, calibrated to the Eurostat
snapshot (about half the corridors never record an order). Each estimator is run
once to warm up, then timed (best of ``--repeat``) and run once more under
``tracemalloc`` for its peak Python/numpy allocation. pyfixest's did2s,
saturated event study and fepois run in the same process for comparison.

Usage: ``python benchmarks/bench_estimators.py [--repeat 3] [--out benchmarks/results/bench_estimators.csv]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from returnstudy.inference.bands import sup_t_bands
from returnstudy.inference.bootstrap import wild_bootstrap
from returnstudy.inference.randomization import randomization_inference
from returnstudy.models.bacon import bacon_decomposition
from returnstudy.models.callaway_santanna import callaway_santanna
from returnstudy.models.imputation import did_imputation
from returnstudy.models.ppml import ppml
from returnstudy.models.sun_abraham import sun_abraham
from returnstudy.models.twfe import twfe
from returnstudy.simulate import simulate_panel

T = "bilateral_binding"


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best wall seconds over ``repeat`` runs, peak MiB traced in one extra run)."""
    fn()
    best = min(_timed(fn) for _ in range(repeat))
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak / 2**20


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_estimators.csv"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    panel = simulate_panel(seed=0, effect="heterogeneous")
    rate = panel.dropna(subset=["return_rate"])
    n_corr = panel["corridor"].nunique()
    print(f"SYNTHETIC panel: {len(panel):,} rows, {n_corr:,} corridors, {panel['year'].nunique()} years; "
          f"{len(rate):,} rows with a return rate; CPUs: {os.cpu_count()}; {platform.python_version()}")
    tw = twfe(panel, outcome="return_rate", treatments=[T])
    imp = did_imputation(panel, T)
    sa_ev = sun_abraham(panel, T, model="poisson")
    jobs: dict[str, Callable[[], object]] = {
        "did_imputation linear (+SE)": lambda: did_imputation(panel, T),
        "did_imputation poisson (+SE)": lambda: did_imputation(panel, T, model="poisson"),
        "did_imputation poisson event time": lambda: did_imputation(panel, T, model="poisson", event_time=True),
        "sun_abraham linear event time": lambda: sun_abraham(panel, T),
        "sun_abraham poisson event time": lambda: sun_abraham(panel, T, model="poisson"),
        "callaway_santanna notyet ATT": lambda: callaway_santanna(panel, T, control="notyet"),
        "callaway_santanna event time": lambda: callaway_santanna(panel, T, event_time=True),
        "callaway_santanna poisson ATT": lambda: callaway_santanna(panel, T, control="notyet", model="poisson"),
        "bacon_decomposition (balanced part)": lambda: bacon_decomposition(panel, treatment=T),
        "twfe linear (reference)": lambda: twfe(panel, outcome="return_rate", treatments=[T]),
        "ppml (reference)": lambda: ppml(panel, treatments=[T]),
        "wild_bootstrap twfe WCR 999 p-value": lambda: wild_bootstrap(tw, reps=999, seed=1, ci=False),
        "wild_bootstrap twfe WCR 999 + CI": lambda: wild_bootstrap(tw, reps=999, seed=1),
        "wild_bootstrap twfe 999 cluster=corridor": lambda: wild_bootstrap(tw, reps=999, seed=1, ci=False,
                                                                            cluster="corridor"),
        "wild_bootstrap imputation WCR 999 + CI": lambda: wild_bootstrap(imp, reps=999, seed=1),
        "randomization_inference imputation 99": lambda: randomization_inference(imp, reps=99, level="corridor",
                                                                                 seed=1),
        "sup_t_bands 10000 draws": lambda: sup_t_bands(sa_ev, seed=1),
    }
    try:
        import pyfixest as pf

        # pyfixest's did2s misaligns rows when its first stage drops singletons: keep corridors with
        # at least two untreated years (both packages then use the same rows)
        n_untr = rate[rate[T] == 0].groupby("corridor").size()
        rate2 = rate[rate["corridor"].isin(n_untr[n_untr >= 2].index)]
        q = rate2.assign(corridor=rate2["corridor"].astype(object), citizen=rate2["citizen"].astype(object),
                         g=rate2[f"{T}_cohort"].astype("float64").fillna(0).astype(int))
        jobs["did_imputation linear, did2s sample"] = lambda: did_imputation(rate2, T)
        qp = panel[panel["orders"] > 0].assign(
            corridor=lambda d: d["corridor"].astype(object), citizen=lambda d: d["citizen"].astype(object),
            log_orders=lambda d: np.log(d["orders"]))
        jobs["pyfixest did2s (+SE)"] = lambda: pf.did2s(
            q, yname="return_rate", first_stage="~ 0 | corridor + year", second_stage=f"~ {T}", treatment=T,
            cluster="citizen")
        jobs["pyfixest saturated event study"] = lambda: pf.event_study(
            q, yname="return_rate", idname="corridor", tname="year", gname="g", estimator="saturated",
            cluster="citizen")
        jobs["pyfixest fepois (reference)"] = lambda: pf.fepois(
            f"returns ~ {T} | corridor + year", data=qp, offset="log_orders", vcov={"CRV1": "citizen"})
    except ImportError:
        print("pyfixest not installed: comparison rows skipped")
    rows = []
    for name, fn in jobs.items():
        sec, mib = measure(fn, args.repeat)
        rows.append({"task": name, "seconds": sec, "peak_mib": mib})
        print(f"{name:45s} {sec:8.3f} s  {mib:9.1f} MiB", flush=True)
    res = pd.DataFrame(rows).set_index("task")
    pairs = [("did_imputation linear, did2s sample", "pyfixest did2s (+SE)"),
             ("sun_abraham linear event time", "pyfixest saturated event study"),
             ("ppml (reference)", "pyfixest fepois (reference)")]
    print("\nratio (ours / pyfixest, seconds):")
    for a, b in pairs:
        if a in res.index and b in res.index:
            r = res.loc[a, "seconds"] / res.loc[b, "seconds"]
            res.loc[a, "ratio_to_pyfixest"] = r
            print(f"  {a} / {b}: {r:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    res.to_csv(args.out)
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
