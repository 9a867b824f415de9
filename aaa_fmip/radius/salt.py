"""RFC 2548 §2.4.2 salt encryption (the MS-MPPE-Send/Recv-Key scheme; RFC 2868 §3.5 is the same for
Tunnel-Password), used for the ``AAA-FMIP-HK`` attribute (dictionary flag ``encrypt=2``).

::

    value = Salt(2) | C            Salt: most significant bit set, unique per attribute of one packet
    P     = Key-Length(1) | Key | zero padding to a multiple of 16 octets
    b1 = MD5(S | R | A)   c1 = p1 xor b1          S = shared secret, R = Request Authenticator of the
    bi = MD5(S | c(i-1))  ci = pi xor bi          Access-Request, A = Salt

FreeRADIUS applies this itself when it sends an ``encrypt=2`` attribute, so the server side never calls
:func:`salt_encrypt`; the access router decrypts with :func:`salt_decrypt`. Pure functions: the salt is passed
in (:func:`new_salt` makes one), nothing is logged, no error message contains key octets.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

from aaa_fmip.errors import DecodeError

BLOCK: Final = 16  # MD5 output octets
SALT_LENGTH: Final = 2
AUTHENTICATOR_LENGTH: Final = 16  # RFC 2865 §3
MAX_PLAINTEXT: Final = 239  # 253 - Vendor-Id(4) - type/length(2) - salt(2) = 245: 15 blocks, less the length octet


def _md5(data: bytes) -> bytes:
    # RFC 2548 §2.4.2 fixes MD5 for this construction; it is the protocol, not our choice of hash.
    return hashlib.md5(data, usedforsecurity=False).digest()


def new_salt() -> bytes:
    """Two random octets with the most significant bit set (RFC 2548 §2.4.2)."""
    return bytes([0x80 | secrets.randbelow(0x80), secrets.randbelow(0x100)])


def _check_common(secret: bytes, request_authenticator: bytes) -> None:
    if not secret:
        raise ValueError("the RADIUS shared secret must not be empty")
    if len(request_authenticator) != AUTHENTICATOR_LENGTH:
        raise ValueError(f"the Request Authenticator must be {AUTHENTICATOR_LENGTH} octets")


def salt_encrypt(plaintext: bytes, *, secret: bytes, request_authenticator: bytes, salt: bytes) -> bytes:
    """``Salt | C`` for ``plaintext`` (at most :data:`MAX_PLAINTEXT` octets)."""
    _check_common(secret, request_authenticator)
    if len(salt) != SALT_LENGTH or not salt[0] & 0x80:
        raise ValueError("the salt must be 2 octets with the most significant bit set (RFC 2548 §2.4.2)")
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"at most {MAX_PLAINTEXT} octets fit into one attribute")
    p = bytes([len(plaintext)]) + plaintext
    p += b"\x00" * (-len(p) % BLOCK)
    out = bytearray(salt)
    chain = request_authenticator + salt
    for i in range(0, len(p), BLOCK):
        b = _md5(secret + chain)
        c = bytes(x ^ y for x, y in zip(p[i : i + BLOCK], b, strict=True))
        out += c
        chain = c
    return bytes(out)


def salt_decrypt(value: bytes, *, secret: bytes, request_authenticator: bytes) -> bytes:
    """The plaintext inside ``Salt | C``; raises :class:`DecodeError` when the value cannot be one.

    A wrong secret or Request Authenticator usually shows as an impossible Key-Length (``DecodeError``), but
    not always: the caller checks the plaintext's expected length, and the RADIUS Response Authenticator (which
    pyrad verifies) is what proves the packet came from the server.
    """
    _check_common(secret, request_authenticator)
    if len(value) < SALT_LENGTH + BLOCK or (len(value) - SALT_LENGTH) % BLOCK:
        raise DecodeError(
            f"{len(value)} octets is not a salt followed by whole 16-octet blocks", field="salt-encrypted", offset=0
        )
    salt, c = value[:SALT_LENGTH], value[SALT_LENGTH:]
    if not salt[0] & 0x80:
        raise DecodeError("salt without its most significant bit (RFC 2548 §2.4.2)", field="salt", offset=0)
    p = bytearray()
    chain = request_authenticator + salt
    for i in range(0, len(c), BLOCK):
        block = c[i : i + BLOCK]
        b = _md5(secret + chain)
        p += bytes(x ^ y for x, y in zip(block, b, strict=True))
        chain = block
    length = p[0]
    if length > len(p) - 1:
        raise DecodeError(
            "key length exceeds the encrypted data (wrong shared secret or request authenticator?)",
            field="salt-encrypted key length",
            offset=SALT_LENGTH,
        )
    return bytes(p[1 : 1 + length])
