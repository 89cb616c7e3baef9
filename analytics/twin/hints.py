"""Ranked optimisation hints from calibrated process models and the metered data.

Two families (hint catalogue [HC1]-[HC14], docs/sources.md):

- **Waste found in the data**: a process uses more energy than its calibrated model
  predicts over a sustained stretch (CUSUM of the residuals [M7]). Where the excess
  sits says what it is: in idle hours of a producing process, equipment left running
  off-shift (hint 6); on a compressed-air system, leaks (hint 1 [H1, H3]); on an EAF,
  abnormal energy per heat; on dryers, dry rooms and formation, degradation of
  heaters, dehumidifiers or cycler channels (hints 10, 11 [B3, B15, B20]). A channel fault is far
  below a hall meter's resolution; where formation racks are metered one by one, each rack is
  compared with its peers instead (``analytics.twin.peers``) and the hint names the rack.
- **Opportunities in how energy is bought**: time-of-use shifting of shiftable loads
  (hint 4), demand-peak shaving (hint 3 [S36, D17]), power-factor correction (hint 5).

Every hint states kWh/year, cost/year (from the tariff), t CO2/year (from the grid
factor), the evidence and a confidence; annual figures assume the condition persists.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from carbonedge.analytics.carbon.data import PlantData, bin_counter, bin_gauge, edges_for
from carbonedge.analytics.carbon.factors import Factor
from carbonedge.analytics.carbon.settings import Settings
from carbonedge.analytics.twin.model import Observations, ProcessModel, calibrate, observations
from carbonedge.analytics.twin.peers import PeerResult, RackOutlier, compare_racks
from carbonedge.clock import iso
from carbonedge.plant import PlantModel

HOURS_PER_YEAR = 8760.0

#: Which simulator fault kind each waste hint answers (the labels contract of the simulators).
FAULT_TO_HINT = {
    "compressed_air_leak": "compressed_air_leak",
    "idle_running": "idle_equipment",
    "eaf_abnormal_energy": "eaf_excess_energy",
    "dryer_heater_degradation": "dryer_degradation",
    "dryroom_dehumidifier_degradation": "dryroom_dehumidifier",
    "formation_channel_fault": "formation_channel",
}

#: Process roles from names (a plant model may set ``"role"`` on a process explicitly).
_ROLES = (
    ("compressed_air", ("compressed_air", "compressor", "air_comp")),
    ("eaf", ("eaf", "arc_furnace")),
    ("dryroom", ("dry_room", "dryroom")),
    ("dryer", ("dryer", "drying", "coating")),
    ("formation", ("formation",)),
    ("asu", ("asu", "oxygen", "air_separation")),
)
_WASTE_KIND = {"compressed_air": "compressed_air_leak", "eaf": "eaf_excess_energy", "dryroom": "dryroom_dehumidifier",
               "dryer": "dryer_degradation", "formation": "formation_channel"}
#: Loads that can usually move in time: EAF heats, formation cycles, ASU with liquid storage ([HC4]).
SHIFTABLE = {"eaf", "formation", "asu"}


@dataclass
class Hint:
    """One quantified optimisation hint."""

    kind: str
    title: str
    process: str | None
    action: str
    kwh_per_year: float
    cost_per_year: float
    tco2_per_year: float
    evidence: str
    confidence: str  # high | medium | low
    waste_kwh: float | None = None  # measured in the analysed period (waste hints)
    start: str | None = None
    end: str | None = None
    sources: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    rank: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def role(plant: PlantModel | dict[str, Any], process: str) -> str:
    """The role of a process (compressed_air, eaf, dryroom, dryer, formation, asu or other)."""
    explicit = PlantModel.coerce(plant).processes[process].role
    if explicit:
        return str(explicit)
    n = process.lower()
    for r, keys in _ROLES:
        if any(k in n for k in keys):
            return r
    return "other"


@dataclass
class TwinResult:
    models: dict[str, ProcessModel]
    observations: dict[str, Observations]
    hints: list[Hint]
    baseline: tuple[float, float]
    notes: list[str]


def default_baseline(start: float, end: float) -> tuple[float, float]:
    """The first third of the period, at least 24 h (or all of it when shorter than 48 h)."""
    span = end - start
    if span < 48 * 3600:
        return start, end
    return start, start + max(24 * 3600.0, span / 3.0)


def analyse(data: PlantData, settings: Settings, grid: Factor, *, baseline: tuple[float, float] | None = None,
            z: float = 4.0, min_excess_pct: float = 3.0) -> TwinResult:
    """Calibrate a model per process on ``baseline`` and derive ranked hints over the whole period."""
    base = baseline or default_baseline(data.start, data.end)
    notes = [f"Process models calibrated on {iso(base[0])} to {iso(base[1])}; waste is judged after that."]
    if base[1] >= data.end:
        notes.append("The period is shorter than 48 h, so it all serves as baseline: no waste hints can be judged. "
                     "Give a longer period or an explicit baseline period.")
    models: dict[str, ProcessModel] = {}
    obs: dict[str, Observations] = {}
    hints: list[Hint] = []
    for name, spec in data.plant.processes.items():
        o = observations(data, name)
        if o.energy_kwh.sum() <= 0:
            continue
        obs[name] = o
        try:
            models[name] = calibrate(o, base, spec.production_unit)
        except ValueError as exc:
            notes.append(f"{name}: no model ({exc}).")
    if base[1] < data.end:
        for name, m in models.items():
            # Below 0.1 % of the plant's energy in the evaluated period an excess is not worth a hint.
            h = _waste_hint(data, name, obs[name], m, settings, grid, z, min_excess_pct, obs)
            if h:
                hints.append(h)
        for name in obs:
            if role(data.plant, name) == "formation":
                pr = compare_racks(data, name, base, z=z)
                if pr is not None:
                    notes += pr.notes
                    hints += [_rack_hint(data, name, pr, o, settings, grid, base) for o in pr.outliers]
    hints += _tou_hints(data, obs, settings, grid)
    peak = _peak_hint(data, settings)
    if peak:
        hints.append(peak)
    pf = _pf_hint(data, settings, grid)
    if pf:
        hints.append(pf)
    hints.sort(key=lambda h: (-h.cost_per_year, -h.kwh_per_year))
    for i, h in enumerate(hints, 1):
        h.rank = i
    return TwinResult(models, obs, hints, base, notes)


def _max_segment(x: np.ndarray) -> tuple[int, int, float]:
    """Contiguous segment [i, j) of ``x`` with the largest sum (Kadane)."""
    best, cur, start, bi, bj = -math.inf, 0.0, 0, 0, 0
    for k, v in enumerate(x):
        if cur <= 0:
            cur, start = 0.0, k
        cur += v
        if cur > best:
            best, bi, bj = cur, start, k + 1
    return bi, bj, best


def _waste_hint(data: PlantData, name: str, o: Observations, m: ProcessModel, settings: Settings, grid: Factor,
                z: float, min_excess_pct: float, all_obs: dict[str, Observations], materiality: float = 0.001) -> Hint | None:
    mids = (o.edges[:-1] + o.edges[1:]) / 2
    ev = mids >= m.baseline_end
    if ev.sum() < 3:
        return None
    pred = m.predict(o)
    r = (o.energy_kwh - pred)[ev]
    k = 0.5 * m.residual_sd  # CUSUM allowance: half a typical bin's noise
    i, j, _ = _max_segment(r - k)
    if j - i < 3:
        return None
    # Widen by at most the stretch's own length on each side where that adds excess: a slowly
    # rising leak starts below the allowance, but far-away noise must not be swept in.
    span = j - i
    lo = max(0, i - span)
    i = lo + int(np.argmax([r[x:j].sum() for x in range(lo, i + 1)]))
    hi = min(len(r), j + span)
    j = j + int(np.argmax([r[i:y].sum() for y in range(j, hi + 1)]))
    seg = slice(i, j)
    waste = float(r[seg].sum())
    n = j - i
    noise = m.sum_sd(n)
    expected = float(pred[ev][seg].sum())
    zscore = waste / noise if noise > 0 else math.inf
    pct = 100.0 * waste / expected if expected > 0 else math.inf
    # Without a production driver, slow drifts (weather, for dry rooms and HVAC) are not in the model
    # and a short baseline cannot show them: such a stretch must also exceed 5x the hourly scatter.
    need_pct = min_excess_pct if o.has_production else max(min_excess_pct, 500.0 * m.fit.get("cv_rmse", 0.0))
    if zscore < z or pct < need_pct:
        return None
    # A sustained excess, not one odd bin: a batch interrupted at a shift end draws its energy
    # long before it is counted, and must not pass for waste.
    if float(r[seg].max()) > 0.5 * waste:
        return None
    t0, t1 = float(o.edges[:-1][ev][i]), float(o.edges[1:][ev][j - 1])
    hours = (t1 - t0) / 3600.0
    idle_h = float(o.hours_idle[ev][seg].sum())
    active_h = float(o.hours_active[ev][seg].sum())
    # Where does the excess sit? Split the residual by the idle share of each bin.
    share_idle = o.hours_idle[ev][seg] / np.maximum(o.hours_idle[ev][seg] + o.hours_active[ev][seg], 1e-9)
    idle_waste = float((r[seg] * share_idle).sum())
    rl = role(data.plant, name)
    # Excess in producing hours, per producing hour, against that stretch's noise: a degrading heater
    # shows it; equipment merely left running between shifts does not.
    active_waste = waste - idle_waste
    active_share = active_h / max(active_h + idle_h, 1e-9)
    active_sig = active_waste / max(m.sum_sd(max(1, round(n * active_share))), 1e-9)
    plant_kwh = float(sum(ob.energy_kwh[(ob.edges[:-1] + ob.edges[1:]) / 2 >= m.baseline_end].sum() for ob in all_obs.values()))
    if waste < materiality * plant_kwh:
        return None
    if (o.has_production and m.p_idle_kw is not None and idle_h > 0 and idle_waste >= 0.6 * waste
            and (rl not in _WASTE_KIND or active_sig < z / 2)):
        kind = "idle_equipment"
    else:
        kind = _WASTE_KIND.get(rl, "process_excess_energy")
    kw = waste / hours if hours else 0.0
    price = float(np.mean(settings.tariff.prices(mids[ev][seg])))
    # Still going at the end of the data: it persists at its own rate. An episode that ended is
    # counted at the frequency seen: once per evaluated period.
    ongoing = j >= len(r) - 1
    eval_h = float((o.edges[1:][ev][-1] - o.edges[:-1][ev][0]) / 3600.0)
    kwh_y = (kw if ongoing else waste / max(eval_h, hours)) * HOURS_PER_YEAR
    conf = "high" if zscore >= 2 * z and m.fit.get("cv_rmse", 1) <= 0.30 else ("medium" if zscore >= 1.5 * z else "low")
    c = settings.tariff.currency
    base_txt = f"model {m.equation()} (baseline CV(RMSE) {100 * m.fit['cv_rmse']:.1f} %, R² {m.fit['r2']:.2f})"
    common = dict(process=name, kwh_per_year=kwh_y, cost_per_year=kwh_y * price, tco2_per_year=kwh_y * grid.kg_per_kwh / 1000.0,
                  confidence=conf, waste_kwh=waste, start=iso(t0), end=iso(t1),
                  details={"excess_kw": kw, "z": zscore, "excess_pct": pct, "hours": hours, "idle_hours": idle_h,
                           "active_hours": active_h, "idle_share_of_excess": idle_waste / waste if waste else 0.0,
                           "price_per_kwh": price, "currency": c, "ongoing_at_end": ongoing,
                           "annualisation": "rate while it lasts (still going at the end of the data)" if ongoing
                           else f"one such episode per {eval_h:.0f} h evaluated"})
    span = f"from {iso(t0)[:16]} to {iso(t1)[:16]} UTC ({hours:.0f} h)"
    if kind == "idle_equipment":
        stand = m.p_idle_kw or 0.0
        idle_kw = idle_waste / idle_h + stand if idle_h else stand
        return Hint(kind=kind, title=f"{name}: equipment left running while not producing", action=(
            f"Switch {name} to standby when it stops producing (interlock on the production signal or the shift calendar). "
            f"Measured {idle_kw:,.0f} kW during {idle_h:.0f} idle hours against a calibrated standby of {stand:,.0f} kW."),
            evidence=f"{waste:,.0f} kWh above the {base_txt} {span}; {100 * idle_waste / waste:.0f} % of it in hours with no production.",
            sources=["[HC6]", "[M7]"], **common)
    titles = {
        "compressed_air_leak": (f"{name}: compressed-air baseload has risen — likely leaks",
                                f"Run a leak survey (ultrasonic) and a pressure-decay test off-shift; repair and retune compressor controls. "
                                f"Leaks are often 20–30 % of compressor output, 5–10 % is achievable [H1]; the measured extra load is {kw:,.0f} kW."),
        "eaf_excess_energy": (f"{name}: more electricity per heat than the furnace's own baseline",
                              f"Review heats {span}: scrap mix and charging, burner/oxygen practice, electrode regulation, delays with power on. "
                              f"Excess {kw:,.0f} kW on average (EAF band 350–450 kWh/t [S1, S2])."),
        "dryer_degradation": (f"{name}: dryer uses more energy than its calibrated model — heater or airflow degradation",
                              f"Inspect heater elements, exhaust and recirculation dampers and NMP-recovery heat exchangers; excess {kw:,.0f} kW."),
        "dryroom_dehumidifier": (f"{name}: dry-room dehumidification load is above its model",
                                 f"Check the desiccant rotor and regeneration heater, door discipline and make-up air; confirm the dew-point "
                                 f"setpoint is not colder than the product needs (−40 °C main rooms [B12, B13]). Excess {kw:,.0f} kW."),
        "formation_channel": (f"{name}: formation draws more energy per kWh of cells than calibrated — channel fault",
                              f"Find channels with abnormal charge/discharge efficiency (cycler logs) and repair them; excess {kw:,.0f} kW."),
        "process_excess_energy": (f"{name}: energy above its calibrated baseline",
                                  f"Investigate {name} {span}: excess {kw:,.0f} kW against the same production."),
    }
    title, action = titles[kind]
    srcs = {"compressed_air_leak": ["[HC1]", "[H1]", "[H3]"], "eaf_excess_energy": ["[S1]", "[S2]", "[S36]"],
            "dryer_degradation": ["[B3]", "[B7]"], "dryroom_dehumidifier": ["[HC10]", "[B14]", "[B15]"],
            "formation_channel": ["[HC11]", "[B20]"]}.get(kind, [])
    return Hint(kind=kind, title=title, action=action, evidence=f"{waste:,.0f} kWh ({pct:.1f} %) above the {base_txt} {span}.",
                sources=srcs + ["[M7]"], **common)


def _rack_hint(data: PlantData, name: str, pr: PeerResult, o: RackOutlier, settings: Settings, grid: Factor,
               base: tuple[float, float]) -> Hint:
    """A formation rack whose net energy rose above its peers': channels losing energy recovery or efficiency."""
    # Where the rise shows (first and last cycle window above its peers); the waste is counted over whole cycles around it.
    t0, t1 = o.details["rise_from"], o.details["rise_to"]
    hours = (t1 - t0) / 3600.0
    eval_h = (data.end - max(base[1], data.start)) / 3600.0
    kw = o.waste_kwh / hours if hours else 0.0
    kwh_y = (kw if o.ongoing else o.waste_kwh / max(eval_h, hours)) * HOURS_PER_YEAR
    price = float(np.mean(settings.tariff.prices(np.arange(t0, t1, 900.0) + 450.0)))
    pct = 100.0 * o.waste_kwh / o.expected_kwh if o.expected_kwh > 0 else math.inf
    c = settings.tariff.currency
    span = (f"from {iso(t0)[:16]} to {iso(t1)[:16]} UTC ({hours:.0f} h; counted over {o.details['cycles']} whole cycles of {o.cycle_h:.1f} h, "
            f"{iso(o.start)[:16]} to {iso(o.end)[:16]})")
    conf = "high" if o.z >= 8 and o.peers >= 8 else ("medium" if o.z >= 6 else "low")
    return Hint(
        kind="formation_channel", title=f"{name}: rack {o.device} uses more energy than its peers — channel fault",
        process=name,
        action=(f"Check the channels of rack {o.device} in the cycler logs for abnormal charge/discharge efficiency or discharge "
                f"energy that is burnt instead of recovered (40–60 % of it is recoverable [B20]), and repair them; excess {kw:,.2f} kW. "
                f"First rule out a change of cell count or recipe on that rack, which raises its energy legitimately."),
        kwh_per_year=kwh_y, cost_per_year=kwh_y * price, tco2_per_year=kwh_y * grid.kg_per_kwh / 1000.0,
        evidence=(f"{o.device} drew {o.waste_kwh:,.1f} kWh ({pct:.1f} %) more net energy (import − export) than its own baseline level "
                  f"({o.reference_kwh_per_cycle:,.1f} kWh per cycle) scaled as its {o.peers} working peer racks ran, {span}; "
                  f"the rise is {o.z:.0f}× the racks' usual scatter against their peers ({100 * pr.scatter:.2f} %)."),
        confidence=conf, waste_kwh=o.waste_kwh, start=iso(t0), end=iso(t1),
        sources=["[HC11]", "[B20]"],
        details={"device": o.device, "excess_kw": kw, "z": o.z, "excess_pct": pct, "hours": hours, "cycle_h": o.cycle_h,
                 "reference_kwh_per_cycle": o.reference_kwh_per_cycle, "peers": o.peers, "racks": len(pr.devices), "scatter": pr.scatter,
                 "expected_kwh": o.expected_kwh, "counted_from": iso(o.start), "counted_to": iso(o.end), "price_per_kwh": price, "currency": c, "ongoing_at_end": o.ongoing,
                 "annualisation": "rate while it lasts (still going at the end of the data)" if o.ongoing
                 else f"one such episode per {eval_h:.0f} h evaluated", "method": "peer comparison of rack meters"})


def _tou_hints(data: PlantData, obs: dict[str, Observations], settings: Settings, grid: Factor, shift_share: float = 0.2) -> list[Hint]:
    t = settings.tariff
    if not t.bands:
        return []
    out: list[Hint] = []
    for name, o in obs.items():
        if role(data.plant, name) not in SHIFTABLE:
            continue
        mids = (o.edges[:-1] + o.edges[1:]) / 2
        price = t.prices(mids)
        lo, hi = float(price.min()), float(price.max())
        if hi - lo <= 0:
            continue
        in_peak = price >= hi - 1e-9
        peak_kwh = float(o.energy_kwh[in_peak].sum())
        total = float(o.energy_kwh.sum())
        if total <= 0 or peak_kwh / total < 0.05:
            continue
        # Load can only move into cheap hours with spare capacity: headroom below the process's own
        # 95th-percentile hourly energy in the lowest band bounds what can be shifted.
        cheap = price <= lo + 1e-9
        cap = float(np.percentile(o.energy_kwh, 95))
        headroom = float(np.clip(cap - o.energy_kwh[cheap], 0, None).sum())
        shiftable = min(shift_share * peak_kwh, headroom)
        if shiftable < 0.01 * total:
            continue
        hours = (o.edges[-1] - o.edges[0]) / 3600.0
        shifted_y = shiftable * HOURS_PER_YEAR / hours
        out.append(Hint(
            kind="tou_shift", title=f"{name}: move load out of the peak tariff band", process=name,
            action=(f"Schedule {shiftable:,.0f} kWh per period ({100 * shiftable / peak_kwh:.0f} % of {name}'s peak-band energy) into the lowest "
                    f"band (price {lo:.2f} instead of {hi:.2f} {t.currency}/kWh); energy use is unchanged."),
            kwh_per_year=0.0, cost_per_year=shifted_y * (hi - lo), tco2_per_year=0.0,
            evidence=(f"{100 * peak_kwh / total:.0f} % of {name}'s {total:,.0f} kWh fell in the peak band over the period; the lowest band "
                      f"had {headroom:,.0f} kWh of headroom below the process's 95th-percentile hourly energy ({cap:,.0f} kWh)."),
            confidence="medium", sources=["[HC4]", "[S36]"],
            details={"peak_share": peak_kwh / total, "max_shift_share": shift_share, "shiftable_kwh": shiftable, "headroom_kwh": headroom,
                     "price_peak": hi, "price_low": lo}))
    return out


def _plant_demand(data: PlantData, window_s: float = 900.0) -> tuple[np.ndarray, np.ndarray]:
    """Plant demand per 15-min window (kW) from the energy counters: the billing demand interval [D17]."""
    edges = edges_for(data.start, data.end, window_s)
    kwh = np.zeros(len(edges) - 1)
    for name in data.plant.processes:
        for dev in data.process_devices(name):
            ds = data.devices.get(dev)
            if ds is not None and ds.has("active_energy_import"):
                kwh += bin_counter(ds.t, ds.values["active_energy_import"], edges, "active_energy_import")
    full = (edges[:-1] >= data.start) & (edges[1:] <= data.end)
    return edges[:-1][full], kwh[full] * 3600.0 / window_s


def _peak_hint(data: PlantData, settings: Settings) -> Hint | None:
    t = settings.tariff
    ts, kw = _plant_demand(data)
    if kw.size < 96 or t.demand_charge_per_kw_month <= 0:
        return None
    peak = float(kw.max())
    target = float(np.percentile(kw, 95))
    cut = peak - target
    if cut < 0.03 * peak:
        return None
    above = int((kw > target).sum())
    cost_y = cut * t.demand_charge_per_kw_month * 12
    return Hint(
        kind="peak_shaving", title="Shave the plant's 15-minute demand peak", process=None,
        action=(f"Stagger the loads that coincide in the peak windows (e.g. EAF power-on with ladle-furnace arcing and mill passes) "
                f"to hold demand at {target:,.0f} kW instead of {peak:,.0f} kW."),
        kwh_per_year=0.0, cost_per_year=cost_y, tco2_per_year=0.0,
        evidence=f"Peak 15-min demand {peak:,.0f} kW at {iso(float(ts[int(kw.argmax())]))[:16]} UTC; only {above} of {kw.size} windows "
                 f"({100 * above / kw.size:.1f} %) exceed {target:,.0f} kW (95th percentile).",
        confidence="medium", sources=["[HC3]", "[S36]", "[D17]"],
        details={"peak_kw": peak, "target_kw": target, "windows_above": above, "demand_charge": t.demand_charge_per_kw_month})


def _pf_hint(data: PlantData, settings: Settings, grid: Factor) -> Hint | None:
    t = settings.tariff
    p_kwh = q_kvarh = 0.0
    weighted: list[tuple[float, float]] = []
    for name in data.plant.processes:
        for dev in data.process_devices(name):
            ds = data.devices.get(dev)
            if ds is None or not ds.has("active_energy_import"):
                continue
            e = bin_counter(ds.t, ds.values["active_energy_import"], np.array([data.start, data.end]), "active_energy_import")[0]
            if ds.has("reactive_energy_import"):
                q = bin_counter(ds.t, ds.values["reactive_energy_import"], np.array([data.start, data.end]), "reactive_energy_import")[0]
                p_kwh += e
                q_kvarh += q
            elif ds.has("power_factor") and ds.has("active_power"):
                pf = float(bin_gauge(ds.t, ds.values["power_factor"], np.array([data.start, data.end]), ds.values["active_power"])[0])
                if math.isfinite(pf) and pf > 0:
                    weighted.append((e, pf))
    for e, pf in weighted:
        p_kwh += e
        q_kvarh += e * math.tan(math.acos(min(pf, 1.0)))
    if p_kwh <= 0:
        return None
    pf_plant = p_kwh / math.hypot(p_kwh, q_kvarh)
    if pf_plant >= t.pf_threshold:
        return None
    hours = (data.end - data.start) / 3600.0
    p_avg = p_kwh / hours
    target = min(0.95, max(t.pf_threshold + 0.02, 0.92))
    kvar = p_avg * (math.tan(math.acos(pf_plant)) - math.tan(math.acos(target)))
    prices = float(np.mean(t.prices(np.linspace(data.start, data.end, 97))))
    bill_y = p_kwh * HOURS_PER_YEAR / hours * prices
    penalty_y = bill_y * t.pf_penalty_pct_per_point / 100.0 * (t.pf_threshold - pf_plant) * 100.0
    # I²R losses scale with 1/PF²; 1 % distribution losses is an assumption (†), stated in the hint.
    loss_kwh_y = 0.01 * p_kwh * HOURS_PER_YEAR / hours * (1 - (pf_plant / target) ** 2)
    return Hint(
        kind="power_factor", title="Correct the plant's power factor", process=None,
        action=f"Install about {kvar:,.0f} kvar of compensation (SVC for arc furnaces [S10]) to lift PF from {pf_plant:.2f} to {target:.2f}.",
        kwh_per_year=loss_kwh_y, cost_per_year=penalty_y + loss_kwh_y * prices, tco2_per_year=loss_kwh_y * grid.kg_per_kwh / 1000.0,
        evidence=f"Energy-weighted PF {pf_plant:.3f} over the period, below the tariff threshold {t.pf_threshold:.2f} "
                 f"(surcharge {t.pf_penalty_pct_per_point} % of the bill per 0.01).",
        confidence="medium", sources=["[HC5]", "[S10]", "† 1 % I²R losses assumed"],
        details={"pf": pf_plant, "target_pf": target, "kvar": kvar, "penalty_per_year": penalty_y})
