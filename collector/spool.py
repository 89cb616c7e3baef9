"""Disk spool for line protocol while InfluxDB is unavailable, drained in order when it returns.

One file per write (a *segment*): ``<number>-<readings>.lp``, written to a temporary name, fsynced,
renamed and the directory fsynced, so a segment is either complete or absent after a crash (the
lessons of Telegraf's WAL: no half-written records, no corrupt-file panic, group commit rather
than one fsync per point). A segment is deleted only after InfluxDB accepted it. Temporary files
left by a crash are removed at start (their messages were never acknowledged, the broker redelivers).

The spool is bounded (``max_bytes``): when full, :meth:`append` refuses and the collector stops
acknowledging, so data waits at the broker and in the gateways' outboxes instead of being dropped.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from carbonedge.files import atomic_write


class SpoolFull(Exception):
    """The spool reached its size limit."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int = 10 * 1024**3) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink()
        segs = self._segments()
        self._next = (int(segs[-1].name.split("-", 1)[0]) + 1) if segs else 1
        self._bytes = sum(s.stat().st_size for s in segs)
        self._count = len(segs)  # kept in memory: empty() is asked on every flush

    def _segments(self) -> list[Path]:
        return sorted(self.dir.glob("*.lp"))

    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        return self._bytes

    def empty(self) -> bool:
        return len(self) == 0

    def readings(self) -> int:
        """Readings waiting in the spool."""
        return sum(int(p.stem.split("-", 1)[1]) for p in self._segments())

    def append(self, body: bytes, readings: int) -> Path:
        """Durably add one segment; raise :class:`SpoolFull` past ``max_bytes``."""
        with self._lock:
            if self._bytes + len(body) > self.max_bytes:
                raise SpoolFull(f"the collector's disk spool in {self.dir} is full ({self._bytes / 1e6:.0f} MB)")
            path = self.dir / f"{self._next:012d}-{readings}.lp"
            self._next += 1
            atomic_write(path, body)
            self._bytes += len(body)
            self._count += 1
            return path

    def oldest(self) -> tuple[Path, bytes, int] | None:
        """The oldest segment as ``(path, body, readings)``, or None."""
        with self._lock:
            if not self._count:
                return None
            p = self._segments()[0]
            return p, p.read_bytes(), int(p.stem.split("-", 1)[1])

    def remove(self, path: Path) -> None:
        """Delete a segment InfluxDB accepted."""
        with self._lock:
            size = path.stat().st_size
            path.unlink()
            _fsync_dir(self.dir)
            self._bytes -= size
            self._count -= 1


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
