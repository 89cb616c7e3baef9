"""The shell's own commands: ``demo``, ``config check``, ``verify`` and ``keys``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from carbonedge.argtypes import InputDir, InputFile, Number, OutputDir, OutputFile, Time, positive
from carbonedge.clock import parse_time
from carbonedge.errors import CarbonEdgeError


def cmd_config_check(a: argparse.Namespace) -> int:
    from carbonedge.app.config_check import config_check

    return config_check(a.file, a.kind)


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


def add_demo(sub: Any) -> None:
    """Register ``demo`` (first in the help) on the top-level subparsers."""
    from carbonedge.simulators.commands import scenario_arg

    d = sub.add_parser("demo", help="run the whole pipeline on a simulated plant and print energy intensity",
                       description="Simulated plant -> edge gateway -> MQTT -> collector -> InfluxDB -> analytics, with the project's "
                       "own Mosquitto and InfluxDB on free loopback ports. Writes summary.json into --out.")
    d.add_argument("--plant", choices=["steel", "battery"], help="which plant to simulate (default: steel, or the scenario's)")
    d.add_argument("--scenario", type=scenario_arg, help="run a scenario instead of the plant's default: a bundled name (e.g. steel-week-faults, with "
                   "labelled faults the alert monitor and the report's hints should find) or a TOML file; its start, duration and "
                   "speed are replaced by the demo's, its faults keep their offsets from the start")
    d.add_argument("--hours", type=positive(), default=24.0, help="hours of plant operation to simulate (default: 24)")
    d.add_argument("--speed", type=positive(), default=1440.0, help="plant seconds per wall second (default: 1440, a day per minute)")
    d.add_argument("--seed", type=Number(int, min=0), help="random seed of the plant (default: 7, or the scenario's)")
    d.add_argument("--poll-interval", type=Number(float, min=1), default=60.0, help="gateway poll interval in plant seconds (default: 60)")
    d.add_argument("--out", type=OutputDir(), default="demo-out", help="output directory (default: ./demo-out)")
    d.set_defaults(func=cmd_demo)


def add_commands(sub: Any) -> None:
    """Register ``config``, ``verify`` and ``keys`` on the top-level subparsers."""

    cf = sub.add_parser("config", help="configuration tools")
    csub = cf.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    chk = csub.add_parser("check", help="validate a settings file (gateway, collector, monitor, scenario, carbon, plant model) and print every problem",
                          description="Check a settings file and every file it names the way the process will use them, and print "
                          "every problem, one line each (FILE: key: reason). The kind is told by the contents: [gateway] gateway, "
                          "[monitor] alert monitor, [collector] or [influx] collector, [scenario] simulator, [carbon] or [tariff] carbon settings, [pact] PACT settings, a JSON "
                          "file with 'processes' a plant model. Environment overrides (CARBONEDGE_<KIND>__SECTION__KEY) are "
                          "applied as the process would. Exit status 2 if anything is wrong.")
    chk.add_argument("file", type=InputFile(), help="settings file: TOML (gateway, collector, monitor, scenario, carbon) or plant.json")
    chk.add_argument("--kind", choices=["gateway", "collector", "monitor", "simulator", "carbon", "pact", "plant"], help="the kind of file (default: told by its contents)")
    chk.set_defaults(func=cmd_config_check)

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
