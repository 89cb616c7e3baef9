"""A whole pipeline on real processes for fault scenarios: gateway(s) and collector(s) as subprocesses.

Mosquitto and InfluxDB are the real servers (``carbonedge.app.services``); the scenario owns its
own instances when it kills them. Gateways poll simulated meters on a fast virtual clock, sign
their batches, and write the ground-truth ledger (``CARBONEDGE_LEDGER``). Everything binds to
127.0.0.1. Processes are stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from carbonedge.clock import ClockSpec, VirtualClock, iso, parse_time
from carbonedge.integrity import LEDGER_ENV, TrustStore, generate_key
from faultlib.checker import check

START = parse_time("2026-01-05T00:00:00Z")


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class RssSampler:
    """Peak RSS (MB) of the processes it is given, sampled every 100 ms in a thread."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.peak: dict[str, float] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def watch(self, pid: int, name: str) -> None:
        self._names[pid] = name

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for pid, name in list(self._names.items()):
                try:
                    mb = psutil.Process(pid).memory_info().rss / 1e6
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak.get(name, 0.0), mb)

    def close(self) -> dict[str, float]:
        self._stop.set()
        self._t.join(2)
        return {k: round(v, 1) for k, v in self.peak.items()}


@dataclass
class Pipeline:
    root: Path
    site: str
    mqtt_port: int
    influx_url: str
    database: str
    speed: float = 1200.0  # 20 poll cycles of 60 s per wall second
    poll_interval_s: float = 60.0
    devices: int = 4
    start: float = START
    gateways: list[str] = field(default_factory=lambda: ["gw1"])
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    rss: RssSampler = field(default_factory=RssSampler)
    gateway_port: dict[str, int] = field(default_factory=dict)  # e.g. a fault proxy in front of the broker
    _starts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.spec = ClockSpec(start=self.start, speed=self.speed, origin=time.time())
        self.trust_path = self.root / "trusted-keys.json"
        trust = TrustStore()
        for gw in self.gateways:
            sk = generate_key(self.root / f"{gw}.key")
            trust.add(self.site, gw, sk.public_key())
        trust.save(self.trust_path)

    # ------------------------------------------------------------------ paths
    def data_dir(self, gw: str) -> Path:
        return self.root / f"edge-{gw}"

    def ledger(self, gw: str) -> Path:
        return self.root / f"ledger-{gw}.jsonl"

    def state_dir(self, name: str = "c1") -> Path:
        return self.root / f"collector-{name}"

    def now(self) -> float:
        return VirtualClock(self.spec).now()

    def config(self, gw: str, **outbox: Any) -> Path:
        port = self.gateway_port.get(gw, self.mqtt_port)
        devices = "".join(f'[[devices]]\nid = "m{i}"\nprofile = "eastron-sdm630"\ndriver = "simulated"\nrated_power_kw = 800\n'
                          f'tags = {{ area = "melt", process = "eaf" }}\n\n' for i in range(self.devices))
        ob = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in outbox.items())
        p = self.root / f"{gw}.toml"
        p.write_text(f'[gateway]\nsite = "{self.site}"\nid = "{gw}"\npoll_interval_s = {self.poll_interval_s}\n'
                     f'health_interval_s = 3600\nsigning_key = "{self.root / (gw + ".key")}"\n\n'
                     f'[mqtt]\nport = {port}\nreconnect_max_s = 1\nresend_after_s = 3\n\n'
                     + (f"[outbox]\n{ob}\n" if ob else "") + devices)
        return p

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
               preexec: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        p = subprocess.Popen([sys.executable, "-m", "carbonedge.app.cli", "-v", *argv], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, preexec_fn=preexec)
        log.close()
        self.procs[name] = p
        self.rss.watch(p.pid, name.split("#")[0])
        return p

    def start_gateway(self, gw: str = "gw1", *extra: str, preexec: Callable[[], None] | None = None, **outbox: Any) -> subprocess.Popen[bytes]:
        cfg = self.config(gw, **outbox)
        self._starts[gw] = self._starts.get(gw, 0) + 1
        stats = self.root / f"{gw}.stats.{self._starts[gw]:04d}.json"
        return self._spawn(gw, ["edge", "--config", str(cfg), "--data-dir", str(self.data_dir(gw)), "--clock", self.spec.to_arg(),
                                "--stats-file", str(stats), *extra], env={LEDGER_ENV: str(self.ledger(gw))}, preexec=preexec)

    def gateway_counters(self, gw: str = "gw1") -> dict[str, float]:
        """The gateway's counters summed over every run that stopped cleanly and wrote them (killed runs write none)."""
        total: dict[str, float] = {}
        for f in sorted(self.root.glob(f"{gw}.stats.*.json")):
            try:
                doc = json.loads(f.read_text())
            except ValueError:
                continue
            for k, v in doc.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("pid", "wall_time", "last_seq", "acked_watermark") \
                        and not k.startswith("outbox_"):
                    total[k] = total.get(k, 0) + v
        return total

    def clean_run(self, batches: int, timeout: float = 90.0, plant_s: float = 300.0) -> None:
        """A fault-free run: collector and gateway up, ``batches`` acknowledged, the gateway drained and stopped."""
        self.start_collector()
        self.start_gateway()
        wait_for(lambda: self.acked() >= batches, timeout, f"{batches} acknowledged batches")
        self.stop_gateway_when_drained(plant_s=plant_s)

    def stop_gateway_when_drained(self, gw: str = "gw1", plant_s: float = 600.0, timeout: float = 120.0) -> None:
        """Stop the running gateway cleanly, then run it to ``now + plant_s`` and until the collector acknowledged everything."""
        self.terminate(gw)
        p = self.start_gateway(gw, "--until", iso(self.now() + plant_s), "--exit-when-drained")
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError(f"{gw} did not drain within {timeout:.0f} s:\n" + self.tail(gw)) from None
        assert rc == 0, self.tail(gw)

    def start_collector(self, name: str = "c1") -> subprocess.Popen[bytes]:
        return self._spawn(f"collector-{name}", ["collect", "--mqtt-port", str(self.mqtt_port), "--influx-url", self.influx_url,
                                                 "--database", self.database, "--state-dir", str(self.state_dir(name)),
                                                 "--client-id", f"{self.site}-{name}", "--share-group", "", "--batch-max-delay", "0.1",
                                                 "--gap-timeout", "3600", "--stats-file", str(self.root / f"collector-{name}.stats.json")])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait(15)

    def terminate(self, name: str, wait_s: float = 30.0) -> None:
        """SIGTERM (after SIGCONT, in case a scenario froze it), then SIGKILL if it has not exited in ``wait_s``."""
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
            p.terminate()
            try:
                p.wait(wait_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def tail(self, name: str, n: int = 3000) -> str:
        p = self.root / f"{name}.log"
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    def close(self) -> dict[str, float]:
        for name in list(self.procs):
            self.terminate(name, wait_s=20)
        return self.rss.close()

    # ------------------------------------------------------------------ state
    def _meta(self, gw: str, key: str) -> int:
        path = self.data_dir(gw) / "outbox.sqlite"
        if not path.exists():
            return 0
        try:
            with sqlite3.connect(path, timeout=10) as db:
                row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.Error:  # the gateway is still creating it
            return 0
        return int(row[0]) if row else 0

    def committed_seq(self, gw: str = "gw1") -> int:
        return self._meta(gw, "next_seq") - 1

    def acked(self, gw: str = "gw1") -> int:
        return self._meta(gw, "watermark")

    def collectors(self) -> list[Path]:
        return sorted(p for p in self.root.glob("collector-*") if p.is_dir())

    def check(self, timeout: float = 60.0) -> dict[str, Any]:
        """Run the checker until nothing is lost (a spool may still be draining) or ``timeout``; adds drain time."""
        t0 = time.monotonic()
        ledgers = {(self.site, gw): self.ledger(gw) for gw in self.gateways}
        upto = {(self.site, gw): self.committed_seq(gw) for gw in self.gateways}
        while True:
            r = check(ledgers, self.influx_url, self.database, self.collectors(), upto)
            if (r["lost"] == 0 and r["unexpected"] == 0) or time.monotonic() - t0 > timeout:
                break
            time.sleep(0.5)
        r["drain_s"] = round(time.monotonic() - t0, 2)
        return r
