"""Gateway transport security against a real Mosquitto: TLS with client certificates, username/password,
and refusal (nothing delivered, nothing pruned) when the credentials are wrong."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from carbonedge.clock import ClockSpec, VirtualClock, parse_time
from carbonedge.app.services import Mosquitto, free_port
from carbonedge.edge import Agent
from carbonedge.edge.config import GatewayConfig
from test_edge_pipeline import Acker

START = parse_time("2026-01-05T00:00:00Z")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away CA, a broker certificate for 127.0.0.1, and a gateway client certificate."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test plant CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn, ext in (("broker", "127.0.0.1", ["-extfile", "san.ext"]), ("gateway", "gw1@secure", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", *ext,
                 "-out", f"{name}.crt", cwd=d)
    # A second CA the broker does not trust.
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rogue CA", "-keyout", "rogue.key", "-out", "rogue.crt", cwd=d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "gw1", "correct horse"], check=True, capture_output=True)
    return d


@pytest.fixture(scope="module")
def broker(pki: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    plain, tls, pw = free_port(), free_port(), free_port()
    conf = f"""per_listener_settings true
listener {plain} 127.0.0.1
allow_anonymous true
listener {tls} 127.0.0.1
allow_anonymous false
cafile {pki}/ca.crt
certfile {pki}/broker.crt
keyfile {pki}/broker.key
require_certificate true
use_identity_as_username true
listener {pw} 127.0.0.1
allow_anonymous false
password_file {pki}/passwd
"""
    m = Mosquitto("mosquitto", plain, tmp_path_factory.mktemp("secure-broker")).start(extra_config=conf)
    yield {"plain": plain, "tls": tls, "password": pw}
    m.stop()


def _run_gateway(tmp_path: Path, site: str, mqtt: dict, acker: Acker, want: int, wall_s: float) -> Agent:  # type: ignore[type-arg]
    cfg = GatewayConfig.model_validate({
        "gateway": {"site": site, "id": "gw1", "poll_interval_s": 60, "data_dir": str(tmp_path / site)},
        "mqtt": {"reconnect_max_s": 1, **mqtt},
        "devices": [{"id": "m1", "profile": "eastron-sdm630", "driver": "simulated"}],
    })
    agent = Agent(cfg, clock=VirtualClock(ClockSpec(start=START, speed=600.0, origin=time.time())))

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop=stop))
        deadline = time.monotonic() + wall_s
        while acker.watermark < want and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(go())
    return agent


def test_tls_with_a_client_certificate_delivers(tmp_path, pki, broker):
    acker = Acker(broker["plain"], "secure", "gw1")
    try:
        agent = _run_gateway(tmp_path, "secure", {"port": broker["tls"], "tls": {
            "ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "gateway.crt"), "key_file": str(pki / "gateway.key")}}, acker, 3, 30)
    finally:
        acker.close()
    assert acker.watermark >= 3 and agent.publisher.counters["connects"] >= 1


def test_username_and_password_file_deliver(tmp_path, broker):
    pw = tmp_path / "mqtt-password"
    pw.write_text("correct horse\n")
    acker = Acker(broker["plain"], "pwsite", "gw1")
    try:
        _run_gateway(tmp_path, "pwsite", {"port": broker["password"], "username": "gw1", "password_file": str(pw)}, acker, 3, 30)
    finally:
        acker.close()
    assert acker.watermark >= 3


@pytest.mark.parametrize("case", ["wrong password", "untrusted client certificate", "no client certificate"])
def test_refused_credentials_deliver_nothing_and_keep_everything(tmp_path, pki, broker, case):
    site = "refused-" + case.split()[0]
    if case == "wrong password":
        mqtt = {"port": broker["password"], "username": "gw1", "password": "wrong"}
    elif case == "untrusted client certificate":
        mqtt = {"port": broker["tls"], "tls": {"ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "rogue.crt"), "key_file": str(pki / "rogue.key")}}
    else:
        mqtt = {"port": broker["tls"], "tls": {"ca_file": str(pki / "ca.crt")}}
    acker = Acker(broker["plain"], site, "gw1")
    try:
        agent = _run_gateway(tmp_path, site, mqtt, acker, 1, 3.0)
    finally:
        acker.close()
    assert acker.watermark == 0 and not acker.batches
    assert agent.publisher.counters["connects"] == 0
    st = agent.outbox.stats()
    assert st["last_seq"] >= 3 and st["batches"] == st["last_seq"]  # every cycle is still on disk, waiting
