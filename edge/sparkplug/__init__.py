"""Sparkplug B edge node: the gateway's readings for SCADA and MES (Ignition, HiveMQ, Neuron), optional.

Sparkplug B 3.0 (Eclipse Sparkplug Specification v3.0.0) as an edge node whose devices are
the gateway's devices. It runs beside the durable JSON path, never instead of it: the
JSON batches (QoS 1, outbox, end-to-end watermark) stay the source of truth for the
collector, and Sparkplug's own reliability model (session state, ``seq``, rebirth) serves
the SCADA side.

The state machine, with the specification's rules:

- CONNECT registers the Will: ``NDEATH`` with the ``bdSeq`` metric, QoS 1, retain false.
  ``bdSeq`` grows by one per CONNECT (0-255, then 0) and survives restarts (``sparkplug.json``
  in the data directory), so a host matches a death to its birth.
- Once connected: subscribe to ``NCMD``/``DCMD``, publish ``NBIRTH`` (``seq`` 0, ``bdSeq``,
  ``Node Control/Rebirth``), then a ``DBIRTH`` per device with every metric, its alias,
  datatype and current value.
- Every poll cycle: ``DDATA`` per device with the metrics that changed, by alias only.
  A device that stops answering gets ``DDEATH``; when it answers again, ``DBIRTH``.
  A metric never seen before triggers a new ``DBIRTH`` (a birth lists every metric).
- ``seq`` grows by one per message of the node (0-255, then 0).
- An ``NCMD`` writing ``Node Control/Rebirth = true`` republishes ``NBIRTH`` and every ``DBIRTH``.
- A clean stop publishes ``NDEATH`` before disconnecting.
- Everything but the Will is published at QoS 0 with retain false.

Quality travels as the metric property ``Quality`` (OPC quality codes 192 good, 64 uncertain,
0 bad, the convention SCADA hosts use), and a bad value as ``is_null``. Payloads are encoded
with the specification's protobuf definition (``sparkplug_b.proto``, compiled by protoc).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from carbonedge import wire
from carbonedge.edge.sparkplug import sparkplug_b_pb2 as pb
from carbonedge.files import atomic_write
from carbonedge.mqtt import BrokerSettings, make_client

log = logging.getLogger("carbonedge.edge.sparkplug")

NAMESPACE = "spBv1.0"
#: Sparkplug datatypes (the enumeration in sparkplug_b.proto).
INT64, DOUBLE, BOOLEAN, STRING = 4, 10, 11, 12
QUALITY = {"good": 192, "uncertain": 64, "bad": 0}
REBIRTH = "Node Control/Rebirth"


def topic(group: str, kind: str, node: str, device: str | None = None) -> str:
    return f"{NAMESPACE}/{group}/{kind}/{node}" + (f"/{device}" if device else "")


class SparkplugNode:
    """One Sparkplug B edge node over its own MQTT session (paho, MQTT 3.1.1, clean session)."""

    def __init__(self, group_id: str, edge_node_id: str, host: str, port: int, data_dir: Path, *, username: str | None = None,
                 password: str | None = None, tls: Any = None, keepalive_s: int = 30, reconnect_max_s: float = 30.0) -> None:
        self.group, self.node = group_id, edge_node_id
        self.host, self.port = host, port
        self.state_file = Path(data_dir) / "sparkplug.json"
        self.lock = threading.RLock()
        self.seq = 0
        self.bd_seq = self._load_bd_seq()
        self.aliases: dict[tuple[str, str], int] = {}
        self.born: dict[str, set[str]] = {}  # device -> metric names in its last DBIRTH
        self.last: dict[str, dict[str, tuple[float | None, str]]] = {}  # device -> metric -> (value, quality) last sent
        self.units: dict[str, dict[str, str]] = {}
        self.dead: set[str] = set()
        self.connected = False
        self.counts: dict[str, int] = {}
        self._stopping = False
        broker = BrokerSettings(
            host=host, port=port, client_id=f"carbonedge-spb-{group_id}-{edge_node_id}"[:128], username=username, password=password,
            tls=tls is not None, ca_file=tls.ca_file if tls is not None else None, cert_file=tls.cert_file if tls is not None else None,
            key_file=tls.key_file if tls is not None else None, insecure_skip_verify=bool(tls is not None and tls.insecure_skip_verify),
            keepalive_s=keepalive_s, reconnect_max_s=int(max(1, reconnect_max_s)))
        # Sparkplug B 3.0 edge nodes speak MQTT 3.1.1 with clean sessions.
        self.link = make_client(broker, who="Sparkplug edge node", log=log, protocol=mqtt.MQTTv311,
                                auth_hint="[mqtt] username, password and the broker's ACL",
                                on_connect=self._on_connect, on_disconnect=self._on_disconnect)
        c = self.link.client
        c.on_message = self._on_message
        c.on_pre_connect = self._on_pre_connect
        self.client = c
        self.keepalive_s = keepalive_s

    # ------------------------------------------------------------------ state
    def _load_bd_seq(self) -> int:
        """The bdSeq of the next CONNECT (persisted: a restarted gateway must not reuse its last one)."""
        try:
            return (int(json.loads(self.state_file.read_text())["bd_seq"]) + 1) % 256
        except (FileNotFoundError, KeyError, ValueError, TypeError):
            return 0

    def _save_bd_seq(self) -> None:
        atomic_write(self.state_file, json.dumps({"bd_seq": self.bd_seq}).encode())

    def _next_seq(self) -> int:
        s = self.seq
        self.seq = (self.seq + 1) % 256
        return s

    def _alias(self, device: str, metric: str) -> int:
        key = (device, metric)
        a = self.aliases.get(key)
        if a is None:
            a = self.aliases[key] = len(self.aliases) + 1  # 0 is left out: some hosts treat it as "no alias"
        return a

    # ------------------------------------------------------------------ MQTT
    def start(self) -> None:
        self.link.start()

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        """Before every CONNECT: the Will is the NDEATH with this connection's bdSeq."""
        with self.lock:
            if self.connected or self._stopping:
                return
            self._save_bd_seq()
            death = pb.Payload(timestamp=int(time.time() * 1000))
            death.metrics.add(name="bdSeq", datatype=INT64, long_value=self.bd_seq, timestamp=death.timestamp)
            client.will_set(topic(self.group, "NDEATH", self.node), death.SerializeToString(), qos=1, retain=False)

    def _on_connect(self, client: mqtt.Client, flags: Any, props: Any = None) -> None:
        with self.lock:
            self.connected = True
            client.subscribe([(topic(self.group, "NCMD", self.node), 1), (topic(self.group, "DCMD", self.node, "+"), 1)])
            self._births()
        log.info("Sparkplug: edge node %s/%s online (bdSeq %d)", self.group, self.node, self.bd_seq)

    def _on_disconnect(self, client: mqtt.Client, reason: Any, props: Any = None) -> None:
        with self.lock:
            was = self.connected
            self.connected = False
            if was and not self._stopping:
                self.bd_seq = (self.bd_seq + 1) % 256  # the next CONNECT registers a new Will
        if was and not self._stopping:
            log.warning("Sparkplug: lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            p = pb.Payload.FromString(msg.payload)
        except Exception:  # noqa: BLE001 - a malformed command is refused, never fatal
            log.warning("Sparkplug: ignored an undecodable command on %s", msg.topic)
            return
        kind = msg.topic.split("/")[2] if msg.topic.count("/") >= 3 else ""
        if kind == "NCMD" and any(m.name == REBIRTH and m.boolean_value for m in p.metrics):
            log.info("Sparkplug: rebirth requested by a host")
            with self.lock:
                self.counts["rebirths"] = self.counts.get("rebirths", 0) + 1
                self._births()
        elif kind in ("NCMD", "DCMD"):
            log.warning("Sparkplug: %s %s refused: the gateway never writes to devices", kind, [m.name for m in p.metrics])

    def _publish(self, t: str, payload: pb.Payload) -> None:
        self.client.publish(t, payload.SerializeToString(), qos=0, retain=False)
        kind = t.split("/")[2]
        self.counts[kind] = self.counts.get(kind, 0) + 1

    # ------------------------------------------------------------------ births
    def _births(self) -> None:
        now = int(time.time() * 1000)
        self.seq = 0
        nb = pb.Payload(timestamp=now, seq=self._next_seq())
        nb.metrics.add(name="bdSeq", datatype=INT64, long_value=self.bd_seq, timestamp=now)
        nb.metrics.add(name=REBIRTH, alias=self._alias("", REBIRTH), datatype=BOOLEAN, boolean_value=False, timestamp=now)
        self._publish(topic(self.group, "NBIRTH", self.node), nb)
        for device in list(self.last):
            if device not in self.dead:
                self._dbirth(device, now)

    def _dbirth(self, device: str, ts: int) -> None:
        p = pb.Payload(timestamp=ts, seq=self._next_seq())
        names = set()
        for name, (v, q) in sorted(self.last[device].items()):
            m = p.metrics.add(name=name, alias=self._alias(device, name), datatype=DOUBLE, timestamp=ts)
            _set_value(m, v, q)
            unit = self.units.get(device, {}).get(name)
            if unit:
                m.properties.keys.append("engUnit")
                m.properties.values.add(type=STRING, string_value=unit)
            names.add(name)
        self.born[device] = names
        self._publish(topic(self.group, "DBIRTH", self.node, device), p)

    # ------------------------------------------------------------------ data
    def cycle(self, readings: list[wire.DeviceReadings]) -> None:
        """Publish one poll cycle: DDATA of what changed, DBIRTH/DDEATH as devices come and go."""
        with self.lock:
            for r in readings:
                self._device(r)

    def _device(self, r: wire.DeviceReadings) -> None:
        dev = r.device
        down = r.status in ("timeout", "error")
        new = {name: (v.v, v.q) for name, v in r.values.items()}
        self.units.setdefault(dev, {}).update({name: v.u for name, v in r.values.items()})
        if down:
            self.last.setdefault(dev, {}).update({k: (None, "bad") for k in new})
            if dev not in self.dead and dev in self.born and self.connected:
                self._publish(topic(self.group, "DDEATH", self.node, dev), pb.Payload(timestamp=r.ts, seq=self._next_seq()))
            self.dead.add(dev)
            return
        prev = dict(self.last.get(dev, {}))
        self.last.setdefault(dev, {}).update(new)
        if not self.connected:
            return
        if dev in self.dead or dev not in self.born or not set(new) <= self.born[dev]:
            self.dead.discard(dev)
            self._dbirth(dev, r.ts)
            return
        changed = {k: x for k, x in new.items() if prev.get(k) != x}
        if not changed:
            return
        p = pb.Payload(timestamp=r.ts, seq=self._next_seq())
        for name, (v, q) in sorted(changed.items()):
            m = p.metrics.add(alias=self._alias(dev, name), datatype=DOUBLE, timestamp=r.ts)
            _set_value(m, v, q)
        self._publish(topic(self.group, "DDATA", self.node, dev), p)

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Clean stop: NDEATH first (the specification asks for it before an intentional disconnect)."""
        with self.lock:
            self._stopping = True
            if self.connected:
                death = pb.Payload(timestamp=int(time.time() * 1000))
                death.metrics.add(name="bdSeq", datatype=INT64, long_value=self.bd_seq, timestamp=death.timestamp)
                info = self.client.publish(topic(self.group, "NDEATH", self.node), death.SerializeToString(), qos=1, retain=False)
                try:
                    info.wait_for_publish(2.0)
                except (RuntimeError, ValueError):
                    pass
        self.link.close()

    def stats(self) -> dict[str, int]:
        return {f"sparkplug.{k}": v for k, v in self.counts.items()}


def _set_value(m: Any, v: float | None, q: str) -> None:
    if v is None:
        m.is_null = True
    else:
        m.double_value = v
    if q != "good":
        m.properties.keys.append("Quality")
        m.properties.values.add(type=3, int_value=QUALITY[q])  # Int32


def from_config(cfg: Any, data_dir: Path) -> SparkplugNode | None:
    """The edge node a gateway config asks for (``[sparkplug]``), or ``None``."""
    sp = cfg.sparkplug
    if sp is None or not sp.enabled:
        return None
    m = cfg.mqtt
    return SparkplugNode(sp.group_id or cfg.gateway.site, sp.edge_node_id or cfg.gateway.id, sp.host or m.host, sp.port or m.port, data_dir,
                         username=m.username, password=m.secret(), tls=m.tls, keepalive_s=m.keepalive_s, reconnect_max_s=m.reconnect_max_s)


__all__ = ["SparkplugNode", "from_config", "topic"]
