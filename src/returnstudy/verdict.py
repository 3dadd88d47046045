"""The rule that compares an estimate with the WODC study's published headline.

One rule, used by the report's headline table and by ``estimate``'s table, so that both
always say the same thing about the same numbers. Effects are in percent: the percent
change in returns per order for Poisson models (100 (exp(b) - 1)), and 100 x the
coefficient for linear models of the return rate (percentage points of the rate).
"""

from __future__ import annotations

import math


__all__ = ["STUDY_HEADLINE", "NOT_IDENTIFIED", "verdict"]

#: The study's published conclusion per treatment type: (wording, effect band in percent or None).
STUDY_HEADLINE: dict[str, tuple[str, tuple[float, float] | None]] = {
    "eu_agreement": ("no demonstrable effect", None),
    "eu_nonbinding": ("no demonstrable effect", None),
    "bilateral_binding": ("+5% to +10%", (5.0, 10.0)),
    # the study's binding bilateral category included implementing protocols to EU agreements
    "bilateral_protocol": ("+5% to +10%", (5.0, 10.0)),
    "bilateral_nonbinding": ("no demonstrable effect", None),
}

NOT_IDENTIFIED = "not identified in this sample"


def verdict(
    treatment: str,
    ci_low: float,
    ci_high: float,
    *,
    estimate: float = 0.0,
    switching_citizenships: int | None = None,
    min_switching_citizenships: int = 5,
) -> str:
    """Verdict on the study's headline for ``treatment`` given a 95% CI in percent.

    In order of precedence:

    * "not identified in this sample": no estimate (NaN estimate or interval);
    * "not reliably identified": fewer than ``min_switching_citizenships`` citizenships (the
      clusters) switch on inside the window, so cluster-robust intervals are not trustworthy;
    * for "no demonstrable effect": "consistent" if the CI includes 0, else "not consistent";
    * for "+5% to +10%": "not consistent" if the CI excludes that range, "inconclusive" if it
      includes both 0 and part of the range, "consistent" if it overlaps the range and excludes 0.
    """
    if treatment not in STUDY_HEADLINE:
        raise KeyError(f"no published headline for treatment {treatment!r}; treatments: {list(STUDY_HEADLINE)}")
    if any(not math.isfinite(float(x)) for x in (estimate, ci_low, ci_high)):
        return NOT_IDENTIFIED
    lo, hi = float(ci_low), float(ci_high)
    if switching_citizenships is not None and switching_citizenships < min_switching_citizenships:
        return f"not reliably identified: {switching_citizenships} citizenship(s) switch on in the window"
    band = STUDY_HEADLINE[treatment][1]
    if band is None:
        if lo <= 0 <= hi:
            return "consistent (CI includes 0)"
        return "not consistent: positive" if lo > 0 else "not consistent: negative"
    if hi < band[0] or lo > band[1]:
        return f"not consistent (CI excludes +{band[0]:g}% to +{band[1]:g}%)"
    if lo <= 0:
        return f"inconclusive (CI includes 0 and +{band[0]:g}% to +{band[1]:g}%)"
    return f"consistent (CI overlaps +{band[0]:g}% to +{band[1]:g}%, excludes 0)"
