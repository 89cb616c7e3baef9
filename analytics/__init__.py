"""Energy analytics: energy intensity (SEC) per process and plant from InfluxDB.

Public API::

    from carbonedge.analytics import InfluxReader, energy_intensity
    from carbonedge.plant import PlantModel
    plant_model = PlantModel.load("plant.json")   # a parsed plant.json dict is validated the same way
    figs = energy_intensity(InfluxReader(url, "carbonedge"), plant_model, start_ms, end_ms)
    figs.plant_sec, figs.processes["eaf"].sec
"""


from carbonedge import lazy

_EXPORTS = {
    "InfluxReader": "carbonedge.analytics.influx",
    "PlantFigures": "carbonedge.analytics.intensity",
    "ProcessFigure": "carbonedge.analytics.intensity",
    "counter_increase": "carbonedge.analytics.intensity",
    "energy_intensity": "carbonedge.analytics.intensity",
}

__all__ = ["InfluxReader", "PlantFigures", "ProcessFigure", "counter_increase", "energy_intensity"]


__getattr__ = lazy.exports(__name__, _EXPORTS, globals())
