"""Build each prepared input once per run: within a :func:`reuse_prepared` block (one ``report``).

A report reads the same Eurostat tables, codes the same treatments and applies the same
filters in several sections (results, multiverse, sensitivity, claims, Part 3). Inside a
``with reuse_prepared():`` block, :func:`reused` returns the value first built for a key —
each caller gets its own copy when ``copy`` is given, so no section can change another's
input. Outside such a block nothing is kept: every call reads and builds afresh, as a
library user who has just edited a data file expects.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

__all__ = ["reuse_prepared", "reused", "stored", "adopt"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_STORE: contextvars.ContextVar[dict[tuple[str, Hashable], Any] | None] = contextvars.ContextVar(
    "returnstudy_reuse_prepared", default=None)


@contextlib.contextmanager
def reuse_prepared(store: dict[tuple[str, Hashable], Any] | None = None) -> Iterator[None]:
    """Keep prepared inputs for the duration of the block (a nested block shares the outer one's).

    ``store``: keep them in this dict, so that a later block given the same dict finds them (a
    worker process computing several pieces of one report)."""
    if _STORE.get() is not None:
        yield
        return
    token = _STORE.set({} if store is None else store)
    try:
        yield
    finally:
        _STORE.reset(token)


def reused(kind: str, key: Hashable, build: Callable[[], T], copy: Callable[[T], T] | None = None) -> T:
    """``build()``, or inside a :func:`reuse_prepared` block the value built first for ``(kind, key)``
    (passed through ``copy`` when given, so that callers may change what they receive)."""
    store = _STORE.get()
    if store is None:
        return build()
    if (kind, key) not in store:
        store[(kind, key)] = build()
    else:
        log.debug("reusing %s %s", kind, key)
    value = store[(kind, key)]
    return copy(value) if copy is not None else value


def stored(kinds: tuple[str, ...]) -> dict[tuple[str, Hashable], Any]:
    """The current block's values of these kinds, by ``(kind, key)`` (empty outside a block)."""
    store = _STORE.get()
    if store is None or not kinds:
        return {}
    return {k: v for k, v in store.items() if k[0] in kinds}


def adopt(entries: dict[tuple[str, Hashable], Any]) -> None:
    """Keep values built elsewhere (a worker process of the same run) in the current block's store,
    where no value of the same ``(kind, key)`` is kept yet; nothing outside a block."""
    store = _STORE.get()
    if store is None:
        return
    for k, v in entries.items():
        store.setdefault(k, v)
