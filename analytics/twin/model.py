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
from scipy.optimize import lsq_linear

from carbonedge.analytics.carbon.data import PlantData, bin_counter, corrected_cumulative, edges_for
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
    daily: tuple[float, float] = (0.0, 0.0)  # kW amplitude of the daily cycle (cos, sin of the hour of day)
    #: Modelled energy per unit of output over the baseline period (Σ predicted / Σ output): what the EnPI
    #: baseline must agree with; the split into kW and kWh per unit need not (see docs/analytics.md).
    modelled_sec: float | None = None

    def predict(self, obs: Observations) -> np.ndarray:
        # Without a calibrated standby, idle hours are predicted at the running load: no excess is claimed there.
        p_idle = self.p_active_kw if self.p_idle_kw is None else self.p_idle_kw
        out = self.p_active_kw * obs.hours_active + p_idle * obs.hours_idle + (self.sec or 0.0) * obs.production
        if self.daily != (0.0, 0.0):
            c, s = _daily_terms(obs)
            out = out + self.daily[0] * c + self.daily[1] * s
        return out

    def sum_sd(self, n: int) -> float:
        """Standard deviation of a sum of ``n`` consecutive residuals, measured on the baseline (autocorrelation included)."""
        if not self.block_sd:
            return self.residual_sd * math.sqrt(n)
        ks = sorted(self.block_sd)
        k = max((x for x in ks if x <= n), default=ks[0])
        if n == k:
            return self.block_sd[k]
        # Beyond the measured block sizes, grow as the baseline showed between its two largest
        # blocks: n^0.5 for independent noise, up to n^1 for a slow drift (weather) that persists.
        alpha = 0.5
        if len(ks) >= 2:
            k1, k2 = ks[-2], ks[-1]
            alpha = min(1.0, max(0.5, math.log(self.block_sd[k2] / self.block_sd[k1]) / math.log(k2 / k1)))
        return self.block_sd[k] * (n / k) ** alpha

    def equation(self) -> str:
        parts = [f"{self.p_active_kw:,.0f} kW x active h"]
        parts.append(f"{self.p_idle_kw:,.0f} kW x idle h" if self.p_idle_kw is not None else "(no idle hours in baseline)")
        if self.sec is not None:
            parts.append(f"{self.sec:,.2f} kWh/{self.production_unit} x production")
        if self.daily != (0.0, 0.0):
            parts.append(f"daily cycle ±{math.hypot(*self.daily):,.0f} kW")
        return "E = " + " + ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"process": self.process, "p_active_kw": self.p_active_kw, "p_idle_kw": self.p_idle_kw, "sec": self.sec,
                "production_unit": self.production_unit, "baseline": [iso(self.baseline_start), iso(self.baseline_end)],
                "fit": self.fit, "bin_h": self.bin_h, "equation": self.equation(), "modelled_sec": self.modelled_sec}


def observations(data: PlantData, process: str, *, bin_s: float = 3600.0, activity_from: str | None = None) -> Observations:
    """Bin a process's energy and production, and split each bin into active and idle hours."""
    edges = edges_for(data.start, data.end, bin_s)
    edges[0], edges[-1] = max(edges[0], data.start), min(edges[-1], data.end)
    e = np.zeros(len(edges) - 1)
    for dev in data.process_devices(process):
        ds = data.devices.get(dev)
        if ds is not None and ds.has("active_energy_import"):
            e += bin_counter(ds.t, ds.values["active_energy_import"], edges, "active_energy_import")
    spec = data.plant.processes[process]
    has_prod = bool(spec.production_unit) and bool(data.counter_devices(process))
    prod = np.zeros_like(e)
    act_src = process if has_prod else (activity_from or data.plant.output_process)
    active_h = np.diff(edges) / 3600.0
    if has_prod:
        q = data.production_quantity(process)
        for dev in data.counter_devices(process):
            ds = data.devices.get(dev)
            if ds is not None and ds.has(q):
                prod += bin_counter(ds.t, ds.values[q], edges, q)
        prod = _spread_batches(data, process, edges, prod, e)
    if act_src and act_src in data.plant.processes:
        active_h = _active_hours(data, act_src, edges)
    idle_h = np.diff(edges) / 3600.0 - active_h
    return Observations(process, edges, e, active_h, np.clip(idle_h, 0, None), prod, has_prod)


def _spread_batches(data: PlantData, process: str, edges: np.ndarray, prod: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """For batch processes, spread each counted batch over the bins whose energy made it.

    A furnace's counter jumps by a whole heat at tapping, but the heat's energy was drawn since
    the previous tap — possibly interrupted by a stop between shifts. Each batch is spread over
    the bins between the previous count and its own, in proportion to the energy above standby
    drawn in them, so production lines up with the energy it took. Totals are unchanged.
    Continuous processes (counts at least every 15 min) are left as counted.
    """
    ti, _ = _increment_times(data, process)
    if not is_batch(ti):
        return prod
    q = data.production_quantity(process)
    out = np.zeros_like(prod)
    for dev in data.counter_devices(process):
        ds = data.devices.get(dev)
        if ds is None or not ds.has(q):
            continue
        ok = np.isfinite(ds.values[q])
        t = ds.t[ok]
        d = np.diff(corrected_cumulative(ds.values[q][ok], t, q))
        out += spread_batches(t[1:], d, edges, energy)
    return out


def last_batch_count(data: PlantData, process: str) -> float | None:
    """Time of a batch process's last counted output (e.g. the last tap), or None for a continuous line.

    Energy drawn after it belongs to a batch that is counted after the period: nothing sets output
    against it, so per-bin comparisons (CUSUM) stop at the last bin that ends by then.
    """
    ti, _ = _increment_times(data, process)
    return float(ti[-1]) if is_batch(ti) else None


def is_batch(increment_times_s: np.ndarray) -> bool:
    """A batch process counts its output in lumps (a heat at tapping): increments more than 15 min apart (median)."""
    return bool(increment_times_s.size >= 3 and float(np.median(np.diff(increment_times_s))) > 15 * 60)


def spread_batches(ends: np.ndarray, amounts: np.ndarray, edges: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Spread each batch (``amounts[i]`` counted at ``ends[i]``) over the bins since the previous count, by energy drawn.

    The weight of a bin is its overlap with ``[previous count, this count]`` times its energy above
    standby (the 5th percentile of ``energy``); where no bin drew energy above standby, by overlap
    alone. ``ends`` and ``edges`` share one time unit. Totals are unchanged. Used by the process
    models and by the EnPI baselines, so both set the same tonnes against the same energy.
    """
    e = np.nan_to_num(np.asarray(energy, dtype=np.float64), nan=0.0)
    standby = float(np.percentile(e, 5)) if e.size else 0.0
    weight = np.clip(e - standby, 0, None)
    out = np.zeros(len(edges) - 1)
    prev_t = float(edges[0])
    for t1, d in zip(np.asarray(ends, dtype=np.float64).tolist(), np.asarray(amounts, dtype=np.float64).tolist(), strict=True):
        if d <= 0:
            continue
        # Overlap of [prev_t, t1] with each bin, times the bin's energy weight.
        ov = np.clip(np.minimum(edges[1:], t1) - np.maximum(edges[:-1], prev_t), 0, None) / np.diff(edges)
        w = ov * weight
        if w.sum() <= 0:
            w = ov
        if w.sum() > 0:
            out += d * w / w.sum()
        else:
            out[min(max(np.searchsorted(edges, t1) - 1, 0), out.size - 1)] += d
        prev_t = t1
    return out


def _increment_times(data: PlantData, process: str) -> tuple[np.ndarray, float]:
    """Times at which the process's production counters moved, and the poll interval."""
    q = data.production_quantity(process)
    times: list[np.ndarray] = []
    poll = 60.0
    for dev in data.counter_devices(process):
        ds = data.devices.get(dev)
        if ds is None or not ds.has(q):
            continue
        v = ds.values[q]
        ok = np.isfinite(v)
        t, v = ds.t[ok], v[ok]
        if t.size < 2:
            continue
        times.append(t[1:][np.diff(v) != 0])
        poll = float(np.median(np.diff(t)))
    return (np.sort(np.concatenate(times)) if times else np.zeros(0)), poll


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


def _daily_terms(obs: Observations) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the hour of day at each bin's middle, times the bin's hours (kW amplitude -> kWh)."""
    mids = (obs.edges[:-1] + obs.edges[1:]) / 2
    ang = 2 * math.pi * (mids % 86400.0) / 86400.0
    h = np.diff(obs.edges) / 3600.0
    return np.cos(ang) * h, np.sin(ang) * h


def calibrate(obs: Observations, baseline: tuple[float, float], production_unit: str | None) -> ProcessModel:
    """Fit the process model on the bins inside ``baseline`` (epoch seconds).

    Utilities without a production counter (dry rooms, HVAC, cooling) follow the weather; without
    weather data a daily cycle (one harmonic of the hour of day) stands in for it, as time-of-day
    terms do in time-of-week baselines. It needs a baseline of at least a day.
    """
    mids = (obs.edges[:-1] + obs.edges[1:]) / 2
    sel = (mids >= baseline[0]) & (mids < baseline[1])
    X, y = obs.X[sel], obs.energy_kwh[sel]
    cols = [0, 1] + ([2] if obs.has_production else [])
    has_idle = bool(X[:, 1].sum() >= 2.0)  # two idle hours or more to learn a standby load
    if not has_idle:
        cols.remove(1)
    daily = not obs.has_production and (baseline[1] - baseline[0]) >= 86400.0
    if X.shape[0] < len(cols) + 2 + (2 if daily else 0):
        raise ValueError(f"{obs.process}: only {X.shape[0]} bins in the baseline period; need at least {len(cols) + 2}")
    coef = np.zeros(3)
    A = X[:, cols]
    lower = [0.0] * len(cols)  # loads and energy per unit are physical: never negative
    if daily:
        c_, s_ = _daily_terms(obs)
        A = np.column_stack([A, c_[sel], s_[sel]])
        lower += [-np.inf, -np.inf]
    # Scale columns so hours (0-1) and tonnes (0-500) weigh alike in the solver.
    scale = np.where(A.std(axis=0) > 0, A.std(axis=0), 1.0)
    sol = lsq_linear(A / scale, y, bounds=(np.array(lower), np.full(len(lower), np.inf))).x / scale
    coef[cols] = sol[: len(cols)]
    model = ProcessModel(
        process=obs.process, p_active_kw=float(coef[0]), p_idle_kw=float(coef[1]) if has_idle else None,
        sec=float(coef[2]) if obs.has_production else None, production_unit=production_unit,
        baseline_start=baseline[0], baseline_end=baseline[1], fit={}, bin_h=obs.bin_h, residual_sd=0.0,
        daily=(float(sol[-2]), float(sol[-1])) if daily else (0.0, 0.0),
    )
    pred = model.predict(_subset(obs, sel))
    if obs.has_production and float(obs.production[sel].sum()) > 0:
        model.modelled_sec = float(pred.sum()) / float(obs.production[sel].sum())
    r = y - pred
    p = len(cols) + (2 if daily else 0)
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
