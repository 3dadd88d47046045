"""The sparse fits behind the extended TWFE (least squares and Poisson, no dense rows x cells array)
against the dense paths they replace: demeaned columns, coefficients, bread, residuals, separation,
score sums by cluster, the robust meat and every covariance type agree to 1e-12 on small unbalanced
panels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from returnstudy.inference.cluster import meat_clustered
from returnstudy.models._common import fit_design
from returnstudy.models._design import Design
from returnstudy.models._fe import FixedEffects, fit_wls
from returnstudy.models._sparse_fit import DemeanedColumns, SparseOLSFit, collinear_from_gram, fit_wls_sparse
from returnstudy.models.etwfe import etwfe
from returnstudy.simulate import simulate_panel


def _close(a: np.ndarray, b: np.ndarray, tol: float = 1e-12) -> None:
    """Equal to ``tol`` relative to the larger array's scale (entries near zero: absolute)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    scale = max(1.0, float(np.nanmax(np.abs(a))) if a.size else 1.0)
    assert float(np.nanmax(np.abs(a - b), initial=0.0)) <= tol * scale


def _cell_problem(seed: int = 0) -> tuple[np.ndarray, sp.csr_matrix, FixedEffects, np.ndarray, np.ndarray]:
    """An unbalanced corridor-year panel (30 % of rows missing) with staggered cohorts: outcome,
    sparse regressors (cell dummies, a covariate x cell block, a dense covariate column and a copy of
    one cell: collinear), fixed effects (corridor, year), citizen and geo cluster codes."""
    rng = np.random.default_rng(seed)
    n_geo, n_cit, years = 8, 30, np.arange(2008, 2020)
    geo, cit, yr = (a.ravel() for a in np.meshgrid(np.arange(n_geo), np.arange(n_cit), years, indexing="ij"))
    keep = rng.random(geo.size) > 0.3
    geo, cit, yr = geo[keep], cit[keep], yr[keep]
    corridor = geo * n_cit + cit
    cohort = np.where(rng.random(n_geo * n_cit) < 0.6, rng.integers(2010, 2019, n_geo * n_cit), 0)[corridor]
    in_cell = (cohort > 0) & (yr >= cohort)
    cells = pd.MultiIndex.from_arrays([cohort[in_cell], yr[in_cell]]).unique().sort_values()
    code = cells.get_indexer(pd.MultiIndex.from_arrays([cohort[in_cell], yr[in_cell]]))
    n, K = yr.size, len(cells)
    D = sp.csr_matrix((np.ones(code.size), (np.flatnonzero(in_cell), code)), shape=(n, K))
    x = rng.normal(size=n_geo * n_cit)[corridor]
    X = sp.hstack([D, D.multiply(x[:, None]), sp.csr_matrix(np.c_[x * (yr > 2013), D[:, 3].toarray()])], format="csr")
    y = 0.5 + 0.1 * (yr - 2008) + rng.normal(size=n_geo * n_cit)[corridor] + D @ rng.normal(0, 0.3, K) \
        + rng.normal(size=n)
    return y, X, FixedEffects([corridor, yr - 2008], names=["corridor", "year"]), cit, geo


@pytest.mark.parametrize("weighted, exact", [(False, True), (True, True), (False, False), (True, False)])
def test_sparse_fit_equals_dense_fit_wls(weighted: bool, exact: bool) -> None:
    """``exact``: corridor and year effects (demeaning is the exact projection, one sparse solve here);
    else corridor and citizen x year effects (both large: alternating projections, column by column)."""
    y, X, fe, cit, _geo = _cell_problem()
    if not exact:
        fe = FixedEffects([fe.codes[0], cit * 100 + fe.codes[1]], names=["corridor", "citizen_year"])
        assert min(fe.n_levels) > 60
    w = np.random.default_rng(1).uniform(0.5, 2.0, y.size) if weighted else None
    dense = fit_wls(y, X.toarray(), fe, w)
    sparse = fit_wls_sparse(y, X, fe, w)
    assert isinstance(sparse, SparseOLSFit) and isinstance(sparse.Xd, DemeanedColumns)
    assert sparse.dropped_columns.tolist() == dense.dropped_columns.tolist()
    assert sparse.dropped_columns[-1] and sparse.dropped_columns.sum() == 1  # the copied cell
    _close(sparse.beta, dense.beta)
    _close(sparse.bread, dense.bread)
    _close(sparse.resid, dense.resid)
    _close(sparse.yd, dense.yd)
    _close(sparse.Xd.toarray(), dense.Xd)
    _close(sparse.scores.toarray(), dense.scores)
    # what the sandwich takes of the scores: sums by cluster and the robust meat
    codes = pd.factorize(cit)[0]
    G = int(codes.max()) + 1
    _close(sparse.scores.cluster_sums(codes, G),
           np.column_stack([np.bincount(codes, weights=c, minlength=G) for c in dense.scores.T]))
    _close(meat_clustered(sparse.scores, codes, G), meat_clustered(dense.scores, codes, G))
    _close(sparse.scores.cross(), dense.scores.T @ dense.scores)
    b = np.random.default_rng(2).normal(size=sparse.Xd.shape[1])
    _close(sparse.Xd @ b, dense.Xd @ b)
    _close(sparse.Xd.gram(w), (dense.Xd * (1.0 if w is None else w[:, None])).T @ dense.Xd)


@pytest.mark.parametrize("vcov_type, clusters", [("cluster", ["citizen"]), ("cluster", ["citizen", "geo"]),
                                                 ("hetero", []), ("iid", [])])
def test_fit_design_with_sparse_regressors_equals_dense(vcov_type: str, clusters: list[str]) -> None:
    """The sparse path through fit_design (singletons, collinear columns, small-sample factors, every
    covariance type, implicit scores in vcov_details) against the dense array."""
    y, X, fe, cit, geo = _cell_problem(seed=4)
    n = y.size
    cl = {"citizen": cit, "geo": geo}
    design = Design(y=y, X=X, outcome="y", regressors=[f"x{j}" for j in range(X.shape[1])], fe=fe,
                    fe_names=("corridor", "year"), clusters=[cl[c] for c in clusters], cluster_names=tuple(clusters),
                    weights=None, weights_name=None, frame=pd.DataFrame(cl), rows=np.arange(n))
    a = fit_design(replace(design, X=X.toarray()), "ols", vcov_type=vcov_type)
    b = fit_design(design, "ols", vcov_type=vcov_type)
    assert isinstance(b.fit, SparseOLSFit)
    assert a.names == b.names and a.dropped_regressors == b.dropped_regressors == ["x" + str(X.shape[1] - 1)]
    assert a.df_k == b.df_k and a.details.n_obs == b.details.n_obs == n
    _close(b.beta, a.beta)
    _close(b.vcov, a.vcov)
    np.testing.assert_allclose(b.details.factors, a.details.factors, rtol=0, atol=0)
    assert b.details.df_t == a.details.df_t


def test_collinearity_rule_from_the_gram_matrix_equals_gram_schmidt() -> None:
    from returnstudy.models._fe import collinear_columns

    rng = np.random.default_rng(5)
    A = rng.normal(size=(200, 6))
    A = np.c_[A, A[:, 1] - 2 * A[:, 4], np.zeros(200) + 1e-9 * rng.normal(size=200), A[:, 0]]
    raw = np.c_[A[:, :7], np.ones(200), A[:, 0]]
    expect = collinear_columns(A, raw)
    assert expect.tolist() == [False] * 6 + [True, True, True]
    assert collinear_from_gram(A.T @ A, (raw**2).sum(axis=0)).tolist() == expect.tolist()


@pytest.mark.parametrize("kwargs", [{}, {"control": "never", "cluster": ["citizen", "geo"]}, {"cluster": None},
                                    {"fe_level": "cohort"}, {"model": "poisson"},
                                    {"model": "poisson", "control": "never", "cluster": None}])
def test_etwfe_runs_sparse_and_equals_the_dense_fit(kwargs: dict) -> None:
    """etwfe's fits (linear and Poisson) keep the cells sparse (no rows x cells array in the result) and
    the cell coefficients and covariance equal the dense fit of the same design."""
    p = simulate_panel(seed=2, n_geo=10, n_citizen=30, years=(2008, 2020))
    res = etwfe(p, "bilateral_binding", **kwargs)
    out = res.extra["fit_output"]
    assert sp.issparse(out.design.X) and isinstance(out.fit.Xd, DemeanedColumns)
    poisson = kwargs.get("model") == "poisson"
    offset = np.log(out.design.frame["orders"].to_numpy(dtype=float)) if poisson else None
    dense = fit_design(replace(out.design, X=out.design.X.toarray()), "ppml" if poisson else "ols",
                       vcov_type=out.details.vcov_type, offset=offset)
    assert dense.names == out.names
    _close(out.beta, dense.beta)
    _close(out.vcov, dense.vcov)
    terms = list(res.extra["cell_vcov"].index)
    idx = [dense.names.index(t) for t in terms]
    _close(res.info["cells"]["estimate"].to_numpy(), dense.beta[idx])
    _close(res.extra["cell_vcov"].to_numpy(), dense.vcov[np.ix_(idx, idx)])


def _poisson_outcome(y: np.ndarray, X: sp.csr_matrix, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts with an exposure offset; every row of one cell zero (separated by the regressors)."""
    rng = np.random.default_rng(seed)
    expo = rng.uniform(5, 50, y.size)
    counts = rng.poisson(0.05 * expo * np.exp(0.1 * y)).astype(float)
    counts[X[:, 5].toarray().ravel() > 0] = 0.0
    return counts, np.log(expo)


@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_poisson_fit_equals_dense_fit_ppml(weighted: bool) -> None:
    """IRLS with warm-started demeaning, the iterative-rectifier separation check (one all-zero cell),
    collinear columns: the sparse path drops the same rows and columns and gives the same fit."""
    from returnstudy.models._fe import fit_ppml
    from returnstudy.models._sparse_fit import fit_ppml_sparse

    y, X, fe, cit, _geo = _cell_problem(seed=3)
    counts, off = _poisson_outcome(y, X, seed=3)
    w = np.random.default_rng(7).uniform(0.5, 2.0, y.size) if weighted else None
    dense = fit_ppml(counts, X.toarray(), fe, offset=off, weights=w)
    sparse = fit_ppml_sparse(counts, X, fe, offset=off, weights=w)
    assert dense.separated.sum() > 0
    assert sparse.separated.tolist() == dense.separated.tolist()
    assert sparse.dropped_columns.tolist() == dense.dropped_columns.tolist()
    assert sparse.n_iter == dense.n_iter and sparse.converged and dense.converged
    _close(sparse.beta, dense.beta)
    _close(sparse.bread, dense.bread)
    _close(sparse.mu, dense.mu)
    _close(sparse.resid, dense.resid)
    _close(sparse.Xd.toarray(), dense.Xd)
    codes = pd.factorize(cit[sparse.keep])[0]
    G = int(codes.max()) + 1
    _close(meat_clustered(sparse.scores, codes, G), meat_clustered(dense.scores, codes, G))
    _close(sparse.scores.cross(), dense.scores.T @ dense.scores)


def test_implicit_columns_algebra_equals_the_dense_array() -> None:
    """M = X P + Z Q + Z2 R (sparse times dense factors): products, Gram matrices, group sums."""
    from returnstudy.models._sparse_fit import ImplicitColumns

    rng = np.random.default_rng(11)
    n = 500
    S = [sp.random(n, p, density=d, random_state=s, format="csr")
         for p, d, s in ((7, 0.2, 1), (40, 0.05, 2), (9, 0.3, 3))]
    D = [rng.normal(size=(s.shape[1], 4)) for s in S]
    M = ImplicitColumns(list(zip(S, D)))
    dense = sum(s.toarray() @ d for s, d in zip(S, D))
    w, v, b = rng.uniform(0.1, 3.0, n), rng.normal(size=n), rng.normal(size=4)
    codes = rng.integers(0, 13, n)
    _close(M.toarray(), dense)
    _close(M @ b, dense @ b)
    _close(M.tdot(v), dense.T @ v)
    _close(M.gram(), dense.T @ dense)
    _close(M.gram(w), (dense * w[:, None]).T @ dense)
    _close(M.group_sums(codes, 13, v),
           np.column_stack([np.bincount(codes, weights=c * v, minlength=13) for c in dense.T]))
    B = rng.normal(size=(4, 2))
    _close((M + M.times(B @ np.ones((2, 4)))).toarray(), dense + dense @ B @ np.ones((2, 4)))
    _close(M.columns(np.array([True, False, True, False])).toarray(), dense[:, [0, 2]])
