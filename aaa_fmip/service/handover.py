"""The AR side: an access router's own handover key (RFC 4962 scoping) and FBU verification."""

from __future__ import annotations

import asyncio
import dataclasses

from aaa_fmip import keys
from aaa_fmip.crypto import badf
from aaa_fmip.errors import InvalidRequest, NotFound, StoreError
from aaa_fmip.model import Caller, FbuAccepted, FbuRejected, FbuVerdict, HandoverKeyGrant, address_text
from aaa_fmip.service._access import IPv6, UseCase, audit_item, require_router
from aaa_fmip.service.cache import Candidate, SessionCache
from aaa_fmip.service.sessions import grant_of, hk_issued, normalise_calling_station_id
from aaa_fmip.store import AuditItem, ReplayOutcome, SessionRecord
from aaa_fmip.store.ops import Op, VerifyCommit
from aaa_fmip.wire import mh as mhwire

# How many SPI collisions we try before giving up (architecture.md §3: "try each candidate, bounded").
MAX_SPI_CANDIDATES = 8
# A verification whose session was revoked or replaced between its read and its commit reads again, bounded.
COMMIT_ATTEMPTS = 3


class HandoverUseCases(UseCase):
    """The AR side: an AR's own handover key, and FBU verification (RFC 5568 §6.4.5)."""

    session_cache: SessionCache

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
        router = require_router(caller, ar_address)
        if sum(x is not None for x in (spi, calling_station_id, hmk_name)) != 1:
            raise InvalidRequest("give exactly one of spi, calling_station_id or hmk_name", reason="bad-selector")
        now = self.clock()
        if spi is not None:
            if not 0 < spi <= 0xFFFFFFFF:
                raise InvalidRequest("spi must be in 1..2^32-1 (0 is the RFC 5269 SEND key)", reason="bad-spi")
            candidates = self.store.run(self.store.ops.find_by_spi(spi, limit=MAX_SPI_CANDIDATES))
            if len(candidates) > 1:
                raise InvalidRequest(
                    "several sessions share this SPI; select by hmk_name or calling_station_id",
                    reason="ambiguous-spi",
                )
            record = candidates[0] if candidates else None
        elif calling_station_id is not None:
            record = self.store.run(
                self.store.ops.find_by_calling_station(normalise_calling_station_id(calling_station_id))
            )
        else:
            assert hmk_name is not None
            record = self.store.run(self.store.ops.get_session(hmk_name))
        if record is None or record.expires_at <= now:
            revoked = (
                self.store.run(self.store.ops.is_revoked(spi=spi, hmk_name=hmk_name)) if (spi or hmk_name) else False
            )
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
        """Verify an FBU's BADF and sequence number for the PAR ``destination`` (RFC 5568 §6.4.5), and audit
        the verdict.

        Malformed Mobility Headers raise DecodeError (the adapter answers 422 naming the field); a
        well-formed FBU that fails returns ``valid=False`` with a stable reason. One Redis round trip when the
        session is cached (module :mod:`aaa_fmip.service.cache`), two otherwise.
        """
        fbu = _parse_fbu(caller, source, destination, mh, home_address)
        now = self.clock()
        store = self.store
        match: _Match | FbuRejected | None = self._match_cached(fbu, now)
        for _ in range(COMMIT_ATTEMPTS):
            if match is None:
                match = store.run(self._match(fbu, now), "verify_fbu")
            if isinstance(match, FbuRejected):
                store.append_audits([_entry(fbu, match, now)])
                return match
            outcome, audited = store.commit_verify(self._commit(fbu, match, now))
            if outcome is None:  # revoked or replaced since it was read: read again
                self.session_cache.evict(fbu.auth.spi)
                match = None
                continue
            verdict = self._verdict(fbu, match, outcome, now)
            if not audited:
                store.append_audits([_entry(fbu, verdict, now)])
            return verdict
        raise StoreError("the session kept changing while the FBU was verified; try again")

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
        (:attr:`Store.aio`), in this loop's turn for the audit chain; on a store without one, in a worker
        thread."""
        aio = self.store.aio
        if aio is None:
            return await asyncio.to_thread(
                self.verify_fbu, caller, source=source, destination=destination, mh=mh, home_address=home_address
            )
        fbu = _parse_fbu(caller, source, destination, mh, home_address)
        now = self.clock()
        match: _Match | FbuRejected | None = self._match_cached(fbu, now)
        for _ in range(COMMIT_ATTEMPTS):
            if match is None:
                match = await aio.arun(self._match(fbu, now), "verify_fbu")
            if isinstance(match, FbuRejected):
                await aio.append_audits([_entry(fbu, match, now)])
                return match
            outcome, audited = await aio.commit_verify(self._commit(fbu, match, now))
            if outcome is None:
                self.session_cache.evict(fbu.auth.spi)
                match = None
                continue
            verdict = self._verdict(fbu, match, outcome, now)
            if not audited:
                await aio.append_audits([_entry(fbu, verdict, now)])
            return verdict
        raise StoreError("the session kept changing while the FBU was verified; try again")

    def _match_cached(self, fbu: _Fbu, now: float) -> _Match | FbuRejected | None:
        """The cached session whose key verifies the FBU; None to read Redis (not cached, or no cached key
        verifies: a session added since may). No Redis call."""
        if fbu.algorithm is None:
            return FbuRejected(reason="bad-authenticator-length", spi=fbu.auth.spi, sequence=fbu.message.sequence)
        spi = fbu.auth.spi
        if spi == 0:
            return None
        cache = self.session_cache
        candidates = cache.get(spi, now)
        if not candidates:
            return None
        return self._verifying(fbu, candidates, fbu.algorithm)

    def _verifying(self, fbu: _Fbu, candidates: tuple[Candidate, ...], algorithm: badf.Algorithm) -> _Match | None:
        """The candidate session whose HK for this PAR verifies the FBU's authenticator (HKs kept in the cache
        for the next FBU of the same session at the same PAR), or None."""
        spi, ar_id = fbu.auth.spi, fbu.par.packed
        cache = self.session_cache
        for c in candidates:
            rec = c.record
            hk = cache.hk(spi, rec.hmk_name, ar_id)
            if hk is None:
                hk = keys.derive_hk(rec.hmk, rec.hmk_name, fbu.par, rec.spi).hk
                cache.keep_hk(spi, rec.hmk_name, ar_id, hk)
            if badf.authenticator_matches(hk, fbu.mac_input, fbu.auth.authenticator, algorithm):
                return _Match(self.store.ops.session_key(rec.hmk_name), c.digest, rec.hmk_name, rec.expires_at)
        return None

    def _match(self, fbu: _Fbu, now: float) -> Op[_Match | FbuRejected]:
        """The key that verifies the FBU, read from Redis (and cached), or the rejection (RFC 5568 §6.4.5)."""

        def reject(reason: str) -> FbuRejected:
            return FbuRejected(reason=reason, spi=fbu.auth.spi, sequence=fbu.message.sequence)

        ops = self.store.ops
        algorithm = fbu.algorithm
        if algorithm is None:
            return reject("bad-authenticator-length")
        auth = fbu.auth
        if auth.spi == 0:
            # RFC 5269 §4: SPI 0 names the SEND-established key of the MN's CGA (its PCoA).
            send_key = yield from ops.get_send_key_by_cga(fbu.pcoa)
            if send_key is None:
                return reject("unknown-spi")
            if send_key.expires_at <= now:
                return reject("expired")
            if not badf.authenticator_matches(send_key.hk, fbu.mac_input, auth.authenticator, algorithm):
                return reject("bad-authenticator")
            return _Match(ops.sendkey_key(fbu.pcoa), "", fbu.pcoa.packed, send_key.expires_at)
        found = yield from ops.find_by_spi_with_digest(auth.spi, limit=MAX_SPI_CANDIDATES)
        if not found:
            revoked = yield from ops.is_revoked(spi=auth.spi)
            return reject("revoked" if revoked else "unknown-spi")
        live = tuple(Candidate(rec, digest) for rec, digest in found if rec.expires_at > now)
        if not live:
            return reject("expired")
        self.session_cache.put(auth.spi, live, now)
        return self._verifying(fbu, live, algorithm) or reject("bad-authenticator")

    def _commit(self, fbu: _Fbu, match: _Match, now: float) -> VerifyCommit:
        remaining = max(1, int(match.expires_at - now))
        spi, sequence = fbu.auth.spi, fbu.message.sequence
        accepted = None
        if self.store.ops.verify_audits_inline:  # else (a Cluster, WAIT) the verdict's entry follows the commit
            # the entry an accepted verdict writes with the commit; any other verdict's entry follows it
            accepted = _entry(fbu, FbuAccepted("accepted", spi, sequence, fbu.ncoa, 0), now)
        return VerifyCommit(
            record_key=match.record_key,
            digest=match.digest,
            scope=match.scope,
            ar_id=fbu.par.packed,
            sequence=fbu.message.sequence,
            authenticator=fbu.auth.authenticator,
            ttl=remaining,
            accepted=accepted,
        )

    def _verdict(self, fbu: _Fbu, match: _Match, outcome: ReplayOutcome, now: float) -> FbuVerdict:
        if outcome == "replay":
            return FbuRejected(reason="replay", spi=fbu.auth.spi, sequence=fbu.message.sequence)
        remaining = max(1, int(match.expires_at - now))
        return FbuAccepted(
            verdict=outcome,
            spi=fbu.auth.spi,
            sequence=fbu.message.sequence,
            ncoa=fbu.ncoa,
            lifetime=min(fbu.message.lifetime * self.lifetime_unit, remaining),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Fbu:
    """An FBU as received, parsed once: who asks, the addresses, the message and what its BADF covers."""

    actor: str
    router: str
    par: IPv6
    par_text: str  # for the audit entries (IPv6 text is not cheap to make)
    pcoa: IPv6
    ncoa: IPv6
    message: mhwire.FBU
    auth: mhwire.BadfInput
    mac_input: bytes  # CoA | PAR | MH data (RFC 5568 §6.4.5), the same for every candidate key
    algorithm: badf.Algorithm | None  # None: an authenticator length no algorithm produces


@dataclasses.dataclass(frozen=True, slots=True)
class _Match:
    """The record whose key verified the FBU: where it is stored and its digest there, the replay scope."""

    record_key: str
    digest: str
    scope: bytes
    expires_at: float


def _parse_fbu(caller: Caller, source: IPv6, destination: IPv6, mh: bytes, home_address: IPv6 | None) -> _Fbu:
    """Check the caller and parse the Mobility Header once (DecodeError for malformed input)."""
    router = require_router(caller, destination)
    pcoa = home_address or source
    message = mhwire.decode_mh(mh, source=pcoa, destination=destination)
    if not isinstance(message, mhwire.FBU):
        raise InvalidRequest("the Mobility Header is not a Fast Binding Update", reason="not-fbu")
    auth = mhwire.badf_input_of(mh, message)
    ncoa = source
    for option in message.options:
        if isinstance(option, mhwire.AlternateCareOfAddress):
            ncoa = option.address
            break
    try:
        algorithm: badf.Algorithm | None = badf.algorithm_for_length(len(auth.authenticator))
    except badf.UnsupportedAuthenticatorLength:
        algorithm = None
    return _Fbu(
        caller.name,
        router,
        destination,
        address_text(destination),
        pcoa,
        ncoa,
        message,
        auth,
        ncoa.packed + destination.packed + auth.mh_data,
        algorithm,
    )


def _entry(fbu: _Fbu, verdict: FbuVerdict, now: float) -> AuditItem:
    return audit_item(
        "fbu.verified" if verdict.valid else "fbu.rejected",
        now,
        actor=fbu.actor,
        ar=fbu.router,
        ar_address=fbu.par_text,
        spi=fbu.auth.spi,
        sequence=fbu.message.sequence,
        verdict=verdict.verdict,
        reason=verdict.reason,
    )


def _derive_grant(
    caller: Caller, router: str, ar_address: IPv6, record: SessionRecord, now: float
) -> tuple[HandoverKeyGrant, AuditItem]:
    """The HK of ``record`` for ``ar_address`` (RFC 5568 §6.4.5 key scoping: one HK per AR-ID) and its
    ``hk.issued`` audit entry, not yet appended."""
    hk = keys.derive_hk(record.hmk, record.hmk_name, ar_address, record.spi)
    lifetime = int(record.expires_at - now)
    return grant_of(hk, lifetime), hk_issued(caller.name, router, ar_address, record.hmk_name, hk, lifetime, now)
