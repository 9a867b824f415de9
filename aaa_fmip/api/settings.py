"""What the REST adapter is configured with, defined here (where it is used) and composed by
:mod:`aaa_fmip.config`, which reads it from the ``[limits]`` table and the environment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LimitSettings:
    """Limits of the REST listener against slow or abusive clients (docs/configuration.md, "Limits")."""

    header_timeout: float = 10.0  # s from connection (or the end of the last response) to a complete request head
    keep_alive_timeout: int = 5  # s an idle keep-alive connection is kept
    body_timeout: float = 10.0  # s the service waits for the next part of a request body
    max_connections: int = 4096  # open connections; lowered to fit the open-file limit at start
    max_requests_in_flight: int = 512  # requests being processed at once; beyond: 503 "overloaded"
    rate_limit: bool = True  # per-caller and per-address token buckets (429 "rate-limited")
    caller_rate: float = 2000.0  # requests/s per authenticated caller
    caller_burst: int = 4000
    auth_failure_rate: float = 10.0  # failed authentications/s per source address
    auth_failure_burst: int = 100
    auth_failure_log_interval: float = 10.0  # s: at most one log line and audit entry per source address
