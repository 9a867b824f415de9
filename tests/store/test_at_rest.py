"""A dump of Redis reveals no HMK and no HK: in any encoding, in any key, nor in the persistence files."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import redis

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.store.embedded import start_embedded
from aaa_fmip.store.redis import RedisStore
from tests.store import _records as rec
from tests.store.conftest import StoreFactory
from tests.support.redis_server import RedisServer


def encodings(secret: SecretBytes) -> list[bytes]:
    """The octets, and the text forms a careless encoder would produce (whole and a 16-octet piece)."""
    raw = secret.reveal()
    out = []
    for piece in (raw, raw[8:24]):
        out += [piece, piece.hex().encode(), piece.hex().upper().encode()]
    out += [base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
    return out


def populate(store: RedisStore) -> list[SecretBytes]:
    now = time.time()
    secrets_written: list[SecretBytes] = []
    for i in range(5):
        s = rec.session(now=now, mac=rec.mac(), external_ids=(f"user:{i}",))
        store.put_session(s, now=now)
        store.check_replay(s.hmk_name, b"\x02" * 16, i, b"auth", ttl=60)
        store.append_audit("session.ingested", {"spi": s.spi, "hmk_name": s.hmk_name.hex()}, at=now)
        secrets_written.append(s.hmk)
    for _ in range(3):
        k = rec.send_key(now=now)
        store.put_send_key(k, now=now)
        secrets_written.append(k.hk)
    doomed = rec.session(now=now)
    store.put_session(doomed, now=now)
    store.delete_session(doomed.hmk_name, now=now)
    secrets_written.append(doomed.hmk)
    return secrets_written


def dump_all(client: Any) -> bytes:
    """Every key name and its serialised value (DUMP), plus a readable rendering of each value."""
    out: list[bytes] = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        out.append(client.dump(key) or b"")
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out += [x for kv in client.hgetall(key).items() for x in kv]
        elif kind == b"zset":
            out += client.zrange(key, 0, -1)
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"stream":
            for _id, fields in client.xrange(key):
                out += [x for kv in fields.items() for x in kv]
    return b"\n".join(out)


def test_redis_dump_has_no_key_material(private_redis: RedisServer, make_store: StoreFactory) -> None:
    store = make_store(private_redis.url)
    written = populate(store)
    blob = dump_all(redis.Redis.from_url(private_redis.url))
    assert store.prefix.encode() in blob  # the dump is not empty
    for secret in written:
        for form in encodings(secret):
            assert form not in blob


def test_persistence_files_have_no_key_material(tmp_path: Path, make_store: StoreFactory) -> None:
    server = start_embedded(tmp_path / "data")
    try:
        store = make_store(server.url)
        written = populate(store)
        raw = redis.Redis.from_url(server.url)
        raw.save()
        dump = dump_all(raw)
        store.close()
        raw.close()
    finally:
        server.stop()
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and p.name != "kek"]
    assert any(p.suffix == ".rdb" for p in files) and any("aof" in p.name for p in files)
    on_disk = b"".join(p.read_bytes() for p in files) + dump
    for secret in written:
        for form in encodings(secret):
            assert form not in on_disk
