"""Reading and writing AVPs by their dictionary name, with the errors a Diameter answer needs.

A request that lacks an AVP raises :class:`MissingAvp` (→ 5005 DIAMETER_MISSING_AVP), one whose value does not
decode or is out of range :class:`InvalidAvp` (→ 5004 DIAMETER_INVALID_AVP_VALUE), one that repeats a
single-valued AVP :class:`RepeatedAvp` (→ 5009 DIAMETER_AVP_OCCURS_TOO_MANY_TIMES); each carries the AVP
to put in Failed-AVP (RFC 6733 §7.5): the offending AVP as received, or for a missing one an AVP of that code
with an empty value.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from diameter.message import Avp
from diameter.message.avp.avp import AvpGrouped

from aaa_fmip.diameter.dictionary import AvpDef, DiameterDictionary

ADDRESS_FAMILY_IPV6 = 2  # RFC 6733 §4.3.1 Address: IANA address family 2 = IPv6


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
        """The Failed-AVP member for a missing AVP: its code and vendor with an empty value."""
        d = self.dictionary.avp(name)
        return Avp(d.code, d.vendor_id, b"", 0x40 if d.mandatory else 0)

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
