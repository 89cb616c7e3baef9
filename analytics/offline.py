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
import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from carbonedge.analytics.baseline import (
    ALPHAS,
    HOLIDAY,
    R2_MIN,
    BaselineError,
    Calendar,
    Fit,
    Hinge,
    NaiveTimeOfWeek,
    ashrae14_limit,
    blocked_folds,
    cusum,
    fit_baseline,
    out_of_sample_fit,
    resolution_name,
    savings_uncertainty,
    select_time_of_week,
    time_of_week_spec,
)
from carbonedge.analytics.detect import DetectorSettings, StreamingDetector
from carbonedge.analytics.interval import period_key, zone
from carbonedge.errors import CarbonEdgeError


class InputError(CarbonEdgeError):
    """The input file does not have the columns or values asked for."""

    code = "analytics.input"


def _open_table(path: Path, *, delimiter: str | None = None) -> tuple[TextIO, csv.DictReader]:
    """Open a CSV with a header row; the delimiter (comma, semicolon or tab) is sniffed from the
    header unless given."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    f = path.open(newline="", encoding="utf-8-sig")
    head = f.read(8192)
    f.seek(0)
    if delimiter:
        dialect: Any = csv.excel
        reader = csv.DictReader(f, dialect=dialect, delimiter={"tab": "\t", "\\t": "\t"}.get(delimiter, delimiter))
    else:
        try:
            dialect = csv.Sniffer().sniff(head.splitlines()[0] if head else "", delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(f, dialect=dialect)
    if not reader.fieldnames:
        f.close()
        raise InputError(f"{path}: empty file, no header row")
    return f, reader


def table_columns(path: Path, *, delimiter: str | None = None) -> list[str]:
    """The header of a CSV file, as :func:`detect_csv` and :func:`baseline_csv` read it."""
    f, reader = _open_table(Path(path), delimiter=delimiter)
    with f:
        return list(reader.fieldnames or [])


def _require(path: Path, header: list[str], cols: list[str]) -> None:
    missing = [c for c in cols if c not in header]
    if missing:
        raise InputError(f"{path}: no column {', '.join(repr(m) for m in missing)}; the file has: {', '.join(header)}")


#: Day-first / month-first dates with an optional time: ``31/01/2018 00:15``, ``31.01.2018 00:15:00``, ``01-31-2018``.
_DATE = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4})(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?$")
_DATE_FORMATS = {"dd/mm/yyyy": "dmy", "dd.mm.yyyy": "dmy", "dd-mm-yyyy": "dmy", "mm/dd/yyyy": "mdy", "mm-dd-yyyy": "mdy",
                 "iso": "iso", "dmy": "dmy", "mdy": "mdy"}


def parse_timestamp(text: str, tz: str = "UTC", *, date_format: str | None = None) -> float:
    """Epoch seconds from ISO 8601 (naive = ``tz``), epoch seconds / milliseconds, or a day-first date.

    ``dd.mm.yyyy [HH:MM[:SS]]`` is always day-first. ``dd/mm/yyyy`` is read day-first when the day
    is above 12; a date such as ``03/04/2018`` is ambiguous and refused unless ``date_format`` says
    the order: ``dd/mm/yyyy`` (or ``dmy``), ``mm/dd/yyyy`` (``mdy``), ``iso``, or a ``strptime``
    pattern such as ``%d/%m/%Y %H:%M``. An hour of 24 (``24:00``) is midnight of the next day.
    Raises ValueError for text that is not a time.
    """
    s = text.strip()
    fmt = date_format.strip() if date_format else None
    if fmt and "%" in fmt:
        dt = datetime.strptime(s, fmt)
        return _localise(dt, tz)
    order = _DATE_FORMATS.get(fmt.lower()) if fmt else None
    if fmt and order is None:
        raise ValueError(f"unknown date format {date_format!r}; use dd/mm/yyyy, mm/dd/yyyy, dd.mm.yyyy, iso or a strptime pattern")
    if order != "iso" or not fmt:
        try:
            x = float(s)
        except ValueError:
            pass
        else:
            if order is None:
                return x / 1000.0 if abs(x) > 1e11 else x
    m = _DATE.match(s)
    if m and order != "iso":
        a, sep, b, year, hh, mm, ss = m.groups()
        a_, b_ = int(a), int(b)
        if order is None:
            if sep == "." or a_ > 12:
                order = "dmy"
            elif b_ > 12:
                order = "mdy"
            else:
                raise ValueError(f"{s!r} could be day/month or month/day; give the order (--date-format dd/mm/yyyy or mm/dd/yyyy)")
        day, month = (a_, b_) if order == "dmy" else (b_, a_)
        h = int(hh or 0)
        dt = datetime(int(year), month, day, 0, int(mm or 0), int(ss or 0)) + timedelta(hours=h)
        return _localise(dt, tz)
    if order in ("dmy", "mdy"):
        raise ValueError(f"{s!r} is not a {fmt} date")
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return _localise(dt, tz)


def _localise(dt: datetime, tz: str) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC if tz == "UTC" else zone(tz))
    return dt.timestamp()


def detect_date_order(samples: list[str]) -> tuple[str | None, str | None]:
    """The day/month order of slash or dash dates in ``samples``: ``(date_format, note)``.

    Returns ``(None, None)`` when the times are ISO, epoch numbers or dot dates (no choice to make);
    ``dd/mm/yyyy`` when some day is above 12, ``mm/dd/yyyy`` when some month position is, with a note
    that announces the choice. Raises ValueError when both or neither occur (the file cannot tell).
    """
    first = second = 0
    seen = 0
    example = ""
    for s in samples:
        m = _DATE.match(s.strip())
        if not m or m.group(2) == ".":
            continue
        seen += 1
        example = example or s.strip()
        first += int(m.group(1)) > 12
        second += int(m.group(3)) > 12
    if not seen:
        return None, None
    if first and second:
        raise ValueError("the dates mix day/month and month/day order (both positions exceed 12 somewhere)")
    if first:
        return "dd/mm/yyyy", f"dates read day-first (dd/mm/yyyy, e.g. {example!r}): some first numbers exceed 12"
    if second:
        return "mm/dd/yyyy", f"dates read month-first (mm/dd/yyyy, e.g. {example!r}): some second numbers exceed 12"
    raise ValueError(f"dates such as {example!r} could be day/month or month/day and no date in the file tells; "
                     "give --date-format dd/mm/yyyy or mm/dd/yyyy")


def _num(text: str | None, *, decimal: str = ".") -> float:
    """A number from CSV text; NaN for an empty or non-numeric field. With ``decimal=","`` the comma
    is the decimal mark and dots, spaces and apostrophes are thousands separators (``1.234,5``)."""
    if text is None:
        return math.nan
    s = text.strip()
    if not s:
        return math.nan
    if decimal == ",":
        s = s.replace(".", "").replace(" ", "").replace("\u00a0", "").replace("'", "").replace(",", ".")
    try:
        return float(s)
    except ValueError:
        return math.nan


_COMMA_NUM = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+$")
_DOT_NUM = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")


def detect_decimal(columns: dict[str, list[str]]) -> tuple[str, str | None]:
    """The decimal mark of numeric columns: ``(".", None)`` or ``(",", note)``. Raises ValueError when
    one file uses both (``1,5`` in one place and ``1.5`` in another)."""
    comma = dot = 0
    where = ""
    for name, vals in columns.items():
        for v in vals[:5000]:
            v = v.strip()
            if _COMMA_NUM.match(v):
                comma += 1
                where = where or f"{name!r} = {v!r}"
            elif _DOT_NUM.match(v) and not re.match(r"^[+-]?\d{1,3}\.\d{3}$", v):
                dot += 1
    if comma and dot:
        raise ValueError("numbers use both a decimal comma and a decimal point; give --decimal , or --decimal .")
    if comma:
        return ",", f"numbers read with a decimal comma (e.g. {where})"
    return ".", None


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


def _rows(path: Path, time_col: str, value_cols: list[str], context_cols: list[str], tz: str, stats: ReadStats, *,
          date_format: str | None = None, decimal: str = ".", delimiter: str | None = None) -> Iterator[_Row]:
    f, reader = _open_table(path, delimiter=delimiter)
    with f:
        _require(path, list(reader.fieldnames or []), [time_col, *value_cols, *context_cols])
        cols = [*value_cols, *context_cols]
        nv = len(value_cols)
        bad = stats.bad_values
        for rec in reader:
            tt = rec.get(time_col) or ""
            try:
                t = parse_timestamp(tt, tz, date_format=date_format)
            except ValueError as exc:
                hint = str(exc) if date_format or "could be day/month" in str(exc) else "use ISO 8601, epoch seconds or give --date-format"
                raise InputError(f"{path}, line {reader.line_num}: {time_col!r} = {tt!r} is not a time ({hint})") from None
            xs = [_num(rec.get(c), decimal=decimal) for c in cols]
            for c, v in zip(cols, xs, strict=True):
                if v != v:
                    bad[c] = bad.get(c, 0) + 1
            stats.rows += 1
            yield _Row(reader.line_num, tt, t, xs[:nv], xs[nv:])  # type: ignore[arg-type]


def _sniff_formats(path: Path, time_col: str, cols: list[str], date_format: str | None, decimal: str | None,
                   delimiter: str | None, rows: int = 2000) -> tuple[str | None, str, list[str]]:
    """Date order and decimal mark from the first ``rows`` rows, unless given; with the notes that announce them."""
    notes: list[str] = []
    if date_format is not None and decimal is not None:
        return date_format, decimal, notes
    f, reader = _open_table(path, delimiter=delimiter)
    with f:
        _require(path, list(reader.fieldnames or []), [time_col, *cols])
        times: list[str] = []
        values: dict[str, list[str]] = {c: [] for c in cols}
        for i, rec in enumerate(reader):
            if i >= rows:
                break
            times.append(rec.get(time_col) or "")
            for c in cols:
                values[c].append(rec.get(c) or "")
    try:
        if date_format is None:
            date_format, note = detect_date_order(times)
            notes += [note] if note else []
        if decimal is None:
            decimal, note = detect_decimal(values)
            notes += [note] if note else []
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    return date_format, decimal, notes


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
    date_format: str | None = None,
    decimal: str | None = None,
    delimiter: str | None = None,
    counters: str = "auto",
) -> DetectSummary:
    """Score every row of a CSV causally, in file order; write ``time, score, alert, state, top_column`` per row.

    Rows are taken in the order they stand in the file (arrival order): a time that goes back or
    repeats is counted in the notes, never refused and never reordered. The warm-up ends after
    ``settings.learn_rows`` rows, or at the first row at or after ``learn_until`` (epoch seconds)
    when given. ``context_cols`` are production-state columns that explain the values (see
    :class:`analytics.detect.StreamingDetector`). With ``counters="auto"`` a value column that never
    falls and rises on many of the first warm-up rows is read as a cumulative counter (announced in
    the notes) and its rate per hour is watched, through the kernel's counter arithmetic
    (:mod:`carbonedge.energy`: resets and out-of-order readings are not scored as rates). A file output is written to a temporary file
    and renamed at the end, so a failed run never leaves a truncated result.
    """
    path = Path(path)
    ctx_cols = list(context_cols or [])
    st = settings or DetectorSettings()
    if learn_until is not None:
        st = replace(st, learn_rows=10**12)
    if counters not in ("auto", "off"):
        raise InputError(f"counters={counters!r}: use 'auto' or 'off'")
    det = StreamingDetector(len(value_cols), len(ctx_cols), st)
    stats = ReadStats()
    date_format, dec, fmt_notes = _sniff_formats(path, time_col, [*value_cols, *ctx_cols], date_format, decimal, delimiter)
    own = not hasattr(out, "write")
    tmp = Path(str(out) + ".part") if own else None
    fh: Any = tmp.open("w", newline="") if tmp is not None else out
    n = learning = alerts = episodes = 0
    prev_alert = False
    ok = False
    try:
        w = csv.writer(fh)
        w.writerow([time_col, "score", "alert", "state", "top_column"])
        rows: Iterator[_Row] = _rows(path, time_col, value_cols, ctx_cols, tz, stats, date_format=date_format, decimal=dec, delimiter=delimiter)
        rates = None
        if counters == "auto":
            head = []
            for row in rows:
                head.append(row)
                if len(head) >= min(st.learn_rows, COUNTER_DECISION_ROWS) or (learn_until is not None and row.t >= learn_until):
                    break
            rates = _CounterRates.decide(head, value_cols)
            rows = itertools.chain(head, rows)
            if rates is not None:
                rows = rates.apply(rows)
        for row in rows:
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
    return DetectSummary(n, learning, alerts, episodes, det.threshold,
                         fmt_notes + (rates.notes() if rates is not None else []) + stats.notes() + det.notes())


#: Warm-up rows that decide whether a value column is a cumulative counter.
COUNTER_DECISION_ROWS = 2000


class _CounterRates:
    """Value columns read as cumulative counters: each reading is replaced by the rate per hour since
    the previous one, from the kernel's counter arithmetic (:func:`carbonedge.energy.step`); a reading
    that is not a plain increase (reset, reading out of order) or comes with no elapsed time gives no
    rate (a missing value) and is counted."""

    def __init__(self, cols: list[int], names: list[str]) -> None:
        self.cols, self.names = cols, names
        self.state: dict[int, Any] = {}
        self.skipped = dict.fromkeys(cols, 0)

    @classmethod
    def decide(cls, head: list[_Row], names: list[str]) -> _CounterRates | None:
        """Counter columns: over the decision rows, at least 10 steps, none falling (one in a hundred
        may: a reset), at least a tenth (and 5) rising."""
        cols = []
        for j in range(len(names)):
            v = np.array([r.values[j] for r in head], dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size < 11:
                continue
            d = np.diff(v)
            if (d < 0).mean() <= 0.01 and (d > 0).mean() >= 0.1 and (d > 0).sum() >= 5 and v[-1] > v[0]:
                cols.append(j)
        return cls(cols, [names[j] for j in cols]) if cols else None

    def apply(self, rows: Iterator[_Row]) -> Iterator[_Row]:
        from carbonedge.energy import CounterSpec, CounterState, step

        spec = CounterSpec()
        for row in rows:
            vals = np.array(row.values, dtype=np.float64)
            ts = int(round(row.t * 1000))
            for j in self.cols:
                raw = vals[j]
                st = self.state.get(j)
                if raw != raw:
                    continue
                if st is None:
                    self.state[j] = CounterState.start(raw, ts)
                    vals[j] = math.nan
                    continue
                before = st.ts
                out = step(st, raw, ts, spec)
                dt_h = (ts - before) / 3_600_000.0
                if out.event is not None or dt_h <= 0 or not out.good:
                    vals[j] = math.nan
                    self.skipped[j] += 1
                else:
                    vals[j] = out.delta / dt_h
            yield _Row(row.line, row.time_text, row.t, vals, row.context)

    def notes(self) -> list[str]:
        out = [f"{', '.join(repr(c) for c in self.names)}: never fell and rose on many warm-up rows, read as cumulative "
               f"counter(s); the rate per hour between readings is watched (--counters off to watch the readings as they are)"]
        for j, name in zip(self.cols, self.names, strict=True):
            if self.skipped[j]:
                out.append(f"{name!r}: {self.skipped[j]} reading(s) gave no rate (counter reset, reading out of order, or no time elapsed)")
        return out


# --------------------------------------------------------------------------- baseline

#: Most levels a category column may have (more looks like a number or an identifier).
MAX_LEVELS = 50


@dataclass
class FitRow:
    """One line of the fit table: a set of points at a resolution, the model's fit and the naive reference's."""

    label: str
    resolution: str
    model: Fit | None
    naive: Fit | None

    def as_dict(self) -> dict[str, Any]:
        lim = ashrae14_limit(self.resolution)
        return {"set": self.label, "resolution": self.resolution,
                "limit": None if lim is None else {"cv_rmse": lim[0], "nmbe": lim[1]},
                "model": None if self.model is None else self.model.as_dict() | {"verdict": self.model.verdict(self.resolution)},
                "naive": None if self.naive is None else self.naive.as_dict()}


@dataclass
class BaselineReport:
    baseline: Any  # TimeOfWeekBaseline or Baseline (regression on the variables only)
    interval: str  # resolution of the fitted data: 15-min, hourly, daily, weekly, monthly
    limits: str  # the resolution whose ASHRAE 14 limit (if any) applies to the fit
    train: Fit  # in sample
    test: Fit | None  # reporting period, out of sample
    test_rows: int
    savings: float | None
    notes: list[str]
    rows: list[FitRow] = field(default_factory=list)
    model_kind: str = "regression"
    selection: str = ""
    expected_total: float | None = None
    actual_total: float | None = None
    uncertainty: float | None = None  # fractional savings uncertainty at 90 % confidence
    announcements: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_kind,
            "equation": self.baseline.equation(),
            "baseline": self.baseline.as_dict(),
            "interval": self.interval,
            "ashrae14_limits": self.limits,
            "selection": self.selection,
            "train": self.train.as_dict() | {"verdict": self.train.verdict(self.limits)},
            "test": None if self.test is None else self.test.as_dict() | {"verdict": self.test.verdict(self.limits)},
            "test_rows": self.test_rows,
            "fits": [r.as_dict() for r in self.rows],
            "savings": self.savings,
            "adjusted_baseline": self.expected_total,
            "actual": self.actual_total,
            "savings_uncertainty_90": self.uncertainty,
            "input": self.announcements,
            "notes": self.notes,
        }


def _aggregate(ts: np.ndarray, Y: np.ndarray, how: list[str], period: str, tz: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows summed (``sum``) or averaged (``mean``) per local period; a period's missing values are left out."""
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


def _rollup(ts: np.ndarray, cols: list[np.ndarray], period: str, tz: str) -> list[np.ndarray]:
    """Sums of ``cols`` per local period over the rows where all of them are known (so the measured
    and the predicted totals cover the same rows)."""
    ok = np.all(np.isfinite(np.column_stack(cols)), axis=1)
    if not ok.any():
        return [np.zeros(0) for _ in cols]
    _, Y, _ = _aggregate(ts[ok], np.column_stack(cols)[ok], ["sum"] * len(cols), period, tz)
    return [Y[:, j] for j in range(len(cols))]


@dataclass
class _Table:
    t: np.ndarray
    texts: list[str]
    cols: dict[str, list[str]]
    announcements: list[str]


def _read_table(path: Path, time_col: str, cols: list[str], *, tz: str, date_format: str | None, delimiter: str | None) -> _Table:
    """All rows of the named columns as text, with parsed times (date order detected and announced)."""
    f, reader = _open_table(path, delimiter=delimiter)
    notes: list[str] = []
    with f:
        _require(path, list(reader.fieldnames or []), [time_col, *cols])
        texts: list[str] = []
        raw: dict[str, list[str]] = {c: [] for c in cols}
        lines: list[int] = []
        for rec in reader:
            texts.append((rec.get(time_col) or "").strip())
            lines.append(reader.line_num)
            for c in cols:
                raw[c].append(rec.get(c) or "")
    if not texts:
        raise InputError(f"{path}: no data rows")
    fmt = date_format
    if fmt is None:
        try:
            fmt, note = detect_date_order(texts)
        except ValueError as e:
            raise InputError(f"{path}: {time_col!r}: {e}") from None
        if note:
            notes.append(note)
    t = np.empty(len(texts))
    for i, tt in enumerate(texts):
        try:
            t[i] = parse_timestamp(tt, tz, date_format=fmt)
        except ValueError as e:
            hint = (str(e) if "day/month" in str(e) or "date format" in str(e) or " date" in str(e)
                    else "use ISO 8601, epoch seconds, dd/mm/yyyy or dd.mm.yyyy, or give --date-format")
            raise InputError(f"{path}, line {lines[i]}: {time_col!r} = {tt!r} is not a time ({hint})") from None
    return _Table(t, texts, raw, notes)


def _numeric_column(path: Path, name: str, vals: list[str], decimal: str, flag: str) -> tuple[np.ndarray, int]:
    x = np.array([_num(v, decimal=decimal) for v in vals])
    bad = [v.strip() for v, xv in zip(vals, x, strict=True) if not math.isfinite(xv) and v.strip()]
    filled = sum(1 for v in vals if v.strip())
    if filled and len(bad) > 0.5 * filled:
        levels = sorted(set(bad))
        hint = (f"it holds text such as {levels[0]!r}; give it with --category to use it as a category"
                if len(levels) <= MAX_LEVELS else f"it holds text such as {levels[0]!r}, not numbers")
        raise InputError(f"{path}: column {name!r} (given with {flag}) cannot be used as a number: {hint}")
    return x, len(bad) + (len(vals) - filled)


def _category_columns(path: Path, name: str, vals: list[str], train: np.ndarray) -> tuple[list[str], np.ndarray, int]:
    """One-hot columns ``name=level`` for the levels seen in training; rows with a level the training
    period never had (or none) get NaN (they cannot be predicted)."""
    v = np.array([x.strip() for x in vals], dtype=object)
    levels = sorted({x for x in v[train] if x})
    all_levels = {x for x in v if x}
    if len(all_levels) > MAX_LEVELS:
        raise InputError(f"{path}: column {name!r} has {len(all_levels)} different values; a category needs at most {MAX_LEVELS} "
                         "(if it is a number, give it with --feature or --mean-feature)")
    if len(levels) < 2:
        only = repr(levels[0]) if levels else "no value"
        raise InputError(f"{path}: category column {name!r} has {only} in the whole training period; it cannot explain the energy — leave it out")
    known = np.isin(v, levels)
    M = np.column_stack([(v == lev).astype(np.float64) for lev in levels])
    M[~known] = np.nan
    unseen = int((~known & (v != "") & ~train).sum())
    return [f"{name}={lev}" for lev in levels], M, unseen


def _interval_starts(tab: _Table, stamps: str, tz: str) -> tuple[np.ndarray, float, str | None]:
    """Interval start times, the data step, and a note when the stamps were taken as interval ends."""
    ts = tab.t
    u = np.unique(ts)
    step = float(np.median(np.diff(u))) if u.size > 1 else 0.0
    if stamps not in ("auto", "start", "end"):
        raise InputError(f"--stamps must be auto, start or end, not {stamps!r}")
    if stamps == "auto":
        stamps = "start"
        if 0 < step < 86400:
            from datetime import datetime as _dt

            tzi = zone(tz)
            first, last = (_dt.fromtimestamp(float(x), tzi) for x in (ts.min(), ts.max()))
            sod = lambda d: d.hour * 3600 + d.minute * 60 + d.second  # noqa: E731
            if sod(first) == step and sod(last) == 0:
                return ts - step, step, (f"time stamps read as interval ends (the first is {tab.texts[int(np.argmin(ts))]!r}, one step after "
                                         "midnight, and the last is at midnight); give --stamps start if they mark interval starts")
    if stamps == "end":
        return ts - step, step, "time stamps read as interval ends (--stamps end)"
    return ts, step, None


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
    categories: list[str] | None = None,
    model: str = "auto",
    holidays: str | None = None,
    operating_days: str = "auto",
    stamps: str = "auto",
    date_format: str | None = None,
    decimal: str | None = None,
    delimiter: str | None = None,
    train_from: float | None = None,
) -> BaselineReport:
    """Fit an energy baseline of ``target`` over rows before ``train_until`` and judge it.

    ``model``: ``auto`` / ``time-of-week`` fits the time-of-week model
    (:class:`analytics.baseline.TimeOfWeekBaseline`: operating days, public holidays, time of day ×
    day type, ``features`` as straight lines, ``mean_features`` such as outdoor temperature in
    temperature segments, ``categories`` one-hot), choosing its penalty and temperature form by
    blocked cross-validation; ``regression`` (and ``auto`` on weekly or monthly data) fits the ISO
    50006 regression on the variables only (:func:`analytics.baseline.fit_baseline`, change-point
    terms for ``mean_features`` unless ``change_point=False``).

    With ``aggregate`` (``hour``, ``day``, ``week``, ``month``) rows are first summed per local
    period (target and ``features``) or averaged (``mean_features``; a category becomes the share of
    the period in each level). ``stamps`` says whether times mark interval starts or ends (``auto``:
    ends when the first stamp is one step after midnight and the last at midnight; announced).
    Prints nothing; returns in-sample, blocked cross-validation and reporting-period figures beside
    the naive time-of-week reference, and writes per-row ``expected``, ``naive``, ``residual`` and
    ``cusum`` to ``out`` when given.
    """
    path = Path(path)
    mean_features = list(mean_features or [])
    cats = list(categories or [])
    for name, lst in (("--feature", features), ("--mean-feature", mean_features), ("--category", cats)):
        for c in lst:
            if c == target or c == time_col:
                raise InputError(f"{c!r} is the {'energy' if c == target else 'time'} column; it cannot also be a {name}")
    dup = {c for c in [*features, *mean_features, *cats] if [*features, *mean_features, *cats].count(c) > 1}
    if dup:
        raise InputError(f"column(s) {sorted(dup)} given twice; give each variable once")
    if model not in ("auto", "time-of-week", "regression"):
        raise InputError(f"unknown model {model!r}; use auto, time-of-week or regression")
    if decimal not in (None, ".", ","):
        raise InputError(f"--decimal must be '.' or ',', not {decimal!r}")
    tab = _read_table(path, time_col, [target, *features, *mean_features, *cats], tz=tz, date_format=date_format, delimiter=delimiter)
    notes: list[str] = []
    ann = list(tab.announcements)
    if decimal is None:
        try:
            decimal, note = detect_decimal({c: tab.cols[c] for c in [target, *features, *mean_features]})
        except ValueError as e:
            raise InputError(f"{path}: {e}") from None
        if note:
            ann.append(note)
    order = np.argsort(tab.t, kind="stable")
    if np.any(np.diff(tab.t) < 0):
        notes.append(f"{int((np.diff(tab.t) < 0).sum())} row(s) earlier than the row before; the rows were put in time order")
    tab = _Table(tab.t[order], [tab.texts[i] for i in order], {c: [v[i] for i in order] for c, v in tab.cols.items()}, ann)
    t0, step, stamp_note = _interval_starts(tab, stamps, tz)
    if stamp_note:
        ann.append(stamp_note)
    y, bad_y = _numeric_column(path, target, tab.cols[target], decimal, "--target")
    if bad_y:
        notes.append(f"{bad_y} row(s) with an empty or non-numeric {target!r}, treated as missing")
    num_cols: list[np.ndarray] = []
    for c, flag in [*((c, "--feature") for c in features), *((c, "--mean-feature") for c in mean_features)]:
        x, bad = _numeric_column(path, c, tab.cols[c], decimal, flag)
        if bad:
            notes.append(f"{bad} row(s) with an empty or non-numeric {c!r}, treated as missing")
        num_cols.append(x)
    train_raw = t0 < train_until
    if train_from is not None:
        train_raw &= t0 >= train_from
    if not train_raw.any():
        raise InputError(f"{path}: no rows before the end of the training period; check --train-until")
    ind_names: list[str] = []
    ind_cols: list[np.ndarray] = []
    for c in cats:
        names, M, unseen = _category_columns(path, c, tab.cols[c], train_raw)
        ind_names += names
        ind_cols += [M[:, j] for j in range(M.shape[1])]
        if unseen:
            notes.append(f"{unseen} reporting row(s) with a {c!r} value the training period never had: not predicted")
    names_all = [*features, *mean_features, *ind_names]
    X = np.column_stack(num_cols + ind_cols) if (num_cols or ind_cols) else np.zeros((t0.size, 0))
    ts = t0
    if aggregate:
        if aggregate not in ("hour", "day", "week", "month"):
            raise InputError(f"--aggregate must be hour, day, week or month, not {aggregate!r}")
        how = ["sum"] * (1 + len(features)) + ["mean"] * (len(mean_features) + len(ind_names))
        ts, Y, texts = _aggregate(t0, np.column_stack([y, X]), how, aggregate, tz)
        y, X = Y[:, 0], Y[:, 1:]
        step = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "month": 30 * 86400.0}[aggregate]
    else:
        texts = tab.texts
    interval = resolution_name(step)
    train = ts < train_until
    if train_from is not None:
        train &= ts >= train_from
    test = ts >= train_until
    n_train = int((train & np.isfinite(y)).sum())
    if n_train < 3:
        raise InputError(f"{path}: {n_train} row(s) with a value of {target!r} in the training period; a baseline needs data to learn from")
    kind = model
    if kind == "auto":
        kind = "time-of-week" if step < 7 * 86400 else "regression"
    if kind == "time-of-week":
        days = float(ts[train].max() - ts[train].min()) / 86400 + step / 86400
        need = 21 if step >= 86400 else 7
        if days < need:
            raise InputError(f"{path}: the training period covers {days:.3g} day(s); a time-of-week baseline needs at least {need} "
                             "(every weekday seen more than once) — give a longer training period or --model regression")
    cal = Calendar(tz, holidays)
    try:
        if kind == "time-of-week":
            sel = select_time_of_week(ts[train], X[train], y[train], names_all, calendar=cal, step=step, temperature=mean_features,
                                      indicators=ind_names, operating=operating_days, alphas=ALPHAS,
                                      temp_forms=("segments", "linear") if change_point else ("linear",))
            b: Any = sel.model
            yop = y if b.operating.mode == "energy" else None
            expected = b.predict(ts, X, yop)
            naive_model = NaiveTimeOfWeek(b, ts[train], y[train], yop[train] if yop is not None else None)
            naive = naive_model.predict(ts, yop)
            cv_pred = np.full(ts.size, np.nan)
            cv_pred[train] = sel.oof
            cv_naive = np.full(ts.size, np.nan)
            cv_naive[train] = sel.naive_oof
            best = min(sel.scores, key=lambda r: r[2])
            selection = (f"penalty α = {best[1]:g}" + (f" (× {best[3]:g} on the finest time-of-week cells)" if best[3] != 1.0 else "")
                         + (f" (× {best[4]:g} on the weekday levels)" if best[4] != 1.0 else "")
                         + (f", temperature {best[0]}" if mean_features else "")
                         + f", chosen by blocked cross-validation over {int(np.unique(sel.folds).size)} {sel.fold_kind} of the training period "
                         f"({len(sel.scores)} candidates)")
            ann.append(b.operating.note)
            if holidays:
                n_h = int((cal.rows(ts[train]).wk == HOLIDAY).sum())
                ann.append(f"public holidays: {holidays} ({n_h} training row(s) on a holiday)")
        else:
            reg_names = [*features, *mean_features, *ind_names]
            # One level of each category is the reference (its effect is in the intercept).
            drop = {next(n for n in ind_names if n.startswith(c + "=")) for c in cats}
            use = [i for i, n in enumerate(reg_names) if n not in drop]
            # A category whose shares do not vary between periods (a tariff schedule summed to days)
            # explains nothing at this resolution: left out, with a note, not refused.
            const = {reg_names[i] for i in use if reg_names[i] in ind_names and np.nanmax(X[train][:, i]) - np.nanmin(X[train][:, i]) <= 1e-12}
            for c in cats:
                gone = [n for n in const if n.startswith(c + "=")]
                if gone:
                    notes.append(f"category {c!r}: {', '.join(sorted(gone))} has the same share in every {interval} period of the training data; left out")
            use = [i for i in use if reg_names[i] not in const]
            b = fit_baseline(X[train][:, use], y[train], [reg_names[i] for i in use], change_point=mean_features if change_point else ())
            expected = np.maximum(0.0, b.predict(np.where(np.isfinite(X[:, use]), X[:, use], np.nan)))
            spec = time_of_week_spec(ts[train], np.zeros((int(train.sum()), 0)), y[train], [], calendar=cal, step=step, operating="off")
            naive = NaiveTimeOfWeek(spec, ts[train], y[train]).predict(ts)
            cv_pred, cv_naive = np.full(ts.size, np.nan), np.full(ts.size, np.nan)
            selection = "least squares on the variables (ISO 50006 regression)"
            if step < 27 * 86400 and train.sum() >= 12:
                folds, fk = blocked_folds(ts[train], tz, step)
                idx = np.nonzero(train)[0]
                for f in np.unique(folds):
                    tr, te = idx[folds != f], idx[folds == f]
                    try:
                        bf = fit_baseline(X[tr][:, use], y[tr], [reg_names[i] for i in use], change_point=mean_features if change_point else ())
                    except BaselineError:
                        continue
                    cv_pred[te] = np.maximum(0.0, bf.predict(X[te][:, use]))
                    sp = time_of_week_spec(ts[tr], np.zeros((tr.size, 0)), y[tr], [], calendar=cal, step=step, operating="off")
                    cv_naive[te] = NaiveTimeOfWeek(sp, ts[tr], y[tr]).predict(ts[te])
                selection += f"; checked by blocked cross-validation over {int(np.unique(folds).size)} {fk}"
    except BaselineError as e:
        raise InputError(f"{path}: {e}") from None
    n_neg_clipped = None
    rows: list[FitRow] = []
    fit_in = b.fit
    rows.append(FitRow("training, in sample", interval, fit_in, None))
    levels = [interval]
    span = float(ts.max() - ts.min()) if ts.size else 0.0
    if step < 3600 and interval != "hourly":
        levels.append("hourly")
    if step < 86400:
        levels.append("daily")
    if step < 27 * 86400 and span >= 58 * 86400:
        levels.append("monthly")
    period_of = {"hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month"}
    for label, sel_rows, pred, ref in (("training, blocked CV", train, cv_pred, cv_naive), ("reporting period", test, expected, naive)):
        if not sel_rows.any() or not np.isfinite(pred[sel_rows]).any():
            continue
        for lev in levels:
            if lev == interval:
                yy, pp, rr = y[sel_rows], pred[sel_rows], ref[sel_rows]
                ok = np.isfinite(yy) & np.isfinite(pp) & np.isfinite(rr)
                yy, pp, rr = yy[ok], pp[ok], rr[ok]
            else:
                yy, pp, rr = _rollup(ts[sel_rows], [y[sel_rows], pred[sel_rows], ref[sel_rows]], period_of[lev], tz)
            fm, fn = out_of_sample_fit(yy, pp), out_of_sample_fit(yy, rr)
            if fm is None and fn is None:
                continue  # fewer than 3 points at this resolution: no figure
            rows.append(FitRow(label, lev, fm, fn))
            if 0 < yy.size < 6 and lev == "monthly":
                notes.append(f"{label}: only {yy.size} monthly point(s); the monthly figures rest on few points")
    test_fit = next((r.model for r in rows if r.label == "reporting period" and r.resolution == interval), None)
    savings = expected_total = actual_total = unc = None
    ok_test = test & np.isfinite(y) & np.isfinite(expected)
    if ok_test.any():
        expected_total = float(expected[ok_test].sum())
        actual_total = float(y[ok_test].sum())
        savings = expected_total - actual_total
        resid_train = y[train] - np.where(np.isfinite(expected[train]), expected[train], np.nan)
        if expected_total > 0:
            unc = savings_uncertainty(resid_train, float(fit_in.p), float(np.nanmean(y[train])), int(ok_test.sum()),
                                      savings / expected_total, interval)
    elif test.any():
        notes.append(f"only {int(ok_test.sum())} complete row(s) after the training period; no out-of-sample figures")
    neg = int((np.isfinite(expected) & (expected == 0) & np.isfinite(y) & (y > 0)).sum())
    if neg:
        n_neg_clipped = neg
        notes.append(f"{n_neg_clipped} row(s) predicted at zero (a prediction below zero is held at zero: energy is never negative)")
    cvr = next((r for r in rows if r.label == "training, blocked CV" and r.resolution == interval), None)
    if cvr and cvr.model and cvr.naive and cvr.naive.cv_rmse > 1e-6 and cvr.model.cv_rmse >= cvr.naive.cv_rmse:
        notes.append("out of sample the model is no better than the naive time-of-week reference: it does not earn its keep on these data")
    if kind == "regression" and b.fit.r2 < R2_MIN and names_all:
        notes.append(f"R² {b.fit.r2:.2f} is below {R2_MIN} on the training period: the variables explain little of the energy (ISO 50006 screening [M3])")
    if out is not None:
        cs = np.full(ts.size, np.nan)
        cs[test] = cusum(expected[test], y[test])
        with Path(out).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([time_col, "period", target, "expected", "naive", "residual", "cusum_savings"])
            for i in range(ts.size):
                w.writerow([texts[i], "train" if train[i] else ("report" if test[i] else "excluded"), _fmt(y[i]), _fmt(expected[i]),
                            _fmt(naive[i]), _fmt(y[i] - expected[i]), _fmt(cs[i])])
    return BaselineReport(b, interval, interval, fit_in, test_fit, int(test.sum()), savings, notes, rows, kind, selection,
                          expected_total, actual_total, unc, ann)


def _fmt(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.6g}"


def _r2(x: float) -> str:
    return f"{x:>6.3f}" if math.isfinite(x) else f"{'—':>6}"


def format_baseline(rep: BaselineReport, target: str) -> str:
    """The baseline report as a plant engineer reads it."""
    buf = io.StringIO()
    p = buf.write
    if rep.model_kind == "time-of-week":
        p(f"Baseline ({rep.interval} data, time-of-week model): {rep.baseline.describe()}\n")
    else:
        p(f"Baseline ({rep.interval} data, ISO 50006 regression):  {rep.baseline.equation(target)}\n")
        for t in getattr(rep.baseline, "terms", []):
            if isinstance(t, Hinge):
                side = "below" if t.kind == "heating" else "above"
                p(f"  change point ({t.kind} side): this term counts only {t.feature} {side} {t.balance:.4g}\n")
    if rep.selection:
        p(f"  {rep.selection}\n")
    for a in rep.announcements:
        p(f"  {a}\n")
    p("\n")
    p(f"{'':<21} {'':<9} {'':>7}  {'model':^24}  {'naive time-of-week':^24}\n")
    p(f"{'points':<21} {'at':<9} {'n':>7}  {'CV(RMSE)':>9} {'NMBE':>7} {'R²':>6}  {'CV(RMSE)':>9} {'NMBE':>7} {'R²':>6}  limit\n")
    for r in rep.rows:
        m, nv = r.model, r.naive
        n = m.n if m else (nv.n if nv else 0)
        ms = f"{m.cv_rmse:>9.1%} {m.nmbe:>+7.1%} {_r2(m.r2)}" if m else f"{'—':>9} {'—':>7} {'—':>6}"
        ns = f"{nv.cv_rmse:>9.1%} {nv.nmbe:>+7.1%} {_r2(nv.r2)}" if nv else f"{'—':>9} {'—':>7} {'—':>6}"
        lim = ashrae14_limit(r.resolution)
        lt = "no published limit" if lim is None else f"{m.verdict(r.resolution) if m else '—'} ASHRAE 14 ({lim[0]:.0%}, ±{lim[1]:.0%})"
        p(f"{r.label:<21} {r.resolution:<9} {n:>7}  {ms}  {ns}  {lt}\n")
    p(f"\nIn sample, p = {rep.train.p:.1f} (effective) parameters are taken from the degrees of freedom; out-of-sample points spend none.\n"
      if rep.model_kind == "time-of-week" else f"\nIn sample, p = {rep.train.p:g} parameters are taken from the degrees of freedom; out-of-sample points spend none.\n")
    if rep.savings is not None and rep.expected_total:
        frac = rep.savings / rep.expected_total
        unc = f", ±{rep.uncertainty:.0%} of the savings at 90 % confidence (ASHRAE 14)" if rep.uncertainty is not None else ""
        p(f"Reporting period: adjusted baseline {rep.expected_total:,.1f}, metered {rep.actual_total:,.1f}; "
          f"savings (expected − actual, CUSUM end value) {rep.savings:,.1f} {target} units = {frac:.1%}{unc}\n")
    for n in rep.notes:
        p(f"note: {n}\n")
    return buf.getvalue()
