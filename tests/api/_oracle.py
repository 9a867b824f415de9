"""A second, independent implementation of the key hierarchy of architecture.md §2 (hashlib/hmac only), so the
API tests check the keys the service hands out against the specification rather than against its own code."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

# architecture.md §2, copied here on purpose (not imported from aaa_fmip.keys).
LABEL_HMK = b"FMIPv6 Handover Master Key@aaa-fmip.invalid"
LABEL_SPI = b"FMIPv6 SPI@aaa-fmip.invalid"
LABEL_HK = b"FMIPv6 Handover Key@aaa-fmip.invalid"


def kdf(key: bytes, label: bytes, data: bytes, length: int) -> bytes:
    """RFC 5295 §3.1.2: PRF+ over HMAC-SHA-256 with S = label | 0x00 | data | length (2 octets)."""
    s = label + b"\x00" + data + length.to_bytes(2, "big")
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(key, block + s + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def hmk(root: bytes) -> bytes:
    return kdf(root, LABEL_HMK, b"", 64)


def hmk_name(name_input: bytes) -> bytes:
    return kdf(name_input, LABEL_HMK, b"", 8)


def spi(hmk_value: bytes) -> int:
    value = int.from_bytes(kdf(hmk_value, LABEL_SPI, b"", 4), "big")
    return value or 1


def hk(hmk_value: bytes, ar: str) -> bytes:
    return kdf(hmk_value, LABEL_HK, ipaddress.IPv6Address(ar).packed, 32)


def hk_name(hmk_name_value: bytes, ar: str) -> bytes:
    return kdf(hmk_name_value, LABEL_HK, ipaddress.IPv6Address(ar).packed, 8)
