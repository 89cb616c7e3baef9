"""Analytics on the broker as deployed: its own certificate from deploy/pki, read-only on telemetry, alerts only.

A real Mosquitto runs deploy/mosquitto/carbonedge.conf (TLS, client certificates required, CRL, the ACL
carbonedge-pki.sh writes). A real gateway (simulated meter) and a real collector deliver telemetry into
InfluxDB over it with their own certificates; the analytics identity reads that live telemetry and cannot
write it; ``carbonedge analyze monitor --mqtt-host`` connects with the analytics certificate and its alert
transitions arrive at a subscriber. Without a client certificate (all the monitor could offer before) the
broker refuses it, and the monitor says why in one line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbonedge import wire
from carbonedge.app import cli
from carbonedge.app.services import Mosquitto, free_port
from carbonedge.clock import ClockSpec, VirtualClock, parse_time
from carbonedge.collector import Collector, CollectorSettings
from carbonedge.edge import Agent
from carbonedge.edge.config import GatewayConfig
from carbonedge.influx import InfluxClient, lp_line, quote_literal, rows
from carbonedge.mqtt import BrokerSettings, make_client
from carbonedge.simulators import Scenario, generate
from test_deploy_mosquitto import NOT_AUTHORIZED, WAIT, _pki, deploy_config

T0 = "2026-01-05T00:00:00Z"
T0_MS = int(parse_time(T0) * 1000)
SITE = "steel-a"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _pki(d, "init")
    _pki(d, "broker", "localhost", "127.0.0.1")
    _pki(d, "gateway", SITE, "gw1")
    _pki(d, "collector", "plant-server-1")
    _pki(d, "analytics", "plant-server-1")  # the monitor
    _pki(d, "analytics", "control-room")  # a second reader (an HMI) that watches the alerts
    return d


@pytest.fixture(scope="module")
def broker(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    run = tmp_path_factory.mktemp("broker")
    server = Mosquitto("mosquitto-deploy", port, run).start(extra_config=deploy_config(pki, port, run / "broker.log"))
    yield port
    server.stop()


def _identity(pki: Path, name: str, port: int) -> BrokerSettings:
    return BrokerSettings(host="127.0.0.1", port=port, client_id=name, ca_file=pki / "ca.crt", cert_file=pki / "issued" / f"{name}.crt",
                          key_file=pki / "issued" / f"{name}.key")


class Recorder:
    """A client made by the shared factory that records messages and PUBACK reason codes."""

    def __init__(self, settings: BrokerSettings, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, int] = {}
        self.cond = threading.Condition()
        self.subscribed = threading.Event()

        def on_connect(client: Any, flags: Any, props: Any) -> None:
            if topics:
                client.subscribe([(t, 1) for t in topics])

        self.link = make_client(settings, who="test", log=logging.getLogger("test.deploy"), on_connect=on_connect)
        c = self.link.client

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            with self.cond:
                self.messages.append((msg.topic, msg.payload))
                self.cond.notify_all()

        def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
            with self.cond:
                self.pubacks[mid] = reason.value
                self.cond.notify_all()

        c.on_message, c.on_publish = on_message, on_publish
        c.on_subscribe = lambda *a: self.subscribed.set()
        if not topics:
            self.subscribed.set()
        self.link.connect(WAIT)
        assert self.subscribed.wait(WAIT), "no SUBACK"

    def wait(self, pred: Any, what: str, timeout: float = 30.0) -> list[tuple[str, bytes]]:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.messages), timeout), f"{what} never arrived"
            return list(self.messages)

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        info = self.link.client.publish(topic, payload, qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.pubacks, WAIT), f"no PUBACK for {topic}"
            return self.pubacks[info.mid]

    def close(self) -> None:
        self.link.close()


def test_the_analytics_identity_reads_live_telemetry_and_cannot_write_it(pki: Path, broker: int, services: Any, database: str,
                                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reader = Recorder(_identity(pki, "analytics-plant-server-1", broker),
                      ["carbonedge/v1/+/+/telemetry", "carbonedge/v1/+/+/status", "carbonedge/v1/+/+/ack"])
    coll = Collector(CollectorSettings(
        mqtt_host="127.0.0.1", mqtt_port=broker, mqtt_tls_ca=pki / "ca.crt", mqtt_tls_cert=pki / "issued" / "collector-plant-server-1.crt",
        mqtt_tls_key=pki / "issued" / "collector-plant-server-1.key", influx_url=services.influx.url, database=database,
        state_dir=tmp_path / "collector", client_id="collector:plant-server-1", share_group="carbonedge"))
    ct = threading.Thread(target=coll.run, daemon=True)
    ct.start()
    cfg = GatewayConfig.model_validate({
        "gateway": {"site": SITE, "id": "gw1", "poll_interval_s": 60, "data_dir": str(tmp_path / "gw")},
        "mqtt": {"host": "127.0.0.1", "port": broker, "reconnect_max_s": 1,
                 "tls": {"ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "issued" / f"gateway-{SITE}-gw1.crt"),
                         "key_file": str(pki / "issued" / f"gateway-{SITE}-gw1.key")}},
        "devices": [{"id": "m1", "profile": "eastron-sdm630", "driver": "simulated"}],
    })
    agent = Agent(cfg, clock=VirtualClock(ClockSpec(start=parse_time(T0), speed=600.0, origin=time.time())))

    def acked(msgs: list[tuple[str, bytes]]) -> bool:
        return any(t == f"carbonedge/v1/{SITE}/gw1/ack" and json.loads(p)["watermark"] >= 3 for t, p in msgs)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop=stop))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not acked(reader.messages):
            await asyncio.sleep(0.1)
        stop.set()
        await task

    try:
        assert coll.connected.wait(WAIT), "the collector could not subscribe with its certificate"
        asyncio.run(go())
        seen = reader.wait(acked, "the collector's acknowledgement of seq 3")
        batches = [wire.Batch.model_validate_json(p) for t, p in seen if t == f"carbonedge/v1/{SITE}/gw1/telemetry"]
        assert len({b.seq for b in batches}) >= 3 and batches[0].devices[0].device == "m1"
        assert any(t == f"carbonedge/v1/{SITE}/gw1/status" for t, _ in seen)
        # Read-only: analytics can neither forge telemetry nor confirm (and so prune) a gateway's batches.
        for topic in (f"carbonedge/v1/{SITE}/gw1/telemetry", f"carbonedge/v1/{SITE}/gw1/ack", f"carbonedge/v1/{SITE}/gw1/status",
                      f"carbonedge/v1/{SITE}/gw1/deadletter"):
            assert reader.publish(topic, b"forged") == NOT_AUTHORIZED, topic
        with InfluxClient(services.influx.url, database) as db:
            stored = list(rows(db.query(f'SELECT count("seq") FROM "readings" WHERE "site" = {quote_literal(SITE)}')))
        assert stored and stored[0]["count"] >= 3
        # `carbonedge status` with the analytics certificate reads the retained status and acknowledgement.
        issued = pki / "issued"
        code = cli.main(["status", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker), "--mqtt-tls-ca", str(pki / "ca.crt"),
                         "--mqtt-tls-cert", str(issued / "analytics-plant-server-1.crt"), "--mqtt-tls-key", str(issued / "analytics-plant-server-1.key"),
                         "--influx-url", services.influx.url, "--database", database, "--wait", "1", "--json"])
        out = capsys.readouterr().out
        assert code == 0
        gw = {g["gateway"]: g for g in json.loads(out)["gateways"]}[f"{SITE}/gw1"]
        assert gw["state"] == "offline" and gw["watermark"] >= 3
    finally:
        coll.stop()
        ct.join(30)
        reader.close()


@pytest.fixture(scope="module")
def fault_data(services: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Seven plant hours with a stuck meter and a communication loss after hour 5, in a fresh database."""
    out = tmp_path_factory.mktemp("faults")
    d = {"scenario": {"plant": "steel", "seed": 3, "start": T0, "duration": "7h", "poll_interval": "60s", "site": SITE},
         "calendar": {"shifts": ["Mon-Fri 00:00-22:00"]},
         "faults": [{"id": "stuck", "kind": "stuck_meter", "device": "caster-meter", "start": "5h", "end": "6h"},
                    {"id": "comm", "kind": "comm_loss", "device": "hot-strip-mill-meter", "start": "5h30m", "end": "6h"}]}
    run = generate(Scenario.from_dict(d, source="test"), out / "gen")
    from carbonedge.analytics.monitor import read_device_csvs

    where = {dev: (spec.get("area") or "plant", name) for name, spec in run.plant["processes"].items()
             for dev in list(spec.get("meters", [])) + list(spec.get("counters", []))}
    lines = []
    for seq, (t, devs) in enumerate(read_device_csvs(out / "gen")):
        for dev, vals in devs.items():
            area, proc = where.get(dev, ("plant", "plant"))
            fields: dict[str, float | int | str | bool] = {q: float(v) for q, v in vals.items() if v == v}
            fields["seq"] = seq
            lines.append(lp_line("readings", {"site": SITE, "gateway": "gw1", "device": dev, "area": area, "process": proc}, fields, t))
    db = f"t_{uuid.uuid4().hex[:10]}"
    services.influx.create_database(db)
    with InfluxClient(services.influx.url, db) as c:
        c.write_lines(lines, what="test readings", batch=20_000)
    plant = out / "plant.json"
    plant.write_text(json.dumps(run.plant))
    return {"db": db, "plant": plant}


def _monitor(services: Any, data: dict[str, Any], port: int, tls: list[str], tmp: Path) -> list[str]:
    return ["analyze", "monitor", "--plant", str(data["plant"]), "--site", SITE, "--influx-url", services.influx.url, "--database", data["db"],
            "--once", "--start", T0, "--end", "2026-01-05T07:00:00Z", "--learn-hours", "3", "--no-influx-alerts",
            "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), *tls]


def test_analyze_monitor_publishes_alerts_with_the_analytics_certificate(pki: Path, broker: int, services: Any, fault_data: dict[str, Any],
                                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hmi = Recorder(_identity(pki, "analytics-control-room", broker), [f"carbonedge/v1/{SITE}/analytics/alerts"])
    try:
        issued = pki / "issued"
        code = cli.main(_monitor(services, fault_data, broker, ["--mqtt-tls-ca", str(pki / "ca.crt"),
                                                                 "--mqtt-tls-cert", str(issued / "analytics-plant-server-1.crt"),
                                                                 "--mqtt-tls-key", str(issued / "analytics-plant-server-1.key")], tmp_path))
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "alerts delivered: InfluxDB 0, MQTT 4," in out.out, out.out
        seen = hmi.wait(lambda m: len(m) >= 4, "four alert transitions")
        events = [json.loads(p) for _, p in seen]
        assert {(e["kind"], e["state"]) for e in events} >= {("stuck_meter", "open"), ("comm_loss", "open"),
                                                                                ("stuck_meter", "resolved"), ("comm_loss", "resolved")}
    finally:
        hmi.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # paho leaves a failed TLS socket to the GC
def test_without_a_client_certificate_the_monitor_is_refused_in_one_line(pki: Path, broker: int, services: Any,
                                                                         fault_data: dict[str, Any], tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(_monitor(services, fault_data, broker, ["--mqtt-tls-ca", str(pki / "ca.crt")], tmp_path))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"analytics cannot connect to MQTT broker 127.0.0.1:{broker}" in err, err


def test_alerts_the_broker_refuses_are_not_counted_as_delivered(pki: Path, broker: int, services: Any, fault_data: dict[str, Any],
                                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A collector certificate may not publish alerts: PUBACK 0x87, and the monitor stops without advancing."""
    issued = pki / "issued"
    state = tmp_path / "monitor.state"
    argv = _monitor(services, fault_data, broker, ["--mqtt-tls-ca", str(pki / "ca.crt"), "--mqtt-tls-cert", str(issued / "collector-plant-server-1.crt"),
                                                    "--mqtt-tls-key", str(issued / "collector-plant-server-1.key"), "--state", str(state)], tmp_path)
    code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 2 and "confirmed only 0 of" in out.err and "alerts delivered" not in out.out, (out.out, out.err)

