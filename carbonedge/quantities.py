"""The quantity catalogue: every value on the wire is one of these, in its canonical unit.

Gateways convert register values to the canonical unit before publishing, and the
collector refuses a value whose unit is not the canonical one. InfluxDB field names
are the quantity names, so a field always has one unit, forever.

``kind`` follows Telegraf's Counter/Gauge and Home Assistant's state classes:
``counter`` values are cumulative totals (energy, production) that only grow
except at a rollover or a reset; ``gauge`` values are instantaneous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class Quantity:
    name: str
    unit: str
    kind: Kind
    description: str


def _q(name: str, unit: str, kind: Kind, description: str) -> Quantity:
    return Quantity(name, unit, kind, description)


_ALL = [
    # Electricity
    _q("active_energy_import", "kWh", "counter", "Active energy imported (consumed), cumulative"),
    _q("active_energy_export", "kWh", "counter", "Active energy exported (generated or regenerated), cumulative"),
    _q("reactive_energy_import", "kvarh", "counter", "Reactive energy imported, cumulative"),
    _q("active_power", "kW", "gauge", "Total active power"),
    _q("active_power_l1", "kW", "gauge", "Active power, phase L1"),
    _q("active_power_l2", "kW", "gauge", "Active power, phase L2"),
    _q("active_power_l3", "kW", "gauge", "Active power, phase L3"),
    _q("reactive_power", "kvar", "gauge", "Total reactive power"),
    _q("apparent_power", "kVA", "gauge", "Total apparent power"),
    _q("power_factor", "1", "gauge", "Total power factor (absolute value)"),
    _q("demand_active_power", "kW", "gauge", "Active power demand (meter's demand period average)"),
    _q("voltage_l1_n", "V", "gauge", "Voltage L1-N"),
    _q("voltage_l2_n", "V", "gauge", "Voltage L2-N"),
    _q("voltage_l3_n", "V", "gauge", "Voltage L3-N"),
    _q("current_l1", "A", "gauge", "Current L1"),
    _q("current_l2", "A", "gauge", "Current L2"),
    _q("current_l3", "A", "gauge", "Current L3"),
    _q("frequency", "Hz", "gauge", "Grid frequency"),
    # Other media (flow meters)
    _q("gas_volume", "Nm3", "counter", "Natural gas volume at normal conditions, cumulative"),
    _q("gas_flow", "Nm3/h", "gauge", "Natural gas flow"),
    _q("oxygen_volume", "Nm3", "counter", "Oxygen volume at normal conditions, cumulative"),
    _q("oxygen_flow", "Nm3/h", "gauge", "Oxygen flow"),
    _q("steam_mass", "t", "counter", "Steam mass, cumulative"),
    _q("steam_flow", "t/h", "gauge", "Steam flow"),
    _q("water_volume", "m3", "counter", "Water volume, cumulative"),
    _q("water_flow", "m3/h", "gauge", "Water flow"),
    _q("air_volume", "Nm3", "counter", "Compressed air volume at normal conditions, cumulative"),
    _q("air_flow", "Nm3/h", "gauge", "Compressed air flow"),
    # Production (PLC counters)
    _q("production_mass", "t", "counter", "Production in tonnes, cumulative"),
    _q("production_count", "pcs", "counter", "Production in pieces (cells, coils, heats), cumulative"),
    _q("production_capacity", "kWh", "counter", "Production in kWh of cell capacity, cumulative"),
    _q("running", "1", "gauge", "Equipment running (1) or stopped (0)"),
    # Outdoor conditions (weather station on the gateway): relevant variables of weather-driven loads
    _q("outdoor_temperature", "°C", "gauge", "Outdoor air temperature"),
    _q("outdoor_humidity", "%", "gauge", "Outdoor relative humidity (over water)"),
    _q("outdoor_dew_point", "°C", "gauge", "Outdoor dew point (over water)"),
]

QUANTITIES: dict[str, Quantity] = {q.name: q for q in _ALL}


def get(name: str) -> Quantity:
    """Return the quantity called ``name``; raise ``KeyError`` with the known names otherwise."""
    try:
        return QUANTITIES[name]
    except KeyError:
        raise KeyError(f"unknown quantity {name!r}; known: {', '.join(sorted(QUANTITIES))}") from None
