"""Peak memory of the linear wild cluster bootstrap with cluster = corridor (one cluster per corridor).

Each size runs in its own subprocess: ``simulate_panel`` (30 reporting countries x 15 years,
citizenships scaled to the target number of rows), ``twfe`` of the return rate on
``bilateral_binding`` with corridor and year effects clustered by corridor, then
``wild_bootstrap(reps=999, ci=False)``. The peak resident set size (``ru_maxrss``) of the
subprocess is reported, and the resident memory just before the bootstrap (panel and
fit, alive throughout) and the peak during the bootstrap alone (``VmHWM`` after resetting
it through ``/proc/self/clear_refs``; Linux), so the bootstrap's own share is visible.
Target: the bootstrap under 1 GB at 1M rows.

Usage: ``python benchmarks/mem_wild_bootstrap.py [rows ...]`` (default 300000 1000000);
writes ``benchmarks/results/mem_wild_bootstrap.csv``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "mem_wild_bootstrap.csv"

CHILD = r"""
import json, resource, sys, time
import numpy as np
from returnstudy.simulate import simulate_panel
from returnstudy.models.twfe import twfe
from returnstudy.inference.bootstrap import wild_bootstrap
rows = int(sys.argv[1])
n_citizen = max(2, round(rows / (30 * 15)))
panel = simulate_panel(seed=0, n_geo=30, n_citizen=n_citizen, zero_share=0.0)
res = twfe(panel, outcome="return_rate", treatments=["bilateral_binding"], cluster="corridor")
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
peak_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
live = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current RSS
    fh.write("5")
t0 = time.perf_counter()
b = wild_bootstrap(res, reps=999, seed=1, ci=False)
secs = time.perf_counter() - t0
peak_boot = status("VmHWM:")
print(json.dumps({"rows": len(panel), "n_obs": int(res.info["n_obs"]),
                  "clusters": int(b.info["wild_bootstrap"]["n_clusters"]), "reps": 999,
                  "peak_rss_mb_panel_and_fit": round(peak_setup, 1), "rss_mb_before_bootstrap": round(live, 1),
                  "peak_rss_mb_during_bootstrap": round(peak_boot, 1),
                  "bootstrap_increment_mb": round(peak_boot - live, 1),
                  "peak_rss_mb_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "bootstrap_seconds": round(secs, 2),
                  "p_value": float(b.table["boot_p_value"].iloc[0])}))
"""


def measure(rows: int) -> dict:
    """Run one size in a fresh interpreter and return its measurements."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(rows)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [300_000, 1_000_000]
    results = [measure(r) for r in sizes]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(results[0]))
        w.writeheader()
        w.writerows(results)
    for r in results:
        print(r)


if __name__ == "__main__":
    main(sys.argv[1:])
