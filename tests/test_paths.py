"""Locating the curated project tables (code lists, agreements, specs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from returnstudy.paths import project_data_dir

REPO = Path(__file__).resolve().parents[1]


def test_source_checkout_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETURNSTUDY_PROJECT_DATA", raising=False)
    assert project_data_dir() == REPO / "data"


def test_environment_variable_wins_and_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "codes").mkdir()
    monkeypatch.setenv("RETURNSTUDY_PROJECT_DATA", str(tmp_path))
    assert project_data_dir() == tmp_path
    monkeypatch.setenv("RETURNSTUDY_PROJECT_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        project_data_dir()


def test_packaging_ships_the_project_tables() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert '"returnstudy.project_data" = "data"' in text
    packages = {p.parent.relative_to(REPO / "src").as_posix().replace("/", ".") for p in (REPO / "src").rglob("__init__.py")}
    listed = text.split("packages = [", 1)[1].split("]", 1)[0]
    for pkg in packages:  # every subpackage must be listed explicitly next to the data mapping
        assert f'"{pkg}"' in listed, pkg
