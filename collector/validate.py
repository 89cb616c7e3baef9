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

from pydantic import ValidationError

from carbonedge import wire
from carbonedge.errors import ConfigError

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
    readings: wire.DeviceReadings


@dataclass
class Validated:
    """A batch that passed, the devices kept, and the devices rejected (with reasons)."""

    batch: wire.Batch
    devices: list[wire.DeviceReadings]
    rejected: list[DeviceRejection] = field(default_factory=list)


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
        b = self._parse(payload, wire.Batch)
        assert isinstance(b, wire.Batch)
        if (b.site, b.gateway) != (site, gateway):
            raise Rejected("topic_mismatch", f"payload says {b.site}/{b.gateway}, topic says {site}/{gateway}")
        now = self.now_ms()
        kept: list[wire.DeviceReadings] = []
        rejected: list[DeviceRejection] = []
        for d in b.devices:
            if self.known_devices is not None and f"{site}/{gateway}/{d.device}" not in self.known_devices:
                rejected.append(DeviceRejection(d.device, "unknown_device", f"{site}/{gateway}/{d.device} is not in the device registry", d))
            elif d.ts > now + self.max_future_ms:
                rejected.append(DeviceRejection(d.device, "future_ts", f"{d.device} reading is {(d.ts - now) / 1000:.0f} s ahead of the collector's "
                                                f"clock (limit {self.max_future_ms / 1000:.0f} s); is the gateway clock wrong?", d))
            elif self.max_past_ms is not None and d.ts < now - self.max_past_ms:
                rejected.append(DeviceRejection(d.device, "past_ts", f"{d.device} reading is {(now - d.ts) / 86_400_000:.1f} days old "
                                                f"(limit {self.max_past_ms / 86_400_000:.1f} days)", d))
            else:
                kept.append(d)
        return Validated(b, kept, rejected)

    def health(self, site: str, gateway: str, payload: bytes) -> wire.Health:
        h = self._parse(payload, wire.Health)
        assert isinstance(h, wire.Health)
        if (h.site, h.gateway) != (site, gateway):
            raise Rejected("topic_mismatch", f"payload says {h.site}/{h.gateway}, topic says {site}/{gateway}")
        return h
