"""Simulated plants that stand in for real ones: processes, meters served over Modbus TCP, ground truth, faults.

Public API::

    from carbonedge.simulators import Simulation, run, load_scenario, generate

    sc = load_scenario("battery-week-faults")          # bundled name or a TOML path
    sim = Simulation.from_scenario(sc)                  # or Simulation(plant="steel", seed=7, start=t0, end=t0 + 86400)
    truth = await run(sim, clock, out_dir)              # serves every device over Modbus TCP until stopped

    data = generate(sc, "out/")                         # offline: per-device CSVs, truth.json, labels.jsonl, plant.json

Fault kinds and the ``labels.jsonl`` format: :mod:`simulators.faults` and ``docs/simulators.md``.
"""

from carbonedge.simulators.faults import KINDS as FAULT_KINDS
from carbonedge.simulators.faults import read_labels
from carbonedge.simulators.offline import DeviceSeries, OfflineRun, generate
from carbonedge.simulators.runner import Simulation, run
from carbonedge.simulators.scenario import Scenario, bundled_scenarios, load_scenario

__all__ = [
    "FAULT_KINDS",
    "DeviceSeries",
    "OfflineRun",
    "Scenario",
    "Simulation",
    "bundled_scenarios",
    "generate",
    "load_scenario",
    "read_labels",
    "run",
]
