"""Study spec: the default file, typed sections, raw model/report sections, every error path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from returnstudy.filters import FILTERS, FilterError
from returnstudy.spec import (
    DataSpec,
    QualitySpec,
    SpecError,
    StudySpec,
    TreatmentSpec,
    default_spec_path,
    load_spec,
    spec_from_dict,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "specs"


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_default_spec_is_complete_and_valid():
    path = default_spec_path()
    assert path.name == "wodc.toml" and path.parent.name == "specs"
    spec = load_spec()
    assert spec.path == path
    assert spec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert spec.study.name == "wodc"
    assert set(spec.data.tables) == {"migr_eiord", "migr_eirtn", "migr_eipre"}
    steps = [f.step for f in spec.filters]
    assert len(set(steps)) == len(steps) and set(steps) <= set(FILTERS)
    for s in ("eu_plus_corridors", "drop_aggregates", "years", "reported_geo_years", "min_orders", "require_columns"):
        assert s in steps
    # every threshold is written in the file, not taken from a code default
    mo = next(f for f in spec.filters if f.step == "min_orders")
    assert mo.params == {"n": 10, "how": "mean"} and mo.enabled
    rr = next(f for f in spec.filters if f.step == "return_rate_bound")
    assert rr.enabled is False and rr.params["bound"] == 5.0
    text = path.read_text()
    for key in ("break_k", "coverage_min", "rounding_min", "rate_excess_share_max", "total_gap_max"):
        assert f"\n{key} =" in text
    # each [[filters]] line points at its header, the next line names the step
    lines = text.splitlines()
    for f in spec.filters:
        assert lines[f.line - 1].strip() == "[[filters]]"
        assert f.position == spec.filters.index(f) + 1
        following = [ln.strip() for ln in lines[f.line:] if ln.strip() and not ln.strip().startswith("#")]
        assert following[0] == f'step = "{f.step}"'
    assert "filter 5: min_orders" in spec.describe()
    assert spec.filter_dicts()[0] == {"step": "eu_plus_corridors"}


def test_small_fixture_all_sections():
    spec = load_spec(FIXTURES / "small.toml")
    assert spec.study == spec.study.__class__(name="small", title="test spec")
    assert spec.data == DataSpec(years=(2012, 2015), keep_aggregates=True, uk_until=2019)
    assert spec.data.load_panel_kwargs() == {
        "data_dir": None, "years": (2012, 2015), "keep_aggregates": True, "keep_eu_plus_citizens": False,
        "eu_plus_only": True, "uk_until": 2019, "zero_fill": "auto",
    }
    assert spec.treatments == TreatmentSpec(rule="share_of_year", protocols_as_binding=False)
    assert spec.treatments.add_treatments_kwargs()["protocols_as_binding"] is False
    assert spec.quality == QualitySpec(break_k=3.0)
    assert spec.quality.kwargs()["rounding_base"] == 5 and isinstance(spec.quality.kwargs()["rounding_base"], int)
    # reserved sections kept raw for the model and report layers
    assert spec.models == [
        {"name": "twfe_rate", "estimator": "twfe", "outcome": "return_rate"},
        {"name": "ppml", "estimator": "ppml"},
    ]
    assert spec.report == {"title": "Small report", "figures": ["event_study"]}
    assert [f.step for f in spec.filters] == ["drop_aggregates", "years", "min_orders", "exclude_citizens"]
    assert [f.line for f in spec.filters] == [18, 21, 26, 31]
    assert spec.filters[3].enabled is False
    assert spec.filters[3].params == {"citizens": ["western_balkans", "MA"]}
    assert spec.filter_dicts() == [
        {"step": "drop_aggregates"}, {"step": "years", "start": 2012, "end": 2015}, {"step": "min_orders", "n": 12, "how": "mean"},
    ]


def test_relative_dirs_resolve_against_spec_file(tmp_path):
    sub = tmp_path / "specs"
    sub.mkdir()
    p = write(sub, '[data]\ndata_dir = "../snap"\n[treatments]\nagreements_dir = "agr"\n')
    spec = load_spec(p)
    assert spec.data.data_dir == (tmp_path / "snap").resolve()
    assert spec.treatments.agreements_dir == (sub / "agr").resolve()


def test_empty_spec_gives_defaults(tmp_path):
    spec = load_spec(write(tmp_path, "# nothing\n"))
    assert spec.filters == () and spec.models == [] and spec.report == {}
    assert spec.data == DataSpec() and spec.treatments == TreatmentSpec()


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("[study]\nname = 'x'\n\n[dta]\nyears = [2012, 2016]\n", r"line 4: unknown key 'dta'; allowed top-level"),
        ("seed = 3\n[study]\nname = 'x'\n", r"line 1: unknown key 'seed'"),
        ("[data]\ntables = ['migr_eiord']\nkeep_aggregate = true\n", r"line 3: unknown key 'keep_aggregate' in \[data\]"),
        ("[treatments]\n\nrul = 'calendar_year'\n", r"line 3: unknown key 'rul' in \[treatments\]"),
        ("[quality]\nbreak_kk = 3\n", r"line 2: unknown key 'break_kk' in \[quality\]"),
        ("[study]\nnam = 'x'\n", r"line 2: unknown key 'nam' in \[study\]"),
        ("[data]\nyears = [2016, 2012]\n", r"line 2: \[data\] years: first year 2016 is after last year 2012"),
        ("[data]\nyears = 2012\n", r"line 2: \[data\] years must be a list \[first, last\]"),
        ("[data]\nyears = [2012, 2013, 2014]\n", r"years must be a list \[first, last\] of two integers"),
        ("[data]\nkeep_aggregates = 'yes'\n", r"line 2: \[data\] keep_aggregates must be true or false, got str 'yes'"),
        ("[data]\nuk_until = 2019.5\n", r"\[data\] uk_until must be an integer"),
        ("[data]\ntables = ['migr_eiord', 'migr_xyz']\n", r"unknown table\(s\) \['migr_xyz'\]"),
        ("[data]\nzero_fill = 'always'\n", r"zero_fill must be 'auto' or 'never'"),
        ("[treatments]\nrule = 'monthly'\n", r"line 2: \[treatments\] rule must be one of"),
        ("[treatments]\ntypes = ['eu_agreement', 'visa']\n", r"unknown type\(s\) \['visa'\]"),
        ("[treatments]\nnonbinding_start = 'never'\n", r"nonbinding_start must be 'signed' or 'in_force'"),
        ("[quality]\ncoverage_min = 1.5\n", r"line 2: \[quality\] coverage_min = 1.5 is out of range"),
        ("[quality]\nrounding_base = 2.5\n", r"rounding_base = 2.5 is out of range"),
        ("[quality]\nbreak_k = 'five'\n", r"\[quality\] break_k must be a number"),
        ("[[filters]]\nn = 10\n", r"line 1: \[\[filters\]\] entry 1 has no 'step' key"),
        ("[[filters]]\nstep = 'years'\nstart = 2012\n\n[[filters]]\nstep = 'years'\nenabled = 'no'\n", r"line 7: \[filters\] enabled must be true or false"),
        ("filters = 3\n", r"'filters' must be an array of tables"),
        ("models = {a = 1}\n", r"'models' must be an array of tables"),
        ("report = 3\n", r"'report' must be a table"),
    ],
)
def test_bad_specs_name_file_line_and_key(tmp_path, text, pattern):
    p = write(tmp_path, text)
    with pytest.raises(SpecError, match=pattern) as exc:
        load_spec(p)
    assert str(p) in str(exc.value)


def test_fixture_unknown_key_line():
    p = FIXTURES / "bad_unknown_key.toml"
    with pytest.raises(SpecError, match=rf"{p}, line 6: unknown key 'yeras' in \[data\]"):
        load_spec(p)


def test_fixture_filter_type_error_names_step_file_line():
    p = FIXTURES / "bad_filter_type.toml"
    with pytest.raises(FilterError, match=rf"filter step 2 'min_orders' \({p}, line 9\): parameter 'n' must be float, got str 'ten'"):
        load_spec(p)
    # without load-time validation the spec loads; apply_filters then raises the same message
    spec = load_spec(p, validate_filters=False)
    assert spec.filters[1].line == 9


def test_unknown_filter_step_and_parameter_in_file(tmp_path):
    p = write(tmp_path, "[[filters]]\nstep = 'years'\nstart = 2012\n\n[[filters]]\nstep = 'min_order'\n")
    with pytest.raises(FilterError, match=r"filter step 2 'min_order' \(.*, line 5\): unknown step; valid steps: \["):
        load_spec(p)
    p = write(tmp_path, "[[filters]]\nstep = 'min_orders'\nminimum = 10\n", "b.toml")
    with pytest.raises(FilterError, match=r"filter step 1 'min_orders' \(.*b.toml, line 1\): unknown parameter\(s\) \['minimum'\]"):
        load_spec(p)


def test_invalid_toml_and_missing_file(tmp_path):
    p = write(tmp_path, "[data\nyears = 1\n")
    with pytest.raises(SpecError, match=rf"{p}: invalid TOML"):
        load_spec(p)
    with pytest.raises(FileNotFoundError, match="study spec not found"):
        load_spec(tmp_path / "nope.toml")


def test_spec_from_dict_without_file():
    spec = spec_from_dict({"filters": [{"step": "years", "start": 2012}], "report": {"x": 1}})
    assert isinstance(spec, StudySpec) and spec.path is None and spec.sha256 is None
    assert spec.filters[0].line is None and spec.filters[0].where() == "filter step 1 'years'"
    with pytest.raises(SpecError, match=r"study spec: unknown key 'foo'"):
        spec_from_dict({"foo": {}})


def test_shipped_specs_load_by_name_from_any_directory(tmp_path, monkeypatch):
    from returnstudy.paths import project_data_dir
    from returnstudy.spec import shipped_specs

    monkeypatch.chdir(tmp_path)  # no data/specs here
    specs_dir = project_data_dir() / "specs"
    assert set(shipped_specs()) == {"wodc", "third_country_2014_2023"}  # multiverse.toml is a grid, not a spec
    assert all(p.parent == specs_dir for p in shipped_specs().values())
    for name in ("third_country_2014_2023", "third_country_2014_2023.toml"):
        spec = load_spec(name)
        assert spec.path == specs_dir / "third_country_2014_2023.toml"
        assert spec.study.name == "third_country_2014_2023"
    # a file of the same name in the working directory wins over the shipped one
    (tmp_path / "wodc.toml").write_text('[study]\nname = "local"\n')
    assert load_spec("wodc.toml").study.name == "local"


def test_unknown_spec_name_lists_the_shipped_specs(tmp_path, monkeypatch):
    from returnstudy.spec import shipped_specs

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        load_spec("nope")
    msg = str(e.value)
    assert msg.startswith("study spec not found: nope")
    assert f"shipped specs: {sorted(shipped_specs())}" in msg and "'wodc'" in msg
