"""What docs/freeradius.md tells an operator, tried against real FreeRADIUS (threaded) and eapol_test: the KEK
shared through a copy named in FreeRADIUS' environment, and the counter line FreeRADIUS logs when it stops."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from aaa_fmip.bootstrap import build_runtime
from aaa_fmip.config import load_settings
from aaa_fmip.model import Caller
from tests.radius import _fbu
from tests.radius._stack import AR_ADDRESS, AR_NAME, AR_NAS_IDENTIFIER, StackConfig, next_mac, wait_for_session
from tests.support.freeradius import FreeRadius, Pki, radclient_accounting, run_eapol_test
from tests.support.redis_server import RedisServer, free_port
from tests.support.service_proc import run_cli

KEK_ENV = "AAA_FMIP_KEYS_KEK_FILE"


def test_a_group_readable_kek_is_refused_and_a_copy_named_in_the_environment_works(
    redis_server: RedisServer, pki: Pki, tmp_path: Path
) -> None:
    config = StackConfig(tmp_path / "config", redis_server.url)
    path = config.write()
    kek = tmp_path / "config" / "kek"
    os.chmod(kek, 0o640)  # what "readable by the freerad group" would look like

    # serve refuses it: exit status 2, the key named, the fix given.
    refused = run_cli("serve", "--config", str(path), "--listen", f"127.0.0.1:{free_port()}")
    assert refused.returncode == 2, refused.stderr
    assert f"KEK file {kek} is accessible by group or others (mode 0640); run: chmod 600 {kek}" in refused.stderr

    # So does the module: not active, and authentication goes on without it.
    with FreeRadius(tmp_path / "group", pki, aaa_config=path, threaded=True) as radius:
        result = run_eapol_test("TLS", pki, port=radius.auth_port, work_dir=tmp_path / "g", mac=next_mac())
        assert result.success, radius.log_tail()
        radius.wait_for_log(r"aaa_fmip: not active \(keys\.kek_file: KEK file .* is accessible by group or others")

    # A copy of its own, mode 0600, named by AAA_FMIP_KEYS_KEK_FILE in FreeRADIUS' environment: the module is
    # ready and its sessions are readable with the configured key (the same key, another file).
    copy = tmp_path / "freeradius.kek"
    shutil.copyfile(kek, copy)
    os.chmod(copy, 0o600)
    radius = FreeRadius(tmp_path / "copy", pki, aaa_config=path, threaded=True, env={KEK_ENV: str(copy)})
    with radius:
        radius.wait_for_log(r"aaa_fmip: ready \(")
        result = run_eapol_test(
            "TLS", pki, port=radius.auth_port, work_dir=tmp_path / "c", mac=next_mac(), nas_identifier=AR_NAS_IDENTIFIER
        )
        emsk, session_id = result.require_keys()
    os.chmod(kek, 0o600)
    runtime = build_runtime(load_settings(path, {}))  # the configured file, as serve reads it
    try:
        record = wait_for_session(runtime.store, _fbu.master_key(emsk, session_id).hmk_name)
        assert record is not None, radius.log_tail()
        # The service unwraps the session's HMK with its own file to derive the router's key.
        ar1 = Caller(name=AR_NAME, role="ar", router=runtime.callers.router_by_name(AR_NAME))
        grant = runtime.service.handover_key(ar1, ar_address=AR_ADDRESS, hmk_name=record.hmk_name)
        assert grant.spi == _fbu.master_key(emsk, session_id).spi
    finally:
        runtime.close()


def test_the_counter_line_at_shutdown(redis_server: RedisServer, pki: Pki, tmp_path: Path) -> None:
    # The line docs/freeradius.md quotes after its "Try it": one key pushed, then revoked by an Accounting Stop
    # that carries the Class of the Access-Accept.
    config = StackConfig(tmp_path / "config", redis_server.url)
    path = config.write()
    radius = FreeRadius(tmp_path / "fr", pki, aaa_config=path, threaded=True)
    with radius:
        result = run_eapol_test(
            "TLS", pki, port=radius.auth_port, work_dir=tmp_path, mac=next_mac(), nas_identifier=AR_NAS_IDENTIFIER
        )
        emsk, session_id = result.require_keys()
        class_hex = next(
            line.split("Value: ", 1)[1].strip()
            for previous, line in zip(result.output.splitlines(), result.output.splitlines()[1:], strict=False)
            if "Attribute 25 (Class)" in previous
        )
        assert bytes.fromhex(class_hex).startswith(b"aaa-fmip:")
        runtime = config.runtime()
        try:
            name = _fbu.master_key(emsk, session_id).hmk_name
            assert wait_for_session(runtime.store, name) is not None
            radclient_accounting(
                radius.acct_port,
                f'Acct-Status-Type = Stop\nUser-Name = "alice"\nAcct-Session-Id = "try-1"\nClass = 0x{class_hex}\n',
            )
            deadline = time.monotonic() + 5
            while runtime.store.get_session(name) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert runtime.store.get_session(name) is None
        finally:
            runtime.close()
    assert (
        "Info: aaa_fmip: detaching: accounting_stop=1, keys_pushed=1, sessions_revoked=1, sessions_stored=1"
        in radius.log()
    )
