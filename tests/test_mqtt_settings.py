"""The MQTT client factory's settings: files it cannot use are named in one clear error, before any connection."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from carbonedge.errors import ConfigError
from carbonedge.mqtt import BrokerSettings, ConnectionWatch, make_client


def test_the_password_comes_from_the_file_first_line(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    assert BrokerSettings(username="u", password_file=f).secret() == "s3cret"
    assert "s3cret" not in repr(BrokerSettings(username="u", password="s3cret"))


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_an_unusable_password_file_is_named(tmp_path: Path, case: str) -> None:
    f = tmp_path / "pw"
    if case == "empty":
        f.write_text("\n")
    with pytest.raises(ConfigError, match=f"^{f}: .*(cannot read|empty)"):
        make_client(BrokerSettings(username="u", password_file=f), who="test", log=logging.getLogger("t"))


def test_unusable_certificates_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "client.crt"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=f"^{bad}: cannot use it as the MQTT client certificate"):
        make_client(BrokerSettings(cert_file=bad, key_file=tmp_path / "client.key"), who="test", log=logging.getLogger("t"))
    with pytest.raises(ConfigError, match="cannot use it as the MQTT CA certificate"):
        BrokerSettings(ca_file=tmp_path / "missing-ca.crt").tls_context()
    with pytest.raises(ConfigError, match="needs its certificate"):
        BrokerSettings(tls=True, key_file=tmp_path / "client.key").tls_context()


def test_a_refusal_in_connack_is_counted_as_auth_with_the_hint(caplog: pytest.LogCaptureFixture) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    kinds: list[str] = []
    w = ConnectionWatch("analytics", "broker", 8883, logging.getLogger("t"), auth_hint="the analytics certificate", count=kinds.append)
    assert not w.connack(ReasonCode(PacketTypes.CONNACK, identifier=0x87))
    assert kinds == ["auth"] and "Not authorized" in (w.last_error or "") and "the analytics certificate" in caplog.text
    assert w.connack(ReasonCode(PacketTypes.CONNACK, identifier=0)) and w.last_error is None
    assert "connected to MQTT broker broker:8883 after 1 failed attempt(s)" in caplog.text
