"""What the router core says and is told (aaa_fmip.router.core): its effects, its parameters, and the little
state its PAR and NAR sides share (the HI Sequence Number both send from, the link-layer addresses learnt).

Pure values, no IO (RFC 5568 §6; architecture.md §8)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Final, TypeAlias

from aaa_fmip.router.neighbours import NeighbourTable
from aaa_fmip.router.prefixes import Allocation, PerNodePrefixes
from aaa_fmip.router.verify import ParsedFbu

__all__ = [
    "HI_INITIAL_TIMEOUT",
    "HI_RETRIES",
    "Effect",
    "HandoverFinished",
    "HiAccepted",
    "LocalProtocolError",
    "Notice",
    "Prefetch",
    "PrefixEvent",
    "RouterParameters",
    "SendIcmpv6",
    "SendMh",
    "SharedState",
    "VerifyFbu",
]

HI_RETRIES: Final = 3  # RFC 5568 §9
HI_INITIAL_TIMEOUT: Final = 0.1  # seconds: 2×RTT, 100 ms when the RTT is unknown (§6.2.1.1)


class LocalProtocolError(Exception):
    """The driver used the core wrongly (e.g. a verdict for an unknown token): a bug, not bad input."""


# --- effects -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendMh:
    """Send a Mobility Header (the kernel fills the checksum again; ours is already right)."""

    source: IPv6Address
    destination: IPv6Address
    mh: bytes
    # An FBack whose BADF authenticator is still zero: the router holds no key (verify-as-a-service), so the
    # driver has the service fill it in (POST /v1/fback/authenticator) before sending.
    needs_authenticator: bool = False


@dataclass(frozen=True)
class SendIcmpv6:
    """Send an ICMPv6 message from ``source`` (the router's link-local address) with Hop Limit 255."""

    source: IPv6Address
    destination: IPv6Address
    message: bytes
    interface: str | None = None


@dataclass(frozen=True)
class VerifyFbu:
    """Verify this FBU (locally or through the service) and call ``fbu_verified(token, verdict, now)``."""

    token: int
    fbu: ParsedFbu


@dataclass(frozen=True)
class Prefetch:
    """A node that may hand over soon: fetch its key now, by its link-layer address (RFC 5568 §6.1.1)."""

    mn_lla: bytes


@dataclass(frozen=True)
class Notice:
    """Something to log and count; ``fields`` are identifiers only, never key material."""

    event: str
    fields: dict[str, str | int | float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class HandoverFinished:
    """A PAR handover ended: ``outcome`` is the FBack status name or why no FBack was sent."""

    outcome: str
    status: int | None
    spi: int
    sequence: int
    pcoa: IPv6Address
    ncoa: IPv6Address
    nar: IPv6Address | None
    hi_transmissions: int
    duration: float  # seconds from FBU to FBack
    lifetime: int = 0  # seconds granted in the FBack (RFC 5568 §6.2.3): how long the PAR forwards for the PCoA


@dataclass(frozen=True)
class PrefixEvent:
    """A per-node prefix changed hands (NAR, architecture.md §9): ``assigned`` (to a node, in a HAck or when it
    attached unannounced), ``bound`` (the node is on ``allocation.interface``: route the prefix there and
    advertise it with radvd), ``released`` (``reason``: expired, link-gone, released); ``exhausted`` when a
    node asked and none was free (``allocation`` is None then)."""

    kind: str
    allocation: Allocation | None
    reason: str = ""


@dataclass(frozen=True)
class HiAccepted:
    """NAR: an HI was accepted (HAck Code < 128): the data plane takes tunnelled packets for ``pcoa`` from
    ``par`` (aaa_fmip.router.dataplane). ``buffer``: the HI's U flag; ``reactive``: Code 1, the node is here."""

    par: IPv6Address
    pcoa: IPv6Address
    ncoa: IPv6Address
    mn_lla: bytes | None
    buffer: bool
    reactive: bool


Effect: TypeAlias = SendMh | SendIcmpv6 | VerifyFbu | Prefetch | Notice | HandoverFinished | PrefixEvent | HiAccepted


# --- configuration -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterParameters:
    """What a router core is told about itself."""

    addresses: tuple[IPv6Address, ...]  # global addresses: FBUs to these are ours (AR-IDs); HI/HAck from the first
    access_prefixes: tuple[IPv6Network, ...]  # prefixes of this router's access links (NCoAs it can accept)
    neighbours: NeighbourTable
    link_local: IPv6Address | None = None  # PrRtAdv source (RFC 5568 §6.1.2: link-local)
    lla: bytes = b""  # this router's link-layer address on the access link (PrRtAdv LLA option, code 4)
    hi_retries: int = HI_RETRIES
    hi_initial_timeout: float = HI_INITIAL_TIMEOUT
    request_buffering: bool = False  # HI U flag (§5.4)
    assigned_addressing: bool = False  # HI S flag: ask the NAR to assign the NCoA (§5.3, code 0 only)
    lifetime_unit: int = 4  # seconds per Lifetime unit (architecture.md §3)
    max_nar_handovers: int = 4096  # NAR: more open HIs than this get HAck 130 (insufficient resources)
    max_par_handovers: int = 4096  # PAR: more open FBUs than this get FBack 130
    per_node: PerNodePrefixes | None = None  # NAR: assign NCoAs from per-node prefixes (point-to-point links)


# --- what the PAR and NAR sides share ------------------------------------------------------------------------------


@dataclass
class SharedState:
    """The router's own parameters and the state both of its sides use: the HI Sequence Number (the PAR's HIs and
    the NAR's unsolicited HAcks count from one counter) and the link-layer addresses learnt
    from RtSolPr and FBU (by the node's address), which the PAR puts in its HIs."""

    params: RouterParameters
    hi_sequence: int = 0
    address_in_use: Callable[[IPv6Address], bool] = lambda _a: False
    lla_by_address: dict[IPv6Address, bytes] = field(default_factory=dict)

    @property
    def address(self) -> IPv6Address:
        """The router's first global address: HIs and HAcks go from it."""
        return self.params.addresses[0]

    def next_hi_sequence(self) -> int:
        self.hi_sequence = (self.hi_sequence + 1) & 0xFFFF
        return self.hi_sequence
