"""Fault scenarios on real processes (``tests/faultlib/scenarios.py``): nothing lost, nothing overwritten.

Each scenario runs a signing gateway and a collector as subprocesses against real Mosquitto and
InfluxDB, injects its fault (broker outage and SIGKILL, collector SIGKILL, InfluxDB hung and
killed, gateway power cut, gateway disk full, network blackhole/latency/RST, clock steps,
malformed payloads), drains, and compares every committed reading with InfluxDB and the
dead-letter files (``faultlib/checker.py``). The per-commit tier runs shortened scenarios; the
``soak`` tier runs the full sizes that ``bench/faults.py`` reports in ``docs/reliability.md``.

Security refusals (ACL, TLS, passwords) are covered by ``tests/test_deploy_mosquitto.py`` and
``tests/test_edge_security.py``; tamper evidence by ``tests/test_integrity.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from faultlib.scenarios import SCENARIOS, Env

pytestmark = pytest.mark.slow


def _check(r: dict[str, Any]) -> None:
    """What every scenario must end with (printed in full on failure)."""
    show = json.dumps(r, indent=1)
    assert r["lost"] == 0, show
    assert r["conflicting"] == 0, show
    assert r["unexpected"] == 0, show
    assert r["uncommitted_unexplained"] == 0, show  # a cycle a crash kept from committing is named by a gap record
    assert r["committed_readings"] > 0 and r["stored_readings"] >= r["committed_readings"] - sum(r["dlq_by_reason"].values()), show
    assert r["verify_findings"] == 0, show  # the clean run verifies: signatures, chain, InfluxDB = archive


def _specific(name: str, r: dict[str, Any]) -> None:
    show = json.dumps(r, indent=1)
    if name == "broker_outage":
        # The gateway kept polling through the outage into its outbox, and all of it came through.
        assert r["backlog_batches"] >= 0.9 * r["outage_plant_h"] * 60, show
    elif name == "gateway_power_cut":
        assert r["cuts_without_gap_record"] == 0 and r["gap_records"] >= 1, show  # every cut lies in a gap record's span
        assert r["gaps"] >= r["gap_records"], show  # and the records reached InfluxDB as events
    elif name == "gateway_disk_full":
        assert r["gateway_exits_on_disk_full"] == 0 and r["gateway_alive_when_full"], show  # no crash on a full disk
        assert r["gateway_counters"].get("disk_refused_cycles", 0) > 0, show  # every cycle not stored is counted
        if r["method"].startswith("tmpfs"):  # space came back under the running gateway
            assert r["overflow_events_disk"] >= 1, show  # the cycles not stored are on record in the data
        else:  # RLIMIT_FSIZE: the gateway restarts without the limit; its gap record spans the cycles not stored
            assert r["gaps"] >= 1, show
    elif name == "clock_faults":
        assert r["step_back_inside_stored_range"], show
        assert r["dlq_by_reason"].get("future_ts", 0) > 0, show  # a day ahead: dead-lettered, not stored
    elif name == "malformed_payloads":
        assert r["fuzz_deadlettered"] == r["sent"], show  # each rejected message exactly once, with a reason
        assert set(r["fuzz_dlq_by_reason"]) <= {"oversized", "bad_topic", "bad_json", "non_finite", "schema", "topic_mismatch"}, show
        assert r["fuzz_points_in_influxdb"] == 0, show
        assert r["collector_survived"], show
    elif name in ("collector_sigkill", "broker_sigkill", "network_faults", "influx_hang_and_kill"):
        assert r["faults"] >= 1, show


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fault_scenario(name, services, tmp_path):
    r = SCENARIOS[name](Env(services, tmp_path, scale=1))
    _check(r)
    _specific(name, r)


@pytest.mark.soak
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fault_scenario_full_size(name, services, tmp_path):
    r = SCENARIOS[name](Env(services, tmp_path, scale=2))
    _check(r)
    _specific(name, r)


def test_checker_counts_a_deleted_and_an_overwritten_reading(services, database, tmp_path):
    """The checker is not blind: after a clean run, one deleted point is ``lost`` and one changed value ``conflicting``."""
    import requests

    from faultlib.harness import Pipeline

    site = "f-checker"
    pl = Pipeline(tmp_path / "run", site, services.mqtt.port, services.influx.url, database, devices=2)
    try:
        pl.clean_run(10, timeout=60, plant_s=120)
    finally:
        pl.close()
    clean = pl.check(timeout=5)
    assert (clean["lost"], clean["conflicting"], clean["unexpected"]) == (0, 0, 0), clean
    rows = services.influx.query(f"SELECT * FROM readings WHERE site = '{site}' LIMIT 2", database)["results"][0]["series"][0]
    a, b = (dict(zip(rows["columns"], v)) for v in rows["values"])
    services.influx.query(f"DELETE FROM readings WHERE site = '{site}' AND device = '{a['device']}' AND time = {a['time']}ms", database)
    line = (f"readings,area=melt,device={b['device']},gateway=gw1,process=eaf,site={site} "
            f"active_power={b['active_power'] + 1.0!r} {b['time']}")
    assert requests.post(f"{services.influx.url}/write", params={"db": database, "precision": "ms"}, data=line, timeout=10).status_code == 204
    r = pl.check(timeout=0)
    readings_a = sum(1 for c in rows["columns"] if c not in ("time", "area", "device", "gateway", "process", "site", "seq", "bad_values", "status")
                     and a.get(c) is not None)
    assert r["lost"] == readings_a and r["conflicting"] == 1 and r["unexpected"] == 0, r
