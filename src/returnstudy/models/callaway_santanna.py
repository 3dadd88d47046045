"""Callaway & Sant'Anna (2021, *J. Econometrics*) group-time average treatment effects.

Works on any long panel: ``unit=``, ``time=`` and ``cohort=`` (first treated period, 0 or
NaN for never treated — R *did*'s ``idname``, ``tname``, ``gname``) default to this
package's ``corridor``, ``year`` and ``{treatment}_cohort``.

For every adoption cohort ``g`` and period ``t`` the 2x2 DiD (without covariates)

    ATT(g, t) = mean_{i in g}(Y_it - Y_ib) - mean_{j in C}(Y_jt - Y_jb)

compares the change of cohort ``g`` between the base period ``b`` and ``t`` with the
change of a control group ``C``:

* ``control="never"``: units never treated;
* ``control="notyet"``: never-treated units and units adopting after
  ``max(t, b) + anticipation`` (not yet treated in either period).

Base period: post-adoption cells (``t >= g``) use the last period before
``g - anticipation`` (``g - 1`` without anticipation). Pre-adoption cells use the previous
period with ``base_period="varying"`` (the default of the R package *did*; pre-period
estimates are then period-on-period placebo changes) or the same base as the post cells
with ``base_period="universal"`` (an event-study-style pre-trend; the reference cell itself,
zero by construction, is not reported).

With ``covariates`` (time-invariant; values at each cell's base period) each 2x2 is a
Sant'Anna & Zhao (2020) conditional DiD: outcome regression, inverse probability weighting
or doubly robust (``est_method``; see :mod:`returnstudy.models.cs_two_by_two`).

Unbalanced panels (``unbalanced_panel``): ``"pairwise"`` (default) lets each cell use the
units observed in ``t`` and ``b``; ``"balance"`` keeps only units observed in every period
(R *did*'s default; units dropped are logged and counted in ``info``); ``"allow"`` uses the
repeated-cross-section 2x2 over all units observed in each period — four period means
without covariates — with influence values summed within units (R's ``allow_unbalanced_panel``).

Aggregation (cohort-size weights, the *did* package's ``aggte``): ``.table`` holds the
simple ATT (``event_time=False``) or event-time effects (``event_time=True``);
``result.aggregate(type=...)`` gives ``simple``, ``dynamic`` (with ``balance_e``, ``min_e``,
``max_e``), ``group`` and ``calendar`` effects with their overall averages
(:mod:`returnstudy.models.cs_aggregation`).

Standard errors come from the influence functions of the 2x2 estimators, including the
estimation of the first-step models and of the cohort-size weights, summed within clusters
(default: citizenship; the unit when the panel has no ``citizen`` column and ``unit`` is
not ``corridor``) — analytical, normal reference distribution, no small-sample factor.
Clustered by unit they equal R *did*'s analytical standard errors. They are NaN (with a
note) when there is a single cluster or when an aggregate uses a cell with no residual
degrees of freedom (one treated and one control unit, as in a 2x2), where the influence
functions are identically zero.

``model="poisson"`` (returns with ``orders`` as exposure): each cell is the Poisson
imputation 2x2 on the log scale — the untreated model ``Y ~ Poisson(E exp(a_i + b_s))``
is fitted on the control units in both periods and the treated units in the base
period, and ``ATT(g, t) = log(sum_g Y_it / sum_g mu0_it)`` (``pct_effect`` =
100 (exp - 1)). Treated units with zero base-period counts stay in (their imputed
count is zero), which keeps the ratio of sums unbiased; cells whose sums are zero are
skipped. Aggregation is on the log scale with the same cohort-size weights; every
aggregation from ``aggregate()`` is also reported as a percent change in the rate with a
delta-method standard error and interval. With few treated units per cohort and one of
them dominating the counts, the influence-function standard errors run small (about 0.7
of the sampling SD in the test suite's design) and the log of a ratio of small sums has a
small upward bias: prefer ``did_imputation`` (``model="poisson"``), which uses every
untreated period, for inference on counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from returnstudy.inference.cluster import variance_not_identified
from returnstudy.models._absorbing import check_nonabsorbing_choice, drop_nonabsorbing
from returnstudy.models.cs_aggregation import Aggregate, GroupTimeEffects, aggregate_effects, event_time_effects, simple_att
from returnstudy.models.cs_two_by_two import (
    EST_METHODS,
    covariate_cross_section,
    covariate_panel,
    poisson_panel,
    unconditional_panel,
    unconditional_unbalanced,
)
from returnstudy.models.imputation import did_sample
from returnstudy.results import EstimationResult, make_table

logger = logging.getLogger(__name__)

__all__ = ["callaway_santanna", "CallawaySantAnnaResult", "UNBALANCED_PANEL"]

#: How units missing in some periods are handled (see the module docstring).
UNBALANCED_PANEL = ("pairwise", "balance", "allow")
_COHORT_TREATMENT = "__cs_treated"


@dataclass(repr=False)
class CallawaySantAnnaResult(EstimationResult):
    """:class:`EstimationResult` of :func:`callaway_santanna` with :meth:`aggregate`.

    ``.table`` is the aggregation asked for in the call (simple ATT or event time);
    ``.extra["group_time"]`` the ATT(g, t) cells; :meth:`aggregate` gives any of R *did*'s
    aggregations (``simple``, ``dynamic``, ``group``, ``calendar``) with standard errors.
    """

    def _description_lines(self) -> list[str]:
        lines = super()._description_lines()
        i = self.info
        extra = [
            "2x2 estimator: " + (f"Sant'Anna-Zhao {i['est_method']} with covariates {i['covariates']} (base-period values)"
                                 if i.get("covariates") else "difference of mean changes (no covariates)"),
            f"Anticipation: {i.get('anticipation', 0)} period(s)",
            "Unbalanced panel: " + {
                "pairwise": "each ATT(g, t) uses the units observed in t and its base period",
                "balance": f"units observed in every period only ({i.get('n_units_dropped_unbalanced', 0)} units dropped)",
                "allow": "repeated-cross-section 2x2s over the units observed in each period",
            }.get(i.get("unbalanced_panel", "pairwise"), str(i.get("unbalanced_panel"))),
            "Aggregations: .aggregate(type='simple' | 'dynamic' | 'group' | 'calendar')",
        ]
        return lines[:-1] + extra + lines[-1:]

    def aggregate(
        self, type: str = "simple", balance_e: int | None = None, min_e: float | None = None,
        max_e: float | None = None,
    ) -> Aggregate:
        """Aggregate the ATT(g, t) cells as R *did*'s ``aggte(type=...)`` (tidy table, ``"overall"`` row)."""
        gte: GroupTimeEffects = self.extra["group_time_effects"]
        keys = ("model", "outcome", "control_group", "base_period", "est_method", "covariates", "anticipation",
                "unbalanced_panel", "cluster", "n_clusters", "n_units", "notes")
        info = {k: self.info[k] for k in keys if k in self.info}
        info["notes"] = [n for n in info.get("notes", []) if not n.startswith("variance not identified")]
        return aggregate_effects(gte, type=type, balance_e=balance_e, min_e=min_e, max_e=max_e, info=info)


def _missing_columns(panel: pd.DataFrame, named: dict[str, Any]) -> None:
    """KeyError naming every argument whose column is absent, with the columns that exist."""
    missing = {arg: col for arg, col in named.items() if col is not None and col not in panel.columns}
    if missing:
        raise KeyError(
            "column(s) not in panel: " + ", ".join(f"{arg}={col!r}" for arg, col in missing.items())
            + f"; columns in panel: {[str(c) for c in panel.columns]}"
        )


def _cohort_frame(
    panel: pd.DataFrame, treatment: str | None, cohort: str, unit: str, time: str, columns: list[str]
) -> tuple[pd.DataFrame, str]:
    """A copy of the needed columns with a treatment indicator and ``{treatment}_cohort`` from ``cohort``.

    The cohort column holds the first treated period; 0, NaN and inf mark never-treated units
    (R *did*'s ``gname``). It must be constant within units. If ``treatment`` names an
    existing 0/1 column it is kept (and checked against the cohort); otherwise the indicator
    is ``time >= cohort``.
    """
    g = pd.to_numeric(panel[cohort], errors="coerce").astype("float64")
    bad = panel[cohort].notna() & g.isna()
    if bad.any():
        i = panel.index[np.flatnonzero(bad.to_numpy())[0]]
        raise ValueError(f"cohort column {cohort!r} must be numeric (first treated period; 0 or NaN for never "
                         f"treated); row {i!r} has {panel.loc[i, cohort]!r}")
    g = g.where(np.isfinite(g) & (g != 0))
    varies = g.fillna(-1.0).groupby(panel[unit].to_numpy()).nunique()
    if (varies > 1).any():
        first_bad = varies[varies > 1].index[0]
        first_bad = first_bad.item() if isinstance(first_bad, np.generic) else first_bad
        raise ValueError(f"cohort column {cohort!r} varies within {unit}={first_bad!r}; "
                         "it must be the unit's first treated period in every row")
    work = panel[list(dict.fromkeys(columns))].copy()
    if not work.index.is_unique:
        work = work.reset_index(drop=True)
    name = treatment if treatment is not None and treatment in panel.columns else _COHORT_TREATMENT
    if name == _COHORT_TREATMENT:
        t = pd.to_numeric(panel[time], errors="coerce").to_numpy(dtype=float)
        work[name] = np.where(np.isnan(g.to_numpy()), 0.0, (t >= g.to_numpy()).astype(float))
    work[f"{name}_cohort"] = g.to_numpy()
    return work, name


def _wide(values: np.ndarray, u_codes: np.ndarray, y_pos: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.full(shape, np.nan)
    out[u_codes, y_pos] = values
    return out


def _cross_section_cell(
    Y: np.ndarray, Xw: list[np.ndarray], jt: int, jb: int, T_m: np.ndarray, C_m: np.ndarray, est_method: str
) -> tuple[float, np.ndarray] | None:
    """Repeated-cross-section 2x2 with covariates over every observation of the units in t and b;
    observation-level influence values (scaled by the number of observations) summed within units."""
    rows_u, rows_y, rows_post, rows_x = [], [], [], []
    for j, post in ((jb, 0.0), (jt, 1.0)):
        m = (T_m | C_m) & ~np.isnan(Y[:, j])
        for X_ in Xw:
            m &= ~np.isnan(X_[:, j])
        u = np.flatnonzero(m)
        rows_u.append(u)
        rows_y.append(Y[u, j])
        rows_post.append(np.full(u.size, post))
        rows_x.append(np.column_stack([np.ones(u.size), *[X_[u, j] for X_ in Xw]]))
    u = np.concatenate(rows_u)
    post = np.concatenate(rows_post)
    D = T_m[u].astype(float)
    if not all(((D == d) & (post == p)).any() for d in (0, 1) for p in (0, 1)):
        return None
    att, inf = covariate_cross_section(np.concatenate(rows_y), post, D, np.vstack(rows_x), est_method)
    return att, np.bincount(u, weights=inf / u.size, minlength=T_m.size)


def callaway_santanna(
    panel: pd.DataFrame,
    treatment: str | None = None,
    outcome: str | None = None,
    control: str = "never",
    event_time: bool = False,
    base_period: str = "varying",
    cluster: str | None = "citizen",
    unit: str = "corridor",
    min_e: int | None = None,
    max_e: int | None = None,
    model: str = "linear",
    exposure: str = "orders",
    alpha: float = 0.05,
    *,
    time: str = "year",
    cohort: str | None = None,
    covariates: Sequence[str] | None = None,
    est_method: str = "dr",
    anticipation: int = 0,
    unbalanced_panel: str = "pairwise",
    nonabsorbing: str = "drop",
) -> CallawaySantAnnaResult:
    """Group-time ATTs aggregated to event time or to one overall ATT (R *did*'s ``att_gt`` + ``aggte``).

    Parameters
    ----------
    panel : long panel, one row per unit and period.
    treatment : binary absorbing treatment; its adoption period is ``{treatment}_cohort``
        (default treatment ``bilateral_binding``). With ``cohort=`` it may be omitted (the
        result's term is then ``"ATT"``).
    outcome : outcome column (default ``return_rate`` for linear, ``returns`` for Poisson).
    control : ``"never"`` or ``"notyet"`` (see module docstring).
    event_time : True: ``.table`` indexed by event time ``e = t - g`` (int);
        False: one row ``term == treatment`` with the simple overall ATT.
    base_period : ``"varying"`` or ``"universal"`` for pre-adoption cells.
    cluster : column whose clusters the influence functions are summed over (None: the unit).
        Default ``citizen``; when the panel has no ``citizen`` column and ``unit`` is not
        ``corridor``, the unit (R *did*'s analytic standard errors).
    unit, time : unit and period columns (default ``corridor``, ``year``).
    min_e, max_e : restrict the reported event times.
    model : ``"linear"`` (differences of means) or ``"poisson"`` (log ratios with
        ``exposure``, see the module docstring).
    cohort : column with the first treated period (0/NaN: never treated), R's ``gname``
        (default ``{treatment}_cohort``).
    covariates : time-invariant covariates (values at each cell's base period) for the
        conditional parallel-trends 2x2s, estimated by ``est_method`` ``"reg"`` (outcome
        regression), ``"ipw"`` (inverse probability weighting) or ``"dr"`` (doubly robust),
        Sant'Anna & Zhao (2020) panel estimators (with ``unbalanced_panel="allow"`` their
        repeated-cross-section versions, covariates taken in each observed period). Linear model only.
    anticipation : periods of anticipation ``delta``: the base period of cohort ``g`` is the last
        period before ``g - delta``; not-yet-treated controls adopt after ``max(t, b) + delta``.
    unbalanced_panel : ``"pairwise"`` (default: each ATT(g, t) uses the units observed in ``t``
        and its base period), ``"balance"`` (R *did*'s default: keep only units observed in
        every period; the number of units dropped is logged and recorded) or ``"allow"`` (R's
        ``allow_unbalanced_panel = TRUE``: each 2x2 is a repeated-cross-section estimator over all
        units observed in each period — four period means without covariates — with influence
        values summed within units). All three coincide on a balanced panel without covariates.
    nonabsorbing : units whose ``treatment`` column switches off inside the sample (no event
        time after the switch-off): ``"drop"`` (default; rows counted in
        ``info["dropped"]["non-absorbing treatment"]``, units named in the notes) or ``"raise"``.

    The group-time table is in ``.extra["group_time"]``; :meth:`CallawaySantAnnaResult.aggregate`
    gives the ``simple``, ``dynamic``, ``group`` and ``calendar`` aggregations.
    """
    if control not in ("never", "notyet"):
        raise ValueError(f"control={control!r}: expected 'never' or 'notyet'")
    if base_period not in ("varying", "universal"):
        raise ValueError(f"base_period={base_period!r}: expected 'varying' or 'universal'")
    if model not in ("linear", "poisson"):
        raise ValueError(f"model={model!r}: expected 'linear' or 'poisson'")
    if unbalanced_panel not in UNBALANCED_PANEL:
        raise ValueError(f"unbalanced_panel={unbalanced_panel!r}: expected one of {list(UNBALANCED_PANEL)}")
    if est_method not in EST_METHODS:
        raise ValueError(f"est_method={est_method!r}: expected one of {list(EST_METHODS)}")
    if int(anticipation) != anticipation or anticipation < 0:
        raise ValueError(f"anticipation={anticipation!r}: expected a non-negative integer number of periods")
    check_nonabsorbing_choice(nonabsorbing)
    covariates = [covariates] if isinstance(covariates, str) else list(covariates or [])
    if covariates and model == "poisson":
        raise ValueError("covariates are supported for model='linear' only (Sant'Anna-Zhao 2x2s)")
    if model == "poisson" and unbalanced_panel == "allow":
        raise ValueError("model='poisson' with unbalanced_panel='allow' is not supported; use 'balance' or 'pairwise'")
    if outcome is None:
        outcome = "return_rate" if model == "linear" else "returns"
    if treatment is None and cohort is None:
        treatment = "bilateral_binding"
    if cluster == "citizen" and "citizen" not in panel.columns and unit != "corridor":
        logger.info("no 'citizen' column and unit=%r: clustering at the unit level", unit)
        cluster = None
    named = {"unit": unit, "time": time, "outcome": outcome, "cohort": cohort,
             "cluster": cluster if isinstance(cluster, str) else None,
             "exposure": exposure if model == "poisson" else None}
    named.update({f"covariates[{i}]": c for i, c in enumerate(covariates)})
    _missing_columns(panel, named)
    if cohort is None and treatment not in panel.columns and f"{treatment}_cohort" not in panel.columns:
        raise KeyError(f"treatment column {treatment!r} (and its adoption period {treatment + '_cohort'!r}) not in "
                       f"panel; name the first-treated period with cohort=; columns in panel: "
                       f"{[str(c) for c in panel.columns]}")
    panel, nonabsorbing_drop = drop_nonabsorbing(panel, treatment, unit, time, nonabsorbing, "callaway_santanna")
    term = treatment if treatment is not None else "ATT"
    if cohort is None and not covariates:
        data, t_name = panel, treatment
    else:
        cols = [unit, time, outcome, *covariates]
        cols += [c for c in (cluster if isinstance(cluster, str) else None,
                             exposure if model == "poisson" else None) if c is not None]
        if treatment is not None and treatment in panel.columns:
            cols.append(treatment)
        cohort_col = cohort if cohort is not None else f"{treatment}_cohort"
        if cohort_col not in panel.columns:  # treatment only: derive the adoption period
            data, t_name = panel, treatment
            if covariates:
                data = panel.copy()
                D = pd.to_numeric(panel[treatment], errors="coerce")
                first = panel[time].where(D > 0).groupby(panel[unit]).transform("min")
                data[f"{treatment}_cohort"] = first
                data, t_name = _cohort_frame(data, treatment, f"{treatment}_cohort", unit, time, cols)
        else:
            data, t_name = _cohort_frame(panel, treatment, cohort_col, unit, time, cols)
        if covariates:
            na = data[covariates].isna().any(axis=1)
            if na.any():
                logger.info("dropped %d rows with missing covariates %s", int(na.sum()), covariates)
                data = data.loc[~na]
    s = did_sample(data, t_name, outcome, model, exposure, fe=(unit, time), cluster=cluster, unit=unit, time=time)
    first_year = np.nanmin(s.year)
    always = ~np.isnan(s.cohort) & (s.cohort <= first_year)
    if always.any():
        s = s.subset(~always, "corridors treated in every sample year (no pre-period)")
    n_units_dropped_balance = 0
    if unbalanced_panel == "balance":
        per_unit = pd.Series(s.year).groupby(s.unit).transform("size").to_numpy()
        n_years = np.unique(s.year).size
        full = per_unit == n_years
        n_units_dropped_balance = int(np.unique(s.unit[~full]).size)
        if n_units_dropped_balance:
            logger.info("balanced panel: dropped %d units not observed in all %d periods",
                        n_units_dropped_balance, n_years)
        s = s.subset(full, "units not observed in every period (unbalanced_panel='balance')")
    # wide matrices: units x periods
    u_codes, u_index = pd.factorize(s.unit)
    years = np.unique(s.year).astype(int)
    y_pos = np.searchsorted(years, s.year.astype(int))
    nU, nT = len(u_index), len(years)
    Y = _wide(s.y, u_codes, y_pos, (nU, nT))
    E = _wide(s.exposure, u_codes, y_pos, (nU, nT)) if model == "poisson" else np.full((nU, nT), np.nan)
    Xw = [_wide(data.loc[s.frame.index, c].to_numpy(dtype=float), u_codes, y_pos, (nU, nT)) for c in covariates]
    coh_u = np.full(nU, np.nan)
    coh_u[u_codes] = s.cohort
    if s.cluster is not None:
        cl_u = np.zeros(nU, dtype=np.int64)
        cl_u[u_codes] = pd.factorize(s.cluster)[0]
        if pd.Series(pd.factorize(s.cluster)[0]).groupby(u_codes).nunique().max() > 1:
            raise ValueError(f"cluster {cluster!r} varies within {unit}; cluster at or above the {unit} level")
    else:
        cl_u = np.arange(nU)
    G_cl = int(cl_u.max()) + 1
    never = np.isnan(coh_u)
    if control == "never" and not never.any():
        raise ValueError(f"control='never' but no unit is never treated by {term!r}; use control='notyet'")
    cohorts = np.unique(coh_u[~never]).astype(int)
    cohorts = cohorts[cohorts <= years[-1]]
    cells: list[dict[str, Any]] = []
    reference: list[dict[str, Any]] = []
    psis: list[np.ndarray] = []
    year_idx = {int(t): j for j, t in enumerate(years)}
    for g in cohorts:
        before = years[years + anticipation < g]
        if before.size == 0:
            logger.info("cohort %d has no period before adoption (anticipation %d) in the sample; skipped",
                        g, anticipation)
            continue
        base_g = int(before[-1])
        treated_u = coh_u == g
        for j, t in enumerate(years):
            t = int(t)
            if t >= g or base_period == "universal":
                b = base_g
            else:
                if j == 0:
                    continue
                b = int(years[j - 1])
            if t == b:
                reference.append({"cohort": g, "year": t, "base_year": b, "e": t - g, "att": 0.0,
                                  "n_treated": int(treated_u.sum()), "n_control": 0})
                continue
            jt, jb = year_idx[t], year_idx[b]
            if control == "never":
                ctrl_u = never.copy()
            else:
                ctrl_u = never | (coh_u > max(t, b) + anticipation)
                ctrl_u &= ~treated_u
            if unbalanced_panel == "allow":
                obs = ~np.isnan(Y[:, jt]) | ~np.isnan(Y[:, jb])
            else:
                obs = ~np.isnan(Y[:, jt]) & ~np.isnan(Y[:, jb])
                for X_ in Xw:
                    obs &= ~np.isnan(X_[:, jb])
            T_m, C_m = treated_u & obs, ctrl_u & obs
            nT_, nC_ = int(T_m.sum()), int(C_m.sum())
            if nT_ == 0 or nC_ == 0:
                continue
            if model == "poisson":
                cell = poisson_panel(Y[:, jt], Y[:, jb], E[:, jt], E[:, jb], T_m, C_m)
            elif unbalanced_panel == "allow" and covariates:
                cell = _cross_section_cell(Y, Xw, jt, jb, T_m, C_m, est_method)
            elif unbalanced_panel == "allow":
                cell = unconditional_unbalanced(Y[:, jt], Y[:, jb], T_m, C_m)
            elif covariates:
                X = np.column_stack([np.ones(nU), *[X_[:, jb] for X_ in Xw]])
                cell = covariate_panel(Y[:, jt] - Y[:, jb], np.nan_to_num(X), T_m, C_m, est_method)
            else:
                cell = unconditional_panel(Y[:, jt] - Y[:, jb], T_m, C_m)
            if cell is None:
                continue
            att, psi = cell
            cells.append({"cohort": g, "year": t, "base_year": b, "e": t - g, "att": att,
                          "n_treated": nT_, "n_control": nC_})
            psis.append(psi)
    if not cells:
        raise ValueError("no estimable group-time cells (check cohorts, periods and control group)")
    gt = pd.DataFrame(cells)
    Psi = np.column_stack(psis)  # units x cells
    # a cell's 2x2 (Y_t - Y_b on a treated indicator; Poisson: unit effects, a year effect
    # and the ATT) leaves n_treated + n_control - 2 residual degrees of freedom; with none
    # left, or a single cluster, the influence functions vanish and the variance is not identified
    cell_df = (gt["n_treated"] + gt["n_control"] - 2 - len(covariates)).to_numpy()
    cl_note = variance_not_identified(G_cl, 0, [G_cl])
    gte = GroupTimeEffects(cells=gt, psi=Psi, unit_cohort=coh_u, unit_cluster=cl_u, n_clusters=G_cl, model=model,
                           alpha=alpha, bad_cells=cell_df <= 0, variance_note=cl_note,
                           reference_cells=pd.DataFrame(reference) if reference else None)
    if event_time:
        es, parts = event_time_effects(gte, None, -np.inf if min_e is None else min_e,
                                       np.inf if max_e is None else max_e)
        names: list[Any] = es
    else:
        names = [term]
        parts = [simple_att(gte)]
    est = np.array([p.est for p in parts])
    infs = np.column_stack([p.inf for p in parts])
    C = np.column_stack([np.bincount(cl_u, weights=infs[:, j], minlength=G_cl) for j in range(len(names))])
    V = C.T @ C
    var_notes: list[str] = []
    if cl_note is not None:
        V[:] = np.nan
        var_notes.append(cl_note)
    else:
        bad = [j for j, p in enumerate(parts) if np.any(cell_df[p.uses] <= 0)]
        if bad:
            V[bad, :] = np.nan
            V[:, bad] = np.nan
            cells_bad = gt.loc[cell_df <= 0, ["cohort", "year"]].astype(int).to_numpy().tolist()
            var_notes.append(
                "variance not identified: no residual degrees of freedom in group-time cell(s) (cohort, year) "
                f"{cells_bad} (one treated and one control {unit}); standard errors, intervals and p-values "
                f"of {[names[j] for j in bad]} are NaN"
            )
    se = np.sqrt(np.diag(V))
    table = make_table(est, se, index=names, df=None, alpha=alpha, poisson=model == "poisson",
                       index_name="rel_period" if event_time else "term")
    table["n_cells"] = [int(p.uses.sum()) for p in parts]
    Ccell = np.column_stack([np.bincount(cl_u, weights=Psi[:, j], minlength=G_cl) for j in range(Psi.shape[1])])
    gt["std_error"] = np.where((cell_df > 0) & (cl_note is None), np.sqrt(np.sum(Ccell**2, axis=0)), np.nan)
    info = nonabsorbing_drop.record(s.info())
    two_by_two = ("unconditional 2x2 DiD" if not covariates
                  else f"conditional 2x2 DiD, Sant'Anna-Zhao {est_method} with covariates {covariates}")
    info.update(
        {
            "estimator": f"Callaway & Sant'Anna group-time ATT ({two_by_two})",
            "model": model,
            "outcome": outcome,
            "treatment": term,
            "unit": unit,
            "time": time,
            "n_units": nU,
            "control_group": (f"never-treated units ({unit})" if control == "never"
                              else f"never-treated and not-yet-treated units ({unit}; adoption after max(t, base period)"
                                   + (f" + {anticipation}" if anticipation else "") + ")"),
            "base_period": base_period,
            "reference_period": (f"{base_period} base period: last period before g"
                                 + (f" - {anticipation}" if anticipation else "") + " for post-adoption cells, "
                                 + ("the previous period" if base_period == "varying" else "the same period")
                                 + " for pre-adoption cells"),
            "est_method": est_method if covariates else None,
            "covariates": covariates or None,
            "anticipation": anticipation,
            "unbalanced_panel": unbalanced_panel,
            "aggregation": "event time, cohort-size weights" if event_time else "simple ATT over post cells, cohort-size weights",
            "vcov_type": "cluster" if s.cluster is not None else unit,
            "vcov_description": "influence functions (incl. estimated cohort weights) summed within clusters",
            "small_sample": "none",
            "n_clusters": G_cl,
            "cluster": cluster if s.cluster is not None else unit,
            "n_group_time_cells": int(len(gt)),
        }
    )
    if unbalanced_panel == "balance":
        info["n_units_dropped_unbalanced"] = n_units_dropped_balance
    if s.attrs.get("synthetic"):
        info.setdefault("notes", []).append("SYNTHETIC data (simulate_panel)")
    if var_notes:
        info.setdefault("notes", []).extend(var_notes)
    if model == "poisson":
        info["exposure"] = f"{exposure} (rates per order)"
    return CallawaySantAnnaResult(
        model=f"callaway_santanna ({model})",
        params=pd.Series(est, index=names),
        vcov=pd.DataFrame(V, index=names, columns=names),
        table=table,
        info=info,
        design={"outcome": outcome, "treatment": term, "fixed_effects": [unit, time], "cluster": cluster,
                "estimator": "callaway_santanna", "covariates": covariates or None},
        df_t=None,
        alpha=alpha,
        extra={
            "group_time": gt,
            "group_time_effects": gte,
            "call": {"func": callaway_santanna, "panel": panel,
                     "kwargs": {"treatment": treatment, "outcome": outcome, "control": control,
                                "event_time": event_time, "base_period": base_period, "cluster": cluster,
                                "unit": unit, "min_e": min_e, "max_e": max_e, "model": model,
                                "exposure": exposure, "alpha": alpha, "time": time, "cohort": cohort,
                                "covariates": covariates or None, "est_method": est_method,
                                "anticipation": anticipation, "unbalanced_panel": unbalanced_panel,
                                "nonabsorbing": nonabsorbing}},
        },
    )
