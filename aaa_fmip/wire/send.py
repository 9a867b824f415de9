"""SEND (RFC 3971) and CGA (RFC 3972) wire structures."""

from __future__ import annotations

from dataclasses import dataclass

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import Reader, Writer

# RFC 3971 §5.2: the CGA Message Type tag for SEND signatures (0x086F CA5E 10B2 00C9 9C8C E001 6427 7C08).
SEND_MESSAGE_TYPE_TAG = bytes.fromhex("086fca5e10b200c99c8ce00164277c08")


@dataclass(frozen=True)
class CGAParameters:
    """RFC 3972 §3 CGA Parameters: Modifier(16) | Subnet Prefix(8) | Collision Count(1) | Public Key | Ext.

    ``public_key`` is the DER SubjectPublicKeyInfo; ``extensions`` the raw Extension Fields (may be empty).
    """

    modifier: bytes
    subnet_prefix: bytes
    collision_count: int
    public_key: bytes
    extensions: bytes = b""

    def encode(self) -> bytes:
        if len(self.modifier) != 16 or len(self.subnet_prefix) != 8:
            raise ValueError("CGA modifier must be 16 octets and subnet prefix 8 octets")
        w = Writer()
        w.push_bytes(self.modifier)
        w.push_bytes(self.subnet_prefix)
        w.push_u8(self.collision_count)
        w.push_bytes(self.public_key)
        w.push_bytes(self.extensions)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes, *, base: int = 0) -> CGAParameters:
        """Decode; the public key's extent comes from its DER length (RFC 3972 §3)."""
        r = Reader(data, base=base)
        modifier = r.pull_bytes(16, "cga.modifier")
        prefix = r.pull_bytes(8, "cga.subnet_prefix")
        count = r.pull_u8("cga.collision_count")
        public_key = r.pull_bytes(_der_sequence_length(r, "cga.public_key"), "cga.public_key")
        return cls(modifier, prefix, count, public_key, r.pull_rest())


def _der_sequence_length(r: Reader, field: str) -> int:
    """Total length (header + content) of the DER SEQUENCE at the reader's position, without consuming it."""
    start = r.offset
    probe = Reader(r.peek_bytes(6), base=start)
    tag = probe.pull_u8(field)
    if tag != 0x30:
        raise DecodeError(f"expected a DER SEQUENCE (0x30), got 0x{tag:02x}", field=field, offset=start)
    first = probe.pull_u8(field)
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 3:
        raise DecodeError(f"unsupported DER length form 0x{first:02x}", field=field, offset=start + 1)
    return 2 + n + int.from_bytes(probe.pull_bytes(n, field), "big")
