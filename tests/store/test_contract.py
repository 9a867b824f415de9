"""The store contract, run unchanged against a single Redis, Redis Cluster, Redis Sentinel and the embedded
server (``any_store``)."""

from __future__ import annotations

import dataclasses
import secrets
import time

import pytest

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, KekRing
from aaa_fmip.errors import CryptoError
from aaa_fmip.store.redis import AUDIT_GENESIS, RedisStore
from tests.store import _records as rec


def test_ping(any_store: RedisStore) -> None:
    any_store.ping()


def test_session_round_trip(any_store: RedisStore) -> None:
    now = time.time()
    s = rec.session(now=now, mac=rec.mac(), external_ids=("radius-class:abc", "user:alice"))
    any_store.put_session(s, now=now)
    got = any_store.get_session(s.hmk_name)
    assert got == s  # dataclass equality; the HMK compares in constant time
    assert got is not None and got.hmk.reveal() == s.hmk.reveal()
    assert "redacted" in repr(got.hmk)


def test_get_unknown_session(any_store: RedisStore) -> None:
    assert any_store.get_session(secrets.token_bytes(8)) is None
    assert any_store.find_by_spi(12345) == []
    assert any_store.find_by_calling_station(rec.mac()) is None
    assert any_store.find_by_external_id("user:nobody") == []


def test_spi_collision_both_found(any_store: RedisStore) -> None:
    now = time.time()
    a = rec.session(spi=0xDEADBEEF, now=now, lifetime=600)
    b = rec.session(spi=0xDEADBEEF, now=now, lifetime=900)
    other = rec.session(spi=0xDEADBEF0, now=now)
    for s in (a, b, other):
        any_store.put_session(s, now=now)
    found = any_store.find_by_spi(0xDEADBEEF)
    assert {r.hmk_name for r in found} == {a.hmk_name, b.hmk_name}
    assert found[0].hmk_name == b.hmk_name  # longest-lived first
    assert [r.hmk_name for r in any_store.find_by_spi(0xDEADBEEF, limit=1)] == [b.hmk_name]
    assert any_store.find_by_spi(0xDEADBEEF, limit=0) == []


def test_find_by_calling_station_is_latest(any_store: RedisStore) -> None:
    now = time.time()
    mac = rec.mac()
    old = rec.session(now=now, mac=mac)
    new = rec.session(now=now + 1, mac=mac)
    any_store.put_session(old, now=now)
    any_store.put_session(new, now=now + 1)
    got = any_store.find_by_calling_station(mac)
    assert got is not None and got.hmk_name == new.hmk_name


def test_find_by_external_id(any_store: RedisStore) -> None:
    now = time.time()
    a = rec.session(now=now, external_ids=("user:bob", "radius-class:1"))
    b = rec.session(now=now, external_ids=("user:bob",))
    any_store.put_session(a, now=now)
    any_store.put_session(b, now=now)
    assert {r.hmk_name for r in any_store.find_by_external_id("user:bob")} == {a.hmk_name, b.hmk_name}
    assert [r.hmk_name for r in any_store.find_by_external_id("radius-class:1")] == [a.hmk_name]


def test_replacing_a_session_drops_its_old_index_entries(any_store: RedisStore) -> None:
    now = time.time()
    mac1, mac2 = rec.mac(), rec.mac()
    s = rec.session(now=now, mac=mac1, external_ids=("x:1", "x:2"))
    any_store.put_session(s, now=now)
    s2 = dataclasses.replace(s, calling_station_id=mac2, external_ids=("x:2",))
    any_store.put_session(s2, now=now)
    assert any_store.find_by_calling_station(mac1) is None
    assert any_store.find_by_external_id("x:1") == []
    assert [r.hmk_name for r in any_store.find_by_external_id("x:2")] == [s.hmk_name]
    got = any_store.find_by_calling_station(mac2)
    assert got is not None and got.hmk_name == s.hmk_name


def test_delete_session(any_store: RedisStore) -> None:
    now = time.time()
    mac = rec.mac()
    s = rec.session(now=now, mac=mac, external_ids=("user:carol",))
    keep = rec.session(spi=s.spi, now=now)  # same SPI, must survive
    any_store.put_session(s, now=now)
    any_store.put_session(keep, now=now)
    ar = secrets.token_bytes(16)
    assert any_store.check_replay(s.hmk_name, ar, 7, b"auth", ttl=600) == "accepted"
    assert not any_store.is_revoked(spi=s.spi)
    assert not any_store.is_revoked(hmk_name=s.hmk_name)

    deleted = any_store.delete_session(s.hmk_name, now=now)
    assert deleted == s
    assert any_store.get_session(s.hmk_name) is None
    assert [r.hmk_name for r in any_store.find_by_spi(s.spi)] == [keep.hmk_name]
    assert any_store.find_by_calling_station(mac) is None
    assert any_store.find_by_external_id("user:carol") == []
    assert any_store.is_revoked(spi=s.spi)
    assert any_store.is_revoked(hmk_name=s.hmk_name)
    assert any_store.is_revoked(spi=12, hmk_name=s.hmk_name)
    assert not any_store.is_revoked(hmk_name=keep.hmk_name)
    # the replay state went with the session: the same number is new again
    assert any_store.check_replay(s.hmk_name, ar, 7, b"auth", ttl=600) == "accepted"
    assert any_store.delete_session(s.hmk_name, now=now) is None
    with pytest.raises(ValueError):
        any_store.is_revoked()


def test_count_live_sessions(any_store: RedisStore) -> None:
    now = time.time()
    assert any_store.count_live_sessions() == 0
    sessions = [rec.session(now=now) for _ in range(3)]
    for s in sessions:
        any_store.put_session(s, now=now)
    assert any_store.count_live_sessions() == 3
    any_store.put_session(sessions[0], now=now)  # replacing is not adding
    assert any_store.count_live_sessions() == 3
    any_store.delete_session(sessions[1].hmk_name, now=now)
    assert any_store.count_live_sessions() == 2


def test_put_session_rejects_bad_records(any_store: RedisStore) -> None:
    now = time.time()
    with pytest.raises(ValueError):
        any_store.put_session(rec.session(now=now, lifetime=-1), now=now)
    with pytest.raises(ValueError):
        any_store.put_session(dataclasses.replace(rec.session(now=now), spi=0), now=now)
    with pytest.raises(ValueError):
        any_store.put_session(dataclasses.replace(rec.session(now=now), hmk_name=b""), now=now)


# --- replay ---------------------------------------------------------------------------------------------


def test_replay_serial_arithmetic(any_store: RedisStore) -> None:
    scope, ar = secrets.token_bytes(8), secrets.token_bytes(16)

    def check(seq: int, auth: bytes = b"a") -> str:
        return any_store.check_replay(scope, ar, seq, auth, ttl=600)

    assert check(100, b"x") == "accepted"
    assert check(100, b"x") == "retransmission"
    assert check(100, b"y") == "replay"  # same number, other authenticator
    assert check(99) == "replay"
    assert check(101) == "accepted"
    assert check(101 + 32767) == "accepted"  # the far edge of the window
    last = 101 + 32767
    assert check((last + 32768) % 65536) == "replay"  # exactly half-way round is not newer
    assert check(65535) == "accepted"
    assert check(0) == "accepted"  # wraps
    assert check(65535) == "replay"


def test_replay_state_is_per_ar_and_per_scope(any_store: RedisStore) -> None:
    scope, ar1, ar2 = secrets.token_bytes(8), secrets.token_bytes(16), secrets.token_bytes(16)
    assert any_store.check_replay(scope, ar1, 10, b"a", ttl=600) == "accepted"
    assert any_store.check_replay(scope, ar2, 5, b"a", ttl=600) == "accepted"
    assert any_store.check_replay(secrets.token_bytes(16), ar1, 5, b"a", ttl=600) == "accepted"
    assert any_store.check_replay(scope, ar1, 5, b"a", ttl=600) == "replay"


def test_replay_rejects_bad_arguments(any_store: RedisStore) -> None:
    with pytest.raises(ValueError):
        any_store.check_replay(b"s" * 8, b"a" * 16, 65536, b"x", ttl=1)
    with pytest.raises(ValueError):
        any_store.check_replay(b"s" * 8, b"a" * 16, 1, b"x", ttl=0)


def test_remember_nonce(any_store: RedisStore) -> None:
    scope, nonce = secrets.token_bytes(16), secrets.token_bytes(8)
    assert any_store.remember_nonce(scope, nonce, ttl=60) is True
    assert any_store.remember_nonce(scope, nonce, ttl=60) is False
    assert any_store.remember_nonce(secrets.token_bytes(16), nonce, ttl=60) is True


# --- RFC 5269 keys --------------------------------------------------------------------------------------


def test_send_key_round_trip(any_store: RedisStore) -> None:
    now = time.time()
    k = rec.send_key(now=now)
    any_store.put_send_key(k, now=now)
    assert any_store.get_send_key_by_cga(k.cga) == k
    assert any_store.get_send_key_by_key_hash(k.key_hash) == k
    assert any_store.get_send_key_by_cga(rec.cga()) is None
    assert any_store.get_send_key_by_key_hash(secrets.token_bytes(16)) is None


def test_one_live_hk_per_cga_key(any_store: RedisStore) -> None:
    now = time.time()
    first = rec.send_key(now=now)
    second = dataclasses.replace(rec.send_key(now=now), key_hash=first.key_hash)  # same key, other CGA
    any_store.put_send_key(first, now=now)
    any_store.put_send_key(second, now=now)
    assert any_store.get_send_key_by_key_hash(first.key_hash) == second
    assert any_store.get_send_key_by_cga(first.cga) is None
    # and a CGA re-keyed with another public key no longer answers for the old key hash
    third = dataclasses.replace(rec.send_key(now=now), cga=second.cga)
    any_store.put_send_key(third, now=now)
    assert any_store.get_send_key_by_key_hash(first.key_hash) is None
    assert any_store.get_send_key_by_key_hash(third.key_hash) == third


# --- wrapping -------------------------------------------------------------------------------------------


def test_records_do_not_unwrap_under_another_kek(any_store: RedisStore, make_store: object) -> None:
    now = time.time()
    s = rec.session(now=now)
    any_store.put_session(s, now=now)
    other = RedisStore(
        any_store._connect,
        KekRing(Kek("other", SecretBytes(secrets.token_bytes(32)))),
        prefix=any_store.prefix,
        where=any_store.where,
    )
    with pytest.raises(CryptoError, match="'test-1' is not configured"):
        other.get_session(s.hmk_name)


def test_kek_rotation_keeps_old_records_readable(any_store: RedisStore, kek_ring: KekRing) -> None:
    now = time.time()
    s = rec.session(now=now)
    any_store.put_session(s, now=now)
    rotated = KekRing(Kek("test-2", SecretBytes(secrets.token_bytes(32))), (kek_ring.current,))
    store2 = RedisStore(any_store._connect, rotated, prefix=any_store.prefix, where=any_store.where)
    assert store2.get_session(s.hmk_name) == s
    s2 = rec.session(now=now)
    store2.put_session(s2, now=now)
    with pytest.raises(CryptoError, match="'test-2'"):
        any_store.get_session(s2.hmk_name)  # the old ring cannot read what the new KEK wrapped


# --- audit ----------------------------------------------------------------------------------------------


def test_audit_append_and_chain(any_store: RedisStore) -> None:
    assert any_store.verify_audit().ok
    assert any_store.verify_audit().entries == 0
    e1 = any_store.append_audit("session.ingested", {"spi": 42, "ar": None, "user": "alice"}, at=1000.5)
    e2 = any_store.append_audit("fbu.verified", {"spi": 42, "ar": "ar-1", "ok": True}, at=1001.25)
    assert e1.prev == AUDIT_GENESIS
    assert e2.prev == e1.hash
    assert e1.fields == {"spi": 42, "user": "alice"}  # None is omitted; JSON types kept
    assert e2.fields["ok"] is True
    assert (e1.n, e2.n) == (1, 2) and e1.kid == e2.kid != ""
    keys = any_store.ops.chain.keys[e1.kid]
    assert e1.hash == keys.mac(1, AUDIT_GENESIS, "1000.500000", "session.ingested", '{"spi":42,"user":"alice"}')
    check = any_store.verify_audit()
    assert check.ok and check.entries == 2 and check.head == e2.hash and check.first_bad_id is None
    with pytest.raises(ValueError):
        any_store.append_audit("", {}, at=1.0)
    with pytest.raises(ValueError):
        any_store.append_audit("x", {}, at=float("nan"))
    with pytest.raises(TypeError):
        any_store.append_audit("x", {"k": 1.5}, at=1.0)  # type: ignore[dict-item]
    assert any_store.verify_audit().entries == 2  # refused appends left no trace


def test_read_audit_filters_and_pages(any_store: RedisStore) -> None:
    for i in range(25):
        any_store.append_audit(
            "fbu.verified" if i % 2 else "session.ingested",
            {"spi": i % 3, "ar": f"ar-{i % 5}"},
            at=2000.0 + i,
        )
    entries, cursor = any_store.read_audit(limit=10)
    assert len(entries) == 10 and cursor == entries[-1].id
    seen = list(entries)
    while cursor is not None:
        page, cursor = any_store.read_audit(cursor=cursor, limit=10)
        seen += page
    assert [e.at for e in seen] == [2000.0 + i for i in range(25)]
    every, end = any_store.read_audit(limit=25)
    assert len(every) == 25 and end is None

    def ats(**kw: object) -> list[float]:
        got, _ = any_store.read_audit(limit=100, **kw)  # type: ignore[arg-type]
        return [e.at - 2000.0 for e in got]

    assert ats(event="session.ingested") == [float(i) for i in range(0, 25, 2)]
    assert ats(spi=1) == [float(i) for i in range(25) if i % 3 == 1]
    assert ats(ar="ar-4") == [4.0, 9.0, 14.0, 19.0, 24.0]
    assert ats(since=2010.0, until=2013.0) == [10.0, 11.0, 12.0]
    assert ats(event="fbu.verified", spi=0, ar="ar-3") == [3.0]
    with pytest.raises(ValueError):
        any_store.read_audit(cursor="not-a-cursor")


# --- standalone-only checks -----------------------------------------------------------------------------


def test_malformed_record_is_a_store_error(store: RedisStore, redis_server: object) -> None:
    import redis

    from aaa_fmip.errors import StoreError

    now = time.time()
    s = rec.session(now=now)
    store.put_session(s, now=now)
    raw = redis.Redis.from_url(redis_server.url)  # type: ignore[attr-defined]
    raw.set(f"{store.prefix}:{{{s.hmk_name.hex()}}}:session", b"{not json")
    with pytest.raises(StoreError, match="malformed"):
        store.get_session(s.hmk_name)


def test_record_moved_to_another_name_does_not_unwrap(store: RedisStore, redis_server: object) -> None:
    import redis

    now = time.time()
    victim, attacker = rec.session(now=now), rec.session(now=now)
    store.put_session(victim, now=now)
    raw = redis.Redis.from_url(redis_server.url)  # type: ignore[attr-defined]
    value = raw.get(f"{store.prefix}:{{{victim.hmk_name.hex()}}}:session")
    raw.set(f"{store.prefix}:{{{attacker.hmk_name.hex()}}}:session", value)  # type: ignore[arg-type]
    with pytest.raises(CryptoError, match="authentication failed"):
        store.get_session(attacker.hmk_name)


def test_find_by_spi_costs_one_index_read_and_the_records(private_redis: object, make_store: object) -> None:
    """The FBU-verify lookup: one read-only script over the SPI index (live members by expiry score) that also
    reads the candidates' records (outside a Cluster), so one round trip; no writes, no scans."""
    import redis

    store: RedisStore = make_store(private_redis.url)  # type: ignore[attr-defined, operator]
    now = time.time()
    a = rec.session(now=now)
    b = dataclasses.replace(rec.session(now=now), spi=a.spi)
    store.put_session(a, now=now)
    store.put_session(b, now=now)
    raw = redis.Redis.from_url(private_redis.url)  # type: ignore[attr-defined]
    store.find_by_spi(a.spi)  # the server learns the script (EVALSHA falls back to EVAL once)
    raw.config_resetstat()
    assert len(store.find_by_spi(a.spi)) == 2
    stats = {k: v["calls"] for k, v in raw.info("commandstats").items()}
    assert stats == {
        "cmdstat_evalsha": 1,  # the one round trip: TIME, ZREVRANGEBYSCORE and the GETs inside the script
        "cmdstat_time": 1,
        "cmdstat_zrevrangebyscore": 1,
        "cmdstat_get": 2,
        "cmdstat_config|resetstat": 1,
    }


def test_put_session_adds_to_all_its_indexes_in_one_script_call(private_redis: object, make_store: object) -> None:
    """Outside a Cluster, one script run covers the SPI, external-id and session-list indexes of a session (on a
    Cluster, one per key: they lie in different hash slots), next to the record's SET and the MAC's."""
    import redis

    store: RedisStore = make_store(private_redis.url)  # type: ignore[attr-defined, operator]
    now = time.time()
    record = dataclasses.replace(
        rec.session(now=now), calling_station_id="02-00-00-00-00-07", external_ids=("a:1", "b:2", "a:1")
    )
    raw = redis.Redis.from_url(private_redis.url)  # type: ignore[attr-defined]
    # A first write: the store's connection is up, its script loaded, its clock offset and audit head read.
    store.put_session(rec.session(now=now), now=now, audits=[("session.created", {"n": 1}, now)])
    raw.config_resetstat()
    store.put_session(record, now=now, audits=[("session.created", {"n": 2}, now)])
    stats = {k: v["calls"] for k, v in raw.info("commandstats").items()}
    indexes = 1 + 2 + 1  # SPI, the two distinct external ids, the session list
    assert stats == {
        "cmdstat_evalsha": 1,  # record, MAC, indexes and the audit entry: one script run
        "cmdstat_get": 2,  # the audit head (compare-and-set), the record replaced (none)
        "cmdstat_xadd": 1,
        "cmdstat_set": 3,  # the audit head, the record, the MAC
        "cmdstat_time": 2,  # the deadline, the index expiry
        "cmdstat_zremrangebyscore": indexes,
        "cmdstat_zadd": indexes,
        "cmdstat_zrange": indexes,
        "cmdstat_pexpire": indexes,
        "cmdstat_config|resetstat": 1,
    }
    assert [r.hmk_name for r in store.find_by_external_id("b:2")] == [record.hmk_name]
    assert [r.hmk_name for r in store.find_by_spi(record.spi)] == [record.hmk_name]


def test_append_audits_puts_entries_next_to_each_other(store: RedisStore) -> None:
    """Several entries of one operation (session.created, hk.issued) go to the chain together, in order."""
    entries = store.append_audits([("test.a", {"n": 1}, 1_700_000_000.0), ("test.b", {"n": 2}, 1_700_000_000.5)])
    assert [e.event for e in entries] == ["test.a", "test.b"]
    assert entries[1].prev == entries[0].hash
    assert store.append_audits([]) == []
    assert store.verify_audit().ok
