"""Which readmission instruments apply to which corridors, and when: for marking time axes.

Reads the curated treatment tables through the package's public loader
(:func:`returnstudy.load_agreements`) and returns one row per (instrument, reporting
country, citizenship): EU readmission agreements and EU non-binding arrangements for every
EU+ state they cover (``eu_participation.csv``), bilateral frameworks for their one state,
visa events for every EU+ state, corridor events (when the tables have them). The date is
entry into force where known, else provisional application, else signature; ``date_basis``
says which. This is a description of the tables for plots and event-time views; the
treatment coding of the models is :func:`returnstudy.add_treatments`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["INSTRUMENT_COLUMNS", "corridor_instruments", "load_instrument_tables"]

INSTRUMENT_COLUMNS = [
    "instrument_id", "level", "kind", "geo", "citizen", "name", "date", "date_basis", "year", "source_url", "verified",
]


def load_instrument_tables() -> tuple[dict[str, pd.DataFrame] | None, str]:
    """The treatment tables from :func:`returnstudy.load_agreements`, or (None, why not)."""
    import returnstudy

    try:
        return returnstudy.load_agreements(), ""
    except ValueError as exc:  # AgreementDataError is a ValueError naming file, row and column
        log.warning("treatment tables not usable: %s", exc)
        lines = str(exc).splitlines()
        return None, "treatment tables failed validation: " + " ".join(x.strip() for x in lines[:3])


def _date(row: Mapping[str, Any], cols: Iterable[tuple[str, str]]) -> tuple[pd.Timestamp | None, str]:
    for col, basis in cols:
        v = row.get(col)
        if v is not None and not pd.isna(v):
            return pd.Timestamp(v), basis
    return None, "no date"


def _covered_geos(part: pd.DataFrame, column: str, value: Any, year: int | None, agreement: Mapping[str, Any] | None) -> list[str]:
    out = []
    for r in part.to_dict("records"):
        if column == "binds_eu_agreements":
            binds = r.get("binds_eu_agreements")
            ok = binds == "all" or (binds == "opt_in" and agreement is not None and bool(agreement.get(f"{str(r['geo']).lower()}_opt_in", False)))
        else:
            ok = bool(r.get(column)) == value
        start, end = r.get("eu_member_from"), r.get("eu_member_to")
        if ok and year is not None and start is not None and not pd.isna(start) and pd.Timestamp(start).year > year:
            ok = False  # joined later: the geo is covered from accession, the date shown is the instrument's
        if ok and year is not None and end is not None and not pd.isna(end) and pd.Timestamp(end).year < year:
            ok = False
        if ok:
            out.append(str(r["geo"]))
    return out


def corridor_instruments(
    citizens: Iterable[str], geos: Iterable[str] | None = None, tables: Mapping[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Instruments of the treatment tables that apply to corridors of ``citizens`` (and ``geos``).

    ``tables``: the output of :func:`returnstudy.load_agreements` (default: load it). Columns
    :data:`INSTRUMENT_COLUMNS`; ``level`` is ``EU``, ``bilateral``, ``visa`` or ``corridor``;
    ``kind`` the instrument type (readmission agreement, non-binding arrangement, the
    bilateral framework's legal form or type, the visa event type).
    """
    if tables is None:
        tables, why = load_instrument_tables()
        if tables is None:
            raise ValueError(why)
    cits = set(citizens)
    geo_set = None if geos is None else set(geos)
    part = tables.get("eu_participation", pd.DataFrame(columns=["geo"]))
    rows: list[dict[str, Any]] = []

    def add(iid: str, level: str, kind: str, geos_: list[str], citizen: str, name: str, date: Any, basis: str, url: Any, verified: Any) -> None:
        for g in geos_:
            rows.append({
                "instrument_id": iid, "level": level, "kind": kind, "geo": g, "citizen": citizen, "name": name,
                "date": date, "date_basis": basis, "year": None if date is None else int(date.year),
                "source_url": "" if url is None or pd.isna(url) else str(url), "verified": bool(verified) if verified is not None and not pd.isna(verified) else False,
            })

    for r in tables.get("eu_readmission_agreements", pd.DataFrame()).to_dict("records"):
        if r["citizen"] in cits:
            d, b = _date(r, [("in_force", "entry into force"), ("signed", "signature")])
            add(r["agreement_id"], "EU", "EU readmission agreement", _covered_geos(part, "binds_eu_agreements", True, d.year if d else None, r),
                r["citizen"], r["name"], d, b, r.get("source_url"), r.get("verified"))
    for r in tables.get("eu_nonbinding_arrangements", pd.DataFrame()).to_dict("records"):
        if r["citizen"] in cits:
            d, b = _date(r, [("in_force", "entry into force"), ("signed", "signature")])
            add(r["arrangement_id"], "EU", "EU non-binding arrangement", _covered_geos(part, "covered_by_eu_nonbinding", True, d.year if d else None, None),
                r["citizen"], r["name"], d, b, r.get("source_url"), r.get("verified"))
    for r in tables.get("bilateral_frameworks", pd.DataFrame()).to_dict("records"):
        if r["citizen"] in cits:
            d, b = _date(r, [("provisional_from", "provisional application"), ("in_force", "entry into force"), ("signed", "signature")])
            kind = str(r.get("legal_form") or r.get("type") or "bilateral framework")
            add(r["framework_id"], "bilateral", kind, [str(r["geo"])], r["citizen"], str(r.get("name", "")), d, b,
                r.get("source_url"), r.get("verified"))
    all_geos = sorted(set(part["geo"])) if len(part) else []
    for r in tables.get("visa_events", pd.DataFrame()).to_dict("records"):
        if r["citizen"] in cits:
            d, b = _date(r, [("date", "date of the measure")])
            add(r["event_id"], "visa", str(r["event_type"]), all_geos, r["citizen"], str(r.get("notes") or r["event_type"]), d, b,
                r.get("source_url"), r.get("verified"))
    for r in tables.get("corridor_events", pd.DataFrame()).to_dict("records"):
        if r["citizen"] in cits:
            d, b = _date(r, [("start", "start")])
            add(r["event_id"], "corridor", str(r["event_type"]), [str(r["geo"])], r["citizen"], str(r["event_type"]), d, b,
                r.get("source_url"), r.get("verified"))
    out = pd.DataFrame(rows, columns=INSTRUMENT_COLUMNS)
    if geo_set is not None:
        out = out[out["geo"].isin(geo_set)]
    out["year"] = out["year"].astype("Int64")
    return out.sort_values(["citizen", "geo", "date", "instrument_id"], kind="mergesort", na_position="last").reset_index(drop=True)
