"""The curated agreement tables: content checks and the validator on bad rows."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from returnstudy.paths import project_data_dir
from returnstudy.treatments import AgreementDataError, check_agreements, load_agreements

EU_FILES = (
    "eu_readmission_agreements.csv",
    "eu_participation.csv",
    "eu_nonbinding_arrangements.csv",
    "visa_events.csv",
)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "agreements"


def _make_dir(tmp_path: Path) -> Path:
    d = tmp_path / "agreements"
    d.mkdir()
    for f in EU_FILES:
        shutil.copy(project_data_dir() / "agreements" / f, d / f)
    for f in ("bilateral_frameworks.csv", "bilateral_coverage.csv"):
        shutil.copy(FIXTURES / f, d / f)
    return d


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _edit(d: Path, fname: str, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = d / fname
    fn(_read(path)).to_csv(path, index=False)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, pd.DataFrame]:
    return load_agreements(_make_dir(tmp_path_factory.mktemp("real")))


# ---------------------------------------------------------------- real files


def test_real_project_tables_pass_the_check():
    assert check_agreements() == []


def test_real_eu_tables_with_bilateral_fixtures_pass(tmp_path):
    assert check_agreements(_make_dir(tmp_path)) == []


def test_all_18_eu_agreements(tables):
    agr = tables["eu_readmission_agreements"]
    expected = {"HK", "MO", "LK", "AL", "RU", "UA", "MK", "BA", "ME", "RS", "MD", "PK", "GE", "AM", "AZ", "TR", "CV", "BY"}
    assert len(agr) == 18 and set(agr["citizen"]) == expected
    assert "XK" not in set(agr["citizen"])
    assert agr["agreement_id"].is_unique
    assert agr["source_url"].str.startswith(("http://", "https://")).all()
    assert (agr["signed"] <= agr["in_force"]).all()


def test_eu_agreement_dates(tables):
    agr = tables["eu_readmission_agreements"].set_index("citizen")
    in_force = {
        "HK": "2004-03-01", "MO": "2004-06-01", "LK": "2005-05-01", "AL": "2006-05-01", "RU": "2007-06-01",
        "UA": "2008-01-01", "MK": "2008-01-01", "BA": "2008-01-01", "ME": "2008-01-01", "RS": "2008-01-01",
        "MD": "2008-01-01", "PK": "2010-12-01", "GE": "2011-03-01", "AM": "2014-01-01", "AZ": "2014-09-01",
        "TR": "2014-10-01", "CV": "2014-12-01", "BY": "2020-07-01",
    }
    for cit, date in in_force.items():
        assert agr.loc[cit, "in_force"] == pd.Timestamp(date), cit
    assert agr.loc["TR", "tcn_clause_applies"] == pd.Timestamp("2016-06-01")
    assert agr.loc["TR", "signed"] == pd.Timestamp("2013-12-16")
    assert agr.loc["GE", "signed"] == pd.Timestamp("2010-11-22")
    assert agr.loc["BY", "signed"] == pd.Timestamp("2020-01-08")
    assert pd.isna(agr.loc["TR", "visa_facilitation_in_force"]) and pd.isna(agr.loc["PK", "visa_facilitation_in_force"])
    assert agr.loc["CV", "visa_facilitation_in_force"] == pd.Timestamp("2014-12-01")
    # entries whose day could not be confirmed in a source are flagged
    assert not agr.loc["PK", "verified"]
    assert agr.loc["AM", "verified"]
    assert agr.loc["TR", "verified"] and agr.loc["BY", "verified"]


def test_uk_and_ie_participation(tables):
    agr = tables["eu_readmission_agreements"].set_index("citizen")
    uk = set(agr.index[agr["uk_opt_in"]])
    assert uk == {"AL", "PK", "GE", "RS", "TR", "LK", "UA", "RU", "MD", "BA", "ME", "MK", "MO", "HK"}
    ie = set(agr.index[agr["ie_opt_in"]])
    assert ie == {"HK", "MO", "LK", "AL", "RU", "ME", "RS", "BA", "MK", "MD", "PK", "GE"}
    assert agr.loc["HK", "ie_bound_from"] == pd.Timestamp("2004-03-01")
    assert (agr.loc[sorted(ie - {"HK"}), "ie_bound_from"] == pd.Timestamp("2014-05-24")).all()
    # the eleven 2014 opt-ins cite the Commission decision confirming them (and say its day of application is
    # not confirmed); Hong Kong cites the Council decision Ireland took part in
    for c in sorted(ie - {"HK"}):
        assert "2014/298/EU of 22 May 2014, CELEX 32014D0298, OJ L 155 of 23.5.2014" in agr.loc[c, "notes"], c
        assert "so that day is not confirmed" in agr.loc[c, "notes"], c
    assert "Council Decision 2004/80/EC" in agr.loc["HK", "notes"]
    part = tables["eu_participation"].set_index("geo")
    assert part.loc["DK", "binds_eu_agreements"] == "none" and part.loc["DK", "covered_by_eu_nonbinding"]
    for g in ("NO", "CH", "IS", "LI"):
        assert part.loc[g, "binds_eu_agreements"] == "none" and not part.loc[g, "covered_by_eu_nonbinding"]
    assert part.loc["UK", "bound_until"] == pd.Timestamp("2020-12-31")
    assert part.loc["HR", "eu_member_from"] == pd.Timestamp("2013-07-01")
    assert part.loc["BG", "eu_member_from"] == part.loc["RO", "eu_member_from"] == pd.Timestamp("2007-01-01")
    eu = part.index[part["binds_eu_agreements"] != "none"]
    assert len(eu) == 27  # 28 EU members of 2013-2020 minus Denmark


def test_nonbinding_and_visa_events(tables):
    nb = tables["eu_nonbinding_arrangements"]
    assert {"AF", "GN", "BD", "ET", "CI", "GM"} <= set(nb["citizen"])
    first = nb.groupby("citizen")["in_force"].min()
    assert first["AF"].strftime("%Y-%m") == "2016-10"
    assert first["GN"].strftime("%Y-%m") == "2017-07"
    assert first["BD"].strftime("%Y-%m") == "2017-09"
    assert first["ET"].strftime("%Y-%m") == "2018-01"
    assert first["CI"].strftime("%Y-%m") == "2018-06"
    assert first["GM"].strftime("%Y-%m") == "2018-11"
    ve = tables["visa_events"]
    lib = ve.loc[ve["event_type"] == "visa_liberalisation"].set_index("citizen")["date"]
    expected = {"MK": "2009-12-19", "ME": "2009-12-19", "RS": "2009-12-19", "AL": "2010-12-15",
                "BA": "2010-12-15", "MD": "2014-04-28", "GE": "2017-03-28", "UA": "2017-06-11"}
    for cit, date in expected.items():
        assert lib[cit] == pd.Timestamp(date), cit
    gm = ve.loc[(ve["citizen"] == "GM") & (ve["event_type"] == "art25a_restrictive"), "date"]
    assert pd.Timestamp("2021-10-07") in set(gm)


# ---------------------------------------------------------------- bad rows


def _set(col: str, row: int, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[row, col] = value
        return df

    return fn


def _dup_row(row: int, **changes: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        extra = df.iloc[[row]].copy()
        for k, v in changes.items():
            extra[k] = v
        return pd.concat([df, extra], ignore_index=True)

    return fn


A, P, N, V = EU_FILES
BF, BC = "bilateral_frameworks.csv", "bilateral_coverage.csv"

BAD_CASES = [
    # (file, edit, expected fragments of one message)
    (A, _set("in_force", 13, "2014-13-01"), ["eu_readmission_agreements.csv: row 14 (line 15)", "'in_force'", "not an ISO date"]),
    (A, _set("signed", 0, "27/11/2002"), ["eu_readmission_agreements.csv: row 1 (line 2)", "'signed'", "not an ISO date"]),
    (A, _set("signed", 15, "2015-01-01"), ["eu_readmission_agreements.csv: row 16", "'signed'", "after in_force 2014-10-01"]),
    (N, _set("signed", 1, "2018-01-01"), ["eu_nonbinding_arrangements.csv: row 2", "'signed'", "after in_force"]),
    (BF, _set("in_force", 0, "2009-01-01"), ["bilateral_frameworks.csv: row 1", "'signed'", "after in_force"]),
    (N, _set("citizen", 0, "ZZ"), ["eu_nonbinding_arrangements.csv: row 1", "'citizen'", "unknown citizenship code 'ZZ'"]),
    (A, _set("citizen", 2, "EU28"), ["eu_readmission_agreements.csv: row 3", "'citizen'", "unknown citizenship code 'EU28'"]),
    (P, _set("geo", 4, "XX"), ["eu_participation.csv: row 5", "'geo'", "unknown reporting-country code 'XX'"]),
    (BF, _set("geo", 2, "GR"), ["bilateral_frameworks.csv: row 3", "'geo'", "unknown reporting-country code 'GR'"]),
    (A, _dup_row(0), ["eu_readmission_agreements.csv: row 19", "duplicate agreement_id='EURA-HK'"]),
    (A, _dup_row(5, agreement_id="EURA-UA-2"), ["eu_readmission_agreements.csv: row 19", "duplicate agreement for citizen 'UA'"]),
    (V, _dup_row(3), ["visa_events.csv: row 26", "duplicate event_id="]),
    (BC, _dup_row(1), ["bilateral_coverage.csv: row 8", "duplicate geo='DE', citizen='MA'"]),
    (V, _set("source_url", 2, ""), ["visa_events.csv: row 3", "'source_url'", "missing source"]),
    (A, _set("source_url", 7, "see notes"), ["eu_readmission_agreements.csv: row 8", "'source_url'", "not an http(s) URL"]),
    (BF, _set("source_url", 4, ""), ["bilateral_frameworks.csv: row 5", "'source_url'", "missing source"]),
    (A, _set("uk_opt_in", 1, "yes"), ["eu_readmission_agreements.csv: row 2", "'uk_opt_in'", "not true/false"]),
    (BF, _set("legal_form", 0, "treaty"), ["bilateral_frameworks.csv: row 1", "'legal_form'", "not one of"]),
    (BF, _set("scope", 1, "nationals"), ["bilateral_frameworks.csv: row 2", "'scope'", "not one of"]),
    (BF, _set("binding", 2, "yes"), ["bilateral_frameworks.csv: row 3", "'binding'", "not one of"]),
    (V, _set("event_type", 0, "visa_waiver"), ["visa_events.csv: row 1", "'event_type'", "not one of"]),
    (P, _set("binds_eu_agreements", 0, "some"), ["eu_participation.csv: row 1", "'binds_eu_agreements'", "not one of"]),
    (A, _set("ie_bound_from", 5, "2014-05-24"), ["eu_readmission_agreements.csv: row 6", "'ie_bound_from'", "ie_opt_in is false"]),
    (A, _set("tcn_clause_applies", 15, "2014-01-01"), ["row 16", "'tcn_clause_applies'", "before in_force"]),
    (P, _set("eu_member_from", 12, "2013-01-01"), ["eu_participation.csv: row 13", "'eu_member_from'", "differs from reporting_countries.csv"]),
    (BC, _set("result", 0, "none_found"), ["bilateral_frameworks.csv: row 1", "NL-MA is marked none_found"]),
    (BC, _set("result", 5, "agreement_found"), ["bilateral_coverage.csv: row 6", "'result'", "agreement_found but no row"]),
    (BC, _set("result", 6, "none_found"), ["bilateral_coverage.csv: row 7", "result given although researched is false"]),
    (N, _set("in_force", 2, "2017-9-20"), ["eu_nonbinding_arrangements.csv: row 3", "'in_force'", "not an ISO date"]),
]


@pytest.mark.parametrize("fname,edit,fragments", BAD_CASES, ids=[f"{c[0]}:{'/'.join(c[2][1:])}" for c in BAD_CASES])
def test_check_names_file_row_and_column(tmp_path, fname, edit, fragments):
    d = _make_dir(tmp_path)
    _edit(d, fname, edit)
    problems = check_agreements(d)
    hits = [p for p in problems if all(f in p for f in fragments)]
    assert hits, f"no problem mentions {fragments}; got {problems}"
    with pytest.raises(AgreementDataError) as err:
        load_agreements(d)
    assert any(all(f in p for f in fragments) for p in err.value.problems)
    assert fragments[0] in str(err.value)


def test_missing_column_and_missing_file(tmp_path):
    d = _make_dir(tmp_path)
    _edit(d, A, lambda df: df.drop(columns=["in_force"]))
    (d / N).unlink()
    problems = check_agreements(d)
    assert any("eu_readmission_agreements.csv: missing column(s) ['in_force']" in p for p in problems)
    assert any("eu_nonbinding_arrangements.csv: file not found" in p for p in problems)


def test_clean_copy_has_no_problems_and_one_edit_gives_exactly_one(tmp_path):
    d = _make_dir(tmp_path)
    assert check_agreements(d) == []
    _edit(d, A, _set("in_force", 13, "2014-13-01"))
    assert len(check_agreements(d)) == 1
