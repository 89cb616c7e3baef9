"""Anomaly-detection quality: the SKAB benchmark, and the simulators' labelled fault scenarios.

SKAB (Skoltech Anomaly Benchmark, real pump testbed) is scored with its own published protocol
(``/work/shared/datasets/skab/SOURCE.md``): every file except ``anomaly-free.csv`` on its own,
the first 400 rows learn (unsupervised, no labels), the rest is the test part; binary per-row
predictions on the test parts are pooled over files into F1, FAR and MAR. Rows go through the
same code as ``carbonedge analyze detect`` (:func:`analytics.offline.detect_csv`).

Usage::

    .venv/bin/python bench/anomaly_eval.py --skab-only          # SKAB only
    .venv/bin/python bench/anomaly_eval.py --sim-only           # simulator fault weeks, held-out seeds only
    .venv/bin/python bench/anomaly_eval.py                      # both; last line = simulator figures

The simulator fault weeks are scored by ``bench/_sim_eval.py`` (its docstring gives the protocol:
held-out seeds, fixed learning period, one true positive per fault, per-family figures).
The last line is ``precision=… recall=… f1=… median_delay_min=…`` (simulator scenarios when they
run, SKAB otherwise). Exit status: non-zero when the simulator figures are below target or were
not measured on the held-out seeds (``bench/_sim_eval.py``).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics.detect import DetectorSettings  # noqa: E402
from analytics.offline import detect_csv  # noqa: E402
from bench import _sim_eval as sim_eval  # noqa: E402  (simulator fault weeks: held-out seeds, see its docstring)

SKAB_DIR = Path("/work/shared/datasets/skab/data")
SKAB_VALUES = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple", "Voltage", "Volume Flow RateRMS"]
SKAB_TRAIN_ROWS = 400


def _labels(path: Path) -> np.ndarray:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return np.array([float(r["anomaly"]) for r in csv.DictReader(f, delimiter=";")]) > 0.5


def skab(data_dir: Path, settings: DetectorSettings) -> dict[str, float]:
    """Score SKAB with its outlier-detection protocol; return pooled F1, FAR %, MAR %."""
    files = sorted(p for p in data_dir.glob("*/*.csv") if p.parent.name != "anomaly-free")
    if not files:
        raise SystemExit(f"no SKAB files under {data_dir}")
    tp = fp = fn = tn = 0
    for p in files:
        buf = io.StringIO()
        detect_csv(p, buf, time_col="datetime", value_cols=SKAB_VALUES, settings=settings)
        buf.seek(0)
        pred = np.array([r["alert"] == "1" for r in csv.DictReader(buf)])
        y = _labels(p)
        pred, y = pred[SKAB_TRAIN_ROWS:], y[SKAB_TRAIN_ROWS:]
        tp += int((pred & y).sum())
        fp += int((pred & ~y).sum())
        fn += int((~pred & y).sum())
        tn += int((~pred & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"files": len(files), "precision": precision, "recall": recall, "f1": f1,
            "far_pct": 100.0 * fp / (fp + tn) if fp + tn else 0.0, "mar_pct": 100.0 * fn / (fn + tp) if fn + tp else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skab-dir", type=Path, default=SKAB_DIR)
    ap.add_argument("--skab-only", action="store_true")
    ap.add_argument("--sim-only", action="store_true")
    sim_eval.add_arguments(ap)  # --split, --hours, --keep
    a = ap.parse_args()
    last = ""
    rc = 0
    if not a.sim_only:
        t0 = time.perf_counter()
        r = skab(a.skab_dir, DetectorSettings(learn_rows=SKAB_TRAIN_ROWS))
        print(f"SKAB outlier task, {r['files']} files, first {SKAB_TRAIN_ROWS} rows of each learn, rest tested "
              f"({time.perf_counter() - t0:.1f} s): F1={r['f1']:.3f} FAR={r['far_pct']:.2f}% MAR={r['mar_pct']:.2f}% "
              f"(published best F1 0.78)")
        last = f"skab_f1={r['f1']:.3f} precision={r['precision']:.3f} recall={r['recall']:.3f} far_pct={r['far_pct']:.2f} mar_pct={r['mar_pct']:.2f}"
    if not a.skab_only:
        last, sim_rc = sim_eval.evaluate(split=a.split, cache=a.keep, hours=a.hours)
        rc = max(rc, sim_rc)
    print(last)
    return rc


if __name__ == "__main__":
    sys.exit(main())
