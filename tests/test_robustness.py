"""Sensitivity of a spec's model to alternative analytic choices."""

from __future__ import annotations

from pathlib import Path

import pytest

import returnstudy as rs
from returnstudy.robustness import Variation, sensitivity
from returnstudy.runner import run_study

SPEC = Path(__file__).parent / "fixtures" / "specs" / "run_small.toml"


@pytest.fixture(scope="module")
def result(eurostat_dir: Path):
    variations = [
        Variation("as written", group="baseline"),
        Variation("min orders 200", filters={"min_orders": {"n": 200}}, group="sample"),
        Variation("first full year", treatments={"rule": "first_full_year"}, group="coding"),
        Variation("cluster on a missing column", model={"cluster": "no_such_column"}, group="inference"),
    ]
    return sensitivity(SPEC, eurostat_dir, model="ppml_small", variations=variations)


def test_baseline_equals_the_spec_run(result, eurostat_dir: Path) -> None:
    run = run_study(SPEC, eurostat_dir)
    eff = run.effects().query("model == 'ppml_small'").set_index("treatment")
    base = result.table.query("variation == 'as written'").set_index("treatment")
    estimated = [t for t in ("eu_agreement", "bilateral_binding") if t in eff.index]
    assert "eu_agreement" in estimated
    for t in estimated:
        assert base.loc[t, "estimate"] == pytest.approx(eff.loc[t, "estimate"], rel=1e-12)
        assert base.loc[t, "pct_ci_high"] == pytest.approx(eff.loc[t, "pct_ci_high"], rel=1e-12)


def test_filter_and_coding_variations_equal_direct_computations(result, eurostat_dir: Path) -> None:
    raw = rs.load_panel(eurostat_dir, years=(2013, 2016))
    steps = [{"step": "min_orders", "n": 200, "how": "mean"}, {"step": "require_columns", "columns": ["orders", "returns"]}]
    direct = rs.ppml(rs.apply_filters(rs.add_treatments(raw), steps).panel, treatments=["eu_agreement", "bilateral_binding"])
    got = result.table.query("variation == 'min orders 200'").set_index("treatment")
    assert got.loc["eu_agreement", "estimate"] == pytest.approx(direct.coef("eu_agreement"), rel=1e-12)
    assert got.loc["eu_agreement", "n_obs"] == direct.info["n_obs"]
    steps[0]["n"] = 50
    ffy = rs.ppml(rs.apply_filters(rs.add_treatments(raw, rule="first_full_year"), steps).panel, treatments=["eu_agreement", "bilateral_binding"])
    got = result.table.query("variation == 'first full year'").set_index("treatment")
    assert got.loc["eu_agreement", "estimate"] == pytest.approx(ffy.coef("eu_agreement"), rel=1e-12)


def test_a_failing_variation_is_reported_not_dropped(result) -> None:
    rows = result.table.query("variation == 'cluster on a missing column'")
    assert len(rows) == 2  # one per treatment of the model
    assert rows["error"].str.contains("no_such_column").all()
    assert result.wide().set_index("variation").loc["cluster on a missing column", "eu_agreement"] == "failed"


def test_plot_and_text(result) -> None:
    fig = result.plot("eu_agreement")
    assert len(fig.axes[0].get_yticklabels()) == 3  # the failed variation has no estimate of it
    assert "min orders 200" in result.summary()


def test_unknown_filter_step_in_a_variation(eurostat_dir: Path) -> None:
    with pytest.raises(KeyError, match=r"has no filter step 'balanced'"):
        sensitivity(SPEC, eurostat_dir, model="ppml_small", variations=[Variation("x", filters={"balanced": {"enabled": True}})])
    with pytest.raises(KeyError, match="model 'nope' not in spec"):
        sensitivity(SPEC, eurostat_dir, model="nope")


def test_with_filter_changes_one_step_only() -> None:
    from returnstudy.spec import load_spec

    spec = load_spec(SPEC)
    changed = spec.with_filter("min_orders", n=75)
    assert [f.params.get("n") for f in changed.filters if f.step == "min_orders"] == [75]
    assert [f.params.get("n") for f in spec.filters if f.step == "min_orders"] == [50]  # original untouched
    assert changed.filters[1] == spec.filters[1]
    off = spec.with_filter("min_orders", enabled=False)
    assert [f.enabled for f in off.filters] == [False, True]
