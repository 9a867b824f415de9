"""A minimal IPv6 packet codec (RFC 8200 §3) with the Home Address destination option (RFC 6275 §6.3).

Enough to carry and take apart FMIPv6 signalling: an FBU travels with a Destination Options header holding
the Home Address option (type 201) set to the PCoA (RFC 5568 §6.2.2). The parser walks Hop-by-Hop, Routing and
Destination Options headers and stops at the first other header, which it reports as the upper layer.
"""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import NamedTuple

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import OpenIntEnum, Reader
from aaa_fmip.wire.nd import check_uint

__all__ = [
    "HOME_ADDRESS_OPTION",
    "IPV6_HEADER_LENGTH",
    "IPv6Packet",
    "NextHeader",
    "build_ipv6_packet",
    "parse_ipv6_packet",
]

IPV6_HEADER_LENGTH = 40  # RFC 8200 §3
HOME_ADDRESS_OPTION = 201  # RFC 6275 §6.3: 0xC9, action bits 11 (discard and report if unknown)
_PAD1, _PADN = 0, 1  # RFC 8200 §4.2


class NextHeader(OpenIntEnum):
    """IPv6 Next Header values this module meets (IANA "Assigned Internet Protocol Numbers")."""

    HOP_BY_HOP_OPTIONS = 0  # RFC 8200 §4.3
    ROUTING = 43  # RFC 8200 §4.4
    FRAGMENT = 44  # RFC 8200 §4.5
    ICMPV6 = 58  # RFC 4443
    NO_NEXT_HEADER = 59  # RFC 8200 §4.7
    DESTINATION_OPTIONS = 60  # RFC 8200 §4.6
    MOBILITY = 135  # RFC 6275 §6.1


class IPv6Packet(NamedTuple):
    """What :func:`parse_ipv6_packet` returns."""

    source: IPv6Address
    destination: IPv6Address
    home_address: IPv6Address | None  # from a Home Address destination option (the PCoA), if any
    upper_next_header: int  # protocol of ``payload``, after any extension headers
    payload: bytes


def _home_address_header(next_header: int, home_address: IPv6Address) -> bytes:
    # Next Header | Hdr Ext Len 2 | PadN(4) | Home Address option: 201, 16, address. The option's Type sits at
    # offset 6, its alignment requirement 8n+6 (RFC 6275 §6.3), so the address is 8-octet aligned.
    return bytes((next_header, 2, _PADN, 2, 0, 0, HOME_ADDRESS_OPTION, 16)) + home_address.packed


def build_ipv6_packet(
    source: IPv6Address,
    destination: IPv6Address,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = 255,
    home_address: IPv6Address | None = None,
) -> bytes:
    """An IPv6 packet; with ``home_address``, a Destination Options header carrying the Home Address option.

    ``hop_limit`` defaults to 255, which RFC 5568 §6.1 requires of RtSolPr and PrRtAdv.
    """
    check_uint("Next Header", next_header, 8)
    check_uint("Hop Limit", hop_limit, 8)
    if home_address is not None:
        payload = _home_address_header(next_header, home_address) + payload
        next_header = NextHeader.DESTINATION_OPTIONS
    check_uint("Payload Length", len(payload), 16)
    header = bytes((0x60, 0, 0, 0)) + len(payload).to_bytes(2, "big") + bytes((next_header, hop_limit))
    return header + source.packed + destination.packed + payload


def _options(r: Reader, *, destination_options: bool) -> IPv6Address | None:
    """Walk a Hop-by-Hop or Destination Options header's options (RFC 8200 §4.2); the home address if any."""
    home_address = None
    while not r.at_end():
        offset = r.offset
        option_type = r.pull_u8("ipv6.option.type")
        if option_type == _PAD1:
            continue
        data = r.pull_bytes(r.pull_u8("ipv6.option.length"), "ipv6.option.length")
        if option_type == _PADN:
            continue
        if option_type == HOME_ADDRESS_OPTION and destination_options:
            if len(data) != 16:
                raise DecodeError(f"length must be 16, got {len(data)}", field="ipv6.home_address", offset=offset + 1)
            if home_address is not None:
                raise DecodeError("more than one Home Address option", field="ipv6.home_address", offset=offset)
            home_address = IPv6Address(data)
        elif option_type >> 6:
            # RFC 8200 §4.2: an unrecognised option whose action bits are not 00 makes the packet discarded
            raise DecodeError(
                f"unrecognised option {option_type} must not be skipped", field="ipv6.option.type", offset=offset
            )
    return home_address


def parse_ipv6_packet(data: bytes) -> IPv6Packet:
    """Split an IPv6 packet into addresses, the home address (if any), the upper-layer protocol and its octets.

    Raises only DecodeError: not version 6, a Payload Length that does not match the octets given (jumbograms
    included), fragments, malformed extension headers or options.
    """
    r = Reader(data)
    version = r.peek_u8("ipv6.version") >> 4
    if version != 6:
        raise DecodeError(f"version must be 6, got {version}", field="ipv6.version", offset=0)
    r.pull_bytes(4, "ipv6.flow_label")
    payload_length = r.pull_u16("ipv6.payload_length")
    next_header = r.pull_u8("ipv6.next_header")
    r.pull_u8("ipv6.hop_limit")
    source = r.pull_ipv6("ipv6.source")
    destination = r.pull_ipv6("ipv6.destination")
    if payload_length != r.remaining():
        raise DecodeError(
            f"Payload Length {payload_length} but {r.remaining()} octets follow the header",
            field="ipv6.payload_length",
            offset=4,
        )
    home_address = None
    first = True
    while next_header in (NextHeader.HOP_BY_HOP_OPTIONS, NextHeader.ROUTING, NextHeader.DESTINATION_OPTIONS):
        if next_header == NextHeader.HOP_BY_HOP_OPTIONS and not first:
            raise DecodeError("Hop-by-Hop Options header not first", field="ipv6.next_header", offset=r.offset)
        start = r.offset
        following = r.pull_u8("ipv6.extension.next_header")
        length = r.pull_u8("ipv6.extension.length") * 8 + 6
        with r.restrict_to(length, "ipv6.extension.length"):
            if next_header == NextHeader.ROUTING:
                r.pull_rest()  # the routing header is not ours to interpret
            else:
                found = _options(r, destination_options=next_header == NextHeader.DESTINATION_OPTIONS)
                if found is not None:
                    if home_address is not None:
                        raise DecodeError("more than one Home Address option", field="ipv6.home_address", offset=start)
                    home_address = found
        next_header = following
        first = False
    if next_header == NextHeader.FRAGMENT:
        raise DecodeError("fragmented packets are not supported", field="ipv6.next_header", offset=r.offset)
    return IPv6Packet(source, destination, home_address, NextHeader(next_header), r.pull_rest())
