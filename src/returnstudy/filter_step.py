"""One sample-filter step of a study spec (``[[filters]]`` entry).

Its own module so that the spec parser (:mod:`returnstudy.spec`) and the filter registry
(:mod:`returnstudy.filters`) can both use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FilterStep"]


@dataclass(frozen=True)
class FilterStep:
    """One ``[[filters]]`` entry: step name, its parameters and where it was written."""

    step: str
    params: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    position: int = 0
    line: int | None = None
    source: Path | None = None

    def where(self) -> str:
        """'filter step 3 'min_orders' (wodc.toml, line 40)' for error messages."""
        loc = ""
        if self.source is not None:
            loc = f" ({self.source}" + (f", line {self.line}" if self.line else "") + ")"
        return f"filter step {self.position} {self.step!r}{loc}"
