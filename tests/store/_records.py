"""Record builders for the store tests."""

from __future__ import annotations

import ipaddress
import secrets
import time

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.store import SendKeyRecord, SessionRecord


def session(
    *,
    spi: int | None = None,
    lifetime: float = 600.0,
    now: float | None = None,
    mac: str | None = None,
    external_ids: tuple[str, ...] = (),
    hmk_name: bytes | None = None,
    user_name: str = "alice@fmip.test",
) -> SessionRecord:
    now = time.time() if now is None else now
    return SessionRecord(
        hmk_name=hmk_name or secrets.token_bytes(8),
        spi=spi if spi is not None else 1 + secrets.randbelow(2**32 - 1),
        hmk=SecretBytes(secrets.token_bytes(64)),
        user_name=user_name,
        kind="eap",
        created_at=now,
        expires_at=now + lifetime,
        calling_station_id=mac,
        nas_identifier="nas-1.fmip.test",
        external_ids=external_ids,
    )


def cga() -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\x20\x01\x0d\xb8" + secrets.token_bytes(12))


def send_key(*, lifetime: float = 600.0, now: float | None = None, key_hash: bytes | None = None) -> SendKeyRecord:
    now = time.time() if now is None else now
    return SendKeyRecord(
        cga=cga(),
        key_hash=key_hash or secrets.token_bytes(16),
        hk=SecretBytes(secrets.token_bytes(32)),
        created_at=now,
        expires_at=now + lifetime,
    )


def mac() -> str:
    return "-".join(f"{b:02x}" for b in secrets.token_bytes(6))
