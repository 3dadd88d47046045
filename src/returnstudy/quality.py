"""Part 1 diagnostics: how good are Eurostat's data on orders to leave and returns?

:func:`quality_report` measures, per reporting country (``geo``) and year, from the raw
Eurostat tables (or from a corridor-year panel):

* coverage: the share of corridors (citizenships in the table's grid) with a reported,
  non-missing value; reported zeros versus missing cells; geo-years that are all zero;
* returns exceeding orders in the same corridor-year (possible, since returns follow orders
  of earlier years) and the share of the country's returns in such cells;
* rounding: the share of positive values that are multiples of 5 (Eurostat asks countries to
  round to 5);
* breaks in the national total: a year-on-year change of log(1 + total) whose absolute size
  exceeds median + k * MAD of all such changes of that variable, pooled over countries;
* consistency between tables: returns to a third country (``c_dest=THRD``) must not exceed
  total returns, in a corridor or nationally; the sum over citizenships must match the
  ``citizen=TOTAL`` row (relative gap (sum - TOTAL) / TOTAL).

:class:`QualityReport` holds the tables, a per-country verdict with the thresholds spelled
out, figures, and writes everything deterministically with :meth:`QualityReport.save`.
"""

from __future__ import annotations

import copy
import html
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from returnstudy.provenance import frozen
from returnstudy.reuse import reused

log = logging.getLogger(__name__)

__all__ = ["QualityReport", "quality_report", "VARIABLE_SOURCES", "CHECKS"]

VARIABLE_SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "orders": ("migr_eiord", {}),
    "returns": ("migr_eirtn", {"c_dest": "TOTAL"}),
    "returns_third_country": ("migr_eirtn", {"c_dest": "THRD"}),
    "found_illegal": ("migr_eipre", {}),
}
"""Variable -> (Eurostat dataset, dimension selection); age TOTAL, sex T, unit PER, annual."""

_DEFAULT_DIMS = {"freq": "A", "age": "TOTAL", "sex": "T", "unit": "PER"}
_KEYS = ["geo", "citizen", "year"]

CHECKS: dict[str, str] = {
    "coverage": "share of corridors with a reported value below coverage_min in some year (unreported years count as 0)",
    "all_zero": "a geo-year whose reported values are all zero (a non-report coded as zeros)",
    "rounding": "share of positive values that are multiples of rounding_base below rounding_min",
    "returns_exceed_orders": "corridor-years with returns > orders hold more than rate_excess_share_max of the returns",
    "break": "year-on-year |dlog(1 + national total)| above median + break_k * MAD (pooled over countries)",
    "total_gap": "|sum over citizenships - TOTAL row| / TOTAL row above total_gap_max in some year",
    "thrd_exceeds_total": "returns to a third country exceed total returns (in a corridor-year or nationally)",
}
"""Verdict checks and what failing them means."""



# --------------------------------------------------------------------------- inputs


def _normalise_last_update(value: str) -> str:
    from returnstudy.data.eurostat import normalise_last_update

    return normalise_last_update(value)


def _long_from_raw(tables: Mapping[str, Any], variables: Sequence[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Raw Eurostat tables -> long cells (geo, citizen, year, variable, value, flag, last_update)."""
    frames = []
    vintage: dict[str, Any] = {}
    for var in variables:
        code, sel = VARIABLE_SOURCES[var]
        if code not in tables:
            log.warning("quality: table %s not given; %s is skipped", code, var)
            continue
        obj = tables[code]
        df = getattr(obj, "data", obj)
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"tables[{code!r}] must be a DataFrame or a Table, got {type(obj).__name__}")
        missing = [c for c in ("geo", "citizen", "year", "value") if c not in df.columns]
        if missing:
            raise KeyError(f"tables[{code!r}] lacks column(s) {missing}; expected read_eurostat_table output")
        mask = pd.Series(True, index=df.index)
        for dim, value in {**_DEFAULT_DIMS, **sel}.items():
            if dim in df.columns:
                mask &= df[dim].astype(str) == value
            elif dim in sel:
                raise KeyError(f"tables[{code!r}] has no column {dim!r} needed for {var}")
        part = df.loc[mask, [c for c in ("geo", "citizen", "year", "value", "flag", "last_update") if c in df.columns]].copy()
        part["flag"] = part["flag"].fillna("").astype(str) if "flag" in part else ""
        part["last_update"] = part["last_update"].fillna("").astype(str).map(_normalise_last_update) if "last_update" in part else ""
        part["variable"] = var
        frames.append(part)
        if code not in vintage:
            v = dict(getattr(obj, "vintage", {}) or {})
            v.setdefault("dataset", code)
            if "last_update" not in v and "last_update" in df.columns:
                v["last_update"] = {str(k): int(n) for k, n in df["last_update"].value_counts().sort_index().items()}
            v.setdefault("rows", int(len(df)))
            v["rows_used"] = {}
            vintage[code] = v
        vintage[code]["rows_used"] = {**vintage[code]["rows_used"], var: int(mask.sum())}
    if not frames:
        raise ValueError(f"none of the tables needed for {list(variables)} were given (got {sorted(tables)})")
    cells = pd.concat(frames, ignore_index=True)
    cells["year"] = cells["year"].astype("int64")
    cells["value"] = cells["value"].astype("float64")
    return cells, vintage


def _long_from_panel(panel: pd.DataFrame, variables: Sequence[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Corridor-year panel -> long cells; imputed zeros count as not reported."""
    missing = [c for c in ("geo", "citizen", "year") if c not in panel.columns]
    if missing:
        raise KeyError(f"panel lacks column(s) {missing}")
    frames = []
    for var in variables:
        if var not in panel.columns:
            log.warning("quality: panel has no column %s; skipped", var)
            continue
        part = panel[["geo", "citizen", "year", var]].rename(columns={var: "value"}).copy()
        imp = f"{var}_imputed_zero"
        if imp in panel.columns:
            part.loc[panel[imp].fillna(False).astype(bool).to_numpy(), "value"] = np.nan
        part["flag"] = panel[f"{var}_flag"].fillna("").astype(str) if f"{var}_flag" in panel else ""
        part["last_update"] = panel[f"{var}_vintage"].fillna("").astype(str) if f"{var}_vintage" in panel else ""
        # the panel is an outer union: a row exists for a variable only where the variable or the
        # panel says so; keep rows with a value, and NaN rows as missing cells of the grid.
        part["variable"] = var
        frames.append(part)
    if not frames:
        raise ValueError(f"panel has none of the variables {list(variables)}")
    cells = pd.concat(frames, ignore_index=True)
    cells["year"] = cells["year"].astype("int64")
    cells["value"] = cells["value"].astype("float64")
    return cells, dict(panel.attrs.get("vintage", {}) or {})


def _read_tables(data_dir: str | Path | None, variables: Sequence[str]) -> dict[str, Any]:
    from returnstudy.data.tables import has_table, read_table

    out: dict[str, Any] = {}
    for var in variables:
        code = VARIABLE_SOURCES[var][0]
        if code in out:
            continue
        if var in ("orders", "returns") or has_table(code, data_dir):
            out[code] = read_table(code, data_dir)
    return out


# --------------------------------------------------------------------------- computations


def _split_units(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(corridor cells, TOTAL rows); geographic aggregates and citizenship aggregates dropped."""
    from returnstudy.data import codes

    cit = codes.citizenships()
    aggr_cit = set(cit.loc[cit["kind"] == "aggregate", "code"])
    aggr_geo = set(codes.aggregate_codes()) - set(cit.loc[cit["kind"] == "special", "code"])
    cells = cells[~cells["geo"].astype(str).isin(aggr_geo)]
    totals = cells[cells["citizen"] == "TOTAL"]
    corr = cells[~cells["citizen"].astype(str).isin(aggr_cit)]
    return corr, totals


def _source_name(source: Any) -> str:
    text = str(source or "")
    return text if "://" in text else Path(text).name


def _mad_threshold(x: pd.Series, k: float) -> tuple[float, float, float]:
    """(median, MAD, median + k * MAD) of |x| (MAD unscaled, i.e. the median absolute deviation)."""
    a = x.abs().dropna().to_numpy()
    if len(a) == 0:
        return np.nan, np.nan, np.nan
    med = float(np.median(a))
    mad = float(stats.median_abs_deviation(a, scale=1.0))
    return med, mad, med + k * mad


@dataclass
class QualityReport:
    """Part 1 data-quality diagnostics; see :func:`quality_report`."""

    by_geo_year: pd.DataFrame
    verdicts: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    thresholds: dict[str, float]
    vintage: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    # ------------------------------------------------------------------ text
    def summary(self) -> str:
        v = self.verdicts
        lines = [f"Data quality (Part 1 diagnostics) of {self.source}"]
        lines.append("Thresholds: " + ", ".join(f"{k}={val:g}" for k, val in self.thresholds.items()))
        bg = self.by_geo_year
        lines.append(f"{bg['geo'].nunique()} reporting countries, years {bg['year'].min()}-{bg['year'].max()}")
        if "n_returns_gt_orders" in bg:
            n = int(bg["n_returns_gt_orders"].sum())
            share = bg["returns_in_gt_orders"].sum() / bg["returns_in_both"].sum() if bg["returns_in_both"].sum() else np.nan
            lines.append(f"corridor-years with returns > orders: {n} ({share:.1%} of returns in corridor-years with both reported)")
        for check, meaning in CHECKS.items():
            if check in v:
                failing = v.loc[v[check], "geo"].tolist()
                lines.append(f"{check}: {len(failing)} countries fail ({', '.join(failing) or '-'}) — {meaning}")
        lines.append("Data vintage:")
        for code, vin in sorted(self.vintage.items()):
            if isinstance(vin, Mapping):
                from returnstudy.results import format_last_update

                used = vin.get("rows_used")
                used = ", ".join(f"{k} {n}" for k, n in used.items()) if isinstance(used, Mapping) else "?"
                lines.append(
                    f"  {code}: last update {format_last_update(vin.get('last_update'))}, rows {vin.get('rows', '?')}, "
                    f"rows used: {used}, sha256 {str(vin.get('sha256', ''))[:12] or '?'}"
                )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        body = html.escape(self.summary()).replace("\n", "<br>")
        return (
            "<div><strong>Data quality (Part 1)</strong><p>" + body + "</p>"
            + self.verdicts[["geo", "n_fail", "fails"]].to_html(index=False)
            + "</div>"
        )

    # ------------------------------------------------------------------ figures
    def figures(self) -> dict[str, Any]:
        """Matplotlib figures: coverage heatmap, return-rate box plots, national totals."""
        return {name: make() for name, make in self.figure_makers().items()}

    def figure_makers(self) -> dict[str, Callable[[], Any]]:
        """The figures of :meth:`figures`, each as a function that draws it (e.g. in another process)."""
        return {"coverage_heatmap": self._fig_coverage, "return_rate_boxplot": self._fig_rates,
                "national_totals": self._fig_totals}

    def _fig_coverage(self) -> Any:
        from returnstudy.plots import new_figure

        cov = self.tables["coverage"]
        variables = list(dict.fromkeys(cov["variable"]))
        geos = sorted(cov["geo"].unique())
        fig = new_figure((3.2 * max(len(variables), 1) + 1.5, 0.28 * len(geos) + 1.6))
        axes = fig.subplots(1, max(len(variables), 1), squeeze=False)[0]
        im = None
        for ax, var in zip(axes, variables):
            m = cov[cov["variable"] == var].pivot(index="geo", columns="year", values="share_reported").reindex(geos)
            im = ax.imshow(m.to_numpy(dtype=float), aspect="auto", vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
            ax.set_xticks(range(m.shape[1]), [str(c) for c in m.columns], rotation=90, fontsize=7)
            ax.set_yticks(range(len(geos)), geos, fontsize=7)
            ax.set_title(f"{var}: share of corridors reported", fontsize=9)
        if im is not None:
            fig.colorbar(im, ax=list(axes), shrink=0.6, label="share reported")
        return fig

    def _fig_rates(self) -> Any:
        from returnstudy.plots import new_figure

        rates = self.tables.get("return_rates_cells")
        fig = new_figure((10, 4.5))
        ax = fig.subplots()
        if rates is None or rates.empty:
            ax.text(0.5, 0.5, "no corridor-years with orders and returns", ha="center", va="center")
            return fig
        pos = rates[rates["return_rate"] > 0]
        medians = pos.groupby("geo")["return_rate"].median().rename("median").reset_index()
        order = medians.sort_values(["median", "geo"], kind="mergesort")["geo"].tolist()  # ties by code: stable order
        data = [pos.loc[pos["geo"] == g, "return_rate"].to_numpy() for g in order]
        ax.boxplot(data, showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(order) + 1), order)
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.set_ylabel("returns / orders (corridor-year, log scale)")
        ax.set_title("Corridor return rates by reporting country (positive rates; dashed line: returns = orders)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=90)
        return fig

    def _fig_totals(self) -> Any:
        from returnstudy.plots import new_figure
        from matplotlib.ticker import MaxNLocator

        tot = self.tables["national_totals"]
        geos = sorted(tot["geo"].unique())
        ncol = 6
        nrow = max(1, int(np.ceil(len(geos) / ncol)))
        fig = new_figure((2.2 * ncol, 1.7 * nrow + 0.6))
        axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
        variables = list(dict.fromkeys(tot["variable"]))
        colors = dict(zip(variables, ["C0", "C1", "C2", "C3", "C4"]))
        for ax, geo in zip(axes, geos):
            g = tot[tot["geo"] == geo]
            for var in variables:
                s = g[g["variable"] == var].sort_values("year")
                if s["total"].notna().any():
                    ax.plot(s["year"], s["total"], marker=".", markersize=3, linewidth=1, color=colors[var], label=var)
                    b = s[s["break"]]
                    ax.plot(b["year"], b["total"], linestyle="none", marker="o", markersize=6, markerfacecolor="none", color="red")
            ax.set_title(geo, fontsize=8)
            ax.tick_params(labelsize=6)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_yscale("symlog", linthresh=10)
        for ax in axes[len(geos):]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=7)
        fig.suptitle("National totals per year (red circle: break beyond median + k MAD)", fontsize=9)
        return fig

    # ------------------------------------------------------------------ output
    def save(self, out_dir: str | Path, *, figures: bool = True, prefix: str = "quality_") -> list[Path]:
        """Write ``tables/<prefix><name>.csv`` and ``figures/<prefix><name>.png`` (with ``.data.csv``) under ``out_dir``.

        Rows are sorted and files written by :mod:`returnstudy.artifacts`, so repeated runs
        give identical bytes.
        """
        from returnstudy.artifacts import write_figure, write_table

        out = Path(out_dir)
        written: list[Path] = []
        all_tables = {"by_geo_year": self.by_geo_year, "verdicts": self.verdicts, **self.tables}
        for name in sorted(all_tables):
            df = all_tables[name]
            keys = [c for c in ("geo", "variable", "citizen", "year", "check", "name") if c in df.columns]
            df = df.sort_values(keys, kind="mergesort") if keys else df
            written.append(write_table(df, out / "tables" / f"{prefix}{name}.csv"))
        if figures:
            for name, fig in self.figures().items():
                written.extend(write_figure(fig, out / "figures", f"{prefix}{name}", dpi=120))
        log.info("quality report: wrote %d files to %s", len(written), out)
        return written


def quality_report(
    data_dir: str | Path | None = None,
    *,
    tables: Mapping[str, Any] | None = None,
    panel: pd.DataFrame | None = None,
    variables: Sequence[str] = ("orders", "returns"),
    years: tuple[int, int] | None = None,
    break_k: float = 5.0,
    coverage_min: float = 0.9,
    rounding_min: float = 0.95,
    rounding_base: int = 5,
    rate_excess_share_max: float = 0.25,
    total_gap_max: float = 0.05,
) -> QualityReport:
    """Part 1 data-quality diagnostics per reporting country and year.

    Give one source: ``data_dir`` (a cache or snapshot directory read with
    ``returnstudy.data.tables.read_table``; None = the default cache), ``tables`` (dataset
    code -> ``read_eurostat_table`` output or ``Table``), or ``panel`` (a corridor-year panel;
    imputed zeros count as not reported, and the TOTAL-row checks need
    ``keep_aggregates=True``). ``variables`` are the per-cell checks' variables; returns to a
    third country are read too when available, for the consistency check.

    Coverage is measured on the table's grid: every citizenship (country or special code, not
    an aggregate) that appears for any reporting country in any year of that variable.
    Thresholds (stated in ``.verdicts`` and ``.thresholds``): ``break_k`` (k in median + k*MAD
    of |dlog(1 + national total)|), ``coverage_min``, ``rounding_min`` (share of positive values
    that are multiples of ``rounding_base``), ``rate_excess_share_max`` (share of returns in
    corridor-years with returns > orders), ``total_gap_max`` (relative gap between the sum over
    citizenships and the TOTAL row).
    """
    given = sum(x is not None for x in (tables, panel)) + (data_dir is not None)
    if given > 1:
        raise ValueError("give only one of data_dir, tables or panel")
    unknown = [v for v in variables if v not in VARIABLE_SOURCES]
    if unknown:
        raise KeyError(f"unknown variable(s) {unknown}; known: {sorted(VARIABLE_SOURCES)}")
    if not variables:
        raise ValueError("variables must not be empty")
    for name, val in (("coverage_min", coverage_min), ("rounding_min", rounding_min), ("rate_excess_share_max", rate_excess_share_max)):
        if not 0 <= val <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {val}")
    if break_k < 0 or total_gap_max < 0:
        raise ValueError("break_k and total_gap_max must be >= 0")
    if rounding_base < 1:
        raise ValueError(f"rounding_base must be >= 1, got {rounding_base}")
    all_vars = list(dict.fromkeys([*variables, "returns", "returns_third_country"]))
    thresholds = {
        "break_k": float(break_k),
        "coverage_min": float(coverage_min),
        "rounding_min": float(rounding_min),
        "rounding_base": float(rounding_base),
        "rate_excess_share_max": float(rate_excess_share_max),
        "total_gap_max": float(total_gap_max),
    }
    if panel is not None:
        if not isinstance(panel, pd.DataFrame):
            raise TypeError(f"panel must be a DataFrame, got {type(panel).__name__}")
        cells, vintage = _long_from_panel(panel, [v for v in all_vars if v in panel.columns or v in variables])
        return _build(_in_years(cells, years), list(variables), thresholds, vintage,
                      f"corridor-year panel ({len(panel)} rows)")
    if tables is not None:
        return _from_tables(tables, all_vars, variables, years, thresholds, f"Eurostat tables {sorted(tables)}")
    # one directory, the same thresholds: built once within a report (Part 1 section and the claims)
    source = f"Eurostat tables in {data_dir if data_dir is not None else 'the default cache'}"
    key = (None if data_dir is None else str(Path(data_dir).resolve()), tuple(variables),
           None if years is None else tuple(years), tuple(thresholds.items()))
    return reused("quality report", key,
                  lambda: _from_tables(_read_tables(data_dir, all_vars), all_vars, variables, years, thresholds, source),
                  copy=copy.deepcopy)


def _in_years(cells: pd.DataFrame, years: tuple[int, int] | None) -> pd.DataFrame:
    return cells if years is None else cells[cells["year"].between(years[0], years[1])]


def _from_tables(tables: Mapping[str, Any], all_vars: Sequence[str], variables: Sequence[str],
                 years: tuple[int, int] | None, thresholds: dict[str, float], source: str) -> QualityReport:
    """:func:`quality_report` on raw Eurostat tables (dataset code -> table)."""
    cells, vintage = _long_from_raw(tables, [v for v in all_vars if VARIABLE_SOURCES[v][0] in tables])
    return _build(_in_years(cells, years), list(variables), thresholds, vintage, source)


def _national(corr: pd.DataFrame, totals: pd.DataFrame, var: str, k: float) -> pd.DataFrame:
    """National totals of one variable on its own geo x year grid, with year-on-year breaks.

    ``total`` is the ``citizen=TOTAL`` row where the table has one, else the sum over
    citizenships. ``dlog`` = log(1 + total_t) - log(1 + total_{t-1}) for consecutive years (a
    fall to or rise from zero is finite and large); ``break`` flags |dlog| above
    median + k * MAD of all |dlog| of the variable, pooled over countries.
    """
    c = corr[corr["variable"] == var]
    grid = pd.MultiIndex.from_product([sorted(c["geo"].unique()), sorted(c["year"].unique())], names=["geo", "year"])
    s = c.groupby(["geo", "year"])["value"].sum(min_count=1).reindex(grid)
    t = totals[totals["variable"] == var].groupby(["geo", "year"])["value"].sum(min_count=1).reindex(grid)
    out = pd.DataFrame({"sum_citizens": s, "total_row": t})
    out["total"] = t.where(t.notna(), s)
    out["source"] = np.where(t.notna(), "TOTAL row", np.where(s.notna(), "sum over citizenships", ""))
    out = out.reset_index().sort_values(["geo", "year"], kind="mergesort").reset_index(drop=True)
    out.insert(1, "variable", var)
    lt = np.log1p(out["total"])
    consecutive = out.groupby("geo")["year"].shift() == out["year"] - 1
    out["dlog"] = (lt - lt.groupby(out["geo"]).shift()).where(consecutive)
    _, _, thr = _mad_threshold(out["dlog"], k)
    out["break_threshold"] = thr
    out["break"] = (out["dlog"].abs() > thr).fillna(False).astype(bool)
    return out


def _build(
    cells: pd.DataFrame, variables: list[str], th: dict[str, float], vintage: dict[str, Any], source: str
) -> QualityReport:
    corr, totals = _split_units(cells)
    present = [v for v in variables if (corr["variable"] == v).any()]
    if not present:
        raise ValueError(f"no corridor cells for {variables} in the data")
    base = int(th["rounding_base"])
    # a variable's grid: the citizenships, countries and years with at least one reported value
    corr = corr[corr.groupby(["variable", "year"])["value"].transform("count") > 0]
    corr = corr[corr.groupby(["variable", "geo"])["value"].transform("count") > 0]
    corr = corr[corr.groupby(["variable", "citizen"])["value"].transform("count") > 0]
    main = corr[corr["variable"].isin(present)]
    geos = sorted(main["geo"].unique())
    years_all = sorted(main["year"].unique())
    frame = pd.MultiIndex.from_product([geos, years_all], names=["geo", "year"])
    by = pd.DataFrame(index=frame)
    coverage_rows = []
    loaded = [v for v in VARIABLE_SOURCES if (corr["variable"] == v).any()]
    national = pd.concat([_national(corr, totals, v, th["break_k"]) for v in loaded], ignore_index=True)
    for var in present:
        c = corr[corr["variable"] == var]
        grid_cit = c["citizen"].nunique()
        var_years = sorted(c["year"].unique())
        var_geos = sorted(c["geo"].unique())
        key = [c["geo"], c["year"]]
        val = c["value"]
        agg = pd.DataFrame(
            {
                "reported": val.notna().groupby(key).sum(),
                "zero": (val == 0).groupby(key).sum(),
                "positive": (val > 0).groupby(key).sum(),
                "div": ((val > 0) & (np.mod(val, base) == 0)).groupby(key).sum(),
                "last_update": c["last_update"].groupby(key).agg(lambda s: "|".join(sorted(set(s.astype(str)) - {""}))),
            }
        ).reindex(frame)
        # a geo-year is in the variable's grid if the country and the year occur in its table
        in_grid = pd.Series(
            frame.get_level_values("year").isin(var_years) & frame.get_level_values("geo").isin(var_geos), index=frame
        )
        for col in ("reported", "zero", "positive", "div"):
            agg[col] = agg[col].fillna(0).where(in_grid)
        by[f"{var}_expected"] = np.where(in_grid, grid_cit, np.nan)
        by[f"{var}_reported"] = agg["reported"]
        by[f"{var}_share_reported"] = agg["reported"] / grid_cit
        by[f"{var}_zero"] = agg["zero"]
        by[f"{var}_missing"] = by[f"{var}_expected"] - agg["reported"]
        by[f"{var}_all_zero"] = (agg["reported"] > 0) & (agg["positive"] == 0)
        by[f"{var}_positive"] = agg["positive"]
        by[f"{var}_div{base}_share"] = agg["div"] / agg["positive"].where(agg["positive"] > 0)
        nat = national[national["variable"] == var].set_index(["geo", "year"]).reindex(frame)
        by[f"{var}_sum_citizens"] = nat["sum_citizens"]
        by[f"{var}_total_row"] = nat["total_row"]
        by[f"{var}_total_gap"] = (nat["sum_citizens"] - nat["total_row"]) / nat["total_row"].where(nat["total_row"] > 0)
        by[f"{var}_total"] = nat["total"]
        by[f"{var}_total_source"] = nat["source"].fillna("")
        by[f"{var}_dlog"] = nat["dlog"]
        by[f"{var}_break"] = nat["break"].fillna(False).astype(bool)
        by[f"{var}_last_update"] = agg["last_update"].fillna("")
        cov = by.loc[in_grid.to_numpy(), [f"{var}_share_reported"]].rename(columns={f"{var}_share_reported": "share_reported"}).reset_index()
        cov.insert(1, "variable", var)
        coverage_rows.append(cov)
    national = national[["geo", "variable", "year", "total", "source", "sum_citizens", "total_row", "dlog", "break_threshold", "break"]]

    # returns vs orders in the same corridor-year
    extra_tables: dict[str, pd.DataFrame] = {}
    wide = corr.pivot_table(index=_KEYS, columns="variable", values="value", aggfunc="first", dropna=False)
    if {"orders", "returns"} <= set(wide.columns):
        both = wide[["orders", "returns"]].dropna()
        gt = both[both["returns"] > both["orders"]]
        key = [both.index.get_level_values("geo"), both.index.get_level_values("year")]
        by["n_both_reported"] = both["returns"].groupby(key).size().reindex(frame).fillna(0)
        gkey = [gt.index.get_level_values("geo"), gt.index.get_level_values("year")]
        by["n_returns_gt_orders"] = gt["returns"].groupby(gkey).size().reindex(frame).fillna(0)
        by["returns_in_both"] = both["returns"].groupby(key).sum().reindex(frame).fillna(0)
        by["returns_in_gt_orders"] = gt["returns"].groupby(gkey).sum().reindex(frame).fillna(0)
        by["share_returns_in_gt_orders"] = by["returns_in_gt_orders"] / by["returns_in_both"].where(by["returns_in_both"] > 0)
        cells_gt = gt.reset_index()
        cells_gt["return_rate"] = cells_gt["returns"] / cells_gt["orders"].where(cells_gt["orders"] > 0)
        extra_tables["returns_gt_orders"] = cells_gt[["geo", "citizen", "year", "orders", "returns", "return_rate"]]
        rr = both[both["orders"] > 0].reset_index()
        rr["return_rate"] = rr["returns"] / rr["orders"]
        extra_tables["return_rates_cells"] = rr[["geo", "citizen", "year", "orders", "returns", "return_rate"]]
        q = rr.groupby("geo")["return_rate"].describe(percentiles=[0.1, 0.25, 0.5, 0.75, 0.9]).reset_index()
        q["pooled_rate"] = (rr.groupby("geo")["returns"].sum() / rr.groupby("geo")["orders"].sum()).reindex(q["geo"]).to_numpy()
        extra_tables["return_rates"] = q
    # returns to a third country vs total returns
    if {"returns", "returns_third_country"} <= set(wide.columns):
        pair = wide[["returns", "returns_third_country"]].dropna()
        bad = pair[pair["returns_third_country"] > pair["returns"]]
        key = [bad.index.get_level_values("geo"), bad.index.get_level_values("year")]
        by["n_thrd_gt_returns"] = bad["returns"].groupby(key).size().reindex(frame).fillna(0)
        ty = sorted(corr.loc[corr["variable"] == "returns_third_country", "year"].unique())
        by.loc[~frame.get_level_values("year").isin(ty), "n_thrd_gt_returns"] = np.nan
        thrd_sum = corr[corr["variable"] == "returns_third_country"].groupby(["geo", "year"])["value"].sum(min_count=1).reindex(frame)
        by["returns_third_country_sum"] = thrd_sum
        ret_total = by["returns_total"] if "returns_total" in by else wide["returns"].groupby(level=["geo", "year"]).sum(min_count=1).reindex(frame)
        by["thrd_to_returns_ratio"] = thrd_sum / ret_total.where(ret_total > 0)
        extra_tables["thrd_gt_returns"] = bad.reset_index()[["geo", "citizen", "year", "returns", "returns_third_country"]]

    by = by.reset_index().sort_values(["geo", "year"]).reset_index(drop=True)
    coverage = pd.concat(coverage_rows, ignore_index=True)
    verdicts = _verdicts(by, present, th, base)
    thresholds_table = pd.DataFrame(
        [{"name": k, "value": v, "meaning": _THRESHOLD_MEANING.get(k, "")} for k, v in th.items()]
    )
    break_info = (
        national.groupby("variable")["break_threshold"].first().rename("threshold").reset_index()
        .assign(name=lambda d: "break_threshold_" + d["variable"])
    )
    thresholds_table = pd.concat(
        [
            thresholds_table,
            pd.DataFrame(
                {"name": break_info["name"], "value": break_info["threshold"], "meaning": "computed |dlog| threshold for " + break_info["variable"]}
            ),
        ],
        ignore_index=True,
    )
    sources = pd.DataFrame(
        [
            {
                "dataset": code,
                # file name, not the full path: the sha256 identifies the file, and tables
                # written by `save` must not depend on where the data directory lies
                "source": _source_name(v.get("source", "")),
                "last_update": str(v.get("last_update", "")),
                "sha256": str(v.get("sha256", "")),
                "rows": v.get("rows", np.nan),
                "rows_used": str(v.get("rows_used", "")),
            }
            for code, v in sorted(vintage.items())
            if isinstance(v, Mapping)
        ],
        columns=["dataset", "source", "last_update", "sha256", "rows", "rows_used"],
    )
    tables = {"coverage": coverage, "national_totals": national, "thresholds": thresholds_table, "sources": sources, **extra_tables}
    vintage = frozen(vintage)  # read-only: every table below carries this same object
    for df in [by, verdicts, *tables.values()]:
        df.attrs["vintage"] = vintage
    return QualityReport(by_geo_year=by, verdicts=verdicts, tables=tables, thresholds=th, vintage=vintage, source=source)


_THRESHOLD_MEANING = {
    "break_k": "break if |dlog(1 + national total)| > median + k * MAD (pooled over countries, per variable)",
    "coverage_min": "fail coverage if share of corridors reported < this in some year of the variable's window",
    "rounding_min": "fail rounding if share of positive values that are multiples of rounding_base < this",
    "rounding_base": "Eurostat rounding unit",
    "rate_excess_share_max": "fail if corridor-years with returns > orders hold more than this share of returns",
    "total_gap_max": "fail if |sum over citizenships - TOTAL row| / TOTAL row > this in some year",
}


def _verdicts(by: pd.DataFrame, variables: list[str], th: dict[str, float], base: int) -> pd.DataFrame:
    rows = []
    for geo, g in by.groupby("geo", sort=True):
        r: dict[str, Any] = {"geo": geo}
        details: dict[str, list[str]] = {k: [] for k in CHECKS}
        fails: dict[str, bool] = {k: False for k in CHECKS}
        for var in variables:
            s = g[["year", f"{var}_share_reported"]].dropna()
            low = s[s[f"{var}_share_reported"] < th["coverage_min"]]
            if len(low):
                fails["coverage"] = True
                details["coverage"].append(
                    f"{var}: " + ", ".join(f"{y} {v:.2f}" for y, v in zip(low["year"], low[f"{var}_share_reported"]))
                    + f" < {th['coverage_min']:g}"
                )
            z = g.loc[g[f"{var}_all_zero"].fillna(False).astype(bool), "year"].tolist()
            if z:
                fails["all_zero"] = True
                details["all_zero"].append(f"{var}: {', '.join(map(str, z))}")
            pos = g[f"{var}_positive"].sum()
            if pos > 0:
                share = (g[f"{var}_div{base}_share"] * g[f"{var}_positive"]).sum() / pos
                r[f"{var}_div{base}_share"] = share
                if share < th["rounding_min"]:
                    fails["rounding"] = True
                    details["rounding"].append(f"{var}: {share:.3f} < {th['rounding_min']:g}")
            brk = g.loc[g[f"{var}_break"], ["year", f"{var}_dlog"]]
            if len(brk):
                fails["break"] = True
                details["break"].append(f"{var}: " + ", ".join(f"{y} ({d:+.2f})" for y, d in zip(brk["year"], brk[f"{var}_dlog"])))
            gap = g[f"{var}_total_gap"].abs()
            if gap.notna().any():
                r[f"{var}_max_total_gap"] = float(gap.max())
                if gap.max() > th["total_gap_max"]:
                    fails["total_gap"] = True
                    y = int(g.loc[gap.idxmax(), "year"])
                    details["total_gap"].append(f"{var}: {gap.max():.3f} in {y} > {th['total_gap_max']:g}")
        if "returns_in_both" in g and g["returns_in_both"].sum() > 0:
            share = g["returns_in_gt_orders"].sum() / g["returns_in_both"].sum()
            r["share_returns_in_gt_orders"] = share
            r["n_returns_gt_orders"] = int(g["n_returns_gt_orders"].sum())
            if share > th["rate_excess_share_max"]:
                fails["returns_exceed_orders"] = True
                details["returns_exceed_orders"].append(f"{share:.3f} of returns > {th['rate_excess_share_max']:g}")
        if "n_thrd_gt_returns" in g:
            n = int(g["n_thrd_gt_returns"].sum())
            nat = g.loc[g["thrd_to_returns_ratio"] > 1, "year"].tolist()
            r["n_thrd_gt_returns"] = n
            if n or nat:
                fails["thrd_exceeds_total"] = True
                details["thrd_exceeds_total"].append(
                    f"{n} corridor-years" + (f"; national in {', '.join(map(str, nat))}" if nat else "")
                )
        failed = [k for k in CHECKS if fails[k]]
        r["n_fail"] = len(failed)
        r["fails"] = ";".join(failed)
        for k in CHECKS:
            r[k] = fails[k]
            r[f"{k}_detail"] = "; ".join(details[k])
        rows.append(r)
    out = pd.DataFrame(rows)
    lead = ["geo", "n_fail", "fails", *CHECKS, *[f"{k}_detail" for k in CHECKS]]
    return out[lead + [c for c in out.columns if c not in lead]]
