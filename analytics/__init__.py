"""Energy analytics: energy intensity (SEC) per process and plant from InfluxDB.

Public API::

    from carbonedge.analytics import InfluxReader, energy_intensity
    from carbonedge.plant import PlantModel
    plant_model = PlantModel.load("plant.json")   # a parsed plant.json dict is validated the same way
    figs = energy_intensity(InfluxReader(url, "carbonedge"), plant_model, start_ms, end_ms)
    figs.plant_sec, figs.processes["eaf"].sec
"""

from carbonedge.analytics.influx import InfluxReader
from carbonedge.analytics.intensity import PlantFigures, ProcessFigure, counter_increase, energy_intensity

__all__ = ["InfluxReader", "PlantFigures", "ProcessFigure", "counter_increase", "energy_intensity"]
