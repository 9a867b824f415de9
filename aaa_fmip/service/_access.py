"""What every use case shares: the store, the clock, the policies, role checks and audit entries."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from aaa_fmip.errors import Forbidden
from aaa_fmip.model import Caller, Role
from aaa_fmip.send_policy import SendPolicy
from aaa_fmip.store import AuditItem, Store

IPv6 = ipaddress.IPv6Address


class UseCase:
    """The state every use case reads (set by :class:`aaa_fmip.service.HandoverKeyService`)."""

    store: Store
    clock: Callable[[], float]
    max_lifetime: int
    lifetime_unit: int
    send_policy: SendPolicy

    def _audit(self, event: str, at: float, **fields: str | int | None) -> None:
        self.store.append_audits([audit_item(event, at, **fields)])


def audit_item(event: str, at: float, **fields: str | int | None) -> AuditItem:
    """An audit entry to append: fields that are None are left out. Identifiers only, never key material."""
    return event, {k: v for k, v in fields.items() if v is not None}, at


def require(caller: Caller, *roles: Role) -> None:
    if caller.role not in roles:
        raise Forbidden(f"role {caller.role!r} may not do this", reason="wrong-role")


def require_router(caller: Caller, address: IPv6) -> str:
    """The AR's name, if ``address`` is one of the calling AR's own addresses (else Forbidden)."""
    require(caller, "ar")
    if caller.router is None or not caller.router.owns(address):
        raise Forbidden(f"{address} is not an address of the calling access router", reason="not-your-address")
    return caller.router.name
