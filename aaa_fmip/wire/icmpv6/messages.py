"""ICMPv6 messages: RtSolPr and PrRtAdv (RFC 5568 §6.1), RS, RA and NA (RFC 4861 §4), their checksums."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import TypeAlias

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import Reader, internet_checksum, ipv6_pseudo_header
from aaa_fmip.wire.icmpv6.codes import FmipSubtype, Icmpv6Type, PrRtAdvCode
from aaa_fmip.wire.icmpv6.options import NDOption, TargetLinkLayerAddress, _decode_options, encode_nd_options
from aaa_fmip.wire.nd import check_uint
from aaa_fmip.wire.send import (
    ICMPV6_NEXT_HEADER,
)

# --- messages -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtSolPr:
    """Router Solicitation for Proxy Advertisement (ICMPv6 154, Subtype 2, Code 0; RFC 5568 §6.1.1)."""

    identifier: int  # 16 bits, echoed in the PrRtAdv
    options: tuple[NDOption, ...] = ()


@dataclass(frozen=True)
class PrRtAdv:
    """Proxy Router Advertisement (ICMPv6 154, Subtype 3; RFC 5568 §6.1.2)."""

    code: int  # PrRtAdvCode, 0..5 defined
    identifier: int  # 16 bits, copied from the RtSolPr, 0 when unsolicited
    options: tuple[NDOption, ...] = ()


@dataclass(frozen=True)
class UnknownIcmpv6Message:
    """Any other ICMPv6 message; ``body`` is every octet after the Checksum."""

    type: int
    code: int
    body: bytes


Icmpv6Message: TypeAlias = RtSolPr | PrRtAdv | UnknownIcmpv6Message


@dataclass(frozen=True)
class RouterSolicitation:
    """Router Solicitation (ICMPv6 133, RFC 4861 §4.1): ``Reserved(4) | options``."""

    options: tuple[NDOption, ...] = ()


@dataclass(frozen=True)
class RouterAdvertisement:
    """Router Advertisement (ICMPv6 134, RFC 4861 §4.2): ``Cur Hop Limit | M O Reserved | Router Lifetime(2) |
    Reachable Time(4) | Retrans Timer(4) | options``. The NAR's reactive answer carries NAACK (RFC 5568 §6.3)."""

    router_lifetime: int  # seconds; 0: not a default router
    options: tuple[NDOption, ...] = ()
    cur_hop_limit: int = 0  # 0: unspecified
    managed: bool = False  # M
    other: bool = False  # O
    reachable_time: int = 0  # milliseconds, 0: unspecified
    retrans_timer: int = 0  # milliseconds, 0: unspecified


@dataclass(frozen=True)
class NeighborAdvertisement:
    """Neighbor Advertisement (ICMPv6 136, RFC 4861 §4.4): ``R S O Reserved(29 bits) | Target Address |
    options``. A node's UNA on the NAR's link (RFC 5568 §6.3) has R, S and O clear and its NCoA as Target."""

    target: IPv6Address
    options: tuple[NDOption, ...] = ()
    router: bool = False  # R
    solicited: bool = False  # S
    override: bool = False  # O

    @property
    def target_lla(self) -> bytes | None:
        """The Target Link-Layer Address option's address (RFC 4861 §4.6.1), if present."""
        return next((o.address for o in self.options if isinstance(o, TargetLinkLayerAddress)), None)

    @property
    def unsolicited_for_fmip(self) -> bool:
        """R, S and O all clear: RFC 5568 §6.3's UNA."""
        return not (self.router or self.solicited or self.override)


NDMessage: TypeAlias = RouterSolicitation | RouterAdvertisement | NeighborAdvertisement


def _nd_message_octets(msg: NDMessage) -> bytes:
    """An ND message with a zero Checksum (RFC 4861 §4.1, §4.2, §4.4)."""
    if isinstance(msg, RouterSolicitation):
        head = bytes((Icmpv6Type.ROUTER_SOLICITATION, 0, 0, 0)) + bytes(4)
    elif isinstance(msg, RouterAdvertisement):
        check_uint("Cur Hop Limit", msg.cur_hop_limit, 8)
        check_uint("Router Lifetime", msg.router_lifetime, 16)
        check_uint("Reachable Time", msg.reachable_time, 32)
        check_uint("Retrans Timer", msg.retrans_timer, 32)
        head = (
            bytes((Icmpv6Type.ROUTER_ADVERTISEMENT, 0, 0, 0, msg.cur_hop_limit, msg.managed << 7 | msg.other << 6))
            + msg.router_lifetime.to_bytes(2, "big")
            + msg.reachable_time.to_bytes(4, "big")
            + msg.retrans_timer.to_bytes(4, "big")
        )
    else:
        flags = msg.router << 31 | msg.solicited << 30 | msg.override << 29
        head = bytes((Icmpv6Type.NEIGHBOR_ADVERTISEMENT, 0, 0, 0)) + flags.to_bytes(4, "big") + msg.target.packed
    return head + encode_nd_options(msg.options)


def encode_nd_message(msg: NDMessage, *, source: IPv6Address, destination: IPv6Address) -> bytes:
    """An RS, RA or NA with its Checksum (RFC 4443 §2.3)."""
    octets = _nd_message_octets(msg)
    checksum = _checksum(octets, source, destination)
    return octets[:2] + checksum.to_bytes(2, "big") + octets[4:]


def decode_nd_message(
    data: bytes, *, source: IPv6Address | None = None, destination: IPv6Address | None = None
) -> NDMessage | UnknownIcmpv6Message:
    """Decode an RS, RA or NA (anything else: :class:`UnknownIcmpv6Message`); with both addresses the Checksum
    is verified first. A non-zero Code is a DecodeError (RFC 4861 §6.1.1, §6.1.2, §7.1.2: such messages are
    discarded). Raises only DecodeError for malformed input."""
    if (source is None) != (destination is None):
        raise ValueError("give both source and destination to verify the checksum, or neither")
    r = Reader(data)
    icmp_type = r.pull_u8("icmpv6.type")
    code = r.pull_u8("icmpv6.code")
    r.pull_u16("icmpv6.checksum")
    if source is not None and destination is not None and _checksum(data, source, destination) != 0:
        raise DecodeError(
            "checksum does not match the IPv6 pseudo-header and message", field="icmpv6.checksum", offset=2
        )
    known = (Icmpv6Type.ROUTER_SOLICITATION, Icmpv6Type.ROUTER_ADVERTISEMENT, Icmpv6Type.NEIGHBOR_ADVERTISEMENT)
    if icmp_type not in known:
        return UnknownIcmpv6Message(Icmpv6Type(icmp_type), code, r.pull_rest())
    if code != 0:
        raise DecodeError(f"ICMPv6 type {icmp_type} must have Code 0, got {code}", field="icmpv6.code", offset=1)
    if icmp_type == Icmpv6Type.ROUTER_SOLICITATION:
        r.pull_bytes(4, "nd.rs.reserved")
        return RouterSolicitation(_decode_options(data, r.offset, 0))
    if icmp_type == Icmpv6Type.ROUTER_ADVERTISEMENT:
        hop_limit = r.pull_u8("nd.ra.cur_hop_limit")
        flags = r.pull_u8("nd.ra.flags")
        lifetime = r.pull_u16("nd.ra.router_lifetime")
        reachable = r.pull_u32("nd.ra.reachable_time")
        retrans = r.pull_u32("nd.ra.retrans_timer")
        options = _decode_options(data, r.offset, 0)
        return RouterAdvertisement(
            lifetime, options, hop_limit, bool(flags & 0x80), bool(flags & 0x40), reachable, retrans
        )
    flags = r.pull_u32("nd.na.flags")
    target = r.pull_ipv6("nd.na.target")
    options = _decode_options(data, r.offset, 0)
    return NeighborAdvertisement(target, options, bool(flags >> 31 & 1), bool(flags >> 30 & 1), bool(flags >> 29 & 1))


_FMIP_HEADER = 8  # Type | Code | Checksum | Subtype | Reserved | Identifier (RFC 5568 §6.1)


def _message_octets(msg: Icmpv6Message) -> bytes:
    """The message with a zero Checksum."""
    if isinstance(msg, UnknownIcmpv6Message):
        check_uint("ICMPv6 Type", msg.type, 8)
        check_uint("ICMPv6 Code", msg.code, 8)
        return bytes((msg.type, msg.code, 0, 0)) + msg.body
    if isinstance(msg, RtSolPr):
        code, subtype = 0, FmipSubtype.RTSOLPR
    else:
        check_uint("PrRtAdv Code", msg.code, 8)
        code, subtype = msg.code, FmipSubtype.PRRTADV
    check_uint("Identifier", msg.identifier, 16)
    header = bytes((Icmpv6Type.FMIPV6, code, 0, 0, subtype, 0)) + msg.identifier.to_bytes(2, "big")
    return header + encode_nd_options(msg.options)


def _checksum(octets: bytes, source: IPv6Address, destination: IPv6Address) -> int:
    return internet_checksum(ipv6_pseudo_header(source, destination, len(octets), ICMPV6_NEXT_HEADER) + octets)


def encode_icmpv6(msg: Icmpv6Message, *, source: IPv6Address, destination: IPv6Address) -> bytes:
    """The ICMPv6 message with its Checksum (RFC 4443 §2.3) for the given IPv6 addresses.

    With a Home Address option in the packet, ``source`` is the home address (RFC 6275 §11.3.1).
    """
    octets = _message_octets(msg)
    checksum = _checksum(octets, source, destination)
    return octets[:2] + checksum.to_bytes(2, "big") + octets[4:]


def decode_icmpv6(
    data: bytes, *, source: IPv6Address | None = None, destination: IPv6Address | None = None
) -> Icmpv6Message:
    """Decode one ICMPv6 message; with both addresses the Checksum is verified first (field ``icmpv6.checksum``).

    Raises only DecodeError for malformed input.
    """
    if (source is None) != (destination is None):
        raise ValueError("give both source and destination to verify the checksum, or neither")
    r = Reader(data)
    icmp_type = r.pull_u8("icmpv6.type")
    code = r.pull_u8("icmpv6.code")
    r.pull_u16("icmpv6.checksum")
    if source is not None and destination is not None and _checksum(data, source, destination) != 0:
        raise DecodeError(
            "checksum does not match the IPv6 pseudo-header and message", field="icmpv6.checksum", offset=2
        )
    if icmp_type != Icmpv6Type.FMIPV6:
        return UnknownIcmpv6Message(Icmpv6Type(icmp_type), code, r.pull_rest())
    subtype = r.peek_u8("icmpv6.fmip.subtype")
    if subtype not in (FmipSubtype.RTSOLPR, FmipSubtype.PRRTADV):
        return UnknownIcmpv6Message(Icmpv6Type(icmp_type), code, r.pull_rest())
    r.pull_u8("icmpv6.fmip.subtype")
    r.pull_u8("icmpv6.fmip.reserved")  # RFC 5568 §6.1: ignored by the receiver
    identifier = r.pull_u16("icmpv6.fmip.identifier")
    options = _decode_options(data, _FMIP_HEADER, 0)
    if subtype == FmipSubtype.RTSOLPR:
        if code != 0:
            raise DecodeError(f"RtSolPr Code must be 0, got {code}", field="icmpv6.code", offset=1)
        return RtSolPr(identifier, options)
    return PrRtAdv(PrRtAdvCode(code), identifier, options)
