"""FBU verification through a real server: every verdict the service gives (accepted, retransmission, replay,
forged, revoked, unknown), scoping to the caller's own PAR address, and 422s that name the field."""

from __future__ import annotations

import os
from typing import Any

import pytest

from aaa_fmip.crypto.badf import Algorithm
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.keys import HandoverKey
from aaa_fmip.wire import mh as mhwire
from tests.api._deploy import AR1_ADDRESSES, AR2_ADDRESSES, Deployment
from tests.api._helpers import IP, NCOA, PAR, PCOA, assert_problem, fbu_body, handover_key, ingest, verify


def test_accept_retransmission_replay_revoked(deployment: Deployment) -> None:
    session = ingest(deployment)
    hk = handover_key(session)
    first = fbu_body(hk, 100)

    response = verify(deployment, first)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "valid": True,
        "verdict": "accepted",
        "spi": session.spi,
        "sequence": 100,
        "ncoa": str(NCOA),
        "lifetime": 60,
    }
    again = verify(deployment, first).json()
    assert again["valid"] and again["verdict"] == "retransmission"

    assert verify(deployment, fbu_body(hk, 99)).json() == {"valid": False, "reason": "replay"}
    newer = verify(deployment, fbu_body(hk, 101)).json()
    assert newer["valid"] and newer["verdict"] == "accepted" and newer["sequence"] == 101

    with deployment.service.client(deployment.aaa) as aaa:
        assert aaa.delete(f"/v1/sessions/{session.hmk_name}").status_code == 204
    assert verify(deployment, fbu_body(hk, 102)).json() == {"valid": False, "reason": "revoked"}


def test_forged_authenticators_are_rejected(deployment: Deployment) -> None:
    session = ingest(deployment)
    genuine = handover_key(session)
    random_key = HandoverKey(SecretBytes(os.urandom(32)), genuine.hk_name, genuine.spi)
    assert verify(deployment, fbu_body(random_key, 7)).json() == {"valid": False, "reason": "bad-authenticator"}
    # The key of another router (ar2's address) does not authenticate an FBU to ar1.
    foreign = handover_key(session, IP(AR2_ADDRESSES[0]))
    assert verify(deployment, fbu_body(foreign, 8)).json() == {"valid": False, "reason": "bad-authenticator"}
    # A forged FBU leaves no replay state: the genuine one with the same number is still accepted.
    assert verify(deployment, fbu_body(genuine, 8)).json()["verdict"] == "accepted"


def test_unknown_spi(deployment: Deployment) -> None:
    key = HandoverKey(SecretBytes(os.urandom(32)), os.urandom(8), int.from_bytes(os.urandom(4), "big") | 1)
    assert verify(deployment, fbu_body(key, 1)).json() == {"valid": False, "reason": "unknown-spi"}


def test_variants_reactive_and_sha256(deployment: Deployment) -> None:
    session = ingest(deployment)
    hk = handover_key(session)
    reactive = verify(deployment, fbu_body(hk, 10, alternate_coa=False)).json()
    assert reactive["valid"] and reactive["ncoa"] == str(NCOA)  # no Alternate CoA: the source is the NCoA
    sha256 = verify(deployment, fbu_body(hk, 11, algorithm=Algorithm.HMAC_SHA256_128)).json()
    assert sha256["valid"] and sha256["verdict"] == "accepted"
    second_address = IP(AR1_ADDRESSES[1])
    other = verify(deployment, fbu_body(handover_key(session, second_address), 1, par=second_address)).json()
    assert other["valid"] and other["verdict"] == "accepted"


def test_a_router_verifies_only_fbus_sent_to_its_own_addresses(deployment: Deployment) -> None:
    session = ingest(deployment)
    par2 = IP(AR2_ADDRESSES[0])
    body = fbu_body(handover_key(session, par2), 1, par=par2)
    assert_problem(verify(deployment, body, cred=deployment.ar1), 403, "not-your-address")
    assert verify(deployment, body, cred=deployment.ar2).json()["verdict"] == "accepted"
    assert_problem(verify(deployment, body, cred=deployment.aaa), 403, "wrong-role")


@pytest.mark.parametrize(
    ("mutate", "field_prefix"),
    [
        (lambda mh: mh[:5], "mh"),  # truncated
        (lambda mh: mh[:4] + bytes([mh[4] ^ 0xFF]) + mh[5:], "mh.checksum"),  # corrupted (checksum fails)
        (lambda mh: b"\x00" + mh[1:], "mh"),  # Payload Proto not 59
        (lambda mh: b"", "mh"),
    ],
    ids=["truncated", "checksum", "payload-proto", "empty"],
)
def test_malformed_mobility_headers_are_422_naming_the_field(
    deployment: Deployment, mutate: Any, field_prefix: str
) -> None:
    session = ingest(deployment)
    body = fbu_body(handover_key(session), 1)
    body["mh"] = mutate(bytes.fromhex(body["mh"])).hex()
    problem = assert_problem(verify(deployment, body), 422)
    (error,) = problem["errors"]
    assert error["field"].startswith(field_prefix), problem
    assert problem["detail"].startswith(error["field"])


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"mh": "3b0z"}, "mh"),
        ({"mh": "3b0"}, "mh"),
        ({"source": "10.0.0.1"}, "source"),
        ({"destination": None}, "destination"),
    ],
)
def test_malformed_fields_are_422(deployment: Deployment, patch: dict[str, Any], field: str) -> None:
    body = {"source": str(PCOA), "destination": str(PAR), "mh": "3b00"}
    body.update(patch)
    problem = assert_problem(verify(deployment, body), 422, "invalid-request")
    assert field in [e["field"] for e in problem["errors"]]


def test_a_mobility_header_that_is_not_an_fbu_is_422(deployment: Deployment) -> None:
    badf = mhwire.BindingAuthorizationDataForFMIPv6(1, bytes(12))
    fback = mhwire.encode_mh(mhwire.FBack(0, 1, 15, (badf,)), source=PCOA, destination=PAR)
    body = {"source": str(PCOA), "destination": str(PAR), "mh": fback.hex()}
    assert_problem(verify(deployment, body), 422, "not-fbu")
