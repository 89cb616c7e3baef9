"""Edge gateway scale benchmark: 500 devices x 30 tags polled every second.

Three processes on loopback:

- a Modbus TCP server process serving the 500 devices (10 listening ports x 50 unit ids,
  a lean asyncio responder so that the server's own CPU use stays small on a 2-core box);
- the gateway under test, started exactly as in production (``carbonedge edge --config``),
  with its outbox on disk (``synchronous=FULL``) and MQTT v5 QoS 1 to a real Mosquitto;
- this process: Mosquitto's parent, an acknowledging subscriber (so the outbox is pruned as
  in production), and the sampler of the gateway's CPU time and RSS (psutil, the gateway pid only).

Each device has 30 float32 registers (one coalesced 60-register read): 21 gauges and 9
cumulative counters that grow every second (the counter tracker runs on them).

Last line: ``tags_per_s=… cpu_pct=… rss_mb=…`` where tags/s counts good values committed
to the outbox during the measured window, over the span of those cycles' commit times, cpu_pct is the gateway process's CPU time over
that window as a percentage of one core, and rss_mb its peak resident set.

Usage: ``.venv/bin/python bench/edge_scale.py [--devices 500] [--seconds 60] [--profile]``
(``--profile`` runs the gateway under pyinstrument, if installed, and prints the hot spots).

``--opcua``: the OPC UA target instead. An asyncua server process serves ``--items`` (default
5,000) variables, 30 per device object, every one of them changing every second (gauges move,
counters grow 0.5 per second as a function of time, so they continue across a restart); the
gateway monitors all of them over one session (Basic256Sha256 SignAndEncrypt with certificates,
``--security None`` for the plain figure) and commits them in its 1 s poll cycles. Halfway
through the window the server is killed and restarted on the same port. Last line:
``items=… tags_per_s=… cpu_pct=… rss_mb=… lost=…`` where ``lost`` counts committed cycles the
acknowledging subscriber never received plus counter readings that went backwards or jumped
(any counter_reset event); the script exits non-zero when cpu_pct > 50, rss_mb > 100 or lost > 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carbonedge import wire  # noqa: E402
from carbonedge.app.services import Mosquitto, free_port  # noqa: E402

QUANTITIES = [
    "active_energy_import", "active_energy_export", "reactive_energy_import", "active_power", "active_power_l1",
    "active_power_l2", "active_power_l3", "reactive_power", "apparent_power", "power_factor", "demand_active_power",
    "voltage_l1_n", "voltage_l2_n", "voltage_l3_n", "current_l1", "current_l2", "current_l3", "frequency",
    "gas_volume", "gas_flow", "oxygen_volume", "oxygen_flow", "steam_mass", "steam_flow", "water_volume",
    "water_flow", "air_volume", "air_flow", "production_count", "running",
]
COUNTERS = {"active_energy_import", "active_energy_export", "reactive_energy_import", "gas_volume", "oxygen_volume",
            "steam_mass", "water_volume", "air_volume", "production_count"}
PER_PORT = 50


# --------------------------------------------------------------------------- Modbus server process
def serve(n_devices: int, ports: list[int], ready: str) -> None:
    """A lean Modbus TCP responder for FC03: every unit holds 30 float32 values, counters grow each second."""

    regs: dict[tuple[int, int], bytearray] = {}
    values: dict[tuple[int, int], list[float]] = {}
    for i in range(n_devices):
        key = (ports[i // PER_PORT], i % PER_PORT + 1)
        values[key] = [1000.0 + i if q in COUNTERS else 10.0 + (j % 7) for j, q in enumerate(QUANTITIES)]
        regs[key] = bytearray(struct.pack(">30f", *values[key]))

    async def tick() -> None:
        while True:
            await asyncio.sleep(1.0)
            for key, vals in values.items():
                for j, q in enumerate(QUANTITIES):
                    if q in COUNTERS:
                        vals[j] += 0.5
                regs[key][:] = struct.pack(">30f", *vals)

    class Proto(asyncio.Protocol):
        def __init__(self, port: int) -> None:
            self.port = port
            self.buf = b""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while len(self.buf) >= 12:
                tid, _pid, length, unit = struct.unpack(">HHHB", self.buf[:7])
                frame, self.buf = self.buf[: 6 + length], self.buf[6 + length:]
                fc, start, count = struct.unpack(">BHH", frame[7:12])
                block = regs.get((self.port, unit))
                if block is None or fc not in (3, 4) or start * 2 + count * 2 > len(block):
                    self.t.write(struct.pack(">HHHBBB", tid, 0, 3, unit, fc | 0x80, 2))  # type: ignore[attr-defined]
                    continue
                data_ = bytes(block[start * 2 : start * 2 + count * 2])
                self.t.write(struct.pack(">HHHBBB", tid, 0, 3 + len(data_), unit, fc, len(data_)) + data_)  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for p in ports:
            await loop.create_server(lambda p=p: Proto(p), "127.0.0.1", p)
        Path(ready).write_text("ok")
        await tick()

    asyncio.run(main())


# --------------------------------------------------------------------------- OPC UA server process
OPCUA_NS = "urn:carbonedge:bench"


def serve_opcua(n_devices: int, port: int, ready: str, certs: str, t0: float) -> None:
    """An asyncua server: n_devices objects x 30 variables, all changing every second (counters as a function of time)."""
    import math
    import signal as _signal

    from carbonedge import nodemaps
    from carbonedge.simulators.opcua_plc import OpcUaPlc

    nm = nodemaps.NodeMap("bench-opcua", OPCUA_NS, tuple(nodemaps.NodePoint(q, f"s={{object}}.{q}", "Double") for q in QUANTITIES))
    c = Path(certs)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(_signal.SIGTERM, stop.set)
        from asyncua import ua

        plc = await OpcUaPlc(nm, [f"meter-{i:03d}" for i in range(n_devices)], port=port, allow_none=True, certificate=c / "server-cert.pem",
                             private_key=c / "server-key.pem", trusted=[c / "trusted"]).start()
        assert plc.server is not None
        nodes = [(i, j, q in COUNTERS, plc.nodes[(f"meter-{i:03d}", q)]) for i in range(n_devices) for j, q in enumerate(QUANTITIES)]
        write = plc.server.write_attribute_value
        Path(ready).write_text("ok")
        k = 0
        while not stop.is_set():
            t = time.time()
            for i, j, counter, nid in nodes:  # every item changes every second
                v = 1000.0 + i + 0.5 * (t - t0) if counter else 10.0 + (j % 7) + 0.1 * math.sin(k + j + i)
                await write(nid, ua.DataValue(ua.Variant(v, ua.VariantType.Double)))
            k += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.01, 1.0 - (time.time() - t)))
        await plc.stop()

    asyncio.run(main())


def gateway_toml_opcua(n_devices: int, port: int, mqtt_port: int, certs: Path, security: str) -> str:
    lines = ['[gateway]', 'site = "bench"', 'id = "gw1"', "poll_interval_s = 1", "health_interval_s = 10", "",
             "[mqtt]", f"port = {mqtt_port}", "max_inflight = 50", "",
             "[[opcua_servers]]", 'name = "server"', f'endpoint = "opc.tcp://127.0.0.1:{port}/carbonedge/plc"',
             f'security_policy = "{security}"', "publishing_interval_ms = 500", "sampling_interval_ms = 0", "timeout_s = 2"]
    if security != "None":
        lines += ['security_mode = "SignAndEncrypt"', f'certificate = "{certs / "gateway-cert.pem"}"',
                  f'private_key = "{certs / "gateway-key.pem"}"', f'server_certificate = "{certs / "server-cert.pem"}"']
    lines += ["", "[[node_maps]]", 'name = "bench-opcua"', f'namespace = "{OPCUA_NS}"', "points = ["]
    lines += [f'  {{ name = "{q}", node = "s={{object}}.{q}", ua_type = "Double" }},' for q in QUANTITIES]
    lines += ["]", ""]
    for i in range(n_devices):
        lines += ["[[devices]]", f'id = "meter-{i:03d}"', 'driver = "opcua"', 'server = "server"', 'node_map = "bench-opcua"',
                  "backoff_max_s = 2", 'tags = { area = "bench" }', ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- gateway config
def gateway_toml(n_devices: int, ports: list[int], mqtt_port: int) -> str:
    lines = ['[gateway]', 'site = "bench"', 'id = "gw1"', "poll_interval_s = 1", "health_interval_s = 10", "",
             "[mqtt]", f"port = {mqtt_port}", "max_inflight = 50", "",
             "[[profiles]]", 'name = "bench-30"', 'table = "holding"', "points = ["]
    lines += [f'  {{ name = "{q}", address = {2 * j}, dtype = "float32" }},' for j, q in enumerate(QUANTITIES)]
    lines += ["]", ""]
    for i in range(n_devices):
        lines += ["[[devices]]", f'id = "meter-{i:03d}"', 'profile = "bench-30"', f"port = {ports[i // PER_PORT]}",
                  f"unit_id = {i % PER_PORT + 1}", "timeout_s = 1.0", 'tags = { area = "bench" }', ""]
    return "\n".join(lines)


class Acker:
    """Acknowledges every batch it sees (highest contiguous seq), reading only the seq from the payload."""

    SEQ = re.compile(rb'"seq":(\d+)')
    CREATED = re.compile(rb'"created":(\d+)')

    def __init__(self, port: int) -> None:
        self.seen: set[int] = set()
        self.received: set[int] = set()
        self.resets = 0  # counter_reset events seen
        self.gaps = 0  # gap events seen
        self.good: dict[int, int] = {}  # seq -> good values in it
        self.created: dict[int, int] = {}  # seq -> when the gateway committed it (ms)
        self.watermark = 0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-acker", protocol=mqtt.MQTTv5)
        c.on_connect = lambda client, *a: client.subscribe(wire.telemetry_topic("bench", "gw1"), qos=1)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.c = c
        self._last_ack = 0.0

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        m = self.SEQ.search(msg.payload, 0, 400)
        if m is None:
            return
        seq = int(m.group(1))
        if seq not in self.received:
            self.received.add(seq)
            self.resets += msg.payload.count(b'"kind":"counter_reset"')
            self.gaps += msg.payload.count(b'"kind":"gap"')
        self.good[seq] = msg.payload.count(b'"q":"good"')
        c = self.CREATED.search(msg.payload, 0, 400)
        if c is not None:
            self.created[seq] = int(c.group(1))
        self.seen.add(seq)
        while self.watermark + 1 in self.seen:
            self.watermark += 1
            self.seen.discard(self.watermark)
        now = time.monotonic()
        if now - self._last_ack > 0.5:  # like the collector: one ack per flush, not per message
            self._last_ack = now
            ack = wire.Ack(site="bench", gateway="gw1", watermark=self.watermark, ts=int(time.time() * 1000))
            client.publish(wire.ack_topic("bench", "gw1"), ack.to_json(), qos=1, retain=True)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def committed_seq(db: Path) -> int:
    """The last seq committed to the gateway's outbox."""
    with sqlite3.connect(db, timeout=30) as c:
        return int(c.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]) - 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window (after a 10 s warm-up)")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--profile", action="store_true", help="run the gateway under pyinstrument and print its hot spots")
    ap.add_argument("--opcua", action="store_true", help="the OPC UA target: monitored items over one session, a server restart mid-run")
    ap.add_argument("--items", type=int, default=5000, help="with --opcua: monitored items (30 per device)")
    ap.add_argument("--security", choices=["Basic256Sha256", "None"], default="Basic256Sha256", help="with --opcua: the session's security policy")
    a = ap.parse_args()
    if a.opcua:
        return main_opcua(a)

    work = Path(tempfile.mkdtemp(prefix="edge-scale-"))
    n_ports = -(-a.devices // PER_PORT)
    ports = [free_port() for _ in range(n_ports)]
    broker = Mosquitto("mosquitto", free_port(), work / "broker").start()
    ready = work / "modbus-ready"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(a.devices), ",".join(map(str, ports)), str(ready)])
    gw: subprocess.Popen[bytes] | None = None
    acker: Acker | None = None
    try:
        while not ready.exists():
            if server.poll() is not None:
                raise SystemExit("the Modbus server process failed to start")
            time.sleep(0.05)
        cfg = work / "gateway.toml"
        cfg.write_text(gateway_toml(a.devices, ports, broker.port))
        acker = Acker(broker.port)
        stats_file = work / "edge-stats.json"
        total = a.warmup + a.seconds
        until = time.time() + total + 1.0
        from carbonedge.clock import iso

        cmd = [sys.executable]
        if a.profile:
            cmd += ["-m", "pyinstrument", "-r", "text", "-o", str(work / "profile.txt"), "-m", "carbonedge.app.cli"]
        else:
            cmd += ["-m", "carbonedge.app.cli"]
        cmd += ["edge", "--config", str(cfg), "--data-dir", str(work / "edge"), "--until", iso(until), "--stats-file", str(stats_file)]
        log = (work / "edge.log").open("wb")
        gw = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        proc = psutil.Process(gw.pid)
        print(f"gateway pid {gw.pid}: {a.devices} devices x {len(QUANTITIES)} tags every 1 s; warm-up {a.warmup:g} s, "
              f"measuring {a.seconds:g} s ...", flush=True)
        time.sleep(a.warmup)
        db = work / "edge" / "outbox.sqlite"
        seq0 = committed_seq(db)
        c0 = proc.cpu_times()
        t0 = time.monotonic()
        rss_peak = 0.0
        next_report = t0 + 10
        while time.monotonic() - t0 < a.seconds:
            time.sleep(0.5)
            rss_peak = max(rss_peak, proc.memory_info().rss / 1e6)
            if time.monotonic() >= next_report:
                next_report += 10
                ct = proc.cpu_times()
                el = time.monotonic() - t0
                print(f"  {el:4.0f} s  cpu {100 * (ct.user + ct.system - c0.user - c0.system) / el:5.1f} %  rss {rss_peak:5.1f} MB  "
                      f"acked seq {acker.watermark}", flush=True)
        c1 = proc.cpu_times()
        elapsed = time.monotonic() - t0
        seq1 = committed_seq(db)
        gw.wait(total + 60)
        deadline = time.monotonic() + 30
        while acker.watermark < seq1 and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = json.loads(stats_file.read_text())
        cycles = seq1 - seq0
        good = sum(acker.good.get(s, 0) for s in range(seq0 + 1, seq1 + 1))
        per_cycle = good / max(1, cycles)
        # The rate over the cycles' own commit times: the window's edges fall between 1 s cycles, so
        # dividing by the sampling window would count 60 or 61 cycles in "60.4 s" by chance.
        span_s = (acker.created[seq1] - acker.created[seq0]) / 1000.0 if seq0 in acker.created and seq1 in acker.created else elapsed
        tags_per_s = good / span_s
        cpu_pct = 100.0 * (c1.user + c1.system - c0.user - c0.system) / elapsed
        print(f"cycles committed in the window: {cycles} in {elapsed:.1f} s (commit times span {span_s:.1f} s); good values per cycle {per_cycle:.0f}; "
              f"read errors {stats.get('read_errors', 0)}; skipped cycles {stats.get('skipped_cycles', 0)}; "
              f"published {stats.get('mqtt.published', 0)}; acked up to {acker.watermark} of {stats['last_seq']}")
        if a.profile and (work / "profile.txt").exists():
            print((work / "profile.txt").read_text()[:6000])
        print(f"tags_per_s={tags_per_s:.0f} cpu_pct={cpu_pct:.1f} rss_mb={rss_peak:.1f}")
        return 0
    finally:
        _stop_all(gw, acker, server, broker)


def _stop_all(gw: subprocess.Popen | None, acker: Any, server: subprocess.Popen, broker: Any) -> None:  # type: ignore[type-arg]
    """Stop the gateway (SIGTERM, then kill), the acknowledging subscriber, the meter server and the broker."""
    if gw is not None and gw.poll() is None:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(20)
        except subprocess.TimeoutExpired:
            gw.kill()
    if acker is not None:
        acker.close()
    server.terminate()
    server.wait(10)
    broker.stop()


def main_opcua(a: argparse.Namespace) -> int:
    from carbonedge.edge.drivers.opcua import make_certificate
    from carbonedge.simulators.opcua_plc import prepare

    prepare()
    n_devices = -(-a.items // len(QUANTITIES))
    work = Path(tempfile.mkdtemp(prefix="edge-scale-opcua-"))
    certs = work / "certs"
    make_certificate(certs, "server", "urn:carbonedge:simulated-plc", server=True)
    gw_cert, _ = make_certificate(certs, "gateway", "urn:carbonedge:gateway:bench")
    (certs / "trusted").mkdir()
    (certs / "trusted" / "gateway.pem").write_bytes(gw_cert.read_bytes())
    port = free_port()
    broker = Mosquitto("mosquitto", free_port(), work / "broker").start()
    t0 = time.time()

    server_t0 = [time.time()]

    def start_server() -> subprocess.Popen[bytes]:
        server_t0[0] = time.time()
        ready = work / "opcua-ready"
        ready.unlink(missing_ok=True)
        p = subprocess.Popen([sys.executable, __file__, "--serve-opcua", str(n_devices), str(port), str(ready), str(certs), repr(t0)])
        while not ready.exists():
            if p.poll() is not None:
                raise SystemExit("the OPC UA server process failed to start")
            time.sleep(0.05)
        return p

    server = start_server()
    gw: subprocess.Popen[bytes] | None = None
    acker: Acker | None = None
    try:
        cfg = work / "gateway.toml"
        cfg.write_text(gateway_toml_opcua(n_devices, port, broker.port, certs, a.security))
        acker = Acker(broker.port)
        stats_file = work / "edge-stats.json"
        total = a.warmup + a.seconds
        from carbonedge.clock import iso

        cmd = [sys.executable, "-m", "carbonedge.app.cli", "edge", "--config", str(cfg), "--data-dir", str(work / "edge"),
               "--until", iso(time.time() + total + 1.0), "--exit-when-drained", "--stats-file", str(stats_file)]
        log = (work / "edge.log").open("wb")
        gw = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        proc = psutil.Process(gw.pid)
        print(f"gateway pid {gw.pid}: {n_devices * len(QUANTITIES)} monitored items ({n_devices} objects x {len(QUANTITIES)}) changing every "
              f"second, security {a.security}; warm-up {a.warmup:g} s, measuring {a.seconds:g} s with a server restart halfway ...", flush=True)
        time.sleep(a.warmup)
        db = work / "edge" / "outbox.sqlite"
        seq0 = committed_seq(db)
        c0 = proc.cpu_times()
        t_start = time.monotonic()
        rss_peak = 0.0
        restarted = False
        next_report = t_start + 10
        while time.monotonic() - t_start < a.seconds:
            time.sleep(0.5)
            rss_peak = max(rss_peak, proc.memory_info().rss / 1e6)
            if not restarted and time.monotonic() - t_start >= a.seconds / 2:
                restarted = True
                server.kill()
                server.wait(10)
                print("  server killed; restarting it on the same port", flush=True)
                server = start_server()
            if time.monotonic() >= next_report:
                next_report += 10
                ct = proc.cpu_times()
                el = time.monotonic() - t_start
                try:
                    sc = psutil.Process(server.pid).cpu_times()
                    srv = f"  (server process cpu {100 * (sc.user + sc.system) / (time.time() - server_t0[0]):5.1f} %)"
                except psutil.Error:
                    srv = ""
                print(f"  {el:4.0f} s  cpu {100 * (ct.user + ct.system - c0.user - c0.system) / el:5.1f} %  rss {rss_peak:5.1f} MB  "
                      f"acked seq {acker.watermark}{srv}", flush=True)
        c1 = proc.cpu_times()
        elapsed = time.monotonic() - t_start
        seq1 = committed_seq(db)
        gw.wait(total + 60)
        last = json.loads(stats_file.read_text())["last_seq"]
        deadline = time.monotonic() + 30
        while acker.watermark < last and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = json.loads(stats_file.read_text())
        cycles = seq1 - seq0
        good = sum(acker.good.get(s, 0) for s in range(seq0 + 1, seq1 + 1))
        span_s = (acker.created[seq1] - acker.created[seq0]) / 1000.0 if seq0 in acker.created and seq1 in acker.created else elapsed
        missing = len(set(range(1, last + 1)) - acker.received)
        lost = missing + acker.resets
        cpu_pct = 100.0 * (c1.user + c1.system - c0.user - c0.system) / elapsed
        print(f"cycles committed in the window: {cycles} in {elapsed:.1f} s; good values per cycle {good / max(1, cycles):.0f} "
              f"(the restart's cycles carry bad values); read errors {stats.get('read_errors', 0)}; skipped cycles {stats.get('skipped_cycles', 0)}; "
              f"server restarts seen {stats.get('opcua_server_restarts', 0)}, gap records {acker.gaps}; batches acked {acker.watermark} of {last}; "
              f"missing {missing}; counter resets {acker.resets}; notifications received {stats.get('opcua.notifications', 0):,} "
              f"({stats.get('opcua.notifications', 0) / (time.time() - t0):,.0f}/s over the run)")
        print(f"items={n_devices * len(QUANTITIES)} tags_per_s={good / span_s:.0f} cpu_pct={cpu_pct:.1f} rss_mb={rss_peak:.1f} lost={lost}")
        return 0 if cpu_pct <= 50.0 and rss_peak <= 100.0 and lost == 0 else 1
    finally:
        _stop_all(gw, acker, server, broker)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-opcua":
        serve_opcua(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")], sys.argv[4])
    else:
        sys.exit(main())
