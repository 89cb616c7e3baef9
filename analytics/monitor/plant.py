""":class:`PlantMonitor`: the checks composed, fed one poll cycle at a time, with its state as JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields
from typing import Any

from carbonedge.analytics.alerts import SEVERITIES, Alert, AlertBook, AlertEvent
from carbonedge.analytics.monitor import state as S
from carbonedge.analytics.monitor.clock import ClockCheck
from carbonedge.analytics.monitor.energy import EnergyCheck
from carbonedge.analytics.monitor.meters import MeterDataCheck
from carbonedge.analytics.monitor.settings import ENERGY_Q, MonitorSettings, procs_of
from carbonedge.analytics.monitor.weather import WeatherCheck
from carbonedge.plant import PlantModel


def plant_fingerprint(plant: PlantModel | dict[str, Any]) -> str:
    """What the learned state depends on in the plant model: its processes and its weather station."""
    d = PlantModel.coerce(plant).to_dict()
    doc = {"processes": d.get("processes", {}), "weather": d.get("weather")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PlantMonitor:
    """Feed poll cycles in time order; get alert transitions back. See the package docstring.

    The checks, in the order they run on each cycle: :class:`MeterDataCheck` (counters through the
    kernel's arithmetic, stuck meters, silent devices), :class:`ClockCheck` (the gateway's clock),
    :class:`WeatherCheck` (the weather station) and :class:`EnergyCheck` (each process against its
    production-state model, with the weather term of weather-driven loads). A cycle's intervals
    that a meter or clock fault touches stay out of the energy check.
    """

    def __init__(self, plant: PlantModel | dict[str, Any], settings: MonitorSettings | None = None, *, site: str | None = None) -> None:
        self.plant = plant = PlantModel.coerce(plant)
        self.site = site or plant.site
        self.s = settings or MonitorSettings()
        self.procs = procs_of(plant)
        self.proc_of_device: dict[str, str] = {}
        for p in self.procs.values():
            for d in p.meters + p.counters + p.flow_meters:
                self.proc_of_device[d] = p.name
        self.alerts = AlertBook(self.site)
        self.weather = WeatherCheck(plant, self.s)
        if self.weather.device:
            self.proc_of_device.setdefault(self.weather.device, "plant")
        self.meters = MeterDataCheck(self.s, self.proc_of_device)
        self.clock = ClockCheck(self.s)
        self.energy = EnergyCheck(self.procs, self.s, self.alerts, self.meters, self.weather)
        self.t0: int | None = None
        self.learning = True

    # ------------------------------------------------------------------ views used by reports and tests

    @property
    def models(self) -> dict[str, Any]:
        """Each process's learned energy model (after learning)."""
        return self.energy.models

    @property
    def poll_s(self) -> float | None:
        return self.clock.poll_s

    @property
    def clock_events(self) -> int:
        return self.clock.events

    def weather_now(self, t_ms: int) -> Any:
        """Outdoor conditions at ``t_ms`` (one value per weather input), or None without a recent reading."""
        return self.weather.now(t_ms)

    def process_totals(self) -> dict[str, tuple[float, float | None]]:
        """Per process: ``(energy kWh, production)`` counted since the monitor started (the kernel's
        increments of its meters and production counters; production ``None`` for utilities)."""
        counted = self.meters.counted
        out: dict[str, tuple[float, float | None]] = {}
        for name, p in self.procs.items():
            e = sum(counted.get((m, ENERGY_Q), 0.0) for m in p.meters)
            prod = sum(counted.get((c, p.production_q), 0.0) for c in p.counters) if p.counters else None
            out[name] = (e, prod)
        return out

    # ------------------------------------------------------------------ one cycle

    def step(self, t_ms: int, readings: dict[str, dict[str, float]], *, missing_cycles: int = 0) -> list[AlertEvent]:
        """Process one poll cycle: ``readings[device][quantity] = value`` (canonical units).

        ``missing_cycles``: how many of the gateway's cycles (by sequence number) are missing
        before this one, when the feeder knows. Cycles missing over less time than they would
        take were overwritten in the database by later cycles stamped with the same times: the
        gateway clock stepped back.
        """
        events: list[AlertEvent] = []
        if self.t0 is None:
            self.t0 = t_ms
        self.meters.learn(t_ms, readings)
        clock_bad = self.clock.score(t_ms, readings, self.meters, self.alerts, events, missing_cycles, learning=self.learning)
        bad = self.meters.score(t_ms, readings, self.clock.poll, self.alerts, events)
        self.weather.learn(t_ms, readings)
        self.energy.score(t_ms, self.clock.last_cycle_ms, readings, bad | ({"*"} if clock_bad else set()), events)
        self.meters.commit(t_ms, readings)
        # Follow the gateway's clock even after a jump: one alert per jump, not one per later poll.
        self.clock.last_cycle_ms = t_ms
        if self.learning and t_ms - self.t0 >= self.s.learn_hours * 3_600_000:
            self.learning = False
            self.clock.learn()
            self.energy.learn(self.clock.poll_s or 60.0)
        return events

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """Everything the monitor learned and tracks, as JSON-able values (see :mod:`.state`)."""
        book = self.alerts
        return {"site": self.site, "plant": plant_fingerprint(self.plant), "t0": self.t0, "learning": self.learning,
                "alerts": {"open": [[list(k), _alert_to_state(a)] for k, a in book.open_alerts.items()],
                           "last_emit": [[aid, ts, sev, S.enc(w)] for aid, (ts, sev, w) in book._last_emit.items()]},
                "checks": {"meters": self.meters.to_state(), "clock": self.clock.to_state(), "weather": self.weather.to_state(),
                           "energy": self.energy.to_state()}}

    @classmethod
    def from_state(cls, plant: PlantModel | dict[str, Any], doc: Any, settings: MonitorSettings | None = None) -> PlantMonitor:
        """A monitor for ``plant`` continuing from ``doc`` (:meth:`to_state`); :class:`state.StateInvalid` names what is wrong."""
        d = S.obj(doc, "monitor", ("site", "plant", "t0", "learning", "alerts", "checks"))
        if d["plant"] != plant_fingerprint(plant):
            raise S.StateInvalid("monitor.plant: the plant model's processes, meters or weather station changed since this state was written")
        mon = cls(plant, settings, site=S.text(d["site"], "monitor.site"))
        mon.t0 = S.opt_int(d["t0"], "monitor.t0")
        mon.learning = S.boolean(d["learning"], "monitor.learning")
        al = S.obj(d["alerts"], "monitor.alerts", ("open", "last_emit"))
        for i, x in enumerate(S.seq(al["open"], "monitor.alerts.open")):
            x = S.seq(x, f"monitor.alerts.open[{i}]", 2)
            key = _key_from_state(x[0], f"monitor.alerts.open[{i}][0]")
            mon.alerts.open_alerts[key] = _alert_from_state(x[1], f"monitor.alerts.open[{i}][1]")
        for i, x in enumerate(S.seq(al["last_emit"], "monitor.alerts.last_emit")):
            x = S.seq(x, f"monitor.alerts.last_emit[{i}]", 4)
            w = f"monitor.alerts.last_emit[{i}]"
            mon.alerts._last_emit[S.text(x[0], w)] = (S.integer(x[1], w), S.text(x[2], w), S.num(x[3], w, finite=True))
        ch = S.obj(d["checks"], "monitor.checks", ("meters", "clock", "weather", "energy"))
        mon.meters.load_state(ch["meters"], "monitor.checks.meters")
        mon.clock.load_state(ch["clock"], "monitor.checks.clock")
        mon.weather.load_state(ch["weather"], "monitor.checks.weather")
        mon.energy.load_state(ch["energy"], "monitor.checks.energy")
        if mon.learning != mon.energy.learning:
            raise S.StateInvalid("monitor.learning: the monitor and its energy check disagree on whether learning has ended")
        return mon


_KEY_KINDS = {"energy": str, "comm_loss": str, "stuck_meter": str, "comm_loss_group": int}


def _key_from_state(v: Any, where: str) -> tuple[str, Any]:
    k = S.seq(v, where, 2)
    kind = S.text(k[0], f"{where}[0]", choices=tuple(_KEY_KINDS))
    sub = S.integer(k[1], f"{where}[1]") if _KEY_KINDS[kind] is int else S.text(k[1], f"{where}[1]")
    return (kind, sub)


def _alert_to_state(a: Alert) -> dict[str, Any]:
    d = asdict(a)
    d["score"], d["wasted_kwh"] = S.enc(a.score), S.enc(a.wasted_kwh)
    return d


def _alert_from_state(v: Any, where: str) -> Alert:
    names = tuple(f.name for f in fields(Alert))
    d = S.obj(v, where, names)
    extra = sorted(set(d) - set(names))
    if extra:
        raise S.StateInvalid(f"{where}: unknown field {extra[0]}")
    return Alert(S.text(d["alert_id"], f"{where}.alert_id"), S.text(d["site"], f"{where}.site"), S.text(d["process"], f"{where}.process"),
                 S.opt_text(d["device"], f"{where}.device"), S.text(d["kind"], f"{where}.kind"),
                 S.text(d["severity"], f"{where}.severity", choices=SEVERITIES), S.text(d["state"], f"{where}.state", choices=("open", "update")),
                 S.integer(d["opened_ms"], f"{where}.opened_ms"), S.integer(d["updated_ms"], f"{where}.updated_ms"), S.text(d["message"], f"{where}.message"),
                 S.num(d["score"], f"{where}.score", finite=True), S.opt_num(d["wasted_kwh"], f"{where}.wasted_kwh", finite=True),
                 S.opt_int(d["resolved_ms"], f"{where}.resolved_ms"))
