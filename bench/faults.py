"""Fault-injection and tamper benchmark: the scenario set of ``tests/faultlib/scenarios.py`` at full size.

Every scenario runs a signing gateway (simulated meters, virtual clock) and a collector as
real processes against real Mosquitto and InfluxDB on 127.0.0.1, injects its fault, drains,
and prints one JSON line: ``lost``, ``unexpected``, ``conflicting``, ``duplicate_deliveries``,
``gaps``, ``dlq_by_reason``, ``drain_s``, ``peak_rss_mb`` and the scenario's own figures.
Then the tamper trials (edited, deleted, inserted, reordered and replayed batches in the
collector's archive and in InfluxDB, plus false positives on the clean run) print theirs.

Last line: ``scenarios=… lost=… conflicting=… undetected_tamper=… false_positives=…``.

Usage: ``.venv/bin/python bench/faults.py [--scale 2] [--only NAME ...] [--tamper-trials 200] [--seed 8]``
(``--scale 1`` runs the shortened per-commit sizes; results are in ``docs/reliability.md``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from carbonedge.app.services import Services  # noqa: E402
from faultlib.scenarios import SCENARIOS, Env  # noqa: E402
from faultlib.tamper import KINDS, tamper_trials  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=2, help="1 = per-commit sizes, 2 = full sizes, more = longer")
    ap.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    ap.add_argument("--tamper-trials", type=int, default=200, help="archive trials per tampering kind (InfluxDB: a fifth of it)")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, ledgers, archives)")
    a = ap.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="carbonedge-faults-"))
    totals = {"scenarios": 0, "failed": 0, "lost": 0, "conflicting": 0, "unexpected": 0, "uncommitted_unexplained": 0}
    tamper: dict[str, int] = {"undetected_tamper": 0, "mislocated": 0, "false_positives": 0, "tamper_trials": 0}
    svc = Services(root / "services", database="faults").start()
    try:
        for name in a.only or list(SCENARIOS):
            t0 = time.monotonic()
            totals["scenarios"] += 1
            try:
                r = SCENARIOS[name](Env(svc, root, scale=a.scale, seed=a.seed))
            except Exception as e:  # a scenario that cannot finish is a failure, reported, not a crash of the bench
                totals["failed"] += 1
                print(json.dumps({"scenario": name, "error": f"{type(e).__name__}: {e}"[:2000],
                                  "trace": traceback.format_exc()[-1500:]}), flush=True)
                continue
            r["wall_s"] = round(time.monotonic() - t0, 1)
            for k in ("lost", "conflicting", "unexpected", "uncommitted_unexplained"):
                totals[k] += int(r[k])
            print(json.dumps(r), flush=True)
        if a.tamper_trials > 0 and not a.only:
            t0 = time.monotonic()
            r = tamper_trials(Env(svc, root, scale=a.scale, seed=a.seed), a.tamper_trials, max(1, a.tamper_trials // 5))
            r["wall_s"] = round(time.monotonic() - t0, 1)
            print(json.dumps(r), flush=True)
            tamper = {"undetected_tamper": r["undetected_tamper"], "mislocated": r["mislocated"],
                      "false_positives": r["false_positives"], "tamper_trials": r["trials"]}
    finally:
        svc.stop()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"# run directory kept: {root}", flush=True)
    print(f"scenarios={totals['scenarios']} failed={totals['failed']} lost={totals['lost']} conflicting={totals['conflicting']} "
          f"unexpected={totals['unexpected']} unexplained_gaps={totals['uncommitted_unexplained']} "
          f"undetected_tamper={tamper['undetected_tamper']} mislocated_tamper={tamper['mislocated']} "
          f"false_positives={tamper['false_positives']} tamper_trials={tamper['tamper_trials']} kinds={len(KINDS)}x2")
    bad = totals["failed"] or totals["lost"] or totals["conflicting"] or totals["uncommitted_unexplained"] or tamper["undetected_tamper"] \
        or tamper["false_positives"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
