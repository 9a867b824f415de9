"""Use cases (architecture.md §7): ingest, derive, verify, revoke, audit.

Adapters (REST, Diameter, RADIUS plugin) call only this module; it calls the store, keys and wire codecs.
Time comes from an injected clock so tests control expiry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from aaa_fmip.model import Caller, FbuVerdict, HandoverKeyGrant, SessionInfo

IPv6 = ipaddress.IPv6Address


class HandoverKeyService:
    """The service layer. Errors raised: :class:`aaa_fmip.errors.NotFound`, ``Forbidden``,
    ``InvalidRequest``, ``StoreUnavailable``; FBU verification returns a verdict instead of raising."""

    def __init__(
        self,
        store: object,
        *,
        max_lifetime: int = 43200,
        clock: Callable[[], float] | None = None,
    ) -> None:
        raise NotImplementedError

    def ingest_session(
        self,
        caller: Caller,
        *,
        user_name: str,
        emsk: bytes | None = None,
        eap_session_id: bytes | None = None,
        dsrk: bytes | None = None,
        emsk_name: bytes | None = None,
        calling_station_id: str | None = None,
        nas_identifier: str | None = None,
        lifetime: int | None = None,
        external_ids: tuple[str, ...] = (),
    ) -> SessionInfo:
        """Derive the HMK (EMSK + Session-Id, or DSRK + EMSKName) and store the session."""
        raise NotImplementedError

    def record_no_emsk(self, caller: Caller, *, user_name: str, method: str | None, detail: str) -> None:
        """Audit an authentication that produced no EMSK (EAP-PWD, EAP-MD5): no session is created."""
        raise NotImplementedError

    def revoke_session(self, caller: Caller, hmk_name: bytes, *, cause: str = "revoked") -> None:
        """Delete a session and everything derived from it; raises NotFound."""
        raise NotImplementedError

    def revoke_matching(
        self,
        caller: Caller,
        *,
        calling_station_id: str | None = None,
        external_id: str | None = None,
        cause: str = "accounting-stop",
    ) -> int:
        """Revoke every session matching the selector; returns how many were revoked."""
        raise NotImplementedError

    def handover_key(
        self,
        caller: Caller,
        *,
        ar_address: IPv6,
        spi: int | None = None,
        calling_station_id: str | None = None,
        hmk_name: bytes | None = None,
    ) -> HandoverKeyGrant:
        """The HK of one session for one of the calling AR's own addresses (Forbidden otherwise)."""
        raise NotImplementedError

    def verify_fbu(
        self,
        caller: Caller,
        *,
        source: IPv6,
        destination: IPv6,
        mh: bytes,
        home_address: IPv6 | None = None,
    ) -> FbuVerdict:
        """Verify an FBU's BADF and sequence number for the PAR ``destination`` (the caller's own)."""
        raise NotImplementedError
