"""Established DTLS/TLS-PSK channels, their registry, and the node's side: :func:`connect_tls`, :func:`connect_dtls`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mbedtls import tls

from aaa_fmip.mih.psk._engine import (
    _CHUNK,
    DTLS_INITIAL_TIMER,
    DTLS_MAX_TIMER,
    HANDSHAKE_TIMEOUT,
    ChannelError,
    _check_psk,
    _configuration,
    _Engine,
)

log = logging.getLogger("aaa_fmip.mih.psk")


Handler = Callable[["Channel"], Awaitable[None]]
"""Runs one established channel; the channel is closed when it returns."""


# ------------------------------------------------------------------------------------------ channels


class Channel:
    """An established DTLS/TLS-PSK channel: :meth:`send`, :meth:`recv`, :meth:`close`."""

    transport_name: str = ""

    def __init__(self, engine: _Engine, identity: str, peer: object) -> None:
        self._engine = engine
        self.identity = identity
        self.peer = peer
        self.cipher = engine.cipher
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.transport_name} identity={self.identity} peer={self.peer}>"

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise ChannelError("channel is closed")
        self._engine.write(data)
        await self._transmit(self._engine.take_output())

    async def recv(self) -> bytes:
        """The next application data (TLS: some bytes of the stream; DTLS: one datagram); b"" once closed."""
        while not self.closed:
            data = self._engine.read()
            # what reading produced: e.g. our last handshake flight again, when the peer retransmitted its own
            # because ours was lost (RFC 6347 §4.2.4), or an alert
            await self._transmit(self._engine.take_output())
            if data is not None:
                if not data:
                    await self.close()
                return data
            incoming = await self._receive()
            if incoming is None:
                await self.close()
                return b""
            self._engine.feed(incoming)
        return b""

    async def close(self) -> None:
        """Send close_notify (RFC 5246 §7.2.1) and release the transport; idempotent."""
        if self.closed:
            return
        self._closed.set()
        with contextlib.suppress(OSError, ChannelError):
            await self._transmit(self._engine.shutdown())
        self._release()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _transmit(self, data: bytes) -> None:
        raise NotImplementedError

    async def _receive(self) -> bytes | None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


class TlsChannel(Channel):
    transport_name = "tls"

    def __init__(
        self,
        engine: _Engine,
        identity: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(engine, identity, writer.get_extra_info("peername"))
        self._reader = reader
        self._writer = writer

    async def _transmit(self, data: bytes) -> None:
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def _receive(self) -> bytes | None:
        try:
            data = await self._reader.read(_CHUNK)
        except OSError:
            return None
        return data or None

    def _release(self) -> None:
        self._writer.close()


class DtlsChannel(Channel):
    transport_name = "dtls"

    def __init__(
        self,
        engine: _Engine,
        identity: str,
        peer: object,
        inbox: asyncio.Queue[bytes | None],
        sendto: Callable[[bytes], None],
        on_release: Callable[[], None],
    ) -> None:
        super().__init__(engine, identity, peer)
        self._inbox = inbox
        self._sendto = sendto
        self._on_release = on_release

    async def _transmit(self, data: bytes) -> None:
        if data:
            self._sendto(data)

    async def _receive(self) -> bytes | None:
        if not self._inbox.empty():  # the common case under load: no waiting, no futures
            return self._inbox.get_nowait()
        closed = asyncio.ensure_future(self._closed.wait())
        getting = asyncio.ensure_future(self._inbox.get())
        try:
            done, _ = await asyncio.wait({closed, getting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not getting.done():
                getting.cancel()
        return getting.result() if getting in done else None

    def _release(self) -> None:
        self._on_release()


@dataclass
class ChannelRegistry:
    """Open channels by PSK identity, so that a revoked session's channels can be closed."""

    _channels: dict[str, set[Channel]] = field(default_factory=dict)

    def add(self, channel: Channel) -> None:
        self._channels.setdefault(channel.identity, set()).add(channel)

    def remove(self, channel: Channel) -> None:
        group = self._channels.get(channel.identity)
        if group is not None:
            group.discard(channel)
            if not group:
                del self._channels[channel.identity]

    def open_channels(self, identity: str | None = None) -> list[Channel]:
        if identity is not None:
            return list(self._channels.get(identity, ()))
        return [c for group in self._channels.values() for c in group]

    async def close_identity(self, identity: str) -> int:
        """Close every open channel of this PSK identity (a revoked session); returns how many were open."""
        channels = self._channels.pop(identity, set())
        for channel in channels:
            await channel.close()
        if channels:
            log.info("closed %d MIH channel(s) of PSK identity %s", len(channels), identity)
        return len(channels)


# ------------------------------------------------------------------------------------------- clients


async def connect_tls(
    host: str, port: int, *, identity: str, psk: bytes, timeout: float = HANDSHAKE_TIMEOUT
) -> TlsChannel:
    """A TLS 1.2-PSK channel to a MoS over TCP (TCP_NODELAY, RFC 5677 §6.2)."""
    _check_psk(identity, psk)
    engine = _Engine(tls.ClientContext(_configuration(datagram=False, psk=(identity, psk))).wrap_buffers(None))
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        raise ChannelError(f"cannot connect to {host} port {port}: {exc}") from None
    _nodelay(writer)
    try:
        async with asyncio.timeout(timeout):
            while (step := engine.handshake()) != "done":
                _write(writer, engine.take_output())
                await writer.drain()
                data = await reader.read(_CHUNK)
                if not data:
                    raise ChannelError(f"the peer closed the connection during the handshake (at {step})")
                engine.feed(data)
            _write(writer, engine.take_output())
            await writer.drain()
    except TimeoutError:
        writer.close()
        raise ChannelError(f"TLS handshake with {host} port {port} timed out") from None
    except (ChannelError, OSError) as exc:
        writer.close()
        raise ChannelError(str(exc)) from None
    return TlsChannel(engine, identity, reader, writer)


async def connect_dtls(
    host: str, port: int, *, identity: str, psk: bytes, timeout: float = HANDSHAKE_TIMEOUT
) -> DtlsChannel:
    """A DTLS 1.2-PSK channel to a MoS over UDP; the handshake's flights are retransmitted (RFC 6347 §4.2.4)."""
    _check_psk(identity, psk)
    engine = _Engine(tls.ClientContext(_configuration(datagram=True, psk=(identity, psk))).wrap_buffers(None))
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=256)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: _ClientDatagrams(inbox), remote_addr=(host, port))
    except OSError as exc:
        raise ChannelError(f"cannot reach {host} port {port}: {exc}") from None

    def sendto(data: bytes) -> None:
        if not transport.is_closing():
            transport.sendto(data)

    try:
        async with asyncio.timeout(timeout):
            await _dtls_handshake(engine, inbox, sendto)
    except TimeoutError:
        transport.close()
        raise ChannelError(f"DTLS handshake with {host} port {port} timed out") from None
    except ChannelError:
        transport.close()
        raise
    return DtlsChannel(engine, identity, (host, port), inbox, sendto, transport.close)


async def _dtls_handshake(
    engine: _Engine,
    inbox: asyncio.Queue[bytes | None],
    sendto: Callable[[bytes], None],
    before_feed: Callable[[bytes], Awaitable[None]] | None = None,
) -> None:
    """Drive a DTLS handshake, resending the last flight when the peer stays silent (RFC 6347 §4.2.4).

    ``before_feed`` sees each datagram before mbed TLS does (the MoS awaits the node's key there)."""
    while True:
        step = engine.handshake()
        out = engine.take_output()
        if out:
            sendto(out)
        if step == "done":
            return
        timer = DTLS_INITIAL_TIMER
        while True:
            try:
                async with asyncio.timeout(timer):
                    data = await inbox.get()
                break
            except TimeoutError:
                # mbed TLS keeps its own retransmission timer: stepping the handshake after it expired makes
                # it resend its last flight with fresh record numbers (an identical copy would be discarded
                # by the peer's replay window, RFC 6347 §4.1.2.6)
                engine.handshake()
                again = engine.take_output()
                if again:
                    sendto(again)
                timer = min(timer * 2, DTLS_MAX_TIMER)
        if data is None:
            raise ChannelError("the DTLS transport closed during the handshake")
        if before_feed is not None:
            await before_feed(data)
        engine.feed(data)


class _ClientDatagrams(asyncio.DatagramProtocol):
    def __init__(self, inbox: asyncio.Queue[bytes | None]) -> None:
        self._inbox = inbox

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a peer flooding us loses datagrams, not memory
            self._inbox.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("DTLS client socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(None)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    import socket

    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if data:
        writer.write(data)
