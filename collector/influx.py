"""InfluxDB v1 HTTP writer (``/write``, line protocol), accepted by InfluxDB 1.x, 2.x (v1 compatibility) and 3.x.

Status handling (after Telegraf's influxdb_v2 output, but nothing is ever dropped silently):

* 204: written.
* connection error, timeout, 5xx, 429 (honouring ``Retry-After``), 401/403 (a credential problem
  an operator can fix): *retryable*; the caller retries with backoff and then spools.
* 400/422 (bad line, field type conflict, partial write) and 413 (too large): the body is split in
  halves until the refused lines are isolated; those go to the dead-letter with InfluxDB's reason
  and everything else is written. A partial write is therefore never mistaken for a full one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from carbonedge.errors import QueryError, WriteError
from carbonedge.influx import Backoff, InfluxClient

__all__ = ["Backoff", "InfluxWriter", "Refused"]


@dataclass
class Refused:
    """Lines InfluxDB refused for good, with its message."""

    lines: list[bytes]
    status: int
    message: str


class InfluxWriter(InfluxClient):
    """The shared InfluxDB client, one attempt per write: the collector retries with backoff and spools itself."""

    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None,
                 retention_policy: str | None = None, timeout_s: float = 30.0) -> None:
        super().__init__(url, database, username=username, password=password, retention_policy=retention_policy,
                         timeout_s=timeout_s, attempts=1)

    def write(self, body: bytes | str, *, what: str = "points") -> None:  # type: ignore[override]
        """POST line protocol once; raise :class:`WriteError` (``retryable`` for outages, ``status`` for refusals)."""
        self.write_once(body if isinstance(body, bytes) else body.encode())

    def write_isolating(self, body: bytes, write: Callable[[bytes], None] | None = None) -> list[Refused]:
        """Write ``body``; on a 4xx refusal split it until the refused lines are found.

        Returns the refused lines (empty when all was written). Retryable errors propagate.
        """
        write = write or self.write
        try:
            write(body)
            return []
        except WriteError as exc:
            if exc.retryable:
                raise
            lines = body.split(b"\n")
            if len(lines) == 1:
                return [Refused(lines, exc.status or 0, str(exc))]
            mid = len(lines) // 2
            # InfluxDB 1.x writes the good points of a partial write; re-sending them is an identical overwrite.
            return self.write_isolating(b"\n".join(lines[:mid]), write) + self.write_isolating(b"\n".join(lines[mid:]), write)

    def ensure_database(self) -> None:
        try:
            self.create_database()
        except QueryError as exc:
            if getattr(exc, "status", None) == 403:
                # The collector user (deploy/influxdb/setup-auth.sh) may not create databases; the setup
                # script made it. A missing database still shows up at the first write, as a clear error.
                return
            raise WriteError(f"cannot create database {self.database}: {exc}", retryable=exc.retryable) from None
