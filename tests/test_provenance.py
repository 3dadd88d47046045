"""Provenance in DataFrame.attrs is frozen: handed on by reference, never copied, never changed in place."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pandas as pd
import pytest

from returnstudy.provenance import FrozenDict, FrozenList, freeze_attrs, frozen


def _panel() -> pd.DataFrame:
    df = pd.DataFrame({"geo": ["NL", "NO", "NL"], "orders": [10.0, 20.0, 30.0], "returns": [1.0, 4.0, 9.0]})
    df.attrs = freeze_attrs({
        "vintage": {"migr_eiord": {"sha256": "ab" * 32, "last_update": {"20/09/24": 12672}, "years": [2012, 2016]}},
        "filters": [{"step": "min_orders", "rows_after": 3}],
    })
    return df


def test_derived_frames_share_the_provenance_instead_of_copying_it() -> None:
    df = _panel()
    vintage = df.attrs["vintage"]
    # what pandas does on every column access, filter and assign: deepcopy(attrs) -> same objects
    assert df["orders"].attrs["vintage"] is vintage
    assert df[df["orders"] > 15].attrs["vintage"] is vintage
    assert df.assign(rate=df["returns"] / df["orders"]).attrs["filters"] is df.attrs["filters"]
    assert copy.deepcopy(vintage) is vintage and copy.copy(df.attrs["filters"]) is df.attrs["filters"]
    # the numbers themselves are untouched
    assert df[df["orders"] > 15]["returns"].sum() == 13.0


def test_frozen_values_equal_print_and_serialise_as_plain_ones() -> None:
    plain = {"a": {"b": [1, 2, {"c": 3}]}, "t": (1, [2])}
    f = frozen(plain)
    assert f == plain and repr(f) == repr(plain)
    assert isinstance(f, dict) and isinstance(f["a"], FrozenDict) and isinstance(f["a"]["b"], FrozenList)
    assert isinstance(f["t"][1], FrozenList)
    assert json.dumps(f, sort_keys=True) == json.dumps(plain, sort_keys=True)
    back = pickle.loads(pickle.dumps(f))
    assert back == plain and type(back["a"]) is FrozenDict
    df = _panel()
    assert pickle.loads(pickle.dumps(df)).attrs == df.attrs
    # a changed copy is a plain value again
    changed = {**df.attrs["vintage"], "extra": 1}
    assert set(changed) == {"migr_eiord", "extra"} and type(changed) is dict
    assert type(df.attrs["vintage"].copy()) is dict


@pytest.mark.parametrize("change", [
    lambda v: v.__setitem__("x", 1), lambda v: v.update(x=1), lambda v: v.pop("migr_eiord"),
    lambda v: v["migr_eiord"].__setitem__("sha256", "0"), lambda v: v["migr_eiord"]["years"].append(2017),
    lambda v: v.setdefault("x", 1), lambda v: v.clear(),
])
def test_provenance_cannot_be_changed_in_place(change) -> None:
    df = _panel()
    with pytest.raises(TypeError, match="read-only"):
        change(df.attrs["vintage"])
    assert df.attrs["vintage"]["migr_eiord"]["years"] == [2012, 2016]


def test_real_panel_carries_frozen_provenance_through_coding_and_filters(real_panel) -> None:
    from returnstudy.filters import apply_filters
    from returnstudy.spec import load_spec
    from returnstudy.treatments import add_treatments

    coded = add_treatments(real_panel)
    sample = apply_filters(coded, load_spec()).panel
    for frame, keys in ((real_panel, {"vintage", "panel_options"}), (coded, {"vintage", "panel_options", "treatment_coding"}),
                        (sample, {"vintage", "panel_options", "treatment_coding", "filters"})):
        assert keys <= set(frame.attrs)
        assert all(isinstance(frame.attrs[k], (FrozenDict, FrozenList)) for k in keys)
        # a new view: pandas 2.0 caches a column read before the attrs were set, with the attrs it had then
        assert frame.copy(deep=False)["orders"].attrs["vintage"] is frame.attrs["vintage"]
    # the same vintage (tables, checksums, rows used) from the raw panel to the estimation sample
    assert sample.attrs["vintage"] == real_panel.attrs["vintage"]
    assert [f["step"] for f in sample.attrs["filters"]] == [s.step for s in load_spec().filters]
    rows = [f["rows_after"] for f in sample.attrs["filters"]]
    assert rows[-1] == len(sample) and all(np.diff(rows) <= 0)
