"""A stalled Redis (SIGSTOP, not killed) during EAP authentication through real FreeRADIUS.

The module gives up on the session write (its timeout); the command is still in the socket buffer and Redis
runs it when it resumes. Before the writes carried a deadline into Redis, that late write landed without its
audit entries (a live session, HK issued, no ``session.created``/``hk.issued``): seen in 5 of 6 runs with
write-behind and in every run without. Now the session and its entries are one script that refuses to run
past the deadline, so a write given up on never lands: no session, no entries.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from aaa_fmip.model import Caller
from tests.radius import _fbu
from tests.radius._stack import AR_NAS_IDENTIFIER, StackConfig, next_mac, wait_for_session
from tests.support.freeradius import FreeRadius, Pki, run_eapol_test
from tests.support.redis_server import RedisServer

AUDITOR = Caller(name="test", role="auditor")


def _auth(radius: FreeRadius, work: Path) -> tuple[bytes, bytes]:
    result = run_eapol_test(
        "TLS", radius.pki, port=radius.auth_port, work_dir=work, mac=next_mac(), nas_identifier=AR_NAS_IDENTIFIER
    )
    assert result.success, radius.log_tail()
    return result.require_keys()


@pytest.mark.slow
@pytest.mark.parametrize("write_behind", [True, False], ids=["write-behind", "awaited"])
def test_a_write_given_up_on_does_not_land_when_redis_resumes(
    write_behind: bool, private_redis: RedisServer, pki: Pki, tmp_path: Path
) -> None:
    config = StackConfig(tmp_path / "config", private_redis.url, write_behind=write_behind)
    radius = FreeRadius(tmp_path / "freeradius", pki, aaa_config=config.write(), threaded=True)
    runtime = config.runtime()
    try:
        with radius:
            emsk, sid = _auth(radius, tmp_path / "warm")
            assert wait_for_session(runtime.store, _fbu.master_key(emsk, sid).hmk_name) is not None
            assert private_redis.proc is not None
            pid = private_redis.proc.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                emsk, sid = _auth(radius, tmp_path / "frozen")
                # The module gives up: behind the reply at the store's socket timeout, or awaited at
                # store_timeout. Either way the command may already sit in Redis' socket buffer.
                radius.wait_for_log(r"aaa_fmip: ingest (failed|did not finish)")
                time.sleep(config.redis_timeout + 0.2)  # past every deadline the write could carry
            finally:
                os.kill(pid, signal.SIGCONT)
            master = _fbu.master_key(emsk, sid)
            # Redis now runs whatever was buffered; give it time, then look.
            time.sleep(0.5)
            assert runtime.store.get_session(master.hmk_name) is None, radius.log_tail()
            for event in ("session.created", "hk.issued"):
                entries, _ = runtime.service.read_audit(AUDITOR, event=event, spi=master.spi)
                assert [e for e in entries if e.fields.get("hmk_name") == master.hmk_name.hex()] == []
            assert runtime.store.verify_audit().ok
            # And the store serves again: the next authentication is stored with its entries.
            emsk, sid = _auth(radius, tmp_path / "after")
            after = _fbu.master_key(emsk, sid)
            assert wait_for_session(runtime.store, after.hmk_name) is not None, radius.log_tail()
            entries, _ = runtime.service.read_audit(AUDITOR, event="session.created", spi=after.spi)
            assert [e.fields["hmk_name"] for e in entries] == [after.hmk_name.hex()]
    finally:
        runtime.close()
