"""``radius.write_behind = false`` through real FreeRADIUS: no Access-Accept before its session is stored.

Redis is made to hold every write for a while (``CLIENT PAUSE ... WRITE``) while eapol_test authenticates. With
write-behind off, post-auth waits for the session write (bounded by ``store_timeout``), so by the time
eapol_test has the Access-Accept the session and its ``hk.issued`` audit entry are in Redis: read at once,
without polling.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from aaa_fmip.bootstrap import Runtime
from aaa_fmip.keys import HandoverMasterKey
from aaa_fmip.model import Caller
from tests.radius import _fbu
from tests.radius._stack import AR_NAS_IDENTIFIER, StackConfig, next_mac
from tests.support.freeradius import FreeRadius, Pki, run_eapol_test
from tests.support.redis_server import RedisServer

AUDITOR = Caller(name="test", role="auditor")
PAUSE_MS = 1500  # writes held this long: longer than the EAP exchange, shorter than a RADIUS retransmission (3 s)
STORE_TIMEOUT = 5.0  # post-auth (and each Redis call) may wait this long; it needs about PAUSE_MS


@dataclass
class StrictStack:
    radius: FreeRadius
    runtime: Runtime


@pytest.fixture(scope="module")
def strict(redis_server: RedisServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StrictStack]:
    base = tmp_path_factory.mktemp("strict")
    config = StackConfig(
        base / "config", redis_server.url, store_timeout=STORE_TIMEOUT, redis_timeout=STORE_TIMEOUT, write_behind=False
    )
    path = config.write()
    radius = FreeRadius(base / "freeradius", pki, aaa_config=path, threaded=True)
    runtime = config.runtime()
    try:
        radius.start()
        yield StrictStack(radius, runtime)
    finally:
        radius.stop()
        runtime.close()


def test_the_module_says_write_behind_is_off(strict: StrictStack) -> None:
    assert "write_behind=no" in strict.radius.log(), strict.radius.log_tail()


def _authenticate(strict: StrictStack, work_dir: Path) -> HandoverMasterKey:
    result = run_eapol_test(
        "TLS",
        strict.radius.pki,
        port=strict.radius.auth_port,
        work_dir=work_dir,
        mac=next_mac(),
        nas_identifier=AR_NAS_IDENTIFIER,
    )
    emsk, session_id = result.require_keys()
    return _fbu.master_key(emsk, session_id)


def test_the_session_and_its_audit_entry_are_stored_before_the_access_accept(
    strict: StrictStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    # A first authentication warms FreeRADIUS' TLS up, so the paused one below takes far less than PAUSE_MS
    # by itself: were the module writing behind, it would return while the writes are still held.
    warm = _authenticate(strict, tmp_path / "warm-up")
    assert strict.runtime.store.get_session(warm.hmk_name) is not None, strict.radius.log_tail()

    admin = redis.Redis.from_url(redis_server.url)
    try:
        admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        master = _authenticate(strict, tmp_path / "paused")
        # Read before writes are let through again (reads are served during the pause), and without polling:
        # with write-behind off, the Access-Accept left only after these writes.
        record = strict.runtime.store.get_session(master.hmk_name)
        entries, _ = strict.runtime.service.read_audit(AUDITOR, event="hk.issued", spi=master.spi)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    assert record is not None, strict.radius.log_tail()
    assert record.spi == master.spi
    assert [e.fields["hmk_name"] for e in entries] == [master.hmk_name.hex()]
