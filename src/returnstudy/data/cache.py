"""The local cache of Eurostat tables and its manifest of vintages.

Layout of a cache directory::

    <cache>/migr_eiord.csv       # the table exactly as received (SDMX-CSV or SDMX-TSV)
    <cache>/manifest.json        # one entry per table: source, vintage, sha256, rows

Every write goes to a temporary file in the same directory and is moved into place
with :func:`os.replace`, so an interrupted download or import never leaves a
half-written table or manifest: the previous copy stays intact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV_CACHE = "RETURNSTUDY_DATA_DIR"
MANIFEST = "manifest.json"


class CacheIntegrityError(RuntimeError):
    """A cached table no longer matches the checksum recorded in the manifest."""


def default_cache_dir() -> Path:
    """``$RETURNSTUDY_DATA_DIR`` if set, else the per-user cache directory."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("returnstudy")) / "eurostat"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_move(src: Path, dest: Path) -> None:
    """Move a finished temporary file into place (same filesystem, atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)


def read_manifest(cache_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Manifest entries keyed by dataset code (empty if the cache has none)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / MANIFEST
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CacheIntegrityError(f"{path}: manifest is not valid JSON ({exc}); re-run 'returnstudy fetch'") from exc
    tables = doc.get("tables")
    if not isinstance(tables, dict):
        raise CacheIntegrityError(f"{path}: manifest has no 'tables' object; re-run 'returnstudy fetch'")
    return tables


def record_table(cache_dir: Path, code: str, entry: dict[str, Any]) -> None:
    """Add or replace one table's manifest entry (atomic rewrite of the manifest)."""
    tables = read_manifest(cache_dir)
    tables[code] = entry
    doc = {"format": 1, "tables": dict(sorted(tables.items()))}
    atomic_write_bytes(cache_dir / MANIFEST, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def verified_path(cache_dir: Path, code: str, entry: dict[str, Any]) -> Path:
    """Path of a cached table after checking its sha256 against the manifest."""
    path = cache_dir / entry["file"]
    if not path.is_file():
        raise CacheIntegrityError(f"{path}: listed in {cache_dir / MANIFEST} but missing; re-run 'returnstudy fetch'")
    digest = sha256_file(path)
    if digest != entry.get("sha256"):
        raise CacheIntegrityError(
            f"{path}: sha256 {digest[:12]}... does not match the manifest ({str(entry.get('sha256'))[:12]}...); "
            f"the file changed after it was cached. Re-run 'returnstudy fetch' (or 'fetch --from DIR') for {code}."
        )
    return path
