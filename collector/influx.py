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

import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from carbonedge.errors import WriteError


@dataclass
class Refused:
    """Lines InfluxDB refused for good, with its message."""

    lines: list[bytes]
    status: int
    message: str


class InfluxWriter:
    """Posts line protocol to ``{url}/write?db=…&precision=ms`` on one keep-alive session."""

    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None,
                 retention_policy: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.params = {"db": database, "precision": "ms"}
        if retention_policy:
            self.params["rp"] = retention_policy
        if username:
            self.session.auth = (username, password or "")

    def write(self, body: bytes) -> None:
        """POST line protocol once; raise :class:`WriteError` (``retryable`` for outages, ``status`` for refusals)."""
        try:
            r = self.session.post(f"{self.url}/write", params=self.params, data=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise WriteError(f"InfluxDB at {self.url} is unreachable: {exc.__class__.__name__}", retryable=True) from exc
        if r.status_code == 204 or r.status_code == 200:
            return
        retry = r.status_code >= 500 or r.status_code in (401, 403, 429)
        err = WriteError(f"InfluxDB refused the write: HTTP {r.status_code} {r.text[:300].strip()}", status=r.status_code, retryable=retry)
        ra = r.headers.get("Retry-After")
        err.retry_after = float(ra) if ra and ra.isdigit() else None  # type: ignore[attr-defined]
        raise err

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
            r = self.session.post(f"{self.url}/query", params={"q": f'CREATE DATABASE "{self.database}"'}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise WriteError(f"InfluxDB at {self.url} is unreachable: {exc.__class__.__name__}", retryable=True) from exc
        if r.status_code == 403:
            # The collector user (deploy/influxdb/setup-auth.sh) may not create databases; the setup
            # script made it. A missing database still shows up at the first write, as a clear error.
            return
        if r.status_code != 200:
            raise WriteError(f"cannot create database {self.database}: HTTP {r.status_code} {r.text[:200]}", status=r.status_code)


class Backoff:
    """Exponential backoff with a cap: 0.2 s, 0.4 s, … up to ``cap_s``."""

    def __init__(self, first_s: float = 0.2, cap_s: float = 10.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.delay = first_s
        self.next_at = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self.next_at

    def failed(self, hint_s: float | None = None) -> float:
        d = min(self.cap_s, max(self.delay, hint_s or 0.0))
        self.next_at = time.monotonic() + d
        self.delay = min(self.cap_s, self.delay * 2)
        return d

    def reset(self) -> None:
        self.delay = self.first_s
        self.next_at = 0.0
