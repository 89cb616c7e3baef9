"""The broker as deployed: deploy/mosquitto/carbonedge.conf with certificates and ACL from deploy/pki.

A real Mosquitto runs the shipped config (only paths and the port are rewritten to a temporary
directory and a free loopback port). Refusals are observed the way a client sees them:
MQTT v5 PUBACK reason 0x87, no delivery, failed TLS handshakes. "Nothing was delivered" is
proven with a sentinel: the forbidden message is sent first, an allowed one after it on the
same connection, and the broker keeps per-client order, so once the sentinel arrives the
forbidden message would have arrived too.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from carbonedge.app.services import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[1]
PKI = REPO / "deploy" / "pki" / "carbonedge-pki.sh"
CONF = REPO / "deploy" / "mosquitto" / "carbonedge.conf"
WAIT = 10.0  # seconds to wait for a broker answer before calling the test failed (not a timing assertion)
NOT_AUTHORIZED = 0x87


def _pki(pki_dir: Path, *args: str) -> str:
    r = subprocess.run(["bash", str(PKI), *args], env={"PKI_DIR": str(pki_dir), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


@dataclass
class Broker:
    port: int
    pki: Path
    server: Mosquitto
    log: Path

    def cert(self, name: str) -> tuple[str, str]:
        return str(self.pki / "issued" / f"{name}.crt"), str(self.pki / "issued" / f"{name}.key")


def deploy_config(pki: Path, port: int, log: Path) -> str:
    """The shipped config with its /etc paths pointed at ``pki`` and the listener on loopback."""
    text = CONF.read_text()
    text = text.replace("/etc/mosquitto/carbonedge/broker.crt", str(pki / "issued" / "broker-localhost.crt"))
    text = text.replace("/etc/mosquitto/carbonedge/broker.key", str(pki / "issued" / "broker-localhost.key"))
    text = text.replace("/etc/mosquitto/carbonedge/", f"{pki}/")
    text = re.sub(r"^listener 8883$", f"listener {port} 127.0.0.1", text, flags=re.M)
    # services.Mosquitto writes its own persistence settings into the run directory.
    lines = [line for line in text.splitlines() if not line.startswith(("persistence", "autosave"))]
    return "\n".join([*lines, f"log_dest file {log}"])  # a file log is flushed per line (stdout is buffered)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _pki(d, "init")
    _pki(d, "broker", "localhost", "127.0.0.1")
    for site, gw in (("steel-a", "gw1"), ("steel-a", "gw2"), ("battery-b", "gw1"), ("steel-a", "stolen")):
        _pki(d, "gateway", site, gw)
    _pki(d, "collector", "plant-server-1")
    # Keep the stolen gateway's certificate and key (revoking deletes the key from the PKI directory).
    kept = d / "stolen"
    kept.mkdir()
    for ext in ("crt", "key"):
        (kept / f"stolen.{ext}").write_bytes((d / "issued" / f"gateway-steel-a-stolen.{ext}").read_bytes())
    _pki(d, "revoke", "stolen@steel-a")
    return d


@pytest.fixture(scope="module")
def broker(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    port = free_port()
    run = tmp_path_factory.mktemp("broker")
    server = Mosquitto("mosquitto-deploy", port, run).start(extra_config=deploy_config(pki, port, run / "broker.log"))
    yield Broker(port, pki, server, run / "broker.log")
    server.stop()


@dataclass
class Client:
    """A paho MQTT v5 client that records what the broker says."""

    c: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    reason: object = None
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    got: threading.Condition = field(default_factory=threading.Condition)
    pubacks: dict[int, int] = field(default_factory=dict)
    subacks: dict[int, list[int]] = field(default_factory=dict)
    acked: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, topic: str, payload: bytes = b"x", retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        with self.acked:
            assert self.acked.wait_for(lambda: info.mid in self.pubacks, WAIT), f"no PUBACK for {topic}"
            return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> int:
        """Subscribe at QoS 1 and return the SUBACK reason code."""
        _, mid = self.c.subscribe(topic, qos=1)
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.subacks, WAIT), f"no SUBACK for {topic}"
            return self.subacks[mid][0]

    def wait_for(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Block until (topic, payload) arrived; return everything received up to then."""
        with self.got:
            assert self.got.wait_for(lambda: (topic, payload) in self.messages, WAIT), f"{topic} {payload!r} never arrived"
            return list(self.messages)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def connect(port: int, *, cert: tuple[str, str] | None, ca: Path | None, tls: bool = True) -> Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    cl = Client(c)
    if tls:
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
        if cert:
            ctx.load_cert_chain(*cert)
        c.tls_set_context(ctx)

    def on_connect(_c, _u, _f, reason, _p):  # type: ignore[no-untyped-def]
        cl.reason = reason
        cl.connected.set()

    def on_disconnect(_c, _u, _f, reason, _p):  # type: ignore[no-untyped-def]
        cl.reason = cl.reason or reason
        cl.closed.set()

    def on_message(_c, _u, msg):  # type: ignore[no-untyped-def]
        with cl.got:
            cl.messages.append((msg.topic, msg.payload))
            cl.got.notify_all()

    def on_publish(_c, _u, mid, reason, _p):  # type: ignore[no-untyped-def]
        with cl.acked:
            cl.pubacks[mid] = reason.value
            cl.acked.notify_all()

    def on_subscribe(_c, _u, mid, reasons, _p):  # type: ignore[no-untyped-def]
        with cl.acked:
            cl.subacks[mid] = [r.value for r in reasons]
            cl.acked.notify_all()

    c.on_connect, c.on_disconnect, c.on_message, c.on_publish, c.on_subscribe = on_connect, on_disconnect, on_message, on_publish, on_subscribe
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        c.connect("127.0.0.1", port, keepalive=30, clean_start=True, properties=props)
    except (ssl.SSLError, OSError) as exc:
        cl.reason = exc
        cl.closed.set()
        return cl
    c.loop_start()
    return cl


def refused(cl: Client) -> bool:
    """True when the broker did not let the client in (CONNACK failure, TLS alert or closed socket)."""
    for _ in range(int(WAIT * 20)):  # wait for whichever comes first: a CONNACK or the connection dropping
        if cl.closed.is_set() or cl.connected.is_set():
            break
        cl.closed.wait(0.05)
    ok = cl.connected.is_set() and not getattr(cl.reason, "is_failure", True)
    cl.c.disconnect()
    cl.c.loop_stop()
    return not ok


@pytest.fixture
def clients(broker: Broker) -> Iterator[dict[str, Client]]:
    ca = broker.pki / "ca.crt"
    made = {
        "gw1": connect(broker.port, cert=broker.cert("gateway-steel-a-gw1"), ca=ca),
        "collector": connect(broker.port, cert=broker.cert("collector-plant-server-1"), ca=ca),
    }
    for name, cl in made.items():
        assert cl.connected.wait(WAIT), f"{name} could not connect: {cl.reason}"
        assert not cl.reason.is_failure, f"{name} refused: {cl.reason}"  # type: ignore[attr-defined]
    yield made
    for cl in made.values():
        cl.close()


def test_tls_gateway_publishes_its_own_telemetry_to_a_shared_collector_subscription(clients: dict[str, Client]) -> None:
    gw, coll = clients["gw1"], clients["collector"]
    assert coll.subscribe("$share/carbonedge/carbonedge/v1/+/+/telemetry") < 0x80
    assert gw.publish("carbonedge/v1/steel-a/gw1/telemetry", b"batch-1") == 0
    coll.wait_for("carbonedge/v1/steel-a/gw1/telemetry", b"batch-1")
    assert gw.c.socket().version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]


def test_gateway_cannot_publish_as_another_gateway_or_plant(clients: dict[str, Client]) -> None:
    gw, coll = clients["gw1"], clients["collector"]
    assert coll.subscribe("carbonedge/v1/+/+/telemetry") < 0x80
    forged = ["carbonedge/v1/steel-a/gw2/telemetry", "carbonedge/v1/battery-b/gw1/telemetry", "carbonedge/v1/steel-a/gw1/ack",
              "carbonedge/v1/steel-a/gw1/deadletter", "other/topic"]
    for topic in forged:
        assert gw.publish(topic, b"forged") == NOT_AUTHORIZED, topic
    assert gw.publish("carbonedge/v1/steel-a/gw1/telemetry", b"sentinel") == 0
    seen = coll.wait_for("carbonedge/v1/steel-a/gw1/telemetry", b"sentinel")
    assert not [m for m in seen if m[1] == b"forged"]


def test_gateway_reads_only_its_own_ack(clients: dict[str, Client]) -> None:
    gw, coll = clients["gw1"], clients["collector"]
    for topic in ("carbonedge/v1/battery-b/gw1/ack", "carbonedge/v1/steel-a/gw2/ack", "carbonedge/v1/battery-b/gw1/telemetry"):
        gw.subscribe(topic)
    gw.subscribe("carbonedge/v1/+/+/telemetry")
    gw.subscribe("carbonedge/v1/steel-a/gw1/ack")
    # The collector writes acks for several gateways (retained, as in production) and a telemetry
    # message from another plant is in flight; gw1 must see only its own ack.
    assert coll.publish("carbonedge/v1/battery-b/gw1/ack", b"other-plant", retain=True) == 0
    assert coll.publish("carbonedge/v1/steel-a/gw2/ack", b"other-gateway", retain=True) == 0
    assert coll.publish("carbonedge/v1/steel-a/gw1/ack", b"mine", retain=True) == 0
    seen = gw.wait_for("carbonedge/v1/steel-a/gw1/ack", b"mine")
    assert seen == [("carbonedge/v1/steel-a/gw1/ack", b"mine")]


def test_collector_cannot_impersonate_a_gateway(clients: dict[str, Client]) -> None:
    coll = clients["collector"]
    assert coll.publish("carbonedge/v1/steel-a/gw1/telemetry", b"forged") == NOT_AUTHORIZED
    assert coll.publish("carbonedge/v1/steel-a/gw1/status", b"forged") == NOT_AUTHORIZED


@pytest.mark.parametrize("case", ["anonymous-tls", "plaintext", "untrusted-ca", "revoked", "no-ca-check"])
def test_broker_refuses(broker: Broker, case: str, tmp_path: Path) -> None:
    ca = broker.pki / "ca.crt"
    if case == "anonymous-tls":  # TLS but no client certificate
        cl = connect(broker.port, cert=None, ca=ca)
    elif case == "plaintext":
        cl = connect(broker.port, cert=None, ca=None, tls=False)
    elif case == "untrusted-ca":  # a certificate for a real gateway name, from another CA
        rogue = tmp_path / "rogue"
        _pki(rogue, "init")
        _pki(rogue, "gateway", "steel-a", "gw2")
        cl = connect(broker.port, cert=(str(rogue / "issued" / "gateway-steel-a-gw2.crt"), str(rogue / "issued" / "gateway-steel-a-gw2.key")), ca=ca)
    elif case == "revoked":
        cl = connect(broker.port, cert=(str(broker.pki / "stolen" / "stolen.crt"), str(broker.pki / "stolen" / "stolen.key")), ca=ca)
    else:  # the client side: a gateway that does not trust the plant CA refuses the broker
        ctx = ssl.create_default_context()
        with socket.create_connection(("127.0.0.1", broker.port), timeout=WAIT) as raw, pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="localhost")
        return
    assert refused(cl), f"{case}: the broker accepted the connection"
    if case == "revoked":  # refused because of the CRL the broker loads, not for another reason
        r = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(ca), "-CRLfile", str(broker.pki / "crl.pem"),
                            str(broker.pki / "stolen" / "stolen.crt")], capture_output=True, text=True, check=False)
        assert "certificate revoked" in r.stdout + r.stderr
