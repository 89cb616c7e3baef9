"""Streaming anomaly detection that adapts: one learn-one / score-one API for every stream.

:class:`StreamingDetector` sees one row at a time, in arrival order, and never looks ahead: the
score of row *t* depends on rows ``0 … t`` only. It is used by ``carbonedge analyze detect`` (any
``time,value`` CSV, or several value columns with optional production-context columns), by the
live monitor and by the report, so there is one implementation of each idea.

How a row is scored
===================

For every value column the detector keeps, online:

* an **expected value**: a reference *level* (exponentially weighted, time-based half-life
  ``level_halflife_h``) plus, when the stream has one, a **seasonal profile** (time of day, or
  time of week) learned as a per-slot exponentially weighted mean of the deviation from the level.
  Seasonality is detected, not declared: the plain, daily and weekly predictors run side by side
  and the one with the smallest recent absolute error is used (a seasonal one only once it has seen
  two periods and is clearly better), as in additive Holt–Winters exponential smoothing
  (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., §8.3);
* a **robust spread** of the residual (exponentially weighted mean absolute deviation, updated with
  residuals clipped at 3 spreads so a fault does not widen its own yardstick — a Huber-type
  update, Huber & Ronchetti, *Robust Statistics*, 2009);
* a **production model** when context columns (production rate, running flag …) are given: a
  linear regression of each value on the context, fitted on the learning rows, so the detector
  watches ``value − expected value for this production state`` (a furnace drawing power while
  melting is expected; the same power while producing nothing is a residual).

Each row's standardised residuals ``z`` feed up to four statistics: a *point* statistic (the root
mean square of the √n largest |z|: spikes, one bad reading), a *sustained* one (the same on
exponentially smoothed residuals, weight ``smoothing``: level shifts and slow leaks that stay
within the noise of single rows), with several columns *Hotelling T²* of the smoothed
residuals with a Ledoit–Wolf shrunk covariance learned in the warm-up (a broken relation between
columns) and, with three or more, a *reconstruction* statistic: the largest scaled error of the
row's reconstruction from the principal subspace of the columns (:class:`_Subspace`; columns
scaled by their range, not their spread, so a near-constant column is not hypersensitive). Each statistic's alert threshold is ``margin ×`` its 99.9th percentile over recent normal
rows (the learning rows first, then a rolling window of rows that raised no alert), never below a
floor in spreads, so the threshold carries the stream's own noise and tail; the score is
``r / (1 + r)`` with ``r`` the largest statistic-to-threshold ratio: in [0, 1), exactly 0.5 at the
alert threshold, the same meaning for every stream.

Adaptation with a bound
=======================

The level follows slow change (half-life ``level_halflife_h``), so drift does not alert forever. A
*lasting* step is accepted as the new normal after ``accept_after_h`` of continuous alert: the
level is reset to the recent mean and the alert ends, with a note. A spike never lasts that long,
and a slow leak that keeps growing keeps crossing the threshold again, so both are still caught.

Arrival order
=============

Rows are processed as they come. A time that goes backwards or repeats (a DST fall-back, an NTP
step, a re-sent row) is not refused and not reordered: it is counted, and the row is scored with
no time elapsed. Missing values (NaN) leave that column's state unchanged; irregular sampling is
handled because every rate is a half-life in time, not in rows.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from carbonedge.errors import CarbonEdgeError

LN2 = math.log(2.0)
DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
#: Slots of the seasonal profiles: half-hours of the day, hours of the week.
#: Each statistic's threshold is ``margin ×`` this quantile of it over recent normal rows.
THRESHOLD_QUANTILE = 0.999
DAY_SLOTS = 48
WEEK_SLOTS = 168


class DetectorError(CarbonEdgeError):
    """The detector cannot learn from the data it was given (too few rows, no usable column)."""

    code = "analytics.detector"


@dataclass(frozen=True)
class DetectorSettings:
    """Tuning of :class:`StreamingDetector`. One set of defaults for all data; they are meant to work untuned.

    ``learn_rows``: rows that initialise the detector (scored 0; at least 10). Learning never stops:
    this is only the warm-up before scores are given.
    ``smoothing``: weight of the newest row in the sustained statistic, 0 < smoothing ≤ 1.
    ``margin``: alert threshold as a multiple of the statistic's 99.9th percentile over normal rows.
    ``level_halflife_h``: how fast the expected level follows slow change (hours).
    ``accept_after_h``: a change that keeps alerting this long becomes the new normal (hours).
    ``seasonality``: detect daily/weekly profiles (``auto``) or not (``none``).
    """

    learn_rows: int = 400
    smoothing: float = 0.2
    margin: float = 1.5
    level_halflife_h: float = 6.0
    accept_after_h: float = 1.0
    seasonality: str = "auto"
    #: Rows of recent normal statistics the threshold is taken from.
    history_rows: int = 5000
    #: With three or more value columns: share of the learning rows' variance the principal subspace
    #: of the reconstruction member keeps (0 turns the member off).
    subspace_variance: float = 0.9

    def __post_init__(self) -> None:
        if self.learn_rows < 10:
            raise DetectorError(f"learn_rows={self.learn_rows}: at least 10 rows of normal operation are needed")
        if not 0 < self.smoothing <= 1:
            raise DetectorError(f"smoothing={self.smoothing}: must be in (0, 1]")
        if not self.margin > 0:
            raise DetectorError(f"margin={self.margin}: must be positive")
        if not self.level_halflife_h > 0:
            raise DetectorError(f"level_halflife_h={self.level_halflife_h}: must be positive")
        if not self.accept_after_h > 0:
            raise DetectorError(f"accept_after_h={self.accept_after_h}: must be positive")
        if not 0 <= self.subspace_variance < 1:
            raise DetectorError(f"subspace_variance={self.subspace_variance}: must be in [0, 1)")
        if self.seasonality not in ("auto", "none"):
            raise DetectorError(f"seasonality={self.seasonality!r}: use 'auto' or 'none'")


@dataclass(frozen=True)
class Score:
    """The detector's verdict on one row."""

    score: float  # in [0, 1); 0.5 at the alert threshold; 0 while learning
    alert: bool
    learning: bool
    statistic: float = 0.0  # the statistic over its threshold (score = r / (1 + r))
    contributions: np.ndarray | None = None  # per value column, squared standardised residual
    accepted: bool = False  # this row ended a lasting alert: the change is the new normal


# --------------------------------------------------------------------------- per-column state


class _Predictor:
    """Level + optional seasonal profile of one column (additive Holt–Winters without trend)."""

    __slots__ = ("period", "slots", "level", "season", "seen", "filled", "err")

    def __init__(self, period: float, slots: int) -> None:
        self.period = period
        self.slots = slots
        self.level = math.nan
        self.season = [0.0] * slots if slots else []
        self.seen = [0] * slots if slots else []
        self.filled = 0  # slots seen at least once
        self.err = math.nan  # exponentially weighted mean absolute one-step error

    def slot(self, t: float) -> int:
        return int((t % self.period) / self.period * self.slots) if self.slots else 0

    def expected(self, t: float) -> float:
        if not self.slots:
            return self.level
        k = self.slot(t)
        return self.level + (self.season[k] if self.seen[k] else 0.0)

    def ready(self, span: float) -> bool:
        """A seasonal predictor counts only after two whole periods, with every slot seen."""
        return not self.slots or (self.filled == self.slots and span >= 2 * self.period)

    def learn(self, t: float, x: float, a_level: float, a_err: float, a_season: float) -> None:
        level = self.level
        if level != level:  # NaN: the first value
            self.level = x
            return
        if not self.slots:
            e = x - level
            self.err = abs(e) if self.err != self.err else self.err + a_err * (abs(e) - self.err)
            self.level = level + a_level * e
            return
        k = int((t % self.period) / self.period * self.slots)
        seen = self.seen[k]
        s = self.season[k] if seen else 0.0
        e = x - level - s
        self.err = abs(e) if self.err != self.err else self.err + a_err * (abs(e) - self.err)
        if seen:
            s += a_season * ((x - level) - s)
        else:
            s = x - level
            self.filled += 1
        self.season[k] = s
        self.seen[k] = seen + 1
        self.level = level + a_level * ((x - s) - level)


class _Column:
    """Everything the detector knows about one value column."""

    __slots__ = ("preds", "active", "spread", "ewz", "fast", "fastres", "fastdev")

    def __init__(self, seasonal: bool) -> None:
        self.preds = [_Predictor(1.0, 0)]
        if seasonal:
            self.preds += [_Predictor(DAY_S, DAY_SLOTS), _Predictor(WEEK_S, WEEK_SLOTS)]
        self.active = 0
        self.spread = math.nan  # robust scale of the active predictor's residual
        self.ewz = 0.0  # smoothed standardised residual
        self.fast = math.nan  # short-term mean of the value (what a lasting change is reset to)
        self.fastres = math.nan  # short-term mean of the residual against the expected value
        self.fastdev = 0.0  # short-term mean absolute deviation of the residual from that mean (the spread a lasting change brings)


# --------------------------------------------------------------------------- thresholds


class _Threshold:
    """``margin ×`` the 99.9th percentile of a statistic over recent normal rows (never below ``floor``), refreshed as rows arrive."""

    __slots__ = ("hist", "margin", "value", "since", "floor")

    def __init__(self, margin: float, rows: int, floor: float) -> None:
        self.hist: deque[float] = deque(maxlen=rows)
        self.margin = margin
        #: Never below this (in spreads): a stream that was flat while learning must not alert on every later wiggle.
        self.floor = floor
        self.value = math.inf
        self.since = 0

    def add(self, s: float) -> None:
        self.hist.append(s)
        self.since += 1
        if self.since >= max(50, len(self.hist) // 10):
            self.refresh()

    def refresh(self) -> None:
        self.since = 0
        if len(self.hist) >= 10:
            q = float(np.quantile(np.fromiter(self.hist, float), THRESHOLD_QUANTILE))
            self.value = max(self.margin * q, self.floor)


# --------------------------------------------------------------------------- reconstruction member


class _Subspace:
    """Principal-subspace reconstruction of the value columns (multivariate statistical process
    control's SPE/Q idea: Jackson & Mudholkar, *Technometrics* 21, 1979; kept up to date online as in
    recursive PCA, Li, Yue, Valle-Cervantes & Qin, *J. Process Control* 10, 2000).

    Each column that varied while learning is scaled by the central 99.8 % range of its learning
    values (so a near-constant column does not become hypersensitive, as it would in spreads), the
    principal directions holding ``variance`` of the learning rows' variance are kept, and a row's
    statistic is the largest absolute scaled reconstruction error over the columns: a value that
    breaks the relations between columns, even within each column's own range. The mean and the
    covariance follow rows judged normal (exponentially weighted); the directions are recomputed
    every ``REFRESH`` such rows.
    """

    REFRESH = 500

    __slots__ = ("cols", "scale", "mean", "cov", "basis", "variance", "since", "n_values", "complete")

    def __init__(self, X: np.ndarray, variance: float) -> None:
        self.n_values = X.shape[1]
        self.variance = variance
        lo, hi = np.nanquantile(X, 0.001, axis=0), np.nanquantile(X, 0.999, axis=0)
        rng = hi - lo
        full = np.nanmax(X, axis=0) - np.nanmin(X, axis=0)
        rng = np.where(rng > 0, rng, full)
        self.cols = np.nonzero(np.isfinite(rng) & (rng > 0))[0]
        self.scale = rng[self.cols]
        Z = X[:, self.cols] / self.scale
        Z = Z[np.all(np.isfinite(Z), axis=1)]
        self.complete = len(Z)
        self.mean = Z.mean(axis=0) if len(Z) else np.zeros(self.cols.size)
        D = Z - self.mean
        self.cov = D.T @ D / max(len(Z) - 1, 1)
        self.basis = np.zeros((self.cols.size, 0))
        self.since = 0
        self._eig()

    @property
    def usable(self) -> bool:
        """At least three varying columns, and enough warm-up rows with all of them filled to estimate their covariance."""
        return self.cols.size >= 3 and self.complete >= max(30, 2 * self.cols.size)

    def _eig(self) -> None:
        w, v = np.linalg.eigh(self.cov)
        w, v = w[::-1], v[:, ::-1]
        tot = float(w.sum())
        if tot <= 0:
            self.basis = np.zeros((self.cols.size, 0))
            return
        k = int(np.searchsorted(np.cumsum(w) / tot, self.variance) + 1)
        self.basis = v[:, :min(k, self.cols.size - 1)]

    def error(self, x: np.ndarray) -> np.ndarray:
        """Scaled reconstruction error per watched column (0 where the value is missing)."""
        d = x[self.cols] / self.scale - self.mean
        miss = d != d
        if miss.any():
            d = np.where(miss, 0.0, d)
        e = d - self.basis @ (self.basis.T @ d)
        if miss.any():
            e[miss] = 0.0
        return e

    def learn(self, x: np.ndarray, a: float) -> None:
        z = x[self.cols] / self.scale
        if not np.all(np.isfinite(z)) or a <= 0:
            return
        d = z - self.mean
        self.mean += a * d
        self.cov += a * (np.outer(d, d) - self.cov)
        self.since += 1
        if self.since >= self.REFRESH:
            self.since = 0
            self._eig()


# --------------------------------------------------------------------------- the detector


class StreamingDetector:
    """Adaptive streaming detector over ``n_values`` columns, optionally explained by ``n_context`` columns.

    River-style API: :meth:`score_one` scores a row without learning from it, :meth:`learn_one`
    learns from it; :meth:`update` does both in that order (prequential: a row never helps to score
    itself) and is what the CLI, the monitor and the report call, once per row, in arrival order.
    """

    # Defaults for detectors pickled before the reconstruction member existed (a monitor's state file).
    _sub: _Subspace | None = None
    _sub_stat = 0.0
    _replaying = False

    def __init__(self, n_values: int, n_context: int = 0, settings: DetectorSettings | None = None) -> None:
        if n_values < 1:
            raise DetectorError("give at least one value column to watch")
        self.n_values, self.n_context = n_values, n_context
        self.settings = st = settings or DetectorSettings()
        self._cols = [_Column(st.seasonality == "auto") for _ in range(n_values)]
        self._learning = True
        self._buf: list[tuple[float, np.ndarray, np.ndarray | None]] = []
        self._coef: np.ndarray | None = None
        self._icpt: np.ndarray | None = None
        self._t_first: float | None = None
        self._t_last: float | None = None
        # Floors: 3 spreads for one row, 1 for the smoothed residual (3 standard deviations of white
        # noise smoothed with weight 0.2), the number of columns for T² (its mean under normal noise).
        self._th_point = _Threshold(st.margin, st.history_rows, 3.0)
        self._th_sust = _Threshold(st.margin, st.history_rows, 1.0)
        self._th_t2 = _Threshold(st.margin, st.history_rows, float(n_values))
        self._prec: np.ndarray | None = None  # precision matrix of the smoothed residuals (several columns)
        self._sub: _Subspace | None = None  # reconstruction member (three or more columns)
        self._th_sub = _Threshold(st.margin, st.history_rows, 0.0)
        self._sub_stat = 0.0
        self._sub_err = np.zeros(0)
        self._replaying = False
        self._alert_since: float | None = None
        self._rates: tuple[float, ...] = (math.nan,)
        self._top = max(1, int(math.ceil(math.sqrt(n_values))))
        self.backward_times = 0
        self.repeated_times = 0
        self.accepted_changes = 0
        self.rows = 0
        #: Residual of the first value column against its expected value, for the last scored row (NaN before).
        self.last_residual = math.nan

    # ------------------------------------------------------------------ public API

    @property
    def learning(self) -> bool:
        return self._learning

    @property
    def threshold(self) -> float:
        """The point statistic's current alert threshold (for reports)."""
        return self._th_point.value

    def update(self, values: np.ndarray | list[float] | float, context: np.ndarray | list[float] | None = None, t: float | None = None) -> Score:
        """Score one row, then learn from it. ``t`` is its time in epoch seconds (row number when None)."""
        x = self._vec(values, self.n_values)
        c = self._vec(context, self.n_context) if self.n_context else None
        tt = float(self.rows) if t is None else float(t)
        self.rows += 1
        if self._learning:
            self._buf.append((tt, x, c))
            if len(self._buf) >= self.settings.learn_rows:
                self.finish_learning()
            return Score(0.0, False, True)
        dt = self._advance(tt)
        r = self._residual(x, c)
        stats = self._stats(tt, r)
        s = self._score_stats(stats)
        col = self._cols[0]
        self.last_residual = stats[2][0] * col.spread if col.spread == col.spread else math.nan
        self._learn(tt, dt, r, stats, alerting=s.alert)
        if s.alert:
            if self._alert_since is None:
                self._alert_since = tt
            elif tt - self._alert_since >= 3600.0 * self.settings.accept_after_h:
                self._accept()
                self._alert_since = None
                return Score(s.score, s.alert, False, s.statistic, s.contributions, accepted=True)
        else:
            self._alert_since = None
        return s

    def score_one(self, values: np.ndarray | list[float] | float, context: np.ndarray | list[float] | None = None, t: float | None = None) -> Score:
        """The row's score, without learning from it (0 while learning)."""
        if self._learning:
            return Score(0.0, False, True)
        x = self._vec(values, self.n_values)
        c = self._vec(context, self.n_context) if self.n_context else None
        tt = float(self.rows) if t is None else float(t)
        return self._score_stats(self._stats(tt, self._residual(x, c)))

    def learn_one(self, values: np.ndarray | list[float] | float, context: np.ndarray | list[float] | None = None, t: float | None = None) -> None:
        """Learn from one row (its score is still worked out: a row that alerts teaches the level nothing)."""
        self.update(values, context, t)

    def finish_learning(self) -> None:
        """End the warm-up now (used when it is bounded by time, not by row count)."""
        if not self._learning:
            return
        rows = self._buf
        if len(rows) < 10:
            raise DetectorError(f"only {len(rows)} rows in the learning period; at least 10 rows of normal operation are needed")
        X = np.vstack([r[1] for r in rows])
        if self.n_context:
            C = np.vstack([r[2] for r in rows])  # type: ignore[misc]
            ok = np.all(np.isfinite(C), axis=1) & np.all(np.isfinite(X), axis=1)
            if ok.sum() < 10:
                raise DetectorError("fewer than 10 learning rows have every value and context column filled")
            A = np.column_stack([np.ones(int(ok.sum())), C[ok]])
            beta, *_ = np.linalg.lstsq(A, X[ok], rcond=None)
            self._icpt, self._coef = beta[0], beta[1:].T
        usable = np.isfinite(X).any(axis=0)
        if not usable.any():
            raise DetectorError("no value column has a number in the learning period (only empty or text cells): watch a numeric column")
        # Initialise each column from the learning rows: level = median, spread = mean absolute
        # deviation from it; then replay the learning rows through the online
        # updates, collecting the statistics that seed the thresholds.
        self._learning = False
        R = [self._residual(x, c) for _, x, c in rows]
        for j, col in enumerate(self._cols):
            vals = np.array([r[j] for r in R])
            vals = vals[np.isfinite(vals)]
            if vals.size:
                med = float(np.median(vals))
                for p in col.preds:
                    p.level = med
                col.fast = med
                mad = float(np.mean(np.abs(vals - med)))
                col.spread = max(mad, 1e-9 + 1e-6 * abs(med))
        self._t_first = rows[0][0]
        self._t_last = None
        if self.n_values >= 3 and self.settings.subspace_variance > 0:
            sub = _Subspace(np.asarray(R, dtype=np.float64), self.settings.subspace_variance)
            if sub.usable:
                self._sub = sub
                self._th_sub.hist.extend(float(np.max(np.abs(sub.error(np.asarray(r, dtype=np.float64))))) for r in R)
                self._th_sub.refresh()
        ZS = []
        self._replaying = True  # the subspace and its threshold were fitted on these rows already
        for (tt, _x, _c), r in zip(rows, R, strict=True):
            dt = self._advance(tt)
            stats = self._stats(tt, r)
            ZS.append(stats[3])
            self._learn(tt, dt, r, stats, alerting=False)
        self._replaying = False
        if self.n_values > 1:
            from sklearn.covariance import LedoitWolf

            Z = np.asarray(ZS, dtype=np.float64)
            self._zloc = Z.mean(axis=0)
            self._zsd = np.maximum(Z.std(axis=0), 1e-6)
            Z = (Z - self._zloc) / self._zsd
            self._prec = LedoitWolf(assume_centered=True).fit(Z).precision_
            self._th_t2.hist.extend(np.einsum("ij,jk,ik->i", Z, self._prec, Z).tolist())
            self._th_t2.refresh()
        self._th_point.refresh()
        self._th_sust.refresh()
        self._buf = []
        # Rows replayed above were counted by _advance; count only true arrivals.
        self.backward_times = self.repeated_times = 0

    def notes(self) -> list[str]:
        """What the detector handled on the way (backward or repeated times, accepted changes)."""
        out = []
        if self.backward_times:
            out.append(f"{self.backward_times} row(s) stamped earlier than the row before (clock step, DST); scored in arrival order as no time elapsed")
        if self.repeated_times:
            out.append(f"{self.repeated_times} row(s) with the same time as the row before; scored in arrival order")
        if self.accepted_changes:
            out.append(f"{self.accepted_changes} lasting change(s) accepted as the new normal after {self.settings.accept_after_h:g} h of alert")
        return out

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _vec(v: object, n: int) -> np.ndarray:
        if isinstance(v, float | int):
            v = [float(v)]
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.size != n:
            raise DetectorError(f"expected {n} value(s) per row, got {a.size}")
        return a

    def _advance(self, t: float) -> float:
        """Time elapsed since the previous row (0 for a time that went back or repeated)."""
        last = self._t_last
        if last is None:
            self._t_last = t
            return 0.0
        dt = t - last
        if dt < 0:
            self.backward_times += 1
            return 0.0
        if dt == 0:
            self.repeated_times += 1
            return 0.0
        self._t_last = t
        return dt

    def _residual(self, x: np.ndarray, c: np.ndarray | None) -> list[float]:
        if self._coef is None or c is None:
            return x.tolist()
        if not np.all(np.isfinite(c)):
            return [math.nan] * self.n_values
        return (x - (self._icpt + self._coef @ c)).tolist()

    def _stats(self, t: float, r: list[float]) -> tuple[float, float, list[float], list[float], float]:
        """(point statistic, sustained statistic, z per column, smoothed z per column) for residuals ``r``."""
        a = self.settings.smoothing
        z = []
        zs = []
        for col, v in zip(self._cols, r, strict=True):
            if v != v or col.spread != col.spread:
                z.append(0.0)
                zs.append(col.ewz)
                continue
            e = (v - col.preds[col.active].expected(t)) / col.spread
            z.append(e)
            zs.append(col.ewz + a * (e - col.ewz))
        k = self._top
        if len(z) == 1:
            return abs(z[0]), abs(zs[0]), z, zs, 0.0
        q = sorted((e * e for e in z), reverse=True)[:k]
        qs = sorted((e * e for e in zs), reverse=True)[:k]
        t2 = 0.0
        if self._prec is not None:
            v = (np.array(zs) - self._zloc) / self._zsd
            t2 = float(v @ self._prec @ v)
        if self._sub is not None:
            e = self._sub.error(np.asarray(r, dtype=np.float64))
            self._sub_err = e
            self._sub_stat = float(np.max(np.abs(e))) if e.size else 0.0
        return math.sqrt(sum(q) / k), math.sqrt(sum(qs) / k), z, zs, t2

    def _score_stats(self, stats: tuple[float, float, list[float], list[float], float]) -> Score:
        sp, ss, z, zs, t2 = stats
        rp = sp / self._th_point.value
        rs = ss / self._th_sust.value
        rt = t2 / self._th_t2.value if self._prec is not None else 0.0
        rq = self._sub_stat / self._th_sub.value if self._sub is not None else 0.0
        ratio = max(rp, rs, rt, rq)
        score = ratio / (1.0 + ratio) if math.isfinite(ratio) else 1.0
        alert = ratio > 1.0
        contrib = None
        if alert:
            if self._sub is not None and rq >= max(rp, rs, rt):
                contrib = np.zeros(self.n_values)
                contrib[self._sub.cols] = self._sub_err ** 2
            else:
                contrib = np.array(zs if rs > rp else z) ** 2
        return Score(score, alert, False, ratio, contributions=contrib)

    def _learn(self, t: float, dt: float, r: list[float], stats: tuple[float, float, list[float], list[float], float], *, alerting: bool) -> None:
        if dt != self._rates[0]:
            st = self.settings
            self._rates = (dt, *(1.0 - 2.0 ** (-dt / h) if dt > 0 else 0.0 for h in (
                3600.0 * st.level_halflife_h, 900.0 * st.accept_after_h, 14_400.0 * st.level_halflife_h, DAY_S,
                # Each visit of a seasonal slot moves it by about a fifth, whatever the sampling rate.
                DAY_S / DAY_SLOTS / 3.0, WEEK_S / WEEK_SLOTS / 3.0)))
        _, a_level, a_fast, a_spread, a_err, a_day, a_week = self._rates
        a_season = (0.0, a_day, a_week)
        span = t - (self._t_first if self._t_first is not None else t)
        sp, ss, z, zs, t2 = stats
        if not alerting:
            self._th_point.add(sp)
            self._th_sust.add(ss)
            if self._prec is not None:
                self._th_t2.add(t2)
            if self._sub is not None and not self._replaying:
                self._th_sub.add(self._sub_stat)
                self._sub.learn(np.asarray(r, dtype=np.float64), a_spread)
        choose = self.rows % 64 == 0
        clip = 3.0
        for col, v, e, es in zip(self._cols, r, z, zs, strict=True):
            if v != v:
                continue
            col.ewz = es
            col.fast = v if col.fast != col.fast else col.fast + a_fast * (v - col.fast)
            if col.spread == col.spread:
                res = e * col.spread
                if col.fastres != col.fastres:
                    col.fastres = res
                else:
                    d = res - col.fastres
                    col.fastdev += a_fast * ((-d if d < 0 else d) - col.fastdev)
                    col.fastres += a_fast * d
            # Spread: mean absolute residual, each residual clipped so a fault cannot widen it fast.
            if col.spread == col.spread:
                ae = -e if e < 0 else e
                col.spread += a_spread * ((ae if ae < clip else clip) * col.spread - col.spread)
            # While alerting the level does not chase the fault (it is accepted explicitly, or not at all).
            if not alerting:
                for i, p in enumerate(col.preds):
                    p.learn(t, v, a_level, a_err, a_season[i])
            # Use a seasonal predictor once it has seen two periods and is clearly better.
            if choose:
                best = 0
                for i, p in enumerate(col.preds[1:], start=1):
                    if p.ready(span) and not math.isnan(p.err) and p.err < 0.8 * col.preds[best].err:
                        best = i
                col.active = best

    def _accept(self) -> None:
        """A lasting change: make the recent level the expected one and forget the smoothed residual."""
        self.accepted_changes += 1
        for col in self._cols:
            if math.isnan(col.fast):
                continue
            for p in col.preds:
                if not math.isnan(p.level):
                    # Keep the seasonal shape, move the level so the recent mean is expected.
                    p.level = col.fast - (sum(p.season) / len(p.season) if p.slots and all(p.seen) else 0.0)
            col.ewz = 0.0
            # A new operating point may be far noisier than the old one (a machine that was off is now
            # running): when the last hour's residuals scattered over ten times the spread, take theirs.
            if col.spread == col.spread and col.fastdev > 10.0 * col.spread:
                col.spread = col.fastdev
            col.fastres = math.nan
        if self._sub is not None:
            fast = np.array([self._cols[j].fast for j in self._sub.cols]) / self._sub.scale
            self._sub.mean = np.where(np.isfinite(fast), fast, self._sub.mean)


# --------------------------------------------------------------------------- episodes over a series


@dataclass(frozen=True)
class Episode:
    """A run of consecutive alerting rows of a series scored by :func:`alert_episodes`."""

    start: float  # time of the first alerting row
    end: float  # time of the last alerting row
    rows: int
    peak_score: float
    excess: float  # Σ (value − expected) over the episode's rows, in the value's unit (context member only)
    accepted: bool  # ended because the change was accepted as the new normal


def alert_episodes(times: np.ndarray, values: np.ndarray, context: np.ndarray | None = None, *, learn_until: float,
                   settings: DetectorSettings | None = None) -> list[Episode]:
    """Score one series with :class:`StreamingDetector` (the same detector as ``analyze detect``) and
    return its alert episodes after ``learn_until``.

    ``context`` (rows × k) explains the values, e.g. a process model's expected energy or the
    production per bin: the detector's production member then watches the residual. Rows before
    ``learn_until`` are the warm-up (at least 10 are needed; fewer gives no episodes).
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    c = None if context is None else np.asarray(context, dtype=np.float64).reshape(len(v), -1)
    if int((t < learn_until).sum()) < 10:
        return []
    det = StreamingDetector(1, 0 if c is None else c.shape[1], replace(settings or DetectorSettings(), learn_rows=10**12))
    out: list[Episode] = []
    cur: list[Any] | None = None
    for i in range(len(v)):
        if det.learning and t[i] >= learn_until:
            det.finish_learning()
        s = det.update([v[i]], None if c is None else c[i], t=t[i])
        if s.alert:
            if cur is None:
                cur = [t[i], t[i], 0, 0.0, 0.0, False]
            cur[1], cur[2], cur[3] = t[i], cur[2] + 1, max(cur[3], s.score)
            cur[4] += det.last_residual if det.last_residual == det.last_residual else 0.0
            cur[5] = s.accepted
        if cur is not None and (not s.alert or s.accepted or i == len(v) - 1):
            out.append(Episode(*cur))
            cur = None
    return out
