"""Re-fits of a TWFE or PPML specification in which only one regressor changes.

Permutation inference (:mod:`returnstudy.inference.randomization`) and the multiverse null
test re-estimate the same model hundreds of times with permuted adoption dates. The
permutation changes one column of the design (the treatment indicator) and nothing else:
not the estimation rows (missing treatment values stay missing), not the outcome, exposure,
weights, other regressors, fixed effects or clusters. :class:`FixedDesignRefit` prepares all
of that once and fits each draw from arrays:

* linear TWFE: the outcome and the other regressors are demeaned once (their weights do not
  change); a draw demeans the new column only and solves the k x k normal equations;
* PPML: the fixed-effect groups with all-zero outcomes, the singletons and the design are
  fixed; a draw runs the iterative-rectifier separation check on the new design (the
  indicator and unchanged columns demeaned once) and the IRLS. For coefficients alone the
  IRLS starts from the observed fit's linear predictor without the tested treatment's
  contribution (the fit under the sharp null) and, with two-way effects one of which is
  small (corridor and year), projects the fixed effects out exactly instead of by
  alternating projections; when standard errors are needed it follows the estimator's own
  path from its cold start.

Each draw gives the same coefficients (to the IRLS / demeaning tolerance), standard errors and
p-values as calling :func:`~returnstudy.models.twfe.twfe` or :func:`~returnstudy.models.ppml.ppml`
on the permuted panel: the same fit steps, degrees of freedom and small-sample factors. A draw
the fixed design cannot represent (separation by the permuted regressor drops rows) returns
None and the caller re-estimates from the panel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..models._common import _nesting_clusters, fe_rank, vcov_type_of
from ..models._design import Design
from ..models._fe import (WARM_START_POLISH, FixedEffects, TwoWayProjection, collinear_columns, poisson_irls,
                          rectifier_iterations, rectifier_weights)

logger = logging.getLogger(__name__)

__all__ = ["FixedDesignRefit", "DrawFit"]

_FE_TOL, _COLLIN_TOL, _DEMEAN_TOL = 1e-11, 1e-9, 1e-10


def _cross(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A.T @ B`` for tall, narrow arrays without BLAS: a threaded BLAS spends more time
    waking threads than computing a k x k cross-product, and on a busy machine much more."""
    return np.einsum("ij,ik->jk", A, B) if B.ndim == 2 else np.einsum("ij,i->j", A, B)


def _times(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``A @ b`` for a tall, narrow ``A`` without BLAS (see :func:`_cross`)."""
    return np.einsum("ij,j->i", A, b) if b.ndim == 1 else np.einsum("ij,jk->ik", A, b)


@dataclass
class DrawFit:
    """Coefficients of one re-fit (NaN for regressors dropped as collinear) and, when asked
    for, standard errors and two-sided p-values (NaN where not identified)."""

    names: list[str]
    beta: np.ndarray
    std_error: np.ndarray | None = None
    p_value: np.ndarray | None = None

    def series(self, what: str = "estimate") -> pd.Series:
        vals = {"estimate": self.beta, "std_error": self.std_error, "p_value": self.p_value}[what]
        return pd.Series(vals, index=self.names, dtype=float)


def _as_list(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


class _RectifierCheck:
    """The iterative-rectifier separation check of ``fit_ppml`` (Correia, Guimaraes & Zylkin 2021)
    for designs that differ in one column only.

    The check's first least-squares step regresses the zero-outcome indicator on the design
    with weights that depend on the outcome alone, so the indicator and the unchanged columns
    are demeaned once; a draw demeans its new column. Later rectifier steps (only when the
    first step leaves negative fitted values) run as in ``_separation_ir``, which this follows
    step by step and whose answer it gives.
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, fx: FixedEffects, column: int, tol: float = 1e-4,
                 maxiter: int = 100, projection: TwoWayProjection | None = None) -> None:
        self.y, self.fx, self.column, self.tol, self.maxiter = y, fx, column, tol, maxiter
        self.projection = projection
        self.interior = y > 0
        self.trivial = bool(self.interior.all())
        if self.trivial:
            return
        self.omega = rectifier_weights(self.interior, tol)
        self.U0 = (~self.interior).astype(float)
        self.Zd0 = self._demean(np.column_stack([self.U0, X]))

    def _demean(self, Z: np.ndarray) -> np.ndarray:
        if self.projection is not None:
            return self.projection.demean(Z, self.omega)
        if self.fx is not None and self.fx.n_dims:
            return self.fx.demean(Z, weights=self.omega, tol=1e-12)
        return Z

    def separated(self, X: np.ndarray, column: int) -> np.ndarray:
        """Mask of rows separated by the regressors ``X`` (those of the constructor but ``column``)."""
        if self.trivial:
            return np.zeros(self.y.size, dtype=bool)
        first = self.Zd0.copy()
        first[:, 1 + column] = self._demean(X[:, column][:, None])[:, 0]
        sep = rectifier_iterations(self.interior, X, self.omega, self.tol, self.maxiter, self._demean, first=first,
                                   collinear=collinear_columns, cross=_cross, times=_times)
        if sep is None:
            logger.warning("separation check (iterative rectifier) did not converge")
            return np.zeros(self.y.size, dtype=bool)
        return sep


class FixedDesignRefit:
    """A ``twfe`` or ``ppml`` specification on a fixed sample, re-fitted for new values of one regressor.

    Build with :meth:`build` (returns None when the specification cannot be held fixed, e.g.
    the observed fit dropped rows as separated); :meth:`fit` takes the new regressor's values over the rows of the
    panel the refit was built on and returns a :class:`DrawFit`, or None when the draw needs a
    re-estimation from the panel (rows dropped as separated).
    """

    def __init__(self, model: str, design: Design, positions: np.ndarray, column: int, *, offset: np.ndarray | None,
                 vcov_type: str, small_sample: Any, alpha: float, ppml_opts: Mapping[str, Any] | None = None) -> None:
        self.model, self.design, self.positions, self.column = model, design, positions, column
        self.offset, self.vcov_type, self.small_sample, self.alpha = offset, vcov_type, small_sample, alpha
        self.names = list(design.regressors)
        self.fe: FixedEffects = design.fe  # type: ignore[assignment]
        self.w = design.weights
        self._df_resid: dict[int, int] = {}
        self._fe_k: int | None = None
        if model == "twfe":
            Z = np.column_stack([design.y, design.X])
            self._projection = TwoWayProjection.for_(self.fe)
            self._Zd = self._demean_twfe(Z)
        else:
            self._setup_ppml(dict(ppml_opts or {}))

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, model: str, panel: pd.DataFrame, kwargs: Mapping[str, Any], treatment: str) -> FixedDesignRefit | None:
        """Fit ``model`` (``"twfe"`` or ``"ppml"``) with ``kwargs`` on ``panel`` once and hold its design.

        ``treatment`` is the regressor whose values change between fits. The design is the
        estimator's own (rows, fixed effects, clusters, weights, offset after every drop), so
        a re-fit is the estimator's fit on a panel that differs in that column only. None if
        the observed fit dropped rows as separated by the regressors or the re-fit of the
        observed column does not reproduce the estimator's coefficients (e.g. a keyword that
        changes the fit steps).
        """
        if model not in ("twfe", "ppml"):
            return None
        kw = dict(kwargs)
        if model == "twfe":
            from ..models.twfe import twfe as fn
        else:
            from ..models.ppml import ppml as fn
        work = panel.reset_index(drop=True)  # the design's frame index is then the row position
        res = fn(work, **kw)
        design: Design = res.extra["design"]
        fit = res.extra["fit"]
        if treatment not in design.regressors:
            return None
        offset = None
        if model == "ppml":
            if fit.separated.any():
                return None
            exposure, how = res.design.get("exposure"), res.design.get("exposure_as", "offset")
            if exposure is not None and how == "offset":
                offset = design.frame[f"log_{exposure}"].to_numpy(dtype=float)
        if design.fe is None:
            from dataclasses import replace

            design = replace(design, fe=FixedEffects([np.zeros(design.n_obs, dtype=np.intp)], names=["(intercept)"]))
        vt = res.info.get("vcov_type")
        vt = vt if vt in ("iid", "hetero", "cluster") else vcov_type_of(kw.get("cluster", "citizen"))
        positions = design.frame.index.to_numpy(dtype=np.intp)
        ppml_opts = {k: kw[k] for k in ("separation", "tol", "maxiter") if k in kw}
        refit = cls(model, design, positions, design.regressors.index(treatment), offset=offset, vcov_type=vt,
                    small_sample=kw.get("small_sample", "fixest-default"), alpha=float(kw.get("alpha", 0.05)),
                    ppml_opts=ppml_opts)
        x_obs = np.full(len(work), np.nan)
        x_obs[positions] = design.X[:, refit.column]
        check = refit.fit(x_obs)
        want = res.params.reindex(refit.names).to_numpy(dtype=float)
        if check is None or not np.allclose(check.beta, want, rtol=1e-7, atol=1e-9, equal_nan=True):
            logger.debug("fixed-design re-fit does not reproduce %s on the observed data; re-estimating each draw", model)
            return None
        return refit

    def _setup_ppml(self, opts: dict[str, Any]) -> None:
        """The rows are those of the observed fit: after singletons and fixed-effect groups with
        only zero outcomes (both independent of the regressors) are dropped."""
        d = self.design
        self.separation = tuple(opts.get("separation", ("fe", "ir")))
        self.tol, self.maxiter = float(opts.get("tol", 1e-10)), int(opts.get("maxiter", 100))
        self.y0, self.X0, self.fx0 = d.y, d.X, self.fe
        self.off0 = np.zeros(d.n_obs) if self.offset is None else self.offset
        self.uw0 = np.ones(d.n_obs) if self.w is None else self.w
        self._projection = TwoWayProjection.for_(self.fx0)
        self._ir = _RectifierCheck(self.y0, self.X0, self.fx0, self.column, projection=self._projection)
        self._warm: dict[str, Any] | None = None
        # the observed fit (cold start, as the estimator): its linear predictor without the
        # tested treatment's contribution and its demeaned design start every draw
        obs = self._ppml_arrays(self.X0[:, self.column])
        if obs is not None:
            beta, eta, Z, Zd = obs[0], obs[4], obs[5], obs[6]
            b_t = beta[self.column]
            base = eta - (b_t * self.X0[:, self.column] if np.isfinite(b_t) else 0.0)
            self._warm = {"eta": base, "Z": Z, "Zd": Zd}

    # ------------------------------------------------------------------ fits
    def fit(self, x: np.ndarray, se: bool = False) -> DrawFit | None:
        """Re-fit with the regressor's values ``x`` (one per row of the panel the refit was built on).

        A PPML fit starts from the observed fit under the null (3-4 IRLS steps instead of about
        9). ``se=False``: coefficients only. ``se=True``: also standard errors and p-values; the
        sandwich is evaluated at the last step's working weights, so the fit then takes two
        steps past the criterion, which puts those weights at the optimum
        (:func:`~returnstudy.models._fe.poisson_irls`).
        """
        x = np.asarray(x, dtype=float)[self.positions]
        if not np.all(np.isfinite(x)):
            return None  # the new values are missing where the old ones were not: a different sample
        if self.model == "twfe":
            return self._fit_twfe(x, se)
        return self._fit_ppml(x, se)

    def _demean_twfe(self, Z: np.ndarray) -> np.ndarray:
        if self._projection is not None:
            return self._projection.demean(Z, np.ones(Z.shape[0]) if self.w is None else self.w)
        return self.fe.demean(Z, weights=self.w, tol=_DEMEAN_TOL)

    def _fit_twfe(self, x: np.ndarray, se: bool) -> DrawFit:
        d, j = self.design, self.column
        X = d.X.copy()
        X[:, j] = x
        Zd = self._Zd.copy()
        Zd[:, 1 + j] = self._demean_twfe(x[:, None])[:, 0]
        yd, Xd_all = Zd[:, 0], Zd[:, 1:]
        drop = collinear_columns(Xd_all, X, _COLLIN_TOL)
        Xd = Xd_all[:, ~drop]
        w = self.w
        Xw = Xd if w is None else Xd * w[:, None]
        bread = np.linalg.inv(_cross(Xw, Xd)) if Xd.shape[1] else np.zeros((0, 0))
        b = bread @ _cross(Xw, yd) if Xd.shape[1] else np.zeros(0)
        beta = np.full(len(self.names), np.nan)
        beta[~drop] = b
        if not se:
            self._check_estimable(drop)
            return DrawFit(self.names, beta)
        resid = yd - _times(Xd, b)
        scores = Xd * (resid if w is None else w * resid)[:, None]
        scale = None
        if self.vcov_type == "iid":
            ww = np.ones(d.n_obs) if w is None else w
            scale = float(np.sum(ww * resid**2)) / (d.n_obs - 1)
        return self._inference(d, drop, beta, scores, bread, scale, poisson=False)

    def _ppml_arrays(self, x: np.ndarray, warm: Mapping[str, Any] | None = None, polish: int = 0) -> tuple | None:
        """IRLS on the rows left after the fixed-effect separation check; None if the
        iterative rectifier drops rows (the sample would change). ``polish``: steps past the
        criterion (:func:`~returnstudy.models._fe.poisson_irls`)."""
        X = self.X0.copy()
        X[:, self.column] = x
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values")
        if "ir" in self.separation and self._ir.separated(X, self.column).any():
            return None
        if self.y0.size == 0:
            raise ValueError("no observations left after removing separated observations")
        y, off, uw, fx = self.y0, self.off0, self.uw0, self.fx0
        k = X.shape[1]
        mean_y = float(np.average(y, weights=uw))
        if mean_y <= 0:
            raise ValueError("all outcomes are zero in the estimation sample")
        if warm is None:
            mu = (y + mean_y) / 2.0
            eta = np.log(mu)
            prev: list[np.ndarray] = []
        else:
            eta = warm["eta"].copy()
            mu = np.exp(eta)
            prev = [warm["Z"].copy(), warm["Zd"].copy()]
            # the permuted column has no demeaned predecessor: start it from itself
            prev[0][:, 1 + self.column] = x
            prev[1][:, 1 + self.column] = x
        drop_cols = np.zeros(k, dtype=bool)
        Z = Zd = X

        def step(z: np.ndarray, wts: np.ndarray, it: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            nonlocal drop_cols, prev, Z, Zd
            Z = np.column_stack([z, X])
            if self._projection is not None:
                Zd = self._projection.demean(Z, wts)
            else:
                start = None if not prev else Z - (prev[0] - prev[1])
                Zd = fx.demean(Z, weights=wts, tol=_FE_TOL, start=start)
            prev = [Z, Zd]
            zd, Xd_all = Zd[:, 0], Zd[:, 1:]
            if it == 1 and k:
                drop_cols = collinear_columns(Xd_all, X, _COLLIN_TOL)
            Xd = Xd_all[:, ~drop_cols]
            if not Xd.shape[1]:
                return np.zeros(0), zd, Xd
            Xw = Xd * wts[:, None]
            delta = np.linalg.solve(_cross(Xw, Xd), _cross(Xw, zd))
            return delta, zd - _times(Xd, delta), Xd

        # a warm start can begin next to the optimum: one more step is cheap insurance
        st = poisson_irls(y, off, uw, mu, eta, step, self.tol, self.maxiter,
                          initial=(np.zeros(k), np.zeros(y.size), X), min_steps=1 if warm is None else 2,
                          polish=polish)
        if not st.converged:
            logger.warning("permutation re-fit: PPML IRLS did not converge in %d iterations", self.maxiter)
        beta = np.full(k, np.nan)
        beta[~drop_cols] = st.delta
        Xd, wts, resid, eta = st.Xd, st.weights, st.resid, st.eta
        return beta, drop_cols, Xd, (wts, resid), eta, Z, Zd

    def _fit_ppml(self, x: np.ndarray, se: bool) -> DrawFit | None:
        out = self._ppml_arrays(x, self._warm, WARM_START_POLISH if se else 0)
        if out is None:
            return None
        beta, drop, Xd, (wts, resid) = out[0], out[1], out[2], out[3]
        if not se:
            self._check_estimable(drop)
            return DrawFit(self.names, beta)
        bread = np.linalg.inv(_cross(Xd * wts[:, None], Xd)) if Xd.shape[1] else np.zeros((0, 0))
        scores = Xd * (wts * resid)[:, None]
        return self._inference(self.design, drop, beta, scores, bread, 1.0 if self.vcov_type == "iid" else None,
                               poisson=True)

    def _check_estimable(self, drop: np.ndarray) -> None:
        if drop.all():
            raise ValueError(f"no estimable regressor: {self.names} are all collinear with the fixed effects "
                             f"{list(self.design.fe_names)}")

    def _inference(self, d: Design, drop: np.ndarray, beta: np.ndarray, scores: np.ndarray, bread: np.ndarray,
                   scale: float | None, poisson: bool) -> DrawFit:
        """Sandwich variance with the degrees of freedom and small-sample factors of ``fit_design``."""
        from .cluster import vcov_details

        self._check_estimable(drop)
        k_kept = int((~drop).sum())
        if self._fe_k is None:
            self._fe_k = d.fe.n_absorbed(_nesting_clusters(d) if self.vcov_type == "cluster" else None)
        n = d.n_obs
        if k_kept not in self._df_resid:
            self._df_resid[k_kept] = n - k_kept - fe_rank(d.fe, n - k_kept)
        V, det = vcov_details(scores, None, d.clusters if self.vcov_type == "cluster" else [], bread, self.small_sample,
                              vcov_type=self.vcov_type, df_k=k_kept + self._fe_k, scale=scale,
                              df_resid=self._df_resid[k_kept], on_unidentified="nan")
        se_kept = np.sqrt(np.clip(np.diag(V), 0, None))
        se = np.full(len(self.names), np.nan)
        se[~drop] = se_kept
        df_t = None if poisson else float(det.df_t)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.abs(beta / se)
        p = 2 * stats.norm.sf(t) if df_t is None or not np.isfinite(df_t) else 2 * stats.t.sf(t, df_t)
        return DrawFit(self.names, beta, se, p)
