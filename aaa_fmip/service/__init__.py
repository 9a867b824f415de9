"""Use cases (architecture.md §7), one module each: ``sessions`` (ingest, revoke), ``handover`` (an AR's key,
FBU verification), ``send`` (RFC 5269), ``audit``; ``_access`` holds what they share (role checks, audit
entries).

Adapters (REST, Diameter, RADIUS plugin) call only :class:`HandoverKeyService`; it calls the store (through the
:class:`~aaa_fmip.store.Store` port), the key hierarchy and the wire codecs. Time comes from an injected clock so
tests control expiry. Nothing here logs or raises key material: audit entries carry identifiers (HMK-Name, SPI,
HK-Name, addresses) only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aaa_fmip import keys
from aaa_fmip.model import LifetimeUnits
from aaa_fmip.send_policy import SendPolicy
from aaa_fmip.service.audit import AuditUseCases
from aaa_fmip.service.cache import SessionCache
from aaa_fmip.service.handover import MAX_SPI_CANDIDATES, HandoverUseCases
from aaa_fmip.service.send import SendUseCases
from aaa_fmip.service.sessions import (
    PreparedSession,
    SessionUseCases,
    nas_external_id,
    normalise_calling_station_id,
)
from aaa_fmip.store import Store

__all__ = [
    "MAX_SPI_CANDIDATES",
    "HandoverKeyService",
    "LifetimeUnits",
    "PreparedSession",
    "nas_external_id",
    "normalise_calling_station_id",
]


class HandoverKeyService(SessionUseCases, HandoverUseCases, SendUseCases, AuditUseCases):
    """The service layer: every use case over one store, clock and policy.

    Raises :class:`~aaa_fmip.errors.NotFound`, ``Forbidden``, ``InvalidRequest``, ``DecodeError`` and
    ``StoreUnavailable``; FBU verification returns a verdict rather than raising for a bad FBU.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_lifetime: int = keys.DEFAULT_MAX_LIFETIME,
        clock: Callable[[], float] | None = None,
        lifetime_units: LifetimeUnits = "4s",
        send_policy: SendPolicy | None = None,
        session_cache: SessionCache | None = None,
    ) -> None:
        if max_lifetime <= 0:
            raise ValueError("max_lifetime must be positive")
        self.store = store
        self.max_lifetime = max_lifetime
        self.clock = clock or time.time
        # RFC 5568 §6.2.2 says seconds; the MIPv6 BU it copies uses 4-second units (RFC 6275 §6.1.7).
        self.lifetime_unit = 4 if lifetime_units == "4s" else 1
        self.send_policy = send_policy or SendPolicy()
        # FBU verification's cache of unwrapped session records (aaa_fmip.service.cache); size 0 disables it
        self.session_cache = session_cache if session_cache is not None else SessionCache()

    # -- health -----------------------------------------------------------------------------------------

    def ready(self) -> None:
        """Raises StoreUnavailable when the store cannot be reached, and StoreNotDurable when it would lose FBU
        replay state (FBUs are refused then; the check also notices a Redis restart or a changed setting)."""
        self.store.ping()
        self.store.check_durability(require=True)

    def live_sessions(self) -> int:
        return self.store.run(self.store.ops.count_live_sessions())
