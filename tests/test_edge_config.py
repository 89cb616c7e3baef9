"""Gateway config validation: every problem named by file and key, custom profiles, example config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from carbonedge.errors import ConfigError
from carbonedge.edge.config import GatewayConfig, load_config

ROOT = Path(__file__).resolve().parent.parent


def _load(tmp_path: Path, text: str) -> GatewayConfig:
    f = tmp_path / "gw.toml"
    f.write_text('[gateway]\nsite = "a"\nid = "gw1"\n' + text)
    return load_config(f)


def _problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    return str(e.value)


def test_every_problem_is_named_by_key(tmp_path):
    msg = _problems(tmp_path, """
[mqtt]
password = "x"
colour = "blue"
[[devices]]
id = "line"
profile = "plc-line-counter"
driver = "modbus-rtu"
counter_limits = { active_power = 5 }
[[devices]]
id = "m2"
profile = "eastron-sdm630"
timeout_s = -1
""")
    assert "gw.toml" in msg
    assert "mqtt.colour: unknown key" in msg
    assert "devices[id=line].counter_limits: 'active_power' is not a counter quantity" in msg
    assert "devices[id=m2].timeout_s" in msg


def test_device_and_gateway_level_rules(tmp_path):
    assert "needs serial_port" in _problems(tmp_path, '[[devices]]\nid = "x"\nprofile = "eastron-sdm630"\ndriver = "modbus-rtu"\n')
    assert "a password needs a username" in _problems(tmp_path, '[mqtt]\npassword = "x"\n[[devices]]\nid = "x"\nprofile = "eastron-sdm630"\n')
    assert "whole multiple" in _problems(tmp_path, '[[devices]]\nid = "x"\nprofile = "eastron-sdm630"\npoll_interval_s = 1.5\n')
    assert "ca_file" in _problems(tmp_path, '[mqtt.tls]\nca_file = "/nonexistent/ca.crt"\n[[devices]]\nid = "x"\nprofile = "eastron-sdm630"\n')
    assert "cert_file and key_file go together" in _problems(
        tmp_path, f'[mqtt.tls]\ncert_file = "{tmp_path}/gw.toml"\n[[devices]]\nid = "x"\nprofile = "eastron-sdm630"\n')


def test_custom_profile_is_usable_and_checked(tmp_path):
    cfg = _load(tmp_path, """
[[profiles]]
name = "flow"
points = [ { name = "gas_flow", address = 0, dtype = "float32" }, { name = "gas_volume", address = 2, dtype = "uint32", scale = 0.01 } ]
[[devices]]
id = "f1"
profile = "flow"
word_order = "little"
poll_interval_s = 5
""")
    prof = cfg.profile_for(cfg.devices[0])
    assert [p.word_order for p in prof.points] == ["little", "little"]
    assert cfg.every_n_cycles(cfg.devices[0]) == 5
    msg = _problems(tmp_path, """
[[profiles]]
name = "flow"
points = [ { name = "gas_flow", address = 0, dtype = "float32" }, { name = "x", address = 1, dtype = "uint16", quantity = "nope" } ]
[[devices]]
id = "f1"
profile = "flo"
""")
    assert "unknown quantity 'nope'" in msg
    assert "unknown meter profile 'flo'" in msg and "flow" in msg


def test_password_file_is_read(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    cfg = _load(tmp_path, f'[mqtt]\nusername = "gw1"\npassword_file = "{pw}"\n[[devices]]\nid = "x"\nprofile = "eastron-sdm630"\n')
    assert cfg.mqtt.secret() == "s3cret"


def test_the_shipped_example_config_is_valid(tmp_path):
    data = tomllib.loads((ROOT / "deploy/edge/gateway.example.toml").read_text())
    # The certificate files exist only on a provisioned gateway: point them at stand-ins.
    for key in ("ca_file", "cert_file", "key_file"):
        f = tmp_path / key
        f.write_text("x")
        data["mqtt"]["tls"][key] = str(f)
    cfg = GatewayConfig.model_validate(data)
    assert {d.driver for d in cfg.devices} == {"modbus-tcp", "modbus-rtu"}
    assert cfg.profile_for(next(d for d in cfg.devices if d.id == "gas-main")).points[0].word_order == "little"
