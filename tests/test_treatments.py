"""Treatment coding: known corridors, switch-on rules, participation, bilateral tables."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnstudy.paths import project_data_dir
from returnstudy.treatments import (
    TREATMENT_TYPES,
    add_treatments,
    load_agreements,
    nonabsorbing_corridors,
    treatment_summary,
)

EU_FILES = (
    "eu_readmission_agreements.csv",
    "eu_participation.csv",
    "eu_nonbinding_arrangements.csv",
    "visa_events.csv",
    "corridor_events.csv",
)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "agreements"
GEOS = ["NL", "DK", "NO", "UK", "HR", "IE", "DE", "EL", "BG", "CH"]
CITIZENS = ["AM", "PK", "UA", "TR", "XK", "AF", "MA", "NG", "BY", "HK", "RS"]
YEARS = list(range(2008, 2022))


def _make_dir(tmp_path: Path, bilateral: bool = True) -> Path:
    """Agreements dir = the project's EU tables + the bilateral test fixtures."""
    d = tmp_path / "agreements"
    d.mkdir()
    src = project_data_dir() / "agreements"
    for f in EU_FILES:
        shutil.copy(src / f, d / f)
    if bilateral:
        for f in ("bilateral_frameworks.csv", "bilateral_coverage.csv"):
            shutil.copy(FIXTURES / f, d / f)
    return d


def _panel(geos=GEOS, citizens=CITIZENS, years=YEARS) -> pd.DataFrame:
    idx = pd.MultiIndex.from_product([geos, citizens, years], names=["geo", "citizen", "year"])
    p = idx.to_frame(index=False)
    p["year"] = p["year"].astype("int64")
    p["corridor"] = p["geo"] + "-" + p["citizen"]
    rng = np.random.default_rng(7)
    p["orders"] = rng.integers(0, 500, len(p)).astype("float64")
    p["returns"] = np.floor(p["orders"] * 0.4)
    p.attrs["vintage"] = {"migr_eiord": {"last_update": "test"}}
    return p


@pytest.fixture()
def adir(tmp_path: Path) -> Path:
    return _make_dir(tmp_path)


@pytest.fixture()
def panel() -> pd.DataFrame:
    return _panel()


def _series(df: pd.DataFrame, geo: str, citizen: str, col: str) -> pd.Series:
    s = df.loc[(df["geo"] == geo) & (df["citizen"] == citizen)].set_index("year")[col]
    return s


# ---------------------------------------------------------------- known corridors


def test_nl_am_eu_agreement_from_2014(panel, adir):
    out = add_treatments(panel, agreements_dir=adir)
    v = _series(out, "NL", "AM", "eu_agreement")
    assert v.loc[2013] == 0.0 and v.loc[2014] == 1.0 and v.loc[2015] == 1.0
    assert (v.loc[2008:2013] == 0).all() and (v.loc[2014:] == 1).all()
    coh = _series(out, "NL", "AM", "eu_agreement_cohort")
    assert (coh == 2014).all()
    ys = _series(out, "NL", "AM", "eu_agreement_years_since")
    assert ys.loc[2014] == 0 and ys.loc[2015] == 1 and ys.loc[2012] == -2


@pytest.mark.parametrize("geo", ["DK", "NO", "CH"])
def test_non_parties_never_treated(panel, adir, geo):
    out = add_treatments(panel, agreements_dir=adir)
    for cit in ("AM", "PK", "UA", "TR"):
        assert (_series(out, geo, cit, "eu_agreement") == 0).all()
        assert _series(out, geo, cit, "eu_agreement_cohort").isna().all()
        assert _series(out, geo, cit, "eu_agreement_years_since").isna().all()


def test_uk_opt_in_and_exit(panel, adir):
    out = add_treatments(panel, agreements_dir=adir)
    pk = _series(out, "UK", "PK", "eu_agreement")
    assert pk.loc[2009] == 0 and (pk.loc[2010:2020] == 1).all() and pk.loc[2021] == 0
    assert (_series(out, "UK", "PK", "eu_agreement_cohort") == 2010).all()
    # the UK did not opt into the Armenia or Belarus agreements
    assert (_series(out, "UK", "AM", "eu_agreement") == 0).all()
    assert (_series(out, "UK", "BY", "eu_agreement") == 0).all()
    tr = _series(out, "UK", "TR", "eu_agreement")
    assert tr.loc[2013] == 0 and (tr.loc[2014:2020] == 1).all() and tr.loc[2021] == 0
    early = add_treatments(panel, agreements_dir=adir, uk_in_eu_until=2018)
    pk2 = _series(early, "UK", "PK", "eu_agreement")
    assert (pk2.loc[2010:2018] == 1).all() and (pk2.loc[2019:] == 0).all()
    assert early.attrs["treatment_coding"]["uk_in_eu_until"] == 2018


def test_late_joiner_croatia(panel, adir):
    # default: a corridor switched on only by accession (UA agreement in force 2008-01-01, HR a
    # member from 2013-07-01) is already treated: 1 from 2013, cohort 2008, years before accession NaN
    out = add_treatments(panel, agreements_dir=adir)
    ua = _series(out, "HR", "UA", "eu_agreement")
    assert ua.loc[:2012].isna().all() and (ua.loc[2013:] == 1).all()
    assert (_series(out, "HR", "UA", "eu_agreement_cohort") == 2008).all()
    assert _series(out, "HR", "UA", "eu_agreement_years_since").loc[2013] == 5
    assert _series(out, "HR", "UA", "eu_agreement_via_accession").all()
    assert not _series(out, "NL", "UA", "eu_agreement_via_accession").any()
    # NL bound since entry into force 2008-01-01
    assert (_series(out, "NL", "UA", "eu_agreement_cohort") == 2008).all()
    sh = add_treatments(panel, rule="share_of_year", agreements_dir=adir)
    assert _series(sh, "HR", "UA", "eu_agreement").loc[2013] == 1.0  # no partial first year: already treated
    # accession="switch": the switch-on at accession counts (the coding before 2026)
    sw = add_treatments(panel, agreements_dir=adir, accession="switch")
    ua = _series(sw, "HR", "UA", "eu_agreement")
    assert (ua.loc[:2012] == 0).all() and (ua.loc[2013:] == 1).all()
    assert (_series(sw, "HR", "UA", "eu_agreement_cohort") == 2013).all()
    assert _series(sw, "HR", "UA", "eu_agreement_via_accession").all()  # still marked
    sh = add_treatments(panel, rule="share_of_year", agreements_dir=adir, accession="switch")
    # 1 July - 31 December 2013 = 184 days
    assert _series(sh, "HR", "UA", "eu_agreement").loc[2013] == pytest.approx(184 / 365)
    ff = add_treatments(panel, rule="first_full_year", agreements_dir=adir, accession="switch")
    assert (_series(ff, "HR", "UA", "eu_agreement_cohort") == 2014).all()
    assert _series(ff, "HR", "UA", "eu_agreement").loc[2013] == 0
    # accession="drop": the corridor is unknown (NaN) for this type, other corridors unchanged
    dr = add_treatments(panel, agreements_dir=adir, accession="drop")
    assert _series(dr, "HR", "UA", "eu_agreement").isna().all()
    assert _series(dr, "HR", "UA", "eu_agreement_cohort").isna().all()
    pd.testing.assert_series_equal(_series(dr, "NL", "UA", "eu_agreement"), _series(out, "NL", "UA", "eu_agreement"))
    # HR corridors of agreements entering into force after 2013-07-01 (TR 2014) are not via accession
    assert not _series(out, "HR", "TR", "eu_agreement_via_accession").any()
    # HR-{HK, PK, UA, RS} (agreements in force before 2013-07-01) and BG-HK (HK 2004, BG 2007)
    assert out.attrs["treatment_coding"]["via_accession_corridors"]["eu_agreement"] == 5
    with pytest.raises(ValueError, match="accession must be one of"):
        add_treatments(panel, agreements_dir=adir, accession="ignore")


def test_bulgaria_russia_accession_before_entry_into_force(adir):
    p = _panel(geos=["BG"], citizens=["RU", "HK"], years=list(range(2004, 2010)))
    sh = add_treatments(p, rule="share_of_year", agreements_dir=adir, accession="switch")
    # RU agreement in force 2007-06-01, BG member from 2007-01-01: 214 days of 2007
    assert _series(sh, "BG", "RU", "eu_agreement").loc[2007] == pytest.approx(214 / 365)
    # HK in force 2004-03-01 but BG bound only from accession 2007-01-01
    hk = _series(sh, "BG", "HK", "eu_agreement")
    assert (hk.loc[:2006] == 0).all() and (hk.loc[2007:] == 1).all()
    # by default BG-HK is already treated when BG joins; BG-RU switches on after accession
    default = add_treatments(p, rule="share_of_year", agreements_dir=adir)
    hk = _series(default, "BG", "HK", "eu_agreement")
    assert hk.loc[:2006].isna().all() and (hk.loc[2007:] == 1).all()
    assert (_series(default, "BG", "HK", "eu_agreement_cohort") == 2004).all()
    pd.testing.assert_series_equal(_series(default, "BG", "RU", "eu_agreement"), _series(sh, "BG", "RU", "eu_agreement"))


def test_turkey_share_and_first_full_year(panel, adir):
    sh = add_treatments(panel, rule="share_of_year", agreements_dir=adir)
    tr = _series(sh, "NL", "TR", "eu_agreement")
    assert tr.loc[2014] == pytest.approx(92 / 365)
    assert tr.loc[2013] == 0 and tr.loc[2015] == 1.0
    assert (_series(sh, "NL", "TR", "eu_agreement_cohort") == 2014).all()
    ff = add_treatments(panel, rule="first_full_year", agreements_dir=adir)
    trf = _series(ff, "NL", "TR", "eu_agreement")
    assert trf.loc[2014] == 0 and trf.loc[2015] == 1
    assert (_series(ff, "NL", "TR", "eu_agreement_cohort") == 2015).all()
    assert _series(ff, "NL", "TR", "eu_agreement_years_since").loc[2015] == 0
    cy = add_treatments(panel, rule="calendar_year", agreements_dir=adir)
    assert (_series(cy, "NL", "TR", "eu_agreement_cohort") == 2014).all()


def test_ireland_opt_ins(panel, adir):
    out = add_treatments(panel, agreements_dir=adir)
    pk = _series(out, "IE", "PK", "eu_agreement")
    assert (pk.loc[:2013] == 0).all() and (pk.loc[2014:] == 1).all()
    assert (_series(out, "IE", "HK", "eu_agreement") == 1).all()  # opted in from 2004
    for cit in ("UA", "TR", "AM", "BY"):
        assert (_series(out, "IE", cit, "eu_agreement") == 0).all(), cit


def test_kosovo_not_covered_by_serbia_agreement(panel, adir):
    out = add_treatments(panel, agreements_dir=adir)
    assert (_series(out, "NL", "XK", "eu_agreement") == 0).all()
    assert (_series(out, "NL", "RS", "eu_agreement") == 1).all()


def test_eu_nonbinding_participation(panel, adir):
    out = add_treatments(panel, agreements_dir=adir)
    for geo in ("NL", "DK", "IE", "UK"):
        af = _series(out, geo, "AF", "eu_nonbinding")
        assert (af.loc[:2015] == 0).all() and (af.loc[2016:2020] == 1).all(), geo
    assert _series(out, "UK", "AF", "eu_nonbinding").loc[2021] == 0
    assert _series(out, "NL", "AF", "eu_nonbinding").loc[2021] == 1
    assert (_series(out, "NO", "AF", "eu_nonbinding") == 0).all()
    assert (_series(out, "CH", "AF", "eu_nonbinding") == 0).all()
    sh = add_treatments(panel, rule="share_of_year", agreements_dir=adir)
    # Joint Way Forward from 2016-10-02: 91 days of leap year 2016
    assert _series(sh, "DK", "AF", "eu_nonbinding").loc[2016] == pytest.approx(91 / 366)


# ---------------------------------------------------------------- bilateral


def test_bilateral_binding_each_rule(panel, adir):
    cy = add_treatments(panel, agreements_dir=adir)
    b = _series(cy, "NL", "MA", "bilateral_binding")
    assert b.loc[2010] == 0 and (b.loc[2011:] == 1).all()
    assert (_series(cy, "NL", "MA", "bilateral_binding_cohort") == 2011).all()
    sh = add_treatments(panel, rule="share_of_year", agreements_dir=adir)
    # 15 July - 31 December 2011 = 17 + 31 + 30 + 31 + 30 + 31 = 170 days
    assert _series(sh, "NL", "MA", "bilateral_binding").loc[2011] == pytest.approx(170 / 365)
    assert _series(sh, "NL", "MA", "bilateral_binding").loc[2012] == 1.0
    ff = add_treatments(panel, rule="first_full_year", agreements_dir=adir)
    fb = _series(ff, "NL", "MA", "bilateral_binding")
    assert fb.loc[2011] == 0 and fb.loc[2012] == 1
    assert (_series(ff, "NL", "MA", "bilateral_binding_cohort") == 2012).all()
    # a framework in force on 1 January is a full year under every rule
    for df in (cy, sh, ff):
        nb = _series(df, "NL", "MA", "bilateral_nonbinding")
        assert nb.loc[2014] == 0 and nb.loc[2015] == 1
        assert (_series(df, "NL", "MA", "bilateral_nonbinding_cohort") == 2015).all()
    # in force before the panel window: cohort 2002, years_since 6 in 2008
    assert (_series(cy, "EL", "TR", "bilateral_binding_cohort") == 2002).all()
    assert _series(cy, "EL", "TR", "bilateral_binding_years_since").loc[2008] == 6


def test_bilateral_nonbinding_start_option(panel, adir):
    signed = add_treatments(panel, rule="share_of_year", agreements_dir=adir, nonbinding_start="signed")
    s = _series(signed, "DE", "MA", "bilateral_nonbinding")
    # from signature 2016-03-01: 306 days of leap year 2016
    assert s.loc[2015] == 0 and s.loc[2016] == pytest.approx(306 / 366) and s.loc[2017] == 1
    inf = add_treatments(panel, agreements_dir=adir, nonbinding_start="in_force")
    assert (_series(inf, "DE", "MA", "bilateral_nonbinding") == 0).all()
    assert _series(inf, "DE", "MA", "bilateral_nonbinding_cohort").isna().all()


def test_binding_without_in_force_is_untreated_unless_the_table_says_signature(panel, adir, tmp_path, caplog):
    signed = pd.read_csv(adir / "bilateral_frameworks.csv", dtype=str, keep_default_na=False).query(
        "geo == 'DE' and citizen == 'NG'"
    )["signed"].iloc[0]
    year = int(signed[:4])
    # default: entry into force only; DE-NG has none (start_basis in_force_unknown) -> untreated
    out = add_treatments(panel, agreements_dir=adir)
    assert (_series(out, "DE", "NG", "bilateral_binding") == 0).all()
    assert out.attrs["treatment_coding"]["bilateral_dropped"]["binding_without_start"] == 1
    assert out.attrs["treatment_coding"]["bilateral_dropped"]["binding_started_at_signature"] == 0
    # the coding before 2026 starts it at signature
    with caplog.at_level(logging.INFO, logger="returnstudy.treatments"):
        old = add_treatments(panel, agreements_dir=adir, binding_start="in_force_or_signed")
    s = _series(old, "DE", "NG", "bilateral_binding")
    assert (s.loc[: year - 1] == 0).all() and (s.loc[year:] == 1).all()
    assert "binding_started_at_signature = 1" in caplog.text
    # a table row saying the instrument applied from signature starts there under the default
    d = tmp_path / "agr"
    shutil.copytree(adir, d)
    fw = pd.read_csv(d / "bilateral_frameworks.csv", dtype=str, keep_default_na=False)
    fw.loc[fw["framework_id"] == "FIX-DE-NG-1", "start_basis"] = "signature: applies provisionally from signature (Art. 20)"
    fw.to_csv(d / "bilateral_frameworks.csv", index=False)
    sig = add_treatments(panel, agreements_dir=d)
    pd.testing.assert_series_equal(_series(sig, "DE", "NG", "bilateral_binding"), _series(old, "DE", "NG", "bilateral_binding"))
    assert sig.attrs["treatment_coding"]["bilateral_dropped"]["binding_started_at_signature"] == 1
    # provisional application counts as in force, before entry into force
    fw.loc[fw["framework_id"] == "FIX-DE-NG-1", ["provisional_from", "in_force", "start_basis"]] = [
        "2013-02-01", "2015-06-01", "provisional: applied provisionally from 2013-02-01"]
    fw.to_csv(d / "bilateral_frameworks.csv", index=False)
    prov = add_treatments(panel, agreements_dir=d)
    s = _series(prov, "DE", "NG", "bilateral_binding")
    assert s.loc[2012] == 0 and (s.loc[2013:] == 1).all()
    assert (_series(prov, "DE", "NG", "bilateral_binding_cohort") == 2013).all()
    with pytest.raises(ValueError, match="binding_start must be"):
        add_treatments(panel, agreements_dir=adir, binding_start="whenever")


def test_unknown_start_as_missing(panel, adir):
    # DE-NG-1: binding agreement signed 2012-08-18, entry into force unknown
    out = add_treatments(panel, agreements_dir=adir, unknown_start="missing")
    s = _series(out, "DE", "NG", "bilateral_binding")
    assert (s.loc[:2011] == 0).all() and s.loc[2012:].isna().all()
    assert out.attrs["treatment_coding"]["unknown_start_missing"]["bilateral_binding"] == len(range(2012, 2022))
    # known treated years stay treated and other corridors are unchanged
    default = add_treatments(panel, agreements_dir=adir)
    other = ~((out["geo"] == "DE") & (out["citizen"] == "NG"))
    pd.testing.assert_series_equal(out.loc[other, "bilateral_binding"], default.loc[other, "bilateral_binding"])
    with pytest.raises(ValueError, match="unknown_start must be one of"):
        add_treatments(panel, agreements_dir=adir, unknown_start="zero")


def test_binding_column_and_legal_form_decide_the_type(panel, adir, tmp_path):
    d = tmp_path / "agr"
    shutil.copytree(adir, d)
    fw = pd.read_csv(d / "bilateral_frameworks.csv", dtype=str, keep_default_na=False)
    i = fw.index[fw["framework_id"] == "FIX-DE-MA-1"][0]  # arrangement, binding false, from 2016-03-01
    fw.at[i, "binding"] = "true"
    fw.at[i, "legal_form"] = "exchange_of_letters"
    fw.at[i, "start_basis"] = "signature: the letters provide for application from the date of the reply"
    fw.to_csv(d / "bilateral_frameworks.csv", index=False)
    out = add_treatments(panel, agreements_dir=d)
    assert _series(out, "DE", "MA", "bilateral_binding").loc[2016] == 1
    assert (_series(out, "DE", "MA", "bilateral_nonbinding") == 0).all()
    # binding unknown: by legal form (exchange of letters -> binding; arrangement -> non-binding) or dropped
    fw.at[i, "binding"] = "unknown"
    fw.to_csv(d / "bilateral_frameworks.csv", index=False)
    assert _series(add_treatments(panel, agreements_dir=d), "DE", "MA", "bilateral_binding").max() == 1
    fw.at[i, "legal_form"] = "arrangement"
    fw.to_csv(d / "bilateral_frameworks.csv", index=False)
    by_type = add_treatments(panel, agreements_dir=d)
    dropped = add_treatments(panel, agreements_dir=d, unknown_binding="drop")
    assert _series(by_type, "DE", "MA", "bilateral_nonbinding").max() == 1
    assert _series(dropped, "DE", "MA", "bilateral_nonbinding").max() == 0
    # unknown rows: this one and the fixture's NL-MA-2
    assert dropped.attrs["treatment_coding"]["bilateral_dropped"]["unknown_binding_excluded"] == 2


def test_tcn_only_instrument_does_not_treat_the_citizenship_corridor(panel, adir, tmp_path):
    d = tmp_path / "agr"
    shutil.copytree(adir, d)
    fw = pd.read_csv(d / "bilateral_frameworks.csv", dtype=str, keep_default_na=False)
    fw.loc[fw["framework_id"] == "FIX-NL-MA-1", "scope"] = "tcn_only"
    fw.to_csv(d / "bilateral_frameworks.csv", index=False)
    out = add_treatments(panel, agreements_dir=d)
    assert (_series(out, "NL", "MA", "bilateral_binding") == 0).all()
    assert _series(out, "NL", "MA", "bilateral_binding_cohort").isna().all()
    assert out.attrs["treatment_coding"]["bilateral_dropped"]["tcn_only_excluded"] == 1


def test_suspension_and_end_switch_off(panel, adir, tmp_path):
    d = tmp_path / "agr"
    shutil.copytree(adir, d)
    fw = pd.read_csv(d / "bilateral_frameworks.csv", dtype=str, keep_default_na=False)
    # NL-MA-1 in force 2011-07-15; suspended 2013-01-01 .. 2014-12-31; ended 2019-01-01
    fw.loc[fw["framework_id"] == "FIX-NL-MA-1", ["suspended_from", "suspended_until", "ended"]] = [
        "2013-01-01", "2014-12-31", "2019-01-01"]
    fw.to_csv(d / "bilateral_frameworks.csv", index=False)
    out = add_treatments(panel, agreements_dir=d)
    s = _series(out, "NL", "MA", "bilateral_binding")
    expect = {2010: 0, 2011: 1, 2012: 1, 2013: 0, 2014: 0, 2015: 1, 2018: 1, 2019: 0, 2021: 0}
    assert {y: s.loc[y] for y in expect} == expect
    assert (_series(out, "NL", "MA", "bilateral_binding_cohort") == 2011).all()  # first switch-on
    assert "NL-MA" in nonabsorbing_corridors(out, "bilateral_binding")
    assert out.attrs["treatment_coding"]["nonabsorbing_corridors"]["bilateral_binding"] == 1
    sh = add_treatments(panel, rule="share_of_year", agreements_dir=d)
    # 2015: resumes 2015-01-01 -> full year; 2018: to 2018-12-31 -> full; 2019: 0
    s = _series(sh, "NL", "MA", "bilateral_binding")
    assert s.loc[2015] == 1.0 and s.loc[2018] == 1.0 and s.loc[2019] == 0.0
    # suspended from 2013-07-01 (open): 181 days of 2013 in force
    fw.loc[fw["framework_id"] == "FIX-NL-MA-1", ["suspended_from", "suspended_until", "ended"]] = ["2013-07-01", "", ""]
    fw.to_csv(d / "bilateral_frameworks.csv", index=False)
    s = _series(add_treatments(panel, rule="share_of_year", agreements_dir=d), "NL", "MA", "bilateral_binding")
    assert s.loc[2013] == pytest.approx(181 / 365) and (s.loc[2014:] == 0).all()


def test_protocols_option(panel, adir):
    off = add_treatments(panel, agreements_dir=adir)  # default: protocols are their own type
    p = _series(off, "NL", "AM", "bilateral_protocol")
    assert p.loc[2017] == 0 and (p.loc[2018:] == 1).all()
    assert (_series(off, "NL", "AM", "bilateral_binding") == 0).all()
    on = add_treatments(panel, agreements_dir=adir, protocols_as_binding=True)
    pd.testing.assert_series_equal(_series(on, "NL", "AM", "bilateral_binding"), p.rename("bilateral_binding"))
    assert (on["bilateral_protocol"] == 0).all()
    # EU agreement coding is unaffected by the protocol option
    pd.testing.assert_series_equal(on["eu_agreement"], off["eu_agreement"])


def test_bilateral_researched_flag(panel, adir):
    out = add_treatments(panel, agreements_dir=adir)
    assert _series(out, "NL", "AF", "bilateral_researched").all()  # none_found still counts as researched
    assert not _series(out, "DE", "AF", "bilateral_researched").any()
    assert not _series(out, "DK", "PK", "bilateral_researched").any()
    n_researched_pairs = out.loc[out["bilateral_researched"], ["geo", "citizen"]].drop_duplicates().shape[0]
    assert n_researched_pairs == 6  # 6 researched fixture pairs, all in the panel
    miss = add_treatments(panel, agreements_dir=adir, unresearched_as_missing=True)
    assert _series(miss, "DK", "PK", "bilateral_binding").isna().all()
    assert (_series(miss, "NL", "AF", "bilateral_binding") == 0).all()
    assert (_series(miss, "NL", "MA", "bilateral_binding").loc[2011:] == 1).all()


def test_missing_bilateral_tables_give_unknown(tmp_path, panel, caplog):
    d = _make_dir(tmp_path, bilateral=False)
    with caplog.at_level(logging.WARNING, logger="returnstudy.treatments"):
        out = add_treatments(panel, agreements_dir=d)
    assert "bilateral" in caplog.text
    for t in ("bilateral_binding", "bilateral_protocol", "bilateral_nonbinding"):
        assert out[t].isna().all()
        assert out[f"{t}_cohort"].isna().all()
    assert not out["bilateral_researched"].any()
    (tmp_path / "full").mkdir()
    full = add_treatments(panel, agreements_dir=_make_dir(tmp_path / "full"))
    pd.testing.assert_series_equal(out["eu_agreement"], full["eu_agreement"])
    assert out.attrs["treatment_coding"]["bilateral_available"] is False


# ---------------------------------------------------------------- contract


def test_contract_dtypes_input_untouched_and_attrs(panel, adir):
    before = panel.copy(deep=True)
    attrs_before = dict(panel.attrs)
    out = add_treatments(panel, agreements_dir=adir)
    pd.testing.assert_frame_equal(panel, before)
    assert panel.attrs == attrs_before
    for t in TREATMENT_TYPES + ("eu_turkey_statement",):
        assert out[t].dtype == "float64"
        assert str(out[f"{t}_cohort"].dtype) == "Int64"
        assert str(out[f"{t}_years_since"].dtype) == "Int64"
        treated = out[f"{t}_cohort"].notna()
        ys = out[f"{t}_years_since"]
        assert (out.loc[~treated, t].fillna(0) == 0).all()
        assert (ys[treated] == out.loc[treated, "year"] - out.loc[treated, f"{t}_cohort"]).all()
        assert ys[~treated].isna().all()
    assert out["bilateral_researched"].dtype == bool
    assert out.attrs["vintage"] == panel.attrs["vintage"]
    tc = out.attrs["treatment_coding"]
    assert tc["rule"] == "calendar_year" and tc["protocols_as_binding"] is False
    assert tc["binding_start"] == "in_force" and tc["accession"] == "already_treated"
    for f in EU_FILES + ("bilateral_frameworks.csv", "bilateral_coverage.csv"):
        assert tc["files"][f] == hashlib.sha256((adir / f).read_bytes()).hexdigest()
    pd.testing.assert_frame_equal(out[panel.columns], panel)


def test_bad_arguments(panel, adir):
    with pytest.raises(ValueError, match="rule"):
        add_treatments(panel, rule="monthly", agreements_dir=adir)
    with pytest.raises(ValueError, match="nonbinding_start"):
        add_treatments(panel, agreements_dir=adir, nonbinding_start="later")
    with pytest.raises(KeyError, match="citizen"):
        add_treatments(panel.drop(columns="citizen"), agreements_dir=adir)
    with pytest.raises(ValueError, match="duplicate"):
        add_treatments(pd.concat([panel, panel.head(1)]), agreements_dir=adir)


def test_index_and_row_order_preserved(panel, adir):
    shuffled = panel.sample(frac=1.0, random_state=3).set_index("corridor", append=True)
    out = add_treatments(shuffled, agreements_dir=adir)
    assert out.index.equals(shuffled.index)
    ref = add_treatments(panel, agreements_dir=adir).set_index(["geo", "citizen", "year"])
    got = out.reset_index().set_index(["geo", "citizen", "year"]).loc[ref.index]
    for t in TREATMENT_TYPES:
        np.testing.assert_array_equal(got[t].to_numpy(), ref[t].to_numpy())


# ---------------------------------------------------------------- oracle


def _oracle_eu(part: dict, agreements: list, geo: str, citizen: str, year: int, uk_until: int) -> int:
    """Days of ``year`` during which an EU readmission agreement binds geo for citizen.

    Day-by-day set arithmetic on Python dates, written independently of the library."""
    row = part.get(geo)
    if row is None or row["binds_eu_agreements"] == "none":
        return 0
    days: set[dt.date] = set()
    for a in agreements:
        if a["citizen"] != citizen:
            continue
        first = max(a["in_force"].date(), row["eu_member_from"].date())
        if row["binds_eu_agreements"] == "opt_in":
            if not a[f"{geo.lower()}_opt_in"]:
                continue
            bound = a.get(f"{geo.lower()}_bound_from")
            if bound is not None and not pd.isna(bound):
                first = max(first, bound.date())
        last = dt.date(2200, 12, 31)
        if geo == "UK":
            last = dt.date(uk_until, 12, 31)
        elif not pd.isna(row["bound_until"]):
            last = row["bound_until"].date()
        elif not pd.isna(row["eu_member_to"]):
            last = row["eu_member_to"].date()
        d = max(first, dt.date(year, 1, 1))
        while d <= min(last, dt.date(year, 12, 31)):
            days.add(d)
            d += dt.timedelta(days=1)
    return len(days)


@pytest.mark.parametrize("rule", ["calendar_year", "first_full_year", "share_of_year"])
def test_eu_agreement_matches_day_by_day_oracle(adir, rule):
    tables = load_agreements(adir)
    part = {r["geo"]: r for r in tables["eu_participation"].to_dict("records")}
    agreements = tables["eu_readmission_agreements"].to_dict("records")
    geos = ["NL", "DK", "UK", "HR", "IE", "BG", "PL", "NO"]
    citizens = ["HK", "MO", "RU", "UA", "AM", "AZ", "TR", "CV", "BY", "PK", "XK", "MA"]
    years = list(range(2003, 2023))
    p = _panel(geos, citizens, years)
    out = add_treatments(p, rule=rule, agreements_dir=adir, uk_in_eu_until=2020, accession="switch")
    for (geo, cit), g in out.groupby(["geo", "citizen"]):
        cohort = None
        for yr, val, coh in zip(g["year"], g["eu_agreement"], g["eu_agreement_cohort"]):
            n = _oracle_eu(part, agreements, geo, cit, int(yr), 2020)
            ndays = 366 if (yr % 4 == 0 and (yr % 100 != 0 or yr % 400 == 0)) else 365
            expect = {"calendar_year": float(n > 0), "first_full_year": float(n == ndays),
                      "share_of_year": n / ndays}[rule]
            assert val == pytest.approx(expect), (geo, cit, yr)
            if cohort is None and expect > 0:
                cohort = int(yr)
        got = g["eu_agreement_cohort"].dropna().unique()
        if cohort is None:
            assert len(got) == 0, (geo, cit)
        else:
            # every cohort in this grid falls inside 2003-2022 (HK: 2004)
            assert list(got) == [cohort], (geo, cit)


# ---------------------------------------------------------------- summary


def test_treatment_summary_counts(adir):
    p = _panel(["NL", "DK", "UK"], ["AM", "PK", "TR", "MA"], list(range(2012, 2017)))
    out = add_treatments(p, agreements_dir=adir)
    s = treatment_summary(out)
    assert list(s.index) == list(TREATMENT_TYPES) + ["eu_turkey_statement"]
    eu = s.loc["eu_agreement"]
    # treated: NL-AM (2014-16), NL-PK (12-16), NL-TR (14-16), UK-PK (12-16), UK-TR (14-16)
    assert eu["corridors"] == 12
    assert eu["treated_corridors"] == 5
    assert eu["treated_corridor_years"] == 3 + 5 + 3 + 5 + 3
    assert eu["exposure"] == 19.0
    assert eu["cohort_2010"] == 2 and eu["cohort_2014"] == 3
    assert eu["always_treated"] == 2  # the two PK corridors, cohort 2010 <= 2012
    assert pd.isna(eu["unresearched_pairs"])
    bb = s.loc["bilateral_binding"]
    # NL-MA (2012-16); the NL-AM protocol (2018) is bilateral_protocol
    assert bb["treated_corridors"] == 1 and bb["treated_corridor_years"] == 5
    assert bb["cohort_2011"] == 1 and bb["cohort_2018"] == 0
    assert s.loc["bilateral_protocol", "cohort_2018"] == 1 and s.loc["bilateral_protocol", "treated_corridors"] == 0
    # researched fixture pairs in this panel: NL-MA, NL-AM -> 12 - 2 unresearched
    assert bb["unresearched_pairs"] == 10
    assert s.loc["bilateral_nonbinding", "treated_corridor_years"] == 2  # NL-MA 2015, 2016
    sh = treatment_summary(add_treatments(p, rule="share_of_year", agreements_dir=adir))
    assert sh.loc["eu_agreement", "exposure"] == pytest.approx(16 + 1 + 2 * (92 / 365))
    with pytest.raises(KeyError, match="add_treatments"):
        treatment_summary(p)


def test_full_size_panel_is_fast(adir):
    rep = pd.read_csv(project_data_dir() / "codes" / "reporting_countries.csv", dtype=str)
    cit = pd.read_csv(project_data_dir() / "codes" / "citizenships.csv", dtype=str, keep_default_na=False)
    geos = rep["geo"].tolist()[:30]
    citizens = cit.loc[cit["kind"] == "country", "code"].tolist()[:170]
    p = _panel(geos, citizens, list(range(2008, 2024)))
    t0 = time.perf_counter()
    out = add_treatments(p, rule="share_of_year", agreements_dir=adir)
    elapsed = time.perf_counter() - t0
    assert len(out) == len(geos) * len(citizens) * 16
    assert elapsed < 10.0, f"add_treatments took {elapsed:.1f}s on {len(p)} rows"
    # every EU+ member bound by the Armenia agreement is treated in 2014 (opt-in states and DK excluded)
    am = out.loc[(out["citizen"] == "AM") & (out["year"] == 2014)].set_index("geo")["eu_agreement"]
    expected = {g for g in geos if g not in {"DK", "IE", "UK", "NO", "CH", "IS", "LI", "ME"}}
    assert set(am.index[am > 0]) == expected


def test_overlapping_and_touching_spells_are_merged(tmp_path):
    """Several frameworks of one type in a corridor: union of periods, not a sum."""
    d = _make_dir(tmp_path)
    rows = [
        # overlapping, union misses 31 December 2012 -> 2012 is not a full year
        "X1,NL,NG,a,agreement,true,unknown,2011-01-01,2012-01-01,,,,,in_force: x,false,https://example.org/x1,",
        "X2,NL,NG,b,agreement,true,unknown,2011-01-01,2012-05-01,,,,,in_force: x,false,https://example.org/x2,",
        # touching periods 2010-07-01.. and 2011-01-01.. -> first full year 2011
        "X3,DE,NG,c,arrangement,false,unknown,2010-07-01,2010-07-01,,,,,in_force: x,false,https://example.org/x3,",
        "X4,DE,NG,d,mou,false,unknown,2011-01-01,2011-01-01,,,,,in_force: x,false,https://example.org/x4,",
    ]
    fw = (FIXTURES / "bilateral_frameworks.csv").read_text().splitlines()
    keep = [r for r in fw if not r.startswith("FIX-DE-NG")]
    (d / "bilateral_frameworks.csv").write_text("\n".join(keep + rows) + "\n")
    from returnstudy.treatments import _cohorts, _merged_spells, _PanelKeys, _year_values

    spells = pd.DataFrame(
        {
            "geo": ["NL", "NL", "DE", "DE"],
            "citizen": ["NG"] * 4,
            "start": pd.to_datetime(["2012-01-01", "2012-05-01", "2010-07-01", "2011-01-01"]),
            "end": pd.to_datetime(["2012-08-31", "2012-12-30", "2010-12-31", "2011-06-30"]),
        }
    )
    keys = _PanelKeys(np.array(["NL", "DE", "DE"], dtype=object), np.array(["NG"] * 3, dtype=object),
                      np.array([2012, 2010, 2011]))
    code, start, end = _merged_spells(keys, spells)
    assert len(code) == 2
    nl, de = keys.lookup(["NL", "DE"], ["NG", "NG"])
    assert start[code == nl].view("datetime64[ns]")[0] == np.datetime64("2012-01-01")
    assert end[code == nl].view("datetime64[ns]")[0] == np.datetime64("2012-12-30")
    assert start[code == de].view("datetime64[ns]")[0] == np.datetime64("2010-07-01")
    assert end[code == de].view("datetime64[ns]")[0] == np.datetime64("2011-06-30")
    merged = (code, start, end)
    coh = _cohorts(keys, merged, "first_full_year")
    assert coh.isna().all()  # neither corridor is ever in force for a whole calendar year
    assert _cohorts(keys, merged, "calendar_year").tolist() == [2012, 2010, 2010]
    full = _year_values(keys, merged, "first_full_year")
    assert full.tolist() == [0.0, 0.0, 0.0]
    share = _year_values(keys, merged, "share_of_year")
    assert share.tolist() == pytest.approx([365 / 366, 184 / 365, 181 / 365])

    p = _panel(["NL", "DE"], ["NG"], list(range(2009, 2014)))
    ff = add_treatments(p, rule="first_full_year", agreements_dir=d)
    nl = _series(ff, "NL", "NG", "bilateral_binding")
    assert nl.loc[2011] == 0 and nl.loc[2012] == 1 and nl.loc[2013] == 1
    de = _series(ff, "DE", "NG", "bilateral_nonbinding")
    assert de.loc[2010] == 0 and de.loc[2011] == 1
    assert (_series(ff, "DE", "NG", "bilateral_nonbinding_cohort") == 2011).all()
    sh = add_treatments(p, rule="share_of_year", agreements_dir=d)
    assert _series(sh, "DE", "NG", "bilateral_nonbinding").loc[2010] == pytest.approx(184 / 365)


# --------------------------------------------------------------------------- array coding = row-join coding
# The coding works on integer corridor codes and a corridor x year day count. Below is the
# previous implementation, which joined spells to the panel's rows on (geo, citizen) text keys,
# kept here as an independent reference: both must give identical columns and counts on the
# shipped agreement tables under every option.


def _ref_merge_spells(spells: pd.DataFrame) -> pd.DataFrame:
    cols = ["geo", "citizen", "start", "end"]
    if spells.empty:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c in ("start", "end") else "str") for c in cols})
    s = spells[cols].sort_values(["geo", "citizen", "start", "end"]).reset_index(drop=True)
    keys = [s["geo"], s["citizen"]]
    running_end = s.groupby(keys)["end"].cummax()
    prev_end = running_end.groupby(keys).shift()
    new = prev_end.isna() | (s["start"] > prev_end + pd.Timedelta(days=1))
    out = s.groupby(new.cumsum()).agg(geo=("geo", "first"), citizen=("citizen", "first"), start=("start", "min"),
                                      end=("end", "max"))
    return out.reset_index(drop=True)


def _ref_dates(year: pd.Series, month: int, day: int) -> pd.Series:
    return pd.to_datetime(pd.DataFrame({"year": year.to_numpy(), "month": month, "day": day})).set_axis(year.index)


def _ref_year_values(keys: pd.DataFrame, merged: pd.DataFrame, rule: str) -> pd.Series:
    out = pd.Series(0.0, index=keys.index, dtype="float64")
    m = keys.reset_index(names="_row").merge(merged, on=["geo", "citizen"], how="inner")
    if m.empty:
        return out
    year = m["year"].astype("int64")
    ys, ye = _ref_dates(year, 1, 1), _ref_dates(year, 12, 31)
    lo = m["start"].where(m["start"] > ys, ys)
    hi = m["end"].where(m["end"] < ye, ye)
    m["days"] = ((hi - lo).dt.days + 1).clip(lower=0)
    covered = m.groupby("_row")["days"].sum()
    yr = keys.loc[covered.index, "year"].astype("int64")
    days_in_year = np.where((yr % 4 == 0) & ((yr % 100 != 0) | (yr % 400 == 0)), 366, 365)
    share = (covered / days_in_year).clip(upper=1.0)
    if rule == "calendar_year":
        vals = (share > 0).astype("float64")
    elif rule == "first_full_year":
        vals = (covered >= days_in_year).astype("float64")
    else:
        vals = share.astype("float64")
    out.loc[vals.index] = vals.to_numpy()
    return out


def _ref_code_type(keys: pd.DataFrame, spells: pd.DataFrame, rule: str) -> tuple[pd.Series, pd.Series]:
    merged = _ref_merge_spells(spells)
    vals = _ref_year_values(keys, merged, rule)
    start_year = merged["start"].dt.year
    if rule == "first_full_year":
        jan1 = (merged["start"].dt.month == 1) & (merged["start"].dt.day == 1)
        first = start_year + (~jan1).astype("int64")
        first = first.where(_ref_dates(first, 12, 31) <= merged["end"])
    else:
        first = start_year
    c = merged.assign(cohort=first).dropna(subset=["cohort"]).groupby(["geo", "citizen"], as_index=False)["cohort"].min()
    coh = keys[["geo", "citizen"]].merge(c, on=["geo", "citizen"], how="left")["cohort"]
    coh.index = keys.index
    return vals, coh.astype("Int64")


def _ref_accession_adjust(keys: pd.DataFrame, spells: pd.DataFrame, rule: str, accession: str):
    g = spells.groupby(["geo", "citizen"], as_index=False).agg(
        first=("start", "min"), own_first=("own_start", "min"), accession=("accession", "min"))
    via = g.loc[g["own_first"] < g["first"], ["geo", "citizen", "own_first", "accession"]]
    via_key = keys[["geo", "citizen"]].merge(via, on=["geo", "citizen"], how="left")
    is_via = via_key["own_first"].notna().to_numpy()
    vals, coh = _ref_code_type(keys, spells, rule)
    if accession == "switch" or via.empty:
        return vals, coh, is_via
    if accession == "drop":
        return vals.where(~is_via, np.nan), coh.where(~is_via, pd.NA), is_via
    s = spells.merge(via[["geo", "citizen"]].assign(_via=True), on=["geo", "citizen"], how="left")
    s_via = s["_via"].fillna(False).astype(bool)
    jan1 = s["start"].dt.to_period("Y").dt.start_time
    vals, _ = _ref_code_type(keys, s.assign(start=s["start"].where(~s_via, pd.concat([s["own_start"], jan1], axis=1).max(axis=1))), rule)
    _, coh = _ref_code_type(keys, s.assign(start=s["own_start"].where(s_via, s["start"])), rule)
    acc_year = via_key["accession"].dt.year.to_numpy()
    before = is_via & (keys["year"].to_numpy() < np.nan_to_num(acc_year, nan=-1))
    return vals.where(~before, np.nan), coh, is_via


def _ref_nonabsorbing(panel: pd.DataFrame, treatment: str) -> list[str]:
    p = panel[["geo", "citizen", "year", treatment]].dropna(subset=[treatment]).sort_values(["geo", "citizen", "year"])
    corridor = p["geo"].astype(str) + "-" + p["citizen"].astype(str)
    falls = (p[treatment] < p.groupby(corridor.to_numpy())[treatment].cummax()).to_numpy()
    return sorted(set(corridor.to_numpy()[falls]))


def _ref_coding(panel: pd.DataFrame, kw: dict) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
    """Columns and counts of the row-join coding, from the same spells as add_treatments."""
    from returnstudy.treatments import EU_TYPES, EVENT_TREATMENTS, _coding_spells, _default_agreements_dir

    prepared = _coding_spells(_default_agreements_dir(), None, kw.get("uk_in_eu_until", 2020),
                              kw.get("protocols_as_binding", False), kw.get("nonbinding_start", "signed"),
                              kw.get("binding_start", "in_force"), kw.get("unknown_binding", "by_type"))
    keys = pd.DataFrame({"geo": panel["geo"].astype(str).to_numpy(), "citizen": panel["citizen"].astype(str).to_numpy(),
                         "year": panel["year"].to_numpy(dtype="int64")})
    rule, accession = kw.get("rule", "calendar_year"), kw.get("accession", "already_treated")
    pairs = prepared.researched_pairs.assign(_r=True)
    researched = keys[["geo", "citizen"]].merge(pairs, on=["geo", "citizen"], how="left")["_r"].notna().to_numpy()
    cols: dict[str, np.ndarray] = {"bilateral_researched": researched}
    counts: dict[str, dict[str, int]] = {"via_accession_corridors": {}, "unknown_start_missing": {}, "nonabsorbing_corridors": {}}
    for t in TREATMENT_TYPES + EVENT_TREATMENTS:
        sp = prepared.spells[t]
        if t in EU_TYPES:
            vals, coh, is_via = _ref_accession_adjust(keys, sp, rule, accession)
            cols[f"{t}_via_accession"] = is_via
            counts["via_accession_corridors"][t] = int((keys["geo"] + "-" + keys["citizen"])[is_via].nunique())
        else:
            vals, coh = _ref_code_type(keys, sp, rule)
            if t in ("bilateral_binding", "bilateral_protocol", "bilateral_nonbinding"):
                if kw.get("unknown_start") == "missing":
                    maybe = _ref_year_values(keys, _ref_merge_spells(prepared.unknown_spells[t]), "calendar_year").to_numpy() > 0
                    unknown = maybe & (vals.to_numpy() == 0)
                    vals = vals.where(~unknown, np.nan)
                    counts["unknown_start_missing"][t] = int(unknown.sum())
                if kw.get("unresearched_as_missing"):
                    vals, coh = vals.where(researched, np.nan), coh.where(researched, pd.NA)
        cols[t] = vals.to_numpy(dtype="float64")
        cols[f"{t}_cohort"] = coh.to_numpy()
        cols[f"{t}_years_since"] = (keys["year"].astype("Int64") - coh.astype("Int64")).to_numpy()
        frame = keys.assign(**{t: cols[t]})
        counts["nonabsorbing_corridors"][t] = len(_ref_nonabsorbing(frame, t))
    return cols, counts


def _shipped_corridor_panel() -> pd.DataFrame:
    """Every reporting country of the shipped tables x every citizenship they name (and one
    named nowhere), 2000-2025, rows shuffled and indexed by a non-range index."""
    tables = load_agreements()
    geos = sorted(set(tables["eu_participation"]["geo"]) | {"EU27_2020"})
    citizens = sorted(set(tables["eu_readmission_agreements"]["citizen"]) | set(tables["bilateral_frameworks"]["citizen"])
                      | set(tables["eu_nonbinding_arrangements"]["citizen"]) | {"ZZ"})
    p = _panel(geos, citizens, list(range(2000, 2026)))
    p = p.sample(frac=1.0, random_state=3)
    p.index = np.arange(len(p)) * 2 + 5
    return p


@pytest.mark.parametrize("kw", [
    {},
    {"rule": "first_full_year", "accession": "drop", "unknown_start": "missing"},
    {"rule": "share_of_year", "accession": "switch", "protocols_as_binding": True, "unresearched_as_missing": True},
    {"rule": "share_of_year", "binding_start": "in_force_or_signed", "nonbinding_start": "in_force", "uk_in_eu_until": 2019},
    {"rule": "first_full_year", "unknown_binding": "drop", "unknown_start": "missing", "accession": "already_treated"},
])
def test_array_coding_equals_row_join_coding_on_shipped_agreements(kw):
    p = _shipped_corridor_panel()
    out = add_treatments(p, **kw)
    cols, counts = _ref_coding(p, kw)
    for c, ref in cols.items():
        got = out[c].to_numpy()
        if c.endswith(("_cohort", "_years_since")):
            assert (pd.isna(got) == pd.isna(ref)).all(), c
            assert (got[~pd.isna(got)].astype(int) == ref[~pd.isna(ref)].astype(int)).all(), c
        else:
            np.testing.assert_array_equal(got, ref, err_msg=c)
    coding = out.attrs["treatment_coding"]
    for what, ref_counts in counts.items():
        assert {t: n for t, n in coding[what].items()} == ref_counts, what
    assert sum(counts["nonabsorbing_corridors"].values()) > 0  # switch-offs (UK exit, ended instruments) are exercised
    assert (out["eu_agreement"].fillna(0) > 0).sum() > 1000
    if kw.get("rule") == "share_of_year":
        frac = out["eu_agreement"].dropna()
        assert ((frac > 0) & (frac < 1)).any()
    for t in TREATMENT_TYPES:
        assert nonabsorbing_corridors(out, t).tolist() == _ref_nonabsorbing(out, t)


def test_codings_in_one_reuse_block_equal_fresh_codings():
    """Inside a reuse_prepared block a panel's keys, its corridor codes of each prepared table and
    their merged spells are kept and shared by every coding of that panel: each coding, in any order
    of the options, equals the coding made afresh outside a block (tested against the row-join
    reference above), attrs included; another panel gets its own keys."""
    from returnstudy.reuse import reuse_prepared
    from returnstudy.treatments import _panel_keys

    choices = [
        {"rule": "first_full_year", "accession": "drop", "unknown_start": "missing"},
        {},
        {"rule": "share_of_year", "accession": "switch", "protocols_as_binding": True, "unresearched_as_missing": True},
        {"rule": "first_full_year", "unknown_binding": "drop", "unknown_start": "missing", "accession": "already_treated"},
        {"rule": "calendar_year", "unknown_start": "missing"},
    ]
    p = _shipped_corridor_panel()
    fresh = [add_treatments(p, **kw) for kw in choices]
    other = p.iloc[::3]
    with reuse_prepared():
        assert _panel_keys(p) is _panel_keys(p)
        assert _panel_keys(other) is not _panel_keys(p)
        for _ in range(2):
            for kw, expected in zip(choices, fresh):
                got = add_treatments(p, **kw)
                pd.testing.assert_frame_equal(got, expected)
                assert got.attrs == expected.attrs
            pd.testing.assert_frame_equal(add_treatments(other), fresh[1].loc[other.index], check_like=False)
    assert _panel_keys(p) is not _panel_keys(p)  # outside a block nothing is kept
