"""Per-caller and per-address rate limits of the REST API, and the accounting of failed authentications.

* Every authenticated caller has a token bucket (``limits.caller_rate``/``caller_burst``); a request beyond it
  is answered 429 ``rate-limited`` with ``Retry-After``.
* Every failed authentication (no token, an unknown token) takes a token from the bucket of its source address
  (``limits.auth_failure_rate``/``auth_failure_burst``); beyond it the answer is 429 instead of 401. A valid
  token is never refused because others failed from the same address (a router behind a NAT keeps working).
* Failed authentications and refused roles are counted (``aaa_fmip_auth_failures_total``) and reported at most
  once per source address per ``limits.auth_failure_log_interval`` as one log line and one ``auth.failed``
  audit entry carrying how many failures it stands for; a global bucket bounds those reports across addresses.

State lives in one :class:`RequestGuard` per app (``app.state.guard``); the buckets are
:mod:`aaa_fmip.ratelimit`, with the monotonic clock passed in here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from aaa_fmip.api.settings import LimitSettings
from aaa_fmip.errors import AaaFmipError
from aaa_fmip.metrics import Metrics
from aaa_fmip.ratelimit import KeyedLimiter, Rate, Summariser, TokenBucket
from aaa_fmip.service import HandoverKeyService

log = logging.getLogger("aaa_fmip.api.auth")

REPORTS: Final = Rate(per_second=5.0, burst=50.0)  # auth.failed lines/entries per second, all addresses together


class RequestGuard:
    def __init__(
        self,
        service: HandoverKeyService,
        metrics: Metrics,
        limits: LimitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.settings = limits
        self.clock = clock
        s = self.settings
        self.callers: KeyedLimiter[str] = KeyedLimiter(Rate(s.caller_rate, s.caller_burst))
        self.addresses: KeyedLimiter[str] = KeyedLimiter(Rate(s.auth_failure_rate, s.auth_failure_burst))
        self.summaries: Summariser[tuple[str, str]] = Summariser(s.auth_failure_log_interval)
        self.reports = TokenBucket(REPORTS)
        self.unreported = 0  # failures not reported because the global report bucket was empty
        self._pending: set[asyncio.Future[None]] = set()

    def caller_wait(self, caller: str) -> float:
        """0.0 if ``caller`` may make this request now, else the seconds until it may."""
        if not self.settings.rate_limit:
            return 0.0
        wait = self.callers.take(caller, self.clock())
        if wait:
            self.metrics.count_rate_limited("caller")
            self._report("rate-limited", caller, caller=caller)
        return wait

    def failed(self, reason: str, address: str, route: str, caller: str | None = None) -> float:
        """Account one refused authentication; returns the seconds to answer in Retry-After with a 429, or 0.0
        to answer as usual (401/403). ``caller`` is set for a known token with the wrong role."""
        self.metrics.count_auth_failure(reason)
        wait = 0.0
        if caller is None and self.settings.rate_limit:
            wait = self.addresses.take(address, self.clock())
            if wait:
                self.metrics.count_rate_limited("address")
        self._report(reason, address, route=route, caller=caller, client=address)
        return wait

    def _report(self, reason: str, key: str, **fields: str | None) -> None:
        now = self.clock()
        count = self.summaries.record((reason, key), now)
        if count is None:
            return
        if self.reports.take(now):
            self.unreported += count
            return
        count, self.unreported = count + self.unreported, 0
        event = "rate-limited" if reason == "rate-limited" else "auth.failed"
        log.warning(
            "requests refused" if reason == "rate-limited" else "authentication failed",
            extra={"event": event, "reason": reason, "count": count, **fields},
        )
        self._audit(reason, count, fields)

    def _audit(self, reason: str, count: int, fields: dict[str, str | None]) -> None:
        """Append the ``auth.failed`` entry off the event loop (the store client blocks) without delaying the
        answer; a store outage loses the entry, not the log line above."""
        if reason == "rate-limited":
            return  # the log line suffices: the caller is authenticated and its requests are audited by use
        service = self.service

        def append() -> None:
            service.record_auth_failure(reason=reason, count=count, **fields)

        try:
            future = asyncio.get_running_loop().run_in_executor(None, append)
        except RuntimeError:  # no loop (tests calling in-process): write now
            append()
            return
        self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[None]) -> None:
        self._pending.discard(future)
        exc = future.exception()
        if exc is not None:
            level = logging.WARNING if isinstance(exc, AaaFmipError) else logging.ERROR
            log.log(level, "auth.failed audit entry not written", extra={"error": type(exc).__name__})
