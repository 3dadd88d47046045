"""Every runtime dependency declared in pyproject.toml is used by the package, and every
third-party module the package imports is declared (runtime or an optional extra)."""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "returnstudy"

#: distribution name -> import name where they differ (or where the distribution is not
#: installed here, e.g. tomli on Python >= 3.11, so importlib.metadata cannot tell)
IMPORT_NAMES = {"dask": "dask", "tomli": "tomli"}

#: dependencies the package uses without importing them, and the source text that proves the use
INDIRECT_USES = {
    "pyarrow": (r"\.(to_parquet|read_parquet)\(", "pandas' Parquet engine for the multiverse checkpoints"),
}

#: third-party modules imported only to probe for an optional feature (inside try/except ImportError)
OPTIONAL_PROBES = {"ipywidgets": "tqdm's notebook bar when available (returnstudy._progress)"}


def _requirement_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0].lower().replace("-", "_")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


@functools.cache
def _top_level_owners() -> dict[str, tuple[str, ...]]:
    """Importable top-level name -> installed distributions providing it (scanned once: the scan
    reads every installed distribution's metadata)."""
    from importlib.metadata import packages_distributions

    return {m: tuple(d) for m, d in packages_distributions().items()}


def _import_name(dist: str) -> str:
    if dist in IMPORT_NAMES:
        return IMPORT_NAMES[dist]
    owners = {m for m, dists in _top_level_owners().items()
              if any(d.lower().replace("-", "_") == dist for d in dists) and not m.startswith("_")}
    return dist if dist in owners or not owners else sorted(owners)[0]


def _imported_modules() -> dict[str, set[str]]:
    """Top-level module -> files (relative to src/returnstudy) that import it (a fresh copy)."""
    return {k: set(v) for k, v in _scan_imports().items()}


@functools.cache
def _scan_imports() -> dict[str, frozenset[str]]:
    """The parse behind :func:`_imported_modules`, done once per process."""
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                out.setdefault(name.split(".")[0], set()).add(str(path.relative_to(SRC)))
    return {k: frozenset(v) for k, v in out.items()}


def test_requirement_names_are_parsed() -> None:
    assert _requirement_name("tomli>=2.0; python_version < '3.11'") == "tomli"
    assert _requirement_name("dask[distributed]>=2024.1") == "dask"
    assert _requirement_name("pandas>=2.0") == "pandas"
    assert _requirement_name("typing-extensions") == "typing_extensions"


def _unused(deps: list[str]) -> list[str]:
    imported = _imported_modules()
    source = "\n".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))
    unused = []
    for dist in deps:
        if _import_name(dist) in imported:
            continue
        if dist in INDIRECT_USES and re.search(INDIRECT_USES[dist][0], source):
            continue
        unused.append(dist)
    return unused


def test_every_runtime_dependency_is_used() -> None:
    deps = [_requirement_name(r) for r in _pyproject()["project"]["dependencies"]]
    assert {"pandas", "numpy", "statsmodels", "linearmodels", "matplotlib"} <= set(deps)
    unused = _unused(deps)
    assert not unused, f"runtime dependencies never imported by src/returnstudy: {unused}"
    # the check itself: a dependency the package never imports is reported
    assert _unused(["pandas", "requests", "pyfixest"]) == ["requests", "pyfixest"]


def test_statsmodels_and_linearmodels_have_real_uses() -> None:
    imported = _imported_modules()
    assert "crosscheck.py" in imported["linearmodels"]
    assert "crosscheck.py" in imported["statsmodels"]


def test_every_third_party_import_is_declared() -> None:
    meta = _pyproject()["project"]
    declared = {_import_name(_requirement_name(r)) for r in meta["dependencies"]}
    for reqs in meta.get("optional-dependencies", {}).values():
        for r in reqs:
            declared.add(_import_name(_requirement_name(r)))
            if "[distributed]" in r:
                declared.add("distributed")
    third_party = {m for m in _imported_modules() if m not in sys.stdlib_module_names and m != "returnstudy"}
    undeclared = sorted(third_party - declared - set(OPTIONAL_PROBES))
    assert not undeclared, f"src/returnstudy imports modules no dependency declares: {undeclared}"


@pytest.mark.parametrize("dist", sorted(INDIRECT_USES))
def test_indirect_uses_are_still_there(dist: str) -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))
    assert re.search(INDIRECT_USES[dist][0], source), f"{dist}: {INDIRECT_USES[dist][1]} is gone"
