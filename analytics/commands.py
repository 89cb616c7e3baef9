"""The analytics commands: ``analyze`` (sec, detect, baseline, monitor, enpi), ``report``, ``grafana`` and ``pact``.

Parsers and handlers; every handler imports what it needs (numpy and the rest come with the ``analytics``
extra), so that building the command line stays fast and works on an installation without that extra.
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

from carbonedge.argtypes import InputFile, InputPath, Number, OutputDir, OutputFile, Time, add_influx_auth, influx_password
from carbonedge.clock import parse_time
from carbonedge.errors import CarbonEdgeError


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


#: ``analyze monitor`` flags that override a key of the monitor's settings file: (dest, keys, flag).
_MONITOR_FLAGS = (
    ("plant", ("monitor", "plant_file"), "--plant"), ("site", ("monitor", "site"), "--site"),
    ("state", ("monitor", "state_file"), "--state"), ("start", ("monitor", "start"), "--start"), ("learn_hours", ("monitor", "learn_hours"), "--learn-hours"),
    ("interval", ("monitor", "interval_s"), "--interval"), ("lag", ("monitor", "lag_s"), "--lag"),
    ("influx_url", ("influx", "url"), "--influx-url"), ("database", ("influx", "database"), "--database"),
    ("influx_user", ("influx", "username"), "--influx-user"), ("mqtt_host", ("mqtt", "host"), "--mqtt-host"),
    ("mqtt_port", ("mqtt", "port"), "--mqtt-port"), ("mqtt_username", ("mqtt", "username"), "--mqtt-username"),
    ("mqtt_password_file", ("mqtt", "password_file"), "--mqtt-password-file"), ("mqtt_tls_ca", ("mqtt", "tls", "ca_file"), "--mqtt-tls-ca"),
    ("mqtt_tls_cert", ("mqtt", "tls", "cert_file"), "--mqtt-tls-cert"), ("mqtt_tls_key", ("mqtt", "tls", "key_file"), "--mqtt-tls-key"),
    ("grafana_url", ("grafana", "url"), "--grafana-url"),
)


def monitor_config_from_args(a: argparse.Namespace, environ: Any = None) -> Any:
    """The monitor's settings: ``--config FILE`` (if given), then ``CARBONEDGE_MONITOR__…`` variables, then the flags given."""
    from carbonedge.analytics.monitor.config import load_monitor_config

    overrides = [(keys, getattr(a, dest), flag) for dest, keys, flag in _MONITOR_FLAGS if getattr(a, dest, None) is not None]
    if a.no_influx_alerts:
        overrides.append((("monitor", "influx_alerts"), False, "--no-influx-alerts"))
    return load_monitor_config(a.config, overrides=overrides, environ=environ)


def cmd_analyze_monitor(a: argparse.Namespace) -> int:
    from carbonedge.analytics.influx import InfluxReader
    from carbonedge.analytics.live import MonitorJob, Sinks, mqtt_client
    from carbonedge.analytics.monitor import MonitorSettings
    from carbonedge.errors import ConfigError

    if a.config is None and a.plant is None:
        raise ConfigError("give --plant FILE (the plant model) or --config FILE (the monitor's settings file, which names it)")
    cfg = monitor_config_from_args(a)
    m = cfg.monitor
    # Secrets from the environment only on a flags-only command line (the settings file names files for them).
    env = os.environ if a.config is None else {}
    plant = _plant(str(m.plant_file))
    site = m.site or plant.site
    if a.once and not a.end:
        raise ConfigError("--once needs --end (the monitor reads up to that time and stops)")
    if not a.once and not m.state_file:
        raise ConfigError("follow mode needs --state FILE (or monitor.state_file in the settings file), so that a restart continues where "
                          "it stopped instead of raising alerts again")
    auth = cfg.influx_auth(environ=env)
    influx_url = str(cfg.influx.url).rstrip("/")
    reader = InfluxReader(influx_url, cfg.influx.database, username=auth[0] if auth else None, password=auth[1] if auth else None)
    sinks = Sinks(influx_url=influx_url if m.influx_alerts else None, database=cfg.influx.database, influx_auth=auth)
    broker = cfg.broker(site, environ=env)
    if cfg.grafana.url:
        token = cfg.grafana_token(environ=os.environ if a.config is None else {})
        if not token:
            raise ConfigError("--grafana-url needs a token: grafana.token_file in the settings file, or CARBONEDGE_GRAFANA_TOKEN with flags "
                              "only (a service-account token allowed to write annotations)")
    if broker is not None:
        sinks.mqtt = mqtt_client(broker)
    if cfg.grafana.url:
        from carbonedge.analytics.grafana import GrafanaClient

        sinks.grafana = GrafanaClient(str(cfg.grafana.url).rstrip("/"), token)
    settings = MonitorSettings(learn_hours=m.learn_hours)
    state = m.state_file
    a.interval, a.lag, a.state, a.start = m.interval_s, m.lag_s, str(state) if state else None, m.start
    job = MonitorJob(reader, plant, site=site, state_path=Path(state) if state else None, settings=settings, sinks=sinks)
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


def _influx_args(p: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """``defaults=False``: the flags default to None, so that only those given override a settings file."""
    from carbonedge.argtypes import InputFile

    p.add_argument("--plant", type=InputFile("json"), required=defaults, help="plant model JSON (plant.json as written by `carbonedge sim` or `carbonedge generate`)")
    p.add_argument("--site", help="site tag of the readings (default: the plant model's site)")
    p.add_argument("--influx-url", default="http://127.0.0.1:8086" if defaults else None, help="default: http://127.0.0.1:8086")
    p.add_argument("--database", default="carbonedge" if defaults else None, help="default: carbonedge")
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
                        "neither relearns nor raises an alert twice. Settings can come from a file (--config; checked by "
                        "`carbonedge config check`), with CARBONEDGE_MONITOR__<SECTION>__<KEY> variables and these flags over it.")
    m.add_argument("--config", type=InputFile("toml"), help="the monitor's settings file (deploy/analytics/monitor.example.toml); "
                   "the flags below override it")
    _influx_args(m, defaults=False)
    m.add_argument("--start", type=Time(), help="first run: where to start reading (ISO 8601); later runs continue from the state file")
    m.add_argument("--end", type=Time(), help="with --once: read up to this time (ISO 8601)")
    m.add_argument("--once", action="store_true", help="read up to --end and stop (batch), instead of following new readings")
    m.add_argument("--state", type=OutputFile(), help="state file (learned model, open alerts, watermark); required to follow")
    m.add_argument("--interval", type=positive(), help="follow mode: seconds between reads (default: 60)")
    m.add_argument("--lag", type=Number(float, min=0), help="follow mode: read only readings older than this many seconds, "
                   "so that late deliveries from gateways are in first (default: 120)")
    m.add_argument("--learn-hours", type=positive(), help="hours of normal operation to learn from (default: 24)")
    m.add_argument("--no-influx-alerts", action="store_true", help="do not write alerts to InfluxDB")
    m.add_argument("--mqtt-host", help="publish alerts to this MQTT broker (topic carbonedge/v1/<site>/analytics/alerts)")
    m.add_argument("--mqtt-port", type=Number(int, min=1, max=65535), help="MQTT port (default: 1883)")
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


# --------------------------------------------------------------------------- analyze sec/detect/baseline, report, grafana


def cmd_analyze_sec(a: argparse.Namespace) -> int:
    from carbonedge.analytics import InfluxReader, energy_intensity
    from carbonedge.plant import PlantModel

    plant = PlantModel.load(a.plant)
    figs = energy_intensity(InfluxReader(a.influx_url, a.database, username=a.influx_user, password=influx_password(a)), plant, int(parse_time(a.start) * 1000), int(parse_time(a.end) * 1000))
    if a.json:
        print(json.dumps(figs.as_dict(), indent=2))
    else:
        from carbonedge.analytics.sec_table import sec_table

        print(sec_table(figs.as_dict()))
    return 0


def cmd_analyze_detect(a: argparse.Namespace) -> int:
    from carbonedge.analytics.detect import DetectorSettings
    from carbonedge.analytics.offline import InputError, detect_csv, table_columns

    time_col, value_cols = a.time_col, a.value_col
    if not time_col or not value_cols:
        header = table_columns(Path(a.csv), delimiter=a.delimiter)
        time_col = time_col or header[0]
        value_cols = value_cols or [c for c in header if c != time_col and c not in a.context_col]
        if not value_cols:
            raise InputError(f"{a.csv}: no column to watch besides the time column {time_col!r}")
        print(f"{a.csv}: time column {time_col!r}; watching {', '.join(repr(c) for c in value_cols)}")
    settings = DetectorSettings(learn_rows=a.learn_rows, smoothing=a.smoothing, margin=a.margin,
                                accept_after_h=a.accept_after, level_halflife_h=a.level_halflife)
    summary = detect_csv(
        Path(a.csv), Path(a.out), time_col=time_col, value_cols=value_cols, context_cols=a.context_col,
        settings=settings, learn_until=parse_time(a.learn_until) if a.learn_until else None, tz=a.tz, progress=lambda n: print(f"  {n:,} rows scored", file=sys.stderr),
        date_format=a.date_format, decimal=a.decimal, delimiter=a.delimiter, counters=a.counters,
    )
    print(f"{a.csv}: {summary.rows:,} rows; warm-up on the first {summary.learning_rows:,} (learning continues after it); "
          f"{summary.alert_rows:,} rows above the alert threshold in {summary.alert_episodes:,} episode(s). Scores written to {a.out}")
    for note in summary.notes:
        print(f"note: {note}")
    return 0


def cmd_analyze_baseline(a: argparse.Namespace) -> int:
    from carbonedge.analytics.offline import InputError, baseline_csv, format_baseline, parse_timestamp

    def when(text: str | None, flag: str) -> float | None:
        if not text:
            return None
        try:
            return parse_timestamp(text, a.tz)  # a naive time is plant time (--tz)
        except ValueError as e:
            raise InputError(f"{flag} {text!r} is not a time: {e}") from None

    rep = baseline_csv(
        Path(a.csv), time_col=a.time_col, target=a.target, features=a.feature, mean_features=a.mean_feature,
        train_until=when(a.train_until, "--train-until"), aggregate=a.aggregate, tz=a.tz, out=Path(a.out) if a.out else None,
        change_point=not a.linear, categories=a.category, model=a.model, holidays=a.holidays, operating_days=a.operating_days,
        stamps=a.stamps, date_format=a.date_format, decimal=a.decimal, delimiter=a.delimiter,
        train_from=when(a.train_from, "--train-from"),
    )
    if a.json:
        print(json.dumps(rep.as_dict(), indent=2))
    else:
        print(format_baseline(rep, a.target), end="")
        if a.out:
            print(f"Per-row expected energy, naive reference, residual and CUSUM written to {a.out}")
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from carbonedge.analytics import InfluxReader
    from carbonedge.analytics.carbon import default_settings, from_csv_dir, from_influx, from_meter_csv, load_settings, write_carbon
    from carbonedge.analytics.report import build_report

    start = parse_time(a.start) if a.start else None
    end = parse_time(a.end) if a.end else None
    carbon = load_settings(Path(a.carbon)) if a.carbon else None  # a bad settings file fails before InfluxDB is asked
    if a.csv and Path(a.csv).is_file():
        data = from_meter_csv(Path(a.csv), energy_mode=a.energy, value_col=a.value_col, site=a.site, start=start, end=end, tz=a.tz, announce=print,
                              stamps=a.stamps, date_format=a.date_format, decimal=a.decimal)
    elif a.csv:
        data = from_csv_dir(Path(a.csv), start=start, end=end, energy_mode=a.energy or "counter", tz=a.tz, stamps=a.stamps,
                            date_format=a.date_format, decimal=a.decimal, announce=print)
        if a.site:
            data.plant = data.plant.with_site(a.site)
    else:
        if not a.plant or start is None or end is None:
            raise CarbonEdgeError("a report from InfluxDB needs --plant FILE, --from and --to (or --csv DIR for an offline export)")
        from carbonedge.plant import PlantModel

        plant = PlantModel.load(a.plant)
        if a.site:
            plant = plant.with_site(a.site)
        print(f"Reading {plant.site} from InfluxDB {a.influx_url} ({a.database}) ...", flush=True)
        data = from_influx(InfluxReader(a.influx_url, a.database, username=a.influx_user, password=influx_password(a)), plant, start, end)
    settings = carbon if carbon is not None else default_settings(data.plant)
    if a.grid_factor:
        from carbonedge.analytics.carbon.settings import with_grid_factor

        settings, note = with_grid_factor(settings, a.grid_factor)
        if note:
            print(note)
    if a.pact_db:
        from carbonedge.analytics.pact.commands import purchased_settings

        settings = purchased_settings(settings, a.pact, a.pact_db)
    baseline = (parse_time(a.baseline_from), parse_time(a.baseline_to)) if a.baseline_from and a.baseline_to else None
    write = None
    if not a.csv and not a.no_write_back:
        def write(acc):  # type: ignore[no-untyped-def]
            return write_carbon(acc, a.influx_url, a.database, auth=(a.influx_user, influx_password(a) or "") if a.influx_user else None)
    res = build_report(data, settings, Path(a.out), baseline=baseline, progress=lambda m: print(m, flush=True), influx_write=write)
    em = res.report["emissions"]
    print(f"Scope 1: {em['scope1_t']:,.1f} t CO2   scope 2 location-based: {em['scope2_location_t']:,.1f} t   market-based: "
          f"{em['scope2_market_t']:,.1f} t   hints: {len(res.report['hints'])}")
    print(f"Report: {res.html}   data: {res.json}" + (f"   exports: {', '.join(p.name for p in res.exports)}" if res.exports else ""))
    return 0


def _grafana_ds(a: argparse.Namespace):  # type: ignore[no-untyped-def]
    from carbonedge.analytics.grafana import DatasourceSettings

    return DatasourceSettings(url=a.influx_url, database=a.database, user=a.influx_user)


def cmd_grafana_export(a: argparse.Namespace) -> int:
    from carbonedge.analytics.grafana import export

    files = export(Path(a.out), _grafana_ds(a), dashboards_path=a.dashboards_path)
    for f in files:
        print(f"wrote {f}")
    print(f"{sum(1 for f in files if f.suffix == '.json')} dashboards and 2 provisioning files in {a.out}")
    return 0


def cmd_grafana_push(a: argparse.Namespace) -> int:
    import os

    from carbonedge.analytics.grafana import GrafanaClient, dashboards_json, push_dashboards

    token = a.token or os.environ.get("CARBONEDGE_GRAFANA_TOKEN")
    if not token:
        raise CarbonEdgeError("no Grafana token: pass --token or set CARBONEDGE_GRAFANA_TOKEN (a service-account token with the Editor role)")
    client = GrafanaClient(a.url, token, verify=a.cafile or True)
    version = client.health().get("version", "?")
    password = os.environ.get(a.influx_password_env)
    ds = _grafana_ds(a).datasource(password=password) if password is not None else None
    urls = push_dashboards(client, dashboards_json(), datasource=ds)
    print(f"Grafana {version} at {a.url}: " + ("data source updated, " if ds else f"data source left as is (${a.influx_password_env} not set), ")
          + f"{len(urls)} dashboards pushed")
    for u in urls:
        print(f"  {a.url.rstrip('/')}{u}")
    return 0


def cmd_grafana_check(a: argparse.Namespace) -> int:
    import os

    from carbonedge.analytics.grafana import InfluxQL, build_dashboards, check_dashboards

    db = InfluxQL(a.influx_url, a.database, username=a.influx_user or None, password=os.environ.get(a.influx_password_env))
    end = parse_time(a.end) if a.end else __import__("time").time()
    start = parse_time(a.start) if a.start else end - 86400
    report = check_dashboards(build_dashboards(), db, int(start * 1000), int(end * 1000))
    bad = 0
    for r in report.results:
        state = "ok" if r.rows else ("error" if r.error else ("empty (expected: " + r.may_be_empty + ")" if r.may_be_empty else "NO ROWS"))
        if not r.ok:
            bad += 1
        print(f"{r.dashboard:22} {r.panel[:48]:48} {r.ref_id:1} {','.join(sorted(r.measurements)):15} {r.rows:6} {state}"
              + (f"\n    {r.error}" if r.error else ""))
    print(f"{len(report.results) - bad} of {len(report.results)} queries returned rows or may be empty; {bad} did not")
    return 0 if bad == 0 else 1


def add_commands(sub: Any) -> None:
    """Register ``analyze``, ``pact``, ``report`` and ``grafana`` on the top-level subparsers."""
    an = sub.add_parser("analyze", help="energy analytics: from InfluxDB (sec, monitor, enpi) or CSV exports (detect, baseline)",
                        description="Energy analytics. sec, monitor and enpi read InfluxDB; detect and baseline read CSV exports.")
    asub = an.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    sec = asub.add_parser("sec", help="energy, production and SEC per process over a period",
                          description="Energy, production and specific energy consumption (SEC) per process and for the plant over a "
                          "period, from the readings in InfluxDB and the plant model.")
    sec.add_argument("--plant", type=InputFile("json"), required=True, help="plant model JSON (as written by `carbonedge sim`)")
    sec.add_argument("--influx-url", default="http://127.0.0.1:8086")
    add_influx_auth(sec)
    sec.add_argument("--database", default="carbonedge")
    sec.add_argument("--start", type=Time(), required=True, help="period start, ISO 8601")
    sec.add_argument("--end", type=Time(), required=True, help="period end, ISO 8601")
    sec.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sec.set_defaults(func=cmd_analyze_sec)

    det = asub.add_parser("detect", help="causal anomaly scores for a CSV export (any time,value CSV; no tuning needed)",
                          description="Score every row of a CSV export for anomalies, causally and in file order: a row's score depends "
                          "only on that row and the rows before it. The detector learns continuously: the expected level follows slow "
                          "change, daily and weekly profiles are found on their own, and a change that keeps alerting for --accept-after "
                          "hours becomes the new normal. Times that go back or repeat (DST, clock steps) are counted, not refused. "
                          "Writes time, score in [0, 1] (0.5 = alert threshold), alert flag, state and the column that contributes most. "
                          "Methods and their limits: docs/analytics.md.")
    det.add_argument("--csv", required=True, type=InputFile(), help="input CSV (comma, semicolon or tab separated, header row)")
    det.add_argument("--time-col", help="time column: ISO 8601 or epoch seconds/ms (default: the first column)")
    det.add_argument("--value-col", action="append", help="column to watch (repeat for several; default: every other column)")
    det.add_argument("--context-col", action="append", default=[], help="production-state column that explains the values, "
                     "e.g. production rate or running flag (repeat for several)")
    det.add_argument("--out", required=True, type=OutputFile(), help="output CSV")
    det.add_argument("--learn-rows", type=Number(int, min=10), default=400, help="warm-up rows before scores are given (default: 400)")
    det.add_argument("--learn-until", type=Time(), help="warm up on the rows before this time instead (ISO 8601)")
    det.add_argument("--smoothing", type=Number(float, above=0, max=1), default=0.2, help="weight of the newest row in the sustained statistic, (0, 1] (default: 0.2)")
    det.add_argument("--margin", type=Number(float, above=0), default=1.5, help="alert threshold as a multiple of the statistic's 99.9th percentile "
                     "over normal rows (default: 1.5)")
    det.add_argument("--accept-after", type=Number(float, above=0), default=1.0, help="hours of continuous alert after which a change is the new normal (default: 1)")
    det.add_argument("--level-halflife", type=Number(float, above=0), default=6.0, help="hours: how fast the expected level follows slow change (default: 6)")
    det.add_argument("--tz", default="UTC", help="time zone of naive times in the file (default: UTC)")
    det.add_argument("--date-format", help="dd/mm/yyyy, mm/dd/yyyy, dd.mm.yyyy, iso or a strptime pattern (default: detected and announced)")
    det.add_argument("--decimal", choices=[".", ","], help="decimal mark of the numbers (default: detected and announced)")
    det.add_argument("--delimiter", help="field separator (default: sniffed from the header: comma, semicolon or tab)")
    det.add_argument("--counters", choices=["auto", "off"], default="auto", help="auto: a column that only rises is a cumulative counter and its rate is watched (announced); off: watch every column as it is")
    det.set_defaults(func=cmd_analyze_detect)

    bl = asub.add_parser("baseline", help="energy baseline (time-of-week or ISO 50006 regression) with ASHRAE 14 fit for a CSV export",
                         description="Fit an energy baseline of --target over the rows before --train-until and print CV(RMSE), NMBE and R² "
                         "in sample, by blocked (time-ordered) cross-validation and on the later rows, each beside the naive reference "
                         "(the training mean by operating day, weekday and time of day) and against the ASHRAE Guideline 14 limit of that "
                         "resolution. The default model for 15-min to daily data is time of week (LBNL TOWT family): operating days, "
                         "public holidays, time of day x day type, --feature variables as straight lines, --mean-feature variables such as "
                         "outdoor temperature in temperature segments, --category columns one-hot; predictions are never negative.")
    bl.add_argument("--csv", required=True, type=InputFile(), help="input CSV (comma, semicolon or tab separated, header row)")
    bl.add_argument("--time-col", required=True)
    bl.add_argument("--target", required=True, help="energy column (per-interval consumption, not a cumulative counter)")
    bl.add_argument("--feature", action="append", default=[], help="relevant variable summed per period, e.g. production (repeat)")
    bl.add_argument("--mean-feature", action="append", default=[], help="relevant variable averaged per period, e.g. outdoor temperature (repeat)")
    bl.add_argument("--category", action="append", default=[], help="text or code column used as categories, e.g. a tariff period or shift (repeat)")
    bl.add_argument("--model", choices=["auto", "time-of-week", "regression"], default="auto",
                    help="auto (default): time of week for 15-min to daily data, regression on the variables for weekly and monthly")
    bl.add_argument("--holidays", help="public-holiday calendar, ISO 3166 country or country-region code (DE, DE-BY, KR, US-CA)")
    bl.add_argument("--operating-days", choices=["auto", "calendar", "energy", "off"], default="auto",
                    help="auto/calendar: which weekdays and holidays the plant operates, learned from the training period; "
                    "energy: each day classed by its own metered level; off: all days alike")
    bl.add_argument("--linear", action="store_true", help="straight lines only for the --mean-feature variables (no change points or segments)")
    bl.add_argument("--train-until", required=True, type=Time(), help="end of the baseline period (ISO 8601, naive = --tz); later rows are the reporting period")
    bl.add_argument("--train-from", type=Time(), help="start of the baseline period (ISO 8601, naive = --tz); earlier rows are left out")
    bl.add_argument("--aggregate", choices=["hour", "day", "week", "month"], help="sum rows into local periods before fitting")
    bl.add_argument("--tz", default="UTC", help="plant time zone for naive times and period boundaries (default: UTC)")
    bl.add_argument("--stamps", choices=["auto", "start", "end"], default="auto",
                    help="whether a row's time marks the start or the end of its interval (auto: end when the first stamp is one step "
                    "after midnight and the last at midnight; announced)")
    bl.add_argument("--date-format", help="dd/mm/yyyy, mm/dd/yyyy, dd.mm.yyyy, iso or a strptime pattern (default: detected and announced)")
    bl.add_argument("--decimal", choices=[".", ","], help="decimal mark of the numbers (default: detected and announced)")
    bl.add_argument("--delimiter", help="field separator (default: sniffed from the header: comma, semicolon or tab)")
    bl.add_argument("--out", type=OutputFile(), help="write per-row expected energy, naive reference, residual and CUSUM of savings here")
    bl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bl.set_defaults(func=cmd_analyze_baseline)
    add_analyze_commands(asub)
    from carbonedge.analytics.pact.commands import add_commands as add_pact_commands  # carbonedge pact ...

    add_pact_commands(sub)

    rp = sub.add_parser("report", help="carbon and optimisation report (HTML, report.json, CBAM / battery exports)",
                        description="Scope 1/2 carbon accounts per meter, process and product, product footprints, EU CBAM (steel) or EU Battery "
                        "Regulation (cells) exports validated against their schemas, calibrated process models and ranked optimisation hints. "
                        "Writes report.html (self-contained), report.json and the exports into --out, and hourly CO2 back to InfluxDB.")
    rp.add_argument("--plant", type=InputFile("json"), help="plant model JSON (as written by `carbonedge sim`)")
    rp.add_argument("--site", help="site tag in InfluxDB (default: the plant model's site)")
    rp.add_argument("--from", dest="start", type=Time(), help="period start, ISO 8601")
    rp.add_argument("--to", dest="end", type=Time(), help="period end, ISO 8601")
    rp.add_argument("--out", type=OutputDir(), required=True, help="output directory")
    rp.add_argument("--carbon", type=InputFile("toml"), help="carbon and tariff settings TOML (factors, instruments, products, tariff); default: documented defaults")
    rp.add_argument("--baseline-from", type=Time(), help="start of the period the process models are calibrated on (default: first third, >= 24 h)")
    rp.add_argument("--baseline-to", type=Time(), help="end of the baseline period")
    rp.add_argument("--csv", type=InputPath(), help="read an offline export directory (plant.json + <device>.csv), or one meter's time,kWh CSV file, instead of InfluxDB")
    rp.add_argument("--energy", choices=["counter", "interval"], help="the CSV's energy columns hold cumulative meter readings (counter, the "
                    "default for a directory) or each row's consumption (interval); for one file, detected and announced when not given")
    rp.add_argument("--value-col", help="the energy column (kWh) of a one-meter CSV file that has more than one")
    rp.add_argument("--grid-factor", help="emission factor id for scope 2 location-based, e.g. eu27.grid.eea.2023 (default: the settings')")
    rp.add_argument("--stamps", choices=["end", "start"], default="end", help="with --energy interval: a row's time is the end "
                    "(default) or the start of its interval")
    rp.add_argument("--tz", default="UTC", help="time zone of naive times in the CSV (default: UTC)")
    rp.add_argument("--date-format", help="dates in the CSV: dd/mm/yyyy, mm/dd/yyyy, dd.mm.yyyy, iso or a strptime pattern (default: detected and announced)")
    rp.add_argument("--decimal", choices=[".", ","], help="decimal mark of the CSV's numbers (default: detected and announced)")
    rp.add_argument("--influx-url", default="http://127.0.0.1:8086")
    add_influx_auth(rp)
    rp.add_argument("--database", default="carbonedge")
    rp.add_argument("--no-write-back", action="store_true", help="do not write hourly CO2 to InfluxDB (measurement carbon)")
    rp.add_argument("--pact-db", help="use suppliers' PACT footprints fetched into this database (`carbonedge pact fetch`) for the materials "
                    "mapped in --pact")
    rp.add_argument("--pact", help="PACT settings TOML ([[purchased]] maps materials to suppliers' product ids)")
    rp.set_defaults(func=cmd_report)

    gf = sub.add_parser("grafana", help="Grafana dashboards: export provisioning files, push to Grafana, check queries")
    gsub = gf.add_subparsers(dest="grafana_cmd", required=True, metavar="ACTION")
    for name, helptext in (("export", "write dashboards JSON and provisioning YAML into a directory"),
                           ("push", "create or update the data source, folder and dashboards in a running Grafana"),
                           ("check", "run every dashboard query against InfluxDB and report which return rows")):
        g = gsub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        g.add_argument("--influx-url", default="http://127.0.0.1:8086", help="InfluxDB as Grafana reaches it (default: http://127.0.0.1:8086)")
        g.add_argument("--database", default="carbonedge")
        g.add_argument("--influx-user", default="grafana", help="read-only InfluxDB user of the data source (default: grafana)")
        g.add_argument("--influx-password-env", default="CARBONEDGE_GRAFANA_INFLUX_PASSWORD",
                       help="environment variable holding that user's password (default: CARBONEDGE_GRAFANA_INFLUX_PASSWORD)")
        if name == "export":
            g.add_argument("--out", type=OutputDir(), required=True, help="output directory, e.g. deploy/grafana")
            g.add_argument("--dashboards-path", help="where Grafana will read the dashboard JSON (default: OUT/dashboards, absolute)")
            g.set_defaults(func=cmd_grafana_export)
        elif name == "push":
            g.add_argument("--url", required=True, help="Grafana base URL, e.g. https://grafana.plant.example:3000")
            g.add_argument("--token", help="service-account token (default: $CARBONEDGE_GRAFANA_TOKEN; avoid putting it on the command line)")
            g.add_argument("--cafile", type=InputFile(), help="CA certificate to verify Grafana's TLS certificate")
            g.set_defaults(func=cmd_grafana_push)
        else:
            g.add_argument("--start", type=Time(), help="start of the range, ISO 8601 (default: 24 h before --end)")
            g.add_argument("--end", type=Time(), help="end of the range, ISO 8601 (default: now)")
            g.set_defaults(func=cmd_grafana_check)
