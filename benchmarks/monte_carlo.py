"""Monte Carlo: bias, RMSE and 95% coverage per estimator and effect scenario.

Each replication simulates a fresh SYNTHETIC panel (``simulate_panel(seed=seed + r)``)
with staggered bilateral agreements whose log-scale effect is constant, growing,
fading or heterogeneous (cohort-specific and growing), fits every estimator and
compares it with the true value of its own estimand on that panel:

* linear estimators on ``return_rate`` (TWFE, imputation, Sun-Abraham, Callaway-Sant'Anna):
  the mean change in the expected return rate over treated corridor-years;
* Poisson imputation and TWFE-PPML: log(sum of treated means / sum of untreated means);
* Poisson Sun-Abraham: the mean log effect over treated corridor-years.

Writes the summary (and with ``--save-draws`` the per-draw table) to ``benchmarks/results/``.

Known limitations (``results/monte_carlo_summary.csv``: 100 panels per scenario,
12 x 50 corridors, bilateral share 0.3, base effect 0.1): imputation Poisson covers
0.91-0.95 and the linear robust estimators 0.90-1.00 across the four scenarios, but
the Poisson Sun-Abraham and Callaway-Sant'Anna 95% intervals under-cover: 0.81-0.86
and 0.85-0.90, with mean standard error / SD of the estimates 0.65-0.84 and 0.64-0.92.
Their citizenship-clustered sandwich variances run small when a few large corridors
dominate the Poisson weights (corridor sizes are heavy-tailed, as in the Eurostat data).
``tests/test_monte_carlo.py`` pins this range on a smaller design.

Usage: ``python benchmarks/monte_carlo.py [--reps 100] [--n-geo 12] [--n-citizen 50]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd

from returnstudy.simulate import EFFECT_SHAPES, MC_ESTIMATORS, monte_carlo, summarize_monte_carlo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--n-geo", type=int, default=12)
    ap.add_argument("--n-citizen", type=int, default=50)
    ap.add_argument("--bilateral-share", type=float, default=0.3)
    ap.add_argument("--base-effect", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=20220)
    ap.add_argument("--scenarios", nargs="+", default=list(EFFECT_SHAPES))
    ap.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--save-draws", action="store_true", help="also write the per-draw table (about 0.5 MB)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    draws = monte_carlo(
        reps=args.reps, scenarios=args.scenarios, estimators=MC_ESTIMATORS, seed=args.seed,
        n_geo=args.n_geo, n_citizen=args.n_citizen, bilateral_share=args.bilateral_share,
        base_effect=args.base_effect,
    )
    summary = summarize_monte_carlo(draws)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.save_draws:
        draws.to_csv(out / "monte_carlo_draws.csv", index=False)
    summary.to_csv(out / "monte_carlo_summary.csv")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(f"SYNTHETIC Monte Carlo: {args.reps} panels per scenario, {args.n_geo} x {args.n_citizen} corridors x "
              f"15 years, bilateral share {args.bilateral_share}, base effect {args.base_effect} "
              f"({time.perf_counter() - t0:.0f} s)")
        print(summary)
    print(f"written {out / 'monte_carlo_summary.csv'}" + (" and monte_carlo_draws.csv" if args.save_draws else ""))


if __name__ == "__main__":
    main()
