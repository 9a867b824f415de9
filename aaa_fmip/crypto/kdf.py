"""The RFC 5295 default key derivation function (HMAC-SHA-256 PRF+).

RFC 5295 §3.1.2 (PRF number 1, "HMAC-SHA-256 PRF+ (Default)")::

    KDF(K, S) = PRF+(K, S),  S = key label | 0x00 | optional data | length
    PRF+(K, S) = T1 | T2 | ... ,  T1 = HMAC-SHA-256(K, S | 0x01),  Tn = HMAC-SHA-256(K, T(n-1) | S | n)

``length`` is the requested output length in octets as a 2-octet big-endian integer (§3.1); the counter ``n`` is
one octet, so at most 255 blocks (8160 octets) can be produced.
"""

from __future__ import annotations

import functools
import hmac
import struct
from typing import Final

from aaa_fmip.crypto.secrets import SecretBytes

HASH_LENGTH: Final = 32  # SHA-256 output octets
MAX_OUTPUT_LENGTH: Final = 255 * HASH_LENGTH  # RFC 5295 §3.1.2: one-octet block counter
MAX_LABEL_LENGTH: Final = 255  # RFC 5295 §3.1 (§8.1 asks registered labels to stay within 64 characters)


def kdf(key: bytes | SecretBytes, label: bytes, data: bytes, length: int) -> bytes:
    """``KDF(key, label | 0x00 | data | uint16(length))`` truncated to ``length`` octets (RFC 5295 §3.1.2).

    ``label`` is the key label without its terminating 0x00 (RFC 5295 §3.1: printable ASCII); ``data`` is the
    optional data (may be empty). Raises :class:`ValueError` for an empty key, a label that is not printable
    ASCII or contains 0x00, or a length outside 1..8160.
    """
    k = key.reveal() if isinstance(key, SecretBytes) else bytes(key)
    if not k:
        raise ValueError("KDF key must not be empty")
    if not _label_ok(bytes(label)):
        raise ValueError(f"KDF label must be 1..{MAX_LABEL_LENGTH} printable ASCII octets (RFC 5295 §3.1)")
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_OUTPUT_LENGTH:
        raise ValueError(f"KDF output length must be an integer in 1..{MAX_OUTPUT_LENGTH} octets")
    s = bytes(label) + b"\x00" + bytes(data) + struct.pack("!H", length)
    return _prf_plus(k, s, length)


@functools.lru_cache(maxsize=32)
def _label_ok(label: bytes) -> bool:
    """RFC 5295 §3.1 label rules; cached, because the labels are the few constants of keys.py."""
    return bool(label) and len(label) <= MAX_LABEL_LENGTH and all(0x20 <= c <= 0x7E for c in label)


def _prf_plus(key: bytes, s: bytes, length: int) -> bytes:
    # The standard library's one-shot HMAC (OpenSSL underneath): no per-block object, which is most of the
    # cost for these few short blocks.
    out = b""
    t = b""
    for n in range(1, -(-length // HASH_LENGTH) + 1):
        t = hmac.digest(key, t + s + bytes((n,)), "sha256")  # RFC 5295 §3.1.2: T(n-1) | S | n, with T0 empty
        out += t
    return out[:length]
