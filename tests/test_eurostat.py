"""Parsing Eurostat SDMX-CSV and SDMX-TSV files."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnstudy.data.eurostat import EurostatFormatError, dataset_info, normalise_last_update, parse_eurostat_bytes, read_eurostat_table

FIX = Path(__file__).parent / "fixtures" / "eurostat"


def _cell(df: pd.DataFrame, citizen: str, geo: str, year: int) -> pd.Series:
    row = df[(df.citizen == citizen) & (df.geo == geo) & (df.year == year)]
    assert len(row) == 1
    return row.iloc[0]


@pytest.mark.parametrize("name", ["migr_eiord.csv", "migr_eiord.tsv"])
def test_both_layouts_give_the_same_values(name: str) -> None:
    df = read_eurostat_table(FIX / name)
    assert set(df.dataset) == {"migr_eiord"}
    assert _cell(df, "MA", "NL", 2015).value == 1230.0
    assert _cell(df, "MA", "NL", 2016).value == 985.0
    assert _cell(df, "MA", "NL", 2016).flag == "p"
    assert _cell(df, "MA", "EL", 2015).flag == "d"
    assert np.isnan(_cell(df, "MA", "EL", 2016).value)
    # "NA" is Namibia, never a missing value
    assert _cell(df, "NA", "NL", 2015).value == 5.0
    assert _cell(df, "NA", "NL", 2016).value == 0.0
    assert df.year.dtype == np.int64


def test_csv_keeps_last_update_and_tsv_leaves_it_blank() -> None:
    csv_df = read_eurostat_table(FIX / "migr_eiord.csv")
    tsv_df = read_eurostat_table(FIX / "migr_eiord.tsv")
    assert set(csv_df.last_update) == {"15/03/24 23:00:00"}
    assert set(tsv_df.last_update) == {""}
    assert normalise_last_update("15/03/24 23:00:00") == "2024-03-15"
    assert normalise_last_update("") == ""


def test_tsv_confidential_flag_on_missing_value() -> None:
    df = read_eurostat_table(FIX / "migr_eiord.tsv")
    cell = _cell(df, "TOTAL", "NL", 2016)
    assert np.isnan(cell.value) and cell.flag == "c"


def test_gzip_is_read(tmp_path: Path) -> None:
    gz = tmp_path / "migr_eiord.tsv.gz"
    gz.write_bytes(gzip.compress((FIX / "migr_eiord.tsv").read_bytes()))
    df = read_eurostat_table(gz)
    assert _cell(df, "MA", "NL", 2015).value == 1230.0
    assert len(df) == 10


def test_real_snapshot_matches_a_plain_csv_reading(eurostat_dir: Path) -> None:
    path = eurostat_dir / "migr_eirtn.csv"
    df = read_eurostat_table(path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(df) == len(rows)
    wanted = [r for r in rows if (r["geo"], r["citizen"], r["c_dest"], r["TIME_PERIOD"]) == ("NL", "MA", "TOTAL", "2014")]
    assert len(wanted) == 1
    got = df[(df.geo == "NL") & (df.citizen == "MA") & (df.c_dest == "TOTAL") & (df.year == 2014)]
    assert got.value.iloc[0] == float(wanted[0]["OBS_VALUE"])
    assert got.flag.iloc[0] == wanted[0]["OBS_FLAG"]
    assert (df.value.dropna() >= 0).all()
    assert int((df.last_update == "20/09/24 23:00:00").sum()) == sum(r["LAST UPDATE"] == "20/09/24 23:00:00" for r in rows)


def _write(tmp_path: Path, text: str, name: str = "migr_eiord.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


HEADER = "DATAFLOW,LAST UPDATE,freq,citizen,age,sex,unit,geo,TIME_PERIOD,OBS_VALUE,OBS_FLAG,CONF_STATUS\n"
ROW = "ESTAT:MIGR_EIORD(1.0),,A,MA,TOTAL,T,PER,NL,{year},{value},,\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (HEADER + ROW.format(year=2015, value=10) + "ESTAT:MIGR_EIORD(1.0),,A,MA,TOT", "line 3: 5 fields"),
        (HEADER + ROW.format(year=2015, value=-5), "line 2: negative count"),
        (HEADER + ROW.format(year=2015, value="ten"), "line 2: OBS_VALUE 'ten' is not a number"),
        (HEADER + ROW.format(year="20x5", value=5), "line 2: TIME_PERIOD '20x5'"),
        (HEADER + ROW.format(year=2015, value=5) + ROW.format(year=2015, value=10), "duplicate observation key"),
        (HEADER.replace("OBS_VALUE", "VALUE"), "missing column(s) ['OBS_VALUE']"),
        (HEADER.replace(",geo,", ",country,"), "missing column(s) ['geo']"),
        ("", "empty file"),
    ],
)
def test_bad_csv_is_rejected_with_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(EurostatFormatError) as err:
        read_eurostat_table(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_bad_tsv_is_rejected(tmp_path: Path) -> None:
    good = (FIX / "migr_eiord.tsv").read_text()
    truncated = good + "A,MA,TOTAL,T,PER,BE\t12"
    with pytest.raises(EurostatFormatError, match="line 7: 2 cells"):
        read_eurostat_table(_write(tmp_path, truncated, "migr_eiord.tsv"))
    bad_value = good.replace("1230 ", "12x0 ")
    with pytest.raises(EurostatFormatError, match="'12x0 '"):
        read_eurostat_table(_write(tmp_path, bad_value, "migr_eiord.tsv"))


def test_corrupt_gzip(tmp_path: Path) -> None:
    data = gzip.compress(b"x" * 1000)[:20]
    p = tmp_path / "migr_eiord.csv.gz"
    p.write_bytes(data)
    with pytest.raises(EurostatFormatError, match="corrupt gzip"):
        read_eurostat_table(p)


def test_unknown_dataset_code() -> None:
    with pytest.raises(KeyError, match="unknown Eurostat dataset 'migr_nope'.*migr_eiord"):
        dataset_info("migr_nope")


def test_duplicate_key_names_the_lines_of_that_key(tmp_path: Path, eurostat_dir: Path) -> None:
    """A row repeated 1000 lines further down: the message names both lines, and only that key."""
    lines = (eurostat_dir / "migr_eirtn.csv").read_text().splitlines(keepends=True)
    lines.insert(26236, lines[25236])  # file line 25237 (LV, VN, 2014) again as line 26237
    path = _write(tmp_path, "".join(lines), "migr_eirtn.csv")
    with pytest.raises(EurostatFormatError) as err:
        read_eurostat_table(path)
    msg = str(err.value)
    assert msg == (f"{path}: duplicate observation key (freq=A, citizen=VN, c_dest=TOTAL, age=TOTAL, sex=T, unit=PER, "
                   f"geo=LV, period=2014) on lines 25237 and 26237")


def test_duplicate_keys_count_the_other_repeated_keys(tmp_path: Path) -> None:
    body = HEADER + ROW.format(year=2015, value=5) + ROW.format(year=2016, value=5) + ROW.format(year=2015, value=10)
    body += ROW.format(year=2016, value=7) + ROW.format(year=2015, value=1)
    with pytest.raises(EurostatFormatError, match=r"period=2015\) on lines 2, 4 and 6 \(1 more repeated key\(s\) in the file\)$"):
        read_eurostat_table(_write(tmp_path, body))


@pytest.mark.parametrize("name", ["migr_eiord.csv", "migr_eiord.tsv"])
def test_header_only_table_is_empty_not_parsed_into_nothing(tmp_path: Path, name: str) -> None:
    header = (FIX / name).read_text().splitlines(keepends=True)[0]
    path = _write(tmp_path, header, name)
    with pytest.raises(EurostatFormatError, match=r"the table is empty \(a header line but no observations\)"):
        read_eurostat_table(path)


def test_bytes_are_reported_under_the_name_given(tmp_path: Path) -> None:
    """Errors in bytes read from a temporary copy name the user's file, not the copy."""
    body = (HEADER + ROW.format(year=2015, value=10) + ROW.format(year=2016, value="1O")).encode()
    with pytest.raises(EurostatFormatError) as err:
        parse_eurostat_bytes(body, "/data/snapshot/migr_eiord.csv")
    assert str(err.value) == "/data/snapshot/migr_eiord.csv, line 3: OBS_VALUE '1O' is not a number"
    assert parse_eurostat_bytes(body.replace(b"1O", b"10"), "x/migr_eiord.csv").value.tolist() == [10.0, 10.0]
