"""A `fetch --from` killed with SIGKILL leaves the cache in its old or its new state.

After the kill, the next process that opens the cache removes stale temporary files and
completes (rolls forward) a commit whose journal was written; a table without a manifest
entry is never read and is reported as not recorded, with the remedy.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from _cache_scenarios import TABLES, cache_state, cli, leftover_temporaries, make_small, make_variant

from returnstudy.data.cache import CacheIntegrityError, cache_status
from returnstudy.data.fetch import import_snapshot
from returnstudy.data.tables import read_table

KILLS = 4  # a few seeded kills, half of them inside the commit; benchmarks/cache_kill_study.py runs hundreds
SEED = 7
SMALL_ROWS = 300  # data rows per table in the killed imports: the commit's steps do not depend on the size

_KILL_AT_REPLACE = """
import os, signal, sys
from returnstudy.data.fetch import import_snapshot
src, cache, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = 0
real_replace = os.replace
def replace(a, b):
    global calls
    calls += 1
    if calls == k:
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(a, b)
os.replace = replace
import_snapshot(src, None, cache)
"""


def _check_and_count(cache: Path, snapshots: dict[str, Path], allowed: set[str]) -> str:
    """The next run: open the cache (recovers), then check it independently and through the package."""
    status = cache_status(cache)
    assert leftover_temporaries(cache) == []
    state = cache_state(cache, snapshots)
    assert state in allowed, state
    assert list(status.status) == ["ok"] * len(TABLES)
    for name in TABLES:
        read_table(name.split(".")[0], cache)  # checksums verified on read
    return state


@pytest.mark.slow
def test_sigkill_at_every_step_of_the_commit(tmp_path: Path, eurostat_dir: Path) -> None:
    """Kill the import just before its k-th atomic rename: journal (1), three tables (2-4), manifest (5).

    The snapshots are the first rows of the real tables (the same commit, parsed in milliseconds)."""
    old = make_small(eurostat_dir, tmp_path / "old", rows=SMALL_ROWS)
    snapshots = {"old": old, "new": make_variant(old, tmp_path / "new", bump=5)}
    expected = {1: "old", 2: "new", 3: "new", 4: "new", 5: "new", 6: "new"}  # 6: not killed
    template = tmp_path / "cache_old"
    import_snapshot(snapshots["old"], None, template)  # imported once; each run starts from a copy
    for k, want in expected.items():
        cache = tmp_path / f"cache{k}"
        shutil.copytree(template, cache)
        assert cache_state(cache, snapshots) == "old"
        p = subprocess.run([sys.executable, "-c", _KILL_AT_REPLACE, str(snapshots["new"]), str(cache), str(k)],
                           capture_output=True, text=True, timeout=300)
        if k < 6:
            assert p.returncode == -signal.SIGKILL, p.stderr
            assert leftover_temporaries(cache), "a killed commit leaves temporary files or a journal behind"
        else:
            assert p.returncode == 0, p.stderr
        assert _check_and_count(cache, snapshots, {want}) == want


def _wait_for_commit(cache: Path, proc: subprocess.Popen, timeout: float = 300.0) -> float:
    """Poll until the process writes its first temporary file into the cache (its commit starts)."""
    t0 = time.monotonic()
    while not list(cache.glob(".*.part")):
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            break
        time.sleep(0.005)
    return time.monotonic()


@pytest.mark.slow
def test_sigkill_at_random_points(tmp_path: Path, eurostat_dir: Path) -> None:
    """SIGKILL a `fetch --from` at seeded random times; the next run finds the old or the new state.

    Even-numbered kills fall uniformly over the whole run (start-up, parsing and commit);
    odd-numbered ones uniformly over the commit, which a slow disk stretches to about 0.8 s.
    The snapshots are the first rows of the real tables (the same commit, parsed in milliseconds).
    """
    a = make_small(eurostat_dir, tmp_path / "A", rows=SMALL_ROWS)
    snapshots = {"A": a, "B": make_variant(a, tmp_path / "B", bump=5)}
    cache = tmp_path / "cache"
    import_snapshot(snapshots["A"], None, cache)

    def start(src: Path, into: Path) -> subprocess.Popen:
        return cli(["fetch", "--from", str(src), "--cache", str(into)], fsync_delay=0.1)

    t0 = time.monotonic()
    timing = start(snapshots["B"], tmp_path / "timing")
    (tmp_path / "timing").mkdir(exist_ok=True)
    t_commit = _wait_for_commit(tmp_path / "timing", timing)
    assert timing.wait(timeout=300) == 0
    duration, commit = time.monotonic() - t0, time.monotonic() - t_commit
    rng = random.Random(SEED)
    state, outcomes, stale = "A", Counter(), Counter()
    for i in range(KILLS):
        target = "B" if state == "A" else "A"
        p = start(snapshots[target], cache)
        where = "anywhere" if i % 2 == 0 else "in commit"
        if where == "in commit":
            _wait_for_commit(cache, p)
        time.sleep(rng.uniform(0.0, duration if where == "anywhere" else commit))
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        stale[where] += bool(leftover_temporaries(cache))
        new_state = _check_and_count(cache, snapshots, {state, target})
        outcome = ("completed" if p.returncode == 0 else "killed") + (", old state" if new_state == state else ", new state")
        outcomes[f"{where}: {outcome}"] += 1
        state = new_state
    print(f"SIGKILL during fetch --from: {KILLS} kills (run {duration:.2f} s, commit {commit:.2f} s), "
          f"outcomes {dict(sorted(outcomes.items()))}; kills that left temporary files or a journal {dict(stale)}, "
          "all cleaned or completed by the next run")
    assert sum(outcomes.values()) == KILLS
    assert stale["in commit"] > 0, "no kill landed inside a commit: the test did not exercise the recovery"


def test_table_without_manifest_entry_is_not_recorded(tmp_path: Path, eurostat_dir: Path) -> None:
    cache = tmp_path / "cache"
    import_snapshot(eurostat_dir, ["migr_eiord"], cache)
    (cache / "migr_eirtn.csv").write_bytes((eurostat_dir / "migr_eirtn.csv").read_bytes())
    with pytest.raises(CacheIntegrityError) as err:
        read_table("migr_eirtn", cache)
    msg = str(err.value)
    assert "not recorded" in msg and "fetch --from DIR" in msg and "--datasets migr_eirtn" in msg
    assert "changed after it was cached" not in msg
    status = cache_status(cache).set_index("dataset").status
    assert status.to_dict() == {"migr_eiord": "ok", "migr_eirtn": "unrecorded"}
    # the remedy works
    import_snapshot(eurostat_dir, ["migr_eirtn"], cache)
    assert read_table("migr_eirtn", cache).vintage["rows"] == 38391


def test_stale_part_of_a_dead_process_is_removed_but_a_live_download_is_kept(tmp_path: Path, eurostat_dir: Path) -> None:
    cache = tmp_path / "cache"
    import_snapshot(eurostat_dir, ["migr_eiord"], cache)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = cache / f".migr_eiord.csv.{dead_pid}.abc123.part"
    legacy = cache / ".migr_eirtn.csv.k2j3h4.part"  # written by an older version (no process id)
    live = cache / f".migr_eipre.csv.{os.getppid()}.xyz789.part"  # the parent process is alive
    for p in (stale, legacy, live):
        p.write_bytes(b"partial")
    cache_status(cache)
    assert not stale.exists() and not legacy.exists()
    assert live.exists()


def test_optional_table_not_recorded_is_an_error_not_silently_missing(tmp_path: Path, eurostat_dir: Path) -> None:
    """migr_eipre is optional for the panel; present but unrecorded, it must not just 'stay missing'."""
    from returnstudy.panel import load_panel

    cache = tmp_path / "cache"
    import_snapshot(eurostat_dir, ["migr_eiord", "migr_eirtn"], cache)
    shutil.copy(eurostat_dir / "migr_eipre.csv", cache / "migr_eipre.csv")
    with pytest.raises(CacheIntegrityError, match=r"migr_eipre\.csv: table migr_eipre is in the cache but not recorded"):
        load_panel(cache)
    (cache / "migr_eipre.csv").unlink()
    assert load_panel(cache).found_illegal.isna().all()  # absent: missing, as documented
