"""The collector: MQTT telemetry -> validate -> conflict check -> InfluxDB (or disk spool) -> watermark -> MQTT ack.

Order of operations per flush (the fix peers learned the hard way, Telegraf PR #13350): validate,
write the dead-letter records and fsync them, write to InfluxDB and get a 2xx (or fsync the lines
into the spool), persist this collector's progress and fsync it, publish progress and the
per-gateway watermark, and only then acknowledge the MQTT messages. A crash anywhere before the
MQTT ack means the broker redelivers into the persistent session; rewriting an identical point is
harmless and the replay is counted.

Three stages overlap I/O with parsing: the main thread decodes and prepares flush *n+2*, the
archiver thread fsyncs the dead-letter records and the raw batches of flush *n+1* into the archive,
and the writer thread writes flush *n* to InfluxDB, saves progress and acknowledges it; every flush
passes the stages strictly in order (its evidence is on disk before InfluxDB sees it). Another
thread drains the spool, oldest segment first, when InfluxDB is back.
See ``docs/collector.md`` for the design and its guarantees.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from carbonedge import wire
from carbonedge.errors import QueryError, WriteError
from carbonedge.mqtt import BrokerSettings, make_client
from carbonedge.integrity import Archive
from carbonedge.collector.conflicts import ConflictIndex, find_conflicts_in_db
from carbonedge.collector.influx import Backoff, InfluxWriter, Refused
from carbonedge.collector.lineprotocol import Point, event_line, health_lines
from carbonedge.collector import mqttread
from carbonedge.collector.metrics import Metrics, serve_metrics
from carbonedge.collector.spool import Spool, SpoolFull
from carbonedge.collector.validate import Rejected, Validated, Validator
from carbonedge.collector.watermark import (
    ACK_FILTER,
    PROGRESS_ROOT,
    GatewayProgress,
    StateFile,
    progress_filter,
    progress_topic,
    to_ranges,
)

log = logging.getLogger("carbonedge.collector")

#: Stages of the hot path whose CPU time :class:`StageCpu` keeps (the benchmark's per-stage breakdown).
STAGES = ("receive", "decode_validate", "lines_conflicts", "archive", "write", "progress_ack")


class StageCpu:
    """CPU seconds (thread time) spent per stage; ``receive`` is the MQTT network thread's total."""

    def __init__(self) -> None:
        self._s = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()
        self.receive_thread: int | None = None

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._s[stage] += seconds

    def sample_receive(self) -> None:
        """Read the MQTT network thread's CPU time (call before the thread stops)."""
        tid = self.receive_thread
        if tid is None:
            return
        try:
            import psutil

            for t in psutil.Process().threads():
                if t.id == tid:
                    with self._lock:
                        self._s["receive"] = t.user_time + t.system_time
        except Exception:  # noqa: BLE001 - accounting must never stop the collector
            return

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._s)


@dataclass
class CollectorSettings:
    """Everything a collector process needs; defaults suit one plant on one machine."""

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    #: TLS to the broker: the plant CA, and this collector's client certificate and key
    #: (deploy/pki/carbonedge-pki.sh collector NAME); the certificate's CN is its MQTT identity.
    mqtt_tls_ca: Path | None = None
    mqtt_tls_cert: Path | None = None
    mqtt_tls_key: Path | None = None
    influx_url: str = "http://127.0.0.1:8086"
    database: str = "carbonedge"
    influx_username: str | None = None
    influx_password: str | None = None
    state_dir: Path = Path("/var/lib/carbonedge/collector")
    #: Must be stable across restarts: it names the persistent MQTT session the broker keeps for us.
    client_id: str = "carbonedge-collector-1"
    #: Shared-subscription group; every collector of a group gets a share of the telemetry.
    share_group: str | None = "carbonedge"
    #: A flush is at most this many readings: 150,000 are ~5,000 points of 30 fields, the batch size
    #: InfluxDB's documentation recommends for writes (docs/collector.md).
    batch_max_readings: int = 150_000
    batch_max_delay_s: float = 0.5
    #: A partial flush is written once it is this old and nothing more is waiting (see :meth:`Collector.run`).
    batch_min_delay_s: float = 0.25
    max_payload_bytes: int = 4 * 1024 * 1024
    max_future_s: float = 300.0
    max_past_s: float | None = None
    known_devices: frozenset[str] | None = None
    gap_timeout_s: float = 120.0
    #: Attempts at InfluxDB before a flush goes to the disk spool.
    write_attempts: int = 3
    write_timeout_s: float = 10.0
    spool_max_bytes: int = 10 * 1024**3
    conflict_index_points: int = 250_000
    #: In-flight QoS 1 messages the broker may send before we acknowledge (MQTT v5 Receive Maximum).
    receive_maximum: int = 2000
    metrics_port: int | None = None
    metrics_interval_s: float = 10.0
    #: HTTP writes to InfluxDB in flight at once. InfluxDB 1.x handles one write request largely on one
    #: core, so a second concurrent write lets it use another (acknowledgements stay in arrival order).
    write_concurrency: int = 2


@dataclass
class _Unit:
    """One flush: what to write, what to dead-letter, what it proves durable, and which messages to ack."""

    msgs: list[mqtt.MQTTMessage] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    readings: int = 0
    seqs: list[tuple[tuple[str, str], int, int]] = field(default_factory=list)  # (gateway, seq, readings)
    deadletters: list[dict[str, Any]] = field(default_factory=list)
    health: int = 0
    archive: list[tuple[str, str, int, bytes]] = field(default_factory=list)  # (site, gateway, seq, raw payload)
    archived: bool = False  # dead-letters and archive records are on disk
    no: int = 0  # arrival order: units are committed (watermarks, PUBACKs) strictly in this order


class Collector:
    """One collector process (run several with the same ``share_group`` to split the load)."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.s = settings
        self.s.state_dir.mkdir(parents=True, exist_ok=True)
        # One InfluxDB client per thread (HTTP sessions are not shared between threads): see `writer`.
        self._writers_local = threading.local()
        self._all_writers: list[InfluxWriter] = []
        self.metrics = Metrics()
        self.cpu = StageCpu()
        self.validator = Validator(max_payload_bytes=settings.max_payload_bytes, max_future_s=settings.max_future_s,
                                   max_past_s=settings.max_past_s, known_devices=settings.known_devices)
        self.index = ConflictIndex(settings.conflict_index_points)
        self.spool = Spool(settings.state_dir / "spool", settings.spool_max_bytes)
        self._state = StateFile(settings.state_dir / "watermarks.json")
        self._lock = threading.RLock()
        self.gateways: dict[tuple[str, str], GatewayProgress] = self._state.load()
        # SimpleQueue (C): the MQTT network thread puts every message here, so its put must be cheap.
        self._q: queue.SimpleQueue[mqtt.MQTTMessage] = queue.SimpleQueue()
        # Prepared flushes go to the archiver, archived ones to the writers, written ones to the committer
        # (which restores arrival order).
        self._units: queue.Queue[_Unit | None] = queue.Queue(maxsize=1)
        self._archived: queue.Queue[_Unit | None] = queue.Queue(maxsize=1)
        self._written: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._writers = max(1, settings.write_concurrency)
        self._prepared = 0  # flushes numbered so far (collector thread)
        self._next_no = 1  # the next flush to commit (committer thread): flushes in flight = prepared - (next_no - 1)
        self._dlq_lock = threading.Lock()
        # A partial flush may close early while fewer than this are in flight: one archiving, one per writer.
        self._room = self._writers + 1
        self._stop = threading.Event()
        self._writer_done = threading.Event()
        self._failed = threading.Event()  # a writer or the committer failed: stop taking units
        self._dlq = (settings.state_dir / "deadletter.jsonl").open("a")
        # Evidence of record for `carbonedge verify`: the raw (signed) batches, fsynced before InfluxDB sees them.
        self.archive = Archive(settings.state_dir / "archive", settings.client_id)
        self._group = settings.share_group or settings.client_id
        self.connected = threading.Event()
        self._last_lag_s = 0.0
        self.metrics.gauges.update({
            "spool_bytes": lambda: self.spool.bytes,
            "spool_segments": lambda: len(self.spool),
            "queue_depth": self._q.qsize,
            "lag_s": lambda: self._last_lag_s,
            "conflict_index_points": lambda: len(self.index),
        })

        broker = BrokerSettings(host=settings.mqtt_host, port=settings.mqtt_port, client_id=settings.client_id,
                                username=settings.mqtt_username, password=settings.mqtt_password, ca_file=settings.mqtt_tls_ca,
                                cert_file=settings.mqtt_tls_cert, key_file=settings.mqtt_tls_key, reconnect_max_s=30)
        self.link = make_client(broker, who="collector", log=log, manual_ack=True,
                                auth_hint="--mqtt-username, $CARBONEDGE_MQTT_PASSWORD and the broker's ACL",
                                count=lambda kind: self.metrics.inc(f"mqtt_connect_failures_{kind}"),
                                on_connect=self._on_connect, on_disconnect=self._on_disconnect)
        c = self.link.client
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c
        # Many packets per recv, PUBLISH parsed in one pass (collector/mqttread.py): paho's own reader cost
        # about as much CPU per reading as decoding and validating the batch.
        self.mqtt_reader = mqttread.install(c)

    def _new_writer(self) -> InfluxWriter:
        s = self.s
        return InfluxWriter(s.influx_url, s.database, username=s.influx_username, password=s.influx_password, timeout_s=s.write_timeout_s)

    @property
    def writer(self) -> InfluxWriter:
        """The calling thread's own InfluxDB client (HTTP sessions are not shared between threads)."""
        w: InfluxWriter | None = getattr(self._writers_local, "w", None)
        if w is None:
            w = self._writers_local.w = self._new_writer()
            with self._lock:
                self._all_writers.append(w)
        return w

    @property
    def counters(self) -> dict[str, float]:
        """Current counters (``rejected.<reason>`` per rejection reason)."""
        return self.metrics.snapshot()

    # ---------------------------------------------------------------- mqtt callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, flags: object, props: object) -> None:
        self.cpu.receive_thread = threading.get_native_id()
        # Coordination topics first (QoS 0: retained state, nothing to acknowledge), then the data.
        client.subscribe([(ACK_FILTER, 0), (progress_filter(self._group), 0)])
        share = f"$share/{self.s.share_group}/" if self.s.share_group else ""
        _, self._data_sub_mid = client.subscribe([(share + wire.TELEMETRY_FILTER, 1), (share + wire.HEALTH_FILTER, 1)])
        log.info("collector %s subscribed to %s%s (session %s)", self.s.client_id, share, wire.TELEMETRY_FILTER,
                 "resumed" if getattr(flags, "session_present", False) else "new")

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, rcs: list[mqtt.ReasonCode], props: object) -> None:
        if mid != getattr(self, "_data_sub_mid", None):
            return
        if any(rc.is_failure for rc in rcs):
            log.error("the MQTT broker refused the collector's subscriptions: %s (check the broker ACL)", [str(rc) for rc in rcs])
            return
        self.connected.set()  # ready: the broker now routes telemetry to this session
        log.info("collector %s is receiving telemetry", self.s.client_id)

    def _on_disconnect(self, client: mqtt.Client, rc: mqtt.ReasonCode, props: object) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            self.metrics.inc("mqtt_disconnects")
            log.warning("collector lost the MQTT broker (%s); reconnecting, unacknowledged messages stay at the broker", rc)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        t = msg.topic
        if t.startswith(PROGRESS_ROOT + "/"):
            self._on_progress(msg)
        elif t.endswith("/ack") and t.count("/") == 4:
            self._on_ack(msg)
        else:
            self.metrics.inc("received")
            self._q.put(msg)

    def _on_progress(self, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 7 or parts[6] == self.s.client_id or not msg.payload:
            return
        try:
            data = json.loads(msg.payload)
            from carbonedge.collector.watermark import from_ranges

            done = from_ranges(data["done"])
            wm = int(data["watermark"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed progress message from collector %s", parts[6])
            return
        with self._lock:
            st = self.gateways.setdefault((parts[4], parts[5]), GatewayProgress())
            st.peers[parts[6]] = {s for s in done if s > st.watermark}
            st.adopt(wm)
            st.advance()

    def _on_ack(self, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = wire.Ack.model_validate_json(msg.payload)
        except ValueError:
            return
        with self._lock:
            st = self.gateways.setdefault((ack.site, ack.gateway), GatewayProgress())
            st.last_ack_seen = max(st.last_ack_seen, ack.watermark)
            st.adopt(ack.watermark)

    # ---------------------------------------------------------------- stage 1: decode, validate, prepare (main thread)
    def _deadletter_record(self, topic: str, reason: str, detail: str, payload: bytes | str | None = None, **extra: Any) -> dict[str, Any]:
        self.metrics.inc(f"rejected.{reason}")
        self.metrics.inc("deadlettered")
        rec: dict[str, Any] = {"ts": round(time.time(), 3), "collector": self.s.client_id, "topic": topic, "reason": reason, "detail": detail[:2000], **extra}
        if payload is not None:
            rec["payload"] = payload if isinstance(payload, str) else payload.decode("utf-8", "backslashreplace")
        level = logging.ERROR if reason == "conflict" else logging.WARNING
        log.log(level, "dead-lettered %s from %s: %s", "a conflicting point" if reason == "conflict" else "a message", topic, detail[:300])
        return rec

    def _prepare(self, msgs: list[mqtt.MQTTMessage]) -> _Unit:
        u = _Unit(msgs=msgs)
        clock = time.thread_time  # a system call (about 1.6 µs): two per message, the end of one is the start of the next
        t_validate = t_lines = 0.0
        t0 = clock()
        for m in msgs:
            try:
                site, gw, kind = self.validator.topic(m.topic)
                if kind == "health":
                    h = self.validator.health(site, gw, m.payload)
                    u.lines.extend(health_lines(h))
                    u.health += 1
                    continue
                v = self.validator.batch(site, gw, m.payload)
            except Rejected as r:
                u.deadletters.append(self._deadletter_record(m.topic, r.reason, r.detail, m.payload[: self.s.max_payload_bytes]))
                continue
            finally:
                t1 = clock()
                t_validate += t1 - t0
                t0 = t1
            u.archive.append((v.site, v.gateway, v.seq, m.payload))
            for dr in v.rejected:
                u.deadletters.append(self._deadletter_record(m.topic, dr.reason, dr.detail, dr.raw, seq=v.seq, device=dr.device))
            self._prepare_batch(u, m.topic, v)
            t0 = clock()
            t_lines += t0 - t1
        self.cpu.add("decode_validate", t_validate)
        self.cpu.add("lines_conflicts", t_lines)
        return u

    def _prepare_batch(self, u: _Unit, topic: str, b: Validated) -> None:
        key = (b.site, b.gateway)
        bp = b.points
        with self._lock:
            st = self.gateways.setdefault(key, GatewayProgress())
            replay = st.covered(b.seq) or b.seq in st.pending
            st.pending[b.seq] = st.pending.get(b.seq, 0) + 1
            went_back = bp.min_ts is not None and bp.min_ts <= st.last_ts
            if bp.max_ts is not None:
                st.last_ts = max(st.last_ts, bp.max_ts)
        if replay:
            self.metrics.inc("duplicate_deliveries")
        conflicts: list[tuple[Point, dict[str, object] | None]] = []
        unknown: list[Point] = []
        suspect = replay or went_back
        keys, held = self.index.lookup(bp.readings)
        if suspect or held.count(None) != len(held):
            for p, old in zip(bp.readings, held, strict=True):
                if old is None:
                    if suspect:
                        unknown.append(p)
                elif old != hash(p.fields):
                    conflicts.append((p, None))
        if unknown:
            self.metrics.inc("replay_checks")
            try:
                conflicts += find_conflicts_in_db(self.writer, unknown)
            except QueryError as exc:
                self.metrics.inc("replays_unverified")
                log.warning("%s/%s seq %d: %s; writing it unverified", b.site, b.gateway, b.seq, exc)
        bad = {id(p) for p, _ in conflicts}
        for p, stored in conflicts:
            self.metrics.inc("conflicts")
            detail = (f"{b.site}/{b.gateway} seq {b.seq}: {p.device} at {p.ts} ms already holds different values; "
                      "the stored values are kept, the new ones are dead-lettered (clock stepped back, or a bad replay)")
            u.deadletters.append(self._deadletter_record(topic, "conflict", detail, p.line(), seq=b.seq, device=p.device, stored=stored))
            u.lines.append(event_line(b.site, b.gateway, "conflict", p.ts, {"seq": b.seq, "new": p.fields[:1500]}, device=p.device, seq=b.seq))
        if bad:
            kept_keys = [(k, p) for k, p in zip(keys, bp.readings, strict=True) if id(p) not in bad]
            keys, kept = [k for k, _ in kept_keys], [p for _, p in kept_keys]
            n = sum(p.readings for p in kept)
        else:
            kept, n = bp.readings, bp.reading_count
        self.index.add_keyed(keys, kept)
        u.lines.extend([f"{p.series} {p.fields} {p.ts}" for p in kept])
        u.lines.extend(p.line() for p in bp.events)
        u.readings += n
        u.seqs.append((key, b.seq, n))

    # ---------------------------------------------------------------- stage 2: durable commit, watermark, ack (writer thread)
    def _write_dlq(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        with self._dlq_lock:  # the archiver, writer and drain threads all dead-letter
            for rec in records:
                self._dlq.write(json.dumps(rec, default=str) + "\n")
            self._dlq.flush()
            os.fsync(self._dlq.fileno())  # dead-lettered parts count as handled: they must be on disk before the ack
        for rec in records:
            try:
                site, gw, _ = wire.parse_topic(rec["topic"])
            except ValueError:
                continue
            pub = {k: rec[k] for k in ("ts", "collector", "reason", "detail", "seq", "device") if k in rec}
            self.client.publish(wire.deadletter_topic(site, gw), json.dumps(pub), qos=1)

    def _refused_records(self, refused: list[Refused]) -> list[dict[str, Any]]:
        out = []
        for r in refused:
            self.metrics.inc("influx_refused_lines", len(r.lines))
            for line in r.lines:
                out.append(self._deadletter_record("influxdb", "influx_rejected", r.message, line))
        return out

    def _durable_write(self, body: bytes, readings: int) -> None:
        """Write to InfluxDB, or into the spool; returns once the lines are durable somewhere."""
        backoff = Backoff()
        attempt = 0
        while True:
            if self.spool.empty():
                attempt += 1
                try:
                    refused = self.writer.write_isolating(body)
                    self.metrics.inc("readings_written", readings)
                    self._write_dlq(self._refused_records(refused))
                    return
                except WriteError as exc:
                    self.metrics.inc("write_retries")
                    if attempt < self.s.write_attempts:
                        d = backoff.failed(getattr(exc, "retry_after", None))
                        log.warning("%s; retrying in %.1f s", exc, d)
                        time.sleep(d)
                        continue
                    log.warning("%s; spooling to disk until it is back", exc)
            try:
                self.spool.append(body, readings)
                self.metrics.inc("readings_spooled", readings)
                return
            except SpoolFull as exc:
                # Never drop: stop acknowledging, so data waits at the broker and in the gateways' outboxes.
                log.error("%s; holding acknowledgements until InfluxDB drains it", exc)
                time.sleep(backoff.failed())

    def _archive_unit(self, u: _Unit) -> None:
        """Dead-letter records and the raw batches, fsynced: before InfluxDB sees the unit's lines."""
        t0 = time.thread_time()
        self._write_dlq(u.deadletters)
        if u.archive:
            self.archive.append(u.archive)
        u.archived = True
        self.cpu.add("archive", time.thread_time() - t0)

    def _archiver_loop(self) -> None:
        while True:
            u = self._units.get()
            if u is not None:
                try:
                    self._archive_unit(u)
                except Exception:
                    log.exception("collector could not write its dead-letter file or archive; stopping so that nothing is "
                                  "acknowledged that is not durable")
                    self._stop.set()
                    u = None
            if not self._put(self._archived, u) or u is None:
                return

    def _put(self, q: queue.Queue[_Unit | None], u: _Unit | None) -> bool:
        """Hand ``u`` to the next stage; ``False`` if the writer has stopped (nobody will take it)."""
        while True:
            try:
                q.put(u, timeout=0.5)
                return True
            except queue.Full:
                if self._writer_done.is_set():
                    return False

    def _commit(self, u: _Unit) -> None:
        self._write_unit(u)
        self._finish(u)

    def _write_unit(self, u: _Unit) -> None:
        """Make the unit durable: its archive records on disk, its lines in InfluxDB (or in the spool)."""
        if not u.archived:
            self._archive_unit(u)
        clock = time.thread_time
        if u.lines:
            t0 = clock()
            body = "\n".join(u.lines).encode()
            t1 = clock()
            self._durable_write(body, u.readings)
            t2 = clock()
            self.cpu.add("lines_conflicts", t1 - t0)
            self.cpu.add("write", t2 - t1)

    def _finish(self, u: _Unit) -> None:
        """After the unit is durable: advance watermarks, publish progress and acks, send its PUBACKs."""
        clock = time.thread_time
        t_ack = clock()
        if u.health:
            self.metrics.inc("health_written", u.health)
        touched: set[tuple[str, str]] = set()
        now_ms = int(time.time() * 1000)
        with self._lock:
            for key, seq, _n in u.seqs:
                st = self.gateways.setdefault(key, GatewayProgress())
                left = st.pending.pop(seq, 1) - 1
                if left > 0:
                    st.pending[seq] = left
                if not st.covered(seq):
                    self.metrics.inc("batches_written")
                    st.done.add(seq)
                touched.add(key)
                st.advance()
            if touched:
                self._state.save(self.gateways)
            progress = {k: (self.gateways[k].watermark, to_ranges(self.gateways[k].done)) for k in touched}
        for (site, gw), (wm, done) in progress.items():
            body = json.dumps({"collector": self.s.client_id, "watermark": wm, "done": done, "ts": now_ms})
            self.client.publish(progress_topic(self._group, site, gw, self.s.client_id), body, qos=1, retain=True)
        self._publish_acks()
        mqttread.ack_all(self.client, u.msgs)  # every PUBACK of the flush in one write
        if u.seqs:
            created = [m for m in u.msgs if m.timestamp]
            if created:
                self._last_lag_s = max(0.0, time.monotonic() - min(m.timestamp for m in created))
        self.cpu.add("progress_ack", clock() - t_ack)

    def _publish_acks(self) -> None:
        now_ms = int(time.time() * 1000)
        with self._lock:
            due = [(k, st.watermark) for k, st in self.gateways.items() if st.watermark > st.last_ack_seen]
            for k, _wm in due:
                self.gateways[k].last_ack_seen = self.gateways[k].watermark
        for (site, gw), wm in due:
            ack = wire.Ack(site=site, gateway=gw, watermark=wm, ts=now_ms)
            self.client.publish(wire.ack_topic(site, gw), ack.to_json(), qos=1, retain=True)

    def _check_gaps(self) -> None:
        gaps = []
        with self._lock:
            for (site, gw), st in self.gateways.items():
                g = st.check_gap(self.s.gap_timeout_s)
                if g:
                    gaps.append((site, gw, g))
            if gaps:
                self._state.save(self.gateways)
        if not gaps:
            return
        u = _Unit()
        now_ms = int(time.time() * 1000)
        for site, gw, (first, last) in gaps:
            self.metrics.inc("seq_gaps")
            self.metrics.inc("seq_gap_batches", last - first + 1)
            log.error("%s/%s: batches seq %d-%d never arrived within %.0f s although later ones did; recorded as a gap "
                      "(the gateway discarded them or had already pruned them)", site, gw, first, last, self.s.gap_timeout_s)
            u.lines.append(event_line(site, gw, "seq_gap", now_ms, {"first_seq": first, "last_seq": last, "batches": last - first + 1,
                                                                    "detected_by": self.s.client_id}))
        self._commit(u)

    def _writer_loop(self) -> None:
        """One of ``write_concurrency`` threads: make units durable, hand them to the committer."""
        try:
            while not self._failed.is_set():
                u = self._archived.get()
                if u is None:
                    self._archived.put(None)  # for the sibling writers
                    break
                self._write_unit(u)
                self._written.put(u)
        except Exception:
            log.exception("collector writer failed; stopping so that nothing is acknowledged that is not durable")
            self._failed.set()
            self._stop.set()
        finally:
            self._written.put(None)  # one per writer: the committer counts them

    def _committer_loop(self) -> None:
        """Commit written units strictly in arrival order (MQTT wants PUBACKs in order), and the periodic work."""
        last_periodic = 0.0
        last_metrics = time.monotonic()
        done: dict[int, _Unit] = {}
        writers_left = self._writers
        while writers_left:
            try:
                u = self._written.get(timeout=0.5)
            except queue.Empty:
                u = _Unit()
            try:
                if u is None:
                    writers_left -= 1
                elif u.no:
                    done[u.no] = u
                    while self._next_no in done:
                        self._finish(done.pop(self._next_no))
                        self._next_no += 1
                now = time.monotonic()
                if now - last_periodic >= 1.0:
                    last_periodic = now
                    self._check_gaps()
                    self._publish_acks()  # watermarks advanced by peers' progress
                if now - last_metrics >= self.s.metrics_interval_s:
                    last_metrics = now
                    self._write_pipeline_metrics()
            except Exception:
                log.exception("collector writer failed; stopping so that nothing is acknowledged that is not durable")
                self._failed.set()
                self._stop.set()
                break
        if done:
            log.warning("collector stopped with %d written flushes unacknowledged; the broker will deliver them again", len(done))
        self._writer_done.set()

    def _write_pipeline_metrics(self) -> None:
        try:
            self.writer.write(self.metrics.pipeline_line(self.s.client_id, int(time.time() * 1000)).encode())
        except WriteError:
            self.metrics.inc("pipeline_metrics_unwritten")

    # ---------------------------------------------------------------- stage 3: spool drain
    def _drain_loop(self) -> None:
        backoff = Backoff(0.5, 10.0)
        while not self._writer_done.is_set():
            seg = self.spool.oldest()
            if seg is None or not backoff.ready():
                time.sleep(0.1)
                continue
            path, body, readings = seg
            try:
                refused = self.writer.write_isolating(body)
            except WriteError:
                backoff.failed()
                continue
            backoff.reset()
            self._write_dlq(self._refused_records(refused))
            self.spool.remove(path)
            self.metrics.inc("readings_written", readings)
            self.metrics.inc("readings_drained", readings)
            if self.spool.empty():
                log.info("InfluxDB is back: the disk spool is drained")

    # ---------------------------------------------------------------- lifecycle
    def _gather(self) -> list[mqtt.MQTTMessage]:
        """The messages of the next flush (empty if none came within 0.25 s, or on stop).

        A flush closes at ``batch_max_readings``; or, when nothing more is waiting, once it is
        ``batch_min_delay_s`` old and the pipeline has room for it (its archive fsync then overlaps the
        write before it); or at ``batch_max_delay_s`` in any case. Busy, the queue never empties and
        flushes grow to the maximum. Quiet, a message waits about the minimum delay, which also bounds
        the flushes per second (each costs an archive fsync, an HTTP write and the acknowledgements).
        """
        s = self.s
        msgs: list[mqtt.MQTTMessage] = []
        readings = 0
        first = 0.0  # when the first message was taken
        while readings < s.batch_max_readings:
            try:
                m = self._q.get_nowait()
            except queue.Empty:
                if msgs:
                    age = time.monotonic() - first
                    in_flight = self._prepared - (self._next_no - 1)
                    if age >= s.batch_max_delay_s or (age >= s.batch_min_delay_s and in_flight < self._room):
                        return msgs
                    wait = min(s.batch_max_delay_s - age, max(s.batch_min_delay_s - age, 0.005))
                elif self._stop.is_set():
                    return msgs
                else:
                    wait = 0.25
                try:
                    m = self._q.get(timeout=wait)
                except queue.Empty:
                    if not msgs:
                        return msgs
                    continue
            if not msgs:
                first = time.monotonic()
            msgs.append(m)
            readings += max(1, len(m.payload) // 56)  # ~56 bytes of JSON per reading
        return msgs

    def run(self) -> None:
        """Consume until :meth:`stop`; commits what it received before returning."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 24 * 3600  # keep our queue at the broker through a week-long collector outage
        props.ReceiveMaximum = self.s.receive_maximum
        self.link.start(clean_start=False, properties=props)
        srv = serve_metrics(self.metrics, self.s.client_id, self.s.metrics_port) if self.s.metrics_port is not None else None
        self.metrics_server = srv
        writers = [threading.Thread(target=self._writer_loop, name=f"collector-writer-{i + 1}", daemon=True) for i in range(self._writers)]
        committer = threading.Thread(target=self._committer_loop, name="collector-committer", daemon=True)
        drain = threading.Thread(target=self._drain_loop, name="collector-drain", daemon=True)
        archiver = threading.Thread(target=self._archiver_loop, name="collector-archiver", daemon=True)
        for w in writers:
            w.start()
        committer.start()
        drain.start()
        archiver.start()
        if self.spool.readings():
            log.info("the disk spool holds %d readings from before the restart; draining them first", self.spool.readings())
        try:
            while not self._stop.is_set() or not self._q.empty():
                msgs = self._gather()
                if msgs:
                    self._prepared += 1
                    u = self._prepare(msgs)
                    u.no = self._prepared
                    if not self._put(self._units, u):
                        break
                if self._writer_done.is_set() or self._failed.is_set():
                    break
        finally:
            self._put(self._units, None)
            archiver.join(60)
            for w in writers:
                w.join(60)
            committer.join(60)
            drain.join(30)
            if srv:
                srv.shutdown()
                srv.server_close()
            self.cpu.sample_receive()
            self.link.close()
            for w in self._all_writers:
                w.session.close()
            self._dlq.close()
            self.archive.close()

    def stop(self) -> None:
        """Finish the current flushes and return from :meth:`run` (unreceived messages stay in the broker session)."""
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            wms = {f"{s}/{g}": st.watermark for (s, g), st in self.gateways.items()}
        cpu = {f"cpu_s.{k}": round(v, 4) for k, v in self.cpu.snapshot().items()}
        return {**self.metrics.snapshot(), **cpu, "watermarks": wms}
