"""The edge gateway agent: reads meters and PLC counters over Modbus, keeps every poll cycle in a
durable outbox on disk, and publishes it over MQTT v5 until the collector confirms it is in InfluxDB.

Public API::

    from carbonedge.edge import Agent, load_config
    agent = Agent(load_config("gateway.toml"))
    await agent.run()
"""

_EXPORTS = {"Agent": "carbonedge.edge.agent", "GatewayConfig": "carbonedge.edge.config", "load_config": "carbonedge.edge.config"}

__all__ = ["Agent", "GatewayConfig", "load_config"]


def __getattr__(name: str) -> object:
    """Import a public name on first use, so that the command line (``carbonedge.edge.commands``) builds on an
    installation without the gateway's drivers (a collector or analytics server)."""
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
