"""Redis faults under FBU load, through the service: is any FBU accepted twice as a new binding?

* RDB snapshots only (redis-server's defaults), SIGKILL + restart: the replay state written since the last
  snapshot is gone and FBUs accepted before are accepted again. This is what ``store.allow_volatile_replay_state``
  lets happen; without it the service refuses to verify FBUs on such a Redis (test_durability.py).
* AOF with ``appendfsync always``, SIGKILL + restart while FBUs are verified: replaying every accepted FBU
  afterwards is accepted 0 times.
* Sentinel failover (the master SIGKILLed, the replica promoted) with ``store.replay_wait_replicas = 1``: replaying
  every accepted FBU on the new master is accepted 0 times.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from aaa_fmip import keys, mn
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import StoreUnavailable
from aaa_fmip.model import AccessRouter, Caller, EapKeys, SessionRequest
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.store.durability import ReplayDurabilityPolicy
from aaa_fmip.store.redis import RedisStore
from tests.store._topologies import _Proc
from tests.store.conftest import StoreFactory
from tests.support.redis_server import RedisServer, free_port, redis_binary

IP = ipaddress.IPv6Address
PAR = IP("2001:db8:1::1")
PCOA = IP("2001:db8:1::100")
NCOA = IP("2001:db8:2::100")
AAA = Caller("radius", "aaa")
AR = Caller("ar1", "ar", AccessRouter("ar1", frozenset({PAR})))
MOBILES = 20


@dataclass
class Load:
    """FBUs of ``MOBILES`` mobile nodes, sent round robin with rising sequence numbers; what was accepted."""

    service: HandoverKeyService
    mobiles: list[tuple[bytes, bytes]] = field(default_factory=list)
    next_seq: list[int] = field(default_factory=list)
    accepted: list[bytes] = field(default_factory=list)
    last: dict[int, bytes] = field(default_factory=dict)  # per mobile, the last FBU accepted
    errors: dict[str, int] = field(default_factory=dict)

    def ingest(self) -> None:
        for _ in range(MOBILES):
            emsk, sid = os.urandom(64), b"\x0d" + os.urandom(64)
            self.service.ingest_session(AAA, SessionRequest(user_name="mn", keys=EapKeys(SecretBytes(emsk), sid)))
            self.mobiles.append((emsk, sid))
            self.next_seq.append(1)

    def fbu(self, i: int, seq: int) -> bytes:
        emsk, sid = self.mobiles[i]
        master = keys.derive_hmk(emsk, sid)
        hk = keys.derive_hk(master.hmk, master.hmk_name, PAR, master.spi)
        return mn.build_fbu(hk, sequence=seq, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR)

    def run(self, count: int, *, on_step: Callable[[int], None] = lambda n: None, asyncio_every: int = 2) -> None:
        """``count`` FBU attempts; every ``asyncio_every``-th one through the asyncio path (the REST hot path)."""
        loop = asyncio.new_event_loop()
        try:
            for n in range(count):
                on_step(n)
                i = n % MOBILES
                mh = self.fbu(i, self.next_seq[i])
                self.next_seq[i] += 1  # a refused FBU is not retried: the next one has a higher number
                try:
                    if n % asyncio_every == 0:
                        verdict = loop.run_until_complete(
                            self.service.verify_fbu_async(AR, source=PCOA, destination=PAR, mh=mh)
                        )
                    else:
                        verdict = self.service.verify_fbu(AR, source=PCOA, destination=PAR, mh=mh)
                except StoreUnavailable as exc:  # StoreNotDurable and ReplayNotReplicated are kinds of it
                    self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
                    time.sleep(0.02)
                    continue
                assert verdict.valid and verdict.verdict == "accepted", verdict
                self.accepted.append(mh)
                self.last[i] = mh
        finally:
            aio = self.service.store.aio
            if aio is not None:
                loop.run_until_complete(aio.aclose())
            loop.close()

    def replay_all(self) -> dict[str, int]:
        """Send every accepted FBU again; count the verdicts (only the last of each mobile may be a
        retransmission; "accepted" would be a replay taken as a new binding)."""
        counts: dict[str, int] = {}
        for mh in self.accepted:
            v = self.service.verify_fbu(AR, source=PCOA, destination=PAR, mh=mh)
            key = (v.verdict or "accepted") if v.valid else (v.reason or "rejected")
            if key == "retransmission":
                assert mh in self.last.values()
            counts[key] = counts.get(key, 0) + 1
        return counts


def _kill(server: RedisServer) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    server.proc = None


@pytest.mark.slow
def test_rdb_only_redis_killed_accepts_replays_when_volatile_state_is_allowed(
    tmp_path: Path, make_store: StoreFactory
) -> None:
    """Reproduces the fault the durability check exists for (and what the opt-out still permits)."""
    server = RedisServer(tmp_path / "rdb", persist=True, args=("--appendonly", "no", "--save", "3600 1 300 100"))
    server.start()
    try:
        store = make_store(server.url, replay_policy=ReplayDurabilityPolicy(allow_volatile=True))
        load = Load(HandoverKeyService(store))
        load.ingest()
        redis.Redis(port=server.port).save()  # a snapshot holds the sessions, as one taken minutes ago would
        load.run(100)
        assert len(load.accepted) == 100
        _kill(server)
        server.start()
        counts = load.replay_all()
        assert counts.get("accepted", 0) == 100, counts  # every replayed FBU taken again as a new binding
        assert store.durability is not None and store.durability.restarts == 1
    finally:
        server.stop()


@pytest.mark.slow
def test_aof_redis_killed_and_restarted_under_load_accepts_no_replay(tmp_path: Path, make_store: StoreFactory) -> None:
    server = RedisServer(tmp_path / "aof", persist=True, args=("--appendfsync", "always"))
    server.start()
    try:
        store = make_store(server.url, replay_policy=ReplayDurabilityPolicy(min_appendfsync="always"))
        load = Load(HandoverKeyService(store))
        load.ingest()

        def fault(n: int) -> None:
            if n == 120:
                _kill(server)
            if n == 125:
                server.start()

        load.run(300, on_step=fault)
        assert len(load.accepted) >= 250, (len(load.accepted), load.errors)
        assert load.errors.get("StoreUnavailable", 0) >= 1  # the outage was seen
        counts = load.replay_all()
        assert counts.get("accepted", 0) == 0, counts
        assert counts.get("replay", 0) + counts.get("retransmission", 0) == len(load.accepted)
        assert store.durability is not None and store.durability.restarts == 1
    finally:
        server.stop()


class SentinelPair:
    """A master, its replica and one sentinel (quorum 1, fast failover), every process a real redis-server."""

    service = "fmip"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.master = RedisServer(directory / "a", persist=True)
        self.replica = RedisServer(directory / "b", persist=True)
        self.replica.args = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.sentinel_port = free_port()
        self.sentinel: _Proc | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}/0"

    def master_port(self) -> int:
        """The master's port as the sentinel names it (0 if it cannot say right now)."""
        try:
            client = redis.Redis(port=self.sentinel_port, socket_timeout=2)
            addr = client.sentinel_get_master_addr_by_name(self.service)
            client.close()
        except (redis.RedisError, OSError):
            return 0
        return int(addr[1]) if isinstance(addr, tuple) else 0

    def log_tail(self) -> str:
        path = self.directory / "sentinel" / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else ""

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        _wait_link(self.replica.port)
        d = self.directory / "sentinel"
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {d}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
            # 2 s: long enough that a loaded two-core machine (the test's load, two servers, a full resync) does
            # not make the sentinel think the new master is down and fail back at once; it still may (see below)
            f"sentinel down-after-milliseconds {self.service} 2000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
        )
        self.sentinel = _Proc(d, [redis_binary(), str(conf), "--sentinel"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.master_port() == self.master.port:
                    replicas = redis.Redis(port=self.sentinel_port, socket_timeout=1).sentinel_slaves(self.service)
                    if replicas:
                        return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("sentinel did not learn the master and its replica")

    def linked(self) -> bool:
        """Whether the node the sentinel names master has the other node replicating from it, link up."""
        master = self.master_port()
        other = {self.master.port, self.replica.port} - {master}
        if len(other) != 1:
            return False
        try:
            info = redis.Redis(port=other.pop(), socket_timeout=1).info("replication")
        except (redis.RedisError, OSError):
            return False
        return info.get("master_link_status") == "up" and int(info.get("master_port", 0)) == master

    def stop(self) -> None:
        if self.sentinel is not None:
            self.sentinel.stop()
        self.replica.stop()
        self.master.stop()


def _wait_link(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_timeout=1).info("replication").get("master_link_status") == "up":
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"replica on {port} did not sync")


@pytest.mark.slow
def test_sentinel_failover_under_load_with_wait_accepts_no_replay(tmp_path: Path, kek_ring: object) -> None:
    pair = SentinelPair(tmp_path)
    pair.start()
    store: RedisStore | None = None
    try:
        policy = ReplayDurabilityPolicy(wait_replicas=1, wait_timeout_ms=300)
        store = RedisStore.from_url(pair.url, kek_ring, prefix="fo", socket_timeout=1.0, replay_policy=policy)  # type: ignore[arg-type]
        # without WAIT a Sentinel store is refused: a failover would lose what the replica had not received
        unguarded = RedisStore.from_url(pair.url, kek_ring, prefix="fo", replay_policy=ReplayDurabilityPolicy())  # type: ignore[arg-type]
        report = unguarded.check_durability()
        assert report is not None and not report.durable and "replay_wait_replicas" in report.problems[0]
        unguarded.close()

        load = Load(HandoverKeyService(store))
        load.ingest()
        redis.Redis(port=pair.master.port).execute_command("WAIT", 1, 5000)  # the sessions are on the replica
        failed_over, promoted = threading.Event(), threading.Event()
        trouble: list[str] = []

        def fail_over() -> None:
            try:
                _kill(pair.master)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and pair.master_port() != pair.replica.port:
                    time.sleep(0.1)
                if pair.master_port() != pair.replica.port:
                    raise RuntimeError("the sentinel did not promote the replica")
                promoted.set()
                # The old master returns and the sentinel turns it into a replica of the new one. On a loaded
                # machine the sentinel may also think the new master down for a moment and fail back: either
                # way the FBUs must not be replayable; wait until one master has the other node linked.
                pair.master.start()
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline and not pair.linked():
                    time.sleep(0.1)
                if not pair.linked():
                    raise RuntimeError("no master with its replica linked after the failover")
                failed_over.set()
            except Exception as exc:  # reported by the assertion below
                trouble.append(repr(exc))

        killer: threading.Thread | None = None

        def fault(n: int) -> None:
            nonlocal killer
            if n == 100:
                killer = threading.Thread(target=fail_over, daemon=True)
                killer.start()
            if n >= 101 and not failed_over.is_set():
                failed_over.wait(0.05)  # keep sending while the failover runs, at a bounded rate

        load.run(400, on_step=fault)
        assert killer is not None
        killer.join(timeout=180)
        assert failed_over.is_set(), f"the failover did not complete: {trouble}\n{pair.log_tail()}"
        assert promoted.is_set()  # the replica took over while the load ran (a fail-back may have followed)
        accepted_before = len(load.accepted)
        load.run(40)  # after the failover, FBUs are verified (and replicated) again
        assert len(load.accepted) > accepted_before, load.errors
        assert load.errors, "the failover was not seen by the load"
        counts = load.replay_all()
        assert counts.get("accepted", 0) == 0, counts
        assert store.durability is not None and store.durability.restarts >= 1
    finally:
        if store is not None:
            store.close()
        pair.stop()
