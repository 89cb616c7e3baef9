"""Counter semantics on the gateway: exact rollover, explicit reset, flagged jumps, never a negative or a spike."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from carbonedge import profiles
from carbonedge.edge.counters import CounterTracker

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z in ms
MIN = 60_000
U32 = profiles.PointSpec("production_mass", 0, "uint32", 0.001)
MOD = profiles.counter_modulus(U32)  # 4,294,967.296 t


def test_rollover_gives_the_exact_delta_with_and_without_a_limit():
    for limit in (None, 600.0):  # t per hour
        tr = CounterTracker()
        near_top = MOD - 1.5
        assert tr.update("line", "production_mass", near_top, T0, modulus=MOD, max_per_hour=limit).value == near_top
        r = tr.update("line", "production_mass", 2.25, T0 + MIN, modulus=MOD, max_per_hour=limit)
        assert r.quality == "good"
        assert r.value is not None and abs((r.value - near_top) - 3.75) < 1e-6  # 1.5 up to the wrap, 2.25 after
        (ev,) = r.events
        assert ev.kind == "counter_rollover" and abs(float(ev.detail["delta"]) - 3.75) < 1e-6  # type: ignore[arg-type]
        # and it keeps counting on the unwrapped scale
        r2 = tr.update("line", "production_mass", 3.25, T0 + 2 * MIN, modulus=MOD, max_per_hour=limit)
        assert r2.value is not None and abs(r2.value - (near_top + 4.75)) < 1e-6 and not r2.events


def test_reset_emits_an_event_and_never_a_negative_or_spike():
    tr = CounterTracker()
    tr.update("m", "active_energy_import", 150_000.0, T0, modulus=None, max_per_hour=None)
    r = tr.update("m", "active_energy_import", 12.0, T0 + MIN, modulus=None, max_per_hour=None)
    (ev,) = r.events
    assert ev.kind == "counter_reset" and ev.detail["raw_before"] == 150_000.0 and ev.detail["raw_after"] == 12.0
    assert r.value == 150_000.0  # no limit known: the increase across the reset counts as zero, never a spike
    r = tr.update("m", "active_energy_import", 13.5, T0 + 2 * MIN, modulus=None, max_per_hour=None)
    assert r.value == 150_001.5 and not r.events

    # With the rated power known, a small restart value is plausible and counted.
    tr = CounterTracker()
    tr.update("m", "active_energy_import", 150_000.0, T0, modulus=None, max_per_hour=1000.0)
    r = tr.update("m", "active_energy_import", 12.0, T0 + MIN, modulus=None, max_per_hour=1000.0)
    assert r.value == 150_012.0 and r.events[0].detail["assumed_delta"] == 12.0


def test_a_big_unsigned_drop_that_is_not_near_the_top_is_a_reset_not_a_rollover():
    tr = CounterTracker()
    tr.update("line", "production_mass", 2_000_000.0, T0, modulus=MOD, max_per_hour=None)
    r = tr.update("line", "production_mass", 5.0, T0 + MIN, modulus=MOD, max_per_hour=None)
    assert r.events[0].kind == "counter_reset" and r.value == 2_000_000.0


def test_torn_read_is_flagged_and_recovers():
    tr = CounterTracker()
    lim = 1000.0  # kW rated: at most 1500 kWh/h
    tr.update("m", "active_energy_import", 5000.0, T0, modulus=None, max_per_hour=lim)
    r = tr.update("m", "active_energy_import", 5000.0 + 1e6, T0 + MIN, modulus=None, max_per_hour=lim)
    assert r.value is None and r.quality == "bad" and r.events[0].kind == "implausible"
    r = tr.update("m", "active_energy_import", 5020.0, T0 + 2 * MIN, modulus=None, max_per_hour=lim)
    assert r.value == 5020.0 and r.quality == "good" and not r.events


def test_a_persistent_jump_is_rebased_without_counting_it():
    tr = CounterTracker()
    lim = 1000.0
    tr.update("m", "active_energy_import", 5000.0, T0, modulus=None, max_per_hour=lim)
    values = [90_000.0, 90_010.0, 90_020.0]
    results = [tr.update("m", "active_energy_import", v, T0 + (i + 1) * MIN, modulus=None, max_per_hour=lim) for i, v in enumerate(values)]
    assert [r.quality for r in results] == ["bad", "bad", "good"]
    assert results[-1].events[0].detail["action"] == "rebased"
    assert results[-1].value == 5020.0  # the 85 MWh step is not counted; the 20 kWh after it are
    r = tr.update("m", "active_energy_import", 90_030.0, T0 + 4 * MIN, modulus=None, max_per_hour=lim)
    assert r.value == 5030.0 and not r.events


def test_state_round_trips_through_rows():
    tr = CounterTracker()
    tr.update("line", "production_mass", MOD - 1, T0, modulus=MOD, max_per_hour=None)
    tr.update("line", "production_mass", 1.0, T0 + MIN, modulus=MOD, max_per_hour=None)
    again = CounterTracker(tr.take_dirty())
    r = again.update("line", "production_mass", 2.0, T0 + 2 * MIN, modulus=MOD, max_per_hour=None)
    assert r.value is not None and abs(r.value - (MOD + 2.0)) < 1e-6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 50), st.just(-1)), min_size=1, max_size=60))
def test_published_total_never_decreases_and_never_jumps(steps):
    """Any mix of increments (wrapping a u16 counter that starts near its top) and resets (-1):
    the published series only grows, never by more than the meter really counted, and is exact
    when there is no reset."""
    mod = 65536.0
    tr = CounterTracker()
    raw, ts = mod - 120.0, T0
    prev = tr.update("d", "production_count", raw, ts, modulus=mod, max_per_hour=10_000.0).value
    start, true_total, resets = prev, 0.0, 0
    for s in steps:
        ts += MIN
        if s == -1:
            # The register drops to half (a meter swap): not a wrap (far too much for a minute), so a
            # reset whose increase is unknown and counted as zero.
            if raw >= 1000:
                raw, resets = float(raw // 2), resets + 1
            real_inc = 0.0
        else:
            raw, true_total, real_inc = raw + s, true_total + s, float(s)
            if raw >= mod:
                raw -= mod
        r = tr.update("d", "production_count", raw, ts, modulus=mod, max_per_hour=10_000.0)
        assert r.value is not None and prev is not None
        assert prev <= r.value <= prev + real_inc
        prev = r.value
    if resets == 0:
        assert prev == start + true_total
