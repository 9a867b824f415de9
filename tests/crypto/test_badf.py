"""BADF authenticator (RFC 5568 §6.4.5): RFC 2202 / RFC 4231 vectors, verification, bit flips under Hypothesis."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip.crypto.badf import (
    Algorithm,
    UnsupportedAuthenticatorLength,
    algorithm_for_length,
    compute_authenticator,
    truncated_hmac,
    verify_authenticator,
)
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import BadAuthenticator, VerificationError
from tests.crypto._vectors import load

RFC2202 = load("rfc2202-hmac-sha1.json")["cases"]
RFC4231 = load("rfc4231-hmac-sha256.json")["cases"]

COA = ipaddress.IPv6Address("2001:db8:2::100")
PAR = ipaddress.IPv6Address("2001:db8:1::1")
HK = SecretBytes(bytes(range(32)))


RFC_CASES = [(Algorithm.HMAC_SHA1_96, c) for c in RFC2202] + [(Algorithm.HMAC_SHA256_128, c) for c in RFC4231]


def _expected(algorithm: Algorithm, case: dict[str, str]) -> str:
    """The RFC's digest truncated to 96 / 128 bits (test case 5 lists only or also the truncated value)."""
    if algorithm is Algorithm.HMAC_SHA1_96 and "digest_96" in case:
        assert case["digest"].startswith(case["digest_96"])
        return case["digest_96"]
    if "digest_128" in case:
        return case["digest_128"]
    return case["digest"][: 2 * algorithm.authenticator_length]


@pytest.mark.parametrize(("algorithm", "case"), RFC_CASES, ids=[f"{a.label}-case{c['case']}" for a, c in RFC_CASES])
def test_rfc_truncation_vectors(algorithm: Algorithm, case: dict[str, str]) -> None:
    key, data = bytes.fromhex(case["key"]), bytes.fromhex(case["data"])
    expected = _expected(algorithm, case)
    assert truncated_hmac(key, data, algorithm).hex() == expected
    assert truncated_hmac(SecretBytes(key), data, algorithm).hex() == expected
    if len(data) >= 32:
        # The authenticator input is CoA | PAR | MH data: split the RFC's data at the same octets.
        coa, par, rest = ipaddress.IPv6Address(data[:16]), ipaddress.IPv6Address(data[16:32]), data[32:]
        assert compute_authenticator(key, coa, par, rest, algorithm).hex() == expected
        assert verify_authenticator(key, coa, par, rest, bytes.fromhex(expected)) is algorithm


def test_truncation_test_cases_are_the_documented_ones() -> None:
    assert next(c for c in RFC2202 if c["case"] == 5)["digest_96"] == "4c1a03424b55e07fe7f27be1"
    assert next(c for c in RFC4231 if c["case"] == 5)["digest_128"] == "a3b6167473100ee06e0c796c2955552b"


def test_code_points_and_lengths() -> None:
    assert (int(Algorithm.HMAC_SHA1_96), int(Algorithm.HMAC_SHA256_128)) == (1, 2)
    assert (Algorithm.HMAC_SHA1_96.authenticator_length, Algorithm.HMAC_SHA256_128.authenticator_length) == (12, 16)
    assert Algorithm.HMAC_SHA1_96.label == "HMAC-SHA1-96"
    assert algorithm_for_length(12) is Algorithm.HMAC_SHA1_96
    assert algorithm_for_length(16) is Algorithm.HMAC_SHA256_128


def test_default_is_hmac_sha1_96() -> None:
    auth = compute_authenticator(HK, COA, PAR, b"mh")
    assert len(auth) == 12
    assert auth == compute_authenticator(HK, COA, PAR, b"mh", Algorithm.HMAC_SHA1_96)


@pytest.mark.parametrize("length", [0, 1, 8, 11, 13, 15, 17, 20, 32])
def test_other_lengths_are_rejected(length: int) -> None:
    with pytest.raises(UnsupportedAuthenticatorLength) as info:
        verify_authenticator(HK, COA, PAR, b"mh", bytes(length))
    assert isinstance(info.value, BadAuthenticator)
    assert info.value.reason == "bad-authenticator-length"


def test_wrong_key_and_swapped_addresses_fail() -> None:
    auth = compute_authenticator(HK, COA, PAR, b"mh data")
    with pytest.raises(BadAuthenticator) as info:
        verify_authenticator(SecretBytes(bytes(32)), COA, PAR, b"mh data", auth)
    assert info.value.reason == "bad-authenticator"
    with pytest.raises(BadAuthenticator):
        verify_authenticator(HK, PAR, COA, b"mh data", auth)


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_authenticator(b"", COA, PAR, b"")
    with pytest.raises(ValueError, match="IPv6Address"):
        compute_authenticator(HK, "2001:db8::1", PAR, b"")  # type: ignore[arg-type]


addresses = st.binary(min_size=16, max_size=16).map(ipaddress.IPv6Address)
algorithms = st.sampled_from(list(Algorithm))


@settings(max_examples=150, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=64), coa=addresses, par=addresses, data=st.binary(max_size=200), alg=algorithms
)
def test_verify_accepts_what_compute_made(
    key: bytes, coa: ipaddress.IPv6Address, par: ipaddress.IPv6Address, data: bytes, alg: Algorithm
) -> None:
    auth = compute_authenticator(key, coa, par, data, alg)
    assert verify_authenticator(SecretBytes(key), coa, par, data, auth) is alg


@settings(max_examples=150, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=64),
    coa=addresses,
    par=addresses,
    data=st.binary(min_size=1, max_size=200),
    alg=algorithms,
    where=st.sampled_from(["authenticator", "data", "coa", "par", "key"]),
    bit=st.integers(min_value=0),
)
def test_any_single_bit_flip_fails(
    key: bytes,
    coa: ipaddress.IPv6Address,
    par: ipaddress.IPv6Address,
    data: bytes,
    alg: Algorithm,
    where: str,
    bit: int,
) -> None:
    auth = compute_authenticator(key, coa, par, data, alg)

    def flip(value: bytes) -> bytes:
        i = bit % (8 * len(value))
        out = bytearray(value)
        out[i // 8] ^= 0x80 >> (i % 8)
        return bytes(out)

    args: dict[str, Any] = {"key": key, "care_of": coa, "par": par, "mh_data": data, "authenticator": auth}
    if where in ("coa", "par"):
        name = "care_of" if where == "coa" else "par"
        args[name] = ipaddress.IPv6Address(flip(args[name].packed))
    else:
        name = {"authenticator": "authenticator", "data": "mh_data", "key": "key"}[where]
        args[name] = flip(args[name])
    with pytest.raises(VerificationError):
        verify_authenticator(**args)
