"""Running a study spec end to end, and the estimate command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import returnstudy as rs
from returnstudy.cli import main
from returnstudy.runner import ModelSpecError, run_study
from returnstudy.spec import load_spec

SPECS = Path(__file__).parent / "fixtures" / "specs"


@pytest.fixture(scope="module")
def small_run(eurostat_dir: Path):
    return run_study(SPECS / "run_small.toml", eurostat_dir)


def test_effects_equal_a_direct_call(small_run, eurostat_dir: Path) -> None:
    panel = rs.add_treatments(rs.load_panel(eurostat_dir, years=(2013, 2016)))
    sample = rs.apply_filters(panel, [{"step": "min_orders", "n": 50, "how": "mean"}, {"step": "require_columns", "columns": ["orders", "returns"]}]).panel
    direct = rs.ppml(sample, treatments=["eu_agreement", "bilateral_binding"], cluster="citizen")
    eff = small_run.effects().set_index(["model", "treatment"])
    for t in ("eu_agreement", "bilateral_binding"):
        assert eff.loc[("ppml_small", t), "estimate"] == pytest.approx(direct.table.loc[t, "estimate"], rel=1e-12)
        assert eff.loc[("ppml_small", t), "std_error"] == pytest.approx(direct.table.loc[t, "std_error"], rel=1e-12)
        assert eff.loc[("ppml_small", t), "pct_effect"] == pytest.approx(100 * np.expm1(direct.table.loc[t, "estimate"]))
    assert set(eff.index.get_level_values("model")) == {"ppml_small", "twfe_small"}
    assert (eff["n_obs"] > 0).all() and (eff["years"] == "2013-2016").all()
    assert eff["vintage"].iloc[0] == "migr_eiord@not given; migr_eipre@04/11/24 23:00:00, not given; migr_eirtn@20/09/24 23:00:00, not given"
    assert (eff["status"] == "ok").all() and (eff["error"] == "").all()


def test_header_names_data_and_coverage(small_run) -> None:
    h = small_run.header()
    assert "migr_eirtn" in h and "sha256" in h and "years 2013-2016" in h
    assert f"{len(small_run.sample)} corridor-years" in h


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "spec.toml"
    p.write_text(body)
    return p


def test_unknown_estimator_names_spec_and_entry(tmp_path: Path) -> None:
    p = _write(tmp_path, '[[models]]\nname = "x"\nestimator = "ols_magic"\n')
    with pytest.raises(ModelSpecError, match=r"spec.toml, line 3: \[\[models\]\] entry 1: unknown estimator 'ols_magic'"):
        run_study(load_spec(p), tmp_path)


def test_unknown_model_parameter_is_rejected_before_loading_data(tmp_path: Path) -> None:
    p = _write(tmp_path, '[[models]]\nname = "x"\nestimator = "ppml"\nclustr = "citizen"\n')
    with pytest.raises(ModelSpecError, match=r"unknown parameter\(s\) \['clustr'\] for ppml"):
        run_study(load_spec(p), tmp_path / "no-data-here")


def test_estimate_json(eurostat_dir: Path, capsys, small_run) -> None:
    assert main(["estimate", "--spec", str(SPECS / "run_small.toml"), "--data", str(eurostat_dir), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    keys = {"treatment", "model", "estimate", "std_error", "ci_low", "ci_high", "irr", "pct_effect", "p_value", "n_obs", "n_corridors", "years", "vintage"}
    assert keys <= set(records[0])
    eff = small_run.effects()
    got = {(r["model"], r["treatment"]): r["estimate"] for r in records}
    for r in eff.itertuples():
        assert got[(r.model, r.treatment)] == pytest.approx(r.estimate, rel=1e-9)


def test_estimate_table_and_out(eurostat_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["estimate", "--spec", str(SPECS / "run_small.toml"), "--data", str(eurostat_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sample:" in text and "vintage:" in text and "bilateral_binding" in text and "%" in text
    from returnstudy.report import switching_units

    run = run_study(SPECS / "run_small.toml", eurostat_dir)
    n_corr, n_cit = switching_units(run.sample, "bilateral_binding")
    assert f"bilateral_binding (switches on inside the window in {n_corr} corridors, {n_cit} citizenships" in text
    assert (out / "effects_run_small.csv").is_file() and (out / "filter_flow_run_small.csv").is_file()


def test_estimate_without_data_says_how_to_get_it(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RETURNSTUDY_DATA_DIR", str(tmp_path / "empty-cache"))
    assert main(["estimate", "--spec", str(SPECS / "run_small.toml")]) == 3
    err = capsys.readouterr().err
    assert "python -m returnstudy fetch" in err and "fetch --from DIR" in err
