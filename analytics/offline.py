"""Offline analysis of exported data (CSV): causal anomaly scores and regression baselines.

For engineers who have a historian export rather than a live pipeline. The CSV may be comma,
semicolon or tab separated; the time column may be ISO 8601 (naive means the ``tz`` given, UTC by
default) or epoch seconds / milliseconds.

:func:`detect_csv` streams the file: it reads a row, scores it, writes its result, then reads the
next row, so the score of row *t* cannot depend on any later row.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from analytics.baseline import ASHRAE14_LIMITS, R2_MIN, Baseline, Fit, Hinge, cusum, fit_baseline, goodness_of_fit
from analytics.detect import DetectorSettings, StreamingDetector
from analytics.interval import period_key, zone
from carbonedge.errors import CarbonEdgeError


class InputError(CarbonEdgeError):
    """The input file does not have the columns or values asked for."""

    code = "analytics.input"


def _open_table(path: Path) -> tuple[TextIO, csv.DictReader]:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    f = path.open(newline="", encoding="utf-8-sig")
    head = f.read(8192)
    f.seek(0)
    try:
        dialect = csv.Sniffer().sniff(head.splitlines()[0] if head else "", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(f, dialect=dialect)
    if not reader.fieldnames:
        f.close()
        raise InputError(f"{path}: empty file, no header row")
    return f, reader


def table_columns(path: Path) -> list[str]:
    """The header of a CSV file, as :func:`detect_csv` and :func:`baseline_csv` read it."""
    f, reader = _open_table(Path(path))
    with f:
        return list(reader.fieldnames or [])


def _require(path: Path, header: list[str], cols: list[str]) -> None:
    missing = [c for c in cols if c not in header]
    if missing:
        raise InputError(f"{path}: no column {', '.join(repr(m) for m in missing)}; the file has: {', '.join(header)}")


def parse_timestamp(text: str, tz: str = "UTC") -> float:
    """Epoch seconds from ISO 8601 (naive = ``tz``) or a number of epoch seconds / milliseconds."""
    s = text.strip()
    try:
        x = float(s)
    except ValueError:
        pass
    else:
        return x / 1000.0 if abs(x) > 1e11 else x
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC if tz == "UTC" else zone(tz))
    return dt.timestamp()


def _num(text: str | None) -> float:
    if text is None:
        return math.nan
    s = text.strip()
    if not s:
        return math.nan
    try:
        return float(s)
    except ValueError:
        return math.nan


@dataclass
class _Row:
    line: int
    time_text: str
    t: float
    values: np.ndarray
    context: np.ndarray


@dataclass
class ReadStats:
    rows: int = 0
    bad_values: dict[str, int] = field(default_factory=dict)

    def notes(self) -> list[str]:
        return [f"{n} row(s) with an empty or non-numeric {c!r}, treated as missing" for c, n in self.bad_values.items() if n]


def _rows(path: Path, time_col: str, value_cols: list[str], context_cols: list[str], tz: str, stats: ReadStats) -> Iterator[_Row]:
    f, reader = _open_table(path)
    with f:
        _require(path, list(reader.fieldnames or []), [time_col, *value_cols, *context_cols])
        for rec in reader:
            line = reader.line_num
            tt = rec.get(time_col) or ""
            try:
                t = parse_timestamp(tt, tz)
            except ValueError:
                raise InputError(f"{path}, line {line}: {time_col!r} = {tt!r} is not a time (use ISO 8601 or epoch seconds)") from None
            vals = np.array([_num(rec.get(c)) for c in value_cols])
            ctx = np.array([_num(rec.get(c)) for c in context_cols])
            for c, v in zip([*value_cols, *context_cols], [*vals, *ctx], strict=True):
                if not math.isfinite(v):
                    stats.bad_values[c] = stats.bad_values.get(c, 0) + 1
            stats.rows += 1
            yield _Row(line, tt, t, vals, ctx)


# --------------------------------------------------------------------------- detect


@dataclass
class DetectSummary:
    rows: int
    learning_rows: int
    alert_rows: int
    alert_episodes: int
    threshold: float
    notes: list[str]


def detect_csv(
    path: Path | str,
    out: Path | str | TextIO,
    *,
    time_col: str,
    value_cols: list[str],
    context_cols: list[str] | None = None,
    settings: DetectorSettings | None = None,
    learn_until: float | None = None,
    tz: str = "UTC",
    progress: Callable[[int], None] | None = None,
) -> DetectSummary:
    """Score every row of a CSV causally, in file order; write ``time, score, alert, state, top_column`` per row.

    Rows are taken in the order they stand in the file (arrival order): a time that goes back or
    repeats is counted in the notes, never refused and never reordered. The warm-up ends after
    ``settings.learn_rows`` rows, or at the first row at or after ``learn_until`` (epoch seconds)
    when given. ``context_cols`` are production-state columns that explain the values (see
    :class:`analytics.detect.StreamingDetector`). A file output is written to a temporary file
    and renamed at the end, so a failed run never leaves a truncated result.
    """
    path = Path(path)
    ctx_cols = list(context_cols or [])
    st = settings or DetectorSettings()
    if learn_until is not None:
        st = replace(st, learn_rows=10**12)
    det = StreamingDetector(len(value_cols), len(ctx_cols), st)
    stats = ReadStats()
    own = not hasattr(out, "write")
    tmp = Path(str(out) + ".part") if own else None
    fh: Any = tmp.open("w", newline="") if tmp is not None else out
    n = learning = alerts = episodes = 0
    prev_alert = False
    ok = False
    try:
        w = csv.writer(fh)
        w.writerow([time_col, "score", "alert", "state", "top_column"])
        for row in _rows(path, time_col, value_cols, ctx_cols, tz, stats):
            if learn_until is not None and det.learning and row.t >= learn_until:
                det.finish_learning()
            s = det.update(row.values, row.context if ctx_cols else None, t=row.t)
            top = ""
            if s.alert and s.contributions is not None:
                top = value_cols[int(np.argmax(s.contributions))]
            state = "learning" if s.learning else ("accepted" if s.accepted else "scoring")
            w.writerow([row.time_text, f"{s.score:.6f}", int(s.alert), state, top])
            n += 1
            learning += int(s.learning)
            alerts += int(s.alert)
            episodes += int(s.alert and not prev_alert)
            prev_alert = s.alert
            if progress and n % 100_000 == 0:
                progress(n)
        if det.learning:
            raise InputError(f"{path}: only {n} rows, all used for learning; give more data or a smaller --learn-rows")
        ok = True
    finally:
        if tmp is not None:
            fh.close()
            if ok:
                tmp.replace(Path(out))  # type: ignore[arg-type]
            else:
                tmp.unlink(missing_ok=True)
    return DetectSummary(n, learning, alerts, episodes, det.threshold, stats.notes() + det.notes())


# --------------------------------------------------------------------------- baseline


@dataclass
class BaselineReport:
    baseline: Baseline
    interval: str
    limits: str  # which ASHRAE 14 limits apply: hourly or monthly
    train: Fit
    test: Fit | None
    test_rows: int
    savings: float | None
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "equation": self.baseline.equation(),
            "baseline": self.baseline.as_dict(),
            "interval": self.interval,
            "ashrae14_limits": self.limits,
            "train": self.train.as_dict() | {"meets_ashrae14": self.train.meets(self.limits)},
            "test": None if self.test is None else self.test.as_dict() | {"meets_ashrae14": self.test.meets(self.limits)},
            "test_rows": self.test_rows,
            "savings": self.savings,
            "notes": self.notes,
        }


def _aggregate(ts: np.ndarray, Y: np.ndarray, how: list[str], period: str, tz: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    tzi = zone(tz)
    keys: dict[int, list[int]] = {}
    labels: dict[int, str] = {}
    for i, t in enumerate(ts.tolist()):
        k, lab = period_key(int(t * 1000), period, tzi)
        keys.setdefault(k, []).append(i)
        labels[k] = lab
    out_t, out_y = [], []
    for k in sorted(keys):
        idx = keys[k]
        row = []
        for j, h in enumerate(how):
            col = Y[idx, j]
            col = col[np.isfinite(col)]
            row.append(np.nan if col.size == 0 else (col.sum() if h == "sum" else col.mean()))
        out_t.append(k / 1000.0)
        out_y.append(row)
    return np.array(out_t), np.array(out_y, dtype=np.float64).reshape(len(out_t), len(how)), [labels[k] for k in sorted(keys)]


def baseline_csv(
    path: Path | str,
    *,
    time_col: str,
    target: str,
    features: list[str],
    train_until: float,
    mean_features: list[str] | None = None,
    aggregate: str | None = None,
    tz: str = "UTC",
    out: Path | str | None = None,
    change_point: bool = True,
) -> BaselineReport:
    """Fit a regression baseline of ``target`` on ``features`` over rows before ``train_until``.

    With ``aggregate`` (``hour``, ``day``, ``week``, ``month``) rows are first summed per local
    period (target and ``features``) or averaged (``mean_features``, for intensive variables such as
    temperature). ``mean_features`` may enter as change-point (degree-day) terms when that fits
    better (:func:`analytics.baseline.fit_baseline`; ``change_point=False``: straight lines only).
    Prints nothing; returns the fit on the training rows and on the rest, and writes per-row
    ``expected``, ``residual`` and ``cusum`` to ``out`` when given.
    """
    path = Path(path)
    mean_features = list(mean_features or [])
    all_feats = [*features, *mean_features]
    stats = ReadStats()
    times, texts, data = [], [], []
    for row in _rows(path, time_col, [target, *all_feats], [], tz, stats):
        times.append(row.t)
        texts.append(row.time_text)
        data.append(row.values)
    if not data:
        raise InputError(f"{path}: no data rows")
    ts = np.array(times)
    Y = np.vstack(data)
    if aggregate:
        how = ["sum"] * (1 + len(features)) + ["mean"] * len(mean_features)
        ts, Y, texts = _aggregate(ts, Y, how, aggregate, tz)
        interval = aggregate
    else:
        step = float(np.median(np.diff(ts))) if ts.size > 1 else 0.0
        interval = "monthly" if step >= 27 * 86400 else ("daily" if step >= 86400 else ("hourly" if step >= 3600 else f"{step:g} s"))
    limits = "monthly" if interval in ("month", "monthly") else "hourly"
    train = ts < train_until
    if train.sum() == 0:
        raise InputError(f"{path}: no rows before the end of the training period; check --train-until")
    y, X = Y[:, 0], Y[:, 1:]
    b = fit_baseline(X[train], y[train], all_feats, change_point=mean_features if change_point else ())
    test = ~train
    notes = stats.notes()
    p = b.fit.p
    ok_test = test & np.isfinite(y) & np.all(np.isfinite(X), axis=1)
    test_fit: Fit | None = None
    savings: float | None = None
    if ok_test.sum() > p:
        test_fit = goodness_of_fit(y[ok_test], b.predict(X[ok_test]), p)
        savings = float((b.predict(X[ok_test]) - y[ok_test]).sum())
    elif test.any():
        notes.append(f"only {int(ok_test.sum())} complete row(s) after the training period; no out-of-sample figures")
    if b.fit.r2 < R2_MIN and all_feats:
        notes.append(f"R² {b.fit.r2:.2f} is below {R2_MIN} on the training period: the variables explain little of the energy (ISO 50006 screening [M3])")
    if out is not None:
        expected = b.predict(np.where(np.isfinite(X), X, np.nan))
        cs = np.full(ts.size, np.nan)
        cs[test] = cusum(expected[test], y[test])
        with Path(out).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([time_col, "period", target, "expected", "residual", "cusum_savings"])
            for i in range(ts.size):
                w.writerow([texts[i], "train" if train[i] else "report", _fmt(y[i]), _fmt(expected[i]), _fmt(y[i] - expected[i]), _fmt(cs[i])])
    return BaselineReport(b, interval, limits, b.fit, test_fit, int(test.sum()), savings, notes)


def _fmt(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.6g}"


def format_baseline(rep: BaselineReport, target: str) -> str:
    """The baseline report as a plant engineer reads it."""
    cv_max, nmbe_max = ASHRAE14_LIMITS[rep.limits]
    buf = io.StringIO()
    p = buf.write
    p(f"Baseline ({rep.interval} data, ISO 50006 regression):  {rep.baseline.equation(target)}\n")
    for t in rep.baseline.terms:
        if isinstance(t, Hinge):
            side = "below" if t.kind == "heating" else "above"
            p(f"  change point ({t.kind} side): this term counts only {t.feature} {side} {t.balance:.4g}\n")
    p("\n")
    p(f"{'period':<10} {'rows':>7} {'CV(RMSE)':>9} {'NMBE':>8} {'R²':>6}   ASHRAE 14 {rep.limits} (CV ≤ {cv_max:.0%}, |NMBE| ≤ {nmbe_max:.0%})\n")
    for name, fit in (("training", rep.train), ("reporting", rep.test)):
        if fit is None:
            p(f"{name:<10} {rep.test_rows:>7}        —        —      —   no out-of-sample data\n")
            continue
        verdict = "meets" if fit.meets(rep.limits) else "does NOT meet"
        p(f"{name:<10} {fit.n:>7} {fit.cv_rmse:>8.1%} {fit.nmbe:>+8.1%} {fit.r2:>6.3f}   {verdict}\n")
    if rep.savings is not None:
        p(f"\nSavings over the reporting period (expected − actual, CUSUM end value): {rep.savings:,.1f} {target} units\n")
    for n in rep.notes:
        p(f"note: {n}\n")
    return buf.getvalue()
