"""The NAR side of the router core (aaa_fmip.router.core; RFC 5568 §6.2.1.2): an HI answered with a HAck, one
record per (PAR, HI Sequence Number) so a repeated HI gets the same HAck; the NCoA checked or assigned (EUI-64),
or taken from the per-node prefixes (:mod:`~aaa_fmip.router.pernode`); the data plane's part of an accepted
HI; an unsolicited HAck asking a PAR for an HI.

Sans-IO like the core that owns it: time is passed in, records are forgotten through the core's timer heap."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Final, TypeAlias

from aaa_fmip.router.effects import Effect, HiAccepted, Notice, SendMh, SharedState
from aaa_fmip.router.pernode import PerNodeNar
from aaa_fmip.router.verify import ReceivedMh
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.icmpv6 import IPAddressPrefixCode, LinkLayerAddressCode
from aaa_fmip.wire.mh import HAckCode, HICode

__all__ = ["NarKey", "NarSide", "eui64_address"]

_NAR_RECORD_LIFETIME: Final = 30.0  # seconds a NAR remembers an HI's answer (covers every HI retransmission)

NarKey: TypeAlias = tuple[IPv6Address, int]  # (PAR, HI Sequence Number)


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


class NarSide:
    """The HIs of nodes arriving on this router's links."""

    def __init__(
        self, shared: SharedState, schedule: Callable[[float, NarKey], None], per_node: PerNodeNar | None
    ) -> None:
        self._shared = shared
        self._params = shared.params
        self._schedule = schedule
        self._per_node = per_node
        self._nar: dict[NarKey, _NarRecord] = {}
        self._nar_assigned: dict[IPv6Address, bytes] = {}  # NCoA → the MN LLA (or PCoA) it was handed to

    def receive_hi(self, packet: ReceivedMh, hi: mhwire.HI, now: float) -> list[Effect]:
        key = (packet.source, hi.sequence)
        record = self._nar.get(key)
        if record is not None:
            return [Notice("hi.retransmission", {"source": str(packet.source), "sequence": hi.sequence}), record.hack]
        effects: list[Effect] = []
        options: tuple[mhwire.MobilityOption, ...] = ()
        if (
            self._per_node is not None
            and hi.code == HICode.FBU_FROM_PCOA
            and self._params.neighbours.is_neighbour_router(packet.source)
        ):
            code, ncoa, options, effects = self._per_node.answer_hi(packet, hi, now)
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
        if options and self._params.per_node is not None and hi.code == HICode.FBU_FROM_PCOA:
            remember = min(remember, self._params.per_node.hold)  # never repeat a prefix the pool took back
        self._nar[key] = _NarRecord(hack, now + remember)
        self._schedule(now + remember, key)
        fields: dict[str, str | int | float | None] = {
            "source": str(packet.source),
            "sequence": hi.sequence,
            "hi_code": int(hi.code),
            "hack_code": int(code),
            "ncoa": str(ncoa) if ncoa else None,
        }
        return [*effects, Notice("hi.answered", fields), hack, *self._hi_accepted(packet, hi, code, ncoa)]

    @staticmethod
    def _hi_accepted(packet: ReceivedMh, hi: mhwire.HI, code: int, assigned: IPv6Address | None) -> list[Effect]:
        """The data plane's part of an accepted HI (RFC 5568 §5.4): which PCoA, NCoA and node, whether to buffer."""
        if code >= HAckCode.NOT_ACCEPTED:
            return []
        addresses: dict[int, IPv6Address] = {}
        mn_lla: bytes | None = None
        for option in hi.options:
            if isinstance(option, mhwire.MHIPv6AddressPrefix):
                addresses.setdefault(option.option_code, option.address)
            elif (
                isinstance(option, mhwire.MHLinkLayerAddress) and option.option_code == LinkLayerAddressCode.MOBILE_NODE
            ):
                mn_lla = option.address
        pcoa = addresses.get(IPAddressPrefixCode.OLD_CARE_OF_ADDRESS)
        ncoa = assigned or addresses.get(IPAddressPrefixCode.NEW_CARE_OF_ADDRESS)
        if pcoa is None or ncoa is None:
            return []
        reactive = hi.code == HICode.FBU_NOT_FROM_PCOA
        return [HiAccepted(packet.source, pcoa, ncoa, mn_lla, hi.u_flag, reactive)]

    def _hi_decision(self, packet: ReceivedMh, hi: mhwire.HI) -> tuple[int, IPv6Address | None]:
        """HAck Code and the NCoA to return (§6.2.1.2)."""
        if not self._params.neighbours.is_neighbour_router(packet.source):
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
        if hi.code != HICode.FBU_FROM_PCOA or not self._params.access_prefixes:
            return HAckCode.NOT_ACCEPTED, None
        if len(self._nar_assigned) >= self._params.max_nar_handovers:
            return HAckCode.INSUFFICIENT_RESOURCES, None
        owner = mn_lla or (pcoa.packed if pcoa else b"")
        prefix = next((p for p in self._params.access_prefixes if ncoa is not None and ncoa in p), None)
        valid = (
            ncoa is not None
            and prefix is not None
            and self._nar_assigned.get(ncoa, owner) == owner
            and not self._shared.address_in_use(ncoa)
        )
        if valid and not hi.s_flag:
            assert ncoa is not None
            self._nar_assigned[ncoa] = owner
            return HAckCode.ACCEPTED_NCOA_VALID, None
        home = prefix or self._params.access_prefixes[0]
        assigned = eui64_address(home, mn_lla, owner)
        if self._nar_assigned.get(assigned, owner) != owner or self._shared.address_in_use(assigned):
            assigned = eui64_address(home, None, owner + b"\x01")
        self._nar_assigned[assigned] = owner
        if hi.s_flag:
            return HAckCode.ACCEPTED_NCOA_ASSIGNED, assigned
        return HAckCode.ACCEPTED_NCOA_NOT_VALID, assigned

    def solicit_hi(self, par: IPv6Address, pcoa: IPv6Address, now: float) -> list[Effect]:
        """NAR: ask ``par`` for an HI about the node with ``pcoa`` (an unsolicited HAck, Code 4)."""
        option = mhwire.MHIPv6AddressPrefix(IPAddressPrefixCode.OLD_CARE_OF_ADDRESS, 128, pcoa)
        hack = mhwire.HAck(self._shared.next_hi_sequence(), HAckCode.UNSOLICITED, (option,))
        return [SendMh(self._shared.address, par, mhwire.encode_mh(hack, source=self._shared.address, destination=par))]

    # ---- timers

    # ---- timers

    def due(self, at: float, key: NarKey) -> bool:
        """Whether a timer entry of the record ``key`` still stands."""
        record = self._nar.get(key)
        return record is not None and record.forget_at == at

    def forget(self, key: NarKey) -> None:
        del self._nar[key]
