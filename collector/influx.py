"""InfluxDB v1 HTTP writer (``/write``), accepted by InfluxDB 1.x, 2.x (v1 compatibility) and 3.x."""

from __future__ import annotations

import requests

from carbonedge.errors import WriteError


class InfluxWriter:
    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self.session = requests.Session()
        if username:
            self.session.auth = (username, password or "")

    def write(self, body: bytes) -> None:
        """POST line protocol; raise :class:`WriteError` (``retryable`` for 5xx and connection errors)."""
        try:
            r = self.session.post(
                f"{self.url}/write", params={"db": self.database, "precision": "ms"}, data=body, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            raise WriteError(f"InfluxDB at {self.url} unreachable: {exc}", retryable=True) from exc
        if r.status_code == 204:
            return
        retry = r.status_code >= 500 or r.status_code == 429
        raise WriteError(f"InfluxDB refused the write: HTTP {r.status_code} {r.text[:300]}", status=r.status_code, retryable=retry)

    def ensure_database(self) -> None:
        try:
            r = self.session.post(f"{self.url}/query", params={"q": f'CREATE DATABASE "{self.database}"'}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise WriteError(f"InfluxDB at {self.url} unreachable: {exc}", retryable=True) from exc
        if r.status_code != 200:
            raise WriteError(f"cannot create database {self.database}: HTTP {r.status_code} {r.text[:200]}", status=r.status_code)
