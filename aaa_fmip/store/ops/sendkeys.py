"""RFC 5269 handover keys by CGA and key hash, and the infrastructure root key of router-pair PSKs."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from ipaddress import IPv6Address

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import StoreError
from aaa_fmip.store import (
    SendKeyRecord,
    records,
)
from aaa_fmip.store import scripts as lua
from aaa_fmip.store.ops.base import Command, KeySchema, Op, Pipeline, Script, _b, _cga_of, _ttl_ms


class SendKeyOps(KeySchema):
    """RFC 5269 handover keys by CGA and key hash, and the infrastructure root key of router-pair PSKs."""

    # --- RFC 5269 keys -----------------------------------------------------------------------------------

    def lock_send_key(self, key_hash: bytes, *, ttl: float) -> Op[str | None]:
        """Claim the right to create the HK of one CGA public key for ``ttl`` seconds (SET NX); a token for
        :meth:`unlock_send_key`, or None when another request holds the claim."""
        token = secrets.token_hex(8)
        got = yield Command(("SET", self.sendkey_lock_key(key_hash), token, "NX", "PX", max(1, int(ttl * 1000))))
        return token if got else None

    def unlock_send_key(self, key_hash: bytes, token: str) -> Op[None]:
        """Release a claim made by :meth:`lock_send_key` (only if it is still ours)."""
        yield Script(lua.DEL_IF_EQUAL, (self.sendkey_lock_key(key_hash),), (token,))

    def put_send_key(self, rec: SendKeyRecord, *, now: float) -> Op[None]:
        """Store the HK of a CGA (wrapped, TTL = ``expires_at - now``), indexed by CGA and by key hash. One live
        HK per CGA public key: an HK stored earlier for the same key hash under another CGA is removed."""
        if not rec.key_hash:
            raise ValueError("key_hash must not be empty")
        ttl = _ttl_ms(rec.expires_at, now)
        if ttl <= 0:
            raise ValueError("SEND key already expired (expires_at <= now)")
        key = self.sendkey_key(rec.cga)
        cga_hex = rec.cga.packed.hex()
        value = records.encode_send_key(rec, key, self.kek)
        get = {"get": True}
        old_rec_raw, old_cga = (
            _b(x)
            for x in (
                yield Pipeline(
                    (
                        Command(("SET", key, value, "PX", ttl, "GET"), get),
                        Command(("SET", self.sendkey_hash_key(rec.key_hash), cga_hex, "PX", ttl, "GET"), get),
                    )
                )
            )
        )
        calls: list[Command | Script] = []
        if old_cga is not None and old_cga != cga_hex.encode():
            other = _cga_of(old_cga)
            if other is not None:
                calls.append(Script(lua.DEL_SENDKEY, (self.sendkey_key(other),), (rec.key_hash.hex(),)))
        if old_rec_raw is not None:
            old_hash = records.key_hash_of(old_rec_raw) or rec.key_hash
            if old_hash != rec.key_hash:
                calls.append(Script(lua.DEL_IF_EQUAL, (self.sendkey_hash_key(old_hash),), (cga_hex,)))
        if calls:
            yield Pipeline(tuple(calls))

    def get_send_key_by_cga(self, cga: IPv6Address) -> Op[SendKeyRecord | None]:
        key = self.sendkey_key(cga)
        raw = _b((yield Command(("GET", key))))
        return None if raw is None else records.decode_send_key(cga, raw, key, self.kek)

    def get_send_key_by_key_hash(self, key_hash: bytes) -> Op[SendKeyRecord | None]:
        cga_hex = _b((yield Command(("GET", self.sendkey_hash_key(key_hash)))))
        cga = None if cga_hex is None else _cga_of(cga_hex)
        if cga is None:
            return None
        rec = yield from self.get_send_key_by_cga(cga)
        return rec if rec is not None and rec.key_hash == key_hash else None

    # --- the infrastructure root key (architecture.md §2: router-pair PSKs) --------------------------------

    def irk_key(self) -> str:
        return f"{self.p}:irk"

    def infrastructure_root_key(self, make: Callable[[], SecretBytes], *, now: float) -> Op[SecretBytes]:
        """The IRK, unwrapped: the stored one, or ``make()`` stored first (``SET NX``, so concurrent first calls
        all end with the one that landed). Never expires; it stays wrapped under the KEK it was created with."""
        key = self.irk_key()
        raw = _b((yield Command(("GET", key))))
        if raw is None:
            value = records.encode_irk(make(), now, key, self.kek)
            # the GET behind SET NX reads whichever value won (nothing deletes this key)
            _, raw_reply = yield Pipeline((Command(("SET", key, value, "NX")), Command(("GET", key))))
            raw = _b(raw_reply)
            if raw is None:
                raise StoreError(f"{key} vanished right after it was created")
        return records.decode_irk(raw, key, self.kek)
