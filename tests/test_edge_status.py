"""Birth and death status of a gateway on a real Mosquitto: retained ``online`` on connect, retained
``offline`` on a clean stop, and the MQTT last will (``offline``) when the process dies without one."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from carbonedge import wire
from carbonedge.app.services import Mosquitto, free_port


class StatusWatcher:
    def __init__(self, port: int, site: str) -> None:
        self.seen: list[wire.Status] = []
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"status-{site}", protocol=mqtt.MQTTv5)
        c.on_connect = lambda client, *a: client.subscribe(wire.status_topic(site, "gw1"), qos=1)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.seen.append(wire.Status.model_validate_json(msg.payload))

    def wait_for(self, state: str, boot_id: str | None = None, timeout: float = 20.0) -> wire.Status:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for s in self.seen:
                    if s.state == state and (boot_id is None or s.boot_id == boot_id):
                        return s
            time.sleep(0.05)
        raise AssertionError(f"no {state!r} status (boot {boot_id}) within {timeout:.0f} s; seen {[(s.state, s.boot_id) for s in self.seen]}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _retained(port: int, site: str) -> wire.Status:
    """What a client connecting now is told: the retained status."""
    w = StatusWatcher(port, site)
    try:
        deadline = time.monotonic() + 10
        while not w.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.seen, "no retained status"
        return w.seen[-1]
    finally:
        w.close()


def _gateway(config: Path, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen([sys.executable, "-m", "carbonedge.app.cli", "-v", "edge", "--config", str(config), "--data-dir", str(data_dir)],
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_online_offline_on_clean_stop_and_last_will_on_kill(tmp_path):
    broker = Mosquitto("mosquitto", free_port(), tmp_path / "broker").start()
    config = tmp_path / "gw.toml"
    config.write_text(f'[gateway]\nsite = "birth"\nid = "gw1"\npoll_interval_s = 1\n\n[mqtt]\nport = {broker.port}\nkeepalive_s = 5\n\n'
                      '[[devices]]\nid = "m0"\nprofile = "plc-line-counter"\ndriver = "simulated"\n')
    log = tmp_path / "edge.log"
    watcher = StatusWatcher(broker.port, "birth")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # 1. A clean stop publishes the retained offline status of the same boot.
        procs.append(_gateway(config, tmp_path / "edge", log))
        first = watcher.wait_for("online")
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(20) == 0, log.read_text()[-2000:]
        watcher.wait_for("offline", first.boot_id)
        assert _retained(broker.port, "birth").state == "offline"

        # 2. Killed without a goodbye: the broker publishes the last will (offline, that boot's id).
        with watcher.lock:
            watcher.seen.clear()
        procs.append(_gateway(config, tmp_path / "edge", log))
        second = watcher.wait_for("online")
        assert second.boot_id != first.boot_id
        assert _retained(broker.port, "birth").state == "online"
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(10)
        will = watcher.wait_for("offline", second.boot_id)
        assert will.gateway == "gw1" and will.site == "birth"
        assert _retained(broker.port, "birth").boot_id == second.boot_id
    finally:
        watcher.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
        broker.stop()
