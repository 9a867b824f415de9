"""Inputs that used to give 500, and the shape of every error: problem+json with a stable ``reason``, declared in
the OpenAPI as ``application/problem+json``. Against the real service (subprocess) and redis-server."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from tests.api._deploy import AR1_ADDRESSES, Deployment
from tests.api._helpers import assert_problem

PROBLEM = "application/problem+json"


def _ar(d: Deployment) -> httpx.Client:
    return d.service.client(d.ar1)


@pytest.mark.parametrize("hmk_name", ["", "00", "0x", "00" * 7, "00" * 9, "0x" + "00" * 9, "ab" * 64])
def test_hmk_name_that_is_not_8_octets_is_422(deployment: Deployment, hmk_name: str) -> None:
    # Was a 500 (a ValueError deep in the store lookup) for "" and a 404 for other lengths.
    with _ar(deployment) as client:
        response = client.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "hmk_name": hmk_name})
    body = assert_problem(response, 422, "invalid-request")
    assert body["errors"][0]["field"] == "hmk_name"
    assert "8 octets" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "cursor", ["18446744073709551616-0", "0-18446744073709551616", "99999999999999999999-99999999999999999999"]
)
def test_audit_cursor_beyond_64_bits_is_422(deployment: Deployment, cursor: str) -> None:
    # Was a 500: Redis refuses the stream id ("Invalid stream ID") and that surfaced as a store error.
    with deployment.service.client(deployment.auditor) as client:
        response = client.get("/v1/audit", params={"cursor": cursor})
        assert_problem(response, 422, "bad-cursor")
        largest = client.get("/v1/audit", params={"cursor": "18446744073709551615-18446744073709551615"})
    assert largest.status_code == 200, largest.text
    assert largest.json() == {"entries": [], "next_cursor": None}


def _raw(d: Deployment, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", d.service.port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


# Requests that are not HTTP/1.1 enough for the parser: each was a 400 with an empty text/plain body.
MALFORMED_HTTP = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "no Host header": b"GET /healthz HTTP/1.1\r\n\r\n",
    "two Host headers": b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "Content-Length not a number": b"POST /v1/sessions HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
    "two different Content-Lengths": b"POST /v1/sessions HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    "bad chunk size": b"POST /v1/sessions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "control character in the target": b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
    "header line without a colon": b"GET /healthz HTTP/1.1\r\nHost: a\r\nnot a header\r\n\r\n",
    "request line without a version": b"GET /healthz\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED_HTTP))
def test_malformed_http_is_a_problem(deployment: Deployment, name: str) -> None:
    answer = _raw(deployment, MALFORMED_HTTP[name])
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 400 Bad Request", answer
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == PROBLEM
    problem = httpx.Response(400, content=body).json()
    assert problem["reason"] == "bad-http-request"
    assert problem["status"] == 400


def test_framework_errors_carry_a_reason(deployment: Deployment) -> None:
    d = deployment
    with _ar(d) as client:
        json_type = {"content-type": "application/json"}
        not_utf8 = client.post("/v1/handover-keys", content=b'{"ar_address": "\xff"}', headers=json_type)
        assert_problem(not_utf8, 400, "malformed-body")
        not_json = client.post("/v1/handover-keys", content=b"{nope", headers=json_type)
        body = assert_problem(not_json, 422, "invalid-request")
        assert body["errors"] == [{"field": "body", "message": "not valid JSON"}]
        assert_problem(client.post("/v1/handover-keys", json=[1]), 422, "invalid-request")
        assert_problem(client.post("/v1/handover-keys", content=b""), 422, "invalid-request")
        assert_problem(client.get("/v1/no-such-thing"), 404, "no-such-resource")
        assert_problem(client.get("/v1/handover-keys"), 405, "method-not-allowed")
        assert_problem(client.post("/v1/fbu/verify", content=b"x" * 70000), 413, "too-large")
    with d.service.client(d.aaa) as client:
        assert_problem(client.delete("/v1/sessions/zz"), 422, "invalid-request")
    with d.service.client(d.auditor) as client:
        assert_problem(client.get("/v1/audit", params={"limit": "many"}), 422, "invalid-request")
        assert_problem(client.get("/v1/audit", params={"since": "yesterday"}), 422, "bad-instant")
    with d.service.client() as client:
        assert_problem(client.get("/v1/audit"), 401, "missing-token")
        assert_problem(client.get("/v1/audit", headers={"Authorization": "Basic eDp5"}), 401, "missing-token")
        assert_problem(client.get("/v1/audit", headers={"Authorization": "Bearer nope"}), 401, "invalid-token")


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method in ("get", "post", "delete", "put", "patch")
    ]


def test_openapi_declares_problem_json_for_every_error(deployment: Deployment) -> None:
    with deployment.service.client() as client:
        spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "reason" in spec["components"]["schemas"]["Problem"]["required"]
    for path, method, operation in _operations(spec):
        errors = {status: r for status, r in operation["responses"].items() if status[0] in "45"}
        assert {"400", "413", "500", "503"} <= errors.keys(), (method, path)
        if path.startswith("/v1/"):
            assert {"401", "429"} <= errors.keys(), (method, path)
        for status, response in errors.items():
            assert list(response["content"]) == [PROBLEM], (method, path, status)
            assert response["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_walk_every_operation_with_bad_requests(deployment: Deployment) -> None:
    """Every operation of the OpenAPI, called without a token, with each role's token and a body that fits no
    schema: each error answer is problem+json with a reason, and its status is one the OpenAPI declares."""
    d = deployment
    with d.service.client() as client:
        spec = client.get("/openapi.json").json()
    seen: dict[int, set[str]] = {}
    for path, method, operation in _operations(spec):
        url = path.replace("{hmk_name}", "00" * 8)
        declared = set(operation["responses"])
        for credential in (None, d.ar1, d.aaa, d.auditor, d.admin):
            with d.service.client(credential) as client:
                attempts: list[dict[str, Any]]
                if "requestBody" in operation:
                    attempts = [{"json": {"no_such_field": 1}}, {"json": []}, {"content": b"{"}]
                else:
                    attempts = [{"params": {"limit": "0", "spi": "-1", "cursor": "x"}}]
                for kwargs in attempts:
                    response = client.request(method.upper(), url, **kwargs)
                    if response.status_code < 400:
                        continue
                    where = (method, path, credential.name if credential else None, response.status_code)
                    assert response.headers["content-type"] == PROBLEM, where
                    reason = response.json().get("reason")
                    assert isinstance(reason, str) and reason, where
                    assert str(response.status_code) in declared, where
                    seen.setdefault(response.status_code, set()).add(reason)
    assert seen.keys() >= {401, 403, 422}, seen
