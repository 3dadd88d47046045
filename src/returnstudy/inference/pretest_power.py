"""Power of the pre-trend test against linear trends (Roth 2022, "Pretest with Caution").

An event study's joint pre-test (Wald test that all leads are zero) passes with high
probability even under sizeable violations of parallel trends when the leads are noisy.
For a linear difference in trends ``delta_t = slope * t`` (``t`` periods from the reference
period, ``delta = 0`` there) the Wald statistic of the ``K`` leads is noncentral
chi-square with ``K`` degrees of freedom and noncentrality
``slope^2 * t_pre' Sigma_pre^-1 t_pre``. :func:`pretest_power` reports the slope the test
detects with a given power (default 50% and 80%) and the bias that trend causes in each
post-period coefficient: ``slope * t`` unconditionally, and conditionally on the pre-test
passing (``E[beta_post - tau_post | pre-test passes]``, by seeded simulation: passing
selects draws whose leads look flat, which moves the post-period coefficients through
their covariance with the leads).

Units are those of the coefficients (log points for Poisson models). The trend's sign
follows the direction of the estimated pre-trend (the GLS slope of the leads); the bias
flips sign with it.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ._gaussian import symmetric_sqrt
from .honest_did import EventStudyCoefficients, _coefficients

logger = logging.getLogger(__name__)

__all__ = ["pretest_power", "PretestPower", "slope_for_power"]


def _positions(c: EventStudyCoefficients) -> np.ndarray:
    """Periods from the reference period: -n_pre..-1 for the leads, 1..n_post for the lags."""
    return np.concatenate([np.arange(-c.n_pre, 0), np.arange(1, c.n_post + 1)]).astype(float)


def slope_for_power(power: float, n_pre: int, info: float, alpha: float = 0.05) -> float:
    """Slope magnitude at which a chi2(n_pre) Wald test of level ``alpha`` has ``power``.

    ``info = t_pre' Sigma_pre^-1 t_pre`` (the noncentrality per unit slope squared).
    """
    if not alpha < power < 1:
        raise ValueError(f"power={power}: must lie in (alpha={alpha}, 1)")
    crit = stats.chi2.ppf(1 - alpha, n_pre)
    f = lambda lam: stats.ncx2.sf(crit, n_pre, lam) - power  # noqa: E731
    hi = 1.0
    while f(hi) < 0:
        hi *= 2
    lam = optimize.brentq(f, 1e-12, hi, xtol=1e-12, rtol=1e-12)
    return float(np.sqrt(lam / info))


@dataclass
class PretestPower:
    """Slopes detected with the given power and the bias they cause.

    ``slopes``: one row per power (``power, slope, noncentrality``); ``bias``: one row per
    power and post period (``power, slope, rel_period, position, trend, bias,
    bias_given_pass, estimate``); ``test``: the observed pre-test (``statistic, df,
    p_value``). ``coefficients`` keeps the event study (for :func:`plot_pretest_power`).
    """

    slopes: pd.DataFrame
    bias: pd.DataFrame
    test: dict[str, float]
    coefficients: EventStudyCoefficients
    alpha: float
    direction: int
    notes: list[str] = field(default_factory=list)

    @property
    def table(self) -> pd.DataFrame:
        return self.bias

    def summary(self) -> str:
        unit = "log points" if self.coefficients.poisson else "outcome units"
        t = self.test
        lines = [
            f"Pre-test: Wald chi2({int(t['df'])}) = {t['statistic']:.3f}, p = {t['p_value']:.4g} "
            f"(level {self.alpha:g}; normal reference distribution)",
            f"Linear trends through the reference period, slope in {unit} per period "
            f"(sign of the estimated pre-trend: {'+' if self.direction > 0 else '-'}):",
        ]
        for r in self.slopes.itertuples(index=False):
            lines.append(f"  detected with power {r.power:.0%}: slope {r.slope:+.4g}")
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            lines.append(self.bias.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"


def pretest_power(
    beta: Any,
    sigma: Any = None,
    n_pre: int | None = None,
    n_post: int | None = None,
    *,
    power: Sequence[float] = (0.5, 0.8),
    alpha: float = 0.05,
    n_sim: int = 200_000,
    seed: int = 0,
) -> PretestPower:
    """Pre-test power analysis of an event study (``beta`` ordered pre then post, or a result).

    For each ``power`` the slope of a linear trend the Wald pre-test at level ``alpha``
    detects with that probability, and its bias in each post-period coefficient,
    unconditionally and given that the pre-test passes (``n_sim`` draws, ``seed``).
    """
    c = _coefficients(beta, sigma, n_pre, n_post)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha}: must be in (0, 1)")
    powers = [float(p) for p in np.atleast_1d(power)]
    npre = c.n_pre
    pos = _positions(c)
    Sp = c.sigma[:npre, :npre]
    Spi = np.linalg.pinv(Sp)
    tp = pos[:npre]
    info = float(tp @ Spi @ tp)
    if info <= 0:
        raise ValueError("the leads carry no information about a linear trend (singular covariance)")
    bp = c.beta[:npre]
    stat = float(bp @ Spi @ bp)
    df = int(np.linalg.matrix_rank(Sp))
    test = {"statistic": stat, "df": df, "p_value": float(stats.chi2.sf(stat, df))}
    gls_slope = float(tp @ Spi @ bp) / info
    direction = 1 if gls_slope >= 0 else -1
    crit = stats.chi2.ppf(1 - alpha, df)
    # pre-test pass region: draws of the leads under each trend
    z = np.random.default_rng(seed).standard_normal((int(n_sim), npre)) @ symmetric_sqrt(Sp)  # noise of the leads
    proj = c.sigma[npre:, :npre] @ Spi  # E[beta_post | beta_pre] slope
    slope_rows, bias_rows = [], []
    labels_post = c.labels[npre:] if len(c.labels) == npre + c.n_post else list(range(c.n_post))
    for p in powers:
        s = direction * slope_for_power(p, df, info, alpha)
        delta = s * pos
        draws = delta[:npre] + z
        passed = np.einsum("ij,jk,ik->i", draws, Spi, draws) <= crit
        share = float(passed.mean())
        mean_pre = draws[passed].mean(axis=0) if passed.any() else np.full(npre, np.nan)
        cond = delta[npre:] + proj @ (mean_pre - delta[:npre])
        slope_rows.append({"power": p, "slope": s, "noncentrality": s * s * info, "pass_rate_simulated": share})
        for j in range(c.n_post):
            bias_rows.append({
                "power": p, "slope": s, "rel_period": labels_post[j], "position": pos[npre + j],
                "trend": delta[npre + j], "bias": delta[npre + j], "bias_given_pass": float(cond[j]),
                "estimate": float(c.beta[npre + j]),
            })
    notes = list(c.notes)
    if df < npre:
        notes.append(f"covariance of the {npre} leads has rank {df}: the test uses {df} degrees of freedom")
    return PretestPower(slopes=pd.DataFrame(slope_rows), bias=pd.DataFrame(bias_rows), test=test, coefficients=c,
                        alpha=alpha, direction=direction, notes=notes)
