"""Dependencies: the context of this app (typed pieces), and the authenticated caller with the role a route requires.

Every ``/v1`` request carries ``Authorization: Bearer <token>``. Missing or unknown token → 401; a known token
whose role may not call the route → 403. Tokens are compared as SHA-256 digests, in constant time
(:meth:`aaa_fmip.bootstrap.CallerRegistry.authenticate`). Failures are counted and reported, and callers and
failing addresses are rate-limited (429), by :class:`aaa_fmip.api.limits.RequestGuard`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aaa_fmip.api.context import ApiContext
from aaa_fmip.api.limits import RequestGuard
from aaa_fmip.api.problems import AuthProblem
from aaa_fmip.model import Caller, Role
from aaa_fmip.ratelimit import retry_after_header

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description=(
        "A token made with `aaa-fmip token new`; its role (ar, aaa, auditor, admin, mos) decides what it may call."
    ),
)
_CHALLENGE = 'Bearer realm="aaa-fmip"'


async def get_context(request: Request) -> ApiContext:
    # async: no IO here, so FastAPI need not hop to its thread pool for it (one hop fewer per request)
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


def require_role(*roles: Role) -> Callable[..., Awaitable[Caller]]:
    """A dependency that authenticates the bearer token and admits only ``roles``."""
    allowed = frozenset(roles)

    async def authenticated_caller(
        request: Request,
        ctx: ContextDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        guard: RequestGuard = request.app.state.guard
        address = request.client.host if request.client else "unknown"
        route = getattr(request.scope.get("route"), "path", "<unmatched>")
        if credentials is None or not credentials.credentials:
            _refuse_address(guard.failed("missing-token", address, route))
            raise AuthProblem(
                401,
                "an Authorization: Bearer token is required",
                reason="missing-token",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        caller = ctx.callers.authenticate(credentials.credentials)
        if caller is None:
            _refuse_address(guard.failed("invalid-token", address, route))
            raise AuthProblem(
                401,
                "the bearer token is not known",
                reason="invalid-token",
                headers={"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
            )
        request.state.caller = caller.name  # for the access log line
        wait = guard.caller_wait(caller.name)
        if wait:
            raise rate_limited(wait, "this caller's request rate is over its limit")
        if caller.role not in allowed:
            guard.failed("wrong-role", address, route, caller=caller.name)
            wanted = " or ".join(sorted(allowed))
            raise AuthProblem(
                403, f"this call needs the role {wanted}; the token has {caller.role}", reason="wrong-role"
            )
        return caller

    return authenticated_caller


def rate_limited(wait: float, detail: str) -> AuthProblem:
    """429 with Retry-After (RFC 6585 §4)."""
    return AuthProblem(429, detail, reason="rate-limited", headers={"Retry-After": retry_after_header(wait)})


def _refuse_address(wait: float) -> None:
    if wait:
        raise rate_limited(wait, "too many failed authentications from this address")


ArCaller = Annotated[Caller, Depends(require_role("ar"))]
AaaCaller = Annotated[Caller, Depends(require_role("aaa"))]
RevokerCaller = Annotated[Caller, Depends(require_role("aaa", "admin"))]
AuditorCaller = Annotated[Caller, Depends(require_role("auditor"))]
AdminCaller = Annotated[Caller, Depends(require_role("admin"))]
MosCaller = Annotated[Caller, Depends(require_role("mos"))]
