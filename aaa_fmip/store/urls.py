"""Redis URLs: which client to build for a single Redis, Sentinel or Cluster, and how to name it in messages.

URLs accepted by :func:`connection_for`::

    redis://[[user]:password@]host[:port][/db]          plain TCP (redis-py URL syntax and query options)
    rediss://...                                         the same over TLS
    unix://[[user]:password@]/path/to/socket[?db=N]      unix socket
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db][?sentinel_username=U
                     &sentinel_password=P]
        Redis Sentinel: the listed sentinels are asked for the master of ``service_name``; the user and
        password authenticate to the master, ``sentinel_username``/``sentinel_password`` (percent-encoded) to
        the sentinels. Port defaults to 26379.
    redis+cluster://[[user]:password@]host:port[,host:port...]
        Redis Cluster: the listed nodes are startup nodes; the topology is discovered. Port defaults to 6379.
    rediss+sentinel://..., rediss+cluster://...          the same over TLS (sentinels and nodes alike)

Every client gets short socket timeouts and at most one immediate retry on a broken connection (a pooled
connection that died with the server), never on a timeout. Messages name hosts and ports, never credentials.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.exceptions as rx
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import HiredisRespSerializer
from redis.retry import Retry
from redis.sentinel import Sentinel
from redis.utils import HIREDIS_AVAILABLE

from aaa_fmip.errors import ConfigError
from aaa_fmip.store import SCHEMES


@dataclass(frozen=True)
class ConnectHooks:
    """redis-py ``redis_connect_func`` callables: for plain and Sentinel clients (the usual handshake, then
    ours), for asyncio clients, and for the sync cluster client (ours after its own handshake)."""

    sync: Callable[[Any], None]
    asyncio: Callable[[Any], Awaitable[None]]
    cluster: Callable[[Any], None]


@dataclass(frozen=True)
class Connection:
    """How to reach one deployment: ``connect`` builds the blocking client (called on first use, and again after
    a failed cluster bootstrap), ``aconnect`` an asyncio client of the same servers (once per event loop)."""

    connect: Callable[[], Any]
    aconnect: Callable[[], Any]
    where: str  # host:port (or socket path), never credentials
    on_close: Callable[[], None] | None
    cluster: bool


def connection_for(
    url: str, *, socket_timeout: float = 0.5, on_connect: ConnectHooks | None = None, **kw: Any
) -> Connection:
    """How to reach ``url`` (forms in the module docstring); ``kw`` goes to the redis-py client. ``on_connect``:
    redis-py connect functions run for every new connection (the durability monitor counts them).

    Socket connect and read timeouts default to ``socket_timeout``; a broken pooled connection is retried
    once, immediately; nothing else is retried, so an outage surfaces as ``StoreUnavailable`` quickly.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError("not a valid URL", key="store.url") from None
    scheme = parts.scheme.lower()
    opts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": kw.pop("socket_connect_timeout", socket_timeout),
    }
    opts.update(kw)
    if "retry" in opts:
        raise ConfigError("the retry policy is fixed by the store", key="store.url")
    sync_hook: dict[str, Any] = {} if on_connect is None else {"redis_connect_func": on_connect.sync}
    async_hook: dict[str, Any] = {} if on_connect is None else {"redis_connect_func": on_connect.asyncio}
    cluster_hook: dict[str, Any] = {} if on_connect is None else {"redis_connect_func": on_connect.cluster}

    def retry() -> Retry:
        return Retry(NoBackoff(), 1, supported_errors=(rx.ConnectionError,))

    def aretry() -> redis.asyncio.retry.Retry:
        return redis.asyncio.retry.Retry(NoBackoff(), 1, supported_errors=(rx.ConnectionError,))

    if scheme in ("redis", "rediss", "unix"):
        where = _where_simple(parts, scheme)
        try:
            client = redis.Redis.from_url(url, retry=retry(), **opts, **sync_hook)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL ({where}): {exc}", key="store.url") from None

        def aconnect() -> Any:
            return c_packing(redis.asyncio.Redis.from_url(url, retry=aretry(), **opts, **async_hook))

        return Connection(lambda: client, aconnect, where, client.close, cluster=False)

    if scheme in ("redis+sentinel", "rediss+sentinel"):
        user, password, hosts = _split_netloc(parts.netloc, default_port=26379)
        path = [unquote(p) for p in parts.path.split("/") if p]
        if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ConfigError("sentinel URL path must be /service_name[/db]", key="store.url")
        service, db = path[0], int(path[1]) if len(path) == 2 else 0
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"sentinel_username", "sentinel_password"}
        if unknown:
            raise ConfigError(f"unknown sentinel URL option(s): {', '.join(sorted(unknown))}", key="store.url")
        tls = {"ssl": True} if scheme.startswith("rediss") else {}
        sentinel_kwargs = {
            k: v for k, v in opts.items() if k.startswith(("socket_", "ssl")) and k != "socket_keepalive_options"
        }
        sentinel_kwargs.update(tls)
        if "sentinel_username" in query:
            sentinel_kwargs["username"] = query["sentinel_username"]
        if "sentinel_password" in query:
            sentinel_kwargs["password"] = query["sentinel_password"]
        sentinel_kwargs["retry"] = retry()
        where = f"sentinel {_hostlist(hosts)} service {service}"
        sentinel: Any = cast(Any, Sentinel)(hosts, sentinel_kwargs=sentinel_kwargs)
        master_kwargs = {**opts, **tls, "db": db, "username": user, "password": password, "retry": retry()}
        master: Any = sentinel.master_for(service, **master_kwargs, **sync_hook)

        def close_sentinel() -> None:
            master.close()
            for s in sentinel.sentinels:
                s.close()

        def aconnect_sentinel() -> Any:
            kwargs = {**sentinel_kwargs, "retry": aretry()}
            asentinel: Any = cast(Any, redis.asyncio.sentinel.Sentinel)(hosts, sentinel_kwargs=kwargs)
            return c_packing(asentinel.master_for(service, **{**master_kwargs, "retry": aretry()}, **async_hook))

        return Connection(lambda: master, aconnect_sentinel, where, close_sentinel, cluster=False)

    if scheme in ("redis+cluster", "rediss+cluster"):
        user, password, hosts = _split_netloc(parts.netloc, default_port=6379)
        if parts.path not in ("", "/", "/0") or parts.query:
            raise ConfigError("cluster URL takes no database, path or options", key="store.url")
        where = f"cluster {_hostlist(hosts)}"
        if scheme.startswith("rediss"):
            opts["ssl"] = True
        opts.setdefault("require_full_coverage", False)

        def connect_cluster() -> RedisCluster:
            return RedisCluster(  # redis-py's sync cluster client runs our connect function after its own
                **cluster_hook,
                startup_nodes=[cast(Any, ClusterNode)(h, p) for h, p in hosts],
                username=user,
                password=password,
                retry=retry(),
                **opts,
            )

        def aconnect_cluster() -> Any:
            return c_packing(
                redis.asyncio.cluster.RedisCluster(
                    startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in hosts],
                    username=user,
                    password=password,
                    retry=aretry(),
                    **opts,
                )
            )

        return Connection(connect_cluster, aconnect_cluster, where, None, cluster=True)

    raise ConfigError(
        f"unsupported URL scheme {scheme!r} (use {', '.join(SCHEMES)})",
        key="store.url",
    )


class _HiredisPacking:
    """Packs commands in C with hiredis, as redis-py's blocking connections do (``HiredisRespSerializer``); its
    asyncio connections pack in Python, which on the FBU hot path (a verification script of some twenty
    arguments) cost about three times as much (docs/performance.md)."""

    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return cast(list[bytes], self._serializer.pack(*args))


_PACKING: dict[type, type] = {}


def _c_packed(cls: type) -> type:
    """``cls`` (a redis-py asyncio connection class: TCP, TLS, Unix socket, Sentinel-managed) packing in C."""
    if not HIREDIS_AVAILABLE or issubclass(cls, _HiredisPacking):
        return cls
    sub = _PACKING.get(cls)
    if sub is None:
        sub = _PACKING[cls] = type(cls.__name__, (_HiredisPacking, cls), {"__module__": __name__})
    return sub


def c_packing(client: Any) -> Any:
    """``client`` (a redis-py asyncio client, before its first command) with connections that pack in C."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        kwargs = client.nodes_manager.connection_kwargs
        kwargs["connection_class"] = _c_packed(kwargs.get("connection_class", redis.asyncio.Connection))
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = _c_packed(node.connection_class)
    else:
        pool = client.connection_pool
        pool.connection_class = _c_packed(pool.connection_class)
    return client


def _where_simple(parts: Any, scheme: str) -> str:
    if scheme == "unix":
        return f"unix:{parts.path}"
    try:
        port = parts.port or 6379
    except ValueError:
        raise ConfigError("invalid port in Redis URL", key="store.url") from None
    host = parts.hostname or "localhost"
    db = parts.path.strip("/") or "0"
    return f"{'tls ' if scheme == 'rediss' else ''}{_hostlist([(host, port)])}/{db}"


def _hostlist(hosts: list[tuple[str, int]]) -> str:
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in hosts)


def _split_netloc(netloc: str, *, default_port: int) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``[user[:password]@]host[:port][,host[:port]...]`` (IPv6 hosts in brackets)."""
    userinfo, _, hostlist = netloc.rpartition("@")
    user: str | None = None
    password: str | None = None
    if userinfo:
        u, sep, pw = userinfo.partition(":")
        user = unquote(u) or None
        password = unquote(pw) if sep else None
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^:\[\]]+)(?::(\d{1,5}))?", item.strip())
        if not m:
            raise ConfigError(f"bad host {item.strip()!r} in Redis URL", key="store.url")
        host = m.group(1) or m.group(3)
        port = int(m.group(2) or m.group(4) or default_port)
        if not 0 < port < 65536:
            raise ConfigError(f"bad port in Redis URL host {host!r}", key="store.url")
        hosts.append((host, port))
    return user, password, hosts
