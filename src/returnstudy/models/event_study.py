"""Dynamic (event-study) specification around the entry into force of an agreement.

For units (corridors by default) that ever adopt ``treatment`` (cohort column, default
``<treatment>_cohort``, set: the first treated period; missing or 0 = never treated) the
relative period is time - cohort (0 = first year in force; this package's
``<treatment>_years_since``, checked against it when present). ``unit=``, ``time=`` and
``cohort=`` name the columns of any other panel (e.g. ``unit="countyreal",
time="year", cohort="first.treat"``). The model is

``outcome_it = sum_{k in window, k != reference} beta_k 1[rel_it = k] + other + FE + e``

estimated by PPML (returns with orders as exposure; ``beta_k`` on the log scale) or
TWFE least squares (return rate). ``beta_k`` is the change relative to the reference
period (default -1, the last year before entry into force).

Which observations are controls
-------------------------------
The *controls* are the observations whose event-time dummies are all zero. Year
effects are identified from within-corridor changes between years that carry the
same dummies: between control years, and between years pooled into the same binned
endpoint (whose effect is assumed constant).

``control="never"``
    Estimation sample: never-treated corridors plus all years of ever-treated corridors.
    Every treated-corridor year except the reference period carries an event-time
    dummy, so the controls are every year of the never-treated corridors and the
    reference-period year (``rel == reference``) of each treated corridor (one year per
    corridor, absorbed by its corridor effect). Without binning, year effects come from
    the never-treated corridors alone; with binning, also from treated corridors' years
    pooled into the same endpoint.
``control="notyet"``
    Controls: every year of the never-treated corridors, the reference-period year of
    each treated corridor, and the years of treated corridors *before* the window
    (``rel < window[0]``, not yet treated), which carry no dummy. Year effects come from
    the never-treated corridors, the pre-window and reference years of later adopters
    and (with binning) years pooled into the last period. Already-treated years never
    act as controls.

Binned endpoints (``bin_endpoints=True``)
    ``window[1]`` is "``window[1]`` or later": it contains every treated-corridor year with
    ``rel >= window[1]``. Under ``control="never"``, ``window[0]`` is "``window[0]`` or
    earlier" (``rel <= window[0]``); under ``"notyet"`` it contains ``rel == window[0]``
    only. If ``reference == window[0]`` under ``"never"``, all years up to ``window[0]``
    are reference years. With ``bin_endpoints=False`` treated-corridor years beyond the
    window are dropped (and counted) instead.

Always-treated corridors (``always_treated``)
    Corridors adopted no later than the first year of the estimation sample
    (``cohort <= min(year)``, years with the outcome observed) are treated in every
    sample year: they carry no within-corridor variation in treatment and, kept, they sit
    entirely in the lags, mostly the binned last period, where their within-corridor
    changes (including any growth of their effect) are attributed to year effects.
    ``"drop"`` (default) removes them (rows counted in ``info["dropped"]``, corridors in
    ``info["n_always_treated"]``); ``"keep"`` keeps them.

Other treatment types (``other_treatments``): "control" adds their 0/1 columns as
controls, "drop" removes corridors ever treated by another type, "ignore" does neither.
The joint Wald test that all leads (k < 0, k != reference) are zero is stored in
``info["pretrend_test"]`` and shown in ``summary()``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..results import EstimationResult, make_table
from ._absorbing import check_nonabsorbing_choice, drop_nonabsorbing
from ._common import fit_design, result_from_fit, vcov_type_of
from ._design import (
    DEFAULT_TIME,
    DEFAULT_UNIT,
    check_column_arguments,
    check_unique_keys,
    parse_cluster,
    prepare,
    resolve_panel_ids,
)
from .ppml import prepare_ppml
from .twfe import _as_list, _key_meta, _unit_period_word, build_outcome

logger = logging.getLogger(__name__)

__all__ = ["event_study", "TREATMENT_TYPES", "relative_period_dummies"]

TREATMENT_TYPES = ("eu_agreement", "eu_nonbinding", "bilateral_binding", "bilateral_protocol", "bilateral_nonbinding")


def _term(k: int) -> str:
    return f"rel_m{-k}" if k < 0 else f"rel_p{k}"


def cohort_values(panel: pd.DataFrame, column: str) -> np.ndarray:
    """First treated period per row as float; NaN for never treated (cohort missing or 0)."""
    s = panel[column]
    if s.dtype == bool or not pd.api.types.is_numeric_dtype(s):
        raise ValueError(f"cohort column {column!r} must hold the first treated period (numeric), has dtype {s.dtype}")
    c = pd.to_numeric(s).astype("float64").to_numpy(dtype=float, na_value=np.nan)
    if np.isinf(c).any():
        raise ValueError(f"cohort column {column!r} has infinite values; use 0 or missing for never treated")
    return np.where(c == 0, np.nan, c)


def _event_time(panel: pd.DataFrame, treatment: str, cohort: str | None, time: str) -> np.ndarray:
    """time - cohort for ever-treated rows (NaN for never treated), checked to be whole periods
    and, when this package's ``{treatment}_years_since`` is present, equal to it."""
    coh_col = cohort or f"{treatment}_cohort"
    if coh_col not in panel.columns:
        valid = sorted(str(c)[: -len("_cohort")] for c in panel.columns if str(c).endswith("_cohort"))
        what = f"cohort={cohort!r}" if cohort is not None else f"cohort column {coh_col!r} (default of cohort=, from add_treatments)"
        raise KeyError(
            f"event study needs {what} for treatment {treatment!r}; "
            f"treatments with cohort columns in this panel: {valid or 'none (run add_treatments first)'}; "
            f"the panel's columns are: {list(panel.columns)}"
        )
    check_column_arguments(panel, time=time)
    if not pd.api.types.is_numeric_dtype(panel[time]) or panel[time].dtype == bool:
        raise ValueError(f"time={time!r} must be a numeric period column, has dtype {panel[time].dtype}")
    coh = cohort_values(panel, coh_col)
    t = pd.to_numeric(panel[time]).astype("float64").to_numpy(dtype=float, na_value=np.nan)
    rel = t - coh
    ever = ~np.isnan(coh)
    if np.any(ever & np.isnan(t)):
        first = panel.index[np.flatnonzero(ever & np.isnan(t))[0]]
        raise ValueError(f"time={time!r} is missing where cohort {coh_col!r} is set (first: row {first!r})")
    frac = ever & ~np.isnan(rel) & (rel != np.round(rel))
    if frac.any():
        first = panel.index[np.flatnonzero(frac)[0]]
        raise ValueError(f"time={time!r} minus cohort {coh_col!r} is not a whole number of periods (first: row {first!r})")
    ys_col = f"{treatment}_years_since"
    if cohort is None and ys_col in panel.columns:
        ys = pd.array(panel[ys_col], dtype="Int64").to_numpy(dtype=float, na_value=np.nan)
        if np.any(ever & np.isnan(ys)):
            raise ValueError(f"{ys_col!r} missing where {coh_col!r} is set")
        bad = ever & (ys != rel)
        if bad.any():
            first = panel.index[np.flatnonzero(bad)[0]]
            raise ValueError(f"{ys_col!r} differs from {time} - {coh_col} in {int(bad.sum())} rows (first: row {first!r})")
    return np.where(ever, rel, np.nan)


def relative_period_dummies(
    panel: pd.DataFrame,
    treatment: str,
    window: tuple[int, int],
    reference: int,
    control: str,
    bin_endpoints: bool,
    *,
    cohort: str | None = None,
    time: str = DEFAULT_TIME,
) -> tuple[pd.DataFrame, list[int], dict[str, int]]:
    """Add event-time dummy columns ``rel_m3, ..., rel_p3`` (reference omitted) to ``panel``,
    plus ``rel_period`` (the binned relative period; NaN for control rows).

    The relative period is ``time - cohort`` (``cohort`` default ``<treatment>_cohort``;
    missing or 0: never treated). Returns (panel with dummies and rows outside the design
    removed, periods estimated, dropped-row counts by reason).
    """
    lo, hi = int(window[0]), int(window[1])
    if not lo < 0 <= hi:
        raise ValueError(f"window must satisfy window[0] < 0 <= window[1], got {window}")
    if not lo <= reference <= hi:
        raise ValueError(f"reference period {reference} outside window {window}")
    if control not in ("never", "notyet"):
        raise ValueError(f"control must be 'never' or 'notyet', got {control!r}")
    rel = _event_time(panel, treatment, cohort, time)
    ever = ~np.isnan(rel)
    dropped: dict[str, int] = {}
    keep = np.ones(len(panel), dtype=bool)
    before, after = ever & (rel < lo), ever & (rel > hi)
    if control == "notyet":
        rel = np.where(before, np.nan, rel)  # not-yet-treated years: controls
    elif bin_endpoints:
        rel = np.where(before, lo, rel)
    else:
        keep &= ~before
        if before.any():
            dropped[f"treated corridor-years before window start {lo}"] = int(before.sum())
    if bin_endpoints:
        rel = np.where(after, hi, rel)
    else:
        keep &= ~after
        if after.any():
            dropped[f"treated corridor-years after window end {hi}"] = int(after.sum())
    periods = [k for k in range(lo, hi + 1) if k != reference]
    cols = {}
    for k in periods:
        cols[_term(k)] = (rel == k).astype(float)
    cols["rel_period"] = rel
    out = panel.assign(**cols).iloc[np.flatnonzero(keep)]
    return out, periods, dropped


def _unit_series(frame: pd.DataFrame, unit: str) -> pd.Series:
    """The unit column (``corridor`` is built from ``geo`` and ``citizen`` when absent)."""
    if unit in frame.columns:
        return frame[unit]
    if unit == "corridor" and {"geo", "citizen"} <= set(frame.columns):
        return frame["geo"].astype(str) + "-" + frame["citizen"].astype(str)
    check_column_arguments(frame, unit=unit)
    raise AssertionError("unreachable")  # pragma: no cover


def _period(value: Any) -> Any:
    """A period for messages: integers without a trailing .0."""
    try:
        return int(value) if float(value).is_integer() else value
    except (TypeError, ValueError):
        return value


def event_study(
    panel: pd.DataFrame,
    treatment: str = "eu_agreement",
    window: tuple[int, int] = (-3, 3),
    model: str = "ppml",
    control: str = "never",
    reference: int = -1,
    bin_endpoints: bool = True,
    always_treated: str = "drop",
    other_treatments: str = "control",
    cluster: str | Sequence[str] | None = "citizen",
    fe: Sequence[str] | None = None,
    outcome: str | None = None,
    exposure: str | None = "orders",
    weights: str | None = None,
    controls: str | Sequence[str] | None = None,
    log_zero_rule: str = "drop",
    drop_singletons: bool = True,
    small_sample: str | Mapping[str, Any] = "fixest-default",
    alpha: float = 0.05,
    *,
    unit: str | None = None,
    time: str | None = None,
    cohort: str | None = None,
    nonabsorbing: str = "drop",
) -> EstimationResult:
    """Event-study estimates of the effect of ``treatment`` by year relative to entry into force.

    ``model="ppml"`` (default outcome "returns", exposure orders as offset) or ``"twfe"``
    (default outcome "return_rate"). See the module docstring for ``control``,
    ``bin_endpoints``, ``always_treated`` (``"drop"`` or ``"keep"`` corridors treated in
    every sample year) and ``other_treatments``. Duplicated corridor-year rows raise
    ``ValueError``. The table is indexed by relative period
    (int) and includes the reference period with estimate 0 and missing standard error.

    Any panel: ``unit``, ``time`` (default "corridor", "year") identify a row, ``cohort``
    (default ``<treatment>_cohort``) holds each unit's first treated period (missing or 0:
    never treated), ``cluster`` (default "citizen") the cluster column; ``fe=None`` means
    unit and time effects. ``exposure`` applies to ``model="ppml"`` (None: no offset).

    Units whose ``treatment`` column switches off inside the sample have no event time after
    the switch-off: ``nonabsorbing="drop"`` (default) removes them (rows counted in
    ``info["dropped"]["non-absorbing treatment"]``, units named in the notes), ``"raise"`` stops.
    """
    if model not in ("ppml", "twfe"):
        raise ValueError(f"model must be 'ppml' or 'twfe', got {model!r}")
    if other_treatments not in ("control", "drop", "ignore"):
        raise ValueError(f"other_treatments must be 'control', 'drop' or 'ignore', got {other_treatments!r}")
    if always_treated not in ("drop", "keep"):
        raise ValueError(f"always_treated must be 'drop' or 'keep', got {always_treated!r}")
    check_nonabsorbing_choice(nonabsorbing)
    keys, fe = resolve_panel_ids(panel.columns, unit, time, fe)
    check_column_arguments(panel, controls=_as_list(controls) or None, fe=fe or None,
                           cluster=parse_cluster(cluster) or None, weights=weights)
    check_unique_keys(panel, keys)
    unit_col, time_col = tuple(keys) if keys and len(keys) == 2 else (DEFAULT_UNIT, DEFAULT_TIME)
    coh_col = cohort or f"{treatment}_cohort"
    unit_word = "corridor" if unit_col == DEFAULT_UNIT else f"unit ({unit_col})"
    units = "corridors" if unit_col == DEFAULT_UNIT else f"units ({unit_col})"
    ctrl = _as_list(controls)
    pre_dropped: dict[str, int] = {}
    work, nonabsorbing_drop = drop_nonabsorbing(panel, treatment, unit_col, time_col, nonabsorbing, "event_study")
    others = [t for t in TREATMENT_TYPES if t != treatment and t in panel.columns]
    if other_treatments == "control":
        ctrl = ctrl + [t for t in others if t not in ctrl]
    elif other_treatments == "drop" and others:
        corr = _unit_series(work, unit_col)
        other_any = np.zeros(len(work), dtype=bool)
        for t in others:
            other_any |= pd.to_numeric(work[t]).fillna(0).to_numpy() > 0
        bad_corr = set(corr[other_any])
        m = corr.isin(bad_corr).to_numpy()
        if m.any():
            pre_dropped[f"{units} ever treated by {', '.join(others)} ({len(bad_corr)} {units})"] = int(m.sum())
            work = work.iloc[np.flatnonzero(~m)]

    work, periods, rel_dropped = relative_period_dummies(
        work, treatment, window, reference, control, bin_endpoints, cohort=cohort, time=time_col
    )
    pre_dropped.update(rel_dropped)
    vt = vcov_type_of(cluster)
    terms = [_term(k) for k in periods]

    def _design(frame: pd.DataFrame):
        if model == "ppml":
            d, off, _ = prepare_ppml(frame, terms + ctrl, outcome or "returns", exposure, "offset", fe, cluster, weights,
                                     keys=keys)
            return frame, d, off
        y_name = outcome or "return_rate"
        y, _meta = build_outcome(frame, y_name, log_zero_rule)
        if y_name in ("log_return_rate", "ihs_return_rate") or y_name not in frame.columns:
            frame = frame.assign(**{y_name: y.to_numpy(dtype=float, na_value=np.nan)})
        return frame, prepare(frame, y_name, terms + ctrl, fe=fe, cluster=cluster, weights=weights, keys=keys), None

    work, design, offset = _design(work)
    n_always = 0
    if time_col in design.frame.columns:
        first_year = design.frame[time_col].min()  # first period of the estimation sample
        coh = cohort_values(work, coh_col)
        always = ~np.isnan(coh) & (coh <= first_year)
        in_sample = work.index.isin(design.frame.index) if work.index.is_unique else np.ones(len(work), dtype=bool)
        corr = _unit_series(work, unit_col)
        n_always = int(corr[always & in_sample].nunique())
        if (always & in_sample).any() and always_treated == "drop":
            pre_dropped[
                f"always-treated {units} (adopted {_period(first_year)} or earlier: treated in every sample "
                f"{'year' if time_col == DEFAULT_TIME else 'period'}; {n_always} {units})"
            ] = int((always & in_sample).sum())
            work, design, offset = _design(work.iloc[np.flatnonzero(~always)])
    never_mask = np.isnan(cohort_values(work, coh_col))
    n_never = int(_unit_series(work, unit_col)[never_mask].nunique())
    if control == "never" and not n_never:
        raise ValueError(f"control='never' but no never-treated {unit_word} for {treatment!r} in the sample")
    if model == "ppml":
        out = fit_design(design, "ppml", vcov_type=vt, small_sample=small_sample, drop_singletons=drop_singletons, offset=offset)
    else:
        out = fit_design(design, "ols", vcov_type=vt, small_sample=small_sample, drop_singletons=drop_singletons)
    if pre_dropped:
        out.design.dropped = {**pre_dropped, **out.design.dropped}
    poisson = model == "ppml"
    full = result_from_fit(out, f"event_study_{model}", poisson=poisson, alpha=alpha)
    # event-time table indexed by relative period, reference row = 0 / NaN
    period_of = dict(zip(terms, periods))
    est_terms = [t for t in terms if t in full.params.index]
    missing_terms = [t for t in terms if t not in full.params.index]
    params = pd.Series(
        full.params[est_terms].to_numpy(), index=pd.Index([period_of[t] for t in est_terms], name="rel_period")
    )
    V = full.vcov.loc[est_terms, est_terms].to_numpy()
    vcov = pd.DataFrame(V, index=params.index, columns=params.index)
    table = make_table(params, np.sqrt(np.diag(V)), index=params.index, df=full.df_t, alpha=alpha, poisson=poisson,
                       index_name="rel_period")
    ref_row = pd.DataFrame({c: [np.nan] for c in table.columns}, index=pd.Index([reference], name="rel_period"))
    ref_row["estimate"] = 0.0
    if poisson:
        ref_row["irr"] = 1.0
        ref_row["pct_effect"] = 0.0
    table = pd.concat([table, ref_row]).sort_index()
    table.index.name = "rel_period"
    rel_in_sample = work["rel_period"].loc[out.design.frame.index] if work.index.is_unique else work["rel_period"]
    obs_by_period = {int(k): int((rel_in_sample == k).sum()) for k in table.index}
    fin = out.design.frame
    if unit_col in fin.columns and work.index.is_unique:
        n_never = int(fin.loc[fin.index.isin(work.index[never_mask]), unit_col].nunique())
    info = dict(full.info)
    notes = list(info.get("notes", []))
    if always_treated == "keep" and n_always:
        notes.append(f"{n_always} always-treated {units} kept (in the lags only; they help identify "
                     f"{'year' if time_col == DEFAULT_TIME else 'period'} effects)")
    if missing_terms:
        notes.append(f"relative periods not estimable (collinear or empty): {[period_of[t] for t in missing_terms]}")
    info.update(
        treatment=treatment,
        window=(int(window[0]), int(window[1])),
        reference_period=f"{reference} (year {reference:+d} relative to entry into force; coefficients are changes from it)",
        control_group=(
            f"never-treated {units} ({n_never})" if control == "never"
            else f"never-treated ({n_never} {units}) and not-yet-treated {_unit_period_word(keys)} (before period {window[0]})"
        ),
        bin_endpoints=bin_endpoints,
        always_treated=always_treated,
        n_always_treated=n_always,
        other_treatments=other_treatments + (f" ({', '.join(others)})" if others else ""),
        controls_table=full.table.drop(index=[t for t in terms if t in full.table.index]),
        obs_by_period=obs_by_period,
        notes=notes,
    )
    ever_rows = ~never_mask
    cohorts = _unit_series(work, unit_col)[ever_rows].groupby(cohort_values(work, coh_col)[ever_rows]).nunique()
    info["treated_corridors_by_cohort"] = {int(k): int(v) for k, v in cohorts.items()}
    info["cohort"] = coh_col
    nonabsorbing_drop.record(info)
    res = EstimationResult(
        model=f"event_study_{model}", params=params, vcov=vcov, table=table, info=info,
        design={
            **full.design, **_key_meta(keys), "cohort": coh_col,
            "treatment": treatment, "window": window, "reference": reference, "control": control,
            "exposure": exposure if model == "ppml" else None,
        },
        df_t=full.df_t, alpha=alpha, extra={**full.extra, "full_result": full},
    )
    leads = [k for k in params.index if k < 0]
    if leads and not out.details.identified:
        res.info["pretrend_test"] = f"not available: {out.details.note}"
    elif leads:
        res.info["pretrend_test"] = res.wald_test(terms=leads, hypothesis=f"leads {leads} jointly zero")
    else:
        res.info["pretrend_test"] = None
    return res
