"""The router agent's two conversations with the key service besides fetching keys (architecture.md §8): the
verdicts it made itself, reported in batches for the audit stream (POST /v1/verdicts), and the revocation
feed it follows to drop revoked keys at once (long-poll GET /v1/revocations).

Both run as background tasks of :class:`~aaa_fmip.router.driver.RouterAgent`; both survive a service outage
(bounded buffer, backoff) without holding up a handover."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aaa_fmip.router.keycache import HandoverKeyCache, KeyServiceError, KeyUnknown, RestKeyService
from aaa_fmip.router.metrics import RouterMetrics
from aaa_fmip.router.verify import FbuVerdict, ParsedFbu

__all__ = ["RevocationFeed", "VerdictReporter"]

log = logging.getLogger("aaa_fmip.router")


class VerdictReporter:
    """Verdicts made here, queued (at most ``max_buffered``: a long outage never blocks handovers) and sent to
    the service in batches of 1000."""

    def __init__(
        self, service: RestKeyService, metrics: RouterMetrics, clock: Callable[[], float], max_buffered: int
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.clock = clock
        self.max_buffered = max_buffered
        self._pending: list[dict[str, Any]] = []

    def __len__(self) -> int:
        """Verdicts waiting to be sent."""
        return len(self._pending)

    def queue(self, fbu: ParsedFbu, verdict: FbuVerdict) -> None:
        if len(self._pending) >= self.max_buffered:
            self.metrics.verdict_reports.labels("dropped").inc()
            return
        self._pending.append(
            {
                "ar_address": str(fbu.packet.destination),
                "spi": verdict.spi,
                "sequence": verdict.sequence,
                "outcome": verdict.outcome,
                "reason": verdict.reason,
                "at": round(self.clock(), 3),
            }
        )

    async def flush(self) -> None:
        """Send what is queued; raises KeyServiceError or KeyUnknown and keeps the rest when the service fails."""
        while self._pending:
            batch = self._pending[:1000]
            await self.service.report_verdicts(batch)
            del self._pending[: len(batch)]
            self.metrics.verdict_reports.labels("sent").inc(len(batch))

    async def run(self, interval: float = 1.0) -> None:
        backoff = interval
        while True:
            await asyncio.sleep(backoff)
            try:
                await self.flush()
                backoff = interval
            except (KeyServiceError, KeyUnknown):
                self.metrics.verdict_reports.labels("failed").inc()
                backoff = min(backoff * 2, 30.0)


class RevocationFeed:
    """Follows the service's revocation feed and drops the keys it names from ``cache``."""

    def __init__(self, service: RestKeyService, cache: HandoverKeyCache, metrics: RouterMetrics, wait: float) -> None:
        self.service = service
        self.cache = cache
        self.metrics = metrics
        self.wait = wait

    async def run(self) -> None:
        """Long-poll GET /v1/revocations and drop the keys it names (the feed starts at the beginning of the
        service's audit stream and catches up without waiting)."""
        cursor: str | None = None
        more = True
        backoff = 0.5
        while True:
            try:
                items, cursor, more = await self.service.revocations(cursor, wait=0.0 if more else self.wait)
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
