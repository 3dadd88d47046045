"""Simulated corridor-year panels with a known treatment effect, for the test suite.

Orders to leave are drawn per corridor-year; returns are Poisson with mean
``orders * exp(a_corridor + l_year + effect(years_since))`` where treatment switches on
for all corridors of a citizenship from its adoption year (as an EU readmission
agreement does). ``effect`` is a constant log effect or a dict of event-time effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_panel(
    seed: int = 0,
    n_geo: int = 12,
    n_citizen: int = 40,
    years: tuple[int, int] = (2008, 2020),
    effect: float | dict[int, float] = 0.3,
    share_treated: float = 0.5,
    cohorts: tuple[int, ...] = (2011, 2013, 2015, 2017),
    missing_share: float = 0.1,
    zero_corridors: int = 0,
    orders_scale: float = 60.0,
    sd_corridor: float = 0.5,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    geos = [f"G{i:02d}" for i in range(n_geo)]
    cits = [f"C{i:03d}" for i in range(n_citizen)]
    yrs = np.arange(years[0], years[1] + 1)
    treated_cit = rng.random(n_citizen) < share_treated
    cohort = np.where(treated_cit, rng.choice(np.asarray(cohorts), n_citizen), -1)
    g, c, t = np.meshgrid(np.arange(n_geo), np.arange(n_citizen), yrs, indexing="ij")
    g, c, t = g.ravel(), c.ravel(), t.ravel()
    corr = g * n_citizen + c
    a = rng.normal(-1.0, sd_corridor, n_geo * n_citizen)
    lam = dict(zip(yrs, rng.normal(0, 0.2, yrs.size)))
    coh = cohort[c]
    ever = coh > 0
    ys = np.where(ever, t - coh, 0)
    d = (ever & (ys >= 0)).astype(float)
    if isinstance(effect, dict):
        eff = np.array([effect.get(int(k), 0.0) if e else 0.0 for k, e in zip(ys, ever)])
    else:
        eff = effect * d
    size = rng.lognormal(np.log(orders_scale), 1.0, n_geo * n_citizen)
    orders = rng.poisson(size[corr] * np.exp(rng.normal(0, 0.3, corr.size))).astype(float)
    mu = orders * np.exp(a[corr] + np.array([lam[x] for x in t]) + eff)
    returns = rng.poisson(mu).astype(float)
    df = pd.DataFrame(
        {
            "geo": np.asarray(geos)[g],
            "citizen": np.asarray(cits)[c],
            "year": t.astype("int64"),
            "orders": orders,
            "returns": returns,
        }
    )
    df["corridor"] = df["geo"] + "-" + df["citizen"]
    if zero_corridors:
        zc = rng.choice(df["corridor"].unique(), zero_corridors, replace=False)
        df.loc[df["corridor"].isin(zc), "returns"] = 0.0
    df["eu_agreement"] = d
    df["eu_agreement_cohort"] = pd.array(np.where(ever, coh, pd.NA), dtype="Int64")
    df["eu_agreement_years_since"] = pd.array(np.where(ever, ys, pd.NA), dtype="Int64")
    # a second, independent treatment (bilateral), citizen-level
    coh2 = np.where(rng.random(n_citizen) < 0.3, rng.choice(np.asarray(cohorts), n_citizen), -1)[c]
    df["bilateral_binding"] = ((coh2 > 0) & (t >= coh2)).astype(float)
    df["placebo"] = rng.integers(0, 2, len(df)).astype(float)
    df["x"] = rng.normal(size=len(df))
    keep = rng.random(len(df)) >= missing_share
    df = df.loc[keep].reset_index(drop=True)
    df["return_rate"] = (df["returns"] / df["orders"]).where(df["orders"] > 0)
    df.attrs["vintage"] = {"simulated": {"seed": seed}}
    return df


#: A two-by-two multiverse on simulated panels (simulate_panel): a minimum-orders filter (1 or 20
#: mean orders) crossed with the estimator (PPML, or the orders-weighted linear model of the
#: return rate), for the bilateral-binding treatment. ``SIM_GRID`` is the grid's dict form.
SIM_SPEC_DICT = {"study": {"name": "sim"}, "filters": [{"step": "min_orders", "n": 1, "how": "mean"}],
                 "models": [{"name": "m", "estimator": "ppml", "treatments": ["bilateral_binding"]}]}
SIM_GRID = {"grid": {"name": "sim", "treatments": ["bilateral_binding"], "focal_treatments": ["bilateral_binding"]},
            "dimensions": [
                {"name": "min_orders", "rationale": "r", "options": [
                    {"name": "1", "rationale": "r", "filters": {"min_orders": {"n": 1}}},
                    {"name": "20", "rationale": "r", "filters": {"min_orders": {"n": 20}}}]},
                {"name": "estimator", "rationale": "r", "options": [
                    {"name": "ppml", "rationale": "r", "model": {"estimator": "ppml"}},
                    {"name": "linear", "rationale": "r",
                     "model": {"estimator": "twfe", "outcome": "return_rate", "weights": "orders"}}]},
            ]}
