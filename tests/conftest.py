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
