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
import dataclasses
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

    def append_args(
        self, batch: list[PendingAudit], head: tuple[int, str]
    ) -> tuple[list[str | int], str, list[tuple[int, str, str]]]:
        """The script arguments chaining ``batch`` onto ``head`` (per entry its stream values n, at, event, f,
        prev, kid, mac: ``scripts.AUDIT_WRITES``), the new head, and each entry's (n, prev, mac)."""
        keys = self.keys[self.kid]
        kid = self.kid
        args: list[str | int] = []
        chained: list[tuple[int, str, str]] = []
        n, link = head
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


def parse_entry(entry_id: bytes, raw: Mapping[bytes, bytes]) -> StoredEntry | None:
    """An entry as stored (texts kept: the MAC covers them), or None if malformed."""
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


class ChainVerifier:
    """Verification as a fold over the stream (pure): :meth:`feed` each row, :meth:`finish` with the head."""

    def __init__(self, chain: AuditChain, anchor: Checkpoint | None, anchor_sound: bool, kept: Checkpoint | None):
        self.chain = chain
        self.kept = kept
        self.problem = None if anchor_sound else "the retention anchor is malformed or its signature does not verify"
        self.n, self.head = (anchor.n, anchor.head) if anchor is not None else GENESIS_HEAD
        self.first_n = self.n + 1
        self.count = 0
        self.first_bad: str | None = None
        self.last_id: str | None = None
        self.cp_state: str | None = None
        if kept is not None and kept.n <= self.n:
            if kept.n == self.n and hmac.compare_digest(kept.head, self.head):
                self.cp_state = "matches"
            elif kept.n == self.n:
                self.problem = self.problem or "the retention anchor differs from the kept checkpoint"
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
        kept = self.kept
        if kept is not None and self.cp_state is None and self.n == kept.n:
            if hmac.compare_digest(self.head, kept.head):
                self.cp_state = "matches"
            else:
                self.cp_state = "differs"
                self.problem = self.problem or "the entry at the checkpoint's position differs from it"
                self.first_bad = self.first_bad or entry_id

    def finish(self, head_raw: object) -> AuditCheck:
        try:
            stored_head: tuple[int, str] | None = parse_head(head_raw)
        except StoreError:
            stored_head = None
        problem = self.problem
        if problem is None and stored_head != (self.n, self.head):
            problem = "the head does not name the last entry (the tail was cut, or the head edited)"
        cp_state = self.cp_state
        if self.kept is not None and cp_state is None:
            cp_state = "not reached"
            problem = problem or "the trail is shorter than the kept checkpoint: truncated or wiped since"
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
