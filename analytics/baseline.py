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

Weather-driven loads (heating, cooling, dry-room dehumidification) are not linear in outdoor
temperature: they start at a balance point. For the variables named as ``change_point`` the fit
also tries the change-point forms of ASHRAE Guideline 14's inverse models [M2] — heating
``max(0, Tb − T)``, cooling ``max(0, T − Tb)``, both with one balance point (4P) or two (5P) —
over a grid of balance points inside the observed range, and keeps the form with the lowest BIC,
counting each balance point as a parameter. A straight line wins unless the kink really improves
the fit, so a variable that is linear stays linear. With period sums of energy and period means of
temperature, ``max(0, Tb − T)`` is the degree-day term of ISO 50006's weather normalisation [M1].
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


@dataclass(frozen=True)
class Hinge:
    """A change-point term of input ``feature``: ``max(0, balance − x)`` (``heating``) or ``max(0, x − balance)`` (``cooling``)."""

    feature: str
    kind: str
    balance: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, self.balance - x) if self.kind == "heating" else np.maximum(0.0, x - self.balance)

    def label(self) -> str:
        return f"max(0, {self.balance:.4g} − {self.feature})" if self.kind == "heating" else f"max(0, {self.feature} − {self.balance:.4g})"


Term = str | Hinge  # an input used as it is, or a change-point term of one


@dataclass
class Baseline:
    """A fitted energy baseline ``E = b0 + Σ bi·termi`` (ISO 50006 regression EnB).

    ``features`` are the inputs :meth:`predict` takes (columns of ``X``); ``terms`` the regression
    terms built from them (an input as it is, or a :class:`Hinge` of one), one coefficient each.
    """

    features: list[str]
    intercept: float
    coefficients: list[float]
    fit: Fit
    trained_on: dict[str, Any] = field(default_factory=dict)
    terms: list[Term] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.terms:
            self.terms = list(self.features)

    def design(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).reshape(-1, len(self.features)) if self.features else np.zeros((len(X), 0))
        return _design(X, self.features, self.terms)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.intercept + self.design(X) @ np.asarray(self.coefficients, dtype=np.float64)

    def equation(self, target: str = "E") -> str:
        terms = [f"{self.intercept:,.4g}"] + [f"{c:+,.4g}·{_label(t)}" for t, c in zip(self.terms, self.coefficients, strict=True)]
        return f"{target} = " + " ".join(terms)

    def as_dict(self) -> dict[str, Any]:
        return {"features": self.features, "terms": [_label(t) for t in self.terms], "intercept": self.intercept,
                "coefficients": self.coefficients, "fit": self.fit.as_dict(), "trained_on": self.trained_on,
                "change_points": [{"feature": t.feature, "kind": t.kind, "balance": t.balance} for t in self.terms if isinstance(t, Hinge)]}


def _label(t: Term) -> str:
    return t.label() if isinstance(t, Hinge) else t


def _design(X: np.ndarray, features: list[str], terms: list[Term]) -> np.ndarray:
    col = {f: j for j, f in enumerate(features)}
    cols = [t(X[:, col[t.feature]]) if isinstance(t, Hinge) else X[:, col[t]] for t in terms]
    return np.column_stack(cols) if cols else np.zeros((X.shape[0], 0))


def _ols(D: np.ndarray, y: np.ndarray) -> tuple[float, list[float], float]:
    """Least squares with an intercept: ``(intercept, coefficients, SSE)``."""
    if D.shape[1] == 0:
        return float(y.mean()), [], float(((y - y.mean()) ** 2).sum())
    reg = LinearRegression().fit(D, y)
    resid = y - reg.predict(D)
    return float(reg.intercept_), [float(c) for c in reg.coef_], float((resid**2).sum())


def _bic(sse: float, n: int, k: int) -> float:
    return n * np.log(max(sse, 1e-300) / n) + k * np.log(n)


def _change_point_forms(x: np.ndarray, name: str, grid: int = 24) -> list[tuple[list[Term], int]]:
    """Candidate term sets for ``name`` with their number of balance points: linear, 3P heating and
    cooling, 4P (one balance point, both sides) and 5P (heating below cooling)."""
    forms: list[tuple[list[Term], int]] = [([name], 0)]
    # Balance points where at least 10 % of the rows lie on each side, so a kink rests on data.
    lo, hi = np.quantile(x, [0.10, 0.90])
    if not hi > lo:
        return forms
    points = np.unique(np.round(np.linspace(lo, hi, grid), 6))
    for b in points:
        forms.append(([Hinge(name, "heating", float(b))], 1))
        forms.append(([Hinge(name, "cooling", float(b))], 1))
        forms.append(([Hinge(name, "heating", float(b)), Hinge(name, "cooling", float(b))], 1))
    for i, bh in enumerate(points):
        for bc in points[i + 2:]:
            forms.append(([Hinge(name, "heating", float(bh)), Hinge(name, "cooling", float(bc))], 2))
    return forms


def fit_baseline(X: np.ndarray, y: np.ndarray, features: list[str], *, change_point: list[str] | tuple[str, ...] = ()) -> Baseline:
    """Fit a least-squares baseline of ``y`` on the columns of ``X`` (named ``features``).

    With no features the baseline is the mean (a constant EnB). Rows with a missing value are
    left out of the fit. Features named in ``change_point`` (outdoor temperature, dew point …) may
    enter as change-point terms instead of a straight line, whichever has the lower BIC (see the
    module notes). Raises :class:`BaselineError` when there are too few rows or a feature is
    constant (its coefficient would be meaningless).
    """
    X = np.asarray(X, dtype=np.float64).reshape(len(y), len(features))
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y) & np.all(np.isfinite(X), axis=1)
    X, y = X[ok], y[ok]
    unknown = [c for c in change_point if c not in features]
    if unknown:
        raise BaselineError(f"change-point variable(s) {unknown} are not among the baseline's variables {features}")
    p = len(features) + 1
    if y.size < max(p + 2, 3):
        raise BaselineError(f"only {y.size} complete rows in the training period; a baseline with {p} parameters needs at least {max(p + 2, 3)}")
    for j, name in enumerate(features):
        if np.ptp(X[:, j]) == 0:
            raise BaselineError(f"variable {name!r} is constant over the training period; it cannot explain the energy — leave it out")
    terms: list[Term] = list(features)
    extra = 0  # balance points: parameters of the model too
    n = int(y.size)
    for name in change_point:
        j = features.index(name)
        i = terms.index(name)
        best: tuple[float, list[Term], int] | None = None
        for form, nb in _change_point_forms(X[:, j], name):
            cand = terms[:i] + form + terms[i + 1:]
            D = _design(X, features, cand)
            if np.any(np.ptp(D, axis=0) == 0) or n <= len(cand) + 1 + extra + nb + 1:
                continue
            _, _, sse = _ols(D, y)
            bic = _bic(sse, n, len(cand) + 1 + extra + nb)
            if best is None or bic < best[0] - 1e-9:
                best = (bic, cand, nb)
        if best is not None:
            terms, extra = best[1], extra + best[2]
    intercept, coef, _ = _ols(_design(X, features, terms), y)
    p = len(terms) + 1 + extra
    b = Baseline(features=list(features), intercept=intercept, coefficients=coef, fit=Fit(0, p, 0, 0, 0, 0),
                 trained_on={"rows": int(y.size)}, terms=terms)
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
