"""Treatment coding: which corridor (EU+ country x citizenship) is covered by which
readmission framework in which year.

The curated tables live in ``data/agreements/`` (see the README there):

* ``eu_readmission_agreements.csv`` -- the 18 EU readmission agreements,
* ``eu_participation.csv``          -- which EU+ states each EU-level instrument binds,
* ``eu_nonbinding_arrangements.csv`` -- EU-level non-binding readmission arrangements,
* ``visa_events.csv``               -- visa liberalisation / facilitation / Art. 25a events
  (validated here, not turned into treatment columns),
* ``bilateral_frameworks.csv`` and ``bilateral_coverage.csv`` -- bilateral frameworks of
  single EU+ states and which pairs were researched (optional).

:func:`add_treatments` adds, for each type ``T`` in :data:`TREATMENT_TYPES`, the columns
``T`` (float64: 0/1 in force in that calendar year, or the share of the year in force),
``T_cohort`` (Int64: first calendar year treated under the rule) and ``T_years_since``
(Int64: year - cohort), plus ``bilateral_researched``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .paths import project_data_dir

logger = logging.getLogger(__name__)

__all__ = [
    "TREATMENT_TYPES",
    "RULES",
    "AgreementDataError",
    "load_agreements",
    "check_agreements",
    "add_treatments",
    "treatment_summary",
]

TREATMENT_TYPES: tuple[str, ...] = (
    "eu_agreement",
    "eu_nonbinding",
    "bilateral_binding",
    "bilateral_nonbinding",
)
RULES: tuple[str, ...] = ("calendar_year", "first_full_year", "share_of_year")

Rule = Literal["calendar_year", "first_full_year", "share_of_year"]

BILATERAL_TYPES: tuple[str, ...] = (
    "standard_readmission_agreement",
    "implementing_protocol",
    "nonstandard_arrangement",
    "partnership_readmission_clause",
)
VISA_EVENT_TYPES: tuple[str, ...] = (
    "visa_liberalisation",
    "visa_facilitation",
    "art25a_restrictive",
    "art25a_favourable",
)
BINDS_VALUES: tuple[str, ...] = ("all", "opt_in", "none")
COVERAGE_RESULTS: tuple[str, ...] = ("agreement_found", "none_found")

# open-ended spells end here (inside the pandas Timestamp range)
_OPEN_END = pd.Timestamp("2200-12-31")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BOOL_MAP = {"true": True, "false": False}


class AgreementDataError(ValueError):
    """An agreements table is malformed; the message names file, row and column."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) in the agreements tables:\n  "
        super().__init__(head + "\n  ".join(self.problems))


@dataclass(frozen=True)
class _Spec:
    """Schema of one curated table."""

    filename: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    date_cols: tuple[str, ...] = ()
    required_nonempty: tuple[str, ...] = ()
    bool_cols: tuple[str, ...] = ()
    citizen_cols: tuple[str, ...] = ()
    geo_cols: tuple[str, ...] = ()
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    url_col: str | None = "source_url"
    optional: bool = False


_SPECS: dict[str, _Spec] = {
    "eu_readmission_agreements": _Spec(
        filename="eu_readmission_agreements.csv",
        columns=(
            "agreement_id", "citizen", "name", "signed", "in_force", "tcn_clause_applies",
            "visa_facilitation_in_force", "uk_opt_in", "ie_opt_in", "source_url", "verified", "notes",
        ),
        key=("agreement_id",),
        date_cols=("signed", "in_force", "tcn_clause_applies", "visa_facilitation_in_force", "ie_bound_from"),
        required_nonempty=("agreement_id", "citizen", "name", "signed", "in_force"),
        bool_cols=("uk_opt_in", "ie_opt_in", "verified"),
        citizen_cols=("citizen",),
    ),
    "eu_participation": _Spec(
        filename="eu_participation.csv",
        columns=(
            "geo", "eu_member_from", "eu_member_to", "binds_eu_agreements", "bound_until",
            "covered_by_eu_nonbinding", "rule_notes", "source_url", "verified",
        ),
        key=("geo",),
        date_cols=("eu_member_from", "eu_member_to", "bound_until"),
        required_nonempty=("geo", "binds_eu_agreements"),
        bool_cols=("covered_by_eu_nonbinding", "verified"),
        geo_cols=("geo",),
        enums={"binds_eu_agreements": BINDS_VALUES},
    ),
    "eu_nonbinding_arrangements": _Spec(
        filename="eu_nonbinding_arrangements.csv",
        columns=("arrangement_id", "citizen", "name", "signed", "in_force", "source_url", "verified", "notes"),
        key=("arrangement_id",),
        date_cols=("signed", "in_force"),
        required_nonempty=("arrangement_id", "citizen", "name"),
        bool_cols=("verified",),
        citizen_cols=("citizen",),
    ),
    "visa_events": _Spec(
        filename="visa_events.csv",
        columns=("event_id", "citizen", "event_type", "date", "source_url", "verified", "notes"),
        key=("event_id",),
        date_cols=("date",),
        required_nonempty=("event_id", "citizen", "event_type", "date"),
        bool_cols=("verified",),
        citizen_cols=("citizen",),
        enums={"event_type": VISA_EVENT_TYPES},
    ),
    "bilateral_frameworks": _Spec(
        filename="bilateral_frameworks.csv",
        columns=(
            "framework_id", "geo", "citizen", "type", "name", "signed", "in_force",
            "source_url", "verified", "notes",
        ),
        key=("framework_id",),
        date_cols=("signed", "in_force"),
        required_nonempty=("framework_id", "geo", "citizen", "type"),
        bool_cols=("verified",),
        citizen_cols=("citizen",),
        geo_cols=("geo",),
        enums={"type": BILATERAL_TYPES},
        optional=True,
    ),
    "bilateral_coverage": _Spec(
        filename="bilateral_coverage.csv",
        columns=("geo", "citizen", "researched", "result", "checked_sources", "notes"),
        key=("geo", "citizen"),
        required_nonempty=("geo", "citizen", "researched"),
        bool_cols=("researched",),
        citizen_cols=("citizen",),
        geo_cols=("geo",),
        url_col=None,
        optional=True,
    ),
}


# --------------------------------------------------------------------------- reading


def _default_agreements_dir() -> Path:
    return project_data_dir() / "agreements"


def _default_codes_dir() -> Path:
    return project_data_dir() / "codes"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_raw(path: Path) -> pd.DataFrame:
    """Read a curated CSV with every cell as a stripped string ('' = empty)."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    raw.columns = [str(c).strip() for c in raw.columns]
    return raw.apply(lambda s: s.str.strip())


def _load_codes(codes_dir: Path) -> tuple[set[str], set[str], pd.DataFrame]:
    """Valid citizen codes (kind == country), valid geo codes, and the reporting-country table."""
    cit_path = codes_dir / "citizenships.csv"
    rep_path = codes_dir / "reporting_countries.csv"
    for p in (cit_path, rep_path):
        if not p.is_file():
            raise FileNotFoundError(f"code list {p} not found (expected data/codes/{p.name})")
    cit = _read_raw(cit_path)
    rep = _read_raw(rep_path)
    for col in ("code", "kind"):
        if col not in cit.columns:
            raise KeyError(f"{cit_path}: missing column '{col}'")
    if "geo" not in rep.columns:
        raise KeyError(f"{rep_path}: missing column 'geo'")
    citizens = set(cit.loc[cit["kind"] == "country", "code"])
    geos = set(rep["geo"])
    return citizens, geos, rep


def _where(fname: str, i: int, col: str | None = None) -> str:
    loc = f"{fname}: row {i + 1} (line {i + 2})"
    return f"{loc}, column '{col}'" if col else loc


def _validate_table(
    name: str, raw: pd.DataFrame, citizens: set[str], geos: set[str]
) -> tuple[list[str], pd.DataFrame | None]:
    """Check one table; return problems and the parsed frame (None if columns are missing)."""
    spec = _SPECS[name]
    fname = spec.filename
    problems: list[str] = []
    missing = [c for c in spec.columns if c not in raw.columns]
    if missing:
        return [f"{fname}: missing column(s) {missing}"], None

    for col in spec.required_nonempty:
        for i in np.flatnonzero((raw[col] == "").to_numpy()):
            problems.append(f"{_where(fname, i, col)}: empty value")

    if spec.url_col is not None:
        bad = ~raw[spec.url_col].str.match(r"^https?://\S+$")
        for i in np.flatnonzero(bad.to_numpy()):
            val = raw[spec.url_col].iat[i]
            what = "missing source" if val == "" else f"not an http(s) URL: {val!r}"
            problems.append(f"{_where(fname, i, spec.url_col)}: {what}")

    parsed = raw.copy()
    for col in spec.date_cols:
        if col not in raw.columns:  # optional date column (e.g. ie_bound_from)
            continue
        s = raw[col]
        dt = pd.to_datetime(s.where(s.str.match(_ISO_DATE.pattern), None), format="%Y-%m-%d", errors="coerce")
        for i in np.flatnonzero(((s != "") & dt.isna()).to_numpy()):
            problems.append(f"{_where(fname, i, col)}: {s.iat[i]!r} is not an ISO date YYYY-MM-DD")
        parsed[col] = dt

    for col in spec.bool_cols:
        s = raw[col].str.lower()
        ok = s.isin(list(_BOOL_MAP))
        for i in np.flatnonzero((~ok).to_numpy()):
            problems.append(f"{_where(fname, i, col)}: {raw[col].iat[i]!r} is not true/false")
        parsed[col] = s.eq("true").to_numpy(dtype=bool)

    for col, allowed in spec.enums.items():
        bad = ~raw[col].isin(allowed) & (raw[col] != "")
        for i in np.flatnonzero(bad.to_numpy()):
            problems.append(f"{_where(fname, i, col)}: {raw[col].iat[i]!r} not one of {list(allowed)}")

    for col in spec.citizen_cols:
        bad = ~raw[col].isin(citizens) & (raw[col] != "")
        for i in np.flatnonzero(bad.to_numpy()):
            problems.append(f"{_where(fname, i, col)}: unknown citizenship code {raw[col].iat[i]!r}")
    for col in spec.geo_cols:
        bad = ~raw[col].isin(geos) & (raw[col] != "")
        for i in np.flatnonzero(bad.to_numpy()):
            problems.append(f"{_where(fname, i, col)}: unknown reporting-country code {raw[col].iat[i]!r}")

    dup = raw.duplicated(list(spec.key), keep="first") & (raw[list(spec.key)] != "").all(axis=1)
    for i in np.flatnonzero(dup.to_numpy()):
        keyval = ", ".join(f"{k}={raw[k].iat[i]!r}" for k in spec.key)
        problems.append(f"{_where(fname, i)}: duplicate {keyval}")

    if "signed" in spec.date_cols and "in_force" in spec.date_cols:
        late = (parsed["signed"] > parsed["in_force"]).fillna(False).to_numpy(dtype=bool)
        for i in np.flatnonzero(late):
            problems.append(
                f"{_where(fname, i, 'signed')}: signed {raw['signed'].iat[i]} is after in_force {raw['in_force'].iat[i]}"
            )

    problems += _table_specific(name, raw, parsed)
    return problems, parsed


def _table_specific(name: str, raw: pd.DataFrame, parsed: pd.DataFrame) -> list[str]:
    spec = _SPECS[name]
    fname = spec.filename
    problems: list[str] = []
    if name == "eu_readmission_agreements":
        dup = raw.duplicated(["citizen"], keep="first") & (raw["citizen"] != "")
        for i in np.flatnonzero(dup.to_numpy()):
            problems.append(f"{_where(fname, i, 'citizen')}: duplicate agreement for citizen {raw['citizen'].iat[i]!r}")
        for col in ("tcn_clause_applies",):
            early = (parsed[col] < parsed["in_force"]).fillna(False).to_numpy(dtype=bool)
            for i in np.flatnonzero(early):
                problems.append(f"{_where(fname, i, col)}: {raw[col].iat[i]} is before in_force {raw['in_force'].iat[i]}")
        if "ie_bound_from" in raw.columns:
            stray = (~parsed["ie_opt_in"]) & (raw["ie_bound_from"] != "")
            for i in np.flatnonzero(stray.to_numpy()):
                problems.append(f"{_where(fname, i, 'ie_bound_from')}: set although ie_opt_in is false")
            early = (parsed["ie_bound_from"] < parsed["in_force"]).fillna(False).to_numpy(dtype=bool)
            for i in np.flatnonzero(early):
                problems.append(f"{_where(fname, i, 'ie_bound_from')}: before in_force {raw['in_force'].iat[i]}")
    elif name == "eu_nonbinding_arrangements":
        both_empty = (raw["signed"] == "") & (raw["in_force"] == "")
        for i in np.flatnonzero(both_empty.to_numpy()):
            problems.append(f"{_where(fname, i, 'in_force')}: neither signed nor in_force given")
        dup = raw.duplicated(["citizen", "name"], keep="first")
        for i in np.flatnonzero(dup.to_numpy()):
            problems.append(f"{_where(fname, i, 'name')}: duplicate arrangement {raw['name'].iat[i]!r}")
    elif name == "eu_participation":
        needs = raw["binds_eu_agreements"].isin(["all", "opt_in"]) & (raw["eu_member_from"] == "")
        for i in np.flatnonzero(needs.to_numpy()):
            problems.append(f"{_where(fname, i, 'eu_member_from')}: required when binds_eu_agreements is all/opt_in")
        nb = parsed["covered_by_eu_nonbinding"] & (raw["eu_member_from"] == "")
        for i in np.flatnonzero(nb.to_numpy()):
            problems.append(f"{_where(fname, i, 'eu_member_from')}: required when covered_by_eu_nonbinding is true")
    elif name == "bilateral_frameworks":
        dup = raw.duplicated(["geo", "citizen", "type", "signed", "in_force"], keep="first") & (raw["geo"] != "")
        for i in np.flatnonzero(dup.to_numpy()):
            problems.append(f"{_where(fname, i)}: duplicate framework for {raw['geo'].iat[i]}-{raw['citizen'].iat[i]}")
        # rows with no date at all are allowed (framework known, date not found): they are
        # not treated and counted in add_treatments' attrs["treatment_coding"]["bilateral_dropped"]
    elif name == "bilateral_coverage":
        res = raw["result"]
        researched = parsed["researched"]
        bad = researched & ~res.isin(COVERAGE_RESULTS)
        for i in np.flatnonzero(bad.to_numpy()):
            problems.append(f"{_where(fname, i, 'result')}: {res.iat[i]!r} not one of {list(COVERAGE_RESULTS)}")
        bad = ~researched & (res != "")
        for i in np.flatnonzero(bad.to_numpy()):
            problems.append(f"{_where(fname, i, 'result')}: result given although researched is false")
        bad = researched & (raw["checked_sources"] == "")
        for i in np.flatnonzero(bad.to_numpy()):
            problems.append(f"{_where(fname, i, 'checked_sources')}: empty although researched is true")
    return problems


def _cross_checks(tables: dict[str, pd.DataFrame], reporting: pd.DataFrame) -> list[str]:
    problems: list[str] = []
    part = tables.get("eu_participation")
    agr = tables.get("eu_readmission_agreements")
    if part is not None and agr is not None:
        fname = _SPECS["eu_participation"].filename
        for i, (geo, binds) in enumerate(zip(part["geo"], part["binds_eu_agreements"])):
            if binds == "opt_in" and f"{geo.lower()}_opt_in" not in agr.columns:
                problems.append(
                    f"{_where(fname, i, 'binds_eu_agreements')}: opt_in for {geo} but "
                    f"eu_readmission_agreements.csv has no column '{geo.lower()}_opt_in'"
                )
    if part is not None and "eu_from" in reporting.columns:
        fname = _SPECS["eu_participation"].filename
        ref = dict(zip(reporting["geo"], reporting["eu_from"]))
        for i, (geo, frm) in enumerate(zip(part["geo"], part["eu_member_from"])):
            r = ref.get(geo, "")
            f = "" if pd.isna(frm) else frm.strftime("%Y-%m-%d")
            if r and f and r != f:
                problems.append(
                    f"{_where(fname, i, 'eu_member_from')}: {f} differs from reporting_countries.csv eu_from {r}"
                )
    fw = tables.get("bilateral_frameworks")
    cov = tables.get("bilateral_coverage")
    if fw is not None and cov is not None:
        found = cov.loc[cov["researched"], ["geo", "citizen", "result"]]
        none_found = set(map(tuple, found.loc[found["result"] == "none_found", ["geo", "citizen"]].to_numpy()))
        pairs_fw = set(map(tuple, fw[["geo", "citizen"]].to_numpy()))
        fname = _SPECS["bilateral_frameworks"].filename
        for i, pair in enumerate(map(tuple, fw[["geo", "citizen"]].to_numpy())):
            if pair in none_found:
                problems.append(f"{_where(fname, i)}: {pair[0]}-{pair[1]} is marked none_found in bilateral_coverage.csv")
        cname = _SPECS["bilateral_coverage"].filename
        for i, (g, c, researched, result) in enumerate(
            zip(cov["geo"], cov["citizen"], cov["researched"], cov["result"])
        ):
            if researched and result == "agreement_found" and (g, c) not in pairs_fw:
                problems.append(f"{_where(cname, i, 'result')}: agreement_found but no row in bilateral_frameworks.csv")
    return problems


def _read_all(
    agreements_dir: Path | None, codes_dir: Path | None
) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, str]]:
    adir = Path(agreements_dir) if agreements_dir is not None else _default_agreements_dir()
    cdir = Path(codes_dir) if codes_dir is not None else _default_codes_dir()
    citizens, geos, reporting = _load_codes(cdir)
    tables: dict[str, pd.DataFrame] = {}
    problems: list[str] = []
    hashes: dict[str, str] = {}
    for name, spec in _SPECS.items():
        path = adir / spec.filename
        if not path.is_file():
            if spec.optional:
                logger.warning("%s not found in %s: bilateral treatments will be unknown (NaN)", spec.filename, adir)
                continue
            problems.append(f"{spec.filename}: file not found in {adir}")
            continue
        hashes[spec.filename] = _sha256(path)
        try:
            raw = _read_raw(path)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            problems.append(f"{spec.filename}: cannot be parsed as UTF-8 CSV ({exc})")
            continue
        probs, parsed = _validate_table(name, raw, citizens, geos)
        problems += probs
        if parsed is not None:
            parsed.attrs = {"source_file": str(path), "sha256": hashes[spec.filename]}
            tables[name] = parsed
    if ("bilateral_frameworks" in tables) != ("bilateral_coverage" in tables):
        have = "bilateral_frameworks" if "bilateral_frameworks" in tables else "bilateral_coverage"
        logger.warning("only %s.csv present; the bilateral tables are used as a pair", have)
    problems += _cross_checks(tables, reporting)
    return tables, problems, hashes


def load_agreements(
    agreements_dir: Path | None = None, codes_dir: Path | None = None
) -> dict[str, pd.DataFrame]:
    """Read and validate the treatment tables.

    Returns a dict keyed by table name (``eu_readmission_agreements``, ``eu_participation``,
    ``eu_nonbinding_arrangements``, ``visa_events`` and, when present, ``bilateral_frameworks``
    and ``bilateral_coverage``). Date columns are ``datetime64`` (NaT = not given), boolean
    columns ``bool``; each frame's ``attrs`` hold its source file and sha256.

    Raises :class:`AgreementDataError` listing every problem (file, row, column).
    """
    tables, problems, _ = _read_all(agreements_dir, codes_dir)
    if problems:
        raise AgreementDataError(problems)
    return tables


def check_agreements(agreements_dir: Path | None = None, codes_dir: Path | None = None) -> list[str]:
    """Validate the treatment tables; return the list of problems (empty = all fine)."""
    try:
        _, problems, _ = _read_all(agreements_dir, codes_dir)
    except (FileNotFoundError, KeyError) as exc:
        return [str(exc)]
    return problems


# --------------------------------------------------------------------------- spells


def _merge_spells(spells: pd.DataFrame) -> pd.DataFrame:
    """Union of [start, end] intervals per (geo, citizen); touching intervals are joined."""
    cols = ["geo", "citizen", "start", "end"]
    if spells.empty:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c in ("start", "end") else "str") for c in cols})
    s = spells[cols].sort_values(["geo", "citizen", "start", "end"]).reset_index(drop=True)
    keys = [s["geo"], s["citizen"]]
    running_end = s.groupby(keys)["end"].cummax()
    prev_end = running_end.groupby(keys).shift()
    new = prev_end.isna() | (s["start"] > prev_end + pd.Timedelta(days=1))
    grp = new.cumsum()
    out = s.groupby(grp).agg(geo=("geo", "first"), citizen=("citizen", "first"), start=("start", "min"), end=("end", "max"))
    return out.reset_index(drop=True)


def _participation_frame(part: pd.DataFrame, uk_in_eu_until: int) -> pd.DataFrame:
    """Per geo: binding rule, first and last date bound (UK end from ``uk_in_eu_until``)."""
    p = part[["geo", "binds_eu_agreements", "covered_by_eu_nonbinding", "eu_member_from"]].copy()
    end = part["bound_until"].fillna(part["eu_member_to"])
    end = end.where(part["geo"] != "UK", pd.Timestamp(year=int(uk_in_eu_until), month=12, day=31))
    p["member_end"] = end.fillna(_OPEN_END)
    return p


def _eu_agreement_spells(agr: pd.DataFrame, part: pd.DataFrame) -> pd.DataFrame:
    pairs = agr.merge(part.loc[part["binds_eu_agreements"] != "none"], how="cross")
    start = pairs[["in_force", "eu_member_from"]].max(axis=1)
    keep = pd.Series(True, index=pairs.index)
    opt = pairs["binds_eu_agreements"] == "opt_in"
    for geo in pairs.loc[opt, "geo"].unique():
        rows = opt & (pairs["geo"] == geo)
        keep &= ~rows | pairs[f"{geo.lower()}_opt_in"].astype(bool)
        bound_col = f"{geo.lower()}_bound_from"
        if bound_col in pairs.columns:
            start = start.where(~rows, pairs[["in_force", "eu_member_from", bound_col]].max(axis=1))
    spells = pd.DataFrame(
        {"geo": pairs["geo"], "citizen": pairs["citizen"], "start": start, "end": pairs["member_end"]}
    )
    spells = spells.loc[keep & (spells["start"] <= spells["end"])]
    return spells


def _eu_nonbinding_spells(arr: pd.DataFrame, part: pd.DataFrame, nonbinding_start: str) -> pd.DataFrame:
    start0 = arr["in_force"]
    if nonbinding_start == "signed":
        start0 = start0.fillna(arr["signed"])
    a = arr.assign(_start0=start0).loc[start0.notna()]
    pairs = a.merge(part.loc[part["covered_by_eu_nonbinding"]], how="cross")
    start = pairs[["_start0", "eu_member_from"]].max(axis=1)
    spells = pd.DataFrame({"geo": pairs["geo"], "citizen": pairs["citizen"], "start": start, "end": pairs["member_end"]})
    return spells.loc[spells["start"] <= spells["end"]]


BINDING_TOKEN = r"^\s*binding=(yes|no|unknown)\b"
"""Each bilateral row's notes open with ``binding=yes|no|unknown``: whether the instrument is a
legally binding treaty, read from its source (the type alone does not settle it for
exchanges of notes, police agreements and partnerships)."""


def _bilateral_spells(
    fw: pd.DataFrame,
    protocols_as_binding: bool,
    nonbinding_start: str,
    binding_start: str = "in_force_or_signed",
    unknown_binding: str = "by_type",
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Split bilateral frameworks into binding and non-binding spells (geo, citizen, start, end).

    Binding: standard readmission agreements, implementing protocols (if
    ``protocols_as_binding``) and any other instrument whose notes say ``binding=yes``.
    Non-binding: non-standard arrangements and partnerships with ``binding=no``; those with
    ``binding=unknown`` follow their type (``unknown_binding="by_type"``: non-binding) or are
    left out (``"drop"``). Binding instruments start at entry into force, or at signature where
    no entry into force is recorded (``binding_start="in_force_or_signed"``) or only at
    entry into force (``"in_force"``).
    """
    token = fw["notes"].fillna("").astype(str).str.extract(BINDING_TOKEN, expand=False).fillna("unknown")
    standard = fw["type"] == "standard_readmission_agreement"
    protocol = fw["type"] == "implementing_protocol"
    other = ~(standard | protocol)
    is_binding = standard | (protocol & protocols_as_binding) | (other & (token == "yes"))
    is_nonbinding = other & (token == "no")
    if unknown_binding == "by_type":
        is_nonbinding |= other & (token == "unknown")
    b, nb = fw.loc[is_binding], fw.loc[is_nonbinding]
    b_start = b["in_force"].fillna(b["signed"]) if binding_start == "in_force_or_signed" else b["in_force"]
    nb_start = nb["in_force"].fillna(nb["signed"]) if nonbinding_start == "signed" else nb["in_force"]
    dropped = {
        "binding_started_at_signature": int((b["in_force"].isna() & b_start.notna()).sum()),
        "binding_without_start": int(b_start.isna().sum()),
        "protocols_excluded": 0 if protocols_as_binding else int(protocol.sum()),
        "unknown_binding_excluded": int((other & (token == "unknown")).sum()) if unknown_binding == "drop" else 0,
        "nonbinding_without_start": int(nb_start.isna().sum()),
    }
    for what, n in dropped.items():
        if n:
            logger.info("bilateral frameworks: %s = %d", what, n)
    bs = pd.DataFrame({"geo": b["geo"], "citizen": b["citizen"], "start": b_start, "end": _OPEN_END})
    ns = pd.DataFrame({"geo": nb["geo"], "citizen": nb["citizen"], "start": nb_start, "end": _OPEN_END})
    return bs.dropna(subset=["start"]), ns.dropna(subset=["start"]), dropped


# --------------------------------------------------------------------------- coding


def _dates(year: pd.Series, month: int, day: int) -> pd.Series:
    """Vectorised Timestamp(year, month, day)."""
    return pd.to_datetime(pd.DataFrame({"year": year.to_numpy(), "month": month, "day": day}), errors="raise").set_axis(
        year.index
    )


def _year_values(keys: pd.DataFrame, merged: pd.DataFrame, rule: str) -> pd.Series:
    """Treatment value for each (geo, citizen, year) row of ``keys`` (aligned with keys' index)."""
    out = pd.Series(0.0, index=keys.index, dtype="float64")
    if merged.empty:
        return out
    k = keys.reset_index(names="_row")
    m = k.merge(merged, on=["geo", "citizen"], how="inner")
    if m.empty:
        return out
    year = m["year"].astype("int64")
    ys = _dates(year, 1, 1)
    ye = _dates(year, 12, 31)
    lo = m["start"].where(m["start"] > ys, ys)
    hi = m["end"].where(m["end"] < ye, ye)
    m["days"] = ((hi - lo).dt.days + 1).clip(lower=0)
    covered = m.groupby("_row")["days"].sum()
    yr = keys.loc[covered.index, "year"].astype("int64")
    days_in_year = np.where((yr % 4 == 0) & ((yr % 100 != 0) | (yr % 400 == 0)), 366, 365)
    share = (covered / days_in_year).clip(upper=1.0)
    if rule == "calendar_year":
        vals = (share > 0).astype("float64")
    elif rule == "first_full_year":
        vals = (covered >= days_in_year).astype("float64")
    else:
        vals = share.astype("float64")
    out.loc[vals.index] = vals.to_numpy()
    return out


def _cohorts(merged: pd.DataFrame, rule: str) -> pd.DataFrame:
    """First calendar year treated under ``rule`` per (geo, citizen), independent of the panel's years."""
    if merged.empty:
        return pd.DataFrame({"geo": pd.Series(dtype="str"), "citizen": pd.Series(dtype="str"),
                             "cohort": pd.Series(dtype="Int64")})
    start_year = merged["start"].dt.year
    if rule == "first_full_year":
        jan1 = (merged["start"].dt.month == 1) & (merged["start"].dt.day == 1)
        first = start_year + (~jan1).astype("int64")
        dec31 = _dates(first, 12, 31)
        first = first.where(dec31 <= merged["end"])
    else:
        first = start_year
    c = merged.assign(cohort=first).dropna(subset=["cohort"])
    c = c.groupby(["geo", "citizen"], as_index=False)["cohort"].min()
    c["cohort"] = c["cohort"].astype("Int64")
    return c


def _code_type(keys: pd.DataFrame, spells: pd.DataFrame, rule: str) -> tuple[pd.Series, pd.Series]:
    merged = _merge_spells(spells)
    vals = _year_values(keys, merged, rule)
    coh = keys[["geo", "citizen"]].merge(_cohorts(merged, rule), on=["geo", "citizen"], how="left")["cohort"]
    coh.index = keys.index
    return vals, coh.astype("Int64")


def add_treatments(
    panel: pd.DataFrame,
    rule: Rule = "calendar_year",
    agreements_dir: Path | None = None,
    uk_in_eu_until: int = 2020,
    protocols_as_binding: bool = True,
    nonbinding_start: Literal["signed", "in_force"] = "signed",
    unresearched_as_missing: bool = False,
    codes_dir: Path | None = None,
    binding_start: Literal["in_force_or_signed", "in_force"] = "in_force_or_signed",
    unknown_binding: Literal["by_type", "drop"] = "by_type",
) -> pd.DataFrame:
    """Return a copy of ``panel`` with the treatment columns of every type.

    Parameters
    ----------
    panel
        Corridor-year panel with at least ``geo``, ``citizen``, ``year``; not modified.
    rule
        ``"calendar_year"`` (default): 1 from the calendar year in which the framework starts
        to apply to the corridor (annual Eurostat counts; an agreement can affect returns in the
        year it enters into force). ``"first_full_year"``: 1 only in calendar years fully in
        force. ``"share_of_year"``: fraction of the year's days in force (e.g. in force from
        2014-10-01 -> 92/365 in 2014). The alternatives bracket the default.
    uk_in_eu_until
        Last calendar year (inclusive, to 31 Dec) in which the UK is bound by EU-level
        instruments; default 2020 = end of the transition period.
    protocols_as_binding
        Count bilateral implementing protocols to EU agreements as ``bilateral_binding``
        (default); if False they are not coded at all (their effect is the EU agreement's).
    nonbinding_start
        For non-binding arrangements without an entry-into-force date, start at signature
        (``"signed"``, default) or leave them untreated (``"in_force"``).
    binding_start
        Binding bilateral agreements start at entry into force; where the sources give no
        entry-into-force date, at signature (``"in_force_or_signed"``, default: many older
        agreements are only dated by signature) or not at all (``"in_force"``). The number
        started at signature is recorded in ``attrs["treatment_coding"]["bilateral_dropped"]``.
    unknown_binding
        Non-standard arrangements and partnerships whose legal form is unknown
        (``binding=unknown`` in the notes) count as non-binding (``"by_type"``) or are left out
        (``"drop"``).
    unresearched_as_missing
        Code bilateral values of pairs not researched in ``bilateral_coverage.csv`` as NaN
        instead of 0 (which is the default: no known framework = untreated).

    EU agreements bind a geo as listed in ``eu_participation.csv``: Denmark, Norway,
    Switzerland, Iceland, Liechtenstein never; Ireland and the UK only where opted in (Ireland
    from ``ie_bound_from``); later members from accession (switch-on = later of accession and
    entry into force). The switch-on date is entry into force (readmission of own nationals),
    not the deferred third-country-national clause. EU non-binding arrangements cover all EU
    members (including Denmark and Ireland) but not non-EU Schengen states. Cohort = first
    calendar year with value > 0 under the rule, computed from the dates (it can precede the
    panel's first year); ``years_since`` = year - cohort. If the bilateral tables are absent,
    bilateral columns are NaN and a warning is logged.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if binding_start not in ("in_force_or_signed", "in_force"):
        raise ValueError(f"binding_start must be 'in_force_or_signed' or 'in_force', got {binding_start!r}")
    if unknown_binding not in ("by_type", "drop"):
        raise ValueError(f"unknown_binding must be 'by_type' or 'drop', got {unknown_binding!r}")
    if nonbinding_start not in ("signed", "in_force"):
        raise ValueError(f"nonbinding_start must be 'signed' or 'in_force', got {nonbinding_start!r}")
    try:
        uk_year = int(uk_in_eu_until)
    except (TypeError, ValueError):
        raise ValueError(f"uk_in_eu_until must be a year (int), got {uk_in_eu_until!r}") from None
    missing = [c for c in ("geo", "citizen", "year") if c not in panel.columns]
    if missing:
        raise KeyError(f"panel is missing column(s) {missing}")
    if not pd.api.types.is_integer_dtype(panel["year"]):
        raise ValueError(f"panel column 'year' must be integer, got dtype {panel['year'].dtype}")
    if panel.duplicated(["geo", "citizen", "year"]).any():
        raise ValueError("panel has duplicate (geo, citizen, year) rows")

    adir = Path(agreements_dir) if agreements_dir is not None else _default_agreements_dir()
    tables, problems, hashes = _read_all(adir, codes_dir)
    if problems:
        raise AgreementDataError(problems)

    # positional keys: results are written back by position, whatever the panel's index
    keys = pd.DataFrame(
        {"geo": panel["geo"].astype(str).to_numpy(), "citizen": panel["citizen"].astype(str).to_numpy(),
         "year": panel["year"].to_numpy(dtype="int64")}
    )
    part = _participation_frame(tables["eu_participation"], uk_year)
    unknown_geo = sorted(set(keys["geo"]) - set(part["geo"]))
    if unknown_geo:
        from returnstudy.data.codes import aggregate_codes

        aggregates = [g for g in unknown_geo if g in aggregate_codes()]
        others = [g for g in unknown_geo if g not in aggregates]
        if aggregates:
            logger.info("aggregate geo %s: coded as not bound by EU-level instruments", aggregates)
        if others:
            logger.warning("geo %s not in eu_participation.csv: coded as not bound by EU-level instruments", others)

    spells: dict[str, pd.DataFrame | None] = {
        "eu_agreement": _eu_agreement_spells(tables["eu_readmission_agreements"], part),
        "eu_nonbinding": _eu_nonbinding_spells(tables["eu_nonbinding_arrangements"], part, nonbinding_start),
    }
    bilateral_ok = "bilateral_frameworks" in tables and "bilateral_coverage" in tables
    dropped: dict[str, int] = {}
    if bilateral_ok:
        spells["bilateral_binding"], spells["bilateral_nonbinding"], dropped = _bilateral_spells(
            tables["bilateral_frameworks"], protocols_as_binding, nonbinding_start, binding_start, unknown_binding
        )
        cov = tables["bilateral_coverage"]
        researched_pairs = cov.loc[cov["researched"], ["geo", "citizen"]].assign(_r=True)
        researched = keys[["geo", "citizen"]].merge(researched_pairs, on=["geo", "citizen"], how="left")["_r"]
        researched = researched.notna().to_numpy(dtype=bool)
    else:
        logger.warning("bilateral tables not available: bilateral treatment columns are NaN (unknown)")
        spells["bilateral_binding"] = spells["bilateral_nonbinding"] = None
        researched = np.zeros(len(keys), dtype=bool)

    out = panel.copy()
    existing = [c for c in out.columns if c in _output_columns()]
    if existing:
        logger.info("replacing existing treatment columns %s", existing)
    for t in TREATMENT_TYPES:
        sp = spells[t]
        if sp is None:
            vals = pd.Series(np.nan, index=keys.index, dtype="float64")
            coh = pd.Series(pd.NA, index=keys.index, dtype="Int64")
        else:
            vals, coh = _code_type(keys, sp, rule)
            if t.startswith("bilateral") and unresearched_as_missing:
                vals = vals.where(researched, np.nan)
                coh = coh.where(researched, pd.NA)
        out[t] = vals.to_numpy(dtype="float64")
        out[f"{t}_cohort"] = coh.to_numpy()
        out[f"{t}_cohort"] = out[f"{t}_cohort"].astype("Int64")
        out[f"{t}_years_since"] = (keys["year"].astype("Int64") - coh).to_numpy()
        out[f"{t}_years_since"] = out[f"{t}_years_since"].astype("Int64")
    out["bilateral_researched"] = researched

    out.attrs = copy.deepcopy(panel.attrs)
    out.attrs["treatment_coding"] = {
        "rule": rule,
        "uk_in_eu_until": uk_year,
        "protocols_as_binding": bool(protocols_as_binding),
        "nonbinding_start": nonbinding_start,
        "binding_start": binding_start,
        "unknown_binding": unknown_binding,
        "unresearched_as_missing": bool(unresearched_as_missing),
        "switch_on": "entry into force (own nationals); later of accession/opt-in and entry into force",
        "bilateral_available": bilateral_ok,
        "bilateral_dropped": dropped,
        "agreements_dir": str(adir),
        "files": dict(hashes),
    }
    return out


def _output_columns() -> list[str]:
    cols = []
    for t in TREATMENT_TYPES:
        cols += [t, f"{t}_cohort", f"{t}_years_since"]
    return cols + ["bilateral_researched"]


def treatment_summary(panel_with_treatments: pd.DataFrame) -> pd.DataFrame:
    """Per treatment type: corridors and corridor-years treated, adoption cohorts, unknowns.

    Columns: ``corridors`` (distinct geo-citizen pairs in the panel), ``treated_corridors``
    (value > 0 in at least one panel year), ``treated_corridor_years`` (rows with value > 0),
    ``exposure`` (sum of values: corridor-years, fractional under the share rule),
    ``missing_corridor_years`` (NaN values), ``always_treated`` (cohort <= first panel year),
    ``unresearched_pairs`` (bilateral types only: pairs with ``bilateral_researched`` false),
    and one ``cohort_YYYY`` column per adoption year with the number of corridors in the panel.
    """
    p = panel_with_treatments
    needed = ["geo", "citizen", "year", "bilateral_researched"] + _output_columns()
    missing = [c for c in needed if c not in p.columns]
    if missing:
        raise KeyError(f"panel lacks treatment column(s) {missing}; run add_treatments first")
    pair = p["geo"].astype(str) + "-" + p["citizen"].astype(str)
    first_year = int(p["year"].min()) if len(p) else None
    researched_by_pair = p.groupby(pair)["bilateral_researched"].any()
    n_unresearched = int((~researched_by_pair).sum())
    rows = []
    cohort_counts: dict[str, pd.Series] = {}
    for t in TREATMENT_TYPES:
        v = p[t]
        treated = v.fillna(0) > 0
        coh = p[f"{t}_cohort"].groupby(pair).first().dropna().astype("int64")
        cohort_counts[t] = coh.value_counts().sort_index()
        rows.append(
            {
                "treatment": t,
                "corridors": int(pair.nunique()),
                "treated_corridors": int(pair[treated].nunique()),
                "treated_corridor_years": int(treated.sum()),
                "exposure": float(v.sum(skipna=True)),
                "missing_corridor_years": int(v.isna().sum()),
                "always_treated": int((coh <= first_year).sum()) if first_year is not None else 0,
                "unresearched_pairs": n_unresearched if t.startswith("bilateral") else pd.NA,
            }
        )
    out = pd.DataFrame(rows).set_index("treatment")
    out["unresearched_pairs"] = out["unresearched_pairs"].astype("Int64")
    years = sorted({int(y) for s in cohort_counts.values() for y in s.index})
    for y in years:
        out[f"cohort_{y}"] = pd.array([int(cohort_counts[t].get(y, 0)) for t in TREATMENT_TYPES], dtype="Int64")
    return out
