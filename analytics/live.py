"""The live monitor job: readings from InfluxDB → :class:`analytics.monitor.PlantMonitor` → alert sinks.

``carbonedge analyze monitor`` reads a site's ``readings`` (InfluxDB v1 API) in time order, one poll
cycle at a time, feeds them to the plant monitor causally, and delivers every alert transition
(open, update, resolved) to:

* InfluxDB, measurement ``alerts`` (``docs/influx-schema.md``; the Grafana alert panels query it);
* MQTT, topic ``carbonedge/v1/<site>/analytics/alerts`` (QoS 1) plus one retained topic per open alert;
* Grafana annotations, when a Grafana URL and token are given.

**Resumable.** After each batch of cycles the job saves its state file: the monitor (what it
learned, open alerts, counters' last values) and the *watermark*, the timestamp of the last cycle
it consumed. A restart continues after the watermark with the same learned model and the same open
alerts, so nothing is raised twice. Sinks are written before the state is saved; if the job dies in
between, the replayed cycles produce the same transitions with the same alert ids (ids are derived
from site, kind, subject and opening time), which overwrite rather than duplicate in every sink.

**Late data.** In follow mode the job reads only up to ``now − lag`` so that cycles still in
flight from gateways (outbox replays, collector spool) are in InfluxDB before it moves past them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbonedge.analytics.alerts import AlertEvent, alerts_line_protocol, publish_mqtt, push_grafana
from carbonedge.analytics.influx import InfluxReader
from carbonedge.analytics.monitor import MonitorSettings, PlantMonitor
from carbonedge.analytics.monitor import state as monitor_state
from carbonedge.analytics.monitor.plant import plant_fingerprint
from carbonedge.analytics.monitor.state import MonitorStateError
from carbonedge import quantities
from carbonedge.errors import CarbonEdgeError, ConfigError, QueryError
from carbonedge.plant import PlantModel
from carbonedge.influx import InfluxClient, quote_literal
from carbonedge.mqtt import BrokerSettings, make_client

log = logging.getLogger("carbonedge.monitor")

STATE_VERSION = monitor_state.VERSION
#: Readings are fetched in slices of this length (bounded memory, bounded query size).
CHUNK_MS = 6 * 3_600_000
#: On resuming, readings this far behind the watermark are read again (cycles a gateway clock step
#: back wrote there); those already consumed are recognised by their sequence number and skipped.
OVERLAP_MS = 15 * 60_000


def read_cycles(reader: InfluxReader, site: str, after_ms: int, until_ms: int, *, seen: dict[str, int] | None = None,
                overlap_ms: int = 0, chunk_ms: int = CHUNK_MS) -> Iterator[tuple[int, dict[str, dict[str, float]], int]]:
    """Poll cycles of ``site`` with ``after_ms < time <= until_ms``: ``(t_ms, {device: {quantity: value}}, missing)``.

    ``missing`` counts the gateway's cycles (by ``seq``) missing just before this one.

    A cycle is what one gateway read in one poll (its ``seq``). With one gateway, cycles come in
    the gateway's own order (``seq``), not in timestamp order: when a gateway clock steps back, its
    timestamps go back too and the monitor must see that, not a shuffled series whose counters
    appear to run backwards. With several gateways, cycles with the same timestamp are merged and
    come in time order. ``seen`` (gateway → highest ``seq`` consumed) is updated; cycles at or below
    it are skipped, so a window that starts ``overlap_ms`` before ``after_ms`` picks up cycles a
    clock step back wrote behind the watermark without repeating any. Only known quantities
    (``carbonedge.quantities``) are kept.
    """
    seen = seen if seen is not None else {}
    a = after_ms - overlap_ms
    while a < until_ms:
        b = min(a + chunk_ms, until_ms)
        q = (f'SELECT * FROM "readings" WHERE "site" = {quote_literal(site)} AND time > {a}ms AND time <= {b}ms '
             f'GROUP BY "gateway", "device"')
        cycles: dict[tuple[str, int], tuple[int, dict[str, dict[str, float]]]] = {}
        for s in reader.query(q):
            tags = s.get("tags", {})
            dev, gw = tags.get("device", ""), tags.get("gateway", "")
            cols = s["columns"]
            idx = [(i, c) for i, c in enumerate(cols) if c in quantities.QUANTITIES]
            iseq = cols.index("seq") if "seq" in cols else None
            for row in s["values"]:
                vals = {c: float(row[i]) for i, c in idx if isinstance(row[i], int | float) and not isinstance(row[i], bool)}
                if not vals:
                    continue
                t = int(row[0])
                seq = row[iseq] if iseq is not None and isinstance(row[iseq], int) else None
                if seq is None:
                    if t <= after_ms:
                        continue  # no sequence number to tell a new cycle from one already consumed
                    key = (gw, -t)
                elif seq <= seen.get(gw, -1):
                    continue
                else:
                    key = (gw, seq)
                cyc = cycles.setdefault(key, (t, {}))
                cyc[1][dev] = vals
        gateways = {k[0] for k in cycles}
        ordered: list[tuple[int, dict[str, dict[str, float]], list[tuple[str, int]]]]
        if len(gateways) == 1 and all(k[1] >= 0 for k in cycles):
            ordered = [(*cycles[k], [k]) for k in sorted(cycles, key=lambda k: k[1])]
        else:
            merged: dict[int, tuple[dict[str, dict[str, float]], list[tuple[str, int]]]] = {}
            for k, (t, devs) in cycles.items():
                slot = merged.setdefault(t, ({}, []))
                slot[0].update(devs)
                slot[1].append(k)
            ordered = [(t, devs, keys) for t, (devs, keys) in sorted(merged.items())]
        for t, devs, keys in ordered:
            missing = 0
            for gw, sq in keys:
                if sq >= 0:
                    if gw in seen and sq > seen[gw] + 1:
                        missing = max(missing, sq - seen[gw] - 1)
                    seen[gw] = max(seen.get(gw, -1), sq)
            yield t, devs, missing
        a = b


# --------------------------------------------------------------------------- sinks


@dataclass
class Sinks:
    """Where alert transitions go. Any of them may be absent (``None``)."""

    influx_url: str | None = None
    database: str = "carbonedge"
    influx_auth: tuple[str, str] | None = None
    mqtt: Any = None  # a connected paho-mqtt client with its network loop running
    grafana: Any = None  # analytics.grafana.GrafanaClient
    counts: dict[str, int] = field(default_factory=lambda: {"influx": 0, "mqtt": 0, "grafana": 0})

    def deliver(self, events: list[AlertEvent]) -> None:
        if not events:
            return
        if self.influx_url:
            lp = alerts_line_protocol(events)
            auth = self.influx_auth
            with InfluxClient(self.influx_url, self.database, username=auth[0] if auth else None, password=auth[1] if auth else None) as db:
                self.counts["influx"] += db.write_lines(lp.split("\n"), what="alerts")
        if self.mqtt is not None:
            n = publish_mqtt(self.mqtt, events)
            if n != len(events):
                raise CarbonEdgeError(f"the MQTT broker confirmed only {n} of {len(events)} alert messages; will retry from the last saved state",
                                      retryable=True)
            self.counts["mqtt"] += n
        if self.grafana is not None:
            c = push_grafana(self.grafana, events)
            self.counts["grafana"] += c["created"] + c["updated"]


def mqtt_client(settings: BrokerSettings, *, timeout_s: float = 10.0) -> Any:
    """A connected paho-mqtt client (the kernel's factory: MQTT v5, TLS with client certificate) for alert publishing.

    Raises a one-line :class:`CarbonEdgeError` naming the broker and the reason when it cannot connect;
    after that, paho reconnects by itself and the watch logs why an attempt fails.
    """
    link = make_client(settings, who="analytics", log=log, auth_hint="--mqtt-username, the password and the broker's ACL "
                       "(with deploy/pki: the analytics certificate)")
    return link.connect(timeout_s).client


# --------------------------------------------------------------------------- the job


@dataclass
class RunSummary:
    cycles: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    resumed_from_ms: int | None = None
    opened: int = 0
    updated: int = 0
    resolved: int = 0
    events: list[AlertEvent] = field(default_factory=list)
    learning_until_ms: int | None = None

    def add(self, evs: list[AlertEvent]) -> None:
        self.events += evs
        for e in evs:
            if e.state == "open":
                self.opened += 1
            elif e.state == "update":
                self.updated += 1
            else:
                self.resolved += 1


class MonitorJob:
    """Feeds a site's readings from InfluxDB through a :class:`PlantMonitor`, resumably.

    ``state_path`` holds the monitor and the watermark between runs (written atomically). Without
    one, every run starts learning afresh.
    """

    def __init__(self, reader: InfluxReader, plant: PlantModel | dict[str, Any], *, site: str | None = None, state_path: Path | None = None,
                 settings: MonitorSettings | None = None, sinks: Sinks | None = None) -> None:
        self.reader = reader
        self.plant = plant = PlantModel.coerce(plant)
        self.site = site or plant.site
        if not self.site:
            raise ConfigError("no site: pass --site or use a plant model with a 'site' entry")
        self.state_path = state_path
        self.settings = settings or MonitorSettings()
        self.sinks = sinks or Sinks()
        self.monitor: PlantMonitor | None = None
        self.watermark_ms: int | None = None
        self.seen: dict[str, int] = {}
        self._load()

    # ------------------------------------------------------------------ state

    def _fingerprint(self) -> str:
        return plant_fingerprint(self.plant)

    def _load(self) -> None:
        """Continue from the state file: JSON (:mod:`analytics.monitor.state`), checked before anything in it is used."""
        if self.state_path is None or not self.state_path.exists():
            return
        body = monitor_state.read(self.state_path)
        fresh = "move it away to start learning afresh"
        try:
            d = monitor_state.obj(body, "state", ("site", "plant", "watermark_ms", "seen", "monitor"))
            site = monitor_state.text(d["site"], "state.site")
            if site != self.site:
                raise MonitorStateError(f"monitor state file {self.state_path} belongs to site {site!r}, not {self.site!r}; use one state file per site")
            if d["plant"] != self._fingerprint():
                raise MonitorStateError(f"the plant model changed since monitor state file {self.state_path} was written (processes, meters or "
                                        f"weather station differ); what the monitor learned no longer applies: {fresh}")
            watermark = monitor_state.opt_int(d["watermark_ms"], "state.watermark_ms")
            seen = monitor_state.mapping(d["seen"], "state.seen", lambda v, w: monitor_state.integer(v, w))
            monitor = PlantMonitor.from_state(self.plant, d["monitor"], self.settings)
        except monitor_state.StateInvalid as exc:
            raise MonitorStateError(f"monitor state file {self.state_path} is not valid ({exc}); {fresh}") from exc
        if monitor.site != self.site:
            raise MonitorStateError(f"monitor state file {self.state_path} holds a monitor of site {monitor.site!r}, not {self.site!r}; {fresh}")
        self.monitor, self.watermark_ms, self.seen = monitor, watermark, seen

    def _save(self) -> None:
        if self.state_path is None or self.monitor is None:
            return
        monitor_state.write(self.state_path, {"site": self.site, "plant": self._fingerprint(), "watermark_ms": self.watermark_ms,
                                              "seen": dict(self.seen), "monitor": self.monitor.to_state()})

    # ------------------------------------------------------------------ running

    def run_once(self, start_ms: int | None, end_ms: int, *, save_every: int = 360,
                 progress: Callable[[int, int], None] | None = None) -> RunSummary:
        """Consume every cycle after the watermark (or after ``start_ms − 1`` on a first run) up to ``end_ms``."""
        if self.watermark_ms is None and start_ms is None:
            raise ConfigError("first run: give --start or monitor.start in the settings file (the monitor learns normal operation from the first "
                              f"{self.settings.learn_hours:g} h after it)")
        summary = RunSummary(resumed_from_ms=self.watermark_ms)
        after = self.watermark_ms if self.watermark_ms is not None else start_ms - 1  # type: ignore[operator]
        if self.monitor is None:
            self.monitor = PlantMonitor(self.plant, self.settings, site=self.site)
        pending: list[AlertEvent] = []
        since_save = 0
        overlap = OVERLAP_MS if self.watermark_ms is not None else 0
        for t, readings, missing in read_cycles(self.reader, self.site, after, end_ms, seen=self.seen, overlap_ms=overlap):
            evs = self.monitor.step(t, readings, missing_cycles=missing)
            pending += evs
            summary.add(evs)
            summary.cycles += 1
            summary.first_ms = summary.first_ms if summary.first_ms is not None else t
            summary.last_ms = t
            self.watermark_ms = max(t, self.watermark_ms or t)
            since_save += 1
            if since_save >= save_every:
                self.sinks.deliver(pending)
                pending = []
                self._save()
                since_save = 0
                if progress:
                    progress(summary.cycles, t)
        self.sinks.deliver(pending)
        self._save()
        if not self.monitor.learning and self.monitor.t0 is not None:
            summary.learning_until_ms = int(self.monitor.t0 + self.settings.learn_hours * 3_600_000)
        return summary

    def follow(self, start_ms: int | None, *, interval_s: float = 60.0, lag_s: float = 120.0, stop: Callable[[], bool] = lambda: False,
               on_summary: Callable[[RunSummary], None] | None = None) -> None:
        """Run :meth:`run_once` every ``interval_s`` up to ``now − lag_s`` until ``stop()`` is true.

        InfluxDB or broker outages are retried at the next interval from the last saved state.
        """
        while not stop():
            try:
                s = self.run_once(start_ms, int((time.time() - lag_s) * 1000))
                if on_summary:
                    on_summary(s)
            except CarbonEdgeError as exc:
                if not (exc.retryable or isinstance(exc, QueryError)):
                    raise
                log.warning("monitor: %s; retrying in %.0f s", exc, interval_s)
                self._reload_after_failure()
            deadline = time.monotonic() + interval_s
            while time.monotonic() < deadline and not stop():
                time.sleep(min(1.0, interval_s))

    def _reload_after_failure(self) -> None:
        """After a failed delivery, go back to the last saved state so the undelivered transitions are produced again."""
        if self.state_path is not None and self.state_path.exists():
            self.monitor, self.watermark_ms, self.seen = None, None, {}
            self._load()
