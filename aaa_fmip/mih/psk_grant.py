"""Use case: hand a Mobility Server (MoS) the MIH PSK of one session (architecture.md §10).

A MoS receives a DTLS/TLS-PSK handshake whose ``psk_identity`` (RFC 4279 §5.1) is a session's HMK-Name in hex;
it asks the service for the key of that identity under its own MIHF-ID. The service derives
``KDF(HMK, "MIH PSK@aaa-fmip.invalid" | 0x00 | MIHF-ID | 32)`` (:func:`aaa_fmip.keys.derive_mih_psk`) only for a
caller of role ``mos`` whose token is bound to that MIHF-ID, and only for a live session: a key leaked at one MoS
is useless at any other (RFC 4962 key scoping), and a revoked session yields no key. Every grant and every
refusal for another MoS's MIHF-ID is audited (identifiers only, never the key).

The session is read with the store's existing read path (``get_session`` and, for a missing session,
``is_revoked``), as the AR's handover-key use case does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aaa_fmip import keys
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import Forbidden, InvalidRequest, NotFound
from aaa_fmip.model import Caller
from aaa_fmip.service import HandoverKeyService

EVENT_ISSUED = "mih_psk.issued"
EVENT_DENIED = "mih_psk.denied"


@dataclass(frozen=True)
class MihPskGrant:
    """An MIH PSK handed to the MoS it was derived for."""

    psk: SecretBytes = field(repr=False)
    identity: str  # the PSK identity asked for (hex HMK-Name)
    mihf_id: str
    lifetime: int  # seconds the session (and so the key) remains valid


def mih_psk_for_mos(service: HandoverKeyService, caller: Caller, *, identity: str, mihf_id: str) -> MihPskGrant:
    """The MIH PSK of the session named by ``identity`` for the calling MoS's ``mihf_id``.

    Raises Forbidden (wrong role, or an MIHF-ID not bound to the caller's token), InvalidRequest (an identity or
    MIHF-ID that is not well formed), NotFound with reason ``revoked`` or ``unknown-session``, StoreUnavailable.
    """
    if caller.role != "mos":
        raise Forbidden(f"role {caller.role!r} may not do this", reason="wrong-role")
    try:
        keys.mihf_id_octets(mihf_id)
    except ValueError as exc:
        raise InvalidRequest(str(exc), reason="bad-mihf-id") from None
    now = service.clock()
    if mihf_id not in caller.mihf_ids:
        service.store.append_audits([(EVENT_DENIED, {"actor": caller.name, "mihf_id": mihf_id}, now)])
        raise Forbidden(f"{mihf_id!r} is not an MIHF-ID of the calling MoS", reason="not-your-mihf-id")
    try:
        hmk_name = keys.hmk_name_of_identity(identity)
    except ValueError as exc:
        raise InvalidRequest(str(exc), reason="bad-psk-identity") from None
    store = service.store
    record = store.run(store.ops.get_session(hmk_name))
    if record is None or record.expires_at <= now:
        revoked = store.run(store.ops.is_revoked(hmk_name=hmk_name))
        raise NotFound(
            "the session was revoked" if revoked else "no live session has this PSK identity",
            reason="revoked" if revoked else "unknown-session",
        )
    psk = keys.derive_mih_psk(record.hmk, record.hmk_name, mihf_id)
    lifetime = int(record.expires_at - now)
    service.store.append_audits(
        [
            (
                EVENT_ISSUED,
                {
                    "actor": caller.name,
                    "mihf_id": mihf_id,
                    "hmk_name": record.hmk_name.hex(),
                    "spi": record.spi,
                    "lifetime": lifetime,
                },
                now,
            )
        ]
    )
    return MihPskGrant(psk=psk.psk, identity=psk.identity, mihf_id=mihf_id, lifetime=lifetime)
