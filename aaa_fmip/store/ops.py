"""Each store operation, written once, as a generator of Redis calls (no client here).

psycopg's split between generators and waiting, at the level of Redis commands: an operation yields
:class:`Command`, :class:`Script` or :class:`Pipeline` values and receives each one's reply; the drivers in
:mod:`aaa_fmip.store.redis` (``RedisStore.run`` blocking, ``AsyncRedisOps.arun`` on an event loop) are the only
code that talks to a client. So one operation serves both, a use case can ``yield from`` several operations
and run as one flow, and a reader (or a static tool) follows an FBU from the route to the Redis commands.

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
    P:sendkey-lock:H(key_hash)           claim on creating that key's HK              [the claim's]
    P:irk                                the infrastructure root key, JSON; ``irk`` wrapped [none]
    P:{audit}:stream                     the audit Redis Stream                       [none]
    P:{audit}:head                       "n:mac" of the last audit entry              [none]
    P:{audit}:anchor                     signed checkpoint of the last trimmed entry  [none]
    P:{audit}:exported                   "n:stream id:mac" of the last exported entry [none]

``scope`` is the session's hmk_name (8 octets) or, for SEND keys, the CGA's 16 octets, so replay state shares
the slot of what it protects. Sorted-set index scores are absolute expiry times in Redis server milliseconds
(taken from ``TIME`` inside the scripts), so index reads skip expired members by score, every write to an
index prunes them, and the index key itself expires with its longest-lived member. A member whose record is
missing is skipped and dropped (compare-and-delete on its score, so a concurrent re-add survives).

Audited writes. A session stored and a session revoked run in the same script as their audit entries outside a
Cluster: both take effect or neither does. On a Cluster, where the audit stream and a session's keys lie in
different hash slots, the entries are appended first and the state change follows, so a failure in between
leaves an entry without its change (a ``session.not-stored`` entry follows when Redis lets it), never a change
without its entry. Each such script carries a deadline in Redis server time (the caller's deadline, capped at
now + the write timeout, through a clock offset measured with ``TIME``) and does nothing once it has passed,
so a write the client has given up on cannot land later. The chain itself: :mod:`aaa_fmip.store.audit`.

FBU verification (:meth:`StoreOps.verify_commit`). Outside a Cluster one script checks that the session record
is still the one the verifier read (by the SHA-1 of its stored value: a revocation or a replacement is seen at
once, whatever a process has cached), decides the replay verdict, writes that verdict's audit entry (one of the
three candidates the caller chained onto the head) and then the replay state; several such scripts of one
process go in one pipeline. On a Cluster, or with a WAIT behind the replay update, the record check and the
replay update are one script in the session's slot and the entry follows by group commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import secrets
from collections.abc import Callable, Generator, Mapping, Sequence
from ipaddress import IPv6Address
from typing import Any, Final, TypeVar, cast

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import ConfigError, ReplayNotReplicated, StoreError, StoreUnavailable
from aaa_fmip.store import (
    DEFAULT_PREFIX,
    PREFIX_RULE,
    AuditCheck,
    AuditEntry,
    AuditItem,
    Checkpoint,
    ReplayOutcome,
    SendKeyRecord,
    SessionRecord,
    records,
    valid_prefix,
)
from aaa_fmip.store import audit as chain
from aaa_fmip.store import scripts as lua

T = TypeVar("T")
Arg = str | int | bytes | float


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """One Redis command, e.g. ``Command(("GET", key))``; ``options`` go to redis-py's reply parser (``get``
    for ``SET … GET``)."""

    args: tuple[Arg, ...]
    options: Mapping[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Script:
    """A Lua script of :mod:`aaa_fmip.store.scripts`, run by digest (reloaded if the server forgot it)."""

    lua: str
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Pipeline:
    """Calls sent together, not as a transaction (on a Cluster, each to the node of its keys); the reply is the
    list of their replies. Scripts in a pipeline go as EVAL (nothing to reload after a server restart).
    ``node_key``: send every call on one connection to the node of this key (a keyless ``WAIT`` behind a
    script must follow it on the same connection)."""

    calls: tuple[Command | Script, ...]
    node_key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyCommit:
    """What the commit of an FBU verification checks and writes (:meth:`StoreOps.verify_commit`): that the record
    at ``record_key`` is still the one whose key verified the authenticator (its stored value has SHA-1
    ``digest``; ``""``: not checked), the replay state of (``scope``, ``ar_id``) for ``sequence`` and
    ``authenticator`` (:meth:`StoreOps.check_replay`, kept ``ttl`` seconds), and the audit entry of the verdict
    reached, one per verdict in ``entries``."""

    record_key: str
    digest: str
    scope: bytes
    ar_id: bytes
    sequence: int
    authenticator: bytes
    ttl: int
    entries: Mapping[ReplayOutcome, AuditItem]


CommitResult = tuple[ReplayOutcome | None, bool]
_VERDICTS: Final[tuple[ReplayOutcome, ...]] = ("accepted", "retransmission", "replay")

RedisCall = Command | Script | Pipeline
Op = Generator[RedisCall, Any, T]
"""An operation: yields calls, is sent each reply, returns its result."""


AUDIT_APPEND_ATTEMPTS: Final = 200
AUDIT_BATCH: Final = 64  # entries committed in one script call at most
AUDIT_SCAN_LIMIT: Final = 10_000  # entries examined per read_audit call before returning a cursor
DELETE_ATTEMPTS: Final = 5
EXTERNAL_ID_LIMIT: Final = 256  # sessions returned per external id (e.g. one user's concurrent sessions)
SEQ_MODULUS: Final = 1 << 16  # the FBU Sequence Number is 16 bits (RFC 5568 §6.2.3)


class StoreOps:
    """The key schema and every operation of the store, for one prefix and KEK ring.

    State kept between operations: whether the deployment is a Cluster (set by the driver when it connects),
    the clock offset to the Redis server (measured with ``TIME``, forgotten after a connection error) and the
    audit chain's head as this process last wrote it. ``clock`` is the local wall clock (Unix seconds).
    """

    def __init__(
        self,
        kek: KekRing,
        *,
        prefix: str = DEFAULT_PREFIX,
        cluster: bool = False,
        write_timeout: float = 0.5,
        clock: Callable[[], float],
    ) -> None:
        if not write_timeout > 0:
            raise ValueError("write_timeout must be positive")
        if not valid_prefix(prefix):
            raise ConfigError(f"must be {PREFIX_RULE}", key="store.prefix")
        self.kek = kek
        self.p = prefix
        self.cluster = cluster
        self.write_timeout = write_timeout
        self.clock = clock
        self.clock_offset: float | None = None  # Redis TIME minus local time, seconds
        self.chain = chain.AuditChain(kek)
        # (replicas, timeout ms): an accepted replay update waits for that many replicas (store/durability.py)
        self.replay_wait: tuple[int, int] | None = None

    @property
    def verify_audits_inline(self) -> bool:
        """Whether :meth:`verify_commit` writes the verdict's audit entry itself (no slots, no WAIT), so that
        it must run in this process's turn for the audit chain."""
        return not self.cluster and self.replay_wait is None

    # --- key names ---------------------------------------------------------------------------------------

    def session_key(self, hmk_name: bytes) -> str:
        return f"{self.p}:{{{hmk_name.hex()}}}:session"

    def session_tomb_key(self, hmk_name: bytes) -> str:
        return f"{self.p}:{{{hmk_name.hex()}}}:revoked"

    def replay_prefix(self, scope: bytes) -> str:
        return f"{self.p}:{{{scope.hex()}}}:replay:"

    def replay_ars_key(self, scope: bytes) -> str:
        return f"{self.p}:{{{scope.hex()}}}:replay-ars"

    def spi_key(self, spi: int) -> str:
        return f"{self.p}:spi:{spi}"

    def spi_tomb_key(self, spi: int) -> str:
        return f"{self.p}:revoked-spi:{spi}"

    def mac_key(self, mac: str) -> str:
        return f"{self.p}:mac:{mac}"

    def ext_key(self, external_id: str) -> str:
        return f"{self.p}:ext:{external_id}"

    def sessions_key(self) -> str:
        return f"{self.p}:sessions"

    def sendkey_key(self, cga: IPv6Address) -> str:
        return f"{self.p}:{{{cga.packed.hex()}}}:sendkey"

    def sendkey_hash_key(self, key_hash: bytes) -> str:
        return f"{self.p}:sendkey-hash:{key_hash.hex()}"

    def sendkey_lock_key(self, key_hash: bytes) -> str:
        return f"{self.p}:sendkey-lock:{key_hash.hex()}"

    def nonce_key(self, scope: bytes, nonce: bytes) -> str:
        return f"{self.p}:{{{scope.hex()}}}:nonce:{nonce.hex()}"

    def audit_stream_key(self) -> str:
        return f"{self.p}:{{audit}}:stream"

    def audit_head_key(self) -> str:
        return f"{self.p}:{{audit}}:head"

    def audit_anchor_key(self) -> str:
        return f"{self.p}:{{audit}}:anchor"

    def audit_exported_key(self) -> str:
        return f"{self.p}:{{audit}}:exported"

    # --- deadlines ---------------------------------------------------------------------------------------

    def deadline(self, deadline: float | None) -> float:
        """The caller's deadline (Unix seconds), capped at now + the write timeout; raises StoreUnavailable
        when it has already passed (nothing is sent)."""
        now = self.clock()
        limit = now + self.write_timeout
        at = limit if deadline is None else min(deadline, limit)
        if at <= now:
            raise StoreUnavailable("the write's deadline passed before it could be sent; nothing was written")
        return at

    def server_deadline(self, deadline: float | None) -> Op[int]:
        """:meth:`deadline` in Redis server milliseconds (the clock offset measured first if unknown)."""
        at = self.deadline(deadline)
        if self.clock_offset is None:
            t0 = self.clock()
            reply = yield Command(("TIME",))
            self.clock_offset = _time_reply(reply) - (t0 + self.clock()) / 2
        return int((at + self.clock_offset) * 1000)

    # --- sessions ----------------------------------------------------------------------------------------

    def put_session(
        self, rec: SessionRecord, *, now: float, audits: Sequence[AuditItem] = (), deadline: float | None = None
    ) -> Op[None]:
        """Store (or replace) a session: HMK wrapped, TTL = ``expires_at - now``, with its indexes and its audit
        entries (module docstring). Past ``deadline`` (Unix seconds; default and cap: now + the write timeout)
        by the Redis clock nothing is written: StoreUnavailable."""
        _check_name(rec.hmk_name)
        if not 0 < rec.spi < 1 << 32:
            raise ValueError("SPI must be 1..2^32-1 (0 is reserved for RFC 5269 keys)")
        ttl = _ttl_ms(rec.expires_at, now)
        if ttl <= 0:
            raise ValueError("session already expired (expires_at <= now)")
        items = chain.pending(audits)
        key = self.session_key(rec.hmk_name)
        value = records.encode_session(rec, key, self.kek)
        member = rec.hmk_name.hex()
        indexes = [self.spi_key(rec.spi), *(self.ext_key(e) for e in dict.fromkeys(rec.external_ids))]
        indexes.append(self.sessions_key())
        self.deadline(deadline)  # already passed: send nothing
        if not self.cluster:
            mac = [self.mac_key(rec.calling_station_id)] if rec.calling_station_id else []
            old = yield from self.audited(
                lua.PUT_SESSION_AUDITED,
                [key, *mac, *indexes],
                [value, ttl, member, "1" if mac else "0"],
                items,
                deadline,
            )
            old_raw = _b(old)
        else:
            if items:
                yield from self.audited(lua.AUDIT_APPEND, [], [], items, deadline)
            try:
                at = yield from self.server_deadline(deadline)
                reply = yield Script(lua.PUT_SESSION_SLOT, (key,), (at, value, ttl))
                if not isinstance(reply, list) or not reply or reply[0] != 1:
                    raise StoreUnavailable("the session write reached Redis after its deadline; it was not stored")
            except StoreError:
                if items:
                    yield from self._not_stored(rec, items)
                raise
            old_raw = _b(reply[1]) if len(reply) > 1 else None
            calls: list[Command | Script] = []
            if rec.calling_station_id:
                calls.append(Command(("SET", self.mac_key(rec.calling_station_id), member, "PX", ttl)))
            calls += [Script(lua.INDEX_ADD, (k,), (member, ttl)) for k in indexes]  # one slot per call
            yield Pipeline(tuple(calls))
        if old_raw is not None:
            yield from self._drop_stale_indexes(old_raw, rec)

    def _not_stored(self, rec: SessionRecord, items: list[chain.PendingAudit]) -> Op[None]:
        """On a Cluster: entries went in but the record did not: a closing entry, when Redis lets us write it
        (best effort; the failure itself is what the caller sees)."""
        note = chain.pending([("session.not-stored", {"hmk_name": rec.hmk_name.hex(), "spi": rec.spi}, 0.0)])
        note[0].at_text = items[0].at_text
        with contextlib.suppress(StoreError):
            yield from self.audited(lua.AUDIT_APPEND, [], [], note, None)

    def _drop_stale_indexes(self, old_raw: bytes, new: SessionRecord) -> Op[None]:
        """A replaced record may have been indexed under names the new one no longer has."""
        old = records.indexed_names(old_raw)
        if old is None:
            return
        old_spi, old_mac, old_ext = old
        member = new.hmk_name.hex()
        calls: list[Command | Script] = []
        if old_spi != new.spi:
            calls.append(Command(("ZREM", self.spi_key(old_spi), member)))
        if old_mac and old_mac != new.calling_station_id:
            calls.append(Script(lua.DEL_IF_EQUAL, (self.mac_key(old_mac),), (member,)))
        calls += [Command(("ZREM", self.ext_key(ext), member)) for ext in old_ext - set(new.external_ids)]
        if calls:
            yield Pipeline(tuple(calls))

    def get_session(self, hmk_name: bytes) -> Op[SessionRecord | None]:
        _check_name(hmk_name)
        key = self.session_key(hmk_name)
        raw = _b((yield Command(("GET", key))))
        return None if raw is None else records.decode_session(hmk_name, raw, key, self.kek)

    def decode_session(self, hmk_name: bytes, raw: bytes) -> SessionRecord:
        return records.decode_session(hmk_name, raw, self.session_key(hmk_name), self.kek)

    def _sessions_of(self, index_key: str, limit: int) -> Op[list[SessionRecord]]:
        found = yield from self._sessions_with_digest(index_key, limit)
        return [rec for rec, _ in found]

    def _sessions_with_digest(self, index_key: str, limit: int) -> Op[list[tuple[SessionRecord, str]]]:
        """Live sessions named by a sorted-set index, longest-lived first: one round trip (the index and the
        records in one script); on a Cluster, where the records live in other slots, the live members and then
        one pipeline of GETs. Members whose record is gone are skipped and dropped from the index."""
        if not self.cluster:
            # the frame of session_key around a member (its hex HMK-Name)
            reply = yield Script(lua.INDEX_LIVE_RECORDS, (index_key,), (limit, f"{self.p}:{{", "}:session"))
            if not isinstance(reply, list) or len(reply) % 3:
                raise StoreError("unexpected reply from Redis for an index read")
            flat = [_b(x) for x in reply]
            triples = list(zip(flat[0::3], flat[1::3], flat[2::3], strict=True))
        else:
            pairs = _member_pairs((yield Script(lua.INDEX_LIVE, (index_key,), (limit,))))
            raws: list[Any] = []
            if pairs:
                raws = yield Pipeline(tuple(Command(("GET", self._member_key(m))) for m, _ in pairs))
            triples = [(m, s, _b(r)) for (m, s), r in zip(pairs, raws, strict=True)]
        found: list[tuple[SessionRecord, str]] = []
        stale: list[tuple[bytes, bytes]] = []
        for member, score, raw in triples:
            if member is None or score is None:
                continue
            name = _name_of(member)
            if name is None or raw is None:
                stale.append((member, score))
                continue
            found.append((self.decode_session(name, raw), hashlib.sha1(raw).hexdigest()))  # noqa: S324 - identity
        if stale:
            yield Pipeline(tuple(Script(lua.INDEX_DROP, (index_key,), (m, s)) for m, s in stale))
        return found

    def _member_key(self, member: bytes) -> str:
        return f"{self.p}:{{{member.decode('ascii', 'replace')}}}:session"

    def find_by_spi(self, spi: int, *, limit: int = 8) -> Op[list[SessionRecord]]:
        """Live sessions with this SPI (collisions are possible), longest-lived first, at most ``limit``."""
        if limit <= 0:
            return []
        found = yield from self._sessions_of(self.spi_key(spi), limit)
        return [r for r in found if r.spi == spi]

    def find_by_spi_with_digest(self, spi: int, *, limit: int = 8) -> Op[list[tuple[SessionRecord, str]]]:
        """:meth:`find_by_spi`, each record with the SHA-1 (hex) of its stored value: what
        :meth:`verify_commit` checks to know the record is still the one read (not revoked, not replaced)."""
        if limit <= 0:
            return []
        found = yield from self._sessions_with_digest(self.spi_key(spi), limit)
        return [(r, d) for r, d in found if r.spi == spi]

    def find_by_calling_station(self, mac: str) -> Op[SessionRecord | None]:
        """The latest live session of this calling station (MAC, as normalised by the caller)."""
        member = _b((yield Command(("GET", self.mac_key(mac)))))
        name = None if member is None else _name_of(member)
        if name is None:
            return None
        rec = yield from self.get_session(name)
        return rec if rec is not None and rec.calling_station_id == mac else None

    def find_by_external_id(self, external_id: str) -> Op[list[SessionRecord]]:
        """Live sessions carrying this external id, longest-lived first (at most 256)."""
        found = yield from self._sessions_of(self.ext_key(external_id), EXTERNAL_ID_LIMIT)
        return [r for r in found if external_id in r.external_ids]

    def delete_session(
        self,
        hmk_name: bytes,
        *,
        now: float,
        audits_for: Callable[[SessionRecord], Sequence[AuditItem]] | None = None,
        deadline: float | None = None,
    ) -> Op[SessionRecord | None]:
        """Remove a session, its index entries and replay state; leave revocation tombstones for its SPI and
        hmk_name until its old ``expires_at``; append ``audits_for(record)`` with it (module docstring).
        Returns the removed record, or None if there was none. ``deadline`` as for :meth:`put_session`."""
        _check_name(hmk_name)
        key = self.session_key(hmk_name)
        ars_key = self.replay_ars_key(hmk_name)
        replay_prefix = self.replay_prefix(hmk_name)
        member = hmk_name.hex()
        self.deadline(deadline)  # already passed: send nothing
        for _ in range(DELETE_ATTEMPTS):
            raw_reply, ars_reply = yield Pipeline((Command(("GET", key)), Command(("SMEMBERS", ars_key))))
            raw = _b(raw_reply)
            if raw is None:
                return None
            rec = self.decode_session(hmk_name, raw)
            items = chain.pending(audits_for(rec) if audits_for is not None else ())
            tomb_ms = max(0, _ttl_ms(rec.expires_at, now))
            replay_keys = [replay_prefix + m.decode("ascii", "replace") for m in _members(ars_reply)]
            exts = [self.ext_key(e) for e in dict.fromkeys(rec.external_ids)]
            if not self.cluster:
                mac = [self.mac_key(rec.calling_station_id)] if rec.calling_station_id else []
                keys = [
                    key,
                    ars_key,
                    self.session_tomb_key(hmk_name),
                    self.spi_tomb_key(rec.spi),
                    self.spi_key(rec.spi),
                    self.sessions_key(),
                    *exts,
                    *mac,
                    *replay_keys,
                ]
                args: list[Arg] = [raw, tomb_ms, replay_prefix, member, len(exts), "1" if mac else "0"]
                done = yield from self.audited(lua.DELETE_SESSION_AUDITED, keys, args, items, deadline)
                if done is not chain.REFUSED:
                    return rec
                continue
            if items:
                yield from self.audited(lua.AUDIT_APPEND, [], [], items, deadline)
            if tomb_ms > 0:  # before the record goes, so that no moment shows its SPI as unknown
                yield Script(lua.TOMBSTONE, (self.spi_tomb_key(rec.spi),), (tomb_ms,))
            at = yield from self.server_deadline(deadline)
            status = yield Script(
                lua.DELETE_SESSION,
                (key, ars_key, self.session_tomb_key(hmk_name), *replay_keys),
                (raw, tomb_ms, replay_prefix, at),
            )
            if status == -2:
                raise StoreUnavailable("the revocation reached Redis after its deadline; the session is not deleted")
            if status == 1:
                calls: list[Command | Script] = [
                    Command(("ZREM", self.spi_key(rec.spi), member)),
                    Command(("ZREM", self.sessions_key(), member)),
                    *(Command(("ZREM", ext, member)) for ext in exts),
                ]
                if rec.calling_station_id:
                    calls.append(Script(lua.DEL_IF_EQUAL, (self.mac_key(rec.calling_station_id),), (member,)))
                yield Pipeline(tuple(calls))
                return rec
        raise StoreError(f"session {hmk_name.hex()} kept changing while being deleted")

    def is_revoked(self, *, spi: int | None = None, hmk_name: bytes | None = None) -> Op[bool]:
        """True if a session with this SPI or this hmk_name was deleted and would still be live."""
        if spi is None and hmk_name is None:
            raise ValueError("give spi or hmk_name")
        keys = [] if spi is None else [self.spi_tomb_key(spi)]
        keys += [] if hmk_name is None else [self.session_tomb_key(hmk_name)]
        # one EXISTS per key: the tombstones of a session lie in different hash slots
        replies = yield Pipeline(tuple(Command(("EXISTS", k)) for k in keys))
        return any(int(n) for n in replies)

    def count_live_sessions(self) -> Op[int]:
        """Sessions whose TTL has not run out (by the Redis server's clock)."""
        return int((yield Script(lua.COUNT_LIVE, (self.sessions_key(),), ())))

    # --- replay ------------------------------------------------------------------------------------------

    def check_replay(
        self, scope: bytes, ar_id: bytes, sequence: int, authenticator: bytes, *, ttl: int
    ) -> Op[ReplayOutcome]:
        """Atomically check and record an FBU Sequence Number for (scope, AR) (architecture.md §3).

        Newer than the last accepted (serial arithmetic mod 2^16, window 2^15) or no state: "accepted" and
        recorded with the SHA-256 of the authenticator; same number and same authenticator:
        "retransmission"; anything else: "replay". State lives ``ttl`` seconds after the last acceptance.
        """
        _check_name(scope, what="scope")
        if not ar_id:
            raise ValueError("ar_id must not be empty")
        if not 0 <= sequence < SEQ_MODULUS:
            raise ValueError("sequence must be a 16-bit unsigned integer")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        ah = hashlib.sha256(authenticator).hexdigest()
        keys = (self.replay_prefix(scope) + ar_id.hex(), self.replay_ars_key(scope))
        wait = self.replay_wait
        acks: int | None = None
        if wait is None:
            out = yield Script(lua.REPLAY, keys, (sequence, ah, ttl * 1000, ar_id.hex(), 0))
        else:
            # WAIT right behind the script on its connection: no extra round trip (store/durability.py)
            script = Script(lua.REPLAY, keys, (sequence, ah, ttl * 1000, ar_id.hex(), 1))
            out, acks_reply = yield Pipeline((script, Command(("WAIT", *wait))), node_key=keys[0])
            acks = int(acks_reply)
        if out not in (b"accepted", b"retransmission", b"replay"):
            raise StoreError("unexpected replay-check reply from Redis")
        outcome = cast(ReplayOutcome, out.decode())
        if wait is not None and acks is not None and outcome != "replay" and acks < wait[0]:
            # a "replay" wrote nothing: it stands; any other verdict stands on an update too few replicas hold
            raise ReplayNotReplicated(
                f"the FBU's replay update was acknowledged by {acks} of {wait[0]} replica(s) in time; "
                "it is not accepted"
            )
        return outcome

    def verify_commit(self, commit: VerifyCommit) -> Op[CommitResult]:
        """The commit of one FBU verification (architecture.md §3; :class:`VerifyCommit` says what it checks).

        Where there are no hash slots and no WAIT is configured (:attr:`verify_audits_inline`), it is
        :meth:`verify_commit_many` of one: liveness, replay and the verdict's audit entry in one script. On a
        Cluster (the audit stream lives in another slot) or with ``replay_wait``, liveness and replay are one
        script in the record's slot and the entry is left to the caller. Returns the verdict (None: the record
        was revoked or replaced since it was read; nothing was written) and whether the entry was written."""
        if self.verify_audits_inline:
            (result,) = yield from self.verify_commit_many([commit])
            if isinstance(result, BaseException):
                raise result
            return result
        record_key, replay_keys, replay_args = self._verify_args(commit)
        wait = self.replay_wait
        script = Script(lua.VERIFY_SLOT, (record_key, *replay_keys), (commit.digest, *replay_args))
        acks: int | None = None
        if wait is None:
            reply = yield script
        else:  # WAIT right behind the script on its connection (store/durability.py)
            reply, acks_reply = yield Pipeline((script, Command(("WAIT", *wait))), node_key=record_key)
            acks = int(acks_reply)
        outcome = _verify_outcome(reply)
        if outcome not in (None, "replay") and wait is not None and acks is not None and acks < wait[0]:
            raise ReplayNotReplicated(
                f"the FBU's replay update was acknowledged by {acks} of {wait[0]} replica(s) in time; "
                "it is not accepted"
            )
        return outcome, False

    def verify_commit_many(self, commits: Sequence[VerifyCommit]) -> Op[list[CommitResult | BaseException]]:
        """Several FBU verifications, each one script with its audit entry (no slots, no WAIT), pipelined in one
        round trip: each script's entries are chained onto the head the previous one leaves when it accepts (the
        common case). A script whose head is not the expected one (the previous verdict was another, or another
        writer appended meanwhile) writes nothing and is sent again, chained onto the head Redis reported.
        Results in order; a script past its deadline gives StoreUnavailable for that verification alone. The
        caller holds this process's turn for the audit chain."""
        prepared = [(c, *self._verify_args(c), {v: chain.pending([e]) for v, e in c.entries.items()}) for c in commits]
        results: list[CommitResult | BaseException | None] = [None] * len(commits)
        todo = list(range(len(commits)))
        head = self.chain.head_hint
        if head is None:
            head = chain.parse_head((yield Command(("GET", self.audit_head_key()))))
        for _ in range(AUDIT_APPEND_ATTEMPTS):
            at = yield from self.server_deadline(None)
            calls: list[Command | Script] = []
            heads_after: list[dict[str, tuple[int, str]]] = []
            expected = head
            for i in todo:
                commit, record_key, replay_keys, replay_args, pending = prepared[i]
                per_verdict: list[Arg] = []
                after: dict[str, tuple[int, str]] = {}
                for verdict in _VERDICTS:
                    args, new_head, chained = self.chain.append_args(pending[verdict], expected)
                    per_verdict += [args[0], new_head]
                    after[verdict] = (chained[0][0], chained[0][2])
                calls.append(
                    Script(
                        lua.VERIFY_AUDITED,
                        (self.audit_head_key(), self.audit_stream_key(), record_key, *replay_keys),
                        (at, chain.head_value(expected), commit.digest, *replay_args, *per_verdict),
                    )
                )
                heads_after.append(after)
                expected = after["accepted"]
            replies = yield (calls[0] if len(calls) == 1 else Pipeline(tuple(calls)))
            if len(calls) == 1:
                replies = [replies]
            again: list[int] = []
            for i, after, reply in zip(todo, heads_after, replies, strict=True):
                if not isinstance(reply, list) or not reply or not isinstance(reply[0], int):
                    raise StoreError("unexpected FBU-verification reply from Redis")
                if reply[0] == -1:
                    results[i] = StoreUnavailable("the FBU verification reached Redis after its deadline; not written")
                elif reply[0] == 0 and len(reply) == 2:
                    head = chain.parse_head(reply[1])  # what Redis holds now: chain the retry onto it
                    again.append(i)
                else:
                    outcome = _verify_outcome(reply[:2])
                    if outcome is not None:
                        head = after[outcome]
                    results[i] = (outcome, outcome is not None)
            self.chain.head_hint = head
            if not again:
                return [r for r in results if r is not None]
            todo = again
        raise StoreError(f"audit append lost {AUDIT_APPEND_ATTEMPTS} races in a row; try again")

    def _verify_args(self, commit: VerifyCommit) -> tuple[str, tuple[str, str], tuple[Arg, ...]]:
        _check_name(commit.scope, what="scope")
        if not commit.ar_id:
            raise ValueError("ar_id must not be empty")
        if not 0 <= commit.sequence < SEQ_MODULUS:
            raise ValueError("sequence must be a 16-bit unsigned integer")
        if commit.ttl <= 0:
            raise ValueError("ttl must be positive")
        ah = hashlib.sha256(commit.authenticator).hexdigest()
        ar = commit.ar_id.hex()
        replay_keys = (self.replay_prefix(commit.scope) + ar, self.replay_ars_key(commit.scope))
        flag = "0" if self.replay_wait is None else "1"
        return commit.record_key, replay_keys, (commit.sequence, ah, commit.ttl * 1000, ar, flag)

    def remember_nonce(self, scope: bytes, nonce: bytes, *, ttl: int) -> Op[bool]:
        """True the first time (scope, nonce) is seen within ``ttl`` seconds, False afterwards (SEND replay)."""
        _check_name(scope, what="scope")
        if not nonce:
            raise ValueError("nonce must not be empty")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        return bool((yield Command(("SET", self.nonce_key(scope, nonce), b"1", "NX", "EX", ttl))))

    # --- RFC 5269 keys -----------------------------------------------------------------------------------

    def lock_send_key(self, key_hash: bytes, *, ttl: float) -> Op[str | None]:
        """Claim the right to create the HK of one CGA public key for ``ttl`` seconds (SET NX); a token for
        :meth:`unlock_send_key`, or None when another request holds the claim."""
        token = secrets.token_hex(8)
        got = yield Command(("SET", self.sendkey_lock_key(key_hash), token, "NX", "PX", max(1, int(ttl * 1000))))
        return token if got else None

    def unlock_send_key(self, key_hash: bytes, token: str) -> Op[None]:
        """Release a claim made by :meth:`lock_send_key` (only if it is still ours)."""
        yield Script(lua.DEL_IF_EQUAL, (self.sendkey_lock_key(key_hash),), (token,))

    def put_send_key(self, rec: SendKeyRecord, *, now: float) -> Op[None]:
        """Store the HK of a CGA (wrapped, TTL = ``expires_at - now``), indexed by CGA and by key hash. One live
        HK per CGA public key: an HK stored earlier for the same key hash under another CGA is removed."""
        if not rec.key_hash:
            raise ValueError("key_hash must not be empty")
        ttl = _ttl_ms(rec.expires_at, now)
        if ttl <= 0:
            raise ValueError("SEND key already expired (expires_at <= now)")
        key = self.sendkey_key(rec.cga)
        cga_hex = rec.cga.packed.hex()
        value = records.encode_send_key(rec, key, self.kek)
        get = {"get": True}
        old_rec_raw, old_cga = (
            _b(x)
            for x in (
                yield Pipeline(
                    (
                        Command(("SET", key, value, "PX", ttl, "GET"), get),
                        Command(("SET", self.sendkey_hash_key(rec.key_hash), cga_hex, "PX", ttl, "GET"), get),
                    )
                )
            )
        )
        calls: list[Command | Script] = []
        if old_cga is not None and old_cga != cga_hex.encode():
            other = _cga_of(old_cga)
            if other is not None:
                calls.append(Script(lua.DEL_SENDKEY, (self.sendkey_key(other),), (rec.key_hash.hex(),)))
        if old_rec_raw is not None:
            old_hash = records.key_hash_of(old_rec_raw) or rec.key_hash
            if old_hash != rec.key_hash:
                calls.append(Script(lua.DEL_IF_EQUAL, (self.sendkey_hash_key(old_hash),), (cga_hex,)))
        if calls:
            yield Pipeline(tuple(calls))

    def get_send_key_by_cga(self, cga: IPv6Address) -> Op[SendKeyRecord | None]:
        key = self.sendkey_key(cga)
        raw = _b((yield Command(("GET", key))))
        return None if raw is None else records.decode_send_key(cga, raw, key, self.kek)

    def get_send_key_by_key_hash(self, key_hash: bytes) -> Op[SendKeyRecord | None]:
        cga_hex = _b((yield Command(("GET", self.sendkey_hash_key(key_hash)))))
        cga = None if cga_hex is None else _cga_of(cga_hex)
        if cga is None:
            return None
        rec = yield from self.get_send_key_by_cga(cga)
        return rec if rec is not None and rec.key_hash == key_hash else None

    # --- the infrastructure root key (architecture.md §2: router-pair PSKs) --------------------------------

    def irk_key(self) -> str:
        return f"{self.p}:irk"

    def infrastructure_root_key(self, make: Callable[[], SecretBytes], *, now: float) -> Op[SecretBytes]:
        """The IRK, unwrapped: the stored one, or ``make()`` stored first (``SET NX``, so concurrent first calls
        all end with the one that landed). Never expires; it stays wrapped under the KEK it was created with."""
        key = self.irk_key()
        raw = _b((yield Command(("GET", key))))
        if raw is None:
            value = records.encode_irk(make(), now, key, self.kek)
            # the GET behind SET NX reads whichever value won (nothing deletes this key)
            _, raw_reply = yield Pipeline((Command(("SET", key, value, "NX")), Command(("GET", key))))
            raw = _b(raw_reply)
            if raw is None:
                raise StoreError(f"{key} vanished right after it was created")
        return records.decode_irk(raw, key, self.kek)

    # --- audit -------------------------------------------------------------------------------------------

    def audited(
        self,
        script: str,
        keys: Sequence[str],
        args: Sequence[Arg],
        items: list[chain.PendingAudit],
        deadline: float | None,
    ) -> Op[object]:
        """Run an audited script (see ``scripts.AUDITED_CHECKS``) with ``items`` chained onto the head; its
        result, or ``audit.REFUSED`` when its precondition failed. The caller holds this process's turn for
        the chain (the drivers' group commit)."""
        head = self.chain.head_hint
        if head is None:
            head = chain.parse_head((yield Command(("GET", self.audit_head_key()))))
        for _ in range(AUDIT_APPEND_ATTEMPTS):
            entry_args, new_head, chained = self.chain.append_args(items, head)
            # each attempt is a write of its own: it carries the moment this client gives up on it
            at = yield from self.server_deadline(deadline)
            reply = yield Script(
                script,
                (self.audit_head_key(), self.audit_stream_key(), *keys),
                (at, chain.head_value(head), new_head, len(items), *entry_args, *args),
            )
            moved_to, result = self.chain.apply_reply(items, chained, reply)
            if moved_to is None:
                return result
            head = moved_to
        raise StoreError(f"audit append lost {AUDIT_APPEND_ATTEMPTS} races in a row; try again")

    def append_audits(self, items: list[chain.PendingAudit]) -> Op[None]:
        """Append pending entries (consecutive in the chain) in one script call when the head is as expected."""
        yield from self.audited(lua.AUDIT_APPEND, [], [], items, None)

    def _xrange(self, after: str | None, count: int) -> Op[list[tuple[bytes, dict[bytes, bytes]]]]:
        start = "-" if after is None else f"({after}"
        return cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            (yield Command(("XRANGE", self.audit_stream_key(), start, "+", "COUNT", count))),
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
    ) -> Op[tuple[list[AuditEntry], str | None]]:
        """Audit entries in append order matching every given filter (``since <= at < until``; ``spi`` and
        ``ar`` match the fields of those names), at most ``limit``; returns them and the cursor to continue
        with, or None at the end of the stream. A call examines at most 10 000 entries, so a selective filter
        can return fewer than ``limit`` entries (even none) together with a cursor. ValueError for a cursor
        that is no stream id."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        if cursor is not None and not chain.valid_stream_id(cursor):
            raise ValueError("invalid audit cursor")
        out: list[AuditEntry] = []
        after = cursor
        scanned = 0
        batch = min(max(limit, 100), 1000)
        while True:
            rows = yield from self._xrange(after, batch)
            for i, (eid, raw) in enumerate(rows):
                scanned += 1
                parsed = chain.parse_entry(eid, raw)
                after = eid.decode("ascii")
                at_end = len(rows) < batch and i == len(rows) - 1
                if parsed is not None and chain.matches(parsed.entry, since, until, event, spi, ar):
                    out.append(parsed.entry)
                    if len(out) == limit:
                        return out, None if at_end else after
                if scanned >= AUDIT_SCAN_LIMIT:
                    return out, None if at_end else after
            if len(rows) < batch:
                return out, None

    def read_audit_raw(self, after: str | None, count: int) -> Op[list[chain.StoredEntry]]:
        """Up to ``count`` entries after stream id ``after`` (None: from the start), with the texts their MAC
        covers, for export. Malformed entries are skipped."""
        rows = yield from self._xrange(after, count)
        return [s for s in (chain.parse_entry(eid, raw) for eid, raw in rows) if s is not None]

    def verify_audit(self, checkpoint: Checkpoint | None = None) -> Op[AuditCheck]:
        """Check the whole chain (:class:`~aaa_fmip.store.audit.ChainVerifier`), from genesis or from the
        retention anchor, against ``checkpoint`` too when given (its signature must verify: else CryptoError)."""
        if checkpoint is not None:
            self.chain.check(checkpoint)
        anchor, sound = self.chain.anchor_of((yield Command(("GET", self.audit_anchor_key()))))
        verifier = chain.ChainVerifier(self.chain, anchor, sound, checkpoint)
        after: str | None = None
        while True:
            rows = yield from self._xrange(after, 1000)
            for eid, raw in rows:
                after = eid.decode("ascii")
                verifier.feed(after, chain.parse_entry(eid, raw))
            if len(rows) < 1000:
                break
        return verifier.finish((yield Command(("GET", self.audit_head_key()))))

    def checkpoint(self, *, now: float) -> Op[Checkpoint]:
        """Verify the chain, then sign its current head; StoreError naming the problem if it fails (a
        checkpoint must never vouch for a broken trail)."""
        check = yield from self.verify_audit()
        if not check.ok:
            raise StoreError(f"the audit trail does not verify: {check.problem}")
        return self.chain.sign(check.n, check.head, now)

    def audit_exported(self) -> Op[tuple[int, str | None, str]]:
        """(n, stream id, MAC) of the last entry an exporter confirmed as kept outside Redis."""
        raw = _b((yield Command(("GET", self.audit_exported_key()))))
        if raw is None:
            return 0, None, chain.GENESIS_HEAD[1]
        n_text, _, rest = raw.decode("ascii", "replace").partition(":")
        eid, _, mac = rest.partition(":")
        if not n_text.isdigit() or not chain.valid_stream_id(eid) or not chain.valid_mac(mac):
            raise StoreError("the audit export position in Redis is malformed")
        return int(n_text), eid, mac

    def set_audit_exported(self, n: int, entry_id: str, mac: str) -> Op[None]:
        """Record that every entry up to position ``n`` (stream id ``entry_id``, MAC ``mac``) is kept outside."""
        if not chain.valid_stream_id(entry_id) or not chain.valid_mac(mac):
            raise ValueError("invalid stream id or MAC")
        yield Command(("SET", self.audit_exported_key(), f"{n}:{entry_id}:{mac}"))

    def trim_audit(self, *, keep: int, now: float) -> Op[int]:
        """Retention: drop the oldest entries beyond the newest ``keep``, only entries already exported, leaving
        the signed checkpoint of the last one dropped as the anchor verification goes on from. Refuses
        (StoreError) on a trail that does not verify. Returns how many entries were dropped."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        exported_n, _, _ = yield from self.audit_exported()
        check = yield from self.verify_audit()
        if not check.ok:
            raise StoreError(f"the audit trail does not verify, not trimming: {check.problem}")
        cut_n = min(exported_n, check.n - keep)  # the last position to drop
        if cut_n < check.first_n:
            return 0
        skip = cut_n - check.first_n  # entries before the one at cut_n (the verified chain has no gaps)
        after: str | None = None
        while True:
            rows = yield from self.read_audit_raw(after, min(1000, skip + 2))
            if len(rows) > skip + 1:
                cut, kept = rows[skip].entry, rows[skip + 1].entry
                break
            if len(rows) < min(1000, skip + 2):
                return 0  # changed meanwhile
            skip -= len(rows)
            after = rows[-1].entry.id
        if cut.n != cut_n or kept.n != cut_n + 1:
            raise StoreError("the audit trail changed while trimming; try again")
        anchor = chain.checkpoint_text(self.chain.sign(cut.n, cut.hash, now))
        keys = (self.audit_stream_key(), self.audit_anchor_key())
        return int((yield Script(lua.AUDIT_TRIM, keys, (kept.id, anchor))))


# --- reply helpers ----------------------------------------------------------------------------------------


def _ttl_ms(expires_at: float, now: float) -> int:
    return math.ceil((expires_at - now) * 1000)


def _b(value: object) -> bytes | None:
    """A reply expected to be bytes or nil (redis-py's reply types are not narrowed statically)."""
    if value is None or isinstance(value, bytes):
        return value
    raise StoreError(f"unexpected reply type {type(value).__name__} from Redis")


def _members(value: object) -> list[bytes]:
    if not isinstance(value, list | set | tuple):
        raise StoreError(f"unexpected reply type {type(value).__name__} from Redis")
    return [m for m in value if isinstance(m, bytes)]


def _member_pairs(reply: object) -> list[tuple[bytes, bytes]]:
    """(member, score) pairs of an index script's flat reply."""
    flat = _members(reply)
    return list(zip(flat[0::2], flat[1::2], strict=True))


def _name_of(member: bytes) -> bytes | None:
    """The HMK-Name an index member names (None if malformed: to be dropped)."""
    try:
        return bytes.fromhex(member.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def _cga_of(hex_text: bytes) -> IPv6Address | None:
    try:
        return IPv6Address(bytes.fromhex(hex_text.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        return None


def _time_reply(reply: object) -> float:
    """Unix seconds from a ``TIME`` reply (a Cluster client answers per node: any node will do)."""
    if isinstance(reply, dict):
        reply = next(iter(reply.values()), None)
    if isinstance(reply, list | tuple) and len(reply) == 2:
        return int(reply[0]) + int(reply[1]) / 1e6
    raise StoreError("unexpected reply from Redis to TIME")


def _verify_outcome(reply: object) -> ReplayOutcome | None:
    """The verdict of a VERIFY_* script reply; None when the record was stale."""
    if isinstance(reply, list) and reply == [3]:
        return None
    if not isinstance(reply, list) or len(reply) < 2 or reply[0] != 1:
        raise StoreError("unexpected FBU-verification reply from Redis")
    out = reply[1]
    if out not in (b"accepted", b"retransmission", b"replay"):
        raise StoreError("unexpected replay-check reply from Redis")
    return cast(ReplayOutcome, out.decode())


def _check_name(name: bytes, *, what: str = "hmk_name") -> None:
    if not isinstance(name, bytes) or not 0 < len(name) <= 64:
        raise ValueError(f"{what} must be 1-64 octets")
