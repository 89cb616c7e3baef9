"""Run a simulated plant: advance it with the clock and serve every device over Modbus TCP.

On start the runner writes, into its output directory:

- ``devices.json``  — each device's address, port, unit id, profile and tags;
- ``gateway.toml``  — a ready-to-use gateway configuration for those devices;
- ``plant.json``    — the plant model (processes, meters, production counters,
  the plant's output process) that analytics uses;
- ``ready``         — created once every server listens.

When the scenario reaches its end the plant freezes (meters keep serving the final
state) and ``truth.json`` is written: the true energy and production per process.
``truth.csv`` holds the same cumulative figures every simulated minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from carbonedge import profiles
from carbonedge.clock import Clock, iso
from carbonedge.services import free_port
from simulators import steel
from simulators._plant import LineCounter, Meter, Process

log = logging.getLogger("carbonedge.sim")

PLANTS = {"steel": steel}
SEC_UNITS = {"steel": "kWh/t"}


@dataclass
class Simulation:
    """A plant advanced in fixed steps of ``dt`` plant seconds from ``start``."""

    plant: str
    seed: int
    start: float
    end: float
    dt: float = 1.0
    processes: list[Process] = field(init=False)
    output_process: str = field(init=False)
    meters: list[Meter] = field(init=False)
    counters: list[LineCounter] = field(init=False)

    def __post_init__(self) -> None:
        if self.plant not in PLANTS:
            raise ValueError(f"unknown plant {self.plant!r}; known: {', '.join(PLANTS)}")
        module = PLANTS[self.plant]
        seeds = np.random.SeedSequence(self.seed).spawn(64)
        self.processes, self.output_process = module.build(np.random.default_rng(seeds[0]))
        self.meters, self.counters = [], []
        offset_rng = np.random.default_rng(seeds[1])
        unit = 1
        for i, proc in enumerate(self.processes):
            prof = profiles.get_profile(module.METER_PROFILES[proc.name])
            self.meters.append(
                Meter(
                    device=f"{proc.name.replace('_', '-')}-meter",
                    process=proc,
                    profile=prof,
                    rng=np.random.default_rng(seeds[2 + i]),
                    energy_offset_kwh=float(np.round(offset_rng.uniform(1e4, 2e5), 3)),
                )
            )
            if proc.production_unit is not None:
                self.counters.append(LineCounter(f"{proc.name.replace('_', '-')}-line", proc, unit))
                unit += 1
        self.t = self.start

    def advance_to(self, t: float) -> None:
        t = min(t, self.end)
        while self.t + self.dt <= t + 1e-9:
            for p in self.processes:
                p.advance(self.t, self.dt)
            for m in self.meters:
                m.tick(self.dt)
            self.t += self.dt

    @property
    def finished(self) -> bool:
        return self.t >= self.end - 1e-9

    def truth(self) -> dict[str, Any]:
        procs = {}
        for p in self.processes:
            procs[p.name] = {
                "energy_kwh": p.energy_kwh,
                "production": p.production if p.production_unit else None,
                "production_unit": p.production_unit,
            }
        out = next(p for p in self.processes if p.name == self.output_process)
        total = sum(p.energy_kwh for p in self.processes)
        return {
            "plant": self.plant,
            "seed": self.seed,
            "start": iso(self.start),
            "end": iso(self.t),
            "processes": procs,
            "plant_total": {
                "energy_kwh": total,
                "production": out.production,
                "production_unit": out.production_unit,
                "output_process": self.output_process,
            },
        }

    def plant_model(self, site: str) -> dict[str, Any]:
        procs: dict[str, Any] = {}
        for p in self.processes:
            procs[p.name] = {
                "area": p.area,
                "production_unit": p.production_unit,
                "meters": [m.device for m in self.meters if m.process is p],
                "counters": [c.device for c in self.counters if c.process is p],
            }
        return {
            "plant": self.plant,
            "site": site,
            "sec_unit": SEC_UNITS[self.plant],
            "energy_quantity": "active_energy_import",
            "production_quantity": "production_mass",
            "output_process": self.output_process,
            "processes": procs,
        }


class _ServedDevice:
    """Registers of one Modbus unit, encoded from the live simulation on every read."""

    def __init__(self, profile: profiles.Profile, source: Meter | LineCounter) -> None:
        self.profile = profile
        self.source = source
        self.reads = 0
        self.first_read_wall: float | None = None

    def simdata(self) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        from pymodbus.simulator import DataType, SimData

        blocks: dict[str, list[Any]] = {}
        for table in ("holding", "input"):
            pts = [p for p in self.profile.points if self.profile.table_of(p) == table]
            if pts:
                lo = min(p.address for p in pts)
                hi = max(p.address + p.width for p in pts)
                blocks[table] = [SimData(lo, count=hi - lo, values=0, datatype=DataType.REGISTERS)]
            else:
                blocks[table] = [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
        return (bits, bits, blocks["holding"], blocks["input"])

    async def action(self, func_code: int, start: int, address: int, count: int, registers: list[int], values: Any) -> None:
        if values is not None:
            return None
        table = "holding" if func_code == 3 else "input"
        current = self.source.values()
        end = address + count
        for p in self.profile.points:
            if self.profile.table_of(p) != table or p.address + p.width <= address or p.address >= end:
                continue
            words = profiles.encode_point(p, current.get(p.name, 0.0))
            off = p.address - start
            registers[off : off + p.width] = words
        self.reads += 1
        if self.first_read_wall is None:
            self.first_read_wall = time.time()
        return None


async def run(
    sim: Simulation,
    clock: Clock,
    out_dir: Path,
    *,
    site: str = "demo-steel",
    gateway: str = "gw1",
    poll_interval_s: float = 60.0,
    host: str = "127.0.0.1",
    stop: asyncio.Event | None = None,
    sync_start: bool = False,
) -> dict[str, Any]:
    """Serve ``sim`` until ``stop`` is set (or SIGTERM); returns the truth at the end.

    With ``sync_start`` the plant holds its initial state until every device has been
    read once after the clock's origin (the gateway's first poll), and then runs with
    that small offset: the first and the last readings then bracket exactly the
    simulated period, so ground truth and metered totals cover the same interval.
    """
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import SimDevice

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    out_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    servers: list[Any] = []
    served_all: list[_ServedDevice] = []
    devices: list[dict[str, Any]] = []
    for m in sim.meters:
        port = free_port()
        served = _ServedDevice(m.profile, m)
        served_all.append(served)
        dev = SimDevice(id=1, simdata=served.simdata(), action=served.action)
        servers.append(ModbusTcpServer(dev, address=(host, port)))
        devices.append(
            {"id": m.device, "profile": m.profile.name, "host": host, "port": port, "unit_id": 1,
             "tags": {"area": m.process.area, "process": m.process.name}}
        )
    if sim.counters:
        port = free_port()
        plc = []
        for c in sim.counters:
            served = _ServedDevice(c.profile, c)
            served_all.append(served)
            plc.append(SimDevice(id=c.unit_id, simdata=served.simdata(), action=served.action))
            devices.append(
                {"id": c.device, "profile": c.profile.name, "host": host, "port": port, "unit_id": c.unit_id,
                 "tags": {"area": c.process.area, "process": c.process.name}}
            )
        servers.append(ModbusTcpServer(plc, address=(host, port)))

    tasks = [asyncio.create_task(s.serve_forever(), name=f"modbus-{i}") for i, s in enumerate(servers)]
    await asyncio.sleep(0.2)
    (out_dir / "devices.json").write_text(json.dumps(devices, indent=2))
    (out_dir / "plant.json").write_text(json.dumps(sim.plant_model(site), indent=2))
    (out_dir / "gateway.toml").write_text(gateway_toml(site, gateway, poll_interval_s, devices))
    (out_dir / "ready").write_text(str(time.time()))
    log.info("serving %d devices on %d ports", len(devices), len(servers))

    truth_csv = (out_dir / "truth.csv").open("w")
    truth_csv.write("ts," + ",".join(f"{p.name}_energy_kwh,{p.name}_production" for p in sim.processes) + "\n")
    next_row = sim.t
    truth: dict[str, Any] | None = None
    origin = getattr(getattr(clock, "spec", None), "origin", time.time())
    offset: float | None = None if sync_start else 0.0
    if sync_start:
        for sd in served_all:
            sd.first_read_wall = None
    try:
        while not stop.is_set():
            now = clock.now()
            if offset is None:
                firsts = [sd.first_read_wall for sd in served_all]
                if all(f is not None and f >= origin for f in firsts):
                    offset = max(0.0, now - sim.start)
                    log.info("every device was read once; plant time starts (offset %.1f s)", offset)
                else:
                    if any(f is not None and f < origin for f in firsts):
                        for sd in served_all:
                            if sd.first_read_wall is not None and sd.first_read_wall < origin:
                                sd.first_read_wall = None
                    now = sim.start
            sim.advance_to(now - (offset or 0.0))
            while next_row <= sim.t:
                truth_csv.write(iso(next_row) + "," + ",".join(f"{p.energy_kwh:.6f},{p.production:.6f}" for p in sim.processes) + "\n")
                next_row += 60.0
            if sim.finished and truth is None:
                truth = sim.truth()
                (out_dir / "truth.json").write_text(json.dumps(truth, indent=2))
                truth_csv.flush()
                log.info("scenario finished at %s; serving the final state", iso(sim.t))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.01)
    finally:
        truth_csv.close()
        for s in servers:
            await s.shutdown()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return truth or sim.truth()


def gateway_toml(site: str, gateway: str, poll_interval_s: float, devices: list[dict[str, Any]]) -> str:
    lines = [
        "# Gateway configuration written by the carbonedge simulator.",
        "[gateway]",
        f'site = "{site}"',
        f'id = "{gateway}"',
        f"poll_interval_s = {poll_interval_s:g}",
        "",
        "[mqtt]",
        'host = "127.0.0.1"',
        "port = 1883",
        "",
    ]
    for d in devices:
        lines += [
            "[[devices]]",
            f'id = "{d["id"]}"',
            f'profile = "{d["profile"]}"',
            'driver = "modbus-tcp"',
            f'host = "{d["host"]}"',
            f"port = {d['port']}",
            f"unit_id = {d['unit_id']}",
            "tags = { " + ", ".join(f'{k} = "{v}"' for k, v in d["tags"].items()) + " }",
            "",
        ]
    return "\n".join(lines)
