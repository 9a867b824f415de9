"""Per-node prefixes at the NAR (architecture.md §9, RFC 5568 §5.3, §6.3): the prefix pool, the NCoA' a Code 0 HI
gets from it, and the nodes on their point-to-point links (RS or UNA binds the node's prefix to its link; a UNA
from an NCoA the node cannot use gets an RA with NAACK Status 2).

Part of the sans-IO router core (aaa_fmip.router.core), which owns one :class:`PerNodeNar` when
``RouterParameters.per_node`` is set; time is passed in."""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network

from aaa_fmip.errors import DecodeError
from aaa_fmip.router.effects import Effect, Notice, PrefixEvent, SendIcmpv6
from aaa_fmip.router.prefixes import Allocation, PerNodePrefixes, PoolExhausted, PrefixPool
from aaa_fmip.router.verify import ReceivedMh
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.icmpv6 import IPAddressPrefixCode, LinkLayerAddressCode
from aaa_fmip.wire.mh import HAckCode

__all__ = ["PerNodeNar"]


class PerNodeNar:
    """The NAR's per-node prefixes: ``pool`` hands them out, keyed by the node's link-layer address."""

    def __init__(self, per_node: PerNodePrefixes) -> None:
        self.per_node = per_node
        self.pool = PrefixPool(per_node.pool)

    # ---- HI: the node's prefix and NCoA'

    def answer_hi(
        self, packet: ReceivedMh, hi: mhwire.HI, now: float
    ) -> tuple[int, IPv6Address | None, tuple[mhwire.MobilityOption, ...], list[Effect]]:
        """A Code 0 HI at a NAR with per-node prefixes (RFC 5568 §5.3, RFC 5271 §5.1): the node's prefix from the
        pool, keyed by the MH-LLA the HI MUST carry; NCoA' = that prefix | modified EUI-64 of the LLA. S=1 →
        HAck Code 2 (architecture.md §9: not 3, which means "use the PCoA"); S=0 → Code 1 with NCoA' unless the
        node already proposed it (Code 0). No LLA (or one without an EUI-64) → 128; pool exhausted → 130."""
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
        known = self.pool.get(mn_lla) is not None
        try:
            allocation = self.pool.allocate(mn_lla, now, self.per_node.hold)
        except PoolExhausted:
            return HAckCode.INSUFFICIENT_RESOURCES, None, (), [PrefixEvent("exhausted", None)]
        effects: list[Effect] = [] if known else [PrefixEvent("assigned", allocation, "hi")]
        ncoa = allocation.ncoa
        options: list[mhwire.MobilityOption] = [
            mhwire.MHIPv6AddressPrefix(IPAddressPrefixCode.NEW_CARE_OF_ADDRESS, 128, ncoa)
        ]
        if self.per_node.return_prefix:
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

    # ---- nodes on their point-to-point links

    def _is_p2p(self, interface: str | None) -> bool:
        per_node = self.per_node
        return interface is not None and any(fnmatch.fnmatchcase(interface, pattern) for pattern in per_node.interfaces)

    def receive_nd(
        self, source: IPv6Address, destination: IPv6Address, message: bytes, now: float, interface: str | None
    ) -> list[Effect]:
        """An RS or NA on a per-node link: the node attached there. Its prefix (assigned by an HI, or now) is bound
        to the link, so the driver routes it there and radvd advertises it. An unsolicited NA (the UNA of RFC
        5568 §6.3) whose Target is not the node's NCoA' is answered with an RA carrying NAACK Status 2 and NCoA'
        (and the prefix in a PIO, so the node's kernel forms NCoA' by SLAAC from this RA alone)."""
        if not self._is_p2p(interface):
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
        per_node = self.per_node
        effects: list[Effect] = []
        allocation = self.pool.get(lla)
        if allocation is None:
            try:
                allocation = self.pool.allocate(lla, now, per_node.lifetime)
            except PoolExhausted:
                return [PrefixEvent("exhausted", None), Notice("prefix.exhausted", {"interface": interface})]
            effects.append(PrefixEvent("assigned", allocation, "attached"))
        was = allocation.interface
        bound = self.pool.bind(lla, interface, now, per_node.lifetime)
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
        per_node = self.per_node
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
        effects: list[Effect] = []
        for allocation in self.pool.allocations():
            if allocation.interface is None:
                continue
            if allocation.interface in interfaces:
                lifetime = self.per_node.lifetime
                if allocation.expires_at - now < lifetime / 2:  # renewed twice per lifetime, not every look
                    self.pool.renew(allocation.lla, now, lifetime)
            else:
                released = self.pool.release(allocation.lla)
                effects.append(PrefixEvent("released", released, "link-gone"))
        return effects

    def restore_prefixes(self, saved: list[Allocation], interfaces: set[str], now: float) -> list[Effect]:
        """Per-node prefixes saved before a restart, back into the pool: those whose link is still there are
        bound again (their lifetime counted from now: the link is there), unbound ones keep their saved expiry,
        those whose link went meanwhile or whose hold ran out are dropped. None is given to another node."""
        kept = [
            replace(a, expires_at=now + self.per_node.lifetime) if a.interface is not None else a
            for a in saved
            if (a.interface in interfaces if a.interface is not None else a.expires_at > now)
        ]
        return [
            PrefixEvent("bound" if a.interface is not None else "assigned", a, "restored")
            for a in self.pool.restore(kept)
        ]

    def release_prefix(self, lla: bytes) -> list[Effect]:
        """End a node's binding explicitly: its prefix goes back to the pool."""
        released = self.pool.release(lla)
        return [PrefixEvent("released", released, "released")] if released is not None else []

    # ---- timers

    def expire(self, now: float) -> list[Effect]:
        """Prefixes whose lifetime passed go back to the pool."""
        return [PrefixEvent("released", a, "expired") for a in self.pool.expire(now)]

    def next_expiry(self) -> float | None:
        return self.pool.next_expiry()
