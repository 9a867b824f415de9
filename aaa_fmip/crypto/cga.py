"""Cryptographically Generated Addresses (RFC 3972) and the SEND Key Hash (RFC 3971 §5.2).

Hash1 = leftmost 64 bits of SHA-1(CGA Parameters); Hash2 = leftmost 112 bits of SHA-1(Modifier | 9 zero octets
| Public Key | Extension Fields) (RFC 3972 §3). The interface identifier is Hash1 with Sec in bits 0-2 and the
"u" and "g" bits (6 and 7) cleared (§4 step 6).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from typing import Final

from aaa_fmip.errors import BadCGA
from aaa_fmip.wire.send import CGAParameters

MAX_SEC: Final = 7  # RFC 3972 §2: three bits
MAX_GENERATED_SEC: Final = 2  # Sec 3+ needs 2^48 or more hashes per address
MAX_COLLISION_COUNT: Final = 2  # RFC 3972 §4 step 8 / §5 step 1
MODIFIER_LENGTH: Final = 16
PREFIX_LENGTH: Final = 8
# RFC 3972 §5 step 3: Hash1 and the interface identifier are compared ignoring bits 0-2 (Sec) and 6-7 (u, g).
_HASH1_COMPARE_MASK: Final = 0x1CFFFFFFFFFFFFFF
_UG_BITS_MASK: Final = 0x0300000000000000
_SEC_SHIFT: Final = 61
_HASH2_ZERO_OCTETS: Final = 9  # RFC 3972 §4 step 2: Subnet Prefix (8) and Collision Count (1) set to zero


class BadCGACollisionCount(BadCGA):
    """RFC 3972 §5 step 1: the Collision Count is not 0, 1 or 2."""

    reason = "bad-cga-collision-count"


class CGAPrefixMismatch(BadCGA):
    """RFC 3972 §5 step 2: the Subnet Prefix differs from the address's prefix."""

    reason = "bad-cga-prefix"


class CGAHash1Mismatch(BadCGA):
    """RFC 3972 §5 step 3: Hash1 does not match the interface identifier."""

    reason = "bad-cga-hash1"


class CGAHash2Mismatch(BadCGA):
    """RFC 3972 §5 step 5: the leftmost 16*Sec bits of Hash2 are not zero."""

    reason = "bad-cga-hash2"


def _sha1(data: bytes) -> bytes:
    # RFC 3972 §3 and RFC 3971 §5.2 mandate SHA-1. hashlib's one-shot call is several times cheaper than a
    # Hash object per input, which matters in the Sec > 0 modifier search.
    return hashlib.sha1(data).digest()  # noqa: S324


def key_hash(public_key_der: bytes) -> bytes:
    """RFC 3971 §5.2 Key Hash: the leftmost 128 bits of SHA-1 over the DER public key (as in the CGA Parameters)."""
    return _sha1(bytes(public_key_der))[:16]


def cga_sec(address: ipaddress.IPv6Address) -> int:
    """RFC 3972 §2: Sec is the three leftmost bits of the interface identifier."""
    return _iid(address) >> _SEC_SHIFT


def hash1(params: CGAParameters) -> bytes:
    """RFC 3972 §3 Hash1: leftmost 64 bits of SHA-1 over the encoded CGA Parameters."""
    return _sha1(params.encode())[:8]


def hash2(modifier: bytes, public_key_der: bytes, extensions: bytes = b"") -> bytes:
    """RFC 3972 §3 Hash2: leftmost 112 bits of SHA-1 over the parameters with prefix and collision count zeroed."""
    return _sha1(bytes(modifier) + bytes(_HASH2_ZERO_OCTETS) + bytes(public_key_der) + bytes(extensions))[:14]


def generate_cga(
    public_key_der: bytes,
    subnet_prefix: bytes,
    sec: int,
    *,
    modifier: bytes | None = None,
    collision_count: int = 0,
    extensions: bytes = b"",
) -> tuple[ipaddress.IPv6Address, CGAParameters]:
    """Generate a CGA and its parameters (RFC 3972 §4).

    ``modifier`` is the initial modifier; None draws one from the OS random generator (step 1). It is incremented
    until Hash2 has 16*Sec leading zero bits (steps 2-3): about 2^16 SHA-1 computations for Sec 1 and 2^32
    for Sec 2. ``collision_count`` is the number of duplicate-address detections already failed (step 8).
    """
    if isinstance(sec, bool) or not isinstance(sec, int) or not 0 <= sec <= MAX_GENERATED_SEC:
        raise ValueError(f"Sec must be 0..{MAX_GENERATED_SEC} for generation")
    if len(subnet_prefix) != PREFIX_LENGTH:
        raise ValueError("subnet prefix must be 8 octets (RFC 3972 §3)")
    if not 0 <= collision_count <= MAX_COLLISION_COUNT:
        raise ValueError("collision count must be 0, 1 or 2 (RFC 3972 §4 step 8)")
    if not public_key_der:
        raise ValueError("public key must not be empty")
    if modifier is None:
        modifier = secrets.token_bytes(MODIFIER_LENGTH)
    elif len(modifier) != MODIFIER_LENGTH:
        raise ValueError("modifier must be 16 octets (RFC 3972 §3)")
    m = _find_modifier(bytes(modifier), bytes(public_key_der), bytes(extensions), sec)
    params = CGAParameters(m, bytes(subnet_prefix), collision_count, bytes(public_key_der), bytes(extensions))
    iid = int.from_bytes(hash1(params), "big") & ~(0xE000000000000000 | _UG_BITS_MASK)  # step 6
    iid |= sec << _SEC_SHIFT
    return ipaddress.IPv6Address(bytes(subnet_prefix) + iid.to_bytes(8, "big")), params


def _find_modifier(modifier: bytes, public_key: bytes, extensions: bytes, sec: int) -> bytes:
    """RFC 3972 §4 steps 2-3: increment the 128-bit modifier until Hash2's leftmost 16*Sec bits are zero."""
    zero_octets = 2 * sec
    tail = bytes(_HASH2_ZERO_OCTETS) + public_key + extensions
    value = int.from_bytes(modifier, "big")
    while True:
        m = value.to_bytes(MODIFIER_LENGTH, "big")
        if not any(_sha1(m + tail)[:zero_octets]):
            return m
        value = (value + 1) % (1 << 128)


def verify_cga(address: ipaddress.IPv6Address, params: CGAParameters) -> None:
    """Verify that ``address`` is a CGA for ``params`` (RFC 3972 §5); raises a :class:`BadCGA` subclass.

    The public key is hashed as given; checking that it is an acceptable RSA key is the signature verifier's job.
    """
    if not isinstance(address, ipaddress.IPv6Address):
        raise BadCGA("CGA must be an IPv6 address")
    if not 0 <= params.collision_count <= MAX_COLLISION_COUNT:
        raise BadCGACollisionCount(f"CGA collision count {params.collision_count} is not 0, 1 or 2")
    if len(params.modifier) != MODIFIER_LENGTH or len(params.subnet_prefix) != PREFIX_LENGTH:
        raise BadCGA("CGA modifier must be 16 octets and subnet prefix 8 octets")
    if params.subnet_prefix != address.packed[:PREFIX_LENGTH]:
        raise CGAPrefixMismatch("CGA subnet prefix does not match the address")
    iid = _iid(address)
    if int.from_bytes(hash1(params), "big") & _HASH1_COMPARE_MASK != iid & _HASH1_COMPARE_MASK:
        raise CGAHash1Mismatch("CGA Hash1 does not match the interface identifier")
    sec = iid >> _SEC_SHIFT
    if sec and any(hash2(params.modifier, params.public_key, params.extensions)[: 2 * sec]):
        raise CGAHash2Mismatch(f"CGA Hash2 does not have the {16 * sec} leading zero bits Sec {sec} requires")


def _iid(address: ipaddress.IPv6Address) -> int:
    if not isinstance(address, ipaddress.IPv6Address):
        raise ValueError("address must be an IPv6Address")
    return int(address) & 0xFFFFFFFFFFFFFFFF
