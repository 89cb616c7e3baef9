"""The collector: subscribes to gateway telemetry, validates it against the wire contract, writes
InfluxDB, and publishes each gateway's end-to-end watermark.

Public API::

    from carbonedge.collector import Collector, CollectorSettings
    c = Collector(CollectorSettings(mqtt_port=1883, influx_url="http://127.0.0.1:8086"))
    c.run()   # until c.stop()
"""


from carbonedge import lazy

_EXPORTS = {
    "Collector": "carbonedge.collector.service",
    "CollectorSettings": "carbonedge.collector.service",
    "load_device_registry": "carbonedge.collector.validate",
}

__all__ = ["Collector", "CollectorSettings", "load_device_registry"]


__getattr__ = lazy.exports(__name__, _EXPORTS, globals())
