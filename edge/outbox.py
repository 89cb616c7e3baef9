"""Durable outbox on the gateway's disk: one SQLite (WAL) row per committed poll cycle.

The sequence number is allocated in the same transaction that stores the batch, so
committed sequence numbers are contiguous across crashes and reboots. A batch is
deleted only when the collector's end-to-end watermark covers it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    payload BLOB NOT NULL
);
"""


class Outbox:
    """Thread-safe: one connection per thread, WAL so the poller and the sender never block each other long."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as c:
            c.executescript(_SCHEMA)
            c.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', '1')")
            c.execute("INSERT OR IGNORE INTO meta VALUES ('watermark', '0')")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives a power cut, not only a process crash (SQLite WAL+NORMAL may roll back).
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def _meta(self, key: str) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(row[0])

    def append(self, build: Callable[[int], tuple[bytes, int, int]]) -> int:
        """Allocate the next seq, store ``build(seq) -> (payload, created_ms, readings)``; return the seq."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            seq = self._meta("next_seq")
            payload, created_ms, readings = build(seq)
            c.execute("INSERT INTO batches VALUES (?,?,?,?)", (seq, created_ms, readings, payload))
            c.execute("UPDATE meta SET value=? WHERE key='next_seq'", (str(seq + 1),))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return seq

    def pending(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self._conn().execute(
            "SELECT seq, payload FROM batches WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [(int(s), bytes(p)) for s, p in rows]

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
            if watermark <= self._meta("watermark"):
                c.execute("COMMIT")
                return 0
            c.execute("UPDATE meta SET value=? WHERE key='watermark'", (str(watermark),))
            n = c.execute("DELETE FROM batches WHERE seq <= ?", (watermark,)).rowcount
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return int(n)

    def depth(self) -> tuple[int, int]:
        """(batches, readings) waiting for the collector's acknowledgement."""
        n, r = self._conn().execute("SELECT count(*), coalesce(sum(readings), 0) FROM batches").fetchone()
        return int(n), int(r)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
