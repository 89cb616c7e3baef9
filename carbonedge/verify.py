"""``carbonedge verify``: prove, batch by batch, that the archive and InfluxDB hold what the gateways signed.

Inputs: a collector's state directory (its ``archive/`` of raw signed batches, its
``deadletter.jsonl`` and ``watermarks.json``), the trust file of gateway public keys, and
optionally the InfluxDB database the collector writes.

What is reported, each finding located to ``site/gateway`` and ``seq`` (and device and
timestamp for InfluxDB points):

- ``edited``    the archived batch, or an InfluxDB point, differs from what the gateway signed;
- ``deleted``   a batch is missing from the archive (a hole in the seq/hash chain, or the
  collector's watermark is ahead of the archive), or a signed reading is missing in InfluxDB;
- ``inserted``  a batch no trusted key signed (unsigned, unknown key, bad signature, key not
  valid at that time), or an InfluxDB point no archived batch accounts for;
- ``reordered`` two signed batches (or points) exchanged places;
- ``replayed``  a signed batch (or point) presented again at another seq or time;
- ``forked``    two different batches validly signed for the same seq (the gateway's state was
  restored from a backup, or its key is used elsewhere: investigate the device).

Benign facts are listed as notices, not findings: identical redeliveries (QoS 1), declared
chain restarts, points the collector dead-lettered on purpose (conflicts, unknown devices).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from carbonedge import quantities, wire
from carbonedge.influx import InfluxClient, quote_literal
from carbonedge.integrity import GENESIS, TrustStore, check_batch, read_archive

TAMPER_KINDS = ("edited", "deleted", "inserted", "reordered", "replayed", "forked")


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str  # "archive" or "influxdb"
    site: str
    gateway: str
    seq: int | None
    detail: str
    device: str | None = None
    ts: int | None = None


@dataclass
class GatewaySummary:
    batches: int = 0  # distinct genuine batches
    records: int = 0  # archive lines
    first_seq: int | None = None
    last_seq: int | None = None
    duplicate_deliveries: int = 0
    chain_restarts: int = 0
    points_checked: int = 0


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    gateways: dict[str, GatewaySummary] = field(default_factory=dict)
    influx_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.findings

    def counts(self) -> dict[str, int]:
        c = Counter(f.kind for f in self.findings)
        return {k: c.get(k, 0) for k in TAMPER_KINDS}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts(), "influx_checked": self.influx_checked,
                "gateways": {k: asdict(v) for k, v in sorted(self.gateways.items())},
                "findings": [asdict(f) for f in self.findings], "notices": self.notices}


# ---------------------------------------------------------------------------- archive
@dataclass
class _Rec:
    batch: wire.Batch
    status: str
    line: str  # where in the archive, for the message


def _is_tombstone(b: wire.Batch) -> bool:
    return not b.devices and bool(b.events) and all(e.kind == "overflow" for e in b.events)


def verify_archive(archive_dirs: list[Path], trust: TrustStore, report: VerifyReport, *, site: str | None = None,
                   start_ms: int | None = None, end_ms: int | None = None,
                   watermarks: dict[tuple[str, str], int] | None = None) -> dict[tuple[str, str], dict[int, wire.Batch]]:
    """Check every archived batch and each gateway's chain; return the genuine batches per gateway and seq."""
    per_gw: dict[tuple[str, str], list[_Rec]] = defaultdict(list)
    for root in archive_dirs:
        for r in read_archive(root):
            if site is not None and r.site != site:
                continue
            where = f"{r.path}:{r.line_no}"
            try:
                b = wire.Batch.model_validate_json(r.raw)
            except ValueError as exc:
                report.findings.append(Finding("edited", "archive", r.site, r.gateway, r.seq,
                                               f"{where}: the archived batch no longer parses ({str(exc).splitlines()[0]})"))
                continue
            if (b.site, b.gateway) != (r.site, r.gateway):
                report.findings.append(Finding("inserted", "archive", r.site, r.gateway, b.seq,
                                               f"{where}: a batch of {b.site}/{b.gateway} in the file of {r.site}/{r.gateway}"))
                continue
            if (start_ms is not None and b.created < start_ms) or (end_ms is not None and b.created >= end_ms):
                continue
            per_gw[(b.site, b.gateway)].append(_Rec(b, "", where))

    genuine_all: dict[tuple[str, str], dict[int, wire.Batch]] = {}
    for (s, g), recs in sorted(per_gw.items()):
        name = f"{s}/{g}"
        summ = report.gateways.setdefault(name, GatewaySummary())
        summ.records += len(recs)
        trusted = trust.for_gateway(s, g)
        if not trusted:
            report.notices.append(f"{name}: no trusted key in the trust file; its {len(recs)} archived batches cannot be "
                                  "verified (register the gateway's public key to check them)")
            continue
        genuine: dict[int, wire.Batch] = {}
        links: dict[int, str] = {}
        moved: list[tuple[int, int, str]] = []  # (signed seq, presented seq, where)
        seen_hash: dict[int, set[str]] = defaultdict(set)
        claimed: set[int] = set()
        for rec in recs:
            b = rec.batch
            chk = check_batch(b, trusted)
            claimed.add(b.seq)
            if chk.ok:
                assert b.integrity is not None and chk.link is not None
                if b.seq in genuine:
                    if b.integrity.hash in seen_hash[b.seq]:
                        summ.duplicate_deliveries += 1
                    else:
                        report.findings.append(Finding("forked", "archive", s, g, b.seq,
                                                       f"{rec.line}: a second, different batch validly signed for seq {b.seq}"))
                    seen_hash[b.seq].add(b.integrity.hash)
                    continue
                genuine[b.seq] = b
                links[b.seq] = chk.link
                seen_hash[b.seq].add(b.integrity.hash)
            elif chk.status == "unsigned" and _is_tombstone(b):
                report.notices.append(f"{name} seq {b.seq}: an unsigned overflow record (the gateway's outbox was full and "
                                      "discarded this poll cycle); its content cannot be verified")
                claimed.add(b.seq)
            elif chk.status == "seq_mismatch":
                assert b.integrity is not None
                moved.append((b.integrity.seq, b.seq, rec.line))
            elif chk.status == "hash_mismatch":
                report.findings.append(Finding("edited", "archive", s, g, b.seq,
                                               f"{rec.line}: content differs from what the gateway signed for seq {b.seq}"))
            else:
                why = {"unsigned": "is not signed", "unknown_key": "is signed by a key not registered for this gateway",
                       "bad_signature": "carries a signature that does not verify",
                       "key_not_valid": "is signed by a key that was not valid at its time"}[chk.status]
                report.findings.append(Finding("inserted", "archive", s, g, b.seq, f"{rec.line}: the batch {why}"))
        presented = {(a, p) for a, p, _ in moved}
        for a, p, where in moved:
            if (p, a) in presented:
                report.findings.append(Finding("reordered", "archive", s, g, p,
                                               f"{where}: the batch signed as seq {a} sits at seq {p}, and seq {p}'s at seq {a}"))
            else:
                report.findings.append(Finding("replayed", "archive", s, g, p,
                                               f"{where}: a copy of the batch signed as seq {a}, presented as seq {p}"))
        # The chain: every seq between the first and last held, each linked to its predecessor.
        if genuine:
            lo, hi = min(genuine), max(genuine)
            wm = (watermarks or {}).get((s, g), 0)
            if end_ms is None and wm > hi:
                hi_check = wm
            else:
                hi_check = hi
            first_prev = genuine[lo].integrity.prev if genuine[lo].integrity else GENESIS
            if start_ms is None and lo > 1 and first_prev != GENESIS:
                report.findings.append(Finding("deleted", "archive", s, g, lo - 1,
                                               f"the archive starts at seq {lo} but that batch chains to an earlier one; "
                                               f"seq 1-{lo - 1} are missing"))
            for q in range(lo, hi_check + 1):
                if q not in genuine:
                    if q not in claimed:
                        why = ("the collector's watermark says it was stored, but the archive does not hold it"
                               if q > hi else "a hole in the sequence")
                        report.findings.append(Finding("deleted", "archive", s, g, q, f"seq {q} is missing: {why}"))
                    continue
                integ = genuine[q].integrity
                assert integ is not None
                if q == lo:
                    continue
                if integ.prev == GENESIS:
                    summ.chain_restarts += 1
                    report.notices.append(f"{name} seq {q}: the gateway restarted its signature chain (its chain state "
                                          "did not match its outbox, e.g. restored from a backup)")
                elif q - 1 in links and integ.prev != links[q - 1]:
                    report.findings.append(Finding("forked", "archive", s, g, q,
                                                   f"seq {q} does not chain to the archived seq {q - 1} although both are validly signed"))
            summ.first_seq, summ.last_seq = lo, hi
        summ.batches = len(genuine)
        genuine_all[(s, g)] = genuine
    return genuine_all


# ---------------------------------------------------------------------------- dead-letter and watermarks
def read_deadletters(path: Path) -> dict[tuple[str, str, int, str], str]:
    """``(site, gateway, seq, device) -> reason`` for device readings the collector dead-lettered on purpose."""
    out: dict[tuple[str, str, int, str], str] = {}
    if not path.exists():
        return out
    with open(path) as f:
        for line in f:
            try:
                d = json.loads(line)
                site, gw, _ = wire.parse_topic(d["topic"])
                if "seq" in d and "device" in d:
                    out[(site, gw, int(d["seq"]), str(d["device"]))] = str(d.get("reason", "?"))
            except (ValueError, KeyError, TypeError):
                continue
    return out


def read_watermarks(path: Path) -> dict[tuple[str, str], int]:
    """The collector's durable per-gateway watermarks (best effort: the format belongs to the collector)."""
    out: dict[tuple[str, str], int] = {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return out
    items = doc.get("gateways", doc) if isinstance(doc, dict) else {}
    if not isinstance(items, dict):
        return out
    for k, v in items.items():
        site, _, gw = str(k).partition("/")
        wm = v.get("watermark") if isinstance(v, dict) else v
        if gw and isinstance(wm, int):
            out[(site, gw)] = wm
    return out


# ---------------------------------------------------------------------------- InfluxDB
_Key = tuple[str, str, str, int]  # site, gateway, device, ts


def _expected_points(genuine: dict[tuple[str, str], dict[int, wire.Batch]], dlq: dict[tuple[str, str, int, str], str],
                     report: VerifyReport, start_ms: int | None, end_ms: int | None) -> dict[_Key, tuple[int, dict[str, float]]]:
    exp: dict[_Key, tuple[int, dict[str, float]]] = {}
    for (s, g), batches in genuine.items():
        for seq in sorted(batches):
            b = batches[seq]
            for d in b.devices:
                if (start_ms is not None and d.ts < start_ms) or (end_ms is not None and d.ts >= end_ms):
                    continue
                reason = dlq.get((s, g, seq, d.device))
                if reason is not None:
                    report.notices.append(f"{s}/{g} seq {seq} {d.device}: dead-lettered by the collector ({reason}), not expected in InfluxDB")
                    continue
                vals = {q: float(v.v) for q, v in d.values.items() if v.v is not None}
                key = (s, g, d.device, d.ts)
                if key in exp and exp[key][1] != vals:
                    report.notices.append(f"{s}/{g} seq {seq} {d.device} at {d.ts}: same device and time as seq {exp[key][0]} with "
                                          "other values (clock stepped back); the earlier values are the stored ones")
                    continue
                exp.setdefault(key, (seq, vals))
    return exp


def read_influx_points(url: str, db: str, sites: list[str], start_ms: int | None, end_ms: int | None,
                       auth: tuple[str, str] | None = None) -> dict[_Key, tuple[int | None, dict[str, float]]]:
    """Every ``readings`` point of ``sites`` in the period: key -> (seq field, quantity fields)."""
    known = set(quantities.QUANTITIES)
    out: dict[_Key, tuple[int | None, dict[str, float]]] = {}
    client = InfluxClient(url, db, username=auth[0] if auth else None, password=auth[1] if auth else None, timeout_s=120.0)
    for site in sites:
        where = [f'"site" = {quote_literal(site)}']
        if start_ms is not None:
            where.append(f"time >= {start_ms}ms")
        if end_ms is not None:
            where.append(f"time < {end_ms}ms")
        for series in client.query(f'SELECT * FROM "readings" WHERE {" AND ".join(where)}'):
            cols = series["columns"]
            for row in series["values"]:
                rec = dict(zip(cols, row, strict=False))
                vals = {k: float(v) for k, v in rec.items() if k in known and v is not None}
                seq = rec.get("seq")
                out[(str(rec.get("site")), str(rec.get("gateway")), str(rec.get("device")), int(rec["time"]))] = (
                    int(seq) if seq is not None else None, vals)
    return out


def verify_influx(genuine: dict[tuple[str, str], dict[int, wire.Batch]], dlq: dict[tuple[str, str, int, str], str],
                  url: str, db: str, report: VerifyReport, *, site: str | None = None, start_ms: int | None = None,
                  end_ms: int | None = None, auth: tuple[str, str] | None = None) -> None:
    """Compare every stored ``readings`` point with the signed batches it came from."""
    exp = _expected_points(genuine, dlq, report, start_ms, end_ms)
    sites = sorted({s for s, _ in genuine} | ({site} if site else set()))
    got = read_influx_points(url, db, sites, start_ms, end_ms, auth)
    report.influx_checked = True
    # Values -> keys, to recognise a point that carries another point's values.
    by_vals: dict[tuple[str, str, str, str], list[_Key]] = defaultdict(list)
    for k, (_seq, vals) in exp.items():
        by_vals[(k[0], k[1], k[2], json.dumps(vals, sort_keys=True))].append(k)

    def other_with(k: _Key, vals: dict[str, float]) -> _Key | None:
        for o in by_vals.get((k[0], k[1], k[2], json.dumps(vals, sort_keys=True)), []):
            if o != k:
                return o
        return None

    edited: dict[_Key, _Key | None] = {}
    for k, (seq, vals) in got.items():
        s, g, dev, ts = k
        if (s, g) not in genuine:
            if f"{s}/{g}" not in report.gateways:  # archived but unverifiable gateways were noted already
                report.findings.append(Finding("inserted", "influxdb", s, g, seq, f"a point of {s}/{g}, a gateway with no archived batch",
                                               dev, ts))
            continue
        report.gateways[f"{s}/{g}"].points_checked += 1
        e = exp.get(k)
        if e is None:
            o = other_with(k, vals)
            if o is not None:
                report.findings.append(Finding("replayed", "influxdb", s, g, seq,
                                               f"{dev} at {ts}: a copy of the values signed in seq {exp[o][0]} at {o[3]}", dev, ts))
            else:
                report.findings.append(Finding("inserted", "influxdb", s, g, seq,
                                               f"{dev} at {ts}: no signed batch holds this point", dev, ts))
            continue
        if e[1] != vals or e[0] != seq:
            edited[k] = other_with(k, vals)
    for k, o in edited.items():
        s, g, dev, ts = k
        e = exp[k]
        if o is not None and o in edited and edited[o] == k:
            report.findings.append(Finding("reordered", "influxdb", s, g, e[0],
                                           f"{dev} at {ts} holds the values signed for {o[3]} (seq {exp[o][0]}), and the other way round",
                                           dev, ts))
        elif o is not None:
            report.findings.append(Finding("replayed", "influxdb", s, g, e[0],
                                           f"{dev} at {ts} holds a copy of the values signed for {o[3]} (seq {exp[o][0]})", dev, ts))
        else:
            diff = sorted(q for q in set(e[1]) | set(got[k][1]) if e[1].get(q) != got[k][1].get(q))
            what = ", ".join(f"{q}: signed {e[1].get(q)!r}, stored {got[k][1].get(q)!r}" for q in diff[:4]) or \
                f"seq field {got[k][0]} instead of {e[0]}"
            report.findings.append(Finding("edited", "influxdb", s, g, e[0], f"{dev} at {ts}: {what}", dev, ts))
    for k, (seq, _vals) in exp.items():
        if k not in got:
            s, g, dev, ts = k
            report.findings.append(Finding("deleted", "influxdb", s, g, seq, f"{dev} at {ts}: the signed reading is not in InfluxDB", dev, ts))


# ---------------------------------------------------------------------------- entry point
def verify(state_dirs: list[Path], trust: TrustStore, *, influx_url: str | None = None, database: str | None = None,
           site: str | None = None, start_ms: int | None = None, end_ms: int | None = None,
           auth: tuple[str, str] | None = None) -> VerifyReport:
    """Verify collector state directories (archive, dead-letter, watermarks) and optionally InfluxDB."""
    report = VerifyReport()
    archives = [Path(d) / "archive" for d in state_dirs]
    missing = [str(a) for a in archives if not a.is_dir()]
    if missing:
        report.notices.append(f"no archive in {', '.join(missing)} (was the collector run with this state directory?)")
    wms: dict[tuple[str, str], int] = {}
    dlq: dict[tuple[str, str, int, str], str] = {}
    for d in state_dirs:
        for k, v in read_watermarks(Path(d) / "watermarks.json").items():
            wms[k] = max(wms.get(k, 0), v)
        dlq.update(read_deadletters(Path(d) / "deadletter.jsonl"))
        spool = Path(d) / "spool"
        if spool.is_dir() and any(spool.iterdir()):
            report.notices.append(f"{spool} still holds data waiting for InfluxDB: points in it will show as deleted until it drains")
    genuine = verify_archive([a for a in archives if a.is_dir()], trust, report, site=site, start_ms=start_ms,
                             end_ms=end_ms, watermarks=wms)
    if influx_url and database:
        verify_influx(genuine, dlq, influx_url, database, report, site=site, start_ms=start_ms, end_ms=end_ms, auth=auth)
    report.findings.sort(key=lambda f: (f.site, f.gateway, f.seq or 0, f.where, f.device or "", f.ts or 0))
    return report


def format_report(r: VerifyReport, max_lines: int = 200) -> str:
    """Plain-text report for a plant engineer or an auditor."""
    lines = []
    for name, g in sorted(r.gateways.items()):
        rng = f"seq {g.first_seq}-{g.last_seq}" if g.first_seq is not None else "nothing verifiable"
        lines.append(f"{name}: {g.batches} signed batches ({rng}), {g.records} archive records, "
                     f"{g.duplicate_deliveries} identical redeliveries, {g.points_checked} InfluxDB points checked")
    if not r.influx_checked:
        lines.append("InfluxDB not checked (give --influx-url and --database to compare the stored points)")
    if r.ok:
        lines.append("OK: every archived batch is signed by its gateway and chained without a hole"
                     + (", and InfluxDB holds exactly the signed readings" if r.influx_checked else ""))
    else:
        c = r.counts()
        lines.append("TAMPERING OR LOSS FOUND: " + ", ".join(f"{n} {k}" for k, n in c.items() if n))
        for f in r.findings[:max_lines]:
            loc = f"{f.site}/{f.gateway} seq {f.seq if f.seq is not None else '?'}"
            lines.append(f"  {f.kind:9s} {f.where:8s} {loc}: {f.detail}")
        if len(r.findings) > max_lines:
            lines.append(f"  … and {len(r.findings) - max_lines} more (use --json for all)")
    if r.notices:
        lines.append(f"notes ({len(r.notices)}):")
        lines.extend(f"  {n}" for n in r.notices[:50])
        if len(r.notices) > 50:
            lines.append(f"  … and {len(r.notices) - 50} more")
    return "\n".join(lines)
