"""Per-process energy models calibrated on measured data: the plant's digital twin.

Each process is modelled per time bin as::

    E = p_active * hours_active + p_idle * hours_idle + sec * production

``hours_active`` are the hours in the bin when the process was producing (its
production counter moved nearby in time; for utilities without a counter, when the
plant's output process was producing), ``hours_idle`` the rest. ``p_active`` is the
running base load (kW), ``p_idle`` the standby load between shifts (kW) and ``sec``
the marginal energy per unit of output: coefficients an engineer can read and
check, fitted by non-negative least squares on a baseline period (ISO 50006
regression baseline [M1]; fit reported as CV(RMSE)/NMBE/R² per ASHRAE 14 [M2]).

What-if questions are answered by changing the inputs: moving idle hours to
standby, removing an excess, shifting hours between tariff bands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import nnls

from analytics.carbon.data import PlantData, bin_counter, edges_for
from carbonedge.clock import iso

FEATURES = ("hours_active", "hours_idle", "production")


@dataclass
class Observations:
    """Model inputs and measured energy per bin of one process."""

    process: str
    edges: np.ndarray
    energy_kwh: np.ndarray
    hours_active: np.ndarray
    hours_idle: np.ndarray
    production: np.ndarray
    has_production: bool

    @property
    def X(self) -> np.ndarray:
        return np.column_stack([self.hours_active, self.hours_idle, self.production])

    @property
    def bin_h(self) -> float:
        return float(np.median(np.diff(self.edges))) / 3600.0


@dataclass
class ProcessModel:
    """A calibrated process model and its fit on the baseline period."""

    process: str
    p_active_kw: float
    p_idle_kw: float | None  # None: no idle hours in the baseline, standby unknown
    sec: float | None
    production_unit: str | None
    baseline_start: float
    baseline_end: float
    fit: dict[str, float]
    bin_h: float
    residual_sd: float
    block_sd: dict[int, float] = field(default_factory=dict)

    def predict(self, obs: Observations) -> np.ndarray:
        # Without a calibrated standby, idle hours are predicted at the running load: no excess is claimed there.
        p_idle = self.p_active_kw if self.p_idle_kw is None else self.p_idle_kw
        return self.p_active_kw * obs.hours_active + p_idle * obs.hours_idle + (self.sec or 0.0) * obs.production

    def sum_sd(self, n: int) -> float:
        """Standard deviation of a sum of ``n`` consecutive residuals, measured on the baseline (autocorrelation included)."""
        if not self.block_sd:
            return self.residual_sd * math.sqrt(n)
        ks = sorted(self.block_sd)
        k = max((x for x in ks if x <= n), default=ks[0])
        return self.block_sd[k] * math.sqrt(n / k)

    def equation(self) -> str:
        parts = [f"{self.p_active_kw:,.0f} kW x active h"]
        parts.append(f"{self.p_idle_kw:,.0f} kW x idle h" if self.p_idle_kw is not None else "(no idle hours in baseline)")
        if self.sec is not None:
            parts.append(f"{self.sec:,.2f} kWh/{self.production_unit} x production")
        return "E = " + " + ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"process": self.process, "p_active_kw": self.p_active_kw, "p_idle_kw": self.p_idle_kw, "sec": self.sec,
                "production_unit": self.production_unit, "baseline": [iso(self.baseline_start), iso(self.baseline_end)],
                "fit": self.fit, "bin_h": self.bin_h, "equation": self.equation()}


def observations(data: PlantData, process: str, *, bin_s: float = 3600.0, activity_from: str | None = None) -> Observations:
    """Bin a process's energy and production, and split each bin into active and idle hours."""
    edges = edges_for(data.start, data.end, bin_s)
    edges[0], edges[-1] = max(edges[0], data.start), min(edges[-1], data.end)
    e = np.zeros(len(edges) - 1)
    for dev in data.process_devices(process):
        ds = data.devices.get(dev)
        if ds is not None and ds.has("active_energy_import"):
            e += bin_counter(ds.t, ds.values["active_energy_import"], edges)
    spec = data.plant["processes"][process]
    has_prod = bool(spec.get("production_unit")) and bool(data.counter_devices(process))
    prod = np.zeros_like(e)
    act_src = process if has_prod else (activity_from or data.plant.get("output_process"))
    active_h = np.diff(edges) / 3600.0
    if has_prod:
        q = data.production_quantity(process)
        for dev in data.counter_devices(process):
            ds = data.devices.get(dev)
            if ds is not None and ds.has(q):
                prod += bin_counter(ds.t, ds.values[q], edges)
    if act_src and act_src in data.plant["processes"]:
        active_h = _active_hours(data, act_src, edges)
    idle_h = np.diff(edges) / 3600.0 - active_h
    return Observations(process, edges, e, active_h, np.clip(idle_h, 0, None), prod, has_prod)


def _active_hours(data: PlantData, process: str, edges: np.ndarray) -> np.ndarray:
    """Hours per bin when ``process`` was producing: within one typical batch interval of a counter increment."""
    q = data.production_quantity(process)
    times: list[np.ndarray] = []
    for dev in data.counter_devices(process):
        ds = data.devices.get(dev)
        if ds is None or not ds.has(q):
            continue
        v = ds.values[q]
        ok = np.isfinite(v)
        t, v = ds.t[ok], v[ok]
        if t.size < 2:
            continue
        inc = np.diff(v) != 0
        times.append(t[1:][inc])
        poll = float(np.median(np.diff(t)))
    if not times:
        return np.zeros(len(edges) - 1)
    ti = np.sort(np.concatenate(times))
    if ti.size < 2:
        return np.zeros(len(edges) - 1)
    gaps = np.diff(ti)
    # Typical interval between increments while producing; a gap much longer than it is a stop.
    typical = float(np.median(gaps))
    reach = max(1.5 * typical, 1.5 * poll)
    # Active intervals: [increment - reach, increment], merged. Energy for a batch is drawn before its count.
    fine = np.arange(edges[0], edges[-1], 60.0)
    idx = np.searchsorted(ti, fine, side="left")
    nxt = np.where(idx < ti.size, ti[np.clip(idx, 0, ti.size - 1)], np.inf)
    active = (nxt - fine) <= reach
    b = np.searchsorted(edges, fine, side="right") - 1
    return np.bincount(b, weights=active.astype(float), minlength=len(edges) - 1)[: len(edges) - 1] / 60.0


def calibrate(obs: Observations, baseline: tuple[float, float], production_unit: str | None) -> ProcessModel:
    """Fit the process model on the bins inside ``baseline`` (epoch seconds)."""
    mids = (obs.edges[:-1] + obs.edges[1:]) / 2
    sel = (mids >= baseline[0]) & (mids < baseline[1])
    X, y = obs.X[sel], obs.energy_kwh[sel]
    cols = [0, 1] + ([2] if obs.has_production else [])
    has_idle = bool(X[:, 1].sum() >= 2.0)  # two idle hours or more to learn a standby load
    if not has_idle:
        cols.remove(1)
    if X.shape[0] < len(cols) + 2:
        raise ValueError(f"{obs.process}: only {X.shape[0]} bins in the baseline period; need at least {len(cols) + 2}")
    coef = np.zeros(3)
    # Scale columns before NNLS so hours (0-1) and tonnes (0-500) weigh alike in the solver.
    Xs = X[:, cols]
    scale = np.where(Xs.std(axis=0) > 0, Xs.std(axis=0), 1.0)
    c, _ = nnls(Xs / scale, y)
    coef[cols] = c / scale
    model = ProcessModel(
        process=obs.process, p_active_kw=float(coef[0]), p_idle_kw=float(coef[1]) if has_idle else None,
        sec=float(coef[2]) if obs.has_production else None, production_unit=production_unit,
        baseline_start=baseline[0], baseline_end=baseline[1], fit={}, bin_h=obs.bin_h, residual_sd=0.0,
    )
    pred = model.predict(_subset(obs, sel))
    r = y - pred
    p = len(cols)
    n = int(y.size)
    mean = float(y.mean()) if n else 0.0
    sd = float(np.sqrt((r**2).sum() / max(n - p, 1)))
    ss_tot = float(((y - mean) ** 2).sum())
    model.fit = {"n": n, "p": p, "cv_rmse": sd / mean if mean else math.nan,
                 "nmbe": float(r.sum() / (max(n - p, 1) * mean)) if mean else math.nan,
                 "r2": 1.0 - float((r**2).sum()) / ss_tot if ss_tot > 0 else math.nan}
    model.residual_sd = max(sd, 1e-9)
    for k in (1, 2, 4, 8, 16, 32, 64):
        if n >= 3 * k:
            sums = np.convolve(r, np.ones(k), mode="valid")
            model.block_sd[k] = max(float(sums.std()), 1e-9)
    return model


def _subset(obs: Observations, sel: np.ndarray) -> Observations:
    idx = np.flatnonzero(sel)
    if idx.size == 0:
        return Observations(obs.process, obs.edges[:1], *(np.zeros(0) for _ in range(4)), obs.has_production)
    return Observations(obs.process, obs.edges[idx[0]: idx[-1] + 2], obs.energy_kwh[sel], obs.hours_active[sel],
                        obs.hours_idle[sel], obs.production[sel], obs.has_production)
