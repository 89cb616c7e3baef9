"""The collector's buffered MQTT read path (collector/mqttread.py) against paho's own packet reader.

The same byte stream (PUBLISH at QoS 0/1/2, with and without MQTT v5 properties, PUBACK, PINGRESP,
SUBACK) is fed to a client with the buffered reader and to one with paho's reader, cut into
arbitrary pieces (down to one byte per recv); both must deliver the same messages in the same
order, and paho's handlers must still see every non-PUBLISH packet.
"""

from __future__ import annotations

import random
import struct

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from carbonedge.collector import mqttread


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 127, n >> 7
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: str, payload: bytes, qos: int, mid: int = 0, props: bytes = b"", retain: bool = False, dup: bool = False) -> bytes:
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + (struct.pack("!H", mid) if qos else b"") + _varint(len(props)) + props + payload
    return bytes([0x30 | (qos << 1) | int(retain) | (8 if dup else 0)]) + _varint(len(body)) + body


PINGRESP = b"\xd0\x00"
PUBACK_OK = b"\x40\x02\x00\x07"  # PUBACK for mid 7 (reason code and properties omitted: success)


def _user_property() -> bytes:
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = ("k", "v")
    return p.pack()[1:] if p.pack()[0] else b""  # pack() gives varint length + properties


class FakeSock:
    """Hands out a byte stream in the given piece sizes, then BlockingIOError."""

    def __init__(self, data: bytes, pieces: list[int]) -> None:
        self.chunks = []
        i = 0
        for n in pieces:
            if i >= len(data):
                break
            self.chunks.append(data[i:i + n])
            i += n
        if i < len(data):
            self.chunks.append(data[i:])

    def recv(self, n: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        c = self.chunks.pop(0)
        if len(c) > n:
            self.chunks.insert(0, c[n:])
            c = c[:n]
        return c

    def pending(self) -> int:
        return 0

    def close(self) -> None:
        self.chunks = []


def _client(fast: bool) -> tuple[mqtt.Client, list[tuple[str, bytes, int, int, bool, bool]], mqttread.BufferedReader | None]:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    got: list[tuple[str, bytes, int, int, bool, bool]] = []
    c.on_message = lambda cl, u, m: got.append((m.topic, bytes(m.payload), m.qos, m.mid, m.retain, m.dup))
    c._in_packet = mqttread._fresh_in_packet()
    c._send_pubrec = lambda mid: mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS  # no socket to write to
    reader = mqttread.install(c) if fast else None
    return c, got, reader


def _feed(c: mqtt.Client, data: bytes, pieces: list[int]) -> None:
    c._sock = FakeSock(data, pieces)  # type: ignore[assignment]
    for _ in range(len(data) + 10):
        rc = c._packet_read()
        assert rc in (mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS, mqtt.MQTTErrorCode.MQTT_ERR_AGAIN), rc
        if not c._sock.chunks:  # type: ignore[union-attr]
            rc = c._packet_read()
            break


def _stream(rng: random.Random, n: int) -> bytes:
    out = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.1:
            out.append(PINGRESP)
        elif kind < 0.15:
            out.append(PUBACK_OK)
        else:
            qos = rng.choice((0, 1, 1, 1, 2))
            size = rng.choice((0, 1, 100, 127, 128, 16_383, 16_384))
            payload = bytes(rng.randrange(256) for _ in range(min(size, 64))) * (size // 64 + 1)
            props = _user_property() if rng.random() < 0.1 else b""
            out.append(publish(f"carbonedge/v1/s/gw{i % 3}/telemetry", payload[:size], qos, mid=i % 65535 + 1, props=props,
                               retain=rng.random() < 0.1, dup=rng.random() < 0.1))
    return b"".join(out)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), piece=st.sampled_from([1, 3, 100, 4096, 1 << 20]))
def test_buffered_reader_delivers_what_paho_delivers(seed: int, piece: int) -> None:
    rng = random.Random(seed)
    data = _stream(rng, 12)
    pieces = [max(1, int(rng.expovariate(1 / piece))) for _ in range(len(data))]
    slow, got_slow, _ = _client(False)
    fast, got_fast, reader = _client(True)
    _feed(slow, data, [len(data)] if piece >= 1 << 20 else pieces)
    _feed(fast, data, pieces)
    assert got_fast == got_slow
    assert reader is not None and reader.fast + reader.delegated >= len(got_fast)


def test_publish_with_properties_and_qos2_go_to_paho() -> None:
    fast, got, reader = _client(True)
    data = publish("a/b", b"x", 1, mid=3, props=_user_property()) + publish("a/b", b"y", 2, mid=4) + publish("a/b", b"z", 1, mid=5)
    _feed(fast, data, [len(data)])
    assert [g[1] for g in got] == [b"x", b"z"]  # QoS 2 waits for PUBREL, as in paho
    assert reader is not None and (reader.fast, reader.delegated) == (1, 2)


def test_a_new_connection_starts_with_an_empty_buffer() -> None:
    fast, got, _ = _client(True)
    first = publish("a/b", b"complete", 1, mid=1)
    half = publish("a/b", b"never finished", 1, mid=2)[:6]
    _feed(fast, first + half, [len(first) + 6])
    _feed(fast, publish("a/b", b"after reconnect", 1, mid=3), [100])  # _feed installs a new socket
    assert [g[1] for g in got] == [b"complete", b"after reconnect"]


def test_a_remaining_length_over_four_bytes_is_a_protocol_error() -> None:
    fast, _, _ = _client(True)
    fast._sock = FakeSock(b"\x30\xff\xff\xff\xff\x01", [6])  # type: ignore[assignment]
    assert fast._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL


def test_a_closed_socket_is_a_lost_connection() -> None:
    fast, _, _ = _client(True)

    class Closed(FakeSock):
        def recv(self, n: int) -> bytes:
            return b""

    fast._sock = Closed(b"", [])  # type: ignore[assignment]
    assert fast._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST


@pytest.mark.parametrize("size", [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152])
def test_remaining_length_boundaries(size: int) -> None:
    fast, got, _ = _client(True)
    _feed(fast, publish("t/x", b"a" * size, 1, mid=9), [65_536])
    assert [len(g[1]) for g in got] == [size]


def test_ack_all_queues_every_puback_in_one_write() -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    msgs = []
    for mid, qos in ((1, 1), (2, 0), (300, 1), (65535, 1)):
        m = mqtt.MQTTMessage(mid, b"a/b")
        m.qos = qos
        msgs.append(m)
    mqttread.ack_all(c, msgs)
    ref = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="r", protocol=mqtt.MQTTv5, manual_ack=True)
    for m in msgs:
        ref.ack(m.mid, m.qos)
    assert [p["packet"] for p in c._out_packet] == [b"".join(p["packet"] for p in ref._out_packet)]
    assert c._out_packet[0]["packet"] == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x2c" + b"\x40\x02\xff\xff"
