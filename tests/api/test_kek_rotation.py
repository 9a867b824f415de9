"""Rotating the key-encryption key, as an operator does it with the real ``aaa-fmip serve`` and redis-server:
a new KEK in ``AAA_FMIP_KEK``, the old one kept in ``keys.previous_kek_files``. Sessions stored under the old KEK
still verify FBUs, new ones are wrapped under the new KEK, the audit trail written under both verifies (and so
does a checkpoint signed before the rotation); without the old KEK the old sessions fail with a logged 500 that
names the KEK, never a traceback; a bad list of previous KEKs stops the start with one line naming the key."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest
import redis

from tests.api._deploy import Deployment, make_credentials
from tests.api._helpers import assert_problem, fbu_body, handover_key, ingest, verify
from tests.support.redis_server import RedisServer
from tests.support.service_proc import ServiceProcess, render_config, run_cli


def _kek_file(directory: Path, text: str) -> Path:
    path = directory / f"kek-{secrets.token_hex(4)}"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _wrapped_under(r: redis.Redis, prefix: str, hmk_name: str) -> str:
    """The KEK id in the header of a stored session's wrapped HMK (store/records.py: base64 of the blob;
    crypto/wrap.py: version, id length, id)."""
    raw = r.get(f"{prefix}:{{{hmk_name}}}:session")
    assert raw is not None
    blob = base64.b64decode(json.loads(raw)["hmk"])
    return blob[2 : 2 + blob[1]].decode("ascii")


def test_a_rotated_kek_keeps_old_sessions_and_the_audit_trail(tmp_path: Path, redis_server: RedisServer) -> None:
    creds = make_credentials()
    prefix = "t" + secrets.token_hex(4)
    old, new = f"old:{secrets.token_hex(32)}", f"new:{secrets.token_hex(32)}"

    def deploy(name: str, kek: str, previous: list[Path]) -> Deployment:
        extra = "[keys]\nprevious_kek_files = [" + ", ".join(f'"{p}"' for p in previous) + "]\n"
        config = render_config(store_url=redis_server.url, prefix=prefix, credentials=list(creds.values()), extra=extra)
        service = ServiceProcess(tmp_path / name, config=config, env={"AAA_FMIP_KEK": kek}).start()
        return Deployment(service=service, redis=redis_server, prefix=prefix, kek=kek, **creds)

    r = redis.Redis.from_url(redis_server.url)
    d = deploy("before", old, [])
    try:
        first = ingest(d)
        assert verify(d, fbu_body(handover_key(first), 1)).json()["verdict"] == "accepted"
        with d.service.client(d.auditor) as client:
            checkpoint = client.get("/v1/audit/checkpoint").json()
    finally:
        d.service.stop()
    assert _wrapped_under(r, prefix, first.hmk_name) == "old"

    d = deploy("rotated", new, [_kek_file(tmp_path, old)])
    try:
        assert verify(d, fbu_body(handover_key(first), 2)).json()["verdict"] == "accepted"  # unwrapped with "old"
        second = ingest(d)
        assert verify(d, fbu_body(handover_key(second), 1)).json()["verdict"] == "accepted"
        with d.service.client(d.auditor) as client:
            check = client.post("/v1/audit/verify", json=checkpoint).json()
        assert check["ok"] and check["checkpoint"] == "matches", check
    finally:
        d.service.stop()
    assert _wrapped_under(r, prefix, second.hmk_name) == "new"

    d = deploy("forgotten", new, [])
    try:
        refused = verify(d, fbu_body(handover_key(first), 3))
        assert_problem(refused, 500, "internal-error")
        assert "old" not in refused.text.replace("hold", "")  # the KEK id stays in the server's log
        assert verify(d, fbu_body(handover_key(second), 2)).json()["verdict"] == "accepted"
    finally:
        d.service.stop()
    failures = [rec for rec in d.service.log_records() if rec.get("msg") == "request failed"]
    assert failures and "KEK 'old' is not configured" in failures[-1]["detail"], failures
    assert "previous_kek_files" in failures[-1]["detail"]
    assert old.split(":")[1] not in d.service.logs() and new.split(":")[1] not in d.service.logs()


@pytest.mark.parametrize("case", ["missing", "current-again", "twice"])
def test_a_bad_list_of_previous_keks_stops_the_start_naming_the_key(tmp_path: Path, case: str) -> None:
    current = f"now:{secrets.token_hex(32)}"
    older = _kek_file(tmp_path, f"before:{secrets.token_hex(32)}")
    files = {
        "missing": [tmp_path / "no-such-kek"],
        "current-again": [_kek_file(tmp_path, current)],
        "twice": [older, older],
    }[case]
    config = tmp_path / "aaa-fmip.toml"
    config.write_text(
        '[store]\nurl = "redis://127.0.0.1:1/0"\n[keys]\nprevious_kek_files = ['
        + ", ".join(f'"{p}"' for p in files)
        + "]\n"
    )
    result = run_cli("serve", "--config", str(config), cwd=tmp_path, env={"AAA_FMIP_KEK": current})
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert line.startswith("aaa-fmip: configuration error: keys"), line
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    expected = {"missing": "previous_kek_files[0]", "current-again": "same id", "twice": "listed twice"}[case]
    assert expected in line, line
    assert current.split(":")[1] not in line


def test_the_previous_keks_can_come_from_the_environment(tmp_path: Path, redis_server: RedisServer) -> None:
    """``AAA_FMIP_KEYS_PREVIOUS_KEK_FILES``: comma-separated, like every list from the environment."""
    one, two = (_kek_file(tmp_path, f"{name}:{secrets.token_hex(32)}") for name in ("k1", "k2"))
    creds = make_credentials()
    config = render_config(
        store_url=redis_server.url, prefix="t" + secrets.token_hex(4), credentials=list(creds.values())
    )
    env = {"AAA_FMIP_KEK": f"k3:{secrets.token_hex(32)}", "AAA_FMIP_KEYS_PREVIOUS_KEK_FILES": f"{one},{two}"}
    service = ServiceProcess(tmp_path / "svc", config=config, env=env).start()
    try:
        with service.client(creds["auditor"]) as client:
            assert client.get("/v1/audit/verify").json()["ok"]
    finally:
        service.stop()
    started = [rec for rec in service.log_records() if rec.get("event") == "starting"]
    assert [(rec["kek_id"], rec["previous_kek_ids"]) for rec in started] == [("k3", ["k1", "k2"])]
