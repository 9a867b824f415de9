"""AES-256-GCM key wrapping with key ids, and KEK files/variables."""

from __future__ import annotations

import os
import secrets
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import (
    Kek,
    KekRing,
    create_kek_file,
    kek_fingerprint,
    kek_from_env,
    load_kek_file,
)
from aaa_fmip.errors import CryptoError

KEY = bytes(range(32))


def kek(key_id: str = "k1", key: bytes | None = None) -> Kek:
    return Kek(key_id, SecretBytes(key if key is not None else secrets.token_bytes(32)))


@given(plaintext=st.binary(max_size=200), aad=st.binary(max_size=100))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    ring = KekRing(kek(key=KEY))
    blob = ring.wrap(plaintext, aad)
    assert ring.unwrap(blob, aad).reveal() == plaintext


def test_format_is_version_keyid_nonce_ciphertext_tag() -> None:
    ring = KekRing(Kek("rot-2024", SecretBytes(KEY)))
    aad = b"fmip:{0011223344556677}:session"
    blob = ring.wrap(b"\xaa" * 64, aad)
    assert blob[0] == 1 and blob[1] == 8 and blob[2:10] == b"rot-2024"
    assert len(blob) == 2 + 8 + 12 + 64 + 16
    # an independent decryption with the primitive: the header is part of the authenticated data
    nonce = blob[10:22]
    assert AESGCM(KEY).decrypt(nonce, blob[22:], blob[:10] + aad) == b"\xaa" * 64


def test_nonces_differ() -> None:
    ring = KekRing(kek())
    assert ring.wrap(b"x" * 32, b"a") != ring.wrap(b"x" * 32, b"a")


def test_wrong_aad_fails() -> None:
    ring = KekRing(kek())
    blob = ring.wrap(b"k" * 64, b"fmip:{aa}:session")
    with pytest.raises(CryptoError, match="authentication failed"):
        ring.unwrap(blob, b"fmip:{bb}:session")


def test_wrong_key_id_fails_clearly() -> None:
    blob = KekRing(kek("old")).wrap(b"k" * 64, b"aad")
    with pytest.raises(CryptoError, match="KEK 'old' is not configured") as info:
        KekRing(kek("new")).unwrap(blob, b"aad")
    assert "k" * 64 not in str(info.value)


def test_same_id_other_key_fails() -> None:
    blob = KekRing(kek("same")).wrap(b"k" * 64, b"aad")
    with pytest.raises(CryptoError, match="authentication failed under KEK 'same'"):
        KekRing(kek("same")).unwrap(blob, b"aad")


def test_relabelled_key_id_fails() -> None:
    a, b = kek("aaaa"), kek("bbbb")
    ring = KekRing(a, (b,))
    blob = bytearray(ring.wrap(b"k" * 32, b"aad"))
    blob[2:6] = b"bbbb"
    with pytest.raises(CryptoError):
        ring.unwrap(bytes(blob), b"aad")


def test_rotation_old_kek_still_unwraps() -> None:
    old, new = kek("2023"), kek("2024")
    old_blob = KekRing(old).wrap(b"old secret", b"aad")
    rotated = KekRing(new, (old,))
    assert rotated.unwrap(old_blob, b"aad").reveal() == b"old secret"
    new_blob = rotated.wrap(b"new secret", b"aad")
    assert new_blob[2:6] == b"2024"
    with pytest.raises(CryptoError):
        KekRing(old).unwrap(new_blob, b"aad")


@pytest.mark.parametrize("cut", [0, 1, 2, 5, 20, 30])
def test_truncated_or_garbled_blobs(cut: int) -> None:
    ring = KekRing(kek("k1"))
    blob = ring.wrap(b"k" * 32, b"aad")
    with pytest.raises(CryptoError):
        ring.unwrap(blob[:cut], b"aad")
    with pytest.raises(CryptoError):
        ring.unwrap(b"\x02" + blob[1:], b"aad")  # unknown version
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    with pytest.raises(CryptoError):
        ring.unwrap(bytes(flipped), b"aad")


def test_kek_validation_and_repr() -> None:
    with pytest.raises(CryptoError):
        Kek("k", SecretBytes(b"short"))
    for bad in ("", "has space", "a:b", "x" * 65, "é"):
        with pytest.raises(CryptoError):
            Kek(bad, SecretBytes(KEY))
    with pytest.raises(CryptoError, match="same id"):
        KekRing(kek("a"), (kek("a"),))
    k = Kek("visible", SecretBytes(KEY))
    assert KEY.hex() not in repr(k) and "visible" in repr(k)
    assert KEY.hex() not in repr(KekRing(k))


def test_kek_text_forms() -> None:
    assert kek_from_env(f"prod-1:{KEY.hex()}") == Kek("prod-1", SecretBytes(KEY))
    bare = kek_from_env(KEY.hex().upper())
    assert bare.key.reveal() == KEY and bare.key_id == kek_fingerprint(SecretBytes(KEY))
    assert bare.key_id.startswith("k") and len(bare.key_id) == 13
    for bad in ("", "zz" * 32, KEY.hex()[:-2], f"a b:{KEY.hex()}", f"{KEY.hex()}\n{KEY.hex()}"):
        with pytest.raises(CryptoError) as info:
            kek_from_env(bad, name="AAA_FMIP_KEK")
        assert "AAA_FMIP_KEK" in str(info.value)
        assert KEY.hex() not in str(info.value)


def test_create_then_load(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    created = create_kek_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_kek_file(path) == created
    assert [p.name for p in tmp_path.iterdir()] == ["kek"]  # no temporary file left behind
    with pytest.raises(CryptoError, match="already exists"):
        create_kek_file(path)
    assert load_kek_file(path) == created  # untouched


def test_create_is_exclusive_under_races(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    results: list[Kek | Exception] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait(timeout=10)
        try:
            results.append(create_kek_file(path))
        except CryptoError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    winners = [r for r in results if isinstance(r, Kek)]
    assert len(winners) == 1 and load_kek_file(path) == winners[0]


def test_create_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        create_kek_file(tmp_path / "kek")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "kek").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o620])
def test_load_refuses_group_or_world_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kek"
    path.write_text(f"k1:{KEY.hex()}\n")
    path.chmod(mode)
    with pytest.raises(CryptoError, match="group or others") as info:
        load_kek_file(path)
    assert KEY.hex() not in str(info.value)


def test_load_file_forms(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, f"# rotated 2024-05\n\nk-2024:{KEY.hex()}\n".encode())
    os.close(fd)
    assert load_kek_file(path) == Kek("k-2024", SecretBytes(KEY))
    with pytest.raises(CryptoError, match="does not exist"):
        load_kek_file(tmp_path / "missing")
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(CryptoError):
        load_kek_file(link)  # symlinks are not followed
