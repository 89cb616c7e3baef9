"""Product carbon footprint report section (ISO 14067:2018 / GB/T 24067-2024) and the regime comparison.

The section states what ISO 14067 [L21] and its Chinese adoption GB/T 24067-2024 [L20] ask a
partial (cradle-to-gate) footprint to state: declared unit, system boundary, allocation, electricity
modelling, GHGs covered, data quality and the share of primary (metered) data.

The comparison puts one product's figures under each regime side by side, so a carbon manager sees
why they differ: CBAM counts direct embedded emissions (with precursors) for certificates; the
product footprint counts cradle to gate with electricity and purchased materials; China's ETS
counts the installation's direct emissions (electricity reported apart); the battery declaration
divides by the energy delivered over the service life.
"""

from __future__ import annotations

from typing import Any

from carbonedge.analytics.carbon.accounts import Accounts
from carbonedge.analytics.carbon.settings import Settings
from carbonedge.analytics.carbon.sources import cite


def pcf_section(acc: Accounts, fp: dict[str, Any], settings: Settings, evidence: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """ISO 14067 / GB/T 24067 statement of one product footprint."""
    st = fp["stages_kg_co2e_per_unit"]
    metered = st["manufacturing_scope1"] + st["manufacturing_scope2_location"]
    total = fp["total_kg_co2e_per_unit_location"]
    grid = acc.factors.get(settings.carbon.grid_factor)
    residual = acc.factors.get(settings.carbon.residual_factor)
    complete = None
    if evidence is not None:
        devs = [e for e in evidence if "quantities" in e and e["quantities"]]
        complete = 100.0 * sum(1 for e in devs if e["status"] == "complete") / len(devs) if devs else None
    process_chain = fp["allocation_rule"].startswith("process-chain")
    return {
        "standard": "ISO 14067:2018 / GB/T 24067-2024 " + cite("L21", "L20"),
        "product": fp["product"], "declared_unit": fp["declared_unit"], "period": fp["periods"],
        "type": "partial carbon footprint of a product (cradle to gate)",
        "system_boundary": {"included": ["purchased materials as declared inputs (supplier or database factors)",
                                         "fuels burnt on site (metered)", "process emissions (per tonne where configured)",
                                         "purchased electricity (metered)"],
                            "excluded": ["capital goods", "transport to customers", "use phase", "end of life",
                                         "upstream emissions of fuels and electricity (well-to-tank, grid losses)",
                                         "CH4 and N2O from combustion (not metered; CO2 only)"]},
        "allocation": {"rule": fp["allocation_rule"],
                       "iso_14067_step": ("subdivision of the installation into processes (allocation avoided where each process has "
                                          "its own counter)" if process_chain else
                                          "one output per installation and period: all inputs to that output (physical relationship)")},
        "electricity": {"location_based_factor": grid.cite(), "market_based_residual": residual.cite(),
                        "instruments": [i["name"] for i in acc.instruments],
                        "note": "results given both location-based and market-based; contractual instruments only within their "
                                "periods " + cite("E9")},
        "ghg_covered": "CO2 (fossil); characterisation factors not needed for a CO2-only result",
        "results_kg_co2e_per_unit": {"location_based": total, "market_based": fp["total_kg_co2e_per_unit_market"],
                                     "materials": st["upstream_materials"], "scope1": st["manufacturing_scope1"],
                                     "electricity_location": st["manufacturing_scope2_location"],
                                     "electricity_market": st["manufacturing_scope2_market"]},
        "data_quality": {"primary_data_share_pct": 100.0 * metered / total if total else None,
                         "temporal": f"metered in the period {fp['periods'][0][0]} to {fp['periods'][-1][1]}",
                         "geographical": f"site meters; grid factor region {grid.region}, data year {grid.year}",
                         "technological": "the plant's own meters and production counters",
                         "meters_complete_pct": complete,
                         "secondary_data": [f"{m['name']} ({m['source']})" for m in fp["materials"]] or ["none"]},
        "critical_review": "not performed by this tool; GB/T 24067 and ISO 14067 require it for a public comparative claim",
    }


def comparison(steel: dict[str, Any] | None = None, *, cbam: dict[str, Any] | None = None, ets: dict[str, Any] | None = None,
               battery: dict[str, Any] | None = None, fp: dict[str, Any] | None = None) -> dict[str, Any]:
    """One table: the same product under each regime, with boundary, electricity rule, unit and figure."""
    rows: list[dict[str, Any]] = []
    if fp is not None:
        per = 1000.0 if fp["output_unit"] == "t" else 1.0
        unit = "t CO2e/t" if per == 1000.0 else f"kg CO2e per {fp['declared_unit'][2:]}"
        rows.append({"regime": "Product footprint, ISO 14067 / GB/T 24067 (location-based)", "boundary": "cradle to gate: materials + "
                     "site fuels + process + electricity", "electricity": "grid average (location-based)",
                     "value": fp["total_kg_co2e_per_unit_location"] / per, "unit": unit, "sources": cite("L21", "L20")})
        rows.append({"regime": "Product footprint, ISO 14067 (market-based)", "boundary": "as above",
                     "electricity": "contractual instruments in their periods, residual mix for the rest",
                     "value": fp["total_kg_co2e_per_unit_market"] / per, "unit": unit, "sources": cite("L21", "E9")})
    if cbam is not None:
        for g in cbam["goods"]:
            rows.append({"regime": f"EU CBAM, certificates ({g['cn_code']})", "boundary": "direct emissions of the installation + "
                         "direct embedded emissions of precursors", "electricity": "not counted (iron and steel)",
                         "value": g["see_direct_t_per_t"], "unit": "t CO2/t", "sources": cite("L1", "L3")})
            rows.append({"regime": f"EU CBAM, indirect for information ({g['cn_code']})", "boundary": "electricity consumed",
                         "electricity": f"{cbam['electricity']['factor_id']} ({cbam['electricity']['basis']}, Art. 8)",
                         "value": g["see_indirect_t_per_t"], "unit": "t CO2/t", "sources": cite("L3")})
            if g["default_value"]:
                rows.append({"regime": f"EU CBAM default value {cbam['reporting_period']['year']} ({g['cn_code']})",
                             "boundary": "default direct value with the year's mark-up", "electricity": "—",
                             "value": g["default_value"]["with_markup_t_per_t"], "unit": "t CO2/t", "sources": cite("L5", "C1")})
    if ets is not None and ets["company"]["crude_steel_t"]:
        q = ets["company"]["crude_steel_t"]
        rows.append({"regime": "China ETS, direct (allowance basis)", "boundary": "whole enterprise, direct emissions, per tonne of "
                     "output", "electricity": "not counted", "value": ets["company"]["direct_t"] / q, "unit": "t CO2/t",
                     "sources": cite("L12", "C11")})
        rows.append({"regime": "China ETS, with purchased electricity", "boundary": "whole enterprise, direct + purchased electricity",
                     "electricity": f"{ets['grid_factor']['factor_id']} (data year {ets['grid_factor']['data_year']})",
                     "value": ets["company"]["total_including_electricity_t"] / q, "unit": "t CO2/t",
                     "sources": cite("L12", ets["grid_factor"]["source"].strip("[]"))})
    if battery is not None:
        for name, v in battery["variants"].items():
            rows.append({"regime": f"EU Battery Regulation, {name} electricity", "boundary": "life cycle without use phase, per kWh of "
                         "energy over the service life" + ("" if v["complete"] else " (assessed stages only)"),
                         "electricity": v["electricity"]["rule"].split(" (")[0], "value": v["assessed_stages_kg_co2e_per_kwh"],
                         "unit": "kg CO2e/kWh (lifetime energy)", "sources": cite("L7", "L8" if name != "jrc" else "L9")})
    why = [
        "CBAM certificates for iron and steel count direct emissions only, and add precursors' direct emissions; the footprint adds "
        "electricity and all purchased materials.",
        "China's ETS counts the whole enterprise per year (every process, every product), the CBAM and footprint figures only what is "
        "attributed to one good in its period.",
        "Electricity factors differ by rule: grid average (footprint location-based, China ETS, CBAM grid), residual mix after "
        "contracts (market-based, JRC battery rule), or an actual factor only with a PPA or direct link (CBAM Art. 8).",
        "The battery declaration divides by the energy the battery delivers over its life, not by the capacity produced.",
    ]
    return {"rows": rows, "why_they_differ": why}
