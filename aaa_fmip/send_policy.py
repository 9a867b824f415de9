"""The RFC 5269 SEND fallback without IO: the verification policy and the check of a received RtSolPr.

An AR hands the key service the RtSolPr it received (architecture.md §4). Before any handover key is looked up
or generated, :func:`verify_rtsolpr` checks, cheapest first:

1. the ICMPv6 checksum and framing, and that the message is an RtSolPr (RFC 5568 §6.1.1);
2. that the options before the RSA Signature option hold a CGA option, a Timestamp, a Nonce and a Handover
   Key Request (RFC 3971 §5.1-§5.3, RFC 5269 §3.1); options after the signature are ignored (RFC 3971 §5.2.2),
   so an option appended to a signed message is never used;
3. the Timestamp against the receiver's clock: ``-TIMESTAMP_DELTA < now - TSnew < +TIMESTAMP_DELTA``
   (RFC 3971 §5.3.4.1, the rule for a sender with no cached state);
4. the size of the CGA key and of the handover-key-encryption key: ``min_key_bits <= bits <= max_key_bits``
   (RFC 3971 §5.1.3), before any RSA operation on them;
5. the CGA: collision count, subnet prefix, Hash1, and Hash2 against the Sec in the address (RFC 3972 §5);
6. the RSA Signature option's Key Hash against the CGA key, then the signature over the SEND tag, the
   addresses and the message up to the signature option (RFC 3971 §5.2.2, checksum rule of architecture.md §3);
7. that the handover-key-encryption key is not the CGA key (RFC 5269 §3.1).

Each failure raises its own :class:`~aaa_fmip.errors.VerificationError` subclass (a stable ``reason``), a
:class:`~aaa_fmip.errors.DecodeError` (malformed) or :class:`~aaa_fmip.errors.InvalidRequest` (not an
RtSolPr). Replay of the Nonce is the caller's check (it needs the store), made only after all of these pass;
:attr:`VerifiedRtSolPr.nonce_ttl` says how long to remember it.

No per-sender timestamp cache is kept, so the RFC 3971 §5.3.4.1 rule for known peers (TIMESTAMP_FUZZ,
TIMESTAMP_DRIFT) does not apply; the Nonce cache covers replays inside the window instead, and the fuzz is the
margin added to its lifetime.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from aaa_fmip import keys
from aaa_fmip.crypto import cga, rsa
from aaa_fmip.crypto.badf import Algorithm
from aaa_fmip.crypto.secrets import SecretBytes, constant_time_equal
from aaa_fmip.errors import BadSignature, InvalidRequest, VerificationError
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import send as sendwire

__all__ = [
    "MAX_KEY_LIFETIME",
    "TIMESTAMP_DELTA",
    "TIMESTAMP_DRIFT",
    "TIMESTAMP_FUZZ",
    "EncryptionKeyIsCgaKey",
    "KeyHashMismatch",
    "MissingCgaOption",
    "MissingHandoverKeyRequest",
    "MissingNonce",
    "MissingSignature",
    "MissingTimestamp",
    "ReplayedNonce",
    "SendHandoverKeyResult",
    "SendPolicy",
    "StaleTimestamp",
    "VerifiedRtSolPr",
    "choose_algorithm",
    "sign_send_message",
    "verify_rtsolpr",
]

# RFC 3971 §10.2 protocol variables (seconds, and a fraction for the drift).
TIMESTAMP_DELTA: Final = 300.0
TIMESTAMP_FUZZ: Final = 1.0
TIMESTAMP_DRIFT: Final = 0.01
MAX_KEY_LIFETIME: Final = 0xFFFF  # RFC 5269 §4.2: Key Lifetime is a 16-bit number of seconds
_MIN_POLICY_KEY_BITS: Final = 512  # RFC 3972 §3 / RFC 3971 §5.1.3: below 384 bits is never acceptable
_MAX_POLICY_KEY_BITS: Final = 16384


# --- errors (each a stable reason; the REST adapter answers 422 with it) -------------------------------------


class MissingCgaOption(VerificationError):
    """No CGA option before the RSA Signature option (RFC 3971 §5.1)."""

    reason = "missing-cga-option"


class MissingSignature(VerificationError):
    """No RSA Signature option (RFC 3971 §5.2): the RtSolPr is not SEND-protected."""

    reason = "missing-signature"


class MissingTimestamp(VerificationError):
    """No Timestamp option before the signature (RFC 3971 §5.3.4: signed messages without one are dropped)."""

    reason = "missing-timestamp"


class MissingNonce(VerificationError):
    """No Nonce option before the signature (RFC 3971 §5.3.4: signed solicitations without one are dropped)."""

    reason = "missing-nonce"


class MissingHandoverKeyRequest(VerificationError):
    """No Handover Key Request option before the signature (RFC 5269 §3.1)."""

    reason = "missing-handover-key-request"


class StaleTimestamp(VerificationError):
    """The Timestamp is outside the receiver's window (RFC 3971 §5.3.4.1)."""

    reason = "stale-timestamp"


class KeyHashMismatch(BadSignature):
    """The RSA Signature option's Key Hash does not name the CGA option's key (RFC 3971 §5.2.2)."""

    reason = "key-hash-mismatch"


class EncryptionKeyIsCgaKey(VerificationError):
    """The handover-key-encryption key is the CGA key, which RFC 5269 §3.1 forbids."""

    reason = "encryption-key-is-cga-key"


class ReplayedNonce(VerificationError):
    """The same CGA sent the same Nonce within the timestamp window (RFC 3971 §5.3.2)."""

    reason = "replayed-nonce"


# --- policy ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendPolicy:
    """What the service accepts on the SEND path, and the lifetime of the keys it issues there.

    ``min_key_bits`` / ``max_key_bits`` bound both the CGA key and the handover-key-encryption key
    (RFC 3971 §5.1.3: minbits defaults to 1024; the upper bound SHOULD be at least 2048). ``hk_lifetime`` is
    RFC 5269's HK-LIFETIME (§3.7, 12 hours); the service also caps it by its maximum key lifetime.
    """

    min_key_bits: int = rsa.MIN_KEY_BITS
    max_key_bits: int = rsa.MAX_KEY_BITS
    hk_lifetime: int = keys.DEFAULT_MAX_LIFETIME
    timestamp_delta: float = TIMESTAMP_DELTA
    timestamp_fuzz: float = TIMESTAMP_FUZZ

    def __post_init__(self) -> None:
        for name in ("min_key_bits", "max_key_bits", "hk_lifetime"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer")
        if not _MIN_POLICY_KEY_BITS <= self.min_key_bits <= self.max_key_bits <= _MAX_POLICY_KEY_BITS:
            raise ValueError(
                f"key size bounds must satisfy {_MIN_POLICY_KEY_BITS} <= min_key_bits <= max_key_bits "
                f"<= {_MAX_POLICY_KEY_BITS}"
            )
        if not 1 <= self.hk_lifetime <= MAX_KEY_LIFETIME:
            raise ValueError(f"hk_lifetime must be 1..{MAX_KEY_LIFETIME} seconds (a 16-bit field, RFC 5269 §4.2)")
        if not self.timestamp_delta > 0 or not self.timestamp_fuzz >= 0:
            raise ValueError("timestamp_delta must be positive and timestamp_fuzz not negative")

    def granted_lifetime(self, max_lifetime: int) -> int:
        """The lifetime of a new handover key: HK-LIFETIME, never above the service's maximum."""
        return max(1, min(self.hk_lifetime, max_lifetime))

    def check_timestamp(self, timestamp: float, now: float) -> None:
        """RFC 3971 §5.3.4.1: accept iff ``-delta < now - timestamp < +delta``; raises :class:`StaleTimestamp`."""
        skew = now - timestamp
        if not -self.timestamp_delta < skew < self.timestamp_delta:
            direction = "behind" if skew > 0 else "ahead of"
            raise StaleTimestamp(
                f"the Timestamp is {abs(skew):.0f} s {direction} the service clock; "
                f"the window is ±{self.timestamp_delta:g} s (RFC 3971 §5.3.4.1)"
            )

    def nonce_ttl(self, timestamp: float, now: float) -> int:
        """Seconds to remember a Nonce: until a message with this Timestamp falls out of the window, plus the
        fuzz. Always at least 1 and at most ``2 * delta + fuzz`` for an accepted Timestamp."""
        return max(1, math.ceil(timestamp + self.timestamp_delta - now + self.timestamp_fuzz))


def choose_algorithm(requested: int) -> Algorithm:
    """The AT to answer with: the MN's choice when supported, else the strongest supported (RFC 5269 §3.2
    asks for one of equal or greater strength, which cannot be judged for a code point nobody defined)."""
    try:
        return Algorithm(int(requested))
    except ValueError:
        return max(Algorithm, key=lambda a: a.authenticator_length)


# --- verification ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedRtSolPr:
    """What a verified RtSolPr tells the service. Public values only."""

    source: ipaddress.IPv6Address  # the MN's CGA (its PCoA)
    destination: ipaddress.IPv6Address  # the AR address it was sent to
    identifier: int  # copied into the PrRtAdv
    cga_key_hash: bytes  # RFC 3971 §5.2 Key Hash of the CGA key: one live HK per value
    cga_key_bits: int
    encryption_key: bytes  # DER SubjectPublicKeyInfo from the Handover Key Request
    requested_algorithm: int  # AT of the Handover Key Request
    algorithm: Algorithm  # AT to answer with
    nonce: bytes
    timestamp: float  # POSIX seconds
    nonce_ttl: int  # seconds to remember (source, nonce) for replay detection


def _first(options: tuple[icmpv6.NDOption, ...], kind: type[object]) -> object | None:
    return next((o for o in options if isinstance(o, kind)), None)


def verify_rtsolpr(
    message: bytes,
    *,
    source: ipaddress.IPv6Address,
    destination: ipaddress.IPv6Address,
    now: float,
    policy: SendPolicy,
) -> VerifiedRtSolPr:
    """Verify a SEND-signed RtSolPr carrying a Handover Key Request (the steps of the module docstring).

    ``message`` is the ICMPv6 message as received, ``source`` / ``destination`` its IPv6 addresses, ``now``
    the receiver's clock in POSIX seconds.
    """
    decoded = icmpv6.decode_icmpv6(message, source=source, destination=destination)
    if not isinstance(decoded, icmpv6.RtSolPr):
        raise InvalidRequest("the ICMPv6 message is not an RtSolPr (type 154, subtype 2)", reason="not-rtsolpr")

    signed: list[icmpv6.NDOption] = []
    signature: icmpv6.RSASignature | None = None
    for option in decoded.options:
        if isinstance(option, icmpv6.RSASignature):
            signature = option
            break
        signed.append(option)
    options = tuple(signed)
    if signature is None:
        raise MissingSignature("the RtSolPr carries no RSA Signature option")
    cga_option = _first(options, icmpv6.CGAOption)
    if not isinstance(cga_option, icmpv6.CGAOption):
        raise MissingCgaOption("the RtSolPr carries no CGA option before its RSA Signature option")
    timestamp = _first(options, icmpv6.Timestamp)
    if not isinstance(timestamp, icmpv6.Timestamp):
        raise MissingTimestamp("the RtSolPr carries no Timestamp option before its RSA Signature option")
    nonce = _first(options, icmpv6.Nonce)
    if not isinstance(nonce, icmpv6.Nonce):
        raise MissingNonce("the RtSolPr carries no Nonce option before its RSA Signature option")
    request = _first(options, icmpv6.HandoverKeyRequest)
    if not isinstance(request, icmpv6.HandoverKeyRequest):
        raise MissingHandoverKeyRequest("the RtSolPr carries no Handover Key Request option")

    policy.check_timestamp(timestamp.seconds, now)

    public_key = cga_option.parameters.public_key
    bits = rsa.check_key_size(public_key, min_bits=policy.min_key_bits, max_bits=policy.max_key_bits)
    rsa.check_key_size(request.public_key, min_bits=policy.min_key_bits, max_bits=policy.max_key_bits)

    cga.verify_cga(source, cga_option.parameters)
    key_hash = cga.key_hash(public_key)
    if not constant_time_equal(signature.key_hash, key_hash):
        raise KeyHashMismatch("the RSA Signature option's Key Hash does not name the CGA option's key")
    data = sendwire.signature_input(message, source=source, destination=destination)
    rsa.send_verify(
        public_key,
        data,
        signature.signature_for_modulus((bits + 7) // 8),
        min_bits=policy.min_key_bits,
        max_bits=policy.max_key_bits,
    )
    if constant_time_equal(request.public_key, public_key):
        raise EncryptionKeyIsCgaKey("the handover-key-encryption key must not be the CGA key (RFC 5269 §3.1)")

    return VerifiedRtSolPr(
        source=source,
        destination=destination,
        identifier=decoded.identifier,
        cga_key_hash=key_hash,
        cga_key_bits=bits,
        encryption_key=request.public_key,
        requested_algorithm=int(request.algorithm_type),
        algorithm=choose_algorithm(int(request.algorithm_type)),
        nonce=nonce.nonce,
        timestamp=timestamp.seconds,
        nonce_ttl=policy.nonce_ttl(timestamp.seconds, now),
    )


# --- the service's answer --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendHandoverKeyResult:
    """What :meth:`aaa_fmip.service.HandoverKeyService.send_handover_key` returns to the AR."""

    handover_key_reply: bytes  # the encoded Handover Key Reply option (ND 28), for the AR's PrRtAdv
    nonce: bytes  # the RtSolPr's Nonce, which the PrRtAdv echoes
    identifier: int  # the RtSolPr's Identifier, which the PrRtAdv copies
    lifetime: int  # seconds; the Key Lifetime in the option
    hk: SecretBytes = field(repr=False)  # for the AR's own FBU verification (SPI 0)
    hk_expires_at: float  # POSIX seconds
    algorithm: Algorithm
    cga: ipaddress.IPv6Address
    cga_key_hash: bytes
    reused: bool  # True: the live key of this CGA key, encrypted anew; False: a fresh key


def sign_send_message(
    build: Callable[[tuple[icmpv6.NDOption, ...]], icmpv6.Icmpv6Message],
    options: Sequence[icmpv6.NDOption],
    *,
    private_key: rsa.RSAPrivateKey,
    public_key: bytes,
    source: ipaddress.IPv6Address,
    destination: ipaddress.IPv6Address,
) -> bytes:
    """The encoded message ``build(options + RSA Signature)``, signed per RFC 3971 §5.2 (the counterpart of the
    check in :func:`verify_rtsolpr`): the signature covers the message encoded without the RSA Signature option
    (architecture.md §3), which is then appended as the last option. ``public_key`` is the signer's DER key, as
    in its CGA Parameters (the Key Hash is taken over it)."""
    unsigned = icmpv6.encode_icmpv6(build(tuple(options)), source=source, destination=destination)
    data = sendwire.signature_input(unsigned, source=source, destination=destination)
    signature = icmpv6.RSASignature(cga.key_hash(public_key), rsa.send_sign(private_key, data))
    return icmpv6.encode_icmpv6(build((*options, signature)), source=source, destination=destination)
