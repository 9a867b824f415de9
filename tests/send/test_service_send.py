"""HandoverKeyService.send_handover_key in process, against a real redis-server, with an injected clock."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator

import pytest

from aaa_fmip import mn
from aaa_fmip.crypto import cga, rsa
from aaa_fmip.crypto.badf import Algorithm
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, KekRing
from aaa_fmip.errors import Forbidden
from aaa_fmip.model import AccessRouter, Caller, FbuVerdict
from aaa_fmip.send_policy import SendHandoverKeyResult, SendPolicy, StaleTimestamp
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.store.redis import RedisStore
from aaa_fmip.wire import icmpv6
from tests.send._helpers import IP, MN_PREFIX, NCOA, OTHER_AR, PAR
from tests.support.redis_server import RedisServer

AR1 = Caller("ar1", "ar", AccessRouter("ar1", frozenset({PAR})))
AR2 = Caller("ar2", "ar", AccessRouter("ar2", frozenset({OTHER_AR})))
AUDITOR = Caller("auditor", "auditor")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[RedisStore]:
    s = RedisStore.from_url(
        redis_server.url, KekRing(Kek("k1", SecretBytes(os.urandom(32)))), prefix=f"t{os.urandom(4).hex()}"
    )
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: RedisStore, clock: Clock) -> HandoverKeyService:
    return HandoverKeyService(store, clock=clock)


@pytest.fixture(scope="module")
def identity(quick_keys: list[rsa.RSAPrivateKey]) -> mn.CgaIdentity:
    return mn.generate_cga_identity(MN_PREFIX, sec=1, private_key=quick_keys[0])


@pytest.fixture(scope="module")
def enc(quick_keys: list[rsa.RSAPrivateKey]) -> rsa.RSAPrivateKey:
    return quick_keys[1]


def ask(
    service: HandoverKeyService,
    identity: mn.CgaIdentity,
    enc: rsa.RSAPrivateKey,
    *,
    timestamp: float | None = None,
    nonce: bytes | None = None,
    algorithm: Algorithm = Algorithm.HMAC_SHA1_96,
) -> tuple[mn.SignedRtSolPr, SendHandoverKeyResult]:
    request = mn.build_signed_rtsolpr(
        identity,
        destination=PAR,
        identifier=9,
        encryption_key=enc,
        timestamp=service.clock() if timestamp is None else timestamp,
        nonce=nonce,
        algorithm=algorithm,
    )
    result = service.send_handover_key(AR1, source=request.source, destination=PAR, icmpv6=request.message)
    return request, result


def decrypt(result: SendHandoverKeyResult, enc: rsa.RSAPrivateKey) -> bytes:
    (option,) = icmpv6.decode_nd_options(result.handover_key_reply)
    assert isinstance(option, icmpv6.HandoverKeyReply)
    assert option.key_lifetime == result.lifetime and option.algorithm_type == result.algorithm
    return rsa.decrypt_handover_key(enc, option.encrypted_key).reveal()


def fbu_verdict(service: HandoverKeyService, hk: bytes, pcoa: IP, sequence: int, alg: Algorithm) -> FbuVerdict:
    key = mn.SendHandoverKey(SecretBytes(hk), 60, alg).handover_key()
    packet = mn.build_fbu_packet(
        key, sequence=sequence, lifetime_seconds=60, pcoa=pcoa, ncoa=NCOA, par=PAR, home_address_option=True,
        algorithm=alg,
    )  # fmt: skip
    return service.verify_fbu(AR1, source=packet.source, destination=PAR, mh=packet.mh, home_address=pcoa)


def test_issue_then_reuse_until_expiry(
    service: HandoverKeyService, store: RedisStore, clock: Clock, identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey
) -> None:
    _, first = ask(service, identity, enc)
    assert (first.reused, first.lifetime, first.hk_expires_at) == (False, 43200, clock.now + 43200)
    assert decrypt(first, enc) == first.hk.reveal() and len(first.hk) == 32
    assert (first.cga, first.cga_key_hash) == (identity.address, cga.key_hash(identity.public_key))
    record = store.get_send_key_by_cga(identity.address)
    assert record is not None and record.hk == first.hk

    clock.now += 1000
    _, second = ask(service, identity, enc)
    assert second.reused and second.hk == first.hk
    assert (second.lifetime, second.hk_expires_at) == (42200, first.hk_expires_at)  # not extended

    clock.now = first.hk_expires_at  # by the service's clock the key has expired: a new one
    _, third = ask(service, identity, enc)
    assert not third.reused and third.hk != first.hk and third.lifetime == 43200
    assert fbu_verdict(service, third.hk.reveal(), identity.address, 1, Algorithm.HMAC_SHA1_96).valid
    old = fbu_verdict(service, first.hk.reveal(), identity.address, 2, Algorithm.HMAC_SHA1_96)
    assert old.reason == "bad-authenticator"


def test_lifetime_is_capped(store: RedisStore, clock: Clock, identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey) -> None:
    capped = HandoverKeyService(store, clock=clock, max_lifetime=600)
    assert ask(capped, identity, enc)[1].lifetime == 600
    clock.now += 600
    shorter = HandoverKeyService(store, clock=clock, max_lifetime=600)
    shorter.send_policy = SendPolicy(hk_lifetime=120)
    assert ask(shorter, identity, enc)[1].lifetime == 120


def test_the_same_key_under_a_new_cga_keeps_its_hk(
    service: HandoverKeyService, store: RedisStore, identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey
) -> None:
    _, first = ask(service, identity, enc)
    moved = mn.generate_cga_identity(ipaddress.IPv6Network("2001:db8:5::/64"), sec=0, private_key=identity.private_key)
    _, second = ask(service, moved, enc)
    assert second.reused and second.hk == first.hk and second.cga == moved.address
    assert store.get_send_key_by_cga(identity.address) is None  # one live HK per key, found by its current CGA
    record = store.get_send_key_by_key_hash(first.cga_key_hash)
    assert record is not None and record.cga == moved.address
    assert fbu_verdict(service, first.hk.reveal(), moved.address, 1, Algorithm.HMAC_SHA1_96).valid
    gone = fbu_verdict(service, first.hk.reveal(), identity.address, 2, Algorithm.HMAC_SHA1_96)
    assert gone.reason == "unknown-spi"


def test_a_rejected_request_does_not_burn_its_nonce(
    service: HandoverKeyService, store: RedisStore, clock: Clock, identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey
) -> None:
    nonce = os.urandom(6)
    with pytest.raises(StaleTimestamp):
        ask(service, identity, enc, timestamp=clock.now - 400, nonce=nonce)
    assert store.get_send_key_by_cga(identity.address) is None
    _, result = ask(service, identity, enc, nonce=nonce)  # the nonce was not remembered by the failed request
    assert not result.reused


def test_hmac_sha256_request_and_fbu(
    service: HandoverKeyService, identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey
) -> None:
    _, result = ask(service, identity, enc, algorithm=Algorithm.HMAC_SHA256_128)
    assert result.algorithm is Algorithm.HMAC_SHA256_128
    verdict = fbu_verdict(service, decrypt(result, enc), identity.address, 1, Algorithm.HMAC_SHA256_128)
    assert verdict.valid and verdict.spi == 0


def test_scope_and_audit(
    service: HandoverKeyService, store: RedisStore, identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey
) -> None:
    request = mn.build_signed_rtsolpr(
        identity, destination=PAR, identifier=1, encryption_key=enc, timestamp=service.clock()
    )
    with pytest.raises(Forbidden) as info:
        service.send_handover_key(AR2, source=request.source, destination=PAR, icmpv6=request.message)
    assert info.value.reason == "not-your-address"
    with pytest.raises(Forbidden):
        service.send_handover_key(AUDITOR, source=request.source, destination=PAR, icmpv6=request.message)
    _, result = ask(service, identity, enc)
    entries, _ = service.read_audit(AUDITOR, event="send.hk.issued")
    assert [e.fields["cga"] for e in entries] == [str(identity.address)]
    assert all(result.hk.hex() not in str(value) for e in entries for value in e.fields.values())
    assert result.hk.hex() not in repr(result) and "SecretBytes" not in repr(result)


def test_racing_first_requests_get_one_key(
    service: HandoverKeyService, store: RedisStore, identity: mn.CgaIdentity, enc: rsa.RSAPrivateKey
) -> None:
    """Eight first requests for the same new CGA key at once (e.g. via two ARs): one HK for all of them."""
    import threading

    barrier = threading.Barrier(8)
    results: list[SendHandoverKeyResult] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait(10)
        _, result = ask(service, identity, enc)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8
    assert len({r.hk.reveal() for r in results}) == 1
    assert sum(not r.reused for r in results) == 1
    record = store.get_send_key_by_cga(identity.address)
    assert record is not None and record.hk == results[0].hk
