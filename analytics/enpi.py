"""EnPIs and energy baselines per process, written back to InfluxDB (measurement ``enpi``).

For every process of the plant model and every local hour of the period:

* ``energy_kwh`` — from the process's energy counters (the kernel's increments, :mod:`carbonedge.energy`:
  rollover, reset and out-of-order safe; split across hour boundaries in proportion to time,
  :mod:`analytics.interval`);
* ``production`` — increase of its production counters (tonnes, pieces or kWh of cell capacity);
  utilities have none;
* ``sec`` — energy per unit of production, hours with production only;
* ``baseline_kwh`` — what the process would have used under the baseline period's performance,
  from an ISO 50006 regression energy baseline (:func:`analytics.baseline.fit_baseline`) on the
  relevant variables of that hour: its production and the fraction of the hour its line was
  running (operating hours are a relevant variable in ISO 50006 [M1]). Utilities without their own
  production are regressed on the plant's output and on how much of the hour any line ran;
* ``savings_kwh`` = baseline − actual (IPMVP [M5]) and ``cusum_kwh``, its running sum from the
  start of the period [M7].

Days and months are sums of their hours (the baseline of a day is the sum of its hours' baselines),
so periods always add up. Each baseline's goodness of fit on the baseline period is reported per
ASHRAE Guideline 14 (CV(RMSE), NMBE, R² on hourly data) [M2].

Points carry tags ``site``, ``area``, ``process``, ``period`` and are timestamped at the period's
start (ms); rewriting a period overwrites its point, so the job can be run again over any range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carbonedge.analytics.baseline import Baseline, BaselineError, Fit, fit_baseline, goodness_of_fit
from carbonedge.analytics.influx import InfluxReader
from carbonedge.analytics.interval import aggregate, intervals, period_key, zone
from carbonedge.errors import ConfigError
from carbonedge.plant import PlantModel
from carbonedge.influx import InfluxClient, lp_tag, quote_ident, quote_literal, time_range

PERIODS = ("hour", "day", "month")
#: Above this correlation of output with productive hours in the baseline, the kWh-per-unit coefficient is not identified.
SEPARABLE_R = 0.95
NOT_SEPARABLE = ("output moved with productive hours in the baseline period (r = {r:.2f}): the split of the energy into a load per "
                 "productive hour and a kWh per unit is not determined by the data and differs between models and baseline periods; "
                 "compare the modelled energy per unit ({sec:,.1f}), which is")
#: Readings this far either side of the period are read so that its first and last hours are whole.
EDGE_MS = 30 * 60_000


@dataclass
class ProcessEnpi:
    process: str
    area: str
    hours: np.ndarray  # hour start, epoch ms
    energy_kwh: np.ndarray
    production: np.ndarray | None
    running: np.ndarray | None  # fraction of the hour running with output (nan where unknown)
    baseline: Baseline | None = None
    baseline_kwh: np.ndarray | None = None
    fit_baseline_period: Fit | None = None
    fit_reporting_period: Fit | None = None
    note: str = ""
    #: Correlation of output with productive hours over the baseline period; near 1 the fixed load and the
    #: energy per unit cannot be told apart (:data:`NOT_SEPARABLE`).
    output_running_r: float | None = None
    #: Standard error of the kWh-per-unit coefficient on the baseline period (least-squares covariance).
    sec_coefficient_se: float | None = None
    #: Modelled energy per unit of output over the baseline period, Σ baseline / Σ output: the figure the
    #: EnPI baseline and the process model must agree on, whatever their split into kW and kWh per unit.
    modelled_sec: float | None = None

    @property
    def sec(self) -> np.ndarray | None:
        if self.production is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.production > 0, self.energy_kwh / self.production, np.nan)


@dataclass
class EnpiResult:
    site: str
    tz: str
    start_ms: int
    end_ms: int
    baseline_until_ms: int
    processes: dict[str, ProcessEnpi] = field(default_factory=dict)

    def lines(self, periods: tuple[str, ...] = ("hour", "day")) -> list[str]:
        """Line protocol for the ``enpi`` measurement (``docs/influx-schema.md``)."""
        out: list[str] = []
        tzi = zone(self.tz)
        for name, p in self.processes.items():
            base = f"enpi,site={lp_tag(self.site)},area={lp_tag(p.area or 'plant')},process={lp_tag(name)}"
            for period in periods:
                if period not in PERIODS:
                    raise ConfigError(f"unknown EnPI period {period!r}; use {', '.join(PERIODS)}")
                keys = np.array([period_key(int(h), period, tzi)[0] for h in p.hours], dtype=np.int64) if period != "hour" else p.hours
                cusum = 0.0
                for k in np.unique(keys):
                    m = keys == k
                    e = float(p.energy_kwh[m].sum())
                    fields = [f"energy_kwh={e!r}"]
                    if p.production is not None:
                        prod = float(np.nansum(p.production[m]))
                        fields.append(f"production={prod!r}")
                        if prod > 0:
                            fields.append(f"sec={e / prod!r}")
                    if p.baseline_kwh is not None:
                        b = float(p.baseline_kwh[m].sum())
                        cusum += b - e
                        fields += [f"baseline_kwh={b!r}", f"savings_kwh={b - e!r}", f"cusum_kwh={cusum!r}"]
                    out.append(f"{base},period={period} {','.join(fields)} {int(k)}")
        return out

    def table(self) -> str:
        """Per process: energy, SEC, baseline and its ASHRAE 14 fit, savings over the reporting period."""
        rows = [("process", "energy kWh", "SEC", "model SEC", "baseline", "CV(RMSE)", "NMBE", "R²", "ASHRAE 14 hourly", "savings kWh")]
        notes = []
        for name, p in self.processes.items():
            sec = p.sec
            prod = float(np.nansum(p.production)) if p.production is not None else 0.0
            sec_s = f"{float(p.energy_kwh.sum()) / prod:,.2f}" if prod > 0 else "—"
            f = p.fit_baseline_period
            rep = p.hours >= self.baseline_until_ms
            sav = float((p.baseline_kwh[rep] - p.energy_kwh[rep]).sum()) if p.baseline_kwh is not None and rep.any() else None
            held = p.baseline.trained_on.get("at_bound") if p.baseline else None
            eq = p.baseline.equation("E") + (f" ({', '.join(held)} held at 0)" if held else "") if p.baseline else (p.note or "—")
            if p.output_running_r is not None and p.output_running_r >= SEPARABLE_R:
                notes.append(f"{name}: " + NOT_SEPARABLE.format(r=p.output_running_r, sec=p.modelled_sec or 0.0)
                             + " what the metered energy determines.")
            elif p.baseline and p.sec_coefficient_se is not None and "production" in p.baseline.features:
                c = p.baseline.coefficients[p.baseline.features.index("production")] if "production" in p.baseline.terms else 0.0
                if 2 * p.sec_coefficient_se > 0.5 * max(c, 0.0):
                    notes.append(f"{name}: the kWh per unit ({c:,.3g} ± {2 * p.sec_coefficient_se:,.2g}, 95 %) is not determined to better "
                                 f"than ±50 % by the baseline period; compare the modelled energy per unit ({p.modelled_sec or 0.0:,.1f}), "
                                 "which is what the metered energy determines.")
            rows.append((name, f"{float(p.energy_kwh.sum()):,.0f}", sec_s, f"{p.modelled_sec:,.2f}" if p.modelled_sec else "—", eq,
                         f"{100 * f.cv_rmse:.1f} %" if f else "—", f"{100 * f.nmbe:+.2f} %" if f else "—",
                         f"{f.r2:.3f}" if f and np.isfinite(f.r2) else "—", ("meets" if f.meets("hourly") else "FAILS") if f else "—",
                         f"{sav:,.0f}" if sav is not None else "—"))
            del sec
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("SEC: metered energy per unit over the whole period; model SEC: the baseline's energy per unit over the baseline "
                     "period (what the process models of the report must match). Coefficients are >= 0 (physical signs).")
        return "\n".join(lines + notes)


def _hourly(reader_series: dict[str, tuple[np.ndarray, np.ndarray]], devices: list[str], tz: Any, hours: np.ndarray,
            quantity: str) -> np.ndarray | None:
    """Sum of the devices' counter increments per hour (nan where a device has no data for the hour).

    Increments are the kernel's (:mod:`carbonedge.energy`): rollovers, resets and readings out of
    order (a gateway clock that stepped back) are handled as everywhere else.
    """
    if not devices:
        return None
    total = np.zeros(hours.size)
    index = {int(h): i for i, h in enumerate(hours)}
    for d in devices:
        have = np.zeros(hours.size, dtype=bool)
        if d in reader_series:
            t, v = reader_series[d]
            for k, (_, inc, _) in aggregate(intervals(t, v, quantity=quantity), "hour", tz).items():
                i = index.get(k)
                if i is not None:
                    total[i] += inc
                    have[i] = True
        total[~have] = np.nan
    return total


def _batches_spread(series: dict[str, tuple[np.ndarray, np.ndarray]], devices: list[str], hours: np.ndarray, energy: np.ndarray,
                    prod: np.ndarray | None, quantity: str) -> np.ndarray | None:
    """A batch process's output set against the hours whose energy made it, as the process models do.

    A furnace's counter moves by a whole heat at tapping, often in the hour after most of the heat's
    energy was drawn; regressed on output counted at tapping, the baseline could not see that
    energy follows tonnes and put it all on productive hours (the EAF's kWh per tonne came out near
    0). Each heat is spread over the hours since the previous tap in proportion to the energy drawn
    above standby (:func:`analytics.twin.model.spread_batches`); totals are unchanged. Continuous
    lines (counts at least every 15 min) keep their hourly counts.
    """
    from carbonedge.analytics.twin.model import is_batch, spread_batches

    if prod is None:
        return None
    edges = np.append(hours, hours[-1] + 3_600_000).astype(np.float64)
    ends: list[np.ndarray] = []
    amounts: list[np.ndarray] = []
    for d in devices:
        if d not in series:
            continue
        iv = intervals(*series[d], quantity=quantity)
        m = (iv.delta > 0) & (iv.end_ms > edges[0]) & (iv.end_ms <= edges[-1])
        ends.append(iv.end_ms[m].astype(np.float64))
        amounts.append(iv.delta[m])
    if not ends or not is_batch(np.sort(np.concatenate(ends)) / 1000.0):
        return prod
    out = np.sum([spread_batches(t, a, edges, energy) for t, a in zip(ends, amounts, strict=True)], axis=0)
    return np.where(np.isfinite(prod), out, np.nan)


def _productive(running: dict[str, tuple[np.ndarray, np.ndarray]], prod: dict[str, tuple[np.ndarray, np.ndarray]], devices: list[str],
                hours: np.ndarray) -> np.ndarray | None:
    """Fraction of each hour the line ran *and* made output: running, with a production increment near.

    "Near" is the line's own cadence: 1.5 × the longest of the shorter 90 % of gaps between its
    production increments (a batch's energy comes before its tap). Running with nothing produced
    for longer — idling — is not productive time, so the baseline does not excuse idle energy.
    """
    have = [d for d in devices if d in running]
    if not have:
        return None
    t_all = np.unique(np.concatenate([running[d][0] for d in have]))
    run = np.zeros(t_all.size, dtype=bool)
    for d in have:
        t, v = running[d]
        run |= np.interp(t_all, t, v, left=0.0, right=0.0) > 0.5
    inc_t = [prod[d][0][1:][np.diff(prod[d][1]) != 0] for d in devices if d in prod and prod[d][0].size > 1]
    inc = np.unique(np.concatenate(inc_t)) if inc_t else np.zeros(0, dtype=np.int64)
    if inc.size >= 3:
        gaps = np.sort(np.diff(inc))
        cadence = 1.5 * float(gaps[: max(1, int(0.9 * gaps.size))].max())
        j = np.clip(np.searchsorted(inc, t_all), 1, inc.size - 1)
        near = np.minimum(np.abs(t_all - inc[j - 1]), np.abs(inc[j] - t_all)) <= cadence
    else:
        near = np.zeros(t_all.size, dtype=bool)
    ok = run & near
    out = np.full(hours.size, np.nan)
    idx = np.searchsorted(hours, t_all, side="right") - 1
    for i in range(hours.size):
        m = idx == i
        if m.any():
            out[i] = float(ok[m].mean())
    return out


def compute_enpi(reader: InfluxReader, plant: PlantModel | dict[str, Any], start_ms: int, end_ms: int, *, baseline_until_ms: int,
                 tz: str = "UTC", site: str | None = None) -> EnpiResult:
    """Hourly energy, production, SEC and baseline per process over ``[start_ms, end_ms)``.

    The baseline is fitted on the hours before ``baseline_until_ms`` (which must be normal
    operation, at least a day of it); hours after it are the reporting period.
    """
    plant = PlantModel.coerce(plant)
    site = site or plant.site
    if not site:
        raise ConfigError("no site: pass --site or use a plant model with a 'site' entry")
    tzi = zone(tz)
    h0 = period_key(start_ms + 3_599_999, "hour", tzi)[0]  # first whole hour at or after start
    h1 = period_key(end_ms, "hour", tzi)[0]  # hours end before the hour holding end
    if h1 - h0 < 2 * 3_600_000:
        raise ConfigError("the EnPI period must span at least two whole hours")
    if not (h0 < baseline_until_ms <= h1):
        raise ConfigError("the baseline period must end inside the EnPI period (--baseline-until between --start and --end)")
    hours = np.arange(h0, h1, 3_600_000, dtype=np.int64)
    where = f'"site" = {quote_literal(site)} AND {time_range(h0 - EDGE_MS, h1 + EDGE_MS)}'

    def fetch(q: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return reader.series_by_tag(f'SELECT {quote_ident(q)} FROM "readings" WHERE {where} GROUP BY "device"', "device")

    eq = plant.energy_quantity
    energy = fetch(eq)
    if not energy:
        raise ConfigError(f"no {eq} readings for site {site!r} between the given times; check --site, --start and --end")
    running = fetch("running")
    prod_cache: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    res = EnpiResult(site, tz, int(h0), int(h1), int(baseline_until_ms))
    for name, spec in plant.processes.items():
        e = _hourly(energy, list(spec.meters), tzi, hours, eq)
        if e is None:
            continue
        prod = run = None
        if spec.counters:
            pq = plant.production_quantity_of(name)
            if pq not in prod_cache:
                prod_cache[pq] = fetch(pq)
            prod = _hourly(prod_cache[pq], list(spec.counters), tzi, hours, pq)
            run = _productive(running, prod_cache[pq], list(spec.counters), hours)
            prod = _batches_spread(prod_cache[pq], list(spec.counters), hours, e, prod, pq)
        res.processes[name] = ProcessEnpi(name, spec.area, hours, e, prod, run)
    # Utilities: the plant's output and how much of the hour any line ran.
    out_name = plant.output_process
    lines_running = [p.running for p in res.processes.values() if p.running is not None]
    plant_running = _nanmax_rows(lines_running) if lines_running else None
    plant_output = res.processes[out_name].production if out_name in res.processes else None
    for p in res.processes.values():
        if p.production is not None:
            feats = {"production": p.production, "productive_h": p.running}
        else:
            feats = {"plant_output": plant_output, "plant_productive_h": plant_running}
        _fit(p, {k: v for k, v in feats.items() if v is not None}, baseline_until_ms)
    return res


def _nanmax_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Per hour, the largest of the lines' values; NaN where no line has one (no All-NaN warning)."""
    M = np.vstack(rows)
    seen = np.isfinite(M).any(axis=0)
    out = np.full(M.shape[1], np.nan)
    out[seen] = np.max(np.where(np.isfinite(M[:, seen]), M[:, seen], -np.inf), axis=0)
    return out


def _fit(p: ProcessEnpi, feats: dict[str, np.ndarray], baseline_until_ms: int) -> None:
    ok = np.isfinite(p.energy_kwh)
    train = ok & (p.hours < baseline_until_ms)
    for v in feats.values():
        ok &= np.isfinite(v)
    train &= ok
    # A variable that does not vary over the baseline period cannot explain anything: leave it out.
    names = [k for k, v in feats.items() if np.ptp(v[train]) > 0] if train.any() else []
    X = np.column_stack([feats[k] for k in names]) if names else np.zeros((p.hours.size, 0))
    try:
        b = _physical(fit_baseline(X[train], p.energy_kwh[train], names), X[train], p.energy_kwh[train])
    except BaselineError as exc:
        p.note = f"no baseline: {exc}"
        p.energy_kwh = np.where(np.isfinite(p.energy_kwh), p.energy_kwh, 0.0)
        if p.production is not None:
            p.production = np.where(np.isfinite(p.production), p.production, 0.0)
        return
    pred = b.predict(np.where(np.isfinite(X), X, 0.0))
    p.baseline = b
    p.fit_baseline_period = b.fit
    rep = ok & (p.hours >= baseline_until_ms)
    if rep.sum() > len(names) + 1 and float(p.energy_kwh[rep].mean()) != 0:
        p.fit_reporting_period = goodness_of_fit(p.energy_kwh[rep], pred[rep], len(names) + 1)
    # Hours without complete data get no baseline (nothing to compare) and count zero energy.
    p.baseline_kwh = np.where(ok, pred, 0.0)
    if p.production is not None:
        q = float(np.nansum(p.production[train]))
        p.modelled_sec = float(pred[train].sum()) / q if q > 0 else None
        if "production" in names and "productive_h" in names:
            a, c = feats["production"][train], feats["productive_h"][train]
            p.output_running_r = float(np.corrcoef(a, c)[0, 1])
        if "production" in names:
            D = np.column_stack([np.ones(int(train.sum())), X[train]])
            r = p.energy_kwh[train] - pred[train]
            cov = float(r @ r) / max(D.shape[0] - D.shape[1], 1) * np.linalg.pinv(D.T @ D)
            p.sec_coefficient_se = float(np.sqrt(max(cov[1 + names.index("production"), 1 + names.index("production")], 0.0)))
    p.energy_kwh = np.where(np.isfinite(p.energy_kwh), p.energy_kwh, 0.0)
    if p.production is not None:
        p.production = np.where(np.isfinite(p.production), p.production, 0.0)


def _physical(b: Baseline, X: np.ndarray, y: np.ndarray) -> Baseline:
    """The baseline refitted with physical signs: base load (intercept) and every coefficient ≥ 0.

    Energy per unit of output and load per productive hour cannot be negative; an unconstrained
    fit gives them negative values when the variables are nearly collinear (a line's output
    follows its running hours), and a negative kWh per tonne reads as nonsense to an engineer.
    Bounded least squares (:func:`scipy.optimize.lsq_linear`) keeps the fit inside those bounds; a
    coefficient held at its bound is named in :attr:`Baseline.trained_on` (``at_bound``).
    """
    from scipy.optimize import lsq_linear

    if b.intercept >= 0 and all(c >= 0 for c in b.coefficients):
        return b
    D = np.column_stack([np.ones(y.size), b.design(X)])
    scale = np.where(D.std(axis=0) > 0, D.std(axis=0), np.abs(D).max(axis=0) if D.size else 1.0)
    scale = np.where(scale > 0, scale, 1.0)
    r = lsq_linear(D / scale, y, bounds=(np.zeros(D.shape[1]), np.full(D.shape[1], np.inf)))
    sol = np.where(r.active_mask == -1, 0.0, r.x / scale)  # held at the lower bound: exactly 0
    names = ["base load", *(str(t) if isinstance(t, str) else t.label() for t in b.terms)]
    out = Baseline(features=b.features, intercept=float(sol[0]), coefficients=[float(c) for c in sol[1:]], fit=b.fit,
                   trained_on={**b.trained_on, "at_bound": [n for n, c in zip(names, sol, strict=True) if c == 0.0]},
                   terms=b.terms)
    out.fit = goodness_of_fit(y, out.predict(X), b.fit.p)
    return out


def write_enpi(res: EnpiResult, url: str, database: str, *, periods: tuple[str, ...] = ("hour", "day"),
               auth: tuple[str, str] | None = None) -> int:
    """Write the EnPI points; returns how many."""
    with InfluxClient(url, database, username=auth[0] if auth else None, password=auth[1] if auth else None, timeout_s=60.0) as db:
        return db.write_lines(res.lines(periods), what="EnPI figures")
