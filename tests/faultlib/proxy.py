"""A small TCP fault proxy on 127.0.0.1 (toxiproxy semantics [TX1]): pass, latency, blackhole, reset.

``blackhole`` keeps connections open but forwards nothing in either direction (a half-open
link: no FIN, no RST), which is what a cut cable or a dead NAT entry looks like to both ends;
``reset`` aborts every open connection with an RST; ``latency`` delays every chunk.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.latency_s = 0.0
        self.port = 0
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, name="fault-proxy")
        self._t.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self._loop.run_forever()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                if self.mode == "blackhole":
                    continue  # swallowed: the sender sees a healthy socket, the receiver sees silence
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._abort(w)

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        if self.mode == "blackhole":
            # New connections are accepted and then hang, like packets into a black hole after SYN-ACK.
            self._writers.add(cw)
            while self.mode == "blackhole":
                await asyncio.sleep(0.1)
            self._abort(cw)
            return
        try:
            sr, sw = await asyncio.open_connection(*self.target)
        except OSError:
            self._abort(cw)
            return
        self.connections += 1
        self._writers.update((cw, sw))
        await asyncio.gather(self._pipe(cr, sw), self._pipe(sr, cw))
        self._writers.discard(cw)
        self._writers.discard(sw)

    def _abort(self, w: asyncio.StreamWriter) -> None:
        sock = w.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
            except OSError:
                pass
        w.transport.abort()
        self._writers.discard(w)

    def set(self, mode: str, latency_s: float = 0.0) -> None:
        """``pass``, ``latency`` (with ``latency_s``), ``blackhole``."""
        def apply() -> None:
            self.mode = mode
            self.latency_s = latency_s if mode == "latency" else 0.0
        self._loop.call_soon_threadsafe(apply)

    def reset(self) -> None:
        """Abort every open connection with an RST."""
        def apply() -> None:
            for w in list(self._writers):
                self._abort(w)
        self._loop.call_soon_threadsafe(apply)

    def close(self) -> None:
        def stop() -> None:
            for w in list(self._writers):
                self._abort(w)
            self._server.close()
            self._loop.stop()
        self._loop.call_soon_threadsafe(stop)
        self._t.join(5)
        self._loop.close()
