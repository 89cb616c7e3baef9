"""Metered data for carbon accounting and plant models: load from InfluxDB or from a CSV export, then bin.

Counters (energy, gas volume, production) are turned into consumption per bin by
interpolating the counted cumulative increase (:func:`corrected_cumulative`, the kernel's counter
arithmetic) at the bin edges, so a bin's
figure never depends on where the polls happened to fall, and the bins of a
period always add up to the counter's total increase over that period.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analytics.influx import InfluxReader, quote_literal
from carbonedge import energy
from carbonedge.clock import iso, parse_time
from carbonedge.errors import ConfigError

#: Counter quantities read for accounts and models, and gauges read for power-quality hints.
COUNTERS = ("active_energy_import", "active_energy_export", "reactive_energy_import", "gas_volume", "production_mass", "production_count", "production_capacity")
GAUGES = ("active_power", "power_factor", "demand_active_power", "running")
FIELDS = COUNTERS + GAUGES


@dataclass
class DeviceSeries:
    """Readings of one device: poll times (epoch seconds) and one array per quantity (NaN where absent)."""

    device: str
    t: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def has(self, quantity: str) -> bool:
        v = self.values.get(quantity)
        return v is not None and bool(np.isfinite(v).any())


@dataclass
class PlantData:
    """A plant model (as in ``plant.json``) and the readings of its devices over ``[start, end]``."""

    plant: dict[str, Any]
    devices: dict[str, DeviceSeries]
    start: float
    end: float
    source: str

    @property
    def site(self) -> str:
        return str(self.plant.get("site", "site"))

    def process_devices(self, process: str) -> list[str]:
        """Every metering device of ``process`` (all device lists except production counters)."""
        spec = self.plant["processes"][process]
        out: list[str] = []
        for key, val in spec.items():
            if key != "counters" and isinstance(val, list):
                # Device lists hold ids (meters) or objects with a "device" key (flow meters).
                out += [d if isinstance(d, str) else d["device"] for d in val if isinstance(d, str) or (isinstance(d, dict) and "device" in d)]
        return out

    def counter_devices(self, process: str) -> list[str]:
        return list(self.plant["processes"][process].get("counters", []))

    def production_quantity(self, process: str) -> str:
        unit = self.plant["processes"][process].get("production_unit")
        if unit == "kWh":
            return "production_capacity"
        if unit == "pcs":
            return "production_count"
        return str(self.plant.get("production_quantity", "production_mass"))


def _ms(t: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(t, dtype=np.float64) * 1000.0).astype(np.int64)


def corrected_cumulative(values: np.ndarray, t: np.ndarray | None = None, quantity: str | None = None) -> np.ndarray:
    """Counted increase of a counter from its first reading, at every reading (NaN where the value is missing).

    The increments are the kernel's (:mod:`carbonedge.energy`), the same as every other figure of
    the pipeline: rollovers at a meter profile's register range (for ``quantity``, or any counter
    register when it is not given) counted exactly, resets never a negative or a spike, readings out
    of order not counted twice. ``t``: reading times in epoch seconds (without them the readings
    are taken as evenly spaced, which only matters for how large a plausible increase may be).
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    out = np.full(v.shape, np.nan)
    if not ok.any():
        return out
    tt = _ms(t[ok]) if t is not None else np.flatnonzero(ok).astype(np.int64) * 60_000
    spec = energy.CounterSpec.for_quantity(quantity) if quantity else energy.CounterSpec(moduli=energy.profile_moduli())
    out[ok] = energy.increments(tt, v[ok], spec).cumulative()
    return out


def bin_counter(t: np.ndarray, values: np.ndarray, edges: np.ndarray, quantity: str | None = None) -> np.ndarray:
    """Consumption of a cumulative counter in each bin between consecutive ``edges`` (epoch seconds)."""
    cum = corrected_cumulative(values, t, quantity)
    ok = np.isfinite(cum)
    if ok.sum() < 2:
        return np.zeros(len(edges) - 1)
    # Outside the readings the counter is flat: np.interp clamps, so no energy is invented there.
    c = np.interp(edges, t[ok], cum[ok])
    return np.diff(c)


def bin_gauge(t: np.ndarray, values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean of a gauge in each bin (optionally weighted); NaN for bins without readings."""
    ok = np.isfinite(values)
    t, v = t[ok], values[ok]
    w = np.ones_like(v) if weights is None else np.nan_to_num(weights[ok])
    idx = np.searchsorted(edges, t, side="right") - 1
    n = len(edges) - 1
    keep = (idx >= 0) & (idx < n)
    sw = np.bincount(idx[keep], weights=w[keep], minlength=n)
    swv = np.bincount(idx[keep], weights=(w * v)[keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sw > 0, swv / sw, np.nan)


def edges_for(start: float, end: float, bin_s: float) -> np.ndarray:
    """Bin edges aligned to multiples of ``bin_s`` in UTC, covering ``[start, end]``."""
    first = math.floor(start / bin_s) * bin_s
    n = max(1, math.ceil((end - first) / bin_s))
    return first + bin_s * np.arange(n + 1, dtype=np.float64)


def from_csv_dir(path: Path, *, start: float | None = None, end: float | None = None) -> PlantData:
    """Load an offline export: ``plant.json`` and one ``<device>.csv`` per device (``ts`` column in ISO 8601 UTC)."""
    path = Path(path)
    pj = path / "plant.json"
    if not pj.exists():
        raise ConfigError(f"{path} has no plant.json: an offline data directory needs the plant model next to the device CSV files")
    plant = json.loads(pj.read_text())
    devices: dict[str, DeviceSeries] = {}
    wanted = {d for p in plant["processes"] for d in _all_devices(plant, p)}
    lo, hi = math.inf, -math.inf
    for dev in sorted(wanted):
        f = path / f"{dev}.csv"
        if not f.exists():
            continue
        with f.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            continue
        t = np.array([parse_time(r["ts"]) for r in rows])
        vals = {q: np.array([_num(r.get(q)) for r in rows]) for q in FIELDS if q in rows[0]}
        sel = np.ones(t.size, dtype=bool)
        if start is not None:
            sel &= t >= start
        if end is not None:
            sel &= t <= end
        devices[dev] = DeviceSeries(dev, t[sel], {q: v[sel] for q, v in vals.items()})
        if sel.any():
            lo, hi = min(lo, float(t[sel][0])), max(hi, float(t[sel][-1]))
    if not devices:
        raise ConfigError(f"{path}: none of the devices in plant.json has a CSV file with readings")
    return PlantData(plant, devices, start if start is not None else lo, end if end is not None else hi, f"CSV export {path}")


def from_influx(reader: InfluxReader, plant: dict[str, Any], start: float, end: float, *, chunk_s: float = 86400.0) -> PlantData:
    """Load the readings of the plant's devices over ``[start, end]`` (epoch seconds) from InfluxDB, a day per query."""
    site = plant["site"]
    cols = ", ".join(f'"{q}"' for q in FIELDS)
    acc: dict[str, dict[str, list[Any]]] = {}
    t0 = start
    while t0 <= end:
        t1 = min(t0 + chunk_s, end)
        op = "<=" if t1 >= end else "<"
        q = (f"SELECT {cols} FROM \"readings\" WHERE site = {quote_literal(site)} AND time >= {int(t0 * 1000)}ms "
             f"AND time {op} {int(t1 * 1000)}ms GROUP BY \"device\"")
        for s in reader.query(q):
            dev = s.get("tags", {}).get("device", "")
            a = acc.setdefault(dev, {c: [] for c in s["columns"]})
            for i, c in enumerate(s["columns"]):
                a.setdefault(c, []).extend(row[i] for row in s["values"])
        if t1 >= end:
            break
        t0 = t1
    devices: dict[str, DeviceSeries] = {}
    for dev, a in acc.items():
        t = np.array(a["time"], dtype=np.float64) / 1000.0
        vals = {q: np.array([np.nan if x is None else float(x) for x in a[q]]) for q in FIELDS if q in a}
        devices[dev] = DeviceSeries(dev, t, vals)
    if not devices:
        raise ConfigError(f"no readings for site {site!r} between {iso(start)} and {iso(end)} in InfluxDB database {reader.database!r}")
    return PlantData(plant, devices, start, end, f"InfluxDB {reader.url} database {reader.database}, site {site}")


def _all_devices(plant: dict[str, Any], process: str) -> list[str]:
    spec = plant["processes"][process]
    return [d if isinstance(d, str) else d["device"] for v in spec.values() if isinstance(v, list) for d in v
            if isinstance(d, str) or (isinstance(d, dict) and "device" in d)]


def _num(x: str | None) -> float:
    if x is None or x == "":
        return math.nan
    try:
        return float(x)
    except ValueError:
        return math.nan
