"""Results of a multiverse run: the tidy table, the specification curve, what drives it.

One row per specification x treatment. Estimates of different estimators are on different
scales (Poisson: log rate ratios; linear: return-rate points), so every row also carries
``effect_pct`` with its 95% CI on one scale: the percent change in returns per order to leave,
``100 (exp(b) - 1)`` for Poisson models and ``100 b / mean return rate of the estimation
sample`` for linear ones (orders-weighted mean for orders-weighted models). The curve,
variance decomposition and flips use ``effect_pct``.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from returnstudy.multiverse import (
    FAILED, NOT_IDENTIFIED, OK, UNSUPPORTED, EngineContext, filter_rows, take_rows, _coding_kwargs, execute, fit_specification,
)
from returnstudy.multiverse_grid import NOT_APPLICABLE, Grid, Specification
from returnstudy.spec import StudySpec

log = logging.getLogger(__name__)

#: the study's published range for binding bilateral agreements (percent)
STUDY_RANGE = (5.0, 10.0)


def add_percent_scale(table: pd.DataFrame, specs: list[Specification]) -> pd.DataFrame:
    """Add ``scale``, ``effect_pct``, ``effect_pct_low``, ``effect_pct_high`` (see module doc)."""
    t = table.copy()
    poisson = np.array([_is_poisson(specs[int(i)].model) if pd.notna(i) else False for i in t["spec_id"]])
    t["scale"] = np.where(poisson, "log rate ratio", "return rate")
    mean = t["outcome_mean"].to_numpy(dtype=float)
    for src, dst in (("estimate", "effect_pct"), ("ci_low", "effect_pct_low"), ("ci_high", "effect_pct_high")):
        b = t[src].to_numpy(dtype=float)
        t[dst] = np.where(poisson, 100.0 * np.expm1(b), 100.0 * b / mean)
    return t


def _is_poisson(model: Any) -> bool:
    return model.get("estimator") == "ppml" or model.get("model") in ("poisson", "ppml")


@dataclass(repr=False)
class MultiverseResult:
    """Estimates of every specification of a grid; ``table`` is tidy (specification x treatment)."""

    table: pd.DataFrame
    grid: Grid
    spec: StudySpec
    info: dict[str, Any] = field(default_factory=dict)
    context: EngineContext | None = None
    specifications: list[Specification] = field(default_factory=list)
    context_hash: str = ""

    @property
    def dimensions(self) -> list[str]:
        return [d for d in self.grid.names if d in self.table.columns]

    def rows(self, treatment: str, status: str | None = OK) -> pd.DataFrame:
        t = self.table[self.table["treatment"] == treatment]
        if t.empty:
            raise KeyError(f"no rows for treatment {treatment!r}; treatments: {sorted(self.table['treatment'].unique())}")
        return t if status is None else t[t["status"] == status]

    # ------------------------------------------------------------------ summaries

    def shares(self, treatment: str, study_range: tuple[float, float] | None = STUDY_RANGE) -> dict[str, float]:
        """Shares of the estimated specifications whose 95% CI (percent scale) lies above zero,
        below zero, includes zero, and (with ``study_range``) overlaps the study's +5 to +10%."""
        t = self.rows(treatment)
        lo, hi = t["effect_pct_low"], t["effect_pct_high"]
        ok = lo.notna() & hi.notna()
        lo, hi = lo[ok], hi[ok]
        n = int(ok.sum())
        out = {"n_estimated": n, "n_total": int(len(self.rows(treatment, None))),
               "median_effect_pct": float(t.loc[ok, "effect_pct"].median()) if n else np.nan,
               "above_zero": float((lo > 0).mean()) if n else np.nan, "below_zero": float((hi < 0).mean()) if n else np.nan,
               "includes_zero": float(((lo <= 0) & (hi >= 0)).mean()) if n else np.nan}
        if study_range is not None:
            out["includes_study_range"] = float(((lo <= study_range[1]) & (hi >= study_range[0])).mean()) if n else np.nan
        return out

    def status_counts(self) -> pd.DataFrame:
        return self.table.pivot_table(index="treatment", columns="status", values="spec_id", aggfunc="count", fill_value=0)

    def summary(self) -> str:
        i = self.info
        lines = [f"Multiverse {self.grid.name!r} on spec {self.spec.study.name!r}: design {i.get('design')}, "
                 f"{i.get('specifications')} specifications, {len(self.table)} rows; {i.get('codings')} codings, "
                 f"{i.get('filter_runs')} filter runs, {i.get('samples')} samples built, {i.get('fits')} fits "
                 f"({i.get('resumed', 0)} specifications resumed) in {i.get('seconds', float('nan')):.1f} s on {i.get('backend')}"]
        for reason, k in (i.get("excluded") or {}).items():
            lines.append(f"excluded {k}: {reason}")
        for u in i.get("unavailable") or []:
            lines.append(f"left out: {u}")
        lines.append(self.status_counts().to_string())
        for t in self.table["treatment"].unique():
            if (self.table.query("treatment == @t")["status"] == OK).any():
                s = self.shares(t)
                lines.append(f"{t}: median {s['median_effect_pct']:+.1f}%; CI above 0 {s['above_zero']:.0%}, below 0 "
                             f"{s['below_zero']:.0%}, includes 0 {s['includes_zero']:.0%}, overlaps +5..+10% "
                             f"{s['includes_study_range']:.0%} of {s['n_estimated']} estimated specifications")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<MultiverseResult {self.grid.name!r}: {self.info.get('specifications')} specifications, "
                f"{len(self.table)} rows; .summary(), .curve(t), .variance_decomposition(t), .which_choices_flip(t)>")

    def _repr_html_(self) -> str:
        head, *rest = self.summary().splitlines()
        return (f"<div><strong>{html.escape(head)}</strong><pre>{html.escape(chr(10).join(rest))}</pre>"
                f"{self.table.head(20).to_html(index=False)}</div>")

    # ------------------------------------------------------------------ what drives the estimates

    def variance_decomposition(self, treatment: str, interactions: bool = True) -> pd.DataFrame:
        """Share of the variance of ``effect_pct`` over the estimated specifications explained by
        each dimension (sequential sums of squares in the grid's dimension order, so a
        dimension that only applies to one estimator gets only its variation within that
        estimator; the shares of the main effects and the residual sum to 1) and, with
        ``interactions``, by each pairwise interaction beyond the main effects (increment of
        explained variance when the pair's interaction is added to the main-effects model)."""
        import statsmodels.formula.api as smf
        from statsmodels.stats.anova import anova_lm

        t = self.rows(treatment)
        t = t[np.isfinite(t["effect_pct"])]
        dims = [d for d in self.dimensions if t[d].nunique() > 1]
        if len(t) < 3 or not dims:
            raise ValueError(f"variance_decomposition: {len(t)} estimated specifications of {treatment!r} with "
                             f"{len(dims)} varying dimensions; nothing to decompose")
        data = pd.DataFrame({f"d{i}": t[d].astype(str).to_numpy() for i, d in enumerate(dims)})
        data["y"] = t["effect_pct"].to_numpy(dtype=float)
        formula = "y ~ " + " + ".join(f"C(d{i})" for i in range(len(dims)))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rank-deficient dummies of dimensions that only apply to some estimators
            fit = smf.ols(formula, data=data).fit()
            aov = anova_lm(fit, typ=1)
        total = float(((data["y"] - data["y"].mean()) ** 2).sum())
        rows = [{"term": d, "kind": "main", "sum_sq": float(aov.loc[f"C(d{i})", "sum_sq"]),
                 "df": int(aov.loc[f"C(d{i})", "df"])} for i, d in enumerate(dims)]
        rows.append({"term": "residual", "kind": "residual", "sum_sq": float(aov.loc["Residual", "sum_sq"]),
                     "df": int(aov.loc["Residual", "df"])})
        if interactions:
            X = np.asarray(fit.model.exog)
            rss0 = float(fit.ssr)
            for i in range(len(dims)):
                for j in range(i + 1, len(dims)):
                    cell = pd.factorize(data[f"d{i}"] + "\x1f" + data[f"d{j}"])[0]
                    D = np.zeros((len(data), cell.max() + 1))
                    D[np.arange(len(data)), cell] = 1.0
                    Z = np.column_stack([X, D])
                    beta, *_ = np.linalg.lstsq(Z, data["y"].to_numpy(), rcond=None)
                    rss = float(((data["y"].to_numpy() - Z @ beta) ** 2).sum())
                    rows.append({"term": f"{dims[i]} x {dims[j]}", "kind": "interaction", "sum_sq": max(rss0 - rss, 0.0),
                                 "df": np.nan})
        out = pd.DataFrame(rows)
        out["share"] = out["sum_sq"] / total if total > 0 else np.nan
        out.attrs["n_specifications"] = len(t)
        return out

    def which_choices_flip(self, treatment: str, alpha: float = 0.05) -> pd.DataFrame:
        """Per dimension and option: the estimated specifications with that option, their median
        effect, shares whose CI lies above / below zero, and the conclusion ("positive",
        "negative": a majority of CIs on that side of zero; else "not significant").
        ``flips`` marks options whose conclusion differs from that under the dimension's
        baseline option: the choices on which the conclusion hinges."""
        t = self.rows(treatment)
        t = t[np.isfinite(t["effect_pct"])]
        rows = []
        for d in self.dimensions:
            dim = self.grid.dimension(d)
            base = None
            for opt in [o.name for o in dim.options] + [NOT_APPLICABLE]:
                s = t[t[d] == opt]
                if s.empty:
                    continue
                above = float((s["effect_pct_low"] > 0).mean())
                below = float((s["effect_pct_high"] < 0).mean())
                concl = "positive" if above > 0.5 else "negative" if below > 0.5 else "not significant"
                row = {"dimension": d, "option": opt, "baseline": opt == dim.baseline, "n_specs": len(s),
                       "median_effect_pct": float(s["effect_pct"].median()), "share_ci_above_zero": above,
                       "share_ci_below_zero": below, "conclusion": concl}
                if opt == dim.baseline:
                    base = concl
                rows.append(row)
            for r in rows:
                if r["dimension"] == d:
                    r["flips"] = base is not None and r["conclusion"] != base and r["option"] != NOT_APPLICABLE
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ figure

    def curve(self, treatment: str, ax: Any = None, max_dims: int | None = None) -> Any:
        """Specification curve (Simonsohn, Simmons & Nelson 2020): the estimated effects in
        percent, ranked, with 95% CIs (filled where the CI excludes zero) above; below, one row
        per option of each varying dimension, marked where a specification uses it."""
        from returnstudy.plots import new_figure

        t = self.rows(treatment)
        t = t[np.isfinite(t["effect_pct"])].sort_values("effect_pct", kind="stable").reset_index(drop=True)
        if t.empty:
            raise ValueError(f"no estimated specifications of {treatment!r}")
        dims = [d for d in self.dimensions if t[d].nunique() > 1][:max_dims]
        labels = [(d, o) for d in dims for o in [o.name for o in self.grid.dimension(d).options] + [NOT_APPLICABLE]
                  if (t[d] == o).any()]
        fig = new_figure((10, 3.2 + 0.16 * len(labels)))
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3.0, max(1.0, 0.16 * len(labels))])
        x = np.arange(len(t))
        sig = (t["effect_pct_low"] > 0) | (t["effect_pct_high"] < 0)
        top.vlines(x, t["effect_pct_low"], t["effect_pct_high"], color=np.where(sig, "C3", "0.7"), lw=0.6)
        top.scatter(x, t["effect_pct"], s=4, color=np.where(sig, "C3", "k"), zorder=3)
        top.axhline(0.0, color="0.3", lw=0.8)
        if treatment == "bilateral_binding":
            top.axhspan(*STUDY_RANGE, color="C2", alpha=0.2, label="study: +5 to +10%")
            top.legend(loc="upper left", fontsize=8)
        top.set_ylabel("Effect on returns per order (%)")
        top.set_title(f"{treatment}: {len(t)} specifications, ranked (95% CI; red: excludes 0)", fontsize=10)
        lo, hi = np.nanpercentile(t["effect_pct_low"], 2), np.nanpercentile(t["effect_pct_high"], 98)
        top.set_ylim(min(lo, -5.0), max(hi, 15.0))
        for k, (d, o) in enumerate(labels):
            on = (t[d] == o).to_numpy()
            bottom.scatter(x[on], np.full(on.sum(), k), marker="|", s=30, color="C0", lw=0.8)
        if not labels:
            bottom.set_axis_off()
            return fig
        bottom.set_yticks(range(len(labels)))
        bottom.set_yticklabels([f"{d}: {o}" for d, o in labels], fontsize=6)
        bottom.set_ylim(len(labels) - 0.5, -0.5)
        bottom.set_xlabel("Specification (ranked by estimate)")
        return fig

    # ------------------------------------------------------------------ inference on the curve

    def null_test(self, treatment: str, draws: int = 100, seed: int = 0, *, n_specs: int | None = None,
                  level: str | None = None, alpha: float = 0.05, backend: str = "serial", n_jobs: int | None = None,
                  address: str | None = None, progress: bool | None = False) -> NullTestResult:
        """Is the curve of ``treatment`` distinguishable from no effect?

        Imposes the sharp null by permuting adoption dates (``level``: the column at which they
        are exchanged, as in :func:`~returnstudy.inference.randomization.randomization_inference`;
        default "citizen" for EU-level treatments, "corridor" for bilateral ones), the same
        permutation in every specification of a draw, and re-fits the estimated specifications
        (or ``n_specs`` of them drawn with ``seed``) per draw: ``twfe`` and ``ppml``
        specifications on their fixed design (only the treatment column changes), the others
        by re-estimation on the permuted sample.
        Specifications coded with a share of the year (not a 0/1 treatment) cannot be permuted
        and are left out (counted). Reports Simonsohn, Simmons & Nelson's three statistics with
        permutation p-values, and per specification the unadjusted permutation p-value and
        family-wise adjusted p-values (single-step min-p / max-|t| and Romano-Wolf step-down).
        """
        if self.context is None:
            raise ValueError("null_test needs the engine context of the run (a result read back from disk has none)")
        if draws < 1:
            raise ValueError("draws must be >= 1")
        level = level or ("citizen" if treatment.startswith("eu_") else "corridor")
        ctx = self.context
        t = self.rows(treatment)
        t = t[np.isfinite(t["estimate"]) & np.isfinite(t["std_error"]) & (t["std_error"] > 0)]
        share_rule = [_coding_kwargs(ctx.spec, self.specifications[int(i)].treatments).get("rule") == "share_of_year"
                      for i in t["spec_id"]]
        n_share = int(np.sum(share_rule))
        t = t[~np.asarray(share_rule, dtype=bool)]
        if t.empty:
            raise ValueError(f"null_test: no estimated specification of {treatment!r} with a 0/1 treatment")
        if n_specs is not None and n_specs < len(t):
            pick = np.sort(np.random.default_rng(seed).choice(len(t), size=n_specs, replace=False))
            t = t.iloc[pick]
        specs = [self.specifications[int(i)] for i in t["spec_id"]]
        null_ctx = _null_context(ctx, specs, treatment, level)
        blocks = [list(range(b, min(b + max(1, draws // (4 * (n_jobs or 1))), draws)))
                  for b in range(0, draws, max(1, draws // (4 * (n_jobs or 1))))]
        import time

        t0 = time.perf_counter()
        est = np.full((draws, len(specs)), np.nan)
        se = np.full_like(est, np.nan)
        pv = np.full_like(est, np.nan)
        fits = 0
        task = _NullTask(level=level, seed=seed, treatment=treatment)
        from returnstudy._progress import progress as _progress

        outs = execute(task, null_ctx, blocks, backend, n_jobs, address)
        for drawn, e, s, p, k in _progress(outs, f"null test ({treatment})", progress, total=len(blocks)):
            est[drawn], se[drawn], pv[drawn] = e, s, p
            fits += k
        seconds = time.perf_counter() - t0
        return NullTestResult.compute(treatment, t, est, se, pv, alpha=alpha, level=level, seed=seed, draws=draws,
                                      n_share_left_out=n_share, fits=fits, seconds=seconds, backend=backend)


@dataclass(frozen=True)
class _NullContext:
    ctx: EngineContext
    specs: tuple[Specification, ...]
    permuters: dict[str, Any]
    filter_index: dict[str, Any]
    refits: tuple[Any, ...] = ()  # per specification: a FixedDesignRefit, or None (re-estimate from the panel)


def _null_context(ctx: EngineContext, specs: list[Specification], treatment: str, level: str = "corridor") -> _NullContext:
    """Coded panels restricted to the union of the specifications' rows (the same rows, in the
    same order, under every coding, so one seeded draw is one permutation for all of them), and
    for each ``twfe``/``ppml`` specification its design, fitted once on the observed sample and
    re-fitted per draw with the permuted treatment column only."""
    from returnstudy.inference.randomization import _Permuter

    filter_index = {}
    for s in specs:
        if s.filter_key() not in filter_index:
            filter_index[s.filter_key()] = filter_rows(ctx.raw, ctx.spec, s.filters)
    if any(v is None for v in filter_index.values()):
        raise ValueError("null_test: a specification's filters need the treatment columns (treatment_variation); "
                         "permutation before such a filter is not defined")
    universe = np.unique(np.concatenate([np.asarray(v) for v in filter_index.values()]))
    base = ctx.raw.iloc[universe].reset_index(drop=True)
    # positions in the universe panel
    filter_index = {k: np.searchsorted(universe, v) for k, v in filter_index.items()}
    permuters = {}
    for s in specs:
        key = s.coding_key()
        if key not in permuters:
            permuters[key] = _Permuter(ctx.coded(base, s.treatments), treatment, level)
    refits = tuple(_fixed_design(ctx, s, take_rows(permuters[s.coding_key()].panel, filter_index[s.filter_key()]),
                                 treatment) for s in specs)
    return _NullContext(ctx=ctx, specs=tuple(specs), permuters=permuters, filter_index=filter_index, refits=refits)


def _fixed_design(ctx: EngineContext, spec: Specification, sample: pd.DataFrame, treatment: str) -> Any:
    """The specification's fixed-design re-fit if its estimator is ``twfe`` or ``ppml`` (one call
    containing ``treatment``), else None."""
    import warnings

    from returnstudy.inference._refit import FixedDesignRefit
    from returnstudy.multiverse import FIT_ERRORS, _fit_calls, _quiet_estimators

    model = _single(spec.model, treatment)
    name = model.get("estimator")
    if name not in ("twfe", "ppml"):
        return None
    fn, calls, reason = _fit_calls(ctx, model)
    if reason or len(calls) != 1 or treatment not in calls[0][0]:
        return None
    try:
        with warnings.catch_warnings(), _quiet_estimators():
            warnings.simplefilter("ignore")
            return FixedDesignRefit.build(name, sample, calls[0][1], treatment)
    except FIT_ERRORS as exc:
        log.debug("null test: specification %s re-estimated per draw (%s)", spec.key, exc)
        return None


@dataclass(frozen=True)
class _NullTask:
    level: str
    seed: int
    treatment: str

    def __call__(self, nctx: _NullContext, drawn: list[int]) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray, int]:
        import warnings

        from returnstudy.multiverse import FIT_ERRORS, _quiet_estimators

        m = len(nctx.specs)
        est = np.full((len(drawn), m), np.nan)
        se, pv = est.copy(), est.copy()
        fits = 0
        refits = nctx.refits or (None,) * m
        for r, d in enumerate(drawn):
            # one seeded permutation per draw, the same for every coding (each permuter draws from the same seed)
            new = {k: p.new_cohort(np.random.default_rng([self.seed, d])) for k, p in nctx.permuters.items()}
            panels: dict[str, pd.DataFrame] = {}
            for j, s in enumerate(nctx.specs):
                key = s.coding_key()
                permuter = nctx.permuters[key]
                rows_at = nctx.filter_index[s.filter_key()]
                got = None
                if refits[j] is not None:
                    fits += 1
                    try:
                        with warnings.catch_warnings(), _quiet_estimators():
                            warnings.simplefilter("ignore")
                            got = refits[j].fit(permuter.treatment_values(new[key])[rows_at], se=True)
                    except FIT_ERRORS as exc:
                        log.debug("null test draw %d, specification %s failed: %s", d, s.key, exc)
                        continue
                    if got is not None:
                        i = got.names.index(self.treatment)
                        if np.isfinite(got.beta[i]):
                            est[r, j], se[r, j], pv[r, j] = got.beta[i], got.std_error[i], got.p_value[i]
                        continue
                    fits -= 1  # the fixed design does not hold in this draw: re-estimate from the panel
                if key not in panels:
                    panels[key] = permuter.panel.copy()
                    permuter.apply(panels[key], new[key])
                sample = take_rows(panels[key], rows_at)
                spec = Specification(choices=s.choices, treatments=s.treatments, filters=s.filters,
                                     model=_single(s.model, self.treatment))
                rows, k = fit_specification(nctx.ctx, spec, sample, 0, lambda _t: (0, 0))
                fits += k
                row = next((x for x in rows if x["treatment"] == self.treatment), None)
                if row is not None and row.get("status") == OK:
                    est[r, j], se[r, j], pv[r, j] = row["estimate"], row["std_error"], row["p_value"]
        return drawn, est, se, pv, fits


def _single(model: Any, treatment: str) -> dict[str, Any]:
    """Single-treatment estimators are refitted for the tested treatment only."""
    from returnstudy.multiverse import _accepted

    m = dict(model)
    if "treatments" not in m and "treatment" not in m and "treatments" not in _accepted(m):
        m["treatment"] = treatment
    return m


@dataclass(repr=False)
class NullTestResult:
    """Simonsohn, Simmons & Nelson's three curve statistics with permutation p-values, and
    per-specification permutation and family-wise adjusted p-values."""

    treatment: str
    statistics: pd.DataFrame
    per_spec: pd.DataFrame
    info: dict[str, Any]

    @classmethod
    def compute(cls, treatment: str, observed: pd.DataFrame, est: np.ndarray, se: np.ndarray, pv: np.ndarray, *,
                alpha: float, **info: Any) -> NullTestResult:
        e0 = observed["estimate"].to_numpy(dtype=float)
        s0 = observed["std_error"].to_numpy(dtype=float)
        p0 = observed["p_value"].to_numpy(dtype=float)
        to_pct = _percent_transform(observed)
        med = float(np.median(to_pct(e0[None, :])))
        dom = 1.0 if med >= 0 else -1.0
        # each curve (observed and every null draw) in its own dominant direction: the direction is
        # chosen by the data, so the null statistics must choose it the same way (two-sided test)
        obs = _curve_stats(to_pct(e0[None, :]), p0[None, :], alpha)[0]
        null = _curve_stats(to_pct(est), pv, alpha)
        valid = np.isfinite(null).all(axis=1)
        R = int(valid.sum())
        names = ["|median effect| in %", f"share significant at {alpha:g} in the dominant direction",
                 "Stouffer Z in the dominant direction"]
        stats = pd.DataFrame({"statistic": names, "observed": obs, "null_mean": np.nanmean(null[valid], axis=0),
                              "p_value": [(1 + np.sum(null[valid, k] >= obs[k] - 1e-12)) / (1 + R) for k in range(3)]})
        stats["direction"] = "+" if dom > 0 else "-"
        tobs = np.abs(e0 / s0)
        tnull = np.abs(est / se)
        tnull_f = np.where(np.isfinite(tnull), tnull, -np.inf)
        valid_spec = np.isfinite(tnull).sum(axis=0)
        p_unadj = (1 + (tnull_f >= tobs - 1e-12).sum(axis=0)) / (1 + valid_spec)
        rows_ok = np.isfinite(tnull).any(axis=1)
        maxt = tnull_f[rows_ok].max(axis=1)
        n_r = int(rows_ok.sum())
        p_minp = (1 + (maxt[:, None] >= tobs[None, :] - 1e-12).sum(axis=0)) / (1 + n_r)
        order = np.argsort(-tobs, kind="stable")
        p_rw = np.empty(len(tobs))
        running = 0.0
        for k, i in enumerate(order):
            rest = order[k:]
            mx = tnull_f[rows_ok][:, rest].max(axis=1)
            p = (1 + np.sum(mx >= tobs[i] - 1e-12)) / (1 + n_r)
            running = max(running, p)
            p_rw[i] = running
        per = observed.drop(columns=[c for c in ("spec_hash", "seed") if c in observed.columns]).copy()
        per["t_stat"] = e0 / s0
        per["p_permutation"] = p_unadj
        per["p_fwer_minp"] = p_minp
        per["p_fwer_romano_wolf"] = p_rw
        per["valid_draws"] = valid_spec
        info = {**info, "alpha": alpha, "n_specifications": len(e0), "valid_draws": R, "dominant_sign": int(dom),
                "failed_fits": int(np.isnan(est).sum())}
        fits, secs = info.get("fits", 0), info.get("seconds", np.nan)
        info["seconds_per_fit"] = secs / fits if fits else np.nan
        return cls(treatment=treatment, statistics=stats, per_spec=per.reset_index(drop=True), info=info)

    def summary(self) -> str:
        i = self.info
        head = (f"Null test of the {self.treatment} curve: {i['draws']} permutations of adoption dates across {i['level']}s "
                f"(seed {i['seed']}) over {i['n_specifications']} specifications ({i['valid_draws']} complete draws, "
                f"{i['fits']} fits, {i['seconds_per_fit'] * 1000:.0f} ms per fit)")
        return head + "\n" + self.statistics.to_string(index=False, float_format=lambda x: f"{x:.4g}")

    def __repr__(self) -> str:
        return f"<NullTestResult {self.treatment}: " + "; ".join(
            f"{r.statistic} p={r.p_value:.3f}" for r in self.statistics.itertuples()) + ">"

    def _repr_html_(self) -> str:
        return f"<div><strong>{html.escape(self.summary().splitlines()[0])}</strong>{self.statistics.to_html(index=False)}</div>"


def _percent_transform(observed: pd.DataFrame) -> Any:
    """Estimates -> percent effects per specification (column-wise), as ``effect_pct``: the
    outcome mean of a linear model's sample does not change under permutation."""
    poisson = (observed["scale"] == "log rate ratio").to_numpy() if "scale" in observed else np.ones(len(observed), bool)
    mean = observed["outcome_mean"].to_numpy(dtype=float) if "outcome_mean" in observed else np.ones(len(observed))

    def f(b: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(poisson[None, :], 100.0 * np.expm1(b), 100.0 * b / mean[None, :])

    return f


def _curve_stats(est: np.ndarray, pv: np.ndarray, alpha: float) -> np.ndarray:
    """Per row (a curve): |median|, share significant at ``alpha`` in the row's dominant direction
    (the sign of its median) and Stouffer's Z of the one-sided p-values in that direction
    (Simonsohn, Simmons & Nelson 2020)."""
    from scipy.stats import norm

    out = np.full((est.shape[0], 3), np.nan)
    with np.errstate(invalid="ignore"):
        for r in range(est.shape[0]):
            ok = np.isfinite(est[r]) & np.isfinite(pv[r])
            if not ok.any():
                continue
            e, p = est[r, ok], np.clip(pv[r, ok], 1e-300, 1.0)
            med = np.median(e)
            dom = 1.0 if med >= 0 else -1.0
            same = np.sign(e) == dom
            out[r, 0] = abs(med)
            out[r, 1] = np.mean((p < alpha) & same)
            one_sided = np.where(same, p / 2.0, 1.0 - p / 2.0)
            z = norm.isf(np.clip(one_sided, 1e-300, 1 - 1e-16))
            out[r, 2] = z.sum() / np.sqrt(len(z))
    return out


__all__ = ["MultiverseResult", "NullTestResult", "add_percent_scale", "STUDY_RANGE", "FAILED", "UNSUPPORTED", "NOT_IDENTIFIED"]
