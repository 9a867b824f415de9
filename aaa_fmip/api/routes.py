"""REST routes: JSON ↔ service calls, nothing else (architecture.md §7). Errors become problems in
:mod:`aaa_fmip.api.problems`; roles are checked by :mod:`aaa_fmip.api.auth` before a handler runs.

Handlers are plain ``def`` (FastAPI runs them in its thread pool, as the service's calls block on Redis), except
the hot path ``POST /v1/fbu/verify``: it awaits :meth:`HandoverKeyService.verify_fbu_async` on the event loop.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query, Request, Response

from aaa_fmip.api.auth import AaaCaller, AdminCaller, ArCaller, AuditorCaller, ContextDep, RevokerCaller
from aaa_fmip.api.schemas import (
    AccessRouterOut,
    AuditCheckOut,
    AuditEntryOut,
    AuditPage,
    CheckpointBody,
    CheckpointOut,
    FbuAccepted,
    FbuRejected,
    FbuVerifyRequest,
    HandoverKeyRequest,
    HandoverKeyResponse,
    Health,
    Problem,
    RevokeMatching,
    RevokeResult,
    SessionCreate,
    SessionCreated,
    VerifyAuditIn,
    parse_instant,
    rfc3339_precise,
    to_rfc3339,
)
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import InvalidRequest
from aaa_fmip.metrics import CONTENT_TYPE
from aaa_fmip.model import EapKeys, SessionRequest, VisitedKeys
from aaa_fmip.store import AuditCheck, Checkpoint

REST: Final = "rest"  # the metrics ``interface`` label
MAX_U64: Final = 2**64 - 1
LAST_STREAM_ID: Final = f"{MAX_U64}-{MAX_U64}"

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No bearer token, or an unknown one."},
    403: {"model": Problem, "description": "The token's role, or the router it belongs to, may not do this."},
}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": Problem, "description": "The body is malformed; `errors` names each field at fault."}
}
_STORE_DOWN: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "The key store cannot be reached; retry after `Retry-After` seconds."}
}

v1 = APIRouter(prefix="/v1")
ops = APIRouter()

HmkNamePath = Annotated[
    str,
    Path(
        description="HMK-Name as returned by POST /v1/sessions (8 octets, 16 hex digits).",
        pattern="^(0[xX])?[0-9a-fA-F]{16}$",
        examples=["0123456789abcdef"],
    ),
]


# ------------------------------------------------------------------------------------------------ sessions


@v1.post(
    "/sessions",
    status_code=201,
    response_model=SessionCreated,
    tags=["sessions (AAA)"],
    summary="Ingest an EAP session",
    description=(
        "Role **aaa**. Called by an AAA server after a successful EAP authentication (e.g. FreeRADIUS rlm_rest "
        "in post-auth). Derives the handover master key (HMK) from the EMSK and EAP Session-Id, or from the DSRK "
        "and EMSKName in a visited domain, and stores it wrapped. The EMSK/DSRK is used once and never stored. "
        "Hex values may carry a `0x` prefix, as FreeRADIUS prints octets."
    ),
    responses={**_AUTH, **_INVALID, **_STORE_DOWN},
)
def create_session(body: SessionCreate, caller: AaaCaller, ctx: ContextDep, response: Response) -> SessionCreated:
    with ctx.metrics.operation(REST, "ingest"):
        info = ctx.service.ingest_session(caller, session_request(body))
    response.headers["Location"] = f"/v1/sessions/{info.hmk_name.hex()}"
    return SessionCreated(hmk_name=info.hmk_name.hex(), spi=info.spi, expires_at=to_rfc3339(info.expires_at))


def session_request(body: SessionCreate) -> SessionRequest:
    """The body as the service's request. The schema admits exactly one complete pair of root key and name
    (``SessionCreate._one_root``), so the last branch is never taken with a validated body."""
    keys: EapKeys | VisitedKeys
    if body.emsk is not None and body.eap_session_id is not None:
        keys = EapKeys(SecretBytes(body.emsk), body.eap_session_id)
    elif body.dsrk is not None and body.emsk_name is not None:
        keys = VisitedKeys(SecretBytes(body.dsrk), body.emsk_name)
    else:
        raise InvalidRequest("give emsk and eap_session_id, or dsrk and emsk_name", reason="missing-key-material")
    return SessionRequest(
        user_name=body.user_name,
        keys=keys,
        calling_station_id=body.calling_station_id,
        nas_identifier=body.nas_identifier,
        lifetime=body.lifetime,
    )


@v1.delete(
    "/sessions/{hmk_name}",
    status_code=204,
    tags=["sessions (AAA)"],
    summary="Revoke a session",
    description=(
        "Roles **aaa**, **admin**. Deletes the session's HMK and everything derived from it (handover keys, replay "
        "state); FBUs under its SPI are rejected with reason `revoked` from then on. Safe to retry: a session "
        "already revoked (until its old expiry) answers 204 again, so a retry after a 503 ends as the first "
        "revocation would have; its `session.revoked` audit entry is written with the revocation, once."
    ),
    responses={404: {"model": Problem, "description": "No live session has this HMK-Name."}, **_AUTH, **_STORE_DOWN},
)
def revoke_session(hmk_name: HmkNamePath, caller: RevokerCaller, ctx: ContextDep) -> Response:
    name = bytes.fromhex(hmk_name[2:] if hmk_name[:2].lower() == "0x" else hmk_name)
    with ctx.metrics.operation(REST, "revoke"):
        ctx.service.revoke_session(caller, name)
    return Response(status_code=204)


@v1.post(
    "/sessions/revoke",
    response_model=RevokeResult,
    tags=["sessions (AAA)"],
    summary="Revoke sessions by Calling-Station-Id or external id",
    description=(
        "Roles **aaa**, **admin**. For AAA servers that know the MN's MAC (Accounting-Stop) rather than the "
        "HMK-Name. Revoking nothing is not an error: `revoked` is 0."
    ),
    responses={**_AUTH, **_INVALID, **_STORE_DOWN},
)
def revoke_matching(body: RevokeMatching, caller: RevokerCaller, ctx: ContextDep) -> RevokeResult:
    with ctx.metrics.operation(REST, "revoke"):
        count = ctx.service.revoke_matching(
            caller, calling_station_id=body.calling_station_id, external_id=body.external_id, cause=body.cause
        )
    return RevokeResult(revoked=count)


# ------------------------------------------------------------------------------------------ access routers


@v1.post(
    "/handover-keys",
    response_model=HandoverKeyResponse,
    tags=["access routers"],
    summary="Get my handover key for a session",
    description=(
        "Role **ar**. Returns the handover key (HK) of one session for one of the calling router's own addresses "
        "(the AR-ID), selected by exactly one of `spi`, `calling_station_id` or `hmk_name`. A router can never "
        "obtain the key of another router's address (403). The response is `Cache-Control: no-store`."
    ),
    responses={
        404: {"model": Problem, "description": "No live session matches (reason `unknown-session` or `revoked`)."},
        **_AUTH,
        **_INVALID,
        **_STORE_DOWN,
    },
)
def handover_key(body: HandoverKeyRequest, caller: ArCaller, ctx: ContextDep) -> HandoverKeyResponse:
    with ctx.metrics.operation(REST, "handover_key"):
        grant = ctx.service.handover_key(
            caller,
            ar_address=body.ar_address,
            spi=body.spi,
            calling_station_id=body.calling_station_id,
            hmk_name=body.hmk_name,
        )
    return HandoverKeyResponse(
        hk=grant.hk.hex(),
        hk_name=grant.hk_name.hex(),
        spi=grant.spi,
        lifetime=grant.lifetime,
        algorithm=grant.algorithm,
    )


@v1.post(
    "/fbu/verify",
    response_model=FbuAccepted | FbuRejected,
    tags=["access routers"],
    summary="Verify a Fast Binding Update",
    description=(
        "Role **ar**. The previous access router passes the FBU it received: IPv6 source and destination and the "
        "whole Mobility Header in hex. The service checks the Binding Authorization Data for FMIPv6 option "
        "(RFC 5568 §6.4.5) with the key for `destination` and the sequence number against replay. A well-formed "
        'FBU always gets 200: `{"valid": true, "verdict": "accepted" | "retransmission", ...}` or '
        '`{"valid": false, "reason": ...}`. A malformed Mobility Header is a 422 naming the field.'
    ),
    responses={**_AUTH, **_INVALID, **_STORE_DOWN},
)
async def verify_fbu(
    body: FbuVerifyRequest, caller: ArCaller, ctx: ContextDep, request: Request
) -> FbuAccepted | FbuRejected:
    request.state.decode_field = "mh"  # a DecodeError from the service is about this request field

    # The hot path runs on the event loop: the store calls go through its asyncio client, so a request costs no
    # thread hand-off.
    with ctx.metrics.operation(REST, "verify_fbu"):
        verdict = await ctx.service.verify_fbu_async(
            caller,
            source=body.source,
            destination=body.destination,
            mh=body.mh,
            home_address=body.home_address,
        )
    ctx.metrics.observe_fbu(REST, verdict)
    if not verdict.valid:
        return FbuRejected(reason=verdict.reason)
    return FbuAccepted(
        verdict=verdict.verdict,
        spi=verdict.spi,
        sequence=verdict.sequence,
        ncoa=str(verdict.ncoa),
        lifetime=verdict.lifetime,
    )


# ----------------------------------------------------------------------------------------------------- audit


@v1.get(
    "/audit",
    response_model=AuditPage,
    tags=["audit"],
    summary="Read the audit trail",
    description=(
        "Role **auditor**. Entries in order, filtered by time (`since`/`until`: RFC 3339 with an offset, or Unix "
        "seconds), `event`, `spi` and `ar` (router name). Pass `next_cursor` back as `cursor` to read on."
    ),
    responses={**_AUTH, **_INVALID, **_STORE_DOWN},
)
def read_audit(
    caller: AuditorCaller,
    ctx: ContextDep,
    since: Annotated[str | None, Query(description="Earliest instant (RFC 3339 or Unix seconds).")] = None,
    until: Annotated[str | None, Query(description="Latest instant (RFC 3339 or Unix seconds).")] = None,
    event: Annotated[str | None, Query(max_length=64, description="e.g. fbu.rejected")] = None,
    spi: Annotated[int | None, Query(ge=0, le=0xFFFFFFFF)] = None,
    ar: Annotated[str | None, Query(max_length=253, description="Access router name.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^\d{1,20}-\d{1,20}(\.\d{1,7})?$", description="next_cursor of the previous page."),
    ] = None,
) -> AuditPage:
    try:
        since_at = parse_instant(since, name="since") if since is not None else None
        until_at = parse_instant(until, name="until") if until is not None else None
    except ValueError as exc:
        raise InvalidRequest(str(exc), reason="bad-instant") from None
    if cursor is not None and not _is_stream_id(cursor):
        raise InvalidRequest("cursor: not a next_cursor this service issued", reason="bad-cursor")
    if cursor == LAST_STREAM_ID:
        return AuditPage(entries=[], next_cursor=None)  # nothing follows it; Redis refuses "(" + the last id
    with ctx.metrics.operation(REST, "audit"):
        entries, next_cursor = ctx.service.read_audit(
            caller, cursor=cursor, limit=limit, since=since_at, until=until_at, event=event, spi=spi, ar=ar
        )
    return AuditPage(
        entries=[
            AuditEntryOut(
                id=e.id,
                n=e.n,
                at=rfc3339_precise(e.at),
                event=e.event,
                fields=dict(e.fields),
                prev=e.prev,
                hash=e.hash,
                kid=e.kid,
                slot=e.slot,
            )
            for e in entries
        ],
        next_cursor=next_cursor,
    )


def _is_stream_id(cursor: str) -> bool:
    """A Redis stream id is two unsigned 64-bit integers; Redis answers an error (not an empty page) beyond."""
    millis, _, sequence = cursor.partition(".")[0].partition("-")
    return int(millis) <= MAX_U64 and int(sequence) <= MAX_U64


_VERIFY_DESCRIPTION = (
    "Role **auditor**. Checks every entry's MAC (keyed: whoever writes to Redis cannot forge or re-chain "
    "entries), position and link, and that the head names the last entry. `ok` is false if any entry was "
    "edited, forged, inserted or removed. Cutting the tail together with the head is detected only against a "
    "checkpoint kept earlier (`GET /v1/audit/checkpoint`): POST it here."
)


@v1.get(
    "/audit/verify",
    response_model=AuditCheckOut,
    tags=["audit"],
    summary="Verify the audit trail",
    description=_VERIFY_DESCRIPTION,
    responses={**_AUTH, **_STORE_DOWN},
)
def verify_audit(caller: AuditorCaller, ctx: ContextDep) -> AuditCheckOut:
    with ctx.metrics.operation(REST, "audit_verify"):
        check = ctx.service.verify_audit(caller)
    return _check_out(check)


@v1.post(
    "/audit/verify",
    response_model=AuditCheckOut,
    tags=["audit"],
    summary="Verify the audit trail against a kept checkpoint",
    description=_VERIFY_DESCRIPTION,
    responses={**_AUTH, **_INVALID, **_STORE_DOWN},
)
def verify_audit_against(body: VerifyAuditIn, caller: AuditorCaller, ctx: ContextDep) -> AuditCheckOut:
    checkpoint = None
    if body.checkpoint is not None:
        c = body.checkpoint
        try:
            signature = base64.b64decode(c.signature, validate=True)
        except (binascii.Error, ValueError):  # ValueError: non-ASCII text
            raise InvalidRequest("signature is not base64", reason="bad-checkpoint") from None
        checkpoint = Checkpoint(n=c.n, head=c.head, at=c.at, kid=c.kid, signature=signature)
    with ctx.metrics.operation(REST, "audit_verify"):
        check = ctx.service.verify_audit(caller, checkpoint)
    return _check_out(check)


@v1.get(
    "/audit/checkpoint",
    response_model=CheckpointOut,
    tags=["audit"],
    summary="A signed checkpoint of the audit trail",
    description=(
        "Role **auditor**. Verifies the trail, then signs its position and head (Ed25519) with a key derived from "
        "the KEK. Keep the checkpoint outside the service (and pin `public_keys` once): POST it to "
        "`/v1/audit/verify` later to detect a truncation or wipe since, or check its signature yourself. "
        "409 `audit-trail-broken` when the trail does not verify."
    ),
    responses={409: {"model": Problem, "description": "The trail does not verify."}, **_AUTH, **_STORE_DOWN},
)
def audit_checkpoint(caller: AuditorCaller, ctx: ContextDep) -> CheckpointOut:
    with ctx.metrics.operation(REST, "audit_checkpoint"):
        cp, public_keys = ctx.service.audit_checkpoint(caller)
    return CheckpointOut(
        checkpoint=CheckpointBody(
            n=cp.n, head=cp.head, at=cp.at, kid=cp.kid, signature=base64.b64encode(cp.signature).decode()
        ),
        public_keys={kid: base64.b64encode(key).decode() for kid, key in public_keys.items()},
    )


def _check_out(check: AuditCheck) -> AuditCheckOut:
    return AuditCheckOut(
        ok=check.ok,
        entries=check.entries,
        n=check.n,
        first_n=check.first_n,
        head=check.head,
        first_bad_id=check.first_bad_id,
        problem=check.problem,
        checkpoint=check.checkpoint,
    )


# ----------------------------------------------------------------------------------------------------- admin


@v1.get(
    "/access-routers",
    response_model=list[AccessRouterOut],
    tags=["admin"],
    summary="List the access router registry",
    description="Role **admin**. The configured routers and the addresses (AR-IDs) each may be keyed for.",
    responses=_AUTH,
)
def list_access_routers(caller: AdminCaller, ctx: ContextDep) -> list[AccessRouterOut]:
    return [
        AccessRouterOut(
            name=r.name,
            addresses=sorted(str(a) for a in r.addresses),
            diameter_identity=r.diameter_identity,
            nas_identifier=r.nas_identifier,
        )
        for r in ctx.callers.routers
    ]


# ------------------------------------------------------------------------------------------------ operations


@ops.get("/healthz", response_model=Health, tags=["operations"], summary="Liveness")
def healthz() -> Health:
    """The process is up and serving HTTP. Does not touch the store."""
    return Health(status="ok")


@ops.get(
    "/readyz",
    response_model=Health,
    tags=["operations"],
    summary="Readiness",
    responses={503: {"model": Problem, "description": "The key store cannot be reached."}},
)
def readyz(ctx: ContextDep) -> Health:
    """Ready when the key store answers a ping (bounded by `store.timeout`)."""
    ctx.service.ready()
    return Health(status="ready")


@ops.get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format."}},
)
def metrics(ctx: ContextDep) -> Response:
    """Requests by route and status, FBU verdicts by verdict and reason, latency histograms, and the live
    session count and store status (computed at scrape time). No key material, no per-session labels."""
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)
