"""The minimal IPv6 codec and the Home Address destination option."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from aaa_fmip.wire.ipv6 import IPv6Packet, NextHeader, build_ipv6_packet, parse_ipv6_packet

PCOA = IPv6Address("2001:db8:1::100")
NCOA = IPv6Address("2001:db8:2::100")
PAR = IPv6Address("2001:db8:1::1")


def test_home_address_option_layout() -> None:
    packet = build_ipv6_packet(NCOA, PAR, NextHeader.MOBILITY, b"\x3b\x00" + bytes(6), home_address=PCOA)
    assert packet[6] == 60 and packet[7] == 255  # Destination Options first; default Hop Limit 255
    options = packet[40:64]
    assert options[:2] == bytes((135, 2))  # then the MH; 24 octets
    assert options[6:8] == bytes((201, 16))  # Home Address option at 8n+6 (RFC 6275 §6.3)
    assert options[8:24] == PCOA.packed
    assert parse_ipv6_packet(packet) == IPv6Packet(NCOA, PAR, PCOA, 135, b"\x3b\x00" + bytes(6))


def test_without_home_address() -> None:
    packet = build_ipv6_packet(PAR, NCOA, 58, b"abcd", hop_limit=64)
    assert len(packet) == 44 and packet[4:8] == bytes((0, 4, 58, 64))
    source, destination, home, next_header, payload = parse_ipv6_packet(packet)
    assert (source, destination, home, next_header, payload) == (PAR, NCOA, None, 58, b"abcd")


def test_builder_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="Hop Limit"):
        build_ipv6_packet(PAR, NCOA, 58, b"", hop_limit=256)
    with pytest.raises(ValueError, match="Payload Length"):
        build_ipv6_packet(PAR, NCOA, 58, bytes(65536))
