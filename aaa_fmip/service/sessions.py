"""Sessions (AAA side): ingest (prepare, then commit with its audit entries), revoke, no-EMSK authentications."""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from aaa_fmip import keys
from aaa_fmip.errors import (
    InvalidRequest,
    NotFound,
)
from aaa_fmip.model import Caller, EapKeys, HandoverKeyGrant, SessionInfo, SessionRequest
from aaa_fmip.service._access import IPv6, UseCase, audit_item, require, require_router
from aaa_fmip.store import AuditItem, SessionRecord

_MAC_HEX = re.compile(r"^[0-9a-f]{12}$")
_MAC_SEPARATORS = re.compile(r"[-:.\s]")


@dataclasses.dataclass(frozen=True)
class _SessionFacts:
    """What a session record and its audit entries are built from (see PreparedSession)."""

    actor: str
    user_name: str
    master: keys.HandoverMasterKey
    kind: Literal["eap", "dsrk"]
    now: float
    granted: int
    calling_station_id: str | None
    nas_identifier: str | None
    external_ids: tuple[str, ...]
    push: tuple[str, IPv6, keys.HandoverKey] | None  # router name, AR-ID, its HK


class PreparedSession:
    """A session checked and derived by :meth:`HandoverKeyService.prepare_session`, not yet stored.

    ``info`` (identifiers and the pushed router's grant) is ready at once; the session ``record`` and its
    ``audits`` are built on first use, by whoever commits: the RADIUS plugin commits behind the Access-Accept,
    so that work stays out of the authentication's path. Holds the HMK (and the pushed HK) until
    :meth:`HandoverKeyService.commit_session` has written it; its ``repr`` never shows key octets.
    """

    __slots__ = ("_built", "_facts", "info")

    def __init__(self, info: SessionInfo, facts: _SessionFacts) -> None:
        self.info = info
        self._facts = facts
        self._built: tuple[SessionRecord, tuple[AuditItem, ...]] | None = None

    def __repr__(self) -> str:
        return f"PreparedSession(info={self.info!r})"

    @property
    def record(self) -> SessionRecord:
        return self._build()[0]

    @property
    def audits(self) -> tuple[AuditItem, ...]:
        return self._build()[1]

    def _build(self) -> tuple[SessionRecord, tuple[AuditItem, ...]]:
        # Deterministic: two threads racing here build equal values.
        if self._built is None:
            self._built = _record_and_audits(self._facts)
        return self._built


def _record_and_audits(f: _SessionFacts) -> tuple[SessionRecord, tuple[AuditItem, ...]]:
    mac = normalise_calling_station_id(f.calling_station_id) if f.calling_station_id else None
    ids = (*f.external_ids, f"user:{f.user_name}")
    if f.nas_identifier:
        ids += (nas_external_id(f.nas_identifier),)
    master = f.master
    record = SessionRecord(
        hmk_name=master.hmk_name,
        spi=master.spi,
        hmk=master.hmk,
        user_name=f.user_name,
        kind=f.kind,
        created_at=f.now,
        expires_at=f.now + f.granted,
        calling_station_id=mac,
        nas_identifier=f.nas_identifier,
        external_ids=tuple(dict.fromkeys(ids)),
    )
    audits = [
        audit_item(
            "session.created",
            f.now,
            actor=f.actor,
            hmk_name=master.hmk_name.hex(),
            spi=master.spi,
            kind=f.kind,
            user=f.user_name,
            calling_station_id=mac,
            nas=f.nas_identifier,
            lifetime=f.granted,
        )
    ]
    if f.push is not None:
        router, ar_address, hk = f.push
        audits.append(hk_issued(f.actor, router, ar_address, master.hmk_name, hk, f.granted, f.now))
    return record, tuple(audits)


def nas_external_id(nas: str) -> str:
    """The external id every session ingested through the NAS ``nas`` carries (``nas_identifier`` as given at
    ingest), so that all of a NAS's sessions can be revoked at once (RADIUS Accounting-On/Off)."""
    return f"nas:{nas}"


def normalise_calling_station_id(value: str) -> str:
    """A MAC in any common notation becomes ``aa-bb-cc-dd-ee-ff``; anything else is trimmed and lowercased.

    RFC 3580 §3.21 recommends "-" separated upper-case hex for IEEE 802 Calling-Station-Id; NASes differ.
    """
    text = value.strip().lower()
    compact = _MAC_SEPARATORS.sub("", text)
    if _MAC_HEX.match(compact):
        return "-".join(compact[i : i + 2] for i in range(0, 12, 2))
    return text


class SessionUseCases(UseCase):
    """Sessions from the AAA side: ingest (prepare, commit), revoke, and authentications without an EMSK."""

    def ingest_session(self, caller: Caller, request: SessionRequest) -> SessionInfo:
        """Derive the HMK (EMSK + Session-Id, or DSRK + EMSKName; architecture.md §2) and store the session.

        The EMSK/DSRK is used here once and never stored. ``request.push_to`` = (an access router, one of its
        addresses): also that router's HK (``SessionInfo.grant``), for the AAA server to push in the
        Access-Accept; derived from the HMK just derived rather than read back, its audit entry appended
        together with the session's. :meth:`prepare_session` then :meth:`commit_session`, in this thread.
        """
        prepared = self.prepare_session(caller, request)
        self.commit_session(prepared)
        return prepared.info

    def prepare_session(self, caller: Caller, request: SessionRequest) -> PreparedSession:
        """The checks and derivations of :meth:`ingest_session`, without any store call.

        Pure computation (the clock aside): the HMK and the pushed router's grant now; the session record and
        its audit entries when :meth:`commit_session` writes them, now or later (the RADIUS plugin writes
        behind the Access-Accept, so building them stays out of the authentication's path).
        Raises what ingest raises before it touches the store (Forbidden, InvalidRequest).
        """
        push_to = request.push_to
        router_name = require_router(*push_to) if push_to is not None else None
        require(caller, "aaa", "admin")
        lifetime = request.lifetime
        if lifetime is not None and lifetime <= 0:
            raise InvalidRequest("lifetime must be a positive number of seconds", reason="invalid-lifetime")
        root = request.keys
        kind: Literal["eap", "dsrk"]
        try:
            if isinstance(root, EapKeys):
                master = keys.derive_hmk(root.emsk, root.eap_session_id)
                kind = "eap"
            else:
                master = keys.derive_hmk_visited(root.dsrk, root.emsk_name)
                kind = "dsrk"
        except ValueError as exc:  # length checks in keys.*; their messages carry no key octets
            raise InvalidRequest(str(exc), reason="invalid-key-material") from None
        now = self.clock()
        granted = keys.hmk_lifetime(lifetime, self.max_lifetime)
        push = None
        grant = None
        if push_to is not None and router_name is not None:
            # RFC 5568 §6.4.5 key scoping: the HK for this AR-ID, from the HMK just derived.
            hk = keys.derive_hk(master.hmk, master.hmk_name, push_to[1], master.spi)
            push = (router_name, push_to[1], hk)
            grant = grant_of(hk, granted)
        facts = _SessionFacts(
            actor=caller.name,
            user_name=request.user_name,
            master=master,
            kind=kind,
            now=now,
            granted=granted,
            calling_station_id=request.calling_station_id,
            nas_identifier=request.nas_identifier,
            external_ids=request.external_ids,
            push=push,
        )
        info = SessionInfo(hmk_name=master.hmk_name, spi=master.spi, expires_at=now + granted, grant=grant)
        return PreparedSession(info, facts)

    def commit_session(self, prepared: PreparedSession, *, deadline: float | None = None) -> None:
        """Store a prepared session (TTL from now to its ``expires_at``) together with its audit entries: both
        or neither (on a Redis Cluster, the entries first; see :meth:`RedisStore.put_session`). ``deadline``
        (Unix seconds): the moment the caller gives up; past it nothing is written, also by a write still
        buffered in a stalled Redis. Raises StoreUnavailable."""
        self.store.put_session(prepared.record, now=self.clock(), audits=prepared.audits, deadline=deadline)

    def record_no_emsk(self, caller: Caller, *, user_name: str, method: str | None, detail: str) -> None:
        """Audit an authentication that produced no EMSK (EAP-PWD, EAP-MD5): no session; the MN uses SEND."""
        require(caller, "aaa", "admin")
        self._audit(
            "session.skipped",
            self.clock(),
            actor=caller.name,
            user=user_name,
            method=method,
            detail=detail,
        )

    def revoke_session(self, caller: Caller, hmk_name: bytes, *, cause: str = "revoked") -> None:
        """Delete a session and everything derived from it (HKs, replay state), with its ``session.revoked``
        audit entry in the same step. Idempotent: a session already revoked (its tombstone lives until its old
        expiry) answers as the first revocation did, so a retry after a 503 ends the same way. Raises NotFound
        for a session that never was, or has expired."""
        require(caller, "aaa", "admin")
        now = self.clock()
        record = self.store.delete_session(
            hmk_name, now=now, audits_for=lambda rec: [_revoked_item(caller, rec, cause, now)]
        )
        if record is None and not self.store.run(self.store.ops.is_revoked(hmk_name=hmk_name)):
            raise NotFound("no live session with that HMK-Name", reason="unknown-session")

    def revoke_matching(
        self,
        caller: Caller,
        *,
        calling_station_id: str | None = None,
        external_id: str | None = None,
        cause: str = "accounting-stop",
    ) -> int:
        """Revoke every session matching the selector (exactly one); returns how many were revoked."""
        require(caller, "aaa", "admin")
        if (calling_station_id is None) == (external_id is None):
            raise InvalidRequest("give exactly one of calling_station_id or external_id", reason="bad-selector")
        if calling_station_id is not None:
            found = self.store.run(
                self.store.ops.find_by_calling_station(normalise_calling_station_id(calling_station_id))
            )
            records = [found] if found is not None else []
        else:
            assert external_id is not None
            records = self.store.run(self.store.ops.find_by_external_id(external_id))
        now = self.clock()
        revoked = 0

        def audits(rec: SessionRecord) -> list[AuditItem]:
            return [_revoked_item(caller, rec, cause, now)]

        for record in records:
            if self.store.delete_session(record.hmk_name, now=now, audits_for=audits) is not None:
                revoked += 1
        return revoked

    # -- AR side ----------------------------------------------------------------------------------------


def _revoked_item(caller: Caller, record: SessionRecord, cause: str, now: float) -> AuditItem:
    return audit_item(
        "session.revoked",
        now,
        actor=caller.name,
        hmk_name=record.hmk_name.hex(),
        spi=record.spi,
        user=record.user_name,
        calling_station_id=record.calling_station_id,
        cause=cause,
    )


def grant_of(hk: keys.HandoverKey, lifetime: int) -> HandoverKeyGrant:
    return HandoverKeyGrant(hk=hk.hk, hk_name=hk.hk_name, spi=hk.spi, lifetime=lifetime, algorithm="HMAC-SHA1-96")


def hk_issued(
    actor: str, router: str, ar_address: IPv6, hmk_name: bytes, hk: keys.HandoverKey, lifetime: int, now: float
) -> AuditItem:
    """The ``hk.issued`` audit entry of an HK handed to ``router``: identifiers only."""
    return audit_item(
        "hk.issued",
        now,
        actor=actor,
        ar=router,
        ar_address=str(ar_address),
        hmk_name=hmk_name.hex(),
        spi=hk.spi,
        hk_name=hk.hk_name.hex(),
        lifetime=lifetime,
    )
