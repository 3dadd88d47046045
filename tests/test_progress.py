"""Progress display: a notebook is a running kernel, not an imported module."""

from __future__ import annotations

import io
import sys
import types

from returnstudy._progress import _interactive, progress


def test_imported_ipykernel_without_a_kernel_is_not_interactive(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not _interactive()
    list(progress(range(3), "fits", enabled=True))
    assert sys.stderr.getvalue().splitlines() == ["fits: 1/3", "fits: 2/3", "fits: 3/3"]


def test_a_running_kernel_is_interactive(monkeypatch) -> None:
    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: types.SimpleNamespace(kernel=object())  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert _interactive()
