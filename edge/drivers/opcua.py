"""OPC UA driver: the only module that talks to asyncua (PLCs, DCS and level-2 systems).

Devices name a node map (:mod:`carbonedge.nodemaps`) and the object of the device in the
server. Every device on the same server shares one :class:`OpcUaSession` (one secure
channel, one session, one subscription), as a plant's OPC UA servers expect of a client.

Two modes:

- ``subscribe`` (default): monitored items with a sampling interval and, for gauges, an
  absolute deadband; the server reports changes and the gateway keeps the latest value of
  each item. At each poll cycle the device's latest values enter the cycle's batch, so a
  value that arrives by subscription travels in the same outbox rows and MQTT messages as
  Modbus readings (one wire contract). Counters carry no deadband: every change counts.
- ``poll``: one Read request per device and cycle (servers without subscriptions, or as
  the fallback when the server refuses to create the monitored items).

Quality follows the OPC UA status code's severity (OPC 10000-4 §7.39): Good → ``good``,
Uncertain → ``uncertain`` (value kept), Bad → ``bad`` (no value); the status name goes
into the device's error text so the engineer sees e.g. ``BadSensorFailure``.

Timestamps: a reading's time stays the gateway's poll-cycle time, as for Modbus. The
source timestamps (when the PLC last changed a value) and server timestamps are checked
against the gateway's clocks and reported (``timestamp_report``) so that a PLC or server
clock that drifts is visible; they never reorder or redate readings.

The session is recovered after any loss (server restart, network cut): the next read
reconnects, resolves the namespace by URI again (indexes can move), re-creates the
subscription and reports the loss like a Modbus timeout. When the server's StartTime
changed, the server restarted and may have lost values it never sent: the gateway records
a ``gap`` event for each of its devices (counters still continue without loss: the counter
tracker carries their totals over a reset).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509

from carbonedge import nodemaps
from carbonedge.errors import MeterReadError
from carbonedge.certificates import make_certificate  # noqa: F401 - part of this driver's API
from carbonedge.edge.drivers.modbus import ReadResult

log = logging.getLogger("carbonedge.edge.opcua")
for _name in ("asyncua", "asyncua.client", "asyncua.common", "asyncua.uaprotocol"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

_SERVER_START_TIME = ua.NodeId(ua.ObjectIds.Server_ServerStatus_StartTime)
_SERVER_CURRENT_TIME = ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime)


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)
_BAD_SECURITY = ("BadSecurityChecksFailed", "BadCertificate", "BadIdentityToken", "BadSecurityPolicyRejected",
                 "BadSecurityModeRejected", "BadUserAccessDenied")


def quality(code: ua.StatusCode) -> str:
    """The wire's quality for an OPC UA status code, by its severity bits (OPC 10000-4 §7.39)."""
    sev = code.value >> 30
    return "good" if sev == 0 else "uncertain" if sev == 1 else "bad"


def status_name(code: ua.StatusCode) -> str:
    try:
        return code.name
    except Exception:  # noqa: BLE001 - a code outside the standard table still gets a readable form
        return f"0x{code.value:08X}"


@dataclass(frozen=True)
class Security:
    """The client's security settings (``[devices] security_*`` in the gateway config)."""

    policy: str = "None"  # "None" | "Basic256Sha256"
    mode: str = "SignAndEncrypt"  # "Sign" | "SignAndEncrypt"
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None

    def key(self) -> tuple[Any, ...]:
        return (self.policy, self.mode, self.certificate, self.private_key, self.server_certificate)


def certificate_uri(path: Path) -> str:
    """The application URI in a certificate's subjectAltName (OPC 10000-6 §6.2.2 requires one)."""
    data = Path(path).read_bytes()
    cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError(f"{path}: the certificate has no subjectAltName with an application URI") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise ValueError(f"{path}: the certificate's subjectAltName names no application URI")
    return uris[0]


class _ConnectFailed(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class _Handler:
    def __init__(self, session: OpcUaSession) -> None:
        self.session = session

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        dv = data.monitored_item.Value
        self.session.latest[node.nodeid] = dv
        self.session.notifications += 1

    def status_change_notification(self, status: Any) -> None:
        self.session.lost = f"subscription status {status.Status}"


class OpcUaSession:
    """One client session to one server, shared by the devices the gateway reads from it."""

    def __init__(self, endpoint: str, security: Security, timeout_s: float, *, mode: str = "subscribe",
                 publishing_interval_ms: float = 500.0, sampling_interval_ms: float = 250.0) -> None:
        self.endpoint = endpoint
        self.security = security
        self.timeout_s = timeout_s
        self.mode = mode
        self.publishing_interval_ms = publishing_interval_ms
        self.sampling_interval_ms = sampling_interval_ms
        self.drivers: list[OpcUaDriver] = []
        self.client: Client | None = None
        self.latest: dict[ua.NodeId, ua.DataValue] = {}
        self.lost: str | None = None
        self.notifications = 0
        self.start_time: dt.datetime | None = None
        self.restarts = 0
        self.subscribed = False  # False in poll mode or when the server refused the subscription (fallback)
        self._warned_insecure = False
        self.max_server_skew_s = 0.0  # largest |server clock - gateway wall clock| seen at a connect
        self.server_clock_offset_s: float | None = None
        self._task: asyncio.Task[Client] | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._last_error: tuple[str, str] | None = None

    async def _check_server_clock(self, c: Client) -> None:
        """Compare the server's clock (ServerStatus.CurrentTime) with the gateway's, once per session."""
        t0 = time.time()
        try:
            now = (await c.read_attributes([c.get_node(_SERVER_CURRENT_TIME)]))[0].Value.Value
        except Exception:  # noqa: BLE001 - optional in small servers
            return
        if not isinstance(now, dt.datetime):
            return
        t1 = time.time()
        offset = _utc(now).timestamp() - (t0 + t1) / 2.0
        self.server_clock_offset_s = offset
        self.max_server_skew_s = max(self.max_server_skew_s, abs(offset))
        if abs(offset) > 5.0:
            log.warning("OPC UA %s: the server's clock is %+.1f s off the gateway's (check NTP on both); readings keep the "
                        "gateway's poll time", self.endpoint, offset)

    # ------------------------------------------------------------------ connect
    async def ensure(self, device: str) -> Client:
        """The connected client; (re)connects in a task of its own.

        Opening a secure session takes longer than a fast poll cycle's deadline (RSA handshakes), so the
        attempt runs on while the cycle that started it moves on; later cycles find the session ready.
        A failed attempt is retried after 1 s, doubling to 30 s (wall time), and reported meanwhile.
        """
        c = self.client
        if c is not None and self.lost is None and _connected(c):
            return c
        if self._task is None or self._task.done():
            if self._task is None or time.monotonic() >= self._next_attempt:
                self._task = asyncio.create_task(self._attempt(), name=f"opcua-connect {self.endpoint}")
                self._task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved here; reported by ensure
            elif self._last_error is not None:
                raise MeterReadError(device, f"{self._last_error[0]} (next attempt in {self._next_attempt - time.monotonic():.0f} s)",
                                     code=self._last_error[1])
        try:
            return await asyncio.shield(self._task)
        except _ConnectFailed as exc:
            raise MeterReadError(device, exc.message, code=exc.code) from None

    def connect_soon(self) -> None:
        """Start connecting in the background (the gateway does this at start, before its first poll)."""
        if self.client is None and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._attempt(), name=f"opcua-connect {self.endpoint}")
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _attempt(self) -> Client:
        if self.client is not None:
            log.warning("OPC UA %s: %s; reconnecting", self.endpoint, self.lost or "connection lost")
            await self._drop()
        try:
            c = await self._connect()
        except _ConnectFailed as exc:
            await self._drop()
            self._failed(exc)
            raise
        except (TimeoutError, OSError, ua.UaError, ConnectionError, ValueError) as exc:
            await self._drop()
            err = _ConnectFailed(f"cannot open an OPC UA session with {self.endpoint}: {_describe(exc)}", "meter.connect_failed")
            self._failed(err)
            raise err from exc
        self._failures, self._last_error = 0, None
        return c

    def _failed(self, exc: _ConnectFailed) -> None:
        self._failures += 1
        self._last_error = (exc.message, exc.code)
        self._next_attempt = time.monotonic() + min(30.0, 2.0 ** (self._failures - 1))
        if self._failures in (1, 10, 100) or self._failures % 1000 == 0:
            log.warning("%s (%d failed attempts in a row)", exc.message, self._failures)

    async def _connect(self) -> Client:
        sec = self.security
        # Requests may take longer than a poll's deadline on a busy server (creating thousands of monitored items);
        # the poll cycle never waits for them (see ensure), so the request timeout can be generous.
        # The keep-alive probe must not take a server that is busy with a large request for a dead one; a closed
        # connection (server stopped) is still seen at once.
        c = Client(self.endpoint, timeout=max(4.0, 2 * self.timeout_s), watchdog_intervall=max(5.0, 2 * self.timeout_s))
        c.name = c.description = "carbonedge gateway"
        c.application_uri = "urn:carbonedge:gateway"
        c.product_uri = "urn:carbonedge"
        c.session_timeout = 60_000
        if sec.policy == "None":
            if not self._warned_insecure:
                self._warned_insecure = True
                log.warning("OPC UA %s: security policy None (no signing, no encryption): for a lab only, never on a plant network",
                            self.endpoint)
        else:
            assert sec.certificate and sec.private_key and sec.server_certificate
            c.application_uri = certificate_uri(sec.certificate)
            mode = ua.MessageSecurityMode.Sign if sec.mode == "Sign" else ua.MessageSecurityMode.SignAndEncrypt
            pinned = await uacrypto.load_certificate(str(sec.server_certificate))

            async def check_server(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
                if cert.fingerprint(cert.signature_hash_algorithm or _sha256()) != pinned.fingerprint(pinned.signature_hash_algorithm or _sha256()):
                    raise ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted)

            c.certificate_validator = check_server
            await c.set_security(security_policies.SecurityPolicyBasic256Sha256, str(sec.certificate), str(sec.private_key),
                                 server_certificate=str(sec.server_certificate), mode=mode)

        async def on_lost(exc: Exception) -> None:
            self.lost = f"connection lost ({_describe(exc)})"

        c.connection_lost_callback = on_lost
        try:
            await asyncio.wait_for(c.connect(), 4 * self.timeout_s)
        except ua.UaStatusCodeError as exc:
            name = type(exc).__name__
            if any(name.startswith(b) for b in _BAD_SECURITY) or "Security" in name or "Certificate" in name:
                raise _ConnectFailed(f"OPC UA server {self.endpoint} refused the gateway's session ({name}): is the gateway's "
                                     "certificate in the server's trust list, and the policy/mode offered by the server?", "meter.connect_failed") from exc
            raise
        except Exception:
            with _quiet():
                await c.disconnect()
            raise
        self.client = c
        self.lost = None
        try:
            start = (await c.read_attributes([c.get_node(_SERVER_START_TIME)]))[0].Value.Value
        except Exception:  # noqa: BLE001 - a server without ServerStatus still serves values
            start = None
        if self.start_time is not None and start is not None and start != self.start_time:
            self.restarts += 1
            log.warning("OPC UA %s restarted (start time %s, before %s): values it did not send before the restart are recorded as a gap",
                        self.endpoint, start.isoformat(), self.start_time.isoformat())
            for d in self.drivers:
                d.restart_noticed = (_utc(self.start_time).isoformat(), _utc(start).isoformat())
        self.start_time = start or self.start_time
        await self._check_server_clock(c)
        for d in self.drivers:
            await d.resolve(c)
        self.subscribed = False
        if self.mode == "subscribe":
            await self._subscribe(c)
        log.info("OPC UA session with %s open (%s%s, %s)", self.endpoint, sec.policy,
                 "" if sec.policy == "None" else f" {sec.mode}", "subscriptions" if self.subscribed else "polling")
        return c

    async def _subscribe(self, c: Client) -> None:
        self.latest.clear()
        try:
            sub = await c.create_subscription(self.publishing_interval_ms, _Handler(self))
        except (ua.UaError, TimeoutError) as exc:
            log.warning("OPC UA %s refused a subscription (%s); polling instead", self.endpoint, _describe(exc))
            return
        reqs: list[tuple[OpcUaDriver, str, Any]] = []
        for d in self.drivers:
            for name, nid in d.nodes.items():
                p = d.node_map.by_name[name]
                mfilter = None
                if p.deadband > 0 and not nodemaps.is_counter(p):
                    mfilter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue, DeadbandType=1, DeadbandValue=p.deadband)
                reqs.append((d, name, sub._make_monitored_item_request(c.get_node(nid), ua.AttributeIds.Value, mfilter, 1,
                                                                       ua.MonitoringMode.Reporting, self.sampling_interval_ms)))
        results: list[Any] = []
        for i in range(0, len(reqs), 500):  # servers cap items per request (MaxMonitoredItemsPerCall); short requests
            results += await sub.create_monitored_items([r[2] for r in reqs[i : i + 500]])
        wanted = 0
        for (d, name, _), r in zip(reqs, results):
            if isinstance(r, ua.StatusCode):
                d.refused[name] = status_name(r)
            else:
                wanted += 1
        self.subscribed = True
        # The server sends each item's current value first: wait for those (a few publishing intervals at most),
        # so the first cycle after a (re)connect carries values rather than "no value yet".
        deadline = time.monotonic() + min(self.timeout_s, max(0.2, 4 * self.publishing_interval_ms / 1000.0))
        while len(self.latest) < wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _drop(self) -> None:
        c, self.client = self.client, None
        self.subscribed = False
        self.latest.clear()
        if c is not None:
            with _quiet():
                await asyncio.wait_for(c.disconnect(), 2.0)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with _quiet():
                await self._task
        await self._drop()


class OpcUaDriver:
    """Reads one device (one object of a node map) through a shared :class:`OpcUaSession`."""

    def __init__(self, device: str, node_map: nodemaps.NodeMap, session: OpcUaSession, obj: str) -> None:
        self.device = device
        self.node_map = node_map
        self.session = session
        self.obj = obj
        self.nodes: dict[str, ua.NodeId] = {}
        self.missing: dict[str, str] = {}  # point -> why it could not be resolved
        self.refused: dict[str, str] = {}  # point -> status of a refused monitored item
        self.restart_noticed: tuple[str, str] | None = None  # (server start time before, after) of a restart
        self.max_source_skew_s = 0.0  # largest amount a source timestamp was ahead of the gateway clock
        session.drivers.append(self)

    async def resolve(self, c: Client) -> None:
        """Map each point to a NodeId on this server (namespace URIs to indexes, browse paths to nodes)."""
        self.nodes.clear()
        self.missing.clear()
        self.refused.clear()
        try:
            ns = await c.get_namespace_index(self.node_map.namespace)
        except ValueError:
            for p in self.node_map.points:
                self.missing[p.name] = f"namespace {self.node_map.namespace} not on the server"
            return
        for p in self.node_map.points:
            spec = p.node_for(self.obj)
            try:
                if p.is_browse_path():
                    segs = [s for s in spec.split("/") if s]
                    path = [("0:Objects" if i == 0 and s == "Objects" else s if s[:1].isdigit() and ":" in s else f"{ns}:{s}")
                            for i, s in enumerate(segs)]
                    node = await c.nodes.root.get_child(path)
                    self.nodes[p.name] = node.nodeid
                elif spec.startswith(("ns=", "nsu=", "i=")) and not spec.startswith("s="):
                    self.nodes[p.name] = ua.NodeId.from_string(spec) if not spec.startswith("nsu=") else await _nsu(c, spec)
                else:
                    self.nodes[p.name] = ua.NodeId.from_string(f"ns={ns};{spec}")
            except (ua.UaError, ValueError) as exc:
                self.missing[p.name] = f"{spec}: {_describe(exc)}"
        if self.missing:
            log.warning("%s: %d node(s) not found on %s: %s", self.device, len(self.missing), self.session.endpoint,
                        "; ".join(f"{k} ({v})" for k, v in self.missing.items()))

    async def read(self) -> ReadResult:
        s = self.session
        c = await s.ensure(self.device)
        if s.subscribed:
            if s.lost is not None:
                raise MeterReadError(self.device, f"OPC UA {s.endpoint}: {s.lost}", code="meter.timeout")
            dvs = {name: s.latest.get(nid) for name, nid in self.nodes.items()}
        else:
            names = list(self.nodes)
            try:
                res = await c.read_attributes([c.get_node(self.nodes[n]) for n in names]) if names else []
            except (TimeoutError, OSError, ConnectionError, ua.UaError) as exc:
                s.lost = f"read failed ({_describe(exc)})"
                raise MeterReadError(self.device, f"OPC UA {s.endpoint}: read failed: {_describe(exc)}", code="meter.timeout") from exc
            dvs = dict(zip(names, res))
        return self._decode(dvs)

    def _decode(self, dvs: dict[str, ua.DataValue | None]) -> ReadResult:
        raw: dict[str, float | None] = {}
        uncertain: set[str] = set()
        partial: list[str] = []
        for p in self.node_map.points:
            qn = p.quantity_name
            if qn is None:
                continue
            dv = dvs.get(p.name)
            if dv is None:
                raw[qn] = None
                why = self.missing.get(p.name) or self.refused.get(p.name) or "no value from the server yet"
                partial.append(f"{p.name}: {why}")
                continue
            code = dv.StatusCode or ua.StatusCode()
            qual = quality(code)
            v = _number(dv.Value.Value if dv.Value is not None else None)
            if qual == "bad" or v is None:
                raw[qn] = None
                partial.append(f"{p.name}: {status_name(code) if qual == 'bad' else 'not a number'}")
                continue
            raw[qn] = v * p.scale
            if qual == "uncertain":
                uncertain.add(qn)
                partial.append(f"{p.name}: {status_name(code)}")
            if dv.SourceTimestamp is not None and self.clock_now is not None:
                skew = _utc(dv.SourceTimestamp).timestamp() - self.clock_now()
                if skew > 0:  # a source time in the future of the gateway's clock: one of the two clocks is wrong
                    self.max_source_skew_s = max(self.max_source_skew_s, skew)
        if raw and all(v is None for v in raw.values()) and (self.missing or self.refused) and len(self.missing) + len(self.refused) == len(raw):
            raise MeterReadError(self.device, "no node of the map is readable: " + "; ".join(partial)[:400], code="meter.exception")
        out = ReadResult(raw, partial)
        out.uncertain = uncertain
        return out

    clock_now: Any = None  # set by the agent: the gateway clock's now() (for the source-timestamp check)

    def take_restart(self) -> tuple[str, str] | None:
        r, self.restart_noticed = self.restart_noticed, None
        return r

    def timestamp_report(self) -> dict[str, float]:
        return {"source_ahead_s_max": round(self.max_source_skew_s, 3), "server_clock_offset_s_max": round(self.session.max_server_skew_s, 3)}

    def close(self) -> None:
        # The session is shared; the agent closes it once (see close_sessions).
        pass


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        f = float(v)
        return f if f == f and f not in (float("inf"), float("-inf")) else None
    return None


def _connected(c: Client) -> bool:
    from asyncua.client.ua_client import UaClientState

    return getattr(c.uaclient, "state", None) is UaClientState.CONNECTED


async def _nsu(c: Client, spec: str) -> ua.NodeId:
    head, _, ident = spec.partition(";")
    idx = await c.get_namespace_index(head.removeprefix("nsu="))
    return ua.NodeId.from_string(f"ns={idx};{ident}")


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) or not text:
        return "timed out" if isinstance(exc, TimeoutError) else name
    return f"{name}: {text}" if name not in text else text


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> bool:
        return True


