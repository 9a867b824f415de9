"""Use cases (architecture.md §7): ingest, derive, verify, revoke, audit, the RFC 5269 SEND fallback.

Adapters (REST, Diameter, RADIUS plugin) call only this module; it calls the store, the key hierarchy and
the wire codecs. Time comes from an injected clock so tests control expiry. Nothing here logs or raises
key material: audit entries carry identifiers (HMK-Name, SPI, HK-Name, addresses) only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, Literal, TypeVar, cast

from aaa_fmip import keys
from aaa_fmip.crypto import badf, rsa
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import BadAuthenticator, DecodeError, Forbidden, InvalidRequest, NotFound, VerificationError
from aaa_fmip.model import Caller, FbuVerdict, HandoverKeyGrant, Role, SessionInfo
from aaa_fmip.send_policy import ReplayedNonce, SendHandoverKeyResult, SendPolicy, VerifiedRtSolPr, verify_rtsolpr
from aaa_fmip.store import AuditCheck, AuditEntry, ReplayOutcome, SendKeyRecord, SessionRecord
from aaa_fmip.store.redis import AsyncRedisOps, RedisStore
from aaa_fmip.wire import icmpv6 as icmpwire
from aaa_fmip.wire import mh as mhwire

IPv6 = ipaddress.IPv6Address
LifetimeUnits = Literal["4s", "seconds"]
AuditItem = tuple[str, Mapping[str, str | int | None], float]  # event, fields, at
T = TypeVar("T")

# A request creating the first HK of a CGA key holds a claim this long; others wait up to ~1 s in total for it.
_SEND_CLAIM_SECONDS = 2.0
_SEND_CLAIM_ATTEMPTS = 18

# How many SPI collisions we try before giving up (architecture.md §3: "try each candidate, bounded").
MAX_SPI_CANDIDATES = 8

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
        _audit_item(
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
        audits.append(_hk_issued(f.actor, router, ar_address, master.hmk_name, hk, f.granted, f.now))
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


class HandoverKeyService:
    """The service layer.

    Raises :class:`~aaa_fmip.errors.NotFound`, ``Forbidden``, ``InvalidRequest``, ``DecodeError`` and
    ``StoreUnavailable``; FBU verification returns a verdict rather than raising for a bad FBU.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        max_lifetime: int = keys.DEFAULT_MAX_LIFETIME,
        clock: Callable[[], float] | None = None,
        lifetime_units: LifetimeUnits = "4s",
        send_policy: SendPolicy | None = None,
    ) -> None:
        if max_lifetime <= 0:
            raise ValueError("max_lifetime must be positive")
        self.store = store
        self.max_lifetime = max_lifetime
        self.clock = clock or time.time
        # RFC 5568 §6.2.2 says seconds; the MIPv6 BU it copies uses 4-second units (RFC 6275 §6.1.7).
        self.lifetime_unit = 4 if lifetime_units == "4s" else 1
        self.send_policy = send_policy or SendPolicy()

    # -- health -----------------------------------------------------------------------------------------

    def ready(self) -> None:
        """Raises StoreUnavailable when the store cannot be reached, and StoreNotDurable when it would lose FBU
        replay state (FBUs are refused then; the check also notices a Redis restart or a changed setting)."""
        self.store.ping()
        self.store.check_durability(require=True)

    def live_sessions(self) -> int:
        return self.store.count_live_sessions()

    # -- AAA side ---------------------------------------------------------------------------------------

    def ingest_session(
        self,
        caller: Caller,
        *,
        user_name: str,
        emsk: bytes | None = None,
        eap_session_id: bytes | None = None,
        dsrk: bytes | None = None,
        emsk_name: bytes | None = None,
        calling_station_id: str | None = None,
        nas_identifier: str | None = None,
        lifetime: int | None = None,
        external_ids: tuple[str, ...] = (),
        push_to: tuple[Caller, IPv6] | None = None,
    ) -> SessionInfo:
        """Derive the HMK (EMSK + Session-Id, or DSRK + EMSKName; architecture.md §2) and store the session.

        The EMSK/DSRK is used here once and never stored. ``push_to`` = (an access router, one of its addresses):
        also that router's HK (``SessionInfo.grant``), for the AAA server to push in the Access-Accept; derived
        from the HMK just derived rather than read back, its audit entry appended together with the session's.
        :meth:`prepare_session` then :meth:`commit_session`, in this thread.
        """
        prepared = self.prepare_session(
            caller,
            user_name=user_name,
            emsk=emsk,
            eap_session_id=eap_session_id,
            dsrk=dsrk,
            emsk_name=emsk_name,
            calling_station_id=calling_station_id,
            nas_identifier=nas_identifier,
            lifetime=lifetime,
            external_ids=external_ids,
            push_to=push_to,
        )
        self.commit_session(prepared)
        return prepared.info

    def prepare_session(
        self,
        caller: Caller,
        *,
        user_name: str,
        emsk: bytes | None = None,
        eap_session_id: bytes | None = None,
        dsrk: bytes | None = None,
        emsk_name: bytes | None = None,
        calling_station_id: str | None = None,
        nas_identifier: str | None = None,
        lifetime: int | None = None,
        external_ids: tuple[str, ...] = (),
        push_to: tuple[Caller, IPv6] | None = None,
    ) -> PreparedSession:
        """The checks and derivations of :meth:`ingest_session`, without any store call.

        Pure computation (the clock aside): the HMK and the pushed router's grant now; the session record and
        its audit entries when :meth:`commit_session` writes them, now or later (the RADIUS plugin writes
        behind the Access-Accept, so building them stays out of the authentication's path).
        Raises what ingest raises before it touches the store (Forbidden, InvalidRequest).
        """
        router_name = _require_router(*push_to) if push_to is not None else None
        _require(caller, "aaa", "admin")
        home = emsk is not None or eap_session_id is not None
        visited = dsrk is not None or emsk_name is not None
        if home == visited:
            raise InvalidRequest(
                "give either emsk and eap_session_id, or dsrk and emsk_name", reason="missing-key-material"
            )
        if lifetime is not None and lifetime <= 0:
            raise InvalidRequest("lifetime must be a positive number of seconds", reason="invalid-lifetime")
        try:
            if home:
                if emsk is None or eap_session_id is None:
                    raise InvalidRequest("emsk and eap_session_id go together", reason="missing-key-material")
                master = keys.derive_hmk(emsk, eap_session_id)
                kind: Literal["eap", "dsrk"] = "eap"
            else:
                if dsrk is None or emsk_name is None:
                    raise InvalidRequest("dsrk and emsk_name go together", reason="missing-key-material")
                master = keys.derive_hmk_visited(dsrk, emsk_name)
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
            grant = _grant_of(hk, granted)
        facts = _SessionFacts(
            actor=caller.name,
            user_name=user_name,
            master=master,
            kind=kind,
            now=now,
            granted=granted,
            calling_station_id=calling_station_id,
            nas_identifier=nas_identifier,
            external_ids=external_ids,
            push=push,
        )
        info = SessionInfo(hmk_name=master.hmk_name, spi=master.spi, expires_at=now + granted, grant=grant)
        return PreparedSession(info, facts)

    def commit_session(self, prepared: PreparedSession) -> None:
        """Store a prepared session (TTL from now to its ``expires_at``), then append its audit entries in one
        round trip. Nothing is audited when the session could not be stored. Raises StoreUnavailable."""
        self.store.put_session(prepared.record, now=self.clock())
        self.store.append_audits(prepared.audits)

    def record_no_emsk(self, caller: Caller, *, user_name: str, method: str | None, detail: str) -> None:
        """Audit an authentication that produced no EMSK (EAP-PWD, EAP-MD5): no session; the MN uses SEND."""
        _require(caller, "aaa", "admin")
        self._audit(
            "session.skipped",
            self.clock(),
            actor=caller.name,
            user=user_name,
            method=method,
            detail=detail,
        )

    def revoke_session(self, caller: Caller, hmk_name: bytes, *, cause: str = "revoked") -> None:
        """Delete a session and everything derived from it (HKs, replay state); raises NotFound."""
        _require(caller, "aaa", "admin")
        now = self.clock()
        record = self.store.delete_session(hmk_name, now=now)
        if record is None:
            raise NotFound("no live session with that HMK-Name", reason="unknown-session")
        self._audit_revoked(caller, record, cause, now)

    def revoke_matching(
        self,
        caller: Caller,
        *,
        calling_station_id: str | None = None,
        external_id: str | None = None,
        cause: str = "accounting-stop",
    ) -> int:
        """Revoke every session matching the selector (exactly one); returns how many were revoked."""
        _require(caller, "aaa", "admin")
        if (calling_station_id is None) == (external_id is None):
            raise InvalidRequest("give exactly one of calling_station_id or external_id", reason="bad-selector")
        if calling_station_id is not None:
            found = self.store.find_by_calling_station(normalise_calling_station_id(calling_station_id))
            records = [found] if found is not None else []
        else:
            assert external_id is not None
            records = self.store.find_by_external_id(external_id)
        now = self.clock()
        revoked = 0
        for record in records:
            if self.store.delete_session(record.hmk_name, now=now) is not None:
                self._audit_revoked(caller, record, cause, now)
                revoked += 1
        return revoked

    # -- AR side ----------------------------------------------------------------------------------------

    def handover_key(
        self,
        caller: Caller,
        *,
        ar_address: IPv6,
        spi: int | None = None,
        calling_station_id: str | None = None,
        hmk_name: bytes | None = None,
    ) -> HandoverKeyGrant:
        """The HK of one session for one of the calling AR's own addresses (RFC 4962 key scoping)."""
        router = _require_router(caller, ar_address)
        if sum(x is not None for x in (spi, calling_station_id, hmk_name)) != 1:
            raise InvalidRequest("give exactly one of spi, calling_station_id or hmk_name", reason="bad-selector")
        now = self.clock()
        if spi is not None:
            if not 0 < spi <= 0xFFFFFFFF:
                raise InvalidRequest("spi must be in 1..2^32-1 (0 is the RFC 5269 SEND key)", reason="bad-spi")
            candidates = self.store.find_by_spi(spi, limit=MAX_SPI_CANDIDATES)
            if len(candidates) > 1:
                raise InvalidRequest(
                    "several sessions share this SPI; select by hmk_name or calling_station_id",
                    reason="ambiguous-spi",
                )
            record = candidates[0] if candidates else None
        elif calling_station_id is not None:
            record = self.store.find_by_calling_station(normalise_calling_station_id(calling_station_id))
        else:
            assert hmk_name is not None
            record = self.store.get_session(hmk_name)
        if record is None or record.expires_at <= now:
            revoked = self.store.is_revoked(spi=spi, hmk_name=hmk_name) if (spi or hmk_name) else False
            raise NotFound(
                "the session was revoked" if revoked else "no live session matches",
                reason="revoked" if revoked else "unknown-session",
            )
        return self._grant(caller, router, ar_address, record, now)

    def _grant(
        self, caller: Caller, router: str, ar_address: IPv6, record: SessionRecord, now: float
    ) -> HandoverKeyGrant:
        """Derive the HK of ``record`` for ``ar_address`` (already checked to be the router's) and audit it."""
        grant, (event, fields, at) = _derive_grant(caller, router, ar_address, record, now)
        self._audit(event, at, **fields)
        return grant

    def verify_fbu(
        self,
        caller: Caller,
        *,
        source: IPv6,
        destination: IPv6,
        mh: bytes,
        home_address: IPv6 | None = None,
    ) -> FbuVerdict:
        """Verify an FBU's BADF and sequence number for the PAR ``destination`` (RFC 5568 §6.4.5).

        Malformed Mobility Headers raise DecodeError (the adapter answers 422 naming the field); a
        well-formed FBU that fails returns ``valid=False`` with a stable reason.
        """
        return _run(self._verify_fbu_flow(caller, source, destination, mh, home_address), self.store)

    async def verify_fbu_async(
        self,
        caller: Caller,
        *,
        source: IPv6,
        destination: IPv6,
        mh: bytes,
        home_address: IPv6 | None = None,
    ) -> FbuVerdict:
        """:meth:`verify_fbu` for an event loop: the same steps, on the store's asyncio client
        (:attr:`RedisStore.aio`); on a store built without one, in a worker thread."""
        aio = self.store.aio
        if aio is None:
            return await asyncio.to_thread(
                self.verify_fbu, caller, source=source, destination=destination, mh=mh, home_address=home_address
            )
        return await _run_async(self._verify_fbu_flow(caller, source, destination, mh, home_address), aio)

    def _verify_fbu_flow(
        self, caller: Caller, source: IPv6, destination: IPv6, mh: bytes, home_address: IPv6 | None
    ) -> _Flow[FbuVerdict]:
        router = _require_router(caller, destination)
        pcoa = home_address or source
        message = mhwire.decode_mh(mh, source=pcoa, destination=destination)
        if not isinstance(message, mhwire.FBU):
            raise InvalidRequest("the Mobility Header is not a Fast Binding Update", reason="not-fbu")
        auth = mhwire.badf_input(mh)
        ncoa = source
        for option in message.options:
            if isinstance(option, mhwire.AlternateCareOfAddress):
                ncoa = option.address
                break
        now = self.clock()
        verdict = yield from self._check_fbu(message, auth, pcoa, ncoa, destination, now)
        entry = _audit_item(
            "fbu.verified" if verdict.valid else "fbu.rejected",
            now,
            actor=caller.name,
            ar=router,
            ar_address=str(destination),
            spi=auth.spi,
            sequence=message.sequence,
            verdict=verdict.verdict,
            reason=verdict.reason,
        )
        yield _StoreCall("append_audits", ([entry],))
        return verdict

    def _check_fbu(
        self,
        message: mhwire.FBU,
        auth: mhwire.BadfInput,
        pcoa: IPv6,
        ncoa: IPv6,
        par: IPv6,
        now: float,
    ) -> _Flow[FbuVerdict]:
        def reject(reason: str) -> FbuVerdict:
            return FbuVerdict(valid=False, reason=reason, spi=auth.spi, sequence=message.sequence)

        key: SecretBytes | None = None
        scope = b""
        expires_at = 0.0
        if auth.spi == 0:
            # RFC 5269 §4: SPI 0 names the SEND-established key of the MN's CGA (its PCoA).
            send_key: SendKeyRecord | None = yield _StoreCall("get_send_key_by_cga", (pcoa,))
            if send_key is None:
                return reject("unknown-spi")
            if send_key.expires_at <= now:
                return reject("expired")
            if not _authenticates(send_key.hk, ncoa, par, auth):
                return reject("bad-authenticator")
            key, scope, expires_at = send_key.hk, pcoa.packed, send_key.expires_at
        else:
            candidates: list[SessionRecord] = yield _StoreCall(
                "find_by_spi", (auth.spi,), {"limit": MAX_SPI_CANDIDATES}
            )
            if not candidates:
                revoked: bool = yield _StoreCall("is_revoked", (), {"spi": auth.spi})
                return reject("revoked" if revoked else "unknown-spi")
            live = [c for c in candidates if c.expires_at > now]
            if not live:
                return reject("expired")
            for record in live:
                hk = keys.derive_hk(record.hmk, record.hmk_name, par, record.spi)
                if _authenticates(hk.hk, ncoa, par, auth):
                    key, scope, expires_at = hk.hk, record.hmk_name, record.expires_at
                    break
            if key is None:
                return reject("bad-authenticator")
        remaining = max(1, int(expires_at - now))
        outcome: ReplayOutcome = yield _StoreCall(
            "check_replay", (scope, par.packed, message.sequence, auth.authenticator), {"ttl": remaining}
        )
        if outcome == "replay":
            return reject("replay")
        return FbuVerdict(
            valid=True,
            verdict=outcome,
            spi=auth.spi,
            sequence=message.sequence,
            ncoa=ncoa,
            lifetime=min(message.lifetime * self.lifetime_unit, remaining),
        )

    # -- audit ------------------------------------------------------------------------------------------

    def read_audit(
        self,
        caller: Caller,
        *,
        cursor: str | None = None,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
        event: str | None = None,
        spi: int | None = None,
        ar: str | None = None,
    ) -> tuple[list[AuditEntry], str | None]:
        _require(caller, "auditor", "admin")
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be in 1..1000", reason="bad-limit")
        try:
            return self.store.read_audit(
                cursor=cursor, limit=limit, since=since, until=until, event=event, spi=spi, ar=ar
            )
        except ValueError:
            raise InvalidRequest("the cursor is not one this service issued", reason="bad-cursor") from None

    def verify_audit(self, caller: Caller) -> AuditCheck:
        _require(caller, "auditor", "admin")
        return self.store.verify_audit()

    def _audit_revoked(self, caller: Caller, record: SessionRecord, cause: str, now: float) -> None:
        self._audit(
            "session.revoked",
            now,
            actor=caller.name,
            hmk_name=record.hmk_name.hex(),
            spi=record.spi,
            user=record.user_name,
            calling_station_id=record.calling_station_id,
            cause=cause,
        )

    def _audit(self, event: str, at: float, **fields: str | int | None) -> None:
        self.store.append_audits([_audit_item(event, at, **fields)])

    # -- RFC 5269 SEND fallback (architecture.md §4) ---------------------------------------------------------

    def send_handover_key(
        self, caller: Caller, *, source: IPv6, destination: IPv6, icmpv6: bytes
    ) -> SendHandoverKeyResult:
        """Answer an RtSolPr carrying a Handover Key Request (RFC 5269 §3.2) for the calling AR.

        ``icmpv6`` is the RtSolPr as the AR received it at ``destination`` (one of the AR's own addresses, else
        Forbidden) from ``source`` (the MN's CGA). In this order, and with no key state touched before the last
        step:

        1. :func:`aaa_fmip.send_policy.verify_rtsolpr` (checksum, options, Timestamp window, key sizes, CGA,
           Key Hash, signature);
        2. the Nonce is remembered for this CGA; seen before within the window → :class:`ReplayedNonce`;
        3. the live HK of this CGA key is taken (and rebound to this CGA if the key moved), or a random one is
           generated and stored wrapped, SPI 0, indexed by the CGA and the key hash, for HK-LIFETIME capped by
           the service's maximum; it is encrypted anew to the request's handover-key-encryption key.

        Rejections are audited as ``send.hk.rejected`` with their reason and re-raised (DecodeError,
        InvalidRequest, a VerificationError subclass); issues as ``send.hk.issued`` (identifiers only).
        """
        router = _require_router(caller, destination)
        now = self.clock()
        policy = self.send_policy
        try:
            request = verify_rtsolpr(icmpv6, source=source, destination=destination, now=now, policy=policy)
            if not self.store.remember_nonce(source.packed, request.nonce, ttl=request.nonce_ttl):
                raise ReplayedNonce("this CGA already sent this Nonce within the timestamp window")
        except (DecodeError, InvalidRequest, VerificationError) as exc:
            reason = "malformed" if isinstance(exc, DecodeError) else exc.reason
            self._audit(
                "send.hk.rejected",
                now,
                actor=caller.name,
                ar=router,
                ar_address=str(destination),
                cga=str(source),
                reason=reason,
            )
            raise
        record, lifetime, reused = self._live_send_key(request, now)
        encrypted = rsa.encrypt_handover_key(
            request.encryption_key, record.hk, min_bits=policy.min_key_bits, max_bits=policy.max_key_bits
        )
        option = icmpwire.HandoverKeyReply(int(request.algorithm), lifetime, encrypted).encode()
        self._audit(
            "send.hk.issued",
            now,
            actor=caller.name,
            ar=router,
            ar_address=str(destination),
            cga=str(source),
            key_hash=request.cga_key_hash.hex(),
            spi=keys.SPI_RFC5269,
            identifier=request.identifier,
            algorithm=request.algorithm.label,
            lifetime=lifetime,
            reused=reused,
        )
        return SendHandoverKeyResult(
            handover_key_reply=option,
            nonce=request.nonce,
            identifier=request.identifier,
            lifetime=lifetime,
            hk=record.hk,
            hk_expires_at=record.expires_at,
            algorithm=request.algorithm,
            cga=source,
            cga_key_hash=request.cga_key_hash,
            reused=reused,
        )

    def _live_send_key(self, request: VerifiedRtSolPr, now: float) -> tuple[SendKeyRecord, int, bool]:
        """The live HK of the request's CGA key, or a new random one (RFC 5269 §3.2, §3.6), stored;
        returns (record, whole seconds it has left, reused).

        One live HK per CGA key, also when two first requests race (two ARs, or a retransmitted RtSolPr):
        the creator holds a short claim on the key hash; a loser waits for the winner's key (bounded).
        """
        token: str | None = None
        for attempt in range(_SEND_CLAIM_ATTEMPTS):
            found = self._reuse_send_key(request, now)
            if found is not None:
                return found
            token = self.store.lock_send_key(request.cga_key_hash, ttl=_SEND_CLAIM_SECONDS)
            if token is not None:
                break
            time.sleep(0.005 * (attempt + 1))
        try:
            if token is not None:  # re-check under the claim: the previous holder may just have stored it
                found = self._reuse_send_key(request, now)
                if found is not None:
                    return found
            lifetime = self.send_policy.granted_lifetime(self.max_lifetime)
            record = SendKeyRecord(
                cga=request.source,
                key_hash=request.cga_key_hash,
                hk=SecretBytes(secrets.token_bytes(rsa.HANDOVER_KEY_LENGTH)),
                created_at=now,
                expires_at=now + lifetime,
            )
            self.store.put_send_key(record, now=now)
            return record, lifetime, False
        finally:
            if token is not None:
                self.store.unlock_send_key(request.cga_key_hash, token)

    def _reuse_send_key(self, request: VerifiedRtSolPr, now: float) -> tuple[SendKeyRecord, int, bool] | None:
        existing = self.store.get_send_key_by_key_hash(request.cga_key_hash)
        remaining = 0 if existing is None else int(existing.expires_at - now)
        if existing is None or remaining < 1:
            return None
        if existing.cga != request.source:
            # The same key under a new CGA (another prefix or modifier): one live HK per key, now found by
            # the new CGA; put_send_key drops the old CGA's record.
            existing = dataclasses.replace(existing, cga=request.source)
            self.store.put_send_key(existing, now=now)
        return existing, remaining, True


@dataclasses.dataclass(frozen=True)
class _StoreCall:
    """One store operation a flow needs: the method of that name on :class:`RedisStore` (sync) or on
    :class:`~aaa_fmip.store.redis.AsyncRedisOps` (asyncio), which take the same arguments."""

    method: str
    args: tuple[object, ...] = ()
    kwargs: Mapping[str, object] = dataclasses.field(default_factory=dict)


# A use case written once, run by either driver: it yields the store calls it needs and gets their results back.
_Flow = Generator[_StoreCall, Any, T]


def _run(flow: _Flow[T], store: RedisStore) -> T:
    """Drive ``flow`` with blocking store calls."""
    try:
        call = next(flow)
        while True:
            call = flow.send(getattr(store, call.method)(*call.args, **call.kwargs))
    except StopIteration as done:
        return cast(T, done.value)


async def _run_async(flow: _Flow[T], store: AsyncRedisOps) -> T:
    """Drive ``flow`` with the asyncio store calls of the running event loop."""
    try:
        call = next(flow)
        while True:
            call = flow.send(await getattr(store, call.method)(*call.args, **call.kwargs))
    except StopIteration as done:
        return cast(T, done.value)


def _audit_item(event: str, at: float, **fields: str | int | None) -> AuditItem:
    """An audit entry to append: fields that are None are left out. Identifiers only, never key material."""
    return event, {k: v for k, v in fields.items() if v is not None}, at


def _derive_grant(
    caller: Caller, router: str, ar_address: IPv6, record: SessionRecord, now: float
) -> tuple[HandoverKeyGrant, AuditItem]:
    """The HK of ``record`` for ``ar_address`` (RFC 5568 §6.4.5 key scoping: one HK per AR-ID) and its
    ``hk.issued`` audit entry, not yet appended."""
    hk = keys.derive_hk(record.hmk, record.hmk_name, ar_address, record.spi)
    lifetime = int(record.expires_at - now)
    return _grant_of(hk, lifetime), _hk_issued(caller.name, router, ar_address, record.hmk_name, hk, lifetime, now)


def _grant_of(hk: keys.HandoverKey, lifetime: int) -> HandoverKeyGrant:
    return HandoverKeyGrant(hk=hk.hk, hk_name=hk.hk_name, spi=hk.spi, lifetime=lifetime, algorithm="HMAC-SHA1-96")


def _hk_issued(
    actor: str, router: str, ar_address: IPv6, hmk_name: bytes, hk: keys.HandoverKey, lifetime: int, now: float
) -> AuditItem:
    """The ``hk.issued`` audit entry of an HK handed to ``router``: identifiers only."""
    return _audit_item(
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


def _authenticates(key: SecretBytes, ncoa: IPv6, par: IPv6, auth: mhwire.BadfInput) -> bool:
    try:
        badf.verify_authenticator(key, ncoa, par, auth.mh_data, auth.authenticator)
    except BadAuthenticator:
        return False
    return True


def _require(caller: Caller, *roles: Role) -> None:
    if caller.role not in roles:
        raise Forbidden(f"role {caller.role!r} may not do this", reason="wrong-role")


def _require_router(caller: Caller, address: IPv6) -> str:
    """The AR's name, if ``address`` is one of the calling AR's own addresses (else Forbidden)."""
    _require(caller, "ar")
    if caller.router is None or not caller.router.owns(address):
        raise Forbidden(f"{address} is not an address of the calling access router", reason="not-your-address")
    return caller.router.name
