"""The battery plant's weather station: served conditions, the plant model naming it, and no shift of the plant's streams."""

from __future__ import annotations

import dataclasses

import pytest

from carbonedge import profiles
from carbonedge.simulators._plant import dew_point_c, relative_humidity_pct
from carbonedge.simulators.battery import abs_humidity_at_dew_point
from carbonedge.simulators.offline import _read
from carbonedge.simulators.runner import WEATHER_DEVICE, Simulation
from carbonedge.simulators.scenario import load_scenario


@pytest.mark.parametrize("dp", [-5.0, 0.0, 4.0, 12.5, 24.0])
def test_dew_point_inverts_the_magnus_absolute_humidity(dp):
    w = abs_humidity_at_dew_point(dp) if dp >= 0 else abs_humidity_at_dew_point(0.0) * 0.7
    if dp >= 0:
        assert dew_point_c(w) == pytest.approx(dp, abs=1e-9)
    # Saturated air at its own dew point is at 100 % RH; warmer air holding the same water is drier.
    assert relative_humidity_pct(dew_point_c(w), w) == pytest.approx(100.0, abs=1e-6)
    assert relative_humidity_pct(dew_point_c(w) + 10.0, w) < 60.0


def test_magnus_figures_match_published_saturation_values():
    # WMO-No. 8 Magnus over water: e_s(20 °C) = 23.37 hPa, so air at 20 °C with 8.75 g/kg (e = 14.0 hPa) has
    # RH ≈ 60 % and a dew point of ≈ 12.0 °C (psychrometric tables).
    w = 622.0 * 14.0 / (1013.25 - 14.0)
    assert relative_humidity_pct(20.0, w) == pytest.approx(59.9, abs=0.2)
    assert dew_point_c(w) == pytest.approx(12.0, abs=0.1)


def test_battery_weather_station_serves_the_climate_and_the_plant_model_names_it():
    sim = Simulation.from_scenario(load_scenario("battery-default"))
    model = sim.plant_model("site-x")
    assert model["weather"]["device"] == WEATHER_DEVICE and model["weather"]["temperature"] == "outdoor_temperature"
    station = next(d for d in sim.devices if d.device == WEATHER_DEVICE)
    assert station.profile is profiles.GENERIC_WEATHER_TH
    for hours in (1, 7, 15):
        sim.advance_to(sim.start + hours * 3600)
        temp, w = sim.weather_truth()["outdoor_temperature_c"], sim.weather_truth()["abs_humidity_gkg"]
        dry = next(p for p in sim.processes if p.name == "dry_room")
        assert temp == dry.climate.temperature_c(sim.t)
        served = _read(station)  # through the registers, as the gateway reads them
        assert served["outdoor_temperature"] == pytest.approx(temp, abs=0.05)
        assert served["outdoor_dew_point"] == pytest.approx(dew_point_c(w), abs=0.05)
        assert served["outdoor_humidity"] == pytest.approx(relative_humidity_pct(temp, w), abs=0.05)


def test_steel_plant_has_no_weather_station():
    sim = Simulation.from_scenario(load_scenario("steel-default"))
    assert "weather" not in sim.plant_model("s") and WEATHER_DEVICE not in {d.device for d in sim.devices}


def test_reading_the_weather_station_does_not_change_the_plant():
    sc = dataclasses.replace(load_scenario("battery-default"), duration_s=3 * 3600)
    quiet, polled = Simulation.from_scenario(sc), Simulation.from_scenario(sc)
    station = next(d for d in polled.devices if d.device == WEATHER_DEVICE)
    for k in range(1, 3 * 60 + 1):
        quiet.advance_to(sc.start + 60 * k)
        polled.advance_to(sc.start + 60 * k)
        _read(station)
    assert [p.energy_kwh for p in quiet.processes] == [p.energy_kwh for p in polled.processes]
