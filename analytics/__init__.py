"""Energy analytics: energy intensity (SEC) per process and plant from InfluxDB.

Public API::

    from carbonedge.analytics import InfluxReader, energy_intensity
    from carbonedge.plant import PlantModel
    plant_model = PlantModel.load("plant.json")   # a parsed plant.json dict is validated the same way
    figs = energy_intensity(InfluxReader(url, "carbonedge"), plant_model, start_ms, end_ms)
    figs.plant_sec, figs.processes["eaf"].sec
"""


_EXPORTS = {
    "InfluxReader": "carbonedge.analytics.influx",
    "PlantFigures": "carbonedge.analytics.intensity",
    "ProcessFigure": "carbonedge.analytics.intensity",
    "counter_increase": "carbonedge.analytics.intensity",
    "energy_intensity": "carbonedge.analytics.intensity",
}

__all__ = ["InfluxReader", "PlantFigures", "ProcessFigure", "counter_increase", "energy_intensity"]


def __getattr__(name: str) -> object:
    """Import a public name on first use, so that importing one submodule (e.g. its ``commands`` for the command line)
    does not load the whole package and its heavy dependencies."""
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
