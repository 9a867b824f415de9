"""The store fails; network access does not. FreeRADIUS threaded, the module loaded, Redis stopped or frozen."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from aaa_fmip.radius import ar as ar_side
from tests.radius import _fbu
from tests.radius._stack import AR_NAS_IDENTIFIER, StackConfig, next_mac, wait_for_session
from tests.support.freeradius import SECRET, EapMethod, FreeRadius, Pki, UdpRecorder, run_eapol_test
from tests.support.redis_server import RedisServer


def _auth(radius: FreeRadius, port: int, work: Path, method: EapMethod = "TLS") -> tuple[bool, float, bytes, bytes]:
    result = run_eapol_test(
        method,
        radius.pki,
        port=port,
        work_dir=work,
        mac=next_mac(),
        nas_identifier=AR_NAS_IDENTIFIER,
    )
    print(f"{method} authentication: {result.seconds * 1000:.1f} ms, success={result.success}")
    return result.success, result.seconds, result.emsk or b"", result.session_id or b""


@pytest.fixture
def outage_radius(private_redis: RedisServer, pki: Pki, tmp_path: Path) -> tuple[FreeRadius, StackConfig]:
    config = StackConfig(tmp_path / "config", private_redis.url)
    path = config.write()
    radius = FreeRadius(tmp_path / "freeradius", pki, aaa_config=path, threaded=True)
    return radius, config


def test_redis_stopped_access_granted_unchanged_and_logged(
    outage_radius: tuple[FreeRadius, StackConfig], private_redis: RedisServer, tmp_path: Path
) -> None:
    radius, config = outage_radius
    with radius:
        ok, _, emsk, sid = _auth(radius, radius.auth_port, tmp_path / "before")
        assert ok
        runtime = config.runtime()
        try:
            assert wait_for_session(runtime.store, _fbu.master_key(emsk, sid).hmk_name) is not None
        finally:
            runtime.close()

        private_redis.stop()
        # The first authentication after the stop is answered before its session write fails (the module
        # writes behind the reply): access is granted, the failure is logged and counted.
        ok, _, _, _ = _auth(radius, radius.auth_port, tmp_path / "down-first")
        assert ok, radius.log_tail()
        radius.wait_for_log(r"aaa_fmip: ingest failed: StoreUnavailable")
        # From then on it waits for the store (bounded) and, while that fails, adds nothing to the reply.
        with UdpRecorder(radius.auth_port) as relay:
            for method in ("TLS", "PEAP", "TTLS"):
                ok, _seconds, _, _ = _auth(radius, relay.port, tmp_path / f"down-{method}", method)
                assert ok, radius.log_tail()
                request, accept = relay.exchange(2)
                # The Access-Accept goes out as if the module were absent: no key, no Class of ours.
                assert ar_side.decode_access_accept(accept, request=request, secret=SECRET.encode()) is None
                assert b"aaa-fmip:" not in accept
        assert radius.alive()

        private_redis.start()
        ok, _, emsk, sid = _auth(radius, radius.auth_port, tmp_path / "after")
        assert ok
        runtime = config.runtime()
        try:
            assert wait_for_session(runtime.store, _fbu.master_key(emsk, sid).hmk_name) is not None
        finally:
            runtime.close()


def test_frozen_redis_is_bounded_by_store_timeout(
    outage_radius: tuple[FreeRadius, StackConfig], private_redis: RedisServer, tmp_path: Path
) -> None:
    radius, _config = outage_radius
    with radius:
        ok, _, _, _ = _auth(radius, radius.auth_port, tmp_path / "warm")
        assert ok
        assert private_redis.proc is not None
        pid = private_redis.proc.pid
        os.kill(pid, signal.SIGSTOP)  # connections hang instead of failing: only our deadline ends the wait
        try:
            for n in range(3):
                ok, _seconds, _, _ = _auth(radius, radius.auth_port, tmp_path / f"frozen{n}")
                assert ok, radius.log_tail()
            # The writes behind those replies end at the store's socket timeout, failed ...
            radius.wait_for_log(r"aaa_fmip: ingest failed")
            # ... and from then on post-auth waits for the store again, at most store_timeout.
            ok, _seconds, _, _ = _auth(radius, radius.auth_port, tmp_path / "frozen-late")
            assert ok, radius.log_tail()
            radius.wait_for_log(r"aaa_fmip: ingest did not finish within 0\.3 s; access is not affected")
        finally:
            os.kill(pid, signal.SIGCONT)
        assert radius.alive()
