"""A lithium-ion cell plant: electrode shop, dry rooms, cell assembly, formation and ageing, end-of-line test.

Every process counts its production in kWh of cell capacity (``production_capacity``)
and cells (``production_count``, cell equivalents for the electrode shop) on a PLC
counter; the plant's output is the end-of-line test (cells passed). SEC is kWh of
electricity per kWh of cell capacity (``kWh/kWh_cell``).

Calibration (process energy figures, sources in docs/sources.md):

- Plant total about 35 kWh/kWh_cell: inside 20-65 across sources [B1-B6] and the
  30-45 band the reference recommends for a current gigafactory (§3.1).
- Coating + drying + NMP recovery about 39 % of the total [B7] (13.5 kWh/kWh);
  drying + dry rooms about 52 % [B3] (dry rooms 5 kWh/kWh). Drying is electric
  here (hot-air heaters), so the demo's electricity SEC covers it.
- Every other step below 2 kWh/kWh [B3]: mixing 0.9, calendering 0.8, slitting
  0.35, stacking 1.5, electrolyte filling 0.8, end-of-line test 1.0.
- Formation + ageing about 21 % (20-30 % [B20]; ageing rooms 5.5, cyclers ~1.8 kWh/kWh); formation protocol about 20 h
  (0.05C -> 0.1C -> 0.2C CC-CV, rest, 0.2C discharge, recharge to 50 %; 16-28 h
  [B19]); discharge energy recovered at 50 % when recovery is on (40-60 % [B20]).
- Dry-room dehumidifier regeneration scales with the moisture load (outdoor
  humidity above the dew-point setpoint, door events) and rises as the setpoint
  falls (§3.2 [B12-B15]); −40 °C main room by default [B12, B13].
- Shapes marked † in the reference (web breaks, drive loads, HVAC) are ours.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from carbonedge.simulators._plant import Process

CELL_KWH = 0.25  # one prismatic NMC cell, ~68 Ah x 3.7 V (†)
PLANT_RATE_KWH_H = 120.0  # ~1 GWh/yr of cell capacity at ~95 % availability (†)


class _Line(Process):
    """A continuous line: makes cell capacity at ``rate`` when running; power = base + load share."""

    production_unit = "kWh"
    nominal_voltage_ln = 230.0
    base_pf = 0.9
    #: kWh of electricity per kWh of cell capacity at nominal rate (see module docstring).
    sec = 1.0
    #: Share of power that does not depend on throughput (fans, vacuum, auxiliaries).
    fixed_share = 0.35
    #: Production rate relative to the plant rate (>1 upstream to cover scrap, †).
    rate_factor = 1.0
    #: Mean time between stops and mean stop length (hours); stops at web breaks, changeovers (†).
    mtbf_h = 10.0
    stop_h = 0.3
    fault_role: str | None = None

    def __init__(self, rng: np.random.Generator, options: dict[str, Any]) -> None:
        super().__init__(rng)
        self.rate = PLANT_RATE_KWH_H * self.rate_factor * float(options.get("size", 1.0))
        self.nominal_kw = self.sec * self.rate
        self.standby_kw = self.nominal_kw * self.fixed_share * 0.3
        self.idle_kw = self.nominal_kw * self.fixed_share
        self.stopped_until = -1.0
        self.speed = 1.0
        self.nominal_production_per_h = self.rate

    def _availability(self, t: float, dt: float) -> bool:
        if t < self.stopped_until:
            return False
        if self.u() < dt / (self.mtbf_h * 3600.0):
            self.stopped_until = t + max(60.0, self.rng.exponential(self.stop_h * 3600.0))
            return False
        return True

    def step(self, t: float, dt: float) -> None:
        up = self._availability(t, dt)
        # Line speed wanders a little around nominal (operator trims, material lots).
        self.speed = min(max(self.speed + 0.002 * self.z(), 0.9), 1.05)
        run_kw = self.nominal_kw * (1.0 - self.fixed_share) / 1.0
        if up:
            made = self.rate * self.speed * dt / 3600.0
            self.production += made
            self.production_capacity_kwh += made
            self.production_count += made / CELL_KWH
            self.elec.power_kw = self.idle_kw * self.noisy(1.0, 0.01) + run_kw * self.speed * self.noisy(1.0, 0.03)
            self.running = 1
        else:
            self.elec.power_kw = self.idle_kw * self.noisy(1.0, 0.01)
            self.running = 0
        self.elec.power_factor = 0.9 if up else 0.7


class Mixing(_Line):
    """Batch slurry mixers: high power while dispersing, low while degassing and transferring."""

    name = "mixing"
    area = "electrode"
    sec = 0.9
    rate_factor = 1.04
    BATCH_H = 1.5

    def __init__(self, rng: np.random.Generator, options: dict[str, Any]) -> None:
        super().__init__(rng, options)
        self.batch_t = float(rng.uniform(0, self.BATCH_H * 3600.0))
        self.batch_kwh = self.rate * self.BATCH_H

    def step(self, t: float, dt: float) -> None:
        self.batch_t += dt
        frac = self.batch_t / (self.BATCH_H * 3600.0)
        # Dispersion at ~1.55x mean for the first half of the batch, ~0.45x for the rest: mean 1.0 x nominal.
        level = 1.55 if frac < 0.5 else 0.45
        self.elec.power_kw = self.nominal_kw * level * self.noisy(1.0, 0.04)
        self.running = 1
        if self.batch_t >= self.BATCH_H * 3600.0:
            self.batch_t = 0.0
            self.production += self.batch_kwh
            self.production_capacity_kwh += self.batch_kwh
            self.production_count += self.batch_kwh / CELL_KWH


class CoatingDrying(_Line):
    """Coating line with hot-air dryer and NMP recovery: near-constant kW while running, fans dominate idle."""

    name = "coating_drying"
    area = "electrode"
    sec = 13.5
    fixed_share = 0.30  # exhaust/supply fans and NMP condensers keep running at a web break (†)
    rate_factor = 1.04
    fault_role = "dryer"
    media = ("air", "steam")
    HEATER_SHARE = 0.62  # heater share of the dryer's running load (†)

    def __init__(self, rng: np.random.Generator, options: dict[str, Any]) -> None:
        super().__init__(rng, options)
        self.heater_kw = 0.0
        self.nominal_flows = {"air": 0.02 * self.nominal_kw, "steam": 0.4}

    def step(self, t: float, dt: float) -> None:
        super().step(t, dt)
        running_kw = self.elec.power_kw - self.idle_kw
        # The heater share of the throughput-dependent load; at a web break the heaters drop to holding.
        self.heater_kw = max(running_kw, 0.0) * self.HEATER_SHARE / (1.0 - self.fixed_share) + self.idle_kw * 0.25
        self.flows["air"] = self.nominal_flows["air"] * (1.0 if self.running else 0.3)
        # NMP distillation column steam (on-site recovery, [B16]): about 0.4 t/h while coating.
        self.flows["steam"] = 0.4 * self.speed if self.running else 0.05


class Calendering(_Line):
    name = "calendering"
    area = "electrode"
    sec = 0.8
    rate_factor = 1.03


class Slitting(_Line):
    name = "slitting"
    area = "electrode"
    sec = 0.35
    rate_factor = 1.03


class Stacking(_Line):
    name = "stacking"
    area = "assembly"
    sec = 1.5
    fixed_share = 0.45  # vacuum pumps and many servo axes idle at standstill (†)
    rate_factor = 1.02
    media = ("air",)

    def __init__(self, rng: np.random.Generator, options: dict[str, Any]) -> None:
        super().__init__(rng, options)
        self.nominal_flows = {"air": 0.9 * self.nominal_kw}

    def step(self, t: float, dt: float) -> None:
        super().step(t, dt)
        self.flows["air"] = self.nominal_flows["air"] * (1.0 if self.running else 0.4)


class Filling(_Line):
    name = "filling"
    area = "assembly"
    sec = 0.8
    rate_factor = 1.01


class EndOfLine(_Line):
    """End-of-line test and grading: the plant's output (cells passed)."""

    name = "eol_test"
    area = "finishing"
    sec = 1.0
    rate_factor = 1.0


class DryRoom(Process):
    """Dry rooms (−40 °C main, −50 °C filling): desiccant-wheel regeneration, fans, cooling coils; 24/7."""

    name = "dry_room"
    area = "dry_room"
    production_unit = None
    base_pf = 0.92
    fault_role = "dry_room"
    media = ("water",)
    FAN_KW = 170.0
    #: Regeneration kW per (g/kg of moisture removed from the make-up air), at -40 °C (calibrated to ~5 kWh/kWh_cell total, §3.2 [B3]).
    REGEN_KW_PER_GKG = 48.0

    def __init__(self, rng: np.random.Generator, options: dict[str, Any], climate: Climate) -> None:
        super().__init__(rng)
        self.climate = climate
        self.size = float(options.get("size", 1.0))
        self.dew_point_c = float(options.get("dew_point_c", -40.0))
        self.regen_kw = 0.0
        self.door_until = -1.0
        self.nominal_kw = 600.0 * self.size
        self.nominal_flows = {"water": 45.0 * self.size}

    def step(self, t: float, dt: float) -> None:
        w_out = self.climate.abs_humidity_gkg(t)
        w_set = abs_humidity_at_dew_point(self.dew_point_c)
        # Door events add moisture (people and material through air locks), a few per hour (†).
        if self.u() < dt / 900.0:
            self.door_until = t + 120.0
        door = 1.5 if t < self.door_until else 0.0
        load = max(w_out - w_set, 0.0) + 1.2 + door  # +internal load (people, processes), g/kg equivalent (†)
        # Deeper dew points need hotter regeneration and more of it (§3.2 [B14, B15]; slope †).
        setpoint_factor = 1.0 + 0.035 * (-40.0 - self.dew_point_c)
        self.regen_kw = self.REGEN_KW_PER_GKG * load * setpoint_factor * self.size
        cooling_kw = max(self.climate.temperature_c(t) - 12.0, 0.0) * 9.0 * self.size
        self.elec.power_kw = self.FAN_KW * self.size * self.noisy(1.0, 0.01) + self.regen_kw + cooling_kw
        self.running = 1
        self.flows["water"] = self.nominal_flows["water"] * (0.7 + 0.3 * min(cooling_kw / (80.0 * self.size + 1e-9), 1.5))


class Formation(Process):
    """Formation racks cycling cells on a protocol; vectorised over racks (numpy), staggered for steady output.

    Each rack holds ``cells_per_rack`` cells. AC power per rack = DC charge power /
    converter efficiency + auxiliaries − recovered discharge power (when recovery
    is on). With one hall meter (default) the meter sees the hall's net power:
    recovered energy feeds the racks that are charging. With ``rack_meters`` each
    rack cabinet has its own meter: a recovering rack exports, and the process
    energy is the sum of the racks' imports.
    """

    name = "formation"
    area = "formation"
    production_unit = "kWh"
    base_pf = 0.95
    fault_role = "formation"
    # (step, hours, DC power as C-rate, sign): +1 charge, -1 discharge, 0 rest/handling
    PROTOCOL = (
        ("load", 1.0, 0.0, 0),
        ("precharge_0.05C", 3.0, 0.05, 1),
        ("charge_0.1C", 4.0, 0.10, 1),
        ("charge_0.2C_cccv", 2.5, 0.18, 1),
        ("rest", 2.0, 0.0, 0),
        ("discharge_0.2C", 5.0, 0.20, -1),
        ("recharge_50pct", 2.5, 0.20, 1),
        ("unload", 1.0, 0.0, 0),
    )
    ETA_CHARGE = 0.88  # AC->DC, converter + cabling (†)
    ETA_RECOVERY = 0.50  # share of discharge energy returned to the grid (40-60 % [B20])
    AUX_KW = 1.6  # per rack: contacting, fans, controls (†)

    def __init__(self, rng: np.random.Generator, options: dict[str, Any]) -> None:
        super().__init__(rng)
        size = float(options.get("size", 1.0))
        self.cells_per_rack = int(options.get("cells_per_rack", 256))
        cycle_h = sum(p[1] for p in self.PROTOCOL)
        rack_kwh = self.cells_per_rack * CELL_KWH
        self.n_racks = int(options.get("formation_racks", max(1, round(PLANT_RATE_KWH_H * size * 1.01 * cycle_h / rack_kwh))))
        self.recovery = bool(options.get("energy_recovery", True))
        self.per_rack = bool(options.get("rack_meters", False))
        self._hall_export_kwh = 0.0
        self.rack_kwh = rack_kwh
        self.cycle_s = cycle_h * 3600.0
        self.bounds = np.cumsum([0.0] + [p[1] * 3600.0 for p in self.PROTOCOL])
        self.c_rate = np.array([p[2] for p in self.PROTOCOL])
        self.sign = np.array([p[3] for p in self.PROTOCOL])
        # Per protocol step: DC kW per rack, AC-per-DC factor while charging, recovered-per-DC while discharging.
        self.dc_by_step = self.c_rate * rack_kwh
        self.charge_by_step = np.where(self.sign > 0, 1.0 / self.ETA_CHARGE, 0.0)
        self.recover_by_step = np.where(self.sign < 0, self.ETA_RECOVERY if bool(options.get("energy_recovery", True)) else 0.0, 0.0)
        self.active_by_step = self.sign != 0
        # Racks start spread evenly over the cycle (steady state), with a little jitter.
        self.age = (np.arange(self.n_racks) / self.n_racks) * self.cycle_s + rng.uniform(0, 60, self.n_racks)
        self.rack_net_kw = np.zeros(self.n_racks)
        self.rack_extra_kw = np.zeros(self.n_racks)
        self.rack_import_kwh = np.zeros(self.n_racks)
        self.rack_export_kwh = np.zeros(self.n_racks)
        self.recovered_kw = np.zeros(self.n_racks)
        self.rack_power_kw = np.zeros(self.n_racks)
        self.nominal_kw = self._nominal_kw()
        self.nominal_production_per_h = self.n_racks * rack_kwh / cycle_h

    def _nominal_kw(self) -> float:
        e = 0.0
        for _, h, c, s in self.PROTOCOL:
            dc = c * self.rack_kwh * h
            e += dc / self.ETA_CHARGE if s > 0 else (-dc * self.ETA_RECOVERY if s < 0 and self.recovery else 0.0)
        return self.n_racks * (e / (self.cycle_s / 3600.0) + self.AUX_KW)

    def step(self, t: float, dt: float) -> None:
        idx = np.searchsorted(self.bounds, self.age, side="right") - 1
        dc_kw = self.dc_by_step[idx] * (1.0 + 0.01 * self.rng.standard_normal(self.n_racks))
        self.recovered_kw = dc_kw * self.recover_by_step[idx]
        self.rack_net_kw = dc_kw * self.charge_by_step[idx] + self.AUX_KW - self.recovered_kw
        self.rack_extra_kw.fill(0.0)
        self.age += dt
        if self.age.max() >= self.cycle_s:
            done = self.age >= self.cycle_s
            n = int(done.sum())
            self.age[done] -= self.cycle_s
            made = n * self.rack_kwh
            self.production += made
            self.production_capacity_kwh += made
            self.production_count += n * self.cells_per_rack
        self.running = int(bool(self.active_by_step[idx].any()))

    def channel_fault_kw(self, rack: int, channels: float) -> float:
        """Extra net power of ``channels`` channels of ``rack`` that burn instead of recovering their discharge."""
        rack %= self.n_racks
        lost = float(self.recovered_kw[rack]) * channels / self.cells_per_rack
        self.rack_extra_kw[rack] += lost
        return lost

    def advance(self, t: float, dt: float) -> None:
        # Formation runs around the clock; faults add net power to their rack. A rack's meter counts
        # import and export separately, and the process energy is the racks' import.
        self.on_shift = True
        self.step(t, dt)
        for f in self.faults:
            f.apply(self, t, dt, 0.0)
        net = self.rack_net_kw + self.rack_extra_kw
        h = dt / 3600.0
        if self.per_rack:
            # Each rack cabinet is metered on its own: a recovering rack exports, others import.
            self.rack_power_kw = np.maximum(net, 0.0)
            self.rack_import_kwh += self.rack_power_kw * h
            self.rack_export_kwh += np.maximum(-net, 0.0) * h
            self.elec.power_kw = float(self.rack_power_kw.sum())
        else:
            # One hall infeed meter: recovered energy feeds the racks that are charging (net of the hall).
            total = float(net.sum())
            self.elec.power_kw = max(total, 0.0)
            self._hall_export_kwh += max(-total, 0.0) * h
        self.energy_kwh += self.elec.power_kw * h

    @property
    def export_kwh(self) -> float:
        return float(self.rack_export_kwh.sum()) if self.per_rack else self._hall_export_kwh


class Ageing(Process):
    """Ageing rooms (cells held at elevated temperature for days) and formation-hall HVAC, 24/7."""

    name = "ageing"
    area = "formation"
    production_unit = None
    base_pf = 0.9

    def __init__(self, rng: np.random.Generator, options: dict[str, Any], climate: Climate) -> None:
        super().__init__(rng)
        self.size = float(options.get("size", 1.0))
        self.climate = climate
        self.nominal_kw = 5.5 * PLANT_RATE_KWH_H * self.size

    def step(self, t: float, dt: float) -> None:
        # Heating/cooling load swings with outdoor temperature around the mean (†).
        dev = (self.climate.temperature_c(t) - 12.0) * 0.012
        self.elec.power_kw = self.nominal_kw * (1.0 + dev) * self.noisy(1.0, 0.01)
        self.running = 1


class Utilities(Process):
    """Process chillers and hall HVAC, 24/7 with an outdoor-temperature swing (†)."""

    name = "utilities"
    area = "utilities"
    production_unit = None
    base_pf = 0.88
    media = ("water",)

    def __init__(self, rng: np.random.Generator, options: dict[str, Any], climate: Climate) -> None:
        super().__init__(rng)
        self.size = float(options.get("size", 1.0))
        self.climate = climate
        self.nominal_kw = 2.5 * PLANT_RATE_KWH_H * self.size
        self.nominal_flows = {"water": 120.0 * self.size}

    def step(self, t: float, dt: float) -> None:
        dev = (self.climate.temperature_c(t) - 12.0) * 0.02
        self.elec.power_kw = self.nominal_kw * (1.0 + dev) * self.noisy(1.0, 0.015)
        self.running = 1
        self.flows["water"] = self.nominal_flows["water"] * (1.0 + dev)


class CompressedAir(Process):
    """Compressors: power follows air demand (stacking, coating) plus a base; leaks add to it."""

    name = "compressed_air"
    area = "utilities"
    production_unit = None
    base_pf = 0.9
    fault_role = "compressed_air"
    media = ("air",)
    kwh_per_nm3 = 0.11  # specific power of a modern screw compressor, ~6.5 kW per Nm3/min (†)

    def __init__(self, rng: np.random.Generator, options: dict[str, Any], consumers: list[Process]) -> None:
        super().__init__(rng)
        self.size = float(options.get("size", 1.0))
        self.consumers = consumers
        self.base_nm3h = 900.0 * self.size  # blow-offs, instruments, background leaks at 5-10 % (§8 [H1])
        self.nominal_kw = 1.2 * PLANT_RATE_KWH_H * self.size
        self.nominal_flows = {"air": self.nominal_kw / self.kwh_per_nm3}
        self.standby_kw = 0.0

    def step(self, t: float, dt: float) -> None:
        demand = self.base_nm3h + sum(c.flows.get("air", 0.0) for c in self.consumers)
        demand *= self.noisy(1.0, 0.01)
        self.flows["air"] = demand
        # Unload/idle losses of the lead compressor add a fixed 15 % of rated power (†).
        self.elec.power_kw = demand * self.kwh_per_nm3 + 0.15 * self.nominal_kw
        self.running = 1


class Climate:
    """Outdoor temperature and absolute humidity: seasonal mean, daily cycle and a slow weather drift."""

    def __init__(self, rng: np.random.Generator, options: dict[str, Any]) -> None:
        c = dict(options.get("climate", {}))
        self.t_mean = float(c.get("temperature_c", 12.0))
        self.t_swing = float(c.get("daily_swing_c", 8.0))
        self.w_mean = float(c.get("abs_humidity_gkg", 7.0))
        # Weather: a smooth random walk sampled hourly (its own stream, so it never shifts the plant's).
        hours = int(c.get("horizon_h", 24 * 400))
        steps = rng.standard_normal((hours + 2, 2))
        drift = np.zeros((hours + 2, 2))
        for i in range(1, hours + 2):
            drift[i] = 0.97 * drift[i - 1] + 0.25 * steps[i]
        self.drift = drift
        self.t0: float | None = None
        self._last_t = float("nan")
        self._last = (0.0, 0.0)

    def _weather(self, t: float) -> tuple[float, float]:
        if t == self._last_t:
            return self._last
        self._last_t = t
        self._last = self._weather_at(t)
        return self._last

    def _weather_at(self, t: float) -> tuple[float, float]:
        if self.t0 is None:
            self.t0 = t
        h = (t - self.t0) / 3600.0
        i = min(int(h), len(self.drift) - 2)
        f = h - i
        d = self.drift[i] * (1 - f) + self.drift[i + 1] * f
        return float(d[0]), float(d[1])

    def temperature_c(self, t: float) -> float:
        hour = (t % 86400.0) / 3600.0
        return self.t_mean + self.t_swing / 2 * math.sin((hour - 9.0) / 24.0 * 2 * math.pi) + 2.0 * self._weather(t)[0]

    def abs_humidity_gkg(self, t: float) -> float:
        return max(self.w_mean * (1.0 + 0.15 * self._weather(t)[1]), 0.5)


def abs_humidity_at_dew_point(dp_c: float, pressure_hpa: float = 1013.25) -> float:
    """Absolute humidity (g water per kg dry air) of air with dew point ``dp_c`` (Magnus over ice below 0 °C)."""
    if dp_c < 0:
        e = 6.112 * math.exp(22.46 * dp_c / (272.62 + dp_c))
    else:
        e = 6.112 * math.exp(17.62 * dp_c / (243.12 + dp_c))
    return 622.0 * e / (pressure_hpa - e)


def build(rng: np.random.Generator, options: dict[str, Any] | None = None) -> tuple[list[Process], str]:
    """The processes of the cell plant and the name of the output process (end-of-line test)."""
    options = options or {}
    climate = Climate(np.random.default_rng(rng.integers(2**63)), options)
    coating = CoatingDrying(rng, options)
    stacking = Stacking(rng, options)
    procs: list[Process] = [
        Mixing(rng, options),
        coating,
        Calendering(rng, options),
        Slitting(rng, options),
        DryRoom(rng, options, climate),
        stacking,
        Filling(rng, options),
        Formation(rng, options),
        Ageing(rng, options, climate),
        EndOfLine(rng, options),
        CompressedAir(rng, options, [coating, stacking]),
        Utilities(rng, options, climate),
    ]
    return procs, "eol_test"


#: Which meter model sits on which process.
METER_PROFILES = {
    "mixing": "eastron-sdm630",
    "coating_drying": "schneider-pm5xxx",
    "calendering": "janitza-umg96rm-e",
    "slitting": "eastron-sdm630",
    "dry_room": "siemens-pac3200",
    "stacking": "abb-b-series",
    "filling": "eastron-sdm630",
    "formation": "siemens-pac3200",
    "ageing": "janitza-umg96rm-e",
    "eol_test": "eastron-sdm630",
    "compressed_air": "abb-b-series",
    "utilities": "generic-em-u32",
}
#: Meter model of each formation rack when racks are metered one by one (``rack_meters = true``).
RACK_METER_PROFILE = "eastron-sdm630"
#: Keys a scenario's [plant] table may set for this plant (see docs/simulators.md).
OPTIONS = {
    "size": "plant size relative to ~1 GWh/yr of cell capacity (default 1.0)",
    "dew_point_c": "main dry-room dew-point setpoint, degC (default -40)",
    "energy_recovery": "formation returns discharge energy to the grid (default true)",
    "climate": "outdoor climate { temperature_c, daily_swing_c, abs_humidity_gkg, horizon_h }",
    "cells_per_rack": "cells per formation rack (default 256)",
    "formation_racks": "number of formation racks (default: enough for the plant rate)",
    "rack_meters": "one power meter per formation rack instead of one hall meter (default false)",
    "meter_profiles": "meter model per process, e.g. { mixing = \"siemens-pac3200\" }",
}
CLIMATE_KEYS = ("temperature_c", "daily_swing_c", "abs_humidity_gkg", "horizon_h")
#: Electrode-shop and assembly processes follow the shift calendar; dry rooms, formation, ageing and utilities run 24/7.
SHIFT_PROCESSES = ("mixing", "coating_drying", "calendering", "slitting", "stacking", "filling", "eol_test")
