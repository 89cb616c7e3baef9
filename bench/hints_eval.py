"""Score the optimisation hints against the simulators' fault scenarios (ground-truth waste) and clean twins.

For each scenario (default: steel-week-faults, battery-week-faults and battery-week-faults-racks,
the battery week with one meter per formation rack) and each of its held-out seeds
(``bench/_sim_eval.py``: ``HELD_OUT_SEEDS``; ``--split choosing`` runs the seeds the hints were
tuned on, in-sample), the offline generator writes the faulty week and the same week without
faults. The hints run on both, with the process models calibrated on the protocol's learning
period: the first ``LEARN_HOURS`` (24 h, Monday) of the week, the same for every scenario and
seed, never a time taken from the labels. A waste fault counts as found when a hint of the
matching kind on the right process estimates its waste within 20 % of the simulator's
``waste_kwh``.

Targets: every waste fault that is not below meter accuracy (``bench/_sim_eval.py``, decided from
the fault's size against the accuracy class of the meter that sees it) sized within 20 %, and no
false waste hint: none on any clean week, and none on a faulty week that answers no fault (a
waste hint of a kind or on a process that no labelled fault explains). Figures are printed per hint
family. Exit status: 0 met on the held-out seeds; 1 below target (whatever the split); 3 met on
the choosing seeds (in-sample, not a benchmark result).

    .venv/bin/python bench/hints_eval.py [--cache DIR] [--split held-out|choosing] [--seeds N,N] [SCENARIO ...]

Last line: ``faults_found=<n>/<m> within_20pct=<k>/<m> false_waste_hints_clean=<c>
false_waste_hints_faulty=<f> within_20pct_above_accuracy=<k'>/<m'> split=<split>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from carbonedge.analytics.carbon import FactorLibrary, default_settings, from_csv_dir  # noqa: E402
from carbonedge.analytics.twin import FAULT_TO_HINT, analyse  # noqa: E402
from bench._sim_eval import LEARN_HOURS, SPLITS, fault_size, prepare, read_labels  # noqa: E402
from carbonedge.clock import iso, parse_time  # noqa: E402

WASTE_KINDS = set(FAULT_TO_HINT.values()) | {"process_excess_energy"}


def _hints(d: Path, baseline_end: float | None):  # type: ignore[no-untyped-def]
    data = from_csv_dir(d)
    s = default_settings(data.plant)
    grid = FactorLibrary.load().get(s.carbon.grid_factor)
    base = (data.start, baseline_end) if baseline_end else None
    return analyse(data, s, grid, baseline=base), data


@dataclass
class Row:
    """One labelled waste fault and the hint that answers it (or not)."""

    scenario: str
    seed: int
    fault: str
    kind: str
    process: str
    true_kwh: float
    hint_kwh: float | None
    share_pct: float
    below_accuracy: str = ""  # why the fault is below meter accuracy ("" when it is not)

    @property
    def family(self) -> str:
        return FAULT_TO_HINT[self.kind]

    @property
    def error_pct(self) -> float | None:
        if self.hint_kwh is None or not self.true_kwh:
            return None
        return 100.0 * (self.hint_kwh - self.true_kwh) / self.true_kwh

    @property
    def within(self) -> bool:
        e = self.error_pct
        return e is not None and abs(e) <= TOLERANCE_PCT


@dataclass
class FalseHint:
    scenario: str
    seed: int
    week: str  # clean | faulty
    kind: str
    process: str | None
    kwh: float


TOLERANCE_PCT = 20.0


def verdict(rows: list[Row], false: list[FalseHint], split: str) -> tuple[bool, int]:
    """(target met, exit status): every fault above meter accuracy within 20 % and no false waste hint.

    Exit 0 only when met on the held-out seeds; 1 below target on any split; 3 met in-sample.
    """
    counted = [r for r in rows if not r.below_accuracy]
    met = bool(counted) and all(r.within for r in counted) and not false
    if not met:
        return False, 1
    return True, (3 if split == "choosing" else 0)


def family_table(rows: list[Row], false: list[FalseHint]) -> list[str]:
    """Per hint family: faults counted, within 20 %, missed, errors, and false hints of that kind."""
    fams = sorted({r.family for r in rows} | {f.kind for f in false})
    out = [f"{'hint family':24} {'faults':>6} {'within 20%':>10} {'missed':>6} {'median |err|':>12} {'worst err':>10} "
           f"{'false (clean/faulty)':>20}  below meter accuracy"]
    for fam in fams:
        rs = [r for r in rows if r.family == fam]
        c = [r for r in rs if not r.below_accuracy]
        errs = [r.error_pct for r in c if r.error_pct is not None]
        fc = sum(1 for f in false if f.kind == fam and f.week == "clean")
        ff = sum(1 for f in false if f.kind == fam and f.week == "faulty")
        worst = max(errs, key=abs) if errs else None
        out.append(f"{fam:24} {len(c):>6} {sum(r.within for r in c):>10} {sum(r.hint_kwh is None for r in c):>6} "
                   f"{(f'{statistics.median(abs(e) for e in errs):.1f} %') if errs else '—':>12} "
                   f"{(f'{worst:+.1f} %') if worst is not None else '—':>10} {f'{fc}/{ff}':>20}  "
                   f"{len(rs) - len(c) or ''}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", default=["steel-week-faults", "battery-week-faults", "battery-week-faults-racks"])
    ap.add_argument("--cache", default="bench/.cache/sim", help="where generated scenario data is kept between runs "
                    "(the same layout as bench/anomaly_eval.py --keep, so the two share weeks)")
    ap.add_argument("--split", choices=sorted(SPLITS), default="held-out",
                    help="held-out seeds (the benchmark) or choosing (the seeds the hints were tuned on; in-sample)")
    ap.add_argument("--seeds", help="comma-separated seeds to run for every scenario named instead of the split's "
                    "(e.g. fresh seeds never used for choosing; reported as split=seeds:<list>)")
    a = ap.parse_args()
    cache = Path(a.cache)
    in_sample = a.split == "choosing"
    seeds_of = {n: SPLITS[a.split][n] for n in a.scenarios}
    if a.seeds:
        try:
            chosen = tuple(int(x) for x in a.seeds.split(","))
        except ValueError:
            ap.error(f"--seeds {a.seeds!r}: give whole numbers separated by commas")
        # A seed the method was chosen on stays in-sample whatever the option says.
        in_sample = any(x in SPLITS["choosing"].get(n, ()) for n in a.scenarios for x in chosen)
        seeds_of = {n: chosen for n in a.scenarios}
        a.split = f"seeds:{','.join(map(str, chosen))}"
    if in_sample:
        print("IN-SAMPLE: these are the seeds the hints were tuned on; the figures below are not benchmark results.")
    rows: list[Row] = []
    false: list[FalseHint] = []
    t_start, cpu_start = time.perf_counter(), time.process_time()
    for name in a.scenarios:
        for seed in seeds_of[name]:
            print(f"{name} seed {seed}{' [IN-SAMPLE]' if in_sample else ''}:", flush=True)
            sc, faulty, _ = prepare(name, seed, cache)
            _, clean, _ = prepare(name, seed, cache, clean=True)
            labels = read_labels(faulty)
            waste_labels = [x for x in labels if x.get("waste_kwh") is not None]
            # The scenario's own start (truth.json), not a label: calibration ends LEARN_HOURS after it.
            start = parse_time(json.loads((faulty / "truth.json").read_text())["start"])
            base_end = start + LEARN_HOURS * 3600.0  # fixed by the protocol, the same for every week
            early = [x["id"] for x in waste_labels if parse_time(x["start"]) < base_end]
            if early:
                print(f"  faults starting inside the calibration period ({', '.join(early)}): the scenario breaks the protocol")
            res, data = _hints(faulty, base_end)
            res_clean, _ = _hints(clean, base_end)
            for lab in waste_labels:
                want = FAULT_TO_HINT[lab["kind"]]
                match = [h for h in res.hints if h.kind == want and h.process == lab["process"]]
                size = fault_size(lab, faulty, sc)
                below = bool(size and size.below_accuracy)
                share = 100 * lab["waste_kwh"] / max(sum(o.energy_kwh.sum() for o in res.observations.values()), 1)
                rows.append(Row(name, seed, lab["id"], lab["kind"], lab["process"], float(lab["waste_kwh"]),
                                match[0].waste_kwh if match else None, share,
                                f"below meter accuracy: {size.describe()}" if below and size else ""))
            fc = [h for h in res_clean.hints if h.kind in WASTE_KINDS]
            false += [FalseHint(name, seed, "clean", h.kind, h.process, h.waste_kwh or 0.0) for h in fc]
            print(f"  baseline {iso(res.baseline[0])} .. {iso(res.baseline[1])}; clean-week waste hints: "
                  + (", ".join(f"{h.kind}({h.process}, {h.waste_kwh:,.0f} kWh)" for h in fc) or "none"))
            extra = [h for h in res.hints if h.kind in WASTE_KINDS and not any(
                FAULT_TO_HINT.get(x["kind"]) == h.kind and x["process"] == h.process for x in waste_labels)]
            false += [FalseHint(name, seed, "faulty", h.kind, h.process, h.waste_kwh or 0.0) for h in extra]
            if extra:
                print("  waste hints on the faulty week that answer no fault: "
                      + ", ".join(f"{h.kind}({h.process}, {h.waste_kwh:,.0f} kWh)" for h in extra))
            for n in res.notes[1:] + [f"clean week: {n}" for n in res_clean.notes[1:]]:
                if "no hint" in n:
                    print(f"  refused: {n}")
    print(f"{'scenario':26} {'fault':14} {'kind':34} {'process':16} {'true kWh':>10} {'hint kWh':>10} {'error':>8} {'% of plant':>10} seed")
    for r in rows:
        est = f"{r.hint_kwh:,.0f}" if r.hint_kwh is not None else "missed"
        err = f"{r.error_pct:+.1f} %" if r.error_pct is not None else "—"
        print(f"{r.scenario:26} {r.fault:14} {r.kind:34} {r.process:16} {r.true_kwh:>10,.0f} {est:>10} {err:>8} {r.share_pct:>9.3f}% "
              f"{r.seed} {r.below_accuracy}".rstrip())
    print()
    for line in family_table(rows, false):
        print(line)
    met, status = verdict(rows, false, "choosing" if in_sample else a.split)
    counted = [r for r in rows if not r.below_accuracy]
    n_clean = sum(f.week == "clean" for f in false)
    n_faulty = len(false) - n_clean
    print(f"\nwall {time.perf_counter() - t_start:.0f} s, CPU {time.process_time() - cpu_start:.0f} s (this process; "
          f"generation of missing weeks included); load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"target ({a.split} seeds): every waste fault above meter accuracy within 20 % ({sum(r.within for r in counted)}/{len(counted)}) "
          f"and no false waste hint ({n_clean} on clean weeks, {n_faulty} on faulty weeks): {'met' if met else 'NOT MET'}"
          + (" — in-sample, not a benchmark result" if in_sample else ""))
    print(f"faults_found={sum(r.hint_kwh is not None for r in rows)}/{len(rows)} within_20pct={sum(r.within for r in rows)}/{len(rows)} "
          f"false_waste_hints_clean={n_clean} false_waste_hints_faulty={n_faulty} "
          f"within_20pct_above_accuracy={sum(r.within for r in counted)}/{len(counted)} split={a.split}")
    return status


if __name__ == "__main__":
    sys.exit(main())
