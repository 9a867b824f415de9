"""The asyncio driver of the access-router agent: raw sockets in, :class:`RouterCore` events, effects out.

The sockets and what the kernel does with them: :mod:`~aaa_fmip.router.raw_sockets`. The verdict reports and
the revocation feed: :mod:`~aaa_fmip.router.service_feeds`; logging and counting the core's notices:
:mod:`~aaa_fmip.router.notices`.

The driver only moves bytes and time; every decision is the core's (:mod:`aaa_fmip.router.core`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from ipaddress import IPv6Address
from typing import Any, Final, Protocol

from aaa_fmip.errors import DecodeError
from aaa_fmip.radius.ar import PushedHandoverKey
from aaa_fmip.router import core
from aaa_fmip.router.keycache import HandoverKeyCache, KeyServiceError, KeyUnknown, RestKeyService, Verifier
from aaa_fmip.router.metrics import RouterMetrics
from aaa_fmip.router.notices import log_finished, log_notice
from aaa_fmip.router.p2p import P2PLinks
from aaa_fmip.router.raw_sockets import (
    FMIPV6_ICMP_TYPE,
    P2P_ND_TYPES,
    RawSockets,
    drain,
    interface_addresses,
    mh_from_dstopts,
)
from aaa_fmip.router.service_feeds import RevocationFeed, VerdictReporter
from aaa_fmip.router.verify import FbuVerdict, ReceivedMh

__all__ = ["DataPlaneHook", "RawSockets", "RouterAgent", "interface_addresses"]

log = logging.getLogger("aaa_fmip.router")

_HOUSEKEEPING: Final = 10.0  # seconds between cache and replay-state expiry sweeps


class DataPlaneHook(Protocol):
    """The handover data plane (aaa_fmip.router.dataplane_driver.DataPlaneAgent): told every core effect."""

    def open(self) -> None: ...
    def observe(self, effect: core.Effect) -> None: ...
    async def run(self) -> None: ...
    def close(self) -> None: ...


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
        dataplane: DataPlaneHook | None = None,
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
        self.dataplane = dataplane
        self.verdicts = (
            VerdictReporter(service, self.metrics, clock, max_buffered_verdicts)
            if self.report_verdicts and service is not None
            else None
        )
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
        if self.dataplane is not None:
            try:
                self.dataplane.open()
            except BaseException:
                s.close()
                raise
        loop.add_reader(s.mh.fileno(), self._readable, s.mh, False)
        loop.add_reader(s.dstopts.fileno(), self._readable, s.dstopts, True)
        loop.add_reader(s.icmp.fileno(), self._icmp_readable)
        log.info(
            "router agent running",
            extra={"addresses": [str(a) for a in self.core.params.addresses], "mode": self.verifier.mode},
        )
        background = [asyncio.create_task(self._timers())]
        if self.service is not None and self.verifier.mode == "local":
            feed = RevocationFeed(self.service, self.cache, self.metrics, self.feed_wait)
            background.append(asyncio.create_task(feed.run()))
        if self.verdicts is not None:
            background.append(asyncio.create_task(self.verdicts.run()))
        if self.p2p is not None:
            background.append(asyncio.create_task(self.p2p.run(self._apply)))
        if self.dataplane is not None:
            background.append(asyncio.create_task(self.dataplane.run()))
        try:
            await self._stopped.wait()
        finally:
            for task in background:
                task.cancel()
            if self.verdicts is not None and len(self.verdicts):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.verdicts.flush(), 2.0)
            for fd in (s.mh.fileno(), s.dstopts.fileno(), s.icmp.fileno()):
                loop.remove_reader(fd)
            for task in list(self._tasks):
                task.cancel()
            if self.p2p is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.p2p.close(), 10.0)
            s.close()
            if self.dataplane is not None:
                self.dataplane.close()
            log.info("router agent stopped")

    def stop(self) -> None:
        self._stopped.set()

    def push_key(self, pushed: PushedHandoverKey, *, ar_address: IPv6Address, mn_lla: bytes | None = None) -> None:
        """Hand the agent a key pushed in an Access-Accept (when this router is the RADIUS NAS)."""
        self.cache.put_pushed(pushed, ar_address=ar_address, now=self.clock(), mn_lla=mn_lla)
        self.metrics.keys_held.set(len(self.cache))

    # ---- receive

    def _readable(self, sock: socket.socket, via_dstopts: bool) -> None:
        for datagram in drain(sock):
            packet: ReceivedMh | None = ReceivedMh(datagram.source, datagram.destination, None, datagram.data)
            if via_dstopts:
                try:
                    packet = mh_from_dstopts(datagram.source, datagram.destination, datagram.data)
                except DecodeError as exc:
                    self.metrics.malformed.labels(exc.field).inc()
                    continue
            if packet is not None:
                self._apply(self.core.receive_mh(packet, self.clock()))

    def _icmp_readable(self) -> None:
        assert self.sockets is not None
        for datagram in drain(self.sockets.icmp):
            data = datagram.data
            if not data or data[0] not in (FMIPV6_ICMP_TYPE, *P2P_ND_TYPES):
                continue
            interface = None
            with contextlib.suppress(OSError):
                interface = socket.if_indextoname(datagram.ifindex)
            now = self.clock()
            self._apply(self.core.receive_icmpv6(datagram.source, datagram.destination, data, now, interface=interface))

    # ---- effects

    def _apply(self, effects: list[core.Effect]) -> None:
        if self.dataplane is not None:
            for effect in effects:  # first: forwarding is in place before the FBack leaves (RFC 5568 §3.1)
                self.dataplane.observe(effect)
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
                log_notice(self.metrics, effect)
            elif isinstance(effect, core.HandoverFinished):
                log_finished(self.metrics, effect)
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
            self.sockets.send_mh(effect.source, effect.destination, effect.mh)
        except OSError as exc:
            log.warning("MH send failed", extra={"destination": str(effect.destination), "errno": exc.errno})

    def _send_icmpv6(self, effect: core.SendIcmpv6) -> None:
        assert self.sockets is not None
        try:
            self.sockets.send_icmpv6(effect.source, effect.destination, effect.message, effect.interface)
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
        if self.verdicts is not None:
            self.verdicts.queue(effect.fbu, verdict)
        self._apply(self.core.fbu_verified(effect.token, verdict, self.clock()))

    async def _prefetch(self, mn_lla: bytes) -> None:
        fetched = await self.verifier.prefetch(mn_lla, self.core.params.addresses)
        self.metrics.keys_held.set(len(self.cache))
        if fetched:
            log.info("key prefetched", extra={"event": "key.prefetched", "mn_lla": mn_lla.hex(":"), "keys": fetched})

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
