"""One ASGI middleware for every HTTP request: the limit of requests in flight (503 ``overloaded``), body size
and body arrival limits (413 ``too-large``, 408 ``request-timeout``), ``Cache-Control: no-store`` on ``/v1``
(responses carry keys), request metrics by route template, one access log line (no bodies, no query strings),
a last-resort 500 problem that never shows the exception, and the hand-off of ``POST /v1/fbu/verify`` to its
dedicated endpoint (:mod:`aaa_fmip.api.fast`).

Limits on connections and on the request head are enforced below ASGI, in :mod:`aaa_fmip.api.protocol`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Final, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aaa_fmip.api.problems import PROBLEM_JSON, RETRY_AFTER_SECONDS, problem_body
from aaa_fmip.api.settings import LimitSettings
from aaa_fmip.metrics import Metrics

MAX_BODY_OCTETS: Final = 64 * 1024  # the largest legitimate body (an FBU in hex) is well under 1 KiB

access_log = logging.getLogger("aaa_fmip.api.access")
fast_path: Final = "/v1/fbu/verify"


class FastEndpoint(Protocol):
    """An endpoint answering one route ahead of the framework, handing a request on to ``fallback`` when it
    does not answer it itself (:mod:`aaa_fmip.api.fast`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send, fallback: ASGIApp) -> None: ...


error_log = logging.getLogger("aaa_fmip.api")


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


_TOO_LARGE: Final = "request bodies are limited to {} octets"
_OVERLOADED: Final = "The service is at its limit of requests in progress; retry shortly."
_TOO_SLOW: Final = "the request body did not arrive within {:g} s"
UNLIMITED_PATHS: Final = frozenset({"/healthz"})  # liveness must answer even when the service is saturated


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        limits: LimitSettings | None = None,
        max_body: int = MAX_BODY_OCTETS,
        fast: FastEndpoint | None = None,
    ) -> None:
        self.app = app
        self.fast = fast
        self.metrics = metrics
        self.limits = limits or LimitSettings()
        self.max_body = max_body
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        if self.in_flight >= self.limits.max_requests_in_flight and scope["path"] not in UNLIMITED_PATHS:
            # Shed load before it queues for the thread pool and Redis: an unbounded queue times every caller out.
            self.metrics.count_rejected("requests-in-flight")
            await _send_problem(send, 503, "Overloaded", _OVERLOADED, "overloaded", retry_after=RETRY_AFTER_SECONDS)
            self._record(scope, 503, start)
            return
        self.in_flight += 1
        try:
            await self._handle(scope, receive, send, start)
        finally:
            self.in_flight -= 1

    async def _handle(self, scope: Scope, receive: Receive, send: Send, start: float) -> None:
        status = 500
        started = False
        no_store = scope["path"].startswith("/v1/")

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await _send_problem(send, 413, "Too large", _TOO_LARGE.format(self.max_body), "too-large")
            self._record(scope, 413, start)
            return

        received = 0
        overflow = False
        timed_out = False
        body_complete = False
        body_timeout = self.limits.body_timeout

        async def limited_receive() -> Message:
            nonlocal received, overflow, timed_out, body_complete
            if body_complete:
                return await receive()  # waiting for a disconnect: not bounded here
            try:
                async with asyncio.timeout(body_timeout):  # no extra task, unlike wait_for: this is the hot path
                    message = await receive()
            except TimeoutError:
                timed_out = True  # a client trickling its body holds a request slot: answer 408 and close
                raise _BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
                if received > self.max_body:
                    overflow = True  # the framework may turn this into its own 400: we answer 413 instead
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status, started
            if overflow or timed_out:
                return
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                if no_store:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            fast = self.fast
            if fast is not None and scope["path"] == fast_path and scope["method"] == "POST":
                await fast(scope, limited_receive, tracking_send, self.app)
            else:
                await self.app(scope, limited_receive, tracking_send)
        except (_BodyTooLarge, _BodyTimeout):
            pass
        except Exception as exc:
            if not (overflow or timed_out):
                status = 500
                error_log.error("unhandled error", exc_info=exc, extra={"route": _route_template(scope)})
                if not started:
                    detail = "The server could not complete the request; the event is logged."
                    await _send_problem(send, 500, "Internal error", detail, "internal-error")
        finally:
            if overflow and not started:
                status = 413
                await _send_problem(send, 413, "Too large", _TOO_LARGE.format(self.max_body), "too-large")
            elif timed_out and not started:
                status = 408
                self.metrics.count_rejected("body-timeout")
                detail = _TOO_SLOW.format(body_timeout)
                await _send_problem(send, 408, "Request timeout", detail, "request-timeout", close=True)
            self._record(scope, status, start)

    def _record(self, scope: Scope, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        route = _route_template(scope)
        method = str(scope.get("method", ""))
        self.metrics.observe_request(method, route, status, elapsed)
        state = scope.get("state") or {}
        access_log.info(
            "request",
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "caller": state.get("caller"),
                "client": _client(scope),
            },
        )


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "<unmatched>"


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}" if client else None


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    reason: str,
    *,
    retry_after: str | None = None,
    close: bool = False,
) -> None:
    body: dict[str, Any] = problem_body(status, title, detail, reason)
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
