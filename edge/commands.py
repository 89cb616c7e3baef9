"""``carbonedge edge`` (run a gateway) and ``carbonedge opcua`` (OPC UA commissioning)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from carbonedge.argtypes import InputFile, Number, OutputDir, OutputFile, Time
from carbonedge.clock import make_clock, parse_time

log = logging.getLogger("carbonedge")


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


def add_commands(sub: Any) -> None:
    """Register ``edge`` and ``opcua`` on the top-level subparsers."""
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
    from carbonedge.edge.opcua_cli import add_commands as opcua_commands

    opcua_commands(sub)
