"""The collector: subscribes to gateway telemetry, validates it against the wire contract, writes
InfluxDB, and publishes each gateway's end-to-end watermark.

Public API::

    from carbonedge.collector import Collector, CollectorSettings
    c = Collector(CollectorSettings(mqtt_port=1883, influx_url="http://127.0.0.1:8086"))
    c.run()   # until c.stop()
"""


_EXPORTS = {
    "Collector": "carbonedge.collector.service",
    "CollectorSettings": "carbonedge.collector.service",
    "load_device_registry": "carbonedge.collector.validate",
}

__all__ = ["Collector", "CollectorSettings", "load_device_registry"]


def __getattr__(name: str) -> object:
    """Import a public name on first use, so that importing one submodule (e.g. its ``commands`` for the command line)
    does not load the whole package and its heavy dependencies."""
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
