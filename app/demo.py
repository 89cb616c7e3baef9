"""``carbonedge demo``: a simulated plant through the real pipeline, end to end.

simulator (Modbus TCP) -> edge gateway (outbox, MQTT v5) -> Mosquitto -> collector
-> InfluxDB -> analytics. Each stage runs as its own process, on one virtual clock,
with the project's own Mosquitto and InfluxDB on free loopback ports.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from carbonedge.clock import ClockSpec, iso, parse_time
from carbonedge.errors import CarbonEdgeError
from carbonedge.plant import PlantModel
from carbonedge.influx import quote_literal
from carbonedge.mqtt import BrokerSettings
from carbonedge.app.services import Services

DEMO_START = "2026-01-05T00:00:00Z"  # a Monday
DATABASE = "carbonedge"
WARMUP_S = 12.0  # wall seconds for the processes to start before plant time begins (OPC UA PLC and session included)
# The simulator starts plant time once every device was read three times (--sync-start) and the clock has
# reached the start, and then freezes at the end: the gateway keeps polling for a while past the end so that
# its last readings see the final state even when a poll is slow or missed. A meter that missed two polls
# in a row is retried after 1 s, then 2 s, ... of wall time (the gateway's backoff), which is many polls
# on a fast clock: the tail lasts at least TAIL_WALL_S wall seconds so that such a meter is read again.
TAIL_POLLS = 3
TAIL_WALL_S = 4.0
# The gateway starts polling LEAD_POLLS cycles before plant time starts: its first readings of every
# device are taken (and held by the simulator until each device was read three times) before the plant
# moves, so a slow first answer costs nothing and plant time equals gateway time. The lead also covers the
# gateway's secure OPC UA session with the PLC (handshake, subscription), which takes a moment on a busy machine.
LEAD_POLLS = 60


def tail_polls(speed: float, poll_interval_s: float) -> int:
    """Poll cycles the gateway runs past the end of plant time."""
    return max(TAIL_POLLS, math.ceil(TAIL_WALL_S * speed / poll_interval_s))


def _say(msg: str) -> None:
    print(msg, flush=True)


class _Proc:
    def __init__(self, name: str, argv: list[str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        with self.log.open("w") as f:
            self.p = subprocess.Popen([sys.executable, "-m", "carbonedge.app.cli", "-v", *argv], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self, timeout: float = 30.0) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return int(self.p.returncode)

    def check(self) -> None:
        if self.p.poll() not in (None, 0):
            tail = self.log.read_text(errors="replace")[-2000:]
            raise CarbonEdgeError(f"the {self.name} process failed (exit {self.p.returncode}). Last log lines:\n{tail}")


def count_readings(services: Services, site: str) -> int:
    """Readings (field values other than bookkeeping) stored for ``site``."""
    res = services.influx.query(f'SELECT count(*) FROM "readings" WHERE "site" = {quote_literal(site)}', db=DATABASE)
    total = 0
    for s in res["results"][0].get("series", []):
        for col, v in zip(s["columns"], s["values"][0]):
            if col.startswith("count_") and col not in ("count_seq", "count_bad_values", "count_status") and v:
                total += int(v)
    return total


def run_demo(*, plant: str = "steel", hours: float = 24.0, speed: float = 1440.0, seed: int = 7, out: Path = Path("demo-out"), poll_interval_s: float = 60.0,
             scenario: str | None = None) -> dict[str, Any]:
    out = out.resolve()
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    logs = out / "logs"
    clear_previous_run(out)
    for d in (run_dir, logs):
        d.mkdir(parents=True, exist_ok=True)
    site = f"demo-{plant}"
    duration = hours * 3600.0
    tail = tail_polls(speed, poll_interval_s)
    lead_s = LEAD_POLLS * poll_interval_s
    wall_estimate = (lead_s + duration + tail * poll_interval_s) / speed
    _say(f"carbonedge demo: {plant} plant, {hours:g} h of plant operation at {speed:g}x (about {wall_estimate + WARMUP_S + 10:.0f} s)")

    t0 = time.monotonic()
    _say("[1/5] Starting Mosquitto and InfluxDB on free loopback ports ...")
    services = Services(run_dir / "services", database=DATABASE).start()
    procs: list[_Proc] = []
    try:
        _say(f"      Mosquitto 127.0.0.1:{services.mqtt.port}, InfluxDB {services.influx.url}")
        from carbonedge.simulators.opcua_plc import prepare

        prepare()  # the simulated PLC's OPC UA address space, built once per machine (then it starts in a moment)
        start = parse_time(DEMO_START)
        end = start + duration
        spec = ClockSpec(start=start - lead_s, speed=speed, origin=time.time() + WARMUP_S)

        _say(f"[2/5] Starting the {plant} plant simulator (seed {seed}) ...")
        sim_dir = run_dir / "sim"
        sim = _Proc("sim", ["sim", *(["--scenario", scenario] if scenario else []), "--plant", plant, "--seed", str(seed), "--clock", spec.to_arg(), "--start", iso(start), "--duration", str(duration),
                            "--site", site, "--out", str(sim_dir), "--poll-interval", str(poll_interval_s), "--sync-start"], logs)
        procs.append(sim)
        while not (sim_dir / "ready").exists():
            sim.check()
            if time.time() > spec.origin - 2:
                raise CarbonEdgeError("the simulator did not start in time; see " + str(sim.log))
            time.sleep(0.05)
        devices = json.loads((sim_dir / "devices.json").read_text())
        _say(f"      {len(devices)} devices on {len({d['port'] for d in devices})} Modbus TCP ports: "
             + ", ".join(sorted({d['profile'] for d in devices})))

        _say("[3/5] Starting the collector and the edge gateway; plant time runs ...")
        coll = _Proc("collector", ["collect", "--mqtt-port", str(services.mqtt.port), "--influx-url", services.influx.url,
                                   "--database", DATABASE, "--state-dir", str(run_dir / "collector"),
                                   "--stats-file", str(run_dir / "collector-stats.json")], logs)
        procs.append(coll)
        edge_stats = run_dir / "edge-stats.json"
        edge = _Proc("edge", ["edge", "--config", str(sim_dir / "gateway.toml"), "--mqtt-port", str(services.mqtt.port),
                              "--data-dir", str(run_dir / "edge"), "--clock", spec.to_arg(), "--until", iso(end + tail * poll_interval_s),
                              "--exit-when-drained", "--stats-file", str(edge_stats)], logs)
        procs.append(edge)
        last = 0.0
        while edge.p.poll() is None:
            for p in procs:
                p.check()
            now = time.time()
            if now - last >= 5.0:
                last = now
                plant_t = min(max(spec.start + (now - spec.origin) * speed, start), end)
                pct = 100.0 * (plant_t - start) / duration
                stored = count_readings(services, site)
                _say(f"      plant time {iso(plant_t)[:16].replace('T', ' ')}  {pct:5.1f} %   readings in InfluxDB: {stored:,}")
            time.sleep(0.2)
        edge.check()

        _say("[4/5] Gateway has stopped polling and every batch is confirmed by the collector; stopping ...")
        coll.stop()
        sim.stop()
        truth_path = sim_dir / "truth.json"
        if not truth_path.exists():
            raise CarbonEdgeError(f"the simulator did not write {truth_path}; see {sim.log}")
        truth = json.loads(truth_path.read_text())
        gstats = json.loads(edge_stats.read_text())
        cstats = json.loads((run_dir / "collector-stats.json").read_text())

        _say("[5/5] Computing energy intensity from InfluxDB ...")
        from carbonedge.analytics import InfluxReader, energy_intensity

        plant_model = PlantModel.load(sim_dir / "plant.json")
        figs = energy_intensity(InfluxReader(services.influx.url, DATABASE), plant_model, int((start - lead_s) * 1000), int((end + (tail + 1) * poll_interval_s) * 1000)).as_dict()
        in_db = count_readings(services, site)
        published = int(gstats.get("readings", 0))
        summary = _summary(plant, figs, truth, published, in_db, gstats, cstats, hours, seed)
        _record(out, "summary.json").write_text(json.dumps(summary, indent=2))

        from carbonedge.analytics.sec_table import sec_table

        _say("")
        _say(sec_table(figs, summary))
        _say("")
        _say(f"Readings published: {published:,}   in InfluxDB: {in_db:,}   lost: {summary['lost']}   "
             f"duplicate deliveries: {summary['duplicate_deliveries']}   bad values: {gstats.get('bad_values', 0)}")
        _say(f"Summary: {out / 'summary.json'}   (took {time.monotonic() - t0:.0f} s)")
        summary["analytics"] = _demo_analytics(services, plant_model, start, end, hours, poll_interval_s)
        _record(out, "summary.json").write_text(json.dumps(summary, indent=2))
        _demo_report(services, plant_model, start, end + poll_interval_s, out)
        return summary
    finally:
        for p in reversed(procs):
            p.stop(10)
        services.stop()


def _demo_analytics(services: Services, plant_model: PlantModel, start: float, end: float, hours: float,
                    poll_interval_s: float) -> dict[str, Any]:
    """EnPIs with baselines (first half of the run as the baseline period) and the alert monitor, as the
    plant server's analytics jobs would run them; results go to InfluxDB (``enpi``, ``alerts``) for the
    dashboards, and alerts also to the demo broker's MQTT topic."""
    from carbonedge.analytics import InfluxReader
    from carbonedge.analytics.enpi import compute_enpi, write_enpi
    from carbonedge.analytics.live import MonitorJob, Sinks, mqtt_client
    from carbonedge.analytics.monitor import MonitorSettings

    reader = InfluxReader(services.influx.url, DATABASE)
    half_ms = int((start + (end - start) / 2) * 1000)
    _say("")
    _say("Energy performance indicators (ISO 50006 baselines fitted on the first half of the run):")
    res = compute_enpi(reader, plant_model, int(start * 1000), int(end * 1000), baseline_until_ms=half_ms)
    _say(res.table())
    n_enpi = write_enpi(res, services.influx.url, DATABASE)
    learn_h = min(24.0, hours / 2)
    sinks = Sinks(influx_url=services.influx.url, database=DATABASE)
    sinks.mqtt = mqtt_client(BrokerSettings(port=services.mqtt.port, client_id="carbonedge-demo-monitor"))
    try:
        # At 1440x the simulator can fall a poll or two of plant time behind its clock under load, which
        # looks like the gateway clock jumping forward: only jumps of more than five polls are reported.
        settings = MonitorSettings(learn_hours=learn_h, clock_jump_min_s=5 * poll_interval_s)
        job = MonitorJob(reader, plant_model, settings=settings, sinks=sinks)
        s = job.run_once(int(start * 1000), int(end * 1000))
    finally:
        sinks.mqtt.disconnect()
        sinks.mqtt.loop_stop()
    _say("")
    _say(f"Alert monitor (learned normal operation from the first {learn_h:g} h): {s.cycles:,} poll cycles checked, "
         f"alerts opened {s.opened}, resolved {s.resolved}")
    for e in s.events:
        if e.state == "open":
            al = e.alert
            _say(f"  {iso(e.ts_ms / 1000)[:16].replace('T', ' ')}  {al.severity:8} {al.device or al.process}: {al.message}")
    return {"enpi_points": n_enpi, "monitor_cycles": s.cycles, "alerts_opened": s.opened, "alerts_resolved": s.resolved,
            "monitor_learn_hours": learn_h}


#: What the last demo run wrote into its output directory (names relative to it), so that the next run
#: removes exactly those: a battery demo into a steel demo's directory must not leave the CBAM export
#: beside its own report. Files the user put there are never touched.
MANIFEST = ".carbonedge-demo-files"
#: What a demo wrote before the manifest existed.
_LEGACY = ("summary.json", "report.html", "report.json", "cbam-steel.json", "cbam-steel.csv", "battery-cfp.json", "battery-cfp.csv",
           "cbam-communication.xlsx", "cbam-communication.json", "china-ets-steel.xlsx", "china-ets-steel.json",
           "battery-cf-declaration.json", "battery-cf-declaration.csv", "battery-pass-carbon-footprint.json", "pcf-iso14067.json")


def clear_previous_run(out: Path) -> list[str]:
    """Delete the files the previous demo run wrote into ``out`` (and its logs); return their names."""
    m = out / MANIFEST
    try:
        names = json.loads(m.read_text()) if m.is_file() else list(_LEGACY)
    except ValueError:
        names = list(_LEGACY)
    removed = []
    for n in names:
        p = out / n
        if isinstance(n, str) and "/" not in n and p.is_file():
            p.unlink()
            removed.append(n)
    m.unlink(missing_ok=True)
    if (out / "logs").is_dir():
        shutil.rmtree(out / "logs")
    return removed


def _record(out: Path, name: str) -> Path:
    """Note ``name`` in the manifest before it is written, and return its path."""
    m = out / MANIFEST
    try:
        names = json.loads(m.read_text()) if m.is_file() else []
    except ValueError:
        names = []
    if name not in names:
        m.write_text(json.dumps([*names, name]))
    return out / name


#: Carbon inputs a demo plant declares beyond its meters (stages not metered, study link), by plant kind.
DEMO_CARBON = {"battery": Path(__file__).with_name("demo-battery-carbon.toml")}


def demo_settings(plant_model: PlantModel) -> Any:
    """The documented default settings of the plant kind, with the demo's declared inputs (``DEMO_CARBON``) laid over them."""
    from carbonedge.analytics.carbon import default_settings
    from carbonedge.analytics.carbon.settings import load_settings

    settings = default_settings(plant_model)
    path = DEMO_CARBON.get(plant_model.plant)
    if path is None:
        return settings
    demo = load_settings(path)
    out = settings.products[0].output_process if settings.products else None
    products = [p.model_copy(update={"output_process": p.output_process or out}) for p in demo.products] or settings.products
    return settings.model_copy(update={"battery": demo.battery or settings.battery, "products": products})


def _demo_report(services: Services, plant_model: PlantModel, start: float, end: float, out: Path) -> None:
    """Carbon and optimisation report of the demo run: report.html, report.json and the regulatory exports in ``out``."""
    from carbonedge.analytics import InfluxReader
    from carbonedge.analytics.carbon import from_influx, write_carbon
    from carbonedge.analytics.report import build_report

    _say("")
    _say("Carbon and optimisation report:")
    data = from_influx(InfluxReader(services.influx.url, DATABASE), plant_model, start, end)
    res = build_report(data, demo_settings(plant_model), out, progress=_say,
                       influx_write=lambda acc: write_carbon(acc, services.influx.url, DATABASE))
    for p in (res.html, res.json, *res.exports):
        _record(out, Path(p).name)
    em = res.report["emissions"]
    _say(f"Scope 1: {em['scope1_t']:,.1f} t CO2   scope 2 (location-based): {em['scope2_location_t']:,.1f} t   "
         f"(market-based): {em['scope2_market_t']:,.1f} t   hints: {len(res.report['hints'])}")
    _say(f"Report: {res.html}   exports: {', '.join(p.name for p in res.exports) or 'none'}")


def _summary(plant: str, figs: dict[str, Any], truth: dict[str, Any], published: int, in_db: int,
             gstats: dict[str, Any], cstats: dict[str, Any], hours: float, seed: int) -> dict[str, Any]:
    procs = {}
    for name, p in figs["processes"].items():
        t = truth["processes"][name]
        truth_sec = t["energy_kwh"] / t["production"] if t.get("production") else None
        procs[name] = {
            "energy_kwh": p["energy_kwh"],
            "production": p["production"],
            "production_unit": p["production_unit"],
            "sec": p["sec"],
            "truth_energy_kwh": t["energy_kwh"],
            "truth_production": t["production"],
            "truth_sec": truth_sec,
        }
    pt = truth["plant_total"]
    return {
        "plant": plant,
        "hours": hours,
        "seed": seed,
        "readings_published": published,
        "readings_in_influxdb": in_db,
        "lost": max(0, published - in_db),
        "duplicate_deliveries": int(cstats.get("duplicate_deliveries", 0)),
        "batches_published": int(gstats.get("batches", 0)),
        "skipped_poll_cycles": int(gstats.get("skipped_cycles", 0)),
        "sec_unit": figs["sec_unit"],
        "plant_energy_kwh": figs["plant_energy_kwh"],
        "plant_production": figs["plant_production"],
        "plant_sec": figs["plant_sec"],
        "plant_truth_sec": pt["energy_kwh"] / pt["production"] if pt.get("production") else None,
        "output_process": figs["output_process"],
        "processes": procs,
        "collector": {k: v for k, v in cstats.items() if k != "watermarks"},
    }
