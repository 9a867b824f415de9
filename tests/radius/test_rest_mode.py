"""The rlm_rest alternative: real FreeRADIUS rlm_rest (+ rlm_json) posting to a real ``aaa-fmip serve``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aaa_fmip.bootstrap import Runtime
from tests.radius import _fbu
from tests.radius._stack import AR_NAS_IDENTIFIER, StackConfig, next_mac
from tests.support.freeradius import EapMethod, FreeRadius, Pki, radclient_accounting, run_eapol_test
from tests.support.redis_server import RedisServer
from tests.support.service_proc import ServiceProcess


@dataclass
class RestStack:
    config: StackConfig
    service: ServiceProcess
    radius: FreeRadius
    runtime: Runtime


@pytest.fixture(scope="module")
def rest_stack(redis_server: RedisServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestStack]:
    base = tmp_path_factory.mktemp("rest")
    config = StackConfig(base / "config", redis_server.url)
    path = config.write()
    service = ServiceProcess(base / "serve", config=path.read_text())
    service.start()
    radius = FreeRadius(
        base / "freeradius",
        pki,
        mode="rest",
        rest_url=service.url,
        env={"AAA_FMIP_REST_TOKEN": config.aaa.token},
    )
    runtime = config.runtime()
    try:
        radius.start()
        yield RestStack(config, service, radius, runtime)
    finally:
        radius.stop()
        service.stop()
        runtime.close()


def _auth(stack: RestStack, work: Path, method: EapMethod = "TLS", user: str | None = None) -> tuple[bytes, bytes, str]:
    mac = next_mac()
    result = run_eapol_test(
        method,
        stack.radius.pki,
        port=stack.radius.auth_port,
        work_dir=work,
        mac=mac,
        nas_identifier=AR_NAS_IDENTIFIER,
    )
    emsk, sid = result.require_keys()
    return emsk, sid, mac


def _wait_session(runtime: Runtime, name: bytes, present: bool = True, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (runtime.store.get_session(name) is not None) == present:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("method", ["TLS", "PEAP"])
def test_rest_ingest_then_fbu_verifies(rest_stack: RestStack, method: EapMethod, tmp_path: Path) -> None:
    emsk, sid, mac = _auth(rest_stack, tmp_path, method)
    master = _fbu.master_key(emsk, sid)
    assert _wait_session(rest_stack.runtime, master.hmk_name), rest_stack.radius.log_tail()
    record = rest_stack.runtime.store.get_session(master.hmk_name)
    assert record is not None
    assert record.calling_station_id == mac.replace(":", "-")
    assert record.nas_identifier == AR_NAS_IDENTIFIER
    with rest_stack.service.client(rest_stack.config.ar) as par:
        assert _fbu.verify(par, _fbu.fbu(master, sequence=1))["verdict"] == "accepted"
        assert _fbu.verify(par, _fbu.redirect(_fbu.fbu(master, sequence=2)))["reason"] == "bad-authenticator"


def test_rest_user_name_with_json_metacharacters_is_quoted(rest_stack: RestStack, tmp_path: Path) -> None:
    # EAP-TLS takes the identity from the peer: a quote and a backslash must not break the JSON body.
    identity = 'ali"ce\\x@fmip.test'
    mac = next_mac()
    conf_dir = tmp_path
    result = run_eapol_test(
        "TLS", rest_stack.radius.pki, port=rest_stack.radius.auth_port, work_dir=conf_dir, mac=mac, identity=identity
    )
    emsk, sid = result.require_keys()
    master = _fbu.master_key(emsk, sid)
    assert _wait_session(rest_stack.runtime, master.hmk_name), rest_stack.radius.log_tail()
    record = rest_stack.runtime.store.get_session(master.hmk_name)
    assert record is not None and record.user_name == identity


def test_rest_accounting_stop_revokes(rest_stack: RestStack, tmp_path: Path) -> None:
    emsk, sid, mac = _auth(rest_stack, tmp_path)
    master = _fbu.master_key(emsk, sid)
    assert _wait_session(rest_stack.runtime, master.hmk_name)
    radclient_accounting(
        rest_stack.radius.acct_port,
        f'Acct-Status-Type = Stop\nUser-Name = "alice"\nCalling-Station-Id = "{mac}"\nAcct-Session-Id = "r1"\n',
    )
    assert _wait_session(rest_stack.runtime, master.hmk_name, present=False), rest_stack.radius.log_tail()
    with rest_stack.service.client(rest_stack.config.ar) as par:
        assert _fbu.verify(par, _fbu.fbu(master, sequence=1))["reason"] in ("revoked", "unknown-spi")


def test_rest_service_down_or_token_wrong_never_rejects(rest_stack: RestStack, tmp_path: Path) -> None:
    rest_stack.service.stop()
    try:
        result = run_eapol_test(
            "TLS", rest_stack.radius.pki, port=rest_stack.radius.auth_port, work_dir=tmp_path, mac=next_mac()
        )
        print(f"TLS with the key service down: {result.seconds * 1000:.1f} ms")
        assert result.success, rest_stack.radius.log_tail()
    finally:
        rest_stack.service.start()


def test_rest_wrong_token_never_rejects(
    redis_server: RedisServer, pki: Pki, rest_stack: RestStack, tmp_path: Path
) -> None:
    radius = FreeRadius(
        tmp_path / "freeradius",
        pki,
        mode="rest",
        rest_url=rest_stack.service.url,
        env={"AAA_FMIP_REST_TOKEN": "not-a-valid-token"},
    )
    with radius:
        result = run_eapol_test("TLS", pki, port=radius.auth_port, work_dir=tmp_path, mac=next_mac())
        assert result.success, radius.log_tail()
        emsk, sid = result.require_keys()
    assert rest_stack.runtime.store.get_session(_fbu.master_key(emsk, sid).hmk_name) is None
