"""One ASGI middleware for every HTTP request: body size limit, ``Cache-Control: no-store`` on ``/v1``
(responses carry keys), request metrics by route template, one access log line (no bodies, no query strings),
and a last-resort 500 problem that never shows the exception."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aaa_fmip.api.problems import PROBLEM_BASE, PROBLEM_JSON
from aaa_fmip.metrics import Metrics

MAX_BODY_OCTETS: Final = 64 * 1024  # the largest legitimate body (an FBU in hex) is well under 1 KiB

access_log = logging.getLogger("aaa_fmip.api.access")
error_log = logging.getLogger("aaa_fmip.api")


class _BodyTooLarge(Exception):
    pass


_TOO_LARGE: Final = "request bodies are limited to {} octets"


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body: int = MAX_BODY_OCTETS) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
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

        async def limited_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    overflow = True  # the framework may turn this into its own 400: we answer 413 instead
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status, started
            if overflow:
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
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            pass
        except Exception as exc:
            if not overflow:
                status = 500
                error_log.error("unhandled error", exc_info=exc, extra={"route": _route_template(scope)})
                if not started:
                    detail = "The server could not complete the request; the event is logged."
                    await _send_problem(send, 500, "Internal error", detail, "internal-error")
        finally:
            if overflow and not started:
                status = 413
                await _send_problem(send, 413, "Too large", _TOO_LARGE.format(self.max_body), "too-large")
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


async def _send_problem(send: Send, status: int, title: str, detail: str, reason: str) -> None:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + reason,
        "title": title,
        "status": status,
        "detail": detail,
        "reason": reason,
    }
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
