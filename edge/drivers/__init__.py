"""Device drivers: each reads one device and returns its values in canonical units."""

from edge.drivers.modbus import ModbusTcpDriver

__all__ = ["ModbusTcpDriver"]
