"""Use case: IKEv2 pre-shared keys for pairs of access routers (architecture.md §2 and §9).

RFC 5568 §10 (and RFC 5949 §7 for PMIPv6 fast handovers) require IPsec ESP between the routers for HI/HAck,
with IKEv2 pre-shared keys mandatory to implement. Instead of N² hand-provisioned secrets, the service hands
each pair of *registered* routers a PSK derived from its infrastructure root key (IRK, created once, kept
wrapped under the KEK, never derived from any EMSK) for a time epoch (:func:`aaa_fmip.keys.derive_router_pair_psk`):

* only to one of the two routers of the pair: the caller (role ``ar``) names one of its own addresses as the
  local IKE address and a peer address that must belong to another registered router;
* rotated: ``epoch = floor(now / period)``. Within ``overlap`` seconds of a boundary the grant also carries the
  key of the epoch on the other side of it (the next one before, the previous one after), so two routers that
  refresh at least once every ``overlap`` seconds always share a key while they rotate (docs/router.md);
* audited (``pair_psk.issued``: who, which pair, which epochs; never the key).

A router cannot ask for other epochs: a router removed from the registry gets no later key, and the keys it
already holds stop working within one period.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from aaa_fmip import keys
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import Forbidden, InvalidRequest, NotFound
from aaa_fmip.model import AccessRouter, Caller
from aaa_fmip.service._access import audit_item, require, require_router
from aaa_fmip.store import Store

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_PERIOD",
    "EVENT_ISSUED",
    "PairKey",
    "PairPskGrant",
    "RouterPairUseCases",
    "epochs_at",
]

IPv6 = ipaddress.IPv6Address
# Settings as module constants until the settings module takes them (architecture.md §9; docs/router.md).
DEFAULT_PERIOD: Final = keys.ROUTER_PAIR_PERIOD
DEFAULT_OVERLAP: Final = keys.ROUTER_PAIR_OVERLAP
EVENT_ISSUED: Final = "pair_psk.issued"


@dataclass(frozen=True)
class PairKey:
    """The PSK of one epoch, valid from ``not_before`` to ``not_after`` (POSIX seconds; the epoch's bounds)."""

    epoch: int
    psk: SecretBytes = field(repr=False)
    not_before: float
    not_after: float


@dataclass(frozen=True)
class PairPskGrant:
    """What one router of a pair gets: the pair, the current epoch, and the keys (ascending epochs)."""

    local: IPv6  # the caller's IKE address
    peer: IPv6  # the other router's IKE address
    peer_router: str  # the other router's registered name
    epoch: int  # the current epoch: the key to initiate IKE with
    period: int
    keys: tuple[PairKey, ...]


def epochs_at(now: float, period: int, overlap: int) -> tuple[int, tuple[int, ...]]:
    """The current epoch at ``now`` and every epoch whose key is handed out then, ascending.

    ``overlap`` < ``period / 2`` so at most two epochs are live at once. Epoch 0 starts at the POSIX epoch.
    """
    if not 0 <= overlap < period / 2:
        raise ValueError("the overlap must be shorter than half the period")
    current = math.floor(now / period)
    if not 0 <= current < keys.MAX_EPOCH:
        raise ValueError("the clock is outside the epochs a uint32 can count")
    start = current * period
    epochs = [current]
    if now >= start + period - overlap:
        epochs.append(current + 1)
    elif now < start + overlap and current > 0:
        epochs.insert(0, current - 1)
    return current, tuple(epochs)


class RouterPairUseCases:
    """Router-pair PSKs over the store (the IRK) and the registry of access routers."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float],
        routers: Sequence[AccessRouter],
        *,
        period: int = DEFAULT_PERIOD,
        overlap: int = DEFAULT_OVERLAP,
    ) -> None:
        epochs_at(0.0, period, overlap)  # ValueError for a bad pair of settings, at construction
        self.store = store
        self.clock = clock
        self.routers = tuple(routers)
        self.period = period
        self.overlap = overlap

    def pair_psk(self, caller: Caller, *, peer: IPv6, local: IPv6 | None = None) -> PairPskGrant:
        """The PSK(s) for IKE between ``local`` (one of the caller's addresses; default: its first registered
        one) and ``peer`` (an address of another registered router).

        Raises Forbidden (``wrong-role``, ``not-a-router``, ``not-your-address``), NotFound (``unknown-peer``),
        InvalidRequest (``same-router``, ``bad-address``), StoreUnavailable; refusals are not audited (no key is
        looked up), as for the other routes of routers.
        """
        require(caller, "ar")
        me = caller.router
        if me is None:
            raise Forbidden("the caller is not a registered access router", reason="not-a-router")
        if local is None:
            local = me.key_address if me.key_address is not None else min(me.addresses, default=None)
            if local is None:
                raise Forbidden("the calling access router has no registered address", reason="not-a-router")
        require_router(caller, local)
        if peer.is_unspecified or peer.is_multicast:
            raise InvalidRequest(f"{peer} is not a unicast address", reason="bad-address")
        other = next((r for r in self.routers if r.owns(peer)), None)
        if other is None:
            raise NotFound(f"{peer} is not an address of a registered access router", reason="unknown-peer")
        if other.name == me.name:
            raise InvalidRequest(f"{peer} is an address of the calling router itself", reason="same-router")
        now = self.clock()
        current, epochs = epochs_at(now, self.period, self.overlap)
        irk = self.store.run(self.store.ops.infrastructure_root_key(_new_irk, now=now), "irk")
        pair_keys = tuple(
            PairKey(
                e,
                keys.derive_router_pair_psk(irk, local, peer, e).psk,
                float(e * self.period),
                float((e + 1) * self.period),
            )
            for e in epochs
        )
        self.store.append_audits(
            [
                audit_item(
                    EVENT_ISSUED,
                    now,
                    actor=caller.name,
                    ar=me.name,
                    ar_address=str(local),
                    peer=other.name,
                    peer_address=str(peer),
                    epoch=current,
                    epochs=",".join(str(e) for e in epochs),
                )
            ]
        )
        return PairPskGrant(local, peer, other.name, current, self.period, pair_keys)


def _new_irk() -> SecretBytes:
    return SecretBytes(secrets.token_bytes(keys.IRK_LENGTH))
