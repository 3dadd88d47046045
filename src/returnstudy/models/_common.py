"""Shared estimation step: a prepared :class:`~returnstudy.models._design.Design` ->
coefficients, sandwich covariance and an :class:`~returnstudy.results.EstimationResult`.

Used by :func:`~returnstudy.models.twfe.twfe`, :func:`~returnstudy.models.ppml.ppml`
and :func:`~returnstudy.models.event_study.event_study` so that all of them count
degrees of freedom, drop singletons and describe the sample in the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..inference.cluster import VcovDetails, vcov_details
from ..results import EstimationResult, make_table
from ._design import Design
from ._fe import FixedEffects, OLSFit, PPMLFit, fit_ppml, fit_wls, singleton_mask

logger = logging.getLogger(__name__)

__all__ = ["FitOutput", "PreparedFit", "fe_rank", "fit_design", "result_from_fit", "vcov_type_of"]


def vcov_type_of(cluster: Any) -> str:
    """'iid', 'hetero' or 'cluster' for a cluster specification."""
    if cluster == "iid":
        return "iid"
    if cluster in (None, "hetero", "none"):
        return "hetero"
    return "cluster"


@dataclass
class FitOutput:
    """Coefficients (only estimable regressors), their covariance and the fit's sample."""

    design: Design
    names: list[str]
    beta: np.ndarray
    vcov: np.ndarray
    details: VcovDetails
    fit: OLSFit | PPMLFit
    dropped_regressors: list[str] = field(default_factory=list)
    df_k: int = 0


def _nesting_clusters(design: Design) -> list[np.ndarray]:
    """Cluster variables against which fixed-effect nesting is checked.

    As pyfixest: with multi-way clustering the intersection of the cluster variables
    counts too (so corridor effects are nested in citizen x geo clusters).
    """
    cl = list(design.clusters)
    if len(cl) > 1:
        from ..inference.cluster import _intersect

        cl.append(_intersect(cl)[0])
    return cl


@dataclass(frozen=True)
class PreparedFit:
    """A ``twfe`` or ``ppml`` call prepared up to its fit.

    ``design`` holds the rows left after the call's row-by-row rules (missing values, zero
    weights, missing or non-positive exposure); singletons and Poisson separation, which
    depend on the other rows, are decided by the fit. ``offset`` is aligned with the design
    rows. :meth:`without` drops rows, so that ``prepared.without(mask).fit()`` is the call
    re-estimated on the panel without those rows (the same design, fit and packaging), without
    preparing the panel again: leave-one-out influence re-estimates hundreds of times.
    """

    design: Design
    offset: np.ndarray | None
    estimate: Callable[[Design, np.ndarray | None, np.ndarray | None], FitOutput]
    package: Callable[[FitOutput], EstimationResult]
    poisson: bool = False
    alpha: float = 0.05
    start: np.ndarray | None = None

    def without(self, mask: np.ndarray, reason: str = "left out") -> PreparedFit:
        """The same call without the design rows where ``mask`` is True (counted under ``reason``)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape == (self.design.n_obs,) and mask.all():
            raise ValueError(f"no rows left of {self.design.n_obs}: every row is {reason}")
        offset = None if self.offset is None else self.offset[~mask]
        start = None if self.start is None else self.start[~mask]
        return replace(self, design=self.design.drop(mask, reason), offset=offset, start=start)

    def warm_from(self, result: EstimationResult) -> PreparedFit:
        """The same call with its Poisson iterations started from ``result``'s linear predictor
        (a fit of this call on these rows or more; rows it did not use start cold). Only the
        number of steps changes: the fit ends at the optimum, within the IRLS tolerance of a cold
        start (see ``fit_ppml``'s ``start_eta``). Linear fits have no iterations: they are unchanged."""
        fit = result.extra.get("fit") if isinstance(result.extra, dict) else None
        used = result.extra.get("design") if isinstance(result.extra, dict) else None
        eta = getattr(fit, "eta", None)
        if eta is None or used is None or len(eta) != used.n_obs:
            return self
        if used.frame.index.has_duplicates or self.design.frame.index.has_duplicates:
            return self  # rows cannot be matched by label: start cold
        at = used.frame.index.get_indexer(self.design.frame.index)
        start = np.where(at >= 0, np.asarray(eta, dtype=float)[np.clip(at, 0, None)], np.nan)
        return replace(self, start=start)

    def fit_output(self) -> FitOutput:
        """The fit (singletons, separation, coefficients, covariance, rows used) without its packaging
        as a result: for callers that need only the estimates of many re-fits (:meth:`table`)."""
        return self.estimate(self.design, self.offset, self.start)

    def table(self, out: FitOutput) -> pd.DataFrame:
        """The coefficient table of ``out``: the same numbers as ``fit().table``."""
        return fit_table(out, poisson=self.poisson, alpha=self.alpha)

    def fit(self) -> EstimationResult:
        """Fit and package the prepared call (singletons, separation, coefficients, covariance)."""
        return self.package(self.fit_output())


def fe_rank(fe: FixedEffects | None, bound: int | None = None) -> int:
    """Number of linearly independent fixed-effect parameters (rank of the dummy matrix).

    ``sum(levels) - (dimensions - 1)`` is an upper bound (exact for connected two-way
    effects); the exact rank, which also subtracts redundant levels of disconnected
    groups or nested interactions, is computed only when that bound reaches ``bound``
    (e.g. the observations left for the residuals), where the difference matters.
    """
    if fe is None or fe.n_dims == 0:
        return 0
    upper = fe.n_absorbed(None, rule="full")
    if fe.n_dims == 1 or bound is None or upper < bound:
        return int(upper)
    from .imputation import SparseFE

    return int(SparseFE([np.asarray(c) for c in fe.codes], np.ones(fe.n_obs, dtype=bool)).p)


def fit_design(
    design: Design,
    method: str,
    *,
    vcov_type: str,
    small_sample: str | Mapping[str, Any] = "fixest-default",
    drop_singletons: bool = True,
    offset: np.ndarray | None = None,
    separation: Sequence[str] = ("fe", "ir"),
    tol: float = 1e-10,
    maxiter: int = 100,
    start_eta: np.ndarray | None = None,
) -> FitOutput:
    """Fit OLS (``method="ols"``) or PPML (``method="ppml"``) with absorbed fixed effects
    and compute the sandwich covariance.

    If the variance is not identified (no residual degrees of freedom, as in a 2x2
    difference-in-differences, or fewer than two clusters) the covariance is NaN and
    ``details.note`` says why; the coefficients are still returned.

    ``offset`` and ``start_eta`` (a PPML warm start, see ``fit_ppml``; a sparse design, as etwfe's,
    starts cold) are aligned with ``design`` rows. Rows removed here (singletons, PPML separation) are recorded in the returned design's
    ``dropped``.
    """
    if drop_singletons:
        before = design.n_obs
        sing = None
        if design.fe is not None:
            sing = singleton_mask(design.fe)
            design = design.drop(sing, "singleton fixed-effect groups")
            if offset is not None:
                offset = offset[~sing]
            if start_eta is not None:
                start_eta = start_eta[~sing]
        logger.debug("singletons dropped: %d", before - design.n_obs)
    if design.n_obs == 0:
        raise ValueError("no observations left after dropping singletons")
    if design.fe is None:
        # no fixed effects: one all-observations group absorbs the intercept
        design = replace(design, fe=FixedEffects([np.zeros(design.n_obs, dtype=np.intp)], names=["(intercept)"]))
    sparse_X = sp.issparse(design.X)  # e.g. cell dummies: no dense rows x regressors array (see _sparse_fit)
    if method == "ols":
        if sparse_X:
            from ._sparse_fit import fit_wls_sparse

            fit: OLSFit | PPMLFit = fit_wls_sparse(design.y, design.X, design.fe, design.weights)
        else:
            fit = fit_wls(design.y, design.X, design.fe, design.weights)
    elif method == "ppml":
        if sparse_X:
            from ._sparse_fit import fit_ppml_sparse

            fit = fit_ppml_sparse(design.y, design.X, design.fe, offset=offset, weights=design.weights,
                                  tol=tol, maxiter=maxiter, separation=separation)
        else:
            fit = fit_ppml(design.y, design.X, design.fe, offset=offset, weights=design.weights,
                           tol=tol, maxiter=maxiter, separation=separation, start_eta=start_eta)
        zero_names = [f"{n}: {g}" for n, g in fit.dropped_fe_groups.items() if g]
        design = design.drop(
            fit.dropped_zero_fe,
            "fixed-effect groups with all-zero outcome" + (f" ({', '.join(zero_names)} groups)" if zero_names else ""),
        )
        sep = fit.separated[~fit.dropped_zero_fe]
        design = design.drop(sep, "separated by the regressors (iterative rectifier)")
    else:
        raise ValueError(f"method must be 'ols' or 'ppml', got {method!r}")
    drop_cols = fit.dropped_columns
    names = [r for r, d in zip(design.regressors, drop_cols) if not d]
    dropped_regs = [r for r, d in zip(design.regressors, drop_cols) if d]
    if dropped_regs:
        logger.warning("regressors collinear with the fixed effects or each other, dropped: %s", dropped_regs)
    if not names:
        raise ValueError(
            f"no estimable regressor: {design.regressors} are all collinear with the fixed effects {list(design.fe_names)}"
        )
    beta = fit.beta[~drop_cols]
    k_kept = len(names)
    if design.fe is not None:
        fe_k = design.fe.n_absorbed(_nesting_clusters(design) if vcov_type == "cluster" else None)
    else:
        fe_k = 0
    df_k = k_kept + fe_k
    n = design.n_obs
    df_resid = n - k_kept - fe_rank(design.fe, n - k_kept)
    if vcov_type == "iid":
        if method == "ols":
            w = np.ones(n) if design.weights is None else design.weights
            scale = float(np.sum(w * fit.resid**2)) / (n - 1)
        else:
            scale = 1.0
        V, det = vcov_details(fit.scores, None, [], fit.bread, small_sample, vcov_type="iid", df_k=df_k, scale=scale,
                              df_resid=df_resid, on_unidentified="nan")
    else:
        V, det = vcov_details(
            fit.scores, None, design.clusters if vcov_type == "cluster" else [], fit.bread, small_sample,
            vcov_type=vcov_type, df_k=df_k, df_resid=df_resid, on_unidentified="nan",
        )
    return FitOutput(
        design=design, names=names, beta=beta, vcov=V, details=det, fit=fit,
        dropped_regressors=dropped_regs, df_k=df_k,
    )


def fit_table(out: FitOutput, *, poisson: bool, alpha: float = 0.05) -> pd.DataFrame:
    """Coefficient table of a :class:`FitOutput` (:func:`~returnstudy.results.make_table`: Wald
    intervals, normal for Poisson models, Student t with the fit's df for linear ones)."""
    se = np.sqrt(np.clip(np.diag(out.vcov), 0, None))
    df_t = None if poisson else float(out.details.df_t)
    return make_table(out.beta, se, index=pd.Index(out.names, name="term"), df=df_t, alpha=alpha, poisson=poisson)


def result_from_fit(
    out: FitOutput,
    model: str,
    *,
    poisson: bool,
    alpha: float = 0.05,
    info: dict[str, Any] | None = None,
    design_meta: dict[str, Any] | None = None,
    terms: Sequence[str] | None = None,
) -> EstimationResult:
    """Package a :class:`FitOutput` as an :class:`EstimationResult` (table over ``terms``, default all)."""
    params = pd.Series(out.beta, index=pd.Index(out.names, name="term"), name="estimate")
    vcov = pd.DataFrame(out.vcov, index=params.index, columns=params.index)
    df_t = None if poisson else float(out.details.df_t)
    table = fit_table(out, poisson=poisson, alpha=alpha)
    if terms is not None:
        table = table.loc[[t for t in terms if t in table.index]]
    d = out.design
    full_info = d.info()
    full_info.update(
        vcov_type=out.details.vcov_type,
        vcov_description=out.details.describe(),
        small_sample=out.details.small_sample,
        df_k=out.df_k,
        df_t=out.details.df_t,
        n_clusters=(
            None if not out.details.n_clusters
            else (out.details.n_clusters[0] if len(out.details.n_clusters) == 1 else out.details.n_clusters)
        ),
        dropped_regressors=list(out.dropped_regressors),
    )
    notes = list(full_info.get("notes", []))
    if out.dropped_regressors:
        notes.append(f"regressors collinear with fixed effects dropped: {', '.join(out.dropped_regressors)}")
    if out.details.eigen_fix:
        notes.append(out.details.eigen_fix_note(out.names))
        full_info["vcov_eigen_fix"] = {
            "n_clipped": out.details.n_clipped, "min_eigenvalue": out.details.min_eigenvalue,
            "negative_variances": [out.names[i] for i in out.details.negative_variances],
        }
    if not out.details.identified:
        notes.append(out.details.note)
    fit = out.fit
    if isinstance(fit, PPMLFit):
        full_info["converged"] = bool(fit.converged)
        full_info["n_iter"] = int(fit.n_iter)
        full_info["deviance"] = float(fit.deviance)
        full_info["dropped_fe_groups"] = dict(fit.dropped_fe_groups)
        full_info["n_separated"] = int(fit.separated.sum())
        full_info["separation_checks"] = list(fit.separation_checks)
        full_info["possibly_separated"] = int(fit.possibly_separated)
        if not fit.converged:
            notes.append(f"IRLS did NOT converge in {fit.n_iter} iterations; estimates are unreliable")
        if fit.possibly_separated:
            notes.append(f"{fit.possibly_separated} zero-outcome rows have fitted means ~0 (possible undetected separation)")
    if info:
        extra_notes = info.pop("notes", None)
        full_info.update(info)
        if extra_notes:
            notes.extend(extra_notes)
    full_info["notes"] = notes
    meta = {
        "outcome": d.outcome,
        "regressors": list(d.regressors),
        "fixed_effects": list(d.fe_names),
        "cluster": list(d.cluster_names),
        "weights": d.weights_name,
    }
    if design_meta:
        meta.update(design_meta)
    return EstimationResult(
        model=model, params=params, vcov=vcov, table=table, info=full_info, design=meta,
        df_t=df_t, alpha=alpha, extra={"fit": fit, "design": d},
    )
