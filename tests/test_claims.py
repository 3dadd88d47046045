"""Policy claims: variance decomposition with known shares, verdict rules, visa coding, a claim from a constructed panel."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from returnstudy.claims import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    UNTESTABLE,
    _claim2,
    claim_verdict,
    variance_decomposition,
    visa_treatments,
)


def test_variance_decomposition_known_shares():
    # balanced 10 x 20 grid, y = a_g + b_c exactly: shares var(a)/var(y) and var(b)/var(y), no covariance, no residual
    rng = np.random.default_rng(1)
    a = rng.normal(0, 2.0, 10)
    b = rng.normal(0, 1.0, 20)
    a, b = a - a.mean(), b - b.mean()
    g, c = np.meshgrid(np.arange(10), np.arange(20), indexing="ij")
    df = pd.DataFrame({"geo": [f"G{i}" for i in g.ravel()], "citizen": [f"C{j}" for j in c.ravel()],
                       "log_rate": a[g.ravel()] + b[c.ravel()]})
    var_a, var_b = np.mean(a**2), np.mean(b**2)
    out = variance_decomposition(df, reps=20, seed=5).set_index("component")["share"]
    assert out["geo"] == pytest.approx(var_a / (var_a + var_b), abs=1e-8)
    assert out["citizen"] == pytest.approx(var_b / (var_a + var_b), abs=1e-8)
    assert out["covariance"] == pytest.approx(0.0, abs=1e-8)
    assert out["residual"] == pytest.approx(0.0, abs=1e-8)


def test_variance_decomposition_unbalanced_adds_up_and_is_seeded():
    rng = np.random.default_rng(2)
    rows = [(f"G{g}", f"C{c}") for g in range(8) for c in range(15) if rng.uniform() < 0.7]
    df = pd.DataFrame(rows, columns=["geo", "citizen"])
    df["log_rate"] = rng.normal(size=len(df)) + df["geo"].str[1:].astype(int) * 0.3
    d1 = variance_decomposition(df, reps=30, seed=9)
    d2 = variance_decomposition(df, reps=30, seed=9)
    assert d1["share"].sum() == pytest.approx(1.0, abs=1e-8)  # exact decomposition
    pd.testing.assert_frame_equal(d1, d2)
    with pytest.raises(ValueError, match="need at least 3"):
        variance_decomposition(df.iloc[:2])


@pytest.mark.parametrize(
    ("lo", "hi", "sign", "expected"),
    [(0.1, 0.3, 1, SUPPORTED), (-0.3, -0.1, 1, NOT_SUPPORTED), (-0.1, 0.2, 1, INCONCLUSIVE),
     (-0.3, -0.1, -1, SUPPORTED), (0.1, 0.3, -1, NOT_SUPPORTED), (np.nan, 0.1, 1, UNTESTABLE)],
)
def test_claim_verdict(lo, hi, sign, expected):
    assert claim_verdict(lo, hi, sign)[0] == expected


def test_visa_treatments_switch_on_in_event_year():
    panel = pd.DataFrame({"geo": ["DE"] * 4 + ["FR"] * 2, "citizen": ["GE"] * 4 + ["MA"] * 2,
                          "year": [2015, 2016, 2017, 2018, 2016, 2017]})
    ev = pd.DataFrame({"event_id": ["VL-GE", "VF-GE"], "citizen": ["GE", "GE"], "event_type": ["visa_liberalisation", "visa_facilitation"],
                       "date": pd.to_datetime(["2017-03-28", "2011-03-01"])})
    out = visa_treatments(panel, ev)
    assert out["visa_liberalisation"].tolist() == [0, 0, 1, 1, 0, 0]
    assert out["visa_facilitation"].tolist() == [1, 1, 1, 1, 0, 0]
    assert out["visa_liberalisation_cohort"].iloc[0] == 2017


def _constructed_sample(beta_asylum: float, beta_found: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns = orders * exp(corridor + year + beta_asylum log(1 + asylum) + beta_found log((1 + found) / orders)), exactly."""
    rng = np.random.default_rng(11)
    rows = []
    for g in ("DE", "FR", "NL"):
        for k in range(12):
            c = ["AF", "IQ", "IR", "MA", "DZ", "TN", "NG", "PK", "SY", "ER", "SO", "GE"][k]
            alpha = rng.normal(-1, 0.3)
            for y in range(2012, 2017):
                orders = float(rng.integers(50, 500))
                found = float(rng.integers(10, 400))
                asylum = float(rng.integers(0, 900))
                mu = orders * np.exp(alpha + 0.05 * (y - 2012) + beta_asylum * np.log1p(asylum) + beta_found * np.log((1 + found) / orders))
                rows.append({"geo": g, "citizen": c, "year": y, "orders": orders, "found_illegal": found, "returns": mu, "asylum": asylum})
    df = pd.DataFrame(rows)
    df["corridor"] = df["geo"] + "-" + df["citizen"]
    asy = df[["geo", "citizen", "year", "asylum"]].rename(columns={"asylum": "asylum_first_time"})
    asy = asy[asy["asylum_first_time"] > 0]  # the extract lists no zeros: absent cells in a reported geo-year are 0
    return df.drop(columns="asylum"), asy


def test_claim2_verdicts_from_constructed_panel():
    sample, asylum = _constructed_sample(-0.3, 0.2)
    rows = {r["claim_id"]: r for r in _claim2(sample, asylum, "constructed", 0.05, "")}
    assert rows["2a"]["estimate"] == pytest.approx(-0.3, abs=1e-6)
    assert rows["2a"]["verdict"] == SUPPORTED  # fewer returns per order where more asylum applications: as claimed
    assert rows["2b"]["estimate"] == pytest.approx(0.2, abs=1e-6)
    assert rows["2b"]["verdict"] == NOT_SUPPORTED  # more found illegally present per order goes with MORE returns
    assert rows["2a"]["n_obs"] == len(sample)
    assert "association" in rows["2a"]["caveat"]


def test_claim2_without_asylum_data_cannot_be_tested():
    sample, _ = _constructed_sample(0.0, 0.0)
    (row,) = _claim2(sample, None, "v", 0.05, "asylum applications not available: no such directory")
    assert row["verdict"] == UNTESTABLE and "no such directory" in row["reason"]


def test_cli_claims_on_snapshot(eurostat_dir, capsys):
    from returnstudy.cli import main

    rc = main(["claims", "--data", str(eurostat_dir), "--format", "json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["claim_id"][0] for r in rows} == {"1", "2", "3", "4", "5"}
    allowed = {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, UNTESTABLE}
    assert all(r["verdict"] in allowed and r["reason"] for r in rows)
    assert all("migr_eiord@" in r["vintage"] for r in rows)
    one_a = next(r for r in rows if r["claim_id"] == "1a")
    assert one_a["n_obs"] == 31  # reporting countries in the snapshot's Part 1 diagnostics
    visa = [r for r in rows if r["claim_id"].startswith("5")]
    assert any("VL-XK 2024" in r["reason"] for r in visa)  # an event outside every design's years is named


@pytest.mark.parametrize("connected", [True, False])
def test_two_way_shares_equal_dense_least_squares(connected: bool) -> None:
    """The shares equal those of a dense minimum-norm least-squares fit on all the dummies, on a
    connected unbalanced grid (exact projection) and on one of two disconnected blocks."""
    from returnstudy.claims import _two_way_shares

    rng = np.random.default_rng(4)
    rows = [(g, c) for g in range(12) for c in range(40) if rng.uniform() < 0.35]
    if not connected:  # reporters 0-5 only with citizenships 0-19, 6-11 only with 20-39
        rows = [(g, c) for g, c in rows if (g < 6) == (c < 20)]
    g = np.array([r[0] for r in rows])
    c = np.array([r[1] for r in rows])
    y = rng.normal(size=len(g)) + 0.4 * g + rng.normal(size=40)[c]
    D = np.hstack([(g[:, None] == np.arange(12)).astype(float), (c[:, None] == np.arange(40)).astype(float)])
    yc = y - y.mean()
    coef = np.linalg.lstsq(D, yc, rcond=None)[0]
    a, b = coef[:12][g], coef[12:][c]
    a, b = a - a.mean(), b - b.mean()
    v = np.var(yc)
    want = {"geo": np.var(a) / v, "citizen": np.var(b) / v, "covariance": 2 * np.cov(a, b, bias=True)[0, 1] / v,
            "residual": np.var(yc - a - b) / v}
    got = _two_way_shares(y, g, c)
    for k, val in want.items():
        assert got[k] == pytest.approx(val, abs=1e-9), k
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-12)
