"""The corridor-year panel built from the real snapshot."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnstudy.data import codes
from returnstudy.panel import load_panel, panel_summary


def _row(panel: pd.DataFrame, geo: str, citizen: str, year: int) -> pd.Series:
    r = panel[(panel.geo == geo) & (panel.citizen == citizen) & (panel.year == year)]
    assert len(r) == 1, (geo, citizen, year)
    return r.iloc[0]


@pytest.mark.parametrize(
    ("geo", "citizen", "year", "orders", "returns"),
    [("NL", "MA", 2014, 1465, 245), ("NL", "AF", 2015, 685, 105), ("NL", "IQ", 2015, 640, 350)],
)
def test_values_equal_the_raw_files(real_panel, geo, citizen, year, orders, returns) -> None:
    r = _row(real_panel, geo, citizen, year)
    assert r.orders == orders and r.returns == returns
    assert r.return_rate == pytest.approx(returns / orders)
    assert r.corridor == f"{geo}-{citizen}"


def test_every_value_matches_a_direct_reading(real_panel, eurostat_dir: Path) -> None:
    with open(eurostat_dir / "migr_eiord.csv", newline="") as fh:
        raw = {(r["geo"], r["citizen"], int(r["TIME_PERIOD"])): float(r["OBS_VALUE"]) for r in csv.DictReader(fh)}
    p = real_panel.dropna(subset=["orders"])
    direct = np.array([raw[k] for k in zip(p.geo, p.citizen, p.year)])
    np.testing.assert_array_equal(p.orders.to_numpy(), direct)


def test_unique_keys_and_types(real_panel) -> None:
    assert not real_panel.duplicated(["geo", "citizen", "year"]).any()
    assert real_panel.year.dtype == np.int64
    for col in ("geo", "citizen", "year", "orders", "returns", "returns_third_country", "found_illegal", "return_rate"):
        assert col in real_panel.columns


def test_coverage_counts(real_panel) -> None:
    s = panel_summary(real_panel)
    assert s["geos"] == 30  # EU28 + NO + CH; IS and LI are not EU+, Montenegro reports but is not EU+
    assert set(real_panel.geo) == set(codes.reporting_countries().query("in_eu_plus").geo)
    # gaps the snapshot's README lists
    assert real_panel.loc[(real_panel.geo == "NO") & (real_panel.year == 2016), "orders"].isna().all()
    ch_returns = real_panel.loc[(real_panel.geo == "CH") & real_panel.returns.notna(), "year"].unique()
    assert list(ch_returns) == [2015]
    assert not ((real_panel.geo == "HR") & (real_panel.year == 2012)).any()  # Croatia joined 2013-07
    assert s["variables"]["orders"]["years"] == [2012, 2013, 2014, 2015, 2016]
    assert s["coverage"].loc["AT", 2014] == (real_panel.query("geo == 'AT' and year == 2014")[["orders", "returns"]].notna().all(axis=1)).sum()


def test_aggregates_and_eu_plus_citizens_excluded_by_default(real_panel, eurostat_dir) -> None:
    assert not set(real_panel.citizen) & codes.aggregate_codes()
    assert not set(real_panel.citizen) & codes.eu_plus_citizen_codes()
    assert "NA" in set(real_panel.citizen)  # Namibia, not a missing value
    wide = load_panel(eurostat_dir, years=(2015, 2015), keep_aggregates=True, keep_eu_plus_citizens=True)
    assert {"TOTAL", "STLS", "UNK", "HR"} <= set(wide.citizen)
    assert _row(wide, "NL", "TOTAL", 2015).orders > _row(wide, "NL", "MA", 2015).orders


def test_missing_stays_missing_and_dropped_zeros_are_marked(real_panel, eurostat_dir) -> None:
    p = real_panel
    # orders were published with zeros: never imputed
    assert (p.orders == 0).sum() > 0 and p.orders[p.year > 2016].isna().all()
    # THRD extract dropped zeros: an absent cell in a geo-year that reported THRD is a marked zero
    with open(eurostat_dir / "migr_eirtn.csv", newline="") as fh:
        thrd = [r for r in csv.DictReader(fh) if r["c_dest"] == "THRD"]
    reported = {(r["geo"], int(r["TIME_PERIOD"])) for r in thrd}
    present = {(r["geo"], r["citizen"], int(r["TIME_PERIOD"])) for r in thrd}
    expected = sum(
        (g, y) in reported and (g, c, y) not in present for g, c, y in zip(p.geo, p.citizen, p.year)
    )
    assert p.returns_third_country_imputed_zero.sum() == expected > 0
    imputed = p[p.returns_third_country_imputed_zero]
    assert (imputed.returns_third_country == 0).all()
    # geo-years that reported no THRD row stay missing (e.g. Austria 2014)
    assert p.loc[(p.geo == "AT") & (p.year == 2014), "returns_third_country"].isna().all()
    never = load_panel(eurostat_dir, zero_fill="never")
    assert not never.returns_third_country_imputed_zero.any()
    assert never.returns_third_country.notna().sum() == p.returns_third_country.notna().sum() - expected


def test_lag_and_rate(real_panel) -> None:
    r14, r15 = _row(real_panel, "NL", "MA", 2014), _row(real_panel, "NL", "MA", 2015)
    assert r15.orders_lag1 == r14.orders
    assert np.isnan(_row(real_panel, "NL", "MA", 2012).orders_lag1)
    zero = real_panel[(real_panel.orders == 0)]
    assert zero.return_rate.isna().all()


def test_years_option_and_vintage(eurostat_dir) -> None:
    p = load_panel(eurostat_dir, years=(2014, 2016))
    assert sorted(p.year.unique()) == [2014, 2015, 2016]
    v = p.attrs["vintage"]
    assert set(v) == {"migr_eiord", "migr_eirtn", "migr_eipre"}
    assert v["migr_eirtn"]["last_update"] == {"": 25719, "20/09/24 23:00:00": 12672}
    assert v["migr_eiord"]["rows_used"]["orders"] == p.orders.notna().sum()
    assert set(p.loc[p.returns_third_country.notna() & ~p.returns_third_country_imputed_zero, "returns_third_country_vintage"]) == {"2024-09-20"}
    with pytest.raises(ValueError, match="first year after last"):
        load_panel(eurostat_dir, years=(2016, 2012))
    with pytest.raises(ValueError, match=r"no corridor-year left \(years=\[1990, .*years in the tables: \[2012, 2013"):
        load_panel(eurostat_dir, years=(1990, 1995))


def test_uk_option(eurostat_dir) -> None:
    p = load_panel(eurostat_dir, years=(2012, 2016), uk_until=2013)
    assert sorted(p.loc[p.geo == "UK", "year"].unique()) == [2012, 2013]


def test_unknown_citizen_code_is_an_error(tmp_path: Path) -> None:
    fixture = (Path(__file__).parent / "fixtures" / "eurostat" / "migr_eiord.csv").read_text()
    (tmp_path / "migr_eiord.csv").write_text(fixture.replace(",MA,", ",QQ,"))
    (tmp_path / "migr_eirtn.csv").write_text(
        "DATAFLOW,LAST UPDATE,freq,citizen,c_dest,age,sex,unit,geo,TIME_PERIOD,OBS_VALUE,OBS_FLAG,CONF_STATUS\n"
        "ESTAT:MIGR_EIRTN(1.0),,A,NA,TOTAL,TOTAL,T,PER,NL,2015,5,,\n"
    )
    with pytest.raises(ValueError, match=r"migr_eiord.csv: unknown citizen code\(s\) \['QQ'\]"):
        load_panel(tmp_path)


def test_small_fixture_panel(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "eurostat" / "migr_eiord.csv"
    (tmp_path / "migr_eiord.csv").write_bytes(fixture.read_bytes())
    (tmp_path / "migr_eirtn.csv").write_text(
        "DATAFLOW,LAST UPDATE,freq,citizen,c_dest,age,sex,unit,geo,TIME_PERIOD,OBS_VALUE,OBS_FLAG,CONF_STATUS\n"
        "ESTAT:MIGR_EIRTN(1.0),,A,MA,TOTAL,TOTAL,T,PER,NL,2015,300,,\n"
        "ESTAT:MIGR_EIRTN(1.0),,A,MA,TOTAL,TOTAL,T,PER,NL,2016,1100,,\n"
    )
    p = load_panel(tmp_path)
    assert len(p) == 6  # NL-MA, NL-NA, EL-MA x 2015-16; EU28 and TOTAL dropped; EL-MA 2016 is empty but present
    nl = p[p.corridor == "NL-MA"].set_index("year")
    assert nl.loc[2016, "return_rate"] == pytest.approx(1100 / 985)  # returns can exceed orders
    assert nl.loc[2016, "orders_flag"] == "p"
    assert p.found_illegal.isna().all()  # table absent: missing, not zero


def test_header_only_table_is_reported_empty_before_any_filter(tmp_path: Path) -> None:
    """A header-only returns table is named as empty, not reported later as 'no corridor-year left' by a filter."""
    fixture = Path(__file__).parent / "fixtures" / "eurostat" / "migr_eiord.csv"
    (tmp_path / "migr_eiord.csv").write_bytes(fixture.read_bytes())
    (tmp_path / "migr_eirtn.csv").write_text(
        "DATAFLOW,LAST UPDATE,freq,citizen,c_dest,age,sex,unit,geo,TIME_PERIOD,OBS_VALUE,OBS_FLAG,CONF_STATUS\n"
    )
    with pytest.raises(ValueError) as err:
        load_panel(tmp_path, years=(2030, 2031))  # a filter that would empty any panel
    assert str(err.value) == f"{tmp_path / 'migr_eirtn.csv'}: the table is empty (a header line but no observations)"
