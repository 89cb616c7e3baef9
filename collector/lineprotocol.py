"""Wire models -> InfluxDB line protocol (measurement names from ``docs/influx-schema.md``).

``readings``: one point per device per poll cycle. Tags: ``site``, ``gateway``, ``device``
and the device's own tags (``area``, ``process``, …), all restricted by the wire contract
to characters that need no escaping. Fields: one float per good or uncertain quantity
(bad values carry no field; the point gets ``bad_values`` and ``status`` instead, so a gap
is visible), plus ``seq``. Timestamps are milliseconds (write with ``precision=ms``).

Each point is returned as ``(key, fields)`` where ``key`` is ``measurement,tags`` plus the
timestamp (the identity InfluxDB overwrites on) and ``fields`` the field set: the conflict
index compares digests of ``fields`` per ``key`` without parsing anything back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import msgspec

from carbonedge import wire
from carbonedge.influx import lp_string as str_field

MEASUREMENT = "readings"
EVENTS_MEASUREMENT = "events"
GATEWAY_HEALTH_MEASUREMENT = "gateway_health"
DEVICE_HEALTH_MEASUREMENT = "device_health"
PIPELINE_MEASUREMENT = "pipeline"


def _float(v: float) -> str:
    # repr() is the shortest string that round-trips exactly: the stored value is the sent value.
    return repr(float(v))


@dataclass
class Point:
    """One line: ``series`` (measurement and tags), ``fields``, ``ts`` (ms) and the device it belongs to."""

    series: str
    fields: str
    ts: int
    device: str | None = None
    readings: int = 0

    @property
    def key(self) -> str:
        return f"{self.series} {self.ts}"

    def line(self) -> str:
        return f"{self.series} {self.fields} {self.ts}"


@dataclass
class BatchPoints:
    """The points of one batch, per device, plus its events."""

    readings: list[Point] = field(default_factory=list)
    events: list[Point] = field(default_factory=list)
    reading_count: int = 0


_TAG_CACHE: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], str] = {}


def _series(site: str, gateway: str, device: str, tags: dict[str, str]) -> str:
    """``readings,<sorted tags>``; cached because a plant has few distinct devices and this is the hot path."""
    key = (site, gateway, device, tuple(tags.items()))
    s = _TAG_CACHE.get(key)
    if s is None:
        all_tags = {"site": site, "gateway": gateway, "device": device, **tags}
        s = MEASUREMENT + "".join(f",{k}={v}" for k, v in sorted(all_tags.items()))
        if len(_TAG_CACHE) > 100_000:  # bound memory if device names churn
            _TAG_CACHE.clear()
        _TAG_CACHE[key] = s
    return s


_encode = msgspec.json.Encoder().encode


def value_fields(values: dict[str, float]) -> str:
    """``quantity=value,…`` of finite floats, formatted in C.

    The values are written as msgspec writes JSON floats: the shortest string that reads back
    as the same double (like ``repr``; exponents without ``+``: ``1e16``), which InfluxDB
    parses to the sent value. Quantity names are catalogue names (``[a-z0-9_]``), so the JSON
    object needs only its quotes and colons turned into line protocol. A NaN or infinity would
    come out as ``null`` (InfluxDB refuses the line); callers pass finite values only.
    """
    return _encode(values)[1:-1].replace(b'"', b"").replace(b":", b"=").decode()


def device_point(site: str, gateway: str, device: str, tags: dict[str, str], ts: int, status: str, values: str, good: int,
                 bad: int, seq: int) -> Point:
    """The ``readings`` point of one device; ``values`` holds its ``quantity=value`` fields (``good`` of them)."""
    parts = [values] if values else []
    if bad:
        parts.append(f"bad_values={bad}i")
    if status != "ok":
        parts.append(f"status={str_field(status)}")
    parts.append(f"seq={seq}i")
    return Point(_series(site, gateway, device, tags), ",".join(parts), ts, device, good)


def batch_points(batch: wire.Batch, devices: list[wire.DeviceReadings] | None = None) -> BatchPoints:
    """Points of ``batch`` (only ``devices`` if given: the ones that passed per-device checks)."""
    out = BatchPoints()
    for d in batch.devices if devices is None else devices:
        vals = {q: v.v for q, v in d.values.items() if v.v is not None}
        bad = len(d.values) - len(vals)
        p = device_point(batch.site, batch.gateway, d.device, d.tags, d.ts, d.status, value_fields(vals), len(vals), bad, batch.seq)
        out.reading_count += p.readings
        out.readings.append(p)
    for e in batch.events:
        out.events.append(event_point(batch.site, batch.gateway, batch.seq, e.kind, e.ts, e.device, e.quantity, e.detail))
    return out


def event_point(site: str, gateway: str, seq: int, kind: str, ts: int, device: str | None, quantity: str | None,
                detail: dict[str, object]) -> Point:
    """The ``events`` point of a gateway event (``detail`` and ``quantity`` as one JSON string field)."""
    tags = f"{EVENTS_MEASUREMENT},device={device}" if device else EVENTS_MEASUREMENT
    tags += f",gateway={gateway},kind={kind},site={site}"
    text = str_field(json.dumps({**detail, **({"quantity": quantity} if quantity else {})}, sort_keys=True))
    return Point(tags, f"detail={text},seq={seq}i", ts, device)


def batch_lines(batch: wire.Batch) -> list[str]:
    """All lines of a batch (readings, then events)."""
    bp = batch_points(batch)
    return [p.line() for p in bp.readings + bp.events]


def health_lines(h: wire.Health) -> list[str]:
    """``gateway_health`` (the gateway's metrics) and ``device_health`` (one point per device)."""
    lines = []
    if h.metrics:
        fields = ",".join(f"{k}={float(v)!r}" for k, v in sorted(h.metrics.items()))
        lines.append(f"{GATEWAY_HEALTH_MEASUREMENT},gateway={h.gateway},site={h.site} {fields} {h.ts}")
    for dev, dh in sorted(h.devices.items()):
        fields = [f"reads={dh.reads}i", f"errors={dh.errors}i"]
        if dh.latency_ms is not None:
            fields.append(f"latency_ms={float(dh.latency_ms)!r}")
        if dh.last_error:
            fields.append(f"last_error={str_field(dh.last_error)}")
        lines.append(f"{DEVICE_HEALTH_MEASUREMENT},device={dev},gateway={h.gateway},site={h.site},state={dh.state} {','.join(fields)} {h.ts}")
    return lines


def event_line(site: str, gateway: str, kind: str, ts_ms: int, detail: dict[str, object], device: str | None = None, seq: int | None = None) -> str:
    """An ``events`` point raised by the collector itself (``conflict``, ``seq_gap``)."""
    tags = f"{EVENTS_MEASUREMENT},device={device}" if device else EVENTS_MEASUREMENT
    tags += f",gateway={gateway},kind={kind},site={site}"
    fields = f"detail={str_field(json.dumps(detail, sort_keys=True, default=str))}"
    if seq is not None:
        fields += f",seq={seq}i"
    return f"{tags} {fields} {ts_ms}"
