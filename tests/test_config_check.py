"""``carbonedge config check``: the config and every file it refers to, all problems in one run."""

from __future__ import annotations

import os

from carbonedge.app import cli


def _write(tmp_path, gateway: str = "", mqtt: str = "", tls: str = "", profile: str = "eastron-sdm630"):  # type: ignore[no-untyped-def]
    f = tmp_path / "gw.toml"
    f.write_text(f'[gateway]\nsite = "s1"\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n{gateway}\n[mqtt]\n{mqtt}\n'
                 + (f"[mqtt.tls]\n{tls}\n" if tls else "") + f'[[devices]]\nid = "m1"\nprofile = "{profile}"\n')
    return f


def test_every_missing_file_and_every_schema_problem_in_one_run(tmp_path, capsys):
    m = tmp_path / "missing"
    f = _write(tmp_path, gateway=f'signing_key = "{m}/gw1.key"', mqtt=f'username = "gw1"\npassword_file = "{m}/pw"',
               tls=f'ca_file = "{m}/ca.crt"\ncert_file = "{m}/gw.crt"\nkey_file = "{m}/gw.key"', profile="no-such-meter")
    assert cli.main(["config", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert "6 problem(s)" in err
    for key in ("gateway.signing_key", "mqtt.password_file", "mqtt.tls.ca_file", "mqtt.tls.cert_file", "mqtt.tls.key_file",
                "unknown meter profile 'no-such-meter'"):
        assert key in err, key
    assert "Traceback" not in err


def test_files_that_exist_but_are_wrong(tmp_path, capsys):
    key = tmp_path / "gw1.key"
    assert cli.main(["keys", "new", str(key), "--site", "s1", "--gateway", "gw1"]) == 0
    os.chmod(key, 0o644)  # readable by everyone: anyone could forge this gateway's data
    pw = tmp_path / "pw"
    pw.write_text("\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    f = _write(tmp_path, gateway=f'signing_key = "{key}"', mqtt=f'username = "gw1"\npassword_file = "{pw}"', tls=f'ca_file = "{ca}"')
    capsys.readouterr()
    assert cli.main(["config", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert "3 problem(s)" in err and "chmod 600" in err and "the file is empty" in err and "not a PEM CA certificate" in err


def test_a_good_config_with_its_files_passes(tmp_path, capsys):
    key = tmp_path / "gw1.key"
    assert cli.main(["keys", "new", str(key), "--site", "s1", "--gateway", "gw1"]) == 0
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    f = _write(tmp_path, gateway=f'signing_key = "{key}"', mqtt=f'username = "gw1"\npassword_file = "{pw}"')
    capsys.readouterr()
    assert cli.main(["config", "check", str(f)]) == 0
    assert "OK" in capsys.readouterr().out


# --------------------------------------------------------------------------- every kind of settings file


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _check(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = cli.main(["config", "check", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_each(err: str, source: str) -> list[str]:
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    # Every problem is one line "source: key: reason"; the last line counts them.
    assert all(ln.split(": ", 1)[0].endswith(source) or "(environment)" in ln for ln in lines), err
    return lines[:-1]


def test_collector_settings_every_problem_in_one_run(tmp_path, capsys, monkeypatch):
    f = tmp_path / "collector.toml"
    f.write_text('[mqtt]\nport = 8883\nusername = "c1"\npassword_file = "/nonexistent/pw"\n[mqtt.tls]\nca_file = "/nonexistent/ca.crt"\n'
                 'cert_file = "/nonexistent/c.crt"\n[influx]\nurl = "not a url"\n[collector]\nspool_max_mb = -1\ncolour = "blue"\n')
    monkeypatch.setenv("CARBONEDGE_COLLECTOR__INFLUX__DATABASE", "no spaces allowed")
    monkeypatch.setenv("CARBONEDGE_COLLECTOR__INFLUX__PASSWORD", "never-from-env")
    code, _out, err = _check(capsys, str(f))
    assert code == 2
    problems = _one_line_each(err, "collector.toml")
    expected = ["mqtt.password_file = '/nonexistent/pw': no such file", "mqtt.tls.ca_file = '/nonexistent/ca.crt': no such file",
                "mqtt.tls: cert_file and key_file go together", "influx.url: Input should be a valid URL",
                "collector.spool_max_mb: Input should be greater than 0", "collector.colour: unknown key (check the spelling); known: ",
                "CARBONEDGE_COLLECTOR__INFLUX__DATABASE (environment): influx.database:",
                "CARBONEDGE_COLLECTOR__INFLUX__PASSWORD (environment): influx.password: secrets are not read from the environment"]
    for e in expected:
        assert any(e in p for p in problems), (e, err)
    assert f"{len(problems)} problem(s) in this collector file" in err


def test_the_shipped_collector_example_passes_with_its_files(tmp_path, capsys, monkeypatch, deploy_etc):
    etc = deploy_etc("collector", "plant-server-1")
    f = tmp_path / "collector.toml"
    f.write_text((REPO / "deploy" / "collector" / "collector.example.toml").read_text().replace("/etc/carbonedge/", f"{etc}/"))
    monkeypatch.setenv("CARBONEDGE_COLLECTOR__COLLECTOR__STATE_DIR", str(tmp_path / "state-2"))
    monkeypatch.setenv("CARBONEDGE_COLLECTOR__MQTT__CLIENT_ID", "collector-2")
    code, out, err = _check(capsys, str(f))
    assert code == 0, err
    assert "collector collector-2: broker 127.0.0.1:8883 (TLS with a client certificate)" in out and str(tmp_path / "state-2") in out


def test_scenario_schema_and_plant_problems(tmp_path, capsys):
    f = tmp_path / "sc.toml"
    f.write_text('[scenario]\nplant = "steel"\nduration = "a while"\nspeed = 0\n[calendar]\nshift = "Mon-Fri 06:00-22:00"\n')
    code, _out, err = _check(capsys, str(f))
    problems = _one_line_each(err, "sc.toml")
    assert code == 2 and len(problems) == 3
    assert "scenario.duration: 'a while' is not a duration" in err and "scenario.speed" in err and "calendar.shift: unknown key" in err
    # Schema fine, but a fault that does not fit the plant: found by building the plant (no time simulated).
    f.write_text('[scenario]\nplant = "steel"\n[[faults]]\nkind = "stuck_meter"\ndevice = "nope-meter"\nstart = "1h"\n')
    code, _out, err = _check(capsys, str(f))
    assert code == 2 and "no device 'nope-meter'" in err
    for name in ("steel-week-faults", "battery-default"):
        code, out, err = _check(capsys, str(REPO / "simulators" / "scenarios" / f"{name}.toml"))
        assert code == 0 and f"scenario {name}" in out, err


def test_carbon_settings_and_their_factors(tmp_path, capsys):
    f = tmp_path / "carbon.toml"
    f.write_text('[carbon]\ngrid_factor = "cn.grid.nope"\nextra_factor_files = ["/nonexistent/site-factors.json"]\n')
    code, _out, err = _check(capsys, str(f))
    assert code == 2
    assert "carbon.extra_factor_files.0 = '/nonexistent/site-factors.json': no such file" in err
    assert "carbon.grid_factor: unknown emission factor 'cn.grid.nope'" in err
    f.write_text('[carbon]\ngrid_factor = "cn.grid.nope"\n[tariff]\npf_threshold = 2\n')
    code, _out, err = _check(capsys, str(f))
    assert code == 2 and "carbon.toml: tariff.pf_threshold: Input should be less than or equal to 1" in err
    assert "carbon.grid_factor: unknown emission factor" in err  # found in the same run
    f.write_text("[carbon]\n")
    assert _check(capsys, str(f))[0] == 0


def test_plant_model_structure(tmp_path, capsys):
    import json

    plant = {"site": "s1", "plant": "steel", "sec_unit": "kWh/t", "energy_quantity": "active_energy_import", "output_process": "caster",
             "processes": {"eaf": {"meters": ["m1"], "counters": ["c1"], "production_unit": "t"},
                           "caster": {"meters": ["m2"], "counters": ["c2"], "production_unit": "t"}}}
    f = tmp_path / "plant.json"
    f.write_text(json.dumps(plant))
    code, out, err = _check(capsys, str(f))
    assert code == 0 and "2 processes, 2 energy meters, 2 production counters" in out, err
    plant["energy_quantity"] = "kwh"
    f.write_text(json.dumps(plant))
    code, _out, err = _check(capsys, str(f))
    assert code == 2 and len(_one_line_each(err, "plant.json")) == 1 and "energy_quantity" in err
    # Cross-field rules run once every field is valid; then all of their problems come out together.
    plant["energy_quantity"] = "active_energy_import"
    plant["processes"]["caster"]["meters"] = ["m1"]
    plant["output_process"] = "mill"
    f.write_text(json.dumps(plant))
    code, _out, err = _check(capsys, str(f))
    assert code == 2 and "counted twice" in err and "mill" in err, err


def test_unknown_kind_and_broken_files_are_one_line(tmp_path, capsys):
    f = tmp_path / "x.toml"
    f.write_text('[something]\na = 1\n')
    code, _out, err = _check(capsys, str(f))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--kind" in err
    f.write_text('[gateway\n')
    code, _out, err = _check(capsys, str(f))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not valid TOML" in err
    # --kind names the kind when the contents do not tell it.
    f.write_text('[mqtt]\nhost = "b"\n')
    code, out, err = _check(capsys, str(f), "--kind", "collector")
    assert code == 0, err


def test_environment_overrides_follow_one_rule(tmp_path):
    """CARBONEDGE_<KIND>__SECTION__KEY overrides a file's key; flags override both; secrets never come from the environment."""
    from carbonedge.collector.settings import load_collector_config
    from carbonedge.errors import ConfigError
    from carbonedge.edge.config import load_config

    f = tmp_path / "collector.toml"
    f.write_text('[influx]\nurl = "http://db:8086"\n[mqtt]\nport = 1883\n')
    env = {"CARBONEDGE_COLLECTOR__INFLUX__URL": "http://other:8086", "CARBONEDGE_COLLECTOR__MQTT__PORT": "8883",
           "CARBONEDGE_GATEWAY__MQTT__PORT": "1", "CARBONEDGE_INFLUX_PASSWORD": "unrelated"}
    cfg = load_collector_config(f, environ=env, overrides=[(("mqtt", "port"), 9999, "--mqtt-port (command line)")])
    assert str(cfg.influx.url) == "http://other:8086/" and cfg.mqtt.port == 9999
    with __import__("pytest").raises(ConfigError) as e:
        load_collector_config(f, environ={"CARBONEDGE_COLLECTOR__MQTT__PASSWORD": "x", "CARBONEDGE_COLLECTOR__MQTT__PORT": "0"})
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and "secrets are not read from the environment" in lines[0]
    assert lines[1].startswith("CARBONEDGE_COLLECTOR__MQTT__PORT (environment): mqtt.port: ")
    gw = tmp_path / "gw.toml"
    gw.write_text('[gateway]\nsite = "s1"\nid = "gw1"\n[[devices]]\nid = "m1"\nprofile = "eastron-sdm630"\n')
    assert load_config(gw, environ={"CARBONEDGE_GATEWAY__MQTT__HOST": "broker.plant", "CARBONEDGE_GATEWAY__GATEWAY__POLL_INTERVAL_S": "5"}
                       ).mqtt.host == "broker.plant"
