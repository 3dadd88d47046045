"""What a figure shows, as a table: the data behind every mark and every label set by code.

A rendered image changes with the matplotlib and FreeType versions (anti-aliasing, text
kerning, clip-path ids), so the report's figures are checked by what they *show*: the
coordinates of every line, marker, bar, filled band, segment and image cell, and the
texts that the code set (titles, axis labels, legend entries, fixed tick labels,
annotations). Tick positions and labels that matplotlib chooses itself are left out:
they are layout, not content.

:func:`figure_data` returns one row per plotted point (long format); the report writes
it beside each PNG as ``<stem>.data.csv``, and :mod:`returnstudy.report_compare` compares
two such tables to a relative tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["figure_data", "FIGURE_DATA_COLUMNS"]

FIGURE_DATA_COLUMNS = ["subplot", "artist", "kind", "label", "i", "x", "y", "value"]


def _row(axes: int, artist: str, kind: str, label: str = "", i: int = 0, x: float = np.nan, y: float = np.nan,
         value: float = np.nan) -> dict[str, Any]:
    return {"subplot": axes, "artist": artist, "kind": kind, "label": label, "i": i, "x": x, "y": y,
            "value": value}


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _sorted_vertices(vertices: np.ndarray) -> np.ndarray:
    """A polygon's distinct vertices in lexicographic order: independent of drawing order and closing points."""
    v = np.asarray(vertices, dtype=float).reshape(-1, 2)
    v = v[np.isfinite(v).all(axis=1)]
    if v.size == 0:
        return v
    return np.unique(v, axis=0)


def _patch_vertices(patch: Any) -> np.ndarray:
    """A patch's outline in its own coordinates (data, or axes for spans): bars and spans are
    rectangles in one matplotlib version and polygons in another, so both become their corners."""
    from matplotlib.patches import Rectangle

    if isinstance(patch, Rectangle):
        x, y, w, h = (_float(v) for v in (patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()))
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
    if hasattr(patch, "get_xy"):
        return np.asarray(patch.get_xy(), dtype=float)
    return patch.get_patch_transform().transform(patch.get_path().vertices)


def _text_rows(ax_i: int, ax: Any) -> list[dict[str, Any]]:
    from matplotlib.ticker import FixedLocator

    rows: list[dict[str, Any]] = []
    for kind, text in (("title", ax.get_title()), ("xlabel", ax.get_xlabel()), ("ylabel", ax.get_ylabel())):
        if text:
            rows.append(_row(ax_i, kind, "text", text))
    for loc in ("left", "right"):
        text = ax.get_title(loc=loc)
        if text:
            rows.append(_row(ax_i, f"title_{loc}", "text", text))
    for name, axis in (("xtick", ax.xaxis), ("ytick", ax.yaxis)):
        locator = axis.get_major_locator()
        if not (isinstance(locator, FixedLocator) or type(locator).__name__ == "StrCategoryLocator"):
            continue  # ticks matplotlib places itself
        formatter = axis.get_major_formatter()
        locs = axis.get_majorticklocs()
        for j, loc in enumerate(locs):
            label = formatter(loc, j)
            if label:
                rows.append(_row(ax_i, name, "text", str(label), j, **({"x": float(loc)} if name == "xtick" else {"y": float(loc)})))
    for j, text in enumerate(ax.texts):
        x, y = text.get_position()
        rows.append(_row(ax_i, f"text{j}", "text", text.get_text(), j, _float(x), _float(y)))
    legend = ax.get_legend()
    if legend is not None:
        title = legend.get_title().get_text()
        if title:
            rows.append(_row(ax_i, "legend_title", "text", title))
        for j, text in enumerate(legend.get_texts()):
            rows.append(_row(ax_i, "legend", "text", text.get_text(), j))
    return rows


def _collection_rows(ax_i: int, j: int, coll: Any) -> list[dict[str, Any]]:
    from matplotlib.collections import LineCollection, PathCollection, QuadMesh

    rows: list[dict[str, Any]] = []
    label = str(coll.get_label() or "")
    if label.startswith("_"):
        label = ""
    name = f"collection{j}"
    if isinstance(coll, QuadMesh):
        values = np.ma.filled(np.ma.asarray(coll.get_array(), dtype=float), np.nan).ravel()
        rows += [_row(ax_i, name, "mesh", label, k, value=float(v)) for k, v in enumerate(values)]
        return rows
    if isinstance(coll, PathCollection):
        offsets = np.asarray(coll.get_offsets(), dtype=float).reshape(-1, 2)
        rows += [_row(ax_i, name, "points", label, k, x, y) for k, (x, y) in enumerate(offsets)]
        return rows
    kind = "segments" if isinstance(coll, LineCollection) else "polygon"
    k = 0
    for p, path in enumerate(coll.get_paths()):
        vertices = np.asarray(path.vertices, dtype=float)
        vertices = _sorted_vertices(vertices) if kind == "polygon" else vertices
        for x, y in vertices:
            rows.append(_row(ax_i, f"{name}.{p}", kind, label, k, x, y))
            k += 1
    return rows


def figure_data(fig: Any) -> pd.DataFrame:
    """One row per plotted point or code-set text of ``fig`` (a matplotlib Figure).

    Columns: ``subplot`` (index of the axes in the figure, -1 for the figure itself), ``artist`` (which mark within
    the axes), ``kind`` (line, points, patch, polygon, segments, image, mesh, text),
    ``label`` (the artist's label or the text itself), ``i`` (point index within the
    artist), ``x``/``y`` (the artist's coordinates, data or axes fraction), ``value`` (image
    and mesh cells, row-major). Polygons and patches (bars, spans) list their distinct corners
    in sorted order, so neither the drawing order nor whether a matplotlib version draws a span
    as a rectangle or a polygon matters.
    """
    from matplotlib.image import AxesImage

    rows: list[dict[str, Any]] = []
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        rows.append(_row(-1, "suptitle", "text", suptitle.get_text()))
    for ax_i, ax in enumerate(fig.axes):
        for j, line in enumerate(ax.get_lines()):
            label = str(line.get_label() or "")
            label = "" if label.startswith("_") else label
            xy = np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)
            rows += [_row(ax_i, f"line{j}", "line", label, k, x, y) for k, (x, y) in enumerate(xy)]
        for j, coll in enumerate(ax.collections):
            rows += _collection_rows(ax_i, j, coll)
        for j, patch in enumerate(ax.patches):
            label = str(patch.get_label() or "")
            label = "" if label.startswith("_") else label
            corners = _sorted_vertices(_patch_vertices(patch))
            rows += [_row(ax_i, f"patch{j}", "patch", label, m, x, y) for m, (x, y) in enumerate(corners)]
        for j, image in enumerate(ax.get_images()):
            if isinstance(image, AxesImage):
                values = np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan).ravel()
                rows += [_row(ax_i, f"image{j}", "image", "", m, value=float(v)) for m, v in enumerate(values)]
        rows += _text_rows(ax_i, ax)
    out = pd.DataFrame(rows, columns=FIGURE_DATA_COLUMNS)
    return out.astype({"subplot": int, "i": int})
