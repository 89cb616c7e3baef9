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
ENV = REPO / "deploy" / "collector" / "collector.env.example"


def _exec_start(unit: Path, env: dict[str, str], instance: str) -> list[str]:
    text = unit.read_text().replace("\\\n", " ")
    line = next(m.group(1) for m in re.finditer(r"^ExecStart=(.*)$", text, flags=re.M))
    line = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line).replace("%i", instance)
    return shlex.split(line)


def _env() -> dict[str, str]:
    return dict(line.split("=", 1) for line in ENV.read_text().splitlines() if line and not line.startswith("#"))


def test_collector_unit_passes_options_the_cli_accepts(tmp_path: Path) -> None:
    env = _env()
    # The CLI checks that the TLS files exist when it parses its options: stand them in under tmp_path.
    for k in ("MQTT_TLS_CA", "MQTT_TLS_CERT", "MQTT_TLS_KEY"):
        assert env[k].startswith("/etc/carbonedge/")
        env[k] = str(tmp_path / Path(env[k]).name)
        Path(env[k]).write_text("PEM\n")
    argv = _exec_start(UNIT, env, "2")
    assert argv[0] == "/opt/carbonedge/.venv/bin/carbonedge"
    a = build_parser().parse_args(argv[1:])
    assert a.cmd == "collect" and a.client_id == "collector-2" and a.share_group == "carbonedge"
    assert a.state_dir == "/var/lib/carbonedge/collector-2"
    assert a.mqtt_port == 8883 and a.influx_url == "http://127.0.0.1:8086"
    # The shipped broker is TLS only with client certificates, and InfluxDB has auth on.
    assert a.mqtt_tls_ca and a.mqtt_tls_cert and a.mqtt_tls_key and a.influx_user == "collector"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", ["collector/carbonedge-collector@.service"])
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
