"""The hot path ``POST /v1/fbu/verify`` as a plain ASGI endpoint, in front of FastAPI's routing.

Why: per request, FastAPI resolves the route's dependencies (context, bearer scheme, caller), validates the body
through its generic machinery, builds a response model and serialises it, inside three layers of middleware;
on this path that was most of the CPU a verification cost (docs/performance.md, the profiles). This endpoint
does the same steps directly: the same bearer token check (:meth:`CallerRegistry.authenticate`), the same
request model (:class:`~aaa_fmip.api.schemas.FbuVerifyRequest`, validated by pydantic from the JSON text), the
same rate limit, the same service call and metrics, the same problem responses
(:func:`aaa_fmip.api.problems.error_response`).

The contract stays FastAPI's: the route in :mod:`aaa_fmip.api.routes` still defines the OpenAPI document, and
every request this endpoint does not answer on its own terms goes to it unchanged, body included: a missing,
unknown or wrong-role token, a content type other than JSON, a body that does not validate. Those answers (401,
403, 422 with ``errors``, 429 for an address) and their side effects (failure counts, audit summaries) are
therefore exactly the route's; this endpoint takes no side effect before it is sure to answer itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aaa_fmip.api.context import ApiContext
from aaa_fmip.api.limits import RequestGuard
from aaa_fmip.api.middleware import fast_path
from aaa_fmip.api.problems import error_response, problem
from aaa_fmip.api.schemas import FbuVerifyRequest
from aaa_fmip.errors import AaaFmipError
from aaa_fmip.model import FbuAccepted, address_text
from aaa_fmip.ratelimit import retry_after_header

PATH: Final = fast_path
REST: Final = "rest"
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


class FbuVerifyEndpoint:
    """Answers ``POST /v1/fbu/verify`` (see the module docstring); ``route`` is FastAPI's route object of that
    path, put in the scope for the metrics and the access log as FastAPI's router would."""

    def __init__(self, ctx: ApiContext, guard: RequestGuard, route: object) -> None:
        self.ctx = ctx
        self.guard = guard
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send, fallback: ASGIApp) -> None:
        ctx = self.ctx
        token = None
        json_body = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, param = value.decode("latin-1").partition(" ")
                token = param if scheme.lower() == "bearer" and param else None
            elif name == b"content-type":
                json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
        caller = ctx.callers.authenticate(token) if token is not None else None
        body = await _read_body(receive)
        request: FbuVerifyRequest | None = None
        if caller is not None and caller.role == "ar" and json_body:
            try:
                request = FbuVerifyRequest.model_validate_json(body)
            except ValidationError:
                request = None
        if caller is None or request is None:
            await fallback(scope, _replay(body, receive), send)  # the route answers, with its side effects
            return
        scope["route"] = self.route
        scope.setdefault("state", {})["caller"] = caller.name
        wait = self.guard.caller_wait(caller.name)
        if wait:
            detail = "this caller's request rate is over its limit"
            headers = {"Retry-After": retry_after_header(wait)}
            refused = problem(429, "Too many requests", detail, reason="rate-limited", headers=headers)
            await refused(scope, receive, send)
            return
        metrics = ctx.metrics
        try:
            with metrics.operation(REST, "verify_fbu"):
                verdict = await ctx.service.verify_fbu_async(
                    caller,
                    source=request.source,
                    destination=request.destination,
                    mh=request.mh,
                    home_address=request.home_address,
                )
        except AaaFmipError as exc:
            await error_response(exc, field="mh")(scope, receive, send)
            return
        metrics.observe_fbu(REST, verdict)
        if isinstance(verdict, FbuAccepted):
            out: dict[str, Any] = {
                "valid": True,
                "verdict": verdict.verdict,
                "spi": verdict.spi,
                "sequence": verdict.sequence,
                "ncoa": address_text(verdict.ncoa),
                "lifetime": verdict.lifetime,
            }
        else:
            out = {"valid": False, "reason": verdict.reason}
        payload = orjson.dumps(out)
        response_headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode("ascii"))]
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # a disconnect: what arrived is all there is
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that gives ``body`` once, then whatever the connection says next."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
