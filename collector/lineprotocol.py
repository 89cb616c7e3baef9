"""Batch -> InfluxDB line protocol (measurement ``readings``, one point per device per poll cycle).

Tags: ``site``, ``gateway``, ``device`` and the device's own tags (``area``, ``process``, …),
all already restricted by the wire contract to characters that need no escaping.
Fields: one float per good or uncertain quantity (bad values carry no field; the point
gets ``bad_values`` and ``status`` instead, so a gap is visible), plus ``seq``.
Timestamps are milliseconds (write with ``precision=ms``).
"""

from __future__ import annotations

import json

from carbonedge import wire

MEASUREMENT = "readings"
EVENTS_MEASUREMENT = "events"


def _str_field(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def batch_lines(batch: wire.Batch) -> list[str]:
    lines: list[str] = []
    base = f"{MEASUREMENT},device="
    for d in batch.devices:
        tags = {"site": batch.site, "gateway": batch.gateway, **d.tags}
        tag_str = "".join(f",{k}={v}" for k, v in sorted(tags.items()))
        fields = [f"{q}={v.v!r}" for q, v in d.values.items() if v.v is not None]
        bad = sum(1 for v in d.values.values() if v.v is None)
        if bad:
            fields.append(f"bad_values={bad}i")
        if d.status != "ok":
            fields.append(f"status={_str_field(d.status)}")
        fields.append(f"seq={batch.seq}i")
        lines.append(f"{base}{d.device}{tag_str} {','.join(fields)} {d.ts}")
    for e in batch.events:
        tags = f",site={batch.site},gateway={batch.gateway},kind={e.kind}" + (f",device={e.device}" if e.device else "")
        lines.append(f"{EVENTS_MEASUREMENT}{tags} detail={_str_field(json.dumps(e.detail, sort_keys=True))},seq={batch.seq}i {e.ts}")
    return lines
