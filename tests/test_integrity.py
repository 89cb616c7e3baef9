"""Tamper evidence: Ed25519-signed, hash-chained batches, the collector's archive, and `carbonedge verify`.

The pipeline test runs a signing gateway and a collector as real processes against the real
Mosquitto and InfluxDB, checks that a clean run verifies with no finding, and then injects
every kind of tampering at random places (in the archive and in InfluxDB) and requires the
verifier to report each one at the right gateway and seq, and nothing else.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carbonedge import wire
from carbonedge.app.cli import main
from carbonedge.integrity import (
    GENESIS,
    BatchSigner,
    IntegrityError,
    TrustStore,
    check_batch,
    generate_key,
    link_of,
    load_private_key,
    load_public_key,
)
from carbonedge.verify import verify
from faultlib.harness import Pipeline
from faultlib.tamper import mutate_archive

T0 = 1_767_571_200_000


def _batch(seq: int, value: float = 100.0, site: str = "s1", gw: str = "gw1") -> wire.Batch:
    dev = wire.DeviceReadings(device="m1", ts=T0 + seq * 60_000, tags={"area": "melt"}, values={
        "active_power": wire.Value(v=value, u="kW"), "active_energy_import": wire.Value(v=1000.0 + seq / 3, u="kWh"),
        "voltage_l1_n": wire.Value(v=None, u="V", q="bad")})
    ev = wire.Event(kind="counter_reset", ts=T0 + seq * 60_000, device="m1", detail={"from": 1.5, "to": 0, "note": "é"})
    return wire.Batch(site=site, gateway=gw, boot_id="abcdef0123", seq=seq, created=T0 + seq * 60_000 + 5, devices=[dev], events=[ev])


def _signed_chain(tmp_path: Path, n: int) -> tuple[list[wire.Batch], TrustStore]:
    sk = Ed25519PrivateKey.generate()
    signer = BatchSigner(sk, "s1", "gw1", tmp_path / "chain.json")
    signer.resume(0)
    out = []
    for s in range(1, n + 1):
        b = signer.sign(_batch(s, 100.0 + s * 0.1))
        signer.committed(s)
        out.append(b)
    trust = TrustStore()
    trust.add("s1", "gw1", sk.public_key())
    return out, trust


def test_signed_batches_survive_the_wire_and_chain_in_order(tmp_path):
    batches, trust = _signed_chain(tmp_path, 30)
    keys = trust.for_gateway("s1", "gw1")
    prev = GENESIS
    for b in batches:
        again = wire.Batch.model_validate_json(b.to_json())  # what the collector receives
        chk = check_batch(again, keys)
        assert chk.ok, chk.status
        assert again.integrity is not None and again.integrity.prev == prev
        prev = link_of("s1", "gw1", again.integrity)
    # Any change of content, position or origin breaks it.
    b = batches[4]
    assert check_batch(b.model_copy(update={"devices": [b.devices[0].model_copy(update={"ts": b.devices[0].ts + 1})]}), keys).status == "hash_mismatch"
    assert check_batch(b.model_copy(update={"seq": 99}), keys).status == "seq_mismatch"
    assert check_batch(b.model_copy(update={"gateway": "gw2"}), keys).status == "bad_signature"
    assert check_batch(b.model_copy(update={"integrity": None}), keys).status == "unsigned"
    other = TrustStore()
    other.add("s1", "gw1", Ed25519PrivateKey.generate().public_key())
    assert check_batch(b, other.for_gateway("s1", "gw1")).status == "unknown_key"


def test_signer_resumes_the_chain_after_a_crash_at_either_side_of_the_commit(tmp_path):
    sk = Ed25519PrivateKey.generate()
    s1 = BatchSigner(sk, "s1", "gw1", tmp_path / "chain.json")
    s1.resume(0)
    b1 = s1.sign(_batch(1))
    s1.committed(1)
    b2 = s1.sign(_batch(2))  # chain.json now names seq 2; suppose the outbox commit of seq 2 never happened
    assert b1.integrity and b2.integrity
    s2 = BatchSigner(sk, "s1", "gw1", tmp_path / "chain.json")
    assert s2.resume(1).link == link_of("s1", "gw1", b1.integrity)  # crash before the commit: back to seq 1's head
    s3 = BatchSigner(sk, "s1", "gw1", tmp_path / "chain.json")
    assert s3.resume(2).link == link_of("s1", "gw1", b2.integrity)  # crash after the commit: seq 2's head
    (tmp_path / "chain.json").unlink()
    s4 = BatchSigner(sk, "s1", "gw1", tmp_path / "chain.json")
    assert s4.resume(2).link == GENESIS and s4.restarted  # chain state lost: a visible restart, never a silent one
    b3 = s4.sign(_batch(3))
    assert b3.integrity is not None and b3.integrity.prev == GENESIS


def test_key_files_are_private_and_the_trust_file_round_trips(tmp_path, capsys):
    key = tmp_path / "keys" / "gw1.key"
    trust_path = tmp_path / "trusted-keys.json"
    assert main(["keys", "new", str(key), "--site", "s1", "--gateway", "gw1", "--trust", str(trust_path)]) == 0
    assert (key.stat().st_mode & 0o777) == 0o600
    sk = load_private_key(key)
    assert load_public_key(Path(str(key) + ".pub")).public_bytes_raw() == sk.public_key().public_bytes_raw()
    with pytest.raises(IntegrityError, match="refusing to overwrite"):
        generate_key(key)
    os.chmod(key, 0o644)
    with pytest.raises(IntegrityError, match="readable by other users.*chmod 600"):
        load_private_key(key)
    trust = TrustStore.load(trust_path)
    assert [k.id for k in trust.for_gateway("s1", "gw1")] == [json.loads(trust_path.read_text())["gateways"]["s1/gw1"][0]["id"]]
    # A second gateway registered from its .pub file.
    generate_key(tmp_path / "gw2.key")
    assert main(["keys", "trust", str(tmp_path / "gw2.key.pub"), "--site", "s1", "--gateway", "gw2", "--trust", str(trust_path)]) == 0
    assert set(TrustStore.load(trust_path).keys) == {("s1", "gw1"), ("s1", "gw2")}
    trust_path.write_text('{"schema": "something else"}')
    with pytest.raises(IntegrityError, match="not a carbonedge trust file"):
        TrustStore.load(trust_path)


# ---------------------------------------------------------------------------- archive mutations
def _point_line(site: str, gw: str, dev: str, ts: int, seq: int, vals: dict[str, float]) -> str:
    fields = ",".join(f"{k}={float(v)!r}" for k, v in sorted(vals.items()))
    return f"readings,area=melt,device={dev},gateway={gw},process=eaf,site={site} {fields},seq={seq}i {ts}"


@pytest.mark.slow
def test_verifier_reports_every_injected_tampering_and_nothing_on_a_clean_run(services, database, tmp_path):
    site = "integrity"
    pl = Pipeline(tmp_path / "run", site, services.mqtt.port, services.influx.url, database, devices=3)
    try:
        pl.clean_run(40)
        pl.terminate("collector-c1")
    finally:
        pl.close()
    trust = TrustStore.load(pl.trust_path)
    state = pl.state_dir()
    clean = verify([state], trust, influx_url=services.influx.url, database=database)
    assert clean.ok, clean.findings[:5]
    last = pl.committed_seq()
    g = clean.gateways[f"{site}/gw1"]
    assert (g.first_seq, g.last_seq, g.batches) == (1, last, last)
    assert g.points_checked == 3 * last

    # Archive: every kind, at random places, on a fresh copy each time.
    rng = random.Random(8)
    trials = detected = 0
    for kind in ("edited", "deleted", "inserted", "reordered", "replayed"):
        for _ in range(12):
            work = tmp_path / "work"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(state, work)
            touched = mutate_archive(work / "archive" / site / "gw1.jsonl", kind, rng, last)
            r = verify([work], trust)
            trials += 1
            got = {(f.kind, f.seq) for f in r.findings}
            assert got, f"{kind} at {touched} went unnoticed"
            assert {s for _, s in got} <= touched, (kind, touched, got)  # located exactly, no collateral reports
            assert any(k == kind for k, _ in got), (kind, touched, got)
            detected += 1
    assert detected == trials == 60

    # InfluxDB: the same kinds on the stored points; each trial is undone before the next.
    url = services.influx.url
    rows = services.influx.query(f"SELECT * FROM readings WHERE site = '{site}'", database)["results"][0]["series"][0]
    cols = rows["columns"]
    points = [dict(zip(cols, v)) for v in rows["values"]]
    qnames = [c for c in cols if c not in ("time", "area", "device", "gateway", "process", "site", "seq", "bad_values", "status")]

    def vals(p: dict) -> dict[str, float]:
        return {q: p[q] for q in qnames if p.get(q) is not None}

    def write(lines: list[str]) -> None:
        r = requests.post(f"{url}/write", params={"db": database, "precision": "ms"}, data="\n".join(lines).encode(), timeout=10)
        assert r.status_code == 204, r.text

    def drop(dev: str, ts: int) -> None:
        services.influx.query(f"DELETE FROM readings WHERE device = '{dev}' AND time >= {ts}ms AND time <= {ts}ms", database)

    def line(p: dict, v: dict[str, float] | None = None, ts: int | None = None, seq: int | None = None) -> str:
        return _point_line(site, "gw1", p["device"], p["time"] if ts is None else ts, p["seq"] if seq is None else seq, v or vals(p))

    for kind in ("edited", "deleted", "inserted", "reordered", "replayed"):
        for _ in range(4):
            p = rng.choice(points)
            same = [o for o in points if o["device"] == p["device"] and o["time"] != p["time"]]
            o = rng.choice(same)
            if kind == "edited":
                v = vals(p)
                q = rng.choice(list(v))
                v[q] = v[q] + 0.5
                write([line(p, v)])
                undo = [line(p)]
                want = {("edited", p["seq"])}
            elif kind == "deleted":
                drop(p["device"], p["time"])
                undo = [line(p)]
                want = {("deleted", p["seq"])}
            elif kind == "inserted":
                ts = p["time"] + 7_000
                write([line(p, {k: x + 1 for k, x in vals(p).items()}, ts=ts, seq=last + 5)])
                undo = []
                want = {("inserted", last + 5)}
            elif kind == "reordered":
                write([line(p, vals(o)), line(o, vals(p))])
                undo = [line(p), line(o)]
                want = {("reordered", p["seq"]), ("reordered", o["seq"])}
            else:
                ts = p["time"] + 11_000
                write([line(o, ts=ts)])
                undo = []
                want = {("replayed", o["seq"])}
            r = verify([state], trust, influx_url=url, database=database)
            got = {(f.kind, f.seq) for f in r.findings if f.where == "influxdb"}
            assert got == want, (kind, got, want)
            trials += 1
            detected += 1
            if kind in ("inserted", "replayed"):
                drop(p["device"] if kind == "inserted" else o["device"], ts)
            if undo:
                write(undo)
            assert verify([state], trust, influx_url=url, database=database).ok
    assert detected == trials == 80


def test_archive_keeps_payload_bytes_exactly_and_reads_both_line_forms(tmp_path):
    from carbonedge.integrity import Archive, read_archive

    a = Archive(tmp_path, 'coll-"1"')
    compact = b'{"site":"s1","gateway":"gw1","seq":1,"note":"a \\"quoted\\" ,\\"batch\\": text"}'
    pretty = b'{\n  "site": "s1",\n  "seq": 2\n}'  # a line break: written as a JSON string (the first form)
    a.append([("s1", "gw1", 1, compact), ("s1", "gw1", 2, pretty)])
    a.close()
    path = tmp_path / "s1" / "gw1.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    assert b'"schema":"carbonedge.archive/2"' in lines[0] and compact in lines[0]
    assert json.loads(lines[1])["raw"] == pretty.decode()
    # a line cut short by a crash, ending on one of the payload's own "}"
    torn = lines[0][: lines[0].index(b"}") + 1] + b"\n"
    path.write_bytes(b"".join(lines) + torn)
    recs = list(read_archive(tmp_path))
    assert [(r.seq, r.raw, r.by) for r in recs[:2]] == [(1, compact.decode(), 'coll-"1"'), (2, pretty.decode(), 'coll-"1"')]
    assert recs[2].seq is None and recs[2].by == ""  # unreadable: reported as such, not taken as a batch
