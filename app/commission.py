"""Commissioning commands: ``profiles``, ``probe``, ``plant init`` and ``status``.

What an engineer needs between "the demo works" and "the plant is monitored": which meter maps
exist and what they read, one test read of a real meter, a plant-model skeleton from the gateway
config, and a one-screen view of the pipeline's health. Process packages are imported lazily, by
the command that needs them, as in :mod:`carbonedge.app.cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from carbonedge import profiles, quantities
from carbonedge.argtypes import InputFile, Number, OutputFile, positive
from carbonedge.errors import ConfigError

# Production counters and their units, as the analytics read them (plant.json ``production_quantity``).
_PRODUCTION = {"production_mass": ("t", "kWh/t"), "production_count": ("pcs", "kWh/cell")}


# --------------------------------------------------------------------------- profiles


def cmd_profiles(a: argparse.Namespace) -> int:
    if a.name is None:
        print(f"{'profile':24} {'manufacturer / model':58} quantities")
        for name in sorted(profiles.PROFILES):
            p = profiles.PROFILES[name]
            print(f"{name:24} {(p.manufacturer + ' ' + p.model)[:58]:58} {len(p.published_quantities())}")
        print(f"\n{len(profiles.PROFILES)} profiles. Show one register map: carbonedge profiles NAME. A meter that is not listed: "
              "define its map under [[profiles]] in the gateway config (docs/edge.md).")
        return 0
    try:
        p = profiles.get_profile(a.name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    print(f"{p.name}: {p.manufacturer} {p.model}")
    print(f"default table: {p.table} registers ({'FC03' if p.table == 'holding' else 'FC04'}); register addresses are 0-based")
    if p.source:
        print(f"source: {p.source}")
    print(f"\n{'point':28} {'table':8} {'address':>7} {'type':8} {'words':5} {'scale':>9}  quantity [unit]")
    for pt in p.points:
        q = pt.quantity_name
        unit = quantities.get(q).unit if q else ""
        print(f"{pt.name:28} {p.table_of(pt):8} {pt.address:7d} {pt.dtype:8} {pt.word_order:5} {pt.scale:9g}  "
              + (f"{q} [{unit}]" if q else "(internal)"))
    for d in p.derived:
        print(f"{'= ' + ' + '.join(d.sum_of):28} {'':8} {'':7} {'':8} {'':5} {'':9}  {d.quantity} [{quantities.get(d.quantity).unit}]")
    if p.notes:
        print(f"\nnote: {p.notes}")
    return 0


# --------------------------------------------------------------------------- probe


def _probe_target(a: argparse.Namespace) -> tuple[Any, profiles.Profile, str]:
    """The device to read: from a gateway config (``--config`` + ``--device``) or from the flags."""
    from carbonedge.edge.config import DeviceConfig, load_config

    if a.config:
        cfg = load_config(a.config)
        ids = [d.id for d in cfg.devices]
        if not a.device:
            raise ConfigError(f"--config needs --device: one of {', '.join(ids)}")
        dev = next((d for d in cfg.devices if d.id == a.device), None)
        if dev is None:
            raise ConfigError(f"--device {a.device}: not in {a.config}; its devices: {', '.join(ids)}")
        return dev, cfg.profile_for(dev), str(a.config)
    if not a.profile:
        raise ConfigError("name the meter: --profile NAME with --host (Modbus TCP) or --serial-port (RTU), or --config FILE --device ID")
    try:
        prof = profiles.get_profile(a.profile)
    except KeyError as exc:
        raise ConfigError(f"--profile: {exc.args[0]}") from None
    if not a.host and not a.serial_port:
        raise ConfigError("--host (Modbus TCP) or --serial-port (Modbus RTU) is needed")
    fields: dict[str, Any] = {"id": "probe", "profile": a.profile, "unit_id": a.unit_id, "timeout_s": a.timeout}
    if a.serial_port:
        fields.update(driver="modbus-rtu", serial_port=a.serial_port, baudrate=a.baudrate, parity=a.parity, stopbits=a.stopbits)
    else:
        fields.update(driver="modbus-tcp", host=a.host, port=a.port)
    try:
        dev = DeviceConfig.model_validate(fields)
    except ValueError as exc:
        raise ConfigError(f"probe: {exc}") from None
    return dev, prof, "the command line"


async def _read_once(dev: Any, prof: profiles.Profile) -> tuple[dict[str, float | None], list[str], float]:
    from carbonedge.edge.drivers.modbus import ModbusRtuDriver, ModbusTcpDriver, SerialLine

    if dev.driver == "modbus-rtu":
        drv: Any = ModbusRtuDriver(dev.id, prof, SerialLine(dev.serial_port, dev.baudrate, dev.parity, dev.stopbits, dev.bytesize,
                                                            dev.timeout_s), dev.unit_id, dev.timeout_s)
    elif dev.driver == "modbus-tcp":
        drv = ModbusTcpDriver(dev.id, prof, dev.host, dev.port, dev.unit_id, dev.timeout_s)
    else:
        raise ConfigError(f"device {dev.id} is {dev.driver}: probe reads real meters (modbus-tcp or modbus-rtu)")
    t0 = time.monotonic()
    try:
        values = await drv.read()
    finally:
        drv.close()
    return dict(values), list(getattr(values, "partial", []) or []), (time.monotonic() - t0) * 1000


def cmd_probe(a: argparse.Namespace) -> int:
    from carbonedge.errors import MeterReadError

    dev, prof, source = _probe_target(a)
    where = f"{dev.serial_port} at {dev.baudrate} baud {dev.bytesize}{dev.parity}{dev.stopbits}" if dev.driver == "modbus-rtu" \
        else f"{dev.host}:{dev.port}"
    print(f"Reading {dev.id} ({prof.name}, {prof.manufacturer} {prof.model}) at {where}, unit {dev.unit_id} ({source}) ...", flush=True)
    try:
        values, failed, ms = asyncio.run(_read_once(dev, prof))
    except MeterReadError as exc:
        print(f"carbonedge probe: {exc} [{exc.code}]", file=sys.stderr)
        hints = {"meter.connect_failed": "check the address, the port, the cable and that nothing else holds the serial port",
                 "meter.timeout": "check unit_id, baud rate and parity, and the RS-485 A/B wiring and termination",
                 "meter.exception": "the meter answered with a Modbus exception: wrong profile, or the register table (holding/input) differs"}
        if exc.code in hints:
            print(f"hint: {hints[exc.code]}", file=sys.stderr)
        return 1
    good = sum(v is not None for v in values.values())
    if a.json:
        print(json.dumps({"device": dev.id, "profile": prof.name, "read_ms": round(ms, 1), "failed_blocks": failed,
                          "values": {q: {"v": v, "u": quantities.get(q).unit, "q": "good" if v is not None else "bad"}
                                     for q, v in values.items()}}, indent=2))
    else:
        print(f"{'quantity':30} {'value':>16} {'unit':8} quality")
        for q, v in values.items():
            print(f"{q:30} {('%.6g' % v) if v is not None else '-':>16} {quantities.get(q).unit:8} {'good' if v is not None else 'bad'}")
        for f in failed:
            print(f"failed read: {f}")
        print(f"{good} of {len(values)} quantities good, read in {ms:.0f} ms")
    return 0 if good == len(values) else 1


# --------------------------------------------------------------------------- plant init


def plant_skeleton(cfg: Any, production: str = "production_mass") -> tuple[dict[str, Any], list[str]]:
    """A plant model (plant.json) from a gateway config, and the list of what the engineer must complete.

    ``production`` is the counter quantity that measures output (``production_mass`` in tonnes for steel,
    ``production_count`` in cells for a cell plant): PLC counter blocks often publish both."""
    todo: list[str] = []
    procs: dict[str, dict[str, Any]] = {}
    prod_q: set[str] = set()
    weather: dict[str, str] | None = None
    unassigned: list[str] = []
    for d in cfg.devices:
        prof = cfg.profile_for(d)
        qs = set(prof.published_quantities())
        if {"outdoor_temperature"} <= qs and "active_energy_import" not in qs:
            weather = {"device": d.id, "temperature": "outdoor_temperature", "humidity": "outdoor_humidity", "dew_point": "outdoor_dew_point"}
            continue
        name = d.tags.get("process")
        if not name:
            unassigned.append(d.id)
            continue
        p = procs.setdefault(name, {"area": d.tags.get("area", ""), "production_unit": None, "meters": [], "counters": [],
                                    "flow_meters": [], "follows_shifts": False})
        counters = qs & {production}
        flows = sorted(q for q in qs if q.endswith("_volume") or q.endswith("_mass_total"))
        if counters:
            p["counters"].append(d.id)
            prod_q |= counters
            p["production_unit"] = _PRODUCTION[production][0]
        elif "active_energy_import" in qs:
            p["meters"].append(d.id)
        elif flows:
            medium = prof.name.split("-")[-1]
            flow_q = next((q for q in sorted(qs) if q.endswith("_flow")), None)
            p["flow_meters"].append({"device": d.id, "medium": medium, "quantity": flows[0], "flow_quantity": flow_q})
    for name, p in procs.items():
        if not p["area"]:
            todo.append(f"processes.{name}.area: no 'area' tag on its devices (meltshop, utilities, cell assembly …)")
        if p["production_unit"] is None:
            todo.append(f"processes.{name}.production_unit: no production counter on this gateway; null is right for a utility "
                        "(compressed air, cooling water), else add the counter and its unit (t, cells)")
    if unassigned:
        todo.append(f"devices without a 'process' tag, not in any process: {', '.join(unassigned)} (add tags = {{ process = \"...\" }})")
    pq = production
    if not prod_q:
        todo.append(f"production_quantity: no device publishes {production} (production_mass for tonnes, production_count for cells)")
    model: dict[str, Any] = {
        "plant": "steel" if pq == "production_mass" else "battery",
        "site": cfg.gateway.site,
        "sec_unit": _PRODUCTION[pq][1],
        "energy_quantity": "active_energy_import",
        "production_quantity": pq,
        "output_process": None,
        "processes": procs,
        "calendar": {"shifts": ["24/7"], "utc_offset_h": 0},
    }
    todo.insert(0, "output_process: the process whose production is the plant's product (e.g. the caster, or formation); "
                   "without it there is no plant-level SEC and no product footprint")
    todo.append("calendar: shifts and UTC offset of the plant; follows_shifts per process")
    if weather:
        model["weather"] = weather
    return model, todo


def cmd_plant_init(a: argparse.Namespace) -> int:
    from carbonedge.edge.config import load_config

    cfg = load_config(a.config)
    model, todo = plant_skeleton(cfg, "production_count" if a.production == "count" else "production_mass")
    out = Path(a.out)
    if out.exists() and not a.force:
        raise ConfigError(f"--out {out} exists already: pass --force to replace it")
    out.write_text(json.dumps(model, indent=2) + "\n")
    n_meters = sum(len(p["meters"]) for p in model["processes"].values())
    print(f"wrote {out}: site {model['site']}, {len(model['processes'])} processes, {n_meters} energy meters")
    print("complete by hand:")
    for t in todo:
        print(f"  - {t}")
    print(f"then check it: carbonedge config check {out}")
    return 0


# --------------------------------------------------------------------------- status


def _retained(a: argparse.Namespace, wait_s: float) -> dict[str, dict[str, Any]]:
    """Retained status and ack messages per gateway ("site/gateway"), read from the broker."""
    import logging
    import os

    import paho.mqtt.client as mqtt

    from carbonedge import wire
    from carbonedge.mqtt import BrokerSettings, make_client

    out: dict[str, dict[str, Any]] = {}
    pw_file = Path(a.mqtt_password_file) if a.mqtt_password_file else None
    settings = BrokerSettings(host=a.mqtt_host, port=a.mqtt_port, client_id=f"carbonedge-status-{os.getpid()}", username=a.mqtt_username or None,
                              password=None if pw_file else os.environ.get("CARBONEDGE_MQTT_PASSWORD"), password_file=pw_file,
                              ca_file=Path(a.mqtt_tls_ca) if a.mqtt_tls_ca else None, cert_file=Path(a.mqtt_tls_cert) if a.mqtt_tls_cert else None,
                              key_file=Path(a.mqtt_tls_key) if a.mqtt_tls_key else None, keepalive_s=10)

    def on_connect(client: mqtt.Client, flags: object, props: object) -> None:
        client.subscribe([(f"{wire.TOPIC_ROOT}/+/+/status", 0), (f"{wire.TOPIC_ROOT}/+/+/ack", 0)])

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            site, gw, kind = wire.parse_topic(msg.topic)
            body = json.loads(msg.payload)
        except ValueError:
            return
        out.setdefault(f"{site}/{gw}", {})[kind] = body

    link = make_client(settings, who="status", log=logging.getLogger("carbonedge.status"), on_connect=on_connect,
                       auth_hint="--mqtt-username and the password, or the client certificate, and the broker's ACL")
    link.client.on_message = on_message
    link.connect(max(wait_s, 5.0))
    time.sleep(wait_s)
    link.close()
    return out


def _ago(ms: float | None, now: float) -> str:
    if ms is None:
        return "never"
    s = max(0.0, now - ms / 1000)
    return f"{s:.0f} s ago" if s < 120 else (f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago")


def cmd_status(a: argparse.Namespace) -> int:
    import os

    now = time.time()
    from carbonedge.influx import InfluxClient

    db = InfluxClient(a.influx_url, a.database, username=a.influx_user or None,
                      password=os.environ.get("CARBONEDGE_INFLUX_PASSWORD", "") if a.influx_user else None, timeout_s=10.0, attempts=2)
    broker = _retained(a, a.wait)
    last_reading = {f"{s['tags']['site']}/{s['tags']['gateway']}": s["values"][0][0]
                    for s in db.query('SELECT last("seq") FROM "readings" GROUP BY "site", "gateway"')}
    health: dict[str, dict[str, Any]] = {}
    for s in db.query('SELECT last(*) FROM "gateway_health" GROUP BY "site", "gateway"'):
        health[f"{s['tags']['site']}/{s['tags']['gateway']}"] = {c.removeprefix("last_"): v for c, v in zip(s["columns"], s["values"][0])}
    pipeline = db.query('SELECT last(*) FROM "pipeline" GROUP BY "collector"')
    gateways = sorted(set(broker) | set(last_reading) | set(health))
    if a.site:
        gateways = [g for g in gateways if g.split("/")[0] == a.site]
    rows = []
    for g in gateways:
        st, ack, h = broker.get(g, {}).get("status", {}), broker.get(g, {}).get("ack", {}), health.get(g, {})
        rows.append({"gateway": g, "state": st.get("state", "unknown"), "last_reading": _ago(last_reading.get(g), now),
                     "lag_s": round(now - last_reading[g] / 1000, 1) if g in last_reading else None,
                     "backlog_batches": h.get("outbox_batches"), "backlog_age_s": h.get("outbox_age_s"),
                     "watermark": ack.get("watermark"), "watermark_age": _ago(ack.get("ts"), now),
                     "mqtt_disconnects": h.get("mqtt_disconnects"), "mqtt_last_error": None})
    collectors = []
    for s in pipeline:
        vals = {c.removeprefix("last_"): v for c, v in zip(s["columns"], s["values"][0])}
        dlq = {k.removeprefix("rejected_"): int(v) for k, v in vals.items() if k.startswith("rejected_") and v}
        collectors.append({"collector": s["tags"].get("collector"), "seen": _ago(vals.get("time"), now), "lag_s": vals.get("lag_s"),
                           "spooled": vals.get("spooled"), "dead_letters_by_reason": dlq})
    if a.json:
        print(json.dumps({"gateways": rows, "collectors": collectors}, indent=2))
        return 0
    print(f"{'gateway':28} {'state':8} {'last reading':>14} {'backlog':>8} {'watermark':>10} {'ack':>12}")
    for r in rows:
        print(f"{r['gateway']:28} {r['state']:8} {r['last_reading']:>14} {r['backlog_batches'] if r['backlog_batches'] is not None else '-':>8} "
              f"{r['watermark'] if r['watermark'] is not None else '-':>10} {r['watermark_age']:>12}")
    if not rows:
        print("(no gateway has reported yet)")
    for c in collectors:
        dl = ", ".join(f"{k} {v}" for k, v in sorted(c["dead_letters_by_reason"].items())) or "none"
        print(f"collector {c['collector']}: last report {c['seen']}, lag {c['lag_s'] if c['lag_s'] is not None else '-'} s, "
              f"dead letters: {dl}")
    if not collectors:
        print("(no collector metrics in InfluxDB: is a collector running with this database?)")
    return 0


# --------------------------------------------------------------------------- registration


def add_commands(sub: Any) -> None:
    """Register ``profiles``, ``probe``, ``plant`` and ``status`` on the top-level subparsers."""
    pr = sub.add_parser("profiles", help="list the meter profiles (register maps), or show one",
                        description="List the meter and PLC register maps the gateway knows, or show one map: every point's table, "
                        "address, data type, word order, scale and the quantity and unit it publishes.")
    pr.add_argument("name", nargs="?", help="profile to show, e.g. eastron-sdm630")
    pr.set_defaults(func=cmd_profiles)

    pb = sub.add_parser("probe", help="read one meter once and print every quantity with unit and quality",
                        description="Read one meter once, with a profile, over Modbus TCP or RTU, and print each quantity with its unit "
                        "and quality, or the exact Modbus error. Exit status 1 if the read failed or a quantity was bad.")
    pb.add_argument("--config", type=InputFile("toml"), help="gateway TOML file: read the device --device as configured there")
    pb.add_argument("--device", help="device id in --config")
    pb.add_argument("--profile", help="meter profile (carbonedge profiles lists them), without --config")
    pb.add_argument("--host", help="Modbus TCP address of the meter or gateway")
    pb.add_argument("--port", type=Number(int, min=1, max=65535), default=502, help="Modbus TCP port (default: 502)")
    pb.add_argument("--serial-port", help="Modbus RTU serial device, e.g. /dev/ttyUSB0")
    pb.add_argument("--baudrate", type=Number(int, min=300, max=921600), default=9600, help="RTU baud rate (default: 9600)")
    pb.add_argument("--parity", choices=["N", "E", "O"], default="E", help="RTU parity (default: E)")
    pb.add_argument("--stopbits", type=int, choices=[1, 2], default=1, help="RTU stop bits (default: 1)")
    pb.add_argument("--unit-id", type=Number(int, min=0, max=255), default=1, help="Modbus unit (slave) id (default: 1)")
    pb.add_argument("--timeout", type=positive(), default=2.0, help="seconds to wait for an answer (default: 2)")
    pb.add_argument("--json", action="store_true", help="print JSON")
    pb.set_defaults(func=cmd_probe)

    pl = sub.add_parser("plant", help="plant model tools")
    psub = pl.add_subparsers(dest="plant_cmd", required=True, metavar="ACTION")
    pi = psub.add_parser("init", help="write a plant-model skeleton (plant.json) from a gateway config",
                         description="Group the gateway's devices into processes by their 'process' and 'area' tags, sort them into "
                         "energy meters, production counters and flow meters by their profiles, and write plant.json; it lists what the "
                         "engineer must decide (output process, production units, calendar). `carbonedge config check plant.json` checks it.")
    pi.add_argument("--config", type=InputFile("toml"), required=True, help="gateway TOML file")
    pi.add_argument("--out", type=OutputFile(), default="plant.json", help="plant model to write (default: plant.json)")
    pi.add_argument("--production", choices=["mass", "count"], default="mass",
                    help="what measures output: mass in tonnes (steel, default) or count of cells (cell plants)")
    pi.add_argument("--force", action="store_true", help="replace --out if it exists")
    pi.set_defaults(func=cmd_plant_init)

    st = sub.add_parser("status", help="pipeline health: gateways last seen, backlog, watermark, dead letters",
                        description="One view of the pipeline: each gateway's state (retained status on the broker), last reading and "
                        "backlog (InfluxDB), acknowledged watermark (retained ack), and each collector's lag and dead letters by reason.")
    st.add_argument("--mqtt-host", default="127.0.0.1", help="MQTT broker (default: 127.0.0.1)")
    st.add_argument("--mqtt-port", type=Number(int, min=1, max=65535), default=1883, help="MQTT port (default: 1883)")
    st.add_argument("--mqtt-username", help="MQTT user; the password is read from --mqtt-password-file or $CARBONEDGE_MQTT_PASSWORD")
    st.add_argument("--mqtt-password-file", type=InputFile(), help="file holding the MQTT password (first line; keep it mode 0600)")
    st.add_argument("--mqtt-tls-ca", type=InputFile(), help="plant CA certificate: connect over TLS")
    st.add_argument("--mqtt-tls-cert", type=InputFile(), help="client certificate (with deploy/pki: an analytics identity may read status and acks)")
    st.add_argument("--mqtt-tls-key", type=InputFile(), help="the client certificate's private key")
    st.add_argument("--influx-url", default="http://127.0.0.1:8086", help="InfluxDB base URL (default: http://127.0.0.1:8086)")
    st.add_argument("--database", default="carbonedge", help="InfluxDB database (default: carbonedge)")
    st.add_argument("--influx-user", help="InfluxDB user; the password is read from $CARBONEDGE_INFLUX_PASSWORD")
    st.add_argument("--site", help="only this site")
    st.add_argument("--wait", type=positive(), default=1.5, help="seconds to collect retained messages from the broker (default: 1.5)")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=cmd_status)
