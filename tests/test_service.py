"""The service layer against a real redis-server: ingest, key query, FBU verification, replay, revocation."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from aaa_fmip import keys, mn
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, KekRing
from aaa_fmip.errors import DecodeError, Forbidden, InvalidRequest, NotFound
from aaa_fmip.model import AccessRouter, Caller, EapKeys, FbuAccepted, FbuVerdict, SessionRequest, VisitedKeys
from aaa_fmip.service import HandoverKeyService, normalise_calling_station_id
from aaa_fmip.store.redis import RedisStore
from tests.support.redis_server import RedisServer

IP = ipaddress.IPv6Address
PAR1 = IP("2001:db8:1::1")
PAR2 = IP("2001:db8:2::1")
PCOA = IP("2001:db8:1::100")
NCOA = IP("2001:db8:2::100")

AAA = Caller("radius", "aaa")
AUDITOR = Caller("auditor", "auditor")
AR1 = Caller("ar1", "ar", AccessRouter("ar1", frozenset({PAR1})))
AR2 = Caller("ar2", "ar", AccessRouter("ar2", frozenset({PAR2})))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[RedisStore]:
    ring = KekRing(Kek("k1", SecretBytes(os.urandom(32))))
    s = RedisStore.from_url(redis_server.url, ring, prefix=f"t{os.urandom(4).hex()}")
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["blocking", "asyncio"])
def service(store: RedisStore, clock: Clock, request: pytest.FixtureRequest) -> HandoverKeyService:
    """The service; with "asyncio", every ``verify_fbu`` of a test runs through ``verify_fbu_async`` (the REST
    hot path: the same flow on the store's asyncio client), so both drivers must give the same verdicts."""
    service = HandoverKeyService(store, clock=clock)
    if request.param == "asyncio":

        def on_an_event_loop(caller: Caller, **kw: Any) -> FbuVerdict:
            return asyncio.run(service.verify_fbu_async(caller, **kw))

        service.verify_fbu = on_an_event_loop  # type: ignore[method-assign]
    return service


def new_mn() -> tuple[bytes, bytes]:
    return os.urandom(64), b"\x0d" + os.urandom(64)


def fbu_for(emsk: bytes, sid: bytes, par: IP, sequence: int, **kw: object) -> bytes:
    master = keys.derive_hmk(emsk, sid)
    hk = keys.derive_hk(master.hmk, master.hmk_name, par, master.spi)
    return mn.build_fbu(hk, sequence=sequence, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=par, **kw)  # type: ignore[arg-type]


def ingest(service: HandoverKeyService, emsk: bytes, sid: bytes, **kw: object) -> int:
    request = SessionRequest(user_name="alice", keys=EapKeys(SecretBytes(emsk), sid), **kw)  # type: ignore[arg-type]
    info = service.ingest_session(AAA, request)
    return info.spi


def test_ingest_then_fbu_accepted_then_retransmission_then_replay(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    spi = ingest(service, emsk, sid)
    assert spi == keys.derive_hmk(emsk, sid).spi
    fbu5 = fbu_for(emsk, sid, PAR1, 5)
    v = service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu5)
    assert isinstance(v, FbuAccepted)
    assert (v.verdict, v.spi, v.sequence, v.ncoa) == ("accepted", spi, 5, NCOA)
    assert v.lifetime == 60
    again = service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu5)
    assert (again.valid, again.verdict) == (True, "retransmission")
    fbu4 = fbu_for(emsk, sid, PAR1, 4)
    old = service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu4)
    assert (old.valid, old.reason) == (False, "replay")
    fbu6 = fbu_for(emsk, sid, PAR1, 6)
    assert service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu6).verdict == "accepted"


def test_forged_fbu_is_rejected_and_consumes_no_sequence(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    ingest(service, emsk, sid)
    good = fbu_for(emsk, sid, PAR1, 9)
    # An attacker knows the SPI (it is on the wire) but not the key: a well-formed FBU under a guessed key.
    master = keys.derive_hmk(emsk, sid)
    guessed = keys.HandoverKey(hk=SecretBytes(os.urandom(32)), hk_name=b"\0" * 8, spi=master.spi)
    forged = mn.build_fbu(guessed, sequence=9, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    v = service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=forged)
    assert (v.valid, v.reason) == (False, "bad-authenticator")
    assert service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=good).verdict == "accepted"


def test_key_for_one_par_does_not_verify_at_another(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    ingest(service, emsk, sid)
    master = keys.derive_hmk(emsk, sid)
    leaked_at_par1 = keys.derive_hk(master.hmk, master.hmk_name, PAR1, master.spi)
    # A key leaked at PAR1, used to sign an FBU addressed to PAR2 (RFC 4962 key scoping).
    m = mn.build_fbu(leaked_at_par1, sequence=1, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR2)
    v = service.verify_fbu(AR2, source=PCOA, destination=PAR2, mh=m)
    assert (v.valid, v.reason) == (False, "bad-authenticator")


def test_unknown_spi_expired_and_revoked(service: HandoverKeyService, clock: Clock) -> None:
    emsk, sid = new_mn()
    v = service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 1))
    assert v.reason == "unknown-spi"
    info = service.ingest_session(
        AAA, SessionRequest(user_name="bob", keys=EapKeys(SecretBytes(emsk), sid), lifetime=30)
    )
    clock.now += 31
    assert service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 2)).reason in (
        "expired",
        "unknown-spi",
    )
    clock.now -= 31
    service.revoke_session(AAA, info.hmk_name)
    assert service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 3)).reason == ("revoked")
    # A retry (say after a 503 whose revocation had in fact been applied) ends as the first did, audited once.
    service.revoke_session(AAA, info.hmk_name)
    revoked, _ = service.read_audit(AUDITOR, event="session.revoked")
    assert [e.fields["hmk_name"] for e in revoked].count(info.hmk_name.hex()) == 1
    with pytest.raises(NotFound):
        service.revoke_session(AAA, b"\x01" * 8)  # never was


def test_handover_key_scoped_to_the_calling_router(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    spi = ingest(service, emsk, sid, calling_station_id="02:00:00:00:00:01")
    grant = service.handover_key(AR1, ar_address=PAR1, spi=spi)
    master = keys.derive_hmk(emsk, sid)
    expected = keys.derive_hk(master.hmk, master.hmk_name, PAR1, spi)
    assert grant.hk == expected.hk and grant.hk_name == expected.hk_name
    by_mac = service.handover_key(AR1, ar_address=PAR1, calling_station_id="02-00-00-00-00-01")
    assert by_mac.hk == expected.hk
    with pytest.raises(Forbidden):
        service.handover_key(AR1, ar_address=PAR2, spi=spi)
    with pytest.raises(Forbidden):
        service.handover_key(AAA, ar_address=PAR1, spi=spi)
    with pytest.raises(InvalidRequest):
        service.handover_key(AR1, ar_address=PAR1)
    with pytest.raises(NotFound):
        service.handover_key(AR1, ar_address=PAR1, hmk_name=b"\x00" * 8)


def test_fbu_to_another_routers_address_is_forbidden(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    ingest(service, emsk, sid)
    with pytest.raises(Forbidden):
        service.verify_fbu(AR1, source=PCOA, destination=PAR2, mh=fbu_for(emsk, sid, PAR2, 1))


def test_malformed_mh_raises_decode_error(service: HandoverKeyService) -> None:
    with pytest.raises(DecodeError):
        service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=b"\x3b\x01\x08")


def test_concurrent_verifies_accept_a_sequence_once(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    ingest(service, emsk, sid)
    fbus = [fbu_for(emsk, sid, PAR1, 100) for _ in range(12)]
    results: list[str] = []
    lock = threading.Lock()

    def run(m: bytes) -> None:
        v = service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=m)
        with lock:
            results.append(v.verdict or v.reason or "?")

    threads = [threading.Thread(target=run, args=(m,)) for m in fbus]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count("accepted") == 1
    assert set(results) <= {"accepted", "retransmission"}


def test_visited_domain_session(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    dsrk = keys.derive_dsrk(emsk, b"visited.example")
    emsk_name = keys.derive_emsk_name(sid)
    info = service.ingest_session(
        AAA, SessionRequest(user_name="carol", keys=VisitedKeys(SecretBytes(dsrk), emsk_name))
    )
    master = keys.derive_hmk_visited(dsrk, emsk_name)
    assert info.spi == master.spi and info.hmk_name == master.hmk_name
    hk = keys.derive_hk(master.hmk, master.hmk_name, PAR1, master.spi)
    m = mn.build_fbu(hk, sequence=1, lifetime_seconds=8, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    assert service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=m).verdict == "accepted"


def test_ingest_validation(service: HandoverKeyService) -> None:
    # Half a root key, or a home key with a visited name, cannot be built (mypy rejects them too).
    with pytest.raises(TypeError):
        EapKeys(SecretBytes(os.urandom(64)))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        EapKeys(SecretBytes(os.urandom(64)), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        VisitedKeys(os.urandom(64), os.urandom(8))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as caught:
        service.ingest_session(AAA, SessionRequest(user_name="x", keys=VisitedKeys(SecretBytes(os.urandom(64)), b"")))
    assert caught.value.reason == "invalid-key-material"
    with pytest.raises(InvalidRequest) as caught:
        service.ingest_session(
            AAA, SessionRequest(user_name="x", keys=EapKeys(SecretBytes(os.urandom(64)), b"\x0d" * 65), lifetime=0)
        )
    assert caught.value.reason == "invalid-lifetime"
    with pytest.raises(InvalidRequest):
        service.ingest_session(AAA, SessionRequest(user_name="x", keys=EapKeys(SecretBytes(os.urandom(8)), b"\x0d")))
    with pytest.raises(Forbidden):
        service.ingest_session(
            AR1, SessionRequest(user_name="x", keys=EapKeys(SecretBytes(os.urandom(64)), b"\x0d" * 65))
        )


def test_revoke_matching_by_mac_and_audit_chain(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    ingest(service, emsk, sid, calling_station_id="0A:00:00:00:00:09")
    assert service.revoke_matching(AAA, calling_station_id="0a-00-00-00-00-09") == 1
    assert service.revoke_matching(AAA, calling_station_id="0a-00-00-00-00-09") == 0
    entries, _ = service.read_audit(AUDITOR, limit=1000)
    events = [e.event for e in entries]
    assert "session.created" in events and "session.revoked" in events
    for e in entries:  # identifiers only, never key material
        for value in e.fields.values():
            assert emsk.hex() not in str(value)
    assert service.verify_audit(AUDITOR).ok


def test_audit_never_contains_key_material(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    spi = ingest(service, emsk, sid)
    grant = service.handover_key(AR1, ar_address=PAR1, spi=spi)
    service.verify_fbu(AR1, source=PCOA, destination=PAR1, mh=fbu_for(emsk, sid, PAR1, 1))
    master = keys.derive_hmk(emsk, sid)
    secrets = {emsk.hex(), master.hmk.reveal().hex(), grant.hk.reveal().hex()}
    entries, _ = service.read_audit(AUDITOR, limit=1000)
    blob = repr([replace(e) for e in entries])
    assert not any(s in blob for s in secrets)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("02:00:00:00:00:01", "02-00-00-00-00-01"), ("0200.0000.0001", "02-00-00-00-00-01"), (" Bob ", "bob")],
)
def test_normalise_calling_station_id(raw: str, norm: str) -> None:
    assert normalise_calling_station_id(raw) == norm


def test_ingest_with_push_pushes_the_serving_routers_key_in_one_call(service: HandoverKeyService) -> None:
    emsk, sid = new_mn()
    info = service.ingest_session(
        AAA, SessionRequest(user_name="dave", keys=EapKeys(SecretBytes(emsk), sid), push_to=(AR1, PAR1))
    )
    grant = info.grant
    assert grant is not None
    master = keys.derive_hmk(emsk, sid)
    expected = keys.derive_hk(master.hmk, master.hmk_name, PAR1, master.spi)
    assert (info.hmk_name, info.spi) == (master.hmk_name, master.spi)
    assert grant.hk == expected.hk and grant.hk_name == expected.hk_name and grant.spi == master.spi
    assert service.handover_key(AR1, ar_address=PAR1, hmk_name=info.hmk_name).hk == grant.hk
    entries, _ = service.read_audit(AUDITOR, limit=1000)
    issued = [e for e in entries if e.event == "hk.issued" and e.fields.get("hmk_name") == info.hmk_name.hex()]
    assert issued and issued[0].fields["ar"] == "ar1" and issued[0].fields["actor"] == "radius"


def test_ingest_with_push_refuses_an_address_of_another_router_and_stores_nothing(
    service: HandoverKeyService,
) -> None:
    emsk, sid = new_mn()
    with pytest.raises(Forbidden):
        service.ingest_session(
            AAA, SessionRequest(user_name="eve", keys=EapKeys(SecretBytes(emsk), sid), push_to=(AR1, PAR2))
        )
    with pytest.raises(NotFound):
        service.handover_key(AR1, ar_address=PAR1, hmk_name=keys.derive_hmk(emsk, sid).hmk_name)


def test_prepare_touches_no_store_and_commit_stores_and_audits(
    service: HandoverKeyService, store: RedisStore, clock: Clock
) -> None:
    emsk, sid = new_mn()
    before, _ = service.read_audit(AUDITOR, limit=1000)
    request = SessionRequest(user_name="frank", keys=EapKeys(SecretBytes(emsk), sid), lifetime=600, push_to=(AR1, PAR1))
    prepared = service.prepare_session(AAA, request)
    assert "emsk=" not in repr(request) and repr(emsk)[2:-1] not in repr(request)  # the root key never shows
    master = keys.derive_hmk(emsk, sid)
    assert (prepared.info.hmk_name, prepared.info.spi) == (master.hmk_name, master.spi)
    assert prepared.info.grant is not None
    assert prepared.info.grant.hk == keys.derive_hk(master.hmk, master.hmk_name, PAR1, master.spi).hk
    assert [event for event, _, _ in prepared.audits] == ["session.created", "hk.issued"]
    assert emsk.hex() not in repr(prepared) and master.hmk.reveal().hex() not in repr(prepared)
    # Nothing stored, nothing audited yet.
    assert store.get_session(master.hmk_name) is None
    assert service.read_audit(AUDITOR, limit=1000)[0] == before

    clock.now += 5  # a later commit keeps the expiry decided at prepare time
    service.commit_session(prepared)
    record = store.get_session(master.hmk_name)
    assert record is not None and record.expires_at == prepared.info.expires_at
    after, _ = service.read_audit(AUDITOR, limit=1000)
    added = [e for e in after if e not in before]
    assert [e.event for e in added] == ["session.created", "hk.issued"]
    assert all(e.fields["hmk_name"] == master.hmk_name.hex() for e in added)
