"""The collector at steady plant rates: CPU, InfluxDB write requests and acknowledgement delay.

``collector_throughput.py`` measures a burst as fast as the machine goes; a plant sends a steady
stream (one message per gateway per poll), and there the cost that matters is per *flush*: an
fsync, an HTTP write and the acknowledgements, about 2.5 ms of CPU each. A collector that
flushed at every message would spend a third of a core at 100 messages/s (measured: 39 %
before ``batch_min_delay_s``); one that waits too long delays every acknowledgement.

For each rate (messages per second, each a signed plant poll cycle of about 179 readings from
``bench/_plant_traffic.py``): one ``carbonedge collect`` process with default settings, a
publisher sending pre-encoded QoS 1 packets at that rate for ``--seconds``, then the collector's
CPU (from /proc), InfluxDB's CPU and write requests (``SHOW STATS``), the collector's
acknowledgement delay (``lag_s``: age of the oldest message of the last flush when it was
acknowledged) and every reading counted in InfluxDB. Last line::

    rate_100_cpu_pct=… rate_100_lag_s=… rate_1000_cpu_pct=… rate_1000_cpu_us=… rate_1000_lag_s=… writes_per_s=…

Exit status 1 when: more than 10 % of a core at 100 messages/s, more than 1.5 CPU-µs per reading
at 1,000 messages/s, an acknowledgement delay over 0.5 s, or any reading missing.

Usage: ``.venv/bin/python bench/collector_steady.py [--rates 100 1000] [--seconds 8]``
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import collector_throughput as ct  # noqa: E402 - the traffic, services and MQTT packets of the burst benchmark

TARGET_CPU_PCT_AT_100 = 10.0
TARGET_CPU_US_AT_1000 = 1.5
TARGET_LAG_S = 0.5


def shard_stats(url: str, db: str) -> dict[str, int]:
    res = ct._query(url, "", "SHOW STATS FOR 'shard'")["results"][0]
    out = {"writeReq": 0, "writePointsOk": 0}
    for s in res.get("series", []):
        if s.get("tags", {}).get("database") == db:
            row = dict(zip(s["columns"], s["values"][0], strict=True))
            for k in out:
                out[k] += int(row[k])
    return out


def message_readings(payload: bytes) -> int:
    """Values a telemetry message carries (a null value, ``bad``, is not a reading InfluxDB stores)."""
    from carbonedge.collector.fastwire import decode_batch

    return sum(1 for d in decode_batch(payload).devices for v in d.values.values() if v.v is not None)


class PacedPublisher:
    """QoS 1 over a bare MQTT 3.1.1 socket, ``rate`` messages per second in 10 ms steps; counts PUBACKs."""

    def __init__(self, port: int, name: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        body = ct._mqtt_str(b"MQTT") + bytes([4, 0x02, 0, 0]) + ct._mqtt_str(name.encode())
        self.sock.sendall(b"\x10" + ct._varint(len(body)) + body)
        ack = self.sock.recv(4)
        assert ack[:1] == b"\x20" and ack[3:4] == b"\x00", f"broker refused the publisher: {ack!r}"
        self.acked = 0
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        buf = b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            buf += data
            whole = len(buf) // 4
            self.acked += whole
            buf = buf[whole * 4:]

    def send(self, packets: list[bytes], rate: int) -> None:
        per = max(1, round(rate * 0.01))
        t0 = time.monotonic()
        for i in range(0, len(packets), per):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.sock.sendall(b"".join(packets[i:i + per]))

    def close(self) -> None:
        self.sock.close()


def run_rate(svc: ct.Services, work: Path, messages: list[tuple[str, bytes]], rate: int, seconds: float, k: int) -> dict[str, float]:
    db, cid = f"steady_{rate}_{k}", f"steady-{rate}-{k}"
    ct.create_db(svc.influx.url, db)
    logf = work / f"{cid}.log"
    proc = subprocess.Popen([sys.executable, "-m", "carbonedge.app.cli", "-v", "collect", "--mqtt-port", str(svc.mqtt.port),
                             "--influx-url", svc.influx.url, "--database", db, "--state-dir", str(work / cid), "--client-id", cid,
                             "--share-group", cid, "--stats-file", str(work / f"{cid}.json")],
                            stdout=logf.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "is receiving telemetry" not in logf.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(logf.read_text()[-2000:])
        time.sleep(0.05)
    packets = [ct.publish_packet(t, p, i % 65535 + 1) for i, (t, p) in enumerate(messages)]
    points = sum(p.count(b'"device":"') - ct._event_devices(p) for _, p in messages)
    pub = PacedPublisher(svc.mqtt.port, f"{cid}-pub")
    me, influxd = psutil.Process(proc.pid), psutil.Process(svc.influx.pid)
    c0, i0, s0 = sum(me.cpu_times()[:2]), sum(influxd.cpu_times()[:2]), shard_stats(svc.influx.url, db)
    t0 = time.monotonic()
    pub.send(packets, rate)
    while ct.count_points(svc.influx.url, db) < points and time.monotonic() - t0 < seconds + 60:
        time.sleep(0.1)
    t1 = time.monotonic()
    c1, i1, s1 = sum(me.cpu_times()[:2]), sum(influxd.cpu_times()[:2]), shard_stats(svc.influx.url, db)
    pub.close()
    proc.terminate()
    proc.wait(60)
    stats = json.loads((work / f"{cid}.json").read_text())
    readings = ct.count_readings(svc.influx.url, db)
    expected = sum(message_readings(p) for _, p in messages)
    wall = t1 - t0
    r = {"cpu_pct": 100 * (c1 - c0) / wall, "cpu_us": 1e6 * (c1 - c0) / max(readings, 1), "influx_pct": 100 * (i1 - i0) / wall,
         "writes_per_s": (s1["writeReq"] - s0["writeReq"]) / wall, "lag_s": float(stats.get("lag_s", 0.0)),
         "missing": expected - readings}
    print(f"{rate:>5} messages/s ({round(expected / len(messages) * rate):,} readings/s) for {wall:.1f} s "
          f"({ct.load()}): collector {r['cpu_pct']:.0f} % of a core ({r['cpu_us']:.2f} CPU-µs per reading), InfluxDB {r['influx_pct']:.0f} % "
          f"of a core, {r['writes_per_s']:.0f} write requests/s, acknowledged {r['lag_s']:.2f} s after arrival; "
          f"{readings:,} of {expected:,} readings in InfluxDB", flush=True)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", type=int, nargs="+", default=[100, 1000], help="messages per second (default 100 1000)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds at each rate (default 8)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="carbonedge-steady-"))
    need = sum(int(r * a.seconds) for r in a.rates)
    print(f"collector at steady rates on {psutil.cpu_count()} cores, {ct.load()}", flush=True)
    traffic = ct.build_traffic("plant", 10, max(need * 180, 200_000), work)
    results: dict[int, dict[str, float]] = {}
    with ct.Services(work / "services") as svc:
        off = 0
        for k, rate in enumerate(a.rates):
            n = int(rate * a.seconds)
            results[rate] = run_rate(svc, work, traffic.messages[off:off + n], rate, a.seconds, k)
            off += n
    failed = []
    for rate, r in results.items():
        if r["missing"]:
            failed.append(f"{r['missing']:,} readings missing at {rate}/s")
        if r["lag_s"] > TARGET_LAG_S:
            failed.append(f"acknowledged {r['lag_s']:.2f} s after arrival at {rate}/s (target <= {TARGET_LAG_S})")
    if 100 in results and results[100]["cpu_pct"] > TARGET_CPU_PCT_AT_100:
        failed.append(f"{results[100]['cpu_pct']:.0f} % of a core at 100 messages/s (target <= {TARGET_CPU_PCT_AT_100:.0f})")
    if 1000 in results and results[1000]["cpu_us"] > TARGET_CPU_US_AT_1000:
        failed.append(f"{results[1000]['cpu_us']:.2f} CPU-µs per reading at 1,000 messages/s (target <= {TARGET_CPU_US_AT_1000})")
    for f in failed:
        print(f"below target: {f}")
    parts = []
    for rate, r in results.items():
        parts += [f"rate_{rate}_cpu_pct={r['cpu_pct']:.1f}", f"rate_{rate}_cpu_us={r['cpu_us']:.2f}", f"rate_{rate}_lag_s={r['lag_s']:.2f}",
                  f"rate_{rate}_writes_per_s={r['writes_per_s']:.1f}"]
    print(" ".join(parts))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
