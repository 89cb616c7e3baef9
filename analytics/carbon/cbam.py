"""EU CBAM, definitive period: the operator's communication to importers, from metered data.

What is computed, per good (CN code and production route) of the installation:

- attributed direct emissions (metered scope 1 of the installation, attributed to the good by
  the footprint's allocation rule) and the direct embedded emissions of declared precursors;
- specific direct embedded emissions SEE_dir = (attributed direct + precursor direct) / tonnes;
- electricity consumed (MWh/t) and its emission factor chosen under Art. 8 of Implementing
  Regulation (EU) 2025/2547 [L3]: the grid factor, or an actual factor only with a direct technical
  link or a power purchase agreement, with its evidence; certificates (guarantees of origin) do not
  qualify; SEE_ind = MWh/t x factor;
- for iron and steel only direct embedded emissions count towards certificates (Annex II of
  Regulation (EU) 2023/956 [L1]); indirect emissions are reported for information;
- the default value of the CN code with the mark-up of the import year (Implementing Regulation
  (EU) 2025/2621 [L5], reported as +10 % 2026, +20 % 2027, +30 % from 2028 [C1, C15]) beside the
  actual value, and the certificate cost of each at a given price.

The workbook follows the sheet structure of the Commission's communication template for
installations [L22]; it is not a byte copy of the official template (whose cell layout is not
reproduced here), so a declarant copies the figures into the official workbook or imports the JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from carbonedge.analytics.carbon.accounts import Accounts
from carbonedge.analytics.carbon.factors import Factor, FactorLibrary
from carbonedge.analytics.carbon.settings import Settings
from carbonedge.analytics.carbon.sources import cite
from carbonedge.clock import iso
from carbonedge.errors import ConfigError

#: Sheets of the Commission's communication template for installations [L22], in order.
SHEETS = ("0_Versions", "A_InstData", "B_EmInst", "C_Emissions&Energy", "D_Processes", "E_PurchPrec",
          "Summary_Processes", "Summary_Products", "Summary_Communication", "Sources")
#: Header row of each data sheet, checked when the workbook is read back.
HEADERS: dict[str, list[str]] = {
    "A_InstData": ["field", "value"],
    "B_EmInst": ["source stream / source", "type", "activity data", "unit", "emission factor", "factor unit", "NCV", "emissions t CO2",
                 "factor id", "source"],
    "C_Emissions&Energy": ["item", "value", "unit", "note"],
    "D_Processes": ["production process", "CN code", "route", "production t", "attributed direct emissions t CO2", "electricity MWh",
                    "electricity factor t CO2/MWh", "indirect emissions t CO2", "allocation rule"],
    "E_PurchPrec": ["good", "precursor", "amount t", "SEE direct t CO2/t", "embedded direct t CO2", "value type", "source"],
    "Summary_Processes": ["production process", "CN code", "SEE direct t CO2/t", "SEE indirect t CO2/t", "electricity MWh/t"],
    "Summary_Products": ["good", "CN code", "route", "quantity t", "SEE direct t CO2/t", "SEE indirect t CO2/t", "SEE total t CO2/t",
                        "electricity MWh/t", "electricity factor t CO2/MWh", "electricity factor source", "default direct t CO2/t (with mark-up)",
                        "certificates actual t CO2", "certificates default t CO2", "cost actual EUR", "cost default EUR", "saving vs default EUR",
                        "carbon price paid EUR/t", "qualifying parameters"],
    "Summary_Communication": ["item", "value"],
    "Sources": ["key", "source", "where"],
}
IRON_STEEL_CN = ("7201", "7202", "7203", "7204", "7205", "7206", "7207", "7208", "7209", "7210", "7211", "7212", "7213", "7214",
                 "7215", "7216", "7217", "7218", "7219", "7220", "7221", "7222", "7223", "7224", "7225", "7226", "7227", "7228",
                 "7229", "7301", "7302", "7303", "7304", "7305", "7306", "7307", "7308", "7309", "7310", "7311", "7318", "7326", "2601")
SOURCE_KEYS = ["L1", "L2", "L3", "L4", "L5", "L6", "L22", "C1", "C9", "C15", "E9"]


class CbamError(ConfigError):
    """Input that cannot give a correct CBAM figure."""

    code = "carbon.cbam_invalid"


def _year(acc: Accounts) -> int:
    y0, y1 = iso(acc.start)[:4], iso(acc.end - 1e-6)[:4]
    if y0 != y1:
        raise CbamError(f"the CBAM reporting period is a calendar year: {iso(acc.start)} to {iso(acc.end)} spans {y0} and {y1}; "
                        "report each year separately")
    return int(y0)


def electricity_factor(settings: Settings, lib: FactorLibrary) -> tuple[Factor, dict[str, Any]]:
    """The Art. 8 electricity factor and the record of why it may be used [L3]."""
    cb, c = settings.cbam, settings.carbon
    fid = cb.electricity_factor or c.cbam_electricity_factor or c.grid_factor
    f = lib.get(fid)
    if f.kind != "electricity":
        raise CbamError(f"CBAM electricity factor {fid!r} is a {f.kind} factor, not an electricity factor")
    if cb.electricity_basis == "grid":
        if f.basis in ("contractual-instrument", "supplier-specific") or fid.startswith("contract."):
            raise CbamError(f"CBAM electricity basis 'grid' with factor {fid!r}, a contractual factor: certificates and guarantees of "
                            "origin do not qualify under Art. 8 of Implementing Regulation (EU) 2025/2547; use a grid factor, or "
                            "electricity_basis = 'ppa' / 'direct-link' with the contract or connection as evidence")
        if not (f.region == settings.carbon.country or f.region.startswith(settings.carbon.country + "-")):
            raise CbamError(f"CBAM grid factor {fid!r} is for region {f.region}, but the installation is in {settings.carbon.country}")
        why = f"grid factor of the country of production ({f.region}); no direct technical link or PPA declared"
    else:
        if not (cb.electricity_evidence and cb.electricity_evidence.strip()):
            raise CbamError(f"CBAM electricity basis {cb.electricity_basis!r} needs its evidence (cbam.electricity_evidence: the PPA or "
                            "the direct technical link, with period and MWh); without it only the grid factor may be used (Art. 8, 2025/2547)")
        why = (f"actual factor under Art. 8 of Implementing Regulation (EU) 2025/2547 via {cb.electricity_basis}: "
               f"{cb.electricity_evidence.strip()}")
    return f, {"basis": cb.electricity_basis, "factor_id": f.id, "t_co2_per_mwh": f.kg_per_kwh, "data_year": f.year,
               "evidence": cb.electricity_evidence, "why": why, "source": f"[{f.source}]", "rule": cite("L3")}


def communication(acc: Accounts, footprints: list[dict[str, Any]], settings: Settings, data_source: str) -> dict[str, Any]:
    """The operator's CBAM communication (definitive period) for the installation and calendar year of ``acc``."""
    year = _year(acc)
    if year < 2026:
        raise CbamError(f"the period is in {year}, in the CBAM transitional period (to 31 Dec 2025): this communication follows the "
                        "definitive-period rules (from 1 Jan 2026)")
    lib, c, cb = acc.factors, settings.carbon, settings.cbam
    ef, ef_rec = electricity_factor(settings, lib)
    markup = _markup(lib, year)
    price, price_src = _price(lib, settings, year)
    totals = acc.plant_totals()
    goods: list[dict[str, Any]] = []
    attributed_direct = 0.0
    for fp, prod in zip(footprints, settings.products, strict=True):
        if not prod.cn_code:
            continue
        cn = prod.cn_code.replace(" ", "")
        if len(cn) < 4 or not cn.isdigit():
            raise CbamError(f"product {prod.name!r}: CN code {prod.cn_code!r} is not a CN code (4 to 8 digits)")
        if not cn.startswith(IRON_STEEL_CN):
            raise CbamError(f"product {prod.name!r}: CN {prod.cn_code} is not an iron or steel good of Annex I to Regulation (EU) "
                            "2023/956; this communication covers iron and steel")
        if fp["output_unit"] != "t":
            raise CbamError(f"product {prod.name!r}: output is counted in {fp['output_unit']!r}; CBAM goods are declared in tonnes")
        q = float(fp["output"])
        st = fp["stages_kg_co2e_per_unit"]
        direct = st["manufacturing_scope1"] * q / 1000.0
        attributed_direct += direct
        e_mwh = fp["energy_kwh_per_unit"] * q / 1000.0
        indirect = e_mwh * ef.kg_per_kwh
        precursors = []
        for m in prod.materials:
            if not m.cbam_precursor:
                continue
            amount_t = m.amount_per_unit * q / 1000.0 if m.unit == "kg" else m.amount_per_unit * q if m.unit == "t" else math.nan
            if not math.isfinite(amount_t):
                raise CbamError(f"precursor {m.name!r} of {prod.name!r} is in {m.unit!r}; give precursors in kg or t per tonne of good")
            see = m.kg_co2e_per_amount * m.cbam_direct_share * (1000.0 if m.unit == "kg" else 1.0) / 1000.0  # t CO2 per t precursor
            precursors.append({"precursor": m.name, "amount_t": amount_t, "see_direct_t_per_t": see, "embedded_direct_t": amount_t * see,
                               "value_type": "actual (supplier)", "source": m.source})
        pre = sum(p["embedded_direct_t"] for p in precursors)
        see_dir = (direct + pre) / q
        see_ind = indirect / q
        default = None
        if prod.cbam_default_factor:
            f = lib.get(prod.cbam_default_factor)
            if f.basis != "cbam-default-direct":
                raise CbamError(f"{prod.cbam_default_factor!r} is not a CBAM default value (basis {f.basis or 'none'})")
            if f.region != c.country:
                raise CbamError(f"default value {f.id} is for {f.region}; the installation is in {c.country}")
            marked = f.value * (1 + markup.value / 100.0)
            default = {"factor_id": f.id, "base_t_per_t": f.value, "markup_pct": markup.value, "markup_id": markup.id,
                       "with_markup_t_per_t": marked, "source": f"{f.publisher} [{f.source}]", "quality": f.quality}
        cert_actual = see_dir * q
        cert_default = default["with_markup_t_per_t"] * q if default else None
        cost_actual = cert_actual * (price - cb.carbon_price_paid_eur_per_t)
        cost_default = cert_default * (price - cb.carbon_price_paid_eur_per_t) if cert_default is not None else None
        goods.append({
            "good": prod.name, "cn_code": prod.cn_code, "route": prod.cbam_route or _route(fp), "quantity_t": q,
            "attributed_direct_t": direct, "precursors": precursors, "precursor_direct_t": pre,
            "electricity_mwh": e_mwh, "electricity_mwh_per_t": e_mwh / q, "indirect_t": indirect,
            "see_direct_t_per_t": see_dir, "see_indirect_t_per_t": see_ind, "see_total_t_per_t": see_dir + see_ind,
            "certificates_basis": "direct embedded emissions only (iron and steel, Annex II of Regulation (EU) 2023/956) " + cite("L1"),
            "certificates_actual_t": cert_actual, "default_value": default, "certificates_default_t": cert_default,
            "cost_actual_eur": cost_actual, "cost_default_eur": cost_default,
            "saving_vs_default_eur": (cost_default - cost_actual) if cost_default is not None else None,
            "qualifying_parameters": dict(prod.qualifying_parameters) or None,
            "allocation_rule": fp["allocation_rule"], "period": fp["periods"],
        })
    if not goods:
        raise CbamError("no product has a CN code, so there is nothing to communicate under CBAM: set cn_code on the steel products")
    direct_total = totals["scope1_kg"] / 1000.0
    unattributed = direct_total - attributed_direct
    elec_meters = acc.plant_check["meter_total_kwh"] / 1000.0
    doc = {
        "schema": "carbonedge/cbam-communication/1",
        "document": "CBAM communication of embedded emissions, installation to importer (definitive period)",
        "installation": {"name": c.installation, "site": acc.site, "country": c.country, "unlocode": cb.unlocode, "operator": cb.operator,
                         "verifier": cb.verifier},
        "reporting_period": {"start": iso(acc.start), "end": iso(acc.end), "year": year,
                             "complete_year": iso(acc.start) == f"{year}-01-01T00:00:00Z" and iso(acc.end) == f"{year + 1}-01-01T00:00:00Z"},
        "electricity": ef_rec,
        "default_markup": {"year": year, "markup_pct": markup.value, "factor_id": markup.id, "source": f"[{markup.source}]",
                           "quality": markup.quality},
        "certificate_price": {"eur_per_t": price, "source": price_src, "carbon_price_paid_eur_per_t": cb.carbon_price_paid_eur_per_t,
                              "carbon_price_paid_evidence": cb.carbon_price_paid_evidence},
        "goods": goods,
        "installation_totals": {"direct_t": direct_total, "attributed_to_goods_direct_t": attributed_direct,
                                "not_attributed_direct_t": unattributed, "electricity_mwh": totals["energy_kwh"] / 1000.0,
                                "indirect_t": totals["energy_kwh"] / 1000.0 * ef.kg_per_kwh, "natural_gas_nm3": totals["gas_nm3"]},
        "reconciliation": _reconcile(direct_total, attributed_direct + unattributed, elec_meters, totals["energy_kwh"] / 1000.0),
        "notes": [
            "Definitive period (from 1 Jan 2026): for iron and steel only direct embedded emissions count towards CBAM certificates; "
            "indirect emissions are reported for information " + cite("L1", "L3") + ".",
            "The 50 t per importer per calendar year threshold of Regulation (EU) 2025/2083 is the importer's test, not the "
            "installation's " + cite("L2") + ".",
            "Certificate figures are before the adjustment for free allocation in the EU ETS (CBAM factor), which this tool does not "
            "apply: the benchmarks and factor (reported as 97.5 % for 2026) could not be confirmed from the primary text.",
            "Actual values must be verified by an accredited verifier before the declarant uses them (Implementing Regulation (EU) "
            "2025/2546: physical site visit in the first verified year) " + cite("L4") + ".",
            "Default values and mark-ups come from a secondary copy of Implementing Regulation (EU) 2025/2621; check them against "
            "the Official Journal before use " + cite("L5", "C1") + ".",
            *[f"No CBAM default value for CN {g['cn_code']} ({c.country}) in the factor library: add it from Implementing Regulation "
              "(EU) 2025/2621 (a site factor file, basis cbam-default-direct) to compare actual and default." for g in goods
              if g["default_value"] is None],
            *acc.method_notes,
        ],
        "sources": SOURCE_KEYS,
        "factors_used": lib.used_factors(), "factor_libraries": lib.versions, "data_source": data_source,
    }
    return doc


def _route(fp: dict[str, Any]) -> str:
    procs = set(fp["by_process_kg_per_unit"])
    if "eaf" in procs:
        return "EAF"
    if "bof" in procs or "blast_furnace" in procs:
        return "BF/BOF"
    return "not stated"


def _markup(lib: FactorLibrary, year: int) -> Factor:
    ids = sorted(k for k, f in lib.factors.items() if f.basis == "cbam-default-markup")
    cand = [lib.factors[k] for k in ids if lib.factors[k].year <= year]
    if not cand:
        raise CbamError(f"no CBAM default-value mark-up for {year} in the factor library ({', '.join(ids) or 'none'})")
    best = max(cand, key=lambda f: f.year)  # +30 % applies from 2028 on
    return lib.get(best.id)


def _price(lib: FactorLibrary, settings: Settings, year: int) -> tuple[float, str]:
    if settings.cbam.certificate_price_eur_per_t is not None:
        return settings.cbam.certificate_price_eur_per_t, "given in the settings (cbam.certificate_price_eur_per_t)"
    cand = sorted(k for k, f in lib.factors.items() if f.basis == "cbam-certificate-price" and f.year == year)
    if not cand:
        raise CbamError(f"no CBAM certificate price for {year} in the factor library: set cbam.certificate_price_eur_per_t")
    f = lib.get(cand[-1])
    return f.value, f"{f.publisher} ({f.id}, [{f.source}], {f.quality}); later quarters differ"


def _reconcile(direct_plant: float, direct_doc: float, elec_meters: float, elec_doc: float) -> dict[str, Any]:
    d = 100.0 * (direct_doc - direct_plant) / direct_plant if direct_plant else 0.0
    e = 100.0 * (elec_doc - elec_meters) / elec_meters if elec_meters else 0.0
    if abs(d) > 0.1 or abs(e) > 0.1:
        raise CbamError(f"the CBAM figures do not reconcile with the plant total (direct {d:+.3f} %, electricity {e:+.3f} %; limit 0.1 %)")
    return {"direct_plant_t": direct_plant, "direct_document_t": direct_doc, "direct_difference_pct": d,
            "electricity_meters_mwh": elec_meters, "electricity_document_mwh": elec_doc, "electricity_difference_pct": e,
            "limit_pct": 0.1}


# ----------------------------------------------------------------------------------------------- workbook


def write_workbook(doc: dict[str, Any], path: Path, acc: Accounts) -> Path:
    """Write the communication as an .xlsx workbook with the template's sheets (openpyxl)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from carbonedge.analytics.carbon.sources import entries

    wb = Workbook()
    wb.remove(wb.active)
    bold = Font(bold=True)
    sheets = {name: wb.create_sheet(name) for name in SHEETS}

    def table(name: str, rows: list[list[Any]]) -> None:
        ws = sheets[name]
        ws.append(HEADERS[name])
        for cell in ws[1]:
            cell.font = bold
        for r in rows:
            ws.append([_cell(v) for v in r])
        for col in ws.columns:
            ws.column_dimensions[col[0].column_letter].width = min(60, max(12, *(len(str(c.value or "")) for c in col)))

    v = sheets["0_Versions"]
    for r in (["document", doc["document"]], ["format", doc["schema"] + " (sheet structure of the Commission's communication template "
                                                                          "for installations [L22]; figures to be copied into the official workbook)"],
              ["factor libraries", ", ".join(doc["factor_libraries"])], ["data source", doc["data_source"]],
              ["reporting period", f"{doc['reporting_period']['start']} to {doc['reporting_period']['end']}"]):
        v.append(r)
    inst = doc["installation"]
    table("A_InstData", [["installation", inst["name"]], ["site", inst["site"]], ["country", inst["country"]], ["UN/LOCODE", inst["unlocode"]],
                         ["operator", inst["operator"]], ["verifier", inst["verifier"]],
                         ["reporting period start", doc["reporting_period"]["start"]], ["reporting period end", doc["reporting_period"]["end"]],
                         *[["good / route", f"{g['cn_code']} {g['good']} ({g['route']})"] for g in doc["goods"]],
                         *[["purchased precursor", f"{p['precursor']} for {g['good']}"] for g in doc["goods"] for p in g["precursors"]]])
    b_rows = []
    for f in doc["factors_used"]:
        if f["kind"] == "fuel":
            b_rows.append(["natural gas (metered)", "source stream, combustion", doc["installation_totals"]["natural_gas_nm3"], "Nm3", f["value"],
                           f["unit"], _ncv(doc), None, f["id"], f"[{f['source']}]"])
        elif f["kind"] == "material" and f.get("basis") != "cbam-default-direct" and f["unit"] == "t CO2/t":
            b_rows.append(["process emissions per tonne", "source stream, process", None, "t", f["value"], f["unit"], None, None, f["id"],
                           f"[{f['source']}]"])
    b_rows.append(["installation total (direct)", "", None, "", None, "", None, doc["installation_totals"]["direct_t"], "", "metered"])
    table("B_EmInst", b_rows)
    it, rc = doc["installation_totals"], doc["reconciliation"]
    table("C_Emissions&Energy", [
        ["direct emissions", it["direct_t"], "t CO2", "metered scope 1 of the installation"],
        ["attributed to declared goods", it["attributed_to_goods_direct_t"], "t CO2", ""],
        ["not attributed (other goods, periods without declared output)", it["not_attributed_direct_t"], "t CO2", ""],
        ["electricity consumed", it["electricity_mwh"], "MWh", "metered"],
        ["electricity emission factor", doc["electricity"]["t_co2_per_mwh"], "t CO2/MWh", doc["electricity"]["why"]],
        ["indirect emissions", it["indirect_t"], "t CO2", "for information (iron and steel)"],
        ["natural gas", it["natural_gas_nm3"], "Nm3", "metered"],
        ["reconciliation, direct", rc["direct_difference_pct"], "%", "document vs plant total; limit 0.1 %"],
        ["reconciliation, electricity", rc["electricity_difference_pct"], "%", "document vs meters' whole-period counters; limit 0.1 %"],
    ])
    table("D_Processes", [[g["good"], g["cn_code"], g["route"], g["quantity_t"], g["attributed_direct_t"], g["electricity_mwh"],
                           doc["electricity"]["t_co2_per_mwh"], g["indirect_t"], g["allocation_rule"]] for g in doc["goods"]])
    table("E_PurchPrec", [[g["good"], p["precursor"], p["amount_t"], p["see_direct_t_per_t"], p["embedded_direct_t"], p["value_type"], p["source"]]
                          for g in doc["goods"] for p in g["precursors"]])
    table("Summary_Processes", [[g["good"], g["cn_code"], g["see_direct_t_per_t"], g["see_indirect_t_per_t"], g["electricity_mwh_per_t"]]
                                for g in doc["goods"]])
    table("Summary_Products", [[g["good"], g["cn_code"], g["route"], g["quantity_t"], g["see_direct_t_per_t"], g["see_indirect_t_per_t"],
                                g["see_total_t_per_t"], g["electricity_mwh_per_t"], doc["electricity"]["t_co2_per_mwh"],
                                f"{doc['electricity']['factor_id']} ({doc['electricity']['basis']})",
                                g["default_value"]["with_markup_t_per_t"] if g["default_value"] else None,
                                g["certificates_actual_t"], g["certificates_default_t"], g["cost_actual_eur"], g["cost_default_eur"],
                                g["saving_vs_default_eur"], doc["certificate_price"]["carbon_price_paid_eur_per_t"],
                                "; ".join(f"{k}={val}" for k, val in (g["qualifying_parameters"] or {}).items()) or "not declared"]
                               for g in doc["goods"]])
    table("Summary_Communication", [
        ["installation", inst["name"]], ["country", inst["country"]], ["year", doc["reporting_period"]["year"]],
        *[[f"{g['cn_code']} SEE direct (t CO2/t)", g["see_direct_t_per_t"]] for g in doc["goods"]],
        *[[f"{g['cn_code']} SEE indirect (t CO2/t)", g["see_indirect_t_per_t"]] for g in doc["goods"]],
        ["electricity factor basis (Art. 8, 2025/2547)", doc["electricity"]["basis"]],
        ["electricity factor evidence", doc["electricity"]["evidence"] or "grid factor; no PPA or direct link declared"],
        ["certificate price EUR/t", doc["certificate_price"]["eur_per_t"]], ["certificate price source", doc["certificate_price"]["source"]],
        ["default mark-up %", doc["default_markup"]["markup_pct"]],
        *[["note", n] for n in doc["notes"]],
    ])
    table("Sources", [[s["key"], s["title"], s["where"]] for s in entries(doc["sources"] + [f["source"] for f in doc["factors_used"]])])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def _ncv(doc: dict[str, Any]) -> float | None:
    for f in doc["factors_used"]:
        if f["kind"] == "ncv":
            return float(f["value"])
    return None


def _cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, dict)):
        return str(v)
    return v


def check_workbook(path: Path, doc: dict[str, Any]) -> list[str]:
    """Read the workbook back: every sheet of the template, every header, and the product figures equal to the JSON."""
    from openpyxl import load_workbook

    problems: list[str] = []
    wb = load_workbook(path, read_only=True)
    if tuple(wb.sheetnames) != SHEETS:
        problems.append(f"sheets {wb.sheetnames} != {list(SHEETS)}")
        return problems
    for name, hdr in HEADERS.items():
        got = [c for c in next(wb[name].iter_rows(min_row=1, max_row=1, values_only=True))]
        if got[: len(hdr)] != hdr:
            problems.append(f"{name}: header {got} != {hdr}")
    rows = list(wb["Summary_Products"].iter_rows(min_row=2, values_only=True))
    if len(rows) != len(doc["goods"]):
        problems.append(f"Summary_Products has {len(rows)} goods, the JSON {len(doc['goods'])}")
    for r, g in zip(rows, doc["goods"], strict=False):
        for col, key in ((1, "cn_code"), (3, "quantity_t"), (4, "see_direct_t_per_t"), (5, "see_indirect_t_per_t")):
            a, b = r[col], g[key]
            if (isinstance(b, float) and not math.isclose(float(a), b, rel_tol=1e-12)) or (not isinstance(b, float) and a != b):
                problems.append(f"Summary_Products {g['cn_code']} {HEADERS['Summary_Products'][col]}: {a} != {b}")
    wb.close()
    return problems
