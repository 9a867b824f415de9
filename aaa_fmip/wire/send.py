"""SEND (RFC 3971) and CGA (RFC 3972) wire structures (the ND option framing: :mod:`aaa_fmip.wire.nd`).

This is the lowest of the ND codecs: :mod:`aaa_fmip.wire.icmpv6` builds on the option framing and the SEND
options defined here. ``signature_input`` and ``find_rsa_signature`` work on raw message octets, because a
signature covers the octets a peer sent, however it chose to pad them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import (
    Reader,
    Writer,
    internet_checksum,
    ipv6_pseudo_header,
    zero_padding,
)
from aaa_fmip.wire.nd import (
    ND_OPTION_UNIT,
    NDOptionType,
    RawNDOption,
    check_length,
    check_uint,
    iter_nd_options,
    nd_option,
    nd_option_padded,
)

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


# --- SEND options (RFC 3971 §5) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CGAOption:
    """CGA option (ND 11, RFC 3971 §5.1): ``Pad Length | Reserved | CGA Parameters | Padding``."""

    option_type: ClassVar[int] = NDOptionType.CGA

    parameters: CGAParameters

    def encode(self) -> bytes:
        check_uint("CGA collision count", self.parameters.collision_count, 8)
        params = self.parameters.encode()
        pad = zero_padding(4 + len(params), ND_OPTION_UNIT)
        return nd_option(self.option_type, bytes((len(pad), 0)) + params + pad)

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> CGAOption:
        r = Reader(body, base=offset)
        pad_length = r.pull_u8("nd.cga.pad_length")
        r.pull_u8("nd.cga.reserved")  # RFC 3971 §5.1: ignored by the receiver
        if pad_length > r.remaining():
            raise DecodeError(
                f"pad length {pad_length} exceeds the {r.remaining()} octets left",
                field="nd.cga.pad_length",
                offset=offset,
            )
        start = r.offset
        params = r.pull_bytes(r.remaining() - pad_length, "nd.cga.parameters")
        return cls(CGAParameters.decode(params, base=start))  # padding: ignored by the receiver (RFC 3971 §5.1)


_RSA_ASSUMED_PADDING = 4  # a signature of 8k octets in an option of 8m octets leaves 4 octets of padding


@dataclass(frozen=True)
class RSASignature:
    """RSA Signature option (ND 12, RFC 3971 §5.2): ``Reserved(2) | Key Hash(16) | Digital Signature | Padding``.

    The option does not say where the signature ends: its length is the modulus length of the signer's key.
    The encoder appends zero padding. The decoder assumes a signature of a multiple of 8 octets (every RSA
    modulus of 64n bits: 1024, 2048, 3072, 4096), so it drops the 4 trailing octets when they are zero and
    otherwise keeps the whole field; :meth:`signature_for_modulus` recovers the exact signature for any key.
    """

    option_type: ClassVar[int] = NDOptionType.RSA_SIGNATURE

    key_hash: bytes  # 16 octets: leftmost 128 bits of SHA-1 over the signer's DER public key
    signature: bytes  # RSASSA-PKCS1-v1_5 / SHA-1, as many octets as the signer's modulus

    def encode(self) -> bytes:
        check_length("RSA Signature key hash", self.key_hash, 16)
        return nd_option_padded(self.option_type, b"\x00\x00" + self.key_hash + self.signature)

    def signature_for_modulus(self, modulus_length: int) -> bytes:
        """The Digital Signature field cut or zero-extended to ``modulus_length`` octets (the key's size).

        Whatever the sender put in the padding, the signature is the first ``modulus_length`` octets of the
        field; when the decoder took zero padding for signature octets or the reverse, this restores them.
        """
        if len(self.signature) >= modulus_length:
            return self.signature[:modulus_length]
        return self.signature + bytes(modulus_length - len(self.signature))

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> RSASignature:
        r = Reader(body, base=offset)
        r.pull_bytes(2, "nd.rsa_signature.reserved")  # RFC 3971 §5.2: ignored by the receiver
        key_hash = r.pull_bytes(16, "nd.rsa_signature.key_hash")
        field = r.pull_rest()
        if len(field) >= _RSA_ASSUMED_PADDING and not any(field[-_RSA_ASSUMED_PADDING:]):
            field = field[:-_RSA_ASSUMED_PADDING]
        return cls(key_hash, field)


TIMESTAMP_UNITS_PER_SECOND = 1 << 16  # RFC 3971 §5.3.1: 48-bit seconds, 16-bit 1/64K fractions


@dataclass(frozen=True)
class Timestamp:
    """Timestamp option (ND 13, RFC 3971 §5.3.1): ``Reserved(6) | Timestamp(8)``, Length 2."""

    option_type: ClassVar[int] = NDOptionType.TIMESTAMP

    value: int  # 48.16 fixed point: units of 1/65536 s since 1970-01-01 00:00 UTC

    @classmethod
    def from_seconds(cls, seconds: float | int) -> Timestamp:
        """From POSIX seconds (fractions rounded to the nearest 1/65536 s)."""
        return cls(round(seconds * TIMESTAMP_UNITS_PER_SECOND))

    @property
    def seconds(self) -> float:
        return self.value / TIMESTAMP_UNITS_PER_SECOND

    def encode(self) -> bytes:
        check_uint("Timestamp value", self.value, 64)
        return nd_option(self.option_type, bytes(6) + self.value.to_bytes(8, "big"))

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> Timestamp:
        if len(body) != 14:
            raise DecodeError(
                f"Timestamp option must be 16 octets, got {len(body) + 2}",
                field="nd.timestamp.length",
                offset=offset - 1,
            )
        r = Reader(body, base=offset)
        r.pull_bytes(6, "nd.timestamp.reserved")  # RFC 3971 §5.3.1: ignored by the receiver
        return cls(r.pull_u64("nd.timestamp.value"))


@dataclass(frozen=True)
class Nonce:
    """Nonce option (ND 14, RFC 3971 §5.3.2): at least 6 random octets, filling the option to 8n octets."""

    option_type: ClassVar[int] = NDOptionType.NONCE

    nonce: bytes  # 8n+6 octets, n >= 0

    def encode(self) -> bytes:
        if len(self.nonce) < 6 or (len(self.nonce) + 2) % ND_OPTION_UNIT:
            raise ValueError("a Nonce must be 8n+6 octets with n >= 0 (RFC 3971 §5.3.2)")
        return nd_option(self.option_type, self.nonce)

    @classmethod
    def decode_body(cls, body: bytes, *, offset: int) -> Nonce:
        return cls(body)


# --- RFC 3971 §5.2: the signed data ----------------------------------------------------------------------------

ICMPV6_NEXT_HEADER = 58  # RFC 4443 §2.3: the pseudo-header's Next Header for ICMPv6

# Octets of the message header between the ICMPv6 Checksum and the first option (RFC 3971 §5.2 item 5).
ND_HEADER_AFTER_CHECKSUM: dict[int, int] = {
    133: 4,  # Router Solicitation, RFC 4861 §4.1
    134: 12,  # Router Advertisement, RFC 4861 §4.2
    135: 20,  # Neighbor Solicitation, RFC 4861 §4.3
    136: 20,  # Neighbor Advertisement, RFC 4861 §4.4
    137: 36,  # Redirect, RFC 4861 §4.5
    148: 4,  # Certification Path Solicitation, RFC 3971 §6.4.1
    149: 8,  # Certification Path Advertisement, RFC 3971 §6.4.2
    154: 4,  # FMIPv6 messages (Subtype, Reserved, Identifier), RFC 5568 §6.1
}


def _locate_rsa_signature(icmp: bytes) -> tuple[int, RawNDOption | None]:
    """(offset of the first option, the first RSA Signature option or None), validating the framing up to it."""
    r = Reader(icmp)
    icmp_type = r.pull_u8("icmpv6.type")
    r.pull_bytes(3, "icmpv6.checksum")
    header = ND_HEADER_AFTER_CHECKSUM.get(icmp_type)
    if header is None:
        raise DecodeError(f"ICMPv6 type {icmp_type} carries no ND options SEND can sign", field="icmpv6.type", offset=0)
    r.pull_bytes(header, "icmpv6.header")
    options_start = r.offset
    for option in iter_nd_options(icmp, options_start):
        if option.type == NDOptionType.RSA_SIGNATURE:
            return options_start, option  # RFC 3971 §5.2.2: options after the first one are ignored
    return options_start, None


def find_rsa_signature(icmp: bytes) -> RSASignature | None:
    """The first RSA Signature option of a raw ICMPv6 ND message, or None when it has none.

    Options after the first RSA Signature option are ignored (RFC 3971 §5.2.2). Malformed framing before it
    raises DecodeError.
    """
    _, option = _locate_rsa_signature(icmp)
    if option is None:
        return None
    return RSASignature.decode_body(option.body, offset=option.offset + 2)


def signature_input(icmp: bytes, *, source: IPv6Address, destination: IPv6Address) -> bytes:
    """The data a SEND signature covers (RFC 3971 §5.2), without the 16-octet CGA Message Type tag.

    ``source | destination | Type | Code | Checksum | header after the checksum | options before the first
    RSA Signature option``, taken from the raw octets (a peer may pad its options differently from us).
    The Checksum is the ICMPv6 checksum of the message cut before the RSA Signature option (architecture
    §3: RFC 3971 is circular here; this is what deployed SEND stacks sign). For a message without an RSA
    Signature option (the signer's case: sign, then append the option) the whole message is used.
    Raises DecodeError on malformed framing.
    """
    _, option = _locate_rsa_signature(icmp)
    signed = icmp if option is None else icmp[: option.offset]
    zeroed = signed[:2] + b"\x00\x00" + signed[4:]
    checksum = internet_checksum(ipv6_pseudo_header(source, destination, len(signed), ICMPV6_NEXT_HEADER) + zeroed)
    return source.packed + destination.packed + signed[:2] + checksum.to_bytes(2, "big") + signed[4:]
