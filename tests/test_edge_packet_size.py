"""The gateway never sends an MQTT message over the broker's maximum packet size.

Mosquitto 2.0 disconnects a client that sends a larger packet (reason "Packet too large"), so
an oversized poll cycle would loop forever: reconnect, resend, disconnect. These tests run a
real Mosquitto with ``max_packet_size 65536`` and a gateway whose poll cycle is about three
times that.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from carbonedge import wire
from carbonedge.clock import ClockSpec, VirtualClock, parse_time
from carbonedge.app.services import Mosquitto, free_port
from carbonedge.edge import Agent
from carbonedge.edge.agent import split_cycle
from carbonedge.edge.config import GatewayConfig
from carbonedge.edge.outbox import Outbox
from carbonedge.edge.publisher import Publisher
from faultlib.harness import wait_for

START = parse_time("2026-01-05T00:00:00Z")
LIMIT = 65536
N_DEVICES = 150  # 15 quantities each: about 190 kB of JSON per poll cycle


def _broker(tmp_path: Path) -> Mosquitto:
    port = free_port()
    return Mosquitto("mosquitto", port, tmp_path / "broker").start(
        extra_config=f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_packet_size {LIMIT}")


def _config(site: str, port: int, data_dir: Path, **mqtt_: object) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "gateway": {"site": site, "id": "gw1", "poll_interval_s": 60, "data_dir": str(data_dir), "health_interval_s": 3600},
        "mqtt": {"port": port, "reconnect_max_s": 1, **mqtt_},
        "devices": [{"id": f"m{i:03d}", "profile": "eastron-sdm630", "driver": "simulated", "rated_power_kw": 500,
                     "tags": {"area": "melt", "process": "eaf"}} for i in range(N_DEVICES)],
    })


class Acker:
    """Records every telemetry payload's size and content and acknowledges the highest contiguous seq."""

    def __init__(self, port: int, site: str) -> None:
        self.site = site
        self.batches: dict[int, wire.Batch] = {}
        self.sizes: list[int] = []
        self.watermark = 0
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acker-{site}", protocol=mqtt.MQTTv5)
        c.on_connect = lambda client, *a: client.subscribe(wire.telemetry_topic(site, "gw1"), qos=1)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        b = wire.Batch.model_validate_json(msg.payload)
        with self.lock:
            self.sizes.append(len(msg.payload) + len(msg.topic))
            self.batches[b.seq] = b
            while self.watermark + 1 in self.batches:
                self.watermark += 1
            wm = self.watermark
        client.publish(wire.ack_topic(self.site, "gw1"), wire.Ack(site=self.site, gateway="gw1", watermark=wm, ts=int(time.time() * 1000)).to_json(),
                       qos=1, retain=True)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_poll_cycle_over_the_broker_limit_is_split_into_whole_device_batches(tmp_path):
    broker = _broker(tmp_path)
    acker = Acker(broker.port, "split")
    cfg = _config("split", broker.port, tmp_path / "edge", max_message_kb=LIMIT // 1024)
    # a 60 s cycle every second: 150 simulated reads must finish inside the virtual read deadline even on a
    # loaded machine (at 0.2 s per cycle a slow read came back "bad" and the quality check below failed)
    clock = VirtualClock(ClockSpec(start=START, speed=60.0, origin=time.time()))
    agent = Agent(cfg, clock=clock)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop=stop))
        await asyncio.to_thread(wait_for, lambda: acker.watermark >= 12, 60, "twelve batches")
        stop.set()
        await task

    try:
        asyncio.run(scenario())
        wait_for(lambda: acker.watermark >= agent.outbox.last_seq, 30, "the last batches")
    finally:
        acker.close()
        broker.stop()

    assert agent.publisher.counters["connects"] == 1, "the broker disconnected the gateway (a packet over its limit?)"
    assert max(acker.sizes) <= LIMIT - 32
    last = agent.outbox.last_seq
    assert sorted(acker.batches) == list(range(1, last + 1))
    by_cycle: dict[int, list[wire.Batch]] = {}
    for s in range(1, last + 1):
        by_cycle.setdefault(acker.batches[s].created, []).append(acker.batches[s])
    complete = list(by_cycle.values())
    assert agent.counters["split_cycles"] == len(complete) >= 3
    for parts in complete:
        assert len(parts) >= 3  # ~190 kB in 64 kB messages
        seqs = [b.seq for b in parts]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one cycle = consecutive seqs
        devices = [d.device for b in parts for d in b.devices]
        assert devices == [f"m{i:03d}" for i in range(N_DEVICES)]  # every device once, whole, in order
        assert all(v.q == "good" for b in parts for d in b.devices for v in d.values.values())
        assert all(not b.events for b in parts[1:])  # a cycle's events travel once, with its first part
    assert agent.counters["readings"] == sum(len(d.values) for b in acker.batches.values() for d in b.devices)


def test_a_stored_batch_too_large_for_the_broker_is_held_not_sent(tmp_path):
    """A batch committed under a larger limit (before the broker announced 64 kB) stays on disk, unsent, with an error."""
    broker = _broker(tmp_path)
    acker = Acker(broker.port, "held")
    cfg = _config("held", broker.port, tmp_path / "edge")  # max_message_kb left at 4096: the broker's 64 kB must win
    outbox = Outbox(tmp_path / "edge" / "outbox.sqlite", site="held", gateway="gw1")
    outbox.open_boot("b" * 32)
    big = wire.Batch(site="held", gateway="gw1", boot_id="b" * 32, seq=1, created=int(START * 1000),
                     devices=[wire.DeviceReadings(device=f"m{i:03d}", ts=int(START * 1000), values={
                         "active_power": wire.Value(v=float(i), u="kW", q="good")}) for i in range(2000)]).to_json()
    assert len(big) > LIMIT
    outbox.append(lambda seq: (big, int(START * 1000), 2000))
    pub = Publisher(cfg, outbox, "b" * 32)
    pub.start()
    try:
        wait_for(lambda: pub.connected, 15, "the publisher to connect")
        wait_for(lambda: pub.counters["oversize_held"] == 1, 10, "the oversize batch to be held")
        assert pub.max_payload_bytes() < LIMIT  # the broker's announced limit applies, not the configured 4 MiB
        time.sleep(1.0)
        assert pub.connected and pub.counters["connects"] == 1
        assert acker.sizes == [] and pub.counters["published"] == 0
        assert outbox.pending(0, 10)[0][0] == 1  # still on disk
    finally:
        pub.stop()
        acker.close()
        broker.stop()
        outbox.close()


def test_split_cycle_keeps_devices_whole_and_events_first():
    ts = int(START * 1000)
    readings = [wire.DeviceReadings(device=f"d{i}", ts=ts, values={"active_power": wire.Value(v=i * 1.5, u="kW", q="good")})
                for i in range(400)]
    events = [wire.Event(kind="gap", ts=ts, detail={"missed_cycles": 3})]

    def ser(devs: list[wire.DeviceReadings], evs: list[wire.Event]) -> bytes:
        return wire.Batch(site="s", gateway="g", boot_id="a" * 32, seq=2**53, created=ts, devices=devs, events=evs).to_json()

    whole = len(ser(readings, events))
    parts = split_cycle(readings, events, 4096, ser)
    assert len(parts) >= whole // 4096
    assert [d.device for devs, _ in parts for d in devs] == [f"d{i}" for i in range(400)]
    assert parts[0][1] == events and all(evs == [] for _, evs in parts[1:])
    assert all(len(ser(devs, evs)) <= 4096 - 512 for devs, evs in parts)


def test_split_parts_of_a_signed_cycle_chain_like_any_other_batches(tmp_path):
    """Each part is signed and chained to the one before; the chain continues across cycles."""
    from carbonedge import integrity

    key_path = tmp_path / "gw.key"
    key = integrity.generate_key(key_path)
    cfg = GatewayConfig.model_validate({
        **_config("signed", 1883, tmp_path / "edge", max_message_kb=64).model_dump(mode="json", exclude={"gateway"}),
        "gateway": {"site": "signed", "id": "gw1", "poll_interval_s": 60, "data_dir": str(tmp_path / "edge"), "signing_key": str(key_path)},
    })
    clock = VirtualClock(ClockSpec(start=START, speed=1.0, origin=time.time()))
    agent = Agent(cfg, clock=clock)  # never started: poll_once commits to the outbox, nothing is sent

    async def three_cycles() -> None:
        for _ in range(3):
            await agent.poll_once()

    asyncio.run(three_cycles())
    batches = [wire.Batch.model_validate_json(p) for _, p in agent.outbox.pending(0, 100)]
    assert len(batches) >= 9 and agent.counters["split_cycles"] == 3  # three cycles of >= 3 parts
    trusted = [integrity.TrustedKey(key.public_key(), integrity.key_id(key.public_key()))]
    prev = None
    for b in batches:
        check = integrity.check_batch(b, trusted)
        assert check.status == "ok", (b.seq, check.status)
        assert b.integrity is not None and (prev is None or b.integrity.prev == prev), f"chain broken at seq {b.seq}"
        prev = check.link
    agent.outbox.close()
