"""Two processes importing different snapshots into one cache at the same time.

Every write to the cache holds a cross-process file lock and commits all tables of an
import with one manifest, so whatever the interleaving the cache ends up holding one
snapshot whole (the last writer's), never a mix of files and manifest entries.

The snapshots are the first rows of the real tables (parsed in milliseconds) and the disk is
slow (0.05 s per fsync): each commit takes about 0.4 s, longer than the stagger between the two
starts (0-0.3 s), so the second process reaches the lock while the first one is committing.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest
from _cache_scenarios import cache_state, cli, leftover_temporaries, make_small, make_variant

from returnstudy.data.cache import cache_status
from returnstudy.data.tables import read_table

RUNS = 3  # each run starts two real processes; benchmarks/cache_kill_study.py runs many more
SEED = 20261206
FSYNC_DELAY = 0.05  # seconds added to every fsync of the two imports


@pytest.mark.slow
def test_concurrent_imports_leave_one_whole_snapshot(tmp_path: Path, eurostat_dir: Path) -> None:
    a = make_small(eurostat_dir, tmp_path / "A")
    snapshots = {"A": a, "B": make_variant(a, tmp_path / "B", bump=5)}
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    for run in range(RUNS):
        cache = tmp_path / f"cache{run}"
        first, second = rng.sample(["A", "B"], 2)
        procs = [cli(["fetch", "--from", str(snapshots[first]), "--cache", str(cache)], fsync_delay=FSYNC_DELAY)]
        time.sleep(rng.uniform(0.0, 0.3))  # vary the overlap of the two processes
        procs.append(cli(["fetch", "--from", str(snapshots[second]), "--cache", str(cache)], fsync_delay=FSYNC_DELAY))
        assert procs[0].poll() is None, "the first import finished before the second started: no overlap"
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        state = cache_state(cache, snapshots)
        outcomes[state] += 1
        assert state in snapshots, f"run {run}: {state}"
        assert leftover_temporaries(cache) == []
        status = cache_status(cache)
        assert list(status.status) == ["ok", "ok", "ok"]
        assert {Path(s).parent for s in status.source} == {snapshots[state].resolve()}
        # what a later command reads is the snapshot the files say, with its checksum
        eiord = read_table("migr_eiord", cache)
        assert eiord.vintage["source"] == str((snapshots[state] / "migr_eiord.csv").resolve())
    print(f"concurrent imports: {RUNS} runs, outcomes {dict(outcomes)}")
    assert sum(outcomes[k] for k in snapshots) == RUNS
