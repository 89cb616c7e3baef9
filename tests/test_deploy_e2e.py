"""The whole data path as deployed: TLS-only Mosquitto with the shipped config, certificates and ACL
from deploy/pki, InfluxDB with the shipped config and users from deploy/influxdb/setup-auth.sh, a
collector started with the flags of deploy/collector's unit (its own client certificate, the
write-only InfluxDB user), and a gateway with its own certificate. Every reading the gateway
committed must land, the gateway's outbox must drain on the collector's watermark, and the
read-only users must see the data."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from carbonedge.clock import ClockSpec, VirtualClock, parse_time
from carbonedge.app.services import Mosquitto, free_port
from carbonedge.edge import Agent
from carbonedge.edge.config import GatewayConfig
from test_deploy_influxdb import DeployedInfluxDB, run_setup
from test_deploy_mosquitto import _pki, deploy_config

START = parse_time("2026-01-05T00:00:00Z")
REPO = Path(__file__).resolve().parents[1]


def _count(url: str, auth: tuple[str, str]) -> int:
    r = requests.post(f"{url}/query", params={"db": "carbonedge"}, data={"q": 'SELECT count("active_energy_import") FROM "readings"'},
                      auth=auth, timeout=30)
    r.raise_for_status()
    series = r.json()["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_gateway_to_influxdb_with_the_shipped_security_configs(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    _pki(pki, "init")
    _pki(pki, "broker", "localhost", "127.0.0.1")
    _pki(pki, "gateway", "steel-a", "gw1")
    _pki(pki, "collector", "plant-server-1")

    port = free_port()
    broker = Mosquitto("mosquitto-deploy", port, tmp_path / "broker").start(extra_config=deploy_config(pki, port, tmp_path / "broker.log"))
    influx = DeployedInfluxDB("influxd-deploy", free_port(), tmp_path / "influx").start()
    collector: subprocess.Popen[bytes] | None = None
    try:
        secrets = tmp_path / "secrets"
        r = run_setup(influx.url, secrets)
        assert r.returncode == 0, r.stdout + r.stderr
        pw = {u: (secrets / f"{u}.password").read_text().strip() for u in ("collector", "grafana", "analytics")}

        issued = pki / "issued"
        with (tmp_path / "collector.log").open("wb") as log:
            collector = subprocess.Popen(
                [sys.executable, "-m", "carbonedge.app.cli", "collect", "--mqtt-host", "localhost", "--mqtt-port", str(port),
                 "--mqtt-tls-ca", str(pki / "ca.crt"), "--mqtt-tls-cert", str(issued / "collector-plant-server-1.crt"),
                 "--mqtt-tls-key", str(issued / "collector-plant-server-1.key"),
                 "--influx-url", influx.url, "--influx-user", "collector", "--state-dir", str(tmp_path / "collector"),
                 "--client-id", "collector-1"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CARBONEDGE_INFLUX_PASSWORD": pw["collector"]}, cwd=REPO)

        cfg = GatewayConfig.model_validate({
            "gateway": {"site": "steel-a", "id": "gw1", "poll_interval_s": 60, "data_dir": str(tmp_path / "edge")},
            "mqtt": {"host": "localhost", "port": port, "reconnect_max_s": 1, "tls": {
                "ca_file": str(pki / "ca.crt"), "cert_file": str(issued / "gateway-steel-a-gw1.crt"),
                "key_file": str(issued / "gateway-steel-a-gw1.key")}},
            "devices": [{"id": f"m{i}", "profile": "eastron-sdm630", "driver": "simulated"} for i in range(3)],
        })
        clock = VirtualClock(ClockSpec(start=START, speed=1200.0, origin=time.time() + 2))
        agent = Agent(cfg, clock=clock)

        async def go() -> dict:  # type: ignore[type-arg]
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(until=START + 30 * 60, exit_when_drained=True, stop=stop))
            try:
                return await asyncio.wait_for(task, 90)
            except TimeoutError:
                stop.set()
                raise

        stats = asyncio.run(go())
        committed = agent.outbox.last_seq
        assert committed >= 25, stats
        assert agent.publisher.acked_watermark == committed, f"the collector confirmed {agent.publisher.acked_watermark} of {committed} cycles"
        # Every committed cycle carries one energy value per meter; the read-only users see all of them.
        assert _count(influx.url, ("grafana", pw["grafana"])) == 3 * committed
        assert _count(influx.url, ("analytics", pw["analytics"])) == 3 * committed
    finally:
        if collector is not None:
            collector.terminate()
            try:
                collector.wait(20)
            except subprocess.TimeoutExpired:
                collector.kill()
        influx.stop()
        broker.stop()
    text = (tmp_path / "collector.log").read_text()
    assert "refused" not in text and "Forbidden" not in text and "could not check" not in text, text[-2000:]
