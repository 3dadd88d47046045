"""Locate and read Eurostat tables with their vintage, from a cache or a snapshot directory."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from returnstudy.data.cache import (
    check_cache_path,
    default_cache_dir,
    is_cache_dir,
    read_cached_table,
    read_manifest,
    sha256_bytes,
)
from returnstudy.data.eurostat import dataset_info, observed_last_updates, parse_eurostat_bytes
from returnstudy.data.fetch import find_snapshot_file
from returnstudy.reuse import reused

log = logging.getLogger(__name__)


class DataNotAvailableError(FileNotFoundError):
    """The tables a command needs are neither cached nor in the given directory."""


HOW_TO_GET_DATA = (
    "Get the data first: 'python -m returnstudy fetch' (downloads from Eurostat, needs a network), "
    "or 'python -m returnstudy fetch --from DIR' to import an offline snapshot such as ../shared/data/eurostat, "
    "or pass '--data DIR' (library: data_dir=DIR) to read a snapshot directory directly."
)


@dataclass
class Table:
    """A parsed Eurostat table and the vintage it came from."""

    code: str
    data: pd.DataFrame
    vintage: dict[str, Any] = field(default_factory=dict)


def _vintage_from_file(code: str, path: Path, data: pd.DataFrame, sha256: str) -> dict[str, Any]:
    return {
        "dataset": code,
        "source": str(path.resolve()),
        "source_kind": "directory",
        "last_update": observed_last_updates(data),
        "sha256": sha256,
        "rows": int(len(data)),
        "years": [int(data["year"].min()), int(data["year"].max())] if len(data) else None,
    }


def read_table(code: str, data_dir: str | Path | None = None) -> Table:
    """Read one table from ``data_dir`` (a cache with manifest, or a snapshot directory).

    With ``data_dir=None`` the default cache is used. A directory written by the cache
    code (it has a manifest, a lock file or a set-aside manifest) is read as a cache:
    only tables recorded in its manifest, with matching sha256, are read. Raises
    :class:`DataNotAvailableError` with instructions when the table is absent and
    :class:`~returnstudy.data.cache.CacheIntegrityError` when a cached file changed,
    is not recorded, or the manifest is unreadable (each message names the remedy).
    Inside a :func:`~returnstudy.reuse.reuse_prepared` block, bytes already parsed (same table,
    same sha256) are not parsed again; each caller gets its own copy.
    """
    dataset_info(code)
    directory = Path(data_dir) if data_dir is not None else default_cache_dir()
    check_cache_path(directory)
    if data_dir is None or is_cache_dir(directory):
        cached = read_cached_table(directory, code)
        if cached is not None:
            raw, entry = cached
            source = directory / entry["file"]

            def parse_cached() -> Table:
                vintage = {k: entry[k] for k in ("dataset", "source", "source_kind", "retrieved_at", "last_update",
                                                 "sha256", "rows", "years") if k in entry}
                return Table(code, parse_eurostat_bytes(raw, source, dataset=code), vintage)

            return reused("eurostat table", (code, str(source), sha256_bytes(raw)), parse_cached, copy=_copy_table)
        path = None
    else:
        path = find_snapshot_file(directory, code) if directory.is_dir() else None
    if path is None:
        where = "the cache" if data_dir is None else "the data directory"
        raise DataNotAvailableError(f"table {code} not found in {where} {directory}. {HOW_TO_GET_DATA}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    sha = sha256_bytes(raw)

    def parse_file() -> Table:
        data = parse_eurostat_bytes(raw, path, dataset=code)
        return Table(code, data, _vintage_from_file(code, path, data, sha))

    return reused("eurostat table", (code, str(path.resolve()), sha), parse_file, copy=_copy_table)


def _copy_table(table: Table) -> Table:
    return Table(table.code, table.data.copy(), copy.deepcopy(table.vintage))


def has_table(code: str, data_dir: str | Path | None = None) -> bool:
    """True if ``code`` can be read from ``data_dir``: recorded in a cache's manifest, or a file in a snapshot directory."""
    directory = Path(data_dir) if data_dir is not None else default_cache_dir()
    check_cache_path(directory)
    if not directory.is_dir():
        return False
    if data_dir is None or is_cache_dir(directory):
        # a table file present but not recorded counts as present, so that reading it fails loudly
        return code in read_manifest(directory) or find_snapshot_file(directory, code) is not None
    return find_snapshot_file(directory, code) is not None
