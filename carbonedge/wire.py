"""The wire contract: what a gateway publishes, and what the collector answers.

One MQTT message carries one poll cycle (a :class:`Batch` of many readings), never
one reading, because per-message overhead decides throughput. Every batch has a
gateway-wide ``seq`` that grows by one per committed poll cycle and survives
reboots; the collector answers with an :class:`Ack` carrying the *watermark*: the
highest ``seq`` below which every batch is durably in InfluxDB. Gateways delete a
batch from their outbox only below that watermark, never on a broker PUBACK.

Topic layout (``{site}`` and ``{gateway}`` are :data:`Identifier` strings)::

    carbonedge/v1/{site}/{gateway}/telemetry   gateway -> collector   Batch, QoS 1
    carbonedge/v1/{site}/{gateway}/ack         collector -> gateway   Ack, QoS 1, retained
    carbonedge/v1/{site}/{gateway}/status      gateway (birth/will)   Status, QoS 1, retained
    carbonedge/v1/{site}/{gateway}/health      gateway -> collector   Health, QoS 0/1
    carbonedge/v1/{site}/{gateway}/deadletter  collector              rejected payloads with a reason

Any change to these models bumps :data:`BATCH_SCHEMA`; ``docs/wire-format.md``
documents the layout and a test keeps the exported JSON schema in step.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from carbonedge import quantities

BATCH_SCHEMA = "carbonedge.batch/1"
ACK_SCHEMA = "carbonedge.ack/1"
STATUS_SCHEMA = "carbonedge.status/1"
HEALTH_SCHEMA = "carbonedge.health/1"
TOPIC_ROOT = "carbonedge/v1"

#: Names that travel in topics and become InfluxDB tag values: no wildcards,
#: slashes, spaces, commas or quotes.
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
TagKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
TagValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]

#: Milliseconds since 1970-01-01T00:00:00Z, between 2000-01-01 and 2100-01-01.
EpochMs = Annotated[int, Field(ge=946_684_800_000, lt=4_102_444_800_000)]

Quality = Literal["good", "uncertain", "bad"]
RESERVED_TAGS = frozenset({"site", "gateway", "device"})


def telemetry_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{gateway}/telemetry"


def ack_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{gateway}/ack"


def status_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{gateway}/status"


def health_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{gateway}/health"


#: What a collector subscribes to for gateway self-health.
HEALTH_FILTER = f"{TOPIC_ROOT}/+/+/health"


def deadletter_topic(site: str, gateway: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{gateway}/deadletter"


#: What a collector subscribes to (prefix with ``$share/<group>/`` to split load).
TELEMETRY_FILTER = f"{TOPIC_ROOT}/+/+/telemetry"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """Split a carbonedge topic into ``(site, gateway, kind)``; raise ``ValueError`` if it is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise ValueError(f"not a carbonedge/v1 topic: {topic!r}")
    return parts[2], parts[3], parts[4]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Value(_Strict):
    """One reading of one quantity: value ``v`` in unit ``u`` with quality ``q``.

    A ``bad`` reading has ``v = null`` (the meter did not answer or the value was
    implausible); it is kept so that a missing value is visible, not silently absent.
    ``v`` may be omitted for null (``Batch.to_json`` leaves nulls out), so ``{"u": "kW", "q": "bad"}``
    is a bad reading.
    """

    v: float | None = None
    u: str
    q: Quality = "good"

    @model_validator(mode="after")
    def _check(self) -> Value:
        if self.v is None:
            if self.q != "bad":
                raise ValueError("a value of null must have quality 'bad'")
        elif not math.isfinite(self.v):
            raise ValueError("value must be a finite number (NaN and infinity are not allowed)")
        return self


class DeviceReadings(_Strict):
    """Everything read from one device in one poll cycle."""

    device: Identifier
    ts: EpochMs
    status: Literal["ok", "partial", "timeout", "error"] = "ok"
    error: str | None = Field(default=None, max_length=500)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=16)
    values: dict[str, Value] = Field(default_factory=dict, max_length=256)

    @model_validator(mode="after")
    def _check(self) -> DeviceReadings:
        clash = RESERVED_TAGS.intersection(self.tags)
        if clash:
            raise ValueError(f"tags may not use the reserved names {sorted(clash)}")
        for name, value in self.values.items():
            q = quantities.QUANTITIES.get(name)
            if q is None:
                raise ValueError(f"unknown quantity {name!r}")
            if value.u != q.unit:
                raise ValueError(f"{name}: unit {value.u!r} is not the canonical unit {q.unit!r}")
        return self


class Event(_Strict):
    """Something a gateway must tell the collector besides readings.

    ``gap``: poll cycles that were never committed (power cut, crash); ``overflow``:
    batches the outbox had to discard; ``counter_reset``: a cumulative counter
    went backwards; ``implausible``: a value was flagged rather than published.
    """

    kind: Literal["gap", "overflow", "counter_reset", "counter_rollover", "implausible", "clock"]
    ts: EpochMs
    device: Identifier | None = None
    quantity: str | None = None
    detail: dict[str, str | int | float | bool | None] = Field(default_factory=dict, max_length=32)


Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Integrity(_Strict):
    """Tamper evidence of one batch: Ed25519 signature and hash-chain link (``carbonedge/integrity.py``).

    ``hash`` is SHA-256 of the batch's canonical form (everything but this field);
    ``prev`` is the chain link of the previous ``seq`` of the same gateway (64 zeros
    at the start of a chain); ``sig`` signs ``alg, key, site, gateway, seq, prev, hash``.
    """

    alg: Literal["ed25519"] = "ed25519"
    key: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    seq: int = Field(ge=1)
    prev: Hex64
    hash: Hex64
    sig: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]


class Batch(_Strict):
    """One poll cycle of one gateway: the unit of publishing, storage and acknowledgement."""

    schema_: Literal["carbonedge.batch/1"] = Field(default=BATCH_SCHEMA, alias="schema")
    site: Identifier
    gateway: Identifier
    boot_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8,32}$")]
    seq: int = Field(ge=1)
    created: EpochMs
    devices: list[DeviceReadings] = Field(default_factory=list, max_length=2000)
    events: list[Event] = Field(default_factory=list, max_length=1000)
    #: Optional (additive): present when the gateway signs its batches.
    integrity: Integrity | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def reading_count(self) -> int:
        """Number of good or uncertain values (what lands in InfluxDB)."""
        return sum(1 for d in self.devices for v in d.values.values() if v.v is not None)


class Ack(_Strict):
    """The collector's end-to-end acknowledgement for one gateway.

    Every batch with ``seq <= watermark`` is durably in InfluxDB (or, when the
    database was down, in the collector's fsynced spool).
    """

    schema_: Literal["carbonedge.ack/1"] = Field(default=ACK_SCHEMA, alias="schema")
    site: Identifier
    gateway: Identifier
    watermark: int = Field(ge=0)
    ts: EpochMs

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class Status(_Strict):
    """Gateway birth/death certificate (retained; the death one is the MQTT last will)."""

    schema_: Literal["carbonedge.status/1"] = Field(default=STATUS_SCHEMA, alias="schema")
    site: Identifier
    gateway: Identifier
    state: Literal["online", "offline"]
    boot_id: str | None = None
    ts: EpochMs | None = None
    version: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class DeviceHealth(_Strict):
    """Per-device polling health over the last reporting period."""

    state: Literal["ok", "degraded", "down"] = "ok"
    reads: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    latency_ms: float | None = Field(default=None, ge=0)
    last_error: str | None = Field(default=None, max_length=500)


class Health(_Strict):
    """Gateway self-health, published periodically on the ``health`` topic (not stored in the outbox).

    ``metrics`` are plain numbers with the unit in the name, e.g. ``poll_latency_ms_p95``,
    ``outbox_batches``, ``outbox_age_s``, ``dropped_batches``, ``cpu_pct``, ``rss_mb``.
    The collector writes them to InfluxDB measurements ``gateway_health`` and ``device_health``.
    """

    schema_: Literal["carbonedge.health/1"] = Field(default=HEALTH_SCHEMA, alias="schema")
    site: Identifier
    gateway: Identifier
    boot_id: str
    ts: EpochMs
    metrics: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")], float] = Field(default_factory=dict, max_length=200)
    devices: dict[Identifier, DeviceHealth] = Field(default_factory=dict, max_length=2000)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()
