"""``aaa-fmip radius-accounting`` as a real process, driven by pyrad as the NAS."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyrad.client import Client, Timeout
from pyrad.packet import AccountingResponse

from aaa_fmip.bootstrap import Runtime
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.model import Caller, EapKeys, SessionRequest
from aaa_fmip.radius.attributes import class_value
from aaa_fmip.radius.dictionary import pyrad_dictionary
from tests.radius._stack import ACCOUNTING_SECRET, StackConfig, next_mac
from tests.support.redis_server import RedisServer
from tests.support.service_proc import clean_env, cli_command

AAA = Caller(name="test", role="aaa")


class AccountingProcess:
    def __init__(self, directory: Path, config: Path) -> None:
        self.log_path = directory / "accounting.log"
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                cli_command("radius-accounting", "--config", str(self.config)),
                env=clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"radius-accounting exited ({self.proc.returncode}):\n{self.log()}")
            if '"event":"listening"' in self.log():
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"radius-accounting not listening within {timeout} s:\n{self.log()}")

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        proc.terminate()
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log()}")


@pytest.fixture(scope="module")
def accounting(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AccountingProcess, StackConfig, Runtime]]:
    base = tmp_path_factory.mktemp("accounting")
    config = StackConfig(base / "config", redis_server.url)
    path = config.write()
    process = AccountingProcess(base, path)
    runtime = config.runtime()
    process.start()
    try:
        yield process, config, runtime
    finally:
        code = process.stop()
        runtime.close()
        assert code == 0, process.log()
        assert '"level":"error"' not in process.log(), process.log()


def _session(runtime: Runtime, mac: str, nas: str | None = None) -> tuple[bytes, str]:
    token = secrets.token_hex(16)
    info = runtime.service.ingest_session(
        AAA,
        SessionRequest(
            user_name="alice",
            keys=EapKeys(SecretBytes(secrets.token_bytes(64)), b"\x0d" + secrets.token_bytes(64)),
            calling_station_id=mac,
            nas_identifier=nas,
            external_ids=(f"radius-class:{token}",),
        ),
    )
    return info.hmk_name, token


def _client(config: StackConfig, secret: str = ACCOUNTING_SECRET, source: str | None = None) -> Client:
    client = Client(
        server="127.0.0.1",
        acctport=config.accounting_port,
        secret=secret.encode(),
        dict=pyrad_dictionary(),
        retries=1,
        timeout=1,
    )
    if source is not None:
        client.bind((source, 0))
    return client


def _stop(client: Client, **attributes: object) -> object:
    pkt = client.CreateAcctPacket(User_Name="alice", Acct_Session_Id="s1")
    pkt["Acct-Status-Type"] = attributes.pop("status", "Stop")
    for name, value in attributes.items():
        pkt[name.replace("_", "-")] = value
    return client.SendPacket(pkt)


def test_stop_with_our_class_revokes_exactly_that_session(
    accounting: tuple[AccountingProcess, StackConfig, Runtime],
) -> None:
    _process, config, runtime = accounting
    mac = next_mac()
    first, token = _session(runtime, mac)
    reply = _stop(_client(config), Class=class_value(token), Calling_Station_Id="02-ee-ee-ee-ee-ee")
    assert reply.code == AccountingResponse  # type: ignore[attr-defined]
    assert runtime.store.get_session(first) is None


def test_stop_without_class_falls_back_to_calling_station_id(
    accounting: tuple[AccountingProcess, StackConfig, Runtime],
) -> None:
    _process, config, runtime = accounting
    mac = next_mac()
    name, _token = _session(runtime, mac)
    reply = _stop(_client(config), Calling_Station_Id=mac.upper())
    assert reply.code == AccountingResponse  # type: ignore[attr-defined]
    assert runtime.store.get_session(name) is None


def test_interim_update_is_answered_and_revokes_nothing(
    accounting: tuple[AccountingProcess, StackConfig, Runtime],
) -> None:
    _process, config, runtime = accounting
    mac = next_mac()
    name, token = _session(runtime, mac)
    reply = _stop(_client(config), status="Interim-Update", Class=class_value(token), Calling_Station_Id=mac)
    assert reply.code == AccountingResponse  # type: ignore[attr-defined]
    assert runtime.store.get_session(name) is not None


def test_wrong_secret_is_dropped_and_logged(accounting: tuple[AccountingProcess, StackConfig, Runtime]) -> None:
    process, config, runtime = accounting
    mac = next_mac()
    name, token = _session(runtime, mac)
    with pytest.raises(Timeout):
        _stop(_client(config, secret="not-the-secret"), Class=class_value(token), Calling_Station_Id=mac)
    process.wait_for_log("Request Authenticator does not verify")
    assert runtime.store.get_session(name) is not None


def test_unknown_client_is_dropped_and_logged(accounting: tuple[AccountingProcess, StackConfig, Runtime]) -> None:
    process, config, runtime = accounting
    mac = next_mac()
    name, token = _session(runtime, mac)
    with pytest.raises(Timeout):
        _stop(_client(config, source="127.0.0.2"), Class=class_value(token), Calling_Station_Id=mac)
    process.wait_for_log("not a configured client")
    assert runtime.store.get_session(name) is not None


def test_in_process_listener_thread(redis_server: RedisServer, tmp_path: Path) -> None:
    # What `aaa-fmip serve` can start next to the REST API when [radius.accounting] is configured.
    from aaa_fmip.radius.accounting import start

    config = StackConfig(tmp_path, redis_server.url)
    config.write()
    runtime = config.runtime()
    handle = start(runtime)
    try:
        assert handle.address == ("127.0.0.1", config.accounting_port)
        name, token = _session(runtime, next_mac())
        assert _stop(_client(config), Class=class_value(token)).code == AccountingResponse  # type: ignore[attr-defined]
        assert runtime.store.get_session(name) is None
        assert handle.listener.counts == {"accounting_stop": 1, "sessions_revoked": 1, "answered": 1}
    finally:
        handle.stop()
        runtime.close()


def test_accounting_on_revokes_the_sessions_of_that_nas(
    accounting: tuple[AccountingProcess, StackConfig, Runtime],
) -> None:
    _process, config, runtime = accounting
    rebooted = f"nas-{secrets.token_hex(4)}"
    gone = [_session(runtime, next_mac(), rebooted)[0] for _ in range(3)]
    kept, _token = _session(runtime, next_mac(), "nas-elsewhere")
    reply = _stop(_client(config), status="Accounting-On", NAS_Identifier=rebooted)
    assert reply.code == AccountingResponse  # type: ignore[attr-defined]
    assert [runtime.store.get_session(name) for name in gone] == [None, None, None]
    assert runtime.store.get_session(kept) is not None
