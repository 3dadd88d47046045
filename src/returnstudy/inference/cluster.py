"""Sandwich variance estimators: iid, heteroskedasticity-robust and cluster-robust.

``V = c * bread @ meat @ bread`` with ``bread`` the inverse Hessian (for OLS
``(X~' W X~)^-1`` on demeaned regressors, for PPML ``(X~' diag(mu) X~)^-1``) and
``meat`` the outer product of score sums within clusters.

Multi-way clustering follows Cameron, Gelbach & Miller (2011): with cluster variables
``c_1..c_m`` the estimator adds the one-way estimators of every intersection of an odd
number of variables and subtracts those of an even number (two-way: V_1 + V_2 - V_12).
If the result is not positive semi-definite its negative eigenvalues are set to zero
(CGM's fix) and this is reported: :class:`VcovDetails` records how many eigenvalues were
clipped, the smallest eigenvalue before clipping and the coefficients whose unclipped
variance was negative (their clipped standard errors are an artefact of the fix), and
estimation results carry this in a note and in ``info["vcov_eigen_fix"]``.

Small-sample corrections (``small_sample``):

* ``"fixest-default"`` (pyfixest/fixest defaults): ``(n-1)/(n-K)`` (``n/(n-K)`` for
  "hetero") times, for clustered errors, ``G/(G-1)`` with ``G = min`` over the cluster
  variables applied to every CGM term. ``K`` is ``df_k``: the slope parameters plus the
  absorbed fixed effects not nested in a cluster (see ``FixedEffects.n_absorbed``).
* ``"conventional"``: as above but every CGM term uses its own ``G_S/(G_S-1)``.
* ``"none"``: no correction.
* a dict ``{"k_adj": bool, "G_adj": bool, "G_df": "min"|"conventional"}``.

t-statistics for linear models use ``min(G) - 1`` degrees of freedom when clustered
(``n - K`` otherwise); see :func:`vcov_details`.

The variance is not identified when the fit leaves no residual degrees of freedom
(e.g. a 2x2 difference-in-differences: four observations, four parameters, residuals
identically zero) or when a cluster dimension has fewer than two clusters.
:func:`variance_not_identified` says why; ``vcov_details(..., on_unidentified="nan")``
then returns a NaN matrix instead of raising.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "VcovDetails", "cluster_vcov", "cluster_codes", "meat_clustered", "variance_not_identified", "vcov_details",
]

_VCOV_TYPES = ("cluster", "hetero", "iid")


def cluster_codes(values: Any) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 of a cluster variable (raises on missing values)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"cluster variable must be 1-D, got shape {arr.shape}")
    codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError(f"cluster variable has {int((codes < 0).sum())} missing values")
    return codes.astype(np.intp), len(uniques)


def _intersect(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
    out = np.zeros(len(columns[0]), dtype=np.int64)
    for col in columns:
        c, g = cluster_codes(col)
        out = out * g + c
        out, _ = cluster_codes(out)
    return cluster_codes(out)


def meat_clustered(scores: np.ndarray, codes: np.ndarray, n_groups: int | None = None) -> np.ndarray:
    """sum_g (sum_{i in g} s_i)(sum_{i in g} s_i)' for integer cluster codes.

    ``scores`` may also be implicit (an object with ``cluster_sums(codes, n_groups)``, e.g.
    :class:`returnstudy.models._sparse_fit.ImplicitScores`)."""
    if n_groups is None:
        n_groups = int(codes.max()) + 1 if codes.size else 0
    if hasattr(scores, "cluster_sums"):
        S = scores.cluster_sums(codes, n_groups)
        return S.T @ S
    scores = np.asarray(scores, dtype=float)
    k = scores.shape[1]
    S = np.empty((n_groups, k))
    for j in range(k):
        S[:, j] = np.bincount(codes, weights=scores[:, j], minlength=n_groups)
    return S.T @ S


@dataclass
class VcovDetails:
    """What was computed: type, clusters per dimension, correction factors, t degrees of freedom."""

    vcov_type: str
    n_obs: int
    df_k: int
    n_clusters: list[int] = field(default_factory=list)
    cluster_terms: list[tuple[int, ...]] = field(default_factory=list)
    factors: list[float] = field(default_factory=list)
    small_sample: str = "fixest-default"
    df_t: float = np.inf
    eigen_fix: bool = False
    identified: bool = True
    note: str = ""
    #: multi-way only, when ``eigen_fix``: negative eigenvalues set to zero, the smallest
    #: eigenvalue before clipping, and the coefficients (positions) whose variance before
    #: clipping was negative (their standard errors exist only because of the clipping)
    n_clipped: int = 0
    min_eigenvalue: float = float("nan")
    negative_variances: list[int] = field(default_factory=list)

    def eigen_fix_note(self, names: Sequence[str] | None = None) -> str:
        """Sentence for a result's notes when the multi-way variance was clipped ('' otherwise).

        ``names`` label the coefficients (default: their positions).
        """
        if not self.eigen_fix:
            return ""
        s = (f"two-way (CGM) cluster covariance V_1 + V_2 - V_12 was not positive semi-definite: "
             f"{self.n_clipped} negative eigenvalue(s) set to zero (smallest {self.min_eigenvalue:.3g})")
        if self.negative_variances:
            lab = [str(names[i]) if names is not None else str(i) for i in self.negative_variances]
            s += (f"; the unclipped variance of {', '.join(lab)} was negative, so its standard error "
                  "comes from the clipping alone and is not a reliable measure of uncertainty")
        else:
            s += "; standard errors are those of the clipped matrix"
        return s

    def describe(self) -> str:
        """One-line human-readable description of the variance estimator."""
        if self.vcov_type == "iid":
            s = "iid"
        elif self.vcov_type == "hetero":
            s = "heteroskedasticity-robust (HC1)"
        else:
            way = "one-way" if len(self.n_clusters) == 1 else f"{len(self.n_clusters)}-way (CGM)"
            s = f"cluster-robust {way}, clusters={self.n_clusters}"
        s += f"; small-sample: {self.small_sample}"
        if self.eigen_fix:
            s += f"; {self.n_clipped} negative eigenvalue(s) set to 0 (smallest {self.min_eigenvalue:.3g})"
        if not self.identified:
            s += "; NOT IDENTIFIED (see notes)"
        return s


def variance_not_identified(
    n_obs: int, n_params: int, n_clusters: Sequence[int] = (), df_k: int | None = None
) -> str | None:
    """Why a sandwich variance cannot be estimated, or None if it can.

    ``n_params`` counts all estimated parameters (slopes plus the rank of the fixed
    effects), so ``n_obs - n_params`` is the residual degrees of freedom; ``n_clusters``
    lists the clusters per dimension (empty: not clustered); ``df_k`` is the parameter
    count of the small-sample factor (n-1)/(n-K), which must stay below ``n_obs``.
    """
    reasons = []
    if n_obs - n_params <= 0:
        reasons.append(f"no residual degrees of freedom ({n_obs} observations, {n_params} parameters)")
    elif df_k is not None and n_obs - df_k <= 0:
        reasons.append(f"degrees of freedom used ({df_k}) not below the number of observations ({n_obs})")
    if len(n_clusters) and min(n_clusters) < 2:
        reasons.append(f"too few clusters ({list(n_clusters)}; at least 2 per dimension needed)")
    if not reasons:
        return None
    return "variance not identified: " + "; ".join(reasons) + "; standard errors, intervals and p-values are NaN"


def _parse_ssc(small_sample: str | Mapping[str, Any]) -> tuple[bool, bool, str, str]:
    if isinstance(small_sample, Mapping):
        unknown = set(small_sample) - {"k_adj", "G_adj", "G_df"}
        if unknown:
            raise ValueError(f"unknown small_sample keys {sorted(unknown)}")
        k_adj = bool(small_sample.get("k_adj", True))
        g_adj = bool(small_sample.get("G_adj", True))
        g_df = str(small_sample.get("G_df", "min"))
        if g_df not in ("min", "conventional"):
            raise ValueError(f"small_sample['G_df'] must be 'min' or 'conventional', got {g_df!r}")
        label = f"k_adj={k_adj}, G_adj={g_adj}, G_df={g_df}"
        return k_adj, g_adj, g_df, label
    if small_sample == "fixest-default":
        return True, True, "min", "(n-1)/(n-K) x G/(G-1), G=min over cluster dimensions"
    if small_sample == "conventional":
        return True, True, "conventional", "(n-1)/(n-K) x G_j/(G_j-1) for each cluster term"
    if small_sample in ("none", None):
        return False, False, "min", "none"
    raise ValueError(
        f"small_sample must be 'fixest-default', 'conventional', 'none' or a dict, got {small_sample!r}"
    )


def vcov_details(
    scores_or_X: np.ndarray,
    resid: np.ndarray | None,
    clusters: Sequence[np.ndarray] | None,
    bread: np.ndarray,
    small_sample: str | Mapping[str, Any] = "fixest-default",
    *,
    vcov_type: str | None = None,
    df_k: int | None = None,
    scale: float | None = None,
    eigen_fix: bool = True,
    df_resid: int | None = None,
    on_unidentified: str = "raise",
) -> tuple[np.ndarray, VcovDetails]:
    """Like :func:`cluster_vcov` but also return a :class:`VcovDetails` record.

    ``df_resid``: residual degrees of freedom of the fit (default ``n - df_k``).
    ``on_unidentified="nan"``: if the variance is not identified (no residual degrees of
    freedom or fewer than two clusters, see :func:`variance_not_identified`) return a
    NaN matrix and a record with ``identified=False`` and the reason in ``note``;
    ``"raise"`` (default) raises ``ValueError``.
    ``scores_or_X`` may be implicit scores (``shape``, ``cluster_sums(codes, g)`` and ``cross()``,
    e.g. :class:`returnstudy.models._sparse_fit.ImplicitScores`; ``resid`` must then be None).
    """
    if on_unidentified not in ("raise", "nan"):
        raise ValueError(f"on_unidentified must be 'raise' or 'nan', got {on_unidentified!r}")
    implicit = hasattr(scores_or_X, "cluster_sums")
    if implicit and resid is not None:
        raise ValueError("implicit scores (cluster_sums) take resid=None")
    A = scores_or_X if implicit else np.asarray(scores_or_X, dtype=float)
    if A.ndim == 1:
        A = A[:, None]
    n, k = A.shape
    bread = np.asarray(bread, dtype=float).reshape(k, k)
    if resid is not None:
        u = np.asarray(resid, dtype=float).ravel()
        if u.size != n:
            raise ValueError(f"resid has {u.size} rows, scores_or_X has {n}")
        scores = A * u[:, None]
    else:
        u = None
        scores = A
    clusters = [] if clusters is None else list(clusters)
    if vcov_type is None:
        vcov_type = "cluster" if clusters else "hetero"
    if vcov_type not in _VCOV_TYPES:
        raise ValueError(f"vcov_type must be one of {_VCOV_TYPES}, got {vcov_type!r}")
    if vcov_type == "cluster" and not clusters:
        raise ValueError("vcov_type='cluster' needs at least one cluster variable")
    k_adj, g_adj, g_df, label = _parse_ssc(small_sample)
    dfk = k if df_k is None else int(df_k)
    if on_unidentified == "nan":
        G_all = [cluster_codes(c)[1] for c in clusters] if vcov_type == "cluster" else []
        n_par = n - (n - dfk if df_resid is None else int(df_resid))
        note = variance_not_identified(n, n_par, G_all, df_k=dfk)
        if note is not None:
            logger.info(note)
            if G_all and min(G_all) >= 2:
                df_t = float(min(G_all) - 1)
            else:
                df_t = float(n - dfk) if n - dfk > 0 else np.nan
            details = VcovDetails(vcov_type=vcov_type, n_obs=n, df_k=dfk, n_clusters=G_all, small_sample=label,
                                  df_t=df_t, identified=False, note=note)
            return np.full((k, k), np.nan), details
    if dfk >= n:
        raise ValueError(f"degrees of freedom used ({dfk}) not below the number of observations ({n})")
    details = VcovDetails(vcov_type=vcov_type, n_obs=n, df_k=dfk, small_sample=label)

    if vcov_type == "iid":
        if scale is None:
            if u is None:
                raise ValueError("iid variance needs resid (or an explicit scale)")
            scale = float(u @ u) / (n - 1)
        adj = (n - 1) / (n - dfk) if k_adj else 1.0
        details.factors = [adj]
        details.df_t = n - dfk
        return adj * scale * bread, details

    if vcov_type == "hetero":
        adj = n / (n - dfk) if k_adj else 1.0
        details.factors = [adj]
        details.df_t = n - dfk
        meat = scores.cross() if implicit else scores.T @ scores
        return adj * bread @ meat @ bread, details

    for c in clusters:
        if len(c) != n:
            raise ValueError(f"cluster variable has {len(c)} rows, expected {n}")
    base = [cluster_codes(c) for c in clusters]
    G = [g for _, g in base]
    if min(G) < 2:
        raise ValueError(f"need at least 2 clusters per dimension, got {G}")
    details.n_clusters = G
    adj_k = (n - 1) / (n - dfk) if k_adj else 1.0
    V = np.zeros((k, k))
    m = len(base)
    for r in range(1, m + 1):
        sign = 1.0 if r % 2 == 1 else -1.0
        for combo in itertools.combinations(range(m), r):
            if r == 1:
                codes, g = base[combo[0]]
            else:
                codes, g = _intersect([base[j][0] for j in combo])
            if g_adj:
                gg = min(G) if g_df == "min" else g
                fac = gg / (gg - 1) if gg > 1 else 1.0
            else:
                fac = 1.0
            fac *= adj_k
            details.cluster_terms.append(combo)
            details.factors.append(sign * fac)
            V += sign * fac * (bread @ meat_clustered(scores, codes, g) @ bread)
    V = (V + V.T) / 2.0
    details.df_t = min(G) - 1
    if m > 1 and eigen_fix:
        vals, vecs = np.linalg.eigh(V)
        if vals.min() < 0:
            details.eigen_fix = True
            details.n_clipped = int((vals < 0).sum())
            details.min_eigenvalue = float(vals.min())
            details.negative_variances = [int(i) for i in np.flatnonzero(np.diag(V) < 0)]
            logger.info("multi-way cluster variance not PSD; setting %d negative eigenvalue(s) to 0 (smallest %.3g)",
                        details.n_clipped, details.min_eigenvalue)
            V = (vecs * np.clip(vals, 0, None)) @ vecs.T
    return V, details


def cluster_vcov(
    scores_or_X: np.ndarray,
    resid: np.ndarray | None,
    clusters: Sequence[np.ndarray] | None,
    bread: np.ndarray,
    small_sample: str | Mapping[str, Any] = "fixest-default",
    *,
    vcov_type: str | None = None,
    df_k: int | None = None,
    scale: float | None = None,
    eigen_fix: bool = True,
) -> np.ndarray:
    """Sandwich variance of coefficient estimates.

    Parameters
    ----------
    scores_or_X
        (n, k) per-observation score contributions, or regressors when ``resid`` is given
        (scores are then ``X * resid[:, None]``; for weighted OLS pass ``X * w``).
    resid
        Residuals, or None when ``scores_or_X`` already holds scores.
    clusters
        List of 1-D cluster label arrays (one per clustering dimension); empty/None
        means heteroskedasticity-robust unless ``vcov_type="iid"``.
    bread
        (k, k) inverse Hessian.
    small_sample
        Correction rule, see module docstring.
    vcov_type
        "cluster", "hetero" or "iid" (default: "cluster" if clusters else "hetero").
    df_k
        Parameters counted in (n-1)/(n-K), including non-nested absorbed fixed effects
        (default: k).
    scale
        Dispersion for "iid" (default ``sum(resid^2)/(n-1)``, as in fixest; use 1 for Poisson).
    """
    V, _ = vcov_details(
        scores_or_X, resid, clusters, bread, small_sample,
        vcov_type=vcov_type, df_k=df_k, scale=scale, eigen_fix=eigen_fix,
    )
    return V
