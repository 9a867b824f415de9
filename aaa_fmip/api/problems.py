"""Errors → RFC 9457 problem details (``application/problem+json``), from one table.

A problem body names the field at fault and a stable ``reason`` code; it never carries a traceback, request
input (which may be key material) or the text of an unexpected exception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aaa_fmip import errors

PROBLEM_JSON: Final = "application/problem+json"
PROBLEM_BASE: Final = "https://aaa-fmip.invalid/problems/"
RETRY_AFTER_SECONDS: Final = "1"

log = logging.getLogger("aaa_fmip.api")


@dataclass(frozen=True)
class _Mapping:
    status: int
    title: str
    expose_detail: bool  # False: the exception text stays in the server (it may say too much)
    default_reason: str


# Checked in order: the first class the exception is an instance of wins (subclasses before their bases).
ERROR_TABLE: Final[tuple[tuple[type[errors.AaaFmipError], _Mapping], ...]] = (
    (errors.NotFound, _Mapping(404, "Not found", True, "not-found")),
    (errors.Forbidden, _Mapping(403, "Forbidden", True, "forbidden")),
    (errors.InvalidRequest, _Mapping(422, "Invalid request", True, "invalid-request")),
    (errors.Conflict, _Mapping(409, "Conflict", True, "conflict")),
    (errors.DecodeError, _Mapping(422, "Malformed input", True, "malformed")),
    (errors.VerificationError, _Mapping(422, "Verification failed", True, "verification-failed")),
    (errors.ServiceError, _Mapping(400, "Request refused", True, "service-error")),
    (errors.StoreNotDurable, _Mapping(503, "Store not durable", True, "store-not-durable")),  # its text is public
    (errors.ReplayNotReplicated, _Mapping(503, "Replay state not replicated", True, "replay-not-replicated")),
    (errors.StoreUnavailable, _Mapping(503, "Store unavailable", False, "store-unavailable")),
    (errors.StoreError, _Mapping(500, "Internal error", False, "internal-error")),
    (errors.CryptoError, _Mapping(500, "Internal error", False, "internal-error")),
    (errors.ConfigError, _Mapping(500, "Internal error", False, "internal-error")),
    (errors.AaaFmipError, _Mapping(500, "Internal error", False, "internal-error")),
)

_GENERIC_DETAIL: Final = {
    500: "The server could not complete the request; the event is logged.",
    503: "The key store cannot be reached; retry shortly.",
}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    reason: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem response; every one carries a stable ``reason`` (its ``type`` is built from it)."""
    body = problem_body(status, title, detail, reason)
    if extra:
        body.update(extra)
    all_headers = {"Cache-Control": "no-store"}
    all_headers.update(headers or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=all_headers)


def problem_body(status: int, title: str, detail: str, reason: str) -> dict[str, Any]:
    return {"type": PROBLEM_BASE + reason, "title": title, "status": status, "detail": detail, "reason": reason}


# Status codes the framework (Starlette/FastAPI) raises itself, with the reason each gets here.
HTTP_REASONS: Final = {
    400: "malformed-body",  # FastAPI: "There was an error parsing the body" (e.g. JSON that is not UTF-8)
    401: "missing-token",
    403: "forbidden",
    404: "no-such-resource",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
}
HTTP_TITLES: Final = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Too large",
    415: "Unsupported media type",
    429: "Too many requests",
}


def error_response(exc: errors.AaaFmipError, *, field: str | None = None) -> JSONResponse:
    """The problem response for a domain error. ``field`` names the request field a DecodeError came from."""
    mapping = next(m for cls, m in ERROR_TABLE if isinstance(exc, cls))
    reason = getattr(exc, "reason", None)
    if not isinstance(reason, str) or not mapping.expose_detail:
        reason = mapping.default_reason
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if mapping.status == 503 else None
    extra: dict[str, Any] | None = None
    if mapping.expose_detail:
        detail = str(exc)
        if isinstance(exc, errors.DecodeError):
            name, message = _decode_location(exc, field or "body")
            detail = f"{name} at offset {exc.offset}: {message}"
            extra = {"errors": [{"field": name, "message": message}]}
    else:
        detail = _GENERIC_DETAIL.get(mapping.status, _GENERIC_DETAIL[500])
        # errors.py promises no key material in these messages (and the log filter redacts key-length hex);
        # they name the failing host or KEK id, which the operator needs and the client does not.
        log.warning("request failed", extra={"error": type(exc).__name__, "status": mapping.status, "detail": str(exc)})
    return problem(mapping.status, mapping.title, detail, reason=reason, headers=headers, extra=extra)


def _decode_location(exc: errors.DecodeError, request_field: str) -> tuple[str, str]:
    """The field a DecodeError names, rooted at the request field the bytes came from (``mh`` → ``mh.checksum``)."""
    inner = exc.field
    rooted = inner == request_field or inner.startswith(request_field + ".")
    name = inner if rooted else f"{request_field}.{inner}"
    message = str(exc)
    prefix = f"{exc.field} at offset {exc.offset}: "
    return name, message.removeprefix(prefix)


_REQUEST_PARTS: Final = ("body", "query", "path", "header")


def _location(loc: tuple[int | str, ...]) -> str:
    """pydantic's ``("body", "items", 0, "x")`` → ``items[0].x``; the request part is left out."""
    parts = loc[1:] if loc and loc[0] in _REQUEST_PARTS else loc
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "body"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    items = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        # pydantic appends the failing type (e.g. "function-plain[parse_hex()]") to a union's location.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("is-instance", "lax-or-strict"))))
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        items.append({"field": _location(loc), "message": message})  # never error["input"]: it may be a key
    return items


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem response."""

    @app.exception_handler(errors.AaaFmipError)
    async def _domain(request: Request, exc: errors.AaaFmipError) -> JSONResponse:
        field = getattr(request.state, "decode_field", None)
        return error_response(exc, field=field)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        items = _validation_errors(exc)
        if any(error.get("type") == "json_invalid" for error in exc.errors()):
            # FastAPI locates a JSON syntax error as ("body", offset): name the body instead of a list index.
            items = [{"field": "body", "message": "not valid JSON"}]
        detail = "; ".join(f"{item['field']}: {item['message']}" for item in items) or "invalid request"
        return problem(422, "Invalid request", detail, reason="invalid-request", extra={"errors": items})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = HTTP_REASONS.get(exc.status_code, f"http-{exc.status_code}")
        extra_headers = dict(exc.headers or {})
        title = HTTP_TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        if isinstance(exc, AuthProblem):
            reason = exc.reason
        return problem(exc.status_code, title, detail, reason=reason, headers=extra_headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Normally RequestMiddleware answers first; this stays as the fallback of the outermost middleware.
        # No message, no traceback to the client; the log line has the type and frames only.
        log.error("unhandled error", exc_info=exc, extra={"route": _route_of(request)})
        return problem(500, "Internal error", _GENERIC_DETAIL[500], reason="internal-error")


class AuthProblem(StarletteHTTPException):
    """401/403 raised by the authentication dependency, with its stable reason."""

    def __init__(self, status_code: int, detail: str, *, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.reason = reason


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "<unmatched>")
