"""Sample filters: named, switchable steps from the raw panel to the analysis sample.

Each step is a function ``step(panel, *, <typed parameters>) -> (panel, note)`` registered
under a name in :data:`FILTERS`; its docstring's first line states the statistical reason
for the step. :func:`apply_filters` runs a list of steps (dicts or a
:class:`~returnstudy.spec.StudySpec`) and records a flow table: rows, corridors, orders
and returns before and after each step, and what the step dropped.

The study's exact filters are not public ("after several filters"); the steps make each
candidate filter explicit so its effect on the sample and on the estimates can be seen.
"""

from __future__ import annotations

import copy
import html
import inspect
import logging
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import numpy as np
import pandas as pd

from returnstudy.filter_step import FilterStep
from returnstudy.provenance import freeze_attrs

if typing.TYPE_CHECKING:  # annotations only: the spec module imports this one
    from returnstudy.spec import StudySpec

log = logging.getLogger(__name__)

__all__ = [
    "FILTERS",
    "FilterDef",
    "FilterError",
    "FilterResult",
    "apply_filters",
    "validate_steps",
    "describe_filters",
    "VISA_FREE",
    "CITIZEN_GROUPS",
]

StepFn = Callable[..., "tuple[pd.DataFrame, str]"]

VISA_FREE: frozenset[str] = frozenset(
    """AD AE AG AL AR AU BA BB BN BR BS CA CL CO CR DM FM GD GE GT HN IL JP KI KN KR LC MC MD ME
    MH MK MU MX MY NI NZ PA PE PW PY RS SB SC SG SM SV TL TO TT TV TW UA US UY VA VC VE VU WS""".split()
)
"""Citizenships exempt from the Schengen short-stay visa (Regulation (EU) 2018/1806, Annex II,
state of 2019, plus the special administrative regions' passports where Eurostat has a code).
Static: the 2009-2017 liberalisations (Western Balkans, Moldova, Georgia, Ukraine) are treated as
in place for the whole window; Kosovo (exempt from 2024) and the United Kingdom are not in the list."""


def _western_balkans() -> frozenset[str]:
    from returnstudy.data import codes

    return frozenset(codes.WESTERN_BALKANS)


CITIZEN_GROUPS: dict[str, Callable[[], frozenset[str]]] = {
    "western_balkans": _western_balkans,
    "visa_free": lambda: VISA_FREE,
}
"""Named citizenship groups accepted by ``exclude_citizens``."""


class FilterError(ValueError):
    """A filter step cannot run: unknown step or parameter, wrong type, empty result."""


@dataclass(frozen=True)
class FilterDef:
    """A registered filter step: its function, typed parameters and rationale."""

    name: str
    func: StepFn
    params: Mapping[str, inspect.Parameter]
    hints: Mapping[str, Any]
    rationale: str

    def signature(self) -> str:
        parts = []
        for p in self.params.values():
            hint = _hint_name(self.hints.get(p.name, Any))
            parts.append(f"{p.name}: {hint}" + ("" if p.default is inspect.Parameter.empty else f" = {p.default!r}"))
        return f"{self.name}({', '.join(parts)})"


FILTERS: dict[str, FilterDef] = {}


def _register(name: str) -> Callable[[StepFn], StepFn]:
    def deco(func: StepFn) -> StepFn:
        sig = inspect.signature(func)
        params = {k: p for k, p in list(sig.parameters.items())[1:]}
        for p in params.values():
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"filter {name}: parameter {p.name} must be keyword-only")
        hints = typing.get_type_hints(func)
        doc = inspect.getdoc(func) or ""
        FILTERS[name] = FilterDef(name, func, params, hints, doc.splitlines()[0] if doc else "")
        return func

    return deco


# --------------------------------------------------------------------------- type checking


def _hint_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " | ".join(_hint_name(a) for a in typing.get_args(hint))
    if origin is list:
        (arg,) = typing.get_args(hint)
        return f"list[{_hint_name(arg)}]"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if origin is list:
        (arg,) = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and all(_matches(v, arg) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if hint is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if hint is str:
        return isinstance(value, str)
    return isinstance(value, hint)


def _coerce(value: Any, hint: Any) -> Any:
    """Normalise accepted values: tuples -> lists, ints -> floats where a float is asked."""
    if hint is float and not isinstance(value, bool) and isinstance(value, (int, np.integer)):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    return value


# --------------------------------------------------------------------------- helpers


def _corridors(panel: pd.DataFrame) -> pd.Series:
    if "corridor" in panel.columns:
        return panel["corridor"]
    return panel["geo"].astype(str) + "-" + panel["citizen"].astype(str)


def _require(panel: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in panel.columns]
    if missing:
        raise KeyError(f"panel has no column(s) {missing}; available: {sorted(map(str, panel.columns))}")


def _listing(items: Sequence[str], limit: int = 8) -> str:
    items = list(items)
    head = ", ".join(items[:limit])
    return head + (f", ... (+{len(items) - limit})" if len(items) > limit else "")


def _keep_corridors(panel: pd.DataFrame, keep: pd.Series) -> tuple[pd.DataFrame, list[str]]:
    """Keep rows whose corridor has ``keep`` True (``keep`` indexed by corridor)."""
    corr = _corridors(panel)
    dropped = sorted(keep.index[~keep.astype(bool)].astype(str))
    return panel.loc[corr.map(keep).fillna(False).astype(bool).to_numpy()], dropped


# --------------------------------------------------------------------------- steps


@_register("eu_plus_corridors")
def eu_plus_corridors(panel: pd.DataFrame, *, uk_until: int | None = None) -> tuple[pd.DataFrame, str]:
    """Keep EU+ reporting countries (in the years they belong) and non-EU+ citizenships: the population the study's return rates refer to.

    A country belongs to EU+ in a year if it was an EU member on any day of it, or is Norway,
    Switzerland or the United Kingdom (the UK up to ``uk_until`` inclusive when given).
    Iceland and Liechtenstein are outside the study's EU+ group.
    """
    from returnstudy.data import codes

    _require(panel, ["geo", "citizen", "year"])
    years = panel["year"].dropna().unique()
    members = codes.eu_plus_geo_years(years, uk_until=uk_until)
    key = pd.MultiIndex.from_frame(members[["geo", "year"]])
    in_geo = pd.MultiIndex.from_arrays([panel["geo"].astype(str), panel["year"].astype("int64")]).isin(key)
    eu_cit = codes.eu_plus_citizen_codes()
    third = ~panel["citizen"].astype(str).isin(eu_cit).to_numpy()
    keep = in_geo & third
    out_geo = panel.loc[~in_geo, ["geo", "year"]].drop_duplicates()
    geo_note = sorted(f"{g} {y}" for g, y in out_geo.itertuples(index=False))
    cit_note = sorted(panel.loc[~third, "citizen"].astype(str).unique())
    note = (
        f"dropped {len(geo_note)} non-EU+ geo-years ({_listing(geo_note)})"
        f" and {len(cit_note)} EU+ citizenships ({_listing(cit_note)})"
    )
    return panel.loc[keep], note


@_register("drop_aggregates")
def drop_aggregates(
    panel: pd.DataFrame, *, specials: bool = True, extra: list[str] | None = None
) -> tuple[pd.DataFrame, str]:
    """Drop aggregate rows (TOTAL, EU28, continents) that would double-count corridors, and, with ``specials``, stateless/unknown/recognised non-citizens, which are no country an agreement could bind.

    ``extra`` lists further citizenship or reporting codes to treat as aggregates.
    """
    from returnstudy.data import codes

    _require(panel, ["geo", "citizen"])
    cit = codes.citizenships()
    aggr = set(cit.loc[cit["kind"] == "aggregate", "code"]) | set(codes.aggregate_codes())
    aggr -= set(cit.loc[cit["kind"] == "special", "code"])
    special = set(cit.loc[cit["kind"] == "special", "code"]) if specials else set()
    drop_codes = aggr | special | set(extra or [])
    geo_bad = panel["geo"].astype(str).isin(aggr | set(extra or []))
    cit_bad = panel["citizen"].astype(str).isin(drop_codes)
    dropped_geo = sorted(panel.loc[geo_bad, "geo"].astype(str).unique())
    dropped_cit = sorted(panel.loc[cit_bad, "citizen"].astype(str).unique())
    note = f"dropped reporting aggregates [{_listing(dropped_geo)}] and citizenship codes [{_listing(dropped_cit)}]"
    return panel.loc[~(geo_bad | cit_bad).to_numpy()], note


@_register("years")
def years(panel: pd.DataFrame, *, start: int | None = None, end: int | None = None) -> tuple[pd.DataFrame, str]:
    """Restrict to the years [start, end] (inclusive) in which the outcome and its exposure are both measured."""
    if start is None and end is None:
        raise ValueError("give start, end or both")
    if start is not None and end is not None and start > end:
        raise ValueError(f"start={start} is after end={end}")
    _require(panel, ["year"])
    y = panel["year"]
    keep = pd.Series(True, index=panel.index)
    if start is not None:
        keep &= y >= start
    if end is not None:
        keep &= y <= end
    gone = sorted(int(v) for v in y[~keep].unique())
    return panel.loc[keep], f"kept {start if start is not None else 'first'}-{end if end is not None else 'last'}; dropped years {gone}"


def _unreported(panel: pd.DataFrame, col: str, zero_as_unreported: bool) -> pd.Series:
    """Per (geo, year): True if no corridor carries an actually reported value of ``col``."""
    value = panel[col]
    reported = value.notna()
    imp = f"{col}_imputed_zero"
    if imp in panel.columns:
        reported &= ~panel[imp].fillna(False).astype(bool)
    if zero_as_unreported:
        reported &= value.fillna(0) != 0
    return ~reported.groupby([panel["geo"], panel["year"]]).any()


@_register("reported_geo_years")
def reported_geo_years(
    panel: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    require: Literal["all", "any"] = "all",
    zero_as_unreported: bool = False,
) -> tuple[pd.DataFrame, str]:
    """Drop geo-years a country did not report at all, so a missing report is not read as zero orders or returns.

    A geo-year reports a column if at least one corridor has a non-missing value that is not an
    imputed zero (``<column>_imputed_zero``). A reported zero counts as reported unless
    ``zero_as_unreported`` is set, which also treats a geo-year whose values are all zero as not
    reported (a national total of exactly zero is implausible for orders or returns).
    ``require="all"``: every column must be reported; ``"any"``: at least one.
    """
    columns = list(columns) if columns is not None else ["orders", "returns"]
    if not columns:
        raise ValueError("columns must not be empty")
    _require(panel, ["geo", "year", *columns])
    flags = pd.concat({c: _unreported(panel, c, zero_as_unreported) for c in columns}, axis=1)
    bad = flags.any(axis=1) if require == "all" else flags.all(axis=1)
    bad_keys = bad[bad].index
    detail = sorted(
        f"{g} {y} ({'+'.join(c for c in columns if flags.loc[(g, y), c])})" for g, y in bad_keys
    )
    row_bad = pd.MultiIndex.from_arrays([panel["geo"], panel["year"]]).isin(bad_keys)
    return panel.loc[~row_bad], f"dropped {len(detail)} unreported geo-years: {_listing(detail, 12)}"


@_register("min_orders")
def min_orders(
    panel: pd.DataFrame,
    *,
    n: float = 10.0,
    how: Literal["mean", "every_year", "total"] = "mean",
    column: str = "orders",
) -> tuple[pd.DataFrame, str]:
    """Keep corridors with at least ``n`` orders to leave (mean over reported years, every year, or in total), because a rate on a handful of orders is mostly rounding noise (values are rounded to 5).

    ``mean`` and ``total`` skip missing years; ``every_year`` needs a reported value >= n in every
    row of the corridor. A corridor without any reported orders is dropped.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _require(panel, [column])
    g = panel[column].groupby(_corridors(panel))
    if how == "mean":
        keep = g.mean() >= n
    elif how == "total":
        keep = (g.sum(min_count=1) >= n).fillna(False)
    else:
        keep = (panel[column] >= n).groupby(_corridors(panel)).all()  # NaN >= n is False
    kept, dropped = _keep_corridors(panel, keep)
    return kept, f"dropped {len(dropped)} corridors with {how} {column} < {n:g}: {_listing(dropped)}"


@_register("return_rate_bound")
def return_rate_bound(
    panel: pd.DataFrame,
    *,
    bound: float = 1.0,
    action: Literal["drop", "cap"] = "drop",
) -> tuple[pd.DataFrame, str]:
    """Drop or cap corridor-years whose return rate exceeds ``bound``; returns follow orders of earlier years, so rates above 1 are possible, and only implausible excesses (bound well above 1) are data errors.

    ``cap`` sets returns to ``bound * orders`` and recomputes ``return_rate``, flagging the rows
    in ``return_rate_capped``. Rows with a missing rate are kept.
    """
    if bound <= 0:
        raise ValueError(f"bound must be > 0, got {bound}")
    _require(panel, ["returns", "orders"])
    rate = panel["return_rate"] if "return_rate" in panel.columns else panel["returns"] / panel["orders"].where(panel["orders"] > 0)
    over = (rate > bound).fillna(False).to_numpy()
    if action == "drop":
        return panel.loc[~over], f"dropped {int(over.sum())} corridor-years with return rate > {bound:g}"
    out = panel.copy()
    excess = float((out.loc[over, "returns"] - bound * out.loc[over, "orders"]).sum())
    out.loc[over, "returns"] = bound * out.loc[over, "orders"]
    out["return_rate"] = out["returns"] / out["orders"].where(out["orders"] > 0)
    out["return_rate_capped"] = over
    return out, f"capped {int(over.sum())} corridor-years at return rate {bound:g} (removed {excess:g} returns)"


@_register("exclude_citizens")
def exclude_citizens(panel: pd.DataFrame, *, citizens: list[str] | str) -> tuple[pd.DataFrame, str]:
    """Exclude citizenships (codes or a group: "western_balkans", "visa_free") whose return follows a different regime, e.g. visa-free nationals leaving on their own, as the Commission's rates without the Western Balkans do.

    A list may mix codes and group names.
    """
    items = [citizens] if isinstance(citizens, str) else list(citizens)
    if not items:
        raise ValueError("citizens must not be empty")
    codes_: set[str] = set()
    for item in items:
        if item in CITIZEN_GROUPS:
            codes_ |= CITIZEN_GROUPS[item]()
        elif item.isupper():
            codes_.add(item)
        else:
            raise ValueError(f"unknown citizenship group {item!r}; groups: {sorted(CITIZEN_GROUPS)} (or give upper-case codes)")
    _require(panel, ["citizen"])
    hit = panel["citizen"].astype(str).isin(codes_)
    present = sorted(panel.loc[hit, "citizen"].astype(str).unique())
    absent = sorted(codes_ - set(present))
    note = f"dropped {len(present)} citizenships: {_listing(present, 12)}"
    if absent:
        note += f"; not in panel: {_listing(absent, 6)}"
    return panel.loc[~hit.to_numpy()], note


@_register("balanced")
def balanced(
    panel: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> tuple[pd.DataFrame, str]:
    """Keep corridors observed (non-missing ``columns``) in every year of the window, so that entry and exit of corridors cannot mimic a treatment effect.

    The window is [start, end], by default the panel's first and last year. Rows outside the
    window are kept for corridors that pass.
    """
    columns = list(columns) if columns is not None else ["orders", "returns"]
    _require(panel, ["year", *columns])
    y0 = int(panel["year"].min()) if start is None else start
    y1 = int(panel["year"].max()) if end is None else end
    if y0 > y1:
        raise ValueError(f"start={y0} is after end={y1}")
    window = panel["year"].between(y0, y1)
    ok = panel[columns].notna().all(axis=1) & window
    corr = _corridors(panel)
    n_years = panel.loc[ok.to_numpy(), "year"].groupby(corr[ok]).nunique()
    keep = n_years.reindex(corr.unique(), fill_value=0) == (y1 - y0 + 1)
    kept, dropped = _keep_corridors(panel, keep)
    return kept, f"dropped {len(dropped)} corridors not observed in all years {y0}-{y1} for {columns}: {_listing(dropped)}"


@_register("treatment_variation")
def treatment_variation(
    panel: pd.DataFrame,
    *,
    treatments: list[str] | None = None,
    require: Literal["any", "all"] = "any",
    keep_never_treated: bool = False,
) -> tuple[pd.DataFrame, str]:
    """Keep corridors whose treatment changes within the window: with corridor fixed effects only they identify the effect (never-treated corridors can be kept as controls with ``keep_never_treated``).

    ``treatments`` defaults to the treatment columns of ``add_treatments``; ``require``
    asks for variation in any or in all of them. Always-treated corridors are always dropped.
    """
    from returnstudy.treatments import TREATMENT_TYPES

    cols = list(treatments) if treatments is not None else list(TREATMENT_TYPES)
    missing = [c for c in cols if c not in panel.columns]
    if missing:
        raise KeyError(f"panel has no treatment column(s) {missing}; run add_treatments first")
    corr = _corridors(panel)
    g = panel[cols].groupby(corr)
    varies = g.nunique(dropna=True) > 1
    ok = varies.any(axis=1) if require == "any" else varies.all(axis=1)
    if keep_never_treated:
        never = (g.max().fillna(0) == 0).all(axis=1)
        ok = ok | never
    kept, dropped = _keep_corridors(panel, ok)
    what = "without variation" + ("" if not keep_never_treated else " (never-treated kept)")
    return kept, f"dropped {len(dropped)} corridors {what} in {require} of {cols}: {_listing(dropped)}"


@_register("require_columns")
def require_columns(panel: pd.DataFrame, *, columns: list[str]) -> tuple[pd.DataFrame, str]:
    """Drop rows with a missing value in any of ``columns`` so every model sees the same rows (complete cases)."""
    if not columns:
        raise ValueError("columns must not be empty")
    _require(panel, columns)
    miss = panel[list(columns)].isna()
    per = {c: int(miss[c].sum()) for c in columns}
    bad = miss.any(axis=1).to_numpy()
    return panel.loc[~bad], f"dropped {int(bad.sum())} rows with missing values (per column: {per})"


# --------------------------------------------------------------------------- running


def describe_filters() -> pd.DataFrame:
    """One row per registered step: name, signature and rationale."""
    return pd.DataFrame(
        [{"step": d.name, "signature": d.signature(), "rationale": d.rationale} for d in FILTERS.values()]
    )


def _as_steps(steps: StudySpec | Sequence[Mapping[str, Any] | FilterStep]) -> list[FilterStep]:
    if not isinstance(steps, Sequence) and isinstance(getattr(steps, "filters", None), tuple):  # a StudySpec
        return list(steps.filters)
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise TypeError(f"steps must be a list of {{'step': name, ...}} dicts or a StudySpec, got {type(steps).__name__}")
    out: list[FilterStep] = []
    for i, s in enumerate(steps, start=1):
        if isinstance(s, FilterStep):
            out.append(s if s.position else FilterStep(s.step, dict(s.params), s.enabled, i, s.line, s.source))
            continue
        if not isinstance(s, Mapping):
            raise FilterError(f"filter step {i}: expected a dict with a 'step' key, got {type(s).__name__} {s!r}")
        if "step" not in s:
            raise FilterError(f"filter step {i}: no 'step' key in {dict(s)!r}; valid steps: {sorted(FILTERS)}")
        enabled = s.get("enabled", True)
        if not isinstance(enabled, bool):
            raise FilterError(f"filter step {i} {s['step']!r}: 'enabled' must be true or false, got {enabled!r}")
        params = {k: v for k, v in s.items() if k not in ("step", "enabled")}
        out.append(FilterStep(str(s["step"]), params, enabled, i))
    return out


def _check_step(step: FilterStep) -> tuple[FilterDef, dict[str, Any]]:
    where = step.where()
    if step.step not in FILTERS:
        raise FilterError(f"{where}: unknown step; valid steps: {sorted(FILTERS)}")
    fdef = FILTERS[step.step]
    unknown = sorted(set(step.params) - set(fdef.params))
    if unknown:
        raise FilterError(f"{where}: unknown parameter(s) {unknown}; {fdef.signature()}")
    params: dict[str, Any] = {}
    for name, p in fdef.params.items():
        if name not in step.params:
            if p.default is inspect.Parameter.empty:
                raise FilterError(f"{where}: missing required parameter {name!r}; {fdef.signature()}")
            continue
        value = step.params[name]
        hint = fdef.hints.get(name, Any)
        if not _matches(value, hint):
            raise FilterError(
                f"{where}: parameter {name!r} must be {_hint_name(hint)}, got {type(value).__name__} {value!r}"
            )
        params[name] = _coerce(value, hint)
    return fdef, params


def _format_params(fdef: FilterDef, params: Mapping[str, Any]) -> str:
    """All parameters of a step, given or default, as ``name=value`` text."""
    full = {
        name: params[name] if name in params else p.default
        for name, p in fdef.params.items()
        if name in params or p.default is not inspect.Parameter.empty
    }
    return ", ".join(f"{k}={v!r}" for k, v in full.items())


def validate_steps(steps: StudySpec | Sequence[Mapping[str, Any] | FilterStep]) -> None:
    """Check names, parameter names and parameter types of every step without data."""
    for s in _as_steps(steps):
        _check_step(s)


def _stats(panel: pd.DataFrame) -> dict[str, float]:
    def total(col: str) -> float:
        return float(panel[col].sum(min_count=0)) if col in panel.columns else float("nan")

    return {
        "rows": len(panel),
        "corridors": int(_corridors(panel).nunique()) if len(panel) else 0,
        "orders": total("orders"),
        "returns": total("returns"),
    }


@dataclass
class FilterResult:
    """Filtered panel and the flow table of the steps that produced it."""

    panel: pd.DataFrame
    flow: pd.DataFrame
    steps: list[FilterStep] = field(default_factory=list)

    def summary(self) -> str:
        cols = ["step", "rows_before", "rows_after", "corridors_after", "orders_after", "returns_after"]
        lines = ["Sample filters (rows, corridors, orders and returns after each step)"]
        if self.flow.empty:
            lines.append("  (no steps)")
        else:
            table = self.flow[cols].to_string(index=False, float_format=lambda v: f"{v:,.0f}")
            lines.extend("  " + ln for ln in table.splitlines())
            lines.append("Notes:")
            for r in self.flow.itertuples(index=False):
                lines.append(f"  {r.position}. {r.step}({r.params}): {r.note}")
        vintage = self.panel.attrs.get("vintage")
        if vintage:
            from returnstudy.results import format_vintage

            lines.append(f"Data vintage: {format_vintage(vintage)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return (
            "<div><strong>Sample filters</strong>"
            + self.flow.to_html(index=False, float_format=lambda v: f"{v:,.0f}")
            + f"<p>final sample: {len(self.panel):,} rows, {_stats(self.panel)['corridors']:,} corridors</p>"
            + (f"<p>data vintage: {html.escape(self._vintage_text())}</p>" if self.panel.attrs.get("vintage") else "")
            + "</div>"
        )

    def _vintage_text(self) -> str:
        from returnstudy.results import format_vintage

        return format_vintage(self.panel.attrs.get("vintage"))

    def __repr__(self) -> str:
        """One line; :meth:`summary` is the flow table."""
        before = int(self.flow["rows_before"].iloc[0]) if len(self.flow) else len(self.panel)
        return (
            f"<FilterResult: {len(self.flow)} steps, {before} -> {len(self.panel)} corridor-years, "
            f"{_stats(self.panel)['corridors']} corridors; .summary() for the flow table>"
        )


FLOW_COLUMNS = [
    "position",
    "step",
    "params",
    "enabled",
    "rows_before",
    "rows_after",
    "corridors_before",
    "corridors_after",
    "orders_before",
    "orders_after",
    "returns_before",
    "returns_after",
    "dropped_rows",
    "note",
    "source",
    "line",
]


_FLOW_INTEGERS = ("position", "rows_before", "rows_after", "corridors_before", "corridors_after", "dropped_rows")


def _flow_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The flow records as a table: counts of rows and corridors int64, the spec line Int64."""
    columns: dict[str, Any] = {}
    for c in FLOW_COLUMNS:
        values = [r[c] for r in records]
        if c in _FLOW_INTEGERS:
            columns[c] = np.asarray(values, dtype=np.int64)
        elif c == "line":
            columns[c] = pd.array(values, dtype="Int64")
        else:
            columns[c] = values
    return pd.DataFrame(columns)


def apply_filters(
    panel: pd.DataFrame, steps: StudySpec | Sequence[Mapping[str, Any] | FilterStep]
) -> FilterResult:
    """Run filter steps in order and record the flow of rows, corridors, orders and returns.

    ``steps`` is a list of ``{"step": name, **params}`` dicts (``"enabled": False`` skips a step
    while keeping it in the flow table) or a :class:`StudySpec`. All steps are validated before
    any runs. The result's panel keeps ``attrs`` (data vintage) and gains
    ``attrs["filters"]``, the flow as a list of records. A step that leaves no rows raises
    :class:`FilterError` naming the step, its position and its spec file line.
    """
    plan = _as_steps(steps)
    checked = [_check_step(s) for s in plan]
    attrs = copy.deepcopy(dict(panel.attrs))
    current = panel
    records: list[dict[str, Any]] = []
    for step, (fdef, params) in zip(plan, checked):
        before = _stats(current)
        if step.enabled:
            try:
                out, note = fdef.func(current, **params)
            except (ValueError, KeyError, TypeError) as exc:
                msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                raise FilterError(f"{step.where()}: {msg}") from exc
            if len(out) == 0:
                raise FilterError(f"{step.where()}: leaves zero rows ({note}); {len(current)} rows before this step")
        else:
            out, note = current, "skipped (enabled = false)"
        after = _stats(out)
        log.info("filter %s %s: %d -> %d rows", step.position, step.step, before["rows"], after["rows"])
        records.append(
            {
                "position": step.position,
                "step": step.step,
                "params": _format_params(fdef, params),
                "enabled": step.enabled,
                "rows_before": before["rows"],
                "rows_after": after["rows"],
                "corridors_before": before["corridors"],
                "corridors_after": after["corridors"],
                "orders_before": before["orders"],
                "orders_after": after["orders"],
                "returns_before": before["returns"],
                "returns_after": after["returns"],
                "dropped_rows": before["rows"] - after["rows"],
                "note": note,
                "source": str(step.source) if step.source is not None else "",
                "line": step.line if step.line is not None else pd.NA,
            }
        )
        current = out
    flow = _flow_table(records)
    result = current.copy() if current is panel else current
    result = result.reset_index(drop=True)
    attrs["filters"] = [{**r, "line": None if r["line"] is pd.NA else r["line"]} for r in records]
    result.attrs = freeze_attrs(attrs)
    return FilterResult(panel=result, flow=flow, steps=plan)
