"""Replay protection must not depend on a Redis setting nobody asked for (aaa_fmip.store.durability).

The pure evaluation and the monitor on their own; then real redis-servers: RDB only (refused), AOF (accepted),
a setting changed at runtime, CONFIG refused by an ACL, a restart (run id change), the embedded server, and WAIT
with and without a replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aaa_fmip.errors import ReplayNotReplicated, StoreNotDurable
from aaa_fmip.store.durability import (
    DurabilityMonitor,
    NodeFacts,
    ReplayDurabilityPolicy,
    evaluate,
    facts_from_replies,
)
from aaa_fmip.store.embedded import EmbeddedRedis
from aaa_fmip.store.redis import RedisStore
from tests.store.conftest import StoreFactory
from tests.support.redis_server import RedisServer

RDB_ONLY = ("--appendonly", "no", "--save", "3600 1 300 100 60 10000")  # redis-server's own defaults
STRICT = ReplayDurabilityPolicy()
SCOPE = b"\x01" * 8


def node(**kw: object) -> NodeFacts:
    facts: dict[str, object] = {
        "node": "127.0.0.1:6379",
        "run_id": "a" * 40,
        "appendonly": True,
        "appendfsync": "always",
        "role": "master",
        "connected_replicas": 0,
        "min_replicas_to_write": None,
    }
    facts.update(kw)
    return NodeFacts(**facts)  # type: ignore[arg-type]


# --- the pure evaluation ----------------------------------------------------------------------------------------


def test_aof_always_is_durable_and_everysec_is_by_default_with_its_window_named() -> None:
    assert evaluate([node()], STRICT, "standalone").durable
    everysec = evaluate([node(appendfsync="everysec")], STRICT, "standalone")
    assert everysec.durable
    assert any("up to about 1 s" in n for n in everysec.notes)


def test_what_is_not_durable_and_why() -> None:
    cases = {
        "appendonly no": node(appendonly=False, appendfsync=None),
        "appendfsync no": node(appendfsync="no"),
        "cannot be read": node(appendfsync=None, config_refused="NOPERM"),
        "does not say": node(appendonly=None, appendfsync=None),
        "is a replica": node(role="slave"),
        "maxmemory-policy allkeys-lru": node(maxmemory=1 << 30, maxmemory_policy="allkeys-lru"),
    }
    for words, facts in cases.items():
        report = evaluate([facts], STRICT, "standalone")
        assert not report.durable, words
        assert any(words in p for p in report.problems), (words, report.problems)
    strict = ReplayDurabilityPolicy(min_appendfsync="always")
    report = evaluate([node(appendfsync="everysec")], strict, "standalone")
    assert not report.durable and "appendfsync always" in report.problems[0]
    assert not evaluate([], STRICT, "standalone").durable
    assert evaluate([node(maxmemory=1 << 30, maxmemory_policy="noeviction")], STRICT, "standalone").durable
    assert evaluate([node(maxmemory=0, maxmemory_policy="allkeys-lru")], STRICT, "standalone").durable  # no limit


def test_a_failover_topology_needs_wait() -> None:
    sentinel = evaluate([node(connected_replicas=1)], STRICT, "sentinel")
    assert not sentinel.durable and "replay_wait_replicas" in sentinel.problems[0]
    assert evaluate([node(connected_replicas=1)], ReplayDurabilityPolicy(wait_replicas=1), "sentinel").durable
    # a Cluster primary with a replica fails over too; one without cannot
    assert not evaluate([node(connected_replicas=1)], STRICT, "cluster").durable
    assert evaluate([node(connected_replicas=0)], STRICT, "cluster").durable
    # too few replicas for WAIT: every accepted FBU would be refused, and the report says so
    short = evaluate([node(connected_replicas=0)], ReplayDurabilityPolicy(wait_replicas=1), "sentinel")
    assert short.durable and any("0 connected replica" in n for n in short.notes)


def test_facts_fall_back_to_info_when_config_is_refused() -> None:
    refused = redis.exceptions.NoPermissionError("NOPERM this user has no permissions to run the 'config' command")
    facts = facts_from_replies("n", refused, {"aof_enabled": 1}, {"run_id": "r"}, {"role": "master"})
    assert facts.appendonly is True and facts.appendfsync is None and facts.config_refused
    report = evaluate([facts], STRICT, "standalone")
    assert not report.durable and "NOPERM" in report.problems[0] and "+config|get" in report.problems[0]
    off = facts_from_replies("n", refused, {"aof_enabled": 0}, {}, {"role": "master"})
    assert off.appendonly is False
    conf = facts_from_replies(
        "n", {"appendonly": "yes", "appendfsync": "everysec", "min-replicas-to-write": "1"}, {}, {}, {}
    )
    assert (conf.appendonly, conf.appendfsync, conf.min_replicas_to_write) == (True, "everysec", 1)


def test_monitor_detects_a_restart_and_rechecks_after_a_connection_or_while_refusing() -> None:
    monitor = DurabilityMonitor(STRICT, "standalone", retry_interval=1.0)
    assert monitor.check_due(0.0) and not monitor.allows_replay
    first = monitor.observe([node(run_id="1" * 40)], now=0.0, connections=monitor.connections)
    assert first.first and not first.restarted and monitor.allows_replay and not monitor.check_due(0.5)
    seen = monitor.connections
    monitor.note_connection()  # e.g. the check's own connection, or a reconnect while it ran
    assert monitor.check_due(0.5)
    again = monitor.observe([node(run_id="1" * 40)], now=0.5, connections=seen)
    assert not again.restarted and not again.durability_changed and monitor.check_due(0.5)
    again = monitor.observe([node(run_id="1" * 40)], now=0.5, connections=monitor.connections)
    assert not monitor.check_due(0.5)
    restarted = monitor.observe(
        [node(run_id="2" * 40, appendonly=False, appendfsync=None)], now=0.6, connections=monitor.connections
    )
    assert restarted.restarted and restarted.durability_changed and monitor.restarts == 1
    assert not monitor.allows_replay
    assert not monitor.check_due(1.5) and monitor.check_due(1.6)  # a refusal is retried once per interval
    volatile = DurabilityMonitor(ReplayDurabilityPolicy(allow_volatile=True), "standalone")
    volatile.observe([node(appendonly=False, appendfsync=None)], now=0.0, connections=0)
    assert volatile.allows_replay and volatile.report is not None and not volatile.report.durable


# --- real servers ---------------------------------------------------------------------------------------------


@pytest.fixture
def rdb_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "rdb", args=RDB_ONLY)
    server.start()
    yield server
    server.stop()


def test_rdb_only_redis_refuses_replay_checks_unless_the_operator_opts_out(
    rdb_redis: RedisServer, make_store: StoreFactory
) -> None:
    store = make_store(rdb_redis.url, replay_policy=STRICT)
    with pytest.raises(StoreNotDurable):
        store.check_replay(SCOPE, b"ar", 1, b"a", ttl=60)
    with pytest.raises(StoreNotDurable):
        asyncio.run(_acheck(store, 1))
    with pytest.raises(StoreNotDurable):
        store.check_durability(require=True)
    report = store.check_durability()
    assert report is not None and not report.durable and "appendonly no" in report.problems[0]
    assert redis.Redis.from_url(rdb_redis.url).keys("*") == []  # refused before anything was written

    volatile = make_store(rdb_redis.url, replay_policy=ReplayDurabilityPolicy(allow_volatile=True))
    assert volatile.check_replay(SCOPE, b"ar", 1, b"a", ttl=60) == "accepted"
    assert asyncio.run(_acheck(volatile, 2)) == "accepted"
    # a store built without a policy (tools, tests) does not check at all
    assert make_store(rdb_redis.url).check_replay(SCOPE, b"ar", 1, b"a", ttl=60) == "accepted"


async def _acheck(store: RedisStore, sequence: int) -> str:
    assert store.aio is not None
    try:
        return await store.aio.check_replay(SCOPE, b"ar", sequence, b"a%d" % sequence, ttl=60)
    finally:
        await store.aio.aclose()


def test_a_durability_change_at_runtime_is_seen_by_the_next_check(
    private_redis: RedisServer, make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(private_redis.url, replay_policy=STRICT)
    assert store.check_replay(SCOPE, b"ar", 1, b"a", ttl=60) == "accepted"
    raw = redis.Redis.from_url(private_redis.url)
    raw.config_set("appendfsync", "no")
    with caplog.at_level(logging.ERROR, logger="aaa_fmip.store"), pytest.raises(StoreNotDurable):
        store.check_durability(require=True)  # what a readiness check does
    assert any(getattr(r, "event", None) == "store-not-durable" for r in caplog.records)
    with pytest.raises(StoreNotDurable):
        store.check_replay(SCOPE, b"ar", 2, b"b", ttl=60)
    raw.config_set("appendfsync", "everysec")
    raw.config_set("maxmemory", "1gb")
    raw.config_set("maxmemory-policy", "volatile-lru")  # the replay keys have TTLs: they would go first
    time.sleep(1.1)
    with pytest.raises(StoreNotDurable):
        store.check_replay(SCOPE, b"ar", 2, b"b", ttl=60)
    raw.config_set("maxmemory-policy", "noeviction")
    time.sleep(1.1)  # a refusing store is re-examined at most once a second on the FBU path
    assert store.check_replay(SCOPE, b"ar", 2, b"b", ttl=60) == "accepted"
    raw.close()


def test_config_refused_by_acl_falls_back_to_info_and_says_the_fsync_policy_is_unknown(
    private_redis: RedisServer, make_store: StoreFactory
) -> None:
    raw = redis.Redis.from_url(private_redis.url)
    raw.acl_setuser("noconfig", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-config"])
    url = private_redis.url.replace("redis://", "redis://noconfig:pw@")
    store = make_store(url, replay_policy=STRICT)
    report = store.check_durability()
    assert report is not None and not report.durable
    assert "fsync policy cannot be read" in report.problems[0] and "no permissions" in report.problems[0]
    with pytest.raises(StoreNotDurable):
        store.check_replay(SCOPE, b"ar", 1, b"a", ttl=60)
    raw.close()


def test_a_restart_is_detected_logged_and_counted_and_the_state_survives_on_aof(
    tmp_path: Path, make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "aof", persist=True, args=("--appendfsync", "always"))
    server.start()
    try:
        store = make_store(server.url, replay_policy=STRICT)
        assert store.check_replay(SCOPE, b"ar", 7, b"a", ttl=60) == "accepted"
        assert store.durability is not None and store.durability.restarts == 0
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        server.proc = None
        server.start()
        with caplog.at_level(logging.WARNING, logger="aaa_fmip.store"):
            # the pooled connection is dead: redis-py reconnects, and the verdict waits for a fresh check
            assert store.check_replay(SCOPE, b"ar", 7, b"a", ttl=60) == "retransmission"
            assert store.check_replay(SCOPE, b"ar", 7, b"forged", ttl=60) == "replay"
        assert store.durability.restarts == 1
        assert [r for r in caplog.records if getattr(r, "event", None) == "store-restarted"]
    finally:
        server.stop()


def test_the_embedded_store_is_durable_out_of_the_box(embedded_redis: EmbeddedRedis, make_store: StoreFactory) -> None:
    store = make_store(embedded_redis.url, replay_policy=STRICT)
    report = store.check_durability(require=True)
    assert report is not None and report.durable
    assert store.check_replay(SCOPE, b"ar", 1, b"a", ttl=60) == "accepted"


def test_wait_refuses_an_unreplicated_update_and_accepts_a_replicated_one(
    private_redis: RedisServer, tmp_path: Path, make_store: StoreFactory
) -> None:
    # generous: on a loaded machine a replica's acknowledgement can take hundreds of milliseconds
    policy = ReplayDurabilityPolicy(wait_replicas=1, wait_timeout_ms=1500)
    store = make_store(private_redis.url, replay_policy=policy, socket_timeout=3.0)
    with pytest.raises(ReplayNotReplicated) as err:
        store.check_replay(SCOPE, b"ar", 1, b"a", ttl=60)
    assert err.value.reason == "replay-not-replicated"
    with pytest.raises(ReplayNotReplicated):
        asyncio.run(_acheck(store, 2))
    assert store.check_replay(SCOPE, b"ar", 2, b"old", ttl=60) == "replay"  # a replay needs no replica

    replica = RedisServer(tmp_path / "replica", args=("--replicaof", "127.0.0.1", str(private_redis.port)))
    replica.start()
    try:
        raw = redis.Redis(port=replica.port)
        deadline = time.monotonic() + 15
        master = redis.Redis.from_url(private_redis.url)
        # synced, as the master sees it: it counts the replica in WAIT (its own acknowledged, unhurried)
        while time.monotonic() < deadline:
            if raw.info("replication").get("master_link_status") == "up" and master.wait(1, 1000) == 1:
                break
            time.sleep(0.05)
        master.close()
        assert store.check_replay(SCOPE, b"ar", 3, b"c", ttl=60) == "accepted"
        assert asyncio.run(_acheck(store, 4)) == "accepted"
        # the retransmission of an FBU whose first verdict was refused is accepted once a replica holds it
        assert store.check_replay(SCOPE, b"ar", 4, b"a4", ttl=60) == "retransmission"
        key = f"{store.prefix}:{{{SCOPE.hex()}}}:replay:{b'ar'.hex()}"
        assert raw.hget(key, "seq") == b"4"  # on the replica, before the verdict
        raw.close()
    finally:
        replica.stop()


def test_the_refusals_have_one_translation_in_each_adapter() -> None:
    import json

    from aaa_fmip.api.problems import error_response
    from aaa_fmip.diameter.results import TOO_BUSY, result_for

    for exc, reason in (
        (StoreNotDurable("FBUs are not verified"), "store-not-durable"),
        (ReplayNotReplicated("acknowledged by 0 of 1 replica(s)"), "replay-not-replicated"),
    ):
        response = error_response(exc)
        body = json.loads(bytes(response.body))
        assert (response.status_code, body["reason"], response.headers["retry-after"]) == (503, reason, "1")
        assert body["detail"] == str(exc)
        assert result_for(exc) == TOO_BUSY  # Diameter 3004, as for any store that cannot serve


def test_durability_is_checked_on_new_connections_not_per_fbu(
    redis_server: RedisServer, make_store: StoreFactory
) -> None:
    store = make_store(redis_server.url, replay_policy=STRICT)
    for seq in range(1, 101):
        assert store.check_replay(SCOPE, b"ar", seq, b"s%d" % seq, ttl=60) == "accepted"

    async def on_loop() -> None:
        assert store.aio is not None
        try:
            for seq in range(101, 201):
                assert await store.aio.check_replay(SCOPE, b"ar", seq, b"s%d" % seq, ttl=60) == "accepted"
        finally:
            await store.aio.aclose()

    asyncio.run(on_loop())
    monitor = store.durability
    assert monitor is not None
    # one check per new connection (the blocking one, the check's own, the loop's), none per FBU
    assert monitor.checks <= monitor.connections + 1 <= 5, (monitor.checks, monitor.connections)
