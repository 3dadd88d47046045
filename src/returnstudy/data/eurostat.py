"""Parse Eurostat tables (SDMX-CSV and SDMX-TSV) into one tidy long layout.

Both layouts become a DataFrame with one row per observation and the columns
``dataset, freq, <dimensions...>, geo, period, year, value, flag, last_update``:

* ``value`` is a float (persons); ``NaN`` where the source says ``:`` (not available).
* ``flag`` keeps Eurostat's observation flags (``p`` provisional, ``d`` definition
  differs, ``b`` break in series, ``c`` confidential, ``e`` estimated...), ``""`` if none.
* ``last_update`` is Eurostat's LAST UPDATE of the cell's series as printed in the
  file (``"20/09/24 23:00:00"``), ``""`` where the source did not give it.

Nothing is imputed here: a cell absent from the file stays absent.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    code: str
    title: str
    dimensions: tuple[str, ...]  # besides freq, geo and time


DATASETS: dict[str, Dataset] = {
    d.code: d
    for d in (
        Dataset("migr_eiord", "Third-country nationals ordered to leave - annual data", ("citizen", "age", "sex", "unit")),
        Dataset(
            "migr_eirtn",
            "Third-country nationals returned following an order to leave - annual data",
            ("citizen", "c_dest", "age", "sex", "unit"),
        ),
        Dataset(
            "migr_eirt_vol",
            "Third-country nationals who have left the territory by type of return and citizenship",
            ("citizen", "c_dest", "rtn_type", "age", "sex", "unit"),
        ),
        Dataset(
            "migr_eirt_ass",
            "Third-country nationals who have left the territory by type of assistance received and citizenship",
            ("citizen", "c_dest", "asstype", "age", "sex", "unit"),
        ),
        Dataset("migr_eipre", "Third-country nationals found to be illegally present - annual data", ("citizen", "age", "sex", "unit")),
        Dataset("migr_eiord1", "Third-country nationals ordered to leave - quarterly data", ("citizen", "age", "sex", "unit")),
        Dataset(
            "migr_eirtn1",
            "Third-country nationals returned following an order to leave - quarterly data",
            ("citizen", "c_dest", "age", "sex", "unit"),
        ),
        Dataset(
            "migr_asyappctza",
            "Asylum applicants by type of applicant, citizenship, age and sex - annual aggregated data",
            ("citizen", "applicant", "age", "sex", "unit"),
        ),
    )
}

_VALUE_RE = re.compile(r"^\s*(?P<num>[0-9]+(?:\.[0-9]+)?|:)\s*(?P<flag>[a-z]*)\s*$")
_PERIOD_RE = re.compile(r"^(?P<year>\d{4})(?:-(?:Q[1-4]|S[12]|M\d{2}|\d{2}))?$")


class EurostatFormatError(ValueError):
    """A Eurostat file that cannot be read as the table it claims to be."""


def dataset_info(code: str) -> Dataset:
    """Metadata of a supported dataset; ``KeyError`` naming the valid codes otherwise."""
    try:
        return DATASETS[code]
    except KeyError:
        raise KeyError(f"unknown Eurostat dataset {code!r}; supported: {', '.join(sorted(DATASETS))}") from None


def _decode(raw: bytes, path: Path) -> str:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise EurostatFormatError(f"{path}: corrupt gzip stream ({exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EurostatFormatError(f"{path}: not UTF-8 text ({exc})") from exc


def read_eurostat_table(path: str | Path, dataset: str | None = None) -> pd.DataFrame:
    """Read a Eurostat table in SDMX-CSV or SDMX-TSV layout (optionally gzipped).

    The layout is detected from the header. ``dataset`` (e.g. ``"migr_eiord"``)
    is inferred from the DATAFLOW column or the file name when not given.
    Raises :class:`EurostatFormatError` naming the file and line on any problem:
    missing columns, truncated lines, non-numeric or negative values, duplicate keys,
    a table with a header but no observations.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return parse_eurostat_bytes(path.read_bytes(), path, dataset)


def parse_eurostat_bytes(raw: bytes, source: str | Path, dataset: str | None = None) -> pd.DataFrame:
    """Parse the bytes of a Eurostat file; error messages name ``source`` (the file the user gave)."""
    path = Path(source)
    text = _decode(raw, path)
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise EurostatFormatError(f"{path}: empty file or empty header line")
    if "\t" in first and "\\" in first:
        df = _parse_tsv(text, path)
    elif "," in first:
        df = _parse_sdmx_csv(text, path)
    else:
        raise EurostatFormatError(f"{path}: header is neither SDMX-CSV nor SDMX-TSV: {first[:80]!r}")
    if df.empty:
        raise EurostatFormatError(f"{path}: the table is empty (a header line but no observations)")
    code = dataset or _infer_dataset(df, path)
    df = df.drop(columns="_dataflow", errors="ignore")
    df["dataset"] = code
    _check_keys(df, path)
    cols = ["dataset", "freq"] + [c for c in df.columns if c not in _FIXED] + ["geo", "period", "year", "value", "flag", "last_update"]
    df = df[cols]
    log.debug("read %s: %d rows of %s", path, len(df), code)
    return df.reset_index(drop=True)


_FIXED = {"dataset", "freq", "geo", "period", "year", "value", "flag", "last_update"}
_SDMX_REQUIRED = ("freq", "geo", "TIME_PERIOD", "OBS_VALUE")


def _infer_dataset(df: pd.DataFrame, path: Path) -> str:
    if "_dataflow" in df.columns:
        flows = df["_dataflow"].unique()
        if len(flows) != 1:
            raise EurostatFormatError(f"{path}: several DATAFLOW values in one file: {list(flows)[:5]}")
        m = re.match(r"^(?:[A-Z]+:)?(?P<code>[A-Za-z0-9_]+)(?:\(.*\))?$", str(flows[0]))
        if m:
            return m.group("code").lower()
    stem = path.name.split(".")[0].lower()
    return stem


def _parse_sdmx_csv(text: str, path: Path) -> pd.DataFrame:
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    missing = [c for c in _SDMX_REQUIRED if c not in header]
    if missing:
        raise EurostatFormatError(f"{path}: missing column(s) {missing}; header is {header}")
    ncol = len(header)
    rows = []
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != ncol:
            raise EurostatFormatError(
                f"{path}, line {lineno}: {len(row)} fields where the header has {ncol} (truncated or corrupt file)"
            )
        rows.append(row)
    raw = pd.DataFrame(rows, columns=header, dtype=str)
    raw.index = pd.RangeIndex(2, 2 + len(raw))  # file line numbers, for error messages
    dims = [c for c in header if c not in {"DATAFLOW", "LAST UPDATE", "TIME_PERIOD", "OBS_VALUE", "OBS_FLAG", "CONF_STATUS"}]
    out = raw[dims].copy()
    if "DATAFLOW" in raw.columns:
        out["_dataflow"] = raw["DATAFLOW"]
    out["last_update"] = raw["LAST UPDATE"] if "LAST UPDATE" in raw.columns else ""
    period = raw["TIME_PERIOD"].str.strip()
    out["period"], out["year"] = _parse_periods(period, path)
    value_text = raw["OBS_VALUE"].str.strip()
    out["value"] = _parse_numbers(value_text.replace({"": ":"}), path)
    out["flag"] = raw["OBS_FLAG"].str.strip() if "OBS_FLAG" in raw.columns else ""
    return out


def _parse_tsv(text: str, path: Path) -> pd.DataFrame:
    lines = text.splitlines()
    header = lines[0].split("\t")
    key_header = header[0]
    if "\\" not in key_header:
        raise EurostatFormatError(f"{path}: TSV header lacks the 'dims\\TIME_PERIOD' first cell: {key_header!r}")
    dims_part, _ = key_header.split("\\", 1)
    dims = [d.strip() for d in dims_part.split(",")]
    if "geo" not in dims or "freq" not in dims:
        raise EurostatFormatError(f"{path}: TSV key columns {dims} lack 'freq' or 'geo'")
    periods = [p.strip() for p in header[1:]]
    records = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise EurostatFormatError(
                f"{path}, line {lineno}: {len(cells)} cells where the header has {len(header)} (truncated or corrupt file)"
            )
        keys = [k.strip() for k in cells[0].split(",")]
        if len(keys) != len(dims):
            raise EurostatFormatError(f"{path}, line {lineno}: key {cells[0]!r} does not have the {len(dims)} parts {dims}")
        for period, cell in zip(periods, cells[1:]):
            records.append((*keys, period, cell, lineno))
    raw = pd.DataFrame(records, columns=[*dims, "_period", "_cell", "_line"])
    raw.index = pd.Index(raw.pop("_line"))
    cell = raw.pop("_cell")
    parts = cell.str.extract(_VALUE_RE)
    bad = parts["num"].isna()
    if bad.any():
        raise EurostatFormatError(f"{path}, line {bad.idxmax()}: value {cell[bad].iloc[0]!r} is neither a number (with optional flag) nor ':'")
    out = raw[dims].copy()
    out["last_update"] = ""
    out["period"], out["year"] = _parse_periods(raw["_period"], path)
    out["value"] = _parse_numbers(parts["num"], path)
    out["flag"] = parts["flag"].fillna("")
    return out


def _parse_periods(period: pd.Series, path: Path) -> tuple[pd.Series, pd.Series]:
    m = period.str.extract(_PERIOD_RE)
    bad = m["year"].isna()
    if bad.any():
        line = bad.idxmax()
        raise EurostatFormatError(f"{path}, line {line}: TIME_PERIOD {period[line]!r} is not a period like 2016 or 2021-Q1")
    return period.astype(str), m["year"].astype("int64")


def _parse_numbers(text: pd.Series, path: Path) -> pd.Series:
    missing = text == ":"
    values = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = values.isna() & ~missing
    if bad.any():
        line = bad.idxmax()
        raise EurostatFormatError(f"{path}, line {line}: OBS_VALUE {text[line]!r} is not a number")
    neg = values < 0
    if neg.any():
        line = neg.idxmax()
        raise EurostatFormatError(f"{path}, line {line}: negative count {values[line]} (persons cannot be negative)")
    return values.astype("float64")


def _check_keys(df: pd.DataFrame, path: Path) -> None:
    """Reject repeated observation keys, naming every line of the first repeated key."""
    keys = [c for c in df.columns if c not in {"value", "flag", "last_update", "year"}]
    repeat = df.duplicated(keys, keep="first")
    if repeat.any():
        first = df.loc[repeat, keys].iloc[0]
        same = (df[keys] == first).all(axis=1)
        lines = sorted({int(i) for i in df.index[same]})
        where = ", ".join(str(n) for n in lines[:-1]) + f" and {lines[-1]}" if len(lines) > 1 else str(lines[0])
        n_keys = int(df.loc[repeat, keys].drop_duplicates().shape[0])
        others = f" ({n_keys - 1} more repeated key(s) in the file)" if n_keys > 1 else ""
        key = ", ".join(f"{k}={v}" for k, v in first.items() if k != "dataset")
        raise EurostatFormatError(f"{path}: duplicate observation key ({key}) on lines {where}{others}")


def observed_last_updates(df: pd.DataFrame) -> dict[str, int]:
    """Count of rows per LAST UPDATE value ("" = not given by the source)."""
    counts = df["last_update"].value_counts(sort=False)
    return {str(k): int(v) for k, v in sorted(counts.items())}


def normalise_last_update(value: str) -> str:
    """Eurostat's ``dd/mm/yy hh:mm:ss`` -> ISO date ``yyyy-mm-dd``; ``""`` stays ``""``."""
    value = (value or "").strip()
    if not value:
        return ""
    for fmt in ("%d/%m/%y %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).strftime("%Y-%m-%d")
        except ValueError:
            continue
    return value

