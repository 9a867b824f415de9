"""MIH over IP (RFC 5677): the asyncio UDP+TCP driver of the sans-IO cores in :mod:`aaa_fmip.mih.transport`.

Layers::

    socket  <->  ByteChannel (plain, or DTLS/TLS-PSK)  <->  DatagramCore / StreamCore  <->  handler
                 ^ the only place bytes are protected        ^ sans-IO, time passed in      ^ the MIH user

Plugging in a secured channel: the driver never touches MIH frames' security; it moves octets between a socket
and a :class:`ByteChannel`, one per UDP peer or TCP connection, made by a :data:`ChannelFactory`. A channel
turns network octets into protected payloads (``receive``) and payloads into network octets (``send`` followed
by ``data_to_send``). For UDP each payload is one MIH frame (one datagram); for TCP the payloads are pieces of
the byte stream that :class:`StreamCore` reassembles. :class:`PlainChannel` is the identity. ``closed`` tells
the driver to drop the peer: a TCP connection is closed; a UDP peer's channel is discarded and a new one made for
its next datagram. Nothing above the channel changes.

The DTLS/TLS-PSK MoS (:mod:`aaa_fmip.mih.secure`) does not use this seam: a channel here is synchronous, and a
PSK handshake must wait for the key service between the ClientKeyExchange and mbed TLS's key look-up. There
:class:`aaa_fmip.mih.psk.PskServer` owns the sockets and handshakes, and the same sans-IO cores run on each
established channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

from aaa_fmip.mih.transport import (
    DatagramCore,
    Event,
    FrameRejected,
    Handler,
    MessageReceived,
    MessageTooLarge,
    Peer,
    PeerInfo,
    StreamCore,
    TransactionFailed,
    Transport,
)
from aaa_fmip.wire.mih import (
    MIH_PORT,
    Frame,
)

log = logging.getLogger("aaa_fmip.mih")


# --- byte channels (the plug-in point for DTLS/TLS) ----------------------------------------------------------


class ByteChannel(Protocol):
    """One peer's channel between the socket and the MIH core (see the module docstring)."""

    def receive(self, data: bytes) -> list[bytes]:
        """Network octets in; protected payloads out (none while a handshake runs)."""
        ...

    def send(self, payload: bytes) -> None:
        """Queue one payload (a datagram's MIH frame, or stream octets) for protection."""
        ...

    def data_to_send(self) -> list[bytes]:
        """Network octets to write now (records, handshake messages); each item is one datagram for UDP."""
        ...

    @property
    def closed(self) -> bool: ...


ChannelFactory: TypeAlias = Callable[[Transport, Peer], ByteChannel]


class PlainChannel:
    """The identity channel: RFC 5677 without transport security."""

    __slots__ = ("_out",)

    def __init__(self) -> None:
        self._out: list[bytes] = []

    def receive(self, data: bytes) -> list[bytes]:
        return [data]

    def send(self, payload: bytes) -> None:
        self._out.append(payload)

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    @property
    def closed(self) -> bool:
        return False


def plain_channels(_transport: Transport, _peer: Peer) -> ByteChannel:
    return PlainChannel()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: MIHServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server._udp_input(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("mih udp socket error", extra={"error": str(exc)})


class MIHServer:
    """An MIHF reachable on UDP and TCP on one port (RFC 5677 §6: a MoS MUST offer both).

    ``handler(frame, peer)`` answers a request with a frame (or None); it runs in the event loop and must not
    block. Responses over UDP ask for an ACK and are retransmitted by :class:`DatagramCore`.
    """

    def __init__(
        self,
        mihf_id: bytes,
        handler: Handler,
        *,
        channels: ChannelFactory = plain_channels,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 1024,
        max_udp_channels: int = 4096,
        tcp_idle_timeout: float = 300.0,
        **udp_options: Any,
    ) -> None:
        self.mihf_id = mihf_id
        self.handler = handler
        self.channels = channels
        self.clock = clock
        self.max_connections = max_connections
        self.max_udp_channels = max_udp_channels
        self.tcp_idle_timeout = tcp_idle_timeout
        self.udp = DatagramCore(mihf_id, **udp_options)
        self._udp_channels: OrderedDict[Peer, ByteChannel] = OrderedDict()
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.counters: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    @property
    def port(self) -> int:
        assert self._tcp_server is not None
        return int(self._tcp_server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int = MIH_PORT) -> None:
        """Listen on ``host``:``port`` over TCP and UDP; with port 0, one free port that both can use."""
        loop = asyncio.get_running_loop()
        for _attempt in range(20):
            server = await asyncio.start_server(self._tcp_connection, host, port, reuse_address=True)
            chosen = int(server.sockets[0].getsockname()[1])
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(host, chosen)
                )
            except OSError:
                server.close()
                await server.wait_closed()
                if port:
                    raise
                continue
            self._tcp_server, self._udp_transport = server, transport
            log.info("mih server listening", extra={"host": host, "port": chosen, "transports": "udp,tcp"})
            return
        raise OSError("no port free on both TCP and UDP")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._udp_transport is not None:
            self._udp_transport.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()

    # UDP
    def _udp_channel(self, peer: Peer) -> ByteChannel:
        channel = self._udp_channels.get(peer)
        if channel is None or channel.closed:
            channel = self.channels("udp", peer)
            self._udp_channels[peer] = channel
            while len(self._udp_channels) > self.max_udp_channels:
                self._udp_channels.popitem(last=False)
        else:
            self._udp_channels.move_to_end(peer)
        return channel

    def _udp_input(self, data: bytes, peer: Peer) -> None:
        channel = self._udp_channel(peer)
        now = self.clock()
        for payload in channel.receive(data):
            for event in self.udp.receive(payload, peer, now):
                self._udp_event(event, now)
        self._udp_flush()

    def _udp_event(self, event: Event, now: float) -> None:
        if isinstance(event, MessageReceived):
            response = self._answer(event.frame, PeerInfo("udp", event.peer))
            if response is not None:
                try:
                    self.udp.send(response, event.peer, now)
                except MessageTooLarge as exc:
                    self._count("response-too-large")
                    log.warning("mih response dropped", extra={"reason": "message-too-large", "detail": str(exc)})
        elif isinstance(event, FrameRejected):
            self._count(f"udp-{event.reason}")
            log.debug("mih udp input dropped", extra={"reason": event.reason, "detail": event.detail})
        elif isinstance(event, TransactionFailed):
            self._count("transaction-failed")

    def _udp_flush(self) -> None:
        if self._udp_transport is None:
            return
        for data, peer in self.udp.datagrams_to_send():
            channel = self._udp_channel(peer)
            channel.send(data)
            for datagram in channel.data_to_send():
                self._udp_transport.sendto(datagram, peer)
        self._schedule_timer()

    def _schedule_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.udp.next_timer()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, deadline - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock()
        for event in self.udp.handle_timer(now):
            self._udp_event(event, now)
        self._udp_flush()

    def _answer(self, frame: Frame, peer: PeerInfo) -> Frame | None:
        try:
            return self.handler(frame, peer)
        except Exception:  # a handler bug must not stop the server
            self._count("handler-error")
            log.exception("mih handler failed", extra={"transport": peer.transport})
            return None

    # TCP
    async def _tcp_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_connections:
            self._count("connections-refused")
            writer.close()
            return
        self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # RFC 5677 §6
        peer = writer.get_extra_info("peername")
        channel = self.channels("tcp", peer)
        core = StreamCore(peer)
        info = PeerInfo("tcp", peer)
        try:
            while not channel.closed:
                try:
                    async with asyncio.timeout(self.tcp_idle_timeout):  # an idle connection gives its slot back
                        data = await reader.read(65536)
                except TimeoutError:
                    self._count("tcp-idle-closed")
                    break
                if not data:
                    break
                for payload in channel.receive(data):
                    for event in core.receive(payload):
                        if isinstance(event, MessageReceived):
                            response = self._answer(event.frame, info)
                            if response is not None:
                                channel.send(StreamCore.encode(response))
                        else:
                            self._count(f"tcp-{event.reason}" if isinstance(event, FrameRejected) else "tcp-event")
                for chunk in channel.data_to_send():
                    writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
