"""The router's key cache and verifier: in memory, and against a real key service (serve + redis-server)."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.radius.ar import PushedHandoverKey
from aaa_fmip.router.keycache import HandoverKeyCache, RestKeyService, Verifier
from aaa_fmip.router.verify import ReceivedMh, ReplayState, parse_fbu
from tests.router._pair import MN_LLA, NAR, PAR, node_key, predictive_fbu, router_key
from tests.router.conftest import KeyServiceDeployment
from tests.support.redis_server import free_port


def _fbu(sequence: int = 1) -> ReceivedMh:
    p = predictive_fbu(sequence=sequence)
    return ReceivedMh(p.source, p.destination, p.home_address, p.mh)


def test_cache_lookup_remove_expire_and_bound() -> None:
    cache = HandoverKeyCache(max_keys=2)
    key = router_key(expires_at=50.0)
    cache.put(key, mn_lla=MN_LLA)
    assert cache.candidates(key.spi, PAR, 0.0) == [key]
    assert cache.candidates(key.spi, NAR, 0.0) == []  # another AR-ID: never this key
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.knows_lla(MN_LLA, 0.0) and not cache.knows_lla(MN_LLA, 60.0)
    other = router_key(par=NAR, expires_at=10.0)
    cache.put(other)
    assert len(cache) == 2  # same SPI, other HK-Name: both kept (SPI collisions are allowed)
    third = type(key)(SecretBytes(bytes(32)), b"\x09" * 8, 99, PAR, 80.0)
    cache.put(third)
    assert len(cache) == 2 and cache.candidates(key.spi, NAR, 0.0) == []  # the key nearest its end left
    assert cache.remove(spi=99) == 1
    assert cache.expire(100.0) == 1 and len(cache) == 0


def test_pushed_key_is_used_for_local_verification() -> None:
    hk = node_key()
    pushed = PushedHandoverKey(hk.hk, hk.spi, 600, hk.hk_name, PAR, "HMAC-SHA1-96")
    cache = HandoverKeyCache()
    cache.put_pushed(pushed, ar_address=PAR, now=0.0)
    verifier = Verifier(cache, ReplayState(), None, clock=lambda: 1.0)
    verdict = asyncio.run(verifier.verify(parse_fbu(_fbu())))
    assert verdict.outcome == "accepted" and verdict.key is not None and verdict.key.source == "pushed"


def test_service_down_gives_key_unavailable() -> None:
    async def go() -> tuple[str | None, int]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}", timeout=0.5) as client:
            verifier = Verifier(HandoverKeyCache(), ReplayState(), RestKeyService(client))
            verdict = await verifier.verify(parse_fbu(_fbu()))
            return verdict.reason, await verifier.prefetch(MN_LLA, [PAR])

    assert asyncio.run(go()) == ("key-unavailable", 0)


def test_fetch_by_spi_prefetch_by_lla_and_verify_as_a_service(key_service: KeyServiceDeployment) -> None:
    key_service.ingest()
    fetches: list[tuple[str, str]] = []

    async def go() -> None:
        async with key_service.router_client(key_service.par) as client:
            service = RestKeyService(client)
            # 3. fetch by SPI on the first FBU, then local
            cache = HandoverKeyCache()
            verifier = Verifier(cache, ReplayState(), service, on_fetch=lambda k, _s, r: fetches.append((k, r)))
            first = await verifier.verify(parse_fbu(_fbu(1)))
            assert first.outcome == "accepted" and first.key is not None and first.key.source == "fetched"
            assert first.key.hk == node_key().hk  # the service derived the same HK as the node
            second = await verifier.verify(parse_fbu(_fbu(2)))
            assert second.outcome == "accepted" and fetches == [("spi", "ok")]
            assert (cache.hits, cache.misses) == (1, 1)
            # 2. prefetch by the node's link-layer address (Calling-Station-Id)
            cache2 = HandoverKeyCache()
            verifier2 = Verifier(cache2, ReplayState(), service)
            assert await verifier2.prefetch(MN_LLA, [PAR]) == 1
            assert await verifier2.prefetch(MN_LLA, [PAR]) == 0  # already held
            third = await verifier2.verify(parse_fbu(_fbu(3)))
            assert third.key is not None and third.key.source == "prefetched" and cache2.misses == 0
            # 4. verify-as-a-service: the service keeps its own replay state
            remote = Verifier(HandoverKeyCache(), ReplayState(), service, mode="service")
            v = await remote.verify(parse_fbu(_fbu(10)))
            assert (v.outcome, v.key) == ("accepted", None)
            again = await remote.verify(parse_fbu(_fbu(10)))
            assert again.outcome == "retransmission"
            old = await remote.verify(parse_fbu(_fbu(9)))
            assert (old.outcome, old.reason) == ("rejected", "replay")

    asyncio.run(go())


def test_unknown_and_revoked_spi(key_service: KeyServiceDeployment) -> None:
    lla = bytes.fromhex("020000000042")
    created = key_service.ingest(emsk=bytes(range(1, 65)), session_id=b"\x0d" + bytes(64), mn_lla=lla)

    async def go(spi: int) -> str | None:
        async with key_service.router_client(key_service.par) as client:
            verifier = Verifier(HandoverKeyCache(), ReplayState(), RestKeyService(client))
            fbu = parse_fbu(_fbu())
            fbu = dataclasses.replace(fbu, auth=dataclasses.replace(fbu.auth, spi=spi))  # a key the service lacks
            return (await verifier.verify(fbu)).reason

    spi = int(str(created["spi"]))
    key_service.revoke(lla)
    assert asyncio.run(go(spi)) == "revoked"
    assert asyncio.run(go(12345)) == "unknown-spi"
