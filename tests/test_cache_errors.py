"""A cache that is damaged or misconfigured fails with one line naming the path and the remedy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from returnstudy.cli import main
from returnstudy.data.cache import CacheIntegrityError, ManifestCorruptError, cache_status, read_manifest
from returnstudy.data.fetch import import_snapshot
from returnstudy.data.tables import read_table

GARBAGE = b'{"format": 1, "tables": {"migr_eiord": {"file": "migr_eio'  # a manifest cut short


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "returnstudy", *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=300)


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def _main_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The command run in this process (``main`` returns, it does not raise): its one ``error:`` line."""
    code = main(args)
    return _one_line_error(subprocess.CompletedProcess(args, code, "", capsys.readouterr().err))


# ---------------------------------------------------------------- corrupt manifest


def test_corrupt_manifest_names_the_remedy_and_the_remedy_works(tmp_path: Path, eurostat_dir: Path, capsys) -> None:
    cache = tmp_path / "cache"
    import_snapshot(eurostat_dir, None, cache)
    (cache / "manifest.json").write_bytes(GARBAGE)
    with pytest.raises(ManifestCorruptError) as err:
        read_table("migr_eiord", cache)
    msg = str(err.value)
    assert str(cache / "manifest.json") in msg
    assert "fetch --from DIR" in msg and "manifest.json.corrupt-<time>" in msg
    assert main(["panel", "--data", str(cache), "--no-treatments"]) == 1
    assert "fetch --from DIR" in capsys.readouterr().err
    # the remedy: a new import of one table rebuilds the manifest, the unreadable file is kept aside
    assert main(["fetch", "--from", str(eurostat_dir), "--cache", str(cache), "--datasets", "migr_eiord"]) == 0
    aside = sorted(cache.glob("manifest.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == GARBAGE
    assert list(read_manifest(cache)) == ["migr_eiord"]
    assert read_table("migr_eiord", cache).vintage["rows"] == len((eurostat_dir / "migr_eiord.csv").read_text().splitlines()) - 1
    # the tables it did not re-import are reported, not read
    assert cache_status(cache).set_index("dataset").status.to_dict() == {
        "migr_eiord": "ok", "migr_eipre": "unrecorded", "migr_eirtn": "unrecorded"}
    with pytest.raises(CacheIntegrityError, match="not recorded"):
        read_table("migr_eirtn", cache)


# ---------------------------------------------------------------- fetch --list


def test_list_verifies_checksums_and_marks_each_table(tmp_path: Path, eurostat_dir: Path, capsys) -> None:
    cache = tmp_path / "cache"
    import_snapshot(eurostat_dir, ["migr_eiord", "migr_eirtn"], cache)
    assert main(["fetch", "--list", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert out.count("\nok ") + out.startswith("ok ") == 2
    raw = (cache / "migr_eiord.csv").read_bytes()
    (cache / "migr_eiord.csv").write_bytes(raw.replace(b",1465,", b",1470,", 1))  # one value edited by hand
    shutil.copy(eurostat_dir / "migr_eipre.csv", cache / "migr_eipre.csv")  # copied in, never imported
    status = cache_status(cache).set_index("dataset").status.to_dict()
    assert status == {"migr_eiord": "changed", "migr_eirtn": "ok", "migr_eipre": "unrecorded"}
    assert main(["fetch", "--list", "--cache", str(cache)]) == 1
    captured = capsys.readouterr()
    marks = {line.split()[1]: line.split()[0] for line in captured.out.splitlines() if line.split()[:1] != ["cache:"] and line[:1] != " "}
    assert marks == {"migr_eiord": "changed", "migr_eirtn": "ok", "migr_eipre": "unrecorded"}
    assert "migr_eiord changed" in captured.err and "fetch --from DIR" in captured.err


def test_list_refuses_a_cache_without_manifest(tmp_path: Path, eurostat_dir: Path, capsys, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    assert main(["fetch", "--list", "--cache", str(cache)]) == 3  # empty: no data, how to get it
    assert "fetch --from DIR" in capsys.readouterr().err
    shutil.copy(eurostat_dir / "migr_eiord.csv", cache / "migr_eiord.csv")
    assert main(["fetch", "--list", "--cache", str(cache)]) == 1
    err = capsys.readouterr().err
    assert "no manifest.json" in err and "migr_eiord.csv" in err and "fetch --from DIR" in err
    # nor is such a table read silently as the default cache
    monkeypatch.setenv("RETURNSTUDY_DATA_DIR", str(cache))
    with pytest.raises(CacheIntegrityError, match="not recorded"):
        read_table("migr_eiord")


# ---------------------------------------------------------------- paths


def test_data_dir_pointing_at_a_file(tmp_path: Path, eurostat_dir: Path, capsys, monkeypatch) -> None:
    afile = tmp_path / "notadir"
    afile.write_text("x")
    monkeypatch.setenv("RETURNSTUDY_DATA_DIR", str(afile))
    line = _one_line_error(_run(["fetch", "--list"]))  # the installed entry point, in a fresh process
    assert f"{afile}: the cache path is a file, not a directory" in line, line
    for args in (["fetch", "--from", str(eurostat_dir)], ["fetch", "--list"], ["panel", "--no-treatments"]):
        line = _main_error(args, capsys)
        assert f"{afile}: the cache path is a file, not a directory" in line, (args, line)
    assert afile.read_text() == "x"


def _read_only(cache: Path) -> list[str]:
    """A command prefix that runs with ``cache`` read-only (chmod for users, a read-only bind mount for root)."""
    if os.geteuid() != 0:
        cache.chmod(0o555)
        return []
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {cache} {cache} && mount -o remount,ro,bind {cache} {cache}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root without mount namespaces: cannot make a read-only directory")
    return ["unshare", "-m", "sh", "-c", f'mount --bind {cache} {cache} && mount -o remount,ro,bind {cache} {cache} && exec "$@"', "sh"]


def test_read_only_cache(tmp_path: Path, eurostat_dir: Path) -> None:
    cache = tmp_path / "cache"
    import_snapshot(eurostat_dir, ["migr_eiord", "migr_eirtn"], cache)
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    prefix = _read_only(cache)
    try:
        def run(args: list[str]) -> subprocess.CompletedProcess:
            return subprocess.run([*prefix, sys.executable, "-m", "returnstudy", *args], capture_output=True, text=True, timeout=300)

        line = _one_line_error(run(["fetch", "--from", str(eurostat_dir), "--cache", str(cache)]))
        assert f"{cache}: the cache directory is read-only" in line
        # reading a read-only cache works, with checksums verified
        listed = run(["fetch", "--list", "--cache", str(cache)])
        assert listed.returncode == 0, listed.stderr
        assert [ln.split()[:2] for ln in listed.stdout.splitlines() if ln.startswith("ok")] == [["ok", "migr_eiord"], ["ok", "migr_eirtn"]]
    finally:
        cache.chmod(0o755)
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before


def test_out_naming_an_existing_file(tmp_path: Path, eurostat_dir: Path, capsys) -> None:
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    for cmd in ("estimate", "quality"):
        line = _main_error([cmd, "--data", str(eurostat_dir), "--out", str(existing)], capsys)
        assert line == f"error: --out {existing}: is an existing file; {cmd} writes a directory there"
    assert existing.read_text() == "keep me"
    line = _main_error(["panel", "--data", str(eurostat_dir), "--no-treatments", "--out", str(existing / "panel.csv")], capsys)
    assert line.startswith(f"error: {existing}: is a file where a directory is needed")


def test_parse_error_during_import_names_the_source_file_and_line(tmp_path: Path, eurostat_dir: Path, capsys) -> None:
    src, cache = tmp_path / "snap", tmp_path / "cache"
    src.mkdir()
    lines = (eurostat_dir / "migr_eiord.csv").read_text().splitlines(keepends=True)
    lines[1000] = lines[1000].replace(",", ";", 3)  # line 1001 of the file loses three fields
    (src / "migr_eiord.csv").write_text("".join(lines))
    assert main(["fetch", "--from", str(src), "--cache", str(cache)]) == 1
    err = capsys.readouterr().err
    assert f"{src / 'migr_eiord.csv'}, line 1001:" in err
    assert ".part" not in err
    assert not cache.exists() or not any(cache.iterdir()) or list(cache.iterdir()) == [cache / ".returnstudy.lock"]
