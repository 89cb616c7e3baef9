"""Structural validation of dashboard JSON, since no Grafana server is available to load it.

Checks what Grafana would reject or silently mis-render: missing keys, duplicate panel
ids or refIds, panels outside the 24-column grid or overlapping, targets pointing at a
data source other than ours, template variables used but not defined (or defined after
the variable that uses them), InfluxQL queries without ``$timeFilter`` (they would scan
all history) and time-grouped queries not using ``$__interval``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from carbonedge.analytics.grafana.model import DATASOURCE_UID, GRID_WIDTH, SCHEMA_VERSION

PANEL_TYPES = {"row", "timeseries", "stat", "table", "barchart", "bargauge", "gauge", "text", "state-timeline", "piechart"}
BUILTIN_VARS = {"timeFilter", "__interval", "__interval_ms", "interval", "col", "__all"}
_VAR = re.compile(r"\$\{?(\w+)\}?")
_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def _vars_in(text: str) -> set[str]:
    return {v for v in _VAR.findall(text) if not v.startswith("tag_")}


def validate_dashboard(d: dict[str, Any]) -> list[str]:
    """Every problem found in one dashboard's JSON, as readable sentences (empty list: valid)."""
    problems: list[str] = []
    name = d.get("title", "<untitled>")

    def bad(msg: str) -> None:
        problems.append(f"{name}: {msg}")

    for key in ("uid", "title", "panels", "templating", "annotations", "schemaVersion", "time"):
        if key not in d:
            bad(f"missing top-level key {key!r}")
    if problems:
        return problems
    if not _UID.match(str(d["uid"])):
        bad(f"uid {d['uid']!r} must be 1-40 characters of letters, digits, '-' or '_'")
    if d["schemaVersion"] != SCHEMA_VERSION:
        bad(f"schemaVersion {d['schemaVersion']} (expected {SCHEMA_VERSION})")
    try:
        json.dumps(d, allow_nan=False)
    except (TypeError, ValueError) as exc:
        bad(f"not serialisable as strict JSON: {exc}")

    defined: list[str] = []
    for v in d["templating"].get("list", []):
        vname = v.get("name", "")
        if not re.fullmatch(r"[A-Za-z_]\w*", vname):
            bad(f"variable name {vname!r} is not a valid identifier")
        if vname in defined:
            bad(f"variable ${vname} defined twice")
        used = _vars_in(str(v.get("query", ""))) - BUILTIN_VARS
        for u in used:
            if u not in defined:
                bad(f"variable ${vname} uses ${u}, which is not defined before it")
        if v.get("type") == "query" and v.get("datasource", {}).get("uid") != DATASOURCE_UID:
            bad(f"variable ${vname} does not use the carbonedge data source")
        defined.append(vname)
    known = set(defined) | BUILTIN_VARS

    ids: set[int] = set()
    cells: dict[tuple[int, int], str] = {}
    for p in d["panels"]:
        title = p.get("title", "<untitled panel>")
        pid = p.get("id")
        if not isinstance(pid, int) or pid in ids:
            bad(f"panel {title!r} has a missing or duplicate id {pid!r}")
        ids.add(pid if isinstance(pid, int) else -1)
        if p.get("type") not in PANEL_TYPES:
            bad(f"panel {title!r} has unknown type {p.get('type')!r}")
        g = p.get("gridPos", {})
        try:
            x, y, w, h = int(g["x"]), int(g["y"]), int(g["w"]), int(g["h"])
        except (KeyError, TypeError, ValueError):
            bad(f"panel {title!r} has no valid gridPos")
            continue
        if x < 0 or w < 1 or h < 1 or y < 0 or x + w > GRID_WIDTH:
            bad(f"panel {title!r} lies outside the {GRID_WIDTH}-column grid (x={x}, w={w})")
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                if (cx, cy) in cells:
                    bad(f"panel {title!r} overlaps panel {cells[(cx, cy)]!r}")
                    break
                cells[(cx, cy)] = title
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        for u in _vars_in(title) - known:
            bad(f"panel {title!r} title uses undefined ${u}")
        targets = p.get("targets") or []
        if not targets:
            bad(f"panel {title!r} has no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            bad(f"panel {title!r} has missing or duplicate refIds {refs}")
        for t in targets:
            where = f"panel {title!r} query {t.get('refId')}"
            if t.get("datasource", {}).get("uid") != DATASOURCE_UID:
                bad(f"{where} does not use the carbonedge data source")
            if t.get("rawQuery") is not True or not t.get("query"):
                bad(f"{where} is not a raw InfluxQL query")
                continue
            problems.extend(f"{name}: {where} {m}" for m in _check_influxql(t["query"], known))
    for a in d["annotations"].get("list", []):
        if a.get("builtIn"):
            continue
        if a.get("datasource", {}).get("uid") != DATASOURCE_UID or not a.get("query"):
            bad(f"annotation {a.get('name')!r} must be an InfluxQL query on the carbonedge data source")
            continue
        problems.extend(f"{name}: annotation {a.get('name')!r} {m}" for m in _check_influxql(a["query"], known))
    return problems


def _check_influxql(q: str, known: set[str]) -> list[str]:
    out: list[str] = []
    for u in sorted(_vars_in(q) - known):
        out.append(f"uses undefined variable ${u}")
    if not q.lstrip().upper().startswith("SELECT"):
        out.append("is not a SELECT")
    if "$timeFilter" not in q:
        out.append("has no $timeFilter (it would read all history)")
    if re.search(r"GROUP BY time\((?!\$__interval\))", q):
        out.append("groups by a fixed time() instead of $__interval")
    if q.count("(") != q.count(")"):
        out.append("has unbalanced parentheses")
    if q.count('"') % 2:
        out.append("has an unbalanced double quote")
    return out


def validate_all(dashboards: list[dict[str, Any]]) -> list[str]:
    """Validate several dashboards, also checking that uids and titles are unique."""
    problems = [p for d in dashboards for p in validate_dashboard(d)]
    for key in ("uid", "title"):
        seen: set[str] = set()
        for d in dashboards:
            if d.get(key) in seen:
                problems.append(f"two dashboards share the {key} {d.get(key)!r}")
            seen.add(d.get(key))
    return problems
