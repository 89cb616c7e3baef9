"""Collector self-metrics: one thread-safe counter set, exposed two ways.

* Prometheus text format on ``http://127.0.0.1:<port>/metrics`` (``carbonedge_collector_<name>``,
  rejections as ``carbonedge_collector_rejected_total{reason="…"}``);
* the InfluxDB measurement ``pipeline`` (tag ``collector``), so Grafana shows pipeline health next
  to the data (see ``docs/influx-schema.md``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from carbonedge.collector.lineprotocol import PIPELINE_MEASUREMENT

#: Counter names and what they count (also the Prometheus HELP text).
COUNTERS = {
    "received": "MQTT messages received (telemetry and health)",
    "batches_written": "poll-cycle batches durably handled for the first time",
    "readings_written": "readings written to InfluxDB (including drained from the spool)",
    "readings_spooled": "readings put in the disk spool while InfluxDB was unavailable",
    "duplicate_deliveries": "batches received again after they were already handled (replays, redeliveries)",
    "conflicts": "points with a different value at an existing series+time (dead-lettered, never written)",
    "deadlettered": "messages or parts of messages dead-lettered (all reasons)",
    "write_retries": "InfluxDB writes retried after an outage-type error",
    "influx_refused_lines": "lines InfluxDB refused for good (dead-lettered)",
    "seq_gaps": "gateway sequence holes declared lost after the gap timeout",
    "seq_gap_batches": "batches missing in declared sequence gaps",
    "health_written": "gateway health messages written",
    "replay_checks": "InfluxDB reads made to check replayed batches for conflicts",
}


class Metrics:
    def __init__(self) -> None:
        self._c: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] += n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._c[name]

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            out: dict[str, float] = {k: 0 for k in COUNTERS}
            out.update(self._c)
        for k, g in self.gauges.items():
            try:
                out[k] = float(g())
            except Exception:  # noqa: BLE001 - a gauge must never break metrics export
                continue
        return out

    def rejected(self) -> dict[str, int]:
        with self._lock:
            return {k.split(".", 1)[1]: v for k, v in self._c.items() if k.startswith("rejected.")}

    def prometheus(self, collector_id: str) -> str:
        snap = self.snapshot()
        lines = []
        for k, v in sorted(snap.items()):
            if k.startswith("rejected."):
                continue
            name = f"carbonedge_collector_{k}" + ("_total" if k in COUNTERS else "")
            lines.append(f"# HELP {name} {COUNTERS.get(k, k.replace('_', ' '))}")
            lines.append(f"# TYPE {name} {'counter' if k in COUNTERS else 'gauge'}")
            lines.append(f'{name}{{collector="{collector_id}"}} {v:g}')
        lines.append("# HELP carbonedge_collector_rejected_total messages or parts dead-lettered, by reason")
        lines.append("# TYPE carbonedge_collector_rejected_total counter")
        for reason, v in sorted(self.rejected().items()):
            lines.append(f'carbonedge_collector_rejected_total{{collector="{collector_id}",reason="{reason}"}} {v}')
        return "\n".join(lines) + "\n"

    def pipeline_line(self, collector_id: str, ts_ms: int) -> str:
        snap = self.snapshot()
        fields = []
        for k, v in sorted(snap.items()):
            name = "rejected_" + k.split(".", 1)[1] if k.startswith("rejected.") else k
            fields.append(f"{name}={float(v)!r}")
        return f"{PIPELINE_MEASUREMENT},collector={collector_id} {','.join(fields)} {ts_ms}"


def serve_metrics(metrics: Metrics, collector_id: str, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the ``/metrics`` endpoint in a daemon thread; returns the server (``.server_port``, ``.shutdown()``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = metrics.prometheus(collector_id).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=srv.serve_forever, name="collector-metrics", daemon=True).start()
    return srv
