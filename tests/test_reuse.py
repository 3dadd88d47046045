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
