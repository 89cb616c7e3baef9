"""Small builders for Grafana dashboard JSON (schemaVersion 39) with raw InfluxQL targets.

Plain dicts rather than grafana-foundation-sdk: the SDK ships no InfluxDB query type
(environment.md §3(f)), and the JSON Grafana provisions is what we validate and test,
so building it directly keeps one representation from code to file.

Panels are laid out automatically: :class:`Dashboard` packs them left to right in a
24-column grid and starts a new line when a panel does not fit, so no two panels overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DATASOURCE_UID = "carbonedge-influxdb"
DATASOURCE_NAME = "carbonedge InfluxDB"
DATASOURCE = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
GRID_WIDTH = 24

_FROM = re.compile(r'\bFROM\s+"?([A-Za-z_][A-Za-z0-9_]*)"?', re.IGNORECASE)


def measurements_of(query: str) -> set[str]:
    """Measurement names an InfluxQL query reads (every ``FROM "name"``, subqueries included)."""
    return {m for m in _FROM.findall(query)}


@dataclass(frozen=True)
class Query:
    """One raw InfluxQL target of a panel.

    ``alias`` uses Grafana's InfluxDB alias patterns (``$tag_process``, ``$col``).
    ``may_be_empty`` is set only for queries that legitimately return nothing on a
    healthy plant (for example gap events); it says why, and the query is still run.
    """

    query: str
    alias: str | None = None
    result_format: str = "time_series"
    may_be_empty: str | None = None

    def target(self, ref_id: str) -> dict[str, Any]:
        t: dict[str, Any] = {
            "refId": ref_id,
            "datasource": dict(DATASOURCE),
            "rawQuery": True,
            "resultFormat": self.result_format,
            "query": self.query,
        }
        if self.alias:
            t["alias"] = self.alias
        return t


@dataclass
class Panel:
    """A panel; ``kind`` is the Grafana panel type (timeseries, stat, table, barchart, …)."""

    kind: str
    title: str
    queries: list[Query]
    unit: str | None = None
    width: int = 12
    height: int = 8
    description: str = ""
    min_interval: str | None = None
    stacked: bool = False
    decimals: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    transformations: list[dict[str, Any]] = field(default_factory=list)
    draw_style: str | None = None

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {}
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.kind in ("timeseries", "barchart"):
            custom: dict[str, Any] = {"spanNulls": False}
            if self.stacked:
                custom["stacking"] = {"mode": "normal", "group": "A"}
                custom["fillOpacity"] = 60
            if self.draw_style:
                custom["drawStyle"] = self.draw_style
            defaults["custom"] = custom
        p: dict[str, Any] = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": dict(DATASOURCE),
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": dict(self.options),
            "targets": [q.target(chr(ord("A") + i)) for i, q in enumerate(self.queries)],
        }
        if self.min_interval:
            p["interval"] = self.min_interval
        if self.transformations:
            p["transformations"] = list(self.transformations)
        return p


@dataclass(frozen=True)
class Variable:
    """A dashboard template variable.

    ``query`` (an InfluxQL ``SHOW TAG VALUES``) makes a query variable; ``options``
    a custom one. ``multi`` variables include "All", which matches every value and
    also series without the tag (``.*``), so untagged meters are never hidden.
    """

    name: str
    label: str
    query: str | None = None
    options: tuple[str, ...] = ()
    multi: bool = False
    default: str | None = None

    def to_json(self) -> dict[str, Any]:
        v: dict[str, Any] = {"name": self.name, "label": self.label, "hide": 0, "skipUrlSync": False}
        if self.query is not None:
            v |= {
                "type": "query",
                "datasource": dict(DATASOURCE),
                "query": self.query,
                "definition": self.query,
                "refresh": 2,  # on time range change, so new gateways and processes appear
                "sort": 1,
                "regex": "",
            }
        else:
            opts = [{"text": o, "value": o, "selected": o == (self.default or self.options[0])} for o in self.options]
            v |= {"type": "custom", "query": ",".join(self.options), "options": opts}
        v["multi"] = self.multi
        v["includeAll"] = self.multi
        if self.multi:
            v["allValue"] = ".*"
            v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
        elif self.default is not None:
            v["current"] = {"selected": True, "text": self.default, "value": self.default}
        else:
            v["current"] = {}
        return v


@dataclass
class Dashboard:
    """A dashboard: rows of panels, template variables and InfluxQL annotations."""

    uid: str
    title: str
    description: str
    variables: list[Variable]
    tags: tuple[str, ...] = ("carbonedge",)
    time_from: str = "now-24h"
    refresh: str = "1m"
    rows: list[tuple[str, list[Panel]]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)

    def row(self, title: str, *panels: Panel) -> Dashboard:
        self.rows.append((title, list(panels)))
        return self

    def panels(self) -> list[Panel]:
        return [p for _, ps in self.rows for p in ps]

    def to_json(self) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        next_id = 1
        y = 0
        for title, panels in self.rows:
            out.append({"id": next_id, "type": "row", "title": title, "collapsed": False,
                        "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}, "panels": []})
            next_id += 1
            y += 1
            x, line_h = 0, 0
            for p in panels:
                if x + p.width > GRID_WIDTH:
                    x, y, line_h = 0, y + line_h, 0
                out.append(p.to_json(next_id, x, y))
                next_id += 1
                x += p.width
                line_h = max(line_h, p.height)
            y += line_h
        annotations = [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }, *self.annotations]
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,  # shared crosshair: line up power, production and alerts in time
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "links": list(self.links),
            "annotations": {"list": annotations},
            "templating": {"list": [v.to_json() for v in self.variables]},
            "panels": out,
        }


def influx_annotation(name: str, query: str, *, text: str, tags: str, color: str, title: str | None = None) -> dict[str, Any]:
    """An InfluxQL annotation source: each returned row becomes an annotation on every time panel."""
    a: dict[str, Any] = {
        "name": name,
        "datasource": dict(DATASOURCE),
        "enable": True,
        "hide": False,
        "iconColor": color,
        "query": query,
        "textColumn": text,
        "tagsColumn": tags,
    }
    if title:
        a["titleColumn"] = title
    return a
