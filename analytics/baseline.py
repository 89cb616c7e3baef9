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
:func:`fit_baseline` is the one implementation of this change-point / linear regression of an
energy on named variables; every other part of carbonedge that needs one calls it.

For interval data (15-min to daily) :class:`TimeOfWeekBaseline` is the time-of-week-and-temperature
model (LBNL TOWT family) with operating days, public holidays, time of day × day type and ridge
shrinkage, chosen by blocked (time-ordered) cross-validation (:func:`select_time_of_week`);
:class:`NaiveTimeOfWeek` is the reference every baseline is shown beside. Out-of-sample figures
spend no degrees of freedom (:func:`out_of_sample_fit`); the ASHRAE 14 limit is named per resolution
(:func:`ashrae14_limit`: none is published for daily or 15-min data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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
    p: float  # parameters spent on these points (effective for a penalised fit; 0 out of sample)
    cv_rmse: float
    nmbe: float
    r2: float
    mean: float

    def meets(self, interval: str = "hourly") -> bool:
        """True when CV(RMSE) and NMBE are within ASHRAE 14's limits for ``interval`` (hourly, monthly);
        False where the Guideline publishes no limit (daily, 15-min …): nothing to meet."""
        lim = ashrae14_limit(interval)
        if lim is None:
            return False
        cv_max, nmbe_max = lim
        return bool(self.cv_rmse <= cv_max and abs(self.nmbe) <= nmbe_max)

    def verdict(self, interval: str) -> str:
        """``meets`` / ``does NOT meet`` ASHRAE 14 for ``interval``, or ``no published limit``."""
        if ashrae14_limit(interval) is None:
            return "no published limit"
        return "meets" if self.meets(interval) else "does NOT meet"

    def as_dict(self) -> dict[str, float | int]:
        return {"n": self.n, "p": self.p, "cv_rmse": self.cv_rmse, "nmbe": self.nmbe, "r2": self.r2, "mean": self.mean}


def goodness_of_fit(y: np.ndarray, y_hat: np.ndarray, p: float) -> Fit:
    """CV(RMSE), NMBE and R² per ASHRAE Guideline 14, ``p`` = number of model parameters."""
    y = np.asarray(y, dtype=np.float64)
    y_hat = np.asarray(y_hat, dtype=np.float64)
    n = int(y.size)
    if n <= p:
        raise BaselineError(f"{n} points are too few to judge a model with {p:.4g} parameters")
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


def _change_point_forms(x: np.ndarray, name: str, grid: int = 24, one_sided: bool = False) -> list[tuple[list[Term], int]]:
    """Candidate term sets for ``name`` with their number of balance points: linear, 3P heating and
    cooling, 4P (one balance point, both sides) and 5P (heating below cooling); with ``one_sided``
    only linear and 3P."""
    forms: list[tuple[list[Term], int]] = [([name], 0)]
    # Balance points where at least 10 % of the rows lie on each side, so a kink rests on data.
    lo, hi = np.quantile(x, [0.10, 0.90])
    if not hi > lo:
        return forms
    points = np.unique(np.round(np.linspace(lo, hi, grid), 6))
    for b in points:
        forms.append(([Hinge(name, "heating", float(b))], 1))
        forms.append(([Hinge(name, "cooling", float(b))], 1))
        if not one_sided:
            forms.append(([Hinge(name, "heating", float(b)), Hinge(name, "cooling", float(b))], 1))
    if one_sided:
        return forms
    for i, bh in enumerate(points):
        for bc in points[i + 2:]:
            forms.append(([Hinge(name, "heating", float(bh)), Hinge(name, "cooling", float(bc))], 2))
    return forms


def fit_baseline(X: np.ndarray, y: np.ndarray, features: list[str], *, change_point: list[str] | tuple[str, ...] = (),
                 grid: int = 24, one_sided: bool = False) -> Baseline:
    """Fit a least-squares baseline of ``y`` on the columns of ``X`` (named ``features``).

    With no features the baseline is the mean (a constant EnB). Rows with a missing value are
    left out of the fit. Features named in ``change_point`` (outdoor temperature, dew point …) may
    enter as change-point terms instead of a straight line, whichever has the lower BIC (see the
    module notes). Raises :class:`BaselineError` when there are too few rows or a feature is
    constant (its coefficient would be meaningless). ``grid`` balance points are tried between the
    10th and 90th percentiles; ``one_sided`` allows only the 3P forms (one balance point, heating or
    cooling), for fits on a short span of weather such as one day.
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
        for form, nb in _change_point_forms(X[:, j], name, grid, one_sided):
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


# --------------------------------------------------------------------------- resolution and limits


def resolution_name(step_s: float) -> str:
    """``15-min``, ``hourly``, ``daily``, ``weekly``, ``monthly`` (or ``N-min``) for a data step in seconds."""
    if step_s >= 27 * 86400:
        return "monthly"
    if step_s >= 7 * 86400:
        return "weekly"
    if step_s >= 86400:
        return "daily"
    if step_s >= 3600:
        return "hourly"
    return f"{step_s / 60:g}-min"


def ashrae14_limit(resolution: str) -> tuple[float, float] | None:
    """ASHRAE Guideline 14's calibration limits (CV(RMSE), |NMBE|) for ``resolution``, or None where it publishes none."""
    return ASHRAE14_LIMITS.get({"hour": "hourly", "month": "monthly"}.get(resolution, resolution))


def limit_text(resolution: str) -> str:
    lim = ashrae14_limit(resolution)
    if lim is None:
        return f"no published limit for {resolution} data"
    return f"ASHRAE 14 {resolution}: CV(RMSE) ≤ {lim[0]:.0%}, |NMBE| ≤ {lim[1]:.0%}"


def out_of_sample_fit(y: np.ndarray, y_hat: np.ndarray) -> Fit | None:
    """CV(RMSE), NMBE and R² of predictions for points the model was not fitted on (no parameter is
    spent on them, so the degrees of freedom are the number of points); None below 3 points."""
    y = np.asarray(y, dtype=np.float64)
    y_hat = np.asarray(y_hat, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(y_hat)
    if ok.sum() < 3 or y[ok].mean() == 0:
        return None
    return goodness_of_fit(y[ok], y_hat[ok], 0)


# --------------------------------------------------------------------------- calendar


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "holiday")
HOLIDAY = 7  # day code of a public holiday (the weekday codes are 0 = Monday … 6 = Sunday)


@dataclass(frozen=True)
class Calendar:
    """Plant time zone and public-holiday calendar (``holidays`` package: ``DE``, ``DE-BY``, ``KR``, ``US-CA`` …)."""

    tz: str = "UTC"
    holidays: str | None = None

    def table(self, years: range) -> Any:
        if not self.holidays:
            return {}
        import holidays as hol

        country, _, sub = self.holidays.partition("-")
        try:
            return hol.country_holidays(country.upper(), subdiv=sub or None, years=years)
        except NotImplementedError as e:
            raise BaselineError(f"no public-holiday calendar for {self.holidays!r} ({e}); give an ISO 3166 country code such as DE, FR, KR or US-CA") from None

    def rows(self, t: np.ndarray) -> "CalendarRows":
        """Local day, day code (weekday, or :data:`HOLIDAY`) and seconds since local midnight of each time."""
        from carbonedge.analytics.interval import zone

        tzi = zone(self.tz)
        n = len(t)
        day = np.empty(n, dtype=np.int64)
        sod = np.empty(n, dtype=np.float64)
        dates = []
        for i, x in enumerate(np.asarray(t, dtype=np.float64).tolist()):
            loc = datetime.fromtimestamp(x, tzi)
            d = loc.date()
            dates.append(d)
            day[i] = d.toordinal()
            sod[i] = loc.hour * 3600 + loc.minute * 60 + loc.second
        wk = np.array([d.weekday() for d in dates], dtype=np.int64)
        if self.holidays and n:
            table = self.table(range(min(dates).year, max(dates).year + 1))
            hd = {d.toordinal() for d in table}
            wk[np.isin(day, list(hd))] = HOLIDAY
        return CalendarRows(day, wk, sod)


@dataclass
class CalendarRows:
    day: np.ndarray  # local date ordinal
    wk: np.ndarray  # 0 = Monday … 6 = Sunday, 7 = public holiday
    sod: np.ndarray  # seconds since local midnight

    def daytype(self) -> np.ndarray:
        """0 working weekday, 1 Saturday, 2 Sunday or public holiday."""
        return np.where(self.wk < 5, 0, np.where(self.wk == 5, 1, 2))


# --------------------------------------------------------------------------- operating days


@dataclass
class OperatingDays:
    """Which days the plant operates: ``calendar`` (a rule per weekday and holiday, learned from the
    training period), ``energy`` (each day classed by its own metered level) or ``off`` (one kind of day)."""

    mode: str
    threshold: float | None = None  # mean energy per row that separates the two kinds of day
    rule: dict[int, int] = field(default_factory=dict)  # day code -> 1 operating / 0 not
    note: str = ""

    def status(self, cal: CalendarRows, y: np.ndarray | None = None) -> np.ndarray:
        if self.mode == "off":
            return np.ones(cal.day.size, dtype=np.int64)
        by_rule = np.array([self.rule.get(int(w), self.rule.get(6, 1)) for w in cal.wk.tolist()], dtype=np.int64)
        if self.mode == "calendar" or y is None:
            return by_rule
        out = by_rule.copy()
        days, inv = np.unique(cal.day, return_inverse=True)
        yy = np.where(np.isfinite(y), y, 0.0)
        cnt = np.bincount(inv, weights=np.isfinite(y).astype(float), minlength=days.size)
        tot = np.bincount(inv, weights=yy, minlength=days.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = tot / cnt
        known = cnt[inv] > 0
        out[known] = (mean[inv][known] >= float(self.threshold or 0.0)).astype(np.int64)
        return out


def _two_levels(x: np.ndarray) -> tuple[float, float, float, float] | None:
    """Otsu's split of daily levels: ``(threshold, low mean, high mean, between/total variance)`` or None."""
    x = np.sort(x[np.isfinite(x)])
    if x.size < 14 or np.ptp(x) <= 0:
        return None
    best = None
    tot = x.var() * x.size
    for k in range(2, x.size - 1):
        lo, hi = x[:k], x[k:]
        between = k * (x.size - k) / x.size * (hi.mean() - lo.mean()) ** 2
        if best is None or between > best[0]:
            best = (between, k)
    assert best is not None
    k = best[1]
    return (float((x[k - 1] + x[k]) / 2), float(x[:k].mean()), float(x[k:].mean()), float(best[0] / tot))


def detect_operating_days(cal: CalendarRows, y: np.ndarray, mode: str = "auto") -> OperatingDays:
    """Find operating and non-operating days in the training period.

    Days are classed by their mean metered level (Otsu's two-class split). They count as two kinds
    only when the split is clear (between-class share of the variance ≥ 0.6, the low level at most
    70 % of the high one, at least two days and 2 % of the days of each kind). ``calendar`` then keeps,
    for each weekday and for public holidays, the kind most of those days were; ``energy`` classes
    every day (training and reporting) by its own level against the same threshold.
    """
    if mode not in ("auto", "calendar", "energy", "off"):
        raise BaselineError(f"unknown operating-day mode {mode!r}; use auto, calendar, energy or off")
    if mode == "off":
        return OperatingDays("off", note="operating days: not distinguished")
    days, inv = np.unique(cal.day, return_inverse=True)
    ok = np.isfinite(y)
    cnt = np.bincount(inv, weights=ok.astype(float), minlength=days.size)
    tot = np.bincount(inv, weights=np.where(ok, y, 0.0), minlength=days.size)
    full = cnt >= 0.5 * np.median(cnt[cnt > 0]) if (cnt > 0).any() else cnt > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        level = tot / cnt
    split = _two_levels(level[full])
    clear = split is not None and split[3] >= 0.6 and split[1] <= 0.7 * split[2]
    if clear:
        assert split is not None
        is_op = level[full] >= split[0]
        clear = min(is_op.sum(), (~is_op).sum()) >= max(2, 0.02 * is_op.size)
    if not clear:
        if mode in ("calendar", "energy"):
            raise BaselineError("the training period shows no clear split into operating and non-operating days; use --operating-days off")
        return OperatingDays("off", note="operating days: no clear split of daily levels in the training period, all days treated alike")
    assert split is not None
    thr = split[0]
    day_wk = np.zeros(days.size, dtype=np.int64)
    day_wk[inv] = cal.wk
    op_day = (level >= thr).astype(np.int64)
    rule: dict[int, int] = {}
    for w in range(8):
        sel = full & (day_wk == w)
        if sel.any():
            rule[w] = int(op_day[sel].mean() >= 0.5)
    agree = float(np.mean([rule.get(int(w), 1) == o for w, o in zip(day_wk[full], op_day[full], strict=True)]))
    ops = ", ".join(WEEKDAYS[w] for w in sorted(rule) if rule[w]) or "none"
    n_op, n_all = int(op_day[full].sum()), int(full.sum())
    if mode == "energy":
        note = (f"operating days: each day classed by its own metered level (threshold {thr:,.4g} per row, "
                f"{n_op} of {n_all} training days operating); the figures therefore use that day's energy")
        return OperatingDays("energy", thr, rule, note)
    note = f"operating days: {ops} (learned from {n_all} training days; this calendar matches {agree:.0%} of them)"
    if agree < 0.9:
        note += "; irregular shutdowns are not predictable from the calendar — give a production or schedule column, or --operating-days energy"
    return OperatingDays("calendar", thr, rule, note)


# --------------------------------------------------------------------------- time-of-week model

#: The indicator blocks of the time-of-week model, coarse to fine (all crossed with operating day):
#: day code, time of day, time of day × day type (hour × working day / Saturday / Sunday-or-holiday),
#: hour of week, and time-of-week slot (the LBNL TOWT indicator).
TOW_BLOCKS = ("daytype", "day", "slot", "slot×daytype", "hour×day", "slot×day")
#: Blocks fitted without penalty (the level of each kind of day: operating day × working day /
#: Saturday / Sunday-or-holiday), so a day code the training period never saw (a holiday in a held-out
#: month) still gets its kind of day's level, and the penalised blocks only carry deviations from it.
UNPENALISED = frozenset({"daytype"})
#: Blocks whose penalty is ``alpha × fine`` (the cells of the time of week), ``fine`` chosen by CV too.
FINE_BLOCKS = frozenset({"slot×daytype", "hour×day", "slot×day"})
FINE = 2.0  # marker of a fine block's column in the penalty vector
FINE_MULTIPLIERS = (1.0, 0.3, 3.0, 10.0)
DAY = 3.0  # marker of the day-code block's columns
#: Penalty multipliers of the day-code block (weekday levels within a kind of day), chosen by CV last:
#: a large one pools the working days' levels (each weekday is seen on many rows, so α alone hardly
#: shrinks it), 1 keeps them apart.
DAY_MULTIPLIERS = (1.0, 100.0, 1000.0, 10000.0)
#: Penalties tried by cross-validation (per indicator column; a cell seen m times is shrunk by m / (m + α)).
ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)


def segment_knots(x: np.ndarray, segments: int = 6) -> list[float]:
    """Knots that split ``x`` into ``segments`` temperature segments of equal numbers of points (TOWT; Mathieu et al. 2011)."""
    x = x[np.isfinite(x)]
    if x.size == 0 or segments < 2:
        return []
    k = np.unique(np.round(np.quantile(x, np.arange(1, segments) / segments), 6))
    return [float(v) for v in k if x.min() < v < x.max()]


def _block_codes(name: str, op: np.ndarray, cal: CalendarRows, step: float) -> np.ndarray:
    slot = (cal.sod // max(step, 1.0)).astype(np.int64) if step < 86400 else np.zeros(op.size, dtype=np.int64)
    hour = (cal.sod // 3600).astype(np.int64) if step < 86400 else np.zeros(op.size, dtype=np.int64)
    base = op * 8
    if name == "daytype":
        return op * 3 + cal.daytype()
    if name == "day":
        return base + cal.wk
    if name == "slot":
        return op * 100000 + slot
    if name == "slot×daytype":
        return (op * 3 + cal.daytype()) * 100000 + slot
    if name == "hour×day":
        return (base + cal.wk) * 100 + hour
    if name == "slot×day":
        return (base + cal.wk) * 100000 + slot
    raise BaselineError(f"unknown block {name!r}")


@dataclass
class TimeOfWeekBaseline:
    """A time-of-week-and-temperature baseline (the LBNL TOWT family: Mathieu, Price, Kiliccote and
    Piette, "Quantifying changes in building electricity use, with application to demand response",
    IEEE Trans. Smart Grid 2(3), 2011) with operating days,
    public holidays, interactions of time of day with day type, extra regressors, and shrinkage.

    ``E = b0 + Σ indicator effects + Σ bi·feature_i + Σ temperature segments × operating day``.
    The indicator blocks (:data:`TOW_BLOCKS`) and category columns are ridge-penalised with
    ``alpha``, so a time-of-week cell seen on few days is pulled towards the coarser blocks (its time
    of day on that kind of day) instead of following its own noise; numeric variables and the
    temperature segments are not penalised. Predictions are never negative.
    """

    features: list[str]
    calendar: Calendar
    step: float
    operating: OperatingDays
    numeric: list[str]
    indicators: list[str]
    temperature: list[str]
    temp_form: str
    knots: dict[str, list[float]]
    blocks: list[str]
    levels: dict[str, np.ndarray]
    beta: np.ndarray
    alpha: float
    fine: float = 1.0  # penalty multiplier of the fine time-of-week cells (FINE_BLOCKS)
    day: float = 1.0  # penalty multiplier of the day-code block
    #: Two-valued variables (operating-mode flags: 0/1, or a flag summed over a day), each with its own
    #: effect on operating and other days, as the TOWT model fits occupied and unoccupied periods apart.
    flags: list[str] = field(default_factory=list)
    fit: Fit = field(default_factory=lambda: Fit(0, 0, 0.0, 0.0, 0.0, 0.0))
    trained_on: dict[str, Any] = field(default_factory=dict)

    # -- design
    def _temp_cols(self, X: np.ndarray, op: np.ndarray) -> list[np.ndarray]:
        cols = []
        two = self.operating.mode != "off"
        for name in self.temperature:
            x = X[:, self.features.index(name)]
            basis = [x] + ([np.maximum(0.0, x - k) for k in self.knots.get(name, [])] if self.temp_form == "segments" else [])
            for b in basis:
                if two:
                    cols += [b * op, b * (1 - op)]
                else:
                    cols.append(b)
        return cols

    def design(self, t: np.ndarray, X: np.ndarray, y: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        """Sparse design matrix (intercept, dense columns, indicator blocks) and the penalty of each column."""
        from scipy import sparse

        X = np.asarray(X, dtype=np.float64).reshape(len(t), len(self.features))
        cal = self.calendar.rows(t)
        op = self.operating.status(cal, y)
        two = self.operating.mode != "off"
        dense = [np.ones(len(t))] + [X[:, self.features.index(c)] for c in self.numeric if c not in self.flags] + self._temp_cols(X, op)
        for c in self.flags:
            x = X[:, self.features.index(c)]
            dense += [x * op, x * (1 - op)] if two else [x]
        pen = [0.0] * len(dense)
        # Categories (one-hot) are crossed with the operating day too: a mode on a working day and
        # on a day off are different loads (a school's summer school on a weekday, not at weekends).
        for c in self.indicators:
            x = X[:, self.features.index(c)]
            dense += [x * op, x * (1 - op)] if two else [x]
            pen += [1.0, 1.0] if two else [1.0]
        mats = [sparse.csr_matrix(np.column_stack(dense))]
        for b in self.blocks:
            codes = _block_codes(b, op, cal, self.step)
            lev = self.levels[b]
            j = np.searchsorted(lev, codes)
            j = np.clip(j, 0, max(lev.size - 1, 0))
            seen = lev.size > 0
            hit = (lev[j] == codes) if seen else np.zeros(len(t), dtype=bool)
            if b in UNPENALISED:  # the first level is the reference, in the intercept
                hit &= j > 0
                rows = np.nonzero(hit)[0]
                mats.append(sparse.csr_matrix((np.ones(rows.size), (rows, j[hit] - 1)), shape=(len(t), max(lev.size - 1, 0))))
                pen += [0.0] * max(lev.size - 1, 0)
                continue
            rows = np.nonzero(hit)[0]
            mats.append(sparse.csr_matrix((np.ones(rows.size), (rows, j[hit])), shape=(len(t), lev.size)))
            pen += [FINE if b in FINE_BLOCKS else (DAY if b == "day" else 1.0)] * lev.size
        return sparse.hstack(mats, format="csr"), np.array(pen)

    def predict(self, t: np.ndarray, X: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Expected energy per row (never negative); NaN where a variable is missing. ``y`` is only
        read with ``--operating-days energy`` (a day is classed by its own level)."""
        X = np.asarray(X, dtype=np.float64).reshape(len(t), len(self.features))
        D, _ = self.design(t, np.where(np.isfinite(X), X, 0.0), y)
        pred = np.maximum(0.0, D @ self.beta)
        used = [self.features.index(c) for c in [*self.numeric, *self.indicators, *self.temperature]]
        if used:
            pred[~np.all(np.isfinite(X[:, used]), axis=1)] = np.nan
        return pred

    @property
    def coefficients(self) -> list[float]:
        """Coefficients of the numeric variables (per unit of each), in the order of :attr:`numeric`."""
        plain = [c for c in self.numeric if c not in self.flags]
        coef = dict(zip(plain, (float(b) for b in self.beta[1:1 + len(plain)]), strict=True))
        j = 1 + len(plain) + len(self._temp_cols(np.zeros((1, len(self.features))), np.zeros(1)))
        for c in self.flags:
            coef[c] = float(self.beta[j])  # a flag's effect on operating days (the first of its pair)
            j += 2 if self.operating.mode != "off" else 1
        return [coef[c] for c in self.numeric]

    def describe(self) -> str:
        parts = [f"time of week ({' + '.join(self.blocks)}) × operating day" if self.operating.mode != "off" else f"time of week ({' + '.join(self.blocks)})"]
        for c, b in zip(self.numeric, self.coefficients, strict=True):
            parts.append(f"{b:+,.4g}·{c}")
        for c in self.temperature:
            k = self.knots.get(c, [])
            parts.append(f"{c} in {len(k) + 1} segments (knots {', '.join(f'{v:.3g}' for v in k)})" if self.temp_form == "segments" and k else f"{c} (linear)")
        if self.indicators:
            parts.append("categories " + ", ".join(self.indicators))
        fine = "".join(f" (× {v:g} on the {what})" for v, what in ((self.fine, "finest cells"), (self.day, "day codes")) if v != 1.0)
        return "; ".join(parts) + f"; ridge α = {self.alpha:g}{fine}"

    def equation(self, target: str = "E") -> str:
        return f"{target} = {self.describe()}"

    def as_dict(self) -> dict[str, Any]:
        return {"model": "time-of-week", "blocks": self.blocks, "alpha": self.alpha, "fine_multiplier": self.fine, "day_multiplier": self.day, "features": self.features,
                "numeric": dict(zip(self.numeric, self.coefficients, strict=True)), "temperature": self.temperature,
                "temperature_form": self.temp_form, "knots": self.knots, "categories": self.indicators,
                "operating_days": {"mode": self.operating.mode, "threshold": self.operating.threshold,
                                   "rule": {WEEKDAYS[k]: v for k, v in self.operating.rule.items()}},
                "holidays": self.calendar.holidays, "fit": self.fit.as_dict(), "trained_on": self.trained_on}


def _one_blas_thread(fn: Any) -> Any:
    """Run ``fn`` with one BLAS thread: its many small systems are ~10x faster than threads fighting
    over a busy machine (threadpoolctl is installed with scikit-learn)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            return fn(*a, **kw)

    return wrapper


def _solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy import linalg

    return _solve1(A, b, linalg)


def _solve1(A: np.ndarray, b: np.ndarray, linalg: Any) -> np.ndarray:
    try:
        return linalg.cho_solve(linalg.cho_factor(A, check_finite=False), b, check_finite=False)
    except (linalg.LinAlgError, ValueError):
        return np.linalg.lstsq(A, b, rcond=None)[0]


def _penalty(pen: np.ndarray, XtX: np.ndarray, alpha: float, fine: float = 1.0, day: float = 1.0) -> np.ndarray:
    # Unpenalised columns get a vanishing ridge so collinear inputs cannot make the system singular.
    tiny = 1e-9 * max(float(np.mean(np.diag(XtX))), 1.0)
    return np.where(pen == FINE, alpha * fine, np.where(pen == DAY, alpha * day, np.where(pen > 0, alpha, tiny)))


def time_of_week_spec(t: np.ndarray, X: np.ndarray, y: np.ndarray, features: list[str], *, calendar: Calendar, step: float,
                      temperature: list[str] | tuple[str, ...] = (), indicators: list[str] | tuple[str, ...] = (),
                      temp_form: str = "segments", operating: str = "auto", blocks: tuple[str, ...] = TOW_BLOCKS,
                      op_days: OperatingDays | None = None) -> TimeOfWeekBaseline:
    """An unfitted time-of-week model for the training rows: operating days, temperature knots and the
    indicator levels seen (the parts of the model set from the inputs, not from the fit)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(t), len(features))
    for c in [*temperature, *indicators]:
        if c not in features:
            raise BaselineError(f"variable {c!r} is not among the baseline's variables {features}")
    cal = calendar.rows(t)
    od = op_days or detect_operating_days(cal, y, operating)
    op = od.status(cal, y)
    numeric = [c for c in features if c not in temperature and c not in indicators]
    flags = [c for c in numeric if np.unique(X[np.isfinite(X[:, features.index(c)]), features.index(c)]).size == 2]
    knots = {c: segment_knots(X[:, features.index(c)]) for c in temperature}
    lv: dict[str, np.ndarray] = {}
    keep: list[str] = []
    parts: list[np.ndarray] = []
    for b in blocks:
        if step >= 86400 and b in ("slot", "hour×day", "slot×day"):
            continue
        if step < 3600 and b == "slot×day" and "hour×day" in blocks:
            # Below an hour the full time-of-week cells are seen a few times a year each; the hour of
            # week with the time of day per day type carries the shape at a fraction of the columns.
            continue
        codes = _block_codes(b, op, cal, step)
        _, inv = np.unique(codes, return_inverse=True)
        # A block that splits the rows exactly as a kept one does adds nothing: leave it out.
        k = np.unique(inv).size
        if any(np.unique(q).size == k == np.unique(q * k + inv).size for q in parts):
            continue
        if np.unique(inv).size <= 1:
            continue
        parts.append(inv)
        keep.append(b)
        lv[b] = np.unique(codes)
    return TimeOfWeekBaseline(list(features), calendar, step, od, numeric, list(indicators), list(temperature), temp_form if temperature else "none",
                              knots, keep, lv, np.zeros(0), 0.0, flags=flags, trained_on={"rows": int(np.isfinite(y).sum())})


@_one_blas_thread
def fit_time_of_week(t: np.ndarray, X: np.ndarray, y: np.ndarray, features: list[str], *, calendar: Calendar, step: float,
                     alpha: float = 10.0, fine: float = 1.0, day: float = 1.0, **kw: Any) -> TimeOfWeekBaseline:
    """Fit a :class:`TimeOfWeekBaseline` with penalty ``alpha`` on the training rows (``t`` = interval starts, epoch s)."""
    m = time_of_week_spec(t, X, y, features, calendar=calendar, step=step, **kw)
    D, pen = m.design(t, np.nan_to_num(np.asarray(X, dtype=np.float64).reshape(len(t), len(features))), y)
    ok = _complete(X, y, m)
    return _finish(m, D[ok], y[ok], pen, alpha, fine, day)


def _complete(X: np.ndarray, y: np.ndarray, m: TimeOfWeekBaseline) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64).reshape(len(y), len(m.features))
    used = [m.features.index(c) for c in [*m.numeric, *m.indicators, *m.temperature]]
    ok = np.isfinite(y)
    if used:
        ok &= np.all(np.isfinite(X[:, used]), axis=1)
    return ok


def _finish(m: TimeOfWeekBaseline, D: Any, y: np.ndarray, pen: np.ndarray, alpha: float, fine: float = 1.0,
            day: float = 1.0) -> TimeOfWeekBaseline:
    XtX = (D.T @ D).toarray()
    A = XtX + np.diag(_penalty(pen, XtX, alpha, fine, day))
    m.beta = _solve(A, D.T @ y)
    m.alpha = alpha
    m.fine = fine
    m.day = day
    p_eff = float(np.trace(_solve(A, XtX)))
    y_hat = np.maximum(0.0, D @ m.beta)
    m.fit = goodness_of_fit(y, y_hat, p_eff) if y.size > p_eff + 1 else Fit(int(y.size), p_eff, float("nan"), float("nan"), float("nan"), float(y.mean()))  # type: ignore[arg-type]
    m.trained_on = {"rows": int(y.size), "effective_parameters": p_eff}
    return m


# --------------------------------------------------------------------------- naive reference


class NaiveTimeOfWeek:
    """The naive reference: the training mean by (operating day, day code, time-of-day slot), falling back
    to (operating day, slot), then to the overall mean for cells the training period never saw."""

    def __init__(self, spec: TimeOfWeekBaseline, t: np.ndarray, y: np.ndarray, op_y: np.ndarray | None = None) -> None:
        self.spec = spec
        ok = np.isfinite(y)
        c1, c2 = self._codes(t, op_y if op_y is not None else y)
        self.fine = _means(c1[ok], y[ok])
        self.coarse = _means(c2[ok], y[ok])
        self.mean = float(y[ok].mean()) if ok.any() else float("nan")

    def _codes(self, t: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        cal = self.spec.calendar.rows(t)
        op = self.spec.operating.status(cal, y)
        return _block_codes("slot×day", op, cal, self.spec.step), _block_codes("slot", op, cal, self.spec.step)

    def predict(self, t: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        c1, c2 = self._codes(t, y)
        out = np.array([self.fine.get(a, self.coarse.get(b, self.mean)) for a, b in zip(c1.tolist(), c2.tolist(), strict=True)])
        return out


def _means(codes: np.ndarray, y: np.ndarray) -> dict[int, float]:
    u, inv = np.unique(codes, return_inverse=True)
    s = np.bincount(inv, weights=y, minlength=u.size)
    c = np.bincount(inv, minlength=u.size)
    return {int(k): float(a / b) for k, a, b in zip(u, s, c, strict=True)}


# --------------------------------------------------------------------------- blocked cross-validation


def blocked_folds(t: np.ndarray, tz: str, step: float) -> tuple[np.ndarray, str]:
    """Contiguous time blocks for cross-validation: calendar months when the period spans at least
    three, else weeks (at least three), else three equal blocks. Returns a fold label per row."""
    from carbonedge.analytics.interval import zone

    tzi = zone(tz)
    loc = [datetime.fromtimestamp(x, tzi) for x in np.asarray(t, dtype=np.float64).tolist()]
    month = np.array([d.year * 12 + d.month for d in loc])
    if np.unique(month).size >= 3 and step < 27 * 86400:
        return np.unique(month, return_inverse=True)[1], "calendar months"
    week = np.array([d.toordinal() // 7 for d in loc])  # ordinal 1 is a Monday: blocks of Monday–Sunday
    if np.unique(week).size >= 3 and step < 7 * 86400:
        return np.unique(week, return_inverse=True)[1], "weeks"
    order = np.argsort(np.argsort(t, kind="stable"), kind="stable")
    return np.minimum(3 * order // max(len(t), 1), 2), "three equal blocks"


@dataclass
class Selection:
    """The model chosen by blocked cross-validation, with out-of-fold predictions of it and of the naive reference."""

    model: TimeOfWeekBaseline
    oof: np.ndarray  # out-of-fold prediction per training row (NaN where a row could not be predicted)
    naive_oof: np.ndarray
    folds: np.ndarray
    fold_kind: str
    scores: list[tuple[str, float, float, float, float]]  # (temperature form, α, out-of-fold RMSE, fine-cell and day-code multipliers)


@_one_blas_thread
def select_time_of_week(t: np.ndarray, X: np.ndarray, y: np.ndarray, features: list[str], *, calendar: Calendar, step: float,
                        temperature: list[str] | tuple[str, ...] = (), indicators: list[str] | tuple[str, ...] = (),
                        operating: str = "auto", alphas: tuple[float, ...] = ALPHAS,
                        temp_forms: tuple[str, ...] = ("segments", "linear")) -> Selection:
    """Choose the temperature form (6 segments or a line) and the penalty by blocked cross-validation
    (time-ordered folds, :func:`blocked_folds`), then refit the winner on all training rows.

    The operating-day rule and the temperature knots are set from the whole training period before
    the folds (they use no held-out energy beyond the day classes); the coefficients and the choice
    of model are cross-validated. The naive reference is cross-validated on the same folds.
    """
    X = np.asarray(X, dtype=np.float64).reshape(len(t), len(features))
    y = np.asarray(y, dtype=np.float64)
    folds, kind = blocked_folds(t, calendar.tz, step)
    forms = list(temp_forms) if temperature else ["none"]
    scores: list[tuple[str, float, float, float, float]] = []
    best: tuple[float, str, float, float, float, np.ndarray] | None = None
    spec0 = None
    for form in forms:
        spec = time_of_week_spec(t, X, y, features, calendar=calendar, step=step, temperature=temperature,
                                 indicators=indicators, temp_form=form, operating=operating,
                                 op_days=None if spec0 is None else spec0.operating)
        spec0 = spec0 or spec
        ok = _complete(X, y, spec)
        D, pen = spec.design(t, np.nan_to_num(X), y)
        stats = []
        for f in np.unique(folds):
            r = ok & (folds == f)
            Df = D[r]
            stats.append(((Df.T @ Df).toarray(), Df.T @ y[r]))
        XtX = sum(s[0] for s in stats)
        Xty = sum(s[1] for s in stats)
        has_fine = bool(np.any(pen == FINE))

        def score(a: float, fine: float, day: float = 1.0) -> tuple[float, np.ndarray]:
            oof = np.full(len(t), np.nan)
            for f, (A_f, b_f) in zip(np.unique(folds), stats, strict=True):
                A = XtX - A_f
                beta = _solve(A + np.diag(_penalty(pen, A, a, fine, day)), Xty - b_f)
                r = ok & (folds == f)
                oof[r] = np.maximum(0.0, D[r] @ beta)
            m = np.isfinite(oof)
            return (float(np.sqrt(np.mean((oof[m] - y[m]) ** 2))) if m.any() else float("inf")), oof

        form_best: tuple[float, float, float, float, np.ndarray] | None = None
        for a in alphas:
            rmse, oof = score(a, 1.0)
            scores.append((form, a, rmse, 1.0, 1.0))
            if form_best is None or rmse < form_best[0] - 1e-12:
                form_best = (rmse, a, 1.0, 1.0, oof)
        # Then the fine cells' penalty relative to the coarse blocks', at the chosen α; then the day codes'.
        assert form_best is not None
        for fine in (FINE_MULTIPLIERS if has_fine else ()):
            if fine == 1.0:
                continue
            rmse, oof = score(form_best[1], fine)
            scores.append((form, form_best[1], rmse, fine, 1.0))
            if rmse < form_best[0] - 1e-12:
                form_best = (rmse, form_best[1], fine, 1.0, oof)
        for day in (DAY_MULTIPLIERS if np.any(pen == DAY) else ()):
            if day == 1.0:
                continue
            rmse, oof = score(form_best[1], form_best[2], day)
            scores.append((form, form_best[1], rmse, form_best[2], day))
            if rmse < form_best[0] - 1e-12:
                form_best = (rmse, form_best[1], form_best[2], day, oof)
        if best is None or form_best[0] < best[0] - 1e-12:
            best = (form_best[0], form, *form_best[1:])
    assert best is not None and spec0 is not None
    _, form, a, fine, day, oof = best
    model = fit_time_of_week(t, X, y, features, calendar=calendar, step=step, alpha=a, fine=fine, day=day, temperature=temperature,
                             indicators=indicators, temp_form=form, op_days=spec0.operating)
    naive_oof = np.full(len(t), np.nan)
    yop = y if model.operating.mode == "energy" else None
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        nv = NaiveTimeOfWeek(model, t[tr], y[tr], yop[tr] if yop is not None else None)
        naive_oof[te] = nv.predict(t[te], yop[te] if yop is not None else None)
    return Selection(model, oof, naive_oof, folds, kind, scores)


# --------------------------------------------------------------------------- savings uncertainty


def savings_uncertainty(resid: np.ndarray, p: float, y_mean: float, m: int, fraction: float, resolution: str,
                        confidence: float = 0.90) -> float | None:
    """Fractional savings uncertainty per ASHRAE Guideline 14-2014 Annex B, with the lag-1
    autocorrelation correction of the baseline residuals (as kW Engineering's nmecr implements it):
    ``U = t·a / (m·ȳ·F) · sqrt(MSE·(1 + 2/n)·m)``; with autocorrelation ρ ≥ 0.5 (and not monthly data)
    ``n`` becomes ``n' = n(1 − ρ)/(1 + ρ)``, and MSE and ``t`` use ``n' − p`` degrees of freedom.
    ``a`` is 1.26 for hourly and finer data and the Guideline's empirical correction for daily and
    monthly data. None when the savings fraction is zero or the degrees of freedom run out."""
    from scipy import stats

    r = np.asarray(resid, dtype=np.float64)
    r = r[np.isfinite(r)]
    n = r.size
    if n < 3 or fraction == 0 or m <= 0:
        return None
    rho = float(np.corrcoef(r[1:], r[:-1])[0, 1])
    sse = float((r**2).sum())
    if resolution == "monthly":
        a = -0.00022 * n**2 + 0.03306 * n + 0.94054
    elif resolution == "daily":
        months = n / 30.0
        a = -0.00024 * months**2 + 0.03535 * months + 1.00286
    else:
        a = 1.26
    nn = n
    if resolution != "monthly" and rho >= 0.5:
        nn = n * (1 - rho) / (1 + rho)
    dof = nn - p
    if dof <= 0:
        return None
    t = float(stats.t.ppf(1 - (1 - confidence) / 2, dof))
    mse = sse / dof
    return float(t * a / (m * y_mean * abs(fraction)) * np.sqrt(mse * (1 + 2 / nn) * m))
