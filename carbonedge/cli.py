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
import sys
import threading
from pathlib import Path

from carbonedge.clock import make_clock, parse_time
from carbonedge.errors import CarbonEdgeError

log = logging.getLogger("carbonedge")


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _duration(text: str) -> float:
    """Parse 90s, 15m, 24h, 7d (or plain seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return float(t[:-1]) * units[t[-1]]
        return float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 15m, 24h, 7d)") from None


def cmd_sim(a: argparse.Namespace) -> int:
    from carbonedge.clock import ClockSpec, VirtualClock, WallClock
    from simulators import Simulation, run

    start = parse_time(a.start) if a.start else None
    if a.clock:
        spec = ClockSpec.parse(a.clock)
        clock = VirtualClock(spec)
        start = spec.start
    else:
        clock = WallClock()
    if start is None:
        import time

        start = float(int(time.time()))
    sim = Simulation(plant=a.plant, seed=a.seed, start=start, end=start + a.duration)
    truth = asyncio.run(run(sim, clock, Path(a.out), site=a.site, gateway=a.gateway, poll_interval_s=a.poll_interval, sync_start=a.sync_start))
    print(json.dumps(truth["plant_total"]))
    return 0


def cmd_edge(a: argparse.Namespace) -> int:
    from edge import Agent, load_config
    from edge.agent import write_stats

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


def cmd_collect(a: argparse.Namespace) -> int:
    import signal

    from collector import Collector, CollectorSettings

    s = CollectorSettings(
        mqtt_host=a.mqtt_host, mqtt_port=a.mqtt_port, influx_url=a.influx_url, database=a.database,
        state_dir=Path(a.state_dir), client_id=a.client_id, share_group=a.share_group or None,
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
    from analytics import InfluxReader, energy_intensity

    plant = json.loads(Path(a.plant).read_text())
    figs = energy_intensity(InfluxReader(a.influx_url, a.database), plant, int(parse_time(a.start) * 1000), int(parse_time(a.end) * 1000))
    if a.json:
        print(json.dumps(figs.as_dict(), indent=2))
    else:
        from carbonedge.report import sec_table

        print(sec_table(figs.as_dict()))
    return 0


def cmd_config_check(a: argparse.Namespace) -> int:
    from edge import load_config

    cfg = load_config(a.file)
    print(f"{a.file}: OK — gateway {cfg.gateway.site}/{cfg.gateway.id}, {len(cfg.devices)} devices")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from carbonedge.demo import run_demo

    summary = run_demo(plant=a.plant, hours=a.hours, speed=a.speed, seed=a.seed, out=Path(a.out), poll_interval_s=a.poll_interval)
    ok = summary["lost"] == 0 and summary["readings_in_influxdb"] == summary["readings_published"]
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carbonedge", description="Energy and carbon monitoring for steel and battery-cell plants.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run the whole pipeline on a simulated plant and print energy intensity",
                       description="Simulated plant -> edge gateway -> MQTT -> collector -> InfluxDB -> analytics, with the project's "
                       "own Mosquitto and InfluxDB on free loopback ports. Writes summary.json into --out.")
    d.add_argument("--plant", default="steel", choices=["steel"], help="which plant to simulate (default: steel)")
    d.add_argument("--hours", type=float, default=24.0, help="hours of plant operation to simulate (default: 24)")
    d.add_argument("--speed", type=float, default=1440.0, help="plant seconds per wall second (default: 1440, a day per minute)")
    d.add_argument("--seed", type=int, default=7, help="random seed of the plant (default: 7)")
    d.add_argument("--poll-interval", type=float, default=60.0, help="gateway poll interval in plant seconds (default: 60)")
    d.add_argument("--out", default="demo-out", help="output directory (default: ./demo-out)")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("sim", help="serve a simulated plant over Modbus TCP", description="Run a simulated plant and serve every meter "
                       "and PLC counter over Modbus TCP on loopback. Writes devices.json, gateway.toml, plant.json and, at the end, truth.json.")
    s.add_argument("--plant", default="steel", choices=["steel"])
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--duration", type=_duration, default=86400.0, help="plant time to simulate, e.g. 24h (default: 24h)")
    s.add_argument("--start", help="plant start time, ISO 8601 (default: now; ignored with --clock)")
    s.add_argument("--clock", help="virtual clock: start=ISO,speed=N[,origin=EPOCH] (default: wall clock)")
    s.add_argument("--site", default="demo-steel")
    s.add_argument("--gateway", default="gw1")
    s.add_argument("--poll-interval", type=float, default=60.0, help="poll interval written into gateway.toml (plant seconds)")
    s.add_argument("--sync-start", action="store_true", help="hold the initial state until every device was read once (exact ground-truth windows)")
    s.add_argument("--out", default="sim-out", help="directory for devices.json, gateway.toml, plant.json, truth.json")
    s.set_defaults(func=cmd_sim)

    e = sub.add_parser("edge", help="run an edge gateway", description="Poll the devices in a gateway config, keep every cycle in the "
                       "outbox on disk and publish it over MQTT v5 until the collector confirms it.")
    e.add_argument("--config", required=True, help="gateway TOML file")
    e.add_argument("--mqtt-host")
    e.add_argument("--mqtt-port", type=int)
    e.add_argument("--data-dir", help="where the outbox lives (default: [gateway] data_dir)")
    e.add_argument("--clock", help="virtual clock spec (tests and demos)")
    e.add_argument("--until", help="stop polling after this plant time (ISO 8601)")
    e.add_argument("--exit-when-drained", action="store_true", help="after polling stops, wait until the collector confirmed every batch")
    e.add_argument("--stats-file", help="write the gateway's counters here on exit")
    e.set_defaults(func=cmd_edge)

    c = sub.add_parser("collect", help="run a collector (MQTT -> InfluxDB)", description="Subscribe to gateway telemetry, validate it, write "
                       "InfluxDB through its v1 /write API, and publish each gateway's watermark.")
    c.add_argument("--mqtt-host", default="127.0.0.1")
    c.add_argument("--mqtt-port", type=int, default=1883)
    c.add_argument("--influx-url", default="http://127.0.0.1:8086")
    c.add_argument("--database", default="carbonedge")
    c.add_argument("--state-dir", default="/var/lib/carbonedge/collector")
    c.add_argument("--client-id", default="carbonedge-collector-1")
    c.add_argument("--share-group", default="carbonedge", help="MQTT v5 shared-subscription group ('' for none)")
    c.add_argument("--stats-file")
    c.set_defaults(func=cmd_collect)

    an = sub.add_parser("analyze", help="energy analytics from InfluxDB")
    asub = an.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    sec = asub.add_parser("sec", help="energy, production and SEC per process over a period")
    sec.add_argument("--plant", required=True, help="plant model JSON (as written by `carbonedge sim`)")
    sec.add_argument("--influx-url", default="http://127.0.0.1:8086")
    sec.add_argument("--database", default="carbonedge")
    sec.add_argument("--start", required=True, help="period start, ISO 8601")
    sec.add_argument("--end", required=True, help="period end, ISO 8601")
    sec.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sec.set_defaults(func=cmd_analyze_sec)

    cf = sub.add_parser("config", help="configuration tools")
    csub = cf.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    chk = csub.add_parser("check", help="validate a gateway config file and print every problem")
    chk.add_argument("file")
    chk.set_defaults(func=cmd_config_check)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    _setup_logging(a.verbose)
    try:
        return int(a.func(a))
    except CarbonEdgeError as exc:
        print(f"carbonedge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
