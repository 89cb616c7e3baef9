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
