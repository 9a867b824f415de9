"""RFC 5295 §3.1.2 KDF: vectors, input checks, and a from-scratch HMAC (RFC 2104) oracle under Hypothesis."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip.crypto.kdf import MAX_OUTPUT_LENGTH, kdf
from aaa_fmip.crypto.secrets import SecretBytes
from tests.crypto._vectors import load

KDF_CASES = load("key-hierarchy.json")["kdf"]


def rfc2104_hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC written out from RFC 2104 §2 over hashlib's SHA-256: shares no MAC code with the package."""
    block = 64
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + message).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest()


def oracle_kdf(key: bytes, label: bytes, data: bytes, length: int) -> bytes:
    s = label + b"\x00" + data + struct.pack("!H", length)
    out, t, n = b"", b"", 1
    while len(out) < length:
        t = rfc2104_hmac_sha256(key, t + s + bytes([n]))
        out += t
        n += 1
    return out[:length]


@pytest.mark.parametrize("case", KDF_CASES, ids=[c["id"] for c in KDF_CASES])
def test_kdf_vectors(case: dict[str, object]) -> None:
    key = bytes.fromhex(str(case["key"]))
    label = str(case["label"]).encode()
    data = bytes.fromhex(str(case["data"]))
    length = int(str(case["length"]))
    assert kdf(key, label, data, length).hex() == case["output"]
    assert kdf(SecretBytes(key), label, data, length).hex() == case["output"]


def test_spec_digest_values() -> None:
    """The DERIVED regression values of the spec digest §6.3 (RFC 5295 DSRK, RFC 6696 rRK, EMSKName)."""
    emsk = bytes(range(64))
    assert kdf(emsk, b"dsrk@ietf.org", b"example.com", 64).hex() == (
        "ebec2adaa309098f9b4d56a30b542fc8837fe4f842bf85daa062541d94dc83f1"
        "26d490c5c6eeda4c827f13ebd71bfffc5c95f8b6727d2d61dd51881b57db7a36"
    )
    assert kdf(emsk, b"EAP Re-authentication Root Key@ietf.org", b"", 64).hex() == (
        "7b14d586a7f98c5aa759a92e4f53401f620815e34995bd78465a05137a42b76d"
        "5760970ff244d961786310da187cc7e63b6c16173ac2b0198f4ddd81573c13fb"
    )
    assert kdf(b"\x0d" + emsk, b"EMSK", b"", 8).hex() == "ab3ab718ead64c4c"


def test_length_is_part_of_the_input() -> None:
    """S ends with uint16(length): a shorter request is not a prefix of a longer one (RFC 5295 §3.1)."""
    key = bytes(range(64))
    assert kdf(key, b"x@y", b"", 32) != kdf(key, b"x@y", b"", 64)[:32]


def test_limits() -> None:
    key = bytes(256)  # RFC 5295 §3.1.2: keys up to 256 octets, 2048 octets of data, >= 2048 octets of output
    assert len(kdf(key, b"private1", bytes(2048), MAX_OUTPUT_LENGTH)) == 8160
    assert len(kdf(b"k", b"private1", b"", 1)) == 1


@pytest.mark.parametrize(
    ("key", "label", "length", "message"),
    [
        (b"", b"a@b", 8, "key must not be empty"),
        (b"k", b"", 8, "label"),
        (b"k", b"bad\x00label", 8, "label"),
        (b"k", b"caf\xc3\xa9@x", 8, "label"),
        (b"k", b"a" * 256, 8, "label"),
        (b"k", b"a@b", 0, "length"),
        (b"k", b"a@b", MAX_OUTPUT_LENGTH + 1, "length"),
        (b"k", b"a@b", True, "length"),
    ],
)
def test_rejects_bad_input(key: bytes, label: bytes, length: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kdf(key, label, b"", length)


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=300),
    label=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64),
    data=st.binary(max_size=300),
    length=st.integers(min_value=1, max_value=400),
)
def test_matches_rfc2104_oracle(key: bytes, label: str, data: bytes, length: int) -> None:
    assert kdf(key, label.encode(), data, length) == oracle_kdf(key, label.encode(), data, length)
