"""Gateway against a real Mosquitto: broker outage and recovery, SIGKILL and restart, self-health.

A small acknowledging subscriber stands in for the collector (it publishes the retained
watermark on the ``ack`` topic exactly as the wire contract says), so these tests pin the
gateway's own guarantees.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from carbonedge import wire
from carbonedge.clock import ClockSpec, VirtualClock, iso, parse_time
from carbonedge.app.services import Mosquitto, free_port
from carbonedge.edge import Agent
from carbonedge.edge.config import GatewayConfig
from faultlib.harness import wait_for

START = parse_time("2026-01-05T00:00:00Z")


class Acker:
    """Receives telemetry and health, acknowledges the highest contiguous seq (retained), records arrival order."""

    def __init__(self, port: int, site: str, gateway: str) -> None:
        self.site, self.gateway = site, gateway
        self.batches: dict[int, wire.Batch] = {}
        self.order: list[int] = []
        self.health: list[wire.Health] = []
        self.watermark = 0
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acker-{site}", protocol=mqtt.MQTTv5)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        # Back within 0.1 s of the broker, before the gateway (1 s): like a collector that is always
        # connected, it misses nothing the gateway publishes after a broker restart.
        c.reconnect_delay_set(0.1, 0.1)  # type: ignore[arg-type]
        c.connect_async("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.client = c

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe([(wire.telemetry_topic(self.site, self.gateway), 1), (wire.health_topic(self.site, self.gateway), 1)])

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/health"):
            self.health.append(wire.Health.model_validate_json(msg.payload))
            return
        b = wire.Batch.model_validate_json(msg.payload)
        with self.lock:
            if b.seq not in self.batches:
                self.order.append(b.seq)
            self.batches[b.seq] = b
            while self.watermark + 1 in self.batches:
                self.watermark += 1
            wm = self.watermark
        ack = wire.Ack(site=self.site, gateway=self.gateway, watermark=wm, ts=int(time.time() * 1000))
        client.publish(wire.ack_topic(self.site, self.gateway), ack.to_json(), qos=1, retain=True)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _config(site: str, port: int, data_dir: Path, n_devices: int = 5, mqtt_: dict[str, object] | None = None,
            **gateway: object) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "gateway": {"site": site, "id": "gw1", "poll_interval_s": 60, "data_dir": str(data_dir), **gateway},
        "mqtt": {"port": port, "reconnect_max_s": 1, "resend_after_s": 5, **(mqtt_ or {})},
        "devices": [{"id": f"m{i}", "profile": "eastron-sdm630", "driver": "simulated", "rated_power_kw": 500,
                     "tags": {"area": "melt", "process": "eaf"}} for i in range(n_devices)],
    })


def test_broker_outage_then_back_every_reading_arrives_in_order_with_original_timestamps(tmp_path):
    broker = Mosquitto("mosquitto", free_port(), tmp_path / "broker").start()
    acker = Acker(broker.port, "outage", "gw1")
    speed = 1200.0  # 20 poll cycles of 60 s per wall second
    # A window smaller than the ~120-batch backlog, so that live cycles must be sent ahead of it.
    cfg = _config("outage", broker.port, tmp_path / "edge", health_interval_s=600, mqtt_={"max_unconfirmed": 30})
    clock = VirtualClock(ClockSpec(start=START, speed=speed, origin=time.time()))
    agent = Agent(cfg, clock=clock)
    outage: dict[str, float] = {}

    async def scenario() -> dict[str, object]:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop=stop))
        await asyncio.to_thread(wait_for, lambda: acker.watermark >= 10 and acker.health, 30, "first batches and a health report")
        outage["from"] = clock.now()
        outage["last_before"] = agent.outbox.last_seq
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(6.0)  # 2 h of plant time without a broker
        outage["to"] = clock.now()
        last_during_outage = agent.outbox.last_seq
        await asyncio.to_thread(broker.restart)
        await asyncio.to_thread(wait_for, lambda: acker.watermark >= last_during_outage + 5, 60, "the backlog to drain")
        stop.set()
        await task
        return {"last_during_outage": last_during_outage}

    try:
        asyncio.run(scenario())
        # A clean stop leaves cycles committed but not yet published in the outbox for the next start
        # (the gateway polls 20 cycles a wall second here): start again without polling, until drained.
        asyncio.run(asyncio.wait_for(Agent(cfg, clock=clock).run(until=clock.now() - 120, exit_when_drained=True), 60))
        missing = sorted(set(range(1, agent.outbox.last_seq + 1)) - set(acker.batches))
        assert acker.watermark >= agent.outbox.last_seq, f"missing {missing[:10]}, publisher {dict(agent.publisher.counters)}"
    finally:
        acker.close()
        broker.stop()

    last = agent.outbox.last_seq
    assert sorted(acker.batches) == list(range(1, last + 1))  # every committed cycle arrived, none lost
    # In order: apart from the live cycles sent ahead of the backlog, arrivals are strictly increasing.
    # Cycles the broker had accepted but not yet delivered when it was stopped (it keeps no state
    # here) arrive again from the outbox later, so the cycles just before the outage may also show
    # up as "ahead" of them.
    ahead = {s for i, s in enumerate(acker.order) if any(t < s for t in acker.order[i + 1:])}
    rest = [s for s in acker.order if s not in ahead]
    assert rest == sorted(rest)
    sent_ahead = {s for s in ahead if s > outage["last_before"] + cfg.mqtt.max_inflight}
    assert 1 <= len(sent_ahead) <= agent.publisher.counters["sent_ahead"]
    # Original timestamps: one batch per 60 s of plant time straight through the outage, all devices
    # present, and every cycle the gateway skipped because it fell behind (a loaded machine at 1200x)
    # explained by a gap event. A read is stamped when it happens, which load may delay into a later
    # minute for a batch or two; a skipped cycle without its gap event shifts every later batch for
    # good. So: batch s polls cycle first + (s - 1) + (cycles reported missed so far) + a transient
    # delay that is never negative and returns to zero.
    ts = [min(d.ts for d in acker.batches[s].devices) for s in range(1, last + 1)]
    missed = 0
    offset = []
    for s in range(1, last + 1):
        missed += sum(e.detail["missed_cycles"] for e in acker.batches[s].events if e.kind == "gap")
        offset.append(ts[s - 1] // 60_000 - (s - 1) - missed)
    base = min(offset)
    assert sorted(offset)[len(offset) // 2] == base and min(offset[-10:]) == base, offset
    assert max(offset) - base <= 10, offset  # no read delayed by more than 10 cycles (0.5 s)
    assert agent.counters["skipped_cycles"] <= 5, "the gateway fell far behind its schedule"
    during = [s for s in range(1, last + 1) if outage["from"] * 1000 < ts[s - 1] < outage["to"] * 1000]
    assert len(during) >= 60  # about two plant hours of cycles were polled while the broker was down
    # Every device in every cycle; a value is bad only where its read timed out (load at 1200x: a
    # read has 40 ms of wall time), and those stay rare.
    values = [(d.status, v.q) for s in during for d in acker.batches[s].devices for v in d.values.values()]
    assert all(len(acker.batches[s].devices) == 5 for s in during)
    assert all(q == "good" or st in ("timeout", "error", "partial") for st, q in values)
    assert sum(q == "good" for _, q in values) >= 0.95 * len(values)
    st = agent.outbox.stats()
    assert st["watermark"] > 0 and st["batches"] == last - st["watermark"]  # pruned only below the collector's watermark
    h = acker.health[-1]
    assert set(h.devices) == {f"m{i}" for i in range(5)} and h.devices["m0"].state == "ok"
    assert {"poll_latency_ms_p95", "outbox_batches", "outbox_age_s", "dropped_batches", "rss_mb"} <= set(h.metrics)


def _gateway_proc(config: Path, data_dir: Path, spec: ClockSpec, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen([sys.executable, "-m", "carbonedge.app.cli", "-v", "edge", "--config", str(config), "--data-dir", str(data_dir),
                                 "--clock", spec.to_arg(), *extra], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_sigkill_and_restart_loses_nothing_committed_and_records_the_gap(services, tmp_path):
    site = "sigkill"
    port = services.mqtt.port
    acker = Acker(port, site, "gw1")
    config = tmp_path / "gw.toml"
    devices = "".join(f'[[devices]]\nid = "m{i}"\nprofile = "plc-line-counter"\ndriver = "simulated"\n' for i in range(4))
    config.write_text(f'[gateway]\nsite = "{site}"\nid = "gw1"\npoll_interval_s = 60\n\n'
                      f'[mqtt]\nport = {port}\nreconnect_max_s = 1\nresend_after_s = 5\n\n{devices}')
    data_dir = tmp_path / "edge"
    spec = ClockSpec(start=START, speed=1200.0, origin=time.time())
    log = tmp_path / "edge.log"
    try:
        p = _gateway_proc(config, data_dir, spec, log)
        wait_for(lambda: acker.watermark >= 20, 60, "the first 20 batches")
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        with sqlite3.connect(data_dir / "outbox.sqlite") as db:
            committed = int(db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]) - 1
            old_boot = db.execute("SELECT value FROM meta WHERE key='boot_id'").fetchone()[0]
            last_created = int(db.execute("SELECT value FROM meta WHERE key='last_created'").fetchone()[0])
        # A start that is stopped before it stores a cycle (here: its --until is already past) must not
        # turn the crash into a clean stop or hide the gap: the next start still reports both.
        p_short = _gateway_proc(config, data_dir, spec, log, "--until", iso(VirtualClock(spec).now() - 600))
        assert p_short.wait(60) == 0, log.read_text()[-3000:]
        time.sleep(1.0)  # the gateway is down for about 20 poll cycles of plant time
        until = iso(VirtualClock(spec).now() + 7200)  # two plant hours (6 s) after the restart, however slow it starts
        p2 = _gateway_proc(config, data_dir, spec, log, "--until", until, "--exit-when-drained")
        assert p2.wait(120) == 0, log.read_text()[-3000:]
    finally:
        acker.close()
        for proc in ("p", "p2"):
            q = locals().get(proc)
            if q is not None and q.poll() is None:
                q.kill()

    with sqlite3.connect(data_dir / "outbox.sqlite") as db:
        last = int(db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]) - 1
    assert last > committed
    assert sorted(acker.batches) == list(range(1, last + 1)), "a committed batch was lost"
    first_new = acker.batches[committed + 1]
    assert first_new.boot_id != old_boot and acker.batches[committed].boot_id == old_boot
    gaps = [e for e in first_new.events if e.kind == "gap"]
    assert len(gaps) == 1
    g = gaps[0].detail
    assert g["previous_boot_id"] == old_boot and g["last_committed_seq"] == committed and g["clean_stop"] is False
    assert g["from_ms"] == last_created
    first_ts = min(d.ts for d in first_new.devices)
    assert g["missed_cycles"] == round((first_ts - last_created) / 60_000) - 1 >= 5
    # Counters continue across the restart: the published totals never go down.
    for dev in ("m0", "m3"):
        series = [acker.batches[s] for s in range(1, last + 1)]
        vals = [d.values["production_count"].v for b in series for d in b.devices if d.device == dev]
        assert all(a is not None and b is not None and b >= a for a, b in zip(vals, vals[1:]))
    assert not [e for b in acker.batches.values() for e in b.events if e.kind == "counter_reset"]
