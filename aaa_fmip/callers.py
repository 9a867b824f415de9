"""Who may call the service: bearer-token digests to callers, and the access routers by each of their identities.

Built by the composition root (:func:`aaa_fmip.bootstrap.build_callers`) and handed to the adapters, which look
callers up here and never read settings themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field

from aaa_fmip.model import AccessRouter, Caller


@dataclass(frozen=True)
class CallerRegistry:
    """Who may call: bearer-token digests → callers, and the access routers by each of their identities."""

    _tokens: tuple[tuple[bytes, Caller], ...] = field(repr=False)
    routers: tuple[AccessRouter, ...]

    def authenticate(self, token: str) -> Caller | None:
        """The caller a bearer token belongs to, or None. Compares every digest in constant time."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Caller | None = None
        for expected, caller in self._tokens:
            if hmac.compare_digest(expected, digest) and found is None:
                found = caller
        return found

    @property
    def client_count(self) -> int:
        return sum(1 for _, caller in self._tokens if caller.role != "ar")

    def router_by_name(self, name: str) -> AccessRouter | None:
        return next((r for r in self.routers if r.name == name), None)

    def router_by_diameter_identity(self, identity: str) -> AccessRouter | None:
        """The AR whose Diameter peer has this Origin-Host (case-insensitive, RFC 6733 §4.3.1)."""
        lowered = identity.lower()
        return next((r for r in self.routers if r.diameter_identity and r.diameter_identity.lower() == lowered), None)

    def router_by_address(self, address: ipaddress.IPv6Address) -> AccessRouter | None:
        return next((r for r in self.routers if r.owns(address)), None)

    def router_by_nas_identifier(self, nas_identifier: str) -> AccessRouter | None:
        return next((r for r in self.routers if r.nas_identifier == nas_identifier), None)

    def caller_for_router(self, router: AccessRouter) -> Caller:
        """The caller an AR is when it queries over Diameter (authenticated by its peer identity)."""
        return Caller(name=router.name, role="ar", router=router)
