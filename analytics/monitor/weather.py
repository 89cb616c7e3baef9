"""Weather check: the plant's weather station, and the outdoor-conditions term of weather-driven loads.

When the plant model names a weather station, its latest plausible outdoor temperature and dew
point are kept (a reading older than ``weather_max_age_s`` no longer counts: the energy check then
falls back to its model without weather). A process whose learning-period residual follows the
outdoor temperature and moisture load (dry rooms, HVAC, cooling) gets a :class:`WeatherTerm` in its
expected power: the change-point regression of :func:`analytics.baseline.fit_baseline` (the one
regression of the project), held within the learned range plus a margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from carbonedge.analytics.baseline import Baseline, BaselineError, Fit, Hinge, fit_baseline
from carbonedge.analytics.monitor import state as S
from carbonedge.analytics.monitor.settings import MonitorSettings
from carbonedge.plant import PlantModel


def abs_humidity_gkg(dew_point_c: np.ndarray | float, pressure_hpa: float = 1013.25) -> np.ndarray:
    """Outdoor absolute humidity (mixing ratio, g water per kg dry air) from the dew point.

    Vapour pressure by the Magnus formula over water with the WMO-No. 8 (2018), Annex 4.B coefficients,
    ``e = 6.112 hPa · exp(17.62 Td / (243.12 °C + Td))``, then ``w = 622 e / (p − e)`` at standard
    pressure. A dehumidifier's moisture load grows with this, not with the dew point itself.
    """
    td = np.asarray(dew_point_c, dtype=float)
    e = 6.112 * np.exp(17.62 * td / (243.12 + td))
    return 622.0 * e / (pressure_hpa - e)


@dataclass
class WeatherTerm:
    """Expected extra power (kW) from outdoor conditions: a baseline of the clipped inputs.

    ``inputs`` are ``(input index, form)``: ``temperature`` (the outdoor temperature, linear or as
    change-point terms, :func:`analytics.baseline.fit_baseline`) or ``moisture`` (absolute humidity
    in g/kg from the dew point, linear). Each input is clipped to ``[lo, hi]`` (the learned range
    plus a margin, in °C) before the terms are built, so one warm day never extrapolates a line
    fitted on a single day's swing.
    """

    inputs: list[tuple[int, str]]
    baseline: Baseline
    lo: list[float]
    hi: list[float]
    r2: float

    def label(self, names: tuple[str, ...]) -> str:
        """``E = -37 +9·max(0, outdoor_temperature − 12) +48·abs_humidity(outdoor_dew_point)``: the term as fitted (kW)."""
        return self.baseline.equation("kW")

    def features(self, X: np.ndarray) -> np.ndarray:
        Xc = np.clip(X, np.array(self.lo), np.array(self.hi))
        return np.column_stack([abs_humidity_gkg(Xc[:, i]) if form == "moisture" else Xc[:, i] for i, form in self.inputs])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.baseline.predict(self.features(X))

    def __call__(self, x: np.ndarray) -> float:
        return float(self.predict(x.reshape(1, -1))[0])


def fit_weather(ex: np.ndarray, X: np.ndarray, kinds: tuple[str, ...], min_r2: float, margin: float,
                names: tuple[str, ...] | None = None, *, grid: int = 5, min_n: int = 60) -> WeatherTerm | None:
    """A weather term for the residual ``ex`` (kW) on inputs ``X`` (rows: cycles), or None when weather explains little.

    ``kinds`` says what each column is (``temperature`` or ``dew_point``). Inputs tried: each
    temperature (linear or change-point, as :func:`analytics.baseline.fit_baseline` chooses by BIC:
    cooling or heating from a balance point, as ISO 50006 baselines use), each moisture load
    (absolute humidity from the dew point), and each temperature with each moisture load. The set
    with the lowest BIC is kept if its R² reaches ``min_r2``. ``grid``: balance points tried per
    change point (5 on one learning day; the refits on several days' weather try more). ``min_n``:
    fewest usable rows (the monitor passes interval means, :func:`interval_means`).
    """
    ok = np.isfinite(ex) & np.all(np.isfinite(X), axis=1)
    n = int(ok.sum())
    if n < min_n or n < 0.5 * ex.size:
        return None
    y, Z = ex[ok], X[ok]
    lo = Z.min(axis=0)
    hi = Z.max(axis=0)
    pad = np.maximum(margin, 0.5 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    if float(((y - y.mean()) ** 2).sum()) <= 0:
        return None
    names = names or tuple(f"x{i}" for i in range(len(kinds)))
    temps = [(i, "temperature") for i, k in enumerate(kinds) if k == "temperature" and np.ptp(Z[:, i]) > 0]
    moist = [(i, "moisture") for i, k in enumerate(kinds) if k == "dew_point" and np.ptp(Z[:, i]) > 0]
    candidates = [[f] for f in temps + moist] + [[f, m] for f in temps for m in moist]
    best: tuple[float, WeatherTerm] | None = None
    for inputs in candidates:
        feats = [names[i] if form == "temperature" else f"abs_humidity({names[i]})" for i, form in inputs]
        proto = WeatherTerm(inputs, None, lo.tolist(), hi.tolist(), 0.0)  # type: ignore[arg-type]
        F = proto.features(Z)
        try:
            # Straight lines or one-sided (3P) change points only, ``grid`` balance points between the 10th
            # and 90th percentiles; two-sided forms fitted on a day's swing do not extrapolate.
            b = fit_baseline(F, y, feats, change_point=[f for f, (_, form) in zip(feats, inputs, strict=True) if form == "temperature"],
                             grid=grid, one_sided=True)
        except BaselineError:
            continue
        # Physical signs: more moisture in the outdoor air never takes less energy to remove. A negative
        # moisture coefficient is the day's temperature and dew point moving together, not physics.
        if any(c < 0 for t, c in zip(b.terms, b.coefficients, strict=True) if isinstance(t, str) and t.startswith("abs_humidity(")):
            continue
        sse = float(((y - b.predict(F)) ** 2).sum())
        bic = n * math.log(max(sse, 1e-300) / n) + b.fit.p * math.log(n)
        if best is None or bic < best[0]:
            proto.baseline, proto.r2 = b, float(b.fit.r2)
            best = (bic, proto)
    if best is None or not best[1].r2 >= min_r2:
        return None
    return best[1]


def interval_means(t_ms: np.ndarray, ex: np.ndarray, X: np.ndarray, interval_ms: int, min_polls: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Means of the residual ``ex`` and the outdoor conditions ``X`` over fixed intervals of ``interval_ms``.

    Weather moves over hours; a poll interval's power carries everything faster (a meter's energy
    resolution, the jitter of the poll times, short load swings), which can swamp the weather's share
    of the variance even where the weather drives the load. The weather term is therefore judged and
    fitted on interval means. Rows with a missing value are left out; intervals with fewer than
    ``min_polls`` usable polls are dropped.
    """
    ok = np.isfinite(ex) & np.all(np.isfinite(X), axis=1)
    if not ok.any():
        return np.empty(0), np.empty((0, X.shape[1]))
    b = np.asarray(t_ms)[ok] // interval_ms
    keys, inv, counts = np.unique(b, return_inverse=True, return_counts=True)
    ex_m = np.bincount(inv, weights=ex[ok]) / counts
    X_m = np.column_stack([np.bincount(inv, weights=X[ok][:, j]) / counts for j in range(X.shape[1])]) if X.shape[1] else np.empty((keys.size, 0))
    keep = counts >= min_polls
    return ex_m[keep], X_m[keep]


def term_to_state(w: WeatherTerm) -> dict[str, Any]:
    b = w.baseline
    return {"inputs": [[i, form] for i, form in w.inputs], "lo": [S.enc(x) for x in w.lo], "hi": [S.enc(x) for x in w.hi], "r2": S.enc(w.r2),
            "features": list(b.features), "intercept": S.enc(b.intercept), "coefficients": [S.enc(c) for c in b.coefficients],
            "terms": [{"feature": t.feature, "kind": t.kind, "balance": S.enc(t.balance)} if isinstance(t, Hinge) else t for t in b.terms],
            "fit": {k: S.enc(v) for k, v in b.fit.as_dict().items()}}


def term_from_state(doc: Any, where: str, n_inputs: int) -> WeatherTerm:
    d = S.obj(doc, where, ("inputs", "lo", "hi", "r2", "features", "intercept", "coefficients", "terms", "fit"))
    inputs = []
    for j, x in enumerate(S.seq(d["inputs"], f"{where}.inputs")):
        x = S.seq(x, f"{where}.inputs[{j}]", 2)
        i = S.integer(x[0], f"{where}.inputs[{j}][0]", lo=0)
        if i >= n_inputs:
            raise S.StateInvalid(f"{where}.inputs[{j}][0]: input {i} does not exist (the weather station has {n_inputs})")
        inputs.append((i, S.text(x[1], f"{where}.inputs[{j}][1]", choices=("temperature", "moisture"))))
    features = [S.text(f, f"{where}.features[{j}]") for j, f in enumerate(S.seq(d["features"], f"{where}.features", len(inputs)))]
    terms: list[Any] = []
    for j, t in enumerate(S.seq(d["terms"], f"{where}.terms")):
        if isinstance(t, str):
            if t not in features:
                raise S.StateInvalid(f"{where}.terms[{j}]: {t!r} is not one of the features")
            terms.append(t)
        else:
            t = S.obj(t, f"{where}.terms[{j}]", ("feature", "kind", "balance"))
            f = S.text(t["feature"], f"{where}.terms[{j}].feature")
            if f not in features:
                raise S.StateInvalid(f"{where}.terms[{j}].feature: {f!r} is not one of the features")
            terms.append(Hinge(f, S.text(t["kind"], f"{where}.terms[{j}].kind", choices=("heating", "cooling")), S.num(t["balance"], f"{where}.terms[{j}].balance", finite=True)))
    coef = S.nums(d["coefficients"], f"{where}.coefficients", finite=True)
    if len(coef) != len(terms):
        raise S.StateInvalid(f"{where}.coefficients: {len(terms)} are needed (one per term), not {len(coef)}")
    fd = S.obj(d["fit"], f"{where}.fit", ("n", "p", "cv_rmse", "nmbe", "r2", "mean"))
    fit = Fit(S.integer(fd["n"], f"{where}.fit.n", lo=0) if isinstance(fd["n"], int) else int(S.num(fd["n"], f"{where}.fit.n")),
              S.num(fd["p"], f"{where}.fit.p"), S.num(fd["cv_rmse"], f"{where}.fit.cv_rmse"), S.num(fd["nmbe"], f"{where}.fit.nmbe"),
              S.num(fd["r2"], f"{where}.fit.r2"), S.num(fd["mean"], f"{where}.fit.mean"))
    lo = S.nums(d["lo"], f"{where}.lo", finite=True)
    hi = S.nums(d["hi"], f"{where}.hi", finite=True)
    if len(lo) != n_inputs or len(hi) != n_inputs:
        raise S.StateInvalid(f"{where}.lo/hi: one bound per weather input ({n_inputs}) is needed")
    base = Baseline(features, S.num(d["intercept"], f"{where}.intercept", finite=True), coef, fit, {}, terms)
    return WeatherTerm(inputs, base, lo, hi, S.num(d["r2"], f"{where}.r2"))


class WeatherCheck:
    """The plant's weather station: its latest plausible outdoor conditions (see the module docstring)."""

    name = "weather"

    def __init__(self, plant: PlantModel, settings: MonitorSettings) -> None:
        self.s = settings
        w = plant.weather.model_dump() if plant.weather else {}
        self.config = w
        self.device: str | None = str(w["device"]) if w.get("device") else None
        inputs = [(k, str(w[k])) for k in ("temperature", "dew_point") if w.get(k)]
        self.kinds: tuple[str, ...] = tuple(k for k, _ in inputs)
        self.quantities: tuple[str, ...] = tuple(q for _, q in inputs)
        if self.device and not self.quantities:
            self.device = None
        self._wx: np.ndarray | None = None  # latest valid outdoor conditions
        self._wx_ms: int | None = None

    def learn(self, t_ms: int, readings: dict[str, dict[str, float]]) -> None:
        """Keep the latest plausible outdoor conditions; a missing or implausible reading leaves the last one to age out."""
        if not self.device:
            return
        vals = readings.get(self.device)
        if not vals:
            return
        x = []
        for q in self.quantities:
            v = vals.get(q)
            if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) or not -80.0 <= v <= 70.0:
                return
            x.append(float(v))
        self._wx, self._wx_ms = np.array(x), t_ms

    def now(self, t_ms: int) -> np.ndarray | None:
        """Outdoor conditions at ``t_ms`` (one value per weather input), or None without a recent reading."""
        if self._wx is None or self._wx_ms is None or (t_ms - self._wx_ms) / 1000.0 > self.s.weather_max_age_s:
            return None
        return self._wx

    def describe(self, wx: np.ndarray) -> str:
        """`` at 24 °C outdoors, dew point 13 °C``: the conditions a weather-adjusted baseline is for."""
        named = dict(zip(self.quantities, wx.tolist(), strict=True))
        t = named.get(str(self.config.get("temperature")))
        dp = named.get(str(self.config.get("dew_point")))
        parts = ([f"{t:.0f} °C outdoors"] if t is not None else []) + ([f"dew point {dp:.0f} °C"] if dp is not None else [])
        return " at " + ", ".join(parts) if parts else ""

    def to_state(self) -> dict[str, Any]:
        return {"latest": None if self._wx is None else [S.enc(x) for x in self._wx.tolist()], "latest_ms": self._wx_ms}

    def load_state(self, doc: Any, where: str = "weather") -> None:
        doc = S.obj(doc, where, ("latest", "latest_ms"))
        wx = None if doc["latest"] is None else S.nums(doc["latest"], f"{where}.latest", finite=True)
        if wx is not None and len(wx) != len(self.quantities):
            raise S.StateInvalid(f"{where}.latest: {len(self.quantities)} values are needed (one per weather input), not {len(wx)}")
        self._wx = None if wx is None else np.array(wx)
        self._wx_ms = S.opt_int(doc["latest_ms"], f"{where}.latest_ms")
