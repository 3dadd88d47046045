"""Part 3 comparison: synthetic control weights, gap estimates, benchmark and covariates on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from returnstudy.compare import compare_countries
from returnstudy.synthetic import synthetic_control

YEARS = list(range(2012, 2017))
OTHERS = ["AT", "BE", "DE", "FR", "SE", "DK"]


def test_synthetic_control_recovers_known_weights():
    rng = np.random.default_rng(7)
    donors = pd.DataFrame(rng.uniform(0.1, 1.0, size=(8, 5)), index=range(2010, 2018), columns=list("ABCDE"))
    treated = 0.6 * donors["B"] + 0.4 * donors["D"]
    treated.loc[2016:] += 0.5  # effect after the event
    sc = synthetic_control(treated.rename("T"), donors, pre=range(2010, 2016))
    assert sc.weights.to_dict() == pytest.approx({"A": 0, "B": 0.6, "C": 0, "D": 0.4, "E": 0}, abs=1e-5)
    assert sc.weights.sum() == pytest.approx(1.0)
    assert sc.pre_rmspe < 1e-5
    assert sc.series.loc[2016:, "gap"].to_numpy() == pytest.approx([0.5, 0.5], abs=1e-5)


def test_synthetic_control_rejects_incomplete_donor():
    donors = pd.DataFrame({"A": [1.0, np.nan, 2.0], "B": [1.0, 2.0, 3.0]}, index=[1, 2, 3])
    with pytest.raises(ValueError, match=r"donor\(s\) \['A'\]"):
        synthetic_control(pd.Series([1.0, 2.0, 3.0], index=[1, 2, 3]), donors, pre=[1, 2])


def _panel() -> pd.DataFrame:
    """NL has exactly half of NO's return rate for AF and the same for IQ, every year."""
    rows = []
    rng = np.random.default_rng(3)
    no_rate = {"AF": [0.4, 0.5, 0.3, 0.6, 0.45], "IQ": [0.2, 0.25, 0.3, 0.2, 0.35]}
    ratio = {"AF": 0.5, "IQ": 1.0}
    donor = {g: rng.uniform(0.1, 0.9, size=5) for g in OTHERS}
    for c in ("AF", "IQ"):
        for i, y in enumerate(YEARS):
            rates = {"NO": no_rate[c][i], "NL": ratio[c] * no_rate[c][i]}
            if c == "AF":  # NL-AF is 0.7 AT + 0.3 BE before 2015 (for the synthetic comparison)
                rates["NL"] = 0.7 * donor["AT"][i] + 0.3 * donor["BE"][i] if y < 2015 else 0.9
                rates["NO"] = rates["NL"] / 0.5
            for g in OTHERS:
                rates[g] = donor[g][i]
            for g, r in rates.items():
                orders = 1000.0
                rows.append({"geo": g, "citizen": c, "year": y, "orders": orders, "returns": r * orders,
                             "returns_third_country": np.nan, "found_illegal": np.nan})
    p = pd.DataFrame(rows)
    p["corridor"] = p["geo"] + "-" + p["citizen"]
    p["return_rate"] = p["returns"] / p["orders"]
    for v in ("orders", "returns", "returns_third_country", "found_illegal"):
        p[f"{v}_vintage"] = "hand-made"
    p.attrs["vintage"] = {"hand-made": {"last_update": "test"}}
    return p


@pytest.fixture()
def covariates(tmp_path):
    d = tmp_path / "covariates"
    d.mkdir()
    pd.DataFrame({"geo": ["NLD", "NLD", "NOR", "GRC", "EU27"], "t": [2013.0, 2013.0, 2013.0, 2013.0, 2013.0],
                  "nat": ["AFG", "AFG", "AFG", "IRQ", "AFG"], "sex": ["female", "male", "male", "male", "male"],
                  "n": [10.0, 25.0, 7.0, 3.0, 99.0]}).to_csv(d / "eu_asyapp.csv", index=False)
    pd.DataFrame({"ROID": ["R1", "R1", "R2"], "DATE": ["2014-03-01T00:00:00Z"] * 2 + ["2014-05-01T00:00:00Z"],
                  "MSNAME": ["Netherlands", "Norway", "Netherlands"], "DEST": ["Afghanistan", "Afghanistan", "Afghanistan"],
                  "N_RETURNEES": ["4", "6", "5"]}).to_csv(d / "frontex_return_operations.csv", index=False)
    return d


def _agreements() -> dict[str, pd.DataFrame]:
    part = pd.DataFrame({"geo": ["NL", "NO", *OTHERS], "binds_eu_agreements": ["all", "none", *["all"] * 6],
                         "covered_by_eu_nonbinding": [True, False, *[True] * 6],
                         "eu_member_from": pd.NaT, "eu_member_to": pd.NaT})
    fw = pd.DataFrame({"framework_id": ["NL-AF-T"], "geo": ["NL"], "citizen": ["AF"], "name": ["test MoU"], "legal_form": ["mou"],
                       "signed": [pd.Timestamp("2015-03-01")], "in_force": [pd.NaT], "provisional_from": [pd.NaT],
                       "source_url": ["https://example.org"], "verified": [True]})
    return {"eu_participation": part, "bilateral_frameworks": fw}


def test_compare_countries_known_answers(covariates):
    res = compare_countries(_panel(), geos=("NL", "NO"), citizens=("AF", "IQ"), covariates_dir=covariates,
                            agreements=_agreements(), min_donors=5, min_pre=3)
    gap = res.gap_by_year.set_index(["design", "citizen", "year"])
    # NL/NO rate ratio is 0.5 for AF and 1 for IQ in every year; Poisson se = sqrt(1/r_NL + 1/r_NO)
    assert gap.loc[("main", "IQ", 2012), "log_ratio"] == pytest.approx(0.0)
    assert gap.loc[("main", "AF", 2016), "log_ratio"] == pytest.approx(np.log(0.5))
    assert gap.loc[("main", "AF", 2016), "std_error"] == pytest.approx(np.sqrt(1 / 900 + 1 / 1800))
    gm = res.gap_models.set_index(["design", "model", "citizen"])
    assert gm.loc[("main", "level", "AF"), "estimate"] == pytest.approx(np.log(0.5), abs=1e-6)
    assert gm.loc[("main", "level", "IQ"), "estimate"] == pytest.approx(0.0, abs=1e-6)
    assert gm.loc[("main", "trend", "AF"), "estimate"] == pytest.approx(0.0, abs=1e-6)
    # benchmark: median and quartiles over the six other countries
    p = _panel()
    b = res.benchmark.set_index(["citizen", "year", "rate"]).loc[("IQ", 2014, "return_rate")]
    others = p[(p.citizen == "IQ") & (p.year == 2014) & p.geo.isin(OTHERS)]["return_rate"]
    assert b["median"] == pytest.approx(np.median(others))
    assert b["q25"] == pytest.approx(np.quantile(others, 0.25))
    assert b["n_countries"] == 6
    # covariates: ISO3 -> Eurostat codes, summed over sex; EU27 aggregate left out; Frontex by destination
    t = res.table.set_index(["geo", "citizen", "year"])
    assert t.loc[("NL", "AF", 2013), "asylum_first_time"] == 35.0
    assert t.loc[("NO", "AF", 2013), "asylum_first_time"] == 7.0
    # the extract lists no zeros: absent in a reported geo-year -> 0 (flagged); an unreported geo-year stays missing
    assert t.loc[("NO", "IQ", 2013), "asylum_first_time"] == 0.0 and t.loc[("NO", "IQ", 2013), "asylum_first_time_imputed_zero"]
    assert np.isnan(t.loc[("NL", "AF", 2014), "asylum_first_time"])
    assert res.gap_by_year["vintage"].eq("hand-made@test").all()
    assert t.loc[("NL", "AF", 2014), "frontex_returnees"] == 9.0
    assert t.loc[("NL", "AF", 2014), "frontex_operations"] == 2
    assert t.loc[("NO", "IQ", 2014), "frontex_returnees"] == 0.0
    # the instrument of 2015 on NL-AF: synthetic NL from the uncovered donors (a bilateral MoU covers NL only: the six
    # others and NO); NL-AF is 0.7 AT + 0.3 BE before 2015, so the pre-period fit is exact (3 periods: weights not unique)
    s = res.synthetic.set_index("key").loc["NL-AF-T NL-AF (main)"]
    assert s["status"] == "done" and s["n_pre"] == 3 and s["n_donors"] == 7
    fit = res.synthetic_fits["NL-AF-T NL-AF (main)"]
    assert fit.pre_rmspe < 1e-5 and fit.weights.sum() == pytest.approx(1.0) and (fit.weights >= 0).all()
    assert 0 < s["placebo_p"] <= 1
    assert "partly" in res.causal_reading
    ev = res.event_time[(res.event_time.design == "main")].set_index("year")
    assert ev.loc[2015, "event_time"] == 0 and ev.loc[2015, "log_ratio"] == pytest.approx(np.log(0.5))
    assert "hand-made" in res.summary()
    figs = res.figures()
    assert set(figs) == {"rates", "counts", "event_time", "synthetic"}
    import matplotlib.pyplot as plt

    # figures draw themselves in a notebook cell and stay out of pyplot's global state
    assert all(f._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n" for f in figs.values()) and plt.get_fignums() == []


def test_compare_countries_errors(covariates, tmp_path):
    with pytest.raises(ValueError, match=r"geos: \['XX'\] not in the panel.*valid"):
        compare_countries(_panel(), geos=("NL", "XX"), citizens=("AF",), covariates_dir=covariates, agreements=_agreements())
    with pytest.raises(FileNotFoundError, match="covariates_dir"):
        compare_countries(_panel(), geos=("NL", "NO"), citizens=("AF",), covariates_dir=tmp_path / "nope", agreements=_agreements())
    with pytest.raises(ValueError, match="benchmark"):
        compare_countries(_panel(), benchmark="world", covariates_dir=covariates, agreements=_agreements())


def test_cli_compare_on_snapshot(eurostat_dir, tmp_path, capsys):
    from returnstudy.cli import main

    rc = main(["compare", "--data", str(eurostat_dir), "--geo", "NL", "NO", "--citizen", "AF", "IQ", "IR", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "cannot support a causal reading" in out
    assert "NL 2013-2017 average: 44% returned (23.8% forced, 20.2% assisted voluntary)" in out
    assert "migr_eirt_vol" in out and "charter" in out
    table = pd.read_csv(tmp_path / "tables" / "compare_table.csv", keep_default_na=False, na_values=[""])
    row = table[(table.geo == "NL") & (table.citizen == "AF") & (table.year == 2012)].iloc[0]
    assert row["return_rate"] == pytest.approx(335 / 1650)  # Eurostat snapshot: 335 returns, 1650 orders
    assert (tmp_path / "figures" / "compare_rates.png").is_file()


def test_report_sections(covariates):
    from returnstudy.claims import ClaimsResult
    from returnstudy.report_part3 import claims_section, part3_section

    res = compare_countries(_panel(), geos=("NL", "NO"), citizens=("AF", "IQ"), covariates_dir=covariates, agreements=_agreements())
    sec = part3_section(res, figures=False)
    assert sec.figures == {}
    from returnstudy.figure_data import figure_data

    drawn, makers = part3_section(res).figures, part3_section(res, figures="makers").figures
    assert set(drawn) == set(makers) == {f"part3_{k}" for k in ("rates", "counts", "event_time", "synthetic")}
    for stem, make in makers.items():  # each function draws the figure that figures=True gives
        pd.testing.assert_frame_equal(figure_data(make()), figure_data(drawn[stem]))
    assert sec.lines[0] == "## Part 3: the Netherlands and Norway"
    text = "\n".join(sec.lines)
    assert "| NL | 2013-2017 average | 44 | 23.8 | 20.2 |" in text  # published reference values, labelled
    assert "NL-AF-T" in text and "Data vintage" in text
    assert set(sec.tables) == {f"part3_{k}" for k in ("table", "benchmark", "instruments", "gap_by_year", "gap_models",
                                                       "event_time", "synthetic", "published_reference")}
    table = pd.DataFrame([{"claim_id": "2a", "claim": "c", "test": "t", "estimate": -0.3, "ci_low": -0.5, "ci_high": -0.1, "unit": "u",
                           "verdict": "supported", "reason": "the interval is negative", "caveat": "association", "n_obs": 10,
                           "years": "2012-2016", "vintage": "v"}])
    cs = claims_section(ClaimsResult(table=table, vintage={"eurostat": "v"}))
    assert cs.lines[0] == "## The policy response's claims, tested"
    assert any(line.startswith("- Claim 2 (") and "2a supported" in line for line in cs.lines)
    assert "| 2a | t | -0.3 | -0.5 | -0.1 |" in "\n".join(cs.lines)


def test_corridor_instruments_coverage_and_dates():
    from returnstudy.instruments import corridor_instruments

    tables = _agreements()
    tables["eu_nonbinding_arrangements"] = pd.DataFrame({
        "arrangement_id": ["EUNB-AF-X"], "citizen": ["AF"], "name": ["arrangement"], "signed": [pd.Timestamp("2016-10-02")],
        "in_force": [pd.NaT], "source_url": ["https://example.org/jwf"], "verified": [False]})
    tables["bilateral_frameworks"] = pd.concat([tables["bilateral_frameworks"], pd.DataFrame({
        "framework_id": ["NO-IQ-T"], "geo": ["NO"], "citizen": ["IQ"], "name": ["agreement"], "legal_form": ["agreement"],
        "signed": [pd.Timestamp("2008-01-01")], "in_force": [pd.Timestamp("2010-05-01")], "provisional_from": [pd.Timestamp("2009-02-01")],
        "source_url": ["https://example.org/no"], "verified": [True]})], ignore_index=True)
    out = corridor_instruments(["AF", "IQ"], tables=tables)
    eu = out[out["instrument_id"] == "EUNB-AF-X"]
    assert sorted(eu["geo"]) == sorted(["NL", *OTHERS])  # EU non-binding: EU members, not Norway
    assert (eu["date_basis"] == "signature").all() and (eu["year"] == 2016).all()
    no = out[out["instrument_id"] == "NO-IQ-T"].iloc[0]
    assert no["date_basis"] == "provisional application" and no["year"] == 2009  # applied before entry into force
    assert list(corridor_instruments(["AF"], geos=["NO"], tables=tables)["instrument_id"]) == []
