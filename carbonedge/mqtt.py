"""The one MQTT client set-up: paho-mqtt 2.x, MQTT v5, TLS with CA and client certificate, reconnect with reasons.

The gateway (edge), the collector and analytics (alert publisher, ``status``) all build their client with
:func:`make_client`, from a :class:`BrokerSettings`:

* MQTT v5 (reason codes on CONNACK, PUBACK and SUBACK; session expiry; Receive Maximum);
* TLS 1.2 or later against the plant CA (or the system trust store), with this process's client
  certificate and key: the deployed broker (deploy/mosquitto) requires one, and takes its CN as the
  MQTT identity the ACL grants;
* username and password, the password read from a file (mode 0600) so that it is never on a command line;
* automatic reconnection with exponential backoff (``reconnect_min_s`` … ``reconnect_max_s``), every failed
  attempt classified (:func:`carbonedge.errors.describe_connect_error`: dns, refused, tls, timeout, network;
  plus auth and refused from CONNACK, closed before CONNACK) and counted for the process's health metrics,
  and logged at once, again when the reason changes, then every 10th time (:class:`ConnectionWatch`).

paho-mqtt rather than aiomqtt: aiomqtt 2.5.1 drops PUBACK reason codes, which the gateway needs.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from carbonedge.errors import CarbonEdgeError, ConfigError, describe_connect_error

#: CONNACK reason codes that mean "who you are is not accepted": bad username or password (0x86),
#: not authorised (0x87), bad authentication method (0x8C).
AUTH_REASONS = (0x86, 0x87, 0x8C)


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how this process proves who it is."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Read the password from this file instead (first line; keep it mode 0600).
    password_file: Path | None = None
    #: TLS: the CA that signed the broker's certificate (``None`` with ``tls``: the system trust store).
    ca_file: Path | None = None
    #: This process's client certificate and key (the key may be inside ``cert_file``).
    cert_file: Path | None = None
    key_file: Path | None = None
    #: TLS with the system trust store (implied by ``ca_file`` or ``cert_file``).
    tls: bool = False
    #: Accept any broker certificate: commissioning only, logged as a warning.
    insecure_skip_verify: bool = False
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None or self.insecure_skip_verify

    def secret(self) -> str | None:
        """The password: from ``password_file`` when given (``ConfigError`` naming the file if unreadable)."""
        if self.password_file is None:
            return self.password
        try:
            text = Path(self.password_file).read_text()
        except OSError as exc:
            raise ConfigError(f"{self.password_file}: cannot read the MQTT password file ({exc.strerror or exc})") from None
        pw = text.splitlines()[0].strip() if text.strip() else ""
        if not pw:
            raise ConfigError(f"{self.password_file}: the MQTT password file is empty")
        return pw

    def tls_context(self) -> ssl.SSLContext:
        """The client's TLS context; ``ConfigError`` naming the file when a certificate or key cannot be used."""
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{self.ca_file}: cannot use it as the MQTT CA certificate ({_ssl_reason(exc)})") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"{self.cert_file}: cannot use it as the MQTT client certificate"
                                  f"{' with key ' + str(self.key_file) if self.key_file else ''} ({_ssl_reason(exc)})") from None
        elif self.key_file:
            raise ConfigError(f"{self.key_file}: an MQTT client key needs its certificate (cert_file)")
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(getattr(exc, "reason", None) or exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class ConnectionWatch:
    """Why connection attempts fail: counted per kind, kept as ``last_error``, logged without flooding.

    A failure is logged at once, again whenever the reason changes, and every 10th time it repeats;
    the first success after failures is logged with the last reason. ``count(kind)`` is called for every
    failed attempt so that the process can put it into its health metrics.
    """

    def __init__(self, who: str, host: str, port: int, log: logging.Logger, *, auth_hint: str = "",
                 count: Callable[[str], None] | None = None, reconnect_max_s: float = 30.0) -> None:
        self.who, self.host, self.port, self.log = who, host, port, log
        self.auth_hint = auth_hint
        self.count = count
        self.reconnect_max_s = reconnect_max_s
        self.failures: Counter[str] = Counter()
        self.last_error: str | None = None
        self.same = 0  # consecutive attempts that failed for the same reason

    def failed(self, kind: str, reason: str) -> None:
        self.failures[kind] += 1
        if self.count is not None:
            self.count(kind)
        same = reason == self.last_error
        self.same = self.same + 1 if same else 1
        self.last_error = reason
        if not same or self.same % 10 == 0:
            self.log.warning("%s cannot connect to MQTT broker %s:%s: %s%s; retrying (backoff up to %g s)", self.who, self.host, self.port,
                             reason, f" ({self.same} attempts)" if same else "", self.reconnect_max_s)

    def socket_failed(self, exc: BaseException | None = None) -> None:
        """A connection attempt failed below MQTT (DNS, TCP, TLS): paho's ``on_connect_fail``."""
        kind, reason = describe_connect_error(exc if exc is not None else sys.exc_info()[1], self.host, self.port)
        self.failed(kind, reason)

    def connack(self, rc: Any) -> bool:
        """Judge a CONNACK: ``True`` when accepted (logs the recovery), else counts and logs the refusal."""
        if getattr(rc, "is_failure", False):
            code = int(getattr(rc, "value", 0))
            kind = "auth" if code in AUTH_REASONS else "refused"
            self.failed(kind, f"the broker refused the connection: {rc} (reason code {code:#04x})"
                              + (f": check {self.auth_hint}" if kind == "auth" and self.auth_hint else ""))
            return False
        if self.last_error:
            self.log.warning("%s connected to MQTT broker %s:%s after %d failed attempt(s) (last: %s)", self.who, self.host, self.port,
                             self.same, self.last_error)
        self.last_error, self.same = None, 0
        return True

    def closed_before_connack(self, rc: Any) -> None:
        """The broker closed the connection before accepting it (unless a refusal was already recorded)."""
        if getattr(rc, "is_failure", False) and self.last_error:
            return
        self.failed("closed", f"the broker closed the connection before accepting it ({rc}); "
                              "TLS on one side only, a client certificate it does not accept, or a client id or protocol it refuses?")


@dataclass
class MqttLink:
    """A paho client made by :func:`make_client`, its :class:`ConnectionWatch` and its settings."""

    client: mqtt.Client
    watch: ConnectionWatch
    settings: BrokerSettings
    #: Set before a deliberate disconnect, so that closing is not taken for a refusal.
    stopping: bool = False
    _accepted: threading.Event = field(default_factory=threading.Event)
    _pubacks: dict[int, int] = field(default_factory=dict)
    _acked: threading.Condition = field(default_factory=threading.Condition)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: Any, props: Any) -> None:
        with self._acked:
            self._pubacks[mid] = int(getattr(rc, "value", rc))
            self._acked.notify_all()

    def start(self, *, clean_start: bool | int = mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties: Any = None) -> None:
        """Connect in the background and keep reconnecting (paho's network thread)."""
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s,
                                  clean_start=clean_start, properties=properties)
        self.client.loop_start()

    def connect(self, timeout_s: float = 10.0, **kw: Any) -> MqttLink:
        """Start and wait until the broker accepts; raise a one-line :class:`CarbonEdgeError` with the reason if it does not.

        For short-lived and command-line clients; after this, paho reconnects by itself.
        """
        self.start(**kw)
        if not self._accepted.wait(timeout_s) or (self.watch.last_error is not None and not self.client.is_connected()):
            reason = self.watch.last_error or f"no answer within {timeout_s:g} s"
            self.close()
            raise CarbonEdgeError(f"{self.watch.who} cannot connect to MQTT broker {self.settings.host}:{self.settings.port}: {reason}",
                                  code="mqtt.connect_failed", retryable=True)
        return self

    def close(self) -> None:
        self.stopping = True
        self.client.disconnect()
        self.client.loop_stop()


def publish_confirmed(client: mqtt.Client, messages: list[tuple[str, bytes | str, bool]], *, qos: int = 1,
                      timeout_s: float = 10.0) -> list[int | None]:
    """Publish ``(topic, payload, retain)`` messages and wait for the broker's verdict on each.

    Returns each message's PUBACK reason code (``< 0x80`` accepted; 0x87 not authorised by the ACL,
    0x97 quota exceeded, …) or ``None`` when none came within ``timeout_s``. paho marks a message
    "published" whatever the reason code, so a refusal is only visible here. Needs a client made by
    :func:`make_client` that keeps its default ``on_publish``.
    """
    link = client.user_data_get()
    if not isinstance(link, MqttLink):
        raise TypeError("publish_confirmed needs a client made by carbonedge.mqtt.make_client")
    infos = [client.publish(topic, payload, qos=qos, retain=retain) for topic, payload, retain in messages]
    codes: list[int | None] = []
    with link._acked:
        link._acked.wait_for(lambda: all(i.mid in link._pubacks or i.rc != mqtt.MQTT_ERR_SUCCESS for i in infos), timeout_s)
        for i in infos:
            codes.append(link._pubacks.pop(i.mid, None))
    return codes


def make_client(settings: BrokerSettings, *, who: str, log: logging.Logger, auth_hint: str = "",
                count: Callable[[str], None] | None = None, manual_ack: bool = False, protocol: int = mqtt.MQTTv5,
                on_connect: Callable[[mqtt.Client, Any, Any], None] | None = None,
                on_disconnect: Callable[[mqtt.Client, Any, Any], None] | None = None) -> MqttLink:
    """A paho-mqtt 2.x client (MQTT v5 unless ``protocol`` says otherwise) set up from ``settings``; connect it with
    :meth:`MqttLink.start`.

    ``on_connect(client, flags, properties)`` runs only for an accepted CONNACK (a refusal is counted and
    logged by the watch). ``on_disconnect(client, reason, properties)`` runs on every disconnect; a
    connection closed before CONNACK is recorded by the watch first. Other callbacks (``on_message``,
    ``on_publish``, ``on_subscribe``) are set on ``link.client`` by the caller.
    """
    if protocol == mqtt.MQTTv5:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=protocol, manual_ack=manual_ack)
    else:  # MQTT 3.1.1 only where a specification demands it (Sparkplug B edge nodes: clean sessions)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=protocol, clean_session=True,
                        manual_ack=manual_ack)
    if settings.username:
        c.username_pw_set(settings.username, settings.secret())
    elif settings.password or settings.password_file:
        raise ConfigError("an MQTT password needs a username")
    if settings.uses_tls:
        if settings.insecure_skip_verify:
            log.warning("TLS certificate checks are OFF (insecure_skip_verify): commissioning only")
        c.tls_set_context(settings.tls_context())
    watch = ConnectionWatch(who, settings.host, settings.port, log, auth_hint=auth_hint, count=count,
                            reconnect_max_s=settings.reconnect_max_s)
    link = MqttLink(c, watch, settings)
    c.user_data_set(link)
    c.on_publish = link._on_publish
    seen_connack = {"ok": False}

    def _on_connect(client: mqtt.Client, userdata: object, flags: Any, rc: Any, props: Any) -> None:
        ok = watch.connack(rc)
        seen_connack["ok"] = ok
        if ok:
            link._accepted.set()
            if on_connect is not None:
                on_connect(client, flags, props)
        elif not link._accepted.is_set():
            link._accepted.set()  # answered (refused): connect() reports the reason

    def _on_connect_fail(client: mqtt.Client, userdata: object) -> None:
        # paho calls this inside its ``except OSError`` block: the exception is the reason.
        watch.socket_failed(sys.exc_info()[1])
        if not link._accepted.is_set():
            link._accepted.set()

    def _on_disconnect(client: mqtt.Client, userdata: object, flags: Any, rc: Any, props: Any) -> None:
        was_connected, seen_connack["ok"] = seen_connack["ok"], False
        if not was_connected and not link.stopping:
            watch.closed_before_connack(rc)
            if not link._accepted.is_set():
                link._accepted.set()
        if on_disconnect is not None:
            on_disconnect(client, rc, props)

    c.on_connect = _on_connect
    c.on_connect_fail = _on_connect_fail
    c.on_disconnect = _on_disconnect
    c.reconnect_delay_set(min_delay=max(1, int(settings.reconnect_min_s)), max_delay=max(1, int(settings.reconnect_max_s)))
    return link
