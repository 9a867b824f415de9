"""RFC 2548 §2.4.2 salt encryption: vectors from an independent implementation, pyrad both ways, properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrad.packet import AuthPacket

from aaa_fmip.errors import DecodeError
from aaa_fmip.radius.dictionary import pyrad_dictionary
from aaa_fmip.radius.salt import MAX_PLAINTEXT, new_salt, salt_decrypt, salt_encrypt

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "rfc2548-salt-encryption.json").read_text())
SECRET = bytes.fromhex(VECTORS["secret"])
RA = bytes.fromhex(VECTORS["request_authenticator"])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_vectors_encrypt_and_decrypt(case: dict[str, str]) -> None:
    plaintext, salt, ciphertext = (bytes.fromhex(case[k]) for k in ("plaintext", "salt", "ciphertext"))
    assert salt_encrypt(plaintext, secret=SECRET, request_authenticator=RA, salt=salt) == ciphertext
    assert salt_decrypt(ciphertext, secret=SECRET, request_authenticator=RA) == plaintext


def test_pyrad_decrypts_ours_and_we_decrypt_pyrads() -> None:
    request = AuthPacket(secret=SECRET, dict=pyrad_dictionary(), authenticator=RA)
    reply = request.CreateReply()
    key = bytes(range(100, 132))
    ours = salt_encrypt(key, secret=SECRET, request_authenticator=RA, salt=new_salt())
    assert reply.SaltDecrypt(ours) == key
    assert salt_decrypt(reply.SaltCrypt(key), secret=SECRET, request_authenticator=RA) == key


@given(
    plaintext=st.binary(max_size=MAX_PLAINTEXT),
    secret=st.binary(min_size=1, max_size=64),
    ra=st.binary(min_size=16, max_size=16),
    salt=st.binary(min_size=2, max_size=2).map(lambda s: bytes([s[0] | 0x80, s[1]])),
)
def test_round_trip(plaintext: bytes, secret: bytes, ra: bytes, salt: bytes) -> None:
    value = salt_encrypt(plaintext, secret=secret, request_authenticator=ra, salt=salt)
    assert value[:2] == salt and (len(value) - 2) % 16 == 0
    assert salt_decrypt(value, secret=secret, request_authenticator=ra) == plaintext


@given(st.binary(max_size=300))
def test_any_bytes_decrypt_or_raise_decode_error(value: bytes) -> None:
    try:
        out = salt_decrypt(value, secret=SECRET, request_authenticator=RA)
    except DecodeError:
        return
    assert len(out) < len(value)


def test_truncation_at_every_offset_fails_cleanly() -> None:
    value = bytes.fromhex(VECTORS["cases"][0]["ciphertext"])
    for n in range(len(value)):
        if n >= 18 and (n - 2) % 16 == 0:
            continue  # whole blocks: decodes, but not to the key (checked by the caller's length check)
        with pytest.raises(DecodeError):
            salt_decrypt(value[:n], secret=SECRET, request_authenticator=RA)


def test_salt_without_msb_and_bad_parameters() -> None:
    value = bytes.fromhex(VECTORS["cases"][0]["ciphertext"])
    with pytest.raises(DecodeError):
        salt_decrypt(bytes([value[0] & 0x7F]) + value[1:], secret=SECRET, request_authenticator=RA)
    with pytest.raises(ValueError):
        salt_encrypt(b"k", secret=SECRET, request_authenticator=RA, salt=b"\x00\x01")
    with pytest.raises(ValueError):
        salt_encrypt(b"k" * (MAX_PLAINTEXT + 1), secret=SECRET, request_authenticator=RA, salt=b"\x80\x01")
    with pytest.raises(ValueError):
        salt_decrypt(value, secret=b"", request_authenticator=RA)
    with pytest.raises(ValueError):
        salt_decrypt(value, secret=SECRET, request_authenticator=RA[:15])


def test_new_salt_has_msb_set_and_varies() -> None:
    salts = {new_salt() for _ in range(64)}
    assert all(s[0] & 0x80 and len(s) == 2 for s in salts)
    assert len(salts) > 32
