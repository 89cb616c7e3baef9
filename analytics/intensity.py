"""Energy, production and specific energy consumption (SEC) per process and for the plant.

Energy and production come from cumulative counters: the consumption over a period is
the sum of the counter's increments between consecutive readings, from the kernel's counter
arithmetic (:mod:`carbonedge.energy`): rollovers counted exactly, resets never a negative or a
spike, readings out of order not counted twice, the same as every other figure of the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carbonedge.analytics.influx import InfluxReader
from carbonedge.influx import quote_ident, quote_literal, time_range
from carbonedge import energy as counters
from carbonedge.plant import PlantModel


def counter_increase(values: np.ndarray, t_ms: np.ndarray | None = None, quantity: str | None = None) -> tuple[float, int]:
    """Total increase of a cumulative counter series; returns ``(increase, resets)``.

    ``t_ms``: reading times (ms; without them the readings are taken as evenly spaced, one a minute);
    ``quantity``: what the counter counts, for the register ranges it may roll over at.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return 0.0, 0
    t = np.asarray(t_ms, dtype=np.int64) if t_ms is not None else np.arange(v.size, dtype=np.int64) * 60_000
    spec = counters.CounterSpec.for_quantity(quantity) if quantity else counters.CounterSpec()
    inc = counters.increments(t, v, spec)
    return inc.total, inc.count(counters.RESET)


@dataclass
class ProcessFigure:
    process: str
    area: str
    energy_kwh: float
    production: float | None
    production_unit: str | None
    meters: list[str]
    counter_resets: int = 0
    readings: int = 0

    @property
    def sec(self) -> float | None:
        if self.production is None or self.production <= 0:
            return None
        return self.energy_kwh / self.production


@dataclass
class PlantFigures:
    site: str
    start_ms: int
    end_ms: int
    sec_unit: str
    processes: dict[str, ProcessFigure] = field(default_factory=dict)
    plant_energy_kwh: float = 0.0
    plant_production: float | None = None
    output_process: str | None = None

    @property
    def plant_sec(self) -> float | None:
        if not self.plant_production:
            return None
        return self.plant_energy_kwh / self.plant_production

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "sec_unit": self.sec_unit,
            "plant_energy_kwh": self.plant_energy_kwh,
            "plant_production": self.plant_production,
            "plant_sec": self.plant_sec,
            "output_process": self.output_process,
            "processes": {
                name: {
                    "area": p.area,
                    "energy_kwh": p.energy_kwh,
                    "production": p.production,
                    "production_unit": p.production_unit,
                    "sec": p.sec,
                    "counter_resets": p.counter_resets,
                }
                for name, p in self.processes.items()
            },
        }


def energy_intensity(reader: InfluxReader, plant: PlantModel | dict[str, Any], start_ms: int, end_ms: int) -> PlantFigures:
    """Compute energy, production and SEC per process over ``[start_ms, end_ms]`` from InfluxDB.

    ``plant`` is the site's :class:`~carbonedge.plant.PlantModel` (or a parsed ``plant.json``): each
    process's ``meters`` are summed for its energy, its production ``counters`` for its production.
    """
    plant = PlantModel.coerce(plant)
    site = plant.site
    eq = plant.energy_quantity
    where = f"site = {quote_literal(site)} AND {time_range(start_ms, end_ms)}"
    energy = reader.series_by_tag(f'SELECT {quote_ident(eq)} FROM "readings" WHERE {where} GROUP BY "device"', "device")
    prod_cache: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    figs = PlantFigures(site=site, start_ms=start_ms, end_ms=end_ms, sec_unit=plant.sec_label, output_process=plant.output_process)
    for name, spec in plant.processes.items():
        e_total, resets, n = 0.0, 0, 0
        for dev in spec.meters:
            if dev in energy:
                inc, r = counter_increase(energy[dev][1], energy[dev][0], eq)
                e_total += inc
                resets += r
                n += energy[dev][1].size
        production: float | None = None
        if spec.counters:
            pq = plant.production_quantity_of(name)
            if pq not in prod_cache:
                prod_cache[pq] = reader.series_by_tag(f'SELECT {quote_ident(pq)} FROM "readings" WHERE {where} GROUP BY "device"', "device")
            prod = prod_cache[pq]
            production = 0.0
            for dev in spec.counters:
                if dev in prod:
                    inc, r = counter_increase(prod[dev][1], prod[dev][0], pq)
                    production += inc
                    resets += r
        figs.processes[name] = ProcessFigure(
            process=name, area=spec.area, energy_kwh=e_total, production=production,
            production_unit=spec.production_unit if production is not None else None,
            meters=list(spec.meters), counter_resets=resets, readings=n,
        )
    figs.plant_energy_kwh = sum(p.energy_kwh for p in figs.processes.values())
    out = figs.processes.get(figs.output_process or "")
    figs.plant_production = out.production if out else None
    return figs
