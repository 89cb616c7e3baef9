"""Real, labelled third-party corpora for the streaming detector (used by ``bench/anomaly_eval.py``).

Every corpus is scored with the detector's production defaults and its fixed alert threshold
(score > 0.5): no per-corpus tuning, no labels anywhere but in the scoring.

* **SKAB** (Skoltech Anomaly Benchmark, pump testbed, 1 s; Katser & Kozitsin 2020,
  doi:10.34740/KAGGLE/DSV/1693952), its published outlier protocol: every file except
  ``anomaly-free.csv`` on its own, the first 400 rows learn, the rest is tested; per-row predictions
  pooled over files into F1, FAR and MAR. Rows go through ``carbonedge analyze detect``'s own code
  (:func:`analytics.offline.detect_csv`), so the CSV reading is tested too. The defaults were chosen
  on the ``valve1`` files only; ``valve2`` and ``other`` are reported apart as held out.
* **SMD** (Server Machine Dataset, Su et al., KDD 2019, doi:10.1145/3292500.3330672; 10 of its 28
  machines, 38 metrics at 1 min): per machine, the detector learns on ``train`` (its warm-up is the
  whole train half, so the alert threshold starts from train scores only) and scores ``test`` in time
  order, updating itself causally on unlabelled test rows as a streaming detector does. Point-wise
  F1 without point-adjust at the fixed threshold, with the oracle best-threshold F1 and AUPRC beside
  it; macro mean over machines. The reference is PCA reconstruction error (min-max scaling fitted
  on train, 10 components, per-metric absolute error, maximum over metrics; the QuoVadisTAD baseline,
  Sarfraz et al., ICML 2024) rerun here on the same machines, its threshold from train scores alone
  (the larger F1 of the train maximum and the train 99.9th percentile). No SMD figure was used to
  choose anything.
"""

from __future__ import annotations

import csv
import io
import lzma
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from carbonedge.analytics.detect import DetectorSettings, StreamingDetector
from carbonedge.analytics.offline import detect_csv

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SKAB_VALUES = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple", "Voltage", "Volume Flow RateRMS"]
SKAB_TRAIN_ROWS = 400
SMD_MACHINES = ["machine-1-2", "machine-1-5", "machine-1-6", "machine-1-8", "machine-2-1", "machine-2-3", "machine-2-5",
                "machine-3-2", "machine-3-4", "machine-3-10"]


def _prf(pred: np.ndarray, y: np.ndarray) -> tuple[int, int, int, int]:
    return int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum()), int((~pred & ~y).sum())


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def skab(data_dir: Path, settings: DetectorSettings | None = None) -> dict[str, dict[str, float]]:
    """SKAB outlier protocol; pooled figures for all files, for ``valve1`` (chosen on) and for the held-out rest."""
    st = replace(settings or DetectorSettings(), learn_rows=SKAB_TRAIN_ROWS)
    files = sorted(p for p in data_dir.glob("*/*.csv") if p.parent.name != "anomaly-free")
    if not files:
        raise SystemExit(f"no SKAB files under {data_dir}")
    counts: dict[str, list[int]] = {"all": [0] * 4, "valve1": [0] * 4, "held_out": [0] * 4}
    events: dict[str, list[int]] = {k: [0] * 4 for k in counts}
    for p in files:
        buf = io.StringIO()
        detect_csv(p, buf, time_col="datetime", value_cols=SKAB_VALUES, settings=st)
        buf.seek(0)
        pred = np.array([r["alert"] == "1" for r in csv.DictReader(buf)])
        with p.open(newline="", encoding="utf-8-sig") as f:
            y = np.array([float(r["anomaly"]) > 0.5 for r in csv.DictReader(f, delimiter=";")])
        c = _prf(pred[SKAB_TRAIN_ROWS:], y[SKAB_TRAIN_ROWS:])
        ev = event_counts(pred[SKAB_TRAIN_ROWS:], y[SKAB_TRAIN_ROWS:])
        for key in ("all", "valve1" if p.parent.name == "valve1" else "held_out"):
            counts[key] = [a + b for a, b in zip(counts[key], c, strict=True)]
            events[key] = [a + b for a, b in zip(events[key], ev, strict=True)]
    out = {}
    for key, (tp, fp, fn, tn) in counts.items():
        pr, rc, f1 = _f1(tp, fp, fn)
        ep, er, ef = event_f1(events[key])
        out[key] = {"precision": pr, "recall": rc, "f1": f1, "far_pct": 100.0 * fp / (fp + tn) if fp + tn else 0.0,
                    "mar_pct": 100.0 * fn / (fn + tp) if fn + tp else 0.0, "event_f1": ef, "event_precision": ep, "event_recall": er}
    out["all"]["files"] = len(files)
    return out


def _smd_load(data_dir: Path, machine: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def mat(part: str) -> np.ndarray:
        with lzma.open(data_dir / part / f"{machine}.txt.xz", "rt") as f:
            return np.loadtxt(f, delimiter=",", ndmin=2)

    labels = np.loadtxt(data_dir / "test_label" / f"{machine}.txt") > 0.5
    return mat("train"), mat("test"), labels


def _segments(x: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in ``x`` as (first index, last index + 1)."""
    d = np.diff(np.concatenate([[0], x.astype(np.int8), [0]]))
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist(), strict=True))


def event_counts(pred: np.ndarray, y: np.ndarray) -> tuple[int, int, int, int]:
    """Range-wise (event) counts, existence reward (Tatbul et al., *Precision and Recall for Time
    Series*, NeurIPS 2018, with α = 1 for recall and an existence criterion for precision): a labelled
    anomaly range is found when at least one of its rows alerts; an alert range (consecutive alerting
    rows) is correct when it overlaps a labelled range. Returns (ranges found, ranges, correct alert
    ranges, alert ranges)."""
    true = _segments(y)
    alerts = _segments(pred)
    cum = np.concatenate([[0], np.cumsum(pred.astype(np.int64))])
    found = sum(1 for a, b in true if cum[b] - cum[a] > 0)
    cy = np.concatenate([[0], np.cumsum(y.astype(np.int64))])
    correct = sum(1 for a, b in alerts if cy[b] - cy[a] > 0)
    return found, len(true), correct, len(alerts)


def event_f1(c: tuple[int, int, int, int] | list[int]) -> tuple[float, float, float]:
    """(precision, recall, F1) from :func:`event_counts` (summed over files or machines)."""
    found, n_true, correct, n_alerts = c
    p = correct / n_alerts if n_alerts else 0.0
    r = found / n_true if n_true else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _best_f1(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    p, r, _ = precision_recall_curve(y, scores)
    return float(np.max(2 * p * r / np.maximum(p + r, 1e-12))), float(average_precision_score(y, scores))


def _pca_reference(train: np.ndarray, test: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import MinMaxScaler

    sc = MinMaxScaler().fit(train)
    a, b = sc.transform(train), sc.transform(test)
    pca = PCA(n_components=min(10, a.shape[1])).fit(a)

    def err(z: np.ndarray) -> np.ndarray:
        return np.abs(z - pca.inverse_transform(pca.transform(z))).max(axis=1)

    s_train, s_test = err(a), err(b)
    # The larger point-wise F1 of two train-only thresholds (generous to the reference); its event F1 at that threshold.
    f1_train, thr = max((_f1(*_prf(s_test > thr, y)[:3])[2], thr) for thr in (s_train.max(), np.quantile(s_train, 0.999)))
    best, auprc = _best_f1(s_test, y)
    return {"f1": f1_train, "best_f1": best, "auprc": auprc, "event_f1": event_f1(event_counts(s_test > thr, y))[2]}


def smd(data_dir: Path, machines: list[str] | None = None, settings: DetectorSettings | None = None,
        progress: Any = None, save: Path | None = None) -> dict[str, Any]:
    """SMD per machine and macro mean: the detector at its fixed threshold, and the PCA reference."""
    per: dict[str, dict[str, float]] = {}
    for m in machines or SMD_MACHINES:
        t0 = time.perf_counter()
        train, test, y = _smd_load(data_dir, m)
        det = StreamingDetector(train.shape[1], 0, replace(settings or DetectorSettings(), learn_rows=len(train)))
        for i, row in enumerate(train):
            det.update(row, t=60.0 * i)
        scores = np.empty(len(test))
        for i, row in enumerate(test):
            scores[i] = det.update(row, t=60.0 * (len(train) + i)).score
        pred = scores > 0.5
        pr, rc, f1 = _f1(*_prf(pred, y)[:3])
        best, auprc = _best_f1(scores, y)
        ref = _pca_reference(train, test, y)
        per[m] = {"f1": f1, "precision": pr, "recall": rc, "best_f1": best, "auprc": auprc,
                  "event_f1": event_f1(event_counts(pred, y))[2],
                  "pca_f1": ref["f1"], "pca_best_f1": ref["best_f1"], "pca_auprc": ref["auprc"], "pca_event_f1": ref["event_f1"],
                  "seconds": time.perf_counter() - t0}
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(save / f"{m}.npz", scores=scores, labels=y)
        if progress:
            progress(m, per[m])
    keys = next(iter(per.values())).keys()
    return {"machines": per, "mean": {k: float(np.mean([v[k] for v in per.values()])) for k in keys}}


def smd_train_halves(data_dir: Path, machines: list[str] | None = None, settings: DetectorSettings | None = None,
                     progress: Any = None) -> dict[str, Any]:
    """Unsupervised check on SMD's unlabelled ``train`` halves only (no test row, no label): learn on the
    first half of ``train``, score the second half, and report the alert rate there. Defaults may be
    compared on this (a lower rate on data the operators did not label at equal SKAB F1); the
    nominal rate of a ``margin`` × 99.9th-percentile threshold is far below 0.1 %."""
    per: dict[str, float] = {}
    for m in machines or SMD_MACHINES:
        train, _, _ = _smd_load(data_dir, m)
        h = len(train) // 2
        det = StreamingDetector(train.shape[1], 0, replace(settings or DetectorSettings(), learn_rows=h))
        alerts = 0
        for i, row in enumerate(train):
            s = det.update(row, t=60.0 * i)
            alerts += int(s.alert)
        per[m] = alerts / (len(train) - h)
        if progress:
            progress(m, per[m])
    return {"machines": per, "mean": float(np.mean(list(per.values())))}
