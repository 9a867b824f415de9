"""Mobility Header messages of FMIPv6 (RFC 5568 §6.2) and their mobility options (RFC 6275 §6.2, RFC 5568 §6.4).

Mobility Header (IPv6 Next Header 135, RFC 6275 §6.1.1)::

    Payload Proto (59) | Header Len (8-octet units after the first 8) | MH Type | Reserved | Checksum | Data

The Checksum covers the IPv6 pseudo-header with Next Header 135, source = the Home Address option's address
(the PCoA) when the packet has one, else the IPv6 source, and destination = the PAR (architecture §3).

Options are laid out by the encoder: Pad1/PadN before each option that has an alignment requirement and at
the end so the header is a multiple of 8 octets; the decoder strips padding. Alternate Care-of Address at
8n+6 (RFC 6275 §6.2.5), MH IPv6 Address/Prefix at 8n+4 (RFC 5568 §6.4.2), and the Binding Authorization
Data for FMIPv6 option (BADF) last, with its Type octet at 8n+6 for a 12-octet authenticator and 8n+2 for a
16-octet one, so the SPI is 4-octet aligned and the header ends with the authenticator (architecture §3).
The BADF Option Length counts the authenticator only, not the SPI (RFC 5568 §6.4.5).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar, TypeAlias

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import OpenIntEnum, Reader, internet_checksum, ipv6_pseudo_header
from aaa_fmip.wire.icmpv6 import IPAddressPrefixCode, LinkLayerAddressCode
from aaa_fmip.wire.nd import check_uint

__all__ = [
    "BADF",
    "FBU",
    "HI",
    "MH_NEXT_HEADER",
    "AlternateCareOfAddress",
    "BadfInput",
    "BindingAuthorizationDataForFMIPv6",
    "FBack",
    "FBackStatus",
    "HAck",
    "HAckCode",
    "HICode",
    "MHIPv6AddressPrefix",
    "MHLinkLayerAddress",
    "MHType",
    "MobileNodeIdentifier",
    "MobileNodeIdentifierSubtype",
    "MobilityMessage",
    "MobilityOption",
    "MobilityOptionType",
    "UnknownMobilityMessage",
    "UnknownMobilityOption",
    "badf_input",
    "decode_mh",
    "encode_mh",
]

MH_NEXT_HEADER = 135  # RFC 6275 §6.1.1; also the pseudo-header's Next Header (RFC 3775 said 2; RFC 6275 corrected it)
IPPROTO_NONE = 59  # RFC 6275 §6.1.1 Payload Proto
_MH_UNIT = 8
_MH_HEADER = 6  # Payload Proto | Header Len | MH Type | Reserved | Checksum


class MHType(OpenIntEnum):
    """Mobility Header Type (IANA "Mobility Header Types")."""

    BINDING_REFRESH_REQUEST = 0  # RFC 6275 §6.1.2
    HOME_TEST_INIT = 1
    CARE_OF_TEST_INIT = 2
    HOME_TEST = 3
    CARE_OF_TEST = 4
    BINDING_UPDATE = 5  # RFC 6275 §6.1.7
    BINDING_ACKNOWLEDGEMENT = 6  # RFC 6275 §6.1.8
    BINDING_ERROR = 7  # RFC 6275 §6.1.9
    FAST_BINDING_UPDATE = 8  # RFC 5568 §6.2.2
    FAST_BINDING_ACKNOWLEDGMENT = 9  # RFC 5568 §6.2.3
    FAST_NEIGHBOR_ADVERTISEMENT = 10  # RFC 4068, deprecated by RFC 5568
    HANDOVER_INITIATE = 14  # RFC 5568 §6.2.1.1
    HANDOVER_ACKNOWLEDGE = 15  # RFC 5568 §6.2.1.2


class MobilityOptionType(OpenIntEnum):
    """Mobility option types (IANA "Mobility Options")."""

    PAD1 = 0  # RFC 6275 §6.2.2
    PADN = 1  # RFC 6275 §6.2.3
    BINDING_REFRESH_ADVICE = 2  # RFC 6275 §6.2.4
    ALTERNATE_CARE_OF_ADDRESS = 3  # RFC 6275 §6.2.5
    NONCE_INDICES = 4  # RFC 6275 §6.2.6
    BINDING_AUTHORIZATION_DATA = 5  # RFC 6275 §6.2.7
    MH_LINK_LAYER_ADDRESS = 7  # RFC 5568 §6.4.4
    MOBILE_NODE_IDENTIFIER = 8  # RFC 4283 §3
    BINDING_AUTHORIZATION_DATA_FOR_FMIPV6 = 21  # RFC 5568 §6.4.5
    MH_IPV6_ADDRESS_PREFIX = 34  # RFC 5568 §11 (its §6.4.2 says 17: that is the ND option's number)


class FBackStatus(OpenIntEnum):
    """FBack Status (RFC 5568 §6.2.3): below 128 accepted, from 128 rejected."""

    ACCEPTED = 0
    ACCEPTED_NCOA_INVALID = 1  # use the NCoA in the Alternate Care-of Address option
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    INCORRECT_INTERFACE_IDENTIFIER_LENGTH = 131


class HICode(OpenIntEnum):
    """HI Code (RFC 5568 §6.2.1.1)."""

    FBU_FROM_PCOA = 0  # the PAR processed an FBU sent from the PCoA (predictive)
    FBU_NOT_FROM_PCOA = 1  # reactive


class HAckCode(OpenIntEnum):
    """HAck Code (RFC 5568 §6.2.1.2)."""

    ACCEPTED_NCOA_VALID = 0
    ACCEPTED_NCOA_NOT_VALID = 1
    ACCEPTED_NCOA_ASSIGNED = 2
    ACCEPTED_USE_PCOA = 3
    UNSOLICITED = 4
    NOT_ACCEPTED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130


class MobileNodeIdentifierSubtype(OpenIntEnum):
    """Mobile Node Identifier option subtype (RFC 4283 §3)."""

    NAI = 1  # Network Access Identifier, RFC 4282


# --- options ---------------------------------------------------------------------------------------------------


def _mh_option(option_type: int, data: bytes) -> bytes:
    if len(data) > 255:
        raise ValueError(f"mobility option {option_type}: {len(data)} octets of data exceed 255")
    check_uint("mobility option type", option_type, 8)
    return bytes((option_type, len(data))) + data


@dataclass(frozen=True)
class AlternateCareOfAddress:
    """Alternate Care-of Address option (MH 3, RFC 6275 §6.2.5): the NCoA in an FBU. Alignment 8n+6."""

    option_type: ClassVar[int] = MobilityOptionType.ALTERNATE_CARE_OF_ADDRESS
    alignment: ClassVar[tuple[int, int] | None] = (8, 6)

    address: IPv6Address

    def encode(self) -> bytes:
        return _mh_option(self.option_type, self.address.packed)

    @classmethod
    def decode_data(cls, data: bytes, *, offset: int) -> AlternateCareOfAddress:
        if len(data) != 16:
            raise DecodeError(f"length must be 16, got {len(data)}", field="mh.alternate_coa.length", offset=offset - 1)
        return cls(IPv6Address(data))


@dataclass(frozen=True)
class MHLinkLayerAddress:
    """Mobility Header Link-Layer Address option (MH 7, RFC 5568 §6.4.4): ``Option-Code | LLA``. No alignment."""

    option_type: ClassVar[int] = MobilityOptionType.MH_LINK_LAYER_ADDRESS
    alignment: ClassVar[tuple[int, int] | None] = None

    option_code: int  # LinkLayerAddressCode: 2 = the MN's link-layer address
    address: bytes  # link-layer address; the option Length is in octets, so there is no padding

    def encode(self) -> bytes:
        check_uint("MH-LLA Option-Code", self.option_code, 8)
        return _mh_option(self.option_type, bytes((self.option_code,)) + self.address)

    @classmethod
    def decode_data(cls, data: bytes, *, offset: int) -> MHLinkLayerAddress:
        r = Reader(data, base=offset)
        code = r.pull_u8("mh.link_layer_address.option_code")
        return cls(LinkLayerAddressCode(code), r.pull_rest())


@dataclass(frozen=True)
class MobileNodeIdentifier:
    """Mobile Node Identifier option (MH 8, RFC 4283 §3): ``Subtype | Identifier``."""

    option_type: ClassVar[int] = MobilityOptionType.MOBILE_NODE_IDENTIFIER
    alignment: ClassVar[tuple[int, int] | None] = None

    subtype: int  # MobileNodeIdentifierSubtype: 1 = NAI
    identifier: bytes

    def encode(self) -> bytes:
        check_uint("MN-ID Subtype", self.subtype, 8)
        return _mh_option(self.option_type, bytes((self.subtype,)) + self.identifier)

    @classmethod
    def decode_data(cls, data: bytes, *, offset: int) -> MobileNodeIdentifier:
        r = Reader(data, base=offset)
        subtype = r.pull_u8("mh.mobile_node_identifier.subtype")
        return cls(MobileNodeIdentifierSubtype(subtype), r.pull_rest())


@dataclass(frozen=True)
class BindingAuthorizationDataForFMIPv6:
    """BADF (MH 21, RFC 5568 §6.4.5): ``Type | Option Length | SPI(4) | Authenticator``; the last option.

    Option Length counts the Authenticator only. SPI 0 is reserved for RFC 5269 (SEND-based) keys.
    """

    option_type: ClassVar[int] = MobilityOptionType.BINDING_AUTHORIZATION_DATA_FOR_FMIPV6

    spi: int  # 32 bits
    authenticator: bytes  # 12 octets (HMAC-SHA1-96) or 16 (HMAC-SHA-256-128)

    @property
    def alignment(self) -> tuple[int, int]:
        # Type octet where the option ends on an 8-octet boundary: 8n+6 for 12 octets, 8n+2 for 16.
        return (8, -(6 + len(self.authenticator)) % 8)

    def encode(self) -> bytes:
        check_uint("BADF SPI", self.spi, 32)
        if len(self.authenticator) > 255:
            raise ValueError("BADF authenticator longer than 255 octets")
        head = bytes((self.option_type, len(self.authenticator)))
        return head + self.spi.to_bytes(4, "big") + self.authenticator


BADF = BindingAuthorizationDataForFMIPv6


@dataclass(frozen=True)
class MHIPv6AddressPrefix:
    """Mobility Header IPv6 Address/Prefix option (MH 34, RFC 5568 §6.4.2). Alignment 8n+4.

    ``Option-Code | Prefix Length | IPv6 Address/Prefix``, Length 18. RFC 5568 §6.4.2 prints Type 17, but its
    IANA section (§11) and every implementation use 34; 17 is the ND IP Address/Prefix option.
    """

    option_type: ClassVar[int] = MobilityOptionType.MH_IPV6_ADDRESS_PREFIX
    alignment: ClassVar[tuple[int, int] | None] = (8, 4)

    option_code: int  # IPAddressPrefixCode: 1 PCoA, 2 NCoA, 3 NAR address, 4 NAR prefix
    prefix_length: int  # bits, 0..128
    address: IPv6Address

    def encode(self) -> bytes:
        check_uint("Option-Code", self.option_code, 8)
        check_uint("Prefix Length", self.prefix_length, 8)
        return _mh_option(self.option_type, bytes((self.option_code, self.prefix_length)) + self.address.packed)

    @classmethod
    def decode_data(cls, data: bytes, *, offset: int) -> MHIPv6AddressPrefix:
        if len(data) != 18:
            raise DecodeError(
                f"length must be 18, got {len(data)}", field="mh.ipv6_address_prefix.length", offset=offset - 1
            )
        return cls(IPAddressPrefixCode(data[0]), data[1], IPv6Address(data[2:]))


@dataclass(frozen=True)
class UnknownMobilityOption:
    """Any mobility option this module does not decode; ``data`` is every octet after Type and Length."""

    alignment: ClassVar[tuple[int, int] | None] = None

    type: int
    data: bytes

    @property
    def option_type(self) -> int:
        return self.type

    def encode(self) -> bytes:
        return _mh_option(self.type, self.data)


MobilityOption: TypeAlias = (
    AlternateCareOfAddress
    | MHLinkLayerAddress
    | MobileNodeIdentifier
    | BindingAuthorizationDataForFMIPv6
    | MHIPv6AddressPrefix
    | UnknownMobilityOption
)

_OPTION_CODECS = {
    cls.option_type: cls
    for cls in (AlternateCareOfAddress, MHLinkLayerAddress, MobileNodeIdentifier, MHIPv6AddressPrefix)
}


def _padding(n: int) -> bytes:
    """Pad1 for one octet, PadN otherwise (RFC 6275 §6.2.2, §6.2.3)."""
    if n == 0:
        return b""
    if n == 1:
        return b"\x00"
    return bytes((MobilityOptionType.PADN, n - 2)) + bytes(n - 2)


def _encode_options(options: tuple[MobilityOption, ...], start: int) -> bytes:
    """Options laid out from MH offset ``start``, padded to the end of the header (module docstring)."""
    out = bytearray()
    for index, option in enumerate(options):
        if isinstance(option, BindingAuthorizationDataForFMIPv6) and index != len(options) - 1:
            raise ValueError("the BADF option must be the last mobility option (RFC 5568 §6.4.5)")
        if option.alignment is not None:
            x, y = option.alignment
            out += _padding((y - (start + len(out))) % x)
        out += option.encode()
    out += _padding(-(start + len(out)) % _MH_UNIT)
    return bytes(out)


@dataclass(frozen=True)
class _RawOption:
    type: int
    offset: int  # absolute offset of the Type octet
    data_offset: int
    end: int


def _iter_options(data: bytes, start: int) -> Iterator[_RawOption]:
    """Walk the options of ``data[start:]``, padding included; the BADF must end the header."""
    pos = start
    while pos < len(data):
        option_type = data[pos]
        if option_type == MobilityOptionType.PAD1:
            yield _RawOption(option_type, pos, pos + 1, pos + 1)
            pos += 1
            continue
        if pos + 2 > len(data):
            raise DecodeError("option Length missing", field="mh.option.length", offset=pos + 1)
        length = data[pos + 1]
        if option_type == MobilityOptionType.BINDING_AUTHORIZATION_DATA_FOR_FMIPV6:
            length += 4  # RFC 5568 §6.4.5: Option Length does not count the SPI
        end = pos + 2 + length
        if end > len(data):
            raise DecodeError(
                f"option of {end - pos} octets overruns the {len(data) - pos} left",
                field="mh.option.length",
                offset=pos + 1,
            )
        if option_type == MobilityOptionType.BINDING_AUTHORIZATION_DATA_FOR_FMIPV6 and end != len(data):
            raise DecodeError("the BADF option must be the last option (RFC 5568 §6.4.5)", field="mh.badf", offset=pos)
        yield _RawOption(option_type, pos, pos + 2, end)
        pos = end


def _decode_options(data: bytes, start: int) -> tuple[MobilityOption, ...]:
    options: list[MobilityOption] = []
    for raw in _iter_options(data, start):
        body = data[raw.data_offset : raw.end]
        if raw.type in (MobilityOptionType.PAD1, MobilityOptionType.PADN):
            continue  # RFC 6275 §6.2.2-3: padding carries nothing
        if raw.type == MobilityOptionType.BINDING_AUTHORIZATION_DATA_FOR_FMIPV6:
            options.append(BindingAuthorizationDataForFMIPv6(int.from_bytes(body[:4], "big"), body[4:]))
            continue
        codec = _OPTION_CODECS.get(raw.type)
        if codec is None:
            options.append(UnknownMobilityOption(MobilityOptionType(raw.type), body))
        else:
            options.append(codec.decode_data(body, offset=raw.data_offset))
    return tuple(options)


# --- messages --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FBU:
    """Fast Binding Update (MH 8, RFC 5568 §6.2.2): ``Sequence # | A H L K Reserved | Lifetime | options``."""

    mh_type: ClassVar[int] = MHType.FAST_BINDING_UPDATE

    sequence: int  # 16 bits, compared modulo 2^16 (RFC 6275 §9.5.1)
    lifetime: int  # units of 4 seconds on the wire (architecture §3; RFC 6275 §6.1.7)
    options: tuple[MobilityOption, ...] = ()
    a_flag: bool = True  # RFC 5568: MUST be 1 (request an FBack)
    h_flag: bool = True  # RFC 5568: MUST be 1
    l_flag: bool = False
    k_flag: bool = False

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * 4


@dataclass(frozen=True)
class FBack:
    """Fast Binding Acknowledgment (MH 9, RFC 5568 §6.2.3): ``Status | K Reserved | Sequence # | Lifetime``."""

    mh_type: ClassVar[int] = MHType.FAST_BINDING_ACKNOWLEDGMENT

    status: int  # FBackStatus
    sequence: int  # 16 bits, copied from the FBU
    lifetime: int  # units of 4 seconds on the wire (architecture §3; RFC 6275 §6.1.8)
    options: tuple[MobilityOption, ...] = ()
    k_flag: bool = False

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * 4


@dataclass(frozen=True)
class HI:
    """Handover Initiate (MH 14, RFC 5568 §6.2.1.1): ``Sequence # | S U Reserved | Code | options``."""

    mh_type: ClassVar[int] = MHType.HANDOVER_INITIATE

    sequence: int  # 16 bits
    code: int  # HICode
    options: tuple[MobilityOption, ...] = ()
    s_flag: bool = False  # request a NAR-assigned NCoA
    u_flag: bool = False  # buffer packets for the MN


@dataclass(frozen=True)
class HAck:
    """Handover Acknowledge (MH 15, RFC 5568 §6.2.1.2): ``Sequence # | Reserved | Code | options``."""

    mh_type: ClassVar[int] = MHType.HANDOVER_ACKNOWLEDGE

    sequence: int  # 16 bits, copied from the HI
    code: int  # HAckCode
    options: tuple[MobilityOption, ...] = ()


@dataclass(frozen=True)
class UnknownMobilityMessage:
    """Any other MH type; ``data`` is every octet after the Checksum (8n+2 octets, padding included)."""

    mh_type: int
    data: bytes


MobilityMessage: TypeAlias = FBU | FBack | HI | HAck | UnknownMobilityMessage

# Octets before the first option, header included, per MH type (RFC 5568 §6.2).
_FIXED_LENGTH = {
    MHType.FAST_BINDING_UPDATE: 12,
    MHType.FAST_BINDING_ACKNOWLEDGMENT: 12,
    MHType.HANDOVER_INITIATE: 10,
    MHType.HANDOVER_ACKNOWLEDGE: 10,
}


def _message_data(msg: MobilityMessage) -> tuple[int, bytes]:
    """(MH Type, octets after the Checksum)."""
    if isinstance(msg, UnknownMobilityMessage):
        check_uint("MH Type", msg.mh_type, 8)
        if (_MH_HEADER + len(msg.data)) % _MH_UNIT or not msg.data:
            raise ValueError("an unknown MH message's data must be 8n+2 octets (RFC 6275 §6.1.1)")
        return msg.mh_type, msg.data
    check_uint("Sequence #", msg.sequence, 16)
    if isinstance(msg, FBU):
        check_uint("Lifetime", msg.lifetime, 16)
        flags = msg.a_flag << 15 | msg.h_flag << 14 | msg.l_flag << 13 | msg.k_flag << 12
        fixed = msg.sequence.to_bytes(2, "big") + flags.to_bytes(2, "big") + msg.lifetime.to_bytes(2, "big")
    elif isinstance(msg, FBack):
        check_uint("Status", msg.status, 8)
        check_uint("Lifetime", msg.lifetime, 16)
        fixed = bytes((msg.status, msg.k_flag << 7)) + msg.sequence.to_bytes(2, "big") + msg.lifetime.to_bytes(2, "big")
    elif isinstance(msg, HI):
        check_uint("Code", msg.code, 8)
        fixed = msg.sequence.to_bytes(2, "big") + bytes((msg.s_flag << 7 | msg.u_flag << 6, msg.code))
    else:
        check_uint("Code", msg.code, 8)
        fixed = msg.sequence.to_bytes(2, "big") + bytes((0, msg.code))
    return msg.mh_type, fixed + _encode_options(msg.options, _MH_HEADER + len(fixed))


def _checksum(mh: bytes, source: IPv6Address, destination: IPv6Address) -> int:
    return internet_checksum(ipv6_pseudo_header(source, destination, len(mh), MH_NEXT_HEADER) + mh)


def encode_mh(msg: MobilityMessage, *, source: IPv6Address, destination: IPv6Address) -> bytes:
    """The Mobility Header with its Checksum; ``source`` is the PCoA when the packet carries a Home Address option."""
    mh_type, data = _message_data(msg)
    total = _MH_HEADER + len(data)
    if total > 256 * _MH_UNIT:
        raise ValueError(f"Mobility Header of {total} octets exceeds the 2048 Header Len can express")
    mh = bytes((IPPROTO_NONE, total // _MH_UNIT - 1, mh_type, 0, 0, 0)) + data
    return mh[:4] + _checksum(mh, source, destination).to_bytes(2, "big") + mh[6:]


def _header(data: bytes) -> tuple[int, int]:
    """Check the fixed header; (MH Type, octets before the first option or -1 for unknown types)."""
    r = Reader(data)
    payload_proto = r.pull_u8("mh.payload_proto")
    header_len = r.pull_u8("mh.header_len")
    mh_type = r.pull_u8("mh.type")
    r.pull_u8("mh.reserved")  # RFC 6275 §6.1.1: ignored by the receiver
    r.pull_u16("mh.checksum")
    if payload_proto != IPPROTO_NONE:
        # RFC 6275 §9.2: MUST discard unless IPPROTO_NONE
        raise DecodeError(f"Payload Proto must be 59, got {payload_proto}", field="mh.payload_proto", offset=0)
    if (header_len + 1) * _MH_UNIT != len(data):
        raise DecodeError(
            f"Header Len {header_len} means {(header_len + 1) * _MH_UNIT} octets, got {len(data)}",
            field="mh.header_len",
            offset=1,
        )
    fixed = _FIXED_LENGTH.get(MHType(mh_type), -1)
    if fixed > len(data):
        # RFC 6275 §9.2: Header Len below the message's minimum
        raise DecodeError(f"MH Type {mh_type} needs {fixed} octets, got {len(data)}", field="mh.header_len", offset=1)
    return mh_type, fixed


def decode_mh(
    data: bytes, *, source: IPv6Address | None = None, destination: IPv6Address | None = None
) -> MobilityMessage:
    """Decode one Mobility Header; with both addresses the Checksum is verified first (field ``mh.checksum``).

    ``source`` is the Home Address option's address (the PCoA) when the packet has one. Raises only
    DecodeError for malformed input.
    """
    if (source is None) != (destination is None):
        raise ValueError("give both source and destination to verify the checksum, or neither")
    mh_type, fixed = _header(data)
    if source is not None and destination is not None and _checksum(data, source, destination) != 0:
        raise DecodeError("checksum does not match the IPv6 pseudo-header and header", field="mh.checksum", offset=4)
    if fixed < 0:
        return UnknownMobilityMessage(MHType(mh_type), data[_MH_HEADER:])
    options = _decode_options(data, fixed)
    sequence_at = 8 if mh_type == MHType.FAST_BINDING_ACKNOWLEDGMENT else 6
    sequence = int.from_bytes(data[sequence_at : sequence_at + 2], "big")
    if mh_type == MHType.FAST_BINDING_UPDATE:
        flags = data[8]
        lifetime = int.from_bytes(data[10:12], "big")
        return FBU(
            sequence, lifetime, options, bool(flags & 0x80), bool(flags & 0x40), bool(flags & 0x20), bool(flags & 0x10)
        )
    if mh_type == MHType.FAST_BINDING_ACKNOWLEDGMENT:
        lifetime = int.from_bytes(data[10:12], "big")
        return FBack(FBackStatus(data[6]), sequence, lifetime, options, bool(data[7] & 0x80))
    if mh_type == MHType.HANDOVER_INITIATE:
        return HI(sequence, HICode(data[9]), options, bool(data[8] & 0x80), bool(data[8] & 0x40))
    return HAck(sequence, HAckCode(data[9]), options)


@dataclass(frozen=True)
class BadfInput:
    """What the BADF authenticator covers and carries, cut from the raw Mobility Header (RFC 5568 §6.4.5)."""

    mh_data: bytes  # the MH with Checksum 0 and only the authenticator octets removed (RFC 6275 §6.2.7)
    spi: int
    authenticator: bytes


def badf_input(mh: bytes) -> BadfInput:
    """Split a raw FBU/FBack/HI/HAck into the authenticated data, the SPI and the authenticator.

    Works on the octets as received, so another implementation's padding is covered as sent. Raises
    DecodeError if the header is malformed, its type carries no options we can locate, it has no BADF, or the
    BADF is not the last option.
    """
    mh_type, fixed = _header(mh)
    if fixed < 0:
        raise DecodeError(f"MH Type {mh_type} carries no BADF option", field="mh.type", offset=2)
    for raw in _iter_options(mh, fixed):
        if raw.type == MobilityOptionType.BINDING_AUTHORIZATION_DATA_FOR_FMIPV6:
            auth_start = raw.data_offset + 4
            spi = int.from_bytes(mh[raw.data_offset : auth_start], "big")
            return BadfInput(mh[:4] + b"\x00\x00" + mh[6:auth_start], spi, mh[auth_start:])
    raise DecodeError("no BADF option (RFC 5568 §6.4.5: MUST be present)", field="mh.badf", offset=len(mh))


def badf_input_of(mh: bytes, message: MobilityMessage) -> BadfInput:
    """:func:`badf_input` for a message already decoded from ``mh`` by :func:`decode_mh`: no second parse.

    The decoder has already checked that a BADF option ends the header (RFC 5568 §6.4.5), so the authenticated
    data is ``mh`` up to the authenticator octets, with the Checksum zeroed (RFC 6275 §6.2.7)."""
    options = getattr(message, "options", ())
    last = options[-1] if options else None
    if not isinstance(last, BindingAuthorizationDataForFMIPv6):
        raise DecodeError("no BADF option (RFC 5568 §6.4.5: MUST be present)", field="mh.badf", offset=len(mh))
    auth_start = len(mh) - len(last.authenticator)
    return BadfInput(mh[:4] + b"\x00\x00" + mh[6:auth_start], last.spi, mh[auth_start:])
