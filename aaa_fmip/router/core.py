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

The parts: :mod:`~aaa_fmip.router.effects` (effects, parameters, the state both sides share),
:mod:`~aaa_fmip.router.par` and :mod:`~aaa_fmip.router.par_handover` (the PAR side), :mod:`~aaa_fmip.router.nar`
(the NAR side) and :mod:`~aaa_fmip.router.pernode` (per-node prefixes). :class:`RouterCore` owns one of each,
answers RtSolPr itself, dispatches what arrives and keeps the one timer heap.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from ipaddress import IPv6Address

from aaa_fmip.errors import DecodeError
from aaa_fmip.router.effects import (
    HI_INITIAL_TIMEOUT,
    HI_RETRIES,
    Effect,
    HandoverFinished,
    HiAccepted,
    LocalProtocolError,
    Notice,
    Prefetch,
    PrefixEvent,
    RouterParameters,
    SendIcmpv6,
    SendMh,
    SharedState,
    VerifyFbu,
)
from aaa_fmip.router.nar import NarKey, NarSide, eui64_address
from aaa_fmip.router.par import ParSide
from aaa_fmip.router.par_handover import ParHandover
from aaa_fmip.router.pernode import PerNodeNar
from aaa_fmip.router.prefixes import Allocation
from aaa_fmip.router.verify import FbuVerdict, ReceivedMh, parse_fbu
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.icmpv6 import LinkLayerAddressCode

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
    "RouterCore",
    "RouterParameters",
    "SendIcmpv6",
    "SendMh",
    "VerifyFbu",
    "eui64_address",
]

_TimerItem = ParHandover | NarKey


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
        self._shared = SharedState(params, initial_hi_sequence & 0xFFFF, address_in_use or (lambda _a: False))
        self._timers: list[tuple[float, int, _TimerItem]] = []  # a heap
        self._timer_order = itertools.count()
        self._per_node = PerNodeNar(params.per_node) if params.per_node is not None else None
        self.prefix_pool = self._per_node.pool if self._per_node is not None else None
        self._par_side = ParSide(self._shared, self._schedule)
        self._nar_side = NarSide(self._shared, self._schedule, self._per_node)

    # ---- bookkeeping

    @property
    def address(self) -> IPv6Address:
        return self.params.addresses[0]

    def open_handovers(self) -> int:
        """PAR handovers waiting for a verdict or a HAck."""
        return self._par_side.open_handovers()

    def _schedule(self, at: float, item: _TimerItem) -> None:
        heapq.heappush(self._timers, (at, next(self._timer_order), item))

    def _due(self, at: float, item: _TimerItem) -> bool:
        """Whether a timer entry still stands (entries are left in the heap when plans change)."""
        if isinstance(item, tuple):
            return self._nar_side.due(at, item)
        return self._par_side.due(at, item)

    def next_deadline(self) -> float | None:
        while self._timers and not self._due(self._timers[0][0], self._timers[0][2]):
            heapq.heappop(self._timers)
        deadline = self._timers[0][0] if self._timers else None
        expiry = self._per_node.next_expiry() if self._per_node is not None else None
        if expiry is not None and (deadline is None or expiry < deadline):
            return expiry
        return deadline

    # ---- RtSolPr → PrRtAdv (§6.1)

    def receive_icmpv6(
        self, source: IPv6Address, destination: IPv6Address, message: bytes, now: float, *, interface: str | None = None
    ) -> list[Effect]:
        """An ICMPv6 message from an access link (the checksum was checked by the kernel or is checked here)."""
        if message[:1] in (b"\x85", b"\x88"):  # RS, NA: a node on a per-node link (RFC 5568 §6.3)
            if self._per_node is None:
                return []
            return self._per_node.receive_nd(source, destination, message, now, interface)
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
                self._shared.lla_by_address[source] = mn_lla
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
                return self._par_side.receive_fbu(parse_fbu(packet), now)
            message = mhwire.decode_mh(
                packet.mh, source=packet.home_address or packet.source, destination=packet.destination
            )
        except DecodeError as exc:
            return [Notice("mh.malformed", {"source": str(packet.source), "field": exc.field, "offset": exc.offset})]
        if isinstance(message, mhwire.HI):
            return self._nar_side.receive_hi(packet, message, now)
        if isinstance(message, mhwire.HAck):
            return self._par_side.receive_hack(packet, message, now)
        return [Notice("mh.ignored", {"source": str(packet.source), "mh_type": mh_type})]

    def fbu_verified(self, token: int, verdict: FbuVerdict, now: float) -> list[Effect]:
        """The verdict for a :class:`VerifyFbu` effect."""
        return self._par_side.fbu_verified(token, verdict, now)

    # ---- NAR

    def solicit_hi(self, par: IPv6Address, pcoa: IPv6Address, now: float) -> list[Effect]:
        """NAR: ask ``par`` for an HI about the node with ``pcoa`` (an unsolicited HAck, Code 4)."""
        return self._nar_side.solicit_hi(par, pcoa, now)

    def links_present(self, interfaces: set[str], now: float) -> list[Effect]:
        """The driver's look at the links: a bound prefix whose link is there lives on (renewed); one whose link
        is gone is released (the node's point-to-point session ended)."""
        return self._per_node.links_present(interfaces, now) if self._per_node is not None else []

    def restore_prefixes(self, saved: list[Allocation], interfaces: set[str], now: float) -> list[Effect]:
        """Per-node prefixes saved before a restart, back into the pool: those whose link is still there are
        bound again (their lifetime counted from now: the link is there), unbound ones keep their saved expiry,
        those whose link went meanwhile or whose hold ran out are dropped. None is given to another node."""
        return self._per_node.restore_prefixes(saved, interfaces, now) if self._per_node is not None else []

    def release_prefix(self, lla: bytes) -> list[Effect]:
        """End a node's binding explicitly: its prefix goes back to the pool."""
        return self._per_node.release_prefix(lla) if self._per_node is not None else []

    # ---- timers

    def handle_timer(self, now: float) -> list[Effect]:
        """Retransmit HIs whose deadline passed (×2 backoff, §6.2.1.1), give up after HI_RETRIES (FBack 128),
        and forget finished records."""
        effects: list[Effect] = []
        if self._per_node is not None:
            effects += self._per_node.expire(now)
        while self._timers and self._timers[0][0] <= now:
            at, _order, item = heapq.heappop(self._timers)
            if not self._due(at, item):
                continue
            if isinstance(item, tuple):
                self._nar_side.forget(item)
            else:
                effects += self._par_side.on_timer(item, now)
        return effects
