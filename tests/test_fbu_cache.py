"""FBU verification with the session cache, against a real redis-server: two service instances (each with its
own store clients and cache) on one Redis; a revocation or a replacement at one is seen by the other's next FBU;
a cached session costs one Redis call per FBU; an authenticator of no supported length is reported as such."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis

from aaa_fmip import mn
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, KekRing
from aaa_fmip.errors import DecodeError
from aaa_fmip.model import Caller, EapKeys, FbuVerdict, SessionRequest
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.service.cache import SessionCache
from aaa_fmip.store.redis import RedisStore
from aaa_fmip.wire import mh as mhwire
from tests.support.redis_server import RedisServer
from tests.test_service import AAA, AR1, AUDITOR, NCOA, PAR1, PCOA, Clock, fbu_for, new_mn

Verify = Callable[..., FbuVerdict]


def session_request(user: str, emsk: bytes, sid: bytes, *, lifetime: int | None = None) -> SessionRequest:
    """An EAP session as the AAA server hands it over (RFC 5295 keys)."""
    if lifetime is None:
        return SessionRequest(user_name=user, keys=EapKeys(SecretBytes(emsk), sid))
    return SessionRequest(user_name=user, keys=EapKeys(SecretBytes(emsk), sid), lifetime=lifetime)


AsyncVerify = Callable[..., Coroutine[Any, Any, FbuVerdict]]


@pytest.fixture
def ring() -> KekRing:
    return KekRing(Kek("k1", SecretBytes(os.urandom(32))))


@pytest.fixture
def prefix() -> str:
    return f"c{os.urandom(4).hex()}"


@pytest.fixture(params=["blocking", "asyncio"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def instances(
    redis_server: RedisServer, ring: KekRing, prefix: str, driver: str
) -> Iterator[tuple[HandoverKeyService, HandoverKeyService]]:
    """Two instances of the service on one Redis: separate store clients, separate caches, one clock."""
    clock = Clock()
    stores = [RedisStore.from_url(redis_server.url, ring, prefix=prefix) for _ in range(2)]
    services = tuple(HandoverKeyService(s, clock=clock) for s in stores)
    if driver == "asyncio":
        for service in services:
            bound = service.verify_fbu_async

            def on_a_loop(caller: Caller, bound: AsyncVerify = bound, **kw: Any) -> FbuVerdict:
                return asyncio.run(bound(caller, **kw))

            service.verify_fbu = on_a_loop  # type: ignore[method-assign]
    yield services[0], services[1]
    for s in stores:
        s.close()


def test_revocation_at_one_instance_rejects_the_next_fbu_at_a_cached_other(
    instances: tuple[HandoverKeyService, HandoverKeyService],
) -> None:
    a, b = instances
    emsk, sid = new_mn()
    info = b.ingest_session(AAA, session_request("alice", emsk, sid))
    first = a.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 1))
    assert first.verdict == "accepted"
    assert a.session_cache.get(info.spi, a.clock()) is not None  # a holds the session now
    b.revoke_session(AAA, info.hmk_name)
    after = a.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 2))
    assert (after.valid, after.reason) == (False, "revoked")
    assert a.session_cache.get(info.spi, a.clock()) is None
    entries, _ = a.read_audit(AUDITOR, spi=info.spi)
    assert [(e.event, e.fields.get("verdict"), e.fields.get("reason")) for e in entries] == [
        ("session.created", None, None),
        ("fbu.verified", "accepted", None),
        ("session.revoked", None, None),
        ("fbu.rejected", None, "revoked"),
    ]
    assert a.verify_audit(AUDITOR).ok


def test_a_replaced_session_is_read_again(instances: tuple[HandoverKeyService, HandoverKeyService]) -> None:
    a, b = instances
    emsk, sid = new_mn()
    b.ingest_session(AAA, session_request("alice", emsk, sid, lifetime=3600))
    assert a.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 1)).verdict == "accepted"
    # the same EAP session ingested again, with a shorter lifetime: a's cached record is no longer the stored one
    b.ingest_session(AAA, session_request("alice", emsk, sid, lifetime=40))
    v = a.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 2))
    assert v.verdict == "accepted"
    assert v.lifetime == 40  # from the record read again, not the cached one (an hour)


def test_the_other_instance_sees_a_retransmission_and_a_replay(
    instances: tuple[HandoverKeyService, HandoverKeyService],
) -> None:
    a, b = instances
    emsk, sid = new_mn()
    b.ingest_session(AAA, session_request("alice", emsk, sid))
    fbu7 = fbu_for(emsk, sid, PAR1, 7)
    assert a.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu7).verdict == "accepted"
    assert b.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu7).verdict == "retransmission"
    old = b.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 6))
    assert (old.valid, old.reason) == (False, "replay")
    assert a.verify_audit(AUDITOR).ok


def _sent_by_clients(url: str, action: Callable[[], object]) -> list[str]:
    """The commands clients sent to the server while ``action`` ran (MONITOR, names; a script's own calls left
    out)."""
    return [command.split()[0].upper() for command in _commands_sent(url, action)]


def _commands_sent(url: str, action: Callable[[], object]) -> list[str]:
    """The commands clients sent to the server while ``action`` ran, as MONITOR shows them (a script's own calls
    left out)."""
    marker = f"end-{os.urandom(4).hex()}"
    seen: list[str] = []
    client, other = redis.Redis.from_url(url), redis.Redis.from_url(url)
    other.ping()  # connected before the monitor starts
    with client.monitor() as monitor:
        action()
        other.echo(marker)
        while True:
            command = monitor.next_command()
            if marker in command["command"]:
                client.close()
                other.close()
                return seen
            if command.get("client_type") != "lua":
                seen.append(command["command"])


def test_a_cached_session_costs_one_redis_call_when_accepted(
    redis_server: RedisServer, ring: KekRing, prefix: str
) -> None:
    store = RedisStore.from_url(redis_server.url, ring, prefix=prefix)
    service = HandoverKeyService(store, clock=Clock())
    try:
        emsk, sid = new_mn()
        service.ingest_session(AAA, session_request("alice", emsk, sid))
        assert service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 1)).valid
        fbu = fbu_for(emsk, sid, PAR1, 2)
        verdicts: list[FbuVerdict] = []

        def verify() -> None:
            verdicts.append(service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu))

        sent = _commands_sent(redis_server.url, verify)
        assert [v.verdict for v in verdicts] == ["accepted"]
        assert [c.split()[0].upper() for c in sent] == ["EVALSHA"]
        # only the accepted verdict's entry travels: no MACed alternative of it for a reader of MONITOR to swap in
        assert "fbu.verified" in sent[0] and "fbu.rejected" not in sent[0] and "retransmission" not in sent[0]
        entries, _ = service.read_audit(AUDITOR, event="fbu.verified")
        assert [e.fields["sequence"] for e in entries] == [1, 2]  # the verdict's entry came with that one call
        # a verdict other than accepted writes nothing in that script; its entry follows (and is there)
        assert _sent_by_clients(redis_server.url, verify) == ["EVALSHA", "EVALSHA"]
        assert [v.verdict for v in verdicts] == ["accepted", "retransmission"]
        entries, _ = service.read_audit(AUDITOR, event="fbu.verified")
        assert [(e.fields["sequence"], e.fields["verdict"]) for e in entries][-1] == (2, "retransmission")
        assert service.verify_audit(AUDITOR).ok
    finally:
        store.close()


def test_without_the_cache_every_fbu_reads_the_session(redis_server: RedisServer, ring: KekRing, prefix: str) -> None:
    store = RedisStore.from_url(redis_server.url, ring, prefix=prefix)
    service = HandoverKeyService(store, clock=Clock(), session_cache=SessionCache(size=0))
    try:
        emsk, sid = new_mn()
        info = service.ingest_session(AAA, session_request("alice", emsk, sid))
        for seq in (1, 2):
            assert service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, seq)).valid
        assert service.session_cache.get(info.spi, service.clock()) is None
    finally:
        store.close()


def test_an_authenticator_of_no_supported_length_is_reported_as_such(
    instances: tuple[HandoverKeyService, HandoverKeyService],
) -> None:
    a, b = instances
    emsk, sid = new_mn()
    info = b.ingest_session(AAA, session_request("alice", emsk, sid))
    badf = mhwire.BindingAuthorizationDataForFMIPv6(info.spi, os.urandom(20))
    message = mhwire.FBU(3, 15, (mhwire.AlternateCareOfAddress(NCOA), badf))
    raw = mhwire.encode_mh(message, source=PCOA, destination=PAR1)
    v = a.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=raw)
    assert (v.valid, v.reason) == (False, "bad-authenticator-length")
    # the FBU built properly still verifies: the rejected one consumed no sequence number
    assert a.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 3)).verdict == "accepted"
    entries, _ = a.read_audit(AUDITOR, event="fbu.rejected", spi=info.spi)
    assert [e.fields["reason"] for e in entries] == ["bad-authenticator-length"]


def test_badf_input_of_a_decoded_message_is_badf_input() -> None:
    emsk, sid = new_mn()
    raw = fbu_for(emsk, sid, PAR1, 9)
    message = mhwire.decode_mh(raw, source=PCOA, destination=PAR1)
    assert mhwire.badf_input_of(raw, message) == mhwire.badf_input(raw)
    unauthenticated = mhwire.encode_mh(mhwire.FBU(1, 1, ()), source=PCOA, destination=PAR1)
    with pytest.raises(DecodeError):
        mhwire.badf_input_of(unauthenticated, mhwire.decode_mh(unauthenticated))
    assert mn  # the mobile node's builder is what fbu_for uses


def verify_at_once(service: HandoverKeyService, fbus: list[bytes]) -> list[FbuVerdict]:
    """Verify ``fbus`` (for PAR1, from AR1) concurrently on one event loop, so that they go to Redis together."""

    async def all_at_once() -> list[FbuVerdict]:
        calls = [service.verify_fbu_async(AR1, source=PCOA, destination=PAR1, mh=fbu) for fbu in fbus]
        out = await asyncio.gather(*calls)
        aio = service.store.aio
        assert aio is not None
        await aio.aclose()
        return list(out)

    return asyncio.run(all_at_once())


def test_verifications_committed_together_keep_one_entry_each_and_a_linear_chain(
    redis_server: RedisServer, ring: KekRing, prefix: str
) -> None:
    """Many verifications on one event loop go to Redis together (chained speculatively on "accepted"); a
    retransmission, a replay and a revoked session among them make the rest of the batch go again."""
    store = RedisStore.from_url(redis_server.url, ring, prefix=prefix)
    service = HandoverKeyService(store, clock=Clock())
    try:
        nodes = [new_mn() for _ in range(6)]
        infos = [service.ingest_session(AAA, session_request(f"u{i}", e, s)) for i, (e, s) in enumerate(nodes)]
        for emsk, sid in nodes:  # cache every session
            assert service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 1)).valid
        service.revoke_session(AAA, infos[5].hmk_name)
        plan: list[tuple[int, int, str]] = []  # (node, sequence, expected verdict or reason)
        for seq in (2, 3):
            plan += [(n, seq, "accepted") for n in range(5)]
        plan.insert(3, (0, 1, "replay"))  # an old sequence of node 0: its 2 is in the same batch, earlier
        plan.insert(7, (1, 2, "retransmission"))
        plan.append((5, 2, "revoked"))
        verdicts = verify_at_once(service, [fbu_for(*nodes[n], PAR1, q) for n, q, _ in plan])
        assert [v.verdict if v.valid else v.reason for v in verdicts] == [want for _, _, want in plan]
        entries, _ = service.read_audit(AUDITOR, limit=1000)
        fbu_entries = [e for e in entries if e.event.startswith("fbu.")]
        assert len(fbu_entries) == 6 + len(plan)  # one entry per verification, no more, no fewer
        assert [e.n for e in entries] == list(range(1, len(entries) + 1))
        assert service.verify_audit(AUDITOR).ok
    finally:
        store.close()


def test_verifications_committed_together_go_by_digest(redis_server: RedisServer, ring: KekRing, prefix: str) -> None:
    """A group commit sends its scripts by digest (EVALSHA: no script text for Redis to hash per FBU); what a
    server that has forgotten the script does is tests/store/test_async_ops.py's."""
    store = RedisStore.from_url(redis_server.url, ring, prefix=prefix)
    service = HandoverKeyService(store, clock=Clock())
    try:
        nodes = [new_mn() for _ in range(6)]
        for i, (emsk, sid) in enumerate(nodes):
            service.ingest_session(AAA, session_request(f"u{i}", emsk, sid))
            assert service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 1)).valid

        async def all_at_once(sequence: int) -> list[FbuVerdict]:
            calls = [
                service.verify_fbu_async(AR1, source=PCOA, destination=PAR1, mh=fbu_for(e, s, PAR1, sequence))
                for e, s in nodes
            ]
            return list(await asyncio.gather(*calls))

        async def batches() -> tuple[list[FbuVerdict], list[str], list[FbuVerdict]]:
            first = await all_at_once(2)  # the script is known to Redis, the client connected
            loop = asyncio.get_running_loop()
            box: list[list[FbuVerdict]] = []

            def run_batch() -> None:
                box.append(asyncio.run_coroutine_threadsafe(all_at_once(3), loop).result(timeout=10))

            sent = await asyncio.to_thread(_sent_by_clients, redis_server.url, run_batch)
            aio = store.aio
            assert aio is not None
            await aio.aclose()
            return first, sent, box[0]

        first, sent, second = asyncio.run(batches())
        assert [v.verdict for v in first + second] == ["accepted"] * 12
        assert sent == ["EVALSHA"] * 6  # one alone (nothing waited), then the five that queued meanwhile
        entries, _ = service.read_audit(AUDITOR, event="fbu.verified", limit=1000)
        assert sorted(e.fields["sequence"] for e in entries) == [1] * 6 + [2] * 6 + [3] * 6
        assert service.verify_audit(AUDITOR).ok
    finally:
        store.close()
