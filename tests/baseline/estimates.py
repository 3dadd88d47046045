"""Every estimate the package reports, computed on fixed inputs, as one tidy table.

The table is the reference that refactors of the numerics are held to: each row is one
number (a coefficient, a standard error, a bootstrap or permutation p-value) of one model on
one input, the real Eurostat snapshot (both shipped specs) or a seeded simulated panel.
``python -m tests.baseline.estimates --write`` (from the repository root) regenerates the
committed file ``tests/baseline/estimates.csv``; ``tests/test_estimate_baseline.py``
recomputes the table and compares it with the committed one.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
COMMITTED = HERE / "estimates.csv"
SNAPSHOT = HERE.parents[2] / "shared" / "data" / "eurostat"
STATS = ("estimate", "std_error", "p_value", "ci_low", "ci_high")
COLUMNS = ["source", "model", "term", "stat", "value"]


def _rows(source: str, model: str, table: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for term, r in table.iterrows():
        for stat in STATS:
            if stat in table.columns:
                v = r[stat]
                out.append({"source": source, "model": model, "term": str(term), "stat": stat,
                            "value": float(v) if v is not None and not pd.isna(v) else math.nan})
    return out


def snapshot_rows(data_dir: Path = SNAPSHOT) -> list[dict[str, Any]]:
    """Every model of both shipped specs on the offline snapshot."""
    from returnstudy.runner import run_study

    rows: list[dict[str, Any]] = []
    for spec in ("wodc", "third_country_2014_2023"):
        run = run_study(spec, data_dir)
        for m in run.models:
            if m.ok:
                rows += _rows(f"snapshot:{spec}", m.name, m.result.table)
    return rows


def simulated_rows() -> list[dict[str, Any]]:
    """Each estimator and inference routine on seeded simulated panels."""
    import returnstudy as rs

    rows: list[dict[str, Any]] = []
    p = rs.simulate_panel(seed=11, n_geo=12, n_citizen=60, years=(2008, 2020))
    src = "simulated:seed11"
    fits = {
        "twfe": rs.twfe(p, outcome="return_rate", treatments=["bilateral_binding", "eu_agreement"],
                         fe=["corridor", "year"], cluster="citizen"),
        "ppml": rs.ppml(p, treatments=["bilateral_binding", "eu_agreement"], fe=["corridor", "year"], cluster="citizen"),
        "ppml_twoway": rs.ppml(p, treatments=["bilateral_binding", "eu_agreement"], fe=["corridor", "year"],
                                cluster=["citizen", "geo"]),
        "event_study_ppml": rs.event_study(p, treatment="bilateral_binding", model="ppml", window=(-3, 3)),
        "event_study_twfe": rs.event_study(p, treatment="bilateral_binding", model="twfe", window=(-3, 3)),
        "imputation_poisson": rs.did_imputation(p, treatment="bilateral_binding", model="poisson"),
        "imputation_linear": rs.did_imputation(p, treatment="bilateral_binding", model="linear"),
        "imputation_event": rs.did_imputation(p, treatment="bilateral_binding", model="poisson", horizons=[0, 1, 2, 3]),
        "sun_abraham": rs.sun_abraham(p, treatment="bilateral_binding"),
        "callaway_santanna": rs.callaway_santanna(p, treatment="bilateral_binding"),
        "callaway_santanna_poisson": rs.callaway_santanna(p, treatment="bilateral_binding", model="poisson"),
        "callaway_santanna_event": rs.callaway_santanna(p, treatment="bilateral_binding", event_time=True),
    }
    for name, res in fits.items():
        rows += _rows(src, name, res.table)
    bacon = rs.bacon_decomposition(p, treatment="bilateral_binding", outcome="return_rate")
    bt = bacon.table if hasattr(bacon, "table") else bacon
    for i, r in bt.reset_index(drop=True).iterrows():
        for stat in ("estimate", "weight"):
            if stat in bt.columns:
                rows.append({"source": src, "model": "bacon", "term": f"{i}:{r.get('comparison', '')}", "stat": stat,
                             "value": float(r[stat])})
    wb = rs.wild_bootstrap(fits["twfe"], reps=199, seed=5, ci=False)
    rows += _rows(src, "wild_bootstrap_twfe", wb.table)
    wbi = rs.wild_bootstrap(fits["imputation_linear"], reps=199, seed=5, ci=False)
    rows += _rows(src, "wild_bootstrap_imputation", wbi.table)
    ri = rs.randomization_inference(fits["imputation_poisson"], reps=19, seed=3, level="citizen")
    rows += _rows(src, "randomization_imputation", ri.table)
    ri2 = rs.randomization_inference(fits["ppml"], reps=19, seed=3, level="citizen", panel=p,
                                     treatment="bilateral_binding")
    rows += _rows(src, "randomization_ppml", ri2.table)
    big = rs.simulate_panel(seed=0)  # 30 x 150 corridors x 15 years = 67,500 rows, the benchmark design
    src = "simulated:seed0_67k"
    big_fits = {
        "imputation_poisson": rs.did_imputation(big, treatment="bilateral_binding", model="poisson"),
        "imputation_linear": rs.did_imputation(big, treatment="bilateral_binding", model="linear", cluster="corridor"),
        "sun_abraham": rs.sun_abraham(big, treatment="bilateral_binding"),
        "twfe": rs.twfe(big, outcome="return_rate", treatments=["bilateral_binding"], fe=["corridor", "year"],
                        cluster="corridor"),
        "ppml": rs.ppml(big, treatments=["bilateral_binding", "eu_agreement"], fe=["corridor", "year"], cluster="citizen"),
    }
    for name, res in big_fits.items():
        rows += _rows(src, name, res.table)
    rows += _rows(src, "wild_bootstrap_twfe_corridor", rs.wild_bootstrap(big_fits["twfe"], reps=99, seed=2, ci=False).table)
    rows += _rows(src, "randomization_imputation_corridor",
                  rs.randomization_inference(big_fits["imputation_linear"], reps=9, seed=4, level="corridor").table)
    return rows


def compute(data_dir: Path = SNAPSHOT) -> pd.DataFrame:
    rows = snapshot_rows(data_dir) + simulated_rows()
    return pd.DataFrame(rows, columns=COLUMNS)


def compare(new: pd.DataFrame, old: pd.DataFrame, tol: float = 1e-10) -> pd.DataFrame:
    """Rows whose value moved by more than ``tol * max(1, |old|)`` (NaN must stay NaN), or that
    appear in only one table."""
    key = ["source", "model", "term", "stat"]
    m = old.merge(new, on=key, how="outer", suffixes=("_old", "_new"), indicator=True)
    a, b = m["value_old"].to_numpy(float), m["value_new"].to_numpy(float)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.abs(a - b)
    bad = ~both_nan & ~(diff <= tol * np.maximum(1.0, np.abs(a)))
    return m[bad | (m["_merge"] != "both")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="overwrite the committed table")
    ap.add_argument("--data", type=Path, default=SNAPSHOT)
    args = ap.parse_args(argv)
    table = compute(args.data)
    if args.write:
        table.to_csv(COMMITTED, index=False, float_format="%.17g")
        print(f"wrote {len(table)} rows to {COMMITTED}")
        return 0
    bad = compare(table, pd.read_csv(COMMITTED))
    print(bad.to_string() if len(bad) else f"all {len(table)} values within 1e-10")
    return 1 if len(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
