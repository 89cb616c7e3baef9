"""The monitor's JSON state: a restored monitor continues exactly; old pickles, damaged and invalid files are refused in one line."""

from __future__ import annotations

import json
import math
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest

from carbonedge.analytics.live import MonitorJob
from carbonedge.analytics.monitor import MonitorStateError, PlantMonitor
from carbonedge.analytics.monitor import state as monitor_state

T0 = 1_767_571_200_000  # 2026-01-05 00:00 UTC
POLL = 60_000
WEATHER = {"device": "wx", "temperature": "outdoor_temperature", "dew_point": "outdoor_dew_point"}
PLANT = {"site": "s", "weather": WEATHER, "processes": {
    "line": {"meters": ["line-meter"], "counters": ["line-plc"], "production_unit": "t"},
    "dry_room": {"meters": ["dry"], "counters": []},
}}


def _cycles(n: int, *, extra_from: int | None = None) -> list[tuple[int, dict]]:
    """A production line with shifts, a dry room that follows the outdoor temperature, a weather station."""
    rng = np.random.default_rng(7)
    e_line = e_dry = 5000.0
    made = 0.0
    out = []
    for i in range(n):
        h = (i % 1440) / 60.0
        on = 6.0 <= h < 22.0
        temp = 12.0 + 5.0 * math.sin((h - 9.0) / 24.0 * 2 * math.pi)
        p_line = (400.0 if on else 40.0) * (1.0 + 0.02 * rng.standard_normal())
        p_dry = (200.0 + 9.0 * max(temp - 12.0, 0.0)) * (1.0 + 0.01 * rng.standard_normal())
        if extra_from is not None and i >= extra_from:
            p_dry += 80.0
        made += 0.5 if on else 0.0
        e_line += p_line / 60.0
        e_dry += p_dry / 60.0
        out.append((T0 + i * POLL, {
            "line-meter": {"active_power": p_line, "active_energy_import": e_line},
            "line-plc": {"production_mass": made, "running": 1.0 if on else 0.0},
            "dry": {"active_power": p_dry, "active_energy_import": e_dry},
            "wx": {"outdoor_temperature": round(temp, 1), "outdoor_dew_point": 5.0},
        }))
    return out


def _events(evs: list) -> list[tuple]:
    return [(e.alert.alert_id, e.state, e.ts_ms, e.alert.severity, e.alert.message) for e in evs]


@pytest.mark.parametrize("cut", [600, 1500, 1900])  # while learning, after learning, during an open alert
def test_a_monitor_restored_from_its_json_state_continues_exactly(cut: int) -> None:
    cycles = _cycles(2200, extra_from=1800)
    whole = PlantMonitor(PLANT)
    ev_whole = [e for t, r in cycles for e in whole.step(t, r)]
    assert any(e.alert.kind == "excess_energy" and e.alert.process == "dry_room" for e in ev_whole), "the test needs an energy alert"
    first = PlantMonitor(PLANT)
    ev = [e for t, r in cycles[:cut] for e in first.step(t, r)]
    doc = json.loads(monitor_state.dumps(first.to_state()))["body"]  # strict JSON, through text
    again = PlantMonitor.from_state(PLANT, doc)
    ev += [e for t, r in cycles[cut:] for e in again.step(t, r)]
    assert _events(ev) == _events(ev_whole)
    assert again.process_totals() == whole.process_totals()


def _job(tmp_path: Path, plant: dict | None = None) -> MonitorJob:
    return MonitorJob(reader=None, plant=plant or PLANT, state_path=tmp_path / "monitor.state")  # type: ignore[arg-type]


def _saved(tmp_path: Path) -> Path:
    job = _job(tmp_path)
    job.monitor = PlantMonitor(PLANT)
    for t, r in _cycles(1600):
        job.monitor.step(t, r)
    job.watermark_ms, job.seen = _cycles(1600)[-1][0], {"gw1": 1599}
    job._save()
    return job.state_path  # type: ignore[return-value]


def test_state_file_is_json_private_to_its_owner_and_resumes(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["format"] == "carbonedge-monitor-state" and doc["version"] == monitor_state.VERSION
    assert not list(tmp_path.glob("*.tmp"))
    job = _job(tmp_path)
    assert job.monitor is not None and not job.monitor.learning and job.watermark_ms == T0 + 1599 * POLL and job.seen == {"gw1": 1599}
    assert set(job.monitor.models) == {"line", "dry_room"} and job.monitor.models["dry_room"].weather is not None


def _refused(tmp_path: Path) -> str:
    with pytest.raises(MonitorStateError) as exc:
        _job(tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and str(tmp_path / "monitor.state") in msg, msg
    return msg


def test_an_old_pickle_state_is_refused_without_being_unpickled(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "pwned",))

    (tmp_path / "monitor.state").write_bytes(pickle.dumps({"version": 1, "monitor": Boom()}, protocol=pickle.HIGHEST_PROTOCOL))
    msg = _refused(tmp_path)
    assert "old pickle format" in msg and "move it away" in msg
    assert not (tmp_path / "pwned").exists()


def test_a_damaged_or_edited_state_file_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # truncated
    assert "not a JSON state file" in _refused(tmp_path)
    doc = json.loads(good)
    doc["body"]["watermark_ms"] += 3_600_000  # edited by hand, checksum left as it was
    path.write_text(json.dumps(doc))
    assert "fails its checksum" in _refused(tmp_path)
    doc = json.loads(good)
    doc["version"] = 1
    path.write_text(json.dumps(doc))
    assert "version 1" in _refused(tmp_path)


def _tamper(tmp_path: Path, edit: object) -> str:
    """Edit the body and recompute the checksum, as someone who knows the format would: validation must still refuse."""
    path = tmp_path / "monitor.state"
    body = json.loads(path.read_text())["body"]
    edit(body)  # type: ignore[operator]
    path.write_bytes(monitor_state.dumps(body))
    return _refused(tmp_path)


def test_an_invalid_state_is_refused_naming_the_value(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    good = path.read_bytes()

    def threshold_text(b: dict) -> None:
        b["monitor"]["checks"]["energy"]["models"]["line"]["thresholds"][0][2] = "lots"

    msg = _tamper(tmp_path, threshold_text)
    assert "monitor.checks.energy.models.line.thresholds[0][2]: a number is needed" in msg, msg
    path.write_bytes(good)

    def negative_threshold(b: dict) -> None:
        b["monitor"]["checks"]["energy"]["models"]["line"]["thresholds"][0][2] = -5.0

    assert "must be at least 0" in _tamper(tmp_path, negative_threshold)
    path.write_bytes(good)

    def unknown_process(b: dict) -> None:
        b["monitor"]["checks"]["energy"]["models"]["ghost"] = b["monitor"]["checks"]["energy"]["models"]["line"]

    assert "ghost: no such process" in _tamper(tmp_path, unknown_process)
    path.write_bytes(good)

    def missing_check(b: dict) -> None:
        del b["monitor"]["checks"]["clock"]

    assert "monitor.checks: missing clock" in _tamper(tmp_path, missing_check)
    path.write_bytes(good)

    def bad_weather_input(b: dict) -> None:
        b["monitor"]["checks"]["energy"]["models"]["dry_room"]["weather"]["inputs"][0][0] = 7

    assert "input 7 does not exist" in _tamper(tmp_path, bad_weather_input)


def test_state_of_another_plant_or_site_is_refused(tmp_path: Path) -> None:
    _saved(tmp_path)
    changed = json.loads(json.dumps(PLANT))
    changed["processes"]["line"]["meters"].append("line-meter-2")
    with pytest.raises(MonitorStateError, match="plant model changed"):
        _job(tmp_path, changed)
    with pytest.raises(MonitorStateError, match="belongs to site 's', not 'other'"):
        MonitorJob(reader=None, plant=PLANT, site="other", state_path=tmp_path / "monitor.state")  # type: ignore[arg-type]
