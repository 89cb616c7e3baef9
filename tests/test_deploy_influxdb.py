"""InfluxDB as deployed: deploy/influxdb/influxdb.conf (auth on) set up by deploy/influxdb/setup-auth.sh.

A real influxd runs the shipped config with only its paths and ports moved to a temporary
directory; the shipped script creates the users, retention policies and continuous queries.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from carbonedge.app.services import InfluxDB, ensure_installed, free_port

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "deploy" / "influxdb" / "influxdb.conf"
SETUP = REPO / "deploy" / "influxdb" / "setup-auth.sh"
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, ms


class DeployedInfluxDB(InfluxDB):
    """influxd started with the shipped config instead of the test config."""

    def start(self, ready_timeout: float = 30.0) -> DeployedInfluxDB:
        binary = ensure_installed("influxd")["influxd"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = CONF.read_text().replace("/var/lib/influxdb", str(self.run_dir / "influx"))
        text = text.replace('"127.0.0.1:8088"', f'"127.0.0.1:{free_port()}"').replace('"127.0.0.1:8086"', f'"127.0.0.1:{self.port}"')
        assert "auth-enabled = true" in text
        self.config_path = self.run_dir / "influxdb.conf"
        self.config_path.write_text(text)
        self._spawn([binary, "-config", str(self.config_path)])
        self._wait_ready(ready_timeout)
        return self


def run_setup(url: str, secrets: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, check=False,
                          env={"PATH": os.environ["PATH"], "INFLUX_URL": url, "SECRETS_DIR": str(secrets), **env})


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DeployedInfluxDB, Path]]:
    run = tmp_path_factory.mktemp("influx-deploy")
    db = DeployedInfluxDB("influxd-deploy", free_port(), run).start()
    secrets = run / "secrets"
    r = run_setup(db.url, secrets)
    assert r.returncode == 0, r.stdout + r.stderr
    yield db, secrets
    db.stop()


def _auth(secrets: Path, user: str) -> tuple[str, str]:
    return user, (secrets / f"{user}.password").read_text().strip()


def _query(url: str, q: str, auth: tuple[str, str] | None, db: str = "carbonedge") -> requests.Response:
    return requests.post(f"{url}/query", params={"db": db, "epoch": "ms"}, data={"q": q}, auth=auth, timeout=30)


def _write(url: str, body: str, auth: tuple[str, str] | None, rp: str | None = None) -> requests.Response:
    params = {"db": "carbonedge", "precision": "ms", **({"rp": rp} if rp else {})}
    return requests.post(f"{url}/write", params=params, data=body.encode(), auth=auth, timeout=30)


def test_passwords_are_private_files(influx: tuple[DeployedInfluxDB, Path]) -> None:
    _, secrets = influx
    for user in ("admin", "collector", "grafana", "analytics"):
        f = secrets / f"{user}.password"
        assert f.stat().st_mode & 0o077 == 0, f"{f} is readable by others"
        assert len(f.read_text().strip()) >= 24


def test_anonymous_requests_are_refused(influx: tuple[DeployedInfluxDB, Path]) -> None:
    db, _ = influx
    assert _query(db.url, "SHOW MEASUREMENTS", None).status_code == 401
    assert _write(db.url, "readings,site=s,device=d active_power=1 1767571200000", None).status_code == 401
    assert _query(db.url, "SHOW MEASUREMENTS", ("grafana", "wrong-password")).status_code == 401


def test_collector_uses_its_database_but_administers_nothing(influx: tuple[DeployedInfluxDB, Path]) -> None:
    """The collector writes, and reads back what a replayed batch would overwrite (conflict check), but is no admin."""
    db, secrets = influx
    coll = _auth(secrets, "collector")
    assert _write(db.url, f"readings,site=auth,device=m1 active_power=5.0 {T0}", coll).status_code == 204
    r = _query(db.url, "SELECT active_power FROM readings WHERE site = 'auth'", coll)
    assert r.status_code == 200 and r.json()["results"][0]["series"][0]["values"][0][1] == 5.0, r.text
    for q in ('CREATE DATABASE "other"', "CREATE USER \"x\" WITH PASSWORD 'y'", 'DROP DATABASE "carbonedge"'):
        r = _query(db.url, q, coll)
        assert r.status_code == 403 or "error" in r.json()["results"][0], (q, r.text)
    r = _query(db.url, "SELECT * FROM readings", coll, db="_internal")
    assert r.status_code == 403 or "error" in r.text, r.text


def test_grafana_reads_but_cannot_write(influx: tuple[DeployedInfluxDB, Path]) -> None:
    db, secrets = influx
    admin, graf = _auth(secrets, "admin"), _auth(secrets, "grafana")
    assert _write(db.url, f"readings,site=ro,device=m1 active_power=7.5 {T0}", admin).status_code == 204
    r = _query(db.url, "SELECT active_power FROM readings WHERE site = 'ro'", graf)
    assert r.status_code == 200 and r.json()["results"][0]["series"][0]["values"] == [[T0, 7.5]]
    w = _write(db.url, f"readings,site=ro,device=m1 active_power=99 {T0 + 1}", graf)
    assert w.status_code == 403, w.text
    for stmt in ('DROP MEASUREMENT "readings"', "DELETE FROM readings", 'DROP DATABASE "carbonedge"'):
        r = _query(db.url, stmt, graf)
        assert r.status_code == 403 or "error" in r.json()["results"][0] or "error" in r.json(), stmt
    r = _query(db.url, "SELECT count(active_power) FROM readings WHERE site = 'ro'", graf)
    assert r.json()["results"][0]["series"][0]["values"][0][1] == 1  # nothing was written or deleted


def test_analytics_reads_readings_and_writes_results(influx: tuple[DeployedInfluxDB, Path]) -> None:
    db, secrets = influx
    ana = _auth(secrets, "analytics")
    assert _query(db.url, "SELECT * FROM readings LIMIT 1", ana).status_code == 200
    assert _write(db.url, f"enpi,site=auth,area=a,process=p,period=hour energy_kwh=10,production=2,sec=5 {T0}", ana).status_code == 204


def test_retention_policies_and_continuous_queries(influx: tuple[DeployedInfluxDB, Path]) -> None:
    db, secrets = influx
    admin = _auth(secrets, "admin")
    rps = {row[0]: row for row in _query(db.url, 'SHOW RETENTION POLICIES ON "carbonedge"', admin).json()["results"][0]["series"][0]["values"]}
    assert rps["autogen"][1] == "17520h0m0s" and rps["autogen"][4] is True  # 730 days, default
    assert rps["rollup_1h"][1] == "0s"  # kept forever
    cqs = _query(db.url, "SHOW CONTINUOUS QUERIES", admin).json()["results"][0]["series"]
    names = {row[0] for s in cqs if s["name"] == "carbonedge" for row in s.get("values", [])}
    assert names == {"cq_readings_1h", "cq_enpi_1h", "cq_carbon_1h"}


def test_hourly_rollup_keeps_energy_exact(influx: tuple[DeployedInfluxDB, Path]) -> None:
    """Run the shipped readings CQ over two hours of minute data: counter energy survives downsampling."""
    db, secrets = influx
    admin, coll = _auth(secrets, "admin"), _auth(secrets, "collector")
    lines = []
    for i in range(120):
        t = T0 + 86_400_000 + i * 60_000
        status = ',status="timeout",bad_values=1i' if i == 30 else ""
        lines.append(f"readings,site=roll,gateway=gw1,device=m1,process=eaf active_power={1000 + i}.0,"
                     f"active_energy_import={50_000 + i * 17.5}{status},seq={i}i {t}")
    assert _write(db.url, "\n".join(lines), coll).status_code == 204
    cqs = _query(db.url, "SHOW CONTINUOUS QUERIES", admin).json()["results"][0]["series"]
    text = next(row[1] for s in cqs for row in s.get("values", []) if row[0] == "cq_readings_1h")
    select = re.search(r"BEGIN (.*) END", text).group(1)  # type: ignore[union-attr]
    select = select.replace("GROUP BY", f"WHERE site = 'roll' AND time >= {T0 + 86_400_000}ms AND time < {T0 + 86_400_000 + 7_200_000}ms GROUP BY")
    r = _query(db.url, select, admin)
    assert r.status_code == 200 and "error" not in r.json()["results"][0], r.text
    rows = _query(db.url, "SELECT last_active_energy_import, mean_active_power, max_active_power, min_active_power "
                  "FROM rollup_1h.readings_1h WHERE site = 'roll' AND device = 'm1' AND process = 'eaf'", _auth(secrets, "grafana"))
    values = rows.json()["results"][0]["series"][0]["values"]
    assert len(values) == 2
    # Energy of the second hour from the rollup equals the raw counter increase over that hour.
    assert values[1][1] - values[0][1] == pytest.approx(60 * 17.5)
    assert values[0][2] == pytest.approx(1029.5) and values[0][3] == 1059.0 and values[0][4] == 1000.0


def test_setup_is_rerunnable_and_refuses_a_wrong_admin_password(influx: tuple[DeployedInfluxDB, Path]) -> None:
    db, secrets = influx
    again = run_setup(db.url, secrets)
    assert again.returncode == 0, again.stderr
    assert "generated" not in again.stderr  # existing passwords are kept
    assert _query(db.url, "SELECT * FROM readings LIMIT 1", _auth(secrets, "grafana")).status_code == 200
    bad = run_setup(db.url, secrets, CARBONEDGE_INFLUX_ADMIN_PASSWORD="not-the-admin-password")
    assert bad.returncode != 0 and "admin" in bad.stderr
