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
        assert r["gaps"] >= r["faults"], show  # every cut is on record as a gap event in InfluxDB
    elif name == "gateway_disk_full":
        assert r["gateway_exits_on_disk_full"] == 0 or r["gaps"] >= 1, show
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
