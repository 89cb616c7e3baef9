"""The collector on real Mosquitto and InfluxDB: valid traffic lands, malformed traffic is dead-lettered with a reason."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt

from carbonedge import wire
from collector import Collector, CollectorSettings

NOW = 1_767_571_200_000


def _batch(seq: int, site: str) -> bytes:
    return wire.Batch(
        site=site, gateway="gw1", boot_id="abcdef0123456789", seq=seq, created=NOW + seq * 1000,
        devices=[wire.DeviceReadings(device="m1", ts=NOW + seq * 1000, tags={"process": "eaf"},
                                     values={"active_power": wire.Value(v=100.0 + seq, u="kW"), "active_energy_import": wire.Value(v=1000.0 + seq, u="kWh")})],
    ).to_json()


def _count(services, db: str) -> int:
    res = services.influx.query('SELECT count("active_power") FROM readings', db=db)
    series = res["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_malformed_messages_are_dead_lettered_and_valid_ones_land(services, database, tmp_path):
    site = "coll-test"
    c = Collector(CollectorSettings(mqtt_port=services.mqtt.port, influx_url=services.influx.url, database=database,
                                    state_dir=tmp_path, client_id="coll-test", share_group=None, batch_max_delay_s=0.1))
    t = threading.Thread(target=c.run)
    t.start()
    assert c.connected.wait(10)
    acks: list[wire.Ack] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda cl, u, m: acks.append(wire.Ack.model_validate_json(m.payload))
    sub.connect("127.0.0.1", services.mqtt.port)
    sub.subscribe(wire.ack_topic(site, "gw1"), qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", services.mqtt.port)
    pub.loop_start()
    topic = wire.telemetry_topic(site, "gw1")
    bad = {
        "bad_json": b"{not json",
        "schema": json.dumps({"schema": "carbonedge.batch/1", "site": site}).encode(),
        "nan": _batch(99, site).replace(b"199.0", b"NaN"),
        "topic_mismatch": _batch(98, "other-site"),
    }
    for seq in (1, 2):
        pub.publish(topic, _batch(seq, site), qos=1).wait_for_publish(5)
    for payload in bad.values():
        pub.publish(topic, payload, qos=1).wait_for_publish(5)
    pub.publish(topic, _batch(3, site), qos=1).wait_for_publish(5)
    pub.publish(topic, _batch(2, site), qos=1).wait_for_publish(5)  # identical replay: harmless, counted
    deadline = time.time() + 15
    while time.time() < deadline and (not acks or acks[-1].watermark < 3 or sum(v for k, v in c.counters.items() if k.startswith("rejected.")) < 4):
        time.sleep(0.1)
    c.stop()
    t.join(10)
    pub.loop_stop()
    sub.loop_stop()
    assert acks and acks[-1].watermark == 3
    assert _count(services, database) == 3
    rejected = {k.split(".", 1)[1]: v for k, v in c.counters.items() if k.startswith("rejected.")}
    assert rejected == {"bad_json": 1, "schema": 2, "topic_mismatch": 1}  # NaN is a schema error (not valid JSON for the contract)
    assert c.counters["duplicate_deliveries"] == 1
    lines = (tmp_path / "deadletter.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(x)["reason"] for x in lines)
