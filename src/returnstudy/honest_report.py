"""Report material on what an event study's pre-trends mean, in plain words.

:func:`pretrend_report` takes an event-study result and its name and returns a
:class:`PretrendReport`: a short paragraph (direction of the leads, whether the joint
pre-test rejects and what follows), the breakdown value of Mbar for the first post-period
effect, the robust interval at Mbar = 1, the sensitivity table (Rambachan & Roth relative
magnitudes, C-LF), the pre-test power table (Roth 2022) and both figures, plus a one-line
verdict for headline tables ("pre-trends reject; robust at Mbar <= x", ...).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .inference.honest_did import Breakdown, breakdown, event_study_coefficients, honest_did
from .inference.pretest_power import PretestPower, pretest_power

logger = logging.getLogger(__name__)

__all__ = ["PretrendReport", "pretrend_report", "study_pretrend_reports", "sensitivity_frame", "DEFAULT_REPORT_MBAR"]

DEFAULT_REPORT_MBAR = (0.0, 0.5, 1.0, 1.5, 2.0)


def _outcome_words(result: Any) -> str:
    design = getattr(result, "design", {}) or {}
    outcome = str(design.get("outcome") or (getattr(result, "info", {}) or {}).get("outcome") or "outcome")
    if outcome == "returns" and (getattr(result, "is_poisson", False)):
        exposure = design.get("exposure") or "orders"
        return "return rates (returns per order to leave)" if exposure == "orders" else f"returns per {exposure}"
    return {"return_rate": "return rates", "log_return_rate": "log return rates",
            "ihs_return_rate": "return rates (asinh)"}.get(outcome, outcome.replace("_", " "))


def _unit(result: Any) -> str:
    """'pct' (Poisson: percent change), 'pp' (linear return rate: percentage points) or 'raw'."""
    if getattr(result, "is_poisson", False):
        return "pct"
    design = getattr(result, "design", {}) or {}
    return "pp" if design.get("outcome", "return_rate") == "return_rate" else "raw"


def _effect_text(x: float, unit: str) -> str:
    if unit == "pct":
        return f"{100 * np.expm1(x):+.1f}%"
    if unit == "pp":
        return f"{100 * x:+.1f} pp"
    return f"{x:+.3g}"


def _interval_text(a: float, b: float, unit: str) -> str:
    return f"[{_effect_text(a, unit)}, {_effect_text(b, unit)}]"


@dataclass
class PretrendReport:
    """Everything the report shows about one event study's pre-trends and their consequences."""

    name: str
    paragraph: str
    verdict: str
    pretest: dict[str, float]
    breakdown: Breakdown
    interval_at_1: tuple[float, float]
    sensitivity: pd.DataFrame
    power: PretestPower
    figure: Any
    power_figure: Any
    poisson: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def pct_interval_at_1(self) -> tuple[float, float] | None:
        if not self.poisson:
            return None
        a, b = self.interval_at_1
        return float(100 * np.expm1(a)), float(100 * np.expm1(b))

    def summary(self) -> str:
        lines = [f"{self.name}: {self.verdict}", self.paragraph, "", self.sensitivity.to_string(index=False)]
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return (f"<div><strong>{html.escape(self.name)}</strong>: {html.escape(self.verdict)}"
                f"<p>{html.escape(self.paragraph)}</p>{self.sensitivity.to_html(index=False)}</div>")


def _describe_leads(beta_pre: np.ndarray, se_pre: np.ndarray, labels: Sequence[Any], words: str, unit: str) -> str:
    """Plain-words direction of the leads (the last lead first: the change into the reference year)."""
    last = float(beta_pre[-1])
    k = labels[len(beta_pre) - 1] if labels else -2
    # beta_k = (treated - control) in period k minus the same in the reference period
    moved = "fell" if last > 0 else "rose"
    size = _effect_text(last, unit)
    years = "year" if len(beta_pre) == 1 else "years"
    signif = abs(last) > 1.96 * float(se_pre[-1])
    text = (f"Before the agreement the treated corridors' {words} {moved} relative to the controls: their "
            f"difference from the controls in relative year {k} was {size} against the reference year "
            f"({'individually significant' if signif else 'not individually significant'} at 5%)")
    same = np.sign(beta_pre) == np.sign(last)
    if len(beta_pre) > 1:
        text += ("; the earlier leads point the same way" if same.all()
                 else f"; the earlier leads do not all point the same way (leads in {years} "
                      + ", ".join(str(labels[i]) for i in range(len(beta_pre))) + ")")
    return text + "."


def pretrend_report(
    result: Any,
    name: str,
    *,
    mbar: Sequence[float] = DEFAULT_REPORT_MBAR,
    target: str | Sequence[float] = "first",
    alpha: float = 0.05,
    seed: int = 0,
    breakdown_tol: float = 0.01,
) -> PretrendReport:
    """Report material for the event study ``result`` (named ``name`` in the text).

    Sensitivity: relative magnitudes, C-LF, for ``target`` (default the first post period,
    the year the agreement enters into force); breakdown Mbar to ``breakdown_tol``.
    """
    from .honest_plots import plot_honest_did, plot_pretest_power

    c = event_study_coefficients(result)
    words = _outcome_words(result)
    poisson = c.poisson
    sens = honest_did(c, restriction="relative_magnitude", m=sorted(set(map(float, mbar)) | {1.0}),
                      method="C-LF", target=target, alpha=alpha, seed=seed)
    bd = breakdown(c, restriction="relative_magnitude", method="C-LF", target=target, alpha=alpha,
                   tol=breakdown_tol, seed=seed)
    row1 = sens.loc[np.isclose(sens["m"], 1.0)].iloc[0]
    at1 = (float(row1["lb"]), float(row1["ub"]))
    pw = pretest_power(c, alpha=alpha, seed=seed)
    t = pw.test
    se = np.sqrt(np.diag(c.sigma))
    labels = list(c.labels)
    unit = _unit(result)
    parts = [_describe_leads(c.beta[:c.n_pre], se[:c.n_pre], labels, words, unit)]
    rejects = t["p_value"] < alpha
    test_txt = f"chi2({int(t['df'])}) = {t['statistic']:.1f}, p = {t['p_value']:.2g}"
    est, olb, oub = (float(sens[k].iloc[0]) for k in ("original_estimate", "original_lb", "original_ub"))
    what = "the effect in the first year in force" if target == "first" else "the targeted post-period effect"
    if rejects:
        parts.append(f"The joint test of the leads rejects parallel pre-trends ({test_txt}), so the post-period "
                     "estimates are not causal without further assumptions.")
    else:
        p80 = pw.slopes.loc[np.isclose(pw.slopes["power"], 0.8)]
        first_bias = pw.bias.loc[np.isclose(pw.bias["power"], 0.8)].iloc[0] if len(p80) else None
        caution = ""
        if first_bias is not None:
            caution = (f"; but a linear trend of {_effect_text(float(p80['slope'].iloc[0]), unit)} per year would "
                       f"still pass it one time in five and would bias {what} by "
                       f"{_effect_text(float(first_bias['bias']), unit)}")
        parts.append(f"The joint test of the leads does not reject parallel pre-trends ({test_txt}){caution}.")
    orig = _interval_text(olb, oub, unit)
    if bd.value == 0 and olb <= 0 <= oub:
        robust = (f"{what[0].upper() + what[1:]} ({_effect_text(est, unit)}, 95% CI {orig}) is not significant even "
                  "under exact parallel trends, so there is no conclusion for violations of them to overturn")
        verdict = ("pre-trends reject; " if rejects else "pre-trends not rejected; ") + "no significant effect to begin with"
    elif bd.value == 0:
        robust = (f"Allowing any post-period violation of parallel trends no larger than the largest pre-period "
                  f"change (Rambachan-Roth relative magnitudes), {what} ({_effect_text(est, unit)}, 95% CI {orig}) "
                  f"is not significant even at Mbar = 0")
        verdict = ("pre-trends reject; " if rejects else "") + "not robust to any violation"
    elif np.isfinite(bd.value):
        robust = (f"Under Rambachan-Roth relative magnitudes, {what} ({_effect_text(est, unit)}, 95% CI {orig}) "
                  f"stays significant as long as post-period violations of parallel trends are at most "
                  f"{bd.value:.2g} times the largest pre-period change (breakdown Mbar = {bd.value:.2g})")
        verdict = ("pre-trends reject; " if rejects else "pre-trends not rejected; ") + f"robust at Mbar <= {bd.value:.2g}"
    else:
        robust = (f"Under Rambachan-Roth relative magnitudes, {what} ({_effect_text(est, unit)}) stays significant "
                  f"for every Mbar up to {bd.m_max:g}")
        verdict = ("pre-trends reject; " if rejects else "pre-trends not rejected; ") + f"robust at every Mbar <= {bd.m_max:g}"
    robust += f"; at Mbar = 1 the robust 95% interval is {_interval_text(*at1, unit)}."
    parts.append(robust)
    fig = plot_honest_did(sens, scale="pct" if poisson else "log", title=f"{name}: sensitivity to violations of parallel trends")
    pfig = plot_pretest_power(pw, title=f"{name}: pre-test power ({test_txt})")
    return PretrendReport(
        name=name, paragraph=" ".join(parts), verdict=verdict, pretest=dict(t), breakdown=bd, interval_at_1=at1,
        sensitivity=sens, power=pw, figure=fig, power_figure=pfig, poisson=poisson, notes=list(c.notes),
    )


def study_pretrend_reports(
    run: Any,
    model: str | None = None,
    *,
    mbar: Sequence[float] = DEFAULT_REPORT_MBAR,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, PretrendReport | str]:
    """:func:`pretrend_report` for each event study of a :class:`~returnstudy.runner.StudyRun`.

    ``model``: one event-study model's name (``ValueError`` naming the choices otherwise).
    Values are reports, or the reason (str) an event study cannot be analysed.
    """
    studies = {m.name: m for m in run.event_studies()}
    if model is not None:
        if model not in studies:
            raise ValueError(f"model {model!r} is not an event study of spec {run.name!r}; choices: {sorted(studies)}")
        studies = {model: studies[model]}
    out: dict[str, PretrendReport | str] = {}
    for name, m in studies.items():
        try:
            out[name] = pretrend_report(m.result, name, mbar=mbar, alpha=alpha, seed=seed)
        except ValueError as exc:
            logger.warning("event study %s: no sensitivity analysis: %s", name, exc)
            out[name] = str(exc)
    return out


def sensitivity_frame(reports: dict[str, PretrendReport | str]) -> pd.DataFrame:
    """One tidy table: the sensitivity rows of every report with ``model``, pre-test and breakdown columns."""
    frames = []
    for name, rep in reports.items():
        if isinstance(rep, str):
            frames.append(pd.DataFrame([{"model": name, "error": rep}]))
            continue
        f = rep.sensitivity.copy()
        f.insert(0, "model", name)
        f["pretest_statistic"] = rep.pretest["statistic"]
        f["pretest_df"] = int(rep.pretest["df"])
        f["pretest_p_value"] = rep.pretest["p_value"]
        f["breakdown_mbar"] = rep.breakdown.value
        f["breakdown_tol"] = rep.breakdown.tol
        f["verdict"] = rep.verdict
        frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
