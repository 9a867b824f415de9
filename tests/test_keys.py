"""The key hierarchy of architecture.md §2: published vectors, input checks, scoping, redaction."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip import keys
from aaa_fmip.crypto.secrets import SecretBytes

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors" / "key-hierarchy.json").read_text(encoding="utf-8"))
DOC = (ROOT / "docs" / "key-hierarchy.md").read_text(encoding="utf-8")

EMSK = bytes(range(64))
SID = b"\x0d" + bytes(range(64))
AR1 = ipaddress.IPv6Address("2001:db8:1::1")
AR2 = ipaddress.IPv6Address("2001:db8:2::1")


def h(value: str) -> bytes:
    return bytes.fromhex(value)


@pytest.mark.parametrize("vector", VECTORS["home"], ids=[v["id"] for v in VECTORS["home"]])
def test_home_vectors(vector: dict[str, object]) -> None:
    master = keys.derive_hmk(h(str(vector["emsk"])), h(str(vector["eap_session_id"])))
    assert master.hmk.hex() == vector["hmk"]
    assert master.hmk_name.hex() == vector["hmk_name"]
    assert master.spi == vector["spi"]
    assert keys.derive_spi(master.hmk) == master.spi
    for entry in vector["handover_keys"]:  # type: ignore[attr-defined]
        hk = keys.derive_hk(master.hmk, master.hmk_name, ipaddress.IPv6Address(entry["ar_address"]), master.spi)
        assert (hk.hk.hex(), hk.hk_name.hex(), hk.spi) == (entry["hk"], entry["hk_name"], master.spi)


@pytest.mark.parametrize("vector", VECTORS["visited"], ids=[v["id"] for v in VECTORS["visited"]])
def test_visited_vectors(vector: dict[str, object]) -> None:
    dsrk = keys.derive_dsrk(h(str(vector["emsk"])), str(vector["domain"]).encode("ascii"))
    emsk_name = keys.derive_emsk_name(h(str(vector["eap_session_id"])))
    assert (dsrk.hex(), emsk_name.hex()) == (vector["dsrk"], vector["emsk_name"])
    master = keys.derive_hmk_visited(dsrk, emsk_name)
    assert (master.hmk.hex(), master.hmk_name.hex(), master.spi) == (vector["hmk"], vector["hmk_name"], vector["spi"])
    for entry in vector["handover_keys"]:  # type: ignore[attr-defined]
        hk = keys.derive_hk(master.hmk, master.hmk_name, ipaddress.IPv6Address(entry["ar_address"]), master.spi)
        assert (hk.hk.hex(), hk.hk_name.hex()) == (entry["hk"], entry["hk_name"])


def _hex_values(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, child in node.items() if k != "source" for v in _hex_values(child)]
    if isinstance(node, list):
        return [v for child in node for v in _hex_values(child)]
    if isinstance(node, str) and len(node) >= 8 and all(c in "0123456789abcdef" for c in node):
        return [node]
    return []


def test_vectors_are_published_in_the_docs() -> None:
    """Every hex value and SPI of the vector file appears in docs/key-hierarchy.md (wrapped lines joined)."""
    flat = "".join(DOC.split())
    missing = [v for v in _hex_values({k: VECTORS[k] for k in ("home", "visited", "kdf")}) if v not in flat]
    assert not missing
    for vector in VECTORS["home"] + VECTORS["visited"]:
        assert str(vector["spi"]) in DOC
    for label in VECTORS["labels"].values():
        assert label in DOC


def test_spi_zero_becomes_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "kdf", lambda *_args: bytes(4))
    assert keys.derive_spi(bytes(64)) == 1


def test_hk_depends_on_the_ar_and_on_the_session() -> None:
    master = keys.derive_hmk(EMSK, SID)
    hk1 = keys.derive_hk(master.hmk, master.hmk_name, AR1, master.spi)
    hk2 = keys.derive_hk(master.hmk, master.hmk_name, AR2, master.spi)
    assert hk1.hk != hk2.hk and hk1.hk_name != hk2.hk_name
    other = keys.derive_hmk(bytes(reversed(EMSK)), SID)
    assert other.hmk_name == master.hmk_name  # the name depends only on the Session-Id (RFC 5295 §3.2)
    assert keys.derive_hk(other.hmk, other.hmk_name, AR1, other.spi).hk != hk1.hk


def test_visited_differs_from_home() -> None:
    home = keys.derive_hmk(EMSK, SID)
    visited = keys.derive_hmk_visited(keys.derive_dsrk(EMSK, b"visited.example"), keys.derive_emsk_name(SID))
    assert home.hmk != visited.hmk and home.hmk_name != visited.hmk_name
    other_domain = keys.derive_hmk_visited(keys.derive_dsrk(EMSK, b"other.example"), keys.derive_emsk_name(SID))
    assert other_domain.hmk != visited.hmk
    assert other_domain.hmk_name == visited.hmk_name  # DSUSRKName comes from EMSKName only (RFC 5295 §4)


def test_secret_bytes_inputs_are_accepted() -> None:
    assert keys.derive_hmk(SecretBytes(EMSK), SID) == keys.derive_hmk(EMSK, SID)
    master = keys.derive_hmk(EMSK, SID)
    assert keys.derive_hk(master.hmk.reveal(), master.hmk_name, AR1, master.spi) == keys.derive_hk(
        master.hmk, master.hmk_name, AR1, master.spi
    )


def test_repr_and_str_never_show_key_material() -> None:
    master = keys.derive_hmk(EMSK, SID)
    hk = keys.derive_hk(master.hmk, master.hmk_name, AR1, master.spi)
    for obj, secret in ((master, master.hmk.reveal()), (hk, hk.hk.reveal())):
        for text in (repr(obj), str(obj), f"{obj}", f"{obj!r}"):
            assert "SecretBytes" not in text
            assert secret.hex() not in text
            assert "redacted" not in text  # the field is left out entirely
        assert dataclasses.is_dataclass(obj)
    assert "hmk_name=" in repr(master) and "spi=" in repr(master)
    assert "hk_name=" in repr(hk)


def test_dataclasses_are_frozen() -> None:
    master = keys.derive_hmk(EMSK, SID)
    with pytest.raises(dataclasses.FrozenInstanceError):
        master.spi = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: keys.derive_hmk(bytes(63), SID), "EMSK must be 64..256 octets, got 63"),
        (lambda: keys.derive_hmk(bytes(257), SID), "EMSK must be 64..256 octets"),
        (lambda: keys.derive_hmk("00" * 64, SID), "EMSK must be octets, not str"),  # type: ignore[arg-type]
        (lambda: keys.derive_hmk(EMSK, b""), "EAP Session-Id must be 1..2048 octets, got 0"),
        (lambda: keys.derive_hmk(EMSK, bytes(2049)), "EAP Session-Id"),
        (lambda: keys.derive_hmk_visited(bytes(32), bytes(8)), "DSRK must be 64..256 octets"),
        (lambda: keys.derive_hmk_visited(bytes(64), bytes(7)), "EMSKName must be 8 octets, got 7"),
        (lambda: keys.derive_spi(bytes(32)), "HMK must be"),
        (lambda: keys.derive_hk(bytes(64), bytes(8), "2001:db8::1", 1), "IPv6Address"),  # type: ignore[arg-type]
        (lambda: keys.derive_hk(bytes(64), bytes(8), ipaddress.IPv6Address("::"), 1), "not a unicast"),
        (lambda: keys.derive_hk(bytes(64), bytes(8), ipaddress.IPv6Address("ff02::2"), 1), "not a unicast"),
        (lambda: keys.derive_hk(bytes(64), bytes(8), AR1, 0), "SPI 0 is reserved"),
        (lambda: keys.derive_hk(bytes(64), bytes(8), AR1, 2**32), "SPI must be"),
        (lambda: keys.derive_hk(bytes(64), bytes(9), AR1, 1), "HMK-Name must be 8 octets"),
        (lambda: keys.derive_dsrk(EMSK, b""), "domain"),
        (lambda: keys.derive_emsk_name(b""), "EAP Session-Id"),
    ],
)
def test_invalid_inputs(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        call()  # type: ignore[operator]
    assert "0001020304" not in str(info.value) and "0000000000" not in str(info.value)


def test_hmk_lifetime() -> None:
    assert keys.DEFAULT_MAX_LIFETIME == 43200
    assert keys.hmk_lifetime(None) == 43200
    assert keys.hmk_lifetime(3600) == 3600
    assert keys.hmk_lifetime(86400) == 43200
    assert keys.hmk_lifetime(86400, max_lifetime=100000) == 86400
    assert keys.hmk_lifetime(None, max_lifetime=60) == 60
    assert keys.hmk_lifetime(0) == 0
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="AAA key lifetime"):
            keys.hmk_lifetime(bad)  # type: ignore[arg-type]
    for bad_max in (0, -5, False):
        with pytest.raises(ValueError, match="maximum"):
            keys.hmk_lifetime(10, max_lifetime=bad_max)


@settings(max_examples=50, deadline=None)
@given(emsk=st.binary(min_size=64, max_size=128), sid=st.binary(min_size=1, max_size=80))
def test_shapes(emsk: bytes, sid: bytes) -> None:
    master = keys.derive_hmk(emsk, sid)
    assert len(master.hmk) == 64 and len(master.hmk_name) == 8 and 1 <= master.spi <= 0xFFFFFFFF
    hk = keys.derive_hk(master.hmk, master.hmk_name, AR1, master.spi)
    assert len(hk.hk) == 32 and len(hk.hk_name) == 8 and hk.spi == master.spi
