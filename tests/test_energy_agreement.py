"""One energy figure everywhere: ``analyze sec``, EnPIs, the monitor and the carbon report give the
same energy and production per process on plants whose meters roll over and reset.

The simulators' offline generator writes register values as a meter shows them (a rollover wraps at the
register's range, a reset restarts from zero); they are loaded into a real InfluxDB as the collector
writes readings and read back by each analytics path, each reading the plant model from ``plant.json``
through :class:`carbonedge.plant.PlantModel`:

- ``carbonedge analyze sec --json`` (the command, as an engineer runs it);
- the EnPIs (``compute_enpi``, hourly, summed);
- the live monitor as ``analyze monitor`` runs it (``MonitorJob`` reading InfluxDB), and the monitor fed
  the offline export's poll cycles;
- the carbon accounts of ``report``, from InfluxDB and from the offline export (``report --csv DIR``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carbonedge import energy
from carbonedge.analytics.carbon import compute_accounts, default_settings, from_csv_dir, from_influx
from carbonedge.analytics.enpi import compute_enpi
from carbonedge.analytics.influx import InfluxReader
from carbonedge.analytics.live import MonitorJob, Sinks
from carbonedge.analytics.monitor import PlantMonitor, read_device_csvs
from carbonedge.app import cli
from carbonedge.clock import iso, parse_time
from carbonedge.plant import PlantModel
from carbonedge.simulators import Scenario, generate
from test_analytics_monitor_live import load_readings

T0 = "2026-01-05T06:00:00Z"  # a Monday, the start of the first shift
T0_MS = int(parse_time(T0) * 1000)
H = 3_600_000
HOURS = 8
#: Per plant: the faults, and which (device, quantity) must show a rollover or a reset in the data.
PLANTS: dict[str, tuple[list[dict[str, Any]], list[tuple[str, str, str]]]] = {
    "steel": (
        [{"id": "reset", "kind": "counter_reset", "device": "ladle-furnace-meter", "start": "2h"},
         {"id": "roll", "kind": "counter_rollover", "device": "oxygen-plant-meter", "start": "3h"},
         {"id": "reset-line", "kind": "counter_reset", "device": "eaf-line", "start": "5h"}],
        [("oxygen-plant-meter", "active_energy_import", energy.ROLLOVER), ("ladle-furnace-meter", "active_energy_import", energy.RESET),
         ("eaf-line", "production_mass", energy.RESET)],
    ),
    "battery": (
        [{"id": "roll", "kind": "counter_rollover", "device": "utilities-meter", "start": "2h"},
         {"id": "reset", "kind": "counter_reset", "device": "formation-meter", "start": "3h"},
         {"id": "reset-line", "kind": "counter_reset", "device": "formation-line", "start": "5h"}],
        [("utilities-meter", "active_energy_import", energy.ROLLOVER), ("formation-meter", "active_energy_import", energy.RESET),
         ("formation-line", "production_capacity", energy.RESET)],
    ),
}


@pytest.fixture(scope="module", params=sorted(PLANTS))
def plant_data(request: pytest.FixtureRequest, services: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    kind = request.param
    sc = Scenario.from_dict({"scenario": {"plant": kind, "seed": 3, "start": T0, "duration": f"{HOURS}h", "poll_interval": "60s",
                                          "site": f"agree-{kind}"}, "calendar": {"shifts": ["Mon-Fri 06:00-22:00"]},
                             "faults": PLANTS[kind][0]}, source="test")
    out = tmp_path_factory.mktemp(f"agree-{kind}")
    generate(sc, out)
    plant = PlantModel.load(out / "plant.json")
    db = f"t_{uuid.uuid4().hex[:10]}"
    services.influx.create_database(db)
    load_readings(out, plant.to_dict(), services.influx.url, db)
    return {"kind": kind, "plant": plant, "dir": out, "db": db, "url": services.influx.url, "reader": InfluxReader(services.influx.url, db)}


def test_sec_enpi_monitor_and_carbon_report_agree_across_rollovers_and_resets(plant_data: dict[str, Any],
                                                                               capsys: pytest.CaptureFixture[str]) -> None:
    plant: PlantModel = plant_data["plant"]
    reader = plant_data["reader"]
    end_ms = T0_MS + HOURS * H
    cycles = [(t, devs) for t, devs in read_device_csvs(plant_data["dir"]) if T0_MS <= t <= end_ms]

    # The data really holds what the test is about: the kernel finds each rollover and reset.
    def series(dev: str, q: str) -> energy.Increments:
        pts = [(t, devs[dev][q]) for t, devs in cycles if dev in devs and q in devs[dev]]
        return energy.increments(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]), energy.CounterSpec.for_quantity(q))

    for dev, q, event in PLANTS[plant_data["kind"]][1]:
        assert series(dev, q).count(event) == 1, (dev, q, event)

    # analyze sec, as the command runs
    assert cli.main(["analyze", "sec", "--plant", str(plant_data["dir"] / "plant.json"), "--influx-url", plant_data["url"],
                     "--database", plant_data["db"], "--start", iso(T0_MS / 1000), "--end", iso(end_ms / 1000), "--json"]) == 0
    sec = json.loads(capsys.readouterr().out)["processes"]
    enpi = compute_enpi(reader, plant, T0_MS, end_ms, baseline_until_ms=T0_MS + 4 * H)
    job = MonitorJob(reader, plant, sinks=Sinks(influx_url=None))
    job.run_once(T0_MS, end_ms)
    assert job.monitor is not None
    live = job.monitor.process_totals()
    offline_mon = PlantMonitor(plant)
    for t, devs in cycles:
        offline_mon.step(t, devs)
    offline = offline_mon.process_totals()
    settings = default_settings(plant)
    acc = compute_accounts(from_influx(reader, plant, T0_MS / 1000.0, end_ms / 1000.0), settings)
    acc_csv = compute_accounts(from_csv_dir(plant_data["dir"], start=T0_MS / 1000.0, end=end_ms / 1000.0), settings)

    for name, spec in plant.processes.items():
        e = sec[name]["energy_kwh"]
        assert e > 0, name
        figures = {"EnPI": float(enpi.processes[name].energy_kwh.sum()), "monitor (analyze monitor)": live[name][0],
                   "monitor (offline cycles)": offline[name][0], "carbon report": float(acc.processes[name].energy_kwh.sum()),
                   "carbon report --csv": float(acc_csv.processes[name].energy_kwh.sum())}
        for path, v in figures.items():
            assert v == pytest.approx(e, rel=1e-9), f"{path} {name}: {v} kWh, analyze sec {e} kWh"
        if spec.counters:
            p = sec[name]["production"]
            assert p is not None and sec[name]["production_unit"] == spec.production_unit
            prods = {"EnPI": float(np.sum(enpi.processes[name].production)), "monitor (analyze monitor)": live[name][1],
                     "monitor (offline cycles)": offline[name][1], "carbon report": float(acc.processes[name].production.sum()),
                     "carbon report --csv": float(acc_csv.processes[name].production.sum())}
            for path, v in prods.items():
                assert v == pytest.approx(p, rel=1e-9, abs=1e-9), f"{path} production {name}: {v}, analyze sec {p}"
    # The rollover is counted exactly: the rolled-over meter's process agrees with the simulator's truth.
    truth = json.loads(Path(plant_data["dir"], "truth.json").read_text())
    rolled = plant.process_of(PLANTS[plant_data["kind"]][1][0][0])
    assert rolled is not None
    assert sec[rolled]["energy_kwh"] == pytest.approx(truth["processes"][rolled]["energy_kwh"], rel=0.01)
