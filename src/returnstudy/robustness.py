"""How far does a conclusion survive? Re-estimate one model under alternative analytic choices.

Each :class:`Variation` changes one choice of a study spec — how treatments are coded, a
filter threshold, the fixed effects, the clustering — and everything else stays as in the
spec. :func:`sensitivity` runs the spec's headline model under every variation and returns
a tidy table (one row per variation and treatment) whose spread shows how much each choice
matters. Nothing is re-weighted or selected: every variation is reported.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnstudy.runner import _model_runs, model_context
from returnstudy.spec import StudySpec, load_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variation:
    """One alternative choice relative to the spec.

    ``treatments``: overrides of ``add_treatments`` arguments; ``filters``: step name ->
    parameter overrides (``{"enabled": True}`` switches a step on); ``model``: overrides of
    the model's arguments.
    """

    label: str
    treatments: Mapping[str, Any] = field(default_factory=dict)
    filters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    group: str = ""


DEFAULT_VARIATIONS: tuple[Variation, ...] = (
    Variation("spec as written", group="baseline"),
    Variation("switch-on: first full year in force", treatments={"rule": "first_full_year"}, group="treatment coding"),
    Variation("switch-on: share of the year in force", treatments={"rule": "share_of_year"}, group="treatment coding"),
    Variation("binding bilateral from signature where no entry into force is known", treatments={"binding_start": "in_force_or_signed"}, group="treatment coding"),
    Variation("implementing protocols coded as binding bilateral", treatments={"protocols_as_binding": True}, group="treatment coding"),
    Variation("switch-ons through EU accession counted", treatments={"accession": "switch"}, group="treatment coding"),
    Variation("arrangements of unknown legal form left out", treatments={"unknown_binding": "drop"}, group="treatment coding"),
    Variation("min. mean orders 1", filters={"min_orders": {"n": 1}}, group="sample"),
    Variation("min. mean orders 50", filters={"min_orders": {"n": 50}}, group="sample"),
    Variation("min. mean orders 200", filters={"min_orders": {"n": 200}}, group="sample"),
    Variation("without Western Balkan citizenships", filters={"exclude_citizens": {"enabled": True, "citizens": ["western_balkans"]}}, group="sample"),
    Variation("drop corridor-years with return rate > 2", filters={"return_rate_bound": {"enabled": True, "bound": 2.0, "action": "drop"}}, group="sample"),
    Variation("balanced corridors only", filters={"balanced": {"enabled": True}}, group="sample"),
    Variation("reporting-country x year effects", model={"fe": ("corridor", "geo^year")}, group="model"),
    Variation("clustered by citizenship and reporting country", model={"cluster": ("citizen", "geo")}, group="inference"),
    Variation("clustered by corridor", model={"cluster": "corridor"}, group="inference"),
)

TABLE_COLUMNS = [
    "group", "variation", "treatment", "status", "estimate", "std_error", "ci_low", "ci_high", "pct_effect", "pct_ci_low",
    "pct_ci_high", "p_value", "n_obs", "n_corridors", "error",
]

#: Estimators whose results are per relative period (event time), not one effect per treatment:
#: sensitivity does not support them.
EVENT_TIME_ESTIMATORS = ("event_study", "sun_abraham")

# status of one (variation, treatment) cell
OK, FAILED, UNSUPPORTED, NOT_IDENTIFIED = "ok", "failed", "unsupported", "not identified"


def supports(estimator_name: str, params: Mapping[str, Any]) -> bool:
    """Whether :func:`sensitivity` can vary a model: it must give one effect per treatment."""
    return estimator_name not in EVENT_TIME_ESTIMATORS and not params.get("event_time")


@dataclass
class SensitivityResult:
    """Estimates of one model under each variation; ``table`` is tidy (variation x treatment)."""

    table: pd.DataFrame
    spec_name: str
    model: str
    estimator: str
    vintage: dict[str, Any] = field(default_factory=dict)

    def wide(self, digits: int = 1) -> pd.DataFrame:
        """One row per variation, one column per treatment: "pct [low, high]" (Poisson) or "b [low, high]"."""
        t = self.table
        poisson = t["pct_effect"].notna().any()

        def cell(r: pd.Series) -> str:
            if r["status"] in (FAILED, UNSUPPORTED, NOT_IDENTIFIED):
                return str(r["status"])
            if pd.isna(r["estimate"]):
                return NOT_IDENTIFIED
            if poisson:
                return f"{r['pct_effect']:+.{digits}f}% [{r['pct_ci_low']:+.{digits}f}, {r['pct_ci_high']:+.{digits}f}]"
            return f"{r['estimate']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"

        out = t.assign(cell=t.apply(cell, axis=1)).pivot_table(
            index=["group", "variation"], columns="treatment", values="cell", aggfunc="first", sort=False
        )
        return out.reset_index()

    def summary(self) -> str:
        lines = [f"Sensitivity of model {self.model!r} ({self.estimator}) in spec {self.spec_name!r}: {self.table['variation'].nunique()} variations"]
        lines.append(self.wide().to_string(index=False))
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = self.table.drop_duplicates(["variation", "treatment"])["status"].value_counts()
        states = ", ".join(f"{n} {k}" for k, n in counts.items())
        return (f"<SensitivityResult model {self.model!r} ({self.estimator}) in spec {self.spec_name!r}: "
                f"{self.table['variation'].nunique()} variations, cells: {states}; .summary() for the table>")

    def _repr_html_(self) -> str:
        return f"<div><strong>{html.escape(self.summary().splitlines()[0])}</strong>{self.wide().to_html(index=False)}</div>"

    def plot(self, treatment: str, ax: Any = None) -> Any:
        """Specification plot: the estimate and 95% CI of ``treatment`` under every variation."""
        from returnstudy.plots import new_figure

        t = self.table[(self.table["treatment"] == treatment) & self.table["estimate"].notna()]
        if t.empty:
            raise ValueError(f"no estimates of {treatment!r} in this sensitivity run")
        poisson = t["pct_effect"].notna().all()
        est, lo, hi = (t["pct_effect"], t["pct_ci_low"], t["pct_ci_high"]) if poisson else (t["estimate"], t["ci_low"], t["ci_high"])
        if ax is None:
            fig = new_figure((9, 1.4 + 0.4 * len(t)))
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        y = np.arange(len(t))[::-1]
        ax.axvline(0.0, color="0.4", lw=0.9)
        ax.errorbar(est.to_numpy(), y, xerr=[(est - lo).to_numpy(), (hi - est).to_numpy()], fmt="o", color="C0", capsize=3)
        ax.set_yticks(y)
        ax.set_yticklabels(t["variation"].tolist())
        ax.set_xlabel("Change in returns per order to leave (%)" if poisson else "Estimate (model scale)")
        fig.suptitle(f"{treatment}: model {self.model!r} under alternative analytic choices (95% CI)", fontsize=10)
        return fig


def sensitivity(
    spec: StudySpec | str | Path | None = None,
    data_dir: str | Path | None = None,
    *,
    model: str | None = None,
    variations: Sequence[Variation] = DEFAULT_VARIATIONS,
    progress: bool = False,
) -> SensitivityResult:
    """Re-run one model of ``spec`` under each variation (default: the report's headline model).

    This is the one-at-a-time design of the multiverse engine
    (:func:`returnstudy.multiverse.run_specifications`): the panel is read once, each distinct
    coding and sample is built once. A variation whose model fails is kept in the table with its error message
    (``status="failed"``); a variation that changes an argument the estimator does not have is
    ``status="unsupported"``; an effect without treated variation is ``"not identified"``. A
    model with per-period (event-time) estimates is not supported: ``ValueError`` naming the
    spec's models that are.
    """
    from returnstudy.multiverse import EngineContext, run_specifications
    from returnstudy.multiverse_grid import Specification
    from returnstudy.panel import load_panel

    if not isinstance(spec, StudySpec):
        spec = load_spec(spec)
    runs = {m.name: m for m in _model_runs(spec)}
    name = model or str(spec.report.get("headline_model", next(iter(runs), "")))
    if name not in runs:
        raise KeyError(f"model {name!r} not in spec {spec.study.name!r}; models: {sorted(runs)}")
    base = runs[name]
    if not supports(base.estimator, base.params):
        ok = [n for n, m in runs.items() if supports(m.estimator, m.params)]
        raise ValueError(
            f"sensitivity: model {name!r} ({base.estimator}) is unsupported: its estimates are per relative period, "
            f"not one effect per treatment; models of spec {spec.study.name!r} that sensitivity supports: {ok}"
        )
    kwargs = spec.data.load_panel_kwargs()
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    raw = load_panel(**kwargs)
    # one code path with the multiverse: each variation is a specification of the engine
    model_params = {"estimator": base.estimator, **base.params}
    specs = [Specification(choices={"group": v.group, "variation": v.label}, treatments=dict(v.treatments),
                           filters={k: dict(f) for k, f in v.filters.items()}, model={**model_params, **v.model})
             for v in variations]
    ts = tuple(base.params.get("treatments") or [base.params.get("treatment")])
    ctx = EngineContext(raw=raw, spec=spec, treatments=ts, focal=ts)
    with model_context(name):
        rows, _ = run_specifications(ctx, specs, progress=progress)
    table = rows.rename(columns={"reason": "error"}).reindex(columns=TABLE_COLUMNS)
    for c in ("n_obs", "n_corridors"):
        table[c] = table[c].astype("float64")
    return SensitivityResult(table=table, spec_name=spec.study.name, model=name, estimator=base.estimator,
                             vintage=dict(raw.attrs.get("vintage") or {}))
