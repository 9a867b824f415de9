"""The audit trail through a real server: what is recorded (never key material), filters and paging, and
hash-chain verification that detects an entry edited directly in Redis."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.api import _oracle as oracle
from tests.api._deploy import AR1_ADDRESSES, Deployment, start_deployment
from tests.api._helpers import assert_problem, fbu_body, handover_key, ingest, verify
from tests.support.redis_server import RedisServer


def read_all(d: Deployment, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    with d.service.client(d.auditor) as client:
        cursor = None
        for _ in range(100):
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = client.get("/v1/audit", params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            entries += page["entries"]
            cursor = page["next_cursor"]
            if cursor is None:
                return entries
    raise AssertionError("audit paging did not end")


@pytest.fixture(scope="module")
def activity(deployment: Deployment) -> dict[str, Any]:
    """One session, one key issued, one accepted and one forged FBU, one revocation."""
    session = ingest(deployment)
    with deployment.service.client(deployment.ar1) as ar:
        grant = ar.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], "spi": session.spi}).json()
    hk = handover_key(session)
    assert verify(deployment, fbu_body(hk, 5)).json()["valid"]
    assert verify(deployment, fbu_body(hk, 4)).json() == {"valid": False, "reason": "replay"}
    with deployment.service.client(deployment.aaa) as aaa:
        assert aaa.delete(f"/v1/sessions/{session.hmk_name}").status_code == 204
    return {"session": session, "grant": grant}


def test_every_step_is_recorded_without_key_material(deployment: Deployment, activity: dict[str, Any]) -> None:
    session = activity["session"]
    entries = read_all(deployment)
    events = [e["event"] for e in entries]
    assert events == ["session.created", "hk.issued", "fbu.verified", "fbu.rejected", "session.revoked"]
    for entry in entries:
        assert set(entry) == {"id", "n", "at", "event", "fields", "prev", "hash", "kid", "slot"}
        assert dt.datetime.fromisoformat(entry["at"]).tzinfo is not None
    assert [e["prev"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    created, issued, accepted, rejected, _revoked = entries
    assert created["fields"]["hmk_name"] == session.hmk_name and created["fields"]["spi"] == session.spi
    assert issued["fields"]["ar"] == "ar1" and issued["fields"]["hk_name"] == activity["grant"]["hk_name"]
    assert accepted["fields"]["verdict"] == "accepted" and rejected["fields"]["reason"] == "replay"
    text = str(entries)
    hmk = oracle.hmk(session.emsk)
    for secret in (session.emsk, hmk, bytes.fromhex(activity["grant"]["hk"])):
        assert secret.hex() not in text
    logs = deployment.service.logs()
    for secret in (session.emsk, hmk, bytes.fromhex(activity["grant"]["hk"])):
        assert secret.hex() not in logs


def test_filters_and_paging(deployment: Deployment, activity: dict[str, Any]) -> None:
    session = activity["session"]
    everything = read_all(deployment)
    assert [e["event"] for e in read_all(deployment, event="fbu.rejected")] == ["fbu.rejected"]
    assert {e["event"] for e in read_all(deployment, ar="ar1")} == {"hk.issued", "fbu.verified", "fbu.rejected"}
    assert len(read_all(deployment, spi=session.spi)) == len(everything)
    assert read_all(deployment, spi=(session.spi + 1) % 2**32) == []
    paged = read_all(deployment, limit=2)
    assert [e["id"] for e in paged] == [e["id"] for e in everything]
    future = time.time() + 3600
    assert read_all(deployment, since=str(future)) == []
    rfc3339 = dt.datetime.fromtimestamp(future, tz=dt.UTC).isoformat()
    assert len(read_all(deployment, until=rfc3339)) == len(everything)
    with deployment.service.client(deployment.auditor) as client:
        assert_problem(client.get("/v1/audit", params={"since": "yesterday"}), 422)
        assert_problem(client.get("/v1/audit", params={"since": "2024-01-01T00:00:00"}), 422)  # no offset
        assert_problem(client.get("/v1/audit", params={"limit": 0}), 422)
        assert_problem(client.get("/v1/audit", params={"cursor": "nonsense"}), 422)


def test_chain_verifies(deployment: Deployment, activity: dict[str, Any]) -> None:
    entries = read_all(deployment)
    with deployment.service.client(deployment.auditor) as client:
        check = client.get("/v1/audit/verify").json()
    assert check == {
        "ok": True,
        "entries": len(entries),
        "n": len(entries),
        "first_n": 1,
        "head": entries[-1]["hash"],
        "first_bad_id": None,
        "problem": None,
        "checkpoint": None,
    }


@pytest.fixture
def own_deployment(redis_server: RedisServer, tmp_path: Path) -> Iterator[Deployment]:
    d = start_deployment(tmp_path, redis_server)
    yield d
    d.service.stop()


def test_an_edited_entry_is_detected(own_deployment: Deployment) -> None:
    d = own_deployment
    for _ in range(3):
        ingest(d)
    entries = read_all(d)
    victim = entries[1]
    # Rewrite the stream in place with the same ids, changing one field of one entry (what someone with write
    # access to Redis could do); the head key is left alone.
    stream = f"{d.prefix}:{{audit}}:stream"
    with redis.Redis.from_url(d.redis.url) as r:
        rows = r.xrange(stream)
        r.delete(stream)
        for entry_id, fields in rows:
            if entry_id.decode() == victim["id"]:
                edited = json.loads(fields[b"f"])
                edited["user"] = "mallory@example.net"
                fields[b"f"] = json.dumps(edited, sort_keys=True, separators=(",", ":")).encode()
            r.xadd(stream, fields, id=entry_id)
    assert read_all(d)[1]["fields"]["user"] == "mallory@example.net"
    with d.service.client(d.auditor) as client:
        check = client.get("/v1/audit/verify").json()
    assert check["ok"] is False
    assert check["first_bad_id"] == victim["id"]
    assert check["entries"] == len(entries)


def test_a_kept_checkpoint_detects_a_wipe_and_verifies_with_the_published_key(own_deployment: Deployment) -> None:
    """The auditor's flow: fetch a signed checkpoint, keep it (and pin the public key), later POST it back. A
    wipe of stream and head in Redis verifies as an empty trail by itself, but not against the checkpoint."""
    import base64
    import struct

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    d = own_deployment
    for _ in range(2):
        ingest(d)
    with d.service.client(d.auditor) as client:
        answer = client.get("/v1/audit/checkpoint")
        assert answer.status_code == 200, answer.text
        kept = answer.json()
        cp = kept["checkpoint"]
        assert cp["n"] == len(read_all(d)) and cp["head"] == read_all(d)[-1]["hash"]
        # Independently of the service: the signature over the documented message, with the pinned key.
        message = b"aaa-fmip-audit-checkpoint-v1\x00" + struct.pack(">Q", cp["n"])
        message += struct.pack(">I", 64) + cp["head"].encode() + struct.pack(">I", len(cp["at"])) + cp["at"].encode()
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(kept["public_keys"][cp["kid"]]))
        public.verify(base64.b64decode(cp["signature"]), message)

        ingest(d)
        again = client.post("/v1/audit/verify", json={"checkpoint": cp}).json()
        assert again["ok"] is True and again["checkpoint"] == "matches"

        with redis.Redis.from_url(d.redis.url) as r:
            r.delete(f"{d.prefix}:{{audit}}:stream", f"{d.prefix}:{{audit}}:head")
        assert client.get("/v1/audit/verify").json()["ok"] is True  # nothing in Redis can tell...
        wiped = client.post("/v1/audit/verify", json={"checkpoint": cp}).json()
        assert wiped["ok"] is False and wiped["entries"] == 0 and "truncated" in wiped["problem"]  # ...this can

        forged = dict(cp, n=cp["n"] + 1)
        assert_problem(client.post("/v1/audit/verify", json={"checkpoint": forged}), 422, "bad-checkpoint")
    with d.service.client(d.aaa) as client:
        assert_problem(client.get("/v1/audit/checkpoint"), 403, "wrong-role")


def test_no_checkpoint_for_a_broken_trail(own_deployment: Deployment) -> None:
    d = own_deployment
    for _ in range(3):
        ingest(d)
    entries = read_all(d)
    with redis.Redis.from_url(d.redis.url) as r:
        r.xdel(f"{d.prefix}:{{audit}}:stream", entries[1]["id"])
    with d.service.client(d.auditor) as client:
        assert_problem(client.get("/v1/audit/checkpoint"), 409, "audit-trail-broken")


def test_a_malformed_checkpoint_is_422(deployment: Deployment) -> None:
    """Found by schemathesis: a signature that is not even ASCII, or a key id nobody has, is the caller's error."""
    base = {"n": 1, "head": "ab" * 32, "at": "2.791896", "kid": "k1", "signature": "AAAA"}
    with deployment.service.client(deployment.auditor) as client:
        for bent in ({"signature": "\u00f2r\u008f"}, {"kid": "\ud975\udeb5"}, {"signature": "!!!"}):
            body = json.dumps({"checkpoint": {**base, **bent}}).encode()  # \u escapes: lone surrogates travel too
            response = client.post("/v1/audit/verify", content=body, headers={"content-type": "application/json"})
            assert_problem(response, 422, "bad-checkpoint")
