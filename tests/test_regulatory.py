"""Regulatory documents (CBAM communication, China ETS steel report, battery declaration and passport, ISO 14067
statement) against hand calculations on the synthetic plant, their refusals, and the source list."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from carbon_synth import make_plant
from openpyxl import load_workbook

from carbonedge.analytics.carbon import compute_accounts, default_settings, from_csv_dir, load_settings
from carbonedge.analytics.carbon.battery import BatteryError, declaration, passport
from carbonedge.analytics.carbon.cbam import SHEETS, CbamError, check_workbook, communication, write_workbook
from carbonedge.analytics.carbon.china_ets import ChinaEtsError, report
from carbonedge.analytics.carbon.footprint import footprints, product_footprint
from carbonedge.analytics.carbon.settings import Instrument, Material, Product
from carbonedge.analytics.carbon.sources import markdown, sources, unresolved
from carbonedge.analytics.report.exports import ExportError, regulatory_documents, validate
from carbonedge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
GAS_KG_PER_NM3 = 0.036 * 56.1  # site NCV GJ/Nm3 x IPCC natural gas t CO2/TJ (= kg/GJ)
GRID_2023 = 0.5306  # MEE/NBS national average, data year 2023
RESIDUAL_2023 = 0.6096  # excluding market-traded non-fossil, 2023
FOSSIL_2023 = 0.8273


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("synth")
    return d, make_plant(d, days=2)


def _hand(truth: dict) -> dict[str, float]:
    p = truth["processes"]
    gas = sum(x["gas_nm3"] for x in p.values())
    kwh = sum(x["energy_kwh"] for x in p.values())
    direct_t = (gas * GAS_KG_PER_NM3 + p["eaf"]["production"] * 80.0) / 1000.0  # IPCC Tier 1 EAF 0.08 t/t
    return {"gas": gas, "kwh": kwh, "direct_t": direct_t, "q": p["caster"]["production"]}


def _write(path: Path, text: str) -> Path:
    path.write_text("\n".join(line[8:] if line.startswith("        ") else line for line in text.splitlines()))
    return path


# ------------------------------------------------------------------------------------------------ CBAM


def test_cbam_communication_matches_hand_calculation(synth: tuple[Path, dict], tmp_path: Path) -> None:
    d, truth = synth
    h = _hand(truth)
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    s.products = [Product(name="ingot", unit="t", cn_code="7206 10 00", cbam_default_factor="cbam.default.cn.7206-10-00",
                          qualifying_parameters={"scrap_share_pct": 95.0},
                          materials=[Material(name="pig iron", amount_per_unit=200.0, kg_co2e_per_amount=1.9, source="supplier, verified 2026",
                                              cbam_precursor=True, cbam_direct_share=0.9)])]
    acc = compute_accounts(data, s)
    fps = footprints(acc, s, data.plant)
    doc = communication(acc, fps, s, data.source)
    validate(doc, "cbam-communication")
    g = doc["goods"][0]
    q = h["q"]
    assert g["quantity_t"] == pytest.approx(q, rel=1e-9)
    assert g["attributed_direct_t"] == pytest.approx(h["direct_t"], rel=1e-3)
    pre = 200.0 * 1.9 * 0.9 * q / 1000.0  # kg/t x kg CO2/kg x direct share x t = kg -> t CO2
    assert g["precursor_direct_t"] == pytest.approx(pre, rel=1e-9)
    assert g["see_direct_t_per_t"] == pytest.approx((h["direct_t"] + pre) / q, rel=1e-3)
    assert g["see_indirect_t_per_t"] == pytest.approx(h["kwh"] / 1000.0 * GRID_2023 / q, rel=1e-3)
    # 2026: default 1.74 t/t + 10 % mark-up; cost at the Q1 2026 price of 75.36 EUR/t.
    assert g["default_value"]["with_markup_t_per_t"] == pytest.approx(1.74 * 1.10)
    assert g["certificates_actual_t"] == pytest.approx(g["see_direct_t_per_t"] * q)
    assert g["cost_actual_eur"] == pytest.approx(g["certificates_actual_t"] * 75.36)
    assert g["saving_vs_default_eur"] == pytest.approx((1.914 * q - g["certificates_actual_t"]) * 75.36)
    assert doc["electricity"]["basis"] == "grid" and doc["electricity"]["t_co2_per_mwh"] == GRID_2023
    assert doc["reconciliation"]["electricity_meters_mwh"] == pytest.approx(h["kwh"] / 1000.0, rel=1e-3)
    assert abs(doc["reconciliation"]["electricity_difference_pct"]) < 0.1
    # A given certificate price and a carbon price paid abroad.
    s.cbam.certificate_price_eur_per_t, s.cbam.carbon_price_paid_eur_per_t = 80.0, 10.0
    g2 = communication(acc, fps, s, data.source)["goods"][0]
    assert g2["cost_actual_eur"] == pytest.approx(g["certificates_actual_t"] * 70.0)
    # The workbook: the template's sheets, read back equal to the JSON.
    xp = write_workbook(doc, tmp_path / "c.xlsx", acc)
    assert check_workbook(xp, doc) == []
    wb = load_workbook(xp)
    assert tuple(wb.sheetnames) == SHEETS
    row = [c.value for c in wb["Summary_Products"][2]]
    assert row[1] == "7206 10 00" and row[4] == pytest.approx(g["see_direct_t_per_t"]) and row[-1] == "scrap_share_pct=95.0"
    assert [c.value for c in wb["E_PurchPrec"][2]][1] == "pig iron"
    wb["Summary_Products"]["E2"] = 0.5
    wb.save(xp)
    assert any("SEE direct" in p for p in check_workbook(xp, doc))


def test_cbam_article_8_electricity_and_refusals(synth: tuple[Path, dict], tmp_path: Path) -> None:
    d, truth = synth
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    acc = compute_accounts(data, s)
    fps = footprints(acc, s, data.plant)
    s.cbam.electricity_basis = "ppa"
    with pytest.raises(CbamError, match="needs its evidence"):
        communication(acc, fps, s, data.source)
    s.cbam.electricity_basis, s.cbam.electricity_factor = "grid", "contract.zero-emission"
    with pytest.raises(CbamError, match="guarantees of origin do not qualify"):
        communication(acc, fps, s, data.source)
    s.cbam.electricity_factor = "eu27.grid.eea.2023"
    with pytest.raises(CbamError, match="region EU-27"):
        communication(acc, fps, s, data.source)
    # A PPA with its evidence: the generator's factor is used, and named.
    s.cbam.electricity_basis, s.cbam.electricity_factor = "ppa", "contract.zero-emission"
    s.cbam.electricity_evidence = "PPA 2026-017 with Wind Farm X, 1 Jan-31 Dec 2026, 20 GWh, direct line not required"
    doc = communication(acc, fps, s, data.source)
    assert doc["goods"][0]["see_indirect_t_per_t"] == 0.0 and "PPA 2026-017" in doc["electricity"]["why"]
    validate(doc, "cbam-communication")
    bad = json.loads(json.dumps(doc))
    bad["electricity"]["evidence"] = None
    with pytest.raises(ExportError, match="electricity/evidence"):
        validate(bad, "cbam-communication")
    # Not a steel good; a period across two years; the transitional period.
    s2 = default_settings(data.plant)
    s2.products = [Product(name="x", cn_code="2523 29 00")]
    with pytest.raises(CbamError, match="not an iron or steel good"):
        communication(acc, [product_footprint(acc, s2.products[0], data.plant)], s2, data.source)
    acc.start, acc.end = acc.start - 10 * 86400, acc.end
    with pytest.raises(CbamError, match="spans 2025 and 2026"):
        communication(acc, fps, default_settings(data.plant), data.source)


# ------------------------------------------------------------------------------------------------ China ETS


def test_china_ets_report_matches_hand_calculation(synth: tuple[Path, dict]) -> None:
    d, truth = synth
    h = _hand(truth)
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    acc = compute_accounts(data, s)
    doc = report(data, acc, s, data.source)
    validate(doc, "china-ets-steel")
    co = doc["company"]
    assert doc["reporting_year"] == 2026
    assert doc["grid_factor"]["factor_id"] == "cn.grid.national-average.2023" and doc["grid_factor"]["data_year"] == 2023
    assert co["direct_t"] == pytest.approx(h["direct_t"], rel=1e-3)
    assert co["combustion_t"] == pytest.approx(h["gas"] * GAS_KG_PER_NM3 / 1000.0, rel=1e-3)
    assert co["indirect_electricity_t"] == pytest.approx(h["kwh"] / 1000.0 * GRID_2023, rel=1e-3)
    others = {o["basis"]: o["indirect_t"] for o in doc["grid_factor"]["same_year_other_bases"]}
    assert others == {"excl-market-nonfossil": pytest.approx(h["kwh"] / 1000 * RESIDUAL_2023, rel=1e-3),
                      "fossil": pytest.approx(h["kwh"] / 1000 * FOSSIL_2023, rel=1e-3)}
    eaf = next(p for p in doc["processes"] if p["process"] == "eaf")
    assert eaf["process_emissions_t"] == pytest.approx(truth["processes"]["eaf"]["production"] * 0.08, rel=1e-6)
    assert [m["month"] for m in doc["monthly"]] == ["2026-01"]
    ev = {e["device"]: e for e in doc["monthly"][0]["evidence"]}
    assert ev["eaf-meter"]["status"] == "complete" and ev["eaf-meter"]["readings"] == 2 * 1440 + 1
    assert co["above_inclusion_threshold"] is None  # two days are not a year


def test_china_ets_names_gaps_and_refuses_wrong_factors(synth: tuple[Path, dict], tmp_path: Path) -> None:
    src, truth = synth
    d = tmp_path / "gappy"
    shutil.copytree(src, d)
    lines = (d / "caster-meter.csv").read_text().splitlines()
    # Drop 3 h of caster-meter readings (rows 600..779): the month's figure interpolates across the gap.
    (d / "caster-meter.csv").write_text("\n".join(lines[:601] + lines[781:]) + "\n")
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    acc = compute_accounts(data, s)
    doc = report(data, acc, s, data.source)
    ev = {e["device"]: e for e in doc["monthly"][0]["evidence"]}["caster-meter"]
    assert len(ev["gaps"]) == 1 and ev["gaps"][0]["hours"] == pytest.approx(181 / 60) and ev["status"].startswith("gaps")
    assert ev["readings"] == 2 * 1440 + 1 - 180
    # The counter carries the energy across the gap: the annual figure still equals the truth.
    assert doc["company"]["purchased_electricity_mwh"] == pytest.approx(_hand(truth)["kwh"] / 1000.0, rel=1e-3)
    site = tmp_path / "f.json"
    site.write_text(json.dumps({"library": "site", "version": "1", "factors": [
        {"id": "cn.grid.national-average.2027", "kind": "electricity", "value": 0.5, "unit": "kg CO2/kWh", "gas": "CO2", "region": "CN",
         "year": 2027, "publisher": "test", "purpose": "test", "source": "L16", "quality": "primary", "basis": "national-average"}]}))
    s.carbon.extra_factor_files = [str(site)]
    s.china_ets.grid_factor = "cn.grid.national-average.2027"
    acc = compute_accounts(data, s)
    with pytest.raises(ChinaEtsError, match="data year 2027, after the reporting year 2026"):
        report(data, acc, s, data.source)
    s.china_ets.grid_factor = "eu27.grid.eea.2023"
    with pytest.raises(ChinaEtsError, match="not a China grid factor"):
        report(data, acc, s, data.source)
    # Mixing factor years is refused unless stated.
    s2 = default_settings(data.plant)
    s2.carbon.residual_factor = "cn.grid.excl-market-nonfossil.2022"
    with pytest.raises(ConfigError, match="different data years"):
        compute_accounts(data, s2)
    s2.carbon.allow_mixed_factor_years = True
    assert any("mixed on purpose" in n for n in compute_accounts(data, s2).method_notes)


# ------------------------------------------------------------------------------------------------ battery


@pytest.fixture(scope="module")
def cell_plant(synth: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The synthetic plant as a cell plant: the caster's counter counts kWh of cell capacity."""
    src, truth = synth
    d = tmp_path_factory.mktemp("cells")
    shutil.copytree(src, d, dirs_exist_ok=True)
    plant = json.loads((d / "plant.json").read_text())
    plant["plant"], plant["sec_unit"] = "battery", "kWh/kWh"
    plant["processes"]["caster"]["production_unit"] = "kWh"
    (d / "plant.json").write_text(json.dumps(plant))
    f = d / "caster-line.csv"
    f.write_text(f.read_text().replace("production_mass", "production_capacity", 1))
    return d, truth


BATTERY_TOML = """
        [battery]
        model = "LFP-280"
        manufacturer = "ACME Cells"
        service_life_kwh_per_kwh_capacity = 2000
        distribution_kg_per_kwh = 1.5
        distribution_source = "supplier logistics footprint 2026"
        end_of_life_kg_per_kwh = 2.0
        end_of_life_source = "recycler statement 2026"
        capacity_kwh = 0.896
        study_url = "https://acme.example/cfp-study-2026.pdf"
        performance_class = "B"
        performance_class_act = "class delegated act (test fixture)"
        direct_connection_factor = "contract.zero-emission"
        direct_connection_mwh = 10
"""
INSTRUMENTS = """
        [[carbon.instruments]]
        name = "PPA solar park"
        kind = "ppa"
        start = "2026-01-05T00:00:00Z"
        end = "2026-01-08T00:00:00Z"
        mwh = 100
        [[carbon.instruments]]
        name = "GEC lot 7"
        kind = "certificate"
        start = "2026-01-05T00:00:00Z"
        end = "2026-01-08T00:00:00Z"
        mwh = 50
"""
PRODUCTS = """
        [[products]]
        name = "LFP-280 cell"
        unit = "kWh"
        [[products.materials]]
        name = "cathode active material"
        amount_per_unit = 2.0
        kg_co2e_per_amount = 10.0
        source = "supplier PCF 2026"
"""


def test_battery_declaration_both_variants_by_hand(cell_plant: tuple[Path, dict], tmp_path: Path) -> None:
    d, truth = cell_plant
    h = _hand(truth)
    data = from_csv_dir(d)
    s = load_settings(_write(tmp_path / "b.toml", BATTERY_TOML + INSTRUMENTS + PRODUCTS))
    acc = compute_accounts(data, s)
    fp = product_footprint(acc, s.products[0], data.plant)
    doc = declaration(acc, fp, s, data.source)
    validate(doc, "battery-cf-declaration")
    q, life, e = h["q"], 2000.0, h["kwh"]
    s1 = h["gas"] * GAS_KG_PER_NM3  # the settings file configures no process emissions
    draft = (s1 + (e - 10_000.0) * GRID_2023) / q  # direct line 10 MWh at zero, the rest at the national mix
    jrc = (s1 + (e - 10_000.0 - 100_000.0) * RESIDUAL_2023) / q  # + the PPA's 100 MWh at zero; the certificate does not count
    v = doc["variants"]
    assert v["draft-delegated-act"]["life_cycle_stages"]["main_product_production"]["kg_co2e_per_kwh"] == pytest.approx(draft / life, rel=1e-3)
    assert v["jrc"]["life_cycle_stages"]["main_product_production"]["kg_co2e_per_kwh"] == pytest.approx(jrc / life, rel=1e-3)
    assert v["jrc"]["electricity"]["supplier_specific_kwh"] == pytest.approx(100_000.0)
    assert "GEC lot 7" in v["jrc"]["electricity"]["rule"]
    for name, main in (("draft-delegated-act", draft), ("jrc", jrc)):
        assert v[name]["carbon_footprint_kg_co2e_per_kwh"] == pytest.approx((20.0 + main + 1.5 + 2.0) / life, rel=1e-3)
    assert abs(doc["reconciliation"]["electricity_difference_pct"]) < 0.1
    assert doc["reconciliation"]["meter_total_kwh"] == pytest.approx(e, rel=1e-3)
    bp, refused = passport(doc, s)
    assert refused == [] and bp["carbonFootprintPerformanceClass"] == "B"
    assert doc["performance_class_status"] == "declared: class B under class delegated act (test fixture)"
    validate(bp, "battery-pass-carbon-footprint")
    assert [x["lifecycleStage"] for x in bp["carbonFootprintPerLifecycleStage"]] == ["RawMaterialExtraction", "MainProduction", "Distribution",
                                                                                     "Recycling"]
    assert bp["batteryCarbonFootprint"] == pytest.approx(sum(x["carbonFootprint"] for x in bp["carbonFootprintPerLifecycleStage"]))
    assert bp["batteryCarbonFootprint"] == v["draft-delegated-act"]["carbon_footprint_kg_co2e_per_kwh"]
    assert bp["absoluteCarbonFootprint"] == pytest.approx(bp["batteryCarbonFootprint"] * 2000 * 0.896)
    bad = dict(bp, carbonFootprintPerLifecycleStage=[{"lifecycleStage": "UsePhase", "carbonFootprint": 1.0}])
    with pytest.raises(ExportError, match="UsePhase"):
        validate(bad, "battery-pass-carbon-footprint")


def test_battery_refusals(cell_plant: tuple[Path, dict], tmp_path: Path) -> None:
    d, _ = cell_plant
    data = from_csv_dir(d)
    s = load_settings(_write(tmp_path / "b.toml", (BATTERY_TOML + INSTRUMENTS + PRODUCTS).replace("end_of_life_kg_per_kwh = 2.0", "").replace(
        'performance_class = "B"', "")))
    acc = compute_accounts(data, s)
    fp = product_footprint(acc, s.products[0], data.plant)
    doc = declaration(acc, fp, s, data.source)
    assert doc["variants"]["jrc"]["carbon_footprint_kg_co2e_per_kwh"] is None
    assert doc["variants"]["jrc"]["missing_stages"] == ["end_of_life_and_recycling"]
    with pytest.raises(BatteryError, match=r"not assessed: end of life and recycling\)$"):
        passport(doc, s)
    s.battery.direct_connection_mwh = 1e6
    with pytest.raises(BatteryError, match="exceeds the metered electricity"):
        declaration(acc, fp, s, data.source)


# ------------------------------------------------------------------------------------------------ report pack and regime table


def test_regulatory_documents_and_regime_comparison(synth: tuple[Path, dict], tmp_path: Path) -> None:
    d, truth = synth
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    acc = compute_accounts(data, s)
    fps = footprints(acc, s, data.plant)
    docs, paths = regulatory_documents(data, acc, fps, s, tmp_path)
    assert sorted(p.name for p in paths) == ["cbam-communication.json", "cbam-communication.xlsx", "china-ets-steel.json",
                                             "china-ets-steel.xlsx", "pcf-iso14067.json"]
    assert docs["refused"] == []
    comp = {r["regime"]: r["value"] for r in docs["pcf_iso14067"]["comparison"]["rows"]}
    h = _hand(truth)
    q = h["q"]
    assert comp["EU CBAM, certificates (7207 12 10)"] == pytest.approx(h["direct_t"] / q, rel=1e-3)
    assert comp["China ETS, direct (allowance basis)"] == pytest.approx(h["direct_t"] / q, rel=1e-3)
    assert comp["China ETS, with purchased electricity"] == pytest.approx((h["direct_t"] + h["kwh"] / 1000 * GRID_2023) / q, rel=1e-3)
    assert comp["Product footprint, ISO 14067 / GB/T 24067 (location-based)"] == pytest.approx(
        (h["direct_t"] + h["kwh"] / 1000 * GRID_2023) / q, rel=1e-3)
    sec = docs["pcf_iso14067"]["products"][0]
    assert sec["data_quality"]["primary_data_share_pct"] == pytest.approx(100.0) and sec["data_quality"]["meters_complete_pct"] == 100.0
    wb = load_workbook(tmp_path / "china-ets-steel.xlsx")
    assert wb.sheetnames[0] == "企业 Company" and "来源 Sources" in wb.sheetnames
    # A document that cannot be right is refused with its reason; the others are still written.
    s.cbam.electricity_basis = "direct-link"
    docs, paths = regulatory_documents(data, acc, fps, s, tmp_path / "b")
    assert [r["document"] for r in docs["refused"]] == ["CBAM communication"] and "evidence" in docs["refused"][0]["reason"]
    assert "china-ets-steel.json" in [p.name for p in paths]


@pytest.mark.parametrize("scenario", ["steel-default", "battery-default"])
def test_demo_plants_produce_every_document_reconciled(scenario: str, tmp_path: Path) -> None:
    """On the demo plants (simulator scenarios), every document is written, validated and reconciles with the plant total."""
    d = tmp_path / "data"
    p = subprocess.run([sys.executable, "-m", "carbonedge.app.cli", "generate", scenario, "--out", str(d)], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    truth = json.loads((d / "truth.json").read_text())
    plant_kwh = truth["plant_total"]["energy_kwh"]
    data = from_csv_dir(d)
    if scenario.startswith("battery"):
        s = load_settings(_write(tmp_path / "b.toml", BATTERY_TOML + PRODUCTS))
    else:
        s = default_settings(data.plant)
    acc = compute_accounts(data, s)
    fps = footprints(acc, s, data.plant)
    docs, paths = regulatory_documents(data, acc, fps, s, tmp_path / "out")
    assert docs["refused"] == []
    names = sorted(x.name for x in paths)
    if scenario.startswith("battery"):
        assert names == ["battery-cf-declaration.csv", "battery-cf-declaration.json", "battery-pass-carbon-footprint.json", "pcf-iso14067.json"]
        kwh = docs["battery_declaration"]["reconciliation"]["electricity_declared_kwh"]
        rows = list(csv.DictReader((tmp_path / "out" / "battery-cf-declaration.csv").read_text().splitlines()))
        assert {r["electricity_variant"] for r in rows} == {"draft-delegated-act", "jrc"}
    else:
        assert names == ["cbam-communication.json", "cbam-communication.xlsx", "china-ets-steel.json", "china-ets-steel.xlsx", "pcf-iso14067.json"]
        kwh = docs["cbam_communication"]["installation_totals"]["electricity_mwh"] * 1000.0
        assert docs["china_ets_steel"]["company"]["purchased_electricity_mwh"] * 1000.0 == pytest.approx(plant_kwh, rel=1e-3)
        assert check_workbook(tmp_path / "out" / "cbam-communication.xlsx", docs["cbam_communication"]) == []
        # Direct emissions from the simulator's true gas volumes and EAF output (IPCC natural gas, Tier 1 EAF 0.08 t/t).
        gas = sum(p["media"].get("gas", {}).get("total", 0.0) for p in truth["processes"].values())
        direct_t = gas * GAS_KG_PER_NM3 / 1000.0 + truth["processes"]["eaf"]["production"] * 0.08
        assert docs["china_ets_steel"]["company"]["direct_t"] == pytest.approx(direct_t, rel=1e-3)
        assert docs["cbam_communication"]["installation_totals"]["direct_t"] == pytest.approx(direct_t, rel=1e-3)
    assert abs(kwh - plant_kwh) / plant_kwh < 1e-3  # 0.1 % of the simulator's true plant energy


# ------------------------------------------------------------------------------------------------ sources


def test_every_cited_source_resolves_to_the_repository_list() -> None:
    files = [*ROOT.glob("docs/*.md"), ROOT / "README.md", *ROOT.glob("analytics/**/*.py"), *ROOT.glob("analytics/**/*.json"),
             *ROOT.glob("simulators/**/*.py"), *ROOT.glob("carbonedge/*.py"), *ROOT.glob("edge/**/*.py"), *ROOT.glob("collector/**/*.py")]
    bad = {str(f.relative_to(ROOT)): u for f in files if (u := unresolved(f.read_text(errors="replace")))}
    assert bad == {}
    assert not any("domain-reference §" in f.read_text() for f in ROOT.glob("analytics/**/*.py"))
    assert (ROOT / "docs" / "sources.md").read_text() == markdown(), "regenerate: python -m carbonedge.analytics.carbon.sources > docs/sources.md"
    for k in ("L1", "L2", "L3", "L4", "L5", "L7", "L10", "L12", "L16", "L20", "L21"):
        assert k in sources()
    assert re.search(r"2025/2547", sources()["L3"]["title"]) and "Art. 8" in sources()["L3"]["title"]


def test_passport_refuses_the_performance_class_explicitly(cell_plant: tuple[Path, dict], tmp_path: Path) -> None:
    """Without a class delegated act the passport is written without the class, which is listed as refused with the reason;
    the schema accepts that absence only when it is declared, and a class without its act or a declared stage without
    its source refuses the passport."""
    d, _ = cell_plant
    data = from_csv_dir(d)
    s = load_settings(_write(tmp_path / "b.toml", (BATTERY_TOML + PRODUCTS).replace('performance_class = "B"', "").replace(
        'performance_class_act = "class delegated act (test fixture)"', "")))
    acc = compute_accounts(data, s)
    doc = declaration(acc, product_footprint(acc, s.products[0], data.plant), s, data.source)
    assert doc["performance_class_status"].startswith("refused: Art. 7(2)")
    bp, refused = passport(doc, s)
    assert "carbonFootprintPerformanceClass" not in bp
    assert [r["field"] for r in refused] == ["carbonFootprintPerformanceClass"]
    assert "not published" in refused[0]["reason"] and not unresolved(refused[0]["reason"])
    validate(bp, "battery-pass-carbon-footprint", refused=("carbonFootprintPerformanceClass",))
    with pytest.raises(ExportError, match="carbonFootprintPerformanceClass"):
        validate(bp, "battery-pass-carbon-footprint")
    with pytest.raises(ExportError, match="carbonFootprintStudy"):  # only the declared field may be missing
        validate({k: v for k, v in bp.items() if k != "carbonFootprintStudy"}, "battery-pass-carbon-footprint",
                 refused=("carbonFootprintPerformanceClass",))
    s.battery.performance_class = "A"
    with pytest.raises(BatteryError, match="performance_class_act"):
        passport(doc, s)
    s.battery.performance_class, s.battery.distribution_source = None, None
    with pytest.raises(BatteryError, match="distribution_source"):
        passport(doc, s)


def test_battery_demo_settings_write_the_passport(cell_plant: tuple[Path, dict], tmp_path: Path) -> None:
    """The battery demo's declared inputs (app/demo-battery-carbon.toml) complete the four stages: the passport is written,
    matches the schema with only the performance class refused, and its stages add up to the declaration's total, which
    reconciles with the plant's metered total to 0.1 %."""
    from carbonedge.app.demo import demo_settings

    d, _ = cell_plant
    data = from_csv_dir(d)
    s = demo_settings(data.plant)
    assert s.battery is not None and s.battery.study_url and s.battery.performance_class is None
    acc = compute_accounts(data, s)
    fps = footprints(acc, s, data.plant)
    docs, paths = regulatory_documents(data, acc, fps, s, tmp_path)
    assert docs["refused"] == []
    names = {p.name for p in paths}
    assert "battery-pass-carbon-footprint.json" in names and "battery-cf-declaration.json" in names
    bp = json.loads((tmp_path / "battery-pass-carbon-footprint.json").read_text())
    assert bp == docs["battery_passport"]
    assert [r["field"] for r in docs["battery_passport_refused_fields"]] == ["carbonFootprintPerformanceClass"]
    validate(bp, "battery-pass-carbon-footprint", refused=("carbonFootprintPerformanceClass",))
    decl = docs["battery_declaration"]
    v = decl["variants"]["draft-delegated-act"]
    assert v["complete"] and bp["batteryCarbonFootprint"] == pytest.approx(v["carbon_footprint_kg_co2e_per_kwh"], rel=1e-12)
    assert bp["batteryCarbonFootprint"] == pytest.approx(sum(x["carbonFootprint"] for x in bp["carbonFootprintPerLifecycleStage"]), rel=1e-12)
    life = decl["service_life_kwh_per_kwh_capacity"]
    stages = v["life_cycle_stages"]
    assert stages["raw_material_acquisition_and_preprocessing"]["kg_co2e_per_kwh"] == pytest.approx(41.0 / life)
    assert stages["distribution"]["kg_co2e_per_kwh"] == pytest.approx(0.70 / life)
    assert stages["end_of_life_and_recycling"]["kg_co2e_per_kwh"] == 0.0
    for k in ("raw_material_acquisition_and_preprocessing", "distribution", "end_of_life_and_recycling"):
        assert re.search(r"\[(B24|GL1|B25)\]", stages[k]["basis"]), k  # every declared stage names its source key
    rec = decl["reconciliation"]
    assert abs(rec["electricity_difference_pct"]) <= 0.1 and abs(rec["scope1_difference_pct"]) <= 0.1
    assert bp["absoluteCarbonFootprint"] == pytest.approx(bp["batteryCarbonFootprint"] * life * 0.25)
