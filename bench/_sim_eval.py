"""Score the plant monitor against the simulators' labelled faults (used by ``bench/anomaly_eval.py``).

Each scenario is generated offline (``simulators.offline.generate``), fed cycle by cycle through
:class:`analytics.monitor.PlantMonitor`, and its alerts are matched to ``labels.jsonl``:

* an alert matches a label when it opens in ``[start, end + 30 min]`` (``end`` = end of run for open
  faults) and is about the same thing: the label's device for meter faults, the label's process for
  process faults, any ``clock_jump`` for gateway-clock faults;
* precision = alerts that match a label / all alerts raised after the learning period;
* recall = labels matched by at least one alert / all labels;
* delay = first matching alert − label start, in simulated minutes.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics.monitor import MonitorSettings, PlantMonitor, read_device_csvs  # noqa: E402
from carbonedge.clock import parse_time  # noqa: E402

GRACE_MS = 30 * 60_000
DEVICE_KINDS = {"stuck_meter", "counter_reset", "counter_rollover", "comm_loss"}
CLOCK_KINDS = {"clock_offset", "clock_step"}
SCENARIOS = ("steel-week-faults", "battery-week-faults")


@dataclass
class Result:
    scenario: str
    seed: int
    labels: list[dict[str, Any]]
    alerts: list[Any]
    matched: dict[str, float] = field(default_factory=dict)  # label id → delay in minutes
    false_alerts: list[Any] = field(default_factory=list)


def _matches(alert: Any, label: dict[str, Any], end_ms: int) -> bool:
    start = int(parse_time(label["start"]) * 1000)
    stop = int(parse_time(label["end"]) * 1000) if label.get("end") else end_ms
    # Alerts carry the gateway's timestamps: a clock fault moves them by its own offset or step.
    skew = 1000 * max(abs(float(label["params"].get("offset_s", 0))), abs(float(label["params"].get("step_s", 0))))
    if not (start - 120_000 - skew <= alert.opened_ms <= stop + GRACE_MS + skew):
        return False
    if label["kind"] in CLOCK_KINDS:
        return alert.kind == "clock_jump"
    if label["kind"] in DEVICE_KINDS:
        return alert.device == label["device"]
    return alert.process == label["process"] and alert.device is None


def score_run(directory: Path, scenario: str, seed: int, labels: list[dict[str, Any]], settings: MonitorSettings) -> Result:
    import json

    plant = json.loads((directory / "plant.json").read_text())
    mon = PlantMonitor(plant, settings)
    alerts = []
    cycles = read_device_csvs(directory, sorted(mon.proc_of_device))
    learn_end = None
    for t, readings in cycles:
        for e in mon.step(t, readings):
            if e.state == "open":
                alerts.append(e.alert)
        if learn_end is None and not mon.learning:
            learn_end = t
    end_ms = cycles[-1][0] if cycles else 0
    res = Result(scenario, seed, labels, alerts)
    for a in alerts:
        hit = [lab for lab in labels if _matches(a, lab, end_ms)]
        if not hit:
            res.false_alerts.append(a)
        for lab in hit:
            d = (a.opened_ms - parse_time(lab["start"]) * 1000) / 60_000.0
            res.matched[lab["id"]] = min(res.matched.get(lab["id"], float("inf")), max(d, 0.0))
    return res


def evaluate(seeds: int = 3, hours: float | None = None, scenarios: tuple[str, ...] = SCENARIOS, verbose: bool = True,
             settings: MonitorSettings | None = None, keep: Path | None = None) -> str:
    """Run every scenario with ``seeds`` seeds; print per-fault outcomes; return the summary line.

    ``keep``: generate into this directory and reuse what is already there (the generator is
    deterministic per scenario and seed), so that a second evaluation only scores.
    """
    from simulators.offline import generate
    from simulators.scenario import load_scenario

    settings = settings or MonitorSettings()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="anomaly-eval-") as tmpdir:
        tmp = keep or Path(tmpdir)
        for name in scenarios:
            base = load_scenario(name)
            for k in range(seeds):
                sc = replace(base, seed=base.seed + k, name=f"{name}-s{base.seed + k}")
                if hours:
                    sc = replace(sc, duration_s=hours * 3600.0)
                out = Path(tmp) / f"{sc.name}-{sc.duration_s:.0f}s"
                t0 = time.perf_counter()
                if (out / "labels.jsonl").exists() and (out / "truth.json").exists():
                    all_labels = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines() if line.strip()]
                else:
                    all_labels = generate(sc, out).labels
                gen_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                labels = [lab for lab in all_labels if parse_time(lab["start"]) < sc.start + sc.duration_s]
                r = score_run(out, name, sc.seed, labels, settings)
                results.append(r)
                if verbose:
                    print(f"{sc.name}: generated in {gen_s:.0f} s, scored in {time.perf_counter() - t0:.0f} s; "
                          f"{len(r.alerts)} alerts, {len(r.false_alerts)} false; {len(r.matched)}/{len(labels)} faults caught")
                    for lab in labels:
                        d = r.matched.get(lab["id"])
                        print(f"    {lab['kind']:34} {lab.get('device') or lab.get('process') or 'gateway':24} "
                              + (f"caught after {d:6.1f} min" if d is not None else "MISSED"))
                    for a in r.false_alerts[:8]:
                        print(f"    false alert {a.kind} {a.process}/{a.device} at {time.strftime('%Y-%m-%d %H:%M', time.gmtime(a.opened_ms / 1000))}: {a.message[:140]}")
    n_alerts = sum(len(r.alerts) for r in results)
    n_true = n_alerts - sum(len(r.false_alerts) for r in results)
    n_labels = sum(len(r.labels) for r in results)
    n_hit = sum(len(r.matched) for r in results)
    delays = [d for r in results for d in r.matched.values()]
    precision = n_true / n_alerts if n_alerts else 0.0
    recall = n_hit / n_labels if n_labels else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    med = statistics.median(delays) if delays else float("nan")
    if verbose:
        for family, kinds in (("process (energy) faults", None), ("meter and clock faults", DEVICE_KINDS | CLOCK_KINDS)):
            labs = [(r, lab) for r in results for lab in r.labels if (lab["kind"] in kinds if kinds else lab["kind"] not in DEVICE_KINDS | CLOCK_KINDS)]
            d = [r.matched[lab["id"]] for r, lab in labs if lab["id"] in r.matched]
            print(f"{family}: {len(d)}/{len(labs)} caught, median delay {statistics.median(d) if d else float('nan'):.1f} min")
        print(f"alerts: {n_alerts}, of which {n_alerts - n_true} match no fault")
    return f"precision={precision:.3f} recall={recall:.3f} f1={f1:.3f} median_delay_min={med:.1f}"
