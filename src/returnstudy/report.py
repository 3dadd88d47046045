"""Regenerate the report (``reports/REPORT.md``, figures and tables) from the study specs.

The report is a pure function of the code, the specs and the data files: running it
twice gives byte-identical markdown and tables (no timestamps, no absolute paths,
fixed float formatting), and PNG figures without a date, each with the data it plots
beside it. :mod:`returnstudy.report_compare` checks a committed report against a fresh one
by content.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnstudy._collect import fewer_collections
from returnstudy._threads import one_blas_thread
from returnstudy.artifacts import write_figure, write_table
from returnstudy.background import BackgroundPool, Pending, drain_in_forks, resolve_jobs
from returnstudy.honest_report import study_pretrend_reports
from returnstudy.inference._moment_tests import LF_DRAWS
from returnstudy.identification import switching_counts
from returnstudy.paths import project_data_dir
from returnstudy.robustness import DEFAULT_VARIATIONS, sensitivity
from returnstudy.reuse import reuse_prepared
from returnstudy.runner import StudyRun, run_study
from returnstudy.spec import TREATMENT_TYPES, StudySpec, load_spec
from returnstudy.verdict import NOT_IDENTIFIED, STUDY_HEADLINE, verdict

log = logging.getLogger(__name__)

DEFAULT_SPECS = ("wodc.toml", "third_country_2014_2023.toml")
#: seed of the pre-trend sensitivity's simulated critical values and pre-test power
PRETREND_SEED = 0

TREATMENT_LABELS = {
    "eu_agreement": "EU readmission agreement",
    "eu_nonbinding": "EU non-binding arrangement",
    "bilateral_binding": "Bilateral binding agreement",
    "bilateral_protocol": "Bilateral implementing protocol",
    "bilateral_nonbinding": "Bilateral non-binding arrangement",
}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}f}"
    return str(x)


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table with fixed float formatting."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits).replace("|", "/") for v in row) + " |")
    return "\n".join(lines)


def _save_figure(fig: Any, out: Path, stem: str, dpi: int = 110) -> list[str]:
    """Write a figure as PNG plus its plotted data (``<stem>.data.csv``); paths relative to the report root."""
    return [f"figures/{p.name}" for p in write_figure(fig, out, stem, dpi=dpi)]


class _FigureQueue:
    """The report's figures, drawn (:func:`write_figure`) by whichever process is free; a figure draws
    to the same bytes in any process.

    With forked workers (:attr:`BackgroundPool.forked`) the figures stay in this process, which
    draws them from the back while it waits for a worker; at the end it shares the rest with
    freshly forked copies of itself (:func:`~returnstudy.background.drain_in_forks`), which find
    them in memory (a figure costs a third of its drawing time to pickle and unpickle). Otherwise
    (loky workers, or serially) each figure is a piece of the pool, queued as it is made: the
    workers take them from the front once their own pieces are done, this process from the back
    when it would otherwise wait."""

    def __init__(self, pool: BackgroundPool) -> None:
        self.pool = pool
        self.queued: list[Pending[list[Path]]] = []  # pieces of the pool
        self.held: list[tuple[Any, Path, str, int]] = []  # kept here (forked workers)

    def add(self, fig: Any, out: Path, stem: str, dpi: int = 110) -> list[str]:
        """Queue ``fig`` (a figure, or a function that draws one) for ``out/<stem>.png`` and ``.data.csv``;
        their paths relative to the report root. A function is called by the process that draws the
        figure where figures stay in this process (forked workers), here and now otherwise."""
        if self.pool.forked:
            self.held.append((fig, out, stem, dpi))
        else:
            self.queued.append(self.pool.submit(write_figure, fig() if callable(fig) else fig, out, stem, dpi=dpi))
        return [f"figures/{stem}.png", f"figures/{stem}.data.csv"]

    def draw_while(self, busy: Pending[Any]) -> None:
        """Draw queued figures here, from the back, until ``busy`` (a worker's piece) is done."""
        for piece in reversed(self.queued):
            if busy.done():
                return
            piece.here_if_unstarted()
        while self.held and not busy.done():
            _draw_held(self.held.pop())

    def write(self) -> None:
        """Draw the figures still queued: the held ones here and in forked copies of this process
        (the pool's workers are stopped first), the pieces here unless a worker has started them."""
        if self.held:
            self.pool.close()
            # the processes take figures from the front: the largest first, so none is left to draw alone at the end
            self.held.sort(key=_figure_size, reverse=True)
            drain_in_forks(self.held, _draw_held, self.pool.n_jobs - 1)
            self.held.clear()
        for piece in reversed(self.queued):
            piece.here_if_unstarted()
        for piece in self.queued:
            piece.result()
        self.queued.clear()


def _figure_size(item: tuple[Any, Path, str, int]) -> tuple[int, int]:
    """What drawing a held figure costs, roughly: its axes (each draws ticks and labels), then its marks;
    a figure still to be made (the multi-panel ones of Parts 1 and 3) counts as large."""
    if callable(item[0]):
        return 1 << 30, 0
    axes = item[0].axes
    return len(axes), sum(len(ax.lines) + len(ax.collections) + len(ax.patches) + len(ax.texts) for ax in axes)


def _draw_held(item: tuple[Any, Path, str, int]) -> None:
    fig, out, stem, dpi = item
    write_figure(fig() if callable(fig) else fig, out, stem, dpi=dpi)


def switching_units(sample: pd.DataFrame, treatment: str, result: Any = None) -> tuple[int, int]:
    """Corridors and citizenships whose ``treatment`` varies among the rows ``result`` used
    (:func:`returnstudy.identification.switching_counts`; without a result: among ``sample``'s rows)."""
    n_corr, n_cit, _ = switching_counts(result, sample, treatment)
    return n_corr, n_cit


def _headline_result(run: StudyRun) -> Any:
    """The fitted result of the spec's headline model (None if absent or failed)."""
    name = run.spec.report.get("headline_model") if getattr(run, "spec", None) is not None else None
    return next((m.result for m in getattr(run, "models", []) if m.name == name and m.ok), None)


def headline_comparison(run: StudyRun, model: str, min_switching_citizenships: int | None = None,
                        bootstrap: Any = None) -> pd.DataFrame:
    """The study's published headline per treatment type beside this run's estimate.

    The verdict is :func:`returnstudy.verdict.verdict` (also used by ``estimate``) on the analytic
    clustered interval; ``min_switching_citizenships`` defaults to the spec's
    ``[report] min_switching_citizenships``, else 5. ``bootstrap``: a :func:`wild_bootstrap`
    result of the same model (for Poisson models the Kline-Santos score bootstrap): its interval
    (percent change, test inversion) and p-value are added as ``boot_ci_pct`` and ``boot_p``.
    """
    if min_switching_citizenships is None:
        spec = getattr(run, "spec", None)
        min_switching_citizenships = int(spec.report.get("min_switching_citizenships", 5)) if spec is not None else 5
    sample = getattr(run, "sample", None)
    eff = run.effects()
    eff = eff[eff["model"] == model]
    rows = []
    for t in TREATMENT_TYPES:
        claim, band = STUDY_HEADLINE[t]
        n_corr, n_cit = switching_units(sample, t) if sample is not None else (np.nan, np.nan)
        r = eff[eff["treatment"] == t]
        if not r.empty and "switching_corridors" in r.columns and pd.notna(r.iloc[0]["switching_corridors"]):
            # counted on the rows this model used (after separation and missing rows)
            n_corr, n_cit = int(r.iloc[0]["switching_corridors"]), int(r.iloc[0]["switching_citizenships"])
        row = {"treatment": TREATMENT_LABELS[t], "study": claim, "estimate_pct": np.nan, "ci_pct": "",
               "switching_corridors": n_corr, "switching_citizenships": n_cit}
        r = eff[eff["treatment"] == t]
        if r.empty or pd.isna(r.iloc[0]["estimate"]):
            rows.append({**row, "verdict": NOT_IDENTIFIED})
            continue
        r = r.iloc[0]
        pct, lo, hi = (r["pct_effect"], r["pct_ci_low"], r["pct_ci_high"]) if pd.notna(r["pct_effect"]) else (
            100 * r["estimate"], 100 * r["ci_low"], 100 * r["ci_high"])
        row.update(estimate_pct=float(pct), ci_pct=f"[{lo:.1f}, {hi:.1f}]")
        if bootstrap is not None:
            row.update(_bootstrap_columns(bootstrap, t))
        rows.append({**row, "verdict": verdict(t, lo, hi, estimate=pct, switching_citizenships=n_cit if sample is not None else None,
                                               min_switching_citizenships=min_switching_citizenships)})
    return pd.DataFrame(rows)


def _bootstrap_columns(bootstrap: Any, term: str) -> dict[str, Any]:
    """``boot_ci_pct`` ("[lo, hi]" in percent, "inf" where test inversion found no bound) and ``boot_p``."""
    tab = bootstrap.table
    if term not in tab.index:
        return {"boot_ci_pct": "", "boot_p": np.nan}
    r = tab.loc[term]
    if "boot_pct_ci_low" in tab.columns:
        lo, hi = r["boot_pct_ci_low"], r["boot_pct_ci_high"]
    else:
        lo, hi = 100 * r.get("boot_ci_low", np.nan), 100 * r.get("boot_ci_high", np.nan)
    ci = f"[{lo:.1f}, {hi:.1f}]" if pd.notna(lo) and pd.notna(hi) else ""
    return {"boot_ci_pct": ci, "boot_p": float(r["boot_p_value"])}


@dataclass
class Report:
    """Paths written and the runs behind them."""

    out_dir: Path
    files: list[str] = field(default_factory=list)
    runs: list[StudyRun] = field(default_factory=list)
    _figures: _FigureQueue | None = field(default=None, repr=False, compare=False)

    def _figure(self, fig: Any, out: Path, stem: str, dpi: int = 110) -> list[str]:
        """Write ``fig`` (or what a function draws) now, or queue it when the report writes its figures at the end."""
        if self._figures is not None:
            return self._figures.add(fig, out, stem, dpi)
        return _save_figure(fig() if callable(fig) else fig, out, stem, dpi)

    def summary(self) -> str:
        return f"report in {self.out_dir}: {len(self.files)} files ({', '.join(r.name for r in self.runs)})"


def _data_section(run: StudyRun) -> list[str]:
    s = run.sample
    lines = [f"### Spec `{run.name}` ({run.spec.path.name if run.spec.path else 'in memory'})", ""]
    if run.spec.study.title:
        lines += [f"*{run.spec.study.title}*", ""]
    lines += [
        f"- spec sha256 `{str(run.spec.sha256)[:16]}`",
        f"- estimation sample: {len(s)} corridor-years, {s['corridor'].nunique()} corridors, "
        f"{s['geo'].nunique()} reporting countries, {s['citizen'].nunique()} citizenships, years {int(s['year'].min())}-{int(s['year'].max())}",
    ]
    for code, v in sorted((run.panel.attrs.get("vintage") or {}).items()):
        lu = ", ".join(f"{k or 'not given (extract of about 2017)'}: {n} rows" for k, n in (v.get("last_update") or {}).items())
        used = ", ".join(f"{var} {n}" for var, n in (v.get("rows_used") or {}).items())
        lines.append(f"- `{code}`: {Path(str(v.get('source'))).name}, sha256 `{str(v.get('sha256'))[:16]}`, LAST UPDATE {lu}; rows read into the panel (before filters): {used}")
    treated = []
    for t in TREATMENT_TYPES:
        if t in s:
            n = int((s[t] > 0).sum())
            treated.append(f"{t} {n}")
    lines.append(f"- treated corridor-years in the sample: {', '.join(treated)}")
    coding = run.panel.attrs.get("treatment_coding") or {}
    if coding:
        counts = coding.get("bilateral_dropped") or {}
        lines.append(
            f"- treatment coding: rule `{coding.get('rule')}`, binding bilateral start `{coding.get('binding_start')}` "
            f"({counts.get('binding_started_at_signature', 0)} binding instruments start at signature, "
            f"{counts.get('binding_without_start', 0)} have no known entry into force and are not treated), "
            f"implementing protocols as binding: {coding.get('protocols_as_binding')}, accession switch-ons: "
            f"`{coding.get('accession')}`"
        )
        lines.append(f"- {_verification_line()}")
    failed = [m for m in run.models if not m.ok]
    for m in failed:
        lines.append(f"- model `{m.name}` ({m.estimator}) could not be estimated: {m.error}")
    return lines + [""]


def _verification_line() -> str:
    """How many dates in each agreements table were checked against their cited source."""
    from returnstudy.treatments import load_agreements

    parts = []
    for name, table in sorted(load_agreements().items()):
        if "verified" in table.columns:
            v = table["verified"].astype(str).str.lower().isin(["true", "1"])
            parts.append(f"{name} {int(v.sum())}/{len(table)}")
    return "rows whose dates were verified against the cited source: " + ", ".join(parts)


def _effects_for_report(runs: Sequence[StudyRun]) -> pd.DataFrame:
    frames = [r.effects() for r in runs]
    eff = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if eff.empty:
        return eff
    eff = eff.sort_values(["spec", "treatment", "model"], kind="mergesort")
    return eff


LOCK_FILE = "requirements/report.lock"
_LOCKED = ("numpy", "scipy", "pandas", "statsmodels", "matplotlib")


def locked_versions(lock: Path | None = None) -> dict[str, str]:
    """Versions of the main numerical libraries pinned in ``requirements/report.lock`` (empty if absent)."""
    lock = lock if lock is not None else Path(__file__).resolve().parents[2] / LOCK_FILE
    if not lock.is_file():
        return {}
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.split(";")[0].split("#")[0].strip().partition("==")
        if sep and name.strip().lower() in _LOCKED:
            pins[name.strip().lower()] = version.strip()
    return pins


def _environment_line() -> str:
    pins = locked_versions()
    listed = ", ".join(f"{k} {pins[k]}" for k in _LOCKED if k in pins)
    return (f"Produced with the library versions pinned in `{LOCK_FILE}`" + (f" ({listed})" if listed else "")
            + ": installing from that file reproduces every file here byte for byte; any other supported versions "
            "reproduce the text exactly and the tables and plotted data to a relative 1e-9 "
            "(`returnstudy.report_compare`).")


def build_report(
    out_dir: str | Path = "reports",
    specs: Sequence[str | Path] | None = None,
    data_dir: str | Path | None = None,
    *,
    progress: bool = False,
    n_jobs: int | None = 1,
    start_method: str = "auto",
) -> Report:
    """Run each spec and write ``REPORT.md``, ``tables/*.csv`` and ``figures/*.png`` with each figure's plotted data beside it (``*.data.csv``).

    ``specs``: spec files (default: ``data/specs/wodc.toml`` and
    ``data/specs/third_country_2014_2023.toml``). ``data_dir``: Eurostat tables to use
    (default: each spec's ``[data] data_dir``, else the cache). Each spec's panel and sample
    are prepared once and shared by every section (:func:`returnstudy.reuse.reuse_prepared`).
    The report runs with one BLAS thread (:func:`returnstudy._threads.one_blas_thread`), so its
    numbers do not depend on the machine's thread count. ``n_jobs`` (``-1``: every CPU): processes;
    with more than one, Part 1 (data quality), the multiverse section and the sensitivity run in
    worker processes (:class:`returnstudy.background.BackgroundPool`) while this process fits the
    models (with three or more, the influence re-estimates too; this process takes back queued
    pieces that no worker has started when it is free), and the figures are drawn by every process
    at the end. ``start_method``: how the workers start ("auto": forked copies of this process on
    Linux, which need not read or prepare the data again; see
    :func:`returnstudy.background.default_start_method`). The report is the same, byte for byte,
    for any ``n_jobs`` and ``start_method``.
    """
    with reuse_prepared(), one_blas_thread(), fewer_collections(), contextlib.ExitStack() as cleanup:
        return _build_report(out_dir, specs, data_dir, progress=progress, n_jobs=n_jobs, cleanup=cleanup,
                             start_method=start_method)


def _build_report(out_dir: str | Path, specs: Sequence[str | Path] | None, data_dir: str | Path | None, *,
                  progress: bool, n_jobs: int | None, cleanup: contextlib.ExitStack, start_method: str) -> Report:
    from returnstudy.plots import plot_coefficients, plot_event_study

    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    spec_paths = [Path(p) for p in specs] if specs else [project_data_dir() / "specs" / n for n in DEFAULT_SPECS]
    report = Report(out_dir=out)
    study_specs = [load_spec(p) for p in spec_paths]
    # Part 1 (data quality), the multiverse section and the one-choice-at-a-time sensitivity need
    # only the spec and the data: with n_jobs > 1 they are pieces for worker processes while this one
    # fits, bootstraps and re-estimates the models (from 3 processes the influence re-estimates too),
    # and the figures are drawn by every process (the same numbers and bytes either way: every piece
    # is seeded). Part 1's quality report comes back with it for the claims.
    pool = cleanup.enter_context(BackgroundPool(min(resolve_jobs(n_jobs), 1 + 2 + 3 * len(study_specs)),
                                                start_method=start_method,
                                                share_back=("quality report",)))  # at most one worker per piece
    mv_spec = next((s for s in study_specs if s.report.get("multiverse")), None)
    if pool.n_jobs > 1:  # what the first pieces (Part 1, the multiverse) read, before the workers fork
        _prepare_samples([s for i, s in enumerate(study_specs) if i == 0 or s is mv_spec], data_dir)
    piece_progress = progress and pool.n_jobs == 1  # no progress bars from worker processes
    report._figures = _FigureQueue(pool)
    part1_pending = pool.submit(_part1_section, out, study_specs[0], data_dir)
    mv_pending = None
    if mv_spec is not None:
        from returnstudy.multiverse_report import multiverse_section

        mv_pending = pool.submit(multiverse_section, mv_spec, data_dir)
    # the sensitivity re-codes and re-filters the spec's panel: queued behind the multiverse, it is
    # computed by whichever process gets to it first (this one takes the last ones back, see below)
    sens_pending = {}
    for i, s in enumerate(study_specs):
        model = str(s.report.get("headline_model", ""))
        if model:
            variations = [v for v in DEFAULT_VARIATIONS if set(v.filters) <= {f.step for f in s.filters}]
            sens_pending[i] = pool.submit(sensitivity, s, data_dir, model=model, variations=variations,
                                          progress=piece_progress)
    runs = [run_study(s, data_dir, progress=progress) for s in study_specs]
    # with one worker it is busy with the multiverse: the influence re-estimates run here
    if pool.n_jobs >= 3:
        influence_pending = _submit_influence(pool, runs, False)
    else:
        influence_pending = _submit_influence(BackgroundPool(1), runs, progress)
    report.runs = runs
    pretrends = {run.name: study_pretrend_reports(run, seed=PRETREND_SEED) for run in runs}

    md: list[str] = [
        "# Readmission agreements and return: results",
        "",
        "Generated by `python -m returnstudy report` from the study specs in `data/specs/`; "
        "regenerated in CI, never edited by hand. Source: Eurostat (CC BY 4.0).",
        "",
        _environment_line(),
        "",
        "## What was estimated, on which data",
        "",
    ]
    for run in runs:
        md += _data_section(run)

    # headline
    md += ["## The study's headline beside these estimates", ""]
    boots = _headline_bootstraps(runs)
    for run in runs:
        model = str(run.spec.report.get("headline_model", run.models[0].name if run.models else ""))
        if not model:
            continue
        comp = headline_comparison(run, model, bootstrap=boots.get(run.name))
        comp["pre_trends"] = _pretrend_verdicts(run, pretrends[run.name], comp["treatment"])
        write_table(comp, out / "tables" / f"headline_{run.name}.csv")
        report.files.append(f"tables/headline_{run.name}.csv")
        show = comp.copy()
        if "boot_p" in show:
            show["boot_p"] = show["boot_p"].map(lambda x: f"{x:.3f}" if pd.notna(x) else "")
        md += [f"Spec `{run.name}`, model `{model}` (percent change in returns, 95% CI):", "", markdown_table(show, 1), ""]
    md += ["`pre_trends` is the verdict of the event study of the same treatment (joint test of the leads, then the "
           "Rambachan-Roth relative-magnitudes analysis of the first post-period effect: \"robust at Mbar <= x\" means "
           "the 95% robust interval excludes zero as long as the post-period violation of parallel trends is at most x "
           "times the largest one between consecutive pre-periods); see the event-study section.", ""]
    if boots:
        md += [_bootstrap_paragraph(runs, boots), ""]

    # results
    eff = _effects_for_report(runs)
    if not eff.empty:
        write_table(eff, out / "tables" / "effects.csv")
        report.files.append("tables/effects.csv")
        show = eff[["spec", "model", "treatment", "estimate", "std_error", "pct_effect", "pct_ci_low", "pct_ci_high", "p_value", "n_obs", "n_corridors", "years"]]
        md += ["## Results: every model and treatment", "",
               "`estimate` is on the model's scale (log points for Poisson models, the outcome's units for linear models); "
               "`pct_effect` = 100 (exp(b) - 1) for Poisson models. Standard errors are clustered as each model's summary states.", "",
               markdown_table(show, 3), ""]
        md += ["Coefficient plots compare the Poisson-scale estimators (percent change in returns per unit of "
               "exposure, 95% CI); linear models are in the table above.", ""]
        for treatment in TREATMENT_TYPES:
            sub = {}
            for run in runs:
                for m in run.models:
                    res = m.result
                    if m.ok and m.estimator != "event_study" and not m.params.get("event_time") and res.is_poisson and treatment in res.table.index:
                        sub[f"{run.name}: {m.name}"] = res
            if sub:
                fig = plot_coefficients(sub, term=treatment, scale="pct", title=f"{TREATMENT_LABELS[treatment]}: estimates by spec and estimator")
                report.files += report._figure(fig, out / "figures", f"coefficients_{treatment}")
                md += [f"![{treatment}](figures/coefficients_{treatment}.png)", ""]

    # this process's own work first, while the workers compute Part 1 and the multiverse: the
    # influence re-estimates (unless a worker has started them), the resampling checks, Part 3 and
    # the sensitivity pieces no worker has started (the markdown of Parts 1 and 3 is placed at the end)
    for piece in influence_pending.values():
        piece.result()
    checks = _inference_checks(runs, progress, boots)
    part1_and_part3 = _part1_and_part3(report, out, runs, data_dir, part1_pending, study_specs[0])
    for piece in reversed(list(sens_pending.values())):  # here, from the last, those no worker has started
        piece.here_if_unstarted()
    for piece in sens_pending.values():
        report._figures.draw_while(piece)  # rather than wait for a worker
        piece.result()

    # every combination of choices (the multiverse), then one choice at a time
    if mv_pending is not None:
        report._figures.draw_while(mv_pending)  # rather than wait for the worker
        section = mv_pending.result()
        md += _write_section(report, out, section.lines, section.tables, section.figures)
    else:
        md += ["## How far do the conclusions survive?", ""]
    md += ["### One choice at a time", "",
           "The headline model of each spec re-estimated under alternative analytic choices, one at a time "
           "(percent change in returns, 95% CI). `failed` means the model could not be estimated under that choice; "
           "`not identified`, that the treatment has no variation left.", ""]
    for i, run in enumerate(runs):
        model = str(run.spec.report.get("headline_model", ""))
        if not model:
            continue
        sens = sens_pending[i].result()
        write_table(sens.table, out / "tables" / f"sensitivity_{run.name}.csv")
        report.files.append(f"tables/sensitivity_{run.name}.csv")
        md += [f"Spec `{run.name}`, model `{model}`:", "", markdown_table(sens.wide(), 1), ""] + _sensitivity_sentences(sens) + [""]
        for treatment in ("bilateral_binding", "eu_agreement"):
            if sens.table.query("treatment == @treatment")["estimate"].notna().any():
                stem = f"sensitivity_{run.name}_{treatment}"
                report.files += report._figure(sens.plot(treatment), out / "figures", stem)
                md += [f"![{stem}](figures/{stem}.png)", ""]

    # how much rests on one citizenship or one corridor
    md += _influence_material(report, out, runs, influence_pending)

    # resampling checks of the analytic inference
    if not checks.empty:
        write_table(checks, out / "tables" / "inference_checks.csv")
        report.files.append("tables/inference_checks.csv")
        md += ["## Inference checks", "",
               "Analytic clustered p-values beside a wild cluster bootstrap (restricted under the null) and randomization "
               "inference that permutes adoption dates; settings (draws, weights, level, seed) are in the spec's `[report]`.", "",
               markdown_table(checks, 3), ""]

    # event studies
    es = [(run, m) for run in runs for m in run.event_studies()]
    if es:
        md += ["## Event studies", "",
               "Each pre-trend verdict below tests the leads jointly, then asks how large a post-period violation "
               "of parallel trends the first post-period effect survives (Rambachan-Roth relative magnitudes, "
               "the conditional-least-favourable hybrid test of Andrews, Roth and Pakes; its least-favourable "
               f"critical value is simulated from {LF_DRAWS:,} draws with seed {PRETREND_SEED}: with another seed the "
               "breakdown Mbar moves by about its search tolerance, 0.01).", ""]
        for run, m in es:
            stem = f"event_study_{run.name}_{m.name}"
            fig = plot_event_study(m.result)
            report.files += report._figure(fig, out / "figures", stem)
            tab = m.result.table.reset_index()
            write_table(tab, out / "tables" / f"{stem}.csv")
            report.files.append(f"tables/{stem}.csv")
            pre = m.result.info.get("pretrend_test")
            md += [f"### `{run.name}`: {m.name}", "", f"![{m.name}](figures/{stem}.png)", ""]
            if pre is not None:
                md += [f"Joint test that all leads are zero: {pre}", ""]
            info = m.result.info
            if info.get("obs_by_period"):
                per = ", ".join(f"{k:+d}: {n}" for k, n in sorted(info["obs_by_period"].items()))
                md += [f"Corridor-years per relative period ({per})."]
                if info.get("bin_endpoints"):
                    md += ["The first and last periods pool every year beyond the window."]
                if info.get("always_treated") == "drop" and info.get("n_always_treated"):
                    md += [f"{info['n_always_treated']} corridors treated in every sample year (adopted before the data "
                           "start) are left out: they carry no change in treatment."]
                elif info.get("always_treated") == "keep" and info.get("n_always_treated"):
                    md += [f"{info['n_always_treated']} corridors treated in every sample year are kept and sit in the "
                           "last (binned) period."]
            if info.get("treated_corridors_by_cohort"):
                coh = ", ".join(f"{k}: {n}" for k, n in sorted(info["treated_corridors_by_cohort"].items()))
                md += [f"Treated corridors by adoption year: {coh}."]
            md += [""]
            md += _pretrend_material(report, out, run.name, m.name, pretrends[run.name].get(m.name))

    # filters
    md += ["## Sample filters", ""]
    for run in runs:
        flow = run.filtered.flow.drop(columns=["source"], errors="ignore")
        write_table(flow, out / "tables" / f"filter_flow_{run.name}.csv")
        report.files.append(f"tables/filter_flow_{run.name}.csv")
        show = flow[["position", "step", "enabled", "rows_after", "corridors_after", "orders_after", "returns_after", "dropped_rows", "note"]]
        md += [f"Spec `{run.name}`:", "", markdown_table(show, 0), ""]

    md += part1_and_part3
    md += ["## What these data can and cannot show", ""] + _honest_reading(runs)
    report._figures.write()
    report._figures = None
    (out / "REPORT.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    report.files.append("REPORT.md")
    log.info(report.summary())
    return report


def _prepare_samples(specs: Sequence[StudySpec], data_dir: str | Path | None) -> None:
    """Read the tables and prepare each spec's sample into the report's store before workers start:
    forked workers (:class:`~returnstudy.background.BackgroundPool`) find them there instead of
    reading and coding them again. An error is left for the spec's run to raise, in its usual order
    (spec checks before data)."""
    from returnstudy.runner import study_sample

    for spec in specs:
        try:
            study_sample(spec, data_dir)
        except Exception as exc:  # noqa: BLE001 - raised again, in order, by run_study
            log.debug("preparing %s before the workers start: %s", spec.study.name, exc)


def _quality(spec: StudySpec, data_dir: str | Path | None) -> Any:
    """Part 1's quality report, thresholds from ``spec`` (built once per report: :func:`~returnstudy.reuse.reused`)."""
    from returnstudy.quality import quality_report

    return quality_report(data_dir=data_dir if data_dir is not None else spec.data.data_dir, **spec.quality.kwargs())


def _part1_section(out: Path, spec: StudySpec, data_dir: str | Path | None) -> tuple[list[str], list[str]]:
    """Part 1 (data quality, thresholds from ``spec``): its tables written under ``out`` (its figures
    are drawn with the report's other figures: :func:`_part1_and_part3`); returns its markdown and
    the files (relative to ``out``)."""
    q = _quality(spec, data_dir)
    files = [str(p.relative_to(out)) for p in q.save(out, figures=False)]
    md = ["## Part 1: how far can the Eurostat data be trusted?", "",
          "Per reporting country, which diagnostics it fails (thresholds in `data/specs/wodc.toml`, `[quality]`):", "",
          markdown_table(q.verdicts[[c for c in ("geo", "n_fail", "fails") if c in q.verdicts]], 0), "",
          "![coverage](figures/quality_coverage_heatmap.png)", "",
          "![rates](figures/quality_return_rate_boxplot.png)", "",
          "![totals](figures/quality_national_totals.png)", ""]
    return md, files


def _part1_and_part3(report: Report, out: Path, runs: Sequence[StudyRun], data_dir: str | Path | None,
                     part1: Any, part1_spec: StudySpec) -> list[str]:
    """Part 1 (data quality; ``part1``: its pending :func:`_part1_section`; its figures queued here,
    from the quality report that the piece built) and, on the spec that asks for them, Part 3 and the
    policy claims: their files written, their markdown returned."""
    md, files = part1.result()
    report.files += files
    for name, make in _quality(part1_spec, data_dir).figure_makers().items():
        report.files += report._figure(make, out / "figures", f"quality_{name}", dpi=120)
    part3_run = next((r for r in runs if r.spec.report.get("part3_and_claims")), None)
    if part3_run is not None:
        for section in _part3_and_claims(part3_run, data_dir):
            md += _write_section(report, out, section.lines, section.tables, section.figures)
    return md


def _write_section(report: Report, out: Path, lines: Sequence[str], tables: dict[str, pd.DataFrame],
                   figures: dict[str, Any]) -> list[str]:
    """Write a section's tables and figures (stem -> object) and return its markdown, figures linked at the end."""
    for stem, table in tables.items():
        write_table(table, out / "tables" / f"{stem}.csv")
        report.files.append(f"tables/{stem}.csv")
    md = list(lines)
    if md and md[-1] != "":
        md.append("")
    for stem, fig in figures.items():
        report.files += report._figure(fig, out / "figures", stem)
        if f"figures/{stem}.png" not in "\n".join(md):
            md += [f"![{stem}](figures/{stem}.png)", ""]
    return md


def _pretrend_verdicts(run: StudyRun, reports: dict[str, Any], labels: Sequence[str]) -> list[str]:
    """Per headline row, the pre-trend verdict of the spec's event study of that treatment."""
    by_treatment: dict[str, str] = {}
    for m in run.event_studies():
        rep = reports.get(m.name)
        t = str(m.params.get("treatment", ""))
        if t and t not in by_treatment:
            by_treatment[t] = rep.verdict if hasattr(rep, "verdict") else f"no sensitivity analysis ({rep})"
    types = {label: t for t, label in TREATMENT_LABELS.items()}
    return [by_treatment.get(types.get(label, ""), "no event study in this spec") for label in labels]


def _pretrend_material(report: Report, out: Path, spec_name: str, model: str, rep: Any) -> list[str]:
    """The pre-trend paragraph, robust intervals and figures of one event study."""
    from returnstudy.honest_report import sensitivity_frame

    if rep is None:
        return []
    if isinstance(rep, str):
        return [f"No sensitivity analysis of the pre-trends: {rep}", ""]
    stem = f"pretrends_{spec_name}_{model}"
    tables = {stem: sensitivity_frame({model: rep}), f"{stem}_power": rep.power.table}
    lines = [f"**Pre-trend verdict: {rep.verdict}.** {rep.paragraph}", ""]
    lines += [f"Note: {n}" for n in rep.notes] + ([""] if rep.notes else [])
    return _write_section(report, out, lines, tables, {stem: rep.figure, f"{stem}_power": rep.power_figure})


def _part3_and_claims(run: StudyRun, data_dir: str | Path | None) -> list[Any]:
    """Part 3 (the Netherlands and Norway) and the policy response's claims, on the spec that asks for them
    (``[report] part3_and_claims = true``)."""
    from returnstudy.claims import policy_claims
    from returnstudy.compare import compare_countries
    from returnstudy.report_part3 import claims_section, part3_section

    where = data_dir if data_dir is not None else run.spec.data.data_dir
    return [part3_section(compare_countries(run.panel, data_dir=where), figures="makers"),
            claims_section(policy_claims(run.spec, where))]


def _headline_bootstraps(runs: Sequence[StudyRun]) -> dict[str, Any]:
    """Per spec with ``[report] headline_bootstrap`` settings: the wild bootstrap of its headline
    model (for Poisson models the null-restricted Kline-Santos score bootstrap, clustered as the model)."""
    from returnstudy.inference.bootstrap import wild_bootstrap

    out = {}
    for run in runs:
        cfg = run.spec.report.get("headline_bootstrap")
        res = _headline_result(run)
        if cfg and res is not None:
            out[run.name] = wild_bootstrap(res, **dict(cfg))
    return out


def _bootstrap_paragraph(runs: Sequence[StudyRun], boots: dict[str, Any]) -> str:
    parts = []
    for run in runs:
        b = boots.get(run.name)
        if b is None:
            continue
        cfg = run.spec.report.get("headline_bootstrap", {})
        parts.append(f"`{run.name}`: {cfg.get('reps', 999)} {cfg.get('weights', 'rademacher')} draws, seed {cfg.get('seed')}")
    return ("`boot_ci_pct` and `boot_p` are the wild cluster bootstrap of the same model, clustered like it: for the "
            "Poisson headline the score bootstrap of Kline and Santos (2012), restricted under the null, with the interval "
            "found by test inversion (" + "; ".join(parts) + "). With the treated variation in a few citizenships, "
            "clustered Wald intervals are too narrow (in `benchmarks/results/mc_score_bootstrap.csv` the analytic test "
            "rejects a true null 20-31% of the time at 5% with 8-40 unequal clusters, the score bootstrap 7-11%): where "
            "the two disagree, read the bootstrap. `inf` means the bootstrap does not reject any value on that side. "
            "The verdict column uses the analytic interval, as `estimate` does.")


def _influence_terms(res: Any) -> list[str]:
    return [t for t in TREATMENT_TYPES if t in res.table.index and pd.notna(res.table.loc[t, "estimate"])]


def _submit_influence(pool: BackgroundPool, runs: Sequence[StudyRun], progress: bool) -> dict[tuple[int, str], Any]:
    """Leave-one-citizenship-out and leave-one-switching-corridor-out re-estimation of each headline
    model that asks for it (``[report] influence = true``), as pieces of ``pool``."""
    from returnstudy.inference.influence import influence

    pending = {}
    for i, run in enumerate(runs):
        res = _headline_result(run)
        if res is None or not run.spec.report.get("influence", False):
            continue
        for by in ("citizen", "switching"):
            pending[(i, by)] = pool.submit(influence, res, by=by, panel=run.sample, terms=_influence_terms(res),
                                           progress=progress)
    return pending


def _influence_material(report: Report, out: Path, runs: Sequence[StudyRun],
                        pending: dict[tuple[int, str], Any]) -> list[str]:
    """Per headline treatment, the estimate without the most influential citizenship and without the most
    influential switching corridor (leave-one-out re-estimation, :func:`returnstudy.influence`)."""
    md: list[str] = []
    for i, run in enumerate(runs):
        res = _headline_result(run)
        if (i, "citizen") not in pending:
            continue
        model = run.spec.report.get("headline_model")
        terms = _influence_terms(res)
        tables = []
        for by in ("citizen", "switching"):
            inf = pending[(i, by)].result()
            tables.append(inf.most_influential())
            if by == "citizen":
                stem = f"influence_{run.name}_{model}"
                report.files += report._figure(inf.plot(terms=terms), out / "figures", stem)
        tab = pd.concat(tables, ignore_index=True)
        write_table(tab, out / "tables" / f"influence_{run.name}.csv")
        report.files.append(f"tables/influence_{run.name}.csv")
        show = tab[["term", "by", "full_pct_effect", "dropped", "pct_effect_without", "n_units", "n_unidentified"]]
        if not md:
            md += ["## How much rests on one citizenship or one corridor?", "",
                   "The headline model re-estimated without one citizenship at a time (`by = citizen`, every citizenship "
                   "among the rows it used) and without one switching corridor at a time (`by = corridor`, the corridors "
                   "whose treatment switches on inside the window): the unit whose removal moves each treatment's estimate "
                   "most, and the estimate without it (percent change in returns). `n_unidentified` counts removals that "
                   "leave the treatment without identifying variation.", ""]
        md += [f"Spec `{run.name}`, model `{model}`:", "", markdown_table(show, 1), "",
               f"![influence](figures/influence_{run.name}_{model}.png)", ""]
    return md


def _inference_checks(runs: Sequence[StudyRun], progress: bool, boots: dict[str, Any] | None = None) -> pd.DataFrame:
    """Wild bootstrap and randomization-inference p-values for the models named in each spec's [report]
    (and the headline model's bootstrap, ``boots``, computed once for the headline table)."""
    from returnstudy.inference.bootstrap import wild_bootstrap
    from returnstudy.inference.randomization import randomization_inference

    rows = []
    for run in runs:
        models = {m.name: m for m in run.models if m.ok}
        b = (boots or {}).get(run.name)
        if b is not None:
            cfg = run.spec.report.get("headline_bootstrap", {})
            kind = "score" if "score" in " ".join(b.info.get("notes", []) or []).lower() else "wild"
            for term, r in b.table.iterrows():
                rows.append({"spec": run.name, "model": run.spec.report.get("headline_model"),
                             "check": f"{kind} cluster bootstrap ({cfg.get('weights', 'rademacher')}, {cfg.get('reps', 999)} draws)",
                             "term": str(term), "estimate": r["estimate"], "p_value": r["p_value"],
                             "resampling_p_value": r["boot_p_value"]})
        for cfg in run.spec.report.get("wild_bootstrap", []):
            cfg = dict(cfg)
            m = models.get(cfg.pop("model", ""))
            if m is None:
                continue
            res = wild_bootstrap(m.result, **cfg)
            for term, r in res.table.iterrows():
                rows.append({"spec": run.name, "model": m.name, "check": f"wild bootstrap ({cfg.get('weights', 'rademacher')}, {cfg.get('reps', 999)} draws)",
                             "term": str(term), "estimate": r["estimate"], "p_value": r["p_value"], "resampling_p_value": r["boot_p_value"]})
        for cfg in run.spec.report.get("randomization", []):
            cfg = dict(cfg)
            m = models.get(cfg.pop("model", ""))
            if m is None:
                continue
            res = randomization_inference(m.result, panel=run.sample, **cfg)
            t = cfg["treatment"]
            r = res.table.loc[t]
            rows.append({"spec": run.name, "model": m.name, "check": f"randomization inference ({cfg.get('level')}, {cfg.get('reps')} draws)",
                         "term": t, "estimate": r["estimate"], "p_value": r["p_value"], "resampling_p_value": r["ri_p_value"]})
    return pd.DataFrame(rows)


def _sensitivity_sentences(sens: Any) -> list[str]:
    """Per treatment: the range of estimates over the variations and how often the CI excludes 0."""
    lines = []
    for treatment, g in sens.table.groupby("treatment", sort=False):
        g = g[g["estimate"].notna()]
        if g.empty:
            continue
        col, lo, hi = ("pct_effect", "pct_ci_low", "pct_ci_high") if g["pct_effect"].notna().all() else ("estimate", "ci_low", "ci_high")
        unit = "%" if col == "pct_effect" else ""
        pos, neg = int((g[lo] > 0).sum()), int((g[hi] < 0).sum())
        lines.append(
            f"- `{treatment}`: estimates from {g[col].min():+.1f}{unit} to {g[col].max():+.1f}{unit} over {len(g)} choices; "
            f"the 95% CI lies above zero in {pos}, below zero in {neg}, and includes zero in {len(g) - pos - neg}."
        )
    return lines


def _identifying_corridors(run: StudyRun, treatment: str, most: int = 12) -> str:
    """The corridors whose ``treatment`` varies among the rows the headline model used, with their switch-on year."""
    from returnstudy.identification import rows_used

    result = _headline_result(run)
    rows = rows_used(result, run.sample) if result is not None else None
    rows = run.sample if rows is None else rows
    if treatment not in rows.columns or rows.empty:
        return "none"
    varies = rows.groupby("corridor")[treatment].nunique(dropna=True) > 1
    corridors = sorted(varies.index[varies.to_numpy()])
    if not corridors:
        return "none"
    cohort = run.sample.groupby("corridor")[f"{treatment}_cohort"].first() if f"{treatment}_cohort" in run.sample else None
    named = [f"{c} ({int(cohort[c])})" if cohort is not None and pd.notna(cohort.get(c)) else c for c in corridors]
    more = f" and {len(named) - most} more" if len(named) > most else ""
    return ", ".join(named[:most]) + more


def _coverage_text(run: StudyRun) -> str:
    from returnstudy.treatments import coverage_shares

    try:
        cov = coverage_shares(run.sample, weight="orders")
    except KeyError as exc:
        return f"`{run.name}`: not computed ({exc})"
    share = cov["share_researched"]
    return (f"`{run.name}` {100 * share['all']:.0f}% of orders to leave in researched corridors, "
            f"{100 * share['never_treated']:.0f}% of the never-treated comparison group's orders")


def _start_date_line() -> str:
    """How many binding bilateral instruments have a start date, and how many of those were checked at the source."""
    from returnstudy.treatments import load_agreements

    b = load_agreements()["bilateral_frameworks"]
    binding = b[b["legal_form"].isin(["agreement", "implementing_protocol"]) & b["binding"].astype(str).str.lower().eq("true")]
    dated = binding["in_force"].notna() | binding["provisional_from"].notna()
    checked = dated & binding["verified"].astype(str).str.lower().eq("true")
    return (f"- Start dates: of {len(binding)} binding bilateral instruments (agreements and implementing protocols), "
            f"{int(dated.sum())} have an entry into force or provisional application in the table, {int(checked.sum())} of them "
            f"checked against the cited source; {int((~dated).sum())} have none found and are not treated under the default "
            "coding (`unknown_start`), so a corridor they cover counts as untreated.")


def _honest_reading(runs: Sequence[StudyRun]) -> list[str]:
    lines = []
    for run in runs:
        s = run.sample
        years = sorted(int(y) for y in s["year"].unique())
        treated = {t: int((s[t] > 0).sum()) for t in TREATMENT_TYPES if t in s}
        switchers = {}
        for t in TREATMENT_TYPES:
            c = f"{t}_cohort"
            if c in s:
                inside = s.loc[s[c].notna() & s[c].between(years[0] + 1, years[-1]), ["corridor", c]].drop_duplicates()
                by_year = ", ".join(f"{int(y)}: {n}" for y, n in inside.groupby(c)["corridor"].nunique().items())
                n_corr, n_cit = switching_units(s, t, _headline_result(run))
                switchers[t] = (n_corr, n_cit, by_year)
        ident = "; ".join(f"{t}: {_identifying_corridors(run, t)}" for t in ("bilateral_binding", "bilateral_protocol", "eu_agreement")
                          if t in s)
        lines.append(
            f"- `{run.name}` covers {years[0]}-{years[-1]}. Corridor-years treated: "
            + ", ".join(f"{t} {n}" for t, n in treated.items())
            + ". Under corridor fixed effects only corridors whose treatment switches on inside the window identify "
            + "an effect: "
            + "; ".join(f"{t} {n} corridors in {c} citizenships ({detail or 'none'})" for t, (n, c, detail) in switchers.items())
            + f". The corridors that identify the headline model's effects (treatment varies among the rows it used): {ident}."
        )
    lines += [
        "- With errors clustered by citizenship, a treatment that switches on for the corridors of only one or a "
        "few citizenships inside the window (the EU non-binding arrangement with Afghanistan in 2012-2016, the "
        "Belarus agreement in 2014-2023) has few effective clusters: its analytic confidence interval is too "
        "narrow, the headline table marks it as not reliably identified, and the inference checks show the "
        "bootstrap and permutation p-values. An arrangement that starts late in a year (Afghanistan, October "
        "2016) counts as in force for that whole year under the calendar-year rule; the sensitivity table shows "
        "the alternatives.",
        "- With the offline snapshot, orders to leave and returns by citizenship overlap only in 2012-2016, "
        "so only agreements that entered into force in or near that window are identified; agreements in force "
        "before 2012 are absorbed by the corridor fixed effects and contribute nothing. The full 2008-2023 analysis "
        "needs a live `python -m returnstudy fetch`.",
        "- The third-country spec is a proxy design: returns to third countries per person found illegally present. "
        "It covers the EU non-binding arrangements of 2016-2018 and the 2020 Belarus agreement, but it is not the "
        "study's return rate, and its source dropped zeros (filled and flagged, see `*_imputed_zero`).",
        _start_date_line(),
        "- Bilateral agreements are coded from `data/agreements/bilateral_frameworks.csv`; corridors not researched "
        "there (`data/agreements/bilateral_coverage.csv`) are coded as untreated, which biases bilateral effects toward "
        "zero if they hold unlisted agreements. Research coverage of each estimation sample: "
        + "; ".join(_coverage_text(run) for run in runs) + ".",
        "- No synthetic data enter this report.",
    ]
    return lines
