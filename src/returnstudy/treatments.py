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
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .agreement_tables import (
    OPEN_END,
    AgreementDataError,
    check_agreements,
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


# --------------------------------------------------------------------------- add_treatments


def _accession_adjust(
    keys: pd.DataFrame, spells: pd.DataFrame, rule: str, accession: str
) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """Values and cohorts of an EU type under the ``accession`` choice, and the row mask of
    corridors switching on only through accession."""
    via = _via_accession(spells)
    via_key = keys[["geo", "citizen"]].merge(via, on=["geo", "citizen"], how="left")
    is_via = via_key["own_first"].notna().to_numpy()
    if accession == "switch" or via.empty:
        vals, coh = _code_type(keys, spells, rule)
        return vals, coh, is_via
    if accession == "drop":
        vals, coh = _code_type(keys, spells, rule)
        return vals.where(~is_via, np.nan), coh.where(~is_via, pd.NA), is_via
    # already_treated: treated from the accession year on, cohort = the year the corridor would
    # have switched on as a member; years before accession are not EU+ years of this country (NaN)
    s = spells.merge(via[["geo", "citizen"]].assign(_via=True), on=["geo", "citizen"], how="left")
    s_via = s["_via"].fillna(False).astype(bool)
    jan1 = s["start"].dt.to_period("Y").dt.start_time
    value_spells = s.assign(start=s["start"].where(~s_via, pd.concat([s["own_start"], jan1], axis=1).max(axis=1)))
    vals, _ = _code_type(keys, value_spells, rule)
    _, coh = _code_type(keys, s.assign(start=s["own_start"].where(s_via, s["start"])), rule)
    acc_year = via_key["accession"].dt.year.to_numpy()
    before = is_via & (keys["year"].to_numpy() < np.nan_to_num(acc_year, nan=-1))
    return vals.where(~before, np.nan), coh, is_via


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
    if panel.duplicated(["geo", "citizen", "year"]).any():
        raise ValueError("panel has duplicate (geo, citizen, year) rows")

    adir = Path(agreements_dir) if agreements_dir is not None else _default_agreements_dir()
    tables, problems, hashes = reused("agreement tables", (str(adir), str(codes_dir)), lambda: read_tables(adir, codes_dir), copy=copy.deepcopy)
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
    unknown_spells: dict[str, pd.DataFrame] = {}
    if bilateral_ok:
        bil, dropped, unknown_spells = _bilateral_spells(
            tables["bilateral_frameworks"], protocols_as_binding, nonbinding_start, binding_start, unknown_binding
        )
        spells.update(bil)
        cov = tables["bilateral_coverage"]
        researched_pairs = cov.loc[cov["researched"], ["geo", "citizen"]].assign(_r=True)
        researched = keys[["geo", "citizen"]].merge(researched_pairs, on=["geo", "citizen"], how="left")["_r"]
        researched = researched.notna().to_numpy(dtype=bool)
    else:
        logger.warning("bilateral tables not available: bilateral treatment columns are NaN (unknown)")
        spells.update({t: None for t in BILATERAL_TREATMENTS})
        researched = np.zeros(len(keys), dtype=bool)
    events = tables.get("corridor_events")
    if events is None:
        logger.warning("corridor_events.csv not available: event columns %s are NaN", list(EVENT_TREATMENTS))
    for ev in EVENT_TREATMENTS:
        spells[ev] = None if events is None else _event_spells(events, ev)

    out = panel.copy()
    existing = [c for c in out.columns if c in _output_columns()]
    if existing:
        logger.info("replacing existing treatment columns %s", existing)
    via_counts: dict[str, int] = {}
    missing_counts: dict[str, int] = {}
    for t in TREATMENT_TYPES + EVENT_TREATMENTS:
        sp = spells[t]
        if sp is None:
            vals = pd.Series(np.nan, index=keys.index, dtype="float64")
            coh = pd.Series(pd.NA, index=keys.index, dtype="Int64")
        elif t in EU_TYPES:
            vals, coh, is_via = _accession_adjust(keys, sp, rule, accession)
            out[f"{t}_via_accession"] = is_via
            via_counts[t] = int(pd.Series(keys["geo"] + "-" + keys["citizen"])[is_via].nunique())
        else:
            vals, coh = _code_type(keys, sp, rule)
            if t in BILATERAL_TREATMENTS and unknown_start == "missing":
                maybe = _year_values(keys, _merge_spells(unknown_spells[t]), "calendar_year").to_numpy() > 0
                unknown = maybe & (vals.to_numpy() == 0)
                vals = vals.where(~unknown, np.nan)
                missing_counts[t] = int(unknown.sum())
            if t in BILATERAL_TREATMENTS and unresearched_as_missing:
                vals = vals.where(researched, np.nan)
                coh = coh.where(researched, pd.NA)
        out[t] = vals.to_numpy(dtype="float64")
        out[f"{t}_cohort"] = pd.array(coh.to_numpy(), dtype="Int64")
        out[f"{t}_years_since"] = pd.array((keys["year"].astype("Int64") - coh.astype("Int64")).to_numpy(), dtype="Int64")
    out["bilateral_researched"] = researched
    nonabsorbing = {t: len(nonabsorbing_corridors(out, t)) for t in TREATMENT_TYPES + EVENT_TREATMENTS}
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
        "bilateral_dropped": dropped,
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
    p = panel[["geo", "citizen", "year", treatment]].dropna(subset=[treatment]).sort_values(["geo", "citizen", "year"])
    corridor = p["geo"].astype(str) + "-" + p["citizen"].astype(str)
    running_max = p.groupby(corridor.to_numpy())[treatment].cummax()
    falls = (p[treatment] < running_max).to_numpy()
    return pd.Index(sorted(set(corridor.to_numpy()[falls])), name="corridor")


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
    """Bilateral instruments by how their switch-on date is known (``start_basis`` keyword),
    legal form and verification: columns ``rows`` and ``verified`` (date and legal form checked
    against the cited source)."""
    if tables is None:
        tables = load_agreements()
    fw = tables.get("bilateral_frameworks")
    if fw is None:
        return pd.DataFrame(columns=["rows", "verified"])
    df = pd.DataFrame({"start_basis": start_basis_keyword(fw), "legal_form": fw["legal_form"],
                       "verified": fw["verified"].astype(bool)})
    out = df.groupby(["start_basis", "legal_form"]).agg(rows=("verified", "size"), verified=("verified", "sum"))
    return out.astype("int64")
