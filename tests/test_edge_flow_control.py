"""Backlog flow control: no resend storm while the collector works through a backlog.

A real Mosquitto and a stand-in collector that acknowledges the highest contiguous seq (as the
collector's watermark does). The gateway must respect the broker's Receive Maximum, send at most
``max_unconfirmed`` batches beyond the watermark, resend nothing while the watermark advances,
and, when it stops, resend only the oldest batches unless those turn out to have been lost.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from carbonedge import wire
from carbonedge.app.services import Mosquitto, free_port
from carbonedge.edge.config import GatewayConfig
from carbonedge.edge.outbox import Outbox
from carbonedge.edge.publisher import Publisher
from faultlib.harness import wait_for

BOOT = "c" * 32
TS = 1_767_571_200_000


class Collector:
    """Acknowledges the highest contiguous seq it received, ``pace`` seconds per seq (0 = at once).
    Seqs in ``lose`` are dropped the first time they arrive, as a collector that lost them would."""

    def __init__(self, port: int, site: str, *, pace: float = 0.0, lose: set[int] | None = None) -> None:
        self.site, self.pace, self.lose = site, pace, set(lose or ())
        self.received: list[int] = []
        self.have: set[int] = set()
        self.watermark = 0
        self.paused = False
        self.lock = threading.Lock()
        self._stop = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ack-{site}", protocol=mqtt.MQTTv5)
        c.on_connect = lambda client, *a: client.subscribe(wire.telemetry_topic(site, "gw1"), qos=1)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        self._acker = threading.Thread(target=self._ack_loop, daemon=True)
        self._acker.start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        seq = wire.Batch.model_validate_json(msg.payload).seq
        with self.lock:
            self.received.append(seq)
            if seq in self.lose:
                self.lose.discard(seq)
                return
            self.have.add(seq)

    def _ack_loop(self) -> None:
        while not self._stop.is_set():
            time.sleep(self.pace or 0.02)
            with self.lock:
                if self.paused:
                    continue
                wm = self.watermark
                if self.pace:
                    if wm + 1 in self.have:
                        wm += 1
                else:
                    while wm + 1 in self.have:
                        wm += 1
                if wm == self.watermark:
                    continue
                self.watermark = wm
            ack = wire.Ack(site=self.site, gateway="gw1", watermark=wm, ts=int(time.time() * 1000))
            self.client.publish(wire.ack_topic(self.site, "gw1"), ack.to_json(), qos=1, retain=True)

    def duplicates(self) -> int:
        with self.lock:
            return len(self.received) - len(set(self.received))

    def close(self) -> None:
        self._stop.set()
        self.client.loop_stop()
        self.client.disconnect()


def _setup(tmp_path: Path, site: str, n: int, broker_extra: str = "", **mqtt_: object) -> tuple[Mosquitto, Outbox, GatewayConfig]:
    port = free_port()
    broker = Mosquitto("mosquitto", port, tmp_path / "broker").start(
        extra_config=f"listener {port} 127.0.0.1\nallow_anonymous true\n{broker_extra}")
    cfg = GatewayConfig.model_validate({
        "gateway": {"site": site, "id": "gw1", "poll_interval_s": 60, "data_dir": str(tmp_path / "edge"), "health_interval_s": 3600},
        "mqtt": {"port": port, "reconnect_max_s": 1, **mqtt_},
        "devices": [{"id": "m1", "profile": "eastron-sdm630", "driver": "simulated", "rated_power_kw": 500}],
    })
    outbox = Outbox(tmp_path / "edge" / "outbox.sqlite", site=site, gateway="gw1")
    outbox.open_boot(BOOT)
    for _ in range(n):
        outbox.append(lambda seq: (wire.Batch(site=site, gateway="gw1", boot_id=BOOT, seq=seq, created=TS + seq * 60_000, devices=[
            wire.DeviceReadings(device="m1", ts=TS + seq * 60_000, values={"active_power": wire.Value(v=1.0, u="kW", q="good")})]).to_json(),
            TS + seq * 60_000, 1))
    return broker, outbox, cfg


def test_receive_maximum_and_the_unconfirmed_window_bound_what_is_sent(tmp_path):
    """The broker announces Receive Maximum 4 (below max_inflight 20); nobody confirms anything."""
    broker, outbox, cfg = _setup(tmp_path, "window", 100, "max_inflight_messages 4", max_unconfirmed=30, resend_after_s=60)
    pub = Publisher(cfg, outbox, BOOT)
    peak = 0
    orig = pub._publish

    def counting(seq: int, payload: bytes, *, ahead: bool = False) -> bool:
        nonlocal peak
        peak = max(peak, len(pub._inflight) + 1)
        return orig(seq, payload, ahead=ahead)

    pub._publish = counting  # type: ignore[method-assign]
    pub.start()
    try:
        wait_for(lambda: pub.counters["published"] >= 30, 15, "the window to be sent")
        time.sleep(1.0)
        assert pub._inflight_limit == 4
        assert peak <= 4  # never more than the broker's Receive Maximum awaiting PUBACK
        # 30 batches of the backlog, plus the newest sent ahead of it once
        assert pub.counters["published"] == 31 and pub.counters["sent_ahead"] == 1
        assert pub.counters["resends"] == 0
    finally:
        pub.stop()
        broker.stop()
        outbox.close()


def test_no_resend_while_the_watermark_advances_slowly(tmp_path):
    """The collector confirms one batch every 0.25 s, much slower than the gateway sends; resend_after_s is 1 s.
    Nothing is sent twice while the watermark moves. When it stops, only the oldest batches go again."""
    broker, outbox, cfg = _setup(tmp_path, "slow", 200, max_inflight=5, max_unconfirmed=10, resend_after_s=1)
    coll = Collector(broker.port, "slow", pace=0.25)
    pub = Publisher(cfg, outbox, BOOT)
    pub.start()
    try:
        wait_for(lambda: coll.watermark >= 16, 30, "16 batches to be confirmed")
        assert pub.counters["resends"] == 0 and coll.duplicates() == 0
        with coll.lock:
            coll.paused = True
        wait_for(lambda: pub.counters["resends"] >= 1, 30, "a resend after the watermark stopped")
        time.sleep(0.5)
        assert pub.counters["resends"] == 1
        assert pub.counters["resent_batches"] == 5  # a probe of max_inflight batches, not the whole window
        assert coll.duplicates() == 5
    finally:
        pub.stop()
        coll.close()
        broker.stop()
        outbox.close()


def test_lost_batches_are_probed_then_resent_in_full(tmp_path):
    """The collector lost batches 1..25 (a collector restarted without its session): the first resend is a probe
    of the oldest 5; the watermark moves only within it, so the next resend repeats every unconfirmed batch."""
    broker, outbox, cfg = _setup(tmp_path, "lost", 25, max_inflight=5, max_unconfirmed=100, resend_after_s=0.5)
    coll = Collector(broker.port, "lost", lose=set(range(1, 26)))
    pub = Publisher(cfg, outbox, BOOT)
    pub.start()
    try:
        wait_for(lambda: coll.watermark == 25, 30, "every batch to be confirmed")
        assert pub.counters["resends"] == 2
        assert pub.counters["resent_batches"] == 5 + 20
        assert sorted(set(coll.received)) == list(range(1, 26))
        assert coll.duplicates() == 25  # each lost batch went exactly twice, nothing more
    finally:
        pub.stop()
        coll.close()
        broker.stop()
        outbox.close()
