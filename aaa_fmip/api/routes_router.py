"""REST routes for access-router agents that verify FBUs themselves: the revocation feed, verdict reports and
the FBack authenticator (use cases in :mod:`aaa_fmip.service.router`; docs/router.md). Role **ar**."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from aaa_fmip.api.auth import ArCaller, ContextDep
from aaa_fmip.api.context import ApiContext
from aaa_fmip.api.schemas import HexBytes, IPv6, Problem
from aaa_fmip.service.router import MAX_REPORTED, ReportedVerdict, RouterUseCases

router = APIRouter(prefix="/v1")

REST: Final = "rest"
MAX_WAIT: Final = 4.0  # seconds: below the 5 s graceful shutdown of serve, so a long poll never holds it up
_POLL: Final = 0.1  # seconds between looks at the stream while a long poll waits

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No bearer token, or an unknown one."},
    403: {"model": Problem, "description": "Not an AR token, or an address that is not the caller's."},
    422: {"model": Problem, "description": "The request is malformed; `reason` or `errors` say where."},
    503: {"model": Problem, "description": "The key store cannot be reached; retry after `Retry-After` seconds."},
}


def _use_cases(ctx: ApiContext) -> RouterUseCases:
    # Only ``service`` (its store and clock) and ``metrics`` are used, which the adapter's context has in any shape.
    return RouterUseCases(ctx.service.store, ctx.service.clock)


class RevocationOut(BaseModel):
    at: float = Field(description="When the session was revoked (POSIX seconds).")
    spi: int
    hk_names: dict[str, str] = Field(description="HK-Name (hex) of the revoked session for each of your addresses.")


class RevocationFeed(BaseModel):
    revocations: list[RevocationOut]
    cursor: str | None = Field(description="Pass as `cursor` next time; null only while the stream is empty.")
    more: bool = Field(description="More entries follow already: call again without waiting.")


@router.get(
    "/revocations",
    response_model=RevocationFeed,
    tags=["access routers"],
    summary="Follow revocations (long poll)",
    description=(
        "Role **ar**. Sessions revoked after `cursor` (an Accounting Stop, STR/ASR, or an admin revoke), each with "
        "its SPI and the HK-Names for the caller's own addresses: the names of the keys to drop from the router's "
        "cache. With `wait` > 0 (at most 4 s) the call returns as soon as there is one, or after `wait` seconds "
        "with none. "
        "Resumable: keep the returned cursor."
    ),
    responses=_RESPONSES,
)
async def revocations(
    caller: ArCaller,
    ctx: ContextDep,
    cursor: Annotated[str | None, Query(max_length=64, pattern=r"^\d+-\d+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0.0,
) -> RevocationFeed:
    use = _use_cases(ctx)
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        page = await asyncio.to_thread(use.revocations, caller, cursor=cursor, limit=limit)
        if page.revocations or page.more or asyncio.get_running_loop().time() >= deadline:
            break
        cursor = page.cursor
        await asyncio.sleep(_POLL)
    return RevocationFeed(
        revocations=[
            RevocationOut(at=r.at, spi=r.spi, hk_names={str(a): n.hex() for a, n in r.hk_names.items()})
            for r in page.revocations
        ],
        cursor=page.cursor,
        more=page.more,
    )


class VerdictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ar_address: IPv6 = Field(description="The PAR address the FBU was sent to (one of yours).")
    spi: int = Field(ge=0, lt=2**32)
    sequence: int = Field(ge=0, lt=2**16)
    outcome: Literal["accepted", "retransmission", "rejected"]
    reason: str | None = Field(None, max_length=64, pattern="^[a-z0-9-]+$")
    at: float = Field(description="When the router decided (POSIX seconds).")


class VerdictReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdicts: list[VerdictIn] = Field(max_length=MAX_REPORTED)


class VerdictReportResult(BaseModel):
    recorded: int


@router.post(
    "/fbu/verdicts",
    response_model=VerdictReportResult,
    tags=["access routers"],
    summary="Report FBU verdicts made at the router",
    description=(
        "Role **ar**. Verdicts the router made locally, appended to the audit trail as `fbu.verified` / "
        "`fbu.rejected` entries attributed to the router (with `reported`)."
    ),
    responses=_RESPONSES,
)
def report_verdicts(body: VerdictReport, caller: ArCaller, ctx: ContextDep) -> VerdictReportResult:
    verdicts = [ReportedVerdict(v.ar_address, v.spi, v.sequence, v.outcome, v.reason, v.at) for v in body.verdicts]
    with ctx.metrics.operation(REST, "report_verdicts"):
        recorded = _use_cases(ctx).report_verdicts(caller, verdicts)
    return VerdictReportResult(recorded=recorded)


class FbackSignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    source: IPv6 = Field(description="The PAR address the FBack is sent from (one of yours).")
    destination: IPv6 = Field(description="Where the FBack goes (the node's PCoA or NCoA).")
    mh: HexBytes = Field(description="The FBack Mobility Header with its BADF (SPI set, authenticator zeroed).")


class FbackSignOut(BaseModel):
    spi: int
    authenticator: str = Field(description="The BADF authenticator (hex).")
    mh: str = Field(description="The FBack with the authenticator and checksum filled in (hex).")


@router.post(
    "/fback/authenticator",
    response_model=FbackSignOut,
    tags=["access routers"],
    summary="Authenticate an FBack (routers that hold no keys)",
    description=(
        "Role **ar**. For a router that verifies FBUs with POST /v1/fbu/verify and so holds no key: the service "
        "computes the FBack's BADF authenticator with the handover key of the BADF's SPI for `source`, which must "
        "be one of the caller's addresses. Only FBacks are signed."
    ),
    responses={**_RESPONSES, 404: {"model": Problem, "description": "No live session has this SPI."}},
)
def fback_authenticator(body: FbackSignIn, caller: ArCaller, ctx: ContextDep, request: Request) -> FbackSignOut:
    request.state.decode_field = "mh"
    with ctx.metrics.operation(REST, "fback_authenticator"):
        signed = _use_cases(ctx).fback_authenticator(caller, par=body.source, destination=body.destination, mh=body.mh)
    return FbackSignOut(spi=signed.spi, authenticator=signed.authenticator.hex(), mh=signed.mh.hex())
