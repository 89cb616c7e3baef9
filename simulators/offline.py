"""Offline generator: a scenario's data as a gateway would read it, without a network.

For each poll time ``start, start + poll, ..., end`` the plant is advanced and every
device's served values go through its register map exactly as on the wire
(:func:`carbonedge.profiles.encode_point` then :func:`decode_point`), so a 32-bit
counter wraps, a float32 register rounds, and a frozen meter repeats itself, just as
the gateway would see. What the gateway would *not* get is left out: a device in a
communication-loss window has no row at those poll times. Timestamps are the
gateway's: a clock fault shifts them (ground truth stays in plant time).

Output directory::

    plant.json          plant model (as `carbonedge sim` writes it)
    scenario.json       the scenario as run
    <device>.csv        ts (ISO 8601 UTC) + one column per quantity, canonical units
    truth.json          true energy, media and production per process, fault waste
    truth.csv           true cumulative energy and production per process at each poll (plant time), and the
                        true outdoor temperature and absolute humidity when the plant has a weather station
    labels.jsonl        one line per injected fault
    gateway-clock.json  clock events the gateway would have
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from carbonedge import profiles
from carbonedge.clock import iso
from carbonedge.simulators import faults as faults_mod
from carbonedge.simulators.runner import Simulation
from carbonedge.simulators.scenario import Scenario, load_scenario


@dataclass
class DeviceSeries:
    """What a gateway read from one device: timestamps (gateway clock) and one array per quantity."""

    device: str
    profile: str
    process: str
    ts: list[float] = field(default_factory=list)
    columns: dict[str, list[float | None]] = field(default_factory=dict)

    def array(self, quantity: str) -> np.ndarray:
        """The column as a float array (``nan`` where the meter reported "not available")."""
        return np.array([np.nan if v is None else v for v in self.columns[quantity]], dtype=float)


@dataclass
class OfflineRun:
    """The result of :func:`generate`: per-device series, ground truth, labels and the plant model."""

    scenario: Scenario
    series: dict[str, DeviceSeries]
    truth: dict[str, Any]
    labels: list[dict[str, Any]]
    plant: dict[str, Any]
    truth_rows: list[dict[str, float]]


def _read(dev: Any) -> dict[str, float | None]:
    """Encode the served values into registers and decode them back, as the wire does."""
    served = dev.values()
    prof: profiles.Profile = dev.profile
    raw: dict[str, float | None] = {}
    for p in prof.points:
        raw[p.name] = profiles.decode_point(p, profiles.encode_point(p, served.get(p.name, 0.0)))
    return profiles.publishable(prof, raw)


def generate(
    scenario: Scenario | str | Path,
    out_dir: Path | str | None = None,
    *,
    poll_interval_s: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> OfflineRun:
    """Run ``scenario`` (a :class:`Scenario`, a bundled name or a TOML path) and sample it at the poll interval.

    Writes the directory described in the module docstring when ``out_dir`` is given.
    ``progress`` is called with the fraction done (0..1) about every 2 % of the run.
    """
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    poll = float(poll_interval_s or sc.poll_interval_s)
    sim = Simulation.from_scenario(sc)
    devices = sim.devices
    series = {
        d.device: DeviceSeries(d.device, d.profile.name, d.process.name, columns={q: [] for q in d.profile.published_quantities()})
        for d in devices
    }
    truth_rows: list[dict[str, float]] = []
    n_polls = int(np.floor(sc.duration_s / poll + 1e-9)) + 1
    next_report = 0.0
    for k in range(n_polls):
        t = sc.start + k * poll
        sim.advance_to(t)
        ts = faults_mod.gateway_time(sim.faults, t)
        for d in devices:
            if d.silent:
                continue
            s = series[d.device]
            s.ts.append(ts)
            for q, v in _read(d).items():
                s.columns[q].append(v)
        row = {"ts": t}
        for p in sim.processes:
            row[f"{p.name}_energy_kwh"] = p.energy_kwh
            row[f"{p.name}_production"] = p.production
        if sim.weather is not None:
            row["outdoor_temperature_c"], row["abs_humidity_gkg"] = sim.weather.truth()
        truth_rows.append(row)
        if progress is not None and k / n_polls >= next_report:
            progress(k / n_polls)
            next_report += 0.02
    if progress is not None:
        progress(1.0)
    truth = sim.truth()
    labels = [f.label() for f in sim.faults]
    run = OfflineRun(sc, series, truth, labels, sim.plant_model(sc.site), truth_rows)
    if out_dir is not None:
        write(run, sim, Path(out_dir))
    return run


def write(run: OfflineRun, sim: Simulation, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "plant.json").write_text(json.dumps(run.plant, indent=2))
    (out / "scenario.json").write_text(json.dumps(run.scenario.to_dict(), indent=2))
    for s in run.series.values():
        with (out / f"{s.device}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            cols = list(s.columns)
            w.writerow(["ts", *cols])
            for i, t in enumerate(s.ts):
                w.writerow([iso(t), *(_fmt(s.columns[c][i]) for c in cols)])
    with (out / "truth.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        keys = list(run.truth_rows[0]) if run.truth_rows else ["ts"]
        w.writerow(keys)
        for r in run.truth_rows:
            w.writerow([iso(r["ts"]), *(f"{r[k]:.6f}" for k in keys[1:])])
    sim.write_results(out)


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    return f"{float(v):.12g}"


def main_generate(scenario: str, out: str, poll_interval_s: float | None = None) -> dict[str, Any]:
    """CLI helper: generate with a progress line on stderr; returns a short summary."""
    import sys

    t0 = time.monotonic()

    def report(frac: float) -> None:
        print(f"\r  simulating ... {100 * frac:5.1f} %", end="", file=sys.stderr, flush=True)

    run = generate(scenario, out, poll_interval_s=poll_interval_s, progress=report)
    print("", file=sys.stderr)
    pt = run.truth["plant_total"]
    return {
        "scenario": run.scenario.name,
        "out": str(Path(out).resolve()),
        "devices": len(run.series),
        "rows": sum(len(s.ts) for s in run.series.values()),
        "faults": len(run.labels),
        "plant_energy_kwh": round(pt["energy_kwh"], 3),
        "plant_production": round(pt["production"], 3),
        "production_unit": pt["production_unit"],
        "seconds": round(time.monotonic() - t0, 1),
    }
