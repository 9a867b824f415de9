"""RSA for SEND (RFC 3971), CGA signatures (RFC 3972 §6) and RFC 5269 handover-key transport.

* Public keys travel as DER SubjectPublicKeyInfo, exactly as in the CGA Parameters' Public Key field
  (RFC 3972 §3) and the Handover Key Request option (RFC 5269 §4.1).
* Signatures are RSASSA-PKCS1-v1_5 with SHA-1 over ``128-bit CGA Message Type tag | data`` (RFC 3972 §6,
  RFC 3971 §5.2 for SEND's tag).
* The handover key is encrypted with RSAES-PKCS1-v1_5 (RFC 5269 §3.2, RFC 3447 §7.2).

Callers outside :mod:`aaa_fmip.crypto` use the opaque aliases :data:`RSAPrivateKey` / :data:`RSAPublicKey` and
the functions here; they never import ``cryptography`` themselves.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa as _rsa

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import BadSignature, CryptoError, VerificationError
from aaa_fmip.wire.send import SEND_MESSAGE_TYPE_TAG

RSAPrivateKey: TypeAlias = _rsa.RSAPrivateKey
RSAPublicKey: TypeAlias = _rsa.RSAPublicKey

PUBLIC_EXPONENT: Final = 65537
DEFAULT_KEY_BITS: Final = 2048
MIN_KEY_BITS: Final = 1024  # RFC 3971 §5.1.3: verifiers' default minbits
MAX_KEY_BITS: Final = 4096  # RFC 3971 §5.1.3: an upper bound, which SHOULD be at least 2048
MIN_GENERATED_KEY_BITS: Final = 1024  # the smallest key this module generates
HANDOVER_KEY_LENGTH: Final = 32  # what the project's AR side generates (RFC 5269 §3.6 leaves it open)
_PKCS1_V15_OVERHEAD: Final = 11  # RFC 3447 §7.2.1: mLen <= k - 11


def _send_digest() -> hashes.HashAlgorithm:
    return hashes.SHA1()  # noqa: S303 - RFC 3971 §5.2 and RFC 3972 §6 fix SHA-1; no negotiation exists


class BadPublicKey(VerificationError, CryptoError):
    """A peer's public key is not a DER SubjectPublicKeyInfo holding an RSA key.

    Both a verification failure (the peer sent it) and the "bad public key" :class:`CryptoError`.
    """

    reason = "bad-public-key"


class KeyTooSmall(VerificationError):
    """RSA modulus below the verifier's minimum (RFC 3971 §5.1.3 minbits)."""

    reason = "key-too-small"


class KeyTooLarge(VerificationError):
    """RSA modulus above the verifier's upper bound (RFC 3971 §5.1.3)."""

    reason = "key-too-large"


class HandoverKeyDecryptionError(CryptoError):
    """An RFC 5269 Encrypted Handover Key could not be decrypted to a key of the expected size.

    PKCS#1 v1.5 padding errors are not reported as such (the backend applies implicit rejection against
    Bleichenbacher-style oracles): a tampered ciphertext usually fails the length check here, otherwise it yields
    a wrong key that the PAR then rejects.
    """


def generate_private_key(bits: int = DEFAULT_KEY_BITS) -> RSAPrivateKey:
    """A fresh RSA key with e = 65537 (the SEND stacks' choice; architecture.md §3)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < MIN_GENERATED_KEY_BITS or bits % 8:
        raise ValueError(f"RSA key size must be a multiple of 8 bits, at least {MIN_GENERATED_KEY_BITS}")
    return _rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits)


def public_key_der(key: RSAPrivateKey | RSAPublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of ``key`` (or of a private key's public half)."""
    public = key.public_key() if isinstance(key, _rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key_der(der: bytes) -> RSAPublicKey:
    """Parse a DER SubjectPublicKeyInfo that must hold an RSA key; raises :class:`BadPublicKey`."""
    try:
        key = serialization.load_der_public_key(bytes(der))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadPublicKey("public key is not a valid DER SubjectPublicKeyInfo") from None
    if not isinstance(key, _rsa.RSAPublicKey):
        raise BadPublicKey("public key is not an RSA key (rsaEncryption required by RFC 3971 §5.1)")
    return key


def key_bits(key: RSAPrivateKey | RSAPublicKey | bytes) -> int:
    """Modulus size in bits of a key object or a DER SubjectPublicKeyInfo."""
    if isinstance(key, bytes | bytearray | memoryview):
        return load_public_key_der(bytes(key)).key_size
    return key.key_size


def check_key_size(
    key: RSAPrivateKey | RSAPublicKey | bytes, *, min_bits: int = MIN_KEY_BITS, max_bits: int = MAX_KEY_BITS
) -> int:
    """Apply the RFC 3971 §5.1.3 key-size policy; returns the size or raises KeyTooSmall / KeyTooLarge."""
    bits = key_bits(key)
    if bits < min_bits:
        raise KeyTooSmall(f"RSA key of {bits} bits is below the minimum of {min_bits}")
    if bits > max_bits:
        raise KeyTooLarge(f"RSA key of {bits} bits is above the maximum of {max_bits}")
    return bits


def serialize_private_key(key: RSAPrivateKey) -> SecretBytes:
    """Unencrypted PKCS#8 DER, for a key file the caller protects."""
    return SecretBytes(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def load_private_key(data: bytes | SecretBytes) -> RSAPrivateKey:
    """Load an unencrypted RSA private key from PKCS#8/PKCS#1 DER or PEM; raises :class:`CryptoError`."""
    raw = data.reveal() if isinstance(data, SecretBytes) else bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(raw, password=None)
        else:
            key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CryptoError("not an unencrypted RSA private key in DER or PEM") from None
    if not isinstance(key, _rsa.RSAPrivateKey):
        raise CryptoError("private key is not an RSA key")
    return key


def cga_sign(private_key: RSAPrivateKey, message_type_tag: bytes, data: bytes) -> bytes:
    """RFC 3972 §6 CGA signature: RSASSA-PKCS1-v1_5 / SHA-1 over ``tag | data`` (the tag is not transmitted)."""
    if len(message_type_tag) != 16:
        raise ValueError("CGA Message Type tag must be 16 octets (RFC 3972 §8)")
    return private_key.sign(bytes(message_type_tag) + bytes(data), padding.PKCS1v15(), _send_digest())


def cga_verify(
    public_key: bytes,
    message_type_tag: bytes,
    data: bytes,
    signature: bytes,
    *,
    min_bits: int = MIN_KEY_BITS,
    max_bits: int = MAX_KEY_BITS,
) -> None:
    """Verify an RFC 3972 §6 CGA signature made with the key whose DER SubjectPublicKeyInfo is ``public_key``.

    Raises :class:`BadPublicKey`, :class:`KeyTooSmall`, :class:`KeyTooLarge` or
    :class:`~aaa_fmip.errors.BadSignature`.
    """
    if len(message_type_tag) != 16:
        raise ValueError("CGA Message Type tag must be 16 octets (RFC 3972 §8)")
    key = load_public_key_der(public_key)
    check_key_size(key, min_bits=min_bits, max_bits=max_bits)
    try:
        key.verify(bytes(signature), bytes(message_type_tag) + bytes(data), padding.PKCS1v15(), _send_digest())
    except InvalidSignature:
        raise BadSignature("RSA signature does not verify") from None


def send_sign(private_key: RSAPrivateKey, data: bytes) -> bytes:
    """The SEND RSA Signature option's Digital Signature over ``data`` (RFC 3971 §5.2: the SEND tag is prefixed).

    ``data`` = source address | destination address | ICMP type, code, checksum | message header after the
    checksum | options before the RSA Signature option.
    """
    return cga_sign(private_key, SEND_MESSAGE_TYPE_TAG, data)


def send_verify(
    public_key_der: bytes,
    data: bytes,
    signature: bytes,
    *,
    min_bits: int = MIN_KEY_BITS,
    max_bits: int = MAX_KEY_BITS,
) -> None:
    """Verify a SEND signature (RFC 3971 §5.2.2); raises as :func:`cga_verify`."""
    cga_verify(public_key_der, SEND_MESSAGE_TYPE_TAG, data, signature, min_bits=min_bits, max_bits=max_bits)


def encrypt_handover_key(
    public_key_der: bytes,
    hk: bytes | SecretBytes,
    *,
    min_bits: int = MIN_KEY_BITS,
    max_bits: int = MAX_KEY_BITS,
) -> bytes:
    """RFC 5269 §3.2 Encrypted Handover Key: RSAES-PKCS1-v1_5 of ``hk`` under the MN's handover-key-encryption
    public key (DER SubjectPublicKeyInfo from the Handover Key Request option). The ciphertext has the modulus
    length. Raises :class:`BadPublicKey`, :class:`KeyTooSmall` or :class:`KeyTooLarge`."""
    raw = hk.reveal() if isinstance(hk, SecretBytes) else bytes(hk)
    if not raw:
        raise ValueError("handover key must not be empty")
    key = load_public_key_der(public_key_der)
    check_key_size(key, min_bits=min_bits, max_bits=max_bits)
    if len(raw) > key.key_size // 8 - _PKCS1_V15_OVERHEAD:
        raise ValueError("handover key too long for RSAES-PKCS1-v1_5 with this key (RFC 3447 §7.2.1)")
    return key.encrypt(raw, padding.PKCS1v15())


def decrypt_handover_key(
    private_key: RSAPrivateKey, ciphertext: bytes, *, expected_length: int | None = HANDOVER_KEY_LENGTH
) -> SecretBytes:
    """Decrypt an RFC 5269 Encrypted Handover Key with the MN's handover-key-encryption private key.

    ``expected_length`` (32, what the project's ARs send; None to accept any non-empty key) makes most tampered
    ciphertexts fail here. Raises :class:`HandoverKeyDecryptionError`.
    """
    modulus_octets = (private_key.key_size + 7) // 8
    if len(ciphertext) != modulus_octets:
        raise HandoverKeyDecryptionError(
            f"encrypted handover key is {len(ciphertext)} octets, the key's modulus is {modulus_octets}"
        )
    try:
        plain = private_key.decrypt(bytes(ciphertext), padding.PKCS1v15())
    except ValueError:
        raise HandoverKeyDecryptionError("encrypted handover key could not be decrypted") from None
    if not plain or (expected_length is not None and len(plain) != expected_length):
        raise HandoverKeyDecryptionError("decrypted handover key has an unexpected length")
    return SecretBytes(plain)
