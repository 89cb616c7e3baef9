"""A scrap-based EAF steel plant: EAF -> ladle furnace -> continuous caster -> hot strip mill, plus compressed air.

Calibration (``shared/docs/domain-reference.md``):

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
- Compressed air: quasi-constant base load with slow drift (§1.1 [H2], §1.2 †).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from simulators._plant import Process, noisy


class EAF(Process):
    name = "eaf"
    area = "meltshop"
    production_unit = "t"
    nominal_voltage_ln = 19_050.0  # 33 kV furnace bus, L-N
    base_pf = 0.8

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
        self._new_heat(0.0)

    def _new_heat(self, t: float) -> None:
        self.heat_t = float(self.rng.uniform(115.0, 125.0))
        self.phase_idx = 0
        self._enter(t)

    def _enter(self, t: float) -> None:
        _, minutes, _, _ = self.PHASES[self.phase_idx]
        self.phase_start = t
        self.phase_len = max(60.0, noisy(self.rng, minutes * 60.0, 0.08))

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
        p = mw * (1.0 + swing * self.rng.standard_normal()) if swing else mw
        self.elec.power_kw = max(p, 0.2) * 1000.0
        arcing = mw > 1.0
        self.running = int(arcing)
        self.elec.power_factor = float(np.clip(0.80 + 0.05 * self.rng.standard_normal(), 0.7, 0.88)) if arcing else 0.3
        if t + dt - self.phase_start >= self.phase_len:
            if name == "tap":
                self.production += self.heat_t
                self.production_count += 1
                self.tapped.append(self.heat_t)
                self._new_heat(t + dt)
            else:
                self.phase_idx += 1
                self._enter(t + dt)


class LadleFurnace(Process):
    name = "ladle_furnace"
    area = "meltshop"
    production_unit = "t"
    nominal_voltage_ln = 19_050.0
    base_pf = 0.82

    def __init__(self, rng: np.random.Generator, inbox: deque[float], outbox: deque[float]) -> None:
        super().__init__(rng)
        self.inbox, self.outbox = inbox, outbox
        self.heat: float | None = None
        self.remaining = 0.0

    def step(self, t: float, dt: float) -> None:
        if self.heat is None and self.inbox:
            self.heat = self.inbox.popleft()
            self.treat_len = noisy(self.rng, 30 * 60.0, 0.1)
            self.remaining = self.treat_len
        if self.heat is not None:
            # Arcing in bursts: on about 60 % of the treatment time at ~12 MW.
            cycle = (self.treat_len - self.remaining) % 300.0
            arcing = cycle < 180.0
            self.elec.power_kw = (noisy(self.rng, 12_000.0, 0.05) if arcing else 350.0)
            self.elec.power_factor = 0.82 if arcing else 0.5
            self.running = 1
            self.remaining -= dt
            if self.remaining <= 0:
                self.production += self.heat
                self.production_count += 1
                self.outbox.append(self.heat)
                self.heat = None
        else:
            self.elec.power_kw = noisy(self.rng, 300.0, 0.03)
            self.elec.power_factor = 0.5
            self.running = 0


class Caster(Process):
    name = "caster"
    area = "caster"
    production_unit = "t"
    nominal_voltage_ln = 3_810.0  # 6.6 kV
    base_pf = 0.88
    CAST_MINUTES = 45.0

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
            self.rate = heat / (noisy(self.rng, self.CAST_MINUTES, 0.05) * 60.0)
        if self.heat_left > 0:
            cast = min(self.rate * dt, self.heat_left)
            self.heat_left -= cast
            self.production += cast
            self.slab_acc += cast
            while self.slab_acc >= 25.0:
                self.slab_acc -= 25.0
                self.slabs.append(25.0)
            self.elec.power_kw = noisy(self.rng, 3_600.0, 0.03)
            self.running = 1
        else:
            self.elec.power_kw = noisy(self.rng, 1_400.0, 0.03)  # cooling-water pumps keep running
            self.running = 0
        self.elec.power_factor = 0.88


class HotStripMill(Process):
    name = "hot_strip_mill"
    area = "rolling"
    production_unit = "t"
    nominal_voltage_ln = 12_700.0  # 22 kV
    base_pf = 0.9
    BASE_KW = 4_000.0  # descaling pumps at constant speed, auxiliaries

    def __init__(self, rng: np.random.Generator, slabs: deque[float]) -> None:
        super().__init__(rng)
        self.slabs = slabs
        self.piece: float | None = None
        self.piece_t = 0.0

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
            extra = self._load_kw(self.piece_t) * (1.0 + 0.05 * self.rng.standard_normal())
            self.piece_t += dt
            self.running = 1
            if self.piece_t >= 240.0:
                self.production += self.piece
                self.production_count += 1
                self.piece = None
        else:
            self.running = 0
        self.elec.power_kw = noisy(self.rng, self.BASE_KW, 0.02) + max(extra, 0.0)
        self.elec.power_factor = 0.9 if extra > 0 else 0.8


class CompressedAir(Process):
    name = "compressed_air"
    area = "utilities"
    production_unit = None
    nominal_voltage_ln = 230.0
    base_pf = 0.9

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__(rng)
        self.drift = 0.0

    def step(self, t: float, dt: float) -> None:
        self.drift = 0.9995 * self.drift + 0.02 * self.rng.standard_normal()
        self.elec.power_kw = 1_800.0 * (1.0 + 0.03 * self.drift) * (1.0 + 0.01 * self.rng.standard_normal())
        self.elec.power_factor = 0.9
        self.running = 1


def build(rng: np.random.Generator) -> tuple[list[Process], str]:
    """The processes of the steel plant and the name of the process whose output is the plant's output."""
    tapped: deque[float] = deque()
    treated: deque[float] = deque()
    slabs: deque[float] = deque()
    procs: list[Process] = [
        EAF(rng, tapped),
        LadleFurnace(rng, tapped, treated),
        Caster(rng, treated, slabs),
        HotStripMill(rng, slabs),
        CompressedAir(rng),
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
}
