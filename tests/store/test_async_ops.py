"""RedisStore.aio: the FBU hot path on an asyncio client, against the same real servers as the blocking store.

Each operation must agree with the blocking method of the same name on the same data, the audit group commit
must keep one linear chain (also with the blocking store and a second instance writing at the same time), and
an outage must surface as StoreUnavailable and heal by itself.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import pytest
import redis

from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import StoreUnavailable
from aaa_fmip.store.ops import Op, Pipeline, Script
from aaa_fmip.store.redis import AsyncRedisOps, RedisStore
from tests.store import _records
from tests.store.conftest import StoreFactory
from tests.support.redis_server import RedisServer


def aio_of(store: RedisStore) -> AsyncRedisOps:
    aio = store.aio
    assert aio is not None
    return aio


@pytest.fixture(params=["standalone", "cluster", "sentinel", "embedded"])
def aio_store(request: pytest.FixtureRequest, make_store: StoreFactory) -> RedisStore:
    fixture = {
        "standalone": "redis_server",
        "cluster": "redis_cluster",
        "sentinel": "redis_sentinel",
        "embedded": "embedded_redis",
    }
    return make_store(request.getfixturevalue(fixture[request.param]).url)


def test_lookups_agree_with_the_blocking_store(aio_store: RedisStore) -> None:
    now = time.time()
    first, collision = _records.session(now=now), _records.session(now=now, lifetime=900)
    collision = _records.session(spi=first.spi, now=now, lifetime=900)
    aio_store.put_session(first, now=now)
    aio_store.put_session(collision, now=now)
    send = _records.send_key(now=now)
    aio_store.put_send_key(send, now=now)
    gone = _records.session(now=now)
    aio_store.put_session(gone, now=now)
    aio_store.delete_session(gone.hmk_name, now=now)
    aio = aio_of(aio_store)

    async def lookups() -> tuple[object, ...]:
        return (
            await aio.find_by_spi(first.spi, limit=8),
            await aio.find_by_spi(first.spi, limit=1),
            await aio.find_by_spi(first.spi ^ 0x5A5A5A5A or 1),
            await aio.get_send_key_by_cga(send.cga),
            await aio.get_send_key_by_cga(_records.cga()),
            await aio.is_revoked(spi=gone.spi),
            await aio.is_revoked(spi=first.spi),
            await aio.is_revoked(hmk_name=gone.hmk_name),
        )

    got = asyncio.run(lookups())
    want = (
        aio_store.find_by_spi(first.spi, limit=8),
        aio_store.find_by_spi(first.spi, limit=1),
        aio_store.find_by_spi(first.spi ^ 0x5A5A5A5A or 1),
        aio_store.get_send_key_by_cga(send.cga),
        aio_store.get_send_key_by_cga(_records.cga()),
        aio_store.is_revoked(spi=gone.spi),
        aio_store.is_revoked(spi=first.spi),
        aio_store.is_revoked(hmk_name=gone.hmk_name),
    )
    assert got == want
    both = got[0]
    assert isinstance(both, list) and [r.hmk_name for r in both] == [collision.hmk_name, first.hmk_name]
    assert got[5] is True and got[6] is False


def test_an_index_entry_whose_record_is_gone_is_skipped_and_dropped(aio_store: RedisStore) -> None:
    now = time.time()
    kept = _records.session(now=now)
    lost = _records.session(spi=kept.spi, now=now)
    aio_store.put_session(kept, now=now)
    aio_store.put_session(lost, now=now)
    raw = aio_store._r()
    raw.delete(aio_store.ops.session_key(lost.hmk_name))  # the record vanishes; the SPI index still names it
    index = aio_store.ops.spi_key(kept.spi)
    assert raw.zscore(index, lost.hmk_name.hex()) is not None

    found = asyncio.run(aio_of(aio_store).find_by_spi(kept.spi))
    assert [r.hmk_name for r in found] == [kept.hmk_name]
    assert raw.zscore(index, lost.hmk_name.hex()) is None
    assert raw.zscore(index, kept.hmk_name.hex()) is not None


def test_replay_state_is_shared_with_the_blocking_store(aio_store: RedisStore) -> None:
    scope, ar = secrets.token_bytes(8), b"\x20\x01" + secrets.token_bytes(14)
    aio = aio_of(aio_store)

    async def run() -> list[str]:
        return [
            await aio.check_replay(scope, ar, 10, b"a10", ttl=60),
            await aio.check_replay(scope, ar, 10, b"a10", ttl=60),
            await aio.check_replay(scope, ar, 10, b"other", ttl=60),
            await aio.check_replay(scope, ar, 9, b"a9", ttl=60),
        ]

    assert asyncio.run(run()) == ["accepted", "retransmission", "replay", "replay"]
    assert aio_store.check_replay(scope, ar, 10, b"a10", ttl=60) == "retransmission"
    assert aio_store.check_replay(scope, ar, 11, b"a11", ttl=60) == "accepted"
    assert asyncio.run(aio.check_replay(scope, ar, 11, b"a11", ttl=60)) == "retransmission"


def test_one_of_many_concurrent_verifies_of_one_sequence_number_is_accepted(aio_store: RedisStore) -> None:
    scope, ar = secrets.token_bytes(8), b"\x20\x01" + secrets.token_bytes(14)
    aio = aio_of(aio_store)

    async def race() -> list[str]:
        tasks = [aio.check_replay(scope, ar, 7, b"auth-%d" % (i % 2), ttl=60) for i in range(32)]
        return list(await asyncio.gather(*tasks))

    outcomes = asyncio.run(race())
    assert outcomes.count("accepted") == 1
    # the same authenticator again is a retransmission, the other one a replay
    accepted_auth = outcomes.index("accepted") % 2
    for i, outcome in enumerate(outcomes):
        if outcome != "accepted":
            assert outcome == ("retransmission" if i % 2 == accepted_auth else "replay")


def test_concurrent_appends_keep_one_linear_chain(
    store: RedisStore, redis_server: RedisServer, kek_ring: KekRing
) -> None:
    aio = aio_of(store)
    # a second instance on the same chain, as a second service process would be
    other = RedisStore.from_url(redis_server.url, kek_ring, prefix=store.prefix)

    def blocking_writer() -> None:
        for i in range(40):
            other.append_audit("blocking", {"i": i}, at=time.time())

    async def appends() -> list[int]:
        calls = []

        async def one(i: int) -> int:
            entries = await aio.append_audits([("async", {"i": i, "part": 0}, time.time()), ("async", {"i": i}, 0.5)])
            assert [e.fields["i"] for e in entries] == [i, i]
            assert entries[1].prev == entries[0].hash  # a caller's entries are consecutive
            calls.append(i)
            return i

        return list(await asyncio.gather(*(one(i) for i in range(100))))

    thread = threading.Thread(target=blocking_writer)
    thread.start()
    try:
        done = asyncio.run(appends())
    finally:
        thread.join(timeout=60)
        other.close()
    assert sorted(done) == list(range(100))
    check = store.verify_audit()
    assert check.ok, check
    assert check.entries == 240


def test_callers_waiting_together_share_one_script_call(private_redis: RedisServer, make_store: StoreFactory) -> None:
    store = make_store(private_redis.url)
    aio = aio_of(store)
    admin = redis.Redis.from_url(private_redis.url)

    def script_calls() -> int:
        stats = admin.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("eval", "evalsha"))

    async def appends() -> None:
        await aio.append_audits([("warm-up", {}, time.time())])  # reads the head once
        before = script_calls()
        await asyncio.gather(*(aio.append_audits([("together", {"i": i}, time.time())]) for i in range(50)))
        calls.append(script_calls() - before)

    calls: list[int] = []
    asyncio.run(appends())
    admin.close()
    # all 50 queue before the committing task first runs: one script call (batches hold up to 64 entries)
    assert calls == [1]
    assert store.verify_audit().entries == 51


def test_a_cancelled_caller_does_not_break_the_commit_others_wait_for(store: RedisStore) -> None:
    aio = aio_of(store)

    async def run() -> int:
        first = asyncio.ensure_future(aio.append_audits([("first", {}, time.time())]))
        second = asyncio.ensure_future(aio.append_audits([("second", {}, time.time())]))
        await asyncio.sleep(0)
        first.cancel()
        entries = await second
        assert [e.event for e in entries] == ["second"]
        third = await aio.append_audits([("third", {}, time.time())])
        return len(third)

    assert asyncio.run(run()) == 1
    check = store.verify_audit()
    assert check.ok
    entries, _ = store.read_audit(limit=10)
    # the cancelled caller's entry was already queued: it is committed all the same, in order
    assert [e.event for e in entries] == ["first", "second", "third"]


def test_each_event_loop_gets_its_own_connections(aio_store: RedisStore) -> None:
    store = aio_store
    record = _records.session()
    store.put_session(record, now=time.time())
    aio = aio_of(store)
    for _ in range(3):  # a client bound to a closed loop would fail here
        assert [r.hmk_name for r in asyncio.run(aio.find_by_spi(record.spi))] == [record.hmk_name]

    async def close_twice() -> None:
        await aio.find_by_spi(record.spi)
        await aio.aclose()
        await aio.aclose()

    asyncio.run(close_twice())


def test_outage_is_store_unavailable_and_heals_without_a_new_store(
    private_redis: RedisServer, make_store: StoreFactory
) -> None:
    store = make_store(private_redis.url, socket_timeout=0.3)
    aio = aio_of(store)
    record = _records.session()

    async def lookup() -> list[bytes]:
        return [r.hmk_name for r in await aio.find_by_spi(record.spi)]

    async def through_outage() -> list[bytes]:
        await lookup()  # connections pooled before the outage
        private_redis.stop()
        for call in (
            lookup(),
            aio.check_replay(b"12345678", b"ar", 1, b"x", ttl=5),
            aio.is_revoked(spi=1),
            aio.get_send_key_by_cga(_records.cga()),
            aio.append_audits([("outage", {}, time.time())]),
        ):
            with pytest.raises(StoreUnavailable) as err:
                await call
            assert private_redis.url.split("//")[1].split("/")[0] in str(err.value)  # names where, for the log
        private_redis.start()
        store.put_session(record, now=time.time())
        return await lookup()

    assert asyncio.run(through_outage()) == [record.hmk_name]


def test_a_pipeline_of_one_script_survives_a_server_that_forgot_it(aio_store: RedisStore) -> None:
    """Calls of one script sent together go by digest: after SCRIPT FLUSH (as after a restart; on a Cluster, of
    every primary) every call is refused with NOSCRIPT and none runs, so the driver loads the script and sends
    them again; each runs exactly once. The keys lie in several slots (on a Cluster, several nodes)."""
    aio = aio_of(aio_store)
    tag = secrets.token_hex(4)
    keys = [f"{aio_store.prefix}:{{{tag}{i}}}:n" for i in range(6)]
    incr = "return redis.call('INCRBY', KEYS[1], ARGV[1])"

    def incr_all(by: int) -> Op[object]:
        return (yield Pipeline(tuple(Script(incr, (key,), (by,)) for key in keys)))

    def loads() -> int:
        # Redis 7 counts SCRIPT LOAD apart, 6 every SCRIPT together; on a Cluster, asked of every node
        client = aio_store._r()
        if aio_store.ops.cluster:
            nodes = list(client.info("commandstats", target_nodes=client.ALL_NODES).values())
        else:
            nodes = [client.info("commandstats")]
        names = ("cmdstat_script|load", "cmdstat_script")
        return sum(int(node.get(name, {}).get("calls", 0)) for node in nodes for name in names)

    async def twice() -> tuple[object, object, int]:
        first = await aio.arun(incr_all(1))
        aio_store._r().script_flush()
        before = loads()
        second = await aio.arun(incr_all(10))
        loaded = loads() - before
        await aio.aclose()
        return first, second, loaded

    first, second, loaded = asyncio.run(twice())
    assert first == [1] * len(keys) and second == [11] * len(keys)
    assert loaded == (3 if aio_store.ops.cluster else 1)  # refused, loaded once (into each primary), sent again
