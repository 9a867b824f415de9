"""Neighbor Advertisement (ICMPv6 136, RFC 4861 §4.4), as the Unsolicited NA of RFC 5568 §6.3.

A node arriving on the new access router's link announces itself with an unsolicited NA: R=0, S=0, O=0, Target =
its NCoA, a Target Link-Layer Address option with its MAC, sent to all-nodes (or to the NAR). The NAR's data
plane takes it as the moment to flush what it buffered for the node (:mod:`aaa_fmip.router.dataplane`).

The options are ND options (:mod:`aaa_fmip.wire.icmpv6`); the Checksum is computed by the encoder over the
IPv6 pseudo-header (RFC 4443 §2.3) and verified by the decoder when it is given both addresses. Written here
rather than taken from scapy for the same reason as the rest of this package: one Reader, DecodeError only,
and the ND option codecs the FMIPv6 messages already use.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Final

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import Reader, internet_checksum, ipv6_pseudo_header
from aaa_fmip.wire.icmpv6 import NDOption, TargetLinkLayerAddress, decode_nd_options, encode_nd_options
from aaa_fmip.wire.send import ICMPV6_NEXT_HEADER

__all__ = ["NEIGHBOR_ADVERTISEMENT", "NeighborAdvertisement", "decode_na", "encode_na"]

NEIGHBOR_ADVERTISEMENT: Final = 136  # RFC 4861 §4.4
_ROUTER: Final = 0x80  # RFC 4861 §4.4 R flag
_SOLICITED: Final = 0x40  # S flag
_OVERRIDE: Final = 0x20  # O flag
_HEADER: Final = 24  # Type, Code, Checksum, flags + Reserved (4), Target Address (16)


@dataclass(frozen=True)
class NeighborAdvertisement:
    """An NA; :attr:`unsolicited_for_fmip` tells whether it is RFC 5568 §6.3's UNA."""

    target: IPv6Address
    router: bool = False
    solicited: bool = False
    override: bool = False
    options: tuple[NDOption, ...] = ()

    @property
    def target_lla(self) -> bytes | None:
        """The Target Link-Layer Address option's address (RFC 4861 §4.6.1), if present."""
        return next((o.address for o in self.options if isinstance(o, TargetLinkLayerAddress)), None)

    @property
    def unsolicited_for_fmip(self) -> bool:
        """R, S and O all clear (RFC 5568 §6.3)."""
        return not (self.router or self.solicited or self.override)


def _checksum(octets: bytes, source: IPv6Address, destination: IPv6Address) -> int:
    return internet_checksum(ipv6_pseudo_header(source, destination, len(octets), ICMPV6_NEXT_HEADER) + octets)


def encode_na(na: NeighborAdvertisement, *, source: IPv6Address, destination: IPv6Address) -> bytes:
    """The NA with its Checksum for the given IPv6 addresses (send it with Hop Limit 255, RFC 4861 §7.1.2)."""
    flags = (_ROUTER if na.router else 0) | (_SOLICITED if na.solicited else 0) | (_OVERRIDE if na.override else 0)
    octets = bytes((NEIGHBOR_ADVERTISEMENT, 0, 0, 0, flags, 0, 0, 0)) + na.target.packed + encode_nd_options(na.options)
    checksum = _checksum(octets, source, destination)
    return octets[:2] + checksum.to_bytes(2, "big") + octets[4:]


def decode_na(
    data: bytes, *, source: IPv6Address | None = None, destination: IPv6Address | None = None
) -> NeighborAdvertisement:
    """Decode an NA; only DecodeError escapes. With both addresses the Checksum is verified first."""
    if (source is None) != (destination is None):
        raise ValueError("give both source and destination to verify the checksum, or neither")
    r = Reader(data)
    if (kind := r.pull_u8("na.type")) != NEIGHBOR_ADVERTISEMENT:
        raise DecodeError(f"not a Neighbor Advertisement (type {kind})", field="na.type", offset=0)
    if (code := r.pull_u8("na.code")) != 0:
        raise DecodeError(f"NA Code must be 0 (RFC 4861 §7.1.2), got {code}", field="na.code", offset=1)
    r.pull_u16("na.checksum")
    if source is not None and destination is not None and _checksum(data, source, destination) != 0:
        raise DecodeError("checksum does not match the IPv6 pseudo-header and message", field="na.checksum", offset=2)
    flags = r.pull_u8("na.flags")
    r.pull_bytes(3, "na.reserved")
    target = r.pull_ipv6("na.target")
    if target.is_multicast:
        raise DecodeError("the Target Address is a multicast address (RFC 4861 §7.1.2)", field="na.target", offset=8)
    options = decode_nd_options(data[_HEADER:], base=_HEADER)
    return NeighborAdvertisement(
        target, bool(flags & _ROUTER), bool(flags & _SOLICITED), bool(flags & _OVERRIDE), tuple(options)
    )
