"""Every rejection of POST /v1/send/handover-key against a real ``aaa-fmip serve``: its own status and reason,
and no key state created or changed (checked in Redis directly)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest

from aaa_fmip import mn
from aaa_fmip.crypto import rsa
from aaa_fmip.wire import icmpv6
from tests.api._deploy import Deployment
from tests.api._helpers import assert_problem
from tests.send._helpers import IP, MN_PREFIX, OTHER_AR, StoreProbe, body_of, post_send, rtsolpr


@dataclasses.dataclass(frozen=True)
class Keys:
    victim: mn.CgaIdentity  # never gets a key in this module
    encryption: rsa.RSAPrivateKey
    small: rsa.RSAPrivateKey


@pytest.fixture(scope="module")
def k(quick_keys: list[rsa.RSAPrivateKey], small_key: rsa.RSAPrivateKey) -> Keys:
    return Keys(mn.generate_cga_identity(MN_PREFIX, sec=1, private_key=quick_keys[0]), quick_keys[1], small_key)


def with_address(identity: mn.CgaIdentity, address: IP) -> mn.CgaIdentity:
    """The same key and CGA Parameters, claimed for another address."""
    return dataclasses.replace(identity, address=address)


def refix_checksum(message: bytes, request: mn.SignedRtSolPr) -> bytes:
    """Recompute the ICMPv6 checksum after a change, as a forger would (so the checksum is not what fails)."""
    decoded = icmpv6.decode_icmpv6(message)
    assert not isinstance(decoded, icmpv6.UnknownIcmpv6Message)
    return icmpv6.encode_icmpv6(decoded, source=request.source, destination=request.destination)


def wrong_cga_hash(k: Keys) -> dict[str, Any]:
    # One interface-identifier bit outside Sec, u and g flipped: Hash1 no longer matches (RFC 3972 §5 step 3).
    forged = with_address(k.victim, IP(int(k.victim.address) ^ 0x10))
    return body_of(rtsolpr(forged, k.encryption, timestamp=time.time()))


def wrong_sec(k: Keys) -> dict[str, Any]:
    # Sec 1 → 3: Hash1 ignores the Sec bits, but Hash2 lacks the 48 zero bits Sec 3 demands (step 5).
    address = IP((int(k.victim.address) & ~(7 << 61)) | (3 << 61))
    return body_of(rtsolpr(with_address(k.victim, address), k.encryption, timestamp=time.time()))


def tampered_signature(k: Keys) -> dict[str, Any]:
    request = rtsolpr(k.victim, k.encryption, timestamp=time.time())
    message = bytearray(request.message)
    message[-20] ^= 0x01  # inside the Digital Signature field
    return body_of(request, icmpv6=refix_checksum(bytes(message), request).hex())


def tampered_message(k: Keys) -> dict[str, Any]:
    request = rtsolpr(k.victim, k.encryption, timestamp=time.time(), identifier=5)
    message = bytearray(request.message)
    message[6:8] = (6).to_bytes(2, "big")  # the Identifier, covered by the signature
    return body_of(request, icmpv6=refix_checksum(bytes(message), request).hex())


def stale_timestamp(k: Keys) -> dict[str, Any]:
    return body_of(rtsolpr(k.victim, k.encryption, timestamp=time.time() - 3600))


def future_timestamp(k: Keys) -> dict[str, Any]:
    return body_of(rtsolpr(k.victim, k.encryption, timestamp=time.time() + 3600))


def small_cga_key(k: Keys) -> dict[str, Any]:
    identity = mn.generate_cga_identity(MN_PREFIX, sec=0, private_key=k.small)
    return body_of(rtsolpr(identity, k.encryption, timestamp=time.time()))


def small_encryption_key(k: Keys) -> dict[str, Any]:
    return body_of(rtsolpr(k.victim, k.small, timestamp=time.time()))


def bad_checksum(k: Keys) -> dict[str, Any]:
    request = rtsolpr(k.victim, k.encryption, timestamp=time.time())
    message = bytearray(request.message)
    message[2] ^= 0xFF
    return body_of(request, icmpv6=bytes(message).hex())


def not_an_rtsolpr(k: Keys) -> dict[str, Any]:
    request = rtsolpr(k.victim, k.encryption, timestamp=time.time())
    prrtadv = icmpv6.PrRtAdv(0, 1, ())
    message = icmpv6.encode_icmpv6(prrtadv, source=request.source, destination=request.destination)
    return body_of(request, icmpv6=message.hex())


CASES: dict[str, tuple[Callable[[Keys], dict[str, Any]], str]] = {
    "wrong CGA hash": (wrong_cga_hash, "bad-cga-hash1"),
    "wrong Sec": (wrong_sec, "bad-cga-hash2"),
    "tampered signature": (tampered_signature, "bad-signature"),
    "tampered message": (tampered_message, "bad-signature"),
    "stale timestamp": (stale_timestamp, "stale-timestamp"),
    "timestamp from the future": (future_timestamp, "stale-timestamp"),
    "CGA key below the minimum": (small_cga_key, "key-too-small"),
    "encryption key below the minimum": (small_encryption_key, "key-too-small"),
    "bad checksum": (bad_checksum, "malformed"),
    "not an RtSolPr": (not_an_rtsolpr, "not-rtsolpr"),
}


@pytest.mark.parametrize("case", CASES)
def test_rejected_with_its_reason_and_no_key(deployment: Deployment, probe: StoreProbe, k: Keys, case: str) -> None:
    build, reason = CASES[case]
    body = build(k)
    before = probe.send_key_names()
    response = post_send(deployment, body)
    problem = assert_problem(response, 422, reason)
    assert problem["type"].endswith(reason)
    assert probe.send_key_names() == before
    assert probe.key_of(k.victim) is None
    assert probe.store.get_send_key_by_cga(IP(body["source"])) is None


def test_malformed_hex_names_the_field(deployment: Deployment, k: Keys) -> None:
    request = rtsolpr(k.victim, k.encryption, timestamp=time.time())
    truncated = post_send(deployment, body_of(request, icmpv6=request.message[:-3].hex()))
    problem = assert_problem(truncated, 422, "malformed")
    assert problem["errors"][0]["field"].startswith("icmpv6")
    assert_problem(post_send(deployment, body_of(request, icmpv6="zz")), 422, "invalid-request")


def test_rtsolpr_addressed_to_another_router_is_forbidden(deployment: Deployment, probe: StoreProbe, k: Keys) -> None:
    request = rtsolpr(k.victim, k.encryption, timestamp=time.time(), destination=OTHER_AR)
    before = probe.send_key_names()
    assert_problem(post_send(deployment, body_of(request)), 403, "not-your-address")
    assert probe.send_key_names() == before and probe.key_of(k.victim) is None
    # Only an AR token may ask at all.
    assert_problem(post_send(deployment, body_of(request), cred=deployment.auditor), 403, "wrong-role")
    with deployment.service.client() as anonymous:
        assert_problem(anonymous.post("/v1/send/handover-key", json=body_of(request)), 401, "missing-token")


def test_a_replayed_nonce_is_rejected_and_changes_nothing(
    deployment: Deployment, probe: StoreProbe, quick_keys: list[rsa.RSAPrivateKey]
) -> None:
    identity = mn.generate_cga_identity(MN_PREFIX, sec=1, private_key=quick_keys[2])
    request = rtsolpr(identity, quick_keys[3], timestamp=time.time())
    first = post_send(deployment, body_of(request))
    assert first.status_code == 200, first.text
    record = probe.key_of(identity)
    names = probe.send_key_names()
    replay = post_send(deployment, body_of(request))
    assert_problem(replay, 422, "replayed-nonce")
    assert probe.key_of(identity) == record and probe.send_key_names() == names
    # A new RtSolPr (new Nonce) from the same MN is answered, with the same key.
    again = post_send(deployment, body_of(rtsolpr(identity, quick_keys[3], timestamp=time.time())))
    assert again.status_code == 200 and again.json()["hk"] == first.json()["hk"]
    with deployment.service.client(deployment.auditor) as client:
        rejected = client.get("/v1/audit", params={"event": "send.hk.rejected"}).json()["entries"]
    mine = [e["fields"]["reason"] for e in rejected if e["fields"]["cga"] == str(identity.address)]
    assert mine == ["replayed-nonce"]


def test_openapi_documents_the_route(deployment: Deployment) -> None:
    with deployment.service.client() as client:
        spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/send/handover-key"]["post"]
    assert operation["tags"] == ["access routers"] and operation["security"]
    assert {"200", "401", "403", "422", "503"} <= set(operation["responses"])
    assert "replayed-nonce" in operation["responses"]["422"]["description"]
