"""The audit trail's operations: append (as part of other writes too), read, verify, checkpoints, export, retention."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, cast

from aaa_fmip.errors import StoreError
from aaa_fmip.store import (
    AuditCheck,
    AuditEntry,
    Checkpoint,
)
from aaa_fmip.store import audit as chain
from aaa_fmip.store import scripts as lua
from aaa_fmip.store.ops.base import (
    AUDIT_APPEND_ATTEMPTS,
    AUDIT_SCAN_LIMIT,
    Arg,
    ChainRef,
    Command,
    KeySchema,
    Op,
    Pipeline,
    Script,
    T,
    _b,
    _members,
)
from aaa_fmip.store.slots import CHAINS, SLOTS

MGET_KEYS: Final = 2048  # chain heads per MGET (audit_heads)
MOVED_REPORT_SECONDS: Final = 1.0  # a writer adds the chains it moved to the exporter's set at most this often
MOVED_TAKE: Final = 10_000  # members per SPOP when the exporter takes that set


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

    # --- the chains --------------------------------------------------------------------------------------

    def report_moved(self, *, now: float, force: bool = False) -> Op[None]:
        """Add the slot chains this process appended to since it last did to the set the exporter takes
        (:meth:`KeySchema.audit_moved_key`), at most once per :data:`MOVED_REPORT_SECONDS` unless ``force``: one
        call a second, not one per FBU. A failure keeps them for the next time (the exporter's full passes find
        any chain never reported, as after a crash)."""
        pending = self.moved_pending
        if not pending or (not force and now - self.moved_reported_at < MOVED_REPORT_SECONDS):
            return
        numbers = sorted(pending)
        try:
            yield Command(("SADD", self.audit_moved_key(), *map(str, numbers)))
        except StoreError:
            return
        pending.difference_update(numbers)
        self.moved_reported_at = now

    def take_moved(self) -> Op[set[int]]:
        """The slot chains writers said they appended to, removed from the set as they are read (SPOP)."""
        out: set[int] = set()
        while True:
            members = _members((yield Command(("SPOP", self.audit_moved_key(), MOVED_TAKE))))
            out.update(int(m) for m in members if m.isdigit() and int(m) < CHAINS)
            if len(members) < MOVED_TAKE:
                return out

    def audit_chains(self) -> Op[list[ChainRef]]:
        """The main chain, then every slot chain that has a head in Redis, in slot order (:meth:`audit_heads`)."""
        return [ref for ref, _ in (yield from self.audit_heads())]

    def audit_heads(self, numbers: Iterable[int] | None = None) -> Op[list[tuple[ChainRef, int | None]]]:
        """:meth:`audit_chains` with the position each chain's head names (None: malformed or none): the main
        chain, then the slot chains of the registry (:meth:`KeySchema.slot_chains_key`), or those numbered
        ``numbers``, that have a head."""
        if numbers is None:
            numbers = (int(m) for m in _members((yield Command(("SMEMBERS", self.slot_chains_key())))) if m.isdigit())
        wanted = sorted({n for n in numbers if 0 <= n < CHAINS})
        return (yield from self._heads([self.main_chain(), *(self.slot_chain(n) for n in wanted)]))

    def _heads(self, refs: Sequence[ChainRef]) -> Op[list[tuple[ChainRef, int | None]]]:
        """The chains of ``refs`` that have a head (the main chain always), with the position it names, in the
        order of ``refs``: MGETs of up to 2,048 heads, on a Cluster one per hash slot (the chains of all writers in
        a slot share it; an MGET may not span slots), so the calls grow with the slots in use, not the writers."""
        if not refs:
            return []
        groups: dict[int | None, list[int]] = {}
        for i, ref in enumerate(refs):
            key = (None if ref.slot is None else ref.slot % SLOTS) if self.cluster else 0
            groups.setdefault(key, []).append(i)
        chunks = [idx[i : i + MGET_KEYS] for idx in groups.values() for i in range(0, len(idx), MGET_KEYS)]
        answers = yield Pipeline(tuple(Command(("MGET", *(refs[i].head for i in chunk))) for chunk in chunks))
        replies: list[object] = [None] * len(refs)
        for chunk, answer in zip(chunks, answers, strict=True):
            for i, raw in zip(chunk, answer, strict=True):
                replies[i] = raw
        pairs = zip(refs, replies, strict=True)
        return [(ref, _head_n(raw)) for ref, raw in pairs if raw is not None or ref.slot is None]

    def _xrange(
        self, after: str | None, count: int, ref: ChainRef | None = None, *, inclusive: bool = False
    ) -> Op[list[tuple[bytes, dict[bytes, bytes]]]]:
        stream = self.audit_stream_key() if ref is None else ref.stream
        start = "-" if after is None else after if inclusive else f"({after}"
        return cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            (yield Command(("XRANGE", stream, start, "+", "COUNT", count))),
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
        """Audit entries in stream order matching every given filter (``since <= at < until``; ``spi`` and
        ``ar`` match the fields of those names), at most ``limit``; returns them and the cursor to continue
        with, or None at the end of the trail. With slot chains the chains are merged by stream id (ties: the
        main chain first, then by slot); a cursor then names the chain too (``<stream id>.<slot>``). A call
        examines at most 10 000 entries, so a selective filter can return fewer than ``limit`` entries (even
        none) together with a cursor. ValueError for a cursor that is no such position."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        position = None if cursor is None else chain.parse_cursor(cursor)
        if cursor is not None and position is None:
            raise ValueError("invalid audit cursor")
        heads = yield from self.audit_heads()
        refs = [ref for ref, _ in heads]
        merge = chain.ChainMerge([ref.slot for ref in refs], position, [n for _, n in heads])
        batch = min(max(limit, 100), 1000)
        first = max(2, min(batch, 2 * limit // len(refs) + 1))  # the first read of each chain: a share of the page
        out: list[AuditEntry] = []
        scanned = 0
        while True:
            wanted = [(i, first if merge.reads[i] == 0 else batch) for i in merge.wanted()]
            if wanted:
                calls = []
                for i, count in wanted:
                    after, inclusive = merge.start(i)
                    calls.append(self._xrange(after, count, refs[i], inclusive=inclusive))
                replies = yield from _together(calls)
                for (i, count), rows in zip(wanted, replies, strict=True):
                    merge.fill(i, rows, count)
            more, parsed = merge.take()
            if not more:
                return out, None
            scanned += 1
            if parsed is not None and chain.matches(parsed.entry, since, until, event, spi, ar):
                out.append(parsed.entry)
                if len(out) == limit:
                    return out, None if merge.at_end() else merge.cursor()
            if scanned >= AUDIT_SCAN_LIMIT:
                return out, None if merge.at_end() else merge.cursor()

    def read_audit_raw(self, after: str | None, count: int, ref: ChainRef | None = None) -> Op[list[chain.StoredEntry]]:
        """Up to ``count`` entries of one chain (default: the main chain) after stream id ``after`` (None: from
        the start), with the texts their MAC covers, for export. Malformed entries are skipped."""
        slot = None if ref is None else ref.slot
        rows = yield from self._xrange(after, count, ref)
        return [s for s in (chain.parse_entry(eid, raw, slot) for eid, raw in rows) if s is not None]

    def _verify_chains(
        self, refs: Sequence[ChainRef], kept: Sequence[Checkpoint | None]
    ) -> Op[list[tuple[AuditCheck, dict[int, tuple[int, str]]]]]:
        """Chains checked from genesis or their retention anchors (:class:`~aaa_fmip.store.audit.ChainVerifier`),
        each against its ``kept`` position too (a checkpoint, or for a slot chain its last seal), all at once:
        anchors, entries in rounds of 1,000 and heads a pipeline each. Heads are read after the entries (an entry
        appended meanwhile is not taken for a cut tail). Per chain, its check and the seals it holds."""
        anchors = yield from _together([_get(ref.anchor) for ref in refs])
        verifiers = [
            chain.ChainVerifier(self.chain, *self.chain.anchor_of(raw), cp, ref.genesis)
            for ref, raw, cp in zip(refs, anchors, kept, strict=True)
        ]
        after: list[str | None] = [None] * len(refs)
        pending = list(range(len(refs)))
        while pending:
            replies = yield from _together([self._xrange(after[i], 1000, refs[i]) for i in pending])
            more = []
            for i, rows in zip(pending, replies, strict=True):
                for eid, raw in rows:
                    text = after[i] = eid.decode("ascii")
                    verifiers[i].feed(text, chain.parse_entry(eid, raw, refs[i].slot))
                if len(rows) == 1000:
                    more.append(i)
            pending = more
        heads = yield from _together([_get(ref.head) for ref in refs])
        return [(v.finish(head), v.seals) for v, head in zip(verifiers, heads, strict=True)]

    def _verify_all(self, checkpoint: Checkpoint | None) -> Op[chain.TrailCheck]:
        if checkpoint is not None:
            self.chain.check(checkpoint)
        refs = yield from self.audit_chains()
        (main,) = yield from self._verify_chains(refs[:1], [checkpoint])
        trail = chain.TrailCheck(*main)
        slots = refs[1:]
        # a chain the main chain has sealed is checked even if the registry lost it
        listed = {ref.slot for ref in slots}
        sealed = [self.slot_chain(slot) for slot in sorted(trail.seals) if slot not in listed and slot < CHAINS]
        slots += [ref for ref, _ in (yield from self._heads(sealed))]
        if slots:
            verified = yield from self._verify_chains(slots, [trail.seal_of(_slot(ref)) for ref in slots])
            for ref, (check, _) in zip(slots, verified, strict=True):
                trail.add(_slot(ref), check)
        return trail

    def verify_audit(self, checkpoint: Checkpoint | None = None) -> Op[AuditCheck]:
        """Check the whole trail: the main chain from genesis or from its retention anchor, against ``checkpoint``
        too when given (its signature must verify: else CryptoError), and every slot chain, each against the last
        seal the main chain holds of it (a slot chain cut or wiped below its seal is found; ``n``, ``head`` and
        ``first_n`` are the main chain's, ``entries`` counts every chain)."""
        trail = yield from self._verify_all(checkpoint)
        return trail.result()

    def checkpoint(self, *, now: float) -> Op[Checkpoint]:
        """Verify the trail, seal the slot chains' heads into the main chain (where they moved since their last
        seal), verify again, then sign the main chain's head; StoreError naming the problem if it fails (a
        checkpoint must never vouch for a broken trail)."""
        trail = yield from self._verify_all(None)
        check = trail.result()
        if not check.ok:
            raise StoreError(f"the audit trail does not verify: {check.problem}")
        unsealed = trail.unsealed()
        if unsealed:
            items = [
                (chain.SEAL_EVENT, chain.seal_fields(unsealed[i : i + chain.SEAL_SLOTS]), now)
                for i in range(0, len(unsealed), chain.SEAL_SLOTS)
            ]
            yield from self.append_audits(chain.pending(items))
            check = yield from self.verify_audit()
            if not check.ok:
                raise StoreError(f"the audit trail does not verify: {check.problem}")
        return self.chain.sign(check.n, check.head, now)

    def audit_exported(self, slot: int | None = None) -> Op[tuple[int, str | None, str]]:
        """(n, stream id, MAC) of the last entry of a chain (default: the main chain) an exporter confirmed as
        kept outside Redis."""
        if slot is None:
            return _position((yield Command(("GET", self.audit_exported_key()))))
        return _position((yield Command(("HGET", self.audit_exported_slots_key(), str(slot)))))

    def audit_exported_all(
        self, numbers: Iterable[int] | None = None
    ) -> Op[dict[int | None, tuple[int, str | None, str]]]:
        """:meth:`audit_exported` of every chain at once (the main chain, and every slot chain exported so far), or
        of the main chain and the slot chains numbered ``numbers`` only."""
        wanted = None if numbers is None else sorted(set(numbers))
        calls = [Command(("GET", self.audit_exported_key()))]
        if wanted is None:
            calls.append(Command(("HGETALL", self.audit_exported_slots_key())))
        elif wanted:
            calls.append(Command(("HMGET", self.audit_exported_slots_key(), *map(str, wanted))))
        replies = yield Pipeline(tuple(calls))
        out: dict[int | None, tuple[int, str | None, str]] = {None: _position(replies[0])}
        if wanted is None:
            for field, value in cast(dict[bytes, bytes], replies[1]).items():
                if not field.isdigit():
                    raise StoreError("the audit export position in Redis is malformed")
                out[int(field)] = _position(value)
        elif wanted:
            for number, raw in zip(wanted, cast(list[object], replies[1]), strict=True):
                if raw is not None:
                    out[number] = _position(raw)
        return out

    def set_audit_exported_many(self, positions: dict[int | None, tuple[int, str, str]]) -> Op[None]:
        """Record for each chain (None: the main chain) that every entry up to position n (stream id, MAC) is kept
        outside, in one round trip."""
        slots: list[str] = []
        calls: list[Command | Script] = []
        for slot, (n, entry_id, mac) in positions.items():
            if not chain.valid_stream_id(entry_id) or not chain.valid_mac(mac):
                raise ValueError("invalid stream id or MAC")
            value = f"{n}:{entry_id}:{mac}"
            if slot is None:
                calls.append(Command(("SET", self.audit_exported_key(), value)))
            else:
                slots += (str(slot), value)
        if slots:
            calls.append(Command(("HSET", self.audit_exported_slots_key(), *slots)))
        if calls:
            yield Pipeline(tuple(calls))

    def read_audit_raw_many(
        self, reads: Sequence[tuple[str | None, int, ChainRef]]
    ) -> Op[list[list[chain.StoredEntry]]]:
        """:meth:`read_audit_raw` of several chains (after, count, chain) in one round trip."""
        return (yield from _together([self.read_audit_raw(after, count, ref) for after, count, ref in reads]))

    def trim_audit(self, *, keep: int, now: float) -> Op[int]:
        """Retention: in each chain, drop the oldest entries beyond its newest ``keep``, only entries already
        exported, leaving the signed checkpoint of the last one dropped as the anchor verification goes on from.
        Refuses (StoreError) on a trail that does not verify. Returns how many entries were dropped."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        trail = yield from self._verify_all(None)
        check = trail.result()
        if not check.ok:
            raise StoreError(f"the audit trail does not verify, not trimming: {check.problem}")
        exported = yield from self.audit_exported_all()
        dropped = 0
        for slot, verified in trail.chains():
            ref = self.main_chain() if slot is None else self.slot_chain(slot)
            exported_n = exported.get(slot, (0,))[0]
            dropped += yield from self._trim_chain(ref, min(exported_n, verified.n - keep), verified.first_n, now)
        return dropped

    def _trim_chain(self, ref: ChainRef, cut_n: int, first_n: int, now: float) -> Op[int]:
        """Drop a verified chain's entries up to position ``cut_n`` (its first retained one is ``first_n``)."""
        if cut_n < first_n:
            return 0
        skip = cut_n - first_n  # entries before the one at cut_n (the verified chain has no gaps)
        after: str | None = None
        while True:
            rows = yield from self.read_audit_raw(after, min(1000, skip + 2), ref)
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
        return int((yield Script(lua.AUDIT_TRIM, (ref.stream, ref.anchor), (kept.id, anchor))))


def _position(raw: object) -> tuple[int, str | None, str]:
    """An export position as stored (``n:stream id:MAC``); nothing exported yet: (0, None, 64 zeros)."""
    value = _b(raw)
    if value is None:
        return 0, None, chain.GENESIS_HEAD[1]
    n_text, _, rest = value.decode("ascii", "replace").partition(":")
    eid, _, mac = rest.partition(":")
    if not n_text.isdigit() or not chain.valid_stream_id(eid) or not chain.valid_mac(mac):
        raise StoreError("the audit export position in Redis is malformed")
    return int(n_text), eid, mac


def _head_n(raw: object) -> int | None:
    """The position a chain's head names (None when there is none or it is malformed: verification says so)."""
    try:
        return chain.parse_head(raw)[0] if raw is not None else None
    except StoreError:
        return None


def _get(key: str) -> Op[object]:
    return (yield Command(("GET", key)))


def _slot(ref: ChainRef) -> int:
    assert ref.slot is not None, "a slot chain"
    return ref.slot


def _together(ops: list[Op[T]]) -> Op[list[T]]:
    """Several one-call operations sent as one pipeline (each must yield exactly one call)."""
    if len(ops) == 1:
        return [(yield from ops[0])]
    calls = [next(op) for op in ops]
    replies = yield Pipeline(tuple(cast(Command | Script, c) for c in calls))
    out = []
    for op, reply in zip(ops, replies, strict=True):
        try:
            op.send(reply)
        except StopIteration as done:
            out.append(done.value)
        else:
            raise AssertionError("a pipelined operation made a second call")
    return out


# --- reply helpers ----------------------------------------------------------------------------------------
