"""Run every dashboard query against a real InfluxDB, the way Grafana would send it.

Grafana cannot be installed on our build machines, so dashboards are proven here:
``$timeFilter``, ``$__interval`` and the template variables are substituted as
Grafana's InfluxDB data source does, variables are resolved by running their own
``SHOW TAG VALUES`` queries first, and each panel query must return rows.

The same check works against a plant's InfluxDB after installation
(``carbonedge grafana check``), with the read-only Grafana user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from carbonedge.analytics.grafana.model import Dashboard, measurements_of
from carbonedge.errors import QueryError
from carbonedge.influx import InfluxClient

# Grafana's interval rounding (public/app/core/utils/kbn roundInterval), in ms.
_ROUND = [
    (15, 10), (35, 20), (75, 50), (150, 100), (250, 200), (350, 300), (450, 400), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
    (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000),
    (5400000, 3600000), (9000000, 7200000), (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
    (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
]
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def parse_interval(text: str) -> int:
    """'1m' -> 60000 (ms)."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip())
    if not m:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_interval(ms: int) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNITS[unit] == 0:
            return f"{ms // _UNITS[unit]}{unit}"
    return f"{ms}ms"


def grafana_interval(start_ms: int, end_ms: int, *, max_data_points: int = 1000, min_interval: str | None = None) -> str:
    """``$__interval`` as Grafana computes it: range / max data points, rounded, at least the panel's min interval."""
    raw = max((end_ms - start_ms) / max_data_points, 1)
    rounded = next((r for limit, r in _ROUND if raw < limit), 31_536_000_000)
    if min_interval:
        rounded = max(rounded, parse_interval(min_interval))
    return format_interval(int(rounded))


def regex_escape(value: str) -> str:
    """Escape a variable value the way Grafana does before putting it in ``/^...$/``."""
    return re.sub(r"([\\^$*+?.()|\[\]{}/-])", r"\\\1", value)


def render(query: str, variables: Mapping[str, str | list[str]], start_ms: int, end_ms: int, interval: str) -> str:
    """Substitute ``$timeFilter``, ``$__interval`` and template variables into an InfluxQL query.

    A list value is a multi-value selection, rendered as ``(a|b)``; the string ``.*`` is
    the "All" value of a multi variable. A variable the query uses but ``variables``
    lacks is an error (Grafana would send the literal ``$name`` and InfluxDB would fail).
    """
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name == "timeFilter":
            return f"time >= {start_ms}ms and time <= {end_ms}ms"
        if name in ("__interval", "interval"):
            return interval
        if name == "__interval_ms":
            return str(parse_interval(interval))
        if name not in variables:
            raise KeyError(f"query uses ${name}, which is not a variable of this dashboard")
        v = variables[name]
        if isinstance(v, list):
            return "(" + "|".join(regex_escape(x) for x in v) + ")" if len(v) != 1 else regex_escape(v[0])
        return v if v == ".*" else regex_escape(v) if _in_regex(query, m.start()) else v
    return _VAR.sub(sub, query)


def _in_regex(query: str, pos: int) -> bool:
    """True when the variable at ``pos`` opens a ``/^$var$/`` regex literal (how our dashboards match tags)."""
    return query[max(0, pos - 2):pos] == "/^"


@dataclass
class TargetResult:
    """The outcome of one panel query (or variable/annotation query)."""

    dashboard: str
    panel: str
    ref_id: str
    query: str
    measurements: set[str]
    rows: int = 0
    error: str | None = None
    may_be_empty: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and (self.rows > 0 or self.may_be_empty is not None)


@dataclass
class CheckReport:
    results: list[TargetResult] = field(default_factory=list)
    variables: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def failures(self, skip_measurements: Iterable[str] = ()) -> list[TargetResult]:
        skip = set(skip_measurements)
        return [r for r in self.results if not r.ok and not (r.error is None and r.measurements & skip)]


class InfluxQL(InfluxClient):
    """Runs the dashboards' InfluxQL on the shared InfluxDB client."""

    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None, timeout: float = 30.0) -> None:
        super().__init__(url, database, username=username, password=password, timeout_s=timeout)

    def run(self, query: str) -> list[dict[str, Any]]:
        """Series of the first statement's result; raises :class:`QueryError` on any error."""
        return self.query(query)


def _rows(series: list[dict[str, Any]]) -> int:
    """Rows with at least one non-null value besides time."""
    n = 0
    for s in series:
        for row in s.get("values", []):
            if any(v is not None for v in row[1:]):
                n += 1
    return n


def resolve_variables(dash: Dashboard, db: InfluxQL, start_ms: int, end_ms: int, *, all_for_multi: bool = True) -> tuple[dict[str, str | list[str]], dict[str, list[str]]]:
    """Run each query variable (in order, later ones see earlier ones) and pick a value.

    Single-value variables take their first value (their default for custom ones);
    multi-value variables take "All" (``.*``) when ``all_for_multi``, else every value.
    Returns (selection, all values found per variable).
    """
    chosen: dict[str, str | list[str]] = {}
    found: dict[str, list[str]] = {}
    for v in dash.variables:
        if v.query is None:
            found[v.name] = list(v.options)
            chosen[v.name] = v.default or v.options[0]
            continue
        q = render(v.query, chosen, start_ms, end_ms, "1m")
        values = [row[1] for s in db.run(q) for row in s.get("values", [])]
        found[v.name] = values
        if v.multi:
            chosen[v.name] = ".*" if all_for_multi else values
        else:
            chosen[v.name] = values[0] if values else ""
    return chosen, found


def check_dashboards(dashboards: Iterable[Dashboard], db: InfluxQL, start_ms: int, end_ms: int, *,
                     max_data_points: int = 1000, overrides: Mapping[str, str | list[str]] | None = None) -> CheckReport:
    """Run every panel, variable and annotation query of ``dashboards`` over [start_ms, end_ms]."""
    report = CheckReport()
    for dash in dashboards:
        chosen, found = resolve_variables(dash, db, start_ms, end_ms)
        if overrides:
            chosen.update({k: v for k, v in overrides.items() if k in chosen})
        report.variables[dash.uid] = found
        for v in dash.variables:
            if v.query is not None:
                report.results.append(TargetResult(dash.uid, f"variable ${v.name}", "-", v.query, measurements_of(v.query),
                                                   rows=len(found[v.name])))
        jobs: list[tuple[str, str, str, str | None, str | None]] = []
        for p in dash.panels():
            for i, q in enumerate(p.queries):
                jobs.append((p.title, chr(ord("A") + i), q.query, p.min_interval, q.may_be_empty))
        for a in dash.annotations:
            jobs.append((f"annotation {a['name']}", "-", a["query"], None,
                         "annotations mark exceptional events (alerts, gaps); a healthy period has none"))
        for title, ref, query, min_int, may_be_empty in jobs:
            interval = grafana_interval(start_ms, end_ms, max_data_points=max_data_points, min_interval=min_int)
            res = TargetResult(dash.uid, title, ref, query, measurements_of(query), may_be_empty=may_be_empty)
            try:
                res.query = render(query, chosen, start_ms, end_ms, interval)
                res.rows = _rows(db.run(res.query))
            except (QueryError, KeyError) as exc:
                res.error = str(exc)
            report.results.append(res)
    return report
