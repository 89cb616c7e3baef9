"""Simulated plants that stand in for real ones: processes, meters served over Modbus TCP, ground truth.

Public API::

    from simulators import Simulation, run
    sim = Simulation(plant="steel", seed=7, start=t0, end=t0 + 86400)
    truth = await run(sim, clock, out_dir)   # serves every device until stopped
"""

from simulators.runner import Simulation, run

__all__ = ["Simulation", "run"]
