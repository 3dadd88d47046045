"""Panel -> estimation arrays (returnstudy.models._design.prepare)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from returnstudy.models._design import (
    check_column_arguments,
    check_unique_keys,
    panel_keys,
    parse_cluster,
    prepare,
    resolve_panel_ids,
)


def _panel() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "geo": ["NL", "NL", "NL", "DE", "DE", "DE", "FR", "FR"],
            "citizen": ["MA", "MA", "DZ", "MA", "DZ", "DZ", "MA", "MA"],
            "year": np.array([2014, 2015, 2014, 2014, 2014, 2015, 2014, 2015], dtype="int64"),
            "orders": [10.0, 20.0, np.nan, 5.0, 0.0, 8.0, 4.0, 6.0],
            "returns": [2.0, 4.0, 1.0, 1.0, 0.0, 2.0, 1.0, 3.0],
            "d": [0.0, 1.0, 0.0, 0.0, 0.0, np.nan, 0.0, 1.0],
        }
    )
    df["return_rate"] = (df["returns"] / df["orders"]).where(df["orders"] > 0)
    df.attrs["vintage"] = {"t": {"years": [2014, 2015]}}
    return df


def test_drops_are_counted_by_first_missing_column() -> None:
    d = prepare(_panel(), "return_rate", ["d"], fe=("corridor", "year"), cluster="citizen", weights="orders")
    # row 2: orders NaN -> return_rate NaN; row 4: orders 0 -> return_rate NaN; row 5: d NaN
    assert d.dropped == {"missing return_rate": 2, "missing d": 1}
    assert d.n_obs == 5
    np.testing.assert_array_equal(d.rows, [0, 1, 3, 6, 7])
    np.testing.assert_allclose(d.weights, [10, 20, 5, 4, 6])
    # corridor built from geo and citizen; codes follow first appearance
    assert list(d.frame["corridor"]) == ["NL-MA", "NL-MA", "DE-MA", "FR-MA", "FR-MA"]
    assert d.fe.n_levels == [3, 2]
    assert d.n_clusters == [1]
    info = d.info()
    assert info["n_obs"] == 5 and info["n_corridors"] == 3 and info["years"] == (2014, 2015)
    assert info["vintage"] == {"t": {"years": [2014, 2015]}}


def test_interaction_fixed_effects_and_clusters() -> None:
    d = prepare(_panel(), "returns", [], fe=("geo^year",), cluster=("citizen", "geo"))
    p = _panel()
    assert d.fe.n_levels == [6]  # NL, DE, FR x 2014, 2015
    codes = d.fe.codes[0]
    key = (p["geo"] + p["year"].astype(str)).to_numpy()
    same_code = codes[:, None] == codes[None, :]
    same_key = key[:, None] == key[None, :]
    np.testing.assert_array_equal(same_code, same_key)
    assert d.cluster_names == ("citizen", "geo") and len(d.clusters) == 2


def test_errors_name_the_column_and_row() -> None:
    with pytest.raises(ValueError, match=r"'d' is missing in 1 rows \(first: row 5\)"):
        prepare(_panel(), "returns", ["d"], dropna=False)
    with pytest.raises(KeyError, match="zzz"):
        prepare(_panel(), "returns", ["zzz"])
    with pytest.raises(ValueError, match="must be numeric"):
        prepare(_panel(), "returns", ["geo"])
    with pytest.raises(ValueError, match="infinite"):
        prepare(_panel().assign(x=np.inf), "returns", ["x"])
    assert parse_cluster(None) == () and parse_cluster("hetero") == () and parse_cluster(("a", "b")) == ("a", "b")
    with pytest.raises(ValueError, match="duplicated"):
        parse_cluster(("a", "a"))


def test_duplicated_corridor_year_rows_raise_with_first_key_and_counts() -> None:
    p = _panel()
    # rows 0 and 1 (NL-MA 2014, 2015) appear twice more / once more
    dup = pd.concat([p, p.iloc[[0, 0, 1]]])
    with pytest.raises(
        ValueError,
        match=r"2 duplicated \(corridor, year\) key\(s\) in 5 rows; first: corridor='NL-MA', year=2014 \(rows \[0, 0, 0\]\)",
    ):
        prepare(dup, "returns", ["d"])
    # a duplicate is an error even if its outcome is missing (it would be dropped anyway)
    dup2 = pd.concat([p, p.iloc[[2]].assign(returns=np.nan)], ignore_index=True)
    with pytest.raises(ValueError, match=r"1 duplicated \(corridor, year\) key\(s\) in 2 rows; first: "
                                         r"corridor='NL-DZ', year=2014 \(rows \[2, 8\]\)"):
        prepare(dup2, "returns", ["d"], fe=("geo^year",))
    # rows with a missing key are ignored by the check (and dropped as missing)
    ok = pd.concat([p, p.iloc[[3]].assign(year=pd.NA)], ignore_index=True).astype({"year": "Int64"})
    d = prepare(ok, "returns", [], fe=("corridor", "year"), cluster=None)
    assert d.dropped == {"missing year": 1} and d.n_obs == 8
    # keys=None switches the check off
    assert prepare(dup, "returns", ["d"], keys=None, cluster=None).n_obs == 10


def test_panel_keys_follow_the_fixed_effects() -> None:
    cols = ["geo", "citizen", "year", "corridor", "unit", "period"]
    assert panel_keys(cols, ("corridor", "year")) == ("corridor", "year")
    assert panel_keys(cols, ("corridor", "geo^year")) == ("corridor", "year")
    assert panel_keys(["geo", "citizen", "year"], ("citizen", "year")) == ("corridor", "year")
    assert panel_keys(cols, ("unit", "period")) == ("unit", "period")
    assert panel_keys(["unit", "t"], ()) is None
    # a panel with its own unit and time columns: duplicated (unit, period) rows are named
    q = pd.DataFrame({"unit": ["a", "a", "b", "b", "b"], "period": [1, 2, 1, 2, 2], "y": [1.0, 2, 3, 4, 5], "x": [0.0, 1, 0, 0, 1]})
    with pytest.raises(ValueError, match=r"1 duplicated \(unit, period\) key\(s\) in 2 rows; first: unit='b', period=2 "
                                         r"\(rows \[3, 4\]\)"):
        prepare(q, "y", ["x"], fe=("unit", "period"), cluster=None)
    with pytest.raises(ValueError, match=r"\(unit, period\) key"):
        check_unique_keys(q, ("unit", "period"))
    check_unique_keys(q.iloc[:4], ("unit", "period"))


def test_resolve_panel_ids_named_unit_and_time_or_inferred_from_fe() -> None:
    cols = ["geo", "citizen", "year", "corridor", "county", "t"]
    # named: the key is (unit, time) and the fixed effects default to them
    assert resolve_panel_ids(cols, "county", "t", None) == (("county", "t"), ("county", "t"))
    assert resolve_panel_ids(cols, "county", "t", ("county", "geo^t")) == (("county", "t"), ("county", "geo^t"))
    assert resolve_panel_ids(cols, "county", None, None) == (("county", "year"), ("county", "year"))
    # not named: corridor-year defaults, key inferred from fe as before
    assert resolve_panel_ids(cols, None, None, None) == (("corridor", "year"), ("corridor", "year"))
    assert resolve_panel_ids(["unit", "period", "y"], None, None, ("unit", "period")) == (("unit", "period"), ("unit", "period"))
    # corridor is built from geo and citizen: it counts as present
    assert resolve_panel_ids(["geo", "citizen", "year"], "corridor", "year", None)[0] == ("corridor", "year")
    with pytest.raises(KeyError, match=r"unit='county_id' \('county_id'\); the panel's columns are: \['geo'"):
        resolve_panel_ids(cols, "county_id", "t", None)
    with pytest.raises(ValueError, match="different columns"):
        resolve_panel_ids(cols, "t", "t", None)


def test_check_column_arguments_names_every_missing_argument() -> None:
    q = pd.DataFrame({"u": [1, 2], "t": [1, 1], "y": [0.0, 1.0]})
    check_column_arguments(q, unit="u", time="t", fe=("u", "t"), cluster=None, outcome="y")
    with pytest.raises(KeyError) as exc:
        check_column_arguments(q, outcome="z", fe=("u", "g^t"), cluster="hetero", regressors=["x^2"])
    msg = str(exc.value)
    assert "outcome='z' ('z')" in msg and "fe=('u', 'g^t') ('g')" in msg and "regressors=['x^2'] ('x^2')" in msg
    assert "cluster" not in msg and "the panel's columns are: ['u', 't', 'y']" in msg
    # prepare names the argument too
    with pytest.raises(KeyError, match=r"cluster=\('c',\) \('c'\)"):
        prepare(q, "y", [], fe=("u", "t"), cluster="c", keys=("u", "t"))


@pytest.mark.parametrize("seed", range(6))
def test_duplicate_key_check_agrees_with_pandas_on_random_panels(seed: int) -> None:
    """The quick check (one integer per row from factorized codes) against pandas' own
    ``duplicated`` on the rows without a missing key: text, integer and float keys, with gaps."""
    from returnstudy.models._design import _has_duplicate_keys

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    df = pd.DataFrame({
        "corridor": pd.array(rng.choice(["NL-MA", "DE-TR", "FR-DZ", "NL-IQ", None], n), dtype="str"),
        "year": rng.integers(2008, 2024, n),
        "w": rng.choice([0.5, 1.5, np.nan], n),
        "x": rng.integers(0, max(n // 8, 1), n) / 7.0,  # many values: too many combinations to count them all
    })
    for keys in (["corridor", "year"], ["corridor"], ["year", "w"], ["corridor", "year", "w"], ["x", "year", "corridor"]):
        expected = bool(df.dropna(subset=keys).duplicated(keys).any())
        assert _has_duplicate_keys(df, keys) == expected, keys
        deduplicated = df.dropna(subset=keys).drop_duplicates(keys)
        assert not _has_duplicate_keys(deduplicated, keys)
        if expected:
            with pytest.raises(ValueError, match="duplicated"):
                check_unique_keys(df, keys)
        else:
            check_unique_keys(df, keys)
