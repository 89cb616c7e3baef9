"""No traceback for a user mistake, anywhere on the command line.

The walk visits every subcommand and feeds each of its arguments the wrong values its type knows
(a missing path, a directory, a non-UTF-8 file, broken JSON or TOML, a malformed date, text for a
number, zero, a negative value, NaN), and asserts: exit code 2, one line on stderr naming the
argument, no traceback, and the command never started. A second check keeps new arguments honest:
an argument that reads like a path, a time or a number must have a checking type.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from carbonedge.app import cli

#: Subcommands whose argument handling is being reworked elsewhere: walked, but allowed to fail for now.
PENDING: set[tuple[str, str]] = set()

#: Arguments that look like paths/times/numbers by name but are free text or checked downstream.
NOT_CHECKED = {"--influx-url", "--url", "--mqtt-host", "--host", "--serial-port", "--influx-password-env", "--site", "--gateway",
               "--device", "--profile", "--client-id", "--share-group", "--database", "--dashboards-path", "--tz", "--clock",
               "--token", "--influx-user", "--mqtt-username", "--time-col", "--value-col", "--context-col", "--target", "--feature",
               "--mean-feature", "name", "--holidays"}
SUSPECT = re.compile(r"(file|config|plant|csv|carbon|trust|key|pub|dir|out|ca|cert|known|scenario|start|end|until|from|to|"
                     r"interval|hours|speed|timeout|port|delay|days|mb|future|duration|rows|margin|smoothing|seed|wait)$")


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for s in subs:
        for name, sp in s.choices.items():
            yield from _leaves(sp, path + (name,))


def _name(action: argparse.Action) -> str:
    return action.option_strings[-1] if action.option_strings else action.dest


LEAVES = {" ".join(p): (p, sp) for p, sp in _leaves(cli.build_parser())}


def _params():  # type: ignore[no-untyped-def]
    for key, (path, _sp) in LEAVES.items():
        marks = [pytest.mark.xfail(strict=False, reason="argument handling of this subcommand is being reworked")] if path in PENDING else []
        yield pytest.param(key, marks=marks, id=key.replace(" ", "-"))


def _base(parser: argparse.ArgumentParser, tmp: Path, skip: argparse.Action) -> tuple[list[str], list[str]]:
    """Valid values for every required argument except ``skip``: (options, positionals)."""
    opts: list[str] = []
    pos: list[str] = []
    for a in parser._actions:
        if a is skip or isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if not (a.required or not a.option_strings):
            continue
        if a.nargs == "?":
            continue
        good = a.type.good_value(tmp) if hasattr(a.type, "good_value") else (str(a.choices[0]) if a.choices else "x")
        if a.option_strings:
            opts += [a.option_strings[-1], good]
        else:
            pos.append(good)
    return opts, pos


def _run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    started: list[str] = []
    orig = cli.build_parser

    def stubbed(**kw):  # type: ignore[no-untyped-def]
        p = orig(**kw)
        for _path, sp in _leaves(p):
            sp.set_defaults(func=lambda a: started.append("ran") or 0)
        return p

    monkeypatch.setattr(cli, "build_parser", stubbed)
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    err = capsys.readouterr().err
    if started:
        return -1, err
    return code, err


@pytest.mark.parametrize("leaf", list(_params()))
def test_every_argument_refuses_wrong_values_in_one_line(leaf, tmp_path, capsys, monkeypatch):
    path, parser = LEAVES[leaf]
    problems: list[str] = []
    tried = 0
    for a in parser._actions:
        bad_values = list(a.type.bad_values(tmp_path)) if hasattr(a.type, "bad_values") else []
        if a.choices and not a.type:
            bad_values.append("not-a-choice")
        for bad in bad_values:
            opts, pos = _base(parser, tmp_path, a)
            if a.option_strings:
                argv = [*path, *opts, a.option_strings[-1], bad, *pos]
            else:
                argv = [*path, *opts, bad]
            code, err = _run(argv, capsys, monkeypatch)
            tried += 1
            lines = err.strip().splitlines()
            if code == -1:
                problems.append(f"{_name(a)} {bad!r}: accepted, the command started")
            elif code != 2 or len(lines) != 1 or "Traceback" in err or (a.dest not in err and _name(a) not in err):
                problems.append(f"{_name(a)} {bad!r}: exit {code}, stderr {err.strip()[:300]!r}")
    assert not problems, f"{leaf}: {len(problems)} of {tried} wrong values not refused cleanly:\n" + "\n".join(problems)


@pytest.mark.parametrize("leaf", list(_params()))
def test_every_path_time_and_number_argument_is_checked(leaf):
    path, parser = LEAVES[leaf]
    unchecked = []
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._StoreTrueAction, argparse._CountAction)):
            continue
        name = _name(a)
        if name in NOT_CHECKED or a.choices:
            continue
        if a.type in (int, float) or (a.type is None and SUSPECT.search(a.dest)):
            unchecked.append(name)
    assert not unchecked, f"{leaf}: arguments without a checking type (carbonedge/argtypes.py): {', '.join(unchecked)}"


def test_the_walk_covers_every_subcommand():
    assert len(LEAVES) >= 20
    for must in ("demo", "sim", "edge", "collect", "analyze sec", "report", "config check", "verify", "profiles", "probe",
                 "plant init", "status", "keys new", "grafana export"):
        assert must in LEAVES


def test_version_and_broken_pipe(tmp_path):
    exe = [sys.executable, "-m", "carbonedge.app.cli"]
    r = subprocess.run([*exe, "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and re.fullmatch(r"carbonedge \d+\.\d+\.\d+\S*\n", r.stdout)
    # Output into a pipe that closes early (| head) ends quietly, without a traceback.
    r = subprocess.run(f"{sys.executable} -m carbonedge.app.cli profiles eastron-sdm630 | head -1", shell=True, capture_output=True,
                       text=True, timeout=60)
    assert "Traceback" not in r.stderr and r.stdout.startswith("eastron-sdm630")


def test_report_reads_its_carbon_settings_before_influxdb(tmp_path, capsys):
    """A wrong settings file is reported first, not after a query to an InfluxDB that may not even be there."""
    plant = tmp_path / "plant.json"
    plant.write_text('{"site": "s1", "processes": {"p": {"meters": ["m1"]}}, "sec_unit": "kWh/t"}')
    bad = tmp_path / "carbon.toml"
    bad.write_text('[grid]\nnot_a_setting = "x"\n')
    code = cli.main(["report", "--plant", str(plant), "--from", "2026-01-05", "--to", "2026-01-06", "--out", str(tmp_path / "r"),
                     "--carbon", str(bad), "--influx-url", "http://127.0.0.1:9"])
    err = capsys.readouterr()
    assert code == 2
    assert "carbon.toml" in err.err and "InfluxDB" not in err.err and "Reading" not in err.out


def test_a_wrong_file_found_at_run_time_is_one_line(tmp_path, capsys):
    """A file that passes the argument check but is wrong inside (a trust file that is a JSON list) is one line too."""
    pub = tmp_path / "gw.pub"
    pub.write_text("not a key\n")
    trust = tmp_path / "trust.json"
    trust.write_text("[1, 2]")
    code = cli.main(["keys", "trust", str(pub), "--site", "s", "--gateway", "g", "--trust", str(trust)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_an_unreachable_influxdb_is_one_short_line(tmp_path, capsys):
    """Not the 400-character URL-encoded query that requests puts into its exception."""
    from carbonedge.app.services import free_port

    plant = tmp_path / "plant.json"
    plant.write_text(json.dumps({"site": "s1", "plant": "steel", "sec_unit": "kWh/t", "output_process": "eaf",
                                 "processes": {"eaf": {"area": "melt", "production_unit": "t", "meters": ["m1"], "counters": ["c1"]}}}))
    code = cli.main(["analyze", "sec", "--plant", str(plant), "--start", "2026-01-05", "--end", "2026-01-06",
                     "--influx-url", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) < 200 and "%20" not in err, err
    assert "connection refused" in err
