"""systemd units and drop-ins under deploy/: systemd accepts them, and they call the CLI with options it has."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carbonedge.app.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
UNIT = REPO / "deploy" / "collector" / "carbonedge-collector@.service"
EXAMPLE = REPO / "deploy" / "collector" / "collector.example.toml"


def _unit_lines(unit: Path, key: str, instance: str) -> list[str]:
    text = unit.read_text().replace("\\\n", " ")
    return [m.group(1).replace("%i", instance) for m in re.finditer(rf"^{key}=(.*)$", text, flags=re.M)]


def test_collector_unit_runs_the_example_settings(tmp_path: Path) -> None:
    """The unit checks and runs the shipped settings file; its per-instance overrides reach the collector's settings."""
    from carbonedge.collector.commands import settings_from_args
    from carbonedge.collector.settings import CollectorConfig, load_collector_config

    environ = dict(line.split("=", 1) for line in _unit_lines(UNIT, "Environment", "2"))
    assert all(k.startswith("CARBONEDGE_COLLECTOR__") for k in environ)
    pre = shlex.split(_unit_lines(UNIT, "ExecStartPre", "2")[0])
    start = shlex.split(_unit_lines(UNIT, "ExecStart", "2")[0])
    assert pre[1:] == ["config", "check", "/etc/carbonedge/collector.toml"]
    assert start[0] == "/opt/carbonedge/.venv/bin/carbonedge" and start[start.index("--config") + 1] == "/etc/carbonedge/collector.toml"
    # The example as installed, with the files it names stood in under tmp_path.
    text = EXAMPLE.read_text().replace("/etc/carbonedge/", f"{tmp_path}/")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "collector.password").write_text("s3cret-password\n")
    cfg_file = tmp_path / "collector.toml"
    cfg_file.write_text(text)
    cfg = load_collector_config(cfg_file, environ=environ)
    assert isinstance(cfg, CollectorConfig)
    assert cfg.mqtt.client_id == "collector-2" and cfg.mqtt.share_group == "carbonedge"
    assert cfg.collector.state_dir == Path("/var/lib/carbonedge/collector-2")
    # The shipped broker is TLS only with client certificates, and InfluxDB has auth on (password from its file).
    assert cfg.mqtt.port == 8883 and cfg.mqtt.tls and cfg.mqtt.tls.ca_file and cfg.mqtt.tls.cert_file and cfg.mqtt.tls.key_file
    assert cfg.influx.username == "collector" and cfg.runtime().influx_password == "s3cret-password"
    # And the command line the unit runs parses and builds the same settings.
    a = build_parser().parse_args([*start[1:3], "--config", str(cfg_file)])
    assert a.cmd == "collect"
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, environ):
        s = settings_from_args(a)
    assert s.client_id == "collector-2" and s.mqtt_port == 8883 and s.influx_username == "collector"


def test_monitor_unit_runs_the_example_settings(tmp_path: Path) -> None:
    """The monitor unit checks and runs the shipped settings file, and the example's state file is in the unit's state directory."""
    from carbonedge.analytics.commands import monitor_config_from_args

    unit = REPO / "deploy" / "analytics" / "carbonedge-monitor.service"
    example = REPO / "deploy" / "analytics" / "monitor.example.toml"
    pre = shlex.split(_unit_lines(unit, "ExecStartPre", "")[0])
    start = shlex.split(_unit_lines(unit, "ExecStart", "")[0])
    assert pre[1:] == ["config", "check", "/etc/carbonedge/monitor.toml"]
    assert start[0] == "/opt/carbonedge/.venv/bin/carbonedge" and start[start.index("--config") + 1] == "/etc/carbonedge/monitor.toml"
    state_dir = _unit_lines(unit, "StateDirectory", "")[0]
    (tmp_path / "plant.json").write_text("{}")
    cfg_file = tmp_path / "monitor.toml"
    cfg_file.write_text(example.read_text().replace("/etc/carbonedge/", f"{tmp_path}/"))
    a = build_parser().parse_args([*start[1:4], "--config", str(cfg_file)])
    assert a.cmd == "analyze" and a.func.__name__ == "cmd_analyze_monitor" and not a.once  # follow mode
    cfg = monitor_config_from_args(a, environ={})
    assert cfg.monitor.state_file is not None and cfg.monitor.state_file.parent == Path("/var/lib") / state_dir


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", ["collector/carbonedge-collector@.service", "analytics/carbonedge-monitor.service"])
def test_systemd_accepts_the_unit(unit: str, tmp_path: Path) -> None:
    src = (REPO / "deploy" / unit).read_text().replace("/opt/carbonedge/.venv/bin/", f"{VENV_BIN}/")
    name = Path(unit).name.replace("@.", "@1.")
    (tmp_path / name).write_text(src)
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True, check=False)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if name in line]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_dropins_only_set_known_keys() -> None:
    known = {"Unit": {"After", "Wants"}, "Service": {"Restart", "RestartSec", "LimitNOFILE"}}
    for f in (REPO / "deploy" / "server").glob("*.service.d-*.conf"):
        section = None
        for line in f.read_text().splitlines():
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key = line.split("=", 1)[0]
            assert section in known and key in known[section], f"{f.name}: {section}.{key}"
