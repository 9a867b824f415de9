"""The rlm_python3 entry points, called in-process the way FreeRADIUS calls them (the radiusd stand-in)."""

from __future__ import annotations

import gc
import logging
import math
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip import mn
from aaa_fmip.radius import freeradius_module as module
from tests.radius._stack import AR_NAS_IDENTIFIER, StackConfig, next_mac, wait_for_session
from tests.support.redis_server import RedisServer

radiusd: Any = module.radiusd  # type: ignore[attr-defined]  # the stand-in outside FreeRADIUS


@pytest.fixture
def fresh_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module.detach()
    monkeypatch.setattr(module, "_last_attempt", -math.inf)
    monkeypatch.setattr(radiusd, "config", {}, raising=False)
    yield
    module.detach()
    gc.unfreeze()


def _lists(emsk: bytes, sid: bytes) -> dict[str, object]:
    return {
        "request": (
            ("User-Name", "alice"),
            ("Calling-Station-Id", next_mac()),
            ("NAS-Identifier", AR_NAS_IDENTIFIER),
            ("NAS-IP-Address", "127.0.0.1"),
            ("EAP-Message", "0x0201000d"),
        ),
        "reply": (("EAP-EMSK", "0x" + emsk.hex()), ("EAP-Session-Id", "0x" + sid.hex())),
        "config": None,
        "session-state": None,
        "proxy-request": None,
        "proxy-reply": None,
    }


def test_lifecycle_with_the_config_from_the_module_section(
    fresh_module: None, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = StackConfig(tmp_path, redis_server.url)
    path = config.write()
    monkeypatch.setattr(radiusd, "config", {"config_file": str(path)}, raising=False)
    gc.unfreeze()
    assert module.instantiate(None) == radiusd.RLM_MODULE_OK
    # Everything loaded is out of the cyclic collector's full passes (see _ensure_plugin).
    assert gc.get_freeze_count() > 1000
    emsk, sid = secrets.token_bytes(64), b"\x0d" + secrets.token_bytes(64)
    code, update = module.post_auth(_lists(emsk, sid))
    assert code == radiusd.RLM_MODULE_UPDATED
    names = [pair[0] for pair in update["reply"]]
    assert names[0] == "Class" and "AAA-FMIP-HK" in names
    class_hex = update["reply"][0][2]
    runtime = config.runtime()
    try:
        name = mn.derive_master_key(emsk=emsk, eap_session_id=sid).hmk_name
        assert wait_for_session(runtime.store, name) is not None  # written behind the reply
        stop = {"request": (("Acct-Status-Type", "Stop"), ("Class", class_hex))}
        assert module.accounting(stop) == radiusd.RLM_MODULE_NOOP
        assert runtime.store.get_session(name) is None
    finally:
        runtime.close()
    assert module.detach() == radiusd.RLM_MODULE_OK


def test_config_from_the_environment(
    fresh_module: None, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = StackConfig(tmp_path, redis_server.url).write()
    monkeypatch.setenv("AAA_FMIP_CONFIG", str(path))
    module.instantiate(None)
    result = module.post_auth(_lists(secrets.token_bytes(64), b"\x0d" + secrets.token_bytes(64)))
    assert isinstance(result, tuple) and result[0] == radiusd.RLM_MODULE_UPDATED


def test_a_broken_configuration_never_rejects(
    fresh_module: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nurl = "ftp://nope"\n')
    monkeypatch.setattr(radiusd, "config", {"config_file": str(bad)}, raising=False)
    gc.unfreeze()
    assert module.instantiate(None) == radiusd.RLM_MODULE_OK
    assert gc.get_freeze_count() == 0  # nothing built, nothing frozen
    assert module.post_auth(_lists(secrets.token_bytes(64), b"\x0d" + secrets.token_bytes(64))) == (
        radiusd.RLM_MODULE_NOOP
    )
    assert module.accounting({"request": (("Acct-Status-Type", "Stop"),)}) == radiusd.RLM_MODULE_NOOP
    err = capsys.readouterr().err
    assert "aaa_fmip: not active (store.url: " in err and "authentication continues" in err


def test_every_line_goes_to_radlog_while_the_module_is_loaded(
    fresh_module: None, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[tuple[int, str]] = []
    monkeypatch.setattr(radiusd, "radlog", lambda level, message: lines.append((level, message)))
    path = StackConfig(tmp_path, redis_server.url).write()
    monkeypatch.setattr(radiusd, "config", {"config_file": str(path)}, raising=False)
    root = logging.getLogger("aaa_fmip")
    level_before = root.level
    assert module.instantiate(None) == radiusd.RLM_MODULE_OK
    ready = [(level, m) for level, m in lines if m.startswith("aaa_fmip: ready (store redis, 2 access routers, ")]
    assert [level for level, _ in ready] == [radiusd.L_INFO], lines
    emsk, sid = secrets.token_bytes(64), b"\x0d" + secrets.token_bytes(64)
    module.post_auth(_lists(emsk, sid))
    logging.getLogger("aaa_fmip.store").warning("a line of the store, with %s", "0x" + emsk.hex())
    assert module.detach() == radiusd.RLM_MODULE_OK
    name = mn.derive_master_key(emsk=emsk, eap_session_id=sid).hmk_name
    assert (radiusd.L_DBG, f"aaa_fmip: session stored: HMK-Name {name.hex()} SPI ") in [
        (level, message.rsplit(" ", 1)[0] + " ") for level, message in lines
    ]
    assert (radiusd.L_WARN, "aaa_fmip: a line of the store, with <redacted>") in lines
    assert (radiusd.L_INFO, "aaa_fmip: detaching: keys_pushed=1, sessions_stored=1") in lines
    assert all(emsk.hex() not in message for _, message in lines)
    # Detached: the handler is gone and the logger's level is what it was.
    count = len(lines)
    logging.getLogger("aaa_fmip.radius.plugin").error("after detach")
    assert len(lines) == count and root.level == level_before


def test_prepend_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    path = ["/a", "/usr/lib/python3/dist-packages", "/mine", "/other"]
    monkeypatch.setattr(sys, "path", list(path))
    module._prepend_sys_path({"prepend_sys_path": "/mine:/new"})
    assert sys.path == ["/mine", "/new", "/a", "/usr/lib/python3/dist-packages", "/other"]
