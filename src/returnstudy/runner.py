"""Run a study spec end to end: data -> treatments -> filters -> models.

This module only wires the stages together (DESIGN.md: data flows one way); the
CLI's ``estimate`` and ``report`` commands and the notebooks call :func:`run_study`.
"""

from __future__ import annotations

import contextlib
import contextvars
import html
import importlib
import inspect
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnstudy._progress import progress as _progress
from returnstudy.identification import switching_counts
from returnstudy.results import format_last_update, vintage_label
from returnstudy.spec import TREATMENT_TYPES, StudySpec, load_spec, spec_location

log = logging.getLogger(__name__)

ESTIMATORS: dict[str, str] = {
    "twfe": "returnstudy.models.twfe:twfe",
    "ppml": "returnstudy.models.ppml:ppml",
    "event_study": "returnstudy.models.event_study:event_study",
    "did_imputation": "returnstudy.models.imputation:did_imputation",
    "sun_abraham": "returnstudy.models.sun_abraham:sun_abraham",
    "callaway_santanna": "returnstudy.models.callaway_santanna:callaway_santanna",
    "etwfe": "returnstudy.models.etwfe:etwfe",
}
RESERVED_MODEL_KEYS = {"name", "estimator", "label", "headline"}

EFFECT_COLUMNS = [
    "spec", "model", "estimator", "treatment", "term", "estimate", "std_error", "ci_low", "ci_high",
    "irr", "pct_effect", "pct_ci_low", "pct_ci_high", "p_value", "n_obs", "n_corridors", "years", "n_clusters", "cluster", "vintage",
    "switching_corridors", "switching_citizenships", "status", "error",
]

#: Estimators whose ``treatment`` must have ``{treatment}_cohort`` (adoption year) columns.
COHORT_ESTIMATORS = {"event_study", "did_imputation", "sun_abraham", "callaway_santanna", "etwfe"}
#: Model arguments that name panel columns, and the kind of column each names.
COLUMN_ARGUMENTS = {
    "treatment": "treatment", "treatments": "treatment",
    "fe": "grouping", "cluster": "grouping", "unit": "grouping", "time": "grouping", "cohort": "variable",
    "outcome": "variable", "exposure": "variable", "weights": "variable", "controls": "variable",
}
_GROUPINGS = ("corridor", "geo", "citizen", "year")
_VARIABLES = ("returns", "orders", "return_rate", "returns_third_country", "found_illegal", "orders_lag1")

_KEEP_GOING: contextvars.ContextVar[bool] = contextvars.ContextVar("returnstudy_keep_going", default=False)


class ModelSpecError(ValueError):
    """A ``[[models]]`` entry that cannot be run; the message names the spec file, line and model."""


@contextlib.contextmanager
def keep_going(enabled: bool = True) -> Iterator[None]:
    """Within this block, :func:`run_study` calls without ``keep_going=`` record failed models
    instead of raising (for callers such as ``build_report`` that run studies indirectly)."""
    token = _KEEP_GOING.set(enabled)
    try:
        yield
    finally:
        _KEEP_GOING.reset(token)


def estimator(name: str) -> Callable[..., Any]:
    """The estimator function registered under ``name`` (``ModelSpecError`` if unknown)."""
    if name not in ESTIMATORS:
        raise ModelSpecError(f"unknown estimator {name!r}; available: {sorted(ESTIMATORS)}")
    module, attr = ESTIMATORS[name].split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class ModelRun:
    """One ``[[models]]`` entry and what came of it."""

    name: str
    estimator: str
    params: dict[str, Any]
    result: Any = None
    error: str | None = None
    label: str = ""
    index: int = 0  # 0-based position among the spec's [[models]] entries

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def status(self) -> str:
        """"ok", "failed" (with ``error``) or "not run"."""
        return "ok" if self.ok else ("failed" if self.error else "not run")

    def treatments(self) -> list[str]:
        """The treatment columns this model estimates (from its arguments)."""
        ts = self.params.get("treatments", self.params.get("treatment"))
        if ts is None:
            return []
        return [ts] if isinstance(ts, str) else [str(t) for t in ts]


@dataclass(repr=False)
class StudyRun:
    """Everything one spec produced: the panel, the filtered sample, the model results.

    ``data_dir``: the directory the Eurostat tables were read from (None: the cache).
    """

    spec: StudySpec
    panel: pd.DataFrame
    filtered: Any  # returnstudy.filters.FilterResult
    models: list[ModelRun] = field(default_factory=list)
    data_dir: Path | None = None

    def __repr__(self) -> str:
        n_ok = sum(m.ok for m in self.models)
        return (
            f"<StudyRun {self.name!r}: {len(self.models)} models ({n_ok} ok), sample {len(self.sample)} corridor-years; "
            ".summary() for details>"
        )

    def summary(self) -> str:
        """Data, sample, filters and every model's effects (the long form of ``repr``)."""
        cols = ["model", "treatment", "estimate", "ci_low", "ci_high", "pct_effect", "p_value", "n_obs", "status"]
        with pd.option_context("display.width", 100, "display.max_columns", 20, "display.max_rows", 500):
            table = self.effects()[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}")
        return self.header() + "\n\n" + table

    def _repr_html_(self) -> str:
        head = "".join(f"<li>{html.escape(line)}</li>" for line in self.header().splitlines())
        eff = self.effects().drop(columns=["spec", "vintage"])
        return f"<div><strong>Study run {html.escape(self.name)}</strong><ul>{head}</ul>{eff.to_html(index=False)}</div>"

    def data_source(self) -> str:
        """"cache <dir>" or the directory the tables were read from."""
        if self.data_dir is None:
            from returnstudy.data.cache import default_cache_dir

            return f"cache ({default_cache_dir()})"
        return f"directory {self.data_dir}"

    def sample_line(self) -> str:
        """One line: vintage, sample (rows, corridors, years) and the filters applied."""
        s = self.sample
        years = f"{int(s['year'].min())}-{int(s['year'].max())}" if len(s) else "none"
        steps = [f.step for f in self.spec.filters if f.enabled]
        return (
            f"data {vintage_label(self.panel.attrs.get('vintage'))}; sample {len(s)} corridor-years, "
            f"{s['corridor'].nunique()} corridors, years {years}; filters: {', '.join(steps) or 'none'}"
        )

    @property
    def sample(self) -> pd.DataFrame:
        return self.filtered.panel

    @property
    def name(self) -> str:
        return self.spec.study.name

    def vintage_line(self) -> str:
        """One line naming each source table, its LAST UPDATE values and sha256."""
        parts = []
        for code, v in sorted((self.panel.attrs.get("vintage") or {}).items()):
            parts.append(f"{code} [LAST UPDATE {format_last_update(v.get('last_update'))}; sha256 {str(v.get('sha256'))[:12]}]")
        return "; ".join(parts) or "not recorded"

    def header(self) -> str:
        """What data this run used and what it covers."""
        s = self.sample
        years = (int(s["year"].min()), int(s["year"].max())) if len(s) else (None, None)
        return (
            f"spec {self.name} ({self.spec.path.name if self.spec.path else 'in memory'}, sha256 {str(self.spec.sha256)[:12]}) "
            f"on data from {self.data_source()}\n"
            f"sample: {len(s)} corridor-years, {s['corridor'].nunique()} corridors, {s['geo'].nunique()} reporting countries, "
            f"{s['citizen'].nunique()} citizenships, years {years[0]}-{years[1]}\n"
            f"vintage: {self.vintage_line()}"
        )

    def effects(self) -> pd.DataFrame:
        """Tidy table of the treatment effects of every model (event studies excluded).

        A model that failed (``run_study(keep_going=True)``) is kept as one row per treatment
        with ``status="failed"``, its ``error`` and no estimate: never silently missing.
        """
        rows = []
        for m in self.models:
            if not m.ok:
                for t in m.treatments() or [""]:
                    rows.append({"spec": self.name, "model": m.name, "estimator": m.estimator, "treatment": t, "term": t,
                                 "status": m.status, "error": m.error or ""})
                continue
            if m.estimator == "event_study" or m.params.get("event_time"):
                continue
            res = m.result
            table = res.table
            single = m.params.get("treatment")
            for term, r in table.iterrows():
                treatment = term if term in TREATMENT_TYPES else single
                if treatment is None:
                    continue
                # corridors / citizenships whose treatment varies among the rows this model used
                n_corr, n_cit, _ = switching_counts(res, self.sample, treatment)
                rows.append({**_effect_row(self.name, m, res, treatment, term, r),
                             "switching_corridors": n_corr, "switching_citizenships": n_cit})
        return pd.DataFrame(rows, columns=EFFECT_COLUMNS)

    def event_studies(self) -> list[ModelRun]:
        return [m for m in self.models if m.ok and (m.estimator == "event_study" or m.params.get("event_time"))]


def _effect_row(spec: str, m: ModelRun, res: Any, treatment: str, term: Any, r: pd.Series) -> dict[str, Any]:
    info = res.info
    years = info.get("years") or (None, None)
    return {
        "spec": spec,
        "model": m.name,
        "estimator": m.estimator,
        "treatment": treatment,
        "term": str(term),
        **{c: float(r[c]) if c in r and pd.notna(r[c]) else np.nan for c in
           ("estimate", "std_error", "ci_low", "ci_high", "irr", "pct_effect", "pct_ci_low", "pct_ci_high", "p_value")},
        "n_obs": int(info.get("n_obs", 0)),
        "n_corridors": int(info.get("n_corridors", 0) or 0),
        "years": f"{years[0]}-{years[1]}",
        "n_clusters": info.get("n_clusters"),
        "cluster": str(info.get("cluster")),
        "vintage": vintage_label(info.get("vintage")),
        "status": "ok",
        "error": "",
    }


def _model_runs(spec: StudySpec) -> list[ModelRun]:
    runs = []
    if not spec.models:
        raise ModelSpecError(
            f"{spec.path or 'study spec'}: spec {spec.study.name!r} has no [[models]] entries; add at least one "
            f"[[models]] table with name and estimator (estimators: {sorted(ESTIMATORS)})"
        )
    for i, entry in enumerate(spec.models, start=1):
        where = spec_location(spec, "models", i - 1)
        if not isinstance(entry, dict) or "estimator" not in entry:
            raise ModelSpecError(f"{where}: [[models]] entry {i} has no 'estimator' key")
        est = entry["estimator"]
        fn = estimator(est) if est in ESTIMATORS else None
        if fn is None:
            where = spec_location(spec, "models", i - 1, "estimator")
            raise ModelSpecError(f"{where}: [[models]] entry {i}: unknown estimator {est!r}; available: {sorted(ESTIMATORS)}")
        params = {k: v for k, v in entry.items() if k not in RESERVED_MODEL_KEYS}
        for key, value in list(params.items()):
            if isinstance(value, list) and key in {"fe", "window", "cluster"}:
                params[key] = tuple(value)
        sig = inspect.signature(fn)
        unknown = [k for k in params if k not in sig.parameters]
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            where = spec_location(spec, "models", i - 1, unknown[0])
            raise ModelSpecError(
                f"{where}: [[models]] entry {i} ({entry.get('name', est)}): unknown parameter(s) {unknown} for {est}; "
                f"accepted: {[p for p in sig.parameters if p != 'panel']}"
            )
        runs.append(ModelRun(name=str(entry.get("name", f"{est}_{i}")), estimator=est, params=params,
                             label=str(entry.get("label", "")), index=i - 1))
    return runs


def _valid_names(kind: str, sample: pd.DataFrame, estimator_name: str) -> list[str]:
    cols = set(map(str, sample.columns))
    if kind == "treatment":
        if estimator_name in COHORT_ESTIMATORS:
            return [t[: -len("_cohort")] for t in map(str, sample.columns) if t.endswith("_cohort")]
        return [t for t in TREATMENT_TYPES if t in cols]
    if kind == "grouping":
        return [c for c in _GROUPINGS if c in cols] + ["(interactions as geo^year)"]
    from returnstudy.models.twfe import DERIVED_OUTCOMES

    return [c for c in _VARIABLES if c in cols] + [o for o in DERIVED_OUTCOMES if o not in cols]


def check_model_columns(spec: StudySpec, m: ModelRun, sample: pd.DataFrame) -> None:
    """``ModelSpecError`` naming the spec file, line and the valid names if an argument of model
    ``m`` names a column the sample does not have (a typo in fe, cluster, treatment, ...)."""
    from returnstudy.models.twfe import DERIVED_OUTCOMES

    cols = set(map(str, sample.columns))
    for key, kind in COLUMN_ARGUMENTS.items():
        value = m.params.get(key)
        if value is None or value is False:
            continue
        names = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
        atoms = [a for n in names if isinstance(n, str) for a in n.split("^")]
        if key == "outcome":
            atoms = [a for a in atoms if a not in DERIVED_OUTCOMES]
        bad = [a for a in atoms if a not in cols]
        if kind == "treatment" and m.estimator in COHORT_ESTIMATORS and key == "treatment":
            bad += [a for a in atoms if a in cols and f"{a}_cohort" not in cols]
        if bad:
            raise ModelSpecError(
                f"{spec_location(spec, 'models', m.index, key)}: [[models]] {m.name!r} ({m.estimator}): {key} = {value!r}: "
                f"no column {bad[0]!r} in the sample; valid {kind} names: {_valid_names(kind, sample, m.estimator)}"
            )


class _ModelTag(logging.Filter):
    """Prefix log records with the name of the model being fitted."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_ = name

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(f"{self.name_}: "):
            record.msg = f"{self.name_}: {record.msg}"
        return True


@contextlib.contextmanager
def model_context(name: str) -> Iterator[None]:
    """Within this block every log record and Python warning of the package names model ``name``
    (e.g. "event_study_bilateral_binding: regressors collinear ... dropped: ['rel_m3']")."""
    tag = _ModelTag(name)
    loggers = [lg for n, lg in list(logging.Logger.manager.loggerDict.items())
               if (n == "returnstudy" or n.startswith("returnstudy.")) and isinstance(lg, logging.Logger)]
    for lg in loggers:
        lg.addFilter(tag)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            yield
        for w in caught:
            log.warning("%s: %s: %s", name, w.category.__name__, w.message)
    finally:
        for lg in loggers:
            lg.removeFilter(tag)


def study_sample(spec: StudySpec | str | Path | None = None, data_dir: str | Path | None = None) -> tuple[pd.DataFrame, Any]:
    """The spec's panel with treatment columns, and the filtered sample (a ``FilterResult``).

    ``data_dir`` overrides the spec's ``[data] data_dir`` (e.g. a snapshot directory).
    Inside a :func:`returnstudy.reuse.reuse_prepared` block (one report) each spec's sample is
    prepared once and every call gets its own copy.
    """
    from returnstudy.filters import FilterResult
    from returnstudy.reuse import reused

    if not isinstance(spec, StudySpec):
        spec = load_spec(spec)
    key = (str(spec.sha256), repr(spec.data), repr(spec.treatments), repr(spec.filters),
           "" if data_dir is None else str(Path(data_dir).resolve()))

    def copied(prepared: tuple[pd.DataFrame, Any]) -> tuple[pd.DataFrame, Any]:
        panel, filtered = prepared
        return panel.copy(), FilterResult(panel=filtered.panel.copy(), flow=filtered.flow.copy(), steps=list(filtered.steps))

    return reused("study sample", key, lambda: _prepare_sample(spec, data_dir), copy=copied)


def _prepare_sample(spec: StudySpec, data_dir: str | Path | None) -> tuple[pd.DataFrame, Any]:
    from returnstudy.filters import apply_filters
    from returnstudy.panel import load_panel
    from returnstudy.treatments import add_treatments

    kwargs = spec.data.load_panel_kwargs()
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    panel = add_treatments(load_panel(**kwargs), **spec.treatments.add_treatments_kwargs())
    return panel, apply_filters(panel, spec)


def run_study(
    spec: StudySpec | str | Path | None = None,
    data_dir: str | Path | None = None,
    *,
    models: bool = True,
    progress: bool = False,
    keep_going: bool | None = None,
) -> StudyRun:
    """Load the panel, code treatments, apply the filters and fit every model of ``spec``.

    ``data_dir`` overrides the spec's ``[data] data_dir`` (e.g. a snapshot directory).
    Bad spec entries (no models, unknown estimator or parameter) raise ``ModelSpecError``
    before any data is read; a model argument naming a column the sample lacks raises before
    any model is fitted. A model that cannot run raises ``ModelSpecError`` naming the spec
    file and line, unless ``keep_going`` is true: then it is recorded with its error and the
    run goes on (``effects()`` shows it with ``status="failed"``). ``keep_going=None`` takes
    the setting of an enclosing :func:`keep_going` block (default False).
    """
    if keep_going is None:
        keep_going = _KEEP_GOING.get()
    if not isinstance(spec, StudySpec):
        spec = load_spec(spec)
    runs = _model_runs(spec) if models else []
    panel, filtered = study_sample(spec, data_dir)
    effective_dir = data_dir if data_dir is not None else spec.data.data_dir
    run = StudyRun(spec=spec, panel=panel, filtered=filtered, models=runs,
                   data_dir=Path(effective_dir) if effective_dir is not None else None)
    for m in runs:
        try:
            check_model_columns(spec, m, filtered.panel)
        except ModelSpecError as exc:
            if not keep_going:
                raise
            m.error = f"ModelSpecError: {exc}"
            log.warning("model %s (%s) cannot run: %s", m.name, m.estimator, exc)
    for m in _progress(runs, f"models ({spec.study.name})", progress, label=lambda m: m.name):
        if m.error:
            continue
        fn = estimator(m.estimator)
        try:
            with model_context(m.name):
                m.result = fn(filtered.panel, **m.params)
        except (ValueError, np.linalg.LinAlgError, KeyError, RuntimeError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            m.error = f"{type(exc).__name__}: {msg}"
            if not keep_going:
                raise ModelSpecError(
                    f"{spec_location(spec, 'models', m.index)}: [[models]] {m.name!r} ({m.estimator}) failed: {m.error} "
                    "(--keep-going / keep_going=True reports it as a failed row and runs the other models)"
                ) from exc
            log.warning("model %s (%s) failed: %s", m.name, m.estimator, m.error)
    return run
