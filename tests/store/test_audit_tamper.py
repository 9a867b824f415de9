"""verify_audit detects entries edited, deleted or inserted behind the store's back (raw redis-py edits)."""

from __future__ import annotations

import hashlib

import redis

from aaa_fmip.store.redis import AUDIT_GENESIS, RedisStore, audit_entry_hash
from tests.support.redis_server import RedisServer

Row = tuple[bytes, dict[bytes, bytes]]


def fill(store: RedisStore, n: int = 6) -> list[str]:
    return [store.append_audit("session.ingested", {"spi": i, "user": f"u{i}"}, at=3000.0 + i).id for i in range(n)]


def stream_key(store: RedisStore) -> str:
    return f"{store.prefix}:{{audit}}:stream"


def rewrite(raw: redis.Redis, store: RedisStore, rows: list[Row]) -> None:
    """Replace the stream by ``rows`` (Redis has no in-place edit: delete and re-add with the same ids)."""
    key = stream_key(store)
    raw.delete(key)
    for entry_id, fields in rows:
        raw.xadd(key, fields, id=entry_id)  # type: ignore[arg-type]


def test_intact_chain_verifies(store: RedisStore) -> None:
    ids = fill(store)
    check = store.verify_audit()
    assert check.ok and check.entries == len(ids) and check.first_bad_id is None


def test_edited_entry_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    rows[2][1][b"f:user"] = b"mallory"
    rewrite(raw, store, rows)
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == ids[2] and check.entries == len(ids)


def test_edited_timestamp_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    rows[4][1][b"at"] = b"3004.0"  # same instant, other text: the hash covers the stored text
    rewrite(raw, store, rows)
    assert store.verify_audit().first_bad_id == ids[4]


def test_edit_with_recomputed_hash_is_found_at_the_next_entry(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    f = rows[1][1]
    f[b"f:user"] = b"mallory"
    fields = {k[2:].decode(): v.decode() for k, v in f.items() if k.startswith(b"f:")}
    f[b"hash"] = audit_entry_hash(f[b"prev"].decode(), f[b"at"].decode(), f[b"event"].decode(), fields).encode()
    rewrite(raw, store, rows)
    assert store.verify_audit().first_bad_id == ids[2]


def test_deleted_entry_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    raw.xdel(stream_key(store), ids[3])
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == ids[4] and check.entries == len(ids) - 1


def test_deleted_tail_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    raw.xdel(stream_key(store), ids[-1])
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == ids[-2]


def test_emptied_stream_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    fill(store)
    raw.delete(stream_key(store))
    check = store.verify_audit()
    assert not check.ok and check.entries == 0 and check.head == AUDIT_GENESIS


def test_inserted_entry_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    prev = rows[2][1][b"hash"].decode()
    forged_fields = {"spi": "99", "user": "mallory"}
    forged: dict[bytes, bytes] = {
        b"at": b"3002.500000",
        b"event": b"session.revoked",
        b"prev": prev.encode(),  # links correctly to its predecessor...
        b"hash": audit_entry_hash(prev, "3002.500000", "session.revoked", forged_fields).encode(),
        **{f"f:{k}".encode(): v.encode() for k, v in forged_fields.items()},
    }
    # Stream ids only grow, so inserting means rebuilding the stream (with fresh ids, in order).
    bodies = [f for _, f in rows[:3]] + [forged] + [f for _, f in rows[3:]]
    rewrite(raw, store, [(f"{i + 1}-0".encode(), f) for i, f in enumerate(bodies)])
    check = store.verify_audit()
    assert not check.ok and check.first_bad_id == "5-0"  # ...but the next entry does not link to it


def test_malformed_entry_is_found(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    ids = fill(store)
    rows: list[Row] = raw.xrange(stream_key(store))  # type: ignore[assignment]
    del rows[0][1][b"prev"]
    rewrite(raw, store, rows)
    assert store.verify_audit().first_bad_id == ids[0]


def test_canonical_encoding_vector() -> None:
    """The documented encoding, spelled out octet by octet (names sorted; lengths are UTF-8 octets)."""
    expected = (
        b"aaa-fmip-audit-v1\x00"
        + b"\x00\x00\x00\x40"
        + b"0" * 64
        + b"\x00\x00\x00\x0b1000.500000"
        + b"\x00\x00\x00\x10session.ingested"
        + b"\x00\x00\x00\x02"  # two fields
        + b"\x00\x00\x00\x03spi\x00\x00\x00\x0242"
        + b"\x00\x00\x00\x04user\x00\x00\x00\x07j\xc3\xbcrgen"
    )
    got = audit_entry_hash(AUDIT_GENESIS, "1000.500000", "session.ingested", {"user": "jürgen", "spi": "42"})
    assert got == hashlib.sha256(expected).hexdigest()


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
    # The fields travel to the append script as one JSON array per entry (decoded by the script's cjson): what
    # comes back must be the very texts the entry hash was computed over, whatever they contain.
    appended = any_store.append_audits(
        [("odd.texts", {f"t{i}": text for i, text in enumerate(AWKWARD_TEXTS)}, 1_700_000_000.5), ("n", {"i": 1}, 2.0)]
    )
    entries, _ = any_store.read_audit(limit=10)
    assert [e.fields for e in entries] == [{f"t{i}": t for i, t in enumerate(AWKWARD_TEXTS)}, {"i": "1"}]
    assert [(e.prev, e.hash) for e in entries] == [(e.prev, e.hash) for e in appended]
    check = any_store.verify_audit()
    assert check.ok and check.entries == 2
