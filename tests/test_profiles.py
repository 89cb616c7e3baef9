import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbonedge import profiles
from carbonedge.profiles import PointSpec, Profile

DTYPES = ["uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"]


@given(st.sampled_from(DTYPES), st.sampled_from(["big", "little"]), st.integers(min_value=0, max_value=2**15 - 1))
def test_encode_decode_round_trip_integers(dtype, order, raw):
    p = PointSpec("x", 0, dtype, 1.0, order, quantity=None)
    assert profiles.decode_point(p, profiles.encode_point(p, float(raw))) == raw


@given(st.sampled_from(["big", "little"]), st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_float32_round_trip(order, value):
    p = PointSpec("x", 0, "float32", 1.0, order, quantity=None)
    assert profiles.decode_point(p, profiles.encode_point(p, value)) == value


@given(st.sampled_from(["big", "little"]), st.floats(allow_nan=False, allow_infinity=False))
def test_float64_round_trip(order, value):
    p = PointSpec("x", 0, "float64", 1.0, order, quantity=None)
    assert profiles.decode_point(p, profiles.encode_point(p, value)) == value


def test_word_order_is_what_the_meter_sends():
    big = PointSpec("x", 0, "uint32", 1.0, "big", quantity=None)
    little = PointSpec("x", 0, "uint32", 1.0, "little", quantity=None)
    assert profiles.encode_point(big, 0x12345678) == [0x1234, 0x5678]
    assert profiles.encode_point(little, 0x12345678) == [0x5678, 0x1234]
    # SDM630: 230.5 V as float32 ABCD
    assert profiles.encode_point(profiles.EASTRON_SDM630.by_name["voltage_l1_n"], 230.5) == [0x4366, 0x8000]


def test_uint32_counter_rolls_over_like_a_register():
    p = profiles.PLC_LINE_COUNTER.by_name["production_mass"]  # uint32 kg -> t
    modulus = profiles.counter_modulus(p)
    assert modulus == pytest.approx(4_294_967.296)
    assert profiles.decode_point(p, profiles.encode_point(p, modulus + 1.5)) == pytest.approx(1.5)


def test_abb_not_available_pattern_decodes_to_none():
    p = profiles.ABB_B_SERIES.by_name["voltage_l1_n"]
    assert profiles.decode_point(p, [0xFFFF, 0xFFFF]) is None
    assert profiles.decode_point(p, profiles.encode_point(p, 231.4)) == pytest.approx(231.4)


@pytest.mark.parametrize("profile", list(profiles.PROFILES.values()), ids=lambda p: p.name)
def test_read_plan_covers_every_point_within_modbus_limits(profile):
    plan = profiles.read_plan(profile)
    covered = [pt.name for b in plan for pt in b.points]
    assert sorted(covered) == sorted(p.name for p in profile.points)
    for b in plan:
        assert 1 <= b.count <= profiles.MAX_REGISTERS_PER_READ
        for pt in b.points:
            assert b.start <= pt.address and pt.address + pt.width <= b.start + b.count


@pytest.mark.parametrize("profile", list(profiles.PROFILES.values()), ids=lambda p: p.name)
def test_block_decode_matches_point_encode(profile):
    """Serve a whole profile as a meter would, read it with the plan: every value comes back."""
    values = {p.name: float(7 + i) for i, p in enumerate(profile.points)}
    regs: dict[tuple[str, int], int] = {}
    for p in profile.points:
        for i, w in enumerate(profiles.encode_point(p, values[p.name])):
            regs[(profile.table_of(p), p.address + i)] = w
    for b in profiles.read_plan(profile):
        block = [regs.get((b.table, b.start + i), 0) for i in range(b.count)]
        for name, v in profiles.decode_block(b, block).items():
            assert v is not None and math.isclose(v, values[name], rel_tol=1e-6)


def test_overlapping_points_are_a_configuration_error():
    with pytest.raises(ValueError, match="overlap"):
        Profile("bad", "x", "x", "holding", (PointSpec("active_power", 0, "float32"), PointSpec("frequency", 1, "float32")))


def test_unknown_quantity_is_a_configuration_error():
    with pytest.raises(KeyError, match="unknown quantity"):
        Profile("bad", "x", "x", "holding", (PointSpec("watts", 0, "float32"),))


def test_two_tariff_meter_publishes_the_sum():
    prof = profiles.SIEMENS_PAC3200
    out = profiles.publishable(prof, {"active_energy_import_t1": 10.0, "active_energy_import_t2": 2.5, "active_energy_export_t1": 0.0, "active_energy_export_t2": 0.0})
    assert out["active_energy_import"] == 12.5
    assert "active_energy_import_t1" not in out
