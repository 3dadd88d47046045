"""Result objects (returnstudy.results): tables, Poisson columns, Wald tests, display."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from returnstudy.results import EstimationResult, add_poisson_columns, format_vintage, make_table


def _result(df_t: float | None = 20.0) -> EstimationResult:
    names = ["a", "b", "c"]
    params = pd.Series([0.5, -0.2, 0.1], index=pd.Index(names, name="term"))
    V = np.array([[0.04, 0.01, 0.0], [0.01, 0.09, 0.02], [0.0, 0.02, 0.01]])
    vcov = pd.DataFrame(V, index=params.index, columns=params.index)
    table = make_table(params, np.sqrt(np.diag(V)), df=df_t, poisson=df_t is None)
    return EstimationResult(model="test", params=params, vcov=vcov, table=table, df_t=df_t,
                            info={"n_obs": 100, "n_corridors": 10, "years": (2012, 2016), "vintage": None})


def test_table_columns_by_hand() -> None:
    t = make_table([0.3], [0.1], index=["d"], df=10)
    crit = stats.t.ppf(0.975, 10)
    assert t.loc["d", "ci_low"] == pytest.approx(0.3 - crit * 0.1)
    assert t.loc["d", "p_value"] == pytest.approx(2 * stats.t.sf(3.0, 10))
    z = make_table([0.3], [0.1], index=["d"], df=None, poisson=True)
    assert z.loc["d", "p_value"] == pytest.approx(2 * stats.norm.sf(3.0))
    assert z.loc["d", "irr"] == pytest.approx(np.exp(0.3))
    assert z.loc["d", "pct_effect"] == pytest.approx(100 * (np.exp(0.3) - 1))
    assert z.loc["d", "pct_ci_high"] == pytest.approx(100 * (np.exp(0.3 + 1.959963984540054 * 0.1) - 1))
    assert list(add_poisson_columns(t).columns[-4:]) == ["irr", "pct_effect", "pct_ci_low", "pct_ci_high"]


def test_wald_test_matrix_and_terms() -> None:
    r = _result(df_t=20.0)
    b = r.params.to_numpy()
    V = r.vcov.to_numpy()
    R = np.array([[1.0, 0, 0], [0, 1.0, -1.0]])
    d = R @ b - np.array([0.4, 0.0])
    W = d @ np.linalg.solve(R @ V @ R.T, d)
    wt = r.wald_test(R, [0.4, 0.0])
    assert wt.statistic == pytest.approx(W)
    assert wt.p_value == pytest.approx(stats.f.sf(W / 2, 2, 20))
    wt2 = r.wald_test(terms=["a", "c"])
    sub = b[[0, 2]]
    W2 = sub @ np.linalg.solve(V[np.ix_([0, 2], [0, 2])], sub)
    assert wt2.statistic == pytest.approx(W2)
    chi = _result(df_t=None).wald_test(terms=["a"])
    assert chi.p_value == pytest.approx(stats.chi2.sf(0.25 / 0.04, 1))
    with pytest.raises(KeyError, match="zzz"):
        r.wald_test(terms=["zzz"])
    with pytest.raises(ValueError, match="columns"):
        r.wald_test(np.ones((1, 2)))


def test_summary_and_html_and_vintage() -> None:
    r = _result()
    r.info["vintage"] = {"migr_eiord": {"years": [2012, 2016], "last_update": {"": 5}, "sha256": "abcdef1234567890"}}
    s = r.summary()
    assert "100 corridor-years, 10 corridors" in s and "2012-2016" in s
    assert "migr_eiord (years 2012-2016; last update not given; sha256 abcdef123456)" in s
    assert "<li>" in r._repr_html_()
    assert format_vintage(None) == "not recorded"
    with pytest.raises(KeyError, match="available"):
        r.coef("nope")


def test_synthetic_vintage_is_labelled_in_summaries() -> None:
    import returnstudy as rs

    panel = rs.simulate_panel(seed=3, n_geo=6, n_citizen=20)
    res = rs.ppml(panel, treatments=["bilateral_binding"])
    assert "Data vintage: synthetic (SYNTHETIC simulate_panel(seed=3" in res.summary()


def test_vintage_labels_are_readable() -> None:
    from returnstudy.results import format_last_update, vintage_label

    v = {
        "migr_eirtn": {"last_update": {"": 25719, "20/09/24 23:00:00": 12672}},
        "migr_eiord": {"last_update": {"": 26235}},
        "migr_eipre": {},
    }
    assert vintage_label(v) == "migr_eiord@not given; migr_eipre@not given; migr_eirtn@20/09/24 23:00:00, not given"
    assert format_last_update(v["migr_eirtn"]["last_update"]) == "20/09/24 23:00:00 (12672 rows), not given (25719 rows)"
    assert format_last_update(None) == "not given" and vintage_label(None) == "not recorded"


def test_repr_is_one_line_summary_is_long() -> None:
    r = _result()
    r.info.update(cluster="citizen", n_clusters=12)
    assert repr(r) == "<EstimationResult test: 3 terms, 100 corridor-years, 10 corridors, SE clustered by citizen (12 clusters); .summary() for details>"
    assert len(r.summary().splitlines()) > 8


def test_poisson_table_equals_adding_the_poisson_columns() -> None:
    """make_table(poisson=True) builds the Poisson columns with the table: the same numbers and
    column order as add_poisson_columns on the linear table."""
    est, se = np.array([0.1, -0.4, 2.0]), np.array([0.05, 0.3, 1e-3])
    got = make_table(est, se, index=["a", "b", "c"], poisson=True)
    want = add_poisson_columns(make_table(est, se, index=["a", "b", "c"]))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.loc["b", "pct_ci_high"] == 100.0 * np.expm1(-0.4 + stats.norm.ppf(0.975) * 0.3)
