"""The emission-factor library: versioned data files with provenance.

Factors live in ``analytics/carbon/data/factors-<version>.json``. Each factor states
its value, unit, gas, region, year, publisher, purpose and the key of its source
(source keys such as [E3] and [C1] resolve to ``docs/sources.md``). A report names the library
version and the id of every factor it used, so a verifier can trace each figure.
A site can add or override factors with its own file (same layout) — e.g. a
supplier-specific electricity factor — and the report names that file's version too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from carbonedge.errors import ConfigError

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_VERSION = "2026.2"

# Units a factor may have, with the multiplier to the canonical kg CO2(e) per kWh.
# 1 t CO2/TJ = 3.6 g/kWh.
_TO_KG_PER_KWH = {"kg CO2/kWh": 1.0, "kg CO2e/kWh": 1.0, "g CO2/kWh": 1e-3, "g CO2e/kWh": 1e-3, "t CO2/MWh": 1.0, "t CO2/TJ": 3.6e-3}
_KINDS = {"electricity", "fuel", "ncv", "material", "markup", "price"}
_REQUIRED = ("id", "kind", "value", "unit", "gas", "region", "year", "publisher", "purpose", "source", "quality")


@dataclass(frozen=True)
class Factor:
    """One emission factor (or calorific value) and where it comes from."""

    id: str
    kind: str
    value: float
    unit: str
    gas: str
    region: str
    year: int
    publisher: str
    purpose: str
    source: str
    quality: str  # primary | derived | secondary | unverified
    library: str = ""  # "<library>@<version>" the factor was loaded from
    basis: str = ""  # e.g. national-average | excl-market-nonfossil | fossil | ets-reporting (grid factors)

    @property
    def kg_per_kwh(self) -> float:
        """The factor in kg CO2(e) per kWh (electricity, or fuel energy at NCV)."""
        try:
            return self.value * _TO_KG_PER_KWH[self.unit]
        except KeyError:
            raise ConfigError(f"emission factor {self.id!r} is in {self.unit!r}, not an energy-based unit") from None

    def cite(self) -> str:
        """Short citation for reports: value, unit, id, data year, basis and source key."""
        basis = f", basis {self.basis}" if self.basis else ""
        return f"{self.value:g} {self.unit} ({self.id}, {self.publisher}, data year {self.year}{basis}, [{self.source}])"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FactorLibrary:
    """Factors by id, from one shipped library version plus optional site files."""

    def __init__(self, factors: dict[str, Factor], versions: list[str]) -> None:
        self.factors = factors
        self.versions = versions  # e.g. ["carbonedge-ef@2026.2", "site-factors@3"]
        self.used: dict[str, Factor] = {}

    @classmethod
    def load(cls, version: str = DEFAULT_VERSION, extra: list[Path] | None = None) -> FactorLibrary:
        """Load the shipped library ``version`` and then each file in ``extra`` (later files override)."""
        path = DATA_DIR / f"factors-{version}.json"
        if not path.exists():
            known = sorted(p.stem.removeprefix("factors-") for p in DATA_DIR.glob("factors-*.json"))
            raise ConfigError(f"emission-factor library version {version!r} not found; available: {', '.join(known)}")
        factors: dict[str, Factor] = {}
        versions: list[str] = []
        for p in [path, *(extra or [])]:
            tag, fs = _read(Path(p))
            versions.append(tag)
            factors.update(fs)
        return cls(factors, versions)

    def get(self, factor_id: str) -> Factor:
        """The factor ``factor_id``; remembered as used so the report can list it."""
        try:
            f = self.factors[factor_id]
        except KeyError:
            near = [k for k in self.factors if factor_id.split(".")[0] in k][:8]
            raise ConfigError(f"unknown emission factor {factor_id!r}" + (f"; similar: {', '.join(near)}" if near else "")) from None
        self.used[factor_id] = f
        return f

    def same_year(self, factor_ids: list[str], purpose: str, *, allow_mixed: bool = False) -> int:
        """The one data year of ``factor_ids`` (all looked up and recorded as used).

        A document that combines factors of different data years (e.g. a 2023 location-based
        grid factor with a 2022 residual mix) would mix vintages without saying so: refuse,
        unless ``allow_mixed`` is set by the site, in which case the caller states it.
        """
        fs = [self.get(i) for i in dict.fromkeys(factor_ids)]
        years = sorted({f.year for f in fs})
        if len(years) > 1 and not allow_mixed:
            detail = ", ".join(f"{f.id} (data year {f.year})" for f in fs)
            raise ConfigError(f"{purpose}: the factors are of different data years ({detail}); use factors of one year, "
                              "or set allow_mixed_factor_years = true in [carbon] to state the mix in the report")
        return years[-1]

    def used_factors(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in sorted(self.used.values(), key=lambda f: f.id)]


def _read(path: Path) -> tuple[str, dict[str, Factor]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read emission-factor file {path}: {exc}") from exc
    for key in ("library", "version", "factors"):
        if key not in doc:
            raise ConfigError(f"{path}: missing top-level key {key!r} (need library, version, factors)")
    tag = f"{doc['library']}@{doc['version']}"
    out: dict[str, Factor] = {}
    for i, raw in enumerate(doc["factors"]):
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise ConfigError(f"{path}: factor #{i + 1} ({raw.get('id', '?')}) lacks {', '.join(missing)}")
        if raw["kind"] not in _KINDS:
            raise ConfigError(f"{path}: factor {raw['id']!r} has kind {raw['kind']!r}; use one of {', '.join(sorted(_KINDS))}")
        if not isinstance(raw["value"], (int, float)) or raw["value"] < 0:
            raise ConfigError(f"{path}: factor {raw['id']!r} has value {raw['value']!r}; it must be a number >= 0")
        if raw["kind"] in ("electricity", "fuel") and raw["unit"] not in _TO_KG_PER_KWH:
            raise ConfigError(f"{path}: factor {raw['id']!r} has unit {raw['unit']!r}; use one of {', '.join(_TO_KG_PER_KWH)}")
        if raw["id"] in out:
            raise ConfigError(f"{path}: factor {raw['id']!r} appears twice")
        out[raw["id"]] = Factor(**{k: raw[k] for k in _REQUIRED}, library=tag, basis=str(raw.get("basis", "")))
    return tag, out
