"""Running a study spec end to end, and the estimate command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import returnstudy as rs
from returnstudy.cli import main
from returnstudy.reuse import reuse_prepared
from returnstudy.runner import ModelSpecError, run_study
from returnstudy.spec import load_spec
from returnstudy.treatments import TREATMENT_TYPES

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


def test_estimate_table_and_out(eurostat_dir: Path, tmp_path: Path, capsys, small_run) -> None:
    out = tmp_path / "out"
    assert main(["estimate", "--spec", str(SPECS / "run_small.toml"), "--data", str(eurostat_dir), "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    from returnstudy.identification import switching_counts
    from returnstudy.verdict import verdict

    lines = text.splitlines()
    assert lines[0].endswith(f"on data from directory {eurostat_dir}")
    s = small_run.sample
    assert lines[1] == (
        "data migr_eiord@not given; migr_eipre@04/11/24 23:00:00, not given; migr_eirtn@20/09/24 23:00:00, not given; "
        f"sample {len(s)} corridor-years, {s['corridor'].nunique()} corridors, years 2013-2016; filters: min_orders, require_columns"
    )
    eff = small_run.effects().set_index(["model", "treatment"])
    # identifying units counted on the rows the headline model (here the first Poisson model) used
    ppml_small = next(m.result for m in small_run.models if m.name == "ppml_small")
    n_corr, n_cit, basis = switching_counts(ppml_small, s, "bilateral_binding")
    assert basis == "rows used by the model"
    assert (eff.loc[("ppml_small", "bilateral_binding"), ["switching_corridors", "switching_citizenships"]].tolist()
            == [n_corr, n_cit])
    assert f"bilateral_binding: switches on inside the window in {n_corr} corridors, {n_cit} citizenships" in text
    # Poisson row: percent change with its CI and the report's verdict
    r = eff.loc[("ppml_small", "bilateral_binding")]
    v = verdict("bilateral_binding", r["pct_ci_low"], r["pct_ci_high"], estimate=r["pct_effect"], switching_citizenships=n_cit)
    row = next(ln for ln in lines if ln.strip().startswith("ppml_small") and f"{r['pct_effect']:+.1f}%" in ln)
    assert f"[{r['pct_ci_low']:+.1f}%, {r['pct_ci_high']:+.1f}%]" in row and row.endswith(v)
    # linear row: percentage points of the return rate = 100 x the coefficient
    r = eff.loc[("twfe_small", "bilateral_binding")]
    row = next(ln for ln in lines if ln.strip().startswith("twfe_small") and f"{100 * r['estimate']:+.1f} pp" in ln)
    assert f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}] pp" in row
    assert row.endswith(verdict("bilateral_binding", 100 * r["ci_low"], 100 * r["ci_high"], estimate=100 * r["estimate"],
                                switching_citizenships=n_cit))
    for f in ("effects_run_small.csv", "filter_flow_run_small.csv"):
        assert (out / f).stat().st_mode & 0o777 == 0o644


def _bad_model_spec(tmp_path: Path, line: str) -> Path:
    """run_small.toml with one line of its first model (same key) replaced by ``line``."""
    text = (SPECS / "run_small.toml").read_text()
    key = line.split(" = ")[0]
    first_model = text.index("[[models]]")
    old = next(ln for ln in text[first_model:].splitlines() if ln.startswith(f"{key} = "))
    return _write(tmp_path, text[:first_model] + text[first_model:].replace(old, line, 1))


@pytest.mark.parametrize(
    ("line", "key", "valid"),
    [
        ('cluster = "citzen"', "cluster", "['corridor', 'geo', 'citizen', 'year', '(interactions as geo^year)']"),
        ('treatments = ["eu_agreement", "bilateral_binding"]\nfe = ["corridor", "geo^yaer"]', "fe", "['corridor', 'geo', 'citizen', 'year', '(interactions as geo^year)']"),
        ('treatments = ["eu_agrement"]', "treatments", str(list(TREATMENT_TYPES))),
    ],
)
def test_column_typo_in_a_model_fails_with_file_line_and_valid_names(tmp_path: Path, eurostat_dir: Path, capsys, line, key, valid) -> None:
    spec = _bad_model_spec(tmp_path, line)
    bad_line = spec.read_text().splitlines().index(line.splitlines()[-1]) + 1
    with reuse_prepared():  # the library call and the CLI share one read of the snapshot, as a report does
        with pytest.raises(ModelSpecError) as e:
            run_study(spec, eurostat_dir)
        assert f"spec.toml, line {bad_line}: [[models]] 'ppml_small' (ppml): {key} = " in str(e.value)
        assert str(e.value).endswith(valid)
        # the CLI: non-zero exit with the same message, nothing on stdout
        assert main(["estimate", "--spec", str(spec), "--data", str(eurostat_dir), "-q"]) == 1
    captured = capsys.readouterr()
    assert f"line {bad_line}" in captured.err and valid in captured.err and captured.out == ""


def test_keep_going_reports_the_failed_model_as_a_row(tmp_path: Path, eurostat_dir: Path, capsys, small_run) -> None:
    spec = _bad_model_spec(tmp_path, 'cluster = "citzen"')
    with reuse_prepared():  # one read of the snapshot for the run and the three CLI formats, as a report does
        run = run_study(spec, eurostat_dir, keep_going=True)
        eff = run.effects()
        failed = eff[eff["model"] == "ppml_small"]
        assert list(failed["treatment"]) == ["eu_agreement", "bilateral_binding"]
        assert (failed["status"] == "failed").all() and failed["estimate"].isna().all()
        assert failed["error"].str.contains("no column 'citzen'").all()
        ok = eff[eff["model"] == "twfe_small"].set_index("treatment")
        ref = small_run.effects().query("model == 'twfe_small'").set_index("treatment")
        assert (ok["status"] == "ok").all()
        np.testing.assert_allclose(ok["estimate"], ref["estimate"], rtol=1e-12)
        for fmt in ("json", "csv", "table"):
            assert main(["estimate", "--spec", str(spec), "--data", str(eurostat_dir), "--keep-going", "--format", fmt, "-q"]) == 0
            out = capsys.readouterr().out
            if fmt == "json":
                rec = [r for r in json.loads(out) if r["model"] == "ppml_small"]
                assert len(rec) == 2 and all(r["status"] == "failed" and "citzen" in r["error"] for r in rec)
            elif fmt == "csv":
                import io

                import pandas as pd

                table = pd.read_csv(io.StringIO(out), keep_default_na=False)
                assert list(table.loc[table["model"] == "ppml_small", "status"]) == ["failed", "failed"]
            else:
                rows = [ln for ln in out.splitlines() if ln.startswith("  ppml_small ")]
                assert len(rows) == 2 and all("FAILED: ModelSpecError" in ln and "'citzen'" in ln for ln in rows)


def test_a_model_that_fails_while_fitting_names_spec_and_line(tmp_path: Path, eurostat_dir: Path) -> None:
    # a window without leads is invalid for the event study: raised by the estimator, not the column check
    spec = _write(tmp_path, '[study]\nname = "es"\n[data]\nyears = [2013, 2016]\n\n[[models]]\nname = "es_bad"\n'
                            'estimator = "event_study"\ntreatment = "bilateral_binding"\nwindow = [0, 2]\n')
    with reuse_prepared():  # the failing and the keep-going run share one read of the snapshot
        with pytest.raises(ModelSpecError, match=r"spec.toml, line 6: \[\[models\]\] 'es_bad' \(event_study\) failed: ValueError: window"):
            run_study(spec, eurostat_dir)
        run = run_study(spec, eurostat_dir, keep_going=True)
        assert run.models[0].status == "failed" and run.effects()["status"].tolist() == ["failed"]


def test_a_spec_without_models_is_an_error(tmp_path: Path) -> None:
    p = _write(tmp_path, '[study]\nname = "empty"\n')
    with pytest.raises(ModelSpecError, match=r"spec 'empty' has no \[\[models\]\] entries"):
        run_study(load_spec(p), tmp_path / "no-data-here")
    assert main(["estimate", "--spec", str(p)]) == 1


def test_repr_is_short_and_summary_long(small_run) -> None:
    r = repr(small_run)
    assert r == f"<StudyRun 'run_small': 2 models (2 ok), sample {len(small_run.sample)} corridor-years; .summary() for details>"
    res = small_run.models[0].result
    assert len(repr(res).splitlines()) == 1 and len(repr(res)) < 200
    assert res.info["n_obs"] and f"{res.info['n_obs']} corridor-years" in repr(res)
    assert small_run.summary().startswith(small_run.header()) and "twfe_small" in small_run.summary()


def test_warnings_name_the_model(eurostat_dir: Path, tmp_path: Path, caplog) -> None:
    # in 2012-2016, the event study of EU agreements has no corridor three years before adoption:
    # the estimator drops that lead as collinear and warns; the warning names the model
    spec = _write(tmp_path, '[study]\nname = "w"\n[data]\nyears = [2012, 2016]\n\n[[models]]\nname = "es_eu"\n'
                            'estimator = "event_study"\ntreatment = "eu_agreement"\nwindow = [-3, 3]\ncluster = "citizen"\n')
    import logging

    with caplog.at_level(logging.WARNING, logger="returnstudy"):
        run = run_study(spec, eurostat_dir)
    assert -3 not in run.models[0].result.table.index
    msgs = [r.getMessage() for r in caplog.records if "collinear" in r.getMessage()]
    assert msgs and all(m.startswith("es_eu: ") and "rel_m3" in m for m in msgs)


def test_progress_lines_without_a_terminal(eurostat_dir: Path, capsys) -> None:
    with reuse_prepared():  # one read of the snapshot for both runs: what is checked is the progress output
        assert main(["estimate", "--spec", str(SPECS / "run_small.toml"), "--data", str(eurostat_dir)]) == 0
        err = capsys.readouterr().err.splitlines()
        assert [ln for ln in err if ln.startswith("models (run_small)")] == [
            "models (run_small): 1/2 ppml_small", "models (run_small): 2/2 twfe_small"]
        assert main(["estimate", "--spec", str(SPECS / "run_small.toml"), "--data", str(eurostat_dir), "-q"]) == 0
        assert "models (" not in capsys.readouterr().err


def test_estimate_without_data_says_how_to_get_it(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RETURNSTUDY_DATA_DIR", str(tmp_path / "empty-cache"))
    assert main(["estimate", "--spec", str(SPECS / "run_small.toml")]) == 3
    err = capsys.readouterr().err
    assert "python -m returnstudy fetch" in err and "fetch --from DIR" in err


def test_misuse_errors_name_the_valid_choices_and_the_emptying_condition(small_run) -> None:
    sample = small_run.sample
    cohorts = sorted(c[: -len("_cohort")] for c in sample.columns if c.endswith("_cohort"))
    with pytest.raises(KeyError, match=re.escape(f"treatment 'eu_agrement'; treatments with cohort columns in this panel: {cohorts}")):
        rs.event_study(sample, treatment="eu_agrement", window=(-2, 2))
    with pytest.raises(KeyError, match=re.escape(f"treatment column 'eu_agrement' not in panel; treatments with cohort columns in this panel: {cohorts}")):
        rs.did_imputation(sample, treatment="eu_agrement")
    with pytest.raises(ValueError, match="empty estimation sample: the panel passed to the estimator has 0 rows"):
        rs.ppml(sample.iloc[:0], treatments=["eu_agreement"])
    no_orders = sample.assign(orders=np.nan)
    with pytest.raises(ValueError, match=rf"no rows left of {len(sample)}: exposure 'orders' is missing or <= 0 in every row"):
        rs.ppml(no_orders, treatments=["eu_agreement"])
    no_rate = sample.assign(return_rate=np.nan)
    with pytest.raises(ValueError, match=rf"no rows left of {len(sample)}: every row was dropped \(missing return_rate: {len(sample)} rows\)"):
        rs.twfe(no_rate, treatments=["eu_agreement"])


def test_option_values_are_not_mistaken_for_columns(tmp_path: Path, eurostat_dir: Path) -> None:
    """``other_treatments = "drop"`` is an option of the event study, not a column name: the spec runs
    and gives the same coefficients as the direct call."""
    from returnstudy.models.event_study import event_study

    spec = _write(tmp_path, '[study]\nname = "es"\n[data]\nyears = [2012, 2016]\n\n[[models]]\nname = "es_drop"\n'
                            'estimator = "event_study"\ntreatment = "bilateral_binding"\nwindow = [-2, 2]\n'
                            'other_treatments = "drop"\n')
    run = run_study(spec, eurostat_dir)
    direct = event_study(run.sample, treatment="bilateral_binding", window=(-2, 2), other_treatments="drop")
    np.testing.assert_allclose(run.models[0].result.table["estimate"].to_numpy(float),
                               direct.table["estimate"].to_numpy(float), rtol=1e-12, equal_nan=True)
