"""``aaa-fmip serve`` as an operator runs it: no configuration at all (embedded Redis, KEK created), restart
keeping sessions, SIGTERM/SIGINT, configuration errors (exit 2, one line naming the key), ``token new``."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from pathlib import Path

import pytest

from tests.api import _oracle as oracle
from tests.support.redis_server import free_port
from tests.support.service_proc import Credential, ServiceProcess, random_kek, render_config, run_cli


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is ``directory`` (redis-server runs in its data directory)."""
    target = directory.resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == target:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_no_configuration_starts_embedded_and_says_how_to_add_callers(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path, config=None).start()
    data_dir = tmp_path / "aaa-fmip-data"
    try:
        kek = data_dir / "kek"
        assert stat.S_IMODE(kek.stat().st_mode) == 0o600
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert processes_in(data_dir), "the embedded redis-server runs in the data directory"
        records = service.log_records()
        (start,) = [r for r in records if r.get("event") == "starting"]
        assert start["store"] == "embedded" and start["access_routers"] == 0 and start["clients"] == 0
        assert start["listen"] == f"127.0.0.1:{service.port}"
        assert start["gc_frozen"] > 10_000  # what is loaded at start is out of the cyclic collector's full passes
        hints = [r for r in records if r.get("event") == "unconfigured"]
        assert hints and "aaa-fmip token new" in hints[0]["msg"]
        with service.client() as client:
            assert client.post("/v1/sessions", json={}).status_code == 401
        assert kek.read_text().split(":")[1].strip() not in service.logs()
    finally:
        assert service.stop() == 0
    assert any(r.get("event") == "stopped" and r.get("signal") == "SIGTERM" for r in service.log_records())
    assert processes_in(data_dir) == [], "stopping the service stops the embedded redis-server"


def test_restart_keeps_sessions_and_sigint_stops_cleanly(tmp_path: Path) -> None:
    aaa, ar = Credential.new("aaa", "radius"), Credential.new("ar", "ar1", ["2001:db8::1"])
    service = ServiceProcess(tmp_path, config=render_config(credentials=[aaa, ar])).start()
    emsk, sid = os.urandom(64), os.urandom(33)
    try:
        with service.client(aaa) as client:
            created = client.post(
                "/v1/sessions", json={"emsk": emsk.hex(), "eap_session_id": sid.hex(), "user_name": "u"}
            ).json()
        assert service.stop(sig=signal.SIGINT) == 0
        kek_id = {r["kek_id"] for r in service.log_records() if r.get("event") == "starting"}
        service.start()
        assert {r["kek_id"] for r in service.log_records() if r.get("event") == "starting"} == kek_id
        with service.client(ar) as client:
            response = client.post(
                "/v1/handover-keys", json={"ar_address": "2001:db8::1", "hmk_name": created["hmk_name"]}
            )
        assert response.status_code == 200, response.text
        assert response.json()["hk"] == oracle.hk(oracle.hmk(emsk), "2001:db8::1").hex()
    finally:
        assert service.stop() == 0


def test_a_token_made_by_token_new_is_accepted(tmp_path: Path) -> None:
    made = run_cli("token", "new", "--role", "admin", "--name", "ops", "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)
    text = run_cli("token", "new", "--role", "ar", "--name", "ar9", "--address", "2001:db8::9")
    assert text.returncode == 0 and "[[access_routers]]" in text.stdout and 'addresses = ["2001:db8::9"]' in text.stdout
    config = render_config(extra=token["toml"] + "\n" + text.stdout.split("\n\n", 1)[1].split("\n", 1)[1])
    with ServiceProcess(tmp_path, config=config) as service, service.client() as client:
        client.headers["Authorization"] = f"Bearer {token['token']}"
        response = client.get("/v1/access-routers")
        assert response.status_code == 200
        assert response.json()[0]["name"] == "ar9"


BAD_AR = '[[access_routers]]\nname = "ar1"\naddresses = ["2001:db8::1"]\ntoken_sha256 = "{}"\n\n'.format("a" * 64)
BAD_AR += '[[access_routers]]\nname = "ar2"\naddresses = ["10.0.0.1"]\ntoken_sha256 = "{}"\n'.format("b" * 64)


@pytest.mark.parametrize(
    ("config", "env", "key"),
    [
        (BAD_AR, {}, "access_routers[1].addresses[0]: not an IPv6 address"),
        ("", {"AAA_FMIP_KEYS_MAX_LIFETIME": "forever"}, "keys.max_lifetime (from AAA_FMIP_KEYS_MAX_LIFETIME):"),
        ('[keys]\nkek_file = "/nonexistent/kek"\n', {}, "keys.kek_file: KEK file /nonexistent/kek does not exist"),
        ('[server]\nlisten = "::1:80"\n', {}, "server.listen:"),
        ("[server\n", {}, "--config:"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(tmp_path: Path, config: str, env: dict[str, str], key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(config)
    result = run_cli("serve", "--config", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"aaa-fmip: configuration error: {key}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "aaa-fmip-data").exists(), "nothing is started or created for a bad configuration"


def test_kek_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    kek = tmp_path / "kek"
    kek.write_text(random_kek() + "\n")
    kek.chmod(0o644)
    result = run_cli("serve", cwd=tmp_path, env={"AAA_FMIP_KEYS_KEK_FILE": str(kek)})
    assert result.returncode == 2
    assert result.stderr.startswith("aaa-fmip: configuration error: keys.kek_file:")
    assert "chmod 600" in result.stderr
    assert kek.read_text().strip() not in result.stderr


def test_diameter_listener_runs_with_the_service_when_configured(tmp_path: Path) -> None:
    port = free_port()
    diameter = (
        f'[diameter]\nlisten = "127.0.0.1:{port}"\norigin_host = "keys.example.net"\norigin_realm = "example.net"\n'
    )
    service = ServiceProcess(tmp_path, config=render_config(extra=diameter)).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        (start,) = [r for r in service.log_records() if r.get("event") == "starting"]
        assert start["diameter"] == f"127.0.0.1:{port}"
    finally:
        assert service.stop() == 0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
