"""Shared fixtures: the offline snapshot beside the repository, and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(os.environ.get("RETURNSTUDY_SNAPSHOT", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def snapshot_dir() -> Path:
    """``../shared/data``: the real Eurostat snapshot (never copied into the repository)."""
    if not (SNAPSHOT / "eurostat" / "migr_eiord.csv").is_file():
        pytest.skip(f"offline snapshot not found at {SNAPSHOT}")
    return SNAPSHOT


@pytest.fixture(scope="session")
def eurostat_dir(snapshot_dir: Path) -> Path:
    return snapshot_dir / "eurostat"


@pytest.fixture(scope="session")
def real_panel(eurostat_dir: Path):
    """The corridor-year panel built from the snapshot (read-only: copy before changing)."""
    from returnstudy.panel import load_panel

    return load_panel(eurostat_dir)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's cache or the network from a test."""
    monkeypatch.setenv("RETURNSTUDY_DATA_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("RETURNSTUDY_EUROSTAT_API", "http://127.0.0.1:9/unreachable")
