"""Live plant monitoring: production-aware energy anomalies and meter-data faults, causally, per poll cycle.

:class:`PlantMonitor` is fed one poll cycle at a time (``step(t_ms, {device: {quantity: value}})``)
in time order and returns alert transitions (:class:`analytics.alerts.AlertEvent`). It never
looks ahead. Two families of checks run on every cycle:

**Meter data** (per device): counters go through the kernel's counter arithmetic
(:mod:`carbonedge.energy`, the same code as the gateway and every report): a counter that went
backwards is a *rollover* when the wrapped increment at a meter profile's register range is
plausible for the elapsed time, otherwise a *reset* (or a reading out of order); an energy or volume counter that stops while its own power
or flow reading says the load is running, with that reading frozen bit for bit, is a *stuck
meter*; a device that stopped answering while the rest of its gateway answers is *comm loss*;
poll timestamps that go backwards, or jump forward while the counters only advanced by one poll
interval's worth, are a *clock jump*. Intervals touched by any of these are kept out of the
energy checks, so a bad meter never raises a false energy alert.

**Energy** (per process): the process's mean power over each poll interval (from its energy
counters, so it is exact and reset-safe) is compared with what the process drew in the same
*production state* during the learning period: producing or not (production counters advanced
within the process's normal production cadence), running or not (PLC running flag), and the
production rate. Not producing means standby is expected: a furnace drawing power while it
makes nothing is the signal, a furnace drawing power while melting is not. Utilities without
their own production counter take the plant output's production state. Excess power is averaged
over several windows (5 min … 4 h); each window's alert threshold is ``margin ×`` the largest
excess that window ever showed while learning, so the thresholds carry the process's own
variability and autocorrelation, and short sharp faults and slow drifts are both caught.

**Outdoor conditions**: when the plant model names a weather station, a process whose learning-period
residual follows the outdoor temperature and moisture load (dry rooms, HVAC, cooling) gets a weather
term in its expected power (:func:`_fit_weather`: the change-point regression of
:func:`analytics.baseline.fit_baseline`), held within the learned range plus a margin, and
thresholds learned after it; without a recent weather reading it falls back to the model without.

The first ``learn_hours`` of data are the learning period and must be normal operation.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carbonedge.analytics.alerts import AlertBook, AlertEvent
from carbonedge.analytics.baseline import Baseline, BaselineError, fit_baseline
from carbonedge import energy, quantities
from carbonedge.plant import PlantModel

#: Counter quantities that carry energy or media (checked for resets, rollovers, stuck).
ENERGY_Q = "active_energy_import"
POWER_Q = "active_power"
PRODUCTION_QS = ("production_mass", "production_count", "production_capacity")
#: Flow-meter totalizer → its flow gauge.
FLOW_OF = {"gas_volume": "gas_flow", "oxygen_volume": "oxygen_flow", "steam_mass": "steam_flow", "water_volume": "water_flow", "air_volume": "air_flow"}


@dataclass(frozen=True)
class MonitorSettings:
    """Tuning of :class:`PlantMonitor` (defaults are meant to work untuned).

    ``learn_hours``: normal operation to learn from. ``windows_min``: averaging windows of the
    excess-power check. ``margin``: threshold as a multiple of the largest learning-period excess.
    ``stuck_polls``: polls a counter must stand still, with its power/flow frozen, to call it stuck.
    ``comm_loss_polls``: missed polls before a silent device is reported.
    ``comm_loss_group_min``: this many devices falling silent in the same poll are one alert (the
    gateway, its network or a shared bus, not that many meter faults).
    """

    learn_hours: float = 24.0
    windows_min: tuple[float, ...] = (5.0, 15.0, 60.0, 240.0)
    margin: float = 1.5
    stuck_polls: int = 3
    comm_loss_polls: float = 2.5
    comm_loss_group_min: int = 3
    min_excess_fraction: float = 0.05  # never alert on less than 5 % of the process's mean power (meter class 0.5–1 plus load noise)
    idle_min_minutes: float = 60.0  # running without producing is normal for at least this long
    confirm_polls: int = 3  # consecutive polls over threshold before an alert opens (shift-start transients)
    resolve_minutes: float = 30.0  # an energy alert resolves after this long back in the normal range (no flapping between heats)
    stop_settle_minutes: float = 30.0  # a line that just stopped still runs down (auxiliaries, heaters, short stops): judge standby after this
    #: Forward clock jumps shorter than this are not reported. 0 on real plants; an accelerated
    #: simulation (demo at 1440x) sets it, because a simulator that falls a few wall milliseconds behind
    #: its clock under load serves values up to a minute or two of plant time old, which looks exactly
    #: like a gateway clock jumping forward.
    clock_jump_min_s: float = 0.0
    #: Outdoor conditions (the plant's weather station) enter a process's expected power only when they
    #: explain at least this share of its learning-period residual variance (R²).
    weather_min_r2: float = 0.3
    #: Learning covers one day's weather: the weather term is held at its value this far (°C, or half the
    #: learned range if wider) beyond the temperatures and dew points seen while learning.
    weather_margin_c: float = 3.0
    #: A weather reading older than this no longer counts (the station stopped answering): fall back to
    #: the production-state model without weather.
    weather_max_age_s: float = 600.0


# --------------------------------------------------------------------------- plant model


@dataclass
class _Proc:
    name: str
    area: str
    meters: list[str]
    counters: list[str]
    production_q: str = "production_mass"
    flow_meters: list[str] = field(default_factory=list)
    follows: str | None = None  # "plant" for utilities without their own production counter


def _procs(plant: PlantModel) -> dict[str, _Proc]:
    out: dict[str, _Proc] = {}
    for name, spec in plant.processes.items():
        flows = [f.device for f in spec.flow_meters]
        p = _Proc(name, spec.area, list(spec.meters), list(spec.counters), plant.production_quantity_of(name), flows)
        if not p.counters:
            p.follows = "plant"  # utilities: the plant's production state (any line producing)
        out[name] = p
    return out


# --------------------------------------------------------------------------- meter data checks


@dataclass
class _CounterState:
    k: energy.CounterState | None = None  # the kernel's counter state
    still: int = 0  # consecutive polls without increase while its load reading says running
    stuck_alert: bool = False


@dataclass
class _DeviceState:
    last_seen_ms: int | None = None
    last_values: dict[str, float] = field(default_factory=dict)
    counters: dict[str, _CounterState] = field(default_factory=dict)
    silent: bool = False
    catch_up: bool = False  # next interval spans a stuck or silent stretch
    group: Any = None  # key of the alert for the devices that fell silent together with this one


# --------------------------------------------------------------------------- energy model


@dataclass
class _Group:
    intercept: float
    slope: float
    n: int


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
class _WeatherTerm:
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


def _fit_weather(ex: np.ndarray, X: np.ndarray, kinds: tuple[str, ...], min_r2: float, margin: float,
                 names: tuple[str, ...] | None = None) -> _WeatherTerm | None:
    """A weather term for the residual ``ex`` (kW) on inputs ``X`` (rows: cycles), or None when weather explains little.

    ``kinds`` says what each column is (``temperature`` or ``dew_point``). Inputs tried: each
    temperature (linear or change-point, as :func:`analytics.baseline.fit_baseline` chooses by BIC:
    cooling or heating from a balance point, as ISO 50006 baselines use), each moisture load
    (absolute humidity from the dew point), and each temperature with each moisture load. The set
    with the lowest BIC is kept if its R² reaches ``min_r2``.
    """
    ok = np.isfinite(ex) & np.all(np.isfinite(X), axis=1)
    n = int(ok.sum())
    if n < 60 or n < 0.5 * ex.size:
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
    best: tuple[float, _WeatherTerm] | None = None
    for inputs in candidates:
        feats = [names[i] if form == "temperature" else f"abs_humidity({names[i]})" for i, form in inputs]
        proto = _WeatherTerm(inputs, None, lo.tolist(), hi.tolist(), 0.0)  # type: ignore[arg-type]
        F = proto.features(Z)
        try:
            # One day of weather: straight lines or one-sided (3P) change points only, five balance points
            # between the 10th and 90th percentiles; two-sided forms fitted on a day's swing do not extrapolate.
            b = fit_baseline(F, y, feats, change_point=[f for f, (_, form) in zip(feats, inputs, strict=True) if form == "temperature"],
                             grid=5, one_sided=True)
        except BaselineError:
            continue
        sse = float(((y - b.predict(F)) ** 2).sum())
        bic = n * math.log(max(sse, 1e-300) / n) + b.fit.p * math.log(n)
        if best is None or bic < best[0]:
            proto.baseline, proto.r2 = b, float(b.fit.r2)
            best = (bic, proto)
    if best is None or not best[1].r2 >= min_r2:
        return None
    return best[1]


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
    weather: _WeatherTerm | None = None
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


class PlantMonitor:
    """Feed poll cycles in time order; get alert transitions back. See the module docstring."""

    def __init__(self, plant: PlantModel | dict[str, Any], settings: MonitorSettings | None = None, *, site: str | None = None) -> None:
        self.plant = plant = PlantModel.coerce(plant)
        self.site = site or plant.site
        self.s = settings or MonitorSettings()
        self.procs = _procs(plant)
        self.proc_of_device: dict[str, str] = {}
        for p in self.procs.values():
            for d in p.meters + p.counters + p.flow_meters:
                self.proc_of_device[d] = p.name
        # The weather station, when the plant has one: its outdoor temperature and dew point are the
        # relevant variables of loads that follow the weather (dry rooms, HVAC, cooling towers).
        w = plant.weather.model_dump() if plant.weather else {}
        self.weather_device: str | None = str(w["device"]) if w.get("device") else None
        inputs = [(k, str(w[k])) for k in ("temperature", "dew_point") if w.get(k)]
        self.weather_kinds: tuple[str, ...] = tuple(k for k, _ in inputs)
        self.weather_qs: tuple[str, ...] = tuple(q for _, q in inputs)
        if self.weather_device and not self.weather_qs:
            self.weather_device = None
        if self.weather_device:
            self.proc_of_device.setdefault(self.weather_device, "plant")
        self._wx: np.ndarray | None = None  # latest valid outdoor conditions
        self._wx_ms: int | None = None
        self.alerts = AlertBook(self.site)
        self.devices: dict[str, _DeviceState] = {}
        self.pstate: dict[str, _ProcState] = {n: _ProcState() for n in self.procs}
        self.models: dict[str, _ProcModel] = {}
        self.t0: int | None = None
        self.last_cycle_ms: int | None = None
        self.poll_s: float | None = None
        self._dts: list[float] = []
        self.learning = True
        self.clock_events = 0
        self._silent_groups: dict[Any, set[str]] = {}
        #: Everything each counter counted since the monitor started, per (device, quantity): the
        #: kernel's increments, rollovers and resets included (see :meth:`process_totals`).
        self.counted: dict[tuple[str, str], float] = {}
        self._steps: dict[str, dict[str, energy.Step]] = {}
        self._specs: dict[str, energy.CounterSpec] = {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # State files written before silent devices were grouped.
        self.__dict__.update(state)
        self.__dict__.setdefault("_silent_groups", {})
        # ... and before the weather station was used.
        for k, v in (("weather_device", None), ("weather_qs", ()), ("weather_kinds", ()), ("_wx", None), ("_wx_ms", None)):
            self.__dict__.setdefault(k, v)
        # ... and before counters went through the kernel (their state starts afresh at the next reading).
        for k, v in (("counted", {}), ("_steps", {}), ("_specs", {})):
            self.__dict__.setdefault(k, v)
        # ... and before the weather term was a baseline regression: such a term cannot be evaluated
        # any more; its process is judged by the production-state model, as without a weather reading.
        for m in self.__dict__.get("models", {}).values():
            if m.weather is not None and not hasattr(m.weather, "baseline"):
                m.weather = None

    def process_totals(self) -> dict[str, tuple[float, float | None]]:
        """Per process: ``(energy kWh, production)`` counted since the monitor started (the kernel's
        increments of its meters and production counters; production ``None`` for utilities)."""
        out: dict[str, tuple[float, float | None]] = {}
        for name, p in self.procs.items():
            e = sum(self.counted.get((m, ENERGY_Q), 0.0) for m in p.meters)
            prod = sum(self.counted.get((c, p.production_q), 0.0) for c in p.counters) if p.counters else None
            out[name] = (e, prod)
        return out

    # ------------------------------------------------------------------ public

    def step(self, t_ms: int, readings: dict[str, dict[str, float]], *, missing_cycles: int = 0) -> list[AlertEvent]:
        """Process one poll cycle: ``readings[device][quantity] = value`` (canonical units).

        ``missing_cycles``: how many of the gateway's cycles (by sequence number) are missing
        before this one, when the feeder knows. Cycles missing over less time than they would
        take were overwritten in the database by later cycles stamped with the same times: the
        gateway clock stepped back.
        """
        events: list[AlertEvent] = []
        if self.t0 is None:
            self.t0 = t_ms
        self._count(t_ms, readings)
        clock_bad = self._check_clock(t_ms, readings, events, missing_cycles)
        bad_devices = self._check_devices(t_ms, readings, events, clock_bad)
        self._read_weather(t_ms, readings)
        self._energy(t_ms, readings, bad_devices | ({"*"} if clock_bad else set()), events)
        for d, vals in readings.items():
            st = self.devices[d]
            st.last_values = dict(vals)
            st.last_seen_ms = t_ms
        # Follow the gateway's clock even after a jump: one alert per jump, not one per later poll.
        self.last_cycle_ms = t_ms
        if self.learning and t_ms - self.t0 >= self.s.learn_hours * 3_600_000:
            self._fit()
        return events

    # ------------------------------------------------------------------ weather

    def _read_weather(self, t_ms: int, readings: dict[str, dict[str, float]]) -> None:
        """Keep the latest plausible outdoor conditions; a missing or implausible reading leaves the last one to age out."""
        if not self.weather_device:
            return
        vals = readings.get(self.weather_device)
        if not vals:
            return
        x = []
        for q in self.weather_qs:
            v = vals.get(q)
            if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) or not -80.0 <= v <= 70.0:
                return
            x.append(float(v))
        self._wx, self._wx_ms = np.array(x), t_ms

    def weather_now(self, t_ms: int) -> np.ndarray | None:
        """Outdoor conditions at ``t_ms`` (one value per weather input), or None without a recent reading."""
        if self._wx is None or self._wx_ms is None or (t_ms - self._wx_ms) / 1000.0 > self.s.weather_max_age_s:
            return None
        return self._wx

    def _outdoors(self, wx: np.ndarray) -> str:
        """`` at 24 °C outdoors, dew point 13 °C``: the conditions a weather-adjusted baseline is for."""
        named = dict(zip(self.weather_qs, wx.tolist(), strict=True))
        w = self.plant.weather
        t = named.get(str(w.temperature)) if w else None
        dp = named.get(str(w.dew_point)) if w else None
        parts = ([f"{t:.0f} °C outdoors"] if t is not None else []) + ([f"dew point {dp:.0f} °C"] if dp is not None else [])
        return " at " + ", ".join(parts) if parts else ""

    # ------------------------------------------------------------------ clock

    def _check_clock(self, t_ms: int, readings: dict[str, dict[str, float]], events: list[AlertEvent], missing_cycles: int = 0) -> bool:
        prev = self.last_cycle_ms
        if prev is None:
            return False
        dt = (t_ms - prev) / 1000.0
        poll = self.poll_s or (float(np.median(self._dts)) if self._dts else None)
        if self.learning and dt > 0 and not missing_cycles:
            self._dts.append(dt)
        jumped = False
        detail = ""
        if missing_cycles > 0 and poll and dt < (missing_cycles + 0.5) * poll:
            jumped = True
            detail = (f"{missing_cycles} poll cycle(s) before this one are missing from the database although only {dt:,.0f} s passed: "
                      "later readings were stamped with the same times and overwrote them, so the clock stepped back")
        elif dt <= 0:
            jumped = True
            detail = f"poll timestamps went back {-dt:,.0f} s"
        elif poll and dt > 1.5 * poll:
            # A long interval: a real outage (counters advanced for the whole interval) or a clock
            # that jumped (counters advanced only by about one poll interval's worth).
            num = den = 0.0
            for d in readings:
                st = self.devices.get(d)
                k = self._steps.get(d, {}).get(ENERGY_Q)
                if st is None or k is None or ENERGY_Q not in st.last_values:
                    continue
                inc = k.delta
                p = st.last_values.get(POWER_Q)
                if not k.good or k.flag or p is None or p <= 0:
                    continue
                num += inc
                den += p * dt / 3600.0
            # Outage: ratio ≈ 1. Jump: ratio ≈ poll/dt. Decide by which it is nearer to.
            if den > 0 and num / den < 0.5 * (1.0 + poll / dt) and dt - poll >= self.s.clock_jump_min_s:
                jumped = True
                detail = f"poll timestamps jumped {dt - poll:,.0f} s forward while the meters advanced by about one poll interval"
        if jumped:
            self.clock_events += 1
            events += self.alerts.pulse(t_ms, kind="clock_jump", process="plant", device=None, severity="major",
                                        message=f"Gateway clock: {detail}. Readings around {_fmt_ms(t_ms)} carry wrong times; check the gateway's time sync (NTP/PTP).")
        return jumped

    # ------------------------------------------------------------------ devices

    def _open_comm_loss(self, t_ms: int, d: str, events: list[AlertEvent]) -> None:
        since = self.devices[d].last_seen_ms
        events += self.alerts.open(t_ms, kind="comm_loss", process=self.proc_of_device.get(d, "plant"), device=d, severity="major",
                                   message=f"{d} has not answered since {_fmt_ms(since) if since else '?'}; its consumption in the gap is "
                                   "recovered from its counters when it answers again.", key=("comm_loss", d))

    def _check_devices(self, t_ms: int, readings: dict[str, dict[str, float]], events: list[AlertEvent], clock_bad: bool) -> set[str]:
        bad: set[str] = set()
        poll = self.poll_s or (float(np.median(self._dts)) if self._dts else None)
        # Silent devices: known, but absent from cycles where others answer.
        newly: list[str] = []
        for d, st in self.devices.items():
            if d in readings or st.last_seen_ms is None or poll is None:
                continue
            if not st.silent and (t_ms - st.last_seen_ms) / 1000.0 > self.s.comm_loss_polls * poll:
                st.silent = True
                st.catch_up = True
                newly.append(d)
        newly.sort()
        if len(newly) >= max(2, self.s.comm_loss_group_min):
            key = ("comm_loss_group", t_ms)
            self._silent_groups[key] = set(newly)
            for d in newly:
                self.devices[d].group = key
            since = min(self.devices[d].last_seen_ms or t_ms for d in newly)
            events += self.alerts.open(t_ms, kind="comm_loss", process="plant", device=None, severity="major", key=key,
                                       message=f"{len(newly)} devices stopped answering together since {_fmt_ms(since)} ({_names(newly)}): "
                                       "check the gateway, its network and the meters' shared bus first. Their consumption in the gap "
                                       "is recovered from their counters when they answer again.")
        else:
            for d in newly:
                self._open_comm_loss(t_ms, d, events)
        back: set[Any] = set()
        for d in readings:
            st = self.devices.setdefault(d, _DeviceState())
            if st.silent:
                st.silent = False
                if st.group is None:
                    events += self.alerts.resolve(t_ms, ("comm_loss", d), note=f"{d} answers again")
                else:
                    self._silent_groups.get(st.group, set()).discard(d)
                    back.add(st.group)
                    st.group = None
        for key in back:
            left = self._silent_groups.get(key, set())
            if len(left) >= max(2, self.s.comm_loss_group_min):
                continue
            # Most are back: close the group's alert; whoever is still silent gets an alert of its own.
            self._silent_groups.pop(key, None)
            events += self.alerts.resolve(t_ms, key, note="all answer again" if not left else f"answering again except {_names(sorted(left))}")
            for d in sorted(left):
                self.devices[d].group = None
                self._open_comm_loss(t_ms, d, events)
        for d, vals in readings.items():
            st = self.devices[d]
            proc = self.proc_of_device.get(d, "plant")
            if st.catch_up:
                bad.add(d)
                st.catch_up = False
            for q, k in self._steps.get(d, {}).items():
                cs = st.counters.setdefault(q, _CounterState())
                if k.event is not None and k.event.kind == energy.ROLLOVER_EVENT:
                    bad.add(d)
                    det = k.event.detail
                    events += self.alerts.pulse(t_ms, kind="counter_rollover", process=proc, device=d, severity="info",
                                                message=f"{d} {q} rolled over at {det['modulus']:,.6g} (register range); the increment {det['delta']:,.3f} is counted, nothing lost.")
                elif k.event is not None and k.event.kind == energy.RESET_EVENT:
                    bad.add(d)
                    counted = f"{k.delta:,.3f} counted across it" if k.delta else "the increase across it is unknown and counted as zero"
                    events += self.alerts.pulse(t_ms, kind="counter_reset", process=proc, device=d, severity="minor",
                                                message=f"{d} {q} went back from {k.event.detail['raw_before']:,.3f} to {k.event.detail['raw_after']:,.3f}: "
                                                        f"counter reset or meter swap; {counted}. Check the meter log if this was not planned.")
                elif not k.good or k.flag:
                    bad.add(d)  # a reading out of order or an implausible jump: not counted, kept out of the energy checks
                inc = k.delta
                # Stuck: counter still while its own load reading is frozen and says the load runs.
                load_q = POWER_Q if q == ENERGY_Q else FLOW_OF.get(q)
                if load_q and load_q in vals and load_q in st.last_values:
                    frozen = vals[load_q] == st.last_values[load_q] and vals[load_q] > 0
                    if inc == 0 and k.good and frozen:
                        cs.still += 1
                    else:
                        if cs.stuck_alert:
                            cs.stuck_alert = False
                            bad.add(d)  # the catch-up interval holds the whole stuck stretch
                            events += self.alerts.resolve(t_ms, ("stuck_meter", d), note=f"{d} values move again")
                        cs.still = 0
                    if cs.still >= self.s.stuck_polls and not cs.stuck_alert:
                        cs.stuck_alert = True
                        events += self.alerts.open(t_ms, kind="stuck_meter", process=proc, device=d, severity="major",
                                                   message=f"{d}: {q} has not moved for {cs.still} polls while its {load_q} reads a frozen {vals[load_q]:,.1f}; "
                                                           "the meter's values are stuck (frozen registers or a hung meter). Energy for this process is unreliable until it moves.",
                                                   key=("stuck_meter", d))
                    if cs.stuck_alert:
                        bad.add(d)
        return bad

    def _count(self, t_ms: int, readings: dict[str, dict[str, float]]) -> None:
        """Fold this cycle's counter readings into the kernel's counter states (:mod:`carbonedge.energy`)."""
        self._steps = {}
        for d, vals in readings.items():
            st = self.devices.setdefault(d, _DeviceState())
            out: dict[str, energy.Step] = {}
            for q, v in vals.items():
                if q not in quantities.QUANTITIES or quantities.QUANTITIES[q].kind != "counter" or v is None or not math.isfinite(v):
                    continue
                cs = st.counters.setdefault(q, _CounterState())
                if cs.k is None:
                    cs.k = energy.CounterState.start(float(v), t_ms)
                    continue
                spec = self._specs.get(q)
                if spec is None:
                    spec = self._specs[q] = energy.CounterSpec.for_quantity(q)
                k = energy.step(cs.k, float(v), t_ms, spec)
                out[q] = k
                if k.delta:
                    self.counted[(d, q)] = self.counted.get((d, q), 0.0) + k.delta
            if out:
                self._steps[d] = out

    # ------------------------------------------------------------------ energy

    def _proc_interval(self, p: _Proc, readings: dict[str, dict[str, float]], bad: set[str]) -> tuple[float, float, float] | None:
        """(energy increase kWh, production increase, running flag) over the interval, or None when unusable."""
        if "*" in bad or not p.meters:
            return None
        e_inc = 0.0
        for m in p.meters:
            if m in bad or m not in readings or ENERGY_Q not in readings[m]:
                return None
            st = self.devices[m]
            if ENERGY_Q not in st.last_values or st.last_seen_ms is None:
                return None
            k = self._steps.get(m, {}).get(ENERGY_Q)
            if k is None or not k.good or k.flag:
                return None
            inc = k.delta
            if st.last_seen_ms != self.last_cycle_ms:
                return None  # the device missed the previous cycle: this increment spans more than dt
            e_inc += inc
        prod = 0.0
        running = 0.0
        for c in p.counters:
            if c in bad or c not in readings:
                return None
            st = self.devices[c]
            q = p.production_q
            if q in readings[c] and q in st.last_values:
                k = self._steps.get(c, {}).get(q)
                if k is None or not k.good or k.flag:
                    return None
                prod += k.delta
            running = max(running, float(readings[c].get("running", 0.0) or 0.0))
        return e_inc, prod, running

    def _energy(self, t_ms: int, readings: dict[str, dict[str, float]], bad: set[str], events: list[AlertEvent]) -> None:
        prev = self.last_cycle_ms
        if prev is None:
            return
        dt = (t_ms - prev) / 1000.0
        if dt <= 0:
            return
        produced: dict[str, tuple[float, float]] = {}
        for name, p in self.procs.items():
            iv = self._proc_interval(p, readings, bad)
            ps = self.pstate[name]
            if iv is None:
                continue
            e_inc, prod, running = iv
            P = e_inc * 3600.0 / dt
            produced[name] = (prod, running)
            if prod > 0:
                ps.last_prod_ms = t_ms
            ps.prod_hist.append((t_ms, prod))
            if self.learning:
                ps.t.append(t_ms)
                ps.P.append(P)
                ps.dprod.append(prod)
                ps.run.append(running)
                ps.dt.append(dt)
                wx = self.weather_now(t_ms) if self.weather_device else None
                ps.wx.append(tuple(wx.tolist()) if wx is not None else (math.nan,) * len(self.weather_qs))
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
        wx = self.weather_now(t_ms) if getattr(model, "weather", None) is not None else None
        w_kw = model.weather(wx) if wx is not None and model.weather is not None else 0.0
        thresholds = model.thresholds_w if wx is not None else model.thresholds
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
                buf = ps.excess.setdefault((g, w, wx is not None), deque(maxlen=w))
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
            state = "this production state" + (self._outdoors(wx) if wx is not None else "")
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
                events += self.alerts.open(t_ms, kind=kind, process=name, device=None, severity=sev, key=key, score=_score01(worst),
                                           message=f"{what}. About {ps.wasted_kwh:,.0f} kWh above normal so far.", wasted_kwh=ps.wasted_kwh)
            else:
                events += self.alerts.update(t_ms, key, severity=sev, score=_score01(worst), wasted_kwh=ps.wasted_kwh,
                                             message=f"{what}. About {ps.wasted_kwh:,.0f} kWh above normal so far.")
        elif is_open and worst < 0.7 and (t_ms - (ps.calm_since or t_ms)) >= self.s.resolve_minutes * 60_000:
            ps.calm_since = None
            for buf in ps.excess.values():
                buf.clear()  # start afresh: a long window still holding the fault must not reopen it
            events += self.alerts.resolve(t_ms, key, note=f"{name} has been back within its normal range for {self.s.resolve_minutes:g} min; "
                                                          f"{ps.wasted_kwh:,.0f} kWh above normal in total", wasted_kwh=ps.wasted_kwh)

    # ------------------------------------------------------------------ learning

    def _fit(self) -> None:
        self.learning = False
        self.poll_s = float(np.median(self._dts)) if self._dts else 60.0
        poll = self.poll_s
        self._plant_producing: np.ndarray | None = None
        # Lines first: utilities take the plant's production state from the lines' cadences.
        for name, p in sorted(self.procs.items(), key=lambda kv: kv[1].follows is not None):
            model = self._fit_process(name, p, poll)
            if model is not None:
                self.models[name] = model
        for ps in self.pstate.values():  # only now: utilities read their source's learning data
            ps.t.clear(), ps.P.clear(), ps.dprod.clear(), ps.run.clear(), ps.dt.clear(), ps.wx.clear()

    def _fit_process(self, name: str, p: _Proc, poll: float) -> _ProcModel | None:
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
        if self.weather_device and ps.wx:
            X = np.array(ps.wx, dtype=float).reshape(len(ps.wx), len(self.weather_qs))
            wt = _fit_weather(ex, X, self.weather_kinds, self.s.weather_min_r2, self.s.weather_margin_c, self.weather_qs)
            if wt is not None:
                has = np.all(np.isfinite(X), axis=1)
                ex_w = np.full(ex.shape, np.nan)
                ex_w[has] = ex[has] - wt.predict(X[has])
                thr_w = self._thresholds(model, ex_w, used, poll)
                # Kept only when it narrows what the alert windows saw while learning: a term that merely
                # follows the daily rhythm of production (which outdoor temperature shares) does not.
                common = [k for k in thr_w if k in model.thresholds]
                if common and float(np.median([thr_w[k] / model.thresholds[k] for k in common])) <= 0.9:
                    model.weather, model.thresholds_w = wt, thr_w
        return model if model.thresholds else None

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


def _score01(x: float) -> float:
    return float(x / (1.0 + x))


def _fmt_ms(t_ms: int) -> str:
    from carbonedge.clock import iso

    return iso(t_ms / 1000.0)


# --------------------------------------------------------------------------- feeding from files


def read_device_csvs(directory: Any, devices: list[str] | None = None) -> list[tuple[int, dict[str, dict[str, float]]]]:
    """Poll cycles from a directory of ``<device>.csv`` files (``ts`` + one column per quantity).

    Rows of all devices that share a timestamp form one cycle; cycles come in file order of the
    timestamps as the gateway stamped them (a clock that stepped back stays visible). Empty cells
    are missing values and are left out of the cycle.
    """
    import csv
    from pathlib import Path

    from carbonedge.clock import parse_time

    d = Path(directory)
    files = sorted(d.glob("*.csv"))
    if devices is not None:
        files = [f for f in files if f.stem in devices]
    else:
        files = [f for f in files if f.stem != "truth"]  # the simulators' ground truth is not a device
    per_device: dict[str, list[tuple[int, dict[str, float]]]] = {}
    for f in files:
        with f.open(newline="") as fh:
            r = csv.DictReader(fh)
            if not r.fieldnames or "ts" not in r.fieldnames:
                continue
            rows = []
            for rec in r:
                t = int(round(parse_time(rec.pop("ts")) * 1000))
                vals = {}
                for q, v in rec.items():
                    if v not in ("", None):
                        try:
                            vals[q] = float(v)
                        except ValueError:
                            continue
                rows.append((t, vals))
            per_device[f.stem] = rows
    # Align rows into cycles by position, not by timestamp alone: after a clock step backwards the
    # gateway's timestamps repeat earlier ones. The longest device list is the backbone; every other
    # device's rows are matched to the next backbone cycle with the same timestamp (a row the
    # backbone lacks is inserted where it falls).
    if not per_device:
        return []
    names = sorted(per_device, key=lambda k: -len(per_device[k]))
    backbone = [(t, {names[0]: vals}) for t, vals in per_device[names[0]]]
    for dev in names[1:]:
        i = 0
        for t, vals in per_device[dev]:
            k = i
            limit = min(len(backbone), i + 1000)
            while k < limit and backbone[k][0] != t:
                k += 1
            if k < limit:
                backbone[k][1][dev] = vals
                i = k + 1
            else:
                j = i
                while j < len(backbone) and backbone[j][0] < t:
                    j += 1
                backbone.insert(j, (t, {dev: vals}))
                i = j + 1
    return backbone


def _names(devices: list[str], most: int = 6) -> str:
    """``a, b, c and 4 more``: a readable list of device names."""
    shown = ", ".join(devices[:most])
    return shown if len(devices) <= most else f"{shown} and {len(devices) - most} more"
