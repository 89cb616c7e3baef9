"""The live monitor's settings file: ``analyze monitor --config``, its overrides, and ``config check`` of kind monitor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbonedge.app import cli
from carbonedge.app.cli import build_parser
from carbonedge.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "analytics" / "monitor.example.toml"
PLANT = {"site": "s1", "plant": "steel", "sec_unit": "kWh/t", "energy_quantity": "active_energy_import", "output_process": "caster",
         "processes": {"eaf": {"meters": ["m1"], "counters": ["c1"], "production_unit": "t"},
                       "caster": {"meters": ["m2"], "counters": ["c2"], "production_unit": "t"}}}


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["config", "check", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _plant(tmp_path: Path) -> Path:
    p = tmp_path / "plant.json"
    p.write_text(json.dumps(PLANT))
    return p


def test_a_valid_monitor_file_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "influx.password"
    pw.write_text("a-long-password\n")
    f = tmp_path / "monitor.toml"
    f.write_text(f'[influx]\nusername = "analytics"\npassword_file = "{pw}"\n[monitor]\nplant_file = "{_plant(tmp_path)}"\n'
                 f'state_file = "{tmp_path}/state/monitor.state"\nlearn_hours = 48\n')
    code, out, err = _check(capsys, str(f))
    assert code == 0, err
    assert "OK — monitor of plant model" in out and "no MQTT alerts, learns 48 h" in out
    # Told by its [monitor] table even though it also has [influx] (a collector file's table); --kind says the same.
    code, out, err = _check(capsys, str(f), "--kind", "monitor")
    assert code == 0, err


def test_every_bad_reference_is_named_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plant = tmp_path / "plant.json"
    plant.write_text(json.dumps({**PLANT, "output_process": "mill"}))  # not a process
    empty = tmp_path / "empty.password"
    empty.write_text("\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    f = tmp_path / "monitor.toml"
    f.write_text(f'[influx]\nusername = "analytics"\npassword_file = "{empty}"\n'
                 f'[mqtt]\nhost = "127.0.0.1"\nport = 8883\nusername = "a"\npassword_file = "{tmp_path}/missing.password"\n'
                 f'[mqtt.tls]\nca_file = "{ca}"\ncert_file = "{tmp_path}/missing.crt"\nkey_file = "{tmp_path}/missing.key"\n'
                 f'[grafana]\nurl = "http://127.0.0.1:3000"\ntoken_file = "{tmp_path}/missing.token"\n'
                 f'[monitor]\nplant_file = "{plant}"\nstate_file = "{blocker}/monitor.state"\nlearn_hours = 0\nlearn_hour = 24\n')
    code, _out, err = _check(capsys, str(f))
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    problems = lines[:-1]
    expected = ["monitor.plant_file = ", "output_process", "influx.password_file = ", "the file is empty",
                "mqtt.password_file = ", "mqtt.tls.ca_file = ", "not a PEM CA certificate", "mqtt.tls.cert_file = ", "mqtt.tls.key_file = ",
                "grafana.token_file = ", "monitor.state_file = ", "is a file", "monitor.learn_hours: Input should be greater than 0",
                "monitor.learn_hour: unknown key (check the spelling)"]
    for e in expected:
        assert any(e in p for p in problems), (e, err)
    assert all(p.startswith(f"{f}: ") for p in problems), err
    assert lines[-1] == f"{f}: {len(problems)} problem(s) in this monitor file"
    assert len(problems) == 10, err  # one line each, nothing repeated


def test_environment_overrides_and_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from carbonedge.analytics.monitor.config import load_monitor_config

    f = tmp_path / "monitor.toml"
    f.write_text(f'[monitor]\nplant_file = "{_plant(tmp_path)}"\nlearn_hours = 24\n[mqtt]\nhost = "broker"\n')
    cfg = load_monitor_config(f, environ={"CARBONEDGE_MONITOR__MONITOR__LEARN_HOURS": "48", "CARBONEDGE_MONITOR__MQTT__PORT": "8883",
                                          "CARBONEDGE_COLLECTOR__MQTT__PORT": "1"})
    assert cfg.monitor.learn_hours == 48 and cfg.mqtt.port == 8883 and cfg.mqtt.host == "broker"
    with pytest.raises(ConfigError) as e:
        load_monitor_config(f, environ={"CARBONEDGE_MONITOR__INFLUX__PASSWORD": "x", "CARBONEDGE_MONITOR__MONITOR__LAG_S": "-1"})
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and "secrets are not read from the environment" in lines[0]
    assert lines[1].startswith("CARBONEDGE_MONITOR__MONITOR__LAG_S (environment): monitor.lag_s: ")
    # config check applies the environment as the monitor would: a state file moved under a file is reported.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CARBONEDGE_MONITOR__MONITOR__STATE_FILE", f"{blocker}/monitor.state")
    code, _out, err = _check(capsys, str(f))
    assert code == 2 and "monitor.state_file = " in err and "is a file" in err


def test_flags_override_the_file(tmp_path: Path) -> None:
    from carbonedge.analytics.commands import monitor_config_from_args

    plant = _plant(tmp_path)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**PLANT, "site": "s2"}))
    f = tmp_path / "monitor.toml"
    f.write_text(f'[influx]\nurl = "http://db:8086"\ndatabase = "plant_a"\n[mqtt]\nhost = "broker"\nport = 8883\n'
                 f'[monitor]\nplant_file = "{plant}"\nstate_file = "{tmp_path}/a.state"\nlearn_hours = 24\ninterval_s = 30\n')
    env = {"CARBONEDGE_MONITOR__MONITOR__LEARN_HOURS": "36", "CARBONEDGE_MONITOR__MONITOR__LAG_S": "300"}
    a = build_parser().parse_args(["analyze", "monitor", "--config", str(f), "--plant", str(other), "--learn-hours", "12",
                                   "--mqtt-port", "18883", "--database", "plant_b", "--no-influx-alerts"])
    cfg = monitor_config_from_args(a, environ=env)
    assert cfg.monitor.plant_file == other and cfg.monitor.learn_hours == 12  # flag over environment over file
    assert cfg.monitor.lag_s == 300 and cfg.monitor.interval_s == 30  # environment, file: no flag given
    assert cfg.mqtt.port == 18883 and cfg.mqtt.host == "broker" and cfg.influx.database == "plant_b"
    assert str(cfg.influx.url) == "http://db:8086/" and cfg.monitor.influx_alerts is False
    # Without --config the flags alone give the settings they always gave (the old defaults).
    a = build_parser().parse_args(["analyze", "monitor", "--plant", str(plant)])
    cfg = monitor_config_from_args(a, environ={})
    assert (cfg.monitor.learn_hours, cfg.monitor.interval_s, cfg.monitor.lag_s, cfg.mqtt.port) == (24.0, 60.0, 120.0, 1883)
    assert str(cfg.influx.url) == "http://127.0.0.1:8086/" and cfg.influx.database == "carbonedge" and cfg.mqtt.host is None


def test_bad_settings_stop_the_command_with_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "monitor.toml"
    f.write_text('[monitor]\nlearn_hours = -1\n[mqtt]\nport = 0\n')
    assert cli.main(["analyze", "monitor", "--config", str(f), "--once", "--end", "2026-01-06T00:00:00Z"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for e in ("monitor.plant_file: missing (required)", "monitor.learn_hours: Input should be greater than 0", "mqtt.port: "):
        assert e in err, err
    assert cli.main(["analyze", "monitor", "--once", "--end", "2026-01-06T00:00:00Z"]) == 2
    assert "give --plant FILE" in capsys.readouterr().err


def test_the_shipped_monitor_example_passes_with_its_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], deploy_etc) -> None:  # type: ignore[no-untyped-def]
    etc = deploy_etc("analytics", "plant-server-1")
    (etc / "plant.json").write_text(json.dumps(PLANT))
    f = tmp_path / "monitor.toml"
    f.write_text(EXAMPLE.read_text().replace("/etc/carbonedge/", f"{etc}/").replace("/var/lib/carbonedge/", f"{tmp_path}/var/"))
    code, out, err = _check(capsys, str(f))
    assert code == 0, err
    assert "alerts to MQTT broker 127.0.0.1:8883 (TLS with a client certificate)" in out and f"{tmp_path}/var/monitor/monitor.state" in out
    # The monitor builds its broker settings from it: the analytics identity's certificate and a usable TLS context.
    from carbonedge.analytics.monitor.config import load_monitor_config

    cfg = load_monitor_config(f, environ={})
    broker = cfg.broker("s1")
    assert broker.client_id == "carbonedge-monitor-s1" and broker.cert_file == etc / "analytics-plant-server-1.crt"
    broker.tls_context()
    assert cfg.influx_auth() == ("analytics", "a-long-analytics-password")
