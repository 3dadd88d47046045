"""Bring Eurostat tables into the local cache: download from the API or import a snapshot.

Downloads use Eurostat's dissemination API (SDMX 3.0, ``format=csvdata``, the
SDMX-CSV layout with a LAST UPDATE column). Every table is parsed and validated
before it replaces the cached copy; the manifest records its vintage.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from returnstudy.data.cache import (
    TABLE_SUFFIXES,
    StagedTable,
    check_cache_path,
    commit_tables,
    default_cache_dir,
    ensure_writable_cache,
    part_path,
    sha256_bytes,
)
from returnstudy.data.eurostat import DATASETS, dataset_info, observed_last_updates, parse_eurostat_bytes

log = logging.getLogger(__name__)

ENV_API = "RETURNSTUDY_EUROSTAT_API"
DEFAULT_API = "https://ec.europa.eu/eurostat/api/dissemination/sdmx/3.0/data/dataflow/ESTAT"
SNAPSHOT_SUFFIXES = TABLE_SUFFIXES


class FetchError(RuntimeError):
    """A table could not be downloaded or imported; the cache is unchanged."""


def dataset_url(code: str, api: str | None = None) -> str:
    """URL of the full table ``code`` in SDMX-CSV (``csvdata``) layout."""
    base = (api or os.environ.get(ENV_API) or DEFAULT_API).rstrip("/")
    return f"{base}/{code.upper()}/1.0?compress=false&format=csvdata&formatVersion=1.0"


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _entry(code: str, raw: bytes, source: str, kind: str, label: str | Path) -> dict[str, Any]:
    """Parse and validate ``raw`` (errors name ``label``, the file or URL the user gave) and describe its vintage."""
    table = parse_eurostat_bytes(raw, label, dataset=code)
    return {
        "dataset": code,
        "title": dataset_info(code).title,
        "source": source,
        "source_kind": kind,
        "retrieved_at": _now(),
        "last_update": observed_last_updates(table),
        "sha256": sha256_bytes(raw),
        "bytes": len(raw),
        "rows": int(len(table)),
        "years": [int(table["year"].min()), int(table["year"].max())],
    }


def _validate_codes(codes: Iterable[str]) -> list[str]:
    codes = list(codes)
    for code in codes:
        dataset_info(code)  # KeyError naming the valid codes
    return codes


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
    check_cache_path(cache)
    staged = []
    for code in codes:  # validate everything before touching the cache
        source = find_snapshot_file(src, code)
        assert source is not None
        raw = source.read_bytes()
        entry = _entry(code, raw, str(source.resolve()), "snapshot", source)
        staged.append(StagedTable(code, f"{code}{''.join(source.suffixes)}", entry, data=raw))
    aside = commit_tables(cache, staged)
    if aside is not None:
        log.warning("the unreadable manifest was kept as %s; the new manifest lists the tables just imported", aside)
    entries = {}
    for s in staged:
        entries[s.code] = {**s.entry, "file": s.dest_name}
        log.info("imported %s from %s (%d rows)", s.code, s.entry["source"], s.entry["rows"])
    return entries


def _download(url: str, dest: Path, *, desc: str, timeout: float, retries: int, backoff: float, progress: bool) -> None:
    """Stream ``url`` into ``dest`` (a temporary path), retrying transient failures."""
    from returnstudy._progress import bar_class

    tqdm = bar_class()
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
                out.flush()
                os.fsync(out.fileno())
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
    ensure_writable_cache(cache)
    entries = {}
    for code in codes:  # each table is committed as soon as it is downloaded and validated
        url = dataset_url(code, api)
        tmp_path = part_path(cache, f"{code}.csv")
        try:
            _download(url, tmp_path, desc=code, timeout=timeout, retries=retries, backoff=backoff, progress=progress)
            try:
                entry = _entry(code, tmp_path.read_bytes(), url, "api", url)
            except ValueError as exc:
                raise FetchError(f"{code}: downloaded file is not a valid Eurostat table: {exc}") from exc
            commit_tables(cache, [StagedTable(code, f"{code}.csv", entry, part=tmp_path)])
        finally:
            tmp_path.unlink(missing_ok=True)
        entries[code] = entry = {**entry, "file": f"{code}.csv"}
        log.info("fetched %s (%d rows, last update %s)", code, entry["rows"], entry["last_update"])
    return entries
