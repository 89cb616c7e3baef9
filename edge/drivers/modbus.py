"""Modbus TCP and RTU drivers: the only module that talks to pymodbus (its API moves between minor releases).

pymodbus reports failures on two channels, raised ``ModbusException`` and error
*responses* (``rr.isError()``); both become one :class:`MeterReadError` here.
Only read function codes (3 and 4) are ever sent: a gateway never writes to a meter.

A read follows the profile's coalesced plan (at most 125 registers per request).
When one block answers with a Modbus exception (e.g. an address a firmware variant
lacks) the other blocks still count: their values are returned and the failed
points come back as ``None`` (bad quality), with the device status ``partial``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from carbonedge import profiles
from carbonedge.errors import MeterReadError

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class ReadResult(dict[str, float | None]):
    """Published quantities of one read (``None`` = bad); ``partial`` lists blocks that failed."""

    partial: list[str]

    def __init__(self, values: dict[str, float | None], partial: list[str] | None = None) -> None:
        super().__init__(values)
        self.partial = partial or []


async def read_plan(client: Any, device: str, profile: profiles.Profile, plan: list[profiles.ReadBlock], unit_id: int, timeout_s: float) -> ReadResult:
    """Run a read plan on a connected pymodbus client; map exceptions to :class:`MeterReadError`."""
    raw: dict[str, float | None] = {}
    failed: list[str] = []
    for block in plan:
        fn = client.read_holding_registers if block.table == "holding" else client.read_input_registers
        try:
            rr = await asyncio.wait_for(fn(block.start, count=block.count, device_id=unit_id), timeout_s * 1.5)
        except TimeoutError as exc:
            client.close()
            raise MeterReadError(device, f"no answer within {timeout_s:g} s", code="meter.timeout") from exc
        except ModbusException as exc:
            client.close()
            code = "meter.timeout" if "timeout" in str(exc).lower() or "no response" in str(exc).lower() else "meter.io_error"
            raise MeterReadError(device, f"Modbus error: {exc}", code=code) from exc
        if rr.isError():
            failed.append(f"{block.table} {block.start}+{block.count}: Modbus exception {getattr(rr, 'exception_code', '?')}")
            raw.update({p.name: None for p in block.points})
            continue
        regs = list(rr.registers)
        if len(regs) < block.count:
            failed.append(f"{block.table} {block.start}+{block.count}: short answer ({len(regs)} registers)")
            raw.update({p.name: None for p in block.points})
            continue
        for name, v in profiles.decode_block(block, regs).items():
            # A float register holding NaN/inf (meter not ready) is a bad value, never a number.
            raw[name] = v if v is None or math.isfinite(v) else None
    if failed and len(failed) == len(plan):
        raise MeterReadError(device, "every read failed: " + "; ".join(failed), code="meter.exception")
    return ReadResult(profiles.publishable(profile, raw), failed)


class ModbusTcpDriver:
    """Reads one Modbus TCP unit with a profile's coalesced read plan (one connection per device)."""

    def __init__(self, device: str, profile: profiles.Profile, host: str, port: int, unit_id: int, timeout_s: float) -> None:
        self.device = device
        self.profile = profile
        self.unit_id = unit_id
        self.timeout_s = timeout_s
        self.plan = profiles.read_plan(profile)
        self._host, self._port = host, port
        self._client: AsyncModbusTcpClient | None = None  # created inside the running event loop

    async def read(self) -> ReadResult:
        """Read every point; returns published quantities (``None`` = not available)."""
        if self._client is None:
            self._client = AsyncModbusTcpClient(self._host, port=self._port, timeout=self.timeout_s, retries=0, reconnect_delay=0)
        if not self._client.connected:
            try:
                ok = await asyncio.wait_for(self._client.connect(), self.timeout_s)
            except (TimeoutError, OSError, ModbusException) as exc:
                self._client.close()
                raise MeterReadError(self.device, f"cannot connect to {self._host}:{self._port}: {exc or 'timed out'}", code="meter.connect_failed") from exc
            if not ok:
                raise MeterReadError(self.device, f"cannot connect to {self._host}:{self._port}", code="meter.connect_failed")
        return await read_plan(self._client, self.device, self.profile, self.plan, self.unit_id, self.timeout_s)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class SerialLine:
    """One RS-485 line shared by the devices on it: requests go out one at a time (the bus is half-duplex)."""

    def __init__(self, port: str, baudrate: int, parity: str, stopbits: int, bytesize: int, timeout_s: float) -> None:
        self.port = port
        self.lock = asyncio.Lock()
        self._args = dict(baudrate=baudrate, parity=parity, stopbits=stopbits, bytesize=bytesize)
        self.timeout_s = timeout_s
        self.client: AsyncModbusSerialClient | None = None

    async def connected(self, device: str) -> AsyncModbusSerialClient:
        if self.client is None:
            self.client = AsyncModbusSerialClient(self.port, timeout=self.timeout_s, retries=0, reconnect_delay=0, **self._args)  # type: ignore[arg-type]
        if not self.client.connected:
            try:
                ok = await asyncio.wait_for(self.client.connect(), self.timeout_s)
            except (TimeoutError, OSError, ModbusException) as exc:
                self.client.close()
                raise MeterReadError(device, f"cannot open serial port {self.port}: {exc or 'timed out'}", code="meter.connect_failed") from exc
            if not ok:
                raise MeterReadError(device, f"cannot open serial port {self.port}", code="meter.connect_failed")
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class ModbusRtuDriver:
    """Reads one Modbus RTU unit on a shared :class:`SerialLine`."""

    def __init__(self, device: str, profile: profiles.Profile, line: SerialLine, unit_id: int, timeout_s: float) -> None:
        self.device = device
        self.profile = profile
        self.line = line
        self.unit_id = unit_id
        self.timeout_s = timeout_s
        self.plan = profiles.read_plan(profile)

    async def read(self) -> ReadResult:
        async with self.line.lock:
            client = await self.line.connected(self.device)
            return await read_plan(client, self.device, self.profile, self.plan, self.unit_id, self.timeout_s)

    def close(self) -> None:
        self.line.close()
