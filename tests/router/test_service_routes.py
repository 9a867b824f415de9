"""The service's routes for router agents (revocation feed, verdict reports, FBack authenticator), against a real
``aaa-fmip serve`` on a real redis-server."""

from __future__ import annotations

import time

from aaa_fmip import mn
from aaa_fmip.wire import mh as mhwire
from tests.router._pair import EMSK, MN_LLA, NAR, PAR, PCOA, SESSION_ID, node_key, predictive_fbu
from tests.router.conftest import KeyServiceDeployment


def _params(cursor: str | None, **extra: float) -> dict[str, str | float]:
    return {**({"cursor": cursor} if cursor is not None else {}), **extra}


def test_revocation_feed_is_scoped_resumable_and_waits(key_service: KeyServiceDeployment) -> None:
    with key_service.service.client(key_service.par) as par, key_service.service.client(key_service.nar) as nar:
        start = par.get("/v1/revocations").json()
        cursor = start["cursor"]
        while start["more"]:  # catch up with the stream first
            start = par.get("/v1/revocations", params=_params(cursor)).json()
            cursor = start["cursor"]
        nar_cursor = cursor
        lla = bytes.fromhex("020000000077")
        emsk, sid = bytes(range(2, 66)), b"\x0d" + bytes(range(3, 67))
        created = key_service.ingest(emsk=emsk, session_id=sid, mn_lla=lla)
        began = time.monotonic()
        key_service.revoke(lla)
        page = par.get("/v1/revocations", params=_params(cursor, wait=4)).json()
        assert time.monotonic() - began < 4  # answered when the revocation came, not at the end of the wait
        [revocation] = page["revocations"]
        master = mn.derive_master_key(emsk=emsk, eap_session_id=sid)
        assert revocation["spi"] == created["spi"] == master.spi
        # exactly the names of the keys this router can hold (its own addresses), nothing else
        assert revocation["hk_names"] == {str(PAR): mn.derive_handover_key(master, PAR).hk_name.hex()}
        assert page["more"] is False
        again = par.get("/v1/revocations", params={"cursor": page["cursor"]}).json()
        assert again["revocations"] == []
        other = nar.get("/v1/revocations", params=_params(nar_cursor)).json()
        assert [r["hk_names"] for r in other["revocations"]] == [
            {str(NAR): mn.derive_handover_key(master, NAR).hk_name.hex()}
        ]
        assert par.get("/v1/revocations", params={"cursor": "nope"}).status_code == 422
    with key_service.service.client(key_service.aaa) as aaa:
        assert aaa.get("/v1/revocations").status_code == 403


def test_verdict_reports_land_in_the_audit_trail(key_service: KeyServiceDeployment) -> None:
    verdict = {"ar_address": str(PAR), "spi": 4242, "sequence": 7, "outcome": "rejected", "reason": "replay"}
    with key_service.service.client(key_service.par) as par:
        response = par.post("/v1/fbu/verdicts", json={"verdicts": [{**verdict, "at": time.time()}]})
        assert response.status_code == 200 and response.json() == {"recorded": 1}
        forbidden = par.post("/v1/fbu/verdicts", json={"verdicts": [{**verdict, "ar_address": str(NAR), "at": 1.0}]})
        assert forbidden.status_code == 403
        bad = par.post("/v1/fbu/verdicts", json={"verdicts": [{**verdict, "reason": "Bad Reason", "at": 1.0}]})
        assert bad.status_code == 422
    with key_service.service.client(key_service.auditor) as auditor:
        entries = auditor.get("/v1/audit", params={"event": "fbu.rejected", "spi": 4242}).json()["entries"]
    assert [(e["fields"]["ar"], e["fields"]["reason"], e["fields"]["reported"]) for e in entries] == [
        ("par", "replay", 1)
    ]


def test_fback_authenticator_for_a_router_without_keys(key_service: KeyServiceDeployment) -> None:
    key_service.ingest(emsk=EMSK, session_id=SESSION_ID, mn_lla=MN_LLA)
    hk = node_key()
    unsigned = mhwire.encode_mh(
        mhwire.FBack(0, 9, 15, (mhwire.BindingAuthorizationDataForFMIPv6(hk.spi, bytes(12)),)),
        source=PAR,
        destination=PCOA,
    )
    body = {"source": str(PAR), "destination": str(PCOA), "mh": unsigned.hex()}
    with key_service.service.client(key_service.par) as par:
        response = par.post("/v1/fback/authenticator", json=body)
        assert response.status_code == 200, response.text
        signed = bytes.fromhex(response.json()["mh"])
        fback = mn.verify_fback(hk, signed, par=PAR, destination=PCOA)  # the node accepts it
        assert (fback.status, fback.sequence) == (0, 9)
        fbu = {**body, "mh": predictive_fbu().mh.hex()}
        assert par.post("/v1/fback/authenticator", json=fbu).json()["reason"] == "not-fback"
        assert par.post("/v1/fback/authenticator", json={**body, "source": str(NAR)}).status_code == 403
