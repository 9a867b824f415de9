"""The audit trail's operations: append (as part of other writes too), read, verify, checkpoints, export, retention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from aaa_fmip.errors import StoreError
from aaa_fmip.store import (
    AuditCheck,
    AuditEntry,
    Checkpoint,
)
from aaa_fmip.store import audit as chain
from aaa_fmip.store import scripts as lua
from aaa_fmip.store.ops.base import AUDIT_APPEND_ATTEMPTS, AUDIT_SCAN_LIMIT, Arg, Command, KeySchema, Op, Script, _b


class AuditOps(KeySchema):
    """The audit trail's operations: append (also as part of other writes), read, verify, checkpoints, export."""

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
