"""Process models of weather-driven loads and the uncertainty a waste hint must stand out from.

A dry room's dehumidifier removes the moisture of its make-up air: its power follows the outdoor
absolute humidity (and cooling the outdoor temperature). Calibrated on one day, a model without the
weather reads a humid spell as waste; with the plant's weather station it does not, and it sizes a
real degradation during that spell. A model's coefficients learned on a short baseline are uncertain:
an excess at production far outside the baseline's is not told from that uncertainty, and the
analysis says so instead of giving a hint.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from carbonedge.analytics.carbon import FactorLibrary, default_settings, from_csv_dir
from carbonedge.analytics.carbon.data import DeviceSeries, PlantData
from carbonedge.analytics.twin import analyse, calibrate, observations
from carbonedge.plant import PlantModel
from carbonedge.clock import iso, parse_time

T0 = parse_time("2026-01-05T00:00:00Z")  # a Monday
DAY = 86400.0
POLL = 60.0
WASTE_KINDS = {"dryroom_dehumidifier", "process_excess_energy", "idle_equipment", "compressed_air_leak", "eaf_excess_energy",
               "dryer_degradation", "formation_channel"}


def dew_point_c(w_gkg: np.ndarray) -> np.ndarray:
    """Dew point of air holding ``w_gkg`` (Magnus over water, WMO coefficients) at standard pressure."""
    e = w_gkg * 1013.25 / (622.0 + w_gkg)
    g = np.log(e / 6.112)
    return 243.12 * g / (17.62 - g)


def _weather(t: np.ndarray, rng: np.random.Generator, humid_from: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Outdoor temperature (daily swing 8-16 °C) and absolute humidity (7 g/kg, a humid spell from ``humid_from``)."""
    hour = (t % DAY) / 3600.0
    temp = 12.0 + 4.0 * np.sin((hour - 9.0) / 24.0 * 2 * math.pi) + 0.3 * np.cumsum(rng.standard_normal(t.size)) / math.sqrt(t.size)
    w = 7.0 + 0.3 * np.sin((t - T0) / (1.7 * DAY) * 2 * math.pi)
    if humid_from is not None:
        w = w + np.clip((t - humid_from) / (12 * 3600.0), 0, 1) * 2.5  # +2.5 g/kg over 12 h
    return temp, w


def dry_room_plant(*, days: float = 5.0, seed: int = 1, humid_from: float | None = T0 + 2 * DAY,
                   degrade_from: float | None = None, weather_station: bool = True) -> tuple[PlantData, float]:
    """A dry room metered every minute: fan 170 kW + regeneration 48 kW per g/kg of moisture load + cooling above 12 °C.

    Returns the plant data and the true extra energy (kWh) of a regeneration degradation (+35 %) from ``degrade_from``.
    """
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0, days * DAY + POLL, POLL)
    temp, w = _weather(t, rng, humid_from)
    door = (rng.random(t.size) < POLL / 900.0) * 1.5  # door openings: extra moisture for a minute
    regen = 48.0 * (np.maximum(w - 0.1, 0.0) + 1.2 + door)
    extra = np.zeros_like(t) if degrade_from is None else np.where(t >= degrade_from, 0.35 * regen, 0.0)
    kw = 170.0 * (1 + 0.01 * rng.standard_normal(t.size)) + regen + 9.0 * np.maximum(temp - 12.0, 0.0) + extra
    kwh = np.concatenate([[0.0], np.cumsum(kw[:-1] * POLL / 3600.0)])
    waste = float((extra[:-1] * POLL / 3600.0).sum())
    plant = {"site": "cells", "plant": "battery", "processes": {
        "dry_room": {"production_unit": None, "meters": ["dry-room-meter"], "counters": [], "follows_shifts": False}}}
    devices = {"dry-room-meter": DeviceSeries("dry-room-meter", t, {"active_energy_import": kwh})}
    if weather_station:
        plant["weather"] = {"device": "weather-station", "temperature": "outdoor_temperature", "dew_point": "outdoor_dew_point"}
        devices["weather-station"] = DeviceSeries("weather-station", t, {
            "outdoor_temperature": np.round(temp, 1), "outdoor_dew_point": np.round(dew_point_c(w), 1)})
    return PlantData(plant, devices, float(t[0]), float(t[-1]), "synthetic dry room"), waste


def _analyse(data: PlantData, baseline_days: float = 1.0):  # type: ignore[no-untyped-def]
    s = default_settings(data.plant)
    return analyse(data, s, FactorLibrary.load().get(s.carbon.grid_factor), baseline=(data.start, data.start + baseline_days * DAY))


def _waste(res) -> list:  # type: ignore[no-untyped-def]
    return [h for h in res.hints if h.kind in WASTE_KINDS]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_humid_spell_is_no_waste_with_the_weather_station(seed: int) -> None:
    data, _ = dry_room_plant(seed=seed)
    res = _analyse(data)
    m = res.models["dry_room"]
    assert m.weather is not None, m.equation()
    # The moisture slope is the dehumidifier's physics: 48 kW per g/kg.
    coef = dict(zip([str(x) if isinstance(x, str) else x.feature for x in m.weather.baseline.terms],
                    m.weather.baseline.coefficients, strict=True))
    assert coef["abs_humidity(outdoor_dew_point)"] == pytest.approx(48.0, rel=0.25), m.equation()
    assert _waste(res) == [], [h.as_dict() for h in _waste(res)]


def test_humid_spell_reads_as_waste_without_the_weather_station() -> None:
    """The same week without outdoor data: the daily-cycle model takes the humid spell for a degraded dehumidifier."""
    data, _ = dry_room_plant(seed=1, weather_station=False)
    res = _analyse(data)
    assert res.models["dry_room"].weather is None
    assert [h.kind for h in _waste(res)] == ["dryroom_dehumidifier"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_degradation_during_a_humid_spell_is_sized_against_the_weather(seed: int) -> None:
    data, waste = dry_room_plant(seed=seed, degrade_from=T0 + 3 * DAY)
    res = _analyse(data)
    hs = _waste(res)
    assert [h.kind for h in hs] == ["dryroom_dehumidifier"], [h.as_dict() for h in hs]
    h = hs[0]
    assert h.waste_kwh == pytest.approx(waste, rel=0.1)
    # The hint states its uncertainty, and it is small against the waste it reports.
    assert 0 < h.details["uncertainty_kwh"] < 0.25 * h.waste_kwh
    assert "±" in h.evidence


def test_weather_station_is_read_from_an_offline_export(tmp_path: Path) -> None:
    data, _ = dry_room_plant(days=2.0, humid_from=None)
    (tmp_path / "plant.json").write_text(__import__("json").dumps(PlantModel.coerce(data.plant).to_dict()))
    for dev, ds in data.devices.items():
        cols = list(ds.values)
        rows = ["ts," + ",".join(cols)] + [f"{iso(float(x))}," + ",".join(f"{ds.values[c][i]:.6f}" for c in cols) for i, x in enumerate(ds.t)]
        (tmp_path / f"{dev}.csv").write_text("\n".join(rows) + "\n")
    loaded = from_csv_dir(tmp_path)
    ws = loaded.devices["weather-station"]
    assert ws.has("outdoor_temperature") and ws.has("outdoor_dew_point")
    o = observations(loaded, "dry_room")
    assert o.weather is not None and o.weather.shape == (len(o.energy_kwh), 2) and o.weather_kinds == ("temperature", "dew_point")


# ---------------------------------------------------------------------------------------------- uncertainty


def line_plant(*, rate_after: float, extra_pct: float, seed: int = 7) -> tuple[PlantData, float]:
    """A line producing around the clock: 500 kW + 4 kWh/t; 100 t/h (±3 %) on the first day, ``rate_after`` t/h
    from day 2; the process draws ``extra_pct`` % more from day 3. Returns the data and the true extra kWh."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0, 5 * DAY + POLL, POLL)
    hourly = 100.0 * (1 + 0.03 * rng.standard_normal(int(5 * 24) + 1))
    rate = np.where(t < T0 + DAY, hourly[((t - T0) // 3600).astype(int)], rate_after)
    kw = (500.0 + 4.0 * rate) * (1 + 0.03 * rng.standard_normal(t.size))
    extra = np.where(t >= T0 + 3 * DAY, extra_pct / 100.0 * kw, 0.0)
    kw = kw + extra
    kwh = np.concatenate([[0.0], np.cumsum(kw[:-1] * POLL / 3600.0)])
    tons = np.concatenate([[0.0], np.cumsum(rate[:-1] * POLL / 3600.0)])
    plant = {"site": "mill", "plant": "steel", "production_quantity": "production_mass", "output_process": "line",
             "processes": {"line": {"production_unit": "t", "meters": ["line-meter"], "counters": ["line-counter"]}}}
    devices = {"line-meter": DeviceSeries("line-meter", t, {"active_energy_import": kwh}),
               "line-counter": DeviceSeries("line-counter", t, {"production_mass": tons})}
    return PlantData(plant, devices, float(t[0]), float(t[-1]), "synthetic line"), float((extra[:-1] * POLL / 3600.0).sum())


def test_coefficient_uncertainty_grows_away_from_the_baseline_conditions() -> None:
    data, _ = line_plant(rate_after=100.0, extra_pct=0.0)
    o = observations(data, "line")
    m = calibrate(o, (data.start, data.start + DAY), "t")
    mids = (o.edges[:-1] + o.edges[1:]) / 2
    stretch = (mids > data.start + 2 * DAY) & (mids < data.start + 3 * DAY)
    _, near = m.sum_uncertainty(o, stretch)
    far_o = copy.copy(o)
    far_o.production = np.where(stretch, 2.0 * o.production, o.production)
    _, far = m.sum_uncertainty(far_o, stretch)
    assert 0 < near < far / 3, (near, far)


def test_excess_far_outside_the_baseline_conditions_is_refused_with_a_reason() -> None:
    """The same +6 % excess: reported at the baseline's production rate, refused (with a note) at twice that rate,
    where a one-day baseline of nearly constant output cannot say what the line should draw."""
    near, waste = line_plant(rate_after=100.0, extra_pct=6.0)
    res = _analyse(near)
    hs = _waste(res)
    assert [h.process for h in hs] == ["line"] and hs[0].waste_kwh == pytest.approx(waste, rel=0.2), [h.as_dict() for h in hs]
    far, _ = line_plant(rate_after=200.0, extra_pct=6.0)
    res = _analyse(far)
    assert _waste(res) == [], [h.as_dict() for h in _waste(res)]
    notes = [n for n in res.notes if n.startswith("line:") and "no hint" in n]
    assert len(notes) == 1 and "uncertainty" in notes[0] and "coefficients learned on the baseline" in notes[0], res.notes
