"""What the shared InfluxDB client costs on the collector's write path, against a bare ``requests`` session.

The collector writes 5,000-point bodies with :meth:`carbonedge.influx.InfluxClient.write_once` (through
``collector.influx.InfluxWriter``). This posts the same pre-built bodies to a real InfluxDB both ways,
interleaved (bare, shared, shared, bare, …, each into a fresh database) so that load on a shared machine hits both alike, and
reports points per second for each and the shared client's overhead.

Usage: ``.venv/bin/python bench/influx_client.py [--bodies 60] [--points 5000] [--rounds 4]``. Last line::

    bare_points_per_s=… shared_points_per_s=… overhead_pct=…

Exit status 1 when the shared client is more than 3 % slower (median of rounds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carbonedge.app.services import InfluxDB, free_port  # noqa: E402
from carbonedge.influx import InfluxClient  # noqa: E402

TARGET_OVERHEAD_PCT = 3.0


def bodies(n: int, points: int, offset: int) -> list[bytes]:
    out = []
    for b in range(n):
        lines = []
        for i in range(points):
            ts = 1_767_571_200_000 + (offset + b * points + i) // 100 * 1000
            lines.append(f"readings,device=m{i % 100},gateway=gw1,site=bench active_power={i * 0.5!r},voltage_l1_n=230.1,seq={b}i {ts}")
        out.append("\n".join(lines).encode())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bodies", type=int, default=60, help="bodies per run (default: 60)")
    ap.add_argument("--points", type=int, default=5000, help="points per body (default: 5000)")
    ap.add_argument("--rounds", type=int, default=4, help="bare/shared pairs (default: 4); the median is reported")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = InfluxDB("influxd", free_port(), Path(tmp)).start()
        try:
            bare_rates, shared_rates = [], []
            data = bodies(a.bodies, a.points, 0)
            for r in range(a.rounds):
                # ABBA order, a fresh database per run: neither side always runs second or on a bigger database.
                for kind in (("bare", "shared") if r % 2 == 0 else ("shared", "bare")):
                    name = f"bench_{r}_{kind}"
                    db.create_database(name)
                    if kind == "bare":
                        s = requests.Session()
                        url, params = f"{db.url}/write", {"db": name, "precision": "ms"}
                        t0 = time.perf_counter()
                        for body in data:
                            resp = s.post(url, params=params, data=body, timeout=60)
                            assert resp.status_code == 204, resp.text
                        bare_rates.append(a.bodies * a.points / (time.perf_counter() - t0))
                        s.close()
                    else:
                        c = InfluxClient(db.url, name, timeout_s=60, attempts=1)
                        t0 = time.perf_counter()
                        for body in data:
                            c.write_once(body)
                        shared_rates.append(a.bodies * a.points / (time.perf_counter() - t0))
                        c.close()
        finally:
            db.stop()
    bare, shared = statistics.median(bare_rates), statistics.median(shared_rates)
    overhead = 100 * (bare - shared) / bare
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; bare runs {[round(x) for x in bare_rates]}, "
          f"shared runs {[round(x) for x in shared_rates]}")
    print(f"bare_points_per_s={bare:.0f} shared_points_per_s={shared:.0f} overhead_pct={overhead:.1f}")
    return 0 if overhead <= TARGET_OVERHEAD_PCT else 1


if __name__ == "__main__":
    sys.exit(main())
