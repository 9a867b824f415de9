"""RFC 5678 option codecs (DHCPv4 139/140 with RFC 3396 splitting, DHCPv6 54/55), the DHCP messages asking for
them, and the RFC 5679 resolution logic driven with canned answers. Bad input: only DecodeError (Hypothesis)."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip.errors import DecodeError
from aaa_fmip.mih import discovery as d
from aaa_fmip.mih.discovery import MosAddresses, MosDomains, ServiceType

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def test_dhcpv4_addresses_known_encoding() -> None:
    # IS at 192.0.2.45, ES present with length 0 ("no ES server"): the bytes ISC dhclient stores as 1:4:c0:0:2:2d:3:0
    items = (MosAddresses(ServiceType.IS, (V4("192.0.2.45"),)), MosAddresses(ServiceType.ES, ()))
    wire = d.encode_dhcpv4_mos_addresses(items)
    assert wire == bytes([139, 8, 1, 4, 192, 0, 2, 45, 3, 0])
    assert d.decode_dhcpv4_mos_addresses(wire[2:]) == items
    assert d.decode_dhcpv4_mos_addresses(wire[2:])[1].addresses == ()


def test_dhcpv4_domains_known_encoding() -> None:
    items = (MosDomains(ServiceType.IS, ("example.net",)),)
    wire = d.encode_dhcpv4_mos_domains(items)
    assert wire == bytes([140, 15, 1, 13]) + b"\x07example\x03net\x00"
    assert d.decode_dhcpv4_mos_domains(wire[2:]) == items


def test_dhcpv6_known_encodings() -> None:
    items = (MosAddresses(ServiceType.IS, (V6("2001:db8::45"),)), MosAddresses(ServiceType.CS, ()))
    wire = d.encode_dhcpv6_mos_addresses(items)
    assert wire[:4] == bytes([0, 54, 0, 24]) and wire[4:8] == bytes([0, 1, 0, 16]) and wire[-4:] == bytes([0, 2, 0, 0])
    assert d.decode_dhcpv6_mos_addresses(wire[4:]) == items
    names = (MosDomains(ServiceType.ES, ("mos.example.net", "example.org")),)
    wire = d.encode_dhcpv6_mos_domains(names)
    assert wire[:2] == bytes([0, 55]) and d.decode_dhcpv6_mos_domains(wire[4:]) == names


def test_long_option_is_split_and_concatenated() -> None:
    """RFC 3396: 100 IS addresses (402 octets of value) go out as two instances of option 139."""
    addresses = tuple(V4(f"198.51.{i // 250}.{i % 250 + 1}") for i in range(100))
    items = (MosAddresses(ServiceType.IS, addresses[:60]), MosAddresses(ServiceType.CS, addresses[60:]))
    wire = d.encode_dhcpv4_mos_addresses(items)
    assert wire[0] == 139 and wire[1] == 255 and wire[257] == 139 and wire[258] == len(wire) - 259
    options = d.dhcpv4_options(b"\x00" + wire + bytes([3, 4, 192, 0, 2, 1]) + b"\xff" + b"junk after end")
    assert d.decode_dhcpv4_mos_addresses(options[139]) == items
    assert options[3] == bytes([192, 0, 2, 1])


def test_unknown_service_codes_round_trip() -> None:
    items = (MosAddresses(ServiceType(7), (V4("192.0.2.7"),)),)
    decoded = d.decode_dhcpv4_mos_addresses(d.encode_dhcpv4_mos_addresses(items)[2:])
    assert decoded == items and decoded[0].service == 7 and decoded[0].service.name == "UNKNOWN_7"


@pytest.mark.parametrize(
    ("decode", "data", "field"),
    [
        (d.decode_dhcpv4_mos_addresses, bytes([1, 3, 1, 2, 3]), "option139.addresses"),  # not a multiple of 4
        (d.decode_dhcpv4_mos_addresses, bytes([1, 4, 1, 2]), "option139.value"),  # overrun
        (d.decode_dhcpv4_mos_addresses, bytes([1]), "option139.length"),
        (d.decode_dhcpv6_mos_addresses, bytes([0, 1, 0, 4, 1, 2, 3, 4]), "option54.addresses"),
        (d.decode_dhcpv4_mos_domains, bytes([1, 3, 0xC0, 0x0C, 0]), "option140.fqdn"),  # compression pointer
        (d.decode_dhcpv4_mos_domains, bytes([1, 4, 3, 0x61, 0x62, 0x63]), "option140.fqdn"),  # no root label
        (d.decode_dhcpv4_mos_domains, bytes([1, 1, 0]), "option140.fqdn"),  # the root alone
        (d.decode_dhcpv6_mos_domains, bytes([0, 1, 0, 2, 1, 0x61]), "option55.fqdn"),
    ],
)
def test_malformed_options_are_decode_errors(decode: object, data: bytes, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data)  # type: ignore[operator]
    assert info.value.field.startswith(field)


def test_encoder_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match="IPv4"):
        d.encode_dhcpv4_mos_addresses((MosAddresses(ServiceType.IS, (V6("2001:db8::1"),)),))
    with pytest.raises(ValueError, match="at most 255"):
        d.encode_dhcpv4_mos_addresses((MosAddresses(ServiceType.IS, tuple(V4(i) for i in range(64))),))
    with pytest.raises(ValueError, match="domain name"):
        d.encode_domain_list(["a" * 64 + ".example"])


addresses_v4 = st.lists(st.integers(0, 2**32 - 1).map(V4), max_size=8).map(tuple)
addresses_v6 = st.lists(st.integers(0, 2**128 - 1).map(V6), max_size=4).map(tuple)
services = st.integers(0, 255).map(ServiceType)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(MosAddresses, services, addresses_v4), max_size=40).map(tuple))
def test_v4_address_round_trip(items: tuple[MosAddresses, ...]) -> None:
    wire = d.encode_dhcpv4_mos_addresses(items)
    assert d.decode_dhcpv4_mos_addresses(d.dhcpv4_options(wire).get(139, b"")) == items


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(MosDomains, services, st.lists(domains, max_size=3).map(tuple)), max_size=12).map(tuple))
def test_v4_domain_round_trip(items: tuple[MosDomains, ...]) -> None:
    wire = d.encode_dhcpv4_mos_domains(items)
    assert d.decode_dhcpv4_mos_domains(d.dhcpv4_options(wire).get(140, b"")) == items


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.builds(MosAddresses, st.integers(0, 0xFFFF).map(ServiceType), addresses_v6), max_size=6).map(tuple),
    st.lists(st.builds(MosDomains, services, st.lists(domains, max_size=3).map(tuple)), max_size=6).map(tuple),
)
def test_v6_round_trip(items: tuple[MosAddresses, ...], names: tuple[MosDomains, ...]) -> None:
    options = dict(d.dhcpv6_options(d.encode_dhcpv6_mos_addresses(items) + d.encode_dhcpv6_mos_domains(names)))
    assert d.decode_dhcpv6_mos_addresses(options[54]) == items
    assert d.decode_dhcpv6_mos_domains(options[55]) == names


DECODERS = [
    d.decode_dhcpv4_mos_addresses,
    d.decode_dhcpv4_mos_domains,
    d.decode_dhcpv6_mos_addresses,
    d.decode_dhcpv6_mos_domains,
    d.dhcpv4_options,
    d.dhcpv6_options,
    d.decode_domain_list,
    lambda b: d.parse_dhcpv4_reply(b, 1),
    lambda b: d.parse_dhcpv6_reply(b, 1),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DECODERS), st.binary(max_size=400))
def test_any_bytes_give_a_result_or_decode_error(decode: object, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)  # type: ignore[operator]


def test_truncation_at_every_offset() -> None:
    wire = d.encode_dhcpv4_mos_domains((MosDomains(ServiceType.IS, ("mos.example.net", "example.org")),))[2:]
    for cut in range(1, len(wire)):
        with pytest.raises(DecodeError):
            d.decode_dhcpv4_mos_domains(wire[:cut])


def test_dhcp_messages() -> None:
    inform = d.build_dhcpinform(0x01020304, V4("192.0.2.20"), bytes.fromhex("020000000020"))
    assert inform[0] == 1 and inform[4:8] == bytes([1, 2, 3, 4]) and inform[12:16] == bytes([192, 0, 2, 20])
    options = d.dhcpv4_options(inform[240:])
    assert options[53] == bytes([8]) and options[55] == bytes([139, 140])
    # a DHCPACK built from the INFORM: op 2, message type 5, our options
    ack = bytearray(inform[:240])
    ack[0] = 2
    ack += bytes([53, 1, 5]) + d.encode_dhcpv4_mos_addresses((MosAddresses(ServiceType.IS, (V4("192.0.2.1"),)),))
    info = d.parse_dhcpv4_reply(bytes(ack) + b"\xff", 0x01020304)
    assert info is not None and info.servers(ServiceType.IS) == (V4("192.0.2.1"),)
    assert d.parse_dhcpv4_reply(bytes(ack) + b"\xff", 0x0102030F) is None  # another transaction
    request = d.build_information_request(0xABCDEF, bytes.fromhex("020000000020"))
    assert request[:4] == bytes([11, 0xAB, 0xCD, 0xEF])
    assert dict(d.dhcpv6_options(request[4:]))[6] == bytes([0, 54, 0, 55])
    reply = bytes([7, 0xAB, 0xCD, 0xEF]) + d.encode_dhcpv6_mos_domains((MosDomains(ServiceType.IS, ("x.example",)),))
    info6 = d.parse_dhcpv6_reply(reply, 0xABCDEF)
    assert info6 is not None and info6.domain_names(ServiceType.IS) == ("x.example",)


# ---------------------------------------------------------------------------------------- RFC 5679 logic


def run(flow: object, answers: Mapping[tuple[str, str], Sequence[object]]) -> tuple[list[d.MosEndpoint], list[str]]:
    asked: list[str] = []
    gen = flow
    try:
        query = next(gen)  # type: ignore[call-overload]
        while True:
            asked.append(f"{query.rdtype} {query.name}")
            query = gen.send(answers.get((query.name, query.rdtype), []))  # type: ignore[attr-defined]
    except StopIteration as done:
        return done.value, asked


def test_naptr_then_srv_then_addresses() -> None:
    answers: dict[tuple[str, str], Sequence[object]] = {
        ("example.net", "NAPTR"): [
            d.Naptr(20, 10, "s", "MIHIS+M2U", "", "_mihis._udp.example.net"),
            d.Naptr(10, 10, "s", "MIHIS+M2T", "", "_mihis._tcp.example.net."),
            d.Naptr(5, 10, "s", "MIHES+M2T", "", "_mihes._tcp.example.net"),  # another service
            d.Naptr(1, 1, "s", "MIHIS+M2T", "!.*!x!", "_bad.example.net"),  # regexp must be empty
            d.Naptr(1, 1, "a", "MIHIS+M2T", "", "_bad2.example.net"),  # flags must be "s"
            d.Naptr(1, 1, "s", "MIHIS+M2S", "", "_sctp.example.net"),  # SCTP: not supported here
        ],
        ("_mihis._tcp.example.net", "SRV"): [
            d.Srv(20, 0, 4551, "backup.example.net"),
            d.Srv(10, 5, 4600, "mos1.example.net."),
        ],
        ("_mihis._udp.example.net", "SRV"): [d.Srv(10, 0, 4551, "mos1.example.net")],
        ("mos1.example.net", "AAAA"): [V6("2001:db8::1")],
        ("mos1.example.net", "A"): [V4("192.0.2.1")],
        ("backup.example.net", "A"): [V4("192.0.2.2")],
    }
    endpoints, asked = run(d.resolution("example.net"), answers)
    assert asked[:2] == ["NAPTR example.net", "SRV _mihis._tcp.example.net"]
    assert "SRV _bad.example.net" not in asked and "SRV _mihes._tcp.example.net" not in asked
    assert [(e.transport, e.host, e.port, str(e.address), e.via) for e in endpoints] == [
        ("tcp", "mos1.example.net", 4600, "2001:db8::1", "naptr"),
        ("tcp", "mos1.example.net", 4600, "192.0.2.1", "naptr"),
        ("tcp", "backup.example.net", 4551, "192.0.2.2", "naptr"),
        ("udp", "mos1.example.net", 4551, "2001:db8::1", "naptr"),
        ("udp", "mos1.example.net", 4551, "192.0.2.1", "naptr"),
    ]


def test_srv_fallback_without_naptr() -> None:
    answers: dict[tuple[str, str], Sequence[object]] = {
        ("example.org", "NAPTR"): [d.Naptr(10, 10, "s", "SIP+D2U", "", "_sip._udp.example.org")],
        ("_MIHIS._tcp.example.org", "SRV"): [d.Srv(0, 0, 4551, "mos.example.org"), d.Srv(0, 0, 0, ".")],
        ("mos.example.org", "A"): [V4("192.0.2.9")],
    }
    endpoints, asked = run(d.resolution("example.org", transports=("tcp",)), answers)
    assert asked == ["NAPTR example.org", "SRV _MIHIS._tcp.example.org", "AAAA mos.example.org", "A mos.example.org"]
    assert [(e.transport, e.port, str(e.address), e.via) for e in endpoints] == [("tcp", 4551, "192.0.2.9", "srv")]


def test_nothing_published_gives_nothing() -> None:
    assert run(d.resolution("nothing.example"), {})[0] == []
