"""verify_audit against someone who can write to Redis (raw redis-py edits behind the store's back).

The scenarios are those an independent review ran against the unkeyed chain of format v1 (9 of 16 passed
verification then): a forged entry, an edited-and-rechained entry, a cut tail with the head moved back, and a
wipe of stream and head. Entries are now MACed with a key derived from the KEK (never in Redis), and a signed
checkpoint kept outside Redis catches what no in-Redis check can (cutting the tail together with the head).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from typing import cast

import pytest
import redis

from aaa_fmip.crypto.audit import AuditKeys
from aaa_fmip.errors import CryptoError
from aaa_fmip.store import Checkpoint
from aaa_fmip.store.redis import AUDIT_GENESIS, RedisStore, canonical_fields
from tests.support.redis_server import RedisServer

Row = tuple[bytes, dict[bytes, bytes]]


def fill(store: RedisStore, n: int = 6) -> list[str]:
    return [store.append_audit("session.created", {"spi": i, "user": f"u{i}"}, at=3000.0 + i).id for i in range(n)]


def stream_key(store: RedisStore) -> str:
    return f"{store.prefix}:{{audit}}:stream"


def head_key(store: RedisStore) -> str:
    return f"{store.prefix}:{{audit}}:head"


def rewrite(raw: redis.Redis, store: RedisStore, rows: list[Row]) -> None:
    """Replace the stream by ``rows`` (Redis has no in-place edit: delete and re-add with the same ids)."""
    key = stream_key(store)
    raw.delete(key)
    for entry_id, fields in rows:
        raw.xadd(key, fields, id=entry_id)  # type: ignore[arg-type]


def attacker_mac(n: int, prev: str, at: str, event: str, fields_json: str) -> str:
    """What someone without the KEK can compute: the documented encoding under a key of their own (or the
    unkeyed SHA-256 of format v1); either way not the service's MAC."""
    key = secrets.token_bytes(32)
    item = [x.encode() for x in (prev, at, event, fields_json)]
    data = b"aaa-fmip-audit-v2\x00" + struct.pack(">Q", n) + b"".join(struct.pack(">I", len(x)) + x for x in item)
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def test_intact_chain_verifies(store: RedisStore) -> None:
    ids = fill(store)
    check = store.verify_audit()
    assert check.ok and check.entries == len(ids) and check.n == len(ids) and check.first_bad_id is None


def test_fields_keep_their_json_types(store: RedisStore) -> None:
    e = store.append_audit("fbu.verified", {"spi": 1706538977, "ok": True, "ar": "ar-1", "gone": None}, at=1.0)
    entries, _ = store.read_audit(limit=1)
    assert entries[0].fields == {"spi": 1706538977, "ok": True, "ar": "ar-1"} == e.fields
    assert isinstance(entries[0].fields["spi"], int) and entries[0].fields["ok"] is True


def test_edited_entry_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    rows[2][1][b"f"] = b'{"spi":2,"user":"mallory"}'
    rewrite(raw, store, rows)
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == ids[2] and check.entries == len(ids)
    assert check.problem and "edited" in check.problem


def test_edited_timestamp_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    rows[4][1][b"at"] = b"3004.0"  # same instant, other text: the MAC covers the stored text
    rewrite(raw, store, rows)
    assert store.verify_audit().first_bad_id == ids[4]


def test_edit_with_a_recomputed_mac_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    """Format v1's hole: edit an entry and recompute its hash and every later one. Without the KEK, the
    recomputed MACs are not the service's, so the first edited entry fails."""
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    prev = rows[0][1][b"mac"].decode()
    for i in range(1, len(rows)):
        f = rows[i][1]
        if i == 1:
            f[b"f"] = b'{"spi":1,"user":"mallory"}'
        f[b"prev"] = prev.encode()
        f[b"mac"] = attacker_mac(i + 1, prev, f[b"at"].decode(), f[b"event"].decode(), f[b"f"].decode()).encode()
        prev = f[b"mac"].decode()
    rewrite(raw, store, rows)
    raw.set(head_key(store), f"{len(rows)}:{prev}")
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == ids[1]


def test_forged_revocation_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    """A forged `session.revoked` appended at the end, linked and with the head moved onto it."""
    raw = redis.Redis.from_url(redis_server.url)
    fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    prev = rows[-1][1][b"mac"].decode()
    fields = canonical_fields({"hmk_name": "00" * 8, "spi": 7, "cause": "revoked"})
    mac = attacker_mac(7, prev, "3010.000000", "session.revoked", fields)
    body = {b"v": b"2", b"n": b"7", b"at": b"3010.000000", b"event": b"session.revoked", b"f": fields.encode()}
    body |= {b"prev": prev.encode(), b"kid": rows[-1][1][b"kid"], b"mac": mac.encode()}
    forged_id = cast(bytes, raw.xadd(stream_key(store), body))  # type: ignore[arg-type]
    raw.set(head_key(store), f"7:{mac}")
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == forged_id.decode()


def test_deleted_entry_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    raw.xdel(stream_key(store), ids[3])
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == ids[4] and check.entries == len(ids) - 1


def test_deleted_tail_is_found_by_the_head(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    raw.xdel(stream_key(store), ids[-1])
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == ids[-2] and check.problem and "head" in check.problem


def test_tail_cut_with_the_head_is_found_only_by_a_kept_checkpoint(
    store: RedisStore, redis_server: RedisServer
) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    kept = store.checkpoint(now=4000.0)
    assert kept.n == len(ids)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    raw.xdel(stream_key(store), ids[-1], ids[-2])
    raw.set(head_key(store), f"{len(ids) - 2}:{rows[-3][1][b'mac'].decode()}")
    assert store.verify_audit().ok  # consistent in itself: nothing inside Redis can tell
    check = store.verify_audit(kept)
    assert not check.ok and check.checkpoint == "not reached" and check.problem and "truncated" in check.problem


def test_wipe_of_stream_and_head_is_found_by_a_kept_checkpoint(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    fill(store)
    kept = store.checkpoint(now=4000.0)
    raw.delete(stream_key(store), head_key(store))
    assert store.verify_audit().ok  # an empty trail is a valid one...
    check = store.verify_audit(kept)
    assert not check.ok and check.entries == 0 and check.head == AUDIT_GENESIS  # ...but not after this checkpoint


def test_kept_checkpoint_matches_a_trail_that_grew(store: RedisStore) -> None:
    fill(store, 3)
    kept = store.checkpoint(now=4000.0)
    fill(store, 2)
    check = store.verify_audit(kept)
    assert check.ok and check.checkpoint == "matches" and check.n == 5


def test_rewritten_history_under_a_kept_checkpoint_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    """Replace the whole trail (stream and head) by a consistent one of the same length: the entry at the
    checkpoint's position no longer carries its head (and the MACs fail anyway)."""
    raw = redis.Redis.from_url(redis_server.url)
    fill(store, 3)
    kept = store.checkpoint(now=4000.0)
    raw.delete(stream_key(store), head_key(store))
    for i in range(3):
        store.append_audit("session.created", {"spi": i, "user": "mallory"}, at=5000.0 + i)
    check = store.verify_audit(kept)
    assert not check.ok and check.checkpoint == "differs"


def test_a_checkpoint_not_signed_by_the_service_is_refused(store: RedisStore) -> None:
    fill(store, 2)
    kept = store.checkpoint(now=4000.0)
    bent = Checkpoint(n=kept.n + 5, head=kept.head, at=kept.at, kid=kept.kid, signature=kept.signature)
    with pytest.raises(CryptoError):
        store.verify_audit(bent)
    with pytest.raises(CryptoError):
        store.verify_audit(Checkpoint(n=1, head=kept.head, at=kept.at, kid="other", signature=kept.signature))


def test_checkpoint_signature_verifies_with_the_published_key_alone(store: RedisStore) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    fill(store, 2)
    kept = store.checkpoint(now=4000.0)
    public = Ed25519PublicKey.from_public_bytes(store.audit_public_keys[kept.kid])
    # The signed message, spelled out as docs/api.md gives it to auditors.
    message = b"aaa-fmip-audit-checkpoint-v1\x00" + struct.pack(">Q", kept.n)
    message += struct.pack(">I", 64) + kept.head.encode() + struct.pack(">I", len(kept.at)) + kept.at.encode()
    public.verify(kept.signature, message)  # raises if not


def test_a_broken_trail_gets_no_checkpoint(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    raw.xdel(stream_key(store), ids[2])
    from aaa_fmip.errors import StoreError

    with pytest.raises(StoreError, match="does not verify"):
        store.checkpoint(now=4000.0)


def test_malformed_entry_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    del rows[0][1][b"prev"]
    rewrite(raw, store, rows)
    assert store.verify_audit().first_bad_id == ids[0]


def test_entry_mac_vector() -> None:
    """The documented encoding, spelled out octet by octet, under a known audit key."""
    from aaa_fmip.crypto.secrets import SecretBytes
    from aaa_fmip.crypto.wrap import Kek

    keys = AuditKeys.derive(Kek("k1", SecretBytes(bytes(range(32)))))
    fields = canonical_fields({"user": "jürgen", "spi": 42})
    assert fields == '{"spi":42,"user":"jürgen"}'
    expected = (
        b"aaa-fmip-audit-v2\x00"
        + b"\x00\x00\x00\x00\x00\x00\x00\x01"
        + b"\x00\x00\x00\x40"
        + b"0" * 64
        + b"\x00\x00\x00\x0b1000.500000"
        + b"\x00\x00\x00\x0fsession.created"
        + struct.pack(">I", len(fields.encode()))
        + fields.encode()
    )
    # The key: HKDF-SHA-256 (RFC 5869) with an empty salt, computed here by hand from the RFC's two steps.
    prk = hmac.new(b"\x00" * 32, bytes(range(32)), hashlib.sha256).digest()
    okm = hmac.new(prk, b"aaa-fmip audit entry MAC v2" + b"\x01", hashlib.sha256).digest()
    assert keys.mac(1, AUDIT_GENESIS, "1000.500000", "session.created", fields) == (
        hmac.new(okm, expected, hashlib.sha256).hexdigest()
    )


AWKWARD_TEXTS = [
    "plain",
    'quote " backslash \\ slash / brace } bracket ]',
    "line\nfeed\ttab\r\x00nul\x1funit-separator\x7f",
    "utf-8: éèà ß Ωμ 漢字 العربية",
    "astral: 😀 𝄞 \U0010fffd",
    "",
    "x" * 2000,
]


def test_every_text_is_stored_as_given_and_the_chain_verifies(any_store: RedisStore) -> None:
    # The entries travel to the append script as arguments, one per stream value: what comes back must be the
    # very texts the MAC was computed over, whatever they contain (the event's name too).
    appended = any_store.append_audits(
        [
            ("odd.texts", {f"t{i}": text for i, text in enumerate(AWKWARD_TEXTS)}, 1_700_000_000.5),
            (AWKWARD_TEXTS[2], {"i": 1}, 2.0),
        ]
    )
    entries, _ = any_store.read_audit(limit=10)
    assert [e.fields for e in entries] == [{f"t{i}": t for i, t in enumerate(AWKWARD_TEXTS)}, {"i": 1}]
    assert [e.event for e in entries] == ["odd.texts", AWKWARD_TEXTS[2]]
    assert [(e.prev, e.hash) for e in entries] == [(e.prev, e.hash) for e in appended]
    check = any_store.verify_audit()
    assert check.ok and check.entries == 2
