"""Writing the report's tables and figures: atomically, deterministically, readable by everyone (0644).

* :func:`write_table`: a CSV with ``\\n`` line ends and floats to 12 significant digits
  (enough for the report check's 1e-9 relative tolerance, few enough that the last
  bits of a BLAS do not show).
* :func:`write_figure`: the figure as PNG (no date, no software tag) and, beside it,
  ``<stem>.data.csv``, the data the figure shows (:func:`returnstudy.figure_data.figure_data`),
  which is what the report check compares.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from returnstudy.data.cache import atomic_write_bytes

__all__ = ["write_table", "write_figure", "FLOAT_FORMAT", "FILE_MODE"]

FLOAT_FORMAT = "%.12g"
FILE_MODE = 0o644


def _publish(path: Path, data: bytes) -> Path:
    atomic_write_bytes(path, data)
    os.chmod(path, FILE_MODE)
    return path


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` (without its index) as CSV at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return _publish(path, text.encode("utf-8"))


@contextlib.contextmanager
def _laid_out_once(fig: Any, dpi: float) -> Iterator[None]:
    """Run ``fig``'s layout engine (constrained or tight) once, at the resolution of the file, and
    save without it: ``savefig`` would run it twice (in a draw before its own, and again in its
    own), a tenth of the time of a report's figures, for the same image. The engine and the
    figure's resolution are put back afterwards."""
    engine = fig.get_layout_engine()
    if engine is None or type(engine).__name__ == "PlaceHolderLayoutEngine":  # "none": nothing to lay out
        yield
        return
    old_dpi = fig.get_dpi()
    fig.set_dpi(dpi)
    try:
        engine.execute(fig)
        fig.set_layout_engine(None)
        yield
    finally:
        fig.set_layout_engine(engine)
        fig.set_dpi(old_dpi)


def write_figure(fig: Any, directory: str | Path, stem: str, *, dpi: int = 110, close: bool = True) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.data.csv`` under ``directory``; returns both paths.

    The figure is closed afterwards (``close=True``) so that long report runs do not keep
    every figure in memory.
    """
    import io

    from returnstudy.figure_data import figure_data

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with _laid_out_once(fig, dpi):
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    png = _publish(directory / f"{stem}.png", buf.getvalue())
    data = write_table(figure_data(fig), directory / f"{stem}.data.csv")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return [png, data]
