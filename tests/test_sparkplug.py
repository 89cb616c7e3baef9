"""Sparkplug B from the gateway, checked against a real Mosquitto with a decoder written from the specification
(protobuf wire format and the field numbers of sparkplug_b.proto), independent of the gateway's generated code."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from carbonedge.clock import ClockSpec, parse_time
from carbonedge.app.services import Mosquitto, free_port
from faultlib.harness import wait_for

START = parse_time("2026-01-05T00:00:00Z")


# --------------------------------------------------------------------------- an independent decoder
def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7


def _fields(b: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs of one protobuf message: varints as int, fixed64 as raw bytes, lengths as bytes."""
    out, i = [], 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i : i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
        elif wt == 5:
            v, i = b[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, v))
    return out


def decode_payload(b: bytes) -> dict[str, Any]:
    """Payload: 1 timestamp, 2 metrics, 3 seq. Metric: 1 name, 2 alias, 3 timestamp, 4 datatype, 7 is_null,
    9 properties, 11 long_value, 13 double_value, 14 boolean_value. PropertySet: 1 keys, 2 values (3 int_value, 8 string_value)."""
    p: dict[str, Any] = {"metrics": []}
    for num, v in _fields(b):
        if num == 1:
            p["timestamp"] = v
        elif num == 3:
            p["seq"] = v
        elif num == 2:
            m: dict[str, Any] = {"props": {}}
            for n2, v2 in _fields(v):
                if n2 == 1:
                    m["name"] = v2.decode()
                elif n2 == 2:
                    m["alias"] = v2
                elif n2 == 4:
                    m["datatype"] = v2
                elif n2 == 7:
                    m["is_null"] = bool(v2)
                elif n2 == 11:
                    m["value"] = v2
                elif n2 == 13:
                    m["value"] = struct.unpack("<d", v2)[0]
                elif n2 == 14:
                    m["value"] = bool(v2)
                elif n2 == 9:
                    keys, vals = [], []
                    for n3, v3 in _fields(v2):
                        if n3 == 1:
                            keys.append(v3.decode())
                        elif n3 == 2:
                            pv = dict(_fields(v3))
                            vals.append(pv.get(3, pv.get(8, b"").decode() if isinstance(pv.get(8), bytes) else None))
                    m["props"] = dict(zip(keys, vals))
            p["metrics"].append(m)
    return p


class Recorder:
    """Subscribes to the whole Sparkplug namespace at QoS 1 (so a message arrives at the QoS it was published with)."""

    def __init__(self, port: int) -> None:
        self.msgs: list[tuple[str, int, bool, dict[str, Any]]] = []
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scada-host", protocol=mqtt.MQTTv311)
        c.on_connect = lambda client, *a: client.subscribe("spBv1.0/#", qos=1)
        c.on_message = self._on
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.c = c

    def _on(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.msgs.append((msg.topic, msg.qos, bool(msg.retain), decode_payload(msg.payload)))

    def kinds(self, kind: str) -> list[tuple[str, int, bool, dict[str, Any]]]:
        with self.lock:
            return [m for m in self.msgs if m[0].split("/")[2] == kind]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _gateway(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[gateway]
site = "plant-a"
id = "gw1"
poll_interval_s = 60
health_interval_s = 3600
[mqtt]
port = {port}
[sparkplug]
group_id = "carbonedge"
edge_node_id = "plant-a-gw1"
""" + "".join(f"""
[[devices]]
id = "m{i}"
profile = "eastron-sdm630"
driver = "simulated"
rated_power_kw = 500
""" for i in range(3)))
    spec = ClockSpec(start=START, speed=600.0, origin=time.time())  # a poll cycle every 0.1 s
    with (tmp_path / "edge.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "carbonedge.app.cli", "-v", "edge", "--config", str(cfg), "--data-dir", str(tmp_path / "edge"),
                                 "--clock", spec.to_arg()], stdout=log, stderr=subprocess.STDOUT)


def _metric(p: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in p["metrics"] if m.get("name") == name)


def test_sparkplug_state_machine_births_data_rebirth_death(tmp_path: Path) -> None:
    broker = Mosquitto("mosquitto", free_port(), tmp_path / "broker").start()
    rec = Recorder(broker.port)
    gw = _gateway(tmp_path, broker.port)
    gw2: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: len(rec.kinds("DBIRTH")) >= 3 and len(rec.kinds("DDATA")) >= 9, 60, "births and data")
        # A host asks for a rebirth.
        from carbonedge.edge.sparkplug import sparkplug_b_pb2 as pb

        cmd = pb.Payload(timestamp=int(time.time() * 1000))
        cmd.metrics.add(name="Node Control/Rebirth", datatype=11, boolean_value=True)
        rec.c.publish("spBv1.0/carbonedge/NCMD/plant-a-gw1", cmd.SerializeToString(), qos=0)
        wait_for(lambda: len(rec.kinds("NBIRTH")) >= 2 and len(rec.kinds("DBIRTH")) >= 6, 30, "a rebirth")
        time.sleep(0.5)
        gw.send_signal(signal.SIGKILL)  # power cut: the broker sends the Will
        gw.wait(10)
        wait_for(lambda: len(rec.kinds("NDEATH")) >= 1, 30, "the NDEATH Will")
        first_life = list(rec.msgs)
        gw2 = _gateway(tmp_path, broker.port)
        wait_for(lambda: len(rec.kinds("NBIRTH")) >= 3 and len(rec.kinds("DDATA")) >= 15, 60, "the second life's births")
        gw2.send_signal(signal.SIGTERM)  # clean stop: NDEATH before DISCONNECT
        assert gw2.wait(30) == 0
        wait_for(lambda: len(rec.kinds("NDEATH")) >= 2, 30, "the clean NDEATH")
    finally:
        for p in (gw, gw2):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        rec.close()
        broker.stop()

    msgs = [m for m in rec.msgs if m[0].split("/")[2] != "NCMD"]  # the host's own command comes back too
    # QoS and retain: QoS 0 and no retain for everything but the NDEATH Will (QoS 1).
    for t, qos, retain, _ in msgs:
        kind = t.split("/")[2]
        assert not retain, t
        assert qos == (1 if kind == "NDEATH" else 0), (t, qos)
    # Topics of the namespace.
    assert {t.split("/")[2] for t, *_ in msgs} == {"NBIRTH", "DBIRTH", "DDATA", "NDEATH"}
    assert all(t.startswith("spBv1.0/carbonedge/") and t.split("/")[3] == "plant-a-gw1" for t, *_ in msgs)

    births = rec.kinds("NBIRTH")
    deaths = rec.kinds("NDEATH")
    bd = [_metric(b[3], "bdSeq")["value"] for b in births]
    assert bd == [0, 0, 1]  # the rebirth keeps the session's bdSeq; the next CONNECT increments it
    assert [_metric(d[3], "bdSeq")["value"] for d in deaths] == [0, 1]  # each death matches its birth
    for b in births:
        assert b[3]["seq"] == 0
        assert _metric(b[3], "Node Control/Rebirth") ["value"] is False
        assert _metric(b[3], "bdSeq")["datatype"] == 4  # Int64

    # seq: +1 per message of the node from each NBIRTH, wrapping at 256; NDEATH carries none.
    expected = None
    for t, _, _, p in msgs:
        kind = t.split("/")[2]
        if kind == "NDEATH":
            assert "seq" not in p
            expected = None
            continue
        if kind == "NBIRTH":
            expected = 0
        assert p["seq"] == expected, (t, p["seq"], expected)
        expected = (expected + 1) % 256

    # DBIRTH: every metric with name, alias and datatype; DDATA: aliases only, each from the device's birth.
    aliases: dict[str, dict[int, str]] = {}
    all_aliases: set[tuple[str, int]] = set()
    for t, _, _, p in msgs:
        kind, dev = t.split("/")[2], (t.split("/")[4] if t.count("/") == 4 else None)
        if kind == "DBIRTH":
            assert dev is not None
            names = {m["name"] for m in p["metrics"]}
            assert {"active_power", "active_energy_import", "voltage_l1_n", "frequency"} <= names
            assert all(m["datatype"] == 10 and "alias" in m for m in p["metrics"])
            # A value, or an explicit null with its quality (a value the gateway could not read is never left out).
            assert all("value" in m or (m.get("is_null") and m["props"].get("Quality") == 0) for m in p["metrics"])
            assert _metric(p, "active_energy_import")["props"]["engUnit"] == "kWh"
            aliases[dev] = {m["alias"]: m["name"] for m in p["metrics"]}
            all_aliases |= {(dev, a) for a in aliases[dev]}
        elif kind == "DDATA":
            assert dev in aliases
            assert p["metrics"] and all("name" not in m and m["alias"] in aliases[dev] for m in p["metrics"])
    flat = [a for _, a in all_aliases]
    assert len(flat) == len(set(flat))  # an alias names one metric of one device in the whole node
    # The energy counter of m0 only grows through the first life.
    e = [m["value"] for t, _, _, p in first_life if t.endswith("/m0") for m in p["metrics"]
         if (m.get("name") == "active_energy_import" or aliases["m0"].get(m.get("alias", -1)) == "active_energy_import") and "value" in m]
    assert len(e) >= 5 and all(b >= a for a, b in zip(e, e[1:]))
    assert first_life[-1][0].split("/")[2] == "NDEATH"
