"""One energy figure everywhere: ``analyze sec``, EnPIs, the live monitor and the carbon report give the
same energy and production per process on a plant whose meters roll over and reset.

The simulators' offline generator writes register values as a meter shows them (a rollover wraps at the
register's range, a reset restarts from zero); they are loaded into a real InfluxDB as the collector
writes readings and read back by each analytics path.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carbonedge.analytics.carbon import compute_accounts, default_settings, from_influx
from carbonedge.analytics.enpi import compute_enpi
from carbonedge.analytics.influx import InfluxReader
from carbonedge.analytics.intensity import energy_intensity
from carbonedge.analytics.monitor import PlantMonitor, read_device_csvs
from carbonedge import energy
from carbonedge.clock import parse_time
from carbonedge.simulators import Scenario, generate
from test_analytics_monitor_live import load_readings

T0 = "2026-01-05T06:00:00Z"  # a Monday, the start of the first shift
T0_MS = int(parse_time(T0) * 1000)
H = 3_600_000
HOURS = 8
FAULTS = [
    {"id": "reset", "kind": "counter_reset", "device": "ladle-furnace-meter", "start": "2h"},
    {"id": "roll", "kind": "counter_rollover", "device": "oxygen-plant-meter", "start": "3h"},
    {"id": "reset-line", "kind": "counter_reset", "device": "eaf-line", "start": "5h"},
]


@pytest.fixture(scope="module")
def plant_data(services: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    sc = Scenario.from_dict({"scenario": {"plant": "steel", "seed": 3, "start": T0, "duration": f"{HOURS}h", "poll_interval": "60s",
                                          "site": "agree"}, "calendar": {"shifts": ["Mon-Fri 06:00-22:00"]}, "faults": FAULTS}, source="test")
    out = tmp_path_factory.mktemp("agree")
    run = generate(sc, out)
    db = f"t_{uuid.uuid4().hex[:10]}"
    services.influx.create_database(db)
    load_readings(out, run.plant, services.influx.url, db)
    return {"plant": run.plant, "dir": out, "reader": InfluxReader(services.influx.url, db)}


def test_sec_enpi_monitor_and_carbon_report_agree_across_rollovers_and_resets(plant_data: dict[str, Any]) -> None:
    plant, reader = plant_data["plant"], plant_data["reader"]
    end_ms = T0_MS + HOURS * H
    cycles = [(t, devs) for t, devs in read_device_csvs(plant_data["dir"]) if T0_MS <= t <= end_ms]

    # The data really holds what the test is about: the kernel finds each rollover and reset.
    def series(dev: str, q: str) -> energy.Increments:
        pts = [(t, devs[dev][q]) for t, devs in cycles if dev in devs and q in devs[dev]]
        return energy.increments(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]), energy.CounterSpec.for_quantity(q))

    assert series("oxygen-plant-meter", "active_energy_import").count(energy.ROLLOVER) == 1
    assert series("ladle-furnace-meter", "active_energy_import").count(energy.RESET) == 1
    assert series("eaf-line", "production_mass").count(energy.RESET) == 1

    sec = energy_intensity(reader, plant, T0_MS, end_ms)
    enpi = compute_enpi(reader, plant, T0_MS, end_ms, baseline_until_ms=T0_MS + 4 * H)
    mon = PlantMonitor(plant)
    for t, devs in cycles:
        mon.step(t, devs)
    monitor = mon.process_totals()
    data = from_influx(reader, plant, T0_MS / 1000.0, end_ms / 1000.0)
    acc = compute_accounts(data, default_settings(plant))

    for name, spec in plant["processes"].items():
        e = sec.processes[name].energy_kwh
        assert e > 0, name
        assert float(enpi.processes[name].energy_kwh.sum()) == pytest.approx(e, rel=1e-9), f"EnPI {name}"
        assert monitor[name][0] == pytest.approx(e, rel=1e-9), f"monitor {name}"
        assert float(acc.processes[name].energy_kwh.sum()) == pytest.approx(e, rel=1e-9), f"carbon {name}"
        if spec.get("counters"):
            p = sec.processes[name].production
            assert p is not None
            assert float(np.sum(enpi.processes[name].production)) == pytest.approx(p, rel=1e-9, abs=1e-9), f"EnPI production {name}"
            assert monitor[name][1] == pytest.approx(p, rel=1e-9, abs=1e-9), f"monitor production {name}"
            assert float(acc.processes[name].production.sum()) == pytest.approx(p, rel=1e-9, abs=1e-9), f"carbon production {name}"
    # The rollover is counted exactly: the oxygen plant's meter agrees with the simulator's truth.
    truth = __import__("json").loads(Path(plant_data["dir"], "truth.json").read_text())
    assert sec.processes["oxygen_plant"].energy_kwh == pytest.approx(truth["processes"]["oxygen_plant"]["energy_kwh"], rel=0.01)
