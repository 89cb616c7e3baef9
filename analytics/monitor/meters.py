"""Meter-data check: counter rollovers and resets, stuck meters, devices that stop answering.

Counters go through the kernel's counter arithmetic (:mod:`carbonedge.energy`, the same code as
the gateway and every report): a counter that went backwards is a *rollover* when the wrapped
increment at a meter profile's register range is plausible for the elapsed time, otherwise a
*reset* (or a reading out of order). An energy or volume counter that stops while its own power or
flow reading says the load is running, with that reading frozen bit for bit, is a *stuck meter*; a
device that stopped answering while the rest of its gateway answers is *comm loss* (several at
once: one alert for the gateway, its network or a shared bus). Devices touched by any of these in a
cycle are returned as *bad*, so the energy check leaves their intervals out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from carbonedge import energy, quantities
from carbonedge.analytics.alerts import AlertBook, AlertEvent
from carbonedge.analytics.monitor import state as S
from carbonedge.analytics.monitor.settings import ENERGY_Q, FLOW_OF, POWER_Q, MonitorSettings, fmt_ms, names


@dataclass
class _CounterState:
    k: energy.CounterState | None = None  # the kernel's counter state
    still: int = 0  # consecutive polls without increase while its load reading says running
    stuck_alert: bool = False


@dataclass
class _DeviceState:
    last_seen_ms: int | None = None
    last_values: dict[str, float] = field(default_factory=dict)
    counters: dict[str, _CounterState] = field(default_factory=dict)
    silent: bool = False
    catch_up: bool = False  # next interval spans a stuck or silent stretch
    group: int | None = None  # opening time of the alert for the devices that fell silent together with this one


class MeterDataCheck:
    """Per device: the kernel's counter steps, stuck counters and silent devices (see the module docstring)."""

    name = "meters"

    def __init__(self, settings: MonitorSettings, proc_of_device: dict[str, str]) -> None:
        self.s = settings
        self.proc_of_device = proc_of_device
        self.devices: dict[str, _DeviceState] = {}
        self.silent_groups: dict[int, set[str]] = {}
        #: Everything each counter counted since the monitor started, per (device, quantity).
        self.counted: dict[tuple[str, str], float] = {}
        #: This cycle's counter steps, per device and quantity (transient).
        self.steps: dict[str, dict[str, energy.Step]] = {}
        self._specs: dict[str, energy.CounterSpec] = {}

    # ------------------------------------------------------------------ learn: fold readings into counter states

    def learn(self, t_ms: int, readings: dict[str, dict[str, float]]) -> None:
        """Fold this cycle's counter readings into the kernel's counter states (:mod:`carbonedge.energy`)."""
        self.steps = {}
        for d, vals in readings.items():
            st = self.devices.setdefault(d, _DeviceState())
            out: dict[str, energy.Step] = {}
            for q, v in vals.items():
                if q not in quantities.QUANTITIES or quantities.QUANTITIES[q].kind != "counter" or v is None or not math.isfinite(v):
                    continue
                cs = st.counters.setdefault(q, _CounterState())
                if cs.k is None:
                    cs.k = energy.CounterState.start(float(v), t_ms)
                    continue
                spec = self._specs.get(q)
                if spec is None:
                    spec = self._specs[q] = energy.CounterSpec.for_quantity(q)
                k = energy.step(cs.k, float(v), t_ms, spec)
                out[q] = k
                if k.delta:
                    self.counted[(d, q)] = self.counted.get((d, q), 0.0) + k.delta
            if out:
                self.steps[d] = out

    def commit(self, t_ms: int, readings: dict[str, dict[str, float]]) -> None:
        """Remember this cycle's values (the next cycle compares against them)."""
        for d, vals in readings.items():
            st = self.devices[d]
            st.last_values = dict(vals)
            st.last_seen_ms = t_ms

    # ------------------------------------------------------------------ score

    def _open_comm_loss(self, t_ms: int, d: str, alerts: AlertBook, events: list[AlertEvent]) -> None:
        since = self.devices[d].last_seen_ms
        events += alerts.open(t_ms, kind="comm_loss", process=self.proc_of_device.get(d, "plant"), device=d, severity="major",
                              message=f"{d} has not answered since {fmt_ms(since) if since else '?'}; its consumption in the gap is "
                              "recovered from its counters when it answers again.", key=("comm_loss", d))

    def score(self, t_ms: int, readings: dict[str, dict[str, float]], poll: float | None, alerts: AlertBook,
              events: list[AlertEvent]) -> set[str]:
        """Check every device for this cycle; returns the devices whose interval must stay out of the energy checks."""
        bad: set[str] = set()
        # Silent devices: known, but absent from cycles where others answer.
        newly: list[str] = []
        for d, st in self.devices.items():
            if d in readings or st.last_seen_ms is None or poll is None:
                continue
            if not st.silent and (t_ms - st.last_seen_ms) / 1000.0 > self.s.comm_loss_polls * poll:
                st.silent = True
                st.catch_up = True
                newly.append(d)
        newly.sort()
        if len(newly) >= max(2, self.s.comm_loss_group_min):
            self.silent_groups[t_ms] = set(newly)
            for d in newly:
                self.devices[d].group = t_ms
            since = min(self.devices[d].last_seen_ms or t_ms for d in newly)
            events += alerts.open(t_ms, kind="comm_loss", process="plant", device=None, severity="major", key=("comm_loss_group", t_ms),
                                  message=f"{len(newly)} devices stopped answering together since {fmt_ms(since)} ({names(newly)}): "
                                  "check the gateway, its network and the meters' shared bus first. Their consumption in the gap "
                                  "is recovered from their counters when they answer again.")
        else:
            for d in newly:
                self._open_comm_loss(t_ms, d, alerts, events)
        back: set[int] = set()
        for d in readings:
            st = self.devices.setdefault(d, _DeviceState())
            if st.silent:
                st.silent = False
                if st.group is None:
                    events += alerts.resolve(t_ms, ("comm_loss", d), note=f"{d} answers again")
                else:
                    self.silent_groups.get(st.group, set()).discard(d)
                    back.add(st.group)
                    st.group = None
        for g in sorted(back):
            left = self.silent_groups.get(g, set())
            if len(left) >= max(2, self.s.comm_loss_group_min):
                continue
            # Most are back: close the group's alert; whoever is still silent gets an alert of its own.
            self.silent_groups.pop(g, None)
            events += alerts.resolve(t_ms, ("comm_loss_group", g), note="all answer again" if not left else f"answering again except {names(sorted(left))}")
            for d in sorted(left):
                self.devices[d].group = None
                self._open_comm_loss(t_ms, d, alerts, events)
        for d, vals in readings.items():
            st = self.devices[d]
            proc = self.proc_of_device.get(d, "plant")
            if st.catch_up:
                bad.add(d)
                st.catch_up = False
            for q, k in self.steps.get(d, {}).items():
                cs = st.counters.setdefault(q, _CounterState())
                if k.event is not None and k.event.kind == energy.ROLLOVER_EVENT:
                    bad.add(d)
                    det = k.event.detail
                    events += alerts.pulse(t_ms, kind="counter_rollover", process=proc, device=d, severity="info",
                                           message=f"{d} {q} rolled over at {det['modulus']:,.6g} (register range); the increment {det['delta']:,.3f} is counted, nothing lost.")
                elif k.event is not None and k.event.kind == energy.RESET_EVENT:
                    bad.add(d)
                    counted = f"{k.delta:,.3f} counted across it" if k.delta else "the increase across it is unknown and counted as zero"
                    events += alerts.pulse(t_ms, kind="counter_reset", process=proc, device=d, severity="minor",
                                           message=f"{d} {q} went back from {k.event.detail['raw_before']:,.3f} to {k.event.detail['raw_after']:,.3f}: "
                                                   f"counter reset or meter swap; {counted}. Check the meter log if this was not planned.")
                elif not k.good or k.flag:
                    bad.add(d)  # a reading out of order or an implausible jump: not counted, kept out of the energy checks
                inc = k.delta
                # Stuck: counter still while its own load reading is frozen and says the load runs.
                load_q = POWER_Q if q == ENERGY_Q else FLOW_OF.get(q)
                if load_q and load_q in vals and load_q in st.last_values:
                    frozen = vals[load_q] == st.last_values[load_q] and vals[load_q] > 0
                    if inc == 0 and k.good and frozen:
                        cs.still += 1
                    else:
                        if cs.stuck_alert:
                            cs.stuck_alert = False
                            bad.add(d)  # the catch-up interval holds the whole stuck stretch
                            events += alerts.resolve(t_ms, ("stuck_meter", d), note=f"{d} values move again")
                        cs.still = 0
                    if cs.still >= self.s.stuck_polls and not cs.stuck_alert:
                        cs.stuck_alert = True
                        events += alerts.open(t_ms, kind="stuck_meter", process=proc, device=d, severity="major",
                                              message=f"{d}: {q} has not moved for {cs.still} polls while its {load_q} reads a frozen {vals[load_q]:,.1f}; "
                                                      "the meter's values are stuck (frozen registers or a hung meter). Energy for this process is unreliable until it moves.",
                                              key=("stuck_meter", d))
                    if cs.stuck_alert:
                        bad.add(d)
        return bad

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        devs = {}
        for d, st in self.devices.items():
            ctr = {}
            for q, cs in st.counters.items():
                k = cs.k
                ctr[q] = {"still": cs.still, "stuck_alert": cs.stuck_alert,
                          "kernel": None if k is None else {"raw": S.enc(k.raw), "offset": S.enc(k.offset), "ts": k.ts, "peak_rate": S.enc(k.peak_rate),
                                                            "pending_raw": S.enc(k.pending_raw), "pending_first": S.enc(k.pending_first),
                                                            "pending_ts": k.pending_ts, "pending_n": k.pending_n, "pending_low": k.pending_low}}
            devs[d] = {"last_seen_ms": st.last_seen_ms, "last_values": {q: S.enc(v) for q, v in st.last_values.items()}, "counters": ctr,
                       "silent": st.silent, "catch_up": st.catch_up, "group": st.group}
        return {"devices": devs, "silent_groups": [[g, sorted(m)] for g, m in sorted(self.silent_groups.items())],
                "counted": [[d, q, S.enc(v)] for (d, q), v in sorted(self.counted.items())]}

    def load_state(self, doc: Any, where: str = "meters") -> None:
        doc = S.obj(doc, where, ("devices", "silent_groups", "counted"))
        devices: dict[str, _DeviceState] = {}
        for d, ds in S.obj(doc["devices"], f"{where}.devices").items():
            w = f"{where}.devices.{d}"
            ds = S.obj(ds, w, ("last_seen_ms", "last_values", "counters", "silent", "catch_up", "group"))
            st = _DeviceState(S.opt_int(ds["last_seen_ms"], f"{w}.last_seen_ms"), S.mapping(ds["last_values"], f"{w}.last_values", S.num),
                              {}, S.boolean(ds["silent"], f"{w}.silent"), S.boolean(ds["catch_up"], f"{w}.catch_up"), S.opt_int(ds["group"], f"{w}.group"))
            for q, cs in S.obj(ds["counters"], f"{w}.counters").items():
                wq = f"{w}.counters.{q}"
                cs = S.obj(cs, wq, ("still", "stuck_alert", "kernel"))
                k = None
                if cs["kernel"] is not None:
                    kd = S.obj(cs["kernel"], f"{wq}.kernel", ("raw", "offset", "ts", "peak_rate", "pending_raw", "pending_first", "pending_ts", "pending_n", "pending_low"))
                    wk = f"{wq}.kernel"
                    k = energy.CounterState(S.num(kd["raw"], f"{wk}.raw", finite=True), S.num(kd["offset"], f"{wk}.offset", finite=True),
                                            S.integer(kd["ts"], f"{wk}.ts"), S.num(kd["peak_rate"], f"{wk}.peak_rate", lo=0.0),
                                            S.opt_num(kd["pending_raw"], f"{wk}.pending_raw", finite=True), S.num(kd["pending_first"], f"{wk}.pending_first"),
                                            S.integer(kd["pending_ts"], f"{wk}.pending_ts"), S.integer(kd["pending_n"], f"{wk}.pending_n", lo=0),
                                            S.boolean(kd["pending_low"], f"{wk}.pending_low"))
                st.counters[q] = _CounterState(k, S.integer(cs["still"], f"{wq}.still", lo=0), S.boolean(cs["stuck_alert"], f"{wq}.stuck_alert"))
            devices[d] = st
        groups: dict[int, set[str]] = {}
        for i, g in enumerate(S.seq(doc["silent_groups"], f"{where}.silent_groups")):
            g = S.seq(g, f"{where}.silent_groups[{i}]", 2)
            groups[S.integer(g[0], f"{where}.silent_groups[{i}][0]")] = {S.text(x, f"{where}.silent_groups[{i}][1]") for x in S.seq(g[1], f"{where}.silent_groups[{i}][1]")}
        counted: dict[tuple[str, str], float] = {}
        for i, c in enumerate(S.seq(doc["counted"], f"{where}.counted")):
            c = S.seq(c, f"{where}.counted[{i}]", 3)
            counted[(S.text(c[0], f"{where}.counted[{i}][0]"), S.text(c[1], f"{where}.counted[{i}][1]"))] = S.num(c[2], f"{where}.counted[{i}][2]", finite=True)
        self.devices, self.silent_groups, self.counted, self.steps = devices, groups, counted, {}
