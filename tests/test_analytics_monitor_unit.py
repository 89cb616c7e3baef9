"""The monitor's meter-data checks on hand-made poll cycles (no servers needed)."""

from __future__ import annotations

import json

from carbonedge.analytics.monitor import PlantMonitor
from carbonedge.analytics.monitor import state as monitor_state

T0 = 1_767_571_200_000
POLL = 60_000
METERS = [f"m{i}" for i in range(6)]
PLANT = {"site": "s", "processes": {"melt": {"meters": METERS[:3], "counters": []}, "roll": {"meters": METERS[3:], "counters": []}}}


def _cycle(i: int, present: list[str]) -> dict[str, dict[str, float]]:
    return {d: {"active_power": 100.0, "active_energy_import": 1000.0 + 100.0 * i / 60} for d in present}


def _run(silent: dict[str, range], polls: int = 60) -> tuple[PlantMonitor, list]:
    mon = PlantMonitor(PLANT)
    events = []
    for i in range(polls):
        present = [d for d in METERS if i not in silent.get(d, range(0))]
        events += mon.step(T0 + i * POLL, _cycle(i, present))
    return mon, events


def _comm(events: list) -> list:
    return [e for e in events if e.alert.kind == "comm_loss"]


def test_meters_falling_silent_together_are_one_alert_and_it_resolves_when_they_answer() -> None:
    mon, events = _run({d: range(20, 30) for d in METERS[:4]})
    ev = _comm(events)
    assert [(e.state, e.alert.device) for e in ev] == [("open", None), ("resolved", None)], [e.alert.message for e in ev]
    assert "4 devices stopped answering together" in ev[0].alert.message and "m0, m1, m2, m3" in ev[0].alert.message
    assert ev[0].ts_ms == T0 + 22 * POLL and ev[1].ts_ms == T0 + 30 * POLL
    assert not mon.alerts.open_alerts


def test_one_meter_still_silent_when_the_rest_answer_gets_its_own_alert() -> None:
    _, events = _run({"m0": range(20, 45), "m1": range(20, 30), "m2": range(20, 30), "m3": range(20, 30)})
    ev = [(e.state, e.alert.device, e.ts_ms) for e in _comm(events)]
    assert ev == [("open", None, T0 + 22 * POLL), ("resolved", None, T0 + 30 * POLL),
                  ("open", "m0", T0 + 30 * POLL), ("resolved", "m0", T0 + 45 * POLL)], ev


def test_a_single_silent_meter_is_reported_by_name() -> None:
    _, events = _run({"m4": range(10, 15)})
    ev = _comm(events)
    assert [(e.state, e.alert.device) for e in ev] == [("open", "m4"), ("resolved", "m4")]
    assert ev[0].alert.message.startswith("m4 has not answered since")


def test_state_saved_while_a_group_is_silent_resumes() -> None:
    mon = PlantMonitor(PLANT)
    for i in range(26):
        mon.step(T0 + i * POLL, _cycle(i, METERS[4:] if i >= 20 else METERS))
    # Through the JSON state document, as the live job saves and restores it.
    mon = PlantMonitor.from_state(PLANT, json.loads(monitor_state.dumps(mon.to_state()))["body"])
    events = []
    for i in range(26, 40):
        events += mon.step(T0 + i * POLL, _cycle(i, METERS))
    assert [(e.state, e.alert.device) for e in _comm(events)] == [("resolved", None)]
