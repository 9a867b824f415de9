"""Two service instances on one 3-node Redis Cluster (each with its own store clients and session cache): an
FBU accepted by one is a retransmission or a replay at the other, a revocation at one rejects at both, and the
audit trail both write stays verifiable (each accepted FBU's entry in the chain of its session's hash slot, the
rest in the main chain: every chain linear), also while both verify at the same time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.model import Caller, FbuVerdict
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.store.redis import RedisStore
from tests.store._topologies import RedisClusterDeployment
from tests.test_fbu_cache import session_request, verify_at_once
from tests.test_service import AAA, AR1, AUDITOR, PAR1, PCOA, Clock, fbu_for, new_mn

AsyncVerify = Callable[..., Coroutine[Any, Any, FbuVerdict]]


@pytest.fixture(params=["blocking", "asyncio"])
def instances(
    request: pytest.FixtureRequest, redis_cluster: RedisClusterDeployment, kek_ring: KekRing
) -> Iterator[tuple[HandoverKeyService, HandoverKeyService]]:
    prefix = f"ci{id(request):x}"
    clock = Clock()
    stores = [RedisStore.from_url(redis_cluster.url, kek_ring, prefix=prefix) for _ in range(2)]
    services = [HandoverKeyService(s, clock=clock) for s in stores]
    if request.param == "asyncio":
        for service in services:
            bound = service.verify_fbu_async

            def on_a_loop(
                caller: Caller, bound: AsyncVerify = bound, store: Any = service.store, **kw: Any
            ) -> FbuVerdict:
                async def once() -> FbuVerdict:
                    try:
                        return await bound(caller, **kw)
                    finally:
                        aio = store.aio
                        if aio is not None:
                            await aio.aclose()

                return asyncio.run(once())

            service.verify_fbu = on_a_loop  # type: ignore[method-assign]
    yield services[0], services[1]
    for s in stores:
        s.close()


def _verify(service: HandoverKeyService, node: tuple[bytes, bytes], sequence: int) -> FbuVerdict:
    return service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(*node, PAR1, sequence))


def test_two_instances_on_a_cluster_agree_on_replay_and_revocation(
    instances: tuple[HandoverKeyService, HandoverKeyService],
) -> None:
    a, b = instances
    assert a.store.ops.cluster and b.store.ops.cluster
    node = new_mn()
    info = b.ingest_session(AAA, session_request("alice", node[0], node[1]))
    first = fbu_for(*node, PAR1, 1)
    assert a.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=first).verdict == "accepted"
    assert b.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=first).verdict == "retransmission"
    assert _verify(b, node, 0).reason == "replay"
    assert _verify(a, node, 2).verdict == "accepted"  # both instances hold the session in their caches now
    assert _verify(b, node, 3).verdict == "accepted"
    assert _verify(a, node, 2).reason == "replay"  # older than the 3 accepted at b
    a.revoke_session(AAA, info.hmk_name)
    assert _verify(a, node, 4).reason == "revoked"
    assert _verify(b, node, 5).reason == "revoked"
    entries, _ = a.read_audit(AUDITOR, spi=info.spi, limit=1000)
    fbu = [(e.event, e.fields.get("sequence"), e.fields.get("verdict") or e.fields.get("reason")) for e in entries]
    assert [x for x in fbu if x[0].startswith("fbu.")] == [
        ("fbu.verified", 1, "accepted"),
        ("fbu.verified", 1, "retransmission"),
        ("fbu.rejected", 0, "replay"),
        ("fbu.verified", 2, "accepted"),
        ("fbu.verified", 3, "accepted"),
        ("fbu.rejected", 2, "replay"),
        ("fbu.rejected", 4, "revoked"),
        ("fbu.rejected", 5, "revoked"),
    ]
    check = b.verify_audit(AUDITOR)
    assert check.ok, check.problem


def test_both_instances_at_once_keep_every_chain_linear(
    instances: tuple[HandoverKeyService, HandoverKeyService],
) -> None:
    a, b = instances
    nodes = [new_mn() for _ in range(4)]
    for i, (emsk, sid) in enumerate(nodes):
        a.ingest_session(AAA, session_request(f"u{i}", emsk, sid))
    before = a.verify_audit(AUDITOR)
    results: dict[str, list[str | None]] = {"a": [], "b": []}

    def run(name: str, service: HandoverKeyService, mine: list[tuple[bytes, bytes]]) -> None:
        for sequence in range(1, 16):
            for node in mine:
                results[name].append(_verify(service, node, sequence).verdict)

    threads = [
        threading.Thread(target=run, args=("a", a, nodes[:2])),
        threading.Thread(target=run, args=("b", b, nodes[2:])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert results["a"] == ["accepted"] * 30 and results["b"] == ["accepted"] * 30
    after = a.verify_audit(AUDITOR)
    assert after.ok, after.problem
    assert after.entries == before.entries + 60  # one entry per verification, each at its own position


@pytest.mark.parametrize("slot_chains", [False, True])
def test_verifications_at_once_on_a_cluster_go_together_and_each_keeps_its_entry(
    redis_cluster: RedisClusterDeployment, kek_ring: KekRing, slot_chains: bool
) -> None:
    """Verifications waiting on one event loop send their scripts in one Cluster pipeline (their sessions on all
    three nodes): without slot chains the liveness-and-replay scripts, whose entries follow in the main chain;
    with them, scripts that write an accepted verdict's entry in its slot chain too. Each verdict is its own, a
    revoked session among them is rejected, and every verdict has exactly one entry in a verifiable trail."""
    store = RedisStore.from_url(
        redis_cluster.url, kek_ring, prefix=f"cb{id(kek_ring):x}{int(slot_chains)}", slot_chains=slot_chains
    )
    service = HandoverKeyService(store, clock=Clock())
    try:
        nodes = [new_mn() for _ in range(9)]
        infos = [service.ingest_session(AAA, session_request(f"u{i}", e, s)) for i, (e, s) in enumerate(nodes)]
        for node in nodes:  # cache every session
            assert _verify(service, node, 1).verdict == "accepted"
        service.revoke_session(AAA, infos[8].hmk_name)
        plan = [(n, 2, "accepted") for n in range(8)] + [(0, 2, "retransmission"), (1, 1, "replay"), (8, 2, "revoked")]
        plan += [(n, 3, "accepted") for n in range(8)]
        sent: list[int] = []
        ops = store.ops
        name = "verify_commit_many" if slot_chains else "verify_slot_many"
        many = getattr(ops, name)

        def counting(commits: Any) -> Any:
            sent.append(len(commits))
            return many(commits)

        setattr(ops, name, counting)

        verdicts = verify_at_once(service, [fbu_for(*nodes[n], PAR1, q) for n, q, _ in plan])
        assert [v.verdict if v.valid else v.reason for v in verdicts] == [want for _, _, want in plan]
        # batched, one commit each (the revoked one finds its record gone)
        assert max(sent) > 1 and sum(sent) == len(plan)
        entries, _ = service.read_audit(AUDITOR, limit=1000)
        assert len([e for e in entries if e.event.startswith("fbu.")]) == 9 + len(plan)
        check = service.verify_audit(AUDITOR)
        assert check.ok, check.problem
    finally:
        store.close()
