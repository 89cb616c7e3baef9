"""``carbonedge config check FILE``: any carbonedge settings file and every file it refers to, all problems in one run.

The kind of file is told by its contents (or ``--kind``):

==========  ==========================================  =====================================================
kind        recognised by                               checked
==========  ==========================================  =====================================================
gateway     TOML with ``[gateway]`` or ``[[devices]]``  schema; signing key, MQTT password file, TLS CA,
                                                        client certificate and key, outbox directory
collector   TOML with ``[collector]`` or ``[influx]``   schema; password files, TLS files, device registry,
                                                        state directory
monitor     TOML with ``[monitor]``                     schema; plant model, password and token files, TLS
                                                        files, state file's directory
simulator   TOML with ``[scenario]``                    schema; plant options, calendar and fault tables
                                                        against the plant they would run on
carbon      TOML with ``[carbon]``, ``[tariff]``,       schema; factor library, extra factor files, hourly
            ``[cbam]``, ``[china_ets]``, ``[products]``  factor file, every emission factor id
            or ``[battery]``
pact        TOML with ``[pact]`` or ``[[purchased]]``   schema
plant       JSON with ``processes``                     the typed plant model (carbonedge.plant)
==========  ==========================================  =====================================================

Each problem is one line ``FILE: key: reason`` (or ``VARIABLE (environment): key: reason`` for an environment
override); exit status 2 if there is any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from carbonedge import settings
from carbonedge.errors import CarbonEdgeError

KINDS = ("gateway", "collector", "monitor", "simulator", "carbon", "pact", "plant")
_PACT_KEYS = {"pact", "company_name", "company_ids", "purchased", "validity_years", "meter_accuracy_class"}
_CARBON_TABLES = {"carbon", "tariff", "cbam", "china_ets", "products", "battery"}


def detect_kind(path: Path, data: Any) -> str | None:
    """The kind of settings file ``data`` (parsed TOML or JSON) is, or None."""
    if path.suffix == ".json":
        return "plant" if isinstance(data, dict) and "processes" in data else None
    if not isinstance(data, dict):
        return None
    keys = set(data)
    if "scenario" in keys:
        return "simulator"
    if keys & {"gateway", "devices"}:
        return "gateway"
    if "monitor" in keys:
        return "monitor"
    if keys & {"collector", "influx"}:
        return "collector"
    if keys & _PACT_KEYS:
        return "pact"
    if keys & _CARBON_TABLES:
        return "carbon"
    if keys == {"mqtt"}:
        return "collector"  # a gateway file always has [gateway]
    return None


def _gateway(path: Path, data: dict[str, Any]) -> tuple[list[str], str]:
    from carbonedge.edge.config import NAMES, GatewayConfig, check_files

    files = [f"{path}: {p}" for p in check_files(data)]
    custom = {p.get("name") for p in data.get("profiles", []) if isinstance(p, dict)} if isinstance(data.get("profiles"), list) else set()
    cfg, problems = settings.check(GatewayConfig, path, kind="gateway", names=NAMES, context={"profiles": custom})
    # The file checks say more about a missing file than the schema does: keep theirs.
    named = [f.split(": ", 1)[1].split(" = ", 1)[0] for f in files]
    problems = [p for p in problems if not any(f": {n}: " in p or f": {n.rsplit('.', 1)[0]}: " in p and n.rsplit('.', 1)[-1] in p
                                               for n in named)]
    ok = f"gateway {cfg.gateway.site}/{cfg.gateway.id}, {len(cfg.devices)} devices" if cfg else ""
    return files + problems, ok


def _collector(path: Path, data: dict[str, Any]) -> tuple[list[str], str]:
    from carbonedge.collector.settings import KIND, CollectorConfig, check_collector_files

    cfg, problems = settings.check(CollectorConfig, path, kind=KIND)
    files = [f"{path}: {p}" for p in check_collector_files(settings.with_env(data, KIND))]
    if cfg is None:
        return files + problems, ""
    tls = "TLS with a client certificate" if cfg.mqtt.tls and cfg.mqtt.tls.cert_file else "TLS" if cfg.mqtt.tls else "no TLS"
    return files, (f"collector {cfg.mqtt.client_id}: broker {cfg.mqtt.host}:{cfg.mqtt.port} ({tls}), "
                   f"InfluxDB {str(cfg.influx.url).rstrip('/')} database {cfg.influx.database}, state in {cfg.collector.state_dir}")


def _monitor(path: Path, data: dict[str, Any]) -> tuple[list[str], str]:
    from carbonedge.analytics.monitor.config import KIND, MonitorConfig, check_monitor_files, with_env

    cfg, problems = settings.check(MonitorConfig, path, kind=KIND)
    files = [f"{path}: {p}" for p in check_monitor_files(with_env(data))]
    if cfg is None:
        return files + problems, ""
    m = cfg.monitor
    if cfg.mqtt.host:
        tls = "TLS with a client certificate" if cfg.mqtt.tls and cfg.mqtt.tls.cert_file else "TLS" if cfg.mqtt.tls else "no TLS"
        mqtt = f"alerts to MQTT broker {cfg.mqtt.host}:{cfg.mqtt.port} ({tls})"
    else:
        mqtt = "no MQTT alerts"
    return files, (f"monitor of plant model {m.plant_file}: InfluxDB {str(cfg.influx.url).rstrip('/')} database {cfg.influx.database}, "
                   f"{mqtt}, learns {m.learn_hours:g} h, state in {m.state_file or '(none: batch runs only)'}")


def _simulator(path: Path, data: dict[str, Any]) -> tuple[list[str], str]:
    from carbonedge.simulators.scenario import ScenarioFile

    cfg, problems = settings.check(ScenarioFile, path, kind="simulator")
    if cfg is None:
        return problems, ""
    sc = cfg.to_scenario(str(path))
    try:
        from carbonedge.simulators.runner import Simulation

        # Building the plant checks [plant] options, [calendar] processes and every fault against it (no time is simulated).
        sim = Simulation.from_scenario(sc, dt=sc.poll_interval_s)
    except CarbonEdgeError as exc:
        return [f"{path}: {exc}"], ""
    return [], (f"scenario {sc.name}: {sc.plant} plant, {len(sim.meters)} meters, {len(sim.counters)} counters, "
                f"{len(sim.faults)} fault(s), {sc.duration_s / 3600:g} h")


def _carbon(path: Path, data: dict[str, Any]) -> tuple[list[str], str]:
    from pydantic import ValidationError

    from carbonedge.analytics.carbon.settings import Carbon, Settings

    cfg, problems = settings.check(Settings, path, kind="carbon")
    if cfg is not None:
        return _carbon_factors(path, cfg.carbon, data), (f"carbon settings: {len(cfg.products)} product(s), "
                                                         f"{len(cfg.carbon.instruments)} instrument(s)")
    # Other tables are wrong: still check the factors and files of [carbon] when that table itself is right.
    try:
        carbon = Carbon.model_validate(data.get("carbon", {}))
    except ValidationError:
        return problems, ""
    return problems + _carbon_factors(path, carbon, data), ""


def _carbon_factors(path: Path, c: Any, data: dict[str, Any]) -> list[str]:
    """The factor library version, the extra factor files and the hourly factor file load, and every emission factor id
    the settings name resolves in them."""
    from carbonedge.analytics.carbon.factors import FactorLibrary

    fc = settings.FileChecks()
    extra = [p for i, f in enumerate(c.extra_factor_files) if (p := fc.readable(f"carbon.extra_factor_files.{i}", f)) is not None]
    fc.readable("carbon.hourly_grid_factors", c.hourly_grid_factors)
    out = [f"{path}: {p}" for p in fc.problems]
    try:
        lib = FactorLibrary.load(c.factor_library, extra)
    except CarbonEdgeError as exc:
        return [*out, f"{path}: carbon.factor_library: {exc}"]
    table = lambda name: data.get(name) if isinstance(data.get(name), dict) else {}  # noqa: E731
    refs = [("carbon.grid_factor", c.grid_factor), ("carbon.residual_factor", c.residual_factor),
            ("carbon.cbam_electricity_factor", c.cbam_electricity_factor), ("carbon.gas_factor", c.gas_factor),
            ("carbon.gas_ncv", c.gas_ncv), ("cbam.electricity_factor", table("cbam").get("electricity_factor")),
            ("china_ets.grid_factor", table("china_ets").get("grid_factor"))]
    refs += [(f"carbon.process_emissions.{k}", v) for k, v in c.process_emissions.items()]
    refs += [(f"carbon.instruments.{i}.factor", ins.factor) for i, ins in enumerate(c.instruments)]
    for key, fid in refs:
        if not isinstance(fid, str) or not fid:
            continue
        try:
            lib.get(fid)
        except CarbonEdgeError as exc:
            out.append(f"{path}: {key}: {exc}")
    return out


def _pact(path: Path, data: dict[str, Any]) -> tuple[list[str], str]:
    from carbonedge.analytics.pact.model import PactSettings

    cfg, problems = settings.check(PactSettings, path, kind="pact", data=data.get("pact", data))
    if cfg is None:
        return problems, ""
    return [], f"PACT settings: {len(cfg.products)} product(s), {len(cfg.purchased)} purchased material(s)"


def _plant(path: Path, data: Any) -> tuple[list[str], str]:
    """The typed plant model (:class:`carbonedge.plant.PlantModel`): every problem as ``file: key: reason``."""
    from carbonedge.plant import check_file

    model, problems = check_file(path)
    if model is None:
        return problems, ""
    procs = model.processes.values()
    summary = (f"plant model {model.site}: {len(model.processes)} processes, {sum(len(p.meters) for p in procs)} energy meters, "
               f"{sum(len(p.counters) for p in procs)} production counters, {sum(len(p.flow_meters) for p in procs)} flow meters")
    if model.output_process is None:
        summary += " (no output_process: no plant-level SEC and no product footprint until it is set)"
    return [], summary


_CHECKS = {"gateway": _gateway, "collector": _collector, "monitor": _monitor, "simulator": _simulator, "carbon": _carbon, "pact": _pact, "plant": _plant}


def config_check(path: str | Path, kind: str | None = None) -> int:
    """Check one settings file of any kind; print every problem (stderr) or a one-line summary. Exit status 2 if any."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            try:
                data: Any = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise settings.SettingsError([f"{path}: not valid JSON: {exc}"]) from None
        else:
            data = settings.read_toml(path)
    except settings.SettingsError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    kind = kind or detect_kind(path, data)
    if kind is None:
        print(f"{path}: cannot tell which kind of settings file this is (a gateway file has [gateway], a collector file "
              f"[collector] or [influx], a monitor file [monitor], a scenario [scenario], carbon settings [carbon] or [tariff], a plant model "
              f"'processes'); name it with --kind {{{','.join(KINDS)}}}", file=sys.stderr)
        return 2
    problems, summary = _CHECKS[kind](path, data)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{path}: {len(problems)} problem(s) in this {kind} file", file=sys.stderr)
        return 2
    print(f"{path}: OK — {summary}; every referenced file is usable")
    return 0
