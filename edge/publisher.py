"""MQTT v5 sender: publishes outbox batches in order at QoS 1 and follows the collector's watermark.

Runs in its own thread with paho-mqtt (which exposes v5 PUBACK reason codes; aiomqtt
2.5.1 discards them). A PUBACK with a reason code >= 0x80 counts as not delivered.
Nothing is deleted here on a PUBACK: only the collector's acknowledgement (the
retained ``ack`` topic) prunes the outbox.

Backfill after an outage goes out oldest first, but never starves live data: when a
backlog is waiting, the newest committed batch is sent ahead of it each round (the
collector's watermark tolerates out-of-order arrival; timestamps are the original ones).

Flow control, so that a backlog does not turn into a resend storm: at most ``max_inflight``
batches await the broker's PUBACK (lowered to the Receive Maximum the broker announces in
CONNACK), and at most ``max_unconfirmed`` batches are sent beyond the collector's watermark.
Batches are resent only when the watermark stops advancing for ``resend_after_s`` (not on a
timer while it advances); while it stays stuck, each further resend waits twice as long.

Transport security: TLS (CA file or system store), username/password (or a password
file), and client certificates, as configured in ``[mqtt]`` / ``[mqtt.tls]``.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import Counter

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from carbonedge import wire
from carbonedge.mqtt import BrokerSettings, make_client
from carbonedge.edge.config import GatewayConfig
from carbonedge.edge.outbox import Outbox

log = logging.getLogger("carbonedge.edge.publisher")

#: On a clean stop, how long to wait for the collector to confirm the batches already sent.
STOP_CONFIRM_S = 3.0


class Publisher(threading.Thread):
    def __init__(self, cfg: GatewayConfig, outbox: Outbox, boot_id: str) -> None:
        super().__init__(name="mqtt-publisher", daemon=True)
        self.cfg = cfg
        self.outbox = outbox
        self.boot_id = boot_id
        g = cfg.gateway
        self.topic = wire.telemetry_topic(g.site, g.id)
        self.ack_topic = wire.ack_topic(g.site, g.id)
        self.status_topic = wire.status_topic(g.site, g.id)
        self.health_topic = wire.health_topic(g.site, g.id)
        self.counters: Counter[str] = Counter()
        self._halt = threading.Event()
        self._stopping = False
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._connected = False
        self._sent_upto = 0  # highest seq handed to the broker on this connection
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._live_sent: set[int] = set()  # seqs sent ahead of the backlog on this connection
        self._last_progress = time.monotonic()
        self._stalls = 0  # resends since the watermark last advanced (each one waits twice as long)
        self._sent_at: dict[int, float] = {}  # seq -> monotonic time of its first send (for the confirmation delay)
        self._srtt: float | None = None  # smoothed send-to-confirmation delay and its variation (RFC 6298 style)
        self._rttvar = 0.0
        self._last_ahead = 0.0  # monotonic time of the last live batch sent ahead of a backlog
        self._probe: tuple[int, int] | None = None  # (watermark, last seq) of the last partial resend
        self._resend: list[int] = []  # seqs of a partial resend, not yet handed to the broker
        self._inflight_limit = cfg.mqtt.max_inflight  # min(max_inflight, the broker's Receive Maximum)
        self._acked_watermark = outbox.watermark
        self._broker_max: int | None = None  # Maximum Packet Size the broker announced in CONNACK
        self._held: set[int] = set()  # seqs too large for the broker, reported once each

        m = cfg.mqtt
        tls = m.tls
        broker = BrokerSettings(
            host=m.host, port=m.port, client_id=m.client_id or f"carbonedge-{g.site}-{g.id}", username=m.username,
            password=m.password.get_secret_value() if m.password else None, password_file=m.password_file,
            tls=tls is not None, ca_file=tls.ca_file if tls else None, cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None, insecure_skip_verify=bool(tls and tls.insecure_skip_verify),
            keepalive_s=m.keepalive_s, reconnect_max_s=int(max(1, m.reconnect_max_s)))
        if tls is None and not _is_loopback(m.host):
            log.warning("MQTT to %s is not encrypted: set [mqtt.tls] for any broker off this machine", m.host)
        self.link = make_client(broker, who="gateway", log=log, auth_hint="[mqtt] username, password and the broker's ACL",
                                count=self._count_failure, on_connect=self._on_connect, on_disconnect=self._on_disconnect)
        c = self.link.client
        c.will_set(self.status_topic, wire.Status(site=g.site, gateway=g.id, state="offline", boot_id=boot_id).to_json(), qos=1, retain=True)
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.max_inflight_messages_set(cfg.mqtt.max_inflight)
        self.client = c

    @property
    def last_connect_error(self) -> str | None:
        """Why the last connection attempt failed (``None`` once connected)."""
        return self.link.watch.last_error

    def _count_failure(self, kind: str) -> None:
        self.counters["connect_failures"] += 1
        self.counters[f"connect_failures_{kind}"] += 1

    def _connect_failed(self, kind: str, reason: str) -> None:
        """Count a failed connection attempt and log it: at once, again when the reason changes, then every 10th time."""
        self.link.watch.failed(kind, reason)

    # -- paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, flags: object, props: object) -> None:
        g = self.cfg.gateway
        receive_max = getattr(props, "ReceiveMaximum", None)
        limit = min(self.cfg.mqtt.max_inflight, int(receive_max)) if receive_max else self.cfg.mqtt.max_inflight
        if limit != self._inflight_limit or limit != self.cfg.mqtt.max_inflight:
            log.info("the broker accepts %s unacknowledged messages (Receive Maximum): sending at most %d at once", receive_max, limit)
        self._inflight_limit = limit  # enforced in _send_some (paho cannot change its own limit on a live connection)
        announced = getattr(props, "MaximumPacketSize", None)
        self._broker_max = int(announced) if announced else None
        if self._broker_max is not None and self._broker_max < self.cfg.mqtt.max_message_kb * 1024:
            log.warning("the broker accepts messages of at most %d kB (mqtt.max_message_kb is %d): poll cycles are split to fit",
                        self._broker_max // 1024, self.cfg.mqtt.max_message_kb)
        client.subscribe(self.ack_topic, qos=1)
        client.publish(self.status_topic, wire.Status(site=g.site, gateway=g.id, state="online", boot_id=self.boot_id, ts=int(time.time() * 1000)).to_json(), qos=1, retain=True)
        with self._lock:
            self._connected = True
            self._sent_upto = self._acked_watermark  # resend everything the collector has not confirmed
            self._inflight.clear()
            self._live_sent.clear()
            self._resend = []
            self._probe = None
            self._sent_at.clear()
            self._last_progress = time.monotonic()  # the stall clock starts with the connection
        self.counters["connects"] += 1
        log.info("connected to MQTT broker %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, rc: mqtt.ReasonCode, props: object) -> None:
        # A connection closed before CONNACK (TLS on one side only, a refused certificate) is counted by the link's watch.
        with self._lock:
            was_connected, self._connected = self._connected, False
        if was_connected and not self._halt.is_set() and not self._stopping:
            self.counters["disconnects"] += 1
            log.warning("disconnected from MQTT broker (%s); will reconnect and resend from seq %d", rc, self._acked_watermark + 1)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: mqtt.ReasonCode, props: object) -> None:
        with self._lock:
            seq = self._inflight.pop(mid, None)
            if seq is not None and rc.is_failure:
                # Refused by the broker (0x87 not authorised, 0x95 too large, 0x97 quota): resend later.
                self.counters[f"broker_rejected_{int(rc.value):#04x}"] += 1
                self._sent_upto = min(self._sent_upto, seq - 1)
                self._live_sent.discard(seq)
                log.warning("broker refused batch seq %d: %s", seq, rc)
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = wire.Ack.model_validate_json(msg.payload)
        except (ValidationError, ValueError):
            self.counters["bad_ack"] += 1
            log.warning("ignored a malformed acknowledgement on %s", msg.topic)
            return
        if ack.watermark > self.outbox.last_seq:
            # The collector confirms cycles this outbox never committed: the outbox was replaced or
            # wiped. Pruning on it would delete unsent data, so it is ignored until our seqs pass it.
            self.counters["ack_ahead_ignored"] += 1
            if self.counters["ack_ahead_ignored"] in (1, 100) or self.counters["ack_ahead_ignored"] % 10_000 == 0:
                log.error("the collector confirms seq %d but this outbox has only reached %d (outbox replaced?); "
                          "not pruning on it", ack.watermark, self.outbox.last_seq)
            return
        with self._lock:
            if ack.watermark > self._acked_watermark:
                sent = self._sent_at.get(ack.watermark)
                if sent is not None:
                    self._sample_delay(time.monotonic() - sent)
                for seq in [s for s in self._sent_at if s <= ack.watermark]:
                    del self._sent_at[seq]
                self._acked_watermark = ack.watermark
                self._last_progress = time.monotonic()
                self._stalls = 0
        self._wake.set()

    def _sample_delay(self, d: float) -> None:
        """Track how long the collector normally takes to confirm a batch (RFC 6298 smoothing)."""
        if self._srtt is None:
            self._srtt, self._rttvar = d, d / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - d)
            self._srtt = 0.875 * self._srtt + 0.125 * d

    def resend_wait(self) -> float:
        """How long the watermark may stand still before a resend: ``resend_after_s``, or longer when the
        collector normally takes longer to confirm (a backlog being worked through), doubled per resend."""
        base = self.cfg.mqtt.resend_after_s
        if self._srtt is not None:
            base = max(base, self._srtt + 4 * self._rttvar)
        return base * 2 ** min(self._stalls, 5)

    # -- sender loop
    def run(self) -> None:
        self.link.start()
        try:
            while not self._halt.is_set():
                self._wake.wait(0.2)
                self._wake.clear()
                wm = self._acked_watermark
                if wm > self.outbox.watermark:
                    self.counters["pruned"] += self.outbox.acknowledge(wm)
                self._send_some()
        finally:
            self.client.loop_stop()

    def _send_some(self) -> None:
        with self._lock:
            if not self._connected or self._stopping:
                return
            wait = self.resend_wait()
            stalled = time.monotonic() - self._last_progress
            if stalled > wait and self._sent_upto > self._acked_watermark:
                wm = self._acked_watermark
                self.counters["resends"] += 1
                self._stalls += 1
                if self._probe is not None and self._probe[0] < wm <= self._probe[1]:
                    # The last probe moved the watermark only within itself: the collector had lost those
                    # batches, so it has probably lost the rest too. Resend all unconfirmed ones.
                    self._probe = None
                    self.counters["resent_batches"] += self._sent_upto - wm
                    log.warning("collector has not confirmed seq %d for %.0f s after a partial resend: resending all %d "
                                "unconfirmed batches", wm + 1, stalled, self._sent_upto - wm)
                    self._sent_upto = wm
                    self._live_sent.clear()
                else:
                    # Probe: resend only the oldest unconfirmed batches. If the collector merely was slow or away,
                    # the watermark then jumps past them and nothing else is repeated.
                    n = min(self._inflight_limit, self._sent_upto - wm)
                    self._probe = (wm, wm + n)
                    self._resend = list(range(wm + 1, wm + n + 1))
                    self.counters["resent_batches"] += n
                    log.info("collector has not confirmed seq %d for %.0f s; resending the oldest %d unconfirmed batch(es) "
                             "(next resend after %.0f s more without progress)", wm + 1, stalled, n,
                             wait * (2 if self._stalls <= 5 else 1))
                self._last_progress = time.monotonic()
            resend, self._resend = self._resend, []
            after = max(self._sent_upto, self._acked_watermark)
            # Flow control: no more than max_inflight awaiting PUBACK, no more than max_unconfirmed beyond the watermark.
            inflight_room = self._inflight_limit - len(self._inflight)
            window_room = self._acked_watermark + self.cfg.mqtt.max_unconfirmed - after
        if inflight_room <= 0:
            return
        last = self.outbox.last_seq
        now = time.monotonic()
        if last - after > max(window_room, 0) and last not in self._live_sent and now - self._last_ahead >= 1.0:
            # A backlog is draining: send the newest cycle first (at most one a second) so live data is never hours late.
            payload = self.outbox.get(last)
            if payload is not None and self._publish(last, payload, ahead=True):
                self._live_sent.add(last)
                self._last_ahead = now
                self.counters["sent_ahead"] += 1
                inflight_room -= 1
        for seq in resend:
            payload = self.outbox.get(seq)
            if payload is not None and self._publish(seq, payload, ahead=True):
                inflight_room -= 1
        room = min(inflight_room, window_room)
        if room <= 0:
            return
        for seq, payload in self.outbox.pending(after, room + len(self._live_sent)):
            if room <= 0:
                break
            if seq in self._live_sent:
                with self._lock:
                    self._sent_upto = max(self._sent_upto, seq)
                continue
            if not self._publish(seq, payload):
                return
            room -= 1
        with self._lock:
            self._live_sent = {s for s in self._live_sent if s > self._sent_upto}

    def max_payload_bytes(self, topic: str | None = None) -> int:
        """Largest payload that fits one MQTT message on ``topic`` (telemetry by default).

        The smaller of ``mqtt.max_message_kb`` and the broker's announced Maximum Packet Size,
        less the topic and the PUBLISH packet's own header (at most 5 + 2 + 2 + 4 bytes, rounded up).
        """
        limit = self.cfg.mqtt.max_message_kb * 1024
        if self._broker_max is not None:
            limit = min(limit, self._broker_max)
        return limit - len((topic or self.topic).encode()) - 32

    def _publish(self, seq: int, payload: bytes, *, ahead: bool = False) -> bool:
        if len(payload) > self.max_payload_bytes():
            # Mosquitto disconnects a client that sends a packet over its limit, so sending would
            # only loop (reconnect, resend, disconnect). The batch stays on disk, unsent, and says so.
            if seq not in self._held:
                self._held.add(seq)
                self.counters["oversize_held"] += 1
                log.error("batch seq %d is %d kB, more than the broker accepts in one message (%d kB): it stays in the "
                          "outbox and is not sent. Raise max_packet_size on the broker to at least %d kB; later batches wait behind it",
                          seq, len(payload) // 1024, self.max_payload_bytes() // 1024, len(payload) // 1024 + 1)
            return False
        info = self.client.publish(self.topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.counters["publish_errors"] += 1
            return False
        with self._lock:
            self._inflight[info.mid] = seq
            self._sent_at.setdefault(seq, time.monotonic())
            if not ahead:
                self._sent_upto = max(self._sent_upto, seq)
        self.counters["published"] += 1
        return True

    def publish_health(self, payload: bytes) -> None:
        """Self-health goes out at QoS 1 when connected; it is not stored (the next report supersedes it)."""
        if self._connected:
            if len(payload) > self.max_payload_bytes(self.health_topic):
                self.counters["health_too_large"] += 1
                return
            self.client.publish(self.health_topic, payload, qos=1)
            self.counters["health_reports"] += 1

    @property
    def connected(self) -> bool:
        return self._connected

    def stop(self) -> None:
        """Publish the retained ``offline`` status and disconnect cleanly while the network loop still runs."""
        g = self.cfg.gateway
        self._stopping = True  # no new sends from here on
        self.link.stopping = True
        # Let the collector confirm what is already on its way (at most STOP_CONFIRM_S): whatever it confirms
        # now need not be sent again by the next start, which resends everything above the watermark.
        with self._lock:
            target = self._sent_upto
        deadline = time.monotonic() + STOP_CONFIRM_S
        while self._connected and self._acked_watermark < target and time.monotonic() < deadline:
            time.sleep(0.05)
        wm = self._acked_watermark
        if wm > self.outbox.watermark:
            self.counters["pruned"] += self.outbox.acknowledge(wm)
        if self._connected:
            try:
                offline = wire.Status(site=g.site, gateway=g.id, state="offline", boot_id=self.boot_id, ts=int(time.time() * 1000))
                self.client.publish(self.status_topic, offline.to_json(), qos=1, retain=True).wait_for_publish(2)
            except (ValueError, RuntimeError):
                pass
        self.client.disconnect()
        self._halt.set()
        self._wake.set()
        if self.is_alive():
            self.join(10)

    @property
    def acked_watermark(self) -> int:
        return self._acked_watermark

    def stats(self) -> dict[str, int]:
        return dict(self.counters)



def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
