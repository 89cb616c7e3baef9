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

from carbonedge import lazy

_EXPORTS = {
    "read_labels": "carbonedge.simulators.faults",
    "DeviceSeries": "carbonedge.simulators.offline",
    "OfflineRun": "carbonedge.simulators.offline",
    "generate": "carbonedge.simulators.offline",
    "Simulation": "carbonedge.simulators.runner",
    "run": "carbonedge.simulators.runner",
    "Scenario": "carbonedge.simulators.scenario",
    "bundled_scenarios": "carbonedge.simulators.scenario",
    "load_scenario": "carbonedge.simulators.scenario",
}

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


__getattr__ = lazy.exports(__name__, _EXPORTS, globals())
