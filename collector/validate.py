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
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import ValidationError

from carbonedge import quantities, wire
from carbonedge.errors import ConfigError
from collector.lineprotocol import BatchPoints, batch_points, device_point

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


def _fullmatch(annotated: object) -> Callable[[str], object]:
    """The wire contract's own pattern, as a full match (``$`` alone would also accept a trailing newline)."""
    pattern = annotated.__metadata__[0].pattern  # type: ignore[attr-defined]
    return re.compile(pattern.lstrip("^").rstrip("$")).fullmatch


_IDENT = _fullmatch(wire.Identifier)
_TAG_KEY = _fullmatch(wire.TagKey)
_TAG_VALUE = _fullmatch(wire.TagValue)
_BOOT_ID = re.compile(r"[0-9a-f]{8,32}").fullmatch
_BATCH_KEYS = frozenset({"schema", "site", "gateway", "boot_id", "seq", "created", "devices", "events"})
_DEVICE_KEYS = frozenset({"device", "ts", "status", "error", "tags", "values"})
_VALUE_KEYS = frozenset({"v", "u", "q"})
_MISSING = object()
_STATUSES = frozenset({"ok", "partial", "timeout", "error"})
_QUALITIES = frozenset({"good", "uncertain", "bad"})
_UNITS = {name: q.unit for name, q in quantities.QUANTITIES.items()}
_TS_MIN, _TS_MAX = 946_684_800_000, 4_102_444_800_000
_EXACT_INT = 2**53


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

        A fast path (``json.loads`` and direct checks, fused with building the line protocol)
        accepts only what it can fully check and what the wire models would accept too;
        anything else (events, signatures, unusual numbers, any error) goes through the wire
        models, which decide and name the reason. ``tests/test_collector.py`` checks the two
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
        """Accept a plain batch (no events, no signature) or raise :class:`_Undecided`."""
        try:
            # orjson parses faster than json (1.3-2x here); it refuses NaN/Infinity literals and integers beyond
            # 64 bits, which then take the model path and are rejected there with their reason.
            d = orjson.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise _Undecided from exc
        if type(d) is not dict or not d.keys() <= _BATCH_KEYS or d.get("events") or d.get("schema", wire.BATCH_SCHEMA) != wire.BATCH_SCHEMA:
            raise _Undecided
        seq, created, devices = d.get("seq"), d.get("created"), d.get("devices", [])
        if (d.get("site") != site or d.get("gateway") != gateway or not _IDENT(site) or not _IDENT(gateway)
                or type(d.get("boot_id")) is not str or not _BOOT_ID(d["boot_id"])
                or type(seq) is not int or seq < 1 or type(created) is not int or not _TS_MIN <= created < _TS_MAX
                or type(devices) is not list or len(devices) > 2000 or ("events" in d and d["events"] != [])):
            raise _Undecided
        out = BatchPoints()
        rejected: list[DeviceRejection] = []
        units = _UNITS
        for dev in devices:
            if type(dev) is not dict or not dev.keys() <= _DEVICE_KEYS:
                raise _Undecided
            name, ts, status = dev.get("device"), dev.get("ts"), dev.get("status", "ok")
            err, tags, values = dev.get("error"), dev.get("tags", {}), dev.get("values", {})
            if (type(name) is not str or not _IDENT(name) or type(ts) is not int or not _TS_MIN <= ts < _TS_MAX
                    or status not in _STATUSES or (err is not None and (type(err) is not str or len(err) > 500 or not err.isascii()))
                    or type(tags) is not dict or len(tags) > 16 or type(values) is not dict or len(values) > 256):
                raise _Undecided
            for k, v in tags.items():
                if type(v) is not str or not _TAG_KEY(k) or not _TAG_VALUE(v) or k in wire.RESERVED_TAGS:
                    raise _Undecided
            parts: list[str] = []
            add = parts.append
            bad = 0
            for q, val in values.items():
                if type(val) is not dict:
                    raise _Undecided
                # The common case first: exactly {v, u, q}, good, a float, the quantity's unit
                # (orjson never yields NaN or infinity, so a float here is finite).
                if len(val) == 3 and val.get("q") == "good":
                    v = val.get("v", _MISSING)
                    if type(v) is float and val.get("u") == units.get(q, _MISSING):
                        add(f"{q}={v!r}")
                        continue
                if not val.keys() <= _VALUE_KEYS or val.get("u") != units.get(q) or val.get("q", "good") not in _QUALITIES:
                    raise _Undecided
                v = val.get("v")
                if type(v) is float:
                    if not math.isfinite(v):
                        raise _Undecided
                    parts.append(f"{q}={v!r}")
                elif v is None:
                    if val.get("q") != "bad":
                        raise _Undecided
                    bad += 1
                elif type(v) is int and -_EXACT_INT < v < _EXACT_INT:
                    parts.append(f"{q}={float(v)!r}")
                else:
                    raise _Undecided
            why = self._device_check(site, gateway, name, ts)
            if why:
                rejected.append(DeviceRejection(name, why[0], why[1], json.dumps(dev, separators=(",", ":"))))
                continue
            p = device_point(site, gateway, name, tags, ts, status, parts, bad, seq)
            out.reading_count += p.readings
            out.readings.append(p)
        return Validated(site, gateway, seq, out, rejected, fast=True)

    def health(self, site: str, gateway: str, payload: bytes) -> wire.Health:
        h = self._parse(payload, wire.Health)
        assert isinstance(h, wire.Health)
        if (h.site, h.gateway) != (site, gateway):
            raise Rejected("topic_mismatch", f"payload says {h.site}/{h.gateway}, topic says {site}/{gateway}")
        return h
