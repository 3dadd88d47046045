"""Where the project's own curated tables (``data/`` at the repository root) live."""

from __future__ import annotations

import os
from pathlib import Path

_ENV = "RETURNSTUDY_PROJECT_DATA"


def project_data_dir() -> Path:
    """Directory holding ``codes/``, ``agreements/`` and ``specs/``.

    Resolved from ``$RETURNSTUDY_PROJECT_DATA`` if set, else ``data/`` beside
    ``src/`` in the source checkout (the package is installed editable).
    """
    env = os.environ.get(_ENV)
    candidate = Path(env) if env else Path(__file__).resolve().parents[2] / "data"
    if not (candidate / "codes").is_dir():
        raise FileNotFoundError(
            f"project data directory not found at {candidate} (expected codes/, agreements/, specs/). "
            f"Install from a source checkout with 'pip install -e .' or set {_ENV}."
        )
    return candidate
