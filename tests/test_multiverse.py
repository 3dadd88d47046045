"""The multiverse: grid, engine (backends, checkpoint), result summaries and the null test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import returnstudy as rs
from returnstudy.multiverse import multiverse
from returnstudy.multiverse_grid import GridError, grid_from_dict, load_grid
from returnstudy.multiverse_result import MultiverseResult
from returnstudy.spec import spec_from_dict
from tests._simpanel import SIM_GRID, SIM_SPEC_DICT

SPEC = Path(__file__).parent / "fixtures" / "specs" / "run_small.toml"

SMALL_GRID = {
    "grid": {"name": "small", "treatments": ["eu_agreement", "bilateral_nonbinding"], "focal_treatments": ["eu_agreement"]},
    "dimensions": [
        {"name": "min_orders", "rationale": "r", "baseline": "50", "options": [
            {"name": "50", "rationale": "r", "filters": {"min_orders": {"n": 50}}},
            {"name": "200", "rationale": "r", "filters": {"min_orders": {"n": 200}}}]},
        {"name": "switch_on", "rationale": "r", "baseline": "calendar_year", "options": [
            {"name": "calendar_year", "rationale": "r", "treatments": {"rule": "calendar_year"}},
            {"name": "first_full_year", "rationale": "r", "treatments": {"rule": "first_full_year"}}]},
        {"name": "estimator", "rationale": "r", "baseline": "ppml", "options": [
            {"name": "ppml", "rationale": "r", "model": {"estimator": "ppml"}},
            {"name": "linear", "rationale": "r", "model": {"estimator": "twfe", "outcome": "return_rate", "weights": "orders"}},
            {"name": "imputation", "rationale": "r", "model": {"estimator": "did_imputation", "model": "linear"}}]},
        {"name": "clustering", "rationale": "r", "baseline": "citizen", "options": [
            {"name": "citizen", "rationale": "r", "model": {"cluster": "citizen"}},
            {"name": "two-way", "rationale": "r", "model": {"cluster": ["citizen", "geo"]}}]},
    ],
    "exclude": [{"reason": "one-way clustering only", "when": {"clustering": ["two-way"], "estimator": ["imputation"]}}],
}


def small_grid():
    return grid_from_dict(SMALL_GRID)


# ----------------------------------------------------------------------------- grid


def test_shipped_grid_is_large_and_declares_every_choice() -> None:
    g = load_grid()
    full, excluded = g.specifications("sample", n=2000, seed=1)
    assert len(full) == 2000
    for name in ("window", "min_orders", "western_balkans", "return_rate_bound", "balanced", "switch_on", "binding_start",
                 "protocols", "unknown_legal_form", "unresearched_corridors", "exposure", "fixed_effects", "estimator",
                 "clustering"):
        d = g.dimension(name)
        assert d.rationale and all(o.rationale for o in d.options)
    assert sum(excluded.values()) > 0
    # every excluded combination really matches a rule, every kept one matches none
    assert not any(r.matches(s.choices) for s in full for r in g.exclude)
    sample, _ = g.specifications("sample", n=50, seed=3)
    assert len(sample) == 50 and sample == g.specifications("sample", n=50, seed=3)[0]


def test_small_grid_counts_by_hand() -> None:
    specs, excluded = small_grid().specifications("full")
    # 2 x 2 x 3 x 2 = 24 combinations, minus imputation x two-way (2 x 2 = 4)
    assert len(specs) == 20 and excluded == {"one-way clustering only": 4}
    oat, _ = small_grid().specifications("one_at_a_time")
    assert [s.key for s in oat][:2] == ["min_orders=50|switch_on=calendar_year|estimator=ppml|clustering=citizen",
                                         "min_orders=200|switch_on=calendar_year|estimator=ppml|clustering=citizen"]
    assert len(oat) == 1 + 1 + 1 + 2 + 1


def test_not_applicable_dimension_collapses() -> None:
    raw = {"dimensions": [
        {"name": "estimator", "rationale": "r", "options": [{"name": "a", "rationale": "r", "model": {"estimator": "ppml"}},
                                                              {"name": "b", "rationale": "r", "model": {"estimator": "twfe"}}]},
        {"name": "exposure", "rationale": "r", "applies_to": {"estimator": ["a"]}, "options": [
            {"name": "offset", "rationale": "r", "model": {"exposure_as": "offset"}},
            {"name": "regressor", "rationale": "r", "model": {"exposure_as": "regressor"}}]}]}
    specs, _ = grid_from_dict(raw).specifications("full")
    assert [s.key for s in specs] == ["estimator=a|exposure=offset", "estimator=a|exposure=regressor", "estimator=b|exposure=n/a"]
    assert "exposure_as" not in specs[2].model


def test_bad_grids_name_the_problem() -> None:
    bad = {"dimensions": [{"name": "x", "rationale": "r", "options": [{"name": "a", "rationale": "r", "treatments": {"nope": 1}}]}]}
    with pytest.raises(GridError, match="add_treatments has no argument"):
        grid_from_dict(bad)
    bad["dimensions"][0]["optional"] = True
    with pytest.raises(GridError, match="no \\[\\[dimensions\\]\\]"):
        grid_from_dict(bad)  # the only dimension is left out
    bad = {"dimensions": [{"name": "x", "rationale": "r", "options": [{"name": "a"}]}]}
    with pytest.raises(GridError, match="rationale is required"):
        grid_from_dict(bad)
    bad = dict(SMALL_GRID, exclude=[{"reason": "r", "when": {"clustering": ["three-way"]}}])
    with pytest.raises(GridError, match="has no option"):
        grid_from_dict(bad)


# ----------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def serial(eurostat_dir: Path) -> MultiverseResult:
    return multiverse(SPEC, eurostat_dir, small_grid(), design="full")


def test_rows_equal_direct_fits(serial: MultiverseResult, eurostat_dir: Path) -> None:
    t = serial.table
    assert len(t) == 16 * 2 + 4 * 1  # ppml/linear: two treatments; imputation (one-way only): the focal one
    assert serial.info["codings"] == 2 and serial.info["filter_runs"] == 2 and serial.info["samples"] == 4
    raw = rs.load_panel(eurostat_dir, years=(2013, 2016))
    steps = [{"step": "min_orders", "n": 200, "how": "mean"}, {"step": "require_columns", "columns": ["orders", "returns"]}]
    sample = rs.apply_filters(rs.add_treatments(raw, rule="first_full_year"), steps).panel
    direct = rs.twfe(sample, outcome="return_rate", treatments=["eu_agreement", "bilateral_nonbinding"], weights="orders",
                     cluster=("citizen", "geo"))
    row = t.query("min_orders == '200' and switch_on == 'first_full_year' and estimator == 'linear' and "
                  "clustering == 'two-way' and treatment == 'eu_agreement'").iloc[0]
    assert row["estimate"] == pytest.approx(direct.coef("eu_agreement"), rel=1e-12)
    assert row["std_error"] == pytest.approx(direct.table.loc["eu_agreement", "std_error"], rel=1e-12)
    assert row["n_obs"] == direct.info["n_obs"]
    mean = sample["returns"].sum() / sample["orders"].sum()
    assert row["effect_pct"] == pytest.approx(100 * row["estimate"] / mean, rel=1e-9)
    ppml = t.query("estimator == 'ppml' and status == 'ok'").iloc[0]
    assert ppml["effect_pct"] == pytest.approx(ppml["pct_effect"], rel=1e-9)
    assert set(t["status"]) <= {"ok", "not identified", "failed", "unsupported"}


def test_identical_tables_on_every_backend(serial: MultiverseResult, eurostat_dir: Path) -> None:
    pytest.importorskip("distributed")
    for backend, n_jobs in (("joblib", 2), ("dask", 2)):
        other = multiverse(SPEC, eurostat_dir, small_grid(), design="full", backend=backend, n_jobs=n_jobs)
        pd.testing.assert_frame_equal(other.table, serial.table, check_exact=True)


def test_ray_backend_identical_when_installed(serial: MultiverseResult, eurostat_dir: Path) -> None:
    pytest.importorskip("ray")  # optional extra 'ray'
    other = multiverse(SPEC, eurostat_dir, small_grid(), design="full", backend="ray", n_jobs=2)
    pd.testing.assert_frame_equal(other.table, serial.table, check_exact=True)


def test_resume_recomputes_nothing(serial: MultiverseResult, eurostat_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import returnstudy.multiverse as engine

    calls = {"n": 0}
    real = engine.run_task

    def interrupted(ctx, task):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the run dies after two tasks
        return real(ctx, task)

    monkeypatch.setattr(engine, "run_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        multiverse(SPEC, eurostat_dir, small_grid(), design="full", checkpoint=tmp_path)
    monkeypatch.setattr(engine, "run_task", real)
    assert len(list(tmp_path.glob("part-*.parquet"))) == 2
    done = pd.concat([pd.read_parquet(p) for p in tmp_path.glob("part-*.parquet")])
    n_done = done["spec_id"].nunique()
    fits_done = done.drop_duplicates("spec_id").shape[0]  # one fit per specification in this grid
    resumed = multiverse(SPEC, eurostat_dir, small_grid(), design="full", checkpoint=tmp_path)
    assert 0 < resumed.info["resumed"] == n_done < 20
    assert resumed.info["fits"] == serial.info["fits"] - fits_done
    pd.testing.assert_frame_equal(resumed.table, serial.table, check_exact=True)
    again = multiverse(SPEC, eurostat_dir, small_grid(), design="full", checkpoint=tmp_path)
    assert again.info["fits"] == 0 and again.info["resumed"] == 20 and again.info["codings"] == 0
    pd.testing.assert_frame_equal(again.table, serial.table, check_exact=True)


def test_changed_input_invalidates_rows(serial: MultiverseResult, eurostat_dir: Path, tmp_path: Path) -> None:
    multiverse(SPEC, eurostat_dir, small_grid(), design="one_at_a_time", checkpoint=tmp_path)
    spec = rs.load_spec(SPEC)
    other = spec.__class__(**{**spec.__dict__, "sha256": "0" * 64})  # a changed spec file
    rerun = multiverse(other, eurostat_dir, small_grid(), design="one_at_a_time", checkpoint=tmp_path)
    assert rerun.info["resumed"] == 0 and rerun.info["fits"] > 0


# ----------------------------------------------------------------------------- result summaries


def test_variance_decomposition_recovers_constructed_shares(serial: MultiverseResult) -> None:
    # a balanced 3 x 2 grid of estimates: y = a(first) + b(second), a in {-2, 0, 2}, b in {-1, 1}
    rows = []
    for i, a in zip(["x", "y", "z"], [-2.0, 0.0, 2.0]):
        for j, b in zip(["p", "q"], [-1.0, 1.0]):
            for rep in range(4):
                rows.append({"dim_a": i, "dim_b": j, "treatment": "t", "status": "ok", "effect_pct": a + b, "spec_id": len(rows)})
    grid = grid_from_dict({"dimensions": [
        {"name": "dim_a", "rationale": "r", "options": [{"name": n, "rationale": "r"} for n in "xyz"]},
        {"name": "dim_b", "rationale": "r", "options": [{"name": n, "rationale": "r"} for n in "pq"]}]})
    res = MultiverseResult(table=pd.DataFrame(rows), grid=grid, spec=serial.spec)
    vd = res.variance_decomposition("t").set_index("term")
    # variance of a: 8/3, of b: 1 -> shares 8/11 and 3/11, no interaction, no residual
    assert vd.loc["dim_a", "share"] == pytest.approx(8 / 11, abs=1e-12)
    assert vd.loc["dim_b", "share"] == pytest.approx(3 / 11, abs=1e-12)
    assert vd.loc["dim_a x dim_b", "share"] == pytest.approx(0.0, abs=1e-12)
    assert vd.loc["residual", "share"] == pytest.approx(0.0, abs=1e-12)


def test_flips_curve_and_text(serial: MultiverseResult) -> None:
    flips = serial.which_choices_flip("eu_agreement")
    t = serial.rows("eu_agreement")
    est = t[np.isfinite(t["effect_pct"])]
    row = flips.query("dimension == 'estimator' and option == 'ppml'").iloc[0]
    sel = est[est["estimator"] == "ppml"]
    assert row["n_specs"] == len(sel)
    assert row["share_ci_above_zero"] == pytest.approx((sel["effect_pct_low"] > 0).mean())
    base = flips[flips["baseline"]].set_index("dimension")["conclusion"]
    for r in flips.itertuples():
        assert r.flips == (r.conclusion != base[r.dimension])
    fig = serial.curve("eu_agreement")
    top = fig.axes[0]
    ys = top.collections[1].get_offsets()[:, 1]
    assert np.all(np.diff(ys) >= 0) and len(ys) == len(est)
    s = serial.shares("eu_agreement")
    assert s["above_zero"] + s["below_zero"] + s["includes_zero"] == pytest.approx(1.0)
    assert "Multiverse 'small'" in serial.summary() and "<strong>" in serial._repr_html_()


# ----------------------------------------------------------------------------- null test on simulated panels

SIM_SPEC = spec_from_dict(SIM_SPEC_DICT)


def _sim_null(seed: int, base_effect: float, draws: int = 19):
    panel = rs.simulate_panel(seed=seed, n_geo=6, n_citizen=30, years=(2010, 2016), bilateral_share=0.3,
                              base_effect=base_effect, effect_on="bilateral_binding")
    res = multiverse(SIM_SPEC, None, grid_from_dict(SIM_GRID), design="full", panel=panel)
    return res.null_test("bilateral_binding", draws=draws, seed=seed)


def test_null_test_rejects_a_known_effect() -> None:
    nt = _sim_null(1, base_effect=0.6)
    assert nt.info["level"] == "corridor" and nt.info["n_specifications"] == 4
    assert nt.info["fits"] == 19 * 4
    p = nt.statistics["p_value"].to_numpy()
    assert p[0] == pytest.approx(1 / 20) and p[2] == pytest.approx(1 / 20)  # no permutation reaches the observed curve
    assert p[1] <= 3 / 20  # share significant: 1.0 observed, ties possible under the null (cluster-robust p-values)
    assert nt.statistics["direction"].eq("+").all()
    assert (nt.per_spec["p_fwer_romano_wolf"] >= nt.per_spec["p_permutation"] - 1e-12).all()
    assert (nt.per_spec["p_fwer_minp"] >= nt.per_spec["p_fwer_romano_wolf"] - 1e-12).all()


def test_null_test_size_under_no_effect() -> None:
    pvals = [float(_sim_null(s, base_effect=0.0).statistics["p_value"].iloc[2]) for s in range(10, 22)]
    # valid permutation p-values: about 10% of 12 panels at the 10% level; P(>= 5 | n=12, p=0.1) < 0.005
    assert sum(p <= 0.10 for p in pvals) <= 4
    assert np.mean(pvals) > 0.3


def test_report_section_states_its_numbers(serial: MultiverseResult) -> None:
    from returnstudy.multiverse_report import multiverse_section

    sec = multiverse_section(result=serial, draws=4, null_specs=3, seed=5, treatments=("eu_agreement",))
    text = "\n".join(sec.lines)
    s = serial.shares("eu_agreement")
    assert sec.lines[0] == "## How far do the conclusions survive?"
    assert f"median {s['median_effect_pct']:+.1f}%" in text
    assert f"includes zero in {100 * s['includes_zero']:.0f}%" in text
    share_row = sec.tables["multiverse_shares"].iloc[0]
    assert share_row["estimated"] == s["n_estimated"]
    nt = sec.null_tests["eu_agreement"]
    assert nt.info["draws"] == 4 and nt.info["n_specifications"] == 3 and nt.info["level"] == "citizen"
    assert nt.statistics["p_value"].between(1 / 5, 1).all()
    assert "4 draws over 3 specifications" in text
    assert set(sec.figures) == {"multiverse_curve_eu_agreement"}
    # the report is a pure function of its inputs: the same section twice gives the same text
    # (no wall-clock times, which belong to the benchmarks)
    again = multiverse_section(result=serial, draws=4, null_specs=3, seed=5, treatments=("eu_agreement",))
    assert again.lines == sec.lines and " ms per fit" not in text


TINY_GRID_TOML = """
[grid]
name = "tiny"
treatments = ["eu_agreement"]
focal_treatments = ["eu_agreement"]

[[dimensions]]
name = "min_orders"
rationale = "rounding"
options = [
  { name = "50", rationale = "spec", filters = { min_orders = { n = 50 } } },
  { name = "200", rationale = "larger", filters = { min_orders = { n = 200 } } },
]

[[dimensions]]
name = "estimator"
rationale = "model"
options = [{ name = "ppml", rationale = "Poisson", model = { estimator = "ppml" } }]
"""


def test_cli_multiverse_csv_equals_library(eurostat_dir: Path, tmp_path: Path, capsys) -> None:
    import io

    from returnstudy.cli import main

    grid_file = tmp_path / "tiny.toml"
    grid_file.write_text(TINY_GRID_TOML)
    code = main(["multiverse", "--spec", str(SPEC), "--data", str(eurostat_dir), "--grid", str(grid_file), "--design", "full",
                 "--format", "csv", "-q", "--out", str(tmp_path / "out")])
    assert code == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    lib = multiverse(SPEC, eurostat_dir, grid_file, design="full").table
    assert printed["estimate"].tolist() == pytest.approx(lib["estimate"].tolist(), rel=1e-12)
    assert printed["min_orders"].astype(str).tolist() == ["50", "200"]
    assert (tmp_path / "out" / "multiverse.csv").is_file() and (tmp_path / "out" / "curve_eu_agreement.png").is_file()


# ----------------------------------------------------------------------------- grid enumeration = reference


def _reference_enumeration(g, design: str) -> tuple[list[tuple[str, ...]], dict[str, int]]:
    """The grid's specifications by walking every combination in Python (the previous enumeration):
    n/a where a dimension does not apply, first occurrence kept, first matching rule counted."""
    import itertools

    pos = {d: i for i, d in enumerate(g.names)}
    conds = [(i, [(pos[o], set(opts)) for o, opts in d.applies_to.items()]) for i, d in enumerate(g.dimensions) if d.applies_to]
    rules = [(r.reason, [(pos[d], set(opts)) for d, opts in r.when.items()]) for r in g.exclude]
    excluded = {r.reason: 0 for r in g.exclude}
    seen: set[tuple[str, ...]] = set()
    out: list[tuple[str, ...]] = []

    def add(combo: tuple[str, ...]) -> None:
        mapped = list(combo)
        for i, cs in conds:
            if any(combo[j] not in opts for j, opts in cs):
                mapped[i] = "n/a"
        key = tuple(mapped)
        if key in seen:
            return
        seen.add(key)
        for reason, when in rules:
            if all(key[j] in opts for j, opts in when):
                excluded[reason] += 1
                return
        out.append(key)

    if design == "one_at_a_time":
        base = [d.baseline for d in g.dimensions]
        add(tuple(base))
        for i, d in enumerate(g.dimensions):
            for o in d.options:
                if o.name != d.baseline:
                    add(tuple(base[:i] + [o.name] + base[i + 1:]))
    else:
        for combo in itertools.product(*[[o.name for o in d.options] for d in g.dimensions]):
            add(combo)
    return out, excluded


def _random_grid(rng: np.random.Generator) -> dict:
    """A grid of 2-5 dimensions with 1-4 options, random applies_to conditions and exclusion rules."""
    n_dim = int(rng.integers(2, 6))
    dims = []
    for i in range(n_dim):
        opts = [f"o{k}" for k in range(int(rng.integers(1, 5)))]
        d = {"name": f"d{i}", "rationale": "r", "baseline": str(rng.choice(opts)),
             "options": [{"name": o, "rationale": "r"} for o in opts]}
        dims.append(d)
    for i in range(n_dim):
        if rng.random() < 0.5:
            j = int(rng.choice([k for k in range(n_dim) if k != i]))
            names = [o["name"] for o in dims[j]["options"]]
            dims[i]["applies_to"] = {f"d{j}": sorted(set(rng.choice(names, size=int(rng.integers(1, len(names) + 1)))))}
    rules = []
    for r in range(int(rng.integers(0, 4))):
        when = {}
        for j in rng.choice(n_dim, size=int(rng.integers(1, min(3, n_dim) + 1)), replace=False):
            names = [o["name"] for o in dims[int(j)]["options"]]
            when[f"d{int(j)}"] = sorted(set(rng.choice(names, size=int(rng.integers(1, len(names) + 1)))))
        rules.append({"reason": f"rule {r}", "when": when})
    return {"dimensions": dims, "exclude": rules}


def test_grid_enumeration_equals_reference_on_small_and_random_grids() -> None:
    rng = np.random.default_rng(7)
    grids = [small_grid()] + [grid_from_dict(_random_grid(rng)) for _ in range(60)]
    n_na = n_excluded = 0
    for g in grids:
        for design in ("full", "one_at_a_time"):
            ref, ref_excluded = _reference_enumeration(g, design)
            specs, excluded = g.specifications(design)
            assert [tuple(s.choices.values()) for s in specs] == ref
            assert excluded == ref_excluded and g.size(design) == len(ref)
            n_na += sum("n/a" in c for c in ref)
            n_excluded += sum(excluded.values())
        ref, _ = _reference_enumeration(g, "full")
        for seed in (0, 1):
            n = max(1, len(ref) // 3)
            pick = np.sort(np.random.default_rng(seed).choice(len(ref), size=n, replace=False)) if n < len(ref) else range(len(ref))
            assert [tuple(s.choices.values()) for s in g.specifications("sample", n=n, seed=seed)[0]] == [ref[i] for i in pick]
    assert n_na > 100 and n_excluded > 100  # both mechanisms are exercised


def test_shipped_grid_enumeration_equals_reference() -> None:
    g = load_grid()
    ref, ref_excluded = _reference_enumeration(g, "full")
    codes, excluded = g._enumerate("full")
    assert excluded == ref_excluded and len(codes) == len(ref) == g.size("full")
    labels = [np.array([o.name for o in d.options] + ["n/a"], dtype=object) for d in g.dimensions]  # code -1: n/a
    assert list(zip(*(labels[i][codes[:, i]] for i in range(len(labels))))) == ref
    for seed in (g.default_seed, 3):
        pick = np.sort(np.random.default_rng(seed).choice(len(ref), size=2500, replace=False))
        assert [tuple(s.choices.values()) for s in g.specifications("sample", n=2500, seed=seed)[0]] == [ref[i] for i in pick]
    oat, oat_excluded = _reference_enumeration(g, "one_at_a_time")
    assert [tuple(s.choices.values()) for s in g.specifications("one_at_a_time")[0]] == oat


def test_filter_rows_are_built_once_per_panel_content_within_a_reuse_block(monkeypatch) -> None:
    import returnstudy.filters as filters_module
    from returnstudy.multiverse import filter_rows
    from returnstudy.reuse import reuse_prepared

    panel = rs.simulate_panel(seed=2, n_geo=6, n_citizen=30, years=(2010, 2016))
    calls = []
    real = filters_module.apply_filters
    monkeypatch.setattr(filters_module, "apply_filters", lambda p, s: calls.append(1) or real(p, s))
    strict = {"min_orders": {"n": 20}}
    outside = filter_rows(panel, SIM_SPEC, strict)
    # by hand: corridors whose mean orders reach 20 keep all their rows
    mean = panel.groupby(["geo", "citizen"])["orders"].transform("mean")
    np.testing.assert_array_equal(outside, np.flatnonzero((mean >= 20).to_numpy()))
    assert 0 < len(outside) < len(panel)
    with reuse_prepared():
        first = filter_rows(panel, SIM_SPEC, strict)
        again = filter_rows(panel, SIM_SPEC, strict)
        loose = filter_rows(panel, SIM_SPEC, {"min_orders": {"n": 1}})
        same = filter_rows(panel.copy(), SIM_SPEC, strict)  # same content: reused
        doubled = panel.assign(orders=panel["orders"] * 2)  # new content: filtered afresh
        more = filter_rows(doubled, SIM_SPEC, strict)
    np.testing.assert_array_equal(first, outside)
    assert again is first and same is first and len(loose) > len(first)
    mean2 = doubled.groupby(["geo", "citizen"])["orders"].transform("mean")
    np.testing.assert_array_equal(more, np.flatnonzero((mean2 >= 20).to_numpy()))
    assert len(more) > len(first)
    assert len(calls) == 1 + 3


def test_filter_rows_step_by_step_equals_the_whole_spec_and_reuses_shared_steps(monkeypatch) -> None:
    import returnstudy.filters as filters_module
    from returnstudy.filters import apply_filters
    from returnstudy.multiverse import filter_rows, varied_spec
    from returnstudy.reuse import reuse_prepared

    spec = spec_from_dict({"study": {"name": "sim3"}, "filters": [
        {"step": "years", "start": 2011, "end": 2016}, {"step": "min_orders", "n": 5, "how": "mean"},
        {"step": "min_orders", "n": 1, "how": "every_year"}],
        "models": [{"name": "m", "estimator": "ppml", "treatments": ["bilateral_binding"]}]})
    panel = rs.simulate_panel(seed=4, n_geo=6, n_citizen=30, years=(2010, 2016))
    sets = [{}, {"min_orders": {"n": 20}}, {"min_orders": {"n": 40}}, {"years": {"start": 2012}},
            {"years": {"start": 2012}, "min_orders": {"n": 40}}]
    whole = [apply_filters(panel.assign(_r=np.arange(len(panel))), varied_spec(spec, f)).panel["_r"].to_numpy()
             for f in sets]
    assert len({len(w) for w in whole}) == len(sets)  # the sets keep different rows
    steps = []
    real = filters_module.apply_filters
    monkeypatch.setattr(filters_module, "apply_filters", lambda p, s: steps.append(1) or real(p, s))
    with reuse_prepared():
        got = [filter_rows(panel, spec, f) for f in sets]
    for g, w in zip(got, whole):
        np.testing.assert_array_equal(g, w)
    # 3 steps of the first set; then min_orders(n) and its successor (2 x 2); then years(2012) and both
    # min_orders steps; then the last set shares years(2012)
    assert len(steps) == 3 + 2 + 2 + 3 + 2
