"""Ingest (AAA), handover keys (ARs) and revocation through a real server; keys checked against an independent
implementation of the key hierarchy, and AR scoping checked for every router and address."""

from __future__ import annotations

import datetime as dt
import os
import re
import time

import pytest

from tests.api import _oracle as oracle
from tests.api._deploy import AR1_ADDRESSES, AR2_ADDRESSES, Deployment
from tests.api._helpers import assert_problem, ingest


def test_ingest_returns_the_session_names(deployment: Deployment) -> None:
    before = time.time()
    session = ingest(deployment, hex_prefix="0x", lifetime=600)  # FreeRADIUS octets arrive 0x-prefixed
    hmk = oracle.hmk(session.emsk)
    assert session.created["hmk_name"] == oracle.hmk_name(session.eap_session_id).hex()
    assert session.created["spi"] == oracle.spi(hmk)
    expires = session.created["expires_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expires)
    expires_at = dt.datetime.fromisoformat(expires).timestamp()
    assert before + 600 - 2 <= expires_at <= time.time() + 600


def test_ingest_location_and_lifetime_cap(deployment: Deployment) -> None:
    emsk, sid = os.urandom(64), os.urandom(40)
    with deployment.service.client(deployment.aaa) as client:
        response = client.post(
            "/v1/sessions",
            json={"emsk": emsk.hex(), "eap_session_id": sid.hex(), "user_name": "bob", "lifetime": 10**9},
        )
    assert response.status_code == 201
    name = oracle.hmk_name(sid).hex()
    assert response.headers["location"] == f"/v1/sessions/{name}"
    expires_at = dt.datetime.fromisoformat(response.json()["expires_at"]).timestamp()
    assert expires_at <= time.time() + 43200 + 1  # keys.max_lifetime default


def test_ingest_from_a_dsrk(deployment: Deployment) -> None:
    dsrk, emsk_name = os.urandom(64), os.urandom(8)
    with deployment.service.client(deployment.aaa) as client:
        response = client.post(
            "/v1/sessions", json={"dsrk": dsrk.hex(), "emsk_name": emsk_name.hex(), "user_name": "v@visited"}
        )
    assert response.status_code == 201, response.text
    assert response.json()["hmk_name"] == oracle.hmk_name(emsk_name).hex()
    assert response.json()["spi"] == oracle.spi(oracle.hmk(dsrk))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"emsk": "zz" * 64, "eap_session_id": "22" * 8, "user_name": "u"}, "emsk"),
        ({"emsk": "1" * 127, "eap_session_id": "22" * 8, "user_name": "u"}, "emsk"),
        ({"emsk": "11" * 64, "user_name": "u"}, "body"),
        (
            {"emsk": "11" * 64, "eap_session_id": "22", "dsrk": "33" * 64, "emsk_name": "44" * 8, "user_name": "u"},
            "body",
        ),
        ({"emsk": "11" * 64, "eap_session_id": "22" * 8}, "user_name"),
        ({"emsk": "11" * 64, "eap_session_id": "22" * 8, "user_name": "u", "lifetime": 0}, "lifetime"),
        ({"emsk": "11" * 64, "eap_session_id": "22" * 8, "user_name": "u", "colour": "red"}, "colour"),
    ],
)
def test_bad_ingest_bodies_name_the_field_and_never_echo_keys(
    deployment: Deployment, body: dict[str, object], field: str
) -> None:
    with deployment.service.client(deployment.aaa) as client:
        response = client.post("/v1/sessions", json=body)
    problem = assert_problem(response, 422, "invalid-request")
    assert field in [e["field"] for e in problem["errors"]]
    for value in body.values():
        if isinstance(value, str) and len(value) >= 16:
            assert value not in response.text


def test_short_emsk_is_refused_by_the_service(deployment: Deployment) -> None:
    with deployment.service.client(deployment.aaa) as client:
        response = client.post("/v1/sessions", json={"emsk": "11" * 32, "eap_session_id": "22" * 8, "user_name": "u"})
    problem = assert_problem(response, 422, "invalid-key-material")
    assert "11" * 32 not in response.text
    assert "EMSK" in problem["detail"]


def test_each_router_gets_its_own_key_for_each_of_its_addresses(deployment: Deployment) -> None:
    session = ingest(deployment)
    hmk = oracle.hmk(session.emsk)
    name = bytes.fromhex(session.hmk_name)
    for cred, addresses in ((deployment.ar1, AR1_ADDRESSES), (deployment.ar2, AR2_ADDRESSES)):
        with deployment.service.client(cred) as client:
            for address in addresses:
                response = client.post("/v1/handover-keys", json={"ar_address": address, "spi": session.spi})
                assert response.status_code == 200, response.text
                assert response.headers["cache-control"] == "no-store"
                grant = response.json()
                assert grant["hk"] == oracle.hk(hmk, address).hex()
                assert grant["hk_name"] == oracle.hk_name(name, address).hex()
                assert grant["spi"] == session.spi
                assert grant["algorithm"] == "HMAC-SHA1-96"
                assert 0 < grant["lifetime"] <= 43200


def test_a_router_never_gets_another_routers_key(deployment: Deployment) -> None:
    session = ingest(deployment)
    pairs = [(deployment.ar1, AR2_ADDRESSES), (deployment.ar2, AR1_ADDRESSES)]
    hmk = oracle.hmk(session.emsk)
    foreign_keys = {oracle.hk(hmk, a).hex() for a in AR1_ADDRESSES + AR2_ADDRESSES}
    for cred, foreign in pairs:
        with deployment.service.client(cred) as client:
            for address in (*foreign, "2001:db8:ffff::1"):
                for selector in (
                    {"spi": session.spi},
                    {"hmk_name": session.hmk_name},
                    {"calling_station_id": session.mac},
                ):
                    response = client.post("/v1/handover-keys", json={"ar_address": address, **selector})
                    assert_problem(response, 403, "not-your-address")
                    assert not any(k in response.text for k in foreign_keys)


@pytest.mark.parametrize(
    "selector",
    [
        {},
        {"spi": 1, "hmk_name": "0011223344556677"},
        {"spi": 0},
        {"spi": 2**32},
        {"hmk_name": "xyz"},
    ],
)
def test_key_request_needs_exactly_one_valid_selector(deployment: Deployment, selector: dict[str, object]) -> None:
    with deployment.service.client(deployment.ar1) as client:
        response = client.post("/v1/handover-keys", json={"ar_address": AR1_ADDRESSES[0], **selector})
    assert_problem(response, 422, "invalid-request")


def test_key_request_with_a_bad_address(deployment: Deployment) -> None:
    with deployment.service.client(deployment.ar1) as client:
        response = client.post("/v1/handover-keys", json={"ar_address": "192.0.2.1", "spi": 5})
    problem = assert_problem(response, 422, "invalid-request")
    assert problem["errors"][0]["field"] == "ar_address"


def test_selectors_by_mac_and_name_and_unknown_session(deployment: Deployment) -> None:
    session = ingest(deployment)
    address = AR1_ADDRESSES[0]
    with deployment.service.client(deployment.ar1) as client:
        by_mac = client.post(
            "/v1/handover-keys", json={"ar_address": address, "calling_station_id": session.mac.upper()}
        )
        by_name = client.post("/v1/handover-keys", json={"ar_address": address, "hmk_name": "0x" + session.hmk_name})
        assert by_mac.status_code == by_name.status_code == 200
        assert by_mac.json()["hk"] == by_name.json()["hk"] == oracle.hk(oracle.hmk(session.emsk), address).hex()
        unknown = client.post("/v1/handover-keys", json={"ar_address": address, "hmk_name": os.urandom(8).hex()})
    assert_problem(unknown, 404, "unknown-session")


def test_revocation(deployment: Deployment) -> None:
    session = ingest(deployment)
    address = AR1_ADDRESSES[0]
    with deployment.service.client(deployment.ar1) as ar:
        assert ar.post("/v1/handover-keys", json={"ar_address": address, "spi": session.spi}).status_code == 200
        assert_problem(ar.delete(f"/v1/sessions/{session.hmk_name}"), 403, "wrong-role")
    with deployment.service.client(deployment.aaa) as aaa:
        response = aaa.delete(f"/v1/sessions/{session.hmk_name}")
        assert response.status_code == 204 and response.content == b""
        # Idempotent: revoking again (a retry after a 503, say) answers as the first revocation did.
        assert aaa.delete(f"/v1/sessions/{session.hmk_name}").status_code == 204
        assert_problem(aaa.delete(f"/v1/sessions/{'01' * 8}"), 404, "unknown-session")
        assert_problem(aaa.delete("/v1/sessions/not-hex"), 422)
    with deployment.service.client(deployment.ar1) as ar:
        for selector in ({"spi": session.spi}, {"hmk_name": session.hmk_name}):
            assert_problem(ar.post("/v1/handover-keys", json={"ar_address": address, **selector}), 404, "revoked")


def test_admin_revokes_and_revocation_by_mac(deployment: Deployment) -> None:
    first, second = ingest(deployment), ingest(deployment)
    with deployment.service.client(deployment.admin) as admin:
        assert admin.delete(f"/v1/sessions/{first.hmk_name}").status_code == 204
    with deployment.service.client(deployment.aaa) as aaa:
        response = aaa.post("/v1/sessions/revoke", json={"calling_station_id": second.mac, "cause": "accounting-stop"})
        assert response.status_code == 200 and response.json() == {"revoked": 1}
        again = aaa.post("/v1/sessions/revoke", json={"calling_station_id": second.mac})
        assert again.json() == {"revoked": 0}
        assert_problem(aaa.post("/v1/sessions/revoke", json={}), 422)
