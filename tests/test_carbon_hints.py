"""Process models and ranked hints: each waste hint is triggered by its fault, sized against ground truth, silent when clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from carbon_synth import make_plant

from carbonedge.analytics.carbon import FactorLibrary, default_settings, from_csv_dir
from carbonedge.analytics.twin import FAULT_TO_HINT, analyse

WASTE_KINDS = set(FAULT_TO_HINT.values()) | {"process_excess_energy"}


def _run(d: Path):  # type: ignore[no-untyped-def]
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    return analyse(data, s, FactorLibrary.load().get(s.carbon.grid_factor)), [json.loads(x) for x in (d / "labels.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fault", [
    {"kind": "compressed_air_leak", "process": "compressed_air", "start": "2026-01-07T00:00:00Z", "end": None, "kw": 150.0},
    {"kind": "idle_running", "process": "caster", "start": "2026-01-07T12:00:00Z", "end": "2026-01-09T00:00:00Z"},
    {"kind": "eaf_abnormal_energy", "process": "eaf", "start": "2026-01-08T00:00:00Z", "end": None, "extra_fraction": 0.08},
], ids=lambda f: f["kind"])
def test_fault_triggers_its_hint_with_saving_near_ground_truth(tmp_path: Path, fault: dict) -> None:
    make_plant(tmp_path, days=4, faults=[fault], seed=3)
    res, labels = _run(tmp_path)
    waste_hints = [h for h in res.hints if h.kind in WASTE_KINDS]
    assert [h.kind for h in waste_hints] == [FAULT_TO_HINT[fault["kind"]]], [h.as_dict() for h in waste_hints]
    h = waste_hints[0]
    assert h.process == fault["process"]
    assert h.waste_kwh == pytest.approx(labels[0]["waste_kwh"], rel=0.2)
    assert h.kwh_per_year > 0 and h.cost_per_year > 0 and h.tco2_per_year > 0
    assert h.evidence and h.confidence in ("high", "medium") and h.sources


def test_clean_plant_gives_no_waste_hints(tmp_path: Path) -> None:
    make_plant(tmp_path, days=4, seed=4)
    res, _ = _run(tmp_path)
    assert [h.kind for h in res.hints if h.kind in WASTE_KINDS] == []
    # The calibrated models meet ASHRAE Guideline 14's hourly limits on normal operation [M2].
    for m in res.models.values():
        assert m.fit["cv_rmse"] <= 0.30 and abs(m.fit["nmbe"]) <= 0.10, m.as_dict()


def test_model_coefficients_are_the_plants_physics(tmp_path: Path) -> None:
    make_plant(tmp_path, days=3, seed=5)
    res, _ = _run(tmp_path)
    caster = res.models["caster"]
    # Synthetic caster: 1.4 MW standby off shift; 3.6 MW while casting 120 t/h.
    assert caster.p_idle_kw == pytest.approx(1_400.0, rel=0.03)
    assert caster.p_active_kw + 120.0 * (caster.sec or 0.0) == pytest.approx(3_600.0, rel=0.03)
    air = res.models["compressed_air"]
    assert air.p_active_kw == pytest.approx(1_800.0, rel=0.03) and air.p_idle_kw == pytest.approx(900.0, rel=0.03)


def test_hints_are_ranked_by_cost_and_short_periods_say_why_no_waste_is_judged(tmp_path: Path) -> None:
    make_plant(tmp_path, days=1.5, seed=6, faults=[{"kind": "compressed_air_leak", "process": "compressed_air",
                                                   "start": "2026-01-05T12:00:00Z", "end": None, "kw": 300.0}])
    res, _ = _run(tmp_path)
    assert not [h for h in res.hints if h.kind in WASTE_KINDS]
    assert any("shorter than 48 h" in n for n in res.notes)
    costs = [h.cost_per_year for h in res.hints]
    assert costs == sorted(costs, reverse=True) and [h.rank for h in res.hints] == list(range(1, len(costs) + 1))
    # The EAF runs 60-min heats only on shift: valley hours have headroom, so time-of-use shifting is suggested.
    assert any(h.kind == "tou_shift" and h.process == "eaf" for h in res.hints)
    # Arc-furnace PF 0.8 dominates the energy-weighted plant PF: below the 0.90 threshold.
    pf = next(h for h in res.hints if h.kind == "power_factor")
    assert pf.details["pf"] < 0.9 and pf.details["kvar"] > 0


def _bench():  # type: ignore[no-untyped-def]
    import sys

    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from bench import hints_eval

    return hints_eval


def _row(he, err_pct: float | None, below: str = "", kind: str = "dryroom_dehumidifier_degradation"):  # type: ignore[no-untyped-def]
    true = 10_000.0
    return he.Row("battery-week-faults", 131, "f", kind, "dry_room", true, None if err_pct is None else true * (1 + err_pct / 100), 0.1, below)


def test_hints_bench_exits_non_zero_below_target() -> None:
    """bench/hints_eval.py's verdict: 0 only when every fault above meter accuracy is within 20 % and no hint is false."""
    he = _bench()
    ok = [_row(he, 5.0), _row(he, -19.9, kind="compressed_air_leak")]
    assert he.verdict(ok, [], "held-out") == (True, 0)
    assert he.verdict(ok, [], "choosing") == (True, 3)  # in-sample: never 0
    assert he.verdict(ok + [_row(he, 20.5)], [], "held-out") == (False, 1)
    assert he.verdict(ok + [_row(he, None)], [], "held-out") == (False, 1)  # a missed fault
    assert he.verdict(ok + [_row(he, None)], [], "choosing") == (False, 1)
    # A fault below meter accuracy is reported but not counted.
    assert he.verdict(ok + [_row(he, None, below="below meter accuracy: 0.18 %")], [], "held-out") == (True, 0)
    # A false hint on a clean week, or one answering no fault on a faulty week, fails the target.
    for week in ("clean", "faulty"):
        assert he.verdict(ok, [he.FalseHint("battery-week-faults", 131, week, "dryroom_dehumidifier", "dry_room", 9_938.0)],
                          "held-out") == (False, 1)
    assert he.verdict([], [], "held-out") == (False, 1)  # nothing measured is not a pass
    table = "\n".join(he.family_table(ok + [_row(he, 40.0)], [he.FalseHint("s", 1, "clean", "dryroom_dehumidifier", "dry_room", 1.0)]))
    assert "dryroom_dehumidifier" in table and "+40.0 %" in table and "1/0" in table


@pytest.mark.soak
def test_simulator_fault_weeks_match_ground_truth(tmp_path: Path) -> None:
    """bench/hints_eval.py on the held-out seeds (steel and battery fault weeks, the battery week with rack meters,
    and their clean twins; 10–25 min with generation, by machine load): its target met, as its own exit status and its figures say."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, str(root / "bench" / "hints_eval.py"), "--cache", str(tmp_path)], capture_output=True, text=True,
                       timeout=3600, cwd=root)
    tail = p.stdout[-4000:] + p.stderr[-2000:]
    last = dict(kv.split("=") for kv in p.stdout.strip().splitlines()[-1].split())
    k, m = (int(x) for x in last["within_20pct_above_accuracy"].split("/"))
    # The figures themselves, not only the exit status: all faults a meter can resolve within 20 %, no false hint.
    assert m >= 20 and k == m, tail
    assert last["false_waste_hints_clean"] == "0" and last["false_waste_hints_faulty"] == "0", tail
    assert last["split"] == "held-out", tail
    # With rack meters the peer comparison finds the formation channel fault (below a hall meter's accuracy).
    racks = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("battery-week-faults-racks ") and "formation_channel_fault" in ln]
    assert len(racks) == 1 and racks[0][5] != "missed" and abs(float(racks[0][6])) <= 20, tail
    assert p.returncode == 0, tail
