"""What the REST adapter is configured with, defined here (where it is used) and composed by
:mod:`aaa_fmip.config`, which reads it from the ``[limits]`` table and the environment."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class LimitSettings(BaseModel):
    """Limits of the REST listener against slow or abusive clients (docs/configuration.md, "Limits")."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, hide_input_in_errors=True)

    # s from connection (or the end of the last response) to a complete request head
    header_timeout: Annotated[float, Field(ge=0.1, le=3600.0)] = 10.0
    keep_alive_timeout: Annotated[int, Field(ge=1, le=3600)] = 5  # s an idle keep-alive connection is kept
    body_timeout: Annotated[float, Field(ge=0.1, le=3600.0)] = 10.0  # s the service waits for the next body part
    # open connections; lowered to fit the open-file limit at start
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 4096
    # requests being processed at once; beyond: 503 "overloaded"
    max_requests_in_flight: Annotated[int, Field(ge=1, le=1_000_000)] = 512
    rate_limit: bool = True  # per-caller and per-address token buckets (429 "rate-limited")
    caller_rate: Annotated[float, Field(ge=0.001, le=1e9)] = 2000.0  # requests/s per authenticated caller
    caller_burst: Annotated[int, Field(ge=1, le=10**9)] = 4000
    auth_failure_rate: Annotated[float, Field(ge=0.001, le=1e9)] = 10.0  # failed authentications/s per address
    auth_failure_burst: Annotated[int, Field(ge=1, le=10**9)] = 100
    # s: at most one log line and audit entry per source address
    auth_failure_log_interval: Annotated[float, Field(ge=0.0, le=86400.0)] = 10.0
