"""Scope 1 and scope 2 carbon accounts per meter, process and plant, per time bin.

- Scope 2, location-based: metered electricity x the grid factor (or an hourly grid
  factor series) [E1-E7].
- Scope 2, market-based: contractual instruments (certificates, PPAs) cover
  consumption inside their period, pro rata across processes, at their own factor;
  the rest takes the residual-mix factor (GHG Protocol Scope 2 Guidance, dual
  reporting [E9]).
- Scope 1: metered natural gas (Nm3 x net calorific value x IPCC factor [E10]) and
  process emissions per tonne where configured (IPCC Tier 1 [C13]).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from carbonedge.analytics.carbon.data import PlantData, bin_counter, edges_for
from carbonedge.analytics.carbon.factors import FactorLibrary
from carbonedge.analytics.carbon.settings import Settings
from carbonedge.clock import iso, parse_time
from carbonedge.errors import ConfigError


@dataclass
class ProcessAccount:
    """Per-bin energy, production and emissions (kg CO2) of one process."""

    process: str
    area: str
    production_unit: str | None
    energy_kwh: np.ndarray
    gas_nm3: np.ndarray
    production: np.ndarray
    scope1_kg: np.ndarray
    scope2_location_kg: np.ndarray
    scope2_market_kg: np.ndarray
    meters: dict[str, dict[str, float]] = field(default_factory=dict)

    def totals(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "energy_kwh": float(self.energy_kwh.sum()),
            "gas_nm3": float(self.gas_nm3.sum()),
            "production": float(self.production.sum()) if self.production_unit else None,
            "production_unit": self.production_unit,
            "scope1_kg": float(self.scope1_kg.sum()),
            "scope2_location_kg": float(self.scope2_location_kg.sum()),
            "scope2_market_kg": float(self.scope2_market_kg.sum()),
            "meters": self.meters,
        }


@dataclass
class Accounts:
    """Carbon accounts of a plant over ``[start, end]`` in bins of ``bin_s`` seconds."""

    site: str
    start: float
    end: float
    bin_s: float
    edges: np.ndarray
    processes: dict[str, ProcessAccount]
    factors: FactorLibrary
    method_notes: list[str]
    instruments: list[dict[str, Any]]
    plant_check: dict[str, float]

    def plant_totals(self) -> dict[str, float]:
        keys = ("energy_kwh", "gas_nm3", "scope1_kg", "scope2_location_kg", "scope2_market_kg")
        return {k: float(sum(getattr(p, k).sum() for p in self.processes.values())) for k in keys}

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site, "start": iso(self.start), "end": iso(self.end),
            "plant": self.plant_totals(), "plant_check": self.plant_check,
            "processes": {n: p.totals() for n, p in self.processes.items()},
            "instruments": self.instruments, "method": self.method_notes,
            "factor_libraries": self.factors.versions, "factors_used": self.factors.used_factors(),
        }


def compute_accounts(data: PlantData, settings: Settings, library: FactorLibrary | None = None, *, bin_s: float = 3600.0) -> Accounts:
    """Scope 1 and 2 accounts per process and meter, in bins of ``bin_s`` seconds over the data's period."""
    c = settings.carbon
    lib = library or FactorLibrary.load(c.factor_library, [Path(p) for p in c.extra_factor_files])
    edges = edges_for(data.start, data.end, bin_s)
    # Clip the first and last bin to the period, so nothing outside [start, end] is counted.
    edges[0], edges[-1] = max(edges[0], data.start), min(edges[-1], data.end)
    grid = lib.get(c.grid_factor)
    lib.same_year([c.grid_factor, c.residual_factor], "scope 2 location- and market-based factors", allow_mixed=c.allow_mixed_factor_years)
    loc_factor = np.full(len(edges) - 1, grid.kg_per_kwh)
    notes = [f"Scope 2 location-based: metered electricity x {grid.cite()}."]
    if c.allow_mixed_factor_years and grid.year != lib.get(c.residual_factor).year:
        notes.append(f"Factor years mixed on purpose (allow_mixed_factor_years): location-based data year {grid.year}, "
                     f"residual mix data year {lib.get(c.residual_factor).year}.")
    if c.hourly_grid_factors:
        loc_factor = _hourly_factors(Path(c.hourly_grid_factors), edges, grid.kg_per_kwh)
        notes[0] = f"Scope 2 location-based: metered electricity x hourly grid factors from {c.hourly_grid_factors}; hours without a value use {grid.cite()}."
    gas_ef, ncv = lib.get(c.gas_factor), lib.get(c.gas_ncv)
    gas_kg_per_nm3 = ncv.value * gas_ef.value * _t_per_tj_to_kg_per_gj(gas_ef.unit)
    procs: dict[str, ProcessAccount] = {}
    for name, spec in data.plant.processes.items():
        n = len(edges) - 1
        e, g, prod = np.zeros(n), np.zeros(n), np.zeros(n)
        meters: dict[str, dict[str, float]] = {}
        for dev in data.process_devices(name):
            ds = data.devices.get(dev)
            if ds is None:
                continue
            m: dict[str, float] = {}
            if ds.has("active_energy_import"):
                de = bin_counter(ds.t, ds.values["active_energy_import"], edges, "active_energy_import")
                e += de
                m["energy_kwh"] = float(de.sum())
                m["scope2_location_kg"] = float((de * loc_factor).sum())
            if ds.has("gas_volume"):
                dg = bin_counter(ds.t, ds.values["gas_volume"], edges, "gas_volume")
                g += dg
                m["gas_nm3"] = float(dg.sum())
                m["scope1_kg"] = float(dg.sum() * gas_kg_per_nm3)
            if m:
                meters[dev] = m
        unit = spec.production_unit
        if unit:
            q = data.production_quantity(name)
            for dev in data.counter_devices(name):
                ds = data.devices.get(dev)
                if ds is not None and ds.has(q):
                    prod += bin_counter(ds.t, ds.values[q], edges, q)
        s1 = g * gas_kg_per_nm3
        if name in c.process_emissions:
            pf = lib.get(c.process_emissions[name])
            if unit != "t":
                raise ConfigError(f"process emissions for {name!r} are per tonne, but {name} counts production in {unit!r}")
            s1 = s1 + prod * pf.value * 1000.0
            notes.append(f"Scope 1 process emissions of {name}: production x {pf.cite()}.")
        procs[name] = ProcessAccount(name, spec.area, unit, e, g, prod, s1, e * loc_factor, np.zeros(n), meters)
    if any(p.gas_nm3.sum() > 0 for p in procs.values()):
        notes.append(f"Scope 1 natural gas: metered Nm3 x NCV {ncv.cite()} x {gas_ef.cite()}.")
    instruments = _market_based(procs, edges, settings, lib, notes)
    check = _plant_check(data, procs)
    return Accounts(data.site, data.start, data.end, bin_s, edges, procs, lib, notes, instruments, check)


def _t_per_tj_to_kg_per_gj(unit: str) -> float:
    if unit != "t CO2/TJ":
        raise ConfigError(f"the natural-gas factor must be in t CO2/TJ (got {unit!r})")
    return 1.0  # 1 t/TJ = 1 kg/GJ


def _market_based(procs: dict[str, ProcessAccount], edges: np.ndarray, settings: Settings, lib: FactorLibrary, notes: list[str]) -> list[dict[str, Any]]:
    residual = lib.get(settings.carbon.residual_factor)
    remaining = {n: p.energy_kwh.copy() for n, p in procs.items()}
    mids = (edges[:-1] + edges[1:]) / 2
    applied: list[dict[str, Any]] = []
    for ins in settings.carbon.instruments:
        f = lib.get(ins.factor)
        inside = (mids >= parse_time(ins.start)) & (mids < parse_time(ins.end))
        eligible = sum(float(r[inside].sum()) for r in remaining.values())
        cover = min(ins.mwh * 1000.0, eligible)
        share = cover / eligible if eligible > 0 else 0.0
        for n, p in procs.items():
            used = remaining[n] * inside * share
            p.scope2_market_kg += used * f.kg_per_kwh
            remaining[n] = remaining[n] - used
        applied.append({"name": ins.name, "kind": ins.kind, "start": ins.start, "end": ins.end, "mwh": ins.mwh,
                        "tracking_id": ins.tracking_id, "factor": ins.factor, "matched_kwh": cover,
                        "unused_mwh": ins.mwh - cover / 1000.0})
    for n, p in procs.items():
        p.scope2_market_kg += remaining[n] * residual.kg_per_kwh
    if applied:
        notes.append(f"Scope 2 market-based: {len(applied)} contractual instrument(s) matched to consumption in their periods, pro rata across "
                     f"processes; unmatched consumption x residual mix {residual.cite()}.")
    else:
        notes.append(f"Scope 2 market-based: no contractual instruments; all consumption x residual mix {residual.cite()}.")
    return applied


def _plant_check(data: PlantData, procs: dict[str, ProcessAccount]) -> dict[str, float]:
    """Plant energy from each meter's whole-period counter increase, independent of the binning, for the sum check."""
    from carbonedge.analytics.carbon.data import corrected_cumulative

    total = 0.0
    for name in procs:
        for dev in data.process_devices(name):
            ds = data.devices.get(dev)
            if ds is None or not ds.has("active_energy_import"):
                continue
            sel = (ds.t >= data.start) & (ds.t <= data.end)
            cum = corrected_cumulative(ds.values["active_energy_import"][sel], ds.t[sel], "active_energy_import")
            fin = cum[np.isfinite(cum)]
            total += float(fin[-1]) if fin.size else 0.0
    binned = float(sum(p.energy_kwh.sum() for p in procs.values()))
    return {"meter_total_kwh": total, "process_sum_kwh": binned,
            "difference_pct": 100.0 * (binned - total) / total if total else 0.0}


def _hourly_factors(path: Path, edges: np.ndarray, fallback: float) -> np.ndarray:
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        t = np.array([parse_time(r["ts"]) for r in rows])
        v = np.array([float(r["kg_co2_per_kwh"]) for r in rows])
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"hourly grid factors {path}: need columns ts (ISO 8601) and kg_co2_per_kwh ({exc})") from exc
    out = np.full(len(edges) - 1, fallback)
    idx = np.searchsorted(t, edges[:-1], side="right") - 1
    ok = (idx >= 0) & (edges[:-1] - t[np.clip(idx, 0, None)] < 3600)
    out[ok] = v[idx[ok]]
    return out
