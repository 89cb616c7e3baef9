"""Interval energy from cumulative counters: the one implementation of counter increments.

Every path that turns a cumulative counter (energy, gas or water volume, production) into
consumption goes through this module: the gateway, which publishes a continuous total, and every
analytics path (``analyze sec``, EnPIs, the live monitor, carbon accounts and plant models), which
sum increments. The same readings therefore give the same figure everywhere.

A reading is folded into the counter's state by :func:`step` (streaming callers: one reading at a
time) or a whole series by :func:`increments` (vectorised callers: numpy arrays; the same decisions,
bit for bit, tested). Each reading is one of:

- **plain increase** (or no change): counted as it is. Decreases smaller than 1e-9 of the value are
  float rounding, counted as zero.
- **rollover**: the register went down and ``modulus − previous + new`` is a plausible increase,
  where the modulus is ``2**bits × scale`` of the meter's register (:func:`carbonedge.profiles.counter_modulus`)
  or, when the register is not known, any unsigned counter register of the meter profiles for the
  quantity. Counted exactly; event ``counter_rollover``.
- **reset** (meter swapped or cleared: the register went down, not a rollover, to a value it can
  have counted from zero since the last reading, or to at most half its previous value): the new
  value is counted as the increase across the reset when it is plausible for the elapsed time (the
  counter restarted from zero), otherwise zero; never a negative or a spike. Event
  ``counter_reset`` stating the assumption, so a report can apply a conservative estimate (EU MRR
  Art. 70 style gap filling).
- **out of order** (the register went back, but to more than half its value, to more than it can
  have counted from zero since the last reading, and not a rollover):
  a reading stamped later than a newer one (a clock that stepped back, interleaved in the store) or
  a swapped meter whose total happened to be close. The reading is not counted and the reference
  stays at the highest value, so nothing is counted twice; event ``implausible`` with
  ``action=out_of_order``. When the lower level keeps counting up for 3 readings in a row it is a
  swapped meter: a ``counter_reset`` from the first lower reading on.
- **implausible jump** (with a rated limit only: a rise faster than ``max_per_hour × 1.5``): not
  counted, published as bad, event ``implausible`` (``action=flagged``); a torn read recovers on
  the next reading, a level that holds for 3 readings is accepted as a step that is not counted
  (``action=rebased``).

*Plausible* means: within the rated limit ``max_per_hour × elapsed hours × 1.5`` when the device's
rating is configured, otherwise within ``10 ×`` the highest rate this counter showed so far (plain
increases only) over the elapsed time; with neither (no history yet), a rollover must be smaller
than 1/16 of the register range and a reset counts zero.

The module is part of the kernel: it imports no process package, and numpy only for the
vectorised form (the gateway's streaming use runs without it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy only for the vectorised form: the gateway runs without it
    import numpy as np

#: A rise faster than the rated limit × this margin is implausible.
PLAUSIBILITY_MARGIN = 1.5
#: Readings a new level must hold before it is accepted (implausible jump, or a lower level).
CONFIRM_READINGS = 3
#: Without a rated limit, an increase across a rollover or reset is plausible up to this many times
#: the highest rate the counter showed so far.
LEARNED_FACTOR = 10.0
#: Without any reference, a rollover's increase must be below this fraction of the register range.
UNREFERENCED_ROLLOVER = 1.0 / 16.0
#: A decrease to more than this fraction of the previous value is a reading out of order, not a reset.
OUT_OF_ORDER_FRACTION = 0.5
#: Decreases smaller than this fraction of the value are float rounding, not resets.
NOISE = 1e-9

#: Event kinds (the wire contract's event kinds for counters).
ROLLOVER_EVENT, RESET_EVENT, IMPLAUSIBLE_EVENT = "counter_rollover", "counter_reset", "implausible"

#: Interval flags of :class:`Increments` (bits).
RESET, ROLLOVER, GAP, IMPLAUSIBLE, OUT_OF_ORDER = 1, 2, 4, 8, 16


# --------------------------------------------------------------------------- what a counter is


@lru_cache(maxsize=None)
def profile_moduli(quantity: str | None = None) -> tuple[float, ...]:
    """Rollover values of the unsigned counter registers in the meter profiles (canonical units).

    With ``quantity``, only registers that carry it; used when a series' register is not known
    (an export, a store written by another gateway).
    """
    from carbonedge import profiles, quantities

    out: set[float] = set()
    for prof in profiles.PROFILES.values():
        for pt in prof.points:
            q = pt.quantity_name
            if q is None or (quantity is not None and q != quantity):
                continue
            qq = quantities.QUANTITIES.get(q)
            m = profiles.counter_modulus(pt)
            if m and qq is not None and qq.kind == "counter":
                out.add(float(m))
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """What is known about a counter: its register's rollover value and its rated maximum rate.

    ``modulus``: the register's rollover value (``profiles.counter_modulus``), when the meter
    profile is known. ``moduli``: candidate rollover values when it is not (see :func:`for_quantity`).
    ``max_per_hour``: the device's rated maximum (kWh/h = rated kW, t/h …), when configured.
    """

    modulus: float | None = None
    moduli: tuple[float, ...] = ()
    max_per_hour: float | None = None

    @classmethod
    def for_quantity(cls, quantity: str, *, profile: str | None = None, max_per_hour: float | None = None) -> CounterSpec:
        """The spec of a ``quantity`` counter: from its meter ``profile`` when known, else every profile's registers for it."""
        if profile is not None:
            from carbonedge import profiles

            prof = profiles.get_profile(profile)
            for pt in prof.points:
                if pt.quantity_name == quantity:
                    return cls(modulus=profiles.counter_modulus(pt), max_per_hour=max_per_hour)
        return cls(moduli=profile_moduli(quantity), max_per_hour=max_per_hour)

    def candidates(self) -> tuple[float, ...]:
        return (self.modulus,) if self.modulus else tuple(self.moduli)


# --------------------------------------------------------------------------- streaming


@dataclass(frozen=True, slots=True)
class CounterEvent:
    """Something a counter did that a reader must know: ``kind`` (wire event kind), ``reason`` (one plain sentence), ``detail``."""

    kind: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CounterState:
    """A counter's state between readings: ``total = raw + offset`` is the continuous total."""

    raw: float  # last good raw value (canonical unit): the highest since the last rollover or reset
    offset: float  # total = raw + offset
    ts: int  # ms of the last good reading
    peak_rate: float = 0.0  # highest rate of a plain increase so far, per hour (0: none yet)
    pending_raw: float | None = None  # a level waiting for confirmation (implausible jump or lower level)
    pending_first: float = 0.0  # the first reading of a pending lower level
    pending_ts: int = 0
    pending_n: int = 0
    pending_low: bool = False  # the pending level is below the reference (out of order / swapped meter)

    @property
    def total(self) -> float:
        return self.raw + self.offset

    @classmethod
    def start(cls, raw: float, ts: int, *, offset: float = 0.0) -> CounterState:
        return cls(float(raw), float(offset), int(ts))

    def _clear(self) -> None:
        self.pending_raw, self.pending_n, self.pending_low = None, 0, False


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one reading: ``delta`` counted (0 when not counted), ``good`` (False: publish as bad),
    ``flag`` (interval flag bits) and the ``event``, if any."""

    delta: float
    good: bool
    flag: int = 0
    event: CounterEvent | None = None


_PLAIN = Step(0.0, True)


def rated_limit(max_per_hour: float, dt_h: float) -> float:
    """Most a counter rated ``max_per_hour`` can plausibly rise in ``dt_h`` hours."""
    return max_per_hour * dt_h * PLAUSIBILITY_MARGIN + abs(max_per_hour) * 1e-6


def allowance(st: CounterState, spec: CounterSpec, dt_h: float) -> float | None:
    """The largest plausible increase over ``dt_h`` hours (rated, else learned), or None without a reference."""
    if spec.max_per_hour is not None:
        return rated_limit(spec.max_per_hour, dt_h)
    if st.peak_rate > 0:
        return LEARNED_FACTOR * st.peak_rate * dt_h
    return None


def step(st: CounterState, raw: float, ts: int, spec: CounterSpec) -> Step:
    """Fold one reading into ``st`` (updated in place); return what it counts.

    ``raw`` is the register value in canonical units, ``ts`` its time in ms. A non-finite ``raw``
    counts nothing and leaves the state as it is.
    """
    if not math.isfinite(raw):
        return Step(0.0, False)
    dt_h = max(0.0, (ts - st.ts) / 3_600_000.0)
    d = raw - st.raw
    if d >= -NOISE * max(1.0, abs(st.raw)):
        if d < 0.0:
            d = 0.0
        if spec.max_per_hour is not None and d > rated_limit(spec.max_per_hour, dt_h):
            return _jump(st, raw, ts, d, spec.max_per_hour)
        if d > 0.0 and dt_h > 0.0:
            r = d / dt_h
            if r > st.peak_rate:
                st.peak_rate = r
        if raw > st.raw:
            st.raw = raw
        st.ts = ts
        if st.pending_raw is not None:
            st._clear()
        return Step(d, True) if d else _PLAIN

    # The register went down: rollover, reading out of order, or reset.
    limit = allowance(st, spec, dt_h)
    best: tuple[float, float] | None = None
    for m in spec.candidates():
        if m <= st.raw:
            continue
        wrap = m - st.raw + raw
        if wrap >= 0 and (wrap <= limit if limit is not None else wrap < m * UNREFERENCED_ROLLOVER) and (best is None or wrap < best[1]):
            best = (m, wrap)
    if best is not None:
        m, wrap = best
        before = st.raw
        st.offset += m
        st.raw, st.ts = raw, ts
        st._clear()
        return Step(wrap, True, ROLLOVER, CounterEvent(
            ROLLOVER_EVENT, f"rolled over at the register's range {m:,.6g}; the increase {wrap:,.6g} is counted exactly",
            {"raw_before": before, "raw_after": raw, "modulus": m, "delta": wrap}))
    if limit is not None and 0.0 <= raw <= limit:
        return _reset(st, raw, ts, raw, st.raw)  # restarted from zero since the last reading
    if raw > OUT_OF_ORDER_FRACTION * st.raw:
        return _lower(st, raw, ts, limit)
    return _reset(st, raw, ts, 0.0, st.raw)


def _reset(st: CounterState, raw: float, ts: int, assumed: float, before_raw: float, *, since: float | None = None) -> Step:
    before_total = st.total
    base = raw if since is None else since
    counted = assumed + (raw - base)
    st.offset = before_total + counted - raw
    st.raw, st.ts = raw, ts
    st._clear()
    if since is None:
        reason = ("went back from {:,.6g} to {:,.6g}: counter reset or meter swap; ".format(before_raw, raw)
                  + ("counted from zero (restarted from zero)" if assumed else "the increase across it is unknown and counted as zero"))
    else:
        reason = (f"went back from {before_raw:,.6g} to {since:,.6g} and kept counting up from there for {CONFIRM_READINGS} readings: "
                  "a meter swap or reset; counted from the first lower reading, the increase before it is unknown and counted as zero")
    return Step(counted, True, RESET, CounterEvent(RESET_EVENT, reason, {
        "raw_before": before_raw, "raw_after": raw, "assumed_delta": assumed,
        "assumption": "restarted from zero" if assumed else "increase unknown, counted as zero"}))


def _lower(st: CounterState, raw: float, ts: int, limit: float | None) -> Step:
    """A reading below the reference, but not by much: out of order, unless the lower level keeps counting."""
    if st.pending_low and st.pending_raw is not None and raw >= st.pending_raw:
        st.pending_n += 1
        st.pending_raw = raw
    else:
        st.pending_raw, st.pending_first, st.pending_ts, st.pending_n, st.pending_low = raw, raw, ts, 1, True
    if st.pending_n >= CONFIRM_READINGS:
        first = st.pending_first
        return _reset(st, raw, ts, 0.0, st.raw, since=first)
    return Step(0.0, False, OUT_OF_ORDER, CounterEvent(
        IMPLAUSIBLE_EVENT, f"went back from {st.raw:,.6g} to {raw:,.6g}, less than half: a reading out of order (a clock that "
        "stepped back) or a swapped meter; not counted, the counter continues from the higher value",
        {"action": "out_of_order", "raw_before": st.raw, "raw": raw}))


def _jump(st: CounterState, raw: float, ts: int, d: float, max_per_hour: float) -> Step:
    # Does this reading confirm a pending new level (it grew plausibly from it)?
    if st.pending_raw is not None and not st.pending_low and raw >= st.pending_raw:
        if raw - st.pending_raw <= rated_limit(max_per_hour, max(0.0, (ts - st.pending_ts) / 3_600_000.0)):
            st.pending_n += 1
        else:
            st.pending_raw, st.pending_ts, st.pending_n = raw, ts, 1
    else:
        st.pending_raw, st.pending_ts, st.pending_n, st.pending_low = raw, ts, 1, False
    if st.pending_n >= CONFIRM_READINGS and st.pending_raw is not None:
        jump = st.pending_raw - st.raw
        counted = raw - st.pending_raw  # what the new level counted since it appeared (the jump itself is not)
        st.offset = st.total - st.pending_raw
        st.raw, st.ts = raw, ts
        st._clear()
        return Step(counted, True, IMPLAUSIBLE, CounterEvent(
            IMPLAUSIBLE_EVENT, f"the new level held for {CONFIRM_READINGS} readings; the jump is not counted",
            {"action": "rebased", "jump": jump, "raw_after": raw}))
    limit = rated_limit(max_per_hour, max(0.0, (ts - st.ts) / 3_600_000.0))
    return Step(0.0, False, IMPLAUSIBLE, CounterEvent(
        IMPLAUSIBLE_EVENT, "rose faster than the plausibility limit; published as bad",
        {"action": "flagged", "raw_before": st.raw, "raw": raw, "increase": d, "limit": limit}))


# --------------------------------------------------------------------------- vectorised


@dataclass
class Increments:
    """A counter series as increments: interval *i* is ``(t_ms[i], t_ms[i+1]]``.

    ``delta[i]`` is what the reading at ``t_ms[i+1]`` counts (0 for one that is not counted),
    ``flags[i]`` its flag bits, ``events`` the ``(reading index, event)`` pairs, ``state`` the
    counter's state after the last reading (to continue streaming from it).
    """

    t_ms: np.ndarray
    delta: np.ndarray
    flags: np.ndarray
    events: list[tuple[int, CounterEvent]]
    state: CounterState | None

    @property
    def total(self) -> float:
        return float(self.delta.sum())

    def cumulative(self) -> np.ndarray:
        """Counted increase from the first reading, at every reading (starts at 0)."""
        import numpy as np

        return np.concatenate([[0.0], np.cumsum(self.delta)]) if self.t_ms.size else np.zeros(0)

    def count(self, flag: int) -> int:
        return int(((self.flags & flag) != 0).sum())


def increments(t_ms: np.ndarray, values: np.ndarray, spec: CounterSpec | None = None) -> Increments:
    """The increments of a counter series in arrival order (non-finite values are left out).

    Gives exactly what :func:`step` gives reading by reading (the same floats): stretches of plain
    increases (within the rated limit, when there is one) run as numpy, every other reading goes
    through :func:`step`.
    """
    import numpy as np

    spec = spec or CounterSpec()
    t = np.asarray(t_ms, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if t.size != v.size:
        raise ValueError("times and values differ in length")
    keep = np.isfinite(v)
    if not keep.all():
        t, v = t[keep], v[keep]
    n = v.size
    if n == 0:
        return Increments(t, np.zeros(0), np.zeros(0, dtype=np.int8), [], None)
    d = np.diff(v)
    dt_h = np.maximum(0.0, np.diff(t) / 3_600_000.0)
    odd = d < 0
    if spec.max_per_hour is not None:
        odd |= d > spec.max_per_hour * dt_h * PLAUSIBILITY_MARGIN + abs(spec.max_per_hour) * 1e-6
    odd_at = np.flatnonzero(odd)
    delta = np.zeros(d.size)
    flags = np.zeros(d.size, dtype=np.int8)
    st = CounterState.start(float(v[0]), int(t[0]))
    events: list[tuple[int, CounterEvent]] = []
    vl, tl = v.tolist(), t.tolist()
    i, k = 0, 0  # i: the reading the state is at; k: index into odd_at
    while i < n - 1:
        if st.pending_raw is None and st.raw == vl[i]:
            # A stretch of plain increases from reading i on: numpy, the same floats step() would give.
            while k < odd_at.size and odd_at[k] < i:
                k += 1
            j = int(odd_at[k]) if k < odd_at.size else d.size  # the stretch ends at reading j
            if j > i:
                delta[i:j] = d[i:j]
                pos = (d[i:j] > 0) & (dt_h[i:j] > 0)
                if pos.any():
                    st.peak_rate = max(st.peak_rate, float(np.max(d[i:j][pos] / dt_h[i:j][pos])))
                st.raw, st.ts = vl[j], tl[j]
                i = j
                continue
        s = step(st, vl[i + 1], tl[i + 1], spec)
        delta[i] = s.delta
        flags[i] = s.flag
        if s.event is not None:
            events.append((i + 1, s.event))
        i += 1
    return Increments(t, delta, flags, events, st)
