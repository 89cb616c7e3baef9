"""Alert lifecycle (open → update → resolved), deduplication, and delivery to InfluxDB, MQTT and Grafana.

One condition has at most one open alert: the :class:`AlertBook` keys alerts by what they are
about (``("energy", process)``, ``("stuck_meter", device)`` …), so a condition that persists for
hours is one alert that is updated, not hundreds. Updates are rate-limited: one is emitted when the
severity changes, when the energy wasted grew by a quarter, or every 15 minutes otherwise. Events
that have no duration (a counter reset, a clock jump) are *pulses*: opened and resolved at once.

Every transition is an :class:`AlertEvent` carrying the full alert, so any sink can render it
alone:

* InfluxDB ``alerts`` measurement (``docs/influx-schema.md``): :func:`alerts_line_protocol`;
* MQTT topic ``carbonedge/v1/<site>/analytics/alerts`` (:func:`alert_topic`), one JSON object per
  transition, QoS 1, not retained; the last state of every open alert is also published retained on
  ``…/alerts/<alert_id>`` and cleared when it resolves, so a dashboard that connects late sees
  what is open now: :func:`publish_mqtt`;
* Grafana annotations through ``analytics.grafana``'s client: :func:`push_grafana`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from carbonedge.influx import lp_string, lp_tag

SEVERITIES = ("info", "minor", "major", "critical")
UPDATE_EVERY_MS = 15 * 60_000


def alert_id(site: str, kind: str, process: str, device: str | None, opened_ms: int) -> str:
    """Deterministic id: replaying the same readings after a restart names the same alert the same way,
    so every sink (InfluxDB point, retained MQTT topic, Grafana annotation) is overwritten, not duplicated."""
    return hashlib.sha1(f"{site}|{kind}|{process}|{device or ''}|{opened_ms}".encode()).hexdigest()[:12]


@dataclass
class Alert:
    alert_id: str
    site: str
    process: str
    device: str | None
    kind: str
    severity: str
    state: str  # open, update, resolved
    opened_ms: int
    updated_ms: int
    message: str
    score: float = 1.0
    wasted_kwh: float | None = None
    resolved_ms: int | None = None


@dataclass(frozen=True)
class AlertEvent:
    """One transition of one alert, at ``ts_ms`` (a snapshot of the alert after the transition)."""

    ts_ms: int
    alert: Alert

    @property
    def state(self) -> str:
        return self.alert.state

    def as_dict(self) -> dict[str, Any]:
        return {"ts": self.ts_ms} | asdict(self.alert)


@dataclass
class AlertBook:
    """Open alerts by key; every method returns the events it caused (possibly none)."""

    site: str
    open_alerts: dict[Any, Alert] = field(default_factory=dict)
    history: list[AlertEvent] = field(default_factory=list)
    _last_emit: dict[str, tuple[int, str, float]] = field(default_factory=dict)

    def is_open(self, key: Any) -> bool:
        return key in self.open_alerts

    def _emit(self, ts: int, a: Alert) -> list[AlertEvent]:
        snap = AlertEvent(ts, Alert(**asdict(a)))
        self.history.append(snap)
        self._last_emit[a.alert_id] = (ts, a.severity, a.wasted_kwh or 0.0)
        return [snap]

    def open(self, ts: int, *, kind: str, process: str, device: str | None, severity: str, message: str, key: Any,
             score: float = 1.0, wasted_kwh: float | None = None) -> list[AlertEvent]:
        if key in self.open_alerts:
            return self.update(ts, key, severity=severity, message=message, score=score, wasted_kwh=wasted_kwh)
        a = Alert(alert_id(self.site, kind, process, device, ts), self.site, process, device, kind, severity, "open", ts, ts, message, score, wasted_kwh)
        self.open_alerts[key] = a
        return self._emit(ts, a)

    def update(self, ts: int, key: Any, *, severity: str | None = None, message: str | None = None, score: float | None = None,
               wasted_kwh: float | None = None) -> list[AlertEvent]:
        a = self.open_alerts.get(key)
        if a is None:
            return []
        if severity is not None and SEVERITIES.index(severity) > SEVERITIES.index(a.severity):
            a.severity = severity  # severity only escalates while an alert is open: no flapping
        if message is not None:
            a.message = message
        if score is not None:
            a.score = max(a.score, score)
        if wasted_kwh is not None:
            a.wasted_kwh = wasted_kwh
        a.updated_ms = ts
        last_ts, last_sev, last_waste = self._last_emit.get(a.alert_id, (0, "", 0.0))
        grew = (a.wasted_kwh or 0.0) > 1.25 * last_waste + 1.0
        if a.severity != last_sev or grew or ts - last_ts >= UPDATE_EVERY_MS:
            a.state = "update"
            return self._emit(ts, a)
        return []

    def resolve(self, ts: int, key: Any, *, note: str = "", wasted_kwh: float | None = None) -> list[AlertEvent]:
        a = self.open_alerts.pop(key, None)
        if a is None:
            return []
        a.state = "resolved"
        a.resolved_ms = a.updated_ms = ts
        if wasted_kwh is not None:
            a.wasted_kwh = wasted_kwh
        if note:
            a.message = f"{a.message} Resolved: {note}."
        return self._emit(ts, a)

    def pulse(self, ts: int, *, kind: str, process: str, device: str | None, severity: str, message: str) -> list[AlertEvent]:
        key = ("pulse", uuid.uuid4().hex)
        out = self.open(ts, kind=kind, process=process, device=device, severity=severity, message=message, key=key)
        return out + self.resolve(ts, key)


# --------------------------------------------------------------------------- sinks


def alerts_line_protocol(events: Iterable[AlertEvent]) -> str:
    """InfluxDB line protocol for the ``alerts`` measurement, one point per transition (ms precision).

    Two transitions of one alert in the same millisecond (a pulse) differ in the ``state`` tag, so
    neither overwrites the other.
    """
    lines = []
    for e in events:
        a = e.alert
        tags = f"site={lp_tag(a.site)},process={lp_tag(a.process)},device={lp_tag(a.device or 'none')},kind={lp_tag(a.kind)},severity={lp_tag(a.severity)},state={lp_tag(a.state)}"
        fields = [f"alert_id={lp_string(a.alert_id)}", f"score={float(a.score)}", f"message={lp_string(a.message)}"]
        if a.wasted_kwh is not None:
            fields.append(f"wasted_kwh={float(a.wasted_kwh)}")
        lines.append(f"alerts,{tags} {','.join(fields)} {e.ts_ms}")
    return "\n".join(lines)


def alert_topic(site: str) -> str:
    """The MQTT topic alert transitions are published on."""
    return f"carbonedge/v1/{site}/analytics/alerts"


def publish_mqtt(client: Any, events: Iterable[AlertEvent], *, timeout_s: float = 10.0) -> int:
    """Publish transitions (QoS 1) with a client from :func:`carbonedge.mqtt.make_client`; returns how many the
    broker accepted (a PUBACK reason code below 0x80 for both the event and the retained "open now" message).

    A refusal (0x87: the identity's ACL does not allow the alert topics) is not counted: the caller then
    keeps its state and tries again, instead of taking the alert as delivered.
    """
    from carbonedge.mqtt import publish_confirmed

    n = 0
    for e in events:
        a = e.alert
        payload = json.dumps(e.as_dict(), separators=(",", ":"))
        retained = f"{alert_topic(a.site)}/{a.alert_id}"
        # Retained "what is open now": replaced on update, cleared (empty payload) on resolve.
        codes = publish_confirmed(client, [(alert_topic(a.site), payload, False),
                                           (retained, b"" if a.state == "resolved" else payload, True)], timeout_s=timeout_s)
        n += int(all(c is not None and c < 0x80 for c in codes))
    return n


def push_grafana(client: Any, events: Iterable[AlertEvent]) -> dict[str, int]:
    """Mirror transitions as Grafana annotations (one per alert, updated in place) via ``analytics.grafana``."""
    from carbonedge.analytics.grafana.client import AlertAnnotation, push_alert_annotations

    anns = [
        AlertAnnotation(alert_id=e.alert.alert_id, ts=e.alert.opened_ms, site=e.alert.site, process=e.alert.process, kind=e.alert.kind,
                        severity=e.alert.severity, state=e.alert.state, message=e.alert.message, device=e.alert.device,
                        wasted_kwh=e.alert.wasted_kwh, end_ts=e.alert.resolved_ms)
        for e in events
    ]
    return push_alert_annotations(client, anns)
