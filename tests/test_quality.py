"""Part 1 diagnostics: hand-built raw tables with known answers, the real snapshot against plain
pandas on the CSV files, determinism of the saved output, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnstudy.quality import CHECKS, QualityReport, quality_report

NaN = np.nan

# (geo, citizen) -> values for 2014, 2015, 2016; NaN = cell absent from the file
ORDERS = {
    ("AT", "AF"): (100, 110, 120), ("AT", "MA"): (50, 55, 60), ("AT", "TOTAL"): (150, 165, 180),
    ("BE", "AF"): (200, 210, NaN), ("BE", "MA"): (0, 20, 25), ("BE", "TOTAL"): (200, 240, 300),
    ("CY", "AF"): (40, 42, 445), ("CY", "MA"): (10, 10, 10), ("CY", "TOTAL"): (50, 52, 455),
}
RETURNS = {
    ("AT", "AF"): (50, 60, 70), ("AT", "MA"): (80, 20, 30), ("AT", "TOTAL"): (130, 80, 100),
    ("BE", "AF"): (100, 100, NaN), ("BE", "MA"): (0, 10, 10), ("BE", "TOTAL"): (100, 110, 110),
    ("CY", "AF"): (20, 20, 200), ("CY", "MA"): (5, 5, 5), ("CY", "TOTAL"): (25, 25, 205),
}
THRD = {("AT", "AF"): (NaN, 70, NaN), ("AT", "MA"): (NaN, 10, NaN), ("BE", "AF"): (90, NaN, NaN)}
YEARS = (2014, 2015, 2016)


def raw_table(dataset: str, data: dict, c_dest: str | None = None, last_update: str = "") -> pd.DataFrame:
    """A table in the layout of ``read_eurostat_table``; NaN cells are left out (absent)."""
    rows = []
    for (geo, cit), values in data.items():
        for year, v in zip(YEARS, values):
            if np.isnan(v):
                continue
            row = {"dataset": dataset, "freq": "A", "citizen": cit}
            if c_dest is not None:
                row["c_dest"] = c_dest
            row.update({"age": "TOTAL", "sex": "T", "unit": "PER", "geo": geo, "period": str(year), "year": year,
                        "value": float(v), "flag": "", "last_update": last_update})
            rows.append(row)
    df = pd.DataFrame(rows)
    df["year"] = df["year"].astype("int64")
    return df


def synthetic_tables() -> dict[str, pd.DataFrame]:
    rtn = pd.concat(
        [raw_table("migr_eirtn", RETURNS, "TOTAL"), raw_table("migr_eirtn", THRD, "THRD", "20/09/24 23:00:00")],
        ignore_index=True,
    )
    return {"migr_eiord": raw_table("migr_eiord", ORDERS), "migr_eirtn": rtn}


@pytest.fixture(scope="module")
def synth() -> QualityReport:
    return quality_report(tables=synthetic_tables())


def row(q: QualityReport, geo: str, year: int) -> pd.Series:
    b = q.by_geo_year
    return b[(b["geo"] == geo) & (b["year"] == year)].iloc[0]


def verdict(q: QualityReport, geo: str) -> pd.Series:
    return q.verdicts.set_index("geo").loc[geo]


# ----------------------------------------------------------------------------- known answers


def test_coverage_zeros_missing(synth):
    assert len(synth.by_geo_year) == 9  # 3 geos x 3 years
    be16 = row(synth, "BE", 2016)
    assert be16["orders_expected"] == 2 and be16["orders_reported"] == 1 and be16["orders_missing"] == 1
    assert be16["orders_share_reported"] == 0.5
    assert row(synth, "BE", 2014)["orders_zero"] == 1 and row(synth, "BE", 2014)["orders_missing"] == 0
    assert row(synth, "AT", 2015)["orders_share_reported"] == 1.0
    assert verdict(synth, "BE")["coverage"] and not verdict(synth, "AT")["coverage"]
    assert "orders: 2016 0.50 < 0.9" in verdict(synth, "BE")["coverage_detail"]
    cov = synth.tables["coverage"]
    assert len(cov) == 18 and cov["share_reported"].sum() == 17.0  # 16 full + two half-covered geo-years


def test_returns_exceeding_orders(synth):
    b = synth.by_geo_year
    assert b["n_returns_gt_orders"].sum() == 1
    at14 = row(synth, "AT", 2014)
    assert at14["n_returns_gt_orders"] == 1 and at14["returns_in_gt_orders"] == 80
    assert at14["share_returns_in_gt_orders"] == pytest.approx(80 / 130)
    cells = synth.tables["returns_gt_orders"]
    assert cells[["geo", "citizen", "year"]].values.tolist() == [["AT", "MA", 2014]]
    assert cells["return_rate"].iloc[0] == 80 / 50
    # AT: 80 of 310 returns in such cells = 0.258 > 0.25
    v = verdict(synth, "AT")
    assert v["share_returns_in_gt_orders"] == pytest.approx(80 / 310)
    assert v["returns_exceed_orders"] and not verdict(synth, "CY")["returns_exceed_orders"]
    q = quality_report(tables=synthetic_tables(), rate_excess_share_max=0.26)
    assert not q.verdicts.set_index("geo").loc["AT", "returns_exceed_orders"]


def test_rounding(synth):
    cy15 = row(synth, "CY", 2015)
    assert cy15["orders_positive"] == 2 and cy15["orders_div5_share"] == 0.5
    v = verdict(synth, "CY")
    assert v["orders_div5_share"] == pytest.approx(5 / 6)
    assert v["rounding"] and "orders: 0.833 < 0.95" in v["rounding_detail"]
    assert not verdict(synth, "AT")["rounding"]


def test_breaks_median_plus_k_mad(synth):
    totals = {"AT": (150, 165, 180), "BE": (200, 240, 300), "CY": (50, 52, 455)}
    d = np.abs(np.concatenate([np.diff(np.log1p(np.array(t, float))) for t in totals.values()]))
    med = np.median(d)
    thr = med + 5 * np.median(np.abs(d - med))
    assert thr == pytest.approx(0.47765, abs=1e-4)
    nat = synth.tables["national_totals"]
    o = nat[nat["variable"] == "orders"]
    assert o["break_threshold"].iloc[0] == pytest.approx(thr)
    assert o.loc[o["break"], ["geo", "year"]].values.tolist() == [["CY", 2016]]
    assert row(synth, "CY", 2016)["orders_dlog"] == pytest.approx(np.log(456 / 53))
    assert verdict(synth, "CY")["break"] and not verdict(synth, "AT")["break"]
    # restricting the years restricts every diagnostic
    q = quality_report(tables=synthetic_tables(), years=(2014, 2015))
    assert sorted(q.by_geo_year["year"].unique()) == [2014, 2015]
    assert not q.tables["national_totals"]["break"].any()  # CY's jump is in 2016
    # a smaller k flags more
    q = quality_report(tables=synthetic_tables(), break_k=0.5)
    assert q.verdicts.set_index("geo").loc["BE", "break"]


def test_total_gap_against_total_row(synth):
    be16 = row(synth, "BE", 2016)
    assert be16["orders_total_row"] == 300 and be16["orders_sum_citizens"] == 25
    assert be16["orders_total_gap"] == pytest.approx((25 - 300) / 300)
    assert row(synth, "BE", 2015)["orders_total_gap"] == pytest.approx(-10 / 240)
    assert row(synth, "AT", 2014)["returns_total_gap"] == 0
    assert verdict(synth, "BE")["total_gap"] and not verdict(synth, "AT")["total_gap"]
    assert row(synth, "BE", 2016)["orders_total_source"] == "TOTAL row"


def test_third_country_returns_consistency(synth):
    at15 = row(synth, "AT", 2015)
    assert at15["n_thrd_gt_returns"] == 1
    assert at15["returns_third_country_sum"] == 80 and at15["thrd_to_returns_ratio"] == 1.0
    assert row(synth, "BE", 2014)["n_thrd_gt_returns"] == 0
    assert verdict(synth, "AT")["thrd_exceeds_total"] and not verdict(synth, "BE")["thrd_exceeds_total"]
    assert synth.tables["thrd_gt_returns"][["geo", "citizen", "year"]].values.tolist() == [["AT", "AF", 2015]]


def test_verdict_table_lists_failures_and_thresholds(synth):
    v = synth.verdicts.set_index("geo")
    assert v.loc["AT", "fails"] == "returns_exceed_orders;thrd_exceeds_total"
    assert v.loc["BE", "fails"] == "coverage;total_gap"
    assert v.loc["CY", "fails"] == "rounding;break"
    assert (v["n_fail"] == v[list(CHECKS)].sum(axis=1)).all()
    th = synth.tables["thresholds"].set_index("name")["value"]
    assert th["coverage_min"] == 0.9 and th["break_k"] == 5.0
    assert "break_threshold_orders" in th.index
    assert synth.thresholds["total_gap_max"] == 0.05


def test_all_zero_and_unreported_years():
    orders = {("AT", "AF"): (10, 0, 10), ("AT", "MA"): (5, 0, NaN), ("DE", "AF"): (10, NaN, 10), ("DE", "MA"): (10, NaN, 10)}
    returns = {("AT", "AF"): (5, 5, 5), ("AT", "MA"): (5, 5, 5), ("DE", "AF"): (5, 5, 5), ("DE", "MA"): (5, 5, 5)}
    q = quality_report(tables={"migr_eiord": raw_table("migr_eiord", orders), "migr_eirtn": raw_table("migr_eirtn", returns, "TOTAL")})
    at15, de15 = row(q, "AT", 2015), row(q, "DE", 2015)
    assert bool(at15["orders_all_zero"]) and at15["orders_zero"] == 2
    assert de15["orders_reported"] == 0 and de15["orders_share_reported"] == 0 and not de15["orders_all_zero"]
    v = q.verdicts.set_index("geo")
    assert v.loc["AT", "all_zero"] and "orders: 2015" in v.loc["AT", "all_zero_detail"]
    assert v.loc["DE", "coverage"] and not v.loc["DE", "all_zero"]
    # national total without a TOTAL row: the sum; a fall to zero is a finite dlog
    assert at15["orders_total_source"] == "sum over citizenships" and at15["orders_total"] == 0
    assert at15["orders_dlog"] == pytest.approx(-np.log(16))


def synthetic_panel() -> pd.DataFrame:
    """The synthetic tables as a contract panel (TOTAL rows kept), THRD absences as imputed zeros."""
    keys = sorted(set(ORDERS) | set(RETURNS))
    rows = []
    for geo, cit in keys:
        for i, year in enumerate(YEARS):
            o = ORDERS.get((geo, cit), (NaN,) * 3)[i]
            r = RETURNS.get((geo, cit), (NaN,) * 3)[i]
            t = THRD.get((geo, cit), (NaN,) * 3)[i]
            if np.isnan(o) and np.isnan(r):
                continue
            rows.append((geo, cit, year, o, r, t))
    p = pd.DataFrame(rows, columns=["geo", "citizen", "year", "orders", "returns", "returns_third_country"])
    p["corridor"] = p["geo"] + "-" + p["citizen"]
    imputed = p["returns_third_country"].isna() & (p["year"] >= 2014)
    p["returns_third_country_imputed_zero"] = imputed
    p.loc[imputed, "returns_third_country"] = 0.0
    p.attrs["vintage"] = {"migr_eiord": {"last_update": {"": 1}}}
    return p


def test_panel_input_matches_raw_input(synth):
    q = quality_report(panel=synthetic_panel())
    cols = ["geo", "year", "orders_share_reported", "orders_zero", "orders_total_gap", "returns_total",
            "n_returns_gt_orders", "n_thrd_gt_returns", "returns_third_country_sum"]
    pd.testing.assert_frame_equal(q.by_geo_year[cols], synth.by_geo_year[cols], check_dtype=False)
    assert q.verdicts["fails"].tolist() == synth.verdicts["fails"].tolist()
    assert q.vintage == {"migr_eiord": {"last_update": {"": 1}}}


def test_vintage_is_carried(synth):
    assert set(synth.vintage) == {"migr_eiord", "migr_eirtn"}
    assert synth.vintage["migr_eirtn"]["rows_used"] == {"returns": 26, "returns_third_country": 3}
    assert synth.vintage["migr_eirtn"]["last_update"] == {"": 26, "20/09/24 23:00:00": 3}
    assert synth.by_geo_year.attrs["vintage"] is synth.vintage
    assert row(synth, "AT", 2015)["returns_last_update"] == ""
    text = synth.summary()
    assert "migr_eirtn: last update" in text and "corridor-years with returns > orders: 1" in text
    assert "<table" in synth._repr_html_()


def test_figures_display_in_a_notebook(synth):
    import matplotlib.pyplot as plt

    figs = synth.figures()
    assert len(figs) == 3 and all(f._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n" for f in figs.values())
    assert plt.get_fignums() == []


def test_save_is_deterministic(tmp_path, synth):
    a = synth.save(tmp_path / "a")
    b = quality_report(tables=synthetic_tables()).save(tmp_path / "b")
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in a)
    assert names == sorted(p.relative_to(tmp_path / "b").as_posix() for p in b)
    assert "tables/quality_verdicts.csv" in names and "figures/quality_coverage_heatmap.png" in names
    assert "figures/quality_coverage_heatmap.data.csv" in names
    assert {n.split("/")[-1].split(".", 1)[0] for n in names if n.startswith("figures")} == {
        "quality_coverage_heatmap", "quality_return_rate_boxplot", "quality_national_totals"
    }
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    assert (tmp_path / "a" / "figures" / "quality_national_totals.png").stat().st_mode & 0o777 == 0o644
    shown = pd.read_csv(tmp_path / "a" / "figures" / "quality_national_totals.data.csv", keep_default_na=False)
    assert (shown["kind"] == "line").any() and shown["label"].str.contains("National totals").any()
    verd = pd.read_csv(tmp_path / "a" / "tables" / "quality_verdicts.csv", keep_default_na=False)
    assert verd["geo"].tolist() == ["AT", "BE", "CY"]


# ----------------------------------------------------------------------------- bad input


def test_bad_input_errors(tmp_path):
    t = synthetic_tables()
    with pytest.raises(ValueError, match="only one of data_dir, tables or panel"):
        quality_report(tmp_path, tables=t)
    with pytest.raises(KeyError, match=r"unknown variable\(s\) \['return'\]"):
        quality_report(tables=t, variables=["return"])
    with pytest.raises(ValueError, match="coverage_min must be in"):
        quality_report(tables=t, coverage_min=2)
    with pytest.raises(ValueError, match="rounding_base"):
        quality_report(tables=t, rounding_base=0)
    with pytest.raises(KeyError, match=r"tables\['migr_eiord'\] lacks column\(s\) \['value'\]"):
        quality_report(tables={"migr_eiord": t["migr_eiord"].drop(columns="value")})
    with pytest.raises(ValueError, match="none of the tables"):
        quality_report(tables={"migr_xyz": t["migr_eiord"]})
    with pytest.raises(TypeError, match="panel must be a DataFrame"):
        quality_report(panel=[1, 2])
    with pytest.raises(FileNotFoundError, match="migr_eiord not found"):
        quality_report(tmp_path)


# ----------------------------------------------------------------------------- real snapshot


@pytest.fixture(scope="module")
def snap(snapshot_dir: Path) -> QualityReport:
    return quality_report(snapshot_dir / "eurostat")


def _csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["value"] = pd.to_numeric(df["OBS_VALUE"].replace({":": None, "": None}))
    df["year"] = df["TIME_PERIOD"].astype(int)
    return df


AGGREGATE_GEOS = {"EU28", "EU27_2007", "EU27_2020"}
AGGREGATE_CITIZENS = {"TOTAL", "ASI", "AFR", "AME", "OCE", "EUR", "EU28", "EU27_2020", "EXT_EU28", "EXT_EU27_2020"}


def test_snapshot_returns_gt_orders_equals_plain_pandas(snap, snapshot_dir):
    d = snapshot_dir / "eurostat"
    o = _csv(d / "migr_eiord.csv")
    r = _csv(d / "migr_eirtn.csv")
    r = r[r["c_dest"] == "TOTAL"]
    keep = lambda x: x[~x["geo"].isin(AGGREGATE_GEOS) & ~x["citizen"].isin(AGGREGATE_CITIZENS)]  # noqa: E731
    m = keep(o)[["geo", "citizen", "year", "value"]].merge(
        keep(r)[["geo", "citizen", "year", "value"]], on=["geo", "citizen", "year"], suffixes=("_o", "_r")
    ).dropna()
    gt = m[m["value_r"] > m["value_o"]]
    assert len(gt) > 1000
    assert int(snap.by_geo_year["n_returns_gt_orders"].sum()) == len(gt)
    assert len(snap.tables["returns_gt_orders"]) == len(gt)
    assert snap.by_geo_year["returns_in_gt_orders"].sum() == gt["value_r"].sum()
    per_geo = gt.groupby("geo").size()
    got = snap.by_geo_year.groupby("geo")["n_returns_gt_orders"].sum()
    assert (got[got > 0].astype(int) == per_geo.reindex(got[got > 0].index)).all()


def test_snapshot_coverage_and_total_gap_equal_plain_pandas(snap, snapshot_dir):
    o = _csv(snapshot_dir / "eurostat" / "migr_eiord.csv")
    o = o[~o["geo"].isin(AGGREGATE_GEOS)]
    cits = o.loc[~o["citizen"].isin(AGGREGATE_CITIZENS) & o["value"].notna(), "citizen"].nunique()
    cz = o[(o["geo"] == "CZ") & (o["year"] == 2012)]
    n_cz = int((~cz["citizen"].isin(AGGREGATE_CITIZENS) & cz["value"].notna()).sum())
    got = row(snap, "CZ", 2012)
    assert got["orders_expected"] == cits
    assert got["orders_reported"] == n_cz
    assert got["orders_share_reported"] == pytest.approx(n_cz / cits)
    de = o[(o["geo"] == "DE") & (o["year"] == 2014)]
    total = de.loc[de["citizen"] == "TOTAL", "value"].iloc[0]
    s = de.loc[~de["citizen"].isin(AGGREGATE_CITIZENS), "value"].sum()
    assert row(snap, "DE", 2014)["orders_total_gap"] == pytest.approx((s - total) / total)
    # Switzerland did not report returns by citizenship in 2012-2014 and 2016; HR not in 2012
    v = snap.verdicts.set_index("geo")
    assert v.loc["CH", "coverage"] and v.loc["HR", "coverage"]
    assert "returns: 2012 0.00" in v.loc["CH", "coverage_detail"]
    # Austria's 2014 orders: every citizenship zero, TOTAL row missing
    assert bool(row(snap, "AT", 2014)["orders_all_zero"]) and v.loc["AT", "all_zero"]
    assert "migr_eiord" in snap.vintage and len(snap.vintage["migr_eiord"]["sha256"]) == 64


def test_snapshot_thrd_consistency_equals_plain_pandas(snap, snapshot_dir):
    r = _csv(snapshot_dir / "eurostat" / "migr_eirtn.csv")
    r = r[~r["geo"].isin(AGGREGATE_GEOS) & ~r["citizen"].isin(AGGREGATE_CITIZENS)]
    w = r.pivot_table(index=["geo", "citizen", "year"], columns="c_dest", values="value").dropna()
    bad = w[w["THRD"] > w["TOTAL"]]
    assert int(snap.by_geo_year["n_thrd_gt_returns"].sum()) == len(bad) > 0
