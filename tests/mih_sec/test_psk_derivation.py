"""The MIH PSK of architecture.md §2: vectors computed by ``openssl mac`` (an independent HMAC), recomputed here
with openssl again, and the package (service and node side) compared with them; identity and input checks."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip import keys, mn
from aaa_fmip.crypto.secrets import SecretBytes

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads((ROOT / "tests" / "vectors" / "mih-psk.json").read_text(encoding="utf-8"))
HIERARCHY: dict[str, Any] = json.loads((ROOT / "tests" / "vectors" / "key-hierarchy.json").read_text("utf-8"))
DOC = (ROOT / "docs" / "key-hierarchy.md").read_text(encoding="utf-8")
LABEL = b"MIH PSK@aaa-fmip.invalid"  # architecture.md §2, copied as text rather than imported


def openssl_hmac_sha256(key: bytes, message: bytes) -> bytes:
    out = subprocess.run(
        ["openssl", "mac", "-digest", "SHA256", "-macopt", f"hexkey:{key.hex()}", "-binary", "HMAC"],
        input=message,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return out.stdout


def openssl_kdf(key: bytes, label: bytes, data: bytes, length: int) -> bytes:
    """RFC 5295 §3.1.2 PRF+ written out again, every block an ``openssl mac`` HMAC-SHA-256."""
    s = label + b"\x00" + data + struct.pack("!H", length)
    out, t, n = b"", b"", 1
    while len(out) < length:
        t = openssl_hmac_sha256(key, t + s + bytes((n,)))
        out += t
        n += 1
    return out[:length]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["id"] for v in VECTORS["vectors"]])
def test_vectors_match_openssl_and_the_package(vector: dict[str, str]) -> None:
    assert shutil.which("openssl"), "scripts/install-deps installs openssl"
    hmk, name = bytes.fromhex(vector["hmk"]), bytes.fromhex(vector["hmk_name"])
    assert VECTORS["label"] == LABEL.decode() == keys.LABEL_MIH_PSK.decode()
    assert openssl_kdf(hmk, LABEL, vector["mihf_id"].encode("ascii"), 32).hex() == vector["psk"]
    derived = keys.derive_mih_psk(hmk, name, vector["mihf_id"])
    assert derived.psk.hex() == vector["psk"]
    assert derived.identity == vector["psk_identity"] == name.hex()
    assert len(derived.psk) == keys.MIH_PSK_LENGTH == 32


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["id"] for v in VECTORS["vectors"]])
def test_the_node_derives_the_same_key_from_its_emsk(vector: dict[str, str]) -> None:
    """From the very start of the hierarchy: the node's EMSK (or DSRK) and EAP Session-Id, as a node holds them."""
    src = next(v for v in HIERARCHY["home"] + HIERARCHY["visited"] if v["id"] == vector["from"])
    emsk, sid = bytes.fromhex(src["emsk"]), bytes.fromhex(src["eap_session_id"])
    if "domain" in src:
        dsrk = keys.derive_dsrk(emsk, src["domain"].encode("ascii"))
        master = mn.derive_master_key(dsrk=dsrk, emsk_name=keys.derive_emsk_name(sid))
    else:
        master = mn.derive_master_key(emsk=emsk, eap_session_id=sid)
    psk = mn.derive_mih_psk(master, vector["mihf_id"])
    assert (psk.psk.hex(), psk.identity, psk.mihf_id) == (vector["psk"], vector["psk_identity"], vector["mihf_id"])


def test_vectors_are_published_in_the_docs() -> None:
    flat = "".join(DOC.split())
    for vector in VECTORS["vectors"]:
        assert vector["psk"] in flat and vector["mihf_id"] in DOC
    assert LABEL.decode() in DOC


def test_key_is_scoped_to_the_mos_and_the_identity_to_the_session() -> None:
    hmk, name = bytes(range(64)), bytes(range(8))
    a = keys.derive_mih_psk(hmk, name, "mos1.example.net")
    b = keys.derive_mih_psk(hmk, name, "mos2.example.net")
    upper = keys.derive_mih_psk(hmk, name, "MOS1.example.net")
    assert a.psk != b.psk and a.psk != upper.psk  # the MIHF-ID octets as given, no case folding
    assert a.identity == b.identity == "0001020304050607"
    assert keys.hmk_name_of_identity(a.identity) == name
    hk = keys.derive_hk(hmk, name, __import__("ipaddress").IPv6Address("2001:db8::1"), 1)
    assert hk.hk != a.psk


def test_repr_never_shows_the_key() -> None:
    psk = keys.derive_mih_psk(SecretBytes(bytes(range(64))), bytes(8), "mos1.example.net")
    assert psk.psk.hex() not in repr(psk) and psk.psk.hex() not in str(psk)


@pytest.mark.parametrize(
    ("mihf_id", "message"),
    [
        ("", "1..253 printable ASCII"),
        ("x" * 254, "1..253 printable ASCII"),
        ("mös.example", "1..253 printable ASCII"),
        ("mos\x00.example", "1..253 printable ASCII"),
        ("mos one.example", "spaces"),
    ],
)
def test_bad_mihf_ids(mihf_id: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        keys.derive_mih_psk(bytes(64), bytes(8), mihf_id)


@pytest.mark.parametrize("identity", ["", "0001020304", "000102030405060G", "000102030405060A", "0" * 18, b"\xff" * 16])
def test_bad_identities(identity: str | bytes) -> None:
    with pytest.raises(ValueError, match="16 lowercase hex digits"):
        keys.hmk_name_of_identity(identity)


@settings(max_examples=50, deadline=None)
@given(
    st.binary(min_size=64, max_size=64),
    st.binary(min_size=8, max_size=8),
    st.from_regex(r"[a-z0-9.@-]{1,60}", fullmatch=True),
)
def test_shape(hmk: bytes, name: bytes, mihf_id: str) -> None:
    psk = keys.derive_mih_psk(hmk, name, mihf_id)
    assert len(psk.psk) == 32 and keys.hmk_name_of_identity(psk.identity) == name
