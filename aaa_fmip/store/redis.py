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

import asyncio
import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from ipaddress import IPv6Address
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio.cluster
import redis.exceptions as rx
from redis.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.commands.core import Script as SyncScript
from redis.sentinel import MasterNotFoundError

from aaa_fmip.crypto.audit import AUDIT_GENESIS
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import ConfigError, StoreError, StoreNotDurable, StoreUnavailable
from aaa_fmip.store import (
    AuditCheck,
    AuditEntry,
    AuditItem,
    Checkpoint,
    ReplayOutcome,
    SendKeyRecord,
    SessionRecord,
)
from aaa_fmip.store import audit as chain
from aaa_fmip.store.audit import canonical_fields, checkpoint_text
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
    AUDIT_BATCH,
    Command,
    CommitResult,
    Op,
    Pipeline,
    RedisCall,
    Script,
    StoreOps,
    VerifyCommit,
)
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


class RedisStore:
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Prefer :meth:`from_url`. ``connect`` builds the redis-py client (``Redis`` or ``RedisCluster``);
        it is called on first use and again after a failed cluster bootstrap. ``aconnect`` builds an asyncio
        client of the same server (once per event loop); without it :attr:`aio` is None. ``write_timeout``:
        how long after sending an audited write the client gives up on it (its socket timeout); the write
        carries that deadline into Redis. ``cluster`` None: learnt from the client on first use."""
        self._connect = connect
        self._where = where
        self._on_close = on_close
        self._cluster_known = cluster is not None
        self.ops = StoreOps(kek, prefix=prefix, cluster=bool(cluster), write_timeout=write_timeout, clock=clock)
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
        """Release the connections. Idempotent."""
        client, self._client = self._client, None
        self._scripts.clear()
        try:
            if self._on_close is not None:
                self._on_close()
            elif client is not None:
                client.close()
        except (rx.RedisError, rx.RedisClusterException, OSError):
            pass

    # --- operations (each: ops.<name> run here) ----------------------------------------------------------

    def put_session(
        self, rec: SessionRecord, *, now: float, audits: Sequence[AuditItem] = (), deadline: float | None = None
    ) -> None:
        """:meth:`StoreOps.put_session`, in this process's turn for the audit chain."""
        with self._audit_lock:
            self.run(self.ops.put_session(rec, now=now, audits=audits, deadline=deadline), "put_session")

    def delete_session(
        self,
        hmk_name: bytes,
        *,
        now: float,
        audits_for: Callable[[SessionRecord], Sequence[AuditItem]] | None = None,
        deadline: float | None = None,
    ) -> SessionRecord | None:
        """:meth:`StoreOps.delete_session`, in this process's turn for the audit chain."""
        op = self.ops.delete_session(hmk_name, now=now, audits_for=audits_for, deadline=deadline)
        with self._audit_lock:
            return self.run(op, "delete_session")

    def get_session(self, hmk_name: bytes) -> SessionRecord | None:
        return self.run(self.ops.get_session(hmk_name), "get_session")

    def find_by_spi(self, spi: int, *, limit: int = 8) -> list[SessionRecord]:
        return self.run(self.ops.find_by_spi(spi, limit=limit), "find_by_spi")

    def find_by_calling_station(self, mac: str) -> SessionRecord | None:
        return self.run(self.ops.find_by_calling_station(mac), "find_by_calling_station")

    def find_by_external_id(self, external_id: str) -> list[SessionRecord]:
        return self.run(self.ops.find_by_external_id(external_id), "find_by_external_id")

    def is_revoked(self, *, spi: int | None = None, hmk_name: bytes | None = None) -> bool:
        return self.run(self.ops.is_revoked(spi=spi, hmk_name=hmk_name), "is_revoked")

    def count_live_sessions(self) -> int:
        return self.run(self.ops.count_live_sessions(), "count_live_sessions")

    def check_replay(
        self, scope: bytes, ar_id: bytes, sequence: int, authenticator: bytes, *, ttl: int
    ) -> ReplayOutcome:
        return self.run_replay(self.ops.check_replay(scope, ar_id, sequence, authenticator, ttl=ttl))

    def remember_nonce(self, scope: bytes, nonce: bytes, *, ttl: int) -> bool:
        return self.run(self.ops.remember_nonce(scope, nonce, ttl=ttl), "remember_nonce")

    def lock_send_key(self, key_hash: bytes, *, ttl: float) -> str | None:
        return self.run(self.ops.lock_send_key(key_hash, ttl=ttl), "lock_send_key")

    def unlock_send_key(self, key_hash: bytes, token: str) -> None:
        self.run(self.ops.unlock_send_key(key_hash, token), "unlock_send_key")

    def put_send_key(self, rec: SendKeyRecord, *, now: float) -> None:
        self.run(self.ops.put_send_key(rec, now=now), "put_send_key")

    def get_send_key_by_cga(self, cga: IPv6Address) -> SendKeyRecord | None:
        return self.run(self.ops.get_send_key_by_cga(cga), "get_send_key_by_cga")

    def get_send_key_by_key_hash(self, key_hash: bytes) -> SendKeyRecord | None:
        return self.run(self.ops.get_send_key_by_key_hash(key_hash), "get_send_key_by_key_hash")

    # --- audit -------------------------------------------------------------------------------------------

    def append_audit(self, event: str, fields: Mapping[str, str | int | None], *, at: float) -> AuditEntry:
        """Append one entry to the chain; serialised across writers."""
        return self.append_audits([(event, fields, at)])[0]

    def append_audits(self, entries: Sequence[AuditItem]) -> list[AuditEntry]:
        """Append ``(event, fields, at)`` entries, consecutive in the chain, in one round trip when possible.

        Group commit: whoever holds this process's turn commits every entry queued so far in one script call;
        the others find theirs done when they get the turn."""
        items = chain.pending(entries)
        if not items:
            return []
        with self._audit_pending_lock:
            self._audit_pending.extend(items)
        last = items[-1]
        with self._audit_lock:
            while last.entry is None and last.error is None:
                with self._audit_pending_lock:
                    batch = self._audit_pending[:AUDIT_BATCH]
                    del self._audit_pending[:AUDIT_BATCH]
                try:
                    self.run(self.ops.append_audits(batch), "append_audit")
                except Exception as exc:  # every entry of the batch failed with it (StoreUnavailable, ...)
                    for pending in batch:
                        pending.error = exc
        for item in items:
            if item.error is not None:
                raise item.error
        return [item.entry for item in items if item.entry is not None]

    def read_audit(
        self,
        *,
        cursor: str | None = None,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
        event: str | None = None,
        spi: int | None = None,
        ar: str | None = None,
    ) -> tuple[list[AuditEntry], str | None]:
        op = self.ops.read_audit(cursor=cursor, limit=limit, since=since, until=until, event=event, spi=spi, ar=ar)
        return self.run(op, "read audit")

    def read_audit_raw(self, after: str | None, count: int) -> list[chain.StoredEntry]:
        return self.run(self.ops.read_audit_raw(after, count), "read audit")

    def entry_verifies(self, stored: chain.StoredEntry) -> bool:
        """True if an entry read for export carries a MAC this service made, at its position and link."""
        return self.ops.chain.entry_ok(stored, stored.entry.n, stored.entry.prev)

    def verify_audit(self, checkpoint: Checkpoint | None = None) -> AuditCheck:
        return self.run(self.ops.verify_audit(checkpoint), "verify_audit")

    def checkpoint(self, *, now: float) -> Checkpoint:
        return self.run(self.ops.checkpoint(now=now), "verify_audit")

    def sign_checkpoint(self, n: int, head: str, at: float) -> Checkpoint:
        return self.ops.chain.sign(n, head, at)

    def check_checkpoint(self, cp: Checkpoint) -> None:
        self.ops.chain.check(cp)

    @property
    def audit_public_keys(self) -> dict[str, bytes]:
        """The Ed25519 public key (32 octets) that verifies checkpoints, per KEK id."""
        return self.ops.chain.public_keys

    def audit_exported(self) -> tuple[int, str | None, str]:
        return self.run(self.ops.audit_exported(), "audit export")

    def set_audit_exported(self, n: int, entry_id: str, mac: str) -> None:
        self.run(self.ops.set_audit_exported(n, entry_id, mac), "audit export")

    def trim_audit(self, *, keep: int, now: float) -> int:
        return self.run(self.ops.trim_audit(keep=keep, now=now), "trim audit")


@dataclasses.dataclass
class _LoopState:
    """What :class:`AsyncRedisOps` holds per event loop: the client, its scripts and the audit group commit."""

    loop: asyncio.AbstractEventLoop
    client: Any
    cluster: bool
    scripts: dict[str, AsyncScript] = dataclasses.field(default_factory=dict)
    audit_queue: collections.deque[tuple[list[chain.PendingAudit], asyncio.Future[None]]] = dataclasses.field(
        default_factory=collections.deque
    )
    audit_task: asyncio.Task[None] | None = None
    ready: bool = False  # a Cluster client has learnt the topology
    ready_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    chain_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)  # this loop's turn for the chain
    verify_queue: collections.deque[tuple[VerifyCommit, asyncio.Future[CommitResult]]] = dataclasses.field(
        default_factory=collections.deque
    )
    verify_task: asyncio.Task[None] | None = None


class AsyncRedisOps:
    """The asyncio driver of a :class:`RedisStore`: :meth:`arun` drives any operation of :class:`StoreOps` on a
    client of the running event loop (built on first use in each loop: asyncio connections belong to their
    loop). Audit appends of one loop are group-committed by one task; a caller that is cancelled does not
    cancel the commit it waits for."""

    def __init__(self, store: RedisStore, connect: Callable[[], Any]) -> None:
        self._store = store
        self._connect = connect
        self._local = threading.local()  # the _LoopState of the loop this thread last ran

    @property
    def ops(self) -> StoreOps:
        return self._store.ops

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state: _LoopState | None = getattr(self._local, "state", None)
        if state is None or state.loop is not loop:
            client = self._connect()
            cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
            state = self._local.state = _LoopState(loop, client, cluster)
        return state

    async def _ready(self) -> _LoopState:
        """This loop's state, its Cluster client initialised once: left to itself, redis-py's asyncio cluster
        client initialises on first use, and concurrent first commands then race that."""
        state = self._loop_state()
        if state.cluster and not state.ready:
            async with state.ready_lock:
                if not state.ready:
                    await state.client.initialize()
                    state.ready = True
        return state

    async def arun(self, op: Op[T], what: str = "store call") -> T:
        """Drive ``op`` on this loop's client (errors as :meth:`RedisStore.run`)."""
        store = self._store
        with store._io(what):
            state = await self._ready()
        try:
            call = next(op)
            while True:
                try:
                    reply = await self._execute(state, call)
                except (rx.RedisError, rx.RedisClusterException, OSError) as exc:
                    call = op.throw(store._translate(exc, what))
                    continue
                call = op.send(reply)
        except StopIteration as done:
            return cast(T, done.value)

    async def _execute(self, state: _LoopState, call: RedisCall) -> object:
        client = state.client
        if isinstance(call, Pipeline) and call.node_key is not None and state.cluster:
            # one connection to the key's node: through the blocking cluster client, which can name it
            store = self._store
            return await asyncio.to_thread(store._execute, store._r(), call)
        if isinstance(call, Command):
            return cast(object, await client.execute_command(*call.args, **call.options))
        if isinstance(call, Script):
            script = state.scripts.get(call.lua)
            if script is None:
                script = state.scripts[call.lua] = client.register_script(call.lua)
            return cast(object, await script(keys=list(call.keys), args=list(call.args), client=client))
        pipe = client.pipeline() if state.cluster else client.pipeline(transaction=False)
        for c in call.calls:
            _queue(pipe, c)
        return cast(object, await pipe.execute())

    async def find_by_spi(self, spi: int, *, limit: int = 8) -> list[SessionRecord]:
        return await self.arun(self.ops.find_by_spi(spi, limit=limit), "find_by_spi")

    async def is_revoked(self, *, spi: int | None = None, hmk_name: bytes | None = None) -> bool:
        return await self.arun(self.ops.is_revoked(spi=spi, hmk_name=hmk_name), "is_revoked")

    async def get_send_key_by_cga(self, cga: IPv6Address) -> SendKeyRecord | None:
        return await self.arun(self.ops.get_send_key_by_cga(cga), "get_send_key_by_cga")

    async def arun_replay(self, op: Op[T], what: str = "check_replay", *, turn: bool = False) -> T:
        """:meth:`RedisStore.run_replay` on this loop (a due durability check runs in a worker thread);
        ``turn``: in this loop's turn for the audit chain (shared with the group commit)."""
        store = self._store
        monitor = store.durability
        if monitor is None:
            return await (self._arun_in_turn(op, what) if turn else self.arun(op, what))
        if monitor.check_due(time.monotonic()):  # rare: first use, after a reconnect, retrying a refusal
            await asyncio.to_thread(store._replay_gate, monitor)
        elif not monitor.allows_replay:
            raise StoreNotDurable(NOT_DURABLE)
        seen = monitor.connections
        try:
            result = await (self._arun_in_turn(op, what) if turn else self.arun(op, what))
        except StoreUnavailable:
            monitor.note_connection()
            raise
        if monitor.connections != seen:
            await asyncio.to_thread(store._replay_gate, monitor)
        return result

    async def commit_verify(self, commit: VerifyCommit) -> CommitResult:
        """:meth:`StoreOps.verify_commit` on this loop. Where the audit entry goes with it (no slots, no WAIT),
        the verifications waiting for this loop's turn for the chain are committed together, pipelined in one
        round trip (:meth:`StoreOps.verify_commit_many`); elsewhere each runs on its own."""
        if not self.ops.verify_audits_inline:
            return await self.arun_replay(self.ops.verify_commit(commit), "verify_fbu")
        state = self._loop_state()
        if not state.verify_queue and not state.chain_lock.locked():
            # nobody waits for the turn: commit in this task (no hand-off); those arriving meanwhile queue up
            async with state.chain_lock:
                (result,) = await self.arun_replay(self.ops.verify_commit_many([commit]), "verify_fbu")
            if isinstance(result, BaseException):
                raise result
            return result
        done: asyncio.Future[CommitResult] = state.loop.create_future()
        state.verify_queue.append((commit, done))
        if state.verify_task is None or state.verify_task.done():
            state.verify_task = state.loop.create_task(self._drain_verifies(state))
        return await done

    async def _drain_verifies(self, state: _LoopState) -> None:
        while state.verify_queue:
            batch = [state.verify_queue.popleft() for _ in range(min(AUDIT_BATCH, len(state.verify_queue)))]
            try:
                async with state.chain_lock:
                    op = self.ops.verify_commit_many([commit for commit, _ in batch])
                    results = await self.arun_replay(op, "verify_fbu")
            except Exception as exc:  # every verification of the batch failed with it (StoreUnavailable, ...)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)

    async def _arun_in_turn(self, op: Op[T], what: str) -> T:
        state = self._loop_state()
        async with state.chain_lock:
            return await self.arun(op, what)

    async def check_replay(
        self, scope: bytes, ar_id: bytes, sequence: int, authenticator: bytes, *, ttl: int
    ) -> ReplayOutcome:
        return await self.arun_replay(self.ops.check_replay(scope, ar_id, sequence, authenticator, ttl=ttl))

    async def append_audits(self, entries: Sequence[AuditItem]) -> list[AuditEntry]:
        items = chain.pending(entries)
        if not items:
            return []
        state = self._loop_state()
        done: asyncio.Future[None] = state.loop.create_future()
        state.audit_queue.append((items, done))
        if state.audit_task is None or state.audit_task.done():
            state.audit_task = state.loop.create_task(self._drain_audits(state))
        await done
        return [item.entry for item in items if item.entry is not None]

    async def _drain_audits(self, state: _LoopState) -> None:
        while state.audit_queue:
            groups: list[tuple[list[chain.PendingAudit], asyncio.Future[None]]] = []
            count = 0
            while state.audit_queue and count < AUDIT_BATCH:
                group = state.audit_queue.popleft()
                groups.append(group)
                count += len(group[0])
            batch = [item for items, _ in groups for item in items]
            try:
                async with state.chain_lock:
                    await self.arun(self.ops.append_audits(batch), "append_audit")
            except Exception as exc:  # every entry of the batch failed with it (StoreUnavailable, ...)
                for _, done in groups:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in groups:
                    if not done.done():
                        done.set_result(None)

    async def aclose(self) -> None:
        """Let a pending audit commit finish, then close this loop's connections. Idempotent."""
        state: _LoopState | None = getattr(self._local, "state", None)
        self._local.state = None
        if state is None or state.loop is not asyncio.get_running_loop():
            return
        if state.audit_task is not None:
            await asyncio.wait([state.audit_task])
        with suppress(rx.RedisError, OSError):
            await state.client.aclose()


def _queue(pipe: Any, call: Command | Script) -> None:
    if isinstance(call, Command):
        pipe.execute_command(*call.args, **call.options)
    else:
        # EVAL (not EVALSHA) inside pipelines: nothing to recover from after a server restart. Through
        # execute_command because redis-py's cluster pipeline has no eval(); it still routes EVAL by its keys.
        pipe.execute_command("EVAL", call.lua, len(call.keys), *call.keys, *call.args)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MasterNotFoundError):  # its text embeds the sentinel pools' repr: say it plainly
        return "MasterNotFoundError: no sentinel named a reachable master for the service"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
