"""Energy baselines per ISO 50006: regression on relevant variables, ASHRAE Guideline 14 fit, CUSUM.

An energy baseline (EnB) predicts what a process *would have used* in the reporting period under
the baseline period's performance, from the relevant variables of the reporting period
(production, degree-days, operating hours …) [M1]. The difference is the saving (IPMVP: savings =
baseline − reporting [M5]); its running sum is the CUSUM, whose slope changes when performance
changes [M7].

Goodness of fit follows ASHRAE Guideline 14 [M2], with ``p`` the number of model parameters::

    CV(RMSE) = sqrt( Σ (y − ŷ)² / (n − p) ) / ȳ
    NMBE     = Σ (y − ŷ) / ((n − p) · ȳ)
    R²       = 1 − Σ (y − ŷ)² / Σ (y − ȳ)²

Calibration limits: monthly CV(RMSE) ≤ 15 %, |NMBE| ≤ 5 %; hourly ≤ 30 %, ≤ 10 % [M2]. Regression
baselines are also screened at R² ≥ 0.75 [M3, M4].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression

from carbonedge.errors import CarbonEdgeError

#: ASHRAE Guideline 14 calibration limits [M2]: interval → (CV(RMSE) max, |NMBE| max), as fractions.
ASHRAE14_LIMITS: dict[str, tuple[float, float]] = {"monthly": (0.15, 0.05), "hourly": (0.30, 0.10)}
#: R² screening threshold for regression baselines [M3, M4].
R2_MIN = 0.75


class BaselineError(CarbonEdgeError):
    """A baseline cannot be fitted or applied (too few points, constant data, missing variables)."""

    code = "analytics.baseline"


@dataclass(frozen=True)
class Fit:
    """Goodness of fit of predictions ``ŷ`` against observations ``y`` (ASHRAE Guideline 14)."""

    n: int
    p: int
    cv_rmse: float
    nmbe: float
    r2: float
    mean: float

    def meets(self, interval: str = "hourly") -> bool:
        """True when CV(RMSE) and NMBE are within ASHRAE 14's limits for ``interval`` (hourly, monthly)."""
        cv_max, nmbe_max = ASHRAE14_LIMITS[interval]
        return bool(self.cv_rmse <= cv_max and abs(self.nmbe) <= nmbe_max)

    def as_dict(self) -> dict[str, float | int]:
        return {"n": self.n, "p": self.p, "cv_rmse": self.cv_rmse, "nmbe": self.nmbe, "r2": self.r2, "mean": self.mean}


def goodness_of_fit(y: np.ndarray, y_hat: np.ndarray, p: int) -> Fit:
    """CV(RMSE), NMBE and R² per ASHRAE Guideline 14, ``p`` = number of model parameters."""
    y = np.asarray(y, dtype=np.float64)
    y_hat = np.asarray(y_hat, dtype=np.float64)
    n = int(y.size)
    if n <= p:
        raise BaselineError(f"{n} points are too few to judge a model with {p} parameters")
    mean = float(y.mean())
    if mean == 0:
        raise BaselineError("the measured energy averages zero over the period; CV(RMSE) and NMBE are undefined")
    resid = y - y_hat
    dof = n - p
    cv = float(np.sqrt((resid**2).sum() / dof) / mean)
    nmbe = float(resid.sum() / (dof * mean))
    ss_tot = float(((y - mean) ** 2).sum())
    r2 = float(1.0 - (resid**2).sum() / ss_tot) if ss_tot > 0 else float("nan")
    return Fit(n=n, p=p, cv_rmse=cv, nmbe=nmbe, r2=r2, mean=mean)


@dataclass
class Baseline:
    """A fitted linear energy baseline ``E = b0 + Σ bi·xi`` (ISO 50006 regression EnB)."""

    features: list[str]
    intercept: float
    coefficients: list[float]
    fit: Fit
    trained_on: dict[str, Any] = field(default_factory=dict)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).reshape(-1, len(self.features)) if self.features else np.zeros((len(X), 0))
        return self.intercept + X @ np.asarray(self.coefficients, dtype=np.float64)

    def equation(self, target: str = "E") -> str:
        terms = [f"{self.intercept:,.4g}"] + [f"{c:+,.4g}·{f}" for f, c in zip(self.features, self.coefficients, strict=True)]
        return f"{target} = " + " ".join(terms)

    def as_dict(self) -> dict[str, Any]:
        return {"features": self.features, "intercept": self.intercept, "coefficients": self.coefficients, "fit": self.fit.as_dict(), "trained_on": self.trained_on}


def fit_baseline(X: np.ndarray, y: np.ndarray, features: list[str]) -> Baseline:
    """Fit an ordinary-least-squares baseline of ``y`` on the columns of ``X`` (named ``features``).

    With no features the baseline is the mean (a constant EnB). Rows with a missing value are
    left out of the fit. Raises :class:`BaselineError` when there are too few rows or a feature is
    constant (its coefficient would be meaningless).
    """
    X = np.asarray(X, dtype=np.float64).reshape(len(y), len(features))
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y) & np.all(np.isfinite(X), axis=1)
    X, y = X[ok], y[ok]
    p = len(features) + 1
    if y.size < max(p + 2, 3):
        raise BaselineError(f"only {y.size} complete rows in the training period; a baseline with {p} parameters needs at least {max(p + 2, 3)}")
    for j, name in enumerate(features):
        if np.ptp(X[:, j]) == 0:
            raise BaselineError(f"variable {name!r} is constant over the training period; it cannot explain the energy — leave it out")
    if features:
        reg = LinearRegression().fit(X, y)
        intercept, coef = float(reg.intercept_), [float(c) for c in reg.coef_]
    else:
        intercept, coef = float(y.mean()), []
    b = Baseline(features=list(features), intercept=intercept, coefficients=coef, fit=Fit(0, p, 0, 0, 0, 0), trained_on={"rows": int(y.size)})
    b.fit = goodness_of_fit(y, b.predict(X), p)
    return b


def cusum(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Cumulative sum of savings, ``Σ (expected − actual)``: positive and rising means saving [M7].

    Missing actuals contribute nothing (the sum stays flat over them rather than inventing data).
    """
    diff = np.asarray(expected, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return np.cumsum(np.where(np.isfinite(diff), diff, 0.0))


@dataclass(frozen=True)
class PeriodComparison:
    """Normalised comparison of a reporting period with the baseline (ISO 50006 EnPI change)."""

    actual: float
    expected: float
    savings: float
    improvement_pct: float


def compare_periods(baseline: Baseline, X_report: np.ndarray, y_report: np.ndarray) -> PeriodComparison:
    """Energy actually used in the reporting period against what the baseline predicts for its conditions."""
    y = np.asarray(y_report, dtype=np.float64)
    e = baseline.predict(X_report)
    ok = np.isfinite(y) & np.isfinite(e)
    actual, expected = float(y[ok].sum()), float(e[ok].sum())
    savings = expected - actual
    return PeriodComparison(actual, expected, savings, 100.0 * savings / expected if expected else float("nan"))
