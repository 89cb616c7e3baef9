"""Collector throughput on plant traffic: InfluxDB's own ceiling, the carbonedge collector, and a Node-RED peer flow.

Two traffic shapes, each ``>= 2 million`` readings by default:

``plant`` (the headline row): what plants send. Gateways alternate between the simulated steel
    and battery plants (``bench/_plant_traffic.py``): every device the simulators serve, with its
    real register map (11-19 quantities per power meter, 2 per flow meter, 4 per line counter, 3
    per weather station) and the tags the simulator gives the gateway; 0.5 % of device polls time
    out (every value ``bad``), 1 % of counter values are ``uncertain``, one batch in 50 carries an
    event; **every batch is signed and chained** (Ed25519), as the integrity feature is deployed.
``uniform`` (the earlier shape, kept for comparison): 10 meters x 30 quantities per message, all
    good, unsigned, no events.

Per shape:

(a) ceiling: the same points as pre-serialised line-protocol bodies (5,000 points each) posted by
    one writer to ``/write`` (what InfluxDB 1.6 takes on this machine), measured right before each
    collector run; a run's ratio is its rate over that ceiling, and the median ratio is reported;
(b) collector: a publisher process sends every message at QoS 1 to Mosquitto; ``--processes``
    collector processes (``carbonedge collect``, one shared subscription) validate, archive
    (fsynced), write and acknowledge; then every reading is counted in InfluxDB (nothing lost,
    nothing doubled: the count must be exact, and no message may be rejected);
(c) Node-RED 4 (if ``node``/``npm`` exist): mqtt in -> function (points) -> join (batch) ->
    influxdb batch, same publisher, same traffic.

Both peers are timed the same way: from the publisher's start until a poller first sees every point
in InfluxDB; the poller runs in both runs. It reads InfluxDB's own write counter (``SHOW STATS``,
points written to the run's database, 3 ms per ask) every 0.05 s and confirms with one exact
``count(seq)``. An earlier poller asked ``count(seq)`` every 0.25 s: that scan cost InfluxDB 25-35 %
more CPU and 8 % of its write rate (measured with the ceiling's writer), a handicap the ceiling
run did not carry, and up to 0.25 s of detection delay. For the
collector the end-to-end acknowledgement (watermark) time is printed as well. CPU is read from
/proc for every process (collector, Node-RED, InfluxDB, Mosquitto, publisher); the collector's own
per-stage thread CPU (receive, decode/validate, line building and conflict check, archive, write,
progress and acks) comes from its stats file.

The machine is usually shared: every figure line carries the load average. ``--repeat N`` runs the
single-collector measurement N times and reports the median. Last line::

    collector_readings_per_s=… influx_ceiling_per_s=… ratio=… cpu_us_per_reading=… nodered_per_s=…

Exit status 1 when the plant row misses a target: more than 1.0 collector CPU-µs per reading,
a ratio to the ceiling below 0.6 with one process, below 0.8 with a shared subscription when the
machine has a spare core (4 or more), or any reading lost or doubled.

Usage: ``.venv/bin/python bench/collector_throughput.py [--shapes plant uniform] [--readings 2000000]
[--gateways 10] [--processes 1] [--also-processes 2] [--repeat 3] [--no-nodered] [--profile]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from carbonedge import quantities, wire  # noqa: E402
from carbonedge.app.services import Services, free_port  # noqa: E402

SITE = "bench-steel"
T0 = 1_767_571_200_000
METERS = 10
QTYS = [q for q in quantities.QUANTITIES.values()][:30]
AREAS = [("meltshop", "eaf"), ("meltshop", "ladle_furnace"), ("casting", "caster"), ("rolling", "reheat_furnace"),
         ("rolling", "hot_mill"), ("utilities", "oxygen_plant"), ("utilities", "compressed_air"), ("utilities", "water"),
         ("meltshop", "fume_extraction"), ("site", "incomer")]
NODERED_DIR = Path(os.environ.get("CARBONEDGE_NODERED_DIR", "/tmp/carbonedge-nodered"))
CACHE_DIR = Path(os.environ.get("CARBONEDGE_BENCH_CACHE", Path(tempfile.gettempdir()) / "carbonedge-bench-cache"))
POLL_S = 0.05
#: Unacknowledged QoS 1 messages the publisher allows (as paho's max_inflight_messages_set(200) did before).
PUBLISH_WINDOW = 200
TARGET_CPU_US = 1.0
TARGET_RATIO_1 = 0.6
TARGET_RATIO_SHARED = 0.8
STAGE_NAMES = {"receive": "receive (MQTT thread)", "decode_validate": "decode/validate", "verify": "verify signature",
               "lines_conflicts": "line building + conflict check", "archive": "archive (fsync)", "write": "write (HTTP)",
               "progress_ack": "progress + acks"}


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- traffic
def uniform_payloads(site: str, gateway_idx: int, cycles: int) -> list[bytes]:
    """Wire-valid batches for one gateway, 10 meters x 30 quantities, built as plain JSON (fast, deterministic)."""
    rng = random.Random(gateway_idx)
    gw = f"gw{gateway_idx:02d}"
    out = []
    base = [rng.uniform(10, 5000) for _ in range(METERS * len(QTYS))]
    for seq in range(1, cycles + 1):
        ts = T0 + seq * 1000
        devices = []
        for m in range(METERS):
            area, process = AREAS[m]
            vals = {q.name: {"v": round(base[m * len(QTYS) + j] + rng.random(), 3), "u": q.unit, "q": "good"} for j, q in enumerate(QTYS)}
            devices.append({"device": f"{gw}-meter{m:02d}", "ts": ts + m, "status": "ok",
                            "tags": {"area": area, "process": process, "asset": f"{process}-{m}"}, "values": vals})
        out.append(json.dumps({"schema": wire.BATCH_SCHEMA, "site": site, "gateway": gw, "boot_id": "0123456789abcdef", "seq": seq,
                               "created": ts, "devices": devices, "events": []}, separators=(",", ":")).encode())
    return out


@dataclass
class Traffic:
    """One traffic shape: every gateway's messages, interleaved as live traffic arrives, and what must land."""

    shape: str
    gateways: int
    cycles: int
    messages: list[tuple[str, bytes]]  # (topic, payload) in publishing order
    readings: int  # good or uncertain values: what lands in InfluxDB
    points: int  # device points (one per device per cycle)
    per_gateway_per_cycle: float  # readings per gateway per poll cycle
    path: Path = field(default=Path())

    @property
    def acks(self) -> list[tuple[str, str]]:
        out = []
        for t, _ in self.messages[: self.gateways]:
            site, gw, _ = wire.parse_topic(t)
            out.append((site, gw))
        return out


def build_traffic(shape: str, gateways: int, readings: int, work: Path) -> Traffic:
    if shape == "plant":
        from _plant_traffic import plant_traffic, readings_per_cycle

        rpc = readings_per_cycle()
        per_cycle = sum(rpc[("steel", "battery")[g % 2]] for g in range(gateways)) * 0.995
        cycles = int(readings / per_cycle) + 1
        print(f"  building {gateways} gateways x {cycles} signed plant batches (cached in {CACHE_DIR}) ...", file=sys.stderr, flush=True)
        per, total = plant_traffic("bench", gateways, cycles, CACHE_DIR)
    else:
        cycles = -(-readings // (gateways * METERS * len(QTYS)))
        per = [(wire.telemetry_topic(SITE, f"gw{g:02d}"), uniform_payloads(SITE, g, cycles)) for g in range(gateways)]
        total = gateways * cycles * METERS * len(QTYS)
    order = [(per[g][0], per[g][1][i]) for i in range(cycles) for g in range(gateways)]
    points = sum(message_points(p) for _, p in order)
    t = Traffic(shape, gateways, cycles, order, total, points, total / (gateways * cycles))
    t.path = work / f"traffic-{shape}.pickle"
    with open(t.path, "wb") as f:
        pickle.dump(order, f)
    return t


def message_points(payload: bytes) -> int:
    """InfluxDB points of the ``readings`` measurement a telemetry message makes (one per device poll)."""
    return payload.count(b'"device":"') - _event_devices(payload)


def _event_devices(payload: bytes) -> int:
    """``"device":"`` occurrences inside the events list (not device points)."""
    i = payload.find(b'"events":[')
    return payload.count(b'"device":"', i) if i >= 0 else 0


# --------------------------------------------------------------------------- publisher
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, b = n >> 7, n & 0x7F
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 1 (fixed header 0x32)."""
    body = _mqtt_str(topic.encode()) + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _varint(len(body)) + body


def mqtt_connect(port: int, client_id: str) -> socket.socket:
    """A bare MQTT 3.1.1 connection to the local broker (clean session, no keep-alive), CONNACK checked."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = _mqtt_str(b"MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big") + _mqtt_str(client_id.encode())
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    connack = sock.recv(4)
    assert connack[:1] == b"\x20" and connack[3:4] == b"\x00", f"broker refused {client_id}: {connack!r}"
    return sock


def _publisher(path: str, port: int, ready: mp.Event, go: mp.Event, done: mp.Queue) -> None:  # type: ignore[type-arg]
    """Every message at QoS 1, at most :data:`PUBLISH_WINDOW` unacknowledged, over a bare MQTT 3.1.1 socket.

    The load generator shares the machine with what it measures, so it is kept cheap: the PUBLISH
    packets are encoded before the start signal and sent with one system call per window refill,
    and PUBACKs are counted from the byte stream (paho's client spent about 0.35 CPU-µs per reading
    here, a quarter of a core during a run). The broker's side is ordinary QoS 1 either way.
    """
    with open(path, "rb") as f:
        order = pickle.load(f)  # noqa: S301 - written by this benchmark
    packets = [publish_packet(t, p, i % 65535 + 1) for i, (t, p) in enumerate(order)]
    sock = mqtt_connect(port, f"bench-pub-{os.getpid()}")
    ready.set()
    go.wait()
    t0 = time.time()
    n, sent, acked, buf = len(packets), 0, 0, b""
    while acked < n:
        k = min(n - sent, PUBLISH_WINDOW - (sent - acked))
        if k > 0:
            sock.sendall(b"".join(packets[sent:sent + k]))
            sent += k
        data = sock.recv(65536)
        if not data:
            raise SystemExit(f"publisher: the broker closed the connection after {acked} of {n} acknowledgements")
        buf += data
        whole = len(buf) // 4
        if buf[: whole * 4 : 4].count(b"\x40") != whole:  # only PUBACKs (0x40 0x02 id id) are expected
            raise SystemExit(f"publisher: unexpected packet from the broker: {buf[:16]!r}")
        acked += whole
        buf = buf[whole * 4:]
    done.put((t0, time.time()))
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()


class Publisher:
    def __init__(self, traffic: Traffic, port: int) -> None:
        ctx = mp.get_context("spawn")
        self.ready, self.go, self.done = ctx.Event(), ctx.Event(), ctx.Queue()
        self.p = ctx.Process(target=_publisher, args=(str(traffic.path), port, self.ready, self.go, self.done), daemon=True)
        self.p.start()
        self.ready.wait(600)

    def start(self) -> float:
        t = time.time()
        self.go.set()
        return t

    def finish(self) -> tuple[float, float]:
        r = self.done.get(timeout=1200)
        self.p.join(30)
        return r  # type: ignore[no-any-return]


class CpuMeter:
    """CPU seconds used by named processes between :meth:`start` and :meth:`stop` (user + system)."""

    def __init__(self, procs: dict[str, list[int]]) -> None:
        self.procs = {name: [psutil.Process(pid) for pid in pids if pid] for name, pids in procs.items()}
        self.t0: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self, name: str) -> float:
        total = 0.0
        for p in self.procs[name]:
            try:
                ct = p.cpu_times()
                total += ct.user + ct.system
            except psutil.NoSuchProcess:
                pass
        return total

    def start(self) -> None:
        self.t0 = {n: self._now(n) for n in self.procs}

    def stop(self) -> None:
        self.used = {n: self._now(n) - self.t0[n] for n in self.procs}

    def report(self, wall: float) -> str:
        return ", ".join(f"{n} {v:.1f} s ({100 * v / wall:.0f} % of a core)" for n, v in self.used.items())


# --------------------------------------------------------------------------- InfluxDB
def _query(url: str, db: str, q: str) -> dict:  # type: ignore[type-arg]
    r = requests.get(f"{url}/query", params={"db": db, "q": q}, timeout=120)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def count_readings(influx_url: str, db: str) -> int:
    """Quantity values stored in ``readings`` (not ``seq``, ``bad_values`` or ``status``)."""
    series = _query(influx_url, db, "SELECT count(*) FROM readings")["results"][0].get("series")
    if not series:
        return 0
    cols, vals = series[0]["columns"], series[0]["values"][0]
    return sum(int(v) for c, v in zip(cols, vals, strict=True) if c.startswith("count_") and c[6:] in quantities.QUANTITIES)


def count_points(influx_url: str, db: str) -> int:
    series = _query(influx_url, db, "SELECT count(seq) FROM readings")["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def shard_stats(influx_url: str, db: str) -> dict[str, int]:
    """InfluxDB's own counters for ``db`` since it started (``SHOW STATS``, its shards summed): in-memory, 3 ms."""
    res = _query(influx_url, "", "SHOW STATS FOR 'shard'")["results"][0]
    total: dict[str, int] = {}
    for series in res.get("series", []):
        if series.get("tags", {}).get("database") == db:
            for k, v in zip(series["columns"], series["values"][0], strict=True):
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
    return total


def written_points(influx_url: str, db: str) -> int:
    """Points InfluxDB has written into ``db`` since it started (its shards' ``writePointsOk``)."""
    return shard_stats(influx_url, db).get("writePointsOk", 0)


def create_db(url: str, db: str) -> None:
    requests.post(f"{url}/query", params={"q": f'CREATE DATABASE "{db}"'}, timeout=30).raise_for_status()


class LandedPoller:
    """Records when every point is first in InfluxDB (the same for every peer).

    Asks InfluxDB's write statistics every :data:`POLL_S` (cheap: in-memory counters); once they
    show enough points written, one ``count(seq)`` confirms (the counters also count event and
    health points, and a point written twice); if it falls short, it keeps asking ``count(seq)``.
    """

    def __init__(self, url: str, db: str, expected_points: int) -> None:
        self.url, self.db, self.expected = url, db, expected_points
        self.t_landed: float | None = None
        self.last = 0
        self.last_change = time.monotonic()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        exact = False  # the write counters said "enough" once but count(seq) fell short: count from now on
        while not self._stop.is_set():
            try:
                n = count_points(self.url, self.db) if exact else written_points(self.url, self.db)
                t = time.time()  # when InfluxDB was seen to hold them (the confirming count comes after)
                if not exact and n >= self.expected:
                    n = count_points(self.url, self.db)
                    exact = n < self.expected
            except (requests.RequestException, KeyError, IndexError, ValueError):
                n, t = self.last, time.time()
            if n != self.last:
                self.last, self.last_change = n, time.monotonic()
            if n >= self.expected:
                self.t_landed = t
                return
            self._stop.wait(POLL_S)

    def wait(self, timeout: float, stall_s: float = 60.0) -> float | None:
        deadline = time.monotonic() + timeout
        while self._t.is_alive() and time.monotonic() < deadline and time.monotonic() - self.last_change < stall_s:
            self._t.join(0.5)
        self._stop.set()
        return self.t_landed


# --------------------------------------------------------------------------- (a) ceiling
def ceiling_bodies(traffic: Traffic) -> list[bytes]:
    from carbonedge.collector.lineprotocol import batch_lines

    lines: list[str] = []
    for _, p in traffic.messages:
        lines.extend(batch_lines(wire.Batch.model_validate_json(p)))
    return ["\n".join(lines[i:i + 5000]).encode() for i in range(0, len(lines), 5000)]


def ceiling(svc: Services, traffic: Traffic, bodies: list[bytes], tag: str) -> float:
    db = f"ceiling_{tag}"
    create_db(svc.influx.url, db)
    s = requests.Session()
    cpu = CpuMeter({"influxd": [svc.influx.pid or 0], "writer": [os.getpid()]})
    cpu.start()
    t0 = time.perf_counter()
    for body in bodies:
        r = s.post(f"{svc.influx.url}/write", params={"db": db, "precision": "ms"}, data=body, timeout=120)
        assert r.status_code == 204, r.text
    dt = time.perf_counter() - t0
    cpu.stop()
    got = count_readings(svc.influx.url, db)
    assert got == traffic.readings, f"ceiling run: {got} of {traffic.readings} readings landed"
    rate = traffic.readings / dt
    print(f"(a) [{traffic.shape}] InfluxDB ceiling, 1 writer, pre-serialised 5,000-point bodies: {rate:,.0f} readings/s "
          f"({dt:.1f} s; {load()}); CPU: {cpu.report(dt)}", flush=True)
    return rate


# --------------------------------------------------------------------------- (b) collector
def clear_session(port: int, client_id: str) -> None:
    """Discard a benchmark collector's persistent session, so the broker stops queueing for it."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    c.connect("127.0.0.1", port, clean_start=True, properties=props)
    c.loop_start()
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def clear_retained(port: int, topics: list[str]) -> None:
    """Remove retained acknowledgements of a previous run (a new collector would adopt their watermarks)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for t in topics:
        c.publish(t, b"", qos=1, retain=True).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


class AckWatcher:
    """Follows every gateway's retained end-to-end acknowledgement; records when all reach the last seq."""

    def __init__(self, port: int, traffic: Traffic, since_ms: int) -> None:
        self.want = {gw: traffic.cycles for _, gw in traffic.acks}
        self.wm: dict[str, int] = {}
        self.t_done: float | None = None
        self.since_ms = since_ms
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_msg
        self.c.connect("127.0.0.1", port)
        for site in {s for s, _ in traffic.acks}:
            self.c.subscribe(f"carbonedge/v1/{site}/+/ack", qos=1)
        self.c.loop_start()

    def _on_msg(self, cl: object, u: object, m: mqtt.MQTTMessage) -> None:
        if not m.payload:
            return
        a = wire.Ack.model_validate_json(m.payload)
        if a.ts < self.since_ms:
            return
        self.wm[a.gateway] = max(self.wm.get(a.gateway, 0), a.watermark)
        if self.t_done is None and all(self.wm.get(g, 0) >= n for g, n in self.want.items()):
            self.t_done = time.time()

    def wait(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        last_print = time.monotonic()
        try:
            while self.t_done is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the collector did not acknowledge everything within {timeout:.0f} s: {self.wm}")
                if time.monotonic() - last_print > 10:
                    last_print = time.monotonic()
                    print(f"    acknowledged {sum(self.wm.values()):,} of {sum(self.want.values()):,} messages", file=sys.stderr)
                time.sleep(0.01)
            return self.t_done
        finally:
            self.c.disconnect()
            self.c.loop_stop()


@dataclass
class CollectorResult:
    rate: float  # readings/s, publisher start -> InfluxDB holds every point
    ack_rate: float  # readings/s, publisher start -> every gateway acknowledged
    cpu_us: float  # collector CPU-µs per reading
    stages: dict[str, float]  # CPU-µs per reading per stage
    stats: dict[str, float]
    cpu_line: str


_run_no = 0


def start_collector(svc: Services, work: Path, db: str, client_id: str, group: str) -> subprocess.Popen[bytes]:
    """``carbonedge collect`` with default settings; log in ``work/c-ID.log``, stats in ``work/c-ID.json``."""
    cmd = [sys.executable, "-m", "carbonedge.app.cli", "-v", "collect", "--mqtt-port", str(svc.mqtt.port), "--influx-url", svc.influx.url,
           "--database", db, "--state-dir", str(work / f"c-{client_id}"), "--client-id", client_id, "--share-group", group,
           "--stats-file", str(work / f"c-{client_id}.json")]
    return subprocess.Popen(cmd, stdout=(work / f"c-{client_id}.log").open("w"), stderr=subprocess.STDOUT)


def wait_receiving(work: Path, client_id: str, timeout: float = 60.0) -> None:
    log_path = work / f"c-{client_id}.log"
    deadline = time.monotonic() + timeout
    while "is receiving telemetry" not in log_path.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(log_path.read_text()[-2000:])
        time.sleep(0.05)


def collector_run(svc: Services, work: Path, traffic: Traffic, processes: int, profile: bool) -> CollectorResult:
    global _run_no
    _run_no += 1
    tag = f"{traffic.shape}_{processes}_{_run_no}"
    db = f"coll_{tag}"
    create_db(svc.influx.url, db)
    clear_retained(svc.mqtt.port, [wire.ack_topic(s, g) for s, g in traffic.acks])
    group = f"bench-{tag}"
    ids = [f"bench-{tag}-{i}" for i in range(processes)]
    procs = [start_collector(svc, work, db, cid, group) for cid in ids]
    for cid in ids:
        wait_receiving(work, cid)
    spies = []
    if profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        for i, p in enumerate(procs):
            out = Path(__file__).resolve().parent / f"profile-collector-{tag}-{i}.txt"
            spies.append(subprocess.Popen([spy, "record", "--pid", str(p.pid), "--threads", "-f", "raw", "-r", "100", "-o", str(out)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
    pub = Publisher(traffic, svc.mqtt.port)
    cpu = CpuMeter({"collector": [p.pid for p in procs], "influxd": [svc.influx.pid or 0], "mosquitto": [svc.mqtt.pid or 0],
                    "publisher": [pub.p.pid or 0]})
    acks = AckWatcher(svc.mqtt.port, traffic, int(time.time() * 1000))
    poller = LandedPoller(svc.influx.url, db, traffic.points)
    cpu.start()
    t_start = pub.start()
    t_ack = acks.wait(timeout=1800)
    t_landed = poller.wait(timeout=120)
    cpu.stop()
    if t_landed is None:
        raise SystemExit(f"collector run: InfluxDB holds {poller.last:,} of {traffic.points:,} points")
    wall = t_landed - t_start
    p0, p1 = pub.finish()
    cpu_line = f"({wall:.1f} s, publisher done after {p1 - t_start:.1f} s, {load()}): {cpu.report(wall)}"
    for spy_p in spies:
        spy_p.send_signal(signal.SIGINT)
        spy_p.wait(60)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    stats: dict[str, float] = {}
    for i, p in enumerate(procs):
        p.wait(120)
        for k, v in json.loads((work / f"c-{ids[i]}.json").read_text()).items():
            if isinstance(v, (int, float)):
                stats[k] = stats.get(k, 0) + v
    for cid in ids:
        clear_session(svc.mqtt.port, cid)
    got = count_readings(svc.influx.url, db)
    rejected = sum(v for k, v in stats.items() if k.startswith("rejected."))
    assert got == traffic.readings, f"collector run: {got:,} of {traffic.readings:,} readings in InfluxDB"
    assert rejected == 0, f"collector run: {rejected:.0f} messages or devices rejected"
    n = traffic.readings
    stages = {k[6:]: 1e6 * v / n for k, v in stats.items() if k.startswith("cpu_s.")}
    return CollectorResult(n / wall, n / (t_ack - t_start), 1e6 * cpu.used["collector"] / n, stages, stats, cpu_line)


def stage_line(r: CollectorResult) -> str:
    known = sum(r.stages.values())
    parts = [f"{STAGE_NAMES.get(k, k)} {v:.2f}" for k, v in r.stages.items()]
    parts.insert(2, f"{STAGE_NAMES['verify']} 0 (not done at ingest: `carbonedge verify` checks the archive)")
    return "CPU-µs per reading by stage: " + ", ".join(parts) + f", other {max(0.0, r.cpu_us - known):.2f} (total {r.cpu_us:.2f})"


# --------------------------------------------------------------------------- (c) Node-RED
FLOW_FN = """
const b = msg.payload; const pts = [];
for (const d of b.devices) {
  const fields = {seq: b.seq};
  for (const [q, v] of Object.entries(d.values)) { if (v.v !== null && v.v !== undefined) fields[q] = v.v; }
  pts.push({measurement: 'readings', tags: Object.assign({site: b.site, gateway: b.gateway, device: d.device}, d.tags),
            fields: fields, timestamp: d.ts});
}
msg.payload = pts; return msg;
"""
FLATTEN_FN = "msg.payload = [].concat(...msg.payload); return msg;"


def nodered_install() -> Path | None:
    if not (shutil.which("node") and shutil.which("npm")):
        return None
    red = NODERED_DIR / "node_modules" / "node-red" / "red.js"
    if not red.exists():
        NODERED_DIR.mkdir(parents=True, exist_ok=True)
        print("  installing node-red@4 and node-red-contrib-influxdb with npm (once) ...", file=sys.stderr)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "node-red@4", "node-red-contrib-influxdb"], cwd=NODERED_DIR,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not red.exists():
            print(f"  npm install failed: {r.stderr[-500:]}", file=sys.stderr)
            return None
    return red


def nodered_run(svc: Services, work: Path, traffic: Traffic) -> tuple[float, float] | None:
    """``(readings/s, Node-RED CPU-µs per reading)`` or None when Node-RED is not available."""
    red = nodered_install()
    if red is None:
        return None
    db = f"nodered_{traffic.shape}"
    create_db(svc.influx.url, db)
    user = work / f"nodered-{traffic.shape}"
    user.mkdir()
    port = free_port()
    (user / "settings.js").write_text(f"""module.exports = {{ uiHost: "127.0.0.1", uiPort: {port}, flowFile: "flows.json", credentialSecret: false,
  disableEditor: true, httpAdminRoot: "/admin", telemetry: {{ enabled: false }}, diagnostics: {{ enabled: false }},
  externalModules: {{ autoInstall: false, palette: {{ allowInstall: false }} }}, editorTheme: {{ projects: {{ enabled: false }} }},
  logging: {{ console: {{ level: "info", metrics: false, audit: false }} }} }};""")
    influx_port = int(svc.influx.url.rsplit(":", 1)[1])
    # Node ids must not equal any node's type or property value (Node-RED 4 then reports a
    # "circular config node dependency" and starts nothing): hence the cb- prefix.
    flow = [
        {"id": "cb-tab", "type": "tab", "label": "bench"},
        {"id": "cb-broker", "type": "mqtt-broker", "broker": "127.0.0.1", "port": str(svc.mqtt.port), "clientid": "nodered-bench",
         "protocolVersion": "4", "keepalive": "60", "cleansession": True},
        {"id": "cb-influx", "type": "influxdb", "hostname": "127.0.0.1", "port": str(influx_port), "protocol": "http", "database": db,
         "name": "", "usetls": False, "influxdbVersion": "1.x"},
        {"id": "cb-in", "type": "mqtt in", "z": "cb-tab", "topic": "carbonedge/v1/+/+/telemetry", "qos": "1", "datatype": "json",
         "broker": "cb-broker", "nl": False, "rap": True, "inputs": 0, "wires": [["cb-fn"]]},
        {"id": "cb-fn", "type": "function", "z": "cb-tab", "func": FLOW_FN, "outputs": 1, "wires": [["cb-join"]]},
        {"id": "cb-join", "type": "join", "z": "cb-tab", "mode": "custom", "build": "array", "property": "payload", "propertyType": "msg",
         "count": "50", "timeout": "0.5", "joiner": "\\n", "joinerType": "str", "accumulate": False, "wires": [["cb-flat"]]},
        {"id": "cb-flat", "type": "function", "z": "cb-tab", "func": FLATTEN_FN, "outputs": 1, "wires": [["cb-out"]]},
        {"id": "cb-out", "type": "influxdb batch", "z": "cb-tab", "influxdb": "cb-influx", "precision": "ms", "retentionPolicy": "", "name": "",
         "wires": []},
    ]
    (user / "flows.json").write_text(json.dumps(flow))
    logf = work / f"nodered-{traffic.shape}.log"
    log = logf.open("w")
    p = subprocess.Popen(["node", str(red), "--settings", str(user / "settings.js"), "--userDir", str(NODERED_DIR)],
                         stdout=log, stderr=subprocess.STDOUT, cwd=user)
    try:
        deadline = time.monotonic() + 60
        while "Connected to broker" not in logf.read_text():
            if p.poll() is not None or time.monotonic() > deadline:
                print("  Node-RED did not start: " + logf.read_text()[-800:], file=sys.stderr)
                return None
            time.sleep(0.1)
        pub = Publisher(traffic, svc.mqtt.port)
        # (the publisher exits before InfluxDB holds everything, so its CPU is not read here: the collector runs show it)
        cpu = CpuMeter({"node-red": [p.pid], "influxd": [svc.influx.pid or 0], "mosquitto": [svc.mqtt.pid or 0]})
        poller = LandedPoller(svc.influx.url, db, traffic.points)
        cpu.start()
        t_start = pub.start()
        pub.finish()
        t_landed = poller.wait(timeout=1800, stall_s=20)
        cpu.stop()
        t_end = t_landed or (time.time() - 20)
        landed = count_readings(svc.influx.url, db)
        print(f"    Node-RED CPU ({t_end - t_start:.1f} s, {load()}): {cpu.report(t_end - t_start)}", flush=True)
        if landed < traffic.readings:
            print(f"  Node-RED landed {landed:,} of {traffic.readings:,} readings", file=sys.stderr)
        return landed / (t_end - t_start), 1e6 * cpu.used["node-red"] / max(1, landed)
    finally:
        p.terminate()
        p.wait(20)


# --------------------------------------------------------------------------- main
def run_shape(svc: Services, work: Path, shape: str, a: argparse.Namespace) -> dict[str, float | None]:
    traffic = build_traffic(shape, a.gateways, a.readings, work)
    print(f"[{shape}] {a.gateways} gateways x {traffic.cycles} cycles = {len(traffic.messages):,} messages, {traffic.points:,} device points, "
          f"{traffic.readings:,} readings ({traffic.per_gateway_per_cycle:.0f} per message)", flush=True)
    bodies = ceiling_bodies(traffic)
    runs = []
    ceilings = []
    for i in range(a.repeat):
        # The ceiling is measured right before each collector run: the other jobs on a shared machine change
        # InfluxDB's speed by 2-3x from one minute to the next, and a ratio needs both under the same load.
        ceilings.append(ceiling(svc, traffic, bodies, f"{shape}_{i}"))
        r = collector_run(svc, work, traffic, a.processes, a.profile and i == 0)
        runs.append(r)
        print(f"(b) [{shape}] carbonedge collector x{a.processes}, run {i + 1}/{a.repeat}: {r.rate:,.0f} readings/s until InfluxDB held every "
              f"point ({r.ack_rate:,.0f}/s until every gateway was acknowledged), {r.cpu_us:.2f} collector CPU-µs per reading, "
              f"all {traffic.readings:,} readings landed once; CPU {r.cpu_line}", flush=True)
        print(f"    {stage_line(r)}", flush=True)
    med = sorted(runs, key=lambda r: r.cpu_us)[len(runs) // 2]
    rate = statistics.median(r.rate for r in runs)
    ceil = statistics.median(ceilings)
    ratio = statistics.median(r.rate / c for r, c in zip(runs, ceilings, strict=True))
    cpu_us = med.cpu_us
    out: dict[str, float | None] = {"rate": rate, "ceil": ceil, "ratio": ratio, "cpu_us": cpu_us, "shared_ratio": None,
                                    "per_gw": traffic.per_gateway_per_cycle}
    print(f"(b) [{shape}] median of {len(runs)}: {rate:,.0f} readings/s, ceiling {ceil:,.0f}/s, ratio {ratio:.2f} (median of the runs' "
          f"ratios to the ceiling measured just before each), {cpu_us:.2f} CPU-µs per reading; "
          f"the readings of {rate / traffic.per_gateway_per_cycle:,.0f} gateways polling every 1 s (from {traffic.gateways}; many gateways "
          "cost more per reading, in the collector and in InfluxDB: bench/collector_steady.py)", flush=True)
    print(f"    median run's {stage_line(med)}", flush=True)
    for n in a.also_processes:
        ceil_n = ceiling(svc, traffic, bodies, f"{shape}_shared{n}")
        r = collector_run(svc, work, traffic, n, False)
        out["shared_ratio"] = r.rate / ceil_n
        print(f"(b) [{shape}] carbonedge collector x{n} on one shared subscription: {r.rate:,.0f} readings/s, ratio {r.rate / ceil_n:.2f}, "
              f"{r.cpu_us:.2f} CPU-µs per reading, the readings of {r.rate / traffic.per_gateway_per_cycle:,.0f} gateways at 1 s; every reading landed "
              f"once (batches handled {r.stats.get('batches_written', 0):.0f} of {len(traffic.messages)}, duplicate deliveries "
              f"{r.stats.get('duplicate_deliveries', 0):.0f}); CPU {r.cpu_line}", flush=True)
    nr = None if a.no_nodered else nodered_run(svc, work, traffic)
    out["nodered"] = None if nr is None else nr[0]
    if nr is not None:
        print(f"(c) [{shape}] Node-RED 4 mqtt in -> function -> join(50) -> influxdb batch: {nr[0]:,.0f} readings/s, "
              f"{nr[1]:.2f} Node-RED CPU-µs per reading (no validation, no archive, no acknowledgement)", flush=True)
    else:
        print(f"(c) [{shape}] Node-RED: not run", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", choices=["plant", "uniform"], default=["plant", "uniform"],
                    help="traffic shapes; the first gives the last line and the exit status")
    ap.add_argument("--readings", type=int, default=2_000_000, help="readings per shape (at least; default 2,000,000)")
    ap.add_argument("--gateways", type=int, default=10)
    ap.add_argument("--processes", type=int, default=1, help="collector processes for the headline figure")
    ap.add_argument("--also-processes", type=lambda v: max(1, int(v)), nargs="*", default=[2], help="further runs with this many collectors on a shared subscription")
    ap.add_argument("--repeat", type=int, default=3, help="single-collector runs per shape; the median is reported")
    ap.add_argument("--no-nodered", action="store_true")
    ap.add_argument("--profile", action="store_true", help="record the collector with py-spy (pip install py-spy) into bench/profile-collector-*.txt")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="carbonedge-bench-"))
    print(f"collector throughput on {os.cpu_count()} cores, {load()}", flush=True)
    results = {}
    with Services(work / "services") as svc:
        for shape in a.shapes:
            results[shape] = run_shape(svc, work, shape, a)
    shutil.rmtree(work, ignore_errors=True)
    head = results[a.shapes[0]]
    nr = head["nodered"]
    failures = []
    if head["cpu_us"] > TARGET_CPU_US:  # type: ignore[operator]
        failures.append(f"{head['cpu_us']:.2f} collector CPU-µs per reading (target <= {TARGET_CPU_US})")
    if head["ratio"] < TARGET_RATIO_1:  # type: ignore[operator]
        failures.append(f"ratio {head['ratio']:.2f} with one collector (target >= {TARGET_RATIO_1})")
    if (os.cpu_count() or 1) >= 4 and head["shared_ratio"] is not None and head["shared_ratio"] < TARGET_RATIO_SHARED:
        failures.append(f"ratio {head['shared_ratio']:.2f} on a shared subscription (target >= {TARGET_RATIO_SHARED})")
    for f in failures:
        print(f"below target [{a.shapes[0]}]: {f}", flush=True)
    print(f"collector_readings_per_s={head['rate']:.0f} influx_ceiling_per_s={head['ceil']:.0f} ratio={head['ratio']:.2f} "
          f"cpu_us_per_reading={head['cpu_us']:.2f} nodered_per_s={'n/a' if nr is None else f'{nr:.0f}'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
