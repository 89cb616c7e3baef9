"""Per-gateway watermarks that stay correct when N collectors share one subscription.

With ``$share/<group>/…`` the broker hands each message of a gateway to *one* collector of the
group, so no collector sees all of a gateway's seqs. Each collector therefore keeps, per gateway:

* ``watermark``: the highest seq below which every batch is durably handled by *some* collector
  of the group (in InfluxDB, in a collector's fsynced spool, or in its fsynced dead-letter file);
* ``done``: seqs above the watermark that *this* collector durably handled (persisted in its
  state file, fsynced, before anything is published or acknowledged);
* ``peers``: the same sets as announced by the other collectors of the group.

After every flush a collector publishes its ``done`` set for each touched gateway, retained, on
``carbonedge/v1/_collectors/{group}/{site}/{gateway}/{collector_id}`` (see :func:`progress_topic`;
``_`` cannot start a site name, so it never collides with gateway topics). Every collector
subscribes to the whole group's progress and to the gateways' retained ``ack`` topics, and
advances the watermark over the union of all sets. It publishes a new ``Ack`` only when the
watermark moved past the last ``Ack`` it has seen; several collectors publishing the same value
is harmless and gateways only ever move their watermark forward.

Why this never acknowledges too much: a seq enters a ``done`` set only after it is durable, and
the watermark only crosses seqs that are in some ``done`` set, or that were declared lost (below).
Losing a progress message (a broker restart without persistence) only delays the watermark; the
gateway then resends, and the redelivered batches are identical replays.

Sequence gaps: seqs are contiguous at the gateway (persisted with the batch), so a hole that
stays open while later seqs are done means the gateway discarded those batches (outbox overflow,
which it reports as an ``overflow`` event) or had pruned them before this collector group ever
saw it (first contact without a retained ``Ack``). Gateways resend everything above the
watermark every ``resend_after_s`` (30 s by default), so a hole still open after ``gap_timeout_s``
(default 120 s) is declared a gap: counted, written as an ``events`` point of kind ``seq_gap`` and
skipped, so that the gateway's outbox does not grow forever behind it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from carbonedge import wire
from carbonedge.files import atomic_write

PROGRESS_ROOT = f"{wire.TOPIC_ROOT}/_collectors"


def progress_topic(group: str, site: str, gateway: str, collector_id: str) -> str:
    return f"{PROGRESS_ROOT}/{group}/{site}/{gateway}/{collector_id}"


def progress_filter(group: str) -> str:
    return f"{PROGRESS_ROOT}/{group}/+/+/+"


ACK_FILTER = f"{wire.TOPIC_ROOT}/+/+/ack"


def to_ranges(seqs: set[int]) -> list[list[int]]:
    """``{1,2,3,7}`` -> ``[[1,3],[7,7]]`` (compact on the wire and in the state file)."""
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def from_ranges(ranges: list[list[int]]) -> set[int]:
    out: set[int] = set()
    for lo, hi in ranges:
        if hi - lo > 10_000_000:
            raise ValueError("range too large")
        out.update(range(lo, hi + 1))
    return out


@dataclass
class GatewayProgress:
    watermark: int = 0
    done: set[int] = field(default_factory=set)
    peers: dict[str, set[int]] = field(default_factory=dict)
    last_ack_seen: int = 0
    hole_since: float | None = None
    last_ts: int = 0  # newest device timestamp this collector wrote for the gateway (conflict heuristics)
    pending: dict[int, int] = field(default_factory=dict)  # seq -> times prepared but not yet committed here

    def covered(self, seq: int) -> bool:
        """Already durably handled by this collector or a peer (a replay)."""
        return seq <= self.watermark or seq in self.done or any(seq in p for p in self.peers.values())

    def advance(self) -> bool:
        """Move the watermark over contiguous handled seqs; True if it moved."""
        old = self.watermark
        while True:
            nxt = self.watermark + 1
            if nxt in self.done or any(nxt in p for p in self.peers.values()):
                self.watermark = nxt
            else:
                break
        if self.watermark != old:
            self._prune()
            self.hole_since = None
            return True
        return False

    def adopt(self, watermark: int) -> bool:
        """A peer (or a retained Ack) proved everything up to ``watermark`` is handled."""
        if watermark > self.watermark:
            self.watermark = watermark
            self._prune()
            self.advance()
            return True
        return False

    def _prune(self) -> None:
        w = self.watermark
        self.done = {s for s in self.done if s > w}
        for k in list(self.peers):
            self.peers[k] = {s for s in self.peers[k] if s > w}

    def lowest_above(self) -> int | None:
        """Lowest handled seq above the watermark (there is a hole below it), if any."""
        cands = [min(s) for s in [self.done, *self.peers.values()] if s]
        return min(cands) if cands else None

    def check_gap(self, timeout_s: float, now: float | None = None) -> tuple[int, int] | None:
        """If a hole below handled seqs stayed open for ``timeout_s``, skip it and return ``(first, last)`` missing."""
        now = time.monotonic() if now is None else now
        low = self.lowest_above()
        if low is None:
            self.hole_since = None
            return None
        if self.hole_since is None:
            self.hole_since = now
            return None
        if now - self.hole_since < timeout_s:
            return None
        first, last = self.watermark + 1, low - 1
        self.watermark = last
        self.hole_since = None
        self.advance()
        return first, last


class StateFile:
    """This collector's watermarks and done sets, written atomically and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[tuple[str, str], GatewayProgress]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        out = {}
        for k, v in data.items():
            site, gw = k.split("/", 1)
            if isinstance(v, int):  # state files of the first collector version held only the watermark
                v = {"watermark": v, "done": []}
            out[(site, gw)] = GatewayProgress(watermark=v["watermark"], done=from_ranges(v.get("done", [])), last_ack_seen=0)
        return out

    def save(self, gateways: dict[tuple[str, str], GatewayProgress]) -> None:
        data = {f"{s}/{g}": {"watermark": p.watermark, "done": to_ranges(p.done)} for (s, g), p in gateways.items()}
        # Readable by others: `carbonedge verify` may run as an auditor's account; it holds no secret.
        atomic_write(self.path, json.dumps(data).encode(), mode=0o644)
