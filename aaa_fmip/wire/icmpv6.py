"""ICMPv6 FMIPv6 messages (RFC 5568 §6.1) and the ND options they carry (RFC 5568 §6.4, RFC 5269 §4, RFC 3971 §5);
the three Neighbor Discovery messages a NAR on point-to-point links meets (RS, RA, NA: RFC 4861 §4; RFC 5568
§6.3 for the UNA and the RA with NAACK), with their own ``encode_nd_message`` / ``decode_nd_message``.

``encode_icmpv6`` computes the Checksum over the IPv6 pseudo-header (RFC 4443 §2.3, Next Header 58);
``decode_icmpv6`` verifies it when it is given both addresses. Lengths and padding are computed by the
encoders and checked by the decoders, never stored. ICMPv6 messages other than RtSolPr and PrRtAdv decode to
:class:`UnknownIcmpv6Message`, ND options this module does not know to :class:`UnknownNDOption`; both
re-encode octet for octet.

Link-layer addresses (ND options 1, 2, 19) carry no length of their own: the link layer defines it
(RFC 4861 §4.6.1, RFC 5568 §6.4.3). The encoder pads with zero octets; the decoder takes an IEEE 802 48-bit
address (RFC 2464 §6) when the octets after the sixth are zero padding, an empty address when the field is
all zero and shorter than that, and otherwise the whole field.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar, TypeAlias

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import OpenIntEnum, Reader, internet_checksum, ipv6_pseudo_header, zero_padding
from aaa_fmip.wire.nd import ND_OPTION_UNIT, NDOptionType, check_uint, iter_nd_options, nd_option
from aaa_fmip.wire.send import (
    ICMPV6_NEXT_HEADER,
    CGAOption,
    Nonce,
    RSASignature,
    Timestamp,
)

__all__ = [
    "ICMPV6_NEXT_HEADER",
    "NAACK",
    "CGAOption",
    "FmipSubtype",
    "HandoverKeyAlgorithm",
    "HandoverKeyReply",
    "HandoverKeyRequest",
    "IPAddressPrefix",
    "IPAddressPrefixCode",
    "Icmpv6Message",
    "Icmpv6Type",
    "LinkLayerAddress",
    "LinkLayerAddressCode",
    "NAACKStatus",
    "NDMessage",
    "NDOption",
    "NDOptionType",
    "NeighborAdvertisement",
    "NewRouterPrefix",
    "Nonce",
    "PrRtAdv",
    "PrRtAdvCode",
    "PrefixInformation",
    "RSASignature",
    "RouterAdvertisement",
    "RouterSolicitation",
    "RtSolPr",
    "SourceLinkLayerAddress",
    "TargetLinkLayerAddress",
    "Timestamp",
    "UnknownIcmpv6Message",
    "UnknownNDOption",
    "decode_icmpv6",
    "decode_nd_message",
    "decode_nd_options",
    "encode_icmpv6",
    "encode_nd_message",
    "encode_nd_options",
]


class Icmpv6Type(OpenIntEnum):
    """ICMPv6 types this project meets (IANA "ICMPv6 Type Numbers")."""

    ROUTER_SOLICITATION = 133  # RFC 4861 §4.1
    ROUTER_ADVERTISEMENT = 134  # RFC 4861 §4.2
    NEIGHBOR_SOLICITATION = 135  # RFC 4861 §4.3
    NEIGHBOR_ADVERTISEMENT = 136  # RFC 4861 §4.4
    REDIRECT = 137  # RFC 4861 §4.5
    CERTIFICATION_PATH_SOLICITATION = 148  # RFC 3971 §6.4.1
    CERTIFICATION_PATH_ADVERTISEMENT = 149  # RFC 3971 §6.4.2
    FMIPV6 = 154  # RFC 5568 §6.1


class FmipSubtype(OpenIntEnum):
    """Subtype of ICMPv6 type 154 (RFC 5568 §6.1, §11)."""

    RTSOLPR = 2  # RFC 5568 §6.1.1
    PRRTADV = 3  # RFC 5568 §6.1.2
    HI = 4  # RFC 5268 only; RFC 5568 moved HI to the Mobility Header
    HACK = 5  # RFC 5268 only; RFC 5568 moved HAck to the Mobility Header


class PrRtAdvCode(OpenIntEnum):
    """PrRtAdv Code (RFC 5568 §6.1.2)."""

    NEW_ROUTER_INFO = 0  # [AP-ID, AR-Info] tuples for movement detection and NCoA formation
    UNSOLICITED_HANDOVER_TRIGGER = 1  # network-initiated handover: send an FBU now
    NO_NEW_ROUTER_INFO = 2  # outcome per AP in each New Access Point LLA option's Option-Code
    PARTIAL_NEW_ROUTER_INFO = 3  # information for a subset of the requested APs
    UNSOLICITED_NEIGHBORHOOD_INFO = 4  # unsolicited, not a handover trigger
    USE_DHCP = 5  # use DHCP on the NAR link; forwarding to the PCoA only


class LinkLayerAddressCode(OpenIntEnum):
    """Option-Code of the LLA option (ND 19, RFC 5568 §6.4.3) and of the MH-LLA option (MH 7, §6.4.4)."""

    WILDCARD = 0  # all nearby access points
    NEW_ACCESS_POINT = 1
    MOBILE_NODE = 2
    NEW_ACCESS_ROUTER = 3  # the proxied originator
    SENDER = 4  # source of the RtSolPr or PrRtAdv
    SAME_ROUTER_INTERFACE = 5  # that AP is on the current router interface: no CoA change
    NO_PREFIX_INFO = 6
    NO_FAST_HANDOVER_SUPPORT = 7


class IPAddressPrefixCode(OpenIntEnum):
    """Option-Code of the IP Address/Prefix options (ND 17, RFC 5568 §6.4.1; MH 34, §6.4.2)."""

    OLD_CARE_OF_ADDRESS = 1
    NEW_CARE_OF_ADDRESS = 2
    NEW_ACCESS_ROUTER_ADDRESS = 3
    NEW_ACCESS_ROUTER_PREFIX = 4


class NAACKStatus(OpenIntEnum):
    """NAACK Status (RFC 5568 §6.4.6)."""

    NCOA_INVALID_CONFIGURE = 1  # perform address configuration
    NCOA_INVALID_USE_SUPPLIED = 2  # use the NCoA supplied in the option
    NCOA_INVALID_USE_NAR_ADDRESS = 3  # use the NAR's IP address as NCoA in the FBU
    PCOA_SUPPLIED = 4  # do not send an FBU
    LINK_LAYER_ADDRESS_UNRECOGNIZED = 128


class HandoverKeyAlgorithm(OpenIntEnum):
    """AT field of ND options 27/28 (RFC 5269 §4). No RFC assigns values: these are architecture.md §3's."""

    HMAC_SHA1_96 = 1  # RFC 5568 §6.4.5 default authenticator
    HMAC_SHA256_128 = 2


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
class SourceLinkLayerAddress:
    """Source Link-Layer Address option (ND 1, RFC 4861 §4.6.1)."""

    option_type: ClassVar[int] = NDOptionType.SOURCE_LINK_LAYER_ADDRESS

    address: bytes  # link-layer address: 6 octets on IEEE 802 links

    def encode(self) -> bytes:
        return nd_option(self.option_type, _lla_field(self.address, 2))

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> SourceLinkLayerAddress:
        return cls(_lla_from_field(body, 2))


@dataclass(frozen=True)
class TargetLinkLayerAddress:
    """Target Link-Layer Address option (ND 2, RFC 4861 §4.6.1)."""

    option_type: ClassVar[int] = NDOptionType.TARGET_LINK_LAYER_ADDRESS

    address: bytes  # link-layer address: 6 octets on IEEE 802 links

    def encode(self) -> bytes:
        return nd_option(self.option_type, _lla_field(self.address, 2))

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> TargetLinkLayerAddress:
        return cls(_lla_from_field(body, 2))


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


# --- messages -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtSolPr:
    """Router Solicitation for Proxy Advertisement (ICMPv6 154, Subtype 2, Code 0; RFC 5568 §6.1.1)."""

    identifier: int  # 16 bits, echoed in the PrRtAdv
    options: tuple[NDOption, ...] = ()


@dataclass(frozen=True)
class PrRtAdv:
    """Proxy Router Advertisement (ICMPv6 154, Subtype 3; RFC 5568 §6.1.2)."""

    code: int  # PrRtAdvCode, 0..5 defined
    identifier: int  # 16 bits, copied from the RtSolPr, 0 when unsolicited
    options: tuple[NDOption, ...] = ()


@dataclass(frozen=True)
class UnknownIcmpv6Message:
    """Any other ICMPv6 message; ``body`` is every octet after the Checksum."""

    type: int
    code: int
    body: bytes


Icmpv6Message: TypeAlias = RtSolPr | PrRtAdv | UnknownIcmpv6Message


@dataclass(frozen=True)
class RouterSolicitation:
    """Router Solicitation (ICMPv6 133, RFC 4861 §4.1): ``Reserved(4) | options``."""

    options: tuple[NDOption, ...] = ()


@dataclass(frozen=True)
class RouterAdvertisement:
    """Router Advertisement (ICMPv6 134, RFC 4861 §4.2): ``Cur Hop Limit | M O Reserved | Router Lifetime(2) |
    Reachable Time(4) | Retrans Timer(4) | options``. The NAR's reactive answer carries NAACK (RFC 5568 §6.3)."""

    router_lifetime: int  # seconds; 0: not a default router
    options: tuple[NDOption, ...] = ()
    cur_hop_limit: int = 0  # 0: unspecified
    managed: bool = False  # M
    other: bool = False  # O
    reachable_time: int = 0  # milliseconds, 0: unspecified
    retrans_timer: int = 0  # milliseconds, 0: unspecified


@dataclass(frozen=True)
class NeighborAdvertisement:
    """Neighbor Advertisement (ICMPv6 136, RFC 4861 §4.4): ``R S O Reserved(29 bits) | Target Address |
    options``. A node's UNA on the NAR's link (RFC 5568 §6.3) has R, S and O clear and its NCoA as Target."""

    target: IPv6Address
    options: tuple[NDOption, ...] = ()
    router: bool = False  # R
    solicited: bool = False  # S
    override: bool = False  # O


NDMessage: TypeAlias = RouterSolicitation | RouterAdvertisement | NeighborAdvertisement


def _nd_message_octets(msg: NDMessage) -> bytes:
    """An ND message with a zero Checksum (RFC 4861 §4.1, §4.2, §4.4)."""
    if isinstance(msg, RouterSolicitation):
        head = bytes((Icmpv6Type.ROUTER_SOLICITATION, 0, 0, 0)) + bytes(4)
    elif isinstance(msg, RouterAdvertisement):
        check_uint("Cur Hop Limit", msg.cur_hop_limit, 8)
        check_uint("Router Lifetime", msg.router_lifetime, 16)
        check_uint("Reachable Time", msg.reachable_time, 32)
        check_uint("Retrans Timer", msg.retrans_timer, 32)
        head = (
            bytes((Icmpv6Type.ROUTER_ADVERTISEMENT, 0, 0, 0, msg.cur_hop_limit, msg.managed << 7 | msg.other << 6))
            + msg.router_lifetime.to_bytes(2, "big")
            + msg.reachable_time.to_bytes(4, "big")
            + msg.retrans_timer.to_bytes(4, "big")
        )
    else:
        flags = msg.router << 31 | msg.solicited << 30 | msg.override << 29
        head = bytes((Icmpv6Type.NEIGHBOR_ADVERTISEMENT, 0, 0, 0)) + flags.to_bytes(4, "big") + msg.target.packed
    return head + encode_nd_options(msg.options)


def encode_nd_message(msg: NDMessage, *, source: IPv6Address, destination: IPv6Address) -> bytes:
    """An RS, RA or NA with its Checksum (RFC 4443 §2.3)."""
    octets = _nd_message_octets(msg)
    checksum = _checksum(octets, source, destination)
    return octets[:2] + checksum.to_bytes(2, "big") + octets[4:]


def decode_nd_message(
    data: bytes, *, source: IPv6Address | None = None, destination: IPv6Address | None = None
) -> NDMessage | UnknownIcmpv6Message:
    """Decode an RS, RA or NA (anything else: :class:`UnknownIcmpv6Message`); with both addresses the Checksum
    is verified first. A non-zero Code is a DecodeError (RFC 4861 §6.1.1, §6.1.2, §7.1.2: such messages are
    discarded). Raises only DecodeError for malformed input."""
    if (source is None) != (destination is None):
        raise ValueError("give both source and destination to verify the checksum, or neither")
    r = Reader(data)
    icmp_type = r.pull_u8("icmpv6.type")
    code = r.pull_u8("icmpv6.code")
    r.pull_u16("icmpv6.checksum")
    if source is not None and destination is not None and _checksum(data, source, destination) != 0:
        raise DecodeError(
            "checksum does not match the IPv6 pseudo-header and message", field="icmpv6.checksum", offset=2
        )
    known = (Icmpv6Type.ROUTER_SOLICITATION, Icmpv6Type.ROUTER_ADVERTISEMENT, Icmpv6Type.NEIGHBOR_ADVERTISEMENT)
    if icmp_type not in known:
        return UnknownIcmpv6Message(Icmpv6Type(icmp_type), code, r.pull_rest())
    if code != 0:
        raise DecodeError(f"ICMPv6 type {icmp_type} must have Code 0, got {code}", field="icmpv6.code", offset=1)
    if icmp_type == Icmpv6Type.ROUTER_SOLICITATION:
        r.pull_bytes(4, "nd.rs.reserved")
        return RouterSolicitation(_decode_options(data, r.offset, 0))
    if icmp_type == Icmpv6Type.ROUTER_ADVERTISEMENT:
        hop_limit = r.pull_u8("nd.ra.cur_hop_limit")
        flags = r.pull_u8("nd.ra.flags")
        lifetime = r.pull_u16("nd.ra.router_lifetime")
        reachable = r.pull_u32("nd.ra.reachable_time")
        retrans = r.pull_u32("nd.ra.retrans_timer")
        options = _decode_options(data, r.offset, 0)
        return RouterAdvertisement(
            lifetime, options, hop_limit, bool(flags & 0x80), bool(flags & 0x40), reachable, retrans
        )
    flags = r.pull_u32("nd.na.flags")
    target = r.pull_ipv6("nd.na.target")
    options = _decode_options(data, r.offset, 0)
    return NeighborAdvertisement(target, options, bool(flags >> 31 & 1), bool(flags >> 30 & 1), bool(flags >> 29 & 1))


_FMIP_HEADER = 8  # Type | Code | Checksum | Subtype | Reserved | Identifier (RFC 5568 §6.1)


def _message_octets(msg: Icmpv6Message) -> bytes:
    """The message with a zero Checksum."""
    if isinstance(msg, UnknownIcmpv6Message):
        check_uint("ICMPv6 Type", msg.type, 8)
        check_uint("ICMPv6 Code", msg.code, 8)
        return bytes((msg.type, msg.code, 0, 0)) + msg.body
    if isinstance(msg, RtSolPr):
        code, subtype = 0, FmipSubtype.RTSOLPR
    else:
        check_uint("PrRtAdv Code", msg.code, 8)
        code, subtype = msg.code, FmipSubtype.PRRTADV
    check_uint("Identifier", msg.identifier, 16)
    header = bytes((Icmpv6Type.FMIPV6, code, 0, 0, subtype, 0)) + msg.identifier.to_bytes(2, "big")
    return header + encode_nd_options(msg.options)


def _checksum(octets: bytes, source: IPv6Address, destination: IPv6Address) -> int:
    return internet_checksum(ipv6_pseudo_header(source, destination, len(octets), ICMPV6_NEXT_HEADER) + octets)


def encode_icmpv6(msg: Icmpv6Message, *, source: IPv6Address, destination: IPv6Address) -> bytes:
    """The ICMPv6 message with its Checksum (RFC 4443 §2.3) for the given IPv6 addresses.

    With a Home Address option in the packet, ``source`` is the home address (RFC 6275 §11.3.1).
    """
    octets = _message_octets(msg)
    checksum = _checksum(octets, source, destination)
    return octets[:2] + checksum.to_bytes(2, "big") + octets[4:]


def decode_icmpv6(
    data: bytes, *, source: IPv6Address | None = None, destination: IPv6Address | None = None
) -> Icmpv6Message:
    """Decode one ICMPv6 message; with both addresses the Checksum is verified first (field ``icmpv6.checksum``).

    Raises only DecodeError for malformed input.
    """
    if (source is None) != (destination is None):
        raise ValueError("give both source and destination to verify the checksum, or neither")
    r = Reader(data)
    icmp_type = r.pull_u8("icmpv6.type")
    code = r.pull_u8("icmpv6.code")
    r.pull_u16("icmpv6.checksum")
    if source is not None and destination is not None and _checksum(data, source, destination) != 0:
        raise DecodeError(
            "checksum does not match the IPv6 pseudo-header and message", field="icmpv6.checksum", offset=2
        )
    if icmp_type != Icmpv6Type.FMIPV6:
        return UnknownIcmpv6Message(Icmpv6Type(icmp_type), code, r.pull_rest())
    subtype = r.peek_u8("icmpv6.fmip.subtype")
    if subtype not in (FmipSubtype.RTSOLPR, FmipSubtype.PRRTADV):
        return UnknownIcmpv6Message(Icmpv6Type(icmp_type), code, r.pull_rest())
    r.pull_u8("icmpv6.fmip.subtype")
    r.pull_u8("icmpv6.fmip.reserved")  # RFC 5568 §6.1: ignored by the receiver
    identifier = r.pull_u16("icmpv6.fmip.identifier")
    options = _decode_options(data, _FMIP_HEADER, 0)
    if subtype == FmipSubtype.RTSOLPR:
        if code != 0:
            raise DecodeError(f"RtSolPr Code must be 0, got {code}", field="icmpv6.code", offset=1)
        return RtSolPr(identifier, options)
    return PrRtAdv(PrRtAdvCode(code), identifier, options)
