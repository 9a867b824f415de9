"""Small builders shared by the API tests."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

import httpx

from aaa_fmip import mn
from aaa_fmip.keys import HandoverKey
from tests.api._deploy import AR1_ADDRESSES, Deployment

PROBLEM_KEYS = {"type", "title", "status", "detail"}


@dataclass
class Session:
    emsk: bytes
    eap_session_id: bytes
    mac: str
    created: dict[str, Any]

    @property
    def hmk_name(self) -> str:
        return str(self.created["hmk_name"])

    @property
    def spi(self) -> int:
        return int(self.created["spi"])


def new_mac() -> str:
    return "02-" + "-".join(f"{b:02x}" for b in os.urandom(5))


def ingest(d: Deployment, *, hex_prefix: str = "", **extra: Any) -> Session:
    emsk, sid, mac = os.urandom(64), b"\x0d" + os.urandom(64), new_mac()
    body = {
        "emsk": hex_prefix + emsk.hex(),
        "eap_session_id": hex_prefix + sid.hex(),
        "user_name": "alice@example.net",
        "calling_station_id": mac,
        "nas_identifier": "ar1",
        **extra,
    }
    with d.service.client(d.aaa) as client:
        response = client.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    return Session(emsk, sid, mac, response.json())


def assert_problem(response: httpx.Response, status: int, reason: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    assert "Traceback" not in response.text
    if reason is not None:
        assert body.get("reason") == reason, body
    return body


IP = ipaddress.IPv6Address
PAR = IP(AR1_ADDRESSES[0])
PCOA = IP("2001:db8:1::100")
NCOA = IP("2001:db8:2::100")


def handover_key(session: Session, par: IP = PAR) -> HandoverKey:
    master = mn.derive_master_key(emsk=session.emsk, eap_session_id=session.eap_session_id)
    return mn.derive_handover_key(master, par)


def fbu_body(hk: HandoverKey, sequence: int, *, par: IP = PAR, **kw: Any) -> dict[str, Any]:
    packet = mn.build_fbu_packet(hk, sequence=sequence, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=par, **kw)
    body: dict[str, Any] = {"source": str(packet.source), "destination": str(packet.destination), "mh": packet.mh.hex()}
    if packet.home_address is not None:
        body["home_address"] = str(packet.home_address)
    return body


def verify(d: Deployment, body: dict[str, Any], *, cred: Any = None) -> Any:
    with d.service.client(cred or d.ar1) as client:
        return client.post("/v1/fbu/verify", json=body)
