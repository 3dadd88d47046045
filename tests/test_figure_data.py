"""figure_data: the table of what a figure shows, checked against the numbers that were plotted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from returnstudy.figure_data import FIGURE_DATA_COLUMNS, figure_data


def _figure() -> Figure:
    fig = Figure(figsize=(5, 3))
    ax, ax2 = fig.subplots(1, 2)
    ax.plot([1, 2, 3], [0.5, -1.0, 2.0], label="estimate")
    ax.fill_between([1, 2, 3], [0.0, -2.0, 1.0], [1.0, 0.0, 3.0], alpha=0.3)
    ax.scatter([1.5, 2.5], [10.0, 20.0])
    ax.errorbar([4.0], [1.0], yerr=[[0.25], [0.75]], fmt="none")
    ax.axhline(0.0)
    ax.text(1.0, 2.0, "note")
    ax.set_title("Effect")
    ax.set_xlabel("year relative")
    ax.legend()
    ax2.bar(["NL", "NO"], [3.0, 4.0])
    ax2.imshow(np.array([[1.0, 2.0], [3.0, np.nan]]))
    fig.suptitle("Two panels")
    return fig


def test_every_mark_and_text_is_recorded() -> None:
    d = figure_data(_figure())
    assert list(d.columns) == FIGURE_DATA_COLUMNS
    line = d[(d.subplot == 0) & (d.artist == "line0")]
    assert line["label"].unique().tolist() == ["estimate"]
    assert line[["x", "y"]].to_numpy().tolist() == [[1, 0.5], [2, -1.0], [3, 2.0]]
    # the band: its distinct vertices, whatever order matplotlib draws them in
    band = d[(d.subplot == 0) & (d.kind == "polygon")]
    assert sorted(map(tuple, band[["x", "y"]].to_numpy())) == [(1, 0), (1, 1), (2, -2), (2, 0), (3, 1), (3, 3)]
    pts = d[(d.subplot == 0) & (d.kind == "points")]
    assert pts[["x", "y"]].to_numpy().tolist() == [[1.5, 10.0], [2.5, 20.0]]
    seg = d[(d.subplot == 0) & (d.kind == "segments")]
    assert seg[["x", "y"]].to_numpy().tolist() == [[4.0, 0.75], [4.0, 1.75]]
    texts = d[d.kind == "text"].set_index("artist")["label"]
    assert texts["title"] == "Effect" and texts["xlabel"] == "year relative" and texts["suptitle"] == "Two panels"
    assert texts["text0"] == "note" and texts["legend"] == "estimate"
    bars = d[(d.subplot == 1) & (d.kind == "patch")]
    assert bars["artist"].nunique() == 2
    first = bars[bars.artist == "patch0"][["x", "y"]].to_numpy()
    np.testing.assert_allclose(first, [[-0.4, 0.0], [-0.4, 3.0], [0.4, 0.0], [0.4, 3.0]])
    second = bars[bars.artist == "patch1"][["x", "y"]].to_numpy()
    np.testing.assert_allclose(second, [[0.6, 0.0], [0.6, 4.0], [1.4, 0.0], [1.4, 4.0]])
    ticks = d[(d.subplot == 1) & (d.artist == "xtick")]
    assert ticks["label"].tolist() == ["NL", "NO"] and ticks["x"].tolist() == [0.0, 1.0]
    img = d[(d.subplot == 1) & (d.kind == "image")]["value"].to_numpy()
    np.testing.assert_array_equal(img, [1.0, 2.0, 3.0, np.nan])


def test_automatic_ticks_are_layout_not_content() -> None:
    d = figure_data(_figure())
    assert not ((d.subplot == 0) & d.artist.isin(["xtick", "ytick"])).any()
    fig = Figure()
    ax = fig.subplots()
    ax.boxplot([[1.0, 2.0, 4.0], [3.0, 5.0, 6.0]])
    ax.set_xticks([1, 2], ["NL", "NO"])  # labels set by code are content
    ticks = figure_data(fig).query("artist == 'xtick'")
    assert ticks["label"].tolist() == ["NL", "NO"] and ticks["x"].tolist() == [1.0, 2.0]


def test_a_changed_number_changes_the_table() -> None:
    a = figure_data(_figure())
    fig = _figure()
    fig.axes[0].get_lines()[0].set_ydata([0.5, -1.0, 2.001])
    b = figure_data(fig)
    assert len(a) == len(b)
    diff = ~np.isclose(a["y"], b["y"], equal_nan=True)
    assert diff.sum() == 1 and b.loc[diff, "y"].item() == 2.001


def test_a_span_is_its_corners_whether_drawn_as_rectangle_or_polygon() -> None:
    from matplotlib.patches import Polygon, Rectangle

    def shown(patch) -> pd.DataFrame:
        fig = Figure()
        ax = fig.subplots()
        ax.add_patch(patch)
        return figure_data(fig).query("kind == 'patch'")[["x", "y", "label"]].reset_index(drop=True)

    # axhspan(5, 10) is a Rectangle in recent matplotlib and a Polygon in older releases
    rect = shown(Rectangle((0.0, 5.0), 1.0, 5.0, label="study"))
    poly = shown(Polygon([[0.0, 5.0], [0.0, 10.0], [1.0, 10.0], [1.0, 5.0], [0.0, 5.0]], label="study"))
    pd.testing.assert_frame_equal(rect, poly)
    assert rect[["x", "y"]].to_numpy().tolist() == [[0, 5], [0, 10], [1, 5], [1, 10]]


def test_same_figure_same_table() -> None:
    pd.testing.assert_frame_equal(figure_data(_figure()), figure_data(_figure()))
