"""Confidence sets robust to violations of parallel trends (Rambachan & Roth 2023).

The event-study coefficients ``beta = (beta_pre, beta_post)`` (pre periods then post
periods, the reference period left out: it is normalised to zero) estimate
``beta = tau + delta`` with ``tau_pre = 0``: ``delta`` is the difference in trends between
treated and control units that parallel trends assume away. Instead of ``delta_post = 0``
the analyst restricts ``delta`` to a set ``Delta`` and asks what the data then say about
``theta = l' tau_post`` (``target``: the first post period, the average, or weights ``l``).

Restrictions
    ``"relative_magnitude"``, ``Delta^RM(Mbar)``: no post-period change in the trend
    difference (``delta_t - delta_{t-1}``, with ``delta = 0`` in the reference period) is
    larger than ``Mbar`` times the largest such change between consecutive pre periods.
    ``Mbar = 1``: the post-period violation is no worse than the worst pre-period one.
    ``"smoothness"``, ``Delta^SD(M)``: the slope of the trend difference changes by at most
    ``M`` (outcome units per period) between consecutive periods; ``M = 0`` allows only an
    exactly linear trend, extrapolated from the pre periods.
    Optional: ``bias_sign`` ("positive"/"negative": ``delta_post >= 0`` or ``<= 0``) and
    ``monotonicity`` ("increasing"/"decreasing": ``delta`` monotone over all periods).

Methods
    ``"C-LF"`` (default for relative magnitudes) and ``"conditional"``: test inversion of the
    Andrews-Roth-Pakes moment-inequality tests (:mod:`._moment_tests`) over a grid of
    ``theta``, endpoints refined between grid points; ``Delta^RM`` is a union of
    ``2 * n_pre`` polyhedra (which pre-period change is the largest, and its sign) and the
    set is the union of the polyhedra's acceptance sets, reported as its hull. With more
    than one post period, moments that involve only pre-period coefficients are left out
    of the test (the R package's default), which keeps the test valid.
    ``"FLCI"`` (default for smoothness without sign/shape restrictions): the optimal
    fixed-length confidence interval ``v'beta +/- chi``, ``v`` chosen to minimise the length
    given the worst-case bias over ``Delta^SD(M)``.

All intervals use the normal distribution (as the R package HonestDiD does), whatever the
reference distribution of the event study. Units are those of the coefficients: log
points for Poisson models (:func:`honest_did` adds percentages ``100 (exp(x) - 1)``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import ndtr, ndtri

from ._moment_tests import LF_DRAWS, MomentInequalityTest

logger = logging.getLogger(__name__)

__all__ = [
    "EventStudyCoefficients",
    "event_study_coefficients",
    "honest_did",
    "breakdown",
    "Breakdown",
    "original_interval",
    "flci",
    "RESTRICTIONS",
    "METHODS",
]

RESTRICTIONS = ("relative_magnitude", "smoothness")
METHODS = ("C-LF", "conditional", "FLCI")
_SIGNS = (None, "positive", "negative")
_MONOTONE = (None, "increasing", "decreasing")
DEFAULT_MBAR = (0.0, 0.5, 1.0, 1.5, 2.0)


# --------------------------------------------------------------------------- inputs
@dataclass
class EventStudyCoefficients:
    """Event-study coefficients ordered pre then post, the reference period excluded.

    ``labels``: relative periods (years since entry into force) of the coefficients;
    ``poisson``: coefficients are on the log scale; ``notes``: what was dropped or assumed.
    """

    beta: np.ndarray
    sigma: np.ndarray
    n_pre: int
    n_post: int
    labels: list[Any] = field(default_factory=list)
    poisson: bool = False
    model: str = ""
    notes: list[str] = field(default_factory=list)


def _is_period(k: Any) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))


def event_study_coefficients(result: Any) -> EventStudyCoefficients:
    """Pull ``beta``/``sigma`` from an event-study result of this package.

    Accepts ``event_study`` (linear and Poisson), ``sun_abraham(event_time=True)``,
    ``callaway_santanna(event_time=True, base_period="universal")`` and
    ``did_imputation(event_time=True, pretrends=K)`` and ``etwfe(control="never")`` (any
    aggregation: its event-time aggregates and their delta-method covariance,
    ``extra["event_vcov"]``, are used; log scale for Poisson). Coefficients are those with
    integer relative periods: negative = pre, zero or positive = post (for etwfe with
    ``anticipation=a``: from ``-a`` on, the reference period being ``-a - 1``). Periods with
    zero variance (a normalised base period) are dropped.
    """
    params = getattr(result, "params", None)
    vcov = getattr(result, "vcov", None)
    if params is None or vcov is None:
        raise TypeError(f"expected an EstimationResult with params and vcov, got {type(result).__name__}")
    model = str(getattr(result, "model", ""))
    notes: list[str] = []
    extra = getattr(result, "extra", {}) or {}
    call = extra.get("call", {}) or {}
    kwargs = call.get("kwargs", {}) or {}
    first_post = 0
    if model.startswith("etwfe"):
        if kwargs.get("control", "notyet") != "never":
            raise ValueError(
                "etwfe with control='notyet' has no pre-period (placebo) cells, so no pre-trend to extrapolate: "
                "re-estimate with control='never' (cells before the reference period cohort - 1 are then estimated)"
            )
        event_table = (getattr(result, "info", {}) or {}).get("aggregations", {}).get("event")
        if event_table is None or extra.get("event_vcov") is None:
            raise ValueError(f"result {model!r} has no event-time aggregation (info['aggregations']['event'] and "
                             "extra['event_vcov'])")
        params, vcov = event_table["estimate"], extra["event_vcov"]
        first_post = -int(kwargs.get("anticipation", 0))
        notes.append("etwfe event-time aggregates over the treated rows of each relative period, with their "
                     "delta-method covariance (extra['event_vcov']) from the clustered covariance of the fit")
        if first_post < 0:
            notes.append(f"anticipation={-first_post}: relative periods from {first_post} on count as post periods "
                         f"(reference period {first_post - 1})")
    if model.startswith("callaway_santanna") and kwargs.get("base_period", "varying") == "varying":
        raise ValueError(
            "callaway_santanna with base_period='varying' gives pre-period coefficients that are one-year "
            "changes, not trends relative to one reference year: re-estimate with base_period='universal'"
        )
    labels = sorted(k for k in params.index if _is_period(k))
    if not labels:
        raise ValueError(
            f"result {model!r} has no event-time coefficients (integer relative periods); estimate it with "
            "event_time=True (and pretrends=K for did_imputation)"
        )
    V = vcov.loc[labels, labels].to_numpy(dtype=float)
    var = np.diag(V)
    bad = [k for k, v in zip(labels, var) if not np.isfinite(v)]
    if bad:
        raise ValueError(f"result {model!r}: variance not identified (NaN) for relative periods {bad}")
    zero = [k for k, v in zip(labels, var) if v <= 0]
    if zero:
        notes.append(f"relative periods {zero} have zero variance (normalised) and were left out")
        labels = [k for k in labels if k not in zero]
        V = vcov.loc[labels, labels].to_numpy(dtype=float)
    pre = [k for k in labels if k < first_post]
    post = [k for k in labels if k >= first_post]
    if not pre or not post:
        raise ValueError(
            f"result {model!r} needs at least one pre-period (lead) and one post-period coefficient; "
            f"has leads {pre} and lags {post}"
        )
    full = list(range(pre[0], post[-1] + 1))
    missing = [k for k in full if k not in labels]
    if len(missing) == 1 and pre[-1] < missing[0] < post[0]:
        pass  # the usual reference period between the leads and the lags
    elif not missing:
        notes.append(
            f"no omitted reference period between {pre[-1]} and {post[0]}: the leads are treated as measured "
            "against a reference just before the first post period"
        )
    else:
        notes.append(f"relative periods {missing} are missing: coefficients are treated as consecutive")
    if model.startswith("did_imputation"):
        notes.append("imputation leads come from a separate regression on untreated years (zero covariance with the lags)")
    beta = params.loc[labels].to_numpy(dtype=float)
    return EventStudyCoefficients(
        beta=beta, sigma=V, n_pre=len(pre), n_post=len(post), labels=list(labels),
        poisson=bool(getattr(result, "is_poisson", False)), model=model, notes=notes,
    )


def _coefficients(beta: Any, sigma: Any, n_pre: Any, n_post: Any) -> EventStudyCoefficients:
    if isinstance(beta, EventStudyCoefficients):
        return beta
    if hasattr(beta, "params") and hasattr(beta, "vcov"):
        if sigma is not None or n_pre is not None or n_post is not None:
            raise ValueError("give either an event-study result or beta, sigma, n_pre and n_post, not both")
        return event_study_coefficients(beta)
    if sigma is None or n_pre is None or n_post is None:
        raise ValueError("beta, sigma, n_pre and n_post are all required when beta is not an event-study result")
    b = np.asarray(beta, dtype=float).ravel()
    S = np.asarray(sigma, dtype=float)
    n_pre, n_post = int(n_pre), int(n_post)
    if n_pre < 1 or n_post < 1:
        raise ValueError(f"n_pre={n_pre}, n_post={n_post}: need at least one pre and one post period")
    if b.size != n_pre + n_post:
        raise ValueError(f"beta has {b.size} entries, n_pre + n_post = {n_pre + n_post}")
    if S.shape != (b.size, b.size):
        raise ValueError(f"sigma has shape {S.shape}, expected {(b.size, b.size)}")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(S))):
        raise ValueError("beta and sigma must be finite")
    if np.max(np.abs(S - S.T)) > 1e-8 * max(1e-300, np.max(np.abs(S))):
        raise ValueError("sigma is not symmetric")
    if np.linalg.eigvalsh((S + S.T) / 2).min() < -1e-10 * np.abs(S).max():
        raise ValueError("sigma is not positive semi-definite")
    labels = list(range(-n_pre - 1, -1)) + list(range(0, n_post))
    return EventStudyCoefficients(beta=b, sigma=(S + S.T) / 2, n_pre=n_pre, n_post=n_post, labels=labels)


def target_weights(target: str | Sequence[float] | np.ndarray, n_post: int) -> np.ndarray:
    """Weights ``l`` over the post periods: "first" (e_1), "average" (1/n_post) or explicit."""
    if isinstance(target, str):
        if target == "first":
            l = np.zeros(n_post)
            l[0] = 1.0
            return l
        if target == "average":
            return np.full(n_post, 1.0 / n_post)
        raise ValueError(f"target={target!r}: expected 'first', 'average' or {n_post} weights over the post periods")
    l = np.asarray(target, dtype=float).ravel()
    if l.size != n_post or not np.all(np.isfinite(l)) or not np.any(l != 0):
        raise ValueError(f"target weights {list(l)}: need {n_post} finite weights, not all zero")
    return l


def _target_label(target: Any) -> str:
    return target if isinstance(target, str) else "weights " + ",".join(f"{w:g}" for w in np.ravel(target))


def original_interval(
    beta: Any, sigma: Any = None, n_pre: Any = None, n_post: Any = None, *, target: Any = "first", alpha: float = 0.05
) -> tuple[float, float, float]:
    """(estimate, lower, upper) of ``l' beta_post`` under parallel trends (normal interval)."""
    c = _coefficients(beta, sigma, n_pre, n_post)
    l = target_weights(target, c.n_post)
    est = float(l @ c.beta[c.n_pre:])
    se = float(np.sqrt(l @ c.sigma[c.n_pre:, c.n_pre:] @ l))
    z = float(stats.norm.ppf(1 - alpha / 2))
    return est, est - z * se, est + z * se


# --------------------------------------------------------------------------- restriction sets
def _extension(n_pre: int, n_post: int) -> np.ndarray:
    """(n+1) x n matrix inserting the reference period (delta = 0) between pre and post."""
    n = n_pre + n_post
    E = np.zeros((n + 1, n))
    E[:n_pre, :n_pre] = np.eye(n_pre)
    E[n_pre + 1:, n_pre:] = np.eye(n_post)
    return E


def first_differences(n_pre: int, n_post: int) -> np.ndarray:
    """n x n: ``delta -> (delta_t - delta_{t-1})`` over consecutive periods incl. the reference.

    Rows 0..n_pre-1 are the pre-period changes (the last one ends at the reference period),
    rows n_pre.. the post-period changes (the first one starts at the reference period).
    """
    E = _extension(n_pre, n_post)
    return np.diff(E, axis=0)


def second_differences(n_pre: int, n_post: int) -> np.ndarray:
    """(n-1) x n: ``delta -> delta_{t+1} - 2 delta_t + delta_{t-1}`` incl. the reference period."""
    E = _extension(n_pre, n_post)
    return np.diff(E, n=2, axis=0)


def _shape_rows(n_pre: int, n_post: int, bias_sign: str | None, monotonicity: str | None) -> tuple[np.ndarray, np.ndarray]:
    if bias_sign not in _SIGNS:
        raise ValueError(f"bias_sign={bias_sign!r}: expected one of {_SIGNS}")
    if monotonicity not in _MONOTONE:
        raise ValueError(f"monotonicity={monotonicity!r}: expected one of {_MONOTONE}")
    n = n_pre + n_post
    rows = []
    if bias_sign is not None:
        P = np.zeros((n_post, n))
        P[:, n_pre:] = np.eye(n_post)
        rows.append(-P if bias_sign == "positive" else P)
    if monotonicity is not None:
        D = first_differences(n_pre, n_post)
        rows.append(-D if monotonicity == "increasing" else D)
    if not rows:
        return np.zeros((0, n)), np.zeros(0)
    A = np.vstack(rows)
    return A, np.zeros(A.shape[0])


def _drop_zero_rows(A: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.any(np.abs(A) > 1e-14, axis=1)
    if np.any(~keep & (d < 0)):
        raise ValueError("restriction set is empty")
    return A[keep], d[keep]


def relative_magnitude_polyhedra(
    n_pre: int, n_post: int, mbar: float, bias_sign: str | None = None, monotonicity: str | None = None
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``Delta^RM(Mbar)`` as the union of ``2 n_pre`` polyhedra ``{A delta <= d}``.

    Polyhedron (s, +): the pre-period change ``s`` is non-negative and the largest in absolute
    value among the pre-period changes, and every post-period change is at most ``Mbar``
    times it in absolute value; (s, -) the same with the sign reversed.
    """
    if not np.isfinite(mbar) or mbar < 0:
        raise ValueError(f"Mbar={mbar}: must be a finite number >= 0")
    D = first_differences(n_pre, n_post)
    As, ds = _shape_rows(n_pre, n_post, bias_sign, monotonicity)
    out = []
    for s in range(n_pre):
        for sign in (1.0, -1.0):
            v = sign * D[s]
            rows = []
            for r in range(n_pre):
                rows += [D[r] - v, -D[r] - v]
            for t in range(n_pre, n_pre + n_post):
                rows += [D[t] - mbar * v, -D[t] - mbar * v]
            A = np.vstack(rows + ([As] if As.size else []))
            d = np.concatenate([np.zeros(len(rows)), ds])
            A, d = _drop_zero_rows(A, d)
            out.append((A, d, f"s={s - n_pre + 1},{'+' if sign > 0 else '-'}"))
    return out


def smoothness_polyhedron(
    n_pre: int, n_post: int, m: float, bias_sign: str | None = None, monotonicity: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``Delta^SD(M) = {delta: |second differences| <= M}`` (plus optional sign/shape rows)."""
    if not np.isfinite(m) or m < 0:
        raise ValueError(f"M={m}: must be a finite number >= 0")
    D2 = second_differences(n_pre, n_post)
    As, ds = _shape_rows(n_pre, n_post, bias_sign, monotonicity)
    A = np.vstack([D2, -D2] + ([As] if As.size else []))
    d = np.concatenate([np.full(2 * D2.shape[0], float(m)), ds])
    return _drop_zero_rows(A, d)


# --------------------------------------------------------------------------- identified set
def _identified_set(c: EventStudyCoefficients, l: np.ndarray, A: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """Range of ``l' tau_post`` when ``beta`` is known exactly (``delta_pre = beta_pre``); NaN if empty."""
    npre = c.n_pre
    Apre, Apost = A[:, :npre], A[:, npre:]
    rhs = d - Apre @ c.beta[:npre]
    keep = np.any(np.abs(Apost) > 1e-14, axis=1)
    if np.any(rhs[~keep] < -1e-12):
        return np.nan, np.nan
    bounds = [(None, None)] * c.n_post
    vals = []
    for sgn in (1.0, -1.0):
        res = optimize.linprog(sgn * l, A_ub=Apost[keep], b_ub=rhs[keep], bounds=bounds, method="highs")
        if res.status == 2:
            return np.nan, np.nan
        if res.status == 3:
            vals.append(-np.inf if sgn > 0 else np.inf)
            continue
        if res.status != 0:
            raise RuntimeError(f"identified-set linear program failed: {res.message}")
        vals.append(float(l @ res.x))
    dmin, dmax = vals  # min and max of l'delta_post
    est = float(l @ c.beta[npre:])
    return est - dmax, est - dmin


# --------------------------------------------------------------------------- conditional CIs
def _moment_test(c: EventStudyCoefficients, l: np.ndarray, A: np.ndarray, d: np.ndarray, method: str,
                 alpha: float, n_sim: int, seed: int) -> MomentInequalityTest:
    npre = c.n_pre
    if c.n_post > 1:
        # as the R package (postPeriodMomentsOnly): moments that involve only pre-period
        # coefficients are left out of the test when there are nuisance parameters
        keep = np.any(np.abs(A[:, npre:]) > 1e-14, axis=1)
        A, d = A[keep], d[keep]
    Apost = A[:, npre:]
    ll = float(l @ l)
    # tau_post = theta l / l'l + N t, N spans the directions with l'tau = 0
    N = np.linalg.svd(l[None, :])[2][1:].T if c.n_post > 1 else np.zeros((1, 0))
    y0 = A @ c.beta - d
    a = Apost @ l / ll
    X = Apost @ N
    return MomentInequalityTest(y0=y0, a=a, X=X, sigma_y=A @ c.sigma @ A.T, alpha=alpha, method=method,
                                n_sim=n_sim, seed=seed)


def _accepted(tests: list[MomentInequalityTest], theta: np.ndarray) -> np.ndarray:
    acc = np.zeros(theta.size, dtype=bool)
    for t in tests:
        acc |= ~t.reject(theta)
    return acc


def _invert(tests: list[MomentInequalityTest], lo: float, hi: float, grid_points: int) -> tuple[float, float]:
    """Hull of the accepted thetas: grid search on [lo, hi] (widened if needed), endpoints refined."""
    for _ in range(6):
        grid = np.linspace(lo, hi, grid_points)
        acc = _accepted(tests, grid)
        if not acc.any():
            return np.nan, np.nan
        if acc[0] or acc[-1]:
            width = hi - lo
            lo, hi = (lo - 2 * width if acc[0] else lo), (hi + 2 * width if acc[-1] else hi)
            continue
        idx = np.flatnonzero(acc)
        ends = []
        for rej, ok in ((grid[idx[0] - 1], grid[idx[0]]), (grid[idx[-1] + 1], grid[idx[-1]])):
            for _ in range(3):  # three rounds of 64 points: 1 / 64^3 of a grid step
                pts = np.linspace(rej, ok, 66)[1:-1]
                a = _accepted(tests, pts)
                if a.any():
                    j = int(np.argmax(a))
                    rej, ok = (pts[j - 1] if j else rej), pts[j]
                else:
                    rej = pts[-1]
            ends.append(ok)
        return float(ends[0]), float(ends[1])
    lb = -np.inf if _accepted(tests, np.array([lo]))[0] else lo
    ub = np.inf if _accepted(tests, np.array([hi]))[0] else hi
    logger.warning("robust confidence set reaches the search limits; reported as unbounded")
    return lb, ub


def _conditional_interval(c: EventStudyCoefficients, l: np.ndarray, polyhedra: list[tuple[np.ndarray, np.ndarray]],
                          method: str, alpha: float, grid_points: int, n_sim: int, seed: int) -> tuple[float, float]:
    tests = [_moment_test(c, l, A, d, method, alpha, n_sim, seed) for A, d in polyhedra]
    sd = float(np.sqrt(l @ c.sigma[c.n_pre:, c.n_pre:] @ l))
    ids = [_identified_set(c, l, A, d) for A, d in polyhedra]
    lows = [a for a, _ in ids if np.isfinite(a)]
    highs = [b for _, b in ids if np.isfinite(b)]
    est = float(l @ c.beta[c.n_pre:])
    lo = (min(lows) if lows else est) - 20 * sd
    hi = (max(highs) if highs else est) + 20 * sd
    return _invert(tests, lo, hi, grid_points)


# --------------------------------------------------------------------------- FLCI
def _folded_normal_quantile(t: float, level: float) -> float:
    """``level`` quantile of |N(t, 1)|: the root of Phi(c - t) - Phi(-c - t) = level.

    The root lies in [t + z_level, t + z_{(1+level)/2}] (t >= 0).
    """
    t = abs(float(t))
    lo, hi = t + float(ndtri(level)), t + float(ndtri((1 + level) / 2))
    def f(c: float) -> float:
        return float(ndtr(c - t) - ndtr(-c - t) - level)

    if f(lo) >= 0:  # the lower tail is negligible (large t)
        return lo
    if f(hi) <= 0:
        return hi
    return float(optimize.brentq(f, lo, hi, xtol=1e-15, rtol=1e-15))


def flci(beta: Any, sigma: Any = None, n_pre: Any = None, n_post: Any = None, *, m: float = 0.0,
         target: Any = "first", alpha: float = 0.05) -> dict[str, Any]:
    """Optimal fixed-length confidence interval for ``l' tau_post`` under ``Delta^SD(M)``.

    Affine estimators ``v'beta`` with ``v_post = l`` and ``v`` orthogonal to a linear trend
    through the reference period (otherwise the worst-case bias is infinite). Over
    ``Delta^SD(M)`` the worst-case bias is ``M * ||K'v||_1`` with ``K`` a right inverse of
    the second-difference operator; the half-length is ``sd * cv_alpha(bias / sd)``,
    ``cv_alpha(b)`` the ``1 - alpha`` quantile of ``|N(b, 1)|``. The half-length is convex in
    ``v``: minimised numerically from the minimum-variance ``v``.
    Returns a dict with ``lb, ub, estimate, half_length, bias, sd, v``.
    """
    c = _coefficients(beta, sigma, n_pre, n_post)
    l = target_weights(target, c.n_post)
    if not np.isfinite(m) or m < 0:
        raise ValueError(f"M={m}: must be a finite number >= 0")
    npre = c.n_pre
    pos = np.concatenate([np.arange(-npre, 0), np.arange(1, c.n_post + 1)]).astype(float)
    K = np.linalg.pinv(second_differences(npre, c.n_post))  # n x (n-1)
    target_pre = -float(l @ pos[npre:])  # v_pre' pos_pre must equal this
    ppre = pos[:npre]
    v0 = ppre * target_pre / float(ppre @ ppre)
    N = np.linalg.svd(ppre[None, :])[2][1:].T if npre > 1 else np.zeros((npre, 0))
    S = c.sigma

    def parts(z: np.ndarray) -> tuple[np.ndarray, float, float]:
        v = np.concatenate([v0 + N @ z, l])
        sd = float(np.sqrt(max(v @ S @ v, 0.0)))
        bias = float(m * np.abs(K.T @ v).sum())
        return v, sd, bias

    def half_length(z: np.ndarray) -> float:
        _, sd, bias = parts(z)
        if sd <= 0:
            return np.inf if bias > 0 else 0.0
        return sd * _folded_normal_quantile(bias / sd, 1 - alpha)

    z0 = np.zeros(N.shape[1])
    if N.shape[1]:
        # minimum-variance start: minimise (v0 + N z, l)' S (v0 + N z, l)
        W = np.vstack([N, np.zeros((c.n_post, N.shape[1]))])
        u = np.concatenate([v0, l])
        z0 = -np.linalg.lstsq(W.T @ S @ W, W.T @ S @ u, rcond=None)[0]
        best = z0
        res = optimize.minimize(half_length, best, method="Nelder-Mead",
                                options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20000, "maxfev": 40000})
        if half_length(res.x) < half_length(best):
            best = res.x
        if m > 0:
            # the L1 bias has kinks where Nelder-Mead stalls: polish the smooth epigraph form
            # min sd(v) cv(M sum(u) / sd(v)) subject to -u <= K'v <= u (linear constraints)
            q = N.shape[1]
            Kp, kl = K.T[:, :npre], K.T[:, npre:] @ l

            def kv(x: np.ndarray) -> np.ndarray:
                return Kp @ (v0 + N @ x[:q]) + kl

            def smooth(x: np.ndarray) -> float:
                v = np.concatenate([v0 + N @ x[:q], l])
                sd = float(np.sqrt(max(v @ S @ v, 1e-300)))
                return sd * _folded_normal_quantile(m * float(np.sum(x[q:])) / sd, 1 - alpha)

            cons = [{"type": "ineq", "fun": lambda x: x[q:] - kv(x)},
                    {"type": "ineq", "fun": lambda x: x[q:] + kv(x)}]
            for _ in range(3):
                x0 = np.concatenate([best, np.abs(kv(np.concatenate([best, np.zeros(K.shape[1])])))])
                scale = max(half_length(best), 1e-300)
                r = optimize.minimize(lambda x: smooth(x) / scale, x0, constraints=cons, method="SLSQP",
                                      options={"ftol": 1e-15, "maxiter": 1000})
                if half_length(r.x[:q]) < half_length(best) * (1 - 1e-13):
                    best = r.x[:q]
                else:
                    break
        z0 = best
    v, sd, bias = parts(z0)
    chi = half_length(z0)
    est = float(v @ c.beta)
    return {"lb": est - chi, "ub": est + chi, "estimate": est, "half_length": chi, "bias": bias, "sd": sd, "v": v}


# --------------------------------------------------------------------------- public API
def _check_method(restriction: str, method: str | None, bias_sign: str | None, monotonicity: str | None) -> str:
    if restriction not in RESTRICTIONS:
        raise ValueError(f"restriction={restriction!r}: expected one of {RESTRICTIONS}")
    if method is None:
        if restriction == "smoothness" and bias_sign is None and monotonicity is None:
            return "FLCI"
        return "C-LF"
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    if method == "FLCI" and restriction != "smoothness":
        raise ValueError("method='FLCI' is for restriction='smoothness'; relative magnitudes use 'C-LF' or 'conditional'")
    if method == "FLCI" and (bias_sign is not None or monotonicity is not None):
        raise ValueError("method='FLCI' is optimal for the symmetric set Delta^SD only; "
                         "with bias_sign or monotonicity use 'C-LF' or 'conditional'")
    return method


def _robust_interval(c: EventStudyCoefficients, l: np.ndarray, restriction: str, m: float, method: str, alpha: float,
                     bias_sign: str | None, monotonicity: str | None, grid_points: int, n_sim: int,
                     seed: int) -> tuple[float, float]:
    if method == "FLCI":
        out = flci(c, m=m, target=l, alpha=alpha)
        return out["lb"], out["ub"]
    if restriction == "relative_magnitude":
        polys = [(A, d) for A, d, _ in relative_magnitude_polyhedra(c.n_pre, c.n_post, m, bias_sign, monotonicity)]
    else:
        polys = [smoothness_polyhedron(c.n_pre, c.n_post, m, bias_sign, monotonicity)]
    return _conditional_interval(c, l, polys, method, alpha, grid_points, n_sim, seed)


def honest_did(
    beta: Any,
    sigma: Any = None,
    n_pre: int | None = None,
    n_post: int | None = None,
    *,
    restriction: str = "relative_magnitude",
    m: Sequence[float] | float | None = None,
    method: str | None = None,
    target: str | Sequence[float] = "first",
    alpha: float = 0.05,
    bias_sign: str | None = None,
    monotonicity: str | None = None,
    grid_points: int = 1000,
    n_sim: int = LF_DRAWS,
    seed: int = 0,
) -> pd.DataFrame:
    """Robust confidence intervals for ``l' tau_post``, one row per value of ``m`` (Mbar or M).

    ``beta``: event-study coefficients ordered pre then post (reference period excluded)
    with covariance ``sigma``, or an event-study result of this package (then ``sigma``,
    ``n_pre``, ``n_post`` are taken from it). ``m`` defaults to Mbar = 0, 0.5, 1, 1.5, 2 for
    relative magnitudes and to M = 0, 0.25, ..., 1 times the standard error of the original
    estimate for smoothness. ``grid_points`` of theta are tested (endpoints then refined);
    ``n_sim`` draws with ``seed`` give the least-favourable critical value of C-LF (default
    ``LF_DRAWS`` = 10,000: with another seed the bounds move at the third digit).

    Columns: ``restriction, method, m, lb, ub, original_estimate, original_lb, original_ub,
    target, alpha``; Poisson results add ``pct_lb, pct_ub, pct_original_lb, pct_original_ub``
    (``100 (exp(x) - 1)``). ``df.attrs`` records periods, model and notes.
    """
    c = _coefficients(beta, sigma, n_pre, n_post)
    method = _check_method(restriction, method, bias_sign, monotonicity)
    _shape_rows(c.n_pre, c.n_post, bias_sign, monotonicity)  # validates the names
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha}: must be in (0, 1)")
    if int(grid_points) < 10:
        raise ValueError(f"grid_points={grid_points}: need at least 10")
    l = target_weights(target, c.n_post)
    est, olb, oub = original_interval(c, target=l, alpha=alpha)
    if m is None:
        if restriction == "relative_magnitude":
            ms = list(DEFAULT_MBAR)
        else:
            se = (oub - olb) / (2 * stats.norm.ppf(1 - alpha / 2))
            ms = list(np.linspace(0, se, 5))
    else:
        ms = [float(x) for x in np.atleast_1d(np.asarray(m, dtype=float))]
    bad = [x for x in ms if not np.isfinite(x) or x < 0]
    if bad or not ms:
        raise ValueError(f"m={list(np.atleast_1d(m))}: values must be finite and >= 0")
    rows = []
    for mv in ms:
        lb, ub = _robust_interval(c, l, restriction, mv, method, alpha, bias_sign, monotonicity,
                                  int(grid_points), int(n_sim), int(seed))
        rows.append({"restriction": restriction, "method": method, "m": mv, "lb": lb, "ub": ub})
    out = pd.DataFrame(rows)
    out["original_estimate"], out["original_lb"], out["original_ub"] = est, olb, oub
    out["target"] = _target_label(target)
    out["alpha"] = alpha
    if c.poisson:
        for col in ("lb", "ub", "original_lb", "original_ub"):
            out[f"pct_{col}"] = 100.0 * np.expm1(out[col])
    out.attrs.update(
        {
            "n_pre": c.n_pre, "n_post": c.n_post, "labels": list(c.labels), "model": c.model,
            "scale": "log points" if c.poisson else "outcome units", "bias_sign": bias_sign,
            "monotonicity": monotonicity, "notes": list(c.notes), "weights": list(l),
        }
    )
    return out


@dataclass
class Breakdown:
    """Smallest ``m`` (Mbar or M) whose robust interval includes zero, found by bisection.

    ``value``: 0 when the interval at m = 0 already includes zero; ``inf`` when it excludes
    zero up to ``m_max``. The true breakdown point lies in ``[value - tol, value]``.
    """

    value: float
    restriction: str
    method: str
    target: str
    tol: float
    m_max: float
    sign: int  # sign of the original estimate

    @property
    def label(self) -> str:
        return "Mbar" if self.restriction == "relative_magnitude" else "M"

    def summary(self) -> str:
        if self.value == 0:
            return f"not significant at {self.label} = 0 ({self.method})"
        if not np.isfinite(self.value):
            return f"robust to every {self.label} up to {self.m_max:g} ({self.method})"
        return f"breakdown {self.label} = {self.value:.3g} (to within {self.tol:g}, {self.method})"

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<p>{self.summary()}</p>"


def breakdown(
    beta: Any,
    sigma: Any = None,
    n_pre: int | None = None,
    n_post: int | None = None,
    *,
    restriction: str = "relative_magnitude",
    method: str | None = None,
    target: str | Sequence[float] = "first",
    alpha: float = 0.05,
    bias_sign: str | None = None,
    monotonicity: str | None = None,
    tol: float | None = None,
    m_max: float | None = None,
    grid_points: int = 1000,
    n_sim: int = LF_DRAWS,
    seed: int = 0,
) -> Breakdown:
    """Breakdown value: the smallest Mbar (or M) at which the robust interval includes zero.

    Bisection on ``[0, m_max]`` to ``tol`` (defaults: relative magnitudes tol 0.01,
    m_max 20; smoothness tol 1% and m_max 20 times the standard error of the original
    estimate).
    """
    c = _coefficients(beta, sigma, n_pre, n_post)
    method = _check_method(restriction, method, bias_sign, monotonicity)
    l = target_weights(target, c.n_post)
    est, olb, oub = original_interval(c, target=l, alpha=alpha)
    se = (oub - olb) / (2 * stats.norm.ppf(1 - alpha / 2))
    unit = 1.0 if restriction == "relative_magnitude" else se
    tol = 0.01 * unit if tol is None else float(tol)
    m_max = 20.0 * unit if m_max is None else float(m_max)
    if tol <= 0 or m_max <= 0:
        raise ValueError(f"tol={tol}, m_max={m_max}: must be positive")

    def includes_zero(mv: float) -> bool:
        lb, ub = _robust_interval(c, l, restriction, mv, method, alpha, bias_sign, monotonicity,
                                  grid_points, n_sim, seed)
        return bool(lb <= 0 <= ub)

    info = dict(restriction=restriction, method=method, target=_target_label(target), tol=tol, m_max=m_max,
                sign=int(np.sign(est)))
    if includes_zero(0.0):
        return Breakdown(value=0.0, **info)
    lo, hi = 0.0, min(unit, m_max)
    while not includes_zero(hi):
        lo = hi
        if hi >= m_max:
            return Breakdown(value=np.inf, **info)
        hi = min(2 * hi, m_max)
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if includes_zero(mid):
            hi = mid
        else:
            lo = mid
    return Breakdown(value=float(hi), **info)
