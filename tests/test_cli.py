"""The command-line interface: help texts, exit codes, the panel subcommand."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnstudy.cli import _parser, main
from returnstudy.reuse import reuse_prepared

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


def test_verbosity_flags_accepted_after_the_subcommand() -> None:
    parser = _parser()
    a = parser.parse_args(["estimate", "--data", "x", "-q"])
    assert a.quiet is True and a.verbose == 0
    a = parser.parse_args(["panel", "-vv", "--summary"])
    assert a.verbose == 2 and a.quiet is False
    a = parser.parse_args(["-v", "filters", "--list"])  # before the subcommand: unchanged
    assert a.verbose == 1 and a.quiet is False


def test_specs_command_lists_the_shipped_specs(tmp_path: Path, monkeypatch, capsys) -> None:
    from returnstudy.spec import load_spec, shipped_specs

    monkeypatch.chdir(tmp_path)
    assert main(["specs", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    shipped = shipped_specs()
    assert list(table["name"]) == sorted(shipped) and "wodc" in shipped and "third_country_2014_2023" in shipped
    loadable = 0
    for r in table.itertuples(index=False):
        if r.title.startswith("cannot be loaded: "):
            continue
        loadable += 1
        spec = load_spec(r.name)
        assert r.models == len(spec.models) and r.title == spec.study.title and Path(r.file) == shipped[r.name]
    assert loadable >= 2
    assert main(["specs"]) == 0
    out = capsys.readouterr().out
    assert "--spec third_country_2014_2023" in out and "--spec wodc" in out


def test_estimate_with_a_shipped_spec_by_name_from_another_directory(tmp_path: Path, monkeypatch, eurostat_dir: Path, capsys) -> None:
    from returnstudy.spec import load_spec

    monkeypatch.chdir(tmp_path)
    assert main(["estimate", "--spec", "third_country_2014_2023", "--data", str(eurostat_dir), "--format", "csv", "-q"]) == 0
    eff = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    names = {m["name"] for m in load_spec("third_country_2014_2023").models if m["estimator"] != "event_study"}
    assert set(eff["model"]) == names and (eff["status"] == "ok").all()
    assert not list(tmp_path.iterdir())  # nothing written to the working directory


def _widths(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_wide_tables_fit_100_columns_unless_asked(eurostat_dir: Path, real_panel, capsys) -> None:
    from returnstudy.filters import describe_filters

    assert main(["filters", "--list"]) == 0
    default = capsys.readouterr().out
    assert _widths(default) <= 100
    steps = describe_filters()
    for r in steps.itertuples(index=False):
        assert r.signature.split("(")[0] + "(" in default
    assert main(["filters", "--list", "--format", "csv"]) == 0
    full = pd.read_csv(io.StringIO(capsys.readouterr().out))
    pd.testing.assert_frame_equal(full, steps.reset_index(drop=True), check_dtype=False)
    assert main(["filters", "--list", "--wide"]) == 0
    assert _widths(capsys.readouterr().out) > 100

    with reuse_prepared():  # both layouts from one read and coding of the snapshot; expected: from real_panel
        assert main(["treatments", "--summary", "--data", str(eurostat_dir)]) == 0
        assert _widths(capsys.readouterr().out) <= 100
        assert main(["treatments", "--summary", "--data", str(eurostat_dir), "--format", "csv"]) == 0
        out = capsys.readouterr().out
    table = pd.read_csv(io.StringIO(out[out.index("\n") + 1:]), index_col=0)  # after the 'treatment coding' line
    from returnstudy.treatments import add_treatments, treatment_summary

    expected = treatment_summary(add_treatments(real_panel))
    np.testing.assert_array_equal(table.to_numpy(dtype=float), expected.to_numpy(dtype=float, na_value=np.nan))


def test_report_without_data_creates_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RETURNSTUDY_DATA_DIR", str(tmp_path / "empty-cache"))
    out = tmp_path / "new" / "report"
    assert main(["report", "--out", str(out)]) == 3
    assert not (tmp_path / "new" / "report").exists()
    assert "fetch --from DIR" in capsys.readouterr().err


def test_sensitivity_on_an_unsupported_model_says_so(eurostat_dir: Path, capsys) -> None:
    assert main(["sensitivity", "--spec", "wodc", "--data", str(eurostat_dir), "--model", "event_study_eu_agreement", "-q"]) == 1
    err = capsys.readouterr().err
    assert "model 'event_study_eu_agreement' (event_study) is unsupported" in err
    assert "'ppml'" in err and "'imputation_bilateral'" in err and "'sun_abraham_bilateral'" not in err


def test_sensitivity_marks_a_variation_the_estimator_cannot_take_as_unsupported(eurostat_dir: Path) -> None:
    from returnstudy.robustness import Variation, sensitivity

    res = sensitivity("wodc", eurostat_dir, model="callaway_santanna_bilateral", variations=[
        Variation("spec as written", group="baseline"),
        Variation("reporting-country x year effects", model={"fe": ("corridor", "geo^year")}, group="model"),
    ])
    t = res.table.set_index("variation")
    assert t.loc["spec as written", "status"] == "ok" and np.isfinite(t.loc["spec as written", "estimate"])
    assert t.loc["reporting-country x year effects", "status"] == "unsupported"
    assert t.loc["reporting-country x year effects", "error"] == "callaway_santanna has no argument(s) ['fe']"
    assert res.wide().set_index("variation").loc["reporting-country x year effects", "bilateral_binding"] == "unsupported"


def test_fetch_and_panel_summaries_print_no_raw_dicts(tmp_path: Path, eurostat_dir: Path, capsys) -> None:
    assert main(["fetch", "--from", str(eurostat_dir), "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "migr_eirtn" in out and "LAST UPDATE 20/09/24 23:00:00 (12672 rows), not given (25719 rows)" in out
    assert "{" not in out
    assert main(["panel", "--data", str(eurostat_dir), "--no-treatments", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "LAST UPDATE 20/09/24 23:00:00 (12672 rows), not given (25719 rows)" in out and "{" not in out


def test_output_files_are_0644_whatever_the_umask(tmp_path: Path, eurostat_dir: Path) -> None:
    import os

    old = os.umask(0o077)
    try:
        assert main(["panel", "--data", str(eurostat_dir), "--years", "2014", "2015", "--no-treatments",
                     "--out", str(tmp_path / "panel.csv")]) == 0
        assert main(["filters", "--data", str(eurostat_dir), "--out", str(tmp_path / "flow.csv")]) == 0
    finally:
        os.umask(old)
    for name in ("panel.csv", "flow.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_quality_output_fits_100_columns_and_csv_has_every_column(eurostat_dir: Path, capsys) -> None:
    from returnstudy.quality import quality_report
    from returnstudy.spec import load_spec

    with reuse_prepared():  # both layouts from one quality report; the expected one is computed afresh below
        assert main(["quality", "--data", str(eurostat_dir), "-q"]) == 0
        out = capsys.readouterr().out
        assert _widths(out) <= 100 and "{" not in out
        assert main(["quality", "--data", str(eurostat_dir), "-q", "--format", "csv"]) == 0
        table = pd.read_csv(io.StringIO(capsys.readouterr().out))  # reporting countries: no 'NA' code
    expected = quality_report(data_dir=eurostat_dir, **load_spec().quality.kwargs()).verdicts
    assert list(table.columns) == list(expected.columns) and list(table["geo"]) == list(expected["geo"])
    num = expected.select_dtypes("number").columns
    np.testing.assert_allclose(table[num].to_numpy(dtype=float), expected[num].to_numpy(dtype=float), rtol=1e-12, equal_nan=True)


def test_report_stops_on_a_model_that_cannot_run(tmp_path: Path, eurostat_dir: Path, capsys) -> None:
    text = (Path(__file__).parent / "fixtures" / "specs" / "run_small.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('cluster = "citizen"', 'cluster = "citzen"', 1))
    line = bad.read_text().splitlines().index('cluster = "citzen"') + 1
    out = tmp_path / "r"
    assert main(["report", "--spec", str(bad), "--data", str(eurostat_dir), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"bad.toml, line {line}: [[models]] 'ppml_small' (ppml): cluster = 'citzen'" in err and "'citizen'" in err
    assert not out.exists()  # the directories it had created are removed again


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_report_jobs_must_be_positive_or_minus_one(jobs: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    assert main(["report", "--jobs", jobs, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"--jobs {jobs}" in err and "-1 for every CPU" in err
    assert not out.exists()  # nothing written, nothing left behind
