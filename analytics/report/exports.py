"""Regulatory exports: EU CBAM embedded emissions (steel) and EU Battery Regulation carbon footprint.

Both are built from the carbon accounts and product footprints, validated against
their JSON Schemas (``analytics/report/schemas/``, documented in
``docs/carbon.md``) before they are written, and written as JSON and CSV.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from analytics.carbon.accounts import Accounts
from analytics.carbon.settings import Settings
from carbonedge.clock import iso, parse_time
from carbonedge.errors import CarbonEdgeError, ConfigError

SCHEMA_DIR = Path(__file__).parent / "schemas"


class ExportError(CarbonEdgeError):
    """A regulatory export does not satisfy its schema; nothing was written."""

    code = "report.export_invalid"


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def validate(doc: dict[str, Any], schema: str) -> None:
    """Raise :class:`ExportError` listing every violation of ``schema`` (cbam-steel, battery-cfp, report)."""
    errors = sorted(_validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors[:20]]
        raise ExportError(f"the {schema} export does not match its schema ({len(errors)} problem(s)):\n" + "\n".join(lines))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cbam_steel(acc: Accounts, footprints: list[dict[str, Any]], settings: Settings, data_source: str) -> dict[str, Any]:
    """CBAM-style embedded emissions per good (CN code) for the installation and period."""
    c = settings.carbon
    lib = acc.factors
    elec = lib.get(c.cbam_electricity_factor or c.grid_factor)
    totals = acc.plant_totals()
    goods = []
    for fp, prod in zip(footprints, settings.products, strict=True):
        if not prod.cn_code:
            continue
        q = fp["output"]
        st = fp["stages_kg_co2e_per_unit"]
        direct = st["manufacturing_scope1"] * q / 1000.0
        e_mwh = fp["energy_kwh_per_unit"] * q / 1000.0
        indirect = e_mwh * elec.kg_per_kwh  # MWh x kg/kWh = t
        precursors = [{"name": m.name, "amount_t": m.amount_per_unit * q / 1000.0 if m.unit == "kg" else m.amount_per_unit * q,
                       "embedded_direct_t": m.amount_per_unit * m.kg_co2e_per_amount * m.cbam_direct_share * q / 1000.0, "source": m.source}
                      for m in prod.materials if m.cbam_precursor]
        pre = sum(p["embedded_direct_t"] for p in precursors)
        default = None
        if prod.cbam_default_factor:
            f = lib.get(prod.cbam_default_factor)
            default = {"factor_id": f.id, "t_per_t": f.value, "source": f"{f.publisher} [{f.source}]"}
        goods.append({
            "product": prod.name, "cn_code": prod.cn_code, "quantity_t": q,
            "direct_emissions_t": direct, "indirect_emissions_t": indirect, "precursor_emissions_t": pre,
            "specific_direct_t_per_t": (direct + pre) / q, "specific_indirect_t_per_t": indirect / q,
            "specific_embedded_t_per_t": (direct + pre + indirect) / q, "electricity_mwh": e_mwh,
            "allocation_rule": fp["allocation_rule"], "precursors": precursors, "default_value": default,
        })
    if not goods:
        raise ConfigError("no product has a CN code, so there is nothing to declare under CBAM: set cn_code on the steel products")
    definitive = parse_time(iso(acc.start)) >= parse_time("2026-01-01T00:00:00Z")
    doc = {
        "schema": "carbonedge/cbam-steel/1", "report_type": "CBAM embedded emissions (iron and steel)",
        "installation": {"name": c.installation, "site": acc.site, "country": c.country},
        "reporting_period": {"start": iso(acc.start), "end": iso(acc.end)},
        "phase": "definitive" if definitive else "transitional",
        "emissions_basis": ("definitive period: certificates cover direct emissions only (iron and steel); indirect emissions shown for information [C3]"
                            if definitive else "transitional period: direct and indirect emissions reported [C4]"),
        "goods": goods,
        "installation_totals": {"direct_emissions_t": totals["scope1_kg"] / 1000.0,
                                "indirect_emissions_t": totals["energy_kwh"] * elec.kg_per_kwh / 1000.0,
                                "electricity_mwh": totals["energy_kwh"] / 1000.0, "natural_gas_nm3": totals["gas_nm3"]},
        "methodology": [
            "Installation-level monitoring from metered data (electricity, natural gas, production counters), attributed to goods "
            "by the allocation rule of each good [C9].",
            f"Indirect emissions: electricity consumed x {elec.cite()}.",
            *acc.method_notes,
            "Only CO2 is counted for iron and steel [C4]. Precursors are declared inputs with their own embedded emissions [C8].",
        ],
        "factors_used": lib.used_factors(), "factor_libraries": lib.versions, "data_source": data_source, "generated": _now(),
    }
    validate(doc, "cbam-steel")
    return doc


def battery_cfp(acc: Accounts, footprint: dict[str, Any], settings: Settings, data_source: str) -> dict[str, Any]:
    """EU Battery Regulation-style carbon-footprint declaration for one model and plant."""
    b = settings.battery
    if b is None:
        raise ConfigError("the battery declaration needs a [battery] section (model, service life) in the carbon settings")
    lib = acc.factors
    life = b.service_life_kwh_per_kwh_capacity
    st = footprint["stages_kg_co2e_per_unit"]
    if b.electricity_rule == "national-mix":
        elec = lib.get(settings.carbon.grid_factor)
        prod_kg = st["manufacturing_scope1"] + st["manufacturing_scope2_location"]
    else:
        elec = lib.get(settings.carbon.residual_factor)
        prod_kg = st["manufacturing_scope1"] + st["manufacturing_scope2_market"]

    def stage(v: float | None, status: str, basis: str) -> dict[str, Any]:
        return {"kg_co2e_per_kwh": None if v is None else v / life, "status": status, "basis": basis}

    mats = st["upstream_materials"]
    stages = {
        "raw_material_acquisition_and_preprocessing": stage(
            mats if footprint["materials"] else None, "declared-input" if footprint["materials"] else "not-assessed",
            "; ".join(f"{m['name']}: {m['kg_co2e_per_unit']:.3g} kg/kWh cap ({m['source']})" for m in footprint["materials"])
            or "no material inputs declared"),
        "main_product_production": stage(prod_kg, "metered", f"metered plant energy; allocation: {footprint['allocation_rule']}"),
        "distribution": stage(b.distribution_kg_per_kwh, "declared-input" if b.distribution_kg_per_kwh is not None else "not-assessed",
                              "declared per kWh of capacity" if b.distribution_kg_per_kwh is not None else "not assessed"),
        "end_of_life_and_recycling": stage(b.end_of_life_kg_per_kwh, "declared-input" if b.end_of_life_kg_per_kwh is not None else "not-assessed",
                                           "declared per kWh of capacity" if b.end_of_life_kg_per_kwh is not None else "not assessed"),
    }
    total = sum(s["kg_co2e_per_kwh"] or 0.0 for s in stages.values())
    doc = {
        "schema": "carbonedge/battery-cfp/1", "declaration_type": "battery carbon footprint (EU 2023/1542 Art. 7)",
        "manufacturer": b.manufacturer, "battery_model": b.model, "manufacturing_plant": acc.site,
        "period": {"start": iso(acc.start), "end": iso(acc.end)},
        "functional_unit": "1 kWh of total energy delivered over the expected service life",
        "service_life_kwh_per_kwh_capacity": life, "capacity_produced_kwh": footprint["output"],
        "carbon_footprint_kg_co2e_per_kwh": total, "life_cycle_stages": stages,
        "per_kwh_capacity": {"main_product_production_kg": prod_kg, "energy_kwh_per_kwh_capacity": footprint["energy_kwh_per_unit"]},
        "electricity_rule": {"rule": b.electricity_rule, "factor_id": elec.id, "kg_co2e_per_kwh": elec.kg_per_kwh},
        "methodology": [
            "Per kWh of total energy delivered over the expected service life = per kWh of capacity / service-life energy per kWh of capacity [R1].",
            f"Main production from metered plant energy: {footprint['allocation_rule']}.",
            f"Electricity rule {b.electricity_rule!r} ({elec.cite()}); the rule is contested (draft EV act: national mix; industry: JRC hierarchy) "
            "and recorded here as a parameter [R4-R7].",
            "Stages marked not-assessed contribute nothing to the total; declare them before publication. Use phase excluded [R1].",
            *acc.method_notes,
        ],
        "factors_used": lib.used_factors(), "factor_libraries": lib.versions, "data_source": data_source, "generated": _now(),
    }
    validate(doc, "battery-cfp")
    return doc


def write_export(doc: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    """Write ``<name>.json`` and a flat ``<name>.csv`` (one row per good or stage)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jp, cp = out_dir / f"{name}.json", out_dir / f"{name}.csv"
    jp.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    with cp.open("w", newline="") as fh:
        w = csv.writer(fh)
        if doc["schema"].startswith("carbonedge/cbam"):
            cols = ["product", "cn_code", "quantity_t", "direct_emissions_t", "indirect_emissions_t", "precursor_emissions_t",
                    "specific_direct_t_per_t", "specific_indirect_t_per_t", "specific_embedded_t_per_t", "electricity_mwh"]
            w.writerow(["installation", "country", "period_start", "period_end", "phase", *cols])
            for g in doc["goods"]:
                w.writerow([doc["installation"]["name"], doc["installation"]["country"], doc["reporting_period"]["start"],
                            doc["reporting_period"]["end"], doc["phase"], *(g[c] for c in cols)])
        else:
            w.writerow(["manufacturer", "battery_model", "plant", "period_start", "period_end", "stage", "kg_co2e_per_kwh", "status", "basis"])
            for k, s in doc["life_cycle_stages"].items():
                w.writerow([doc["manufacturer"], doc["battery_model"], doc["manufacturing_plant"], doc["period"]["start"], doc["period"]["end"],
                            k, "" if s["kg_co2e_per_kwh"] is None else s["kg_co2e_per_kwh"], s["status"], s["basis"]])
            w.writerow([doc["manufacturer"], doc["battery_model"], doc["manufacturing_plant"], doc["period"]["start"], doc["period"]["end"],
                        "total", doc["carbon_footprint_kg_co2e_per_kwh"], "", "sum of assessed stages"])
    return [jp, cp]
