"""Records as stored: one codec for sessions, RFC 5269 keys and the infrastructure root key (JSON, version 1, the
key material wrapped).

A record is compact JSON with sorted keys; its key material (``hmk`` of a session, ``hk`` of a SEND key, ``irk``) is
base64 of the AES-256-GCM blob of :meth:`KekRing.wrap`, whose AAD is the record's full Redis key name, so a
wrapped key copied under another name fails to unwrap. Identifiers (user name, MAC, NAS, external ids) are in
clear. A record that does not parse raises :class:`StoreError` naming the key; one whose key material does not
unwrap raises :class:`CryptoError` naming the KEK id, never key octets.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from ipaddress import IPv6Address
from typing import Any, Final, Literal, TypeVar, cast

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import StoreError
from aaa_fmip.store import SendKeyRecord, SessionRecord

VERSION: Final = 1
R = TypeVar("R")


def encode(doc: Mapping[str, Any], secret_name: str, secret: SecretBytes, key: str, kek: KekRing) -> bytes:
    """``doc`` plus its key material wrapped under ``secret_name``, for the Redis key ``key``."""
    wrapped = base64.b64encode(kek.wrap(secret.reveal(), key.encode())).decode("ascii")
    return json.dumps({"v": VERSION, **doc, secret_name: wrapped}, separators=(",", ":"), sort_keys=True).encode()


def decode(
    raw: bytes, secret_name: str, key: str, kek: KekRing, what: str, build: Callable[[dict[str, Any], SecretBytes], R]
) -> R:
    """The record in ``raw`` (stored under ``key``): ``build(doc, unwrapped key material)``."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("v") != VERSION:
            raise ValueError("version")
        blob = base64.b64decode(doc[secret_name], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise StoreError(f"{what} record {key} is malformed") from None
    secret = kek.unwrap(blob, key.encode())  # CryptoError names the KEK id, never key bytes
    try:
        return build(doc, secret)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise StoreError(f"{what} record {key} is malformed") from None


def encode_session(rec: SessionRecord, key: str, kek: KekRing) -> bytes:
    doc = {
        "spi": rec.spi,
        "user_name": rec.user_name,
        "kind": rec.kind,
        "created_at": rec.created_at,
        "expires_at": rec.expires_at,
        "calling_station_id": rec.calling_station_id,
        "nas_identifier": rec.nas_identifier,
        "external_ids": list(rec.external_ids),
    }
    return encode(doc, "hmk", rec.hmk, key, kek)


def decode_session(hmk_name: bytes, raw: bytes, key: str, kek: KekRing) -> SessionRecord:
    def build(doc: dict[str, Any], hmk: SecretBytes) -> SessionRecord:
        kind = str(doc["kind"])
        if kind not in ("eap", "dsrk"):
            raise ValueError("kind")
        return SessionRecord(
            hmk_name=hmk_name,
            spi=int(doc["spi"]),
            hmk=hmk,
            user_name=str(doc["user_name"]),
            kind=cast(Literal["eap", "dsrk"], kind),
            created_at=float(doc["created_at"]),
            expires_at=float(doc["expires_at"]),
            calling_station_id=opt_str(doc.get("calling_station_id")),
            nas_identifier=opt_str(doc.get("nas_identifier")),
            external_ids=tuple(str(x) for x in doc.get("external_ids", ())),
        )

    return decode(raw, "hmk", key, kek, "session", build)


def encode_send_key(rec: SendKeyRecord, key: str, kek: KekRing) -> bytes:
    doc = {"key_hash": rec.key_hash.hex(), "created_at": rec.created_at, "expires_at": rec.expires_at}
    return encode(doc, "hk", rec.hk, key, kek)


def decode_send_key(cga: IPv6Address, raw: bytes, key: str, kek: KekRing) -> SendKeyRecord:
    def build(doc: dict[str, Any], hk: SecretBytes) -> SendKeyRecord:
        return SendKeyRecord(
            cga=cga,
            key_hash=bytes.fromhex(doc["key_hash"]),
            hk=hk,
            created_at=float(doc["created_at"]),
            expires_at=float(doc["expires_at"]),
        )

    return decode(raw, "hk", key, kek, "SEND key", build)


def encode_irk(irk: SecretBytes, created_at: float, key: str, kek: KekRing) -> bytes:
    return encode({"created_at": created_at}, "irk", irk, key, kek)


def decode_irk(raw: bytes, key: str, kek: KekRing) -> SecretBytes:
    def build(doc: dict[str, Any], irk: SecretBytes) -> SecretBytes:
        float(doc["created_at"])
        return irk

    return decode(raw, "irk", key, kek, "infrastructure root key", build)


def indexed_names(raw: bytes) -> tuple[int, str | None, set[str]] | None:
    """The SPI, calling station and external ids a stored session record is indexed under (None if unreadable),
    read without unwrapping its key material."""
    try:
        doc = json.loads(raw)
        return (
            int(doc["spi"]),
            opt_str(doc.get("calling_station_id")),
            {str(x) for x in doc.get("external_ids", ())},
        )
    except (ValueError, KeyError, TypeError):
        return None


def key_hash_of(raw: bytes) -> bytes | None:
    """The key hash a stored SEND key record names (None if unreadable), without unwrapping it."""
    try:
        return bytes.fromhex(json.loads(raw)["key_hash"])
    except (ValueError, KeyError, TypeError):
        return None


def opt_str(value: object) -> str | None:
    return None if value is None else str(value)
