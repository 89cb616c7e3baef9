"""One error family for carbonedge, with stable codes and plain-language messages."""

from __future__ import annotations

import socket
import ssl


class CarbonEdgeError(Exception):
    """Base of every carbonedge error.

    ``code`` is stable (for logs, counters and dashboards); the message is meant
    for a plant engineer. ``retryable`` says whether trying again may succeed.
    """

    code = "carbonedge.error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable


class ConfigError(CarbonEdgeError):
    """A configuration file or option is wrong. The message names the file and key."""

    code = "config.invalid"


class ServiceError(CarbonEdgeError):
    """A server the pipeline needs (Mosquitto, InfluxDB) is missing or did not start."""

    code = "service.unavailable"


class MeterReadError(CarbonEdgeError):
    """A meter did not answer, or answered with a Modbus exception."""

    code = "meter.read_failed"
    retryable = True

    def __init__(self, device: str, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{device}: {message}", code=code)
        self.device = device


class PublishError(CarbonEdgeError):
    """The broker refused or did not confirm a publish."""

    code = "mqtt.publish_failed"
    retryable = True


class WriteError(CarbonEdgeError):
    """InfluxDB refused a write. ``retryable`` is true for 5xx and connection errors."""

    code = "influx.write_failed"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status


class QueryError(CarbonEdgeError):
    """An InfluxQL query failed. ``status`` is the HTTP status when InfluxDB answered."""

    code = "influx.query_failed"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status


class GrafanaError(CarbonEdgeError):
    """Grafana's HTTP API refused a request or did not answer. ``status`` is the HTTP status, if any."""

    code = "grafana.request_failed"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status


def describe_connect_error(exc: BaseException | None, host: str, port: int) -> tuple[str, str]:
    """``(kind, reason)`` of a failed MQTT connection attempt, for the log and the health counters.

    kind is one of dns, refused, tls, timeout, network."""
    if isinstance(exc, socket.gaierror):
        return "dns", f"cannot resolve host name {host!r} ({exc.strerror or exc}): check [mqtt] host and the gateway's DNS"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", f"connection refused by {host}:{port} (no broker listening on that port?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls", f"TLS: the broker's certificate was rejected: {exc.verify_message or exc} (check [mqtt.tls] ca_file and the host name)"
    if isinstance(exc, ssl.SSLError):
        return "tls", f"TLS handshake failed: {getattr(exc, 'reason', None) or exc} (is the port a TLS listener? are client certificate and key right?)"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout", f"no answer from {host}:{port} (firewall, wrong address or the network is down)"
    if isinstance(exc, OSError):
        return "network", f"{exc.strerror or exc}"
    return "network", str(exc) if exc else "connection failed"
