"""From a tidy corridor-year panel to estimation arrays.

:func:`prepare` selects the outcome, regressors, weights, fixed-effect and cluster
variables, drops incomplete rows (recording how many and why) and returns a
:class:`Design` holding numpy arrays plus the kept rows of the panel.

Fixed-effect specifications: any panel column (``"corridor"``, ``"year"``, ``"geo"``,
``"citizen"``, ...) or an interaction of columns written ``"a^b"`` (``"geo^year"``,
``"citizen^year"``); with ``fe=()`` the design's ``fe`` is None. ``"corridor"`` is built from ``geo`` and ``citizen`` if the
column is absent. Cluster specifications: a column name, a tuple of names (multi-way),
or None / ``"hetero"`` / ``"iid"`` (no clustering).

Every estimator assumes one row per unit and period. :func:`check_unique_keys` rejects
panels with duplicated (unit, time) keys. The key is the estimator's ``unit=`` and
``time=`` columns when the caller names them (:func:`resolve_panel_ids`, any panel:
e.g. ``unit="countyreal", time="year"``); otherwise :func:`panel_keys` infers it from the
fixed effects (``corridor`` and ``year`` for the corridor-year panel).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ._fe import FixedEffects, singleton_mask

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CLUSTER", "DEFAULT_TIME", "DEFAULT_UNIT", "Design", "check_column_arguments", "check_unique_keys",
    "fe_codes", "panel_keys", "parse_cluster", "prepare", "resolve_panel_ids",
]

NO_CLUSTER = (None, "hetero", "iid", "none")
_STANDARD_IDS = frozenset({"corridor", "geo", "citizen", "year"})
#: This package's panel: one row per corridor (reporting country x citizenship) and year,
#: errors clustered by citizenship. Estimators default to these names.
DEFAULT_UNIT = "corridor"
DEFAULT_TIME = "year"
DEFAULT_CLUSTER = "citizen"


def parse_cluster(cluster: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise a cluster specification to a tuple of column names (empty: none)."""
    if cluster in NO_CLUSTER:
        return ()
    if isinstance(cluster, str):
        return (cluster,)
    out = tuple(cluster)  # type: ignore[arg-type]
    if not out or not all(isinstance(c, str) for c in out):
        raise ValueError(f"cluster must be a column name, a tuple of names or None, got {cluster!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicated cluster variable in {cluster!r}")
    return out


def _columns_of(spec: str) -> list[str]:
    parts = [p.strip() for p in spec.split("^")]
    if any(not p for p in parts):
        raise ValueError(f"malformed fixed-effect/cluster specification {spec!r}")
    return parts


def _ensure_corridor(panel: pd.DataFrame, needed: set[str]) -> pd.DataFrame:
    if "corridor" in needed and "corridor" not in panel.columns:
        if {"geo", "citizen"} <= set(panel.columns):
            return panel.assign(corridor=panel["geo"].astype(str) + "-" + panel["citizen"].astype(str))
    return panel


def _can_build_corridor(columns: Sequence[str]) -> bool:
    return {"geo", "citizen"} <= set(columns)


#: Arguments whose values may be ``"a^b"`` interactions of columns.
_INTERACTION_ARGUMENTS = frozenset({"fe", "cluster"})


def _spec_columns(value: str | Sequence[str] | None, interactions: bool) -> list[str]:
    """Column names inside an argument value: a name or a sequence of names (with
    ``interactions``, ``"a^b"`` stands for columns a and b)."""
    if value is None or (interactions and isinstance(value, str) and value in NO_CLUSTER):
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for it in items:
        if not isinstance(it, str):
            raise TypeError(f"expected column names, got {it!r} in {value!r}")
        out += _columns_of(it) if interactions else [it]
    return out


def check_column_arguments(panel: pd.DataFrame | Sequence[str], **arguments: str | Sequence[str] | None) -> None:
    """Raise ``KeyError`` if a column named by an argument is not in the panel.

    ``arguments`` maps argument names to their values (a column, an ``"a^b"``
    interaction, a sequence of them or None). The message names the argument, its value
    and lists the columns that exist. ``corridor`` counts as present when ``geo`` and
    ``citizen`` are (it is built from them).
    """
    columns = list(panel.columns) if isinstance(panel, pd.DataFrame) else list(panel)
    have = set(columns)
    bad = []
    for arg, value in arguments.items():
        miss = [c for c in _spec_columns(value, arg in _INTERACTION_ARGUMENTS) if c not in have and not (c == "corridor" and _can_build_corridor(columns))]
        if miss:
            bad.append(f"{arg}={value!r} ({', '.join(repr(c) for c in dict.fromkeys(miss))})")
    if bad:
        raise KeyError(f"panel has no column for {'; '.join(bad)}; the panel's columns are: {columns}")


def resolve_panel_ids(
    columns: Sequence[str],
    unit: str | None,
    time: str | None,
    fe: str | Sequence[str] | None,
) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """The panel key and the fixed effects of an estimator call.

    * ``unit`` or ``time`` named (any panel): the key is ``(unit, time)`` (the other one
      defaulting to ``corridor`` / ``year``), both must be columns (``KeyError`` naming
      the argument otherwise), and ``fe=None`` means unit and time effects ``(unit, time)``.
    * neither named (this package's corridor-year panel, and callers that name their
      identifiers through ``fe`` only): ``fe=None`` means ``("corridor", "year")`` and the
      key is inferred by :func:`panel_keys`, exactly as before ``unit``/``time`` existed.

    Returns ``(key columns or None, fixed effects)``.
    """
    if fe is None:
        fe_out: tuple[str, ...] = (unit or DEFAULT_UNIT, time or DEFAULT_TIME)
    else:
        fe_out = (fe,) if isinstance(fe, str) else tuple(fe)
    if unit is None and time is None:
        return panel_keys(columns, fe_out), fe_out
    u, t = unit or DEFAULT_UNIT, time or DEFAULT_TIME
    if u == t:
        raise ValueError(f"unit and time must be different columns, both are {u!r}")
    check_column_arguments(columns, unit=u, time=t)
    return (u, t), fe_out


def panel_keys(columns: Sequence[str], fe: Sequence[str] = ("corridor", "year")) -> tuple[str, ...] | None:
    """Columns that identify one row of the panel (the unit-time key), or None if unknown.

    * If ``fe`` names at least two single-column fixed effects and one of them is not a
      standard corridor-panel column (``corridor``, ``geo``, ``citizen``, ``year``), those
      columns are the unit and time identifiers (e.g. ``fe=("unit", "period")``).
    * Otherwise the corridor-year key ``("corridor", "year")`` (``corridor`` is built from
      ``geo`` and ``citizen`` when the column is absent).
    """
    cols = set(columns)
    if isinstance(fe, str):
        fe = (fe,)
    singles = [s.strip() for s in (fe or ()) if "^" not in s]
    if len(singles) >= 2 and any(s not in _STANDARD_IDS for s in singles):
        return tuple(dict.fromkeys(singles))
    if "year" not in cols:
        return None
    if "corridor" in cols or {"geo", "citizen"} <= cols:
        return ("corridor", "year")
    return None


def _has_duplicate_keys(panel: pd.DataFrame, keys: list[str]) -> bool:
    """Do two rows without a missing key value share all of ``keys``? (One integer per row from
    the columns' factorized codes: a quick answer, the message is built only when it is yes.)"""
    cell = np.zeros(len(panel), dtype=np.int64)
    complete = np.ones(len(panel), dtype=bool)
    size = 1
    for k in keys:
        codes, uniques = pd.factorize(panel[k], use_na_sentinel=True)
        complete &= codes >= 0
        n = max(len(uniques), 1)
        if size > np.iinfo(np.int64).max // n:  # too many combinations for one integer: compare the rows themselves
            sub = panel.loc[complete, keys] if not complete.all() else panel[keys]
            return bool(sub.duplicated().any())
        cell = cell * n + codes
        size *= n
    cell = cell[complete]
    if len(cell) < 2:
        return False
    if size <= 16 * len(cell) + 1024:  # few enough combinations to count them all
        return bool(np.bincount(cell, minlength=size).max() > 1)
    return bool(pd.Series(cell).duplicated().any())


def check_unique_keys(panel: pd.DataFrame, keys: Sequence[str] | None) -> None:
    """Raise ``ValueError`` if two rows of ``panel`` share the key ``keys`` (e.g. corridor, year).

    Rows with a missing key value are ignored (they are dropped before estimation).
    The message names the first duplicated key, its row labels and how many keys and
    rows are duplicated. ``corridor`` is built from ``geo`` and ``citizen`` if absent.
    """
    if not keys:
        return
    keys = list(keys)
    panel = _ensure_corridor(panel, set(keys))
    missing = [k for k in keys if k not in panel.columns]
    if missing:
        raise KeyError(f"panel has no key column(s) {missing}; available: {list(panel.columns)}")
    if not _has_duplicate_keys(panel, keys):
        return
    sub = panel[keys]
    sub = sub.loc[sub.notna().all(axis=1).to_numpy()]
    dup = sub.duplicated(keep=False).to_numpy()
    d = sub.loc[dup]
    n_keys = int((~d.duplicated(keep="first")).sum())
    first = d.iloc[0]
    same = (d == first).all(axis=1).to_numpy()
    labels = list(d.index[same])
    where = ", ".join(f"{k}={(first[k].item() if hasattr(first[k], 'item') else first[k])!r}" for k in keys)
    raise ValueError(
        f"panel has {n_keys} duplicated ({', '.join(keys)}) key(s) in {int(dup.sum())} rows; first: {where} "
        f"(rows {labels}). Each ({', '.join(keys)}) must appear once: aggregate or deduplicate the panel"
    )


def fe_codes(frame: pd.DataFrame, spec: str) -> np.ndarray:
    """Integer codes 0..G-1 of a fixed effect or cluster ``spec`` ("col" or "a^b")."""
    cols = _columns_of(spec)
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise KeyError(f"column(s) {missing} for {spec!r} not in panel; available: {list(frame.columns)}")
    if len(cols) == 1:
        codes, _ = pd.factorize(frame[cols[0]], use_na_sentinel=True)
    else:
        codes = frame.groupby(cols, sort=True, dropna=False).ngroup().to_numpy()
    return np.asarray(codes, dtype=np.intp)


@dataclass
class Design:
    """Estimation arrays for one specification.

    ``frame`` holds the kept panel rows (in order, original index); ``rows`` their
    positions in the input panel; ``dropped`` maps a reason to the number of rows
    removed for it, in the order applied.
    """

    y: np.ndarray
    X: np.ndarray
    outcome: str
    regressors: list[str]
    fe: FixedEffects | None
    fe_names: tuple[str, ...]
    clusters: list[np.ndarray]
    cluster_names: tuple[str, ...]
    weights: np.ndarray | None
    weights_name: str | None
    frame: pd.DataFrame
    rows: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] | None = None

    @property
    def n_obs(self) -> int:
        return int(self.y.size)

    @property
    def n_clusters(self) -> list[int]:
        return [int(np.unique(c).size) for c in self.clusters]

    def drop(self, mask: np.ndarray, reason: str) -> Design:
        """New design without the rows where ``mask`` is True; the count is recorded under ``reason``."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_obs,):
            raise ValueError(f"mask has shape {mask.shape}, expected ({self.n_obs},)")
        dropped = dict(self.dropped)
        n = int(mask.sum())
        if n == 0:
            return self
        dropped[reason] = dropped.get(reason, 0) + n
        keep = ~mask
        return replace(
            self,
            y=self.y[keep],
            X=self.X[keep],
            fe=None if self.fe is None else self.fe.subset(keep),
            clusters=[c[keep] for c in self.clusters],
            weights=None if self.weights is None else self.weights[keep],
            frame=self.frame.iloc[np.flatnonzero(keep)],
            rows=self.rows[keep],
            dropped=dropped,
        )

    def drop_singletons(self) -> Design:
        """Drop observations alone in a fixed-effect group (iteratively)."""
        if self.fe is None:
            return self
        return self.drop(singleton_mask(self.fe), "singleton fixed-effect groups")

    def info(self) -> dict[str, Any]:
        """Sample description (see :func:`returnstudy.results.panel_info`) plus drops and specification."""
        from ..results import panel_info

        info = panel_info(self.frame, self.attrs)
        if self.keys and len(self.keys) == 2 and all(k in self.frame.columns for k in self.keys):
            unit, time = self.keys
            info["unit"], info["time"] = unit, time
            info["n_units"] = int(self.frame[unit].nunique())
            if info.get("years") == (None, None) and len(self.frame) and pd.api.types.is_numeric_dtype(self.frame[time]):
                info["years"] = (int(self.frame[time].min()), int(self.frame[time].max()))
        info["dropped"] = dict(self.dropped)
        info["fixed_effects"] = list(self.fe_names)
        info["cluster"] = " x ".join(self.cluster_names) if self.cluster_names else None
        info["n_clusters"] = self.n_clusters if len(self.clusters) > 1 else (self.n_clusters[0] if self.clusters else None)
        info["weights"] = self.weights_name
        return info


def prepare(
    panel: pd.DataFrame,
    outcome: str,
    regressors: Sequence[str],
    fe: Sequence[str] = ("corridor", "year"),
    cluster: str | Sequence[str] | None = "citizen",
    weights: str | None = None,
    dropna: bool = True,
    extra_columns: Sequence[str] = (),
    keys: Sequence[str] | str | None = "auto",
) -> Design:
    """Turn the tidy panel into a :class:`Design`.

    ``keys`` are the columns identifying one row (``"auto"``: :func:`panel_keys`; None: no
    check); duplicated keys raise ``ValueError`` (:func:`check_unique_keys`). Rows with a missing outcome, regressor, weight, fixed-effect or cluster value are
    dropped (``dropna=True``, counted per first offending column) or raise ``ValueError``
    (``dropna=False``). Rows with zero weight are dropped; negative or infinite values
    raise. ``extra_columns`` are kept in ``frame`` without being required non-missing.
    """
    if not isinstance(panel, pd.DataFrame):
        raise TypeError(f"panel must be a pandas DataFrame, got {type(panel).__name__}")
    if isinstance(regressors, str):
        regressors = [regressors]
    regressors = list(regressors)
    if isinstance(fe, str):
        fe = (fe,)
    fe = tuple(fe or ())
    cl_names = parse_cluster(cluster)
    needed = {outcome, *regressors, *(c for s in fe for c in _columns_of(s)), *(c for s in cl_names for c in _columns_of(s))}
    if weights is not None:
        needed.add(weights)
    key_cols: tuple[str, ...] | None
    if isinstance(keys, str):
        if keys != "auto":
            raise ValueError(f"keys must be 'auto', None or a sequence of column names, got {keys!r}")
        key_cols = panel_keys(panel.columns, fe)
    else:
        key_cols = None if keys is None else tuple(keys)
    panel = _ensure_corridor(panel, needed)
    check_column_arguments(
        panel, outcome=outcome, regressors=regressors, fe=fe or None, cluster=cl_names or None, weights=weights,
    )
    check_unique_keys(panel, key_cols)
    if len(set(regressors)) != len(regressors):
        raise ValueError(f"duplicated regressor in {regressors}")
    if outcome in regressors:
        raise ValueError(f"outcome {outcome!r} is also a regressor")

    numeric_cols = [outcome, *regressors] + ([weights] if weights else [])
    num: dict[str, np.ndarray] = {}
    for col in numeric_cols:
        s = panel[col]
        if s.dtype == bool or str(s.dtype) == "boolean":
            s = s.astype("Float64")
        if not (pd.api.types.is_numeric_dtype(s)):
            raise ValueError(f"column {col!r} must be numeric, has dtype {s.dtype}")
        num[col] = pd.to_numeric(s).astype("float64").to_numpy(dtype=float, na_value=np.nan)

    n = len(panel)
    keep = np.ones(n, dtype=bool)
    dropped: dict[str, int] = {}
    id_cols = [c for s in (*fe, *cl_names) for c in _columns_of(s)]

    def _record(bad: np.ndarray, col: str) -> None:
        nonlocal keep
        new = bad & keep
        if new.any():
            if not dropna:
                first = panel.index[np.flatnonzero(new)[0]]
                raise ValueError(f"column {col!r} is missing in {int(new.sum())} rows (first: row {first!r}); use dropna=True")
            dropped[f"missing {col}"] = int(new.sum())
            keep &= ~new

    for col in numeric_cols:
        v = num[col]
        inf = np.isinf(v)
        if inf.any():
            first = panel.index[np.flatnonzero(inf)[0]]
            raise ValueError(f"column {col!r} has {int(inf.sum())} infinite values (first: row {first!r})")
        _record(np.isnan(v), col)
    for col in dict.fromkeys(id_cols):
        _record(panel[col].isna().to_numpy(), col)
    if weights is not None:
        w = num[weights]
        neg = keep & (w < 0)
        if neg.any():
            first = panel.index[np.flatnonzero(neg)[0]]
            raise ValueError(f"weights column {weights!r} has {int(neg.sum())} negative values (first: row {first!r})")
        zero = keep & (w == 0)
        if zero.any():
            dropped[f"zero weight ({weights})"] = int(zero.sum())
            keep &= ~zero

    rows = np.flatnonzero(keep)
    if rows.size == 0:
        if n == 0:
            raise ValueError("empty estimation sample: the panel passed to the estimator has 0 rows "
                             "(check the sample filters' flow table and the years)")
        reasons = ", ".join(f"{k}: {v} rows" for k, v in dropped.items())
        raise ValueError(f"no rows left of {n}: every row was dropped ({reasons})")
    key_in_panel = [c for c in (key_cols or ()) if c in panel.columns]
    frame_cols = list(dict.fromkeys(
        [c for c in ("geo", "citizen", "year", "corridor") if c in panel.columns] + key_in_panel + id_cols
        + numeric_cols + list(extra_columns)
    ))
    bad_extra = [c for c in extra_columns if c not in panel.columns]
    if bad_extra:
        raise KeyError(f"panel has no column(s) {bad_extra}; the panel's columns are: {list(panel.columns)}")
    frame = panel[frame_cols].iloc[rows]  # only the columns kept are taken
    fe_list = [fe_codes(frame, s) for s in fe]
    fx = FixedEffects(fe_list, names=fe) if fe else None
    clusters = [fe_codes(frame, s) for s in cl_names]
    X = np.column_stack([num[c][rows] for c in regressors]) if regressors else np.empty((rows.size, 0))
    if dropped:
        logger.info("prepare: dropped rows %s", dropped)
    return Design(
        y=num[outcome][rows],
        X=X,
        outcome=outcome,
        regressors=regressors,
        fe=fx,
        fe_names=fe,
        clusters=clusters,
        cluster_names=cl_names,
        weights=None if weights is None else num[weights][rows],
        weights_name=weights,
        frame=frame,
        rows=rows,
        dropped=dropped,
        attrs=dict(panel.attrs) if panel.attrs else {},
        keys=key_cols,
    )
