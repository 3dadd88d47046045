"""Where the project's own curated tables (``data/`` at the repository root) live."""

from __future__ import annotations

import os
from pathlib import Path

_ENV = "RETURNSTUDY_PROJECT_DATA"


def project_data_dir() -> Path:
    """Directory holding ``codes/``, ``agreements/`` and ``specs/``.

    Resolved from ``$RETURNSTUDY_PROJECT_DATA`` if set, else ``data/`` beside ``src/``
    in a source checkout (editable install), else the copy shipped inside the wheel
    (``returnstudy/project_data``).
    """
    env = os.environ.get(_ENV)
    here = Path(__file__).resolve().parent
    candidates = [Path(env)] if env else [here.parents[1] / "data", here / "project_data"]
    for candidate in candidates:
        if (candidate / "codes").is_dir():
            return candidate
    raise FileNotFoundError(
        f"project data directory not found (looked in {', '.join(map(str, candidates))}; expected codes/, "
        f"agreements/, specs/). Install the package with pip, or set {_ENV}."
    )
