"""One reader and one writer for every codec (the dnspython/aioquic pattern).

The reader never raises anything but :class:`DecodeError`: overruns and leftover octets name the field and
the absolute offset where decoding stopped.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from aaa_fmip.errors import DecodeError


class Reader:
    """Cursor over ``data``; offsets reported in errors are absolute (``base`` + position)."""

    __slots__ = ("_base", "_data", "_end", "_pos")

    def __init__(self, data: bytes, *, base: int = 0) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._end = len(self._data)
        self._base = base

    @property
    def offset(self) -> int:
        """Absolute offset of the next octet."""
        return self._base + self._pos

    @property
    def position(self) -> int:
        return self._pos

    def remaining(self) -> int:
        return self._end - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._end

    def pull_bytes(self, n: int, field: str) -> bytes:
        if n < 0 or self._pos + n > self._end:
            raise DecodeError(f"needs {n} octets, {self._end - self._pos} left", field=field, offset=self.offset)
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def pull_rest(self) -> bytes:
        out = self._data[self._pos : self._end]
        self._pos = self._end
        return out

    def pull_u8(self, field: str) -> int:
        return self.pull_bytes(1, field)[0]

    def pull_u16(self, field: str) -> int:
        return int(struct.unpack("!H", self.pull_bytes(2, field))[0])

    def pull_u32(self, field: str) -> int:
        return int(struct.unpack("!I", self.pull_bytes(4, field))[0])

    def pull_u64(self, field: str) -> int:
        return int(struct.unpack("!Q", self.pull_bytes(8, field))[0])

    def pull_ipv6(self, field: str) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(self.pull_bytes(16, field))

    def peek_bytes(self, n: int) -> bytes:
        """Up to ``n`` next octets, without consuming them."""
        return self._data[self._pos : min(self._pos + n, self._end)]

    def peek_u8(self, field: str) -> int:
        if self._pos >= self._end:
            raise DecodeError("needs 1 octet, 0 left", field=field, offset=self.offset)
        return self._data[self._pos]

    @contextmanager
    def restrict_to(self, n: int, field: str) -> Iterator[None]:
        """Limit reads to the next ``n`` octets; leftover octets inside the window are an error."""
        if n < 0 or self._pos + n > self._end:
            raise DecodeError(
                f"length {n} overruns the {self._end - self._pos} octets left",
                field=field,
                offset=self.offset,
            )
        saved_end = self._end
        self._end = self._pos + n
        try:
            yield
            if self._pos != self._end:
                raise DecodeError(f"{self._end - self._pos} octets left over", field=field, offset=self.offset)
        finally:
            self._end = saved_end

    def expect_end(self, field: str) -> None:
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing octets", field=field, offset=self.offset)


class Writer:
    """Append-only output buffer."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def push_bytes(self, data: bytes) -> None:
        self._buf += data

    def push_u8(self, v: int) -> None:
        self._buf += struct.pack("!B", v)

    def push_u16(self, v: int) -> None:
        self._buf += struct.pack("!H", v)

    def push_u32(self, v: int) -> None:
        self._buf += struct.pack("!I", v)

    def push_u64(self, v: int) -> None:
        self._buf += struct.pack("!Q", v)

    def push_ipv6(self, addr: ipaddress.IPv6Address) -> None:
        self._buf += addr.packed

    def patch_u16(self, at: int, v: int) -> None:
        self._buf[at : at + 2] = struct.pack("!H", v)

    def getvalue(self) -> bytes:
        return bytes(self._buf)


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum, as used by ICMPv6 (RFC 4443 §2.3) and the MH (RFC 6275 §6.1.1)."""
    if len(data) % 2:
        data += b"\x00"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def ipv6_pseudo_header(
    source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, length: int, next_header: int
) -> bytes:
    """RFC 8200 §8.1 upper-layer pseudo-header."""
    return source.packed + destination.packed + struct.pack("!I3xB", length, next_header)


class OpenIntEnum(enum.IntEnum):
    """An IntEnum that keeps values it does not name (the dnspython registry habit).

    ``Registry(99)`` returns a pseudo-member named ``UNKNOWN_99`` that compares and hashes as the int 99,
    so a decoder can hand back code points registered after this code was written, and they re-encode as-is.
    """

    @classmethod
    def _missing_(cls, value: object) -> OpenIntEnum | None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]


def zero_padding(length: int, multiple: int) -> bytes:
    """The zero octets that bring ``length`` up to a multiple of ``multiple``."""
    return bytes(-length % multiple)
