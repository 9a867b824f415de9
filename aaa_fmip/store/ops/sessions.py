"""Sessions: store with their audit entries, look up by name, SPI, calling station or external id, revoke."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from aaa_fmip.errors import StoreError, StoreUnavailable
from aaa_fmip.store import (
    AuditItem,
    SessionRecord,
    records,
)
from aaa_fmip.store import audit as chain
from aaa_fmip.store import scripts as lua
from aaa_fmip.store.ops.audit import AuditOps
from aaa_fmip.store.ops.base import (
    DELETE_ATTEMPTS,
    EXTERNAL_ID_LIMIT,
    Arg,
    Command,
    Op,
    Pipeline,
    Script,
    _b,
    _check_name,
    _member_pairs,
    _members,
    _name_of,
    _ttl_ms,
)


class SessionOps(AuditOps):
    """Sessions: store with their audit entries, look up by name, SPI, calling station or external id, revoke."""

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
