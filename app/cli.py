"""The ``carbonedge`` command: wires each package's commands together.

Every package that runs a process has a ``commands`` module with ``add_commands(subparsers)``:
``simulators`` (sim, generate), ``edge`` (edge, opcua), ``collector`` (collect), ``analytics`` (analyze, pact,
report, grafana); the shell adds its own (demo, config check, verify, keys in :mod:`carbonedge.app.commands`;
profiles, probe, plant init, status in :mod:`carbonedge.app.commission`). Building the parser imports no
heavy library: each handler imports what it needs, so a gateway installed with only the ``edge`` extra
runs ``carbonedge edge`` without numpy, and a command whose extra is missing says which one to install.
"""

from __future__ import annotations

import argparse
import logging
import sys

from carbonedge.argtypes import OneLineParser
from carbonedge.errors import CarbonEdgeError

log = logging.getLogger("carbonedge")


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("carbonedge")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(*, lean: bool = False) -> argparse.ArgumentParser:
    """The whole command line; ``lean`` leaves out the analytics commands (``analyze``, ``report``, ``grafana``,
    ``pact``), so that the long-running ``edge`` and ``collect`` processes do not even load their parsers (a
    gateway on a Raspberry Pi has a 100 MB budget, docs/benchmarks.md)."""
    p = OneLineParser(prog="carbonedge", description="Energy and carbon monitoring for steel and battery-cell plants.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    p.add_argument("--version", action="version", version=f"carbonedge {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    from carbonedge.app import commands, commission
    from carbonedge.collector import commands as collector_commands
    from carbonedge.edge import commands as edge_commands
    from carbonedge.simulators import commands as simulator_commands

    commands.add_demo(sub)  # demo
    simulator_commands.add_commands(sub)  # sim, generate
    edge_commands.add_commands(sub)  # edge, opcua
    collector_commands.add_commands(sub)  # collect
    if not lean:
        from carbonedge.analytics import commands as analytics_commands

        analytics_commands.add_commands(sub)  # analyze, pact, report, grafana
    commands.add_commands(sub)  # config check, verify, keys
    commission.add_commands(sub)  # profiles, probe, plant init, status
    return p


#: The install extra (pyproject.toml) each command needs beyond the core.
_EXTRA = {"edge": "edge", "opcua": "edge", "probe": "edge", "collect": "collector", "verify": "collector", "status": "collector",
          "sim": "sim", "generate": "sim", "analyze": "analytics", "report": "analytics", "grafana": "analytics", "pact": "analytics"}


def _missing_distribution(module: str) -> bool:
    """True when ``module`` is a third-party package that is not installed (not a bug in carbonedge itself)."""
    return not module.startswith("carbonedge")


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
    except ModuleNotFoundError as exc:  # installed without the extra this command needs (pip install .[edge] on a gateway)
        extra = _EXTRA.get(a.cmd, "all")
        if exc.name is None or not _missing_distribution(exc.name):
            raise
        print(f"carbonedge {a.cmd}: needs the Python package {exc.name.split('.')[0]!r}, which this installation lacks; "
              f"install the '{extra}' extra: pip install 'carbonedge[{extra}]'", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or directory the user named: say which and why, no traceback
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"carbonedge {a.cmd}:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
