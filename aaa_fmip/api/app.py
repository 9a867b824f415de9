"""The FastAPI app factory. Everything the app uses comes from the :class:`~aaa_fmip.bootstrap.Runtime` it is
given (``app.state.runtime``); there are no module-level singletons, so tests and several apps in one process
never share state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI

from aaa_fmip import __version__
from aaa_fmip.api import problems, routes_router, routes_send
from aaa_fmip.api.middleware import RequestMiddleware
from aaa_fmip.api.routes import ops, v1
from aaa_fmip.bootstrap import Runtime

DESCRIPTION: Final = """
Keys for Mobile IPv6 fast handovers (FMIPv6, RFC 5568) from the AAA infrastructure.

* **AAA servers** (role `aaa`) ingest an EAP session after authentication: the service derives the handover
  master key from the EMSK and stores it wrapped. They revoke it when the session ends.
* **Access routers** (role `ar`) verify a Fast Binding Update they received, or fetch the handover key for one of
  their own addresses. A router never obtains a key for another router's address.
* **Auditors** (role `auditor`) read the tamper-evident audit trail and verify its hash chain.

Every `/v1` request carries `Authorization: Bearer <token>` (tokens are made with `aaa-fmip token new`).
Binary values are lowercase hex (a `0x` prefix is accepted on input), addresses are IPv6 text, lifetimes are
seconds, instants are RFC 3339 UTC. Errors are `application/problem+json` (RFC 9457) with a stable `reason`.
"""

TAGS: Final = [
    {"name": "sessions (AAA)", "description": "Ingest and revoke EAP sessions (role aaa; revoke also admin)."},
    {"name": "access routers", "description": "FBU verification and handover keys (role ar)."},
    {"name": "audit", "description": "The hash-chained audit trail (role auditor)."},
    {"name": "admin", "description": "The access router registry (role admin)."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics (no authentication)."},
]


def create_app(runtime: Runtime) -> FastAPI:
    """The REST API over ``runtime``. The caller owns ``runtime`` and closes it after the server stops; the app
    closes only the store's asyncio connections, which belong to its event loop."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        aio = runtime.store.aio
        if aio is not None:
            await aio.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="aaa-fmip key service",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url="/docs",
        redoc_url=None,
        license_info={"name": "Apache-2.0"},
    )
    app.state.runtime = runtime
    problems.install(app)
    app.include_router(v1)
    app.include_router(routes_send.router)
    app.include_router(routes_router.router)
    app.include_router(ops)
    app.add_middleware(RequestMiddleware, metrics=runtime.metrics)
    return app
