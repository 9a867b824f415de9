"""The adapter logic without FreeRADIUS: real service and Redis, FreeRADIUS-shaped attribute lists."""

from __future__ import annotations

import ipaddress
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip import mn
from aaa_fmip.bootstrap import Runtime
from aaa_fmip.config import AccessRouterSettings
from aaa_fmip.errors import StoreUnavailable
from aaa_fmip.model import Caller, SessionInfo
from aaa_fmip.radius.attributes import NasIdentity
from aaa_fmip.radius.plugin import FreeRadiusPlugin, Level, RateLimitedLog, match_router
from tests.radius._stack import AR_ADDRESS, AR_NAS_IDENTIFIER, StackConfig, next_mac
from tests.support.redis_server import RedisServer


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[Level, str]] = []
        self.lock = threading.Lock()

    def __call__(self, level: Level, message: str) -> None:
        with self.lock:
            self.lines.append((level, message))

    def text(self) -> str:
        return "\n".join(m for _, m in self.lines)


@pytest.fixture(scope="module")
def runtime(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    config = StackConfig(tmp_path_factory.mktemp("plugin"), redis_server.url)
    config.write()
    rt = config.runtime()
    yield rt
    rt.close()


def _request(*, emsk: bytes | None = None, sid: bytes | None = None, mac: str | None = None, **nas: str) -> Any:
    request = [
        ("User-Name", "alice@fmip.test"),
        ("Calling-Station-Id", mac or next_mac()),
        ("NAS-Identifier", nas.get("nas_identifier", AR_NAS_IDENTIFIER)),
        ("NAS-IP-Address", nas.get("nas_ip", "127.0.0.1")),
        ("EAP-Message", "0x02010006" + "0d00"),
    ]
    if "source" in nas:
        request.append(("FreeRADIUS-Client-IP-Address", nas["source"]))
    reply = []
    if emsk is not None:
        reply.append(("EAP-EMSK", "0x" + emsk.hex()))
    if sid is not None:
        reply.append(("EAP-Session-Id", "0x" + sid.hex()))
    return {"request": tuple(request), "reply": tuple(reply), "config": None, "session-state": None}


def _keys() -> tuple[bytes, bytes]:
    return secrets.token_bytes(64), b"\x0d" + secrets.token_bytes(64)


def test_post_auth_stores_the_session_and_pushes_the_routers_key(runtime: Runtime) -> None:
    log = Log()
    plugin = FreeRadiusPlugin(runtime.service, routers=runtime.settings.access_routers, log=log)
    emsk, sid = _keys()
    pairs = plugin.post_auth(_request(emsk=emsk, sid=sid, source="127.0.0.1"))
    master = mn.derive_master_key(emsk=emsk, eap_session_id=sid)
    hk = mn.derive_handover_key(master, AR_ADDRESS)
    values = {name: value for name, _op, value in pairs}
    assert values["AAA-FMIP-HK"] == "0x" + hk.hk.hex()
    assert values["AAA-FMIP-SPI"] == str(master.spi)
    assert values["AAA-FMIP-HK-Name"] == "0x" + hk.hk_name.hex()
    assert values["AAA-FMIP-AR-Address"] == str(AR_ADDRESS)
    assert values["AAA-FMIP-HK-Algorithm"] == "HMAC-SHA1-96"
    assert next((n, op) for n, op, _ in pairs if n == "Class") == ("Class", "+=")
    record = runtime.store.get_session(master.hmk_name)
    assert record is not None
    token = bytes.fromhex(values["Class"][2:]).decode().split(":", 1)[1]
    assert f"radius-class:{token}" in record.external_ids
    assert plugin.counts == {"sessions_stored": 1, "keys_pushed": 1}
    assert emsk.hex() not in log.text() and hk.hk.hex() not in log.text()
    plugin.close()


@pytest.mark.parametrize(
    "nas",
    [
        {"source": "127.0.0.9"},  # claims ar1's NAS-Identifier and NAS-IP-Address, sends from elsewhere
        {"nas_identifier": "ar9", "nas_ip": "10.0.0.9"},
    ],
)
def test_no_push_for_a_nas_that_is_not_the_router(runtime: Runtime, nas: dict[str, str]) -> None:
    plugin = FreeRadiusPlugin(runtime.service, routers=runtime.settings.access_routers, log=Log())
    emsk, sid = _keys()
    pairs = plugin.post_auth(_request(emsk=emsk, sid=sid, **nas))
    assert [n for n, _, _ in pairs] == ["Class"]
    plugin.close()


def test_push_disabled(runtime: Runtime) -> None:
    plugin = FreeRadiusPlugin(runtime.service, routers=runtime.settings.access_routers, push_keys=False, log=Log())
    emsk, sid = _keys()
    assert [n for n, _, _ in plugin.post_auth(_request(emsk=emsk, sid=sid))] == ["Class"]
    plugin.close()


def _router(name: str, *, nas_address: str | None = None, nas_identifier: str | None = None) -> AccessRouterSettings:
    return AccessRouterSettings(
        name=name,
        addresses=(ipaddress.IPv6Address(f"2001:db8:{len(name)}::1"),),
        token_sha256=b"\x00" * 32,
        nas_identifier=nas_identifier,
        nas_address=ipaddress.ip_address(nas_address) if nas_address else None,
    )


def test_match_router_rules() -> None:
    by_address = _router("a", nas_address="192.0.2.1", nas_identifier="a.example")
    by_name = _router("bb", nas_identifier="b.example")
    routers = (by_address, by_name)
    v4 = ipaddress.IPv4Address
    # Source address wins over the NAS's own claims.
    assert match_router(routers, NasIdentity(nas_ip_address=v4("192.0.2.1"))).router is by_address
    spoofed = NasIdentity(nas_ip_address=v4("192.0.2.1"), source_address=v4("192.0.2.7"))
    assert match_router(routers, spoofed).router is None
    assert match_router(routers, NasIdentity(nas_identifier="a.example")).router is None  # has an address: needs it
    assert match_router(routers, NasIdentity(nas_identifier="b.example")).router is by_name
    both = NasIdentity(nas_identifier="b.example", nas_ip_address=v4("192.0.2.1"))
    assert match_router(routers, both).router is None and "2 access routers" in match_router(routers, both).reason


class BlockingService:
    """A service whose calls block until released, or raise."""

    def __init__(self, error: Exception | None = None) -> None:
        self.release = threading.Event()
        self.error = error
        self.calls = 0

    def ingest_session(self, caller: Caller, **kwargs: Any) -> SessionInfo:
        self.calls += 1
        if self.error is not None:
            raise self.error
        self.release.wait(10)
        return SessionInfo(hmk_name=b"\x01" * 8, spi=1, expires_at=0.0)

    def record_no_emsk(self, caller: Caller, **kwargs: Any) -> None:
        self.release.wait(10)

    def revoke_matching(self, caller: Caller, **kwargs: Any) -> int:
        self.release.wait(10)
        return 0


def test_a_hanging_store_is_bounded_and_access_is_not_affected() -> None:
    service = BlockingService()
    log = Log()
    plugin = FreeRadiusPlugin(service, store_timeout=0.05, log=log)
    try:
        emsk, sid = _keys()
        assert plugin.post_auth(_request(emsk=emsk, sid=sid)) == ()
        # post_auth returned while the store call is still blocked: the wait is ours, not the store's.
        assert not service.release.is_set() and plugin.pending == 1
        assert plugin.counts == {"ingest_timeout": 1}
        assert "did not finish within 0.05 s" in log.text()
    finally:
        service.release.set()
        plugin.close(wait=True)


def test_too_many_pending_calls_are_skipped() -> None:
    service = BlockingService()
    plugin = FreeRadiusPlugin(service, store_timeout=0.02, max_pending=2, log=Log())
    try:
        for _ in range(3):
            emsk, sid = _keys()
            plugin.post_auth(_request(emsk=emsk, sid=sid))
        assert plugin.counts == {"ingest_timeout": 2, "ingest_overload": 1}
        assert service.calls == 2
    finally:
        service.release.set()
        plugin.close(wait=True)


def test_store_errors_are_counted_logged_without_values_and_rate_limited() -> None:
    log = Log()
    plugin = FreeRadiusPlugin(BlockingService(StoreUnavailable("redis down")), log=log)
    emsk, sid = _keys()
    for _ in range(5):
        assert plugin.post_auth(_request(emsk=emsk, sid=sid)) == ()
    assert plugin.counts == {"ingest_error": 5}
    errors = [m for level, m in log.lines if level == "error"]
    assert errors == ["aaa_fmip: ingest failed: StoreUnavailable: redis down"]
    assert emsk.hex() not in log.text() and sid.hex() not in log.text()
    plugin.close()


def test_rate_limited_log_reports_what_it_suppressed() -> None:
    now = [0.0]
    log = Log()
    limited = RateLimitedLog(log, interval=10, clock=lambda: now[0])
    for _ in range(3):
        limited("error", "k", "boom")
    now[0] = 11
    limited("error", "k", "boom")
    assert [m for _, m in log.lines] == ["boom", "boom (2 more like this since the last report)"]


@pytest.mark.parametrize("p", [None, 42, "x", {"request": "nonsense"}, {"reply": (("EAP-EMSK", "0xzz"),)}])
def test_post_auth_never_raises(p: object) -> None:
    plugin = FreeRadiusPlugin(BlockingService(), log=Log())
    assert plugin.post_auth(p) == ()
    assert plugin.accounting(p) is None
    plugin.close()


def test_no_emsk_is_audited(runtime: Runtime) -> None:
    plugin = FreeRadiusPlugin(runtime.service, log=Log())
    lists = _request()
    lists["request"] = (*lists["request"][:-1], ("EAP-Message", "0x02d2000b3403aabbccddee"))
    assert plugin.post_auth(lists) == ()
    assert plugin.counts == {"no_emsk": 1}
    entries, _ = runtime.service.read_audit(Caller("t", "auditor"), event="session.skipped", limit=1000)
    assert any(e.fields.get("method") == "PWD" for e in entries)
    plugin.close()


def test_parallel_post_auth_and_accounting(runtime: Runtime) -> None:
    plugin = FreeRadiusPlugin(
        runtime.service, routers=runtime.settings.access_routers, store_timeout=5, log=Log(), workers=8
    )
    results: dict[bytes, tuple[Any, ...]] = {}
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(8):
            emsk, sid = _keys()
            pairs = plugin.post_auth(_request(emsk=emsk, sid=sid))
            with lock:
                results[mn.derive_master_key(emsk=emsk, eap_session_id=sid).hmk_name] = pairs

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 128
    assert all(len(p) == 7 for p in results.values())
    assert all(runtime.store.get_session(name) is not None for name in results)
    assert plugin.counts == {"sessions_stored": 128, "keys_pushed": 128}

    # Accounting Stop with the Class of each Access-Accept revokes exactly that session.
    for name, pairs in list(results.items())[:10]:
        class_hex = next(v for n, _, v in pairs if n == "Class")
        assert plugin.accounting({"request": (("Acct-Status-Type", "Stop"), ("Class", class_hex))}) == 1
        assert runtime.store.get_session(name) is None
    plugin.close()


def test_accounting_fallback_by_calling_station_id(runtime: Runtime, tmp_path: Path) -> None:
    plugin = FreeRadiusPlugin(runtime.service, log=Log())
    mac = next_mac()
    emsk, sid = _keys()
    plugin.post_auth(_request(emsk=emsk, sid=sid, mac=mac))
    stop = {"request": (("Acct-Status-Type", "Stop"), ("Calling-Station-Id", mac.replace(":", "").upper()))}
    assert plugin.accounting(stop) == 1
    assert plugin.accounting({"request": (("Acct-Status-Type", "Start"), ("Calling-Station-Id", mac))}) is None
    plugin.close()
