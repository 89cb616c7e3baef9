"""The EnPI baselines and the report's process models on the same meters: they agree on the energy per unit of output
over a common baseline period (model SEC) within a stated tolerance, both keep physical signs, and a line whose output
moves with its running time is flagged (its split into kW and kWh per unit is not determined by the data)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from carbon_synth import make_plant

from carbonedge.analytics.carbon import from_csv_dir
from carbonedge.analytics.enpi import SEPARABLE_R, compute_enpi
from carbonedge.analytics.twin.model import calibrate, observations

#: Both models reproduce the same metered energy (NMBE within ±1 %), so their energy per unit over one period agrees to this.
TOLERANCE = 0.02


class _Reader:
    """InfluxDB stand-in: the query's field of every device of the synthetic plant, as ``series_by_tag`` returns it."""

    def __init__(self, data) -> None:
        self.data = data

    def series_by_tag(self, q: str, tag: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        field = re.match(r'SELECT "([^"]+)"', q).group(1)
        return {name: ((ds.t * 1000).astype(np.int64), ds.values[field]) for name, ds in self.data.devices.items() if field in ds.values}


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory):
    d: Path = tmp_path_factory.mktemp("enpi-vs-models")
    make_plant(d, days=3)
    return from_csv_dir(d)


def test_enpi_and_process_models_agree_on_energy_per_unit(plant) -> None:
    start, end = plant.start, plant.end
    until = start + 2 * 86400.0
    res = compute_enpi(_Reader(plant), plant.plant, int(start * 1000), int(end * 1000), baseline_until_ms=int(until * 1000))
    compared = 0
    for name, p in res.processes.items():
        if p.production is None:
            continue
        assert p.baseline is not None and p.baseline.intercept >= 0 and min(p.baseline.coefficients) >= 0, name
        o = observations(plant, name)
        m = calibrate(o, (float(res.start_ms) / 1000.0, until), "t")
        assert min(m.p_active_kw, m.p_idle_kw or 0.0, m.sec or 0.0) >= 0, name
        assert p.modelled_sec is not None and m.modelled_sec is not None
        assert p.modelled_sec == pytest.approx(m.modelled_sec, rel=TOLERANCE), name
        compared += 1
    assert compared == 2
    # The caster's output is its running time (2 t/min on shift): flagged, and the flag says what to compare instead.
    caster = res.processes["caster"]
    assert caster.output_running_r is not None and caster.output_running_r >= SEPARABLE_R
    assert "caster: output moved with productive hours" in res.table()


def test_an_undetermined_kwh_per_unit_is_flagged_with_its_uncertainty() -> None:
    """Energy that does not follow output (a constant draw with noise): the kWh per unit has a wide interval and the
    EnPI table says so instead of printing a coefficient an engineer would read as a finding."""
    from carbonedge.analytics.enpi import EnpiResult, ProcessEnpi, _fit

    rng = np.random.default_rng(5)
    n = 48
    hours = (1_767_225_600_000 + 3_600_000 * np.arange(n)).astype(np.int64)
    prod = rng.uniform(80, 120, n)
    energy = 40_000.0 + rng.normal(0, 2_000.0, n)
    p = ProcessEnpi("eaf", "meltshop", hours, energy, prod, None)
    _fit(p, {"production": p.production}, int(hours[n // 2]))
    assert p.sec_coefficient_se is not None and p.sec_coefficient_se > 0
    table = EnpiResult("s", "UTC", int(hours[0]), int(hours[-1]), int(hours[n // 2]), {"eaf": p}).table()
    assert "eaf: the kWh per unit" in table and "not determined to better than ±50 %" in table
