"""Dashboards: structure, exported files, query rendering, and every panel query against real pipeline data."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from carbonedge.analytics.grafana import InfluxQL, build_dashboards, check_dashboards, dashboards_json, export, grafana_interval, render, validate_all
from carbonedge.analytics.grafana.dashboards import process as process_dashboard
from carbonedge.analytics.grafana.model import measurements_of
from carbonedge.analytics.grafana.validate import validate_dashboard
from carbonedge.clock import parse_time
from carbonedge.app.demo import DATABASE, DEMO_START, run_demo
from carbonedge.app.services import InfluxDB, free_port

REPO = Path(__file__).resolve().parents[1]
DEPLOYED_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/carbonedge"


def contract_measurements() -> set[str]:
    """Measurement names of the table in docs/influx-schema.md (the contract)."""
    text = (REPO / "docs" / "influx-schema.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))


def writers_in_code(measurement: str) -> list[str]:
    """Source files (outside analytics/grafana) that write ``measurement``: a *_MEASUREMENT constant or a line-protocol prefix."""
    pat = re.compile(rf'(MEASUREMENT\w*\s*=\s*"{measurement}"|f?"{measurement},)')
    out = []
    for pkg in ("collector", "analytics", "edge"):
        for f in (REPO / pkg).rglob("*.py"):
            if "grafana" not in f.parts and pat.search(f.read_text(errors="replace")):
                out.append(str(f.relative_to(REPO)))
    return sorted(out)


# --- structure -------------------------------------------------------------------------------------------

def test_dashboards_are_structurally_valid() -> None:
    dashes = dashboards_json()
    assert [d["uid"] for d in dashes] == ["carbonedge-overview", "carbonedge-process", "carbonedge-health", "carbonedge-alerts", "carbonedge-carbon"]
    assert validate_all(dashes) == []
    for d in dashes:
        json.loads(json.dumps(d, allow_nan=False))
        assert {v["name"] for v in d["templating"]["list"]} >= {"site"}
        assert sum(1 for p in d["panels"] if p["type"] != "row") >= 4


def test_overview_and_carbon_filter_by_site_area_and_process() -> None:
    for d in dashboards_json():
        if d["uid"] in ("carbonedge-overview", "carbonedge-carbon"):
            assert [v["name"] for v in d["templating"]["list"]][:3] == ["site", "area", "process"]
            for p in d["panels"]:
                for t in p.get("targets", []):
                    if "emission factor" not in p["title"].lower():
                        assert "$site" in t["query"] and "$process" in t["query"], p["title"]


def test_every_panel_reads_only_contract_measurements() -> None:
    contract = contract_measurements()
    assert {"readings", "events", "gateway_health", "device_health", "pipeline", "enpi", "alerts", "carbon"} <= contract
    for dash in build_dashboards():
        for p in dash.panels():
            for q in p.queries:
                assert measurements_of(q.query) and measurements_of(q.query) <= contract, (dash.uid, p.title)


@pytest.mark.parametrize("breakage, expected", [
    ("overlap", "overlaps"),
    ("undefined_var", "undefined variable $plant"),
    ("no_time_filter", "no $timeFilter"),
    ("duplicate_id", "duplicate id"),
    ("fixed_group_by", "fixed time()"),
    ("foreign_datasource", "does not use the carbonedge data source"),
    ("outside_grid", "outside the 24-column grid"),
])
def test_validation_catches_broken_dashboards(breakage: str, expected: str) -> None:
    d = copy.deepcopy(dashboards_json()[0])
    panels = [p for p in d["panels"] if p["type"] != "row"]
    p0, p1 = panels[0], panels[1]
    t = p0["targets"][0]
    if breakage == "overlap":
        p1["gridPos"] = dict(p0["gridPos"])
    elif breakage == "undefined_var":
        t["query"] = t["query"].replace("$site", "$plant", 1)
    elif breakage == "no_time_filter":
        t["query"] = t["query"].replace("AND $timeFilter", "")
    elif breakage == "duplicate_id":
        p1["id"] = p0["id"]
    elif breakage == "fixed_group_by":
        p = next(p for p in panels if "time($__interval)" in p["targets"][0]["query"])
        p["targets"][0]["query"] = p["targets"][0]["query"].replace("time($__interval)", "time(1m)")
    elif breakage == "foreign_datasource":
        t["datasource"] = {"type": "influxdb", "uid": "someone-else"}
    elif breakage == "outside_grid":
        p0["gridPos"]["x"] = 20
    problems = validate_dashboard(d)
    assert any(expected in p for p in problems), problems


def test_deploy_grafana_matches_the_code(tmp_path: Path) -> None:
    """deploy/grafana is generated: it must be what `carbonedge grafana export` writes today."""
    from carbonedge.app.cli import main

    assert main(["grafana", "export", "--out", str(tmp_path), "--dashboards-path", DEPLOYED_DASHBOARDS_PATH]) == 0
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    shipped = sorted(p.relative_to(REPO / "deploy" / "grafana") for p in (REPO / "deploy" / "grafana").rglob("*") if p.is_file())
    assert fresh == shipped
    for rel in fresh:
        assert (tmp_path / rel).read_text() == (REPO / "deploy" / "grafana" / rel).read_text(), (
            f"deploy/grafana/{rel} is out of date: run carbonedge grafana export --out deploy/grafana --dashboards-path {DEPLOYED_DASHBOARDS_PATH}")


def test_provisioning_files_declare_the_datasource_and_folder(tmp_path: Path) -> None:
    export(tmp_path)
    ds = (tmp_path / "provisioning" / "datasources" / "carbonedge.yaml").read_text()
    assert 'uid: "carbonedge-influxdb"' in ds and 'type: "influxdb"' in ds and 'dbName: "carbonedge"' in ds
    assert 'password: "$CARBONEDGE_GRAFANA_INFLUX_PASSWORD"' in ds  # the secret is never in the file
    prov = (tmp_path / "provisioning" / "dashboards" / "carbonedge.yaml").read_text()
    assert f'path: "{(tmp_path / "dashboards").resolve()}"' in prov


# --- rendering as Grafana does ---------------------------------------------------------------------------

def test_render_substitutes_time_interval_and_variables() -> None:
    q = 'SELECT mean("x") FROM "readings" WHERE "site" =~ /^$site$/ AND "area" =~ /^$area$/ AND "period" = \'$period\' AND $timeFilter GROUP BY time($__interval)'
    out = render(q, {"site": "demo-steel", "area": ".*", "period": "hour"}, 1000, 2000, "1m")
    assert out == ('SELECT mean("x") FROM "readings" WHERE "site" =~ /^demo\\-steel$/ AND "area" =~ /^.*$/ AND "period" = \'hour\' '
                   "AND time >= 1000ms and time <= 2000ms GROUP BY time(1m)")
    assert "/^(eaf|ladle_furnace)$/" in render('"p" =~ /^$process$/', {"process": ["eaf", "ladle_furnace"]}, 0, 1, "1s")
    with pytest.raises(KeyError, match=r"\$site"):
        render('"site" =~ /^$site$/', {}, 0, 1, "1s")


def test_grafana_interval() -> None:
    day = 86_400_000
    assert grafana_interval(0, day, max_data_points=1000) == "1m"  # 86.4 s -> 1m
    assert grafana_interval(0, 3_600_000, max_data_points=1000) == "5s"
    assert grafana_interval(0, 3_600_000, max_data_points=1000, min_interval="1m") == "1m"
    assert grafana_interval(0, 30 * day, max_data_points=1000) == "30m"  # 43.2 min rounds to 30m, as in Grafana


# --- every panel against real pipeline data -----------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Twelve plant hours of the steel demo through the real pipeline (long enough for the demo's EnPI
    baselines, fitted on the first half, and the alert monitor's learning); InfluxDB restarted on its data."""
    out = tmp_path_factory.mktemp("grafana-demo")
    summary = run_demo(plant="steel", hours=12, speed=2880, seed=5, out=out, poll_interval_s=60)
    db = InfluxDB("influxd", free_port(), out / "run" / "services").start()
    start = int(parse_time(DEMO_START) * 1000)
    yield db, summary, start, start + 12 * 3_600_000 + 120_000
    db.stop()


def _measurements_with_data(db: InfluxDB) -> set[str]:
    res = db.query("SHOW MEASUREMENTS", db=DATABASE)["results"][0]
    return {row[0] for s in res.get("series", []) for row in s["values"]}


@pytest.mark.slow
def test_every_panel_query_returns_rows_on_demo_data(demo_db) -> None:  # type: ignore[no-untyped-def]
    db, summary, start, end = demo_db
    present = _measurements_with_data(db)
    assert "readings" in present and summary["readings_in_influxdb"] > 5000
    ql = InfluxQL(db.url, DATABASE)
    report = check_dashboards(build_dashboards(), ql, start, end)
    # A coarser range (as a month view would use) must work too: $__interval then exceeds the poll interval.
    coarse = check_dashboards(build_dashboards(), ql, start, end, max_data_points=20)

    errors = [r for r in report.results + coarse.results if r.error]
    assert not errors, "\n".join(f"{r.dashboard} / {r.panel} {r.ref_id}: {r.error}\n  {r.query}" for r in errors)

    unverified: dict[str, str] = {}
    for m in sorted({m for r in report.results for m in r.measurements} - present):
        writers = writers_in_code(m)
        unverified[m] = (f"written by {', '.join(writers)}, but the demo pipeline stores none yet" if writers
                         else "no writer in the code yet")
    process_rows = _rows_for_any_process(ql, start, end)
    dashes = {d.uid: d for d in build_dashboards()}
    failures = []
    for rep in (report, coarse):
        for r in rep.failures(skip_measurements=unverified):
            if r.dashboard == "carbonedge-process" and process_rows.get((r.panel, r.ref_id), 0) > 0:
                continue  # the first process has no such counter, another has: the panel works
            span = _span(db, r.measurements)
            if span and not (start <= span[0] and span[1] <= end):
                # Self-metrics (pipeline, health) are stamped with the wall clock while plant data runs on the
                # demo's virtual clock: check the panel over the time its own data covers.
                again = check_dashboards([dashes[r.dashboard]], ql, span[0], span[1])
                if any(x.rows for x in again.results if (x.panel, x.ref_id) == (r.panel, r.ref_id)):
                    continue
            failures.append(f"{r.dashboard} / {r.panel} {r.ref_id} ({', '.join(sorted(r.measurements))}): no rows\n  {r.query}")
    assert not failures, "\n".join(failures)
    verified = sorted({(r.dashboard, r.panel) for r in report.results if r.rows and not r.panel.startswith("variable")})
    assert len(verified) >= 20
    print(f"\nmeasurements with demo data: {sorted(present)}")
    print(f"{len(verified)} panels verified against demo data; not yet verifiable: "
          + "; ".join(f"{m}: {why}" for m, why in unverified.items()))


def _span(db: InfluxDB, measurements: set[str]) -> tuple[int, int] | None:
    """First and last timestamp (ms) of the given measurements' data."""
    times = []
    for m in measurements:
        for order in ("ASC", "DESC"):
            res = db.query(f'SELECT * FROM "{m}" ORDER BY time {order} LIMIT 1', db=DATABASE)["results"][0]
            times += [s["values"][0][0] for s in res.get("series", [])]
    return (min(times), max(times) + 1) if times else None


def _rows_for_any_process(ql: InfluxQL, start: int, end: int) -> dict[tuple[str, str], int]:
    """Process drill-down queried for every process: rows per (panel, refId), summed over processes."""
    dash = process_dashboard()
    first = check_dashboards([dash], ql, start, end)
    totals: dict[tuple[str, str], int] = {}
    for p in first.variables[dash.uid]["process"]:
        rep = check_dashboards([dash], ql, start, end, overrides={"process": p})
        for r in rep.results:
            totals[(r.panel, r.ref_id)] = totals.get((r.panel, r.ref_id), 0) + r.rows
    return totals


@pytest.mark.slow
def test_overview_figures_agree_with_the_analytics(demo_db) -> None:  # type: ignore[no-untyped-def]
    """The overview's energy and production stats equal what the SEC analytics computed from the same data."""
    db, summary, start, end = demo_db
    ql = InfluxQL(db.url, DATABASE)
    report = check_dashboards([build_dashboards()[0]], ql, start, end)
    by_title = {r.panel: r.query for r in report.results}
    energy = ql.run(by_title["Energy"])[0]["values"][0][1]
    assert energy == pytest.approx(summary["plant_energy_kwh"], rel=0.01)
    produced = {s["tags"]["process"]: s["values"][0][1] for s in ql.run(by_title["Production by process"])}
    expected = {name: p["production"] for name, p in summary["processes"].items() if p["production"]}
    assert set(produced) == set(expected)
    for name, tonnes in expected.items():
        # The panel sums per-interval differences inside the range, so it cannot see the increment that
        # straddles the range's first interval boundary (the analytics count it from the last reading
        # before): allow 1 % plus the largest single step of the process's counter (one coil, one heat).
        step = ql.run(f'SELECT max("d") FROM (SELECT non_negative_difference("production_mass") AS "d" FROM "readings" '
                      f"WHERE \"process\" = '{name}' AND time >= {start}ms AND time < {end}ms GROUP BY \"device\")")
        largest = max((v[1] for sr in step for v in sr["values"] if v[1] is not None), default=0.0)
        assert abs(produced[name] - tonnes) <= 0.01 * tonnes + largest, (name, produced[name], tonnes, largest)
