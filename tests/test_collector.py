"""The collector on real Mosquitto and InfluxDB: validation and dead-lettering, conflicts, health, metrics.

Fault tests with collector processes (SIGKILL, InfluxDB outage, 3 collectors on a shared
subscription) are in ``test_collector_faults.py``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from carbonedge import quantities, wire
from carbonedge.errors import ConfigError
from carbonedge.collector import Collector, CollectorSettings, load_device_registry
from carbonedge.collector.conflicts import ConflictIndex
from carbonedge.collector.influx import InfluxWriter
from carbonedge.collector.lineprotocol import Point, batch_lines
from carbonedge.collector.spool import Spool, SpoolFull
from carbonedge.collector.validate import Rejected, Validator
from carbonedge.collector.watermark import GatewayProgress, StateFile, from_ranges, to_ranges

NOW = 1_767_571_200_000
QUANTITIES = [q for q in quantities.QUANTITIES.values()][:30]


def make_batch(seq: int, site: str, gateway: str = "gw1", *, devices: int = 2, n_quantities: int = 2, ts: int | None = None,
               offset: float = 0.0) -> wire.Batch:
    """A poll cycle: ``devices`` meters × ``n_quantities`` quantities, values derived from seq (so replays are identical)."""
    t = NOW + seq * 1000 if ts is None else ts
    return wire.Batch(
        site=site, gateway=gateway, boot_id="abcdef0123456789", seq=seq, created=t,
        devices=[wire.DeviceReadings(device=f"m{i}", ts=t, tags={"process": "eaf", "area": "meltshop"},
                                     values={q.name: wire.Value(v=round(100.0 + seq + i * 0.5 + j + offset, 3), u=q.unit)
                                             for j, q in enumerate(QUANTITIES[:n_quantities])})
                 for i in range(devices)],
    )


def count_points(influx_url: str, db: str, field: str = "active_energy_import", where: str = "") -> int:
    import requests

    r = requests.get(f"{influx_url}/query", params={"db": db, "q": f'SELECT count("{field}") FROM readings {where}'}, timeout=30)
    series = r.json()["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


class AckWatcher:
    """Subscribes to the retained ack topics and keeps the highest watermark per gateway."""

    def __init__(self, port: int, sites: list[str]) -> None:
        self.wm: dict[str, int] = {}
        self.deadletters: list[dict[str, object]] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port)
        for s in sites:
            self.c.subscribe(f"carbonedge/v1/{s}/+/ack", qos=1)
            self.c.subscribe(f"carbonedge/v1/{s}/+/deadletter", qos=1)
        self.c.loop_start()

    def _msg(self, cl: object, u: object, m: mqtt.MQTTMessage) -> None:
        if m.topic.endswith("/deadletter"):
            self.deadletters.append(json.loads(m.payload))
            return
        a = wire.Ack.model_validate_json(m.payload)
        k = f"{a.site}/{a.gateway}"
        self.wm[k] = max(self.wm.get(k, 0), a.watermark)

    def wait(self, cond: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.05)
        return cond()

    def close(self) -> None:
        close(self.c)


def publisher(port: int, max_inflight: int = 20) -> mqtt.Client:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(max_inflight)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    return pub


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


@contextmanager
def running_collector(services, database: str, state_dir: Path, **kw: object) -> Iterator[Collector]:
    s = CollectorSettings(mqtt_port=services.mqtt.port, influx_url=services.influx.url, database=database, state_dir=state_dir,
                          client_id=kw.pop("client_id", f"c-{state_dir.name}"), share_group=None, batch_max_delay_s=0.1, **kw)  # type: ignore[arg-type]
    c = Collector(s)
    t = threading.Thread(target=c.run)
    t.start()
    assert c.connected.wait(10)
    try:
        yield c
    finally:
        c.stop()
        t.join(30)


# ---------------------------------------------------------------- end to end on the real broker and database
def test_every_malformed_class_is_dead_lettered_while_valid_traffic_lands(services, database, tmp_path):
    site = "coll-bad"
    reg = tmp_path / "devices.txt"
    reg.write_text(f"# known meters\n{site}/gw1/m0\n{site}/gw1/m1\n")
    acks = AckWatcher(services.mqtt.port, [site])
    pub = publisher(services.mqtt.port)
    topic = wire.telemetry_topic(site, "gw1")
    with running_collector(services, database, tmp_path / "state", max_payload_bytes=20_000, max_past_s=365 * 86400 * 5,
                           known_devices=load_device_registry(reg)) as c:
        good = [make_batch(s, site).to_json() for s in range(1, 6)]
        unknown = make_batch(6, site, devices=3)  # m2 is not in the registry: only its readings are rejected
        future = make_batch(7, site, ts=int(time.time() * 1000) + 3_600_000)  # one hour ahead of the collector's clock
        bad = {
            "bad_json": b"{not json",
            "schema": json.dumps({"schema": "carbonedge.batch/1", "site": site}).encode(),
            "schema_unit": make_batch(90, site).to_json().replace(b'"u":"kWh"', b'"u":"MWh"', 1),
            "schema_type": make_batch(91, site).to_json().replace(b'"seq":91', b'"seq":"ninety-one"'),
            "non_finite_nan": make_batch(92, site).to_json().replace(b"193.0", b"NaN", 1),
            "non_finite_inf": make_batch(93, site).to_json().replace(b"194.0", b"Infinity", 1),
            "topic_mismatch": make_batch(94, "other-site").to_json(),
            "oversized": make_batch(95, site, devices=40, n_quantities=20).to_json(),
            "past_ts": make_batch(96, site, ts=946_684_800_000 + 1000).to_json(),
        }
        msgs = [good[0], good[1], *bad.values(), good[2], unknown.to_json(), good[3], future.to_json(), good[4],
                make_batch(8, site).to_json(), good[1]]  # the last is an identical replay of seq 2
        for p in msgs:
            pub.publish(topic, p, qos=1).wait_for_publish(5)
        assert acks.wait(lambda: acks.wm.get(f"{site}/gw1", 0) >= 8, 30)
        stats = c.stats()
    close(pub)
    acks.close()
    rejected = {k.split(".", 1)[1]: v for k, v in stats.items() if k.startswith("rejected.")}
    assert rejected == {"bad_json": 1, "schema": 3, "non_finite": 2, "topic_mismatch": 1, "oversized": 1,
                        "past_ts": 2, "unknown_device": 1, "future_ts": 2}
    # 6 good batches × 2 meters, + m0/m1 of seq 6; nothing of the future/past/unknown devices
    assert count_points(services.influx.url, database) == 6 * 2 + 2
    assert stats["duplicate_deliveries"] == 1
    # seqs 1-8 and 96: a batch whose devices were all dead-lettered is still durably handled (the watermark may cross it)
    assert stats["batches_written"] == 9
    recs = [json.loads(x) for x in (tmp_path / "state" / "deadletter.jsonl").read_text().splitlines()]
    assert sorted({r["reason"] for r in recs}) == sorted(rejected)
    assert all(r["detail"] and r.get("payload") for r in recs)
    assert any(r["reason"] == "unknown_device" and r["device"] == "m2" for r in recs)
    assert len(acks.deadletters) >= len(recs) - 1  # all but the topic-mismatch one for site coll-bad... published per gateway


def test_conflicting_value_is_dead_lettered_never_overwritten(services, database, tmp_path):
    site = "coll-conf"
    acks = AckWatcher(services.mqtt.port, [site])
    pub = publisher(services.mqtt.port)
    topic = wire.telemetry_topic(site, "gw1")
    orig = make_batch(1, site)
    clash = make_batch(2, site, ts=orig.created, offset=7.0)  # clock stepped back: seq 2 reuses seq 1's timestamps
    with running_collector(services, database, tmp_path / "state", client_id="conf-a") as c:
        pub.publish(topic, orig.to_json(), qos=1).wait_for_publish(5)
        assert acks.wait(lambda: acks.wm.get(f"{site}/gw1", 0) >= 1)
        pub.publish(topic, clash.to_json(), qos=1).wait_for_publish(5)
        pub.publish(topic, orig.to_json(), qos=1).wait_for_publish(5)  # identical replay: not a conflict
        assert acks.wait(lambda: acks.wm.get(f"{site}/gw1", 0) >= 2)
        s1 = c.stats()
    assert s1["conflicts"] == 2 and s1["replay_checks"] == 0  # caught by the in-memory index, no database read
    assert s1["duplicate_deliveries"] == 1
    # A fresh collector (empty index) gets a replay of seq 1 with different values: checked against InfluxDB.
    tampered = make_batch(1, site, offset=0.5)
    with running_collector(services, database, tmp_path / "state2", client_id="conf-b") as c2:
        pub.publish(topic, tampered.to_json(), qos=1).wait_for_publish(5)
        assert acks.wait(lambda: c2.stats()["conflicts"] >= 2, 20)
        s2 = c2.stats()
    close(pub)
    acks.close()
    assert s2["replay_checks"] == 1 and s2["duplicate_deliveries"] == 1
    from carbonedge.app.services import InfluxDB  # noqa: F401 - the query helper lives on the fixture

    res = services.influx.query("SELECT active_energy_import, seq FROM readings WHERE device='m0'", db=database)
    rows = res["results"][0]["series"][0]["values"]
    assert rows == [[orig.created, orig.devices[0].values["active_energy_import"].v, 1]]  # the original value and seq survive
    ev = services.influx.query("SELECT count(detail) FROM events WHERE kind='conflict'", db=database)
    assert ev["results"][0]["series"][0]["values"][0][1] >= 2
    recs = [json.loads(x) for x in (tmp_path / "state2" / "deadletter.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in recs] == ["conflict", "conflict"] and recs[0]["stored"]["seq"] == 1


def test_writes_may_finish_out_of_order_but_acknowledgements_follow_arrival_order(services, database, tmp_path):
    """Two writers: the first flush's write is held back until a later one is in InfluxDB; nothing is
    acknowledged past the held flush until it is durable, and flushes are committed 1, 2, 3, ..."""
    site = "coll-order"
    acks = AckWatcher(services.mqtt.port, [site])
    pub = publisher(services.mqtt.port)
    topic = wire.telemetry_topic(site, "gw1")
    s = CollectorSettings(mqtt_port=services.mqtt.port, influx_url=services.influx.url, database=database, state_dir=tmp_path / "state",
                          client_id="order-a", share_group=None, batch_max_delay_s=0.1, write_concurrency=2)
    c = Collector(s)
    written: list[int] = []
    finished: list[tuple[int, int]] = []  # (flush, acknowledged watermark when it was committed)
    later_written = threading.Event()
    write, finish = c._write_unit, c._finish

    def held_write(u) -> None:  # type: ignore[no-untyped-def]
        if u.no == 1:
            assert later_written.wait(20), "no later flush was written while the first was held"
        write(u)
        written.append(u.no)
        if u.no > 1:
            later_written.set()

    def recording_finish(u) -> None:  # type: ignore[no-untyped-def]
        finished.append((u.no, acks.wm.get(f"{site}/gw1", 0)))
        finish(u)

    c._write_unit, c._finish = held_write, recording_finish  # type: ignore[method-assign]
    t = threading.Thread(target=c.run)
    t.start()
    assert c.connected.wait(10)
    try:
        for seq in range(1, 6):
            pub.publish(topic, make_batch(seq, site).to_json(), qos=1).wait_for_publish(5)
            time.sleep(0.3)  # each batch its own flush
        assert acks.wait(lambda: acks.wm.get(f"{site}/gw1", 0) >= 5, 30)
    finally:
        c.stop()
        t.join(30)
        close(pub)
        acks.close()
    assert written[0] != 1 and 1 in written  # the first flush really finished after a later one
    assert [n for n, _ in finished] == sorted(n for n, _ in finished) == list(range(1, len(finished) + 1))
    assert finished[0][1] == 0  # nothing had been acknowledged while flush 1 was still being written
    assert count_points(services.influx.url, database) == 10


def test_a_lone_message_is_written_at_once_not_after_the_batch_delay(services, database, tmp_path):
    """With nothing else waiting and the pipeline idle, a flush does not sit out ``batch_max_delay_s``."""
    site = "coll-quiet"
    acks = AckWatcher(services.mqtt.port, [site])
    pub = publisher(services.mqtt.port)
    with running_collector(services, database, tmp_path / "state", client_id="quiet-a") as c:
        c.s.batch_max_delay_s = 60.0
        time.sleep(0.3)  # the collector thread picks up the new delay at its next wait
        t0 = time.monotonic()
        pub.publish(wire.telemetry_topic(site, "gw1"), make_batch(1, site).to_json(), qos=1).wait_for_publish(5)
        assert acks.wait(lambda: acks.wm.get(f"{site}/gw1", 0) >= 1, 30), "not acknowledged within 30 s"
        waited = time.monotonic() - t0
    close(pub)
    acks.close()
    assert waited < 30  # the old rule held a lone message for the whole delay (60 s here)


def test_health_is_written_and_self_metrics_are_exposed(services, database, tmp_path):
    site = "coll-health"
    pub = publisher(services.mqtt.port)
    h = wire.Health(site=site, gateway="gw1", boot_id="abcdef0123456789", ts=NOW, metrics={"outbox_batches": 3.0, "cpu_pct": 4.5},
                    devices={"m0": wire.DeviceHealth(state="ok", reads=10, errors=0, latency_ms=12.5),
                             "m1": wire.DeviceHealth(state="down", reads=0, errors=10, last_error="no answer within 1 s")})
    with running_collector(services, database, tmp_path / "state", metrics_port=0, metrics_interval_s=0.5) as c:
        pub.publish(wire.health_topic(site, "gw1"), h.to_json(), qos=1).wait_for_publish(5)
        pub.publish(wire.telemetry_topic(site, "gw1"), b"[]", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (c.stats()["health_written"] and c.stats().get("rejected.schema")):
            time.sleep(0.05)
        time.sleep(1.2)  # let one pipeline-metrics interval pass
        port = c.metrics_server.server_port  # type: ignore[union-attr]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    close(pub)
    assert 'carbonedge_collector_rejected_total{collector="c-state",reason="schema"} 1' in text
    assert "carbonedge_collector_received_total" in text and "carbonedge_collector_spool_bytes" in text
    gh = services.influx.query("SELECT outbox_batches, cpu_pct FROM gateway_health", db=database)["results"][0]["series"][0]["values"]
    assert gh == [[NOW, 3, 4.5]]
    dh = services.influx.query("SELECT reads, errors, state FROM device_health GROUP BY device", db=database)["results"][0]["series"]
    assert {s["tags"]["device"]: s["values"][0][1:] for s in dh} == {"m0": [10, 0, "ok"], "m1": [0, 10, "down"]}
    pl = services.influx.query("SELECT last(received), last(rejected_schema) FROM pipeline", db=database)["results"][0]["series"][0]["values"]
    assert pl[0][1] >= 2 and pl[0][2] == 1


# ---------------------------------------------------------------- parts
def test_validator_reasons_and_registry_errors(tmp_path):
    v = Validator()
    with pytest.raises(Rejected) as e:
        v.topic("plant/a/b")
    assert e.value.reason == "bad_topic"
    with pytest.raises(Rejected) as e:
        v.batch("s", "gw1", b'{"schema": "carbonedge.batch/1", "site": "s", "gateway": "gw1", "boot_id": "abcdef01", "seq": 0, "created": 1}')
    assert e.value.reason == "schema" and "seq" in e.value.detail
    bad = tmp_path / "reg.json"
    bad.write_text('{"not": "a list"}')
    with pytest.raises(ConfigError, match="JSON list"):
        load_device_registry(bad)
    bad.write_text('["s/gw1"]')
    with pytest.raises(ConfigError, match="site/gateway/device"):
        load_device_registry(bad)


def test_watermark_union_across_collectors_and_gap_timeout():
    st = GatewayProgress()
    st.done = {1, 3, 5}
    st.peers["b"] = {2, 6}
    assert st.advance() and st.watermark == 3 and st.done == {5} and st.peers["b"] == {6}
    assert st.covered(2) and st.covered(6) and not st.covered(4)
    assert st.check_gap(10.0, now=100.0) is None  # hole at 4 starts its timer
    assert st.check_gap(10.0, now=105.0) is None
    assert st.check_gap(10.0, now=111.0) == (4, 4) and st.watermark == 6
    assert not st.adopt(5) and st.adopt(9) and st.watermark == 9
    assert to_ranges({1, 2, 3, 7, 9, 10}) == [[1, 3], [7, 7], [9, 10]] and from_ranges([[1, 3], [7, 7]]) == {1, 2, 3, 7}


def test_state_file_roundtrip_and_old_format(tmp_path):
    sf = StateFile(tmp_path / "w.json")
    sf.save({("s", "g"): GatewayProgress(watermark=4, done={6, 7})})
    got = sf.load()[("s", "g")]
    assert (got.watermark, got.done) == (4, {6, 7})
    (tmp_path / "w.json").write_text('{"s/g": 12}')
    assert sf.load()[("s", "g")].watermark == 12


def test_conflict_index_is_bounded_and_compares_digests():
    idx = ConflictIndex(max_entries=3)
    p = [Point("readings,device=m0,site=s", f"active_power=1.0,seq={i}i", NOW + i) for i in range(4)]
    for x in p:
        idx.add(x)
    assert len(idx) == 3 and idx.check(p[0]) == "new"  # evicted, oldest first
    assert idx.check(p[3]) == "same"
    assert idx.check(Point(p[3].series, "active_power=2.0,seq=3i", p[3].ts)) == "conflict"


def test_spool_is_ordered_bounded_and_survives_restart(tmp_path):
    sp = Spool(tmp_path / "spool", max_bytes=100)
    sp.append(b"a 1", 1)
    sp.append(b"b 2", 2)
    (tmp_path / "spool" / "000000000099-5.tmp").write_bytes(b"half written")
    with pytest.raises(SpoolFull):
        sp.append(b"x" * 200, 1)
    sp2 = Spool(tmp_path / "spool", max_bytes=100)  # reopened after a crash: tmp file gone, order kept
    assert len(sp2) == 2 and sp2.readings() == 3 and not list((tmp_path / "spool").glob("*.tmp"))
    path, body, n = sp2.oldest()  # type: ignore[misc]
    assert (body, n) == (b"a 1", 1)
    sp2.remove(path)
    assert sp2.oldest()[1] == b"b 2"  # type: ignore[index]
    sp2.append(b"c 3", 1)
    assert sorted(p.name for p in (tmp_path / "spool").glob("*.lp"))[-1].startswith("000000000003")


def test_writer_isolates_lines_influxdb_refuses(services, database):
    w = InfluxWriter(services.influx.url, database)
    request_close = w.session.close
    w.write(b"readings,device=m0,site=s active_power=1.0 1767571200000")
    body = b"\n".join([b"readings,device=m0,site=s active_power=2.0 1767571201000",
                       b'readings,device=m0,site=s active_power="text" 1767571202000',  # field type conflict
                       b"readings,device=m0,site=s active_power=3.0 1767571203000"])
    refused = w.write_isolating(body)
    assert [r.lines for r in refused] == [[b'readings,device=m0,site=s active_power="text" 1767571202000']]
    assert refused[0].status == 400 and "conflict" in refused[0].message
    request_close()
    assert count_points(services.influx.url, database, "active_power") == 3


def test_line_protocol_marks_bad_values_and_events():
    b = wire.Batch(site="s", gateway="g", boot_id="abcdef01", seq=5, created=NOW,
                   devices=[wire.DeviceReadings(device="m0", ts=NOW, status="partial", tags={"process": "eaf"},
                                                values={"active_power": wire.Value(v=1.5, u="kW"), "voltage_l1_n": wire.Value(v=None, u="V", q="bad")})],
                   events=[wire.Event(kind="counter_reset", ts=NOW, device="m0", quantity="active_energy_import", detail={"from": 10.0})])
    assert batch_lines(b) == [
        f'readings,device=m0,gateway=g,process=eaf,site=s active_power=1.5,bad_values=1i,status="partial",seq=5i {NOW}',
        f'events,device=m0,gateway=g,kind=counter_reset,site=s detail="{{\\"from\\": 10.0, \\"quantity\\": \\"active_energy_import\\"}}",seq=5i {NOW}',
    ]


def test_fast_path_accepts_only_what_the_wire_models_accept_and_builds_the_same_lines():
    import random

    from carbonedge.collector.lineprotocol import batch_points
    from carbonedge.collector.validate import _Undecided

    v = Validator(max_future_s=1e12)
    rng = random.Random(5)
    base = wire.Batch(
        site="s1", gateway="gw1", boot_id="abcdef0123456789", seq=7, created=NOW,
        devices=[wire.DeviceReadings(device="m0", ts=NOW, tags={"area": "melt", "process": "eaf"},
                                     values={"active_power": wire.Value(v=1.25, u="kW"), "voltage_l1_n": wire.Value(u="V", q="bad"),
                                             "active_energy_import": wire.Value(v=5.0, u="kWh", q="uncertain")}),
                 wire.DeviceReadings(device="m1", ts=NOW + 3, status="partial", error="one register block timed out",
                                     values={"frequency": wire.Value(v=50.01, u="Hz")})],
    ).to_json()
    mutations = [
        (b'"seq":7', b'"seq":0'), (b'"seq":7', b'"seq":"7"'), (b'"seq":7', b'"seq":7.0'), (b'"seq":7', b'"seq":true'),
        (b'"v":1.25', b'"v":1'), (b'"v":1.25', b'"v":true'), (b'"v":1.25', b'"v":NaN'), (b'"v":1.25', b'"v":1e400'),
        (b'"v":1.25', b'"v":99999999999999999999'), (b'"v":1.25', b'"v":"1.25"'), (b'"v":1.25', b'"v":null'),
        (b'"u":"kW"', b'"u":"W"'), (b'"u":"kW",', b""), (b'"q":"bad"', b'"q":"good"'), (b'"q":"uncertain"', b'"q":"meh"'),
        (b'"device":"m0"', b'"device":"m0\\n"'), (b'"device":"m0"', b'"device":"m 0"'), (b'"device":"m0"', b'"device":""'),
        (b'"area":"melt"', b'"site":"melt"'), (b'"area":"melt"', b'"Area":"melt"'), (b'"area":"melt"', b'"area":"me lt"'),
        (b'"active_power"', b'"reactive_powr"'), (b'"status":"partial"', b'"status":"down"'), (b'"ts":1767571200000', b'"ts":17675712000'),
        (b'"boot_id":"abcdef0123456789"', b'"boot_id":"ABCDEF0123456789"'), (b'"schema":"carbonedge.batch/1"', b'"schema":"carbonedge.batch/2"'),
        (b'"events":[]', b'"events":[{"kind":"gap","ts":1767571200000}]'), (b'"events":[]', b'"events":[],"extra":1'),
        (b'"error":"one register block timed out"', b'"error":"' + b"x" * 501 + b'"'), (b'"tags":{}', b'"tags":[]'),
        (b'"values":{"frequency"', b'"values":{"frequency":{"v":1.0,"u":"Hz","x":1},"frequency2"'),
        # harmless: defaults left out, ints for floats
        (b'"status":"ok",', b""), (b',"q":"good"', b""), (b',"events":[]', b""), (b',"tags":{}', b""), (b'"v":5.0', b'"v":5'),
    ]
    cases = [base] + [base.replace(a, b, 1) for a, b in mutations]
    for _ in range(200):  # random two-mutation combinations
        m1, m2 = rng.sample(mutations, 2)
        cases.append(base.replace(*m1, 1).replace(*m2, 1))
    accepted_fast = 0
    for payload in cases:
        try:
            ref = wire.Batch.model_validate_json(payload)
        except ValueError:
            ref = None
        try:
            fast = v._fast("s1", "gw1", payload)
        except _Undecided:
            fast = None
        if fast is None:
            continue
        accepted_fast += 1
        assert ref is not None, f"fast path accepted what the wire models refuse: {payload!r}"
        assert [p.line() for p in fast.points.readings] == [p.line() for p in batch_points(ref).readings], payload
        assert fast.points.reading_count == ref.reading_count()
    assert accepted_fast >= 6  # the plain batch and harmless mutations take the fast path
    assert v.batch("s1", "gw1", base).fast
