"""Abuse of the REST listener, against the real ``aaa-fmip serve`` (subprocess) and redis-server, over real
sockets: half-sent request heads (slowloris), connection floods up to and beyond the open-file limit, requests
in flight, slow bodies, failed tokens and per-caller rates."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api._deploy import AR1_ADDRESSES, make_credentials
from tests.api._helpers import assert_problem
from tests.api.test_metrics_and_docs import sample
from tests.support.redis_server import RedisServer
from tests.support.service_proc import Credential, ServiceProcess, random_kek, render_config

PROBLEM = "application/problem+json"


class LimitedService(ServiceProcess):
    """``aaa-fmip serve`` started with RLIMIT_NOFILE lowered (soft and hard) before it runs, as systemd's 1,024
    would be but smaller, so that a test can run it out of descriptors."""

    def __init__(self, *args: object, nofile: tuple[int, int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.nofile = nofile

    def command(self) -> list[str]:
        inner = super().command()
        shim = (
            "import os, resource, sys; limits = (int(sys.argv[1]), int(sys.argv[2])); "
            "resource.setrlimit(resource.RLIMIT_NOFILE, limits); os.execv(sys.argv[3], sys.argv[3:])"
        )
        return [sys.executable, "-c", shim, *map(str, self.nofile), *inner]


@contextlib.contextmanager
def service(
    tmp_path: Path,
    redis: RedisServer,
    limits: str,
    *,
    nofile: tuple[int, int] | None = None,
    event_loop: str = "auto",
    http_parser: str = "auto",
) -> Iterator[tuple[ServiceProcess, dict[str, Credential]]]:
    creds = make_credentials()
    config = render_config(
        store_url=redis.url,
        prefix="t" + os.urandom(4).hex(),
        credentials=list(creds.values()),
        extra="[limits]\n" + limits,
    )
    env = {
        "AAA_FMIP_KEK": random_kek(),
        "AAA_FMIP_SERVER_EVENT_LOOP": event_loop,
        "AAA_FMIP_SERVER_HTTP_PARSER": http_parser,
    }
    proc: ServiceProcess
    if nofile is None:
        proc = ServiceProcess(tmp_path / "svc", config=config, env=env)
    else:
        proc = LimitedService(tmp_path / "svc", config=config, env=env, nofile=nofile)
    proc.start()
    try:
        started = next(r for r in proc.log_records() if r.get("event") == "limits")
        for asked, running in ((event_loop, started["event_loop"]), (http_parser, started["http_parser"])):
            assert asked in ("auto", running), (asked, running)  # the service runs what the test is about
        yield proc, creds
    finally:
        proc.stop()


def closed_by_peer(sock: socket.socket, deadline: float) -> bool:
    """Wait (bounded) until the server closes ``sock``; True if it did."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True
    return False


def metrics(proc: ServiceProcess) -> str:
    with proc.client() as client:
        return client.get("/metrics").text


@pytest.mark.parametrize("http_parser", ["httptools", "h11"])
def test_half_sent_request_heads_are_closed(tmp_path: Path, redis_server: RedisServer, http_parser: str) -> None:
    limits = "header_timeout = 1.0\n"
    with service(tmp_path, redis_server, limits, http_parser=http_parser) as (proc, creds):
        socks = []
        for i in range(60):
            sock = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
            if i % 3 == 0:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ")  # half a head
            elif i % 3 == 1:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHo")  # then half
            socks.append(sock)  # i % 3 == 2: nothing at all
        with proc.client() as client:
            assert client.get("/healthz").status_code == 200  # answered while they hang
        deadline = time.monotonic() + 30
        try:
            still_open = [i for i, sock in enumerate(socks) if not closed_by_peer(sock, deadline)]
        finally:
            for sock in socks:
                sock.close()
        assert still_open == []
        with proc.client(creds["ar1"]) as client:
            answer = client.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "spi": 7})
        assert_problem(answer, 404, "unknown-session")  # the service still works end to end (Redis included)
        assert (sample(metrics(proc), "aaa_fmip_http_shed_total", reason="header-timeout") or 0) >= 60


@pytest.mark.parametrize("http_parser", ["httptools", "h11"])
def test_a_trickled_head_is_closed_although_bytes_keep_coming(
    tmp_path: Path, redis_server: RedisServer, http_parser: str
) -> None:
    # The deadline runs from the first byte of the head; sending a byte now and then does not extend it.
    with service(tmp_path, redis_server, "header_timeout = 1.0\n", http_parser=http_parser) as (proc, _):
        sock = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        try:
            for _ in range(150):  # 150 header lines, one every 0.1 s: 15 s if the server let it go on
                try:
                    sock.sendall(b"X-A: b\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if closed_by_peer(sock, time.monotonic() + 0.1):
                    closed = True
                    break
        finally:
            sock.close()
        assert closed


@pytest.mark.parametrize("http_parser", ["httptools", "h11"])
def test_idle_keep_alive_connection_is_closed(tmp_path: Path, redis_server: RedisServer, http_parser: str) -> None:
    with service(tmp_path, redis_server, "keep_alive_timeout = 1\nheader_timeout = 30\n", http_parser=http_parser) as (
        proc,
        _,
    ):
        sock = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            assert closed_by_peer(sock, time.monotonic() + 20)
        finally:
            sock.close()


@pytest.mark.parametrize("http_parser", ["httptools", "h11"])
def test_connection_limit_answers_503_problem_and_recovers(
    tmp_path: Path, redis_server: RedisServer, http_parser: str
) -> None:
    limits = "max_connections = 5\nheader_timeout = 60\n"
    with service(tmp_path, redis_server, limits, http_parser=http_parser) as (proc, creds):
        keep = proc.client(creds["ar1"])  # a router's keep-alive connection, opened before the flood
        keep.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "spi": 7})
        idle = [socket.create_connection(("127.0.0.1", proc.port), timeout=5) for _ in range(4)]
        try:
            with proc.client() as client:
                refused = client.get("/healthz")
            assert_problem(refused, 503, "overloaded")
            assert refused.headers["retry-after"] == "1"
            again = keep.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "spi": 7})
            assert_problem(again, 404, "unknown-session")  # an established connection keeps working
        finally:
            for sock in idle:
                sock.close()
            keep.close()
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and status != 200:
            with proc.client() as client:
                status = client.get("/healthz").status_code
            time.sleep(0.05)
        assert status == 200
        assert (sample(metrics(proc), "aaa_fmip_http_shed_total", reason="connection-limit") or 0) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_out_of_descriptors_logs_little_and_recovers(
    tmp_path: Path, redis_server: RedisServer, event_loop: str
) -> None:
    """RLIMIT_NOFILE 256 in the service; 600 connections pile up in the kernel while the service is stopped
    (SIGSTOP), so that on SIGCONT accept() runs out of descriptors (EMFILE) and asyncio logs one error per failed
    accept: thousands of lines a second without the log filter. uvloop retries a failed accept without logging
    it; on both loops the connections over the limit are answered 503 and the service recovers."""
    nofile = (256, 256)
    with service(tmp_path, redis_server, "header_timeout = 3\n", nofile=nofile, event_loop=event_loop) as (
        proc,
        creds,
    ):
        records = proc.log_records()
        limits = next(r for r in records if r.get("event") == "limits")
        assert limits["event_loop"] == event_loop
        assert limits["open_files"] == 256
        assert limits["max_connections"] == 256 - 64
        assert proc.proc is not None
        lines_before = len(proc.logs().splitlines())
        os.kill(proc.proc.pid, signal.SIGSTOP)
        socks = []
        try:
            for _ in range(600):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(("127.0.0.1", proc.port))
                socks.append(sock)
            time.sleep(0.5)  # let the kernel complete the handshakes into the listen queue
        finally:
            os.kill(proc.proc.pid, signal.SIGCONT)
        try:
            time.sleep(3)  # the storm: accept, EMFILE, the 1 s retry of asyncio, 503 for those over the limit
            answered = 0
            for sock in socks:
                sock.setblocking(True)
                sock.settimeout(0.01)
                with contextlib.suppress(OSError):
                    if sock.recv(4096).startswith(b"HTTP/1.1 503 "):
                        answered += 1
        finally:
            for sock in socks:
                sock.close()
        assert answered > 0  # connections over the limit were answered 503 at once, not left hanging
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status != 200:
            with contextlib.suppress(httpx.HTTPError), proc.client(timeout=2) as client:
                status = client.get("/healthz").status_code
            time.sleep(0.1)
        assert status == 200
        with proc.client(creds["ar1"]) as client:
            answer = client.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "spi": 7})
        assert_problem(answer, 404, "unknown-session")
        logs = proc.logs().splitlines()[lines_before:]
        accept_errors = [line for line in logs if "out of system resource" in line]
        if event_loop == "asyncio":  # uvloop retries a failed accept without logging it
            assert accept_errors, "the test did not run the service out of descriptors"
        assert len(accept_errors) <= 30, len(accept_errors)
        assert len(logs) < 400, len(logs)


def test_open_file_limit_is_raised_to_the_hard_limit(tmp_path: Path, redis_server: RedisServer) -> None:
    with service(tmp_path, redis_server, "", nofile=(128, 700)) as (proc, _):
        records = proc.log_records()
        assert proc.proc is not None
        soft_now = Path(f"/proc/{proc.proc.pid}/limits").read_text()
    raised = next(r for r in records if r.get("event") == "nofile")
    assert (raised["msg"], raised["from"], raised["to"], raised["hard"]) == ("open-file limit raised", 128, 700, 700)
    assert any(
        line.startswith("Max open files") and line.split()[3:5] == ["700", "700"] for line in soft_now.splitlines()
    )
    limits = next(r for r in records if r.get("event") == "limits")
    assert limits["open_files"] == 700
    assert limits["max_connections"] == 700 - 175  # a quarter kept for everything else


def test_requests_in_flight_limit_and_slow_body(tmp_path: Path, redis_server: RedisServer) -> None:
    limits = "max_requests_in_flight = 1\nbody_timeout = 1.0\n"
    with service(tmp_path, redis_server, limits) as (proc, creds):
        slow = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
        try:
            head = (
                "POST /v1/sessions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {creds['aaa'].token}\r\nContent-Length: 500\r\n\r\n"
            )
            slow.sendall(head.encode() + b'{"user_name": ')  # the body stops there: one request in flight
            time.sleep(0.3)
            with proc.client(creds["ar1"]) as client:
                busy = client.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "spi": 7})
                health = client.get("/healthz")
            body = assert_problem(busy, 503, "overloaded")
            assert "requests in progress" in body["detail"]
            assert busy.headers["retry-after"] == "1"
            assert health.status_code == 200  # liveness is not shed
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = slow.recv(4096)
                if not chunk:
                    break
                answer += chunk
        finally:
            slow.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"request-timeout" in answer or b"application/problem+json" in answer
        with proc.client(creds["ar1"]) as client:
            after = client.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "spi": 7})
        assert_problem(after, 404, "unknown-session")


def test_per_caller_rate_limit(tmp_path: Path, redis_server: RedisServer) -> None:
    with service(tmp_path, redis_server, "caller_rate = 0.5\ncaller_burst = 5\n") as (proc, creds):
        body = {"ar_address": AR1_ADDRESSES[0], "spi": 7}
        with proc.client(creds["ar1"]) as client:
            statuses = [client.post("/v1/handover-keys", json=body).status_code for _ in range(5)]
            limited = client.post("/v1/handover-keys", json=body)
        assert statuses == [404] * 5
        assert_problem(limited, 429, "rate-limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        with proc.client(creds["ar2"]) as client:  # another caller has its own bucket
            other = client.post("/v1/handover-keys", json={"ar_address": "2001:db8:2::1", "spi": 7})
        assert_problem(other, 404, "unknown-session")
        time.sleep(int(limited.headers["retry-after"]))
        with proc.client(creds["ar1"]) as client:
            assert_problem(client.post("/v1/handover-keys", json=body), 404, "unknown-session")
        assert sample(metrics(proc), "aaa_fmip_rate_limited_total", limit="caller") == 1


def test_failed_tokens_are_counted_audited_and_limited_per_address(tmp_path: Path, redis_server: RedisServer) -> None:
    limits = "auth_failure_rate = 0.01\nauth_failure_burst = 20\nauth_failure_log_interval = 60\n"
    with service(tmp_path, redis_server, limits) as (proc, creds):
        wrong = "x" * 43
        with proc.client() as client:
            answers = [
                client.get("/v1/audit", headers={"Authorization": f"Bearer {wrong}{i}"}).status_code for i in range(30)
            ]
            missing = client.get("/v1/audit")
        assert answers[:20] == [401] * 20
        assert answers[20:] == [429] * 10
        assert_problem(missing, 429, "rate-limited")
        assert int(missing.headers["retry-after"]) >= 1
        with proc.client(creds["auditor"]) as client:  # a valid token from the same address still works
            wrong_role = client.post("/v1/sessions/revoke", json={"external_id": "x"})
            deadline = time.monotonic() + 10  # the entries are appended off the request path
            while True:
                page = client.get("/v1/audit", params={"event": "auth.failed"})
                assert page.status_code == 200, page.text
                if len(page.json()["entries"]) >= 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        assert_problem(wrong_role, 403, "wrong-role")
        text = metrics(proc)
        assert sample(text, "aaa_fmip_auth_failures_total", reason="invalid-token") == 30
        assert sample(text, "aaa_fmip_auth_failures_total", reason="missing-token") == 1
        assert sample(text, "aaa_fmip_auth_failures_total", reason="wrong-role") == 1
        assert sample(text, "aaa_fmip_rate_limited_total", limit="address") == 11
        entries = page.json()["entries"]
        # One entry per address and reason per interval (its first failure), not one per failure.
        assert sorted(e["fields"]["reason"] for e in entries) == ["invalid-token", "missing-token", "wrong-role"]
        for entry in entries:
            assert entry["fields"]["client"] == "127.0.0.1"
            assert entry["fields"]["count"] in ("1", 1)
        assert {e["fields"]["route"] for e in entries} == {"/v1/audit", "/v1/sessions/revoke"}
        assert next(e for e in entries if e["fields"]["reason"] == "wrong-role")["fields"]["caller"] == "auditor1"
        assert wrong not in page.text
        failed_lines = [r for r in proc.log_records() if r.get("event") == "auth.failed"]
        assert len(failed_lines) <= 3, failed_lines  # invalid-token, missing-token, wrong-role: one each
        assert wrong not in proc.logs()


def test_rate_limits_can_be_turned_off(tmp_path: Path, redis_server: RedisServer) -> None:
    limits = "rate_limit = false\ncaller_rate = 0.01\ncaller_burst = 1\nauth_failure_burst = 1\n"
    with service(tmp_path, redis_server, limits) as (proc, creds):
        with proc.client(creds["ar1"]) as client:
            body = {"ar_address": AR1_ADDRESSES[0], "spi": 7}
            assert [client.post("/v1/handover-keys", json=body).status_code for _ in range(5)] == [404] * 5
        with proc.client() as client:
            assert [client.get("/v1/audit").status_code for _ in range(5)] == [401] * 5
