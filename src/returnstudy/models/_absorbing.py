"""Entry check of the staggered-adoption estimators: units whose treatment switches off.

The event studies and the robust staggered estimators (Sun-Abraham, Borusyak-Jaravel-Spiess
imputation, Callaway-Sant'Anna, extended TWFE) assume an absorbing treatment: once a unit is
treated it stays treated, and its event time is ``time - cohort``. A unit whose treatment
falls back (an ended or suspended instrument) has no well-defined event time after the
switch-off. Every such estimator handles these units the same way, through
:func:`drop_nonabsorbing`: ``nonabsorbing="drop"`` (default) removes all rows of the units,
logs them and records the row count in ``info["dropped"]["non-absorbing treatment"]`` and a
note naming the units; ``nonabsorbing="raise"`` raises ``ValueError`` instead.

Detection is :func:`returnstudy.treatments.nonabsorbing_corridors` (the treatment value falls
from one period to a later one, missing values skipped), applied to any unit column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from returnstudy.treatments import _falling_corridors

logger = logging.getLogger(__name__)

NONABSORBING_CHOICES = ("drop", "raise")
NONABSORBING_REASON = "non-absorbing treatment"

__all__ = ["NONABSORBING_CHOICES", "NONABSORBING_REASON", "NonabsorbingDrop", "check_nonabsorbing_choice",
           "drop_nonabsorbing", "nonabsorbing_units"]


@dataclass(frozen=True)
class NonabsorbingDrop:
    """What the entry check removed: the units (their ``unit`` values), the rows dropped,
    the treatment and the unit column."""

    treatment: str | None
    unit: str
    units: tuple[Any, ...] = field(default_factory=tuple)
    n_rows: int = 0

    def note(self) -> str | None:
        """A sentence for ``info["notes"]`` (None when nothing was dropped)."""
        if not self.units:
            return None
        shown = ", ".join(str(u) for u in self.units[:10]) + (", ..." if len(self.units) > 10 else "")
        return (f"{len(self.units)} unit(s) ({self.unit}) whose {self.treatment!r} switches off inside the sample "
                f"(not absorbing; no event time after the switch-off) dropped, {self.n_rows} rows: {shown}; "
                "pass nonabsorbing='raise' to stop instead")

    def record(self, info: dict[str, Any]) -> dict[str, Any]:
        """Add the row count (first in ``info["dropped"]``), the units and the note to ``info``."""
        if not self.units:
            return info
        info["dropped"] = {NONABSORBING_REASON: self.n_rows,
                           **{k: v for k, v in dict(info.get("dropped") or {}).items() if k != NONABSORBING_REASON}}
        info["nonabsorbing_units"] = list(self.units)
        notes = list(info.get("notes") or [])
        notes.insert(0, self.note())
        info["notes"] = notes
        return info


def check_nonabsorbing_choice(nonabsorbing: str) -> None:
    """Raise ``ValueError`` unless ``nonabsorbing`` is one of :data:`NONABSORBING_CHOICES`."""
    if nonabsorbing not in NONABSORBING_CHOICES:
        raise ValueError(f"nonabsorbing must be one of {list(NONABSORBING_CHOICES)}, got {nonabsorbing!r}")


def nonabsorbing_units(panel: pd.DataFrame, treatment: str, unit: str, time: str) -> list[Any]:
    """Values of ``unit`` whose ``treatment`` falls from one ``time`` period to a later one.

    The rule of :func:`returnstudy.treatments.nonabsorbing_corridors` (which keys units by
    ``geo``/``citizen`` and periods by ``year``) for any unit and time column.
    """
    for arg, col in (("treatment", treatment), ("time", time)):
        if col not in panel.columns:
            raise KeyError(f"{arg}={col!r} is not a column of the panel; columns: {[str(c) for c in panel.columns]}")
    codes, values = pd.factorize(_unit_values(panel, unit))
    t = pd.to_numeric(panel[time], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    d = pd.to_numeric(panel[treatment], errors="coerce").astype("float64").to_numpy(dtype=float, na_value=np.nan)
    ok = (codes >= 0) & ~np.isnan(t)
    # nonabsorbing_corridors' rule on the integer unit codes (no per-row text keys: on a 1M-row panel
    # those took 140 MB); units in the order of their names "<code>-u" there
    found = sorted(f"{int(k)}-u" for k in _falling_corridors(codes[ok].astype(np.int64), t[ok], d[ok]))
    out = [values[int(str(name).rsplit("-", 1)[0])] for name in found]
    return [u.item() if isinstance(u, np.generic) else u for u in out]


def _unit_values(panel: pd.DataFrame, unit: str) -> pd.Series:
    """The unit column; ``corridor`` is built as ``geo-citizen`` when only those columns exist."""
    if unit in panel.columns:
        return panel[unit]
    if unit == "corridor" and {"geo", "citizen"} <= set(panel.columns):
        return panel["geo"].astype(str) + "-" + panel["citizen"].astype(str)
    raise KeyError(f"unit={unit!r} is not a column of the panel; columns: {[str(c) for c in panel.columns]}")


def drop_nonabsorbing(
    panel: pd.DataFrame, treatment: str | None, unit: str, time: str, nonabsorbing: str, estimator: str
) -> tuple[pd.DataFrame, NonabsorbingDrop]:
    """The panel without the units whose ``treatment`` switches off, and what was dropped.

    Nothing is checked when ``treatment`` is None or not a column (the treatment is then built
    from a cohort column, hence absorbing). ``nonabsorbing="raise"`` raises ``ValueError``
    naming ``estimator``, the treatment and the first units instead of dropping them.
    """
    check_nonabsorbing_choice(nonabsorbing)
    if treatment is None or treatment not in panel.columns:
        return panel, NonabsorbingDrop(treatment, unit)
    if time not in panel.columns or (unit not in panel.columns and not (
            unit == "corridor" and {"geo", "citizen"} <= set(panel.columns))):
        return panel, NonabsorbingDrop(treatment, unit)  # the estimator reports the missing column
    units = nonabsorbing_units(panel, treatment, unit, time)
    if not units:
        return panel, NonabsorbingDrop(treatment, unit)
    if nonabsorbing == "raise":
        shown = ", ".join(repr(u) for u in units[:5]) + (", ..." if len(units) > 5 else "")
        raise ValueError(
            f"{estimator}: treatment {treatment!r} is not absorbing: it switches off inside the sample in "
            f"{len(units)} unit(s) of {unit!r} ({shown}); event times after a switch-off are undefined. Pass "
            "nonabsorbing='drop' to drop these units (counted in info['dropped']), or model the switch-off "
            "with the two-way models (twfe, ppml)"
        )
    rows = _unit_values(panel, unit).isin(units).to_numpy()
    logger.info("%s: dropped %d %s value(s) whose %r switches off (%d rows): %s", estimator, len(units), unit,
                treatment, int(rows.sum()), units[:10])
    return panel.iloc[np.flatnonzero(~rows)], NonabsorbingDrop(treatment, unit, tuple(units), int(rows.sum()))
