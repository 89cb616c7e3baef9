"""The live monitor job and EnPI write-back on real InfluxDB and Mosquitto, with simulator data.

Scenarios are generated offline (``simulators.generate``) and written to InfluxDB the way the
collector writes them (measurement ``readings``, one point per device and cycle, ``seq`` = the
gateway's cycle number); the Modbus path adds nothing to what is tested here. Each scenario
learns for 24 h (a Monday with two shifts) and then carries its faults, packed into a few hours.

Every fault kind of the simulators is here except ``formation_channel_fault``: it adds about 0.2 %
to the formation hall's energy (a few kWh over hours, below the accuracy of the hall's meter),
which no check on that meter can tell from noise; docs/analytics.md and docs/benchmarks.md say so.
With one meter per formation rack the rack peer comparison finds it (tests/test_twin_rack_peers.py,
and on the simulator's rack-metered week in tests/test_carbon_hints.py).
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests

from carbonedge.analytics.enpi import compute_enpi, write_enpi
from carbonedge.analytics.influx import InfluxReader
from carbonedge.analytics.live import MonitorJob, MonitorStateError, Sinks, mqtt_client
from carbonedge.influx import lp_tag
from carbonedge.mqtt import BrokerSettings
from carbonedge.analytics.monitor import read_device_csvs
from carbonedge.clock import parse_time
from carbonedge.errors import ConfigError
from carbonedge.simulators import Scenario, generate
from test_grafana_client import TOKEN as GRAFANA_TOKEN
from test_grafana_client import grafana  # noqa: F401  (fixture: loopback stand-in for Grafana's HTTP API)

T0 = "2026-01-05T00:00:00Z"  # a Monday
T0_MS = int(parse_time(T0) * 1000)
H = 3_600_000
GRACE_MS = 30 * 60_000
DEVICE_KINDS = {"stuck_meter", "counter_reset", "counter_rollover", "comm_loss"}
CLOCK_KINDS = {"clock_offset", "clock_step"}

STEEL_FAULTS = [
    {"id": "idle", "kind": "idle_running", "process": "hot_strip_mill", "start": "24h30m", "end": "28h"},
    {"id": "leak", "kind": "compressed_air_leak", "process": "compressed_air", "start": "25h", "leak_nm3h": 2500, "ramp_h": 2},
    {"id": "eaf", "kind": "eaf_abnormal_energy", "process": "eaf", "start": "30h", "end": "35h", "extra_fraction": 0.15},
    {"id": "stuck", "kind": "stuck_meter", "device": "caster-meter", "start": "26h", "end": "28h"},
    {"id": "reset", "kind": "counter_reset", "device": "ladle-furnace-meter", "start": "27h"},
    {"id": "roll", "kind": "counter_rollover", "device": "oxygen-plant-meter", "start": "25h30m"},
    {"id": "comm", "kind": "comm_loss", "device": "hot-strip-mill-meter", "start": "31h", "end": "32h"},
    {"id": "clock", "kind": "clock_offset", "start": "33h", "end": "34h", "offset_s": 90},
]
BATTERY_FAULTS = [
    {"id": "dehum", "kind": "dryroom_dehumidifier_degradation", "process": "dry_room", "start": "25h", "extra_fraction": 0.35, "ramp_h": 2},
    {"id": "dryer", "kind": "dryer_heater_degradation", "process": "coating_drying", "start": "30h", "extra_fraction": 0.25, "ramp_h": 2},
    {"id": "idle", "kind": "idle_running", "process": "stacking", "start": "24h30m", "end": "28h"},
    {"id": "roll", "kind": "counter_rollover", "device": "utilities-meter", "start": "27h"},
    {"id": "step", "kind": "clock_step", "start": "32h", "step_s": -300},
]


def _scenario(plant: str, hours: float, faults: list[dict[str, Any]], site: str, seed: int = 3) -> Scenario:
    d = {"scenario": {"plant": plant, "seed": seed, "start": T0, "duration": f"{hours}h", "poll_interval": "60s", "site": site},
         "calendar": {"shifts": ["Mon-Fri 06:00-22:00"]}, "faults": faults}
    return Scenario.from_dict(d, source="test")


def load_readings(directory: Path, plant: dict[str, Any], url: str, db: str, gateway: str = "gw1") -> int:
    """Write an offline run to InfluxDB as the collector does: one point per device and cycle, seq = cycle number."""
    where: dict[str, tuple[str, str]] = {}
    for name, spec in plant["processes"].items():
        for d in list(spec.get("meters", [])) + list(spec.get("counters", [])) + [f["device"] for f in spec.get("flow_meters", [])]:
            where[d] = (spec.get("area") or "plant", name)
    lines = []
    for seq, (t, devs) in enumerate(read_device_csvs(directory)):
        for dev, vals in devs.items():
            area, proc = where.get(dev, ("plant", "plant"))
            fields = ",".join([f"{q}={float(v)!r}" for q, v in vals.items() if math.isfinite(v)] + [f"seq={seq}i"])
            lines.append(f"readings,site={lp_tag(plant['site'])},gateway={gateway},device={lp_tag(dev)},area={lp_tag(area)},process={lp_tag(proc)} {fields} {t}")
    s = requests.Session()
    for i in range(0, len(lines), 20_000):
        r = s.post(f"{url}/write", params={"db": db, "precision": "ms"}, data="\n".join(lines[i: i + 20_000]).encode(), timeout=60)
        assert r.status_code == 204, r.text
    return len(lines)


def _dataset(services: Any, tmp: Path, plant: str, hours: float, faults: list[dict[str, Any]], site: str, seed: int = 3) -> dict[str, Any]:
    out = tmp / site
    run = generate(_scenario(plant, hours, faults, site, seed), out)
    db = f"t_{uuid.uuid4().hex[:10]}"
    services.influx.create_database(db)
    load_readings(out, run.plant, services.influx.url, db)
    return {"plant": run.plant, "labels": run.labels, "db": db, "end_ms": T0_MS + int(hours * H), "dir": out}


@pytest.fixture(scope="module")
def steel(services: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _dataset(services, tmp_path_factory.mktemp("steel"), "steel", 36, STEEL_FAULTS, "mon-steel")


@pytest.fixture(scope="module")
def battery(services: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _dataset(services, tmp_path_factory.mktemp("battery"), "battery", 34, BATTERY_FAULTS, "mon-cells")


@pytest.fixture(scope="module")
def steel_run(services: Any, steel: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The steel fault scenario through the monitor job once, with alerts to InfluxDB and MQTT (a subscriber records them)."""
    site = steel["plant"]["site"]
    got: list[dict[str, Any]] = []
    retained: dict[str, bytes] = {}
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    subscribed = threading.Event()

    def on_message(c: Any, u: Any, m: Any) -> None:
        if m.topic == f"carbonedge/v1/{site}/analytics/alerts":
            got.append(json.loads(m.payload))
        else:
            retained[m.topic] = m.payload

    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", services.mqtt.port)
    sub.subscribe(f"carbonedge/v1/{site}/analytics/alerts/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(10)
    pub = mqtt_client(BrokerSettings(port=services.mqtt.port, client_id=f"test-mon-{uuid.uuid4().hex[:6]}"))
    sinks = Sinks(influx_url=services.influx.url, database=steel["db"], mqtt=pub)
    state = tmp_path_factory.mktemp("state") / "monitor.state"
    job = MonitorJob(InfluxReader(services.influx.url, steel["db"]), steel["plant"], state_path=state, sinks=sinks)
    summary = job.run_once(T0_MS, steel["end_ms"])
    deadline = time.monotonic() + 10
    while len(got) < len(summary.events) and time.monotonic() < deadline:
        time.sleep(0.05)
    pub.disconnect(), pub.loop_stop(), sub.disconnect(), sub.loop_stop()
    return {"summary": summary, "mqtt": got, "retained": retained, "sinks": sinks, "state": state}


def _matches(alert: dict[str, Any], label: dict[str, Any], end_ms: int) -> bool:
    start = int(parse_time(label["start"]) * 1000)
    stop = int(parse_time(label["end"]) * 1000) if label.get("end") else end_ms
    skew = 1000 * max(abs(float(label["params"].get("offset_s", 0))), abs(float(label["params"].get("step_s", 0))))
    if not (start - skew <= alert["opened_ms"] <= stop + GRACE_MS + skew):
        return False
    if label["kind"] in CLOCK_KINDS:
        return alert["kind"] == "clock_jump"
    if label["kind"] in DEVICE_KINDS:
        return alert["device"] == label["device"]
    return alert["process"] == label["process"] and alert["device"] is None


def _check_caught(opened: list[dict[str, Any]], labels: list[dict[str, Any]], end_ms: int) -> None:
    missed = [lab["kind"] for lab in labels if not any(_matches(a, lab, end_ms) for a in opened)]
    assert not missed, f"faults not caught within their label window: {missed}"
    false = [(a["kind"], a["process"], a["device"], a["message"]) for a in opened if not any(_matches(a, lab, end_ms) for lab in labels)]
    assert not false, f"alerts outside every fault: {false}"


def _influx_alerts(services: Any, db: str, site: str) -> list[dict[str, Any]]:
    r = services.influx.query(f"SELECT * FROM \"alerts\" WHERE \"site\" = '{site}'", db=db)
    series = r["results"][0].get("series", [])
    if not series:
        return []
    cols = series[0]["columns"]
    return [dict(zip(cols, row, strict=True)) for row in series[0]["values"]]


# --------------------------------------------------------------------------- faults caught, through InfluxDB


def test_steel_every_fault_kind_is_caught_in_its_window_and_nothing_else(steel: dict[str, Any], steel_run: dict[str, Any]) -> None:
    opened = [e.as_dict() for e in steel_run["summary"].events if e.state == "open"]
    assert {lab["kind"] for lab in steel["labels"]} == {f["kind"] for f in STEEL_FAULTS}
    _check_caught(opened, steel["labels"], steel["end_ms"])


def test_battery_every_fault_kind_is_caught_in_its_window_and_nothing_else(services: Any, battery: dict[str, Any]) -> None:
    job = MonitorJob(InfluxReader(services.influx.url, battery["db"]), battery["plant"])
    s = job.run_once(T0_MS, battery["end_ms"])
    opened = [e.as_dict() for e in s.events if e.state == "open"]
    _check_caught(opened, battery["labels"], battery["end_ms"])


def test_clean_scenario_raises_no_alert(services: Any, tmp_path: Path) -> None:
    d = _dataset(services, tmp_path, "steel", 30, [], "mon-clean", seed=11)
    job = MonitorJob(InfluxReader(services.influx.url, d["db"]), d["plant"], sinks=Sinks(influx_url=services.influx.url, database=d["db"]))
    s = job.run_once(T0_MS, d["end_ms"])
    assert s.cycles == 30 * 60 + 1
    assert s.learning_until_ms == T0_MS + 24 * H  # scored for 6 h after learning
    assert [e.alert.message for e in s.events] == []
    assert _influx_alerts(services, d["db"], "mon-clean") == []


# --------------------------------------------------------------------------- sinks


def test_alerts_land_in_influxdb_as_the_dashboards_query_them(services: Any, steel: dict[str, Any], steel_run: dict[str, Any]) -> None:
    events = steel_run["summary"].events
    rows = _influx_alerts(services, steel["db"], "mon-steel")
    assert len(rows) == len(events) == steel_run["sinks"].counts["influx"]
    assert {r["state"] for r in rows} >= {"open", "update", "resolved"}
    for r in rows:
        assert r["severity"] in ("info", "minor", "major", "critical") and r["alert_id"] and r["message"]
    # The dashboards' "Energy alerts" table: open alerts with message and energy wasted.
    q = ("SELECT \"message\", \"wasted_kwh\", \"kind\", \"severity\", \"process\" FROM \"alerts\" WHERE \"site\" =~ /^mon-steel$/ "
         f"AND \"state\" = 'open' AND time >= {T0_MS}ms")
    series = services.influx.query(q, db=steel["db"])["results"][0]["series"][0]
    opened = [e for e in events if e.state == "open"]
    assert len(series["values"]) == len(opened)
    energy = [v for v in series["values"] if v[3] in ("excess_energy", "idle_running")]
    assert energy and all(v[2] is not None and v[2] >= 0 and "kWh above normal" in v[1] for v in energy)


def test_alerts_on_mqtt_with_retained_state_of_open_alerts(steel_run: dict[str, Any]) -> None:
    events = steel_run["summary"].events
    got = steel_run["mqtt"]
    assert [(m["alert_id"], m["state"], m["ts"]) for m in got] == [(e.alert.alert_id, e.state, e.ts_ms) for e in events]
    open_now = {e.alert.alert_id for e in events if e.state == "open"} - {e.alert.alert_id for e in events if e.state == "resolved"}
    live = {t.rsplit("/", 1)[1] for t, p in steel_run["retained"].items() if p}
    assert live == open_now and open_now  # the leak and the reset-free counters remain open at the end


# --------------------------------------------------------------------------- resumable


def test_restart_resumes_without_relearning_or_repeating_alerts(services: Any, steel: dict[str, Any], steel_run: dict[str, Any],
                                                                tmp_path: Path) -> None:
    reader = InfluxReader(services.influx.url, steel["db"])
    state = tmp_path / "monitor.state"
    cut = T0_MS + 29 * H + 17 * 60_000  # inside the stuck-meter and idle-running faults
    first = MonitorJob(reader, steel["plant"], state_path=state).run_once(T0_MS, cut)
    again = MonitorJob(reader, steel["plant"], state_path=state)  # a new process: everything from the state file
    assert again.watermark_ms == cut
    second = again.run_once(None, steel["end_ms"])
    assert second.learning_until_ms is not None and second.cycles > 0
    whole = steel_run["summary"].events
    split = first.events + second.events
    assert [(e.alert.alert_id, e.state, e.ts_ms) for e in split] == [(e.alert.alert_id, e.state, e.ts_ms) for e in whole]
    # Nothing new: a third run reads nothing and raises nothing.
    third = MonitorJob(reader, steel["plant"], state_path=state).run_once(None, steel["end_ms"])
    assert third.cycles == 0 and third.events == []


def test_state_file_of_another_site_or_plant_is_refused(services: Any, steel: dict[str, Any], steel_run: dict[str, Any]) -> None:
    reader = InfluxReader(services.influx.url, steel["db"])
    with pytest.raises(MonitorStateError, match="belongs to site 'mon-steel'"):
        MonitorJob(reader, steel["plant"], site="other", state_path=steel_run["state"])
    changed = json.loads(json.dumps(steel["plant"]))
    changed["processes"]["eaf"]["meters"].append("eaf-meter-2")
    with pytest.raises(MonitorStateError, match="plant model changed"):
        MonitorJob(reader, changed, state_path=steel_run["state"])
    with pytest.raises(ConfigError, match="give --start"):
        MonitorJob(reader, steel["plant"]).run_once(None, steel["end_ms"])


# --------------------------------------------------------------------------- EnPI


def test_enpi_baselines_meet_ashrae14_hourly_on_normal_operation_and_show_the_eaf_fault(services: Any, steel: dict[str, Any]) -> None:
    reader = InfluxReader(services.influx.url, steel["db"])
    res = compute_enpi(reader, steel["plant"], T0_MS, steel["end_ms"], baseline_until_ms=T0_MS + 24 * H)
    assert set(res.processes) == set(steel["plant"]["processes"])
    for name, p in res.processes.items():
        f = p.fit_baseline_period
        assert f is not None and f.n >= 22, name
        assert f.cv_rmse <= 0.30 and abs(f.nmbe) <= 0.10, (name, f)
    # The EAF draws 15 % more per heat from hour 30 to 35: its savings go negative there, not before.
    eaf = res.processes["eaf"]
    sav = eaf.baseline_kwh - eaf.energy_kwh
    fault = (eaf.hours >= T0_MS + 30 * H) & (eaf.hours < T0_MS + 35 * H)
    clean = (eaf.hours >= T0_MS + 24 * H) & (eaf.hours < T0_MS + 30 * H)
    assert sav[fault].sum() < -0.08 * eaf.energy_kwh[fault].sum()
    assert abs(sav[clean].sum()) < 0.05 * max(eaf.energy_kwh[clean].sum(), 1.0) + 1000.0
    # The mill idling off shift (hours 24:30-28) is a loss, not excused as "running hours": about 3.4 MW above standby.
    mill = res.processes["hot_strip_mill"]
    idle = (mill.hours >= T0_MS + 25 * H) & (mill.hours < T0_MS + 28 * H)
    assert (mill.baseline_kwh[idle] - mill.energy_kwh[idle]).sum() < -0.7 * 3 * 3400
    n = write_enpi(res, services.influx.url, steel["db"])
    assert n == len(res.processes) * (36 + 2)  # 36 whole hours and 2 local days per process
    # The process dashboard's queries.
    q = ("SELECT sum(\"energy_kwh\"), sum(\"baseline_kwh\"), last(\"cusum_kwh\"), sum(\"savings_kwh\"), mean(\"sec\") FROM \"enpi\" "
         "WHERE \"site\" = 'mon-steel' AND \"process\" = 'eaf' AND \"period\" = 'hour'")
    row = services.influx.query(q, db=steel["db"])["results"][0]["series"][0]["values"][0]
    assert row[1] == pytest.approx(float(eaf.energy_kwh.sum()), rel=1e-9)
    assert row[3] == pytest.approx(row[2] - row[1], rel=1e-6) and row[4] == pytest.approx(row[3], rel=1e-6)
    day = services.influx.query("SELECT sum(\"energy_kwh\") FROM \"enpi\" WHERE \"process\" = 'eaf' AND \"period\" = 'day'", db=steel["db"])
    assert day["results"][0]["series"][0]["values"][0][1] == pytest.approx(row[1], rel=1e-9)
    # Rewriting overwrites: the same point count.
    write_enpi(res, services.influx.url, steel["db"])
    cnt = services.influx.query("SELECT count(\"energy_kwh\") FROM \"enpi\"", db=steel["db"])["results"][0]["series"][0]["values"][0][1]
    assert cnt == n


def test_enpi_errors_read_well(services: Any, steel: dict[str, Any]) -> None:
    reader = InfluxReader(services.influx.url, steel["db"])
    with pytest.raises(ConfigError, match="baseline period must end inside"):
        compute_enpi(reader, steel["plant"], T0_MS, steel["end_ms"], baseline_until_ms=T0_MS + 48 * H)
    with pytest.raises(ConfigError, match="no active_energy_import readings for site 'nowhere'"):
        compute_enpi(reader, steel["plant"], T0_MS, steel["end_ms"], baseline_until_ms=T0_MS + 24 * H, site="nowhere")


# --------------------------------------------------------------------------- command line and follow mode


def test_cli_batch_then_follow_mode_continues_from_the_state_file(services: Any, steel: dict[str, Any], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from carbonedge.app.cli import main

    state = tmp_path / "monitor.state"
    rc = main(["analyze", "monitor", "--plant", str(steel["dir"] / "plant.json"), "--influx-url", services.influx.url, "--database", steel["db"],
               "--once", "--start", T0, "--end", "2026-01-06T02:10:00Z", "--state", str(state), "--no-influx-alerts"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "open     critical idle_running     hot_strip_mill: hot_strip_mill" in out and "kWh above normal so far" in out
    assert "1,571 poll cycles" in out  # 2026-01-05 00:00 … 2026-01-06 02:10, one a minute
    summaries: list[Any] = []
    job = MonitorJob(InfluxReader(services.influx.url, steel["db"]), steel["plant"], state_path=state)
    job.follow(None, interval_s=0.05, lag_s=0.0, stop=lambda: len(summaries) >= 2, on_summary=summaries.append)
    first, second = summaries
    assert first.first_ms == _ms("2026-01-06T02:11:00Z") and first.last_ms == steel["end_ms"]
    assert second.cycles == 0 and second.events == []
    reopened = [e for e in first.events if e.state == "open" and e.alert.kind == "idle_running" and e.alert.process == "hot_strip_mill"]
    resolved = [e for e in first.events if e.state == "resolved" and e.alert.process == "hot_strip_mill" and e.alert.kind == "idle_running"]
    assert reopened == [] and len(resolved) == 1  # the alert opened before the restart is resolved after it, not raised again
    rc = main(["analyze", "monitor", "--plant", str(steel["dir"] / "plant.json"), "--influx-url", services.influx.url, "--database", steel["db"]])
    assert rc == 2 and "follow mode needs --state" in capsys.readouterr().err


def test_cli_runs_from_a_settings_file(services: Any, steel: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--config FILE`` gives what the flags gave; flags given beside it win over the file."""
    from carbonedge.app.cli import main

    f = tmp_path / "monitor.toml"
    f.write_text(f'[influx]\nurl = "{services.influx.url}"\ndatabase = "{steel["db"]}"\n[monitor]\nplant_file = "{steel["dir"] / "plant.json"}"\n'
                 f'state_file = "{tmp_path}/monitor.state"\nstart = "{T0}"\nlearn_hours = 6\n')
    rc = main(["analyze", "monitor", "--config", str(f), "--once", "--end", "2026-01-06T02:10:00Z", "--learn-hours", "24", "--no-influx-alerts"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "open     critical idle_running     hot_strip_mill: hot_strip_mill" in out and "1,571 poll cycles" in out
    assert (tmp_path / "monitor.state").exists()
    rc = main(["analyze", "monitor", "--config", str(f), "--once", "--end", "2026-01-06T02:10:00Z", "--no-influx-alerts"])
    assert rc == 0 and f"resuming after 2026-01-06T02:10:00Z from {tmp_path}/monitor.state" in capsys.readouterr().out


def _ms(text: str) -> int:
    return int(parse_time(text) * 1000)


def test_enpi_battery_baselines_meet_ashrae14_hourly(services: Any, battery: dict[str, Any]) -> None:
    res = compute_enpi(InfluxReader(services.influx.url, battery["db"]), battery["plant"], T0_MS, battery["end_ms"],
                       baseline_until_ms=T0_MS + 24 * H, tz="Europe/Berlin")
    assert set(res.processes) == set(battery["plant"]["processes"])
    fits = {name: p.fit_baseline_period for name, p in res.processes.items()}
    assert all(f is not None and f.meets("hourly") for f in fits.values()), fits


def test_alerts_as_grafana_annotations_one_per_alert_closed_on_resolve(steel_run: dict[str, Any], grafana: tuple[str, Any]) -> None:
    """Through the loopback stand-in for Grafana's HTTP API of tests/test_grafana_client.py."""
    from carbonedge.analytics.grafana import GrafanaClient

    url, fake = grafana
    events = steel_run["summary"].events
    sinks = Sinks(grafana=GrafanaClient(url, GRAFANA_TOKEN))
    sinks.deliver(events)
    ids = {e.alert.alert_id for e in events}
    assert len(fake.annotations) == len(ids) and sinks.counts["grafana"] == len(events)
    resolved = {e.alert.alert_id: e.ts_ms for e in events if e.state == "resolved"}
    for a in fake.annotations.values():
        aid = next(t for t in a["tags"] if t.startswith("alert:"))[6:]
        assert a.get("timeEnd") == resolved.get(aid), aid  # closed exactly when resolved, open otherwise
    sinks.deliver(events)  # a replay after a restart edits, never adds
    assert len(fake.annotations) == len(ids)
