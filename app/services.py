"""Start and stop the project's own Mosquitto and InfluxDB servers.

Used by ``carbonedge demo`` and by the tests: each server runs as a child process
on a free loopback port, with all its state in a per-run directory, and is stopped
by PID. Nothing touches a system-wide service or the default ports.

The servers come from Debian's packages (``mosquitto``, ``influxdb``). When one is
missing and we are root (or have passwordless sudo), :func:`ensure_installed`
installs it with apt-get; otherwise it raises :class:`ServiceError` saying what to install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from carbonedge.errors import ServiceError
from carbonedge.influx import InfluxClient
from carbonedge.net import free_port  # noqa: F401 - re-exported for the shell and the tests

PACKAGES = {"mosquitto": "mosquitto", "influxd": "influxdb"}
EXTRA_PACKAGES = {"mosquitto": ["mosquitto-clients"], "influxd": ["influxdb-client"]}


def _find(binary: str) -> str | None:
    return shutil.which(binary) or next(
        (str(p) for p in (Path("/usr/sbin") / binary, Path("/usr/bin") / binary) if p.exists()), None
    )


def ensure_installed(*binaries: str) -> dict[str, str]:
    """Return the paths of the given server binaries, installing their Debian packages if needed."""
    found = {b: _find(b) for b in binaries}
    missing = [b for b, p in found.items() if p is None]
    if missing:
        pkgs = sorted({PACKAGES[b] for b in missing} | {x for b in missing for x in EXTRA_PACKAGES[b]})
        cmd: list[str] | None = None
        if os.geteuid() == 0:
            cmd = []
        elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
            cmd = ["sudo", "-n"]
        if cmd is None or not shutil.which("apt-get"):
            raise ServiceError(
                f"{', '.join(missing)} not found. Install the Debian packages first: "
                f"sudo apt-get install {' '.join(pkgs)}"
            )
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print(f"Installing {' '.join(pkgs)} with apt-get (one time) ...", flush=True)
        subprocess.run([*cmd, "apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
        r = subprocess.run([*cmd, "apt-get", "install", "-y", "-qq", *pkgs], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise ServiceError(f"apt-get install {' '.join(pkgs)} failed:\n{r.stderr[-2000:]}")
        found = {b: _find(b) for b in binaries}
        still = [b for b, p in found.items() if p is None]
        if still:
            raise ServiceError(f"{', '.join(still)} still not found after installing {' '.join(pkgs)}")
    return {b: p for b, p in found.items() if p is not None}


@dataclass
class _Server:
    name: str
    port: int
    run_dir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop by PID: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it stopped
                self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / f"{self.name}.pid").unlink()

    def kill(self) -> None:
        """SIGKILL (for fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def _spawn(self, argv: list[str]) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        (self.run_dir / f"{self.name}.pid").write_text(str(self.proc.pid))

    def _fail(self, what: str) -> ServiceError:
        tail = self.log_path.read_text(errors="replace")[-1500:] if self.log_path.exists() else ""
        self.stop()
        return ServiceError(f"{self.name} {what} (port {self.port}). Last log lines:\n{tail}")


@dataclass
class Mosquitto(_Server):
    """A Mosquitto broker on 127.0.0.1:``port``."""

    config_path: Path | None = None
    host: str = "127.0.0.1"

    def start(self, extra_config: str = "", persistence: bool = False, ready_timeout: float = 15.0) -> Mosquitto:
        binary = ensure_installed("mosquitto")["mosquitto"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        if os.geteuid() == 0:
            lines.append("user root")  # keep files in run_dir readable; we never bind outside loopback
        lines += [
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.run_dir}/",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
        ]
        if extra_config:
            lines.append(extra_config.rstrip())
        else:
            lines += [f"listener {self.port} {self.host}", "allow_anonymous true"]
        self.config_path = self.run_dir / "mosquitto.conf"
        self.config_path.write_text("\n".join(lines) + "\n")
        self._spawn([binary, "-c", str(self.config_path)])
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise self._fail("exited during start")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        raise self._fail("did not accept connections")

    def restart(self) -> Mosquitto:
        self.stop()
        assert self.config_path is not None
        self._spawn([ensure_installed("mosquitto")["mosquitto"], "-c", str(self.config_path)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        raise self._fail("did not come back")


@dataclass
class InfluxDB(_Server):
    """An InfluxDB 1.x server on 127.0.0.1:``port`` (v1 HTTP API)."""

    rpc_port: int = 0
    config_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 30.0) -> InfluxDB:
        binary = ensure_installed("influxd")["influxd"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = self.run_dir / "influx"
        self.rpc_port = self.rpc_port or free_port()
        self.config_path = self.run_dir / "influxdb.conf"
        self.config_path.write_text(
            f"""reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{data}/meta"
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false
  max-values-per-tag = 0
[coordinator]
  log-queries-after = "0s"
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  log-enabled = false
"""
        )
        self._spawn([binary, "-config", str(self.config_path)])
        self._wait_ready(ready_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise self._fail("exited during start")
            with self.client() as c:
                if c.ping():
                    return
            time.sleep(0.05)
        raise self._fail("did not answer /ping")

    def restart(self) -> InfluxDB:
        self.stop()
        assert self.config_path is not None
        self._spawn([ensure_installed("influxd")["influxd"], "-config", str(self.config_path)])
        self._wait_ready(30)
        return self

    def client(self, db: str = "") -> InfluxClient:
        """The shared InfluxDB client for database ``db`` of this server."""
        return InfluxClient(self.url, db, attempts=1)

    def query(self, q: str, db: str | None = None) -> dict:  # type: ignore[type-arg]
        """The raw ``/query`` answer (``{"results": [...]}``); raises :class:`QueryError` on a refusal."""
        with self.client(db or "") as c:
            return {"results": c.results(q, database=bool(db))}

    def create_database(self, name: str) -> None:
        with self.client(name) as c:
            c.create_database()


class Services:
    """Mosquitto + InfluxDB for one run, in ``run_dir``; a context manager that stops both."""

    def __init__(self, run_dir: Path, *, database: str = "carbonedge") -> None:
        self.run_dir = Path(run_dir)
        self.database = database
        self.mqtt = Mosquitto("mosquitto", free_port(), self.run_dir)
        self.influx = InfluxDB("influxd", free_port(), self.run_dir)

    def start(self) -> Services:
        ensure_installed("mosquitto", "influxd")
        try:
            self.mqtt.start()
            self.influx.start()
            self.influx.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.mqtt.stop()
        self.influx.stop()

    def __enter__(self) -> Services:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
