"""The adapter logic without FreeRADIUS: real service and Redis, FreeRADIUS-shaped attribute lists."""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip import mn
from aaa_fmip.bootstrap import Runtime
from aaa_fmip.callers import CallerRegistry, describe_nas, match_router
from aaa_fmip.errors import StoreUnavailable
from aaa_fmip.logging import RATE_KEY
from aaa_fmip.metrics import Metrics
from aaa_fmip.model import AccessRouter, Caller, NasIdentity
from aaa_fmip.radius.plugin import FreeRadiusPlugin, PluginService
from aaa_fmip.radius.pool import BehindWriters
from aaa_fmip.radius.radlog import RadlogHandler, RadlogLevels, install, uninstall
from aaa_fmip.service import HandoverKeyService, PreparedSession
from tests.radius._stack import AR_ADDRESS, AR_NAS_IDENTIFIER, StackConfig, next_mac
from tests.support.redis_server import RedisServer

LEVELS = RadlogLevels(debug=1, info=3, warning=5, error=4)  # radiusd's L_DBG, L_INFO, L_WARN, L_ERR
_LEVEL_NAMES = {1: "debug", 3: "info", 5: "warning", 4: "error"}


class Log:
    """What FreeRADIUS' ``radlog`` receives: the project's logging through the module's handler."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, level: int, message: str) -> None:
        with self.lock:
            self.lines.append((_LEVEL_NAMES[level], message))

    def text(self) -> str:
        return "\n".join(m for _, m in self.lines)


@pytest.fixture
def log() -> Iterator[Log]:
    """Every ``aaa_fmip.*`` line of the test, as the module's handler (redaction, rate limit) gives it to radlog."""
    captured = Log()
    installed = install(captured, LEVELS)
    yield captured
    uninstall(installed)


def _plugin(service: PluginService, **kwargs: Any) -> FreeRadiusPlugin:
    kwargs.setdefault("callers", CallerRegistry((), ()))
    return FreeRadiusPlugin(service, metrics=Metrics(), **kwargs)


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


def test_post_auth_stores_the_session_and_pushes_the_routers_key(runtime: Runtime, log: Log) -> None:
    plugin = _plugin(runtime.service, callers=runtime.callers)
    emsk, sid = _keys()
    pairs = plugin.post_auth(_request(emsk=emsk, sid=sid, source="127.0.0.1"))
    assert plugin.flush(5)  # the session is written behind the reply
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
    text = log.text()
    assert "session stored: HMK-Name " + master.hmk_name.hex() in text  # debug lines are captured too
    assert emsk.hex() not in text and hk.hk.hex() not in text and master.hmk.reveal().hex() not in text
    plugin.close()


def test_an_unusable_emsk_is_counted_and_logged_without_a_value(runtime: Runtime, log: Log) -> None:
    plugin = _plugin(runtime.service, callers=runtime.callers)
    short = secrets.token_bytes(40)  # RFC 5247 §2.1: an EMSK has at least 64 octets
    sid = b"\x0d" + secrets.token_bytes(64)
    for _ in range(3):
        assert plugin.post_auth(_request(emsk=short, sid=sid, source="127.0.0.1")) == ()
    assert plugin.flush(5)
    assert plugin.counts == {"ingest_error": 3}
    errors = [m for level, m in log.lines if level == "error"]
    assert errors == ["aaa_fmip: ingest failed: InvalidRequest: EMSK must be 64..256 octets, got 40"], log.text()
    assert short.hex() not in log.text() and sid.hex() not in log.text()
    plugin.close()


@pytest.mark.parametrize(
    "nas",
    [
        {"source": "127.0.0.9"},  # claims ar1's NAS-Identifier and NAS-IP-Address, sends from elsewhere
        {"nas_identifier": "ar9", "nas_ip": "10.0.0.9"},
    ],
)
def test_no_push_for_a_nas_that_is_not_the_router(runtime: Runtime, nas: dict[str, str]) -> None:
    plugin = _plugin(runtime.service, callers=runtime.callers)
    emsk, sid = _keys()
    pairs = plugin.post_auth(_request(emsk=emsk, sid=sid, **nas))
    assert [n for n, _, _ in pairs] == ["Class"]
    plugin.close()


def test_why_no_key_was_pushed_is_logged_once_per_nas(runtime: Runtime, log: Log) -> None:
    plugin = _plugin(runtime.service, callers=runtime.callers)
    # ar1 has nas_address 127.0.0.1 and NAS-Identifier ar1.fmip.test; this NAS sends from elsewhere with that name.
    for _ in range(3):
        emsk, sid = _keys()
        plugin.post_auth(_request(emsk=emsk, sid=sid, source="127.0.0.9"))
    lines = [(level, m) for level, m in log.lines if "no key pushed" in m]
    assert len(lines) == 1, log.text()
    level, message = lines[0]
    assert level == "warning"
    assert message.startswith(
        "aaa_fmip: no key pushed to the NAS with source address 127.0.0.9, NAS-IP-Address 127.0.0.1, "
        f"NAS-Identifier '{AR_NAS_IDENTIFIER}': no access router has nas_address = 127.0.0.9"
    )
    assert f"router ar1 has nas_identifier '{AR_NAS_IDENTIFIER}' but nas_address = 127.0.0.1" in message
    assert emsk.hex() not in log.text()
    # Another NAS, unrelated to any router: its own line, at info level (a NAS that is no router is normal),
    # once the one-line-a-second limit across NASes allows it.
    emsk, sid = _keys()
    plugin.post_auth(_request(emsk=emsk, sid=sid, source="127.0.0.8", nas_identifier="sw1", nas_ip="127.0.0.8"))
    time.sleep(1.05)
    plugin.post_auth(_request(emsk=emsk, sid=sid, source="127.0.0.8", nas_identifier="sw1", nas_ip="127.0.0.8"))
    assert plugin.flush(5)
    other = [(level, m) for level, m in log.lines if "source address 127.0.0.8" in m]
    assert len(other) == 1 and other[0][0] == "info", log.text()
    assert "NAS-Identifier 'sw1'" in other[0][1] and "router ar1" not in other[0][1]
    plugin.close()


def test_push_disabled(runtime: Runtime) -> None:
    plugin = _plugin(runtime.service, callers=runtime.callers, push_keys=False)
    emsk, sid = _keys()
    assert [n for n, _, _ in plugin.post_auth(_request(emsk=emsk, sid=sid))] == ["Class"]
    plugin.close()


def _router(name: str, *, nas_address: str | None = None, nas_identifier: str | None = None) -> AccessRouter:
    address = ipaddress.IPv6Address(f"2001:db8:{len(name)}::1")
    return AccessRouter(
        name=name,
        addresses=frozenset((address,)),
        nas_identifier=nas_identifier,
        nas_address=ipaddress.ip_address(nas_address) if nas_address else None,
        key_address=address,
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
    # Why none matched, in the configuration's terms.
    unnamed = match_router(routers, NasIdentity(nas_identifier="a.example", nas_ip_address=v4("198.51.100.1")))
    assert unnamed.misconfigured
    assert "nas_address = 198.51.100.1" in unnamed.reason and "NAS-IP-Address / NAS-IPv6-Address" in unnamed.reason
    assert "router a has nas_identifier 'a.example' but nas_address = 192.0.2.1" in unnamed.reason
    stranger = match_router(routers, NasIdentity(nas_identifier="x\n" * 50, source_address=v4("198.51.100.2")))
    assert not stranger.misconfigured and "\n" not in stranger.reason
    shown = describe_nas(NasIdentity(nas_identifier="x\n" * 50, source_address=v4("198.51.100.2")))
    assert "\n" not in shown and len(shown) < 160  # the NAS's claim, quoted and cut short
    assert match_router((), NasIdentity(nas_identifier="a.example")).reason == "no [[access_routers]] are configured"


class BlockingService(HandoverKeyService):
    """The real service's prepare step (pure: it never touches the store), with store calls that block until
    released, or raise."""

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__(store=None)  # type: ignore[arg-type]
        self.release = threading.Event()
        self.error = error
        self.calls = 0

    def commit_session(self, prepared: PreparedSession, *, deadline: float | None = None) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        self.release.wait(10)

    def record_no_emsk(self, caller: Caller, **kwargs: Any) -> None:
        self.release.wait(10)

    def revoke_matching(self, caller: Caller, **kwargs: Any) -> int:
        self.release.wait(10)
        return 0


class PriorityService(HandoverKeyService):
    """The real prepare step; store calls only note the nice value of the thread they run on."""

    def __init__(self) -> None:
        super().__init__(store=None)  # type: ignore[arg-type]
        self.nice: list[tuple[str, int]] = []

    def _note(self, what: str) -> None:
        self.nice.append((what, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    def commit_session(self, prepared: PreparedSession, *, deadline: float | None = None) -> None:
        self._note("commit")

    def record_no_emsk(self, caller: Caller, **kwargs: Any) -> None:
        self._note("no-emsk")


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a per-thread nice value is Linux's")
def test_writes_behind_the_reply_run_at_lower_priority_and_awaited_writes_do_not() -> None:
    base = _nice_of_this_thread()  # new threads start with their creator's nice value
    lowered = min(19, base + 7)  # 19 is the lowest priority there is
    service = PriorityService()
    plugin = _plugin(service, write_behind_nice=7)
    try:
        for _ in range(3):
            emsk, sid = _keys()
            assert _names(plugin.post_auth(_request(emsk=emsk, sid=sid))) == ["Class"]
        plugin.post_auth({"request": (("User-Name", "p"), ("EAP-Message", "0x02010005" + "34"))})  # EAP-PWD
        assert plugin.flush(10)
        plugin.write_behind = False  # now post-auth waits for its write: on the pool, at normal priority
        emsk, sid = _keys()
        assert _names(plugin.post_auth(_request(emsk=emsk, sid=sid))) == ["Class"]
    finally:
        plugin.close(flush_timeout=10)
    # The writes behind run on several threads, in any order; the awaited one comes last.
    assert sorted(service.nice[:4]) == [("commit", lowered)] * 3 + [("no-emsk", lowered)]
    assert service.nice[4:] == [("commit", base)]
    assert _nice_of_this_thread() == base  # the request's own thread is never touched
    assert plugin.counts == {"sessions_stored": 4, "no_emsk": 1}


def test_write_threads_outside_linux_keep_their_priority_and_say_so_once(
    monkeypatch: pytest.MonkeyPatch, log: Log
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    writers = BehindWriters(2, nice=5)
    done = threading.Event()
    writers.submit(done.set)
    assert done.wait(10) and writers.nice == 0
    assert log.text() == "aaa_fmip: write_behind_nice needs Linux (here: darwin); the writes run at normal priority"
    writers.close()


def test_a_priority_that_cannot_be_lowered_is_one_warning_and_the_writes_still_run(
    monkeypatch: pytest.MonkeyPatch, log: Log
) -> None:
    def refuse(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refuse)
    writers = BehindWriters(4, nice=5)
    ran = threading.Semaphore(0)
    gate = threading.Event()

    def write() -> None:
        gate.wait(10)
        ran.release()

    for _ in range(4):  # four at once: four threads start, each failing to lower its priority
        writers.submit(write)
    gate.set()
    for _ in range(4):
        assert ran.acquire(timeout=10)
    assert log.text() == (
        "aaa_fmip: could not lower the write threads' priority (Operation not permitted); they run at normal priority"
    )
    assert writers.close() == 0


def test_closing_the_writers_drops_what_is_still_queued() -> None:
    writers = BehindWriters(1)
    started, gate = threading.Event(), threading.Event()
    ran: list[int] = []

    def first() -> None:  # occupies the only thread
        started.set()
        gate.wait(10)

    writers.submit(first)
    for i in range(3):
        writers.submit(functools.partial(ran.append, i))
    assert started.wait(10)
    assert writers.close() == 3
    gate.set()
    with pytest.raises(RuntimeError):
        writers.submit(lambda: None)
    assert ran == []


def _names(pairs: tuple[tuple[str, str, str], ...]) -> list[str]:
    return [name for name, _, _ in pairs]


def test_a_hanging_store_is_bounded_and_access_is_not_affected(log: Log) -> None:
    service = BlockingService()
    plugin = _plugin(service, store_timeout=0.05)
    try:
        emsk, sid = _keys()
        # Written behind the reply: post_auth returns while the write is blocked.
        assert _names(plugin.post_auth(_request(emsk=emsk, sid=sid))) == ["Class"]
        assert not service.release.is_set() and plugin.pending == 1
        # Once that write has been pending longer than store_timeout, post-auth waits again (bounded) and
        # pushes nothing without a stored session.
        deadline = time.monotonic() + 5
        while plugin.keeping_up() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not plugin.keeping_up()
        emsk, sid = _keys()
        assert plugin.post_auth(_request(emsk=emsk, sid=sid)) == ()
        assert plugin.pending == 2
        assert plugin.counts == {"ingest_timeout": 1}
        assert "did not finish within 0.05 s" in log.text()
    finally:
        service.release.set()
        assert plugin.flush(10)
        plugin.close()
    assert plugin.counts == {"ingest_timeout": 1, "sessions_stored": 1}


def test_without_write_behind_post_auth_waits_for_the_store_bounded(log: Log) -> None:
    service = BlockingService()
    plugin = _plugin(service, store_timeout=0.05, write_behind=False)
    try:
        emsk, sid = _keys()
        assert plugin.post_auth(_request(emsk=emsk, sid=sid)) == ()
        assert not service.release.is_set() and plugin.pending == 1
        assert plugin.counts == {"ingest_timeout": 1}
        assert "did not finish within 0.05 s" in log.text()
    finally:
        service.release.set()
        plugin.close(flush_timeout=10)


@pytest.mark.parametrize("write_behind", [True, False])
def test_too_many_pending_calls_are_skipped(write_behind: bool) -> None:
    service = BlockingService()
    # Two blocked calls fill the pool's queue; the third waits store_timeout for a free place, then gives up.
    plugin = _plugin(service, store_timeout=0.3, max_pending=2, write_behind=write_behind)
    try:
        for _ in range(3):
            emsk, sid = _keys()
            plugin.post_auth(_request(emsk=emsk, sid=sid))
        if write_behind:
            assert plugin.counts == {"ingest_overload": 1}
        else:
            assert plugin.counts == {"ingest_timeout": 2, "ingest_overload": 1}
        deadline = time.monotonic() + 5
        while service.calls < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.calls == 2
    finally:
        service.release.set()
        plugin.close(flush_timeout=10)


def test_store_errors_are_counted_logged_without_values_and_rate_limited(log: Log) -> None:
    service = BlockingService(StoreUnavailable("redis down"))
    plugin = _plugin(service)
    emsk, sid = _keys()
    # The first write fails behind its reply ...
    assert _names(plugin.post_auth(_request(emsk=emsk, sid=sid))) == ["Class"]
    assert plugin.flush(5)
    assert not plugin.keeping_up()
    # ... from then on post-auth waits for the store and adds nothing while it fails.
    for _ in range(4):
        assert plugin.post_auth(_request(emsk=emsk, sid=sid)) == ()
    assert plugin.counts == {"ingest_error": 5}
    errors = [m for level, m in log.lines if level == "error"]
    assert errors == ["aaa_fmip: ingest failed: StoreUnavailable: redis down"]
    assert emsk.hex() not in log.text() and sid.hex() not in log.text()

    # The store is back: the next write (awaited) succeeds, and the one after is written behind again.
    service.error = None
    service.release.set()
    assert _names(plugin.post_auth(_request(emsk=emsk, sid=sid))) == ["Class"]
    assert plugin.keeping_up() and plugin.counts["sessions_stored"] == 1
    assert _names(plugin.post_auth(_request(emsk=emsk, sid=sid))) == ["Class"]
    assert plugin.flush(5)
    assert plugin.counts == {"ingest_error": 5, "sessions_stored": 2}
    plugin.close()


def test_close_lets_pending_writes_finish_within_its_bound(log: Log) -> None:
    service = BlockingService()
    plugin = _plugin(service, store_timeout=10)
    for _ in range(3):
        emsk, sid = _keys()
        plugin.post_auth(_request(emsk=emsk, sid=sid))
    assert plugin.pending == 3
    # Blocked writes: close waits its bound, then drops them, counted and logged.
    assert plugin.close(flush_timeout=0.05) == 3
    assert plugin.counts == {"dropped_on_close": 3}
    assert "3 store calls still pending at shutdown were dropped" in log.text()
    service.release.set()


def test_close_flushes_the_writes_behind(runtime: Runtime) -> None:
    plugin = _plugin(runtime.service, callers=runtime.callers)
    names = []
    for _ in range(10):
        emsk, sid = _keys()
        plugin.post_auth(_request(emsk=emsk, sid=sid))
        names.append(mn.derive_master_key(emsk=emsk, eap_session_id=sid).hmk_name)
    assert plugin.close(flush_timeout=10) == 0
    assert all(runtime.store.get_session(name) is not None for name in names)
    assert plugin.counts == {"sessions_stored": 10, "keys_pushed": 10}


def test_the_freeradius_log_handler_limits_keyed_lines_redacts_and_never_raises() -> None:
    now = [0.0]
    lines: list[tuple[int, str]] = []
    handler = RadlogHandler(lambda level, message: lines.append((level, message)), LEVELS, clock=lambda: now[0])
    logger = logging.getLogger(f"aaa_fmip.test.radlog{secrets.token_hex(4)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for i in range(3):  # one line a key every 10 s; the next one says how many were left out
        logger.error("ingest failed: %d", i, extra={RATE_KEY: "ingest-x"})
    logger.error("revoke failed", extra={RATE_KEY: "revoke-x"})  # another key: its own allowance
    logger.info("ready")
    logger.info("ready")  # lines without a key are never limited
    now[0] = 11
    logger.error("ingest failed: %d", 3, extra={RATE_KEY: "ingest-x"})
    key = secrets.token_bytes(32).hex()
    logger.debug("session stored: HMK-Name %s, a key by mistake %s", "0123456789abcdef", key)
    try:
        raise ValueError(f"a library quoting {key}")
    except ValueError:
        logger.exception("store call failed")
    assert lines == [
        (4, "aaa_fmip: ingest failed: 0"),
        (4, "aaa_fmip: revoke failed"),
        (3, "aaa_fmip: ready"),
        (3, "aaa_fmip: ready"),
        (4, "aaa_fmip: ingest failed: 3 (2 more like this since the last report)"),
        (1, "aaa_fmip: session stored: HMK-Name 0123456789abcdef, a key by mistake <redacted>"),
        (4, "aaa_fmip: store call failed (ValueError)"),
    ]

    def broken(level: int, message: str) -> None:
        raise OSError("radlog gone")

    logger.removeHandler(handler)
    logger.addHandler(RadlogHandler(broken, LEVELS))
    logger.error("lost, but no exception")  # a failing radlog loses the line, never the request


@pytest.mark.parametrize("p", [None, 42, "x", {"request": "nonsense"}, {"reply": (("EAP-EMSK", "0xzz"),)}])
def test_post_auth_never_raises(p: object) -> None:
    plugin = _plugin(BlockingService())
    assert plugin.post_auth(p) == ()
    assert plugin.accounting(p) is None
    plugin.close()


def test_no_emsk_is_audited(runtime: Runtime) -> None:
    plugin = _plugin(runtime.service)
    lists = _request()
    lists["request"] = (*lists["request"][:-1], ("EAP-Message", "0x02d2000b3403aabbccddee"))
    assert plugin.post_auth(lists) == ()
    assert plugin.flush(5)  # the audit entry is written behind the reply
    assert plugin.counts == {"no_emsk": 1}
    entries, _ = runtime.service.read_audit(Caller("t", "auditor"), event="session.skipped", limit=1000)
    assert any(e.fields.get("method") == "PWD" for e in entries)
    plugin.close()


def test_parallel_post_auth_and_accounting(runtime: Runtime) -> None:
    plugin = _plugin(runtime.service, callers=runtime.callers, store_timeout=5, workers=8)
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
    assert plugin.flush(30)
    assert all(runtime.store.get_session(name) is not None for name in results)
    assert plugin.counts == {"sessions_stored": 128, "keys_pushed": 128}

    # Accounting Stop with the Class of each Access-Accept revokes exactly that session.
    for name, pairs in list(results.items())[:10]:
        class_hex = next(v for n, _, v in pairs if n == "Class")
        assert plugin.accounting({"request": (("Acct-Status-Type", "Stop"), ("Class", class_hex))}) == 1
        assert runtime.store.get_session(name) is None
    plugin.close()


def test_accounting_fallback_by_calling_station_id(runtime: Runtime, tmp_path: Path) -> None:
    plugin = _plugin(runtime.service)
    mac = next_mac()
    emsk, sid = _keys()
    plugin.post_auth(_request(emsk=emsk, sid=sid, mac=mac))
    assert plugin.flush(5)
    stop = {"request": (("Acct-Status-Type", "Stop"), ("Calling-Station-Id", mac.replace(":", "").upper()))}
    assert plugin.accounting(stop) == 1
    assert plugin.accounting({"request": (("Acct-Status-Type", "Start"), ("Calling-Station-Id", mac))}) is None
    plugin.close()


@pytest.mark.parametrize("status", ["Accounting-On", "Accounting-Off", "7", "8"])
def test_accounting_on_or_off_revokes_every_session_of_that_nas_only(runtime: Runtime, status: str) -> None:
    plugin = _plugin(runtime.service)
    restarted, other = f"nas-{secrets.token_hex(4)}", f"nas-{secrets.token_hex(4)}"
    mine = []
    for nas in (restarted, restarted, restarted, other):
        emsk, sid = _keys()
        plugin.post_auth(_request(emsk=emsk, sid=sid, nas_identifier=nas))
        mine.append(mn.derive_master_key(emsk=emsk, eap_session_id=sid).hmk_name)
    assert plugin.flush(5)

    on = {"request": (("Acct-Status-Type", status), ("NAS-Identifier", restarted), ("NAS-IP-Address", "127.0.0.1"))}
    assert plugin.accounting(on) == 3
    assert [runtime.store.get_session(name) is None for name in mine] == [True, True, True, False]
    cause = "accounting-on" if status in ("Accounting-On", "7") else "accounting-off"
    entries, _ = runtime.service.read_audit(Caller("t", "auditor"), event="session.revoked")
    revoked = {e.fields["hmk_name"]: e.fields["cause"] for e in entries}
    assert [revoked.get(name.hex()) for name in mine] == [cause, cause, cause, None]
    assert plugin.accounting(on) == 0  # again (a retransmission): nothing left
    assert plugin.counts["accounting_" + cause.split("-")[1]] == 2
    plugin.close()
