"""Poll cycles from CSV files (the simulators' output, an export): what the monitor's benches and tests feed it."""

from __future__ import annotations

from typing import Any


def read_device_csvs(directory: Any, devices: list[str] | None = None) -> list[tuple[int, dict[str, dict[str, float]]]]:
    """Poll cycles from a directory of ``<device>.csv`` files (``ts`` + one column per quantity).

    Rows of all devices that share a timestamp form one cycle; cycles come in file order of the
    timestamps as the gateway stamped them (a clock that stepped back stays visible). Empty cells
    are missing values and are left out of the cycle.
    """
    import csv
    from pathlib import Path

    from carbonedge.clock import parse_time

    d = Path(directory)
    files = sorted(d.glob("*.csv"))
    if devices is not None:
        files = [f for f in files if f.stem in devices]
    else:
        files = [f for f in files if f.stem != "truth"]  # the simulators' ground truth is not a device
    per_device: dict[str, list[tuple[int, dict[str, float]]]] = {}
    for f in files:
        with f.open(newline="") as fh:
            r = csv.DictReader(fh)
            if not r.fieldnames or "ts" not in r.fieldnames:
                continue
            rows = []
            for rec in r:
                t = int(round(parse_time(rec.pop("ts")) * 1000))
                vals = {}
                for q, v in rec.items():
                    if v not in ("", None):
                        try:
                            vals[q] = float(v)
                        except ValueError:
                            continue
                rows.append((t, vals))
            per_device[f.stem] = rows
    # Align rows into cycles by position, not by timestamp alone: after a clock step backwards the
    # gateway's timestamps repeat earlier ones. The longest device list is the backbone; every other
    # device's rows are matched to the next backbone cycle with the same timestamp (a row the
    # backbone lacks is inserted where it falls).
    if not per_device:
        return []
    names = sorted(per_device, key=lambda k: -len(per_device[k]))
    backbone = [(t, {names[0]: vals}) for t, vals in per_device[names[0]]]
    for dev in names[1:]:
        i = 0
        for t, vals in per_device[dev]:
            k = i
            limit = min(len(backbone), i + 1000)
            while k < limit and backbone[k][0] != t:
                k += 1
            if k < limit:
                backbone[k][1][dev] = vals
                i = k + 1
            else:
                j = i
                while j < len(backbone) and backbone[j][0] < t:
                    j += 1
                backbone.insert(j, (t, {dev: vals}))
                i = j + 1
    return backbone
