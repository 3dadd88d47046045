"""Part 3 companion: two EU+ countries on return of the same citizenships, year by year.

:func:`compare_countries` puts side by side, per (reporting country, citizenship, year):
orders to leave, returns, the return rate (returns / orders, can exceed 1), returns to third
countries, persons found illegally present, first-time asylum applications and
Frontex-coordinated charter return operations to the citizenship's country; it adds the EU+
benchmark (median and interquartile range over the *other* EU+ countries' corridors of the
same citizenship) and marks the instruments of the treatment tables on the time axis.

Inference is limited to what the data carry and says so:

* the gap between the two countries' return rates per citizenship and year, and a Poisson
  (PPML, orders as exposure) model of the gap's level and trend with citizenship-year effects
  (and corridor effects for the trend): heteroskedasticity-robust standard errors from six
  corridors, so read them as descriptive precision, not design-based inference;
* an event-time view around every instrument dated inside the data's years, on the main
  design (returns per order, 2012-2016 in the offline snapshot) and on the proxy design
  (returns to third countries per person found illegally present, 2014-2023);
* a synthetic comparison (convex weights on other EU+ countries' series of the same
  citizenship that are not covered by the instrument) only where there are enough donors
  and pre-periods; otherwise the output says why not.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from returnstudy.covariates import (
    FRONTEX_LABEL,
    default_covariates_dir,
    merge_asylum,
    read_asylum_applications,
    read_frontex_operations,
    vintage_text,
)
from returnstudy.instruments import corridor_instruments, load_instrument_tables
from returnstudy.plots import new_figure
from returnstudy.provenance import frozen
from returnstudy.results import vintage_label
from returnstudy.synthetic import synthetic_control

log = logging.getLogger(__name__)

__all__ = ["CountryComparison", "PUBLISHED_REFERENCE", "ABSENT_TABLES", "compare_countries", "DESIGNS"]

#: Earlier work by the study's authors (rejected asylum seekers, 2013-2017 averages), in percent.
PUBLISHED_REFERENCE = pd.DataFrame(
    {
        "geo": ["NL", "NO"],
        "period": ["2013-2017 average", "2013-2017 average"],
        "returned_pct": [44.0, 40.3],
        "forced_pct": [23.8, 31.7],
        "assisted_voluntary_pct": [20.2, 8.6],
        "population": ["rejected asylum seekers", "rejected asylum seekers"],
        "source": ["published reference value (earlier work by the WODC study's authors; STUDY.md), not computed here"] * 2,
    }
)
#: Tables the study's earlier work used that the offline snapshot does not hold.
ABSENT_TABLES = {
    "migr_eirt_vol": "returns by type (enforced / voluntary)",
    "migr_eirt_ass": "returns by assistance (assisted / non-assisted)",
}
#: (numerator, denominator, label) of the two designs' rates.
DESIGNS: dict[str, tuple[str, str, str]] = {
    "main": ("returns", "orders", "returns per order to leave"),
    "proxy": ("returns_third_country", "found_illegal", "returns to third countries per person found illegally present"),
}
MEASURES = ["orders", "returns", "return_rate", "returns_third_country", "found_illegal", "proxy_rate",
            "asylum_first_time", "asylum_first_time_imputed_zero", "frontex_operations", "frontex_returnees"]


@dataclass(repr=False)
class CountryComparison:
    """Result of :func:`compare_countries`; every table carries the vintage it was built from.

    ``table``: one row per (geo, citizen, year) with the measures and each Eurostat cell's
    LAST UPDATE (``*_vintage``). ``benchmark``: EU+ median and interquartile range per
    citizenship, year and rate. ``instruments``: instruments applying to the compared
    corridors. ``gap_by_year``, ``gap_models``, ``event_time``, ``synthetic``: the comparison
    with inference. ``causal_reading``: whether the data support one, and why.
    """

    geos: tuple[str, ...]
    citizens: tuple[str, ...]
    table: pd.DataFrame
    benchmark: pd.DataFrame
    instruments: pd.DataFrame
    gap_by_year: pd.DataFrame
    gap_models: pd.DataFrame
    event_time: pd.DataFrame
    synthetic: pd.DataFrame
    synthetic_fits: dict[str, Any]
    causal_reading: str
    published_reference: pd.DataFrame
    absent_tables: dict[str, str]
    notes: list[str] = field(default_factory=list)
    vintage: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ text
    def vintage_lines(self) -> list[str]:
        v = self.vintage
        lines = [f"Eurostat: {vintage_label(v.get('eurostat'))}"]
        for key in ("asylum", "frontex"):
            if v.get(key):
                lines.append(f"{key}: {vintage_text(v[key])}")
        if v.get("agreements"):
            lines.append("treatment tables: " + ", ".join(f"{k} sha256 {str(h)[:12]}" for k, h in sorted(v["agreements"].items())))
        return lines

    def summary(self) -> str:
        t = self.table
        rows_main = t[t["orders"].notna() & t["returns"].notna()]
        lines = [
            f"Countries {', '.join(self.geos)} on citizenships {', '.join(self.citizens)}: {len(t)} corridor-years; "
            f"orders and returns both observed in {len(rows_main)} "
            f"(years {_span(rows_main['year'])}); proxy rate observed in {int(t['proxy_rate'].notna().sum())} "
            f"(years {_span(t.loc[t['proxy_rate'].notna(), 'year'])})",
            "Benchmark: EU+ median and interquartile range over the other EU+ countries' corridors of the same citizenship "
            f"({int(self.benchmark['n_countries'].sum()) if len(self.benchmark) else 0} country-years).",
            "Frontex columns: " + FRONTEX_LABEL + ".",
            "Not in these data: " + "; ".join(f"{k} ({v})" for k, v in self.absent_tables.items()) if self.absent_tables else "",
            "Published reference values (not computed here): " + "; ".join(
                f"{r.geo} {r.period}: {r.returned_pct:g}% returned ({r.forced_pct:g}% forced, {r.assisted_voluntary_pct:g}% assisted voluntary)"
                for r in self.published_reference.itertuples(index=False)),
            f"Instruments on the time axis: {self.instruments['instrument_id'].nunique() if len(self.instruments) else 0}",
            "Causal reading: " + self.causal_reading,
        ]
        if len(self.gap_models):
            lines.append("Gap models (PPML, orders as exposure):")
            for r in self.gap_models.itertuples(index=False):
                lines.append(f"  {r.model} {r.citizen}: {r.estimate:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] ({r.meaning}; n={r.n_obs})")
        lines += [f"Note: {n}" for n in self.notes]
        lines += ["Data vintage: " + " | ".join(self.vintage_lines())]
        return "\n".join(x for x in lines if x)

    def __repr__(self) -> str:
        return (f"<CountryComparison {'/'.join(self.geos)} x {'/'.join(self.citizens)}: {len(self.table)} corridor-years; "
                ".summary() for details>")

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(x)}</li>" for x in self.summary().splitlines())
        return f"<div><strong>Country comparison</strong><ul>{items}</ul>{self.gap_by_year.to_html(index=False)}</div>"

    # ------------------------------------------------------------------ figures
    def figures(self) -> dict[str, Any]:
        """Matplotlib figures: rates with benchmark and instruments, counts, event time, synthetic."""
        return {name: make() for name, make in self.figure_makers().items()}

    def figure_makers(self) -> dict[str, Callable[[], Any]]:
        """The figures of :meth:`figures`, each as a function that draws it (e.g. in another process)."""
        makers: dict[str, Callable[[], Any]] = {"rates": self._fig_rates, "counts": self._fig_counts}
        if len(self.event_time):
            makers["event_time"] = self._fig_event_time
        if self.synthetic_fits:
            makers["synthetic"] = self._fig_synthetic
        return makers

    def _series(self, geo: str, citizen: str, col: str) -> pd.Series:
        """One corridor's ``col`` by year over the years where it is observed, NaN in the gaps."""
        t = self.table[(self.table["geo"] == geo) & (self.table["citizen"] == citizen)].set_index("year")[col].dropna()
        if t.empty:
            return t
        return t.reindex(range(int(t.index.min()), int(t.index.max()) + 1))

    def _fig_rates(self) -> Any:
        from matplotlib.ticker import MaxNLocator

        fig = new_figure((4.2 * len(self.citizens), 6.4))
        axes = fig.subplots(2, len(self.citizens), squeeze=False, sharex="row")
        for row, design in enumerate(("main", "proxy")):
            col = "return_rate" if design == "main" else "proxy_rate"
            for j, c in enumerate(self.citizens):
                ax = axes[row][j]
                b = self.benchmark[(self.benchmark["citizen"] == c) & (self.benchmark["rate"] == col)]
                if len(b):
                    ax.fill_between(b["year"], b["q25"], b["q75"], color="0.85", label="EU+ interquartile range")
                    ax.plot(b["year"], b["median"], color="0.4", ls="--", label="EU+ median")
                for g in self.geos:
                    s = self._series(g, c, col)
                    ax.plot(s.index, s.to_numpy(), marker="o", label=g)  # missing years break the line
                years = self.table.loc[self.table[col].notna(), "year"]
                ins = self.instruments[self.instruments["citizen"] == c].dropna(subset=["year"])
                if len(years):
                    earlier = ins[ins["year"] < int(years.min())]
                    if len(earlier):
                        ax.text(0.01, 0.01, "earlier: " + ", ".join(sorted(f"{i} {int(y)}" for i, y in
                                                                          zip(earlier["instrument_id"], earlier["year"]))),
                                transform=ax.transAxes, fontsize=5, color="C3", va="bottom")
                    ins = ins[ins["year"].between(int(years.min()), int(years.max()))]
                for iid, grp in ins.groupby("instrument_id", sort=True):
                    y = int(grp["year"].iloc[0])
                    ax.axvline(y, color="C3", lw=0.8, ls=":")
                    ax.annotate(f"{iid} ({'/'.join(sorted(grp['geo']))})", (y, 1.0), xycoords=("data", "axes fraction"),
                                fontsize=6, rotation=90, va="top", ha="right", color="C3")
                ax.set_title(f"{c} ({design} design)", fontsize=9)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if j == 0:
                    ax.set_ylabel("returns / orders" if design == "main" else "third-country returns / found illegally present", fontsize=7)
                ax.tick_params(labelsize=7)
        axes[0][0].legend(fontsize=6)
        fig.suptitle("Return rates, EU+ benchmark (other EU+ countries) and instruments (dotted)", fontsize=10)
        return fig

    def _fig_counts(self) -> Any:
        from matplotlib.ticker import MaxNLocator

        measures = ["orders", "returns", "returns_third_country", "found_illegal", "asylum_first_time", "frontex_returnees"]
        labels = {"frontex_returnees": "Frontex charter returnees (by destination)", "asylum_first_time": "first-time asylum applicants"}
        fig = new_figure((4.2 * len(self.citizens), 2.0 * len(measures)))
        axes = fig.subplots(len(measures), len(self.citizens), squeeze=False, sharex=True)
        for i, m in enumerate(measures):
            for j, c in enumerate(self.citizens):
                ax = axes[i][j]
                for g in self.geos:
                    s = self._series(g, c, m)
                    ax.plot(s.index, s.to_numpy(), marker=".", label=g)
                ax.set_title(f"{c}: {labels.get(m, m)}", fontsize=8)
                ax.tick_params(labelsize=7)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0][0].legend(fontsize=6)
        fig.suptitle("Persons per year by reporting country (Eurostat; asylum: migr_asyappctza; Frontex: charters only)", fontsize=9)
        return fig

    def _fig_event_time(self) -> Any:
        from matplotlib.ticker import MaxNLocator

        groups = list(self.event_time.groupby(["instrument_id", "geo", "design"], sort=True))
        fig = new_figure((4.0 * len(groups), 3.4))
        axes = fig.subplots(1, len(groups), squeeze=False)
        for ax, ((iid, g, design), e) in zip(axes[0], groups):
            ok = e.dropna(subset=["log_ratio"])
            ax.errorbar(ok["event_time"], ok["log_ratio"], yerr=[ok["log_ratio"] - ok["ci_low"], ok["ci_high"] - ok["log_ratio"]],
                        fmt="o", capsize=2)
            ax.axvline(-0.5, color="0.5", ls=":")
            ax.axhline(0, color="0.5", lw=0.6)
            ax.set_title(f"{iid}: {g} vs {e['comparison'].iloc[0]} ({design})", fontsize=8)
            ax.set_xlabel("years since the instrument", fontsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("log rate ratio (95% CI, Poisson counts)", fontsize=7)
            ax.tick_params(labelsize=7)
        return fig

    def _fig_synthetic(self) -> Any:

        fits = list(self.synthetic_fits.items())
        fig = new_figure((4.2 * len(fits), 3.4))
        axes = fig.subplots(1, len(fits), squeeze=False)
        for ax, (key, sc) in zip(axes[0], fits):
            s = sc.series
            ax.plot(s.index, s["treated"], marker="o", label="observed")
            ax.plot(s.index, s["synthetic"], marker="s", ls="--", label="synthetic")
            last_pre = s.index[s["pre"]].max()
            ax.axvline(last_pre + 0.5, color="0.5", ls=":")
            ax.set_title(f"{key} (pre RMSPE {sc.pre_rmspe:.3g})", fontsize=8)
            ax.legend(fontsize=6)
        return fig

    def save(self, out_dir: str | Path, *, figures: bool = True, prefix: str = "compare_") -> list[Path]:
        """Write every table (CSV) and figure (PNG + plotted data) under ``out_dir``."""
        from returnstudy.artifacts import write_figure, write_table

        out = Path(out_dir)
        written = []
        for name in ("table", "benchmark", "instruments", "gap_by_year", "gap_models", "event_time", "synthetic", "published_reference"):
            written.append(write_table(getattr(self, name), out / "tables" / f"{prefix}{name}.csv"))
        if figures:
            for name, fig in self.figures().items():
                written += write_figure(fig, out / "figures", f"{prefix}{name}")
        return written


def _span(years: pd.Series) -> str:
    return f"{int(years.min())}-{int(years.max())}" if len(years) else "none"


def _data_dir_of(panel: pd.DataFrame) -> Path | None:
    """The directory the panel's Eurostat tables were read from (a snapshot), if recorded."""
    for meta in (panel.attrs.get("vintage") or {}).values():
        if isinstance(meta, dict) and meta.get("source_kind") == "directory" and meta.get("source"):
            return Path(str(meta["source"])).parent
    return None


def _check_codes(panel: pd.DataFrame, geos: Sequence[str], citizens: Sequence[str]) -> None:
    for name, values, col in (("geos", geos, "geo"), ("citizens", citizens, "citizen")):
        if not values:
            raise ValueError(f"{name} must name at least one code")
        have = set(panel[col].unique())
        unknown = [v for v in values if v not in have]
        if unknown:
            raise ValueError(f"{name}: {unknown} not in the panel's {col} column; valid: {sorted(have)}")


def _rate_table(panel: pd.DataFrame) -> pd.DataFrame:
    p = panel.copy()
    fi = p["found_illegal"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p["proxy_rate"] = np.where(fi > 0, p["returns_third_country"].to_numpy(dtype=float) / fi, np.nan)
    return p


def _benchmark(p: pd.DataFrame, geos: Sequence[str], citizens: Sequence[str], min_exposure: float) -> pd.DataFrame:
    rows = []
    others = p[~p["geo"].isin(geos) & p["citizen"].isin(citizens)]
    for rate, (num, den, _label) in (("return_rate", DESIGNS["main"]), ("proxy_rate", DESIGNS["proxy"])):
        ok = others[others[num].notna() & (others[den] >= min_exposure)]
        for (c, y), g in ok.groupby(["citizen", "year"], sort=True):
            v = g[rate].to_numpy(dtype=float)
            q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
            rows.append({"citizen": c, "year": int(y), "rate": rate, "n_countries": int(len(v)), "q25": q25, "median": med,
                         "q75": q75, "countries": " ".join(sorted(g["geo"])), "min_exposure": min_exposure, "exposure": den})
    return pd.DataFrame(rows, columns=["citizen", "year", "rate", "n_countries", "q25", "median", "q75", "countries", "min_exposure", "exposure"])


def _poisson_log_ratio(r1: float, e1: float, r0: float, e0: float, z: float) -> tuple[float, float, float, float]:
    """log((r1/e1)/(r0/e0)) and its Poisson standard error sqrt(1/r1 + 1/r0) (exposures fixed)."""
    if not (e1 > 0 and e0 > 0 and r1 > 0 and r0 > 0):
        return (np.nan,) * 4
    lr = float(np.log((r1 / e1) / (r0 / e0)))
    se = float(np.sqrt(1.0 / r1 + 1.0 / r0))
    return lr, se, lr - z * se, lr + z * se


def _gap_by_year(p: pd.DataFrame, geos: Sequence[str], citizens: Sequence[str], z: float) -> pd.DataFrame:
    g1, g0 = geos[0], geos[1]
    rows = []
    for design, (num, den, _label) in DESIGNS.items():
        for c in citizens:
            a = p[(p["geo"] == g1) & (p["citizen"] == c)].set_index("year")
            b = p[(p["geo"] == g0) & (p["citizen"] == c)].set_index("year")
            for y in sorted(set(a.index) | set(b.index)):
                r1, e1 = (a.at[y, num], a.at[y, den]) if y in a.index else (np.nan, np.nan)
                r0, e0 = (b.at[y, num], b.at[y, den]) if y in b.index else (np.nan, np.nan)
                if not (np.isfinite([r1, e1, r0, e0]).all()):
                    continue
                lr, se, lo, hi = _poisson_log_ratio(r1, e1, r0, e0, z)
                rows.append({"design": design, "citizen": c, "year": int(y), f"rate_{g1}": r1 / e1 if e1 > 0 else np.nan,
                             f"rate_{g0}": r0 / e0 if e0 > 0 else np.nan, "rate_difference": (r1 / e1 - r0 / e0) if e1 > 0 and e0 > 0 else np.nan,
                             "log_ratio": lr, "std_error": se, "ci_low": lo, "ci_high": hi,
                             "numerators": f"{num} {r1:g} / {r0:g}", "exposures": f"{den} {e1:g} / {e0:g}"})
    return pd.DataFrame(rows, columns=["design", "citizen", "year", f"rate_{g1}", f"rate_{g0}", "rate_difference", "log_ratio",
                                       "std_error", "ci_low", "ci_high", "numerators", "exposures"])


def _gap_models(p: pd.DataFrame, geos: Sequence[str], citizens: Sequence[str], alpha: float) -> tuple[pd.DataFrame, list[str]]:
    """PPML of the gap between geos[0] and geos[1]: level (citizenship-year effects) and trend (+ corridor effects)."""
    from returnstudy.models.ppml import ppml

    g1, g0 = geos[0], geos[1]
    notes: list[str] = []
    rows = []
    for design, (num, den, _label) in DESIGNS.items():
        s = p[p["geo"].isin([g1, g0]) & p["citizen"].isin(citizens) & p[num].notna() & (p[den] > 0)].copy()
        if s.empty:
            notes.append(f"gap models ({design}): no corridor-year with {num} and {den} > 0")
            continue
        t0 = int(s["year"].min())
        level_terms, trend_terms = [], []
        for c in citizens:
            is_c = (s["geo"] == g1) & (s["citizen"] == c)
            s[f"level_{c}"] = is_c.astype(float)
            s[f"trend_{c}"] = is_c.astype(float) * (s["year"] - t0)
            level_terms.append(f"level_{c}")
            trend_terms.append(f"trend_{c}")
        for model, terms, fe, meaning in (
            ("level", level_terms, ("citizen^year",), f"log of {g1}/{g0} {num}-per-{den} ratio, pooled over years"),
            ("trend", trend_terms, ("corridor", "citizen^year"), f"yearly change of the log {g1}/{g0} ratio"),
        ):
            try:
                res = ppml(s, treatments=terms, outcome=num, exposure=den, fe=fe, cluster=None, alpha=alpha)
            except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
                notes.append(f"gap model {model} ({design}) not estimable: {exc}")
                continue
            for term in terms:
                if term not in res.table.index:
                    notes.append(f"gap model {model} ({design}): {term} not identified (collinear or no variation)")
                    continue
                r = res.table.loc[term]
                c = term.split("_", 1)[1]
                rows.append({"design": design, "model": model, "citizen": c, "estimate": float(r["estimate"]),
                             "std_error": float(r["std_error"]), "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]),
                             "p_value": float(r["p_value"]), "n_obs": int(res.info.get("n_obs", 0)),
                             "years": f"{res.info.get('years', (None, None))[0]}-{res.info.get('years', (None, None))[1]}",
                             "fixed_effects": " + ".join(fe), "se": "heteroskedasticity-robust (6 corridors: no clustering possible)",
                             "meaning": meaning, "vintage": vintage_label(p.attrs.get("vintage"))})
    cols = ["design", "model", "citizen", "estimate", "std_error", "ci_low", "ci_high", "p_value", "n_obs", "years",
            "fixed_effects", "se", "meaning", "vintage"]
    return pd.DataFrame(rows, columns=cols), notes


def _coverage_of(inst_all: pd.DataFrame, iid: str) -> set[str]:
    return set(inst_all.loc[inst_all["instrument_id"] == iid, "geo"])


def _event_time(p: pd.DataFrame, geos: Sequence[str], citizens: Sequence[str], inst_all: pd.DataFrame, z: float) -> tuple[pd.DataFrame, list[str]]:
    rows, notes = [], []
    focus = inst_all[inst_all["geo"].isin(geos) & inst_all["citizen"].isin(citizens)].dropna(subset=["year"])
    for design, (num, den, _label) in DESIGNS.items():
        obs = p[p[num].notna() & (p[den] > 0)]
        if obs.empty:
            continue
        y0, y1 = int(obs["year"].min()), int(obs["year"].max())
        for r in focus.itertuples(index=False):
            if not (y0 < int(r.year) <= y1):
                continue  # needs at least one pre-year in the data
            covered = _coverage_of(inst_all, r.instrument_id)
            comps = [g for g in geos if g != r.geo and g not in covered]
            if not comps:
                notes.append(f"event time {r.instrument_id} {r.geo}-{r.citizen} ({design}): every compared country is covered; no comparison")
                continue
            comp = comps[0]
            a = obs[(obs["geo"] == r.geo) & (obs["citizen"] == r.citizen)].set_index("year")
            b = obs[(obs["geo"] == comp) & (obs["citizen"] == r.citizen)].set_index("year")
            post_both = [y for y in a.index if y >= int(r.year) and y in b.index]
            if not post_both:
                notes.append(f"event time {r.instrument_id} {r.geo}-{r.citizen} vs {comp} ({design}): no year from {int(r.year)} on "
                             f"with both series observed ({comp}: years {sorted(int(y) for y in b.index)}): the change is not identified")
            for y in sorted(set(a.index) | set(b.index)):
                if y not in a.index or y not in b.index:
                    lr = se = lo = hi = np.nan
                else:
                    lr, se, lo, hi = _poisson_log_ratio(a.at[y, num], a.at[y, den], b.at[y, num], b.at[y, den], z)
                rows.append({"design": design, "instrument_id": r.instrument_id, "instrument_year": int(r.year), "geo": r.geo,
                             "comparison": comp, "citizen": r.citizen, "year": int(y), "event_time": int(y) - int(r.year),
                             "log_ratio": lr, "std_error": se, "ci_low": lo, "ci_high": hi})
    cols = ["design", "instrument_id", "instrument_year", "geo", "comparison", "citizen", "year", "event_time",
            "log_ratio", "std_error", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=cols), notes


def _synthetic(p: pd.DataFrame, geos: Sequence[str], citizens: Sequence[str], inst_all: pd.DataFrame, min_exposure: float,
               min_donors: int, min_pre: int) -> tuple[pd.DataFrame, dict[str, Any], list[str]]:
    rows, fits, notes = [], {}, []
    focus = inst_all[inst_all["geo"].isin(geos) & inst_all["citizen"].isin(citizens)].dropna(subset=["year"])
    for design, (num, den, _label) in DESIGNS.items():
        rate = "return_rate" if design == "main" else "proxy_rate"
        obs = p[p[num].notna() & (p[den] > 0)]
        if obs.empty:
            continue
        y0, y1 = int(obs["year"].min()), int(obs["year"].max())
        years = list(range(y0, y1 + 1))
        for r in focus.itertuples(index=False):
            ey = int(r.year)
            key = f"{r.instrument_id} {r.geo}-{r.citizen} ({design})"
            pre = [y for y in years if y < ey]
            post = [y for y in years if y >= ey]
            covered = _coverage_of(inst_all, r.instrument_id)
            sub = obs[(obs["citizen"] == r.citizen)]
            wide = sub.pivot_table(index="year", columns="geo", values=rate, aggfunc="first").reindex(years)
            expo = sub.pivot_table(index="year", columns="geo", values=den, aggfunc="first").reindex(years)
            donors = [g for g in wide.columns if g not in covered and g != r.geo and wide[g].notna().all()
                      and expo[g].mean() >= min_exposure]
            treated_ok = r.geo in wide.columns and wide[r.geo].notna().all()
            reason = ""
            if not (y0 <= ey <= y1):
                reason = f"instrument year {ey} outside the {design} design's years {y0}-{y1}"
            elif len(pre) < min_pre:
                reason = f"{len(pre)} pre-period(s) in {y0}-{y1} (need {min_pre})"
            elif not treated_ok:
                reason = f"{r.geo}-{r.citizen} not observed in every year {y0}-{y1}"
            elif len(donors) < min_donors:
                reason = (f"{len(donors)} donor(s) not covered by the instrument with complete {y0}-{y1} series and mean {den} >= "
                          f"{min_exposure:g} (need {min_donors})")
            if reason:
                rows.append({"key": key, "design": design, "instrument_id": r.instrument_id, "geo": r.geo, "citizen": r.citizen,
                             "instrument_year": ey, "status": "not done", "reason": reason, "n_donors": len(donors),
                             "n_pre": len(pre), "n_post": len(post), "pre_rmspe": np.nan, "post_rmspe": np.nan,
                             "placebo_p": np.nan, "weights": ""})
                continue
            sc = synthetic_control(wide[r.geo].rename(f"{r.geo}-{r.citizen}"), wide[donors], pre)
            ratios = []
            for d in donors:  # in-space placebos: each donor against the other donors
                others = [x for x in donors if x != d]
                ratios.append(synthetic_control(wide[d], wide[others], pre).rmspe_ratio)
            placebo_p = (1 + sum(rr >= sc.rmspe_ratio for rr in ratios)) / (1 + len(ratios))
            fits[key] = sc
            w = sc.weights[sc.weights > 1e-4].sort_values(ascending=False)
            rows.append({"key": key, "design": design, "instrument_id": r.instrument_id, "geo": r.geo, "citizen": r.citizen,
                         "instrument_year": ey, "status": "done", "reason": "one treated unit: placebo rank, not a sampling-based CI",
                         "n_donors": len(donors), "n_pre": len(pre), "n_post": len(post), "pre_rmspe": sc.pre_rmspe,
                         "post_rmspe": sc.post_rmspe, "placebo_p": placebo_p,
                         "weights": " ".join(f"{k}:{v:.3f}" for k, v in w.items())})
    cols = ["key", "design", "instrument_id", "geo", "citizen", "instrument_year", "status", "reason", "n_donors", "n_pre",
            "n_post", "pre_rmspe", "post_rmspe", "placebo_p", "weights"]
    return pd.DataFrame(rows, columns=cols), fits, notes


def compare_countries(
    panel: pd.DataFrame,
    geos: Sequence[str] = ("NL", "NO"),
    citizens: Sequence[str] = ("AF", "IQ", "IR"),
    benchmark: str | None = "eu_plus",
    *,
    covariates_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    agreements: Mapping[str, pd.DataFrame] | None = None,
    min_exposure: float = 10.0,
    min_donors: int = 5,
    min_pre: int = 3,
    alpha: float = 0.05,
) -> CountryComparison:
    """Compare reporting countries ``geos`` on the return of ``citizens``, year by year (Part 3).

    Parameters
    ----------
    panel
        Corridor-year panel from :func:`returnstudy.load_panel` (EU+ reporting countries).
    geos
        Reporting countries; the gap, event-time and synthetic views compare ``geos[0]`` with
        ``geos[1]`` and need exactly two.
    benchmark
        ``"eu_plus"``: median and interquartile range of the rate over the other EU+ countries'
        corridors of the same citizenship with at least ``min_exposure`` orders (or persons
        found illegally present, for the proxy rate) that year; ``None``: no benchmark.
    covariates_dir
        Directory with ``eu_asyapp.csv`` and ``frontex_return_operations.csv``; default
        ``<data_dir>/../covariates``, where ``data_dir`` defaults to the directory the panel's
        tables were read from. A missing directory raises ``FileNotFoundError``.
    agreements
        Treatment tables (``returnstudy.load_agreements()`` output); default: load them. If
        they fail validation, instruments are not marked and a note says why.
    min_donors, min_pre
        A synthetic comparison is built only with at least this many donor countries and
        pre-instrument years.
    """
    geos, citizens = tuple(geos), tuple(citizens)
    if benchmark not in ("eu_plus", None):
        raise ValueError(f"benchmark must be 'eu_plus' or None, got {benchmark!r}")
    if len(set(geos)) != len(geos) or len(set(citizens)) != len(citizens):
        raise ValueError(f"geos {geos} and citizens {citizens} must not repeat a code")
    _check_codes(panel, geos, citizens)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    z = float(stats.norm.ppf(1 - alpha / 2))
    notes: list[str] = []
    if covariates_dir is None:
        base = data_dir if data_dir is not None else _data_dir_of(panel)
        if base is None:
            raise ValueError("covariates_dir not given and the panel was not read from a directory: pass covariates_dir= "
                             "(the directory holding eu_asyapp.csv and frontex_return_operations.csv)")
        covariates_dir = default_covariates_dir(base)
    asylum = read_asylum_applications(covariates_dir)
    frontex = read_frontex_operations(covariates_dir)

    p = _rate_table(panel)
    p = merge_asylum(p, asylum)
    fx = frontex.rename(columns={"destination": "citizen", "operations": "frontex_operations", "returnees": "frontex_returnees"})
    p = p.merge(fx, on=["geo", "citizen", "year"], how="left")
    fx_years = set(frontex["year"])
    in_fx = p["year"].isin(fx_years)
    for col in ("frontex_operations", "frontex_returnees"):
        p.loc[in_fx & p[col].isna(), col] = 0.0  # a year the compilation covers without an operation: none
    p.attrs = dict(panel.attrs)

    focus = p[p["geo"].isin(geos) & p["citizen"].isin(citizens)]
    vint_cols = [c for c in p.columns if c.endswith("_vintage")]
    table = focus[["geo", "citizen", "year", *MEASURES, *vint_cols]].sort_values(["citizen", "geo", "year"]).reset_index(drop=True)
    table.attrs["vintage"] = panel.attrs.get("vintage")
    bench = _benchmark(p, geos, citizens, min_exposure) if benchmark == "eu_plus" else _benchmark(p.iloc[:0], geos, citizens, min_exposure)

    if agreements is None:
        agreements, why = load_instrument_tables()
        if agreements is None:
            notes.append(f"instruments not marked: {why}")
    inst_all = corridor_instruments(citizens, None, agreements) if agreements is not None else \
        pd.DataFrame(columns=["instrument_id", "level", "kind", "geo", "citizen", "name", "date", "date_basis", "year", "source_url", "verified"])
    instruments = inst_all[inst_all["geo"].isin(geos)].reset_index(drop=True)

    if len(geos) == 2:
        gap = _gap_by_year(p, geos, citizens, z)
        gap_models, n1 = _gap_models(p, geos, citizens, alpha)
        event, n2 = _event_time(p, geos, citizens, inst_all, z)
        synth, fits, n3 = _synthetic(p, geos, citizens, inst_all, min_exposure, min_donors, min_pre)
        notes += n1 + n2 + n3
    else:
        notes.append(f"gap, event-time and synthetic views need exactly two countries; {len(geos)} given: descriptive table only")
        gap, gap_models, event, synth, fits = (pd.DataFrame(),) * 4 + ({},)

    main_years = table.loc[table["orders"].notna() & table["returns"].notna(), "year"]
    reasons = [f"orders and returns by citizenship cover {main_years.nunique()} years ({_span(main_years)})",
               "each instrument is adopted by one treated unit (a single country-citizenship corridor or the EU as a whole)"]
    done = synth[synth["status"] == "done"] if len(synth) else synth
    if len(done):
        causal = ("partly: synthetic comparisons exist for " + ", ".join(done["key"]) + " (one treated unit each: a placebo rank, "
                  "not a sampling-based interval); " + "; ".join(reasons))
    else:
        causal = ("no: the data cannot support a causal reading (" + "; ".join(reasons) +
                  "; no instrument has enough pre-periods and uncovered comparison countries for a synthetic comparison). "
                  "The comparison below is descriptive.")
    absent = {k: v for k, v in ABSENT_TABLES.items() if not _has_table(k, data_dir if data_dir is not None else _data_dir_of(panel))}
    if absent:
        notes.append("returns by type and by assistance (" + ", ".join(absent) + ") are absent from these data; the study's earlier "
                     "figures are shown as published reference values, not computed")
    vintage = {"eurostat": panel.attrs.get("vintage"), "asylum": asylum.attrs.get("vintage"), "frontex": frontex.attrs.get("vintage"),
               "agreements": {k: v.attrs.get("sha256") for k, v in (agreements or {}).items() if hasattr(v, "attrs")}}
    label = vintage_label(panel.attrs.get("vintage"))
    for df in (bench, gap, event, synth):
        if len(df.columns):
            df["vintage"] = label  # the Eurostat tables and LAST UPDATE values behind each number
    vintage = frozen(vintage)  # read-only: every table below carries this same object
    for df in (table, bench, instruments, gap, gap_models, event, synth):
        df.attrs["vintage"] = vintage
    return CountryComparison(
        geos=geos, citizens=citizens, table=table, benchmark=bench, instruments=instruments, gap_by_year=gap,
        gap_models=gap_models, event_time=event, synthetic=synth, synthetic_fits=fits, causal_reading=causal,
        published_reference=PUBLISHED_REFERENCE.copy(), absent_tables=absent, notes=notes, vintage=vintage,
    )


def _has_table(code: str, data_dir: Path | str | None) -> bool:
    from returnstudy.data.tables import has_table

    try:
        return bool(has_table(code, data_dir))
    except (OSError, ValueError):
        return False
