"""Collector processes under faults, on real Mosquitto and InfluxDB.

* SIGKILL mid-batch, repeatedly: nothing lost (every point in InfluxDB, the watermark reaches the end).
* InfluxDB stopped while traffic continues: the collector spools to disk and keeps acknowledging,
  then drains the spool in order when InfluxDB returns; nothing lost.
* Three collectors on one shared subscription: every batch handled exactly once in a clean run,
  nothing lost when one of them is killed, and the shared watermark reaches the end.
"""

from __future__ import annotations

import json
import random
import threading
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from carbonedge import wire
from carbonedge.app.services import InfluxDB, free_port
from test_collector import QUANTITIES, AckWatcher, close, count_points, make_batch, publisher

DEVICES = 5
QTY = 10


class CollectorProc:
    """``carbonedge collect`` as a child process with its own state directory and stats file."""

    def __init__(self, tmp: Path, cid: str, mqtt_port: int, influx_url: str, db: str, group: str, *extra: str) -> None:
        self.cid = cid
        self.state = tmp / cid
        self.state.mkdir(parents=True, exist_ok=True)
        self.log = tmp / f"{cid}.log"
        self.stats_file = tmp / f"{cid}.stats.json"
        self.argv = [sys.executable, "-m", "carbonedge.app.cli", "-v", "collect", "--mqtt-port", str(mqtt_port), "--influx-url", influx_url,
                     "--database", db, "--state-dir", str(self.state), "--client-id", cid, "--share-group", group,
                     "--stats-file", str(self.stats_file), "--batch-max-delay", "0.2", *extra]
        self.p: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait_ready: bool = True) -> CollectorProc:
        with self.log.open("a") as f:
            self.p = subprocess.Popen(self.argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.starts += 1
        if wait_ready:
            deadline = time.monotonic() + 30
            while self.log.read_text().count("is receiving telemetry") < self.starts:
                assert self.p.poll() is None, self.log.read_text()[-2000:]
                assert time.monotonic() < deadline, f"collector {self.cid} did not subscribe:\n{self.log.read_text()[-2000:]}"
                time.sleep(0.05)
        return self

    def kill(self) -> None:
        assert self.p is not None
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def stop(self) -> dict[str, float]:
        assert self.p is not None
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(60)
        assert self.p.returncode == 0, self.log.read_text()[-3000:]
        return json.loads(self.stats_file.read_text())


def publish_all(pub, site: str, gateways: list[str], seqs: range, pace_s: float = 0.0) -> None:
    infos = []
    for seq in seqs:
        for gw in gateways:
            infos.append(pub.publish(wire.telemetry_topic(site, gw), make_batch(seq, site, gw, devices=DEVICES, n_quantities=QTY).to_json(), qos=1))
        if pace_s:
            time.sleep(pace_s)
    for i in infos:
        i.wait_for_publish(30)


def assert_complete(influx_url: str, db: str, site: str, gateways: list[str], n: int) -> None:
    """Every field of every device of every seq is in InfluxDB, once per key."""
    for gw in gateways:
        where = f"WHERE site='{site}' AND gateway='{gw}'"
        assert count_points(influx_url, db, where=where) == n * DEVICES
        r = requests.get(f"{influx_url}/query", params={"db": db, "q": f"SELECT count(*) FROM readings {where}"}, timeout=30).json()
        cols, vals = r["results"][0]["series"][0]["columns"], r["results"][0]["series"][0]["values"][0]
        counts = dict(zip(cols[1:], vals[1:], strict=True))
        assert counts == {f"count_{k}": n * DEVICES for k in [*(q.name for q in QUANTITIES[:QTY]), "seq"]}
        d = requests.get(f"{influx_url}/query", params={"db": db, "q": f"SELECT count(distinct(seq)) FROM readings {where}"}, timeout=30).json()
        assert d["results"][0]["series"][0]["values"][0][1] == n


def test_collector_sigkill_mid_batch_repeatedly_loses_nothing(services, database, tmp_path):
    site, gws, n = "kill9", ["gw1", "gw2"], 300
    rng = random.Random(9)
    acks = AckWatcher(services.mqtt.port, [site])
    pub = publisher(services.mqtt.port, max_inflight=100)
    c = CollectorProc(tmp_path, "killed", services.mqtt.port, services.influx.url, database, "k9").start()
    t = threading.Thread(target=publish_all, args=(pub, site, gws, range(1, n + 1), 0.02))
    t.start()
    kills = 0
    while t.is_alive() or kills < 5:
        before = sum(acks.wm.values())
        acks.wait(lambda: sum(acks.wm.values()) > before, 20)  # it is alive and acknowledging: now kill it mid-flow
        time.sleep(rng.uniform(0.05, 0.6))
        c.kill()
        kills += 1
        time.sleep(rng.uniform(0.0, 0.5))
        c.start()
    t.join()
    assert acks.wait(lambda: all(acks.wm.get(f"{site}/{g}", 0) == n for g in gws), 90), acks.wm
    stats = c.stop()
    close(pub)
    acks.close()
    assert kills >= 5
    assert_complete(services.influx.url, database, site, gws, n)
    assert stats["conflicts"] == 0 and not any(k.startswith("rejected.") for k in stats)


@pytest.mark.parametrize("outage_s", [4.0, pytest.param(180.0, marks=pytest.mark.soak)])
def test_influxdb_outage_spools_then_drains_in_order(services, tmp_path, outage_s):
    influx = InfluxDB("influxd", free_port(), tmp_path / "influx").start()
    db = "outage"
    influx.create_database(db)
    site, gws = "outage", ["gw1"]
    acks = AckWatcher(services.mqtt.port, [site])
    pub = publisher(services.mqtt.port, max_inflight=100)
    c = CollectorProc(tmp_path, "spooler", services.mqtt.port, influx.url, db, "sp").start()
    try:
        publish_all(pub, site, gws, range(1, 101))
        assert acks.wait(lambda: acks.wm.get(f"{site}/gw1", 0) == 100)
        influx.stop()  # down: connection refused
        t0 = time.monotonic()
        publish_all(pub, site, gws, range(101, 301), pace_s=0.01)
        # Acknowledged although InfluxDB is down: the lines are fsynced in the spool.
        assert acks.wait(lambda: acks.wm.get(f"{site}/gw1", 0) == 300, 60)
        spool = list((c.state / "spool").glob("*.lp"))
        assert spool, "nothing was spooled"
        while time.monotonic() - t0 < outage_s:
            publish_all(pub, site, gws, range(301, 302))  # identical replays during the outage are harmless
            time.sleep(1.0)
        influx.restart()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (list((c.state / "spool").glob("*.lp")) or count_points(influx.url, db) < 301 * DEVICES):
            time.sleep(0.2)
        publish_all(pub, site, gws, range(302, 311))  # live traffic after recovery
        assert acks.wait(lambda: acks.wm.get(f"{site}/gw1", 0) == 310, 30)
        stats = c.stop()
        assert_complete(influx.url, db, site, gws, 310)
        assert not list((c.state / "spool").glob("*.lp"))
        assert stats["readings_spooled"] > 0 and stats["readings_drained"] == stats["readings_spooled"]
        assert stats["conflicts"] == 0
    finally:
        if c.p and c.p.poll() is None:
            c.p.kill()
        close(pub)
        acks.close()
        influx.stop()


def test_three_collectors_share_a_subscription_without_loss_or_double_writes(services, database, tmp_path):
    site, gws, n = "share3", ["gw1", "gw2", "gw3"], 150
    acks = AckWatcher(services.mqtt.port, [site])
    pub = publisher(services.mqtt.port, max_inflight=100)
    cs = [CollectorProc(tmp_path, f"sc{i}", services.mqtt.port, services.influx.url, database, "g3").start() for i in range(3)]
    publish_all(pub, site, gws, range(1, n + 1), pace_s=0.005)
    assert acks.wait(lambda: all(acks.wm.get(f"{site}/{g}", 0) == n for g in gws), 60), acks.wm
    stats = [c.stop() for c in cs]
    written = [s["batches_written"] for s in stats]
    assert sum(written) == n * len(gws), written  # every batch handled by exactly one collector
    assert all(w > 0 for w in written), written  # and the load was split
    assert sum(s["duplicate_deliveries"] for s in stats) == 0
    assert_complete(services.influx.url, database, site, gws, n)

    # Second phase: one collector is SIGKILLed mid-flow and comes back; the group still loses nothing.
    for c in cs:
        c.start()
    t = threading.Thread(target=publish_all, args=(pub, site, gws, range(n + 1, 2 * n + 1), 0.01))
    t.start()
    time.sleep(0.8)
    cs[1].kill()
    time.sleep(0.5)
    cs[1].start()
    t.join()
    assert acks.wait(lambda: all(acks.wm.get(f"{site}/{g}", 0) == 2 * n for g in gws), 90), acks.wm
    stats = [c.stop() for c in cs]
    close(pub)
    acks.close()
    assert_complete(services.influx.url, database, site, gws, 2 * n)
    assert sum(s["conflicts"] for s in stats) == 0
