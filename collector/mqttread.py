"""A buffered read path for paho's MQTT client: many packets per ``recv``, PUBLISH parsed in one pass.

paho-mqtt (pure Python) reads each packet with one ``recv`` for the command byte, one per byte of
the remaining length and one or more for the body, grows the body with ``bytearray +=``, slices
it three more times while decoding, builds an MQTT v5 ``Properties`` object per message, matches
the topic against its per-topic callbacks and returns to ``select`` after every few packets. With
the collector's 10-20 kB telemetry batches that is about 180 CPU-µs per message on the MQTT network
thread, about 1 CPU-µs per reading: as much as decoding and validating the batch.

:func:`install` replaces the client's packet reader (``Client._packet_read``, paho 2.2) on one
client instance. Each call reads up to :data:`RECV_BYTES` from the socket once and handles every
complete packet in them:

- a PUBLISH at QoS 0 or 1, without MQTT v5 properties, on a client with manual acknowledgement
  and no per-topic callbacks, is parsed here (topic, packet id, payload: the payload is sliced
  once, straight from the received bytes) and handed to ``client.on_message`` as an
  ``MQTTMessage`` (``properties`` is ``None``); the application acknowledges it as before
  (``client.ack``);
- every other packet (CONNACK, SUBACK, PUBACK, PINGRESP, DISCONNECT, PUBLISH at QoS 2 or with
  properties, ...) is handed to paho's own handler, unchanged.

A packet that is not complete stays in the buffer until the rest arrives (the socket is then
readable again, so paho's ``select`` wakes up). The buffer belongs to one socket: after a
reconnect it starts empty, as paho's own state does. Nothing about acknowledgement changes: the
broker still redelivers every message the collector did not acknowledge.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTTErrorCode, MQTTMessage, MQTTv5, time_func  # type: ignore[attr-defined]
from paho.mqtt import __version__ as mqtt_version
from paho.mqtt.exception import MalformedPacket

_new_message = MQTTMessage.__new__
_MS_INVALID = mqtt.mqtt_ms_invalid
#: ``MQTTMessage.info`` of every message parsed here (it only means something for messages one publishes).
_NO_INFO = mqtt.MQTTMessageInfo(0)

#: Bytes read per ``recv``: a few dozen telemetry batches.
RECV_BYTES = 1 << 20

_AGAIN = MQTTErrorCode.MQTT_ERR_AGAIN
_LOST = MQTTErrorCode.MQTT_ERR_CONN_LOST
_PROTOCOL = MQTTErrorCode.MQTT_ERR_PROTOCOL


def _fresh_in_packet() -> dict[str, Any]:
    return {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1, "remaining_length": 0,
            "packet": bytearray(b""), "to_process": 0, "pos": 0}


class BufferedReader:
    """The replacement for ``client._packet_read`` (see the module docstring)."""

    def __init__(self, client: mqtt.Client) -> None:
        self.c = client
        self._buf = b""  # the start of a packet not yet complete
        self._more: list[bytes] = []  # reads since, not yet joined to it
        self._have = 0  # bytes in both
        self._need = 0  # bytes the packet needs (0: its length is not known yet)
        self._sock: object = None
        #: Messages parsed here and handed to paho's handlers (for tests and metrics).
        self.fast = 0
        self.delegated = 0

    def __call__(self) -> MQTTErrorCode:
        c = self.c
        sock = c._sock
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            data = sock.recv(RECV_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError):
            return _AGAIN
        except ssl.SSLWantWriteError:
            c._call_socket_register_write()
            return _AGAIN
        except OSError as err:
            c._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return _LOST
        if not data:
            return _LOST
        with c._msgtime_mutex:
            c._last_bytes_received = time_func()
        if sock is not self._sock:  # a new connection: what was buffered belonged to the old one
            self._sock = sock
            self._buf = b""
            self._more = []
            self._need = 0
        if self._buf:
            # The rest of a packet that did not fit the last read: join the pieces only once it is complete
            # (a trickle of small reads must not copy the start of a large packet again for each one).
            self._more.append(data)
            self._have += len(data)
            if self._have < self._need:
                return _AGAIN
            buf = self._buf + b"".join(self._more)
            self._more = []
        else:
            buf = data
        n = len(buf)
        pos = 0
        self._need = 0
        fast_ok = c._manual_ack and c._protocol == MQTTv5
        while n - pos >= 2:
            header = buf[pos]
            # Remaining length: 1-4 bytes, 7 bits each.
            i = pos + 1
            length = 0
            shift = 0
            while True:
                if i >= n:
                    self._buf, self._have, self._need = buf[pos:], n - pos, 0
                    return _AGAIN
                b = buf[i]
                i += 1
                length |= (b & 127) << shift
                if b < 128:
                    break
                shift += 7
                if shift > 21:
                    return _PROTOCOL
            end = i + length
            if end > n:
                self._need = end - pos
                break
            rc = self._publish(header, buf, i, end) if (header & 0xF0) == 0x30 and fast_ok else None
            if rc is None:
                rc = self._delegate(header, buf[i:end], length)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._buf, self._have, self._need = buf[end:], n - end, 0
                    return rc
            pos = end
            if c._sock is not sock:  # a handler closed the connection
                self._buf, self._have, self._need = b"", 0, 0
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        self._buf = buf[pos:] if pos < n else b""
        self._have = n - pos
        return _AGAIN

    def _publish(self, header: int, buf: bytes, i: int, end: int) -> MQTTErrorCode | None:
        """Hand a PUBLISH to ``on_message``; ``None`` leaves it to paho (QoS 2, properties, topic callbacks)."""
        qos = (header >> 1) & 3
        if qos == 2 or end - i < 3:
            return None
        c = self.c
        tlen = (buf[i] << 8) | buf[i + 1]
        j = i + 2 + tlen
        if tlen == 0 or j > end:
            return None
        topic = buf[i + 2:j]
        mid = 0
        if qos:
            if j + 2 > end:
                return None
            mid = (buf[j] << 8) | buf[j + 1]
            j += 2
        if j >= end or buf[j] != 0:  # MQTT v5 properties present (or a longer length): paho decodes them
            return None
        j += 1
        on_message = c._on_message
        if on_message is None or c._on_message_filtered._root._children:  # topic callbacks: paho matches them
            return None
        # Not MQTTMessage(): its __init__ builds an MQTTMessageInfo, with a threading.Condition, for the
        # publisher's side; that was 40 % of this thread's work per message. A received message never uses it.
        m = _new_message(MQTTMessage)
        m.timestamp = time_func()
        m.state = _MS_INVALID
        m.mid = mid
        m._topic = topic
        m.qos = qos
        m.retain = bool(header & 1)
        m.dup = bool(header & 8)
        m.payload = buf[j:end]
        m.properties = None
        m.info = _NO_INFO
        self.fast += 1
        with c._in_callback_mutex:
            try:
                on_message(c, c._userdata, m)
            except Exception as err:
                c._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not c.suppress_exceptions:
                    raise
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _delegate(self, header: int, body: bytes, length: int) -> MQTTErrorCode:
        c = self.c
        self.delegated += 1
        p = _fresh_in_packet()
        p.update(command=header, have_remaining=1, remaining_length=length, packet=bytearray(body))
        c._in_packet = p
        try:
            rc = c._packet_handle()
        except MalformedPacket as exc:
            c._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = _PROTOCOL
        c._in_packet = _fresh_in_packet()
        return rc


#: The paho internals this module uses (paho-mqtt 2.1 and 2.2 have them all).
_NEEDS = ("_packet_read", "_packet_handle", "_packet_queue", "_in_packet", "_msgtime_mutex", "_in_callback_mutex",
          "_on_message_filtered", "_manual_ack", "_protocol", "_userdata", "_easy_log", "_call_socket_register_write")


def install(client: mqtt.Client) -> BufferedReader | None:
    """Give ``client`` the buffered read path (call before connecting); returns the reader (its counters).

    With a paho-mqtt that lacks an internal this relies on, nothing is changed and None is returned
    (paho's own reader then does the work, slower).
    """
    if not all(hasattr(client, a) for a in _NEEDS) or not hasattr(getattr(client, "_on_message_filtered"), "_root"):
        logging.getLogger("carbonedge.collector").warning(
            "paho-mqtt %s: the collector's buffered MQTT reader does not fit this version; using paho's own", mqtt_version)
        return None
    reader = BufferedReader(client)
    client._packet_read = reader  # type: ignore[method-assign]
    return reader


_PUBACK = 0x40


def ack_all(client: mqtt.Client, msgs: list[MQTTMessage]) -> None:
    """Acknowledge ``msgs`` (manual acknowledgement): every QoS 1 PUBACK of them in one write.

    paho's ``ack`` queues one packet per message, wakes its network thread through a socket pair
    and sends each PUBACK with its own system call; a flush holds a few hundred messages. The
    PUBACKs are the same 4 bytes paho sends (``0x40 0x02`` and the packet id: success, no
    properties). QoS 2 messages are acknowledged with paho's ``ack``.
    """
    pubacks = bytearray()
    for m in msgs:
        if m.qos == 1:
            pubacks += b"\x40\x02" + m.mid.to_bytes(2, "big")
        elif m.qos == 2:
            client.ack(m.mid, m.qos)
    if not pubacks:
        return
    if hasattr(client, "_packet_queue"):
        client._packet_queue(_PUBACK, bytes(pubacks), 0, 0)
    else:  # pragma: no cover - another paho-mqtt
        for m in msgs:
            if m.qos == 1:
                client.ack(m.mid, m.qos)
