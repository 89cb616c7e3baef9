"""Modbus TCP driver: the only module that talks to pymodbus (its API moves between minor releases).

pymodbus reports failures on two channels, raised ``ModbusException`` and error
*responses* (``rr.isError()``); both become one :class:`MeterReadError` here.
"""

from __future__ import annotations

import asyncio
import logging

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from carbonedge import profiles
from carbonedge.errors import MeterReadError

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class ModbusTcpDriver:
    """Reads one Modbus unit with a profile's coalesced read plan."""

    def __init__(self, device: str, profile: profiles.Profile, host: str, port: int, unit_id: int, timeout_s: float) -> None:
        self.device = device
        self.profile = profile
        self.unit_id = unit_id
        self.timeout_s = timeout_s
        self.plan = profiles.read_plan(profile)
        self._host, self._port = host, port
        self._client: AsyncModbusTcpClient | None = None  # created inside the running event loop

    async def read(self) -> dict[str, float | None]:
        """Read every point; returns published quantities (``None`` = not available)."""
        if self._client is None:
            self._client = AsyncModbusTcpClient(self._host, port=self._port, timeout=self.timeout_s, retries=0, reconnect_delay=0)
        if not self._client.connected:
            try:
                ok = await asyncio.wait_for(self._client.connect(), self.timeout_s)
            except (TimeoutError, OSError, ModbusException) as exc:
                raise MeterReadError(self.device, f"cannot connect: {exc}", code="meter.connect_failed") from exc
            if not ok:
                raise MeterReadError(self.device, "cannot connect", code="meter.connect_failed")
        raw: dict[str, float | None] = {}
        for block in self.plan:
            fn = self._client.read_holding_registers if block.table == "holding" else self._client.read_input_registers
            try:
                rr = await asyncio.wait_for(fn(block.start, count=block.count, device_id=self.unit_id), self.timeout_s * 1.5)
            except TimeoutError as exc:
                self._client.close()
                raise MeterReadError(self.device, f"no answer within {self.timeout_s:g} s", code="meter.timeout") from exc
            except ModbusException as exc:
                self._client.close()
                raise MeterReadError(self.device, f"Modbus error: {exc}", code="meter.timeout" if "timeout" in str(exc).lower() else "meter.io_error") from exc
            if rr.isError():
                raise MeterReadError(
                    self.device,
                    f"Modbus exception {getattr(rr, 'exception_code', '?')} reading {block.table} {block.start}+{block.count}",
                    code="meter.exception",
                )
            raw.update(profiles.decode_block(block, list(rr.registers)))
        return profiles.publishable(self.profile, raw)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
