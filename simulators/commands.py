"""``carbonedge sim`` and ``carbonedge generate``: a simulated plant served over Modbus TCP / OPC UA, or written offline."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from carbonedge.argtypes import Duration, InputFile, Number, OutputDir, Time
from carbonedge.clock import parse_time


class ScenarioName:
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


#: The argument type of a scenario: a bundled name or a TOML file.
scenario_arg = ScenarioName()


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


def add_commands(sub: Any) -> None:
    """Register ``sim`` and ``generate`` on the top-level subparsers."""
    s = sub.add_parser("sim", help="serve a simulated plant over Modbus TCP", description="Run a simulated plant and serve every meter "
                       "and PLC counter over Modbus TCP on loopback. Writes devices.json, gateway.toml, plant.json and, at the end, truth.json.")
    s.add_argument("--scenario", type=scenario_arg, help="scenario: a bundled name (steel-default, battery-week-faults, ...) or a TOML file; "
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
    g.add_argument("scenario", type=scenario_arg, help="a bundled scenario name (steel-default, steel-week-faults, battery-default, battery-week-faults, "
                   "battery-500) or a scenario TOML file")
    g.add_argument("--out", type=OutputDir(), required=True, help="output directory")
    g.add_argument("--poll-interval", type=Number(float, min=1), help="sampling interval in plant seconds (default: the scenario's)")
    g.set_defaults(func=cmd_generate)
