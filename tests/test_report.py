"""The generated report: deterministic, and the committed copy matches the code."""

from __future__ import annotations

import sys

from pathlib import Path

import pandas as pd
import pytest

from returnstudy.report import build_report, headline_comparison, locked_versions, markdown_table
from returnstudy.report_compare import IMAGE_TOL, compare_frames, compare_reports, report_files

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "reports"
REGENERATE = ("pip install -r requirements/report.lock && pip install --no-deps -e . && "
              "python -m returnstudy report --data ../shared/data/eurostat --out reports/")


@pytest.fixture(scope="module")
def fresh_report(eurostat_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("report")
    return build_report(out, data_dir=eurostat_dir)


def test_committed_report_matches_the_code(fresh_report) -> None:
    """The committed report says and shows what the code produces now, on any supported library versions.

    Text exactly; tables and each figure's plotted data to 1e-9 relative; rendered PNGs by RMS
    pixel difference under the locked matplotlib. Never file bytes: a clip-path id or the last bit of a float is no change.
    """
    import matplotlib

    # pixels are compared where the renderer is the one that drew the committed figures (the
    # locked matplotlib): other versions move text and layout by a pixel or two
    same_renderer = locked_versions().get("matplotlib") == matplotlib.__version__
    problems = compare_reports(COMMITTED, fresh_report.out_dir, image_tol=IMAGE_TOL if same_renderer else None)
    assert not problems, (
        "the committed report differs in content from what the code produces now:\n  " + "\n  ".join(problems)
        + f"\nIf the change is intended, regenerate it in the locked environment: {REGENERATE}")
    for f in fresh_report.files:
        assert (COMMITTED / f).is_file(), f


def test_every_figure_has_its_data_and_is_referenced(fresh_report) -> None:
    files = report_files(fresh_report.out_dir)
    pngs = [f for f in files if f.endswith(".png")]
    assert pngs and all(f.replace(".png", ".data.csv") in files for f in pngs)
    text = (fresh_report.out_dir / "REPORT.md").read_text()
    assert all(f"({f})" in text for f in pngs), [f for f in pngs if f"({f})" not in text]
    assert "requirements/report.lock" in text
    assert not list(fresh_report.out_dir.rglob("*.svg"))


def test_report_comparison_sees_a_changed_number_and_ignores_rounding(fresh_report, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fresh_report.out_dir, copy)
    assert compare_reports(fresh_report.out_dir, copy) == []
    eff = pd.read_csv(copy / "tables" / "effects.csv")
    eff.loc[0, "estimate"] *= 1 + 1e-12   # noise in the last digits: not a change
    eff.to_csv(copy / "tables" / "effects.csv", index=False, float_format="%.17g")
    assert compare_reports(fresh_report.out_dir, copy) == []
    eff.loc[0, "estimate"] += 0.01        # a real change
    eff.to_csv(copy / "tables" / "effects.csv", index=False, float_format="%.17g")
    problems = compare_reports(fresh_report.out_dir, copy)
    assert len(problems) == 1 and "effects.csv" in problems[0] and "'estimate'" in problems[0]
    # a figure whose plotted data moved is caught by its sidecar
    sidecar = next((copy / "figures").glob("event_study_*.data.csv"))
    shown = pd.read_csv(sidecar, keep_default_na=False, na_values=[""])
    line = shown.index[shown["kind"] == "line"][0]
    shown.loc[line, "y"] = shown.loc[line, "y"] + 0.05
    shown.to_csv(sidecar, index=False)
    assert any(sidecar.name in p and "'y'" in p for p in compare_reports(fresh_report.out_dir, copy))
    # so is a picture that changed
    png = next((copy / "figures").glob("coefficients_*.png"))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    fig.add_subplot().plot([0, 1], [1, 0])
    fig.savefig(png, dpi=110)
    before = sorted(copy.rglob("*"))
    assert any(png.name in p and "image differs" in p for p in compare_reports(fresh_report.out_dir, copy, image_tol=IMAGE_TOL))
    assert sorted(copy.rglob("*")) == before  # no difference images left in the report directory


def test_compare_frames_by_hand() -> None:
    a = pd.DataFrame({"t": ["x", "y"], "v": [1.0, float("nan")]})
    assert compare_frames(a, a.copy()) == []
    assert compare_frames(a, a.assign(v=[1.0 + 1e-11, float("nan")])) == []
    assert compare_frames(a, a.assign(v=[1.0 + 1e-6, float("nan")])) == [
        "table: column 'v' differs on line 2: 1.0 expected, 1.000001 found (1 cells)"]
    assert compare_frames(a, a.assign(t=["x", "z"])) == ["table: column 't' differs on line 3: 'y' expected, 'z' found (1 cells)"]
    assert compare_frames(a, a.iloc[:1]) == ["table: 2 rows expected, 1 found"]


def test_report_is_byte_identical_when_rerun(eurostat_dir: Path, tmp_path: Path) -> None:
    """Rerun with worker processes (n_jobs=3: Part 1, the sensitivity and the influence re-estimates
    in workers; on Linux forked ones that inherit the prepared samples, the figures drawn at the end
    by forked copies; elsewhere loky's, the figures pickled to them): the same bytes. (A figure
    pickled and unpickled draws the same bytes: tests/test_artifacts.py.)"""
    spec = REPO / "tests" / "fixtures" / "specs" / "run_small_report.toml"
    first = build_report(tmp_path / "a", specs=[spec], data_dir=eurostat_dir)
    fork = "fork" if sys.platform.startswith("linux") else "loky"
    for name, n_jobs, method in (("b", 3, fork),):
        again = build_report(tmp_path / name, specs=[spec], data_dir=eurostat_dir, n_jobs=n_jobs, start_method=method)
        assert first.files == again.files and "tables/effects.csv" in first.files
        assert "tables/sensitivity_run_small_report.csv" in first.files
        for f in first.files:
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / name / f).read_bytes(), (method, f)
    text = (tmp_path / "a" / "REPORT.md").read_text()
    assert str(eurostat_dir) not in text and str(tmp_path) not in text  # no machine-specific paths


def test_report_contents(fresh_report) -> None:
    text = (fresh_report.out_dir / "REPORT.md").read_text()
    for needle in ("## The study's headline", "+5% to +10%", "## Sample filters", "## Part 1", "## Event studies",
                   "2012-2016", "needs a live `python -m returnstudy fetch`", "third_country_2014_2023", "proxy design"):
        assert needle in text, needle
    headline = pd.read_csv(fresh_report.out_dir / "tables" / "headline_wodc.csv")
    eff = pd.read_csv(fresh_report.out_dir / "tables" / "effects.csv")
    main = eff[(eff.spec == "wodc") & (eff.model == "ppml")].set_index("treatment")
    row = headline.set_index("treatment").loc["Bilateral binding agreement"]
    assert row["estimate_pct"] == pytest.approx(main.loc["bilateral_binding", "pct_effect"], rel=1e-5)


class _Run:
    def __init__(self, rows: list[dict]) -> None:
        self._eff = pd.DataFrame(rows)

    def effects(self) -> pd.DataFrame:
        return self._eff


def _row(t: str, pct: float, lo: float, hi: float) -> dict:
    return {"model": "m", "treatment": t, "pct_effect": pct, "pct_ci_low": lo, "pct_ci_high": hi, "estimate": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_headline_verdicts_by_hand() -> None:
    run = _Run([_row("eu_agreement", 3.0, -2.0, 8.0), _row("eu_nonbinding", -20.0, -30.0, -10.0),
                _row("bilateral_binding", 20.0, 11.0, 30.0)])
    h = headline_comparison(run, "m").set_index("treatment")["verdict"]  # type: ignore[arg-type]
    assert h["EU readmission agreement"] == "consistent (CI includes 0)"
    assert h["EU non-binding arrangement"] == "not consistent: negative"
    assert h["Bilateral binding agreement"] == "not consistent (CI excludes +5% to +10%)"
    assert h["Bilateral non-binding arrangement"] == "not identified in this sample"

    def binding(lo: float, hi: float) -> str:
        run = _Run([_row("bilateral_binding", (lo + hi) / 2, lo, hi)])
        return headline_comparison(run, "m").set_index("treatment").loc["Bilateral binding agreement", "verdict"]  # type: ignore[arg-type]

    assert binding(9.5, 40.0) == "consistent (CI overlaps +5% to +10%, excludes 0)"
    assert binding(-2.0, 50.0) == "inconclusive (CI includes 0 and +5% to +10%)"
    assert binding(-20.0, 4.0) == "not consistent (CI excludes +5% to +10%)"


def test_few_switching_citizenships_are_flagged() -> None:
    import numpy as np

    rows = []
    for c, cohort in (("AF", 2015), ("IQ", 2015), ("MA", np.nan)):
        for g in ("NL", "DE"):
            for y in (2013, 2014, 2015, 2016):
                rows.append({"geo": g, "citizen": c, "corridor": f"{g}-{c}", "year": y, "eu_agreement_cohort": cohort,
                             "eu_agreement": float(y >= cohort) if cohort == cohort else 0.0})
    sample = pd.DataFrame(rows)
    run = _Run([_row("eu_agreement", 30.0, 10.0, 50.0)])
    run.sample = sample  # type: ignore[attr-defined]
    from returnstudy.report import switching_units

    assert switching_units(sample, "eu_agreement") == (4, 2)
    h = headline_comparison(run, "m", min_switching_citizenships=3).set_index("treatment")  # type: ignore[arg-type]
    assert h.loc["EU readmission agreement", "verdict"] == "not reliably identified: 2 citizenship(s) switch on in the window"
    assert h.loc["EU readmission agreement", "switching_corridors"] == 4
    h2 = headline_comparison(run, "m", min_switching_citizenships=2).set_index("treatment")  # type: ignore[arg-type]
    assert h2.loc["EU readmission agreement", "verdict"] == "not consistent: positive"


def test_markdown_table_formatting() -> None:
    df = pd.DataFrame({"a": ["x|y", "z"], "b": [1.23456, float("nan")], "c": [3, 4]})
    assert markdown_table(df, 2).splitlines() == ["| a | b | c |", "|---|---|---|", "| x/y | 1.23 | 3 |", "| z |  | 4 |"]


def test_locked_versions_read_from_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "report.lock"
    lock.write_text("# header\nnumpy==2.4.6\n    # via pandas\nmatplotlib==3.11.2 ; python_version >= '3.10'\n"
                    "requests==2.0\npandas==3.1.1  # pinned\n", encoding="utf-8")
    assert locked_versions(lock) == {"numpy": "2.4.6", "matplotlib": "3.11.2", "pandas": "3.1.1"}
    assert locked_versions(tmp_path / "absent.lock") == {}


def test_a_data_error_is_the_same_with_workers(tmp_path: Path) -> None:
    """With workers the samples are prepared before they start; an error there is raised where the
    serial report raises it, with the same message (and the workers are stopped)."""
    spec = REPO / "tests" / "fixtures" / "specs" / "run_small_report.toml"
    errors = []
    for n_jobs in (1, 2):
        with pytest.raises(Exception) as err:
            build_report(tmp_path / f"out{n_jobs}", specs=[spec], data_dir=tmp_path / "no_snapshot", n_jobs=n_jobs)
        errors.append((type(err.value), str(err.value)))
    assert errors[0] == errors[1] and "no_snapshot" in errors[0][1]
