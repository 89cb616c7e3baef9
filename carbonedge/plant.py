"""The plant model: which devices measure what, grouped plant → process → device.

One JSON file per site (``plant.json``): ``carbonedge sim`` and ``carbonedge generate`` write one
for the simulated plants, ``carbonedge plant init`` writes a skeleton from a gateway config. Every
analytics path (``analyze sec``, EnPIs, the monitor, the carbon report, process models, PACT)
reads it through :class:`PlantModel`, so a plant file means the same thing to all of them and a
wrong one is refused once, with every problem named (``file: key: reason``), instead of being read
ten slightly different ways.

A process's ``meters`` are summed for its energy; its ``counters`` are the PLC production counters
it is normalised by; its ``flow_meters`` measure other media (gas, oxygen, steam, water, compressed
air). A device belongs to one process only, else its energy would be counted twice.

The JSON Schema of the file is ``docs/plant-model.schema.json``; a test keeps it in step with these
models (regenerate it with ``python -m carbonedge.plant --write-schema``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from carbonedge import quantities
from carbonedge.errors import ConfigError
from carbonedge.wire import Identifier, TagValue

#: Where the exported JSON Schema lives (relative to the repository root).
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "plant-model.schema.json"
SCHEMA_ID = "carbonedge.plant/1"

#: Production counter quantities by their unit (``production_unit`` of a process).
PRODUCTION_BY_UNIT: dict[str, str] = {
    q.unit: q.name for q in quantities.QUANTITIES.values() if q.kind == "counter" and q.name.startswith("production_")
}
#: Media a flow meter can measure: medium name → (counter quantity, flow quantity).
MEDIA: dict[str, tuple[str, str]] = {
    "gas": ("gas_volume", "gas_flow"),
    "oxygen": ("oxygen_volume", "oxygen_flow"),
    "steam": ("steam_mass", "steam_flow"),
    "water": ("water_volume", "water_flow"),
    "air": ("air_volume", "air_flow"),
}
#: The placeholder ``carbonedge plant init`` never writes but engineers do; refused with a hint.
PLACEHOLDER = "TODO"

ProductionUnit = Literal["t", "pcs", "kWh"]
ProcessName = TagValue
DeviceId = Identifier


def _counter(name: str, what: str) -> str:
    q = quantities.QUANTITIES.get(name)
    if q is None or q.kind != "counter":
        known = ", ".join(sorted(n for n, x in quantities.QUANTITIES.items() if x.kind == "counter"))
        raise ValueError(f"{what} must be a cumulative counter quantity, not {name!r}; known: {known}")
    return name


def _no_placeholder(v: Any) -> Any:
    if isinstance(v, str) and v.strip().upper() == PLACEHOLDER:
        raise ValueError(f"'{PLACEHOLDER}' left in the file: fill it in (see `carbonedge plant init`'s list)")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _placeholders(cls, v: Any) -> Any:
        return _no_placeholder(v)


class FlowMeter(_Strict):
    """A meter of another medium than electricity (gas, oxygen, steam, water, compressed air)."""

    device: DeviceId
    medium: Literal["gas", "oxygen", "steam", "water", "air"] = Field(description="what the meter measures")
    quantity: str = Field(description="its cumulative counter quantity, e.g. gas_volume (Nm3)")
    flow_quantity: str | None = Field(default=None, description="its instantaneous flow quantity, e.g. gas_flow (Nm3/h)")

    @model_validator(mode="after")
    def _check(self) -> FlowMeter:
        counter, flow = MEDIA[self.medium]
        if self.quantity != counter:
            raise ValueError(f"a {self.medium} meter counts {counter}, not {self.quantity!r}")
        if self.flow_quantity is not None and self.flow_quantity != flow:
            raise ValueError(f"a {self.medium} meter's flow is {flow}, not {self.flow_quantity!r}")
        return self


class Process(_Strict):
    """One process (furnace, caster, formation, compressed air …) and the devices that measure it."""

    area: str = Field(default="", max_length=64, description="plant area (meltshop, utilities, cell assembly …)")
    production_unit: ProductionUnit | None = Field(
        default=None, description="unit of its production counters: t, pcs or kWh (of cell capacity); null for a utility")
    production_quantity: str | None = Field(
        default=None, description="the counter quantity of its production, when not the one its production_unit implies")
    meters: list[DeviceId] = Field(default_factory=list, description="electricity meters, summed for its energy")
    counters: list[DeviceId] = Field(default_factory=list, description="PLC production counters (they also carry 'running')")
    flow_meters: list[FlowMeter] = Field(default_factory=list, description="meters of other media")
    follows_shifts: bool = Field(default=False, description="runs only in the plant calendar's shifts")
    role: str | None = Field(default=None, max_length=64,
                             description="what the optimisation hints treat it as (e.g. formation, dry_room); default: from its name")

    @field_validator("production_quantity")
    @classmethod
    def _pq(cls, v: str | None) -> str | None:
        return None if v is None else _counter(v, "production_quantity")

    @model_validator(mode="after")
    def _check(self) -> Process:
        if self.counters and self.production_unit is None:
            raise ValueError("has production counters but no production_unit (t, pcs or kWh)")
        if self.production_quantity is not None:
            unit = quantities.get(self.production_quantity).unit
            if self.production_unit is not None and unit != self.production_unit:
                raise ValueError(f"production_quantity {self.production_quantity} counts {unit}, but production_unit is {self.production_unit}")
        return self

    def devices(self) -> list[str]:
        """Every device of the process: meters, flow meters, then production counters."""
        return [*self.meters, *(f.device for f in self.flow_meters), *self.counters]

    def metering_devices(self) -> list[str]:
        """The devices that measure what the process consumes (meters and flow meters, not counters)."""
        return [*self.meters, *(f.device for f in self.flow_meters)]


class Calendar(_Strict):
    shifts: list[str] = Field(default_factory=lambda: ["24/7"], description='working windows, e.g. "Mon-Fri 06:00-22:00" or "24/7"')
    utc_offset_h: float = Field(default=0.0, ge=-14, le=14, description="the plant's local time offset from UTC, in hours")


class TariffBand(_Strict):
    name: str = Field(min_length=1, max_length=32)
    windows: list[str] = Field(default_factory=list, description='when the band applies, e.g. "Mon-Fri 08:00-20:00"')
    hours: list[Annotated[int, Field(ge=0, le=23)]] = Field(default_factory=list, description="or: hours of the day it applies")
    price_per_kwh: float = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> TariffBand:
        if not self.windows and not self.hours:
            raise ValueError(f"band {self.name!r} applies at no time: give 'windows' or 'hours'")
        return self


class Tariffs(_Strict):
    """A time-of-use electricity tariff for cost figures (the first band whose windows cover a time gives its price)."""

    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    bands: list[TariffBand] = Field(default_factory=list)
    demand_charge_per_kw_month: float = Field(default=0.0, ge=0)


class Weather(_Strict):
    """The weather station whose outdoor conditions explain weather-driven loads (dry rooms, HVAC, cooling)."""

    device: DeviceId
    temperature: str = "outdoor_temperature"
    humidity: str | None = Field(default=None, description="e.g. outdoor_humidity")
    dew_point: str | None = Field(default=None, description="e.g. outdoor_dew_point")

    @field_validator("temperature", "humidity", "dew_point")
    @classmethod
    def _gauge(cls, v: str | None) -> str | None:
        if v is not None and v not in quantities.QUANTITIES:
            raise ValueError(f"unknown quantity {v!r}")
        return v


class MediumFactor(_Strict):
    """A site's own conversion of a medium to energy, replacing the documented default (analytics/media.py)."""

    kwh_per_unit: float | None = Field(ge=0, description="energy (or production cost) of one unit of the medium; null: none")
    source: str = Field(min_length=1, description="where the figure comes from: supplier certificate, standard, measurement")
    basis: str | None = None
    kgce_per_unit: float | None = Field(default=None, ge=0)
    medium: str | None = None
    unit: str | None = None


class PlantModel(_Strict):
    """A site's plant model (``plant.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"$id": SCHEMA_ID, "title": "carbonedge plant model"})

    site: Identifier = Field(description="the site name, as the gateways publish it (the InfluxDB 'site' tag)")
    plant: Literal["steel", "battery", "meter"] = Field(
        default="steel", description="kind of plant: picks the default products and regulatory reports (meter: one meter, no plant)")
    scenario: str | None = Field(default=None, description="the simulator scenario that wrote it, if any")
    sec_unit: str | None = Field(default=None, max_length=32,
                                 description="unit of specific energy consumption (default: kWh per unit of production_quantity)")
    energy_quantity: str = Field(default="active_energy_import", description="the counter summed for energy")
    production_quantity: str = Field(default="production_mass", description="the plant's production counter quantity")
    output_process: ProcessName | None = Field(default=None, description="the process whose production is the plant's product")
    processes: dict[ProcessName, Process] = Field(min_length=1)
    calendar: Calendar = Field(default_factory=Calendar)
    tariffs: Tariffs | None = None
    weather: Weather | None = None
    media: dict[str, MediumFactor] = Field(default_factory=dict, description="site conversion factors by counter quantity")

    @field_validator("energy_quantity")
    @classmethod
    def _eq(cls, v: str) -> str:
        _counter(v, "energy_quantity")
        if quantities.get(v).unit != "kWh":
            raise ValueError(f"energy_quantity must count kWh, not {quantities.get(v).unit}")
        return v

    @field_validator("production_quantity")
    @classmethod
    def _pq(cls, v: str) -> str:
        return _counter(v, "production_quantity")

    @field_validator("media")
    @classmethod
    def _media(cls, v: dict[str, MediumFactor]) -> dict[str, MediumFactor]:
        for q in v:
            _counter(q, f"media key {q!r}")
        return v

    @field_validator("tariffs", mode="before")
    @classmethod
    def _no_tariffs(cls, v: Any) -> Any:
        # An empty list or object means "no tariff" (older `plant init` skeletons wrote []).
        return None if v in ([], {}) else v

    @model_validator(mode="after")
    def _check(self) -> PlantModel:
        problems: list[str] = []
        if self.output_process is not None and self.output_process not in self.processes:
            problems.append(f"output_process {self.output_process!r} is not one of the processes ({', '.join(self.processes)})")
        seen: dict[str, str] = {}
        for name, p in self.processes.items():
            for key, devs in (("meters", p.meters), ("flow_meters", [f.device for f in p.flow_meters]), ("counters", p.counters)):
                for d in devs:
                    where = f"processes.{name}.{key}"
                    if d in seen:
                        problems.append(f"device {d!r} is in {seen[d]} and in {where}: it would be counted twice")
                    else:
                        seen[d] = where
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ------------------------------------------------------------------ reading

    @classmethod
    def coerce(cls, plant: PlantModel | Mapping[str, Any], source: str = "plant model") -> PlantModel:
        """``plant`` as a model: a model as is, a mapping (e.g. a parsed ``plant.json``) validated."""
        if isinstance(plant, PlantModel):
            return plant
        return cls.from_dict(plant, source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "plant model") -> PlantModel:
        """Validate parsed JSON; a bad model raises :class:`ConfigError` with its first problem on one line."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = _problems(exc)
            more = f" (and {len(problems) - 1} more: `carbonedge config check` lists them all)" if len(problems) > 1 else ""
            raise ConfigError(f"{source}: {problems[0]}{more}", code="plant.invalid") from None

    @classmethod
    def load(cls, path: str | Path) -> PlantModel:
        """Read and validate a ``plant.json``."""
        return cls.from_dict(_read(Path(path)), str(path))

    # ------------------------------------------------------------------ questions the analytics ask

    @property
    def sec_label(self) -> str:
        """The unit of specific energy consumption, e.g. ``kWh/t``."""
        return self.sec_unit or f"kWh/{quantities.get(self.production_quantity).unit}"

    def production_quantity_of(self, process: str) -> str:
        """The counter quantity of ``process``'s production: its own, else the one its unit implies, else the plant's."""
        p = self.processes[process]
        if p.production_quantity:
            return p.production_quantity
        if p.production_unit and p.production_unit != quantities.get(self.production_quantity).unit:
            return PRODUCTION_BY_UNIT[p.production_unit]
        return self.production_quantity

    def devices(self) -> list[str]:
        """Every device of every process, in file order."""
        return [d for p in self.processes.values() for d in p.devices()]

    def process_of(self, device: str) -> str | None:
        return next((n for n, p in self.processes.items() if device in p.devices()), None)

    def with_site(self, site: str) -> PlantModel:
        """The same plant under another site name (e.g. ``--site``), validated."""
        return PlantModel.from_dict({**self.to_dict(), "site": site}, f"site {site!r}")

    def to_dict(self) -> dict[str, Any]:
        """The model as ``plant.json`` holds it (fields the file did not set left out)."""
        return self.model_dump(mode="json", exclude_unset=True)


def _read(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: plant model not found (it is the plant.json written by `carbonedge sim`, `carbonedge generate` "
                          "or `carbonedge plant init`)", code="plant.missing")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the plant model: {exc}", code="plant.unreadable") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}", code="plant.invalid") from None


def _problems(exc: ValidationError) -> list[str]:
    """One ``key: reason`` line per problem."""
    out = []
    for e in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (a typo? the plant model's keys are in docs/plant-model.md)"
        elif e["type"] == "missing":
            msg = "missing"
        elif e["type"] == "string_pattern_mismatch":
            msg = (f"{e['input']!r} is not a valid name: letters, digits, '_', '.' and '-', up to 64 characters, "
                   "beginning with a letter or digit (it travels as an InfluxDB tag)")
        elif e["type"] == "literal_error":
            msg = f"{e['input']!r}: {msg[0].lower()}{msg[1:]}"
        out.append(f"{loc}: {msg}")
    return out


def check_file(path: str | Path) -> tuple[PlantModel | None, list[str]]:
    """Validate a plant file; return the model (or None) and every problem as ``file: key: reason``."""
    try:
        data = _read(Path(path))
    except ConfigError as exc:
        return None, [str(exc)]
    try:
        return PlantModel.model_validate(data), []
    except ValidationError as exc:
        return None, [f"{path}: {p}" for p in _problems(exc)]


def json_schema() -> dict[str, Any]:
    return PlantModel.model_json_schema()


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--write-schema"]:
        SCHEMA_PATH.write_text(schema_text())
        print(f"updated {SCHEMA_PATH}")
        return 0
    sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
