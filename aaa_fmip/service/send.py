"""The RFC 5269 SEND fallback: an HK for a SEND-verified RtSolPr, encrypted to the MN's key."""

from __future__ import annotations

import dataclasses
import secrets
import time

from aaa_fmip import keys
from aaa_fmip.crypto import rsa
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import (
    DecodeError,
    InvalidRequest,
    VerificationError,
)
from aaa_fmip.model import Caller
from aaa_fmip.send_policy import ReplayedNonce, SendHandoverKeyResult, VerifiedRtSolPr, verify_rtsolpr
from aaa_fmip.service._access import IPv6, UseCase, require_router
from aaa_fmip.store import SendKeyRecord
from aaa_fmip.wire import icmpv6 as icmpwire

# A request creating the first HK of a CGA key holds a claim this long; others wait up to ~1 s in total for it.
_SEND_CLAIM_SECONDS = 2.0
_SEND_CLAIM_ATTEMPTS = 18


class SendUseCases(UseCase):
    """The RFC 5269 SEND fallback (architecture.md §4)."""

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
        router = require_router(caller, destination)
        now = self.clock()
        policy = self.send_policy
        try:
            request = verify_rtsolpr(icmpv6, source=source, destination=destination, now=now, policy=policy)
            if not self.store.run(self.store.ops.remember_nonce(source.packed, request.nonce, ttl=request.nonce_ttl)):
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
            token = self.store.run(self.store.ops.lock_send_key(request.cga_key_hash, ttl=_SEND_CLAIM_SECONDS))
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
            self.store.run(self.store.ops.put_send_key(record, now=now))
            return record, lifetime, False
        finally:
            if token is not None:
                self.store.run(self.store.ops.unlock_send_key(request.cga_key_hash, token))

    def _reuse_send_key(self, request: VerifiedRtSolPr, now: float) -> tuple[SendKeyRecord, int, bool] | None:
        existing = self.store.run(self.store.ops.get_send_key_by_key_hash(request.cga_key_hash))
        remaining = 0 if existing is None else int(existing.expires_at - now)
        if existing is None or remaining < 1:
            return None
        if existing.cga != request.source:
            # The same key under a new CGA (another prefix or modifier): one live HK per key, now found by
            # the new CGA; put_send_key drops the old CGA's record.
            existing = dataclasses.replace(existing, cga=request.source)
            self.store.run(self.store.ops.put_send_key(existing, now=now))
        return existing, remaining, True
