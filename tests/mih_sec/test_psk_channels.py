"""The DTLS/TLS-PSK channels in one process: identity peeking (fuzzed: only DecodeError escapes), the registry
closing a revoked identity's channels, refusals, and no state for a UDP flood of ClientHellos without cookie."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip.errors import DecodeError
from aaa_fmip.mih import psk as mihpsk
from aaa_fmip.mih.psk._engine import _KeyCache

IDENTITY = "0011223344556677"
KEY = bytes(range(32))


async def _keys(identity: str) -> bytes | None:
    return KEY if identity == IDENTITY else None


async def _echo(channel: mihpsk.Channel) -> None:
    while data := await channel.recv():
        await channel.send(b"echo:" + data)


def _tls_cke(identity: bytes) -> bytes:
    body = struct.pack("!H", len(identity)) + identity
    hs = bytes((16,)) + len(body).to_bytes(3, "big") + body
    return bytes((22, 3, 3)) + struct.pack("!H", len(hs)) + hs


def _dtls_cke(identity: bytes, *, epoch: int = 0) -> bytes:
    body = struct.pack("!H", len(identity)) + identity
    hs = bytes((16,)) + len(body).to_bytes(3, "big") + b"\x00\x02" + b"\x00\x00\x00" + len(body).to_bytes(3, "big")
    hs += body
    return bytes((22, 0xFE, 0xFD)) + struct.pack("!H", epoch) + bytes(6) + struct.pack("!H", len(hs)) + hs


def test_peek_finds_the_identity() -> None:
    hello = bytes((22, 3, 3, 0, 4)) + bytes((1, 0, 0, 0))  # an (empty) ClientHello record first
    assert mihpsk.peek_psk_identity(hello + _tls_cke(IDENTITY.encode()), datagram=False) == IDENTITY
    assert mihpsk.peek_psk_identity(_dtls_cke(IDENTITY.encode()), datagram=True) == IDENTITY
    assert mihpsk.peek_psk_identity(_dtls_cke(IDENTITY.encode(), epoch=1), datagram=True) is None  # encrypted
    whole = _tls_cke(IDENTITY.encode())
    for cut in range(len(whole)):  # a stream cut anywhere: not yet
        assert mihpsk.peek_psk_identity(whole[:cut], datagram=False) is None
    ccs_first = bytes((20, 3, 3, 0, 1, 1)) + whole
    assert mihpsk.peek_psk_identity(ccs_first, datagram=False) is None


@pytest.mark.parametrize("identity", [b"\x00bad", b"with space", "é".encode(), b"x" * (mihpsk.MAX_IDENTITY_LENGTH + 1)])
def test_peek_refuses_identities_that_are_not_ours(identity: bytes) -> None:
    with pytest.raises(DecodeError):
        mihpsk.peek_psk_identity(_tls_cke(identity), datagram=False)


def test_a_truncated_datagram_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        mihpsk.peek_psk_identity(_dtls_cke(IDENTITY.encode())[:-3], datagram=True)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_peek_any_bytes_gives_a_result_or_decode_error(data: bytes, datagram: bool) -> None:
    try:
        result = mihpsk.peek_psk_identity(data, datagram=datagram)
    except DecodeError:
        return
    assert result is None or (isinstance(result, str) and result.isascii())


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.booleans())
def test_peek_mutated_client_key_exchange(noise: bytes, datagram: bool) -> None:
    base = bytearray(_dtls_cke(IDENTITY.encode()) if datagram else _tls_cke(IDENTITY.encode()))
    for i, b in enumerate(noise):
        base[(i * 7) % len(base)] ^= b
    with contextlib.suppress(DecodeError):
        mihpsk.peek_psk_identity(bytes(base), datagram=datagram)


def test_channels_both_transports_and_revocation_closes_them() -> None:
    async def scenario() -> None:
        server = mihpsk.PskServer(_keys, _echo)
        tcp, udp = await server.start_tls("127.0.0.1", 0), await server.start_dtls("127.0.0.1", 0)
        try:
            t = await mihpsk.connect_tls("127.0.0.1", tcp, identity=IDENTITY, psk=KEY)
            d = await mihpsk.connect_dtls("127.0.0.1", udp, identity=IDENTITY, psk=KEY)
            await t.send(b"stream")
            await d.send(b"datagram")
            assert await t.recv() == b"echo:stream"
            assert await d.recv() == b"echo:datagram"
            assert {c.transport_name for c in server.registry.open_channels(IDENTITY)} == {"tls", "dtls"}
            assert await server.revoke(IDENTITY) == 2
            async with asyncio.timeout(10):
                assert await t.recv() == b""  # close_notify from the MoS
                assert await d.recv() == b""
            assert t.closed and d.closed and server.registry.open_channels() == []
            assert server.dtls_peers == 0
            with pytest.raises(mihpsk.ChannelError):
                await t.send(b"after revocation")
            assert await server.revoke(IDENTITY) == 0
        finally:
            await server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", ["tls", "dtls"])
def test_unknown_identity_and_wrong_key_are_refused(transport: str) -> None:
    async def scenario() -> None:
        server = mihpsk.PskServer(_keys, _echo)
        start = server.start_tls if transport == "tls" else server.start_dtls
        connect = mihpsk.connect_tls if transport == "tls" else mihpsk.connect_dtls
        port = await start("127.0.0.1", 0)
        try:
            with pytest.raises(mihpsk.ChannelError, match="handshake"):
                await connect("127.0.0.1", port, identity="ffffffffffffffff", psk=KEY, timeout=8)
            with pytest.raises(mihpsk.ChannelError, match="handshake"):
                await connect("127.0.0.1", port, identity=IDENTITY, psk=bytes(32), timeout=8)
            assert server.registry.open_channels() == [] and len(server._cache) == 0
        finally:
            await server.close()

    asyncio.run(scenario())


def test_a_key_source_failure_refuses_only_that_handshake() -> None:
    calls: list[str] = []

    async def flaky(identity: str) -> bytes | None:
        calls.append(identity)
        if len(calls) == 1:
            raise OSError("key service unreachable")
        return KEY

    async def scenario() -> None:
        server = mihpsk.PskServer(flaky, _echo)
        port = await server.start_tls("127.0.0.1", 0)
        try:
            with pytest.raises(mihpsk.ChannelError):
                await mihpsk.connect_tls("127.0.0.1", port, identity=IDENTITY, psk=KEY, timeout=8)
            channel = await mihpsk.connect_tls("127.0.0.1", port, identity=IDENTITY, psk=KEY)
            await channel.send(b"x")
            assert await channel.recv() == b"echo:x"
            await channel.close()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_a_flood_of_client_hellos_keeps_no_state() -> None:
    """ClientHellos without a cookie get a HelloVerifyRequest and leave nothing behind (RFC 6347 §4.2.1); junk is
    dropped; the table of peers is bounded."""

    async def scenario() -> None:
        server = mihpsk.PskServer(_keys, _echo, max_dtls_peers=2)
        port = await server.start_dtls("127.0.0.1", 0)
        try:
            # a real first ClientHello, captured from our own client
            hello = await _first_client_hello(port)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(("127.0.0.1", 0))
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(30):
                for _ in range(150):
                    await loop.sock_sendto(sock, os.urandom(100), ("127.0.0.1", port))  # junk: no answer
                    await loop.sock_sendto(sock, hello, ("127.0.0.1", port))
                    answer = await loop.sock_recv(sock, 2048)
                    assert answer[0] == 22 and answer[13] == 3  # handshake record, HelloVerifyRequest
            assert server.dtls_peers == 0 and len(server._tasks) == 0
            sock.close()
            # two real peers fill the table; a third is not served until one leaves
            a = await mihpsk.connect_dtls("127.0.0.1", port, identity=IDENTITY, psk=KEY)
            b = await mihpsk.connect_dtls("127.0.0.1", port, identity=IDENTITY, psk=KEY)
            assert server.dtls_peers == 2
            with pytest.raises(mihpsk.ChannelError, match="timed out"):
                await mihpsk.connect_dtls("127.0.0.1", port, identity=IDENTITY, psk=KEY, timeout=2)
            await a.close()
            await b.close()
            async with asyncio.timeout(10):
                while server.dtls_peers:
                    await asyncio.sleep(0.05)
        finally:
            await server.close()

    asyncio.run(scenario())


async def _first_client_hello(port: int) -> bytes:
    """The first datagram our DTLS client sends (a ClientHello without cookie), caught on a throwaway socket."""
    trap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trap.bind(("127.0.0.1", 0))
    trap.setblocking(False)
    loop = asyncio.get_running_loop()
    attempt = asyncio.ensure_future(
        mihpsk.connect_dtls("127.0.0.1", trap.getsockname()[1], identity=IDENTITY, psk=KEY, timeout=3)
    )
    try:
        async with asyncio.timeout(5):
            data = await loop.sock_recv(trap, 2048)
    finally:
        attempt.cancel()
        trap.close()
        with pytest.raises((asyncio.CancelledError, mihpsk.ChannelError)):
            await attempt
    assert data[0] == 22 and port > 0
    return data


def test_bad_client_arguments() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="PSK must be"):
            await mihpsk.connect_tls("127.0.0.1", 1, identity=IDENTITY, psk=bytes(33))
        with pytest.raises(ValueError, match="identity"):
            await mihpsk.connect_dtls("127.0.0.1", 1, identity="", psk=KEY)
        with pytest.raises(mihpsk.ChannelError, match="cannot connect"):
            await mihpsk.connect_tls("127.0.0.1", _closed_port(), identity=IDENTITY, psk=KEY, timeout=3)

    asyncio.run(scenario())


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_key_octets_never_in_repr() -> None:
    cache = _KeyCache()
    cache.hold(IDENTITY, KEY)
    cache.hold(IDENTITY, KEY)
    assert KEY.hex() not in repr(cache) and str(KEY) not in repr(cache)
    cache.release(IDENTITY)
    assert IDENTITY in cache
    cache.release(IDENTITY)
    assert IDENTITY not in cache
    source = mihpsk.RestKeySource("http://127.0.0.1:1", "secret-token", "mos1.example.net")
    assert "secret-token" not in repr(source)


class _LossyRelay(asyncio.DatagramProtocol):
    """A UDP relay between one client and the server that drops chosen datagrams (by their index per direction)."""

    def __init__(self, server: tuple[str, int], drop_to_client: set[int], drop_to_server: set[int]) -> None:
        self.server = server
        self.drop = {"to-client": drop_to_client, "to-server": drop_to_server}
        self.count = {"to-client": 0, "to-server": 0}
        self.dropped = 0
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        direction = "to-client" if addr == self.server else "to-server"
        if direction == "to-server":
            self.client = addr
        index = self.count[direction]
        self.count[direction] += 1
        if index in self.drop[direction]:
            self.dropped += 1
            return
        target = self.server if direction == "to-server" else self.client
        if target is not None:
            self.transport.sendto(data, target)


@pytest.mark.parametrize(
    ("to_client", "to_server"),
    [
        ({1}, set()),  # the server's ServerHello flight is lost: the client resends its ClientHello
        (set(), {2}),  # the client's ClientKeyExchange..Finished flight is lost: it is resent after 1 s
        ({2}, set()),  # the server's Finished flight is lost
    ],
)
def test_dtls_handshake_survives_a_lost_flight(to_client: set[int], to_server: set[int]) -> None:
    """RFC 6347 §4.2.4: a lost handshake flight is retransmitted when the timer (1 s, doubling) expires."""

    async def scenario() -> None:
        server = mihpsk.PskServer(_keys, _echo)
        port = await server.start_dtls("127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        relay = _LossyRelay(("127.0.0.1", port), to_client, to_server)
        transport, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))
        try:
            relay_port = transport.get_extra_info("sockname")[1]
            channel = await mihpsk.connect_dtls("127.0.0.1", relay_port, identity=IDENTITY, psk=KEY, timeout=15)
            await channel.send(b"after loss")
            async with asyncio.timeout(10):
                assert await channel.recv() == b"echo:after loss"
            assert relay.dropped == 1
            await channel.close()
        finally:
            transport.close()
            await server.close()

    asyncio.run(scenario())
