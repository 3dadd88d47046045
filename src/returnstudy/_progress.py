"""Progress for long loops: a tqdm bar on a terminal or in a notebook, plain lines elsewhere.

Without a terminal (a log file, CI, a pipe) ``enabled=True`` writes one plain line to stderr
per item when there are at most 20 items, else one line per 10% of the items, so a long run
shows it is alive without flooding the log.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _plain_lines(iterable: Iterable[T], desc: str, total: int | None, label: Callable[[T], str] | None) -> Iterator[T]:
    items = list(iterable) if total is None else iterable
    n = len(items) if total is None else total  # type: ignore[arg-type]
    every_item = n <= 20
    next_decile = 1
    for i, item in enumerate(items, start=1):
        if every_item:
            name = f" {label(item)}" if label is not None else ""
            print(f"{desc}: {i}/{n}{name}", file=sys.stderr, flush=True)
        yield item
        if not every_item and i * 10 >= next_decile * n:
            print(f"{desc}: {i}/{n} done ({100 * i // n}%)", file=sys.stderr, flush=True)
            next_decile = 10 * i // n + 1


def progress(
    iterable: Iterable[T],
    desc: str,
    enabled: bool | None = None,
    total: int | None = None,
    label: Callable[[T], str] | None = None,
) -> Iterator[T]:
    """Wrap ``iterable`` in a progress display.

    ``enabled=None`` shows a bar only on an interactive terminal or notebook (tqdm's own
    rule), ``False`` never, ``True`` always: a bar on a terminal, plain lines on stderr
    otherwise (``label(item)`` names each item in those lines). In a notebook without
    ipywidgets the plain text bar is used, so no warning is printed.
    """
    if enabled is False:
        yield from iterable
        return
    if enabled is True and not _interactive():
        yield from _plain_lines(iterable, desc, total, label)
        return
    try:
        import ipywidgets  # noqa: F401

        bar = bar_class(auto=True)
    except ImportError:
        bar = bar_class(auto=False)
    yield from bar(iterable, desc=desc, total=total, disable=None if enabled is None else not enabled)


@functools.lru_cache(maxsize=2)
def bar_class(auto: bool = True) -> type:
    """tqdm's bar (``auto``: the notebook widget where there is one) without tqdm's monitor thread,
    which only retunes how often a bar redraws: a process whose only thread is its main one can
    fork its worker processes safely (:func:`returnstudy.background.default_start_method`)."""
    if auto:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return type("ProgressBar", (tqdm,), {"monitor_interval": 0})


def _interactive() -> bool:
    """stderr is a terminal, or the code runs in a Jupyter kernel (not merely with ipykernel imported)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())
