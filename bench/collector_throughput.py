"""Collector throughput: InfluxDB's own ceiling, the carbonedge collector end to end, and a Node-RED peer flow.

All three ingest the same data: ``--gateways`` gateways × ``--cycles`` poll cycles, one MQTT message
per cycle holding 10 meters × 30 quantities (what the simulators' meters produce), tags ``site``,
``gateway``, ``device``, ``area``, ``process``, ``asset``. The default is 6,670 messages =
2,001,000 readings.

(a) ceiling: the same points as pre-serialised line-protocol bodies (5,000 points each) posted by
    one writer to ``/write`` (what InfluxDB 1.6 takes on this machine);
(b) collector: a publisher process sends every message at QoS 1 to Mosquitto; ``--processes``
    collector processes (``carbonedge collect``, one shared subscription) validate, write and
    acknowledge; the clock stops when every gateway's end-to-end watermark (published only after
    the write) covers its last seq; then every reading is counted in InfluxDB;
(c) Node-RED 4 (if ``node``/``npm`` exist): mqtt in → function (points) → join (batch) →
    influxdb batch, same publisher; the clock stops when InfluxDB holds every point.

Rates are readings (values) per second of wall time. All processes share the machine's cores, so
figures on a 2-core box are pessimistic. Last line:
``collector_readings_per_s=… influx_ceiling_per_s=… ratio=… nodered_per_s=…``

Usage: ``.venv/bin/python bench/collector_throughput.py [--cycles 667] [--gateways 10] [--processes 1]
[--also-processes 3] [--no-nodered] [--profile]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carbonedge import quantities, wire  # noqa: E402
from carbonedge.services import Services, free_port  # noqa: E402

SITE = "bench-steel"
T0 = 1_767_571_200_000
METERS = 10
QTYS = [q for q in quantities.QUANTITIES.values()][:30]
AREAS = [("meltshop", "eaf"), ("meltshop", "ladle_furnace"), ("casting", "caster"), ("rolling", "reheat_furnace"),
         ("rolling", "hot_mill"), ("utilities", "oxygen_plant"), ("utilities", "compressed_air"), ("utilities", "water"),
         ("meltshop", "fume_extraction"), ("site", "incomer")]
NODERED_DIR = Path(os.environ.get("CARBONEDGE_NODERED_DIR", "/tmp/carbonedge-nodered"))


def payloads(site: str, gateway_idx: int, cycles: int) -> list[bytes]:
    """Wire-valid batches for one gateway, built as plain JSON (fast, deterministic)."""
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


def _publisher(site: str, port: int, gateways: int, cycles: int, ready: mp.Event, go: mp.Event, done: mp.Queue) -> None:  # type: ignore[type-arg]
    data = [(wire.telemetry_topic(site, f"gw{g:02d}"), p) for g in range(gateways) for p in payloads(site, g, cycles)]
    # interleave gateways as live traffic would arrive
    per = [data[g * cycles:(g + 1) * cycles] for g in range(gateways)]
    order = [per[g][i] for i in range(cycles) for g in range(gateways)]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ready.set()
    go.wait()
    t0 = time.time()
    infos = [c.publish(t, p, qos=1) for t, p in order]
    for i in infos:
        i.wait_for_publish(600)
    done.put((t0, time.time()))
    c.disconnect()
    c.loop_stop()


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


class Publisher:
    def __init__(self, site: str, port: int, gateways: int, cycles: int) -> None:
        ctx = mp.get_context("spawn")
        self.ready, self.go, self.done = ctx.Event(), ctx.Event(), ctx.Queue()
        self.p = ctx.Process(target=_publisher, args=(site, port, gateways, cycles, self.ready, self.go, self.done), daemon=True)
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


def count_readings(influx_url: str, db: str) -> int:
    r = requests.get(f"{influx_url}/query", params={"db": db, "q": "SELECT count(*) FROM readings"}, timeout=120).json()
    series = r["results"][0].get("series")
    if not series:
        return 0
    cols, vals = series[0]["columns"], series[0]["values"][0]
    return sum(int(v) for c, v in zip(cols, vals, strict=True) if c.startswith("count_") and c != "count_seq")


def count_points(influx_url: str, db: str) -> int:
    r = requests.get(f"{influx_url}/query", params={"db": db, "q": "SELECT count(seq) FROM readings"}, timeout=120).json()
    series = r["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def create_db(url: str, db: str) -> None:
    requests.post(f"{url}/query", params={"q": f'CREATE DATABASE "{db}"'}, timeout=30).raise_for_status()


# --------------------------------------------------------------------------- (a) ceiling
def ceiling(svc: Services, gateways: int, cycles: int) -> tuple[float, int]:
    from collector.lineprotocol import batch_lines

    db = "ceiling"
    create_db(svc.influx.url, db)
    lines: list[str] = []
    readings = 0
    for g in range(gateways):
        for p in payloads(SITE, g, cycles):
            b = wire.Batch.model_validate_json(p)
            readings += b.reading_count()
            lines.extend(batch_lines(b))
    bodies = ["\n".join(lines[i:i + 5000]).encode() for i in range(0, len(lines), 5000)]
    s = requests.Session()
    cpu = CpuMeter({"influxd": [svc.influx.pid or 0], "writer": [os.getpid()]})
    cpu.start()
    t0 = time.perf_counter()
    for body in bodies:
        r = s.post(f"{svc.influx.url}/write", params={"db": db, "precision": "ms"}, data=body, timeout=120)
        assert r.status_code == 204, r.text
    dt = time.perf_counter() - t0
    cpu.stop()
    print(f"    CPU during the ceiling run ({dt:.1f} s, load average {os.getloadavg()[0]:.1f}): {cpu.report(dt)}", flush=True)
    got = count_readings(svc.influx.url, db)
    assert got == readings, f"ceiling run: {got} of {readings} readings landed"
    return readings / dt, readings


# --------------------------------------------------------------------------- (b) collector
def wait_acks(site: str, port: int, gateways: int, cycles: int, timeout: float) -> float:
    """Block until every gateway's retained ack reaches ``cycles``; return that time."""
    wm: dict[str, int] = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_msg(cl: object, u: object, m: mqtt.MQTTMessage) -> None:
        a = wire.Ack.model_validate_json(m.payload)
        wm[a.gateway] = max(wm.get(a.gateway, 0), a.watermark)

    c.on_message = on_msg
    c.connect("127.0.0.1", port)
    c.subscribe(f"carbonedge/v1/{site}/+/ack", qos=1)
    c.loop_start()
    deadline = time.monotonic() + timeout
    last_print = 0.0
    try:
        while time.monotonic() < deadline:
            if len(wm) == gateways and all(v >= cycles for v in wm.values()):
                return time.time()
            if time.monotonic() - last_print > 5:
                last_print = time.monotonic()
                print(f"    acknowledged {sum(wm.values()):,} of {gateways * cycles:,} messages", file=sys.stderr)
            time.sleep(0.01)
        raise SystemExit(f"collector did not acknowledge everything within {timeout:.0f} s: {wm}")
    finally:
        c.disconnect()
        c.loop_stop()


def collector_run(svc: Services, work: Path, gateways: int, cycles: int, processes: int, expected: int, profile: bool) -> tuple[float, dict]:
    db = f"coll{processes}"
    create_db(svc.influx.url, db)
    procs = []
    group = f"bench{processes}"
    for i in range(processes):
        state = work / f"c{processes}-{i}"
        cmd = [sys.executable, "-m", "carbonedge.cli", "-v", "collect", "--mqtt-port", str(svc.mqtt.port), "--influx-url", svc.influx.url,
               "--database", db, "--state-dir", str(state), "--client-id", f"bench-{processes}-{i}", "--share-group", group,
               "--stats-file", str(work / f"c{processes}-{i}.json")]
        log = (work / f"c{processes}-{i}.log").open("w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    for i in range(processes):
        deadline = time.monotonic() + 60
        while "is receiving telemetry" not in (work / f"c{processes}-{i}.log").read_text():
            if time.monotonic() > deadline:
                raise SystemExit((work / f"c{processes}-{i}.log").read_text()[-2000:])
            time.sleep(0.05)
    spies = []
    if profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        for i, p in enumerate(procs):
            out = Path(__file__).resolve().parent / f"profile-collector-{processes}-{i}.txt"
            spies.append(subprocess.Popen([spy, "record", "--pid", str(p.pid), "--threads", "-f", "raw", "-r", "100", "-o", str(out)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
    site = f"{SITE}-{processes}"
    pub = Publisher(site, svc.mqtt.port, gateways, cycles)
    cpu = CpuMeter({"collector": [p.pid for p in procs], "influxd": [svc.influx.pid or 0], "mosquitto": [svc.mqtt.pid or 0],
                    "publisher": [pub.p.pid or 0]})
    cpu.start()
    t_start = pub.start()
    t_end = wait_acks(site, svc.mqtt.port, gateways, cycles, timeout=1800)
    cpu.stop()
    print(f"    CPU during the run ({t_end - t_start:.1f} s, load average {os.getloadavg()[0]:.1f}): {cpu.report(t_end - t_start)}; "
          f"collector {1e6 * cpu.used['collector'] / expected:.2f} CPU-µs per reading", flush=True)
    pub.finish()
    for spy_p in spies:
        spy_p.send_signal(signal.SIGINT)
        spy_p.wait(60)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    stats: dict[str, float] = {}
    for i, p in enumerate(procs):
        p.wait(120)
        for k, v in json.loads((work / f"c{processes}-{i}.json").read_text()).items():
            if isinstance(v, (int, float)):
                stats[k] = stats.get(k, 0) + v
    got = count_readings(svc.influx.url, db)
    assert got == expected, f"collector run: {got} of {expected} readings in InfluxDB"
    return expected / (t_end - t_start), stats


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


def nodered_run(svc: Services, work: Path, gateways: int, cycles: int, expected_points: int, expected: int) -> float | None:
    red = nodered_install()
    if red is None:
        return None
    db = "nodered"
    create_db(svc.influx.url, db)
    user = work / "nodered"
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
    log = (work / "nodered.log").open("w")
    p = subprocess.Popen(["node", str(red), "--settings", str(user / "settings.js"), "--userDir", str(NODERED_DIR)],
                         stdout=log, stderr=subprocess.STDOUT, cwd=user)
    try:
        deadline = time.monotonic() + 60
        while "Connected to broker" not in (work / "nodered.log").read_text():
            if p.poll() is not None or time.monotonic() > deadline:
                print("  Node-RED did not start: " + (work / "nodered.log").read_text()[-800:], file=sys.stderr)
                return None
            time.sleep(0.1)
        pub = Publisher(f"{SITE}-nodered", svc.mqtt.port, gateways, cycles)
        t_start = pub.start()
        pub.finish()
        last, last_change, t_last = -1, time.monotonic(), time.time()
        while True:
            n = count_points(svc.influx.url, db)
            if n != last:
                last, last_change, t_last = n, time.monotonic(), time.time()
            if n >= expected_points or time.monotonic() - last_change > 20:
                break
            time.sleep(0.5)
        landed = count_readings(svc.influx.url, db)
        if landed < expected:
            print(f"  Node-RED landed {landed:,} of {expected:,} readings", file=sys.stderr)
        return landed / (t_last - t_start)
    finally:
        p.terminate()
        p.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=667, help="poll cycles per gateway (default 667: 2,001,000 readings with 10 gateways)")
    ap.add_argument("--gateways", type=int, default=10)
    ap.add_argument("--processes", type=int, default=1, help="collector processes for the headline figure")
    ap.add_argument("--also-processes", type=int, nargs="*", default=[3], help="further runs with this many collectors on a shared subscription")
    ap.add_argument("--no-nodered", action="store_true")
    ap.add_argument("--profile", action="store_true", help="record the collector with py-spy (pip install py-spy) into bench/profile-collector-*.txt")
    a = ap.parse_args()
    expected_points = a.gateways * a.cycles * METERS
    expected = expected_points * len(QTYS)
    work = Path(tempfile.mkdtemp(prefix="carbonedge-bench-"))
    print(f"collector throughput: {a.gateways} gateways x {a.cycles} cycles x {METERS} meters x {len(QTYS)} quantities = {expected:,} readings",
          file=sys.stderr)
    with Services(work / "services") as svc:
        ceil, _ = ceiling(svc, a.gateways, a.cycles)
        print(f"(a) InfluxDB ceiling, 1 writer, pre-serialised 5,000-point bodies: {ceil:,.0f} readings/s", flush=True)
        rate, stats = collector_run(svc, work, a.gateways, a.cycles, a.processes, expected, a.profile)
        print(f"(b) carbonedge collector x{a.processes}, publisher -> Mosquitto -> collector -> InfluxDB, all {expected:,} landed: "
              f"{rate:,.0f} readings/s (duplicates {stats.get('duplicate_deliveries', 0):.0f}, rejected "
              f"{sum(v for k, v in stats.items() if k.startswith('rejected.')):.0f})", flush=True)
        for n in a.also_processes:
            r, st = collector_run(svc, work, a.gateways, a.cycles, n, expected, False)
            print(f"(b) carbonedge collector x{n} on one shared subscription: {r:,.0f} readings/s, every reading landed once "
                  f"(batches handled {st.get('batches_written', 0):.0f} of {a.gateways * a.cycles}, duplicate deliveries "
                  f"{st.get('duplicate_deliveries', 0):.0f})", flush=True)
        nr = None if a.no_nodered else nodered_run(svc, work, a.gateways, a.cycles, expected_points, expected)
        if nr is not None:
            print(f"(c) Node-RED 4 mqtt in -> function -> join(50) -> influxdb batch: {nr:,.0f} readings/s", flush=True)
        else:
            print("(c) Node-RED: not run", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"collector_readings_per_s={rate:.0f} influx_ceiling_per_s={ceil:.0f} ratio={rate / ceil:.2f} "
          f"nodered_per_s={'n/a' if nr is None else f'{nr:.0f}'}")


if __name__ == "__main__":
    main()
