"""Reading and writing AVPs by their dictionary name, with the errors a Diameter answer needs.

A request that lacks an AVP raises :class:`MissingAvp` (→ 5005 DIAMETER_MISSING_AVP), one whose value does not
decode or is out of range :class:`InvalidAvp` (→ 5004 DIAMETER_INVALID_AVP_VALUE), one that repeats a
single-valued AVP :class:`RepeatedAvp` (→ 5009 DIAMETER_AVP_OCCURS_TOO_MANY_TIMES); each carries the AVP
to put in Failed-AVP (RFC 6733 §7.5): the offending AVP as received, or for a missing one an AVP of that code
and vendor with a zero-filled value of the type's minimum length (:func:`zero_filled`).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from diameter.message import Avp
from diameter.message.avp import avp as _avp_types
from diameter.message.avp.avp import AvpGrouped
from diameter.message.avp.dictionary import AVP_DICTIONARY, AVP_VENDOR_DICTIONARY

from aaa_fmip.diameter.dictionary import AvpDef, DiameterDictionary

ADDRESS_FAMILY_IPV6 = 2  # RFC 6733 §4.3.1 Address: IANA address family 2 = IPv6

# RFC 6733 §4.2/§4.3: the shortest valid value of each type. Our Address AVPs are IPv6 only (family + 16 octets);
# any other Address needs at least family + an IPv4 address. OctetString-derived types and Grouped may be empty.
_MIN_LENGTHS: Final[Mapping[str, int]] = {
    "Integer32": 4,
    "Unsigned32": 4,
    "Enumerated": 4,
    "Float32": 4,
    "Time": 4,
    "Integer64": 8,
    "Unsigned64": 8,
    "Float64": 8,
    "Address": 18,
}
_LIBRARY_MIN_LENGTHS: Final[tuple[tuple[type[Any], int], ...]] = (
    (_avp_types.AvpInteger32, 4),  # also Enumerated (a subclass)
    (_avp_types.AvpUnsigned32, 4),
    (_avp_types.AvpFloat32, 4),
    (_avp_types.AvpTime, 4),
    (_avp_types.AvpInteger64, 8),
    (_avp_types.AvpUnsigned64, 8),
    (_avp_types.AvpFloat64, 8),
    (_avp_types.AvpAddress, 6),
)


def zero_filled(code: int, vendor_id: int, mandatory: bool, length: int) -> Any:
    """RFC 6733 §7.5: the Failed-AVP member for a missing AVP, with ``length`` zero octets as its value."""
    flags = (Avp.avp_flag_vendor if vendor_id else 0) | (Avp.avp_flag_mandatory if mandatory else 0)
    return Avp(code, vendor_id, bytes(length), flags)


def missing_library_avp(code: int, vendor_id: int = 0) -> Any:
    """:func:`zero_filled` for an AVP python-diameter's own dictionary defines (the base protocol's)."""
    table = AVP_VENDOR_DICTIONARY.get(vendor_id, {}) if vendor_id else AVP_DICTIONARY
    entry = table.get(code, {})
    kind = entry.get("type")
    length = next((n for cls, n in _LIBRARY_MIN_LENGTHS if kind is not None and issubclass(kind, cls)), 0)
    return zero_filled(code, vendor_id, bool(entry.get("mandatory", True)), length)


# RFC 6733 §4.5: the base protocol's AVPs. Every Diameter node recognizes them, so one of these with the M bit
# in a request of ours is not "unsupported" (§7.1.5 5001) even where our command has no use for it.
BASE_AVP_CODES: Final = frozenset(
    {1, 25, 27, 33, 44, 50, 55, 85, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272,
     273, 274, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 287, 291, 292, 293, 294, 295, 296, 297, 298, 299,
     480, 483, 485}
)  # fmt: skip


@dataclass(frozen=True)
class WireAvp:
    """One AVP of a received message: decoded (python-diameter's ``Avp``) and its exact octets, padding included."""

    avp: Any
    raw: bytes


def split_avps(data: bytes, offset: int = 20) -> list[WireAvp]:
    """The AVPs of a Diameter message (``data`` from its header on), each with the octets it arrived as.

    Relaying uses ``raw``: python-diameter rebuilds the AVPs it knows from attributes (with its own flags and
    order), so only the received octets keep the flags, Vendor-Ids and order of the sender (RFC 6733 §6.1.9).
    """
    found: list[WireAvp] = []
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset + 5 : offset + 8], "big")
        if length < 8:
            break  # python-diameter has already refused such a message; nothing sane to split
        end = min(len(data), offset + ((length + 3) & ~3))
        raw = bytes(data[offset:end])
        found.append(WireAvp(Avp.from_bytes(raw), raw))
        offset = end
    return found


class AvpError(Exception):
    """A request AVP problem that becomes a 500x answer with Failed-AVP."""

    result_code: int = 5004

    def __init__(self, message: str, failed: Any) -> None:
        super().__init__(message)
        self.failed = failed


class MissingAvp(AvpError):
    result_code = 5005  # RFC 6733 §7.1.5 DIAMETER_MISSING_AVP


class InvalidAvp(AvpError):
    result_code = 5004  # RFC 6733 §7.1.5 DIAMETER_INVALID_AVP_VALUE


class RepeatedAvp(AvpError):
    result_code = 5009  # RFC 6733 §7.1.5 DIAMETER_AVP_OCCURS_TOO_MANY_TIMES


class AvpCodec:
    """Builds and finds the dictionary's AVPs. Stateless apart from the dictionary."""

    def __init__(self, dictionary: DiameterDictionary) -> None:
        self.dictionary = dictionary

    # ------------------------------------------------------------------------------------------------ encode

    def new(self, name: str, value: Any) -> Any:
        d = self.dictionary.avp(name)
        if d.type == "Address":
            return self._address(d, value)
        return Avp.new(d.code, d.vendor_id, value=value, is_mandatory=d.mandatory)

    def enum(self, name: str, value_name: str) -> Any:
        return self.new(name, self.dictionary.avp(name).value(value_name))

    def grouped(self, name: str, members: Sequence[Any]) -> Any:
        d = self.dictionary.avp(name)
        return Avp.new(d.code, d.vendor_id, value=list(members), is_mandatory=d.mandatory)

    def _address(self, d: AvpDef, value: ipaddress.IPv6Address) -> Any:
        # python-diameter's Address setter takes text; build the payload from the packed address instead so
        # that only IPv6 (family 2) can ever be written here.
        avp = Avp.new(d.code, d.vendor_id, is_mandatory=d.mandatory)
        avp.payload = struct.pack("!H", ADDRESS_FAMILY_IPV6) + ipaddress.IPv6Address(value).packed
        return avp

    def missing(self, name: str) -> Any:
        """The Failed-AVP member for a missing AVP: its code and vendor, zero-filled to the type's minimum."""
        d = self.dictionary.avp(name)
        return zero_filled(d.code, d.vendor_id, d.mandatory, _MIN_LENGTHS.get(d.type, 0))

    # ------------------------------------------------------------------------------------------------ decode

    def find(self, avps: Iterable[Any], name: str) -> list[Any]:
        d = self.dictionary.avp(name)
        return [a for a in avps if a.code == d.code and a.vendor_id == d.vendor_id]

    def optional(self, avps: Iterable[Any], name: str) -> Any | None:
        found = self.find(avps, name)
        if len(found) > 1:
            raise RepeatedAvp(f"{name} occurs more than once", found[1])
        return found[0] if found else None

    def required(self, avps: Iterable[Any], name: str) -> Any:
        avp = self.optional(avps, name)
        if avp is None:
            raise MissingAvp(f"{name} is missing", self.missing(name))
        return avp

    def unsigned32(self, avp: Any) -> int:
        if len(avp.payload) != 4:
            raise InvalidAvp(f"{avp.name} must be 4 octets", avp)
        return int(struct.unpack("!I", avp.payload)[0])

    def integer32(self, avp: Any) -> int:
        if len(avp.payload) != 4:
            raise InvalidAvp(f"{avp.name} must be 4 octets", avp)
        return int(struct.unpack("!i", avp.payload)[0])

    def octets(self, avp: Any) -> bytes:
        return bytes(avp.payload)

    def utf8(self, avp: Any) -> str:
        try:
            return bytes(avp.payload).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidAvp(f"{avp.name} is not UTF-8", avp) from None

    def ipv6(self, avp: Any) -> ipaddress.IPv6Address:
        payload = bytes(avp.payload)
        if len(payload) != 18 or struct.unpack("!H", payload[:2])[0] != ADDRESS_FAMILY_IPV6:
            raise InvalidAvp(f"{avp.name} must be an IPv6 Address (family 2, 16 octets)", avp)
        return ipaddress.IPv6Address(payload[2:])

    def enum_name(self, avp: Any, name: str) -> str:
        value = self.integer32(avp)
        found = self.dictionary.avp(name).value_name(value)
        if found is None:
            raise InvalidAvp(f"{name} value {value} is not defined", avp)
        return found

    def members(self, avp: Any) -> list[Any]:
        if not isinstance(avp, AvpGrouped):
            raise InvalidAvp(f"{avp.name} is not a Grouped AVP", avp)
        try:
            return list(avp.value)
        except Exception:  # python-diameter raises its own decode errors (and struct/index errors) here
            raise InvalidAvp(f"{avp.name} does not contain a valid group of AVPs", avp) from None
