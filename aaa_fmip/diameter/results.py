"""Diameter Result-Codes we send, and the one table that turns service errors into them."""

from __future__ import annotations

from typing import Final

from aaa_fmip.errors import (
    AaaFmipError,
    DecodeError,
    Forbidden,
    InvalidRequest,
    NotFound,
    StoreUnavailable,
)

# RFC 6733 §7.1
SUCCESS: Final = 2001
COMMAND_UNSUPPORTED: Final = 3001
UNABLE_TO_DELIVER: Final = 3002
REALM_NOT_SERVED: Final = 3003
TOO_BUSY: Final = 3004
APPLICATION_UNSUPPORTED: Final = 3007
UNKNOWN_PEER: Final = 3010
AUTHENTICATION_REJECTED: Final = 4001
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


def result_for(exc: AaaFmipError) -> int:
    return next((code for kind, code in ERROR_RESULTS if isinstance(exc, kind)), UNABLE_TO_COMPLY)


def is_protocol_error(result_code: int) -> bool:
    """RFC 6733 §7.1.3: 3xxx answers are protocol errors and carry the E bit."""
    return 3000 <= result_code < 4000
