"""The Redis ACL user of docs/configuration.md ("A Redis user with only the commands the service uses") is enough:
the exact line from the docs is applied to a real redis-server and every store operation runs through it, with
no denial in Redis's ACL LOG."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import tempfile
import time
from pathlib import Path

import pytest
import redis

from aaa_fmip import keys, mn
from aaa_fmip.audit_export import AuditExporter, JsonLinesSink
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import ReplayNotReplicated
from aaa_fmip.model import AccessRouter, Caller, EapKeys, SessionRequest
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.store.durability import ReplayDurabilityPolicy
from aaa_fmip.store.redis import RedisStore
from tests.store import _records
from tests.store._topologies import RedisClusterDeployment
from tests.support.redis_server import RedisServer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
PASSWORD = "s3cret-" + os.urandom(6).hex()
IP = ipaddress.IPv6Address
PAR = IP("2001:db8:1::1")
PCOA = IP("2001:db8:1::100")
NCOA = IP("2001:db8:2::100")
AAA = Caller("radius", "aaa")
AUDITOR = Caller("auditor", "auditor")
AR = Caller("ar1", "ar", AccessRouter("ar1", frozenset({PAR})))


def documented_acl(*extra: str) -> list[str]:
    """The ``ACL SETUSER`` line of the docs, as arguments, with a real password."""
    line = next(ln.strip() for ln in DOCS.read_text().splitlines() if ln.strip().startswith("ACL SETUSER aaa-fmip"))
    args = line.split()[3:]
    assert "~fmip:*" in args and "-@all" in args
    return [f">{PASSWORD}" if a == ">CHANGE-ME" else a for a in args] + list(extra)


def exercise(store: RedisStore) -> None:
    """Every kind of store call the service makes, through the service where it can."""
    service = HandoverKeyService(store)
    service.ready()  # raises unless Redis answers and would keep replay state
    emsk, sid = os.urandom(64), b"\x0d" + os.urandom(64)
    info = service.ingest_session(
        AAA,
        SessionRequest(
            user_name="alice",
            keys=EapKeys(SecretBytes(emsk), sid),
            calling_station_id="02-00-00-00-00-01",
            external_ids=("radius-class:x",),
            push_to=(AR, PAR),
        ),
    )
    assert service.handover_key(AR, ar_address=PAR, spi=info.spi).spi == info.spi
    assert service.handover_key(AR, ar_address=PAR, calling_station_id="02:00:00:00:00:01").spi == info.spi
    master = keys.derive_hmk(emsk, sid)
    hk = keys.derive_hk(master.hmk, master.hmk_name, PAR, master.spi)

    def fbu(seq: int) -> bytes:
        return mn.build_fbu(hk, sequence=seq, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR)

    assert service.verify_fbu(AR, source=PCOA, destination=PAR, mh=fbu(1)).verdict == "accepted"
    aio = store.aio
    assert aio is not None

    async def on_loop() -> str | None:
        try:
            verdict = await service.verify_fbu_async(AR, source=PCOA, destination=PAR, mh=fbu(2))
            return verdict.verdict
        finally:
            await aio.aclose()

    assert asyncio.run(on_loop()) == "accepted"
    assert service.live_sessions() >= 1
    service.revoke_session(AAA, master.hmk_name)
    assert service.verify_fbu(AR, source=PCOA, destination=PAR, mh=fbu(3)).reason == "revoked"
    other = service.ingest_session(
        AAA,
        SessionRequest(
            user_name="bob",
            keys=EapKeys(SecretBytes(os.urandom(64)), b"\x0d" + os.urandom(64)),
            calling_station_id="m2",
        ),
    )
    assert service.revoke_matching(AAA, calling_station_id="m2") == 1
    assert store.find_by_external_id("radius-class:x") == []
    assert other.spi
    entries, _ = service.read_audit(AUDITOR, limit=50)
    assert {e.event for e in entries} >= {"session.created", "hk.issued", "fbu.verified", "session.revoked"}
    assert service.verify_audit(AUDITOR).ok
    cp = store.checkpoint(now=time.time())  # with slot chains it seals them first
    assert store.verify_audit(cp).checkpoint == "matches"
    with tempfile.TemporaryDirectory() as tmp:
        exporter = AuditExporter(store, [JsonLinesSink(Path(tmp) / "audit.jsonl")], clock=time.time)
        assert exporter.export_once() >= len(entries)
    # RFC 5269 SEND keys and nonces: the store calls send_handover_key makes
    record = _records.send_key()
    token = store.lock_send_key(record.key_hash, ttl=2)
    assert token is not None
    store.put_send_key(record, now=time.time())
    store.unlock_send_key(record.key_hash, token)
    assert store.get_send_key_by_cga(record.cga) is not None
    assert store.get_send_key_by_key_hash(record.key_hash) is not None
    assert store.remember_nonce(record.cga.packed, b"n1", ttl=5)
    assert not store.remember_nonce(record.cga.packed, b"n1", ttl=5)
    assert store.check_replay(record.cga.packed, b"ar", 1, b"x", ttl=5) == "accepted"


@pytest.mark.parametrize("slot_chains", [False, True])
def test_the_documented_acl_user_runs_the_service(tmp_path: Path, kek_ring: KekRing, slot_chains: bool) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        admin = redis.Redis(port=server.port)
        admin.execute_command("ACL", "SETUSER", "aaa-fmip", *documented_acl())
        admin.execute_command("ACL", "LOG", "RESET")
        url = f"redis://aaa-fmip:{PASSWORD}@127.0.0.1:{server.port}/0"
        store = RedisStore.from_url(
            url, kek_ring, prefix="fmip", replay_policy=ReplayDurabilityPolicy(), slot_chains=slot_chains
        )
        try:
            exercise(store)
            report = store.check_durability()
            assert report is not None and report.durable  # CONFIG GET allowed: the fsync policy is known
        finally:
            store.close()
        waiting = RedisStore.from_url(
            url, kek_ring, prefix="fmip", replay_policy=ReplayDurabilityPolicy(wait_replicas=1, wait_timeout_ms=20)
        )
        with pytest.raises(ReplayNotReplicated):  # WAIT itself is permitted (no replica here to acknowledge)
            waiting.check_replay(b"\x02" * 8, b"ar", 1, b"x", ttl=5)
        waiting.close()
        denied = admin.execute_command("ACL", "LOG")
        assert denied == [], denied
        # and the user is confined: another prefix, or a command it does not need, is refused
        confined = redis.Redis(port=server.port, username="aaa-fmip", password=PASSWORD)
        with pytest.raises(redis.exceptions.NoPermissionError):
            confined.get("other:key")
        with pytest.raises(redis.exceptions.NoPermissionError):
            confined.flushall()
        confined.close()
        admin.close()
    finally:
        server.stop()


def test_the_documented_acl_user_runs_on_a_cluster(redis_cluster: RedisClusterDeployment, kek_ring: KekRing) -> None:
    extra = re.search(r"`(\+cluster\|slots[^`]*)`", DOCS.read_text())
    assert extra is not None
    admins = [redis.Redis(port=p) for p in redis_cluster.ports]
    for admin in admins:
        admin.execute_command("ACL", "SETUSER", "aaa-fmip", *documented_acl(*extra.group(1).split()))
        admin.execute_command("ACL", "LOG", "RESET")
    url = redis_cluster.url.replace("redis+cluster://", f"redis+cluster://aaa-fmip:{PASSWORD}@")
    store = RedisStore.from_url(url, kek_ring, prefix="fmip", replay_policy=ReplayDurabilityPolicy())
    try:
        exercise(store)
    finally:
        store.close()
        for admin in admins:
            denied = admin.execute_command("ACL", "LOG")
            admin.execute_command("ACL", "DELUSER", "aaa-fmip")
            admin.close()
            assert denied == [], denied
