"""``carbonedge collect``: run a collector from its settings file, with flags as overrides (tests, quick runs)."""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path
from typing import Any

from carbonedge.argtypes import InputFile, Number, OutputDir, OutputFile, add_influx_auth, positive

#: Flags that override a key of the settings file: (dest, keys, convert).
_OVERRIDES: list[tuple[str, tuple[str, ...]]] = [
    ("mqtt_host", ("mqtt", "host")), ("mqtt_port", ("mqtt", "port")), ("client_id", ("mqtt", "client_id")),
    ("share_group", ("mqtt", "share_group")), ("mqtt_username", ("mqtt", "username")),
    ("mqtt_tls_ca", ("mqtt", "tls", "ca_file")), ("mqtt_tls_cert", ("mqtt", "tls", "cert_file")), ("mqtt_tls_key", ("mqtt", "tls", "key_file")),
    ("influx_url", ("influx", "url")), ("database", ("influx", "database")), ("influx_user", ("influx", "username")),
    ("state_dir", ("collector", "state_dir")), ("known_devices", ("collector", "known_devices")), ("metrics_port", ("collector", "metrics_port")),
    ("max_future", ("collector", "max_future_s")), ("max_past_days", ("collector", "max_past_days")),
    ("gap_timeout", ("collector", "gap_timeout_s")), ("spool_max_mb", ("collector", "spool_max_mb")),
    ("batch_max_delay", ("collector", "batch_max_delay_s")), ("batch_min_delay", ("collector", "batch_min_delay_s")),
]


def settings_from_args(a: argparse.Namespace) -> Any:
    """The collector's run-time settings: ``--config`` file, then ``CARBONEDGE_COLLECTOR__...`` variables, then flags."""
    from carbonedge.collector.settings import load_collector_config

    overrides = []
    for dest, keys in _OVERRIDES:
        value = getattr(a, dest)
        if value is not None:
            flag = "--" + dest.replace("_", "-")
            overrides.append((keys, value, f"{flag} (command line)"))
    cfg = load_collector_config(a.config, overrides=overrides)
    s = cfg.runtime()
    # Quick runs without a settings file: passwords from the environment (the deployed service reads password_file).
    if a.mqtt_username and cfg.mqtt.password_file is None:
        s.mqtt_password = os.environ.get("CARBONEDGE_MQTT_PASSWORD")
    if a.influx_user and cfg.influx.password_file is None:
        from carbonedge.argtypes import influx_password

        s.influx_password = influx_password(a)
    return s


def cmd_collect(a: argparse.Namespace) -> int:
    import signal

    from carbonedge.collector import Collector

    c = Collector(settings_from_args(a))
    c.writer.ensure_database()
    signal.signal(signal.SIGTERM, lambda *_: c.stop())
    signal.signal(signal.SIGINT, lambda *_: c.stop())
    t = threading.Thread(target=c.run, name="collector")
    t.start()
    while t.is_alive():
        t.join(0.5)
    if a.stats_file:
        Path(a.stats_file).write_text(json.dumps(c.stats(), indent=2))
    return 0


def add_commands(sub: Any) -> None:
    """Register ``collect`` on the top-level subparsers."""
    c = sub.add_parser("collect", help="run a collector (MQTT -> InfluxDB)", description="Subscribe to gateway telemetry, validate it, write "
                       "InfluxDB through its v1 /write API, and publish each gateway's watermark. Settings come from --config "
                       "(collector TOML, docs/collector.md), then CARBONEDGE_COLLECTOR__SECTION__KEY environment variables, then the "
                       "flags below; a setting given nowhere takes its documented default.")
    c.add_argument("--config", type=InputFile("toml"), help="collector settings TOML (deploy/collector/collector.example.toml)")
    c.add_argument("--mqtt-host", help="MQTT broker host name or address (default: 127.0.0.1)")
    c.add_argument("--mqtt-port", type=Number(int, min=1, max=65535), help="MQTT broker port (default: 1883; 8883 with TLS)")
    c.add_argument("--influx-url", help="InfluxDB base URL (default: http://127.0.0.1:8086)")
    c.add_argument("--database", help="InfluxDB database (default: carbonedge)")
    c.add_argument("--state-dir", type=OutputDir(), help="watermarks, archive, dead letters and disk spool (default: /var/lib/carbonedge/collector)")
    c.add_argument("--client-id", help="MQTT client id, unique per collector (default: carbonedge-collector-1)")
    c.add_argument("--share-group", help="MQTT v5 shared-subscription group ('' for none; default: carbonedge)")
    c.add_argument("--metrics-port", type=Number(int, min=1, max=65535), help="serve Prometheus metrics on 127.0.0.1:PORT/metrics")
    c.add_argument("--known-devices", type=InputFile(), help="device registry (site/gateway/device per line, or a JSON list); others are dead-lettered")
    c.add_argument("--max-future", type=positive(), help="dead-letter readings more than this many seconds ahead (default 300)")
    c.add_argument("--max-past-days", type=positive(), help="dead-letter readings older than this many days (default: no limit)")
    c.add_argument("--gap-timeout", type=positive(), help="seconds a sequence hole may stay open before it is recorded as a gap (default 120)")
    c.add_argument("--spool-max-mb", type=positive(), help="disk spool limit while InfluxDB is down (default 10000 MB)")
    c.add_argument("--batch-max-delay", type=positive(), help="longest wait before a partial batch is written (s, default 0.5)")
    c.add_argument("--batch-min-delay", type=Number(min=0),
                   help="a partial batch is written once it is this old and nothing more is waiting (s, default 0.25)")
    c.add_argument("--stats-file", type=OutputFile(), help="write the collector's counters here on exit")
    add_influx_auth(c)
    c.add_argument("--mqtt-username", help="MQTT user for a broker with passwords; the password is read from $CARBONEDGE_MQTT_PASSWORD "
                   "(or [mqtt] password_file)")
    c.add_argument("--mqtt-tls-ca", type=InputFile(), help="plant CA certificate: connect to the broker over TLS")
    c.add_argument("--mqtt-tls-cert", type=InputFile(), help="this collector's client certificate (its CN is its MQTT identity)")
    c.add_argument("--mqtt-tls-key", type=InputFile(), help="the client certificate's private key")
    c.set_defaults(func=cmd_collect)
