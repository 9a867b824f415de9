"""Each HTTP response of the httptools protocol leaves in one send: status line, headers and body in one TCP
segment, seen on the wire (dumpcap on the loopback, decoded by tshark), from the real ``aaa-fmip serve``.

uvicorn writes the head and the body separately; with ``TCP_NODELAY`` that is two segments per response, which
the client reads separately. A ``100 Continue`` must still go out before the request body is sent (the client
waits for it), and a response without a body (to HEAD) must still be sent whole.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.api.test_abuse import service
from tests.diameter.tshark import LoopbackCapture, require
from tests.support.redis_server import RedisServer

TIMEOUT = 10.0


def _read_head(sock: socket.socket, data: bytes, deadline: float) -> tuple[bytes, bytes]:
    """A response's head (without its blank line) and what came after it."""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """One response (head + Content-Length body) and what came after it."""
    deadline = time.monotonic() + TIMEOUT
    head, rest = _read_head(sock, buffered, deadline)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if head.startswith(b"HTTP/1.1 100 "):
        length = 0
    while len(rest) < length:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def _server_segments(capture: Path, port: int, expected: int) -> list[bytes]:
    """The payloads of the TCP segments the server sent (bounded wait until ``expected`` are in the file)."""
    deadline = time.monotonic() + 20
    payloads: list[bytes] = []
    while time.monotonic() < deadline:
        done = subprocess.run(
            [
                require("tshark"),
                "-n",
                "-r",
                str(capture),
                "-Y",
                f"tcp.srcport == {port} && tcp.len > 0",
                "-T",
                "fields",
                "-e",
                "tcp.payload",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        payloads = [bytes.fromhex(line.replace(":", "")) for line in done.stdout.split()]
        if len(payloads) >= expected:
            break
        time.sleep(0.1)
    return payloads


def test_each_response_is_one_segment_and_100_continue_is_not_held(tmp_path: Path, redis_server: RedisServer) -> None:
    with service(tmp_path, redis_server, "", http_parser="httptools") as (proc, creds):
        token = creds["ar1"].token
        with LoopbackCapture(proc.port, tmp_path) as cap, socket.create_connection(("127.0.0.1", proc.port)) as s:
            host = f"Host: 127.0.0.1:{proc.port}\r\n".encode()
            s.sendall(b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n")
            healthz, rest = _read_response(s)
            assert healthz.startswith(b"HTTP/1.1 200 ")

            # the client waits for the interim answer before it sends the body
            body = b'{"fbu": "00"}'
            s.sendall(
                b"POST /v1/fbu/verify HTTP/1.1\r\n"
                + host
                + f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()
                + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            interim, rest = _read_response(s, rest)
            assert interim.startswith(b"HTTP/1.1 100 "), interim
            s.sendall(body)
            problem, rest = _read_response(s, rest)
            assert problem.startswith(b"HTTP/1.1 4"), problem
            assert b"application/problem+json" in problem and b"connection: close" not in problem, problem

            # no body: the head alone, and the connection goes on
            s.sendall(b"HEAD /healthz HTTP/1.1\r\n" + host + b"\r\n")
            head_only, rest = _read_head(s, rest, time.monotonic() + TIMEOUT)
            assert head_only.startswith(b"HTTP/1.1 "), head_only
            s.sendall(b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n")
            again, rest = _read_response(s, rest)
            assert again.startswith(b"HTTP/1.1 200 ") and rest == b""

            responses = [healthz, interim, problem, head_only + b"\r\n\r\n", again]
            segments = _server_segments(cap.path, proc.port, len(responses))
        assert segments == responses
