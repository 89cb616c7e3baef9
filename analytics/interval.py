"""Interval consumption from cumulative counters, and aggregation into plant periods.

A counter's consumption between two readings comes from the kernel's counter arithmetic
(:mod:`carbonedge.energy`, the one implementation shared with the gateway and every analytics
path): rollovers at the register's modulus (``2**bits × scale``, ``carbonedge.profiles.counter_modulus``)
counted exactly, resets never a negative or a spike, readings out of order not counted twice.

A **gap** (no reading for longer than ``max_gap_s``) is explicit: the consumption across it is still
known exactly from the counter, but it is flagged so that rates and per-interval figures do not
silently spread it as if it had been measured evenly.

Period aggregation follows the plant's local time (``zoneinfo``), so a day is the plant's day,
including the 23 h and 25 h days of daylight-saving changes, and shifts are local wall-clock
windows that may cross midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from carbonedge import energy
from carbonedge.energy import GAP, IMPLAUSIBLE, OUT_OF_ORDER, RESET, ROLLOVER, CounterSpec
from carbonedge.errors import ConfigError

#: Interval flags (bits, as in :mod:`carbonedge.energy`).
OK = 0
__all__ = ["GAP", "IMPLAUSIBLE", "OK", "OUT_OF_ORDER", "RESET", "ROLLOVER", "Intervals", "aggregate", "intervals"]


@dataclass
class Intervals:
    """Per-interval increments of one counter: interval *i* is ``(t[i], t[i+1]]``."""

    start_ms: np.ndarray  # int64, interval start (previous reading)
    end_ms: np.ndarray  # int64, interval end (this reading)
    delta: np.ndarray  # float64, consumption in the interval
    flags: np.ndarray  # int8, OR of RESET / ROLLOVER / GAP / IMPLAUSIBLE / OUT_OF_ORDER

    @property
    def total(self) -> float:
        return float(self.delta.sum())

    @property
    def resets(self) -> int:
        return int(((self.flags & RESET) != 0).sum())

    @property
    def rollovers(self) -> int:
        return int(((self.flags & ROLLOVER) != 0).sum())

    @property
    def gaps(self) -> int:
        return int(((self.flags & GAP) != 0).sum())


def intervals(times_ms: np.ndarray, values: np.ndarray, *, modulus: float | None = None, max_gap_s: float | None = None,
              quantity: str | None = None, spec: CounterSpec | None = None) -> Intervals:
    """Split a cumulative counter into per-interval increments (reset, rollover and gap safe).

    The counter is described by ``spec``, or by ``modulus`` (its register's rollover value), or by
    its ``quantity`` (any meter profile's register for it, :meth:`carbonedge.energy.CounterSpec.for_quantity`).
    Readings are put in time order first; duplicate timestamps are dropped (the first is kept).
    """
    t = np.asarray(times_ms, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if t.size != v.size:
        raise ValueError("times and values differ in length")
    keep = np.isfinite(v)
    t, v = t[keep], v[keep]
    if t.size and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
    if t.size > 1:
        first = np.concatenate([[True], np.diff(t) > 0])
        t, v = t[first], v[first]
    if t.size < 2:
        empty_i = np.zeros(0, dtype=np.int64)
        return Intervals(empty_i, empty_i.copy(), np.zeros(0), np.zeros(0, dtype=np.int8))
    if spec is None:
        spec = CounterSpec(modulus=modulus) if modulus else CounterSpec.for_quantity(quantity) if quantity else CounterSpec()
    inc = energy.increments(t, v, spec)
    flags = inc.flags.copy()
    if max_gap_s is not None:
        flags[np.diff(t) > max_gap_s * 1000.0] |= GAP
    return Intervals(t[:-1], t[1:], inc.delta, flags)


# --------------------------------------------------------------------------- periods


def zone(name: str) -> ZoneInfo:
    """The plant's time zone, with a clear error for a wrong name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin' or 'Asia/Shanghai'") from None


@dataclass(frozen=True)
class Shift:
    """A named local wall-clock window, e.g. ``Shift("night", time(22), time(6))`` (crosses midnight)."""

    name: str
    start: time
    end: time


def parse_shifts(spec: dict[str, str] | None) -> list[Shift]:
    """``{"early": "06:00-14:00", "late": "14:00-22:00", "night": "22:00-06:00"}`` → shifts covering the day."""
    if not spec:
        return []
    out: list[Shift] = []
    for name, window in spec.items():
        try:
            a, b = (time.fromisoformat(x.strip()) for x in str(window).split("-"))
        except ValueError:
            raise ConfigError(f"shift {name!r}: {window!r} is not a window like '06:00-14:00'") from None
        out.append(Shift(name, a, b))
    return out


def period_key(t_ms: int, period: str, tz: ZoneInfo, shifts: list[Shift] | None = None) -> tuple[int, str]:
    """The local period holding ``t_ms``: ``(period start in epoch ms, label)``.

    ``period`` is ``hour``, ``shift``, ``day``, ``week`` or ``month``. A shift that crosses midnight
    belongs to the day it started on.
    """
    local = datetime.fromtimestamp(t_ms / 1000.0, UTC).astimezone(tz)
    if period == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        label = start.strftime("%Y-%m-%d %H:00")
    elif period == "day":
        start = datetime.combine(local.date(), time(0), tz)
        label = start.strftime("%Y-%m-%d")
    elif period == "week":
        d = local.date() - timedelta(days=local.weekday())
        start = datetime.combine(d, time(0), tz)
        label = start.strftime("%G-W%V")
    elif period == "month":
        start = datetime.combine(local.date().replace(day=1), time(0), tz)
        label = start.strftime("%Y-%m")
    elif period == "shift":
        if not shifts:
            raise ConfigError("period 'shift' needs the plant's shifts, e.g. {'early': '06:00-14:00', ...}")
        wall = local.time().replace(tzinfo=None)
        for s in shifts:
            crosses = s.end <= s.start
            inside = (s.start <= wall < s.end) if not crosses else (wall >= s.start or wall < s.end)
            if inside:
                day = local.date() if (not crosses or wall >= s.start) else local.date() - timedelta(days=1)
                start = datetime.combine(day, s.start, tz)
                label = f"{day.isoformat()} {s.name}"
                break
        else:
            raise ConfigError(f"local time {wall.isoformat()} is in no shift; the shifts must cover the whole day")
    else:
        raise ConfigError(f"unknown period {period!r}; use hour, shift, day, week or month")
    # Round-trip through UTC: fold/gap handling of the local start is zoneinfo's.
    return int(start.astimezone(UTC).timestamp() * 1000), label


def aggregate(iv: Intervals, period: str, tz: ZoneInfo | str = "UTC", shifts: list[Shift] | None = None) -> dict[int, tuple[str, float, int]]:
    """Sum interval increments into local periods: ``{period start ms: (label, total, flagged intervals)}``.

    An interval that straddles a period boundary is split in proportion to time (the counter's
    increments are only known at readings; a linear split is the least-biased estimate and keeps
    every kWh: the period totals add up exactly to the counter's total).
    """
    tzi = zone(tz) if isinstance(tz, str) else tz
    out: dict[int, list] = {}
    for a, b, d, f in zip(iv.start_ms.tolist(), iv.end_ms.tolist(), iv.delta.tolist(), iv.flags.tolist(), strict=True):
        ka, la = period_key(a, period, tzi, shifts)
        kb, lb = period_key(b - 1, period, tzi, shifts)
        if ka == kb:
            slot = out.setdefault(ka, [la, 0.0, 0])
            slot[1] += d
            slot[2] += int(f != 0)
            continue
        # Walk the boundaries between a and b.
        pieces: list[tuple[int, str, int, int]] = []
        cur, key, label = a, ka, la
        while True:
            nxt = _next_boundary(key, period, tzi, shifts, cur)
            if nxt >= b:
                pieces.append((key, label, cur, b))
                break
            pieces.append((key, label, cur, nxt))
            cur = nxt
            key, label = period_key(cur, period, tzi, shifts)
        for key, label, s, e in pieces:
            slot = out.setdefault(key, [label, 0.0, 0])
            slot[1] += d * (e - s) / (b - a)
            slot[2] += int(f != 0)
    return {k: (v[0], v[1], v[2]) for k, v in sorted(out.items())}


def _next_boundary(key: int, period: str, tz: ZoneInfo, shifts: list[Shift] | None, cur: int) -> int:
    # Step forward until the period changes; hour steps bound the search (shifts are ≥ 1 h apart †).
    step = 60_000 if period in ("hour", "shift") else 3_600_000
    probe = cur
    lo = cur
    while True:
        probe += step
        if period_key(probe, period, tz, shifts)[0] != key:
            break
        lo = probe
    # Binary search to the millisecond between lo (same period) and probe (next period).
    hi = probe
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if period_key(mid, period, tz, shifts)[0] == key:
            lo = mid
        else:
            hi = mid
    return hi
