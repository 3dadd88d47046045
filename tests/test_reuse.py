"""Within one report each spec's panel and sample are prepared once; outside, every call reads afresh."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from returnstudy.reuse import reuse_prepared, reused


def test_reused_builds_once_per_key_inside_the_block_only() -> None:
    calls: list[int] = []

    def build() -> list[int]:
        calls.append(1)
        return [len(calls)]

    assert reused("k", 1, build) == [1] and reused("k", 1, build) == [2]  # no block: built every time
    with reuse_prepared():
        first = reused("k", 1, build, copy=list)
        first.append(99)  # the caller's copy, not the kept value
        assert reused("k", 1, build, copy=list) == [3]
        assert reused("k", 2, build) == [4]  # another key
        with reuse_prepared():  # a nested block shares the outer one's values
            assert reused("k", 1, build, copy=list) == [3]
    assert len(calls) == 4
    assert reused("k", 1, build) == [5]  # the block's values are gone with it


def test_load_panel_and_study_sample_read_the_tables_once_per_report(eurostat_dir: Path, monkeypatch) -> None:
    import returnstudy.panel as panel_module
    from returnstudy.runner import study_sample
    from returnstudy.spec import load_spec

    reads: list[str] = []
    real_read = panel_module.read_table

    def counting_read(code, *args, **kwargs):
        reads.append(code)
        return real_read(code, *args, **kwargs)

    monkeypatch.setattr(panel_module, "read_table", counting_read)
    spec = load_spec()
    fresh_panel, fresh = study_sample(spec, eurostat_dir)
    per_build = len(reads)
    assert per_build >= 2  # orders and returns at least
    with reuse_prepared():
        p1, s1 = study_sample(spec, eurostat_dir)
        p2, s2 = study_sample(spec, eurostat_dir)
        raw1 = panel_module.load_panel(**{**spec.data.load_panel_kwargs(), "data_dir": eurostat_dir})
        s1.panel.loc[0, "returns"] = -1.0  # one caller's change does not reach another's copy
        p1["orders"] = -1.0
        p3, s3 = study_sample(spec, eurostat_dir)
    assert len(reads) == 2 * per_build  # the block read each table once (sample and panel share the tables)
    assert raw1.attrs["vintage"] == fresh_panel.attrs["vintage"]
    pd.testing.assert_frame_equal(s2.panel, fresh.panel)
    pd.testing.assert_frame_equal(s3.panel, fresh.panel)
    pd.testing.assert_frame_equal(p3, fresh_panel)
    pd.testing.assert_frame_equal(s3.flow, fresh.flow)
    assert s3.panel.attrs == fresh.panel.attrs
    study_sample(spec, eurostat_dir)
    assert len(reads) == 3 * per_build  # outside the block: read again


def test_a_table_is_parsed_once_per_content_inside_the_block(tmp_path: Path, monkeypatch) -> None:
    """Reading the same Eurostat file twice in a report parses it once; each caller gets its own
    copy; a file whose bytes changed is parsed again (the key is its sha256)."""
    import shutil

    import returnstudy.data.tables as tables

    parsed: list[str] = []
    real_parse = tables.parse_eurostat_bytes

    def counting_parse(raw, source, dataset=None):
        parsed.append(str(source))
        return real_parse(raw, source, dataset)

    monkeypatch.setattr(tables, "parse_eurostat_bytes", counting_parse)
    src = Path(__file__).parent / "fixtures" / "eurostat" / "migr_eiord.csv"
    shutil.copy(src, tmp_path / "migr_eiord.csv")
    fresh = tables.read_table("migr_eiord", tmp_path)
    with reuse_prepared():
        first = tables.read_table("migr_eiord", tmp_path)
        first.data.loc[0, "value"] = -5.0
        first.vintage["rows"] = -1
        second = tables.read_table("migr_eiord", tmp_path)
        assert len(parsed) == 2  # one outside the block, one inside
        pd.testing.assert_frame_equal(second.data, fresh.data)
        assert second.vintage == fresh.vintage
        text = (tmp_path / "migr_eiord.csv").read_text()
        lines = text.splitlines()
        cells = lines[1].split(",")
        value_at = lines[0].split(",").index("OBS_VALUE")
        cells[value_at] = str(float(cells[value_at] or 0) + 7)
        (tmp_path / "migr_eiord.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
        edited = tables.read_table("migr_eiord", tmp_path)
        assert len(parsed) == 3
        assert edited.data.loc[0, "value"] == fresh.data.loc[0, "value"] + 7
        assert edited.vintage["sha256"] != fresh.vintage["sha256"]


def test_agreement_tables_are_read_once_per_content_inside_the_block(tmp_path: Path, monkeypatch) -> None:
    """The treatment tables are read and validated once per content in a report; an edited file
    is read again."""
    import shutil

    import returnstudy.agreement_tables as at

    reads: list[Path] = []
    real = at._read_tables

    def counting(adir, cdir):
        reads.append(adir)
        return real(adir, cdir)

    monkeypatch.setattr(at, "_read_tables", counting)
    adir = tmp_path / "agreements"
    shutil.copytree(at._default_agreements_dir(), adir)
    with reuse_prepared():
        t1, p1, h1 = at.read_tables(adir)
        t1["visa_events"]["marker"] = 1  # the caller's own copy
        t2, p2, h2 = at.read_tables(adir)
        assert len(reads) == 1 and "marker" not in t2["visa_events"] and h1 == h2 and p1 == p2 == []
        path = adir / "visa_events.csv"
        path.write_text(path.read_text() + "\n")
        t3, _, h3 = at.read_tables(adir)
        assert len(reads) == 2 and h3["visa_events.csv"] != h1["visa_events.csv"]
    at.read_tables(adir)
    assert len(reads) == 3  # outside the block: read every time


def test_values_built_elsewhere_are_adopted_where_none_is_kept() -> None:
    """``stored`` lists a block's values of some kinds; ``adopt`` keeps values built in another
    process (a worker) without replacing one already kept, and does nothing outside a block."""
    from returnstudy.reuse import adopt, reuse_prepared, reused, stored

    assert stored(("k",)) == {}
    adopt({("k", 1): "from a worker"})  # outside a block: nothing is kept
    with reuse_prepared():
        assert reused("k", 1, lambda: "built here") == "built here"
        reused("other", 1, lambda: "x")
        adopt({("k", 1): "from a worker", ("k", 2): "from a worker"})
        assert stored(("k",)) == {("k", 1): "built here", ("k", 2): "from a worker"}
        assert stored(()) == {}
        assert reused("k", 2, lambda: "built here") == "from a worker"
