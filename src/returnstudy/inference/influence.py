"""Leave-one-cluster-out influence: how much each cluster (or switching corridor) moves an estimate.

The result's model is re-estimated on the panel without the rows of one unit at a time:

* ``by="citizen"`` (or any other panel column, e.g. ``"geo"``): every value of that column
  among the rows the model used — with errors clustered by citizenship, one cluster at a time;
* ``by="switching"``: every corridor whose treatment switches among the rows the model used
  (the corridors that identify the effect under corridor fixed effects, see
  :func:`returnstudy.identification.switching_corridors`).

The re-estimation replays the result's own call (the same mechanism as randomization
inference: robust estimators record their call, ``twfe``/``ppml`` are rebuilt from
``result.design`` on ``panel``). Before dropping anything the model is re-estimated on the
full panel and must reproduce the result's estimates (else ``ValueError``: wrong panel).

``change`` is the estimate without the unit minus the full-sample estimate (log points for
Poisson models; ``pct_change`` is the change of ``pct_effect`` = 100 (exp(b) - 1) in
percentage points). ``identified`` is False when the term cannot be estimated without the
unit (re-estimation failed or dropped the regressor, or, for a treatment column, no corridor's
treatment varies among the rows used any more).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from returnstudy._progress import progress as _progress
from returnstudy.identification import rows_used, switching_by_treatment, switching_corridors
from returnstudy.inference.randomization import _refit_spec
from returnstudy.models._common import PreparedFit
from returnstudy.models.ppml import prepare_ppml_call
from returnstudy.models.twfe import prepare_twfe_call
from returnstudy.results import EstimationResult

logger = logging.getLogger(__name__)

__all__ = ["InfluenceResult", "influence", "without_most_influential"]

#: Largest relative difference between the replayed full-sample fit and the result's estimates.
REPLAY_TOLERANCE = 1e-8

_EST_COLUMNS = ["estimate", "std_error", "ci_low", "ci_high"]
_PCT_COLUMNS = ["pct_effect", "pct_ci_low", "pct_ci_high"]


@dataclass(repr=False)
class InfluenceResult:
    """Leave-one-unit-out re-estimates of a model.

    ``table``: one row per (dropped unit, term) with ``by``, ``dropped``, ``term``, ``estimate``,
    ``std_error``, ``ci_low``, ``ci_high`` (Poisson: ``pct_effect``, ``pct_ci_low``,
    ``pct_ci_high``, ``pct_change``), ``change``, ``n_obs``, ``switching_corridors`` (of the term's
    treatment among the rows used, NaN for non-treatment terms), ``unit_switches`` (the dropped
    unit holds a corridor whose treatment switches in the full fit), ``identified``, ``error``.
    ``full``: the full-sample estimates per term (same columns).
    """

    table: pd.DataFrame
    full: pd.DataFrame
    by: str
    model: str
    poisson: bool

    def __repr__(self) -> str:
        return (f"<InfluenceResult {self.model}: {self.table['dropped'].nunique()} {self.by} units dropped one at a "
                f"time, terms {list(self.full.index)}; .most_influential(), .plot()>")

    def most_influential(self, terms: Sequence[Any] | None = None) -> pd.DataFrame:
        """Per term, the unit whose removal moves the estimate most (largest ``|change|``
        among drops that leave the term identified), with the estimate without it."""
        terms = list(self.full.index) if terms is None else list(terms)
        rows = []
        for term in terms:
            if term not in self.full.index:
                raise KeyError(f"term {term!r} not in the influence table; terms: {list(self.full.index)}")
            sub = self.table[(self.table["term"] == term) & self.table["identified"]]
            f = self.full.loc[term]
            row: dict[str, Any] = {"term": term, "by": self.by, "full_estimate": f["estimate"],
                                   "full_std_error": f["std_error"]}
            if self.poisson:
                row["full_pct_effect"] = f["pct_effect"]
            row["n_units"] = int((self.table["term"] == term).sum())
            row["n_unidentified"] = row["n_units"] - len(sub)
            if sub.empty:
                row.update(dropped=None, estimate_without=np.nan, std_error_without=np.nan, change=np.nan, n_obs=np.nan)
            else:
                r = sub.loc[sub["change"].abs().idxmax()]
                row.update(dropped=r["dropped"], estimate_without=r["estimate"], std_error_without=r["std_error"],
                           change=r["change"], n_obs=int(r["n_obs"]))
                if self.poisson:
                    row.update(pct_effect_without=r["pct_effect"], pct_change=r["pct_change"])
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The most influential unit per term (plain text)."""
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            body = self.most_influential().to_string(index=False, float_format=lambda x: f"{x:.4g}")
        return f"Leave-one-{self.by}-out influence ({self.model}), {self.table['dropped'].nunique()} units\n{body}"

    def _repr_html_(self) -> str:
        return (f"<div><strong>Leave-one-{html.escape(self.by)}-out influence ({html.escape(self.model)})</strong>"
                f"{self.most_influential().to_html(index=False)}</div>")

    def plot(self, terms: Sequence[Any] | None = None, top: int = 15, scale: str | None = None) -> Any:
        """Estimate without each of the ``top`` most influential units (largest ``|change|``) per
        term, with its confidence interval; the line and band are the full-sample estimate and
        interval. ``scale``: ``"pct"`` (Poisson default: percent change in the rate) or ``"log"``."""
        from returnstudy.plots import new_figure

        terms = list(self.full.index) if terms is None else list(terms)
        scale = scale or ("pct" if self.poisson else "log")
        if scale not in ("pct", "log"):
            raise ValueError(f"scale must be 'pct' or 'log', got {scale!r}")
        if scale == "pct" and not self.poisson:
            raise ValueError(f"scale='pct' needs a Poisson model; {self.model!r} is linear")
        cols = ("pct_effect", "pct_ci_low", "pct_ci_high") if scale == "pct" else ("estimate", "ci_low", "ci_high")
        fig = new_figure((7.5, 0.6 + 0.28 * (top + 2) * len(terms)))
        axes = fig.subplots(len(terms), 1, squeeze=False)[:, 0]
        for ax, term in zip(axes, terms):
            sub = self.table[(self.table["term"] == term) & self.table["identified"]]
            sub = sub.reindex(sub["change"].abs().sort_values(ascending=False).index[:top])
            sub = sub.sort_values(cols[0])
            f = self.full.loc[term]
            ax.axvspan(f[cols[1]], f[cols[2]], color="0.9", zorder=0)
            ax.axvline(f[cols[0]], color="0.3", lw=1, label="full sample")
            ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
            y = np.arange(len(sub))
            ax.errorbar(sub[cols[0]], y, xerr=[sub[cols[0]] - sub[cols[1]], sub[cols[2]] - sub[cols[0]]],
                        fmt="o", ms=4, color="C0", ecolor="C0", elinewidth=1, capsize=0)
            ax.set_yticks(y)
            ax.set_yticklabels([str(d) for d in sub["dropped"]], fontsize=8)
            ax.set_title(f"{term}: without one {self.by}", fontsize=10, loc="left")
            ax.set_xlabel("percent change in the rate" if scale == "pct" else "estimate")
        return fig


def _terms_table(res: EstimationResult, terms: Sequence[Any], poisson: bool) -> pd.DataFrame:
    return _table_terms(res.table, terms, poisson)


def _table_terms(table: pd.DataFrame, terms: Sequence[Any], poisson: bool) -> pd.DataFrame:
    cols = _EST_COLUMNS + (_PCT_COLUMNS if poisson else [])
    return table.reindex(index=list(terms), columns=cols).astype(float)


def _treatment_switching(res: EstimationResult | None, sample: pd.DataFrame, terms: Sequence[Any],
                         unit: str | None, design: Any = None) -> dict[Any, float]:
    """Per term, the units whose treatment varies among the rows the fit used (NaN: not a
    treatment column). Read from the fit's own rows (``design.frame``; ``design`` defaults to
    ``res``'s) when they hold the columns, else from ``sample`` at the rows ``res`` used."""
    out: dict[Any, float] = {t: np.nan for t in terms}
    treat = [t for t in terms if isinstance(t, str) and t in sample.columns]
    if not treat:
        return out
    if design is None:
        design = (getattr(res, "extra", None) or {}).get("design")
    frame = getattr(design, "frame", None)
    needed = set(treat) | ({unit} if unit is not None else ({"corridor"} if "corridor" in sample.columns else {"geo", "citizen"}))
    if frame is not None and needed <= set(frame.columns):
        used = frame
    else:
        used = rows_used(res, sample) if res is not None else None
        used = sample if used is None else used
    for t, units in switching_by_treatment(used, treat, unit).items():
        out[t] = float(len(units))
    return out


def _prepared_call(fixed: tuple[str, dict[str, Any]] | None, sample: pd.DataFrame, by: str) -> PreparedFit | None:
    """The twfe/ppml call rebuilt from a result's design, prepared on ``sample`` (None for other
    models, or when the design's rows do not carry the ``by`` column)."""
    if fixed is None:
        return None
    model, kw = fixed
    prepare = prepare_ppml_call if model == "ppml" else prepare_twfe_call
    prepared = prepare(sample, **kw)
    frame = prepared.design.frame
    if by != "switching" and by not in frame.columns:
        return None
    return prepared


def _unit_of(rows: pd.DataFrame, unit: str | None) -> pd.Series:
    if unit is not None:
        return rows[unit]
    if "corridor" in rows.columns:
        return rows["corridor"]
    return rows["geo"].astype(str) + "-" + rows["citizen"].astype(str)


def influence(
    result: EstimationResult,
    by: str = "citizen",
    panel: pd.DataFrame | None = None,
    *,
    terms: Sequence[Any] | None = None,
    treatments: Sequence[str] | None = None,
    estimator: Callable[[pd.DataFrame], EstimationResult] | None = None,
    progress: bool | None = None,
) -> InfluenceResult:
    """Re-estimate ``result``'s model without each unit of ``by``, one at a time.

    Parameters
    ----------
    result : an estimation result (``twfe``/``ppml`` need ``panel``; robust estimators
        record their panel).
    by : a panel column (``"citizen"``: leave one cluster out when clustered by citizenship;
        ``"geo"``, ``"corridor"``, ...) or ``"switching"``: each corridor (on other panels: each
        value of the result's ``unit=`` column) whose treatment (``treatments``) switches among
        the rows the model used.
    panel : the panel the result was fitted on.
    terms : terms to report (default: every row of ``result.table``).
    treatments : with ``by="switching"``, the treatments whose switching corridors are
        dropped (default: the terms that are panel columns).
    estimator : callable ``panel -> result`` for models that do not record their call.
    progress : progress bar (None: only on a terminal).

    Returns an :class:`InfluenceResult` (tidy ``table``, ``most_influential()``, ``plot()``).
    """
    sample, refit, _, fixed, _ = _refit_spec(result, panel, estimator)
    terms = list(result.table.index) if terms is None else list(terms)
    missing = [t for t in terms if t not in result.table.index]
    if missing:
        raise KeyError(f"influence: terms {missing} not in the result's table {list(result.table.index)}")
    poisson = "pct_effect" in result.table.columns
    if by != "switching" and by not in sample.columns:
        raise KeyError(f"influence: by={by!r} is not a panel column; choose 'switching' or one of {list(sample.columns)}")

    original = _terms_table(result, terms, poisson)
    # twfe/ppml: prepare the panel once and drop each unit's rows from the design (every
    # preparation rule is row by row, so this is the same re-estimation without re-preparing)
    prepared = _prepared_call(fixed, sample, by)
    full_res = refit(sample) if prepared is None else prepared.fit()
    if prepared is not None:  # Poisson re-estimates start from the full fit (same result, fewer steps)
        prepared = prepared.warm_from(full_res)
    replay = _terms_table(full_res, terms, poisson)
    for col in ("estimate", "std_error"):  # the replay must reproduce the point estimate and its variance
        scale = np.maximum(1.0, original[col].abs())
        both_nan = replay[col].isna() & original[col].isna()
        gap = ((replay[col] - original[col]).abs() / scale).where(~both_nan, 0.0).fillna(np.inf)
        if (gap > REPLAY_TOLERANCE).any():
            t = gap.idxmax()
            raise ValueError(
                f"influence: re-estimating {result.model!r} on the given panel gives {col} {replay.loc[t, col]!r} "
                f"for {t!r}, the result has {original.loc[t, col]!r}; pass the panel the model was fitted on "
                "(or estimator= reproducing the call, e.g. for non-default small_sample or tol)"
            )
    used = rows_used(full_res, sample)
    used = sample if used is None else used
    # the panel unit (corridor by default; the result's unit= column on other panels)
    unit_col = result.design.get("unit")
    if not (isinstance(unit_col, str) and unit_col in sample.columns and unit_col != "corridor"):
        unit_col = None

    if by == "switching":
        if treatments is None:
            treatments = [t for t in terms if isinstance(t, str) and t in sample.columns]
        if not treatments:
            raise ValueError("influence: by='switching' needs treatments= (no term of the result is a panel column)")
        absent = [t for t in treatments if t not in sample.columns]
        if absent:
            raise KeyError(f"influence: treatments {absent} are not panel columns")
        units = sorted(set().union(*(switching_corridors(used, t, unit_col) for t in treatments)), key=str)
        key_all = _unit_of(sample, unit_col)
        key_used = _unit_of(used, unit_col)
        label = unit_col or "corridor"
    else:
        key_all, key_used, label = sample[by], used[by], by
        units = sorted(pd.unique(key_used.dropna()), key=str)
    if not units:
        raise ValueError(f"influence: no {label} units to drop among the {len(used)} rows the model used")

    # which dropped units carry identifying variation for each treatment term (full fit)
    switching_by_term = {t: set(switching_corridors(used, t, unit_col))
                         for t in terms if isinstance(t, str) and t in used.columns}
    corridor_used = _unit_of(used, unit_col)
    unit_switches: dict[Any, set] = {}
    for t, corr in switching_by_term.items():
        unit_switches[t] = set(key_used[corridor_used.isin(corr).to_numpy()].unique())

    key_np = key_all.to_numpy()
    key_design = None
    if prepared is not None:
        frame = prepared.design.frame
        key_design = (_unit_of(frame, unit_col) if by == "switching" else frame[by]).to_numpy()
    rows = []
    for unit in _progress(units, f"influence (leave one {label} out)", progress, label=str):
        error = ""
        try:
            if prepared is None:
                sub_panel = sample.loc[key_np != unit]
                res = refit(sub_panel)
                tab = _terms_table(res, terms, poisson)
                n_obs = int(res.info.get("n_obs", np.nan))
                switching = _treatment_switching(res, sub_panel, terms, unit_col)
            else:  # the fit alone: its table and rows, without packaging a whole result
                without = prepared.without(key_design == unit, f"{label} left out")
                out = without.fit_output()
                tab = _table_terms(without.table(out), terms, poisson)
                n_obs = out.design.n_obs
                switching = _treatment_switching(None, sample, terms, unit_col, design=out.design)
        except (ValueError, np.linalg.LinAlgError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.info("influence: re-estimation without %s %r failed: %s", label, unit, error)
            tab = pd.DataFrame(np.nan, index=terms, columns=original.columns)
            n_obs, switching = np.nan, {t: np.nan for t in terms}
        for term in terms:
            r = tab.loc[term]
            sw = switching[term]
            ok = bool(np.isfinite(r["estimate"])) and not (np.isfinite(sw) and sw == 0)
            row = {"by": label, "dropped": unit, "term": term, **r.to_dict(),
                   "change": r["estimate"] - original.loc[term, "estimate"]}
            if poisson:
                row["pct_change"] = r["pct_effect"] - original.loc[term, "pct_effect"]
            row.update(n_obs=n_obs, switching_corridors=sw,
                       unit_switches=(unit in unit_switches[term]) if term in unit_switches else np.nan,
                       identified=ok, error=error)
            rows.append(row)
    table = pd.DataFrame(rows)
    full = original.copy()
    full["n_obs"] = result.info.get("n_obs")
    full["switching_corridors"] = [float(len(switching_by_term[t])) if t in switching_by_term else np.nan for t in terms]
    full.index.name = "term"
    n_bad = int((~table["identified"]).sum())
    if n_bad:
        logger.info("influence: %d (unit, term) re-estimates leave the term unidentified", n_bad)
    return InfluenceResult(table=table, full=full, by=label, model=result.model, poisson=poisson)


def without_most_influential(
    result: EstimationResult,
    panel: pd.DataFrame | None = None,
    by: str = "citizen",
    terms: Sequence[Any] | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Per term (e.g. each headline treatment), the full-sample estimate and the estimate
    without the unit of ``by`` whose removal moves it most (see :func:`influence`)."""
    return influence(result, by=by, panel=panel, terms=terms, **kwargs).most_influential()
