"""PACT v3.0 ProductFootprints from carbonedge's metered product footprints.

The figure is the one ``carbonedge report`` computes (:func:`analytics.carbon.footprint.product_footprint`);
this module only says it in PACT's words and adds what the exchange needs:

- the declared unit: a product counted in tonnes is declared per ``1 kilogram`` (bulk goods, PACT
  requires ``declaredUnitAmount`` 1), a cell counted in kWh of capacity per ``1 kilowatt hour``;
- ``referencePeriodStart/End``: the product's periods (or the data's period);
- ``primaryDataShare`` (PACT Methodology 4.2.2): metered emissions count as primary in proportion to
  the metering coverage of the period (bins bridged over a gap are not primary); a purchased input
  counts with its supplier's own primary data share when it came over PACT, as 0 when it is a
  generic secondary factor;
- ``dqi`` (Methodology 4.2.3, ratings 1 best to 5 worst), each rating the emission-weighted mean of
  its inputs' ratings (rule in :func:`metered_dqr`);
- an extension carrying the integrity evidence of the readings behind the figure (:mod:`analytics.pact.evidence`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from carbonedge import settings
from carbonedge.analytics.pact.schema import PactError, check
from carbonedge.clock import iso, parse_time
from carbonedge.errors import ConfigError
from carbonedge.plant import PlantModel
from carbonedge.settings import SettingsModel

SPEC_VERSION = "3.0.0"
EVIDENCE_SCHEMA = "urn:carbonedge:pact-extension:integrity-evidence:1.0.0"
#: Declared unit per product unit: (declaredUnitOfMeasurement, product units per declared unit, kg per declared unit or None).
UNITS: dict[str, tuple[str, float, float | None]] = {
    "t": ("kilogram", 1e-3, 1.0), "kg": ("kilogram", 1.0, 1.0), "kWh": ("kilowatt hour", 1.0, None),
    "MWh": ("kilowatt hour", 1e-3, None), "pcs": ("piece", 1.0, None), "m3": ("cubic meter", 1.0, None),
}


class _Model(SettingsModel):
    pass


class PactProduct(_Model):
    """How one product of the carbon settings is named in PACT."""

    name: str = Field(description="the product's name in the carbon settings ([[products]] name)")
    product_ids: list[str] = Field(default_factory=list, description="URNs, e.g. urn:gtin:..., urn:pact:...; default: a stable urn:uuid")
    classifications: list[str] = Field(default_factory=list, description="URNs; default from the CN code")
    description: str | None = None
    mass_kg_per_unit: float | None = Field(None, ge=0, description="product mass per declared unit (needed for kWh and pieces)")
    fossil_carbon_content_kg_per_unit: float = Field(0.0, ge=0, description="declared fossil carbon in the product, kg C per declared unit")


class PurchasedInput(_Model):
    """A material of the carbon settings whose factor comes from its supplier's PACT footprint when one was fetched."""

    material: str = Field(description="the material's name in the carbon settings ([[products.materials]] name)")
    product_id: str = Field(description="the supplier's productId (URN) of that material")


class PactSettings(_Model):
    """The data owner's PACT identity and publishing choices (``pact.toml``)."""

    company_name: str | None = None
    company_ids: list[str] = Field(default_factory=list)
    electricity: Literal["market", "location"] = Field("market", description="scope 2 method of the declared PCF")
    validity_years: int = Field(3, ge=1, le=10)
    meter_accuracy_class: str | None = Field(None, description="worst accuracy class of the plant's energy meters (IEC 62053), e.g. 0.5S, 1")
    products: list[PactProduct] = Field(default_factory=list)
    purchased: list[PurchasedInput] = Field(default_factory=list)


def load_pact_settings(path: Path | None) -> PactSettings:
    if path is None:
        return PactSettings()
    # Settings under [pact] or at the top level; validated like every settings file (carbonedge.settings), with
    # CARBONEDGE_PACT__KEY environment overrides.
    raw = settings.read_toml(path)
    return settings.load(PactSettings, path, kind="pact", data=raw.get("pact", raw))


def dec(x: float, digits: int = 6) -> str:
    """A PACT decimal string: fixed point, no exponent, trailing zeros removed."""
    if not np.isfinite(x):
        raise PactError(f"cannot publish a non-finite figure ({x})")
    d = Decimal(repr(round(float(x), digits))).quantize(Decimal(1).scaleb(-digits))
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "") else s


def stable_urn(*parts: str) -> str:
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "carbonedge:" + "/".join(parts)))


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "", text)


# ----------------------------------------------------------------------------- metering coverage
@dataclass
class Coverage:
    """How completely the meters behind a footprint covered its period."""

    fraction: float  # energy-weighted share of the period covered by readings
    by_device: dict[str, float]
    gaps_s: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "by_device": self.by_device, "gaps_s": self.gaps_s}


def coverage(data: Any, processes: list[str], periods: list[tuple[float, float]]) -> Coverage:
    """Share of the periods covered by each energy/gas meter's readings (a gap: > 3 poll intervals without a reading)."""
    by: dict[str, float] = {}
    gaps: dict[str, float] = {}
    weights: dict[str, float] = {}
    for proc in processes:
        for dev in data.process_devices(proc):
            ds = data.devices.get(dev)
            if ds is None:
                by[dev], gaps[dev], weights[dev] = 0.0, sum(b - a for a, b in periods), 1.0
                continue
            total = gap = 0.0
            for a, b in periods:
                t = ds.t[(ds.t >= a) & (ds.t <= b)]
                total += b - a
                if t.size < 2:
                    gap += b - a
                    continue
                d = np.diff(np.concatenate(([a], t, [b])))
                poll = float(np.median(np.diff(t)))
                gap += float(np.clip(d - poll, 0, None)[d > 3 * poll].sum())
            by[dev] = 1.0 - gap / total if total else 0.0
            gaps[dev] = gap
            w = 0.0
            for q in ("active_energy_import", "gas_volume"):
                v = ds.values.get(q)
                if v is not None and np.isfinite(v).any():
                    w += float(np.nanmax(v) - np.nanmin(v))
            weights[dev] = max(w, 1e-9)
    wsum = sum(weights.values())
    frac = sum(by[d] * weights[d] for d in by) / wsum if wsum else 0.0
    return Coverage(round(frac, 6), {d: round(v, 6) for d, v in by.items()}, gaps)


def metered_dqr(cov: float, accuracy_class: str | None) -> dict[str, float]:
    """DQRs of metered, site-specific data: the rule stated in docs/pact.md.

    technological 1 when the meters' accuracy class is 1 or better (IEC 62053-21/22), else 2 (class 2 or unknown);
    geographical 1 (the plant itself); temporal from the coverage of the reference period:
    1 at >= 99 %, 2 at >= 95 %, 3 at >= 80 %, else 4.
    """
    tech = 2.0
    if accuracy_class:
        try:
            tech = 1.0 if float(accuracy_class.upper().rstrip("S")) <= 1.0 else 2.0
        except ValueError:
            raise ConfigError(f"meter_accuracy_class {accuracy_class!r}: write an IEC 62053 class such as 0.2S, 0.5S, 1 or 2") from None
    temporal = 1.0 if cov >= 0.99 else 2.0 if cov >= 0.95 else 3.0 if cov >= 0.80 else 4.0
    return {"technologicalDQR": tech, "geographicalDQR": 1.0, "temporalDQR": temporal}


SECONDARY_DQR = {"technologicalDQR": 3.0, "geographicalDQR": 3.0, "temporalDQR": 3.0}


# ----------------------------------------------------------------------------- the footprint
def build_footprint(fp: dict[str, Any], *, plant: PlantModel | dict[str, Any], country: str, pact: PactSettings, cov: Coverage,
                    evidence: dict[str, Any] | None = None, pf_id: str | None = None, created: datetime | None = None,
                    preceding: list[str] | None = None, factor_sources: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The PACT v3.0 ProductFootprint of a product footprint ``fp`` (as ``product_footprint`` returns it), schema-checked."""
    prod_cfg = next((p for p in pact.products if p.name == fp["product"]), PactProduct(name=fp["product"]))
    unit = fp["declared_unit"].split(" ", 1)[1]
    if unit not in UNITS:
        raise ConfigError(f"product {fp['product']!r}: unit {unit!r} has no PACT declared unit (known: {', '.join(UNITS)})")
    pact_unit, per_declared, mass = UNITS[unit]
    if mass is None:
        if prod_cfg.mass_kg_per_unit is None:
            raise ConfigError(f"product {fp['product']!r} is declared per {pact_unit}: PACT needs its mass per declared unit; "
                              f"give mass_kg_per_unit for it in the PACT settings")
        mass = prod_cfg.mass_kg_per_unit
    site = PlantModel.coerce(plant).site
    company = pact.company_name or site
    company_ids = pact.company_ids or [stable_urn("company", company)]
    product_ids = prod_cfg.product_ids or [stable_urn("product", company, fp["product"])]
    st = fp["stages_kg_co2e_per_unit"]
    s2 = st["manufacturing_scope2_market"] if pact.electricity == "market" else st["manufacturing_scope2_location"]
    metered = (st["manufacturing_scope1"] + s2) * per_declared
    mats = [(m, m["kg_co2e_per_unit"] * per_declared) for m in fp["materials"]]
    total = metered + sum(v for _, v in mats)
    if total <= 0:
        raise PactError(f"product {fp['product']!r}: the footprint is {total} kg CO2e; nothing to publish")
    # Primary share and DQIs, each input weighted by its emissions.
    inputs = [(metered, cov.fraction, metered_dqr(cov.fraction, pact.meter_accuracy_class))]
    for m, v in mats:
        sup = m.get("supplier") or {}
        inputs.append((v, float(sup.get("primary_data_share", 0.0)) / 100.0, sup.get("dqi") or SECONDARY_DQR))
    pds = 100.0 * sum(v * p for v, p, _ in inputs) / total
    dqi = {k: dec(min(5.0, max(1.0, sum(v * q[k] for v, _, q in inputs) / total)), 1) for k in SECONDARY_DQR}
    periods = [(parse_time(a), parse_time(b)) for a, b in fp["periods"]]
    ref_start, ref_end = min(a for a, _ in periods), max(b for _, b in periods)
    valid_end = datetime.fromtimestamp(ref_end, UTC)
    valid_end = valid_end.replace(year=valid_end.year + pact.validity_years)
    created = created or datetime.now(UTC)
    classifications = prod_cfg.classifications or ([f"urn:pact:productclassification:cn:{_slug(c)}" for c in [fp.get("cn_code")] if c])
    secondary = [{"name": s["name"], "version": s["version"]} for s in (factor_sources or [])]
    for m, _ in mats:
        if not m.get("supplier"):
            secondary.append({"name": str(m["source"]), "version": "declared"})
    rule = (f"{fp['allocation_rule']}. Scope 2 {pact.electricity}-based. Metered at {site} ({fp['output_process']} output "
            f"{fp['output']:,.1f} {fp.get('output_unit') or unit}); metering coverage {100 * cov.fraction:.2f} %.")
    pcf: dict[str, Any] = {
        "declaredUnitOfMeasurement": pact_unit,
        "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": dec(mass),
        "referencePeriodStart": iso(ref_start),
        "referencePeriodEnd": iso(ref_end),
        "geographyCountry": country.upper(),
        "boundaryProcessesDescription": fp["boundary"],
        "pcfExcludingBiogenicUptake": dec(total),
        "pcfIncludingBiogenicUptake": dec(total),
        "fossilGhgEmissions": dec(total),
        "fossilCarbonContent": dec(prod_cfg.fossil_carbon_content_kg_per_unit),
        "ipccCharacterizationFactors": ["AR6"],
        "crossSectoralStandards": ["ISO14067", "GHGP-Product"],
        "exemptedEmissionsPercent": "0",
        "allocationRulesDescription": rule,
        "primaryDataShare": dec(pds, 2),
        "dqi": dqi,
    }
    if secondary:
        pcf["secondaryEmissionFactorSources"] = secondary
    doc: dict[str, Any] = {
        "id": pf_id or str(uuid.uuid4()),
        "specVersion": SPEC_VERSION,
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": "Active",
        "validityPeriodStart": iso(ref_end),
        "validityPeriodEnd": valid_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "companyName": company,
        "companyIds": company_ids,
        "productDescription": prod_cfg.description or f"{fp['product']}, per {pact_unit}, cradle-to-gate, from metered plant data",
        "productIds": product_ids,
        "productNameCompany": fp["product"],
        "comment": "Computed by carbonedge from metered energy and production; factor libraries " + ", ".join(fp.get("factor_libraries", [])) + ".",
        "pcf": pcf,
    }
    if classifications:
        doc["productClassifications"] = classifications
    if preceding:
        doc["precedingPfIds"] = preceding
    if evidence is not None:
        doc["extensions"] = [{"specVersion": "1.0.0", "dataSchema": EVIDENCE_SCHEMA, "data": evidence}]
    check(doc)
    return doc


_UNIT_SHORT = {"kilogram": "kg", "kilowatt hour": "kWh", "piece": "pcs", "cubic meter": "m3", "liter": "l", "megajoule": "MJ",
               "square meter": "m2", "ton kilometer": "tkm", "hour": "h", "megabit second": "Mbit s"}


def summarize(doc: dict[str, Any], version: str) -> dict[str, Any]:
    """What a customer needs from a supplier's footprint (v3.0 or v2.3), per one declared unit, without reinterpreting it.

    v3.0 gives the PCF per declared unit (``declaredUnitAmount`` x unit): divided by the amount.
    v2.3 gives ``pCfExcludingBiogenic`` per one declared unit already.
    """
    c = doc["pcf"]
    if version == "3.0":
        amount = float(c["declaredUnitAmount"])
        if amount <= 0:
            raise PactError(f"footprint {doc['id']}: declaredUnitAmount {c['declaredUnitAmount']} is not positive")
        kg = float(c["pcfExcludingBiogenicUptake"]) / amount
        unit = c["declaredUnitOfMeasurement"]
    else:
        kg = float(c["pCfExcludingBiogenic"])
        unit = c["declaredUnit"]
    dqi = c.get("dqi") or {}
    dqr = {k: float(dqi[k]) for k in ("technologicalDQR", "geographicalDQR", "temporalDQR") if dqi.get(k) is not None}
    pds = c.get("primaryDataShare")
    return {
        "pf_id": doc["id"], "spec_version": doc["specVersion"], "status": doc.get("status", "Active"), "created": doc["created"],
        "company": doc["companyName"], "product_ids": list(doc["productIds"]), "product_name": doc["productNameCompany"],
        "kg_co2e_per_unit": kg, "unit": _UNIT_SHORT.get(unit, unit),
        "primary_data_share": float(pds) if pds is not None else 0.0, "dqi": dqr if len(dqr) == 3 else None,
        "reference_period": [c["referencePeriodStart"], c["referencePeriodEnd"]],
        "preceding": list(doc.get("precedingPfIds") or []),
    }
