"""Read-only InfluxQL access over InfluxDB's v1 ``/query`` API (1.x, 2.x compatibility, 3.x)."""

from __future__ import annotations

from typing import Any

import numpy as np
import requests

from carbonedge.errors import QueryError


class InfluxReader:
    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self.session = requests.Session()
        if username:
            self.session.auth = (username, password or "")

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; return its series (``name``, ``tags``, ``columns``, ``values``)."""
        try:
            r = self.session.get(f"{self.url}/query", params={"db": self.database, "q": q, "epoch": "ms"}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise QueryError(f"InfluxDB at {self.url} unreachable: {http_reason(exc)}") from exc
        if r.status_code != 200:
            raise QueryError(f"InfluxDB query failed (HTTP {r.status_code}): {r.text[:300]}\nquery: {q[:200]}")
        body = r.json()
        results = body.get("results", [])
        if not results:
            return []
        if "error" in results[0]:
            raise QueryError(f"InfluxDB query error: {results[0]['error']}\nquery: {q[:200]}")
        return list(results[0].get("series", []))

    def series_by_tag(self, q: str, tag: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Run a ``GROUP BY <tag>`` query of one field; return ``{tag value: (times_ms, values)}``."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for s in self.query(q):
            vals = [row for row in s["values"] if row[1] is not None]
            t = np.array([row[0] for row in vals], dtype=np.int64)
            v = np.array([row[1] for row in vals], dtype=np.float64)
            out[s.get("tags", {}).get(tag, "")] = (t, v)
        return out


def http_reason(exc: BaseException) -> str:
    """The cause of a failed HTTP request in a few words, without the URL (requests puts the whole URL-encoded
    query into its messages)."""
    import re

    text = str(exc)
    for pattern, reason in ((r"Connection refused", "connection refused (is InfluxDB running, is the URL right?)"),
                            (r"Name or service not known|nodename nor servname|getaddrinfo failed", "cannot resolve the host name"),
                            (r"timed out|Timeout", "no answer (timed out)"), (r"CERTIFICATE_VERIFY_FAILED", "TLS certificate rejected"),
                            (r"Connection reset|RemoteDisconnected|Connection aborted", "the connection was closed")):
        if re.search(pattern, text):
            return reason
    return type(exc).__name__


def quote_literal(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def time_range(start_ms: int, end_ms: int) -> str:
    return f"time >= {start_ms}ms AND time <= {end_ms}ms"


def write_lines(url: str, database: str, lines: list[str], *, what: str, timeout_s: float = 60.0, batch: int = 5000,
                auth: tuple[str, str] | None = None) -> int:
    """POST line protocol (ms precision) to InfluxDB's v1 ``/write``; returns the number of points written.

    ``what`` names the data in errors ("alerts", "EnPI figures"). Rewriting a point with the same
    measurement, tags and timestamp overwrites it, so a repeated write is harmless.
    """
    from carbonedge.errors import WriteError

    s = requests.Session()
    s.auth = auth
    for i in range(0, len(lines), batch):
        body = "\n".join(lines[i: i + batch])
        try:
            r = s.post(f"{url.rstrip('/')}/write", params={"db": database, "precision": "ms"}, data=body.encode(), timeout=timeout_s)
        except requests.RequestException as exc:
            raise WriteError(f"InfluxDB at {url} unreachable while writing {what}: {http_reason(exc)}", retryable=True) from exc
        if r.status_code != 204:
            raise WriteError(f"InfluxDB refused the {what} (HTTP {r.status_code}): {r.text[:300]}", status=r.status_code,
                             retryable=r.status_code >= 500)
    return len(lines)
