"""Run a simulated plant: advance it with the clock and serve every device over Modbus TCP.

On start the runner writes, into its output directory:

- ``devices.json``  — each device's address, port, unit id, profile and tags;
- ``gateway.toml``  — a ready-to-use gateway configuration for those devices (PLC line
  counters over OPC UA, meters over Modbus);
- ``opcua/``        — the simulated PLC's and the gateway's OPC UA certificates (Basic256Sha256);
- ``plant.json``    — the plant model (processes, meters, production counters,
  the plant's output process) that analytics uses;
- ``ready``         — created once every server listens.

When the scenario reaches its end the plant freezes (meters keep serving the final
state) and ``truth.json`` (true energy, media and production per process),
``labels.jsonl`` (one line per injected fault, with its true waste) and
``gateway-clock.json`` (the clock faults a gateway should run with) are written.
``truth.csv`` holds the cumulative energy and production every simulated minute.
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
from carbonedge.errors import ConfigError
from carbonedge.net import free_port
from carbonedge.simulators import battery, faults, steel
from carbonedge.simulators._plant import (
    MEDIA,
    Calendar,
    Device,
    FlowMeter,
    LineCounter,
    Meter,
    Process,
    WeatherStation,
)
from carbonedge.simulators.scenario import Scenario

log = logging.getLogger("carbonedge.sim")

PLANTS = {"steel": steel, "battery": battery}
SEC_UNITS = {"steel": "kWh/t", "battery": "kWh/kWh_cell"}
PRODUCTION_QUANTITY = {"steel": "production_mass", "battery": "production_capacity"}
#: Device id of the gateway's outdoor temperature/humidity transmitter (plants that model the climate).
WEATHER_DEVICE = "weather-station"
#: Units behind one Modbus TCP port when devices sit behind an RS-485 gateway (32 unit loads per segment).
UNITS_PER_GATEWAY = 32


@dataclass
class Simulation:
    """A plant advanced in fixed steps of ``dt`` plant seconds from ``start``.

    Build it from a :class:`~simulators.scenario.Scenario` with :meth:`from_scenario`,
    or directly (plant, seed, start, end, and optionally plant ``options``,
    ``shifts`` and fault tables as in a scenario file).
    """

    plant: str
    seed: int
    start: float
    end: float
    dt: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)
    shifts: list[str] | None = None
    shift_processes: list[str] | None = None
    utc_offset_h: float = 0.0
    fault_specs: list[dict[str, Any]] = field(default_factory=list)
    tariffs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    processes: list[Process] = field(init=False)
    output_process: str = field(init=False)
    meters: list[Meter] = field(init=False)
    flow_meters: list[FlowMeter] = field(init=False)
    counters: list[LineCounter] = field(init=False)
    faults: list[faults.Fault] = field(init=False)

    @classmethod
    def from_scenario(cls, sc: Scenario, dt: float = 1.0) -> Simulation:
        return cls(plant=sc.plant, seed=sc.seed, start=sc.start, end=sc.end, dt=dt, options=sc.options, shifts=sc.shifts,
                   shift_processes=sc.shift_processes, utc_offset_h=sc.utc_offset_h, fault_specs=sc.faults,
                   tariffs=sc.tariffs, name=sc.name)

    def __post_init__(self) -> None:
        if self.plant not in PLANTS:
            raise ConfigError(f"unknown plant {self.plant!r}; known: {', '.join(PLANTS)}")
        module = PLANTS[self.plant]
        _check_options(self.plant, module, self.options)
        seeds = np.random.SeedSequence(self.seed).spawn(64)
        self.processes, self.output_process = module.build(np.random.default_rng(seeds[0]), self.options)
        by_name = {p.name: p for p in self.processes}
        if self.shifts is not None:
            cal = Calendar(self.shifts, self.utc_offset_h)
            follow = self.shift_processes if self.shift_processes is not None else list(module.SHIFT_PROCESSES)
            for name in follow:
                if name not in by_name:
                    raise ConfigError(f"[calendar] processes: no process {name!r} in the {self.plant} plant; processes: {', '.join(by_name)}")
                by_name[name].calendar = cal
        self.meters, self.flow_meters, self.counters = [], [], []
        offset_rng = np.random.default_rng(seeds[1])
        unit = 1
        rack_meters = bool(self.options.get("rack_meters", False))
        for i, proc in enumerate(self.processes):
            slug = proc.name.replace("_", "-")
            prof = profiles.get_profile(str(self.options.get("meter_profiles", {}).get(proc.name, module.METER_PROFILES[proc.name])))
            if rack_meters and proc.name == "formation":
                self.meters.extend(self._rack_meters(proc, module, offset_rng, seeds[40]))
            else:
                export_fn = (lambda p=proc: p.export_kwh) if hasattr(proc, "export_kwh") else None
                self.meters.append(
                    Meter(device=f"{slug}-meter", process=proc, profile=prof, rng=np.random.default_rng(seeds[2 + i]),
                          energy_offset_kwh=float(np.round(offset_rng.uniform(1e4, 2e5), 3)), export_fn=export_fn)
                )
            for medium in proc.media:
                self.flow_meters.append(
                    FlowMeter(f"{slug}-{medium}-flow", proc, medium, profiles.get_profile(f"flow-{medium}"),
                              total_offset=float(np.round(offset_rng.uniform(1e3, 1e6), 1)))
                )
            if proc.production_unit is not None:
                self.counters.append(LineCounter(f"{slug}-line", proc, unit))
                unit += 1
        # A weather station on the gateway when the plant models the outdoor climate (it draws no random numbers).
        climate = next((p.climate for p in self.processes if getattr(p, "climate", None) is not None), None)
        self.weather = WeatherStation(WEATHER_DEVICE, climate, self.start) if climate is not None else None
        self.faults = faults.build_faults(self.fault_specs, self.start, self.end)
        self._device_list: list[Device] = [*self.meters, *self.flow_meters, *self.counters, *([self.weather] if self.weather else [])]
        faults.attach(self.faults, self.processes, self._device_list, self.start)
        self._faulty_devices = [d for d in self._device_list if d.device_faults]
        self._next_demand = (np.floor(self.start / 900.0) + 1) * 900.0
        self._demand_e0 = {m.device: m.true_energy_kwh() for m in self.meters}
        self.t = self.start

    def _rack_meters(self, proc: Any, module: Any, offset_rng: np.random.Generator, seed: Any) -> list[Meter]:
        prof = profiles.get_profile(module.RACK_METER_PROFILE)
        out = []
        for r in range(proc.n_racks):
            out.append(Meter(
                device=f"formation-rack-{r + 1:03d}-meter", process=proc, profile=prof, rng=np.random.default_rng(seed),
                energy_offset_kwh=float(np.round(offset_rng.uniform(1e3, 5e4), 3)),
                power_fn=lambda r=r: float(proc.rack_power_kw[r]),
                energy_fn=lambda r=r: float(proc.rack_import_kwh[r]),
                export_fn=lambda r=r: float(proc.rack_export_kwh[r]),
                unit_id=0,  # assigned when served behind an RS-485 gateway
            ))
            out[-1].share = 1.0 / proc.n_racks
        return out

    @property
    def devices(self) -> list[Device]:
        """Every device a gateway polls: power meters, flow meters, PLC counters."""
        return self._device_list

    def advance_to(self, t: float) -> None:
        t = min(t, self.end)
        dt = self.dt
        while self.t + dt <= t + 1e-9:
            for p in self.processes:
                p.advance(self.t, dt)
            self.t += dt
            for d in self._faulty_devices:
                d.update(self.t, dt)
            if self.t >= self._next_demand - 1e-9:
                # Block demand: the average power of the last completed 15-min window, aligned to the
                # clock like a real meter's demand period ([D17] in docs/sources.md).
                for m in self.meters:
                    e = m.true_energy_kwh()
                    m.demand_kw = (e - self._demand_e0[m.device]) * 3600.0 / 900.0
                    self._demand_e0[m.device] = e
                self._next_demand += 900.0
        if self.weather is not None:
            self.weather.t = self.t

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
                "production_count": p.production_count if p.production_unit else None,
                "production_capacity_kwh": p.production_capacity_kwh if p.production_unit == "kWh" else None,
                "media": {m: {"quantity": MEDIA[m][0], "total": v} for m, v in p.media_total.items()},
            }
            if hasattr(p, "export_kwh"):
                procs[p.name]["energy_export_kwh"] = p.export_kwh
        out = next(p for p in self.processes if p.name == self.output_process)
        total = sum(p.energy_kwh for p in self.processes)
        return {
            "plant": self.plant,
            "scenario": self.name,
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
            "faults": [{"id": f.id, "kind": f.kind, "waste_kwh": f.waste_kwh} for f in self.faults],
            **({"weather": self.weather_truth()} if self.weather is not None else {}),
        }

    def weather_truth(self) -> dict[str, Any]:
        """The weather station's true conditions now (its served values are these, rounded to 0.1)."""
        assert self.weather is not None
        temp, w = self.weather.truth()
        return {"device": self.weather.device, "outdoor_temperature_c": temp, "abs_humidity_gkg": w}

    def plant_model(self, site: str) -> dict[str, Any]:
        procs: dict[str, Any] = {}
        for p in self.processes:
            procs[p.name] = {
                "area": p.area,
                "production_unit": p.production_unit,
                "meters": [m.device for m in self.meters if m.process is p],
                "counters": [c.device for c in self.counters if c.process is p],
                "flow_meters": [
                    {"device": f.device, "medium": f.medium, "quantity": f.volume_q, "flow_quantity": f.flow_q}
                    for f in self.flow_meters if f.process is p
                ],
                "follows_shifts": p.calendar is not None and not p.calendar.always,
            }
        model: dict[str, Any] = {
            "plant": self.plant,
            "site": site,
            "scenario": self.name,
            "sec_unit": SEC_UNITS[self.plant],
            "energy_quantity": "active_energy_import",
            "production_quantity": PRODUCTION_QUANTITY[self.plant],
            "output_process": self.output_process,
            "processes": procs,
            "calendar": {"shifts": self.shifts or ["24/7"], "utc_offset_h": self.utc_offset_h},
            "tariffs": self.tariffs,
        }
        if self.weather is not None:
            # Outdoor conditions: relevant variables for weather-driven loads (dry rooms, HVAC, cooling).
            model["weather"] = {"device": self.weather.device, "temperature": "outdoor_temperature",
                                "humidity": "outdoor_humidity", "dew_point": "outdoor_dew_point"}
        return model

    def write_results(self, out_dir: Path) -> dict[str, Any]:
        """Write ``truth.json``, ``labels.jsonl`` and ``gateway-clock.json``; return the truth."""
        truth = self.truth()
        (out_dir / "truth.json").write_text(json.dumps(truth, indent=2))
        faults.write_labels(out_dir / "labels.jsonl", self.faults)
        (out_dir / "gateway-clock.json").write_text(json.dumps(faults.gateway_clock(self.faults), indent=2))
        return truth


def _check_options(plant: str, module: Any, options: dict[str, Any]) -> None:
    """Unknown [plant] keys, processes or meter models get a clear error instead of being ignored."""
    known: dict[str, str] = module.OPTIONS
    unknown = sorted(set(options) - set(known))
    if unknown:
        listing = "; ".join(f"{k}: {v}" for k, v in known.items())
        raise ConfigError(f"[plant] {', '.join(unknown)}: not an option of the {plant} plant. Known options: {listing}")
    mp = options.get("meter_profiles", {})
    if not isinstance(mp, dict):
        raise ConfigError('[plant] meter_profiles must be a table of process = "meter model"')
    for proc, prof in mp.items():
        if proc not in module.METER_PROFILES:
            raise ConfigError(f"[plant] meter_profiles: no process {proc!r} in the {plant} plant; processes: {', '.join(module.METER_PROFILES)}")
        if str(prof) not in profiles.PROFILES or str(prof).startswith(("flow-", "plc-")):
            models = [n for n in profiles.PROFILES if not n.startswith(("flow-", "plc-"))]
            raise ConfigError(f"[plant] meter_profiles: {proc} = {prof!r} is not a power-meter model; models: {', '.join(models)}")
    climate = options.get("climate", {})
    extra = sorted(set(climate) - set(getattr(module, "CLIMATE_KEYS", ()))) if isinstance(climate, dict) else ["(not a table)"]
    if extra:
        raise ConfigError(f"[plant] climate: unknown key(s) {', '.join(extra)}; known: {', '.join(getattr(module, 'CLIMATE_KEYS', ()))}")


class _ServedDevice:
    """Registers of one Modbus unit, encoded from the live simulation on every read."""

    def __init__(self, profile: profiles.Profile, source: Device) -> None:
        self.profile = profile
        self.source = source
        self.reads = 0
        self.first_read_wall: float | None = None
        #: Requests of one full read (the gateway's coalesced read plan), and those served since ``count_from`` (wall).
        self.blocks = max(1, len(profiles.read_plan(profile)))
        self.count_from = 0.0
        self.sync_requests = 0

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

    async def action(self, func_code: int, start: int, address: int, count: int, registers: list[int], values: Any) -> Any:
        from pymodbus.constants import ExcCodes

        if values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # meters are read-only here; never let a write change the registers
        if self.source.silent:
            # Communication loss: hang long enough for the gateway to time out, then answer as an
            # RS-485 gateway does when its target stays silent (exception 0x0B).
            if self.source.silent_mode == "timeout":
                await asyncio.sleep(COMM_LOSS_HANG_S)
            return ExcCodes.GATEWAY_NO_RESPONSE
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
        now = time.time()
        if self.first_read_wall is None:
            self.first_read_wall = now
        if now >= self.count_from:
            self.sync_requests += 1
        return None


#: Wall seconds a silent device keeps a request hanging (longer than any sane gateway timeout).
COMM_LOSS_HANG_S = 3.0
#: Full reads of every device before a synchronised start lets plant time run (see :func:`run`).
SYNC_READS = 3


def _layout(sim: Simulation) -> list[list[Device]]:
    """Group devices onto Modbus TCP ports the way a plant wires them.

    Each process's main power meter has its own Ethernet port (unit 1); PLC line
    counters share one PLC (a unit id per line); flow meters and per-rack meters sit
    behind RS-485-to-TCP gateways, up to 32 units per gateway.
    """
    ports: list[list[Device]] = []
    rack = [m for m in sim.meters if m.device.startswith("formation-rack-")]
    for m in sim.meters:
        if m not in rack:
            m.unit_id = 1
            ports.append([m])
    for group in (rack, sim.flow_meters):
        for i in range(0, len(group), UNITS_PER_GATEWAY):
            chunk = group[i : i + UNITS_PER_GATEWAY]
            for u, d in enumerate(chunk, start=1):
                d.unit_id = u
            ports.append(list(chunk))
    if sim.counters:
        ports.append(list(sim.counters))
    if sim.weather is not None:
        sim.weather.unit_id = 1
        ports.append([sim.weather])  # the gateway's own weather station, on its own port
    return ports


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
    plc_protocol: str = "modbus",
) -> dict[str, Any]:
    """Serve ``sim`` until ``stop`` is set (or SIGTERM); returns the truth at the end.

    With ``sync_start`` the plant holds its initial state until every device has been
    read ``SYNC_READS`` times after the clock's origin (the gateway's first polls), and
    then runs with that small offset: the first and the last readings then bracket
    exactly the simulated period, so ground truth and metered totals cover the same
    interval. One read is not enough: the simulator cannot see whether its answer
    reached the gateway in time, and a first answer that arrives after the gateway's
    timeout would leave the gateway's first good reading after the plant had started.

    The PLC's line counters are served over Modbus (``plc-line-counter``) and, with
    ``plc_protocol = "opcua"`` (``carbonedge sim``'s default), also by an OPC UA server (node map
    ``plc-line-opcua``, Basic256Sha256 SignAndEncrypt with certificates written to
    ``opcua/``); the written ``gateway.toml`` then reads them over OPC UA. A counter
    watched by a gateway's OPC UA subscription (or read three times) counts as read for
    the synchronised start.
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

    plc = None
    opcua_server: dict[str, Any] | None = None
    if plc_protocol == "opcua" and sim.counters:
        plc, opcua_server = _opcua_plc(sim, out_dir, host, clock, poll_interval_s)
        await plc.start()  # before the Modbus servers: a first start on a machine builds asyncua's namespace cache
    servers: list[Any] = []
    served_all: list[_ServedDevice] = []
    devices: list[dict[str, Any]] = []
    for group in _layout(sim):
        port = free_port()
        units = []
        for d in group:
            served = _ServedDevice(d.profile, d)
            served_all.append(served)
            units.append(SimDevice(id=d.unit_id, simdata=served.simdata(), action=served.action))
            devices.append({"id": d.device, "profile": d.profile.name, "host": host, "port": port, "unit_id": d.unit_id,
                            "tags": {"area": d.process.area, "process": d.process.name}})
        servers.append(ModbusTcpServer(units if len(units) > 1 else units[0], address=(host, port)))

    tasks = [asyncio.create_task(s.serve_forever(), name=f"modbus-{i}") for i, s in enumerate(servers)]
    if plc is not None:
        by_id = {d["id"]: d for d in devices}
        for c in sim.counters:
            by_id[c.device]["opcua"] = {"endpoint": plc.endpoint, "node_map": plc.node_map.name, "object": c.device}
    await asyncio.sleep(0.2)
    (out_dir / "devices.json").write_text(json.dumps(devices, indent=2))
    (out_dir / "plant.json").write_text(json.dumps(sim.plant_model(site), indent=2))
    (out_dir / "gateway-clock.json").write_text(json.dumps(faults.gateway_clock(sim.faults), indent=2))
    (out_dir / "gateway.toml").write_text(gateway_toml(site, gateway, poll_interval_s, devices, opcua_server))
    (out_dir / "ready").write_text(str(time.time()))
    log.info("serving %d devices on %d ports", len(devices), len(servers))

    truth_csv = (out_dir / "truth.csv").open("w")
    truth_csv.write("ts," + ",".join(f"{p.name}_energy_kwh,{p.name}_production" for p in sim.processes)
                    + (",outdoor_temperature_c,abs_humidity_gkg" if sim.weather is not None else "") + "\n")
    next_row = sim.t
    truth: dict[str, Any] | None = None
    origin = getattr(getattr(clock, "spec", None), "origin", time.time())
    offset: float | None = None if sync_start else 0.0
    if sync_start:
        for sd in served_all:
            sd.first_read_wall = None
            sd.count_from = origin
            sd.sync_requests = 0
    counters = set(id(c) for c in sim.counters)

    def synced(sd: _ServedDevice) -> bool:
        if sd.sync_requests >= SYNC_READS * sd.blocks:
            return True
        return plc is not None and id(sd.source) in counters and plc.served_by_gateway(sd.source.device, SYNC_READS)

    if plc is not None:
        await _serve_counters(plc, sim)
        log.info("OPC UA PLC serving %d production lines at %s", len(sim.counters), plc.endpoint)
    try:
        while not stop.is_set():
            now = clock.now()
            if offset is None:
                # A device that is silent by scenario (comm_loss at the start) cannot hold the plant back.
                if all(synced(sd) for sd in served_all if not sd.source.silent):
                    offset = max(0.0, now - sim.start)
                    log.info("every device was read %d times; plant time starts (offset %.1f s)", SYNC_READS, offset)
                else:
                    now = sim.start
            target = now - (offset or 0.0)
            while sim.t + sim.dt <= min(target, sim.end) + 1e-9:
                # Advance in slices of a minute of plant time and let pending Modbus requests in between,
                # so a fast clock never keeps a gateway waiting for an answer.
                sim.advance_to(min(target, sim.t + 60.0))
                if plc is not None:
                    await _serve_counters(plc, sim)
                await asyncio.sleep(0)
            if plc is not None:
                await _serve_counters(plc, sim)
            while next_row <= sim.t:
                truth_csv.write(iso(next_row) + "," + ",".join(f"{p.energy_kwh:.6f},{p.production:.6f}" for p in sim.processes)
                                + ("".join(f",{x:.6f}" for x in sim.weather.truth()) if sim.weather is not None else "") + "\n")
                next_row += 60.0
            if sim.finished and truth is None:
                truth = sim.write_results(out_dir)
                truth_csv.flush()
                log.info("scenario finished at %s; serving the final state", iso(sim.t))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.01)
    finally:
        truth_csv.close()
        if plc is not None:
            with contextlib.suppress(Exception):
                await plc.stop()
        for s in servers:
            await s.shutdown()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return truth or sim.truth()


def _opcua_plc(sim: Simulation, out_dir: Path, host: str, clock: Clock, poll_interval_s: float) -> tuple[Any, dict[str, Any]]:
    """The plant's PLC as an OPC UA server, with certificates for it and for the gateway (each trusts the other)."""
    from carbonedge import nodemaps
    from carbonedge.certificates import make_certificate
    from carbonedge.simulators.opcua_plc import OpcUaPlc

    certs = out_dir / "opcua"
    plc_cert, plc_key = make_certificate(certs, "plc", "urn:carbonedge:simulated-plc", server=True, hostname=host)
    gw_cert, gw_key = make_certificate(certs, "gateway", "urn:carbonedge:gateway", hostname=host)
    trusted = certs / "trusted"
    trusted.mkdir(exist_ok=True)
    (trusted / "gateway.pem").write_bytes(gw_cert.read_bytes())
    plc = OpcUaPlc(nodemaps.PLC_LINE_OPCUA, [c.device for c in sim.counters], host=host, port=free_port(), certificate=plc_cert,
                   private_key=plc_key, trusted=[trusted], allow_none=False, name=f"{sim.plant} plant PLC (simulated)")
    # Publish a few times per poll cycle of wall time, so a poll sees what the PLC held a fraction of a cycle before.
    speed = float(getattr(getattr(clock, "spec", None), "speed", 1.0) or 1.0)
    publishing_ms = max(20.0, min(500.0, poll_interval_s / speed * 1000.0 / 2.0))
    server = {"name": "plc", "endpoint": plc.endpoint, "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt",
              "certificate": str(gw_cert.resolve()), "private_key": str(gw_key.resolve()), "server_certificate": str(plc_cert.resolve()),
              "publishing_interval_ms": round(publishing_ms, 1), "sampling_interval_ms": 0}
    return plc, server


async def _serve_counters(plc: Any, sim: Simulation) -> None:
    """Write the lines' counters into the PLC's address space (the server notifies only changes)."""
    from asyncua import ua

    t = sim.t
    for c in sim.counters:
        values = c.values()
        if c.silent:
            # Communication loss by scenario (the line's controller behind the server is unreachable): the server
            # keeps the last values and flags them, as aggregating OPC UA servers do.
            await plc.set(c.device, plc.last_values(c.device), source_time=t, status={k: ua.StatusCodes.BadNoCommunication for k in values})
            continue
        await plc.set(c.device, values, source_time=t)


def gateway_toml(site: str, gateway: str, poll_interval_s: float, devices: list[dict[str, Any]],
                 opcua_server: dict[str, Any] | None = None) -> str:
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
    if opcua_server is not None:
        lines += ["# The PLC's production counters are read over OPC UA (node map plc-line-opcua), meters over Modbus.", "[[opcua_servers]]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in opcua_server.items()]
        lines.append("")
    for d in devices:
        if opcua_server is not None and "opcua" in d:
            lines += [
                "[[devices]]",
                f'id = "{d["id"]}"',
                'driver = "opcua"',
                f'server = "{opcua_server["name"]}"',
                f'node_map = "{d["opcua"]["node_map"]}"',
                f'object = "{d["opcua"]["object"]}"',
                "tags = { " + ", ".join(f'{k} = "{v}"' for k, v in d["tags"].items()) + " }",
                "",
            ]
            continue
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
