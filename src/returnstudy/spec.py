"""Study specification: a TOML file -> typed, validated configuration.

A spec file holds every analytic choice of a study run: which Eurostat tables and
years, how treatments are coded, the ordered list of sample filters with their
thresholds, the Part 1 data-quality thresholds, and (appended by the modelling and
reporting layers) the model list and report options. Nothing is a hidden constant:
the default study (``data/specs/wodc.toml``) documents each choice in comments.

Sections::

    [study]        name, title, description, references
    [data]         tables, years, data_dir, keep_aggregates, keep_eu_plus_citizens,
                   eu_plus_only, uk_until, zero_fill (arguments of ``load_panel``)
    [treatments]   rule, protocols_as_binding, agreements_dir, uk_in_eu_until,
                   nonbinding_start, unresearched_as_missing, types (``add_treatments``)
    [quality]      thresholds of the Part 1 diagnostics (see ``returnstudy.quality``)
    [[filters]]    one table per step: step = "<name>", enabled = true, <parameters>
    [[models]]     kept as raw dicts for the model layer
    [report]       kept as a raw dict for the report layer

Any other key is an error that names the key, the file and the line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from returnstudy.filter_step import FilterStep
from returnstudy.treatments import ACCESSION_CHOICES, TREATMENT_TYPES
from returnstudy.treatments import RULES as TREATMENT_RULES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "SpecError",
    "StudyInfo",
    "DataSpec",
    "TreatmentSpec",
    "QualitySpec",
    "FilterStep",
    "StudySpec",
    "load_spec",
    "spec_from_dict",
    "default_spec_path",
    "resolve_spec_path",
    "shipped_specs",
    "spec_location",
]

KNOWN_TABLES: tuple[str, ...] = ("migr_eiord", "migr_eirtn", "migr_eipre")


class SpecError(ValueError):
    """Invalid study specification; the message names the file, line and key."""


@dataclass(frozen=True)
class StudyInfo:
    """Descriptive metadata of the study run (free text; no effect on results)."""

    name: str = "unnamed"
    title: str = ""
    description: str = ""
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataSpec:
    """Which data enter the corridor-year panel (arguments of ``load_panel``).

    ``years`` is an inclusive (first, last) pair or None for every year in the data.
    ``data_dir`` None means the package's data cache; a relative path is resolved
    against the directory holding the spec file.
    """

    tables: tuple[str, ...] = KNOWN_TABLES
    years: tuple[int, int] | None = None
    data_dir: Path | None = None
    keep_aggregates: bool = False
    keep_eu_plus_citizens: bool = False
    eu_plus_only: bool = True
    uk_until: int | None = None
    zero_fill: str = "auto"

    def load_panel_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``returnstudy.load_panel``."""
        return {
            "data_dir": self.data_dir,
            "years": self.years,
            "keep_aggregates": self.keep_aggregates,
            "keep_eu_plus_citizens": self.keep_eu_plus_citizens,
            "eu_plus_only": self.eu_plus_only,
            "uk_until": self.uk_until,
            "zero_fill": self.zero_fill,
        }


@dataclass(frozen=True)
class TreatmentSpec:
    """How agreements become corridor-year treatment columns (``add_treatments``).

    ``rule``: "calendar_year" (1 from the year of entry into force), "first_full_year" or
    "share_of_year" (share of the year in force). ``protocols_as_binding``: count an
    implementing protocol to an EU agreement as a binding bilateral agreement (default: its
    own type ``bilateral_protocol``). ``binding_start``: "in_force" (entry into force or
    provisional application; signature only where the table says why) or
    "in_force_or_signed". ``accession``: corridors switched on only by the reporting
    country's EU accession count as "already_treated", are dropped ("drop") or "switch".
    ``unknown_start``: corridor-years after the signature of an instrument whose start is
    unknown are "untreated" or "missing" (NaN).
    ``uk_in_eu_until``: last year the UK is bound by EU instruments. ``nonbinding_start``:
    start undated non-binding arrangements at signature ("signed") or not at all ("in_force").
    ``unresearched_as_missing``: bilateral values of pairs nobody researched are NaN, not 0.
    ``types``: the treatment types the study reports.
    """

    rule: str = "calendar_year"
    protocols_as_binding: bool = False
    agreements_dir: Path | None = None
    uk_in_eu_until: int = 2020
    nonbinding_start: str = "signed"
    unresearched_as_missing: bool = False
    binding_start: str = "in_force"
    unknown_binding: str = "by_type"
    accession: str = "already_treated"
    unknown_start: str = "untreated"
    types: tuple[str, ...] = TREATMENT_TYPES

    def add_treatments_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``returnstudy.add_treatments`` (besides the panel)."""
        return {
            "rule": self.rule,
            "agreements_dir": self.agreements_dir,
            "uk_in_eu_until": self.uk_in_eu_until,
            "protocols_as_binding": self.protocols_as_binding,
            "nonbinding_start": self.nonbinding_start,
            "unresearched_as_missing": self.unresearched_as_missing,
            "binding_start": self.binding_start,
            "unknown_binding": self.unknown_binding,
            "accession": self.accession,
            "unknown_start": self.unknown_start,
        }


@dataclass(frozen=True)
class QualitySpec:
    """Thresholds of the Part 1 data-quality verdicts (``returnstudy.quality_report``)."""

    break_k: float = 5.0
    coverage_min: float = 0.9
    rounding_min: float = 0.95
    rounding_base: float = 5.0
    rate_excess_share_max: float = 0.25
    total_gap_max: float = 0.05

    def kwargs(self) -> dict[str, float | int]:
        """Keyword arguments for ``quality_report``."""
        out: dict[str, float | int] = dataclasses.asdict(self)
        out["rounding_base"] = int(self.rounding_base)
        return out


@dataclass(frozen=True)
class StudySpec:
    """A whole study run, as read from a spec file."""

    study: StudyInfo = field(default_factory=StudyInfo)
    data: DataSpec = field(default_factory=DataSpec)
    treatments: TreatmentSpec = field(default_factory=TreatmentSpec)
    quality: QualitySpec = field(default_factory=QualitySpec)
    filters: tuple[FilterStep, ...] = ()
    models: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None

    def with_filter(self, step: str, **changes: Any) -> StudySpec:
        """A copy of this spec with filter ``step``'s parameters changed (``enabled=True`` switches it on).

        ``KeyError`` if the spec has no such step; the changed parameters are validated when
        the filters run.
        """
        if step not in {f.step for f in self.filters}:
            raise KeyError(f"spec {self.study.name!r} has no filter step {step!r}; steps: {[f.step for f in self.filters]}")
        enabled = changes.pop("enabled", None)
        filters = tuple(
            dataclasses.replace(f, params={**f.params, **changes}, enabled=f.enabled if enabled is None else bool(enabled))
            if f.step == step
            else f
            for f in self.filters
        )
        return dataclasses.replace(self, filters=filters)

    def filter_dicts(self) -> list[dict[str, Any]]:
        """The enabled filter steps as ``{"step": name, **params}`` dicts."""
        return [{"step": f.step, **f.params} for f in self.filters if f.enabled]

    def describe(self) -> str:
        """Short text: file, hash, data choices and the filter pipeline."""
        lines = [f"study spec {self.study.name!r}" + (f" from {self.path}" if self.path else "")]
        if self.sha256:
            lines.append(f"  sha256 {self.sha256}")
        d = self.data
        lines.append(
            f"  data: tables={list(d.tables)} years={d.years} data_dir={d.data_dir} "
            f"keep_aggregates={d.keep_aggregates} uk_until={d.uk_until}"
        )
        t = self.treatments
        lines.append(f"  treatments: rule={t.rule} protocols_as_binding={t.protocols_as_binding}")
        for f in self.filters:
            params = ", ".join(f"{k}={v!r}" for k, v in f.params.items())
            off = "" if f.enabled else "  [disabled]"
            lines.append(f"  filter {f.position}: {f.step}({params}){off}")
        lines.append(f"  models: {len(self.models)}; report keys: {sorted(self.report)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- locating lines

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*(\.|=)")


class _Locator:
    """Find the line of a section header or a key in TOML text (tomllib gives none)."""

    def __init__(self, text: str | None) -> None:
        self._lines = text.splitlines() if text is not None else []

    def _sections(self) -> list[tuple[str, int, int]]:
        """(name, occurrence index, header line) for every header; top level is ('', 0, 0)."""
        out: list[tuple[str, int, int]] = [("", 0, 0)]
        counts: dict[str, int] = {}
        for i, raw in enumerate(self._lines, start=1):
            m = _HEADER.match(raw)
            if m and not raw.lstrip().startswith("#"):
                name = m.group(2).strip().strip("\"'")
                n = counts.get(name, 0)
                counts[name] = n + 1
                out.append((name, n, i))
        return out

    def header(self, section: str, index: int = 0) -> int | None:
        for name, n, line in self._sections():
            if name == section and n == index:
                return line
        return None

    def key(self, section: str, key: str, index: int = 0) -> int | None:
        """Line of ``key = ...`` inside the ``index``-th occurrence of ``section``."""
        sections = self._sections()
        for j, (name, n, line) in enumerate(sections):
            if name != section or n != index:
                continue
            end = sections[j + 1][2] if j + 1 < len(sections) else len(self._lines) + 1
            for k in range(line + 1 if line else 1, end):
                m = _KEY.match(self._lines[k - 1])
                if m and m.group(1).strip("\"'") == key:
                    return k
            return line or None
        return None


# --------------------------------------------------------------------------- validation


def _where(source: Path | None, line: int | None) -> str:
    if source is None and line is None:
        return "study spec"
    s = str(source) if source is not None else "study spec"
    return f"{s}, line {line}" if line else s


def _type_error(
    src: Path | None, line: int | None, section: str, key: str, want: str, value: Any
) -> SpecError:
    return SpecError(
        f"{_where(src, line)}: [{section}] {key} must be {want}, got {type(value).__name__} {value!r}"
    )


def _check_keys(
    table: dict[str, Any], allowed: set[str], section: str, loc: _Locator, src: Path | None, index: int = 0
) -> None:
    for key in table:
        if key not in allowed:
            line = loc.key(section, key, index)
            raise SpecError(
                f"{_where(src, line)}: unknown key {key!r} in [{section}]; allowed keys: {sorted(allowed)}"
            )


def _str(v: Any, src: Path | None, line: int | None, section: str, key: str) -> str:
    if not isinstance(v, str):
        raise _type_error(src, line, section, key, "a string", v)
    return v


def _bool(v: Any, src: Path | None, line: int | None, section: str, key: str) -> bool:
    if not isinstance(v, bool):
        raise _type_error(src, line, section, key, "true or false", v)
    return v


def _int(v: Any, src: Path | None, line: int | None, section: str, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _type_error(src, line, section, key, "an integer", v)
    return v


def _float(v: Any, src: Path | None, line: int | None, section: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _type_error(src, line, section, key, "a number", v)
    return float(v)


def _str_list(v: Any, src: Path | None, line: int | None, section: str, key: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _type_error(src, line, section, key, "a list of strings", v)
    return tuple(v)


def _path(v: Any, src: Path | None, line: int | None, section: str, key: str) -> Path:
    p = Path(_str(v, src, line, section, key)).expanduser()
    if not p.is_absolute() and src is not None:
        p = (src.parent / p).resolve()
    return p


def _parse_study(t: dict[str, Any], loc: _Locator, src: Path | None) -> StudyInfo:
    _check_keys(t, {"name", "title", "description", "references"}, "study", loc, src)
    kw: dict[str, Any] = {}
    for key in ("name", "title", "description"):
        if key in t:
            kw[key] = _str(t[key], src, loc.key("study", key), "study", key)
    if "references" in t:
        kw["references"] = _str_list(t["references"], src, loc.key("study", "references"), "study", "references")
    return StudyInfo(**kw)


def _parse_data(t: dict[str, Any], loc: _Locator, src: Path | None) -> DataSpec:
    allowed = {
        "tables",
        "years",
        "data_dir",
        "keep_aggregates",
        "keep_eu_plus_citizens",
        "eu_plus_only",
        "uk_until",
        "zero_fill",
    }
    _check_keys(t, allowed, "data", loc, src)
    kw: dict[str, Any] = {}
    if "tables" in t:
        line = loc.key("data", "tables")
        tables = _str_list(t["tables"], src, line, "data", "tables")
        bad = [x for x in tables if x not in KNOWN_TABLES]
        if bad:
            raise SpecError(f"{_where(src, line)}: [data] tables: unknown table(s) {bad}; known: {list(KNOWN_TABLES)}")
        kw["tables"] = tables
    if "years" in t:
        line = loc.key("data", "years")
        v = t["years"]
        if (
            not isinstance(v, list)
            or len(v) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        ):
            raise _type_error(src, line, "data", "years", "a list [first, last] of two integers", v)
        if v[0] > v[1]:
            raise SpecError(f"{_where(src, line)}: [data] years: first year {v[0]} is after last year {v[1]}")
        kw["years"] = (v[0], v[1])
    if "data_dir" in t:
        kw["data_dir"] = _path(t["data_dir"], src, loc.key("data", "data_dir"), "data", "data_dir")
    for key in ("keep_aggregates", "keep_eu_plus_citizens", "eu_plus_only"):
        if key in t:
            kw[key] = _bool(t[key], src, loc.key("data", key), "data", key)
    if "uk_until" in t:
        kw["uk_until"] = _int(t["uk_until"], src, loc.key("data", "uk_until"), "data", "uk_until")
    if "zero_fill" in t:
        line = loc.key("data", "zero_fill")
        zf = _str(t["zero_fill"], src, line, "data", "zero_fill")
        if zf not in ("auto", "never"):
            raise SpecError(f"{_where(src, line)}: [data] zero_fill must be 'auto' or 'never', got {zf!r}")
        kw["zero_fill"] = zf
    return DataSpec(**kw)


def _parse_treatments(t: dict[str, Any], loc: _Locator, src: Path | None) -> TreatmentSpec:
    allowed = {
        "rule",
        "protocols_as_binding",
        "agreements_dir",
        "uk_in_eu_until",
        "nonbinding_start",
        "unresearched_as_missing",
        "binding_start",
        "unknown_binding",
        "accession",
        "unknown_start",
        "types",
    }
    _check_keys(t, allowed, "treatments", loc, src)
    kw: dict[str, Any] = {}

    def line(key: str) -> int | None:
        return loc.key("treatments", key)

    if "rule" in t:
        rule = _str(t["rule"], src, line("rule"), "treatments", "rule")
        if rule not in TREATMENT_RULES:
            raise SpecError(f"{_where(src, line('rule'))}: [treatments] rule must be one of {list(TREATMENT_RULES)}, got {rule!r}")
        kw["rule"] = rule
    for key in ("protocols_as_binding", "unresearched_as_missing"):
        if key in t:
            kw[key] = _bool(t[key], src, line(key), "treatments", key)
    if "agreements_dir" in t:
        kw["agreements_dir"] = _path(t["agreements_dir"], src, line("agreements_dir"), "treatments", "agreements_dir")
    if "uk_in_eu_until" in t:
        kw["uk_in_eu_until"] = _int(t["uk_in_eu_until"], src, line("uk_in_eu_until"), "treatments", "uk_in_eu_until")
    if "nonbinding_start" in t:
        v = _str(t["nonbinding_start"], src, line("nonbinding_start"), "treatments", "nonbinding_start")
        if v not in ("signed", "in_force"):
            raise SpecError(
                f"{_where(src, line('nonbinding_start'))}: [treatments] nonbinding_start must be 'signed' or 'in_force', got {v!r}"
            )
        kw["nonbinding_start"] = v
    for key, choices in (
        ("binding_start", ("in_force", "in_force_or_signed")),
        ("unknown_binding", ("by_type", "drop")),
        ("accession", ACCESSION_CHOICES),
        ("unknown_start", ("untreated", "missing")),
    ):
        if key in t:
            v = _str(t[key], src, line(key), "treatments", key)
            if v not in choices:
                raise SpecError(f"{_where(src, line(key))}: [treatments] {key} must be one of {list(choices)}, got {v!r}")
            kw[key] = v
    if "types" in t:
        types = _str_list(t["types"], src, line("types"), "treatments", "types")
        bad = [x for x in types if x not in TREATMENT_TYPES]
        if bad:
            raise SpecError(f"{_where(src, line('types'))}: [treatments] types: unknown type(s) {bad}; known: {list(TREATMENT_TYPES)}")
        kw["types"] = types
    return TreatmentSpec(**kw)


def _parse_quality(t: dict[str, Any], loc: _Locator, src: Path | None) -> QualitySpec:
    names = {f.name for f in dataclasses.fields(QualitySpec)}
    _check_keys(t, names, "quality", loc, src)
    kw = {k: _float(v, src, loc.key("quality", k), "quality", k) for k, v in t.items()}
    for k, v in kw.items():
        if v < 0 or (k not in ("break_k", "rounding_base") and v > 1) or (k == "rounding_base" and (v < 1 or v != int(v))):
            raise SpecError(f"{_where(src, loc.key('quality', k))}: [quality] {k} = {v} is out of range")
    return QualitySpec(**kw)


def _parse_filters(
    entries: Any, loc: _Locator, src: Path | None, validate: bool
) -> tuple[FilterStep, ...]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SpecError(f"{_where(src, loc.header('filters'))}: 'filters' must be an array of tables ([[filters]])")
    steps: list[FilterStep] = []
    for i, entry in enumerate(entries):
        line = loc.header("filters", i)
        if "step" not in entry:
            raise SpecError(f"{_where(src, line)}: [[filters]] entry {i + 1} has no 'step' key")
        name = _str(entry["step"], src, loc.key("filters", "step", i), "filters", "step")
        enabled = True
        if "enabled" in entry:
            enabled = _bool(entry["enabled"], src, loc.key("filters", "enabled", i), "filters", "enabled")
        params = {k: v for k, v in entry.items() if k not in ("step", "enabled")}
        steps.append(FilterStep(step=name, params=params, enabled=enabled, position=i + 1, line=line, source=src))
    if validate:
        from returnstudy.filters import validate_steps  # local import: the filter registry is heavy

        validate_steps(steps)
    return tuple(steps)


_SECTIONS = {"study", "data", "treatments", "quality", "filters", "models", "report"}


def spec_from_dict(
    raw: dict[str, Any], *, source: Path | None = None, text: str | None = None, validate_filters: bool = True
) -> StudySpec:
    """Build a :class:`StudySpec` from a parsed TOML mapping.

    ``source`` and ``text`` (the file name and its text) only serve error messages with line
    numbers. ``validate_filters`` checks step names and parameter types against the filter
    registry at load time, so that a typo fails before any data is read.
    """
    loc = _Locator(text)
    for key in raw:
        if key not in _SECTIONS:
            line = loc.header(key) or loc.key("", key)
            raise SpecError(
                f"{_where(source, line)}: unknown key {key!r}; allowed top-level sections: {sorted(_SECTIONS)}"
            )
    for key in ("study", "data", "treatments", "quality", "report"):
        if key in raw and not isinstance(raw[key], dict):
            raise SpecError(f"{_where(source, loc.key('', key))}: {key!r} must be a table ([{key}])")
    models = raw.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise SpecError(f"{_where(source, loc.header('models'))}: 'models' must be an array of tables ([[models]])")
    return StudySpec(
        study=_parse_study(raw.get("study", {}), loc, source),
        data=_parse_data(raw.get("data", {}), loc, source),
        treatments=_parse_treatments(raw.get("treatments", {}), loc, source),
        quality=_parse_quality(raw.get("quality", {}), loc, source),
        filters=_parse_filters(raw.get("filters", []), loc, source, validate_filters),
        models=[dict(m) for m in models],
        report=dict(raw.get("report", {})),
        path=source,
    )


def default_spec_path() -> Path:
    """``data/specs/wodc.toml`` in the project data directory."""
    from returnstudy.paths import project_data_dir

    return project_data_dir() / "specs" / "wodc.toml"


def shipped_specs() -> dict[str, Path]:
    """The study specs shipped with the package, by name (file name without ``.toml``).

    Multiverse grids (files with a top-level ``[grid]`` table, e.g. ``multiverse.toml``) live
    beside the specs but are not specs; they are left out.
    """
    from returnstudy.paths import project_data_dir

    files = sorted((project_data_dir() / "specs").glob("*.toml"))
    return {f.stem: f for f in files if not any(line.strip() == "[grid]" for line in f.read_text(encoding="utf-8").splitlines())}


def resolve_spec_path(path: str | Path | None = None) -> Path:
    """A spec file: an existing path, else a shipped spec by name (``"wodc"`` or ``"wodc.toml"``).

    ``FileNotFoundError`` lists the shipped specs when neither exists.
    """
    if path is None:
        return default_spec_path()
    p = Path(path).expanduser()
    if p.is_file():
        return p
    shipped = shipped_specs()
    name = p.name[: -len(".toml")] if p.name.endswith(".toml") else p.name
    if p.parent == Path(".") and name in shipped:
        return shipped[name]
    raise FileNotFoundError(
        f"study spec not found: {p} (neither a file nor a shipped spec); shipped specs: {sorted(shipped)} "
        "(give a name or a path to a .toml file; 'returnstudy specs' lists them)"
    )


def spec_location(spec: StudySpec, section: str, index: int = 0, key: str | None = None) -> str:
    """'wodc.toml, line 172' for error messages about entry ``index`` (0-based) of ``[[section]]``.

    With ``key``, the line of that key inside the entry; without, the entry's header line.
    """
    text = None
    if spec.path is not None and spec.path.is_file():
        text = spec.path.read_text(encoding="utf-8")
    loc = _Locator(text)
    line = loc.key(section, key, index) if key else loc.header(section, index)
    return _where(spec.path, line)


def load_spec(path: str | Path | None = None, *, validate_filters: bool = True) -> StudySpec:
    """Read and validate a study spec; default ``data/specs/wodc.toml``.

    ``path`` is a file, or the name of a shipped spec (``"third_country_2014_2023"``; see
    :func:`shipped_specs`), found from any working directory. The returned spec carries
    ``path`` and the ``sha256`` of the file bytes so a result can name exactly which
    configuration produced it.
    """
    p = resolve_spec_path(path)
    data = p.read_bytes()
    text = data.decode("utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: invalid TOML: {exc}") from exc
    spec = spec_from_dict(raw, source=p, text=text, validate_filters=validate_filters)
    return dataclasses.replace(spec, sha256=hashlib.sha256(data).hexdigest())
