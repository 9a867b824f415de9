"""The pure SEND-fallback policy and RtSolPr verification (no IO; the clock is a number passed in)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaa_fmip import mn, send_policy
from aaa_fmip.crypto import cga, rsa
from aaa_fmip.crypto.badf import Algorithm
from aaa_fmip.crypto.cga import CGAHash1Mismatch
from aaa_fmip.errors import BadSignature, DecodeError, InvalidRequest, VerificationError
from aaa_fmip.send_policy import SendPolicy, verify_rtsolpr
from aaa_fmip.wire import icmpv6
from tests.send._helpers import IP, MN_PREFIX, PAR, rtsolpr, sign_rtsolpr

NOW = 1_800_000_000.0
DEFAULT = SendPolicy()


@pytest.fixture(scope="module")
def identity(quick_keys: list[rsa.RSAPrivateKey]) -> mn.CgaIdentity:
    return mn.generate_cga_identity(MN_PREFIX, sec=1, private_key=quick_keys[4])


@pytest.fixture(scope="module")
def enc(quick_keys: list[rsa.RSAPrivateKey]) -> rsa.RSAPrivateKey:
    return quick_keys[5]


def verify(message: bytes, identity: mn.CgaIdentity, *, now: float = NOW, policy: SendPolicy = DEFAULT) -> object:
    return verify_rtsolpr(message, source=identity.address, destination=PAR, now=now, policy=policy)


def test_defaults_are_rfc_values() -> None:
    assert (DEFAULT.min_key_bits, DEFAULT.max_key_bits) == (1024, 4096)  # RFC 3971 §5.1.3
    assert DEFAULT.hk_lifetime == 43200  # RFC 5269 §3.7 HK-LIFETIME
    assert (DEFAULT.timestamp_delta, DEFAULT.timestamp_fuzz) == (300, 1)  # RFC 3971 §10.2
    assert send_policy.TIMESTAMP_DRIFT == 0.01


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [(0, True), (299.9, True), (-299.9, True), (300, False), (-300, False), (3600, False), (-3600, False)],
)
def test_timestamp_window(skew: float, accepted: bool) -> None:
    if accepted:
        DEFAULT.check_timestamp(NOW - skew, NOW)
    else:
        with pytest.raises(send_policy.StaleTimestamp) as info:
            DEFAULT.check_timestamp(NOW - skew, NOW)
        assert info.value.reason == "stale-timestamp"


def test_nonce_ttl_covers_the_rest_of_the_window() -> None:
    assert DEFAULT.nonce_ttl(NOW, NOW) == 301  # delta + fuzz
    assert DEFAULT.nonce_ttl(NOW - 299.5, NOW) == 2
    assert DEFAULT.nonce_ttl(NOW + 299.5, NOW) == 601  # at most 2 * delta + fuzz
    assert DEFAULT.nonce_ttl(NOW - 1000, NOW) == 1


def test_lifetime_never_above_the_service_maximum() -> None:
    assert DEFAULT.granted_lifetime(86400) == 43200
    assert DEFAULT.granted_lifetime(600) == 600
    assert SendPolicy(hk_lifetime=120).granted_lifetime(600) == 120


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_key_bits": 256},
        {"min_key_bits": 4096, "max_key_bits": 2048},
        {"hk_lifetime": 0},
        {"hk_lifetime": 70000},  # the Key Lifetime field is 16 bits
        {"timestamp_delta": 0},
        {"timestamp_fuzz": -1},
        {"min_key_bits": True},
    ],
)
def test_policy_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SendPolicy(**kwargs)  # type: ignore[arg-type]


def test_algorithm_choice() -> None:
    assert send_policy.choose_algorithm(1) is Algorithm.HMAC_SHA1_96
    assert send_policy.choose_algorithm(2) is Algorithm.HMAC_SHA256_128
    assert send_policy.choose_algorithm(9) is Algorithm.HMAC_SHA256_128  # unknown: the strongest we have


def test_verified_values(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    request = rtsolpr(identity, enc, timestamp=NOW - 10, identifier=77, nonce=bytes(range(14)))
    result = verify(request.message, identity)
    assert isinstance(result, send_policy.VerifiedRtSolPr)
    assert (result.source, result.destination, result.identifier) == (identity.address, PAR, 77)
    assert result.cga_key_hash == cga.key_hash(identity.public_key) and result.cga_key_bits == 1024
    assert result.encryption_key == rsa.public_key_der(enc)
    assert (result.requested_algorithm, result.algorithm) == (1, Algorithm.HMAC_SHA1_96)
    assert result.nonce == bytes(range(14)) and result.timestamp == NOW - 10
    assert result.nonce_ttl == 291


def test_key_size_policy_is_configurable(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    message = rtsolpr(identity, enc, timestamp=NOW).message
    with pytest.raises(rsa.KeyTooSmall) as small:
        verify(message, identity, policy=SendPolicy(min_key_bits=2048))
    assert small.value.reason == "key-too-small"
    with pytest.raises(rsa.KeyTooLarge) as large:
        verify(message, identity, policy=SendPolicy(min_key_bits=512, max_key_bits=768))
    assert large.value.reason == "key-too-large"


def options(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey, *, drop: type | None = None) -> list[icmpv6.NDOption]:
    all_options: list[icmpv6.NDOption] = [
        icmpv6.LinkLayerAddress(icmpv6.LinkLayerAddressCode.WILDCARD, b""),
        icmpv6.HandoverKeyRequest(1, rsa.public_key_der(enc)),
        icmpv6.CGAOption(identity.parameters),
        icmpv6.Timestamp.from_seconds(NOW),
        icmpv6.Nonce(bytes(6)),
    ]
    return [o for o in all_options if drop is None or not isinstance(o, drop)]


@pytest.mark.parametrize(
    ("drop", "error"),
    [
        (icmpv6.CGAOption, send_policy.MissingCgaOption),
        (icmpv6.Timestamp, send_policy.MissingTimestamp),
        (icmpv6.Nonce, send_policy.MissingNonce),
        (icmpv6.HandoverKeyRequest, send_policy.MissingHandoverKeyRequest),
    ],
)
def test_missing_options(
    identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey, drop: type, error: type[VerificationError]
) -> None:
    with pytest.raises(error) as info:
        verify(sign_rtsolpr(identity, options(identity, enc, drop=drop)), identity)
    assert info.value.reason == error.reason and error.reason.startswith("missing-")


def test_options_after_the_signature_are_ignored(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    late_nonce = sign_rtsolpr(identity, options(identity, enc, drop=icmpv6.Nonce), trailing=(icmpv6.Nonce(bytes(6)),))
    with pytest.raises(send_policy.MissingNonce):
        verify(late_nonce, identity)
    # A Handover Key Request appended after the signature cannot replace the signed one.
    other = icmpv6.HandoverKeyRequest(2, rsa.public_key_der(identity.private_key))
    appended = sign_rtsolpr(identity, options(identity, enc), trailing=(other,))
    result = verify(appended, identity)
    assert isinstance(result, send_policy.VerifiedRtSolPr)
    assert result.encryption_key == rsa.public_key_der(enc) and result.requested_algorithm == 1


def test_unsigned_rtsolpr(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    message = icmpv6.encode_icmpv6(
        icmpv6.RtSolPr(1, tuple(options(identity, enc))), source=identity.address, destination=PAR
    )
    with pytest.raises(send_policy.MissingSignature) as info:
        verify(message, identity)
    assert info.value.reason == "missing-signature"


def test_key_hash_must_name_the_cga_key(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    message = sign_rtsolpr(identity, options(identity, enc), key_hash=bytes(16))
    with pytest.raises(send_policy.KeyHashMismatch) as info:
        verify(message, identity)
    assert info.value.reason == "key-hash-mismatch" and isinstance(info.value, BadSignature)


def test_encryption_key_must_not_be_the_cga_key(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    opts = options(identity, enc)
    opts[1] = icmpv6.HandoverKeyRequest(1, identity.public_key)
    with pytest.raises(send_policy.EncryptionKeyIsCgaKey) as info:
        verify(sign_rtsolpr(identity, opts), identity)
    assert info.value.reason == "encryption-key-is-cga-key"


def test_encryption_key_must_be_rsa(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    opts = options(identity, enc)
    opts[1] = icmpv6.HandoverKeyRequest(1, b"\x30\x03\x02\x01\x00")
    with pytest.raises(rsa.BadPublicKey) as info:
        verify(sign_rtsolpr(identity, opts), identity)
    assert info.value.reason == "bad-public-key"


def test_the_cga_binds_the_source(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    other = dataclasses.replace(identity, address=IP(int(identity.address) ^ 1))
    with pytest.raises(CGAHash1Mismatch):
        verify(rtsolpr(other, enc, timestamp=NOW).message, other)


def test_checksum_and_type(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    message = rtsolpr(identity, enc, timestamp=NOW).message
    with pytest.raises(DecodeError):
        verify_rtsolpr(message, source=identity.address, destination=IP("2001:db8:1::2"), now=NOW, policy=DEFAULT)
    prrtadv = icmpv6.encode_icmpv6(icmpv6.PrRtAdv(0, 1, ()), source=identity.address, destination=PAR)
    with pytest.raises(InvalidRequest) as info:
        verify(prrtadv, identity)
    assert info.value.reason == "not-rtsolpr"


# --- robustness: bad input raises exactly one error family -----------------------------------------------------

ERRORS = (DecodeError, InvalidRequest, VerificationError)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_any_bytes_fail_cleanly(identity: mn.CgaIdentity, data: bytes) -> None:
    with pytest.raises(ERRORS):
        verify(data, identity)


def test_every_truncation_and_every_flipped_octet(identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    request = rtsolpr(identity, enc, timestamp=NOW)
    message = request.message
    for end in range(len(message)):
        with pytest.raises(ERRORS):
            verify(message[:end], identity)
    outcomes: set[str] = set()
    for offset in range(len(message)):
        flipped = bytearray(message)
        flipped[offset] ^= 0x5A
        try:
            decoded = icmpv6.decode_icmpv6(bytes(flipped))
            # Fix the checksum, as a forger would, so the flip reaches the later checks.
            fixed = icmpv6.encode_icmpv6(decoded, source=identity.address, destination=PAR)
        except (DecodeError, ValueError):
            continue
        try:
            verify(fixed, identity)
            outcomes.add("accepted")
        except ERRORS as exc:
            outcomes.add(getattr(exc, "reason", "malformed"))
    # Accepted: flips in octets the decoder ignores (reserved octets, padding), which the re-encoding undoes or
    # which lie in the signature option's padding; every other flip fails one of the checks.
    assert {"bad-signature", "key-hash-mismatch", "accepted"} <= outcomes
