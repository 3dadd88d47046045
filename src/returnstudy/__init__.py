"""returnstudy: do readmission agreements raise return from the EU+?

Reproduces, tests and extends the WODC study *Intergovernmental relations and
return* (2022) on Eurostat's enforcement-of-immigration-legislation tables.
Every analytic choice (data vintage, filters, treatment coding, estimator,
inference) is an explicit argument.

Public names are imported lazily so that ``import returnstudy`` stays fast and
does not pull in matplotlib or the estimators until they are used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it
_PUBLIC: dict[str, str] = {
    # data layer
    "fetch": "data.fetch",
    "import_snapshot": "data.fetch",
    "read_manifest": "data.cache",
    "read_eurostat_table": "data.eurostat",
    "load_panel": "panel",
    "panel_summary": "panel",
    # treatments
    "load_agreements": "treatments",
    "add_treatments": "treatments",
    "treatment_summary": "treatments",
    "coverage_shares": "treatments",
    "nonabsorbing_corridors": "treatments",
    "switching_counts": "identification",
    # filters and Part 1 diagnostics
    "apply_filters": "filters",
    "quality_report": "quality",
    "load_spec": "spec",
    "check_agreements": "treatments",
    "run_study": "runner",
    "study_sample": "runner",
    "headline_comparison": "report",
    "sensitivity": "robustness",
    "Variation": "robustness",
    "multiverse": "multiverse",
    "load_grid": "multiverse_grid",
    "MultiverseResult": "multiverse_result",
    # models
    "twfe": "models.twfe",
    "ppml": "models.ppml",
    "event_study": "models.event_study",
    "did_imputation": "models.imputation",
    "sun_abraham": "models.sun_abraham",
    "callaway_santanna": "models.callaway_santanna",
    "etwfe": "models.etwfe",
    "bacon_decomposition": "models.bacon",
    # inference
    "wild_bootstrap": "inference.bootstrap",
    "score_bootstrap": "inference.score_bootstrap",
    "randomization_inference": "inference.randomization",
    "influence": "inference.influence",
    "without_most_influential": "inference.influence",
    "crosscheck": "crosscheck",
    "sup_t_bands": "inference.bands",
    "honest_did": "inference.honest_did",
    "breakdown": "inference.honest_did",
    "pretest_power": "inference.pretest_power",
    "pretrend_report": "honest_report",
    "plot_honest_did": "honest_plots",
    "plot_pretest_power": "honest_plots",
    # simulation, plots, report
    "simulate_panel": "simulate",
    "plot_event_study": "plots",
    "plot_coefficients": "plots",
    "build_report": "report",
    # Part 3 and the policy response
    "compare_countries": "compare",
    "policy_claims": "claims",
    "synthetic_control": "synthetic",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'returnstudy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
