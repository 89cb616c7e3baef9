"""What every check of the monitor shares: its settings, the plant's processes as the checks see them, small helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

from carbonedge.plant import PlantModel

#: Counter quantities that carry energy or media (checked for resets, rollovers, stuck).
ENERGY_Q = "active_energy_import"
POWER_Q = "active_power"
PRODUCTION_QS = ("production_mass", "production_count", "production_capacity")
#: Flow-meter totalizer → its flow gauge.
FLOW_OF = {"gas_volume": "gas_flow", "oxygen_volume": "oxygen_flow", "steam_mass": "steam_flow", "water_volume": "water_flow", "air_volume": "air_flow"}


@dataclass(frozen=True)
class MonitorSettings:
    """Tuning of :class:`PlantMonitor` (defaults are meant to work untuned).

    ``learn_hours``: normal operation to learn from. ``windows_min``: averaging windows of the
    excess-power check. ``margin``: threshold as a multiple of the largest learning-period excess.
    ``stuck_polls``: polls a counter must stand still, with its power/flow frozen, to call it stuck.
    ``comm_loss_polls``: missed polls before a silent device is reported.
    ``comm_loss_group_min``: this many devices falling silent in the same poll are one alert (the
    gateway, its network or a shared bus, not that many meter faults).
    """

    learn_hours: float = 24.0
    windows_min: tuple[float, ...] = (5.0, 15.0, 60.0, 240.0)
    margin: float = 1.5
    stuck_polls: int = 3
    comm_loss_polls: float = 2.5
    comm_loss_group_min: int = 3
    min_excess_fraction: float = 0.05  # never alert on less than 5 % of the process's mean power (meter class 0.5–1 plus load noise)
    idle_min_minutes: float = 60.0  # running without producing is normal for at least this long
    confirm_polls: int = 3  # consecutive polls over threshold before an alert opens (shift-start transients)
    resolve_minutes: float = 30.0  # an energy alert resolves after this long back in the normal range (no flapping between heats)
    stop_settle_minutes: float = 30.0  # a line that just stopped still runs down (auxiliaries, heaters, short stops): judge standby after this
    #: Forward clock jumps shorter than this are not reported. 0 on real plants; an accelerated
    #: simulation (demo at 1440x) sets it, because a simulator that falls a few wall milliseconds behind
    #: its clock under load serves values up to a minute or two of plant time old, which looks exactly
    #: like a gateway clock jumping forward.
    clock_jump_min_s: float = 0.0
    #: Outdoor conditions (the plant's weather station) enter a process's expected power only when they
    #: explain at least this share of its learning-period residual variance (R²).
    weather_min_r2: float = 0.3
    #: Learning covers one day's weather: the weather term is held at its value this far (°C, or half the
    #: learned range if wider) beyond the temperatures and dew points seen while learning.
    weather_margin_c: float = 3.0
    #: A weather reading older than this no longer counts (the station stopped answering): fall back to
    #: the production-state model without weather.
    weather_max_age_s: float = 600.0
    #: The weather term keeps learning after the learning period: every this many hours it is fitted
    #: again on every calm, clean interval so far (15-min means, the last ``weather_window_days``), so
    #: a term first fitted on one day's weather is replaced by one fitted on several days' weather.
    weather_refit_hours: float = 24.0
    weather_window_days: float = 14.0


# --------------------------------------------------------------------------- plant model


@dataclass
class Proc:
    name: str
    area: str
    meters: list[str]
    counters: list[str]
    production_q: str = "production_mass"
    flow_meters: list[str] = field(default_factory=list)
    follows: str | None = None  # "plant" for utilities without their own production counter


def procs_of(plant: PlantModel) -> dict[str, Proc]:
    out: dict[str, Proc] = {}
    for name, spec in plant.processes.items():
        flows = [f.device for f in spec.flow_meters]
        p = Proc(name, spec.area, list(spec.meters), list(spec.counters), plant.production_quantity_of(name), flows)
        if not p.counters:
            p.follows = "plant"  # utilities: the plant's production state (any line producing)
        out[name] = p
    return out


def fmt_ms(t_ms: int) -> str:
    from carbonedge.clock import iso

    return iso(t_ms / 1000.0)


def names(devices: list[str], most: int = 6) -> str:
    """``a, b, c and 4 more``: a readable list of device names."""
    shown = ", ".join(devices[:most])
    return shown if len(devices) <= most else f"{shown} and {len(devices) - most} more"


def score01(x: float) -> float:
    return float(x / (1.0 + x))
