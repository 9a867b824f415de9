"""Domain values shared by the service layer and its adapters (no IO, no crypto)."""

from __future__ import annotations

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
