"""Device drivers: each reads one device and returns its values in canonical units.

Every driver has ``async read() -> ReadResult`` (raises :class:`carbonedge.errors.MeterReadError`)
and ``close()``.
"""

from carbonedge.edge.drivers.modbus import ModbusRtuDriver, ModbusTcpDriver, ReadResult, SerialLine
from carbonedge.edge.drivers.simulated import SimulatedDriver

__all__ = ["ModbusRtuDriver", "ModbusTcpDriver", "ReadResult", "SerialLine", "SimulatedDriver"]
