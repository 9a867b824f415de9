"""The asyncio driver of the Redis store (:class:`AsyncRedisOps`): operations run on a client of the running
event loop, audit appends and FBU verification commits of one loop group-committed."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, suppress
from ipaddress import IPv6Address
from typing import Any, Protocol, TypeVar, cast

import redis
import redis.asyncio.cluster
import redis.exceptions as rx
from redis.commands.core import AsyncScript
from redis.sentinel import MasterNotFoundError

from aaa_fmip.errors import StoreNotDurable, StoreUnavailable
from aaa_fmip.store import (
    AuditEntry,
    AuditItem,
    ReplayOutcome,
    SendKeyRecord,
    SessionRecord,
)
from aaa_fmip.store import audit as chain
from aaa_fmip.store.durability import (
    NOT_DURABLE,
    DurabilityMonitor,
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


class BlockingDriver(Protocol):
    """What the asyncio driver uses of the blocking one (:class:`aaa_fmip.store.redis.RedisStore`): its
    operations, its durability monitor, its error translation, and the client it falls back to."""

    ops: StoreOps
    durability: DurabilityMonitor | None

    def _io(self, what: str) -> AbstractContextManager[None]: ...

    def _translate(self, exc: BaseException, what: str) -> BaseException: ...

    def _replay_gate(self, monitor: DurabilityMonitor) -> None: ...

    def _r(self) -> Any: ...

    def _execute(self, client: Any, call: RedisCall) -> object: ...


T = TypeVar("T")


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
    slot_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)  # one verification batch at a time


class AsyncRedisOps:
    """The asyncio driver of a :class:`RedisStore`: :meth:`arun` drives any operation of :class:`StoreOps` on a
    client of the running event loop (built on first use in each loop: asyncio connections belong to their
    loop). Audit appends of one loop are group-committed by one task; a caller that is cancelled does not
    cancel the commit it waits for."""

    def __init__(self, store: BlockingDriver, connect: Callable[[], Any]) -> None:
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
            script = _script(state, call.lua)
            return cast(object, await script(keys=list(call.keys), args=list(call.args), client=client))
        if _one_script(call):
            return await self._script_pipeline(state, call)
        pipe = client.pipeline() if state.cluster else client.pipeline(transaction=False)
        for c in call.calls:
            _queue(pipe, c)
        return cast(object, await pipe.execute())

    async def _script_pipeline(self, state: _LoopState, call: Pipeline) -> object:
        """A pipeline of one script's calls (the FBU verifications of a group commit) by digest: no script text
        for Redis to hash per call. Calls refused with NOSCRIPT (the server forgot the script: a restart, a
        ``SCRIPT FLUSH``, possibly between two calls of the pipeline) did not run: load the script (on a Cluster
        into every primary) and send those calls again, once, in order; every call runs at most once. Any other
        error is raised, as a pipeline's first error is."""
        client = state.client
        calls = [cast(Script, c) for c in call.calls]
        lua = calls[0].lua
        sha = _script(state, lua).sha

        async def send(indices: list[int]) -> list[object]:
            pipe = client.pipeline() if state.cluster else client.pipeline(transaction=False)
            for i in indices:
                c = calls[i]
                pipe.execute_command("EVALSHA", sha, len(c.keys), *c.keys, *c.args)
            return cast(list[object], await pipe.execute(raise_on_error=False))

        replies = await send(list(range(len(calls))))
        refused = [i for i, reply in enumerate(replies) if isinstance(reply, rx.NoScriptError)]
        if refused:
            await client.script_load(lua)
            for i, reply in zip(refused, await send(refused), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

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
        """:meth:`StoreOps.verify_commit` on this loop. The verifications waiting meanwhile are committed
        together: where the audit entry goes with the script (no slots, no WAIT), in this loop's turn for the
        chain, pipelined in one round trip (:meth:`StoreOps.verify_commit_many`); on a Cluster, their scripts
        in one pipeline (:meth:`StoreOps.verify_slot_many`); with WAIT each runs on its own."""
        ops = self.ops
        if not ops.verify_audits_inline and ops.replay_wait is not None:
            return await self.arun_replay(ops.verify_commit(commit), "verify_fbu")
        state = self._loop_state()
        turn = _turn(state, ops)
        if not state.verify_queue and not turn.locked():
            # nobody waits for the turn: commit in this task (no hand-off); those arriving meanwhile queue up
            async with turn:
                (result,) = await self.arun_replay(_commit_many(ops, [commit]), "verify_fbu")
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
                async with _turn(state, self.ops):
                    op = _commit_many(self.ops, [commit for commit, _ in batch])
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


def _turn(state: _LoopState, ops: StoreOps) -> asyncio.Lock:
    """What a verification batch holds: this loop's turn for the audit chain where the entries go with it, else
    only its own turn (a Cluster: the entries follow by the audit group commit, which takes the chain's)."""
    return state.chain_lock if ops.verify_audits_inline else state.slot_lock


def _commit_many(ops: StoreOps, commits: list[VerifyCommit]) -> Op[Sequence[CommitResult | BaseException]]:
    if ops.verify_audits_inline:
        return ops.verify_commit_many(commits)
    return ops.verify_slot_many(commits)


def _script(state: _LoopState, lua: str) -> AsyncScript:
    script = state.scripts.get(lua)
    if script is None:
        script = state.scripts[lua] = state.client.register_script(lua)
    return script


def _one_script(call: Pipeline) -> bool:
    """Whether every call of ``call`` runs one and the same script (and nothing needs one connection)."""
    first = call.calls[0] if call.calls else None
    return (
        call.node_key is None
        and isinstance(first, Script)
        and all(isinstance(c, Script) and c.lua == first.lua for c in call.calls)
    )


def _queue(pipe: Any, call: Command | Script) -> None:
    if isinstance(call, Command):
        pipe.execute_command(*call.args, **call.options)
    else:
        # EVAL (not EVALSHA) inside mixed pipelines: nothing to recover from after a server restart. Through
        # execute_command because redis-py's cluster pipeline has no eval(); it still routes EVAL by its keys.
        pipe.execute_command("EVAL", call.lua, len(call.keys), *call.keys, *call.args)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MasterNotFoundError):  # its text embeds the sentinel pools' repr: say it plainly
        return "MasterNotFoundError: no sentinel named a reachable master for the service"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
