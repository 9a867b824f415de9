"""RSA for SEND (RFC 3971 §5.2), CGA signatures (RFC 3972 §6) and RFC 5269 handover-key transport.

The ``openssl`` command line is the independent oracle: it verifies our signatures over the SEND tag and
encrypts handover keys that we decrypt.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip.crypto import rsa
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import BadSignature, CryptoError, VerificationError
from aaa_fmip.wire.send import SEND_MESSAGE_TYPE_TAG
from tests.crypto._vectors import load

APPENDIX_A_KEY = bytes.fromhex(load("rfc3972-appendix-a.json")["public_key"])  # a 512-bit RSA key


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(1024)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(1024)


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory, key: rsa.RSAPrivateKey) -> Iterator[tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("rsa")
    (d / "key.der").write_bytes(rsa.serialize_private_key(key).reveal())
    (d / "pub.der").write_bytes(rsa.public_key_der(key))
    subprocess.run(
        ["openssl", "pkey", "-inform", "DER", "-in", d / "key.der", "-out", d / "key.pem"], check=True, timeout=30
    )
    subprocess.run(
        ["openssl", "pkey", "-pubin", "-inform", "DER", "-in", d / "pub.der", "-out", d / "pub.pem"],
        check=True,
        timeout=30,
    )
    yield d / "key.pem", d / "pub.pem"


def test_key_generation_and_der() -> None:
    with pytest.raises(ValueError, match="at least 1024"):
        rsa.generate_private_key(512)
    k = rsa.generate_private_key(1024)
    der = rsa.public_key_der(k)
    assert der == rsa.public_key_der(k.public_key())
    assert rsa.key_bits(der) == rsa.key_bits(k) == 1024
    assert rsa.load_public_key_der(der).public_numbers().e == 65537
    assert rsa.public_key_der(rsa.load_private_key(rsa.serialize_private_key(k))) == der


def test_load_private_key_accepts_pem(pem_files: tuple[Path, Path], key: rsa.RSAPrivateKey) -> None:
    assert rsa.public_key_der(rsa.load_private_key(pem_files[0].read_bytes())) == rsa.public_key_der(key)
    with pytest.raises(CryptoError):
        rsa.load_private_key(b"not a key")


def test_serialized_private_key_is_secret(key: rsa.RSAPrivateKey) -> None:
    blob = rsa.serialize_private_key(key)
    assert isinstance(blob, SecretBytes)
    assert "redacted" in repr(blob)


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x00", b"garbage" * 10])
def test_bad_public_keys(der: bytes) -> None:
    with pytest.raises(rsa.BadPublicKey) as info:
        rsa.load_public_key_der(der)
    assert info.value.reason == "bad-public-key"
    assert isinstance(info.value, VerificationError) and isinstance(info.value, CryptoError)


def test_non_rsa_public_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(rsa.BadPublicKey, match="not an RSA key"):
        rsa.load_public_key_der(der)


def test_key_size_policy(key: rsa.RSAPrivateKey) -> None:
    assert rsa.key_bits(APPENDIX_A_KEY) == 512
    with pytest.raises(rsa.KeyTooSmall) as info:
        rsa.check_key_size(APPENDIX_A_KEY)
    assert info.value.reason == "key-too-small"
    assert rsa.check_key_size(APPENDIX_A_KEY, min_bits=384) == 512
    with pytest.raises(rsa.KeyTooLarge) as large:
        rsa.check_key_size(key, max_bits=768)
    assert large.value.reason == "key-too-large"


def test_send_sign_and_verify(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    data = b"source|destination|icmp header|options"
    sig = rsa.send_sign(key, data)
    assert len(sig) == 128
    rsa.send_verify(rsa.public_key_der(key), data, sig)
    with pytest.raises(BadSignature) as info:
        rsa.send_verify(rsa.public_key_der(key), data + b"x", sig)
    assert info.value.reason == "bad-signature"
    with pytest.raises(BadSignature):
        rsa.send_verify(rsa.public_key_der(other_key), data, sig)
    with pytest.raises(BadSignature):
        rsa.send_verify(rsa.public_key_der(key), data, sig[:-1])


def test_send_verify_applies_the_key_size_policy() -> None:
    with pytest.raises(rsa.KeyTooSmall):
        rsa.send_verify(APPENDIX_A_KEY, b"data", bytes(64))


def test_the_tag_is_part_of_the_signed_data(key: rsa.RSAPrivateKey) -> None:
    """RFC 3972 §6: a signature under another CGA Message Type tag must not verify as a SEND signature."""
    other_tag = bytes(16)
    sig = rsa.cga_sign(key, other_tag, b"data")
    rsa.cga_verify(rsa.public_key_der(key), other_tag, b"data", sig)
    with pytest.raises(BadSignature):
        rsa.send_verify(rsa.public_key_der(key), b"data", sig)
    assert rsa.send_sign(key, b"data") == rsa.cga_sign(key, SEND_MESSAGE_TYPE_TAG, b"data")
    with pytest.raises(ValueError, match="16 octets"):
        rsa.cga_sign(key, b"short", b"data")


def test_openssl_verifies_our_send_signature(
    key: rsa.RSAPrivateKey, pem_files: tuple[Path, Path], tmp_path: Path
) -> None:
    data = bytes(range(200))
    (tmp_path / "signed").write_bytes(SEND_MESSAGE_TYPE_TAG + data)
    (tmp_path / "sig").write_bytes(rsa.send_sign(key, data))
    result = subprocess.run(
        ["openssl", "dgst", "-sha1", "-verify", pem_files[1], "-signature", tmp_path / "sig", tmp_path / "signed"],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_we_verify_an_openssl_send_signature(key: rsa.RSAPrivateKey, pem_files: tuple[Path, Path]) -> None:
    data = b"an RtSolPr as signed"
    sig = subprocess.run(
        ["openssl", "dgst", "-sha1", "-sign", pem_files[0]],
        input=SEND_MESSAGE_TYPE_TAG + data,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    rsa.send_verify(rsa.public_key_der(key), data, sig)


def test_handover_key_round_trip(key: rsa.RSAPrivateKey) -> None:
    hk = SecretBytes(bytes(range(32)))
    ct = rsa.encrypt_handover_key(rsa.public_key_der(key), hk)
    assert len(ct) == 128
    assert ct != rsa.encrypt_handover_key(rsa.public_key_der(key), hk)  # PKCS#1 v1.5 padding is random
    assert rsa.decrypt_handover_key(key, ct) == hk


def test_we_decrypt_an_openssl_encrypted_handover_key(key: rsa.RSAPrivateKey, pem_files: tuple[Path, Path]) -> None:
    hk = bytes(range(100, 132))
    ct = subprocess.run(
        ["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", pem_files[1], "-pkeyopt", "rsa_padding_mode:pkcs1"],
        input=hk,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert rsa.decrypt_handover_key(key, ct).reveal() == hk


def test_openssl_decrypts_our_encrypted_handover_key(key: rsa.RSAPrivateKey, pem_files: tuple[Path, Path]) -> None:
    hk = bytes(range(7, 39))
    ct = rsa.encrypt_handover_key(rsa.public_key_der(key), hk)
    plain = subprocess.run(
        ["openssl", "pkeyutl", "-decrypt", "-inkey", pem_files[0], "-pkeyopt", "rsa_padding_mode:pkcs1"],
        input=ct,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert plain == hk


def test_decrypt_failures(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    ct = rsa.encrypt_handover_key(rsa.public_key_der(key), bytes(32))
    with pytest.raises(rsa.HandoverKeyDecryptionError, match="modulus"):
        rsa.decrypt_handover_key(key, ct[:-1])
    with pytest.raises(rsa.HandoverKeyDecryptionError):
        rsa.decrypt_handover_key(key, ct, expected_length=16)
    assert len(rsa.decrypt_handover_key(key, ct, expected_length=None)) == 32
    # The wrong private key: implicit rejection yields a pseudo-random message, almost never 32 octets long.
    failures = 0
    for _ in range(5):
        try:
            rsa.decrypt_handover_key(other_key, rsa.encrypt_handover_key(rsa.public_key_der(key), bytes(32)))
        except rsa.HandoverKeyDecryptionError:
            failures += 1
    assert failures >= 3


def test_encrypt_checks(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="empty"):
        rsa.encrypt_handover_key(rsa.public_key_der(key), b"")
    with pytest.raises(ValueError, match="too long"):
        rsa.encrypt_handover_key(rsa.public_key_der(key), bytes(118))
    with pytest.raises(rsa.KeyTooSmall):
        rsa.encrypt_handover_key(APPENDIX_A_KEY, bytes(32))
    with pytest.raises(rsa.BadPublicKey):
        rsa.encrypt_handover_key(b"junk", bytes(32))


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=300), bit=st.integers(min_value=0))
def test_signature_bit_flips_fail(key: rsa.RSAPrivateKey, data: bytes, bit: int) -> None:
    sig = rsa.send_sign(key, data)
    rsa.send_verify(rsa.public_key_der(key), data, sig)
    i = bit % (8 * len(sig))
    flipped = bytearray(sig)
    flipped[i // 8] ^= 0x80 >> (i % 8)
    with pytest.raises(BadSignature):
        rsa.send_verify(rsa.public_key_der(key), data, bytes(flipped))
