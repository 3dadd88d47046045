"""Time and memory of every estimator and inference routine on synthetic panels of three sizes.

Panels: ``simulate_panel(seed=0, effect="heterogeneous", n_citizen=rows // 450)`` — 30
reporting countries x 15 years with 22 / 150 / 667 citizenships: 10k, 67.5k (4,500
corridors, the default design) and 300k corridor-years (``--sizes``), calibrated to the
Eurostat snapshot (about half the corridors never record an order). Each task is run once to
warm up, then timed (best of ``--repeat``) and run once more under ``tracemalloc`` for its
peak Python/numpy allocation. Tasks: imputation, Sun-Abraham, Callaway-Sant'Anna, extended
TWFE (linear and Poisson, when ``returnstudy.etwfe`` exists), Bacon, TWFE, PPML, the wild
bootstrap (999 draws; for PPML the Poisson score bootstrap, when available), randomization
inference and sup-t bands. pyfixest's did2s, saturated event study, fepois and feols run in
the same process for comparison.

For every pair of equivalent estimators (imputation vs ``did2s``; Sun-Abraham
cohort x period cells vs the saturated event study; ``ppml`` vs ``fepois``;
``twfe`` vs ``feols``) both are fitted on the same rows, the time ratio
(ours / pyfixest) goes to ``ratio_to_pyfixest`` and the largest absolute
difference between the point estimates to ``max_abs_diff_estimate``.

The table has one row per (task, rows). Usage: ``python benchmarks/bench_estimators.py
[--sizes 10000,67500,300000] [--repeat 3] [--tasks SUBSTRING,...] [--out benchmarks/results/bench_estimators.csv]``
(``--tasks``: run only tasks whose name contains one of the substrings; pairs compared with
pyfixest need both of their tasks).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from returnstudy.inference.bands import sup_t_bands
from returnstudy.inference.bootstrap import wild_bootstrap
from returnstudy.inference.randomization import randomization_inference
from returnstudy.models.bacon import bacon_decomposition
from returnstudy.models.callaway_santanna import callaway_santanna
from returnstudy.models.imputation import did_imputation
from returnstudy.models.ppml import ppml
from returnstudy.models.sun_abraham import sun_abraham
from returnstudy.models.twfe import twfe
from returnstudy.simulate import simulate_panel

T = "bilateral_binding"
#: pyfixest's did2s is run up to this many panel rows (it exhausted 24 GB on the 300k-row panel).
DID2S_MAX_ROWS = 100_000
ROWS_PER_CITIZEN = 30 * 15  # reporting countries x years of simulate_panel's default design


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best wall seconds over ``repeat`` runs, peak MiB traced in one extra run)."""
    fn()
    best = min(_timed(fn) for _ in range(repeat))
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak / 2**20


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,67500,300000", help="rows, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tasks", default="", help="comma-separated substrings of task names (default: all)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_estimators.csv"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)
    wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
    tables = []
    for rows in (int(x) for x in args.sizes.split(",") if x.strip()):
        panel = simulate_panel(seed=0, effect="heterogeneous", n_citizen=max(2, round(rows / ROWS_PER_CITIZEN)))
        tables.append(bench_size(panel, rows, args.repeat, wanted))
    res = pd.concat(tables)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    res.to_csv(args.out)
    print(f"\nwritten {args.out}")


def bench_size(panel: pd.DataFrame, rows: int, repeat: int, wanted: list[str]) -> pd.DataFrame:
    """Every task on one panel; one row per task with seconds, peak MiB and the pyfixest comparison."""
    rate = panel.dropna(subset=["return_rate"])
    n_corr = panel["corridor"].nunique()
    print(f"SYNTHETIC panel: {len(panel):,} rows, {n_corr:,} corridors, {panel['year'].nunique()} years; "
          f"{len(rate):,} rows with a return rate; CPUs: {os.cpu_count()}; {platform.python_version()}")
    tw = twfe(panel, outcome="return_rate", treatments=[T])
    tw_corr = twfe(panel, outcome="return_rate", treatments=[T], cluster="corridor")
    pp = ppml(panel, treatments=[T])
    imp = did_imputation(panel, T)
    sa_ev = sun_abraham(panel, T, model="poisson")
    jobs: dict[str, Callable[[], object]] = {
        "did_imputation linear (+SE)": lambda: did_imputation(panel, T),
        "did_imputation poisson (+SE)": lambda: did_imputation(panel, T, model="poisson"),
        "did_imputation poisson event time": lambda: did_imputation(panel, T, model="poisson", event_time=True),
        "sun_abraham linear event time": lambda: sun_abraham(panel, T),
        "sun_abraham poisson event time": lambda: sun_abraham(panel, T, model="poisson"),
        "callaway_santanna notyet ATT": lambda: callaway_santanna(panel, T, control="notyet"),
        "callaway_santanna event time": lambda: callaway_santanna(panel, T, event_time=True),
        "callaway_santanna poisson ATT": lambda: callaway_santanna(panel, T, control="notyet", model="poisson"),
        "bacon_decomposition (balanced part)": lambda: bacon_decomposition(panel, treatment=T),
        "twfe linear (reference)": lambda: twfe(panel, outcome="return_rate", treatments=[T]),
        "ppml (reference)": lambda: ppml(panel, treatments=[T]),
        "wild_bootstrap twfe WCR 999 p-value": lambda: wild_bootstrap(tw, reps=999, seed=1, ci=False),
        "wild_bootstrap twfe WCR 999 + CI": lambda: wild_bootstrap(tw, reps=999, seed=1),
        "wild_bootstrap twfe 999 cluster=corridor": lambda: wild_bootstrap(tw, reps=999, seed=1, ci=False,
                                                                            cluster="corridor"),
        "wild_bootstrap imputation WCR 999 + CI": lambda: wild_bootstrap(imp, reps=999, seed=1),
        "randomization_inference imputation 99": lambda: randomization_inference(imp, reps=99, level="corridor",
                                                                                 seed=1),
        "randomization_inference twfe 999": lambda: randomization_inference(tw_corr, reps=999, level="corridor",
                                                                            seed=1, panel=panel),
        "randomization_inference ppml 99": lambda: randomization_inference(pp, reps=99, level="corridor", seed=1,
                                                                           panel=panel),
        "sup_t_bands 10000 draws": lambda: sup_t_bands(sa_ev, seed=1),
    }
    import returnstudy as rs

    if hasattr(rs, "etwfe"):
        jobs["etwfe linear ATT"] = lambda: rs.etwfe(panel, T)
        jobs["etwfe poisson ATT"] = lambda: rs.etwfe(panel, T, model="poisson")
    try:
        from returnstudy.inference.score_bootstrap import is_poisson_result

        if is_poisson_result(pp):
            jobs["wild_bootstrap ppml 999 (Poisson score bootstrap)"] = lambda: wild_bootstrap(pp, reps=999, seed=1,
                                                                                               ci=False)
            jobs["wild_bootstrap ppml 999 + CI (Poisson score bootstrap)"] = lambda: wild_bootstrap(pp, reps=999,
                                                                                                    seed=1)
    except ImportError:
        pass
    estimates: list[tuple[str, str, Callable[[], pd.Series], Callable[[], pd.Series]]] = []
    try:
        import pyfixest as pf

        # pyfixest's did2s misaligns rows when its first stage drops singletons: keep corridors with
        # at least two untreated years (both packages then use the same rows)
        n_untr = rate[rate[T] == 0].groupby("corridor").size()
        rate2 = rate[rate["corridor"].isin(n_untr[n_untr >= 2].index)]
        q = rate2.assign(corridor=rate2["corridor"].astype(object), citizen=rate2["citizen"].astype(object),
                         g=rate2[f"{T}_cohort"].astype("float64").fillna(0).astype(int))
        # pyfixest's saturated event study takes the first *observed* treated year as the cohort: keep corridors
        # that are never treated or observed in their adoption year, so both define the same cohorts
        coh = rate2[f"{T}_cohort"].astype("float64")
        seen = rate2.loc[rate2["year"] == coh, "corridor"].unique()
        rate3 = rate2[coh.isna().to_numpy() | rate2["corridor"].isin(seen).to_numpy()]
        q3 = rate3.assign(corridor=rate3["corridor"].astype(object), citizen=rate3["citizen"].astype(object),
                          g=rate3[f"{T}_cohort"].astype("float64").fillna(0).astype(int))
        qr = rate.assign(corridor=rate["corridor"].astype(object), citizen=rate["citizen"].astype(object))
        qp = panel[panel["orders"] > 0].assign(
            corridor=lambda d: d["corridor"].astype(object), citizen=lambda d: d["citizen"].astype(object),
            log_orders=lambda d: np.log(d["orders"]))
        jobs["did_imputation linear, did2s sample"] = lambda: did_imputation(rate2, T)
        jobs["sun_abraham linear event time, pyfixest sample"] = lambda: sun_abraham(rate3, T)
        if len(panel) <= DID2S_MAX_ROWS:
            jobs["pyfixest did2s (+SE)"] = lambda: pf.did2s(
                q, yname="return_rate", first_stage="~ 0 | corridor + year", second_stage=f"~ {T}", treatment=T,
                cluster="citizen")
        else:
            print(f"pyfixest did2s skipped at {len(panel):,} rows: on the 300k panel it needed more than 24 GB "
                  "(killed by the out-of-memory killer on a 24 GB machine)")
        jobs["pyfixest saturated event study"] = lambda: pf.event_study(
            q3, yname="return_rate", idname="corridor", tname="year", gname="g", estimator="saturated",
            cluster="citizen")
        jobs["pyfixest fepois (reference)"] = lambda: pf.fepois(
            f"returns ~ {T} | corridor + year", data=qp, offset="log_orders", vcov={"CRV1": "citizen"})
        jobs["pyfixest feols (reference)"] = lambda: pf.feols(
            f"return_rate ~ {T} | corridor + year", data=qr, vcov={"CRV1": "citizen"})

        def one(res: object) -> pd.Series:
            return pd.Series({T: float(res.coef()[T])})  # type: ignore[attr-defined]

        def pf_cells() -> pd.Series:
            coef = jobs["pyfixest saturated event study"]().coef()  # type: ignore[attr-defined]
            key = coef.index.str.extract(r"::(?P<k>-?[\d.]+):.+::(?P<g>-?[\d.]+)$").astype(float).astype(int)
            return pd.Series(coef.to_numpy(), index=pd.MultiIndex.from_frame(key[["g", "k"]]))

        def our_cells() -> pd.Series:
            cells = sun_abraham(rate3, T).extra["cohort_effects"]["estimate"]
            cells.index = pd.MultiIndex.from_tuples([(int(g), int(k)) for g, k in cells.index], names=["g", "k"])
            return cells

        estimates = [
            ("did_imputation linear, did2s sample", "pyfixest did2s (+SE)",
             lambda: pd.Series({T: did_imputation(rate2, T).coef(T)}), lambda: one(jobs["pyfixest did2s (+SE)"]())),
        ] if "pyfixest did2s (+SE)" in jobs else []
        estimates += [
            ("sun_abraham linear event time, pyfixest sample", "pyfixest saturated event study", our_cells, pf_cells),
            ("ppml (reference)", "pyfixest fepois (reference)",
             lambda: pd.Series({T: ppml(panel, treatments=[T]).coef(T)}),
             lambda: one(jobs["pyfixest fepois (reference)"]())),
            ("twfe linear (reference)", "pyfixest feols (reference)",
             lambda: pd.Series({T: twfe(panel, outcome="return_rate", treatments=[T]).coef(T)}),
             lambda: one(jobs["pyfixest feols (reference)"]())),
        ]
    except ImportError:
        print("pyfixest not installed: comparison rows skipped")
    if wanted:
        jobs = {k: v for k, v in jobs.items() if any(w in k for w in wanted)}
        estimates = [e for e in estimates if e[0] in jobs and e[1] in jobs]
    out = []
    for name, fn in jobs.items():
        sec, mib = measure(fn, repeat)
        out.append({"task": name, "rows": rows, "seconds": sec, "peak_mib": mib})
        print(f"{name:55s} {sec:8.3f} s  {mib:9.1f} MiB", flush=True)
    res = pd.DataFrame(out).set_index("task")
    res["ratio_to_pyfixest"] = np.nan
    res["max_abs_diff_estimate"] = np.nan
    res["n_estimates_compared"] = pd.array([pd.NA] * len(res), dtype="Int64")
    print("\nours vs pyfixest: time ratio (ours / pyfixest) and max |estimate difference| on the same rows:")
    for a, b, ours_fn, theirs_fn in estimates:
        ours, theirs = ours_fn(), theirs_fn()
        common = ours.index.intersection(theirs.index)
        if len(common) != len(ours) or len(common) != len(theirs):
            print(f"  WARNING {a} / {b}: {len(ours)} vs {len(theirs)} estimates, {len(common)} in common")
        diff = float(np.max(np.abs(ours.reindex(common).to_numpy() - theirs.reindex(common).to_numpy())))
        r = res.loc[a, "seconds"] / res.loc[b, "seconds"]
        res.loc[a, ["ratio_to_pyfixest", "max_abs_diff_estimate"]] = [r, diff]
        res.loc[a, "n_estimates_compared"] = len(common)
        print(f"  {a} / {b}: ratio {r:.3f}, max |diff| {diff:.2e} over {len(common)} estimate(s)")
    return res


if __name__ == "__main__":
    main()
