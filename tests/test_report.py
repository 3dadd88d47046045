"""The generated report: deterministic, and the committed copy matches the code."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pandas as pd
import pytest

from returnstudy.report import build_report, headline_comparison, markdown_table

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "reports"
REGENERATE = "python -m returnstudy report --data ../shared/data/eurostat --out reports/"


@pytest.fixture(scope="module")
def fresh_report(eurostat_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("report")
    return build_report(out, data_dir=eurostat_dir)


def _compared_files(root: Path) -> list[str]:
    files = ["REPORT.md"]
    files += sorted(str(p.relative_to(root)) for p in (root / "tables").glob("*.csv"))
    files += sorted(str(p.relative_to(root)) for p in (root / "figures").glob("*.svg"))
    return files


def test_committed_report_matches_the_code(fresh_report) -> None:
    new = fresh_report.out_dir
    assert _compared_files(new) == _compared_files(COMMITTED), f"report files changed; regenerate with: {REGENERATE}"
    differing = [f for f in _compared_files(new) if not filecmp.cmp(new / f, COMMITTED / f, shallow=False)]
    assert not differing, f"committed report is stale in {differing}; regenerate with: {REGENERATE}"
    for f in fresh_report.files:
        assert (COMMITTED / f).is_file(), f


def test_report_is_byte_identical_when_rerun(eurostat_dir: Path, tmp_path: Path) -> None:
    spec = REPO / "tests" / "fixtures" / "specs" / "run_small.toml"
    first = build_report(tmp_path / "a", specs=[spec], data_dir=eurostat_dir)
    second = build_report(tmp_path / "b", specs=[spec], data_dir=eurostat_dir)
    assert first.files == second.files and "tables/effects.csv" in first.files
    for f in first.files:
        if f.endswith(".png"):
            continue  # raster output may differ between renderer versions; SVG and text must not
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
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
                rows.append({"geo": g, "citizen": c, "corridor": f"{g}-{c}", "year": y, "eu_agreement_cohort": cohort})
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
