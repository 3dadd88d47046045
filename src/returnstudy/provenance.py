"""Read-only provenance (data vintage, panel options, treatment coding, filter flow) in ``DataFrame.attrs``.

Every number the package reports names the data vintage and the rows it used, so a panel
carries its provenance in ``attrs`` and pandas hands it on to every frame derived from it.
pandas does that by deep-copying ``attrs`` on each derived frame — every ``df[col]``, every
filter, every ``assign`` — which made column access of a provenance-carrying panel about
15 times as slow as of a plain one. The values stored here are frozen instead:
:class:`FrozenDict` and :class:`FrozenList` are a ``dict`` and a ``list`` (equal to, and
JSON-encoded and printed like, the plain ones) that refuse changes and whose copy is the
object itself, so handing them on costs a reference. Build a new value to change one
(``{**frame.attrs["vintage"], "extra": ...}``), then store it with :func:`frozen`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

__all__ = ["FrozenDict", "FrozenList", "freeze_attrs", "frozen"]


def _read_only(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(
        f"{type(self).__name__}: provenance in DataFrame.attrs is read-only; build a new value "
        "(e.g. {**old, key: value}) and assign it with returnstudy.provenance.frozen(...)"
    )


class FrozenDict(dict):
    """A ``dict`` that cannot be changed; ``copy.copy``/``copy.deepcopy`` return it unchanged."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


class FrozenList(list):
    """A ``list`` that cannot be changed; ``copy.copy``/``copy.deepcopy`` return it unchanged."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = clear = extend = insert = pop = remove = reverse = sort = _read_only

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenList:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))


def frozen(value: Any) -> Any:
    """``value`` with every dict and list in it (recursively) replaced by its frozen form; other values as they are."""
    if isinstance(value, (FrozenDict, FrozenList)):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(frozen(v) for v in value)
    if type(value) is tuple:
        return tuple(frozen(v) for v in value)
    return value


def freeze_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of ``attrs``'s entries, each frozen (assign it to ``frame.attrs``)."""
    return {k: frozen(v) for k, v in attrs.items()}
