"""The SEC table that `carbonedge demo` and `analyze sec` print."""

from __future__ import annotations

from carbonedge.analytics.sec_table import sec_table


def _figs(unit: str, prod_unit: str) -> dict:  # type: ignore[type-arg]
    return {"sec_unit": unit, "plant_energy_kwh": 1000.0, "plant_production": 4.0, "plant_sec": 250.0,
            "processes": {"p1": {"energy_kwh": 1000.0, "production": 4.0, "production_unit": prod_unit, "sec": 250.0}}}


def test_plant_row_states_the_plants_own_output_unit() -> None:
    steel = sec_table(_figs("kWh/t", "t")).splitlines()[-1]
    cells = sec_table(_figs("kWh/kWh_cell", "kWh_cell")).splitlines()[-1]
    assert steel.startswith("PLANT") and "4.0 t" in steel
    assert cells.startswith("PLANT") and "4.0 kWh_cell" in cells and " t " not in cells + " "
    truth = {"processes": {"p1": {"truth_sec": 250.0}}, "plant_truth_sec": 251.0}
    assert sec_table(_figs("kWh/t", "t"), truth).splitlines()[-1].endswith("-0.398 %")


def test_demo_refuses_a_plant_that_contradicts_its_scenario(capsys) -> None:  # type: ignore[no-untyped-def]
    from carbonedge.app.cli import main

    assert main(["demo", "--scenario", "battery-week-faults", "--plant", "steel"]) != 0
    assert "contradicts scenario battery-week-faults, which is a battery plant" in capsys.readouterr().err
