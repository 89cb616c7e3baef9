"""Gateway configuration: one TOML file, validated by pydantic, with errors that name the file and key.

A minimal file::

    [gateway]
    site = "plant-a"
    id = "gw1"
    poll_interval_s = 1

    [mqtt]
    host = "broker.plant-a.local"
    port = 8883
    username = "gw1"
    password_file = "/etc/carbonedge/mqtt-password"
    [mqtt.tls]
    ca_file = "/etc/carbonedge/ca.crt"

    [[devices]]
    id = "eaf-meter"
    profile = "siemens-pac3200"
    host = "10.0.1.20"
    rated_power_kw = 90000
    tags = { area = "melt-shop", process = "eaf" }

Devices name a meter profile from :mod:`carbonedge.profiles` or one defined in the
same file under ``[[profiles]]`` (a register map for a meter the catalogue lacks).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator

from carbonedge import nodemaps, profiles, quantities
from carbonedge.settings import SettingsModel
from carbonedge.wire import Identifier, TagKey, TagValue


def _finite_scale(v: float) -> float:
    if not math.isfinite(v) or v == 0:
        raise ValueError("scale must be a finite, non-zero number")
    return v


#: A register's or node's scale factor: finite and non-zero.
Scale = Annotated[float, AfterValidator(_finite_scale)]


def _known_quantity(point: str, q: str) -> str:
    """``q`` when it is a catalogue quantity; otherwise the error a config point reports."""
    if q not in quantities.QUANTITIES:
        raise ValueError(f"point {point!r}: unknown quantity {q!r}; known: {', '.join(sorted(quantities.QUANTITIES))}")
    return q


class _Model(SettingsModel):
    pass


class GatewaySection(_Model):
    site: Identifier
    id: Identifier
    #: The base poll cycle: one outbox row and one MQTT message per cycle.
    poll_interval_s: float = Field(default=1.0, gt=0, le=86400)
    data_dir: Path = Path("/var/lib/carbonedge/edge")
    #: How often self-health (poll latency, errors per device, outbox depth) goes out on the health topic.
    health_interval_s: float = Field(default=60.0, gt=0, le=86400)
    #: Ed25519 private key (PEM, mode 0600) that signs and hash-chains every batch
    #: (``carbonedge keys new``); the collector archives the signed batches for ``carbonedge verify``.
    signing_key: Path | None = None


class OutboxSection(_Model):
    """The durable store-and-forward buffer on the gateway's disk."""

    #: Upper bound of unconfirmed data on disk. 2 GB hold ~4 days of 500 tags at 1 s (JSON batches).
    max_mb: float = Field(default=2048.0, gt=0)
    #: What happens when the bound is reached. ``drop_oldest`` replaces the oldest unconfirmed poll
    #: cycles by small ``overflow`` records (sequence numbers stay contiguous, the loss is explicit);
    #: ``drop_newest`` stops storing new cycles until there is room and reports them as a gap.
    #: Either way cumulative counters keep their totals: only the time resolution is lost.
    overflow: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    #: ``full`` fsyncs every commit (survives a power cut); ``normal`` survives a process crash only.
    sync: Literal["full", "normal"] = "full"


class TlsSection(_Model):
    #: CA bundle that signed the broker's certificate (``None``: the system trust store).
    ca_file: Path | None = None
    #: Client certificate and key for brokers that authenticate gateways by certificate.
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Only for commissioning: accept any broker certificate. Never in production.
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both for a client certificate, or neither")
        missing = [f"{name} {str(p)!r}" for name in ("ca_file", "cert_file", "key_file")
                   if (p := getattr(self, name)) is not None and not Path(p).is_file()]
        if missing:
            raise ValueError(f"{' and '.join(missing)} do{'es' if len(missing) == 1 else ''} not exist or {'is' if len(missing) == 1 else 'are'} not a file")
        return self


class MqttSection(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    #: Read the password from this file instead (mode 0600, owned by the service user).
    password_file: Path | None = None
    #: Defaults to ``carbonedge-{site}-{id}``.
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    tls: TlsSection | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    #: How many batches may await the broker's PUBACK at once (lowered to the Receive Maximum the
    #: broker announces on connect, MQTT v5 flow control).
    max_inflight: int = Field(default=20, ge=1, le=1000)
    #: How many batches may be sent beyond the collector's watermark before the gateway waits for it
    #: (end-to-end flow control: a resend repeats at most this many batches).
    max_unconfirmed: int = Field(default=200, ge=1, le=100_000)
    #: When the collector has not advanced the watermark for this long, resend the oldest unconfirmed
    #: batches (all of them if that moved the watermark only within them); while it stays stuck, each
    #: further resend waits twice as long (up to 32x).
    resend_after_s: float = Field(default=30.0, gt=0)
    #: Reconnect attempts back off from 1 s to this.
    reconnect_max_s: float = Field(default=30.0, ge=1, le=3600)
    #: Largest MQTT message the gateway sends, in KiB (topic and headers included). Keep it at or
    #: below the broker's ``max_packet_size`` (4096 KiB in deploy/mosquitto/carbonedge.conf):
    #: Mosquitto disconnects a client that sends more. A poll cycle that does not fit is stored
    #: as several consecutive batches (each device whole, in one of them). When the broker
    #: announces a smaller limit on connect, the smaller one applies.
    max_message_kb: int = Field(default=4096, ge=64, le=262144)

    @model_validator(mode="after")
    def _password(self) -> MqttSection:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set either password or password_file, not both")
        if self.password_file is not None and not Path(self.password_file).is_file():
            raise ValueError(f"password_file {str(self.password_file)!r} does not exist")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        return self

    def secret(self) -> str | None:
        """The MQTT password, read from ``password_file`` when given."""
        if self.password_file is not None:
            return Path(self.password_file).read_text().strip()
        return self.password.get_secret_value() if self.password else None


class PointConfig(_Model):
    """One register of a custom profile (see :class:`carbonedge.profiles.PointSpec`)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    address: int = Field(ge=0, le=65535)
    dtype: Literal["uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"]
    scale: Scale = 1.0
    word_order: Literal["big", "little"] = "big"
    table: Literal["holding", "input"] | None = None
    #: Catalogue quantity this point publishes; defaults to ``name``; ``""`` = internal point only.
    quantity: str | None = None



class ProfileConfig(_Model):
    """A meter register map defined in the config file, for meters the catalogue does not have."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    manufacturer: str = "custom"
    model: str = ""
    table: Literal["holding", "input"] = "holding"
    max_gap: int = Field(default=16, ge=0, le=124)
    points: list[PointConfig] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _buildable(self) -> ProfileConfig:
        self.build()  # unknown quantities, overlapping registers: reported against this profile
        return self

    def build(self) -> profiles.Profile:
        pts = []
        for p in self.points:
            q: str | None = p.name if p.quantity is None else (p.quantity or None)
            if q is not None:
                _known_quantity(p.name, q)
            pts.append(profiles.PointSpec(p.name, p.address, p.dtype, p.scale, p.word_order, p.table, quantity="" if q == p.name else q))
        return profiles.Profile(self.name, self.manufacturer, self.model, self.table, tuple(pts), max_gap=self.max_gap, source="gateway config file")


class NodePointConfig(_Model):
    """One value of a custom OPC UA node map (see :class:`carbonedge.nodemaps.NodePoint`)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    #: Node id (``s={object}.Mass``, ``ns=3;s="DB"."Mass"``) or browse path (``/Objects/PLC/{object}/Mass``).
    node: str = Field(min_length=1, max_length=512)
    ua_type: Literal["Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double"] = "Double"
    scale: Scale = 1.0
    #: Catalogue quantity this value publishes; defaults to ``name``.
    quantity: str | None = None
    deadband: float = Field(default=0.0, ge=0)



class NodeMapConfig(_Model):
    """An OPC UA node map defined in the config file, for PLC programs the catalogue does not have."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    namespace: str = Field(min_length=1, max_length=256)
    model: str = ""
    points: list[NodePointConfig] = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _buildable(self) -> NodeMapConfig:
        self.build()
        return self

    def build(self) -> nodemaps.NodeMap:
        pts = []
        for p in self.points:
            q = _known_quantity(p.name, p.quantity or p.name)
            pts.append(nodemaps.NodePoint(p.name, p.node, p.ua_type, p.scale, "" if q == p.name else q, p.deadband))
        return nodemaps.NodeMap(self.name, self.namespace, tuple(pts), manufacturer="custom", model=self.model, source="gateway config file")


class OpcUaServerConfig(_Model):
    """One OPC UA server (PLC, DCS, level-2 system); its devices share one session."""

    name: Identifier
    endpoint: str = Field(pattern=r"^opc\.tcp://[^\s/]+(:\d+)?(/\S*)?$")
    #: ``None`` is for a lab only (the gateway logs a warning); plants use Basic256Sha256 with certificates.
    security_policy: Literal["None", "Basic256Sha256"] = "Basic256Sha256"
    security_mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    #: The gateway's application instance certificate and key (``carbonedge opcua cert``), PEM or DER.
    certificate: Path | None = None
    private_key: Path | None = None
    #: The server's certificate: the only one the gateway trusts for this endpoint (pinned).
    server_certificate: Path | None = None
    #: ``subscribe``: monitored items (polling when the server refuses them); ``poll``: one Read per cycle.
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: float = Field(default=500.0, ge=10, le=600_000)
    sampling_interval_ms: float = Field(default=250.0, ge=0, le=600_000)
    timeout_s: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _security(self) -> OpcUaServerConfig:
        if self.security_policy != "None":
            absent = [k for k in ("certificate", "private_key", "server_certificate") if getattr(self, k) is None]
            if absent:
                raise ValueError(f"security_policy {self.security_policy} needs {', '.join(absent)} "
                                 '(or security_policy = "None", for a lab only)')
        for k in ("certificate", "private_key", "server_certificate"):
            p = getattr(self, k)
            if p is not None and not Path(p).is_file():
                raise ValueError(f"{k} {str(p)!r} does not exist or is not a file")
        return self


class DeviceConfig(_Model):
    id: Identifier
    #: Modbus register map (modbus-tcp, modbus-rtu, simulated).
    profile: str = ""
    driver: Literal["modbus-tcp", "modbus-rtu", "simulated", "opcua"] = "modbus-tcp"
    # OPC UA: the [[opcua_servers]] entry, the node map, and the device's object in the server (default: the id)
    server: str | None = None
    node_map: str | None = None
    object: str | None = Field(default=None, min_length=1, max_length=256)
    # Modbus TCP
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    # Modbus RTU (several devices may share one serial line; they are read one after another)
    serial_port: str | None = None
    baudrate: int = Field(default=9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(default=1, ge=0, le=255)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    #: Poll this device every N seconds (a whole multiple of the gateway's poll interval); default: every cycle.
    poll_interval_s: float | None = Field(default=None, gt=0, le=86400)
    #: Longest wait between reconnect attempts to a device that does not answer.
    backoff_max_s: float = Field(default=60.0, gt=0, le=3600)
    #: Override the profile's word order for every multi-register value (some meters and gateways swap words).
    word_order: Literal["big", "little"] | None = None
    #: Rated power of the metered feeder; energy counters growing faster than this (x1.5) are flagged implausible.
    rated_power_kw: float | None = Field(default=None, gt=0)
    #: Largest plausible increase per hour of any other counter quantity, e.g. ``{ production_mass = 400 }`` (t/h).
    counter_limits: dict[str, float] = Field(default_factory=dict)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str, info: ValidationInfo) -> str:
        # load_config passes the names of the file's own [[profiles]]; without them the
        # gateway-level check below still catches an unknown name.
        ctx = info.context or {}
        if v and "profiles" in ctx and v not in profiles.PROFILES and v not in ctx["profiles"]:
            known = ", ".join(sorted([*profiles.PROFILES, *ctx["profiles"]]))
            raise ValueError(f"unknown meter profile {v!r}; known: {known}")
        return v

    @field_validator("counter_limits")
    @classmethod
    def _counter_limits(cls, v: dict[str, float]) -> dict[str, float]:
        for q, lim in v.items():
            if q not in quantities.QUANTITIES or quantities.QUANTITIES[q].kind != "counter":
                known = ", ".join(sorted(n for n, x in quantities.QUANTITIES.items() if x.kind == "counter"))
                raise ValueError(f"{q!r} is not a counter quantity; counters: {known}")
            if not (lim > 0 and math.isfinite(lim)):
                raise ValueError(f"{q}: the limit must be a positive number (increase per hour)")
        return v

    @model_validator(mode="after")
    def _driver_fields(self) -> DeviceConfig:
        if self.driver == "opcua":
            if not self.server or not self.node_map:
                raise ValueError("an opcua device needs server (an [[opcua_servers]] name) and node_map")
        elif not self.profile:
            raise ValueError(f"a {self.driver} device needs profile (a meter register map)")
        if self.driver == "modbus-rtu":
            if not self.serial_port:
                raise ValueError("a modbus-rtu device needs serial_port (e.g. /dev/ttyUSB0)")
            if not 1 <= self.unit_id <= 247:
                raise ValueError("on a serial line unit_id must be 1..247")
        return self


class SparkplugSection(_Model):
    """Sparkplug B for SCADA and MES (Ignition, HiveMQ, Neuron): an optional second publisher, QoS 0 as the
    specification requires, beside the durable JSON batches (which stay the source of truth)."""

    enabled: bool = True
    #: Sparkplug group and edge node ids (topic ``spBv1.0/{group_id}/NBIRTH/{edge_node_id}``); default: site and gateway id.
    group_id: str | None = Field(default=None, pattern=r"^[^/+#]{1,64}$")
    edge_node_id: str | None = Field(default=None, pattern=r"^[^/+#]{1,64}$")
    #: Broker for Sparkplug (default: the [mqtt] broker). Sparkplug has its own MQTT session (its own Will).
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


class GatewayConfig(_Model):
    gateway: GatewaySection
    mqtt: MqttSection = MqttSection()
    outbox: OutboxSection = OutboxSection()
    profiles: list[ProfileConfig] = Field(default_factory=list)
    opcua_servers: list[OpcUaServerConfig] = Field(default_factory=list)
    node_maps: list[NodeMapConfig] = Field(default_factory=list)
    devices: list[DeviceConfig] = Field(min_length=1)
    #: Optional Sparkplug B publisher for SCADA/MES (see edge/sparkplug.py); the JSON batches stay the source of truth.
    sparkplug: SparkplugSection | None = None
    _custom: dict[str, profiles.Profile] = PrivateAttr(default_factory=dict)
    _custom_maps: dict[str, nodemaps.NodeMap] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> GatewayConfig:
        custom: dict[str, profiles.Profile] = {}
        for pc in self.profiles:
            if pc.name in profiles.PROFILES or pc.name in custom:
                raise ValueError(f"profile name {pc.name!r} is already taken")
            custom[pc.name] = pc.build()
        self._custom = custom
        maps: dict[str, nodemaps.NodeMap] = {}
        for mc in self.node_maps:
            if mc.name in nodemaps.NODE_MAPS or mc.name in maps:
                raise ValueError(f"node map name {mc.name!r} is already taken")
            maps[mc.name] = mc.build()
        self._custom_maps = maps
        servers = {o.name for o in self.opcua_servers}
        if len(servers) != len(self.opcua_servers):
            raise ValueError("two [[opcua_servers]] have the same name")
        seen: set[str] = set()
        base = self.gateway.poll_interval_s
        for d in self.devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} is used twice")
            seen.add(d.id)
            if d.driver == "opcua":
                if d.server not in servers:
                    raise ValueError(f"device {d.id!r}: no [[opcua_servers]] named {d.server!r}; defined: {', '.join(sorted(servers)) or 'none'}")
                if d.node_map not in nodemaps.NODE_MAPS and d.node_map not in maps:
                    raise ValueError(f"device {d.id!r}: unknown OPC UA node map {d.node_map!r}; known: {', '.join(sorted([*nodemaps.NODE_MAPS, *maps]))}")
            elif d.profile not in profiles.PROFILES and d.profile not in custom:
                raise ValueError(f"device {d.id!r}: unknown meter profile {d.profile!r}; known: {', '.join(sorted([*profiles.PROFILES, *custom]))}")
            if d.poll_interval_s is not None:
                k = d.poll_interval_s / base
                if k < 1 - 1e-9 or abs(k - round(k)) > 1e-6:
                    raise ValueError(f"device {d.id!r}: poll_interval_s {d.poll_interval_s:g} must be a whole multiple of the gateway's {base:g} s")
        return self

    def profile_for(self, d: DeviceConfig) -> profiles.Profile:
        """The device's profile, with its word-order override applied."""
        prof = self._custom.get(d.profile) or profiles.get_profile(d.profile)
        if d.word_order is not None:
            pts = tuple(dataclasses.replace(p, word_order=d.word_order) if p.width > 1 else p for p in prof.points)
            prof = dataclasses.replace(prof, points=pts)
        return prof

    def node_map_for(self, d: DeviceConfig) -> nodemaps.NodeMap:
        assert d.node_map is not None
        return self._custom_maps.get(d.node_map) or nodemaps.get_node_map(d.node_map)

    def opcua_server(self, name: str) -> OpcUaServerConfig:
        return next(o for o in self.opcua_servers if o.name == name)

    def every_n_cycles(self, d: DeviceConfig) -> int:
        return 1 if d.poll_interval_s is None else int(round(d.poll_interval_s / self.gateway.poll_interval_s))


def check_files(data: dict[str, Any]) -> list[str]:
    """Every file a gateway config refers to, checked the way the gateway will use it; all problems, one line each.

    ``data`` is the parsed TOML (not the validated model), so that a missing file in one section does not hide
    problems elsewhere."""
    from carbonedge.errors import CarbonEdgeError
    from carbonedge.settings import FileChecks

    fc = FileChecks()
    sect = lambda *keys: _dig(data, keys)  # noqa: E731
    key = fc.readable("gateway.signing_key", sect("gateway", "signing_key"))
    if key is not None:
        from carbonedge.integrity import load_private_key

        try:
            load_private_key(key)
        except CarbonEdgeError as exc:
            fc.problems.append(f"gateway.signing_key = {str(key)!r}: {exc}")
    fc.secret("mqtt.password_file", sect("mqtt", "password_file"))
    tls = sect("mqtt", "tls")
    if isinstance(tls, dict):
        fc.ca("mqtt.tls.ca_file", tls.get("ca_file"))
        fc.cert_and_key("mqtt.tls.cert_file", tls.get("cert_file"), "mqtt.tls.key_file", tls.get("key_file"))
    fc.writable_dir("gateway.data_dir", sect("gateway", "data_dir"), "the outbox lives there")
    return fc.problems


def _dig(data: Any, keys: tuple[str, ...]) -> Any:
    from carbonedge.settings import dig

    return dig(data, *keys)


#: List sections whose items errors name by a key rather than by index (``devices[id=m2].timeout_s``).
NAMES = {"devices": "id", "profiles": "name", "opcua_servers": "name", "node_maps": "name"}


def load_config(path: str | Path, *, environ: Any = None) -> GatewayConfig:
    """Read and validate a gateway TOML file (with ``CARBONEDGE_GATEWAY__...`` environment overrides,
    :mod:`carbonedge.settings`); raise :class:`ConfigError` with every problem, one line each, naming file and key."""
    from carbonedge import settings

    data = settings.read_toml(path)
    custom = {p.get("name") for p in data.get("profiles", []) if isinstance(p, dict)} if isinstance(data.get("profiles"), list) else set()
    return settings.load(GatewayConfig, path, kind="gateway", environ=environ, names=NAMES, context={"profiles": custom}, data=data)
