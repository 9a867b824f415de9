"""Atomicity under concurrent callers: the replay check and the audit chain."""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from aaa_fmip.store.redis import AUDIT_GENESIS
from tests.store.conftest import StoreFactory
from tests.support.redis_server import RedisServer

T = TypeVar("T")


def race(n: int, fn: Callable[[int], T]) -> list[T]:
    """Run ``fn(i)`` for i in range(n) on n threads released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=10)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.parametrize("backend", ["standalone", "cluster"])
def test_one_of_sixteen_racing_verifies_is_accepted(
    backend: str, request: pytest.FixtureRequest, make_store: StoreFactory
) -> None:
    url = request.getfixturevalue("redis_server" if backend == "standalone" else "redis_cluster").url
    store = make_store(url)
    scope, ar = secrets.token_bytes(8), secrets.token_bytes(16)
    for round_ in range(5):
        seq = 1000 + 200 * round_

        def same_fbu(_i: int, seq: int = seq) -> str:
            return store.check_replay(scope, ar, seq, b"auth-%d" % seq, ttl=60)

        def forgery(i: int, seq: int = seq) -> str:
            return store.check_replay(scope, ar, seq + 100, b"forged-%d" % i, ttl=60)

        # the same FBU delivered 16 times at once: one binding, 15 retransmissions
        assert Counter(race(16, same_fbu)) == {"accepted": 1, "retransmission": 15}
        # 16 forgeries with a newer number and different authenticators: exactly one wins
        assert Counter(race(16, forgery)) == {"accepted": 1, "replay": 15}


@pytest.mark.parametrize("backend", ["standalone", "cluster"])
def test_audit_chain_stays_linear_under_concurrent_appends(
    backend: str, request: pytest.FixtureRequest, make_store: StoreFactory
) -> None:
    url = request.getfixturevalue("redis_server" if backend == "standalone" else "redis_cluster").url
    writers, per_writer = 8, 25
    stores = [make_store(url) for _ in range(writers)]
    prefix = stores[0].prefix
    for s in stores[1:]:  # distinct clients (own connection pools), one audit stream
        s.ops.p = prefix

    def write(i: int) -> list[str]:
        return [
            stores[i].append_audit("test.concurrent", {"writer": i, "n": n}, at=1_700_000_000.0 + n).hash
            for n in range(per_writer)
        ]

    hashes = [h for hs in race(writers, write) for h in hs]
    assert len(set(hashes)) == writers * per_writer

    entries, cursor = stores[0].read_audit(limit=1000)
    assert cursor is None
    assert len(entries) == writers * per_writer
    prev = AUDIT_GENESIS
    for e in entries:  # one chain, no fork: every entry links to the one before it
        assert e.prev == prev
        prev = e.hash
    check = stores[0].verify_audit()
    assert check.ok and check.entries == writers * per_writer and check.head == prev
    assert Counter(e.fields["writer"] for e in entries) == {i: per_writer for i in range(writers)}


def test_audit_appends_from_many_threads_of_one_store_and_another_instance(
    redis_server: RedisServer, make_store: StoreFactory
) -> None:
    """Request handlers share one store object (a thread pool) while another instance writes too: every
    append lands, in one linear chain (a lost race must never surface as an error)."""
    shared = make_store(redis_server.url)
    other = make_store(redis_server.url)
    other.ops.p = shared.prefix
    threads, per_thread = 16, 40

    def write(i: int) -> int:
        store = other if i == 0 else shared
        for n in range(per_thread):
            store.append_audit("test.threads", {"thread": i, "n": n}, at=1_700_000_000.0 + n)
        return per_thread

    assert sum(race(threads, write)) == threads * per_thread
    check = shared.verify_audit()
    assert check.ok and check.entries == threads * per_thread


def test_threads_of_one_store_never_race_each_other_for_the_audit_head(
    redis_server: RedisServer, make_store: StoreFactory
) -> None:
    """At most one append script per entry: a store's own threads queue for the head (and share a round trip
    when they queue together) instead of losing races to each other, which cost a round trip each and, under
    load, starved requests."""
    import redis as redis_py

    store = make_store(redis_server.url)
    store.append_audit("test.warm", {}, at=1_700_000_000.0)  # learn the head; load the script
    raw = redis_py.Redis.from_url(redis_server.url)

    def script_calls() -> int:
        stats = raw.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))

    before = script_calls()
    threads, per_thread = 16, 20
    race(threads, lambda i: [store.append_audit("test.one", {"t": i, "n": n}, at=1.7e9) for n in range(per_thread)])
    assert script_calls() - before <= threads * per_thread
    check = store.verify_audit()
    assert check.ok and check.entries == threads * per_thread + 1
    raw.close()


def test_entries_queued_together_are_committed_in_one_round_trip(
    redis_server: RedisServer, make_store: StoreFactory
) -> None:
    """Group commit: appends that queue while another is in flight go to Redis in one script call, in order."""
    import time

    import redis as redis_py

    store = make_store(redis_server.url)
    store.append_audit("test.warm", {}, at=1_700_000_000.0)
    raw = redis_py.Redis.from_url(redis_server.url)
    before = sum(int(v.get("calls", 0)) for k, v in raw.info("commandstats").items() if k in ("cmdstat_evalsha",))
    results: list[str] = []
    with store._audit_lock:  # an append in flight: the next five queue behind it
        threads = [
            threading.Thread(target=lambda n=n: results.append(store.append_audit("test.q", {"n": n}, at=1.7e9).id))
            for n in range(5)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(store._audit_pending) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(store._audit_pending) == 5
    for t in threads:
        t.join(10)
    after = sum(int(v.get("calls", 0)) for k, v in raw.info("commandstats").items() if k in ("cmdstat_evalsha",))
    assert len(results) == 5 and after - before == 1
    entries, _ = store.read_audit(limit=100)
    assert [e.event for e in entries] == ["test.warm"] + ["test.q"] * 5
    assert store.verify_audit().ok
    raw.close()
