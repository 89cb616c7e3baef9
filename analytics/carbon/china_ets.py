"""China national ETS, iron and steel: annual company and process-level report with monthly meter evidence.

Follows the structure MEE asks of steel enterprises (环办气候函〔2023〕332号 with its steel reporting
instructions [L12]; GB/T 32151.5-2015 [L19]): enterprise totals and facility/process-level emissions
for the year, and the monthly data with their evidence under the monthly-upload regime
(以日保月、以月保年) and the data-quality control plan [L13].

- Direct emissions: metered fuel (Nm3 x NCV x emission factor) and configured process emissions per
  tonne. Allowances of the steel sector are based on these [C11, L18].
- Purchased electricity: MWh x the MEE/NBS grid factor of a stated data year and basis [L14-L17];
  the report names the year and basis and shows the other bases of the same data year, and it refuses
  a factor of a data year after the reporting year or of another country.
- Monthly evidence per meter: readings, first and last reading, the usual poll interval, coverage and
  every gap longer than ``max_gap_factor`` poll intervals (where the month's figure rests on
  interpolation across the gap), counter resets or rollovers.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import Any

import numpy as np

from carbonedge.analytics.carbon.accounts import Accounts
from carbonedge.analytics.carbon.data import PlantData
from carbonedge.analytics.carbon.factors import Factor, FactorLibrary
from carbonedge.analytics.carbon.settings import Settings
from carbonedge.analytics.carbon.sources import cite
from carbonedge.clock import iso
from carbonedge.errors import ConfigError

GRID_BASES = ("national-average", "excl-market-nonfossil", "fossil", "ets-reporting", "regional-average", "provincial-average")
SOURCE_KEYS = ["L12", "L13", "L14", "L15", "L16", "L17", "L18", "L19", "C10", "C11", "C12", "E10", "C13"]


class ChinaEtsError(ConfigError):
    """Input that cannot give a correct China ETS figure."""

    code = "carbon.china_ets_invalid"


def grid_factor(lib: FactorLibrary, settings: Settings, year: int) -> tuple[Factor, list[Factor], str]:
    """The grid factor for ``year``'s report, the other bases of its data year, and why it was chosen."""
    fid = settings.china_ets.grid_factor
    if fid:
        f = lib.get(fid)
        why = "set in the settings (china_ets.grid_factor)"
    else:
        cand = [g for g in lib.factors.values() if g.kind == "electricity" and g.region == "CN" and g.basis == "national-average"
                and g.year <= year]
        if not cand:
            raise ChinaEtsError(f"no national-average grid factor of a data year up to {year} in the factor library")
        f = lib.get(max(cand, key=lambda g: g.year).id)
        why = (f"the newest national average published (data year {f.year}); MEE's notice for the {year} reports names the factor to "
               f"use: check it before submission {cite('L12', 'L17')}")
    if f.kind != "electricity" or not f.region.startswith("CN"):
        raise ChinaEtsError(f"grid factor {f.id!r} is not a China grid factor (region {f.region})")
    if f.basis not in GRID_BASES:
        raise ChinaEtsError(f"grid factor {f.id!r} has basis {f.basis or 'none'!r}; use one of {', '.join(GRID_BASES)}")
    if f.year > year:
        raise ChinaEtsError(f"grid factor {f.id!r} is of data year {f.year}, after the reporting year {year}")
    others = sorted((g for g in lib.factors.values() if g.kind == "electricity" and g.region == "CN" and g.year == f.year and g.id != f.id),
                    key=lambda g: g.id)
    return f, others, why


def report(data: PlantData, acc: Accounts, settings: Settings, data_source: str) -> dict[str, Any]:
    """The annual report of the enterprise for the calendar year of ``acc``'s period."""
    y0, y1 = iso(acc.start)[:4], iso(acc.end - 1e-6)[:4]
    if y0 != y1:
        raise ChinaEtsError(f"the China ETS report covers one calendar year; {iso(acc.start)} to {iso(acc.end)} spans {y0} and {y1}")
    year = int(y0)
    lib, c, ce = acc.factors, settings.carbon, settings.china_ets
    grid, others, why = grid_factor(lib, settings, year)
    gas_ef, ncv = lib.get(c.gas_factor), lib.get(c.gas_ncv)
    gas_t_per_nm3 = ncv.value * gas_ef.value / 1000.0  # GJ/Nm3 x t/TJ / 1000 = t/Nm3
    months = _months(acc)
    mids = (acc.edges[:-1] + acc.edges[1:]) / 2
    processes = []
    for name, p in acc.processes.items():
        prod = float(p.production.sum()) if p.production_unit else None
        direct = float(p.scope1_kg.sum()) / 1000.0
        e_mwh = float(p.energy_kwh.sum()) / 1000.0
        processes.append({
            "process": name, "area": p.area, "fuel_natural_gas_nm3": float(p.gas_nm3.sum()),
            "combustion_t": float(p.gas_nm3.sum()) * gas_t_per_nm3, "process_emissions_t": direct - float(p.gas_nm3.sum()) * gas_t_per_nm3,
            "direct_t": direct, "electricity_mwh": e_mwh, "indirect_electricity_t": e_mwh * grid.kg_per_kwh,
            "production": prod, "production_unit": p.production_unit,
            "direct_t_per_unit": direct / prod if prod else None,
        })
    direct_total = sum(p["direct_t"] for p in processes)
    e_total = sum(p["electricity_mwh"] for p in processes)
    gas_total = sum(p["fuel_natural_gas_nm3"] for p in processes)
    monthly = []
    for m0, m1, label in months:
        sel = (mids >= m0) & (mids < m1)
        rows = {n: {"electricity_mwh": float(p.energy_kwh[sel].sum()) / 1000.0, "natural_gas_nm3": float(p.gas_nm3[sel].sum()),
                    "direct_t": float(p.scope1_kg[sel].sum()) / 1000.0,
                    "production": float(p.production[sel].sum()) if p.production_unit else None}
                for n, p in acc.processes.items()}
        monthly.append({
            "month": label, "start": iso(max(m0, acc.start)), "end": iso(min(m1, acc.end)),
            "days_covered": (min(m1, acc.end) - max(m0, acc.start)) / 86400.0,
            "days_in_month": calendar.monthrange(int(label[:4]), int(label[5:]))[1],
            "processes": rows,
            "direct_t": sum(r["direct_t"] for r in rows.values()),
            "electricity_mwh": sum(r["electricity_mwh"] for r in rows.values()),
            "evidence": _evidence(data, max(m0, acc.start), min(m1, acc.end), ce.max_gap_factor),
        })
    rec = {"direct_annual_t": direct_total, "direct_sum_of_months_t": sum(m["direct_t"] for m in monthly),
           "electricity_annual_mwh": e_total, "electricity_sum_of_months_mwh": sum(m["electricity_mwh"] for m in monthly),
           "electricity_meters_mwh": acc.plant_check["meter_total_kwh"] / 1000.0, "limit_pct": 0.1}
    rec["direct_difference_pct"] = _pct(rec["direct_sum_of_months_t"], direct_total)
    rec["electricity_difference_pct"] = _pct(e_total, rec["electricity_meters_mwh"])
    rec["months_difference_pct"] = _pct(rec["electricity_sum_of_months_mwh"], e_total)
    if max(abs(rec["direct_difference_pct"]), abs(rec["electricity_difference_pct"]), abs(rec["months_difference_pct"])) > 0.1:
        raise ChinaEtsError(f"the China ETS figures do not reconcile (direct {rec['direct_difference_pct']:+.3f} %, electricity vs meters "
                            f"{rec['electricity_difference_pct']:+.3f} %, months vs year {rec['months_difference_pct']:+.3f} %; limit 0.1 %)")
    days = (acc.end - acc.start) / 86400.0
    year_days = 366 if calendar.isleap(year) else 365
    out_proc = data.plant.output_process
    steel_t = next((p["production"] for p in processes if p["process"] == out_proc), None)
    return {
        "schema": "carbonedge/china-ets-steel/1",
        "document": "全国碳排放权交易市场 钢铁行业 企业温室气体排放报告 (national carbon market, iron and steel: enterprise GHG report)",
        "enterprise": {"name": ce.enterprise, "credit_code": ce.credit_code, "site": acc.site},
        "reporting_year": year, "period": {"start": iso(acc.start), "end": iso(acc.end), "days": days, "complete_year": abs(days - year_days) < 1e-6},
        "grid_factor": {"factor_id": grid.id, "kg_co2_per_kwh": grid.kg_per_kwh, "data_year": grid.year, "basis": grid.basis,
                        "why": why, "source": f"[{grid.source}]",
                        "same_year_other_bases": [{"factor_id": g.id, "basis": g.basis, "kg_co2_per_kwh": g.kg_per_kwh,
                                                   "indirect_t": e_total * g.kg_per_kwh} for g in others if g.basis in GRID_BASES[:3]]},
        "fuel_factors": {"natural_gas": {"ncv_gj_per_nm3": ncv.value, "ncv_id": ncv.id, "ef_t_co2_per_tj": gas_ef.value, "ef_id": gas_ef.id,
                                         "t_co2_per_nm3": gas_t_per_nm3}},
        "company": {
            "direct_t": direct_total, "combustion_t": gas_total * gas_t_per_nm3, "process_emissions_t": direct_total - gas_total * gas_t_per_nm3,
            "purchased_electricity_mwh": e_total, "indirect_electricity_t": e_total * grid.kg_per_kwh,
            "total_including_electricity_t": direct_total + e_total * grid.kg_per_kwh,
            "crude_steel_t": steel_t, "direct_t_per_t_steel": direct_total / steel_t if steel_t else None,
            "above_inclusion_threshold": None if days < year_days - 1e-6 else direct_total >= 26000.0,
        },
        "processes": processes,
        "monthly": monthly,
        "data_quality_plan": _plan(data),
        "reconciliation": rec,
        "notes": [
            "Allowances for iron and steel are based on direct emissions; purchased electricity is reported with the grid factor of the "
            "stated data year and basis " + cite("C11", "L18", "L12") + ".",
            "The natural-gas factors are IPCC 2006 defaults and the site's NCV " + cite("E10") + "; the MEE steel guideline sets its own "
            "defaults (NCV, carbon content, oxidation rate), which are not shipped here: replace them, or measured values, before submission.",
            "The newest (2025) MEE steel accounting guideline could not be retrieved; the layout follows the 2023 reporting instructions " + cite("L12") + ".",
            "Inclusion threshold: 26,000 t CO2e of direct emissions per year " + cite("L18", "C11") + "; judged only on a complete year.",
            *acc.method_notes,
        ],
        "sources": SOURCE_KEYS,
        "factors_used": lib.used_factors(), "factor_libraries": lib.versions, "data_source": data_source,
    }


def _pct(a: float, b: float) -> float:
    return 100.0 * (a - b) / b if b else 0.0


def _months(acc: Accounts) -> list[tuple[float, float, str]]:
    out = []
    d = datetime.fromtimestamp(acc.start, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while d.timestamp() < acc.end:
        nxt = d.replace(year=d.year + (d.month == 12), month=d.month % 12 + 1)
        out.append((d.timestamp(), nxt.timestamp(), f"{d.year:04d}-{d.month:02d}"))
        d = nxt
    return out


def _evidence(data: PlantData, t0: float, t1: float, gap_factor: float) -> list[dict[str, Any]]:
    """Per device of the plant model: which readings carry the month's figures, and where they are missing."""
    out = []
    for proc in data.plant.processes:
        for dev in [*data.process_devices(proc), *data.counter_devices(proc)]:
            ds = data.devices.get(dev)
            if ds is None:
                out.append({"process": proc, "device": dev, "readings": 0, "status": "no readings in the data source"})
                continue
            sel = (ds.t >= t0) & (ds.t <= t1)
            t = ds.t[sel]
            if t.size < 2:
                out.append({"process": proc, "device": dev, "readings": int(t.size), "status": "fewer than two readings: no figure"})
                continue
            dt = np.diff(t)
            poll = float(np.median(dt))
            gaps = [{"from": iso(float(t[i])), "to": iso(float(t[i + 1])), "hours": float(dt[i]) / 3600.0}
                    for i in np.flatnonzero(dt > gap_factor * poll)]
            span = t1 - t0
            expected = span / poll
            quantities = sorted(q for q in ("active_energy_import", "gas_volume", "production_mass", "production_count", "production_capacity")
                                if ds.has(q))
            resets = 0
            for q in quantities:
                v = ds.values[q][sel]
                v = v[np.isfinite(v)]
                resets += int((np.diff(v) < 0).sum())
            out.append({
                "process": proc, "device": dev, "quantities": quantities, "readings": int(t.size),
                "first_reading": iso(float(t[0])), "last_reading": iso(float(t[-1])), "poll_interval_s": poll,
                "coverage_pct": min(100.0, 100.0 * t.size / (expected + 1)),
                "gaps": gaps, "gap_hours": float(sum(g["hours"] for g in gaps)), "counter_resets_or_rollovers": resets,
                "status": "complete" if not gaps and t[0] - t0 <= gap_factor * poll and t1 - t[-1] <= gap_factor * poll
                else "gaps: figures across a gap are interpolated from the counters on either side",
            })
    return out


def _plan(data: PlantData) -> list[dict[str, Any]]:
    """The data-quality control plan's measurement table: what is metered where, from which device."""
    rows = []
    for proc, spec in data.plant.processes.items():
        for dev in data.process_devices(proc):
            ds = data.devices.get(dev)
            q = sorted(k for k in ("active_energy_import", "gas_volume") if ds is not None and ds.has(k))
            rows.append({"process": proc, "device": dev, "measures": q or ["(no counter readings)"], "role": "energy / fuel meter"})
        for dev in data.counter_devices(proc):
            rows.append({"process": proc, "device": dev, "measures": [data.production_quantity(proc)],
                         "role": f"production counter ({spec.production_unit})"})
    return rows
