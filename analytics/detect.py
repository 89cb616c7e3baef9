"""Causal, streaming multivariate anomaly detection, aware of production state.

:class:`StreamingDetector` sees one row at a time and never looks ahead: the score of row *t* is a
function of rows ``0 … t`` only. It works in two phases.

1. **Learning** (the first ``learn_rows`` rows, or every row before ``learn_until``): rows are
   collected and scored 0. This period must be normal operation.
2. **Scoring**: at the first row after learning, the detector fits, on the learning rows only,

   * an optional *production model*: a linear regression of each value on the context columns
     (production rate, running flag, line speed …). The detector then watches the residual
     ``value − expected value for this production state``: a furnace drawing power while melting
     is expected, the same power while producing nothing is a residual;
   * a standardisation and a shrunk covariance (Ledoit–Wolf, scikit-learn) of the exponentially
     smoothed residuals, and the Hotelling T² statistic on them.

   The alert threshold is ``margin ×`` the largest T² seen during learning. Each row's score is
   ``T² / (T² + threshold)``, in [0, 1) and 0.5 exactly at the threshold.

Exponential smoothing (weight ``smoothing`` on the newest row) trades a few rows of delay for far
fewer false alarms on noisy meters; it is causal. Missing values (NaN) leave the smoothed state of
that column unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LinearRegression

from carbonedge.errors import CarbonEdgeError


class DetectorError(CarbonEdgeError):
    """The detector cannot learn from the data it was given (too few rows, no usable column)."""

    code = "analytics.detector"


@dataclass(frozen=True)
class DetectorSettings:
    """Tuning of :class:`StreamingDetector`; the defaults are meant to work without tuning.

    ``learn_rows``: rows of normal operation to learn from (at least ~10 per value column).
    ``smoothing``: EWMA weight of the newest row, 0 < smoothing ≤ 1 (1 = no smoothing).
    ``margin``: threshold as a multiple of the largest learning-period T².
    """

    learn_rows: int = 400
    smoothing: float = 0.2
    margin: float = 2.0

    def __post_init__(self) -> None:
        if self.learn_rows < 10:
            raise DetectorError(f"learn_rows={self.learn_rows}: at least 10 rows of normal operation are needed")
        if not 0 < self.smoothing <= 1:
            raise DetectorError(f"smoothing={self.smoothing}: must be in (0, 1]")
        if self.margin <= 0:
            raise DetectorError(f"margin={self.margin}: must be positive")


@dataclass(frozen=True)
class Score:
    """The detector's verdict on one row."""

    score: float  # in [0, 1); 0.5 at the alert threshold; 0 while learning
    alert: bool
    learning: bool
    t2: float  # raw Hotelling T² of the smoothed residuals (0 while learning)
    contributions: np.ndarray | None = None  # per value column, squared standardised residual


class StreamingDetector:
    """Learn normal operation from the first rows, then score each new row causally.

    ``n_values`` columns are watched; ``n_context`` optional columns describe the production state
    that explains them. Call :meth:`update` once per row, in time order.
    """

    def __init__(self, n_values: int, n_context: int = 0, settings: DetectorSettings | None = None) -> None:
        if n_values < 1:
            raise DetectorError("give at least one value column to watch")
        self.n_values, self.n_context = n_values, n_context
        self.settings = settings or DetectorSettings()
        self._rows: list[np.ndarray] = []
        self._ctx: list[np.ndarray] = []
        self._learning = True
        self._ewm: np.ndarray | None = None
        self._reg: LinearRegression | None = None
        self._mu = self._sd = self._loc = self._prec = None
        self.threshold = float("nan")

    @property
    def learning(self) -> bool:
        return self._learning

    def finish_learning(self) -> None:
        """End the learning period now (used when learning is bounded by time, not by row count)."""
        if not self._learning:
            return
        if len(self._rows) < 10:
            raise DetectorError(f"only {len(self._rows)} rows in the learning period; at least 10 rows of normal operation are needed")
        X = np.vstack(self._rows)
        C = np.vstack(self._ctx) if self.n_context else None
        resid = self._residuals_fit(X, C)
        # Replay the smoothing over the learning rows: the same recursion the scoring phase continues.
        sm = np.empty_like(resid)
        state = None
        for i, r in enumerate(resid):
            state = self._smooth(state, r)
            sm[i] = state
        usable = np.all(np.isfinite(sm), axis=1)
        if usable.sum() < 10:
            raise DetectorError("fewer than 10 learning rows have every value column filled; check the columns for gaps")
        sm_ok = sm[usable]
        self._mu = sm_ok.mean(axis=0)
        sd = sm_ok.std(axis=0)
        # A column that never moved while learning still gets a finite scale: any later movement is news.
        self._sd = np.maximum(sd, 1e-9 + 1e-6 * np.abs(self._mu))
        Z = (sm_ok - self._mu) / self._sd
        lw = LedoitWolf().fit(Z)
        self._loc, self._prec = lw.location_, lw.precision_
        t2 = np.einsum("ij,jk,ik->i", Z - self._loc, self._prec, Z - self._loc)
        self.threshold = float(self.settings.margin * max(float(t2.max()), 1e-12))
        self._ewm = state
        self._learning = False
        self._rows.clear()
        self._ctx.clear()

    def update(self, values: np.ndarray, context: np.ndarray | None = None) -> Score:
        """Feed one row (values, and context when ``n_context`` > 0); return its score."""
        x = np.asarray(values, dtype=np.float64).reshape(self.n_values)
        c = np.asarray(context, dtype=np.float64).reshape(self.n_context) if self.n_context else None
        if self._learning:
            self._rows.append(x)
            if c is not None:
                self._ctx.append(c)
            if len(self._rows) >= self.settings.learn_rows:
                self.finish_learning()
            return Score(0.0, False, True, 0.0)
        r = x - self._expected(c)
        self._ewm = self._smooth(self._ewm, r)
        z = (self._ewm - self._mu) / self._sd
        z = np.where(np.isfinite(z), z, 0.0)
        d = z - self._loc
        t2 = float(d @ self._prec @ d)
        score = t2 / (t2 + self.threshold)
        return Score(score, t2 > self.threshold, False, t2, contributions=z**2)

    # ------------------------------------------------------------------ internals

    def _smooth(self, state: np.ndarray | None, r: np.ndarray) -> np.ndarray:
        if state is None:
            return r.copy()
        a = self.settings.smoothing
        new = a * r + (1 - a) * state
        # NaN in this row: keep the column's previous state; NaN state: take the first value seen.
        new = np.where(np.isfinite(r), new, state)
        return np.where(np.isfinite(state), new, r)

    def _residuals_fit(self, X: np.ndarray, C: np.ndarray | None) -> np.ndarray:
        if C is None:
            return X
        ok = np.all(np.isfinite(C), axis=1) & np.all(np.isfinite(X), axis=1)
        if ok.sum() < 10:
            raise DetectorError("fewer than 10 learning rows have every value and context column filled")
        self._reg = LinearRegression().fit(C[ok], X[ok])
        # Keep plain arrays: one matrix product per row is far cheaper than sklearn's predict().
        self._coef = np.asarray(self._reg.coef_, dtype=np.float64).reshape(self.n_values, self.n_context)
        self._icpt = np.asarray(self._reg.intercept_, dtype=np.float64).reshape(self.n_values)
        expected = self._icpt + np.where(np.isfinite(C), C, 0.0) @ self._coef.T
        expected[~np.all(np.isfinite(C), axis=1)] = np.nan
        return X - expected

    def _expected(self, c: np.ndarray | None) -> np.ndarray:
        if self._reg is None or c is None:
            return np.zeros(self.n_values)
        if not np.all(np.isfinite(c)):
            return np.full(self.n_values, np.nan)
        return self._icpt + self._coef @ c
