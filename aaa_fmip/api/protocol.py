"""The REST listener's HTTP/1.1 protocol: uvicorn's httptools protocol (its h11 one where httptools is not
installed) with the limits uvicorn lacks.

* **Request-head deadline.** uvicorn bounds only the idle time between requests (``timeout_keep_alive``); a
  client that sends half a request head keeps its connection, and a file descriptor, forever (slowloris). Here
  every request head must be complete within ``limits.header_timeout`` of the connection being made (after
  the TLS handshake) or of its first byte on a kept-alive connection; otherwise the connection is closed.
* **Connection limit.** Beyond ``max_connections`` open connections a new one is answered at once with a 503
  ``overloaded`` problem and closed, so that descriptors are never all held by idle clients. (uvicorn's
  ``limit_concurrency`` answers plain text and counts connections only when a request arrives.)
* **Malformed HTTP** is answered with a 400 ``bad-http-request`` problem instead of an empty text/plain body.
* **One send per response** (httptools): uvicorn writes a response's status line and headers, then its body, as
  two writes to the socket: two system calls and, with ``TCP_NODELAY``, two segments the client reads
  separately. Here the head waits for the response's first body write and goes out with it
  (:class:`_HeadWithBody`); a ``100 Continue`` and everything after the first body write go out as written.

The parsing itself stays httptools' (llhttp, the parser of Node.js) or h11's; this module only adds timers and
the two answers, the same for both (docs/performance.md: httptools with uvloop halves the stack's own cost).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final, Protocol, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from aaa_fmip.api.problems import PROBLEM_JSON, RETRY_AFTER_SECONDS, problem_body
from aaa_fmip.api.settings import LimitSettings
from aaa_fmip.metrics import Metrics

log = logging.getLogger("aaa_fmip.api.http")


def _raw_response(status: int, phrase: str, title: str, detail: str, reason: str, extra: str = "") -> bytes:
    body = json.dumps(problem_body(status, title, detail, reason)).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\n"
        f"cache-control: no-store\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


OVERLOADED_RESPONSE: Final = _raw_response(
    503,
    "Service Unavailable",
    "Overloaded",
    "The service is at its limit of open connections; retry shortly.",
    "overloaded",
    f"retry-after: {RETRY_AFTER_SECONDS}\r\n",
)
BAD_REQUEST_BODY: Final = json.dumps(
    problem_body(400, "Bad request", "The request is not valid HTTP/1.1.", "bad-http-request")
).encode()


BAD_REQUEST_RESPONSE: Final = _raw_response(
    400, "Bad Request", "Bad request", "The request is not valid HTTP/1.1.", "bad-http-request"
)


def httptools_available() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


def http_parser(configured: str = "auto") -> str:
    """The parser to run: ``server.http_parser``; "auto" is httptools when installed, else h11."""
    if configured != "auto":
        return configured
    return "httptools" if httptools_available() else "h11"


def protocol_class(
    limits: LimitSettings, metrics: Metrics, max_connections: int, *, parser: str = "auto"
) -> type[asyncio.Protocol]:
    """The guarded protocol for ``parser`` ("httptools", "h11", or "auto": httptools when installed), bound to
    these limits (uvicorn instantiates the class it is given)."""
    if http_parser(parser) == "httptools":
        return _httptools_class(limits, metrics, max_connections)
    return _h11_class(limits, metrics, max_connections)


class _MalformedRequest(Exception):
    pass


class _Guards(asyncio.Protocol):
    """What both parsers' protocols add to uvicorn's: the connection limit and the request-head deadline. The
    limits are class attributes, set by :func:`_bind` on the class uvicorn is given; the arming points differ
    per parser (where each one sees a head begin and end) and stay in its class."""

    guard_limits: LimitSettings
    guard_metrics: Metrics
    guard_max_connections: int
    # uvicorn's protocol provides these
    connections: Any
    loop: Any
    transport: Any
    client: Any

    head_timer: asyncio.TimerHandle | None = None
    refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.guard_max_connections:
            self.refused = True
            self.guard_metrics.count_rejected("connection-limit")
            log.warning("connection refused: at the connection limit", extra={"limit": self.guard_max_connections})
            self.transport.write(OVERLOADED_RESPONSE)
            self.transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.guard_limits.header_timeout, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _waiting_for_head(self) -> bool:
        """Whether the connection is still waiting for a request head (the parser's own view, when it has one)."""
        return True

    def _head_timeout(self) -> None:
        self.head_timer = None  # armed and not disarmed by a complete head: the head is late
        if self.transport.is_closing() or not self._waiting_for_head():
            return
        self.guard_metrics.count_rejected("header-timeout")
        log.warning(
            "connection closed: no complete request head in time",
            extra={"timeout_s": self.guard_limits.header_timeout, "client": self.client[0] if self.client else None},
        )
        self.transport.close()

    def _bad_request(self) -> None:
        self.guard_metrics.count_rejected("bad-http-request")
        self._disarm_head_timer()


def _bind(cls: type[_Guards], limits: LimitSettings, metrics: Metrics, max_connections: int) -> type[asyncio.Protocol]:
    """A subclass of ``cls`` bound to these limits (uvicorn instantiates the class it is given)."""
    attributes = {"guard_limits": limits, "guard_metrics": metrics, "guard_max_connections": max_connections}
    return type(cls.__name__, (cls,), attributes)


class _Cycle(Protocol):
    """What :class:`_HeadWithBody` reads of uvicorn's response cycle."""

    response_started: bool


class _HeadWithBody:
    """The transport as one response cycle of uvicorn's httptools protocol sees it: the first write after the
    response has started (its status line and headers) is held and sent with the next one (the first body
    write), or by :meth:`flush` when the response is complete without one (uvicorn writes no body for HEAD), or
    when the cycle closes the connection. Anything written before the response starts (a ``100 Continue``) goes
    out at once. Everything else is the connection's transport."""

    __slots__ = ("_cycle", "_head", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: _Cycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._held = False

    def write(self, data: bytes) -> None:
        if not self._held and self._cycle.response_started:
            self._held = True
            self._head = data
            return
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _httptools_class(limits: LimitSettings, metrics: Metrics, max_connections: int) -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(_Guards, HttpToolsProtocol):
        """The head deadline runs from the connection (or the first octet of a kept-alive request, where the
        parser begins a message) until the parser has the whole head."""

        def data_received(self, data: bytes) -> None:
            if self.refused:
                return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_head_timer()

        def on_headers_complete(self) -> None:
            self._disarm_head_timer()
            # As strict as h11 where llhttp is lenient: HTTP/1.0 or 1.1 only, and an HTTP/1.1 request carries
            # exactly one Host header (RFC 9112 §3.2). Raising here makes the parser fail: a 400 problem.
            version = self.parser.get_http_version()
            hosts = sum(1 for name, _ in self.headers if name == b"host")
            if version not in ("1.0", "1.1") or hosts > 1 or (version == "1.1" and hosts != 1):
                raise _MalformedRequest
            before = self.cycle
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and cycle is not before:  # not an upgrade: a cycle for this request
                cycle.transport = cast(asyncio.Transport, _HeadWithBody(self.transport, cycle))

        def on_response_complete(self) -> None:
            cycle = self.cycle
            if cycle is not None and isinstance(cycle.transport, _HeadWithBody):
                cycle.transport.flush()  # a response without a body write (to HEAD): its head goes now
            super().on_response_complete()

        def send_400_response(self, msg: str) -> None:
            self._bad_request()
            self.transport.write(BAD_REQUEST_RESPONSE)
            self.transport.close()

    return _bind(GuardedHttpToolsProtocol, limits, metrics, max_connections)


def _h11_class(limits: LimitSettings, metrics: Metrics, max_connections: int) -> type[asyncio.Protocol]:
    class GuardedH11Protocol(_Guards, H11Protocol):
        def data_received(self, data: bytes) -> None:
            if self.refused:
                return
            super().data_received(data)
            if self.transport.is_closing():
                return
            if self.conn.their_state is h11.IDLE:
                self._arm_head_timer()  # a request head has begun (or not yet): it must be complete in time
            else:
                self._disarm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if self.conn.their_state is not h11.IDLE:
                self._disarm_head_timer()  # a pipelined head was complete
            elif self.conn.trailing_data[0]:
                self._arm_head_timer()  # part of the next head came with the last request: its deadline runs now
            # else: idle, the keep-alive timer runs; the next byte arms the deadline in data_received

        def send_400_response(self, msg: str) -> None:
            self._bad_request()
            headers = [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(BAD_REQUEST_BODY)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ]
            try:
                output = self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request"))
                output = (output or b"") + (self.conn.send(h11.Data(data=BAD_REQUEST_BODY)) or b"")
                output += self.conn.send(h11.EndOfMessage()) or b""
            except h11.LocalProtocolError:  # h11 cannot frame an answer in this state: close without one
                output = b""
            if output:
                self.transport.write(output)
            self.transport.close()

        def _waiting_for_head(self) -> bool:
            # a response still being produced is not a client stalling on a head
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    return _bind(GuardedH11Protocol, limits, metrics, max_connections)
