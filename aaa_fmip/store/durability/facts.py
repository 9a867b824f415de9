"""IO: the facts, read on the blocking redis-py client (CONFIG GET, INFO, ROLE); connection hooks; WAIT replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import redis
import redis.exceptions as rx
from redis.cluster import RedisCluster

from aaa_fmip.errors import ReplayNotReplicated
from aaa_fmip.store.durability.policy import DurabilityChange, DurabilityMonitor, NodeFacts, Topology, log

# --- IO: the facts, on the blocking redis-py client ------------------------------------------------------------


def facts_from_replies(
    node: str,
    config: Mapping[Any, Any] | BaseException,
    persistence: Mapping[str, Any],
    server: Mapping[str, Any],
    replication: Mapping[str, Any],
) -> NodeFacts:
    """One node's facts from redis-py's parsed replies (``config`` may be the error CONFIG GET raised)."""
    refused: str | None = None
    appendonly: bool | None = None
    appendfsync: str | None = None
    min_replicas: int | None = None
    maxmemory: int | None = None
    policy: str | None = None
    if isinstance(config, BaseException):
        text = str(config).splitlines()[0] if str(config) else type(config).__name__
        refused = text[:120]
    else:
        values = {_text(k).lower(): _text(v).lower() for k, v in config.items()}
        if values.get("appendonly") in ("yes", "no"):
            appendonly = values["appendonly"] == "yes"
        appendfsync = values.get("appendfsync") or None
        mrw = values.get("min-replicas-to-write") or values.get("min-slaves-to-write")
        if mrw is not None and mrw.isdigit():
            min_replicas = int(mrw)
        if values.get("maxmemory", "").isdigit():
            maxmemory = int(values["maxmemory"])
        policy = values.get("maxmemory-policy") or None
    if appendonly is None and "aof_enabled" in persistence:
        appendonly = str(persistence["aof_enabled"]) == "1"
    if appendonly is None:
        appendfsync = None
    role = replication.get("role")
    replicas = replication.get("connected_slaves", 0)
    run_id = server.get("run_id")
    return NodeFacts(
        node=node,
        run_id=str(run_id) if run_id else None,
        appendonly=appendonly,
        appendfsync=appendfsync,
        role=str(role) if role is not None else None,
        connected_replicas=int(replicas) if str(replicas).isdigit() else 0,
        min_replicas_to_write=min_replicas,
        config_refused=refused,
        maxmemory=maxmemory,
        maxmemory_policy=policy,
    )


def gather_facts(client: Any, node: str) -> list[NodeFacts]:
    """The facts of every primary behind ``client`` (a redis-py ``Redis`` or ``RedisCluster``); raises
    redis-py errors (the caller maps them)."""
    if isinstance(client, RedisCluster):
        out = []
        for primary in cast(Any, client).get_primaries():
            out += gather_facts(client.get_redis_connection(primary), f"{primary.host}:{primary.port}")
        return out
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("CONFIG", "GET", "append*")  # appendonly, appendfsync (and harmless others)
    pipe.execute_command("CONFIG", "GET", "min-replicas-to-write")
    pipe.execute_command("CONFIG", "GET", "maxmemory*")  # maxmemory, maxmemory-policy (and harmless others)
    pipe.info("persistence")
    pipe.info("server")
    pipe.info("replication")
    replies = pipe.execute(raise_on_error=False)
    for reply in replies[3:]:
        if isinstance(reply, BaseException):
            raise reply
    config: Mapping[Any, Any] | BaseException
    if isinstance(replies[0], rx.ResponseError):  # NOPERM, unknown command (renamed away)
        config = replies[0]
    elif isinstance(replies[0], BaseException):
        raise replies[0]
    else:
        config = {}
        for reply in replies[:3]:
            if isinstance(reply, Mapping | list):
                config.update(_pairs(reply))
    return [facts_from_replies(node, config, replies[3], replies[4], replies[5])]


def node_name(client: Any, fallback: str) -> str:
    """``host:port`` of a plain client's connection pool, or ``fallback``."""
    if isinstance(client, redis.Redis):
        kw = client.connection_pool.connection_kwargs
        if kw.get("path"):
            return f"unix:{kw['path']}"
        if kw.get("host"):
            return f"{kw['host']}:{kw.get('port', 6379)}"
    return fallback


def _pairs(reply: object) -> list[tuple[Any, Any]]:
    """CONFIG GET's reply: a dict (redis-py's callback) or a flat list."""
    if isinstance(reply, Mapping):
        return list(reply.items())
    if isinstance(reply, list):
        return list(zip(reply[0::2], reply[1::2], strict=False))
    return []


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def topology_of(scheme: str) -> Topology:
    """The deployment a store URL scheme names (``redis+sentinel`` → sentinel, ...)."""
    if scheme.endswith("+sentinel"):
        return "sentinel"
    if scheme.endswith("+cluster"):
        return "cluster"
    return "standalone"


def connect_hook(monitor: DurabilityMonitor) -> Callable[[Any], None]:
    """redis-py ``redis_connect_func`` for plain and Sentinel clients: the usual handshake, then count it."""

    def on_connect(connection: Any) -> None:
        connection.on_connect()
        monitor.note_connection()

    return on_connect


def cluster_connect_hook(monitor: DurabilityMonitor) -> Callable[[Any], None]:
    """redis-py's sync cluster client runs this after its own handshake."""

    def on_connect(connection: Any) -> None:
        monitor.note_connection()

    return on_connect


def aconnect_hook(monitor: DurabilityMonitor) -> Callable[[Any], Awaitable[None]]:
    """:func:`connect_hook` for redis-py's asyncio clients."""

    async def on_connect(connection: Any) -> None:
        await connection.on_connect()
        monitor.note_connection()

    return on_connect


def log_check(change: DurabilityChange, monitor: DurabilityMonitor, where: str) -> None:
    """Log what a check found that an operator must know: the first verdict, a restart, a change."""
    report = change.report
    extra: dict[str, object] = {"store": where, "durable": report.durable}
    if change.restarted:
        log.warning(
            "Redis restarted or another server took over (run id changed); replay state is only what it persisted",
            extra={**extra, "event": "store-restarted", "nodes": ",".join(change.restarted)},
        )
    if not (change.first or change.durability_changed):
        return
    if report.durable:
        log.info(
            "store durability checked: " + report.summary(),
            extra={**extra, "event": "store-durable"},
        )
    elif monitor.policy.allow_volatile:
        log.warning(
            "store.allow_volatile_replay_state is set: FBUs are verified although " + report.summary(),
            extra={**extra, "event": "store-volatile-accepted"},
        )
    else:
        log.error(
            "FBU verification is refused until this is fixed: " + report.summary(),
            extra={**extra, "event": "store-not-durable"},
        )


def wait_replies(replies: Sequence[object]) -> tuple[object, int]:
    """(script reply, replicas acknowledged) of a replay script + ``WAIT`` pipeline; an error reply is raised."""
    for reply in replies:
        if isinstance(reply, BaseException):
            if isinstance(reply, rx.ResponseError) and str(reply).startswith(("MOVED", "ASK")):
                raise rx.TryAgainError(f"slot moved ({reply})")  # a resharding: retry later
            raise reply
    acks = replies[1]
    return replies[0], int(acks) if isinstance(acks, int) else 0


def replicated(outcome: str, acks: int | None, wanted: int) -> None:
    """Raise :class:`ReplayNotReplicated` if a replay verdict stands on an update that fewer than ``wanted``
    replicas acknowledged (``acks`` None: no ``WAIT`` was asked for). A "replay" wrote nothing: it stands."""
    if acks is not None and outcome != "replay" and acks < wanted:
        raise ReplayNotReplicated(
            f"the FBU's replay update was acknowledged by {acks} of {wanted} replica(s) in time; it is not accepted"
        )
