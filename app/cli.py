"""The ``carbonedge`` command.

Subcommands: ``demo`` (the whole pipeline on a simulated plant), ``sim`` (serve a
simulated plant over Modbus TCP), ``edge`` (run a gateway), ``collect`` (run a
collector), ``analyze`` (energy intensity from InfluxDB), ``config check``.
Each process package is imported only by its own subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from carbonedge.argtypes import Duration, InputDir, InputFile, InputPath, Number, OneLineParser, OutputDir, OutputFile, Time, positive
from carbonedge.clock import make_clock, parse_time
from carbonedge.errors import CarbonEdgeError

log = logging.getLogger("carbonedge")


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class _ScenarioName:
    """A bundled scenario name (steel-default, ...) or a scenario TOML file."""

    __name__ = "scenario"

    def __call__(self, value: str) -> str:
        p = Path(value)
        if p.exists():
            return InputFile("toml")(value)
        from carbonedge.simulators.scenario import bundled_scenarios

        names = bundled_scenarios()
        if value not in names:
            raise argparse.ArgumentTypeError(f"no scenario file {value!r} and no bundled scenario of that name; bundled: {', '.join(names)}")
        return value

    def good_value(self, tmp: Path) -> str:
        return "steel-default"

    def bad_values(self, tmp: Path) -> list[str]:
        (tmp / "a-directory").mkdir(exist_ok=True)
        (tmp / "broken.toml").write_text("[gateway\nsite = \n")
        return ["no-such-scenario", str(tmp / "broken.toml"), str(tmp / "a-directory")]


_scenario = _ScenarioName()


def cmd_sim(a: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    from carbonedge.clock import ClockSpec, VirtualClock, WallClock
    from carbonedge.simulators import Scenario, Simulation, load_scenario, run

    if a.scenario:
        sc = load_scenario(a.scenario)
    else:
        sc = Scenario(plant=a.plant or "steel", start=float(int(time.time())), speed=1.0)
    if a.plant and a.plant != sc.plant:
        sc = replace(sc, plant=a.plant)
    if a.seed is not None:
        sc = replace(sc, seed=a.seed)
    if a.duration is not None:
        sc = replace(sc, duration_s=a.duration)
    if a.start:
        sc = replace(sc, start=parse_time(a.start))
    if a.clock:
        spec = ClockSpec.parse(a.clock)
        if not a.start:
            sc = replace(sc, start=spec.start)
        clock: Any = VirtualClock(spec)
    elif sc.speed != 1.0:
        clock = VirtualClock(ClockSpec(start=sc.start, speed=sc.speed, origin=time.time()))
    else:
        clock = WallClock()
    site = a.site or (sc.site if a.scenario else f"demo-{sc.plant}")
    poll = a.poll_interval if a.poll_interval is not None else sc.poll_interval_s
    sim = Simulation.from_scenario(sc)
    truth = asyncio.run(run(sim, clock, Path(a.out), site=site, gateway=a.gateway, poll_interval_s=poll, sync_start=a.sync_start,
                       plc_protocol=a.plc_protocol))
    print(json.dumps(truth["plant_total"]))
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from carbonedge.simulators.offline import main_generate

    summary = main_generate(a.scenario, a.out, poll_interval_s=a.poll_interval)
    print(f"{summary['scenario']}: {summary['devices']} devices, {summary['rows']:,} readings, {summary['faults']} labelled fault(s); "
          f"plant energy {summary['plant_energy_kwh']:,.0f} kWh for {summary['plant_production']:,.1f} {summary['production_unit']} "
          f"({summary['seconds']:g} s). Written to {summary['out']}")
    return 0


def cmd_edge(a: argparse.Namespace) -> int:
    from carbonedge.edge import Agent, load_config
    from carbonedge.edge.agent import write_stats

    cfg = load_config(a.config)
    if a.mqtt_host:
        cfg.mqtt.host = a.mqtt_host
    if a.mqtt_port:
        cfg.mqtt.port = a.mqtt_port
    agent = Agent(cfg, clock=make_clock(a.clock), data_dir=Path(a.data_dir) if a.data_dir else None)
    until = parse_time(a.until) if a.until else None
    stats = asyncio.run(agent.run(until=until, exit_when_drained=a.exit_when_drained))
    if a.stats_file:
        write_stats(Path(a.stats_file), stats)
    log.info("gateway stopped: %s", stats)
    return 0


def _file_arg(value: str | None, flag: str) -> Path | None:
    if not value:
        return None
    if not Path(value).is_file():
        raise CarbonEdgeError(f"{flag} {value}: no such file")
    return Path(value)


def _influx_password(a: argparse.Namespace) -> str | None:
    """The InfluxDB password for ``--influx-user``, from ``$CARBONEDGE_INFLUX_PASSWORD`` (never the command line)."""
    if not getattr(a, "influx_user", None):
        return None
    pw = os.environ.get("CARBONEDGE_INFLUX_PASSWORD")
    if pw is None:
        raise CarbonEdgeError(f"--influx-user {a.influx_user} needs its password in the environment variable CARBONEDGE_INFLUX_PASSWORD")
    return pw


def _add_influx_auth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--influx-user", help="InfluxDB user when authentication is on; its password is read from $CARBONEDGE_INFLUX_PASSWORD")


def cmd_collect(a: argparse.Namespace) -> int:
    import signal

    from carbonedge.collector import Collector, CollectorSettings

    from carbonedge.collector import load_device_registry

    s = CollectorSettings(
        mqtt_host=a.mqtt_host, mqtt_port=a.mqtt_port, influx_url=a.influx_url, database=a.database,
        state_dir=Path(a.state_dir), client_id=a.client_id, share_group=a.share_group or None,
        metrics_port=a.metrics_port, gap_timeout_s=a.gap_timeout, max_future_s=a.max_future,
        max_past_s=a.max_past_days * 86400 if a.max_past_days else None, spool_max_bytes=int(a.spool_max_mb * 1e6),
        known_devices=load_device_registry(Path(a.known_devices)) if a.known_devices else None,
        batch_max_delay_s=a.batch_max_delay,
        mqtt_username=a.mqtt_username or None, mqtt_password=os.environ.get("CARBONEDGE_MQTT_PASSWORD") if a.mqtt_username else None,
        mqtt_tls_ca=_file_arg(a.mqtt_tls_ca, "--mqtt-tls-ca"), mqtt_tls_cert=_file_arg(a.mqtt_tls_cert, "--mqtt-tls-cert"),
        mqtt_tls_key=_file_arg(a.mqtt_tls_key, "--mqtt-tls-key"),
        influx_username=a.influx_user or None, influx_password=_influx_password(a),
    )
    c = Collector(s)
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


def cmd_analyze_sec(a: argparse.Namespace) -> int:
    from carbonedge.analytics import InfluxReader, energy_intensity

    plant = json.loads(Path(a.plant).read_text())
    figs = energy_intensity(InfluxReader(a.influx_url, a.database, username=a.influx_user, password=_influx_password(a)), plant, int(parse_time(a.start) * 1000), int(parse_time(a.end) * 1000))
    if a.json:
        print(json.dumps(figs.as_dict(), indent=2))
    else:
        from carbonedge.app.report import sec_table

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
            data.plant["site"] = a.site
    else:
        if not a.plant or start is None or end is None:
            raise CarbonEdgeError("a report from InfluxDB needs --plant FILE, --from and --to (or --csv DIR for an offline export)")
        plant = json.loads(Path(a.plant).read_text())
        if a.site:
            plant["site"] = a.site
        print(f"Reading {plant['site']} from InfluxDB {a.influx_url} ({a.database}) ...", flush=True)
        data = from_influx(InfluxReader(a.influx_url, a.database, username=a.influx_user, password=_influx_password(a)), plant, start, end)
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
            return write_carbon(acc, a.influx_url, a.database, auth=(a.influx_user, _influx_password(a) or "") if a.influx_user else None)
    res = build_report(data, settings, Path(a.out), baseline=baseline, progress=lambda m: print(m, flush=True), influx_write=write)
    em = res.report["emissions"]
    print(f"Scope 1: {em['scope1_t']:,.1f} t CO2   scope 2 location-based: {em['scope2_location_t']:,.1f} t   market-based: "
          f"{em['scope2_market_t']:,.1f} t   hints: {len(res.report['hints'])}")
    print(f"Report: {res.html}   data: {res.json}" + (f"   exports: {', '.join(p.name for p in res.exports)}" if res.exports else ""))
    return 0


def cmd_config_check(a: argparse.Namespace) -> int:
    from carbonedge.app.commission import config_check

    return config_check(a.file)


def cmd_demo(a: argparse.Namespace) -> int:
    from carbonedge.app.demo import run_demo

    plant, seed = a.plant, a.seed
    if a.scenario:
        from carbonedge.simulators import load_scenario

        sc = load_scenario(a.scenario)
        if a.plant and a.plant != sc.plant:
            raise CarbonEdgeError(f"--plant {a.plant} contradicts scenario {a.scenario}, which is a {sc.plant} plant")
        plant, seed = sc.plant, a.seed if a.seed is not None else sc.seed
    summary = run_demo(plant=plant or "steel", hours=a.hours, speed=a.speed, seed=7 if seed is None else seed, out=Path(a.out),
                       poll_interval_s=a.poll_interval, scenario=a.scenario)
    ok = summary["lost"] == 0 and summary["readings_in_influxdb"] == summary["readings_published"]
    return 0 if ok else 1


def cmd_verify(a: argparse.Namespace) -> int:
    from carbonedge.integrity import TrustStore
    from carbonedge.verify import format_report, verify

    trust = TrustStore.load(Path(a.trust))
    start = int(parse_time(a.start) * 1000) if a.start else None
    end = int(parse_time(a.end) * 1000) if a.end else None
    print(f"Verifying {', '.join(a.state_dir)}" + (f" against InfluxDB {a.influx_url} ({a.database})" if a.database else "") + " ...",
          file=sys.stderr, flush=True)
    r = verify([Path(d) for d in a.state_dir], trust, influx_url=a.influx_url if a.database else None, database=a.database,
               site=a.site, start_ms=start, end_ms=end)
    print(json.dumps(r.to_dict(), indent=2) if a.json else format_report(r))
    return 0 if r.ok else 1


def cmd_keys_new(a: argparse.Namespace) -> int:
    from carbonedge.integrity import TrustStore, generate_key, key_id

    sk = generate_key(Path(a.key))
    kid = key_id(sk.public_key())
    print(f"wrote {a.key} (private, mode 0600: install it on gateway {a.site}/{a.gateway} only) and {a.key}.pub; key id {kid}")
    if a.trust:
        trust = TrustStore.load(Path(a.trust)) if Path(a.trust).exists() else TrustStore()
        trust.add(a.site, a.gateway, sk.public_key())
        trust.save(Path(a.trust))
        print(f"registered {kid} for {a.site}/{a.gateway} in {a.trust}")
    return 0


def cmd_keys_trust(a: argparse.Namespace) -> int:
    from carbonedge.integrity import TrustStore, load_public_key

    trust = TrustStore.load(Path(a.trust)) if Path(a.trust).exists() else TrustStore()
    kid = trust.add(a.site, a.gateway, load_public_key(Path(a.pub)))
    trust.save(Path(a.trust))
    print(f"registered {kid} for {a.site}/{a.gateway} in {a.trust}")
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("carbonedge")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(*, lean: bool = False) -> argparse.ArgumentParser:
    """The whole command line; ``lean`` leaves out the analytics sub-commands whose import loads numpy
    (~23 MB), so that the long-running ``edge`` and ``collect`` processes stay small (a gateway on a
    Raspberry Pi has a 100 MB budget, docs/benchmarks.md)."""
    p = OneLineParser(prog="carbonedge", description="Energy and carbon monitoring for steel and battery-cell plants.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    p.add_argument("--version", action="version", version=f"carbonedge {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run the whole pipeline on a simulated plant and print energy intensity",
                       description="Simulated plant -> edge gateway -> MQTT -> collector -> InfluxDB -> analytics, with the project's "
                       "own Mosquitto and InfluxDB on free loopback ports. Writes summary.json into --out.")
    d.add_argument("--plant", choices=["steel", "battery"], help="which plant to simulate (default: steel, or the scenario's)")
    d.add_argument("--scenario", type=_scenario, help="run a scenario instead of the plant's default: a bundled name (e.g. steel-week-faults, with "
                   "labelled faults the alert monitor and the report's hints should find) or a TOML file; its start, duration and "
                   "speed are replaced by the demo's, its faults keep their offsets from the start")
    d.add_argument("--hours", type=positive(), default=24.0, help="hours of plant operation to simulate (default: 24)")
    d.add_argument("--speed", type=positive(), default=1440.0, help="plant seconds per wall second (default: 1440, a day per minute)")
    d.add_argument("--seed", type=Number(int, min=0), help="random seed of the plant (default: 7, or the scenario's)")
    d.add_argument("--poll-interval", type=Number(float, min=1), default=60.0, help="gateway poll interval in plant seconds (default: 60)")
    d.add_argument("--out", type=OutputDir(), default="demo-out", help="output directory (default: ./demo-out)")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("sim", help="serve a simulated plant over Modbus TCP", description="Run a simulated plant and serve every meter "
                       "and PLC counter over Modbus TCP on loopback. Writes devices.json, gateway.toml, plant.json and, at the end, truth.json.")
    s.add_argument("--scenario", type=_scenario, help="scenario: a bundled name (steel-default, battery-week-faults, ...) or a TOML file; "
                   "the flags below override its values")
    s.add_argument("--plant", choices=["steel", "battery"], help="which plant (default: the scenario's, else steel)")
    s.add_argument("--seed", type=Number(int, min=0), help="random seed (default: the scenario's, else 7)")
    s.add_argument("--duration", type=Duration(), help="plant time to simulate, e.g. 24h (default: the scenario's, else 24h)")
    s.add_argument("--start", type=Time(), help="plant start time, ISO 8601 (default: the clock's start with --clock, else the scenario's, else now)")
    s.add_argument("--clock", help="virtual clock: start=ISO,speed=N[,origin=EPOCH] (default: the scenario's speed, else the wall clock)")
    s.add_argument("--site", help="site name in gateway.toml and plant.json (default: the scenario's, else demo-<plant>)")
    s.add_argument("--gateway", default="gw1", help="gateway id written into gateway.toml (default: gw1)")
    s.add_argument("--poll-interval", type=Number(float, min=1), help="poll interval written into gateway.toml, plant seconds (default: the scenario's, else 60)")
    s.add_argument("--plc-protocol", choices=["opcua", "modbus"], default="opcua",
                   help="how gateway.toml reads the PLC's production counters (both are served; default: opcua)")
    s.add_argument("--sync-start", action="store_true", help="hold the initial state until every device was read three times (exact ground-truth windows)")
    s.add_argument("--out", type=OutputDir(), default="sim-out", help="directory for devices.json, gateway.toml, plant.json, then truth.json and labels.jsonl")
    s.set_defaults(func=cmd_sim)

    g = sub.add_parser("generate", help="write a scenario's meter data offline (CSV per device, truth, fault labels)",
                       description="Run a scenario without a network and write, per device, what a gateway would read at each poll "
                       "(<device>.csv: ts + one column per quantity, canonical units), plus plant.json, truth.json, truth.csv and labels.jsonl.")
    g.add_argument("scenario", type=_scenario, help="a bundled scenario name (steel-default, steel-week-faults, battery-default, battery-week-faults, "
                   "battery-500) or a scenario TOML file")
    g.add_argument("--out", type=OutputDir(), required=True, help="output directory")
    g.add_argument("--poll-interval", type=Number(float, min=1), help="sampling interval in plant seconds (default: the scenario's)")
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser("edge", help="run an edge gateway", description="Poll the devices in a gateway config, keep every cycle in the "
                       "outbox on disk and publish it over MQTT v5 until the collector confirms it.")
    e.add_argument("--config", type=InputFile("toml"), required=True, help="gateway TOML file")
    e.add_argument("--mqtt-host", help="MQTT broker host name or address (overrides [mqtt] host)")
    e.add_argument("--mqtt-port", type=Number(int, min=1, max=65535), help="MQTT broker port (overrides [mqtt] port)")
    e.add_argument("--data-dir", type=OutputDir(), help="where the outbox lives (default: [gateway] data_dir)")
    e.add_argument("--clock", help="virtual clock spec (tests and demos)")
    e.add_argument("--until", type=Time(), help="stop polling after this plant time (ISO 8601)")
    e.add_argument("--exit-when-drained", action="store_true", help="after polling stops, wait until the collector confirmed every batch")
    e.add_argument("--stats-file", type=OutputFile(), help="write the gateway's counters here on exit")
    e.set_defaults(func=cmd_edge)

    c = sub.add_parser("collect", help="run a collector (MQTT -> InfluxDB)", description="Subscribe to gateway telemetry, validate it, write "
                       "InfluxDB through its v1 /write API, and publish each gateway's watermark.")
    c.add_argument("--mqtt-host", default="127.0.0.1", help="MQTT broker host name or address (default: 127.0.0.1)")
    c.add_argument("--mqtt-port", type=Number(int, min=1, max=65535), default=1883, help="MQTT broker port (default: 1883; 8883 with TLS)")
    c.add_argument("--influx-url", default="http://127.0.0.1:8086", help="InfluxDB base URL (default: http://127.0.0.1:8086)")
    c.add_argument("--database", default="carbonedge", help="InfluxDB database (default: carbonedge)")
    c.add_argument("--state-dir", type=OutputDir(), default="/var/lib/carbonedge/collector",
                   help="watermarks, archive, dead letters and disk spool (default: /var/lib/carbonedge/collector)")
    c.add_argument("--client-id", default="carbonedge-collector-1", help="MQTT client id, unique per collector (default: carbonedge-collector-1)")
    c.add_argument("--share-group", default="carbonedge", help="MQTT v5 shared-subscription group ('' for none)")
    c.add_argument("--metrics-port", type=Number(int, min=1, max=65535), help="serve Prometheus metrics on 127.0.0.1:PORT/metrics")
    c.add_argument("--known-devices", type=InputFile(), help="device registry (site/gateway/device per line, or a JSON list); others are dead-lettered")
    c.add_argument("--max-future", type=positive(), default=300.0, help="dead-letter readings more than this many seconds ahead (default 300)")
    c.add_argument("--max-past-days", type=positive(), help="dead-letter readings older than this many days (default: no limit)")
    c.add_argument("--gap-timeout", type=positive(), default=120.0, help="seconds a sequence hole may stay open before it is recorded as a gap")
    c.add_argument("--spool-max-mb", type=positive(), default=10_000.0, help="disk spool limit while InfluxDB is down (default 10000 MB)")
    c.add_argument("--batch-max-delay", type=positive(), default=0.5, help="longest wait before a partial batch is written (s)")
    c.add_argument("--stats-file", type=OutputFile(), help="write the collector's counters here on exit")
    _add_influx_auth(c)
    c.add_argument("--mqtt-username", help="MQTT user for a broker with passwords; the password is read from $CARBONEDGE_MQTT_PASSWORD")
    c.add_argument("--mqtt-tls-ca", type=InputFile(), help="plant CA certificate: connect to the broker over TLS")
    c.add_argument("--mqtt-tls-cert", type=InputFile(), help="this collector's client certificate (its CN is its MQTT identity)")
    c.add_argument("--mqtt-tls-key", type=InputFile(), help="the client certificate's private key")
    c.set_defaults(func=cmd_collect)

    an = sub.add_parser("analyze", help="energy analytics: from InfluxDB (sec, monitor, enpi) or CSV exports (detect, baseline)",
                        description="Energy analytics. sec, monitor and enpi read InfluxDB; detect and baseline read CSV exports.")
    asub = an.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    sec = asub.add_parser("sec", help="energy, production and SEC per process over a period",
                          description="Energy, production and specific energy consumption (SEC) per process and for the plant over a "
                          "period, from the readings in InfluxDB and the plant model.")
    sec.add_argument("--plant", type=InputFile("json"), required=True, help="plant model JSON (as written by `carbonedge sim`)")
    sec.add_argument("--influx-url", default="http://127.0.0.1:8086")
    _add_influx_auth(sec)
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

    if not lean:
        from carbonedge.analytics.commands import add_analyze_commands  # analyze monitor, analyze enpi

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
    _add_influx_auth(rp)
    rp.add_argument("--database", default="carbonedge")
    rp.add_argument("--no-write-back", action="store_true", help="do not write hourly CO2 to InfluxDB (measurement carbon)")
    rp.add_argument("--pact-db", help="use suppliers' PACT footprints fetched into this database (`carbonedge pact fetch`) for the materials "
                    "mapped in --pact")
    rp.add_argument("--pact", help="PACT settings TOML ([[purchased]] maps materials to suppliers' product ids)")
    rp.set_defaults(func=cmd_report)

    cf = sub.add_parser("config", help="configuration tools")
    csub = cf.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    chk = csub.add_parser("check", help="validate a gateway config file and print every problem")
    chk.add_argument("file", type=InputFile("toml"), help="gateway TOML file")
    chk.set_defaults(func=cmd_config_check)

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

    vf = sub.add_parser("verify", help="check signed batches in a collector archive (and InfluxDB) for tampering and loss",
                        description="Check every archived batch against its gateway's registered Ed25519 key and hash chain, and "
                        "optionally every InfluxDB reading against the signed batches; report each edited, deleted, inserted, "
                        "reordered or replayed batch by gateway and seq. Exit status 1 if anything is found.")
    vf.add_argument("--state-dir", type=InputDir(), action="append", required=True,
                    help="a collector's state directory (holds archive/, deadletter.jsonl); repeat for every collector of the group")
    vf.add_argument("--trust", type=InputFile("json"), required=True, help="trust file of gateway public keys (carbonedge keys new/trust)")
    vf.add_argument("--influx-url", default="http://127.0.0.1:8086")
    vf.add_argument("--database", help="also compare the InfluxDB readings of this database")
    vf.add_argument("--site", help="only this site")
    vf.add_argument("--from", dest="start", type=Time(), help="period start, ISO 8601 (batch creation time)")
    vf.add_argument("--to", dest="end", type=Time(), help="period end, ISO 8601")
    vf.add_argument("--json", action="store_true", help="print the full report as JSON")
    vf.set_defaults(func=cmd_verify)

    ks = sub.add_parser("keys", help="gateway signing keys: create one, register a public key")
    kss = ks.add_subparsers(dest="keys_cmd", required=True, metavar="ACTION")
    kn = kss.add_parser("new", help="create a gateway's Ed25519 signing key (and register its public key)")
    kn.add_argument("key", type=OutputFile(new=True, parents=True), help="private key file to create, e.g. /etc/carbonedge/gw1.key (never overwritten)")
    kn.add_argument("--site", required=True)
    kn.add_argument("--gateway", required=True)
    kn.add_argument("--trust", type=OutputFile(parents=True), help="add the public key to this trust file (created if missing)")
    kn.set_defaults(func=cmd_keys_new)
    kt = kss.add_parser("trust", help="register a gateway's public key (.pub) in a trust file")
    kt.add_argument("pub", type=InputFile(), help="the gateway's public key file (.pub, from carbonedge keys new)")
    kt.add_argument("--site", required=True)
    kt.add_argument("--gateway", required=True)
    kt.add_argument("--trust", type=OutputFile(parents=True), required=True, help="trust file to update (created if missing)")
    kt.set_defaults(func=cmd_keys_trust)
    from carbonedge.edge.opcua_cli import add_commands as opcua_commands

    opcua_commands(sub)
    from carbonedge.app.commission import add_commands  # profiles, probe, plant init, status

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = next((x for x in args if not x.startswith("-")), None)
    parser = build_parser(lean=command in ("edge", "collect"))
    a = parser.parse_args(argv)
    _setup_logging(a.verbose)
    try:
        return int(a.func(a))
    except CarbonEdgeError as exc:
        print(f"carbonedge: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` or a closed pager
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file or directory the user named: say which and why, no traceback
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"carbonedge {a.cmd}:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
