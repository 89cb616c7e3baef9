"""Cumulative counters (energy, production): rollover, reset and implausible jumps, handled on the gateway.

The gateway publishes every counter quantity as a *continuous total*: equal to the
meter register until the first rollover or reset, then the register plus an offset,
so that the published series never goes backwards and never jumps. Every offset
change is an explicit wire :class:`~carbonedge.wire.Event` carrying the raw register
values, so an auditor can reconcile the published total with the meter display.

- **Rollover** (an unsigned integer register wraps at 2^bits x scale): the delta is
  exact, ``modulus - previous + new`` [reliability §4 counter row; G12].
- **Reset** (meter replaced or cleared; the register went down and it is not a
  rollover): a ``counter_reset`` event. The increase across the reset is taken as the
  new register value when that is plausible for the elapsed time (the counter
  restarted from zero), otherwise as zero, and never as a negative or a spike. The
  event states the assumption so that a report can apply a conservative estimate
  (EU MRR Art. 70 style gap filling).
- **Implausible jump** (a rise faster than the device's rated power x 1.5, or its
  configured limit): the value is published as bad (``null``) with an ``implausible``
  event, and the reference stays at the last good value. A torn read recovers on the
  next cycle; a level that persists for 3 readings is accepted as a step and the
  published total continues without the jump (event ``implausible`` with
  ``action=rebased``).

Without a configured limit, rollovers are recognised by their size (less than 1/16 of
the register range) and resets contribute zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from carbonedge import wire

PLAUSIBILITY_MARGIN = 1.5
CONFIRM_READINGS = 3
#: Decreases smaller than this fraction of the value are float rounding, not resets.
_NOISE = 1e-9


@dataclass(slots=True)
class CounterState:
    raw: float  # last good raw register value (canonical unit)
    offset: float  # published = raw + offset
    ts: int  # ms of the last good reading
    pending_raw: float | None = None  # an implausible level waiting for confirmation
    pending_ts: int = 0
    pending_n: int = 0

    @property
    def published(self) -> float:
        return self.raw + self.offset


@dataclass(frozen=True, slots=True)
class CounterResult:
    value: float | None  # None: publish as bad
    quality: wire.Quality
    events: tuple[wire.Event, ...] = ()


class CounterTracker:
    """Per (device, quantity) counter state. ``dirty`` holds keys whose offset changed (or that are new)
    since the last :meth:`take_dirty`: only those need persisting. After a restart the stored raw value
    may be older than the last reading; that only widens the plausibility window (it scales with the
    elapsed time), and the published total ``raw + offset`` continues exactly."""

    def __init__(self, rows: list[tuple[str, str, float, float, int]] | None = None) -> None:
        self.states: dict[tuple[str, str], CounterState] = {}
        for dev, q, raw, offset, ts in rows or []:
            self.states[(dev, q)] = CounterState(raw, offset, ts)
        self.dirty: set[tuple[str, str]] = set()

    def take_dirty(self) -> list[tuple[str, str, float, float, int]]:
        rows = [(d, q, s.raw, s.offset, s.ts) for (d, q) in self.dirty if (s := self.states.get((d, q))) is not None]
        self.dirty.clear()
        return rows

    def update(self, device: str, quantity: str, raw: float, ts: int, *, modulus: float | None, max_per_hour: float | None) -> CounterResult:
        """Fold one raw counter reading into the state; return what to publish and any events."""
        key = (device, quantity)
        st = self.states.get(key)
        if st is None:
            self.states[key] = CounterState(raw, 0.0, ts)
            self.dirty.add(key)
            return CounterResult(raw, "good")
        dt_h = max(0.0, (ts - st.ts) / 3_600_000.0)
        limit = None if max_per_hour is None else max_per_hour * dt_h * PLAUSIBILITY_MARGIN + abs(max_per_hour) * 1e-6
        d = raw - st.raw

        if d >= -_NOISE * max(1.0, abs(st.raw)):
            d = max(d, 0.0)
            if limit is not None and d > limit:
                return self._implausible(device, quantity, st, raw, ts, d, limit, max_per_hour or 0.0)
            st.raw, st.ts = max(raw, st.raw), ts
            st.pending_raw, st.pending_n = None, 0
            return CounterResult(st.published, "good")

        # The register went down: rollover or reset.
        if modulus is not None:
            wrap = modulus - st.raw + raw
            if (limit is None and 0 <= wrap < modulus / 16) or (limit is not None and 0 <= wrap <= limit):
                st.offset += modulus
                self.dirty.add(key)
                before = st.raw
                st.raw, st.ts = raw, ts
                st.pending_raw, st.pending_n = None, 0
                ev = wire.Event(kind="counter_rollover", ts=ts, device=device, quantity=quantity,
                                detail={"raw_before": before, "raw_after": raw, "modulus": modulus, "delta": wrap, "published": st.published})
                return CounterResult(st.published, "good", (ev,))
        assumed = raw if (limit is not None and 0 <= raw <= limit) else 0.0
        before_pub, before_raw = st.published, st.raw
        st.offset = before_pub + assumed - raw
        self.dirty.add(key)
        st.raw, st.ts = raw, ts
        st.pending_raw, st.pending_n = None, 0
        ev = wire.Event(kind="counter_reset", ts=ts, device=device, quantity=quantity,
                        detail={"raw_before": before_raw, "raw_after": raw, "assumed_delta": assumed,
                                "assumption": "restarted from zero" if assumed else "increase unknown, counted as zero",
                                "published": st.published})
        return CounterResult(st.published, "good", (ev,))

    def _implausible(self, device: str, quantity: str, st: CounterState, raw: float, ts: int, d: float, limit: float, max_per_hour: float) -> CounterResult:
        # Does this reading confirm a pending new level (it grew plausibly from it)?
        if st.pending_raw is not None and raw >= st.pending_raw:
            dt_h = max(0.0, (ts - st.pending_ts) / 3_600_000.0)
            if raw - st.pending_raw <= max_per_hour * PLAUSIBILITY_MARGIN * dt_h + max_per_hour * 1e-6:
                st.pending_n += 1
            else:
                st.pending_raw, st.pending_ts, st.pending_n = raw, ts, 1
        else:
            st.pending_raw, st.pending_ts, st.pending_n = raw, ts, 1
        if st.pending_n >= CONFIRM_READINGS and st.pending_raw is not None:
            jump = st.pending_raw - st.raw
            before = st.published
            st.offset = before - st.pending_raw
            self.dirty.add((device, quantity))
            st.raw, st.ts = raw, ts
            st.pending_raw, st.pending_n = None, 0
            ev = wire.Event(kind="implausible", ts=ts, device=device, quantity=quantity,
                            detail={"action": "rebased", "jump": jump, "raw_after": raw, "published": st.published,
                                    "reason": f"the new level held for {CONFIRM_READINGS} readings; the jump is not counted"})
            return CounterResult(st.published, "good", (ev,))
        ev = wire.Event(kind="implausible", ts=ts, device=device, quantity=quantity,
                        detail={"action": "flagged", "raw_before": st.raw, "raw": raw, "increase": d, "limit": limit,
                                "reason": "rose faster than the plausibility limit; published as bad"})
        return CounterResult(None, "bad", (ev,))
