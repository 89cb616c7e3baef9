import time

import pytest

from carbonedge.clock import ClockSpec, VirtualClock, parse_time
from carbonedge.errors import ConfigError
from carbonedge.edge.config import load_config


def test_clock_spec_round_trip_and_speed():
    spec = ClockSpec(start=parse_time("2026-01-05T00:00:00Z"), speed=3600.0, origin=time.time() - 2.0)
    again = ClockSpec.parse(spec.to_arg())
    assert again.start == spec.start and again.speed == spec.speed
    assert abs(again.origin - spec.origin) < 1e-5
    now = VirtualClock(spec).now()
    assert 7000 < now - spec.start < 7400  # about two hours of plant time in two wall seconds


def test_clock_holds_before_origin_and_after_end():
    start = parse_time("2026-01-05T00:00:00Z")
    c = VirtualClock(ClockSpec(start=start, speed=100.0, origin=time.time() + 60))
    assert c.now() == start
    c = VirtualClock(ClockSpec(start=start, speed=100.0, origin=time.time() - 60, end=start + 10))
    assert c.now() == start + 10


def test_config_errors_name_the_file_and_the_key(tmp_path):
    f = tmp_path / "gw.toml"
    f.write_text(
        '[gateway]\nsite = "plant a"\nid = "gw1"\n\n[[devices]]\nid = "m1"\nprofile = "no-such-meter"\nport = 70000\n'
    )
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert str(f) in msg
    assert "gateway.site" in msg
    assert "devices[id=m1].profile" in msg and "unknown meter profile" in msg
    assert "devices[id=m1].port" in msg


def test_config_rejects_duplicate_devices(tmp_path):
    f = tmp_path / "gw.toml"
    f.write_text('[gateway]\nsite = "a"\nid = "gw1"\n' + '[[devices]]\nid = "m1"\nprofile = "eastron-sdm630"\n' * 2)
    with pytest.raises(ConfigError, match="used twice"):
        load_config(f)
