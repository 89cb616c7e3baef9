"""One error family for carbonedge, with stable codes and plain-language messages."""

from __future__ import annotations


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
    """An InfluxQL query failed."""

    code = "influx.query_failed"


class GrafanaError(CarbonEdgeError):
    """Grafana's HTTP API refused a request or did not answer. ``status`` is the HTTP status, if any."""

    code = "grafana.request_failed"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
