"""The local cache of Eurostat tables and its manifest of vintages.

Layout of a cache directory::

    <cache>/migr_eiord.csv            # the table exactly as received (SDMX-CSV or SDMX-TSV)
    <cache>/manifest.json             # one entry per table: source, vintage, sha256, rows
    <cache>/.returnstudy.lock         # cross-process lock taken by every write (and by readers)
    <cache>/.commit-pending.json      # only while a write is being committed (see below)

Consistency rules, which hold across processes and across a crash (even SIGKILL):

* Every write — table files and the manifest's read-modify-write — happens while
  holding an exclusive file lock (:mod:`filelock`), so two concurrent imports never
  interleave: the last writer wins whole tables, never a mix of files and entries.
* New files are first written in full to temporary ``.<name>.<pid>.<random>.part``
  files. Then a journal listing the moves and the new manifest is written atomically;
  only then are the tables moved into place and the manifest replaced. A process
  killed before the journal exists leaves the old state (plus stale ``.part`` files,
  removed by the next process that takes the lock); one killed after it leaves a
  journal that the next process rolls forward to the new state.
* A table file present without a manifest entry is *not recorded*: it is never
  read (its vintage is unknown) and the error names the remedy.
* An unreadable manifest stops every reader with the remedy; an import (``fetch
  --from`` or ``fetch``) keeps it aside as ``manifest.json.corrupt-<time>`` and
  writes a new manifest for the tables it imports.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

ENV_CACHE = "RETURNSTUDY_DATA_DIR"
MANIFEST = "manifest.json"
LOCK = ".returnstudy.lock"
JOURNAL = ".commit-pending.json"
CORRUPT_SUFFIX = ".corrupt-"
TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
STALE_AFTER_SECONDS = 24 * 3600.0
"""Where process ids cannot be probed (Windows), a temporary file older than this is stale."""
LOCK_TIMEOUT = 600.0
"""Seconds a process waits for another one's write to the cache before giving up."""

REMEDY_IMPORT = "'python -m returnstudy fetch --from DIR' (an offline snapshot such as ../shared/data/eurostat) or 'python -m returnstudy fetch'"
_PART_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.part$")


class CacheError(RuntimeError):
    """The cache cannot be used as it is; the message names the path and the remedy."""


class CacheIntegrityError(CacheError):
    """A cached table does not match (or is missing from) the manifest, or the manifest is unreadable."""


class ManifestCorruptError(CacheIntegrityError):
    """``manifest.json`` is not a valid manifest."""


class CacheAccessError(CacheError):
    """The cache path is not a usable directory (a file, read-only, locked too long)."""


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


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def part_path(directory: Path, name: str) -> Path:
    """A new, empty temporary file for ``name`` in ``directory``, tagged with this process id."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}.", suffix=".part", dir=directory)
    os.close(fd)
    return Path(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(path.parent, path.name)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- paths and locking


def check_cache_path(cache: Path) -> None:
    """Fail with a one-line message if ``cache`` (or one of its parents) exists as a non-directory."""
    for p in (cache, *cache.parents):
        if p.exists():
            if not p.is_dir():
                what = "the cache path" if p == cache else f"a parent of the cache path {cache}"
                raise CacheAccessError(
                    f"{p}: {what} is a file, not a directory; point ${ENV_CACHE} or --cache at a directory"
                )
            return


def ensure_writable_cache(cache: Path) -> None:
    """Create ``cache`` if needed and check that this process can write in it."""
    check_cache_path(cache)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheAccessError(f"{cache}: cannot create the cache directory ({exc.strerror}); "
                               f"choose a writable one with --cache DIR or ${ENV_CACHE}") from exc
    if not os.access(cache, os.W_OK | os.X_OK):
        raise CacheAccessError(_read_only_message(cache))


def _read_only_message(cache: Path) -> str:
    return f"{cache}: the cache directory is read-only; choose a writable one with --cache DIR or ${ENV_CACHE}"


def _raise_access(cache: Path, exc: OSError) -> None:
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        raise CacheAccessError(_read_only_message(cache)) from exc
    raise CacheAccessError(f"{cache}: cannot write to the cache ({exc.strerror or exc})") from exc


def _acquire(cache: Path, timeout: float) -> FileLock:
    lock = FileLock(str(cache / LOCK), timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise CacheAccessError(
            f"{cache / LOCK}: another returnstudy process has been writing to the cache for more than {timeout:.0f} s; "
            "wait for it to finish and try again"
        ) from exc
    except OSError as exc:
        _raise_access(cache, exc)
    return lock


@contextmanager
def cache_lock(cache: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the cache's exclusive cross-process lock (released even if the holder is killed)."""
    lock = _acquire(cache, timeout)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _reading(cache: Path) -> Iterator[None]:
    """Readers take the lock too (so they never see a commit half-done) and finish an interrupted one.

    A cache this process cannot write to is read without the lock.
    """
    lock = _acquire(cache, LOCK_TIMEOUT) if os.access(cache, os.W_OK | os.X_OK) else None
    try:
        if lock is not None:
            recover(cache)
        elif (cache / JOURNAL).exists():
            raise CacheIntegrityError(
                f"{cache / JOURNAL}: an import into this cache was interrupted and the cache is read-only, "
                f"so it cannot be completed; run the import again where the cache is writable: {REMEDY_IMPORT}"
            )
        yield
    finally:
        if lock is not None:
            lock.release()


def is_cache_dir(directory: Path) -> bool:
    """True if ``directory`` was written by the cache code (not a plain snapshot directory)."""
    if not directory.is_dir():
        return False
    if (directory / MANIFEST).exists() or (directory / LOCK).exists() or (directory / JOURNAL).exists():
        return True
    return any(directory.glob(f"{MANIFEST}{CORRUPT_SUFFIX}*"))


def _table_code(name: str) -> str | None:
    for suffix in sorted(TABLE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and not name.startswith("."):
            return name[: -len(suffix)]
    return None


# ---------------------------------------------------------------- manifest


def _load_manifest(cache: Path) -> dict[str, dict[str, Any]]:
    path = cache / MANIFEST
    if not path.is_file():
        return {}
    remedy = (
        f"Rebuild it by importing the tables again: {REMEDY_IMPORT}; "
        f"the unreadable file is then kept aside as {MANIFEST}{CORRUPT_SUFFIX}<time>."
    )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestCorruptError(f"{path}: manifest is not valid JSON ({exc}). {remedy}") from exc
    tables = doc.get("tables") if isinstance(doc, dict) else None
    if not isinstance(tables, dict) or not all(isinstance(e, dict) and "file" in e and "sha256" in e for e in tables.values()):
        raise ManifestCorruptError(f"{path}: manifest has no valid 'tables' object. {remedy}")
    return tables


def read_manifest(cache_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Manifest entries keyed by dataset code (empty if the cache has none).

    Raises :class:`ManifestCorruptError` naming the remedy if the manifest is unreadable.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    check_cache_path(cache)
    if not cache.is_dir():
        return {}
    with _reading(cache):
        return _load_manifest(cache)


def _manifest_bytes(tables: dict[str, dict[str, Any]]) -> bytes:
    doc = {"format": 1, "tables": dict(sorted(tables.items()))}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _set_aside_corrupt_manifest(cache: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = cache / f"{MANIFEST}{CORRUPT_SUFFIX}{stamp}"
    os.replace(cache / MANIFEST, aside)
    return aside


# ---------------------------------------------------------------- committing writes


@dataclass
class StagedTable:
    """A validated table ready to enter the cache: its bytes (or a finished ``.part`` file) and manifest entry."""

    code: str
    dest_name: str
    entry: dict[str, Any]
    data: bytes | None = None
    part: Path | None = None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_parts(cache: Path) -> list[Path]:
    """Remove temporary ``.part`` files left by processes that no longer run (call under the lock)."""
    removed = []
    for p in cache.glob(".*.part"):
        m = _PART_RE.match(p.name)
        if os.name == "nt":  # no safe liveness probe there (os.kill terminates): go by age
            if m and time.time() - p.stat().st_mtime < STALE_AFTER_SECONDS:
                continue
        elif m and _pid_alive(int(m.group("pid"))):
            continue  # a download in progress in another process
        p.unlink(missing_ok=True)
        removed.append(p)
    if removed:
        log.warning("removed %d stale temporary file(s) from an interrupted write in %s", len(removed), cache)
    return removed


def _apply_journal(cache: Path, journal: dict[str, Any]) -> None:
    tables = dict(journal["manifest"])
    for part, dest, sha in journal["moves"]:
        src, target = cache / part, cache / dest
        if src.exists():
            os.replace(src, target)
        elif not (target.is_file() and sha256_file(target) == sha):
            code = next((c for c, e in tables.items() if e.get("file") == dest), None)
            log.warning("%s: interrupted commit cannot be completed for %s; left unrecorded", target, code)
            tables.pop(code, None)
    _fsync_dir(cache)
    atomic_write_bytes(cache / MANIFEST, _manifest_bytes(tables))
    for name in journal.get("remove", []):
        if name not in {e["file"] for e in tables.values()}:
            (cache / name).unlink(missing_ok=True)
    (cache / JOURNAL).unlink(missing_ok=True)
    _fsync_dir(cache)


def recover(cache: Path) -> None:
    """Finish a commit interrupted after its journal was written, and remove stale temporary files.

    Must be called while holding :func:`cache_lock`.
    """
    journal_path = cache / JOURNAL
    if journal_path.exists():
        try:
            journal = json.loads(journal_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            journal = None
        if journal is not None:
            log.warning("%s: completing an import that was interrupted", cache)
            _apply_journal(cache, journal)
        else:  # written atomically, so unreadable means it was never valid: nothing was moved yet
            journal_path.unlink(missing_ok=True)
    clean_stale_parts(cache)


def commit_tables(cache: Path, staged: Sequence[StagedTable]) -> Path | None:
    """Put validated tables into the cache and record them in the manifest, all at once.

    Either every table of ``staged`` with its manifest entry is in place afterwards, or
    (if the process dies before the journal is written) none is. Returns the path where
    an unreadable manifest was set aside, if there was one.
    """
    ensure_writable_cache(cache)
    aside = None
    written: list[Path] = []
    try:
        with cache_lock(cache):
            recover(cache)
            try:
                base = _load_manifest(cache)
            except ManifestCorruptError as exc:
                aside = _set_aside_corrupt_manifest(cache)
                base = {}
                log.warning("%s; set aside as %s, a new manifest is written for the imported tables", exc.args[0].split(". ")[0], aside)
            tables = dict(base)
            moves, remove = [], []
            for s in staged:
                if s.part is None:
                    part = part_path(cache, s.dest_name)
                    written.append(part)
                    with open(part, "wb") as fh:
                        fh.write(s.data or b"")
                        fh.flush()
                        os.fsync(fh.fileno())
                else:
                    part = s.part
                old = tables.get(s.code)
                if old and old.get("file") != s.dest_name:
                    remove.append(old["file"])
                tables[s.code] = {**s.entry, "file": s.dest_name}
                moves.append([part.name, s.dest_name, s.entry["sha256"]])
            journal = {"moves": moves, "manifest": tables, "remove": remove}
            atomic_write_bytes(cache / JOURNAL, json.dumps(journal).encode("utf-8"))
            written.clear()  # from here on the journal owns the parts
            _apply_journal(cache, journal)
    except OSError as exc:
        for p in written:
            p.unlink(missing_ok=True)
        _raise_access(cache, exc)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return aside


# ---------------------------------------------------------------- reading and verifying


def _not_recorded_message(cache: Path, path: Path, code: str | None) -> str:
    what = f"table {code}" if code else "this table"
    return (
        f"{path}: {what} is in the cache but not recorded in {cache / MANIFEST} (an import was interrupted "
        f"or the file was copied in by hand), so its vintage is unknown and it is not read. "
        f"Import it again: {REMEDY_IMPORT}" + (f" with --datasets {code}" if code else "")
    )


def _changed_message(path: Path, code: str, digest: str, entry: dict[str, Any]) -> str:
    return (
        f"{path}: sha256 {digest[:12]}... does not match the manifest ({str(entry.get('sha256'))[:12]}...); "
        f"the file changed after it was cached. Re-run 'returnstudy fetch' (or 'fetch --from DIR') for {code}."
    )


def read_cached_table(cache: Path, code: str) -> tuple[bytes, dict[str, Any]] | None:
    """The verified bytes and manifest entry of ``code`` in ``cache``; ``None`` if the cache lacks the table.

    Raises :class:`CacheIntegrityError` when the file changed after it was cached, is
    missing though listed, or is present but not recorded in the manifest.
    """
    check_cache_path(cache)
    if not cache.is_dir():
        return None
    with _reading(cache):
        manifest = _load_manifest(cache)
        entry = manifest.get(code)
        if entry is None:
            present = [cache / f"{code}{s}" for s in TABLE_SUFFIXES if (cache / f"{code}{s}").is_file()]
            if present:
                raise CacheIntegrityError(_not_recorded_message(cache, present[0], code))
            if not manifest and not (cache / MANIFEST).exists():
                unrecorded = sorted(p.name for p in cache.iterdir() if _table_code(p.name))
                if unrecorded:
                    raise CacheIntegrityError(
                        f"{cache}: the cache has table files ({', '.join(unrecorded)}) but no {MANIFEST}, so their "
                        f"vintages are unknown and they are not read. Import them again: {REMEDY_IMPORT}"
                    )
            return None
        path = cache / entry["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CacheIntegrityError(
                f"{path}: listed in {cache / MANIFEST} but missing; re-run 'returnstudy fetch' (or 'fetch --from DIR') for {code}"
            ) from None
    digest = sha256_bytes(data)
    if digest != entry.get("sha256"):
        raise CacheIntegrityError(_changed_message(path, code, digest, entry))
    return data, entry


STATUS_OK, STATUS_CHANGED, STATUS_MISSING, STATUS_UNRECORDED = "ok", "changed", "missing", "unrecorded"


def cache_status(cache_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per table in the cache, with its checksum verified.

    ``status`` is ``ok`` (file matches the manifest's sha256), ``changed`` (it does
    not), ``missing`` (listed but absent) or ``unrecorded`` (a table file without a
    manifest entry: never read). Columns: dataset, status, file, rows, years,
    last_update (rows per Eurostat LAST UPDATE value), retrieved_at, sha256, source.
    An empty frame means an empty cache; table files without any manifest raise
    :class:`CacheIntegrityError` with the remedy.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cols = ["dataset", "status", "file", "rows", "years", "last_update", "retrieved_at", "sha256", "source"]
    check_cache_path(cache)
    if not cache.is_dir():
        return pd.DataFrame(columns=cols)
    rows = []
    with _reading(cache):
        manifest = _load_manifest(cache)
        files = {p.name: _table_code(p.name) for p in cache.iterdir() if p.is_file() and _table_code(p.name)}
        if files and not (cache / MANIFEST).exists():
            raise CacheIntegrityError(
                f"{cache}: the cache has table files ({', '.join(sorted(files))}) but no {MANIFEST}, so their "
                f"vintages are unknown and they are not read. Import them again: {REMEDY_IMPORT}"
            )
        for code, e in sorted(manifest.items()):
            path = cache / e["file"]
            if not path.is_file():
                status = STATUS_MISSING
            else:
                status = STATUS_OK if sha256_file(path) == e.get("sha256") else STATUS_CHANGED
            rows.append({"dataset": code, "status": status, **{k: e.get(k) for k in cols[2:]}})
        recorded = {e["file"] for e in manifest.values()}
        for name, code in sorted(files.items()):
            if name not in recorded:
                rows.append({"dataset": code, "status": STATUS_UNRECORDED, "file": name, "rows": None, "years": None,
                             "last_update": {}, "retrieved_at": None, "sha256": sha256_file(cache / name), "source": None})
    return pd.DataFrame(rows, columns=cols).astype({"rows": "Int64"})
