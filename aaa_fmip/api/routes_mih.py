"""REST route of the MIH transport keys (architecture.md §10): a MoS fetches the MIH PSK for a PSK identity.

JSON ↔ :func:`aaa_fmip.mih.psk_grant.mih_psk_for_mos`; errors become problems in :mod:`aaa_fmip.api.problems`.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from aaa_fmip.api.auth import ContextDep, MosCaller
from aaa_fmip.api.schemas import Problem
from aaa_fmip.mih.psk_grant import mih_psk_for_mos

REST: Final = "rest"  # the metrics ``interface`` label

router = APIRouter(prefix="/v1")


class MihPskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={"examples": [{"psk_identity": "3c1527595cd7ff6a", "mihf_id": "mos1.example.net"}]},
    )

    psk_identity: str = Field(
        max_length=64, description="The psk_identity the node sent in its handshake: 16 lowercase hex digits."
    )
    mihf_id: str = Field(max_length=253, description="The MIHF-ID of the calling MoS the key is for (FQDN or NAI).")


class MihPskResponse(BaseModel):
    psk: str = Field(description="The pre-shared key (32 octets, hex) for DTLS/TLS-PSK with that node.")
    psk_identity: str = Field(description="The PSK identity the key belongs to (the session's HMK-Name, hex).")
    mihf_id: str = Field(description="The MIHF-ID the key is bound to.")
    lifetime: int = Field(description="Seconds the session, and so the key, remains valid.")


_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": Problem, "description": "No bearer token, or an unknown one."},
    403: {
        "model": Problem,
        "description": "Not a mos token (`wrong-role`), or `mihf_id` is not bound to it (`not-your-mihf-id`).",
    },
    404: {"model": Problem, "description": "No live session has this identity (`unknown-session` or `revoked`)."},
    422: {"model": Problem, "description": "A malformed identity (`bad-psk-identity`) or MIHF-ID (`bad-mihf-id`)."},
    503: {"model": Problem, "description": "The key store cannot be reached; retry after `Retry-After` seconds."},
}


@router.post(
    "/mih/psk",
    response_model=MihPskResponse,
    tags=["mobility servers"],
    summary="Get the MIH PSK for a PSK identity (DTLS/TLS-PSK to a node)",
    description=(
        "Role **mos**. A Mobility Server that received a DTLS or TLS handshake with this `psk_identity` gets the "
        "pre-shared key of that node's session for one of its own MIHF-IDs: "
        '`KDF(HMK, "MIH PSK@aaa-fmip.invalid" | 0x00 | MIHF-ID | 32)` (docs/key-hierarchy.md). A MoS never '
        "obtains the key of another MoS's MIHF-ID (403); a revoked or expired session has no key (404). Audited. "
        "The response is `Cache-Control: no-store`."
    ),
    responses=_RESPONSES,
)
def mih_psk(body: MihPskRequest, caller: MosCaller, ctx: ContextDep) -> MihPskResponse:
    with ctx.metrics.operation(REST, "mih_psk"):
        grant = mih_psk_for_mos(ctx.service, caller, identity=body.psk_identity, mihf_id=body.mihf_id)
    return MihPskResponse(
        psk=grant.psk.hex(), psk_identity=grant.identity, mihf_id=grant.mihf_id, lifetime=grant.lifetime
    )
