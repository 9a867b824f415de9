"""REST route of the router-pair IKEv2 keys (architecture.md §9; use case in :mod:`aaa_fmip.service.router_pairs`;
docs/router.md "Router-pair keys (IKEv2)"). Role **ar**."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from aaa_fmip.api.auth import ArCaller, ContextDep
from aaa_fmip.api.schemas import IPv6, Problem

router = APIRouter(prefix="/v1")

REST: Final = "rest"

_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": Problem, "description": "No bearer token, or an unknown one."},
    403: {
        "model": Problem,
        "description": "Not an AR token (`wrong-role`), a caller that is no registered router (`not-a-router`), or "
        "a `local` address that is not the caller's (`not-your-address`).",
    },
    404: {"model": Problem, "description": "`peer` is no address of a registered access router (`unknown-peer`)."},
    422: {
        "model": Problem,
        "description": "A malformed address (`invalid-request`), a multicast or unspecified `peer` (`bad-address`), "
        "or a `peer` that is the caller itself (`same-router`).",
    },
    503: {"model": Problem, "description": "The key store cannot be reached; retry after `Retry-After` seconds."},
}


class PairKeyOut(BaseModel):
    epoch: int = Field(description="The epoch: floor(POSIX time / period).")
    psk: str = Field(description="The IKEv2 pre-shared key of this epoch (32 octets, hex).")
    not_before: float = Field(description="Start of the epoch (POSIX seconds).")
    not_after: float = Field(description="End of the epoch (POSIX seconds).")


class PairPskOut(BaseModel):
    local: str = Field(description="The caller's IKE address (one of its registered addresses).")
    peer: str = Field(description="The other router's IKE address.")
    peer_router: str = Field(description="The other router's registered name.")
    epoch: int = Field(description="The current epoch: initiate IKE with its key.")
    period: int = Field(description="Seconds per epoch.")
    keys: list[PairKeyOut] = Field(
        description="Ascending epochs: the current one, and near a boundary also the one on its other side. "
        "Accept every key listed; initiate with the current epoch's."
    )


@router.get(
    "/router-pairs/psk",
    response_model=PairPskOut,
    tags=["access routers"],
    summary="Get the IKEv2 pre-shared key for IPsec with another access router",
    description=(
        "Role **ar**. The PSK protecting HI/HAck between the caller and another registered router (RFC 5568 §10): "
        '`KDF(IRK, "AR Pair IKE PSK@aaa-fmip.invalid" | 0x00 | min(A, B) | max(A, B) | uint32(epoch) | 32)` '
        "over the two routers' IKE addresses, from a root key the service generated (docs/key-hierarchy.md). "
        "Both routers of a pair get the same key; no other caller gets it. Rotated every `period` seconds; near a "
        "boundary the key of the neighbouring epoch comes too. Audited (`pair_psk.issued`, never the key). "
        "The response is `Cache-Control: no-store`. `aaa-fmip router ipsec-config` renders it as swanctl.conf."
    ),
    responses=_RESPONSES,
)
def router_pair_psk(
    caller: ArCaller,
    ctx: ContextDep,
    peer: Annotated[IPv6, Query(description="The other router's IKE address (an address it is registered with).")],
    local: Annotated[
        IPv6 | None,
        Query(description="Your IKE address, one of your registered addresses (default: the first registered)."),
    ] = None,
) -> PairPskOut:
    use = ctx.router_pairs
    with ctx.metrics.operation(REST, "router_pair_psk"):
        grant = use.pair_psk(caller, peer=peer, local=local)
    return PairPskOut(
        local=str(grant.local),
        peer=str(grant.peer),
        peer_router=grant.peer_router,
        epoch=grant.epoch,
        period=grant.period,
        keys=[
            PairKeyOut(epoch=k.epoch, psk=k.psk.hex(), not_before=k.not_before, not_after=k.not_after)
            for k in grant.keys
        ],
    )
