"""The live monitor's settings file (``carbonedge analyze monitor --config FILE``), validated like every carbonedge settings file.

``/etc/carbonedge/monitor.toml`` (deploy/analytics/monitor.example.toml)::

    [influx]
    url = "http://127.0.0.1:8086"
    database = "carbonedge"
    username = "analytics"
    password_file = "/etc/carbonedge/secrets/analytics.password"

    [mqtt]                                  # optional: publish alerts over MQTT
    host = "127.0.0.1"
    port = 8883
    [mqtt.tls]
    ca_file = "/etc/carbonedge/ca.crt"
    cert_file = "/etc/carbonedge/analytics-plant-server-1.crt"
    key_file = "/etc/carbonedge/analytics-plant-server-1.key"

    [monitor]
    plant_file = "/etc/carbonedge/plant.json"
    state_file = "/var/lib/carbonedge/monitor/monitor.state"
    learn_hours = 24

Environment overrides follow the one rule of :mod:`carbonedge.settings` (``CARBONEDGE_MONITOR__MQTT__HOST``);
the ``analyze monitor`` flags override both. Secrets come from files (``password_file``, ``token_file``) only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import AnyHttpUrl, Field, field_validator, model_validator

from carbonedge import settings
from carbonedge.settings import InfluxConnection, SettingsModel, TlsFiles

KIND = "monitor"


#: Where the readings are read from, and where the ``alerts`` measurement is written.
InfluxSection = InfluxConnection
TlsSection = TlsFiles


class MqttSection(SettingsModel):
    """The broker alerts are published to (topic ``carbonedge/v1/<site>/analytics/alerts``); no ``host``: no MQTT alerts."""

    host: str | None = Field(default=None, min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    #: Default ``carbonedge-monitor-<site>``.
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    username: str | None = None
    #: The broker password, read from this file (mode 0600); only with ``username``.
    password_file: Path | None = None
    tls: TlsSection | None = None

    @model_validator(mode="after")
    def _password(self) -> MqttSection:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file needs a username")
        return self


class GrafanaSection(SettingsModel):
    """Mirror alerts as Grafana annotations (optional)."""

    url: AnyHttpUrl | None = None
    #: A service-account token allowed to write annotations, read from this file (mode 0600).
    token_file: Path | None = None


class MonitorSection(SettingsModel):
    #: The plant model (plant.json; ``carbonedge config check`` checks it).
    plant_file: Path
    #: Site tag of the readings (default: the plant model's site).
    site: str | None = Field(default=None, min_length=1)
    #: What the monitor learned, its open alerts and how far it read; required to follow new readings.
    state_file: Path | None = None
    #: First run only (no state file yet): where to start reading (ISO 8601); later runs continue from the state file.
    start: str | None = None
    #: Hours of normal operation to learn from at the start.
    learn_hours: float = Field(default=24.0, gt=0)
    #: Follow mode: seconds between reads.
    interval_s: float = Field(default=60.0, gt=0)
    #: Follow mode: read only readings older than this many seconds (late deliveries from gateways come in first).
    lag_s: float = Field(default=120.0, ge=0)
    #: Write alert transitions to the InfluxDB measurement ``alerts``.
    influx_alerts: bool = True

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        import datetime as dt

        from carbonedge.clock import parse_time

        if isinstance(v, dt.datetime):  # an unquoted TOML date-time
            v = v.isoformat()
        if isinstance(v, str):
            try:
                parse_time(v)
            except (ValueError, TypeError, OverflowError):
                raise ValueError(f"not a date/time: {v!r} (use ISO 8601, e.g. 2026-01-05T06:00:00Z)") from None
        return v


class MonitorConfig(SettingsModel):
    influx: InfluxSection = InfluxSection()
    mqtt: MqttSection = MqttSection()
    grafana: GrafanaSection = GrafanaSection()
    monitor: MonitorSection

    def influx_auth(self, *, environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """``(user, password)`` for InfluxDB: the password from ``password_file`` (or, for flags-only runs, ``environ``)."""
        i = self.influx
        if not i.username:
            return None
        if i.password_file is not None:
            return i.username, read_secret(i.password_file, "influx.password_file")
        return i.username, (environ or {}).get("CARBONEDGE_INFLUX_PASSWORD", "")

    def broker(self, site: str, *, environ: Mapping[str, str] | None = None) -> Any:
        """The kernel's :class:`carbonedge.mqtt.BrokerSettings` for alert publishing (``None`` without ``mqtt.host``)."""
        from carbonedge.mqtt import BrokerSettings

        m = self.mqtt
        if not m.host:
            return None
        pw = None if m.password_file else (environ or {}).get("CARBONEDGE_MQTT_PASSWORD")
        return BrokerSettings(host=m.host, port=m.port, client_id=m.client_id or f"carbonedge-monitor-{site}", username=m.username or None,
                              password=pw, password_file=m.password_file, ca_file=m.tls.ca_file if m.tls else None,
                              cert_file=m.tls.cert_file if m.tls else None, key_file=m.tls.key_file if m.tls else None)

    def grafana_token(self, *, environ: Mapping[str, str] | None = None) -> str | None:
        g = self.grafana
        if g.token_file is not None:
            return read_secret(g.token_file, "grafana.token_file")
        return (environ or {}).get("CARBONEDGE_GRAFANA_TOKEN")


read_secret = settings.read_secret


def load_monitor_config(path: str | Path | None, *, overrides: list[tuple[tuple[str, ...], Any, str]] | None = None,
                        environ: Mapping[str, str] | None = None) -> MonitorConfig:
    """The monitor's settings from ``path`` (or none), the environment and flag ``overrides`` (flags win)."""
    return settings.load(MonitorConfig, path, kind=KIND, environ=environ, overrides=overrides or [])


def with_env(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The parsed file with its environment overrides applied, as the monitor will see it (for the file checks)."""
    return settings.with_env(data, KIND, environ)


def check_monitor_files(data: dict[str, Any]) -> list[str]:
    """Every file monitor settings name, checked the way the monitor will use it (one line per problem).

    ``data`` is the parsed TOML with overrides applied (not the validated model), so that a problem elsewhere in the
    file does not hide a missing certificate."""
    from carbonedge.plant import check_file

    def get(*keys: str) -> Any:
        return settings.dig(data, *keys)

    fc = settings.FileChecks()
    plant = fc.readable("monitor.plant_file", get("monitor", "plant_file"))
    if plant is not None:
        _model, problems = check_file(plant)
        fc.problems += [f"monitor.plant_file = {str(plant)!r}: {p.removeprefix(f'{plant}: ')}" for p in problems]
    state = get("monitor", "state_file")
    if isinstance(state, str) and state:
        sp = Path(state)
        if sp.is_dir():
            fc.problems.append(f"monitor.state_file = {state!r}: is a directory, not a file")
        elif sp.exists():
            if not os.access(sp, os.R_OK | os.W_OK):
                fc.problems.append(f"monitor.state_file = {state!r}: not readable and writable by this user")
        else:
            fc.writable_dir("monitor.state_file", state, "the monitor writes its state file there")
    fc.broker_and_influx(data)
    fc.secret("grafana.token_file", get("grafana", "token_file"))
    return fc.problems
