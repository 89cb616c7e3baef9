"""Regulatory documents of a plant, validated before they are written.

From the same carbon accounts and factor library:

- steel plants: the EU CBAM communication to importers (``cbam-communication.xlsx`` in the sheet
  structure of the Commission's template, and ``.json``), the China national ETS steel report
  (``china-ets-steel.xlsx`` and ``.json``) when the installation is in China;
- cell plants: the EU Battery Regulation carbon-footprint declaration with both electricity
  variants (``battery-cf-declaration.json`` and ``.csv``) and, when complete, the battery-passport
  data (``battery-pass-carbon-footprint.json``, Battery Pass data model v1.2.0);
- both: the ISO 14067 / GB/T 24067 statement of each product with the regime comparison
  (``pcf-iso14067.json``).

Each JSON document is checked against its JSON Schema in ``analytics/report/schemas/`` and each
workbook is read back and checked against the JSON before the report lists it. A document whose
input cannot give a correct figure is refused with the reason, which the report shows; the other
documents are still written.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from carbonedge.analytics.carbon import battery, cbam, china_ets, pcf
from carbonedge.analytics.carbon.accounts import Accounts
from carbonedge.analytics.carbon.data import PlantData
from carbonedge.analytics.carbon.settings import Settings
from carbonedge.analytics.carbon.sources import entries, unresolved
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


def validate(doc: dict[str, Any], schema: str, refused: tuple[str, ...] = ()) -> None:
    """Raise :class:`ExportError` listing every violation of ``schema`` (a file name in ``schemas/`` without ``.schema.json``).

    ``refused`` names required top-level fields that the document leaves out on purpose, each with a
    stated reason beside it (e.g. a passport field whose rule is not yet published); only their
    absence is accepted, every other violation still fails.
    """
    errors = sorted((e for e in _validator(schema).iter_errors(doc) if not _refused_only(e, refused)), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors[:20]]
        raise ExportError(f"the {schema} export does not match its schema ({len(errors)} problem(s)):\n" + "\n".join(lines))
    bad = unresolved(json.dumps(doc, ensure_ascii=False)) + [k for k in doc.get("sources", []) if unresolved(f"[{k}]")]
    if bad:
        raise ExportError(f"the {schema} export cites source keys that are not in the source list: {', '.join(sorted(set(bad)))}")


def _refused_only(e: Any, refused: tuple[str, ...]) -> bool:
    """A "required" error at the top level for a field that is refused on purpose."""
    if e.validator != "required" or list(e.absolute_path) or not refused:
        return False
    missing = [f for f in e.validator_value if f not in e.instance]
    return bool(missing) and all(f in refused for f in missing)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    return path


def regulatory_documents(data: PlantData, acc: Accounts, fps: list[dict[str, Any]], settings: Settings, out_dir: Path,
                         say: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Build, validate and write every document of the plant kind; returns (documents and refusals, files)."""
    say = say or (lambda _m: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    docs: dict[str, Any] = {"refused": []}
    paths: list[Path] = []
    kind = data.plant.plant

    def attempt(name: str, fn: Callable[[], list[Path]]) -> None:
        try:
            new = fn()
        except (ConfigError, ExportError) as exc:
            docs["refused"].append({"document": name, "reason": str(exc)})
            say(f"      {name}: not written: {exc}")
            return
        paths.extend(new)
        say(f"      {name}: {', '.join(p.name for p in new)}")

    stamp = _now()
    cb = ets = decl = None
    if kind == "battery":
        if fps:
            def _battery() -> list[Path]:
                nonlocal decl
                d = battery.declaration(acc, fps[0], settings, data.source) | {"generated": stamp}
                validate(d, "battery-cf-declaration")
                decl = docs["battery_declaration"] = d
                return [_write_json(d, out_dir / "battery-cf-declaration.json"), _battery_csv(d, out_dir / "battery-cf-declaration.csv")]

            attempt("battery carbon-footprint declaration", _battery)
            if decl is not None:
                def _passport() -> list[Path]:
                    p, refused = battery.passport(decl, settings)
                    validate(p, "battery-pass-carbon-footprint", refused=tuple(r["field"] for r in refused))
                    docs["battery_passport"] = p
                    docs["battery_passport_refused_fields"] = refused
                    for r in refused:
                        say(f"      battery passport: {r['field']} {r['reason']}")
                    return [_write_json(p, out_dir / "battery-pass-carbon-footprint.json")]

                attempt("battery passport carbon footprint", _passport)
    else:
        if any(p.cn_code for p in settings.products):
            def _cbam() -> list[Path]:
                nonlocal cb
                d = cbam.communication(acc, fps, settings, data.source) | {"generated": stamp}
                validate(d, "cbam-communication")
                xp = cbam.write_workbook(d, out_dir / "cbam-communication.xlsx", acc)
                problems = cbam.check_workbook(xp, d)
                if problems:
                    xp.unlink()
                    raise ExportError("the CBAM workbook does not match its JSON: " + "; ".join(problems))
                cb = docs["cbam_communication"] = d
                return [_write_json(d, out_dir / "cbam-communication.json"), xp]

            attempt("CBAM communication", _cbam)
        if settings.carbon.country == "CN":
            def _ets() -> list[Path]:
                nonlocal ets
                d = china_ets.report(data, acc, settings, data.source) | {"generated": stamp}
                validate(d, "china-ets-steel")
                ets = docs["china_ets_steel"] = d
                return [_write_json(d, out_dir / "china-ets-steel.json"), _ets_workbook(d, out_dir / "china-ets-steel.xlsx")]

            attempt("China ETS steel report", _ets)

    if fps:
        def _pcf() -> list[Path]:
            evidence = ets["monthly"][0]["evidence"] if ets else None
            sections = [pcf.pcf_section(acc, fp, settings, evidence) for fp in fps]
            comp = pcf.comparison(cbam=cb, ets=ets, battery=decl, fp=fps[0])
            d = {"schema": "carbonedge/pcf-iso14067/1", "document": "Product carbon footprint statement (ISO 14067 / GB/T 24067) "
                 "and the same product under each regime", "products": sections, "comparison": comp,
                 "sources": ["L20", "L21", "L1", "L3", "L7", "L12", "E9"], "factor_libraries": acc.factors.versions,
                 "data_source": data.source, "generated": stamp}
            validate(d, "pcf-iso14067")
            docs["pcf_iso14067"] = d
            return [_write_json(d, out_dir / "pcf-iso14067.json")]

        attempt("product footprint statement", _pcf)
    return docs, paths


def _battery_csv(d: dict[str, Any], path: Path) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["manufacturer", "battery_model", "plant", "period_start", "period_end", "electricity_variant", "stage",
                    "kg_co2e_per_kwh_lifetime", "kg_co2e_per_kwh_capacity", "status", "basis"])
        for name, v in d["variants"].items():
            head = [d["manufacturer"], d["battery_model"], d["manufacturing_plant"], d["period"]["start"], d["period"]["end"], name]
            for k, s in v["life_cycle_stages"].items():
                w.writerow([*head, k, _blank(s["kg_co2e_per_kwh"]), _blank(s["kg_co2e_per_kwh_capacity"]), s["status"], s["basis"]])
            w.writerow([*head, "total", _blank(v["carbon_footprint_kg_co2e_per_kwh"]), "", "complete" if v["complete"] else "incomplete",
                        "sum of the four stages" if v["complete"] else "not declared: " + ", ".join(v["missing_stages"])])
    return path


def _blank(v: float | None) -> Any:
    return "" if v is None else v


def _ets_workbook(d: dict[str, Any], path: Path) -> Path:
    """The China ETS report as a workbook: company, processes, monthly data, meter evidence, plan, factors, sources."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)

    def sheet(name: str, header: list[str], rows: list[list[Any]]) -> None:
        ws = wb.create_sheet(name)
        ws.append(header)
        for c in ws[1]:
            c.font = Font(bold=True)
        for r in rows:
            ws.append([json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v for v in r])

    co = d["company"]
    sheet("企业 Company", ["项目 item", "value", "unit"], [
        ["enterprise", d["enterprise"]["name"], ""], ["unified social credit code", d["enterprise"]["credit_code"], ""],
        ["reporting year", d["reporting_year"], ""], ["period", f"{d['period']['start']} to {d['period']['end']}", ""],
        ["direct emissions (allowance basis)", co["direct_t"], "t CO2"], ["  of which fuel combustion", co["combustion_t"], "t CO2"],
        ["  of which process emissions", co["process_emissions_t"], "t CO2"], ["purchased electricity", co["purchased_electricity_mwh"], "MWh"],
        ["grid factor", d["grid_factor"]["kg_co2_per_kwh"], f"t CO2/MWh ({d['grid_factor']['factor_id']}, data year "
                                                              f"{d['grid_factor']['data_year']}, {d['grid_factor']['basis']})"],
        ["indirect emissions of purchased electricity", co["indirect_electricity_t"], "t CO2"],
        ["total including electricity", co["total_including_electricity_t"], "t CO2"],
        ["crude steel output", co["crude_steel_t"], "t"], ["direct emissions per tonne", co["direct_t_per_t_steel"], "t CO2/t"]])
    sheet("工序 Processes", ["process", "natural gas Nm3", "combustion t CO2", "process t CO2", "direct t CO2", "electricity MWh",
                            "indirect t CO2", "production", "unit"],
          [[p["process"], p["fuel_natural_gas_nm3"], p["combustion_t"], p["process_emissions_t"], p["direct_t"], p["electricity_mwh"],
            p["indirect_electricity_t"], p["production"], p["production_unit"]] for p in d["processes"]])
    sheet("月度 Monthly", ["month", "process", "electricity MWh", "natural gas Nm3", "direct t CO2", "production", "days covered"],
          [[m["month"], n, r["electricity_mwh"], r["natural_gas_nm3"], r["direct_t"], r["production"], m["days_covered"]]
           for m in d["monthly"] for n, r in m["processes"].items()])
    sheet("证据 Evidence", ["month", "process", "device", "readings", "first reading", "last reading", "poll s", "coverage %", "gap hours",
                           "gaps", "resets / rollovers", "status"],
          [[m["month"], e["process"], e["device"], e["readings"], e.get("first_reading"), e.get("last_reading"), e.get("poll_interval_s"),
            e.get("coverage_pct"), e.get("gap_hours"), e.get("gaps"), e.get("counter_resets_or_rollovers"), e["status"]]
           for m in d["monthly"] for e in m["evidence"]])
    sheet("数据质量控制计划 Plan", ["process", "device", "measures", "role"],
          [[r["process"], r["device"], ", ".join(r["measures"]), r["role"]] for r in d["data_quality_plan"]])
    sheet("因子 Factors", ["id", "value", "unit", "data year", "basis", "publisher", "source", "quality"],
          [[f["id"], f["value"], f["unit"], f["year"], f.get("basis", ""), f["publisher"], f["source"], f["quality"]] for f in d["factors_used"]])
    sheet("来源 Sources", ["key", "source", "where"],
          [[s["key"], s["title"], s["where"]] for s in entries(d["sources"] + [f["source"] for f in d["factors_used"]])])
    wb.save(path)
    return path


def html_section(docs: dict[str, Any], fmt: Callable[..., str], table: Callable[..., str]) -> str:
    """The report's "Regulatory documents" section (empty when there are none)."""
    ex: list[str] = []
    if "cbam_communication" in docs:
        d = docs["cbam_communication"]
        rows = [[escape(g["good"]), escape(g["cn_code"]), escape(g["route"]), fmt(g["quantity_t"], 1), fmt(g["see_direct_t_per_t"], 3),
                 fmt(g["see_indirect_t_per_t"], 3), fmt(g["electricity_mwh_per_t"], 3),
                 fmt(g["default_value"]["with_markup_t_per_t"], 3) if g["default_value"] else "—", fmt(g["cost_actual_eur"]),
                 fmt(g["saving_vs_default_eur"]) if g["saving_vs_default_eur"] is not None else "—"] for g in d["goods"]]
        e = d["electricity"]
        ex.append(f"<h3>EU CBAM communication to importers — {escape(d['installation']['name'])}, {d['reporting_period']['year']}</h3>"
                  + table(["good", "CN code", "route", "t", "SEE direct t/t", "SEE indirect t/t", "MWh/t", "default t/t (marked up)",
                           "cost EUR", "saving vs default EUR"], rows)
                  + f'<p class="src">Electricity: {escape(e["factor_id"])} ({escape(e["basis"])}): {escape(e["why"])} {escape(e["rule"])}. '
                    f'Certificate price {fmt(d["certificate_price"]["eur_per_t"], 2)} EUR/t: {escape(d["certificate_price"]["source"])}. '
                    "Files: cbam-communication.xlsx (template sheets, read back and checked), cbam-communication.json "
                    "(schema carbonedge/cbam-communication/1).</p>")
    if "china_ets_steel" in docs:
        d = docs["china_ets_steel"]
        co, g = d["company"], d["grid_factor"]
        rows = [[escape(p["process"]), fmt(p["direct_t"], 2), fmt(p["electricity_mwh"], 1), fmt(p["indirect_electricity_t"], 2)] for p in d["processes"]]
        gaps = sum(len(e.get("gaps", [])) for m in d["monthly"] for e in m["evidence"])
        ex.append(f"<h3>China national ETS, iron and steel — {escape(d['enterprise']['name'])}, {d['reporting_year']}</h3>"
                  f"<p>Direct {fmt(co['direct_t'], 1)} t CO2 (allowance basis); purchased electricity {fmt(co['purchased_electricity_mwh'], 1)} MWh "
                  f"x {g['kg_co2_per_kwh']:g} ({escape(g['factor_id'])}, data year {g['data_year']}, {escape(g['basis'])}) = "
                  f"{fmt(co['indirect_electricity_t'], 1)} t CO2. {len(d['monthly'])} month(s) with meter evidence; {gaps} reading gap(s).</p>"
                  + table(["process", "direct t", "MWh", "electricity t"], rows)
                  + f'<p class="src">{escape(g["why"])}. Files: china-ets-steel.xlsx, china-ets-steel.json (schema carbonedge/china-ets-steel/1).</p>')
    if "battery_declaration" in docs:
        d = docs["battery_declaration"]
        rows = []
        for k in battery.STAGES:
            rows.append([escape(k.replace("_", " "))] + [fmt(d["variants"][v]["life_cycle_stages"][k]["kg_co2e_per_kwh"], 5)
                                                         if d["variants"][v]["life_cycle_stages"][k]["kg_co2e_per_kwh"] is not None else "not assessed"
                                                         for v in battery.VARIANTS])
        rows.append(["<b>total (assessed stages)</b>"] + [fmt(d["variants"][v]["assessed_stages_kg_co2e_per_kwh"], 5) for v in battery.VARIANTS])
        ex.append(f"<h3>EU Battery Regulation carbon footprint — {escape(d['battery_model'])} at {escape(d['manufacturing_plant'])}</h3>"
                  f"<p>kg CO2e per kWh of energy delivered over the service life ({fmt(d['service_life_kwh_per_kwh_capacity'])} kWh per kWh "
                  "of capacity), under both electricity rules:</p>"
                  + table(["stage", "draft delegated act (national mix)", "JRC (supplier-specific, residual mix)"], rows, left=1)
                  + '<p class="src">Files: battery-cf-declaration.json/.csv (schema carbonedge/battery-cf-declaration/1)'
                  + (", battery-pass-carbon-footprint.json (Battery Pass data model v1.2.0)" if "battery_passport" in docs else "") + ".</p>"
                  + "".join(f'<p class="note"><b>Passport field {escape(r["field"])}</b> {escape(r["reason"])}</p>'
                            for r in docs.get("battery_passport_refused_fields", [])))
    if "pcf_iso14067" in docs:
        comp = docs["pcf_iso14067"]["comparison"]
        rows = [[escape(r["regime"]), escape(r["boundary"]), escape(r["electricity"]), fmt(r["value"], 4), escape(r["unit"]), escape(r["sources"])]
                for r in comp["rows"]]
        ex.append("<h3>One product, several regimes: why the numbers differ</h3>"
                  + table(["regime", "boundary", "electricity", "value", "unit", "sources"], rows, left=3)
                  + "<ul class='src'>" + "".join(f"<li>{escape(w)}</li>" for w in comp["why_they_differ"]) + "</ul>"
                  + '<p class="src">File: pcf-iso14067.json (ISO 14067 / GB/T 24067 statement per product).</p>')
    for r in docs.get("refused", []):
        ex.append(f'<p class="note"><b>{escape(r["document"])} not written:</b> {escape(r["reason"])}</p>')
    return "".join(ex)
