"""What really went over a TCP connection: a recording forwarder, and a Diameter framer independent of the code.

:class:`TcpTap` listens on a loopback port and forwards every connection to a target port, recording the byte
stream in each direction; :func:`messages` cuts a stream into Diameter messages and :func:`avps` a message into
its AVPs (each as its octets, padding included), written from RFC 6733 §3 and §4.1 without python-diameter, so
that tests compare the octets a peer sent with the octets another peer received.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from tests.support.redis_server import free_port

CLIENT_TO_SERVER = "c2s"
SERVER_TO_CLIENT = "s2c"


@dataclass
class TcpTap:
    """``127.0.0.1:port`` → ``127.0.0.1:target``; ``streams[direction]`` is every connection's bytes, joined."""

    target: int
    port: int = field(default_factory=free_port)
    streams: dict[str, bytearray] = field(
        default_factory=lambda: {CLIENT_TO_SERVER: bytearray(), SERVER_TO_CLIENT: bytearray()}
    )

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        accept = threading.Thread(target=self._accept, name="tcp-tap-accept", daemon=True)
        self._threads.append(accept)
        accept.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.settimeout(0.2)
            with self._lock:
                self._sockets += [client, server]
            for source, sink, direction in ((client, server, CLIENT_TO_SERVER), (server, client, SERVER_TO_CLIENT)):
                pump = threading.Thread(target=self._pump, args=(source, sink, direction), daemon=True)
                self._threads.append(pump)
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        while not self._stop.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            with self._lock:
                self.streams[direction] += data
            try:
                sink.sendall(data)
            except OSError:
                return

    def messages(self, direction: str) -> list[bytes]:
        with self._lock:
            return messages(bytes(self.streams[direction]))

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(5)


def messages(stream: bytes) -> list[bytes]:
    """The complete Diameter messages in a byte stream (RFC 6733 §3: Message Length, 3 octets after Version)."""
    found = []
    offset = 0
    while offset + 20 <= len(stream):
        length = int.from_bytes(stream[offset + 1 : offset + 4], "big")
        if length < 20 or offset + length > len(stream):
            break
        found.append(stream[offset : offset + length])
        offset += length
    return found


def command(message: bytes) -> tuple[int, int]:
    """(command flags, command code) of a message."""
    return message[4], int.from_bytes(message[5:8], "big")


def avps(message: bytes) -> list[bytes]:
    """Every top-level AVP of a message as its octets, padding included (RFC 6733 §4.1)."""
    found = []
    offset = 20
    while offset + 8 <= len(message):
        length = int.from_bytes(message[offset + 5 : offset + 8], "big")
        end = min(len(message), offset + ((length + 3) & ~3))
        found.append(message[offset:end])
        offset = end
    return found


def avp_code(avp: bytes) -> tuple[int, int, int]:
    """(code, flags, vendor id) of one AVP's octets."""
    flags = avp[4]
    vendor = int.from_bytes(avp[8:12], "big") if flags & 0x80 else 0
    return int.from_bytes(avp[0:4], "big"), flags, vendor
