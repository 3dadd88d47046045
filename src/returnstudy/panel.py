"""The corridor-year panel: one row per (reporting country ``geo``, citizenship ``citizen``, year).

Variables (persons per calendar year, Eurostat rounds to the nearest 5):

* ``orders`` — third-country nationals ordered to leave (``migr_eiord``)
* ``returns`` — returned following an order to leave, any destination (``migr_eirtn``, ``c_dest=TOTAL``)
* ``returns_third_country`` — returned to a third country (``migr_eirtn``, ``c_dest=THRD``)
* ``found_illegal`` — found to be illegally present (``migr_eipre``)
* ``return_rate`` = returns / orders of the same year (can exceed 1: returns follow
  orders of earlier years); missing when orders are 0 or missing
* ``orders_lag1`` — orders of the previous year in the same corridor

Missing stays missing. The one exception is documented in :func:`load_panel`
(``zero_fill``): a source extract that dropped its zeros.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from returnstudy.data import codes
from returnstudy.data.eurostat import normalise_last_update
from returnstudy.data.tables import Table, has_table, read_table
from returnstudy.provenance import freeze_attrs
from returnstudy.reuse import reused

log = logging.getLogger(__name__)

VARIABLES: dict[str, tuple[str, dict[str, str]]] = {
    # variable: (dataset, dimension filter)
    "orders": ("migr_eiord", {}),
    "returns": ("migr_eirtn", {"c_dest": "TOTAL"}),
    "returns_third_country": ("migr_eirtn", {"c_dest": "THRD"}),
    "found_illegal": ("migr_eipre", {}),
}
REQUIRED_TABLES = ("migr_eiord", "migr_eirtn")
KEYS = ["geo", "citizen", "year"]
ZERO_DROP_MIN_CELLS = 500
"""A vintage group of at least this many cells with not a single zero is taken as an
extract whose zeros were dropped (Eurostat itself publishes zeros)."""

ZeroFill = Literal["auto", "never"]


def _select(table: Table, filters: dict[str, str]) -> pd.DataFrame:
    df = table.data
    mask = pd.Series(True, index=df.index)
    for dim, value in {"freq": "A", "age": "TOTAL", "sex": "T", "unit": "PER", **filters}.items():
        if dim in df.columns:
            mask &= df[dim] == value
    out = df.loc[mask, ["geo", "citizen", "year", "value", "flag", "last_update"]].copy()
    return out


def _zero_dropped_groups(df: pd.DataFrame) -> list[str]:
    """LAST UPDATE groups in which zeros appear to have been dropped by the extract."""
    groups = []
    for lu, g in df.groupby("last_update", sort=True):
        if len(g) >= ZERO_DROP_MIN_CELLS and not (g["value"] == 0).any():
            groups.append(str(lu))
    return groups


def load_panel(
    data_dir: str | Path | None = None,
    years: Sequence[int] | tuple[int, int] | None = None,
    *,
    keep_aggregates: bool = False,
    keep_eu_plus_citizens: bool = False,
    eu_plus_only: bool = True,
    uk_until: int | None = None,
    zero_fill: ZeroFill = "auto",
) -> pd.DataFrame:
    """Build the corridor-year panel from cached or snapshot Eurostat tables.

    Parameters
    ----------
    data_dir:
        A cache directory (with ``manifest.json``) or a directory of Eurostat files
        (``migr_eiord.csv`` ...). ``None``: the default cache.
    years:
        ``(first, last)`` inclusive range, or a set (or list of three or more) of years. ``None``: all.
    keep_aggregates:
        Keep aggregate and special codes (``TOTAL``, ``EU28``, ``STLS``, ``UNK``, continents).
    keep_eu_plus_citizens:
        Keep citizenships of EU+ and EFTA states (not third-country nationals).
    eu_plus_only:
        Keep only reporting countries in the EU+ group in that year (Croatia from
        2013); ``uk_until`` ends the United Kingdom's membership of the group.
    zero_fill:
        ``"auto"`` (default): where a table's vintage group (one LAST UPDATE value,
        at least 500 cells) holds no zero at all, the extract dropped its zeros; an
        absent cell of a corridor in a geo-year that reported that variable is then
        set to 0 and marked in ``<variable>_imputed_zero``. ``"never"``: leave absent
        cells missing.

    Returns a DataFrame sorted by geo, citizen, year, whose ``attrs["vintage"]``
    records, per table, its source, LAST UPDATE values, sha256 and the rows used. Inside a
    :func:`returnstudy.reuse.reuse_prepared` block (one report) the tables are read once per
    set of arguments and each call gets its own copy of that panel.
    """
    options = {"keep_aggregates": keep_aggregates, "keep_eu_plus_citizens": keep_eu_plus_citizens,
               "eu_plus_only": eu_plus_only, "uk_until": uk_until, "zero_fill": zero_fill}
    key = (None if data_dir is None else str(Path(data_dir).resolve()), repr(years), repr(sorted(options.items())))
    return reused("panel", key, lambda: _build_panel(data_dir, years, **options), copy=pd.DataFrame.copy)


def _build_panel(
    data_dir: str | Path | None,
    years: Sequence[int] | tuple[int, int] | None,
    *,
    keep_aggregates: bool,
    keep_eu_plus_citizens: bool,
    eu_plus_only: bool,
    uk_until: int | None,
    zero_fill: ZeroFill,
) -> pd.DataFrame:
    """:func:`load_panel` without reuse: read the tables and build the panel."""
    tables: dict[str, Table] = {}
    for var, (code, _) in VARIABLES.items():
        if code in tables:
            continue
        if code not in REQUIRED_TABLES and not has_table(code, data_dir):
            log.warning("table %s not available: %s stays missing", code, var)
            continue
        tables[code] = read_table(code, data_dir)

    year_filter = _year_filter(years)
    parts: dict[str, pd.DataFrame] = {}
    vintage: dict[str, dict[str, Any]] = {}
    for var, (code, filters) in VARIABLES.items():
        if code not in tables:
            continue
        table = tables[code]
        df = _select(table, filters)
        source = table.vintage.get("source", code)
        codes.check_codes(df["citizen"].unique(), dimension="citizen", source=source)
        codes.check_codes(df["geo"].unique(), dimension="geo", source=source)
        if year_filter is not None:
            df = df[df["year"].isin(year_filter)]
        df = _restrict_units(df, keep_aggregates, keep_eu_plus_citizens, eu_plus_only, uk_until)
        parts[var] = df
        vintage.setdefault(code, dict(table.vintage))
        vintage[code].setdefault("rows_used", {})[var] = int(len(df))

    frames = []
    for var, df in parts.items():
        renamed = df.rename(columns={"value": var, "flag": f"{var}_flag", "last_update": f"{var}_vintage"})
        col = renamed[f"{var}_vintage"]
        renamed[f"{var}_vintage"] = col.map({u: normalise_last_update(u) for u in col.unique()})
        frames.append(renamed.set_index(KEYS))
    panel = pd.concat(frames, axis=1, join="outer").reset_index() if frames else pd.DataFrame(columns=KEYS)

    for var in VARIABLES:
        if var not in panel.columns:
            panel[var] = np.nan
            panel[f"{var}_flag"] = ""
            panel[f"{var}_vintage"] = ""
    panel["returns_third_country_imputed_zero"] = False
    panel["found_illegal_imputed_zero"] = False
    zero_fill_log: dict[str, Any] = {}
    if zero_fill == "auto":
        for var in ("returns_third_country", "found_illegal"):
            if var in parts:
                zero_fill_log[var] = _fill_dropped_zeros(panel, var, parts[var])
    elif zero_fill != "never":
        raise ValueError(f"zero_fill must be 'auto' or 'never', not {zero_fill!r}")

    for var in VARIABLES:
        panel[f"{var}_flag"] = panel[f"{var}_flag"].fillna("").astype(str)
        panel[f"{var}_vintage"] = panel[f"{var}_vintage"].fillna("").astype(str)
        panel[var] = panel[var].astype("float64")

    panel["year"] = panel["year"].astype("int64")
    panel = panel.sort_values(KEYS, kind="mergesort").reset_index(drop=True)
    panel["corridor"] = panel["geo"].astype(str) + "-" + panel["citizen"].astype(str)
    orders = panel["orders"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        panel["return_rate"] = np.where(orders > 0, panel["returns"].to_numpy() / orders, np.nan)
    lag = panel[["corridor", "year", "orders"]].copy()
    lag["year"] += 1
    panel = panel.merge(lag.rename(columns={"orders": "orders_lag1"}), on=["corridor", "year"], how="left", validate="one_to_one")

    ordered = ["geo", "citizen", "year", "corridor", *VARIABLES, "return_rate", "orders_lag1"]
    extra = [f"{v}_flag" for v in VARIABLES] + ["returns_third_country_imputed_zero", "found_illegal_imputed_zero"]
    extra += [f"{v}_vintage" for v in VARIABLES]
    panel = panel[ordered + extra]
    if panel.empty:
        in_tables = sorted({int(y) for t in tables.values() for y in t.data["year"].unique()})
        asked = sorted(year_filter) if year_filter else None
        raise ValueError(
            f"load_panel: no corridor-year left (years={asked}, eu_plus_only={eu_plus_only}, "
            f"keep_aggregates={keep_aggregates}); years in the tables: {in_tables}"
        )
    if panel.duplicated(KEYS).any():  # pragma: no cover - guarded by the parser's key check
        raise RuntimeError("panel has duplicate (geo, citizen, year) keys")
    panel.attrs["vintage"] = vintage
    panel.attrs["panel_options"] = {
        "years": None if year_filter is None else [int(min(year_filter)), int(max(year_filter))],
        "keep_aggregates": keep_aggregates,
        "keep_eu_plus_citizens": keep_eu_plus_citizens,
        "eu_plus_only": eu_plus_only,
        "uk_until": uk_until,
        "zero_fill": zero_fill,
        "zero_fill_applied": zero_fill_log,
    }
    panel.attrs = freeze_attrs(panel.attrs)
    log.info("panel: %d corridor-years, %d corridors", len(panel), panel["corridor"].nunique())
    return panel


def _year_filter(years: Sequence[int] | tuple[int, int] | None) -> set[int] | None:
    """A two-element sequence is an inclusive range (first, last); a set or longer list is explicit."""
    if years is None:
        return None
    if isinstance(years, (str, bytes)) or not all(isinstance(y, (int, np.integer)) for y in years):
        raise ValueError(f"years must be (first, last) or a collection of int years, not {years!r}")
    if not isinstance(years, (set, frozenset)) and len(years) == 2:
        first, last = int(years[0]), int(years[1])  # type: ignore[index]
        if first > last:
            raise ValueError(f"years=({first}, {last}): first year after last year")
        return set(range(first, last + 1))
    if len(years) == 0:
        raise ValueError("years is empty")
    return {int(y) for y in years}


def _restrict_units(
    df: pd.DataFrame, keep_aggregates: bool, keep_eu_plus_citizens: bool, eu_plus_only: bool, uk_until: int | None
) -> pd.DataFrame:
    if not keep_aggregates:
        aggr = codes.aggregate_codes()
        df = df[~df["citizen"].isin(aggr) & ~df["geo"].isin(aggr)]
    if not keep_eu_plus_citizens:
        df = df[~df["citizen"].isin(codes.eu_plus_citizen_codes())]
    if eu_plus_only:
        members = codes.eu_plus_geo_years(df["year"].unique(), uk_until=uk_until)
        df = df.merge(members, on=["geo", "year"], how="inner")
    return df


def _fill_dropped_zeros(panel: pd.DataFrame, var: str, source: pd.DataFrame) -> dict[str, Any]:
    """Set absent cells to 0 for geo-years reported in a zero-dropped vintage group (in place)."""
    groups = _zero_dropped_groups(source)
    if not groups:
        return {"groups": [], "cells": 0}
    reported = source.loc[source["last_update"].isin(groups), ["geo", "year"]].drop_duplicates()
    reported["_reported"] = True
    flags = panel[["geo", "year"]].merge(reported, on=["geo", "year"], how="left")["_reported"].fillna(False).to_numpy(bool)
    fill = flags & panel[var].isna().to_numpy()
    panel.loc[fill, var] = 0.0
    panel.loc[fill, f"{var}_imputed_zero"] = True
    panel.loc[fill, f"{var}_vintage"] = normalise_last_update(groups[0]) if len(groups) == 1 else ""
    log.info("%s: %d absent cells set to 0 (extract with zeros dropped, LAST UPDATE %s)", var, int(fill.sum()), groups)
    return {"groups": [normalise_last_update(g) for g in groups], "cells": int(fill.sum())}


def panel_summary(panel: pd.DataFrame) -> dict[str, Any]:
    """Corridors, years and coverage of a panel.

    ``coverage`` is a geo x year table of the number of corridors with both orders
    and returns observed (not missing) in that year.
    """
    both = panel["orders"].notna() & panel["returns"].notna()
    coverage = panel.loc[both].pivot_table(index="geo", columns="year", values="corridor", aggfunc="count", fill_value=0)
    by_var = {
        var: {
            "non_missing": int(panel[var].notna().sum()),
            "years": sorted(int(y) for y in panel.loc[panel[var].notna(), "year"].unique()),
        }
        for var in VARIABLES
    }
    return {
        "rows": int(len(panel)),
        "corridors": int(panel["corridor"].nunique()),
        "geos": int(panel["geo"].nunique()),
        "citizens": int(panel["citizen"].nunique()),
        "years": [int(panel["year"].min()), int(panel["year"].max())] if len(panel) else None,
        "variables": by_var,
        "coverage": coverage,
        "vintage": panel.attrs.get("vintage", {}),
    }
