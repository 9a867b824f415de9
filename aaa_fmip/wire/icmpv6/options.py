"""Neighbor Discovery options: RFC 4861's link-layer address and prefix information, RFC 5568 §6.4's FMIPv6
options, RFC 5269's handover key request and reply, unknown options kept as they came."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar, Self, TypeAlias

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import Reader, zero_padding
from aaa_fmip.wire.icmpv6.codes import HandoverKeyAlgorithm, IPAddressPrefixCode, LinkLayerAddressCode, NAACKStatus
from aaa_fmip.wire.nd import ND_OPTION_UNIT, NDOptionType, check_uint, iter_nd_options, nd_option
from aaa_fmip.wire.send import (
    CGAOption,
    Nonce,
    RSASignature,
    Timestamp,
)


def _lla_field(address: bytes, fixed: int) -> bytes:
    """The address with the zero padding that fills an ND option of ``fixed`` other octets to 8n."""
    return address + zero_padding(fixed + len(address), ND_OPTION_UNIT)


_IEEE802_ADDRESS_LENGTH = 6  # RFC 2464 §6


def _lla_from_field(field: bytes, fixed: int) -> bytes:
    """Undo :func:`_lla_field` for the link layers we can recognise (module docstring)."""
    for length in (_IEEE802_ADDRESS_LENGTH, 0):
        if len(field) == len(_lla_field(bytes(length), fixed)) and not any(field[length:]):
            return field[:length]
    return field


@dataclass(frozen=True)
class _RfcLinkLayerAddress:
    """The RFC 4861 §4.6.1 link-layer address options: ``Type | Length | Link-Layer Address``."""

    option_type: ClassVar[int]

    address: bytes  # link-layer address: 6 octets on IEEE 802 links

    def encode(self) -> bytes:
        return nd_option(self.option_type, _lla_field(self.address, 2))

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> Self:
        return cls(_lla_from_field(body, 2))


@dataclass(frozen=True)
class SourceLinkLayerAddress(_RfcLinkLayerAddress):
    """Source Link-Layer Address option (ND 1, RFC 4861 §4.6.1)."""

    option_type: ClassVar[int] = NDOptionType.SOURCE_LINK_LAYER_ADDRESS


@dataclass(frozen=True)
class TargetLinkLayerAddress(_RfcLinkLayerAddress):
    """Target Link-Layer Address option (ND 2, RFC 4861 §4.6.1)."""

    option_type: ClassVar[int] = NDOptionType.TARGET_LINK_LAYER_ADDRESS


@dataclass(frozen=True)
class PrefixInformation:
    """Prefix Information option (ND 3, RFC 4861 §4.6.2), Length 4: ``Prefix Length | L A Reserved1 |
    Valid Lifetime(4) | Preferred Lifetime(4) | Reserved2(4) | Prefix(16)``. Lifetimes in seconds,
    0xffffffff meaning infinity."""

    option_type: ClassVar[int] = NDOptionType.PREFIX_INFORMATION

    prefix_length: int  # bits, 0..128
    prefix: IPv6Address
    valid_lifetime: int  # seconds
    preferred_lifetime: int  # seconds
    on_link: bool = True  # L
    autonomous: bool = True  # A: usable for SLAAC (RFC 4862 §5.5.3)

    def encode(self) -> bytes:
        check_uint("Prefix Length", self.prefix_length, 8)
        check_uint("Valid Lifetime", self.valid_lifetime, 32)
        check_uint("Preferred Lifetime", self.preferred_lifetime, 32)
        flags = self.on_link << 7 | self.autonomous << 6
        body = (
            bytes((self.prefix_length, flags))
            + self.valid_lifetime.to_bytes(4, "big")
            + self.preferred_lifetime.to_bytes(4, "big")
            + bytes(4)
            + self.prefix.packed
        )
        return nd_option(self.option_type, body)

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> PrefixInformation:
        if len(body) != 30:
            raise DecodeError(
                f"option must be 32 octets, got {len(body) + 2}",
                field="nd.prefix_information.length",
                offset=offset - 1,
            )
        r = Reader(body, base=offset)
        prefix_length = r.pull_u8("nd.prefix_information.prefix_length")
        flags = r.pull_u8("nd.prefix_information.flags")  # Reserved1 bits: ignored by the receiver
        valid = r.pull_u32("nd.prefix_information.valid_lifetime")
        preferred = r.pull_u32("nd.prefix_information.preferred_lifetime")
        r.pull_bytes(4, "nd.prefix_information.reserved2")
        prefix = r.pull_ipv6("nd.prefix_information.prefix")
        return cls(prefix_length, prefix, valid, preferred, bool(flags & 0x80), bool(flags & 0x40))


def _decode_address_prefix(body: bytes, offset: int, name: str) -> tuple[int, int, IPv6Address]:
    # Option-Code | Prefix Length | Reserved(4) | IPv6 Address(16); Length 3 (RFC 5568 §6.4.1)
    if len(body) != 22:
        raise DecodeError(
            f"option must be 24 octets, got {len(body) + 2}", field=f"nd.{name}.length", offset=offset - 1
        )
    r = Reader(body, base=offset)
    code = r.pull_u8(f"nd.{name}.option_code")
    prefix_length = r.pull_u8(f"nd.{name}.prefix_length")
    r.pull_bytes(4, f"nd.{name}.reserved")  # ignored by the receiver
    return code, prefix_length, r.pull_ipv6(f"nd.{name}.address")


def _encode_address_prefix(option_type: int, code: int, prefix_length: int, address: IPv6Address) -> bytes:
    check_uint("Option-Code", code, 8)
    check_uint("Prefix Length", prefix_length, 8)
    return nd_option(option_type, bytes((code, prefix_length)) + bytes(4) + address.packed)


@dataclass(frozen=True)
class IPAddressPrefix:
    """IP Address/Prefix option (ND 17, RFC 5568 §6.4.1): ``Option-Code | Prefix Length | Reserved(4) | Address``."""

    option_type: ClassVar[int] = NDOptionType.IP_ADDRESS_PREFIX

    option_code: int  # IPAddressPrefixCode
    prefix_length: int  # bits, 0..128
    address: IPv6Address

    def encode(self) -> bytes:
        return _encode_address_prefix(self.option_type, self.option_code, self.prefix_length, self.address)

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> IPAddressPrefix:
        code, prefix_length, address = _decode_address_prefix(body, offset, "ip_address_prefix")
        return cls(IPAddressPrefixCode(code), prefix_length, address)


@dataclass(frozen=True)
class NewRouterPrefix:
    """New Router Prefix Information option (ND 18, RFC 4068; named in RFC 5568 §6.1.2).

    Same layout as option 17: ``Option-Code | Prefix Length | Reserved(4) | Prefix``.
    """

    option_type: ClassVar[int] = NDOptionType.NEW_ROUTER_PREFIX_INFORMATION

    option_code: int  # 0 in RFC 4068
    prefix_length: int  # bits, 0..128
    prefix: IPv6Address

    def encode(self) -> bytes:
        return _encode_address_prefix(self.option_type, self.option_code, self.prefix_length, self.prefix)

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> NewRouterPrefix:
        return cls(*_decode_address_prefix(body, offset, "new_router_prefix"))


@dataclass(frozen=True)
class LinkLayerAddress:
    """Link-Layer Address option (ND 19, RFC 5568 §6.4.3): ``Option-Code | LLA | padding to 8n``."""

    option_type: ClassVar[int] = NDOptionType.LINK_LAYER_ADDRESS

    option_code: int  # LinkLayerAddressCode
    address: bytes  # link-layer address (6 octets on IEEE 802 links; empty with the wildcard code)

    def encode(self) -> bytes:
        check_uint("LLA Option-Code", self.option_code, 8)
        return nd_option(self.option_type, bytes((self.option_code,)) + _lla_field(self.address, 3))

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> LinkLayerAddress:
        r = Reader(body, base=offset)
        code = r.pull_u8("nd.link_layer_address.option_code")
        return cls(LinkLayerAddressCode(code), _lla_from_field(r.pull_rest(), 3))


@dataclass(frozen=True)
class NAACK:
    """Neighbor Advertisement Acknowledgment option (ND 20, RFC 5568 §6.4.6).

    ``Option-Code | Status | Reserved(4) [| NCoA(16)]``: Length 1, or 3 when an NCoA follows the Reserved field.
    """

    option_type: ClassVar[int] = NDOptionType.NEIGHBOR_ADVERTISEMENT_ACKNOWLEDGMENT

    status: int  # NAACKStatus
    new_coa: IPv6Address | None = None  # the supplied NCoA (with status 2)
    option_code: int = 0

    def encode(self) -> bytes:
        check_uint("NAACK Option-Code", self.option_code, 8)
        check_uint("NAACK Status", self.status, 8)
        tail = b"" if self.new_coa is None else self.new_coa.packed
        return nd_option(self.option_type, bytes((self.option_code, self.status)) + bytes(4) + tail)

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> NAACK:
        if len(body) not in (6, 22):
            raise DecodeError(
                f"NAACK must be 8 or 24 octets, got {len(body) + 2}", field="nd.naack.length", offset=offset - 1
            )
        r = Reader(body, base=offset)
        code = r.pull_u8("nd.naack.option_code")
        status = r.pull_u8("nd.naack.status")
        r.pull_bytes(4, "nd.naack.reserved")  # ignored by the receiver
        new_coa = r.pull_ipv6("nd.naack.new_coa") if r.remaining() else None
        return cls(NAACKStatus(status), new_coa, code)


def _pad_length_field(r: Reader, name: str, fixed_after: int) -> int:
    """Read ``Pad Length | AT/Reserved`` and check that the padding fits (RFC 5269 §4)."""
    start = r.offset
    pad_length = r.pull_u8(f"nd.{name}.pad_length")
    if pad_length + fixed_after + 1 > r.remaining():
        raise DecodeError(
            f"pad length {pad_length} exceeds the {r.remaining() - 1 - fixed_after} octets left",
            field=f"nd.{name}.pad_length",
            offset=start,
        )
    return pad_length


@dataclass(frozen=True)
class HandoverKeyRequest:
    """Handover Key Request option (ND 27, RFC 5269 §4.1).

    ``Pad Length | AT(4 bits) Reserved(4 bits) | Handover Key Encryption Public Key | Padding``.
    """

    option_type: ClassVar[int] = NDOptionType.HANDOVER_KEY_REQUEST

    algorithm_type: int  # AT, 4 bits: HandoverKeyAlgorithm
    public_key: bytes  # DER SubjectPublicKeyInfo, encoded like the CGA key

    def encode(self) -> bytes:
        check_uint("AT", self.algorithm_type, 4)
        pad = zero_padding(4 + len(self.public_key), ND_OPTION_UNIT)
        return nd_option(self.option_type, bytes((len(pad), self.algorithm_type << 4)) + self.public_key + pad)

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> HandoverKeyRequest:
        r = Reader(body, base=offset)
        pad_length = _pad_length_field(r, "handover_key_request", 0)
        at = r.pull_u8("nd.handover_key_request.at") >> 4  # low 4 bits reserved: ignored
        public_key = r.pull_bytes(r.remaining() - pad_length, "nd.handover_key_request.public_key")
        return cls(HandoverKeyAlgorithm(at), public_key)  # padding: ignored by the receiver


@dataclass(frozen=True)
class HandoverKeyReply:
    """Handover Key Reply option (ND 28, RFC 5269 §4.2).

    ``Pad Length | AT(4 bits) Reserved(4 bits) | Key Lifetime(2) | Encrypted Handover Key | Padding``.
    """

    option_type: ClassVar[int] = NDOptionType.HANDOVER_KEY_REPLY

    algorithm_type: int  # AT, 4 bits: HandoverKeyAlgorithm
    key_lifetime: int  # seconds (HK-LIFETIME, RFC 5269 §3.7)
    encrypted_key: bytes  # RSAES-PKCS1-v1_5 ciphertext, modulus-length octets

    def encode(self) -> bytes:
        check_uint("AT", self.algorithm_type, 4)
        check_uint("Key Lifetime", self.key_lifetime, 16)
        pad = zero_padding(6 + len(self.encrypted_key), ND_OPTION_UNIT)
        head = bytes((len(pad), self.algorithm_type << 4)) + self.key_lifetime.to_bytes(2, "big")
        return nd_option(self.option_type, head + self.encrypted_key + pad)

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> HandoverKeyReply:
        r = Reader(body, base=offset)
        pad_length = _pad_length_field(r, "handover_key_reply", 2)
        at = r.pull_u8("nd.handover_key_reply.at") >> 4  # low 4 bits reserved: ignored
        lifetime = r.pull_u16("nd.handover_key_reply.key_lifetime")
        encrypted = r.pull_bytes(r.remaining() - pad_length, "nd.handover_key_reply.encrypted_key")
        return cls(HandoverKeyAlgorithm(at), lifetime, encrypted)


@dataclass(frozen=True)
class UnknownNDOption:
    """Any ND option this module does not decode; ``data`` is every octet after Type and Length."""

    type: int
    data: bytes  # 8n+6 octets

    @property
    def option_type(self) -> int:
        return self.type

    def encode(self) -> bytes:
        return nd_option(self.type, self.data)


NDOption: TypeAlias = (
    SourceLinkLayerAddress
    | TargetLinkLayerAddress
    | PrefixInformation
    | IPAddressPrefix
    | NewRouterPrefix
    | LinkLayerAddress
    | NAACK
    | CGAOption
    | RSASignature
    | Timestamp
    | Nonce
    | HandoverKeyRequest
    | HandoverKeyReply
    | UnknownNDOption
)

_KNOWN_OPTIONS = (
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    PrefixInformation,
    IPAddressPrefix,
    NewRouterPrefix,
    LinkLayerAddress,
    NAACK,
    CGAOption,
    RSASignature,
    Timestamp,
    Nonce,
    HandoverKeyRequest,
    HandoverKeyReply,
)
_OPTION_CODECS = {cls.option_type: cls for cls in _KNOWN_OPTIONS}


def encode_nd_options(options: tuple[NDOption, ...] | list[NDOption]) -> bytes:
    """The options back to back (each is a multiple of 8 octets, so none needs alignment padding)."""
    return b"".join(option.encode() for option in options)


def decode_nd_options(data: bytes, *, base: int = 0) -> tuple[NDOption, ...]:
    """Decode a run of ND options; offsets in errors are ``base`` + position in ``data``."""
    return _decode_options(data, 0, base)


def _decode_options(data: bytes, start: int, base: int) -> tuple[NDOption, ...]:
    options: list[NDOption] = []
    for raw in iter_nd_options(data, start, base=base):
        codec = _OPTION_CODECS.get(raw.type)
        if codec is None:
            options.append(UnknownNDOption(NDOptionType(raw.type), raw.body))
        else:
            options.append(codec.decode_body(raw.body, offset=raw.offset + 2))
    return tuple(options)
