"""IPv6 Neighbor Discovery option framing (RFC 4861 §4.6) and the option type registry, shared by every ND
option codec (:mod:`aaa_fmip.wire.send`, :mod:`aaa_fmip.wire.icmpv6`) and the encoders' range checks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import OpenIntEnum, Reader, zero_padding


class NDOptionType(OpenIntEnum):
    """IPv6 Neighbor Discovery option types (IANA "IPv6 Neighbor Discovery Option Formats")."""

    SOURCE_LINK_LAYER_ADDRESS = 1  # RFC 4861 §4.6.1
    TARGET_LINK_LAYER_ADDRESS = 2  # RFC 4861 §4.6.1
    PREFIX_INFORMATION = 3  # RFC 4861 §4.6.2
    REDIRECTED_HEADER = 4  # RFC 4861 §4.6.3
    MTU = 5  # RFC 4861 §4.6.4
    CGA = 11  # RFC 3971 §5.1
    RSA_SIGNATURE = 12  # RFC 3971 §5.2
    TIMESTAMP = 13  # RFC 3971 §5.3.1
    NONCE = 14  # RFC 3971 §5.3.2
    TRUST_ANCHOR = 15  # RFC 3971 §6.4.3
    CERTIFICATE = 16  # RFC 3971 §6.4.4
    IP_ADDRESS_PREFIX = 17  # RFC 5568 §6.4.1
    NEW_ROUTER_PREFIX_INFORMATION = 18  # RFC 4068 (named in RFC 5568 §6.1.2)
    LINK_LAYER_ADDRESS = 19  # RFC 5568 §6.4.3
    NEIGHBOR_ADVERTISEMENT_ACKNOWLEDGMENT = 20  # RFC 5568 §6.4.6
    HANDOVER_KEY_REQUEST = 27  # RFC 5269 §4.1
    HANDOVER_KEY_REPLY = 28  # RFC 5269 §4.2


ND_OPTION_UNIT = 8  # RFC 4861 §4.6: the Length field counts units of 8 octets, Type and Length included
ND_OPTION_MAX_LENGTH = 255 * ND_OPTION_UNIT


def nd_option(option_type: int, content: bytes) -> bytes:
    """``Type | Length | content``; ``content`` must already fill the option to a multiple of 8 octets."""
    total = 2 + len(content)
    if total % ND_OPTION_UNIT:
        raise ValueError(f"ND option {option_type}: {total} octets is not a multiple of 8 (RFC 4861 §4.6)")
    if total > ND_OPTION_MAX_LENGTH:
        raise ValueError(f"ND option {option_type}: {total} octets exceeds the 2040 an ND option can hold")
    check_uint("ND option type", option_type, 8)
    return bytes((option_type, total // ND_OPTION_UNIT)) + content


def nd_option_padded(option_type: int, content: bytes) -> bytes:
    """:func:`nd_option` after zero padding ``content`` to the next multiple of 8 octets."""
    return nd_option(option_type, content + zero_padding(2 + len(content), ND_OPTION_UNIT))


@dataclass(frozen=True)
class RawNDOption:
    """One ND option as framed on the wire: ``body`` is every octet after Type and Length."""

    type: int
    offset: int  # absolute offset of the Type octet
    body: bytes

    @property
    def end(self) -> int:
        return self.offset + 2 + len(self.body)


def iter_nd_options(data: bytes, start: int, *, base: int = 0) -> Iterator[RawNDOption]:
    """Walk the options in ``data[start:]``; a zero or overrunning Length raises DecodeError (RFC 4861 §4.6)."""
    r = Reader(data, base=base)
    r.pull_bytes(start, "nd.option")
    while not r.at_end():
        offset = r.offset
        option_type = r.pull_u8("nd.option.type")
        units = r.pull_u8("nd.option.length")
        if units == 0:
            # RFC 4861 §4.6: "Nodes MUST silently discard an ND packet that contains an option with length zero."
            raise DecodeError("option length 0", field="nd.option.length", offset=offset + 1)
        if units * ND_OPTION_UNIT - 2 > r.remaining():
            raise DecodeError(
                f"option of {units * ND_OPTION_UNIT} octets overruns the {r.remaining() + 2} left",
                field="nd.option.length",
                offset=offset + 1,
            )
        yield RawNDOption(option_type, offset, r.pull_bytes(units * ND_OPTION_UNIT - 2, "nd.option.length"))


def check_uint(name: str, value: int, bits: int) -> None:
    """Encoder-side range check: a ValueError naming the field instead of a struct.error."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must be an integer in 0..{(1 << bits) - 1}, got {value!r}")


def check_length(name: str, value: bytes, length: int) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != length:
        raise ValueError(f"{name} must be {length} octets")
