"""The walkthrough notebooks run end to end on the snapshot and report what the library computes.

Each notebook ends with a cell that prints a small JSON dict of key numbers. The notebooks are
executed with nbclient (kernel ``python3``, working directory ``notebooks/``, the snapshot named in
``RETURNSTUDY_SNAPSHOT_EUROSTAT``), and those numbers are compared with a direct computation here:
by hand from the panel columns where possible, otherwise by calling the library directly, and on the
synthetic panel against the known true effect.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"
NOTEBOOKS = ("01_data_and_quality.ipynb", "02_effects_of_agreements.ipynb", "03_event_studies.ipynb")
CELL_TIMEOUT = 300  # seconds per cell


# --------------------------------------------------------------------------- stored notebooks


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean(name: str) -> None:
    """Committed without outputs, python3 kernel, and the data location taken from the environment."""
    nb = nbformat.read(NB_DIR / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells, f"{name} has no code cells"
    for i, c in enumerate(code_cells):
        assert c.outputs == [], f"{name}: code cell {i} is stored with outputs"
        assert c.execution_count is None, f"{name}: code cell {i} is stored with an execution count"
    first = code_cells[0].source
    assert 'os.environ.get("RETURNSTUDY_SNAPSHOT_EUROSTAT", "../../shared/data/eurostat")' in first
    assert "json.dumps(key_numbers" in code_cells[-1].source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_uses_only_public_names(name: str) -> None:
    """Every ``rs.<name>`` a notebook calls is exported by ``returnstudy``."""
    import returnstudy

    nb = nbformat.read(NB_DIR / name, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    used = set(re.findall(r"\brs\.([A-Za-z_][A-Za-z0-9_]*)", source))
    assert used, f"{name} calls nothing from returnstudy"
    unknown = sorted(used - set(returnstudy.__all__))
    assert not unknown, f"{name} uses names that returnstudy does not export: {unknown}"


# --------------------------------------------------------------------------- execution


@pytest.fixture(scope="module")
def run_notebook(snapshot_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Execute a notebook once (cached per module) and return (notebook, key numbers, seconds)."""
    from ipykernel.kernelspec import write_kernel_spec

    # A python3 kernel spec that runs this interpreter, found first through JUPYTER_PATH, so the
    # test does not depend on which `python` is first on PATH or on `ipykernel install`.
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(path=jupyter_dir / "kernels" / "python3")
    env = {
        "JUPYTER_PATH": str(jupyter_dir),
        "RETURNSTUDY_SNAPSHOT_EUROSTAT": str(snapshot_dir / "eurostat"),
        "RETURNSTUDY_DATA_DIR": str(tmp_path_factory.mktemp("cache")),
        "RETURNSTUDY_EUROSTAT_API": "http://127.0.0.1:9/unreachable",
    }
    cache: dict[str, tuple[Any, dict[str, Any], float]] = {}

    def run(name: str) -> tuple[Any, dict[str, Any], float]:
        if name not in cache:
            nb = nbformat.read(NB_DIR / name, as_version=4)
            client = nbclient.NotebookClient(
                nb, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(NB_DIR)}}
            )
            with pytest.MonkeyPatch.context() as mp:
                for key, value in env.items():
                    mp.setenv(key, value)
                start = time.perf_counter()
                client.execute()
                seconds = time.perf_counter() - start
            cache[name] = (nb, _key_numbers(nb, name), seconds)
        return cache[name]

    return run


def _key_numbers(nb: Any, name: str) -> dict[str, Any]:
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream" and o.name == "stdout")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # pragma: no cover - only on a broken notebook
        raise AssertionError(f"{name}: last cell did not print a JSON dict: {text[:200]!r}") from exc


def _n_images(nb: Any) -> int:
    return sum(
        "image/png" in o.get("data", {})
        for c in nb.cells if c.cell_type == "code"
        for o in c.outputs if o.output_type in ("display_data", "execute_result")
    )


@pytest.fixture(scope="module")
def spec_sample(eurostat_dir: Path):
    """(spec, sample) of the shipped spec, built step by step as the notebooks do (read-only)."""
    return _spec_sample(eurostat_dir)


def _spec_sample(eurostat_dir: Path, rule: str | None = None, steps: list[dict[str, Any]] | None = None):
    import returnstudy as rs

    spec = rs.load_spec()
    panel = rs.load_panel(**{**spec.data.load_panel_kwargs(), "data_dir": eurostat_dir})
    kwargs = spec.treatments.add_treatments_kwargs()
    if rule is not None:
        kwargs["rule"] = rule
    treated = rs.add_treatments(panel, **kwargs)
    return spec, rs.apply_filters(treated, steps if steps is not None else spec).panel


# --------------------------------------------------------------------------- 01


def test_01_data_and_quality(run_notebook, real_panel, eurostat_dir: Path) -> None:
    import returnstudy as rs

    nb, key, seconds = run_notebook("01_data_and_quality.ipynb")
    assert _n_images(nb) >= 4  # histogram + three quality figures
    panel = real_panel

    # by hand from the panel columns
    assert key["panel_rows"] == len(panel)
    assert key["corridors"] == panel[["geo", "citizen"]].drop_duplicates().shape[0]
    assert key["reporting_countries"] == panel["geo"].nunique()
    both = panel["orders"].notna() & panel["returns"].notna()
    assert key["years_with_orders_and_returns"] == sorted(int(y) for y in panel.loc[both, "year"].unique())
    assert key["years_with_orders_and_returns"] == [2012, 2013, 2014, 2015, 2016]
    orders, returns = panel["orders"].to_numpy(), panel["returns"].to_numpy()
    ok = both.to_numpy() & (orders > 0)
    rate = returns[ok] / orders[ok]
    assert key["corridor_years_with_rate"] == rate.size
    assert key["share_rate_above_1"] == pytest.approx(np.mean(rate > 1), abs=1e-6)
    assert 0 < key["share_rate_above_1"] < 0.5
    assert key["imputed_zero_returns_third_country"] == int(panel["returns_third_country_imputed_zero"].sum()) > 0
    assert key["imputed_zero_found_illegal"] == int(panel["found_illegal_imputed_zero"].sum()) > 0

    # the quality report computed directly
    qr = rs.quality_report(data_dir=eurostat_dir)
    assert key["quality_countries"] == len(qr.verdicts)
    assert key["quality_countries_failing_any"] == int((qr.verdicts["n_fail"] > 0).sum())
    for check, n in key["quality_failing_by_check"].items():
        assert n == int(qr.verdicts[check].sum()), check
    assert sum(key["quality_failing_by_check"].values()) == int(qr.verdicts["n_fail"].sum())
    print(f"01_data_and_quality: {seconds:.1f} s")


# --------------------------------------------------------------------------- 02


def test_02_effects_of_agreements(run_notebook, spec_sample, eurostat_dir: Path) -> None:
    import returnstudy as rs

    nb, key, seconds = run_notebook("02_effects_of_agreements.ipynb")
    assert _n_images(nb) >= 2  # two coefficient plots
    spec, sample = spec_sample
    treatments = list(spec.treatments.types)
    assert key["sample_rows"] == len(sample)

    main = rs.ppml(sample, treatments=treatments)
    assert key["ppml_n_obs"] == main.info["n_obs"]
    b = main.table.loc["bilateral_binding"]
    assert key["bilateral_binding_pct_effect"] == pytest.approx(b["pct_effect"], abs=1e-5)
    # percent effect is 100 (exp(b) - 1) of the printed log coefficient
    assert key["bilateral_binding_pct_effect"] == pytest.approx(100 * math.expm1(b["estimate"]), abs=1e-5)
    assert key["bilateral_binding_pct_ci"] == pytest.approx([b["pct_ci_low"], b["pct_ci_high"]], abs=1e-5)
    assert key["bilateral_binding_pct_ci"][0] < key["bilateral_binding_pct_effect"] < key["bilateral_binding_pct_ci"][1]
    assert key["eu_agreement_pct_effect"] == pytest.approx(main.table.loc["eu_agreement", "pct_effect"], abs=1e-5)
    lin = rs.twfe(sample, outcome="return_rate", treatments=treatments, weights="orders")
    assert key["twfe_bilateral_binding"] == pytest.approx(lin.table.loc["bilateral_binding", "estimate"], abs=1e-6)
    assert key["run_study_models"] == len(spec.models)
    assert key["run_study_models_ok"] == len(spec.models)

    # sensitivity table: 7 variants x 2 treatments; two variants recomputed independently
    eff = key["robustness_pct_effect"]
    assert key["robustness_rows"] == len(eff) == 14
    assert eff["baseline | bilateral_binding"] == pytest.approx(key["bilateral_binding_pct_effect"], abs=1e-6)
    assert eff["two-way clustering | bilateral_binding"] == pytest.approx(eff["baseline | bilateral_binding"], abs=1e-9)
    steps = [{"step": f.step, "enabled": f.enabled, **f.params} for f in spec.filters]
    for s in steps:
        if s["step"] == "min_orders":
            s["n"] = 50
    _, sample50 = _spec_sample(eurostat_dir, steps=steps)
    by_hand = sample50.groupby("corridor")["orders"].mean()
    assert (by_hand >= 50).all() and len(sample50) < len(sample)
    fit50 = rs.ppml(sample50, treatments=treatments)
    assert eff["min. 50 orders | bilateral_binding"] == pytest.approx(fit50.table.loc["bilateral_binding", "pct_effect"], abs=1e-5)
    _, sample_ffy = _spec_sample(eurostat_dir, rule="first_full_year")
    fit_ffy = rs.ppml(sample_ffy, treatments=treatments)
    assert eff["switch-on: first full year | eu_agreement"] == pytest.approx(fit_ffy.table.loc["eu_agreement", "pct_effect"], abs=1e-5)
    print(f"02_effects_of_agreements: {seconds:.1f} s")


# --------------------------------------------------------------------------- 03


def test_03_event_studies(run_notebook, spec_sample) -> None:
    import returnstudy as rs

    nb, key, seconds = run_notebook("03_event_studies.ipynb")
    assert _n_images(nb) >= 6  # two event studies, two imputation paths, Sun-Abraham, synthetic comparison
    _, sample = spec_sample

    es = rs.event_study(sample, treatment="bilateral_binding", window=(-3, 3), model="ppml", control="notyet")
    assert key["bilateral_binding_pretrend_p"] == pytest.approx(es.info["pretrend_test"].p_value, rel=1e-6)
    assert key["bilateral_binding_event_0"] == pytest.approx(es.table.loc[0, "estimate"], abs=1e-6)
    imp = rs.did_imputation(sample, treatment="bilateral_binding", model="poisson")
    assert key["imputation_bilateral_binding"] == pytest.approx(imp.table.loc["bilateral_binding", "estimate"], abs=1e-6)
    bacon = rs.bacon_decomposition(sample, outcome="return_rate", treatment="bilateral_binding")
    # the decomposition adds up: TWFE = sum of weight x 2x2 estimate
    parts = bacon.table.drop(index="twfe")
    assert float((parts["weight"] * parts["estimate"]).sum()) == pytest.approx(key["bacon_twfe_bilateral_binding"], abs=1e-5)

    # Sun-Abraham and Callaway-Sant'Anna (Poisson) on the same sample, computed directly
    sa = rs.sun_abraham(sample, treatment="bilateral_binding", model="poisson", event_time=True)
    assert key["sun_abraham_n_obs"] == sa.info["n_obs"]
    assert key["sun_abraham_bilateral_binding_event_0"] == pytest.approx(sa.table.loc[0, "estimate"], abs=1e-6)
    # joint test of the leads by hand: W = b' V^-1 b over the pre-adoption coefficients, chi2(q)
    from scipy import stats

    leads = [k for k in sa.table.index if k < 0]
    assert len(leads) >= 2
    b = sa.params.loc[leads].to_numpy()
    v = sa.vcov.loc[leads, leads].to_numpy()
    wald = float(b @ np.linalg.solve(v, b))
    assert key["sun_abraham_bilateral_binding_pretrend_p"] == pytest.approx(stats.chi2.sf(wald, len(leads)), rel=1e-6)
    cs = rs.callaway_santanna(sample, treatment="bilateral_binding", model="poisson", control="notyet")
    assert key["callaway_santanna_poisson_n_obs"] == cs.info["n_obs"]
    assert key["callaway_santanna_poisson_bilateral_binding"] == pytest.approx(
        cs.table.loc["bilateral_binding", "estimate"], abs=1e-6
    )

    # synthetic section: the true effect by hand, and the imputation estimator recovers it
    sim = rs.simulate_panel(seed=key["synthetic_seed"], effect="heterogeneous")
    treated = (sim["bilateral_binding"].to_numpy() > 0) & (sim["orders"].to_numpy() > 0)
    mu0 = sim["mu0"].to_numpy()[treated]
    truth = math.log(np.sum(mu0 * np.exp(sim["true_effect"].to_numpy()[treated])) / np.sum(mu0))
    assert key["synthetic_true_att_log_ratio"] == pytest.approx(truth, abs=1e-6)
    assert key["synthetic_imputation"] == pytest.approx(
        rs.did_imputation(sim, treatment="bilateral_binding", model="poisson").table.loc["bilateral_binding", "estimate"], abs=1e-6
    )
    assert abs(key["synthetic_imputation"] - truth) < 0.05
    assert abs(key["synthetic_imputation"] - truth) < abs(key["synthetic_twfe_ppml"] - truth)
    assert key["synthetic_seeds_mean_abs_error_imputation"] < key["synthetic_seeds_mean_abs_error_twfe"]
    print(f"03_event_studies: {seconds:.1f} s")
