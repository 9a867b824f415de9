"""``aaa-fmip audit`` and ``[audit]`` in ``serve``: a running service exports its trail to a file and trims it;
the operator's commands verify, checkpoint and check the copy, against a real redis-server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis

from tests.api._deploy import Deployment, make_credentials
from tests.api._helpers import ingest
from tests.support.redis_server import RedisServer
from tests.support.service_proc import ServiceProcess, random_kek, render_config, run_cli


def _wait_lines(path: Path, count: int, timeout: float = 20.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    got: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        if path.exists():
            got = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            if len(got) >= count:
                return got
        time.sleep(0.1)
    return got


def test_serve_exports_and_trims_and_the_cli_checks_everything(redis_server: RedisServer, tmp_path: Path) -> None:
    creds = make_credentials()
    prefix = "cli" + str(time.monotonic_ns())[-8:]
    kek = random_kek()
    export = tmp_path / "audit.jsonl"
    audit = f'\n[audit]\nexport_file = "{export}"\nexport_interval = 0.2\nretain_entries = 2\n'
    config = render_config(store_url=redis_server.url, prefix=prefix, credentials=list(creds.values()), extra=audit)
    env = {"AAA_FMIP_KEK": kek}
    with ServiceProcess(tmp_path / "svc", config=config, env=env).start() as service:
        d = Deployment(service=service, redis=redis_server, prefix=prefix, kek=kek, **creds)
        for _ in range(3):
            ingest(d)  # one session.created each
        lines = _wait_lines(export, 3)
        assert [x["n"] for x in lines] == [1, 2, 3], service.log_tail()
        config_path = str(service.config_path)

        # retention: only the newest 2 stay in Redis, and what stays still verifies from the signed anchor
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline
            and redis.Redis.from_url(redis_server.url).xlen(f"{prefix}:{{audit}}:stream") > 2
        ):
            time.sleep(0.1)
        verify = run_cli("audit", "verify", "--config", config_path, env=env)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        check = json.loads(verify.stdout)
        assert check["ok"] and check["entries"] == 2 and check["first_n"] == 2 and check["n"] == 3

        kept = tmp_path / "checkpoint.json"
        cp = run_cli("audit", "checkpoint", "--config", config_path, "--out", str(kept), env=env)
        assert cp.returncode == 0, cp.stderr
        assert json.loads(kept.read_text())["checkpoint"]["n"] == 3

    # the copy verifies offline, with the KEK only, and reaches the checkpoint
    ok = run_cli("audit", "verify-export", "--config", config_path, str(export), "--checkpoint", str(kept), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["n"] == 3

    # an edited copy does not
    text = export.read_text().splitlines()
    edited = json.loads(text[1])
    edited["fields"]["user"] = "mallory"
    export.write_text("\n".join([text[0], json.dumps(edited), *text[2:]]) + "\n")
    bad = run_cli("audit", "verify-export", "--config", config_path, str(export), env=env)
    assert bad.returncode == 1 and json.loads(bad.stdout)["line"] == 2

    # a wipe of the trail in Redis: verify alone cannot tell, verify with the kept checkpoint can
    redis.Redis.from_url(redis_server.url).delete(
        f"{prefix}:{{audit}}:stream", f"{prefix}:{{audit}}:head", f"{prefix}:{{audit}}:anchor"
    )
    assert run_cli("audit", "verify", "--config", config_path, env=env).returncode == 0
    wiped = run_cli("audit", "verify", "--config", config_path, "--checkpoint", str(kept), env=env)
    assert wiped.returncode == 1 and "truncated" in json.loads(wiped.stdout)["problem"]


def test_audit_export_needs_a_destination(tmp_path: Path) -> None:
    done = run_cli("audit", "export", env={"AAA_FMIP_STORE_DATA_DIR": str(tmp_path / "data")})
    assert done.returncode == 2 and "--to FILE" in done.stderr


def test_retention_without_export_is_a_configuration_error(tmp_path: Path) -> None:
    done = run_cli("audit", "verify", env={"AAA_FMIP_AUDIT_RETAIN_ENTRIES": "10"})
    assert done.returncode == 2 and "audit.retain_entries" in done.stderr and "export" in done.stderr
