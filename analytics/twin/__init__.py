"""Digital twin: per-process energy models calibrated on measured data, and ranked optimisation hints.

Public API::

    from carbonedge.analytics.twin import analyse
    result = analyse(plant_data, settings, grid_factor)      # models per process + ranked hints
    result.hints[0].kwh_per_year, result.hints[0].cost_per_year
"""

from carbonedge.analytics.twin.hints import FAULT_TO_HINT, Hint, TwinResult, analyse, default_baseline, role
from carbonedge.analytics.twin.model import Observations, ProcessModel, calibrate, observations

__all__ = ["FAULT_TO_HINT", "Hint", "Observations", "ProcessModel", "TwinResult", "analyse", "calibrate", "default_baseline",
           "observations", "role"]
