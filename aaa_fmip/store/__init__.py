"""The store: the only code that talks to Redis (architecture.md §5).

Records here are plain values; :mod:`aaa_fmip.store.ops` says how each operation maps onto Redis calls (key
material wrapped under the KEK, TTL = key lifetime, indexes that expire with their record, audit entries with
the state change they record), and :mod:`aaa_fmip.store.redis` runs them. Layout: ``urls`` (which client),
``scripts`` (Lua), ``records`` (the record codec), ``audit`` (the chain), ``ops`` (the operations), ``redis``
(the two drivers), ``embedded`` (the zero-configuration server). The service sees the :class:`Store` port.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeVar

from aaa_fmip.crypto.secrets import SecretBytes

if TYPE_CHECKING:
    from aaa_fmip.store.ops import CommitResult, Op, StoreOps, VerifyCommit

T = TypeVar("T")
AuditItem = tuple[str, Mapping[str, str | int | None], float]  # event, fields, at

ReplayOutcome = Literal["accepted", "retransmission", "replay"]

# What store.url and store.prefix may be (checked by the settings and again by the driver).
SCHEMES: Final = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")
DEFAULT_PREFIX: Final = "fmip"
# Braces are excluded because Redis Cluster reads "{...}" in a key name as a hash tag.
PREFIX_RULE: Final = "1-64 characters of A-Z a-z 0-9 _ . : - (no braces)"
_PREFIX: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def valid_prefix(prefix: str) -> bool:
    """Whether ``prefix`` may start every key name (:data:`PREFIX_RULE`)."""
    return _PREFIX.fullmatch(prefix) is not None


@dataclass(frozen=True)
class SessionRecord:
    """One AAA session's handover master key and what it is known by."""

    hmk_name: bytes  # 8 octets, RFC 5295 USRKName / DSUSRKName
    spi: int  # non-zero
    hmk: SecretBytes = field(repr=False)  # 64 octets; wrapped at rest
    user_name: str
    kind: Literal["eap", "dsrk"]
    created_at: float  # Unix seconds
    expires_at: float  # Unix seconds; the record's TTL
    calling_station_id: str | None = None  # normalised MAC, lowercase, "-" separated
    nas_identifier: str | None = None
    external_ids: tuple[str, ...] = ()  # e.g. "radius-class:..", "diameter-session:..", "user:.."


@dataclass(frozen=True)
class SendKeyRecord:
    """An RFC 5269 handover key, bound to the MN's CGA (SPI 0)."""

    cga: ipaddress.IPv6Address  # the MN's CGA (its PCoA)
    key_hash: bytes  # 16 octets: SHA-1/128 of the CGA public key (RFC 3971 §5.2)
    hk: SecretBytes = field(repr=False)  # 32 octets; wrapped at rest
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class AuditEntry:
    id: str  # Redis stream id
    at: float
    event: str
    fields: dict[str, str | int | bool]  # JSON types kept
    prev: str  # MAC of the previous entry ("0"*64 for the first)
    hash: str  # this entry's MAC (HMAC-SHA-256 under the audit key of ``kid``), hex
    n: int = 0  # position in the chain, 1 for the first entry ever
    kid: str = ""  # the KEK id whose audit key made the MAC
    slot: int | None = None  # the slot chain holding it (None: the main chain)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the chain: ``n`` entries so far, the last one's MAC ``head``, at time ``at``
    (``%.6f`` text). ``signature`` is Ed25519 under the checkpoint key of ``kid`` (aaa_fmip.crypto.audit)."""

    n: int
    head: str
    at: str
    kid: str
    signature: bytes = field(repr=False)


@dataclass(frozen=True)
class AuditCheck:
    ok: bool
    entries: int  # entries in the stream now
    head: str  # MAC of the last entry
    first_bad_id: str | None = None
    n: int = 0  # position of the last entry
    first_n: int = 1  # position of the first retained entry (> 1 after retention trimmed the stream)
    problem: str | None = None  # why not ok, in words: "entry edited or forged", "truncated since checkpoint"...
    checkpoint: str | None = None  # the kept checkpoint: "matches", "older than the retained trail", or None


class AsyncStore(Protocol):
    """The asyncio side of a :class:`Store` (one event loop's client): a flow of operations, and the audit
    group commit."""

    async def arun(self, op: Op[T], what: str = ...) -> T: ...

    async def arun_replay(self, op: Op[T], what: str = ..., *, turn: bool = ...) -> T: ...

    async def append_audits(self, entries: Sequence[AuditItem]) -> list[AuditEntry]: ...

    async def commit_verify(self, commit: VerifyCommit) -> CommitResult: ...

    async def aclose(self) -> None: ...


class Store(Protocol):
    """The port the service layer sees (architecture.md §7): operations to compose (:attr:`ops`, each a
    generator of Redis calls) and the drivers that run them, plus the calls that hold this process's turn for
    the audit chain. :class:`aaa_fmip.store.redis.RedisStore` implements it."""

    @property
    def ops(self) -> StoreOps: ...

    @property
    def aio(self) -> AsyncStore | None: ...

    def run(self, op: Op[T], what: str = ...) -> T: ...

    def run_replay(self, op: Op[T], what: str = ..., *, turn: bool = ...) -> T: ...

    def commit_verify(self, commit: VerifyCommit) -> CommitResult: ...

    def ping(self) -> None: ...

    def check_durability(self, *, require: bool = ...) -> object: ...

    def put_session(
        self, rec: SessionRecord, *, now: float, audits: Sequence[AuditItem] = ..., deadline: float | None = ...
    ) -> None: ...

    def delete_session(
        self,
        hmk_name: bytes,
        *,
        now: float,
        audits_for: Callable[[SessionRecord], Sequence[AuditItem]] | None = ...,
        deadline: float | None = ...,
    ) -> SessionRecord | None: ...

    def append_audits(self, entries: Sequence[AuditItem]) -> list[AuditEntry]: ...

    def verify_audit(self, checkpoint: Checkpoint | None = ...) -> AuditCheck: ...

    def checkpoint(self, *, now: float) -> Checkpoint: ...

    @property
    def audit_public_keys(self) -> dict[str, bytes]: ...
