"""The one exception tree of aaa-fmip.

Adapters (REST, Diameter, RADIUS) translate these once, at the edge, each from one table.
No message of any exception here may contain key material.

::

    AaaFmipError
     +-- DecodeError                 malformed wire input (field and offset named)
     +-- VerificationError           a verifier rejected its input; ``reason`` is a stable kebab-case code
     |    +-- BadAuthenticator       "bad-authenticator"
     |    +-- BadSignature           "bad-signature"
     |    +-- BadCGA                 "bad-cga"
     |    +-- (more, defined next to their verifiers)
     +-- CryptoError                 unwrap failure, wrong KEK, bad public key...
     +-- ConfigError                 bad configuration (names the key)
     +-- StoreError
     |    +-- StoreUnavailable       Redis cannot be reached (→ HTTP 503, Diameter 3004)
     |         +-- StoreNotDurable      Redis would lose replay state: FBUs are not verified (→ 503, 3004)
     |         +-- ReplayNotReplicated  too few replicas acknowledged a replay update in time (→ 503, 3004)
     +-- ServiceError                a use case refused a request
          +-- NotFound               no such session / key (→ 404, Diameter 5030)
          +-- Forbidden              caller outside its scope (→ 403, Diameter 5003)
          +-- InvalidRequest         semantically invalid input (→ 422, Diameter 5004)
          +-- Conflict               the state does not allow it (→ 409), e.g. an audit trail that fails
"""

from __future__ import annotations


class AaaFmipError(Exception):
    """Root of every error raised on purpose by aaa-fmip."""


class DecodeError(AaaFmipError):
    """Malformed wire input. ``field`` names what was being decoded, ``offset`` where."""

    def __init__(self, message: str, *, field: str, offset: int) -> None:
        super().__init__(f"{field} at offset {offset}: {message}")
        self.field = field
        self.offset = offset


class VerificationError(AaaFmipError):
    """A verifier rejected its input. Subclasses set ``reason``."""

    reason: str = "verification-failed"


class BadAuthenticator(VerificationError):
    reason = "bad-authenticator"


class BadSignature(VerificationError):
    reason = "bad-signature"


class BadCGA(VerificationError):
    reason = "bad-cga"


class CryptoError(AaaFmipError):
    """A cryptographic operation could not be performed (wrong KEK, malformed key, ...)."""


class ConfigError(AaaFmipError):
    """Bad configuration; ``key`` names the offending setting."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class StoreError(AaaFmipError):
    """The store failed."""


class StoreUnavailable(StoreError):
    """The store (Redis) cannot be reached; callers must fail closed."""


class StoreNotDurable(StoreUnavailable):
    """The store would lose FBU replay state (no append-only file, a weak fsync policy, an unguarded failover),
    so FBUs are not verified; its message is fit for clients, the operator's reasons are logged."""

    reason = "store-not-durable"


class ReplayNotReplicated(StoreUnavailable):
    """An accepted replay update was not acknowledged by enough replicas in time (``store.replay_wait_*``)."""

    reason = "replay-not-replicated"


class ServiceError(AaaFmipError):
    """A use case refused a request. ``reason`` is a stable kebab-case code."""

    reason: str = "service-error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class NotFound(ServiceError):
    reason = "not-found"


class Forbidden(ServiceError):
    reason = "forbidden"


class InvalidRequest(ServiceError):
    reason = "invalid-request"


class Conflict(ServiceError):
    reason = "conflict"
