"""A small synthetic plant written in the offline export layout, with exactly known energy and faults.

Used by the carbon and report tests for hand calculations: every figure here is a
closed-form sum, so a test can recompute it independently. Layout as the
simulators' offline generator: ``plant.json``, ``<device>.csv`` (ts + quantities),
``truth.json``, ``labels.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from carbonedge.clock import iso, parse_time

START = "2026-01-05T00:00:00Z"  # a Monday


def on_shift(t: np.ndarray) -> np.ndarray:
    """Mon-Fri 06:00-22:00 UTC."""
    h = (t // 3600) % 24
    wd = (t // 86400 + 3) % 7
    return (wd < 5) & (h >= 6) & (h < 22)


def make_plant(out: Path, *, days: float = 4.0, poll_s: float = 60.0, seed: int = 1, faults: list[dict[str, Any]] | None = None,
               gas: bool = True) -> dict[str, Any]:
    """Write the synthetic plant into ``out``; returns truth (energy, production, gas per process; waste per fault)."""
    rng = np.random.default_rng(seed)
    t0 = parse_time(START)
    t = t0 + np.arange(0, days * 86400 + poll_s, poll_s)
    dt_h = poll_s / 3600.0
    shift = on_shift(t)
    # EAF: 60-min heats on shift: 50 min arcing at ~60 MW (+-5 %), 10 min off at 0.4 MW; 120 t per heat at the end.
    minute_in_heat = ((t - t0) // 60) % 60
    arcing = shift & (minute_in_heat < 50)
    eaf_kw = np.where(arcing, 60_000.0 * (1 + 0.05 * rng.standard_normal(t.size)), 400.0)
    tap = shift & (minute_in_heat == 59)
    # Caster: 2 t/min while on shift, 3.6 MW; standby 1.4 MW off shift.
    caster_kw = np.where(shift, 3_600.0, 1_400.0) * (1 + 0.02 * rng.standard_normal(t.size))
    caster_t = np.where(shift, 2.0 * poll_s / 60.0, 0.0)
    # Compressed air: 1.8 MW on shift, 0.9 MW off shift.
    air_kw = np.where(shift, 1_800.0, 900.0) * (1 + 0.02 * rng.standard_normal(t.size))
    # Reheat furnace gas: 2,000 Nm3/h on shift, 300 Nm3/h holding off shift.
    gas_nm3h = np.where(shift, 2_000.0, 300.0)
    labels = []
    for i, f in enumerate(faults or []):
        fs, fe = parse_time(f["start"]), parse_time(f["end"]) if f.get("end") else np.inf
        act = (t >= fs) & (t < fe)
        if f["kind"] == "compressed_air_leak":
            extra = np.where(act, f["kw"], 0.0)
            air_kw = air_kw + extra
        elif f["kind"] == "idle_running":
            extra = np.where(act & ~shift, 3_000.0 - 1_400.0, 0.0)
            caster_kw = caster_kw + extra
        elif f["kind"] == "eaf_abnormal_energy":
            extra = np.where(act & arcing, f.get("extra_fraction", 0.12) * eaf_kw, 0.0)
            eaf_kw = eaf_kw + extra
        else:
            raise ValueError(f["kind"])
        # Each reading's energy is the power of the interval *ending* at it, so the waste is the sum after the first poll.
        labels.append({"id": f"f{i + 1}", "kind": f["kind"], "device": None, "process": f["process"], "start": f["start"],
                       "end": f.get("end"), "expected_effect": "", "params": {}, "waste_kwh": float(extra[1:].sum() * dt_h)})
    procs = {"eaf": (eaf_kw, np.where(tap, 120.0, 0.0), "t", "meltshop"), "caster": (caster_kw, caster_t, "t", "caster"),
             "compressed_air": (air_kw, None, None, "utilities")}
    plant: dict[str, Any] = {"plant": "steel", "site": "synth-steel", "sec_unit": "kWh/t", "energy_quantity": "active_energy_import",
                             "production_quantity": "production_mass", "output_process": "caster", "processes": {}}
    truth: dict[str, Any] = {"processes": {}, "labels": labels}
    out.mkdir(parents=True, exist_ok=True)
    for k, (name, (kw, prod, unit, area)) in enumerate(procs.items()):
        meter = f"{name.replace('_', '-')}-meter"
        spec: dict[str, Any] = {"area": area, "production_unit": unit, "meters": [meter], "counters": []}
        inc = np.concatenate([[0.0], kw[1:] * dt_h])
        energy = 50_000.0 * (k + 1) + np.cumsum(inc)
        pf = 0.8 if name == "eaf" else 0.9
        cols = {"active_energy_import": energy, "active_power": kw, "power_factor": np.full(t.size, pf)}
        if name == "caster" and gas:
            ginc = np.concatenate([[0.0], gas_nm3h[1:] * dt_h])
            cols["gas_volume"] = 1_000.0 + np.cumsum(ginc)
            truth_gas = float(ginc.sum())
        else:
            truth_gas = 0.0
        _write_csv(out / f"{meter}.csv", t, cols)
        p_total = None
        if prod is not None:
            line = f"{name.replace('_', '-')}-line"
            spec["counters"] = [line]
            pinc = np.concatenate([[0.0], prod[1:]])
            _write_csv(out / f"{line}.csv", t, {"production_mass": np.cumsum(pinc), "running": shift.astype(float)})
            p_total = float(pinc.sum())
        plant["processes"][name] = spec
        truth["processes"][name] = {"energy_kwh": float(inc.sum()), "production": p_total, "gas_nm3": truth_gas}
    (out / "plant.json").write_text(json.dumps(plant, indent=2))
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    (out / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels))
    return truth


def _write_csv(path: Path, t: np.ndarray, cols: dict[str, np.ndarray]) -> None:
    names = list(cols)
    with path.open("w") as fh:
        fh.write("ts," + ",".join(names) + "\n")
        for i in range(t.size):
            fh.write(iso(float(t[i])) + "," + ",".join(f"{cols[n][i]:.6f}" for n in names) + "\n")
