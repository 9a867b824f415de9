"""The neighbour table and the Proxy Router Advertisement it produces (RFC 5568 §6.1.2).

A router knows, for each access point (AP) a node may move to, which access router serves it: the NAR's
link-layer address, its IPv6 address and the prefix of the AP's link. An RtSolPr names APs in New Access Point
Link-Layer Address options (ND 19 Option-Code 1, or 0 for "every AP you know"); the PrRtAdv answers with one
[AP-ID, AR-Info] tuple per AP, and its Code tells what it contains:

======  ===========================================================================================
Code    when
======  ===========================================================================================
0       every AP asked for (or, for the wildcard, every AP known) has a tuple
2       none has: each New Access Point LLA option carries the outcome in its Option-Code
        (5 the AP is on this router, no CoA change; 6 unknown AP, no prefix information; 7 no fast
        handover support at that AP)
3       some have: tuples for those, outcome options (5/6/7) for the others
======  ===========================================================================================

Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from aaa_fmip.wire import icmpv6
from aaa_fmip.wire.icmpv6 import IPAddressPrefixCode, LinkLayerAddressCode, PrRtAdvCode

__all__ = ["Neighbour", "NeighbourTable", "normalise_ap_id"]


def normalise_ap_id(value: bytes | str) -> bytes:
    """An AP identifier as octets: a MAC in any common notation (``02:00:..``, ``02-00-..``, ``0200..``), or
    raw octets."""
    if isinstance(value, bytes):
        return value
    digits = value.replace(":", "").replace("-", "").replace(".", "").strip()
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"AP identifier {value!r} is not a link-layer address in hex") from None


@dataclass(frozen=True)
class Neighbour:
    """One access point and the access router behind it."""

    ap: bytes  # the AP's link-layer address (or identifier), as the node sends it in the RtSolPr
    nar_address: IPv6Address  # the NAR's global address: HI goes there
    nar_prefix: IPv6Network  # the prefix of the AP's link (the NCoA is formed from it)
    nar_lla: bytes = b""  # the NAR's link-layer address on that link (ND 19 code 3), if known
    local: bool = False  # the AP is on this router's own interface: no CoA change (Option-Code 5)
    fast_handover: bool = True  # False: the AP has no fast handover support (Option-Code 7)
    # The NAR assigns each node's NCoA from a per-node prefix (point-to-point links, RFC 5568 §5.3, RFC 5271
    # §5.1): HIs to it carry S=1 and ``nar_prefix`` is the aggregate the per-node prefixes come from.
    assigns_addresses: bool = False

    def tuple_options(self) -> list[icmpv6.NDOption]:
        """The [AP-ID, AR-Info] tuple of RFC 5568 §6.1.2, in its order: New AP LLA, NAR LLA, NAR IP, NAR prefix."""
        options: list[icmpv6.NDOption] = [icmpv6.LinkLayerAddress(LinkLayerAddressCode.NEW_ACCESS_POINT, self.ap)]
        if self.nar_lla:
            options.append(icmpv6.LinkLayerAddress(LinkLayerAddressCode.NEW_ACCESS_ROUTER, self.nar_lla))
        options.append(icmpv6.IPAddressPrefix(IPAddressPrefixCode.NEW_ACCESS_ROUTER_ADDRESS, 128, self.nar_address))
        options.append(
            icmpv6.IPAddressPrefix(
                IPAddressPrefixCode.NEW_ACCESS_ROUTER_PREFIX,
                self.nar_prefix.prefixlen,
                self.nar_prefix.network_address,
            )
        )
        return options


class NeighbourTable:
    """The APs this router knows, by identifier; and the NARs, by address and by prefix."""

    def __init__(self, neighbours: Iterable[Neighbour] = ()) -> None:
        self._by_ap: dict[bytes, Neighbour] = {}
        for n in neighbours:
            if n.ap in self._by_ap:
                raise ValueError(f"access point {n.ap.hex(':')} is listed twice")
            self._by_ap[n.ap] = n

    def __len__(self) -> int:
        return len(self._by_ap)

    def by_ap(self) -> Mapping[bytes, Neighbour]:
        return dict(self._by_ap)

    def lookup(self, ap: bytes) -> Neighbour | None:
        return self._by_ap.get(ap)

    def nar_for(self, ncoa: IPv6Address) -> Neighbour | None:
        """The (remote) neighbour whose link prefix holds ``ncoa``: where the HI for that NCoA goes."""
        for n in self._by_ap.values():
            if not n.local and ncoa in n.nar_prefix:
                return n
        return None

    def is_neighbour_router(self, address: IPv6Address) -> bool:
        """Whether ``address`` is a NAR of this table (HI and HAck are accepted only from those)."""
        return any(n.nar_address == address for n in self._by_ap.values())

    def answer(self, rtsolpr: icmpv6.RtSolPr) -> tuple[PrRtAdvCode, list[icmpv6.NDOption]]:
        """The PrRtAdv Code and options (without the sender's own LLA option) answering ``rtsolpr``."""
        asked: list[bytes] = []
        wildcard = False
        for option in rtsolpr.options:
            if isinstance(option, icmpv6.LinkLayerAddress):
                if option.option_code == LinkLayerAddressCode.WILDCARD:
                    wildcard = True
                elif option.option_code == LinkLayerAddressCode.NEW_ACCESS_POINT:
                    asked.append(option.address)
        if wildcard:
            asked = [ap for ap, n in self._by_ap.items() if n.fast_handover and not n.local]
            if not asked:
                # Nothing to offer: one wildcard-echo option with "no prefix information"
                return PrRtAdvCode.NO_NEW_ROUTER_INFO, [
                    icmpv6.LinkLayerAddress(LinkLayerAddressCode.NO_PREFIX_INFO, b"")
                ]
        tuples: list[icmpv6.NDOption] = []
        outcomes: list[icmpv6.NDOption] = []
        for ap in dict.fromkeys(asked):  # keep order, drop repeats
            n = self._by_ap.get(ap)
            if n is None:
                outcomes.append(icmpv6.LinkLayerAddress(LinkLayerAddressCode.NO_PREFIX_INFO, ap))
            elif n.local:
                outcomes.append(icmpv6.LinkLayerAddress(LinkLayerAddressCode.SAME_ROUTER_INTERFACE, ap))
            elif not n.fast_handover:
                outcomes.append(icmpv6.LinkLayerAddress(LinkLayerAddressCode.NO_FAST_HANDOVER_SUPPORT, ap))
            else:
                tuples.extend(n.tuple_options())
        if not tuples:
            return PrRtAdvCode.NO_NEW_ROUTER_INFO, outcomes
        if outcomes:
            return PrRtAdvCode.PARTIAL_NEW_ROUTER_INFO, tuples + outcomes
        return PrRtAdvCode.NEW_ROUTER_INFO, tuples
