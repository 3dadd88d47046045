"""The multiverse grid: analytic choices as data (``data/specs/multiverse.toml``).

A grid has *dimensions* (window, minimum orders, switch-on rule, estimator, clustering, ...),
each with named *options*; an option changes the study spec through treatment-coding
arguments (``add_treatments``), filter-step parameters and estimator arguments. A
*specification* is one option per dimension. :meth:`Grid.specifications` enumerates them under
three designs: ``"full"`` (every combination), ``"one_at_a_time"`` (the baseline and each
option alone) and ``"sample"`` (a seeded random subset of the full design). Invalid
combinations are removed by the grid's declared ``[[exclude]]`` rules and counted per rule;
a dimension that does not apply to an estimator (``applies_to``) is ``"n/a"`` there.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

NOT_APPLICABLE = "n/a"
DESIGNS = ("full", "one_at_a_time", "sample")


class GridError(ValueError):
    """An invalid multiverse grid; the message names the file and the entry."""


@dataclass(frozen=True)
class Option:
    """One choice of a dimension and what it changes."""

    name: str
    rationale: str = ""
    treatments: Mapping[str, Any] = field(default_factory=dict)
    filters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dimension:
    """A named analytic choice with its options; ``applies_to`` maps a dimension name to the
    options under which this dimension matters (elsewhere it is ``"n/a"``)."""

    name: str
    options: tuple[Option, ...]
    baseline: str
    rationale: str = ""
    applies_to: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    optional: bool = False

    def option(self, name: str) -> Option:
        for o in self.options:
            if o.name == name:
                return o
        raise KeyError(f"dimension {self.name!r} has no option {name!r}; options: {[o.name for o in self.options]}")


@dataclass(frozen=True)
class ExcludeRule:
    """Exclude a specification whose option is in ``when[d]`` for every dimension ``d`` named."""

    reason: str
    when: Mapping[str, tuple[str, ...]]

    def matches(self, choices: Mapping[str, str]) -> bool:
        return all(choices.get(d) in opts for d, opts in self.when.items())


@dataclass(frozen=True)
class Specification:
    """One point of the multiverse: a choice per dimension and the resolved arguments.

    ``choices``: dimension -> option name (``"n/a"`` where a dimension does not apply);
    ``treatments``: ``add_treatments`` overrides; ``filters``: step -> parameter overrides;
    ``model``: estimator arguments including ``estimator``.
    """

    choices: Mapping[str, str]
    treatments: Mapping[str, Any]
    filters: Mapping[str, Mapping[str, Any]]
    model: Mapping[str, Any]

    @property
    def key(self) -> str:
        """Canonical text of the choices, e.g. ``"window=2012-2016|min_orders=10|..."``."""
        return "|".join(f"{d}={o}" for d, o in self.choices.items())

    def coding_key(self) -> str:
        return _canonical(self.treatments)

    def filter_key(self) -> str:
        return _canonical(self.filters)

    def content(self) -> str:
        """Canonical JSON of everything that determines the result (for checkpoint hashes)."""
        return _canonical({"choices": dict(self.choices), "treatments": self.treatments, "filters": self.filters,
                           "model": self.model})

    def seed(self, base: int = 0) -> int:
        """Per-specification seed derived from the key: identical on every backend and worker."""
        h = int(hashlib.sha256(self.key.encode()).hexdigest()[:16], 16)
        return int(np.random.SeedSequence([int(base), h]).generate_state(1)[0])


def _canonical(obj: Any) -> str:
    def norm(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {str(k): norm(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        return x

    return json.dumps(norm(obj), sort_keys=True, default=str)


@dataclass(frozen=True)
class Grid:
    """A multiverse grid read from TOML (see ``data/specs/multiverse.toml``)."""

    name: str
    dimensions: tuple[Dimension, ...]
    exclude: tuple[ExcludeRule, ...] = ()
    treatments: tuple[str, ...] = ()
    focal_treatments: tuple[str, ...] = ()
    spec: str | None = None
    path: Path | None = None
    sha256: str | None = None
    unavailable: tuple[str, ...] = ()  # optional dimensions left out, with the reason
    default_design: str = "full"
    default_n: int | None = None
    default_seed: int = 0

    def dimension(self, name: str) -> Dimension:
        for d in self.dimensions:
            if d.name == name:
                return d
        raise KeyError(f"grid {self.name!r} has no dimension {name!r}; dimensions: {[d.name for d in self.dimensions]}")

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def baseline(self) -> dict[str, str]:
        return self._applicable({d.name: d.baseline for d in self.dimensions})

    def _applicable(self, choices: dict[str, str]) -> dict[str, str]:
        out = dict(choices)
        for d in self.dimensions:
            if any(choices.get(other) not in opts for other, opts in d.applies_to.items()):
                out[d.name] = NOT_APPLICABLE
        return out

    def resolve(self, choices: Mapping[str, str]) -> Specification:
        """The specification of ``choices`` (dimension -> option) with its merged arguments."""
        treatments: dict[str, Any] = {}
        filters: dict[str, dict[str, Any]] = {}
        model: dict[str, Any] = {}
        for d in self.dimensions:
            name = choices[d.name]
            if name == NOT_APPLICABLE:
                continue
            o = d.option(name)
            treatments.update(o.treatments)
            for step, params in o.filters.items():
                filters.setdefault(step, {}).update(params)
            model.update(o.model)
        for k, v in list(model.items()):
            if isinstance(v, list):
                model[k] = tuple(v)
        return Specification(choices={d.name: choices[d.name] for d in self.dimensions}, treatments=treatments,
                             filters=filters, model=model)

    def size(self, design: str = "full") -> int:
        """Number of specifications of ``design`` (``"full"`` or ``"one_at_a_time"``) after the exclusions."""
        return len(self._codes(design)[0])

    def specifications(self, design: str = "full", n: int | None = None, seed: int = 0) -> tuple[list[Specification], dict[str, int]]:
        """Specifications of ``design`` and the number excluded by each rule (reason -> count).

        ``"full"``: every combination of options (dimensions that do not apply are ``"n/a"``,
        so combinations differing only there are one specification). ``"one_at_a_time"``: the
        baseline, then each non-baseline option of each dimension with all others at baseline.
        ``"sample"``: ``n`` specifications drawn without replacement from the full design with
        ``numpy.random.default_rng(seed)``, in grid order.
        """
        codes, excluded = self._codes("full" if design == "sample" else design)
        if design == "sample":
            if n is None or n < 1:
                raise ValueError("design='sample' needs n >= 1 (the number of specifications to draw)")
            if n < len(codes):
                codes = codes[np.sort(np.random.default_rng(seed).choice(len(codes), size=n, replace=False))]
        return [self.resolve(c) for c in self._as_choices(codes)], dict(excluded)

    def _choices(self, design: str) -> tuple[list[dict[str, str]], dict[str, int]]:
        """The choices (dimension -> option name) of every specification of ``design``, in grid order."""
        codes, excluded = self._codes(design)
        return self._as_choices(codes), dict(excluded)

    def _as_choices(self, codes: np.ndarray) -> list[dict[str, str]]:
        labels = [[o.name for o in d.options] + [NOT_APPLICABLE] for d in self.dimensions]  # code -1: n/a
        names = self.names
        return [dict(zip(names, (labels[i][k] for i, k in enumerate(row)))) for row in codes.tolist()]

    def _codes(self, design: str) -> tuple[np.ndarray, dict[str, int]]:
        from returnstudy.reuse import reused  # one enumeration per grid and design within a report

        key = (self.sha256, repr(self.dimensions), repr(self.exclude), design)
        return reused("grid codes", key, lambda: self._enumerate(design), copy=lambda v: (v[0], dict(v[1])))

    def _enumerate(self, design: str) -> tuple[np.ndarray, dict[str, int]]:
        """Option codes (specifications x dimensions, -1 = n/a; read-only) of ``design`` in grid
        order, and the number of specifications each exclusion rule removed.

        Combinations are numbered in ``itertools.product`` order (first dimension slowest);
        dimensions that do not apply become n/a, duplicates keep their first occurrence, and a
        specification matching a rule is counted for the first such rule and removed.
        """
        if design not in DESIGNS:
            raise ValueError(f"design={design!r}: expected one of {list(DESIGNS)}")
        dims = self.dimensions
        sizes = [len(d.options) for d in dims]
        pos = {d.name: i for i, d in enumerate(dims)}
        code_of = [{o.name: k for k, o in enumerate(d.options)} for d in dims]

        def codes_in(j: int, opts: Sequence[str]) -> list[int]:
            return [code_of[j][o] for o in opts if o in code_of[j]] + ([-1] if NOT_APPLICABLE in opts else [])

        if design == "one_at_a_time":
            base = [code_of[i][d.baseline] for i, d in enumerate(dims)]
            rows = [base] + [base[:i] + [k] + base[i + 1:] for i, d in enumerate(dims)
                             for k, o in enumerate(d.options) if o.name != d.baseline]
            table = np.array(rows, dtype=np.int64).reshape(len(rows), len(dims))
            cols = [table[:, i] for i in range(len(dims))]
        else:
            total = math.prod(sizes)
            flat = np.arange(total, dtype=np.int32 if total < 2**31 else np.int64)
            small = np.int8 if max(sizes) < 127 else np.int32  # option codes (and -1) in the narrowest type
            cols, stride = [], total
            for n_opt in sizes:
                stride //= n_opt
                cols.append(((flat // stride) % n_opt).astype(small))
            del flat
        # a dimension is n/a where another dimension's option is outside its applies_to list
        mapped = list(cols)
        for i, d in enumerate(dims):
            if d.applies_to:
                na = np.zeros(len(cols[i]), dtype=bool)
                for other, opts in d.applies_to.items():
                    j = pos[other]
                    na |= ~np.isin(cols[j], codes_in(j, opts))
                mapped[i] = np.where(na, np.array(-1, dtype=cols[i].dtype), cols[i])
        # first occurrence of each distinct combination, in grid order
        n_keys = math.prod(n + 1 for n in sizes)
        if n_keys < 2**62:
            key = np.zeros(len(cols[0]) if cols else 0, dtype=np.int32 if n_keys < 2**31 else np.int64)
            for m, n_opt in zip(mapped, sizes):
                key *= n_opt + 1
                key += m
                key += 1
            first = np.unique(key, return_index=True)[1]
        else:  # pragma: no cover - grids beyond 2^62 combinations cannot be enumerated anyway
            first = np.unique(np.stack(mapped, axis=1), axis=0, return_index=True)[1]
        first.sort()
        codes = np.stack([m[first] for m in mapped], axis=1) if mapped else np.zeros((0, 0), dtype=np.int64)
        keep = np.ones(len(codes), dtype=bool)
        excluded: dict[str, int] = {r.reason: 0 for r in self.exclude}
        for r in self.exclude:
            hit = keep.copy()
            for dim, opts in r.when.items():
                j = pos[dim]
                hit &= np.isin(codes[:, j], codes_in(j, opts))
            excluded[r.reason] += int(hit.sum())
            keep &= ~hit
        for reason, k in excluded.items():
            if k:
                log.info("grid %s: %d specifications excluded: %s", self.name, k, reason)
        out = np.ascontiguousarray(codes[keep])
        out.setflags(write=False)
        return out, excluded

    def describe(self) -> str:
        """One line per dimension: its options and rationale."""
        lines = [f"multiverse grid {self.name!r}" + (f" ({self.path})" if self.path else "")]
        for d in self.dimensions:
            opts = ", ".join(o.name + (" [baseline]" if o.name == d.baseline else "") for o in d.options)
            lines.append(f"  {d.name}: {opts} -- {d.rationale}")
        for r in self.exclude:
            lines.append(f"  exclude {dict(r.when)}: {r.reason}")
        for u in self.unavailable:
            lines.append(f"  left out: {u}")
        return "\n".join(lines)


def default_grid_path() -> Path:
    from returnstudy.paths import project_data_dir

    return project_data_dir() / "specs" / "multiverse.toml"


def _err(src: Path | None, what: str) -> GridError:
    return GridError(f"{src or 'multiverse grid'}: {what}")


def _coding_arguments() -> set[str]:
    from returnstudy.treatments import add_treatments

    return set(inspect.signature(add_treatments).parameters) - {"panel"}


def grid_from_dict(raw: Mapping[str, Any], source: Path | None = None, sha256: str | None = None) -> Grid:
    """Validate a parsed grid TOML; ``GridError`` names the file, dimension and key."""
    for key in raw:
        if key not in ("grid", "dimensions", "exclude"):
            raise _err(source, f"unknown top-level key {key!r}; allowed: ['dimensions', 'exclude', 'grid']")
    head = raw.get("grid", {})
    dims_raw = raw.get("dimensions")
    if not isinstance(dims_raw, list) or not dims_raw:
        raise _err(source, "no [[dimensions]] entries")
    coding_args = _coding_arguments()
    dims: list[Dimension] = []
    unavailable: list[str] = []
    for i, d in enumerate(dims_raw, start=1):
        allowed = {"name", "rationale", "baseline", "options", "applies_to", "optional"}
        bad = sorted(set(d) - allowed)
        if bad:
            raise _err(source, f"[[dimensions]] entry {i}: unknown key(s) {bad}; allowed: {sorted(allowed)}")
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise _err(source, f"[[dimensions]] entry {i} has no name")
        opts_raw = d.get("options")
        if not isinstance(opts_raw, list) or len(opts_raw) < 1:
            raise _err(source, f"dimension {name!r} has no options")
        opts = []
        for o in opts_raw:
            extra = sorted(set(o) - {"name", "rationale", "treatments", "filters", "model"})
            if extra:
                raise _err(source, f"dimension {name!r}, option {o.get('name')!r}: unknown key(s) {extra}; "
                                   "allowed: ['filters', 'model', 'name', 'rationale', 'treatments']")
            if not o.get("rationale"):
                raise _err(source, f"dimension {name!r}, option {o.get('name')!r}: a one-line rationale is required")
            opts.append(Option(name=str(o["name"]), rationale=str(o["rationale"]), treatments=dict(o.get("treatments", {})),
                               filters={k: dict(v) for k, v in o.get("filters", {}).items()}, model=dict(o.get("model", {}))))
        names = [o.name for o in opts]
        if len(set(names)) != len(names):
            raise _err(source, f"dimension {name!r}: duplicate option names {names}")
        baseline = d.get("baseline", names[0])
        if baseline not in names:
            raise _err(source, f"dimension {name!r}: baseline {baseline!r} is not one of its options {names}")
        if not d.get("rationale"):
            raise _err(source, f"dimension {name!r}: a one-line rationale is required")
        unknown_args = sorted({k for o in opts for k in o.treatments} - coding_args)
        if unknown_args:
            msg = f"dimension {name!r}: add_treatments has no argument(s) {unknown_args}"
            if d.get("optional"):
                log.warning("multiverse grid: %s; the dimension is left out", msg)
                unavailable.append(msg)
                continue
            raise _err(source, f"{msg}; valid: {sorted(coding_args)}")
        dims.append(Dimension(name=name, options=tuple(opts), baseline=baseline, rationale=str(d["rationale"]),
                              applies_to={k: tuple(v) for k, v in d.get("applies_to", {}).items()},
                              optional=bool(d.get("optional", False))))
    if not dims:
        raise _err(source, "no [[dimensions]] entries left (every optional dimension is unavailable)")
    by_name = {d.name: d for d in dims}
    if len(by_name) != len(dims):
        raise _err(source, f"duplicate dimension names {[d.name for d in dims]}")
    for d in dims:
        for other, opts in d.applies_to.items():
            if other not in by_name:
                raise _err(source, f"dimension {d.name!r}: applies_to names unknown dimension {other!r}")
            missing = sorted(set(opts) - {o.name for o in by_name[other].options})
            if missing:
                raise _err(source, f"dimension {d.name!r}: applies_to {other} options {missing} do not exist")
    design = str(head.get("default_design", "full"))
    if design not in DESIGNS:
        raise _err(source, f"[grid] default_design = {design!r}: expected one of {list(DESIGNS)}")
    if design == "sample" and not isinstance(head.get("default_n"), int):
        raise _err(source, "[grid] default_design = 'sample' needs an integer default_n")
    rules = []
    for j, r in enumerate(raw.get("exclude", []), start=1):
        if not r.get("reason") or not isinstance(r.get("when"), dict) or not r["when"]:
            raise _err(source, f"[[exclude]] rule {j} needs a reason and a non-empty `when` table")
        when = {}
        for dim, opts in r["when"].items():
            if dim not in by_name:
                if any(dim in u for u in unavailable):
                    continue
                raise _err(source, f"[[exclude]] rule {j}: unknown dimension {dim!r}; dimensions: {list(by_name)}")
            opts = (opts,) if isinstance(opts, str) else tuple(opts)
            missing = sorted(set(opts) - {o.name for o in by_name[dim].options})
            if missing:
                raise _err(source, f"[[exclude]] rule {j}: dimension {dim!r} has no option(s) {missing}")
            when[dim] = opts
        if when:
            rules.append(ExcludeRule(reason=str(r["reason"]), when=when))
    return Grid(name=str(head.get("name", "multiverse")), dimensions=tuple(dims), exclude=tuple(rules),
                treatments=tuple(head.get("treatments", ())), focal_treatments=tuple(head.get("focal_treatments", ())),
                spec=head.get("spec"), path=source, sha256=sha256, unavailable=tuple(unavailable),
                default_design=design, default_n=head.get("default_n"), default_seed=int(head.get("default_seed", 0)))


def load_grid(path: str | Path | None = None) -> Grid:
    """Read a grid TOML (default ``data/specs/multiverse.toml``)."""
    p = Path(path) if path is not None else default_grid_path()
    if not p.is_file():
        raise FileNotFoundError(f"multiverse grid not found: {p}")
    data = p.read_bytes()
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{p}: invalid TOML: {exc}") from exc
    return grid_from_dict(raw, source=p, sha256=hashlib.sha256(data).hexdigest())


def grid_from_dimensions(dimensions: Sequence[Dimension], name: str = "custom", **kwargs: Any) -> Grid:
    """A grid built in Python (tests, notebooks)."""
    return Grid(name=name, dimensions=tuple(dimensions), **kwargs)
