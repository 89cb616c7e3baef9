"""Energy check: each process's power against what it drew in the same production state, with outdoor conditions.

The process's mean power over each poll interval (from its energy counters through the kernel's
counter arithmetic, so it is exact and reset-safe) is compared with what the process drew in the
same *production state* during the learning period: producing or not (production counters advanced
within the process's normal production cadence), running or not (PLC running flag), and the
production rate. Not producing means standby is expected: a furnace drawing power while it makes
nothing is the signal, a furnace drawing power while melting is not. Utilities without their own
production counter take the plant output's production state. Excess power is averaged over several
windows (5 min … 4 h); each window's alert threshold is ``margin ×`` the largest excess that window
showed while learning, so the thresholds carry the process's own variability and autocorrelation,
and short sharp faults and slow drifts are both caught.

Weather-driven loads (:mod:`.weather`) get a weather term in their expected power, fitted on the
learning period's residual and thresholds learned after it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carbonedge.analytics.alerts import AlertBook, AlertEvent
from carbonedge.analytics.monitor import state as S
from carbonedge.analytics.monitor.meters import MeterDataCheck
from carbonedge.analytics.monitor.settings import ENERGY_Q, MonitorSettings, Proc, score01
from carbonedge.analytics.monitor.weather import WeatherCheck, WeatherTerm, fit_weather, interval_means


@dataclass
class _Group:
    intercept: float
    slope: float
    n: int


@dataclass
class _ProcModel:
    window_s: float  # production cadence: produced within this window = producing
    groups: dict[tuple[int, int], _Group]
    mean_kw: float
    thresholds: dict[tuple[tuple[int, int], int], float]  # (group, window length in polls) → kW
    uses_running: bool
    idle_max_s: float = 0.0  # longest running-but-not-producing stretch seen while learning
    standby_kw: float = 0.0
    #: Outdoor-conditions term, for loads that follow the weather; None for the others.
    weather: WeatherTerm | None = None
    #: Thresholds of the excess left after the weather term (used while a weather reading is at hand).
    thresholds_w: dict[tuple[tuple[int, int], int], float] = field(default_factory=dict)

    def group(self, producing: int, running: int) -> tuple[int, int] | None:
        """The learned state for ``(producing, running)``; None for a state not seen while learning.

        An unseen state (a line running with nothing to make, when that never happened while
        learning) is judged by the idle-duration rule, not by a power level learned elsewhere.
        """
        key = (producing, running if self.uses_running else 0)
        return key if key in self.groups else None

    def expected(self, group: tuple[int, int], rate: float) -> float:
        g = self.groups[group]
        return g.intercept + g.slope * rate


def _fit_groups(P: np.ndarray, prod: np.ndarray, run: np.ndarray, rate: np.ndarray, min_n: int) -> dict[tuple[int, int], _Group]:
    groups: dict[tuple[int, int], _Group] = {}
    for pr in (0, 1):
        for ru in (0, 1):
            m = (prod == pr) & (run == ru) & np.isfinite(P)
            if m.sum() < min_n:
                continue
            x, y = rate[m], P[m]
            if pr == 1 and np.ptp(x) > 0 and m.sum() >= 3 * min_n:
                slope, icpt = np.polyfit(x, y, 1)
                if slope < 0:  # more production never needs less power; a negative slope is noise
                    slope, icpt = 0.0, float(y.mean())
            else:
                slope, icpt = 0.0, float(np.median(y) if pr == 0 else y.mean())
            groups[(pr, ru)] = _Group(float(icpt), float(slope), int(m.sum()))
    if not groups:
        groups[(0, 0)] = _Group(float(np.nanmean(P)), 0.0, int(np.isfinite(P).sum()))
    return groups


@dataclass
class _ProcState:
    # Learning buffers (one entry per cycle with a clean interval).
    t: list[int] = field(default_factory=list)
    P: list[float] = field(default_factory=list)
    dprod: list[float] = field(default_factory=list)
    run: list[float] = field(default_factory=list)
    dt: list[float] = field(default_factory=list)
    wx: list[tuple[float, ...]] = field(default_factory=list)  # outdoor conditions of the cycle (NaN: none)
    # Scoring state.
    last_prod_ms: int | None = None
    prod_hist: deque[tuple[int, float]] = field(default_factory=deque)
    excess: dict[tuple[Any, ...], deque[tuple[int, float]]] = field(default_factory=dict)  # (state, window, weather used)
    wasted_kwh: float = 0.0
    idle_since: int | None = None
    quiet_since: int | None = None  # start of the current not-producing stretch
    calm_since: int | None = None  # start of the current stretch below the resolve level
    over: int = 0  # consecutive polls over threshold
    last_expected: float = 0.0
    last_P: float = 0.0
    # Online weather learning (processes with a weather term): 15-min means of (time, residual
    # without the weather term, outdoor conditions) of calm, clean intervals, the bucket being
    # filled ([bucket, n, Σ residual, Σ conditions …]) and when the term is fitted next.
    wlog: list[tuple[int, float, tuple[float, ...]]] = field(default_factory=list)
    wacc: list[float] | None = None
    next_refit_ms: int | None = None
    refits: int = 0




#: Balance points tried per change point when the weather term is fitted again on several days' weather.
REFIT_GRID = 12
#: Fewest 15-min means (6 h) a weather term is fitted on at the end of learning.
MIN_WEATHER_INTERVALS = 24


class EnergyCheck:
    """Per process: mean power over each clean poll interval against the production-state model (see the module docstring)."""

    name = "energy"

    def __init__(self, procs: dict[str, Proc], settings: MonitorSettings, alerts: AlertBook, meters: MeterDataCheck, weather: WeatherCheck) -> None:
        self.procs = procs
        self.s = settings
        self.alerts = alerts
        self.meters = meters
        self.weather = weather
        self.learning = True
        self.poll_s: float | None = None
        self.pstate: dict[str, _ProcState] = {n: _ProcState() for n in procs}
        self.models: dict[str, _ProcModel] = {}

    def to_state(self) -> dict[str, Any]:
        return energy_to_state(self)

    def load_state(self, doc: Any, where: str = "energy") -> None:
        energy_load_state(self, doc, where)

    def _proc_interval(self, p: Proc, readings: dict[str, dict[str, float]], bad: set[str], prev_ms: int) -> tuple[float, float, float] | None:
        """(energy increase kWh, production increase, running flag) over the interval, or None when unusable."""
        if "*" in bad or not p.meters:
            return None
        e_inc = 0.0
        for m in p.meters:
            if m in bad or m not in readings or ENERGY_Q not in readings[m]:
                return None
            st = self.meters.devices[m]
            if ENERGY_Q not in st.last_values or st.last_seen_ms is None:
                return None
            k = self.meters.steps.get(m, {}).get(ENERGY_Q)
            if k is None or not k.good or k.flag:
                return None
            inc = k.delta
            if st.last_seen_ms != prev_ms:
                return None  # the device missed the previous cycle: this increment spans more than dt
            e_inc += inc
        prod = 0.0
        running = 0.0
        for c in p.counters:
            if c in bad or c not in readings:
                return None
            st = self.meters.devices[c]
            q = p.production_q
            if q in readings[c] and q in st.last_values:
                k = self.meters.steps.get(c, {}).get(q)
                if k is None or not k.good or k.flag:
                    return None
                prod += k.delta
            running = max(running, float(readings[c].get("running", 0.0) or 0.0))
        return e_inc, prod, running

    def score(self, t_ms: int, prev: int | None, readings: dict[str, dict[str, float]], bad: set[str], events: list[AlertEvent]) -> None:
        """One poll cycle: learn from its intervals while learning, score them after."""
        if prev is None:
            return
        dt = (t_ms - prev) / 1000.0
        if dt <= 0:
            return
        for name, p in self.procs.items():
            iv = self._proc_interval(p, readings, bad, prev)
            ps = self.pstate[name]
            if iv is None:
                continue
            e_inc, prod, running = iv
            P = e_inc * 3600.0 / dt
            if prod > 0:
                ps.last_prod_ms = t_ms
            ps.prod_hist.append((t_ms, prod))
            if self.learning:
                ps.t.append(t_ms)
                ps.P.append(P)
                ps.dprod.append(prod)
                ps.run.append(running)
                ps.dt.append(dt)
                wx = self.weather.now(t_ms) if self.weather.device else None
                ps.wx.append(tuple(wx.tolist()) if wx is not None else (math.nan,) * len(self.weather.quantities))
                continue
            self._score(name, t_ms, dt, P, prod, running, events)

    def _own_state(self, name: str, t_ms: int, window_s: float) -> tuple[int, float]:
        src = self.pstate[name]
        while src.prod_hist and src.prod_hist[0][0] <= t_ms - window_s * 1000:
            src.prod_hist.popleft()
        total = sum(x for _, x in src.prod_hist)
        return int(total > 0), total * 3600.0 / window_s

    def _state(self, name: str, t_ms: int, window_s: float) -> tuple[int, float]:
        """(producing 0/1, production rate per hour over the cadence window) of a process, or of the plant for utilities."""
        if self.procs[name].follows is None:
            return self._own_state(name, t_ms, window_s)
        producing = 0
        for other, m in self.models.items():
            if self.procs[other].follows is None:
                producing |= self._own_state(other, t_ms, m.window_s)[0]
        return producing, float(producing)

    def _plant_producing_without(self, name: str, t_ms: int) -> bool:
        """Is any other production line producing now (within its own cadence)?"""
        for other, m in self.models.items():
            if other != name and self.procs[other].follows is None and self._own_state(other, t_ms, m.window_s)[0]:
                return True
        return False

    def _score(self, name: str, t_ms: int, dt: float, P: float, prod: float, running: float, events: list[AlertEvent]) -> None:
        model = self.models.get(name)
        if model is None:
            return
        ps = self.pstate[name]
        producing, rate = self._state(name, t_ms, model.window_s)
        run_flag = int(running > 0.5)
        # Idle-duration rule: running with nothing produced for longer than ever seen while learning.
        if model.uses_running and producing == 0 and run_flag == 1:
            if ps.idle_since is None:
                ps.idle_since = t_ms
        else:
            ps.idle_since = None
        idle_limit_s = max(self.s.margin * model.idle_max_s, 2.0 * model.window_s, self.s.idle_min_minutes * 60.0)
        if producing:
            ps.quiet_since = None
        elif ps.quiet_since is None:
            ps.quiet_since = t_ms
        settling = not producing and (t_ms - (ps.quiet_since or t_ms)) < self.s.stop_settle_minutes * 60_000
        grp = model.group(producing, run_flag)
        # Weather-driven loads: the outdoor conditions now raise or lower the expectation. Without a
        # recent weather reading the production-state model and its own thresholds apply, as for any load.
        online = self._weather_online(name, model)
        wx = self.weather.now(t_ms) if online else None
        applied = wx is not None and model.weather is not None
        w_kw = model.weather(wx) if applied else 0.0  # type: ignore[misc]
        # A term found after learning has no thresholds of its own: the wider ones learned without weather apply.
        thresholds = model.thresholds_w if applied and model.thresholds_w else model.thresholds
        worst = 0.0
        worst_w, worst_mean = 0, 0.0
        # Running without producing is a batch in progress, a warm-up or a changeover: its power says
        # little (a furnace melts the first heat of a shift before anything is tapped); how long it
        # lasts is the signal, and the idle-duration rule below judges that.
        in_progress = model.uses_running and producing == 0 and run_flag == 1
        # A line stopped while the rest of the plant produces (breakdown, starved, blocked) keeps its
        # auxiliaries ready to restart: the standby learned mostly with the plant down does not apply.
        # Running like that is still judged by the idle-duration rule.
        waiting = producing == 0 and self.procs[name].follows is None and self._plant_producing_without(name, t_ms)
        if grp is not None and (settling or in_progress or waiting):
            exp = model.expected(grp, rate) + w_kw
        elif grp is not None:
            exp = model.expected(grp, rate) + w_kw
            # Windows hold the excess of the current production state only: each state is judged
            # against its own learned spread (with or without the weather term: separate windows).
            for (g, w), thr in thresholds.items():
                if g != grp:
                    continue
                buf = ps.excess.setdefault((g, w, thresholds is model.thresholds_w), deque(maxlen=w))
                buf.append((t_ms, P - exp))
                # A window is judged only when its intervals are recent: an hour of standby last
                # night says nothing about the standby that started five minutes ago.
                if len(buf) == w and t_ms - buf[0][0] <= 1.5 * w * (self.poll_s or dt) * 1000:
                    m = _window_excess(np.fromiter((x for _, x in buf), dtype=float, count=w))
                    r = m / thr
                    if r > worst:
                        worst, worst_w, worst_mean = r, w, m
        else:
            exp = model.standby_kw
        if ps.idle_since is not None and (t_ms - ps.idle_since) / 1000.0 > idle_limit_s and P > model.standby_kw + max(self.s.min_excess_fraction * model.mean_kw, 0.5):
            exp = model.standby_kw
            worst = max(worst, 1.0 + 1e-9)
            idle_for_s = (t_ms - ps.idle_since) / 1000.0
        else:
            idle_for_s = 0.0
        ex = P - exp
        ps.last_expected, ps.last_P = exp, P
        key = ("energy", name)
        is_open = self.alerts.is_open(key)
        if is_open:
            ps.wasted_kwh += max(ex, 0.0) * dt / 3600.0
        ps.over = ps.over + 1 if worst > 1.0 else 0
        if worst >= 0.7:
            ps.calm_since = None
        elif ps.calm_since is None:
            ps.calm_since = t_ms
        if worst > 1.0 and (is_open or ps.over >= self.s.confirm_polls):
            idle = producing == 0
            kind = "idle_running" if idle else "excess_energy"
            # The excess that raised the alert: the triggering window's average when it exceeds this poll's.
            exc = worst_mean if worst_w and worst_mean > ex else ex
            frac = exc / max(exp, 1e-9)
            sev = "critical" if frac >= 0.5 or exc >= 0.5 * model.mean_kw else ("major" if frac >= 0.15 else "minor")
            subject = "the plant produces nothing" if self.procs[name].follows else "producing nothing"
            state = "this production state" + (self.weather.describe(wx) if applied else "")
            normal = "with the plant stopped" if self.procs[name].follows else "stopped"
            if worst_w and worst_mean > ex:
                # The alert comes from an averaging window: say what the window saw, not only this poll.
                mins = worst_w * (self.poll_s or dt) / 60.0
                span = f"{mins / 60:,.0f} h" if mins >= 90 else f"{mins:,.0f} min"
                frac = worst_mean / max(exp, 1e-9)
                what = (f"{name} has drawn {worst_mean:,.0f} kW ({100 * frac:+.0f} %) more than its baseline for {state} on average "
                        f"over the last {span}" + (f" while {subject}" if idle else "") + f" (the latest poll alone: {P:,.0f} kW against {exp:,.0f} kW)")
            else:
                what = (f"{name} draws {P:,.0f} kW while {subject}; {normal}, it normally draws {exp:,.0f} kW"
                        if idle else f"{name} draws {P:,.0f} kW where its baseline for {state} is {exp:,.0f} kW ({100 * frac:+.0f} %)")
            if not is_open:
                # Energy above normal over the stretch that raised the alert (the window, or this poll).
                # For idling, the whole idle stretch: the power now stood for all of it.
                span_s = worst_w * (self.poll_s or dt) if worst_w else max(dt, idle_for_s)
                ps.wasted_kwh = max(exc, 0.0) * span_s / 3600.0
                events += self.alerts.open(t_ms, kind=kind, process=name, device=None, severity=sev, key=key, score=score01(worst),
                                           message=f"{what}. About {ps.wasted_kwh:,.0f} kWh above normal so far.", wasted_kwh=ps.wasted_kwh)
            else:
                events += self.alerts.update(t_ms, key, severity=sev, score=score01(worst), wasted_kwh=ps.wasted_kwh,
                                             message=f"{what}. About {ps.wasted_kwh:,.0f} kWh above normal so far.")
        elif is_open and worst < 0.7 and (t_ms - (ps.calm_since or t_ms)) >= self.s.resolve_minutes * 60_000:
            ps.calm_since = None
            for buf in ps.excess.values():
                buf.clear()  # start afresh: a long window still holding the fault must not reopen it
            events += self.alerts.resolve(t_ms, key, note=f"{name} has been back within its normal range for {self.s.resolve_minutes:g} min; "
                                                          f"{ps.wasted_kwh:,.0f} kWh above normal in total", wasted_kwh=ps.wasted_kwh)
        if online and wx is not None and grp is not None and not self.alerts.is_open(key) and worst < 0.7:
            self._weather_learn(ps, t_ms, P - model.expected(grp, rate), wx)
        if online and ps.next_refit_ms is not None and t_ms >= ps.next_refit_ms:
            self._weather_refit(name, model, ps, t_ms)

    # ------------------------------------------------------------------ weather, learned online

    BUCKET_MS = 15 * 60_000

    def _weather_online(self, name: str, model: _ProcModel) -> bool:
        """Does this process learn its weather term online? Those with a term, and, with a weather station,
        the loads without a production counter of their own (dry rooms, HVAC, ageing rooms, utilities),
        whose weather dependence one learning day's swing may not reveal."""
        return model.weather is not None or (self.weather.device is not None and self.procs[name].follows is not None)

    def _weather_learn(self, ps: _ProcState, t_ms: int, ex: float, wx: np.ndarray) -> None:
        """Add a calm, clean interval's residual (without the weather term) to the 15-min means the term is refitted on."""
        b = t_ms // self.BUCKET_MS
        acc = ps.wacc
        if acc is not None and acc[0] != b:
            self._weather_flush(ps)
            acc = None
        if acc is None:
            acc = ps.wacc = [float(b), 0.0, 0.0] + [0.0] * wx.size
        acc[1] += 1.0
        acc[2] += ex
        for i, v in enumerate(wx.tolist()):
            acc[3 + i] += v

    def _weather_flush(self, ps: _ProcState) -> None:
        acc, ps.wacc = ps.wacc, None
        if acc is None or acc[1] < 5:  # a bucket with fewer than 5 calm polls says little
            return
        n = acc[1]
        ps.wlog.append((int(acc[0]) * self.BUCKET_MS, acc[2] / n, tuple(v / n for v in acc[3:])))
        keep = int(self.s.weather_window_days * 86_400_000 / self.BUCKET_MS)
        if len(ps.wlog) > keep:
            del ps.wlog[: len(ps.wlog) - keep]

    def _weather_refit(self, name: str, model: _ProcModel, ps: _ProcState, t_ms: int) -> None:
        """Fit the weather term again on every calm interval so far (the learning day's included)."""
        ps.next_refit_ms = t_ms + int(self.s.weather_refit_hours * 3_600_000)
        if len(ps.wlog) < 2 or ps.wlog[-1][0] - ps.wlog[0][0] < 36 * 3_600_000:
            return  # not yet more than a day and a half of weather
        ex = np.array([r[1] for r in ps.wlog])
        X = np.array([r[2] for r in ps.wlog], dtype=float)
        wt = fit_weather(ex, X, self.weather.kinds, self.s.weather_min_r2, self.s.weather_margin_c, self.weather.quantities, grid=REFIT_GRID)
        if wt is not None:
            model.weather = wt
            ps.refits += 1

    def learn(self, poll_s: float) -> None:
        """End of the learning period: fit every process's model from what was collected."""
        self.learning = False
        self.poll_s = poll_s
        poll = self.poll_s
        # Lines first: utilities take the plant's production state from the lines' cadences.
        for name, p in sorted(self.procs.items(), key=lambda kv: kv[1].follows is not None):
            model = self._fit_process(name, p, poll)
            if model is not None:
                self.models[name] = model
        for ps in self.pstate.values():  # only now: utilities read their source's learning data
            ps.t.clear(), ps.P.clear(), ps.dprod.clear(), ps.run.clear(), ps.dt.clear(), ps.wx.clear()

    def _fit_process(self, name: str, p: Proc, poll: float) -> _ProcModel | None:
        ps = self.pstate[name]
        if len(ps.P) < 30:
            return None
        t = np.array(ps.t)
        P = np.array(ps.P)
        run = (np.array(ps.run) > 0.5).astype(int)
        uses_running = bool(p.counters) and run.min() != run.max()
        if p.follows is None:
            window_s = _cadence(np.array(ps.t), np.array(ps.dprod), poll)
            producing, rate = _producing(np.array(ps.t), np.array(ps.dprod), t, window_s)
        else:
            # Production state as the scorer will see it: any line producing within its cadence.
            window_s = 3.0 * poll
            producing = np.zeros(t.size, dtype=int)
            for other, m in self.models.items():
                if self.procs[other].follows is None:
                    o = self.pstate[other]
                    producing |= _producing(np.array(o.t), np.array(o.dprod), t, m.window_s)[0]
            rate = producing.astype(float)
        if not uses_running:
            run = np.zeros_like(run)
        groups = _fit_groups(P, producing, run, rate, min_n=max(10, int(0.01 * P.size)))
        model = _ProcModel(window_s, groups, float(np.mean(P)), {}, uses_running)
        used = [model.group(int(a), int(b)) for a, b in zip(producing, run, strict=True)]
        exp = np.array([model.expected(g, float(r)) if g is not None else np.nan for g, r in zip(used, rate, strict=True)])
        ex = P - exp
        idle = (producing == 0) & (run == 1)
        model.idle_max_s = _longest_run_s(t, idle)
        stopped = (producing == 0) & (run == 0)
        model.standby_kw = float(np.median(P[stopped])) if stopped.any() else float(np.min(P))
        model.thresholds = self._thresholds(model, ex, used, poll)
        if self.weather.device and ps.wx:
            X = np.array(ps.wx, dtype=float).reshape(len(ps.wx), len(self.weather.quantities))
            # Judged and fitted on 15-min means, as the refits are: per-poll power is too noisy a view of a
            # load that follows the weather over hours (see interval_means).
            ex_m, X_m = interval_means(t, ex, X, self.BUCKET_MS)
            wt = fit_weather(ex_m, X_m, self.weather.kinds, self.s.weather_min_r2, self.s.weather_margin_c, self.weather.quantities,
                             min_n=MIN_WEATHER_INTERVALS)
            if wt is not None:
                has = np.all(np.isfinite(X), axis=1)
                ex_w = np.full(ex.shape, np.nan)
                ex_w[has] = ex[has] - wt.predict(X[has])
                thr_w = self._thresholds(model, ex_w, used, poll)
                # Kept only when it narrows what the alert windows saw while learning: a term that merely
                # follows the daily rhythm of production (which outdoor temperature shares) does not.
                common = [k for k in thr_w if k in model.thresholds]
                narrower = bool(common) and float(np.median([thr_w[k] / model.thresholds[k] for k in common])) <= 0.9
                if narrower or (p.follows is not None and self._narrows_long_windows(model, ex, ex_w, used, poll)):
                    model.weather, model.thresholds_w = wt, thr_w
            if self._weather_online(name, model):
                # The learning day's intervals start the log the term is fitted on again later.
                has = np.all(np.isfinite(X), axis=1) & np.isfinite(ex)
                for i in np.flatnonzero(has):
                    self._weather_learn(ps, int(t[i]), float(ex[i]), X[i])
                self._weather_flush(ps)
                ps.next_refit_ms = int(t[-1]) + int(self.s.weather_refit_hours * 3_600_000)
        return model if model.thresholds else None

    def _narrows_long_windows(self, model: _ProcModel, ex: np.ndarray, ex_w: np.ndarray, used: list[tuple[int, int] | None], poll: float) -> bool:
        """Does the weather term cut the largest learning-period excess of the longest alert windows by 10 % or more?

        Per production state, the longest window its data allows; summed over the states. Weather acts
        over hours: where poll-to-poll noise (poll jitter, meter resolution) sets the shorter windows'
        thresholds, their ratio says nothing about the term, the longest window's excess does. Asked
        only for loads without a production counter of their own (dry rooms, ageing rooms, utilities):
        a production line's model already follows the daily rhythm a weather term could mimic.
        """
        before = after = 0.0
        for g in model.groups:
            sel = np.array([u == g for u in used])
            a, b = ex[sel], ex_w[sel]
            ok = np.isfinite(a) & np.isfinite(b)
            a, b = a[ok], b[ok]
            ws = [w for w in (max(1, int(round(m * 60.0 / poll))) for m in self.s.windows_min) if 4 * w <= a.size]
            if ws:
                before += max(float(np.max(_window_excess(a, max(ws)))), 0.0)
                after += max(float(np.max(_window_excess(b, max(ws)))), 0.0)
        return before > 0 and after <= 0.9 * before

    def _thresholds(self, model: _ProcModel, ex: np.ndarray, used: list[tuple[int, int] | None], poll: float) -> dict[tuple[tuple[int, int], int], float]:
        """Alert threshold per (production state, window) from the learning-period excess ``ex``."""
        out: dict[tuple[tuple[int, int], int], float] = {}
        floor = max(self.s.min_excess_fraction * model.mean_kw, 0.5)
        for g in model.groups:
            sub = ex[np.array([u == g for u in used])]
            sub = sub[np.isfinite(sub)]
            if sub.size < 2:
                continue
            sd = float(sub.std())
            for wmin in self.s.windows_min:
                w = max(1, int(round(wmin * 60.0 / poll)))
                if 4 * w > sub.size:
                    continue  # too little of this state to know how this window behaves in it
                # Largest excess this window showed while learning, and at least 3 standard errors
                # of the state's spread so that a briefly seen state is not over-trusted.
                thr = max(float(_window_excess(sub, w).max()), 3.0 * sd / np.sqrt(w))
                out[(g, w)] = max(self.s.margin * thr, floor)
        return out


def _window_excess(x: np.ndarray, w: int | None = None) -> np.ndarray | float:
    """Mean excess of a window with its largest interval left out (windows of 3 or more intervals).

    One interval alone never makes an alert: a batch that ends mid-pulse puts a whole pulse into
    one poll interval, which a plain mean would carry for the window's length. A sustained excess
    is barely changed by leaving one interval out. With ``w``, the statistic of every window of
    length ``w`` along ``x``; without, of ``x`` as one window.
    """
    if w is None:
        n = x.size
        return float((x.sum() - x.max()) / (n - 1)) if n >= 3 else float(x.mean())
    if w < 3:
        return np.convolve(x, np.ones(w) / w, mode="valid")
    win = np.lib.stride_tricks.sliding_window_view(x, w)
    return (win.sum(axis=1) - win.max(axis=1)) / (w - 1)


def _producing(src_t: np.ndarray, src_d: np.ndarray, t: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Causal production state at times ``t``: (produced within the window 0/1, rate per hour)."""
    csum = np.concatenate([[0.0], np.cumsum(src_d)])
    lo = np.searchsorted(src_t, t - window_s * 1000, side="right")
    hi = np.searchsorted(src_t, t, side="right")
    total = csum[hi] - csum[lo]
    return (total > 0).astype(int), total * 3600.0 / window_s


def _longest_run_s(t: np.ndarray, mask: np.ndarray) -> float:
    """Longest stretch (seconds) over which ``mask`` holds, in a time series sampled at ``t`` (ms)."""
    best = 0.0
    start: int | None = None
    for i, m in enumerate(mask.tolist()):
        if m and start is None:
            start = i
        if start is not None and (not m or i == mask.size - 1):
            end = i if m else i - 1
            best = max(best, (t[end] - t[start]) / 1000.0)
            start = None
    return best


def _cadence(t: np.ndarray, dprod: np.ndarray, poll: float) -> float:
    """How long a producing process may go between production increments (seconds)."""
    idx = np.flatnonzero(dprod > 0)
    if idx.size < 3:
        return 3.0 * poll
    gaps = np.diff(t[idx]) / 1000.0
    # Gaps within production runs, not the stops between shifts: the shorter 90 %.
    g = np.sort(gaps)[: max(1, int(0.9 * gaps.size))]
    return float(max(3.0 * poll, 1.5 * g.max()))



# --------------------------------------------------------------------------- state

_STATES = ((0, 0), (0, 1), (1, 0), (1, 1))


def _group_key(v: Any, where: str) -> tuple[int, int]:
    g = S.seq(v, where, 2)
    key = (S.integer(g[0], f"{where}[0]"), S.integer(g[1], f"{where}[1]"))
    if key not in _STATES:
        raise S.StateInvalid(f"{where}: a production state is [producing 0/1, running 0/1], not {list(key)}")
    return key


def _thresholds_to_state(th: dict[tuple[tuple[int, int], int], float]) -> list[list[Any]]:
    return [[[int(x) for x in g], int(w), S.enc(v)] for (g, w), v in th.items()]


def _thresholds_from_state(v: Any, where: str, groups: dict[tuple[int, int], _Group]) -> dict[tuple[tuple[int, int], int], float]:
    out: dict[tuple[tuple[int, int], int], float] = {}
    for i, x in enumerate(S.seq(v, where)):
        x = S.seq(x, f"{where}[{i}]", 3)
        g = _group_key(x[0], f"{where}[{i}][0]")
        if g not in groups:
            raise S.StateInvalid(f"{where}[{i}][0]: production state {list(g)} has no learned model")
        out[(g, S.integer(x[1], f"{where}[{i}][1]", lo=1))] = S.num(x[2], f"{where}[{i}][2]", finite=True, lo=0.0)
    return out


def _model_to_state(m: _ProcModel) -> dict[str, Any]:
    from carbonedge.analytics.monitor.weather import term_to_state

    return {"window_s": S.enc(m.window_s), "groups": [[[int(x) for x in k], S.enc(g.intercept), S.enc(g.slope), int(g.n)] for k, g in m.groups.items()],
            "mean_kw": S.enc(m.mean_kw), "thresholds": _thresholds_to_state(m.thresholds), "uses_running": bool(m.uses_running),
            "idle_max_s": S.enc(m.idle_max_s), "standby_kw": S.enc(m.standby_kw),
            "weather": None if m.weather is None else term_to_state(m.weather), "thresholds_w": _thresholds_to_state(m.thresholds_w)}


def _model_from_state(v: Any, where: str, n_weather: int) -> _ProcModel:
    from carbonedge.analytics.monitor.weather import term_from_state

    d = S.obj(v, where, ("window_s", "groups", "mean_kw", "thresholds", "uses_running", "idle_max_s", "standby_kw", "weather", "thresholds_w"))
    groups: dict[tuple[int, int], _Group] = {}
    for i, g in enumerate(S.seq(d["groups"], f"{where}.groups")):
        g = S.seq(g, f"{where}.groups[{i}]", 4)
        groups[_group_key(g[0], f"{where}.groups[{i}][0]")] = _Group(S.num(g[1], f"{where}.groups[{i}][1]", finite=True),
                                                                    S.num(g[2], f"{where}.groups[{i}][2]", finite=True),
                                                                    S.integer(g[3], f"{where}.groups[{i}][3]", lo=0))
    if not groups:
        raise S.StateInvalid(f"{where}.groups: a learned model has at least one production state")
    weather = None if d["weather"] is None else term_from_state(d["weather"], f"{where}.weather", n_weather)
    return _ProcModel(S.num(d["window_s"], f"{where}.window_s", finite=True, lo=0.0), groups, S.num(d["mean_kw"], f"{where}.mean_kw", finite=True),
                      _thresholds_from_state(d["thresholds"], f"{where}.thresholds", groups), S.boolean(d["uses_running"], f"{where}.uses_running"),
                      S.num(d["idle_max_s"], f"{where}.idle_max_s", finite=True, lo=0.0), S.num(d["standby_kw"], f"{where}.standby_kw", finite=True),
                      weather, _thresholds_from_state(d["thresholds_w"], f"{where}.thresholds_w", groups))


def _pairs(v: Any, where: str) -> list[tuple[int, float]]:
    out = []
    for i, x in enumerate(S.seq(v, where)):
        x = S.seq(x, f"{where}[{i}]", 2)
        out.append((S.integer(x[0], f"{where}[{i}][0]"), S.num(x[1], f"{where}[{i}][1]")))
    return out


def _pstate_to_state(ps: _ProcState) -> dict[str, Any]:
    return {"learn": {"t": ps.t, "P": [S.enc(x) for x in ps.P], "dprod": [S.enc(x) for x in ps.dprod], "run": [S.enc(x) for x in ps.run],
                      "dt": [S.enc(x) for x in ps.dt], "wx": [[S.enc(x) for x in row] for row in ps.wx]},
            "last_prod_ms": ps.last_prod_ms, "prod_hist": [[t, S.enc(x)] for t, x in ps.prod_hist],
            "excess": [[[int(x) for x in g], int(w), bool(used), b.maxlen, [[t, S.enc(x)] for t, x in b]] for (g, w, used), b in ps.excess.items()],
            "wasted_kwh": S.enc(ps.wasted_kwh), "idle_since": ps.idle_since, "quiet_since": ps.quiet_since, "calm_since": ps.calm_since,
            "over": ps.over, "last_expected": S.enc(ps.last_expected), "last_P": S.enc(ps.last_P),
            "weather_log": [[t, S.enc(x), [S.enc(v) for v in w]] for t, x, w in ps.wlog],
            "weather_bucket": None if ps.wacc is None else [S.enc(v) for v in ps.wacc], "next_refit_ms": ps.next_refit_ms, "refits": ps.refits}


def _pstate_from_state(v: Any, where: str, n_weather: int) -> _ProcState:
    d = S.obj(v, where, ("learn", "last_prod_ms", "prod_hist", "excess", "wasted_kwh", "idle_since", "quiet_since", "calm_since", "over",
                         "last_expected", "last_P", "weather_log", "weather_bucket", "next_refit_ms", "refits"))
    lw = f"{where}.learn"
    lrn = S.obj(d["learn"], lw, ("t", "P", "dprod", "run", "dt", "wx"))
    t = S.ints(lrn["t"], f"{lw}.t")
    cols = {k: S.nums(lrn[k], f"{lw}.{k}") for k in ("P", "dprod", "run", "dt")}
    wx = [tuple(S.nums(r, f"{lw}.wx[{i}]")) for i, r in enumerate(S.seq(lrn["wx"], f"{lw}.wx"))]
    if any(len(c) != len(t) for c in cols.values()) or len(wx) != len(t) or any(len(r) != n_weather for r in wx):
        raise S.StateInvalid(f"{lw}: the learning columns differ in length")
    excess: dict[tuple[Any, ...], deque[tuple[int, float]]] = {}
    for i, x in enumerate(S.seq(d["excess"], f"{where}.excess")):
        x = S.seq(x, f"{where}.excess[{i}]", 5)
        w = S.integer(x[1], f"{where}.excess[{i}][1]", lo=1)
        maxlen = S.integer(x[3], f"{where}.excess[{i}][3]", lo=1)
        excess[(_group_key(x[0], f"{where}.excess[{i}][0]"), w, S.boolean(x[2], f"{where}.excess[{i}][2]"))] = deque(_pairs(x[4], f"{where}.excess[{i}][4]"), maxlen=maxlen)
    wlog = []
    for i, r in enumerate(S.seq(d["weather_log"], f"{where}.weather_log")):
        r = S.seq(r, f"{where}.weather_log[{i}]", 3)
        w = S.nums(r[2], f"{where}.weather_log[{i}][2]", finite=True)
        if len(w) != n_weather:
            raise S.StateInvalid(f"{where}.weather_log[{i}][2]: one value per weather input ({n_weather}) is needed")
        wlog.append((S.integer(r[0], f"{where}.weather_log[{i}][0]"), S.num(r[1], f"{where}.weather_log[{i}][1]", finite=True), tuple(w)))
    wacc = None if d["weather_bucket"] is None else S.nums(d["weather_bucket"], f"{where}.weather_bucket", finite=True)
    if wacc is not None and len(wacc) != 3 + n_weather:
        raise S.StateInvalid(f"{where}.weather_bucket: {3 + n_weather} values are needed")
    return _ProcState(t, cols["P"], cols["dprod"], cols["run"], cols["dt"], wx,  # type: ignore[arg-type]
                      S.opt_int(d["last_prod_ms"], f"{where}.last_prod_ms"), deque(_pairs(d["prod_hist"], f"{where}.prod_hist")), excess,
                      S.num(d["wasted_kwh"], f"{where}.wasted_kwh", finite=True), S.opt_int(d["idle_since"], f"{where}.idle_since"),
                      S.opt_int(d["quiet_since"], f"{where}.quiet_since"), S.opt_int(d["calm_since"], f"{where}.calm_since"),
                      S.integer(d["over"], f"{where}.over", lo=0), S.num(d["last_expected"], f"{where}.last_expected"),
                      S.num(d["last_P"], f"{where}.last_P"), wlog, wacc, S.opt_int(d["next_refit_ms"], f"{where}.next_refit_ms"),
                      S.integer(d["refits"], f"{where}.refits", lo=0))


def energy_to_state(chk: EnergyCheck) -> dict[str, Any]:
    return {"learning": chk.learning, "poll_s": S.enc(chk.poll_s),
            "models": {n: _model_to_state(m) for n, m in chk.models.items()},
            "processes": {n: _pstate_to_state(ps) for n, ps in chk.pstate.items()}}


def energy_load_state(chk: EnergyCheck, doc: Any, where: str = "energy") -> None:
    d = S.obj(doc, where, ("learning", "poll_s", "models", "processes"))
    nw = len(chk.weather.quantities)
    models = {}
    for n, m in S.obj(d["models"], f"{where}.models").items():
        if n not in chk.procs:
            raise S.StateInvalid(f"{where}.models.{n}: no such process in the plant model")
        models[n] = _model_from_state(m, f"{where}.models.{n}", nw)
    procs = S.obj(d["processes"], f"{where}.processes")
    if set(procs) != set(chk.procs):
        raise S.StateInvalid(f"{where}.processes: the processes differ from the plant model's")
    chk.pstate = {n: _pstate_from_state(procs[n], f"{where}.processes.{n}", nw) for n in chk.procs}
    chk.models = models
    chk.learning = S.boolean(d["learning"], f"{where}.learning")
    chk.poll_s = S.opt_num(d["poll_s"], f"{where}.poll_s", finite=True, lo=1e-3)
