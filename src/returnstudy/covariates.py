"""Covariates beside the Eurostat tables: first-time asylum applications and Frontex charters.

Both files live in a ``covariates`` directory (offline: ``../shared/data/covariates``):

* ``eu_asyapp.csv`` -- first-time asylum applicants (Eurostat ``migr_asyappctza``) by
  reporting country ``geo`` and citizenship ``nat`` (both ISO 3166-1 alpha-3), sex and year
  ``t``; persons per calendar year. Mapped to Eurostat codes with the package's code lists
  (``GRC`` -> ``EL``, ``GBR`` -> ``UK``, ``XKX`` -> ``XK``) and summed over sex.
* ``frontex_return_operations.csv`` -- Frontex-coordinated return operations (charter
  flights): operation id, date, member state, destination, returnees. A subset of enforced
  returns, recorded by *destination* country, not citizenship; every output says so.

Codes that cannot be mapped are counted and logged, never silently dropped.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnstudy.data import codes
from returnstudy.provenance import frozen

log = logging.getLogger(__name__)

__all__ = [
    "ASYLUM_FILE",
    "FRONTEX_FILE",
    "FRONTEX_LABEL",
    "default_covariates_dir",
    "read_asylum_applications",
    "read_frontex_operations",
    "merge_asylum",
    "vintage_text",
]

ASYLUM_FILE = "eu_asyapp.csv"
FRONTEX_FILE = "frontex_return_operations.csv"
FRONTEX_LABEL = "Frontex-coordinated charter return operations only (by destination country, not citizenship)"

# English names used by the Frontex compilation that differ from the code lists' names
_FRONTEX_ALIASES = {
    "congo dr": "CD",
    "côte d'ivoire": "CI",
    "moldova": "MD",
    "russia": "RU",
    "syria": "SY",
    "turkey": "TR",
    "venezuela, bolivarian republic of": "VE",
    "czech republic": "CZ",
}
_FRONTEX_NOT_A_STATE = {"frontex"}  # operations led by Frontex itself, no member state


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_covariates_dir(data_dir: str | Path | None) -> Path:
    """``<data_dir>/../covariates``: where the snapshot keeps its covariates."""
    if data_dir is None:
        raise ValueError("covariates_dir not given and no data_dir to derive it from (<data_dir>/../covariates)")
    return Path(data_dir).resolve().parent / "covariates"


def _require(covariates_dir: str | Path, name: str) -> Path:
    d = Path(covariates_dir)
    if not d.is_dir():
        raise FileNotFoundError(
            f"covariates directory {d} does not exist; pass covariates_dir= (CLI: --covariates DIR) "
            f"pointing at the directory holding {ASYLUM_FILE} and {FRONTEX_FILE} (offline: ../shared/data/covariates)"
        )
    path = d / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found in the covariates directory {d}")
    return path


def _iso3_maps() -> tuple[dict[str, str], dict[str, str]]:
    rep = codes.reporting_countries()
    geo = {r.iso3: r.geo for r in rep.itertuples(index=False) if r.iso3}
    cit = codes.citizenships()
    nat = {r.iso3: r.code for r in cit.itertuples(index=False) if r.iso3 and r.kind == "country"}
    return geo, nat


def read_asylum_applications(covariates_dir: str | Path) -> pd.DataFrame:
    """First-time asylum applicants per (geo, citizen, year), Eurostat codes, summed over sex.

    Columns ``geo``, ``citizen``, ``year``, ``asylum_first_time`` (persons). ``attrs``:
    ``vintage`` (file, sha256, rows read, rows used) and ``unmapped`` (ISO3 codes without a
    Eurostat code, with their row counts: EU aggregates, ``OOO``/``STL`` special codes).
    """
    path = _require(covariates_dir, ASYLUM_FILE)
    raw = pd.read_csv(path, dtype={"geo": str, "nat": str, "sex": str}, keep_default_na=False, na_values=[""])
    need = {"geo", "t", "nat", "sex", "n"}
    if missing := sorted(need - set(raw.columns)):
        raise ValueError(f"{path}: missing column(s) {missing}; expected {sorted(need)}")
    geo_map, nat_map = _iso3_maps()
    df = raw.assign(geo_code=raw["geo"].map(geo_map), citizen=raw["nat"].map(nat_map))
    unmapped: dict[str, int] = {}
    for col, mapped in (("geo", "geo_code"), ("nat", "citizen")):
        bad = df[mapped].isna()
        for code, n in df.loc[bad, col].value_counts().sort_index().items():
            unmapped[f"{col}={code}"] = int(n)
    if unmapped:
        log.info("%s: rows with codes not in the code lists left out: %s", path.name, unmapped)
    years = pd.to_numeric(df["t"], errors="coerce")
    if years.isna().any() or (years % 1 != 0).any():
        i = int(np.flatnonzero((years.isna() | (years % 1 != 0)).to_numpy())[0])
        raise ValueError(f"{path}: row {i + 2}: year t={raw['t'].iloc[i]!r} is not a whole year")
    df["year"] = years.astype("int64")
    ok = df["geo_code"].notna() & df["citizen"].notna()
    used = df.loc[ok]
    out = (
        used.groupby(["geo_code", "citizen", "year"], sort=True)["n"].sum(min_count=1)
        .rename("asylum_first_time").reset_index().rename(columns={"geo_code": "geo"})
    )
    out.attrs["vintage"] = frozen({
        "file": str(path), "sha256": _sha256(path), "rows": int(len(raw)), "rows_used": int(ok.sum()),
        "years": [int(df["year"].min()), int(df["year"].max())],
        "source": "Eurostat migr_asyappctza via the snapshot's covariates (first-time applicants)",
    })
    out.attrs["unmapped"] = frozen(unmapped)
    return out


def merge_asylum(panel: pd.DataFrame, asylum: pd.DataFrame) -> pd.DataFrame:
    """``panel`` with ``asylum_first_time`` and ``asylum_first_time_imputed_zero`` added (left join on geo, citizen, year).

    The covariates extract lists no zero (its smallest value is 5): a cell absent in a geo-year
    the extract reports at all is set to 0 and flagged; geo-years it does not report stay missing.
    """
    out = panel.merge(asylum[["geo", "citizen", "year", "asylum_first_time"]], on=["geo", "citizen", "year"], how="left",
                      validate="many_to_one")
    reported = asylum[["geo", "year"]].drop_duplicates().assign(_reported=True)
    flag = out[["geo", "year"]].merge(reported, on=["geo", "year"], how="left")["_reported"].fillna(False).to_numpy(dtype=bool)
    fill = flag & out["asylum_first_time"].isna().to_numpy()
    out.loc[fill, "asylum_first_time"] = 0.0
    out["asylum_first_time_imputed_zero"] = fill
    out.attrs = dict(panel.attrs)
    return out


def _frontex_code(name: str, lookup: dict[str, str]) -> str | None:
    key = name.strip().lower()
    return _FRONTEX_ALIASES.get(key) or lookup.get(key)


def read_frontex_operations(covariates_dir: str | Path) -> pd.DataFrame:
    """Frontex-coordinated return operations per (member state ``geo``, destination, year).

    Columns ``geo``, ``destination`` (Eurostat citizenship code of the destination country),
    ``year``, ``operations`` (distinct operation ids), ``returnees`` (persons on them).
    Charter operations only: a small subset of enforced returns, by destination, not by
    citizenship. Rows led by Frontex itself (no member state) are left out and counted in
    ``attrs["vintage"]["rows_frontex_led"]``. An unknown member-state or destination name
    raises ``ValueError`` naming it and the file.
    """
    path = _require(covariates_dir, FRONTEX_FILE)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    need = {"ROID", "DATE", "MSNAME", "DEST", "N_RETURNEES"}
    if missing := sorted(need - set(raw.columns)):
        raise ValueError(f"{path}: missing column(s) {missing}; expected {sorted(need)}")
    geo_lookup = {str(r.name).lower(): r.geo for r in codes.reporting_countries().itertuples(index=False)}
    cit = codes.citizenships()
    dest_lookup = {str(r.name).lower(): r.code for r in cit.itertuples(index=False) if r.kind == "country"}
    led = raw["MSNAME"].str.strip().str.lower().isin(_FRONTEX_NOT_A_STATE)
    df = raw.loc[~led].copy()
    df["geo"] = [_frontex_code(n, geo_lookup) for n in df["MSNAME"]]
    df["destination"] = [_frontex_code(n, dest_lookup) for n in df["DEST"]]
    for col, src in (("geo", "MSNAME"), ("destination", "DEST")):
        bad = sorted(df.loc[df[col].isna(), src].unique())
        if bad:
            raise ValueError(f"{path}: {src} name(s) {bad} match no code in data/codes/; add an alias in covariates.py")
    dates = pd.to_datetime(df["DATE"], errors="coerce", utc=True)
    if dates.isna().any():
        i = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise ValueError(f"{path}: DATE {df['DATE'].iloc[i]!r} (operation {df['ROID'].iloc[i]}) is not a date")
    df["year"] = dates.dt.year.astype("int64")
    df["returnees"] = pd.to_numeric(df["N_RETURNEES"], errors="raise").astype("float64")
    out = (
        df.groupby(["geo", "destination", "year"], sort=True)
        .agg(operations=("ROID", "nunique"), returnees=("returnees", "sum"))
        .reset_index()
    )
    out["operations"] = out["operations"].astype("int64")
    out.attrs["vintage"] = frozen({
        "file": str(path), "sha256": _sha256(path), "rows": int(len(raw)), "rows_used": int(len(df)),
        "rows_frontex_led": int(led.sum()), "years": [int(df["year"].min()), int(df["year"].max())],
        "source": "Frontex-coordinated return operations compiled from released documents",
        "label": FRONTEX_LABEL,
    })
    return out


def vintage_text(meta: dict[str, Any]) -> str:
    """"eu_asyapp.csv (sha256 0123abcd4567; 43896 rows, 43000 used)"."""
    if not meta:
        return "not recorded"
    return (
        f"{Path(str(meta.get('file', '?'))).name} (sha256 {str(meta.get('sha256', ''))[:12]}; "
        f"{meta.get('rows', '?')} rows, {meta.get('rows_used', '?')} used)"
    )
