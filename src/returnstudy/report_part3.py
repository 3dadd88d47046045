"""Report sections for Part 3 (the Netherlands and Norway) and the policy response's claims.

Each function returns a :class:`ReportSection`: markdown lines, tables and figures keyed by
file stem, for the report builder to write (``artifacts.write_table`` / ``write_figure``) and
link. Nothing here writes files or reads data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ReportSection", "part3_section", "claims_section"]

PART3_TITLE = "Part 3: the Netherlands and Norway"
CLAIMS_TITLE = "The policy response's claims, tested"


@dataclass
class ReportSection:
    """Markdown ``lines`` (heading first), ``tables`` and ``figures`` keyed by file stem."""

    title: str
    lines: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


def _md(df: pd.DataFrame, digits: int = 3) -> str:
    def cell(x: Any) -> str:
        if isinstance(x, (float, np.floating)):
            return "" if not np.isfinite(x) else f"{x:.{digits}g}"
        return str(x).replace("|", "/").replace("\n", " ")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def part3_section(comparison: Any, *, figures: bool | str = True, prefix: str = "part3_") -> ReportSection:
    """The Part 3 section from a :class:`returnstudy.compare.CountryComparison` (``figures``: True,
    False, or "makers": each figure as a function that draws it, for whichever process is free)."""
    c = comparison
    g1 = c.geos[0]
    g0 = c.geos[1] if len(c.geos) > 1 else ""
    lines = [f"## {PART3_TITLE}", ""]
    lines.append(
        f"Return of {', '.join(c.citizens)} nationals from {' and '.join(c.geos)}, year by year, against the median and "
        "interquartile range of the other EU+ countries (Eurostat). Frontex figures are charter operations coordinated by "
        "Frontex only, by destination country. Causal reading: " + c.causal_reading
    )
    lines += ["", "Data vintage: " + " | ".join(c.vintage_lines()), ""]
    if c.absent_tables:
        lines.append("Returns by type and by assistance (" + ", ".join(f"`{k}`" for k in c.absent_tables) +
                     ") are not in these data. The study's earlier work reported, for rejected asylum seekers (published "
                     "reference values, not computed here):")
        lines += ["", _md(c.published_reference.drop(columns=["source"])), ""]
    if len(c.gap_models):
        lines.append(f"Gap between {g1} and {g0} (PPML with orders, or persons found illegally present, as exposure; "
                     "heteroskedasticity-robust intervals from six corridors, so descriptive precision only):")
        lines += ["", _md(c.gap_models[["design", "model", "citizen", "estimate", "ci_low", "ci_high", "n_obs", "years", "meaning"]]), ""]
    if len(c.instruments):
        lines.append("Instruments of the treatment tables on these corridors (marked on the time axis where inside the data's years):")
        lines += ["", _md(c.instruments[["instrument_id", "geo", "citizen", "kind", "date", "date_basis", "verified"]]
                      .assign(date=lambda d: pd.to_datetime(d["date"]).dt.date.astype(str))), ""]
    if len(c.synthetic):
        lines.append("Synthetic comparisons (done only with enough donors and pre-periods):")
        lines += ["", _md(c.synthetic[["key", "status", "reason", "n_donors", "n_pre", "pre_rmspe", "placebo_p"]]), ""]
    lines += [f"Note: {n}" for n in c.notes]
    tables = {f"{prefix}{k}": getattr(c, k) for k in ("table", "benchmark", "instruments", "gap_by_year", "gap_models",
                                                       "event_time", "synthetic", "published_reference")}
    if figures == "makers":
        figs = {f"{prefix}{k}": f for k, f in c.figure_makers().items()}
    else:
        figs = {f"{prefix}{k}": f for k, f in c.figures().items()} if figures else {}
    return ReportSection(PART3_TITLE, lines, tables, figs)


def claims_section(claims: Any, *, prefix: str = "claims_") -> ReportSection:
    """The claims section from a :class:`returnstudy.claims.ClaimsResult`."""
    t = claims.table
    lines = [f"## {CLAIMS_TITLE}", "",
             "Each claim of the ministry's policy response with the test the data allow. Verdicts: supported, not supported, "
             "inconclusive (the interval includes both readings) or cannot be tested with these data (and why). Associations "
             "are labelled as such.", "",
             "Data vintage: " + "; ".join(f"{k}: {v}" for k, v in claims.vintage.items()), "",
             _md(t[["claim_id", "test", "estimate", "ci_low", "ci_high", "unit", "verdict", "reason", "caveat", "n_obs", "years"]]), ""]
    lines += ["In one line per claim:", ""] + [f"- {x}" for x in claims.one_line_per_claim()]
    lines += [""] + [f"Note: {n}" for n in claims.notes]
    tables = {f"{prefix}table": t}
    if "variance_decomposition" in claims.details:
        tables[f"{prefix}variance_decomposition"] = claims.details["variance_decomposition"]
    return ReportSection(CLAIMS_TITLE, lines, tables, {})
