"""Strict validation of incoming messages against the wire contract, with a reason for every rejection.

Rejection reasons (stable names: they are counter names, dead-letter reasons and ``pipeline`` fields):

``oversized``       payload larger than ``max_payload_bytes``
``bad_topic``       not a ``carbonedge/v1/{site}/{gateway}/{kind}`` topic
``bad_json``        not parseable JSON
``non_finite``      a NaN or ±Inf value (InfluxDB cannot store them; clients that drop them silently lose data)
``schema``          wrong types, missing fields, unknown quantity, wrong unit, …
``topic_mismatch``  payload site/gateway differ from the topic's (a gateway may publish only under its own name)
``unknown_device``  device not in the configured device registry (only when one is configured)
``future_ts``       a device timestamp further ahead of the collector's clock than ``max_future_s``
``past_ts``         a device timestamp older than ``max_past_s`` (off by default: outboxes legitimately
                    hold days of backlog after an outage)

The first six reject the whole message; the last three reject only the offending device's readings
of a poll cycle, so that one misconfigured meter loses nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from pydantic import ValidationError

from carbonedge import quantities, wire
from carbonedge.errors import ConfigError
from carbonedge.collector.fastwire import NameCheck, decode_batch, has_surrogate_escape
from carbonedge.collector.lineprotocol import _FIELDS_TABLE, BatchPoints, Point, batch_points, device_point, event_point, series_key

WHOLE_MESSAGE_REASONS = ("oversized", "bad_topic", "bad_json", "non_finite", "schema", "topic_mismatch")
DEVICE_REASONS = ("unknown_device", "future_ts", "past_ts")


class Rejected(Exception):
    """A message (or part of one) that is dead-lettered with ``reason`` and a plain-language ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class DeviceRejection:
    device: str
    reason: str
    detail: str
    raw: str  # the device's readings as JSON, for the dead-letter record


@dataclass
class Validated:
    """A batch that passed: its identity, the points of the devices kept, and the devices rejected (with reasons)."""

    site: str
    gateway: str
    seq: int
    points: BatchPoints
    rejected: list[DeviceRejection] = field(default_factory=list)
    fast: bool = False


class _Undecided(Exception):
    """The fast path is not sure: let the wire models decide (and name the reason)."""


_MISSING = object()
_encode = msgspec.json.Encoder().encode
_UNITS = {name: q.unit for name, q in quantities.QUANTITIES.items()}


def load_device_registry(path: Path) -> frozenset[str]:
    """Known devices as ``site/gateway/device`` strings, from a JSON list or a text file (one per line, ``#`` comments)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the device registry {path}: {exc.strerror}") from exc
    if path.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{path}: expected a JSON list of \"site/gateway/device\" strings")
    else:
        items = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        items = [i for i in items if i]
    bad = [i for i in items if i.count("/") != 2]
    if bad:
        raise ConfigError(f"{path}: entries must look like site/gateway/device; wrong: {bad[:5]}")
    return frozenset(items)


class Validator:
    """Decodes and checks telemetry and health payloads; raises :class:`Rejected`."""

    def __init__(self, *, max_payload_bytes: int = 4 * 1024 * 1024, max_future_s: float = 300.0,
                 max_past_s: float | None = None, known_devices: frozenset[str] | None = None,
                 now_ms: Callable[[], float] = lambda: time.time() * 1000) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.max_future_ms = max_future_s * 1000
        self.max_past_ms = None if max_past_s is None else max_past_s * 1000
        self.known_devices = known_devices
        self.now_ms = now_ms
        self._names = NameCheck()
        #: ``(site, gateway) -> {device: (tags, series key)}`` of devices seen (the fast path's cache).
        self._known_series: dict[tuple[str, str], dict[str, tuple[dict[str, str], str]]] = {}

    def topic(self, topic: str) -> tuple[str, str, str]:
        try:
            return wire.parse_topic(topic)
        except ValueError as exc:
            raise Rejected("bad_topic", str(exc)) from exc

    def _parse(self, payload: bytes, model: type[wire.Batch] | type[wire.Health]) -> wire.Batch | wire.Health:
        if len(payload) > self.max_payload_bytes:
            raise Rejected("oversized", f"{len(payload):,} bytes is more than the limit of {self.max_payload_bytes:,} bytes")
        try:
            return model.model_validate_json(payload)
        except ValidationError as exc:
            errs = exc.errors(include_url=False)
            if any(e["type"] == "json_invalid" for e in errs):
                raise Rejected("bad_json", errs[0]["msg"]) from exc
            if any("finite" in e["msg"] for e in errs):
                where = next(".".join(str(p) for p in e["loc"]) for e in errs if "finite" in e["msg"])
                raise Rejected("non_finite", f"NaN or infinity at {where}") from exc
            msgs = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in errs[:5])
            more = f" (and {len(errs) - 5} more)" if len(errs) > 5 else ""
            raise Rejected("schema", msgs + more) from exc

    def batch(self, site: str, gateway: str, payload: bytes) -> Validated:
        """Validate a telemetry payload and build its points; raise :class:`Rejected` for the whole message.

        A fast path (typed decoding in C with ``collector.fastwire``, cross-field checks fused
        with building the line protocol) accepts only what the wire models would accept too;
        anything else (unusual numbers, any error) goes through the wire models, which decide
        and name the reason. ``tests/test_collector.py`` checks the two
        agree on valid and mutated batches.
        """
        if len(payload) > self.max_payload_bytes:
            raise Rejected("oversized", f"{len(payload):,} bytes is more than the limit of {self.max_payload_bytes:,} bytes")
        try:
            return self._fast(site, gateway, payload)
        except _Undecided:
            pass
        b = self._parse(payload, wire.Batch)
        assert isinstance(b, wire.Batch)
        if (b.site, b.gateway) != (site, gateway):
            raise Rejected("topic_mismatch", f"payload says {b.site}/{b.gateway}, topic says {site}/{gateway}")
        kept: list[wire.DeviceReadings] = []
        rejected: list[DeviceRejection] = []
        for d in b.devices:
            why = self._device_check(site, gateway, d.device, d.ts)
            if why:
                rejected.append(DeviceRejection(d.device, why[0], why[1], d.model_dump_json(exclude_none=True)))
            else:
                kept.append(d)
        return Validated(site, gateway, b.seq, batch_points(b, kept), rejected)

    def _device_check(self, site: str, gateway: str, device: str, ts: int) -> tuple[str, str] | None:
        if self.known_devices is not None and f"{site}/{gateway}/{device}" not in self.known_devices:
            return "unknown_device", f"{site}/{gateway}/{device} is not in the device registry"
        now = self.now_ms()
        if ts > now + self.max_future_ms:
            return "future_ts", (f"{device} reading is {(ts - now) / 1000:.0f} s ahead of the collector's clock "
                                 f"(limit {self.max_future_ms / 1000:.0f} s); is the gateway clock wrong?")
        if self.max_past_ms is not None and ts < now - self.max_past_ms:
            return "past_ts", f"{device} reading is {(now - ts) / 86_400_000:.1f} days old (limit {self.max_past_ms / 86_400_000:.1f} days)"
        return None

    def _fast(self, site: str, gateway: str, payload: bytes) -> Validated:
        """Accept a batch the wire models would accept (typed decoding in C, msgspec) or raise :class:`_Undecided`.

        ``collector.fastwire`` decodes and checks types, patterns, bounds and literals; the
        cross-field rules of the wire models (a null value is ``bad``, values are finite, the
        quantity exists and carries its canonical unit, tags avoid the reserved names) are
        checked here while the line protocol is built. Signed batches and events take this path
        too; ``tests/test_collector_fastwire.py`` checks it against the wire models.
        """
        if has_surrogate_escape(payload):
            raise _Undecided
        try:
            b = decode_batch(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise _Undecided from exc
        if b.site != site or b.gateway != gateway:
            raise _Undecided
        seq = b.seq
        out = BatchPoints()
        rejected: list[DeviceRejection] = []
        unit_of = _UNITS.get
        encode = _encode
        future_limit = self.now_ms() + self.max_future_ms
        always_check = self.known_devices is not None or self.max_past_ms is not None
        readings = out.readings
        known = self._known_series.get((site, gateway))
        if known is None:
            known = self._known_series[(site, gateway)] = {}
        tail = f",seq={seq}i"  # the fields of a device with every value good and status ok end with it
        count = 0
        min_ts = max_ts = None
        for dev in b.devices:
            name, tags, ts = dev.device, dev.tags, dev.ts
            # The series key per device and tag set: names and tags checked once, when first seen.
            ent = known.get(name)
            if ent is None or ent[0] != tags:
                ent = self._learn_series(site, gateway, name, tags, known)
            vals: dict[str, float] = {}
            bad = 0
            for q, val in dev.values.items():
                v = val.v
                if val.u != unit_of(q, _MISSING):
                    raise _Undecided
                if v is None:
                    if val.q != "bad":
                        raise _Undecided
                    bad += 1
                else:
                    vals[q] = v
            # ``quantity=value,…`` formatted in C (lineprotocol.value_fields, inlined).
            text = encode(vals)[1:-1].translate(_FIELDS_TABLE, b'"').decode()
            if "null" in text:  # a NaN or infinity (msgspec's decoder refuses both; checked all the same)
                raise _Undecided
            if always_check or ts > future_limit:
                why = self._device_check(site, gateway, name, ts)
                if why:
                    rejected.append(DeviceRejection(name, why[0], why[1], msgspec.json.encode(dev).decode()))
                    continue
            if bad or dev.status != "ok" or not text:
                p = device_point(site, gateway, name, tags, ts, dev.status, text, len(vals), bad, seq)
            else:
                p = Point(ent[1], text + tail, ts, name, len(vals))
            count += p.readings
            readings.append(p)
            if min_ts is None:
                min_ts = max_ts = ts
            elif ts < min_ts:
                min_ts = ts
            elif ts > max_ts:  # type: ignore[operator]
                max_ts = ts
        out.reading_count = count
        out.min_ts, out.max_ts = min_ts, max_ts
        for e in b.events:
            out.events.append(event_point(site, gateway, seq, e.kind, e.ts, e.device, e.quantity, e.detail))
        return Validated(site, gateway, seq, out, rejected, fast=True)

    def _learn_series(self, site: str, gateway: str, name: str, tags: dict[str, str],
                      known: dict[str, tuple[dict[str, str], str]]) -> tuple[dict[str, str], str]:
        """Check a device name and tag set against the contract and remember its series key (bounded)."""
        if not self._names.device(name) or (tags and (not wire.RESERVED_TAGS.isdisjoint(tags) or not self._names.tags(tags))):
            raise _Undecided
        if len(known) >= 10_000:  # device names churning: start over rather than grow
            known.clear()
        ent = known[name] = (dict(tags), series_key(site, gateway, name, tags))
        return ent

    def health(self, site: str, gateway: str, payload: bytes) -> wire.Health:
        h = self._parse(payload, wire.Health)
        assert isinstance(h, wire.Health)
        if (h.site, h.gateway) != (site, gateway):
            raise Rejected("topic_mismatch", f"payload says {h.site}/{h.gateway}, topic says {site}/{gateway}")
        return h
