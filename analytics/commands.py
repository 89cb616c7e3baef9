"""``carbonedge analyze monitor`` and ``carbonedge analyze enpi``: parsers and handlers.

Kept here (imports deferred to the handlers) so that ``carbonedge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def _ms(text: str) -> int:
    from carbonedge.clock import parse_time

    return int(parse_time(text) * 1000)


def _iso(ms: int | None) -> str:
    from carbonedge.clock import iso

    return iso(ms / 1000.0) if ms is not None else "—"


def _plant(path: str) -> Any:
    from carbonedge.plant import PlantModel

    return PlantModel.load(path)


def _auth(a: argparse.Namespace) -> tuple[str, str] | None:
    if not a.influx_user:
        return None
    return a.influx_user, os.environ.get("CARBONEDGE_INFLUX_PASSWORD", "")


def _broker(a: argparse.Namespace, *, client_id: str) -> Any:
    """The MQTT connection settings of ``--mqtt-*`` (password from --mqtt-password-file or $CARBONEDGE_MQTT_PASSWORD)."""
    from carbonedge.mqtt import BrokerSettings

    pw_file = Path(a.mqtt_password_file) if a.mqtt_password_file else None
    return BrokerSettings(host=a.mqtt_host, port=a.mqtt_port, client_id=client_id, username=a.mqtt_username or None,
                          password=None if pw_file else os.environ.get("CARBONEDGE_MQTT_PASSWORD"), password_file=pw_file,
                          ca_file=Path(a.mqtt_tls_ca) if a.mqtt_tls_ca else None, cert_file=Path(a.mqtt_tls_cert) if a.mqtt_tls_cert else None,
                          key_file=Path(a.mqtt_tls_key) if a.mqtt_tls_key else None)


def cmd_analyze_monitor(a: argparse.Namespace) -> int:
    from carbonedge.analytics.influx import InfluxReader
    from carbonedge.analytics.live import MonitorJob, Sinks, mqtt_client
    from carbonedge.analytics.monitor import MonitorSettings
    from carbonedge.errors import ConfigError

    plant = _plant(a.plant)
    site = a.site or plant.site
    if a.once and not a.end:
        raise ConfigError("--once needs --end (the monitor reads up to that time and stops)")
    if not a.once and not a.state:
        raise ConfigError("follow mode needs --state FILE, so that a restart continues where it stopped instead of raising alerts again")
    auth = _auth(a)
    reader = InfluxReader(a.influx_url, a.database, username=auth[0] if auth else None, password=auth[1] if auth else None)
    sinks = Sinks(influx_url=None if a.no_influx_alerts else a.influx_url, database=a.database, influx_auth=auth)
    if a.mqtt_host:
        sinks.mqtt = mqtt_client(_broker(a, client_id=f"carbonedge-monitor-{site}"))
    if a.grafana_url:
        from carbonedge.analytics.grafana import GrafanaClient

        token = os.environ.get("CARBONEDGE_GRAFANA_TOKEN")
        if not token:
            raise ConfigError("--grafana-url needs a token in CARBONEDGE_GRAFANA_TOKEN (a service-account token allowed to write annotations)")
        sinks.grafana = GrafanaClient(a.grafana_url, token)
    settings = MonitorSettings(learn_hours=a.learn_hours)
    job = MonitorJob(reader, plant, site=site, state_path=Path(a.state) if a.state else None, settings=settings, sinks=sinks)
    start = _ms(a.start) if a.start else None
    if job.watermark_ms is not None:
        print(f"resuming after {_iso(job.watermark_ms)} from {a.state}" + (" (--start ignored)" if a.start else ""))

    def report(s: Any) -> None:
        if s.cycles == 0:
            return
        print(f"{site}: {s.cycles:,} poll cycles {_iso(s.first_ms)} … {_iso(s.last_ms)}; alerts opened {s.opened}, updated {s.updated}, "
              f"resolved {s.resolved}" + ("" if s.learning_until_ms else f" (still learning normal operation: the first {settings.learn_hours:g} h)"))
        for e in s.events:
            if e.state in ("open", "resolved"):
                al = e.alert
                waste = f" [{al.wasted_kwh:,.0f} kWh]" if al.wasted_kwh else ""
                print(f"  {_iso(e.ts_ms)}  {e.state:8} {al.severity:8} {al.kind:16} {al.device or al.process}: {al.message}{waste}")
        sys.stdout.flush()

    try:
        if a.once:
            s = job.run_once(start, _ms(a.end))
            report(s)
            if s.cycles == 0:
                print(f"{site}: no new readings up to {a.end}" + (f" after {_iso(job.watermark_ms)}" if job.watermark_ms else ""))
            print(f"alerts delivered: InfluxDB {sinks.counts['influx']}, MQTT {sinks.counts['mqtt']}, Grafana {sinks.counts['grafana']}")
        else:
            stopping = {"flag": False}

            def stop(*_: Any) -> None:
                stopping["flag"] = True

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            print(f"monitoring {site} every {a.interval:g} s (readings older than {a.lag:g} s); state in {a.state}")
            job.follow(start, interval_s=a.interval, lag_s=a.lag, stop=lambda: stopping["flag"], on_summary=report)
    finally:
        if sinks.mqtt is not None:
            sinks.mqtt.disconnect()
            sinks.mqtt.loop_stop()
    return 0


def cmd_analyze_enpi(a: argparse.Namespace) -> int:
    from carbonedge.analytics.enpi import compute_enpi, write_enpi
    from carbonedge.analytics.influx import InfluxReader

    plant = _plant(a.plant)
    auth = _auth(a)
    reader = InfluxReader(a.influx_url, a.database, username=auth[0] if auth else None, password=auth[1] if auth else None)
    start, end = _ms(a.start), _ms(a.end)
    until = _ms(a.baseline_until) if a.baseline_until else start + int(a.baseline_days * 86_400_000)
    t0 = time.perf_counter()
    res = compute_enpi(reader, plant, start, end, baseline_until_ms=until, tz=a.tz, site=a.site)
    periods = tuple(a.period or ["hour", "day"])
    print(f"{res.site}: EnPIs per process {_iso(res.start_ms)} … {_iso(res.end_ms)} ({a.tz}); baseline period until {_iso(until)}, "
          "fit on hourly data (ASHRAE Guideline 14 hourly limits: CV(RMSE) ≤ 30 %, |NMBE| ≤ 10 %)")
    print(res.table())
    if not a.dry_run:
        n = write_enpi(res, a.influx_url, a.database, periods=periods, auth=auth)
        print(f"wrote {n:,} points to measurement enpi ({', '.join(periods)}) in {time.perf_counter() - t0:.1f} s")
    if a.json:
        Path(a.json).write_text(json.dumps({name: {"baseline": p.baseline.as_dict() if p.baseline else None, "note": p.note,
                                                   "fit_reporting": p.fit_reporting_period.as_dict() if p.fit_reporting_period else None}
                                            for name, p in res.processes.items()}, indent=2))
    return 0


def _influx_args(p: argparse.ArgumentParser) -> None:
    from carbonedge.argtypes import InputFile

    p.add_argument("--plant", type=InputFile("json"), required=True, help="plant model JSON (plant.json as written by `carbonedge sim` or `carbonedge generate`)")
    p.add_argument("--site", help="site tag of the readings (default: the plant model's site)")
    p.add_argument("--influx-url", default="http://127.0.0.1:8086")
    p.add_argument("--database", default="carbonedge")
    p.add_argument("--influx-user", help="InfluxDB user (password from $CARBONEDGE_INFLUX_PASSWORD)")


def add_analyze_commands(asub: Any) -> None:
    """Register ``monitor`` and ``enpi`` under ``carbonedge analyze``."""
    from carbonedge.argtypes import InputFile, Number, OutputFile, Time, positive

    m = asub.add_parser("monitor", help="live energy and meter-data alerts from InfluxDB readings (to InfluxDB, MQTT, Grafana)",
                        description="Read a site's readings from InfluxDB in order, check every poll cycle for energy drawn outside "
                        "the process's normal production state and for meter-data faults (stuck meters, counter resets, "
                        "communication loss, gateway clock jumps), and publish alert transitions (open, update, resolved) to the "
                        "InfluxDB measurement 'alerts', an MQTT topic and Grafana annotations. The first --learn-hours of readings "
                        "must be normal operation. With --once it reads --start … --end and stops; otherwise it follows new "
                        "readings every --interval seconds. --state keeps what it learned and how far it read, so a restart "
                        "neither relearns nor raises an alert twice.")
    _influx_args(m)
    m.add_argument("--start", type=Time(), help="first run: where to start reading (ISO 8601); later runs continue from the state file")
    m.add_argument("--end", type=Time(), help="with --once: read up to this time (ISO 8601)")
    m.add_argument("--once", action="store_true", help="read up to --end and stop (batch), instead of following new readings")
    m.add_argument("--state", type=OutputFile(), help="state file (learned model, open alerts, watermark); required to follow")
    m.add_argument("--interval", type=positive(), default=60.0, help="follow mode: seconds between reads (default: 60)")
    m.add_argument("--lag", type=Number(float, min=0), default=120.0, help="follow mode: read only readings older than this many seconds, "
                   "so that late deliveries from gateways are in first (default: 120)")
    m.add_argument("--learn-hours", type=positive(), default=24.0, help="hours of normal operation to learn from (default: 24)")
    m.add_argument("--no-influx-alerts", action="store_true", help="do not write alerts to InfluxDB")
    m.add_argument("--mqtt-host", help="publish alerts to this MQTT broker (topic carbonedge/v1/<site>/analytics/alerts)")
    m.add_argument("--mqtt-port", type=Number(int, min=1, max=65535), default=1883, help="MQTT port (default: 1883)")
    m.add_argument("--mqtt-username", help="MQTT user for a broker with passwords (password from --mqtt-password-file or "
                   "$CARBONEDGE_MQTT_PASSWORD); not needed with a client certificate")
    m.add_argument("--mqtt-password-file", type=InputFile(), help="file holding the MQTT password (first line; keep it mode 0600)")
    m.add_argument("--mqtt-tls-ca", type=InputFile(), help="plant CA certificate: connect to the broker over TLS")
    m.add_argument("--mqtt-tls-cert", type=InputFile(), help="this monitor's client certificate (deploy/pki/carbonedge-pki.sh analytics NAME)")
    m.add_argument("--mqtt-tls-key", type=InputFile(), help="the client certificate's private key")
    m.add_argument("--grafana-url", help="mirror alerts as Grafana annotations (token from $CARBONEDGE_GRAFANA_TOKEN)")
    m.set_defaults(func=cmd_analyze_monitor)

    e = asub.add_parser("enpi", help="hourly and daily EnPIs and ISO 50006 baselines per process, written to InfluxDB (measurement enpi)",
                        description="Compute per process and local hour: energy, production, SEC, the energy baseline (regression on "
                        "production and running hours, fitted on the baseline period), savings and CUSUM of savings; print each "
                        "baseline's ASHRAE Guideline 14 fit; write hour and day points to the InfluxDB measurement 'enpi' that the "
                        "Grafana dashboards plot. Running it again over the same period overwrites its points.")
    _influx_args(e)
    e.add_argument("--start", type=Time(), required=True, help="period start (ISO 8601); the first whole hour from here is used")
    e.add_argument("--end", type=Time(), required=True, help="period end (ISO 8601)")
    e.add_argument("--baseline-until", type=Time(), help="end of the baseline period (ISO 8601); default: --baseline-days after --start")
    e.add_argument("--baseline-days", type=positive(), default=1.0, help="length of the baseline period when --baseline-until is not given (default: 1)")
    e.add_argument("--tz", default="UTC", help="plant time zone for hours and days (IANA name, default: UTC)")
    e.add_argument("--period", action="append", choices=["hour", "day", "month"], help="periods to write (repeat; default: hour and day)")
    e.add_argument("--dry-run", action="store_true", help="print the table, write nothing")
    e.add_argument("--json", type=OutputFile(), help="also write each baseline's equation and fit to this JSON file")
    e.set_defaults(func=cmd_analyze_enpi)
