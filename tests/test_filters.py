"""Filter steps on hand-built panels with known answers, flow-table arithmetic, error paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnstudy.filters import FILTERS, FLOW_COLUMNS, VISA_FREE, FilterError, apply_filters, describe_filters, validate_steps
from returnstudy.spec import load_spec

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "specs"


def make_panel(rows: list[tuple], attrs: dict | None = None) -> pd.DataFrame:
    """Contract-shaped panel from (geo, citizen, year, orders, returns[, thrd]) tuples."""
    df = pd.DataFrame(
        [r if len(r) == 6 else (*r, np.nan) for r in rows],
        columns=["geo", "citizen", "year", "orders", "returns", "returns_third_country"],
    )
    df["year"] = df["year"].astype("int64")
    for c in ("orders", "returns", "returns_third_country"):
        df[c] = df[c].astype("float64")
    df["found_illegal"] = np.nan
    df["corridor"] = df["geo"] + "-" + df["citizen"]
    df["return_rate"] = df["returns"] / df["orders"].where(df["orders"] > 0)
    df = df.sort_values(["geo", "citizen", "year"]).reset_index(drop=True)
    df["orders_lag1"] = df.groupby("corridor")["orders"].shift()
    for v in ("orders", "returns", "returns_third_country", "found_illegal"):
        df[f"{v}_flag"] = ""
    df["returns_third_country_imputed_zero"] = False
    df["found_illegal_imputed_zero"] = False
    df.attrs["vintage"] = attrs if attrs is not None else {"migr_eiord": {"last_update": "test"}}
    return df


def run(panel: pd.DataFrame, step: str, **params):
    return apply_filters(panel, [{"step": step, **params}])


# ----------------------------------------------------------------------------- registry


def test_registry_has_required_steps_with_rationale():
    required = {
        "eu_plus_corridors", "drop_aggregates", "years", "reported_geo_years", "min_orders",
        "return_rate_bound", "exclude_citizens", "balanced", "treatment_variation", "require_columns",
    }
    assert required <= set(FILTERS)
    table = describe_filters()
    assert set(table["step"]) == set(FILTERS)
    assert (table["rationale"].str.len() > 40).all()


# ----------------------------------------------------------------------------- each step


def test_eu_plus_corridors_geo_years_and_citizens():
    rows = []
    for geo in ("AT", "IS", "EU28", "HR", "UK"):
        for cit in ("AF", "CH"):
            for y in (2012, 2013, 2014):
                rows.append((geo, cit, y, 10.0, 5.0))
    p = make_panel(rows)
    out = run(p, "eu_plus_corridors").panel
    # Iceland and the EU28 aggregate are not EU+; Croatia joins on 2013-07-01; CH citizens are EU+/EFTA
    assert set(out["citizen"]) == {"AF"}
    got = set(map(tuple, out[["geo", "year"]].drop_duplicates().to_numpy().tolist()))
    want = {("AT", y) for y in (2012, 2013, 2014)} | {("HR", 2013), ("HR", 2014)} | {("UK", y) for y in (2012, 2013, 2014)}
    assert got == want
    out2 = run(p, "eu_plus_corridors", uk_until=2013).panel
    assert set(out2.loc[out2["geo"] == "UK", "year"]) == {2012, 2013}


def test_drop_aggregates_and_specials():
    rows = [(g, c, 2014, 10.0, 5.0) for g in ("AT", "EU28") for c in ("AF", "TOTAL", "STLS", "UNK", "ASI")]
    p = make_panel(rows)
    out = run(p, "drop_aggregates").panel
    assert list(out["corridor"]) == ["AT-AF"]
    keep_special = run(p, "drop_aggregates", specials=False).panel
    assert sorted(keep_special["citizen"]) == ["AF", "STLS", "UNK"]
    extra = run(p, "drop_aggregates", extra=["AF"], specials=False).panel
    assert sorted(extra["citizen"]) == ["STLS", "UNK"]


def test_years_inclusive():
    p = make_panel([("AT", "AF", y, 10.0, 5.0) for y in range(2010, 2016)])
    assert sorted(run(p, "years", start=2012, end=2014).panel["year"]) == [2012, 2013, 2014]
    assert sorted(run(p, "years", start=2014).panel["year"]) == [2014, 2015]
    assert sorted(run(p, "years", end=2010).panel["year"]) == [2010]
    with pytest.raises(FilterError, match="give start, end or both"):
        run(p, "years")
    with pytest.raises(FilterError, match="after end"):
        run(p, "years", start=2015, end=2012)


def test_reported_geo_years_absent_vs_zero_vs_imputed():
    rows = [
        # AT 2013: orders not reported at all (NaN for every corridor) -> dropped
        ("AT", "AF", 2012, 10, 5), ("AT", "MA", 2012, 20, 5),
        ("AT", "AF", 2013, np.nan, 5), ("AT", "MA", 2013, np.nan, 0),
        # DE 2013: returns reported as zeros everywhere -> kept unless zero_as_unreported
        ("DE", "AF", 2012, 10, 5), ("DE", "MA", 2012, 10, np.nan),
        ("DE", "AF", 2013, 10, 0), ("DE", "MA", 2013, 0, 0),
    ]
    p = make_panel(rows)
    res = run(p, "reported_geo_years")
    gy = set(map(tuple, res.panel[["geo", "year"]].drop_duplicates().to_numpy().tolist()))
    assert gy == {("AT", 2012), ("DE", 2012), ("DE", 2013)}
    assert "AT 2013 (orders)" in res.flow.loc[0, "note"]
    res2 = run(p, "reported_geo_years", zero_as_unreported=True)
    gy2 = set(map(tuple, res2.panel[["geo", "year"]].drop_duplicates().to_numpy().tolist()))
    assert gy2 == {("AT", 2012), ("DE", 2012)}
    # require="any": a geo-year survives if one of the columns is reported
    res3 = run(p, "reported_geo_years", require="any")
    assert len(res3.panel) == len(p)
    # imputed zeros are not reports
    p2 = p.copy()
    p2["returns_third_country"] = 0.0
    p2.loc[p2["geo"] == "AT", "returns_third_country_imputed_zero"] = True
    res4 = run(p2, "reported_geo_years", columns=["returns_third_country"])
    assert set(res4.panel["geo"]) == {"DE"}


def test_min_orders_three_rules():
    rows = [
        ("AT", "AF", 2012, 10, 1), ("AT", "AF", 2013, 10, 1), ("AT", "AF", 2014, np.nan, 1),  # mean 10, total 20
        ("AT", "MA", 2012, 5, 1), ("AT", "MA", 2013, 20, 1), ("AT", "MA", 2014, 5, 1),  # mean 10, min 5, total 30
        ("AT", "DZ", 2012, 0, 1), ("AT", "DZ", 2013, 5, 1), ("AT", "DZ", 2014, 10, 1),  # mean 5, total 15
        ("AT", "TN", 2012, np.nan, 1), ("AT", "TN", 2013, np.nan, 1), ("AT", "TN", 2014, np.nan, 1),  # nothing
    ]
    p = make_panel(rows)
    mean = run(p, "min_orders", n=10).panel
    assert sorted(mean["citizen"].unique()) == ["AF", "MA"]
    every = run(p, "min_orders", n=5, how="every_year").panel
    assert sorted(every["citizen"].unique()) == ["MA"]  # AF has a missing year, DZ a zero
    total = run(p, "min_orders", n=20, how="total").panel
    assert sorted(total["citizen"].unique()) == ["AF", "MA"]
    res = run(p, "min_orders", n=10)
    assert res.flow.loc[0, "corridors_before"] == 4
    assert res.flow.loc[0, "corridors_after"] == 2
    assert "dropped 2 corridors with mean orders < 10: AT-DZ, AT-TN" in res.flow.loc[0, "note"]
    with pytest.raises(FilterError, match="n must be >= 0"):
        run(p, "min_orders", n=-1)


def test_min_orders_empty_result_is_error():
    p = make_panel([("AT", "AF", 2012, 5, 1), ("AT", "AF", 2013, 5, 1)])
    with pytest.raises(FilterError, match=r"filter step 2 'min_orders'.*leaves zero rows"):
        apply_filters(p, [{"step": "years", "start": 2012}, {"step": "min_orders", "n": 10}])


def test_return_rate_bound_drop_and_cap():
    rows = [
        ("AT", "AF", 2012, 10, 5),   # 0.5
        ("AT", "AF", 2013, 10, 30),  # 3.0
        ("AT", "AF", 2014, 0, 5),    # rate NaN: kept
        ("AT", "MA", 2012, 20, 25),  # 1.25
    ]
    p = make_panel(rows)
    dropped = run(p, "return_rate_bound", bound=1.0)
    assert len(dropped.panel) == 2
    assert dropped.flow.loc[0, "returns_after"] == 5 + 5
    capped = run(p, "return_rate_bound", bound=2.0, action="cap")
    out = capped.panel.set_index(["citizen", "year"])
    assert out.loc[("AF", 2013), "returns"] == 20.0
    assert out.loc[("AF", 2013), "return_rate"] == 2.0
    assert bool(out.loc[("AF", 2013), "return_rate_capped"]) is True
    assert out.loc[("MA", 2012), "returns"] == 25.0
    assert capped.flow.loc[0, "returns_before"] - capped.flow.loc[0, "returns_after"] == 10.0
    assert capped.flow.loc[0, "dropped_rows"] == 0
    assert "removed 10 returns" in capped.flow.loc[0, "note"]


def test_exclude_citizens_groups_and_codes():
    cits = ["AF", "AL", "RS", "XK", "MA", "UA", "US"]
    p = make_panel([("AT", c, 2014, 10, 5) for c in cits])
    wb = run(p, "exclude_citizens", citizens="western_balkans").panel
    assert sorted(wb["citizen"]) == ["AF", "MA", "UA", "US"]
    vf = run(p, "exclude_citizens", citizens=["visa_free"]).panel
    assert sorted(vf["citizen"]) == ["AF", "MA", "XK"]  # Kosovo: visa-free only from 2024
    mixed = run(p, "exclude_citizens", citizens=["western_balkans", "MA"])
    assert sorted(mixed.panel["citizen"]) == ["AF", "UA", "US"]
    assert "AL" in VISA_FREE and "XK" not in VISA_FREE and "UK" not in VISA_FREE
    with pytest.raises(FilterError, match="unknown citizenship group 'balkans'"):
        run(p, "exclude_citizens", citizens=["balkans"])


def test_balanced_window_and_columns():
    rows = [
        ("AT", "AF", 2012, 10, 5), ("AT", "AF", 2013, 10, 5), ("AT", "AF", 2014, 10, 5),
        ("AT", "MA", 2012, 10, 5), ("AT", "MA", 2014, 10, 5),  # 2013 row absent
        ("AT", "DZ", 2012, 10, 5), ("AT", "DZ", 2013, 10, np.nan), ("AT", "DZ", 2014, 10, 5),  # returns missing
    ]
    p = make_panel(rows)
    assert sorted(run(p, "balanced").panel["citizen"].unique()) == ["AF"]
    assert sorted(run(p, "balanced", columns=["orders"]).panel["citizen"].unique()) == ["AF", "DZ"]
    # window 2014 only: everyone observed; rows outside the window stay
    res = run(p, "balanced", start=2014, end=2014)
    assert len(res.panel) == len(p)


def test_treatment_variation():
    p = make_panel([("AT", c, y, 10, 5) for c in ("AF", "MA", "DZ", "TN") for y in (2012, 2013, 2014)])
    p["eu_agreement"] = 0.0
    p.loc[(p["citizen"] == "AF") & (p["year"] >= 2013), "eu_agreement"] = 1.0  # switches on
    p.loc[p["citizen"] == "MA", "eu_agreement"] = 1.0  # always treated
    p["bilateral_binding"] = 0.0
    p.loc[(p["citizen"] == "DZ") & (p["year"] == 2014), "bilateral_binding"] = 1.0
    cols = ["eu_agreement", "bilateral_binding"]
    any_ = run(p, "treatment_variation", treatments=cols).panel
    assert sorted(any_["citizen"].unique()) == ["AF", "DZ"]
    all_ = run(p, "treatment_variation", treatments=cols, require="all", keep_never_treated=True).panel
    assert sorted(all_["citizen"].unique()) == ["TN"]  # nobody varies in both; TN never treated
    controls = run(p, "treatment_variation", treatments=cols, keep_never_treated=True).panel
    assert sorted(controls["citizen"].unique()) == ["AF", "DZ", "TN"]
    with pytest.raises(FilterError, match=r"no treatment column\(s\) \['eu_nonbinding'"):
        run(p, "treatment_variation")


def test_require_columns():
    p = make_panel([("AT", "AF", 2012, 10, np.nan), ("AT", "AF", 2013, np.nan, 5), ("AT", "AF", 2014, 10, 5)])
    res = run(p, "require_columns", columns=["orders", "returns"])
    assert list(res.panel["year"]) == [2014]
    assert "{'orders': 1, 'returns': 1}" in res.flow.loc[0, "note"]
    with pytest.raises(FilterError, match=r"no column\(s\) \['nonexistent'\]"):
        run(p, "require_columns", columns=["nonexistent"])


# ----------------------------------------------------------------------------- flow table


def _random_panel(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for geo in ("AT", "DE", "FR", "IS"):
        for cit in ("AF", "AL", "MA", "DZ", "TOTAL", "STLS", "RS"):
            for y in range(2011, 2017):
                o = float(rng.poisson(15)) if rng.random() > 0.1 else np.nan
                r = float(rng.poisson(8)) if rng.random() > 0.1 else np.nan
                rows.append((geo, cit, y, o, r))
    return make_panel(rows)


def test_flow_arithmetic_matches_direct_computation():
    p = _random_panel(1)
    steps = [
        {"step": "eu_plus_corridors"},
        {"step": "drop_aggregates"},
        {"step": "years", "start": 2012, "end": 2016},
        {"step": "min_orders", "n": 12, "how": "mean"},
        {"step": "exclude_citizens", "citizens": "western_balkans", "enabled": False},
        {"step": "require_columns", "columns": ["orders", "returns"]},
    ]
    res = apply_filters(p, steps)
    f = res.flow
    assert list(f["position"]) == [1, 2, 3, 4, 5, 6]
    assert (f["rows_after"].iloc[:-1].to_numpy() == f["rows_before"].iloc[1:].to_numpy()).all()
    assert (f["orders_after"].iloc[:-1].to_numpy() == f["orders_before"].iloc[1:].to_numpy()).all()
    assert (f["dropped_rows"] == f["rows_before"] - f["rows_after"]).all()
    assert f.loc[0, "rows_before"] == len(p)
    assert f.loc[0, "orders_before"] == p["orders"].sum()
    # independent computation of the whole pipeline
    q = p[p["geo"].isin(["AT", "DE", "FR"]) & ~p["citizen"].isin(["TOTAL", "STLS"]) & p["year"].between(2012, 2016)]
    means = q.groupby("corridor")["orders"].mean()
    q = q[q["corridor"].isin(means[means >= 12].index)]
    assert f.loc[3, "rows_after"] == len(q)
    assert f.loc[3, "corridors_after"] == q["corridor"].nunique()
    assert f.loc[3, "orders_after"] == q["orders"].sum()
    assert f.loc[3, "returns_after"] == q["returns"].sum()
    q = q.dropna(subset=["orders", "returns"])
    assert f.iloc[-1]["rows_after"] == len(q) == len(res.panel)
    assert res.panel["returns"].sum() == q["returns"].sum()
    # the disabled step is listed, changes nothing, says so
    assert f.loc[4, "enabled"] == False  # noqa: E712
    assert f.loc[4, "rows_before"] == f.loc[4, "rows_after"]
    assert "skipped" in f.loc[4, "note"]
    assert "RS" in set(res.panel["citizen"])
    # resolved parameters, defaults included
    assert f.loc[3, "params"] == "n=12.0, how='mean', column='orders'"
    # counts of rows and corridors are int64; steps given as dicts have no spec line (NA)
    ints = ["position", "rows_before", "rows_after", "corridors_before", "corridors_after", "dropped_rows"]
    assert all(f[c].dtype == np.int64 for c in ints)
    assert f["line"].dtype == "Int64" and f["line"].isna().all()
    assert list(f.columns) == FLOW_COLUMNS
    # attrs: vintage kept, flow records added; the input panel is untouched
    assert res.panel.attrs["vintage"] == p.attrs["vintage"]
    assert [r["step"] for r in res.panel.attrs["filters"]] == list(f["step"])
    assert "filters" not in p.attrs
    assert len(p) == 4 * 7 * 6
    text = res.summary()
    assert "min_orders" in text and "Data vintage" in text
    assert "<table" in res._repr_html_()


def test_apply_filters_accepts_spec(tmp_path):
    spec = load_spec(FIXTURES / "small.toml")
    p = _random_panel(2)
    res = apply_filters(p, spec)
    assert list(res.flow["step"]) == [s.step for s in spec.filters]
    assert list(res.flow["line"]) == [s.line for s in spec.filters]
    assert res.flow["line"].dtype == "Int64" and res.flow["line"].notna().all()
    assert set(res.panel["year"]) <= set(range(2012, 2016))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "steps, pattern",
    [
        ([{"step": "min_order"}], r"filter step 1 'min_order'.*unknown step; valid steps: \[.*'min_orders'"),
        ([{"step": "years", "start": 2012}, {"step": "min_orders", "m": 3}], r"filter step 2 'min_orders'.*unknown parameter\(s\) \['m'\]"),
        ([{"step": "min_orders", "n": "ten"}], r"filter step 1 'min_orders'.*parameter 'n' must be float, got str 'ten'"),
        ([{"step": "min_orders", "how": "median"}], r"parameter 'how' must be 'mean' \| 'every_year' \| 'total'"),
        ([{"step": "years", "start": 2012.5}], r"parameter 'start' must be int \| None"),
        ([{"step": "min_orders", "n": True}], r"parameter 'n' must be float, got bool"),
        ([{"step": "require_columns"}], r"missing required parameter 'columns'"),
        ([{"step": "require_columns", "columns": "orders"}], r"'columns' must be list\[str\]"),
        ([{"n": 3}], r"filter step 1: no 'step' key"),
        (["min_orders"], r"filter step 1: expected a dict"),
        ([{"step": "years", "start": 2012, "enabled": "no"}], r"'enabled' must be true or false"),
    ],
)
def test_bad_steps_raise_clear_errors(steps, pattern):
    p = make_panel([("AT", "AF", 2012, 10, 5)])
    with pytest.raises(FilterError, match=pattern):
        apply_filters(p, steps)
    with pytest.raises(FilterError, match=pattern):
        validate_steps(steps)


def test_steps_must_be_a_list():
    p = make_panel([("AT", "AF", 2012, 10, 5)])
    with pytest.raises(TypeError, match="list of"):
        apply_filters(p, "min_orders")


def test_error_names_spec_file_and_line(tmp_path):
    text = (FIXTURES / "small.toml").read_text()
    spec = load_spec(FIXTURES / "small.toml")
    p = _random_panel(3)
    bad = tmp_path / "empty.toml"
    bad.write_text(text.replace("n = 12", "n = 1000000"))
    spec = load_spec(bad)
    line = next(s.line for s in spec.filters if s.step == "min_orders")
    lines = bad.read_text().splitlines()
    assert lines[line - 1].strip() == "[[filters]]"
    assert lines[line].strip() == 'step = "min_orders"'
    with pytest.raises(FilterError, match=rf"filter step 3 'min_orders' \({bad}, line {line}\): leaves zero rows"):
        apply_filters(p, spec)


# ----------------------------------------------------------------------------- real snapshot

EU28 = set("AT BE BG CY CZ DE DK EE EL ES FI FR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK UK".split())
EU_PLUS_CITIZENS = EU28 | {"CH", "NO", "IS", "LI"}
NON_COUNTRY = {"TOTAL", "STLS", "UNK", "RNC", "ASI", "UK_OCT", "EU28", "EU27_2007"}


def test_default_spec_on_snapshot_matches_plain_pandas(eurostat_dir):
    from returnstudy.panel import load_panel

    spec = load_spec()
    kwargs = {k: v for k, v in spec.data.load_panel_kwargs().items() if k != "data_dir"}
    res = apply_filters(load_panel(eurostat_dir, **kwargs), spec)

    def read(name: str) -> pd.DataFrame:
        d = pd.read_csv(eurostat_dir / name, dtype=str, keep_default_na=False)
        d["year"] = d["TIME_PERIOD"].astype(int)
        d["value"] = pd.to_numeric(d["OBS_VALUE"].replace({"": None, ":": None}))
        return d

    o = read("migr_eiord.csv").rename(columns={"value": "orders"})
    r = read("migr_eirtn.csv")
    r = r[r["c_dest"] == "TOTAL"].rename(columns={"value": "returns"})
    k = ["geo", "citizen", "year"]
    m = o[k + ["orders"]].merge(r[k + ["returns"]], on=k, how="outer")
    m = m[m["geo"].isin(EU28 | {"NO", "CH"}) & ~((m["geo"] == "HR") & (m["year"] < 2013))]
    m = m[~m["citizen"].isin(EU_PLUS_CITIZENS | NON_COUNTRY) & m["year"].between(2012, 2016)]
    # geo-years with no non-zero value of orders or of returns are non-reports
    rep = m.groupby(["geo", "year"]).agg(o=("orders", lambda s: (s.fillna(0) != 0).any()), r=("returns", lambda s: (s.fillna(0) != 0).any()))
    ok = rep[rep["o"] & rep["r"]].index
    m = m[pd.MultiIndex.from_frame(m[["geo", "year"]]).isin(ok)]
    m["corridor"] = m["geo"] + "-" + m["citizen"]
    mean = m.groupby("corridor")["orders"].mean()
    m = m[m["corridor"].isin(mean[mean >= 10].index)].dropna(subset=["orders", "returns"])

    final = res.flow.iloc[-1]
    assert final["rows_after"] == len(m) == len(res.panel)
    assert final["corridors_after"] == m["corridor"].nunique()
    assert final["orders_after"] == m["orders"].sum()
    assert final["returns_after"] == m["returns"].sum()
    f = res.flow
    assert (f["rows_after"].iloc[:-1].to_numpy() == f["rows_before"].iloc[1:].to_numpy()).all()
    assert res.panel.attrs["vintage"]["migr_eiord"]["sha256"]
    assert len(res.panel.attrs["filters"]) == len(spec.filters)


def test_filter_result_repr_is_one_line_and_vintage_readable():
    p = _random_panel(3)
    p.attrs["vintage"] = {"migr_eiord": {"last_update": {"": 10, "20/09/24 23:00:00": 5}, "sha256": "0123456789abcdef"}}
    res = apply_filters(p, [{"step": "min_orders", "n": 12}])
    r = repr(res)
    assert r == (f"<FilterResult: 1 steps, {len(p)} -> {len(res.panel)} corridor-years, "
                 f"{len(set(zip(res.panel['geo'], res.panel['citizen'])))} corridors; .summary() for the flow table>")
    text = res.summary()
    assert "Data vintage: migr_eiord (last update 20/09/24 23:00:00, not given; sha256 0123456789ab)" in text
    assert "{" not in text and "data vintage: migr_eiord (last update 20/09/24 23:00:00, not given" in res._repr_html_()
