"""Read InfluxDB for analytics: the kernel's :class:`carbonedge.influx.InfluxClient` plus numpy series."""

from __future__ import annotations

import numpy as np

from carbonedge.influx import InfluxClient


class InfluxReader(InfluxClient):
    """The shared InfluxDB client with a longer default timeout (analytics reads days of readings)."""

    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None, timeout_s: float = 60.0) -> None:
        super().__init__(url, database, username=username, password=password, timeout_s=timeout_s)

    def series_by_tag(self, q: str, tag: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Run a ``GROUP BY <tag>`` query of one field; return ``{tag value: (times_ms, values)}``."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for s in self.query(q):
            vals = [row for row in s["values"] if row[1] is not None]
            t = np.array([row[0] for row in vals], dtype=np.int64)
            v = np.array([row[1] for row in vals], dtype=np.float64)
            out[s.get("tags", {}).get(tag, "")] = (t, v)
        return out
