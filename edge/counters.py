"""Cumulative counters (energy, production) on the gateway: a continuous total with explicit events.

The gateway publishes every counter quantity as a *continuous total*: equal to the meter
register until the first rollover or reset, then the register plus an offset, so that the
published series never goes backwards and never jumps. Every offset change is an explicit wire
:class:`~carbonedge.wire.Event` carrying the raw register values, so an auditor can reconcile the
published total with the meter display.

The arithmetic (rollover from the register's width and scale, resets, implausible jumps, readings
out of order) is the kernel's :mod:`carbonedge.energy`, the same code every analytics path uses;
this module keeps the per-(device, quantity) state, marks what must be persisted and turns the
kernel's events into wire events. A reading the kernel does not count (an implausible jump waiting
for confirmation, a reading out of order) is published as bad (``null``).
"""

from __future__ import annotations

from dataclasses import dataclass

from carbonedge import energy, wire
from carbonedge.energy import CONFIRM_READINGS, PLAUSIBILITY_MARGIN, CounterState

__all__ = ["CONFIRM_READINGS", "PLAUSIBILITY_MARGIN", "CounterResult", "CounterState", "CounterTracker"]


@dataclass(frozen=True, slots=True)
class CounterResult:
    value: float | None  # None: publish as bad
    quality: wire.Quality
    events: tuple[wire.Event, ...] = ()


class CounterTracker:
    """Per (device, quantity) counter state. ``dirty`` holds keys whose offset changed (or that are new)
    since the last :meth:`take_dirty`: only those need persisting. After a restart the stored raw value
    may be older than the last reading; that only widens the plausibility window (it scales with the
    elapsed time), and the published total ``raw + offset`` continues exactly. The learned peak rate is
    not persisted: after a restart the counter learns it again."""

    def __init__(self, rows: list[tuple[str, str, float, float, int]] | None = None) -> None:
        self.states: dict[tuple[str, str], CounterState] = {}
        for dev, q, raw, offset, ts in rows or []:
            self.states[(dev, q)] = CounterState.start(raw, ts, offset=offset)
        self.dirty: set[tuple[str, str]] = set()
        self._specs: dict[tuple[float | None, float | None], energy.CounterSpec] = {}

    def take_dirty(self) -> list[tuple[str, str, float, float, int]]:
        rows = [(d, q, s.raw, s.offset, s.ts) for (d, q) in self.dirty if (s := self.states.get((d, q))) is not None]
        self.dirty.clear()
        return rows

    def update(self, device: str, quantity: str, raw: float, ts: int, *, modulus: float | None, max_per_hour: float | None) -> CounterResult:
        """Fold one raw counter reading into the state; return what to publish and any events."""
        key = (device, quantity)
        st = self.states.get(key)
        if st is None:
            self.states[key] = CounterState.start(raw, ts)
            self.dirty.add(key)
            return CounterResult(raw, "good")
        spec = self._specs.get((modulus, max_per_hour))
        if spec is None:
            spec = self._specs[(modulus, max_per_hour)] = energy.CounterSpec(modulus=modulus, max_per_hour=max_per_hour)
        offset = st.offset
        s = energy.step(st, raw, ts, spec)
        if st.offset != offset:
            self.dirty.add(key)
        if s.event is None:
            return CounterResult(st.total if s.good else None, "good" if s.good else "bad")
        detail: dict[str, float | int | str | bool | None] = {k: v for k, v in s.event.detail.items()}
        detail["reason"] = s.event.reason
        if s.good:
            detail["published"] = st.total
        ev = wire.Event(kind=s.event.kind, ts=ts, device=device, quantity=quantity, detail=detail)  # type: ignore[arg-type]
        return CounterResult(st.total if s.good else None, "good" if s.good else "bad", (ev,))
