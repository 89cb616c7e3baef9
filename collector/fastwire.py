"""The wire contract's telemetry batch as msgspec Structs: typed decoding in C for the collector's hot path.

``carbonedge.wire`` (pydantic) is the contract; these Structs are a faster *acceptor* for it,
never a second definition of what is valid: they are built from the contract's own patterns,
bounds and literals (read off the pydantic models at import, so a change there cannot be
forgotten here), and ``tests/test_collector_fastwire.py`` checks with Hypothesis that whatever
this decoder accepts (after :func:`collector.validate.Validator`'s cross-field checks) the wire
models accept too, with the same values. Whatever it does not accept goes to the wire models,
which decide and name the reason; so the rejection reasons are the contract's, and this module
only needs to be correct about what it lets through.

The Structs are not tracked by the garbage collector (``gc=False``): decoded JSON cannot form
reference cycles, and some 200 fewer tracked objects per batch keep the collector's young
generation from filling on every message.

Regular expressions: pydantic-core anchors ``$`` at the very end of the string; Python's ``re``
(which msgspec uses) also lets ``$`` match before a trailing newline, so every pattern is
re-anchored with ``\\Z`` here.
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Literal

import annotated_types
import msgspec
from pydantic import BaseModel

from carbonedge import wire


def _field(model: type[BaseModel], name: str) -> typing.Any:
    return model.model_fields[name]


def _pattern(annotated: object) -> str:
    """A contract pattern (``^…$``) anchored for Python's ``re`` (``\\Z``: no trailing newline)."""
    p = annotated.__metadata__[0].pattern  # type: ignore[attr-defined]
    assert p.startswith("^") and p.endswith("$"), p
    return "^(?:" + p[1:-1] + r")\Z"


def _max_len(model: type[BaseModel], name: str) -> int:
    for m in _field(model, name).metadata:
        if isinstance(m, annotated_types.MaxLen):
            return int(m.max_length)
    raise AssertionError(f"{model.__name__}.{name} has no max_length in the wire contract")


def _bounds(model: type[BaseModel], name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in _field(model, name).metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                out[attr] = int(getattr(m, attr))
    return out


def _literal(model: type[BaseModel], name: str) -> typing.Any:
    ann = _field(model, name).annotation
    assert typing.get_origin(ann) is Literal, (model, name, ann)
    return ann


def _str_pattern(model: type[BaseModel], name: str) -> typing.Any:
    """``Annotated[str, Meta(pattern)]`` from a pydantic field declared with StringConstraints."""
    for m in _field(model, name).metadata:
        if getattr(m, "pattern", None):
            return Annotated[str, msgspec.Meta(pattern=_pattern(typing.Annotated[str, m]))]
    raise AssertionError(f"{model.__name__}.{name} has no pattern in the wire contract")


Ident = Annotated[str, msgspec.Meta(pattern=_pattern(wire.Identifier))]
EpochMs = Annotated[int, msgspec.Meta(**_bounds(wire.DeviceReadings, "ts"))]
Seq = Annotated[int, msgspec.Meta(**_bounds(wire.Batch, "seq"))]
Quality = _literal(wire.Value, "q")
Status = _literal(wire.DeviceReadings, "status")
EventKind = _literal(wire.Event, "kind")


class Value(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    u: str
    v: float | None = None
    q: Quality = "good"  # type: ignore[valid-type]


class DeviceReadings(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    #: Checked by :class:`NameCheck` (the same names arrive every poll cycle: a set lookup beats a regex).
    device: str
    ts: EpochMs
    status: Status = "ok"  # type: ignore[valid-type]
    error: Annotated[str, msgspec.Meta(max_length=_max_len(wire.DeviceReadings, "error"))] | None = None
    #: Keys and values checked by :class:`NameCheck`.
    tags: Annotated[dict[str, str], msgspec.Meta(max_length=_max_len(wire.DeviceReadings, "tags"))] = {}
    values: Annotated[dict[str, Value], msgspec.Meta(max_length=_max_len(wire.DeviceReadings, "values"))] = {}


class Event(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    kind: EventKind  # type: ignore[valid-type]
    ts: EpochMs
    device: Ident | None = None
    quantity: str | None = None
    detail: Annotated[dict[str, str | int | float | bool | None], msgspec.Meta(max_length=_max_len(wire.Event, "detail"))] = {}


class Integrity(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    key: _str_pattern(wire.Integrity, "key")  # type: ignore[valid-type]
    seq: Annotated[int, msgspec.Meta(**_bounds(wire.Integrity, "seq"))]
    prev: _str_pattern(wire.Integrity, "prev")  # type: ignore[valid-type]
    hash: _str_pattern(wire.Integrity, "hash")  # type: ignore[valid-type]
    sig: _str_pattern(wire.Integrity, "sig")  # type: ignore[valid-type]
    alg: _literal(wire.Integrity, "alg") = "ed25519"  # type: ignore[valid-type]


class Batch(msgspec.Struct, forbid_unknown_fields=True, gc=False, rename={"schema_": "schema"}):
    site: Ident
    gateway: Ident
    boot_id: _str_pattern(wire.Batch, "boot_id")  # type: ignore[valid-type]
    seq: Seq
    created: EpochMs
    schema_: _literal(wire.Batch, "schema_") = wire.BATCH_SCHEMA  # type: ignore[valid-type]
    devices: Annotated[list[DeviceReadings], msgspec.Meta(max_length=_max_len(wire.Batch, "devices"))] = []
    events: Annotated[list[Event], msgspec.Meta(max_length=_max_len(wire.Batch, "events"))] = []
    integrity: Integrity | None = None


#: Decodes a telemetry payload (bytes) into :class:`Batch`; raises ``msgspec.DecodeError``/``ValidationError``.
decode_batch = msgspec.json.Decoder(Batch).decode

#: A JSON string escape of a UTF-16 surrogate: pydantic's parser refuses a lone one and msgspec may not,
#: so such payloads (which no gateway writes) are left to the wire models.
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def has_surrogate_escape(payload: bytes) -> bool:
    # One byte is searched with memchr; the two-byte ``\\u`` took about 12 µs per 15 kB batch.
    return b"\\" in payload and _SURROGATE_ESCAPE.search(payload) is not None


class NameCheck:
    """Device names and tags against the contract's patterns, remembering what passed (bounded)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._ident = re.compile(_pattern(wire.Identifier)).match
        self._tag_key = re.compile(_pattern(wire.TagKey)).match
        self._tag_value = re.compile(_pattern(wire.TagValue)).match
        self._devices: set[str] = set()
        self._tags: set[tuple[str, str]] = set()
        self.max_entries = max_entries

    def device(self, name: str) -> bool:
        if name in self._devices:
            return True
        if not self._ident(name):
            return False
        if len(self._devices) >= self.max_entries:
            self._devices.clear()
        self._devices.add(name)
        return True

    def tags(self, tags: dict[str, str]) -> bool:
        known = self._tags
        for kv in tags.items():
            if kv in known:
                continue
            if not (self._tag_key(kv[0]) and self._tag_value(kv[1])):
                return False
            if len(known) >= self.max_entries:
                known.clear()
            known.add(kv)
        return True


def _check_against_contract() -> None:
    """Fail at import if the Structs and the wire models no longer name the same fields."""
    pairs = ((Value, wire.Value), (DeviceReadings, wire.DeviceReadings), (Event, wire.Event), (Integrity, wire.Integrity), (Batch, wire.Batch))
    for st, model in pairs:
        a = set(st.__struct_fields__)
        b = set(model.model_fields)
        if a != b:
            raise ImportError(f"collector.fastwire.{st.__name__} is out of step with carbonedge.wire.{model.__name__}: {sorted(a ^ b)}")


_check_against_contract()
