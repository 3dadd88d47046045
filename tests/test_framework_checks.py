"""Checks of the bilateral-framework schema (start basis, spells, vocabularies), the corridor
events, research coverage shares and identifying-corridor counts on the rows a model used."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from returnstudy.identification import rows_used, switching_counts, switching_units
from returnstudy.paths import project_data_dir
from returnstudy.treatments import (
    TREATMENT_TYPES,
    AgreementDataError,
    add_treatments,
    check_agreements,
    coverage_shares,
    load_agreements,
    start_date_summary,
)

EU_FILES = (
    "eu_readmission_agreements.csv",
    "eu_participation.csv",
    "eu_nonbinding_arrangements.csv",
    "visa_events.csv",
    "corridor_events.csv",
)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "agreements"
BF, EV = "bilateral_frameworks.csv", "corridor_events.csv"


def _make_dir(tmp_path: Path) -> Path:
    d = tmp_path / "agreements"
    d.mkdir()
    for f in EU_FILES:
        shutil.copy(project_data_dir() / "agreements" / f, d / f)
    for f in (BF, "bilateral_coverage.csv"):
        shutil.copy(FIXTURES / f, d / f)
    return d


def _edit(d: Path, fname: str, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = d / fname
    fn(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)


def _set(fid: str, **values: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Set columns of the row whose first column (framework_id / event_id) is ``fid``."""

    def fn(df: pd.DataFrame) -> pd.DataFrame:
        hit = df.iloc[:, 0] == fid
        assert hit.sum() == 1, fid
        for k, v in values.items():
            df.loc[hit, k] = v
        return df

    return fn


def _add_row(**values: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        row = {c: "" for c in df.columns} | values
        return pd.concat([df, pd.DataFrame([row])], ignore_index=True)

    return fn


# ---------------------------------------------------------------- checks: one bad table each

# fixture rows: 1 FIX-NL-MA-1 agreement 2010-02-01/2011-07-15, 2 FIX-NL-MA-2, 3 FIX-DE-MA-1 arrangement,
# 4 FIX-DE-NG-1 agreement without entry into force, 5 FIX-NL-AM-1 protocol, 6 FIX-EL-TR-1
BAD_FRAMEWORKS = [
    # a binding instrument starting at signature must say why
    (_set("FIX-DE-NG-1", start_basis="signature"),
     ["row 4 (line 5)", "'start_basis'", "binding instrument starts at signature but start_basis does not say why"]),
    (_set("FIX-DE-NG-1", start_basis="signature:   "), ["row 4", "does not say why"]),
    # a row without a source
    (_set("FIX-NL-AM-1", source_url=""), ["row 5", "'source_url'", "missing source"]),
    # vocabularies
    (_set("FIX-NL-MA-1", scope="nationals_only"), ["row 1", "'scope'", "'nationals_only' not one of"]),
    (_set("FIX-NL-MA-1", legal_form="treaty"), ["row 1", "'legal_form'", "'treaty' not one of"]),
    (_set("FIX-NL-MA-1", binding="yes"), ["row 1", "'binding'", "'yes' not one of"]),
    (_set("FIX-NL-MA-1", start_basis="ratified: in 2011"), ["row 1", "'start_basis'", "does not open with one of"]),
    # in force before signed
    (_set("FIX-NL-MA-1", in_force="2009-12-31"), ["row 1", "'signed'", "signed 2010-02-01 is after in_force 2009-12-31"]),
    # start basis inconsistent with the dates
    (_set("FIX-DE-NG-1", start_basis="in_force: per the gazette"), ["row 4", "start_basis is in_force but in_force is empty"]),
    (_set("FIX-NL-MA-1", start_basis="in_force_unknown: searched the gazette"),
     ["row 1", "start is unknown but in_force or provisional_from is given"]),
    (_set("FIX-DE-NG-1", start_basis="in_force_unknown"), ["row 4", "must say what was searched"]),
    (_set("FIX-DE-NG-1", start_basis="provisional: Art. 12"), ["row 4", "provisional_from is empty"]),
    (_set("FIX-DE-NG-1", provisional_from="2012-01-01", start_basis="provisional: Art. 12"),
     ["row 4", "'provisional_from'", "provisional_from 2012-01-01 is before signed 2012-08-18"]),
    # verified = the start date was seen in the source: a row without a start date cannot be verified
    (_set("FIX-DE-NG-1", verified="true"),
     ["row 4 (line 5)", "'verified'", "FIX-DE-NG-1 is verified=true but has no start date",
      "start_basis 'in_force_unknown' names no start date"]),
    (_set("FIX-NL-MA-2", in_force="", start_basis="no_date: nothing found", verified="true"),
     ["row 2 (line 3)", "'verified'", "FIX-NL-MA-2 is verified=true but has no start date"]),
    # spells
    (_set("FIX-NL-MA-1", ended="2011-01-01"), ["row 1", "'ended'", "ended 2011-01-01 is before in_force 2011-07-15"]),
    (_set("FIX-NL-MA-1", suspended_until="2014-01-01"), ["row 1", "'suspended_until'", "given without suspended_from"]),
    (_set("FIX-NL-MA-1", suspended_from="2014-01-01", suspended_until="2013-01-01"),
     ["row 1", "suspended_until 2013-01-01 is before suspended_from 2014-01-01"]),
    # overlapping spells of one corridor and type where one switches off: the end would be masked
    (_add_row(framework_id="FIX-NL-MA-3", geo="NL", citizen="MA", name="Second agreement", legal_form="agreement",
              binding="true", scope="own_nationals", signed="2012-01-01", in_force="2012-06-01", ended="2016-01-01",
              start_basis="in_force: per the gazette", verified="false", source_url="https://example.org/x"),
     ["row 7 (line 8)", "spell of FIX-NL-MA-3 overlaps FIX-NL-MA-1 (row 1) in NL-MA, type bilateral_binding"]),
]


@pytest.mark.parametrize("edit,fragments", BAD_FRAMEWORKS, ids=[f[-1][:40] for _, f in BAD_FRAMEWORKS])
def test_check_rejects_bad_framework_rows(tmp_path, edit, fragments):
    d = _make_dir(tmp_path)
    assert check_agreements(d) == []
    _edit(d, BF, edit)
    problems = check_agreements(d)
    assert any(all(f in p for f in ["bilateral_frameworks.csv", *fragments]) for p in problems), problems
    with pytest.raises(AgreementDataError):
        add_treatments(pd.DataFrame({"geo": ["NL"], "citizen": ["MA"], "year": [2012]}), agreements_dir=d)


def test_concurrent_open_ended_instruments_are_allowed(tmp_path):
    """Two instruments of one corridor and type in force at once code as the union: no problem."""
    d = _make_dir(tmp_path)
    _edit(d, BF, _add_row(framework_id="FIX-NL-MA-3", geo="NL", citizen="MA", name="Police cooperation treaty",
                          legal_form="agreement", binding="true", scope="unknown", signed="2012-01-01",
                          in_force="2012-06-01", start_basis="in_force: per the gazette", verified="false",
                          source_url="https://example.org/x"))
    assert check_agreements(d) == []
    # ... and ending the earlier one before the later starts is not an overlap
    _edit(d, BF, _set("FIX-NL-MA-1", ended="2012-06-01"))
    assert check_agreements(d) == []
    p = pd.DataFrame({"geo": "NL", "citizen": "MA", "year": np.arange(2010, 2015)})
    out = add_treatments(p, agreements_dir=d, rule="share_of_year")
    assert out["bilateral_binding"].tolist() == pytest.approx([0.0, 170 / 365, 1.0, 1.0, 1.0])


def test_periods_of_an_instrument_without_start_or_starting_after_a_suspension():
    from returnstudy.agreement_tables import framework_periods

    d = pd.to_datetime
    fw = pd.DataFrame({"geo": ["FR", "FR"], "citizen": ["KM", "KM"], "ended": d([None, None]),
                       "suspended_from": d(["2018-03-21", "2012-01-01"]), "suspended_until": d(["2018-11-06", "2012-06-30"])})
    start = pd.Series(d([None, "2013-01-01"]))
    per = framework_periods(fw, start)
    # no start: no period at all (not even after the suspension); a start after the suspension: from the start
    assert per["row"].tolist() == [1]
    assert per["start"].tolist() == [pd.Timestamp("2013-01-01")]


def test_corridor_event_checks(tmp_path):
    d = _make_dir(tmp_path)
    _edit(d, EV, _set("ACC-HR", start="2013-01-01"))
    _edit(d, EV, _set("EUTR-EL-PK", citizen=""))
    _edit(d, EV, _set("EUTR-EL-SY", end="2015-01-01"))
    problems = check_agreements(d)
    assert any("corridor_events.csv: row" in p and "accession of HR differs from eu_participation.csv eu_member_from (2013-07-01)"
               in p for p in problems), problems
    assert any("'citizen': eu_turkey_statement rows name one citizenship each" in p for p in problems), problems
    assert any("'end': 2015-01-01 is before start 2016-03-20" in p for p in problems), problems


def test_real_corridor_events():
    ev = load_agreements()["corridor_events"].set_index("event_id")
    turkey = ev[ev["event_type"] == "eu_turkey_statement"]
    assert set(turkey["geo"]) == {"EL"} and set(turkey["citizen"]) == {"SY", "PK", "DZ", "AF", "BD"}
    assert (turkey["start"] == pd.Timestamp("2016-03-20")).all()
    assert turkey["source_url"].str.contains("consilium.europa.eu").all()
    assert not turkey["verified"].any()  # the Council page itself was not read
    assert ev.loc["ACC-HR", "start"] == pd.Timestamp("2013-07-01")
    assert ev.loc["ACC-BG", "start"] == pd.Timestamp("2007-01-01")


def test_eu_turkey_statement_column():
    p = pd.DataFrame([(g, c, y) for g in ("EL", "NL") for c in ("PK", "MA") for y in range(2014, 2019)],
                     columns=["geo", "citizen", "year"])
    out = add_treatments(p, rule="share_of_year")
    el_pk = out[(out["geo"] == "EL") & (out["citizen"] == "PK")].set_index("year")
    # 20 March - 31 December of leap year 2016: 366 - 79 = 287 days
    assert el_pk["eu_turkey_statement"].tolist() == pytest.approx([0, 0, 287 / 366, 1, 1])
    assert (el_pk["eu_turkey_statement_cohort"] == 2016).all()
    others = out[~((out["geo"] == "EL") & (out["citizen"] == "PK"))]
    assert (others["eu_turkey_statement"] == 0).all() and others["eu_turkey_statement_cohort"].isna().all()


# ---------------------------------------------------------------- coverage shares


def test_coverage_shares_on_a_hand_made_panel():
    rows = []
    # corridor: (researched, eu_agreement by year, bilateral_binding by year, orders per year)
    spec = {
        "NL-AF": (True, [0, 1], [0, 0], 100.0),   # EU-treated, researched
        "NL-IQ": (True, [0, 0], [0, 0], 50.0),    # never treated, researched
        "DE-IQ": (False, [0, 0], [0, 0], 30.0),   # never treated, not researched
        "DE-MA": (False, [0, 0], [0, 1], 20.0),   # bilateral in 2nd year, not researched (e.g. coded from elsewhere)
        "FR-MA": (False, [0, 0], [0, 0], np.nan),  # no orders reported
    }
    for corr, (res, eu, bil, orders) in spec.items():
        g, c = corr.split("-")
        for k, y in enumerate((2015, 2016)):
            r = {"geo": g, "citizen": c, "year": y, "orders": orders, "bilateral_researched": res}
            r |= {t: 0.0 for t in TREATMENT_TYPES} | {"eu_agreement": float(eu[k]), "bilateral_binding": float(bil[k])}
            rows.append(r)
    cov = coverage_shares(pd.DataFrame(rows))
    # all: orders 2 x (100 + 50 + 30 + 20) = 400, researched 2 x 150 = 300
    assert cov.loc["all", "weight"] == 400 and cov.loc["all", "weight_researched"] == 300
    assert cov.loc["all", "share_researched"] == pytest.approx(0.75)
    assert (cov.loc["all", "corridors"], cov.loc["all", "researched_corridors"]) == (5, 2)
    # never treated by any type: NL-IQ, DE-IQ, FR-MA -> 160 orders, 100 researched
    assert cov.loc["never_treated", "share_researched"] == pytest.approx(100 / 160)
    assert cov.loc["never_treated", "corridors"] == 3
    # never treated bilaterally: NL-AF, NL-IQ, DE-IQ, FR-MA -> 360 orders, 300 researched
    assert cov.loc["never_treated_bilateral", "share_researched"] == pytest.approx(300 / 360)
    with pytest.raises(KeyError, match="add_treatments"):
        coverage_shares(pd.DataFrame(rows).drop(columns="bilateral_researched"))


def test_verified_rows_with_a_start_date_pass(tmp_path):
    """verified=true is accepted wherever the date named by start_basis is present: entry into
    force, provisional application, or signature for an instrument that applies from signature."""
    d = _make_dir(tmp_path)
    _edit(d, BF, _set("FIX-NL-MA-1", verified="true"))
    _edit(d, BF, _set("FIX-DE-MA-1", verified="true"))  # non-binding, starts at signature 2016-03-01
    _edit(d, BF, _set("FIX-DE-NG-1", provisional_from="2013-01-01", start_basis="provisional: Art. 12",
                      verified="true"))
    assert check_agreements(d) == []
    fw = load_agreements(d)["bilateral_frameworks"]
    assert int(fw["verified"].sum()) == 3


def _hand_made_frameworks() -> pd.DataFrame:
    """Seven instruments; by hand, rows 1, 3 and 5 rest on a confirmed start date."""
    rows = [
        # (start_basis, legal_form, signed, in_force, provisional_from, verified)
        ("in_force: gazette", "agreement", "2010-01-05", "2011-02-01", "", "true"),    # 1 confirmed
        ("in_force: gazette", "agreement", "2010-01-05", "2011-02-01", "", "false"),   # 2 date not seen
        ("signature: non-binding", "mou", "2012-03-04", "", "", "true"),              # 3 confirmed (signed)
        ("in_force_unknown: searched", "agreement", "2009-01-01", "", "", "true"),    # 4 no start date
        ("provisional: Art. 9", "agreement", "2013-05-06", "", "2013-06-01", "true"),  # 5 confirmed
        ("in_force: gazette", "agreement", "2014-01-01", "", "", "true"),             # 6 named date empty
        ("no_date: nothing found", "arrangement", "", "", "", "false"),                # 7
    ]
    fw = pd.DataFrame(rows, columns=["start_basis", "legal_form", "signed", "in_force", "provisional_from", "verified"])
    for col in ("signed", "in_force", "provisional_from"):
        fw[col] = pd.to_datetime(fw[col].replace("", None), format="%Y-%m-%d")
    return fw


def test_confirmed_start_on_a_hand_made_table():
    from returnstudy.agreement_tables import confirmed_start, named_start_date

    fw = _hand_made_frameworks()
    assert confirmed_start(fw).tolist() == [True, False, True, False, True, False, False]
    start = named_start_date(fw)
    assert start.iloc[[0, 2, 4]].tolist() == [pd.Timestamp(x) for x in ("2011-02-01", "2012-03-04", "2013-06-01")]
    assert start.iloc[[3, 5, 6]].isna().all()
    # the start_basis x legal_form summary counts the same three rows, not the five marked verified
    t = start_date_summary({"bilateral_frameworks": fw})
    assert (int(t["rows"].sum()), int(t["verified"].sum())) == (7, 3)
    assert t.loc[("in_force", "agreement")].tolist() == [3, 1]
    assert t.loc[("in_force_unknown", "agreement")].tolist() == [1, 0]
    assert t.loc[("signature", "mou")].tolist() == [1, 1]
    assert t.loc[("provisional", "agreement")].tolist() == [1, 1]


def test_start_date_summary_counts_rows_and_verified():
    t = start_date_summary()
    fw = load_agreements()["bilateral_frameworks"]
    assert int(t["rows"].sum()) == len(fw)
    assert int(t["verified"].sum()) == int(fw["verified"].sum())
    protocols = t.xs("implementing_protocol", level="legal_form")["rows"].sum()
    assert protocols == int((fw["legal_form"] == "implementing_protocol").sum())


# ---------------------------------------------------------------- identifying corridors on the rows used


def _switch_panel() -> pd.DataFrame:
    """8 corridors (NL, DE x AF, IQ, MA, PK), 2012-2016; AF and IQ corridors switch on in 2014."""
    rng = np.random.default_rng(11)
    rows = []
    for g in ("NL", "DE"):
        for c in ("AF", "IQ", "MA", "PK"):
            for y in range(2012, 2017):
                d = float(c in ("AF", "IQ") and y >= 2014)
                orders = float(rng.integers(50, 200))
                rows.append({"geo": g, "citizen": c, "corridor": f"{g}-{c}", "year": y, "orders": orders,
                             "returns": float(rng.poisson(orders * 0.3 * (1.2 if d else 1.0))), "treat": d})
    return pd.DataFrame(rows)


def test_switching_counts_on_the_rows_the_model_used():
    from returnstudy.models.ppml import ppml

    p = _switch_panel()
    assert switching_units(p, "treat") == (4, 2)
    # IQ corridors return nobody: Poisson drops them (all-zero outcome), so IQ no longer identifies
    p.loc[p["citizen"] == "IQ", "returns"] = 0.0
    res = ppml(p, treatments=["treat"], exposure="orders", fe=("corridor", "year"), cluster="citizen")
    used = rows_used(res, p)
    assert set(used["citizen"]) == {"AF", "MA", "PK"}
    assert switching_counts(res, p, "treat") == (2, 1, "rows used by the model")
    assert switching_units(p, "treat") == (4, 2)  # the filtered sample overstates it
    # a missing exposure in every pre-period row of NL-AF leaves it without variation
    p.loc[(p["corridor"] == "NL-AF") & (p["year"] < 2014), "orders"] = np.nan
    res2 = ppml(p, treatments=["treat"], exposure="orders", fe=("corridor", "year"), cluster="citizen")
    assert switching_counts(res2, p, "treat")[:2] == (1, 1)
    # a result without row information falls back to the sample, and says so
    assert switching_counts(object(), p, "treat") == (4, 2, "filtered sample")
    with pytest.raises(KeyError, match="not in the sample"):
        rows_used(res, p.iloc[:5])


def test_switch_offs_and_shares_count_as_variation():
    p = _switch_panel()
    p["share"] = np.where(p["year"] == 2014, 0.5, 1.0) * (p["citizen"] == "MA")  # 0 (AF...) or MA 1, 0.5, 1
    p["off"] = ((p["citizen"] == "PK") & (p["year"] <= 2013)).astype(float)       # PK switches off
    assert switching_units(p, "share") == (2, 1)
    assert switching_units(p, "off") == (2, 1)
    assert switching_units(p, "absent_column") == (0, 0)
