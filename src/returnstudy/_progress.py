"""Progress bars for long loops: tqdm in a terminal or notebook, nothing when switched off."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str, enabled: bool | None = None, total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar.

    ``enabled=None`` shows the bar only on an interactive terminal or notebook (tqdm's own
    rule), ``False`` never. In a notebook without ipywidgets the plain text bar is used, so no
    warning is printed.
    """
    if enabled is False:
        yield from iterable
        return
    try:
        import ipywidgets  # noqa: F401

        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    yield from tqdm(iterable, desc=desc, total=total, disable=None if enabled is None else not enabled)
