"""The audit chain's pure parts (format v2): entries to append, the head, replies, stored entries, verification.

No client here: :mod:`aaa_fmip.store.ops` turns these into Redis calls. Keys and codes (entry MAC, checkpoint
signature) are in :mod:`aaa_fmip.crypto.audit`.

Stream entry fields: ``v`` (``2``), ``n`` (position, 1 for the first entry ever), ``at`` (Unix seconds as text
``%.6f``), ``event``, ``f`` (the caller's fields as canonical JSON: keys sorted, values keep their JSON types,
``None`` values omitted), ``prev`` (the previous entry's MAC, 64 zeros before the first), ``kid`` (the KEK id
whose audit key made the MAC) and ``mac``. The head key holds ``n:mac`` of the last entry.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import heapq
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Final

from aaa_fmip.crypto.audit import AUDIT_GENESIS, AuditKeys, verify_checkpoint_signature
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import CryptoError, StoreError, StoreUnavailable
from aaa_fmip.store import AuditCheck, AuditEntry, AuditItem, Checkpoint
from aaa_fmip.store.slots import CHAINS

VERSION: Final = "2"
GENESIS_HEAD: Final = (0, AUDIT_GENESIS)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")

REFUSED: Final = object()  # an audited script's precondition failed: nothing was written


@dataclasses.dataclass
class PendingAudit:
    """An audit entry waiting to be appended (by a group commit or with a state change), and what became of it."""

    event: str
    at_text: str
    fields: dict[str, str | int | bool]
    fields_json: str
    entry: AuditEntry | None = None
    error: Exception | None = None


@dataclasses.dataclass(frozen=True)
class StoredEntry:
    """An entry as read back, with the texts its MAC covers."""

    entry: AuditEntry
    at_text: str
    fields_json: str


# json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False) builds this encoder on every call;
# kept once, it gives the same text for less (every FBU verification makes an entry). Safe across threads.
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_fields(fields: Mapping[str, object]) -> str:
    """The canonical JSON text of an entry's fields, as stored and authenticated (keys sorted, no spaces)."""
    return _CANONICAL.encode(fields)


def audit_fields(event: str, fields: Mapping[str, str | int | None], at: float) -> dict[str, str | int | bool]:
    """Validate one audit entry; its fields as stored (``None`` values left out, JSON types kept)."""
    if not event:
        raise ValueError("event must not be empty")
    if not math.isfinite(at):
        raise ValueError("at must be a finite Unix time")
    out: dict[str, str | int | bool] = {}
    for name, value in fields.items():
        if not name or "\x00" in name:
            raise ValueError("audit field names must be non-empty")
        if value is None:
            continue
        if not isinstance(value, str | int):  # bool is an int
            raise TypeError(f"audit field {name!r} must be str, int, bool or None")
        out[name] = value
    return out


def pending(entries: Sequence[AuditItem]) -> list[PendingAudit]:
    out = []
    for event, fields, at in entries:
        checked = audit_fields(event, fields, at)
        out.append(PendingAudit(event, f"{at:.6f}", checked, canonical_fields(checked)))
    return out


def parse_head(raw: object) -> tuple[int, str]:
    """The audit head as stored (``n:mac``), or the genesis head when there is none yet."""
    if raw is not None and not isinstance(raw, bytes):
        raise StoreError("unexpected reply type for the audit head")
    if not raw:
        return GENESIS_HEAD
    n_text, sep, mac = raw.decode("ascii", "replace").partition(":")
    if not sep or not n_text.isdigit() or not _HEX64.fullmatch(mac):
        raise StoreError("the audit head in Redis is malformed (edited outside the service?)")
    return int(n_text), mac


def head_value(head: tuple[int, str]) -> str:
    return f"{head[0]}:{head[1]}"


def valid_stream_id(text: str) -> bool:
    if not _STREAM_ID.fullmatch(text):
        return False
    ms, seq = text.split("-")
    return int(ms) < 1 << 64 and int(seq) < 1 << 64


def valid_mac(text: str) -> bool:
    return bool(_HEX64.fullmatch(text))


class AuditChain:
    """The keys of the chain (one pair per KEK of the ring) and what this process last wrote as the head."""

    def __init__(self, ring: KekRing) -> None:
        self.keys = {k.key_id: AuditKeys.derive(k) for k in (ring.current, *ring.previous)}
        self.kid = ring.current.key_id
        self.head_hint: tuple[int, str] | None = None  # a stale hint costs one retry
        self.slot_heads: dict[int, tuple[int, str]] = {}  # the same per slot chain (docs/api.md, "Slot chains")
        self.moved = 0  # scripts refused: the head was not where this process expected (another writer moved it,
        # or a chain it had not read yet); each costs one call more

    def append_args(
        self, batch: list[PendingAudit], head: tuple[int, str], genesis: str = AUDIT_GENESIS
    ) -> tuple[list[str | int], str, list[tuple[int, str, str]]]:
        """The script arguments chaining ``batch`` onto ``head`` (per entry its stream values n, at, event, f,
        prev, kid, mac: ``scripts.AUDIT_WRITES``), the new head, and each entry's (n, prev, mac). An empty
        chain's head is (0, 64 zeros) in Redis whatever the chain; its first entry links to ``genesis``."""
        keys = self.keys[self.kid]
        kid = self.kid
        args: list[str | int] = []
        chained: list[tuple[int, str, str]] = []
        n, link = head
        if n == 0:
            link = genesis
        for it in batch:
            n += 1
            mac = keys.mac(n, link, it.at_text, it.event, it.fields_json)
            args += (n, it.at_text, it.event, it.fields_json, link, kid, mac)
            chained.append((n, link, mac))
            link = mac
        return args, head_value((n, link)), chained

    def apply_reply(
        self, batch: list[PendingAudit], chained: list[tuple[int, str, str]], reply: object
    ) -> tuple[tuple[int, str] | None, object]:
        """Record the outcome of an audited script: (None, its result) when it ran (``REFUSED`` when its
        precondition failed), else (the head another writer left, None)."""
        if not isinstance(reply, list) or not reply or not isinstance(reply[0], int):
            raise StoreError("unexpected audit-append reply from Redis")
        status = reply[0]
        if status == -1:
            raise StoreUnavailable("the write reached Redis after its deadline; nothing was written")
        if status == 0 and len(reply) == 2:
            self.moved += 1
            self.head_hint = None  # another writer moved the head: chain onto the one the script returned
            return parse_head(reply[1]), None
        if status == 2:
            return None, REFUSED
        if status != 1 or len(reply) != 2 + len(batch):
            raise StoreError("unexpected audit-append reply from Redis")
        for it, entry_id, (n, prev, mac) in zip(batch, reply[2:], chained, strict=True):
            it.entry = AuditEntry(
                id=entry_id.decode("ascii") if isinstance(entry_id, bytes) else str(entry_id),
                at=float(it.at_text),
                event=it.event,
                fields=dict(it.fields),
                prev=prev,
                hash=mac,
                n=n,
                kid=self.kid,
            )
        if chained:
            self.head_hint = (chained[-1][0], chained[-1][2])
        return None, reply[1]

    def entry_ok(self, stored: StoredEntry, n: int, prev: str) -> bool:
        """The entry carries a MAC of ours for its texts, at position ``n`` after ``prev``."""
        e = stored.entry
        keys = self.keys.get(e.kid)
        if keys is None or e.n != n or e.prev != prev or not 0 < n < 1 << 64:
            return False
        return hmac.compare_digest(keys.mac(n, prev, stored.at_text, e.event, stored.fields_json), e.hash)

    @property
    def public_keys(self) -> dict[str, bytes]:
        return {kid: keys.public_key for kid, keys in self.keys.items()}

    def sign(self, n: int, head: str, at: float) -> Checkpoint:
        at_text = f"{at:.6f}"
        keys = self.keys[self.kid]
        return Checkpoint(n=n, head=head, at=at_text, kid=self.kid, signature=keys.sign_checkpoint(n, head, at_text))

    def check(self, cp: Checkpoint) -> None:
        """Raise CryptoError unless ``cp`` was signed under a KEK of the ring."""
        keys = self.keys.get(cp.kid)
        if keys is None:
            raise CryptoError(f"the checkpoint was signed under KEK {cp.kid!r}, which is not configured")
        verify_checkpoint_signature(keys.public_key, cp.n, cp.head, cp.at, cp.signature)

    def anchor_of(self, raw: object) -> tuple[Checkpoint | None, bool]:
        """The retention anchor as stored (None if none), and whether it is sound (well-formed, signed by us)."""
        if raw is None:
            return None, True
        anchor = checkpoint_from_text(raw) if isinstance(raw, bytes) else None
        if anchor is None:
            return None, False
        try:
            self.check(anchor)
        except CryptoError:
            return anchor, False
        return anchor, True


def parse_entry(entry_id: bytes, raw: Mapping[bytes, bytes], slot: int | None = None) -> StoredEntry | None:
    """An entry as stored in the main chain or the chain of ``slot`` (texts kept: the MAC covers them), or None
    if malformed."""
    try:
        d = {k.decode("utf-8"): v.decode("utf-8") for k, v in raw.items()}
        fields = json.loads(d["f"])
        if d["v"] != VERSION or not isinstance(fields, dict) or not d["n"].isdigit():
            return None
        entry = AuditEntry(
            id=entry_id.decode("ascii"),
            at=float(d["at"]),
            event=d["event"],
            fields=fields,
            prev=d["prev"],
            hash=d["mac"],
            n=int(d["n"]),
            kid=d["kid"],
            slot=slot,
        )
    except (KeyError, ValueError, UnicodeDecodeError, AttributeError):
        return None
    return StoredEntry(entry, d["at"], d["f"])


def matches(
    e: AuditEntry, since: float | None, until: float | None, event: str | None, spi: int | None, ar: str | None
) -> bool:
    return (
        (since is None or e.at >= since)
        and (until is None or e.at < until)
        and (event is None or e.event == event)
        and (spi is None or e.fields.get("spi") == spi)
        and (ar is None or e.fields.get("ar") == ar)
    )


# what a chain checked against a kept position can show (ChainVerifier), said of a slot chain's seal (TrailCheck)
_KEPT_ANCHOR: Final = "the retention anchor differs from the kept checkpoint"
_KEPT_DIFFERS: Final = "the entry at the checkpoint's position differs from it"
_KEPT_CUT: Final = "the trail is shorter than the kept checkpoint: truncated or wiped since"


class ChainVerifier:
    """Verification as a fold over the stream (pure): :meth:`feed` each row, :meth:`finish` with the head."""

    def __init__(
        self,
        chain: AuditChain,
        anchor: Checkpoint | None,
        anchor_sound: bool,
        kept: Checkpoint | None,
        genesis: str = AUDIT_GENESIS,
    ):
        self.chain = chain
        self.kept = kept
        self.problem = None if anchor_sound else "the retention anchor is malformed or its signature does not verify"
        self.n, self.head = (anchor.n, anchor.head) if anchor is not None else (0, genesis)
        self.seals: dict[int, tuple[int, str]] = {}  # slot → (n, MAC) as the last verified seal entry states
        self.first_n = self.n + 1
        self.count = 0
        self.first_bad: str | None = None
        self.last_id: str | None = None
        self.cp_state: str | None = None
        if kept is not None and kept.n <= self.n:
            if kept.n == self.n and hmac.compare_digest(kept.head, self.head):
                self.cp_state = "matches"
            elif kept.n == self.n:
                self.problem = self.problem or _KEPT_ANCHOR
                self.cp_state = "differs"
            else:
                self.cp_state = "older than the retained trail (compare it with your export)"

    def feed(self, entry_id: str, stored: StoredEntry | None) -> None:
        self.count += 1
        self.last_id = entry_id
        if self.first_bad is None and (stored is None or not self.chain.entry_ok(stored, self.n + 1, self.head)):
            self.first_bad = entry_id
            self.problem = self.problem or "an entry was edited, forged, inserted or deleted"
        if stored is None:
            self.head = "?"
            return
        self.n, self.head = stored.entry.n, stored.entry.hash
        if stored.entry.event == SEAL_EVENT and self.first_bad is None:
            self.seals.update(parse_seal(stored.entry.fields))
        kept = self.kept
        if kept is not None and self.cp_state is None and self.n == kept.n:
            if hmac.compare_digest(self.head, kept.head):
                self.cp_state = "matches"
            else:
                self.cp_state = "differs"
                self.problem = self.problem or _KEPT_DIFFERS
                self.first_bad = self.first_bad or entry_id

    def finish(self, head_raw: object) -> AuditCheck:
        try:
            stored_head: tuple[int, str] | None = parse_head(head_raw)
        except StoreError:
            stored_head = None
        problem = self.problem
        if stored_head is not None and self.n == 0 and stored_head[0] == 0:
            stored_head = (0, self.head)  # an empty chain: its head is 0:zeros in Redis whatever its genesis
        if problem is None and stored_head != (self.n, self.head):
            problem = "the head does not name the last entry (the tail was cut, or the head edited)"
        cp_state = self.cp_state
        if self.kept is not None and cp_state is None:
            cp_state = "not reached"
            problem = problem or _KEPT_CUT
        first_bad = self.first_bad if problem is None or self.first_bad is not None else self.last_id
        return AuditCheck(
            ok=problem is None,
            entries=self.count,
            head=self.head if self.n else AUDIT_GENESIS,
            first_bad_id=first_bad,
            n=self.n,
            first_n=self.first_n,
            problem=problem,
            checkpoint=cp_state,
        )


# --- the trail as several chains --------------------------------------------------------------------------------

_CURSOR = re.compile(r"(\d{1,20})-(\d{1,20})(?:\.(\d{1,7}))?")
_MAIN_ORDER: Final = -1  # the main chain sorts before every slot chain at the same stream id
_MAX_ID: Final = (1 << 64) - 1


def parse_cursor(text: str) -> tuple[tuple[int, int], int | None] | None:
    """A read cursor: ``<stream id>`` (an entry of the main chain) or ``<stream id>.<number>`` (of the slot chain
    of that number); None if it is neither."""
    m = _CURSOR.fullmatch(text)
    if m is None or not valid_stream_id(f"{m[1]}-{m[2]}"):
        return None
    slot = None if m[3] is None else int(m[3])
    if slot is not None and slot >= CHAINS:
        return None
    return (int(m[1]), int(m[2])), slot


def entry_cursor(entry_id: str, slot: int | None) -> str:
    """The cursor that names an entry (:func:`parse_cursor`)."""
    return entry_id if slot is None else f"{entry_id}.{slot}"


class ChainMerge:
    """Reading several chains as one sequence, ordered by (stream id, chain: the main chain first, then by slot):
    a k-way merge (pure, a heap of the chains' next entries) over buffers the caller fills. Before each
    :meth:`take`, fill every chain :meth:`wanted` names (from :meth:`start`), so that no chain's next entry is
    unknown when the least is taken. Entries are parsed only when taken."""

    def __init__(
        self,
        slots: Sequence[int | None],
        position: tuple[tuple[int, int], int | None] | None,
        heads: Sequence[int | None] | None = None,
    ):
        self.heads = heads  # per chain, the position its head named when the read began (reached: it is done)
        self.order = [_MAIN_ORDER if slot is None else slot for slot in slots]
        self.slots = list(slots)
        self.position = position
        self.buffers: list[collections.deque[tuple[tuple[int, int, int], bytes, Mapping[bytes, bytes]]]] = [
            collections.deque() for _ in slots
        ]
        self.heap: list[tuple[tuple[int, int, int], int]] = []
        self.last_id: list[str | None] = [None] * len(slots)
        self.done = [False] * len(slots)
        self.reads = [0] * len(slots)
        if position is not None and position[0] == (_MAX_ID, _MAX_ID):  # nothing can follow it (nor may XRANGE ask)
            self.done = [self.start(i)[1] is False for i in range(len(slots))]
        self.needy = [i for i in range(len(slots)) if not self.done[i]]

    def wanted(self) -> list[int]:
        """The chains to fill before the next :meth:`take` (each named once)."""
        needy, self.needy = self.needy, []
        return needy

    def start(self, i: int) -> tuple[str | None, bool]:
        """Where chain ``i`` reads on: (stream id, whether that id itself is included); None: from its start."""
        last = self.last_id[i]
        if last is not None:
            return last, False
        if self.position is None:
            return None, False
        (ms, seq), slot = self.position
        # at the cursor's stream id, a chain that sorts after the cursor's own still has that entry to come
        return f"{ms}-{seq}", self.order[i] > (_MAIN_ORDER if slot is None else slot)

    def fill(self, i: int, rows: Sequence[tuple[bytes, Mapping[bytes, bytes]]], count: int) -> None:
        """Chain ``i``'s next rows as XRANGE gives them, read with COUNT ``count`` (fewer: the chain is at its end;
        its head's position reached: so is it)."""
        self.reads[i] += 1
        buf = self.buffers[i]
        for eid, raw in rows:
            text = eid.decode("ascii")
            ms, _, seq = text.partition("-")
            buf.append(((int(ms), int(seq), self.order[i]), eid, raw))
            self.last_id[i] = text
        last = rows[-1][1].get(b"n", b"") if rows else b""
        head = None if self.heads is None else self.heads[i]
        if len(rows) < count or (head is not None and last.isdigit() and int(last) >= head):
            self.done[i] = True
        if buf:
            heapq.heappush(self.heap, (buf[0][0], i))
        elif not self.done[i]:
            self.needy.append(i)

    def take(self) -> tuple[bool, StoredEntry | None]:
        """(False, None) at the end of every chain; else (True, the least entry: None if malformed)."""
        if not self.heap:
            return False, None
        _, i = heapq.heappop(self.heap)
        buf = self.buffers[i]
        (ms, seq, _), eid, raw = buf.popleft()
        if buf:
            heapq.heappush(self.heap, (buf[0][0], i))
        elif not self.done[i]:
            self.needy.append(i)
        self.position = (ms, seq), self.slots[i]
        return True, parse_entry(eid, raw, self.slots[i])

    def at_end(self) -> bool:
        return not self.heap and all(self.done)

    def cursor(self) -> str | None:
        if self.position is None:
            return None
        (ms, seq), slot = self.position
        return entry_cursor(f"{ms}-{seq}", slot)


_SEAL_PROBLEMS: Final = {
    _KEPT_CUT: ("shorter than its last seal in the main chain: cut or wiped since"),
    _KEPT_DIFFERS: "the entry at its last seal's position differs from it",
    _KEPT_ANCHOR: "its retention anchor differs from its last seal",
}


class TrailCheck:
    """The verification of every chain, folded into one :class:`AuditCheck` (pure): the main chain's, and each
    slot chain's against the last seal the main chain holds of it."""

    def __init__(self, main: AuditCheck, seals: dict[int, tuple[int, str]]) -> None:
        self.main = main
        self.seals = seals
        self.slots: dict[int, AuditCheck] = {}

    def seal_of(self, slot: int) -> Checkpoint | None:
        """The last seal of ``slot`` as a kept position to check its chain against (not signed: the seal entry's
        MAC vouched for it)."""
        sealed = self.seals.get(slot)
        return None if sealed is None else Checkpoint(n=sealed[0], head=sealed[1], at="", kid="", signature=b"")

    def add(self, slot: int, check: AuditCheck) -> None:
        self.slots[slot] = check

    def chains(self) -> list[tuple[int | None, AuditCheck]]:
        return [(None, self.main), *sorted(self.slots.items())]

    def unsealed(self) -> list[tuple[int, int, str]]:
        """(slot, n, MAC) of each slot chain whose head moved since its last seal."""
        return [
            (slot, c.n, c.head)
            for slot, c in sorted(self.slots.items())
            if c.n > 0 and self.seals.get(slot) != (c.n, c.head)
        ]

    def result(self) -> AuditCheck:
        main = self.main
        problem, first_bad = main.problem, main.first_bad_id
        for slot, c in sorted(self.slots.items()):
            if c.problem is not None and problem is None:
                problem = f"slot chain {slot}: {_SEAL_PROBLEMS.get(c.problem, c.problem)}"
            if c.first_bad_id is not None and first_bad is None:
                first_bad = entry_cursor(c.first_bad_id, slot)
        for slot in sorted(self.seals.keys() - self.slots.keys()):
            if problem is None:
                problem = f"slot chain {slot}: sealed at n={self.seals[slot][0]} but gone from Redis: wiped"
        return dataclasses.replace(
            main,
            ok=problem is None,
            entries=main.entries + sum(c.entries for c in self.slots.values()),
            problem=problem,
            first_bad_id=first_bad,
        )


# --- seals: the slot chains' heads in the main chain ------------------------------------------------------------

SEAL_EVENT: Final = "audit.seal"
SEAL_SLOTS: Final = 256  # slot heads per seal entry


def seal_fields(heads: Sequence[tuple[int, int, str]]) -> dict[str, str | int | None]:
    """A seal entry's fields: the ``slots`` it vouches for as ``slot:n:MAC`` items, comma-separated."""
    return {"slots": ",".join(f"{slot}:{n}:{mac}" for slot, n, mac in heads)}


def parse_seal(fields: Mapping[str, object]) -> dict[int, tuple[int, str]]:
    """The (n, MAC) per slot a seal entry states; nothing from a malformed one (the entry's MAC verified, so it
    is ours: malformed only if written by another version)."""
    text = fields.get("slots")
    out: dict[int, tuple[int, str]] = {}
    if not isinstance(text, str):
        return out
    for item in filter(None, text.split(",")):
        slot, _, rest = item.partition(":")
        n, _, mac = rest.partition(":")
        if slot.isdigit() and n.isdigit() and _HEX64.fullmatch(mac):
            out[int(slot)] = (int(n), mac)
    return out


def checkpoint_text(cp: Checkpoint) -> str:
    """A checkpoint as canonical JSON (``signature`` in base64): the form kept in Redis and handed out."""
    return json.dumps(
        {"n": cp.n, "head": cp.head, "at": cp.at, "kid": cp.kid, "signature": base64.b64encode(cp.signature).decode()},
        sort_keys=True,
        separators=(",", ":"),
    )


def checkpoint_from_text(raw: bytes | str) -> Checkpoint | None:
    try:
        d = json.loads(raw)
        return Checkpoint(
            n=int(d["n"]),
            head=str(d["head"]),
            at=str(d["at"]),
            kid=str(d["kid"]),
            signature=base64.b64decode(d["signature"], validate=True),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
