"""Time of the Rambachan-Roth sensitivity analysis (target: one C-LF analysis in < 2 s).

The event study: a Poisson ``event_study`` of ``bilateral_binding`` on
``simulate_panel(seed=0, n_geo=10, n_citizen=60, base_effect=0.3)`` with window (-5, 3): 4 leads (reference
period -1 left out) and 4 lags. Timed (best of ``--repeat`` after one warm-up run):

* ``C-LF, 5 Mbar``: :func:`honest_did` with relative magnitudes, C-LF, Mbar = 0, 0.5, 1,
  1.5, 2 (1000 grid points, 1000 draws for the least-favourable critical value): the
  issue's benchmark;
* ``conditional, 5 Mbar``; ``FLCI, 5 M`` (smoothness); ``breakdown Mbar`` (bisection to 0.01).

Usage: ``python benchmarks/bench_honest_did.py [--repeat 5] [--out benchmarks/results/bench_honest_did.csv]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from returnstudy.inference.honest_did import breakdown, event_study_coefficients, honest_did
from returnstudy.models.event_study import event_study
from returnstudy.simulate import simulate_panel

MBAR = (0.0, 0.5, 1.0, 1.5, 2.0)


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_honest_did.csv")
    args = ap.parse_args()
    panel = simulate_panel(seed=0, n_geo=10, n_citizen=60, base_effect=0.3)
    es = event_study(panel, treatment="bilateral_binding", window=(-5, 3), model="ppml")
    c = event_study_coefficients(es)
    assert (c.n_pre, c.n_post) == (4, 4), (c.n_pre, c.n_post)
    se = float(es.table.loc[0, "std_error"])
    cases: dict[str, Callable[[], object]] = {
        "C-LF, 5 Mbar": lambda: honest_did(c, m=MBAR, method="C-LF"),
        "conditional, 5 Mbar": lambda: honest_did(c, m=MBAR, method="conditional"),
        "FLCI, 5 M": lambda: honest_did(c, restriction="smoothness", m=[k * se / 4 for k in range(5)]),
        "breakdown Mbar (tol 0.01)": lambda: breakdown(c, tol=0.01),
    }
    rows = []
    for name, fn in cases.items():
        sec = _best_of(fn, args.repeat)
        rows.append({"analysis": name, "n_pre": c.n_pre, "n_post": c.n_post, "seconds": round(sec, 4),
                     "target_seconds": 2.0 if name.startswith("C-LF") else None, "repeat": args.repeat,
                     "cpus": os.cpu_count(), "python": platform.python_version()})
        print(f"{name:28s} {sec:8.3f} s")
    out = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False, lineterminator="\n")
    print(honest_did(c, m=MBAR).to_string(index=False))


if __name__ == "__main__":
    main()
