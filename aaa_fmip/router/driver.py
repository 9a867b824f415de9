"""The asyncio driver of the access-router agent: raw sockets in, :class:`RouterCore` events, effects out.

Sockets (architecture.md §8; facts checked on a kernel without ``CONFIG_IPV6_MIP6``):

* **MH with a Home Address option** (every RFC-conformant FBU): such a kernel drops the packet before any
  protocol-135 socket sees it (answering Parameter Problem), but a raw socket for protocol 60 (Destination
  Options) receives a copy first: extension headers and all, without the IPv6 header. The driver puts the
  addresses (from ``recvmsg`` and ``IPV6_PKTINFO``) back in front and parses the chain itself
  (:func:`aaa_fmip.wire.ipv6.parse_ipv6_packet`); the MH checksum is then checked with the home address as the
  pseudo-header source (architecture §3).
* **MH without it** (HI, HAck, a reactive FBU sent without the option): a raw protocol-135 socket, on which
  the kernel checks the checksum (``IPV6_CHECKSUM`` offset 4). The same socket sends every MH; the kernel fills
  the checksum. The source address is chosen per datagram with ``IPV6_PKTINFO``.
* **ICMPv6** (RtSolPr in, PrRtAdv out): a raw ICMPv6 socket filtered to type 154, Hop Limit 255 on send.

The driver only moves bytes and time; every decision is the core's (:mod:`aaa_fmip.router.core`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any, Final

from aaa_fmip.errors import DecodeError
from aaa_fmip.radius.ar import PushedHandoverKey
from aaa_fmip.router import core
from aaa_fmip.router.keycache import HandoverKeyCache, KeyServiceError, KeyUnknown, RestKeyService, Verifier
from aaa_fmip.router.metrics import RouterMetrics
from aaa_fmip.router.p2p import P2PLinks
from aaa_fmip.router.verify import FbuVerdict, ReceivedMh
from aaa_fmip.wire import ipv6 as ipv6wire

__all__ = ["RawSockets", "RouterAgent", "interface_addresses"]

log = logging.getLogger("aaa_fmip.router")

IPPROTO_MH: Final = 135
IPPROTO_DSTOPTS: Final = 60
IPV6_CHECKSUM: Final = 7  # <netinet/in.h>; RFC 3542 §3.1
ICMP6_FILTER: Final = 1  # <netinet/icmp6.h>, level IPPROTO_ICMPV6
FMIPV6_ICMP_TYPE: Final = 154  # RFC 5568 §6.1
P2P_ND_TYPES: Final = (133, 136)  # RS and NA (the UNA) of nodes on per-node links (RFC 5568 §6.3)
_CMSG_SPACE: Final = socket.CMSG_SPACE(20)
_HOUSEKEEPING: Final = 10.0  # seconds between cache and replay-state expiry sweeps

# Notices worth a warning: an operator should see them without debug logging.
_WARN: Final = frozenset(
    {"fbu.rejected", "hi.no-hack", "fbu.unknown-nar", "hack.unknown-router", "hack.ncoa-outside-prefix"}
)
_DEBUG: Final = frozenset({"mh.ignored", "prrtadv.sent"})


def _pktinfo(address: IPv6Address, ifindex: int = 0) -> tuple[int, int, bytes]:
    return socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, address.packed + struct.pack("@I", ifindex)


def _destination(ancillary: list[tuple[int, int, bytes]]) -> tuple[IPv6Address | None, int]:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            return IPv6Address(data[:16]), struct.unpack("@I", data[16:20])[0]
    return None, 0


def interface_addresses(name: str) -> tuple[IPv6Address | None, bytes]:
    """The fe80:: address and the MAC of interface ``name`` (from /proc and /sys; empty when absent)."""
    link_local = None
    with contextlib.suppress(OSError), open("/proc/net/if_inet6", encoding="ascii") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == name and fields[0].startswith("fe80"):
                link_local = IPv6Address(bytes.fromhex(fields[0]))
                break
    mac = b""
    with contextlib.suppress(OSError, ValueError), open(f"/sys/class/net/{name}/address", encoding="ascii") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    return link_local, mac


@dataclass
class RawSockets:
    """The three raw sockets, non-blocking (needs CAP_NET_RAW)."""

    mh: socket.socket
    dstopts: socket.socket
    icmp: socket.socket

    @classmethod
    def open(cls, *, per_node_links: bool = False) -> RawSockets:
        mh = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        mh.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 4)  # RFC 6275 §6.1.1: checksum at MH offset 4
        dstopts = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_DSTOPTS)
        icmp = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        blocked = [0xFFFFFFFF] * 8  # a set bit blocks the type (RFC 3542 §3.2, Linux layout)
        for kind in (FMIPV6_ICMP_TYPE, *(P2P_ND_TYPES if per_node_links else ())):
            blocked[kind >> 5] &= ~(1 << (kind & 31))
        icmp.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("@8I", *blocked))
        icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)  # RFC 5568 §6.1
        icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        for s in (mh, dstopts, icmp):
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            s.setblocking(False)
        return cls(mh, dstopts, icmp)

    def close(self) -> None:
        for s in (self.mh, self.dstopts, self.icmp):
            s.close()


class RouterAgent:
    """Runs one :class:`RouterCore` on raw sockets until :meth:`stop`."""

    def __init__(
        self,
        router: core.RouterCore,
        verifier: Verifier,
        *,
        metrics: RouterMetrics | None = None,
        sockets: RawSockets | None = None,
        clock: Callable[[], float] = time.time,
        prefetch: bool = True,
        service: RestKeyService | None = None,
        feed_wait: float = 4.0,
        report_verdicts: bool = True,
        max_buffered_verdicts: int = 10_000,
        p2p: P2PLinks | None = None,
    ) -> None:
        self.core = router
        self.verifier = verifier
        self.cache: HandoverKeyCache = verifier.cache
        self.metrics = metrics or RouterMetrics()
        self.sockets = sockets
        self.clock = clock
        self.prefetch = prefetch
        self.service = service
        self.feed_wait = feed_wait
        self.report_verdicts = report_verdicts and service is not None and verifier.mode == "local"
        self.max_buffered_verdicts = max_buffered_verdicts
        self.p2p = p2p
        self._verdicts: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.p2p is not None:
            self.p2p.restore(self._apply)  # per-node prefixes held before a restart, before any HI or RS
        if self.sockets is None:
            self.sockets = RawSockets.open(per_node_links=self.p2p is not None)
        s = self.sockets
        loop.add_reader(s.mh.fileno(), self._readable, s.mh, False)
        loop.add_reader(s.dstopts.fileno(), self._readable, s.dstopts, True)
        loop.add_reader(s.icmp.fileno(), self._icmp_readable)
        log.info(
            "router agent running",
            extra={"addresses": [str(a) for a in self.core.params.addresses], "mode": self.verifier.mode},
        )
        background = [asyncio.create_task(self._timers())]
        if self.service is not None and self.verifier.mode == "local":
            background.append(asyncio.create_task(self._follow_revocations()))
        if self.report_verdicts:
            background.append(asyncio.create_task(self._report_loop()))
        if self.p2p is not None:
            background.append(asyncio.create_task(self.p2p.run(self._apply)))
        try:
            await self._stopped.wait()
        finally:
            for task in background:
                task.cancel()
            if self._verdicts:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._flush_verdicts(), 2.0)
            for fd in (s.mh.fileno(), s.dstopts.fileno(), s.icmp.fileno()):
                loop.remove_reader(fd)
            for task in list(self._tasks):
                task.cancel()
            if self.p2p is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.p2p.close(), 10.0)
            s.close()
            log.info("router agent stopped")

    def stop(self) -> None:
        self._stopped.set()

    def push_key(self, pushed: PushedHandoverKey, *, ar_address: IPv6Address, mn_lla: bytes | None = None) -> None:
        """Hand the agent a key pushed in an Access-Accept (when this router is the RADIUS NAS)."""
        self.cache.put_pushed(pushed, ar_address=ar_address, now=self.clock(), mn_lla=mn_lla)
        self.metrics.keys_held.set(len(self.cache))

    # ---- receive

    def _readable(self, sock: socket.socket, via_dstopts: bool) -> None:
        for _ in range(64):  # drain a burst, then let other work in
            try:
                data, ancillary, _flags, peer = sock.recvmsg(65535, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("receive failed", extra={"errno": exc.errno})
                return
            destination, _ifindex = _destination(ancillary)
            if destination is None:
                continue
            source = IPv6Address(peer[0].split("%")[0])
            if via_dstopts:
                packet = self._from_dstopts(source, destination, data)
                if packet is None:
                    continue
            else:
                packet = ReceivedMh(source, destination, None, data)
            self._apply(self.core.receive_mh(packet, self.clock()))

    def _from_dstopts(self, source: IPv6Address, destination: IPv6Address, data: bytes) -> ReceivedMh | None:
        """An MH with a Home Address option, from the Destination Options copy; None for anything else (MH
        without the option arrives on the protocol-135 socket)."""
        header = bytes((0x60, 0, 0, 0)) + len(data).to_bytes(2, "big") + bytes((IPPROTO_DSTOPTS, 64))
        try:
            parsed = ipv6wire.parse_ipv6_packet(header + source.packed + destination.packed + data)
        except DecodeError as exc:
            self.metrics.malformed.labels(exc.field).inc()
            return None
        if parsed.upper_next_header != IPPROTO_MH or parsed.home_address is None:
            return None
        return ReceivedMh(source, destination, parsed.home_address, parsed.payload)

    def _icmp_readable(self) -> None:
        assert self.sockets is not None
        for _ in range(64):
            try:
                data, ancillary, _flags, peer = self.sockets.icmp.recvmsg(65535, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("receive failed", extra={"errno": exc.errno})
                return
            destination, ifindex = _destination(ancillary)
            if destination is None or not data or data[0] not in (FMIPV6_ICMP_TYPE, *P2P_ND_TYPES):
                continue
            source = IPv6Address(peer[0].split("%")[0])
            interface = None
            with contextlib.suppress(OSError):
                interface = socket.if_indextoname(ifindex)
            self._apply(self.core.receive_icmpv6(source, destination, data, self.clock(), interface=interface))

    # ---- effects

    def _apply(self, effects: list[core.Effect]) -> None:
        for effect in effects:
            if isinstance(effect, core.SendMh):
                self._send_mh(effect)
            elif isinstance(effect, core.SendIcmpv6):
                self._send_icmpv6(effect)
            elif isinstance(effect, core.VerifyFbu):
                self._spawn(self._verify(effect))
            elif isinstance(effect, core.Prefetch):
                if self.prefetch:
                    self._spawn(self._prefetch(effect.mn_lla))
            elif isinstance(effect, core.Notice):
                self._notice(effect)
            elif isinstance(effect, core.HandoverFinished):
                self._finished(effect)
            elif isinstance(effect, core.PrefixEvent) and self.p2p is not None:
                self.p2p.handle(effect)
        self._wake.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_mh(self, effect: core.SendMh) -> None:
        assert self.sockets is not None
        if effect.needs_authenticator:
            self._spawn(self._sign_and_send(effect))
            return
        try:
            self.sockets.mh.sendmsg([effect.mh], [_pktinfo(effect.source)], 0, (str(effect.destination), 0))
        except OSError as exc:
            log.warning("MH send failed", extra={"destination": str(effect.destination), "errno": exc.errno})

    def _send_icmpv6(self, effect: core.SendIcmpv6) -> None:
        assert self.sockets is not None
        ifindex = 0
        if effect.interface:
            with contextlib.suppress(OSError):
                ifindex = socket.if_nametoindex(effect.interface)
        scope = ifindex if (effect.destination.is_link_local or effect.destination.is_multicast) else 0
        try:
            self.sockets.icmp.sendmsg(
                [effect.message], [_pktinfo(effect.source, ifindex)], 0, (str(effect.destination), 0, 0, scope)
            )
        except OSError as exc:
            log.warning("ICMPv6 send failed", extra={"destination": str(effect.destination), "errno": exc.errno})

    async def _sign_and_send(self, effect: core.SendMh) -> None:
        """An FBack of a router without keys: the service fills in the BADF authenticator (verify-only mode)."""
        mh = effect.mh
        if self.service is not None:
            started = time.perf_counter()
            try:
                mh = await self.service.fback_authenticator(effect.source, effect.destination, effect.mh)
                self.metrics.fetch_seconds.labels("fback", "ok").observe(time.perf_counter() - started)
            except (KeyServiceError, KeyUnknown):
                self.metrics.fetch_seconds.labels("fback", "error").observe(time.perf_counter() - started)
                log.warning(
                    "FBack sent without a valid authenticator: the key service did not sign it",
                    extra={"event": "fback.unsigned", "destination": str(effect.destination)},
                )
        self._send_mh(core.SendMh(effect.source, effect.destination, mh))

    async def _verify(self, effect: core.VerifyFbu) -> None:
        started = time.perf_counter()
        hits, misses = self.cache.hits, self.cache.misses
        try:
            verdict = await self.verifier.verify(effect.fbu)
        except Exception as exc:  # e.g. the replay journal's disk is full: the node gets FBack 128, we go on
            log.error(
                "FBU verification failed",
                extra={"event": "fbu.error", "spi": effect.fbu.auth.spi, "error": type(exc).__name__},
            )
            verdict = FbuVerdict("rejected", effect.fbu.auth.spi, effect.fbu.fbu.sequence, "internal-error")
        path = "service" if self.verifier.mode == "service" or effect.fbu.auth.spi == 0 else "local"
        if self.cache.misses > misses:
            self.metrics.cache_lookups.labels("miss").inc()
            path = "fetch"
        elif self.cache.hits > hits:
            self.metrics.cache_lookups.labels("hit").inc()
        self.metrics.verify_seconds.labels(path).observe(time.perf_counter() - started)
        self.metrics.verdicts.labels(verdict.outcome, verdict.reason or "").inc()
        self.metrics.keys_held.set(len(self.cache))
        if self.report_verdicts:
            self._queue_verdict(effect, verdict)
        self._apply(self.core.fbu_verified(effect.token, verdict, self.clock()))

    # ---- audit: verdicts made here are reported to the service in batches

    def _queue_verdict(self, effect: core.VerifyFbu, verdict: FbuVerdict) -> None:
        if len(self._verdicts) >= self.max_buffered_verdicts:
            self.metrics.verdict_reports.labels("dropped").inc()  # bounded: a long outage never blocks handovers
            return
        self._verdicts.append(
            {
                "ar_address": str(effect.fbu.packet.destination),
                "spi": verdict.spi,
                "sequence": verdict.sequence,
                "outcome": verdict.outcome,
                "reason": verdict.reason,
                "at": round(self.clock(), 3),
            }
        )

    async def _flush_verdicts(self) -> None:
        assert self.service is not None
        while self._verdicts:
            batch = self._verdicts[:1000]
            await self.service.report_verdicts(batch)
            del self._verdicts[: len(batch)]
            self.metrics.verdict_reports.labels("sent").inc(len(batch))

    async def _report_loop(self, interval: float = 1.0) -> None:
        backoff = interval
        while True:
            await asyncio.sleep(backoff)
            try:
                await self._flush_verdicts()
                backoff = interval
            except (KeyServiceError, KeyUnknown):
                self.metrics.verdict_reports.labels("failed").inc()
                backoff = min(backoff * 2, 30.0)

    # ---- revocation feed

    async def _follow_revocations(self) -> None:
        """Long-poll GET /v1/revocations and drop the keys it names (the feed starts at the beginning of the
        service's audit stream and catches up without waiting)."""
        assert self.service is not None
        cursor: str | None = None
        more = True
        backoff = 0.5
        while True:
            try:
                items, cursor, more = await self.service.revocations(cursor, wait=0.0 if more else self.feed_wait)
                backoff = 0.5
            except KeyServiceError:
                self.metrics.feed_errors.inc()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)  # short: after an outage, revocations must flow again at once
                continue
            for spi, names in items:
                dropped = sum(self.cache.remove(spi=spi, hk_name=name) for name in names)
                if dropped:
                    self.metrics.keys_revoked.inc(dropped)
                    self.metrics.keys_held.set(len(self.cache))
                    log.info("key revoked", extra={"event": "key.revoked", "spi": spi, "keys": dropped})

    async def _prefetch(self, mn_lla: bytes) -> None:
        fetched = await self.verifier.prefetch(mn_lla, self.core.params.addresses)
        self.metrics.keys_held.set(len(self.cache))
        if fetched:
            log.info("key prefetched", extra={"event": "key.prefetched", "mn_lla": mn_lla.hex(":"), "keys": fetched})

    def _notice(self, notice: core.Notice) -> None:
        level = logging.WARNING if notice.event in _WARN else logging.DEBUG if notice.event in _DEBUG else logging.INFO
        fields = dict(notice.fields)
        if notice.event == "fbu.rejected" and fields.get("reason") == "key-unavailable":
            fields["hint"] = "no key for this SPI and the key service did not answer; the node gets FBack 128"
        if notice.event == "hi.retransmit":
            self.metrics.hi_retransmissions.inc()
        elif notice.event == "hi.answered":
            self.metrics.hi_answered.labels(str(fields.get("hack_code"))).inc()
        elif notice.event in ("mh.malformed", "icmpv6.malformed"):
            self.metrics.malformed.labels(str(fields.get("field"))).inc()
        log.log(level, notice.event, extra={"event": notice.event, **fields})

    def _finished(self, done: core.HandoverFinished) -> None:
        self.metrics.handovers.labels(done.outcome).inc()
        if done.status is not None:
            self.metrics.handover_seconds.observe(done.duration)
        log.info(
            "handover finished",
            extra={
                "event": "handover.finished",
                "outcome": done.outcome,
                "status": done.status,
                "spi": done.spi,
                "sequence": done.sequence,
                "pcoa": str(done.pcoa),
                "ncoa": str(done.ncoa),
                "nar": str(done.nar) if done.nar else None,
                "hi_transmissions": done.hi_transmissions,
                "ms": round(done.duration * 1000, 3),
            },
        )

    # ---- timers

    async def _timers(self) -> None:
        next_sweep = self.clock() + _HOUSEKEEPING
        while True:
            deadline = self.core.next_deadline()
            now = self.clock()
            wait = min(next_sweep, deadline if deadline is not None else next_sweep) - now
            self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            now = self.clock()
            effects = self.core.handle_timer(now)
            if effects:
                self._apply(effects)
            if now >= next_sweep:
                self.cache.expire(now)
                self.verifier.replay.expire(now)
                self.metrics.keys_held.set(len(self.cache))
                next_sweep = now + _HOUSEKEEPING
