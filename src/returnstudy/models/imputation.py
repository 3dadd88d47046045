"""Imputation DiD estimator (Borusyak, Jaravel & Spiess 2024, *REStud*).

1. Fit the untreated-outcome model (corridor and year fixed effects by default)
   on untreated corridor-years only: never-treated corridors and the
   not-yet-treated years of later adopters (``D == 0``).
2. Impute ``Y(0)`` for every treated corridor-year from the fitted effects.
3. Average the differences: overall ATT over all treated corridor-years
   (equal weights) and, with ``event_time=True``, by years since adoption.

``model="linear"``: ``tau_it = Y_it - Yhat0_it``; the ATT is the mean (units of the
outcome, e.g. return-rate points). Standard errors: BJS's conservative
clustered variance (Theorem 3) with treated residuals centred on the average effect within cohort x
event-time cells and scaled by 1/sqrt(1 - leverage) (HC2-type; pooled average
for singleton cells);
normal reference distribution.

``model="poisson"``: the untreated model is a fixed-effects Poisson regression
with offset ``log(exposure)`` (returns with ``orders`` as exposure), fitted
by Newton steps on the sparse fixed-effect design; ``mu0`` is imputed for
treated corridor-years and the effect is ``log(sum Y / sum mu0)`` over the
treated cells, reported with ``pct_effect = 100 (exp(b) - 1)``. Standard
errors: clustered delta-method influence functions (treated term centred on
cell-level ratios with the same leverage correction as the linear case, plus the first-stage term through
the fixed-effect estimates), no small-sample factor.

Corridors with fewer than ``min_untreated_periods`` untreated years cannot be
imputed and are dropped (reported), as are treated rows whose year has no
untreated observation and, for Poisson, fixed-effect groups whose untreated
outcomes are all zero (their effect would be minus infinity).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from returnstudy.inference.cluster import variance_not_identified
from returnstudy.models._absorbing import check_nonabsorbing_choice, drop_nonabsorbing
from returnstudy.models._design import DEFAULT_TIME, DEFAULT_UNIT, check_column_arguments, prepare
from returnstudy.results import EstimationResult, make_table, panel_info

logger = logging.getLogger(__name__)

__all__ = ["did_imputation", "DidSample", "did_sample", "SparseFE", "SparseFit", "dependent_columns", "sparse_fit",
           "two_way_dependent_columns"]


# --------------------------------------------------------------------------- sample
@dataclass
class DidSample:
    """Estimation sample for a staggered binary treatment.

    ``cohort`` is the adoption year (NaN: never adopted), ``rel`` = year - cohort,
    ``treated`` = D == 1, ``exposure`` the exposure (Poisson) or None.
    """

    frame: pd.DataFrame
    y: np.ndarray
    treated: np.ndarray
    cohort: np.ndarray
    rel: np.ndarray
    year: np.ndarray
    unit: np.ndarray
    fe_codes: list[np.ndarray]
    fe_names: tuple[str, ...]
    cluster: np.ndarray | None
    cluster_name: str | None
    exposure: np.ndarray | None
    dropped: dict[str, int] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def subset(self, keep: np.ndarray, reason: str) -> DidSample:
        keep = np.asarray(keep, dtype=bool)
        n_drop = int((~keep).sum())
        dropped = dict(self.dropped)
        if n_drop:
            dropped[reason] = dropped.get(reason, 0) + n_drop
            logger.info("%s: dropped %d rows", reason, n_drop)
        return DidSample(
            frame=self.frame.iloc[np.flatnonzero(keep)], y=self.y[keep], treated=self.treated[keep],
            cohort=self.cohort[keep], rel=self.rel[keep], year=self.year[keep], unit=self.unit[keep],
            fe_codes=[c[keep] for c in self.fe_codes], fe_names=self.fe_names,
            cluster=None if self.cluster is None else self.cluster[keep], cluster_name=self.cluster_name,
            exposure=None if self.exposure is None else self.exposure[keep], dropped=dropped, attrs=self.attrs,
        )

    def info(self) -> dict[str, Any]:
        info = panel_info(self.frame, self.attrs)
        info["dropped"] = dict(self.dropped)
        info["fixed_effects"] = list(self.fe_names)
        info["cluster"] = self.cluster_name
        info["n_clusters"] = None if self.cluster is None else int(np.unique(self.cluster).size)
        info["n_treated_obs"] = int(self.treated.sum())
        info["n_treated_corridors"] = int(np.unique(self.unit[~np.isnan(self.cohort)]).size)
        coh = self.cohort[~np.isnan(self.cohort)]
        info["cohorts"] = {int(c): int(np.unique(self.unit[self.cohort == c]).size) for c in np.unique(coh)}
        info["synthetic"] = bool(self.attrs.get("synthetic", False))
        return info


def staggered_sample(
    panel: pd.DataFrame, treatment: str | None, outcome: str | None, model: str, exposure: str,
    fe: str | Sequence[str] | None, cluster: str | None, unit: str | None, time: str | None, cohort: str | None,
    nonabsorbing: str, estimator: str,
) -> tuple[DidSample, str, str, str, str, tuple[str, ...], int]:
    """The entry step shared by the staggered estimators (``did_imputation``, ``sun_abraham``):
    default outcome (``return_rate`` linear, ``returns`` Poisson), unit/time/fixed effects and
    treatment name, units whose treatment switches off dropped (or refused), then :func:`did_sample`.
    Returns the sample, the resolved treatment, outcome, unit, time and fixed effects, and the
    number of rows dropped as non-absorbing."""
    if outcome is None:
        outcome = "return_rate" if model == "linear" else "returns"
    unit, time = unit or DEFAULT_UNIT, time or DEFAULT_TIME
    fe = (unit, time) if fe is None else ((fe,) if isinstance(fe, str) else tuple(fe))
    if treatment is None:
        treatment = "treated" if cohort is not None else "bilateral_binding"
    check_nonabsorbing_choice(nonabsorbing)
    panel, nonabsorbing_drop = drop_nonabsorbing(panel, treatment, unit, time, nonabsorbing, estimator)
    s = did_sample(panel, treatment, outcome, model, exposure, fe, cluster, unit=unit, time=time, cohort=cohort)
    return s, treatment, outcome, unit, time, fe, nonabsorbing_drop


def did_sample(
    panel: pd.DataFrame,
    treatment: str,
    outcome: str,
    model: str = "linear",
    exposure: str | None = "orders",
    fe: Sequence[str] = ("corridor", "year"),
    cluster: str | None = "citizen",
    unit: str = "corridor",
    time: str = "year",
    cohort: str | None = None,
) -> DidSample:
    """Validate and extract the arrays shared by the staggered-adoption estimators.

    The treatment must be binary (0/1) and absorbing; the adoption year is taken from
    ``{treatment}_cohort`` if present (checked against ``D``), else derived as the first
    year with ``D == 1``. With ``cohort=`` (a column holding each unit's first treated
    period, 0 / NaN / inf for never treated, as R *did*'s ``gname``) the adoption year is
    that column, and the treatment indicator ``time >= cohort`` is built unless
    ``treatment`` names an existing 0/1 column (then it is checked against the cohort).
    Rows with a missing outcome, treatment, identifier or (Poisson) missing / non-positive
    exposure are dropped and counted. Duplicated ``(unit, time)`` rows raise ``ValueError``;
    a named column that does not exist raises ``KeyError`` listing the panel's columns.
    """
    if model not in ("linear", "poisson"):
        raise ValueError(f"model={model!r}: expected 'linear' or 'poisson'")
    if isinstance(cluster, (list, tuple)) and len(cluster) == 1:
        cluster = cluster[0]
    check_column_arguments(panel, outcome=outcome, unit=unit, time=time, cohort=cohort, fe=tuple(fe) or None,
                           cluster=cluster if isinstance(cluster, str) else None,
                           exposure=exposure if model == "poisson" else None)
    if cohort is not None:
        panel, treatment = _with_cohort_treatment(panel, treatment, cohort, unit, time)
    if treatment not in panel.columns:
        valid = sorted(str(c)[: -len("_cohort")] for c in panel.columns if str(c).endswith("_cohort"))
        raise KeyError(
            f"treatment column {treatment!r} not in panel; treatments with cohort columns in this panel: "
            f"{valid or 'none (run add_treatments first, or name the first-treated-period column with cohort=)'}"
        )
    if isinstance(cluster, (list, tuple)):
        if len(cluster) != 1:
            raise ValueError(f"cluster={cluster!r}: the robust DiD estimators support one-way clustering only")
        cluster = cluster[0]
    cohort_col = f"{treatment}_cohort"
    extra = [c for c in (cohort_col, unit, time) if c in panel.columns]
    if model == "poisson":
        if exposure is None or exposure not in panel.columns:
            raise KeyError(f"exposure column {exposure!r} not in panel (needed for model='poisson')")
        extra.append(exposure)
    d = prepare(panel, outcome, [treatment], fe=tuple(fe), cluster=cluster, extra_columns=extra, keys=(unit, time))
    frame = d.frame
    for col in (unit, time):
        if col not in frame.columns:
            raise KeyError(f"column {col!r} not in panel")
    D = d.X[:, 0]
    if not np.isin(D, (0.0, 1.0)).all():
        bad = np.flatnonzero(~np.isin(D, (0.0, 1.0)))[0]
        raise ValueError(
            f"{treatment!r} must be binary 0/1 for staggered-adoption estimators; row {frame.index[bad]!r} has "
            f"{D[bad]} (use add_treatments(rule='calendar_year'))"
        )
    year = frame[time].to_numpy(dtype=float)
    unit_codes, _ = pd.factorize(frame[unit])
    if cohort_col in frame.columns:
        cohort = frame[cohort_col].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    else:
        first = pd.Series(np.where(D > 0, year, np.inf)).groupby(unit_codes).transform("min").to_numpy()
        cohort = np.where(np.isinf(first), np.nan, first)
    implied = (~np.isnan(cohort)) & (year >= np.nan_to_num(cohort, nan=np.inf))
    mismatch = implied != (D > 0)
    if mismatch.any():
        i = np.flatnonzero(mismatch)[0]
        raise ValueError(
            f"{treatment!r} is not an absorbing treatment consistent with its adoption year: row {frame.index[i]!r} "
            f"({unit}={frame[unit].iloc[i]!r}, {time}={int(year[i])}) has D={D[i]} but cohort={cohort[i]}"
        )
    y = d.y
    exp_arr = None
    sample = DidSample(
        frame=frame, y=y, treated=D > 0, cohort=cohort, rel=year - cohort, year=year, unit=unit_codes,
        fe_codes=[d.fe.codes[j] for j in range(d.fe.n_dims)] if d.fe is not None else [],
        fe_names=tuple(fe), cluster=d.clusters[0] if d.clusters else None,
        cluster_name=cluster if d.clusters else None, exposure=None, dropped=dict(d.dropped),
        attrs=dict(panel.attrs) if panel.attrs else {},
    )
    if model == "poisson":
        if (y < 0).any():
            i = np.flatnonzero(y < 0)[0]
            raise ValueError(f"Poisson outcome {outcome!r} negative in row {frame.index[i]!r}")
        exp_arr = frame[exposure].to_numpy(dtype=float, na_value=np.nan)
        sample.exposure = exp_arr
        sample = sample.subset(np.isfinite(exp_arr) & (exp_arr > 0), f"{exposure} missing or zero (no exposure)")
    return sample


def _with_cohort_treatment(
    panel: pd.DataFrame, treatment: str | None, cohort: str, unit: str, time: str
) -> tuple[pd.DataFrame, str]:
    """The panel with ``{name}_cohort`` taken from the column ``cohort`` (0, NaN, inf: never
    treated) and, unless ``treatment`` is an existing column, the indicator ``time >= cohort``.

    Returns the (lazily copied) panel and the treatment column's name (``treatment``, or
    ``"treated"`` when None). The cohort must be numeric and constant within each unit.
    """
    g = pd.to_numeric(panel[cohort], errors="coerce").astype("float64")
    bad = panel[cohort].notna().to_numpy() & g.isna().to_numpy()
    if bad.any():
        i = panel.index[np.flatnonzero(bad)[0]]
        raise ValueError(f"cohort column {cohort!r} must be numeric (first treated period; 0 or NaN for never "
                         f"treated); row {i!r} has {panel.loc[i, cohort]!r}")
    g_arr = g.to_numpy()
    g_arr = np.where(np.isfinite(g_arr) & (g_arr != 0), g_arr, np.nan)
    u_codes = pd.factorize(panel[unit])[0]
    seen = u_codes >= 0
    key = np.nan_to_num(g_arr, nan=-1.0)
    lo = np.full(u_codes.max() + 1 if seen.any() else 0, np.inf)
    hi = np.full_like(lo, -np.inf)
    np.minimum.at(lo, u_codes[seen], key[seen])
    np.maximum.at(hi, u_codes[seen], key[seen])
    if (lo < hi).any():
        j = int(np.flatnonzero(lo < hi)[0])
        u = panel[unit].to_numpy()[np.flatnonzero(u_codes == j)[0]]
        u = u.item() if isinstance(u, np.generic) else u
        raise ValueError(f"cohort column {cohort!r} varies within {unit}={u!r}; it must be the unit's first "
                         "treated period in every row")
    name = treatment if treatment is not None else "treated"
    new = {f"{name}_cohort": pd.array(g_arr, dtype="Float64")}
    if name not in panel.columns:
        t = pd.to_numeric(panel[time], errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            new[name] = np.where(np.isnan(g_arr), 0.0, (t >= g_arr).astype(float))
    return panel.assign(**new), name


# --------------------------------------------------------------------------- sparse FE
def dependent_columns(G: sp.csc_matrix, tol: float = 1e-7, ordering: str = "COLAMD") -> np.ndarray:
    """Columns of a positive semi-definite Gram matrix that depend linearly on the others.

    A symmetric sparse LU (diagonal pivots only) of ``G + eps I`` leaves a pivot of order
    ``eps`` exactly at each column that adds no new direction; those columns are flagged.
    Which of a dependent set is flagged depends on the elimination order; the number
    flagged is the rank deficiency of ``G``. ``ordering`` is SuperLU's column ordering:
    ``"COLAMD"`` (default) scales to millions of rows; ``"MMD_AT_PLUS_A"`` gives
    smaller factors on some matrices but its ordering time grows quadratically with
    the number of fixed-effect levels.
    """
    n = G.shape[0]
    scale = float(np.mean(G.diagonal())) if n else 1.0
    eps = 1e-10 * scale
    lu = spla.splu((G + eps * sp.identity(n, format="csc")).tocsc(), permc_spec=ordering,
                   diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    piv = np.abs(lu.U.diagonal())
    tiny = piv < tol * scale
    return tiny[lu.perm_c]


def two_way_dependent_columns(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    """Redundant columns of the dummy design ``[D_a, D_b without level 0]`` of two fixed effects.

    ``a`` and ``b`` are the level codes (0..n_a-1, 0..n_b-1, every level occurring) of
    the rows. Exact and linear in rows: the full dummies ``[D_a, D_b]`` have rank
    ``n_a + n_b - C`` where ``C`` is the number of connected components of the bipartite
    graph of levels linked by rows (a set of corridors and years that share no row with
    the rest of the panel has its own level). Dropping level 0 of ``b`` removes the
    dependency of its component; every other component's first ``b`` level is flagged.
    Returns a mask over the ``n_a + n_b - 1`` columns.
    """
    from scipy.sparse.csgraph import connected_components

    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    n_nodes = n_a + n_b
    graph = sp.csr_matrix((np.ones(a.size, dtype=np.int8), (a, n_a + b)), shape=(n_nodes, n_nodes))
    _, label = connected_components(graph, directed=True, connection="weak")
    label_b = label[n_a:]
    first_b = np.unique(label_b, return_index=True)[1]  # lowest b level of each component
    first_b = first_b[label_b[first_b] != label_b[0]]  # level 0's component already has its reference
    dep = np.zeros(n_a + n_b - 1, dtype=bool)
    dep[n_a + first_b - 1] = True
    return dep


class SparseFE:
    """Sparse dummy design of several fixed-effect dimensions, identified on ``fit`` rows.

    Columns are the levels of each dimension that occur among the ``fit`` rows; every
    dimension after the first drops its first level (reference). ``ok`` flags rows
    whose levels all occur among the fit rows (others cannot be predicted).
    """

    def __init__(self, codes: Sequence[np.ndarray], fit: np.ndarray):
        fit = np.asarray(fit, dtype=bool)
        n = fit.size
        self.ok = np.ones(n, dtype=bool)
        cols: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        offset = 0
        levels: list[np.ndarray] = []
        n_levels: list[int] = []
        for d, c in enumerate(codes):
            c = np.asarray(c)
            present = np.unique(c[fit])
            mapping = np.full(int(c.max()) + 1 if c.size else 0, -1, dtype=np.int64)
            mapping[present] = np.arange(present.size)
            m = mapping[c]
            self.ok &= m >= 0
            levels.append(m)
            n_levels.append(int(present.size))
            if d > 0:
                m = m - 1  # drop the first level as reference
            use = m >= 0
            rows.append(np.flatnonzero(use))
            cols.append(m[use] + offset)
            offset += present.size - (1 if d > 0 else 0)
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        cc = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        Z = sp.csr_matrix((np.ones(r.size), (r, cc)), shape=(n, offset))
        self.n_redundant = 0
        if len(codes) == 2 and offset:
            dep = two_way_dependent_columns(levels[0][fit], levels[1][fit], n_levels[0], n_levels[1])
        elif len(codes) > 2 and offset:
            Zf = Z[np.flatnonzero(fit)]
            dep = dependent_columns((Zf.T @ Zf).tocsc())
        else:
            dep = np.zeros(offset, dtype=bool)
        if dep.any():
            # e.g. corridor and geo x year effects: one redundant level per reporting country
            self.n_redundant = int(dep.sum())
            logger.info("dropping %d redundant fixed-effect levels", self.n_redundant)
            Z = Z[:, np.flatnonzero(~dep)]
        self.Z = Z.tocsr()
        self.fit = fit
        self.p = self.Z.shape[1]

    def factor(self, rows: np.ndarray, w: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """Solver for (Z_r' W Z_r) x = b over the rows ``rows`` (boolean mask)."""
        Zr = self.Z[np.flatnonzero(rows)]
        G = (Zr.T @ (Zr if w is None else sp.diags(w) @ Zr)).tocsc()
        try:
            lu = spla.splu(G)
        except RuntimeError as exc:  # singular: disconnected or collinear fixed effects
            raise ValueError(
                "fixed effects are not identified on the untreated observations (disconnected or collinear "
                "groups of corridors and years)"
            ) from exc

        def solve(b: np.ndarray) -> np.ndarray:
            return lu.solve(np.asarray(b, dtype=float))

        return solve


@dataclass
class SparseFit:
    """Least squares or Poisson fit of ``y`` on ``[X, fixed-effect dummies]`` (sparse design ``W``).

    ``theta[:k]`` are the coefficients on ``X``; ``resid`` = y - fitted (Poisson: y - mu);
    ``solve`` applies the inverse Hessian (``W'W`` or ``W' diag(mu) W``; ``hess_weights``
    is None or ``mu``).
    """

    theta: np.ndarray
    fitted: np.ndarray
    resid: np.ndarray
    W: sp.csr_matrix
    k: int
    solve: Callable[[np.ndarray], np.ndarray]
    converged: bool = True
    n_iter: int = 0
    hess_weights: np.ndarray | None = None

    def coef_scores(self) -> np.ndarray:
        """Per-observation influence on the X coefficients: (W H^-1 E_k)_i * resid_i, shape (n, k).

        With these as scores and an identity bread, any sandwich estimator of the X
        block follows (the fixed effects are profiled out exactly).
        """
        return np.asarray(self.W @ self._coef_rows()) * self.resid[:, None]

    def _coef_rows(self) -> np.ndarray:
        """``H^-1 E_k`` (p, k): the columns of the inverse Hessian belonging to the X coefficients."""
        E = np.zeros((self.W.shape[1], self.k))
        E[np.arange(self.k), np.arange(self.k)] = 1.0
        return self.solve(E)

    def coef_score_meat(self, cluster: np.ndarray | None = None) -> np.ndarray:
        """Meat of the sandwich for the X coefficients, without the (n, k) score matrix.

        With ``cluster`` (integer codes 0..G-1): ``sum_g s_g s_g'`` where ``s_g`` sums the
        scores of :meth:`coef_scores` within cluster ``g``, computed as
        ``(S' diag(resid) W) H^-1 E_k`` with ``S`` the sparse cluster indicator (G x p work);
        without: ``sum_i s_i s_i' = A' (W' diag(resid^2) W) A`` with ``A = H^-1 E_k``
        (p x k work). Memory grows with the number of parameters, not rows x coefficients.
        """
        if cluster is None:
            A = self._coef_rows()
            WrW = (self.W.T @ (sp.diags(self.resid**2) @ self.W)).tocsr()
            return A.T @ np.asarray(WrW @ A)
        codes = np.asarray(cluster)
        if codes.size != self.resid.size:
            raise ValueError(f"cluster has {codes.size} rows, the fit has {self.resid.size}")
        n_groups = int(codes.max()) + 1 if codes.size else 0
        S = sp.csr_matrix((self.resid, (codes, np.arange(codes.size))), shape=(n_groups, codes.size))
        M = (S @ self.W).tocsc()  # (G, p): cluster sums of resid * W
        C = self._cluster_sums_by_schur(M)
        if C is None:
            C = np.asarray(M @ self._coef_rows())
        return C.T @ C

    def _diagonal_block(self) -> int:
        """Number of fixed-effect columns right after the ``k`` X columns that no row shares
        (the levels of one fixed effect, e.g. corridors): their Hessian block is diagonal."""
        Wf = self.W[:, self.k:].tocsr()
        Wf.sort_indices()
        two = np.diff(Wf.indptr) >= 2
        if not two.any():
            return Wf.shape[1]
        return int(Wf.indices[Wf.indptr[:-1][two] + 1].min())

    def _cluster_sums_by_schur(self, M: sp.csc_matrix, max_rest: int = 3000) -> np.ndarray | None:
        """``M H^-1 E_k`` by eliminating a diagonal block ``D`` of the Hessian exactly.

        With ``H = [[diag(h), B'], [B, K]]`` (``D`` first, the rest ``R`` holding the X
        columns), ``H^-1 E_k = [-diag(1/h) B' ; I] S^-1 E_k`` with the Schur complement
        ``S = K - B diag(1/h) B'`` (dense, size of ``R``), so
        ``M H^-1 E_k = (M_R - M_D diag(1/h) B') S^-1 E_k``: sparse products and a small
        dense solve, no (parameters x k) matrix. None when there is no such block or ``R``
        is large (the caller then solves with the sparse factor).
        """
        k, p = self.k, self.W.shape[1]
        nd = self._diagonal_block()
        m = p - nd
        if nd == 0 or m > max_rest:
            return None
        w = self.hess_weights
        H = (self.W.T @ (self.W if w is None else sp.diags(w) @ self.W)).tocsc()
        d_idx = np.arange(k, k + nd)
        r_idx = np.r_[np.arange(k), np.arange(k + nd, p)]
        h = H.diagonal()[k:k + nd]
        if not np.all(h > 0):
            return None
        B = H[:, d_idx].tocsr()[r_idx]  # (m, nd)
        Bh = (B @ sp.diags(1.0 / h)).tocsr()
        schur = H[:, r_idx].tocsr()[r_idx].toarray() - (Bh @ B.T).toarray()
        E = np.zeros((m, k))
        E[np.arange(k), np.arange(k)] = 1.0
        SX = np.linalg.solve(schur, E)
        T = M[:, r_idx].toarray() - (M[:, d_idx] @ Bh.T).toarray()
        return T @ SX


def sparse_fit(
    y: np.ndarray,
    X: sp.spmatrix | np.ndarray,
    Zfe: sp.csr_matrix,
    model: str = "linear",
    offset: np.ndarray | None = None,
    tol: float = 1e-10,
    maxiter: int = 100,
) -> SparseFit:
    """Fit ``y ~ X + fixed effects`` by sparse normal equations (linear) or Newton (Poisson).

    Exact (no iterative demeaning); suited to many sparse regressors such as cohort x
    relative-period indicators. Raises ValueError if the design is rank deficient.
    """
    Xs = sp.csr_matrix(X)
    W = sp.hstack([Xs, Zfe], format="csr")
    k = Xs.shape[1]

    def factor(w: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray]:
        H = (W.T @ (W if w is None else sp.diags(w) @ W)).tocsc()
        try:
            lu = spla.splu(H)
        except RuntimeError as exc:
            raise ValueError("regressors are collinear with the fixed effects (singular design)") from exc
        return lambda b: lu.solve(np.asarray(b, dtype=float))

    if model == "linear":
        solve = factor(None)
        theta = solve(W.T @ y)
        fitted = W @ theta
        return SparseFit(theta=theta, fitted=fitted, resid=y - fitted, W=W, k=k, solve=solve)
    if model != "poisson":
        raise ValueError(f"model={model!r}: expected 'linear' or 'poisson'")
    off = np.zeros(y.size) if offset is None else offset
    theta = np.zeros(W.shape[1])
    # start values: least squares of log((y + mean) / exposure) on W
    z = np.log((y + y.mean()) / 2.0 + 1e-12) - off
    theta = factor(None)(W.T @ z)
    converged, it = False, 0
    ll_old = -np.inf
    for it in range(1, maxiter + 1):
        eta = off + W @ theta
        mu = np.exp(eta)
        ll = float(np.sum(y * eta - mu))
        step = factor(mu)(W.T @ (y - mu))
        t = 1.0
        while t > 1e-8:
            eta_n = off + W @ (theta + t * step)
            if float(np.sum(y * eta_n - np.exp(eta_n))) >= ll - 1e-12 * abs(ll):
                break
            t /= 2
        theta = theta + t * step
        if np.max(np.abs(t * step)) < tol or abs(ll - ll_old) <= 1e-14 * abs(ll):
            converged = True
            break
        ll_old = ll
    mu = np.exp(off + W @ theta)
    return SparseFit(theta=theta, fitted=mu, resid=y - mu, W=W, k=k, solve=factor(mu), converged=converged,
                     n_iter=it, hess_weights=mu)


def _parse_horizons(horizons: int | Sequence[int] | None, rel_treated: np.ndarray) -> list[int]:
    avail = sorted(int(k) for k in np.unique(rel_treated))
    if horizons is None:
        return avail
    if isinstance(horizons, (int, np.integer)):
        if horizons < 0:
            raise ValueError(f"horizons={horizons}: must be >= 0")
        wanted = list(range(int(horizons) + 1))
    else:
        wanted = [int(h) for h in horizons]
        if any(h < 0 for h in wanted):
            raise ValueError(f"horizons={horizons}: imputation effects exist for years since adoption >= 0 only")
    missing = [h for h in wanted if h not in avail]
    if missing:
        logger.info("horizons %s have no treated observations and are skipped", missing)
    return [h for h in wanted if h in avail]


def _cell_residuals(num: np.ndarray, den: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Treated residuals ``num - R_cell * den`` with ``R_cell = sum(num) / sum(den)`` in the row's cell,
    divided by ``sqrt(1 - h)`` with leverage ``h = den / sum_cell(den)`` (HC2-type).

    Centring on the cell average keeps effect heterogeneity across cells out of the
    variance (BJS's conservative estimator averages effects within groups); the
    leverage correction undoes the shrinkage of residuals in small cells or cells
    dominated by one large corridor. Rows that (nearly) make up their whole cell are
    centred on the pooled ratio over all treated rows instead.
    """
    Sc = np.bincount(cell, weights=num)
    Dc = np.bincount(cell, weights=den)
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.where(Dc > 0, Sc / np.where(Dc > 0, Dc, 1.0), 0.0)[cell]
        h = np.where(Dc[cell] > 0, den / np.where(Dc[cell] > 0, Dc[cell], 1.0), 1.0)
    e = (num - R * den) / np.sqrt(np.clip(1.0 - h, 1e-300, None))
    alone = h > 1.0 - 1e-6
    if alone.any():
        tot = den.sum()
        Rp = num.sum() / tot if tot > 0 else 0.0
        hp = den / tot if tot > 0 else np.ones_like(den)
        e_p = (num - Rp * den) / np.sqrt(np.clip(1.0 - hp, 1e-6, None))
        e = np.where(alone, e_p, e)
    return e


def _cluster_sums(psi: np.ndarray, cluster: np.ndarray | None) -> np.ndarray:
    """Per-cluster sums of influence values (columns = estimands); rows = observations if no cluster."""
    if cluster is None:
        return psi
    G = int(cluster.max()) + 1
    return np.column_stack([np.bincount(cluster, weights=psi[:, j], minlength=G) for j in range(psi.shape[1])])


def _pretrend_leads(
    s: DidSample, fe_obj: SparseFE, untr: np.ndarray, K: int, model: str, alpha: float
) -> tuple[pd.DataFrame, np.ndarray, Any]:
    """BJS Test 1: lead indicators (K years before adoption) in the untreated-outcome model."""
    from returnstudy.inference.cluster import vcov_details
    from returnstudy.results import WaldTest

    if K < 1:
        raise ValueError(f"pretrends={K}: must be >= 1")
    idx = np.flatnonzero(untr)
    rel = s.rel[idx]
    leads = [k for k in range(-K, 0) if np.any(rel == k)]
    y0 = s.y[idx]
    if model == "poisson":
        leads = [k for k in leads if y0[rel == k].sum() > 0]
    if not leads:
        raise ValueError(f"pretrends={K}: no untreated observations in the {K} years before adoption")
    X = np.column_stack([(rel == k).astype(float) for k in leads])
    Z0 = fe_obj.Z[idx]
    keep_cols = np.asarray(Z0.sum(axis=0)).ravel() > 0
    Z0 = Z0[:, np.flatnonzero(keep_cols)]
    off = np.log(s.exposure[idx]) if model == "poisson" else None
    fit = sparse_fit(y0, X, Z0, model=model, offset=off)
    cl = [pd.factorize(s.cluster[idx])[0]] if s.cluster is not None else []
    from returnstudy.models._fe import FixedEffects

    fx = FixedEffects([pd.factorize(c[idx])[0] for c in s.fe_codes])
    df_k = len(leads) + fx.n_absorbed(cl if cl else None)
    V, det = vcov_details(fit.coef_scores(), None, cl, np.eye(len(leads)), "fixest-default",
                          vcov_type="cluster" if cl else "hetero", df_k=df_k,
                          df_resid=idx.size - len(leads) - Z0.shape[1], on_unidentified="nan")
    b = fit.theta[: len(leads)]
    tab = make_table(b, np.sqrt(np.diag(V)), index=leads, df=None, alpha=alpha, poisson=model == "poisson",
                     index_name="rel_period")
    tab["n_obs"] = X.sum(axis=0).astype(int)
    if not det.identified:
        return tab, V, f"BJS pre-trend test not available: {det.note}"
    W = float(b @ np.linalg.pinv(V) @ b)
    q = int(np.linalg.matrix_rank(V))
    from scipy import stats as _st

    wald = WaldTest(statistic=W, df_num=q, df_denom=None, p_value=float(_st.chi2.sf(W, max(q, 1))),
                    f_statistic=W / max(q, 1), hypothesis=f"BJS pre-trend test: leads {leads} jointly zero")
    return tab, V, wald


def did_imputation(
    panel: pd.DataFrame,
    treatment: str | None = None,
    model: str = "linear",
    outcome: str | None = None,
    exposure: str = "orders",
    event_time: bool = False,
    horizons: int | Sequence[int] | None = None,
    fe: Sequence[str] | None = None,
    cluster: str | None = "citizen",
    min_untreated_periods: int = 1,
    pretrends: int = 0,
    alpha: float = 0.05,
    unit: str | None = None,
    time: str | None = None,
    cohort: str | None = None,
    nonabsorbing: str = "drop",
) -> EstimationResult:
    """Borusyak-Jaravel-Spiess imputation estimator of the ATT of a staggered treatment.

    Parameters
    ----------
    panel : long panel, one row per unit and period (default: the corridor-year panel with
        the treatment contract columns).
    treatment : binary absorbing treatment column (adoption year from ``{treatment}_cohort``);
        default ``bilateral_binding``, or with ``cohort=`` a label for the effect
        (``"treated"``) unless it names an existing 0/1 column.
    unit, time : unit and period columns (default ``corridor`` and ``year``).
    cohort : column with each unit's first treated period (0 / NaN: never treated), e.g.
        ``first.treat``; default ``{treatment}_cohort``.
    model : ``"linear"`` (outcome default ``return_rate``) or ``"poisson"`` (outcome
        default ``returns`` with offset ``log(exposure)``).
    event_time : if True, ``.table`` is indexed by years since adoption (int) and the
        overall ATT is in ``info["overall"]``; otherwise one row ``term == treatment``.
    horizons : event times to report (int H: 0..H; default all with treated data).
    fe : fixed effects of the untreated-outcome model (columns or ``a^b`` interactions);
        default unit and time effects ``(unit, time)``.
    cluster : one-way cluster variable for the standard errors (default ``citizen``;
        None: by observation).
    min_untreated_periods : treated units with fewer untreated periods are dropped.
    pretrends : number of leads K for the BJS pre-trend test (Test 1): the untreated-outcome
        model is re-fitted on untreated rows with indicators for the K years before adoption;
        their coefficients (relative periods -K..-1, against earlier untreated years) join the
        event-time table and their joint Wald test (cluster-robust, CRV1) is in
        ``info["pretrend_test"]``. Leads have zero covariance with the post-period effects in
        ``vcov`` (they come from a separate regression).
    nonabsorbing : units whose ``treatment`` column switches off inside the sample (no event
        time after the switch-off): ``"drop"`` (default; rows counted in
        ``info["dropped"]["non-absorbing treatment"]``, units named in the notes) or ``"raise"``.
    """
    s, treatment, outcome, unit, time, fe, nonabsorbing_drop = staggered_sample(
        panel, treatment, outcome, model, exposure, fe, cluster, unit, time, cohort, nonabsorbing, "did_imputation")
    if min_untreated_periods < 1:
        raise ValueError("min_untreated_periods must be >= 1")
    # corridors with too few untreated years
    n_untr = np.bincount(s.unit, weights=(~s.treated).astype(float))
    ever = np.bincount(s.unit, weights=s.treated.astype(float)) > 0
    bad_unit = ever & (n_untr < min_untreated_periods)
    if bad_unit.any():
        s = s.subset(~bad_unit[s.unit], f"treated corridors with < {min_untreated_periods} untreated year(s)")
    if model == "poisson":
        # fixed-effect groups with only zero untreated outcomes: effect -inf, drop their rows
        while True:
            drop = np.zeros(s.y.size, dtype=bool)
            for c in s.fe_codes:
                pos = np.bincount(c, weights=((~s.treated) & (s.y > 0)).astype(float), minlength=int(c.max()) + 1)
                untr = np.bincount(c, weights=(~s.treated).astype(float), minlength=int(c.max()) + 1)
                drop |= (untr[c] > 0) & (pos[c] == 0)
            if not drop.any():
                break
            s = s.subset(~drop, "fixed-effect groups with zero untreated outcomes (effect not identified)")
            s.fe_codes = [pd.factorize(c)[0] for c in s.fe_codes]
    fe_obj = SparseFE([pd.factorize(c)[0] for c in s.fe_codes], ~s.treated)
    if not fe_obj.ok.all():
        s = s.subset(fe_obj.ok, "treated rows whose corridor or year has no untreated observation")
        fe_obj = SparseFE([pd.factorize(c)[0] for c in s.fe_codes], ~s.treated)
    if s.treated.sum() == 0:
        raise ValueError(f"no treated observations of {treatment!r} left to impute")
    if (~s.treated).sum() == 0:
        raise ValueError("no untreated observations to fit the untreated-outcome model")
    if s.cluster is not None:
        s.cluster = pd.factorize(s.cluster)[0]
    untr, tr = ~s.treated, s.treated
    Z = fe_obj.Z
    Z0, Z1 = Z[np.flatnonzero(untr)], Z[np.flatnonzero(tr)]
    rel_tr = s.rel[tr]
    hz = _parse_horizons(horizons, rel_tr) if event_time else []
    # estimands: overall + horizons (masks over treated rows)
    names: list[Any] = [treatment] + hz
    masks = [np.ones(tr.sum(), dtype=bool)] + [rel_tr == h for h in hz]
    # cells for centring treated residuals: cohort x event time
    cell = pd.factorize(pd.Series(s.cohort[tr]).astype(str) + "|" + pd.Series(rel_tr).astype(str))[0]
    n = s.y.size
    psi = np.zeros((n, len(names)))
    est = np.zeros(len(names))
    info_extra: dict[str, Any] = {}
    if model == "linear":
        solve = fe_obj.factor(untr)
        theta = solve(Z0.T @ s.y[untr])
        y0hat = Z @ theta
        tau = s.y[tr] - y0hat[tr]
        resid0 = s.y[untr] - y0hat[untr]
        eps1 = _cell_residuals(tau, np.ones_like(tau), cell)
        V1 = np.zeros((tr.sum(), len(names)))
        for j, m in enumerate(masks):
            V1[m, j] = 1.0 / m.sum()
            est[j] = tau[m].mean()
        V0 = -(Z0 @ solve(Z1.T @ V1))  # untreated weights, (n0, K)
        psi[untr] = V0 * resid0[:, None]
        psi[tr] = V1 * eps1[:, None]
        weights_all = np.zeros((n, len(names)))
        weights_all[untr], weights_all[tr] = V0, V1
        info_extra["vcov_description"] = (
            "BJS conservative clustered variance (treated residuals centred on cohort x event-time means, HC2-type leverage correction)"
        )
        boot = {"kind": "imputation_linear", "y": s.y, "D": tr.astype(float), "weights": weights_all, "Z": Z,
                "names": names, "cluster": s.cluster}
        converged, n_iter = True, 0
    else:
        off = np.log(s.exposure)
        fit0 = sparse_fit(s.y[untr], sp.csr_matrix((int(untr.sum()), 0)), Z0, model="poisson", offset=off[untr])
        theta, converged, n_iter = fit0.theta, fit0.converged, fit0.n_iter
        if not converged:
            logger.warning("did_imputation: Poisson untreated model did not converge in %d iterations", n_iter)
        mu_all = np.exp(off + Z @ theta)
        mu0_tr = mu_all[tr]
        y_tr = s.y[tr]
        solve = fe_obj.factor(untr, w=mu_all[untr])
        eps1 = _cell_residuals(y_tr, mu0_tr, cell)
        resid0 = s.y[untr] - mu_all[untr]
        for j, m in enumerate(masks):
            S, M = y_tr[m].sum(), mu0_tr[m].sum()
            est[j] = np.log(S / M) if S > 0 else -np.inf
            psi_t = np.zeros(tr.sum())
            psi_t[m] = eps1[m] / S
            g = Z1[np.flatnonzero(m)].T @ mu0_tr[m]
            u = Z0 @ solve(g)
            psi[tr, j] = psi_t
            psi[untr, j] = -u * resid0 / M
        info_extra["vcov_description"] = (
            "clustered delta-method influence functions for log(sum Y / sum mu0), including the estimation of "
            "the untreated Poisson fixed effects; treated term centred on cohort x event-time ratios with HC2-type leverage correction"
        )
        info_extra["exposure"] = f"log({exposure}) offset"
        boot = None
    C = _cluster_sums(psi, s.cluster)
    vcov = C.T @ C
    # untreated-model residual degrees of freedom and clusters: with none left (e.g. a 2x2)
    # every influence value is zero and the variance is not identified
    var_note = variance_not_identified(
        int(untr.sum()), int(fe_obj.p), [int(C.shape[0])] if s.cluster is not None else []
    )
    if var_note is not None:
        vcov = np.full_like(vcov, np.nan)
        logger.info("did_imputation: %s", var_note)
    se = np.sqrt(np.diag(vcov))
    info = nonabsorbing_drop.record(s.info())
    info.update(info_extra)
    info.update(
        {
            "estimator": "imputation (Borusyak, Jaravel & Spiess)",
            "model": model,
            "outcome": outcome,
            "treatment": treatment,
            "control_group": "untreated corridor-years: never treated and not yet treated (D = 0)",
            "reference_period": "all untreated years of each corridor (imputation, no single base year)",
            "small_sample": "none",
            "vcov_type": "cluster" if s.cluster is not None else "hetero",
            "n_untreated_obs": int(untr.sum()),
        }
    )
    if model == "poisson":
        info["converged"], info["n_iter"] = bool(converged), int(n_iter)
    if s.attrs.get("synthetic"):
        info.setdefault("notes", []).append("SYNTHETIC data (simulate_panel)")
    if var_note is not None:
        info.setdefault("notes", []).append(var_note + " (untreated-outcome model)")
        info["vcov_description"] += "; NOT IDENTIFIED"
    poisson = model == "poisson"
    full = make_table(est, se, index=names, df=None, alpha=alpha, poisson=poisson)
    n_obs_h = [int(m.sum()) for m in masks]
    full["n_treated"] = n_obs_h
    if event_time:
        table = full.iloc[1:].copy()
        table.index = pd.Index([int(h) for h in hz], name="rel_period")
        info["overall"] = full.iloc[0].to_dict()
    else:
        table = full.iloc[:1].copy()
    if pretrends:
        lead_tab, lead_V, wald = _pretrend_leads(s, fe_obj, untr, int(pretrends), model, alpha)
        if event_time:
            table = pd.concat([lead_tab.drop(columns=["n_obs"]).assign(n_treated=lead_tab["n_obs"]), table])
            table.index.name = "rel_period"
        names = list(lead_tab.index) + names
        est = np.concatenate([lead_tab["estimate"].to_numpy(), est])
        k = len(lead_tab)
        V2 = np.zeros((k + vcov.shape[0], k + vcov.shape[0]))
        V2[:k, :k], V2[k:, k:] = lead_V, vcov
        vcov = V2
        info["pretrend_test"] = wald
        info["pretrend_leads"] = lead_tab
    params = pd.Series(est, index=names)
    return EstimationResult(
        model=f"did_imputation ({model})",
        params=params,
        vcov=pd.DataFrame(vcov, index=names, columns=names),
        table=table,
        info=info,
        design={"outcome": outcome, "treatment": treatment, "fixed_effects": list(fe), "cluster": cluster,
                "estimator": "did_imputation"},
        df_t=None,
        alpha=alpha,
        extra={
            "bootstrap": boot,
            "call": {"func": did_imputation, "panel": panel,
                     "kwargs": {"treatment": treatment, "model": model, "outcome": outcome, "exposure": exposure,
                                "event_time": event_time, "horizons": horizons, "fe": tuple(fe), "cluster": cluster,
                                "min_untreated_periods": min_untreated_periods, "pretrends": pretrends,
                                "alpha": alpha, "unit": unit, "time": time, "cohort": cohort,
                                "nonabsorbing": nonabsorbing}},
            "influence": psi,
            "sample_index": s.frame.index,
        },
    )
