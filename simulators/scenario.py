"""Scenarios: a plant, its size, calendar, tariffs, faults, seed, duration and time acceleration, in one TOML file.

A scenario file looks like this (every table but ``[scenario]`` is optional)::

    [scenario]
    name = "battery-week-faults"
    plant = "battery"            # steel | battery
    seed = 11
    start = "2026-01-05T00:00:00Z"
    duration = "7d"              # 90s, 15m, 24h, 7d
    speed = 1440                 # plant seconds per wall second for `carbonedge sim` (1 = real time)
    poll_interval = "60s"        # what the gateway config and the offline generator use
    site = "cells-a"

    [plant]                      # plant options (see docs/simulators.md)
    size = 1.0
    dew_point_c = -40

    [calendar]
    utc_offset_h = 1
    shifts = ["Mon-Fri 06:00-22:00"]   # shift-following processes stop outside these windows

    [tariffs]                    # copied into plant.json for cost figures
    currency = "EUR"
    bands = [{ name = "peak", windows = ["Mon-Fri 08:00-20:00"], price_per_kwh = 0.21 },
             { name = "offpeak", windows = ["24/7"], price_per_kwh = 0.12 }]

    [[faults]]
    kind = "compressed_air_leak"
    process = "compressed_air"
    start = "2d"                 # ISO 8601 time or offset from the scenario start
    end = "6d"
    leak_nm3h = 300
    ramp_h = 48

The bundled scenarios live in ``simulators/scenarios/``; :func:`load_scenario`
takes a bundled name (``"battery-default"``) or a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from carbonedge.clock import parse_time
from carbonedge.errors import ConfigError
from carbonedge.settings import SettingsModel

SCENARIO_DIR = Path(__file__).parent / "scenarios"
PLANTS = ("steel", "battery")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")


def parse_duration(value: Any, what: str) -> float:
    """90s, 15m, 24h, 7d, compounds like 2d06h or 1h30m, or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = str(value).strip().lower().lstrip("+")
    try:
        return float(t)
    except ValueError:
        pass
    parts = _DURATION.findall(t)
    if not parts or "".join(n + u for n, u in parts) != t.replace(" ", ""):
        raise ConfigError(f"{what} = {value!r} is not a duration (write e.g. 90s, 15m, 24h, 7d or 2d06h)")
    return sum(float(n) * units[u] for n, u in parts)


@dataclass
class Scenario:
    """Everything that defines one simulated run. Same scenario, same seed: same plant, bit for bit."""

    plant: str
    seed: int = 7
    start: float = 1767571200.0  # 2026-01-05T00:00:00Z, a Monday
    duration_s: float = 86400.0
    speed: float = 1.0
    poll_interval_s: float = 60.0
    site: str = ""
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    shifts: list[str] | None = None  # None: every process runs around the clock
    shift_processes: list[str] | None = None  # None: the plant's default shift-following processes
    utc_offset_h: float = 0.0
    tariffs: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        if self.plant not in PLANTS:
            raise ConfigError(f"scenario {self.name or self.source}: unknown plant {self.plant!r}; known plants: {', '.join(PLANTS)}")
        if self.duration_s <= 0:
            raise ConfigError(f"scenario {self.name}: duration must be positive")
        if self.poll_interval_s <= 0:
            raise ConfigError(f"scenario {self.name}: poll_interval must be positive")
        if not self.site:
            self.site = f"sim-{self.plant}"
        if not self.name:
            self.name = f"{self.plant}-seed{self.seed}"

    @property
    def end(self) -> float:
        return self.start + self.duration_s

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "") -> Scenario:
        """A scenario from a parsed scenario file, validated by :class:`ScenarioFile` (every problem, one line each)."""
        from carbonedge import settings

        return settings.validate(ScenarioFile, d, source=source or "scenario").to_scenario(source)

    def to_dict(self) -> dict[str, Any]:
        from carbonedge.clock import iso

        return {
            "name": self.name, "plant": self.plant, "seed": self.seed, "start": iso(self.start), "duration_s": self.duration_s,
            "speed": self.speed, "poll_interval_s": self.poll_interval_s, "site": self.site, "options": self.options,
            "shifts": self.shifts, "shift_processes": self.shift_processes, "utc_offset_h": self.utc_offset_h,
            "tariffs": self.tariffs, "faults": self.faults,
        }


def _duration(value: Any) -> float:
    try:
        return parse_duration(value, "value")
    except ConfigError:
        raise ValueError(f"{value!r} is not a duration (write e.g. 90s, 15m, 24h, 7d or 2d06h)") from None


#: A duration in a scenario file: 90s, 15m, 24h, 7d, 2d06h or seconds.
DurationS = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class ScenarioSection(SettingsModel):
    plant: str
    name: str = ""
    seed: int = Field(default=7, ge=0)
    start: float = Field(default=1767571200.0, description="ISO 8601 time (default 2026-01-05T00:00:00Z, a Monday)")
    duration: DurationS = 86400.0
    speed: float = Field(default=1.0, gt=0)
    poll_interval: DurationS = 60.0
    site: str = ""

    @field_validator("plant")
    @classmethod
    def _plant(cls, v: str) -> str:
        if v not in PLANTS:
            raise ValueError(f"unknown plant {v!r}; known plants: {', '.join(PLANTS)}")
        return v

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> float:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        try:
            return parse_time(str(v))
        except ValueError:
            raise ValueError(f"{str(v)!r} is not an ISO 8601 time") from None


class CalendarSection(SettingsModel):
    #: Shift windows ("Mon-Fri 06:00-22:00"); shift-following processes stop outside them.
    shifts: list[str] | None = None
    #: Processes that follow the shifts (default: the plant's).
    processes: list[str] | None = None
    utc_offset_h: float = Field(default=0.0, ge=-14, le=14)

    @field_validator("shifts", mode="before")
    @classmethod
    def _one_shift(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class ScenarioFile(SettingsModel):
    """A scenario TOML file. ``[plant]`` options and ``[[faults]]`` depend on the plant and the fault kind: the
    simulation checks them when it is built (``carbonedge config check`` does both)."""

    scenario: ScenarioSection
    plant: dict[str, Any] = {}
    calendar: CalendarSection = CalendarSection()
    tariffs: dict[str, Any] = {}
    faults: list[dict[str, Any]] = []

    def to_scenario(self, source: str = "") -> Scenario:
        sc, cal = self.scenario, self.calendar
        return Scenario(
            plant=sc.plant, seed=sc.seed, start=sc.start, duration_s=sc.duration, speed=sc.speed, poll_interval_s=sc.poll_interval,
            site=sc.site, name=sc.name or (Path(source).stem if source else ""), options=dict(self.plant), shifts=cal.shifts,
            shift_processes=cal.processes, utc_offset_h=cal.utc_offset_h, tariffs=dict(self.tariffs), faults=[dict(f) for f in self.faults],
            source=source,
        )


def scenario_path(name_or_path: str | Path) -> Path:
    """The file of a bundled scenario name (``steel-default``) or a scenario file path."""
    p = Path(name_or_path)
    if not p.exists():
        bundled = SCENARIO_DIR / f"{name_or_path}.toml"
        if not bundled.exists():
            raise ConfigError(f"no scenario file {str(name_or_path)!r} and no bundled scenario of that name; bundled: {', '.join(bundled_scenarios())}")
        p = bundled
    return p


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a bundled scenario by name (``steel-default``) or a scenario TOML file by path (with ``CARBONEDGE_SIMULATOR__...``
    environment overrides, :mod:`carbonedge.settings`)."""
    from carbonedge import settings

    p = scenario_path(name_or_path)
    return settings.load(ScenarioFile, p, kind="simulator").to_scenario(str(p))


def bundled_scenarios() -> list[str]:
    return sorted(f.stem for f in SCENARIO_DIR.glob("*.toml"))
