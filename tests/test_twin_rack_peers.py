"""Formation racks metered one by one: the peer comparison finds a rack whose channels lose energy recovery,
sizes the waste against ground truth, and leaves alone racks that are idle, smaller or less loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from carbonedge.analytics.carbon import FactorLibrary, default_settings
from carbonedge.analytics.carbon.data import DeviceSeries, PlantData
from carbonedge.analytics.twin import analyse
from carbonedge.analytics.twin.peers import compare_racks

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z, a Monday
DAY = 86400.0
# An 18 h protocol (the sizes are ours; 16-28 h formation protocols [B19]): (hours, DC kW per unit rack size, sign).
PROTOCOL = ((1.0, 0.0, 0), (8.0, 10.0, 1), (2.0, 0.0, 0), (4.0, 6.0, -1), (2.0, 8.0, 1), (1.0, 0.0, 0))
AUX_KW, ETA_CHARGE, RECOVERY = 1.0, 0.9, 0.5


def _hall(fault: bool, seed: int = 10, racks: int = 12, days: float = 6.0, long_recipe: float = 1.0) -> tuple[PlantData, str, float]:
    """Synthetic formation hall: racks of different sizes started at random times, one idle for maintenance,
    one loaded with fewer cells from day 3, and (with ``fault``) one rack burning half of its discharge energy (half its channels lost recovery)
    from day 2.5 to day 5; every third rack (the faulty one among them) runs a recipe ``long_recipe`` times longer.
    Returns the data, the faulty rack's device and its true waste (kWh)."""
    rng = np.random.default_rng(seed)
    dt = 60.0
    t = T0 + np.arange(0.0, days * DAY + dt, dt)
    steps = np.cumsum([0.0] + [p[0] * 3600 for p in PROTOCOL])
    dc = np.array([p[1] for p in PROTOCOL])
    sign = np.array([p[2] for p in PROTOCOL])
    size = rng.uniform(0.7, 1.3, racks)  # cell count and format differ from rack to rack
    phase = rng.uniform(0, steps[-1], racks)
    bad, idle, smaller = 9, 5, 7
    devices, waste = {}, 0.0
    for k in range(racks):
        bounds = steps * (long_recipe if k % 3 == 0 else 1.0)
        cycle = bounds[-1]
        age = (t - T0 + phase[k]) % cycle
        if k == idle:  # maintenance on day 2.5-3.5, then restarted at a new point of its protocol
            age = np.where(t - T0 >= 3.5 * DAY, (t - T0 + phase[k] + 0.37 * cycle) % cycle, age)
        step = np.searchsorted(bounds, age, side="right") - 1
        # Cell lots differ a little from cycle to cycle (capacity spread, †).
        n_cycle = np.floor((t - T0 + phase[k]) / cycle).astype(int)
        lot = 1.0 + 0.005 * rng.standard_normal(n_cycle.max() + 1)[n_cycle]
        s = size[k] * np.where((k == smaller) & (t - T0 >= 3 * DAY), 0.6, 1.0) * lot
        p_dc = dc[step] * s * (1 + 0.02 * rng.standard_normal(t.size))
        net = AUX_KW + np.where(sign[step] > 0, p_dc / ETA_CHARGE, 0.0) - np.where(sign[step] < 0, RECOVERY * p_dc, 0.0)
        if k == idle:
            net = np.where((t - T0 >= 2.5 * DAY) & (t - T0 < 3.5 * DAY), 0.05, net)
        if fault and k == bad:
            extra = np.where((sign[step] < 0) & (t - T0 >= 2.5 * DAY) & (t - T0 < 5 * DAY), 0.5 * RECOVERY * p_dc, 0.0)
            net = net + extra
            waste = float(extra[:-1].sum() * dt / 3600.0)
        h = np.concatenate([[0.0], net[:-1] * dt / 3600.0])
        imp = np.round(rng.uniform(1e3, 5e4) + np.cumsum(np.maximum(h, 0)), 2)  # 0.01 kWh registers
        exp = np.round(rng.uniform(1e2, 1e4) + np.cumsum(np.maximum(-h, 0)), 2)
        dev = f"formation-rack-{k + 1:02d}-meter"
        devices[dev] = DeviceSeries(dev, t, {"active_energy_import": imp, "active_energy_export": exp})
    plant = {"site": "cells", "plant": "battery", "output_process": "formation",
             "processes": {"formation": {"meters": list(devices), "production_unit": "kWh"}}}
    return PlantData(plant, devices, float(t[0]), float(t[-1]), "synthetic"), f"formation-rack-{bad + 1:02d}-meter", waste


BASELINE = (T0, T0 + 2 * DAY)


def test_rack_losing_recovery_is_found_and_sized() -> None:
    data, bad, waste = _hall(fault=True)
    pr = compare_racks(data, "formation", BASELINE)
    assert pr is not None
    assert pr.cycle_h == pytest.approx(18.0, abs=0.25)
    assert [o.device for o in pr.outliers] == [bad], [(o.device, o.waste_kwh, o.z) for o in pr.outliers]
    o = pr.outliers[0]
    assert o.waste_kwh == pytest.approx(waste, rel=0.2)
    # The excess only shows in discharge steps: the rise reported lies within a cycle inside the fault (day 2.5 to 5),
    # and the waste is counted over whole cycles around it.
    f0, f1, cyc = T0 + 2.5 * DAY, T0 + 5 * DAY, 18 * 3600
    assert f0 - 900 <= o.details["rise_from"] <= f0 + cyc and f1 - cyc <= o.details["rise_to"] <= f1 + 900
    assert o.start <= f0 and o.end >= f1 and (o.end - o.start) % cyc == 0


def test_idle_smaller_and_less_loaded_racks_are_not_faults() -> None:
    data, _, _ = _hall(fault=False)
    pr = compare_racks(data, "formation", BASELINE)
    assert pr is not None and pr.outliers == [], [(o.device, o.waste_kwh, o.z) for o in pr.outliers]


@pytest.mark.parametrize("seed", [2, 3])
def test_racks_on_different_recipes_are_judged_on_their_own_cycle(seed: int) -> None:
    # A third of the racks on a 1.25x longer recipe (22.5 h), the faulty rack among them.
    data, bad, waste = _hall(fault=True, seed=seed, long_recipe=1.25)
    pr = compare_racks(data, "formation", BASELINE)
    assert pr is not None and [o.device for o in pr.outliers] == [bad], [(o.device, o.waste_kwh, o.z) for o in pr.outliers]
    assert pr.outliers[0].cycle_h == pytest.approx(22.5, abs=0.25)
    # Peers on another cycle are not whole cycles over the rack's span: sizing is coarser than on a uniform hall
    # (within 50 % over seeds 1-10 here, 20 % on a uniform hall).
    assert pr.outliers[0].waste_kwh == pytest.approx(waste, rel=0.5)
    clean, _, _ = _hall(fault=False, seed=seed, long_recipe=1.25)
    assert compare_racks(clean, "formation", BASELINE).outliers == []  # type: ignore[union-attr]


def test_rack_hint_names_the_rack_with_cost_and_sources() -> None:
    data, bad, waste = _hall(fault=True, seed=8)
    s = default_settings(data.plant)
    res = analyse(data, s, FactorLibrary.load().get(s.carbon.grid_factor), baseline=BASELINE)
    hs = [h for h in res.hints if h.kind == "formation_channel"]
    assert len(hs) == 1, [h.as_dict() for h in res.hints]
    h = hs[0]
    assert h.process == "formation" and h.details["device"] == bad and bad in h.title
    assert h.waste_kwh == pytest.approx(waste, rel=0.2)
    assert h.kwh_per_year > 0 and h.cost_per_year > 0 and h.tco2_per_year > 0 and "[B20]" in h.sources
    json.dumps(h.as_dict())  # goes into report.json as it is


def test_too_few_rack_meters_are_not_compared() -> None:
    data, _, _ = _hall(fault=True, racks=3)
    assert compare_racks(data, "formation", BASELINE) is None
