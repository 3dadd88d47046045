"""Goodman-Bacon decomposition of the two-way fixed-effects DiD coefficient.

With a balanced panel and a binary, absorbing (staggered) treatment, the OLS
coefficient on ``D`` in ``y_it = a_i + b_t + beta D_it + e_it`` is a weighted
average of every 2x2 difference-in-differences between timing groups
(Goodman-Bacon 2021, *J. Econometrics* 225(2), Theorem 1):

* treated vs never treated,
* earlier vs later treated (later group not yet treated = clean control),
* later vs earlier treated (earlier group already treated = "forbidden"
  comparison; its treatment-effect dynamics enter the estimate with a negative
  sign), including comparisons against units treated in every period.

Timing groups are defined by the first year ``D == 1`` inside the panel window
(units treated in every year are the "always treated" group). Weights are the
closed-form variance shares of the paper (eq. 10a-c) and sum to one; the
weighted sum of the 2x2 estimates reproduces the TWFE coefficient exactly.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from returnstudy.results import EstimationResult

from ._design import check_column_arguments

logger = logging.getLogger(__name__)

NEVER = "never treated"
ALWAYS = "always treated"
TYPE_NEVER = "treated vs never treated"
TYPE_EARLY = "earlier vs later (not yet treated)"
TYPE_LATE = "later vs earlier (already treated)"
TYPE_ALWAYS = "treated vs always treated"


def _balanced_matrix(
    panel: pd.DataFrame, outcome: str, treatment: str, unit: str, time: str, balance: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    check_column_arguments(panel, outcome=outcome, treatment=treatment, unit=unit, time=time)
    if len({outcome, treatment, unit, time}) < 4:
        raise ValueError(f"bacon_decomposition: outcome, treatment, unit and time must be four different columns, "
                         f"got {outcome!r}, {treatment!r}, {unit!r}, {time!r}")
    df = panel[[unit, time, outcome, treatment]].copy()
    if df.duplicated([unit, time]).any():
        raise ValueError(f"bacon_decomposition: duplicate ({unit}, {time}) rows")
    years = np.sort(df[time].unique())
    y = df.pivot(index=unit, columns=time, values=outcome).reindex(columns=years)
    d = df.pivot(index=unit, columns=time, values=treatment).reindex(columns=years)
    bad = y.isna().any(axis=1) | d.isna().any(axis=1)
    dropped: dict[str, Any] = {}
    if bad.any():
        if balance == "error":
            first = bad[bad].index[0]
            raise ValueError(
                f"bacon_decomposition needs a balanced panel: {int(bad.sum())} units have missing "
                f"{outcome!r} or {treatment!r} in some year (first: {unit}={first!r}); use balance='drop'"
            )
        if balance != "drop":
            raise ValueError(f"balance={balance!r}: expected 'drop' or 'error'")
        units = "corridors" if unit == "corridor" else f"units ({unit})"
        dropped = {f"{units} with missing {outcome} or {treatment} in some {'year' if time == 'year' else 'period'} "
                   f"(balanced panel needed)": int(bad.sum())}
        logger.info("bacon_decomposition: dropped %d units with missing values", bad.sum())
        y, d = y[~bad], d[~bad]
    if len(y) == 0:
        raise ValueError("bacon_decomposition: no complete units left")
    D = d.to_numpy(dtype=float)
    if not np.isin(D, (0.0, 1.0)).all():
        raise ValueError(f"bacon_decomposition: {treatment!r} must be binary 0/1")
    if (np.diff(D, axis=1) < 0).any():
        u = d.index[(np.diff(D, axis=1) < 0).any(axis=1)][0]
        raise ValueError(f"bacon_decomposition: {treatment!r} switches off in {unit}={u!r}; needs absorbing treatment")
    return y.to_numpy(dtype=float), D, years, y.index.to_numpy(), dropped


def _twfe_beta(Y: np.ndarray, D: np.ndarray) -> float:
    """TWFE coefficient in a balanced panel via two-way demeaning."""
    Dt = D - D.mean(axis=1, keepdims=True) - D.mean(axis=0, keepdims=True) + D.mean()
    return float(np.sum(Dt * Y) / np.sum(Dt * Dt))


def bacon_decomposition(
    panel: pd.DataFrame,
    outcome: str = "return_rate",
    treatment: str = "bilateral_binding",
    unit: str = "corridor",
    time: str = "year",
    balance: str = "drop",
) -> Any:
    """Decompose the TWFE DiD coefficient into 2x2 comparisons and weights.

    Parameters
    ----------
    panel : a unit-period panel (this package's corridor-year panel by default) with the
        treatment column (0/1, absorbing).
    outcome : outcome column (linear model), default ``return_rate``.
    treatment : binary treatment column.
    unit, time : the columns identifying a row (default ``corridor`` and ``year``; e.g.
        ``unit="countyreal"`` for another panel). Unit and time effects are the model's
        fixed effects. A missing column raises ``KeyError`` naming the argument.
    balance : ``"drop"`` drops units with any missing outcome/treatment (reported);
        ``"error"`` raises instead.

    Returns an :class:`~returnstudy.results.EstimationResult` whose ``.table`` has one
    row per comparison type (estimate = weight-averaged 2x2 DiD, column ``weight``)
    plus the row ``twfe``; the full list of 2x2 comparisons is in ``.extra['comparisons']``.
    """
    Y, D, years, units, dropped = _balanced_matrix(panel, outcome, treatment, unit, time, balance)
    N, T = D.shape
    first = np.where(D.any(axis=1), D.argmax(axis=1), T)  # index of first treated year; T = never
    groups = np.unique(first)
    n = {g: float(np.mean(first == g)) for g in groups}
    dbar = {g: (T - g) / T for g in groups}  # share of periods treated
    ybar = {g: Y[first == g].mean(axis=0) for g in groups}
    Dt = D - D.mean(axis=1, keepdims=True) - D.mean(axis=0, keepdims=True) + D.mean()
    VD = float(np.mean(Dt * Dt))
    if VD <= 0:
        raise ValueError(f"bacon_decomposition: {treatment!r} has no variation after removing unit and year means")
    beta = _twfe_beta(Y, D)

    def label(g: int) -> str:
        if g == T:
            return NEVER
        if g == 0:
            return ALWAYS
        return str(int(years[g]))

    def did(treat: int, ctrl: int, lo: int, hi: int, switch: int) -> float:
        """2x2 DiD over periods [lo, hi): pre = [lo, switch), post = [switch, hi)."""
        dt = ybar[treat][switch:hi].mean() - ybar[treat][lo:switch].mean()
        dc = ybar[ctrl][switch:hi].mean() - ybar[ctrl][lo:switch].mean()
        return float(dt - dc)

    rows = []
    for i, k in enumerate(groups):  # k earlier (higher dbar)
        for l in groups[i + 1:]:  # l later
            nk, nl = n[k], n[l]
            nkl = nk / (nk + nl)
            dk, dl = dbar[k], dbar[l]
            # k treated, l (not yet / never treated) as control: window [0, l)
            if k > 0:
                w = ((nk + nl) * (1 - dl)) ** 2 * nkl * (1 - nkl) * ((dk - dl) / (1 - dl)) * ((1 - dk) / (1 - dl)) / VD
                est = did(k, l, 0, l, k)
                rows.append((TYPE_NEVER if l == T else TYPE_EARLY, label(k), label(l), est, w))
            # l treated, k (already treated) as control: window [k, T)
            if l < T and dk > 0:
                w = ((nk + nl) * dk) ** 2 * nkl * (1 - nkl) * (dl / dk) * ((dk - dl) / dk) / VD
                est = did(l, k, k, T, l)
                rows.append((TYPE_ALWAYS if k == 0 else TYPE_LATE, label(l), label(k), est, w))
    comp = pd.DataFrame(rows, columns=["type", "treated", "control", "estimate", "weight"])
    if comp.empty:
        raise ValueError("bacon_decomposition: no 2x2 comparisons (need at least two timing groups)")
    comp["contribution"] = comp["estimate"] * comp["weight"]
    by = comp.groupby("type", sort=False).agg(weight=("weight", "sum"), contribution=("contribution", "sum"),
                                              n_comparisons=("weight", "size"))
    by["estimate"] = by["contribution"] / by["weight"]
    forbidden = comp["type"].isin([TYPE_LATE, TYPE_ALWAYS])
    w_forb = float(comp.loc[forbidden, "weight"].sum())
    c_forb = float(comp.loc[forbidden, "contribution"].sum())
    table = pd.DataFrame(
        {
            "estimate": list(by["estimate"]) + [beta],
            "std_error": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
            "weight": list(by["weight"]) + [float(comp["weight"].sum())],
            "n_comparisons": list(by["n_comparisons"]) + [len(comp)],
        },
        index=pd.Index(list(by.index) + ["twfe"], name="term"),
    )
    info = {
        "estimator": "Goodman-Bacon decomposition of the TWFE DiD coefficient",
        "model": "linear",
        "outcome": outcome,
        "treatment": treatment,
        "n_obs": int(N * T),
        "n_corridors": int(N),
        "n_units": int(N),
        "unit": unit,
        "time": time,
        "years": tuple(int(v) if isinstance(v, (int, np.integer)) or float(v).is_integer() else v
                       for v in (years[0], years[-1])) if np.issubdtype(years.dtype, np.number) else (years[0], years[-1]),
        "fixed_effects": [unit, time],
        "cluster": None,
        "control_group": "all 2x2 comparisons (never, not-yet and already treated)",
        "twfe_estimate": beta,
        "weighted_sum": float(comp["contribution"].sum()),
        "weights_sum": float(comp["weight"].sum()),
        "already_treated_weight_share": w_forb,
        "already_treated_contribution_share": c_forb / beta if beta != 0 else float("nan"),
        "timing_groups": {label(g): int(np.sum(first == g)) for g in groups},
        "dropped": dropped,
        "vintage": panel.attrs.get("vintage"),
        "synthetic": bool(panel.attrs.get("synthetic", False)),
    }
    notes = [
        f"TWFE coefficient {beta:.6g} = sum of weight x 2x2 DiD ({info['weighted_sum']:.6g}); weights sum to "
        f"{info['weights_sum']:.6f}.",
        f"Comparisons against already-treated units: weight {w_forb:.3f}, "
        f"{100 * info['already_treated_contribution_share']:.1f}% of the estimate.",
    ]
    info["notes"] = notes
    info["vcov_type"] = "none (exact decomposition, no sampling variance)"
    kept = panel[unit].isin(units)
    for col, key in (("geo", "n_geo"), ("citizen", "n_citizen")):
        if col in panel.columns:
            info[key] = int(panel.loc[kept, col].nunique())
    return EstimationResult(
        model="bacon_decomposition",
        params=pd.Series({"twfe": beta}),
        vcov=pd.DataFrame([[np.nan]], index=["twfe"], columns=["twfe"]),
        table=table,
        info=info,
        design={"outcome": outcome, "treatment": treatment, "fixed_effects": [unit, time]},
        extra={"comparisons": comp},
    )
