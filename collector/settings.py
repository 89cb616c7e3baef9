"""The collector's settings file: one TOML file, validated like every carbonedge settings file.

``/etc/carbonedge/collector.toml`` (deploy/collector/collector.example.toml)::

    [mqtt]
    host = "broker.plant-a.local"
    port = 8883
    client_id = "collector-1"          # stable: it names the broker's persistent session
    share_group = "carbonedge"         # "" for none
    [mqtt.tls]
    ca_file = "/etc/carbonedge/ca.crt"
    cert_file = "/etc/carbonedge/collector-plant-server-1.crt"
    key_file = "/etc/carbonedge/collector-plant-server-1.key"

    [influx]
    url = "http://127.0.0.1:8086"
    database = "carbonedge"
    username = "collector"
    password_file = "/etc/carbonedge/secrets/collector.password"

    [collector]
    state_dir = "/var/lib/carbonedge/collector"
    known_devices = "/etc/carbonedge/devices.txt"

Environment overrides follow the one rule of :mod:`carbonedge.settings`
(``CARBONEDGE_COLLECTOR__INFLUX__URL``); ``carbonedge collect`` flags override both (tests, quick runs).
Secrets come from files (``password_file``), never from the file itself or the environment.
:meth:`CollectorConfig.runtime` turns the validated file into the collector's :class:`CollectorSettings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from carbonedge import settings
from carbonedge.settings import InfluxConnection, SettingsModel, TlsFiles

if TYPE_CHECKING:
    from carbonedge.collector.service import CollectorSettings

KIND = "collector"


TlsSection = TlsFiles


class MqttSection(SettingsModel):
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    #: Must be stable across restarts: it names the persistent MQTT session the broker keeps for this collector.
    client_id: str = Field(default="carbonedge-collector-1", min_length=1, max_length=128)
    #: MQTT v5 shared-subscription group; every collector of a group gets a share of the telemetry ("" for none).
    share_group: str = "carbonedge"
    username: str | None = None
    #: The broker password, read from this file (mode 0600); only with ``username``.
    password_file: Path | None = None
    tls: TlsSection | None = None
    #: In-flight QoS 1 messages the broker may send before they are acknowledged (MQTT v5 Receive Maximum).
    receive_maximum: int = Field(default=2000, ge=1, le=65535)

    @model_validator(mode="after")
    def _password(self) -> MqttSection:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file needs a username")
        return self


class InfluxSection(InfluxConnection):
    #: Attempts at InfluxDB before a flush goes to the disk spool, and the timeout of each.
    write_attempts: int = Field(default=3, ge=1, le=100)
    write_timeout_s: float = Field(default=10.0, gt=0, le=600)
    #: HTTP writes in flight at once (InfluxDB handles one write request largely on one core).
    write_concurrency: int = Field(default=2, ge=1, le=8)


class CollectorSection(SettingsModel):
    #: Watermarks, archive, dead letters and the disk spool.
    state_dir: Path = Path("/var/lib/carbonedge/collector")
    #: Device registry (site/gateway/device per line, or a JSON list); readings of other devices are dead-lettered.
    known_devices: Path | None = None
    #: Dead-letter readings more than this many seconds ahead of the collector's clock.
    max_future_s: float = Field(default=300.0, gt=0)
    #: Dead-letter readings older than this many days (none: no limit).
    max_past_days: float | None = Field(default=None, gt=0)
    #: Seconds a sequence hole may stay open before it is recorded as a gap.
    gap_timeout_s: float = Field(default=120.0, gt=0)
    #: Disk spool limit while InfluxDB is down, MB.
    spool_max_mb: float = Field(default=10_000.0, gt=0)
    #: Longest wait before a partial batch is written, seconds.
    batch_max_delay_s: float = Field(default=0.5, gt=0, le=60)
    #: A partial batch is written once it is this old and nothing more is waiting, seconds.
    batch_min_delay_s: float = Field(default=0.25, ge=0, le=60)
    #: Serve Prometheus metrics on 127.0.0.1:PORT/metrics (none: off).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)


class CollectorConfig(SettingsModel):
    mqtt: MqttSection = MqttSection()
    influx: InfluxSection = InfluxSection()
    collector: CollectorSection = CollectorSection()

    def runtime(self) -> CollectorSettings:
        """The collector's run-time settings: password files read, the device registry loaded."""
        from carbonedge.collector.service import CollectorSettings
        from carbonedge.collector.validate import load_device_registry

        m, i, c = self.mqtt, self.influx, self.collector
        return CollectorSettings(
            mqtt_host=m.host, mqtt_port=m.port, client_id=m.client_id, share_group=m.share_group or None,
            mqtt_username=m.username, mqtt_password=_read_secret(m.password_file, "mqtt.password_file"),
            mqtt_tls_ca=m.tls.ca_file if m.tls else None, mqtt_tls_cert=m.tls.cert_file if m.tls else None,
            mqtt_tls_key=m.tls.key_file if m.tls else None, receive_maximum=m.receive_maximum,
            influx_url=str(i.url).rstrip("/"), database=i.database, influx_username=i.username,
            influx_password=_read_secret(i.password_file, "influx.password_file"),
            write_attempts=i.write_attempts, write_timeout_s=i.write_timeout_s, write_concurrency=i.write_concurrency,
            state_dir=c.state_dir, known_devices=load_device_registry(c.known_devices) if c.known_devices else None,
            max_future_s=c.max_future_s, max_past_s=c.max_past_days * 86400 if c.max_past_days else None,
            gap_timeout_s=c.gap_timeout_s, spool_max_bytes=int(c.spool_max_mb * 1e6), batch_max_delay_s=c.batch_max_delay_s,
            batch_min_delay_s=min(c.batch_min_delay_s, c.batch_max_delay_s),
            metrics_port=c.metrics_port,
        )


def _read_secret(path: Path | None, key: str) -> str | None:
    return None if path is None else settings.read_secret(path, key)


def load_collector_config(path: str | Path | None, *, overrides: list[tuple[tuple[str, ...], Any, str]] | None = None,
                          environ: Any = None) -> CollectorConfig:
    """The collector's settings from ``path`` (or defaults), the environment and flag ``overrides``."""
    return settings.load(CollectorConfig, path, kind=KIND, environ=environ, overrides=overrides or [])


def check_collector_files(data: dict[str, Any]) -> list[str]:
    """Every file collector settings name, checked the way the collector will use it (one line per problem).

    ``data`` is the parsed TOML with overrides applied (not the validated model), so that a problem elsewhere in the
    file does not hide a missing certificate."""
    from carbonedge.errors import ConfigError

    def get(*keys: str) -> Any:
        return settings.dig(data, *keys)

    fc = settings.FileChecks()
    fc.broker_and_influx(data)
    reg = fc.readable("collector.known_devices", get("collector", "known_devices"))
    if reg is not None:
        from carbonedge.collector.validate import load_device_registry

        try:
            load_device_registry(reg)
        except ConfigError as exc:
            fc.problems.append(f"collector.known_devices = {str(reg)!r}: {str(exc).removeprefix(f'{reg}: ')}")
    fc.writable_dir("collector.state_dir", get("collector", "state_dir") or str(CollectorSection().state_dir),
                    "watermarks, archive and spool live there")
    return fc.problems
