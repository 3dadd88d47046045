"""Does a freshly generated report say and show what the committed one does?

The comparison is by content, so that it holds on any supported set of library versions:

* ``REPORT.md``: the text, exactly (numbers there are rounded to a few digits);
* ``tables/*.csv``: the same columns and rows; text cells equal, numbers equal to a
  relative tolerance (default 1e-9: BLAS and library versions move the last digits);
* ``figures/*.data.csv``: the data each figure plots (:func:`returnstudy.figure_data.figure_data`),
  to the same tolerance;
* ``figures/*.png``: the rendered image, by root-mean-square pixel difference
  (``matplotlib.testing.compare.compare_images``) at ``image_tol`` on the 0-255 scale.

A genuine change of a number, a label or a line in a figure is reported; a clip-path id,
a hash salt or the last bits of a float are not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["compare_frames", "compare_reports", "report_files", "RTOL", "ATOL", "IMAGE_TOL"]

RTOL = 1e-9
ATOL = 1e-12
IMAGE_TOL = 2.0


def report_files(root: str | Path) -> list[str]:
    """The compared files of a report directory, relative to it, sorted."""
    root = Path(root)
    files = ["REPORT.md"] if (root / "REPORT.md").is_file() else []
    files += sorted(str(p.relative_to(root)) for p in (root / "tables").glob("*.csv"))
    files += sorted(str(p.relative_to(root)) for p in (root / "figures").glob("*.data.csv"))
    files += sorted(str(p.relative_to(root)) for p in (root / "figures").glob("*.png"))
    return files


def compare_frames(expected: pd.DataFrame, actual: pd.DataFrame, *, rtol: float = RTOL, atol: float = ATOL,
                   name: str = "table") -> list[str]:
    """Differences between two tables: columns and shape exactly, text cells exactly, numbers to ``rtol``/``atol``.

    A column counts as numeric when it is numeric in both tables; NaN equals NaN. Rows are
    named by their line in the CSV file (header = line 1).
    """
    if list(expected.columns) != list(actual.columns):
        return [f"{name}: columns {list(expected.columns)} expected, {list(actual.columns)} found"]
    if len(expected) != len(actual):
        return [f"{name}: {len(expected)} rows expected, {len(actual)} found"]
    problems: list[str] = []
    e = expected.reset_index(drop=True)
    a = actual.reset_index(drop=True)
    for col in e.columns:
        numeric = pd.api.types.is_numeric_dtype(e[col]) and pd.api.types.is_numeric_dtype(a[col])
        if numeric:
            x = e[col].to_numpy(dtype=float)
            y = a[col].to_numpy(dtype=float)
            bad = ~np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
            shown = (x, y)
        else:
            left = e[col].astype("string").fillna("")
            right = a[col].astype("string").fillna("")
            bad = (left != right).to_numpy(dtype=bool)
            shown = (left.to_numpy(), right.to_numpy())
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            old, new = (v.item() if hasattr(v, "item") else v for v in (shown[0][r], shown[1][r]))
            problems.append(f"{name}: column {col!r} differs on line {r + 2}: {old!r} expected, "
                            f"{new!r} found ({int(bad.sum())} cells)")
    return problems


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def compare_reports(committed: str | Path, fresh: str | Path, *, rtol: float = RTOL, atol: float = ATOL,
                    image_tol: float | None = IMAGE_TOL) -> list[str]:
    """Everything that differs in content between two report directories (empty: they agree).

    ``image_tol=None`` skips the pixel comparison of the PNG files (their plotted data
    are still compared through the ``*.data.csv`` sidecars).
    """
    committed, fresh = Path(committed), Path(fresh)
    want, have = report_files(committed), report_files(fresh)
    problems: list[str] = []
    if want != have:
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        problems.append(f"report files differ: missing {missing}, new {extra}")
    for f in sorted(set(want) & set(have)):
        old, new = committed / f, fresh / f
        if f.endswith(".md"):
            a, b = old.read_text(encoding="utf-8").splitlines(), new.read_text(encoding="utf-8").splitlines()
            if a != b:
                first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                problems.append(f"{f}: text differs from line {first + 1}: "
                                f"{a[first] if first < len(a) else '<end>'!r} expected, "
                                f"{b[first] if first < len(b) else '<end>'!r} found")
        elif f.endswith(".csv"):
            problems += compare_frames(_read_csv(old), _read_csv(new), rtol=rtol, atol=atol, name=f)
        elif f.endswith(".png") and image_tol is not None:
            from matplotlib.testing.compare import compare_images
            from matplotlib.testing.exceptions import ImageComparisonFailure

            # matplotlib writes the difference image beside the compared file: compare a copy in a
            # scratch directory so that neither report directory gains files
            import shutil
            import tempfile

            scratch = Path(tempfile.mkdtemp(prefix="report-compare-"))
            shutil.copyfile(new, scratch / new.name)
            try:
                diff = compare_images(str(old), str(scratch / new.name), tol=image_tol, in_decorator=True)
            except ImageComparisonFailure as exc:  # e.g. a different pixel size
                problems.append(f"{f}: image differs: {exc}")
                continue
            if diff is not None:
                problems.append(f"{f}: image differs, RMS {diff['rms']:.3f} > tolerance {image_tol} "
                                f"(difference image: {diff['diff']})")
    return problems
