"""Redis going away: calls fail fast with StoreUnavailable (no credentials in the message) and the same store
object works again once Redis is back on the same address."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import pytest

from aaa_fmip.errors import StoreUnavailable
from aaa_fmip.store.redis import RedisStore
from tests.store import _records as rec
from tests.store.conftest import StoreFactory
from tests.support.redis_server import RedisServer


def all_calls(store: RedisStore) -> list[tuple[str, Callable[[], object]]]:
    now = time.time()
    s = rec.session(now=now)
    k = rec.send_key(now=now)
    return [
        ("ping", store.ping),
        ("put_session", lambda: store.put_session(s, now=now)),
        ("get_session", lambda: store.get_session(s.hmk_name)),
        ("find_by_spi", lambda: store.find_by_spi(s.spi)),
        ("find_by_calling_station", lambda: store.find_by_calling_station("00-11-22-33-44-55")),
        ("find_by_external_id", lambda: store.find_by_external_id("user:x")),
        ("delete_session", lambda: store.delete_session(s.hmk_name, now=now)),
        ("is_revoked", lambda: store.is_revoked(spi=s.spi)),
        ("check_replay", lambda: store.check_replay(s.hmk_name, b"a" * 16, 1, b"x", ttl=5)),
        ("remember_nonce", lambda: store.remember_nonce(b"s" * 16, secrets.token_bytes(6), ttl=5)),
        ("put_send_key", lambda: store.put_send_key(k, now=now)),
        ("get_send_key_by_cga", lambda: store.get_send_key_by_cga(k.cga)),
        ("get_send_key_by_key_hash", lambda: store.get_send_key_by_key_hash(k.key_hash)),
        ("append_audit", lambda: store.append_audit("x", {}, at=now)),
        ("read_audit", lambda: store.read_audit()),
        ("verify_audit", store.verify_audit),
        ("count_live_sessions", store.count_live_sessions),
    ]


def test_unavailable_then_recovers(private_redis: RedisServer, make_store: StoreFactory) -> None:
    store = make_store(private_redis.url)
    now = time.time()
    s = rec.session(now=now)
    store.put_session(s, now=now)
    assert store.check_replay(s.hmk_name, b"a" * 16, 1, b"x", ttl=60) == "accepted"

    private_redis.stop()
    for name, call in all_calls(store):
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert f"127.0.0.1:{private_redis.port}" in str(info.value), name

    private_redis.start()  # same port, empty data set, empty script cache
    store.ping()
    for _name, call in all_calls(store):
        call()
    s2 = rec.session(now=now)
    store.put_session(s2, now=now)
    assert store.get_session(s2.hmk_name) == s2
    assert store.check_replay(s2.hmk_name, b"a" * 16, 9, b"x", ttl=60) == "accepted"
    assert store.verify_audit().ok


def test_unavailable_message_has_no_credentials(private_redis: RedisServer, make_store: StoreFactory) -> None:
    private_redis.stop()
    store = make_store(f"redis://fmip-user:s3cr3t-pa55@127.0.0.1:{private_redis.port}/0")
    with pytest.raises(StoreUnavailable) as info:
        store.get_session(b"12345678")
    assert "s3cr3t" not in str(info.value) and "fmip-user" not in str(info.value)
    assert "s3cr3t" not in store.where


def test_unreachable_cluster_is_unavailable_until_it_answers(make_store: StoreFactory) -> None:
    from tests.support.redis_server import free_port

    store = make_store(f"redis+cluster://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnavailable, match=r"cluster 127\.0\.0\.1"):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.get_session(b"12345678")


def test_unreachable_sentinel_is_unavailable(make_store: StoreFactory) -> None:
    from tests.support.redis_server import free_port

    store = make_store(f"redis+sentinel://:pw@127.0.0.1:{free_port()}/fmip")
    with pytest.raises(StoreUnavailable, match=r"sentinel 127\.0\.0\.1"):
        store.get_session(b"12345678")


def test_hung_server_times_out_as_unavailable(private_redis: RedisServer, make_store: StoreFactory) -> None:
    """A server that accepts but does not answer (CLIENT PAUSE) hits the socket timeout, not a hang."""
    import redis

    store = make_store(private_redis.url, socket_timeout=0.3)
    now = time.time()
    s = rec.session(now=now)
    store.put_session(s, now=now)
    raw = redis.Redis.from_url(private_redis.url)
    raw.client_pause(1500, all=True)
    with pytest.raises(StoreUnavailable, match="TimeoutError"):
        store.get_session(s.hmk_name)
    deadline = time.monotonic() + 10
    while True:  # the pause ends on its own; the same store answers again
        try:
            assert store.get_session(s.hmk_name) == s
            break
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
