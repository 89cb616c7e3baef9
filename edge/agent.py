"""The gateway agent: poll every device each cycle, commit the cycle to the outbox, let the publisher send it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from carbonedge import profiles, quantities, wire
from carbonedge.clock import Clock, WallClock, iso
from carbonedge.errors import MeterReadError
from edge.config import DeviceConfig, GatewayConfig
from edge.drivers import ModbusTcpDriver
from edge.outbox import Outbox
from edge.publisher import Publisher

log = logging.getLogger("carbonedge.edge")


class Agent:
    """One gateway: devices -> outbox -> MQTT.

    ``clock`` is injectable so that a day of polling runs in a minute against a
    simulator on the same virtual clock.
    """

    def __init__(self, cfg: GatewayConfig, *, clock: Clock | None = None, data_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or WallClock()
        self.data_dir = Path(data_dir or cfg.gateway.data_dir)
        self.boot_id = uuid.uuid4().hex
        self.outbox = Outbox(self.data_dir / "outbox.sqlite")
        self.publisher = Publisher(cfg, self.outbox, self.boot_id)
        self.drivers = {d.id: self._driver(d) for d in cfg.devices}
        self.counters: Counter[str] = Counter()

    @staticmethod
    def _driver(d: DeviceConfig) -> ModbusTcpDriver:
        return ModbusTcpDriver(d.id, profiles.get_profile(d.profile), d.host, d.port, d.unit_id, d.timeout_s)

    async def _read_device(self, d: DeviceConfig, deadline_s: float) -> wire.DeviceReadings:
        ts = int(self.clock.now() * 1000)
        profile = profiles.get_profile(d.profile)
        try:
            values = await asyncio.wait_for(self.drivers[d.id].read(), deadline_s)
        except (MeterReadError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, MeterReadError) else "meter.timeout"
            self.counters[f"read_errors.{d.id}"] += 1
            bad = {q: wire.Value(v=None, u=quantities.get(q).unit, q="bad") for q in profile.published_quantities()}
            status = "timeout" if code in ("meter.timeout", "meter.connect_failed") else "error"
            return wire.DeviceReadings(device=d.id, ts=ts, status=status, error=str(exc) or code, tags=d.tags, values=bad)
        vals = {}
        for q, v in values.items():
            unit = quantities.get(q).unit
            vals[q] = wire.Value(v=v, u=unit) if v is not None else wire.Value(v=None, u=unit, q="bad")
        return wire.DeviceReadings(device=d.id, ts=ts, tags=d.tags, values=vals)

    async def poll_once(self) -> int:
        """Read every device concurrently (a dead one never delays the others past the cycle) and commit one batch."""
        deadline = max(0.05, min(self.clock.wall_seconds(self.cfg.gateway.poll_interval_s), max(d.timeout_s for d in self.cfg.devices) * 2))
        readings = await asyncio.gather(*(self._read_device(d, deadline) for d in self.cfg.devices))
        g = self.cfg.gateway
        created = int(self.clock.now() * 1000)

        def build(seq: int) -> tuple[bytes, int, int]:
            batch = wire.Batch(site=g.site, gateway=g.id, boot_id=self.boot_id, seq=seq, created=created, devices=list(readings))
            return batch.to_json(), created, batch.reading_count()

        seq = await asyncio.to_thread(self.outbox.append, build)
        n = sum(1 for r in readings for v in r.values.values() if v.v is not None)
        self.counters["batches"] += 1
        self.counters["readings"] += n
        self.counters["bad_values"] += sum(1 for r in readings for v in r.values.values() if v.v is None)
        self.publisher._wake.set()
        return seq

    async def run(self, *, until: float | None = None, exit_when_drained: bool = False, stop: asyncio.Event | None = None) -> dict[str, Any]:
        """Poll on the clock until ``until`` (plant time) or ``stop``; optionally wait until the collector confirmed everything."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        self.publisher.start()
        interval = self.cfg.gateway.poll_interval_s
        next_t = (self.clock.now() // interval) * interval
        log.info("gateway %s/%s polling %d devices every %g s (boot %s)", self.cfg.gateway.site, self.cfg.gateway.id, len(self.cfg.devices), interval, self.boot_id[:8])
        try:
            while not stop.is_set() and (until is None or next_t <= until):
                await self.clock.sleep_until(next_t)
                if stop.is_set():
                    break
                await self.poll_once()
                next_t += interval
                now = self.clock.now()
                if now > next_t + interval:  # fell behind: skip missed cycles rather than burst
                    skipped = int((now - next_t) // interval)
                    self.counters["skipped_cycles"] += skipped
                    next_t += skipped * interval
            if exit_when_drained:
                while not stop.is_set() and self.publisher.acked_watermark < self.outbox.last_seq:
                    await asyncio.sleep(0.05)
        finally:
            self.publisher.stop()
            for drv in self.drivers.values():
                drv.close()
        return self.stats()

    def stats(self) -> dict[str, Any]:
        depth, pending_readings = self.outbox.depth()
        return {
            "gateway": self.cfg.gateway.id,
            "boot_id": self.boot_id,
            "last_seq": self.outbox.last_seq,
            "acked_watermark": self.publisher.acked_watermark,
            "outbox_batches": depth,
            "outbox_readings": pending_readings,
            **dict(self.counters),
            **{f"mqtt.{k}": v for k, v in self.publisher.stats().items()},
            "plant_time": iso(self.clock.now()),
            "wall_time": time.time(),
        }


def write_stats(path: Path, stats: dict[str, Any]) -> None:
    path.write_text(json.dumps(stats, indent=2))
