"""Injectable time: a wall clock for plants, a virtual clock for tests and demos.

A :class:`VirtualClock` maps wall time to plant time with a speed factor, so a day
of plant operation runs in a minute. Separate processes that are given the same
:class:`ClockSpec` (``start``, ``speed`` and the wall-clock ``origin``) agree on
plant time without talking to each other. ``end`` optionally freezes the clock:
the simulators hold their state after the scenario ends, so a gateway's last poll
reads the final counters exactly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Plant time, seconds since the Unix epoch."""

    async def sleep_until(self, t: float) -> None:
        """Sleep until plant time ``t``."""

    def wall_seconds(self, plant_seconds: float) -> float:
        """How many wall seconds ``plant_seconds`` of plant time take."""


class WallClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - time.time()))

    def wall_seconds(self, plant_seconds: float) -> float:
        return plant_seconds


@dataclass(frozen=True)
class ClockSpec:
    """Serializable description of a virtual clock, shared by the processes of one run."""

    start: float  # plant epoch seconds at wall time `origin`
    speed: float = 1.0
    origin: float = 0.0  # wall epoch seconds
    end: float | None = None  # plant time at which the clock stops (None: never)
    hold_start: bool = True  # before `origin`, report `start` (not earlier)

    def to_arg(self) -> str:
        parts = [f"start={_iso(self.start)}", f"speed={self.speed:g}", f"origin={self.origin:.6f}"]
        if self.end is not None:
            parts.append(f"end={_iso(self.end)}")
        return ",".join(parts)

    @classmethod
    def parse(cls, text: str) -> ClockSpec:
        """Parse ``start=ISO,speed=N[,origin=EPOCH][,end=ISO]`` (origin defaults to now)."""
        fields: dict[str, str] = {}
        for part in text.split(","):
            if "=" not in part:
                raise ValueError(f"clock spec {text!r}: expected key=value, got {part!r}")
            k, v = part.split("=", 1)
            fields[k.strip()] = v.strip()
        unknown = set(fields) - {"start", "speed", "origin", "end"}
        if unknown or "start" not in fields:
            raise ValueError(f"clock spec {text!r}: needs start=ISO-TIME, optional speed, origin, end")
        return cls(
            start=parse_time(fields["start"]),
            speed=float(fields.get("speed", "1")),
            origin=float(fields["origin"]) if "origin" in fields else time.time(),
            end=parse_time(fields["end"]) if "end" in fields else None,
        )


class VirtualClock:
    """Plant time = ``start + (wall - origin) * speed``, held at ``start`` before origin and at ``end`` after."""

    def __init__(self, spec: ClockSpec) -> None:
        if spec.speed <= 0:
            raise ValueError("clock speed must be positive")
        self.spec = spec

    def now(self) -> float:
        s = self.spec
        t = s.start + (time.time() - s.origin) * s.speed
        if s.hold_start and t < s.start:
            t = s.start
        if s.end is not None and t > s.end:
            t = s.end
        return t

    def _unclamped(self) -> float:
        return self.spec.start + (time.time() - self.spec.origin) * self.spec.speed

    async def sleep_until(self, t: float) -> None:
        while True:
            delta = t - self._unclamped()
            if delta <= 0:
                return
            await asyncio.sleep(delta / self.spec.speed)

    def wall_seconds(self, plant_seconds: float) -> float:
        return plant_seconds / self.spec.speed


def make_clock(spec: str | ClockSpec | None) -> Clock:
    if spec is None or spec == "wall":
        return WallClock()
    if isinstance(spec, str):
        spec = ClockSpec.parse(spec)
    return VirtualClock(spec)


def parse_time(text: str) -> float:
    """Parse an ISO 8601 time (``Z`` or offset; naive means UTC) to epoch seconds."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def iso(t: float) -> str:
    """Epoch seconds to ISO 8601 UTC with a ``Z``."""
    return _iso(t)
