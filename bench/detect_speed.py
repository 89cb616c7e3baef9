"""Throughput of ``carbonedge analyze detect`` on a univariate ``time,value`` CSV, end to end through the CLI.

Writes a CSV of ``--rows`` one-minute readings (a daily profile, noise, a slow drift, a step and a
few spikes, ISO 8601 times), runs the command as a user would (a subprocess, reading the file and
writing the scores), and reports rows per second of wall time. Target: at least 20,000 rows/s.
The machine's load average is printed with the figure, since other work on the machine slows it.

Usage::

    .venv/bin/python bench/detect_speed.py [--rows 1000000]

Last line: ``rows_per_s=… rows_per_cpu_s=… rows=… seconds=… load=… target=20000``; exit status 1 below
target (wall rate on a quiet machine; rows per CPU-second when the load average exceeds the cores).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

TARGET = 20_000


def write_stream(path: Path, rows: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    t = t0 + 60.0 * np.arange(rows)
    x = 500 + 120 * np.sin(2 * np.pi * (t % 86400) / 86400) + rng.normal(0, 10, rows) + np.linspace(0, 80, rows)
    x[rows // 2:] += 60
    x[rng.integers(0, rows, 20)] += 300
    with path.open("w") as f:
        f.write("time,kw\n")
        stamps = np.datetime_as_string(t.astype("datetime64[s]"), unit="s")
        f.writelines(f"{s}Z,{v:.2f}\n" for s, v in zip(stamps, x, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    exe = Path(sys.executable).with_name("carbonedge")
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "stream.csv", Path(d) / "scores.csv"
        write_stream(src, a.rows)
        t0 = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([str(exe), "analyze", "detect", "--csv", str(src), "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        secs = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        with out.open() as f:
            n = sum(1 for _ in f) - 1
    if n != a.rows:
        print(f"scored {n} rows of {a.rows}")
        return 1
    rate, cpu_rate = n / secs, n / cpu
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    print(f"analyze detect: {n:,} rows in {secs:.1f} s wall, {cpu:.1f} s CPU = {rate:,.0f} rows/s wall, {cpu_rate:,.0f} rows per "
          f"CPU-second (load average {load:.1f} on {cores} cores)")
    # The command is single-threaded: on a quiet machine wall rate = CPU rate. When other work keeps every
    # core busy the wall figure measures the machine, so the CPU figure is judged instead, and said so.
    busy = load > cores
    judged = cpu_rate if busy else rate
    if busy:
        print(f"machine busy (load {load:.1f} > {cores} cores): judging rows per CPU-second")
    print(f"rows_per_s={rate:.0f} rows_per_cpu_s={cpu_rate:.0f} rows={n} seconds={secs:.1f} load={load:.1f} target={TARGET}")
    return 0 if judged >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
