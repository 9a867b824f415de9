"""``aaa-fmip serve`` on a Redis that would lose replay state: FBUs refused with 503 ``store-not-durable`` (and
``/readyz`` not ready), unless ``store.allow_volatile_replay_state`` is set (a loud warning, a metric); a Redis
restart is logged and counted."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api._deploy import Deployment, make_credentials
from tests.api._helpers import assert_problem, fbu_body, handover_key, ingest, verify
from tests.support.redis_server import RedisServer
from tests.support.service_proc import ServiceProcess, random_kek, render_config


def deploy(workdir: Path, redis: RedisServer, *, env: dict[str, str] | None = None) -> Deployment:
    creds = make_credentials()
    prefix = "t" + secrets.token_hex(4)
    kek = random_kek()
    config = render_config(store_url=redis.url, prefix=prefix, credentials=list(creds.values()))
    service = ServiceProcess(workdir, config=config, env={"AAA_FMIP_KEK": kek, **(env or {})}).start(wait="live")
    return Deployment(service=service, redis=redis, prefix=prefix, kek=kek, **creds)


@pytest.fixture
def rdb_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", args=("--appendonly", "no", "--save", "3600 1 300 100 60 10000"))
    server.start()
    yield server
    server.stop()


def metric(d: Deployment, name: str) -> float | None:
    with d.service.client() as ops:
        for line in ops.get("/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def test_fbus_are_refused_on_an_rdb_only_redis(rdb_redis: RedisServer, tmp_path: Path) -> None:
    d = deploy(tmp_path / "serve", rdb_redis)
    try:
        session = ingest(d)  # the rest of the service works
        response = verify(d, fbu_body(handover_key(session), 1))
        problem = assert_problem(response, 503, "store-not-durable")
        assert response.headers["retry-after"].isdigit()
        assert "127.0.0.1" not in problem["detail"] and "replay state" in problem["detail"]
        with d.service.client() as ops:
            assert_problem(ops.get("/readyz"), 503, "store-not-durable")
            assert ops.get("/healthz").status_code == 200
        assert metric(d, "aaa_fmip_store_replay_state_durable") == 0.0
        assert metric(d, "aaa_fmip_store_volatile_replay_state_allowed") == 0.0
        assert metric(d, "aaa_fmip_store_up") == 1.0  # Redis answers; it is its persistence that is refused
        refused = [r for r in d.service.log_records() if r.get("event") == "store-not-durable"]
        assert refused and "appendonly no" in refused[0]["msg"]
    finally:
        d.service.stop()


def test_the_operator_may_accept_volatile_replay_state_loudly(rdb_redis: RedisServer, tmp_path: Path) -> None:
    d = deploy(tmp_path / "serve", rdb_redis, env={"AAA_FMIP_STORE_ALLOW_VOLATILE_REPLAY_STATE": "true"})
    try:
        d.service.wait_until("ready", timeout=20)
        session = ingest(d)
        response = verify(d, fbu_body(handover_key(session), 1))
        assert response.status_code == 200, response.text
        assert response.json()["verdict"] == "accepted"
        assert metric(d, "aaa_fmip_store_volatile_replay_state_allowed") == 1.0
        assert metric(d, "aaa_fmip_store_replay_state_durable") == 0.0
        events = {r.get("event"): r for r in d.service.log_records()}
        assert events["volatile-replay-state-allowed"]["level"] == "warning"
        assert "store-volatile-accepted" in events
    finally:
        d.service.stop()


def test_a_redis_restart_is_logged_and_counted(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persist=True, args=("--appendfsync", "always"))
    server.start()
    d = deploy(tmp_path / "serve", server)
    try:
        d.service.wait_until("ready", timeout=20)
        session = ingest(d)
        hk = handover_key(session)
        assert verify(d, fbu_body(hk, 1)).json()["verdict"] == "accepted"
        assert metric(d, "aaa_fmip_store_restarts_total") == 0.0
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        server.proc = None
        server.start()
        replayed = verify(d, fbu_body(hk, 1))
        deadline = time.monotonic() + 20
        while replayed.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            replayed = verify(d, fbu_body(hk, 1))
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["verdict"] == "retransmission"  # the state survived; not a new binding
        assert metric(d, "aaa_fmip_store_restarts_total") == 1.0
        assert [r for r in d.service.log_records() if r.get("event") == "store-restarted"]
    finally:
        d.service.stop()
        server.stop()
