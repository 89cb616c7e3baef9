"""Shared fixtures: the project's own Mosquitto and InfluxDB, real servers on free loopback ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbonedge.app.services import Services


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One Mosquitto and one InfluxDB for the whole session (tests use their own databases/sites)."""
    svc = Services(tmp_path_factory.mktemp("services"), database="carbonedge").start()
    yield svc
    svc.stop()


@pytest.fixture
def database(services: Services) -> str:
    """A fresh InfluxDB database for one test."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    services.influx.create_database(name)
    return name


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def deploy_etc(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A stand-in for ``/etc/carbonedge`` as the shipped examples expect it: ``make(role, name)`` issues the plant CA and
    the identity ``role-name`` with deploy/pki/carbonedge-pki.sh and writes ``secrets/<role>.password``."""
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parent.parent

    def make(role: str, name: str) -> Path:
        pki = tmp_path / "pki"
        for args in (["init"], [role, name]):
            r = subprocess.run(["bash", str(repo / "deploy" / "pki" / "carbonedge-pki.sh"), *args],
                               env={"PKI_DIR": str(pki), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        etc = tmp_path / "etc"
        (etc / "secrets").mkdir(parents=True)
        shutil.copy(pki / "ca.crt", etc / "ca.crt")
        for ext in ("crt", "key"):
            shutil.copy(pki / "issued" / f"{role}-{name}.{ext}", etc / f"{role}-{name}.{ext}")
        (etc / "secrets" / f"{role}.password").write_text(f"a-long-{role}-password\n")
        return etc

    return make
