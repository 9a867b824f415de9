"""The mobile node's side of a test: keys from what eapol_test printed, FBUs built by the MN library, verified by
the PAR through ``POST /v1/fbu/verify`` of the real service."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import httpx

from aaa_fmip import mn
from aaa_fmip.keys import HandoverMasterKey
from aaa_fmip.wire import mh as mhwire
from tests.radius._stack import AR_ADDRESS

PCOA = ipaddress.IPv6Address("2001:db8:1::100")
NCOA = ipaddress.IPv6Address("2001:db8:3::100")
ATTACKER = ipaddress.IPv6Address("2001:db8:666::1")


def master_key(emsk: bytes, session_id: bytes) -> HandoverMasterKey:
    return mn.derive_master_key(emsk=emsk, eap_session_id=session_id)


def fbu(master: HandoverMasterKey, sequence: int, par: ipaddress.IPv6Address = AR_ADDRESS) -> bytes:
    hk = mn.derive_handover_key(master, par)
    return mn.build_fbu(hk, sequence=sequence, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=par)


def redirect(mh: bytes, par: ipaddress.IPv6Address = AR_ADDRESS) -> bytes:
    """The same FBU with its NCoA replaced by an attacker's address; checksum fixed, authenticator kept."""
    message = mhwire.decode_mh(mh, source=PCOA, destination=par)
    assert isinstance(message, mhwire.FBU)
    options = tuple(
        mhwire.AlternateCareOfAddress(ATTACKER) if isinstance(o, mhwire.AlternateCareOfAddress) else o
        for o in message.options
    )
    return mhwire.encode_mh(dataclasses.replace(message, options=options), source=PCOA, destination=par)


def verify(client: httpx.Client, mh: bytes, par: ipaddress.IPv6Address = AR_ADDRESS) -> dict[str, Any]:
    response = client.post("/v1/fbu/verify", json={"source": str(PCOA), "destination": str(par), "mh": mh.hex()})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
