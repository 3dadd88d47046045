"""Eurostat code lists: reporting countries, citizenships, aggregates.

The lists live in ``data/codes/`` (see its README). Every code the package reads
is checked against them so that a citizenship is never silently misread
(``EL`` is Greece, ``UK`` the United Kingdom, ``NA`` Namibia, ``XK`` Kosovo).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import pandas as pd

from returnstudy.paths import project_data_dir

WESTERN_BALKANS: frozenset[str] = frozenset({"AL", "BA", "ME", "MK", "RS", "XK"})
"""Western Balkan citizenships (visa-free travel to Schengen from 2009/2010)."""

EURO_TO_ISO2 = {"EL": "GR", "UK": "GB"}
ISO2_TO_EURO = {v: k for k, v in EURO_TO_ISO2.items()}


def _read_codes(name: str) -> pd.DataFrame:
    path = project_data_dir() / "codes" / name
    # keep_default_na=False: "NA" is Namibia, not a missing value
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _as_bool(s: pd.Series) -> pd.Series:
    return s.str.lower().map({"true": True, "false": False}).astype(bool)


@lru_cache(maxsize=1)
def _reporting() -> pd.DataFrame:
    df = _read_codes("reporting_countries.csv")
    df["in_eu_plus"] = _as_bool(df["in_eu_plus"])
    for col in ("eu_from", "eu_to"):
        df[col] = pd.to_datetime(df[col].replace("", None), format="%Y-%m-%d")
    return df


@lru_cache(maxsize=1)
def _aggregates() -> frozenset[str]:
    return frozenset(_read_codes("aggregates.csv")["code"])


@lru_cache(maxsize=1)
def _citizenships() -> pd.DataFrame:
    df = _read_codes("citizenships.csv")
    for col in ("western_balkans", "eu_plus"):
        df[col] = _as_bool(df[col])
    return df


def reporting_countries() -> pd.DataFrame:
    """Reporting countries (``geo``) with EU membership dates and EU+ group flag."""
    return _reporting().copy()


def citizenships() -> pd.DataFrame:
    """All citizenship codes: countries, Eurostat aggregates and special codes."""
    return _citizenships().copy()


def aggregate_codes() -> frozenset[str]:
    """Codes that are aggregates or special categories (TOTAL, EU28, STLS, UNK, RNC, continents...)."""
    c = _citizenships()
    return frozenset(c.loc[c["kind"] != "country", "code"]) | _aggregates()


def valid_citizen_codes() -> frozenset[str]:
    return frozenset(_citizenships()["code"])


def valid_geo_codes() -> frozenset[str]:
    return frozenset(_reporting()["geo"]) | _aggregates()


def eu_plus_citizen_codes() -> frozenset[str]:
    """Citizenships of EU+ and EFTA states: not third-country nationals for this study."""
    c = _citizenships()
    return frozenset(c.loc[c["eu_plus"], "code"])


def is_eu_plus_citizen(code: str) -> bool:
    return code in eu_plus_citizen_codes()


def eu_plus_geo_years(years: Iterable[int], uk_until: int | None = None) -> pd.DataFrame:
    """(geo, year) pairs in which a reporting country belongs to the EU+ group.

    A country belongs in a calendar year if it was an EU member on any day of that
    year, or is Norway or Switzerland, or is the United Kingdom (up to ``uk_until``
    inclusive when given; by default the UK stays in the group).
    """
    rep = _reporting()
    rows = []
    for year in sorted(set(int(y) for y in years)):
        start, end = pd.Timestamp(year, 1, 1), pd.Timestamp(year, 12, 31)
        for r in rep.itertuples(index=False):
            if r.geo == "UK":
                member = uk_until is None or year <= uk_until
            elif r.group == "efta":
                member = bool(r.in_eu_plus)
            elif pd.isna(r.eu_from):
                member = False
            else:
                member = r.eu_from <= end and (pd.isna(r.eu_to) or r.eu_to >= start)
            if member:
                rows.append((r.geo, year))
    return pd.DataFrame(rows, columns=["geo", "year"]).astype({"year": "int64"})


def check_codes(codes: Iterable[str], *, dimension: str, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` if any code is unknown for ``dimension``."""
    valid = valid_citizen_codes() if dimension == "citizen" else valid_geo_codes()
    unknown = sorted(set(codes) - valid)
    if unknown:
        raise ValueError(
            f"{source}: unknown {dimension} code(s) {unknown[:20]}"
            f"{' ...' if len(unknown) > 20 else ''}; add them to data/codes/ if they are real Eurostat codes"
        )


def to_iso2(code: str) -> str:
    """Eurostat code -> ISO 3166-1 alpha-2 (EL->GR, UK->GB); XK stays XK."""
    return EURO_TO_ISO2.get(code, code)


def from_iso2(code: str) -> str:
    """ISO 3166-1 alpha-2 -> Eurostat code (GR->EL, GB->UK)."""
    return ISO2_TO_EURO.get(code, code)


def to_iso3(code: str) -> str:
    c = _citizenships().set_index("code")
    if code not in c.index or not c.at[code, "iso3"]:
        raise KeyError(f"no ISO3 code for Eurostat code {code!r}")
    return str(c.at[code, "iso3"])
