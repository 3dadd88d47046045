"""The command-line interface: help texts, exit codes, the panel subcommand."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from returnstudy.cli import _parser, main

SUBCOMMANDS = ["fetch", "panel", "treatments", "filters", "quality", "estimate", "sensitivity", "report"]


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"    {name}" in out


def test_every_subcommand_has_help_with_examples() -> None:
    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(SUBCOMMANDS) <= set(sub.choices)
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "examples:" in text, name
        assert f"returnstudy {name}" in text, name


def test_no_data_exits_nonzero_quickly_with_instructions(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "returnstudy", "panel", "--no-treatments", "--summary"],
        capture_output=True, text=True, env={"RETURNSTUDY_DATA_DIR": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 3
    assert "fetch --from DIR" in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 30


def test_fetch_from_then_panel_from_cache(tmp_path: Path, eurostat_dir: Path, capsys) -> None:
    cache = tmp_path / "cache"
    assert main(["fetch", "--from", str(eurostat_dir), "--cache", str(cache)]) == 0
    assert main(["fetch", "--list", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "migr_eirtn" in out and "20/09/24 23:00:00 (12672 rows)" in out


def test_panel_out_writes_the_same_table(tmp_path: Path, eurostat_dir: Path) -> None:
    out = tmp_path / "panel.csv"
    assert main(["panel", "--data", str(eurostat_dir), "--years", "2014", "2015", "--no-treatments", "--out", str(out)]) == 0
    written = pd.read_csv(out, keep_default_na=False, na_values=[""])
    from returnstudy.panel import load_panel

    direct = load_panel(eurostat_dir, years=(2014, 2015))
    assert len(written) == len(direct)
    assert written["orders"].sum() == direct["orders"].sum()
    assert "NA" in set(written["citizen"])


def test_bad_argument_names_the_problem(eurostat_dir: Path, capsys) -> None:
    code = main(["fetch", "--datasets", "migr_bogus", "--from", str(eurostat_dir)])
    assert code == 1
    assert "unknown Eurostat dataset 'migr_bogus'" in capsys.readouterr().err


def test_treatments_command(eurostat_dir: Path, capsys) -> None:
    assert main(["treatments", "--check"]) == 0
    assert "all tables pass" in capsys.readouterr().out
    assert main(["treatments", "--summary", "--data", str(eurostat_dir)]) == 0
    out = capsys.readouterr().out
    assert "eu_agreement" in out and "treated_corridor_years" in out and "unresearched_pairs" in out


def test_filters_command_prints_the_flow(eurostat_dir: Path, tmp_path: Path, capsys) -> None:
    flow_csv = tmp_path / "flow.csv"
    assert main(["filters", "--data", str(eurostat_dir), "--out", str(flow_csv)]) == 0
    out = capsys.readouterr().out
    assert "min_orders" in out and "rows_before" in out
    flow = pd.read_csv(flow_csv)
    assert (flow["rows_after"].iloc[:-1].to_numpy() == flow["rows_before"].iloc[1:].to_numpy()).all()
    assert main(["filters", "--list"]) == 0
    assert "return_rate_bound" in capsys.readouterr().out


def test_quality_command_writes_tables(eurostat_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["quality", "--data", str(eurostat_dir), "--out", str(tmp_path)]) == 0
    verdicts = pd.read_csv(tmp_path / "tables" / "quality_verdicts.csv")
    assert len(verdicts) >= 30 and {"geo", "n_fail"} <= set(verdicts.columns)
    assert (tmp_path / "figures" / "quality_coverage_heatmap.png").is_file()


def test_sensitivity_command(eurostat_dir: Path, tmp_path: Path, capsys) -> None:
    spec = Path(__file__).parent / "fixtures" / "specs" / "run_small.toml"
    out = tmp_path / "sens.csv"
    assert main(["sensitivity", "--spec", str(spec), "--data", str(eurostat_dir), "--model", "ppml_small", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "spec as written" in text and "min. mean orders 50" in text
    table = pd.read_csv(out)
    # run_small has no exclude_citizens/balanced/return_rate_bound steps: those variations are skipped
    assert "without Western Balkan citizenships" not in set(table["variation"])
    assert table.query("variation == 'spec as written'")["estimate"].notna().all()
