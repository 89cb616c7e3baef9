"""Score the optimisation hints against the simulators' fault scenarios (ground-truth waste) and clean twins.

For each scenario (default: steel-week-faults, battery-week-faults and battery-week-faults-racks,
the battery week with one meter per formation rack) the offline generator writes
the faulty week and the same week without faults. The hints run on both, with the process models
calibrated on the known-good stretch before the first process fault (at least 24 h), as an energy
engineer would choose a baseline period. A waste fault counts as found when a hint of the matching
kind on the right process estimates its waste within 20 % of the simulator's ``waste_kwh``.

    .venv/bin/python bench/hints_eval.py [--cache DIR] [SCENARIO ...]

Last line: ``faults_found=<n>/<m> within_20pct=<k>/<m> false_waste_hints_clean=<c>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from analytics.carbon import FactorLibrary, default_settings, from_csv_dir
from analytics.twin import FAULT_TO_HINT, analyse
from carbonedge.clock import iso, parse_time
from simulators import generate, load_scenario

WASTE_KINDS = set(FAULT_TO_HINT.values()) | {"process_excess_energy"}


def _generate(name: str, out: Path, clean: bool) -> Path:
    if (out / "labels.jsonl").exists() and (out / "truth.json").exists():
        return out
    sc = load_scenario(name)
    if clean:
        sc = dataclasses.replace(sc, faults=[], name=sc.name + "-clean")
    t0 = time.monotonic()
    print(f"  generating {sc.name} into {out} ...", flush=True)
    generate(sc, out, progress=lambda f: print(f"    {100 * f:5.1f} %", end="\r", flush=True))
    print(f"    done in {time.monotonic() - t0:.0f} s      ", flush=True)
    return out


def _hints(d: Path, baseline_end: float | None):  # type: ignore[no-untyped-def]
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    grid = FactorLibrary.load().get(s.carbon.grid_factor)
    base = (data.start, baseline_end) if baseline_end else None
    return analyse(data, s, grid, baseline=base), data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", default=["steel-week-faults", "battery-week-faults", "battery-week-faults-racks"])
    ap.add_argument("--cache", default="bench/.cache/hints", help="where generated scenario data is kept between runs")
    a = ap.parse_args()
    cache = Path(a.cache)
    found = within = total = false_clean = 0
    rows = []
    for name in a.scenarios:
        print(f"{name}:", flush=True)
        faulty = _generate(name, cache / name, clean=False)
        clean = _generate(name, cache / f"{name}-clean", clean=True)
        labels = [json.loads(x) for x in (faulty / "labels.jsonl").read_text().splitlines()]
        waste_labels = [x for x in labels if x.get("waste_kwh") is not None]
        start = parse_time(json.loads((faulty / "truth.json").read_text())["start"])
        first = min(parse_time(x["start"]) for x in waste_labels) if waste_labels else None
        base_end = first if first and first - start >= 86400 else None
        res, data = _hints(faulty, base_end)
        res_clean, _ = _hints(clean, base_end)
        for lab in waste_labels:
            total += 1
            want = FAULT_TO_HINT[lab["kind"]]
            match = [h for h in res.hints if h.kind == want and h.process == lab["process"]]
            est = match[0].waste_kwh if match else None
            err = 100 * (est - lab["waste_kwh"]) / lab["waste_kwh"] if est is not None and lab["waste_kwh"] else None
            found += bool(match)
            within += err is not None and abs(err) <= 20
            share = 100 * lab["waste_kwh"] / max(sum(o.energy_kwh.sum() for o in res.observations.values()), 1)
            rows.append((name, lab["id"], lab["kind"], lab["process"], lab["waste_kwh"], est, err, share))
        fc = [h for h in res_clean.hints if h.kind in WASTE_KINDS]
        false_clean += len(fc)
        print(f"  baseline {iso(res.baseline[0])} .. {iso(res.baseline[1])}; clean-week waste hints: "
              + (", ".join(f"{h.kind}({h.process}, {h.waste_kwh:,.0f} kWh)" for h in fc) or "none"))
        extra = [h for h in res.hints if h.kind in WASTE_KINDS and not any(
            FAULT_TO_HINT.get(x["kind"]) == h.kind and x["process"] == h.process for x in waste_labels)]
        if extra:
            print("  unmatched waste hints on the faulty week: " + ", ".join(f"{h.kind}({h.process})" for h in extra))
    print(f"{'scenario':26} {'fault':14} {'kind':34} {'process':16} {'true kWh':>10} {'hint kWh':>10} {'error':>8} {'% of plant':>10}")
    for r in rows:
        est = f"{r[5]:,.0f}" if r[5] is not None else "missed"
        err = f"{r[6]:+.1f} %" if r[6] is not None else "—"
        print(f"{r[0]:26} {r[1]:14} {r[2]:34} {r[3]:16} {r[4]:>10,.0f} {est:>10} {err:>8} {r[7]:>9.3f}%")
    print(f"faults_found={found}/{total} within_20pct={within}/{total} false_waste_hints_clean={false_clean}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
