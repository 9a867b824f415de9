"""Domain values shared by the service layer and its adapters (no IO, no crypto)."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from aaa_fmip.crypto.secrets import SecretBytes

Role = Literal["ar", "aaa", "auditor", "admin", "mos"]
LifetimeUnits = Literal["4s", "seconds"]  # unit of the FBU Lifetime field (architecture.md §3; keys.lifetime_units)
# A Diameter peer's role. ar: an access router querying for itself; agent: a relay/proxy forwarding ARs' requests;
# nas and home-eap-server: the two sides of the EAP agent (RFC 4072) on the DER/DEA path.
PeerRole = Literal["ar", "agent", "nas", "home-eap-server"]


@dataclass(frozen=True)
class AccessRouter:
    """A registered access router: its identity and the AR-IDs (addresses) it may be keyed for."""

    name: str
    addresses: frozenset[ipaddress.IPv6Address]
    diameter_identity: str | None = None  # Origin-Host of its Diameter peer, if it queries over Diameter
    nas_identifier: str | None = None  # NAS-Identifier it sends as a RADIUS NAS
    nas_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None  # its RADIUS requests' source
    key_address: ipaddress.IPv6Address | None = None  # the AR-ID whose HK an Access-Accept carries (first listed)

    def owns(self, address: ipaddress.IPv6Address) -> bool:
        return address in self.addresses


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of the service (REST token, Diameter peer, or the in-process AAA plugin)."""

    name: str
    role: Role
    router: AccessRouter | None = None  # set iff role == "ar"
    # role "mos": the MIHF-IDs of the Mobility Server(s) it may fetch MIH PSKs for (architecture.md §10)
    mihf_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EapKeys:
    """Home domain: the EMSK an EAP method exported (RFC 5247 §2.1) and that method's EAP Session-Id (§1.4)."""

    emsk: SecretBytes = field(repr=False)
    eap_session_id: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.emsk, SecretBytes) or not isinstance(self.eap_session_id, bytes):
            raise TypeError("EapKeys takes the EMSK as SecretBytes and the EAP Session-Id as bytes")


@dataclass(frozen=True)
class VisitedKeys:
    """Visited domain: the DSRK delivered to this domain (RFC 5295 §4) and the EMSKName it belongs to (§3.2)."""

    dsrk: SecretBytes = field(repr=False)
    emsk_name: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.dsrk, SecretBytes) or not isinstance(self.emsk_name, bytes):
            raise TypeError("VisitedKeys takes the DSRK as SecretBytes and the EMSKName as bytes")


SessionKeys = EapKeys | VisitedKeys


@dataclass(frozen=True)
class SessionRequest:
    """One session to ingest, from whichever adapter authenticated it (``POST /v1/sessions``, the RADIUS
    module's post-auth, the Diameter EAP agent): the root key it is derived from and what identifies it.

    ``keys`` is either the home domain's EMSK and EAP Session-Id or a visited domain's DSRK and EMSKName, never
    a mix of the two nor half of one. The root key is used once, to derive the HMK (architecture.md §2), and
    never stored; ``repr`` never shows it.
    """

    user_name: str
    keys: SessionKeys
    calling_station_id: str | None = None  # the MN's MAC as the NAS sent it (normalised when stored)
    nas_identifier: str | None = None  # the NAS the session came through (Accounting-On/Off revokes by it)
    lifetime: int | None = None  # seconds (Session-Timeout, Key-Lifetime), capped by keys.max_lifetime
    external_ids: tuple[str, ...] = ()  # names the adapter revokes by later (a RADIUS Class, a Diameter session)
    # (an access router, one of its addresses): also derive that router's HK, for the AAA server to push
    push_to: tuple[Caller, ipaddress.IPv6Address] | None = None


@dataclass(frozen=True)
class SessionInfo:
    """What ingest returns: public identifiers of the stored session."""

    hmk_name: bytes
    spi: int
    expires_at: float  # Unix time, seconds
    grant: HandoverKeyGrant | None = None  # the serving router's HK, when ingest was asked to push it


@dataclass(frozen=True)
class HandoverKeyGrant:
    """An HK handed to the AR it was derived for."""

    hk: SecretBytes = field(repr=False)
    hk_name: bytes
    spi: int
    lifetime: int  # seconds remaining
    algorithm: str  # "HMAC-SHA1-96"


Verdict = Literal["accepted", "retransmission"]


@dataclass(frozen=True)
class FbuAccepted:
    """An FBU that verified (RFC 5568 §6.4.5): a new binding, or a retransmission of the last one."""

    verdict: Verdict
    spi: int
    sequence: int
    ncoa: ipaddress.IPv6Address
    lifetime: int  # seconds
    valid: Literal[True] = True
    reason: None = None


@dataclass(frozen=True)
class FbuRejected:
    """An FBU that did not verify, with a stable ``reason`` code (unknown-spi, revoked, expired, replay, ...)."""

    reason: str
    spi: int
    sequence: int
    valid: Literal[False] = False
    verdict: None = None


FbuVerdict = FbuAccepted | FbuRejected


@dataclass(frozen=True)
class NasIdentity:
    """Who sent the request: the NAS's own claims and, when the site policy recorded it, the source address."""

    nas_identifier: str | None = None
    nas_ip_address: ipaddress.IPv4Address | None = None
    nas_ipv6_address: ipaddress.IPv6Address | None = None
    source_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    def label(self) -> str | None:
        """What ingest records as the NAS: NAS-Identifier, else the NAS address."""
        if self.nas_identifier:
            return self.nas_identifier
        address = self.nas_ipv6_address or self.nas_ip_address or self.source_address
        return str(address) if address is not None else None


@functools.lru_cache(maxsize=4096)
def address_text(address: ipaddress.IPv6Address) -> str:
    """``str(address)``, remembered: on the FBU path the routers' own addresses and recent care-of addresses
    recur, and the ipaddress module makes IPv6 text in Python (about 5 µs each). Scope ids are part of the key."""
    return str(address)
