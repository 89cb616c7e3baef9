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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbonedge.clock import parse_time
from carbonedge.errors import ConfigError

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
        known = {"scenario", "plant", "calendar", "tariffs", "faults"}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"scenario {source}: unknown table(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        sc = dict(d.get("scenario", {}))
        if "plant" not in sc:
            raise ConfigError(f"scenario {source}: [scenario] needs plant = \"steel\" or \"battery\"")
        cal = dict(d.get("calendar", {}))
        try:
            start = parse_time(str(sc.get("start", "2026-01-05T00:00:00Z")))
        except ValueError:
            raise ConfigError(f"scenario {source}: start = {sc.get('start')!r} is not an ISO 8601 time") from None
        allowed = {"name", "plant", "seed", "start", "duration", "speed", "poll_interval", "site"}
        extra = set(sc) - allowed
        if extra:
            raise ConfigError(f"scenario {source}: unknown key(s) in [scenario]: {', '.join(sorted(extra))}; known: {', '.join(sorted(allowed))}")
        cal_extra = set(cal) - {"shifts", "processes", "utc_offset_h"}
        if cal_extra:
            raise ConfigError(f"scenario {source}: unknown key(s) in [calendar]: {', '.join(sorted(cal_extra))}; known: processes, shifts, utc_offset_h")
        shifts = cal.get("shifts")
        return cls(
            plant=str(sc["plant"]),
            seed=int(sc.get("seed", 7)),
            start=start,
            duration_s=parse_duration(sc.get("duration", "24h"), "duration"),
            speed=float(sc.get("speed", 1.0)),
            poll_interval_s=parse_duration(sc.get("poll_interval", "60s"), "poll_interval"),
            site=str(sc.get("site", "")),
            name=str(sc.get("name", Path(source).stem if source else "")),
            options=dict(d.get("plant", {})),
            shifts=[shifts] if isinstance(shifts, str) else (list(shifts) if shifts is not None else None),
            shift_processes=list(cal["processes"]) if "processes" in cal else None,
            utc_offset_h=float(cal.get("utc_offset_h", 0.0)),
            tariffs=dict(d.get("tariffs", {})),
            faults=[dict(f) for f in d.get("faults", [])],
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        from carbonedge.clock import iso

        return {
            "name": self.name, "plant": self.plant, "seed": self.seed, "start": iso(self.start), "duration_s": self.duration_s,
            "speed": self.speed, "poll_interval_s": self.poll_interval_s, "site": self.site, "options": self.options,
            "shifts": self.shifts, "shift_processes": self.shift_processes, "utc_offset_h": self.utc_offset_h,
            "tariffs": self.tariffs, "faults": self.faults,
        }


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a bundled scenario by name (``steel-default``) or a scenario TOML file by path."""
    p = Path(name_or_path)
    if not p.exists():
        bundled = SCENARIO_DIR / f"{name_or_path}.toml"
        if not bundled.exists():
            raise ConfigError(f"no scenario file {str(name_or_path)!r} and no bundled scenario of that name; bundled: {', '.join(bundled_scenarios())}")
        p = bundled
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario {p}: not valid TOML: {exc}") from None
    return Scenario.from_dict(data, source=str(p))


def bundled_scenarios() -> list[str]:
    return sorted(f.stem for f in SCENARIO_DIR.glob("*.toml"))
