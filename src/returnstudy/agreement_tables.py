"""Reading and validating the curated treatment tables in ``data/agreements/``.

One job: turn the CSV files into typed frames and list every problem with file, row and
column. Turning the tables into corridor-year treatment columns is
:mod:`returnstudy.treatments`. The schema of each table is documented in
``data/agreements/README.md``:

* ``eu_readmission_agreements.csv`` -- the 18 EU readmission agreements,
* ``eu_participation.csv``          -- which EU+ states each EU-level instrument binds,
* ``eu_nonbinding_arrangements.csv`` -- EU-level non-binding readmission arrangements,
* ``visa_events.csv``               -- visa liberalisation / facilitation / Art. 25a events,
* ``corridor_events.csv``           -- events that change returns in many corridors at once
  (EU-Turkey Statement, accession of a reporting country),
* ``bilateral_frameworks.csv`` and ``bilateral_coverage.csv`` -- bilateral instruments of
  single EU+ states (legal form, binding force, scope, dates and spells) and which pairs were
  researched (optional).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .paths import project_data_dir
from .reuse import reused

logger = logging.getLogger(__name__)

__all__ = [
    "AgreementDataError",
    "LEGAL_FORMS",
    "BINDING_VALUES",
    "SCOPES",
    "START_BASES",
    "load_agreements",
    "check_agreements",
    "read_tables",
    "framework_start",
    "framework_periods",
    "instrument_kind",
    "is_binding_instrument",
    "start_basis_keyword",
    "named_start_date",
    "confirmed_start",
]

LEGAL_FORMS: tuple[str, ...] = (
    "agreement", "implementing_protocol", "mou", "arrangement", "exchange_of_letters", "unknown",
)
BINDING_VALUES: tuple[str, ...] = ("true", "false", "unknown")
SCOPES: tuple[str, ...] = ("own_nationals_and_tcn", "own_nationals", "tcn_only", "unknown")
START_BASES: tuple[str, ...] = ("in_force", "provisional", "signature", "in_force_unknown", "no_date")
"""Keyword opening ``start_basis``: which date the switch-on uses. ``in_force``: entry into
force; ``provisional``: provisional application (counts as in force); ``signature``: the
instrument applied from signature (the text after the colon must say why);
``in_force_unknown``: entry into force not found (the text says what was searched); ``no_date``."""
START_DATE_COLUMN: dict[str, str] = {"in_force": "in_force", "provisional": "provisional_from", "signature": "signed"}
"""The date column each ``start_basis`` keyword names as the instrument's start; ``in_force_unknown``
and ``no_date`` name none, so such a row has no start date that could be confirmed."""
VISA_EVENT_TYPES: tuple[str, ...] = (
    "visa_liberalisation",
    "visa_facilitation",
    "art25a_restrictive",
    "art25a_favourable",
)
CORRIDOR_EVENT_TYPES: tuple[str, ...] = ("eu_turkey_statement", "accession")
BINDS_VALUES: tuple[str, ...] = ("all", "opt_in", "none")
COVERAGE_RESULTS: tuple[str, ...] = ("agreement_found", "none_found")

# open-ended spells end here (inside the pandas Timestamp range)
OPEN_END = pd.Timestamp("2200-12-31")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BOOL_MAP = {"true": True, "false": False}
_BASIS = re.compile(r"^\s*([a-z_]+)\s*(?::\s*(.*))?$", re.S)


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
            "framework_id", "geo", "citizen", "name", "legal_form", "binding", "scope", "signed", "in_force",
            "provisional_from", "ended", "suspended_from", "suspended_until", "start_basis", "verified",
            "source_url", "notes",
        ),
        key=("framework_id",),
        date_cols=("signed", "in_force", "provisional_from", "ended", "suspended_from", "suspended_until"),
        required_nonempty=("framework_id", "geo", "citizen", "legal_form", "binding", "scope", "start_basis"),
        bool_cols=("verified",),
        citizen_cols=("citizen",),
        geo_cols=("geo",),
        enums={"legal_form": LEGAL_FORMS, "binding": BINDING_VALUES, "scope": SCOPES},
        optional=True,
    ),
    "corridor_events": _Spec(
        filename="corridor_events.csv",
        columns=("event_id", "event_type", "geo", "citizen", "start", "end", "source_url", "verified", "notes"),
        key=("event_id",),
        date_cols=("start", "end"),
        required_nonempty=("event_id", "event_type", "geo", "start"),
        bool_cols=("verified",),
        citizen_cols=("citizen",),
        geo_cols=("geo",),
        enums={"event_type": CORRIDOR_EVENT_TYPES},
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
        key = ["geo", "citizen", "legal_form", "name", "signed", "in_force"]
        dup = raw.duplicated(key, keep="first") & (raw["geo"] != "")
        for i in np.flatnonzero(dup.to_numpy()):
            problems.append(f"{_where(fname, i)}: duplicate framework for {raw['geo'].iat[i]}-{raw['citizen'].iat[i]}")
        problems += _framework_checks(raw, parsed)
    elif name == "corridor_events":
        early = (parsed["end"] < parsed["start"]).fillna(False).to_numpy(dtype=bool)
        for i in np.flatnonzero(early):
            problems.append(f"{_where(fname, i, 'end')}: {raw['end'].iat[i]} is before start {raw['start'].iat[i]}")
        statement = (raw["event_type"] == "eu_turkey_statement") & (raw["citizen"] == "")
        for i in np.flatnonzero(statement.to_numpy()):
            problems.append(f"{_where(fname, i, 'citizen')}: eu_turkey_statement rows name one citizenship each")
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


def _basis(raw: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Keyword and reason of ``start_basis`` ('in_force: entry into force in BGBl. ...')."""
    m = raw["start_basis"].astype(str).str.extract(_BASIS)
    return m[0].fillna(""), m[1].fillna("").str.strip()


def is_binding_instrument(fw: pd.DataFrame) -> pd.Series:
    """Legally binding: ``binding == true``; implementing protocols are treaties whatever the cell says."""
    return (fw["binding"].astype(str) == "true") | (fw["legal_form"] == "implementing_protocol")


def framework_start(
    fw: pd.DataFrame,
    binding_start: str = "in_force",
    nonbinding_start: str = "signed",
    binding: pd.Series | None = None,
) -> pd.Series:
    """Switch-on date of each bilateral instrument (NaT = not treated), from the parsed table.

    Binding instruments (``binding_start="in_force"``): the earlier of entry into force and
    provisional application (provisional application counts as in force); signature only where
    ``start_basis`` says the instrument applied from signature. ``"in_force_or_signed"`` falls
    back to signature for every binding instrument without an entry into force (the coding
    before 2026). Non-binding instruments: entry into force, else signature
    (``nonbinding_start="signed"``), or entry into force only (``"in_force"``). ``binding``:
    which rows follow the binding rule (default :func:`is_binding_instrument`).
    """
    keyword, _ = _basis(fw)
    in_force = fw[["in_force", "provisional_from"]].min(axis=1)
    binding = is_binding_instrument(fw) if binding is None else binding
    from_signature = keyword == "signature"
    if binding_start == "in_force":
        b = in_force.where(~from_signature, fw["signed"])
    elif binding_start == "in_force_or_signed":
        b = in_force.where(~from_signature, fw["signed"]).fillna(fw["signed"])
    else:
        raise ValueError(f"binding_start must be 'in_force' or 'in_force_or_signed', got {binding_start!r}")
    if nonbinding_start == "signed":
        nb = in_force.fillna(fw["signed"])
    elif nonbinding_start == "in_force":
        nb = in_force
    else:
        raise ValueError(f"nonbinding_start must be 'signed' or 'in_force', got {nonbinding_start!r}")
    return b.where(binding, nb)


def framework_periods(fw: pd.DataFrame, start: pd.Series) -> pd.DataFrame:
    """In-force periods of each instrument: [start, end] day ranges, inclusive.

    ``ended`` is the first day the instrument no longer applies; ``suspended_from`` the first
    day of a suspension and ``suspended_until`` its last day (empty: suspended until ended or
    to date). Columns: ``row`` (position in ``fw``), ``geo``, ``citizen``, ``start``, ``end``.
    """
    one_day = pd.Timedelta(days=1)
    last = (fw["ended"] - one_day).fillna(OPEN_END)
    susp_from, susp_until = fw["suspended_from"], fw["suspended_until"]
    base = pd.DataFrame({"row": np.arange(len(fw)), "geo": fw["geo"].to_numpy(), "citizen": fw["citizen"].to_numpy()})
    first = base.assign(start=start.to_numpy(), end=last.where(susp_from.isna(), susp_from - one_day).to_numpy())
    resumed = start.notna() & susp_from.notna() & susp_until.notna()
    resume = pd.concat([susp_until + one_day, start], axis=1).max(axis=1)  # never before the instrument's start
    second = base.loc[resumed.to_numpy()].assign(start=resume[resumed].to_numpy(), end=last[resumed].to_numpy())
    periods = pd.concat([first, second], ignore_index=True).dropna(subset=["start"])
    return periods.loc[periods["start"] <= periods["end"]].sort_values(["row", "start"]).reset_index(drop=True)


def instrument_kind(fw: pd.DataFrame) -> pd.Series:
    """Treatment type of each instrument under the default coding: ``bilateral_protocol``,
    ``bilateral_binding`` (binding instruments other than protocols) or ``bilateral_nonbinding``
    (binding false or unknown)."""
    kind = pd.Series("bilateral_nonbinding", index=fw.index, dtype=object)
    kind[is_binding_instrument(fw)] = "bilateral_binding"
    kind[fw["legal_form"] == "implementing_protocol"] = "bilateral_protocol"
    return kind


def _framework_checks(raw: pd.DataFrame, parsed: pd.DataFrame) -> list[str]:
    """Start basis, date order and spells of ``bilateral_frameworks.csv``."""
    fname = "bilateral_frameworks.csv"
    problems: list[str] = []
    keyword, reason = _basis(raw)
    binding = is_binding_instrument(raw)
    for i in np.flatnonzero((~keyword.isin(START_BASES) & (raw["start_basis"] != "")).to_numpy()):
        problems.append(f"{_where(fname, i, 'start_basis')}: {raw['start_basis'].iat[i]!r} does not open with one of "
                        f"{list(START_BASES)} followed by ': <reason>'")
    has = {c: raw[c] != "" for c in ("signed", "in_force", "provisional_from")}
    rules = [
        (binding & (keyword == "signature") & (reason == ""),
         "binding instrument starts at signature but start_basis does not say why (write 'signature: <why>')"),
        ((keyword == "signature") & ~has["signed"], "start_basis is signature but signed is empty"),
        ((keyword == "in_force") & ~has["in_force"], "start_basis is in_force but in_force is empty"),
        ((keyword == "provisional") & ~has["provisional_from"], "start_basis is provisional but provisional_from is empty"),
        (keyword.isin(["in_force_unknown", "no_date"]) & (has["in_force"] | has["provisional_from"]),
         "start_basis says the start is unknown but in_force or provisional_from is given"),
        ((keyword == "in_force_unknown") & (reason == ""),
         "in_force_unknown must say what was searched ('in_force_unknown: <sources searched>')"),
    ]
    for mask, what in rules:
        for i in np.flatnonzero(mask.to_numpy()):
            problems.append(f"{_where(fname, i, 'start_basis')}: {what}")
    order = [
        ("provisional_from", "signed", "provisional_from {a} is before signed {b}"),
        ("ended", "signed", "ended {a} is before signed {b}"),
        ("ended", "in_force", "ended {a} is before in_force {b}"),
        ("suspended_from", "signed", "suspended_from {a} is before signed {b}"),
        ("suspended_until", "suspended_from", "suspended_until {a} is before suspended_from {b}"),
        ("ended", "suspended_from", "ended {a} is before suspended_from {b}"),
    ]
    for col, ref, msg in order:
        bad = (parsed[col] < parsed[ref]).fillna(False).to_numpy(dtype=bool)
        for i in np.flatnonzero(bad):
            problems.append(f"{_where(fname, i, col)}: " + msg.format(a=raw[col].iat[i], b=raw[ref].iat[i]))
    orphan = (raw["suspended_until"] != "") & (raw["suspended_from"] == "")
    for i in np.flatnonzero(orphan.to_numpy()):
        problems.append(f"{_where(fname, i, 'suspended_until')}: given without suspended_from")
    # verified = the start date was seen in source_url: a row without a start date cannot be verified
    undated = parsed["verified"] & named_start_date(parsed).isna().to_numpy()
    for i in np.flatnonzero(undated):
        kw = keyword.iat[i]
        col = START_DATE_COLUMN.get(kw)
        why = f"'{col}' is empty" if col else f"start_basis '{kw or raw['start_basis'].iat[i]}' names no start date"
        problems.append(
            f"{_where(fname, i, 'verified')}: {raw['framework_id'].iat[i]} is verified=true but has no start date ({why}); "
            "verified means the start date was seen in source_url: set it to false and say in notes what was seen"
        )
    if problems:
        return problems
    problems += _overlap_checks(raw, parsed)
    return problems


def _overlap_checks(raw: pd.DataFrame, parsed: pd.DataFrame) -> list[str]:
    """Overlapping spells of one corridor and treatment type.

    Concurrent open-ended instruments (a police cooperation agreement beside a readmission
    agreement) code as the union of their periods and are allowed. What is rejected is an
    overlap in which one instrument switches off (``ended`` or ``suspended_from``) while another
    of the same corridor and type is in force: the switch-off would be silently masked, so the
    table must say which instrument governs (end or suspend the other one too, or correct the dates).
    """
    fname = "bilateral_frameworks.csv"
    problems: list[str] = []
    start = framework_start(parsed)
    periods = framework_periods(parsed, start)
    periods["kind"] = instrument_kind(parsed).to_numpy()[periods["row"].to_numpy()]
    switches_off = (parsed["ended"].notna() | parsed["suspended_from"].notna()).to_numpy()
    for (_, _, _), g in periods.groupby(["geo", "citizen", "kind"]):
        if g["row"].nunique() < 2 or not switches_off[g["row"].unique()].any():
            continue
        g = g.sort_values("start")
        rows, starts, ends = g["row"].to_numpy(), g["start"].to_numpy(), g["end"].to_numpy()
        for a in range(len(g)):
            for b in range(a + 1, len(g)):
                if rows[a] == rows[b] or starts[b] > ends[a]:
                    continue
                if not (switches_off[rows[a]] or switches_off[rows[b]]):
                    continue
                ia, ib = int(rows[a]), int(rows[b])
                problems.append(
                    f"{_where(fname, ib)}: spell of {raw['framework_id'].iat[ib]} overlaps "
                    f"{raw['framework_id'].iat[ia]} (row {ia + 1}) in {raw['geo'].iat[ib]}-{raw['citizen'].iat[ib]}, "
                    f"type {g['kind'].iat[0]}, and one of them ends or is suspended"
                )
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
    ev = tables.get("corridor_events")
    if part is not None and ev is not None:
        fname = _SPECS["corridor_events"].filename
        member_from = dict(zip(part["geo"], part["eu_member_from"]))
        for i, (etype, geo, start) in enumerate(zip(ev["event_type"], ev["geo"], ev["start"])):
            if etype != "accession":
                continue
            ref = member_from.get(geo, pd.NaT)
            if pd.isna(ref) or pd.isna(start) or ref != start:
                shown = "not a member" if pd.isna(ref) else ref.strftime("%Y-%m-%d")
                problems.append(f"{_where(fname, i, 'start')}: accession of {geo} differs from eu_participation.csv "
                                f"eu_member_from ({shown})")
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


def read_tables(
    agreements_dir: Path | None, codes_dir: Path | None = None
) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, str]]:
    """Read every table of ``agreements_dir``: (parsed tables, problems, sha256 per file).

    Inside a :func:`~returnstudy.reuse.reuse_prepared` block, files with the same content (the
    tables and the code lists, by sha256) are read and validated once; each caller gets its own copy.
    """
    adir = Path(agreements_dir) if agreements_dir is not None else _default_agreements_dir()
    cdir = Path(codes_dir) if codes_dir is not None else _default_codes_dir()
    files = [adir / spec.filename for spec in _SPECS.values()] + [cdir / "citizenships.csv",
                                                                  cdir / "reporting_countries.csv"]
    # the paths as given appear in the tables' attrs and in messages
    key = (str(adir), str(cdir), *((str(p.resolve()), _sha256(p) if p.is_file() else None) for p in files))
    return reused("agreement tables", key, lambda: _read_tables(adir, cdir), copy=copy.deepcopy)


def _read_tables(adir: Path, cdir: Path) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, str]]:
    citizens, geos, reporting = _load_codes(cdir)
    tables: dict[str, pd.DataFrame] = {}
    problems: list[str] = []
    hashes: dict[str, str] = {}
    for name, spec in _SPECS.items():
        path = adir / spec.filename
        if not path.is_file():
            if spec.optional:
                logger.warning("%s not found in %s: its columns will be unknown (NaN)", spec.filename, adir)
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
    tables, problems, _ = read_tables(agreements_dir, codes_dir)
    if problems:
        raise AgreementDataError(problems)
    return tables


def check_agreements(agreements_dir: Path | None = None, codes_dir: Path | None = None) -> list[str]:
    """Validate the treatment tables; return the list of problems (empty = all fine)."""
    try:
        _, problems, _ = read_tables(agreements_dir, codes_dir)
    except (FileNotFoundError, KeyError) as exc:
        return [str(exc)]
    return problems




def start_basis_keyword(fw: pd.DataFrame) -> pd.Series:
    """The keyword opening each row's ``start_basis`` (one of :data:`START_BASES`, or '')."""
    return _basis(fw)[0]


def named_start_date(fw: pd.DataFrame) -> pd.Series:
    """The start date each row's ``start_basis`` names (see :data:`START_DATE_COLUMN`), from the
    parsed table; NaT where the keyword names no date (``in_force_unknown``, ``no_date``) or the
    named column is empty."""
    keyword = start_basis_keyword(fw)
    out = pd.Series(pd.NaT, index=fw.index, dtype="datetime64[ns]")
    for kw, col in START_DATE_COLUMN.items():
        hit = (keyword == kw).to_numpy()
        out[hit] = pd.to_datetime(fw.loc[hit, col])
    return out


def confirmed_start(fw: pd.DataFrame) -> pd.Series:
    """True where the row rests on a confirmed start date: ``verified`` and the date its
    ``start_basis`` names present (the validator rejects ``verified`` without that date, so on a
    loaded table this equals ``verified``)."""
    verified = fw["verified"].astype(str).str.strip().str.lower().isin(["true", "1"])
    return verified & named_start_date(fw).notna()
