"""Conflict detection: a different value at an already written series+time is never silently overwritten.

InfluxDB merges points with the same measurement, tag set and timestamp and the new field values
win, so an identical replay is harmless but a *different* value (a gateway clock stepped back after
a power cut, a tampered or buggy replay) would silently replace accepted evidence.

Design (no InfluxDB read per point on the hot path):

* :class:`ConflictIndex` is a bounded, insertion-ordered map ``hash(series key + time) ->
  hash(field set)`` of the most recent points this collector wrote (or spooled). A point whose key
  is in the index is checked in memory: same digest = identical replay (written again, harmless),
  different digest = conflict.
* Only a *suspect* batch costs an InfluxDB read (:func:`find_conflicts_in_db`): a replay (its seq is
  at or below the gateway's watermark, or already written by this or a peer collector) or a batch
  whose timestamps are not newer than what this collector last wrote for that gateway (a clock
  that went back), and only for points the index does not hold. Normal live traffic, with new seqs
  and advancing clocks, never reads.

Guarantees: a conflicting point is detected if (a) it repeats a key written by this collector
within the last ``max_entries`` points, or (b) its batch is a replay or goes back in time, whatever
collector wrote the original. Not guaranteed: a *new* seq with timestamps that are newer than this
collector's last batch of that gateway but collide with a point a *peer* collector wrote (this needs
a gateway clock that jumps back by less than one poll cycle per collector in the group). The field
set includes ``seq``, so the same values re-sent under another seq also count as a conflict: the
stored point would change its provenance.
"""

from __future__ import annotations

from collections import OrderedDict

from carbonedge.errors import QueryError
from carbonedge.influx import InfluxClient, quote_literal
from carbonedge.collector.lineprotocol import Point


class ConflictIndex:
    """Bounded FIFO map of recent point keys to field digests."""

    def __init__(self, max_entries: int = 250_000) -> None:
        self.max_entries = max_entries
        self._d: OrderedDict[int, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def check(self, p: Point) -> str:
        """``"new"``, ``"same"`` (identical replay) or ``"conflict"``; does not record anything."""
        old = self._d.get(hash((p.series, p.ts)))
        if old is None:
            return "new"
        return "same" if old == hash(p.fields) else "conflict"

    def check_all(self, points: list[Point]) -> list[str]:
        """:meth:`check` for every point (one pass, for the hot path)."""
        get = self._d.get
        out = []
        for p in points:
            old = get(hash((p.series, p.ts)))
            out.append("new" if old is None else "same" if old == hash(p.fields) else "conflict")
        return out

    def add_all(self, points: list[Point]) -> None:
        """:meth:`add` for every point, then trim to ``max_entries``."""
        d = self._d
        for p in points:
            d[hash((p.series, p.ts))] = hash(p.fields)  # an existing key keeps its place, as in add()
        excess = len(d) - self.max_entries
        for _ in range(excess if excess > 0 else 0):
            d.popitem(last=False)

    def add(self, p: Point) -> None:
        k = hash((p.series, p.ts))
        d = self._d
        if k in d:
            d[k] = hash(p.fields)
            return
        d[k] = hash(p.fields)
        if len(d) > self.max_entries:
            d.popitem(last=False)


def _parse_fields(fields: str) -> dict[str, object]:
    """Parse a field set we built ourselves (floats, ``Ni`` ints, quoted strings without commas inside for readings)."""
    out: dict[str, object] = {}
    for part in fields.split(","):
        k, _, v = part.partition("=")
        if v.endswith("i") and v[:-1].lstrip("-").isdigit():
            out[k] = int(v[:-1])
        elif v.startswith('"'):
            out[k] = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        else:
            out[k] = float(v)
    return out


def _tags_of(series: str) -> dict[str, str]:
    return dict(t.split("=", 1) for t in series.split(",")[1:])


def find_conflicts_in_db(db: InfluxClient, points: list[Point]) -> list[tuple[Point, dict[str, object]]]:
    """Points of one gateway whose key already exists in InfluxDB with a different value for one of their fields.

    One InfluxQL query per call (all ``points`` must share site and gateway); returns
    ``(point, stored_fields)`` pairs for the conflicting ones. Any failure is a retryable :class:`QueryError`.
    """
    if not points:
        return []
    first = _tags_of(points[0].series)
    lo = min(p.ts for p in points)
    hi = max(p.ts for p in points)
    q = (f'SELECT * FROM "readings" WHERE "site" = {quote_literal(first["site"])} AND "gateway" = {quote_literal(first["gateway"])} '
         f"AND time >= {lo}ms AND time <= {hi}ms GROUP BY *")
    try:
        results = db.results(q)
    except QueryError as exc:
        raise QueryError(f"could not check InfluxDB for earlier values of replayed readings: {exc}", retryable=True) from None
    res = results[0] if results else {}
    stored: dict[tuple[frozenset[tuple[str, str]], int], dict[str, object]] = {}
    for s in res.get("series", []):
        tags = frozenset((k, v) for k, v in s.get("tags", {}).items() if v != "")
        cols = s["columns"]
        for row in s["values"]:
            rec = dict(zip(cols, row, strict=False))
            ts = rec.pop("time")
            stored[(tags, int(ts))] = {k: v for k, v in rec.items() if v is not None}
    out = []
    for p in points:
        have = stored.get((frozenset(_tags_of(p.series).items()), p.ts))
        if have is None:
            continue
        mine = _parse_fields(p.fields)
        if any(k in have and _differs(have[k], v) for k, v in mine.items()):
            out.append((p, have))
    return out


def _differs(a: object, b: object) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) != float(b)
    return a != b
