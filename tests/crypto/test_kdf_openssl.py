"""Independent oracle: the KDF and the whole key hierarchy recomputed with the ``openssl`` command line.

Nothing here imports the package's KDF or key code: the PRF+ blocks (RFC 5295 §3.1.2), the labels, the AR-ID
encoding and the SPI rule (architecture.md §2) are written out again, and every HMAC-SHA-256 is computed by
``openssl mac``, a separate implementation. The package is then compared against the result.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess

import pytest

from aaa_fmip import keys
from aaa_fmip.crypto.kdf import kdf
from tests.crypto._vectors import load

VECTORS = load("key-hierarchy.json")

# architecture.md §2, copied as text rather than imported.
HMK_LABEL = b"FMIPv6 Handover Master Key@aaa-fmip.invalid"
SPI_LABEL = b"FMIPv6 SPI@aaa-fmip.invalid"
HK_LABEL = b"FMIPv6 Handover Key@aaa-fmip.invalid"


@pytest.fixture(scope="module", autouse=True)
def _openssl_available() -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command line is required (scripts/install-deps installs it)")


def openssl_hmac_sha256(key: bytes, message: bytes) -> bytes:
    out = subprocess.run(
        ["openssl", "mac", "-digest", "SHA256", "-macopt", f"hexkey:{key.hex()}", "-binary", "HMAC"],
        input=message,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert len(out) == 32
    return out


def openssl_kdf(key: bytes, label: bytes, data: bytes, length: int) -> bytes:
    s = label + b"\x00" + data + struct.pack("!H", length)
    blocks: list[bytes] = []
    previous = b""
    for n in range(1, (length + 31) // 32 + 1):
        previous = openssl_hmac_sha256(key, previous + s + bytes([n]))
        blocks.append(previous)
    return b"".join(blocks)[:length]


def openssl_spi(hmk: bytes) -> int:
    spi = int.from_bytes(openssl_kdf(hmk, SPI_LABEL, b"", 4), "big")
    return spi or 1


def test_openssl_oracle_itself_matches_rfc4231_case_1() -> None:
    assert openssl_hmac_sha256(b"\x0b" * 20, b"Hi There").hex() == (
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    )


@pytest.mark.parametrize("case", VECTORS["kdf"], ids=[c["id"] for c in VECTORS["kdf"]])
def test_kdf_vectors_against_openssl(case: dict[str, object]) -> None:
    key, data = bytes.fromhex(str(case["key"])), bytes.fromhex(str(case["data"]))
    label, length = str(case["label"]).encode(), int(str(case["length"]))
    expected = openssl_kdf(key, label, data, length)
    assert expected.hex() == case["output"]
    assert kdf(key, label, data, length) == expected


def test_spec_digest_dsrk_and_rrk_against_openssl() -> None:
    emsk = bytes(range(64))
    assert openssl_kdf(emsk, b"dsrk@ietf.org", b"example.com", 64).hex() == (
        "ebec2adaa309098f9b4d56a30b542fc8837fe4f842bf85daa062541d94dc83f1"
        "26d490c5c6eeda4c827f13ebd71bfffc5c95f8b6727d2d61dd51881b57db7a36"
    )
    assert openssl_kdf(emsk, b"EAP Re-authentication Root Key@ietf.org", b"", 64).hex() == (
        "7b14d586a7f98c5aa759a92e4f53401f620815e34995bd78465a05137a42b76d"
        "5760970ff244d961786310da187cc7e63b6c16173ac2b0198f4ddd81573c13fb"
    )


def test_maximum_output_against_openssl() -> None:
    """255 blocks (8160 octets) with a 256-octet key and 2048 octets of data: RFC 5295 §3.1.2's limits."""
    key = bytes((i * 31 + 7) % 256 for i in range(256))
    data = bytes(i % 251 for i in range(2048))
    assert kdf(key, b"experimental1", data, 8160) == openssl_kdf(key, b"experimental1", data, 8160)


def test_labels_are_the_documented_ones() -> None:
    assert (keys.LABEL_HMK, keys.LABEL_SPI, keys.LABEL_HK) == (HMK_LABEL, SPI_LABEL, HK_LABEL)
    assert VECTORS["labels"]["hmk"].encode() == HMK_LABEL
    assert VECTORS["labels"]["spi"].encode() == SPI_LABEL
    assert VECTORS["labels"]["hk"].encode() == HK_LABEL


def _check_handover_keys(hmk: bytes, hmk_name: bytes, spi: int, vector: dict[str, object]) -> None:
    for entry in vector["handover_keys"]:  # type: ignore[attr-defined]
        ar = ipaddress.IPv6Address(entry["ar_address"])
        ar_id = ar.packed
        assert ar_id.hex() == entry["ar_id"]
        hk = openssl_kdf(hmk, HK_LABEL, ar_id, 32)
        hk_name = openssl_kdf(hmk_name, HK_LABEL, ar_id, 8)
        assert (hk.hex(), hk_name.hex()) == (entry["hk"], entry["hk_name"])
        package = keys.derive_hk(hmk, hmk_name, ar, spi)
        assert (package.hk.reveal(), package.hk_name, package.spi) == (hk, hk_name, spi)


@pytest.mark.parametrize("vector", VECTORS["home"], ids=[v["id"] for v in VECTORS["home"]])
def test_home_hierarchy_against_openssl(vector: dict[str, object]) -> None:
    emsk, sid = bytes.fromhex(str(vector["emsk"])), bytes.fromhex(str(vector["eap_session_id"]))
    hmk = openssl_kdf(emsk, HMK_LABEL, b"", 64)
    hmk_name = openssl_kdf(sid, HMK_LABEL, b"", 8)
    spi = openssl_spi(hmk)
    assert (hmk.hex(), hmk_name.hex(), spi) == (vector["hmk"], vector["hmk_name"], vector["spi"])
    assert f"{spi:08x}" == vector["spi_hex"]
    master = keys.derive_hmk(emsk, sid)
    assert (master.hmk.reveal(), master.hmk_name, master.spi) == (hmk, hmk_name, spi)
    _check_handover_keys(hmk, hmk_name, spi, vector)


@pytest.mark.parametrize("vector", VECTORS["visited"], ids=[v["id"] for v in VECTORS["visited"]])
def test_visited_hierarchy_against_openssl(vector: dict[str, object]) -> None:
    emsk, sid = bytes.fromhex(str(vector["emsk"])), bytes.fromhex(str(vector["eap_session_id"]))
    dsrk = openssl_kdf(emsk, b"dsrk@ietf.org", str(vector["domain"]).encode("ascii"), 64)
    emsk_name = openssl_kdf(sid, b"EMSK", b"", 8)
    assert (dsrk.hex(), emsk_name.hex()) == (vector["dsrk"], vector["emsk_name"])
    assert keys.derive_dsrk(emsk, str(vector["domain"]).encode("ascii")) == dsrk
    assert keys.derive_emsk_name(sid) == emsk_name
    hmk = openssl_kdf(dsrk, HMK_LABEL, b"", 64)
    hmk_name = openssl_kdf(emsk_name, HMK_LABEL, b"", 8)
    spi = openssl_spi(hmk)
    assert (hmk.hex(), hmk_name.hex(), spi) == (vector["hmk"], vector["hmk_name"], vector["spi"])
    master = keys.derive_hmk_visited(dsrk, emsk_name)
    assert (master.hmk.reveal(), master.hmk_name, master.spi) == (hmk, hmk_name, spi)
    _check_handover_keys(hmk, hmk_name, spi, vector)
