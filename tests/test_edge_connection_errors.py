"""A gateway that cannot reach its broker says why within seconds, in the log and in its health metrics.

Real failures against a real Mosquitto: an unresolvable host name, nothing listening, a wrong password,
a broker certificate from a CA the gateway does not trust, plain MQTT to a TLS listener, and a client
certificate the broker does not trust.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from carbonedge.clock import ClockSpec, VirtualClock, parse_time
from carbonedge.app.services import free_port
from carbonedge.edge import Agent
from carbonedge.edge.config import GatewayConfig
from carbonedge.errors import describe_connect_error
from test_edge_security import broker, pki  # noqa: F401  (module fixtures: a throw-away PKI and a broker with TLS and passwords)

START = parse_time("2026-01-05T00:00:00Z")


def _run(tmp_path, mqtt: dict, wall_s: float) -> Agent:  # type: ignore[type-arg]
    cfg = GatewayConfig.model_validate({
        "gateway": {"site": "conn", "id": "gw1", "poll_interval_s": 60, "data_dir": str(tmp_path / "gw")},
        "mqtt": {"reconnect_max_s": 1, **mqtt},
        "devices": [{"id": "m1", "profile": "eastron-sdm630", "driver": "simulated"}],
    })
    agent = Agent(cfg, clock=VirtualClock(ClockSpec(start=START, speed=600.0, origin=time.time())))

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop=stop))
        deadline = time.monotonic() + wall_s
        while time.monotonic() < deadline and not agent.publisher.counters["connect_failures"]:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        stop.set()
        await task

    asyncio.run(go())
    return agent


# paho-mqtt 2.x leaves the socket of a failed TLS handshake to the garbage collector (a ResourceWarning, not ours).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("case", ["dns", "refused", "auth", "untrusted broker", "plain to tls", "untrusted client"])
def test_connection_failures_are_logged_with_the_reason_within_seconds(case, tmp_path, pki, broker, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="carbonedge.edge.publisher")
    mqtt: dict[str, object]
    if case == "dns":
        mqtt, kinds, words = {"host": "broker.plant.invalid"}, {"dns"}, "cannot resolve host name 'broker.plant.invalid'"
    elif case == "refused":
        port = free_port()
        mqtt, kinds, words = {"port": port}, {"refused"}, f"connection refused by 127.0.0.1:{port}"
    elif case == "auth":
        mqtt, kinds, words = {"port": broker["password"], "username": "gw1", "password": "wrong"}, {"auth"}, "username, password"
    elif case == "untrusted broker":
        mqtt, kinds, words = {"port": broker["tls"], "tls": {"ca_file": str(pki / "rogue.crt")}}, {"tls"}, "certificate was rejected"
    elif case == "plain to tls":
        mqtt, kinds, words = {"port": broker["tls"]}, {"closed", "network", "timeout"}, "cannot connect to MQTT broker"
    else:
        mqtt = {"port": broker["tls"], "tls": {"ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "rogue.crt"),
                                                "key_file": str(pki / "rogue.key")}}
        kinds, words = {"tls", "closed", "network"}, "cannot connect to MQTT broker"
    t0 = time.monotonic()
    agent = _run(tmp_path, mqtt, 10.0)
    warnings = [r for r in caplog.records if "cannot connect to MQTT broker" in r.getMessage()]
    assert warnings, f"{case}: nothing logged"
    assert warnings[0].created - caplog.records[0].created < 6.0 and time.monotonic() - t0 < 12
    assert words in warnings[0].getMessage(), warnings[0].getMessage()
    counters = agent.publisher.counters
    assert counters["connects"] == 0 and counters["connect_failures"] >= 1
    assert {k.removeprefix("connect_failures_") for k in counters if k.startswith("connect_failures_")} <= kinds
    assert agent.publisher.last_connect_error
    metrics = agent.health().metrics
    assert metrics["mqtt_connected"] == 0 and metrics["mqtt_connect_failures"] >= 1
    assert any(metrics.get(f"mqtt_connect_failures_{k}", 0) >= 1 for k in kinds)


def test_repeated_failures_are_not_logged_every_attempt(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="carbonedge.edge.publisher")
    port = free_port()
    cfg = GatewayConfig.model_validate({
        "gateway": {"site": "conn", "id": "gw1", "data_dir": str(tmp_path / "gw")}, "mqtt": {"port": port},
        "devices": [{"id": "m1", "profile": "eastron-sdm630", "driver": "simulated"}]})
    agent = Agent(cfg)
    pub = agent.publisher
    for _ in range(25):
        pub._connect_failed("refused", "connection refused")
    logged = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(logged) == 3 and "(20 attempts)" in logged[-1].getMessage()  # first, 10th, 20th
    pub._connect_failed("dns", "cannot resolve host name")  # a new reason is logged at once
    assert "resolve" in caplog.records[-1].getMessage()


def test_describe_connect_error_names_each_kind():
    import socket
    import ssl

    assert describe_connect_error(socket.gaierror(-2, "Name or service not known"), "b.invalid", 1883)[0] == "dns"
    assert describe_connect_error(ConnectionRefusedError(111, "Connection refused"), "h", 1)[0] == "refused"
    assert describe_connect_error(ssl.SSLError(1, "wrong version number"), "h", 1)[0] == "tls"
    assert describe_connect_error(TimeoutError(), "h", 1)[0] == "timeout"
    assert describe_connect_error(OSError(101, "Network is unreachable"), "h", 1) == ("network", "Network is unreachable")


@pytest.mark.parametrize("case", ["dns", "refused", "auth"])
def test_the_collector_says_why_it_cannot_connect(case, tmp_path, services, database, broker, caplog):  # noqa: F811
    import threading

    from carbonedge.collector import Collector, CollectorSettings

    caplog.set_level(logging.WARNING, logger="carbonedge.collector")
    kw: dict[str, object] = {"mqtt_port": free_port()}
    words = "connection refused"
    if case == "dns":
        kw, words = {"mqtt_host": "broker.plant.invalid"}, "cannot resolve host name"
    elif case == "auth":
        kw, words = {"mqtt_port": broker["password"], "mqtt_username": "gw1", "mqtt_password": "wrong"}, "mqtt-username"
    c = Collector(CollectorSettings(influx_url=services.influx.url, database=database, state_dir=tmp_path / "c", client_id="c-conn",
                                    share_group=None, **kw))  # type: ignore[arg-type]
    t = threading.Thread(target=c.run)
    t0 = time.monotonic()
    t.start()
    try:
        while time.monotonic() - t0 < 8 and not any(k.startswith("mqtt_connect_failures_") and v for k, v in c.counters.items()):
            time.sleep(0.05)
    finally:
        c.stop()
        t.join(15)
    assert time.monotonic() - t0 < 8, f"{case}: no connection failure counted"
    kinds = {k.removeprefix("mqtt_connect_failures_") for k, v in c.counters.items() if k.startswith("mqtt_connect_failures_") and v}
    assert kinds == {case}
    assert any(words in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert f"mqtt_connect_failures_{case}=" in c.metrics.pipeline_line("c-conn", 0)  # written to InfluxDB with the other metrics
