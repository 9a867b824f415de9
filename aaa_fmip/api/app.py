"""The FastAPI app factory. Everything the app uses comes from the :class:`~aaa_fmip.api.context.ApiContext` it
is given (``app.state.context``); there are no module-level singletons, so tests and several apps in one process
never share state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from aaa_fmip import __version__
from aaa_fmip.api import fast, problems, routes_mih, routes_router, routes_router_pairs, routes_send
from aaa_fmip.api.context import ApiContext
from aaa_fmip.api.limits import RequestGuard
from aaa_fmip.api.middleware import RequestMiddleware
from aaa_fmip.api.problems import PROBLEM_JSON
from aaa_fmip.api.routes import ops, v1

DESCRIPTION: Final = """
Keys for Mobile IPv6 fast handovers (FMIPv6, RFC 5568) from the AAA infrastructure.

* **AAA servers** (role `aaa`) ingest an EAP session after authentication: the service derives the handover
  master key from the EMSK and stores it wrapped. They revoke it when the session ends.
* **Access routers** (role `ar`) verify a Fast Binding Update they received, or fetch the handover key for one of
  their own addresses. A router never obtains a key for another router's address.
* **Mobility Servers** (role `mos`) fetch the MIH PSK of a node's session for their own MIHF-ID, to secure
  MIH (RFC 5677) with DTLS/TLS-PSK.
* **Auditors** (role `auditor`) read the tamper-evident audit trail and verify its hash chain.

Every `/v1` request carries `Authorization: Bearer <token>` (tokens are made with `aaa-fmip token new`).
Binary values are lowercase hex (a `0x` prefix is accepted on input), addresses are IPv6 text, lifetimes are
seconds, instants are RFC 3339 UTC. Errors are `application/problem+json` (RFC 9457) with a stable `reason`.
"""

TAGS: Final = [
    {"name": "sessions (AAA)", "description": "Ingest and revoke EAP sessions (role aaa; revoke also admin)."},
    {"name": "access routers", "description": "FBU verification and handover keys (role ar)."},
    {"name": "audit", "description": "The hash-chained audit trail (role auditor)."},
    {"name": "mobility servers", "description": "MIH PSKs for DTLS/TLS-PSK to mobile nodes (role mos)."},
    {"name": "admin", "description": "The access router registry (role admin)."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics (no authentication)."},
]


class ServiceApp(FastAPI):
    """FastAPI, with ``POST /v1/fbu/verify`` handed straight to the service's own request middleware (its limits,
    metrics, access line and last-resort 500) and from there to the dedicated endpoint (:mod:`aaa_fmip.api.fast`).

    Why: FastAPI wraps every request in three layers of its own before any user middleware (Starlette's
    ``ServerErrorMiddleware``, FastAPI's exception telemetry and body limit), each awaiting the next and wrapping
    ``send``; on the hot path that cost more than the endpoint's own dispatch. The request middleware does what
    they would do there: a body limit (64 KiB, below FastAPI's) and a 500 problem for anything unexpected.
    FastAPI's native telemetry, which this service does not enable, is not applied to that route. Every other
    request, and every FBU request the endpoint does not answer itself, takes FastAPI's whole path (the fallback
    is the app inside the request middleware, as before)."""

    _front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == fast.PATH and scope["method"] == "POST":
            front = self._front
            if front is None:
                if self.middleware_stack is None:
                    self.middleware_stack = self.build_middleware_stack()
                front = self._front = _request_middleware(self.middleware_stack)
            if self.root_path:
                scope["root_path"] = self.root_path
            scope["app"] = self
            await front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _request_middleware(stack: ASGIApp) -> ASGIApp:
    """The :class:`RequestMiddleware` inside FastAPI's middleware stack (each layer holds the next as ``app``)."""
    layer: object = stack
    while not isinstance(layer, RequestMiddleware):
        inner = getattr(layer, "app", None)
        if inner is None:
            raise RuntimeError("the request middleware is not in the app's middleware stack")
        layer = inner
    return layer


def create_app(ctx: ApiContext) -> FastAPI:
    """The REST API over the pieces in ``ctx``. The caller owns them and closes them after the server stops; the
    app runs only ``ctx.on_shutdown`` (the store's asyncio connections, which belong to its event loop)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if ctx.on_shutdown is not None:
            await ctx.on_shutdown()

    app = ServiceApp(
        lifespan=lifespan,
        title="aaa-fmip key service",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url="/docs",
        redoc_url=None,
        license_info={"name": "Apache-2.0"},
    )
    app.state.context = ctx
    guard = app.state.guard = RequestGuard(ctx.service, ctx.metrics, ctx.limits)
    problems.install(app)
    app.include_router(v1)
    app.include_router(routes_send.router)
    app.include_router(routes_mih.router)
    app.include_router(routes_router.router)
    app.include_router(routes_router_pairs.router)
    app.include_router(ops)
    verify_route = next(r for r in v1.routes if getattr(r, "path", None) == fast.PATH)
    endpoint = fast.FbuVerifyEndpoint(ctx, guard, verify_route)
    app.add_middleware(RequestMiddleware, metrics=ctx.metrics, limits=ctx.limits, fast=endpoint)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                license_info=app.license_info,
            )
            app.openapi_schema = problem_responses(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# Answers any route can give, whatever it does: from the HTTP layer, the limits and the middleware.
COMMON_ERRORS: Final = {
    "400": "The request could not be parsed as HTTP, or its body not as text (reason `bad-http-request`, "
    "`malformed-body`).",
    "408": "The request body did not arrive in time (reason `request-timeout`).",
    "413": "The body is larger than 64 KiB (reason `too-large`).",
    "500": "An unexpected error; the event is logged (reason `internal-error`).",
    "503": "The service is at its connection or request limit (reason `overloaded`), or the key store cannot be "
    "reached (reason `store-unavailable`); retry after `Retry-After` seconds.",
}
V1_ERRORS: Final = {
    "401": "No bearer token, or an unknown one (reason `missing-token`, `invalid-token`).",
    "422": "The request is malformed or invalid; `errors` names each field at fault (reason `invalid-request`, "
    "or a more specific one).",
    "429": "Too many requests from this caller, or too many failed authentications from this address (reason "
    "`rate-limited`); retry after `Retry-After` seconds.",
}
PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}


def problem_responses(spec: dict[str, Any]) -> dict[str, Any]:
    """Every error answer of every operation as ``application/problem+json`` with the Problem schema (FastAPI
    declares ``application/json``, and its own validation-error schema for 422, which this API never sends)."""
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            common = dict(COMMON_ERRORS)
            if path.startswith("/v1/"):
                common |= V1_ERRORS
                if "parameters" not in operation and "requestBody" not in operation:
                    del common["422"]
            for status, description in common.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status[0] not in "45":
                    continue
                response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return spec
