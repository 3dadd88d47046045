"""Bring Eurostat tables into the local cache: download from the API or import a snapshot.

Downloads use Eurostat's dissemination API (SDMX 3.0, ``format=csvdata``, the
SDMX-CSV layout with a LAST UPDATE column). Every table is parsed and validated
before it replaces the cached copy; the manifest records its vintage.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from returnstudy.data.cache import atomic_move, default_cache_dir, record_table, sha256_file
from returnstudy.data.eurostat import DATASETS, dataset_info, observed_last_updates, read_eurostat_table

log = logging.getLogger(__name__)

ENV_API = "RETURNSTUDY_EUROSTAT_API"
DEFAULT_API = "https://ec.europa.eu/eurostat/api/dissemination/sdmx/3.0/data/dataflow/ESTAT"
SNAPSHOT_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")


class FetchError(RuntimeError):
    """A table could not be downloaded or imported; the cache is unchanged."""


def dataset_url(code: str, api: str | None = None) -> str:
    """URL of the full table ``code`` in SDMX-CSV (``csvdata``) layout."""
    base = (api or os.environ.get(ENV_API) or DEFAULT_API).rstrip("/")
    return f"{base}/{code.upper()}/1.0?compress=false&format=csvdata&formatVersion=1.0"


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _entry(code: str, path: Path, source: str, kind: str) -> dict[str, Any]:
    table = read_eurostat_table(path, dataset=code)
    return {
        "dataset": code,
        "title": dataset_info(code).title,
        "file": path.name,
        "source": source,
        "source_kind": kind,
        "retrieved_at": _now(),
        "last_update": observed_last_updates(table),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "rows": int(len(table)),
        "years": [int(table["year"].min()), int(table["year"].max())] if len(table) else None,
    }


def _validate_codes(codes: Iterable[str]) -> list[str]:
    codes = list(codes)
    for code in codes:
        dataset_info(code)  # KeyError naming the valid codes
    return codes


def _commit(code: str, tmp_path: Path, dest: Path, source: str, kind: str) -> dict[str, Any]:
    """Validate the finished temporary file, move it into place and record it in the manifest.

    If validation fails the temporary file is removed and the cache is left as it was.
    """
    try:
        try:
            entry = _entry(code, tmp_path, source, kind)
        except ValueError as exc:
            if kind == "api":
                raise FetchError(f"{code}: downloaded file is not a valid Eurostat table: {exc}") from exc
            raise
        atomic_move(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)
    entry["file"] = dest.name
    record_table(dest.parent, code, entry)
    return entry


def find_snapshot_file(src_dir: Path, code: str) -> Path | None:
    for suffix in SNAPSHOT_SUFFIXES:
        candidate = src_dir / f"{code}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def import_snapshot(
    src_dir: str | Path, datasets: Sequence[str] | None = None, cache_dir: str | Path | None = None
) -> dict[str, dict[str, Any]]:
    """Copy tables from an offline snapshot directory into the cache.

    ``datasets=None`` imports every supported table present in ``src_dir``; an
    explicitly requested table that is absent is an error. Each file is parsed and
    validated first; only then is it moved into the cache (atomically).
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise FetchError(f"--from {src}: not a directory")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if datasets is None:
        codes = [c for c in DATASETS if find_snapshot_file(src, c) is not None]
        if not codes:
            raise FetchError(f"--from {src}: no Eurostat table found (looked for {', '.join(sorted(DATASETS))} as .csv/.tsv[.gz])")
    else:
        codes = _validate_codes(datasets)
        absent = [c for c in codes if find_snapshot_file(src, c) is None]
        if absent:
            raise FetchError(f"--from {src}: table(s) {absent} not found (looked for <code>.csv, .csv.gz, .tsv, .tsv.gz)")
    entries = {}
    for code in codes:
        source = find_snapshot_file(src, code)
        assert source is not None
        dest = cache / f"{code}{''.join(source.suffixes)}"
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=cache)
        tmp_path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as inp:
                while chunk := inp.read(1 << 20):
                    out.write(chunk)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        entries[code] = entry = _commit(code, tmp_path, dest, str(source.resolve()), "snapshot")
        log.info("imported %s from %s (%d rows)", code, source, entry["rows"])
    return entries


def _download(url: str, dest: Path, *, desc: str, timeout: float, retries: int, backoff: float, progress: bool) -> None:
    """Stream ``url`` into ``dest`` (a temporary path), retrying transient failures."""
    from tqdm.auto import tqdm

    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            log.warning("retrying %s in %.1f s (attempt %d of %d): %s", url, wait, attempt + 1, retries + 1, last)
            time.sleep(wait)
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "returnstudy", "Accept-Encoding": "identity"})
            with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
                total = resp.headers.get("Content-Length")
                expected = int(total) if total and total.isdigit() else None
                received = 0
                with tqdm(total=expected, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
                    while chunk := resp.read(1 << 16):
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                if expected is not None and received != expected:
                    raise FetchError(f"{url}: truncated body ({received} of {expected} bytes)")
            return
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason} (not retried)") from exc
            last = exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, socket.gaierror):
                raise FetchError(f"{url}: cannot resolve host ({exc.reason}); no network?") from exc
            last = exc
        except (TimeoutError, socket.timeout, ConnectionError, FetchError, OSError) as exc:
            last = exc
    raise FetchError(f"{url}: failed after {retries + 1} attempts: {last}")


def fetch(
    datasets: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    *,
    from_dir: str | Path | None = None,
    api: str | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 2.0,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Download (or, with ``from_dir``, import) Eurostat tables into the cache.

    Returns the manifest entries written. A failed table leaves its previous
    cached copy and manifest entry untouched; the error names the table and why.
    """
    if from_dir is not None:
        return import_snapshot(from_dir, datasets, cache_dir)
    codes = _validate_codes(datasets if datasets is not None else list(DATASETS))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    entries = {}
    for code in codes:
        url = dataset_url(code, api)
        dest = cache / f"{code}.csv"
        fd, tmp = tempfile.mkstemp(prefix=f".{code}.", suffix=".part", dir=cache)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            _download(url, tmp_path, desc=code, timeout=timeout, retries=retries, backoff=backoff, progress=progress)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        entries[code] = entry = _commit(code, tmp_path, dest, url, "api")
        log.info("fetched %s (%d rows, last update %s)", code, entry["rows"], entry["last_update"])
    return entries
