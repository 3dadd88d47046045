"""Synthetic control weights: a treated series as a convex combination of donor series.

``w = argmin_w sum_{t in pre} (y_treated,t - sum_j w_j y_j,t)^2`` subject to ``w_j >= 0`` and
``sum_j w_j = 1`` (Abadie, Diamond and Hainmueller 2010, outcome-only version without
covariates). The fit uses scipy's SLSQP; the pre-period root mean squared prediction error
(RMSPE) says how well the synthetic unit tracks the treated one before the event, and the
post/pre RMSPE ratio is the usual placebo statistic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

log = logging.getLogger(__name__)

__all__ = ["SyntheticControl", "synthetic_control"]


@dataclass
class SyntheticControl:
    """Weights, the synthetic series and fit statistics of one synthetic comparison.

    ``series``: one row per period with ``treated``, ``synthetic``, ``gap`` (treated minus
    synthetic) and ``pre`` (True in the fitting period).
    """

    weights: pd.Series
    series: pd.DataFrame
    pre_rmspe: float
    post_rmspe: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rmspe_ratio(self) -> float:
        return self.post_rmspe / self.pre_rmspe if self.pre_rmspe > 0 else np.inf

    def summary(self) -> str:
        w = self.weights[self.weights > 1e-6].sort_values(ascending=False)
        lines = [
            f"Synthetic control for {self.info.get('treated', '?')}: {len(self.weights)} donors, "
            f"{int(self.series['pre'].sum())} pre-periods, {int((~self.series['pre']).sum())} post-periods",
            "weights: " + ", ".join(f"{k} {v:.3f}" for k, v in w.items()),
            f"pre-period RMSPE {self.pre_rmspe:.4g}; post-period RMSPE {self.post_rmspe:.4g}",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return "<pre>" + self.summary() + "</pre>" + self.series.to_html(float_format=lambda x: f"{x:.4g}")


def synthetic_control(
    treated: pd.Series, donors: pd.DataFrame, pre: pd.Index | list[Any], *, tol: float = 1e-12, maxiter: int = 1000
) -> SyntheticControl:
    """Convex weights on ``donors`` (columns) that reproduce ``treated`` over the ``pre`` periods.

    ``treated`` and ``donors`` are indexed by period; every donor and the treated series must be
    observed (finite) in every pre-period, else ``ValueError`` names the gaps. Deterministic:
    the optimisation starts from equal weights.
    """
    pre = pd.Index(pre)
    if donors.shape[1] == 0:
        raise ValueError("synthetic_control: no donor series")
    missing = [p for p in pre if p not in treated.index or p not in donors.index]
    if missing:
        raise ValueError(f"synthetic_control: pre-period(s) {missing} not in the treated or donor index")
    y = treated.loc[pre].to_numpy(dtype=float)
    X = donors.loc[pre].to_numpy(dtype=float)
    if not np.isfinite(y).all():
        raise ValueError(f"synthetic_control: treated series missing in pre-period(s) {list(pre[~np.isfinite(y)])}")
    bad = [str(c) for c, ok in zip(donors.columns, np.isfinite(X).all(axis=0)) if not ok]
    if bad:
        raise ValueError(f"synthetic_control: donor(s) {bad} not observed in every pre-period")
    k = X.shape[1]

    def loss(w: np.ndarray) -> float:
        r = y - X @ w
        return float(r @ r)

    def grad(w: np.ndarray) -> np.ndarray:
        return -2.0 * X.T @ (y - X @ w)

    res = optimize.minimize(
        loss, np.full(k, 1.0 / k), jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"ftol": tol, "maxiter": maxiter},
    )
    w = np.clip(res.x, 0.0, None)
    w = w / w.sum()
    weights = pd.Series(w, index=donors.columns, name="weight")
    periods = treated.index.intersection(donors.index)
    synth = donors.loc[periods].to_numpy(dtype=float) @ w
    series = pd.DataFrame({"treated": treated.loc[periods].to_numpy(dtype=float), "synthetic": synth}, index=periods)
    series["gap"] = series["treated"] - series["synthetic"]
    series["pre"] = series.index.isin(pre)
    pre_gap = series.loc[series["pre"], "gap"]
    post_gap = series.loc[~series["pre"], "gap"].dropna()
    pre_rmspe = float(np.sqrt(np.mean(pre_gap**2)))
    post_rmspe = float(np.sqrt(np.mean(post_gap**2))) if len(post_gap) else np.nan
    if not res.success:
        log.warning("synthetic_control: optimiser did not converge (%s)", res.message)
    info = {"converged": bool(res.success), "message": str(res.message), "n_donors": k, "treated": treated.name}
    return SyntheticControl(weights=weights, series=series, pre_rmspe=pre_rmspe, post_rmspe=post_rmspe, info=info)
