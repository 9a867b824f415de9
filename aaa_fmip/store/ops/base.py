"""The store's vocabulary: Redis calls as values (:class:`Command`, :class:`Script`, :class:`Pipeline`), an
operation as a generator of them (:data:`Op`), the key schema and the helpers every group of operations uses."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Generator, Mapping
from ipaddress import IPv6Address
from typing import Any, Final, TypeVar, cast

from aaa_fmip.crypto.audit import AUDIT_GENESIS, slot_genesis
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import ConfigError, StoreError, StoreUnavailable
from aaa_fmip.store import (
    DEFAULT_PREFIX,
    PREFIX_RULE,
    AuditItem,
    ReplayOutcome,
    valid_prefix,
)
from aaa_fmip.store import audit as chain
from aaa_fmip.store.slots import SLOTS, WRITERS, chain_number, slot_of, slot_tag

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
    list of their replies. Calls of one and the same script go by digest (reloaded once if the server forgot
    it: then none of them ran); scripts in any other pipeline go as EVAL (nothing to reload after a restart).
    ``node_key``: send every call on one connection to the node of this key (a keyless ``WAIT`` behind a
    script must follow it on the same connection)."""

    calls: tuple[Command | Script, ...]
    node_key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyCommit:
    """What the commit of an FBU verification checks and writes (:meth:`StoreOps.verify_commit`): that the record
    at ``record_key`` is still the one whose key verified the authenticator (its stored value has SHA-1
    ``digest``; ``""``: not checked), the replay state of (``scope``, ``ar_id``) for ``sequence`` and
    ``authenticator`` (:meth:`StoreOps.check_replay`, kept ``ttl`` seconds), and ``accepted``: the audit entry of
    an accepted verdict, written with the commit where it can be (:attr:`KeySchema.verify_audits_inline`; else
    None). Any other verdict, and every verdict elsewhere, is committed without its entry: the caller appends it
    after the commit, before it answers."""

    record_key: str
    digest: str
    scope: bytes
    ar_id: bytes
    sequence: int
    authenticator: bytes
    ttl: int
    accepted: AuditItem | None


@dataclasses.dataclass(frozen=True, slots=True)
class ChainRef:
    """One chain of the audit trail and its keys: the main chain (``slot`` None: every entry that is not an FBU
    verification's, and those too without slot chains) or a slot chain, ``slot`` its number: the hash slot plus
    16384 times the writer (:mod:`aaa_fmip.store.slots`; docs/api.md, "Slot chains"). ``genesis``: the ``prev``
    of its first entry."""

    slot: int | None
    head: str
    stream: str
    anchor: str
    genesis: str


CommitResult = tuple[ReplayOutcome | None, bool]

RedisCall = Command | Script | Pipeline
Op = Generator[RedisCall, Any, T]
"""An operation: yields calls, is sent each reply, returns its result."""


AUDIT_APPEND_ATTEMPTS: Final = 200
AUDIT_BATCH: Final = 64  # entries committed in one script call at most
AUDIT_SCAN_LIMIT: Final = 10_000  # entries examined per read_audit call before returning a cursor
DELETE_ATTEMPTS: Final = 5
EXTERNAL_ID_LIMIT: Final = 256  # sessions returned per external id (e.g. one user's concurrent sessions)
SEQ_MODULUS: Final = 1 << 16  # the FBU Sequence Number is 16 bits (RFC 5568 §6.2.3)


class KeySchema:
    """The key names, the deadlines and the state the operations share (see :class:`StoreOps`)."""

    def __init__(
        self,
        kek: KekRing,
        *,
        prefix: str = DEFAULT_PREFIX,
        cluster: bool = False,
        slot_chains: bool | None = None,
        writer: int = 0,
        write_timeout: float = 0.5,
        clock: Callable[[], float],
    ) -> None:
        if not write_timeout > 0:
            raise ValueError("write_timeout must be positive")
        if not 0 <= writer < WRITERS:
            raise ConfigError(f"must be 0-{WRITERS - 1}", key="store.writer")
        if not valid_prefix(prefix):
            raise ConfigError(f"must be {PREFIX_RULE}", key="store.prefix")
        self.kek = kek
        self.p = prefix
        self.cluster = cluster
        self.slot_chains_setting = slot_chains  # None: on with a Cluster (``store.slot_chains``)
        self.writer = writer  # this process's number among the writers of the trail (``store.writer``)
        self.slot_chains_registered: set[int] = set()  # slots this process has added to the registry
        self.moved_pending: set[int] = set()  # slot chains this process appended to since it last said so
        self.moved_reported_at = float("-inf")  # when it last said so (clock)
        self._slot_chains: dict[int, ChainRef] = {}
        self._main_chain: ChainRef | None = None
        if self.slot_chains:
            slot_tag(0)  # the table of tags is built once per process: now, not in the first FBU's time
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
        return self.replay_wait is None and (not self.cluster or self.slot_chains)

    @property
    def slot_chains(self) -> bool:
        """Whether an accepted FBU's audit entry goes to the slot chain of its session's hash slot (one script,
        on a Cluster as elsewhere; several writers then rarely meet at one head) instead of the main chain."""
        setting = self.slot_chains_setting
        return self.cluster if setting is None else setting

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

    def audit_exported_slots_key(self) -> str:
        """Hash: slot → how far its chain was exported (``n:stream id:MAC``)."""
        return f"{self.p}:{{audit}}:exported-slots"

    def slot_chains_key(self) -> str:
        """Set of the slots whose chains have entries (a writer adds a slot before its first entry there):
        whole-trail operations read those chains."""
        return f"{self.p}:{{audit}}:slot-chains"

    def audit_moved_key(self) -> str:
        """Set of the slot chains appended to since the exporter last took it (writers add them at most once a
        second): an export pass reads those chains' heads only, and all of them only now and then."""
        return f"{self.p}:{{audit}}:moved"

    def main_chain(self) -> ChainRef:
        ref = self._main_chain
        if ref is None:
            ref = ChainRef(None, self.audit_head_key(), self.audit_stream_key(), self.audit_anchor_key(), AUDIT_GENESIS)
            self._main_chain = ref
        return ref

    def slot_chain(self, number: int) -> ChainRef:
        """The slot chain numbered ``number`` (:func:`~aaa_fmip.store.slots.chain_number`): its keys share the
        hash slot with the sessions hashed there; a writer's other than 0 are named after it."""
        ref = self._slot_chains.get(number)
        if ref is None:
            writer = number // SLOTS
            base = f"{self.p}:{{{slot_tag(number % SLOTS)}}}:audit" + (f"-w{writer}" if writer else "")
            ref = ChainRef(number, f"{base}-head", f"{base}-stream", f"{base}-anchor", slot_genesis(number))
            self._slot_chains[number] = ref
        return ref

    def fbu_chain(self, record_key: str) -> ChainRef:
        """The chain an accepted FBU's entry goes to, verified with the record at ``record_key``: the main chain,
        or with slot chains this writer's chain in the record's hash slot on a Cluster (one script), elsewhere
        this writer's one chain (no slot to share: one chain per writer, so writers never meet at a head)."""
        if not self.slot_chains:
            return self.main_chain()
        return self.slot_chain(chain_number(slot_of(record_key) if self.cluster else 0, self.writer))

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
    return _verdict(reply[1])


def _verdict(out: object) -> ReplayOutcome:
    """A verdict as a script returns it."""
    if out not in (b"accepted", b"retransmission", b"replay"):
        raise StoreError("unexpected replay-check reply from Redis")
    return cast(ReplayOutcome, out.decode())


def _check_name(name: bytes, *, what: str = "hmk_name") -> None:
    if not isinstance(name, bytes) or not 0 < len(name) <= 64:
        raise ValueError(f"{what} must be 1-64 octets")
