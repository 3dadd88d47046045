"""Run a study spec end to end: data -> treatments -> filters -> models.

This module only wires the stages together (DESIGN.md: data flows one way); the
CLI's ``estimate`` and ``report`` commands and the notebooks call :func:`run_study`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnstudy._progress import progress as _progress
from returnstudy.spec import TREATMENT_TYPES, StudySpec, load_spec

log = logging.getLogger(__name__)

ESTIMATORS: dict[str, str] = {
    "twfe": "returnstudy.models.twfe:twfe",
    "ppml": "returnstudy.models.ppml:ppml",
    "event_study": "returnstudy.models.event_study:event_study",
    "did_imputation": "returnstudy.models.imputation:did_imputation",
    "sun_abraham": "returnstudy.models.sun_abraham:sun_abraham",
    "callaway_santanna": "returnstudy.models.callaway_santanna:callaway_santanna",
}
RESERVED_MODEL_KEYS = {"name", "estimator", "label", "headline"}

EFFECT_COLUMNS = [
    "spec", "model", "estimator", "treatment", "term", "estimate", "std_error", "ci_low", "ci_high",
    "irr", "pct_effect", "pct_ci_low", "pct_ci_high", "p_value", "n_obs", "n_corridors", "years", "n_clusters", "cluster", "vintage",
]


class ModelSpecError(ValueError):
    """A ``[[models]]`` entry that cannot be run; the message names the spec file and model."""


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

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass
class StudyRun:
    """Everything one spec produced: the panel, the filtered sample, the model results."""

    spec: StudySpec
    panel: pd.DataFrame
    filtered: Any  # returnstudy.filters.FilterResult
    models: list[ModelRun] = field(default_factory=list)

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
            lu = ", ".join(f"{k or 'not given'}: {n} rows" for k, n in (v.get("last_update") or {}).items())
            parts.append(f"{code} [{lu}; sha256 {str(v.get('sha256'))[:12]}]")
        return "; ".join(parts)

    def header(self) -> str:
        """What data this run used and what it covers."""
        s = self.sample
        src = sorted({str(v.get("source")) for v in (self.panel.attrs.get("vintage") or {}).values()})
        years = (int(s["year"].min()), int(s["year"].max())) if len(s) else (None, None)
        return (
            f"spec {self.name} ({self.spec.path.name if self.spec.path else 'in memory'}, sha256 {str(self.spec.sha256)[:12]}) "
            f"on {', '.join(src)}\n"
            f"sample: {len(s)} corridor-years, {s['corridor'].nunique()} corridors, {s['geo'].nunique()} reporting countries, "
            f"{s['citizen'].nunique()} citizenships, years {years[0]}-{years[1]}\n"
            f"vintage: {self.vintage_line()}"
        )

    def effects(self) -> pd.DataFrame:
        """Tidy table of the treatment effects of every model (event studies excluded)."""
        rows = []
        for m in self.models:
            if not m.ok or m.estimator == "event_study" or m.params.get("event_time"):
                continue
            res = m.result
            table = res.table
            single = m.params.get("treatment")
            for term, r in table.iterrows():
                treatment = term if term in TREATMENT_TYPES else single
                if treatment is None:
                    continue
                rows.append(_effect_row(self.name, m, res, treatment, term, r))
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
        "vintage": _short_vintage(info.get("vintage")),
    }


def _short_vintage(v: Any) -> str:
    if not isinstance(v, dict):
        return str(v)
    parts = []
    for code, e in sorted(v.items()):
        if isinstance(e, dict):
            lus = sorted(k or "n/a" for k in (e.get("last_update") or {}))
            parts.append(f"{code}@{'+'.join(lus)}")
    return " ".join(parts)


def _model_runs(spec: StudySpec) -> list[ModelRun]:
    runs = []
    where = spec.path or "study spec"
    for i, entry in enumerate(spec.models, start=1):
        if not isinstance(entry, dict) or "estimator" not in entry:
            raise ModelSpecError(f"{where}: [[models]] entry {i} has no 'estimator' key")
        est = entry["estimator"]
        fn = estimator(est) if est in ESTIMATORS else None
        if fn is None:
            raise ModelSpecError(f"{where}: [[models]] entry {i}: unknown estimator {est!r}; available: {sorted(ESTIMATORS)}")
        params = {k: v for k, v in entry.items() if k not in RESERVED_MODEL_KEYS}
        for key, value in list(params.items()):
            if isinstance(value, list) and key in {"fe", "window", "cluster"}:
                params[key] = tuple(value)
        sig = inspect.signature(fn)
        unknown = [k for k in params if k not in sig.parameters]
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            raise ModelSpecError(
                f"{where}: [[models]] entry {i} ({entry.get('name', est)}): unknown parameter(s) {unknown} for {est}; "
                f"accepted: {[p for p in sig.parameters if p != 'panel']}"
            )
        runs.append(ModelRun(name=str(entry.get("name", f"{est}_{i}")), estimator=est, params=params, label=str(entry.get("label", ""))))
    return runs


def study_sample(spec: StudySpec | str | Path | None = None, data_dir: str | Path | None = None) -> tuple[pd.DataFrame, Any]:
    """The spec's panel with treatment columns, and the filtered sample (a ``FilterResult``).

    ``data_dir`` overrides the spec's ``[data] data_dir`` (e.g. a snapshot directory).
    """
    from returnstudy.filters import apply_filters
    from returnstudy.panel import load_panel
    from returnstudy.treatments import add_treatments

    if not isinstance(spec, StudySpec):
        spec = load_spec(spec)
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
) -> StudyRun:
    """Load the panel, code treatments, apply the filters and fit every model of ``spec``.

    ``data_dir`` overrides the spec's ``[data] data_dir`` (e.g. a snapshot directory).
    A model that fails is recorded with its error message instead of stopping the run;
    bad spec entries (unknown estimator or parameter) raise before any estimation.
    """
    if not isinstance(spec, StudySpec):
        spec = load_spec(spec)
    runs = _model_runs(spec) if models else []
    panel, filtered = study_sample(spec, data_dir)
    run = StudyRun(spec=spec, panel=panel, filtered=filtered, models=runs)
    for m in _progress(runs, f"models ({spec.study.name})", progress):
        try:
            m.result = estimator(m.estimator)(filtered.panel, **m.params)
        except (ValueError, np.linalg.LinAlgError, KeyError, RuntimeError) as exc:
            m.error = f"{type(exc).__name__}: {exc}"
            log.warning("model %s (%s) failed: %s", m.name, m.estimator, m.error)
    return run
