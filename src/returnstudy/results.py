"""Result objects returned by every estimator.

:class:`EstimationResult` carries

* ``table``: DataFrame indexed by ``term`` (event studies: relative period, int) with
  ``estimate, std_error, ci_low, ci_high, p_value``; Poisson models add ``irr``
  (exp(estimate)), ``pct_effect`` (100 (exp(b) - 1)) and ``pct_ci_low/high`` (the
  transformed confidence limits);
* ``params`` (Series) and ``vcov`` (DataFrame) of the estimated coefficients;
* ``info``: dict with at least ``n_obs``, ``n_corridors``, ``years`` (min, max),
  ``vintage``; estimators add ``fixed_effects``, ``cluster``, ``n_clusters``,
  ``vcov_type``, ``small_sample``, ``control_group``, ``reference_period``,
  ``dropped`` (reason -> rows), ``notes`` (list of str) and model-specific entries;
* ``summary()`` (plain text) and ``_repr_html_()`` (for notebooks);
* :meth:`EstimationResult.wald_test` for joint linear hypotheses ``R b = r``.

The class is generic: robust DiD estimators build it with :func:`make_table` and
``EstimationResult(model=..., params=..., vcov=..., table=..., info=...)``.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "EstimationResult", "WaldTest", "add_poisson_columns", "format_last_update", "format_vintage", "make_table",
    "panel_info", "vintage_label",
]

TABLE_COLUMNS = ["estimate", "std_error", "ci_low", "ci_high", "p_value"]
POISSON_COLUMNS = ["irr", "pct_effect", "pct_ci_low", "pct_ci_high"]


def _crit(alpha: float, df: float | None) -> float:
    if df is None or not np.isfinite(df):
        return float(stats.norm.ppf(1 - alpha / 2))
    return float(stats.t.ppf(1 - alpha / 2, df))


def make_table(
    estimate: Sequence[float] | pd.Series,
    std_error: Sequence[float],
    index: Sequence[Any] | pd.Index | None = None,
    df: float | None = None,
    alpha: float = 0.05,
    poisson: bool = False,
    index_name: str = "term",
) -> pd.DataFrame:
    """Coefficient table with Wald confidence intervals and two-sided p-values.

    ``df=None`` uses the normal distribution (Poisson/GLM, as fixest), otherwise Student t
    with ``df`` degrees of freedom (linear models: G-1 when clustered).
    """
    est = np.asarray(estimate, dtype=float)
    se = np.asarray(std_error, dtype=float)
    if index is None:
        index = estimate.index if isinstance(estimate, pd.Series) else range(len(est))
    crit = _crit(alpha, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        tstat = est / se
    if df is None or not np.isfinite(df):
        p = 2 * stats.norm.sf(np.abs(tstat))
    else:
        p = 2 * stats.t.sf(np.abs(tstat), df)
    ci_low, ci_high = est - crit * se, est + crit * se
    columns = {"estimate": est, "std_error": se, "ci_low": ci_low, "ci_high": ci_high, "p_value": p}
    if poisson:  # the columns of add_poisson_columns, built with the table
        columns.update(irr=np.exp(est), pct_effect=100.0 * np.expm1(est), pct_ci_low=100.0 * np.expm1(ci_low),
                       pct_ci_high=100.0 * np.expm1(ci_high))
    return pd.DataFrame(columns, index=pd.Index(list(index), name=index_name))


def add_poisson_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``irr`` = exp(b), ``pct_effect`` = 100 (exp(b) - 1) and its transformed CI limits."""
    out = table.copy()
    out["irr"] = np.exp(out["estimate"])
    out["pct_effect"] = 100.0 * np.expm1(out["estimate"])
    out["pct_ci_low"] = 100.0 * np.expm1(out["ci_low"])
    out["pct_ci_high"] = 100.0 * np.expm1(out["ci_high"])
    return out


def panel_info(frame: pd.DataFrame, attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sample description of an estimation sample: rows, corridors, citizenships, countries, years, vintage."""
    info: dict[str, Any] = {"n_obs": int(len(frame))}
    if "corridor" in frame:
        info["n_corridors"] = int(frame["corridor"].nunique())
    if "geo" in frame:
        info["n_geo"] = int(frame["geo"].nunique())
    if "citizen" in frame:
        info["n_citizen"] = int(frame["citizen"].nunique())
    if "year" in frame and len(frame):
        info["years"] = (int(frame["year"].min()), int(frame["year"].max()))
    else:
        info["years"] = (None, None)
    attrs = attrs if attrs is not None else dict(getattr(frame, "attrs", {}) or {})
    info["vintage"] = attrs.get("vintage")
    return info


def _last_update_values(lu: Any) -> list[tuple[str, Any]]:
    """(LAST UPDATE value or "not given", rows) pairs, dated values first, in input order."""
    if isinstance(lu, dict):
        pairs = [(str(k) if k else "not given", n) for k, n in lu.items()]
    elif lu is None or lu == "":
        pairs = [("not given", None)]
    else:
        pairs = [(str(lu), None)]
    return sorted(pairs, key=lambda kv: kv[0] == "not given")


def format_last_update(lu: Any) -> str:
    """Readable LAST UPDATE values of one table: "20/09/24 23:00:00 (12672 rows), not given (25719 rows)"."""
    return ", ".join(f"{k} ({n} rows)" if n is not None else k for k, n in _last_update_values(lu))


def vintage_label(vintage: Any) -> str:
    """Compact vintage for tables and JSON: "migr_eiord@not given; migr_eirtn@20/09/24 23:00:00, not given".

    One ``table@LAST UPDATE`` item per source table ("not given" where Eurostat gave none).
    """
    if not vintage:
        return "not recorded"
    if not isinstance(vintage, dict):
        return str(vintage)
    parts = []
    for code, meta in sorted(vintage.items()):
        lu = meta.get("last_update") if isinstance(meta, dict) else None
        parts.append(f"{code}@" + ", ".join(k for k, _ in _last_update_values(lu)))
    return "; ".join(parts)


def format_vintage(vintage: Any) -> str:
    """One-line description of ``panel.attrs["vintage"]`` (table: years, last update, checksum)."""
    if not vintage:
        return "not recorded"
    if not isinstance(vintage, dict):
        return str(vintage)
    parts = []
    for tab, meta in vintage.items():
        if not isinstance(meta, dict):
            parts.append(f"{tab} {meta}")
            continue
        bits = []
        source = str(meta.get("source", ""))
        if source.startswith("SYNTHETIC"):
            bits.append(source)  # never let simulated data pass for Eurostat data
        yrs = meta.get("years")
        if isinstance(yrs, (list, tuple)) and len(yrs) == 2:
            bits.append(f"years {yrs[0]}-{yrs[1]}")
        if "last_update" in meta:
            bits.append("last update " + ", ".join(k for k, _ in _last_update_values(meta["last_update"])))
        if meta.get("sha256"):
            bits.append(f"sha256 {str(meta['sha256'])[:12]}")
        if not bits:
            bits = [f"{k}={v}" for k, v in meta.items()]
        parts.append(f"{tab} ({'; '.join(bits)})")
    return " | ".join(parts)


@dataclass
class WaldTest:
    """Joint Wald test of ``R b = r``: chi2 statistic, F = chi2/q, and p-values."""

    statistic: float
    df_num: int
    df_denom: float | None
    p_value: float
    f_statistic: float
    hypothesis: str = ""

    def __str__(self) -> str:
        dist = (
            f"F({self.df_num}, {self.df_denom:g}) = {self.f_statistic:.3f}"
            if self.df_denom is not None and np.isfinite(self.df_denom)
            else f"chi2({self.df_num}) = {self.statistic:.3f}"
        )
        h = f"{self.hypothesis}: " if self.hypothesis else ""
        return f"{h}{dist}, p = {self.p_value:.4g}"


@dataclass
class EstimationResult:
    """Estimates, their covariance and a full description of the sample and inference.

    ``df_t``: degrees of freedom of the t reference distribution (None: normal).
    ``design``: metadata of the specification (outcome, regressors, fixed effects,
    clusters, weights, ...). ``extra``: model-specific objects (fits, fixed effects, ...).
    """

    model: str
    params: pd.Series
    vcov: pd.DataFrame
    table: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)
    design: dict[str, Any] = field(default_factory=dict)
    df_t: float | None = None
    alpha: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ accessors
    @property
    def std_errors(self) -> pd.Series:
        return self.table["std_error"]

    @property
    def is_poisson(self) -> bool:
        return "irr" in self.table.columns

    def coef(self, term: Any) -> float:
        """Estimate of one term (KeyError naming the available terms if absent)."""
        if term not in self.table.index:
            raise KeyError(f"term {term!r} not in result; available: {list(self.table.index)}")
        return float(self.table.loc[term, "estimate"])

    # ------------------------------------------------------------ tests
    def wald_test(
        self,
        R: np.ndarray | Sequence[Sequence[float]] | None = None,
        r: np.ndarray | Sequence[float] | None = None,
        *,
        terms: Sequence[Any] | None = None,
        hypothesis: str = "",
    ) -> WaldTest:
        """Joint Wald test of ``R @ params = r`` using ``vcov``.

        ``R`` is a (q, k) matrix (a 1-D array is one restriction) over ``params`` in their
        order; alternatively ``terms`` lists parameter names that are jointly zero under the
        null. F = W/q is referred to F(q, df_t) when ``df_t`` is set (linear models),
        otherwise W to chi2(q). q is the rank of R V R'.
        """
        names = list(self.params.index)
        if (R is None) == (terms is None):
            raise ValueError("give exactly one of R or terms")
        if terms is not None:
            missing = [t for t in terms if t not in names]
            if missing:
                raise KeyError(f"terms {missing} not among parameters {names}")
            Rm = np.zeros((len(terms), len(names)))
            for i, t in enumerate(terms):
                Rm[i, names.index(t)] = 1.0
            if not hypothesis:
                hypothesis = "all of " + ", ".join(map(str, terms)) + " = 0"
        else:
            Rm = np.atleast_2d(np.asarray(R, dtype=float))
        q, k = Rm.shape
        if k != len(names):
            raise ValueError(f"R has {k} columns, the model has {len(names)} parameters")
        rv = np.zeros(q) if r is None else np.asarray(r, dtype=float).ravel()
        if rv.size != q:
            raise ValueError(f"r has {rv.size} entries, R has {q} rows")
        b = self.params.to_numpy(dtype=float)
        V = self.vcov.to_numpy(dtype=float)
        d = Rm @ b - rv
        RVR = Rm @ V @ Rm.T
        W = float(d @ np.linalg.pinv(RVR) @ d)
        rank = int(np.linalg.matrix_rank(RVR))
        q_eff = max(rank, 1)
        F = W / q_eff
        if self.df_t is not None and np.isfinite(self.df_t):
            p = float(stats.f.sf(F, q_eff, self.df_t))
            ddf = float(self.df_t)
        else:
            p = float(stats.chi2.sf(W, q_eff))
            ddf = None
        return WaldTest(statistic=W, df_num=q_eff, df_denom=ddf, p_value=p, f_statistic=F, hypothesis=hypothesis)

    # ------------------------------------------------------------ display
    def _description_lines(self) -> list[str]:
        i = self.info
        lines = [f"Model: {self.model}"]
        if "outcome" in self.design:
            lines.append(f"Outcome: {self.design['outcome']}")
        yrs = i.get("years", (None, None))
        if i.get("unit") not in (None, "corridor"):  # another panel: its own unit and time columns
            lines.append(
                f"Sample: {i.get('n_obs', '?')} {i['unit']}-{i.get('time', 'time')} rows, {i.get('n_units', '?')} "
                f"units ({i['unit']}), {i.get('time', 'time')} {yrs[0]}-{yrs[1]}"
            )
        else:
            lines.append(
                f"Sample: {i.get('n_obs', '?')} corridor-years, {i.get('n_corridors', '?')} corridors, "
                f"{i.get('n_geo', '?')} reporting countries, {i.get('n_citizen', '?')} citizenships, years {yrs[0]}-{yrs[1]}"
            )
        fe = i.get("fixed_effects", self.design.get("fixed_effects"))
        lines.append(f"Fixed effects: {', '.join(fe) if fe else 'none'}")
        cl = i.get("cluster")
        if cl:
            ncl = i.get("n_clusters")
            lines.append(f"Standard errors: clustered by {cl} ({ncl} clusters)")
        else:
            lines.append(f"Standard errors: {i.get('vcov_type', 'hetero')}")
        if i.get("vcov_description"):
            lines.append(f"Variance estimator: {i['vcov_description']}")
        if i.get("small_sample") and "small-sample" not in str(i.get("vcov_description", "")):
            lines.append(f"Small-sample correction: {i['small_sample']}")
        dist = "normal" if self.df_t is None or not np.isfinite(self.df_t) else f"t({self.df_t:g})"
        lines.append(f"Inference: {100 * (1 - self.alpha):g}% intervals, {dist} reference distribution")
        for key, label in (
            ("control_group", "Control group"),
            ("reference_period", "Reference period"),
            ("weights", "Weights"),
            ("exposure", "Exposure"),
            ("log_zero_rule", "Zero rule for log outcome"),
            ("treatment_rule", "Treatment coding"),
        ):
            if i.get(key) is not None:
                lines.append(f"{label}: {i[key]}")
        dropped = i.get("dropped") or {}
        if dropped:
            lines.append("Dropped:")
            for reason, count in dropped.items():
                lines.append(f"  - {reason}: {count}")
        if i.get("separation_checks") is not None:
            lines.append(
                f"Separation checks: {', '.join(i['separation_checks']) or 'none'}; "
                f"rows separated by regressors: {i.get('n_separated', 0)}"
            )
        if i.get("obs_by_period"):
            lines.append("Treated-corridor observations by relative period: " + ", ".join(f"{k}: {v}" for k, v in i["obs_by_period"].items()))
        if "converged" in i:
            lines.append(f"Converged: {i['converged']} ({i.get('n_iter', '?')} iterations)")
        wt = i.get("pretrend_test")
        if wt is not None:
            lines.append(f"Joint test of leads: {wt}")
        for note in i.get("notes", []) or []:
            lines.append(f"Note: {note}")
        lines.append("Data vintage: " + format_vintage(i.get("vintage")))
        return lines

    def summary(self, digits: int = 4) -> str:
        """Plain-text report: specification, sample, inference, drops, vintage and the table."""
        lines = self._description_lines()
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 200):
            tab = self.table.to_string(float_format=lambda x: f"{x:.{digits}g}" if not math.isnan(x) else "NaN")
        return "\n".join(lines) + "\n\n" + tab

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        """One line; :meth:`summary` is the long form."""
        i = self.info
        cl = i.get("cluster")
        se = f"clustered by {cl} ({i.get('n_clusters')} clusters)" if cl else str(i.get("vcov_type", "hetero"))
        return (
            f"<EstimationResult {self.model}: {len(self.table)} terms, {i.get('n_obs', '?')} corridor-years, "
            f"{i.get('n_corridors', '?')} corridors, SE {se}; .summary() for details>"
        )

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self._description_lines())
        return (
            f"<div class='returnstudy-result'><strong>{html.escape(self.model)}</strong>"
            f"<ul>{items}</ul>{self.table.to_html(float_format=lambda x: f'{x:.4g}')}</div>"
        )
