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
once, whatever a process has cached), decides the replay verdict and, if the FBU is accepted, writes its audit
entry (chained by the caller onto the head) and then the replay state; another verdict writes nothing and its
entry follows by group commit. Several such scripts of one process go in one pipeline. On a Cluster, or with a
WAIT behind the replay update, the record check and the replay update are one script in the session's slot and
the entry follows by group commit.
"""

from __future__ import annotations

from aaa_fmip.store.ops.audit import AuditOps
from aaa_fmip.store.ops.base import (
    AUDIT_APPEND_ATTEMPTS,
    AUDIT_BATCH,
    AUDIT_SCAN_LIMIT,
    DELETE_ATTEMPTS,
    EXTERNAL_ID_LIMIT,
    SEQ_MODULUS,
    Arg,
    ChainRef,
    Command,
    CommitResult,
    KeySchema,
    Op,
    Pipeline,
    RedisCall,
    Script,
    T,
    VerifyCommit,
)
from aaa_fmip.store.ops.replay import ReplayOps
from aaa_fmip.store.ops.sendkeys import SendKeyOps
from aaa_fmip.store.ops.sessions import SessionOps

__all__ = [
    "AUDIT_APPEND_ATTEMPTS",
    "AUDIT_BATCH",
    "AUDIT_SCAN_LIMIT",
    "DELETE_ATTEMPTS",
    "EXTERNAL_ID_LIMIT",
    "SEQ_MODULUS",
    "Arg",
    "AuditOps",
    "ChainRef",
    "Command",
    "CommitResult",
    "KeySchema",
    "Op",
    "Pipeline",
    "RedisCall",
    "ReplayOps",
    "Script",
    "SendKeyOps",
    "SessionOps",
    "StoreOps",
    "T",
    "VerifyCommit",
]


class StoreOps(SessionOps, ReplayOps, SendKeyOps):
    """The key schema and every operation of the store, for one prefix and KEK ring.

    State kept between operations: whether the deployment is a Cluster (set by the driver when it connects),
    the clock offset to the Redis server (measured with ``TIME``, forgotten after a connection error) and the
    audit chain's head as this process last wrote it. ``clock`` is the local wall clock (Unix seconds).


    The operations are grouped by what they touch (:mod:`.sessions`, :mod:`.replay`, :mod:`.sendkeys`,
    :mod:`.audit`) over one key schema (:class:`KeySchema`); this class is all of them.
    """
