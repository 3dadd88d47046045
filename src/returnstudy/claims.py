"""The ministry's policy response to the WODC study, claim by claim, against the data.

:func:`policy_claims` returns one row per test: the claim (quoted in English), what was
tested, the estimate with its interval, a verdict in words and why, and the caveat. Verdicts
are ``supported``, ``not supported``, ``inconclusive`` (the interval includes both readings)
or ``cannot be tested with these data`` (with the reason). Associations are labelled as
associations, never as effects.

1. "Comparing member states' data is hardly possible": Part 1 diagnostics per reporting
   country, a fixed-effect decomposition of the variance of corridor return rates into a
   reporting-country and a citizenship level, and the headline model without the countries
   that fail a diagnostic.
2. "Failed return is often not a lack of cooperation but new procedures or absconding":
   within-corridor associations of returns per order with first-time asylum applications
   and with persons found illegally present per order.
3. "An agreement confirms cooperation that already exists": pre-agreement levels and trends
   of later-treated versus never-treated corridors, and event-study pre-trend tests.
4. "The bilateral track is effective (e.g. Morocco)": Moroccan corridors around the
   bilateral instruments of the tables, on the main and the proxy design.
5. "EU cooperation could be stronger with leverage": visa facilitation, liberalisation and
   Article 25a measures on the designs whose years cover them.
"""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats
from scipy.sparse.linalg import lsqr
from scipy.sparse.csgraph import connected_components

from returnstudy.models._fe import FixedEffects, TwoWayProjection
from returnstudy.provenance import frozen
from returnstudy.results import vintage_label

log = logging.getLogger(__name__)

__all__ = ["CLAIMS", "ClaimsResult", "policy_claims", "variance_decomposition", "visa_treatments", "claim_verdict"]

CLAIMS: dict[str, str] = {
    "1": "Comparing member states' data is hardly possible (data quality, legal systems).",
    "2": "Failed return is not always a lack of cooperation: a significant part is not effected because new procedures "
         "start or people abscond and cannot be detained.",
    "3": "An agreement confirms cooperation that already exists.",
    "4": "The bilateral track is effective (e.g. Morocco).",
    "5": "EU cooperation could be stronger with leverage (visa measures).",
}
COLUMNS = ["claim_id", "claim", "test", "estimate", "ci_low", "ci_high", "unit", "verdict", "reason", "caveat",
           "n_obs", "years", "vintage"]
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, UNTESTABLE = "supported", "not supported", "inconclusive", "cannot be tested with these data"
VISA_TYPES = ("visa_liberalisation", "visa_facilitation", "art25a_restrictive", "art25a_favourable")
TREATMENT_TYPES = ("eu_agreement", "eu_nonbinding", "bilateral_binding", "bilateral_nonbinding")


@dataclass(repr=False)
class ClaimsResult:
    """One row per test of the policy response's claims (``table``), with the data behind them."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    vintage: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        lines = ["The policy response's claims, tested"]
        for r in self.table.itertuples(index=False):
            est = "" if not np.isfinite(r.estimate) else f"{r.estimate:+.3g} [{r.ci_low:+.3g}, {r.ci_high:+.3g}] {r.unit}"
            lines.append(f"[{r.claim_id}] {r.verdict}: {r.test}; {est} -- {r.reason} (n={r.n_obs}, years {r.years})")
        lines += [f"Note: {n}" for n in self.notes]
        lines.append("Data vintage: " + "; ".join(f"{k}: {v}" for k, v in self.vintage.items()))
        return "\n".join(lines)

    def one_line_per_claim(self) -> list[str]:
        """The closing note: what each claim's tests found, one line per claim."""
        out = []
        for cid, g in self.table.groupby(self.table["claim_id"].str[0], sort=True):
            verdicts = "; ".join(f"{r.claim_id} {r.verdict} ({r.reason})" for r in g.itertuples(index=False))
            out.append(f"Claim {cid} ({CLAIMS[cid]}): {verdicts}")
        return out

    def __repr__(self) -> str:
        counts = self.table["verdict"].str.split(":").str[0].value_counts().to_dict()
        return f"<ClaimsResult: {len(self.table)} tests of {self.table['claim_id'].str[0].nunique()} claims {counts}; .summary()>"

    def _repr_html_(self) -> str:
        return "<div><strong>Policy claims, tested</strong>" + self.table.drop(columns=["vintage"]).to_html(index=False) + \
            "<p>" + html.escape("Data vintage: " + "; ".join(f"{k}: {v}" for k, v in self.vintage.items())) + "</p></div>"


# --------------------------------------------------------------------------- building blocks


def claim_verdict(ci_low: float, ci_high: float, predicted_sign: int) -> tuple[str, str]:
    """Verdict from an interval and the sign the claim predicts (+1 or -1): (verdict, reason)."""
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return UNTESTABLE, "no estimate (not identified in this sample)"
    word = "positive" if predicted_sign > 0 else "negative"
    if (predicted_sign > 0 and ci_low > 0) or (predicted_sign < 0 and ci_high < 0):
        return SUPPORTED, f"the interval is {word}, as the claim predicts"
    if (predicted_sign > 0 and ci_high < 0) or (predicted_sign < 0 and ci_low > 0):
        return NOT_SUPPORTED, f"the interval excludes 0 with the opposite sign to the {word} one the claim predicts"
    return INCONCLUSIVE, "the interval includes 0"


def _two_way_shares(y: np.ndarray, g: np.ndarray, c: np.ndarray) -> dict[str, float]:
    gi, gcodes = pd.factorize(g)
    ci, ccodes = pd.factorize(c)
    n = len(y)
    X = sparse.hstack([
        sparse.csr_matrix((np.ones(n), (np.arange(n), gi)), shape=(n, len(gcodes))),
        sparse.csr_matrix((np.ones(n), (np.arange(n), ci)), shape=(n, len(ccodes))),
    ]).tocsr()
    yc = y - y.mean()
    exact = TwoWayProjection.for_(FixedEffects([gi, ci], names=["geo", "citizen"]))
    # connected (every corridor linked through shared reporters or citizenships): the effects are
    # unique up to one constant, which centring removes, so the exact projection gives them;
    # otherwise the minimum-norm least-squares split
    if exact is not None and connected_components(X.T @ X, directed=False)[0] == 1:
        a_lev, b_lev = exact.effects(yc)
        a, b = a_lev[gi], b_lev[ci]
    else:
        coef = lsqr(X, yc, atol=1e-12, btol=1e-12, iter_lim=20000)[0]
        a = coef[: len(gcodes)][gi]
        b = coef[len(gcodes):][ci]
    a, b = a - a.mean(), b - b.mean()
    e = yc - a - b
    v = float(np.var(yc))
    return {"geo": float(np.var(a)) / v, "citizen": float(np.var(b)) / v,
            "covariance": 2 * float(np.cov(a, b, bias=True)[0, 1]) / v, "residual": float(np.var(e)) / v}


def variance_decomposition(
    corridors: pd.DataFrame, value: str = "log_rate", *, reps: int = 199, seed: int = 20221025, alpha: float = 0.05
) -> pd.DataFrame:
    """Share of the variance of a corridor-level ``value`` at reporting-country and citizenship level.

    Two-way fixed-effect fit ``y_gc = mu + a_g + b_c + e_gc`` (least squares, unbalanced grid);
    ``var(y) = var(a) + var(b) + 2 cov(a, b) + var(e)`` over corridors, each term reported as a
    share. Intervals: percentile bootstrap over citizenships (clusters drawn with replacement,
    a drawn twice counts as two; ``seed`` makes it reproducible).
    Returns one row per component: ``share``, ``ci_low``, ``ci_high``, ``n_corridors``,
    ``n_geo``, ``n_citizen``.
    """
    d = corridors.dropna(subset=[value])
    if len(d) < 3:
        raise ValueError(f"variance_decomposition: {len(d)} corridors with a finite {value!r}; need at least 3")
    point = _two_way_shares(d[value].to_numpy(float), d["geo"].to_numpy(), d["citizen"].to_numpy())
    rng = np.random.default_rng(seed)
    # rows of each citizenship (in sample order); a citizenship drawn k times enters as k clusters
    rows_of = list(d.groupby("citizen", sort=True).indices.values())
    y_all, g_all = d[value].to_numpy(float), d["geo"].to_numpy()
    draws = []
    for _ in range(reps):
        pick = rng.integers(0, len(rows_of), len(rows_of))
        idx = np.concatenate([rows_of[k] for k in pick])
        clusters = np.repeat(np.arange(len(pick)), [len(rows_of[k]) for k in pick])
        geo = g_all[idx]
        if pd.Series(geo).nunique() < 2 or len(pick) < 2:
            continue
        draws.append(_two_way_shares(y_all[idx], geo, clusters))
    rows = []
    for comp in ("geo", "citizen", "covariance", "residual"):
        vals = np.array([dr[comp] for dr in draws]) if draws else np.array([np.nan])
        lo, hi = np.nanquantile(vals, [alpha / 2, 1 - alpha / 2]) if draws else (np.nan, np.nan)
        rows.append({"component": comp, "share": point[comp], "ci_low": float(lo), "ci_high": float(hi), "reps": len(draws),
                     "n_corridors": int(len(d)), "n_geo": int(d["geo"].nunique()), "n_citizen": int(d["citizen"].nunique())})
    return pd.DataFrame(rows)


def visa_treatments(panel: pd.DataFrame, visa_events: pd.DataFrame) -> pd.DataFrame:
    """Add 0/1 columns per visa event type: 1 from the calendar year of the citizenship's first event.

    Applied to every EU+ reporting country's corridor of that citizenship (visa policy is set
    for the Schengen area; Ireland and the United Kingdom are not in it, which this coding
    ignores). ``<type>_cohort`` holds the first year.
    """
    out = panel.copy()
    ev = visa_events.dropna(subset=["date"]).copy()
    ev["year"] = pd.to_datetime(ev["date"]).dt.year
    for t in VISA_TYPES:
        first = ev[ev["event_type"] == t].groupby("citizen")["year"].min()
        coh = out["citizen"].map(first)
        out[f"{t}_cohort"] = coh.astype("Int64")
        out[t] = (out["year"] >= coh).fillna(False).astype(float)
    return out


def _row(cid: str, test: str, estimate: float = np.nan, lo: float = np.nan, hi: float = np.nan, unit: str = "",
         verdict: str = UNTESTABLE, reason: str = "", caveat: str = "", n_obs: int = 0, years: str = "", vintage: str = "") -> dict[str, Any]:
    return {"claim_id": cid, "claim": CLAIMS[cid[0]], "test": test, "estimate": estimate, "ci_low": lo, "ci_high": hi, "unit": unit,
            "verdict": verdict, "reason": reason, "caveat": caveat, "n_obs": int(n_obs), "years": years, "vintage": vintage}


def _years(df: pd.DataFrame) -> str:
    return f"{int(df['year'].min())}-{int(df['year'].max())}" if len(df) else "none"


def _headline_params(spec: Any) -> tuple[str, str, dict[str, Any]]:
    from returnstudy.runner import RESERVED_MODEL_KEYS

    name = str(spec.report.get("headline_model") or spec.models[0]["name"])
    for m in spec.models:
        if m.get("name") == name:
            return name, str(m["estimator"]), {k: v for k, v in m.items() if k not in RESERVED_MODEL_KEYS}
    raise ValueError(f"spec {spec.study.name}: headline_model {name!r} is not among its [[models]]")


def _ppml_term(res: Any, term: str) -> tuple[float, float, float, float]:
    if term not in res.table.index:
        return (np.nan,) * 4
    r = res.table.loc[term]
    return float(r["estimate"]), float(r["ci_low"]), float(r["ci_high"]), float(r["p_value"])


def _switching(sample: pd.DataFrame, treatment: str) -> tuple[int, int]:
    from returnstudy.identification import switching_units

    return switching_units(sample, treatment)


# --------------------------------------------------------------------------- the claims


def _claim1(sample: pd.DataFrame, quality: Any, spec: Any, vint: str, reps: int, seed: int, alpha: float,
            details: dict[str, Any]) -> list[dict[str, Any]]:
    from returnstudy.runner import estimator

    rows = []
    v = quality.verdicts
    failing = v.loc[v["n_fail"] > 0, "geo"].tolist()
    by_check = {k: v.loc[v[k], "geo"].tolist() for k in ("coverage", "all_zero", "rounding", "returns_exceed_orders", "break",
                                                         "total_gap", "thrd_exceeds_total") if k in v}
    share_fail = len(failing) / len(v) if len(v) else np.nan
    text = "; ".join(f"{k}: {' '.join(g) or '-'}" for k, g in by_check.items())
    rows.append(_row("1a", "Part 1 diagnostics: reporting countries failing at least one check", share_fail, np.nan, np.nan,
                     "share of reporting countries", SUPPORTED if share_fail >= 1 / 3 else NOT_SUPPORTED,
                     f"{len(failing)} of {len(v)} countries fail a check ({text}); read as supported when at least a third fail",
                     "the thresholds are the spec's [quality] settings; failing a check is a warning sign, not proof of non-comparability",
                     len(v), f"{int(quality.by_geo_year['year'].min())}-{int(quality.by_geo_year['year'].max())}", vint))
    corr = sample.groupby(["corridor", "geo", "citizen"], as_index=False)[["returns", "orders"]].sum()
    corr = corr[(corr["returns"] > 0) & (corr["orders"] > 0)]
    corr["log_rate"] = np.log(corr["returns"] / corr["orders"])
    dec = variance_decomposition(corr, reps=reps, seed=seed, alpha=alpha)
    details["variance_decomposition"] = dec
    g, c = dec.set_index("component").loc["geo"], dec.set_index("component").loc["citizen"]
    if g["ci_low"] > c["ci_high"]:
        verdict, reason = SUPPORTED, "the reporting-country level carries more of the variance than the citizenship level"
    elif g["ci_high"] < 0.1:
        verdict, reason = NOT_SUPPORTED, "the reporting-country level carries less than 10% of the variance"
    else:
        verdict, reason = SUPPORTED if g["ci_low"] > 0.1 else INCONCLUSIVE, (
            f"reporting-country share {g['share']:.2f} vs citizenship share {c['share']:.2f} "
            f"(covariance {dec.set_index('component').at['covariance', 'share']:+.2f}, residual {dec.set_index('component').at['residual', 'share']:.2f})")
    rows.append(_row("1b", "variance of corridor log return rates (log of summed returns / summed orders) at reporting-country "
                     "vs citizenship level, two-way fixed effects; share of the reporting-country level", g["share"], g["ci_low"],
                     g["ci_high"], "variance share (95% citizenship bootstrap)", verdict, reason,
                     f"corridors with returns > 0 only ({int(g['n_corridors'])}); a large country level is what corridor fixed effects "
                     "remove, so it argues against cross-country comparison of levels, not against within-corridor designs",
                     int(g["n_corridors"]), _years(sample), vint))
    name, est_name, params = _headline_params(spec)
    fn = estimator(est_name)
    treat = params.get("treatments", params.get("treatment"))
    treat = [treat] if isinstance(treat, str) else list(treat or [])
    targets = [x for x in treat if x in ("bilateral_binding", "eu_agreement")]
    try:
        full = fn(sample, **params)
    except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
        return rows + [_row("1c", f"headline model {name} with and without failing countries", reason=f"headline model failed: {exc}",
                            n_obs=len(sample), years=_years(sample), vintage=vint)]
    leave_out = {"any check": failing, **{k: g for k, g in by_check.items() if g}}
    detail = []
    for label, geos in leave_out.items():
        keep = sample[~sample["geo"].isin(geos)]
        try:
            sub = fn(keep, **params)
        except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
            for t in targets:
                detail.append({"left_out": label, "countries": " ".join(geos), "treatment": t, "estimate": np.nan, "ci_low": np.nan,
                               "ci_high": np.nan, "unit": "", "n_obs": len(keep), "switching_citizenships": 0, "error": str(exc)})
            continue
        for t in targets:
            est, lo, hi, unit = _effect(sub, t)
            detail.append({"left_out": label, "countries": " ".join(geos), "treatment": t, "estimate": est, "ci_low": lo,
                           "ci_high": hi, "unit": unit, "n_obs": int(sub.info.get("n_obs", 0)),
                           "switching_citizenships": _switching(keep, t)[1], "error": ""})
    det = pd.DataFrame(detail)
    details["headline_without_failing"] = det
    per = f"{params.get('outcome', 'returns')} per {params.get('exposure', 'orders')}"
    det["unit"] = det["unit"].str.replace("returns per order", per, regex=False)
    for t in targets:
        e_full, lo_full, hi_full, unit = _effect(full, t)
        unit = unit.replace("returns per order", per)
        d = det[det["treatment"] == t].set_index("left_out")
        e_sub, lo, hi = (d.at["any check", c] for c in ("estimate", "ci_low", "ci_high"))
        singles = d.drop(index="any check")["estimate"].dropna()
        spread = (f"; leaving out one check's failing countries at a time: {singles.min():+.1f} to {singles.max():+.1f} {unit} "
                  f"({len(singles)} checks)") if len(singles) else ""
        if not math.isfinite(e_sub):
            verdict, what = UNTESTABLE, "not identified without those countries"
        elif lo <= e_full <= hi:
            verdict, what = NOT_SUPPORTED, "the all-country estimate lies inside the reduced sample's interval"
        else:
            verdict, what = SUPPORTED, "the all-country estimate lies outside the reduced sample's interval"
        reason = (f"{what}; all countries: {e_full:+.1f} [{lo_full:+.1f}, {hi_full:+.1f}] {unit}; without the {len(failing)} failing "
                  f"countries: {e_sub:+.1f} ({int(d.at['any check', 'switching_citizenships'])} citizenships switch on){spread}")
        rows.append(_row("1c", f"headline model {name} ({est_name}) without the {len(failing)} countries failing a Part 1 diagnostic: {t}",
                         e_sub, lo, hi, unit, verdict, reason,
                         "countries failing a check carry much of the identifying variation; a change can reflect lost power rather "
                         "than bad data", int(d.at["any check", "n_obs"]), _years(sample[~sample["geo"].isin(failing)]), vint))
    return rows


def _effect(res: Any, term: str) -> tuple[float, float, float, str]:
    """(estimate, ci_low, ci_high, unit): percent change for Poisson models, percentage points (100 b) for linear ones."""
    if term not in res.table.index:
        return np.nan, np.nan, np.nan, ""
    r = res.table.loc[term]
    if "pct_effect" in r.index and pd.notna(r["pct_effect"]):
        return float(r["pct_effect"]), float(r["pct_ci_low"]), float(r["pct_ci_high"]), "% change in returns per order"
    return 100 * float(r["estimate"]), 100 * float(r["ci_low"]), 100 * float(r["ci_high"]), "x100 coefficient (pp for the rate)"


def _claim2(sample: pd.DataFrame, asylum: pd.DataFrame | None, vint: str, alpha: float, why: str) -> list[dict[str, Any]]:
    from returnstudy.models.ppml import ppml

    caveat = ("association within corridors over time (corridor and year effects), not an effect: asylum applicants of a year are "
              "not the persons ordered to leave, and both series respond to the same shocks")
    if asylum is None:
        return [_row("2a", "returns per order vs first-time asylum applications", reason=why, caveat=caveat, vintage=vint)]
    from returnstudy.covariates import merge_asylum

    s = merge_asylum(sample, asylum)  # the covariates extract lists no zeros: absent cells of a reported geo-year are 0
    fill = s["asylum_first_time_imputed_zero"]
    s["log_asylum"] = np.log1p(s["asylum_first_time"])
    s["log_found_per_order"] = np.log((1 + s["found_illegal"]) / s["orders"].where(s["orders"] > 0))
    s = s.dropna(subset=["log_asylum", "log_found_per_order"])
    try:
        res = ppml(s, treatments=["log_asylum", "log_found_per_order"], outcome="returns", exposure="orders",
                   fe=("corridor", "year"), cluster="citizen", alpha=alpha)
    except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
        return [_row("2a", "returns per order vs asylum applications and found illegally present per order",
                     reason=f"model not estimable: {exc}", caveat=caveat, n_obs=len(s), years=_years(s), vintage=vint)]
    rows = []
    n = int(res.info.get("n_obs", 0))
    for cid, term, what in (("2a", "log_asylum", "first-time asylum applications of the same citizenship in the same country (new procedures)"),
                            ("2b", "log_found_per_order", "persons found illegally present per order to leave (non-departure, absconding)")):
        est, lo, hi, p = _ppml_term(res, term)
        verdict, reason = claim_verdict(lo, hi, -1)
        rows.append(_row(cid, f"association of returns per order with log {what}; PPML, orders as exposure, corridor and year "
                         "effects, clustered by citizenship", est, lo, hi, "elasticity (association)", verdict,
                         f"{reason} (p = {p:.3f}; {int(fill.sum())} absent asylum cells set to 0)", caveat, n, _years(s), vint))
    return rows


def _claim3(sample: pd.DataFrame, vint: str, alpha: float) -> list[dict[str, Any]]:
    from returnstudy.models.event_study import event_study
    from returnstudy.models.ppml import ppml

    caveat = ("later-treated corridors are compared with never-treated ones before adoption; composition differs (citizenship "
              "and year effects only for the level), and the adoption years depend on the treatment tables' coverage")
    rows = []
    from returnstudy import treatments

    types = [t for t in getattr(treatments, "TREATMENT_TYPES", TREATMENT_TYPES) if f"{t}_cohort" in sample]
    coh = pd.concat([pd.to_numeric(sample[f"{t}_cohort"], errors="coerce") for t in types], axis=1).min(axis=1)
    s = sample.assign(first_adoption=coh)
    y1 = int(s["year"].max())
    never = s["first_adoption"].isna()
    later = s["first_adoption"] > s["year"]  # before its first agreement (any type)
    pre = s[never | later].copy()
    pre["later_treated"] = (~pre["first_adoption"].isna()).astype(float)
    pre["later_trend"] = pre["later_treated"] * (pre["year"] - pre["year"].min())
    n_later = int(pre.loc[pre["later_treated"] > 0, "corridor"].nunique())
    n_never = int(pre.loc[pre["later_treated"] == 0, "corridor"].nunique())
    for cid, terms, fe, what, unit in (
        ("3a", ["later_treated"], ("citizen", "year"), "level of returns per order before the first agreement: later-treated vs "
         "never-treated corridors (PPML, orders as exposure, citizenship and year effects)", "log rate ratio"),
        ("3b", ["later_trend"], ("corridor", "year"), "yearly trend of returns per order before the first agreement: later-treated "
         "vs never-treated corridors (PPML, corridor and year effects)", "difference in yearly log change"),
    ):
        try:
            res = ppml(pre, treatments=terms, outcome="returns", exposure="orders", fe=fe, cluster="citizen", alpha=alpha)
            est, lo, hi, p = _ppml_term(res, terms[0])
            verdict, reason = claim_verdict(lo, hi, +1)
            reason = f"{reason} (p = {p:.3f}; {n_later} later-treated, {n_never} never-treated corridors; adoption after {y1}: pre-period only)"
            n = int(res.info.get("n_obs", 0))
        except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
            est = lo = hi = np.nan
            verdict, reason, n = UNTESTABLE, f"model not estimable: {exc}", len(pre)
        rows.append(_row(cid, what, est, lo, hi, unit, verdict, reason, caveat, n, _years(pre), vint))
    for t in ("bilateral_binding", "eu_agreement"):
        try:
            es = event_study(sample, treatment=t, window=(-3, 3), model="ppml", control="notyet", cluster="citizen", alpha=alpha)
            wt = es.info.get("pretrend_test")
            if wt is None or isinstance(wt, str):
                raise ValueError(str(wt or "no leads"))
        except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
            rows.append(_row("3c", f"event-study pre-trend test, {t}", reason=f"not available: {exc}", n_obs=len(sample),
                             years=_years(sample), vintage=vint))
            continue
        leads = [k for k in es.params.index if k < 0]
        w = np.full(len(leads), 1.0 / len(leads))
        mean_lead = float(w @ es.params[leads].to_numpy())
        se = float(np.sqrt(w @ es.vcov.loc[leads, leads].to_numpy() @ w))
        zc = float(stats.norm.ppf(1 - alpha / 2))
        p = float(wt.p_value)
        if p >= alpha:
            verdict = INCONCLUSIVE
            reason = f"leads {leads} not jointly different from 0 (p = {p:.3f}); absence of evidence, with low power in a short window"
        elif mean_lead < 0:
            verdict = SUPPORTED
            reason = (f"leads jointly different from 0 (p = {p:.3f}) and below the reference year: returns per order were "
                      "already rising towards adoption")
        else:
            verdict = NOT_SUPPORTED
            reason = (f"leads jointly different from 0 (p = {p:.3f}) but above the reference year: returns per order were "
                      "falling before adoption, so agreements followed weaker, not existing, cooperation")
        reason += f"; Wald chi2({wt.df_num}) = {wt.statistic:.2f}" + _breakdown_text(es)
        rows.append(_row("3c", f"event-study leads, {t} (PPML, window -3..3, reference year -1, not-yet-treated controls): "
                         "mean lead coefficient and joint pre-trend test", mean_lead, mean_lead - zc * se, mean_lead + zc * se,
                         "log rate ratio before adoption vs year -1", verdict, reason,
                         "a pre-trend also arises from anticipation or from the treatment tables' dating; the event study has at most "
                         "3 leads in 2012-2016", int(es.info.get("n_obs", 0)), _years(sample), vint))
    return rows


def _breakdown_text(es: Any) -> str:
    """The honest-DiD breakdown value of an event study (relative magnitudes), when that module is available."""
    try:
        from returnstudy.inference.honest_did import breakdown
    except ImportError:
        return "; honest-DiD sensitivity not available in this installation"
    try:
        return f"; honest-DiD (relative magnitudes): {breakdown(es).summary()}"
    except (ValueError, TypeError, KeyError, np.linalg.LinAlgError) as exc:
        return f"; honest-DiD sensitivity not computed ({exc})"


def _before_after(ma: pd.DataFrame, t: str, num: str, den: str) -> str:
    """Per switching corridor: summed numerator / summed exposure before and from the switch-on year (descriptive)."""
    y0, y1 = int(ma["year"].min()), int(ma["year"].max())
    coh = pd.to_numeric(ma[f"{t}_cohort"], errors="coerce")
    parts = []
    for corr, g in ma[coh.between(y0 + 1, y1)].groupby("corridor", sort=True):
        c = int(pd.to_numeric(g[f"{t}_cohort"]).iloc[0])
        pre, post = g[g["year"] < c], g[g["year"] >= c]
        rate = lambda d: d[num].sum() / d[den].sum() if d[den].sum() > 0 else np.nan  # noqa: E731
        parts.append(f"{corr} from {c}: {rate(pre):.2f} before, {rate(post):.2f} after")
    return "; ".join(parts)


def _claim4(designs: dict[str, tuple[pd.DataFrame, Any]], instruments: pd.DataFrame | None, vint: str, alpha: float) -> list[dict[str, Any]]:
    from returnstudy.models.ppml import ppml

    rows = []
    for k, (design, (sample, params)) in enumerate(designs.items()):
        cid = f"4{'ab'[k]}"
        ma = sample[sample["citizen"] == "MA"]
        if ma.empty:
            rows.append(_row(cid, f"Moroccan corridors, {design} design", reason="no Moroccan corridor in the sample", vintage=vint))
            continue
        y0, y1 = int(ma["year"].min()), int(ma["year"].max())
        listed = "no bilateral instrument with Morocco in the treatment tables"
        if instruments is not None and len(instruments):
            inside = instruments[instruments["year"].between(y0 + 1, y1).fillna(False).astype(bool)]
            outside = instruments.drop(index=inside.index)
            fmt = lambda d: ", ".join(f"{r.instrument_id} ({r.kind}, {'no date' if pd.isna(r.year) else int(r.year)})"  # noqa: E731
                                      for r in d.itertuples(index=False)) or "none"
            listed = f"instruments dated inside {y0 + 1}-{y1}: {fmt(inside)}; outside: {fmt(outside)}"
        caveat = ("few switching corridors: the interval rests on one or two reporting countries' change; treatment coding as in "
                  f"the spec (start rule, binding status); {listed}")
        num, den = params["outcome"], params["exposure"]
        for t in ("bilateral_binding", "bilateral_nonbinding"):
            n_corr, _ = _switching(ma, t)
            test = (f"Moroccan corridors ({ma['geo'].nunique()} reporting countries), {design} design: {t} "
                    f"(PPML, {num} with {den} as exposure, corridor and year effects, clustered by reporting country)")
            if n_corr == 0:
                rows.append(_row(cid, test, verdict=UNTESTABLE, reason=f"no Moroccan corridor's {t} switches on inside {y0}-{y1}",
                                 caveat=caveat, n_obs=len(ma), years=_years(ma), vintage=vint))
                continue
            try:
                res = ppml(ma, treatments=[t], outcome=num, exposure=den, fe=("corridor", "year"), cluster="geo", alpha=alpha)
            except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
                rows.append(_row(cid, test, reason=f"model not estimable: {exc}", caveat=caveat, n_obs=len(ma), years=_years(ma), vintage=vint))
                continue
            est, lo, hi, unit = _effect(res, t)
            verdict, reason = claim_verdict(lo, hi, +1)
            p = float(res.table.loc[t, "p_value"]) if t in res.table.index else np.nan
            rows.append(_row(cid, test, est, lo, hi, unit.replace("returns per order", f"{num} per {den}"), verdict,
                             f"{reason} (p = {p:.3f}); {n_corr} corridor(s) switch on: {_before_after(ma, t, num, den)}",
                             caveat, int(res.info.get("n_obs", 0)), _years(ma), vint))
    return rows


def _claim5(designs: dict[str, tuple[pd.DataFrame, Any]], visa: pd.DataFrame | None, vint: str, alpha: float, minimum: int,
            why: str) -> list[dict[str, Any]]:
    from returnstudy.models.ppml import ppml

    if visa is None:
        return [_row("5", "visa measures as leverage", reason=why, vintage=vint)]
    rows = []
    for k, (design, (sample, params)) in enumerate(designs.items()):
        s = visa_treatments(sample, visa)
        y0, y1 = int(s["year"].min()), int(s["year"].max())
        ev = visa.dropna(subset=["date"]).assign(year=lambda d: pd.to_datetime(d["date"]).dt.year)
        in_sample = set(s["citizen"])
        outside = ev[~ev["year"].between(y0 + 1, y1) | ~ev["citizen"].isin(in_sample)]
        out_txt = ", ".join(f"{r.event_id} {int(r.year)}" for r in outside.itertuples(index=False))
        usable = []
        for t in VISA_TYPES:
            _, n_cit = _switching(s, t)
            if n_cit > 0:
                usable.append((t, n_cit))
        if not usable:
            rows.append(_row(f"5{'ab'[k]}", f"visa measures, {design} design", reason=f"no visa event switches on inside {y0}-{y1}; outside: {out_txt}",
                             n_obs=len(s), years=f"{y0}-{y1}", vintage=vint))
            continue
        terms = [t for t, _ in usable]
        try:
            res = ppml(s, treatments=terms, outcome=params["outcome"], exposure=params["exposure"], fe=("corridor", "year"),
                       cluster="citizen", alpha=alpha)
        except (ValueError, np.linalg.LinAlgError, KeyError) as exc:
            rows.append(_row(f"5{'ab'[k]}", f"visa measures, {design} design", reason=f"model not estimable: {exc}", n_obs=len(s),
                             years=f"{y0}-{y1}", vintage=vint))
            continue
        for t, n_cit in usable:
            est, lo, hi, unit = _effect(res, t)
            pct = [est, lo, hi]
            if n_cit < minimum:
                verdict = UNTESTABLE
                reason = f"only {n_cit} citizenship(s) switch on inside {y0}-{y1} (fewer than {minimum} clusters); estimate shown for completeness"
            else:
                verdict, reason = claim_verdict(lo, hi, +1)
            rows.append(_row(f"5{'ab'[k]}", f"{t} on {params['outcome']} per {params['exposure']}, {design} design (PPML, corridor and "
                             "year effects, clustered by citizenship; all EU+ corridors of the citizenship from the event's calendar year)",
                             *pct, unit.replace("returns per order", f"{params['outcome']} per {params['exposure']}"), verdict,
                             f"{reason}; events outside the design's years: {out_txt or 'none'}",
                             "visa events coincide with other EU policy towards the same country (often a readmission agreement)",
                             int(res.info.get("n_obs", 0)), f"{y0}-{y1}", vint))
    return rows


def policy_claims(
    spec: Any = None,
    data_dir: str | Path | None = None,
    *,
    proxy_spec: Any = "third_country_2014_2023",
    covariates_dir: str | Path | None = None,
    reps: int = 199,
    seed: int = 20221025,
    alpha: float = 0.05,
) -> ClaimsResult:
    """Test the policy response's claims on the data of ``spec`` (default: the shipped ``wodc`` spec).

    ``data_dir`` overrides the spec's data directory; ``proxy_spec`` is the second design
    (returns to third countries per person found illegally present; None: main design only);
    ``covariates_dir`` (default ``<data_dir>/../covariates``) holds the asylum applications.
    ``reps`` and ``seed``: the variance decomposition's citizenship bootstrap.
    Returns a :class:`ClaimsResult`; its ``table`` has one row per test.
    """
    from returnstudy.covariates import default_covariates_dir, read_asylum_applications
    from returnstudy.filters import apply_filters
    from returnstudy.instruments import corridor_instruments, load_instrument_tables
    from returnstudy.panel import load_panel
    from returnstudy.quality import quality_report
    from returnstudy.runner import study_sample
    from returnstudy.spec import StudySpec, load_spec

    spec = spec if isinstance(spec, StudySpec) else load_spec(spec)
    ddir = data_dir if data_dir is not None else spec.data.data_dir
    notes: list[str] = []
    details: dict[str, Any] = {}
    tables, why_tables = load_instrument_tables()

    def sample_of(sp: StudySpec) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
        try:
            panel, filt = study_sample(sp, ddir)
            return panel, filt.panel, True
        except ValueError as exc:
            if type(exc).__name__ != "AgreementDataError":
                raise
            kw = sp.data.load_panel_kwargs()
            if ddir is not None:
                kw["data_dir"] = ddir
            panel = load_panel(**kw)
            notes.append(f"{sp.study.name}: treatment tables failed validation, claims needing treatments cannot be tested ({str(exc).splitlines()[0]})")
            return panel, apply_filters(panel, sp).panel, False

    panel, sample, treated = sample_of(spec)
    vint = vintage_label(panel.attrs.get("vintage"))
    _, _, mparams = _headline_params(spec)
    designs: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {
        "main": (sample, {"outcome": mparams.get("outcome", "returns"), "exposure": mparams.get("exposure", "orders")})}
    if proxy_spec is not None:
        psp = proxy_spec if isinstance(proxy_spec, StudySpec) else load_spec(proxy_spec)
        _, psample, ptreated = sample_of(psp)
        _, _, pparams = _headline_params(psp)
        designs["proxy"] = (psample, {"outcome": pparams.get("outcome", "returns_third_country"),
                                      "exposure": pparams.get("exposure", "found_illegal")})
        treated = treated and ptreated
    quality = quality_report(data_dir=ddir, **spec.quality.kwargs())
    try:
        cov_dir = covariates_dir if covariates_dir is not None else default_covariates_dir(ddir)
        asylum, why_asylum = read_asylum_applications(cov_dir), ""
    except (FileNotFoundError, ValueError) as exc:
        asylum, why_asylum = None, f"asylum applications not available: {exc}"
        notes.append(why_asylum)

    rows = _claim1(sample, quality, spec, vint, reps, seed, alpha, details)
    rows += _claim2(sample, asylum, vint, alpha, why_asylum)
    why_t = why_tables or "treatment tables failed validation"
    if treated:
        rows += _claim3(sample, vint, alpha)
        ma = corridor_instruments(["MA"], None, tables) if tables is not None else None
        ma = ma[ma["level"] == "bilateral"] if ma is not None else None
        rows += _claim4(designs, ma, vint, alpha)
    else:
        rows += [_row("3", "pre-agreement levels and trends", reason=why_t, vintage=vint),
                 _row("4", "Moroccan corridors around bilateral instruments", reason=why_t, vintage=vint)]
    minimum = int(spec.report.get("min_switching_citizenships", 5))
    rows += _claim5(designs, tables.get("visa_events") if tables is not None else None, vint, alpha, minimum, why_t)
    table = pd.DataFrame(rows, columns=COLUMNS)
    vintage = {"eurostat": vint, "spec": f"{spec.study.name} sha256 {str(spec.sha256)[:12]}"}
    if asylum is not None:
        from returnstudy.covariates import vintage_text

        vintage["asylum"] = vintage_text(asylum.attrs.get("vintage", {}))
    if tables is not None:
        vintage["treatment tables"] = ", ".join(f"{k} {str(v.attrs.get('sha256'))[:12]}" for k, v in sorted(tables.items()))
    table.attrs["vintage"] = frozen(vintage)
    return ClaimsResult(table=table, notes=notes, vintage=vintage, details=details)
