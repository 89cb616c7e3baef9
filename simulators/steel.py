"""A scrap-based EAF steel plant: EAF -> ladle furnace -> continuous caster -> hot strip mill, plus compressed air.

Calibration (process energy figures, sources in docs/sources.md):

- EAF: 100-150 t heats, 40-60 min tap-to-tap with one extra basket, power 0 while
  charging and tapping, a ramp during bore-down, maximum power with large swings
  while melting, lower and steadier while refining (§1.2 [S4, S5, S7]). Electricity
  lands near 370 kWh/t liquid steel, inside the 350-450 kWh/t central band (§0 [S1, S2, S4]).
  Uncompensated power factor 0.7-0.85 (§1.2 †).
- Ladle furnace: arc reheating on a 10-50 MVA transformer (§1.1 [S19, S20]); the
  kWh/t is not sourced (§1.1 †): we use about 30 kWh/t.
- Caster: small direct electricity use (pumps, drives; §1.1 †), about 25 kWh/t.
- Hot strip mill: pass-by-pass load, a torque peak per pass then idle in piece gaps,
  constant-speed descaling pumps (§1.2 [S25]); about 90 kWh/t of electricity (shape †).
- Compressed air: quasi-constant base load with slow drift (§1.1 [H2], §1.2 †); power
  follows air demand at ~0.11 kWh/Nm3 (†), so a leak shows as a higher base load.
- Oxygen plant (ASU): runs steadily at the meltshop's mean O2 demand (liquid storage
  buffers the EAF's lance peaks) at 0.5 kWh/Nm3, inside the measured 0.46-0.64 (§1.1 [S26-S28]).
- EAF oxygen about 35 Nm3/t and burner gas about 6 Nm3/t while melting (†).
- Reheat furnace gas about 1.4 GJ/t (state of the art ~1.4, range 0.35-5.2; §1.1 [S23]),
  quasi-steady [§1.2]; with the mill's ~90 kWh/t this is ~1.7 GJ/t, inside 1.2-2.4 for
  hot rolling [S22]. Natural gas at 36 MJ/Nm3 LHV (†).
- Cooling-water pumps and fume-extraction/HVAC fans: quasi-constant base loads (§1.2 †).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from carbonedge.simulators._plant import Process


class EAF(Process):
    name = "eaf"
    area = "meltshop"
    production_unit = "t"
    nominal_voltage_ln = 19_050.0  # 33 kV furnace bus, L-N
    base_pf = 0.8
    nominal_kw = 50_000.0
    standby_kw = 400.0
    idle_kw = 1_500.0  # transformer energised, hydraulics and cooling on
    fault_role = "eaf"
    media = ("oxygen", "gas")
    O2_NM3H_MELTING = 6_500.0  # lances and burners while arcing: ~35 Nm3/t over a heat (†)
    GAS_NM3H_MELTING = 1_500.0  # oxy-fuel burners, ~6 Nm3/t (†)

    # (phase, minutes mean, MW mean, relative swing)
    PHASES = (
        ("charge", 4.5, 0.4, 0.0),
        ("bore_down", 4.0, None, 0.10),  # ramp 20 -> 65 MW
        ("melt_1", 15.0, 75.0, 0.10),
        ("charge_2", 3.0, 0.4, 0.0),
        ("melt_2", 12.0, 75.0, 0.10),
        ("refine", 10.0, 45.0, 0.04),
        ("tap", 5.0, 0.4, 0.0),
    )

    def __init__(self, rng: np.random.Generator, tapped: deque[float]) -> None:
        super().__init__(rng)
        self.tapped = tapped
        self.nominal_flows = {"oxygen": 4_500.0, "gas": 1_000.0}
        self._new_heat(0.0)

    def _new_heat(self, t: float) -> None:
        self.heat_t = float(self.rng.uniform(115.0, 125.0))
        self.phase_idx = 0
        self._enter(t)

    def _enter(self, t: float) -> None:
        _, minutes, _, _ = self.PHASES[self.phase_idx]
        self.phase_start = t
        self.phase_len = max(60.0, self.noisy(minutes * 60.0, 0.08))

    @property
    def phase(self) -> str:
        return self.PHASES[self.phase_idx][0]

    def step(self, t: float, dt: float) -> None:
        name, _, mw, swing = self.PHASES[self.phase_idx]
        frac = (t - self.phase_start) / self.phase_len
        if name == "bore_down":
            mw = 20.0 + 45.0 * frac
            swing = 0.10
        assert mw is not None
        p = mw * (1.0 + swing * self.z()) if swing else mw
        self.elec.power_kw = max(p, 0.2) * 1000.0
        arcing = mw > 1.0
        self.running = int(arcing)
        self.elec.power_factor = min(max(0.80 + 0.05 * self.z(), 0.7), 0.88) if arcing else 0.3
        melting = name in ("melt_1", "melt_2", "refine")
        self.flows["oxygen"] = self.O2_NM3H_MELTING if melting else 0.0
        self.flows["gas"] = self.GAS_NM3H_MELTING if name in ("melt_1", "melt_2") else 0.0
        if t + dt - self.phase_start >= self.phase_len:
            if name == "tap":
                self.production += self.heat_t
                self.production_count += 1
                self.tapped.append(self.heat_t)
                self._new_heat(t + dt)
            else:
                self.phase_idx += 1
                self._enter(t + dt)

    def off_shift(self, t: float, dt: float) -> None:
        # Tariff or shift stop: the heat waits (its phase clock is held), furnace on standby.
        super().off_shift(t, dt)
        self.phase_start += dt


class LadleFurnace(Process):
    name = "ladle_furnace"
    area = "meltshop"
    production_unit = "t"
    nominal_voltage_ln = 19_050.0
    base_pf = 0.82
    nominal_kw = 4_200.0
    standby_kw = 300.0
    idle_kw = 300.0

    def __init__(self, rng: np.random.Generator, inbox: deque[float], outbox: deque[float]) -> None:
        super().__init__(rng)
        self.inbox, self.outbox = inbox, outbox
        self.heat: float | None = None
        self.remaining = 0.0

    def step(self, t: float, dt: float) -> None:
        if self.heat is None and self.inbox:
            self.heat = self.inbox.popleft()
            self.treat_len = self.noisy(30 * 60.0, 0.1)
            self.remaining = self.treat_len
        if self.heat is not None:
            # Arcing in bursts: on about 60 % of the treatment time at ~12 MW.
            cycle = (self.treat_len - self.remaining) % 300.0
            arcing = cycle < 180.0
            self.elec.power_kw = (self.noisy(12_000.0, 0.05) if arcing else 350.0)
            self.elec.power_factor = 0.82 if arcing else 0.5
            self.running = 1
            self.remaining -= dt
            if self.remaining <= 0:
                self.production += self.heat
                self.production_count += 1
                self.outbox.append(self.heat)
                self.heat = None
        else:
            self.elec.power_kw = self.noisy(300.0, 0.03)
            self.elec.power_factor = 0.5
            self.running = 0


class Caster(Process):
    name = "caster"
    area = "caster"
    production_unit = "t"
    nominal_voltage_ln = 3_810.0  # 6.6 kV
    base_pf = 0.88
    CAST_MINUTES = 45.0
    nominal_kw = 3_300.0
    standby_kw = 1_400.0
    idle_kw = 1_400.0
    media = ("water",)

    def __init__(self, rng: np.random.Generator, inbox: deque[float], slabs: deque[float]) -> None:
        super().__init__(rng)
        self.inbox, self.slabs = inbox, slabs
        self.heat_left = 0.0
        self.rate = 0.0
        self.slab_acc = 0.0

    def step(self, t: float, dt: float) -> None:
        if self.heat_left <= 0 and self.inbox:
            heat = self.inbox.popleft()
            self.heat_left = heat
            self.rate = heat / (self.noisy(self.CAST_MINUTES, 0.05) * 60.0)
        if self.heat_left > 0:
            cast = min(self.rate * dt, self.heat_left)
            self.heat_left -= cast
            self.production += cast
            self.slab_acc += cast
            while self.slab_acc >= 25.0:
                self.slab_acc -= 25.0
                self.slabs.append(25.0)
            self.elec.power_kw = self.noisy(3_600.0, 0.03)
            self.running = 1
        else:
            self.elec.power_kw = self.noisy(1_400.0, 0.03)  # cooling-water pumps keep running
            self.running = 0
        self.elec.power_factor = 0.88
        # Mould and spray cooling water while casting; mould water only while waiting (†).
        self.flows["water"] = 1_100.0 if self.running else 450.0


class HotStripMill(Process):
    name = "hot_strip_mill"
    area = "rolling"
    production_unit = "t"
    nominal_voltage_ln = 12_700.0  # 22 kV
    base_pf = 0.9
    BASE_KW = 4_000.0  # descaling pumps at constant speed, auxiliaries
    nominal_kw = 11_000.0
    standby_kw = 600.0  # descaling pumps off, auxiliaries only
    idle_kw = BASE_KW  # descaling pumps left at constant speed [S25]
    media = ("gas",)
    GAS_NM3H = 7_000.0  # reheat furnace, ~1.4 GJ/t at the mill's mean rate (see module docstring)

    def __init__(self, rng: np.random.Generator, slabs: deque[float]) -> None:
        super().__init__(rng)
        self.slabs = slabs
        self.piece: float | None = None
        self.piece_t = 0.0
        self.furnace = 1.0
        self.nominal_flows = {"gas": self.GAS_NM3H}

    def _load_kw(self, s: float) -> float:
        # Roughing: 5 passes of 12 s at ~18 MW, 8 s apart; finishing: 90 s with all stands loaded (~45 MW).
        if s < 100.0:
            return 18_000.0 if (s % 20.0) < 12.0 else 0.0
        if s < 120.0:
            return 0.0
        if s < 210.0:
            return 45_000.0
        return 0.0

    def step(self, t: float, dt: float) -> None:
        if self.piece is None and self.slabs:
            self.piece = self.slabs.popleft()
            self.piece_t = 0.0
        extra = 0.0
        if self.piece is not None:
            extra = self._load_kw(self.piece_t) * (1.0 + 0.05 * self.z())
            self.piece_t += dt
            self.running = 1
            if self.piece_t >= 240.0:
                self.production += self.piece
                self.production_count += 1
                self.piece = None
        else:
            self.running = 0
        self.elec.power_kw = self.noisy(self.BASE_KW, 0.02) + max(extra, 0.0)
        self.elec.power_factor = 0.9 if extra > 0 else 0.8
        # Reheat furnace: quasi-steady firing, trimmed slowly with the slab queue (§1.2 †).
        target = 1.0 if self.slabs or self.piece is not None else 0.55
        self.furnace += (target - self.furnace) * min(1.0, dt / 1800.0)
        self.flows["gas"] = self.GAS_NM3H * self.furnace

    def off_shift(self, t: float, dt: float) -> None:
        super().off_shift(t, dt)
        self.furnace += (0.35 - self.furnace) * min(1.0, dt / 1800.0)  # furnace kept hot on low fire
        self.flows["gas"] = self.GAS_NM3H * self.furnace


class CompressedAir(Process):
    name = "compressed_air"
    area = "utilities"
    production_unit = None
    nominal_voltage_ln = 230.0
    base_pf = 0.9
    nominal_kw = 1_800.0
    fault_role = "compressed_air"
    media = ("air",)
    kwh_per_nm3 = 0.11  # screw compressors, ~6.5 kW per Nm3/min (†)

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        self.drift = 0.0
        self.nominal_flows = {"air": self.nominal_kw / self.kwh_per_nm3}

    def step(self, t: float, dt: float) -> None:
        self.drift = 0.9995 * self.drift + 0.02 * self.z()
        demand = self.nominal_flows["air"] * (1.0 + 0.03 * self.drift) * (1.0 + 0.01 * self.z())
        self.flows["air"] = demand
        self.elec.power_kw = demand * self.kwh_per_nm3
        self.elec.power_factor = 0.9
        self.running = 1


class OxygenPlant(Process):
    """Air separation unit: steady at the meltshop's mean O2 demand, liquid storage buffers the peaks."""

    name = "oxygen_plant"
    area = "utilities"
    production_unit = None
    nominal_voltage_ln = 3_810.0
    base_pf = 0.9
    KWH_PER_NM3 = 0.5  # measured ASUs 0.46-0.64 kWh/Nm3 (§1.1 [S26])
    media = ("oxygen",)

    def __init__(self, rng: np.random.Generator, o2_nm3h: float) -> None:
        super().__init__(rng)
        self.o2_nm3h = o2_nm3h
        self.nominal_kw = o2_nm3h * self.KWH_PER_NM3
        self.nominal_flows = {"oxygen": o2_nm3h}

    def step(self, t: float, dt: float) -> None:
        make = self.o2_nm3h * (1.0 + 0.01 * self.z())
        self.flows["oxygen"] = make
        self.elec.power_kw = make * self.KWH_PER_NM3
        self.running = 1


class CoolingWater(Process):
    """Cooling-water pumps for furnaces and caster: fixed-speed pumps, quasi-constant (a VSD target, §8 #7)."""

    name = "cooling_water"
    area = "utilities"
    production_unit = None
    nominal_voltage_ln = 3_810.0
    base_pf = 0.86
    nominal_kw = 1_500.0
    media = ("water",)

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        self.nominal_flows = {"water": 6_000.0}

    def step(self, t: float, dt: float) -> None:
        self.elec.power_kw = self.noisy(self.nominal_kw, 0.01)
        self.flows["water"] = self.nominal_flows["water"] * (1.0 + 0.005 * self.z())
        self.running = 1


class Auxiliaries(Process):
    """Fume-extraction fans (follow the EAF), lighting and HVAC with a day/night swing (†)."""

    name = "auxiliaries"
    area = "utilities"
    production_unit = None
    nominal_voltage_ln = 3_810.0
    base_pf = 0.85
    nominal_kw = 3_000.0

    def __init__(self, rng: np.random.Generator, eaf: Process) -> None:
        super().__init__(rng)
        self.eaf = eaf

    def step(self, t: float, dt: float) -> None:
        fans = 2_200.0 if self.eaf.running else 1_100.0  # damper/speed follow the furnace
        hour = (t % 86400.0) / 3600.0
        lighting = 450.0 if (hour < 7.0 or hour >= 17.0) else 250.0
        self.elec.power_kw = self.noisy(fans + lighting + 200.0, 0.02)
        self.running = 1


def build(rng: np.random.Generator, options: dict[str, Any] | None = None) -> tuple[list[Process], str]:
    """The processes of the steel plant and the name of the process whose output is the plant's output."""
    tapped: deque[float] = deque()
    treated: deque[float] = deque()
    slabs: deque[float] = deque()
    eaf = EAF(rng, tapped)
    procs: list[Process] = [
        eaf,
        LadleFurnace(rng, tapped, treated),
        Caster(rng, treated, slabs),
        HotStripMill(rng, slabs),
        CompressedAir(rng),
        OxygenPlant(rng, 4_500.0),  # the EAF's mean O2 demand, Nm3/h
        CoolingWater(rng),
        Auxiliaries(rng, eaf),
    ]
    # Crude steel (cast tonnes) is the plant's output, as worldsteel reports crude steel.
    return procs, "caster"


#: Which meter model sits on which process (one of each real model we support).
METER_PROFILES = {
    "eaf": "schneider-pm5xxx",
    "ladle_furnace": "siemens-pac3200",
    "caster": "eastron-sdm630",
    "hot_strip_mill": "janitza-umg96rm-e",
    "compressed_air": "abb-b-series",
    "oxygen_plant": "generic-em-u32",
    "cooling_water": "eastron-sdm630",
    "auxiliaries": "abb-b-series",
}
#: Keys a scenario's [plant] table may set for this plant (see docs/simulators.md).
OPTIONS = {"meter_profiles": "meter model per process, e.g. { eaf = \"siemens-pac3200\" }"}
#: Processes that stop between shifts when the scenario has shifts (the meltshop and mill; utilities run on).
SHIFT_PROCESSES = ("eaf", "ladle_furnace", "caster", "hot_strip_mill")
