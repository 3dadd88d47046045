"""Cache, manifest, snapshot import and downloads against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from returnstudy.data.cache import CacheIntegrityError, read_manifest
from returnstudy.data.fetch import FetchError, dataset_url, fetch, import_snapshot
from returnstudy.data.tables import DataNotAvailableError, read_table

FIX = Path(__file__).parent / "fixtures" / "eurostat"
GOOD = (FIX / "migr_eiord.csv").read_bytes()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_import_snapshot_records_vintage(tmp_path: Path, eurostat_dir: Path) -> None:
    cache = tmp_path / "cache"
    entries = import_snapshot(eurostat_dir, ["migr_eirtn"], cache)
    raw = (eurostat_dir / "migr_eirtn.csv").read_bytes()
    e = entries["migr_eirtn"]
    assert e["sha256"] == _sha(raw)
    assert e["rows"] == raw.count(b"\n") - 1
    assert e["last_update"] == {"": 25719, "20/09/24 23:00:00": 12672}
    assert e["years"] == [2012, 2023]
    assert (cache / "migr_eirtn.csv").read_bytes() == raw
    assert read_manifest(cache)["migr_eirtn"]["sha256"] == _sha(raw)
    assert not list(cache.glob("*.part"))


def test_import_all_tables_present(tmp_path: Path, eurostat_dir: Path) -> None:
    entries = import_snapshot(eurostat_dir, None, tmp_path)
    assert sorted(entries) == ["migr_eiord", "migr_eipre", "migr_eirtn"]


def test_from_dir_lacking_a_table(tmp_path: Path) -> None:
    src = tmp_path / "snap"
    src.mkdir()
    (src / "migr_eiord.csv").write_bytes(GOOD)
    with pytest.raises(FetchError, match=r"table\(s\) \['migr_eirtn'\] not found"):
        import_snapshot(src, ["migr_eiord", "migr_eirtn"], tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FetchError, match="no Eurostat table found"):
        import_snapshot(empty, None, tmp_path / "cache")


def test_unknown_dataset_is_rejected_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown Eurostat dataset 'migr_xyz'"):
        fetch(["migr_eiord", "migr_xyz"], tmp_path)


def test_corrupt_import_keeps_previous_cached_copy(tmp_path: Path) -> None:
    src, cache = tmp_path / "snap", tmp_path / "cache"
    src.mkdir()
    (src / "migr_eiord.csv").write_bytes(GOOD)
    import_snapshot(src, ["migr_eiord"], cache)
    before = read_manifest(cache)
    (src / "migr_eiord.csv").write_bytes(GOOD[:-40])  # truncated mid-line
    with pytest.raises(ValueError, match="fields where the header has"):
        import_snapshot(src, ["migr_eiord"], cache)
    assert (cache / "migr_eiord.csv").read_bytes() == GOOD
    assert read_manifest(cache) == before
    assert not list(cache.glob(".*part"))


def test_changed_cache_file_is_detected(tmp_path: Path) -> None:
    src, cache = tmp_path / "snap", tmp_path / "cache"
    src.mkdir()
    (src / "migr_eiord.csv").write_bytes(GOOD)
    import_snapshot(src, ["migr_eiord"], cache)
    assert read_table("migr_eiord", cache).vintage["sha256"] == _sha(GOOD)
    (cache / "migr_eiord.csv").write_bytes(GOOD.replace(b"1230", b"1235"))
    with pytest.raises(CacheIntegrityError, match="does not match the manifest"):
        read_table("migr_eiord", cache)


def test_corrupt_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheIntegrityError, match="manifest is not valid JSON"):
        read_manifest(tmp_path)


def test_missing_data_says_how_to_get_it(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(DataNotAvailableError, match=r"fetch --from DIR"):
        read_table("migr_eiord", tmp_path / "nothing-here")
    assert time.monotonic() - t0 < 5


# ---------------------------------------------------------------- local HTTP server


class _Handler(http.server.BaseHTTPRequestHandler):
    script: list[str] = []  # one behaviour per request, last one repeats
    hits = 0

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        cls = type(self)
        behaviour = cls.script[min(cls.hits, len(cls.script) - 1)]
        cls.hits += 1
        if behaviour == "ok":
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            self.wfile.write(GOOD)
        elif behaviour == "500":
            self.send_error(500, "server error")
        elif behaviour == "404":
            self.send_error(404, "no such dataflow")
        elif behaviour == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            self.wfile.write(GOOD[: len(GOOD) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif behaviour == "slow":
            time.sleep(1.5)
            try:
                self.send_response(200)
                self.send_header("Content-Length", str(len(GOOD)))
                self.end_headers()
                self.wfile.write(GOOD)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif behaviour == "garbage":
            body = b"<html>maintenance</html>\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"script": ["ok"], "hits": 0})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _fetch(api: str, cache: Path, **kw: object) -> dict:
    opts = {"timeout": 0.5, "retries": 2, "backoff": 0.01, "progress": False}
    opts.update(kw)
    return fetch(["migr_eiord"], cache, api=api, **opts)  # type: ignore[arg-type]


def test_download_writes_table_and_manifest(server, tmp_path: Path) -> None:
    api, handler = server
    entries = _fetch(api, tmp_path)
    assert (tmp_path / "migr_eiord.csv").read_bytes() == GOOD
    e = entries["migr_eiord"]
    assert e["source"] == dataset_url("migr_eiord", api)
    assert "format=csvdata" in e["source"] and "/MIGR_EIORD/" in e["source"]
    assert e["source_kind"] == "api" and e["rows"] == 8 and e["sha256"] == _sha(GOOD)
    assert e["last_update"] == {"15/03/24 23:00:00": 8}
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["tables"]["migr_eiord"]["sha256"] == _sha(GOOD)


def test_server_errors_are_retried(server, tmp_path: Path) -> None:
    api, handler = server
    handler.script = ["500", "500", "ok"]
    _fetch(api, tmp_path)
    assert handler.hits == 3
    assert (tmp_path / "migr_eiord.csv").read_bytes() == GOOD


@pytest.mark.parametrize("behaviour", ["500", "truncated", "slow", "garbage"])
def test_failed_download_keeps_previous_copy(server, tmp_path: Path, behaviour: str) -> None:
    api, handler = server
    _fetch(api, tmp_path)
    before = read_manifest(tmp_path)
    handler.script = [behaviour]
    handler.hits = 0
    with pytest.raises(FetchError):
        _fetch(api, tmp_path)
    assert (tmp_path / "migr_eiord.csv").read_bytes() == GOOD
    assert read_manifest(tmp_path) == before
    assert not list(tmp_path.glob(".*part"))
    if behaviour != "garbage":
        assert handler.hits == 3  # retried twice


def test_client_errors_are_not_retried(server, tmp_path: Path) -> None:
    api, handler = server
    handler.script = ["404"]
    with pytest.raises(FetchError, match="HTTP 404"):
        _fetch(api, tmp_path)
    assert handler.hits == 1
    assert not (tmp_path / "migr_eiord.csv").exists()


def test_download_into_a_cache_with_a_corrupt_manifest_rebuilds_it(server, tmp_path: Path) -> None:
    api, _ = server
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheIntegrityError, match=r"fetch --from DIR.*manifest\.json\.corrupt-<time>"):
        read_table("migr_eiord", tmp_path)
    _fetch(api, tmp_path)
    assert read_manifest(tmp_path)["migr_eiord"]["sha256"] == _sha(GOOD)
    aside = list(tmp_path.glob("manifest.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    assert read_table("migr_eiord", tmp_path).vintage["rows"] == 8


def test_invalid_snapshot_file_is_named_not_its_temporary_copy(tmp_path: Path) -> None:
    src, cache = tmp_path / "snap", tmp_path / "cache"
    src.mkdir()
    (src / "migr_eiord.csv").write_bytes(GOOD.replace(b",1230,", b",12x0,"))
    with pytest.raises(ValueError) as err:
        import_snapshot(src, ["migr_eiord"], cache)
    assert str(err.value).startswith(f"{src / 'migr_eiord.csv'}, line ")
    assert "OBS_VALUE '12x0' is not a number" in str(err.value) and ".part" not in str(err.value)
