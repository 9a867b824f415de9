"""Mobility options (RFC 6275 §6.2, RFC 5568 §6.4): Alternate CoA, MH link-layer address, MN identifier, BADF,
IPv6 address/prefix, unknown options kept as they came; their padding."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar, Final, NamedTuple, TypeAlias

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import Reader
from aaa_fmip.wire.icmpv6 import IPAddressPrefixCode, LinkLayerAddressCode
from aaa_fmip.wire.mh.codes import _MH_UNIT, MobileNodeIdentifierSubtype, MobilityOptionType
from aaa_fmip.wire.nd import check_uint

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


_PAD1: Final = int(MobilityOptionType.PAD1)
_BADF: Final = int(MobilityOptionType.BINDING_AUTHORIZATION_DATA_FOR_FMIPV6)


class _RawOption(NamedTuple):  # a tuple: one is made per option of every decoded FBU
    type: int
    offset: int  # absolute offset of the Type octet
    data_offset: int
    end: int


def _iter_options(data: bytes, start: int) -> Iterator[_RawOption]:
    """Walk the options of ``data[start:]``, padding included; the BADF must end the header."""
    pos, size = start, len(data)
    while pos < size:
        option_type = data[pos]
        if option_type == _PAD1:
            yield _RawOption(option_type, pos, pos + 1, pos + 1)
            pos += 1
            continue
        if pos + 2 > size:
            raise DecodeError("option Length missing", field="mh.option.length", offset=pos + 1)
        length = data[pos + 1]
        if option_type == _BADF:
            length += 4  # RFC 5568 §6.4.5: Option Length does not count the SPI
        end = pos + 2 + length
        if end > size:
            raise DecodeError(
                f"option of {end - pos} octets overruns the {size - pos} left",
                field="mh.option.length",
                offset=pos + 1,
            )
        if option_type == _BADF and end != size:
            raise DecodeError("the BADF option must be the last option (RFC 5568 §6.4.5)", field="mh.badf", offset=pos)
        yield _RawOption(option_type, pos, pos + 2, end)
        pos = end


_PADDING: Final = frozenset({int(MobilityOptionType.PAD1), int(MobilityOptionType.PADN)})


def _decode_options(data: bytes, start: int) -> tuple[MobilityOption, ...]:
    options: list[MobilityOption] = []
    for raw in _iter_options(data, start):
        kind = raw.type
        if kind in _PADDING:
            continue  # RFC 6275 §6.2.2-3: padding carries nothing
        body = data[raw.data_offset : raw.end]
        if kind == _BADF:
            options.append(BindingAuthorizationDataForFMIPv6(int.from_bytes(body[:4], "big"), body[4:]))
            continue
        codec = _OPTION_CODECS.get(kind)
        if codec is None:
            options.append(UnknownMobilityOption(MobilityOptionType(raw.type), body))
        else:
            options.append(codec.decode_data(body, offset=raw.data_offset))
    return tuple(options)
