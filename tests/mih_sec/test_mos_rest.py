"""POST /v1/mih/psk through a real ``aaa-fmip serve``: the key a MoS gets is the one the node derives, scoped to
the MoS's own MIHF-ID, refused for revoked or unknown sessions, audited without key material."""

from __future__ import annotations

from typing import Any

import pytest

from aaa_fmip import mn
from tests.api._helpers import assert_problem
from tests.mih_sec._stack import MOS1_ID, MOS2_ID, MosCredential, Stack, fetch_psk, ingest


def audit_entries(stack: Stack, event: str) -> list[dict[str, Any]]:
    with stack.service.client(stack.auditor) as client:
        response = client.get("/v1/audit", params={"event": event, "limit": 1000})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def test_mos_gets_the_key_the_node_derives(stack: Stack) -> None:
    node = ingest(stack)
    expected = mn.derive_mih_psk(node.master, MOS1_ID)
    assert expected.identity == node.hmk_name
    response = fetch_psk(stack, stack.mos1, node.hmk_name, MOS1_ID)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["psk"] == expected.psk.hex() and len(bytes.fromhex(body["psk"])) == 32
    assert (body["psk_identity"], body["mihf_id"]) == (node.hmk_name, MOS1_ID)
    assert 0 < body["lifetime"] <= 43200
    # the other MoS gets a different key for the same node (RFC 4962 key scoping)
    other = fetch_psk(stack, stack.mos2, node.hmk_name, MOS2_ID)
    assert other.status_code == 200
    assert other.json()["psk"] == mn.derive_mih_psk(node.master, MOS2_ID).psk.hex() != body["psk"]
    issued = [e for e in audit_entries(stack, "mih_psk.issued") if e["fields"].get("hmk_name") == node.hmk_name]
    assert {(e["fields"]["actor"], e["fields"]["mihf_id"]) for e in issued} == {("mos1", MOS1_ID), ("mos2", MOS2_ID)}
    text = str(audit_entries(stack, "mih_psk.issued")) + stack.service.logs()
    assert body["psk"] not in text and other.json()["psk"] not in text


def test_a_mos_cannot_get_another_mos_key(stack: Stack) -> None:
    node = ingest(stack)
    body = assert_problem(fetch_psk(stack, stack.mos1, node.hmk_name, MOS2_ID), 403, "not-your-mihf-id")
    assert "psk" not in body
    denied = audit_entries(stack, "mih_psk.denied")
    assert any(e["fields"] == {"actor": "mos1", "mihf_id": MOS2_ID} for e in denied)


def test_other_roles_and_unknown_tokens_are_refused(stack: Stack) -> None:
    node = ingest(stack)
    with stack.service.client(stack.aaa) as client:
        body = {"psk_identity": node.hmk_name, "mihf_id": MOS1_ID}
        assert_problem(client.post("/v1/mih/psk", json=body), 403, "wrong-role")
    stranger = MosCredential("nobody", (MOS1_ID,))
    assert_problem(fetch_psk(stack, stranger, node.hmk_name, MOS1_ID), 401, "invalid-token")


def test_revoked_session_is_refused(stack: Stack) -> None:
    node = ingest(stack)
    assert fetch_psk(stack, stack.mos1, node.hmk_name, MOS1_ID).status_code == 200
    with stack.service.client(stack.aaa) as client:
        assert client.delete(f"/v1/sessions/{node.hmk_name}").status_code == 204
    assert_problem(fetch_psk(stack, stack.mos1, node.hmk_name, MOS1_ID), 404, "revoked")


def test_unknown_identity(stack: Stack) -> None:
    assert_problem(fetch_psk(stack, stack.mos1, "00" * 8, MOS1_ID), 404, "unknown-session")


@pytest.mark.parametrize(
    ("identity", "mihf_id", "reason"),
    [
        ("3C1527595CD7FF6A", MOS1_ID, "bad-psk-identity"),  # upper case: not the identity's encoding
        ("3c1527595cd7ff", MOS1_ID, "bad-psk-identity"),
        ("zz" * 8, MOS1_ID, "bad-psk-identity"),
        ("00" * 8, "mos 1.example.net", "bad-mihf-id"),
        ("00" * 8, "", "bad-mihf-id"),
    ],
)
def test_malformed_requests(stack: Stack, identity: str, mihf_id: str, reason: str) -> None:
    assert_problem(fetch_psk(stack, stack.mos1, identity, mihf_id), 422, reason)


def test_unexpected_fields_are_refused(stack: Stack) -> None:
    with stack.service.client(stack.mos1) as client:  # type: ignore[arg-type]
        response = client.post("/v1/mih/psk", json={"psk_identity": "00" * 8, "mihf_id": MOS1_ID, "x": 1})
    assert_problem(response, 422)


def test_openapi_documents_the_route(stack: Stack) -> None:
    with stack.service.client() as client:
        spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/mih/psk"]["post"]
    assert operation["security"] == [{"bearer": []}]
    assert {"200", "401", "403", "404", "422"} <= set(operation["responses"])
    assert "mos" in operation["description"]
