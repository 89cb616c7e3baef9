"""Injected faults with ground truth, and the ``labels.jsonl`` file that records them.

Three families, one label format (see ``docs/simulators.md``):

- **process faults** waste energy: they add power on top of what the process
  draws by itself and integrate that extra power exactly (``waste_kwh``). They
  draw from their own random stream, never the process's, so the process
  without the fault would have behaved identically: the extra energy *is* the
  difference to the no-fault counterfactual.
- **device faults** change what a meter or counter serves (frozen registers,
  counter reset, counter rollover, no answer); the plant and its truth are
  untouched, so ``waste_kwh`` is ``null``.
- **gateway clock faults** are not in the plant at all: the scenario exposes the
  clock the gateway should run with (:func:`gateway_clock`), and the label says
  what the gateway's timestamps will look like.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbonedge import profiles
from carbonedge.clock import iso
from carbonedge.errors import ConfigError

PROCESS_KINDS = (
    "compressed_air_leak",
    "idle_running",
    "eaf_abnormal_energy",
    "dryer_heater_degradation",
    "dryroom_dehumidifier_degradation",
    "formation_channel_fault",
)
DEVICE_KINDS = ("stuck_meter", "counter_reset", "counter_rollover", "comm_loss")
CLOCK_KINDS = ("clock_offset", "clock_step")
KINDS = PROCESS_KINDS + DEVICE_KINDS + CLOCK_KINDS

#: Which process (class attribute ``fault_role``) each process fault needs.
_ROLE = {
    "compressed_air_leak": "compressed_air",
    "eaf_abnormal_energy": "eaf",
    "dryer_heater_degradation": "dryer",
    "dryroom_dehumidifier_degradation": "dry_room",
    "formation_channel_fault": "formation",
}


@dataclass
class Fault:
    """One injected fault (any family). ``start``/``end`` are plant epoch seconds (``end`` may be None)."""

    id: str
    kind: str
    start: float
    end: float | None
    device: str | None = None
    process: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    waste_kwh: float | None = None
    expected_effect: str = ""
    #: Actual time of the event for faults the plant decides (a rollover happens when the counter wraps).
    observed_start: float | None = None

    def active(self, t: float) -> bool:
        return t >= self.start and (self.end is None or t < self.end)

    def ramp(self, t: float) -> float:
        """0 -> 1 over ``ramp_h`` hours after start (1 at once without a ramp)."""
        r = float(self.params.get("ramp_h", 0.0)) * 3600.0
        return 1.0 if r <= 0 else min(1.0, max(0.0, (t - self.start) / r))

    def label(self) -> dict[str, Any]:
        start = self.observed_start if self.observed_start is not None else self.start
        return {
            "id": self.id,
            "kind": self.kind,
            "device": self.device,
            "process": self.process,
            "start": iso(start),
            "end": iso(self.end) if self.end is not None else None,
            "expected_effect": self.expected_effect,
            "params": self.params,
            "waste_kwh": self.waste_kwh,
        }


# --------------------------------------------------------------------------- process faults


class ProcessFault(Fault):
    """Adds power to a process while active; :meth:`apply` returns that extra kW and integrates it."""

    def apply(self, proc: Any, t: float, dt: float, base_kw: float) -> float:
        if not self.active(t):
            return 0.0
        k = self.kind
        p = self.params
        extra = 0.0
        if k == "compressed_air_leak":
            leak = float(p["leak_nm3h"]) * self.ramp(t)
            proc.flows["air"] = proc.flows.get("air", 0.0) + leak
            extra = leak * proc.kwh_per_nm3
        elif k == "idle_running":
            if not proc.on_shift:
                extra = max(proc.idle_kw - proc.standby_kw, 0.0)
                proc.running = 1
        elif k == "eaf_abnormal_energy":
            # Every heat in the window needs more arc energy (wet scrap, poor foaming slag, electrode
            # breakage): extra power while arcing, same tap-to-tap (so the heat is simply costlier).
            if proc.running:
                extra = float(p.get("extra_fraction", 0.12)) * base_kw
        elif k == "dryer_heater_degradation":
            extra = float(p.get("extra_fraction", 0.25)) * self.ramp(t) * proc.heater_kw
        elif k == "dryroom_dehumidifier_degradation":
            extra = float(p.get("extra_fraction", 0.35)) * self.ramp(t) * proc.regen_kw
        elif k == "formation_channel_fault":
            extra = proc.channel_fault_kw(int(p.get("rack", 0)), float(p.get("channels", 8)))
        assert self.waste_kwh is not None
        self.waste_kwh += extra * dt / 3600.0
        return extra


# --------------------------------------------------------------------------- device faults


class DeviceFault(Fault):
    """Changes what a device serves; called once per plant step from :meth:`Device.update`."""

    def prepare(self, dev: Any, t0: float) -> None:
        """Before the first step: a rollover places the counter so that it wraps near ``start``."""
        if self.kind != "counter_rollover":
            return
        key, point = rollover_point(dev, self.params.get("point"))
        modulus = profiles.counter_modulus(point)
        assert modulus is not None
        rate = _nominal_rate_per_h(dev, key)
        live = dev.live_values()[key]
        expected_at_start = live + rate * (self.start - t0) / 3600.0
        # Never below zero: the counter must start inside its range.
        shift = max(modulus - expected_at_start, -live)
        for k in dev.counter_keys():
            if _same_counter(k, key):
                dev.counter_shift[k] = dev.counter_shift.get(k, 0.0) + shift
        self.params.setdefault("point", key)
        self.params["modulus"] = modulus
        self._key, self._modulus = key, modulus

    def update(self, dev: Any, t: float, dt: float) -> None:
        k = self.kind
        on = self.active(t)
        if k == "stuck_meter":
            if on and dev.frozen is None:
                dev.frozen = dict(dev.values())
            elif not on and dev.frozen is not None and t >= self.start:
                dev.frozen = None
        elif k == "counter_reset":
            if on and not getattr(self, "_done", False):
                self._done = True
                live = dev.live_values()
                for key in dev.counter_keys():
                    if key in live:
                        dev.counter_shift[key] = -live[key]
        elif k == "counter_rollover":
            if self.observed_start is None:
                v = dev.values()[self._key]
                if v >= self._modulus:
                    self.observed_start = t
        elif k == "comm_loss":
            dev.silent = on
            dev.silent_mode = str(self.params.get("mode", "timeout"))


def _same_counter(k: str, key: str) -> bool:
    # The PAC3200 serves import energy as tariff registers T1 (+ T2): T1 carries the meter's whole import.
    return k == key or (key == "active_energy_import" and k == "active_energy_import_t1")


def rollover_point(dev: Any, wanted: str | None) -> tuple[str, profiles.PointSpec]:
    """The unsigned-integer counter register of ``dev`` that a rollover fault wraps."""
    cands = [p for p in dev.profile.points if p.dtype.startswith("uint") and p.width <= 2 and dev.counter_keys().count(p.name)]
    if wanted:
        cands = [p for p in cands if p.name == wanted]
    if not cands:
        raise ConfigError(
            f"counter_rollover on {dev.device}: its meter model {dev.profile.name} has no 32-bit unsigned counter register"
            + (f" named {wanted!r}" if wanted else "")
            + " (64-bit and float counters never wrap in practice); put the fault on a device with a 32-bit counter, e.g. a "
            "generic-em-u32 meter or a flow meter's totalizer"
        )
    # Prefer the energy/volume totalizer over other counters.
    cands.sort(key=lambda p: 0 if p.name.startswith("active_energy_import") or p.name.endswith(("_volume", "_mass")) else 1)
    return cands[0].name, cands[0]


def _nominal_rate_per_h(dev: Any, key: str) -> float:
    proc = dev.process
    if key.startswith("active_energy"):
        share = getattr(dev, "share", 1.0)
        return float(proc.nominal_kw) * share
    if hasattr(dev, "medium"):
        return float(getattr(proc, "nominal_flows", {}).get(dev.medium, 0.0))
    return float(getattr(proc, "nominal_production_per_h", 0.0))


# --------------------------------------------------------------------------- building, labels


def effect_text(f: Fault) -> str:
    p = f.params
    k = f.kind
    if k == "compressed_air_leak":
        return (f"compressed-air demand rises by up to {p['leak_nm3h']:g} Nm3/h over {p.get('ramp_h', 0):g} h; the compressor "
                "meter's off-shift base load rises accordingly while production is stopped")
    if k == "idle_running":
        return f"{f.process} stays at its idle load instead of standby outside shifts; running = 1 while production is 0"
    if k == "eaf_abnormal_energy":
        return f"heats in the window take {100 * float(p.get('extra_fraction', 0.12)):.0f} % more arc energy; kWh per tonne tapped rises"
    if k == "dryer_heater_degradation":
        return f"coating-dryer heater power rises up to {100 * float(p.get('extra_fraction', 0.25)):.0f} % for the same output; kWh per kWh_cell of coating rises"
    if k == "dryroom_dehumidifier_degradation":
        return (f"dehumidifier regeneration power rises up to {100 * float(p.get('extra_fraction', 0.35)):.0f} % at the same dew point "
                "and outdoor humidity; dry-room base load rises around the clock")
    if k == "formation_channel_fault":
        r = int(p.get("rack", 0))
        return (f"{p.get('channels', 8)} channels of formation rack {r} (counted from 0; formation-rack-{r + 1:03d}-meter when racks "
                "are metered one by one) lose energy recovery and burn their discharge energy; the formation meter's net energy "
                "rises during discharge steps with the same cell output")
    if k == "stuck_meter":
        return "every register of the device holds its value from the fault start (power, energy counter frozen); values move again at the end, the counter jumps to its true value"
    if k == "counter_reset":
        return "the device's cumulative counters restart from 0 at the fault start (meter reset or swap); increments continue from there"
    if k == "counter_rollover":
        return f"the counter register {p.get('point', '')} wraps past its maximum ({p.get('modulus', 0):g}) to near 0 at the start; increments are continuous modulo the register range"
    if k == "comm_loss":
        mode = p.get("mode", "timeout")
        return ("the device does not answer (requests time out)" if mode == "timeout" else "the device answers every request with a Modbus exception (gateway path: no response)") + "; no readings in the window"
    if k == "clock_offset":
        return f"the gateway clock runs {p['offset_s']:+g} s off plant time in the window: its timestamps are shifted by that much"
    if k == "clock_step":
        return f"the gateway clock steps by {p['step_s']:+g} s at the start and stays stepped: timestamps jump (backwards if negative)"
    return ""


def build_faults(specs: list[dict[str, Any]], start: float, end: float) -> list[Fault]:
    """Turn scenario fault tables into :class:`Fault` objects (times may be ISO or offsets like ``"30h"``)."""
    from carbonedge.clock import parse_time
    from carbonedge.simulators.scenario import parse_duration

    def when(v: Any, name: str, i: int) -> float | None:
        if v is None:
            return None
        if isinstance(v, int | float):
            return start + float(v)
        text = str(v).strip()
        try:
            return parse_time(text)
        except ValueError:
            pass
        try:
            return start + parse_duration(text, name)
        except ConfigError:
            raise ConfigError(f"fault {i + 1}: {name} = {v!r} is neither an ISO 8601 time nor an offset from the scenario start like '30h' or '2d06h'") from None

    out: list[Fault] = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind not in KINDS:
            raise ConfigError(f"fault {i + 1}: unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
        fid = str(spec.pop("id", f"f{i + 1}"))
        s = when(spec.pop("start", None), "start", i)
        if s is None:
            raise ConfigError(f"fault {fid} ({kind}): needs a start")
        e = when(spec.pop("end", None), "end", i)
        if e is not None and e <= s:
            raise ConfigError(f"fault {fid} ({kind}): end must be after start")
        device, process = spec.pop("device", None), spec.pop("process", None)
        params = dict(spec.pop("params", {}))
        params.update(spec)  # allow params inline in the table
        cls = ProcessFault if kind in PROCESS_KINDS else DeviceFault if kind in DEVICE_KINDS else Fault
        f = cls(id=fid, kind=kind, start=s, end=e, device=device, process=process, params=params,
                waste_kwh=0.0 if kind in PROCESS_KINDS else None)
        if kind == "compressed_air_leak" and "leak_nm3h" not in params:
            raise ConfigError(f"fault {fid} (compressed_air_leak): set leak_nm3h, the leak flow reached at the end of the ramp")
        if kind == "clock_offset" and "offset_s" not in params:
            raise ConfigError(f"fault {fid} (clock_offset): set offset_s, how far the gateway clock is off (seconds, + ahead)")
        if kind == "clock_step" and "step_s" not in params:
            raise ConfigError(f"fault {fid} (clock_step): set step_s, the size of the clock step (seconds, - backwards)")
        if kind in DEVICE_KINDS and not device:
            raise ConfigError(f"fault {fid} ({kind}): set device, the id of the meter or counter it affects")
        if kind in PROCESS_KINDS and not process:
            raise ConfigError(f"fault {fid} ({kind}): set process, the process it affects")
        f.expected_effect = effect_text(f)
        out.append(f)
    ids = [f.id for f in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"fault ids must be unique; got {ids}")
    return out


def attach(faults: list[Fault], processes: list[Any], devices: list[Any], t0: float) -> None:
    """Wire each fault to its process or device, checking that it fits (clear errors otherwise)."""
    by_proc = {p.name: p for p in processes}
    by_dev = {d.device: d for d in devices}
    for f in faults:
        if isinstance(f, ProcessFault):
            proc = by_proc.get(f.process or "")
            if proc is None:
                raise ConfigError(f"fault {f.id} ({f.kind}): no process {f.process!r}; processes: {', '.join(by_proc)}")
            role = _ROLE.get(f.kind)
            if role and getattr(proc, "fault_role", None) != role:
                fits = [p.name for p in processes if getattr(p, "fault_role", None) == role]
                raise ConfigError(f"fault {f.id} ({f.kind}) does not fit process {proc.name}; it fits: {', '.join(fits) or 'no process of this plant'}")
            if f.kind == "idle_running" and (proc.calendar is None or proc.calendar.always):
                raise ConfigError(f"fault {f.id} (idle_running): {proc.name} runs around the clock in this scenario, so it is never off-shift; "
                                  "give it shifts in [calendar] or pick a shift-following process")
            proc.faults.append(f)
        elif isinstance(f, DeviceFault):
            dev = by_dev.get(f.device or "")
            if dev is None:
                raise ConfigError(f"fault {f.id} ({f.kind}): no device {f.device!r}; devices: {', '.join(sorted(by_dev))}")
            f.process = dev.process.name
            dev.device_faults.append(f)
            f.prepare(dev, t0)
            f.expected_effect = effect_text(f)


def gateway_clock(faults: list[Fault]) -> dict[str, Any]:
    """What the gateway's clock should do in this scenario (for tests and demos that start a gateway)."""
    events = []
    for f in faults:
        if f.kind == "clock_offset":
            events.append({"kind": "offset", "offset_s": float(f.params["offset_s"]), "start": iso(f.start), "end": iso(f.end) if f.end else None})
        elif f.kind == "clock_step":
            events.append({"kind": "step", "step_s": float(f.params["step_s"]), "at": iso(f.start)})
    return {"events": events}


def gateway_time(faults: list[Fault], t: float) -> float:
    """The timestamp a gateway with this scenario's clock faults puts on a reading taken at plant time ``t``."""
    out = t
    for f in faults:
        if f.kind == "clock_offset" and f.active(t):
            out += float(f.params["offset_s"])
        elif f.kind == "clock_step" and t >= f.start:
            out += float(f.params["step_s"])
    return out


def write_labels(path: Path, faults: list[Fault]) -> None:
    with path.open("w") as fh:
        for f in faults:
            rec = f.label()
            if rec["waste_kwh"] is not None:
                rec["waste_kwh"] = round(float(rec["waste_kwh"]), 6)
            fh.write(json.dumps(rec, sort_keys=False) + "\n")


def read_labels(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

