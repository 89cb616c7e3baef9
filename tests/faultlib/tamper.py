"""Tamper trials for ``bench/faults.py``: edit, delete, insert, reorder and replay batches after a clean signed run,
in the collector's archive and in InfluxDB, and count what ``carbonedge.verify`` misses (G10).

A trial is *detected* when the verifier reports a finding of the injected kind, *located* when every
finding names only the ``seq``s the mutation touched. The clean run before any mutation, and the
state after each InfluxDB trial is undone, must verify with no finding (false positives).
``tests/test_integrity.py`` runs the same mutations (:func:`mutate_archive`) per commit.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carbonedge.integrity import TrustStore
from carbonedge.verify import verify
from faultlib.harness import Pipeline

KINDS = ("edited", "deleted", "inserted", "reordered", "replayed")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _write(path: Path, recs: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs))


def _batch(r: dict[str, Any]) -> dict[str, Any]:
    """The batch of an archive record (payload bytes as ``batch``, or a JSON string ``raw``)."""
    return r["batch"] if "batch" in r else json.loads(r["raw"])


def _set(r: dict[str, Any], b: dict[str, Any]) -> None:
    if "batch" in r:
        r["batch"] = b
    else:
        r["raw"] = json.dumps(b)


def mutate_archive(path: Path, kind: str, rng: random.Random, last: int) -> set[int]:
    """Apply one tampering of ``kind`` to an archive file; return the seqs it touched."""
    recs = _lines(path)
    raw = [copy.deepcopy(_batch(r)) for r in recs]
    seqs = sorted({b["seq"] for b in raw})
    if kind == "edited":
        i = rng.randrange(len(recs))
        b = raw[i]
        d = rng.choice(b["devices"])
        q = rng.choice([k for k, v in d["values"].items() if v.get("v") is not None])
        d["values"][q]["v"] = d["values"][q]["v"] * 1.001 + 0.001
        _set(recs[i], b)
        touched = {b["seq"]}
    elif kind == "deleted":
        s = rng.choice(seqs)
        recs = [r for r, b in zip(recs, raw) if b["seq"] != s]
        touched = {s}
    elif kind == "inserted":
        b = dict(rng.choice(raw))
        b["seq"] = last + 1 + rng.randrange(3) if rng.random() < 0.5 else rng.choice(seqs)
        if rng.random() < 0.5:
            b.pop("integrity")  # unsigned
        else:  # signed, with a key the gateway does not have
            b["integrity"] = {**b["integrity"], "sig": Ed25519PrivateKey.generate().sign(b"forged").hex()}
        rec = {**recs[0], "seq": b["seq"]}
        _set(rec, b)
        recs.append(rec)
        touched = {b["seq"]}
    elif kind == "reordered":
        s = rng.choice(seqs[:-1])
        for r, b in zip(recs, raw):
            if b["seq"] in (s, s + 1):
                b["seq"] = s + 1 if b["seq"] == s else s
                _set(r, b)
        touched = {s, s + 1}
    elif kind == "replayed":
        b = dict(rng.choice(raw))
        b["seq"] = last + 1 + rng.randrange(3)
        b["created"] += 3_600_000
        rec = {**recs[0], "seq": b["seq"]}
        _set(rec, b)
        recs.append(rec)
        touched = {b["seq"]}
    else:
        raise ValueError(f"unknown tampering kind {kind!r}")
    _write(path, recs)
    return touched


def _point_line(site: str, gw: str, dev: str, ts: int, seq: int, vals: dict[str, float]) -> str:
    fields = ",".join(f"{k}={float(v)!r}" for k, v in sorted(vals.items()))
    return f"readings,area=melt,device={dev},gateway={gw},process=eaf,site={site} {fields},seq={seq}i {ts}"


def tamper_trials(env: Any, per_kind_archive: int, per_kind_influx: int) -> dict[str, Any]:
    """A clean signed run, then ``per_kind_*`` trials of every kind in the archive and in InfluxDB."""
    site = "f-tamper"
    influx = env.services.influx
    url, db = influx.url, env.services.database
    pl = Pipeline(env.root / "tamper", site, env.services.mqtt.port, url, db, devices=3)
    try:
        pl.clean_run(60, timeout=120)
        pl.terminate("collector-c1")
    finally:
        pl.close()
    trust = TrustStore.load(pl.trust_path)
    state = pl.state_dir()
    clean = verify([state], trust, influx_url=url, database=db)
    false_pos = len(clean.findings)
    last = pl.committed_seq()
    rng = random.Random(env.seed)
    trials = undetected = mislocated = 0
    by_kind: dict[str, int] = {}
    examples: list[str] = []

    def score(kind: str, got: set[tuple[str, int | None]], touched: set[int], where: str) -> None:
        nonlocal trials, undetected, mislocated
        trials += 1
        by_kind[f"{where}:{kind}"] = by_kind.get(f"{where}:{kind}", 0) + 1
        if not any(k == kind for k, _ in got):
            undetected += 1
            examples.append(f"{where} {kind} at {sorted(touched)} not reported (got {sorted(got, key=str)})")
        elif not {s for _, s in got} <= touched:
            mislocated += 1
            examples.append(f"{where} {kind} at {sorted(touched)} reported at {sorted(got, key=str)}")

    for kind in KINDS:
        for _ in range(per_kind_archive):
            work = env.root / "tamper" / "work"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(state, work)
            touched = mutate_archive(work / "archive" / site / "gw1.jsonl", kind, rng, last)
            r = verify([work], trust)
            score(kind, {(f.kind, f.seq) for f in r.findings}, touched, "archive")

    rows = influx.query(f"SELECT * FROM readings WHERE site = '{site}'", db)["results"][0]["series"][0]
    cols = rows["columns"]
    points = [dict(zip(cols, v)) for v in rows["values"]]
    qnames = [c for c in cols if c not in ("time", "area", "device", "gateway", "process", "site", "seq", "bad_values", "status")]

    def vals(p: dict[str, Any]) -> dict[str, float]:
        return {q: p[q] for q in qnames if p.get(q) is not None}

    def write(lines: list[str]) -> None:
        resp = requests.post(f"{url}/write", params={"db": db, "precision": "ms"}, data="\n".join(lines).encode(), timeout=10)
        if resp.status_code != 204:
            raise RuntimeError(f"InfluxDB refused a tampering write: {resp.status_code} {resp.text}")

    def drop(dev: str, ts: int) -> None:
        influx.query(f"DELETE FROM readings WHERE site = '{site}' AND device = '{dev}' AND time >= {ts}ms AND time <= {ts}ms", db)

    def line(p: dict[str, Any], v: dict[str, float] | None = None, ts: int | None = None, seq: int | None = None) -> str:
        return _point_line(site, "gw1", p["device"], p["time"] if ts is None else ts, p["seq"] if seq is None else seq, v or vals(p))

    for kind in KINDS:
        for _ in range(per_kind_influx):
            p = rng.choice(points)
            o = rng.choice([x for x in points if x["device"] == p["device"] and x["time"] != p["time"]])
            undo: list[str] = []
            ts = 0
            if kind == "edited":
                v = vals(p)
                q = rng.choice(list(v))
                v[q] = v[q] + 0.5
                write([line(p, v)])
                undo, touched = [line(p)], {p["seq"]}
            elif kind == "deleted":
                drop(p["device"], p["time"])
                undo, touched = [line(p)], {p["seq"]}
            elif kind == "inserted":
                ts = p["time"] + 7_000
                write([line(p, {k: x + 1 for k, x in vals(p).items()}, ts=ts, seq=last + 5)])
                touched = {last + 5}
            elif kind == "reordered":
                write([line(p, vals(o)), line(o, vals(p))])
                undo, touched = [line(p), line(o)], {p["seq"], o["seq"]}
            else:
                ts = p["time"] + 11_000
                write([line(o, ts=ts)])
                touched = {o["seq"]}
            r = verify([state], trust, influx_url=url, database=db)
            score(kind, {(f.kind, f.seq) for f in r.findings if f.where == "influxdb"}, touched, "influxdb")
            if kind in ("inserted", "replayed"):
                drop(p["device"] if kind == "inserted" else o["device"], ts)
            if undo:
                write(undo)
            false_pos += len(verify([state], trust, influx_url=url, database=db).findings)  # undone: clean again
    return {"scenario": "tamper", "batches": last, "trials": trials, "undetected_tamper": undetected,
            "mislocated": mislocated, "false_positives": false_pos, "trials_by_kind": by_kind, "examples": examples[:5]}
