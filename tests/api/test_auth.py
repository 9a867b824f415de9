"""Bearer tokens and roles: missing/unknown token → 401, a known token with the wrong role → 403."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api._deploy import Deployment
from tests.api._helpers import assert_problem

SESSION_BODY = {"emsk": "11" * 64, "eap_session_id": "22" * 65, "user_name": "u"}
KEY_BODY = {"ar_address": "2001:db8:1::1", "spi": 1}
FBU_BODY = {"source": "2001:db8:1::100", "destination": "2001:db8:1::1", "mh": "00"}

# (method, path, body, roles allowed by the REST contract)
ROUTES: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("POST", "/v1/sessions", SESSION_BODY, {"aaa"}),
    ("DELETE", "/v1/sessions/0123456789abcdef", None, {"aaa", "admin"}),
    ("POST", "/v1/sessions/revoke", {"calling_station_id": "02-00-00-00-00-09"}, {"aaa", "admin"}),
    ("POST", "/v1/handover-keys", KEY_BODY, {"ar"}),
    ("POST", "/v1/fbu/verify", FBU_BODY, {"ar"}),
    ("GET", "/v1/audit", None, {"auditor"}),
    ("GET", "/v1/audit/verify", None, {"auditor"}),
    ("GET", "/v1/access-routers", None, {"admin"}),
]


def call(client: httpx.Client, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    return client.request(method, path, json=body) if body is not None else client.request(method, path)


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_every_v1_route_needs_a_token_and_the_right_role(
    deployment: Deployment, method: str, path: str, body: dict[str, Any] | None, allowed: set[str]
) -> None:
    svc = deployment.service
    with svc.client() as anonymous:
        problem = assert_problem(call(anonymous, method, path, body), 401, "missing-token")
        assert "token" in problem["detail"]
        response = call(anonymous, method, path, body)
        assert response.headers["www-authenticate"].startswith("Bearer")
    with svc.client() as client:
        client.headers["Authorization"] = "Bearer not-a-configured-token"
        response = call(client, method, path, body)
        assert_problem(response, 401, "invalid-token")
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        client.headers["Authorization"] = "Basic " + deployment.aaa.token  # right secret, wrong scheme
        assert_problem(call(client, method, path, body), 401, "missing-token")
    for cred in (deployment.ar1, deployment.aaa, deployment.auditor, deployment.admin):
        with svc.client(cred) as client:
            response = call(client, method, path, body)
        if cred.role in allowed:
            assert response.status_code not in (401, 403), (cred.role, response.text)
        else:
            problem = assert_problem(response, 403, "wrong-role")
            assert cred.role in problem["detail"]


def test_responses_to_v1_are_not_cacheable(deployment: Deployment) -> None:
    with deployment.service.client() as client:
        assert client.post("/v1/handover-keys", json=KEY_BODY).headers["cache-control"] == "no-store"
    with deployment.service.client(deployment.admin) as client:
        response = client.get("/v1/access-routers")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    routers = {r["name"]: r for r in response.json()}
    assert routers["ar1"]["addresses"] == ["2001:db8:1::1", "2001:db8:1::2"]
    assert routers["ar2"]["addresses"] == ["2001:db8:2::1"]


def test_tokens_never_reach_the_log(deployment: Deployment) -> None:
    with deployment.service.client(deployment.aaa) as client:
        client.get("/v1/audit")
    logs = deployment.service.logs()
    for cred in (deployment.ar1, deployment.ar2, deployment.aaa, deployment.auditor, deployment.admin):
        assert cred.token not in logs
    access = [r for r in deployment.service.log_records() if r.get("logger") == "aaa_fmip.api.access"]
    assert any(r.get("caller") == "radius1" and r.get("status") == 403 for r in access)
