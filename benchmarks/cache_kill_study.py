"""The long randomized crash and concurrency studies of the Eurostat cache (the tests run a few cases).

* ``--kills N``: SIGKILL ``fetch --from`` N times at seeded random points, half of them inside
  the commit (stretched by a slow disk), and check after each kill that the next process finds
  the old or the new snapshot whole (``tests/test_cache_crash.py::test_sigkill_at_random_points``).
* ``--runs N``: N pairs of concurrent ``fetch --from`` of two different snapshots into one
  cache; each must leave one whole snapshot
  (``tests/test_cache_concurrency.py::test_concurrent_imports_leave_one_whole_snapshot``).

The checks are the tests' own (same assertions, independent json + hashlib reading of the
cache); only the number of cases is larger. Each kill or run starts one or two Python
processes, so expect about 2-4 s per case.

Usage: ``python benchmarks/cache_kill_study.py --data ../shared/data/eurostat [--kills 200] [--runs 100] [--seed 7]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "eurostat",
                    help="directory of the Eurostat snapshot (migr_eiord.csv, migr_eirtn.csv, migr_eipre.csv)")
    ap.add_argument("--kills", type=int, default=200, help="SIGKILLs of fetch --from (default 200)")
    ap.add_argument("--runs", type=int, default=100, help="pairs of concurrent imports (default 100)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the kill times and import orders")
    args = ap.parse_args(argv)
    if not (args.data / "migr_eiord.csv").is_file():
        ap.error(f"--data {args.data}: no migr_eiord.csv there; pass the snapshot's eurostat directory")
    sys.path.insert(0, str(TESTS))
    import test_cache_concurrency
    import test_cache_crash

    test_cache_crash.KILLS, test_cache_crash.SEED = args.kills, args.seed
    test_cache_concurrency.RUNS, test_cache_concurrency.SEED = args.runs, args.seed
    with tempfile.TemporaryDirectory() as tmp:
        if args.kills:
            t0 = time.monotonic()
            (Path(tmp) / "kills").mkdir()
            test_cache_crash.test_sigkill_at_random_points(Path(tmp) / "kills", args.data)
            print(f"{args.kills} kills in {time.monotonic() - t0:.0f} s: every next run found a whole snapshot")
        if args.runs:
            t0 = time.monotonic()
            (Path(tmp) / "runs").mkdir()
            test_cache_concurrency.test_concurrent_imports_leave_one_whole_snapshot(Path(tmp) / "runs", args.data)
            print(f"{args.runs} concurrent import pairs in {time.monotonic() - t0:.0f} s: each left one whole snapshot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
