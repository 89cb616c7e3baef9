"""EU Battery Regulation (EU) 2023/1542 carbon-footprint declaration and battery-passport data.

The declaration (Art. 7 and Annex II [L7]) is per battery model and manufacturing plant, in
kg CO2e per kWh of total energy delivered over the expected service life, split into raw material
acquisition and pre-processing, main product production, distribution, and end of life and recycling.

How main-production electricity is modelled is not settled, so both rules are computed and shown
side by side:

- ``draft-delegated-act``: the draft delegated act on the EV-battery methodology, Ares(2024)3131389,
  section 2.4.1 [L8]: the national average consumption mix, except electricity from a direct
  connection (on-site generation or a direct line), which takes its own factor. PPAs and guarantees
  of origin are not recognised.
- ``jrc``: the JRC CFB-EV rules [L9]: direct connection first, then supplier-specific products (PPAs,
  supplier-specific contracts, green tariffs) meeting the contractual-instrument quality criteria,
  then the residual mix for the rest. Unbundled certificates are not counted (the criteria need a
  contract with the supplier; a site that holds them bundled declares them as a PPA).

The battery-passport data (Art. 77 [L7], from 18 Feb 2027) follows the Battery Pass data model
v1.2.0, aspect ``CarbonFootprintForBatteries`` [L10]; ``battery-pass-carbon-footprint.schema.json``
is written from that published model (not vendored: the model is licensed CC BY-NC 4.0).
"""

from __future__ import annotations

from typing import Any

from carbonedge.analytics.carbon.accounts import Accounts
from carbonedge.analytics.carbon.settings import Settings
from carbonedge.analytics.carbon.sources import cite
from carbonedge.clock import iso
from carbonedge.errors import ConfigError

VARIANTS = ("draft-delegated-act", "jrc")
QUALIFYING_INSTRUMENTS = ("ppa", "supplier-specific", "green-tariff")
STAGES = ("raw_material_acquisition_and_preprocessing", "main_product_production", "distribution", "end_of_life_and_recycling")
PASS_STAGE = {"raw_material_acquisition_and_preprocessing": "RawMaterialExtraction", "main_product_production": "MainProduction",
              "distribution": "Distribution", "end_of_life_and_recycling": "Recycling"}


class BatteryError(ConfigError):
    """Input that cannot give a correct battery carbon footprint."""

    code = "carbon.battery_invalid"


def declaration(acc: Accounts, footprint: dict[str, Any], settings: Settings, data_source: str) -> dict[str, Any]:
    """The carbon-footprint declaration with both electricity variants."""
    b = settings.battery
    if b is None:
        raise BatteryError("the battery declaration needs a [battery] section (model, manufacturer, service life) in the carbon settings")
    if footprint["output_unit"] != "kWh":
        raise BatteryError(f"the battery footprint needs output in kWh of cell capacity; {footprint['output_process']} counts "
                           f"{footprint['output_unit']!r}")
    lib, c = acc.factors, settings.carbon
    life = b.service_life_kwh_per_kwh_capacity
    q = float(footprint["output"])
    st = footprint["stages_kg_co2e_per_unit"]
    e_unit = float(footprint["energy_kwh_per_unit"])
    e_total = e_unit * q  # kWh allocated to the declared output
    grid = lib.get(c.grid_factor)
    if grid.basis not in ("national-average", ""):
        raise BatteryError(f"the draft delegated act uses the national average consumption mix; [carbon] grid_factor {grid.id} has "
                           f"basis {grid.basis!r}")
    residual = lib.get(c.residual_factor)
    lib.same_year([grid.id, residual.id], "battery electricity variants", allow_mixed=c.allow_mixed_factor_years)
    d_kwh = b.direct_connection_mwh * 1000.0
    if d_kwh > e_total * (1 + 1e-9):
        raise BatteryError(f"direct_connection_mwh ({b.direct_connection_mwh:g} MWh) exceeds the metered electricity allocated to the "
                           f"product ({e_total / 1000.0:.1f} MWh)")
    direct_f = None
    if d_kwh > 0:
        if not b.direct_connection_factor:
            raise BatteryError("direct_connection_mwh is set without direct_connection_factor (the factor of the directly connected supply)")
        direct_f = lib.get(b.direct_connection_factor)
    if footprint["periods"] != [[iso(acc.start), iso(acc.end)]] and acc.instruments:
        raise BatteryError("the JRC variant matches contractual instruments over the whole report period; a product with its own "
                           "periods and instruments at the same time is not supported: report the product's period on its own")
    # Qualifying supplier-specific electricity (JRC variant), matched by the accounts in the instruments' periods.
    qual = [i for i in acc.instruments if i["kind"] in QUALIFYING_INSTRUMENTS]
    skipped = [i["name"] for i in acc.instruments if i["kind"] not in QUALIFYING_INSTRUMENTS]
    plant_kwh = acc.plant_totals()["energy_kwh"]
    share = e_total / plant_kwh if plant_kwh else 0.0  # the product's share of plant electricity (installation-output rule: 1)
    supplier_kwh = sum(i["matched_kwh"] for i in qual) * share
    supplier_kg = sum(i["matched_kwh"] * lib.get(i["factor"]).kg_per_kwh for i in qual) * share
    supplier_kwh = min(supplier_kwh, e_total - d_kwh)
    d_kg = d_kwh * direct_f.kg_per_kwh if direct_f else 0.0
    s1_kg = st["manufacturing_scope1"] * q
    variants: dict[str, dict[str, Any]] = {}
    elec = {
        "draft-delegated-act": {
            "direct_connection_kwh": d_kwh, "direct_connection_kg": d_kg, "supplier_specific_kwh": 0.0, "supplier_specific_kg": 0.0,
            "mix_kwh": e_total - d_kwh, "mix_factor_id": grid.id, "mix_kg": (e_total - d_kwh) * grid.kg_per_kwh,
            "rule": "national average consumption mix; directly connected supply at its own factor; PPAs and guarantees of origin "
                    "not recognised (draft delegated act, Ares(2024)3131389, 2.4.1) " + cite("L8"),
        },
        "jrc": {
            "direct_connection_kwh": d_kwh, "direct_connection_kg": d_kg, "supplier_specific_kwh": supplier_kwh, "supplier_specific_kg": supplier_kg,
            "mix_kwh": e_total - d_kwh - supplier_kwh, "mix_factor_id": residual.id, "mix_kg": (e_total - d_kwh - supplier_kwh) * residual.kg_per_kwh,
            "rule": "direct connection, then supplier-specific electricity (PPA, supplier contract, green tariff) meeting the quality "
                    "criteria, then the residual mix (JRC CFB-EV rules) " + cite("L9", "E9")
                    + (f"; not counted (unbundled certificates): {', '.join(skipped)}" if skipped else ""),
        },
    }
    mats = st["upstream_materials"]
    for name, ev in elec.items():
        elec_kg = ev["direct_connection_kg"] + ev["supplier_specific_kg"] + ev["mix_kg"]
        main = (s1_kg + elec_kg) / q  # kg per kWh of capacity
        stages = {
            "raw_material_acquisition_and_preprocessing": _stage(mats if footprint["materials"] else None, life, "declared-input",
                                                                 "; ".join(f"{m['name']}: {m['kg_co2e_per_unit']:.4g} kg per kWh capacity ({m['source']})"
                                                                           for m in footprint["materials"])),
            "main_product_production": _stage(main, life, "metered", f"metered scope 1 and electricity; {footprint['allocation_rule']}"),
            "distribution": _stage(b.distribution_kg_per_kwh, life, "declared-input", _declared(b.distribution_source)),
            "end_of_life_and_recycling": _stage(b.end_of_life_kg_per_kwh, life, "declared-input", _declared(b.end_of_life_source)),
        }
        missing = [k for k, s in stages.items() if s["status"] == "not-assessed"]
        total = sum(s["kg_co2e_per_kwh"] or 0.0 for s in stages.values())
        variants[name] = {
            "electricity": {**ev, "total_kg": elec_kg, "kg_per_kwh_electricity": elec_kg / e_total if e_total else 0.0},
            "life_cycle_stages": stages,
            "carbon_footprint_kg_co2e_per_kwh": total if not missing else None,
            "assessed_stages_kg_co2e_per_kwh": total,
            "complete": not missing,
            "missing_stages": missing,
        }
    doc = {
        "schema": "carbonedge/battery-cf-declaration/1",
        "document": "Battery carbon footprint declaration (Regulation (EU) 2023/1542, Art. 7 and Annex II) " + cite("L7"),
        "manufacturer": b.manufacturer, "battery_model": b.model, "manufacturing_plant": acc.site,
        "period": {"start": iso(acc.start), "end": iso(acc.end)},
        "functional_unit": "1 kWh of total energy delivered by the battery over its expected service life",
        "service_life_kwh_per_kwh_capacity": life, "capacity_produced_kwh": q,
        "energy_kwh_per_kwh_capacity": e_unit,
        "scope1_kg_per_kwh_capacity": st["manufacturing_scope1"],
        "variants": variants,
        "passport_variant": b.passport_variant,
        "difference_kg_co2e_per_kwh": variants["jrc"]["assessed_stages_kg_co2e_per_kwh"] - variants["draft-delegated-act"]["assessed_stages_kg_co2e_per_kwh"],
        "reconciliation": _reconcile(acc, footprint, e_total, s1_kg),
        "study_url": b.study_url, "performance_class": b.performance_class,
        "performance_class_status": performance_class_status(b),
        "notes": [
            "Per kWh of lifetime energy = per kWh of capacity / service-life energy per kWh of capacity (full equivalent cycles per "
            "year x years of service, JRC CFB-EV) " + cite("L9") + ".",
            "Stages marked not-assessed are not in the total: a declaration needs all four; the use phase is excluded " + cite("L7") + ".",
            "The electricity rule of the adopted delegated act is not known here: the draft (national mix) and the JRC hierarchy "
            "are both shown " + cite("L8", "L9", "R5", "R6") + ".",
            "Performance classes (Art. 7(2)) and maximum thresholds (Art. 7(3)) need delegated acts that this project could not "
            "confirm as adopted; no class thresholds are published, so no class is computed " + cite("L7", "R2", "R3", "R8") + ".",
            *acc.method_notes,
        ],
        "sources": ["L7", "L8", "L9", "L10", "E9", "R1", "R2", "R3", "R5", "R6"],
        "factors_used": lib.used_factors(), "factor_libraries": lib.versions, "data_source": data_source,
    }
    return doc


def _declared(source: str | None) -> str:
    return f"declared per kWh of capacity: {source}" if source else "declared per kWh of capacity (no source given)"


#: Why the passport's performance class cannot be filled in without a class delegated act.
CLASS_NOT_DEFINED = ("refused: Art. 7(2) of Regulation (EU) 2023/1542 leaves the carbon-footprint performance classes (category A the "
                     "best) and their thresholds to a delegated act, which this project could not confirm as adopted and whose "
                     "thresholds are not published; no class can be computed or guessed " + "[L7, R2, R3, R8]")


def performance_class_status(b: Any) -> str:
    """``declared under <act>`` when the site gives a class with the act that defines it; else the refusal."""
    if b.performance_class and b.performance_class_act:
        return f"declared: class {b.performance_class} under {b.performance_class_act}"
    return CLASS_NOT_DEFINED


def _stage(v: float | None, life: float, status: str, basis: str) -> dict[str, Any]:
    if v is None:
        return {"kg_co2e_per_kwh": None, "kg_co2e_per_kwh_capacity": None, "status": "not-assessed", "basis": "not assessed: declare it"}
    return {"kg_co2e_per_kwh": v / life, "kg_co2e_per_kwh_capacity": v, "status": status, "basis": basis}


def _reconcile(acc: Accounts, footprint: dict[str, Any], e_total: float, s1_kg: float) -> dict[str, Any]:
    """The declared output's electricity and scope 1 against the plant's, over the product's periods."""
    import numpy as np

    mids = (acc.edges[:-1] + acc.edges[1:]) / 2
    from carbonedge.clock import parse_time

    mask = np.zeros(mids.size, dtype=bool)
    for a, b in footprint["periods"]:
        mask |= (mids >= parse_time(a)) & (mids < parse_time(b))
    plant_e = float(sum(p.energy_kwh[mask].sum() for p in acc.processes.values()))
    plant_s1 = float(sum(p.scope1_kg[mask].sum() for p in acc.processes.values()))
    de = 100.0 * (e_total - plant_e) / plant_e if plant_e else 0.0
    ds = 100.0 * (s1_kg - plant_s1) / plant_s1 if plant_s1 else 0.0
    if "installation-output" in footprint["allocation_rule"] and (abs(de) > 0.1 or abs(ds) > 0.1):
        raise BatteryError(f"the declaration does not reconcile with the plant total (electricity {de:+.3f} %, scope 1 {ds:+.3f} %; limit 0.1 %)")
    return {"electricity_plant_kwh": plant_e, "electricity_declared_kwh": e_total, "electricity_difference_pct": de,
            "scope1_plant_kg": plant_s1, "scope1_declared_kg": s1_kg, "scope1_difference_pct": ds,
            "meter_total_kwh": acc.plant_check["meter_total_kwh"], "limit_pct": 0.1}


def passport(decl: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The Battery Pass ``CarbonFootprintForBatteries`` data [L10] of the declaration's passport variant, and the fields refused.

    Refused as a whole unless the declaration is complete (all four stages, each declared stage
    with its source) and has a public study link: those values cannot be guessed. The performance
    class (Art. 7(2) [L7]) needs a delegated act that defines the classes; until a site gives a class
    together with that act, the passport is written without ``carbonFootprintPerformanceClass``
    and lists it as refused with the reason (the data model has no "not yet defined" code).
    """
    b = settings.battery
    assert b is not None
    v = decl["variants"][decl["passport_variant"]]
    problems = []
    if not v["complete"]:
        missing = ", ".join(s.replace("_", " ") for s in v["missing_stages"])
        problems.append(f"all four life-cycle stages (not assessed: {missing})")
    for stage, value, src in (("distribution", b.distribution_kg_per_kwh, b.distribution_source),
                              ("end of life", b.end_of_life_kg_per_kwh, b.end_of_life_source)):
        if value is not None and not src:
            problems.append(f"the source of the declared {stage} value (battery.{stage.replace(' ', '_')}_source)")
    if not b.study_url:
        problems.append("a link to the public carbon-footprint study (battery.study_url)")
    if b.performance_class and not b.performance_class_act:
        problems.append("the delegated act that defines the declared performance class (battery.performance_class_act)")
    if problems:
        raise BatteryError("the passport needs " + "; ".join(problems))
    doc: dict[str, Any] = {
        "batteryCarbonFootprint": v["carbon_footprint_kg_co2e_per_kwh"],
        "carbonFootprintPerLifecycleStage": [{"lifecycleStage": PASS_STAGE[k], "carbonFootprint": v["life_cycle_stages"][k]["kg_co2e_per_kwh"]}
                                             for k in STAGES],
        "carbonFootprintStudy": b.study_url,
    }
    refused: list[dict[str, str]] = []
    if b.performance_class:
        doc["carbonFootprintPerformanceClass"] = b.performance_class
    else:
        refused.append({"field": "carbonFootprintPerformanceClass", "reason": CLASS_NOT_DEFINED})
    if b.capacity_kwh:
        # kg CO2e per battery: per kWh of lifetime energy x lifetime energy of one battery.
        doc["absoluteCarbonFootprint"] = v["carbon_footprint_kg_co2e_per_kwh"] * decl["service_life_kwh_per_kwh_capacity"] * b.capacity_kwh
    return doc, refused
