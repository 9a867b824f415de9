"""The Handover-Key application over real TCP: a python-diameter AR client against our node, real Redis.

Covers the key query (by Key-SPI, Calling-Station-Id, Key-Name), the FBU-verify mode with FBUs built by
:mod:`aaa_fmip.mn` from the EMSK → DSRK path, and every error answer: 5030, 5003, 5005, 5004, 5007 (with
Failed-AVP), 3004 (store down, E bit), 3007 (application not offered to the peer) and 3010 (unknown peer).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from diameter.message import Message, MessageHeader
from diameter.message import constants as c
from diameter.message.avp import Avp
from diameter.message.commands import CapabilitiesExchangeRequest

from aaa_fmip import mn
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.diameter.client import HandoverKeyClient
from aaa_fmip.diameter.dictionary import DiameterDictionary
from aaa_fmip.diameter.server import PeerConfig
from aaa_fmip.model import SessionInfo, SessionRequest, VisitedKeys
from tests.diameter.peers import MobileNode
from tests.diameter.stack import AAA, NCOA, PAR1, PAR2, PCOA, REALM, Stack, start_stack
from tests.support.redis_server import RedisServer

PEERS = (
    PeerConfig("ar1.fmip.test", "ar"),
    PeerConfig("ar2.fmip.test", "ar"),
    PeerConfig("ar9.fmip.test", "ar"),  # a configured peer that no [[access_routers]] entry names
    PeerConfig("nas1.fmip.test", "nas"),
)
V = 32473


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, dictionary: DiameterDictionary) -> Iterator[Stack]:
    s = start_stack(redis_server.url, dictionary, PEERS)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def ar1(stack: Stack) -> Iterator[HandoverKeyClient]:
    client = stack.client("ar1.fmip.test")
    yield client
    client.stop()


@pytest.fixture(scope="module")
def ar2(stack: Stack) -> Iterator[HandoverKeyClient]:
    client = stack.client("ar2.fmip.test")
    yield client
    client.stop()


def ingest(stack: Stack, node: MobileNode) -> SessionInfo:
    info: SessionInfo = stack.service.ingest_session(
        AAA,
        SessionRequest(
            user_name=node.user_name,
            keys=VisitedKeys(SecretBytes(node.dsrk(REALM)), node.emsk_name),
            calling_station_id=node.calling_station_id,
            lifetime=3600,
        ),
    )
    return info


def mn_handover_key(node: MobileNode, par: ipaddress.IPv6Address) -> mn.HandoverKey:
    master = mn.derive_master_key(dsrk=node.dsrk(REALM), emsk_name=node.emsk_name)
    return mn.derive_handover_key(master, par)


def failed(answer: Any) -> list[tuple[int, int]]:
    return [(a.code, a.vendor_id) for a in answer.failed_avp.additional_avps] if answer.failed_avp else []


# ------------------------------------------------------------------------------------------------ key query


def test_key_by_spi_is_the_hk_the_mn_derives(stack: Stack, ar1: HandoverKeyClient) -> None:
    node = MobileNode("alice@home.test")
    info = ingest(stack, node)
    answer = ar1.handover_key(PAR1, spi=info.spi)
    expected = mn_handover_key(node, PAR1)
    assert answer.ok, answer
    assert answer.hk == expected.hk
    assert (answer.hk_name, answer.spi) == (expected.hk_name, expected.spi)
    assert answer.key_type == ar1.key_type_hk == 32473
    assert answer.algorithm == "HMAC-SHA1-96"
    assert answer.lifetime is not None and 3590 <= answer.lifetime <= 3600


def test_key_by_calling_station_id_and_by_key_name(stack: Stack, ar1: HandoverKeyClient) -> None:
    node = MobileNode("bob@home.test")
    info = ingest(stack, node)
    expected = mn_handover_key(node, PAR1)
    by_mac = ar1.handover_key(PAR1, calling_station_id=node.calling_station_id.upper())
    by_name = ar1.handover_key(PAR1, hmk_name=info.hmk_name)
    assert by_mac.hk == by_name.hk == expected.hk


def test_each_ar_gets_its_own_key(stack: Stack, ar1: HandoverKeyClient, ar2: HandoverKeyClient) -> None:
    node = MobileNode("carol@home.test")
    info = ingest(stack, node)
    k1 = ar1.handover_key(PAR1, spi=info.spi)
    k2 = ar2.handover_key(PAR2, spi=info.spi)
    assert k1.ok and k2.ok
    assert k1.hk != k2.hk
    assert k2.hk == mn_handover_key(node, PAR2).hk


# ------------------------------------------------------------------------------------------------ FBU verify


def test_fbu_accepted_retransmission_replay_forged(stack: Stack, ar1: HandoverKeyClient) -> None:
    node = MobileNode("dave@home.test")
    info = ingest(stack, node)
    hk = mn_handover_key(node, PAR1)
    fbu7 = mn.build_fbu(hk, sequence=7, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR1)

    first = ar1.verify_fbu(ar_address=PAR1, source=PCOA, mh=fbu7)
    assert (first.result_code, first.verdict, first.spi, first.sequence) == (2001, "accepted", info.spi, 7)
    assert (first.ncoa, first.lifetime) == (NCOA, 60)

    again = ar1.verify_fbu(ar_address=PAR1, source=PCOA, mh=fbu7)
    assert (again.result_code, again.verdict) == (2001, "retransmission")

    fbu6 = mn.build_fbu(hk, sequence=6, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    old = ar1.verify_fbu(ar_address=PAR1, source=PCOA, mh=fbu6)
    assert (old.result_code, old.verdict, old.reason) == (4001, "rejected", "replay")

    wrong_key = mn.HandoverKey(SecretBytes(os.urandom(32)), hk.hk_name, hk.spi)  # right SPI, wrong key
    fbu8 = mn.build_fbu(wrong_key, sequence=8, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    forged = ar1.verify_fbu(ar_address=PAR1, source=PCOA, mh=fbu8)
    assert (forged.result_code, forged.verdict, forged.reason) == (4001, "rejected", "bad-authenticator")


def test_fbu_with_unknown_spi_is_rejected(ar1: HandoverKeyClient) -> None:
    hk = mn_handover_key(MobileNode("nobody@home.test"), PAR1)
    fbu = mn.build_fbu(hk, sequence=1, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    answer = ar1.verify_fbu(ar_address=PAR1, source=PCOA, mh=fbu)
    assert (answer.result_code, answer.verdict, answer.reason) == (4001, "rejected", "unknown-spi")


def test_malformed_mobility_header_is_5004_naming_it(ar1: HandoverKeyClient) -> None:
    answer = ar1.verify_fbu(ar_address=PAR1, source=PCOA, mh=b"\x3b\x01\x08\x00")
    assert answer.result_code == 5004
    assert answer.failed_avps == ((5, V),)


def test_fbu_verify_for_another_routers_address_is_5003(stack: Stack, ar1: HandoverKeyClient) -> None:
    node = MobileNode("erin@home.test")
    ingest(stack, node)
    fbu = mn.build_fbu(mn_handover_key(node, PAR2), sequence=1, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR2)
    assert ar1.verify_fbu(ar_address=PAR2, source=PCOA, mh=fbu).result_code == 5003


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_session_is_5030(ar1: HandoverKeyClient) -> None:
    answer = ar1.handover_key(PAR1, spi=0x0BADF00D)
    assert answer.result_code == 5030
    assert answer.hk is None


def test_revoked_session_is_5030(stack: Stack, ar1: HandoverKeyClient) -> None:
    node = MobileNode("frank@home.test")
    info = ingest(stack, node)
    assert ar1.handover_key(PAR1, spi=info.spi).ok
    stack.service.revoke_session(AAA, info.hmk_name)
    assert ar1.handover_key(PAR1, spi=info.spi).result_code == 5030


def test_another_routers_key_is_5003(stack: Stack, ar1: HandoverKeyClient) -> None:
    info = ingest(stack, MobileNode("grace@home.test"))
    answer = ar1.handover_key(PAR2, spi=info.spi)  # PAR2 belongs to ar2
    assert answer.result_code == 5003
    assert answer.hk is None


def test_origin_host_must_be_the_sending_ar(stack: Stack, ar1: HandoverKeyClient) -> None:
    info = ingest(stack, MobileNode("heidi@home.test"))
    request = ar1.new_request()
    request.origin_host = b"ar2.fmip.test"  # ar1's connection speaking for ar2
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR2))
    request.append_avp(ar1.codec.new("Key-SPI", info.spi))
    assert ar1.send(request).result_code == 5003


def test_unregistered_router_is_5003(stack: Stack) -> None:
    info = ingest(stack, MobileNode("ivan@home.test"))
    with stack.client("ar9.fmip.test") as rogue:
        assert rogue.handover_key(PAR1, spi=info.spi).result_code == 5003


def test_missing_ar_address_is_5005_with_failed_avp(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request()
    request.append_avp(ar1.codec.new("Key-SPI", 1))
    answer = ar1.send(request)
    assert answer.result_code == 5005
    assert failed(answer) == [(2, V)]
    # RFC 6733 §7.5: the missing AVP with a zero-filled value of its minimum length (an IPv6 Address: 18 octets)
    member = answer.failed_avp.additional_avps[0]
    assert (member.flags, member.payload) == (0xC0, bytes(18))
    assert not answer.header.is_error


def test_missing_selector_is_5005(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request(mode=None)  # no FMIP-Request-Type: a key query
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    answer = ar1.send(request)
    assert answer.result_code == 5005
    assert failed(answer) == [(585, 0)]
    assert answer.failed_avp.additional_avps[0].payload == bytes(4)  # Key-SPI: Unsigned32, zero-filled


def test_missing_base_avp_is_5005_from_the_node(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request()
    request.destination_realm = None
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    answer = ar1.send(request)
    assert answer.result_code == 5005
    assert failed(answer) == [(c.AVP_DESTINATION_REALM, 0)]


def test_missing_base_unsigned32_is_zero_filled_by_the_node(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request()
    request.auth_application_id = None
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    request.append_avp(ar1.codec.new("Key-SPI", 1))
    answer = ar1.send(request)
    assert answer.result_code == 5005
    assert failed(answer) == [(c.AVP_AUTH_APPLICATION_ID, 0)]
    assert answer.failed_avp.additional_avps[0].payload == bytes(4)


def test_auth_application_id_other_than_the_header_is_5004(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request()
    request.auth_application_id = 4  # the header still says ours
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    request.append_avp(ar1.codec.new("Key-SPI", 1))
    answer = ar1.send(request)
    assert answer.result_code == 5004
    assert failed(answer) == [(c.AVP_AUTH_APPLICATION_ID, 0)]
    assert answer.failed_avp.additional_avps[0].payload == (4).to_bytes(4, "big")  # as received


@pytest.mark.parametrize(
    "unknown",
    [Avp(60999, 0, b"\x01\x02\x03", 0x40), Avp(999, V, b"\x00\x00\x00\x07", 0xC0)],
    ids=["ietf-60999", "vendor-999"],
)
def test_unknown_mandatory_avp_is_5001_with_the_avp(stack: Stack, ar1: HandoverKeyClient, unknown: Avp) -> None:
    info = ingest(stack, MobileNode("olga@home.test"))
    request = ar1.new_request()
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    request.append_avp(ar1.codec.new("Key-SPI", info.spi))
    request.append_avp(unknown)
    answer = ar1.send(request)
    assert answer.result_code == 5001  # RFC 6733 §7.1.5 DIAMETER_AVP_UNSUPPORTED
    assert failed(answer) == [(unknown.code, unknown.vendor_id)]
    member = answer.failed_avp.additional_avps[0]
    assert (member.flags, member.payload) == (unknown.flags, unknown.payload)  # as received
    assert ar1.decode_key_answer(answer).hk is None
    assert all(a.code != 581 for a in answer.avps)  # no Key AVP
    assert not answer.header.is_error  # a permanent failure, not a protocol error


def test_unknown_optional_avp_is_ignored(stack: Stack, ar1: HandoverKeyClient) -> None:
    node = MobileNode("pia@home.test")
    info = ingest(stack, node)
    request = ar1.new_request()
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    request.append_avp(ar1.codec.new("Key-SPI", info.spi))
    request.append_avp(Avp(60999, 0, b"\x01\x02\x03", 0x00))  # no M bit
    answer = ar1.decode_key_answer(ar1.send(request))
    assert answer.ok, answer
    assert answer.hk == mn_handover_key(node, PAR1).hk


def test_base_avp_with_m_bit_is_not_unsupported(stack: Stack, ar1: HandoverKeyClient) -> None:
    info = ingest(stack, MobileNode("quinn@home.test"))
    request = ar1.new_request()
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    request.append_avp(ar1.codec.new("Key-SPI", info.spi))
    request.append_avp(Avp.new(c.AVP_ORIGIN_STATE_ID, value=7, is_mandatory=True))  # RFC 6733 base AVP
    assert ar1.send(request).result_code == 2001


def test_ipv4_ar_address_is_5004_with_the_avp(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request()
    bad = Avp(2, V, struct.pack("!H", 1) + socket.inet_aton("192.0.2.1"), 0xC0)
    request.append_avp(bad)
    request.append_avp(ar1.codec.new("Key-SPI", 1))
    answer = ar1.send(request)
    assert answer.result_code == 5004
    assert failed(answer) == [(2, V)]
    assert answer.failed_avp.additional_avps[0].payload == bad.payload


def test_spi_zero_is_5004(ar1: HandoverKeyClient) -> None:
    answer = ar1.handover_key(PAR1, spi=0)
    assert answer.result_code == 5004
    assert answer.failed_avps == ((585, 0),)


def test_unknown_request_type_is_5004(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request(mode=None)
    request.append_avp(Avp.new(1, V, value=9))
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    answer = ar1.send(request)
    assert answer.result_code == 5004
    assert failed(answer) == [(1, V)]


def test_two_selectors_are_5007(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request()
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    request.append_avp(ar1.codec.new("Key-SPI", 1))
    request.append_avp(ar1.codec.new("Key-Name", b"\x00" * 8))
    answer = ar1.send(request)
    assert answer.result_code == 5007
    assert failed(answer) == [(585, 0), (586, 0)]


def test_repeated_avp_is_5009(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request()
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR2))
    request.append_avp(ar1.codec.new("Key-SPI", 1))
    answer = ar1.send(request)
    assert answer.result_code == 5009
    assert failed(answer) == [(2, V)]
    assert answer.failed_avp.additional_avps[0].payload[2:] == PAR2.packed  # the second occurrence


def test_other_command_under_our_application_is_3001(stack: Stack, ar1: HandoverKeyClient) -> None:
    app_id = stack.server.dictionary.application_id
    header = MessageHeader(command_code=16777000, application_id=app_id, command_flags=0xC0)
    request = Message(
        header,
        [
            Avp.new(c.AVP_SESSION_ID, value="ar1.fmip.test;0;1"),
            Avp.new(c.AVP_ORIGIN_HOST, value=b"ar1.fmip.test"),
            Avp.new(c.AVP_ORIGIN_REALM, value=REALM.encode()),
            Avp.new(c.AVP_DESTINATION_REALM, value=REALM.encode()),
            Avp.new(c.AVP_AUTH_APPLICATION_ID, value=app_id),
        ],
    )
    answer = ar1.send(request)
    assert answer.header.command_code == 16777000 and not answer.header.is_request
    assert answer.header.is_error
    assert answer.result_code == 3001


def test_other_realm_is_3003(ar1: HandoverKeyClient) -> None:
    request = ar1.new_request()
    request.destination_realm = b"elsewhere.test"
    request.append_avp(ar1.codec.new("FMIP-AR-Address", PAR1))
    request.append_avp(ar1.codec.new("Key-SPI", 1))
    answer = ar1.send(request)
    assert answer.result_code == 3003
    assert answer.header.is_error


def test_store_unavailable_is_3004(private_redis: RedisServer, dictionary: DiameterDictionary) -> None:
    stack = start_stack(private_redis.url, dictionary, PEERS)
    try:
        node = MobileNode("judy@home.test")
        info = ingest(stack, node)
        with stack.client("ar1.fmip.test") as client:
            assert client.handover_key(PAR1, spi=info.spi).ok
            private_redis.stop()
            request = client.new_request()
            request.append_avp(client.codec.new("FMIP-AR-Address", PAR1))
            request.append_avp(client.codec.new("Key-SPI", info.spi))
            answer = client.send(request)
            assert answer.result_code == 3004
            assert answer.header.is_error  # RFC 6733 §7.1.3: protocol errors carry the E bit
            # What REST says, and nothing about the store's address or the internal call that failed.
            assert answer.error_message == "The key store cannot be reached"
            fbu = mn.build_fbu(
                mn_handover_key(node, PAR1), sequence=1, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR1
            )
            assert client.verify_fbu(ar_address=PAR1, source=PCOA, mh=fbu).result_code == 3004
    finally:
        stack.stop()


def test_application_not_offered_to_a_nas_is_3007(stack: Stack) -> None:
    # nas1 is a configured peer (CER succeeds) but the Handover-Key application is for ARs only.
    with stack.client("nas1.fmip.test") as nas:
        request = nas.new_request()
        request.append_avp(nas.codec.new("FMIP-AR-Address", PAR1))
        request.append_avp(nas.codec.new("Key-SPI", 1))
        answer = nas.send(request)
        assert answer.result_code == 3007
        assert answer.header.is_error


def test_unknown_peer_gets_3010(stack: Stack) -> None:
    cer = CapabilitiesExchangeRequest(MessageHeader(hop_by_hop_identifier=1, end_to_end_identifier=1))
    cer.origin_host = b"stranger.fmip.test"
    cer.origin_realm = REALM.encode()
    cer.host_ip_address = ["127.0.0.1"]
    cer.vendor_id = V
    cer.product_name = "stranger"
    cer.auth_application_id = [stack.server.dictionary.application_id]
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(cer.as_bytes())
        data = b""
        while len(data) < 20 or len(data) < int.from_bytes(data[1:4], "big"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    cea = Message.from_bytes(data)
    assert cea.header.command_code == c.CMD_CAPABILITIES_EXCHANGE and not cea.header.is_request
    assert cea.result_code == 3010
    assert cea.header.is_error  # RFC 6733 §7.1.3: 3xxx answers are protocol errors, E bit set


def test_metrics_count_the_diameter_operations(stack: Stack, ar1: HandoverKeyClient) -> None:
    ar1.handover_key(PAR1, spi=0x0BADF00D)
    text = stack.metrics.render().decode()
    assert 'aaa_fmip_operation_duration_seconds_count{interface="diameter",operation="handover_key"}' in text
    assert 'interface="diameter",operation="handover_key"' in text.split("operation_errors_total", 1)[1]
