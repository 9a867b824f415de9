"""Redis stops: the service answers 503 problems (with Retry-After) and stays alive; Redis returns: the service
recovers by itself, without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api._deploy import AR1_ADDRESSES, Deployment, start_deployment
from tests.api._helpers import assert_problem, fbu_body, handover_key, ingest, verify
from tests.support.redis_server import RedisServer


@pytest.fixture
def deployment_on_private_redis(private_redis: RedisServer, tmp_path: Path) -> Iterator[Deployment]:
    d = start_deployment(tmp_path / "serve", private_redis, timeout=0.3)
    yield d
    d.service.stop()


def assert_unavailable(response: httpx.Response) -> None:
    problem = assert_problem(response, 503, "store-unavailable")
    assert response.headers["retry-after"].isdigit()
    assert "127.0.0.1" not in problem["detail"]  # where the store lives stays in the server's log


def test_store_outage_and_recovery(deployment_on_private_redis: Deployment, private_redis: RedisServer) -> None:
    d = deployment_on_private_redis
    session = ingest(d)
    private_redis.stop()

    with d.service.client() as ops:
        assert_unavailable(ops.get("/readyz"))
        assert ops.get("/healthz").status_code == 200
        metrics = ops.get("/metrics")
        assert metrics.status_code == 200
        assert "aaa_fmip_store_up 0.0" in metrics.text
    with d.service.client(d.aaa) as aaa:
        assert_unavailable(
            aaa.post("/v1/sessions", json={"emsk": "11" * 64, "eap_session_id": "22" * 9, "user_name": "u"})
        )
        assert_unavailable(aaa.delete(f"/v1/sessions/{session.hmk_name}"))
    with d.service.client(d.ar1) as ar:
        assert_unavailable(ar.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "spi": session.spi}))
    # the FBU hot path has its own (asyncio) connections: unavailable too, never a verdict
    assert_unavailable(verify(d, fbu_body(handover_key(session), 1)))
    with d.service.client(d.auditor) as auditor:
        assert_unavailable(auditor.get("/v1/audit"))

    private_redis.start()  # same port; the data set is gone (this redis does not persist)
    d.service.wait_until("ready", timeout=20)
    fresh = ingest(d)
    with d.service.client(d.ar1) as ar:
        response = ar.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "spi": fresh.spi})
    assert response.status_code == 200, response.text
    accepted = verify(d, fbu_body(handover_key(fresh), 1))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["verdict"] == "accepted"
    with d.service.client() as ops:
        assert "aaa_fmip_store_up 1.0" in ops.get("/metrics").text
    assert d.service.proc is not None and d.service.proc.poll() is None
    assert "Traceback" not in d.service.logs()
