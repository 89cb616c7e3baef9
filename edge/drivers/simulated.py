"""A simulated device: plausible values produced in-process, for commissioning a gateway without hardware.

Values go through the profile's own register encoding and decoding (word order,
scaling, integer rollover), so what the gateway publishes is what it would read
from the real meter model. Energy counters integrate the simulated power on the
gateway's clock; other counters grow by one unit per minute. Both are functions of
the clock alone, so a restarted gateway reads on where it left off, like a real meter.
"""

from __future__ import annotations

import math
import zlib

from carbonedge import profiles, quantities
from carbonedge.clock import Clock
from carbonedge.edge.drivers.modbus import ReadResult

_ANCHOR = 1_735_689_600.0  # 2025-01-01T00:00:00Z: simulated counters start here

_GAUGES = {
    "voltage": 230.0,
    "current": 0.0,  # derived from power
    "frequency": 50.0,
    "power_factor": 0.93,
    "running": 1.0,
}


class SimulatedDriver:
    """A meter of ``profile`` drawing about ``rated_power_kw`` x 0.6 with a slow daily-like swing."""

    def __init__(self, device: str, profile: profiles.Profile, clock: Clock, rated_power_kw: float = 100.0) -> None:
        self.device = device
        self.profile = profile
        self.clock = clock
        self.rated_kw = rated_power_kw
        self._phase = (zlib.crc32(device.encode()) % 3600) / 3600.0 * 2 * math.pi
        self._base = 1000.0 + (zlib.crc32(device.encode()) % 100_000)

    def _power(self, t: float) -> float:
        return self.rated_kw * (0.6 + 0.3 * math.sin(2 * math.pi * t / 3600.0 + self._phase))

    def _energy(self, t: float) -> float:
        """kWh: the integral of :meth:`_power` since the anchor time, in closed form."""
        w = 2 * math.pi / 3600.0
        dt = t - _ANCHOR
        swing = -0.3 / w * (math.cos(w * t + self._phase) - math.cos(w * _ANCHOR + self._phase))
        return self._base + self.rated_kw * (0.6 * dt + swing) / 3600.0

    def _value(self, name: str, t: float) -> float:
        p = self._power(t)
        if name.startswith("active_energy_import"):
            return self._energy(t)
        if name.startswith("active_energy_export") or name.startswith("reactive_energy"):
            return 0.0
        if name.startswith("active_power_l"):
            return p / 3
        if name in ("active_power", "demand_active_power"):
            return p
        if name == "reactive_power":
            return p * 0.4
        if name == "apparent_power":
            return p / 0.93
        if name.startswith("current"):
            return p * 1000 / (3 * 230.0 * 0.93)
        for prefix, v in _GAUGES.items():
            if name.startswith(prefix):
                return v
        q = quantities.QUANTITIES.get(name)
        if q is not None and q.kind == "counter":
            return max(0.0, (t - _ANCHOR) / 60.0)
        return 0.0

    async def read(self) -> ReadResult:
        t = self.clock.now()
        raw: dict[str, float | None] = {}
        for p in self.profile.points:
            regs = profiles.encode_point(p, self._value(p.name, t))
            raw[p.name] = profiles.decode_point(p, regs)
        return ReadResult(profiles.publishable(self.profile, raw))

    def close(self) -> None:
        pass
