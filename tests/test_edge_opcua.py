"""Gateway against real OPC UA servers (asyncua on loopback): certificates, a refused certificate,
status codes to quality, a server restart mid-run, and OPC UA values in the same batches as Modbus."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from carbonedge import nodemaps, wire
from carbonedge.errors import ConfigError
from carbonedge.app.services import free_port
from carbonedge.edge import Agent
from carbonedge.edge.config import GatewayConfig, load_config
from carbonedge.edge.drivers.opcua import make_certificate, quality
from carbonedge.simulators.opcua_plc import OpcUaPlc

MAP = nodemaps.PLC_LINE_OPCUA


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("opcua-certs")
    plc_cert, plc_key = make_certificate(d, "plc", "urn:carbonedge:simulated-plc", server=True)
    gw_cert, gw_key = make_certificate(d, "gateway", "urn:carbonedge:gateway:gw1")
    other_cert, other_key = make_certificate(d, "stranger", "urn:carbonedge:gateway:stranger")
    trusted = d / "trusted"
    trusted.mkdir()
    (trusted / "gateway.pem").write_bytes(gw_cert.read_bytes())
    return {"plc_cert": plc_cert, "plc_key": plc_key, "gw_cert": gw_cert, "gw_key": gw_key, "other_cert": other_cert,
            "other_key": other_key, "trusted": trusted}


def _cfg(tmp_path: Path, server: dict[str, Any], devices: list[dict[str, Any]]) -> GatewayConfig:
    return GatewayConfig.model_validate({"gateway": {"site": "ua", "id": "gw1", "poll_interval_s": 1.0, "data_dir": str(tmp_path / "edge")},
                                         "mqtt": {"port": 1}, "opcua_servers": [{"name": "plc", **server}], "devices": devices})


def _line(obj: str, **extra: Any) -> dict[str, Any]:
    return {"id": obj, "driver": "opcua", "server": "plc", "node_map": MAP.name, "object": obj, **extra}


def _batches(agent: Agent) -> list[wire.Batch]:
    return [wire.Batch.model_validate_json(p) for _, p in agent.outbox.pending(0, 10_000)]


def _plc(certs: dict[str, Path] | None, port: int, objects: list[str] = ["line1"], allow_none: bool = False) -> OpcUaPlc:  # noqa: B006
    if certs is None:
        return OpcUaPlc(MAP, objects, port=port, allow_none=True)
    return OpcUaPlc(MAP, objects, port=port, certificate=certs["plc_cert"], private_key=certs["plc_key"], trusted=[certs["trusted"]],
                    allow_none=allow_none)


def _secure(plc: OpcUaPlc, certs: dict[str, Path], sec_mode: str, who: str = "gw", **kw: Any) -> dict[str, Any]:
    return {"endpoint": plc.endpoint, "security_policy": "Basic256Sha256", "security_mode": sec_mode, "certificate": str(certs[f"{who}_cert"]),
            "private_key": str(certs[f"{who}_key"]), "server_certificate": str(certs["plc_cert"]), **kw}


@pytest.mark.parametrize(("mode", "read_mode"), [("SignAndEncrypt", "subscribe"), ("Sign", "poll")])
def test_secure_session_with_certificates_reads_the_node_map(tmp_path: Path, certs: dict[str, Path], mode: str, read_mode: str) -> None:
    async def scenario() -> list[wire.Batch]:
        plc = await _plc(certs, free_port()).start()  # offers no None endpoint at all
        try:
            agent = Agent(_cfg(tmp_path, _secure(plc, certs, mode, mode=read_mode, publishing_interval_ms=50), [_line("line1")]))
            for mass_kg in (1_000.0, 121_500.0):
                await plc.set("line1", {"production_mass": mass_kg * 0.001, "production_count": 7, "production_capacity": 0.0, "running": 1},
                              source_time=time.time())
                await asyncio.sleep(0.3)
                await agent.poll_once()
            await agent.close_sessions()
            return _batches(agent)
        finally:
            await plc.stop()

    b = asyncio.run(scenario())
    assert len(b) == 2
    first, second = b[0].devices[0], b[1].devices[0]
    assert first.status == "ok", first.error
    assert first.values["production_mass"] == wire.Value(v=1.0, u="t", q="good")
    assert second.values["production_mass"].v == pytest.approx(121.5)  # served in kg, published in t (the map's scale)
    assert second.values["production_count"].v == 7 and second.values["running"].v == 1.0


def test_untrusted_certificate_is_refused_with_a_clear_reason(tmp_path: Path, certs: dict[str, Path]) -> None:
    async def scenario() -> list[wire.Batch]:
        plc = await _plc(certs, free_port()).start()
        try:
            agent = Agent(_cfg(tmp_path, _secure(plc, certs, "SignAndEncrypt", who="other"), [_line("line1")]))
            await agent.poll_once()
            await agent.close_sessions()
            return _batches(agent)
        finally:
            await plc.stop()

    (b,) = asyncio.run(scenario())
    d = b.devices[0]
    assert d.status == "timeout" and all(v.q == "bad" and v.v is None for v in d.values.values())
    assert d.error is not None and "BadCertificateUntrusted" in d.error and "trust list" in d.error


def test_status_codes_map_to_quality(tmp_path: Path) -> None:
    assert quality(ua.StatusCode(ua.StatusCodes.Good)) == "good"
    assert quality(ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)) == "uncertain"
    assert quality(ua.StatusCode(ua.StatusCodes.UncertainSubNormal)) == "uncertain"
    assert quality(ua.StatusCode(ua.StatusCodes.BadSensorFailure)) == "bad"
    assert quality(ua.StatusCode(ua.StatusCodes.BadCommunicationError)) == "bad"

    async def scenario() -> list[wire.Batch]:
        plc = await _plc(None, free_port()).start()
        try:
            agent = Agent(_cfg(tmp_path, {"endpoint": plc.endpoint, "security_policy": "None", "publishing_interval_ms": 50}, [_line("line1")]))
            await plc.set("line1", {"production_mass": 5.0, "production_count": 2, "production_capacity": 0.0, "running": 1})
            await agent.poll_once()
            await plc.set("line1", {"production_mass": 6.0, "production_count": 2, "running": 1},
                          status={"production_mass": ua.StatusCodes.UncertainLastUsableValue, "running": ua.StatusCodes.BadSensorFailure,
                                  "production_count": ua.StatusCodes.UncertainSensorNotAccurate})
            await asyncio.sleep(0.3)
            await agent.poll_once()
            await agent.close_sessions()
            return _batches(agent)
        finally:
            await plc.stop()

    b = asyncio.run(scenario())
    ok, flagged = b[0].devices[0], b[1].devices[0]
    assert ok.status == "ok" and {v.q for v in ok.values.values()} == {"good"}
    assert flagged.status == "partial"
    assert flagged.values["production_mass"] == wire.Value(v=6.0, u="t", q="uncertain")
    assert flagged.values["production_count"].q == "uncertain" and flagged.values["production_count"].v == 2
    assert flagged.values["running"] == wire.Value(v=None, u="1", q="bad")
    assert flagged.values["production_capacity"].q == "good"
    assert flagged.error is not None and "running: BadSensorFailure" in flagged.error and "UncertainLastUsableValue" in flagged.error


@pytest.mark.parametrize("server_keeps_counters", [True, False], ids=["retentive", "lost"])
def test_server_restart_mid_run_loses_nothing_and_records_a_gap(tmp_path: Path, server_keeps_counters: bool) -> None:
    """Production runs on while the server restarts. With retentive counters every tonne arrives; when the server
    lost its counters (restarts at 0) the counter tracker continues the total and both the reset and the gap are on record."""
    port = free_port()
    produced = [0.0]

    async def step(plc: OpcUaPlc, t: float) -> None:
        produced[0] += t
        await plc.set("line1", {"production_mass": produced[0] - (base[0]), "production_count": 0, "production_capacity": 0.0, "running": 1})

    base = [0.0]

    async def scenario() -> list[wire.Batch]:
        plc = await _plc(None, port).start()
        agent = Agent(_cfg(tmp_path, {"endpoint": plc.endpoint, "security_policy": "None", "publishing_interval_ms": 50, "timeout_s": 0.5},
                           [_line("line1", backoff_max_s=0.5)]))
        for _ in range(3):
            await step(plc, 2.5)
            await asyncio.sleep(0.2)
            await agent.poll_once()
        await plc.stop()
        for _ in range(2):  # the server is down; production goes on in the PLC
            produced[0] += 1.0
            await agent.poll_once()
            await asyncio.sleep(0.3)
        if not server_keeps_counters:
            base[0] = produced[0]  # restarts from zero: what it held is gone
        plc = await _plc(None, port).start()
        await step(plc, 0.0)
        for _ in range(30):
            await asyncio.sleep(0.3)
            await agent.poll_once()
            last = _batches(agent)[-1].devices[0]
            if last.status == "ok":
                break
        for _ in range(2):
            await step(plc, 1.5)
            await asyncio.sleep(0.2)
            await agent.poll_once()
        await agent.close_sessions()
        await plc.stop()
        return _batches(agent)

    batches = asyncio.run(scenario())
    statuses = [b.devices[0].status for b in batches]
    assert statuses[:3] == ["ok"] * 3 and "timeout" in statuses and statuses[-1] == "ok"
    mass = [b.devices[0].values["production_mass"].v for b in batches if b.devices[0].values["production_mass"].v is not None]
    assert all(b >= a for a, b in zip(mass, mass[1:]))  # never backwards, never a spike
    events = [e for b in batches for e in b.events]
    gaps = [e for e in events if e.kind == "gap" and e.device == "line1"]
    assert len(gaps) == 1 and "restarted" in str(gaps[0].detail["cause"])
    resets = [e for e in events if e.kind == "counter_reset"]
    if server_keeps_counters:
        assert mass[-1] == pytest.approx(produced[0])  # nothing lost: 7.5 + 2 (while down) + 3
        assert not resets
    else:
        # What the server lost while it restarted (the 2 t of the outage) cannot be known; everything it served is counted.
        assert mass[-1] == pytest.approx(produced[0] - 2.0)
        assert len(resets) == 1


def test_opcua_and_modbus_values_share_one_batch_per_cycle(tmp_path: Path) -> None:
    async def scenario() -> list[wire.Batch]:
        plc = await _plc(None, free_port(), objects=["line1", "line2"]).start()
        try:
            cfg = GatewayConfig.model_validate({
                "gateway": {"site": "ua", "id": "gw1", "poll_interval_s": 1.0, "data_dir": str(tmp_path / "edge")}, "mqtt": {"port": 1},
                "opcua_servers": [{"name": "plc", "endpoint": plc.endpoint, "security_policy": "None", "publishing_interval_ms": 50}],
                "devices": [{"id": "meter", "profile": "eastron-sdm630", "driver": "simulated"}, _line("line1"), _line("line2")]})
            agent = Agent(cfg)
            assert len(agent._opcua) == 1  # one session for both lines of the PLC
            for i in range(2):
                await plc.set("line1", {"production_mass": 1.0 + i, "production_count": i, "production_capacity": 0.0, "running": 1})
                await plc.set("line2", {"production_mass": 10.0 + i, "production_count": i, "production_capacity": 0.0, "running": 0})
                await asyncio.sleep(0.2)
                await agent.poll_once()
            await agent.close_sessions()
            return _batches(agent)
        finally:
            await plc.stop()

    b = asyncio.run(scenario())
    assert [sorted(d.device for d in x.devices) for x in b] == [["line1", "line2", "meter"]] * 2
    assert [x.seq for x in b] == [1, 2]
    l2 = next(d for d in b[1].devices if d.device == "line2")
    assert l2.values["production_mass"].v == pytest.approx(11.0) and l2.values["running"].v == 0.0


def test_config_errors_name_the_key(tmp_path: Path, certs: dict[str, Path]) -> None:
    def load(text: str) -> str:
        p = tmp_path / "gw.toml"
        p.write_text('[gateway]\nsite = "s"\nid = "g"\n' + text)
        with pytest.raises(ConfigError) as e:
            load_config(p)
        return str(e.value)

    msg = load('[[opcua_servers]]\nname = "plc"\nendpoint = "opc.tcp://10.0.0.5:4840"\n'
               '[[devices]]\nid = "l1"\ndriver = "opcua"\nserver = "plc"\nnode_map = "plc-line-opcua"\n')
    assert "opcua_servers[name=plc]" in msg and "needs certificate, private_key, server_certificate" in msg
    msg = load('[[opcua_servers]]\nname = "plc"\nendpoint = "opc.tcp://10.0.0.5:4840"\nsecurity_policy = "None"\n'
               '[[devices]]\nid = "l1"\ndriver = "opcua"\nserver = "plc"\nnode_map = "no-such-map"\n')
    assert "unknown OPC UA node map 'no-such-map'" in msg and "plc-line-opcua" in msg
    msg = load('[[devices]]\nid = "l1"\ndriver = "opcua"\nnode_map = "plc-line-opcua"\n')
    assert "devices[id=l1]" in msg and "needs server" in msg
    msg = load('[[opcua_servers]]\nname = "plc"\nendpoint = "http://10.0.0.5"\nsecurity_policy = "None"\n'
               '[[devices]]\nid = "l1"\ndriver = "opcua"\nserver = "plc"\nnode_map = "plc-line-opcua"\n')
    assert "opcua_servers[name=plc].endpoint" in msg


def test_custom_node_map_by_browse_path_and_node_id(tmp_path: Path) -> None:
    """A node map written in the config: one value by browse path, one by node id with the namespace URI."""
    served = nodemaps.NodeMap("site-map", "urn:example:mill", (
        nodemaps.NodePoint("active_energy_import", "/Objects/PLC/{object}/EnergyWh", "UInt32", 0.001),
        nodemaps.NodePoint("active_power", "s={object}.PowerKw", "Float", deadband=0.5),
    ))

    async def scenario() -> list[wire.Batch]:
        plc = await OpcUaPlc(served, ["mill"], port=free_port()).start()
        try:
            cfg = GatewayConfig.model_validate({
                "gateway": {"site": "ua", "id": "gw1", "poll_interval_s": 1.0, "data_dir": str(tmp_path / "edge")}, "mqtt": {"port": 1},
                "opcua_servers": [{"name": "plc", "endpoint": plc.endpoint, "security_policy": "None", "publishing_interval_ms": 50}],
                "node_maps": [{"name": "site-map", "namespace": "urn:example:mill", "points": [
                    {"name": "active_energy_import", "node": "/Objects/PLC/{object}/EnergyWh", "ua_type": "UInt32", "scale": 0.001},
                    {"name": "active_power", "node": "nsu=urn:example:mill;s={object}.PowerKw", "ua_type": "Float", "deadband": 0.5}]}],
                "devices": [{"id": "mill", "driver": "opcua", "server": "plc", "node_map": "site-map", "rated_power_kw": 90000}]})
            agent = Agent(cfg)
            await plc.set("mill", {"active_energy_import": 2**32 * 0.001 - 1.0, "active_power": 100.0})
            await asyncio.sleep(0.2)
            await agent.poll_once()
            await plc.set("mill", {"active_energy_import": 2.0, "active_power": 100.2})  # rolled over; power inside the deadband
            await asyncio.sleep(0.3)
            await agent.poll_once()
            await agent.close_sessions()
            return _batches(agent)
        finally:
            await plc.stop()

    b = asyncio.run(scenario())
    e0, e1 = (x.devices[0].values["active_energy_import"].v for x in b)
    assert e0 is not None and e1 is not None and e1 - e0 == pytest.approx(3.0, abs=1e-6)  # across the UDINT rollover
    assert [e.kind for e in b[1].events] == ["counter_rollover"]
    assert [x.devices[0].values["active_power"].v for x in b] == [100.0, 100.0]  # 0.2 kW change inside the 0.5 kW deadband


def test_simulated_plant_serves_production_over_opcua_as_over_modbus(tmp_path: Path) -> None:
    """The steel simulator's PLC: the gateway config it writes reads the line counters over a secure OPC UA session,
    and they agree with what the same PLC serves over Modbus and with the simulation itself."""
    from carbonedge import profiles
    from carbonedge.clock import ClockSpec, VirtualClock, parse_time
    from carbonedge.edge.config import load_config
    from carbonedge.edge.drivers import ModbusTcpDriver
    from carbonedge.simulators import Simulation, run

    start = parse_time("2026-01-05T00:00:00Z")
    sim = Simulation(plant="steel", seed=3, start=start, end=start + 7200)

    async def scenario() -> tuple[list[wire.Batch], dict[str, Any], dict[str, float]]:
        clock = VirtualClock(ClockSpec(start=start, speed=3600.0, origin=time.time()))
        stop = asyncio.Event()
        task = asyncio.create_task(run(sim, clock, tmp_path / "sim", stop=stop, plc_protocol="opcua"))
        while not (tmp_path / "sim" / "truth.json").exists():
            assert not task.done(), task
            await asyncio.sleep(0.05)
        cfg = load_config(tmp_path / "sim" / "gateway.toml")
        lines = [d for d in cfg.devices if d.driver == "opcua"]
        assert {d.id for d in lines} == {c.device for c in sim.counters}
        assert cfg.opcua_servers[0].security_policy == "Basic256Sha256" and cfg.opcua_servers[0].security_mode == "SignAndEncrypt"
        cfg = cfg.model_copy(update={"devices": lines, "gateway": cfg.gateway.model_copy(update={"data_dir": tmp_path / "edge"})})
        agent = Agent(cfg, clock=clock)
        for _ in range(50):  # the secure session opens in the background of the first (fast) cycles
            await agent.poll_once()
            if all(d.status == "ok" for d in _batches(agent)[-1].devices):
                break
            await asyncio.sleep(0.2)
        await agent.close_sessions()
        devs = {d["id"]: d for d in json.loads((tmp_path / "sim" / "devices.json").read_text())}
        by_modbus = {}
        for c in sim.counters:
            d = devs[c.device]
            drv = ModbusTcpDriver(d["id"], profiles.get_profile(d["profile"]), d["host"], d["port"], d["unit_id"], 2.0)
            by_modbus[c.device] = await drv.read()
            drv.close()
        stop.set()
        await task
        return _batches(agent), by_modbus, {c.device: c.process.production for c in sim.counters}

    import json

    batches, by_modbus, truth = asyncio.run(scenario())
    b = batches[-1]
    assert truth["eaf-line"] > 100  # two hours of heats
    for d in b.devices:
        assert d.status == "ok", d.error
        assert d.values["production_mass"].v == pytest.approx(truth[d.device], abs=1e-9)  # a Double: exact
        assert d.values["production_mass"].v == pytest.approx(by_modbus[d.device]["production_mass"], abs=0.001)  # Modbus: whole kg
        assert d.values["production_count"].v == by_modbus[d.device]["production_count"]


def test_opcua_cert_command_writes_a_usable_certificate_and_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from carbonedge.app.cli import main
    from carbonedge.edge.drivers.opcua import certificate_uri

    assert main(["opcua", "cert", "--out", str(tmp_path), "--uri", "urn:plant-a:gw1", "--hostname", "gw1.plant-a"]) == 0
    assert certificate_uri(tmp_path / "gateway-cert.pem") == "urn:plant-a:gw1"
    assert (tmp_path / "gateway-key.pem").stat().st_mode & 0o777 == 0o600
    assert main(["opcua", "cert", "--out", str(tmp_path)]) == 2
    assert "not overwritten" in capsys.readouterr().err
