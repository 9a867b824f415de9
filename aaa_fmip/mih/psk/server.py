"""The MoS's side: :class:`PskServer` (TLS on TCP, DTLS on UDP, the key awaited before mbed TLS asks for it) and
:class:`RestKeySource` (the key service's ``POST /v1/mih/psk``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

from mbedtls import tls
from mbedtls.exceptions import TLSError

from aaa_fmip.errors import DecodeError
from aaa_fmip.mih.psk._engine import (
    _CHUNK,
    HANDSHAKE_TIMEOUT,
    MAX_DTLS_PEERS,
    MAX_HANDSHAKE_BYTES,
    MIH_PORT,
    PSK_LENGTH,
    ChannelError,
    KeySource,
    _configuration,
    _Engine,
    _KeyCache,
    peek_psk_identity,
)
from aaa_fmip.mih.psk.channels import (
    Channel,
    ChannelRegistry,
    DtlsChannel,
    Handler,
    TlsChannel,
    _dtls_handshake,
    _nodelay,
    _write,
)

log = logging.getLogger("aaa_fmip.mih.psk")


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
                await _dtls_handshake(engine, peer.inbox, sendto, identify)
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
