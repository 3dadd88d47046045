"""Synthetic corridor-year panels with known treatment effects.

The generated panel follows the corridor-year panel contract and the treatment
contract, so every estimator in :mod:`returnstudy.models` runs on it unchanged.
Returns are drawn as ``Poisson(orders * exp(a_corridor + b_year + effect * D))``,
so the treatment effect is a log rate ratio (``exp(effect) - 1`` is the relative
change in the return rate). Each row carries its true effect:

* ``true_effect`` — log-scale effect in that corridor-year (0 when untreated),
* ``true_effect_rate`` — the implied change in the expected return rate
  ``E[returns / orders]`` (the estimand of the linear models on ``return_rate``).

``panel.attrs["synthetic"]`` is ``True`` and ``panel.attrs["vintage"]`` holds
``{"synthetic": {...}}`` with the seed and every parameter, so any downstream
summary states that the data are SYNTHETIC.

Default sizes and distributions are calibrated to the offline Eurostat
snapshot; :func:`calibrate_from_snapshot` recomputes the stored constants.
:func:`monte_carlo` and :func:`summarize_monte_carlo` re-simulate panels and report
bias, RMSE and coverage of the estimators against their own estimands.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnstudy.provenance import freeze_attrs

logger = logging.getLogger(__name__)

TREATMENTS: tuple[str, ...] = ("eu_agreement", "eu_nonbinding", "bilateral_binding", "bilateral_nonbinding")
EFFECT_SHAPES: tuple[str, ...] = ("constant", "growing", "fading", "heterogeneous")

# Calibration constants, measured once on the offline snapshot
# (../shared/data/eurostat/migr_eiord.csv and migr_eirtn.csv with c_dest=TOTAL,
# 2012-2016, aggregates EU28 and TOTAL removed, orders and returns inner-joined on
# geo x citizen x year) by ``calibrate_from_snapshot``:
#   n_geo                : reporting countries with a positive orders total
#   n_citizen            : citizenships with a positive orders total
#   active_share         : share of corridors (geo x citizen present in the join) with mean orders > 0
#   log_orders_mean/_sd  : mean and sd (ddof=1) of log(corridor mean orders) over active corridors (lognormal fit)
#   zero_return_share    : share of corridor-years with orders > 0 and returns == 0
#   year_effect_sd       : sd (ddof=1) over years of log(sum returns / sum orders)
#   log_rate_mean/_sd    : mean and sd (ddof=1) of log(sum returns / sum orders) over corridors with both sums > 0
#   never_return_share   : share of corridors with orders > 0 in some year that record no return in any year
# The test suite checks that these equal the recomputed values to the stored rounding.
CALIBRATION: dict[str, float] = {
    "n_geo": 31,
    "n_citizen": 155,
    "active_share": 0.4896,
    "log_orders_mean": 2.959,
    "log_orders_sd": 2.086,
    "zero_return_share": 0.254,
    "year_effect_sd": 0.0973,
    "log_rate_mean": -0.854,
    "log_rate_sd": 1.062,
    "never_return_share": 0.229,
}
_CALIBRATION_DIGITS: dict[str, int] = {
    "n_geo": 0,
    "n_citizen": 0,
    "active_share": 4,
    "log_orders_mean": 3,
    "log_orders_sd": 3,
    "zero_return_share": 3,
    "year_effect_sd": 4,
    "log_rate_mean": 3,
    "log_rate_sd": 3,
    "never_return_share": 3,
}


def _read_sdmx(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"calibration input not found: {path}")
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for col in ("geo", "citizen", "TIME_PERIOD", "OBS_VALUE"):
        if col not in df.columns:
            raise KeyError(f"{path}: column {col!r} missing (expected Eurostat SDMX-CSV)")
    return df


def calibrate_from_snapshot(data_dir: str | Path) -> dict[str, float]:
    """Recompute :data:`CALIBRATION` from a snapshot directory.

    ``data_dir`` is the directory holding ``eurostat/migr_eiord.csv`` and
    ``eurostat/migr_eirtn.csv`` (or those files directly). Values are rounded
    as stored in :data:`CALIBRATION`.
    """
    data_dir = Path(data_dir)
    base = data_dir / "eurostat" if (data_dir / "eurostat").is_dir() else data_dir
    orders = _read_sdmx(base / "migr_eiord.csv")
    rtn = _read_sdmx(base / "migr_eirtn.csv")
    if "c_dest" in rtn.columns:
        rtn = rtn[rtn["c_dest"] == "TOTAL"]
    key = ["geo", "citizen", "TIME_PERIOD"]
    aggregates_geo = {"EU28", "EU27_2007", "EU27_2020", "EU25", "EU15", "TOTAL"}
    o = orders.loc[~orders["geo"].isin(aggregates_geo) & (orders["citizen"] != "TOTAL"), key + ["OBS_VALUE"]]
    r = rtn.loc[~rtn["geo"].isin(aggregates_geo) & (rtn["citizen"] != "TOTAL"), key + ["OBS_VALUE"]]
    m = (
        o.rename(columns={"OBS_VALUE": "orders"})
        .merge(r.rename(columns={"OBS_VALUE": "returns"}), on=key, how="inner")
        .dropna(subset=["orders", "returns"])
    )
    m = m[(m["TIME_PERIOD"] >= 2012) & (m["TIME_PERIOD"] <= 2016)]
    if m.empty:
        raise ValueError(f"{base}: no overlapping orders/returns rows in 2012-2016")
    geo_tot = m.groupby("geo")["orders"].sum()
    cit_tot = m.groupby("citizen")["orders"].sum()
    cmean = m.groupby(["geo", "citizen"])["orders"].mean()
    active = cmean[cmean > 0]
    pos = m[m["orders"] > 0]
    yr = m.groupby("TIME_PERIOD")[["orders", "returns"]].sum()
    cs = m.groupby(["geo", "citizen"])[["orders", "returns"]].sum()
    cs = cs[(cs["orders"] > 0) & (cs["returns"] > 0)]
    lrate = np.log(cs["returns"] / cs["orders"])
    cs_all = m.groupby(["geo", "citizen"])[["orders", "returns"]].sum()
    cs_all = cs_all[cs_all["orders"] > 0]
    raw = {
        "n_geo": int((geo_tot > 0).sum()),
        "n_citizen": int((cit_tot > 0).sum()),
        "active_share": len(active) / len(cmean),
        "log_orders_mean": float(np.log(active).mean()),
        "log_orders_sd": float(np.log(active).std(ddof=1)),
        "zero_return_share": float((pos["returns"] == 0).mean()),
        "year_effect_sd": float(np.log(yr["returns"] / yr["orders"]).std(ddof=1)),
        "log_rate_mean": float(lrate.mean()),
        "log_rate_sd": float(lrate.std(ddof=1)),
        "never_return_share": float((cs_all["returns"] == 0).mean()),
    }
    out: dict[str, float] = {}
    for k, v in raw.items():
        d = _CALIBRATION_DIGITS[k]
        out[k] = int(round(v)) if d == 0 else round(float(v), d)
    return out


def effect_path(
    shape: str, base_effect: float, years_since: np.ndarray, cohort_rank: np.ndarray | None = None
) -> np.ndarray:
    """Log-scale effect at ``years_since`` = year - adoption year (>= 0).

    constant: ``base``; growing: ``base * (1 + 0.5 e)``; fading: ``base * exp(-e / 2)``;
    heterogeneous: growing and scaled by cohort, ``base * (1 + 0.5 e) * (1.5 - r)``
    with ``r`` in [0, 1] the cohort's rank (0 = earliest adopter, so early cohorts
    gain most).
    """
    e = np.asarray(years_since, dtype=float)
    if shape == "constant":
        out = np.full_like(e, base_effect)
    elif shape == "growing":
        out = base_effect * (1.0 + 0.5 * e)
    elif shape == "fading":
        out = base_effect * np.exp(-e / 2.0)
    elif shape == "heterogeneous":
        r = np.zeros_like(e) if cohort_rank is None else np.asarray(cohort_rank, dtype=float)
        out = base_effect * (1.0 + 0.5 * e) * (1.5 - r)
    else:
        raise ValueError(f"effect={shape!r}: expected one of {EFFECT_SHAPES}")
    return np.where(e >= 0, out, 0.0)


def _draw_cohorts(rng: np.random.Generator, n: int, share: float, first: int, last: int) -> np.ndarray:
    """Adoption year per unit (float, NaN = never), uniform over [first, last]."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"treated share must be in [0, 1], got {share}")
    cohorts = np.full(n, np.nan)
    k = int(round(share * n))
    if k and last >= first:
        idx = rng.choice(n, size=k, replace=False)
        cohorts[idx] = rng.integers(first, last + 1, size=k)
    return cohorts


def simulate_panel(
    seed: int | None = 0,
    effect: str = "constant",
    n_geo: int = 30,
    n_citizen: int = 150,
    years: tuple[int, int] = (2008, 2022),
    eu_share: float = 0.15,
    eu_nonbinding_share: float = 0.05,
    bilateral_share: float = 0.08,
    bilateral_nonbinding_share: float = 0.05,
    base_effect: float = 0.1,
    effect_on: str | Sequence[str] = "bilateral_binding",
    zero_share: float | None = None,
    n_nonparticipating_geo: int = 2,
    adoption_margin: int = 2,
    orders_noise_sd: float = 0.3,
    calibration: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Simulate a corridor-year panel with staggered treatments and a known effect.

    Parameters
    ----------
    seed : seed of the numpy Generator (all draws).
    effect : shape of the effect over years since adoption (see :func:`effect_path`).
    n_geo, n_citizen : reporting countries and citizenships (corridors = n_geo * n_citizen).
    years : first and last year, inclusive.
    eu_share, eu_nonbinding_share : share of citizenships with an EU-level agreement /
        non-binding arrangement; adopted in the same year for every corridor of the
        citizenship except ``n_nonparticipating_geo`` geos that never take part.
    bilateral_share, bilateral_nonbinding_share : share of corridors with a bilateral
        agreement / non-binding arrangement, adoption year drawn per corridor.
    base_effect : log-scale effect at adoption on the treatments in ``effect_on``
        (all other treatments have no effect).
    zero_share : share of corridors that never record an order (all-zero rows as in
        the snapshot); default: ``1 - CALIBRATION["active_share"]``.
    adoption_margin : adoption years are uniform on
        ``[years[0] + margin, years[1] - margin]`` so cohorts have pre and post years.
    orders_noise_sd : sd of the corridor-year log-normal noise in the orders mean.
    """
    cal = dict(CALIBRATION if calibration is None else calibration)
    if effect not in EFFECT_SHAPES:
        raise ValueError(f"effect={effect!r}: expected one of {EFFECT_SHAPES}")
    effect_on = (effect_on,) if isinstance(effect_on, str) else tuple(effect_on)
    for t in effect_on:
        if t not in TREATMENTS:
            raise ValueError(f"effect_on={t!r}: expected one of {TREATMENTS}")
    y0, y1 = int(years[0]), int(years[1])
    if y1 - y0 < 2 * adoption_margin:
        raise ValueError(f"years={years}: too short for adoption_margin={adoption_margin}")
    if n_geo < 1 or n_citizen < 1:
        raise ValueError("n_geo and n_citizen must be positive")
    if n_nonparticipating_geo >= n_geo:
        raise ValueError("n_nonparticipating_geo must be smaller than n_geo")
    zero_share = 1.0 - cal["active_share"] if zero_share is None else float(zero_share)
    if not 0.0 <= zero_share < 1.0:
        raise ValueError(f"zero_share must be in [0, 1), got {zero_share}")

    rng = np.random.default_rng(seed)
    geos = np.array([f"G{i:02d}" for i in range(n_geo)])
    cits = np.array([f"C{j:03d}" for j in range(n_citizen)])
    yrs = np.arange(y0, y1 + 1)
    n_c, n_t = n_geo * n_citizen, len(yrs)
    gi = np.repeat(np.arange(n_geo), n_citizen)  # corridor -> geo index
    ci = np.tile(np.arange(n_citizen), n_geo)  # corridor -> citizen index
    first, last = y0 + adoption_margin, y1 - adoption_margin

    # --- treatment timing (per corridor; NaN = never) ---
    nonpart = np.zeros(n_geo, dtype=bool)
    nonpart[rng.choice(n_geo, size=n_nonparticipating_geo, replace=False)] = True
    cohorts: dict[str, np.ndarray] = {}
    for t, share in (("eu_agreement", eu_share), ("eu_nonbinding", eu_nonbinding_share)):
        cit_cohort = _draw_cohorts(rng, n_citizen, share, first, last)
        c = cit_cohort[ci].copy()
        c[nonpart[gi]] = np.nan
        cohorts[t] = c
    for t, share in (("bilateral_binding", bilateral_share), ("bilateral_nonbinding", bilateral_nonbinding_share)):
        cohorts[t] = _draw_cohorts(rng, n_c, share, first, last)

    # --- corridor and year effects ---
    active = rng.random(n_c) >= zero_share
    log_mean_orders = rng.normal(cal["log_orders_mean"], cal["log_orders_sd"], n_c)
    a_corr = rng.normal(cal["log_rate_mean"], cal["log_rate_sd"], n_c)
    # corridors where return never happens (rate 0), as in the snapshot
    a_corr[rng.random(n_c) < cal["never_return_share"]] = -np.inf
    b_year = rng.normal(0.0, cal["year_effect_sd"], n_t)
    b_year -= b_year.mean()
    g_year = rng.normal(0.0, cal["year_effect_sd"], n_t)  # year shocks to orders

    year = np.tile(yrs, n_c)
    corr = np.repeat(np.arange(n_c), n_t)
    lam_orders = np.exp(log_mean_orders[corr] + g_year[np.tile(np.arange(n_t), n_c)]
                        + rng.normal(0.0, orders_noise_sd, n_c * n_t))
    orders = np.where(active[corr], rng.poisson(lam_orders), 0).astype(float)

    true_effect = np.zeros(n_c * n_t)
    for t in effect_on:
        c = cohorts[t][corr]
        treated = ~np.isnan(c) & (year >= np.nan_to_num(c, nan=np.inf))
        e = np.where(treated, year - np.nan_to_num(c, nan=0.0), -1)
        rank = np.where(np.isnan(c), 0.0, (np.nan_to_num(c) - first) / max(last - first, 1))
        true_effect += effect_path(effect, base_effect, e, rank)
    log_rate0 = a_corr[corr] + b_year[np.tile(np.arange(n_t), n_c)]
    mu0 = orders * np.exp(log_rate0)
    mu1 = mu0 * np.exp(true_effect)
    returns = rng.poisson(mu1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(orders > 0, returns / orders, np.nan)
    thrd = rng.binomial(returns.astype(np.int64), 0.6).astype(float)
    found = rng.poisson(orders * 1.4 + 0.5).astype(float)

    df = pd.DataFrame(
        {
            "geo": pd.array(geos[gi][corr], dtype="str"),
            "citizen": pd.array(cits[ci][corr], dtype="str"),
            "year": year.astype(np.int64),
        }
    )
    df["corridor"] = df["geo"] + "-" + df["citizen"]
    df["orders"] = orders
    df["returns"] = returns
    df["returns_third_country"] = thrd
    df["found_illegal"] = found
    df["return_rate"] = rate
    lag = np.full(n_c * n_t, np.nan)
    lag[1:] = orders[:-1]
    lag[np.tile(np.arange(n_t), n_c) == 0] = np.nan
    df["orders_lag1"] = lag
    for v in ("orders", "returns", "returns_third_country", "found_illegal"):
        df[f"{v}_flag"] = pd.array([""] * len(df), dtype="str")
    df["returns_third_country_imputed_zero"] = False
    df["found_illegal_imputed_zero"] = False
    for t in TREATMENTS:
        c = cohorts[t][corr]
        coh = pd.array(np.where(np.isnan(c), 0, c).astype(np.int64), dtype="Int64")
        coh[np.isnan(c)] = pd.NA
        df[t] = np.where(~np.isnan(c) & (year >= np.nan_to_num(c, nan=np.inf)), 1.0, 0.0)
        df[f"{t}_cohort"] = coh
        df[f"{t}_years_since"] = pd.array(df["year"].to_numpy(), dtype="Int64") - coh
    df["true_effect"] = true_effect
    df["true_effect_rate"] = np.where(orders > 0, np.exp(log_rate0) * (np.exp(true_effect) - 1.0), np.nan)
    df["mu0"] = mu0

    params: dict[str, Any] = {
        "seed": seed, "effect": effect, "n_geo": n_geo, "n_citizen": n_citizen, "years": [y0, y1],
        "eu_share": eu_share, "eu_nonbinding_share": eu_nonbinding_share, "bilateral_share": bilateral_share,
        "bilateral_nonbinding_share": bilateral_nonbinding_share, "base_effect": base_effect,
        "effect_on": list(effect_on), "zero_share": zero_share,
        "n_nonparticipating_geo": n_nonparticipating_geo, "adoption_margin": adoption_margin,
        "orders_noise_sd": orders_noise_sd, "calibration": cal,
    }
    df.attrs["synthetic"] = True
    df.attrs["vintage"] = {"synthetic": {"source": f"SYNTHETIC simulate_panel(seed={seed}, effect={effect!r})", **params}}
    df.attrs["true_effect"] = true_effect_summary(df, effect_on)
    df.attrs = freeze_attrs(df.attrs)
    return df


def true_effect_summary(panel: pd.DataFrame, effect_on: Sequence[str]) -> dict[str, Any]:
    """Estimands over treated corridor-years with orders > 0.

    ``att_log_ratio`` = log(sum mu1 / sum mu0) (the Poisson imputation estimand);
    ``att_log_mean`` = mean log effect; ``att_rate`` = mean change in the expected
    return rate (the linear estimand); ``by_event_time`` the same by years since
    adoption of the first treatment in ``effect_on``.
    """
    t = effect_on[0]
    treated = (panel[t].to_numpy() > 0) & (panel["orders"].to_numpy() > 0)
    sub = panel.loc[treated]
    mu0 = sub["mu0"].to_numpy()
    mu1 = mu0 * np.exp(sub["true_effect"].to_numpy())

    def stats(s: pd.DataFrame, m0: np.ndarray, m1: np.ndarray) -> dict[str, float]:
        return {
            "att_log_ratio": float(np.log(m1.sum() / m0.sum())) if m0.sum() > 0 else float("nan"),
            "att_log_mean": float(s["true_effect"].mean()),
            "att_rate": float(s["true_effect_rate"].mean()),
            "n_treated_obs": int(len(s)),
        }

    out: dict[str, Any] = {"treatment": t, "effect_on": list(effect_on), **stats(sub, mu0, mu1)}
    e = sub[f"{t}_years_since"].to_numpy(dtype=np.int64)
    out["by_event_time"] = {int(k): stats(sub[e == k], mu0[e == k], mu1[e == k]) for k in np.unique(e)}
    return out


# --------------------------------------------------------------------------- Monte Carlo harness
def _in_sample(panel: pd.DataFrame, result: Any) -> pd.DataFrame:
    """Rows of ``panel`` used by ``result`` (``extra["sample_index"]`` or the design frame), else all."""
    idx = None if result is None else result.extra.get("sample_index")
    if idx is None and result is not None and result.extra.get("design") is not None:
        idx = result.extra["design"].frame.index
    return panel if idx is None else panel.loc[idx]


def _truth_linear(panel: pd.DataFrame, treatment: str, result: Any = None) -> float:
    """Mean change in the expected return rate over treated corridor-years with a return rate."""
    p = _in_sample(panel, result)
    m = (p[treatment] > 0) & p["return_rate"].notna()
    return float(p.loc[m, "true_effect_rate"].mean())


def _truth_log_ratio(panel: pd.DataFrame, treatment: str, result: Any = None) -> float:
    """log(sum mu1 / sum mu0) over treated corridor-years with orders (Poisson imputation estimand)."""
    p = _in_sample(panel, result)
    m = (p[treatment] > 0) & (p["orders"] > 0)
    mu0 = p.loc[m, "mu0"].to_numpy()
    return float(np.log(np.sum(mu0 * np.exp(p.loc[m, "true_effect"].to_numpy())) / np.sum(mu0)))


def _truth_log_mean(panel: pd.DataFrame, treatment: str, result: Any = None) -> float:
    """Mean log effect over treated corridor-years with orders in corridors that record returns
    (the observation-weighted estimand of Sun-Abraham on the log scale)."""
    p = _in_sample(panel, result)
    active = p.groupby("corridor")["returns"].transform("sum") > 0
    m = (p[treatment] > 0) & (p["orders"] > 0) & active
    return float(p.loc[m, "true_effect"].mean())


def _mc_estimators() -> dict[str, tuple[Any, Any]]:
    """name -> (fit(panel, treatment) -> result, truth(panel, treatment) -> float)."""
    from returnstudy.models.callaway_santanna import callaway_santanna
    from returnstudy.models.imputation import did_imputation
    from returnstudy.models.ppml import ppml
    from returnstudy.models.sun_abraham import sun_abraham
    from returnstudy.models.twfe import twfe

    return {
        "twfe_linear": (lambda p, t: twfe(p, outcome="return_rate", treatments=[t]), _truth_linear),
        "twfe_ppml": (lambda p, t: ppml(p, treatments=[t]), _truth_log_ratio),
        "imputation_linear": (lambda p, t: did_imputation(p, t, model="linear"), _truth_linear),
        "imputation_poisson": (lambda p, t: did_imputation(p, t, model="poisson"), _truth_log_ratio),
        "sun_abraham_linear": (lambda p, t: sun_abraham(p, t, model="linear", event_time=False), _truth_linear),
        "sun_abraham_poisson": (lambda p, t: sun_abraham(p, t, model="poisson", event_time=False), _truth_log_mean),
        "callaway_santanna": (lambda p, t: callaway_santanna(p, t, control="notyet"), _truth_linear),
        "callaway_santanna_poisson": (lambda p, t: callaway_santanna(p, t, control="notyet", model="poisson"),
                                      _truth_log_mean),
    }


MC_ESTIMATORS: tuple[str, ...] = (
    "twfe_linear", "twfe_ppml", "imputation_linear", "imputation_poisson",
    "sun_abraham_linear", "sun_abraham_poisson", "callaway_santanna", "callaway_santanna_poisson",
)


def monte_carlo(
    reps: int = 40,
    scenarios: Sequence[str] = ("heterogeneous",),
    estimators: Sequence[str] = MC_ESTIMATORS,
    seed: int = 0,
    treatment: str = "bilateral_binding",
    **sim_kwargs: Any,
) -> pd.DataFrame:
    """Re-simulate ``reps`` panels per scenario and fit each estimator.

    Returns one row per (scenario, rep, estimator): estimate, std_error, 95% CI, the
    true value of that estimator's estimand on the rows it used (linear estimators: mean
    change in the expected return rate; Poisson imputation and PPML: log ratio of
    summed means; Poisson Sun-Abraham: mean log effect), ``covered`` and fit seconds.
    Panel ``r`` of a scenario uses seed ``seed + r``. ``sim_kwargs`` go to :func:`simulate_panel`.
    """
    import time

    from returnstudy._progress import progress as _progress

    registry = _mc_estimators()
    unknown = [e for e in estimators if e not in registry]
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; available: {sorted(registry)}")
    sim_kwargs.setdefault("effect_on", treatment)
    rows = []
    for scen in scenarios:
        for r in _progress(range(reps), f"monte carlo ({scen})"):
            panel = simulate_panel(seed=seed + r, effect=scen, **sim_kwargs)
            for name in estimators:
                fit, truth = registry[name]
                t0 = time.perf_counter()
                try:
                    res = fit(panel, treatment)
                    row = res.table.iloc[0]
                    est, se, lo, hi = (float(row[c]) for c in ("estimate", "std_error", "ci_low", "ci_high"))
                except (ValueError, np.linalg.LinAlgError) as exc:
                    logger.warning("monte_carlo: %s failed on rep %d: %s", name, r, exc)
                    est = se = lo = hi = float("nan")
                    res = None
                sec = time.perf_counter() - t0
                tv = truth(panel, treatment, res)
                rows.append({"scenario": scen, "rep": r, "estimator": name, "estimate": est, "std_error": se,
                             "ci_low": lo, "ci_high": hi, "truth": tv, "covered": bool(lo <= tv <= hi),
                             "seconds": sec})
    return pd.DataFrame(rows)


def summarize_monte_carlo(draws: pd.DataFrame) -> pd.DataFrame:
    """Bias, RMSE, SD of the error (estimate - truth), mean SE and 95% CI coverage per scenario and estimator."""
    d = draws.assign(error=draws["estimate"] - draws["truth"])
    g = d.groupby(["scenario", "estimator"], sort=False)
    out = pd.DataFrame({
        "reps": g["error"].count(),
        "mean_truth": g["truth"].mean(),
        "bias": g["error"].mean(),
        "rmse": g["error"].apply(lambda e: float(np.sqrt(np.mean(e.dropna() ** 2)))),
        "sd_error": g["error"].std(),
        "mean_se": g["std_error"].mean(),
        "coverage": g["covered"].mean(),
        "mean_seconds": g["seconds"].mean(),
    })
    return out
