"""Building blocks of a simulated plant: processes that draw power and make product, and their meters.

Time advances in fixed steps (``dt``, 1 s of plant time by default) from the
scenario start, so a plant's state at plant time *t* depends only on the seed and
*t*, never on how fast the wall clock ran. Each process integrates its own true
energy and production in float64: that is the ground truth the pipeline's figures
are checked against. Meters serve that truth through their register maps, plus a
counter offset (real meters are never installed at zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from carbonedge import profiles


@dataclass
class ElectricalState:
    """Instantaneous electrical quantities of one metered feeder."""

    power_kw: float = 0.0
    power_factor: float = 0.95
    voltage_ln: float = 230.0
    frequency: float = 50.0


class Process:
    """A plant process: override :meth:`step` to set ``power_kw`` and add production.

    Attributes set by subclasses: ``name``, ``area``, ``production_unit`` (``None``
    for utilities without their own production counter).
    """

    name: str = "process"
    area: str = "plant"
    production_unit: str | None = None  # "t", "pcs" or "kWh"
    nominal_voltage_ln: float = 230.0
    base_pf: float = 0.95

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.elec = ElectricalState(voltage_ln=self.nominal_voltage_ln, power_factor=self.base_pf)
        self.energy_kwh = 0.0  # true, since scenario start
        self.production = 0.0  # true, since scenario start, in production_unit
        self.production_count = 0.0
        self.production_capacity_kwh = 0.0
        self.running = 0

    def step(self, t: float, dt: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def advance(self, t: float, dt: float) -> None:
        self.step(t, dt)
        self.energy_kwh += max(self.elec.power_kw, 0.0) * dt / 3600.0


@dataclass
class Meter:
    """A power meter on one process, served with a real meter model's register map."""

    device: str
    process: Process
    profile: profiles.Profile
    rng: np.random.Generator
    energy_offset_kwh: float = 0.0
    demand_window_s: float = 900.0
    _demand_acc: float = 0.0
    _demand_t: float = 0.0
    demand_kw: float = 0.0

    def tick(self, dt: float) -> None:
        # Block demand: average power over the last completed 15-min window (domain-reference §7 [D17]).
        self._demand_acc += self.process.elec.power_kw * dt
        self._demand_t += dt
        if self._demand_t >= self.demand_window_s:
            self.demand_kw = self._demand_acc / self._demand_t
            self._demand_acc = self._demand_t = 0.0

    def values(self) -> dict[str, float]:
        e = self.process.elec
        p = max(e.power_kw, 0.0)
        pf = min(max(e.power_factor, 0.05), 1.0)
        s = p / pf if p > 0 else 0.0
        q = math.sqrt(max(s * s - p * p, 0.0))
        v = e.voltage_ln
        i = s * 1000.0 / (3.0 * v) if v > 0 else 0.0
        energy = self.energy_offset_kwh + self.process.energy_kwh
        out = {
            "voltage_l1_n": v, "voltage_l2_n": v * 1.002, "voltage_l3_n": v * 0.998,
            "current_l1": i, "current_l2": i * 1.01, "current_l3": i * 0.99,
            "active_power_l1": p / 3, "active_power_l2": p / 3, "active_power_l3": p / 3,
            "active_power": p, "reactive_power": q, "apparent_power": s, "power_factor": pf,
            "frequency": e.frequency, "demand_active_power": self.demand_kw,
            "active_energy_import": energy, "active_energy_export": 0.0,
            # Two-tariff meters (PAC3200): everything on T1; T2 holds its installation value.
            "active_energy_import_t1": energy, "active_energy_import_t2": 0.0,
            "active_energy_export_t1": 0.0, "active_energy_export_t2": 0.0,
        }
        return out


@dataclass
class LineCounter:
    """A PLC counter block for one production line (one Modbus unit id)."""

    device: str
    process: Process
    unit_id: int
    profile: profiles.Profile = field(default_factory=lambda: profiles.PLC_LINE_COUNTER)

    def values(self) -> dict[str, float]:
        p = self.process
        mass = p.production if p.production_unit == "t" else 0.0
        return {
            "production_mass": mass,
            "production_count": p.production_count,
            "production_capacity": p.production_capacity_kwh,
            "running": float(p.running),
        }


def noisy(rng: np.random.Generator, mean: float, rel_sd: float) -> float:
    return float(mean * (1.0 + rel_sd * rng.standard_normal()))
