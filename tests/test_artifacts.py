"""write_figure: the PNG equals matplotlib's own savefig, though the layout runs once instead of twice,
and the figure is left as savefig leaves it."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from matplotlib.figure import Figure

from returnstudy.artifacts import write_figure


def _small_multiples() -> Figure:
    fig = Figure(figsize=(7, 4), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for k, ax in enumerate(axes[:5]):
        ax.plot(np.arange(2012, 2020), 10 ** (k + np.linspace(0, 2, 8)), marker=".", label="orders")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_title(f"country {k}", fontsize=8)
    axes[5].set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center")
    fig.suptitle("National totals")
    return fig


def _heatmap_with_colorbar() -> Figure:
    fig = Figure(figsize=(5, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax in axes:
        im = ax.imshow(np.arange(12.0).reshape(3, 4), vmin=0, vmax=11)
        ax.set_yticks(range(3), ["AT", "BE", "BG"])
    fig.colorbar(im, ax=list(axes), shrink=0.6, label="share reported")
    return fig


def _tight() -> Figure:
    fig = Figure(figsize=(4, 3), layout="tight")
    ax = fig.subplots()
    ax.errorbar([1, 2, 3], [0.1, 0.3, -0.2], yerr=0.1, fmt="o")
    ax.set_xlabel("relative year")
    ax.set_ylabel("effect on returns per order (%)")
    return fig


def _no_layout() -> Figure:
    fig = Figure(figsize=(4, 3))
    fig.subplots().bar(["NL", "NO"], [3.0, 4.0])
    return fig


@pytest.mark.parametrize("make", [_small_multiples, _heatmap_with_colorbar, _tight, _no_layout])
@pytest.mark.parametrize("dpi", [110, 120])
def test_png_equals_savefig_and_the_figure_is_left_as_it_was(tmp_path, make: Callable[[], Figure], dpi: int) -> None:
    plain = make()
    expected, expected_again = io.BytesIO(), io.BytesIO()
    plain.savefig(expected, format="png", dpi=dpi, metadata={"Software": None})
    plain.savefig(expected_again, format="png", dpi=dpi, metadata={"Software": None})  # a second save can differ
    fig = make()
    engine, fig_dpi = fig.get_layout_engine(), fig.get_dpi()
    png, data = write_figure(fig, tmp_path, "fig", dpi=dpi, close=False)
    assert png.read_bytes() == expected.getvalue()
    assert data.name == "fig.data.csv" and data.stat().st_size > 0
    assert fig.get_layout_engine() is engine and fig.get_dpi() == fig_dpi  # put back for further use
    again = io.BytesIO()
    fig.savefig(again, format="png", dpi=dpi, metadata={"Software": None})
    assert again.getvalue() == expected_again.getvalue()


@pytest.mark.parametrize("make", [_small_multiples, _heatmap_with_colorbar])
def test_a_pickled_figure_draws_the_same_bytes(tmp_path, make: Callable[[], Figure]) -> None:
    """A figure pickled and unpickled (what a loky worker receives) is written to the same PNG and data."""
    import pickle

    here = write_figure(make(), tmp_path / "here", "fig")
    there = write_figure(pickle.loads(pickle.dumps(make())), tmp_path / "there", "fig")
    assert [p.read_bytes() for p in here] == [p.read_bytes() for p in there]
