"""Who may call the service: bearer-token digests to callers, and the access routers by each of their identities.

Built by the composition root (:func:`aaa_fmip.bootstrap.build_callers`) and handed to the adapters, which look
callers up here and never read settings themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from aaa_fmip.model import AccessRouter, Caller, NasIdentity


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

    def match_nas(self, nas: NasIdentity) -> RouterMatch:
        """The registered access router a RADIUS request came from (:func:`match_router`)."""
        return match_router(self.routers, nas)


# ------------------------------------------------------------------------------ access routers as RADIUS NASes


@dataclass(frozen=True)
class RouterMatch:
    router: AccessRouter | None
    reason: str  # why none matched, for the operator's log (identifiers and addresses only)
    misconfigured: bool = False  # a router seems meant for this NAS but is not matched (or several are)


def _shown(text: str) -> str:
    """A NAS's own string, quoted and cut short for a log line (it is the NAS's claim, not ours)."""
    return repr(text[:64])


def describe_nas(nas: NasIdentity) -> str:
    """The NAS as a request showed it: its source address (when the site policy recorded it), the addresses it
    claims, its NAS-Identifier."""
    parts = [
        f"source address {nas.source_address}"
        if nas.source_address is not None
        else "source address not recorded (aaa_fmip_nas_source policy not run)"
    ]
    if nas.nas_ip_address is not None:
        parts.append(f"NAS-IP-Address {nas.nas_ip_address}")
    if nas.nas_ipv6_address is not None:
        parts.append(f"NAS-IPv6-Address {nas.nas_ipv6_address}")
    parts.append(f"NAS-Identifier {_shown(nas.nas_identifier)}" if nas.nas_identifier else "no NAS-Identifier")
    return ", ".join(parts)


def match_router(routers: Iterable[AccessRouter], nas: NasIdentity) -> RouterMatch:
    """The registered access router that sent this request, if exactly one fits.

    A router with ``nas_address`` is matched by address: the packet's source address when the site policy
    recorded it (authenticated by the RADIUS shared secret of that client), else NAS-IP(v6)-Address. A router
    with only ``nas_identifier`` is matched by NAS-Identifier, which is the NAS's own claim (docs/freeradius.md).
    When none or several match, ``reason`` says why, in the terms of the configuration.
    """
    routers = tuple(routers)
    claimed = {a for a in (nas.nas_ip_address, nas.nas_ipv6_address) if a is not None}
    by_address = {nas.source_address} if nas.source_address is not None else claimed
    found: list[AccessRouter] = []
    for router in routers:
        if router.nas_address is not None:
            if router.nas_address in by_address:
                found.append(router)
        elif router.nas_identifier is not None and router.nas_identifier == nas.nas_identifier:
            found.append(router)
    if len(found) == 1:
        return RouterMatch(found[0], "")
    if found:
        names = ", ".join(r.name for r in found)
        return RouterMatch(None, f"it matches {len(found)} access routers ({names}); give each its own", True)
    if not routers:
        return RouterMatch(None, "no [[access_routers]] are configured")
    what = "source address" if nas.source_address is not None else "NAS-IP-Address / NAS-IPv6-Address"
    shown = ", ".join(sorted(str(a) for a in by_address)) or "none"
    reason = (
        f"no access router has nas_address = {shown} or (without nas_address) a nas_identifier equal to its "
        f"NAS-Identifier; a router with nas_address is matched by the packet's {what} only, never by NAS-Identifier"
    )
    # The usual slip: the router names this NAS-Identifier but is matched by an address this NAS does not use.
    meant = [
        r
        for r in routers
        if r.nas_address is not None and nas.nas_identifier and r.nas_identifier == nas.nas_identifier
    ]
    for router in meant:
        reason += (
            f"; router {router.name} has nas_identifier {_shown(router.nas_identifier or '')} but "
            f"nas_address = {router.nas_address}, so only requests from {router.nas_address} match it"
        )
    return RouterMatch(None, reason, bool(meant))
