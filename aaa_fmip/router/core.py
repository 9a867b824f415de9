"""The sans-IO PAR and NAR state machines of an FMIPv6 access router (RFC 5568 §5, §6.1–6.3).

:class:`RouterCore` is one router, PAR for nodes leaving its links and NAR for nodes arriving. It does no IO
and reads no clock: the driver hands it what arrived (``receive_icmpv6``, ``receive_mh``), the verdicts it
asked for (``fbu_verified``) and the time (``now`` everywhere, ``handle_timer`` when ``next_deadline`` has
passed); it answers with effects: datagrams to send, a verification to run, notices to log and count.

PAR, one handover per (PCoA, SPI, FBU Sequence Number)::

    FBU ──► VERIFYING ──verdict ok──► AWAITING_HACK ──HAck──────────────► DONE (FBack, status from the HAck)
               │                         │  └─timeout: HI again (×2 backoff) until HI_RETRIES, then DONE (128)
               └──verdict rejected──► DONE (FBack 128/129 for unknown key or revoked; silent for forged/replay)

An FBU repeated while its handover is open is answered as a retransmission: nothing new while VERIFYING or
AWAITING_HACK, the same FBack again once DONE. The FBack carries a BADF made with the HK that verified the FBU
(RFC 5568 §6.4.5; architecture.md §3: CoA = the Alternate CoA if present, else the IPv6 destination).

NAR, one record per (PAR, HI Sequence Number): the HAck is computed once and sent again for a repeated HI.
Code 0 HIs have their NCoA checked against the access prefixes and the addresses already handed out; with
S=1 (or an NCoA that fails the check) the NAR assigns one from the MN's link-layer address (EUI-64) and
returns it in an MH IPv6 Address/Prefix option (code 2): HAck Code 2 (assigned) or 1 (not valid, use this).
Code 1 (reactive) HIs skip those checks (§6.2.1.1). HIs from routers outside the neighbour table get 129.

Per-node prefixes (``RouterParameters.per_node``, architecture.md §9, RFC 5568 §5.3): a Code 0 HI takes the
node's own prefix from a :class:`~aaa_fmip.router.prefixes.PrefixPool` (keyed by the HI's MH-LLA) and returns
NCoA' (prefix | modified EUI-64) in option 34 code 2 and the prefix in code 4, with HAck Code 2 for S=1 (1 for
S=0); 130 when the pool is empty. The node's RS or UNA on a per-node link binds its prefix to that link
(``PrefixEvent`` effects: the driver routes it and has radvd advertise it); a UNA from another NCoA gets an RA
with NAACK Status 2 (§6.3). Prefixes return to the pool when their link goes (``links_present``), their
lifetime passes (``handle_timer``) or on ``release_prefix``.

HAck Code → FBack Status at the PAR (§6.2.1.2, §6.2.3): 0 → 0; 1 and 2 → 1 with the NAR's NCoA (128 when it
supplied none, or one outside the prefix it returned or the NAR's prefix: §10); 3 → 1 with the PCoA;
128/129/130 → the same; anything else → 128. An unsolicited HAck (Code 4) naming the PCoA of a completed
handover makes the PAR send a fresh HI for it (U=1: the NAR asked to buffer); otherwise it is logged and
dropped.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Final, TypeAlias

from aaa_fmip.crypto import badf
from aaa_fmip.crypto.secrets import constant_time_equal
from aaa_fmip.errors import DecodeError
from aaa_fmip.router.neighbours import NeighbourTable
from aaa_fmip.router.prefixes import Allocation, PerNodePrefixes, PoolExhausted, PrefixPool
from aaa_fmip.router.verify import FbuVerdict, ParsedFbu, ReceivedMh, RouterKey, parse_fbu
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.icmpv6 import IPAddressPrefixCode, LinkLayerAddressCode
from aaa_fmip.wire.mh import FBackStatus, HAckCode, HICode

__all__ = [
    "HI_INITIAL_TIMEOUT",
    "HI_RETRIES",
    "Effect",
    "HandoverFinished",
    "LocalProtocolError",
    "Notice",
    "Prefetch",
    "PrefixEvent",
    "RouterCore",
    "RouterParameters",
    "SendIcmpv6",
    "SendMh",
    "VerifyFbu",
]

HI_RETRIES: Final = 3  # RFC 5568 §9
HI_INITIAL_TIMEOUT: Final = 0.1  # seconds: 2×RTT, 100 ms when the RTT is unknown (§6.2.1.1)
_NAR_RECORD_LIFETIME: Final = 30.0  # seconds a NAR remembers an HI's answer (covers every HI retransmission)
_DONE_LIFETIME: Final = 30.0  # seconds a PAR remembers a finished handover's FBack (for FBU retransmissions)


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


@dataclass(frozen=True)
class PrefixEvent:
    """A per-node prefix changed hands (NAR, architecture.md §9): ``assigned`` (to a node, in a HAck or when it
    attached unannounced), ``bound`` (the node is on ``allocation.interface``: route the prefix there and
    advertise it with radvd), ``released`` (``reason``: expired, link-gone, released); ``exhausted`` when a
    node asked and none was free (``allocation`` is None then)."""

    kind: str
    allocation: Allocation | None
    reason: str = ""


Effect: TypeAlias = SendMh | SendIcmpv6 | VerifyFbu | Prefetch | Notice | HandoverFinished | PrefixEvent


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


# --- PAR ---------------------------------------------------------------------------------------------------------


class ParState(enum.Enum):
    VERIFYING = "verifying"
    AWAITING_HACK = "awaiting-hack"
    DONE = "done"


class ParEvent(enum.Enum):
    VERDICT_ACCEPTED = "verdict-accepted"
    VERDICT_REJECTED = "verdict-rejected"
    HACK = "hack"
    HI_TIMEOUT = "hi-timeout"
    HI_GIVE_UP = "hi-give-up"
    FBU_AGAIN = "fbu-again"
    UNSOLICITED_HACK = "unsolicited-hack"


# The only transitions there are (h11 style): anything else is a LocalProtocolError.
_PAR_TRANSITIONS: Final[dict[tuple[ParState, ParEvent], ParState]] = {
    (ParState.VERIFYING, ParEvent.VERDICT_ACCEPTED): ParState.AWAITING_HACK,
    (ParState.VERIFYING, ParEvent.VERDICT_REJECTED): ParState.DONE,
    (ParState.VERIFYING, ParEvent.FBU_AGAIN): ParState.VERIFYING,
    (ParState.AWAITING_HACK, ParEvent.HACK): ParState.DONE,
    (ParState.AWAITING_HACK, ParEvent.HI_TIMEOUT): ParState.AWAITING_HACK,
    (ParState.AWAITING_HACK, ParEvent.HI_GIVE_UP): ParState.DONE,
    (ParState.AWAITING_HACK, ParEvent.FBU_AGAIN): ParState.AWAITING_HACK,
    (ParState.DONE, ParEvent.FBU_AGAIN): ParState.DONE,
    (ParState.DONE, ParEvent.UNSOLICITED_HACK): ParState.AWAITING_HACK,
}

# HAck Code → FBack Status (module docstring); codes 1 and 2 need the NAR's NCoA, 3 means the PCoA.
_HACK_TO_FBACK: Final[dict[int, int]] = {
    HAckCode.ACCEPTED_NCOA_VALID: FBackStatus.ACCEPTED,
    HAckCode.ACCEPTED_NCOA_NOT_VALID: FBackStatus.ACCEPTED_NCOA_INVALID,
    HAckCode.ACCEPTED_NCOA_ASSIGNED: FBackStatus.ACCEPTED_NCOA_INVALID,
    HAckCode.ACCEPTED_USE_PCOA: FBackStatus.ACCEPTED_NCOA_INVALID,
    HAckCode.NOT_ACCEPTED: FBackStatus.REASON_UNSPECIFIED,
    HAckCode.ADMINISTRATIVELY_PROHIBITED: FBackStatus.ADMINISTRATIVELY_PROHIBITED,
    HAckCode.INSUFFICIENT_RESOURCES: FBackStatus.INSUFFICIENT_RESOURCES,
}

# Verdict reasons that still get an FBack (without a key it cannot carry a valid BADF: see _fback).
_REJECT_STATUS: Final[dict[str, int]] = {
    "unknown-spi": FBackStatus.REASON_UNSPECIFIED,
    "key-unavailable": FBackStatus.REASON_UNSPECIFIED,
    "expired": FBackStatus.REASON_UNSPECIFIED,
    "revoked": FBackStatus.ADMINISTRATIVELY_PROHIBITED,
    "unknown-nar": FBackStatus.REASON_UNSPECIFIED,
    "busy": FBackStatus.INSUFFICIENT_RESOURCES,
}
# RFC 6275 §9.5.1: an update failing authorization is silently discarded; a replay is not a request of the node.
_SILENT_REASONS: Final = frozenset({"bad-authenticator", "replay", "bad-authenticator-length"})


@dataclass
class _ParHandover:
    token: int
    fbu: ParsedFbu
    started: float
    state: ParState = ParState.VERIFYING
    verdict: FbuVerdict | None = None
    nar: IPv6Address | None = None
    hi_sequence: int = 0
    hi_mh: bytes = b""
    hi_sent: int = 0
    deadline: float | None = None
    fback: SendMh | None = None
    forget_at: float = 0.0

    def move(self, event: ParEvent) -> None:
        try:
            self.state = _PAR_TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(f"PAR handover in state {self.state.value} cannot take {event.value}") from None


def _par_key(fbu: ParsedFbu) -> tuple[IPv6Address, int, int]:
    """A PAR handover is one (PCoA, SPI, Sequence Number): a node that authenticated again (a new session, a new
    SPI) may start its numbering afresh from the same PCoA."""
    return fbu.pcoa, fbu.auth.spi, fbu.fbu.sequence


# --- NAR ---------------------------------------------------------------------------------------------------------


@dataclass
class _NarRecord:
    hack: SendMh
    forget_at: float


def eui64_address(prefix: IPv6Network, lla: bytes | None, fallback: bytes) -> IPv6Address:
    """An address in ``prefix`` (a /64) whose interface identifier is the modified EUI-64 of a 6-octet ``lla``
    (RFC 4291 Appendix A), else the first 8 octets of SHA-256(``fallback``) with the u bit cleared."""
    if lla is not None and len(lla) == 6:
        iid = bytes((lla[0] ^ 0x02,)) + lla[1:3] + b"\xff\xfe" + lla[3:]
    else:
        raw = hashlib.sha256(fallback).digest()[:8]
        iid = bytes((raw[0] & 0xFD,)) + raw[1:]
    return IPv6Address(prefix.network_address.packed[:8] + iid)


# --- the core ----------------------------------------------------------------------------------------------------


class RouterCore:
    """One FMIPv6 access router, PAR and NAR at once (module docstring)."""

    def __init__(
        self,
        params: RouterParameters,
        *,
        initial_hi_sequence: int = 0,
        address_in_use: Callable[[IPv6Address], bool] | None = None,
    ) -> None:
        if not params.addresses:
            raise ValueError("a router needs at least one global address")
        self.params = params
        self._address_in_use = address_in_use or (lambda _a: False)
        self._tokens = itertools.count(1)
        self._hi_sequence = initial_hi_sequence & 0xFFFF
        self._par: dict[tuple[IPv6Address, int, int], _ParHandover] = {}
        self._par_by_token: dict[int, _ParHandover] = {}
        self._par_by_hi: dict[tuple[IPv6Address, int], _ParHandover] = {}
        self._nar: dict[tuple[IPv6Address, int], _NarRecord] = {}
        self._nar_assigned: dict[IPv6Address, bytes] = {}  # NCoA → the MN LLA (or PCoA) it was handed to
        self._lla_by_address: dict[IPv6Address, bytes] = {}  # learnt from RtSolPr (source, LLA code 4 / ND 1)
        self._timers: list[tuple[float, int, _ParHandover | tuple[IPv6Address, int]]] = []  # a heap
        self._timer_order = itertools.count()
        self.prefix_pool = PrefixPool(params.per_node.pool) if params.per_node is not None else None

    # ---- bookkeeping

    @property
    def address(self) -> IPv6Address:
        return self.params.addresses[0]

    def open_handovers(self) -> int:
        """PAR handovers waiting for a verdict or a HAck."""
        return len(self._par_by_token) + len(self._par_by_hi)

    def _schedule(self, at: float, item: _ParHandover | tuple[IPv6Address, int]) -> None:
        heapq.heappush(self._timers, (at, next(self._timer_order), item))

    def _due(self, at: float, item: _ParHandover | tuple[IPv6Address, int]) -> bool:
        """Whether a timer entry still stands (entries are left in the heap when plans change)."""
        if isinstance(item, tuple):
            record = self._nar.get(item)
            return record is not None and record.forget_at == at
        if item.state is ParState.DONE:
            return item.forget_at == at and self._par.get(_par_key(item.fbu)) is item
        return item.deadline == at

    def next_deadline(self) -> float | None:
        while self._timers and not self._due(self._timers[0][0], self._timers[0][2]):
            heapq.heappop(self._timers)
        deadline = self._timers[0][0] if self._timers else None
        expiry = self.prefix_pool.next_expiry() if self.prefix_pool is not None else None
        if expiry is not None and (deadline is None or expiry < deadline):
            return expiry
        return deadline

    def _next_hi_sequence(self) -> int:
        self._hi_sequence = (self._hi_sequence + 1) & 0xFFFF
        return self._hi_sequence

    # ---- RtSolPr → PrRtAdv (§6.1)

    def receive_icmpv6(
        self, source: IPv6Address, destination: IPv6Address, message: bytes, now: float, *, interface: str | None = None
    ) -> list[Effect]:
        """An ICMPv6 message from an access link (the checksum was checked by the kernel or is checked here)."""
        if message[:1] in (b"\x85", b"\x88"):  # RS, NA: a node on a per-node link (RFC 5568 §6.3)
            return self._receive_p2p_nd(source, destination, message, now, interface)
        try:
            decoded = icmpv6.decode_icmpv6(message, source=source, destination=destination)
        except DecodeError as exc:
            return [Notice("icmpv6.malformed", {"source": str(source), "field": exc.field, "offset": exc.offset})]
        if not isinstance(decoded, icmpv6.RtSolPr):
            return []
        effects: list[Effect] = []
        mn_lla = next(
            (
                o.address
                for o in decoded.options
                if (isinstance(o, icmpv6.LinkLayerAddress) and o.option_code == LinkLayerAddressCode.SENDER)
                or isinstance(o, icmpv6.SourceLinkLayerAddress)
            ),
            None,
        )
        if mn_lla:
            if not source.is_unspecified:
                self._lla_by_address[source] = mn_lla
            effects.append(Prefetch(mn_lla))
        code, options = self.params.neighbours.answer(decoded)
        if self.params.lla:
            options.insert(0, icmpv6.LinkLayerAddress(LinkLayerAddressCode.SENDER, self.params.lla))
        own = self.params.link_local or self.address
        # §6.1.2: to the RtSolPr's source; a node without an address yet (::) is answered on all-nodes.
        to = source if not source.is_unspecified else IPv6Address("ff02::1")
        reply = icmpv6.encode_icmpv6(
            icmpv6.PrRtAdv(code, decoded.identifier, tuple(options)), source=own, destination=to
        )
        effects.append(SendIcmpv6(own, to, reply, interface))
        effects.append(Notice("prrtadv.sent", {"to": str(to), "code": int(code), "identifier": decoded.identifier}))
        return effects

    # ---- Mobility Header in

    def receive_mh(self, packet: ReceivedMh, now: float) -> list[Effect]:
        """A Mobility Header addressed to one of this router's addresses."""
        if len(packet.mh) < 3:
            return [Notice("mh.malformed", {"source": str(packet.source), "field": "mh", "offset": 0})]
        mh_type = packet.mh[2]
        try:
            if mh_type == mhwire.MHType.FAST_BINDING_UPDATE:
                return self._receive_fbu(parse_fbu(packet), now)
            message = mhwire.decode_mh(
                packet.mh, source=packet.home_address or packet.source, destination=packet.destination
            )
        except DecodeError as exc:
            return [Notice("mh.malformed", {"source": str(packet.source), "field": exc.field, "offset": exc.offset})]
        if isinstance(message, mhwire.HI):
            return self._receive_hi(packet, message, now)
        if isinstance(message, mhwire.HAck):
            return self._receive_hack(packet, message, now)
        return [Notice("mh.ignored", {"source": str(packet.source), "mh_type": mh_type})]

    # ---- PAR: FBU

    def _receive_fbu(self, fbu: ParsedFbu, now: float) -> list[Effect]:
        if fbu.packet.destination not in self.params.addresses:
            return [Notice("fbu.not-ours", {"destination": str(fbu.packet.destination)})]
        key = _par_key(fbu)
        known = self._par.get(key)
        if known is not None and constant_time_equal(known.fbu.auth.authenticator, fbu.auth.authenticator):
            # §6.2.2 retransmission (FBU_RETRIES): answer as the same request, never as a new binding
            known.move(ParEvent.FBU_AGAIN)
            fields: dict[str, str | int | float | None] = {
                "spi": fbu.auth.spi,
                "sequence": fbu.fbu.sequence,
                "state": known.state.value,
            }
            effects: list[Effect] = [Notice("fbu.retransmission", fields)]
            if known.fback is not None:
                effects.append(known.fback)
            return effects
        if self.open_handovers() >= self.params.max_par_handovers:
            handover = _ParHandover(next(self._tokens), fbu, now)
            return self._finish_rejected(handover, FbuVerdict("rejected", fbu.auth.spi, fbu.fbu.sequence, "busy"), now)
        handover = _ParHandover(next(self._tokens), fbu, now)
        if known is None:
            self._par[key] = handover
        self._par_by_token[handover.token] = handover
        if fbu.mn_lla:
            self._lla_by_address[fbu.pcoa] = fbu.mn_lla
        return [VerifyFbu(handover.token, fbu)]

    def fbu_verified(self, token: int, verdict: FbuVerdict, now: float) -> list[Effect]:
        """The verdict for a :class:`VerifyFbu` effect."""
        handover = self._par_by_token.pop(token, None)
        if handover is None:
            raise LocalProtocolError(f"no FBU waits for verdict {token}")
        handover.verdict = verdict
        fields: dict[str, str | int | float | None] = {
            "spi": verdict.spi,
            "sequence": verdict.sequence,
            "outcome": verdict.outcome,
            "reason": verdict.reason,
            "key_source": verdict.key.source if verdict.key else None,
        }
        effects: list[Effect] = [Notice("fbu.verified" if verdict.valid else "fbu.rejected", fields)]
        stored = self._par.get(_par_key(handover.fbu))
        if stored is not handover:
            # Another FBU with the same number and another authenticator. A valid one replaces a forged or
            # rejected one (a forgery must not block the node's own FBU); otherwise only the verdict is reported.
            replace = verdict.valid and (stored is None or stored.verdict is None or not stored.verdict.valid)
            if not replace:
                return effects
            self._par[_par_key(handover.fbu)] = handover
        if not verdict.valid:
            return effects + self._finish_rejected(handover, verdict, now)
        nar = self.params.neighbours.nar_for(handover.fbu.ncoa)
        if nar is None:
            unknown = FbuVerdict("rejected", verdict.spi, verdict.sequence, "unknown-nar", key=verdict.key)
            effects.append(Notice("fbu.unknown-nar", {"ncoa": str(handover.fbu.ncoa), "spi": verdict.spi}))
            return effects + self._finish_rejected(handover, unknown, now)
        handover.move(ParEvent.VERDICT_ACCEPTED)
        handover.nar = nar.nar_address
        return effects + self._send_hi(
            handover, now, code=HICode.FBU_FROM_PCOA if handover.fbu.predictive else HICode.FBU_NOT_FROM_PCOA
        )

    def _send_hi(self, handover: _ParHandover, now: float, *, code: int, buffer: bool | None = None) -> list[Effect]:
        assert handover.nar is not None
        fbu = handover.fbu
        if handover.hi_sequence:
            self._par_by_hi.pop((handover.nar, handover.hi_sequence), None)
        handover.hi_sequence = self._next_hi_sequence()
        self._par_by_hi[(handover.nar, handover.hi_sequence)] = handover
        options: list[mhwire.MobilityOption] = []
        mn_lla = fbu.mn_lla or self._lla_by_address.get(fbu.pcoa)
        if mn_lla:
            options.append(mhwire.MHLinkLayerAddress(LinkLayerAddressCode.MOBILE_NODE, mn_lla))
        options.append(mhwire.MHIPv6AddressPrefix(IPAddressPrefixCode.OLD_CARE_OF_ADDRESS, 128, fbu.pcoa))
        options.append(mhwire.MHIPv6AddressPrefix(IPAddressPrefixCode.NEW_CARE_OF_ADDRESS, 128, fbu.ncoa))
        neighbour = self.params.neighbours.nar_for(fbu.ncoa)
        assigns = self.params.assigned_addressing or (neighbour is not None and neighbour.assigns_addresses)
        s_flag = assigns and code == HICode.FBU_FROM_PCOA  # §6.2.1.1: S=0 with Code 1; RFC 5271 §5.1: S=1
        hi = mhwire.HI(
            handover.hi_sequence,
            code,
            tuple(options),
            s_flag=s_flag,
            u_flag=self.params.request_buffering if buffer is None else buffer,
        )
        handover.hi_mh = mhwire.encode_mh(hi, source=self.address, destination=handover.nar)
        handover.hi_sent = 1
        handover.deadline = now + self.params.hi_initial_timeout
        self._schedule(handover.deadline, handover)
        return [SendMh(self.address, handover.nar, handover.hi_mh)]

    def _fback(self, handover: _ParHandover, status: int, alternate: IPv6Address | None, lifetime: int) -> SendMh:
        """The FBack to the node: to the PCoA when the FBU came from it (predictive, the node is still on this
        link), else to the NCoA (reactive, §6.2.3). Signed with the HK that verified the FBU; without one (the
        key could not be found) it carries no BADF, and the node may treat it only as a hint."""
        fbu = handover.fbu
        to = fbu.pcoa if fbu.predictive else fbu.packet.source
        options: list[mhwire.MobilityOption] = []
        if alternate is not None:
            options.append(mhwire.AlternateCareOfAddress(alternate))
        verdict = handover.verdict
        key: RouterKey | None = verdict.key if verdict else None
        units = min(0xFFFF, lifetime // self.params.lifetime_unit)
        par = fbu.packet.destination
        algorithm = badf.algorithm_for_length(len(fbu.auth.authenticator))

        def encode(authenticator: bytes) -> bytes:
            badf_option = mhwire.BindingAuthorizationDataForFMIPv6(fbu.auth.spi, authenticator)
            return mhwire.encode_mh(
                mhwire.FBack(status, fbu.fbu.sequence, units, (*options, badf_option)), source=par, destination=to
            )

        placeholder = encode(bytes(algorithm.authenticator_length))
        if key is None:
            if verdict is not None and verdict.valid and fbu.auth.spi != 0:
                return SendMh(par, to, placeholder, needs_authenticator=True)  # verified by the service
            message = mhwire.FBack(status, fbu.fbu.sequence, units, tuple(options))
            return SendMh(par, to, mhwire.encode_mh(message, source=par, destination=to))
        care_of = alternate if alternate is not None else to
        authenticator = badf.compute_authenticator(
            key.hk, care_of, par, mhwire.badf_input(placeholder).mh_data, algorithm
        )
        return SendMh(par, to, encode(authenticator))

    def _finish(
        self, handover: _ParHandover, status: int | None, alternate: IPv6Address | None, now: float, outcome: str
    ) -> list[Effect]:
        verdict = handover.verdict
        lifetime = verdict.lifetime if verdict is not None and status is not None and status < 128 else 0
        effects: list[Effect] = []
        if status is not None:
            handover.fback = self._fback(handover, status, alternate, lifetime)
            effects.append(handover.fback)
        handover.deadline = None
        handover.forget_at = now + _DONE_LIFETIME
        self._schedule(handover.forget_at, handover)
        effects.append(
            HandoverFinished(
                outcome,
                status,
                handover.fbu.auth.spi,
                handover.fbu.fbu.sequence,
                handover.fbu.pcoa,
                alternate or handover.fbu.ncoa,
                handover.nar,
                handover.hi_sent,
                now - handover.started,
            )
        )
        return effects

    def _finish_rejected(self, handover: _ParHandover, verdict: FbuVerdict, now: float) -> list[Effect]:
        handover.verdict = verdict
        if handover.state is ParState.VERIFYING:
            handover.move(ParEvent.VERDICT_REJECTED)
        reason = verdict.reason or "rejected"
        if reason in _SILENT_REASONS:
            return self._finish(handover, None, None, now, reason)
        status = _REJECT_STATUS.get(reason, FBackStatus.REASON_UNSPECIFIED)
        return self._finish(handover, status, None, now, reason)

    # ---- PAR: HAck

    def _receive_hack(self, packet: ReceivedMh, hack: mhwire.HAck, now: float) -> list[Effect]:
        if not self.params.neighbours.is_neighbour_router(packet.source):
            return [Notice("hack.unknown-router", {"source": str(packet.source), "sequence": hack.sequence})]
        if hack.code == HAckCode.UNSOLICITED:
            return self._unsolicited_hack(packet, hack, now)
        handover = self._par_by_hi.get((packet.source, hack.sequence))
        if handover is None or handover.state is not ParState.AWAITING_HACK:
            return [Notice("hack.unexpected", {"source": str(packet.source), "sequence": hack.sequence})]
        handover.move(ParEvent.HACK)
        del self._par_by_hi[(packet.source, hack.sequence)]
        supplied = next(
            (
                o.address
                for o in hack.options
                if isinstance(o, mhwire.MHIPv6AddressPrefix)
                and o.option_code == IPAddressPrefixCode.NEW_CARE_OF_ADDRESS
            ),
            None,
        )
        status = _HACK_TO_FBACK.get(hack.code, FBackStatus.REASON_UNSPECIFIED)
        alternate: IPv6Address | None = None
        effects: list[Effect] = [Notice("hack.received", {"source": str(packet.source), "code": int(hack.code)})]
        if (
            supplied is not None
            and hack.code != HAckCode.ACCEPTED_USE_PCOA
            and not self._ncoa_in_nar_prefix(handover, hack, supplied)
        ):
            # RFC 5568 §10: the PAR MUST verify that the NCoA belongs to the NAR's prefix (per-node: the one returned)
            effects.append(Notice("hack.ncoa-outside-prefix", {"source": str(packet.source), "ncoa": str(supplied)}))
            return effects + self._finish(handover, FBackStatus.REASON_UNSPECIFIED, None, now, "ncoa-outside-prefix")
        if hack.code == HAckCode.ACCEPTED_USE_PCOA:
            alternate = handover.fbu.pcoa
        elif status == FBackStatus.ACCEPTED_NCOA_INVALID:
            if supplied is None:
                status = FBackStatus.REASON_UNSPECIFIED  # §6.2.3: Status 1 MUST carry the Alternate CoA
            else:
                alternate = supplied
        elif status == FBackStatus.ACCEPTED and supplied is not None and supplied != handover.fbu.ncoa:
            status, alternate = FBackStatus.ACCEPTED_NCOA_INVALID, supplied  # §5.2: a CoA in HAck goes in FBack
        return effects + self._finish(handover, status, alternate, now, FBackStatus(status).name.lower())

    def _ncoa_in_nar_prefix(self, handover: _ParHandover, hack: mhwire.HAck, ncoa: IPv6Address) -> bool:
        """RFC 5568 §10 for a NAR-supplied NCoA: inside the prefix the NAR returned (MH option 34 code 4, per-node
        prefixes), which must itself lie in the NAR's prefix of the neighbour table (the aggregate); without a
        returned prefix, inside the neighbour table's prefix."""
        neighbour = self.params.neighbours.nar_for(handover.fbu.ncoa)
        if neighbour is None:
            return False
        returned = next(
            (
                IPv6Network((o.address, o.prefix_length), strict=False)
                for o in hack.options
                if isinstance(o, mhwire.MHIPv6AddressPrefix)
                and o.option_code == IPAddressPrefixCode.NEW_ACCESS_ROUTER_PREFIX
                and o.prefix_length <= 128
            ),
            None,
        )
        if returned is not None:
            return returned.subnet_of(neighbour.nar_prefix) and ncoa in returned
        return ncoa in neighbour.nar_prefix

    def _unsolicited_hack(self, packet: ReceivedMh, hack: mhwire.HAck, now: float) -> list[Effect]:
        pcoa = next(
            (
                o.address
                for o in hack.options
                if isinstance(o, mhwire.MHIPv6AddressPrefix)
                and o.option_code == IPAddressPrefixCode.OLD_CARE_OF_ADDRESS
            ),
            None,
        )
        candidates = [
            h
            for h in self._par.values()
            if h.state is ParState.DONE
            and h.nar == packet.source
            and h.fbu.pcoa == pcoa
            and h.fback is not None
            and h.verdict is not None
            and h.verdict.valid
        ]
        if not candidates:
            return [Notice("hack.unsolicited-ignored", {"source": str(packet.source), "pcoa": str(pcoa)})]
        handover = max(candidates, key=lambda h: h.started)
        handover.move(ParEvent.UNSOLICITED_HACK)
        notice = Notice("hack.unsolicited", {"source": str(packet.source), "pcoa": str(pcoa)})
        return [
            notice,
            *self._send_hi(
                handover,
                now,
                code=HICode.FBU_FROM_PCOA if handover.fbu.predictive else HICode.FBU_NOT_FROM_PCOA,
                buffer=True,
            ),
        ]

    # ---- NAR: HI

    def _receive_hi(self, packet: ReceivedMh, hi: mhwire.HI, now: float) -> list[Effect]:
        key = (packet.source, hi.sequence)
        record = self._nar.get(key)
        if record is not None:
            return [Notice("hi.retransmission", {"source": str(packet.source), "sequence": hi.sequence}), record.hack]
        effects: list[Effect] = []
        options: tuple[mhwire.MobilityOption, ...] = ()
        if (
            self.prefix_pool is not None
            and hi.code == HICode.FBU_FROM_PCOA
            and self.params.neighbours.is_neighbour_router(packet.source)
        ):
            code, ncoa, options, effects = self._hi_per_node(packet, hi, now)
        else:
            code, ncoa = self._hi_decision(packet, hi)
            if ncoa is not None:
                options = (mhwire.MHIPv6AddressPrefix(IPAddressPrefixCode.NEW_CARE_OF_ADDRESS, 128, ncoa),)
        own = packet.destination
        hack = SendMh(
            own,
            packet.source,
            mhwire.encode_mh(mhwire.HAck(hi.sequence, code, options), source=own, destination=packet.source),
        )
        remember = _NAR_RECORD_LIFETIME
        if options and self.params.per_node is not None and hi.code == HICode.FBU_FROM_PCOA:
            remember = min(remember, self.params.per_node.hold)  # never repeat a prefix the pool took back
        self._nar[key] = _NarRecord(hack, now + remember)
        self._schedule(now + remember, key)
        fields: dict[str, str | int | float | None] = {
            "source": str(packet.source),
            "sequence": hi.sequence,
            "hi_code": int(hi.code),
            "hack_code": int(code),
            "ncoa": str(ncoa) if ncoa else None,
        }
        return [*effects, Notice("hi.answered", fields), hack]

    def _hi_per_node(
        self, packet: ReceivedMh, hi: mhwire.HI, now: float
    ) -> tuple[int, IPv6Address | None, tuple[mhwire.MobilityOption, ...], list[Effect]]:
        """A Code 0 HI at a NAR with per-node prefixes (RFC 5568 §5.3, RFC 5271 §5.1): the node's prefix from the
        pool, keyed by the MH-LLA the HI MUST carry; NCoA' = that prefix | modified EUI-64 of the LLA. S=1 →
        HAck Code 2 (architecture.md §9: not 3, which means "use the PCoA"); S=0 → Code 1 with NCoA' unless the
        node already proposed it (Code 0). No LLA (or one without an EUI-64) → 128; pool exhausted → 130."""
        assert self.prefix_pool is not None and self.params.per_node is not None
        mn_lla = next(
            (
                o.address
                for o in hi.options
                if isinstance(o, mhwire.MHLinkLayerAddress) and o.option_code == LinkLayerAddressCode.MOBILE_NODE
            ),
            None,
        )
        proposed = next(
            (
                o.address
                for o in hi.options
                if isinstance(o, mhwire.MHIPv6AddressPrefix)
                and o.option_code == IPAddressPrefixCode.NEW_CARE_OF_ADDRESS
            ),
            None,
        )
        fields: dict[str, str | int | float | None] = {"source": str(packet.source), "sequence": hi.sequence}
        if mn_lla is None or len(mn_lla) not in (6, 8):
            return HAckCode.NOT_ACCEPTED, None, (), [Notice("prefix.no-lla", fields)]
        known = self.prefix_pool.get(mn_lla) is not None
        try:
            allocation = self.prefix_pool.allocate(mn_lla, now, self.params.per_node.hold)
        except PoolExhausted:
            return HAckCode.INSUFFICIENT_RESOURCES, None, (), [PrefixEvent("exhausted", None)]
        effects: list[Effect] = [] if known else [PrefixEvent("assigned", allocation, "hi")]
        ncoa = allocation.ncoa
        options: list[mhwire.MobilityOption] = [
            mhwire.MHIPv6AddressPrefix(IPAddressPrefixCode.NEW_CARE_OF_ADDRESS, 128, ncoa)
        ]
        if self.params.per_node.return_prefix:
            prefix = allocation.prefix
            options.append(
                mhwire.MHIPv6AddressPrefix(
                    IPAddressPrefixCode.NEW_ACCESS_ROUTER_PREFIX, prefix.prefixlen, prefix.network_address
                )
            )
        if hi.s_flag:
            code = HAckCode.ACCEPTED_NCOA_ASSIGNED
        elif proposed == ncoa:
            code = HAckCode.ACCEPTED_NCOA_VALID
        else:
            code = HAckCode.ACCEPTED_NCOA_NOT_VALID
        return code, ncoa, tuple(options), effects

    # ---- NAR: nodes on their per-node point-to-point links

    def _is_p2p(self, interface: str | None) -> bool:
        per_node = self.params.per_node
        return (
            per_node is not None
            and interface is not None
            and any(fnmatch.fnmatchcase(interface, pattern) for pattern in per_node.interfaces)
        )

    def _receive_p2p_nd(
        self, source: IPv6Address, destination: IPv6Address, message: bytes, now: float, interface: str | None
    ) -> list[Effect]:
        """An RS or NA on a per-node link: the node attached there. Its prefix (assigned by an HI, or now) is bound
        to the link, so the driver routes it there and radvd advertises it. An unsolicited NA (the UNA of RFC
        5568 §6.3) whose Target is not the node's NCoA' is answered with an RA carrying NAACK Status 2 and NCoA'
        (and the prefix in a PIO, so the node's kernel forms NCoA' by SLAAC from this RA alone)."""
        if not self._is_p2p(interface) or self.prefix_pool is None or self.params.per_node is None:
            return []
        assert interface is not None
        try:
            decoded = icmpv6.decode_nd_message(message, source=source, destination=destination)
        except DecodeError as exc:
            return [Notice("icmpv6.malformed", {"source": str(source), "field": exc.field, "offset": exc.offset})]
        if isinstance(decoded, icmpv6.RouterSolicitation):
            wanted: type[icmpv6.SourceLinkLayerAddress | icmpv6.TargetLinkLayerAddress] = icmpv6.SourceLinkLayerAddress
        elif isinstance(decoded, icmpv6.NeighborAdvertisement) and not decoded.router:
            wanted = icmpv6.TargetLinkLayerAddress  # (R=1: a router's NA, e.g. this one's own looped back)
        else:
            return []
        lla = next((o.address for o in decoded.options if isinstance(o, wanted)), None)
        if lla is None or len(lla) not in (6, 8):
            return []
        per_node = self.params.per_node
        effects: list[Effect] = []
        allocation = self.prefix_pool.get(lla)
        if allocation is None:
            try:
                allocation = self.prefix_pool.allocate(lla, now, per_node.lifetime)
            except PoolExhausted:
                return [PrefixEvent("exhausted", None), Notice("prefix.exhausted", {"interface": interface})]
            effects.append(PrefixEvent("assigned", allocation, "attached"))
        was = allocation.interface
        bound = self.prefix_pool.bind(lla, interface, now, per_node.lifetime)
        assert bound is not None
        if was != interface:
            effects.append(PrefixEvent("bound", bound))
        if (
            isinstance(decoded, icmpv6.NeighborAdvertisement)
            and not decoded.solicited
            and not decoded.target.is_link_local
            and decoded.target not in bound.prefix
        ):
            effects += self._naack(bound, decoded.target, interface)  # an NCoA the node cannot use here
        return effects

    def _naack(self, allocation: Allocation, target: IPv6Address, interface: str) -> list[Effect]:
        """RA + NAACK Status 2 with NCoA' at octet 8 of the option (architecture.md §9), to all-nodes on the
        node's own link; the source is left to the kernel (its link-local address on that link)."""
        assert self.params.per_node is not None
        per_node = self.params.per_node
        first64 = IPv6Network((allocation.prefix.network_address, 64))
        ra = icmpv6.RouterAdvertisement(
            per_node.router_lifetime,
            (
                icmpv6.PrefixInformation(
                    64, first64.network_address, per_node.valid_lifetime, per_node.preferred_lifetime
                ),
                icmpv6.NAACK(icmpv6.NAACKStatus.NCOA_INVALID_USE_SUPPLIED, allocation.ncoa),
            ),
            cur_hop_limit=64,
        )
        unspecified, all_nodes = IPv6Address("::"), IPv6Address("ff02::1")
        message = icmpv6.encode_nd_message(ra, source=unspecified, destination=all_nodes)  # the kernel sums again
        fields: dict[str, str | int | float | None] = {
            "interface": interface,
            "target": str(target),
            "ncoa": str(allocation.ncoa),
        }
        return [Notice("una.naack", fields), SendIcmpv6(unspecified, all_nodes, message, interface)]

    def links_present(self, interfaces: set[str], now: float) -> list[Effect]:
        """The driver's look at the links: a bound prefix whose link is there lives on (renewed); one whose link
        is gone is released (the node's point-to-point session ended)."""
        if self.prefix_pool is None or self.params.per_node is None:
            return []
        effects: list[Effect] = []
        for allocation in self.prefix_pool.allocations():
            if allocation.interface is None:
                continue
            if allocation.interface in interfaces:
                lifetime = self.params.per_node.lifetime
                if allocation.expires_at - now < lifetime / 2:  # renewed twice per lifetime, not every look
                    self.prefix_pool.renew(allocation.lla, now, lifetime)
            else:
                released = self.prefix_pool.release(allocation.lla)
                effects.append(PrefixEvent("released", released, "link-gone"))
        return effects

    def restore_prefixes(self, saved: list[Allocation], interfaces: set[str], now: float) -> list[Effect]:
        """Per-node prefixes saved before a restart, back into the pool: those whose link is still there are
        bound again (their lifetime counted from now: the link is there), unbound ones keep their saved expiry,
        those whose link went meanwhile or whose hold ran out are dropped. None is given to another node."""
        if self.prefix_pool is None or self.params.per_node is None:
            return []
        kept = [
            replace(a, expires_at=now + self.params.per_node.lifetime) if a.interface is not None else a
            for a in saved
            if (a.interface in interfaces if a.interface is not None else a.expires_at > now)
        ]
        return [
            PrefixEvent("bound" if a.interface is not None else "assigned", a, "restored")
            for a in self.prefix_pool.restore(kept)
        ]

    def release_prefix(self, lla: bytes) -> list[Effect]:
        """End a node's binding explicitly: its prefix goes back to the pool."""
        if self.prefix_pool is None:
            return []
        released = self.prefix_pool.release(lla)
        return [PrefixEvent("released", released, "released")] if released is not None else []

    def _hi_decision(self, packet: ReceivedMh, hi: mhwire.HI) -> tuple[int, IPv6Address | None]:
        """HAck Code and the NCoA to return (§6.2.1.2)."""
        if not self.params.neighbours.is_neighbour_router(packet.source):
            return HAckCode.ADMINISTRATIVELY_PROHIBITED, None  # §10: only configured (IPsec-protected) peers
        mn_lla: bytes | None = None
        pcoa = ncoa = None
        for option in hi.options:
            if isinstance(option, mhwire.MHLinkLayerAddress) and option.option_code == LinkLayerAddressCode.MOBILE_NODE:
                mn_lla = option.address
            elif isinstance(option, mhwire.MHIPv6AddressPrefix):
                if option.option_code == IPAddressPrefixCode.OLD_CARE_OF_ADDRESS:
                    pcoa = option.address
                elif option.option_code == IPAddressPrefixCode.NEW_CARE_OF_ADDRESS:
                    ncoa = option.address
        if hi.code == HICode.FBU_NOT_FROM_PCOA:
            return HAckCode.ACCEPTED_NCOA_VALID, None  # §6.2.1.1: the node is already here; no NCoA checks
        if hi.code != HICode.FBU_FROM_PCOA or not self.params.access_prefixes:
            return HAckCode.NOT_ACCEPTED, None
        if len(self._nar_assigned) >= self.params.max_nar_handovers:
            return HAckCode.INSUFFICIENT_RESOURCES, None
        owner = mn_lla or (pcoa.packed if pcoa else b"")
        prefix = next((p for p in self.params.access_prefixes if ncoa is not None and ncoa in p), None)
        valid = (
            ncoa is not None
            and prefix is not None
            and self._nar_assigned.get(ncoa, owner) == owner
            and not self._address_in_use(ncoa)
        )
        if valid and not hi.s_flag:
            assert ncoa is not None
            self._nar_assigned[ncoa] = owner
            return HAckCode.ACCEPTED_NCOA_VALID, None
        home = prefix or self.params.access_prefixes[0]
        assigned = eui64_address(home, mn_lla, owner)
        if self._nar_assigned.get(assigned, owner) != owner or self._address_in_use(assigned):
            assigned = eui64_address(home, None, owner + b"\x01")
        self._nar_assigned[assigned] = owner
        if hi.s_flag:
            return HAckCode.ACCEPTED_NCOA_ASSIGNED, assigned
        return HAckCode.ACCEPTED_NCOA_NOT_VALID, assigned

    def solicit_hi(self, par: IPv6Address, pcoa: IPv6Address, now: float) -> list[Effect]:
        """NAR: ask ``par`` for an HI about the node with ``pcoa`` (an unsolicited HAck, Code 4)."""
        option = mhwire.MHIPv6AddressPrefix(IPAddressPrefixCode.OLD_CARE_OF_ADDRESS, 128, pcoa)
        hack = mhwire.HAck(self._next_hi_sequence(), HAckCode.UNSOLICITED, (option,))
        return [SendMh(self.address, par, mhwire.encode_mh(hack, source=self.address, destination=par))]

    # ---- timers

    def handle_timer(self, now: float) -> list[Effect]:
        """Retransmit HIs whose deadline passed (×2 backoff, §6.2.1.1), give up after HI_RETRIES (FBack 128),
        and forget finished records."""
        effects: list[Effect] = []
        if self.prefix_pool is not None:
            effects += [PrefixEvent("released", a, "expired") for a in self.prefix_pool.expire(now)]
        while self._timers and self._timers[0][0] <= now:
            at, _order, item = heapq.heappop(self._timers)
            if not self._due(at, item):
                continue
            if isinstance(item, tuple):
                del self._nar[item]
            elif item.state is ParState.DONE:
                del self._par[_par_key(item.fbu)]
            else:
                effects += self._hi_timeout(item, now)
        return effects

    def _hi_timeout(self, handover: _ParHandover, now: float) -> list[Effect]:
        assert handover.nar is not None
        fields: dict[str, str | int | float | None] = {"nar": str(handover.nar), "sequence": handover.hi_sequence}
        if handover.hi_sent <= self.params.hi_retries:
            handover.move(ParEvent.HI_TIMEOUT)
            timeout = self.params.hi_initial_timeout * (2**handover.hi_sent)
            handover.hi_sent += 1
            handover.deadline = now + timeout
            self._schedule(handover.deadline, handover)
            notice = Notice("hi.retransmit", {**fields, "attempt": handover.hi_sent})
            return [notice, SendMh(self.address, handover.nar, handover.hi_mh)]
        handover.move(ParEvent.HI_GIVE_UP)
        self._par_by_hi.pop((handover.nar, handover.hi_sequence), None)
        notice = Notice("hi.no-hack", {**fields, "sent": handover.hi_sent})
        return [notice, *self._finish(handover, FBackStatus.REASON_UNSPECIFIED, None, now, "no-hack")]
