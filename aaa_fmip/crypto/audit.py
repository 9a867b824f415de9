"""Keys and codes of the audit trail (architecture.md §5): entry MACs and signed checkpoints.

An audit trail kept in the same Redis as the data it records must not be rewritable by whoever can write to
that Redis. So each entry is authenticated with a key that is not in Redis, and the chain's head can be signed
so that an auditor keeps a copy that no one holding only Redis can forge or roll back.

Both keys are derived from a KEK (the key-encryption key of :mod:`aaa_fmip.crypto.wrap`, which never enters
Redis) with HKDF-SHA-256 (RFC 5869), salt empty, each under its own ``info`` label, so neither reveals the KEK
nor the other::

    entry MAC key   = HKDF(KEK, info = "aaa-fmip audit entry MAC v2", 32 octets)
    signing seed    = HKDF(KEK, info = "aaa-fmip audit checkpoint Ed25519 v1", 32 octets)
                      -> an Ed25519 private key (RFC 8032 §5.1.5); its public key is published

Entry MAC (hex) = HMAC-SHA-256(entry MAC key, encoding), where::

    encoding = "aaa-fmip-audit-v2" || 0x00 || uint64(n) || item(prev) || item(at) || item(event) || item(fields)
    item(s)  = uint32(len(utf8(s))) || utf8(s);  uint32/uint64 big-endian

``n`` is the entry's position in the chain (1 for the first entry ever), ``prev`` the previous entry's MAC
(64 zeros before the first), ``at`` the time text as stored, ``fields`` the entry's fields as canonical JSON
(keys sorted, no spaces, UTF-8). Checkpoint signature (Ed25519, RFC 8032) over::

    "aaa-fmip-audit-checkpoint-v1" || 0x00 || uint64(n) || item(head) || item(at)

``head`` is the MAC of entry ``n`` (64 zeros for n = 0). A slot chain (an FBU verification's entries written in
the session's hash slot, docs/api.md "Slot chains") starts from its own genesis instead of 64 zeros, so
that no entry can be moved from one chain to another::

    slot genesis = hex(SHA-256("aaa-fmip-audit-slot-v1" || 0x00 || uint16(slot)))           (writer 0)
                 = hex(SHA-256("aaa-fmip-audit-slot-v1" || 0x00 || uint32(slot + 16384 * writer)))  (writer 1-255)

(the chain's number: a writer's chains are its own, docs/api.md "Slot chains"; the two lengths keep the forms
apart).

Each key id of the KEK ring gives its own pair of
keys, so a KEK rotation starts new MACs and a new signing key while older ones still verify.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek
from aaa_fmip.errors import CryptoError

__all__ = [
    "AUDIT_GENESIS",
    "AuditKeys",
    "checkpoint_message",
    "entry_mac",
    "slot_genesis",
    "verify_checkpoint_signature",
]

AUDIT_GENESIS: Final = "0" * 64
_ENTRY_DOMAIN: Final = b"aaa-fmip-audit-v2\x00"
_CHECKPOINT_DOMAIN: Final = b"aaa-fmip-audit-checkpoint-v1\x00"
_SLOT_DOMAIN: Final = b"aaa-fmip-audit-slot-v1\x00"
_SLOTS: Final = 1 << 14  # hash slots (as aaa_fmip.store.slots, a layer above this one)
_CHAINS: Final = _SLOTS * 256  # slot-chain numbers: slot + 16384 * writer (0-255)
_MAC_INFO: Final = b"aaa-fmip audit entry MAC v2"
_SIGN_INFO: Final = b"aaa-fmip audit checkpoint Ed25519 v1"


def slot_genesis(number: int) -> str:
    """The ``prev`` of the first entry of the slot chain numbered ``number`` (module docstring)."""
    if not 0 <= number < _CHAINS:
        raise ValueError("slot chain number out of range")
    encoded = struct.pack(">H", number) if number < _SLOTS else struct.pack(">I", number)
    return hashlib.sha256(_SLOT_DOMAIN + encoded).hexdigest()


def _item(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack(">I", len(b)) + b


def _hkdf(kek: Kek, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(kek.key.reveal())


@dataclass(frozen=True)
class AuditKeys:
    """The audit keys of one KEK: the entry MAC key and the checkpoint signing key. Never printed."""

    key_id: str
    mac_key: SecretBytes = field(repr=False)
    _signing: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def derive(cls, kek: Kek) -> AuditKeys:
        seed = _hkdf(kek, _SIGN_INFO)
        return cls(kek.key_id, SecretBytes(_hkdf(kek, _MAC_INFO)), Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_key(self) -> bytes:
        """The 32-octet Ed25519 public key that verifies this key id's checkpoints (RFC 8032 §5.1.5)."""
        return self._signing.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def mac(self, n: int, prev: str, at: str, event: str, fields_json: str) -> str:
        return entry_mac(self.mac_key, n, prev, at, event, fields_json)

    def sign_checkpoint(self, n: int, head: str, at: str) -> bytes:
        return self._signing.sign(checkpoint_message(n, head, at))


def entry_mac(key: SecretBytes, n: int, prev: str, at: str, event: str, fields_json: str) -> str:
    """The hex MAC of one audit entry (encoding in the module docstring)."""
    data = _entry_head(n, prev, at) + _item(event) + _item(fields_json)
    return hmac.digest(key.reveal(), data, "sha256").hex()


def _entry_head(n: int, prev: str, at: str) -> bytes:
    if not 0 < n < 1 << 64:
        raise ValueError("audit position out of range")
    return _ENTRY_DOMAIN + struct.pack(">Q", n) + _item(prev) + _item(at)


def checkpoint_message(n: int, head: str, at: str) -> bytes:
    """The octets a checkpoint signature covers (module docstring)."""
    if not 0 <= n < 1 << 64:
        raise ValueError("audit position out of range")
    return _CHECKPOINT_DOMAIN + struct.pack(">Q", n) + _item(head) + _item(at)


def verify_checkpoint_signature(public_key: bytes, n: int, head: str, at: str, signature: bytes) -> None:
    """Raise :class:`CryptoError` unless ``signature`` is the Ed25519 signature of that checkpoint."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, checkpoint_message(n, head, at))
    except (InvalidSignature, ValueError):
        raise CryptoError("the checkpoint's signature does not verify") from None
