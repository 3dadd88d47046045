"""Fixed-effect absorption, degrees of freedom, WLS and PPML cores (returnstudy.models._fe)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from returnstudy.models._fe import (
    ConvergenceWarning,
    FixedEffects,
    TwoWayProjection,
    absorb,
    collinear_columns,
    fit_ppml,
    fit_wls,
    recover_fe,
    singleton_mask,
)


def _dummies(codes: np.ndarray, drop_first: bool) -> np.ndarray:
    D = np.eye(codes.max() + 1)[codes]
    return D[:, 1:] if drop_first else D


def _unbalanced(seed: int, n_a: int = 30, n_b: int = 8, keep: float = 0.7):
    rng = np.random.default_rng(seed)
    a, b = np.meshgrid(np.arange(n_a), np.arange(n_b), indexing="ij")
    a, b = a.ravel(), b.ravel()
    m = rng.random(a.size) < keep
    return a[m], b[m], rng


@pytest.mark.parametrize("weighted", [False, True])
def test_absorb_equals_dummy_regression_residuals(weighted: bool) -> None:
    a, b, rng = _unbalanced(1)
    c = (a % 5) * 8 + b  # a third, crossed dimension (like geo^year)
    X = rng.normal(size=(a.size, 3))
    w = rng.uniform(0.2, 3.0, a.size) if weighted else None
    out = absorb(X, [a, b, c], weights=w, tol=1e-13)
    D = np.column_stack([_dummies(a, False), _dummies(b, True), _dummies(pd.factorize(c)[0], True)])
    sw = np.ones(a.size) if w is None else np.sqrt(w)
    coef = np.linalg.lstsq(D * sw[:, None], X * sw[:, None], rcond=None)[0]
    expected = X - D @ coef
    np.testing.assert_allclose(out, expected, atol=1e-9)


def test_single_fe_is_group_demeaning_by_hand() -> None:
    x = np.array([1.0, 2.0, 6.0, 10.0, 20.0])
    g = np.array([0, 0, 0, 1, 1])
    w = np.array([1.0, 1.0, 2.0, 1.0, 3.0])
    out = absorb(x[:, None], [g], weights=w)[:, 0]
    m0 = (1 + 2 + 12) / 4  # weighted mean of group 0 = 3.75
    m1 = (10 + 60) / 4  # 17.5
    np.testing.assert_allclose(out, [1 - m0, 2 - m0, 6 - m0, 10 - m1, 20 - m1])


def test_balanced_two_way_demeaning_closed_form() -> None:
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(6, 5))
    a, b = np.meshgrid(np.arange(6), np.arange(5), indexing="ij")
    out = absorb(Y.ravel()[:, None], [a.ravel(), b.ravel()])[:, 0].reshape(6, 5)
    expected = Y - Y.mean(1, keepdims=True) - Y.mean(0, keepdims=True) + Y.mean()
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_fixed_effects_levels_and_nesting() -> None:
    citizen = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    geo = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    corridor = citizen * 2 + geo
    year = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    fx = FixedEffects([corridor, year], names=["corridor", "year"])
    assert fx.n_levels == [6, 2]
    assert fx.nested_in(citizen) == [True, False]
    assert fx.nested_in(geo) == [True, False]
    # not nested: sum of levels minus one per extra dimension
    assert fx.n_absorbed(None) == 6 + 2 - 1
    # corridor nested in citizen: counts as 1 parameter
    assert fx.n_absorbed([citizen]) == 6 + 2 - 1 - 6 + 1
    assert fx.n_absorbed([citizen], rule="full") == 7
    assert fx.n_absorbed([citizen], rule="none") == 0


def test_singletons_are_removed_iteratively() -> None:
    # obs 4 is alone in a=2; once it is dropped, obs 5 is alone in b=2
    a = np.array([0, 0, 1, 1, 2, 0])
    b = np.array([0, 1, 0, 1, 2, 2])
    drop = singleton_mask([a, b])
    np.testing.assert_array_equal(drop, [False, False, False, False, True, True])


def test_collinear_columns_detects_fe_and_linear_dependence() -> None:
    a, b, rng = _unbalanced(4)
    x1 = rng.normal(size=a.size)
    const_in_a = rng.normal(size=30)[a]
    X = np.column_stack([x1, const_in_a, 2 * x1])
    Xd = absorb(X, [a, b])
    np.testing.assert_array_equal(collinear_columns(Xd, X), [False, True, True])


def test_collinear_columns_on_designs_with_known_dependence() -> None:
    """Columns dropped: one collinear with the fixed effects (a level dummy of ``g``), one a
    combination of earlier columns (exactly, and up to 1e-7); the rest kept. The permutation
    re-fits use the same rule."""
    rng = np.random.default_rng(1)
    n = 500
    g = rng.integers(0, 40, n)
    fx = FixedEffects([g, rng.integers(0, 5, n)])
    a, b = rng.normal(size=n), rng.normal(size=n)
    designs = {
        "independent": (np.column_stack([a, b]), [False, False]),
        "fe and combination": (np.column_stack([a, (g == 3).astype(float), b, a + 2 * b]), [False, True, False, True]),
        "near combination": (np.column_stack([a, a * 1e-7 + b, b]), [False, False, True]),
    }
    for name, (X, expected) in designs.items():
        Xd = fx.demean(X, tol=1e-13)
        assert collinear_columns(Xd, X).tolist() == expected, name
    # without raw columns only the dependence among the given columns counts
    raw = designs["fe and combination"][0]
    assert collinear_columns(raw).tolist() == [False, False, False, True]


def test_fit_wls_matches_statsmodels_with_dummies() -> None:
    a, b, rng = _unbalanced(5)
    X = rng.normal(size=(a.size, 2))
    y = X @ [0.5, -1.0] + rng.normal(size=30)[a] + rng.normal(size=8)[b] + rng.normal(size=a.size)
    w = rng.uniform(0.5, 2, a.size)
    fit = fit_wls(y, X, [a, b], weights=w)
    D = np.column_stack([X, _dummies(a, False), _dummies(b, True)])
    ref = sm.WLS(y, D, weights=w).fit()
    np.testing.assert_allclose(fit.beta, ref.params[:2], rtol=1e-9)
    np.testing.assert_allclose(fit.resid, ref.resid, atol=1e-9)
    np.testing.assert_allclose(fit.fitted, ref.fittedvalues, atol=1e-9)
    # recovered fixed effects reproduce the fitted values
    coefs = recover_fe(y - X @ fit.beta - fit.resid, [a, b])
    np.testing.assert_allclose(coefs[0][a] + coefs[1][b], ref.fittedvalues - X @ fit.beta, atol=1e-8)


def test_fit_ppml_matches_statsmodels_glm_and_drops_zero_groups() -> None:
    a, b, rng = _unbalanced(6, n_a=25, n_b=6, keep=0.8)
    x = rng.normal(size=a.size)
    expo = rng.uniform(5, 50, a.size)
    mu = expo * np.exp(0.4 * x + rng.normal(-1, 0.5, 25)[a] + rng.normal(0, 0.2, 6)[b])
    y = rng.poisson(mu).astype(float)
    y[a == 3] = 0.0  # a group with only zeros: its fixed effect is -inf
    n_zero = int((a == 3).sum())
    fit = fit_ppml(y, x[:, None], [a, b], offset=np.log(expo), tol=1e-12)
    assert fit.converged
    assert fit.dropped_fe_groups == {"fe0": 1, "fe1": 0}
    assert int(fit.dropped_zero_fe.sum()) == n_zero
    keep = fit.keep
    D = np.column_stack([x[keep], _dummies(pd.factorize(a[keep])[0], False), _dummies(b[keep], True)])
    ref = sm.GLM(y[keep], D, family=sm.families.Poisson(), offset=np.log(expo[keep])).fit(tol=1e-13)
    np.testing.assert_allclose(fit.beta, ref.params[:1], rtol=1e-7)
    np.testing.assert_allclose(fit.mu, ref.fittedvalues, rtol=1e-6)
    # score contributions approximate X~'(y - mu) and sum to ~0 at the optimum
    assert abs(fit.scores.sum()) < 1e-6 * np.abs(fit.scores).sum()


def test_fit_ppml_detects_regressor_separation() -> None:
    # d = 1 only on zero outcomes: the ML estimate of its coefficient is -inf
    rng = np.random.default_rng(7)
    a = np.repeat(np.arange(20), 6)
    b = np.tile(np.arange(6), 20)
    y = rng.poisson(5, a.size).astype(float)
    d = np.zeros(a.size)
    sep_rows = np.array([2, 15, 40, 77])
    y[sep_rows] = 0.0
    d[sep_rows] = 1.0
    x = rng.normal(size=a.size)
    fit = fit_ppml(y, np.column_stack([x, d]), [a, b])
    np.testing.assert_array_equal(np.flatnonzero(fit.separated), sep_rows)
    assert fit.n_obs == a.size - 4
    # d is all-zero after removal: collinear with the fixed effects, dropped
    assert fit.dropped_columns.tolist() == [False, True]
    assert np.isnan(fit.beta[1]) and np.isfinite(fit.beta[0])
    # without the check, the fit signals the problem through tiny fitted means
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        naive = fit_ppml(y, np.column_stack([x, d]), [a, b], separation=("fe",), maxiter=200)
    assert naive.possibly_separated >= 1 or not naive.converged or naive.beta[1] < -10


def test_fit_ppml_reports_non_convergence() -> None:
    a, b, rng = _unbalanced(8)
    y = rng.poisson(3, a.size).astype(float)
    with pytest.warns(ConvergenceWarning):
        fit = fit_ppml(y, rng.normal(size=(a.size, 1)), [a, b], maxiter=1)
    assert fit.converged is False and fit.n_iter == 1


def test_bad_input_raises() -> None:
    a, b, rng = _unbalanced(9)
    X = rng.normal(size=(a.size, 1))
    X[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        absorb(X, [a, b])
    with pytest.raises(ValueError, match="non-negative"):
        fit_ppml(-np.ones(a.size), np.ones((a.size, 1)), [a, b])
    with pytest.raises(ValueError, match="length"):
        FixedEffects([a, b[:-1]])


def _demean_one_column(fx: FixedEffects, x0: np.ndarray, w: np.ndarray | None, tol: float,
                       start: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Reference: alternating projections with Irons-Tuck steps on one column, written out
    with 1-D bincount group means (the column-by-column algorithm the package used before
    it swept all columns together)."""
    inv = []
    for c, g in zip(fx.codes, fx.n_levels):
        ws = np.bincount(c, weights=np.ones_like(x0) if w is None else w, minlength=g)
        inv.append(np.divide(1.0, ws, out=np.zeros_like(ws), where=ws > 0))

    def sweep(x: np.ndarray) -> np.ndarray:
        for c, g, iv in zip(fx.codes, fx.n_levels, inv):
            x = x - (np.bincount(c, weights=x if w is None else w * x, minlength=g) * iv)[c]
        return x

    x = sweep(x0 if start is None else start)
    if fx.n_dims == 1:
        return x, 1
    thr = tol * max(1.0, float(np.sqrt(np.mean(x0 * x0))))
    ww = np.ones_like(x0) if w is None else w
    it = 1
    while True:
        x1 = sweep(x)
        it += 1
        if np.max(np.abs(x1 - x)) <= thr:
            return x1, it
        x2 = sweep(x1)
        it += 1
        delta = x2 - x1
        if np.max(np.abs(delta)) <= thr:
            return x2, it
        d2 = delta - (x1 - x)
        denom = float(np.sum(ww * d2 * d2))
        x = x2 - (float(np.sum(ww * delta * d2)) / denom) * delta if denom > 0 else x2


@pytest.mark.parametrize("n_dims", [1, 2, 3])
@pytest.mark.parametrize("n_rows", [400, 5_000, 40_000])
@pytest.mark.parametrize("weighted", [False, True])
def test_demeaning_all_columns_at_once_equals_column_by_column(n_dims: int, n_rows: int, weighted: bool) -> None:
    """Columns of very different scales (converging after different numbers of sweeps),
    small samples (all columns in one block), medium (blocks of a few columns) and large
    (one column per block): every column equals the one-column algorithm to 1e-12, and the
    reported iteration count is the largest over columns."""
    rng = np.random.default_rng(n_rows + n_dims)
    a = rng.integers(0, max(n_rows // 12, 3), n_rows)
    b = rng.integers(0, 12, n_rows)
    fe = [a, b, (a % 6) * 12 + b][:n_dims]
    fx = FixedEffects(fe)
    X = rng.normal(size=(n_rows, 7)) * np.array([1.0, 1e3, 1e-3, 5.0, 1.0, 1.0, 0.0])
    X[:, 4] = (a % 3 == 0) + 0.1 * b  # nearly absorbed by the fixed effects
    X[:, 5] = a % 4  # exactly a function of the first fixed effect
    X = X + 0.5 * rng.normal(size=n_rows)[:, None] * (b[:, None] % 2)
    w = rng.uniform(0.2, 4.0, n_rows) if weighted else None
    out, it = fx.demean(X, weights=w, tol=1e-10, return_iterations=True)
    # two dimensions, one small: the sweeps start at the exact projection (TwoWayProjection)
    proj = TwoWayProjection.for_(fx)
    assert (proj is not None) == (n_dims == 2)

    its = []
    for j in range(X.shape[1]):
        if proj is not None:  # the exact projection, checked column by column: no sweeps
            ref, it_j = proj.demean(X[:, [j]], w)[:, 0], 0
            for c, g in zip(fx.codes, fx.n_levels):  # a sweep would change no value by more than tol
                wj = np.ones(n_rows) if w is None else w
                means = np.bincount(c, weights=wj * ref, minlength=g) / np.maximum(np.bincount(c, weights=wj, minlength=g), 1e-300)
                assert np.abs(means).max() <= 1e-10 * max(1.0, float(np.sqrt(np.mean(X[:, j] ** 2))))
        else:
            ref, it_j = _demean_one_column(fx, X[:, j], w, 1e-10)
        its.append(it_j)
        np.testing.assert_allclose(out[:, j], ref, rtol=0, atol=1e-12 * max(1.0, np.abs(X[:, j]).max()))
    assert it == max(its)
    if proj is not None:
        assert it == 0
    # warm start (as the PPML iterations use it; superseded by the exact projection) and a single 1-D column
    start = X - 0.3 * (a % 5)[:, None]
    out_s = fx.demean(X, weights=w, start=start)
    for j in (0, 3):
        if proj is not None:
            ref = out[:, j]
        else:
            ref, _ = _demean_one_column(fx, X[:, j], w, 1e-10, start=start[:, j])
        np.testing.assert_allclose(out_s[:, j], ref, rtol=0, atol=1e-12 * max(1.0, np.abs(X[:, j]).max()))
    np.testing.assert_allclose(fx.demean(X[:, 1], weights=w), out[:, 1], rtol=0, atol=1e-12 * 1e3)


def test_exact_projection_left_short_is_swept_to_the_fixed_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the exact two-way projection misses the fixed point (as rounding in its small solve
    could), that column alone is swept from it: the result equals the sweeps from scratch, the
    other columns stay the projection itself, and the sweeps are counted."""
    rng = np.random.default_rng(3)
    n = 2500
    a, b = rng.integers(0, 200, n), rng.integers(0, 9, n)
    fx = FixedEffects([a, b], names=["corridor", "year"])
    X = rng.normal(size=(n, 3)) + 0.05 * a[:, None]
    w = np.exp(rng.normal(0, 1, n))
    exact = TwoWayProjection(fx).demean(X, w)
    real = TwoWayProjection.demean_rows

    def short(self: TwoWayProjection, x: np.ndarray, wt: np.ndarray | None) -> np.ndarray:
        out = real(self, x, wt)
        out[1] += 1e-4 * (a % 7)  # off the fixed point by a combination of corridor dummies
        return out

    monkeypatch.setattr(TwoWayProjection, "demean_rows", short)
    got, it = FixedEffects([a, b]).demean(X, weights=w, tol=1e-10, return_iterations=True)
    assert it > 0
    np.testing.assert_array_equal(got[:, [0, 2]], exact[:, [0, 2]])
    scratch = FixedEffects([a, b, np.zeros(n, dtype=int)]).demean(X[:, 1], weights=w, tol=1e-13)
    np.testing.assert_allclose(got[:, 1], scratch, rtol=0, atol=1e-9)
    assert np.abs(got[:, 1] - short(TwoWayProjection(fx), np.ascontiguousarray(X.T), w)[1]).max() > 1e-5


def test_two_way_projection_effects_add_up_to_the_fitted_values() -> None:
    """The coefficients of the exact two-way projection: each row's two coefficients add up to the
    column minus its within transformation (weighted and unweighted), and the small dimension's
    first level is 0."""
    rng = np.random.default_rng(8)
    n = 3000
    big, small = rng.integers(0, 300, n), rng.integers(0, 11, n)
    x = rng.normal(size=n) + 0.1 * big + 0.5 * small
    for order in ((big, small), (small, big)):
        fx = FixedEffects(list(order))
        proj = TwoWayProjection(fx)
        for w in (None, np.exp(rng.normal(0, 1, n))):
            eff = proj.effects(x, w)
            fitted = eff[0][fx.codes[0]] + eff[1][fx.codes[1]]
            np.testing.assert_allclose(fitted, x - proj.demean(x[:, None], w)[:, 0], rtol=0, atol=1e-10)
            assert eff[proj.small][0] == 0.0
