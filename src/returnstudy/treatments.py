"""Treatment coding: which corridor (EU+ country x citizenship) is covered by which
readmission framework in which year.

The tables are read and validated by :mod:`returnstudy.agreement_tables` (schema in
``data/agreements/README.md``); this module turns them into corridor-year columns.
:func:`add_treatments` adds, for each type ``T`` in :data:`TREATMENT_TYPES` and each event
in :data:`EVENT_TREATMENTS`, the columns ``T`` (float64: 0/1 in force in that calendar year,
or the share of the year in force), ``T_cohort`` (Int64: first calendar year treated under
the rule) and ``T_years_since`` (Int64: year - cohort); for the EU types also
``T_via_accession`` (bool: the corridor switches on only because its reporting country joined
the EU); and ``bilateral_researched``. :func:`coverage_shares` measures how much of the
sample the bilateral research covers.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .agreement_tables import (
    OPEN_END,
    AgreementDataError,
    check_agreements,
    confirmed_start,
    framework_periods,
    framework_start,
    load_agreements,
    read_tables,
    start_basis_keyword,
)
from .paths import project_data_dir
from .provenance import freeze_attrs
from .reuse import reused

logger = logging.getLogger(__name__)

__all__ = [
    "TREATMENT_TYPES",
    "EVENT_TREATMENTS",
    "RULES",
    "ACCESSION_CHOICES",
    "AgreementDataError",
    "load_agreements",
    "check_agreements",
    "add_treatments",
    "treatment_summary",
    "coverage_shares",
    "start_date_summary",
    "nonabsorbing_corridors",
]

TREATMENT_TYPES: tuple[str, ...] = (
    "eu_agreement",
    "eu_nonbinding",
    "bilateral_binding",
    "bilateral_protocol",
    "bilateral_nonbinding",
)
"""``bilateral_binding``: legally binding bilateral instruments other than implementing
protocols (readmission agreements, binding exchanges of letters, police cooperation treaties);
``bilateral_protocol``: bilateral implementing protocols to EU readmission agreements."""
EVENT_TREATMENTS: tuple[str, ...] = ("eu_turkey_statement",)
"""Events of ``corridor_events.csv`` coded like treatments (usable as controls)."""
EU_TYPES: tuple[str, ...] = ("eu_agreement", "eu_nonbinding")
BILATERAL_TREATMENTS: tuple[str, ...] = ("bilateral_binding", "bilateral_protocol", "bilateral_nonbinding")
RULES: tuple[str, ...] = ("calendar_year", "first_full_year", "share_of_year")
ACCESSION_CHOICES: tuple[str, ...] = ("already_treated", "drop", "switch")

Rule = Literal["calendar_year", "first_full_year", "share_of_year"]


def _default_agreements_dir() -> Path:
    return project_data_dir() / "agreements"


# --------------------------------------------------------------------------- spells


def _participation_frame(part: pd.DataFrame, uk_in_eu_until: int) -> pd.DataFrame:
    """Per geo: binding rule, first and last date bound (UK end from ``uk_in_eu_until``)."""
    p = part[["geo", "binds_eu_agreements", "covered_by_eu_nonbinding", "eu_member_from"]].copy()
    end = part["bound_until"].fillna(part["eu_member_to"])
    end = end.where(part["geo"] != "UK", pd.Timestamp(year=int(uk_in_eu_until), month=12, day=31))
    p["member_end"] = end.fillna(OPEN_END)
    return p


def _eu_agreement_spells(agr: pd.DataFrame, part: pd.DataFrame) -> pd.DataFrame:
    """Spells (geo, citizen, start, end) of the EU agreements, with ``own_start``: the date the
    corridor would switch on had its reporting country been a member all along (entry into
    force, or the opt-in date) and ``accession``: the date of EU membership."""
    pairs = agr.merge(part.loc[part["binds_eu_agreements"] != "none"], how="cross")
    own = pairs["in_force"].copy()
    keep = pd.Series(True, index=pairs.index)
    opt = pairs["binds_eu_agreements"] == "opt_in"
    for geo in pairs.loc[opt, "geo"].unique():
        rows = opt & (pairs["geo"] == geo)
        keep &= ~rows | pairs[f"{geo.lower()}_opt_in"].astype(bool)
        bound_col = f"{geo.lower()}_bound_from"
        if bound_col in pairs.columns:
            own = own.where(~rows, pairs[["in_force", bound_col]].max(axis=1))
    start = pd.concat([own, pairs["eu_member_from"]], axis=1).max(axis=1)
    spells = pd.DataFrame({"geo": pairs["geo"], "citizen": pairs["citizen"], "start": start, "end": pairs["member_end"],
                           "own_start": own, "accession": pairs["eu_member_from"]})
    return spells.loc[keep & (spells["start"] <= spells["end"])]


def _eu_nonbinding_spells(arr: pd.DataFrame, part: pd.DataFrame, nonbinding_start: str) -> pd.DataFrame:
    start0 = arr["in_force"]
    if nonbinding_start == "signed":
        start0 = start0.fillna(arr["signed"])
    a = arr.assign(_start0=start0).loc[start0.notna()]
    pairs = a.merge(part.loc[part["covered_by_eu_nonbinding"]], how="cross")
    start = pairs[["_start0", "eu_member_from"]].max(axis=1)
    spells = pd.DataFrame({"geo": pairs["geo"], "citizen": pairs["citizen"], "start": start, "end": pairs["member_end"],
                           "own_start": pairs["_start0"], "accession": pairs["eu_member_from"]})
    return spells.loc[spells["start"] <= spells["end"]]


def _via_accession(spells: pd.DataFrame) -> pd.DataFrame:
    """Corridors whose first switch-on is the reporting country's accession (geo, citizen,
    own_first, accession): without accession they would have been treated earlier."""
    g = spells.groupby(["geo", "citizen"], as_index=False).agg(
        first=("start", "min"), own_first=("own_start", "min"), accession=("accession", "min"))
    return g.loc[g["own_first"] < g["first"], ["geo", "citizen", "own_first", "accession"]].reset_index(drop=True)


def _bilateral_spells(
    fw: pd.DataFrame,
    protocols_as_binding: bool,
    nonbinding_start: str,
    binding_start: str,
    unknown_binding: str,
) -> tuple[dict[str, pd.DataFrame], dict[str, int], dict[str, pd.DataFrame]]:
    """Spells (geo, citizen, start, end) of each bilateral treatment type, counts per rule, and the
    spells from signature of signed instruments whose start is unknown.

    Binding force: ``binding`` true, implementing protocols always; ``binding`` unknown follows
    the legal form (``unknown_binding="by_type"``: agreements and exchanges of letters binding,
    MoUs, arrangements and unknown forms non-binding) or is left out (``"drop"``).
    Implementing protocols are ``bilateral_protocol`` (or ``bilateral_binding`` with
    ``protocols_as_binding``); other binding instruments ``bilateral_binding``; the rest
    ``bilateral_nonbinding``. ``scope = tcn_only`` instruments are left out: they do not cover
    the partner's own nationals, whom the corridor counts. Start dates: :func:`framework_start`;
    ends and suspensions: :func:`framework_periods`.
    """
    protocol = fw["legal_form"] == "implementing_protocol"
    unknown = (fw["binding"] == "unknown") & ~protocol
    binding = (fw["binding"] == "true") | protocol
    if unknown_binding == "by_type":
        binding |= unknown & fw["legal_form"].isin(["agreement", "exchange_of_letters"])
    tcn_only = fw["scope"] == "tcn_only"
    keep = ~tcn_only & ~(unknown & (unknown_binding == "drop"))
    start = framework_start(fw, binding_start, nonbinding_start, binding=binding)
    kind = pd.Series("bilateral_nonbinding", index=fw.index, dtype=object)
    kind[binding] = "bilateral_binding"
    kind[protocol] = "bilateral_binding" if protocols_as_binding else "bilateral_protocol"
    in_force = fw[["in_force", "provisional_from"]].min(axis=1)
    keyword = start_basis_keyword(fw)
    counts = {
        "binding_started_at_signature": int((keep & binding & start.notna() & (start == fw["signed"])
                                             & (in_force.isna() | (keyword == "signature"))).sum()),
        "binding_started_at_provisional_application": int(
            (keep & binding & fw["provisional_from"].notna() & (start == fw["provisional_from"])).sum()),
        "binding_without_start": int((keep & binding & start.isna()).sum()),
        "nonbinding_without_start": int((keep & ~binding & start.isna()).sum()),
        "tcn_only_excluded": int(tcn_only.sum()),
        "unknown_binding_excluded": int((unknown & (unknown_binding == "drop")).sum()),
        "scope_unknown_coded": int((keep & start.notna() & (fw["scope"] == "unknown")).sum()),
        "with_end_or_suspension": int((keep & (fw["ended"].notna() | fw["suspended_from"].notna())).sum()),
        "protocols_as_binding": int(protocol.sum()) if protocols_as_binding else 0,
    }
    for what, n in counts.items():
        if n:
            logger.info("bilateral frameworks: %s = %d", what, n)
    periods = framework_periods(fw, start.where(keep))
    periods["kind"] = kind.to_numpy()[periods["row"].to_numpy()]
    spells = {t: periods.loc[periods["kind"] == t, ["geo", "citizen", "start", "end"]].reset_index(drop=True)
              for t in BILATERAL_TREATMENTS}
    # signed instruments whose start is unknown: from signature on, the corridor may be treated
    unknown = framework_periods(fw, fw["signed"].where(keep & start.isna()))
    unknown["kind"] = kind.to_numpy()[unknown["row"].to_numpy()]
    unknown_spells = {t: unknown.loc[unknown["kind"] == t, ["geo", "citizen", "start", "end"]].reset_index(drop=True)
                      for t in BILATERAL_TREATMENTS}
    return spells, counts, unknown_spells


def _event_spells(events: pd.DataFrame, event_type: str) -> pd.DataFrame:
    """Spells of one corridor-event type; ``end`` is the last day in effect (empty: open)."""
    e = events.loc[(events["event_type"] == event_type) & (events["citizen"] != "")]
    return pd.DataFrame({"geo": e["geo"], "citizen": e["citizen"], "start": e["start"],
                         "end": e["end"].fillna(OPEN_END)}).reset_index(drop=True)



# --------------------------------------------------------------------------- coding

_DAY_NS = 86_400 * 10**9


class _PanelKeys:
    """The panel's corridor-years by position: integer corridor code and year index per row.

    Corridors are the distinct (geo, citizen) pairs of the panel; spells are mapped onto them
    with :meth:`lookup`, so coding is array indexing instead of joins on text keys. Inside a
    :func:`~returnstudy.reuse.reuse_prepared` block the keys of a panel are built once
    (:func:`_panel_keys`) and remember, per table of the block's prepared spells, its corridor
    codes and merged spells (:meth:`corridors_of`, :meth:`merged`): a report codes the same panel
    under many choices.
    """

    def __init__(self, geo: np.ndarray | pd.Series, citizen: np.ndarray | pd.Series, year: np.ndarray) -> None:
        self.index = pd.RangeIndex(len(year))
        g, geos = pd.factorize(geo)
        c, citizens = pd.factorize(citizen)
        self.geos, self._citizens = pd.Index(np.asarray(geos, dtype=object)), pd.Index(np.asarray(citizens, dtype=object))
        pair = g.astype(np.int64) * len(self._citizens) + c
        self._pairs, code = np.unique(pair, return_inverse=True)
        self.code = code.astype(np.intp)
        self.year = np.asarray(year, dtype=np.int64)
        self.years, self.year_pos = np.unique(self.year, return_inverse=True)
        y = self.years
        leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
        self.days_in_year = np.where(leap, 366, 365)
        self.jan1 = (y - 1970).astype("datetime64[Y]").astype("datetime64[ns]").view(np.int64)
        self.dec31 = (y - 1969).astype("datetime64[Y]").astype("datetime64[ns]").view(np.int64) - _DAY_NS
        self.order = np.lexsort((self.year, self.code))  # rows by corridor, then year
        # per prepared table (by id, the table held with its value so that the id is not reused):
        # corridor codes of its rows, and merged spells
        self._codes_of: dict[int, tuple[pd.DataFrame, np.ndarray]] = {}
        self._merged: dict[int, tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    def corridors_of(self, table: pd.DataFrame) -> np.ndarray:
        """:meth:`lookup` of ``table``'s geo and citizen columns, kept for the table (one of the
        prepared spells' tables: read-only for as long as these keys live)."""
        held = self._codes_of.get(id(table))
        if held is None or held[0] is not table:
            held = self._codes_of[id(table)] = (table, self.lookup(table["geo"], table["citizen"]))
        return held[1]

    def merged(self, spells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`_merged_spells` of a prepared spells table, kept for the table."""
        held = self._merged.get(id(spells))
        if held is None or held[0] is not spells:
            held = self._merged[id(spells)] = (spells, _merged_spells(self, spells, self.corridors_of(spells)))
        return held[1]

    def __len__(self) -> int:
        return len(self.year)

    @property
    def n_corridors(self) -> int:
        return len(self._pairs)

    def duplicated(self) -> bool:
        """Whether some (geo, citizen, year) occurs twice."""
        cell = self.code.astype(np.int64) * len(self.years) + self.year_pos
        return bool(len(cell)) and int(np.bincount(cell).max()) > 1

    def lookup(self, geo: pd.Series, citizen: pd.Series) -> np.ndarray:
        """Corridor code of each (geo, citizen), -1 where the pair is not in the panel."""
        g = self.geos.get_indexer(pd.Index(np.asarray(geo, dtype=object)))
        c = self._citizens.get_indexer(pd.Index(np.asarray(citizen, dtype=object)))
        pair = g.astype(np.int64) * len(self._citizens) + c
        if not len(self._pairs):
            return np.full(len(pair), -1, dtype=np.intp)
        pos = np.searchsorted(self._pairs, pair).clip(max=len(self._pairs) - 1)
        found = (g >= 0) & (c >= 0) & (self._pairs[pos] == pair)
        return np.where(found, pos, -1)

    def per_row(self, by_corridor: np.ndarray) -> np.ndarray:
        return by_corridor[self.code]


def _panel_keys(panel: pd.DataFrame) -> _PanelKeys:
    """The :class:`_PanelKeys` of ``panel``'s geo, citizen and year columns: built once per panel
    inside a :func:`~returnstudy.reuse.reuse_prepared` block (where panels are not changed in place;
    the panel is held with its keys, so that its id is not reused), afresh outside one."""
    def build() -> tuple[pd.DataFrame, _PanelKeys]:
        return panel, _PanelKeys(_as_text(panel["geo"]), _as_text(panel["citizen"]), panel["year"].to_numpy(dtype="int64"))

    held, keys = reused("panel keys", id(panel), build)
    return keys if held is panel else build()[1]


def _ns(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _merged_spells(keys: _PanelKeys, spells: pd.DataFrame, code: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of the [start, end] intervals of each panel corridor (touching intervals joined):
    arrays (corridor code, start, end) in ns, sorted by corridor and start. ``code``: the spells'
    corridor codes if known (:meth:`_PanelKeys.lookup`)."""
    if code is None:
        code = keys.lookup(spells["geo"], spells["citizen"])
    start, end = _ns(spells["start"]), _ns(spells["end"])
    ok = (code >= 0) & (start != np.iinfo(np.int64).min)
    code, start, end = code[ok], start[ok], end[ok]
    if not len(code):
        return code, start, end
    order = np.lexsort((end, start, code))
    code, start, end = code[order], start[order], end[order]
    running_end = pd.Series(end).groupby(code).cummax().to_numpy()
    first = np.r_[True, code[1:] != code[:-1]]
    prev_end = np.r_[0, running_end[:-1]]
    new = first | (start > prev_end + _DAY_NS)
    at = np.flatnonzero(new)
    return code[at], start[at], np.maximum.reduceat(end, at)


def _coverage(keys: _PanelKeys, merged: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Days in force in each panel row's calendar year (int64, aligned with the rows)."""
    code, start, end = merged
    covered = np.zeros((keys.n_corridors, len(keys.years)), dtype=np.int64)
    if len(code):
        lo = np.maximum(start[:, None], keys.jan1[None, :])
        hi = np.minimum(end[:, None], keys.dec31[None, :])
        days = ((hi - lo) // _DAY_NS + 1).clip(min=0)
        np.add.at(covered, code, days)
    return covered[keys.code, keys.year_pos]


def _year_values(keys: _PanelKeys, merged: tuple[np.ndarray, np.ndarray, np.ndarray], rule: str) -> pd.Series:
    """Treatment value of each panel row under ``rule`` from the corridors' merged spells."""
    covered = _coverage(keys, merged)
    days_in_year = keys.days_in_year[keys.year_pos]
    if rule == "calendar_year":
        vals = (covered > 0).astype("float64")
    elif rule == "first_full_year":
        vals = (covered >= days_in_year).astype("float64")
    else:
        vals = np.minimum(covered / days_in_year, 1.0)
    return pd.Series(vals, index=keys.index, dtype="float64")


def _cohorts(keys: _PanelKeys, merged: tuple[np.ndarray, np.ndarray, np.ndarray], rule: str) -> pd.Series:
    """First calendar year treated under ``rule`` of each panel row's corridor (Int64, NA if
    never), from the dates: it can precede the panel's first year."""
    code, start, end = merged
    first_by_corridor = np.full(keys.n_corridors, np.iinfo(np.int64).max, dtype=np.int64)
    if len(code):
        day = start.view("datetime64[ns]").astype("datetime64[D]")
        year = day.astype("datetime64[Y]").astype(np.int64) + 1970
        if rule == "first_full_year":
            jan1 = day == (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
            first = year + (~jan1).astype(np.int64)
            dec31 = (first - 1969).astype("datetime64[Y]").astype("datetime64[ns]").view(np.int64) - _DAY_NS
            ok = dec31 <= end
            code, first = code[ok], first[ok]
        else:
            first = year
        np.minimum.at(first_by_corridor, code, first)
    per_row = keys.per_row(first_by_corridor)
    never = per_row == np.iinfo(np.int64).max
    return pd.Series(pd.arrays.IntegerArray(np.where(never, 0, per_row), never), index=keys.index, dtype="Int64")


def _code_type(keys: _PanelKeys, spells: pd.DataFrame, rule: str, code: np.ndarray | None = None,
               prepared: bool = False) -> tuple[pd.Series, pd.Series]:
    """Values and cohorts of one treatment type on the panel's rows (``code``: the spells' corridor
    codes if known; ``prepared``: ``spells`` is a prepared table, see :meth:`_PanelKeys.merged`)."""
    merged = keys.merged(spells) if prepared else _merged_spells(keys, spells, code)
    return _year_values(keys, merged, rule), _cohorts(keys, merged, rule)


# --------------------------------------------------------------------------- add_treatments


def _accession_adjust(
    keys: _PanelKeys, spells: pd.DataFrame, via: pd.DataFrame, rule: str, accession: str
) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """Values and cohorts of an EU type under the ``accession`` choice, and the row mask of
    corridors switching on only through accession (``via``: :func:`_via_accession` of the spells)."""
    via_code = keys.corridors_of(via)
    via_corridor = np.zeros(keys.n_corridors, dtype=bool)
    via_corridor[via_code[via_code >= 0]] = True
    is_via = keys.per_row(via_corridor)
    if accession == "switch" or via.empty:
        vals, coh = _code_type(keys, spells, rule, prepared=True)
        return vals, coh, is_via
    if accession == "drop":
        vals, coh = _code_type(keys, spells, rule, prepared=True)
        return vals.where(~is_via, np.nan), coh.where(~is_via, pd.NA), is_via
    # already_treated: treated from the accession year on, cohort = the year the corridor would
    # have switched on as a member; years before accession are not EU+ years of this country (NaN)
    s = spells.reset_index(drop=True)
    s_code = keys.corridors_of(spells)  # the same rows in the same order
    s_via = pd.Series((s_code >= 0) & via_corridor[s_code.clip(min=0)], index=s.index)
    jan1 = s["start"].dt.to_period("Y").dt.start_time
    value_spells = s.assign(start=s["start"].where(~s_via, pd.concat([s["own_start"], jan1], axis=1).max(axis=1)))
    vals, _ = _code_type(keys, value_spells, rule, s_code)
    _, coh = _code_type(keys, s.assign(start=s["own_start"].where(s_via, s["start"])), rule, s_code)
    acc_by_corridor = np.full(keys.n_corridors, -1, dtype=np.int64)
    found = via_code >= 0
    acc_by_corridor[via_code[found]] = via["accession"].dt.year.fillna(-1).to_numpy(dtype=np.int64)[found]
    before = is_via & (keys.year < keys.per_row(acc_by_corridor))
    return vals.where(~before, np.nan), coh, is_via


def _falling_corridors(code: np.ndarray, year: np.ndarray, values: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Codes of the corridors whose (non-NaN) value falls from one year to a later one
    (``order``: the rows sorted by corridor, then year, if known)."""
    if order is None:
        order = np.lexsort((year, code))
    v = values[order]
    ok = ~np.isnan(v)
    code, v = code[order][ok], v[ok]
    if not len(code):
        return code
    if ((v == 0) | (v == 1)).all():
        rank, n_ranks = v.astype(np.int64), 2
    else:
        _, rank = np.unique(v, return_inverse=True)
        n_ranks = int(rank.max()) + 1
    # (corridor, value rank) as one integer: within a corridor the running maximum is that of the
    # ranks, and a later corridor's keys exceed every key of an earlier one
    key = code.astype(np.int64) * n_ranks + rank
    return np.unique(code[key < np.maximum.accumulate(key)])


def _as_text(s: pd.Series) -> pd.Series | np.ndarray:
    """Codes as text (a string column as it is, anything else through ``astype(str)``)."""
    if pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s) and not s.hasnans:
        return s
    return s.astype(str).to_numpy()


@dataclass(frozen=True)
class _CodingSpells:
    """Everything of a coding that does not depend on the panel: the spells of each type (None:
    table not available), the spells from signature of instruments with unknown start, counts,
    the researched pairs, the participating geos and the tables' hashes. Read-only."""

    problems: tuple[str, ...]
    hashes: Mapping[str, str] = field(default_factory=dict)
    spells: Mapping[str, pd.DataFrame | None] = field(default_factory=dict)
    unknown_spells: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    dropped: Mapping[str, int] = field(default_factory=dict)
    researched_pairs: pd.DataFrame | None = None
    via_accession: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    participation_geos: frozenset[str] = frozenset()
    bilateral_ok: bool = False
    events_available: bool = False


def _coding_spells(
    adir: Path, codes_dir: Path | None, uk_year: int, protocols_as_binding: bool, nonbinding_start: str,
    binding_start: str, unknown_binding: str,
) -> _CodingSpells:
    """Read the agreement tables (once per :func:`~returnstudy.reuse.reuse_prepared` block) and
    turn them into spells under the coding options that act on the tables."""
    tables, problems, hashes = read_tables(adir, codes_dir)
    if problems:
        return _CodingSpells(problems=tuple(problems))
    part = _participation_frame(tables["eu_participation"], uk_year)
    spells: dict[str, pd.DataFrame | None] = {
        "eu_agreement": _eu_agreement_spells(tables["eu_readmission_agreements"], part),
        "eu_nonbinding": _eu_nonbinding_spells(tables["eu_nonbinding_arrangements"], part, nonbinding_start),
    }
    bilateral_ok = "bilateral_frameworks" in tables and "bilateral_coverage" in tables
    dropped: dict[str, int] = {}
    unknown_spells: dict[str, pd.DataFrame] = {}
    researched_pairs = None
    if bilateral_ok:
        bil, dropped, unknown_spells = _bilateral_spells(
            tables["bilateral_frameworks"], protocols_as_binding, nonbinding_start, binding_start, unknown_binding
        )
        spells.update(bil)
        cov = tables["bilateral_coverage"]
        researched_pairs = cov.loc[cov["researched"], ["geo", "citizen"]].reset_index(drop=True)
    else:
        spells.update({t: None for t in BILATERAL_TREATMENTS})
    events = tables.get("corridor_events")
    for ev in EVENT_TREATMENTS:
        spells[ev] = None if events is None else _event_spells(events, ev)
    return _CodingSpells(problems=(), hashes=dict(hashes), spells=spells, unknown_spells=unknown_spells, dropped=dropped,
                         researched_pairs=researched_pairs, via_accession={t: _via_accession(spells[t]) for t in EU_TYPES},
                         participation_geos=frozenset(part["geo"]),
                         bilateral_ok=bilateral_ok, events_available=events is not None)


def add_treatments(
    panel: pd.DataFrame,
    rule: Rule = "calendar_year",
    agreements_dir: Path | None = None,
    uk_in_eu_until: int = 2020,
    protocols_as_binding: bool = False,
    nonbinding_start: Literal["signed", "in_force"] = "signed",
    unresearched_as_missing: bool = False,
    codes_dir: Path | None = None,
    binding_start: Literal["in_force", "in_force_or_signed"] = "in_force",
    unknown_binding: Literal["by_type", "drop"] = "by_type",
    accession: Literal["already_treated", "drop", "switch"] = "already_treated",
    unknown_start: Literal["untreated", "missing"] = "untreated",
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
        Bilateral implementing protocols to EU agreements are their own type
        ``bilateral_protocol`` (default); ``True`` codes them as ``bilateral_binding`` (the
        coding before 2026; ``bilateral_protocol`` is then 0 everywhere).
    binding_start
        Binding bilateral instruments start at entry into force or provisional application,
        whichever is earlier; at signature only where ``start_basis`` says the instrument applied
        from signature (``"in_force"``, default). Without either they are not treated (counted
        in ``attrs["treatment_coding"]["bilateral_dropped"]["binding_without_start"]``).
        ``"in_force_or_signed"`` starts every binding instrument without an entry into force
        at signature (the coding before 2026; it switches ratified instruments on years early).
    unknown_start
        Corridor-years from the signature of an instrument whose start is unknown (no entry into
        force found) are coded untreated (``"untreated"``, default) or NaN (``"missing"``: the
        corridor may already be treated, so it is kept out of the comparison group; models drop
        those rows, counted in ``attrs["treatment_coding"]["unknown_start_missing"]``).
    nonbinding_start
        Non-binding instruments without an entry-into-force date start at signature
        (``"signed"``, default) or are left untreated (``"in_force"``).
    unknown_binding
        Instruments whose binding force is ``unknown`` follow their legal form (``"by_type"``:
        agreements and exchanges of letters binding, the rest non-binding) or are left out
        (``"drop"``).
    accession
        Corridors whose EU agreement or EU non-binding arrangement switches on only because
        the reporting country joined the EU (e.g. Croatia, 2013-07-01) are marked in
        ``<type>_via_accession``. ``"already_treated"`` (default): they count as treated from
        the accession year on, with the cohort of the year they would have switched on as a
        member (so they carry no switch-on: under corridor fixed effects they do not identify the
        effect, and event studies see them as already treated); their years before accession are
        NaN. ``"drop"``: their values are NaN (models drop them, counted). ``"switch"``: the
        switch-on at accession counts like any other.
    unresearched_as_missing
        Code bilateral values of pairs not researched in ``bilateral_coverage.csv`` as NaN
        instead of 0 (which is the default: no known framework = untreated).

    EU agreements bind a geo as listed in ``eu_participation.csv``: Denmark, Norway,
    Switzerland, Iceland, Liechtenstein never; Ireland and the UK only where opted in (Ireland
    from ``ie_bound_from``); later members from accession. The switch-on date is entry into
    force (readmission of own nationals), not the deferred third-country-national clause. EU
    non-binding arrangements cover all EU members but not non-EU Schengen states. Bilateral
    instruments with ``scope = tcn_only`` are not coded (they do not cover the partner's own
    nationals); ended or suspended instruments switch off (the treatment is then not
    absorbing: see :func:`nonabsorbing_corridors`; the count per type is in
    ``attrs["treatment_coding"]["nonabsorbing_corridors"]``). Cohort = first calendar year with
    value > 0 under the rule, computed from the dates (it can precede the panel's first year);
    ``years_since`` = year - cohort. A missing optional table (bilateral pair, corridor events)
    gives NaN columns and a warning.
    """
    choices = {
        "rule": (rule, RULES),
        "binding_start": (binding_start, ("in_force", "in_force_or_signed")),
        "unknown_binding": (unknown_binding, ("by_type", "drop")),
        "nonbinding_start": (nonbinding_start, ("signed", "in_force")),
        "accession": (accession, ACCESSION_CHOICES),
        "unknown_start": (unknown_start, ("untreated", "missing")),
    }
    for arg, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{arg} must be one of {list(allowed)}, got {value!r}")
    try:
        uk_year = int(uk_in_eu_until)
    except (TypeError, ValueError):
        raise ValueError(f"uk_in_eu_until must be a year (int), got {uk_in_eu_until!r}") from None
    missing = [c for c in ("geo", "citizen", "year") if c not in panel.columns]
    if missing:
        raise KeyError(f"panel is missing column(s) {missing}")
    if not pd.api.types.is_integer_dtype(panel["year"]):
        raise ValueError(f"panel column 'year' must be integer, got dtype {panel['year'].dtype}")

    # positional keys: results are written back by position, whatever the panel's index
    keys = _panel_keys(panel)
    if keys.duplicated():
        raise ValueError("panel has duplicate (geo, citizen, year) rows")

    adir = Path(agreements_dir) if agreements_dir is not None else _default_agreements_dir()
    prepared = reused(
        "treatment spells",
        (str(adir), str(codes_dir), uk_year, bool(protocols_as_binding), nonbinding_start, binding_start, unknown_binding),
        lambda: _coding_spells(adir, codes_dir, uk_year, bool(protocols_as_binding), nonbinding_start, binding_start,
                               unknown_binding),
    )
    if prepared.problems:
        raise AgreementDataError(list(prepared.problems))
    spells, unknown_spells, dropped, hashes = prepared.spells, prepared.unknown_spells, prepared.dropped, prepared.hashes
    bilateral_ok = prepared.bilateral_ok

    unknown_geo = sorted(set(keys.geos) - prepared.participation_geos)
    if unknown_geo:
        from returnstudy.data.codes import aggregate_codes

        known_aggregates = aggregate_codes()
        aggregates = [g for g in unknown_geo if g in known_aggregates]
        others = [g for g in unknown_geo if g not in aggregates]
        if aggregates:
            logger.info("aggregate geo %s: coded as not bound by EU-level instruments", aggregates)
        if others:
            logger.warning("geo %s not in eu_participation.csv: coded as not bound by EU-level instruments", others)
    if bilateral_ok:
        researched_by_corridor = np.zeros(keys.n_corridors, dtype=bool)
        found = keys.corridors_of(prepared.researched_pairs)
        researched_by_corridor[found[found >= 0]] = True
        researched = keys.per_row(researched_by_corridor)
    else:
        logger.warning("bilateral tables not available: bilateral treatment columns are NaN (unknown)")
        researched = np.zeros(len(keys), dtype=bool)
    if not prepared.events_available:
        logger.warning("corridor_events.csv not available: event columns %s are NaN", list(EVENT_TREATMENTS))

    existing = [c for c in panel.columns if c in _output_columns()]
    if existing:
        logger.info("replacing existing treatment columns %s", existing)
    via_counts: dict[str, int] = {}
    missing_counts: dict[str, int] = {}
    nonabsorbing: dict[str, int] = {}
    columns: dict[str, np.ndarray | pd.api.extensions.ExtensionArray] = {}  # in the order they are added
    year = pd.array(keys.year, dtype="Int64")
    for t in TREATMENT_TYPES + EVENT_TREATMENTS:
        sp = spells[t]
        if sp is None:
            vals = pd.Series(np.nan, index=keys.index, dtype="float64")
            coh = pd.Series(pd.NA, index=keys.index, dtype="Int64")
        elif t in EU_TYPES:
            vals, coh, is_via = _accession_adjust(keys, sp, prepared.via_accession[t], rule, accession)
            columns[f"{t}_via_accession"] = is_via
            via_counts[t] = len(np.unique(keys.code[is_via]))
        else:
            vals, coh = _code_type(keys, sp, rule, prepared=True)
            if t in BILATERAL_TREATMENTS and unknown_start == "missing":
                maybe = _coverage(keys, keys.merged(unknown_spells[t])) > 0
                unknown = maybe & (vals.to_numpy() == 0)
                vals = vals.where(~unknown, np.nan)
                missing_counts[t] = int(unknown.sum())
            if t in BILATERAL_TREATMENTS and unresearched_as_missing:
                vals = vals.where(researched, np.nan)
                coh = coh.where(researched, pd.NA)
        columns[t] = vals.to_numpy(dtype="float64")
        columns[f"{t}_cohort"] = pd.array(coh.to_numpy(), dtype="Int64")
        columns[f"{t}_years_since"] = year - columns[f"{t}_cohort"]
        nonabsorbing[t] = len(_falling_corridors(keys.code, keys.year, columns[t], keys.order))
    columns["bilateral_researched"] = researched
    if existing:  # replaced in place, the others appended
        out = panel.copy()
        for c, v in columns.items():
            out[c] = v
    else:
        out = pd.concat([panel, pd.DataFrame(columns, index=panel.index)], axis=1)
    if any(nonabsorbing.values()):
        logger.warning("treatments that switch off inside the panel's years (not absorbing), corridors per type: %s",
                       {t: n for t, n in nonabsorbing.items() if n})

    out.attrs = copy.deepcopy(panel.attrs)
    out.attrs["treatment_coding"] = {
        "rule": rule,
        "uk_in_eu_until": uk_year,
        "protocols_as_binding": bool(protocols_as_binding),
        "nonbinding_start": nonbinding_start,
        "binding_start": binding_start,
        "unknown_binding": unknown_binding,
        "accession": accession,
        "unknown_start": unknown_start,
        "unknown_start_missing": missing_counts,
        "unresearched_as_missing": bool(unresearched_as_missing),
        "switch_on": "entry into force or provisional application (own nationals); signature only where start_basis "
                     "says so; later of accession/opt-in and entry into force",
        "bilateral_available": bilateral_ok,
        "bilateral_dropped": dict(dropped),
        "via_accession_corridors": via_counts,
        "nonabsorbing_corridors": nonabsorbing,
        "agreements_dir": str(adir),
        "files": dict(hashes),
    }
    out.attrs = freeze_attrs(out.attrs)
    return out


def _output_columns() -> list[str]:
    cols = []
    for t in TREATMENT_TYPES + EVENT_TREATMENTS:
        cols += [t, f"{t}_cohort", f"{t}_years_since"]
    return cols + [f"{t}_via_accession" for t in EU_TYPES] + ["bilateral_researched"]


def nonabsorbing_corridors(panel: pd.DataFrame, treatment: str) -> pd.Index:
    """Corridors (``geo-citizen``) whose ``treatment`` falls from one panel year to a later one.

    The staggered-adoption estimators and event studies assume an absorbing treatment; such
    corridors (an ended or suspended instrument, the UK after its exit) should be excluded
    from them, or the switch-off modelled.
    """
    if treatment not in panel.columns:
        raise KeyError(f"panel has no column {treatment!r}; run add_treatments first")
    g, geos = pd.factorize(panel["geo"].astype(str).to_numpy())
    c, citizens = pd.factorize(panel["citizen"].astype(str).to_numpy())
    pair = g.astype(np.int64) * len(citizens) + c
    falling = _falling_corridors(pair, panel["year"].to_numpy(), panel[treatment].to_numpy(dtype="float64", na_value=np.nan))
    names = {f"{geos[k // len(citizens)]}-{citizens[k % len(citizens)]}" for k in falling}
    return pd.Index(sorted(names), name="corridor", dtype=object)


def treatment_summary(panel_with_treatments: pd.DataFrame) -> pd.DataFrame:
    """Per treatment type: corridors and corridor-years treated, adoption cohorts, unknowns.

    Columns: ``corridors`` (distinct geo-citizen pairs in the panel), ``treated_corridors``
    (value > 0 in at least one panel year), ``treated_corridor_years`` (rows with value > 0),
    ``exposure`` (sum of values: corridor-years, fractional under the share rule),
    ``missing_corridor_years`` (NaN values), ``always_treated`` (cohort <= first panel year),
    ``via_accession`` (EU types: corridors switching on only through accession),
    ``switches_off`` (corridors whose treatment falls inside the panel's years),
    ``unresearched_pairs`` (bilateral types only: pairs with ``bilateral_researched`` false),
    and one ``cohort_YYYY`` column per adoption year with the number of corridors in the panel.
    """
    p = panel_with_treatments
    needed = ["geo", "citizen", "year"] + _output_columns()
    missing = [c for c in needed if c not in p.columns]
    if missing:
        raise KeyError(f"panel lacks treatment column(s) {missing}; run add_treatments first")
    pair = p["geo"].astype(str) + "-" + p["citizen"].astype(str)
    first_year = int(p["year"].min()) if len(p) else None
    researched_by_pair = p.groupby(pair)["bilateral_researched"].any()
    n_unresearched = int((~researched_by_pair).sum())
    rows = []
    cohort_counts: dict[str, pd.Series] = {}
    types = TREATMENT_TYPES + EVENT_TREATMENTS
    for t in types:
        v = p[t]
        treated = v.fillna(0) > 0
        coh = p[f"{t}_cohort"].groupby(pair).first().dropna().astype("int64")
        cohort_counts[t] = coh.value_counts().sort_index()
        via = p[f"{t}_via_accession"] if f"{t}_via_accession" in p.columns else None
        rows.append(
            {
                "treatment": t,
                "corridors": int(pair.nunique()),
                "treated_corridors": int(pair[treated].nunique()),
                "treated_corridor_years": int(treated.sum()),
                "exposure": float(v.sum(skipna=True)),
                "missing_corridor_years": int(v.isna().sum()),
                "always_treated": int((coh <= first_year).sum()) if first_year is not None else 0,
                "via_accession": int(pair[via].nunique()) if via is not None else pd.NA,
                "switches_off": len(nonabsorbing_corridors(p, t)),
                "unresearched_pairs": n_unresearched if t in BILATERAL_TREATMENTS else pd.NA,
            }
        )
    out = pd.DataFrame(rows).set_index("treatment")
    for c in ("via_accession", "unresearched_pairs"):
        out[c] = out[c].astype("Int64")
    years = sorted({int(y) for s in cohort_counts.values() for y in s.index})
    for y in years:
        out[f"cohort_{y}"] = pd.array([int(cohort_counts[t].get(y, 0)) for t in types], dtype="Int64")
    return out


def coverage_shares(panel_with_treatments: pd.DataFrame, weight: str = "orders") -> pd.DataFrame:
    """How much of the sample the bilateral research covers, in corridors and in ``weight``.

    One row per group: ``all`` (every corridor of the panel), ``never_treated`` (corridors with
    no treatment of any type > 0 in any of the panel's rows: the comparison group of the
    difference-in-differences designs) and ``never_treated_bilateral`` (no bilateral treatment
    > 0). Columns: ``corridors``, ``researched_corridors``, ``weight`` (sum of ``weight`` over
    the rows, NaN counted as 0), ``weight_researched`` and ``share_researched`` (their ratio;
    NaN if the group has no weight). A corridor is researched if ``bilateral_researched`` is
    true; pass the estimation sample (after the filters) to measure the sample the models use.
    """
    p = panel_with_treatments
    needed = ["geo", "citizen", "bilateral_researched", weight, *TREATMENT_TYPES]
    missing = [c for c in needed if c not in p.columns]
    if missing:
        raise KeyError(f"panel lacks column(s) {missing}; run add_treatments on a panel with {weight!r} first")
    corridor = (p["geo"].astype(str) + "-" + p["citizen"].astype(str)).to_numpy()
    w = pd.to_numeric(p[weight]).fillna(0.0).to_numpy(dtype=float)
    researched = p["bilateral_researched"].to_numpy(dtype=bool)
    ever = {t: p[t].fillna(0).gt(0).groupby(corridor).transform("any").to_numpy() for t in TREATMENT_TYPES}
    never_any = ~np.logical_or.reduce([ever[t] for t in TREATMENT_TYPES])
    never_bil = ~np.logical_or.reduce([ever[t] for t in BILATERAL_TREATMENTS])
    groups = {"all": np.ones(len(p), dtype=bool), "never_treated": never_any, "never_treated_bilateral": never_bil}
    rows = []
    for name, mask in groups.items():
        tot, res = float(w[mask].sum()), float(w[mask & researched].sum())
        rows.append({
            "group": name,
            "corridors": len(set(corridor[mask])),
            "researched_corridors": len(set(corridor[mask & researched])),
            "weight": tot,
            "weight_researched": res,
            "share_researched": res / tot if tot > 0 else np.nan,
        })
    return pd.DataFrame(rows).set_index("group")


def start_date_summary(tables: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Bilateral instruments by how their switch-on date is known (``start_basis`` keyword) and
    legal form: columns ``rows`` and ``verified``, the rows resting on a confirmed start date (the
    date ``start_basis`` names -- entry into force, provisional application or signature -- present
    and seen in the cited source; see :func:`~returnstudy.agreement_tables.confirmed_start`)."""
    if tables is None:
        tables = load_agreements()
    fw = tables.get("bilateral_frameworks")
    if fw is None:
        return pd.DataFrame(columns=["rows", "verified"])
    df = pd.DataFrame({"start_basis": start_basis_keyword(fw), "legal_form": fw["legal_form"],
                       "verified": confirmed_start(fw)})
    out = df.groupby(["start_basis", "legal_form"]).agg(rows=("verified", "size"), verified=("verified", "sum"))
    return out.astype("int64")
