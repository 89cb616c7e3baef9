"""Building blocks of a simulated plant: processes that draw power and make product, and their devices.

Time advances in fixed steps (``dt``, 1 s of plant time by default) from the
scenario start, so a plant's state at plant time *t* depends only on the seed and
*t*, never on how fast the wall clock ran. Each process integrates its own true
energy, media and production in float64: that is the ground truth the pipeline's
figures are checked against. Devices (power meters, flow meters, PLC counters)
serve that truth through their register maps, plus a counter offset (real meters
are never installed at zero).

Faults enter at two places and never touch a process's random stream, so the
fault-free counterfactual is the same run without the fault:

- *process faults* add power on top of the process's own demand
  (:meth:`Process.advance` integrates that extra power exactly: ``waste_kwh``);
- *device faults* change what a device serves (frozen values, counter resets and
  rollovers, no answer at all), never the process itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from carbonedge import profiles
from carbonedge.plant import MEDIA  # the one list of media: (volume counter, flow gauge)


@dataclass
class ElectricalState:
    """Instantaneous electrical quantities of one metered feeder."""

    power_kw: float = 0.0
    power_factor: float = 0.95
    voltage_ln: float = 230.0
    frequency: float = 50.0


class Calendar:
    """Production shifts: when shift-following processes run, in plant-local time.

    ``windows`` are strings like ``"Mon-Fri 06:00-22:00"``, ``"Sat 06:00-14:00"``
    or ``"24/7"``. A window may cross midnight (``"Sun 22:00-06:00"`` runs into
    Monday). Lookups are a table index, so a million calls cost nothing.
    """

    DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

    def __init__(self, windows: list[str] | str = "24/7", utc_offset_h: float = 0.0) -> None:
        if isinstance(windows, str):
            windows = [windows]
        self.windows = list(windows)
        self.utc_offset_s = utc_offset_h * 3600.0
        week = np.zeros(7 * 1440, dtype=bool)
        for w in self.windows:
            week |= self._parse(w)
        self.week = week
        self.always = bool(week.all())

    @classmethod
    def _parse(cls, text: str) -> np.ndarray:
        mask = np.zeros(7 * 1440, dtype=bool)
        t = text.strip().lower()
        if t in ("24/7", "always"):
            mask[:] = True
            return mask
        try:
            days, hours = t.split()
            if "-" in days:
                d0, d1 = (cls.DAYS.index(d[:3]) for d in days.split("-"))
                day_list = [d % 7 for d in range(d0, d1 + (7 if d1 < d0 else 0) + 1)]
            else:
                day_list = [cls.DAYS.index(days[:3])]
            h0, h1 = hours.split("-")
            m0 = int(h0[:2]) * 60 + int(h0[3:5])
            m1 = int(h1[:2]) * 60 + int(h1[3:5])
        except (ValueError, IndexError):
            raise ValueError(f"shift window {text!r}: write it like 'Mon-Fri 06:00-22:00', 'Sat 06:00-14:00' or '24/7'") from None
        length = (m1 - m0) % 1440 or 1440
        for d in day_list:
            start = d * 1440 + m0
            idx = (np.arange(start, start + length)) % (7 * 1440)
            mask[idx] = True
        return mask

    def on_shift(self, t: float) -> bool:
        if self.always:
            return True
        # 1970-01-01 was a Thursday: shift by three days so index 0 is Monday 00:00.
        minute = int((t + self.utc_offset_s) // 60.0 + 3 * 1440) % (7 * 1440)
        return bool(self.week[minute])


class Process:
    """A plant process: override :meth:`step` to set ``power_kw``, media flows and production.

    Attributes set by subclasses: ``name``, ``area``, ``production_unit`` (``None``
    for utilities without their own production counter), ``nominal_kw`` (typical
    mean demand, used to place counter rollovers near a requested time) and
    ``standby_kw`` (demand while stopped off-shift; ``idle_kw`` is what it draws
    when it is left running idle instead).
    """

    name: str = "process"
    area: str = "plant"
    production_unit: str | None = None  # "t", "pcs" or "kWh"
    nominal_voltage_ln: float = 230.0
    base_pf: float = 0.95
    nominal_kw: float = 100.0
    standby_kw: float = 0.0
    idle_kw: float = 0.0
    #: Media this process consumes, each served by a flow meter (see MEDIA).
    media: tuple[str, ...] = ()

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.elec = ElectricalState(voltage_ln=self.nominal_voltage_ln, power_factor=self.base_pf)
        self.energy_kwh = 0.0  # true, since scenario start
        self.production = 0.0  # true, since scenario start, in production_unit
        self.production_count = 0.0
        self.production_capacity_kwh = 0.0
        self.running = 0
        self.flows: dict[str, float] = {m: 0.0 for m in self.media}  # canonical unit per hour
        self.media_total: dict[str, float] = {m: 0.0 for m in self.media}
        self.calendar: Calendar | None = None  # None: runs around the clock
        self.faults: list[Any] = []  # process faults (simulators.faults.ProcessFault)
        self.on_shift = True
        self._z: list[float] = []
        self._zi = 0
        self._u: list[float] = []
        self._ui = 0

    # Random draws come in blocks: one numpy call per 4096 draws instead of one per step.
    def z(self) -> float:
        """Next standard-normal draw of this process's stream."""
        if self._zi >= len(self._z):
            self._z = self.rng.standard_normal(4096).tolist()
            self._zi = 0
        self._zi += 1
        return self._z[self._zi - 1]

    def u(self) -> float:
        """Next uniform [0, 1) draw of this process's stream."""
        if self._ui >= len(self._u):
            self._u = self.rng.random(4096).tolist()
            self._ui = 0
        self._ui += 1
        return self._u[self._ui - 1]

    def noisy(self, mean: float, rel_sd: float) -> float:
        return mean * (1.0 + rel_sd * self.z())

    def step(self, t: float, dt: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def off_shift(self, t: float, dt: float) -> None:
        """Stopped between shifts: standby load, no production, state held."""
        self.elec.power_kw = self.standby_kw * (1.0 + 0.02 * self.z()) if self.standby_kw else 0.0
        self.elec.power_factor = 0.6
        self.running = 0
        for m in self.flows:
            self.flows[m] = 0.0

    def advance(self, t: float, dt: float) -> None:
        self.on_shift = self.calendar is None or self.calendar.on_shift(t)
        if self.on_shift:
            self.step(t, dt)
        else:
            self.off_shift(t, dt)
        base = max(self.elec.power_kw, 0.0)
        extra = 0.0
        for f in self.faults:
            extra += f.apply(self, t, dt, base)
        self.elec.power_kw = base + extra
        self.energy_kwh += (base + extra) * dt / 3600.0
        for m, rate in self.flows.items():
            self.media_total[m] += max(rate, 0.0) * dt / 3600.0


class Device:
    """Something a gateway polls: serves a dict of point values through a profile.

    Device faults live here: frozen values (stuck meter), counter shifts (reset,
    rollover) and no answer (communication loss).
    """

    device: str
    profile: profiles.Profile
    process: Process
    unit_id: int = 1

    def _init_device(self) -> None:
        self.counter_shift: dict[str, float] = {}
        self.frozen: dict[str, float] | None = None
        self.silent = False  # communication lost: the device does not answer
        self.silent_mode = "timeout"
        self.device_faults: list[Any] = []

    def live_values(self) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def counter_keys(self) -> list[str]:
        """Point names that are cumulative counters (shifted together by a reset or a rollover)."""
        return [p.name for p in self.profile.points if _is_counter_point(p)]

    def values(self) -> dict[str, float]:
        if self.frozen is not None:
            return self.frozen
        v = self.live_values()
        for k, s in self.counter_shift.items():
            if k in v:
                v[k] += s
        return v

    def update(self, t: float, dt: float) -> None:
        for f in self.device_faults:
            f.update(self, t, dt)


def _is_counter_point(p: profiles.PointSpec) -> bool:
    from carbonedge import quantities

    if p.name.startswith(("active_energy_import", "active_energy_export")):
        return True
    q = p.quantity_name
    return q is not None and q in quantities.QUANTITIES and quantities.get(q).kind == "counter"


class Meter(Device):
    """A power meter on one feeder, served with a real meter model's register map.

    ``power_fn``/``energy_fn``/``export_fn`` override where the feeder's power and
    energy come from (e.g. one meter per formation rack); by default the meter
    measures its whole process. ``demand_kw`` is set by the simulation at each
    15-minute boundary.
    """

    def __init__(self, device: str, process: Process, profile: profiles.Profile, rng: np.random.Generator,
                 energy_offset_kwh: float = 0.0, power_fn: Callable[[], float] | None = None,
                 energy_fn: Callable[[], float] | None = None, export_fn: Callable[[], float] | None = None,
                 unit_id: int = 1) -> None:
        self.device, self.process, self.profile, self.rng = device, process, profile, rng
        self.energy_offset_kwh = energy_offset_kwh
        self.power_fn, self.energy_fn, self.export_fn = power_fn, energy_fn, export_fn
        self.unit_id = unit_id
        self.demand_kw = 0.0
        self.share = 1.0
        self._init_device()

    def power_kw(self) -> float:
        return self.power_fn() if self.power_fn is not None else self.process.elec.power_kw

    def true_energy_kwh(self) -> float:
        return self.energy_fn() if self.energy_fn is not None else self.process.energy_kwh

    def live_values(self) -> dict[str, float]:
        e = self.process.elec
        p = max(self.power_kw(), 0.0)
        pf = min(max(e.power_factor, 0.05), 1.0)
        s = p / pf if p > 0 else 0.0
        q = math.sqrt(max(s * s - p * p, 0.0))
        v = e.voltage_ln
        i = s * 1000.0 / (3.0 * v) if v > 0 else 0.0
        energy = self.energy_offset_kwh + self.true_energy_kwh()
        export = self.export_fn() if self.export_fn is not None else 0.0
        return {
            "voltage_l1_n": v, "voltage_l2_n": v * 1.002, "voltage_l3_n": v * 0.998,
            "current_l1": i, "current_l2": i * 1.01, "current_l3": i * 0.99,
            "active_power_l1": p / 3, "active_power_l2": p / 3, "active_power_l3": p / 3,
            "active_power": p, "reactive_power": q, "apparent_power": s, "power_factor": pf,
            "frequency": e.frequency, "demand_active_power": self.demand_kw,
            "active_energy_import": energy, "active_energy_export": export,
            # Two-tariff meters (PAC3200): everything on T1; T2 holds its installation value.
            "active_energy_import_t1": energy, "active_energy_import_t2": 0.0,
            "active_energy_export_t1": export, "active_energy_export_t2": 0.0,
        }


class FlowMeter(Device):
    """A flow meter (gas, oxygen, steam, water, compressed air) on one process: flow and totalizer."""

    def __init__(self, device: str, process: Process, medium: str, profile: profiles.Profile, total_offset: float = 0.0) -> None:
        self.device, self.process, self.medium, self.profile = device, process, medium, profile
        self.total_offset = total_offset
        self.volume_q, self.flow_q = MEDIA[medium]
        self._init_device()

    def live_values(self) -> dict[str, float]:
        p = self.process
        return {self.flow_q: max(p.flows.get(self.medium, 0.0), 0.0), self.volume_q: self.total_offset + p.media_total[self.medium]}


class LineCounter(Device):
    """A PLC counter block for one production line (one Modbus unit id)."""

    def __init__(self, device: str, process: Process, unit_id: int, profile: profiles.Profile | None = None) -> None:
        self.device, self.process, self.unit_id = device, process, unit_id
        self.profile = profile or profiles.PLC_LINE_COUNTER
        self._init_device()

    def live_values(self) -> dict[str, float]:
        p = self.process
        mass = p.production if p.production_unit == "t" else 0.0
        return {
            "production_mass": mass,
            "production_count": p.production_count,
            "production_capacity": p.production_capacity_kwh,
            "running": float(p.running),
        }



# --------------------------------------------------------------------------- outdoor conditions

#: Magnus formula over water, coefficients of WMO-No. 8 (2018 edition), Vol. I, Annex 4.B:
#: e_s(T) = 6.112 hPa · exp(17.62 T / (243.12 °C + T)), for −45 … 60 °C.
MAGNUS_HPA, MAGNUS_B, MAGNUS_C = 6.112, 17.62, 243.12
#: Ratio of the molar masses of water vapour and dry air, in g/kg (0.622 kg/kg).
EPSILON_GKG = 622.0


def vapour_pressure_hpa(abs_humidity_gkg: float, pressure_hpa: float = 1013.25) -> float:
    """Partial pressure of water vapour of moist air with mixing ratio ``abs_humidity_gkg`` (g per kg dry air)."""
    return abs_humidity_gkg * pressure_hpa / (EPSILON_GKG + abs_humidity_gkg)


def saturation_vapour_pressure_hpa(temp_c: float) -> float:
    """Saturation vapour pressure over water at ``temp_c`` (Magnus, WMO-No. 8 Annex 4.B)."""
    return MAGNUS_HPA * math.exp(MAGNUS_B * temp_c / (MAGNUS_C + temp_c))


def relative_humidity_pct(temp_c: float, abs_humidity_gkg: float, pressure_hpa: float = 1013.25) -> float:
    """Relative humidity over water (%) of air at ``temp_c`` holding ``abs_humidity_gkg``; 100 % at most (fog)."""
    return min(100.0 * vapour_pressure_hpa(abs_humidity_gkg, pressure_hpa) / saturation_vapour_pressure_hpa(temp_c), 100.0)


def dew_point_c(abs_humidity_gkg: float, pressure_hpa: float = 1013.25) -> float:
    """Dew point over water (°C) of air holding ``abs_humidity_gkg``: the Magnus formula solved for T."""
    g = math.log(vapour_pressure_hpa(abs_humidity_gkg, pressure_hpa) / MAGNUS_HPA)
    return MAGNUS_C * g / (MAGNUS_B - g)


class _Outdoors:
    """Where a weather station sits, for the device tags: the site, not a process."""

    name = "weather"
    area = "site"


class WeatherStation(Device):
    """An outdoor temperature/humidity transmitter on the gateway, serving the plant's climate.

    ``climate`` has ``temperature_c(t)`` and ``abs_humidity_gkg(t)``; the station serves temperature,
    relative humidity and dew point (what transmitters give) at the plant time of the last step.
    It draws no random numbers, so adding it shifts none of the plant's streams.
    """

    def __init__(self, device: str, climate: Any, t: float, profile: profiles.Profile | None = None, unit_id: int = 1) -> None:
        self.device, self.climate, self.unit_id = device, climate, unit_id
        self.profile = profile or profiles.GENERIC_WEATHER_TH
        self.process: Any = _Outdoors()
        self.t = t  # plant time of the conditions served; the simulation moves it along
        self._init_device()

    def truth(self) -> tuple[float, float]:
        """(outdoor temperature °C, absolute humidity g/kg) at plant time ``t``."""
        return self.climate.temperature_c(self.t), self.climate.abs_humidity_gkg(self.t)

    def live_values(self) -> dict[str, float]:
        temp, w = self.truth()
        return {"outdoor_temperature": temp, "outdoor_humidity": relative_humidity_pct(temp, w), "outdoor_dew_point": dew_point_c(w)}
