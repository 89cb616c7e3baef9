"""Fault scenarios on real processes, shared by ``tests/test_faults.py`` and ``bench/faults.py``.

Each scenario runs a signing gateway (simulated meters, virtual clock at 1200x: one 60 s poll
cycle every 50 ms of wall time) and a collector as subprocesses against real Mosquitto and
InfluxDB, injects its fault, lets the gateway drain, and returns the checker's figures plus
the verifier's verdict on the clean (untampered) result: ``verify_findings`` must be 0.
``scale`` multiplies the number of faults and the run length (1 = per-commit tier).
"""

from __future__ import annotations

import os
import random
import resource
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbonedge.integrity import TrustStore
from carbonedge.services import InfluxDB, Mosquitto, Services, free_port
from carbonedge.verify import verify
from faultlib.harness import Pipeline, wait_for
from faultlib.proxy import FaultProxy


@dataclass
class Env:
    services: Services  # shared servers: scenarios never kill these
    root: Path
    scale: int = 1
    seed: int = 8


def _finish(pl: Pipeline, name: str, extra: dict[str, Any] | None = None, drain_timeout: float = 120.0) -> dict[str, Any]:
    """Drain the gateway, stop the collector cleanly, run the checker and the verifier."""
    t0 = time.monotonic()
    for gw in pl.gateways:
        pl.stop_gateway_when_drained(gw, plant_s=300, timeout=drain_timeout)
    drain = time.monotonic() - t0
    r = pl.check()
    for name_ in [n for n in pl.procs if n.startswith("collector-")]:
        pl.terminate(name_)
    rss = pl.close()
    rep = verify(pl.collectors(), TrustStore.load(pl.trust_path), influx_url=pl.influx_url, database=pl.database)
    r["drain_s"] = round(drain + r["drain_s"], 2)
    r["verify_findings"] = len(rep.findings)
    r["verify_examples"] = [f"{f.kind} {f.where} seq {f.seq}: {f.detail}" for f in rep.findings[:3]]
    r["peak_rss_mb"] = rss
    return {"scenario": name, **r, **(extra or {})}


def _streaming(pl: Pipeline, batches: int, timeout: float = 90.0) -> None:
    target = pl.acked() + batches
    wait_for(lambda: pl.acked() >= target, timeout, f"{batches} more acknowledged batches")


# ---------------------------------------------------------------------------- scenarios
def collector_sigkill(env: Env) -> dict[str, Any]:
    """SIGKILL the collector at random moments mid-stream (inside a flush or between), restart it each time."""
    rng = random.Random(env.seed)
    pl = Pipeline(env.root / "collector_sigkill", "f-ckill", env.services.mqtt.port, env.services.influx.url, env.services.database)
    kills = 4 * env.scale
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 10)
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 0.8))  # flushes every ~0.1 s: kills land before, inside and after a commit
            pl.kill("collector-c1")
            time.sleep(rng.uniform(0.0, 0.5))
            pl.start_collector()
            _streaming(pl, 3)
        return _finish(pl, "collector_sigkill", {"faults": kills})
    finally:
        pl.close()


def broker_sigkill(env: Env) -> dict[str, Any]:
    """SIGKILL Mosquitto (persistence on, default autosave: its snapshot is stale) and keep it down for an
    hour of plant time; gateway and collector must recover everything from the outbox above the watermark."""
    rng = random.Random(env.seed + 1)
    broker = Mosquitto("mosquitto", free_port(), env.root / "broker_sigkill" / "broker").start(persistence=True)
    pl = Pipeline(env.root / "broker_sigkill", "f-bkill", broker.port, env.services.influx.url, env.services.database)
    kills = 2 * env.scale
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 10)
        for _ in range(kills):
            time.sleep(rng.uniform(0.1, 0.6))
            broker.kill()
            time.sleep(3.0)  # 3 s wall = 1 h of plant time without a broker
            broker.restart()
            _streaming(pl, 5, timeout=120)
        return _finish(pl, "broker_sigkill", {"faults": kills, "outage_plant_h": 1.0})
    finally:
        pl.close()
        broker.stop()


def influx_hang_and_kill(env: Env) -> dict[str, Any]:
    """InfluxDB hung (SIGSTOP) for 4 s, later killed (SIGKILL) and down for 4 s, then restarted."""
    influx = InfluxDB("influxd", free_port(), env.root / "influx_faults" / "influx").start()
    influx.create_database("faults")
    pl = Pipeline(env.root / "influx_faults", "f-influx", env.services.mqtt.port, influx.url, "faults")
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 10)
        assert influx.pid is not None
        os.kill(influx.pid, signal.SIGSTOP)
        time.sleep(4.0)
        os.kill(influx.pid, signal.SIGCONT)
        _streaming(pl, 5, timeout=120)
        influx.kill()
        time.sleep(4.0)
        influx.restart()
        _streaming(pl, 5, timeout=120)
        return _finish(pl, "influx_hang_and_kill", {"faults": 2})
    finally:
        pl.close()
        influx.stop()


def drop_unsynced_wal_tail(db_path: Path, rng: random.Random) -> int:
    """Simulate a power cut on an SQLite WAL database: drop every frame after the last commit frame
    (not fsynced with ``synchronous=FULL``) and leave a torn partial frame. Returns bytes dropped."""
    wal = db_path.with_name(db_path.name + "-wal")
    if not wal.exists() or wal.stat().st_size < 32:
        return 0
    data = wal.read_bytes()
    page = struct.unpack(">I", data[8:12])[0]
    salt = data[16:24]
    frame = 24 + page
    end = 32
    off = 32
    while off + frame <= len(data):
        hdr = data[off:off + 24]
        if hdr[8:16] != salt:
            break
        off += frame
        if struct.unpack(">I", hdr[4:8])[0] != 0:  # commit frame: everything up to here was fsynced
            end = off
    torn = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, min(frame, 4096))))
    with open(wal, "r+b") as f:
        f.truncate(end)
        f.seek(end)
        f.write(torn)
    return len(data) - end


def gateway_power_cut(env: Env) -> dict[str, Any]:
    """SIGKILL the gateway at random points and drop its outbox's unsynced writes (a power cut); restart it
    after a few plant minutes. Cycles polled but not committed must be explained by a gap record."""
    rng = random.Random(env.seed + 2)
    pl = Pipeline(env.root / "gateway_power_cut", "f-power", env.services.mqtt.port, env.services.influx.url, env.services.database)
    cuts = 3 * env.scale
    dropped = 0
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 8)
        for _ in range(cuts):
            time.sleep(rng.uniform(0.05, 0.5))
            pl.kill("gw1")
            dropped += drop_unsynced_wal_tail(pl.data_dir("gw1") / "outbox.sqlite", rng)
            time.sleep(rng.uniform(0.1, 0.4))  # down for 2-8 poll cycles of plant time
            pl.start_gateway()
            _streaming(pl, 3)
        r = _finish(pl, "gateway_power_cut", {"faults": cuts, "wal_bytes_dropped": dropped})
        return r
    finally:
        pl.close()


def gateway_disk_full(env: Env) -> dict[str, Any]:
    """The gateway's disk fills (RLIMIT_FSIZE on its process) while the collector is away; a supervisor restarts
    it like systemd's Restart=always; then space returns and the collector comes back."""
    pl = Pipeline(env.root / "gateway_disk_full", "f-disk", env.services.mqtt.port, env.services.influx.url, env.services.database)
    restarts = 0

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))  # the outbox file cannot grow past 400 kB

    try:
        p = pl.start_gateway(preexec=small_disk)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # supervise: restart after every exit, as systemd would
            if p.poll() is not None:
                restarts += 1
                time.sleep(0.2)
                p = pl.start_gateway(preexec=small_disk)
            time.sleep(0.1)
        pl.terminate("gw1")
        pl.start_collector()
        pl.start_gateway()  # space is back (no limit)
        _streaming(pl, 5, timeout=120)
        return _finish(pl, "gateway_disk_full", {"gateway_exits_on_disk_full": restarts})
    finally:
        pl.close()


def network_faults(env: Env) -> dict[str, Any]:
    """Gateway <-> broker through the fault proxy: 300 ms latency, a 4 s blackhole (half-open link), an RST."""
    proxy = FaultProxy(env.services.mqtt.port)
    pl = Pipeline(env.root / "network_faults", "f-net", env.services.mqtt.port, env.services.influx.url, env.services.database,
                  gateway_port={"gw1": proxy.port})
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 10)
        proxy.set("latency", 0.3)
        _streaming(pl, 5)
        proxy.set("blackhole")
        time.sleep(4.0)
        proxy.set("pass")
        proxy.reset()  # the gateway's half-open connection is torn down; it must reconnect and resend
        _streaming(pl, 5, timeout=120)
        proxy.reset()
        _streaming(pl, 5, timeout=120)
        return _finish(pl, "network_faults", {"faults": 4, "proxy_connections": proxy.connections})
    finally:
        pl.close()
        proxy.close()


def clock_faults(env: Env) -> dict[str, Any]:
    """The gateway restarts with its clock stepped back 2 h, then with a clock a day ahead of real time.
    Stepped-back readings are kept (new timestamps, never overwriting); future ones are dead-lettered."""
    pl = Pipeline(env.root / "clock_faults", "f-clock", env.services.mqtt.port, env.services.influx.url, env.services.database)
    from carbonedge.clock import ClockSpec

    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 10)
        pl.terminate("gw1")
        pl.spec = ClockSpec(start=pl.now() - 7200, speed=pl.speed, origin=time.time())  # stepped back 2 h
        pl.start_gateway()
        _streaming(pl, 10)
        pl.terminate("gw1")
        pl.spec = ClockSpec(start=time.time() + 86400, speed=pl.speed, origin=time.time())  # a day in the future
        pl.start_gateway()
        _streaming(pl, 5)
        pl.terminate("gw1")
        pl.spec = ClockSpec(start=time.time() - 3600, speed=pl.speed, origin=time.time())  # fixed by NTP
        return _finish(pl, "clock_faults", {"faults": 2})
    finally:
        pl.close()


SCENARIOS: dict[str, Callable[[Env], dict[str, Any]]] = {
    "collector_sigkill": collector_sigkill,
    "broker_sigkill": broker_sigkill,
    "influx_hang_and_kill": influx_hang_and_kill,
    "gateway_power_cut": gateway_power_cut,
    "gateway_disk_full": gateway_disk_full,
    "network_faults": network_faults,
    "clock_faults": clock_faults,
}
