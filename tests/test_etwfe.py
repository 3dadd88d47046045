"""Extended TWFE (Wooldridge): cell coefficients against pyfixest's saturated regression, the
linear ATT against the imputation estimator, every aggregation against the R package etwfe's
published mpdta numbers, and a simulated panel with a known proportional effect."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from returnstudy.models.etwfe import etwfe
from returnstudy.models.imputation import did_imputation
from returnstudy.simulate import _truth_log_ratio, simulate_panel


def _balanced(seed: int = 3, **kw) -> pd.DataFrame:
    p = simulate_panel(seed=seed, n_geo=6, n_citizen=40, zero_share=0.0, bilateral_share=0.3,
                       years=(2008, 2017), **kw)
    complete = p.groupby("corridor")["return_rate"].transform(lambda s: s.notna().all())
    p = p[complete].reset_index(drop=True)
    return p[p.groupby("corridor")["returns"].transform("sum") > 0].reset_index(drop=True)


def _with_cells(p: pd.DataFrame, control: str = "notyet") -> tuple[pd.DataFrame, list[str], list[tuple[int, int]]]:
    """The saturated design built independently: one dummy per treated (cohort, year) cell."""
    q = p.copy()
    g = q["bilateral_binding_cohort"].astype("float64").to_numpy()
    t = q["year"].to_numpy()
    if control == "notyet":
        cell = np.isfinite(g) & (t >= np.nan_to_num(g, nan=np.inf))
    else:
        cell = np.isfinite(g) & (t != np.nan_to_num(g, nan=0) - 1)
    keys = sorted({(int(a), int(b)) for a, b in zip(g[cell], t[cell])})
    names = []
    for a, b in keys:
        nm = f"c{a}_{b}"
        q[nm] = ((g == a) & (t == b)).astype(float)
        names.append(nm)
    for c in ("corridor", "citizen"):
        q[c] = q[c].astype(object)
    return q, names, keys


@pytest.mark.parametrize("control", ["notyet", "never"])
def test_linear_cells_equal_pyfixest_saturated_regression(control: str) -> None:
    pf = pytest.importorskip("pyfixest")
    p = _balanced()
    r = etwfe(p, "bilateral_binding", control=control)
    q, names, keys = _with_cells(p, control)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pf.feols("return_rate ~ " + " + ".join(names) + " | corridor + year", data=q,
                     vcov={"CRV1": "citizen"}, fixef_tol=1e-14)
    cells = r.info["cells"]
    assert list(cells.index) == keys
    np.testing.assert_allclose(cells["estimate"].to_numpy(), m.coef()[names].to_numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(cells["std_error"].to_numpy(), m.se()[names].to_numpy(), rtol=1e-8)
    # simple ATT: treated-cell-count weighted average of the post cells, its variance w' V w from pyfixest's vcov
    post = cells["rel_period"].to_numpy() >= 0
    w = np.where(post, cells["n_treated"].to_numpy(), 0) / cells.loc[post, "n_treated"].sum()
    V = m._vcov if hasattr(m, "_vcov") else m.vcov
    V = np.asarray(V)
    b = m.coef()[names].to_numpy()
    assert r.coef("bilateral_binding") == pytest.approx(float(w @ b), abs=1e-12)
    assert r.table.loc["bilateral_binding", "std_error"] == pytest.approx(float(np.sqrt(w @ V @ w)), rel=1e-8)
    # never-treated controls: the cells before the reference year are placebo estimates, jointly tested
    wald = r.info["pretrend_test"]
    pre = np.flatnonzero(cells["rel_period"].to_numpy() < -1)
    if control == "notyet":
        assert wald is None and pre.size == 0
    else:
        assert pre.size > 0
        stat = float(b[pre] @ np.linalg.solve(V[np.ix_(pre, pre)], b[pre]))
        assert wald.statistic == pytest.approx(stat, rel=1e-8)
        assert wald.df_num == pre.size and wald.df_denom == p["citizen"].nunique() - 1


def test_poisson_cells_equal_pyfixest_fepois_with_offset() -> None:
    pf = pytest.importorskip("pyfixest")
    p = _balanced(seed=8, effect="growing", base_effect=0.2)
    r = etwfe(p, "bilateral_binding", model="poisson", tol=1e-14)
    q, names, keys = _with_cells(p)
    q["log_orders"] = np.log(q["orders"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pf.fepois("returns ~ " + " + ".join(names) + " | corridor + year", data=q, offset="log_orders",
                      vcov={"CRV1": "citizen"}, iwls_tol=1e-14, fixef_tol=1e-14, iwls_maxiter=100)
    cells = r.info["cells"]
    assert r.info["dropped"].get("separated by the regressors (iterative rectifier)", 0) == 0
    assert list(cells.index) == keys
    b = m.coef()[names].to_numpy()
    np.testing.assert_allclose(cells["estimate"].to_numpy(), b, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(cells["std_error"].to_numpy(), m.se()[names].to_numpy(), rtol=1e-8)
    # the proportional ATT from its definition: log(sum mu / sum mu0) over the treated rows; the fitted
    # means sum to the outcome within each cell (PPML score), so mu0 = S_c exp(-b_c) per cell
    S = np.array([q.loc[q[nm] == 1, "returns"].sum() for nm in names])
    assert r.coef("bilateral_binding") == pytest.approx(np.log(S.sum() / np.sum(S * np.exp(-b))), abs=1e-9)
    row = r.table.loc["bilateral_binding"]
    assert row["pct_effect"] == pytest.approx(100 * (S.sum() / np.sum(S * np.exp(-b)) - 1), rel=1e-8)
    assert row["pct_ci_low"] == pytest.approx(100 * np.expm1(row["estimate"] - 1.959963984540054 * row["std_error"]),
                                              rel=1e-12)
    # mean log effect: treated-count weights on the cells, variance w' V w with pyfixest's covariance
    lm = etwfe(p, "bilateral_binding", model="poisson", tol=1e-14, poisson_scale="log_mean")
    w = cells["n_treated"].to_numpy() / cells["n_treated"].sum()
    assert lm.coef("bilateral_binding") == pytest.approx(float(w @ b), abs=1e-9)
    assert lm.table.loc["bilateral_binding", "std_error"] == pytest.approx(
        float(np.sqrt(w @ np.asarray(m._vcov) @ w)), rel=1e-8)


@pytest.mark.parametrize("zero_cell", [False, True])
def test_poisson_ratio_delta_method_over_all_parameters_equals_dense_sandwich(zero_cell: bool) -> None:
    """The proportional ATT's standard error propagates the covariance of every parameter (cells and the
    corridor and year effects): checked against a dense dummy-variable Poisson fit (statsmodels GLM), its
    clustered sandwich and a numerical gradient of log(sum mu / sum mu0) over all parameters. With a cell
    whose outcomes are all zero (no finite coefficient), its rows count with mu = 0 and their counterfactual
    means exp(offset + corridor and year effects)."""
    sm = pytest.importorskip("statsmodels.api")
    p = _balanced(seed=8, effect="growing", base_effect=0.2)
    p = p[p["citizen"].isin(sorted(p["citizen"].unique())[:25])].reset_index(drop=True)
    q, names, keys = _with_cells(p)
    zrows = np.zeros(len(q), dtype=bool)
    if zero_cell:
        nm = min(names, key=lambda c: q[c].sum() if q[c].sum() > 1 else np.inf)
        zrows = q[nm].to_numpy() == 1
        p = p.assign(returns=np.where(zrows, 0.0, p["returns"]))
        q = q.assign(returns=p["returns"]).drop(columns=[nm])
        names = [c for c in names if c != nm]
    r = etwfe(p, "bilateral_binding", model="poisson", tol=1e-14)
    T = q[names].to_numpy()
    U = pd.get_dummies(q["corridor"]).to_numpy(dtype=float)
    Y = pd.get_dummies(q["year"]).to_numpy(dtype=float)[:, 1:]
    W = np.column_stack([T, U, Y])
    off = np.log(q["orders"].to_numpy())
    y = q["returns"].to_numpy()
    k = ~zrows
    theta = sm.GLM(y[k], W[k], family=sm.families.Poisson(), offset=off[k]).fit(tol=1e-14, maxiter=200).params
    np.testing.assert_allclose(r.info["cells"]["estimate"].to_numpy(), theta[: len(names)], atol=1e-7)
    mu = np.exp(off[k] + W[k] @ theta)
    H = (W[k] * mu[:, None]).T @ W[k]
    Hinv = np.linalg.pinv(H)
    sc = W[k] * (y[k] - mu)[:, None]
    cl = pd.factorize(q["citizen"][k])[0]
    Sg = np.vstack([sc[cl == c].sum(axis=0) for c in range(cl.max() + 1)])
    Vraw = Hinv @ Sg.T @ Sg @ Hinv
    # one small-sample factor for every coefficient (the package's and pyfixest's CRV1 factor)
    ratio = r.info["cells"]["std_error"].to_numpy() ** 2 / np.diag(Vraw)[: len(names)]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)
    treated = (T.sum(axis=1) > 0) & k
    W0 = W.copy()
    W0[:, : len(names)] = 0.0

    def log_ratio(th: np.ndarray) -> float:
        s1 = np.exp(off + W @ th)[treated].sum()
        return float(np.log(s1 / np.exp(off + W0 @ th)[treated | zrows].sum()))

    assert r.coef("bilateral_binding") == pytest.approx(log_ratio(theta), abs=1e-9)
    assert r.table.loc["bilateral_binding", "n_treated"] == int((treated | zrows).sum())
    h = 1e-6
    grad = np.array([(log_ratio(theta + h * e) - log_ratio(theta - h * e)) / (2 * h) for e in np.eye(theta.size)])
    se = float(np.sqrt(ratio[0] * grad @ Vraw @ grad))
    assert r.table.loc["bilateral_binding", "std_error"] == pytest.approx(se, rel=1e-7)
    # holding the fixed effects at their estimates would give a different error
    grad_cells = grad.copy()
    grad_cells[len(names):] = 0.0
    assert abs(float(np.sqrt(ratio[0] * grad_cells @ Vraw @ grad_cells)) - se) > 1e-4 * se


def test_linear_equals_imputation_estimator_in_a_balanced_panel() -> None:
    """Wooldridge (2021): with not-yet-treated controls and saturated cells, ETWFE = BJS imputation."""
    p = _balanced(seed=4, effect="heterogeneous")
    r = etwfe(p, "bilateral_binding")
    imp = did_imputation(p, "bilateral_binding", model="linear")
    assert r.coef("bilateral_binding") == pytest.approx(imp.coef("bilateral_binding"), abs=1e-8)
    assert r.table.loc["bilateral_binding", "n_treated"] == imp.table.loc["bilateral_binding", "n_treated"]
    ev = etwfe(p, "bilateral_binding", aggregation="event")
    imp_ev = did_imputation(p, "bilateral_binding", model="linear", event_time=True)
    np.testing.assert_allclose(ev.table["estimate"].to_numpy(), imp_ev.table["estimate"].to_numpy(), atol=1e-8)
    # cohort dummies instead of unit effects: the same cell effects in a balanced panel
    rc = etwfe(p, "bilateral_binding", fe_level="cohort")
    np.testing.assert_allclose(rc.info["cells"]["estimate"], r.info["cells"]["estimate"], atol=1e-8)


def test_hand_computed_heterogeneous_cells_and_aggregations() -> None:
    """Outcome a_i + b_t + tau(g, t) without noise: every cell and aggregate is exact."""
    p = _balanced(seed=5)
    g = p["bilateral_binding_cohort"].astype("float64").to_numpy()
    t = p["year"].to_numpy()
    tau = np.where(np.isfinite(g) & (t >= np.nan_to_num(g, nan=np.inf)), 0.01 * (t - np.nan_to_num(g)) + 0.002 * (
        np.nan_to_num(g) - 2000), 0.0)
    a = pd.factorize(p["corridor"])[0] * 0.01
    p = p.assign(return_rate=a + 0.05 * (t - 2008) + tau)
    r = etwfe(p, "bilateral_binding", cluster=None)
    treated = tau != 0
    assert r.coef("bilateral_binding") == pytest.approx(tau[treated].mean(), abs=1e-10)
    aggs = r.info["aggregations"]
    for c, row in aggs["group"].iterrows():
        assert row["estimate"] == pytest.approx(tau[treated & (g == c)].mean(), abs=1e-10)
    for s, row in aggs["calendar"].iterrows():
        assert row["estimate"] == pytest.approx(tau[treated & (t == s)].mean(), abs=1e-10)
    for e, row in aggs["event"].iterrows():
        assert row["estimate"] == pytest.approx(tau[treated & (t - g == e)].mean(), abs=1e-10)
    # Poisson on an exact multiplicative mean: cells exact, ratio = sum mu1 / sum mu0 by hand
    mu0 = p["orders"].to_numpy() * np.exp(-1 + a - 0.03 * (t - 2008))
    q = p.assign(returns=mu0 * np.exp(tau))
    rp = etwfe(q, "bilateral_binding", model="poisson", cluster=None, tol=1e-14)
    cells = rp.info["cells"]
    for (c, s), row in cells.iterrows():
        assert row["estimate"] == pytest.approx(tau[(g == c) & (t == s)][0], abs=1e-7)
    ratio = np.log(q["returns"].to_numpy()[treated].sum() / mu0[treated].sum())
    assert rp.coef("bilateral_binding") == pytest.approx(ratio, abs=1e-7)
    lm = etwfe(q, "bilateral_binding", model="poisson", cluster=None, tol=1e-14, poisson_scale="log_mean")
    assert lm.coef("bilateral_binding") == pytest.approx(tau[treated].mean(), abs=1e-7)


# ---------------------------------------------------------------- mpdta, R package etwfe
# Published reference values: grantmcdermott/etwfe, inst/tinytest/test_emfx.R (lemp ~ lpop, tvar = year,
# gvar = first.treat, vcov = ~countyreal; cohort and year effects with lpop slopes).
ETWFE_SIMPLE = (-0.0506270331228907, 0.0124972546529842)
ETWFE_CALENDAR = {2004: (-0.0212480022225509, 0.0217240109737018), 2005: (-0.0818499992698648, 0.0273693827216135),
                  2006: (-0.0442655912990223, 0.0173733625406716), 2007: (-0.0524323095862384, 0.015015825012757)}
ETWFE_GROUP = {2004: (-0.0876269608795944, 0.0230474099815232), 2006: (-0.0212783329358987, 0.0185912208081438),
               2007: (-0.0459545277368072, 0.0179714452432232)}
ETWFE_EVENT = {0: (-0.0332122037837542, 0.0133659635774059), 1: (-0.0573456479257483, 0.0171496442892364),
               2: (-0.137870386660852, 0.0307883597041053), 3: (-0.10953945536511, 0.0323152785480507)}
ETWFE_EVENT_NEVER = {-2: (0.0234649547538384, 0.0145314904277398), 0: (-0.0211467366918433, 0.0113935648352396),
                     1: (-0.0533558653415615, 0.0157744281621729), 2: (-0.141080104628566, 0.0322891808795742),
                     3: (-0.107544274673025, 0.0329231688783015)}
# family = "poisson" on emp = exp(lemp): event effects on the link scale and in levels (response scale)
ETWFE_POIS_LINK = {0: (-0.0325653634930092, 0.0128503810792558), 1: (-0.0675071046997911, 0.0183966910997271),
                   2: (-0.132971344933511, 0.0237253182969748), 3: (-0.117022779216096, 0.0225005664705109)}
ETWFE_POIS_LEVEL = {0: (-25.3497484355494, 15.8862762958862), 1: (1.09175116997388, 40.2952222352926),
                    2: (-75.1246321552693, 23.1541376499351), 3: (-101.823979344829, 27.0877431076141)}


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    moderndid = pytest.importorskip("moderndid")
    d = moderndid.load_mpdta()
    d = d.to_pandas() if hasattr(d, "to_pandas") else pd.DataFrame(d)
    return d.assign(emp=np.exp(d["lemp"]))


MPDTA = dict(treatment=None, outcome="lemp", unit="countyreal", time="year", cohort="first.treat",
             cluster="countyreal", covariates=["lpop"], fe_level="cohort")


def _check(table: pd.DataFrame, ref: dict, se_rel: float = 1e-6) -> None:
    assert sorted(int(k) for k in table.index) == sorted(ref)
    for k, (est, se) in ref.items():
        assert table.loc[k, "estimate"] == pytest.approx(est, abs=1e-10)
        assert table.loc[k, "std_error"] == pytest.approx(se, rel=se_rel)


def test_mpdta_every_aggregation_equals_r_etwfe(mpdta: pd.DataFrame) -> None:
    r = etwfe(mpdta, **MPDTA)
    assert r.coef("att") == pytest.approx(ETWFE_SIMPLE[0], abs=1e-10)
    assert r.table.loc["att", "std_error"] == pytest.approx(ETWFE_SIMPLE[1], rel=1e-6)
    aggs = r.info["aggregations"]
    _check(aggs["calendar"], ETWFE_CALENDAR)
    _check(aggs["group"], ETWFE_GROUP)
    _check(aggs["event"], ETWFE_EVENT)
    never = etwfe(mpdta, **MPDTA, control="never", aggregation="event")
    _check(never.table.loc[[-2, 0, 1, 2, 3]], ETWFE_EVENT_NEVER)
    # unit fixed effects instead of cohort effects: same point estimate in this balanced panel
    assert etwfe(mpdta, **{**MPDTA, "fe_level": "unit"}).coef("att") == pytest.approx(ETWFE_SIMPLE[0], abs=1e-10)


def test_mpdta_poisson_link_and_level_effects_equal_r_etwfe(mpdta: pd.DataFrame) -> None:
    kw = {**MPDTA, "outcome": "emp", "model": "poisson", "exposure": None, "aggregation": "event", "tol": 1e-13}
    link = etwfe(mpdta, **kw, poisson_scale="log_mean")
    _check(link.table, ETWFE_POIS_LINK, se_rel=1e-4)  # R's Poisson fit stops at fixest's glm tolerance 1e-8
    ratio = etwfe(mpdta, **kw)
    for k, (v, se) in ETWFE_POIS_LEVEL.items():
        assert ratio.table.loc[k, "att_level"] == pytest.approx(v, rel=1e-8, abs=1e-6)
        # delta method over every parameter, as R's (dummies for cohorts and years, fe = "none")
        assert ratio.table.loc[k, "att_level_std_error"] == pytest.approx(se, rel=1e-4)


def test_mpdta_without_covariates_never_treated_equals_callaway_santanna_simple(mpdta: pd.DataFrame) -> None:
    """Never-treated controls, no covariates: each post cell is Callaway and Sant'Anna's long difference
    (cohort g from g - 1 to t, minus the never treated), so the simple ATT is R did's simple aggregate
    (published -0.0400), here computed by hand from cohort-year means."""
    kw = {k: v for k, v in MPDTA.items() if k not in ("covariates", "fe_level")}
    r = etwfe(mpdta, **kw, control="never")
    m = mpdta.groupby(["first.treat", "year"])["lemp"].mean()
    n_units = mpdta.groupby("first.treat")["countyreal"].nunique()
    att, w = [], []
    for g in (2004, 2006, 2007):
        for t in range(g, 2008):
            att.append((m[g, t] - m[g, g - 1]) - (m[0, t] - m[0, g - 1]))
            w.append(n_units[g])
    simple = float(np.average(att, weights=w))
    assert r.coef("att") == pytest.approx(simple, abs=1e-12)
    assert round(r.coef("att"), 4) == -0.0400


def test_simulated_poisson_recovers_known_proportional_effect() -> None:
    p = simulate_panel(seed=21, n_geo=15, n_citizen=80, bilateral_share=0.2, base_effect=0.25)
    r = etwfe(p, "bilateral_binding", model="poisson")
    truth = _truth_log_ratio(p, "bilateral_binding", r)
    assert truth == pytest.approx(0.25, abs=1e-12)
    row = r.table.loc["bilateral_binding"]
    assert row["ci_low"] < truth < row["ci_high"]
    assert row["pct_ci_low"] < 100 * np.expm1(truth) < row["pct_ci_high"]
    assert abs(row["estimate"] - truth) < 0.05


def test_anticipation_shifts_the_cells_and_keeps_them_out_of_the_post_aggregate() -> None:
    p = _balanced(seed=6)
    r = etwfe(p, "bilateral_binding", anticipation=1, aggregation="event", cluster=None)
    cells = r.info["cells"]
    assert cells["rel_period"].min() == -1
    assert set(cells.loc[cells["rel_period"] == -1, "kind"]) == {"anticipation"}
    post = cells[cells["rel_period"] >= 0]
    w = post["n_treated"] / post["n_treated"].sum()
    assert r.info["overall"]["estimate"] == pytest.approx(float((w * post["estimate"]).sum()), abs=1e-12)


def test_bad_input_names_the_problem() -> None:
    p = _balanced()
    with pytest.raises(ValueError, match="control='everyone'.*notyet"):
        etwfe(p, "bilateral_binding", control="everyone")
    with pytest.raises(ValueError, match="model='logit'"):
        etwfe(p, "bilateral_binding", model="logit")
    with pytest.raises(KeyError, match="cohort column 'start'.*available"):
        etwfe(p, "bilateral_binding", cohort="start")
    with pytest.raises(KeyError, match="unit_id"):
        etwfe(p, "bilateral_binding", unit="unit_id")
    with pytest.raises(ValueError, match="varies within corridor"):
        etwfe(p, "bilateral_binding", covariates=["orders"])
    q = p.assign(bilateral_binding=1.0 - p["bilateral_binding"])
    with pytest.raises(ValueError, match="not absorbing"):
        etwfe(q, "bilateral_binding")
    allt = p.assign(bilateral_binding_cohort=p["bilateral_binding_cohort"].fillna(2012),
                    bilateral_binding=lambda d: (d["year"] >= d["bilateral_binding_cohort"]).astype(float))
    with pytest.raises(ValueError, match="never-treated units"):
        etwfe(allt, "bilateral_binding", control="never")


def test_poisson_cell_with_only_zero_outcomes_counts_as_minus_100_percent() -> None:
    p = _balanced(seed=8, effect="growing", base_effect=0.2)
    g = p["bilateral_binding_cohort"].astype("float64")
    full = etwfe(p, "bilateral_binding", model="poisson")
    cells = full.info["cells"]
    (g0, t0) = cells["n_treated"].idxmin()
    in_cell = ((g == g0) & (p["year"] == t0)).to_numpy()
    q = p.assign(returns=np.where(in_cell, 0.0, p["returns"]))
    r = etwfe(q, "bilateral_binding", model="poisson")
    note = " ".join(r.info["notes"])
    assert "only zero outcomes" in note and f"bilateral_binding_g{g0}_t{t0}" in note
    assert (g0, t0) not in r.info["cells"].index
    assert len(r.info["cells"]) == len(cells) - 1
    assert r.table.loc["bilateral_binding", "n_treated"] == full.table.loc["bilateral_binding", "n_treated"]
    # the cell's event time and cohort aggregates include it: an aggregate of that cell alone is -100%
    ev = r.info["aggregations"]["calendar"]
    if ev.loc[t0, "n_treated"] == in_cell.sum():
        assert ev.loc[t0, "pct_effect"] == -100.0
    # the mean-log scale has no finite value for such a cell: it is left out, and the notes say so
    lm = etwfe(q, "bilateral_binding", model="poisson", poisson_scale="log_mean")
    assert lm.table.loc["bilateral_binding", "n_treated"] == full.table.loc["bilateral_binding", "n_treated"] - in_cell.sum()
    assert "left out of the aggregates" in " ".join(lm.info["notes"])


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_event_vcov_is_the_delta_method_covariance_and_influence_sums_reproduce_every_covariance(model: str) -> None:
    """extra['event_vcov']: labelled by relative period (placebo periods included with never-treated
    controls), diagonal = reported SEs squared, the same matrix whatever the reported aggregation; for
    the linear model it is A V_cells A' with A the treated-row weights of the cells (built here from the
    cell table). The stored cluster influence sums C_g give sum_g C_g C_g' = the reported covariance of
    every aggregation."""
    p = _balanced(seed=6)
    r = etwfe(p, "bilateral_binding", model=model, control="never", aggregation="event", tol=1e-13)
    ev = r.extra["event_vcov"]
    tab = r.table
    assert list(ev.index) == list(tab.index) and min(tab.index) < -1 and 0 in tab.index
    np.testing.assert_allclose(np.diag(ev.to_numpy()), tab["std_error"].to_numpy() ** 2, rtol=1e-12)
    np.testing.assert_array_equal(ev.to_numpy(), r.vcov.to_numpy())
    simple = etwfe(p, "bilateral_binding", model=model, control="never", tol=1e-13)
    np.testing.assert_allclose(simple.extra["event_vcov"].to_numpy(), ev.to_numpy(), rtol=1e-12, atol=1e-300)
    if model == "linear":
        cells = r.info["cells"]
        n_tr = cells["n_treated"].to_numpy(dtype=float)
        A = np.vstack([np.where(cells["rel_period"].to_numpy() == e, n_tr, 0.0) for e in tab.index])
        A /= A.sum(axis=1, keepdims=True)
        Vc = r.extra["cell_vcov"].to_numpy()
        np.testing.assert_allclose(ev.to_numpy(), A @ Vc @ A.T, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(tab["estimate"].to_numpy(), A @ cells["estimate"].to_numpy(), atol=1e-12)
    inf = r.extra["influence_sums"]
    assert inf["cluster"] == "citizen" and inf["n_clusters"] == p["citizen"].nunique()
    for agg, C in inf["sums"].items():
        V = r.extra["aggregation_vcov"][agg]
        assert list(C.columns) == list(r.info["aggregations"][agg].index)
        np.testing.assert_allclose(C.to_numpy().T @ C.to_numpy(), V, rtol=1e-10, atol=1e-12 * np.abs(V).max())
    # no one-way cluster: no influence sums
    assert etwfe(p, "bilateral_binding", model=model, cluster=None).extra["influence_sums"] is None
