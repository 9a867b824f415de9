"""The Redis store (architecture.md §5): the only code in aaa-fmip that talks to Redis.

One code path serves a single Redis, Redis Sentinel and Redis Cluster (and the embedded server of
:mod:`aaa_fmip.store.embedded`). Commands that must be atomic touch keys of one hash slot only: every key of
one session (or of one SEND key's CGA) carries the same hash tag ``{...}``. Indexes (SPI, MAC, external id,
key hash) are separate keys in other slots, written and read with non-transactional pipelines and
single-key scripts, never with multi-key scripts or transactions across slots. (Where there are no slots, a
single Redis, Sentinel or the embedded server, one script call may cover several index keys; see
``_index_groups``.)

URLs accepted by :meth:`RedisStore.from_url`::

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

Key names (``P`` = the prefix, default ``fmip``; ``H`` = lowercase hex; TTLs in brackets)::

    P:{H(hmk_name)}:session              session record, JSON; ``hmk`` wrapped       [expires_at - now]
    P:{H(hmk_name)}:revoked              revocation tombstone of a deleted session   [its old expires_at - now]
    P:{H(scope)}:replay:H(ar_id)         replay state: hash {seq, ah = SHA-256 hex}   [check_replay ttl]
    P:{H(scope)}:replay-ars              set of H(ar_id) having replay state          [longest of those]
    P:{H(scope)}:nonce:H(nonce)          SEND nonce seen                              [remember_nonce ttl]
    P:{H(cga 16 octets)}:sendkey         RFC 5269 key record, JSON; ``hk`` wrapped    [expires_at - now]
    P:spi:<decimal SPI>                  sorted set of H(hmk_name)                    [longest member]
    P:mac:<calling station id>           string H(hmk_name) of the latest session     [that session's]
    P:ext:<external id>                  sorted set of H(hmk_name)                    [longest member]
    P:sessions                           sorted set of all H(hmk_name) (for counting) [longest member]
    P:revoked-spi:<decimal SPI>          revocation tombstone of an SPI              [old expires_at - now]
    P:sendkey-hash:H(key_hash)           string H(cga) of the live HK for that key    [the record's]
    P:{audit}:stream                     the audit Redis Stream                       [none]
    P:{audit}:head                       hash (hex) of the last audit entry           [none]

``scope`` is the session's hmk_name (8 octets) or, for SEND keys, the CGA's 16 octets, so replay state shares
the slot of what it protects. Sorted-set index scores are absolute expiry times in Redis server milliseconds
(taken from ``TIME`` inside the scripts), so index reads skip expired members by score, every write to an
index prunes them, and the index key itself expires with its longest-lived member: all by the Redis clock,
like the records' own TTLs. A member whose record is missing is skipped and dropped (compare-and-delete on
its score, so a concurrent re-add survives). The wrapping AAD of a record's key material is its full key
name, so a wrapped key copied under another name fails to unwrap (and renaming the prefix needs a
re-ingest). Records carry the identifiers (user name, MAC, NAS, external ids) in clear JSON.

Audit chain. Each stream entry has the fields ``at`` (Unix seconds as text ``%.6f``), ``event``, ``prev``,
``hash`` and one ``f:<name>`` per caller field (``None`` values are omitted; ints as decimal; bools as
``true``/``false``). ``hash`` = lowercase hex SHA-256 of this canonical encoding, over the texts as stored::

    "aaa-fmip-audit-v1" || 0x00 || item(prev) || item(at) || item(event) || uint32(n)
        || item(name_1) || item(value_1) || ... || item(name_n) || item(value_n)
    item(s) = uint32(len(utf8(s))) || utf8(s);  uint32 = 4 octets, big-endian
    names sorted by their UTF-8 octets (= code point order); n = the number of fields

``prev`` is the previous entry's ``hash`` (64 zeros for the first entry). Appends are a compare-and-set
script on the head key (it appends only if the head is still the ``prev`` the writer chained onto), so the
chain stays linear under concurrent writers; within one process, appends are group-committed (one in flight).
The chain detects an edited, deleted or inserted entry and a truncated tail (head key vs last entry); a writer
able to rewrite the whole stream and the head is detected only by comparing :attr:`AuditCheck.head` with a
copy kept elsewhere.

Errors: every connection, timeout, loading, failover or cluster-down condition becomes
:class:`~aaa_fmip.errors.StoreUnavailable` (naming the host, never credentials); other Redis errors become
:class:`~aaa_fmip.errors.StoreError`; a record whose key material does not unwrap raises
:class:`~aaa_fmip.errors.CryptoError`. Clients use short socket timeouts and at most one immediate retry on a
broken connection (a pooled connection that died with the server), never on a timeout, so calls fail fast
while Redis is down and work again once it returns, without a new store. Scripts run by digest and are
re-sent when a restarted server has forgotten them.

Asyncio. :attr:`RedisStore.aio` offers the operations of the FBU hot path (``find_by_spi``,
``is_revoked``, ``get_send_key_by_cga``, ``check_replay``, ``append_audits``) on an asyncio client of the
same server, with the same keys, scripts, decoding, timeouts and errors, so an event loop can verify FBUs
without a thread hand-off per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
import functools
import hashlib
import hmac
import json
import math
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from ipaddress import IPv6Address
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.exceptions as rx
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import ConfigError, StoreError, StoreNotDurable, StoreUnavailable
from aaa_fmip.store import AuditCheck, AuditEntry, ReplayOutcome, SendKeyRecord, SessionRecord
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
    replicated,
    topology_of,
    wait_replies,
)

__all__ = ["AUDIT_GENESIS", "AsyncRedisOps", "RedisStore", "audit_entry_hash"]

AUDIT_GENESIS: Final = "0" * 64
_AUDIT_DOMAIN: Final = b"aaa-fmip-audit-v1\x00"
_AUDIT_APPEND_ATTEMPTS: Final = 200
_AUDIT_BATCH: Final = 64  # entries committed in one script call at most


@dataclasses.dataclass
class _PendingAudit:
    """An audit entry waiting for the group commit, and what became of it."""

    event: str
    at_text: str
    texts: dict[str, str]
    entry: AuditEntry | None = None
    error: Exception | None = None


_AUDIT_SCAN_LIMIT: Final = 10_000  # entries examined per read_audit call before returning a cursor
_DELETE_ATTEMPTS: Final = 5
_EXTERNAL_ID_LIMIT: Final = 256  # sessions returned per external id (e.g. one user's concurrent sessions)
_RECORD_VERSION: Final = 1
_SEQ_MODULUS: Final = 1 << 16  # the FBU Sequence Number is 16 bits (RFC 5568 §6.2.3)
_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

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

# --- Lua (each script touches keys of one hash slot only, all declared in KEYS) -------------------------

# RFC 1982 serial-number arithmetic on 16 bits (architecture.md §3): newer iff 0 < (s - last) mod 2^16 < 2^15.
# A WAIT pipelined behind this script waits for the replicas to hold what this connection wrote last.
_REPLAY_LUA: Final = """
local last = redis.call('HGET', KEYS[1], 'seq')
if last then
  local d = (tonumber(ARGV[1]) - tonumber(last)) % 65536
  if d == 0 then
    if redis.call('HGET', KEYS[1], 'ah') == ARGV[2] then
      -- ARGV[5] = '1' (WAIT follows): write the state again, so that the WAIT covers it on this connection too
      if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'ah', ARGV[2]) end
      return 'retransmission'
    end
    return 'replay'
  end
  if d >= 32768 then return 'replay' end
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'ah', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 'accepted'
"""

# Compare-and-append for the audit chain: one round trip when this writer's idea of the head is current.
# KEYS[1] = head, KEYS[2] = stream; ARGV[1] = expected head, then per entry: its hash, and its field/value items
# as one JSON array of strings (two arguments per entry rather than one per item: the client encodes far less).
# A missing head is the genesis value. Returns {1, id...} or {0, current head}.
_AUDIT_APPEND_LUA: Final = (
    """
local head = redis.call('GET', KEYS[1]) or '"""
    + "0" * 64
    + """'
if head ~= ARGV[1] then return {0, head} end
local out = {1}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(ARGV[i + 1])))
  head = ARGV[i]
end
redis.call('SET', KEYS[1], head)
return out
"""
)

# Add a member that lives ARGV[2] ms to each sorted-set index in KEYS, scored by expiry (server ms); drop
# expired members; let each key expire with its longest-lived member. One key per call on a Cluster (the
# index keys lie in different slots); all of a session's index keys in one call elsewhere.
_INDEX_ADD_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZADD', KEYS[i], expires, ARGV[1])
  local top = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[i], math.max(1, tonumber(top[2]) - now))
end
return #KEYS
"""

# Members of a sorted-set index whose expiry has not passed, longest-lived first, with their scores.
_INDEX_LIVE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
"""

# The live members of a session index AND their records, in one round trip. The records live in other hash
# slots, so this is used only where there are no slots (a single Redis, Sentinel, the embedded server); a
# Cluster takes two round trips (_INDEX_LIVE_LUA, then a pipeline). ARGV[2]/ARGV[3] frame a session key name
# around a member. Returns member, score, record (false when gone), ...
_INDEX_LIVE_RECORDS_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for i = 1, #m, 2 do
  out[#out + 1] = m[i]
  out[#out + 1] = m[i + 1]
  out[#out + 1] = redis.call('GET', ARGV[2] .. m[i] .. ARGV[3]) or false
end
return out
"""

# Drop an index member whose record is gone, unless it was re-added meanwhile (its score changed).
_INDEX_DROP_LUA: Final = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

_COUNT_LIVE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""

_DEL_IF_EQUAL_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_DEL_SENDKEY_LUA: Final = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['key_hash'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A tombstone never shortens: keep the longer of the existing and the requested lifetime.
_TOMBSTONE_LUA: Final = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""

# KEYS: session, replay-ars, revoked tombstone, replay state keys...; ARGV: value read before, tombstone ms,
# replay key prefix. Returns 1 deleted, 0 the record changed meanwhile, -1 replay state appeared meanwhile.
_DELETE_SESSION_LUA: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local declared = {}
for i = 4, #KEYS do declared[KEYS[i]] = true end
for _, ar in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not declared[ARGV[3] .. ar] then return -1 end
end
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('DEL', KEYS[1], KEYS[2])
local ms = tonumber(ARGV[2])
if ms > 0 and redis.call('PTTL', KEYS[3]) < ms then redis.call('SET', KEYS[3], '1', 'PX', ms) end
return 1
"""


def audit_entry_hash(prev: str, at: str, event: str, fields: Mapping[str, str]) -> str:
    """The chain hash of one audit entry over its stored texts (encoding in the module docstring)."""

    def item(s: str) -> bytes:
        b = s.encode("utf-8")
        return struct.pack(">I", len(b)) + b

    parts = [_AUDIT_DOMAIN, item(prev), item(at), item(event), struct.pack(">I", len(fields))]
    for name in sorted(fields):
        parts += (item(name), item(fields[name]))
    return hashlib.sha256(b"".join(parts)).hexdigest()


@functools.cache
def _sha1(lua: str) -> str:
    return hashlib.sha1(lua.encode(), usedforsecurity=False).hexdigest()


def _ttl_ms(expires_at: float, now: float) -> int:
    return math.ceil((expires_at - now) * 1000)


def _b(value: object) -> bytes | None:
    """A reply expected to be bytes or nil (redis-py's reply types are not narrowed statically)."""
    if value is None or isinstance(value, bytes):
        return value
    raise StoreError(f"unexpected reply type {type(value).__name__} from Redis")


def _audit_texts(event: str, fields: Mapping[str, str | int | None], at: float) -> dict[str, str]:
    """Validate one audit entry; its fields as the text that is hashed and stored (None values left out)."""
    if not event:
        raise ValueError("event must not be empty")
    if not math.isfinite(at):
        raise ValueError("at must be a finite Unix time")
    texts: dict[str, str] = {}
    for name, value in fields.items():
        if not name or "\x00" in name:
            raise ValueError("audit field names must be non-empty")
        if value is None:
            continue
        if isinstance(value, bool):
            texts[name] = "true" if value else "false"
        elif isinstance(value, int):
            texts[name] = str(value)
        elif isinstance(value, str):
            texts[name] = value
        else:
            raise TypeError(f"audit field {name!r} must be str, int or None")
    return texts


def _member_pairs(reply: object) -> list[tuple[bytes, bytes]]:
    """(member, score) pairs of an index script's flat reply."""
    flat = _members(reply)
    return list(zip(flat[0::2], flat[1::2], strict=True))


def _named_members(
    members: list[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, tuple[bytes, bytes]]], list[tuple[bytes, bytes]]]:
    """Index members with the HMK-Name each names, and those that name none (malformed: to be dropped)."""
    named: list[tuple[bytes, tuple[bytes, bytes]]] = []
    stale: list[tuple[bytes, bytes]] = []
    for member in members:
        try:
            named.append((bytes.fromhex(member[0].decode("ascii")), member))
        except (UnicodeDecodeError, ValueError):
            stale.append(member)
    return named, stale


def _pending_audits(entries: Sequence[tuple[str, Mapping[str, str | int | None], float]]) -> list[_PendingAudit]:
    return [_PendingAudit(event, f"{at:.6f}", _audit_texts(event, fields, at)) for event, fields, at in entries]


def _head_text(raw: object) -> str:
    """The audit head as stored (hex text), or the genesis value when there is none yet."""
    value = _b(raw)
    return value.decode("ascii") if value else AUDIT_GENESIS


def _members(value: object) -> list[bytes]:
    if not isinstance(value, list | set | tuple):
        raise StoreError(f"unexpected reply type {type(value).__name__} from Redis")
    return [m for m in value if isinstance(m, bytes)]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MasterNotFoundError):  # its text embeds the sentinel pools' repr: say it plainly
        return "MasterNotFoundError: no sentinel named a reachable master for the service"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def _index_groups(client: object, keys: list[str]) -> list[list[str]]:
    """How index keys go to ``_INDEX_ADD_LUA``: one key per call on a Cluster, where they lie in different hash
    slots; all in one call elsewhere (one script run instead of several: less work on both sides)."""
    return [[k] for k in keys] if isinstance(client, RedisCluster) else [keys]


class RedisStore:
    """Sessions, SEND keys, replay state, nonces and the audit chain in Redis (see the module docstring)."""

    # Set by from_url(replay_policy=...): replay checks then require a durable store (aaa_fmip.store.durability).
    durability: DurabilityMonitor | None = None

    def __init__(
        self,
        connect: Callable[[], Any],
        kek: KekRing,
        *,
        prefix: str = "fmip",
        where: str = "redis",
        on_close: Callable[[], None] | None = None,
        aconnect: Callable[[], Any] | None = None,
    ) -> None:
        """Prefer :meth:`from_url`. ``connect`` builds the redis-py client (``Redis`` or ``RedisCluster``);
        it is called on first use and again after a failed cluster bootstrap. ``aconnect`` builds an asyncio
        client of the same server (called once per event loop); without it :attr:`aio` is None."""
        if not _PREFIX.fullmatch(prefix):
            raise ConfigError("must be 1-64 characters of [A-Za-z0-9_.:-] (no braces)", key="store.prefix")
        self._connect = connect
        self._kek = kek
        self._p = prefix
        self._where = where
        self._on_close = on_close
        self._lock = threading.Lock()
        self._audit_head_hint: str | None = None  # last head this process wrote; a stale hint costs a retry
        self._audit_lock = threading.Lock()
        self._audit_pending_lock = threading.Lock()
        self._audit_pending: list[_PendingAudit] = []
        self._client: Any = None
        self._aio = AsyncRedisOps(self, aconnect) if aconnect is not None else None

    # --- construction ------------------------------------------------------------------------------------

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
        """A store for ``url`` (forms in the module docstring); ``kw`` goes to the redis-py client.

        Socket connect and read timeouts default to ``socket_timeout``; a broken pooled connection is retried
        once, immediately; nothing else is retried, so an outage surfaces as ``StoreUnavailable`` quickly.

        With ``replay_policy``, :meth:`check_replay` verifies first that the server would not lose replay state
        (checked on the first call, after every new connection, and by :meth:`check_durability`) and raises
        :class:`StoreNotDurable` otherwise, unless the policy accepts volatile state; with
        ``replay_policy.wait_replicas`` an accepted update waits for that many replicas (``WAIT``).
        """
        store = cls._from_url(url, kek, prefix=prefix, socket_timeout=socket_timeout, replay_policy=replay_policy, **kw)
        if replay_policy is not None and replay_policy.wait_replicas:
            wait_s = replay_policy.wait_timeout_ms / 1000
            if wait_s >= socket_timeout:
                store.close()
                raise ConfigError(
                    f"must be shorter than the store timeout ({socket_timeout * 1000:g} ms): a WAIT blocks the read",
                    key="store.replay_wait_timeout_ms",
                )
        return store

    @classmethod
    def _from_url(
        cls,
        url: str,
        kek: KekRing,
        *,
        prefix: str,
        socket_timeout: float,
        replay_policy: ReplayDurabilityPolicy | None,
        **kw: Any,
    ) -> RedisStore:
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
        monitor = None if replay_policy is None else DurabilityMonitor(replay_policy, topology_of(scheme))
        # Every new connection may reach a restarted or failed-over server: the monitor re-checks after one.
        sync_hook: dict[str, Any] = {} if monitor is None else {"redis_connect_func": connect_hook(monitor)}
        async_hook: dict[str, Any] = {} if monitor is None else {"redis_connect_func": aconnect_hook(monitor)}

        def attach(store: RedisStore) -> RedisStore:
            store.durability = monitor
            return store

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
                return redis.asyncio.Redis.from_url(url, retry=aretry(), **opts, **async_hook)

            return attach(
                cls(lambda: client, kek, prefix=prefix, where=where, on_close=client.close, aconnect=aconnect)
            )

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
                return asentinel.master_for(service, **{**master_kwargs, "retry": aretry()}, **async_hook)

            return attach(
                cls(
                    lambda: master, kek, prefix=prefix, where=where, on_close=close_sentinel, aconnect=aconnect_sentinel
                )
            )

        if scheme in ("redis+cluster", "rediss+cluster"):
            user, password, hosts = _split_netloc(parts.netloc, default_port=6379)
            if parts.path not in ("", "/", "/0") or parts.query:
                raise ConfigError("cluster URL takes no database, path or options", key="store.url")
            where = f"cluster {_hostlist(hosts)}"
            if scheme.startswith("rediss"):
                opts["ssl"] = True
            opts.setdefault("require_full_coverage", False)

            # redis-py's cluster client runs a connect function of ours after its own (sync client only)
            cluster_hook: dict[str, Any] = (
                {} if monitor is None else {"redis_connect_func": cluster_connect_hook(monitor)}
            )

            def connect_cluster() -> RedisCluster:
                return RedisCluster(
                    startup_nodes=[cast(Any, ClusterNode)(h, p) for h, p in hosts],
                    username=user,
                    password=password,
                    retry=retry(),
                    **opts,
                    **cluster_hook,
                )

            def aconnect_cluster() -> Any:
                return redis.asyncio.cluster.RedisCluster(
                    startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in hosts],
                    username=user,
                    password=password,
                    retry=aretry(),
                    **opts,
                )

            return attach(cls(connect_cluster, kek, prefix=prefix, where=where, aconnect=aconnect_cluster))

        raise ConfigError(
            f"unsupported URL scheme {scheme!r} (use redis, rediss, unix, redis+sentinel or redis+cluster)",
            key="store.url",
        )

    # --- plumbing ----------------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """Where the store points, for messages: host and port (or socket path), never credentials."""
        return self._where

    @property
    def prefix(self) -> str:
        return self._p

    @property
    def aio(self) -> AsyncRedisOps | None:
        """The FBU hot path on an asyncio client of the same server(s) (see the module docstring)."""
        return self._aio

    @contextmanager
    def _io(self, what: str) -> Iterator[None]:
        try:
            yield
        except (rx.ConnectionError, rx.TimeoutError, rx.ClusterDownError, rx.TryAgainError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {self._where} is unavailable ({what}): {_describe(exc)}") from exc
        except rx.RedisClusterException as exc:  # bootstrap failed, slot not covered...
            raise StoreUnavailable(f"Redis at {self._where} is unavailable ({what}): {_describe(exc)}") from exc
        except rx.ResponseError as exc:
            if str(exc).startswith(_UNAVAILABLE_REPLIES) or isinstance(exc, rx.ReadOnlyError):
                raise StoreUnavailable(f"Redis at {self._where} cannot serve ({what}): {_describe(exc)}") from exc
            raise StoreError(f"Redis at {self._where} refused {what}: {_describe(exc)}") from exc
        except rx.RedisError as exc:
            raise StoreError(f"Redis at {self._where} failed ({what}): {_describe(exc)}") from exc

    def _r(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
        return client

    def _pipe(self) -> Any:
        return self._r().pipeline(transaction=False)

    def _script(self, lua: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> object:
        """Run ``lua`` by digest, loading it when the server does not know it (e.g. after a restart)."""
        client = self._r()
        try:
            return cast(object, client.evalsha(_sha1(lua), len(keys), *keys, *args))
        except rx.NoScriptError:
            return cast(object, client.eval(lua, len(keys), *keys, *args))

    @staticmethod
    def _queue_script(pipe: Any, lua: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> None:
        # EVAL (not EVALSHA) inside pipelines: nothing to recover from after a server restart. Through
        # execute_command because redis-py's cluster pipeline has no eval(); it still routes EVAL by its keys.
        pipe.execute_command("EVAL", lua, len(keys), *keys, *args)

    # key names
    def _session_key(self, hmk_name: bytes) -> str:
        return f"{self._p}:{{{hmk_name.hex()}}}:session"

    def _session_tomb_key(self, hmk_name: bytes) -> str:
        return f"{self._p}:{{{hmk_name.hex()}}}:revoked"

    def _replay_prefix(self, scope: bytes) -> str:
        return f"{self._p}:{{{scope.hex()}}}:replay:"

    def _replay_ars_key(self, scope: bytes) -> str:
        return f"{self._p}:{{{scope.hex()}}}:replay-ars"

    def _spi_key(self, spi: int) -> str:
        return f"{self._p}:spi:{spi}"

    def _spi_tomb_key(self, spi: int) -> str:
        return f"{self._p}:revoked-spi:{spi}"

    def _mac_key(self, mac: str) -> str:
        return f"{self._p}:mac:{mac}"

    def _ext_key(self, external_id: str) -> str:
        return f"{self._p}:ext:{external_id}"

    def _sessions_key(self) -> str:
        return f"{self._p}:sessions"

    def _sendkey_key(self, cga: IPv6Address) -> str:
        return f"{self._p}:{{{cga.packed.hex()}}}:sendkey"

    def _sendkey_hash_key(self, key_hash: bytes) -> str:
        return f"{self._p}:sendkey-hash:{key_hash.hex()}"

    def _sendkey_lock_key(self, key_hash: bytes) -> str:
        return f"{self._p}:sendkey-lock:{key_hash.hex()}"

    def _nonce_key(self, scope: bytes, nonce: bytes) -> str:
        return f"{self._p}:{{{scope.hex()}}}:nonce:{nonce.hex()}"

    def _audit_stream_key(self) -> str:
        return f"{self._p}:{{audit}}:stream"

    def _audit_head_key(self) -> str:
        return f"{self._p}:{{audit}}:head"

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

    def close(self) -> None:
        """Release the connections. Idempotent."""
        client, self._client = self._client, None
        try:
            if self._on_close is not None:
                self._on_close()
            elif client is not None:
                client.close()
        except (rx.RedisError, rx.RedisClusterException, OSError):
            pass

    # --- sessions ----------------------------------------------------------------------------------------

    def _encode_session(self, rec: SessionRecord, key: str) -> bytes:
        doc = {
            "v": _RECORD_VERSION,
            "spi": rec.spi,
            "user_name": rec.user_name,
            "kind": rec.kind,
            "created_at": rec.created_at,
            "expires_at": rec.expires_at,
            "calling_station_id": rec.calling_station_id,
            "nas_identifier": rec.nas_identifier,
            "external_ids": list(rec.external_ids),
            "hmk": base64.b64encode(self._kek.wrap(rec.hmk.reveal(), key.encode())).decode("ascii"),
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def _decode_session(self, hmk_name: bytes, raw: bytes) -> SessionRecord:
        key = self._session_key(hmk_name)
        try:
            doc = json.loads(raw)
            if doc.get("v") != _RECORD_VERSION:
                raise ValueError("version")
            blob = base64.b64decode(doc["hmk"], validate=True)
            kind = str(doc["kind"])
            if kind not in ("eap", "dsrk"):
                raise ValueError("kind")
            spi = int(doc["spi"])
            user_name = str(doc["user_name"])
            created_at, expires_at = float(doc["created_at"]), float(doc["expires_at"])
            calling_station_id = _opt_str(doc.get("calling_station_id"))
            nas_identifier = _opt_str(doc.get("nas_identifier"))
            external_ids = tuple(str(x) for x in doc.get("external_ids", ()))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise StoreError(f"session record {key} is malformed") from None
        hmk = self._kek.unwrap(blob, key.encode())  # CryptoError names the KEK id, never key bytes
        return SessionRecord(
            hmk_name=hmk_name,
            spi=spi,
            hmk=hmk,
            user_name=user_name,
            kind=cast(Literal["eap", "dsrk"], kind),
            created_at=created_at,
            expires_at=expires_at,
            calling_station_id=calling_station_id,
            nas_identifier=nas_identifier,
            external_ids=external_ids,
        )

    def put_session(self, rec: SessionRecord, *, now: float) -> None:
        """Store (or replace) a session: HMK wrapped, TTL = ``expires_at - now``, with its indexes."""
        _check_name(rec.hmk_name)
        if not 0 < rec.spi < 1 << 32:
            raise ValueError("SPI must be 1..2^32-1 (0 is reserved for RFC 5269 keys)")
        ttl = _ttl_ms(rec.expires_at, now)
        if ttl <= 0:
            raise ValueError("session already expired (expires_at <= now)")
        key = self._session_key(rec.hmk_name)
        value = self._encode_session(rec, key)
        member = rec.hmk_name.hex()
        indexes = [self._spi_key(rec.spi), *(self._ext_key(e) for e in dict.fromkeys(rec.external_ids))]
        indexes.append(self._sessions_key())
        with self._io("put_session"):
            client = self._r()
            pipe = client.pipeline(transaction=False)
            pipe.set(key, value, px=ttl, get=True)
            if rec.calling_station_id:
                pipe.set(self._mac_key(rec.calling_station_id), member, px=ttl)
            for group in _index_groups(client, indexes):
                self._queue_script(pipe, _INDEX_ADD_LUA, group, [member, ttl])
            old_raw = _b(pipe.execute()[0])
        if old_raw is not None:
            self._drop_stale_indexes(old_raw, rec)

    def _drop_stale_indexes(self, old_raw: bytes, new: SessionRecord) -> None:
        """A replaced record may have been indexed under names the new one no longer has."""
        try:
            old = json.loads(old_raw)
            old_spi = int(old["spi"])
            old_mac = _opt_str(old.get("calling_station_id"))
            old_ext = {str(x) for x in old.get("external_ids", ())}
        except (ValueError, KeyError, TypeError):
            return
        member = new.hmk_name.hex()
        with self._io("put_session"):
            pipe = self._pipe()
            if old_spi != new.spi:
                pipe.zrem(self._spi_key(old_spi), member)
            if old_mac and old_mac != new.calling_station_id:
                self._queue_script(pipe, _DEL_IF_EQUAL_LUA, [self._mac_key(old_mac)], [member])
            for ext in old_ext - set(new.external_ids):
                pipe.zrem(self._ext_key(ext), member)
            if len(pipe):
                pipe.execute()

    def get_session(self, hmk_name: bytes) -> SessionRecord | None:
        _check_name(hmk_name)
        with self._io("get_session"):
            raw = _b(self._r().get(self._session_key(hmk_name)))
        return None if raw is None else self._decode_session(hmk_name, raw)

    def _live_members(self, index_key: str, limit: int, *, what: str) -> list[tuple[bytes, bytes]]:
        with self._io(what):
            return _member_pairs(self._script(_INDEX_LIVE_LUA, [index_key], [limit]))

    def _fetch_sessions(self, index_key: str, members: list[tuple[bytes, bytes]], *, what: str) -> list[SessionRecord]:
        """The records behind index members in one pipelined round trip; members whose record is gone are
        skipped and dropped from the index (unless re-added meanwhile)."""
        named, stale = _named_members(members)
        with self._io(what):
            pipe = self._pipe()
            for name, _ in named:
                pipe.get(self._session_key(name))
            raws = [_b(r) for r in pipe.execute()] if named else []
        records, gone = self._records_of(named, raws)
        stale += gone
        if stale:
            with self._io(what):
                pipe = self._pipe()
                for member, score in stale:
                    self._queue_script(pipe, _INDEX_DROP_LUA, [index_key], [member, score])
                pipe.execute()
        return records

    def _records_of(
        self, named: list[tuple[bytes, tuple[bytes, bytes]]], raws: list[bytes | None]
    ) -> tuple[list[SessionRecord], list[tuple[bytes, bytes]]]:
        """The records fetched for ``named`` index members, and the members whose record is gone."""
        pairs = list(zip(named, raws, strict=True))
        records = [self._decode_session(name, raw) for (name, _), raw in pairs if raw is not None]
        return records, [member for (_, member), raw in pairs if raw is None]

    def find_by_spi(self, spi: int, *, limit: int = 8) -> list[SessionRecord]:
        """Live sessions with this SPI (collisions are possible), longest-lived first, at most ``limit``.

        One round trip (the index and the records in one script); on a Cluster, where the records live in other
        hash slots, two: the live members of the SPI index, then one pipeline fetching their records.
        """
        if limit <= 0:
            return []
        key = self._spi_key(spi)
        client = self._r()
        if isinstance(client, RedisCluster):
            members = self._live_members(key, limit, what="find_by_spi")
            records = self._fetch_sessions(key, members, what="find_by_spi") if members else []
        else:
            records = self._live_records(key, limit, what="find_by_spi")
        return [r for r in records if r.spi == spi]

    def _live_records_call(self, index_key: str, limit: int) -> tuple[str, list[str], list[str | int | bytes]]:
        """The script, keys and arguments of :meth:`_live_records` (shared with :class:`AsyncRedisOps`)."""
        # the frame of _session_key around a member (its hex HMK-Name)
        session_prefix, session_suffix = f"{self._p}:{{", "}:session"
        return _INDEX_LIVE_RECORDS_LUA, [index_key], [limit, session_prefix, session_suffix]

    def _parse_live_records(self, reply: object, *, what: str) -> tuple[list[SessionRecord], list[tuple[bytes, bytes]]]:
        """The records of a :meth:`_live_records_call` reply, and the index members whose record is gone."""
        if not isinstance(reply, list) or len(reply) % 3:
            raise StoreError(f"unexpected reply from Redis at {self._where} for {what}")
        flat = [_b(x) for x in reply]
        records: list[SessionRecord] = []
        stale: list[tuple[bytes, bytes]] = []
        for member, score, raw in zip(flat[0::3], flat[1::3], flat[2::3], strict=True):
            if member is None or score is None:
                continue
            try:
                name = bytes.fromhex(member.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                stale.append((member, score))
                continue
            if raw is None:
                stale.append((member, score))
                continue
            records.append(self._decode_session(name, raw))
        return records, stale

    def _live_records(self, index_key: str, limit: int, *, what: str) -> list[SessionRecord]:
        """:meth:`_live_members` and :meth:`_fetch_sessions` in one round trip (not on a Cluster)."""
        with self._io(what):
            reply = self._script(*self._live_records_call(index_key, limit))
        records, stale = self._parse_live_records(reply, what=what)
        if stale:
            with self._io(what):
                pipe = self._pipe()
                for gone, gone_score in stale:
                    self._queue_script(pipe, _INDEX_DROP_LUA, [index_key], [gone, gone_score])
                pipe.execute()
        return records

    def find_by_calling_station(self, mac: str) -> SessionRecord | None:
        """The latest live session of this calling station (MAC, as normalised by the caller)."""
        with self._io("find_by_calling_station"):
            member = _b(self._r().get(self._mac_key(mac)))
        if member is None:
            return None
        try:
            name = bytes.fromhex(member.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None
        rec = self.get_session(name)
        return rec if rec is not None and rec.calling_station_id == mac else None

    def find_by_external_id(self, external_id: str) -> list[SessionRecord]:
        """Live sessions carrying this external id, longest-lived first (at most 256)."""
        key = self._ext_key(external_id)
        members = self._live_members(key, _EXTERNAL_ID_LIMIT, what="find_by_external_id")
        if not members:
            return []
        recs = self._fetch_sessions(key, members, what="find_by_external_id")
        return [r for r in recs if external_id in r.external_ids]

    def delete_session(self, hmk_name: bytes, *, now: float) -> SessionRecord | None:
        """Remove a session, its index entries and replay state; leave revocation tombstones for its SPI and
        hmk_name until its old ``expires_at``. Returns the removed record, or None if there was none."""
        _check_name(hmk_name)
        key = self._session_key(hmk_name)
        ars_key = self._replay_ars_key(hmk_name)
        replay_prefix = self._replay_prefix(hmk_name)
        for _ in range(_DELETE_ATTEMPTS):
            with self._io("delete_session"):
                pipe = self._pipe()
                pipe.get(key)
                pipe.smembers(ars_key)
                raw_reply, ars_reply = pipe.execute()
            raw = _b(raw_reply)
            if raw is None:
                return None
            rec = self._decode_session(hmk_name, raw)
            tomb_ms = max(0, _ttl_ms(rec.expires_at, now))
            replay_keys = [replay_prefix + m.decode("ascii", "replace") for m in _members(ars_reply)]
            with self._io("delete_session"):
                done = self._script(
                    _DELETE_SESSION_LUA,
                    [key, ars_key, self._session_tomb_key(hmk_name), *replay_keys],
                    [raw, tomb_ms, replay_prefix],
                )
            if done == 1:
                break
        else:
            raise StoreError(f"session {hmk_name.hex()} kept changing while being deleted")
        member = hmk_name.hex()
        with self._io("delete_session"):
            pipe = self._pipe()
            pipe.zrem(self._spi_key(rec.spi), member)
            pipe.zrem(self._sessions_key(), member)
            for ext in dict.fromkeys(rec.external_ids):
                pipe.zrem(self._ext_key(ext), member)
            if rec.calling_station_id:
                self._queue_script(pipe, _DEL_IF_EQUAL_LUA, [self._mac_key(rec.calling_station_id)], [member])
            if tomb_ms > 0:
                self._queue_script(pipe, _TOMBSTONE_LUA, [self._spi_tomb_key(rec.spi)], [tomb_ms])
            pipe.execute()
        return rec

    def is_revoked(self, *, spi: int | None = None, hmk_name: bytes | None = None) -> bool:
        """True if a session with this SPI or this hmk_name was deleted and would still be live."""
        with self._io("is_revoked"):
            pipe = self._pipe()
            for key in self._tomb_keys(spi, hmk_name):
                pipe.exists(key)
            return any(int(n) for n in pipe.execute())

    def _tomb_keys(self, spi: int | None, hmk_name: bytes | None) -> list[str]:
        if spi is None and hmk_name is None:
            raise ValueError("give spi or hmk_name")
        keys = [] if spi is None else [self._spi_tomb_key(spi)]
        return keys if hmk_name is None else [*keys, self._session_tomb_key(hmk_name)]

    def count_live_sessions(self) -> int:
        """Sessions whose TTL has not run out (by the Redis server's clock)."""
        with self._io("count_live_sessions"):
            return int(cast(int, self._script(_COUNT_LIVE_LUA, [self._sessions_key()], [])))

    # --- replay ------------------------------------------------------------------------------------------

    def check_replay(
        self, scope: bytes, ar_id: bytes, sequence: int, authenticator: bytes, *, ttl: int
    ) -> ReplayOutcome:
        """Atomically check and record an FBU Sequence Number for (scope, AR) (architecture.md §3).

        Newer than the last accepted (serial arithmetic mod 2^16, window 2^15) or no state: "accepted" and
        recorded with the SHA-256 of the authenticator; same number and same authenticator:
        "retransmission"; anything else: "replay". State lives ``ttl`` seconds after the last acceptance.

        With a replay policy (:meth:`from_url`): raises :class:`StoreNotDurable` on a store that would lose this
        state, also when the connection was renewed during the call and the server now behind it would; with
        ``wait_replicas``, raises :class:`ReplayNotReplicated` unless that many replicas acknowledged the
        update within ``wait_timeout_ms`` (``WAIT`` pipelined right behind the script: no extra round trip).
        """
        monitor = self.durability
        if monitor is None:
            with self._io("check_replay"):
                out = self._script(*self._replay_call(scope, ar_id, sequence, authenticator, ttl=ttl))
            return self._parse_replay(out)
        self._replay_gate(monitor)
        wait = monitor.policy.wait_replicas
        call = self._replay_call(scope, ar_id, sequence, authenticator, ttl=ttl, rewrite=bool(wait))
        seen = monitor.connections
        acks: int | None = None
        try:
            with self._io("check_replay"):
                if wait:
                    out, acks = self._script_and_wait(*call, policy=monitor.policy)
                else:
                    out = self._script(*call)
        except StoreUnavailable:
            monitor.note_connection()  # whatever answers next is examined before it is trusted
            raise
        outcome = self._parse_replay(out)
        if monitor.connections != seen:  # reconnected meanwhile: a restarted or another server answered
            self._replay_gate(monitor)
        replicated(outcome, acks, wait)
        return outcome

    def _script_and_wait(
        self, lua: str, keys: Sequence[str], args: Sequence[str | int | bytes], *, policy: ReplayDurabilityPolicy
    ) -> tuple[object, int]:
        """The script, then ``WAIT`` on the same connection in one round trip; (script reply, replicas acked)."""
        client = self._r()
        if isinstance(client, RedisCluster):  # WAIT has no key: send both to the key's node, on one connection
            client = client.get_redis_connection(cast(Any, client).get_node_from_key(keys[0]))
        for command in ("EVALSHA", "EVAL"):
            pipe = client.pipeline(transaction=False)
            pipe.execute_command(command, _sha1(lua) if command == "EVALSHA" else lua, len(keys), *keys, *args)
            pipe.execute_command("WAIT", policy.wait_replicas, policy.wait_timeout_ms)
            replies = pipe.execute(raise_on_error=False)
            if isinstance(replies[0], rx.NoScriptError):
                continue
            return wait_replies(replies)
        raise StoreError(f"Redis at {self._where} did not load the replay script")

    def _replay_call(
        self, scope: bytes, ar_id: bytes, sequence: int, authenticator: bytes, *, ttl: int, rewrite: bool = False
    ) -> tuple[str, list[str], list[str | int | bytes]]:
        _check_name(scope, what="scope")
        if not ar_id:
            raise ValueError("ar_id must not be empty")
        if not 0 <= sequence < _SEQ_MODULUS:
            raise ValueError("sequence must be a 16-bit unsigned integer")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        ah = hashlib.sha256(authenticator).hexdigest()
        keys = [self._replay_prefix(scope) + ar_id.hex(), self._replay_ars_key(scope)]
        return _REPLAY_LUA, keys, [sequence, ah, ttl * 1000, ar_id.hex(), 1 if rewrite else 0]

    def _parse_replay(self, out: object) -> ReplayOutcome:
        if out in (b"accepted", b"retransmission", b"replay"):
            return cast(ReplayOutcome, out.decode())
        raise StoreError(f"unexpected replay-check reply from Redis at {self._where}")

    def remember_nonce(self, scope: bytes, nonce: bytes, *, ttl: int) -> bool:
        """True the first time (scope, nonce) is seen within ``ttl`` seconds, False afterwards (SEND replay)."""
        _check_name(scope, what="scope")
        if not nonce:
            raise ValueError("nonce must not be empty")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        with self._io("remember_nonce"):
            return bool(self._r().set(self._nonce_key(scope, nonce), b"1", nx=True, ex=ttl))

    # --- RFC 5269 keys -----------------------------------------------------------------------------------

    def lock_send_key(self, key_hash: bytes, *, ttl: float) -> str | None:
        """Claim the right to create the HK of one CGA public key for ``ttl`` seconds (SET NX).

        Returns a token for :meth:`unlock_send_key`, or None when another request holds the claim.
        """
        token = secrets.token_hex(8)
        with self._io("lock_send_key"):
            got = self._r().set(self._sendkey_lock_key(key_hash), token, nx=True, px=max(1, int(ttl * 1000)))
        return token if got else None

    def unlock_send_key(self, key_hash: bytes, token: str) -> None:
        """Release a claim made by :meth:`lock_send_key` (only if it is still ours)."""
        with self._io("unlock_send_key"):
            self._script(_DEL_IF_EQUAL_LUA, [self._sendkey_lock_key(key_hash)], [token])

    def _encode_send_key(self, rec: SendKeyRecord, key: str) -> bytes:
        doc = {
            "v": _RECORD_VERSION,
            "key_hash": rec.key_hash.hex(),
            "created_at": rec.created_at,
            "expires_at": rec.expires_at,
            "hk": base64.b64encode(self._kek.wrap(rec.hk.reveal(), key.encode())).decode("ascii"),
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def _decode_send_key(self, cga: IPv6Address, raw: bytes) -> SendKeyRecord:
        key = self._sendkey_key(cga)
        try:
            doc = json.loads(raw)
            if doc.get("v") != _RECORD_VERSION:
                raise ValueError("version")
            blob = base64.b64decode(doc["hk"], validate=True)
            key_hash = bytes.fromhex(doc["key_hash"])
            created_at, expires_at = float(doc["created_at"]), float(doc["expires_at"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise StoreError(f"SEND key record {key} is malformed") from None
        hk = self._kek.unwrap(blob, key.encode())
        return SendKeyRecord(cga=cga, key_hash=key_hash, hk=hk, created_at=created_at, expires_at=expires_at)

    def put_send_key(self, rec: SendKeyRecord, *, now: float) -> None:
        """Store the HK of a CGA (wrapped, TTL = ``expires_at - now``), indexed by CGA and by key hash.

        One live HK per CGA public key: an HK stored earlier for the same key hash under another CGA is
        removed.
        """
        if not rec.key_hash:
            raise ValueError("key_hash must not be empty")
        ttl = _ttl_ms(rec.expires_at, now)
        if ttl <= 0:
            raise ValueError("SEND key already expired (expires_at <= now)")
        key = self._sendkey_key(rec.cga)
        hash_key = self._sendkey_hash_key(rec.key_hash)
        cga_hex = rec.cga.packed.hex()
        value = self._encode_send_key(rec, key)
        with self._io("put_send_key"):
            pipe = self._pipe()
            pipe.set(key, value, px=ttl, get=True)
            pipe.set(hash_key, cga_hex, px=ttl, get=True)
            old_rec_raw, old_cga = (_b(x) for x in pipe.execute())
            pipe = self._pipe()
            if old_cga is not None and old_cga != cga_hex.encode():
                try:
                    other = IPv6Address(bytes.fromhex(old_cga.decode("ascii")))
                except (UnicodeDecodeError, ValueError):
                    other = None
                if other is not None:
                    self._queue_script(pipe, _DEL_SENDKEY_LUA, [self._sendkey_key(other)], [rec.key_hash.hex()])
            if old_rec_raw is not None:
                try:
                    old_hash = bytes.fromhex(json.loads(old_rec_raw)["key_hash"])
                except (ValueError, KeyError, TypeError):
                    old_hash = rec.key_hash
                if old_hash != rec.key_hash:
                    self._queue_script(pipe, _DEL_IF_EQUAL_LUA, [self._sendkey_hash_key(old_hash)], [cga_hex])
            if len(pipe):
                pipe.execute()

    def get_send_key_by_cga(self, cga: IPv6Address) -> SendKeyRecord | None:
        with self._io("get_send_key_by_cga"):
            raw = _b(self._r().get(self._sendkey_key(cga)))
        return None if raw is None else self._decode_send_key(cga, raw)

    def get_send_key_by_key_hash(self, key_hash: bytes) -> SendKeyRecord | None:
        with self._io("get_send_key_by_key_hash"):
            cga_hex = _b(self._r().get(self._sendkey_hash_key(key_hash)))
        if cga_hex is None:
            return None
        try:
            cga = IPv6Address(bytes.fromhex(cga_hex.decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            return None
        rec = self.get_send_key_by_cga(cga)
        return rec if rec is not None and rec.key_hash == key_hash else None

    # --- audit -------------------------------------------------------------------------------------------

    def append_audit(self, event: str, fields: Mapping[str, str | int | None], *, at: float) -> AuditEntry:
        """Append one entry to the hash chain (see the module docstring); serialised across writers."""
        return self.append_audits([(event, fields, at)])[0]

    def append_audits(self, entries: Sequence[tuple[str, Mapping[str, str | int | None], float]]) -> list[AuditEntry]:
        """Append ``(event, fields, at)`` entries, consecutive in the chain, in one round trip when possible."""
        items = _pending_audits(entries)
        if not items:
            return []
        with self._audit_pending_lock:
            self._audit_pending.extend(items)
        # Group commit: one append in flight per store object. Whoever holds the lock commits every entry queued
        # so far in one round trip; the others find theirs done when they get the lock. A process's own threads
        # thus never race each other for the chain head; the script orders writers in other processes.
        last = items[-1]
        with self._audit_lock:
            while last.entry is None and last.error is None:
                with self._audit_pending_lock:
                    batch = self._audit_pending[:_AUDIT_BATCH]
                    del self._audit_pending[:_AUDIT_BATCH]
                try:
                    self._commit_audit(batch)
                except Exception as exc:  # every entry of the batch failed with it (StoreUnavailable, ...)
                    for pending in batch:
                        pending.error = exc
        for item in items:
            if item.error is not None:
                raise item.error
        return [item.entry for item in items if item.entry is not None]

    def _commit_audit(self, batch: list[_PendingAudit]) -> None:
        """Append ``batch`` to the chain in one script call, retrying on the head another writer left."""
        prev = self._audit_head_hint
        if prev is None:
            with self._io("append_audit"):
                prev = _head_text(self._r().get(self._audit_head_key()))
        for _ in range(_AUDIT_APPEND_ATTEMPTS):
            args, chained = self._audit_append_args(batch, prev)
            with self._io("append_audit"):
                result = self._script(_AUDIT_APPEND_LUA, [self._audit_head_key(), self._audit_stream_key()], args)
            moved_to = self._apply_audit_append(batch, chained, result)
            if moved_to is None:
                return
            prev = moved_to
        raise StoreError(f"audit append at {self._where} lost {_AUDIT_APPEND_ATTEMPTS} races in a row; try again")

    @staticmethod
    def _audit_append_args(batch: list[_PendingAudit], prev: str) -> tuple[list[str], list[tuple[str, str]]]:
        """The script arguments chaining ``batch`` onto ``prev``, and each entry's (prev, hash)."""
        args: list[str] = [prev]
        chained: list[tuple[str, str]] = []
        link = prev
        for it in batch:
            digest = audit_entry_hash(link, it.at_text, it.event, it.texts)
            flat = ["at", it.at_text, "event", it.event, "prev", link, "hash", digest]
            for k, v in it.texts.items():
                flat += (f"f:{k}", v)
            # UTF-8 as is (cjson passes it through); control characters are escaped and decoded back.
            args += [digest, json.dumps(flat, ensure_ascii=False, separators=(",", ":"))]
            chained.append((link, digest))
            link = digest
        return args, chained

    def _apply_audit_append(
        self, batch: list[_PendingAudit], chained: list[tuple[str, str]], result: object
    ) -> str | None:
        """Record the outcome of an append script: None when appended, else the head another writer left."""
        if not isinstance(result, list) or not result:
            raise StoreError(f"unexpected audit-append reply from Redis at {self._where}")
        texts_out = [v.decode("ascii") if isinstance(v, bytes) else str(v) for v in result[1:]]
        if result[0] == 1:
            for it, entry_id, (entry_prev, digest) in zip(batch, texts_out, chained, strict=True):
                it.entry = AuditEntry(
                    id=entry_id, at=float(it.at_text), event=it.event, fields=it.texts, prev=entry_prev, hash=digest
                )
            self._audit_head_hint = chained[-1][1]
            return None
        # Another writer moved the head: chain onto the head the script returned, at once.
        self._audit_head_hint = None
        return texts_out[0]

    @staticmethod
    def _parse_audit(entry_id: bytes, raw: Mapping[bytes, bytes]) -> tuple[AuditEntry, str] | None:
        """The entry and its ``at`` text as stored (the hash covers the text), or None if malformed."""
        try:
            d = {k.decode("utf-8"): v.decode("utf-8") for k, v in raw.items()}
            fields = {k[2:]: v for k, v in d.items() if k.startswith("f:")}
            entry = AuditEntry(
                id=entry_id.decode("ascii"),
                at=float(d["at"]),
                event=d["event"],
                fields=fields,
                prev=d["prev"],
                hash=d["hash"],
            )
        except (KeyError, ValueError, UnicodeDecodeError):
            return None
        return entry, d["at"]

    def _xrange(self, start: str, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        with self._io("read audit"):
            return cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                self._r().xrange(self._audit_stream_key(), min=start, max="+", count=count),
            )

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
        """Audit entries in append order matching every given filter (``since <= at < until``; ``spi`` and
        ``ar`` match the fields of those names), at most ``limit``; returns them and the cursor to continue
        with, or None at the end of the stream. A call examines at most 10 000 entries, so a selective filter
        can return fewer than ``limit`` entries (even none) together with a cursor."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        if cursor is not None and not _STREAM_ID.fullmatch(cursor):
            raise ValueError("invalid audit cursor")
        spi_text = None if spi is None else str(spi)
        out: list[AuditEntry] = []
        start = "-" if cursor is None else f"({cursor}"
        scanned = 0
        batch = min(max(limit, 100), 1000)
        while True:
            rows = self._xrange(start, batch)
            for i, (eid, raw) in enumerate(rows):
                scanned += 1
                parsed = self._parse_audit(eid, raw)
                last = eid.decode("ascii")
                if parsed is not None and _audit_matches(parsed[0], since, until, event, spi_text, ar):
                    out.append(parsed[0])
                    if len(out) == limit:
                        at_end = len(rows) < batch and i == len(rows) - 1
                        return out, None if at_end else last
                if scanned >= _AUDIT_SCAN_LIMIT:
                    at_end = len(rows) < batch and i == len(rows) - 1
                    return out, None if at_end else last
            if len(rows) < batch:
                return out, None
            start = f"({last}"

    def verify_audit(self) -> AuditCheck:
        """Recompute the whole chain. ``first_bad_id`` is the first entry whose ``prev`` or ``hash`` does not
        match (an edit shows at the entry, a deletion or insertion at the entry after it); when every entry
        matches but the head key does not, the tail was cut and ``first_bad_id`` is the last entry's id
        (None if the stream is empty). ``entries`` counts every entry; ``head`` is the stored hash of the
        last entry (64 zeros if none)."""
        expected = AUDIT_GENESIS
        count = 0
        first_bad: str | None = None
        last_id: str | None = None
        while True:
            rows = self._xrange("-" if last_id is None else f"({last_id}", 1000)
            for eid, raw in rows:
                count += 1
                last_id = eid.decode("ascii")
                parsed = self._parse_audit(eid, raw)
                if first_bad is None:
                    if parsed is None:
                        first_bad = last_id
                    else:
                        entry, at_text = parsed
                        recomputed = audit_entry_hash(entry.prev, at_text, entry.event, entry.fields)
                        if entry.prev != expected or not hmac.compare_digest(recomputed, entry.hash):
                            first_bad = last_id
                expected = parsed[0].hash if parsed is not None else "?"
            if len(rows) < 1000:
                break
        with self._io("verify_audit"):
            head_raw = _b(self._r().get(self._audit_head_key()))
        head = head_raw.decode("ascii", "replace") if head_raw else AUDIT_GENESIS
        ok = first_bad is None and head == (expected if count else AUDIT_GENESIS)
        if not ok and first_bad is None:
            first_bad = last_id
        return AuditCheck(ok=ok, entries=count, head=expected if count else AUDIT_GENESIS, first_bad_id=first_bad)


@dataclasses.dataclass
class _LoopState:
    """What :class:`AsyncRedisOps` holds per event loop: the client and the audit group commit."""

    loop: asyncio.AbstractEventLoop
    client: Any
    cluster: bool
    audit_queue: collections.deque[tuple[list[_PendingAudit], asyncio.Future[None]]] = dataclasses.field(
        default_factory=collections.deque
    )
    audit_task: asyncio.Task[None] | None = None
    ready: bool = False  # a Cluster client has learnt the topology
    ready_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class AsyncRedisOps:
    """The FBU hot path of a :class:`RedisStore` on an asyncio client: same keys, scripts, records, errors.

    Each method behaves as the :class:`RedisStore` method of the same name. Asyncio connections belong to the
    loop that opened them, so the client is built on first use in each event loop (one loop per thread at a
    time, as a server runs it). Audit appends of one loop are
    group-committed by one task: callers queue their entries and wait; the task commits everything queued in one
    script call, then the next batch. A caller that is cancelled does not cancel the commit it waits for.
    """

    def __init__(self, store: RedisStore, connect: Callable[[], Any]) -> None:
        self._store = store
        self._connect = connect
        self._local = threading.local()  # the _LoopState of the loop this thread last ran

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
        client initialises on first use, and concurrent first commands then race that (a write on a
        connection that another command's initialisation has just reset)."""
        state = self._loop_state()
        if state.cluster and not state.ready:
            async with state.ready_lock:
                if not state.ready:
                    await state.client.initialize()
                    state.ready = True
        return state

    def _pipe(self, state: _LoopState) -> Any:
        # non-transactional: on a Cluster the commands go to the nodes of their keys' slots
        return state.client.pipeline() if state.cluster else state.client.pipeline(transaction=False)

    @staticmethod
    async def _script(state: _LoopState, lua: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> object:
        client = state.client
        try:
            return cast(object, await client.evalsha(_sha1(lua), len(keys), *keys, *args))
        except rx.NoScriptError:
            return cast(object, await client.eval(lua, len(keys), *keys, *args))

    async def find_by_spi(self, spi: int, *, limit: int = 8) -> list[SessionRecord]:
        if limit <= 0:
            return []
        store = self._store
        key = store._spi_key(spi)
        with store._io("find_by_spi"):
            state = await self._ready()
            if state.cluster:  # the records live in other hash slots: index first, then one pipeline of GETs
                named, stale = _named_members(_member_pairs(await self._script(state, _INDEX_LIVE_LUA, [key], [limit])))
                raws: list[bytes | None] = []
                if named:
                    pipe = self._pipe(state)
                    for name, _ in named:
                        pipe.get(store._session_key(name))
                    raws = [_b(r) for r in await pipe.execute()]
                records, gone = store._records_of(named, raws)
                stale += gone
            else:
                reply = await self._script(state, *store._live_records_call(key, limit))
                records, stale = store._parse_live_records(reply, what="find_by_spi")
            if stale:
                pipe = self._pipe(state)
                for member, score in stale:
                    store._queue_script(pipe, _INDEX_DROP_LUA, [key], [member, score])
                await pipe.execute()
        return [r for r in records if r.spi == spi]

    async def is_revoked(self, *, spi: int | None = None, hmk_name: bytes | None = None) -> bool:
        keys = self._store._tomb_keys(spi, hmk_name)
        with self._store._io("is_revoked"):
            state = await self._ready()
            # one EXISTS per key: the tombstones of a session lie in different hash slots
            for key in keys:
                if int(await state.client.exists(key)):
                    return True
            return False

    async def get_send_key_by_cga(self, cga: IPv6Address) -> SendKeyRecord | None:
        store = self._store
        with store._io("get_send_key_by_cga"):
            raw = _b(await (await self._ready()).client.get(store._sendkey_key(cga)))
        return None if raw is None else store._decode_send_key(cga, raw)

    async def check_replay(
        self, scope: bytes, ar_id: bytes, sequence: int, authenticator: bytes, *, ttl: int
    ) -> ReplayOutcome:
        store = self._store
        monitor = store.durability
        if monitor is None:
            call = store._replay_call(scope, ar_id, sequence, authenticator, ttl=ttl)
            with store._io("check_replay"):
                out = await self._script(await self._ready(), *call)
            return store._parse_replay(out)
        if monitor.check_due(time.monotonic()):  # rare: first use, after a reconnect, retrying a refusal
            await asyncio.to_thread(store._replay_gate, monitor)
        elif not monitor.allows_replay:
            raise StoreNotDurable(NOT_DURABLE)
        wait = monitor.policy.wait_replicas
        call = store._replay_call(scope, ar_id, sequence, authenticator, ttl=ttl, rewrite=bool(wait))
        seen = monitor.connections
        acks: int | None = None
        try:
            with store._io("check_replay"):
                state = await self._ready()
                if wait and state.cluster:  # WAIT must follow on the connection of the key's node: the sync client
                    return await asyncio.to_thread(store.check_replay, scope, ar_id, sequence, authenticator, ttl=ttl)
                if wait:
                    out, acks = await self._script_and_wait(state, *call, policy=monitor.policy)
                else:
                    out = await self._script(state, *call)
        except StoreUnavailable:
            monitor.note_connection()
            raise
        outcome = store._parse_replay(out)
        if monitor.connections != seen:
            await asyncio.to_thread(store._replay_gate, monitor)
        replicated(outcome, acks, wait)
        return outcome

    @staticmethod
    async def _script_and_wait(
        state: _LoopState,
        lua: str,
        keys: Sequence[str],
        args: Sequence[str | int | bytes],
        *,
        policy: ReplayDurabilityPolicy,
    ) -> tuple[object, int]:
        for command in ("EVALSHA", "EVAL"):
            pipe = state.client.pipeline(transaction=False)
            pipe.execute_command(command, _sha1(lua) if command == "EVALSHA" else lua, len(keys), *keys, *args)
            pipe.execute_command("WAIT", policy.wait_replicas, policy.wait_timeout_ms)
            replies = await pipe.execute(raise_on_error=False)
            if isinstance(replies[0], rx.NoScriptError):
                continue
            return wait_replies(replies)
        raise StoreError("Redis did not load the replay script")

    async def append_audits(
        self, entries: Sequence[tuple[str, Mapping[str, str | int | None], float]]
    ) -> list[AuditEntry]:
        items = _pending_audits(entries)
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
            groups: list[tuple[list[_PendingAudit], asyncio.Future[None]]] = []
            count = 0
            while state.audit_queue and count < _AUDIT_BATCH:
                group = state.audit_queue.popleft()
                groups.append(group)
                count += len(group[0])
            batch = [item for items, _ in groups for item in items]
            try:
                await self._commit_audit(batch)
            except Exception as exc:  # every entry of the batch failed with it (StoreUnavailable, ...)
                for _, done in groups:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in groups:
                    if not done.done():
                        done.set_result(None)

    async def _commit_audit(self, batch: list[_PendingAudit]) -> None:
        """As :meth:`RedisStore._commit_audit`, on this loop's client."""
        store = self._store
        head_key, stream_key = store._audit_head_key(), store._audit_stream_key()
        prev = store._audit_head_hint
        with store._io("append_audit"):
            ready = await self._ready()
            if prev is None:
                prev = _head_text(await ready.client.get(head_key))
        for _ in range(_AUDIT_APPEND_ATTEMPTS):
            args, chained = store._audit_append_args(batch, prev)
            with store._io("append_audit"):
                result = await self._script(ready, _AUDIT_APPEND_LUA, [head_key, stream_key], args)
            moved_to = store._apply_audit_append(batch, chained, result)
            if moved_to is None:
                return
            prev = moved_to
        raise StoreError(f"audit append at {store.where} lost {_AUDIT_APPEND_ATTEMPTS} races in a row; try again")

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


def _audit_matches(
    e: AuditEntry,
    since: float | None,
    until: float | None,
    event: str | None,
    spi: str | None,
    ar: str | None,
) -> bool:
    return (
        (since is None or e.at >= since)
        and (until is None or e.at < until)
        and (event is None or e.event == event)
        and (spi is None or e.fields.get("spi") == spi)
        and (ar is None or e.fields.get("ar") == ar)
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _check_name(name: bytes, *, what: str = "hmk_name") -> None:
    if not isinstance(name, bytes) or not 0 < len(name) <= 64:
        raise ValueError(f"{what} must be 1-64 octets")


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
