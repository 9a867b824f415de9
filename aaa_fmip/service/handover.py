"""The AR side: an access router's own handover key (RFC 4962 scoping) and FBU verification."""

from __future__ import annotations

import asyncio

from aaa_fmip import keys
from aaa_fmip.crypto import badf
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import (
    BadAuthenticator,
    InvalidRequest,
    NotFound,
)
from aaa_fmip.model import Caller, FbuAccepted, FbuRejected, FbuVerdict, HandoverKeyGrant
from aaa_fmip.service._access import IPv6, UseCase, audit_item, require_router
from aaa_fmip.service.sessions import grant_of, hk_issued, normalise_calling_station_id
from aaa_fmip.store import AuditItem, SessionRecord
from aaa_fmip.store.ops import Op
from aaa_fmip.wire import mh as mhwire

# How many SPI collisions we try before giving up (architecture.md §3: "try each candidate, bounded").
MAX_SPI_CANDIDATES = 8


class HandoverUseCases(UseCase):
    """The AR side: an AR's own handover key, and FBU verification (RFC 5568 §6.4.5)."""

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
        well-formed FBU that fails returns ``valid=False`` with a stable reason.
        """
        verdict, entry = self.store.run_replay(self._verify_fbu_flow(caller, source, destination, mh, home_address))
        self.store.append_audits([entry])
        return verdict

    async def verify_fbu_async(
        self,
        caller: Caller,
        *,
        source: IPv6,
        destination: IPv6,
        mh: bytes,
        home_address: IPv6 | None = None,
    ) -> FbuVerdict:
        """:meth:`verify_fbu` for an event loop: the same flow, on the store's asyncio client
        (:attr:`Store.aio`), the verdict group-committed to the audit trail; on a store without one, in a
        worker thread."""
        aio = self.store.aio
        if aio is None:
            return await asyncio.to_thread(
                self.verify_fbu, caller, source=source, destination=destination, mh=mh, home_address=home_address
            )
        verdict, entry = await aio.arun_replay(self._verify_fbu_flow(caller, source, destination, mh, home_address))
        await aio.append_audits([entry])
        return verdict

    def _verify_fbu_flow(
        self, caller: Caller, source: IPv6, destination: IPv6, mh: bytes, home_address: IPv6 | None
    ) -> Op[tuple[FbuVerdict, AuditItem]]:
        """The verification as one flow of store operations (run by either driver), and its audit entry."""
        router = require_router(caller, destination)
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
        entry = audit_item(
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
        return verdict, entry

    def _check_fbu(
        self,
        message: mhwire.FBU,
        auth: mhwire.BadfInput,
        pcoa: IPv6,
        ncoa: IPv6,
        par: IPv6,
        now: float,
    ) -> Op[FbuVerdict]:
        def reject(reason: str) -> FbuVerdict:
            return FbuRejected(reason=reason, spi=auth.spi, sequence=message.sequence)

        ops = self.store.ops
        key: SecretBytes | None = None
        scope = b""
        expires_at = 0.0
        if auth.spi == 0:
            # RFC 5269 §4: SPI 0 names the SEND-established key of the MN's CGA (its PCoA).
            send_key = yield from ops.get_send_key_by_cga(pcoa)
            if send_key is None:
                return reject("unknown-spi")
            if send_key.expires_at <= now:
                return reject("expired")
            if not _authenticates(send_key.hk, ncoa, par, auth):
                return reject("bad-authenticator")
            key, scope, expires_at = send_key.hk, pcoa.packed, send_key.expires_at
        else:
            candidates = yield from ops.find_by_spi(auth.spi, limit=MAX_SPI_CANDIDATES)
            if not candidates:
                revoked = yield from ops.is_revoked(spi=auth.spi)
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
        outcome = yield from ops.check_replay(scope, par.packed, message.sequence, auth.authenticator, ttl=remaining)
        if outcome == "replay":
            return reject("replay")
        return FbuAccepted(
            verdict=outcome,
            spi=auth.spi,
            sequence=message.sequence,
            ncoa=ncoa,
            lifetime=min(message.lifetime * self.lifetime_unit, remaining),
        )


def _derive_grant(
    caller: Caller, router: str, ar_address: IPv6, record: SessionRecord, now: float
) -> tuple[HandoverKeyGrant, AuditItem]:
    """The HK of ``record`` for ``ar_address`` (RFC 5568 §6.4.5 key scoping: one HK per AR-ID) and its
    ``hk.issued`` audit entry, not yet appended."""
    hk = keys.derive_hk(record.hmk, record.hmk_name, ar_address, record.spi)
    lifetime = int(record.expires_at - now)
    return grant_of(hk, lifetime), hk_issued(caller.name, router, ar_address, record.hmk_name, hk, lifetime, now)


def _authenticates(key: SecretBytes, ncoa: IPv6, par: IPv6, auth: mhwire.BadfInput) -> bool:
    try:
        badf.verify_authenticator(key, ncoa, par, auth.mh_data, auth.authenticator)
    except BadAuthenticator:
        return False
    return True
