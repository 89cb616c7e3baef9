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
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbonedge import wire
from carbonedge.clock import ClockSpec
from carbonedge.integrity import TrustStore
from carbonedge.app.services import InfluxDB, Mosquitto, Services, free_port
from carbonedge.verify import verify
from faultlib.checker import read_ledger
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
    r["gaps_reported_by_gateways"] = sum(pl.gateway_counters(gw).get("gaps_reported", 0) for gw in pl.gateways)
    return {"scenario": name, **r, **(extra or {})}


def _streaming(pl: Pipeline, batches: int, timeout: float = 90.0) -> None:
    """Wait until ``batches`` cycles stored from now on are acknowledged (acks still arriving for a killed
    gateway's earlier batches do not count: a restarted gateway must have polled and stored its own)."""
    target = max(pl.acked(), pl.committed_seq()) + batches
    wait_for(lambda: pl.acked() >= target, timeout, f"{batches} more acknowledged batches")


# ---------------------------------------------------------------------------- scenarios
def _sizes(env: Env, per_commit: float, full: float) -> float:
    """The per-commit size at scale 1; the full (soak) size at scale >= 2, times ``scale / 2`` beyond."""
    return per_commit if env.scale <= 1 else full * env.scale / 2


def collector_sigkill(env: Env) -> dict[str, Any]:
    """SIGKILL the collector at random moments mid-stream (inside a flush or between), restart it each time."""
    rng = random.Random(env.seed)
    pl = Pipeline(env.root / "collector_sigkill", "f-ckill", env.services.mqtt.port, env.services.influx.url, env.services.database)
    kills = int(_sizes(env, 3, 50))
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


def broker_outage(env: Env) -> dict[str, Any]:
    """A long broker outage in accelerated plant time (3600x: one plant hour per wall second): Mosquitto is
    stopped for 2 plant hours (per commit) or 24 (full), the gateway keeps polling into its outbox; then the
    backlog drains. Reports the backlog, its drain time and the gateway's peak RSS (the spool is on disk)."""
    hours = _sizes(env, 2, 24)
    broker = Mosquitto("mosquitto", free_port(), env.root / "broker_outage" / "broker").start(persistence=True)
    pl = Pipeline(env.root / "broker_outage", "f-outage", broker.port, env.services.influx.url, env.services.database,
                  speed=3600.0)
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 20)
        broker.stop()
        t_down = pl.now()
        wait_for(lambda: pl.now() - t_down >= hours * 3600, hours * 3600 / pl.speed + 30, f"{hours:g} plant hours")
        backlog = pl.committed_seq() - pl.acked()
        broker.restart()
        t0 = time.monotonic()
        target = pl.committed_seq()
        wait_for(lambda: pl.acked() >= target, 300, "the outage backlog to drain")
        drain = time.monotonic() - t0
        return _finish(pl, "broker_outage", {"faults": 1, "outage_plant_h": hours, "backlog_batches": backlog,
                                            "backlog_drain_s": round(drain, 2),
                                            "backlog_drain_batches_per_s": round(backlog / max(drain, 1e-3), 1)})
    finally:
        pl.close()
        broker.stop()


def broker_sigkill(env: Env) -> dict[str, Any]:
    """SIGKILL Mosquitto (persistence on, default autosave: its snapshot is stale) and keep it down for an
    hour of plant time; gateway and collector must recover everything from the outbox above the watermark."""
    rng = random.Random(env.seed + 1)
    broker = Mosquitto("mosquitto", free_port(), env.root / "broker_sigkill" / "broker").start(persistence=True)
    pl = Pipeline(env.root / "broker_sigkill", "f-bkill", broker.port, env.services.influx.url, env.services.database)
    kills = int(_sizes(env, 1, 10))
    down = 2.0 if env.scale <= 1 else 3.0
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 10)
        for _ in range(kills):
            time.sleep(rng.uniform(0.1, 0.6))
            broker.kill()
            time.sleep(down)  # at 1200x: 40 or 60 plant minutes without a broker
            broker.restart()
            _streaming(pl, 5, timeout=120)
        return _finish(pl, "broker_sigkill", {"faults": kills, "outage_plant_h": round(down * pl.speed / 3600, 2)})
    finally:
        pl.close()
        broker.stop()


def influx_hang_and_kill(env: Env) -> dict[str, Any]:
    """InfluxDB hung (SIGSTOP, then SIGCONT) and later killed (SIGKILL) and restarted, ``rounds`` times."""
    influx = InfluxDB("influxd", free_port(), env.root / "influx_faults" / "influx").start()
    influx.create_database("faults")
    pl = Pipeline(env.root / "influx_faults", "f-influx", env.services.mqtt.port, influx.url, "faults")
    rounds = int(_sizes(env, 1, 5))
    down = 3.0 if env.scale <= 1 else 12.0  # 1 or 4 plant hours at 1200x
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 10)
        for _ in range(rounds):
            assert influx.pid is not None
            os.kill(influx.pid, signal.SIGSTOP)
            time.sleep(down)
            os.kill(influx.pid, signal.SIGCONT)
            _streaming(pl, 5, timeout=120)
            influx.kill()
            time.sleep(down)
            influx.restart()
            _streaming(pl, 5, timeout=120)
        return _finish(pl, "influx_hang_and_kill", {"faults": 2 * rounds, "outage_plant_h": down * pl.speed / 3600})
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
    # The wal-index (-shm) is left as the kill left it: the first process to open the database after every
    # other connection has gone (SQLite's dead-man-switch lock) rebuilds it from the WAL, stale or not.
    return len(data) - end


def gateway_power_cut(env: Env) -> dict[str, Any]:
    """SIGKILL the gateway at random points and drop its outbox's unsynced writes (a power cut); restart it
    after a few plant minutes. Cycles polled but not committed must be explained by a gap record."""
    rng = random.Random(env.seed + 2)
    pl = Pipeline(env.root / "gateway_power_cut", "f-power", env.services.mqtt.port, env.services.influx.url, env.services.database)
    cuts = int(_sizes(env, 3, 50))
    dropped = torn_tx = 0
    cut_ms: list[int] = []
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 8)
        for _ in range(cuts):
            time.sleep(rng.uniform(0.02, 0.4))
            pl.kill("gw1")
            cut_ms.append(int(pl.now() * 1000))
            n = drop_unsynced_wal_tail(pl.data_dir("gw1") / "outbox.sqlite", rng)
            dropped += n
            torn_tx += n > 0
            time.sleep(rng.uniform(0.1, 0.4))  # down for 2-8 poll cycles of plant time
            pl.start_gateway()
            _streaming(pl, 2)
        r = _finish(pl, "gateway_power_cut", {"faults": cuts, "cuts_inside_a_transaction": torn_tx, "wal_bytes_dropped": dropped})
        # Every cut must lie inside the span of a committed gap record (a cut before the restarted gateway's first
        # commit is covered by the next boot's record, which spans both).
        spans = [(int(e.detail.get("from_ms") or 0), int(e.detail.get("to_ms") or 0))
                 for b in read_ledger(pl.ledger("gw1"))[0].values() for e in b.events if e.kind == "gap"]
        r["gap_records"] = len(spans)
        r["cuts_without_gap_record"] = sum(1 for t in cut_ms if not any(a <= t <= b for a, b in spans))
        return r
    finally:
        pl.close()


def _mount_tmpfs(path: Path, size_kb: int) -> bool:
    """A real small filesystem (tmpfs) for the gateway's data directory, when we may mount (root)."""
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0700", "carbonedge-faults", str(path)],
                          capture_output=True).returncode == 0


def gateway_disk_full(env: Env) -> dict[str, Any]:
    """The gateway's disk fills while the collector is away, the gateway keeps running (a supervisor restarts it
    if it exits, like systemd's Restart=always); then space returns and the collector comes back.

    As root the data directory is a 384 kB tmpfs (real ENOSPC), grown to 64 MB to give the space back;
    otherwise the gateway runs under RLIMIT_FSIZE (EFBIG), lifted for the recovery."""
    pl = Pipeline(env.root / "gateway_disk_full", "f-disk", env.services.mqtt.port, env.services.influx.url, env.services.database)
    full_s = _sizes(env, 5, 30)  # wall seconds with a full disk: 100 or 600 poll cycles of plant time
    data = pl.data_dir("gw1")
    tmpfs = _mount_tmpfs(data, 384)
    restarts = 0

    def small_disk() -> None:
        if not tmpfs:
            resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))  # no file can grow past 400 kB

    try:
        p = pl.start_gateway(preexec=small_disk)
        deadline = time.monotonic() + full_s
        filled = False
        while time.monotonic() < deadline or not filled:  # supervise: restart after every exit, as systemd would
            if p.poll() is not None:
                restarts += 1
                time.sleep(0.2)
                p = pl.start_gateway(preexec=small_disk)
            filled = filled or b"disk" in (pl.root / "gw1.log").read_bytes()[-20000:].lower()
            if time.monotonic() > deadline + 60:
                raise AssertionError("the gateway's disk never filled:\n" + pl.tail("gw1"))
            time.sleep(0.1)
        gw_alive = p.poll() is None
        if tmpfs:
            subprocess.run(["mount", "-o", "remount,size=64m", str(data)], check=True)
        else:
            pl.terminate("gw1")
            pl.start_gateway()  # space is back (no limit)
        pl.start_collector()
        _streaming(pl, 5, timeout=120)
        r = _finish(pl, "gateway_disk_full", {"method": "tmpfs 384 kB" if tmpfs else "RLIMIT_FSIZE 400 kB",
                                              "gateway_exits_on_disk_full": restarts, "gateway_alive_when_full": gw_alive})
        c = pl.gateway_counters("gw1")
        r["gateway_counters"] = {k: v for k, v in c.items() if "drop" in k or "disk" in k or "gap" in k}
        over = [e.detail for b in read_ledger(pl.ledger("gw1"))[0].values() for e in b.events if e.kind == "overflow"]
        r["overflow_events_disk"] = sum(1 for d in over if "disk" in str(d.get("reason", "")))
        r["cycles_not_stored"] = sum(int(d.get("discarded_cycles") or 0) for d in over)
        return r
    finally:
        pl.close()
        if tmpfs:
            subprocess.run(["umount", "-l", str(data)], capture_output=True)


def network_faults(env: Env) -> dict[str, Any]:
    """Gateway <-> broker through the fault proxy: 300 ms latency, a blackhole (half-open link), RSTs."""
    proxy = FaultProxy(env.services.mqtt.port)
    pl = Pipeline(env.root / "network_faults", "f-net", env.services.mqtt.port, env.services.influx.url, env.services.database,
                  gateway_port={"gw1": proxy.port})
    rounds = int(_sizes(env, 1, 5))
    hole = 3.0 if env.scale <= 1 else 10.0
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 10)
        for _ in range(rounds):
            proxy.set("latency", 0.3)
            _streaming(pl, 5)
            proxy.set("blackhole")
            time.sleep(hole)
            proxy.set("pass")
            proxy.reset()  # the gateway's half-open connection is torn down; it must reconnect and resend
            _streaming(pl, 5, timeout=120)
            proxy.reset()
            _streaming(pl, 5, timeout=120)
        return _finish(pl, "network_faults", {"faults": 4 * rounds, "proxy_connections": proxy.connections})
    finally:
        pl.close()
        proxy.close()


def clock_faults(env: Env) -> dict[str, Any]:
    """The gateway restarts with its clock stepped back 30 plant minutes behind its last committed cycle (its new
    readings interleave with stored ones: they must be added, never overwrite one), then with a clock a day ahead
    (dead-lettered ``future_ts``), then an hour behind real time (accepted: backlog is legitimate)."""
    pl = Pipeline(env.root / "clock_faults", "f-clock", env.services.mqtt.port, env.services.influx.url, env.services.database)
    try:
        pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 10)
        pl.terminate("gw1")
        last_ms = pl._meta("gw1", "last_created")
        # Stepped back; the clock holds until the new process is polling (2 s), so the step lands where we aim.
        pl.spec = ClockSpec(start=last_ms / 1000 - 1800, speed=pl.speed, origin=time.time() + 2.0)
        pl.start_gateway()
        _streaming(pl, 10)
        overlap = pl._meta("gw1", "last_created") - last_ms
        pl.terminate("gw1")
        pl.spec = ClockSpec(start=time.time() + 86400, speed=pl.speed, origin=time.time())  # a day in the future
        pl.start_gateway()
        _streaming(pl, 5)
        pl.terminate("gw1")
        pl.spec = ClockSpec(start=time.time() - 3600, speed=pl.speed, origin=time.time())  # an hour behind
        pl.start_gateway()
        _streaming(pl, 5)
        r = _finish(pl, "clock_faults", {"faults": 3})
        r["step_back_inside_stored_range"] = overlap < 0  # the stepped run's cycles interleave with stored ones
        return r
    finally:
        pl.close()


def malformed_payloads(env: Env) -> dict[str, Any]:
    """Hypothesis-generated malformed batches (300 per commit, 10,000 full) plus one oversized message, published
    straight to the broker under a second gateway's topic while the real gateway keeps streaming. Every one must
    be dead-lettered once with a reason, none may reach InfluxDB, the collector must not restart."""
    import json

    import paho.mqtt.client as mqtt

    from faultlib import fuzz

    cases = int(_sizes(env, 300, 10_000))
    site, fz = "f-fuzz", "fz"
    topic = wire.telemetry_topic(site, fz)
    pl = Pipeline(env.root / "malformed_payloads", site, env.services.mqtt.port, env.services.influx.url, env.services.database)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzzer", protocol=mqtt.MQTTv5)
    try:
        collector = pl.start_collector()
        pl.start_gateway()
        _streaming(pl, 5)
        template = json.loads(read_ledger(pl.ledger("gw1"))[0][1].to_json())
        template["gateway"] = fz
        client.connect("127.0.0.1", env.services.mqtt.port)
        client.loop_start()
        infos: list[mqtt.MQTTMessageInfo] = []

        def publish(payload: bytes) -> None:
            infos.append(client.publish(topic, payload, qos=1))
            if len(infos) % 200 == 0:
                infos[-1].wait_for_publish(30)  # keep the in-flight window bounded

        t0 = time.monotonic()
        g = fuzz.generate(template, site, fz, cases, env.seed, publish)
        publish(b'{"schema":"carbonedge.batch/1","pad":"' + b"x" * (4 * 1024 * 1024 + 10) + b'"}')  # oversized
        sent = g["sent"] + 1
        for i in infos:
            i.wait_for_publish(60)
        gen_s = time.monotonic() - t0
        dlq = pl.state_dir() / "deadletter.jsonl"

        def fuzz_records() -> list[dict[str, Any]]:
            if not dlq.exists():
                return []
            # Complete lines only: the collector may be appending a record while this reads the file.
            complete = dlq.read_bytes().rpartition(b"\n")[0]
            return [d for d in (json.loads(x) for x in complete.splitlines() if x.strip()) if d.get("topic") == topic]

        wait_for(lambda: len(fuzz_records()) >= sent, 120, f"{sent} dead-letter records for the fuzzed messages")
        time.sleep(0.5)
        recs = fuzz_records()
        stored = env.services.influx.query(f"SELECT count(*) FROM readings WHERE site = '{site}' AND gateway = '{fz}'",
                                           env.services.database)["results"][0].get("series", [])
        alive = collector.poll() is None
        client.loop_stop()
        client.disconnect()
        r = _finish(pl, "malformed_payloads", {**g, "sent": sent, "fuzz_publish_s": round(gen_s, 1),
                                               "fuzz_deadlettered": len(recs),
                                               "fuzz_dlq_by_reason": dict(Counter(d.get("reason", "?") for d in recs)),
                                               "fuzz_points_in_influxdb": sum(v for s in stored for v in s["values"][0][1:] if v),
                                               "collector_survived": alive})
        return r
    finally:
        client.loop_stop()
        pl.close()


SCENARIOS: dict[str, Callable[[Env], dict[str, Any]]] = {
    "broker_outage": broker_outage,
    "broker_sigkill": broker_sigkill,
    "collector_sigkill": collector_sigkill,
    "influx_hang_and_kill": influx_hang_and_kill,
    "gateway_power_cut": gateway_power_cut,
    "gateway_disk_full": gateway_disk_full,
    "network_faults": network_faults,
    "clock_faults": clock_faults,
    "malformed_payloads": malformed_payloads,
}
