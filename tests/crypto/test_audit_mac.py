"""The audit entry MAC (crypto/audit.py): the encoding its docstring states, computed independently here."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import pytest

from aaa_fmip.crypto.audit import AuditKeys, entry_mac
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek


def _item(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw


def _reference(key: bytes, n: int, prev: str, at: str, event: str, fields: str) -> str:
    data = b"aaa-fmip-audit-v2\x00" + struct.pack(">Q", n) + _item(prev) + _item(at) + _item(event) + _item(fields)
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def test_entry_mac_is_hmac_sha256_of_the_stated_encoding() -> None:
    key = os.urandom(32)
    args = (7, "a" * 64, "1800000000.000001", "fbu.verified", '{"spi":5,"verdict":"accepted"}')
    assert entry_mac(SecretBytes(key), *args) == _reference(key, *args)
    assert entry_mac(SecretBytes(key), 8, *args[1:]) != _reference(key, *args)


@pytest.mark.parametrize("n", [0, 1 << 64])
def test_positions_out_of_range_are_refused(n: int) -> None:
    keys = AuditKeys.derive(Kek("k1", SecretBytes(os.urandom(32))))
    with pytest.raises(ValueError):
        keys.mac(n, "0" * 64, "1.0", "e", "{}")
