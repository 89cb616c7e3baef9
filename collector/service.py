"""The collector: MQTT telemetry -> validate -> InfluxDB -> watermark -> MQTT ack.

Order of operations per flush (the fix peers learned the hard way, Telegraf PR #13350):
validate, write to InfluxDB and get a 2xx, persist the per-gateway watermark, publish
it, and only then acknowledge the MQTT messages. A crash anywhere before the ack means
the broker redelivers, and an identical rewrite to InfluxDB is harmless.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from carbonedge import wire
from carbonedge.errors import WriteError
from collector.influx import InfluxWriter
from collector.lineprotocol import batch_lines

log = logging.getLogger("carbonedge.collector")

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


@dataclass
class CollectorSettings:
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    influx_url: str = "http://127.0.0.1:8086"
    database: str = "carbonedge"
    state_dir: Path = Path("/var/lib/carbonedge/collector")
    client_id: str = "carbonedge-collector-1"
    share_group: str | None = "carbonedge"
    batch_max_readings: int = 20_000
    batch_max_delay_s: float = 0.5


@dataclass
class _GatewayState:
    watermark: int = 0
    done: set[int] = field(default_factory=set)  # written seqs above the watermark

    def mark(self, seq: int) -> None:
        if seq > self.watermark:
            self.done.add(seq)
        while self.watermark + 1 in self.done:
            self.watermark += 1
            self.done.discard(self.watermark)


class Collector:
    def __init__(self, settings: CollectorSettings) -> None:
        self.s = settings
        self.s.state_dir.mkdir(parents=True, exist_ok=True)
        self.writer = InfluxWriter(settings.influx_url, settings.database)
        self.counters: Counter[str] = Counter()
        self._q: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._stop = threading.Event()
        self._state_path = self.s.state_dir / "watermarks.json"
        self.gateways: dict[tuple[str, str], _GatewayState] = self._load_state()
        self._dlq = (self.s.state_dir / "deadletter.jsonl").open("a")
        self.connected = threading.Event()

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        c.reconnect_delay_set(1, 30)
        self.client = c

    # ---------------------------------------------------------------- state
    def _load_state(self) -> dict[tuple[str, str], _GatewayState]:
        if not self._state_path.exists():
            return {}
        data = json.loads(self._state_path.read_text())
        return {tuple(k.split("/", 1)): _GatewayState(watermark=v) for k, v in data.items()}  # type: ignore[misc]

    def _save_state(self) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump({f"{s}/{g}": st.watermark for (s, g), st in self.gateways.items()}, f)
            f.flush()
            import os

            os.fsync(f.fileno())
        tmp.replace(self._state_path)

    # ---------------------------------------------------------------- mqtt
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: mqtt.ReasonCode, props: object) -> None:
        if rc.is_failure:
            log.error("broker refused the collector: %s", rc)
            return
        topic = wire.TELEMETRY_FILTER
        if self.s.share_group:
            topic = f"$share/{self.s.share_group}/{topic}"
        client.subscribe(topic, qos=1)
        self.connected.set()
        log.info("collector subscribed to %s", topic)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: mqtt.ReasonCode, props: object) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("collector disconnected from broker: %s", rc)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._q.put(msg)

    # ---------------------------------------------------------------- processing
    def _deadletter(self, msg: mqtt.MQTTMessage, reason: str, detail: str) -> None:
        self.counters[f"rejected.{reason}"] += 1
        rec = {"ts": time.time(), "topic": msg.topic, "reason": reason, "detail": detail[:2000],
               "payload": msg.payload[:65536].decode("utf-8", "replace")}
        self._dlq.write(json.dumps(rec) + "\n")
        self._dlq.flush()
        try:
            site, gw, _ = wire.parse_topic(msg.topic)
            self.client.publish(wire.deadletter_topic(site, gw), json.dumps({k: rec[k] for k in ("ts", "reason", "detail")}), qos=1)
        except ValueError:
            pass
        log.warning("dead-lettered a message on %s: %s (%s)", msg.topic, reason, detail[:200])

    def _decode(self, msg: mqtt.MQTTMessage) -> wire.Batch | None:
        if len(msg.payload) > MAX_PAYLOAD_BYTES:
            self._deadletter(msg, "oversized", f"{len(msg.payload)} bytes")
            return None
        try:
            site, gw, _ = wire.parse_topic(msg.topic)
        except ValueError as exc:
            self._deadletter(msg, "bad_topic", str(exc))
            return None
        try:
            batch = wire.Batch.model_validate_json(msg.payload)
        except ValidationError as exc:
            reason = "bad_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "schema"
            self._deadletter(msg, reason, str(exc))
            return None
        if (batch.site, batch.gateway) != (site, gw):
            self._deadletter(msg, "topic_mismatch", f"payload says {batch.site}/{batch.gateway}, topic says {site}/{gw}")
            return None
        return batch

    def _flush(self, msgs: list[mqtt.MQTTMessage]) -> None:
        good: list[tuple[mqtt.MQTTMessage, wire.Batch, list[str]]] = []
        done: list[mqtt.MQTTMessage] = []
        for m in msgs:
            b = self._decode(m)
            if b is None:
                done.append(m)
            else:
                good.append((m, b, batch_lines(b)))
        if good:
            body = "\n".join(line for _, _, lines in good for line in lines).encode()
            try:
                self._write_with_retry(body)
            except WriteError as exc:
                # Not retryable (4xx): find the offending batch(es) by writing one by one.
                log.warning("InfluxDB refused a combined write (%s); writing batches one by one", exc)
                kept = []
                for m, b, lines in good:
                    try:
                        self._write_with_retry("\n".join(lines).encode())
                        kept.append((m, b, lines))
                    except WriteError as exc2:
                        self._deadletter(m, "influx_rejected", str(exc2))
                        done.append(m)
                good = kept
            touched = set()
            for _, b, lines in good:
                key = (b.site, b.gateway)
                st = self.gateways.get(key)
                if st is None:
                    # First contact with this gateway: everything before its first batch is already pruned there.
                    st = self.gateways[key] = _GatewayState(watermark=b.seq - 1)
                    log.info("first batch from %s/%s is seq %d; watermark starts at %d", b.site, b.gateway, b.seq, b.seq - 1)
                if b.seq <= st.watermark or b.seq in st.done:
                    self.counters["duplicate_deliveries"] += 1
                st.mark(b.seq)
                touched.add(key)
                self.counters["batches_written"] += 1
                self.counters["readings_written"] += b.reading_count()
            self._save_state()
            now_ms = int(time.time() * 1000)
            for site, gw in touched:
                ack = wire.Ack(site=site, gateway=gw, watermark=self.gateways[(site, gw)].watermark, ts=now_ms)
                self.client.publish(wire.ack_topic(site, gw), ack.to_json(), qos=1, retain=True)
            done.extend(m for m, _, _ in good)
        for m in done:
            self.client.ack(m.mid, m.qos)
        self.counters["messages"] += len(msgs)

    def _write_with_retry(self, body: bytes) -> None:
        delay = 0.2
        while True:
            try:
                self.writer.write(body)
                return
            except WriteError as exc:
                if not exc.retryable:
                    raise
                self.counters["write_retries"] += 1
                if self._stop.is_set() and self.counters["write_retries"] > 3:
                    raise
                log.warning("%s; retrying in %.1f s (messages stay unacknowledged at the broker)", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def run(self) -> None:
        """Consume until :meth:`stop`; flushes what it holds before returning."""
        self.client.connect_async(self.s.mqtt_host, self.s.mqtt_port, keepalive=30, clean_start=False,
                                  properties=_session_props())
        self.client.loop_start()
        try:
            while not (self._stop.is_set() and self._q.empty()):
                msgs: list[mqtt.MQTTMessage] = []
                readings = 0
                deadline = time.monotonic() + self.s.batch_max_delay_s
                while readings < self.s.batch_max_readings:
                    try:
                        m = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    msgs.append(m)
                    readings += max(1, len(m.payload) // 60)
                if msgs:
                    self._flush(msgs)
        finally:
            self.client.loop_stop()
            self.client.disconnect()
            self._dlq.close()

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        return {**dict(self.counters), "watermarks": {f"{s}/{g}": st.watermark for (s, g), st in self.gateways.items()}}


def _session_props() -> Properties:
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 7 * 24 * 3600  # keep our queue at the broker through a week-long collector outage
    return p
