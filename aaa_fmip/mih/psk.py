"""MIH transport security: DTLS 1.2-PSK on UDP and TLS 1.2-PSK on TCP (architecture.md §10), keyed by the MIH PSK.

RFC 5677 carries MIH over UDP/TCP 4551 and leaves transport security open (§8). Here the node and the Mobility
Server (MoS) run TLS 1.2 (RFC 5246) or DTLS 1.2 (RFC 6347) with a pre-shared key (RFC 4279), the key being
:func:`aaa_fmip.keys.derive_mih_psk` of the node's session and the MoS's MIHF-ID, the PSK identity the session's
HMK-Name in hex. The node derives its key itself; the MoS learns it per identity from a :data:`KeySource` (the
key service's ``POST /v1/mih/psk``, :class:`RestKeySource`).

The TLS engine is mbed TLS through python-mbedtls, the one Python binding with PSK and DTLS; it is driven
without sockets (its ``MbedTLSBuffer``) by :class:`_Engine`, and thin asyncio adapters move the bytes. What is
written by hand, and why:

* :func:`peek_psk_identity` reads the ``psk_identity`` out of the plaintext ClientKeyExchange (RFC 4279 §2)
  before the bytes reach mbed TLS, because mbed TLS asks for the key from inside the handshake, synchronously,
  and the MoS's key comes from a network call: the adapter awaits the key first, then lets mbed TLS continue.
* The DTLS handshake's wait (RFC 6347 §4.2.4: 1 s initial timer, doubled on each expiry) in the client and the
  server adapters: when it expires they step mbed TLS again, which resends its last flight itself.

Channels are byte channels: TLS gives a byte stream, DTLS one datagram per ``send``. Every open channel is in a
:class:`ChannelRegistry` under its PSK identity, so revoking a session closes its channels
(:meth:`ChannelRegistry.close_identity`). Key octets never appear in a log line, an exception or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from mbedtls import tls
from mbedtls._tls import MbedTLSBuffer, RaggedEOF
from mbedtls.exceptions import TLSError

from aaa_fmip.errors import AaaFmipError, DecodeError

log = logging.getLogger("aaa_fmip.mih.psk")

MIH_PORT: Final = 4551  # RFC 5677 §6.1 ("ieee-mih", UDP and TCP)
# RFC 5487 §3.1 TLS_PSK_WITH_AES_128_GCM_SHA256 (OpenSSL: PSK-AES128-GCM-SHA256); plain PSK, no (EC)DHE: the key
# is per session and per MoS already. RFC 4279 §2 TLS_PSK_WITH_AES_128_CBC_SHA kept for older peers.
CIPHERS: Final = ("TLS-PSK-WITH-AES-128-GCM-SHA256", "TLS-PSK-WITH-AES-128-CBC-SHA256", "TLS-PSK-WITH-AES-128-CBC-SHA")
PSK_LENGTH: Final = 32  # mbed TLS's MBEDTLS_PSK_MAX_LEN; architecture.md §2
MAX_IDENTITY_LENGTH: Final = 128  # ours are 16 octets; RFC 4279 §5.3 asks for at least 128 supported
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds for a whole handshake
DTLS_INITIAL_TIMER: Final = 1.0  # RFC 6347 §4.2.4.1
DTLS_MAX_TIMER: Final = 60.0  # RFC 6347 §4.2.4.1
MAX_DTLS_PEERS: Final = 1024  # DTLS peers past the cookie exchange at once; more are dropped (bounded state)
MAX_HANDSHAKE_BYTES: Final = 16384  # what a client may send before its ClientKeyExchange (a ClientHello or two)
_CHUNK: Final = 16384
_ERR_PEER_CLOSE_NOTIFY: Final = 0x7880  # MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY
_MAX_STEPS: Final = 64  # do_handshake calls per step; each call advances at least one state or stops

# RFC 5246 §6.2.1 / §7.4, RFC 6347 §4.1 / §4.2.2
_CT_CHANGE_CIPHER_SPEC: Final = 20
_CT_HANDSHAKE: Final = 22
_HS_CLIENT_KEY_EXCHANGE: Final = 16
_TLS_RECORD_HEADER: Final = 5
_DTLS_RECORD_HEADER: Final = 13
_TLS_HS_HEADER: Final = 4
_DTLS_HS_HEADER: Final = 12

KeySource = Callable[[str], Awaitable[bytes | None]]
"""Gives the PSK of an identity, or None when there is none (unknown or revoked session, not this MoS's)."""
Handler = Callable[["Channel"], Awaitable[None]]
"""Runs one established channel; the channel is closed when it returns."""


class ChannelError(AaaFmipError):
    """A DTLS/TLS channel could not be set up or broke (handshake failure, timeout, peer gone)."""


# ------------------------------------------------------------------------------------------ pure helpers


def peek_psk_identity(data: bytes, *, datagram: bool) -> str | None:
    """The ``psk_identity`` of the first ClientKeyExchange in ``data`` (plaintext records), or None if there is
    none yet.

    ``data``: for TLS the bytes received so far on the stream (records may be incomplete at the end); for DTLS
    one datagram. Only records before ChangeCipherSpec (TLS) or of epoch 0 (DTLS) are read: later ones are
    encrypted. Raises DecodeError for records or messages that cannot be TLS (length overruns, a non-ASCII or
    over-long identity); mbed TLS would refuse them too.
    """
    header = _DTLS_RECORD_HEADER if datagram else _TLS_RECORD_HEADER
    offset = 0
    while len(data) - offset >= header:
        content_type = data[offset]
        (length,) = struct.unpack_from("!H", data, offset + header - 2)
        body_start = offset + header
        if len(data) < body_start + length:
            if datagram:
                raise DecodeError("record longer than the datagram", field="dtls.record", offset=offset)
            return None  # the rest of this record has not arrived yet
        if datagram:
            (epoch,) = struct.unpack_from("!H", data, offset + 3)
            if epoch != 0:
                return None
        if content_type == _CT_CHANGE_CIPHER_SPEC:
            return None
        if content_type == _CT_HANDSHAKE:
            found = _identity_in_handshake(data[body_start : body_start + length], body_start, datagram=datagram)
            if found is not None:
                return found
        offset = body_start + length
    return None


def _identity_in_handshake(body: bytes, base: int, *, datagram: bool) -> str | None:
    header = _DTLS_HS_HEADER if datagram else _TLS_HS_HEADER
    offset = 0
    while len(body) - offset >= header:
        msg_type = body[offset]
        if datagram:
            # RFC 6347 §4.2.2: type, length(3), message_seq(2), fragment_offset(3), fragment_length(3)
            frag_offset = int.from_bytes(body[offset + 6 : offset + 9], "big")
            length = int.from_bytes(body[offset + 9 : offset + 12], "big")
        else:
            frag_offset = 0
            length = int.from_bytes(body[offset + 1 : offset + 4], "big")
        start = offset + header
        if len(body) < start + length:
            return None  # a handshake message continued in the next record: not a PSK ClientKeyExchange
        if msg_type == _HS_CLIENT_KEY_EXCHANGE and frag_offset == 0:
            return _psk_identity(body[start : start + length], base + start)
        offset = start + length
    return None


def _psk_identity(message: bytes, at: int) -> str:
    # RFC 4279 §2: struct { opaque psk_identity<0..2^16-1>; } ClientKeyExchange (the PSK key exchange)
    if len(message) < 2:
        raise DecodeError("ClientKeyExchange too short", field="psk_identity", offset=at)
    (length,) = struct.unpack_from("!H", message)
    if length > MAX_IDENTITY_LENGTH or len(message) < 2 + length:
        raise DecodeError(f"identity length {length} is not 0..{MAX_IDENTITY_LENGTH}", field="psk_identity", offset=at)
    raw = message[2 : 2 + length]
    if not all(0x21 <= c <= 0x7E for c in raw):
        raise DecodeError("identity is not printable ASCII", field="psk_identity", offset=at + 2)
    return raw.decode("ascii")


# ---------------------------------------------------------------------------------------- key cache


class _KeyCache(Mapping[str, bytes]):
    """mbed TLS's ``pre_shared_key_store``: the keys of handshakes in progress only, held by reference count.

    mbed TLS looks an identity up when the ClientKeyExchange is processed; the adapter puts the key here just
    before, and takes it out when that handshake ends (the session keys are derived by then).
    """

    def __init__(self) -> None:
        self._keys: dict[str, tuple[bytes, int]] = {}

    def __getitem__(self, identity: str) -> bytes:
        return self._keys[identity][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"_KeyCache({len(self._keys)} held)"

    def hold(self, identity: str, key: bytes) -> None:
        _, count = self._keys.get(identity, (key, 0))
        self._keys[identity] = (key, count + 1)

    def release(self, identity: str) -> None:
        entry = self._keys.get(identity)
        if entry is None:
            return
        if entry[1] <= 1:
            del self._keys[identity]
        else:
            self._keys[identity] = (entry[0], entry[1] - 1)

    def drop(self, identity: str) -> None:
        self._keys.pop(identity, None)


# ----------------------------------------------------------------------------------------- the engine


Step = Literal["done", "want-read", "hello-verify"]


class _Engine:
    """One mbed TLS connection without IO: bytes in (:meth:`feed`), bytes out (:meth:`take_output`)."""

    def __init__(self, buffer: MbedTLSBuffer) -> None:
        self._buffer = buffer

    @property
    def established(self) -> bool:
        return self._buffer._handshake_state.name == "HANDSHAKE_OVER"

    def feed(self, data: bytes) -> None:
        self._buffer.receive_from_network(data)

    def take_output(self) -> bytes:
        out = self._buffer.peek_outgoing(1 << 20)
        if out:
            self._buffer.consume_outgoing(len(out))
        return bytes(out)

    def handshake(self) -> Step:
        """Advance the handshake as far as the input allows. Raises ChannelError when mbed TLS gives up."""
        for _ in range(_MAX_STEPS):
            if self.established:
                return "done"
            try:
                self._buffer.do_handshake()
            except tls.WantWriteError:
                continue  # output waits in the buffer; take_output collects it
            except tls.WantReadError:
                return "want-read"
            except tls.HelloVerifyRequest:
                return "hello-verify"
            except TLSError as exc:
                raise ChannelError(f"handshake failed: {_tls_error(exc)}") from None
        raise ChannelError("handshake made no progress")

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = self._buffer.write(bytes(view))
            except tls.WantWriteError:
                continue
            except TLSError as exc:
                raise ChannelError(f"cannot send: {_tls_error(exc)}") from None
            view = view[written:]

    def read(self) -> bytes | None:
        """Decrypted application data, b"" at the peer's close_notify, None when more input is needed."""
        try:
            data = bytes(self._buffer.read(_CHUNK))
        except (tls.WantReadError, tls.WantWriteError):
            return None
        except RaggedEOF:
            return b""
        except TLSError as exc:
            if getattr(exc, "err", None) == _ERR_PEER_CLOSE_NOTIFY:
                return b""
            raise ChannelError(f"cannot receive: {_tls_error(exc)}") from None
        return data or None  # nothing decrypted yet (a record still incomplete, or a non-data record)

    def shutdown(self) -> bytes:
        with contextlib.suppress(TLSError):
            self._buffer.shutdown()
        return self.take_output()

    @property
    def cipher(self) -> str:
        return str(self._buffer.cipher())


def _tls_error(exc: Exception) -> str:
    # mbed TLS error texts name the failing step and code, never key octets.
    text = str(exc) or type(exc).__name__
    return text[:200]


def _configuration(
    *, datagram: bool, psk: tuple[str, bytes] | None = None, store: Mapping[str, bytes] | None = None
) -> tls.TLSConfiguration | tls.DTLSConfiguration:
    if datagram:
        dv = tls.DTLSVersion.DTLSv1_2  # RFC 6347
        return tls.DTLSConfiguration(
            ciphers=CIPHERS,
            lowest_supported_version=dv,
            highest_supported_version=dv,
            validate_certificates=False,
            pre_shared_key=psk,
            pre_shared_key_store=store if store is not None else {},
        )
    v = tls.TLSVersion.TLSv1_2  # RFC 5246
    return tls.TLSConfiguration(
        ciphers=CIPHERS,
        lowest_supported_version=v,
        highest_supported_version=v,
        validate_certificates=False,
        pre_shared_key=psk,
        pre_shared_key_store=store if store is not None else {},
    )


def _check_psk(identity: str, psk: bytes) -> None:
    if not 1 <= len(identity) <= MAX_IDENTITY_LENGTH or not identity.isascii():
        raise ValueError(f"PSK identity must be 1..{MAX_IDENTITY_LENGTH} ASCII characters")
    if not 1 <= len(psk) <= PSK_LENGTH:
        raise ValueError(f"PSK must be 1..{PSK_LENGTH} octets, got {len(psk)}")


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


async def _dtls_handshake(engine: _Engine, inbox: asyncio.Queue[bytes | None], sendto: Callable[[bytes], None]) -> None:
    """Drive a DTLS handshake, resending the last flight when the peer stays silent (RFC 6347 §4.2.4)."""
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


# ------------------------------------------------------------------------------------------- servers


class PskServer:
    """A MoS's secured MIH listener: TLS 1.2-PSK on TCP and/or DTLS 1.2-PSK on UDP (RFC 5677 §6: a MoS serves
    both), keys from ``keys`` per PSK identity, each established channel run by ``handler``."""

    def __init__(
        self,
        keys: KeySource,
        handler: Handler,
        *,
        registry: ChannelRegistry | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_dtls_peers: int = MAX_DTLS_PEERS,
    ) -> None:
        self.keys = keys
        self.handler = handler
        self.registry = registry or ChannelRegistry()
        self.handshake_timeout = handshake_timeout
        self.max_dtls_peers = max_dtls_peers
        self._cache = _KeyCache()
        self._tls_context = tls.ServerContext(_configuration(datagram=False, store=self._cache))
        # One DTLS context for every peer: the cookie secret (RFC 6347 §4.2.1) must outlive a single exchange.
        self._dtls_context = tls.ServerContext(_configuration(datagram=True, store=self._cache))
        self._tcp_servers: list[asyncio.Server] = []
        self._udp: list[tuple[asyncio.DatagramTransport, _DtlsServerProtocol]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start_tls(self, host: str, port: int = MIH_PORT) -> int:
        """Listen for TLS on TCP; returns the bound port (``port`` 0 picks one). May be called for several
        addresses."""
        server = await asyncio.start_server(self._tls_connection, host, port)
        self._tcp_servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def start_dtls(self, host: str, port: int = MIH_PORT) -> int:
        """Listen for DTLS on UDP at ``host``; returns the bound port (``port`` 0 picks one).

        Give each address the MoS is published under (call once per address) rather than a wildcard when the
        host has several addresses: a reply leaves from the address the kernel chooses, and a node only accepts
        it from the address it sent to. ``max_dtls_peers`` applies to each listener.
        """
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _DtlsServerProtocol(self), local_addr=(host, port)
        )
        self._udp.append((transport, protocol))
        return int(transport.get_extra_info("sockname")[1])

    async def close(self) -> None:
        """Stop listening and close every open channel."""
        for tcp in self._tcp_servers:
            tcp.close()
        for channel in self.registry.open_channels():
            await channel.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for transport, _ in self._udp:
            transport.close()
        for tcp in self._tcp_servers:
            await tcp.wait_closed()

    async def revoke(self, identity: str) -> int:
        """A session was revoked: close its channels and forget any key held for its handshakes."""
        self._cache.drop(identity)
        return await self.registry.close_identity(identity)

    @property
    def dtls_peers(self) -> int:
        return sum(len(protocol.peers) for _, protocol in self._udp)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _key_for(self, identity: str, peer: object) -> bool:
        try:
            key = await self.keys(identity)
        except Exception as exc:  # a key source failure refuses this handshake only
            log.warning(
                "no MIH PSK for identity %s from %s: key source failed (%s)", identity, peer, type(exc).__name__
            )
            return False
        if key is None or not 1 <= len(key) <= PSK_LENGTH:
            log.info("refused MIH PSK identity %s from %s: no key for it", identity, peer)
            return False
        self._cache.hold(identity, key)
        return True

    async def _tls_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        _nodelay(writer)
        engine = _Engine(self._tls_context.wrap_buffers())
        seen = bytearray()
        identity: str | None = None
        held = False
        try:
            async with asyncio.timeout(self.handshake_timeout):
                while engine.handshake() != "done":
                    _write(writer, engine.take_output())
                    await writer.drain()
                    data = await reader.read(_CHUNK)
                    if not data:
                        raise ChannelError("the peer closed the connection during the handshake")
                    if identity is None:
                        seen += data
                        if len(seen) > MAX_HANDSHAKE_BYTES:
                            raise ChannelError("too many octets before the ClientKeyExchange")
                        identity = peek_psk_identity(bytes(seen), datagram=False)
                        if identity is not None:
                            held = await self._key_for(identity, peer)
                    engine.feed(data)
                _write(writer, engine.take_output())
                await writer.drain()
        except (ChannelError, DecodeError, OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            log.info("TLS-PSK handshake from %s failed: %s", peer, reason)
            with contextlib.suppress(OSError):
                _write(writer, engine.take_output())  # the alert, if any
            writer.close()
            return
        finally:
            if held and identity is not None:
                self._cache.release(identity)
            if task is not None:
                self._tasks.discard(task)
        assert identity is not None
        channel = TlsChannel(engine, identity, reader, writer)
        await self._run(channel)

    async def _run(self, channel: Channel) -> None:
        self.registry.add(channel)
        log.info(
            "MIH %s channel from %s, PSK identity %s, %s",
            channel.transport_name,
            channel.peer,
            channel.identity,
            channel.cipher,
        )
        try:
            await self.handler(channel)
        except (ChannelError, OSError) as exc:
            log.info("MIH %s channel from %s ended: %s", channel.transport_name, channel.peer, exc)
        finally:
            self.registry.remove(channel)
            await channel.close()


class _DtlsPeer:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)


class _DtlsServerProtocol(asyncio.DatagramProtocol):
    """Demultiplexes one UDP socket by peer address. No state is kept for a peer before it returns our cookie
    (RFC 6347 §4.2.1), and at most ``max_dtls_peers`` peers are kept at all."""

    def __init__(self, server: PskServer) -> None:
        self.server = server
        self.peers: dict[object, _DtlsPeer] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        key = tuple(addr)
        peer = self.peers.get(key)
        if peer is not None:
            with contextlib.suppress(asyncio.QueueFull):
                peer.inbox.put_nowait(data)
            return
        if len(self.peers) >= self.server.max_dtls_peers:
            return
        buffer = self.server._dtls_context.wrap_buffers()
        buffer.setcookieparam(repr(key).encode("ascii", "replace"))  # the cookie binds the peer's address
        engine = _Engine(buffer)
        try:
            engine.feed(data)
            step = engine.handshake()
        except (ChannelError, TLSError):
            return  # not a ClientHello we can answer: nothing kept
        out = engine.take_output()
        if out:
            self._sendto(out, key)
        if step == "hello-verify" or buffer._handshake_state.name == "SERVER_HELLO_VERIFY_REQUEST_SENT":
            return  # stateless until the peer echoes the cookie
        if not out:
            return
        peer = _DtlsPeer(engine)
        self.peers[key] = peer
        self.server._spawn(self._run_peer(key, peer))

    def _sendto(self, data: bytes, addr: tuple[object, ...]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    async def _run_peer(self, key: tuple[object, ...], peer: _DtlsPeer) -> None:
        server = self.server
        identity: str | None = None
        held = False
        engine = peer.engine

        def sendto(data: bytes) -> None:
            self._sendto(data, key)

        async def identify(data: bytes) -> None:
            nonlocal identity, held
            if identity is None:
                identity = peek_psk_identity(data, datagram=True)
                if identity is not None:
                    held = await server._key_for(identity, key)

        try:
            async with asyncio.timeout(server.handshake_timeout):
                await _dtls_server_handshake(engine, peer.inbox, sendto, identify)
        except (ChannelError, DecodeError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            log.info("DTLS-PSK handshake from %s failed: %s", key, reason)
            with contextlib.suppress(OSError):
                sendto(engine.take_output())
            self.peers.pop(key, None)
            return
        finally:
            if held and identity is not None:
                server._cache.release(identity)
        assert identity is not None

        def release() -> None:
            if self.peers.get(key) is peer:
                del self.peers[key]

        channel = DtlsChannel(engine, identity, key, peer.inbox, sendto, release)
        await server._run(channel)


async def _dtls_server_handshake(
    engine: _Engine,
    inbox: asyncio.Queue[bytes | None],
    sendto: Callable[[bytes], None],
    before_feed: Callable[[bytes], Awaitable[None]],
) -> None:
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
        await before_feed(data)
        engine.feed(data)


# ------------------------------------------------------------------------------------------ key source


@dataclass(frozen=True)
class RestKeySource:
    """A :data:`KeySource` that asks the key service (``POST /v1/mih/psk``) with a ``mos`` token.

    One HTTP client (and its kept-alive connections) serves every handshake of one event loop: making a client
    per handshake cost about 25 ms (its TLS context) before the request even left. :meth:`aclose` releases it.
    """

    base_url: str
    token: str = field(repr=False)
    mihf_id: str
    timeout: float = 5.0
    verify: bool | str = True  # TLS verification of the key service (a CA file path, or False for tests)
    _clients: dict[int, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is None or entry[0] is not loop:
            # a client's connections belong to the loop that opened them
            for key, (old_loop, _) in list(self._clients.items()):
                if old_loop.is_closed():
                    del self._clients[key]
            client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, verify=self.verify)
            entry = (loop, client)
            self._clients[id(loop)] = entry
        return entry[1]

    async def __call__(self, identity: str) -> bytes | None:
        response = await self._client().post(
            "/v1/mih/psk",
            json={"psk_identity": identity, "mihf_id": self.mihf_id},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if response.status_code == 200:
            return bytes.fromhex(response.json()["psk"])
        reason = ""
        with contextlib.suppress(ValueError):
            reason = str(response.json().get("reason", ""))
        log.info("key service refused PSK identity %s: %d %s", identity, response.status_code, reason)
        return None

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop."""
        entry = self._clients.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[1].aclose()
