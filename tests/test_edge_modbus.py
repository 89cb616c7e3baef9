"""Gateway against real Modbus servers (pymodbus on loopback, and RTU through a pseudo-terminal pair):
fault isolation, counters over the wire, word order, partial reads, serial lines."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pty
import select
import threading
from typing import Any

import pytest

from carbonedge import profiles, wire
from carbonedge.app.services import free_port
from carbonedge.edge import Agent
from carbonedge.edge.config import GatewayConfig, ProfileConfig


class ServedMeter:
    """Registers of one unit, encoded from ``values`` (point name -> canonical value) on every read."""

    def __init__(self, profile: profiles.Profile, values: dict[str, float] | None = None, unit: int = 1, only: str | None = None) -> None:
        self.profile, self.unit = profile, unit
        self.values = values if values is not None else {p.name: 1.0 + i for i, p in enumerate(profile.points)}
        self.only = only  # serve only this table (the other answers with a Modbus exception)

    def device(self) -> Any:
        from pymodbus.simulator import DataType, SimData, SimDevice

        blocks: dict[str, list[Any]] = {}
        for table in ("holding", "input"):
            pts = [p for p in self.profile.points if self.profile.table_of(p) == table and self.only in (None, table)]
            if pts:
                lo, hi = min(p.address for p in pts), max(p.address + p.width for p in pts)
                blocks[table] = [SimData(lo, count=hi - lo, values=0, datatype=DataType.REGISTERS)]
            else:
                blocks[table] = [SimData(60000, count=1, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
        return SimDevice(id=self.unit, simdata=(bits, bits, blocks["holding"], blocks["input"]), action=self.action)

    async def action(self, func_code: int, start: int, address: int, count: int, registers: list[int], values: Any) -> None:
        table = "holding" if func_code == 3 else "input"
        for p in self.profile.points:
            if self.profile.table_of(p) == table and address <= p.address and p.address + p.width <= address + count:
                off = p.address - start
                registers[off : off + p.width] = profiles.encode_point(p, self.values.get(p.name, 0.0))


@contextlib.asynccontextmanager
async def tcp_server(meters: list[ServedMeter]):  # type: ignore[no-untyped-def]
    from pymodbus.server import ModbusTcpServer

    port = free_port()
    server = ModbusTcpServer([m.device() for m in meters], address=("127.0.0.1", port))
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.2)
    try:
        yield port
    finally:
        await server.shutdown()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def blackhole():  # type: ignore[no-untyped-def]
    """A 'meter' that accepts the connection and never answers (the worst case: no RST, just silence)."""

    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(1024):
                pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for w in writers:
            w.close()
        await asyncio.sleep(0.05)


def _cfg(tmp_path, devices: list[dict[str, Any]], interval: float = 1.0, mqtt_port: int = 1) -> GatewayConfig:  # type: ignore[no-untyped-def]
    return GatewayConfig.model_validate({"gateway": {"site": "mb", "id": "gw1", "poll_interval_s": interval, "data_dir": str(tmp_path)},
                                         "mqtt": {"port": mqtt_port}, "devices": devices})


def _batches(agent: Agent) -> list[wire.Batch]:
    return [wire.Batch.model_validate_json(p) for _, p in agent.outbox.pending(0, 10_000)]


def test_one_dead_meter_among_20_does_not_delay_the_rest(tmp_path, services):
    sdm = profiles.get_profile("eastron-sdm630")
    meters = [ServedMeter(sdm, unit=u) for u in range(1, 20)]

    async def scenario() -> Agent:
        async with tcp_server(meters) as port, blackhole() as dead_port:
            devices = [{"id": f"m{m.unit}", "profile": sdm.name, "port": port, "unit_id": m.unit, "timeout_s": 0.5} for m in meters]
            # The dead meter's own timeout is longer than the poll interval: the cycle still closes on time.
            devices.insert(7, {"id": "dead", "profile": sdm.name, "port": dead_port, "timeout_s": 5.0, "backoff_max_s": 4})
            agent = Agent(_cfg(tmp_path, devices, 1.0, services.mqtt.port))
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop=stop))
            while agent.outbox.last_seq < 6:
                await asyncio.sleep(0.05)
            stop.set()
            await task
            return agent

    agent = asyncio.run(scenario())
    batches = _batches(agent)
    assert len(batches) >= 6
    assert agent.counters["skipped_cycles"] == 0
    for b in batches:
        by = {d.device: d for d in b.devices}
        assert len(by) == 20
        dead = by.pop("dead")
        assert dead.status == "timeout" and all(v.v is None and v.q == "bad" for v in dead.values.values()) and dead.error
        for d in by.values():
            assert d.status == "ok" and all(v.q == "good" and v.v is not None for v in d.values.values())
        # Live readings are committed within one poll interval of being taken, dead meter or not.
        assert b.created - min(d.ts for d in by.values()) <= 1000
    ts = [min(d.ts for d in b.devices) for b in batches]
    assert all(900 <= b - a <= 1100 for a, b in zip(ts, ts[1:])), ts  # one cycle per second, none lost to the dead meter
    assert agent.counters["reads_skipped_backoff"] >= 1  # backed off instead of hammering it every cycle


def test_counter_rollover_and_reset_over_modbus_are_exact_and_survive_a_restart(tmp_path):
    plc = profiles.get_profile("plc-line-counter")
    mod = profiles.counter_modulus(plc.by_name["production_mass"])
    assert mod is not None
    meter = ServedMeter(plc, {"production_mass": mod - 0.5, "production_count": 10, "production_capacity": 0, "running": 1})

    async def scenario() -> tuple[list[wire.Batch], list[wire.Batch]]:
        async with tcp_server([meter]) as port:
            dev = [{"id": "line1", "profile": plc.name, "port": port, "counter_limits": {"production_mass": 36000}}]
            agent = Agent(_cfg(tmp_path, dev, 1.0))
            await agent.poll_once()
            meter.values["production_mass"] = 1.25  # wrapped: 0.5 t up to the top, 1.25 t after it
            await asyncio.sleep(1.0)
            await agent.poll_once()
            meter.values["production_mass"] = 0.75  # went down, far from the top: a reset
            await asyncio.sleep(1.0)
            await agent.poll_once()
            first = _batches(agent)
            agent.outbox.close()
            # A new process on the same outbox continues the published total.
            meter.values["production_mass"] = 1.0
            again = Agent(_cfg(tmp_path, dev, 1.0))
            await asyncio.sleep(1.0)
            await again.poll_once()
            return first, _batches(again)

    first, second = asyncio.run(scenario())
    vals = [b.devices[0].values["production_mass"].v for b in first]
    assert vals[0] == pytest.approx(mod - 0.5, abs=1e-6)
    assert vals[1] - vals[0] == pytest.approx(1.75, abs=1e-6)  # the exact delta across the rollover
    assert first[1].events[0].kind == "counter_rollover"
    assert vals[2] >= vals[1] and vals[2] - vals[1] <= 0.75  # a reset: no negative, no spike
    (reset,) = first[2].events
    assert reset.kind == "counter_reset" and reset.detail["raw_before"] == pytest.approx(1.25) and reset.detail["raw_after"] == pytest.approx(0.75)
    after_restart = second[-1].devices[0].values["production_mass"].v
    assert after_restart == pytest.approx(vals[2] + 0.25, abs=1e-6)
    assert [e.kind for e in second[-1].events] == ["gap"]  # the first agent never stopped cleanly; no counter event


def test_word_order_override_partial_reads_and_custom_profiles(tmp_path):
    sdm = profiles.get_profile("eastron-sdm630")
    swapped = dataclasses.replace(sdm, points=tuple(dataclasses.replace(p, word_order="little") for p in sdm.points))
    v = {p.name: 100.0 + i for i, p in enumerate(sdm.points)}
    janitza = profiles.get_profile("janitza-umg96rm-e")
    custom = {"name": "site-flow-meter", "table": "holding",
              "points": [{"name": "gas_flow", "address": 10, "dtype": "float32", "word_order": "little"},
                         {"name": "gas_volume", "address": 12, "dtype": "uint32", "scale": 0.1},
                         {"name": "raw_status", "address": 20, "dtype": "uint16", "quantity": ""}]}
    flow_values = {"gas_flow": 850.5, "gas_volume": 123456.7, "raw_status": 3}

    async def scenario() -> wire.Batch:
        async with tcp_server([ServedMeter(swapped, v, unit=1), ServedMeter(janitza, unit=2, only="holding")]) as port:
            flow = ServedMeter(ProfileConfig.model_validate(custom).build(), flow_values, unit=3)
            async with tcp_server([flow]) as port2:
                cfg = GatewayConfig.model_validate({
                    "gateway": {"site": "mb", "id": "gw1", "data_dir": str(tmp_path)}, "mqtt": {"port": 1}, "profiles": [custom],
                    "devices": [{"id": "swapped", "profile": sdm.name, "port": port, "unit_id": 1, "word_order": "little"},
                                {"id": "janitza", "profile": janitza.name, "port": port, "unit_id": 2},
                                {"id": "flow", "profile": "site-flow-meter", "port": port2, "unit_id": 3}]})
                agent = Agent(cfg)
                await agent.poll_once()
                return _batches(agent)[0]

    b = asyncio.run(scenario())
    by = {d.device: d for d in b.devices}
    got = {q: x.v for q, x in by["swapped"].values.items()}
    want = profiles.publishable(sdm, v)
    assert got == pytest.approx(want)
    assert by["janitza"].status == "ok"  # all its points are holding registers
    flow = by["flow"]
    assert flow.values["gas_flow"].v == pytest.approx(850.5) and flow.values["gas_volume"].v == pytest.approx(123456.7)
    assert "raw_status" not in flow.values


def test_partial_read_keeps_the_blocks_that_answered(tmp_path):
    # A Siemens PAC3200 whose energy registers (a separate block) are missing in this firmware.
    pac = profiles.get_profile("siemens-pac3200")
    trimmed = dataclasses.replace(pac, points=tuple(p for p in pac.points if p.address < 800), derived=())
    values = {p.name: 10.0 + i for i, p in enumerate(pac.points)}

    async def scenario() -> wire.Batch:
        async with tcp_server([ServedMeter(trimmed, values)]) as port:
            agent = Agent(_cfg(tmp_path, [{"id": "pac", "profile": pac.name, "port": port}]))
            await agent.poll_once()
            return _batches(agent)[0]

    d = asyncio.run(scenario()).devices[0]
    assert d.status == "partial" and "exception" in (d.error or "")
    assert d.values["active_energy_import"].q == "bad" and d.values["active_energy_import"].v is None
    assert d.values["voltage_l1_n"].v == pytest.approx(10.0) and d.values["voltage_l1_n"].q == "good"


class PtyPair:
    """Two pseudo-terminals joined back to back (what ``socat pty,raw pty,raw`` does): a null-modem cable."""

    def __init__(self) -> None:
        self.m1, s1 = pty.openpty()
        self.m2, s2 = pty.openpty()
        self.a, self.b = os.ttyname(s1), os.ttyname(s2)
        self._slaves = (s1, s2)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._relay, daemon=True)
        self._t.start()

    def _relay(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.m1, self.m2], [], [], 0.05)
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                os.write(self.m2 if fd == self.m1 else self.m1, data)

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        for fd in (self.m1, self.m2, *self._slaves):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_modbus_rtu_over_a_serial_line_with_two_meters(tmp_path):
    from pymodbus.server import ModbusSerialServer

    sdm = profiles.get_profile("eastron-sdm630")
    abb = profiles.get_profile("abb-b-series")
    v1 = {p.name: 230.0 + i for i, p in enumerate(sdm.points)}
    v2 = {p.name: 0.5 * (i + 1) for i, p in enumerate(abb.points)}
    line = PtyPair()

    async def scenario() -> list[wire.Batch]:
        server = ModbusSerialServer([ServedMeter(sdm, v1, unit=1).device(), ServedMeter(abb, v2, unit=2).device()],
                                    port=line.b, baudrate=38400, parity="N")
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.3)
        try:
            # Linux pseudo-terminals refuse parity settings (EINVAL); a real RS-485 adapter takes "E".
            serial = {"driver": "modbus-rtu", "serial_port": line.a, "baudrate": 38400, "parity": "N", "timeout_s": 1.0}
            agent = Agent(_cfg(tmp_path, [{"id": "sdm", "profile": sdm.name, "unit_id": 1, **serial},
                                          {"id": "abb", "profile": abb.name, "unit_id": 2, **serial},
                                          {"id": "absent", "profile": abb.name, "unit_id": 9, **serial, "timeout_s": 0.3}]))
            for _ in range(2):
                await agent.poll_once()
            for drv in agent.drivers.values():
                drv.close()
            return _batches(agent)
        finally:
            await server.shutdown()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    try:
        batches = asyncio.run(scenario())
    finally:
        line.close()
    by = {d.device: d for d in batches[-1].devices}
    assert {q: x.v for q, x in by["sdm"].values.items()} == pytest.approx(profiles.publishable(sdm, v1))
    assert {q: x.v for q, x in by["abb"].values.items()} == pytest.approx(profiles.publishable(abb, v2))
    # A unit id that does not answer properly is recorded as bad, and the others on the line still read.
    assert by["absent"].status in ("timeout", "error") and all(x.v is None for x in by["absent"].values.values())
