"""Clock check: the gateway's poll timestamps against what its meters counted.

Poll timestamps that go backwards, cycles missing from the database over less time than they would
take (later cycles stamped with the same times overwrote them: the clock stepped back), or a jump
forward while the energy counters advanced by only about one poll interval's worth are a *clock
jump*: one alert per jump. The check learns the poll interval (median of the learning period's
intervals) and follows the gateway's clock after a jump.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from carbonedge.analytics.alerts import AlertBook, AlertEvent
from carbonedge.analytics.monitor import state as S
from carbonedge.analytics.monitor.meters import MeterDataCheck
from carbonedge.analytics.monitor.settings import ENERGY_Q, POWER_Q, MonitorSettings, fmt_ms


class ClockCheck:
    name = "clock"

    def __init__(self, settings: MonitorSettings) -> None:
        self.s = settings
        self.last_cycle_ms: int | None = None
        self.poll_s: float | None = None  # fixed when learning ends
        self.dts: list[float] = []  # poll intervals seen while learning
        self.events = 0

    @property
    def poll(self) -> float | None:
        """The poll interval in seconds: learned, or the median so far while learning (None before two cycles)."""
        return self.poll_s or (float(np.median(self.dts)) if self.dts else None)

    def learn(self) -> None:
        """End of the learning period: fix the poll interval."""
        self.poll_s = float(np.median(self.dts)) if self.dts else 60.0

    def score(self, t_ms: int, readings: dict[str, dict[str, float]], meters: MeterDataCheck, alerts: AlertBook, events: list[AlertEvent],
              missing_cycles: int = 0, *, learning: bool) -> bool:
        """True when this cycle's timestamp is wrong (its interval must stay out of the energy checks)."""
        prev = self.last_cycle_ms
        if prev is None:
            return False
        dt = (t_ms - prev) / 1000.0
        poll = self.poll
        if learning and dt > 0 and not missing_cycles:
            self.dts.append(dt)
        jumped = False
        detail = ""
        if missing_cycles > 0 and poll and dt < (missing_cycles + 0.5) * poll:
            jumped = True
            detail = (f"{missing_cycles} poll cycle(s) before this one are missing from the database although only {dt:,.0f} s passed: "
                      "later readings were stamped with the same times and overwrote them, so the clock stepped back")
        elif dt <= 0:
            jumped = True
            detail = f"poll timestamps went back {-dt:,.0f} s"
        elif poll and dt > 1.5 * poll:
            # A long interval: a real outage (counters advanced for the whole interval) or a clock
            # that jumped (counters advanced only by about one poll interval's worth).
            num = den = 0.0
            for d in readings:
                st = meters.devices.get(d)
                k = meters.steps.get(d, {}).get(ENERGY_Q)
                if st is None or k is None or ENERGY_Q not in st.last_values:
                    continue
                p = st.last_values.get(POWER_Q)
                if not k.good or k.flag or p is None or p <= 0:
                    continue
                num += k.delta
                den += p * dt / 3600.0
            # Outage: ratio ≈ 1. Jump: ratio ≈ poll/dt. Decide by which it is nearer to.
            if den > 0 and num / den < 0.5 * (1.0 + poll / dt) and dt - poll >= self.s.clock_jump_min_s:
                jumped = True
                detail = f"poll timestamps jumped {dt - poll:,.0f} s forward while the meters advanced by about one poll interval"
        if jumped:
            self.events += 1
            events += alerts.pulse(t_ms, kind="clock_jump", process="plant", device=None, severity="major",
                                   message=f"Gateway clock: {detail}. Readings around {fmt_ms(t_ms)} carry wrong times; check the gateway's time sync (NTP/PTP).")
        return jumped

    def to_state(self) -> dict[str, Any]:
        return {"last_cycle_ms": self.last_cycle_ms, "poll_s": S.enc(self.poll_s), "dts": [S.enc(x) for x in self.dts], "events": self.events}

    def load_state(self, doc: Any, where: str = "clock") -> None:
        doc = S.obj(doc, where, ("last_cycle_ms", "poll_s", "dts", "events"))
        self.last_cycle_ms = S.opt_int(doc["last_cycle_ms"], f"{where}.last_cycle_ms")
        self.poll_s = S.opt_num(doc["poll_s"], f"{where}.poll_s", finite=True, lo=1e-3)
        self.dts = S.nums(doc["dts"], f"{where}.dts", finite=True)
        self.events = S.integer(doc["events"], f"{where}.events", lo=0)
