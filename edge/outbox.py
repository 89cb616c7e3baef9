"""Durable outbox on the gateway's disk: one SQLite (WAL) row per committed poll cycle.

(A cycle too large for one MQTT message is stored as several rows with consecutive seqs, in the
same transaction: see ``mqtt.max_message_kb`` in docs/edge.md.)

Guarantees, each one tested:

- **Group commit, atomic state.** One transaction per poll cycle stores the batch,
  allocates its sequence number and saves the counter state (offsets for rollovers
  and resets) together, with one fsync (``synchronous=FULL``). After a crash the
  outbox holds exactly the committed cycles, numbered without holes, and counter
  totals continue where the last committed batch left them.
- **Boot id and gap evidence.** Each start records a new boot id and marks the
  outbox "running"; a clean stop marks it "stopped". :meth:`open_boot` reports the
  previous boot, its last committed cycle and whether it ended cleanly, which the
  agent turns into a ``gap`` event in the first batch of the new boot.
- **Bounded, with a counted overflow policy.** ``max_bytes`` bounds the unconfirmed
  payloads. ``drop_oldest`` replaces the oldest unconfirmed batches by small
  tombstone batches that keep their sequence number and carry an ``overflow`` event
  (the collector's watermark can advance; the loss is on record); ``drop_newest``
  refuses new cycles until there is room (the agent reports them as an ``overflow``
  event in the next batch it can store). Nothing is dropped without a counter.
- A batch is deleted only when the collector's end-to-end watermark covers it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from carbonedge import wire

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    payload BLOB NOT NULL,
    boot_id TEXT NOT NULL DEFAULT '',
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (
    device TEXT NOT NULL, quantity TEXT NOT NULL, raw REAL NOT NULL, offset REAL NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (device, quantity)
);
"""
_META_DEFAULTS = {"next_seq": "1", "watermark": "0", "bytes": "0", "boot_id": "", "state": "new",
                  "last_created": "0", "dropped_batches": "0", "dropped_readings": "0"}

Part = tuple[bytes, int, int]  # payload, created_ms, readings
#: ``build(seq)`` returns one part, or a list of parts stored as ``seq``, ``seq + 1``, ... in the same
#: transaction (a poll cycle split to fit the broker's maximum message size).
BuildFn = Callable[[int], Part | list[Part]]


class OutboxWriteError(Exception):
    """The gateway's disk refused the cycle (full, over its size limit, or an I/O error): nothing was stored."""


def _refused_by_disk(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO):
        return True
    # SQLite reports ENOSPC as SQLITE_FULL and EFBIG (a file size limit) as SQLITE_IOERR.
    return isinstance(exc, sqlite3.OperationalError) and any(m in str(exc) for m in ("disk is full", "disk I/O error"))


@dataclass(frozen=True)
class PreviousBoot:
    """What the outbox knew when this process started."""

    boot_id: str  # "" on a new outbox
    state: str  # "new", "running" (it did not stop cleanly: crash, power cut, kill) or "stopped"
    last_seq: int
    last_created_ms: int  # 0 if nothing was ever committed


class Outbox:
    """Thread-safe: one connection per thread, WAL so the poller and the sender never block each other long."""

    def __init__(self, path: Path, *, max_bytes: int = 2 << 30, overflow: str = "drop_oldest", sync: str = "full",
                 site: str = "site", gateway: str = "gateway") -> None:
        if overflow not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"unknown overflow policy {overflow!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.overflow = overflow
        self.sync = sync
        self.site, self.gateway = site, gateway
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        c = self._conn()
        c.executescript(_SCHEMA)
        for k, v in _META_DEFAULTS.items():
            c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (k, v))
        # The readings are evidence; nobody but the agent's user needs to read them.
        for p in (self.path, self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm")):
            if p.exists():
                os.chmod(p, 0o600)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives a power cut, not only a process crash (SQLite WAL+NORMAL may roll back) [SQ1].
            conn.execute(f"PRAGMA synchronous={'FULL' if self.sync == 'full' else 'NORMAL'}")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _meta(self, key: str, c: sqlite3.Connection | None = None) -> int:
        row = (c or self._conn()).execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(row[0])

    def _set(self, c: sqlite3.Connection, key: str, value: object) -> None:
        c.execute("UPDATE meta SET value=? WHERE key=?", (str(value), key))

    # ------------------------------------------------------------------ boots
    def open_boot(self, boot_id: str) -> PreviousBoot:
        """Record a new boot; return what the previous one left behind."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            rows = dict(c.execute("SELECT key, value FROM meta WHERE key IN ('boot_id','state','last_created')").fetchall())
            prev = PreviousBoot(rows["boot_id"], rows["state"], self._meta("next_seq", c) - 1, int(rows["last_created"]))
            self._set(c, "boot_id", boot_id)
            self._set(c, "state", "running")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return prev

    def reopen_boot(self, prev: PreviousBoot) -> None:
        """This boot stored nothing: hand the outbox back to the previous boot's record, so the next start
        reports that boot's end (a crash stays a crash) and the whole gap since its last cycle."""
        c = self._conn()
        c.executemany("UPDATE meta SET value=? WHERE key=?", [(prev.boot_id, "boot_id"), (prev.state, "state")])

    def mark_stopped(self) -> None:
        """A clean stop: the next boot reports its downtime as a planned stop, not a crash."""
        c = self._conn()
        c.execute("UPDATE meta SET value='stopped' WHERE key='state'")

    # ------------------------------------------------------------------ write
    def append(self, build: BuildFn, counter_rows: Iterable[tuple[str, str, float, float, int]] = (), *, size_hint: int = 0) -> int | None:
        """Allocate the next seq and store ``build(seq) -> (payload, created_ms, readings)`` with the counter state.

        ``build`` may return a list of parts: they get consecutive seqs and are committed together
        (all or none). Returns the last seq stored, or ``None`` when the outbox is full and the
        policy is ``drop_newest`` (nothing was stored; the caller reports the cycle in an
        ``overflow`` event).
        """
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            seq = self._meta("next_seq", c)
            built = build(seq)
            parts = built if isinstance(built, list) else [built]
            if not parts:
                raise ValueError("build() returned no batch to store")
            size = sum(len(p[0]) for p in parts)
            used = self._meta("bytes", c)
            if used + size > self.max_bytes:
                if self.overflow == "drop_newest":
                    c.execute("COMMIT")
                    return None
                used = self._drop_oldest(c, used + size - self.max_bytes, used)
            boot_id = self._boot_id(c)
            c.executemany("INSERT INTO batches (seq, created_ms, readings, payload, boot_id) VALUES (?,?,?,?,?)",
                          [(seq + i, created_ms, readings, payload, boot_id) for i, (payload, created_ms, readings) in enumerate(parts)])
            c.executemany("INSERT OR REPLACE INTO counters VALUES (?,?,?,?,?)", list(counter_rows))
            last = seq + len(parts) - 1
            self._set(c, "next_seq", last + 1)
            self._set(c, "bytes", used + size)
            self._set(c, "last_created", parts[-1][1])
            c.execute("COMMIT")
        except BaseException as exc:
            if c.in_transaction:  # SQLite has already rolled back after a full disk or an I/O error
                c.execute("ROLLBACK")
            if _refused_by_disk(exc):
                raise OutboxWriteError(f"{self.path.parent}: {exc}") from exc
            raise
        return last

    def _boot_id(self, c: sqlite3.Connection) -> str:
        return str(c.execute("SELECT value FROM meta WHERE key='boot_id'").fetchone()[0])

    def _drop_oldest(self, c: sqlite3.Connection, need: int, used: int) -> int:
        """Replace the oldest unconfirmed batches by tombstones until ``need`` bytes are free."""
        freed = dropped = lost_readings = 0
        while freed < need:
            rows = c.execute("SELECT seq, created_ms, readings, length(payload), boot_id FROM batches WHERE dropped=0 "
                             "ORDER BY seq LIMIT 64").fetchall()
            if not rows:
                break  # only tombstones left: they are small, and dropping them would hide the loss
            for seq, created_ms, readings, length, boot_id in rows:
                if freed >= need:
                    break
                tomb = self.tombstone(seq, created_ms, readings, length, boot_id)
                c.execute("UPDATE batches SET payload=?, readings=0, dropped=1 WHERE seq=?", (tomb, seq))
                freed += length - len(tomb)
                dropped += 1
                lost_readings += readings
        self._set(c, "dropped_batches", self._meta("dropped_batches", c) + dropped)
        self._set(c, "dropped_readings", self._meta("dropped_readings", c) + lost_readings)
        return used - freed

    def tombstone(self, seq: int, created_ms: int, readings: int, length: int, boot_id: str) -> bytes:
        ev = wire.Event(kind="overflow", ts=created_ms, detail={
            "policy": "drop_oldest", "discarded_readings": readings, "discarded_bytes": length, "seq": seq,
            "reason": f"gateway outbox full ({self.max_bytes / 1e6:.0f} MB of unconfirmed data); oldest poll cycle discarded"})
        return wire.Batch(site=self.site, gateway=self.gateway, boot_id=boot_id or "0" * 8, seq=seq, created=created_ms, events=[ev]).to_json()

    # ------------------------------------------------------------------ read / prune
    def pending(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self._conn().execute(
            "SELECT seq, payload FROM batches WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

    def get(self, seq: int) -> bytes | None:
        row = self._conn().execute("SELECT payload FROM batches WHERE seq=?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    @property
    def watermark(self) -> int:
        return self._meta("watermark")

    @property
    def last_seq(self) -> int:
        return self._meta("next_seq") - 1

    def acknowledge(self, watermark: int) -> int:
        """Record the collector's watermark and delete what it covers; returns rows deleted."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            if watermark <= self._meta("watermark", c):
                c.execute("COMMIT")
                return 0
            freed = c.execute("SELECT coalesce(sum(length(payload)), 0) FROM batches WHERE seq <= ?", (watermark,)).fetchone()[0]
            self._set(c, "watermark", watermark)
            n = c.execute("DELETE FROM batches WHERE seq <= ?", (watermark,)).rowcount
            self._set(c, "bytes", max(0, self._meta("bytes", c) - int(freed)))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return int(n)

    def counter_rows(self) -> list[tuple[str, str, float, float, int]]:
        return [tuple(r) for r in self._conn().execute("SELECT device, quantity, raw, offset, ts FROM counters").fetchall()]  # type: ignore[misc]

    def depth(self) -> tuple[int, int]:
        """(batches, readings) waiting for the collector's acknowledgement."""
        n, r = self._conn().execute("SELECT count(*), coalesce(sum(readings), 0) FROM batches").fetchone()
        return int(n), int(r)

    def stats(self) -> dict[str, int]:
        """Depth, size, age of the oldest unconfirmed batch and the overflow counters."""
        c = self._conn()
        n, r, oldest = c.execute("SELECT count(*), coalesce(sum(readings), 0), min(created_ms) FROM batches").fetchone()
        meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
        return {"batches": int(n), "readings": int(r), "bytes": int(meta["bytes"]), "oldest_created_ms": int(oldest or 0),
                "dropped_batches": int(meta["dropped_batches"]), "dropped_readings": int(meta["dropped_readings"]),
                "last_seq": int(meta["next_seq"]) - 1, "watermark": int(meta["watermark"])}

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()
