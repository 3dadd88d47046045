"""Helpers for the cache concurrency and crash tests: snapshot variants, CLI subprocesses, and an
independent check of a cache's state (plain json + hashlib, not the package's own code)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

TABLES = ("migr_eiord.csv", "migr_eirtn.csv", "migr_eipre.csv")


def make_small(src: Path, dst: Path, rows: int = 300) -> Path:
    """A copy of the snapshot ``src`` in ``dst`` that keeps the header and the first ``rows`` data rows of
    each table: still valid Eurostat tables, imported in milliseconds instead of about half a second.
    For tests of the cache's commit and recovery, whose steps (parts, journal, renames, manifest) do
    not depend on how many rows a table has."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        with open(src / name, encoding="utf-8", newline="") as fh:
            head = [line for _, line in zip(range(rows + 1), fh)]
        assert len(head) == rows + 1, f"{src / name} has fewer than {rows} data rows"
        (dst / name).write_text("".join(head), encoding="utf-8", newline="")
    return dst


def make_variant(src: Path, dst: Path, bump: int) -> Path:
    """A copy of the snapshot ``src`` in ``dst`` whose tables each differ in one cell (first data row + ``bump``)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        rows = list(csv.reader(io.StringIO((src / name).read_text(encoding="utf-8"))))
        col = rows[0].index("OBS_VALUE")
        old = rows[1][col].strip()
        rows[1][col] = str((int(float(old)) if old not in ("", ":") else 0) + bump)
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        (dst / name).write_text(out.getvalue(), encoding="utf-8")
    return dst


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_state(cache: Path, snapshots: dict[str, Path]) -> str:
    """Which snapshot the cache holds, judged from the files alone.

    Returns a snapshot label when every table's file matches its manifest entry and all
    tables (files and entries) come from that one snapshot; ``"empty"`` for no tables
    at all; otherwise ``"inconsistent: <why>"``.
    """
    manifest_path = cache / "manifest.json"
    files = sorted(p.name for p in cache.glob("migr_*") if p.is_file())
    if not manifest_path.exists():
        return "empty" if not files else f"inconsistent: tables {files} without a manifest"
    try:
        tables = json.loads(manifest_path.read_text(encoding="utf-8"))["tables"]
    except (ValueError, KeyError) as exc:
        return f"inconsistent: unreadable manifest ({exc})"
    recorded = sorted(e["file"] for e in tables.values())
    if recorded != files:
        return f"inconsistent: files {files} but manifest lists {recorded}"
    labels = set()
    for code, e in tables.items():
        path = cache / e["file"]
        if _sha(path) != e["sha256"]:
            return f"inconsistent: {e['file']} changed after it was recorded"
        match = [k for k, d in snapshots.items() if (d / e["file"]).is_file() and _sha(d / e["file"]) == e["sha256"]]
        if len(match) != 1:
            return f"inconsistent: {e['file']} matches no single snapshot"
        labels.add(match[0])
    if len(labels) != 1:
        return f"inconsistent: a mix of snapshots {sorted(labels)}"
    if len(files) != len(TABLES):
        return f"inconsistent: {len(files)} of {len(TABLES)} tables"
    return labels.pop()


def leftover_temporaries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob(".*") if p.name.endswith(".part") or p.name.startswith(".commit"))


SLOW_DISK_CLI = """
import os, sys, time
real_fsync = os.fsync
delay = float(os.environ["SLOW_DISK_FSYNC_SECONDS"])
def slow_fsync(fd):  # a slow disk (e.g. a network filesystem): every flush to disk takes longer
    time.sleep(delay)
    real_fsync(fd)
os.fsync = slow_fsync
from returnstudy.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli(args: list[str], *, env: dict[str, str] | None = None, pythonpath: str | None = None,
        fsync_delay: float = 0.0) -> subprocess.Popen:
    """Start ``python -m returnstudy ARGS`` (quiet) in a subprocess; with ``fsync_delay`` (seconds) the
    same command (``returnstudy.cli.main``) on a slow disk: every ``os.fsync`` takes that much longer,
    which stretches a commit (three tables, the journal and the directory are flushed)."""
    full_env = dict(os.environ, **(env or {}))
    if pythonpath:
        full_env["PYTHONPATH"] = pythonpath
    if fsync_delay:
        full_env["SLOW_DISK_FSYNC_SECONDS"] = str(fsync_delay)
    command = ["-c", SLOW_DISK_CLI] if fsync_delay else ["-m", "returnstudy"]
    return subprocess.Popen(
        [sys.executable, *command, "-q", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
    )
