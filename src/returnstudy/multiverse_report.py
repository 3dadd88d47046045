"""Report material: "How far do the conclusions survive?" built from the multiverse.

:func:`multiverse_section` runs a seeded random sample of the grid's full design, the
specification curve of each headline treatment, the variance decomposition, the choices on
which the conclusion hinges and the permutation null test of the curve, and returns the
markdown lines, tables and figures (the report writes them). The sizes are arguments so that
the section fits the report's time budget; the text states them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from returnstudy.multiverse_result import STUDY_RANGE, MultiverseResult, NullTestResult
from returnstudy.spec import StudySpec

log = logging.getLogger(__name__)

#: Defaults sized for the report's budget on a 2-core machine (about a minute); see the text.
REPORT_SPECS = 40
REPORT_NULL_SPECS = 12
REPORT_DRAWS = 20
REPORT_SEED = 20221025
HEADLINE_TREATMENTS = ("bilateral_binding", "eu_agreement")


@dataclass
class MultiverseSection:
    """Markdown lines, tables (name -> DataFrame) and figures (name -> Figure) of the section."""

    lines: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    result: MultiverseResult | None = None
    null_tests: dict[str, NullTestResult] = field(default_factory=dict)


def _pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.0f}%"


def multiverse_section(
    spec: StudySpec | str | Path | None = None,
    data_dir: str | Path | None = None,
    *,
    n_specs: int = REPORT_SPECS,
    null_specs: int = REPORT_NULL_SPECS,
    draws: int = REPORT_DRAWS,
    seed: int = REPORT_SEED,
    treatments: tuple[str, ...] = HEADLINE_TREATMENTS,
    backend: str = "serial",
    n_jobs: int | None = None,
    result: MultiverseResult | None = None,
) -> MultiverseSection:
    """The section "How far do the conclusions survive?" (``result``: reuse a finished run)."""
    from returnstudy.multiverse import multiverse

    if result is None:
        result = multiverse(spec, data_dir, design="sample", n=n_specs, seed=seed, backend=backend, n_jobs=n_jobs)
    g, info = result.grid, result.info
    full = g.size("full")
    lines = ["## How far do the conclusions survive?", ""]
    lines.append(
        f"The multiverse grid `{g.path.name if g.path else g.name}` declares {len(g.dimensions)} analytic choices, each "
        f"with its options and reason; crossed, they give {full:,} specifications after "
        f"{sum((info.get('excluded') or {}).values()):,} invalid combinations are excluded by declared rules. "
        f"This section estimates a seeded random sample of {info['specifications']} of them (seed {info['seed']}): "
        f"{info['codings']} treatment codings, {info['filter_runs']} filter runs, {info['samples']} samples and "
        f"{info['fits']} model fits. The full grid is a job for a cluster "
        "(`python -m returnstudy multiverse --design full --backend dask --address tcp://...`)."
    )
    if info.get("unavailable"):
        lines.append(f"Left out (the installed coding lacks the argument): {'; '.join(info['unavailable'])}.")
    lines.append("")
    lines.append("Effects are on one scale, the percent change in returns per order to leave (linear models: "
                 "the effect divided by the sample's mean return rate).")
    lines.append("")
    shares = []
    for t in treatments:
        if not (result.table["treatment"] == t).any():
            continue
        s = result.shares(t)
        shares.append({"treatment": t, "specifications": s["n_total"], "estimated": s["n_estimated"],
                       "median effect (%)": round(s["median_effect_pct"], 1), "CI above 0": s["above_zero"],
                       "CI below 0": s["below_zero"], "CI includes 0": s["includes_zero"],
                       f"CI overlaps +{STUDY_RANGE[0]:g} to +{STUDY_RANGE[1]:g}%": s["includes_study_range"]})
    share_table = pd.DataFrame(shares)
    result_tables: dict[str, pd.DataFrame] = {"multiverse_shares": share_table}
    for r in shares:
        lines.append(f"- **{r['treatment']}**: {r['estimated']} of {r['specifications']} specifications estimated; median "
                     f"{r['median effect (%)']:+.1f}%; the 95% CI lies above zero in {_pct(r['CI above 0'])}, below zero in "
                     f"{_pct(r['CI below 0'])}, includes zero in {_pct(r['CI includes 0'])} and overlaps the study's +5 to "
                     f"+10% in {_pct(r[f'CI overlaps +{STUDY_RANGE[0]:g} to +{STUDY_RANGE[1]:g}%'])}.")
    lines.append("")
    figures: dict[str, Any] = {}
    nulls: dict[str, NullTestResult] = {}
    for t in treatments:
        rows = result.rows(t) if (result.table["treatment"] == t).any() else pd.DataFrame()
        if len(rows) < 3:
            lines.append(f"{t}: fewer than three estimated specifications; no curve.")
            continue
        figures[f"multiverse_curve_{t}"] = result.curve(t)
        try:
            vd = result.variance_decomposition(t)
        except ValueError as exc:
            lines.append(f"{t}: {exc}")
            continue
        main = vd[vd["kind"] != "interaction"].sort_values("share", ascending=False)
        inter = vd[vd["kind"] == "interaction"].sort_values("share", ascending=False).head(5)
        result_tables[f"multiverse_variance_{t}"] = pd.concat([main, inter], ignore_index=True)
        top = main[main["kind"] == "main"].head(3)
        text = (f"**{t}**, what moves the estimate: "
                + ", ".join(f"{r.term} ({_pct(r.share)} of the variance)" for r in top.itertuples())
                + f"; unexplained by the main effects: {_pct(float(main.loc[main['kind'] == 'residual', 'share'].iloc[0]))}")
        if len(inter):
            text += f" (largest pairwise interaction: {inter.iloc[0]['term']}, {_pct(inter.iloc[0]['share'])} more)"
        lines.append(text + ".")
        flips = result.which_choices_flip(t)
        result_tables[f"multiverse_flips_{t}"] = flips
        hinge = flips[flips["flips"]]
        if len(hinge):
            lines.append("The conclusion changes with: " + "; ".join(
                f"{r.dimension} = {r.option} ({r.conclusion}, {r.n_specs} specifications)" for r in hinge.itertuples()) + ".")
        else:
            lines.append("No single option changes the majority conclusion.")
        try:
            nt = result.null_test(t, draws=draws, seed=seed, n_specs=null_specs, backend=backend, n_jobs=n_jobs)
        except ValueError as exc:
            lines.append(f"Null test of {t}: not run ({exc}).")
            lines.append("")
            continue
        nulls[t] = nt
        st = nt.statistics
        result_tables[f"multiverse_null_{t}"] = st
        rw = int((nt.per_spec["p_fwer_romano_wolf"] < 0.05).sum())
        lines.append(
            f"Null test ({nt.info['draws']} permutations of adoption dates across {nt.info['level']}s over "
            f"{nt.info['n_specifications']} randomly chosen specifications), "
            f"dominant direction {'positive' if st['direction'].iloc[0] == '+' else 'negative'}: "
            + "; ".join(f"{r.statistic} {r.observed:.3g} (p = {r.p_value:.2f})" for r in st.itertuples())
            + f". With family-wise adjustment (Romano-Wolf) {rw} of {len(nt.per_spec)} specifications stay significant at 5%."
        )
        lines.append("")
    lines.append(
        f"Sizes: {info['specifications']} specifications and, for the null test, {draws} draws over {null_specs} "
        "specifications per treatment, chosen to keep this section near a minute on two cores; with "
        f"{draws} draws the smallest attainable p-value is {1 / (draws + 1):.3f}. The target of at least 100 draws over "
        "at least 100 specifications, and the full grid with 999 draws, are for a cluster (see benchmarks/bench_multiverse.py)."
    )
    lines.append("")
    return MultiverseSection(lines=lines, tables=result_tables, figures=figures, result=result, null_tests=nulls)
