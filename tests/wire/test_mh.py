"""Mobility Header messages: placement of options, BADF handling, checksums, errors."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire.mh import (
    BADF,
    FBU,
    HI,
    AlternateCareOfAddress,
    FBack,
    FBackStatus,
    HAck,
    HAckCode,
    MHIPv6AddressPrefix,
    MHLinkLayerAddress,
    MobilityOptionType,
    UnknownMobilityMessage,
    UnknownMobilityOption,
    badf_input,
    decode_mh,
    encode_mh,
)

PCOA = IPv6Address("2001:db8:1::100")
NCOA = IPv6Address("2001:db8:2::100")
PAR = IPv6Address("2001:db8:1::1")
MAC = bytes.fromhex("020000000001")


@pytest.mark.parametrize(("auth_length", "badf_at", "total"), [(12, 46, 64), (16, 42, 64)])
def test_fbu_layout_of_architecture_section_3(auth_length: int, badf_at: int, total: int) -> None:
    """Alternate CoA at 8n+6; BADF Type at 8n+6 (12-octet authenticator) or 8n+2 (16); SPI 4-aligned."""
    fbu = FBU(7, 10, (AlternateCareOfAddress(NCOA), MHLinkLayerAddress(2, MAC), BADF(1, bytes(auth_length))))
    data = encode_mh(fbu, source=PCOA, destination=PAR)
    assert len(data) == total and data[1] == total // 8 - 1
    assert data[14:16] == bytes((3, 16)) and data[16:32] == NCOA.packed  # 12: PadN(0), then 8n+6
    assert data[32:41] == bytes((7, 7, 2)) + MAC
    assert data[badf_at : badf_at + 2] == bytes((21, auth_length))  # Length counts the authenticator only
    assert (badf_at + 2) % 4 == 0
    assert data[badf_at + 2 : badf_at + 6] == (1).to_bytes(4, "big")
    assert badf_at + 6 + auth_length == len(data)


def test_badf_input_on_foreign_padding() -> None:
    """badf_input keeps another sender's padding octets as they are: only the authenticator goes."""
    fixed = bytes((59, 3, 8, 0, 0, 0, 0, 1, 0xC0, 0, 0, 1))
    body = fixed + bytes((1, 4)) + bytes(4) + bytes((21, 8)) + (9).to_bytes(4, "big") + b"A" * 8
    got = badf_input(body)
    assert (got.spi, got.authenticator, got.mh_data) == (9, b"A" * 8, body[:-8])
    assert decode_mh(body) == FBU(1, 1, (BADF(9, b"A" * 8),))


def test_badf_input_zeroes_the_checksum() -> None:
    data = encode_mh(FBack(0, 1, 2, (BADF(3, bytes(12)),)), source=PAR, destination=NCOA)
    assert data[4:6] != b"\0\0"
    assert badf_input(data).mh_data[4:6] == b"\0\0"


def test_checksum_uses_the_given_source() -> None:
    """The pseudo-header source is the PCoA (Home Address option) when one is used (RFC 6275 §6.1.1)."""
    fbu = FBU(1, 1, (BADF(1, bytes(12)),))
    data = encode_mh(fbu, source=PCOA, destination=PAR)
    assert decode_mh(data, source=PCOA, destination=PAR) == fbu
    with pytest.raises(DecodeError) as caught:
        decode_mh(data, source=NCOA, destination=PAR)
    assert (caught.value.field, caught.value.offset) == ("mh.checksum", 4)


def test_badf_must_be_last_when_encoding() -> None:
    with pytest.raises(ValueError, match="last"):
        encode_mh(FBU(1, 1, (BADF(1, bytes(12)), AlternateCareOfAddress(NCOA))), source=PCOA, destination=PAR)


def test_registries_and_unknowns() -> None:
    data = encode_mh(HAck(5, 131, (UnknownMobilityOption(99, b"xyz"),)), source=PAR, destination=PCOA)
    msg = decode_mh(data)
    assert isinstance(msg, HAck) and isinstance(msg.code, HAckCode) and msg.code.name == "UNKNOWN_131"
    option = msg.options[0]
    assert isinstance(option, UnknownMobilityOption) and isinstance(option.type, MobilityOptionType)
    fback = decode_mh(encode_mh(FBack(131, 1, 1), source=PAR, destination=NCOA))
    assert isinstance(fback, FBack) and fback.status is FBackStatus.INCORRECT_INTERFACE_IDENTIFIER_LENGTH
    unknown = UnknownMobilityMessage(7, bytes.fromhex("80") + bytes(9))  # a Binding Error
    raw = encode_mh(unknown, source=PAR, destination=PCOA)
    assert decode_mh(raw) == unknown and raw[6:] == unknown.data


def test_lifetime_units() -> None:
    assert FBU(1, 10).lifetime_seconds == 40
    assert FBack(0, 1, 15).lifetime_seconds == 60
    assert encode_mh(FBU(1, 10), source=PCOA, destination=PAR)[10:12] == (10).to_bytes(2, "big")


def test_flags() -> None:
    data = encode_mh(FBU(1, 1, a_flag=False, h_flag=True, l_flag=True, k_flag=True), source=PCOA, destination=PAR)
    assert data[8:10] == bytes((0x70, 0))
    data = encode_mh(HI(1, 1, s_flag=True, u_flag=False), source=PAR, destination=NCOA)
    assert data[8:10] == bytes((0x80, 1))
    data = encode_mh(FBack(0, 1, 1, k_flag=True), source=PAR, destination=NCOA)
    assert data[6:8] == bytes((0, 0x80))


def test_mh_ipv6_address_prefix_is_option_34() -> None:
    data = encode_mh(HAck(1, 0, (MHIPv6AddressPrefix(2, 128, NCOA),)), source=PAR, destination=PCOA)
    assert (data[12], data[13]) == (34, 18)  # at offset 12: 8n+4


def test_encoders_reject_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="8n\\+2"):
        encode_mh(UnknownMobilityMessage(0, b"\0"), source=PAR, destination=PCOA)
    with pytest.raises(ValueError, match="Sequence"):
        encode_mh(FBU(1 << 16, 1), source=PCOA, destination=PAR)
    with pytest.raises(ValueError, match="2048"):
        big = tuple(MHLinkLayerAddress(2, bytes(254)) for _ in range(9))
        encode_mh(FBU(1, 1, big), source=PCOA, destination=PAR)
    with pytest.raises(ValueError, match="both"):
        decode_mh(b"", destination=PAR)
