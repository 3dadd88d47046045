"""Sandwich variances (returnstudy.inference.cluster) against statsmodels and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from returnstudy.inference.cluster import cluster_vcov, meat_clustered, variance_not_identified, vcov_details


def _ols_data(seed: int = 0, n: int = 400, G: int = 25):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, G, n)
    h = rng.integers(0, 9, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n) + rng.normal(size=G)[g]])
    u = rng.normal(size=n) + rng.normal(size=G)[g] + 0.5 * rng.normal(size=9)[h]
    y = X @ [1.0, 0.5, -0.3] + u
    res = sm.OLS(y, X).fit()
    bread = np.linalg.inv(X.T @ X)
    return X, y, res, bread, g, h


def test_one_way_matches_statsmodels_cluster() -> None:
    X, y, res, bread, g, _ = _ols_data()
    V = cluster_vcov(X, res.resid, [g], bread)
    ref = res.get_robustcov_results(cov_type="cluster", groups=g).cov_params()
    np.testing.assert_allclose(V, ref, rtol=1e-10)


def test_hetero_matches_statsmodels_hc1_and_iid_matches_classical() -> None:
    X, y, res, bread, _, _ = _ols_data(1)
    V = cluster_vcov(X, res.resid, None, bread)
    np.testing.assert_allclose(V, res.get_robustcov_results(cov_type="HC1").cov_params(), rtol=1e-10)
    Vi = cluster_vcov(X, res.resid, None, bread, vcov_type="iid", scale=None)
    np.testing.assert_allclose(Vi, res.cov_params(), rtol=1e-10)


def test_two_way_is_cgm_combination_by_hand() -> None:
    X, y, res, bread, g, h = _ols_data(2)
    n, k = X.shape
    S = X * res.resid[:, None]
    gh = g * 100 + h
    _, gh_codes = np.unique(gh, return_inverse=True)
    V1 = bread @ meat_clustered(S, g) @ bread
    V2 = bread @ meat_clustered(S, h) @ bread
    V12 = bread @ meat_clustered(S, gh_codes) @ bread
    raw = V1 + V2 - V12
    V, det = vcov_details(X, res.resid, [g, h], bread, small_sample="none", eigen_fix=False)
    np.testing.assert_allclose(V, raw, rtol=1e-12)
    # fixest default: every term scaled by Gmin/(Gmin-1) * (n-1)/(n-k)
    Gmin = min(len(np.unique(g)), len(np.unique(h)))
    Vd, det = vcov_details(X, res.resid, [g, h], bread, eigen_fix=False)
    np.testing.assert_allclose(Vd, raw * Gmin / (Gmin - 1) * (n - 1) / (n - k), rtol=1e-12)
    assert det.n_clusters == [len(np.unique(g)), 9] and det.df_t == Gmin - 1
    # conventional: each term with its own G
    Gs = [len(np.unique(g)), 9, len(np.unique(gh_codes))]
    Vc = cluster_vcov(X, res.resid, [g, h], bread, small_sample="conventional", eigen_fix=False)
    expected = (n - 1) / (n - k) * (
        Gs[0] / (Gs[0] - 1) * V1 + Gs[1] / (Gs[1] - 1) * V2 - Gs[2] / (Gs[2] - 1) * V12
    )
    np.testing.assert_allclose(Vc, expected, rtol=1e-12)


def test_two_way_eigenvalue_fix_makes_psd() -> None:
    # one observation per intersection cell and clusters that are nearly the same grouping:
    # V1 + V2 - V12 can then have a negative eigenvalue
    rng = np.random.default_rng(11)
    found = False
    for _ in range(200):
        n = 30
        g = rng.integers(0, 3, n)
        h = (g + (rng.random(n) < 0.3)) % 3
        X = rng.normal(size=(n, 3))
        u = rng.normal(size=n)
        bread = np.linalg.inv(X.T @ X)
        raw, d0 = vcov_details(X, u, [g, h], bread, small_sample="none", eigen_fix=False)
        if np.linalg.eigvalsh(raw).min() < 0:
            fixed, d1 = vcov_details(X, u, [g, h], bread, small_sample="none")
            assert d1.eigen_fix and not d0.eigen_fix
            assert np.linalg.eigvalsh(fixed).min() >= -1e-12
            vals, vecs = np.linalg.eigh(raw)
            np.testing.assert_allclose(fixed, (vecs * np.clip(vals, 0, None)) @ vecs.T, atol=1e-12)
            found = True
            break
    assert found, "no non-PSD example generated"


def test_df_k_enters_small_sample_factor() -> None:
    X, y, res, bread, g, _ = _ols_data(3)
    n, k = X.shape
    V_k = cluster_vcov(X, res.resid, [g], bread)
    V_50 = cluster_vcov(X, res.resid, [g], bread, df_k=50)
    np.testing.assert_allclose(V_50, V_k * (n - k) / (n - 50), rtol=1e-12)


def test_bad_arguments() -> None:
    X, y, res, bread, g, _ = _ols_data(4)
    with pytest.raises(ValueError, match="at least 2 clusters"):
        cluster_vcov(X, res.resid, [np.zeros(len(y))], bread)
    with pytest.raises(ValueError, match="small_sample"):
        cluster_vcov(X, res.resid, [g], bread, small_sample="stata")
    with pytest.raises(ValueError, match="rows"):
        cluster_vcov(X, res.resid[:-1], [g], bread)
    with pytest.raises(ValueError, match="vcov_type"):
        cluster_vcov(X, res.resid, [g], bread, vcov_type="HC3")


def test_unidentified_variance_nan_or_raise() -> None:
    # 2x2 DiD: 4 observations, 4 parameters, residuals identically zero
    scores = np.zeros((4, 1))
    bread = np.array([[4.0]])
    with pytest.raises(ValueError, match=r"degrees of freedom used \(4\) not below the number of observations \(4\)"):
        vcov_details(scores, None, None, bread, df_k=4)
    V, det = vcov_details(scores, None, None, bread, df_k=4, on_unidentified="nan")
    assert V.shape == (1, 1) and np.isnan(V).all() and not det.identified
    assert det.note.startswith("variance not identified: no residual degrees of freedom (4 observations, 4 parameters)")
    assert "NOT IDENTIFIED" in det.describe()
    # clustered: the fixest K (nested effects counted once) is below n, but the residual df is zero
    V, det = vcov_details(scores, None, [np.array([0, 0, 1, 1])], bread, df_k=3, df_resid=0, on_unidentified="nan")
    assert np.isnan(V).all() and det.n_clusters == [2] and det.df_t == 1
    # a single cluster
    rng = np.random.default_rng(0)
    s = rng.normal(size=(10, 2))
    V, det = vcov_details(s, None, [np.zeros(10)], np.eye(2), df_k=3, on_unidentified="nan")
    assert np.isnan(V).all() and "too few clusters ([1]; at least 2 per dimension needed)" in det.note
    with pytest.raises(ValueError, match="at least 2 clusters"):
        vcov_details(s, None, [np.zeros(10)], np.eye(2), df_k=3)
    # identified: identical to the default path
    V1, d1 = vcov_details(s, None, [np.arange(10) % 3], np.eye(2), df_k=3, on_unidentified="nan")
    V2, _ = vcov_details(s, None, [np.arange(10) % 3], np.eye(2), df_k=3)
    np.testing.assert_array_equal(V1, V2)
    assert d1.identified and variance_not_identified(10, 3, [3]) is None
    assert variance_not_identified(10, 10, []) is not None and variance_not_identified(10, 3, [2, 1]) is not None


def test_two_way_clipping_is_recorded_hand_case() -> None:
    # scores (1,-1,-1,1) and (1,1,1,1); clusters g = (0,0,1,1), h = (0,1,0,1), every g x h cell a
    # singleton, bread = I, no small-sample factor. First coefficient: V_g = 0^2 + 0^2 = 0,
    # V_h = 0^2 + 0^2 = 0, V_gh = 4 x 1^2 = 4 -> V = -4. Second: 8 + 8 - 4 = 12. Cross terms are 0.
    scores = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0], [1.0, 1.0]])
    g, h = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    raw, d0 = vcov_details(scores, None, [g, h], np.eye(2), small_sample="none", eigen_fix=False)
    np.testing.assert_allclose(raw, np.diag([-4.0, 12.0]), atol=1e-14)
    assert not d0.eigen_fix and d0.n_clipped == 0 and d0.eigen_fix_note() == ""
    V, d = vcov_details(scores, None, [g, h], np.eye(2), small_sample="none")
    np.testing.assert_allclose(V, np.diag([0.0, 12.0]), atol=1e-14)
    assert d.eigen_fix and d.n_clipped == 1
    assert d.min_eigenvalue == pytest.approx(-4.0, abs=1e-12)
    assert d.negative_variances == [0]
    note = d.eigen_fix_note(["a", "b"])
    assert "1 negative eigenvalue(s) set to zero (smallest -4)" in note and "unclipped variance of a was negative" in note
    assert "1 negative eigenvalue(s) set to 0 (smallest -4)" in d.describe()
    # one-way clustering never clips
    _, d1 = vcov_details(scores, None, [g], np.eye(2), small_sample="none")
    assert not d1.eigen_fix and d1.n_clipped == 0


def test_two_way_clipping_reported_by_estimator_and_estimates_unchanged(snapshot_dir) -> None:
    """The shipped two-way-clustered PPML (wodc spec) on the snapshot: the note and info say
    what was clipped; estimates equal the one-way fit, SEs equal the clipped CGM matrix."""
    import returnstudy as rs

    run = rs.run_study("wodc", snapshot_dir / "eurostat", models=False)
    treatments = ["eu_agreement", "eu_nonbinding", "bilateral_binding", "bilateral_protocol", "bilateral_nonbinding"]
    two = rs.ppml(run.sample, treatments=treatments, cluster=["citizen", "geo"])
    one = rs.ppml(run.sample, treatments=treatments, cluster="citizen")
    np.testing.assert_allclose(two.params, one.params, rtol=0, atol=1e-14)
    fit, design = two.extra["fit"], two.extra["design"]
    raw, _ = vcov_details(fit.scores, None, design.clusters, fit.bread, df_k=two.info["df_k"], eigen_fix=False)
    vals, vecs = np.linalg.eigh(raw)
    clipped = (vecs * np.clip(vals, 0, None)) @ vecs.T
    np.testing.assert_allclose(two.table["std_error"], np.sqrt(np.diag(clipped)), rtol=1e-10)
    fix = two.info["vcov_eigen_fix"]
    assert fix["n_clipped"] == int((vals < 0).sum()) >= 1
    assert fix["min_eigenvalue"] == pytest.approx(vals.min(), rel=1e-10)
    assert fix["negative_variances"] == [t for t, v in zip(two.params.index, np.diag(raw)) if v < 0]
    assert any("not positive semi-definite" in n for n in two.info["notes"])
    assert "vcov_eigen_fix" not in one.info
