"""ICMPv6 FMIPv6 messages and ND options: the behaviours the vector table does not pin down."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire.icmpv6 import (
    NAACK,
    HandoverKeyAlgorithm,
    HandoverKeyReply,
    HandoverKeyRequest,
    LinkLayerAddress,
    LinkLayerAddressCode,
    NDOptionType,
    PrRtAdv,
    PrRtAdvCode,
    RtSolPr,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    UnknownIcmpv6Message,
    UnknownNDOption,
    decode_icmpv6,
    decode_nd_options,
    encode_icmpv6,
)

MN = IPv6Address("fe80::3c4a:5bf6:ffb4:ca6c")
AR = IPv6Address("fe80::1")
MAC = bytes.fromhex("020000000001")


@pytest.mark.parametrize(
    ("option", "octets"),
    [
        (SourceLinkLayerAddress(MAC), "0101" + MAC.hex()),
        (TargetLinkLayerAddress(MAC), "0201" + MAC.hex()),
        (LinkLayerAddress(1, MAC), "130201" + MAC.hex() + "00" * 7),
        (LinkLayerAddress(0, b""), "130100" + "00" * 5),
    ],
)
def test_link_layer_address_padding(option: object, octets: str) -> None:
    encoded = option.encode()  # type: ignore[attr-defined]
    assert encoded.hex() == octets
    assert decode_nd_options(encoded) == (option,)


def test_link_layer_address_other_lengths() -> None:
    """An address the decoder cannot recognise keeps every octet of the field, padding included."""
    eui64 = bytes.fromhex("0211223344556677")
    encoded = SourceLinkLayerAddress(eui64).encode()
    assert encoded.hex() == "0102" + eui64.hex() + "00" * 6
    assert decode_nd_options(encoded) == (SourceLinkLayerAddress(eui64 + bytes(6)),)
    # an all-zero 48-bit address is still an address (not the empty wildcard)
    assert decode_nd_options(SourceLinkLayerAddress(bytes(6)).encode()) == (SourceLinkLayerAddress(bytes(6)),)


def test_handover_key_options_padding() -> None:
    """RFC 5269 §4: Pad Length counts the zero octets after the key; an RSA-2048 SPKI (294 octets) needs 6."""
    request = HandoverKeyRequest(HandoverKeyAlgorithm.HMAC_SHA1_96, bytes(294))
    encoded = request.encode()
    assert (encoded[0], encoded[1], encoded[2], encoded[3]) == (27, 38, 6, 0x10)
    assert len(encoded) == 304 and encoded[-6:] == bytes(6)
    reply = HandoverKeyReply(HandoverKeyAlgorithm.HMAC_SHA256_128, 43200, bytes(range(256)))
    encoded = reply.encode()
    assert (encoded[1], encoded[2], encoded[3]) == (33, 2, 0x20)
    assert encoded[4:6] == (43200).to_bytes(2, "big")
    assert decode_nd_options(encoded) == (reply,)


def test_registries_keep_unknown_values() -> None:
    assert PrRtAdvCode(9) == 9 and PrRtAdvCode(9).name == "UNKNOWN_9"
    assert PrRtAdvCode(1) is PrRtAdvCode.UNSOLICITED_HANDOVER_TRIGGER
    msg = decode_icmpv6(encode_icmpv6(PrRtAdv(77, 1, ()), source=AR, destination=MN))
    assert isinstance(msg, PrRtAdv) and msg.code == 77 and isinstance(msg.code, PrRtAdvCode)
    option = decode_nd_options(LinkLayerAddress(200, MAC).encode())[0]
    assert isinstance(option, LinkLayerAddress) and isinstance(option.option_code, LinkLayerAddressCode)
    unknown = decode_nd_options(UnknownNDOption(99, bytes(6)).encode())[0]
    assert isinstance(unknown, UnknownNDOption) and unknown.type == 99 and isinstance(unknown.type, NDOptionType)


def test_unknown_messages_round_trip_octet_for_octet() -> None:
    for data in (
        bytes.fromhex("8000") + b"\0\0" + bytes.fromhex("0001000268656c6c6f"),  # Echo Request
        bytes.fromhex("9a00") + b"\0\0" + bytes.fromhex("05000001"),  # RFC 5268 ICMPv6 HAck
        bytes.fromhex("8500") + b"\0\0" + bytes(4) + bytes.fromhex("0101020000000001"),  # RS with an option
    ):
        msg = decode_icmpv6(data)
        assert isinstance(msg, UnknownIcmpv6Message)
        again = encode_icmpv6(msg, source=MN, destination=AR)
        assert again[:2] + again[4:] == data[:2] + data[4:]
        assert decode_icmpv6(again, source=MN, destination=AR) == msg


def test_unknown_nd_option_round_trips_octet_for_octet() -> None:
    raw = bytes.fromhex("fa02") + bytes(range(14))
    msg = RtSolPr(5, decode_nd_options(raw))
    assert encode_icmpv6(msg, source=MN, destination=AR)[8:] == raw


def test_naack_length_follows_the_ncoa() -> None:
    assert NAACK(1).encode().hex() == "1401000100000000"
    ncoa = IPv6Address("2001:db8::1")
    assert NAACK(2, ncoa).encode().hex() == "1403000200000000" + ncoa.packed.hex()


def test_checksum_verification() -> None:
    data = encode_icmpv6(RtSolPr(1, (LinkLayerAddress(0, b""),)), source=MN, destination=AR)
    assert decode_icmpv6(data, source=MN, destination=AR) == RtSolPr(1, (LinkLayerAddress(0, b""),))
    with pytest.raises(DecodeError) as caught:
        decode_icmpv6(data, source=IPv6Address("fe80::2"), destination=AR)  # another pseudo-header
    assert (caught.value.field, caught.value.offset) == ("icmpv6.checksum", 2)
    assert "icmpv6.checksum at offset 2" in str(caught.value)


def test_every_truncation_of_every_vector_fails_the_checksum() -> None:
    """With addresses given, a cut message never decodes (deterministic over the vector table)."""
    from tests.wire._vectors import load, wire

    for vector in load("wire-icmpv6.json")["vectors"]:
        src, dst = IPv6Address(vector["ipv6_source"]), IPv6Address(vector["ipv6_destination"])
        data = wire(vector)
        for cut in range(len(data)):
            with pytest.raises(DecodeError):
                decode_icmpv6(data[:cut], source=src, destination=dst)


def test_decode_errors_name_field_and_offset() -> None:
    # second option's Length octet is zero: at offset 8 + 8 + 1
    data = bytes((154, 0, 0, 0, 2, 0, 0, 1)) + LinkLayerAddress(0, b"").encode() + bytes((19, 0)) + bytes(6)
    with pytest.raises(DecodeError) as caught:
        decode_icmpv6(data)
    assert (caught.value.field, caught.value.offset) == ("nd.option.length", 17)


def test_half_the_addresses_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="both"):
        decode_icmpv6(b"", source=MN)


def test_encoders_reject_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="Identifier"):
        encode_icmpv6(RtSolPr(1 << 16), source=MN, destination=AR)
    with pytest.raises(ValueError, match="AT"):
        HandoverKeyRequest(16, b"").encode()
    with pytest.raises(ValueError, match="Key Lifetime"):
        HandoverKeyReply(1, 1 << 16, b"").encode()
    with pytest.raises(ValueError, match="Option-Code"):
        LinkLayerAddress(256, MAC).encode()


# --- RS, RA, NA and the Prefix Information option (RFC 4861 §4.1, §4.2, §4.4, §4.6.2) -------------------------


def test_router_advertisement_with_pio_and_naack_bytes() -> None:
    """The NAR's answer to a UNA (RFC 5568 §6.3): octets laid out by hand from RFC 4861 §4.2, §4.6.2 and RFC
    5568 §6.4.6, the NAACK's NCoA at octet 8 of the option (architecture.md §9)."""
    from aaa_fmip.wire.icmpv6 import (
        NAACK,
        NAACKStatus,
        PrefixInformation,
        RouterAdvertisement,
        decode_nd_message,
        encode_nd_message,
    )

    ncoa = IPv6Address("2001:db8:2:100::ff:fe00:1")
    ra = RouterAdvertisement(
        1800,
        (
            PrefixInformation(64, IPv6Address("2001:db8:2:100::"), 86400, 14400),
            NAACK(NAACKStatus.NCOA_INVALID_USE_SUPPLIED, ncoa),
        ),
        cur_hop_limit=64,
    )
    expected = (
        bytes.fromhex("8600")  # Type 134, Code 0
        + bytes(2)  # Checksum (below)
        + bytes.fromhex("40 00 0708 00000000 00000000")  # Cur Hop Limit 64, M=O=0, Router Lifetime 1800, timers 0
        + bytes.fromhex("03 04 40 c0 00015180 00003840 00000000")  # PIO: /64, L A, 86400 s, 14400 s, Reserved2
        + IPv6Address("2001:db8:2:100::").packed
        + bytes.fromhex("14 03 00 02 00000000")  # NAACK: Type 20, Length 3, Option-Code 0, Status 2, Reserved
        + ncoa.packed  # octet 8 of the option
    )
    source, destination = IPv6Address("fe80::1"), IPv6Address("ff02::1")
    data = encode_nd_message(ra, source=source, destination=destination)
    assert data[:2] + data[4:] == expected[:2] + expected[4:]
    assert decode_nd_message(data, source=source, destination=destination) == ra  # checksum verified
    with pytest.raises(DecodeError) as err:
        decode_nd_message(data[:2] + bytes(((data[2] + 1) % 256,)) + data[3:], source=source, destination=destination)
    assert err.value.field == "icmpv6.checksum"


def test_una_and_rs_bytes() -> None:
    from aaa_fmip.wire.icmpv6 import (
        NeighborAdvertisement,
        RouterSolicitation,
        SourceLinkLayerAddress,
        TargetLinkLayerAddress,
        decode_nd_message,
    )

    target = IPv6Address("2001:db8:2::1:0:0:1")
    mac = bytes.fromhex("020000000001")
    una = bytes.fromhex("8800 0000 00000000") + target.packed + bytes.fromhex("0201") + mac  # R=S=O=0, TLLA
    assert decode_nd_message(una) == NeighborAdvertisement(target, (TargetLinkLayerAddress(mac),))
    flagged = decode_nd_message(una[:4] + b"\xe0" + una[5:])
    assert isinstance(flagged, NeighborAdvertisement) and flagged.router and flagged.solicited and flagged.override
    rs = bytes.fromhex("8500 0000 00000000 0101") + mac
    assert decode_nd_message(rs) == RouterSolicitation((SourceLinkLayerAddress(mac),))
    with pytest.raises(DecodeError) as err:
        decode_nd_message(bytes.fromhex("8501 0000 00000000"))  # RFC 4861 §6.1.1: Code must be 0
    assert err.value.field == "icmpv6.code"
    with pytest.raises(DecodeError) as err:
        decode_nd_message(bytes.fromhex("8600 0000 4000 0708") + bytes(8) + bytes.fromhex("0303") + bytes(22))
    assert err.value.field == "nd.prefix_information.length"
    # decode_icmpv6 still keeps an RS as an unknown message (SEND and FMIPv6 callers rely on that)
    assert isinstance(decode_icmpv6(rs), UnknownIcmpv6Message)
