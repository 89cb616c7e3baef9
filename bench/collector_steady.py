"""The collector at steady plant rates: CPU, InfluxDB write requests and acknowledgement delay.

``collector_throughput.py`` measures a burst as fast as the machine goes; a plant sends a steady
stream (one message per gateway per poll), and there the cost that matters is per *flush* (the
archive fsyncs, the HTTP write, the state file, progress and acknowledgements): a collector that
flushes at every message spends about a third of a core at 100 messages/s, one that waits too
long delays every acknowledgement (docs/benchmarks.md, "Steady plant rates").

For each rate R (messages per second): R gateways, each polling once a second (signed plant poll
cycles of about 179 readings from ``bench/_plant_traffic.py``), one ``carbonedge collect`` process
with default settings, a publisher sending pre-encoded QoS 1 packets for ``--seconds``, then the collector's
CPU (from /proc), InfluxDB's CPU and write requests (``SHOW STATS``), the collector's
acknowledgement delay (``lag_s``: age of the oldest message of the last flush when it was
acknowledged) and every reading counted in InfluxDB. Last line::

    rate_100_cpu_pct=… rate_100_lag_s=… rate_1000_cpu_pct=… rate_1000_cpu_us=… rate_1000_lag_s=… writes_per_s=…

Exit status 1 when: more than 8 % of a core with 100 gateways, more than 2.5 CPU-µs per reading
with 1,000, an acknowledgement delay over 0.5 s with 100 or 1.5 s with 1,000, or any reading missing.
These are regression limits set from this machine's figures (2026-12-05), not goals from elsewhere.

Usage: ``.venv/bin/python bench/collector_steady.py [--rates 100 1000] [--seconds 8]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import collector_throughput as ct  # noqa: E402 - the traffic, services and MQTT packets of the burst benchmark

#: Poll cycles sent before measuring: the first creates every series in InfluxDB (about 25 per gateway).
WARMUP_CYCLES = 2
#: Regression limits, set from the 2026-12-05 measurements with some room (docs/benchmarks.md, "Steady plant
#: rates"): 100 gateways took 6.0 % of a core, acknowledged after 0.27 s; 1,000 took 2.04 CPU-µs per reading,
#: acknowledged after 0.86 s, with InfluxDB then using more than a core of the two.
TARGET_CPU_PCT_AT_100 = 8.0
TARGET_CPU_US_AT_1000 = 2.5
TARGET_LAG_S = {100: 0.5, 1000: 1.5}


def message_readings(payload: bytes) -> int:
    """Values a telemetry message carries (a null value, ``bad``, is not a reading InfluxDB stores)."""
    from carbonedge.collector.fastwire import decode_batch

    return sum(1 for d in decode_batch(payload).devices for v in d.values.values() if v.v is not None)


class PacedPublisher:
    """QoS 1 over a bare MQTT 3.1.1 socket, ``rate`` messages per second in 10 ms steps; counts PUBACKs."""

    def __init__(self, port: int, name: str) -> None:
        self.sock = ct.mqtt_connect(port, name)
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


def wait_points(url: str, db: str, points: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while ct.count_points(url, db) < points and time.monotonic() < deadline:
        time.sleep(0.1)


def run_rate(svc: ct.Services, work: Path, messages: list[tuple[str, bytes]], rate: int, seconds: float, k: int) -> dict[str, float]:
    """The first :data:`WARMUP_CYCLES` poll cycles create the series in InfluxDB (a plant's collector meets its series
    once, at commissioning); the figures are taken over the cycles after them."""
    db, cid = f"steady_{rate}_{k}", f"steady-{rate}-{k}"
    ct.create_db(svc.influx.url, db)
    proc = ct.start_collector(svc, work, db, cid, cid)
    ct.wait_receiving(work, cid)
    packets = [ct.publish_packet(t, p, i % 65535 + 1) for i, (t, p) in enumerate(messages)]
    warm = WARMUP_CYCLES * rate
    warm_points = sum(ct.message_points(p) for _, p in messages[:warm])
    points = warm_points + sum(ct.message_points(p) for _, p in messages[warm:])
    pub = PacedPublisher(svc.mqtt.port, f"{cid}-pub")
    pub.send(packets[:warm], rate)
    wait_points(svc.influx.url, db, warm_points, 120)
    me, influxd = psutil.Process(proc.pid), psutil.Process(svc.influx.pid)
    c0, i0, s0 = sum(me.cpu_times()[:2]), sum(influxd.cpu_times()[:2]), ct.shard_stats(svc.influx.url, db)
    t0 = time.monotonic()
    pub.send(packets[warm:], rate)
    wait_points(svc.influx.url, db, points, seconds + 60)
    t1 = time.monotonic()
    c1, i1, s1 = sum(me.cpu_times()[:2]), sum(influxd.cpu_times()[:2]), ct.shard_stats(svc.influx.url, db)
    pub.close()
    proc.terminate()
    proc.wait(60)
    stats = json.loads((work / f"c-{cid}.json").read_text())
    readings = ct.count_readings(svc.influx.url, db)
    expected = sum(message_readings(p) for _, p in messages)
    measured = sum(message_readings(p) for _, p in messages[warm:])
    wall = t1 - t0
    r = {"cpu_pct": 100 * (c1 - c0) / wall, "cpu_us": 1e6 * (c1 - c0) / measured, "influx_pct": 100 * (i1 - i0) / wall,
         "writes_per_s": (s1.get("writeReq", 0) - s0.get("writeReq", 0)) / wall, "lag_s": float(stats.get("lag_s", 0.0)),
         "missing": expected - readings}
    print(f"{rate:>5} gateways, one message a second each ({round(expected / len(messages) * rate):,} readings/s), measured for {wall:.1f} s "
          f"({ct.load()}): collector {r['cpu_pct']:.0f} % of a core ({r['cpu_us']:.2f} CPU-µs per reading), InfluxDB {r['influx_pct']:.0f} % "
          f"of a core, {r['writes_per_s']:.0f} write requests/s, acknowledged {r['lag_s']:.2f} s after arrival; "
          f"{readings:,} of {expected:,} readings in InfluxDB", flush=True)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", type=int, nargs="+", default=[100, 1000], help="gateways, each sending one message a second (default 100 1000)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds at each rate (default 8)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="carbonedge-steady-"))
    from _plant_traffic import plant_traffic

    print(f"collector at steady rates on {psutil.cpu_count()} cores, {ct.load()}", flush=True)
    cycles = WARMUP_CYCLES + max(1, round(a.seconds))
    results: dict[int, dict[str, float]] = {}
    with ct.Services(work / "services") as svc:
        for k, rate in enumerate(a.rates):
            print(f"  building {rate} gateways x {cycles} signed plant batches (cached in {ct.CACHE_DIR}) ...", file=sys.stderr, flush=True)
            per, _ = plant_traffic(f"steady{rate}", rate, cycles, ct.CACHE_DIR)
            messages = [(topic, payloads[i]) for i in range(cycles) for topic, payloads in per]  # every gateway once a second
            results[rate] = run_rate(svc, work, messages, rate, a.seconds, k)
    failed = []
    for rate, r in results.items():
        if r["missing"]:
            failed.append(f"{r['missing']:,} readings missing at {rate}/s")
        limit = TARGET_LAG_S.get(rate)
        if limit is not None and r["lag_s"] > limit:
            failed.append(f"acknowledged {r['lag_s']:.2f} s after arrival with {rate} gateways (target <= {limit})")
    if 100 in results and results[100]["cpu_pct"] > TARGET_CPU_PCT_AT_100:
        failed.append(f"{results[100]['cpu_pct']:.1f} % of a core with 100 gateways (target <= {TARGET_CPU_PCT_AT_100:.0f})")
    if 1000 in results and results[1000]["cpu_us"] > TARGET_CPU_US_AT_1000:
        failed.append(f"{results[1000]['cpu_us']:.2f} CPU-µs per reading with 1,000 gateways (target <= {TARGET_CPU_US_AT_1000})")
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
