"""The store's operations as blocking calls: each runs one :class:`~aaa_fmip.store.ops.StoreOps` operation on the
blocking driver (:meth:`RedisStore.run`), writes in this process's turn for the audit chain. For callers that do
not drive operations themselves (the CLI, the tests, the RADIUS module's writes)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv6Address
from typing import TypeVar

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
from aaa_fmip.store.ops import (
    AUDIT_BATCH,
    ChainRef,
    Op,
    StoreOps,
)

T = TypeVar("T")


class StoreCalls:
    """The blocking calls of a store; :class:`~aaa_fmip.store.redis.RedisStore` provides ``ops``, ``run`` and
    ``run_replay``."""

    ops: StoreOps
    _audit_lock: threading.Lock  # this process's turn for the audit chain
    _audit_pending_lock: threading.Lock
    _audit_pending: list[chain.PendingAudit]  # entries queued for the next group commit (append_audits)

    def run(self, op: Op[T], what: str = "store call") -> T:
        raise NotImplementedError

    def run_replay(self, op: Op[T], what: str = "check_replay", *, turn: bool = False) -> T:
        raise NotImplementedError

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

    def audit_chains(self) -> list[ChainRef]:
        return self.run(self.ops.audit_chains(), "read audit")

    def audit_heads(self, numbers: Iterable[int] | None = None) -> list[tuple[ChainRef, int | None]]:
        return self.run(self.ops.audit_heads(numbers), "read audit")

    def take_moved(self) -> set[int]:
        return self.run(self.ops.take_moved(), "audit export")

    def report_moved(self, *, now: float) -> None:
        """Say now which slot chains this process appended to (otherwise said at most once a second)."""
        self.run(self.ops.report_moved(now=now, force=True), "audit export")

    def read_audit_raw_many(self, reads: Sequence[tuple[str | None, int, ChainRef]]) -> list[list[chain.StoredEntry]]:
        return self.run(self.ops.read_audit_raw_many(reads), "read audit")

    def read_audit_raw(self, after: str | None, count: int, ref: ChainRef | None = None) -> list[chain.StoredEntry]:
        return self.run(self.ops.read_audit_raw(after, count, ref), "read audit")

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

    def audit_exported(self, slot: int | None = None) -> tuple[int, str | None, str]:
        return self.run(self.ops.audit_exported(slot), "audit export")

    def audit_exported_all(self, numbers: Iterable[int] | None = None) -> dict[int | None, tuple[int, str | None, str]]:
        return self.run(self.ops.audit_exported_all(numbers), "audit export")

    def set_audit_exported_many(self, positions: dict[int | None, tuple[int, str, str]]) -> None:
        self.run(self.ops.set_audit_exported_many(positions), "audit export")

    def trim_audit(self, *, keep: int, now: float) -> int:
        return self.run(self.ops.trim_audit(keep=keep, now=now), "trim audit")
