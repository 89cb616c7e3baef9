"""Outdoor conditions in the monitor's expected power: weather-driven loads on hand-made poll cycles (no servers needed).

A dry room's cooling follows the outdoor temperature above 12 °C (the battery simulator's model). The
monitor learns one mild day, then sees a warmer afternoon: with the plant's weather station that is
expected, without it it looks like excess energy. A real excess at the same weather still alerts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from carbonedge.analytics.monitor import PlantMonitor

T0 = 1_767_571_200_000  # 2026-01-05 00:00 UTC
POLL = 60_000
WEATHER = {"device": "wx", "temperature": "outdoor_temperature", "humidity": "outdoor_humidity", "dew_point": "outdoor_dew_point"}


def _plant(weather: bool) -> dict:
    plant = {"site": "s", "processes": {"dry_room": {"meters": ["dry"], "counters": []}, "lighting": {"meters": ["light"], "counters": []}}}
    if weather:
        plant["weather"] = WEATHER
    return plant


def _temperature(i: int, warm: float) -> float:
    """Outdoor °C at poll ``i``: 12 ± 4 °C daily swing (day 1), the second afternoon up to ``warm`` °C warmer."""
    h = (i % 1440) / 60.0
    t = 12.0 + 4.0 * math.sin((h - 9.0) / 24.0 * 2 * math.pi)
    if i >= 1440:
        t += warm * max(math.sin((h - 9.0) / 24.0 * 2 * math.pi), 0.0)
    return t


def _run(weather: bool, *, warm: float = 4.0, extra_kw: float = 0.0, extra: range = range(0), silent: range = range(0),
         days: float = 2.0) -> tuple[PlantMonitor, list]:
    rng = np.random.default_rng(5)
    mon = PlantMonitor(_plant(weather))
    e_dry = e_light = 1000.0
    events = []
    for i in range(int(days * 1440)):
        temp = _temperature(i, warm)
        p_dry = (200.0 + 9.0 * max(temp - 12.0, 0.0)) * (1.0 + 0.01 * rng.standard_normal()) + (extra_kw if i in extra else 0.0)
        p_light = 50.0 * (1.0 + 0.01 * rng.standard_normal())
        e_dry += p_dry / 60.0
        e_light += p_light / 60.0
        cycle = {"dry": {"active_power": p_dry, "active_energy_import": e_dry}, "light": {"active_power": p_light, "active_energy_import": e_light}}
        if i not in silent:
            cycle["wx"] = {"outdoor_temperature": round(temp, 1), "outdoor_humidity": 80.0, "outdoor_dew_point": round(5.0 + 0.2 * rng.standard_normal(), 1)}
        events += mon.step(T0 + i * POLL, cycle)
    return mon, events


def _energy(events: list, process: str = "dry_room") -> list:
    return [e for e in events if e.alert.kind in ("excess_energy", "idle_running") and e.alert.process == process and e.state == "open"]


# Day 2, 12:00-15:00: the warm afternoon.
AFTERNOON = range(1440 + 12 * 60, 1440 + 15 * 60)


def test_a_warm_afternoon_raises_the_expectation_instead_of_an_alert() -> None:
    mon, events = _run(weather=True)
    # The rise is real and large: without the weather station the same data alerts.
    _, plain = _run(weather=False)
    assert _energy(plain), "the warm afternoon should look like excess without outdoor conditions"
    assert not _energy(events), [e.alert.message for e in _energy(events)]
    # Decided from the data: the dry room follows the weather, the lighting does not.
    assert mon.models["dry_room"].weather is not None and mon.models["dry_room"].weather.r2 > 0.8
    assert mon.models["lighting"].weather is None


def test_a_real_excess_at_the_same_weather_still_alerts() -> None:
    _, events = _run(weather=True, extra_kw=30.0, extra=AFTERNOON)
    opened = _energy(events)
    assert opened and AFTERNOON.start * POLL + T0 <= opened[0].ts_ms <= (AFTERNOON.start + 60) * POLL + T0, opened
    msg = opened[0].alert.message
    assert "°C outdoors" in msg and "kWh above normal" in msg, msg


def test_a_silent_weather_station_falls_back_and_still_alerts() -> None:
    # No weather reading on day 2: the monitor neither raises nor goes quiet; a large excess still alerts.
    mon, events = _run(weather=True, warm=0.0, extra_kw=60.0, extra=AFTERNOON, silent=range(1440, 2880))
    assert mon.weather_now(T0 + 2000 * POLL) is None
    opened = _energy(events)
    assert opened and "°C outdoors" not in opened[0].alert.message, [e.alert.message for e in opened]
    assert [e.alert.device for e in events if e.alert.kind == "comm_loss"] == ["wx"]


def test_an_implausible_weather_reading_is_ignored() -> None:
    mon = PlantMonitor(_plant(True))
    mon.step(T0, {"wx": {"outdoor_temperature": 12.0, "outdoor_dew_point": 5.0}})
    mon.step(T0 + POLL, {"wx": {"outdoor_temperature": 3276.7, "outdoor_dew_point": 5.0}})  # a transmitter's error code
    wx = mon.weather_now(T0 + POLL)
    assert wx is not None and wx.tolist() == [12.0, 5.0]
    assert mon.weather_now(T0 + POLL + 3_600_000) is None  # too old to count


def test_the_weather_term_keeps_learning_after_the_learning_day_and_resumes_from_json() -> None:
    import json

    from carbonedge.analytics.monitor import state as monitor_state

    # Four days: the term fitted on Monday is fitted again on every calm interval so far each day after.
    mon, events = _run(weather=True, warm=3.0, days=4.0)
    ps = mon.energy.pstate["dry_room"]
    assert ps.refits >= 2 and len(ps.wlog) > 3 * 80, (ps.refits, len(ps.wlog))
    assert not _energy(events), [e.alert.message for e in _energy(events)]
    # The refitted term still describes the dry room (9 kW per °C above 12 °C in this data).
    term = mon.models["dry_room"].weather
    assert term is not None and term.r2 > 0.8
    assert term(np.array([20.0, 5.0])) - term(np.array([14.0, 5.0])) == pytest.approx(9.0 * 6.0, rel=0.15)
    # The lighting has no production counter either, so it learns online too, and finds no weather in its power.
    assert mon.models["lighting"].weather is None
    # The log and the next refit time travel in the JSON state.
    again = PlantMonitor.from_state(_plant(True), json.loads(monitor_state.dumps(mon.to_state()))["body"])
    assert again.energy.pstate["dry_room"].wlog == ps.wlog and again.energy.pstate["dry_room"].next_refit_ms == ps.next_refit_ms
