"""Diameter Result-Codes we send, and the one table that turns service errors into them (and into what the
answer's Error-Message may say: the service's own explanation for a refused request, a fixed sentence for a
failure inside the server, whose details only go to the log)."""

from __future__ import annotations

from typing import Final

from aaa_fmip.errors import (
    AaaFmipError,
    DecodeError,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceError,
    StoreUnavailable,
    VerificationError,
)

# RFC 6733 §7.1
MULTI_ROUND_AUTH: Final = 1001
SUCCESS: Final = 2001
COMMAND_UNSUPPORTED: Final = 3001
UNABLE_TO_DELIVER: Final = 3002
REALM_NOT_SERVED: Final = 3003
TOO_BUSY: Final = 3004
APPLICATION_UNSUPPORTED: Final = 3007
UNKNOWN_PEER: Final = 3010
AUTHENTICATION_REJECTED: Final = 4001
AVP_UNSUPPORTED: Final = 5001
AUTHORIZATION_REJECTED: Final = 5003
INVALID_AVP_VALUE: Final = 5004
MISSING_AVP: Final = 5005
CONTRADICTING_AVPS: Final = 5007
AVP_OCCURS_TOO_MANY_TIMES: Final = 5009
UNABLE_TO_COMPLY: Final = 5012
# RFC 4006 §9.1 (the Credit-Control application defines it; used widely for "no such subscriber")
USER_UNKNOWN: Final = 5030

# Service errors → Result-Code. Checked in order (subclasses first); anything else is 5012.
ERROR_RESULTS: Final[tuple[tuple[type[AaaFmipError], int], ...]] = (
    (NotFound, USER_UNKNOWN),
    (Forbidden, AUTHORIZATION_REJECTED),
    (InvalidRequest, INVALID_AVP_VALUE),
    (DecodeError, INVALID_AVP_VALUE),
    (StoreUnavailable, TOO_BUSY),
)


# What Error-Message says. A refused request (ServiceError, DecodeError, VerificationError) is explained with the
# exception's text, written for the caller; anything else (the store, a KEK, a bug) may name internals such as a
# Redis address, so the answer gets a fixed sentence, as the REST problem details do.
EXPOSED_ERRORS: Final[tuple[type[AaaFmipError], ...]] = (ServiceError, DecodeError, VerificationError)
STORE_UNAVAILABLE_MESSAGE: Final = "The key store cannot be reached"
INTERNAL_ERROR_MESSAGE: Final = "The server could not complete the request; the event is logged"


def result_for(exc: AaaFmipError) -> int:
    return next((code for kind, code in ERROR_RESULTS if isinstance(exc, kind)), UNABLE_TO_COMPLY)


def error_message_for(exc: AaaFmipError) -> str:
    """The Error-Message for an answer caused by ``exc``; never the text of an internal failure."""
    if isinstance(exc, EXPOSED_ERRORS):
        return str(exc)
    if isinstance(exc, StoreUnavailable):
        return STORE_UNAVAILABLE_MESSAGE
    return INTERNAL_ERROR_MESSAGE


def is_protocol_error(result_code: int) -> bool:
    """RFC 6733 §7.1.3: 3xxx answers are protocol errors and carry the E bit."""
    return 3000 <= result_code < 4000
