"""REST route of the RFC 5269 SEND fallback (architecture.md §4): JSON ↔ ``service.send_handover_key``.

The access router forwards the RtSolPr it received and gets back the Handover Key Reply option for its
PrRtAdv, which it signs itself with its router key (:mod:`aaa_fmip.ar`); the router key never reaches the
service. Errors become problems in :mod:`aaa_fmip.api.problems` (verification failures: 422 with the
failure's ``reason``).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from aaa_fmip.api.auth import ArCaller, ContextDep
from aaa_fmip.api.schemas import HexBytes, IPv6, Problem, to_rfc3339

REST: Final = "rest"  # the metrics ``interface`` label

router = APIRouter(prefix="/v1")


class SendHandoverKeyRequest(BaseModel):
    """An RtSolPr the calling router received, as it arrived."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={
            "examples": [
                {"source": "2001:db8:1:0:2c4a:5bf6:ffb4:ca6c", "destination": "2001:db8:1::1", "icmpv6": "9a00..."}
            ]
        },
    )

    source: IPv6 = Field(description="IPv6 source of the RtSolPr: the mobile node's CGA.")
    destination: IPv6 = Field(description="IPv6 destination of the RtSolPr: one of the calling router's addresses.")
    icmpv6: HexBytes = Field(
        description="The whole ICMPv6 message (type 154, subtype 2), from its Type octet to its last option."
    )


class SendHandoverKeyResponse(BaseModel):
    handover_key_reply_option: str = Field(
        description="The Handover Key Reply option (ND option 28, RFC 5269 §4.2), hex: put it in the PrRtAdv."
    )
    nonce: str = Field(description="The RtSolPr's Nonce (hex): the PrRtAdv echoes it in a Nonce option.")
    identifier: int = Field(description="The RtSolPr's Identifier: the PrRtAdv copies it.")
    lifetime: int = Field(description="Seconds the handover key remains valid (the option's Key Lifetime).")
    hk: str = Field(description="The handover key (32 octets, hex), for the router's own check of SPI 0 FBUs.")
    hk_expires_at: str = Field(description="When the handover key expires (RFC 3339, UTC).")
    algorithm: str = Field(description='The AT of the reply, e.g. "HMAC-SHA1-96".')
    key_hash: str = Field(description="Key Hash of the mobile node's CGA key (16 octets, hex; RFC 3971 §5.2).")
    reused: bool = Field(description="True when this CGA key already had a live handover key (returned again).")


_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": Problem, "description": "No bearer token, or an unknown one."},
    403: {"model": Problem, "description": "Not an AR token, or `destination` is not one of the caller's addresses."},
    422: {
        "model": Problem,
        "description": (
            "The RtSolPr is malformed or fails verification. `reason` says which check: malformed, not-rtsolpr, "
            "missing-signature, missing-cga-option, missing-timestamp, missing-nonce, missing-handover-key-request, "
            "stale-timestamp, key-too-small, key-too-large, bad-public-key, bad-cga-collision-count, bad-cga-prefix, "
            "bad-cga-hash1, bad-cga-hash2 (Hash2 lacks the zero bits the address's Sec demands), key-hash-mismatch, "
            "bad-signature, encryption-key-is-cga-key, replayed-nonce. No key is created or changed."
        ),
    },
    503: {"model": Problem, "description": "The key store cannot be reached; retry after `Retry-After` seconds."},
}


@router.post(
    "/send/handover-key",
    response_model=SendHandoverKeyResponse,
    tags=["access routers"],
    summary="SEND fallback: answer an RtSolPr's Handover Key Request (RFC 5269)",
    description=(
        "Role **ar**. For mobile nodes without AAA keys. The router passes the RtSolPr it received (IPv6 source "
        "and destination, ICMPv6 message in hex). The service verifies the SEND options (CGA, RSA Signature, "
        "Timestamp window, Nonce, key sizes), rejects a replayed Nonce, and returns the Handover Key Reply option "
        "with the live handover key of that CGA key (or a new random one) encrypted to the mobile node's "
        "handover-key-encryption key. The router builds and signs the PrRtAdv (`aaa_fmip.ar.build_prrtadv`). "
        "FBUs with SPI 0 from that CGA are then accepted by POST /v1/fbu/verify."
    ),
    responses=_RESPONSES,
)
def send_handover_key(
    body: SendHandoverKeyRequest, caller: ArCaller, ctx: ContextDep, request: Request
) -> SendHandoverKeyResponse:
    request.state.decode_field = "icmpv6"  # a DecodeError from the service is about this request field
    with ctx.metrics.operation(REST, "send_handover_key"):
        result = ctx.service.send_handover_key(
            caller, source=body.source, destination=body.destination, icmpv6=body.icmpv6
        )
    return SendHandoverKeyResponse(
        handover_key_reply_option=result.handover_key_reply.hex(),
        nonce=result.nonce.hex(),
        identifier=result.identifier,
        lifetime=result.lifetime,
        hk=result.hk.hex(),
        hk_expires_at=to_rfc3339(result.hk_expires_at),
        algorithm=result.algorithm.label,
        key_hash=result.cga_key_hash.hex(),
        reused=result.reused,
    )
