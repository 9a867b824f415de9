"""Mobility Header messages of FMIPv6 (FBU, FBack, HI, HAck; RFC 5568 §6.2), their checksum, and the octets a
BADF authenticator covers."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar, TypeAlias

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import Reader, internet_checksum, ipv6_pseudo_header
from aaa_fmip.wire.mh.codes import (
    _MH_HEADER,
    _MH_UNIT,
    IPPROTO_NONE,
    MH_NEXT_HEADER,
    FBackStatus,
    HAckCode,
    HICode,
    MHType,
    MobilityOptionType,
)
from aaa_fmip.wire.mh.options import (
    BindingAuthorizationDataForFMIPv6,
    MobilityOption,
    _decode_options,
    _encode_options,
    _iter_options,
)
from aaa_fmip.wire.nd import check_uint

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
_FIXED_LENGTH: dict[int, int] = {  # by MH Type (IntEnum members, found by plain ints too)
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
    if len(data) < _MH_HEADER:  # the reader raises, naming the field that is cut short
        r = Reader(data)
        for name in ("mh.payload_proto", "mh.header_len", "mh.type", "mh.reserved"):
            r.pull_u8(name)
        r.pull_u16("mh.checksum")
    # Reserved (RFC 6275 §6.1.1: ignored by the receiver) and Checksum follow
    payload_proto, header_len, mh_type = data[0], data[1], data[2]
    if payload_proto != IPPROTO_NONE:
        # RFC 6275 §9.2: MUST discard unless IPPROTO_NONE
        raise DecodeError(f"Payload Proto must be 59, got {payload_proto}", field="mh.payload_proto", offset=0)
    if (header_len + 1) * _MH_UNIT != len(data):
        raise DecodeError(
            f"Header Len {header_len} means {(header_len + 1) * _MH_UNIT} octets, got {len(data)}",
            field="mh.header_len",
            offset=1,
        )
    fixed = _FIXED_LENGTH.get(mh_type, -1)
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
