"""The whole RFC 5269 exchange against a real ``aaa-fmip serve`` and Redis:

MN (signed RtSolPr) → AR library → POST /v1/send/handover-key → AR library (signed PrRtAdv) → MN (certificate
path, router CGA, signature, decryption) → FBU with SPI 0 → POST /v1/fbu/verify "accepted".
tshark decodes the three packets independently.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip import ar, mn
from aaa_fmip.crypto import cga, rsa
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import mh as mhwire
from tests.api._deploy import Deployment
from tests.send._helpers import IP, NCOA, NEW_AP, PAR, StoreProbe, body_of, post_send, rtsolpr
from tests.send._pki import OpensslCA
from tests.support.pcap import tshark_fields, write_pcap

NAR_LLA = bytes.fromhex("02000000cc01")
NAR = icmpv6.IPAddressPrefix(icmpv6.IPAddressPrefixCode.NEW_ACCESS_ROUTER_ADDRESS, 128, NCOA)
NEIGHBOURHOOD: tuple[icmpv6.NDOption, ...] = (
    icmpv6.LinkLayerAddress(icmpv6.LinkLayerAddressCode.NEW_ACCESS_POINT, NEW_AP),
    icmpv6.LinkLayerAddress(icmpv6.LinkLayerAddressCode.NEW_ACCESS_ROUTER, NAR_LLA),
    NAR,
    icmpv6.IPAddressPrefix(icmpv6.IPAddressPrefixCode.NEW_ACCESS_ROUTER_PREFIX, 64, IP("2001:db8:2::")),
)


@dataclass(frozen=True)
class Exchange:
    request: mn.SignedRtSolPr
    body: dict[str, Any]
    reply: ar.ServiceReply
    prrtadv: ar.SignedPrRtAdv
    key: mn.SendHandoverKey
    fbu: mn.FbuPacket


@pytest.fixture(scope="module")
def exchange(
    deployment: Deployment,
    mn_identity: mn.CgaIdentity,
    encryption_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    router: ar.RouterIdentity,
    ca: OpensslCA,
) -> Exchange:
    # MN: a signed RtSolPr from its CGA to AR1, with a Handover Key Request for its encryption key.
    request = rtsolpr(mn_identity, encryption_keys[0], timestamp=time.time(), identifier=0x2A01)
    # AR: forwards what it received to the service ...
    received = ar.ReceivedRtSolPr.from_packet(request.ipv6_packet())
    response = post_send(deployment, received.service_request())
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    # ... and answers the MN with a PrRtAdv it signs itself.
    reply = ar.ServiceReply.from_json(body)
    prrtadv = ar.build_prrtadv(received, reply, router, timestamp=time.time(), options=NEIGHBOURHOOD)
    # MN: checks the router (certificate from the test CA, its CGA, the signature) and decrypts the key.
    key = mn.accept_prrtadv(
        request, prrtadv.message, source=prrtadv.source, certificate=router.certificate, trust_anchor=ca.certificate,
        now=time.time(),
    )  # fmt: skip
    fbu = mn.build_fbu_packet(
        key.handover_key(), sequence=7, lifetime_seconds=60, pcoa=mn_identity.address, ncoa=NCOA, par=PAR,
        home_address_option=True,
    )  # fmt: skip
    return Exchange(request, body, reply, prrtadv, key, fbu)


def fbu_body(packet: mn.FbuPacket) -> dict[str, Any]:
    return {
        "source": str(packet.source),
        "destination": str(packet.destination),
        "home_address": str(packet.home_address),
        "mh": packet.mh.hex(),
    }


def test_the_mn_gets_the_key_the_service_issued(exchange: Exchange, mn_identity: mn.CgaIdentity) -> None:
    body = exchange.body
    assert set(body) == {
        "handover_key_reply_option", "nonce", "identifier", "lifetime", "hk", "hk_expires_at", "algorithm",
        "key_hash", "reused",
    }  # fmt: skip
    assert exchange.key.hk.reveal().hex() == body["hk"]
    assert len(bytes.fromhex(body["hk"])) == 32
    assert (exchange.key.lifetime, body["lifetime"]) == (43200, 43200)  # RFC 5269 HK-LIFETIME
    assert exchange.key.algorithm is mn.Algorithm.HMAC_SHA1_96 and body["algorithm"] == "HMAC-SHA1-96"
    assert bytes.fromhex(body["nonce"]) == exchange.request.nonce
    assert body["identifier"] == 0x2A01 and body["reused"] is False
    assert body["key_hash"] == cga.key_hash(mn_identity.public_key).hex()
    assert body["hk_expires_at"].endswith("Z")
    option = exchange.reply.handover_key_reply
    assert option.encode().hex() == body["handover_key_reply_option"]
    assert len(option.encrypted_key) == 256  # RSAES-PKCS1-v1_5 under the MN's RSA-2048 encryption key


def test_prrtadv_layout(exchange: Exchange, router: ar.RouterIdentity, mn_identity: mn.CgaIdentity) -> None:
    p = exchange.prrtadv
    assert (p.source, p.destination) == (router.address, mn_identity.address)
    assert p.source.is_link_local
    msg = icmpv6.decode_icmpv6(p.message, source=p.source, destination=p.destination)
    assert isinstance(msg, icmpv6.PrRtAdv) and msg.identifier == 0x2A01 and msg.code == 0
    kinds = [type(o).__name__ for o in msg.options]
    assert kinds == [
        "LinkLayerAddress", "LinkLayerAddress", "IPAddressPrefix", "IPAddressPrefix", "HandoverKeyReply",
        "CGAOption", "Timestamp", "Nonce", "RSASignature",
    ]  # fmt: skip
    assert msg.options[-2] == icmpv6.Nonce(exchange.request.nonce)
    assert p.ipv6_packet()[7] == 255


def test_spi0_fbu_accepted_then_retransmission_then_replay(deployment: Deployment, exchange: Exchange) -> None:
    assert mhwire.badf_input(exchange.fbu.mh).spi == 0
    with deployment.service.client(deployment.ar1) as client:
        first = client.post("/v1/fbu/verify", json=fbu_body(exchange.fbu))
        again = client.post("/v1/fbu/verify", json=fbu_body(exchange.fbu))
        older = mn.build_fbu_packet(
            exchange.key.handover_key(), sequence=6, lifetime_seconds=60, pcoa=exchange.request.source, ncoa=NCOA,
            par=PAR, home_address_option=True,
        )  # fmt: skip
        replay = client.post("/v1/fbu/verify", json=fbu_body(older))
        wrong_key = mn.build_fbu_packet(
            mn.SendHandoverKey(SecretBytes(bytes(32)), 60, mn.Algorithm.HMAC_SHA1_96).handover_key(),
            sequence=8, lifetime_seconds=60, pcoa=exchange.request.source, ncoa=NCOA, par=PAR,
            home_address_option=True,
        )  # fmt: skip
        forged = client.post("/v1/fbu/verify", json=fbu_body(wrong_key))
    assert first.status_code == 200, first.text
    assert first.json() == {
        "valid": True, "verdict": "accepted", "spi": 0, "sequence": 7, "ncoa": str(NCOA), "lifetime": 60,
    }  # fmt: skip
    assert again.json()["verdict"] == "retransmission"
    assert replay.json() == {"valid": False, "reason": "replay"}
    assert forged.json() == {"valid": False, "reason": "bad-authenticator"}


def test_the_store_holds_the_key_wrapped_and_indexed(
    probe: StoreProbe, exchange: Exchange, mn_identity: mn.CgaIdentity
) -> None:
    record = probe.key_of(mn_identity)
    assert record is not None
    assert record.hk.reveal().hex() == exchange.body["hk"] and record.cga == mn_identity.address
    assert record.expires_at - record.created_at == 43200
    for name in probe.send_key_names():
        value = probe.raw.get(name) or b""
        assert exchange.body["hk"].encode() not in value and bytes.fromhex(exchange.body["hk"]) not in value


def test_audit_names_identifiers_only(deployment: Deployment, exchange: Exchange) -> None:
    with deployment.service.client(deployment.auditor) as client:
        page = client.get("/v1/audit", params={"event": "send.hk.issued"})
    assert page.status_code == 200, page.text
    entries = [e for e in page.json()["entries"] if e["fields"]["key_hash"] == exchange.body["key_hash"]]
    assert entries and entries[0]["fields"] == {
        "actor": "ar1", "ar": "ar1", "ar_address": str(PAR), "cga": str(exchange.request.source),
        "key_hash": exchange.body["key_hash"], "spi": 0, "identifier": 0x2A01, "algorithm": "HMAC-SHA1-96",
        "lifetime": 43200, "reused": False,
    }  # fmt: skip
    assert exchange.body["hk"] not in page.text


def test_a_repeated_request_gets_the_same_key_encrypted_to_the_new_key(
    deployment: Deployment,
    exchange: Exchange,
    mn_identity: mn.CgaIdentity,
    encryption_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    router: ar.RouterIdentity,
    ca: OpensslCA,
    probe: StoreProbe,
) -> None:
    before = probe.key_of(mn_identity)
    request = rtsolpr(mn_identity, encryption_keys[1], timestamp=time.time(), identifier=0x2A02)
    response = post_send(deployment, body_of(request))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hk"] == exchange.body["hk"] and body["reused"] is True
    assert 0 < body["lifetime"] <= 43200
    assert body["handover_key_reply_option"] != exchange.body["handover_key_reply_option"]
    received = ar.ReceivedRtSolPr(request.source, request.destination, request.message)
    prrtadv = ar.build_prrtadv(received, ar.ServiceReply.from_json(body), router, timestamp=time.time())
    key = mn.accept_prrtadv(
        request, prrtadv.message, source=prrtadv.source, certificate=router.certificate, trust_anchor=ca.certificate,
        now=time.time(),
    )  # fmt: skip
    assert key.hk == exchange.key.hk
    # The first encryption key cannot read the second reply: it was encrypted to the key of the new request.
    first_request = exchange.request
    with pytest.raises(mn.NoHandoverKeyReply):
        mn.decrypt_handover_key_reply(first_request, prrtadv.message, source=prrtadv.source, router_public_key=None)
    assert probe.key_of(mn_identity) == before  # nothing rewritten: same HK, same expiry


# --- tshark: an independent decoder of the three packets ------------------------------------------------------

FIELDS = [
    "ipv6.src", "ipv6.dst", "ipv6.hlim", "icmpv6.type", "icmpv6.checksum.status", "icmpv6.fmip6.subtype",
    "icmpv6.fmip6.identifier", "icmpv6.opt.type", "icmpv6.opt.lla.option_code", "icmpv6.opt.hkr.pad_length",
    "icmpv6.opt.hkr.at", "icmpv6.opt.hkr.encryption_public_key", "icmpv6.opt.hkr.lifetime",
    "icmpv6.opt.hkr.encrypted_handover_key", "icmpv6.opt.cga.modifier", "icmpv6.opt.cga.subnet_prefix",
    "icmpv6.opt.cga.count", "icmpv6.opt.rsa.key_hash", "icmpv6.opt.timestamp", "icmpv6.opt.nonce",
    "icmpv6.opt.ipa.option_code", "icmpv6.opt.ipa.ipv6_address", "mip6.mhtype", "mip6.fbu.seqnr",
    "mip6.fbu.h_flag", "_ws.expert.message",
]  # fmt: skip

# Wireshark 4.0's RFC 5269 dissector advances one octet past the padding whatever the Pad Length, so an option
# 27/28 with Pad Length >= 2 gets a false "Unknown Data (not interpreted)" although every field decodes
# (docs/send-fallback.md). RSA-2048 gives Pad Length 6 in option 27 and 2 in option 28.
WIRESHARK_PAD_QUIRK = "Unknown Data (not interpreted)"


def tshark_timestamp(text: str) -> float:
    """tshark prints the Timestamp option as e.g. ``Nov 27, 2026 04:49:47.075317382 UTC``."""
    stamp, _, fraction = text.removesuffix(" UTC").rpartition(".")
    whole = calendar.timegm(time.strptime(stamp, "%b %d, %Y %H:%M:%S"))
    return whole + float("0." + fraction)


def our_timestamp(message: bytes) -> float:
    decoded = icmpv6.decode_icmpv6(message)
    assert not isinstance(decoded, icmpv6.UnknownIcmpv6Message)
    (ts,) = (o for o in decoded.options if isinstance(o, icmpv6.Timestamp))
    return ts.seconds


def test_tshark_decodes_rtsolpr_prrtadv_and_fbu(
    tmp_path: Path,
    exchange: Exchange,
    mn_identity: mn.CgaIdentity,
    router: ar.RouterIdentity,
    encryption_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    pcap = write_pcap(
        tmp_path / "send.pcap",
        [exchange.request.ipv6_packet(), exchange.prrtadv.ipv6_packet(), exchange.fbu.ipv6_packet()],
    )
    sol, adv, fbu = tshark_fields(pcap, FIELDS)

    # RtSolPr: MN CGA → AR1, options 19 (sender LLA, new AP), 27, 11, 13, 14, 12.
    assert (sol["ipv6.src"], sol["ipv6.dst"], sol["ipv6.hlim"]) == ([str(mn_identity.address)], [str(PAR)], ["255"])
    assert (sol["icmpv6.type"], sol["icmpv6.fmip6.subtype"]) == (["154"], ["2"])
    assert sol["icmpv6.checksum.status"] == ["1"]  # good
    assert sol["icmpv6.fmip6.identifier"] == [str(0x2A01)]
    assert sol["icmpv6.opt.type"] == ["19", "19", "27", "11", "13", "14", "12"]
    assert sol["icmpv6.opt.lla.option_code"] == ["4", "1"]
    assert sol["icmpv6.opt.hkr.at"] == ["1"] and sol["icmpv6.opt.hkr.pad_length"] == ["6"]
    assert sol["icmpv6.opt.hkr.encryption_public_key"] == [rsa.public_key_der(encryption_keys[0]).hex()]
    params = mn_identity.parameters
    assert sol["icmpv6.opt.cga.modifier"] == [params.modifier.hex()]
    assert sol["icmpv6.opt.cga.subnet_prefix"] == [params.subnet_prefix.hex()]
    assert sol["icmpv6.opt.cga.count"] == ["00"]
    assert sol["icmpv6.opt.rsa.key_hash"] == [cga.key_hash(mn_identity.public_key).hex()]
    assert sol["icmpv6.opt.nonce"] == [exchange.request.nonce.hex()]
    (ts,) = sol["icmpv6.opt.timestamp"]
    assert tshark_timestamp(ts) == pytest.approx(our_timestamp(exchange.request.message), abs=1e-4)
    assert sol["_ws.expert.message"] == [WIRESHARK_PAD_QUIRK]  # only the option-27 quirk

    # PrRtAdv: router CGA → MN CGA, neighbourhood options, then 28, 11, 13, 14 (echoed), 12.
    assert (adv["ipv6.src"], adv["ipv6.dst"]) == ([str(router.address)], [str(mn_identity.address)])
    assert (adv["icmpv6.fmip6.subtype"], adv["icmpv6.checksum.status"]) == (["3"], ["1"])
    assert adv["icmpv6.fmip6.identifier"] == [str(0x2A01)]
    assert adv["icmpv6.opt.type"] == ["19", "19", "17", "17", "28", "11", "13", "14", "12"]
    assert adv["icmpv6.opt.lla.option_code"] == ["1", "3"]
    assert adv["icmpv6.opt.ipa.option_code"] == ["3", "4"]
    assert adv["icmpv6.opt.ipa.ipv6_address"] == [str(NCOA), "2001:db8:2::"]
    reply = exchange.reply.handover_key_reply
    assert adv["icmpv6.opt.hkr.at"] == ["1"] and adv["icmpv6.opt.hkr.pad_length"] == ["2"]
    assert adv["icmpv6.opt.hkr.lifetime"] == ["43200"]
    assert adv["icmpv6.opt.hkr.encrypted_handover_key"] == [reply.encrypted_key.hex()]
    assert adv["icmpv6.opt.cga.subnet_prefix"] == [router.parameters.subnet_prefix.hex()] == ["fe80000000000000"]
    assert adv["icmpv6.opt.rsa.key_hash"] == [cga.key_hash(router.public_key).hex()]
    assert adv["icmpv6.opt.nonce"] == sol["icmpv6.opt.nonce"]
    (ts,) = adv["icmpv6.opt.timestamp"]
    assert tshark_timestamp(ts) == pytest.approx(our_timestamp(exchange.prrtadv.message), abs=1e-4)
    assert adv["_ws.expert.message"] == [WIRESHARK_PAD_QUIRK]  # only the option-28 quirk

    # FBU with SPI 0 from the CGA (Home Address option) to the PAR.
    assert fbu["mip6.mhtype"] == ["8"] and fbu["mip6.fbu.seqnr"] == ["7"] and fbu["mip6.fbu.h_flag"] == ["1"]
    assert fbu["ipv6.dst"] == [str(PAR)]
