"""MIH over DTLS 1.2-PSK and TLS 1.2-PSK: the RFC 5677 cores of :mod:`~aaa_fmip.mih.transport` run on the
channels of :mod:`~aaa_fmip.mih.psk`, for the MoS (:class:`SecureMIHServer`) and for the node
(:func:`open_session`, keyed with the PSK the node derives itself, :func:`aaa_fmip.mn.derive_mih_psk`).

The seam: :class:`~aaa_fmip.mih.psk.PskServer` owns the sockets and the handshakes (it awaits the MoS's key
from the key service between the ClientKeyExchange and mbed TLS's key look-up, which a synchronous
:class:`~aaa_fmip.mih.server.ByteChannel` cannot do); each established channel is handed to
:class:`MIHChannelSession`, which feeds what the channel decrypts into the same sans-IO cores the plain
transport uses:

* TLS (TCP 4551): :class:`~aaa_fmip.mih.transport.StreamCore` splits the decrypted byte stream into frames;
  no MIH ACKs, no fragmentation (RFC 5677 §6).
* DTLS (UDP 4551): one MIH frame per DTLS record, and :class:`~aaa_fmip.mih.transport.DatagramCore` keeps the
  RFC 5677 §6 UDP rules inside the channel: MIH ACKs, RFC 2988 retransmission, duplicate detection by TID.
  DTLS does not retransmit application data, so the MIH ACK is still what makes a transaction reliable.
  Frames are kept :data:`DTLS_OVERHEAD` octets below the plain UDP limit so that a record still fits the path
  MTU (§6.1: no IP fragmentation).

Revocation: :class:`RevocationFollower` reads the key service's audit trail
(``GET /v1/audit?event=session.revoked``, an ``auditor`` token: the ``mos`` role does not read the trail) and
closes the open channels whose PSK identity is the revoked session's HMK-Name; new handshakes of a revoked
session already fail because the key service refuses its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aaa_fmip.errors import DecodeError
from aaa_fmip.keys import HandoverMasterKey, MihPsk
from aaa_fmip.mih import psk as mihpsk
from aaa_fmip.mih.transport import (
    MAX_UDP_PAYLOAD,
    DatagramCore,
    Event,
    FrameRejected,
    Handler,
    MessageReceived,
    MessageTooLarge,
    PeerInfo,
    StreamCore,
    TransactionFailed,
)
from aaa_fmip.wire import mih

__all__ = [
    "DTLS_OVERHEAD",
    "MIHChannelSession",
    "RevocationFollower",
    "SecureMIHClient",
    "SecureMIHServer",
    "open_session",
]

log = logging.getLogger("aaa_fmip.mih.secure")

# RFC 6347 §4.1 record header (13) + RFC 5288 §3 AES-GCM explicit nonce (8) and tag (16); the CBC suites of
# psk.CIPHERS need at most 13 + 16 (IV) + 32 (SHA-256 MAC) + 16 (padding) = 77.
DTLS_OVERHEAD = 77
SECURE_UDP_PAYLOAD = MAX_UDP_PAYLOAD - DTLS_OVERHEAD

Transport = Literal["tcp", "udp"]


class MIHChannelSession:
    """RFC 5677 on one established DTLS/TLS channel: frames in, ``on_frame`` called, frames out.

    ``on_frame(frame)`` returns the answer to send (or None). Over DTLS every frame sent asks for an MIH ACK
    and is retransmitted by the :class:`DatagramCore` timer until acknowledged.
    """

    def __init__(
        self,
        channel: mihpsk.Channel,
        mihf_id: bytes,
        on_frame: Callable[[mih.Frame], mih.Frame | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        on_failed: Callable[[int], None] | None = None,
        idle_timeout: float | None = None,
        **udp_options: Any,
    ) -> None:
        self.channel = channel
        self.idle_timeout = idle_timeout
        self.on_frame = on_frame
        self.on_failed = on_failed
        self.clock = clock
        self.datagram = channel.transport_name == "dtls"
        udp_options.setdefault("max_datagram", SECURE_UDP_PAYLOAD)
        # the peer authenticated with the session's key: it is not rate-limited as an anonymous source would be
        udp_options.setdefault("rate", 1e9)
        udp_options.setdefault("burst", 1e9)
        self.udp = DatagramCore(mihf_id, **udp_options) if self.datagram else None
        self.stream = None if self.datagram else StreamCore(channel.peer)
        self._wake = asyncio.Event()
        self.counters: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def send(self, frame: mih.Frame) -> None:
        """Send one frame (over DTLS: reliably, with MIH ACK and retransmission)."""
        if self.udp is not None:
            self.udp.send(frame, self.channel.peer, self.clock())
            await self._flush()
        else:
            await self.channel.send(StreamCore.encode(frame))

    async def _flush(self) -> None:
        assert self.udp is not None
        for data, _peer in self.udp.datagrams_to_send():
            await self.channel.send(data)
        self._wake.set()

    async def _events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, MessageReceived):
                answer = self.on_frame(event.frame)
                if answer is not None:
                    try:
                        await self.send(answer)
                    except MessageTooLarge as exc:
                        self._count("response-too-large")
                        log.warning("mih response dropped", extra={"reason": "message-too-large", "detail": str(exc)})
            elif isinstance(event, FrameRejected):
                self._count(event.reason)
                log.debug("mih input dropped", extra={"reason": event.reason, "detail": event.detail})
            elif isinstance(event, TransactionFailed):
                self._count("transaction-failed")
                if self.on_failed is not None:
                    self.on_failed(event.transaction_id)

    async def run(self) -> None:
        """Serve the channel until it closes (peer's close_notify, revocation, transport gone) or, with
        ``idle_timeout``, until nothing arrived for that long (a node that left without closing: over DTLS
        nothing else would ever free its peer slot)."""
        timers = asyncio.ensure_future(self._timers()) if self.udp is not None else None
        try:
            while data := await self._receive():
                if self.udp is not None:
                    events = self.udp.receive(data, self.channel.peer, self.clock())
                    await self._events(events)
                    await self._flush()
                else:
                    assert self.stream is not None
                    await self._events(self.stream.receive(data))
        finally:
            if timers is not None:
                timers.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timers

    async def _receive(self) -> bytes:
        if self.idle_timeout is None:
            return await self.channel.recv()
        try:
            async with asyncio.timeout(self.idle_timeout):
                return await self.channel.recv()
        except TimeoutError:
            self._count("idle-closed")
            log.info("mih channel idle, closing", extra={"peer": str(self.channel.peer)})
            await self.channel.close()
            return b""

    async def _timers(self) -> None:
        assert self.udp is not None
        while not self.channel.closed:
            self._wake.clear()
            deadline = self.udp.next_timer()
            if deadline is None:
                await self._wake.wait()
                continue
            delay = deadline - self.clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            await self._events(self.udp.handle_timer(self.clock()))
            with contextlib.suppress(mihpsk.ChannelError):
                await self._flush()


# --------------------------------------------------------------------------------------------- the MoS


class SecureMIHServer:
    """A MoS serving MIH on DTLS 1.2-PSK (UDP) and TLS 1.2-PSK (TCP), one port for both (RFC 5677 §6).

    ``keys`` gives the PSK of an identity (:class:`~aaa_fmip.mih.psk.RestKeySource` in production); ``handler``
    is the same ``(frame, PeerInfo) -> frame | None`` the plain :class:`~aaa_fmip.mih.server.MIHServer`
    takes (the Information Server's ``handle_frame``); DTLS peers are ``PeerInfo("udp", ...)``, TLS peers
    ``PeerInfo("tcp", ...)``. A channel on which nothing arrives for ``idle_timeout`` seconds is closed (as the
    plain server closes idle TCP connections).
    """

    def __init__(
        self,
        mihf_id: bytes,
        handler: Handler,
        keys: mihpsk.KeySource,
        *,
        clock: Callable[[], float] = time.monotonic,
        handshake_timeout: float = mihpsk.HANDSHAKE_TIMEOUT,
        idle_timeout: float = 300.0,
        **udp_options: Any,
    ) -> None:
        self.mihf_id = mihf_id
        self.handler = handler
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.udp_options = udp_options
        self.psk = mihpsk.PskServer(keys, self._serve, handshake_timeout=handshake_timeout)
        self.counters: dict[str, int] = {}
        self.port = 0

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def start(self, host: str, port: int = mih.MIH_PORT) -> None:
        """Listen for TLS on TCP and DTLS on UDP at ``host``:``port`` (port 0: one free port for both)."""
        for _attempt in range(20):
            tcp_port = await self.psk.start_tls(host, port)
            try:
                await self.psk.start_dtls(host, tcp_port)
            except OSError:
                if port:
                    raise
                server = self.psk._tcp_servers.pop()
                server.close()
                await server.wait_closed()
                continue
            self.port = tcp_port
            log.info("mih psk server listening", extra={"host": host, "port": tcp_port, "transports": "dtls,tls"})
            return
        raise OSError("no port free on both TCP and UDP")

    async def revoke(self, identity: str) -> int:
        """Close the open channels of a revoked session's PSK identity; returns how many were open."""
        return await self.psk.revoke(identity)

    async def close(self) -> None:
        await self.psk.close()

    async def _serve(self, channel: mihpsk.Channel) -> None:
        info = PeerInfo("udp" if channel.transport_name == "dtls" else "tcp", channel.peer)
        self._count(f"{channel.transport_name}-channels")

        def answer(frame: mih.Frame) -> mih.Frame | None:
            try:
                return self.handler(frame, info)
            except Exception:  # a handler bug must not stop the server
                self._count("handler-error")
                log.exception("mih handler failed", extra={"transport": info.transport})
                return None

        session = MIHChannelSession(
            channel, self.mihf_id, answer, clock=self.clock, idle_timeout=self.idle_timeout, **self.udp_options
        )
        try:
            await session.run()
        finally:
            for name, count in session.counters.items():
                self.counters[name] = self.counters.get(name, 0) + count


# -------------------------------------------------------------------------------------------- the node


class SecureMIHClient:
    """A node's MIH session with a MoS over DTLS/TLS-PSK: :meth:`request`, :meth:`get_information`."""

    def __init__(self, channel: mihpsk.Channel, mihf_id: bytes, mos_mihf_id: bytes, **udp_options: Any) -> None:
        self.channel = channel
        self.mihf_id = mihf_id
        self.mos_mihf_id = mos_mihf_id
        self._waiters: dict[int, asyncio.Future[mih.Frame]] = {}
        self._session = MIHChannelSession(channel, mihf_id, self._answer, on_failed=self._failed, **udp_options)
        self._runner = asyncio.ensure_future(self._run())
        self._next_tid = 1

    @property
    def transport(self) -> Transport:
        return "udp" if self.channel.transport_name == "dtls" else "tcp"

    def next_transaction_id(self) -> int:
        tid = self._next_tid
        self._next_tid = tid % 0xFFF + 1
        return tid

    def _answer(self, frame: mih.Frame) -> None:
        waiter = self._waiters.pop(frame.header.transaction_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(frame)

    def _failed(self, tid: int) -> None:
        waiter = self._waiters.pop(tid, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError(f"no MIH ACK for TID {tid} after retransmissions"))

    async def _run(self) -> None:
        try:
            await self._session.run()
        except (mihpsk.ChannelError, OSError) as exc:
            log.info("mih psk session ended", extra={"reason": str(exc)})
        finally:
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("the MIH channel was closed"))
            self._waiters.clear()

    async def request(self, frame: mih.Frame, *, timeout: float = 120.0) -> mih.Frame:
        """Send a request frame and wait for the frame answering its TID."""
        if self.channel.closed or self._runner.done():
            raise ConnectionError("the MIH channel is closed")
        tid = frame.header.transaction_id
        waiter: asyncio.Future[mih.Frame] = asyncio.get_running_loop().create_future()
        self._waiters[tid] = waiter
        try:
            await self._session.send(frame)
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._waiters.pop(tid, None)

    async def get_information(
        self, poa_link_address: mih.LinkAddress, *, timeout: float = 120.0
    ) -> mih.GetInformationResponse:
        """MIH_Get_Information for the neighbours of the point of attachment ``poa_link_address``."""
        request = mih.GetInformationRequest(
            source=self.mihf_id,
            destination=self.mos_mihf_id,
            transaction_id=self.next_transaction_id(),
            queries=(mih.IQBinData(querier_link_address=poa_link_address),),
        )
        frame = await self.request(mih.decode_frame(mih.encode_message(request)), timeout=timeout)
        answer = mih.decode_message(frame)  # DecodeError for an answer that is not 802.21
        if not isinstance(answer, mih.GetInformationResponse):
            raise DecodeError(
                f"expected an MIH_Get_Information response, got {type(answer).__name__}", field="mih.mid", offset=0
            )
        return answer

    async def close(self) -> None:
        await self.channel.close()
        self._runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner


async def open_session(
    master: HandoverMasterKey | MihPsk,
    mos_mihf_id: str,
    host: str,
    port: int = mih.MIH_PORT,
    *,
    transport: Transport = "tcp",
    node_mihf_id: bytes,
    timeout: float = mihpsk.HANDSHAKE_TIMEOUT,
    **udp_options: Any,
) -> SecureMIHClient:
    """Open a PSK-secured MIH session with the MoS ``mos_mihf_id`` at ``host``:``port``.

    ``master`` is the node's :class:`~aaa_fmip.keys.HandoverMasterKey` (the key for this MoS is derived here
    with :func:`aaa_fmip.mn.derive_mih_psk`, never fetched), or an already derived :class:`MihPsk`.
    ``transport`` "tcp" runs TLS 1.2-PSK (the RFC 5677 default), "udp" DTLS 1.2-PSK. Raises
    :class:`~aaa_fmip.mih.psk.ChannelError` when the handshake fails (wrong MoS, revoked session).
    """
    from aaa_fmip import mn

    key = master if isinstance(master, MihPsk) else mn.derive_mih_psk(master, mos_mihf_id)
    if key.mihf_id != mos_mihf_id:
        raise ValueError("the PSK was derived for another MoS")
    connect = mihpsk.connect_dtls if transport == "udp" else mihpsk.connect_tls
    channel = await connect(host, port, identity=key.identity, psk=key.psk.reveal(), timeout=timeout)
    return SecureMIHClient(channel, node_mihf_id, mos_mihf_id.encode(), **udp_options)


# -------------------------------------------------------------------------------------- revocations


@dataclass
class RevocationFollower:
    """Follows ``session.revoked`` entries of the key service's audit trail and calls ``on_revoked(identity)``
    (the PSK identity: the entry's HMK-Name in hex) for each one, every ``interval`` seconds.

    It starts at entries written from ``since`` on (the MoS's start, less a margin); the position is kept
    as the audit stream's cursor. The token must be of a role that reads the trail (``auditor``).
    """

    base_url: str
    token: str = field(repr=False)
    on_revoked: Callable[[str], Awaitable[int]]
    interval: float = 5.0
    since: float = field(default_factory=lambda: time.time() - 60)
    verify: bool | str = True
    timeout: float = 5.0
    cursor: str | None = None
    counters: dict[str, int] = field(default_factory=dict)

    async def poll(self) -> list[str]:
        """One read of what is new; returns the identities revoked (each already handed to ``on_revoked``)."""
        import httpx

        revoked: list[str] = []
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, verify=self.verify) as client:
            for _page in range(100):  # bounded: at most 100 pages a poll, the rest on the next one
                params: dict[str, Any] = {"event": "session.revoked", "since": f"{self.since:.3f}", "limit": 1000}
                if self.cursor is not None:
                    params["cursor"] = self.cursor
                response = await client.get(
                    "/v1/audit", params=params, headers={"Authorization": f"Bearer {self.token}"}
                )
                if response.status_code != 200:
                    reason = ""
                    with contextlib.suppress(ValueError, AttributeError):
                        reason = str(response.json().get("reason", ""))
                    self.counters["poll-refused"] = self.counters.get("poll-refused", 0) + 1
                    log.warning("cannot read revocations", extra={"status": response.status_code, "reason": reason})
                    return revoked
                page = response.json()
                for entry in page["entries"]:
                    self.cursor = str(entry["id"])
                    hmk_name = entry.get("fields", {}).get("hmk_name")
                    if isinstance(hmk_name, str):
                        revoked.append(hmk_name)
                        closed = await self.on_revoked(hmk_name)
                        self.counters["revoked"] = self.counters.get("revoked", 0) + 1
                        if closed:
                            self.counters["channels-closed"] = self.counters.get("channels-closed", 0) + closed
                if page.get("next_cursor") is None:
                    return revoked
                self.cursor = str(page["next_cursor"])
        return revoked

    async def run(self) -> None:
        """Poll until cancelled; a failed poll is logged and retried at the next interval."""
        while True:
            try:
                await self.poll()
            except Exception as exc:  # the key service unreachable: keep serving, try again
                self.counters["poll-failed"] = self.counters.get("poll-failed", 0) + 1
                log.warning("cannot read revocations", extra={"error": type(exc).__name__, "detail": str(exc)[:200]})
            await asyncio.sleep(self.interval)
