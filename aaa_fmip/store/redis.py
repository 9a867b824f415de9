"""The Redis store's drivers: the only code in aaa-fmip that holds a Redis client (architecture.md §5).

Every operation is a generator of Redis calls in :mod:`aaa_fmip.store.ops`; :meth:`RedisStore.run` drives one
with the blocking client and :meth:`AsyncRedisOps.arun` with the asyncio client of the running event loop. Both
translate errors in one place (:meth:`RedisStore._io`) and run scripts by digest through redis-py's ``Script``
objects, which reload a script that a restarted server has forgotten. One code path serves a single Redis,
Redis Sentinel and Redis Cluster (and the embedded server of :mod:`aaa_fmip.store.embedded`); URLs:
:mod:`aaa_fmip.store.urls`; key names and atomicity: :mod:`aaa_fmip.store.ops`; the audit chain:
:mod:`aaa_fmip.store.audit`.

Errors: every connection, timeout, loading, failover or cluster-down condition becomes
:class:`~aaa_fmip.errors.StoreUnavailable` (naming the host, never credentials); other Redis errors become
:class:`~aaa_fmip.errors.StoreError`; a record whose key material does not unwrap raises
:class:`~aaa_fmip.errors.CryptoError`. Clients use short socket timeouts and at most one immediate retry on a
broken connection, never on a timeout, so calls fail fast while Redis is down and work again once it returns.

Audit appends are group-committed: one append in flight per store and thread-safe queue (blocking side), one
task per event loop (asyncio side); a state change with audit entries (a session stored, a revocation) takes
the same turn, so this process never races itself for the chain's head.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import redis.exceptions as rx
from redis.cluster import RedisCluster
from redis.commands.core import Script as SyncScript

from aaa_fmip.crypto.audit import AUDIT_GENESIS
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import AaaFmipError, ConfigError, StoreError, StoreNotDurable, StoreUnavailable
from aaa_fmip.store import audit as chain
from aaa_fmip.store.audit import canonical_fields, checkpoint_text
from aaa_fmip.store.calls import StoreCalls
from aaa_fmip.store.durability import (
    NOT_DURABLE,
    DurabilityMonitor,
    DurabilityReport,
    ReplayDurabilityPolicy,
    aconnect_hook,
    cluster_connect_hook,
    connect_hook,
    gather_facts,
    log_check,
    node_name,
    topology_of,
)
from aaa_fmip.store.ops import (
    Command,
    CommitResult,
    Op,
    RedisCall,
    Script,
    StoreOps,
    VerifyCommit,
)
from aaa_fmip.store.redis_async import AsyncRedisOps, _describe, _queue
from aaa_fmip.store.urls import ConnectHooks, connection_for

__all__ = ["AUDIT_GENESIS", "AsyncRedisOps", "RedisStore", "canonical_fields", "checkpoint_text"]

T = TypeVar("T")

# Conditions in which Redis cannot serve now but may soon (failover, loading, persistence trouble).
_UNAVAILABLE_REPLIES: Final = (
    "LOADING",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "READONLY",
    "MISCONF",
    "NOREPLICAS",
    "BUSY",
    "OOM",
)


class RedisStore(StoreCalls):
    """Sessions, SEND keys, replay state, nonces and the audit chain in Redis: :attr:`ops` says what, this
    class runs it (module docstring)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        kek: KekRing,
        *,
        prefix: str = "fmip",
        where: str = "redis",
        on_close: Callable[[], None] | None = None,
        aconnect: Callable[[], Any] | None = None,
        write_timeout: float = 0.5,
        cluster: bool | None = None,
        slot_chains: bool | None = None,
        writer: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Prefer :meth:`from_url`. ``connect`` builds the redis-py client (``Redis`` or ``RedisCluster``);
        it is called on first use and again after a failed cluster bootstrap. ``aconnect`` builds an asyncio
        client of the same server (once per event loop); without it :attr:`aio` is None. ``write_timeout``:
        how long after sending an audited write the client gives up on it (its socket timeout); the write
        carries that deadline into Redis. ``cluster`` None: learnt from the client on first use. ``slot_chains``:
        whether an accepted FBU's audit entry goes to a slot chain (None: with a Cluster; :attr:`StoreOps.slot_chains`);
        ``writer``: this process's number among the writers of the trail, whose slot chains are its own
        (``store.writer``; :meth:`StoreOps.fbu_chain`)."""
        self._connect = connect
        self._where = where
        self._on_close = on_close
        self._cluster_known = cluster is not None
        self.ops = StoreOps(
            kek,
            prefix=prefix,
            cluster=bool(cluster),
            slot_chains=slot_chains,
            writer=writer,
            write_timeout=write_timeout,
            clock=clock,
        )
        self._lock = threading.Lock()
        self._audit_lock = threading.Lock()  # this process's turn for the audit chain
        self._audit_pending_lock = threading.Lock()
        self._audit_pending: list[chain.PendingAudit] = []
        self._client: Any = None
        self._scripts: dict[str, SyncScript] = {}
        self._aio = AsyncRedisOps(self, aconnect) if aconnect is not None else None

    # Set by from_url(replay_policy=...): replay checks then require a durable store (aaa_fmip.store.durability).
    durability: DurabilityMonitor | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        kek: KekRing,
        *,
        prefix: str = "fmip",
        socket_timeout: float = 0.5,
        replay_policy: ReplayDurabilityPolicy | None = None,
        slot_chains: bool | None = None,
        writer: int = 0,
        **kw: Any,
    ) -> RedisStore:
        """A store for ``url`` (forms in :mod:`aaa_fmip.store.urls`); ``kw`` goes to the redis-py client.

        With ``replay_policy``, replay checks (:meth:`run_replay`) verify first that the server would not lose
        replay state (on the first call, after every new connection, and by :meth:`check_durability`) and raise
        :class:`StoreNotDurable` otherwise, unless the policy accepts volatile state; with
        ``replay_policy.wait_replicas`` an accepted update waits for that many replicas (``WAIT``).
        """
        policy = replay_policy
        if policy is not None and policy.wait_replicas and policy.wait_timeout_ms / 1000 >= socket_timeout:
            raise ConfigError(
                f"must be shorter than the store timeout ({socket_timeout * 1000:g} ms): a WAIT blocks the read",
                key="store.replay_wait_timeout_ms",
            )
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError:
            raise ConfigError("not a valid URL", key="store.url") from None
        monitor = None if replay_policy is None else DurabilityMonitor(replay_policy, topology_of(scheme))
        hooks = None
        if monitor is not None:
            # Every new connection may reach a restarted or failed-over server: the monitor re-checks after one.
            hooks = ConnectHooks(connect_hook(monitor), aconnect_hook(monitor), cluster_connect_hook(monitor))
        c = connection_for(url, socket_timeout=socket_timeout, on_connect=hooks, **kw)
        store = cls(
            c.connect,
            kek,
            prefix=prefix,
            where=c.where,
            on_close=c.on_close,
            aconnect=c.aconnect,
            write_timeout=socket_timeout,
            cluster=c.cluster,
            slot_chains=slot_chains,
            writer=writer,
        )
        store.durability = monitor
        if monitor is not None and monitor.policy.wait_replicas:
            store.ops.replay_wait = (monitor.policy.wait_replicas, monitor.policy.wait_timeout_ms)
        return store

    # --- the driver --------------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """Where the store points, for messages: host and port (or socket path), never credentials."""
        return self._where

    @property
    def prefix(self) -> str:
        return self.ops.p

    @property
    def aio(self) -> AsyncRedisOps | None:
        """The same operations on an asyncio client of the same server(s), for an event loop."""
        return self._aio

    @property
    def write_timeout(self) -> float:
        return self.ops.write_timeout

    @contextmanager
    def _io(self, what: str) -> Iterator[None]:
        """Redis errors → StoreUnavailable / StoreError, once for every operation (module docstring)."""
        try:
            yield
        except (rx.RedisError, rx.RedisClusterException, OSError) as exc:
            raise self._translate(exc, what) from exc

    def _translate(self, exc: BaseException, what: str) -> BaseException:
        if isinstance(exc, rx.ConnectionError | rx.TimeoutError | rx.ClusterDownError | rx.TryAgainError | OSError):
            self.ops.clock_offset = None  # a new connection may reach another server: measure again
            return StoreUnavailable(f"Redis at {self._where} is unavailable ({what}): {_describe(exc)}")
        if isinstance(exc, rx.RedisClusterException):  # bootstrap failed, slot not covered...
            return StoreUnavailable(f"Redis at {self._where} is unavailable ({what}): {_describe(exc)}")
        if isinstance(exc, rx.ResponseError):
            if str(exc).startswith(_UNAVAILABLE_REPLIES) or isinstance(exc, rx.ReadOnlyError):
                return StoreUnavailable(f"Redis at {self._where} cannot serve ({what}): {_describe(exc)}")
            return StoreError(f"Redis at {self._where} refused {what}: {_describe(exc)}")
        if isinstance(exc, rx.RedisError):
            return StoreError(f"Redis at {self._where} failed ({what}): {_describe(exc)}")
        return exc

    def _r(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
                    if not self._cluster_known:
                        self.ops.cluster = isinstance(self._client, RedisCluster)
                        self._cluster_known = True
                client = self._client
        return client

    def run(self, op: Op[T], what: str = "store call") -> T:
        """Drive ``op`` with the blocking client: each call it yields is sent and its reply sent back; a call
        that fails is thrown into ``op`` as StoreUnavailable / StoreError (so an operation can react, e.g.
        note a write that did not happen), and out of it if ``op`` does not handle it."""
        with self._io(what):
            client = self._r()
        try:
            call = next(op)
            while True:
                try:
                    reply = self._execute(client, call)
                except (rx.RedisError, rx.RedisClusterException, OSError) as exc:
                    call = op.throw(self._translate(exc, what))
                    continue
                call = op.send(reply)
        except StopIteration as done:
            return cast(T, done.value)

    def _execute(self, client: Any, call: RedisCall) -> object:
        if isinstance(call, Command):
            return client.execute_command(*call.args, **call.options)
        if isinstance(call, Script):
            script = self._scripts.get(call.lua)
            if script is None:
                script = self._scripts[call.lua] = client.register_script(call.lua)
            return script(keys=list(call.keys), args=list(call.args), client=client)
        if call.node_key is not None and isinstance(client, RedisCluster):  # one connection to the key's node
            client = client.get_redis_connection(cast(Any, client).get_node_from_key(call.node_key))
            pipe = client.pipeline(transaction=False)
        else:
            pipe = client.pipeline() if self.ops.cluster else client.pipeline(transaction=False)
        for c in call.calls:
            _queue(pipe, c)
        return cast(object, pipe.execute())

    # --- health ------------------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers."""
        with self._io("PING"):
            client = self._r()
            if isinstance(client, RedisCluster):
                client.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                client.ping()

    def check_durability(self, *, require: bool = False) -> DurabilityReport | None:
        """Examine now whether Redis would lose replay state (persistence, replication, run id) and log what
        changed; None when the store was built without a replay policy. ``require``: raise
        :class:`StoreNotDurable` when FBUs would be refused. Raises StoreUnavailable."""
        monitor = self.durability
        if monitor is None:
            return None
        seen = monitor.connections
        with self._io("durability check"):
            client = self._r()
            facts = gather_facts(client, node_name(client, self._where))
        change = monitor.observe(facts, now=time.monotonic(), connections=seen)
        log_check(change, monitor, self._where)
        if require and not monitor.allows_replay:
            raise StoreNotDurable(NOT_DURABLE)
        return change.report

    def _replay_gate(self, monitor: DurabilityMonitor) -> None:
        """Check durability when due (first use, a new connection, retrying a refusal); refuse if not durable."""
        monitor.gate(time.monotonic(), self.check_durability)

    def run_replay(self, op: Op[T], what: str = "check_replay", *, turn: bool = False) -> T:
        """:meth:`run` for an operation that checks and advances FBU replay state: with a replay policy, the
        store's durability is checked first when due (StoreNotDurable), and again when the connection was
        renewed while ``op`` ran (a restarted or failed-over server answered: the verdict waits for its check).
        ``turn``: ``op`` writes audit entries, so it runs in this process's turn for the audit chain."""
        monitor = self.durability
        if monitor is None:
            return self._run_in_turn(op, what) if turn else self.run(op, what)
        self._replay_gate(monitor)
        seen = monitor.connections
        try:
            result = self._run_in_turn(op, what) if turn else self.run(op, what)
        except StoreUnavailable:
            monitor.note_connection()  # whatever answers next is examined before it is trusted
            raise
        if monitor.connections != seen:
            self._replay_gate(monitor)
        return result

    def commit_verify(self, commit: VerifyCommit) -> CommitResult:
        """:meth:`StoreOps.verify_commit`, in this process's turn for the audit chain when the entry goes with it."""
        return self.run_replay(self.ops.verify_commit(commit), "verify_fbu", turn=self.ops.verify_audits_inline)

    def _run_in_turn(self, op: Op[T], what: str) -> T:
        with self._audit_lock:
            return self.run(op, what)

    def close(self) -> None:
        """Say which slot chains this process appended to since it last did (for the exporter), then release the
        connections. Idempotent."""
        if self.ops.moved_pending:
            with suppress(AaaFmipError):
                self.report_moved(now=time.time())
        client, self._client = self._client, None
        self._scripts.clear()
        try:
            if self._on_close is not None:
                self._on_close()
            elif client is not None:
                client.close()
        except (rx.RedisError, rx.RedisClusterException, OSError):
            pass
