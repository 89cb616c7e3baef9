"""The edge gateway agent: reads meters and PLC counters over Modbus, keeps every poll cycle in a
durable outbox on disk, and publishes it over MQTT v5 until the collector confirms it is in InfluxDB.

Public API::

    from carbonedge.edge import Agent, load_config
    agent = Agent(load_config("gateway.toml"))
    await agent.run()
"""

from carbonedge.edge.agent import Agent
from carbonedge.edge.config import GatewayConfig, load_config

__all__ = ["Agent", "GatewayConfig", "load_config"]
