"""The audit trail for auditors: read, verify (against a kept checkpoint), signed checkpoints."""

from __future__ import annotations

from aaa_fmip.errors import (
    Conflict,
    CryptoError,
    InvalidRequest,
    StoreError,
    StoreUnavailable,
)
from aaa_fmip.model import Caller
from aaa_fmip.service._access import UseCase, require
from aaa_fmip.store import AuditCheck, AuditEntry, Checkpoint


class AuditUseCases(UseCase):
    """Auditors: read the trail, verify it (against a kept checkpoint), take a signed checkpoint."""

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
        require(caller, "auditor", "admin")
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be in 1..1000", reason="bad-limit")
        try:
            return self.store.run(
                self.store.ops.read_audit(
                    cursor=cursor, limit=limit, since=since, until=until, event=event, spi=spi, ar=ar
                )
            )
        except ValueError:
            raise InvalidRequest("the cursor is not one this service issued", reason="bad-cursor") from None

    def verify_audit(self, caller: Caller, checkpoint: Checkpoint | None = None) -> AuditCheck:
        """Verify the trail, and against ``checkpoint`` when given (one this service signed and the auditor
        kept: detects a truncation or wipe since); a checkpoint whose signature fails is InvalidRequest."""
        require(caller, "auditor", "admin")
        try:
            return self.store.verify_audit(checkpoint)
        except CryptoError as exc:
            raise InvalidRequest(str(exc), reason="bad-checkpoint") from None

    def audit_checkpoint(self, caller: Caller) -> tuple[Checkpoint, dict[str, bytes]]:
        """A signed checkpoint of the trail as it is now (verified first), and the public keys that verify it,
        per KEK id. Raises StoreError when the trail does not verify (no checkpoint vouches for a broken one)."""
        require(caller, "auditor", "admin")
        try:
            return self.store.checkpoint(now=self.clock()), self.store.audit_public_keys
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise Conflict(str(exc), reason="audit-trail-broken") from None

    def record_auth_failure(self, *, reason: str, count: int, **fields: str | None) -> None:
        """Audit refused authentications (a summary per source address, written by the REST listener at most
        once per interval): ``auth.failed`` with the reason, how many, and identifiers only (never a token)."""
        self._audit("auth.failed", self.clock(), reason=reason, count=count, **fields)
