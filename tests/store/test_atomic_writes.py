"""A session and its audit entries, a revocation and its entry: both or neither, and never late.

Redis is frozen with SIGSTOP (connections hang, commands wait in the socket buffer) while a write is under
way; the client gives up at its timeout; then Redis resumes and runs what was buffered. Before the writes
carried a deadline and were one script with their audit entries, that left a session without its entries
and a revocation without ``session.revoked`` (the SPI tombstone missing too, so FBUs got ``unknown-spi``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis

from aaa_fmip.errors import StoreUnavailable
from aaa_fmip.store import AuditEntry, AuditItem, SessionRecord
from aaa_fmip.store.redis import RedisStore
from tests.store import _records as rec
from tests.store._topologies import RedisClusterDeployment
from tests.store.conftest import StoreFactory
from tests.support.redis_server import RedisServer

TIMEOUT = 0.3  # the store's socket timeout, and so the deadline its writes carry


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def given_up(call: Callable[[], object]) -> None:
    """``call`` fails with StoreUnavailable (the client gave up), then a little more than the deadline passes."""
    with pytest.raises(StoreUnavailable):
        call()
    time.sleep(TIMEOUT)


def settle(store: RedisStore) -> None:
    """Let the resumed server run what was buffered: a round trip on a fresh connection comes after it."""
    deadline = time.monotonic() + 10
    while True:
        try:
            store.ping()
            return
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def audited(store: RedisStore, event: str, hmk_name: bytes) -> list[AuditEntry]:
    entries, _ = store.read_audit(limit=1000, event=event)
    return [e for e in entries if e.fields.get("hmk_name") == hmk_name.hex()]


def created(s: SessionRecord) -> list[AuditItem]:
    return [("session.created", {"hmk_name": s.hmk_name.hex(), "spi": s.spi}, time.time())]


def revoked(s: SessionRecord) -> list[AuditItem]:
    return [("session.revoked", {"hmk_name": s.hmk_name.hex(), "spi": s.spi}, time.time())]


def test_a_session_write_given_up_on_does_not_land_later(private_redis: RedisServer, make_store: StoreFactory) -> None:
    store = make_store(private_redis.url, socket_timeout=TIMEOUT)
    store.append_audit("warm", {}, at=time.time())  # connected, clock offset and audit head known
    s = rec.session(mac="02-00-00-00-00-09", external_ids=("user:x",))
    assert private_redis.proc is not None
    with frozen(private_redis.proc.pid):
        given_up(lambda: store.put_session(s, now=time.time(), audits=created(s)))
    settle(store)
    assert store.get_session(s.hmk_name) is None
    assert store.find_by_spi(s.spi) == [] and store.find_by_calling_station("02-00-00-00-00-09") is None
    assert audited(store, "session.created", s.hmk_name) == []
    assert store.verify_audit().ok
    # The same write with time to spare lands whole.
    store.put_session(s, now=time.time(), audits=created(s))
    assert store.get_session(s.hmk_name) == s and len(audited(store, "session.created", s.hmk_name)) == 1


def test_a_revocation_given_up_on_does_not_land_later_and_a_retry_completes_it(
    private_redis: RedisServer, make_store: StoreFactory
) -> None:
    store = make_store(private_redis.url, socket_timeout=TIMEOUT)
    s = rec.session(mac="02-00-00-00-00-0a", external_ids=("user:y",))
    store.put_session(s, now=time.time(), audits=created(s))
    assert private_redis.proc is not None
    with frozen(private_redis.proc.pid):
        given_up(lambda: store.delete_session(s.hmk_name, now=time.time(), audits_for=revoked))
    settle(store)
    # Nothing of it happened: the session is live, nothing says revoked.
    assert store.get_session(s.hmk_name) == s
    assert not store.is_revoked(spi=s.spi) and not store.is_revoked(hmk_name=s.hmk_name)
    assert audited(store, "session.revoked", s.hmk_name) == []
    # The retry does all of it, in one step.
    assert store.delete_session(s.hmk_name, now=time.time(), audits_for=revoked) == s
    assert store.get_session(s.hmk_name) is None and store.find_by_spi(s.spi) == []
    assert store.is_revoked(spi=s.spi) and store.is_revoked(hmk_name=s.hmk_name)
    assert len(audited(store, "session.revoked", s.hmk_name)) == 1
    # A second retry finds nothing to do (the service answers it from the tombstone) and audits nothing.
    assert store.delete_session(s.hmk_name, now=time.time(), audits_for=revoked) is None
    assert len(audited(store, "session.revoked", s.hmk_name)) == 1
    assert store.verify_audit().ok


def test_a_revocation_is_one_script_run_with_its_entry_and_both_tombstones(
    private_redis: RedisServer, make_store: StoreFactory
) -> None:
    store = make_store(private_redis.url)
    s = rec.session(mac="02-00-00-00-00-0b", external_ids=("user:z",))
    store.put_session(s, now=time.time(), audits=created(s))
    assert store.check_replay(s.hmk_name, b"\x01" * 16, 1, b"a", ttl=60) == "accepted"
    raw = redis.Redis.from_url(private_redis.url)
    raw.config_resetstat()
    assert store.delete_session(s.hmk_name, now=time.time(), audits_for=revoked) == s
    # calls that ran (a first EVALSHA answered NOSCRIPT, then the script is loaded, is not one that ran)
    stats = {k: v["calls"] - v.get("failed_calls", 0) for k, v in raw.info("commandstats").items()}
    # one pipelined read (record, replay routers), then one script: nothing can fall between its steps
    assert stats["cmdstat_evalsha"] == 1 and "cmdstat_zrem" in stats and stats["cmdstat_xadd"] == 1
    assert stats["cmdstat_get"] == 1 + 3  # the read; in the script: the record, the audit head, the MAC key
    assert store.is_revoked(spi=s.spi) and store.is_revoked(hmk_name=s.hmk_name)
    keys = {k.decode() for k in raw.scan_iter(match=f"{store.prefix}:*")}
    assert keys == {
        f"{store.prefix}:{{{s.hmk_name.hex()}}}:revoked",
        f"{store.prefix}:revoked-spi:{s.spi}",
        f"{store.prefix}:{{audit}}:stream",
        f"{store.prefix}:{{audit}}:head",
    }


def _node_pid_for(cluster: RedisClusterDeployment, key: str) -> int:
    raw = redis.Redis(port=cluster.ports[0])
    slot = int(raw.execute_command("CLUSTER", "KEYSLOT", key))
    for start, end, master, *_ in raw.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            port = int(master[1])
            return cluster.procs[cluster.ports.index(port)].proc.pid
    raise AssertionError("slot not covered")


@pytest.mark.slow
def test_on_a_cluster_no_session_exists_without_its_entry(
    redis_cluster: RedisClusterDeployment, make_store: StoreFactory
) -> None:
    """Where the audit stream and the session lie on different nodes, the entry goes first: freezing the
    session's node leaves an entry and a ``session.not-stored`` after it, never a session without an entry."""
    store = make_store(redis_cluster.url, socket_timeout=TIMEOUT)
    store.append_audit("warm", {}, at=time.time())
    audit_pid = _node_pid_for(redis_cluster, f"{store.prefix}:{{audit}}:head")
    for _ in range(200):
        s = rec.session()
        if _node_pid_for(redis_cluster, store.ops.session_key(s.hmk_name)) != audit_pid:
            break
    pid = _node_pid_for(redis_cluster, store.ops.session_key(s.hmk_name))
    with frozen(pid):
        given_up(lambda: store.put_session(s, now=time.time(), audits=created(s)))
    settle_deadline = time.monotonic() + 10
    while time.monotonic() < settle_deadline:
        try:
            assert store.get_session(s.hmk_name) is None
            break
        except StoreUnavailable:
            time.sleep(0.1)
    assert len(audited(store, "session.created", s.hmk_name)) == 1
    assert len(audited(store, "session.not-stored", s.hmk_name)) == 1
    assert store.verify_audit().ok


def test_concurrent_revocations_audit_once(redis_server: RedisServer, make_store: StoreFactory) -> None:
    store = make_store(redis_server.url)
    s = rec.session()
    store.put_session(s, now=time.time(), audits=created(s))
    results: list[object] = []

    def revoke() -> None:
        results.append(store.delete_session(s.hmk_name, now=time.time(), audits_for=revoked))

    threads = [threading.Thread(target=revoke) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(r is not None for r in results) == 1
    assert len(audited(store, "session.revoked", s.hmk_name)) == 1
