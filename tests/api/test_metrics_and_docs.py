"""/metrics (Prometheus text), /healthz, /readyz, OpenAPI at /docs, and the problems for requests no route
takes (404, 405, 413)."""

from __future__ import annotations

import re

from tests.api._deploy import Deployment
from tests.api._helpers import assert_problem, fbu_body, handover_key, ingest, verify


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_has_the_series(deployment: Deployment) -> None:
    session = ingest(deployment)
    hk = handover_key(session)
    assert verify(deployment, fbu_body(hk, 1)).json()["verdict"] == "accepted"
    assert verify(deployment, fbu_body(hk, 1)).json()["verdict"] == "retransmission"
    assert verify(deployment, fbu_body(hk, 0)).json()["reason"] == "replay"
    with deployment.service.client(deployment.ar2) as ar2:
        ar2.post("/v1/sessions", json={})  # 403

    with deployment.service.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    name = "aaa_fmip_http_requests_total"
    assert sample(text, name, method="POST", route="/v1/sessions", status="201") == 1
    assert sample(text, name, method="POST", route="/v1/sessions", status="403") == 1
    assert sample(text, name, method="POST", route="/v1/fbu/verify", status="200") == 3
    fbu = "aaa_fmip_fbu_verifications_total"
    assert sample(text, fbu, interface="rest", verdict="accepted", reason="none") == 1
    assert sample(text, fbu, interface="rest", verdict="retransmission", reason="none") == 1
    assert sample(text, fbu, interface="rest", verdict="rejected", reason="replay") == 1
    hist = "aaa_fmip_http_request_duration_seconds_count"
    assert sample(text, hist, method="POST", route="/v1/fbu/verify") == 3
    assert sample(text, "aaa_fmip_operation_duration_seconds_count", interface="rest", operation="verify_fbu") == 3
    assert sample(text, "aaa_fmip_operation_errors_total", interface="rest", operation="ingest") is None
    assert sample(text, "aaa_fmip_live_sessions") == 1  # computed at scrape time, this deployment's prefix only
    assert sample(text, "aaa_fmip_store_up") == 1
    assert sample(text, "aaa_fmip_build_info") == 1
    assert session.hmk_name not in text and str(session.spi) not in text  # no per-session labels


def test_operation_errors_are_counted_by_class(deployment: Deployment) -> None:
    with deployment.service.client(deployment.aaa) as aaa:
        assert aaa.delete("/v1/sessions/00000000000000aa").status_code == 404
    with deployment.service.client() as client:
        text = client.get("/metrics").text
    assert sample(text, "aaa_fmip_operation_errors_total", interface="rest", operation="revoke", error="not_found") == 1


def test_health_endpoints(deployment: Deployment) -> None:
    with deployment.service.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}


def test_openapi_documents_every_route(deployment: Deployment) -> None:
    with deployment.service.client() as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = spec["paths"]
    expected = {
        ("/v1/sessions", "post"),
        ("/v1/sessions/{hmk_name}", "delete"),
        ("/v1/sessions/revoke", "post"),
        ("/v1/handover-keys", "post"),
        ("/v1/fbu/verify", "post"),
        ("/v1/audit", "get"),
        ("/v1/audit/verify", "get"),
        ("/v1/access-routers", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    assert expected <= {(p, m) for p, ops in paths.items() for m in ops}
    for path, method in expected:
        operation = paths[path][method]
        assert operation.get("description") or operation.get("summary"), (path, method)
        if path.startswith("/v1/"):
            assert operation["security"] == [{"bearer": []}]
            assert {"401", "403"} <= set(operation["responses"]), (path, method)
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "emsk" in spec["components"]["schemas"]["SessionCreate"]["properties"]


def test_requests_no_route_takes(deployment: Deployment) -> None:
    with deployment.service.client(deployment.aaa) as client:
        assert_problem(client.get("/v1/nothing-here"), 404)
        assert_problem(client.get("/v1/sessions"), 405)
        assert_problem(client.post("/v1/sessions", content=b"{" + b" " * 70000 + b"}"), 413, "too-large")
        chunked = client.post("/v1/sessions", content=iter([b"{", b" " * 40000, b" " * 40000, b"}"]))
        assert "content-length" not in chunked.request.headers
        assert_problem(chunked, 413, "too-large")
        malformed = client.post("/v1/sessions", content=b"{not json", headers={"content-type": "application/json"})
        assert_problem(malformed, 422, "invalid-request")
    with deployment.service.client() as client:
        text = client.get("/metrics").text
    assert sample(text, "aaa_fmip_http_requests_total", route="<unmatched>", status="404") == 1
