"""One table per message family drives both the encoder and the decoder (tests/vectors/wire-*.json)."""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Any

import pytest

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire.icmpv6 import decode_icmpv6, encode_icmpv6
from aaa_fmip.wire.ipv6 import build_ipv6_packet, parse_ipv6_packet
from aaa_fmip.wire.mh import badf_input, decode_mh, encode_mh
from tests.wire._vectors import build, load, wire

ICMPV6 = load("wire-icmpv6.json")
MH = load("wire-mh.json")
IPV6 = load("wire-ipv6.json")


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def _ones_complement_ok(data: bytes) -> bool:
    """A second, deliberately naive checksum check: the 16-bit one's-complement sum of everything is 0xFFFF."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total >> 16) + (total & 0xFFFF)
    return total == 0xFFFF


def _pseudo(source: IPv6Address, destination: IPv6Address, length: int, next_header: int) -> bytes:
    return source.packed + destination.packed + length.to_bytes(4, "big") + bytes(3) + bytes((next_header,))


def test_vector_files_name_their_source() -> None:
    for table in (ICMPV6, MH, IPV6):
        assert table["source"]
        for vector in table["vectors"] + table["decode_only"]:
            assert vector["source"], vector["name"]
        for vector in table["invalid"]:
            assert vector["why"], vector["name"]


# --- ICMPv6 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", ICMPV6["vectors"], ids=_ids(ICMPV6["vectors"]))
def test_icmpv6_encode(vector: dict[str, Any]) -> None:
    src, dst = IPv6Address(vector["ipv6_source"]), IPv6Address(vector["ipv6_destination"])
    assert encode_icmpv6(build(vector["message"]), source=src, destination=dst).hex() == wire(vector).hex()


@pytest.mark.parametrize(
    "vector", ICMPV6["vectors"] + ICMPV6["decode_only"], ids=_ids(ICMPV6["vectors"] + ICMPV6["decode_only"])
)
def test_icmpv6_decode(vector: dict[str, Any]) -> None:
    src, dst = IPv6Address(vector["ipv6_source"]), IPv6Address(vector["ipv6_destination"])
    data = wire(vector)
    assert _ones_complement_ok(_pseudo(src, dst, len(data), 58) + data)
    expected = build(vector["message"])
    assert decode_icmpv6(data, source=src, destination=dst) == expected
    assert decode_icmpv6(data) == expected


@pytest.mark.parametrize("vector", ICMPV6["invalid"], ids=_ids(ICMPV6["invalid"]))
def test_icmpv6_invalid(vector: dict[str, Any]) -> None:
    src, dst = IPv6Address("fe80::3c4a:5bf6:ffb4:ca6c"), IPv6Address("fe80::1")
    with pytest.raises(DecodeError) as caught:
        decode_icmpv6(wire(vector), source=src, destination=dst)
    assert caught.value.field == vector["field"]
    assert vector["field"] in str(caught.value)
    assert f"offset {caught.value.offset}" in str(caught.value)


# --- Mobility Header -------------------------------------------------------------------------------------------


def _mh_addresses(vector: dict[str, Any]) -> tuple[IPv6Address, IPv6Address]:
    return IPv6Address(vector["checksum_source"]), IPv6Address(vector["checksum_destination"])


@pytest.mark.parametrize("vector", MH["vectors"], ids=_ids(MH["vectors"]))
def test_mh_encode(vector: dict[str, Any]) -> None:
    src, dst = _mh_addresses(vector)
    assert encode_mh(build(vector["message"]), source=src, destination=dst).hex() == wire(vector).hex()


@pytest.mark.parametrize("vector", MH["vectors"] + MH["decode_only"], ids=_ids(MH["vectors"] + MH["decode_only"]))
def test_mh_decode(vector: dict[str, Any]) -> None:
    src, dst = _mh_addresses(vector)
    data = wire(vector)
    assert _ones_complement_ok(_pseudo(src, dst, len(data), 135) + data)
    expected = build(vector["message"])
    assert decode_mh(data, source=src, destination=dst) == expected
    assert decode_mh(data) == expected
    if "badf_input" in vector:
        got = badf_input(data)
        want = vector["badf_input"]
        assert (got.mh_data.hex(), got.spi, got.authenticator.hex()) == (
            want["mh_data"],
            want["spi"],
            want["authenticator"],
        )


@pytest.mark.parametrize("vector", MH["invalid"], ids=_ids(MH["invalid"]))
def test_mh_invalid(vector: dict[str, Any]) -> None:
    src, dst = IPv6Address("2001:db8:1::3c4a:5bf6:ffb4:ca6c"), IPv6Address("2001:db8:1::1")
    with pytest.raises(DecodeError) as caught:
        if vector["function"] == "badf_input":
            badf_input(wire(vector))
        else:
            decode_mh(wire(vector), source=src, destination=dst)
    assert caught.value.field == vector["field"]


# --- IPv6 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", IPV6["vectors"], ids=_ids(IPV6["vectors"]))
def test_ipv6_build(vector: dict[str, Any]) -> None:
    p = vector["packet"]
    home = IPv6Address(p["home_address"]) if p["home_address"] else None
    built = build_ipv6_packet(
        IPv6Address(p["source"]),
        IPv6Address(p["destination"]),
        p["upper_next_header"],
        bytes.fromhex(p["payload"]),
        hop_limit=p["hop_limit"],
        home_address=home,
    )
    assert built.hex() == wire(vector).hex()


@pytest.mark.parametrize(
    "vector", IPV6["vectors"] + IPV6["decode_only"], ids=_ids(IPV6["vectors"] + IPV6["decode_only"])
)
def test_ipv6_parse(vector: dict[str, Any]) -> None:
    p = vector["packet"]
    parsed = parse_ipv6_packet(wire(vector))
    assert parsed.source == IPv6Address(p["source"])
    assert parsed.destination == IPv6Address(p["destination"])
    assert parsed.home_address == (IPv6Address(p["home_address"]) if p["home_address"] else None)
    assert parsed.upper_next_header == p["upper_next_header"]
    assert parsed.payload.hex() == p["payload"]


@pytest.mark.parametrize("vector", IPV6["invalid"], ids=_ids(IPV6["invalid"]))
def test_ipv6_invalid(vector: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as caught:
        parse_ipv6_packet(wire(vector))
    assert caught.value.field == vector["field"]


def test_fbu_packet_mh_decodes_with_the_home_address_as_checksum_source() -> None:
    """The IPv6 vector carries the MH vector: parse, then verify the MH checksum with the HAO's address."""
    vector = next(v for v in IPV6["vectors"] if v["name"] == "fbu-with-home-address-option")
    packet = parse_ipv6_packet(wire(vector))
    assert packet.home_address is not None
    message = decode_mh(packet.payload, source=packet.home_address, destination=packet.destination)
    assert message == build(MH["vectors"][0]["message"])


MH_IN_PACKETS = [v for v in MH["vectors"] + MH["decode_only"] if "ipv6" in v]


@pytest.mark.parametrize("vector", MH_IN_PACKETS, ids=_ids(MH_IN_PACKETS))
def test_mh_vectors_inside_ipv6_packets(vector: dict[str, Any]) -> None:
    """The MH checksum source is the Home Address option's address when the packet has one, else the source."""
    p = vector["ipv6"]
    home = IPv6Address(p["home_address"]) if p["home_address"] else None
    packet = build_ipv6_packet(
        IPv6Address(p["source"]), IPv6Address(p["destination"]), 135, wire(vector), home_address=home
    )
    parsed = parse_ipv6_packet(packet)
    checksum_source = parsed.home_address or parsed.source
    assert (checksum_source, parsed.destination) == _mh_addresses(vector)
    assert decode_mh(parsed.payload, source=checksum_source, destination=parsed.destination) == build(vector["message"])
