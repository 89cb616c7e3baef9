"""The simulator evaluation's counting rules (bench/_sim_eval.py): seeds, match window, one true positive per fault."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _sim_eval as se  # noqa: E402
from carbonedge.clock import parse_time  # noqa: E402

T0 = parse_time("2026-01-05T00:00:00Z")
MIN = 60_000


def _ms(minutes: float) -> int:
    return int(T0 * 1000 + minutes * MIN)


def _alert(kind: str, process: str, device: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, process=process, device=device, message="")


def _label(fid: str, kind: str, start_min: float, end_min: float | None, *, process: str | None = None,
           device: str | None = None, waste: float | None = None) -> dict:
    iso = lambda m: se.iso(T0 + m * 60)  # noqa: E731
    return {"id": fid, "kind": kind, "process": process, "device": device, "start": iso(start_min),
            "end": iso(end_min) if end_min is not None else None, "params": {}, "waste_kwh": waste}


def _score(labels: list[dict], raised: list[se.Raised], learn_end_min: float = 1440) -> se.Result:
    res = se.Result("t", 1, labels, raised, _ms(learn_end_min))
    se.assign(res, _ms(7 * 1440))
    return res


def test_held_out_seeds_never_overlap_the_choosing_seeds() -> None:
    for name, seeds in se.HELD_OUT_SEEDS.items():
        assert seeds and not set(seeds) & set(se.CHOOSING_SEEDS.get(name, ()))
    # The fault weeks' own seeds (the ones every earlier figure used) are choosing seeds.
    from carbonedge.simulators.scenario import load_scenario

    for name in se.HELD_OUT_SEEDS:
        assert load_scenario(name).seed in se.CHOOSING_SEEDS[name]


def test_one_true_positive_per_fault_repeats_apart_and_false_alerts() -> None:
    leak = _label("leak", "compressed_air_leak", 2000, None, process="compressed_air", waste=100.0)
    stuck = _label("stuck", "stuck_meter", 3000, 3360, process="caster", device="caster-meter")
    raised = [
        se.Raised(_alert("process_excess_energy", "compressed_air"), _ms(2100)),  # first on the leak: TP
        se.Raised(_alert("process_excess_energy", "compressed_air"), _ms(2500)),  # again: repeat
        se.Raised(_alert("stuck_meter", "caster", "caster-meter"), _ms(3003)),  # TP, 3 min
        se.Raised(_alert("stuck_meter", "caster", "caster-meter"), _ms(3360 + 31)),  # after end + 30 min: false
        se.Raised(_alert("process_excess_energy", "eaf"), _ms(2200)),  # nothing wrong there: false
        se.Raised(_alert("stuck_meter", "eaf", "eaf-meter"), _ms(600), outcome="learning"),  # while learning: left out
    ]
    res = _score([leak, stuck], raised)
    assert [r.outcome for r in raised] == ["tp", "repeat", "tp", "fp", "fp", "learning"]
    assert res.matched == {"leak": pytest.approx(100.0), "stuck": pytest.approx(3.0)}
    assert res.repeats == {"leak": 1}
    f = se.figures([res])
    assert (f.tp, f.fp, f.repeats, f.learning) == (2, 2, 1, 1)
    assert f.precision == pytest.approx(0.5) and f.recall == 1.0
    assert se.figures([res], ("meter",)).delays == [pytest.approx(3.0)]


def test_no_slack_before_the_fault_and_families_must_agree() -> None:
    stuck = _label("stuck", "stuck_meter", 3000, 3360, process="caster", device="caster-meter")
    raised = [
        se.Raised(_alert("stuck_meter", "caster", "caster-meter"), _ms(2999)),  # a minute early: not this fault
        se.Raised(_alert("process_excess_energy", "caster"), _ms(3010)),  # a process alert is not a meter fault's
    ]
    res = _score([stuck], raised)
    assert [r.outcome for r in raised] == ["fp", "fp"] and not res.matched
    assert se.figures([res]).recall == 0.0


def test_clock_fault_matched_by_any_clock_jump_in_plant_time() -> None:
    step = _label("step", "clock_step", 6480, None)
    raised = [se.Raised(_alert("clock_jump", "plant"), _ms(6480))]
    res = _score([step], raised)
    assert res.matched == {"step": 0.0}
    assert se.figures([res], ("clock",)).recall == 1.0


def test_faults_below_meter_accuracy_leave_recall_but_not_precision() -> None:
    small = _label("ch", "formation_channel_fault", 2000, 6000, process="formation", waste=32.0)
    res = _score([small], [])
    res.sizes["ch"] = se.Size(share_pct=0.18, class_pct=0.5, meter="formation-meter")
    f = se.figures([res])
    assert f.excluded == 1 and f.faults == 0 and f.recall_all == 0.0
    res.sizes["ch"] = se.Size(share_pct=0.6, class_pct=0.5, meter="formation-meter")
    assert se.figures([res]).recall == 0.0  # above the class: a miss counts


def test_fault_size_from_ground_truth_energy_and_meter_class(tmp_path: Path) -> None:
    """The share is the fault's waste over what the meter records without it, against the meter model's class."""
    (tmp_path / "plant.json").write_text(json.dumps({"site": "eval", "processes": {"formation": {"meters": ["formation-meter"]}}}))
    rows = ["ts,formation_energy_kwh"] + [f"{se.iso(T0 + k * 3600)},{1000.0 * k:.1f}" for k in range(101)]
    (tmp_path / "truth.csv").write_text("\n".join(rows) + "\n")
    lab = _label("ch", "formation_channel_fault", 0, 100 * 60, process="formation", waste=180.0)
    from carbonedge.simulators.scenario import load_scenario

    sc = load_scenario("battery-week-faults")  # formation metered by a class 0.5S meter
    size = se.fault_size(lab, tmp_path, sc)
    assert size is not None and size.meter == "formation-meter" and size.class_pct == 0.5
    assert size.share_pct == pytest.approx(100 * 180 / (100_000 - 180))
    assert size.below_accuracy
    assert se.fault_size(_label("s", "stuck_meter", 0, 60, device="formation-meter"), tmp_path, sc) is None


def test_plant_time_recovered_through_a_clock_step_back(tmp_path: Path) -> None:
    (tmp_path / "gateway-clock.json").write_text(json.dumps({"events": [{"kind": "step", "step_s": -180.0, "at": se.iso(T0 + 300)}]}))
    sc = SimpleNamespace(start=T0, poll_interval_s=60.0, duration_s=600.0)
    stamps = [0, 60, 120, 180, 240, 120, 180, 240, 300, 360, 420]  # gateway seconds after T0: back 3 min at 300 s
    out = se._plant_times(tmp_path, sc, [int((T0 + s) * 1000) for s in stamps])
    assert out == [int((T0 + 60 * k) * 1000) for k in range(11)]


def test_verdict_fails_below_any_target() -> None:
    leak = _label("leak", "compressed_air_leak", 2000, None, process="compressed_air", waste=100.0)
    stuck = _label("stuck", "stuck_meter", 3000, 3360, process="caster", device="caster-meter")
    good = [se.Raised(_alert("process_excess_energy", "compressed_air"), _ms(2100)),
            se.Raised(_alert("stuck_meter", "caster", "caster-meter"), _ms(3003))]
    assert se.verdict([_score([leak, stuck], good)])[0]
    slow = [good[0], se.Raised(_alert("stuck_meter", "caster", "caster-meter"), _ms(3011))]  # 11 min: over 10
    assert not se.verdict([_score([leak, stuck], slow)])[0]
    noisy = good + [se.Raised(_alert("process_excess_energy", "eaf"), _ms(2200))]  # precision 2/3
    assert not se.verdict([_score([leak, stuck], noisy)])[0]
    assert not se.verdict([_score([leak, stuck], good[:1])])[0]  # recall 1/2
