"""Records, indexes, replay state, nonces and tombstones expire with their TTL (real redis-server clock).

Short TTLs (1-2 s) and bounded polling; no assertion on how long anything took.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import redis

from aaa_fmip.store.redis import RedisStore
from tests.store import _records as rec
from tests.support.redis_server import RedisServer


def eventually(predicate: Callable[[], bool], timeout: float = 6.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def keys_of(raw: redis.Redis, store: RedisStore) -> set[str]:
    return {k.decode() for k in raw.scan_iter(match=f"{store.prefix}:*")}


def test_session_and_its_indexes_expire(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    now = time.time()
    short = rec.session(now=now, lifetime=1.0, mac=rec.mac(), external_ids=("user:short",))
    longer = rec.session(spi=short.spi, now=now, lifetime=600.0)
    store.put_session(short, now=now)
    store.put_session(longer, now=now)
    assert store.check_replay(short.hmk_name, b"\x01" * 16, 1, b"a", ttl=1) == "accepted"
    assert store.count_live_sessions() == 2
    assert raw.pttl(f"{store.prefix}:mac:{short.calling_station_id}") > 0
    assert raw.pttl(f"{store.prefix}:ext:user:short") > 0

    assert eventually(lambda: store.get_session(short.hmk_name) is None)
    assert [r.hmk_name for r in store.find_by_spi(short.spi)] == [longer.hmk_name]
    assert store.find_by_calling_station(short.calling_station_id or "") is None
    assert store.find_by_external_id("user:short") == []
    assert store.count_live_sessions() == 1
    # every key of the short session is gone on its own; the shared SPI index lives on with its longer member
    assert eventually(
        lambda: (
            keys_of(raw, store)
            == {
                f"{store.prefix}:{{{longer.hmk_name.hex()}}}:session",
                f"{store.prefix}:spi:{longer.spi}",
                f"{store.prefix}:sessions",
            }
        )
    )
    # the expired member is skipped by its expiry score, and pruned by the next write to the index
    third = rec.session(spi=short.spi, now=time.time())
    store.put_session(third, now=time.time())
    members = set(raw.zrange(f"{store.prefix}:spi:{longer.spi}", 0, -1))
    assert members == {longer.hmk_name.hex().encode(), third.hmk_name.hex().encode()}


def test_index_key_expires_with_its_longest_member(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    now = time.time()
    a = rec.session(now=now, lifetime=1.0, external_ids=("user:x",))
    b = rec.session(spi=a.spi, now=now, lifetime=2.0, external_ids=("user:x",))
    store.put_session(b, now=now)
    store.put_session(a, now=now)  # a shorter member must not shorten the index
    assert raw.pttl(f"{store.prefix}:spi:{a.spi}") > 1000
    assert eventually(lambda: not keys_of(raw, store))


def test_replay_state_expires(store: RedisStore) -> None:
    scope, ar = secrets.token_bytes(8), secrets.token_bytes(16)
    assert store.check_replay(scope, ar, 500, b"a", ttl=1) == "accepted"
    assert store.check_replay(scope, ar, 400, b"a", ttl=1) == "replay"
    assert eventually(lambda: store.check_replay(scope, ar, 400, b"a", ttl=60) == "accepted")


def test_nonce_expires(store: RedisStore) -> None:
    scope, nonce = secrets.token_bytes(16), secrets.token_bytes(6)
    assert store.remember_nonce(scope, nonce, ttl=1)
    assert not store.remember_nonce(scope, nonce, ttl=1)
    assert eventually(lambda: store.remember_nonce(scope, nonce, ttl=1))


def test_tombstones_expire_at_the_old_expiry(store: RedisStore) -> None:
    now = time.time()
    s = rec.session(now=now, lifetime=1.5)
    store.put_session(s, now=now)
    store.delete_session(s.hmk_name, now=now)
    assert store.is_revoked(spi=s.spi) and store.is_revoked(hmk_name=s.hmk_name)
    assert eventually(lambda: not store.is_revoked(spi=s.spi) and not store.is_revoked(hmk_name=s.hmk_name))


def test_send_key_expires(store: RedisStore, redis_server: RedisServer) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    now = time.time()
    k = rec.send_key(now=now, lifetime=1.0)
    store.put_send_key(k, now=now)
    assert store.get_send_key_by_key_hash(k.key_hash) is not None
    assert eventually(lambda: store.get_send_key_by_cga(k.cga) is None)
    assert store.get_send_key_by_key_hash(k.key_hash) is None
    assert eventually(lambda: not keys_of(raw, store))


def test_stale_spi_members_are_cleaned(store: RedisStore, redis_server: RedisServer) -> None:
    """A member whose record vanished (e.g. removed by hand) is skipped and dropped from the index."""
    raw = redis.Redis.from_url(redis_server.url)
    now = time.time()
    a, b = rec.session(now=now), rec.session(now=now)
    b = type(b)(**{**b.__dict__, "spi": a.spi})
    store.put_session(a, now=now)
    store.put_session(b, now=now)
    raw.delete(f"{store.prefix}:{{{a.hmk_name.hex()}}}:session")
    assert [r.hmk_name for r in store.find_by_spi(a.spi)] == [b.hmk_name]
    assert raw.zrange(f"{store.prefix}:spi:{a.spi}", 0, -1) == [b.hmk_name.hex().encode()]
