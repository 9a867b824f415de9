"""``aaa-fmip serve --workers 2`` against a real redis-server: two worker processes on one socket, each with its
own store clients; FBUs verified whichever worker answers; /metrics summed over the workers; SIGTERM stops all."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.api._deploy import Deployment, make_credentials
from tests.api._helpers import fbu_body, handover_key, ingest
from tests.api.test_metrics_and_docs import sample
from tests.support.redis_server import RedisServer
from tests.support.service_proc import ServiceProcess, random_kek, render_config, run_cli


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_two_workers_share_the_socket_sum_their_metrics_and_stop_together(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    creds = make_credentials()
    prefix = "t" + secrets.token_hex(4)
    kek = random_kek()
    config = render_config(store_url=redis_server.url, prefix=prefix, credentials=list(creds.values()))
    proc = ServiceProcess(tmp_path / "svc", config=config, env={"AAA_FMIP_KEK": kek}, args=("--workers", "2"))
    proc.start()
    try:
        d = Deployment(service=proc, redis=redis_server, prefix=prefix, kek=kek, **creds)
        started = next(r for r in proc.log_records() if r.get("event") == "workers")
        pids = [int(p) for p in started["pids"]]
        assert len(set(pids)) == 2 and all(_alive(p) for p in pids)
        session = ingest(d)
        hk = handover_key(session)
        answered = []
        for sequence in range(1, 41):  # a new connection each: the kernel hands them to either worker
            with proc.client(d.ar1) as client:
                answered.append(client.post("/v1/fbu/verify", json=fbu_body(hk, sequence)).json())
        assert [a["verdict"] for a in answered] == ["accepted"] * 40
        with proc.client(d.ar1) as client:  # an FBU accepted by one worker is a retransmission at any
            again = client.post("/v1/fbu/verify", json=fbu_body(hk, 40)).json()
        assert again["verdict"] == "retransmission"
        for _ in range(4):  # whichever worker answers the scrape, it counts every worker's verifications
            with proc.client() as client:
                text = client.get("/metrics").text
            accepted = sample(text, "aaa_fmip_fbu_verifications_total", verdict="accepted")
            assert accepted == 40
            assert sample(text, "aaa_fmip_fbu_verifications_total", verdict="retransmission") == 1
            assert sample(text, "aaa_fmip_store_up") == 1
        workers = {r.get("worker") for r in proc.log_records() if r.get("event") == "limits"}
        assert workers == {0, 1}
        # several workers: the accepted FBUs' entries in slot chains (store.slot_chains left unset), each worker a
        # writer of its own (store.writer + 1 + its index), with one chain each on one Redis; all verifying
        starts = [r for r in proc.log_records() if r.get("event") == "starting"]  # worker 0 says it for all
        assert [(r["slot_chains"], r["writer"]) for r in starts] == [(True, 1)]
        with proc.client(d.auditor) as client:
            entries = client.get("/v1/audit", params={"event": "fbu.verified", "limit": 1000}).json()["entries"]
            assert len(entries) == 41 and [e["slot"] is not None for e in entries].count(True) == 40
            assert {e["slot"] for e in entries} - {None} <= {16384 * 1, 16384 * 2}  # writers 1 and 2, slot 0
            paged: list[dict[str, object]] = []
            cursor: str | None = None
            while True:  # cursors naming those chains
                query: dict[str, str | int] = {"event": "fbu.verified", "limit": 7}
                if cursor:
                    query["cursor"] = cursor
                page = client.get("/v1/audit", params=query).json()
                paged += page["entries"]
                if (cursor := page["next_cursor"]) is None:
                    break
            assert paged == entries
            check = client.get("/v1/audit/verify").json()
            assert check["ok"], check
    finally:
        code = proc.stop()
    assert code == 0
    assert not any(_alive(p) for p in pids)
    assert any(r.get("event") == "stopped" and r.get("workers") == 2 for r in proc.log_records())


def test_workers_need_writer_numbers_below_256(tmp_path: Path) -> None:
    env = {"AAA_FMIP_KEK": random_kek(), "AAA_FMIP_STORE_URL": "redis://127.0.0.1:1", "AAA_FMIP_STORE_WRITER": "254"}
    result = run_cli("serve", "--workers", "2", cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "--workers 2 with store.writer = 254 needs writer numbers up to 256; they are 0-255" in result.stderr


def test_workers_above_one_need_an_external_redis(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "2", cwd=tmp_path, env={"AAA_FMIP_KEK": random_kek()})
    assert result.returncode != 0
    assert "--workers above 1 needs an external Redis" in result.stderr + result.stdout
