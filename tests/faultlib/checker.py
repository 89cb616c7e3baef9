"""Ground-truth checker: what the gateways committed (their ledgers) against what InfluxDB holds.

Counts, in the style of Jepsen's ``total-queue`` checker [J5] (see ``docs/reliability.md``):

- ``lost``: readings a gateway committed that are neither in InfluxDB nor dead-lettered with a reason;
- ``unexpected``: readings in InfluxDB that no gateway committed;
- ``conflicting``: readings whose stored value differs from the committed one;
- ``duplicate_deliveries``: batches the collectors received more than once (archive records minus batches);
- ``uncommitted``: cycles a gateway polled but a crash kept from committing, and how many of them a ``gap``
  record accounts for (``uncommitted_unexplained`` must be 0);
- ``gaps``: ``gap`` records written by gateways, ``seq_gaps`` holes the collector recorded;
- ``dlq_by_reason``: dead-letter records per reason.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from carbonedge import wire
from carbonedge.integrity import read_archive
from carbonedge.influx import InfluxClient, quote_literal
from carbonedge.verify import VerifyReport, _expected_points, read_deadletters, read_influx_points


def read_ledger(path: Path) -> tuple[dict[int, wire.Batch], list[wire.Batch]]:
    """``(seq -> the batch last written for it, superseded entries)`` from ``<path>.<start ns>`` files in start order;
    a torn last line (SIGKILL) is ignored."""
    final: dict[int, wire.Batch] = {}
    superseded: list[wire.Batch] = []
    lines = [ln for f in sorted(path.parent.glob(path.name + ".*")) for ln in f.read_bytes().splitlines()]
    for line in lines:
        try:
            b = wire.Batch.model_validate_json(line)
        except ValueError:
            continue
        old = final.get(b.seq)
        if old is not None and old.boot_id != b.boot_id:
            superseded.append(old)
        final[b.seq] = b
    return final, superseded


def check(ledgers: dict[tuple[str, str], Path], influx_url: str, database: str, state_dirs: list[Path],
          committed_upto: dict[tuple[str, str], int] | None = None) -> dict[str, Any]:
    """Compare ledgers with InfluxDB. ``committed_upto`` caps each gateway at its outbox's last committed seq
    (ledger entries beyond it were written but never committed: the crash came before the commit)."""
    truth: dict[tuple[str, str], dict[int, wire.Batch]] = {}
    uncommitted = explained = 0
    for key, path in ledgers.items():
        final, superseded = read_ledger(path)
        cap = (committed_upto or {}).get(key)
        if cap is not None:
            for s in [s for s in final if s > cap]:
                superseded.append(final.pop(s))
        truth[key] = final
        gaps = [e for b in final.values() for e in b.events if e.kind == "gap"]
        for b in superseded:
            uncommitted += 1
            # A gap record covers the cycle if it names its boot, or if the cycle lies in the time span it reports.
            if any((e.detail.get("previous_boot_id") == b.boot_id and int(e.detail.get("last_committed_seq") or 0) < b.seq)
                   or int(e.detail.get("from_ms") or 0) <= b.created <= int(e.detail.get("to_ms") or 0) for e in gaps):
                explained += 1
    dlq = {}
    dlq_reasons: Counter[str] = Counter()
    for d in state_dirs:
        dlq.update(read_deadletters(d / "deadletter.jsonl"))
        p = d / "deadletter.jsonl"
        if p.exists():
            for line in p.read_text().splitlines():
                try:
                    dlq_reasons[json.loads(line).get("reason", "?")] += 1
                except ValueError:
                    dlq_reasons["unreadable"] += 1
    exp = _expected_points(truth, dlq, VerifyReport(), None, None)
    sites = sorted({s for s, _ in ledgers})
    got = read_influx_points(influx_url, database, sites, None, None)
    got = {k: v for k, v in got.items() if (k[0], k[1]) in ledgers}
    lost = unexpected = conflicting = 0
    lost_points = []
    for k, (_seq, vals) in exp.items():
        g = got.get(k)
        if g is None:
            lost += max(1, len(vals))
            lost_points.append(k)
        elif g[1] != vals:
            conflicting += sum(1 for q in set(vals) | set(g[1]) if vals.get(q) != g[1].get(q))
    for k, (_seq, vals) in got.items():
        if k not in exp:
            unexpected += max(1, len(vals))
    records = batches = 0
    for d in state_dirs:
        seen: set[tuple[str, str, int | None]] = set()
        for r in read_archive(d / "archive"):
            records += 1
            seen.add((r.site, r.gateway, r.seq))
        batches += len(seen)
    gap_events = seq_gaps = 0
    for site in sites:
        for series in InfluxClient(influx_url, database).query(f'SELECT count(detail) FROM "events" WHERE "site" = {quote_literal(site)} GROUP BY "kind"'):
            n = int(series["values"][0][1])
            kind = series.get("tags", {}).get("kind")
            if kind == "gap":
                gap_events += n
            elif kind == "seq_gap":
                seq_gaps += n
    return {
        "lost": lost, "unexpected": unexpected, "conflicting": conflicting,
        "duplicate_deliveries": records - batches,
        "committed_batches": sum(len(t) for t in truth.values()),
        "committed_readings": sum(len(v[1]) for v in exp.values()),
        "stored_readings": sum(len(v[1]) for v in got.values()),
        "uncommitted": uncommitted, "uncommitted_unexplained": uncommitted - explained,
        "gaps": gap_events, "seq_gaps": seq_gaps, "dlq_by_reason": dict(dlq_reasons),
        "lost_examples": [list(k) for k in lost_points[:5]],
    }
