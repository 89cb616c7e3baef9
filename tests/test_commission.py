"""Commissioning commands: profiles, probe (against a served meter), plant init, status (real broker and InfluxDB)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import paho.mqtt.client as mqtt
import requests

from carbonedge import profiles, wire
from carbonedge.app import cli
from test_edge_modbus import ServedMeter, tcp_server


def test_profiles_lists_every_map_and_shows_one(capsys):
    assert cli.main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in profiles.PROFILES:
        assert name in out
    assert cli.main(["profiles", "eastron-sdm630"]) == 0
    out = capsys.readouterr().out
    assert "active_energy_import [kWh]" in out and "float32" in out and "input" in out
    assert cli.main(["profiles", "no-such-meter"]) == 2
    assert "unknown meter profile 'no-such-meter'" in capsys.readouterr().err


class _Served:
    """A Modbus TCP meter served from a background event loop while the command runs in the test's thread."""

    def __init__(self, meter: ServedMeter) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._meter = meter
        self._t = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._t.start()
        assert self._ready.wait(15)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        async with tcp_server([self._meter]) as port:
            self.port = port
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._t.join(10)


def test_probe_prints_every_quantity_with_unit_and_quality(capsys):
    prof = profiles.get_profile("eastron-sdm630")
    values = {p.name: 10.0 + i for i, p in enumerate(prof.points)}
    served = _Served(ServedMeter(prof, values))
    try:
        code = cli.main(["probe", "--profile", "eastron-sdm630", "--host", "127.0.0.1", "--port", str(served.port), "--json"])
        out = json.loads(capsys.readouterr().out.split("\n", 1)[1])
        assert code == 0
        assert set(out["values"]) == set(prof.published_quantities())
        energy = out["values"]["active_energy_import"]
        assert energy["u"] == "kWh" and energy["q"] == "good"
        assert energy["v"] == values[prof.by_name["active_energy_import"].name] * prof.by_name["active_energy_import"].scale
        # The wrong profile for this meter: the exact Modbus error, exit status 1, no traceback.
        code = cli.main(["probe", "--profile", "siemens-pac3200", "--host", "127.0.0.1", "--port", str(served.port)])
        cap = capsys.readouterr()
        assert code == 1 and "Modbus exception" in cap.out + cap.err and "Traceback" not in cap.err
    finally:
        served.close()
    # Nobody listening: the connection error, named.
    code = cli.main(["probe", "--profile", "eastron-sdm630", "--host", "127.0.0.1", "--port", str(served.port), "--timeout", "1"])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot connect to 127.0.0.1:{served.port}" in err and "meter.connect_failed" in err


def test_probe_reads_a_device_as_the_gateway_config_has_it(tmp_path, capsys):
    prof = profiles.get_profile("janitza-umg96rm-e")
    served = _Served(ServedMeter(prof, unit=7))
    try:
        cfg = tmp_path / "gw.toml"
        cfg.write_text(f'[gateway]\nsite = "s1"\nid = "gw1"\n\n[[devices]]\nid = "press-1"\nprofile = "janitza-umg96rm-e"\n'
                       f'host = "127.0.0.1"\nport = {served.port}\nunit_id = 7\n')
        code = cli.main(["probe", "--config", str(cfg), "--device", "press-1"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "press-1 (janitza-umg96rm-e" in out and f"of {len(prof.published_quantities())} quantities good" in out
        assert cli.main(["probe", "--config", str(cfg), "--device", "nope"]) == 2
        assert "press-1" in capsys.readouterr().err  # the error lists the devices there are
    finally:
        served.close()


def test_plant_init_matches_the_simulators_plant_model(tmp_path, capsys):
    """The simulator writes gateway.toml and plant.json for the same plant: the skeleton must agree on every process."""
    from carbonedge.simulators import Scenario, Simulation
    from carbonedge.simulators.runner import _layout, gateway_toml

    sim = Simulation.from_scenario(Scenario(plant="steel", start=1_767_571_200.0))
    devices = [{"id": d.device, "profile": d.profile.name, "host": "127.0.0.1", "port": 1502, "unit_id": d.unit_id,
                "tags": {"area": d.process.area, "process": d.process.name}} for group in _layout(sim) for d in group]
    gw = tmp_path / "gateway.toml"
    gw.write_text(gateway_toml("plant-a", "gw1", 60.0, devices))
    out = tmp_path / "plant.json"
    assert cli.main(["plant", "init", "--config", str(gw), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    model = json.loads(out.read_text())
    assert model["processes"] == sim.plant_model("plant-a")["processes"]
    assert model["output_process"] is None and "output_process" in printed
    # The skeleton is a valid plant model as written, and `config check` says so.
    from carbonedge.plant import PlantModel

    assert set(PlantModel.from_dict(model, str(out)).processes) == set(model["processes"])
    assert cli.main(["config", "check", str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli.main(["plant", "init", "--config", str(gw), "--out", str(out)]) == 2  # never overwritten without --force
    assert "--force" in capsys.readouterr().err


def test_status_shows_gateways_watermarks_backlog_and_dead_letters(services, database, capsys):
    now_ms = int(time.time() * 1000)
    lines = [f"readings,site=s1,gateway=gw1,device=m1 active_power=1,seq=41i {now_ms - 5000}",
             f"gateway_health,site=s1,gateway=gw1 outbox_batches=17,outbox_age_s=960 {now_ms - 3000}",
             f"pipeline,collector=c1 received=100i,lag_s=1.5,rejected_unknown_device=3i,rejected_schema=0i {now_ms - 1000}"]
    r = requests.post(f"{services.influx.url}/write", params={"db": database, "precision": "ms"}, data="\n".join(lines), timeout=10)
    assert r.status_code == 204, r.text
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="status-test", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", services.mqtt.port)
    c.loop_start()
    c.publish(wire.status_topic("s1", "gw1"), wire.Status(site="s1", gateway="gw1", state="online", boot_id="b" * 32).to_json(),
              qos=1, retain=True).wait_for_publish(5)
    c.publish(wire.ack_topic("s1", "gw1"), wire.Ack(site="s1", gateway="gw1", watermark=40, ts=now_ms).to_json(),
              qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    try:
        code = cli.main(["status", "--mqtt-port", str(services.mqtt.port), "--influx-url", services.influx.url, "--database", database,
                         "--site", "s1", "--json"])
        assert code == 0
        st = json.loads(capsys.readouterr().out)
        gw = st["gateways"][0]
        assert gw["gateway"] == "s1/gw1" and gw["state"] == "online" and gw["watermark"] == 40 and gw["backlog_batches"] == 17
        assert 0 <= gw["lag_s"] < 120
        assert st["collectors"][0]["dead_letters_by_reason"] == {"unknown_device": 3}
        assert cli.main(["status", "--mqtt-port", str(services.mqtt.port), "--influx-url", services.influx.url, "--database", database,
                         "--site", "s1"]) == 0
        table = capsys.readouterr().out
        assert "s1/gw1" in table and "online" in table and "unknown_device 3" in table
    finally:
        for t in (wire.status_topic("s1", "gw1"), wire.ack_topic("s1", "gw1")):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            c.connect("127.0.0.1", services.mqtt.port)
            c.publish(t, b"", qos=0, retain=True)
            c.disconnect()
    # A broker that is not there: one line, exit 2.
    assert cli.main(["status", "--mqtt-port", "9", "--influx-url", services.influx.url, "--database", database]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "MQTT broker 127.0.0.1:9" in err

