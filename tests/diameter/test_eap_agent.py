"""The EAP agent (RFC 4072 DER/DEA relay) between a NAS and a home EAP server, all real nodes on loopback.

The home EAP server (tests/diameter/peers.py) puts a DSRK computed from the MN's known EMSK in its DEA; the
agent must store the visited-domain HMK, strip that Key AVP (and only that one) before the NAS sees the DEA,
and revoke on STR and ASR. The AR side then gets exactly the HK the MN derives (and verifies the MN's FBU).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from diameter.message import constants as c
from diameter.message.avp import Avp

from aaa_fmip import mn
from aaa_fmip.diameter.avps import AvpCodec, WireAvp
from aaa_fmip.diameter.client import HandoverKeyClient
from aaa_fmip.diameter.dictionary import DiameterDictionary
from aaa_fmip.diameter.eap_agent import EapAgent, EapAgentContext
from aaa_fmip.diameter.server import PeerConfig
from tests.diameter.peers import EAP_SUCCESS, EAP_TLS_START, HomeEapServer, MobileNode, Nas
from tests.diameter.stack import NCOA, PAR1, PCOA, REALM, SERVICE, Stack, start_stack
from tests.diameter.wire import CLIENT_TO_SERVER, SERVER_TO_CLIENT, TcpTap, avp_code, avps, command
from tests.support.redis_server import RedisServer, free_port

HOME = "home.fmip.test"
NAS = "nas1.fmip.test"
KEY, KEY_TYPE, KEYING_MATERIAL = 581, 582, 583


class Agent:
    def __init__(
        self, stack: Stack, home: HomeEapServer, nas: Nas, ar1: HandoverKeyClient, taps: tuple[TcpTap, ...] = ()
    ) -> None:
        self.stack, self.home, self.nas, self.ar1 = stack, home, nas, ar1
        self.taps = taps  # (NAS side, home side) when tapped

    def stop(self) -> None:
        self.ar1.stop()
        self.nas.stop()
        self.stack.stop()
        self.home.stop()
        for tap in self.taps:
            tap.stop()


def start_agent(
    redis_url: str, dictionary: DiameterDictionary, *, tapped: bool = False, answer_timeout: float = 3.0
) -> Agent:
    """NAS → agent → home EAP server; ``tapped``: both links go through a :class:`TcpTap` that records them."""
    home_port = free_port()
    home = HomeEapServer(dictionary, port=home_port, agent=SERVICE, visited_domain=REALM).start()
    home_tap = TcpTap(home_port) if tapped else None
    try:
        peers = (
            PeerConfig(NAS, "nas"),
            PeerConfig(HOME, "home-eap-server", host="127.0.0.1", port=home_tap.port if home_tap else home_port),
            PeerConfig("ar1.fmip.test", "ar"),
        )
        stack = start_stack(redis_url, dictionary, peers, answer_timeout=answer_timeout)
    except BaseException:
        home.stop()
        if home_tap:
            home_tap.stop()
        raise
    nas_tap = TcpTap(stack.port) if tapped else None
    taps = tuple(t for t in (nas_tap, home_tap) if t is not None)
    try:
        assert stack.server.wait_for_peer(HOME, 10), "the agent did not connect to the home EAP server"
        nas = Nas(agent=SERVICE, agent_port=nas_tap.port if nas_tap else stack.port).start()
    except BaseException:
        stack.stop()
        home.stop()
        for tap in taps:
            tap.stop()
        raise
    try:
        ar1 = stack.client("ar1.fmip.test")
    except BaseException:
        nas.stop()
        stack.stop()
        home.stop()
        for tap in taps:
            tap.stop()
        raise
    return Agent(stack, home, nas, ar1, taps)


@pytest.fixture(scope="module")
def agent(redis_server: RedisServer, dictionary: DiameterDictionary) -> Iterator[Agent]:
    a = start_agent(redis_server.url, dictionary)
    yield a
    a.stop()


def keys_in(answer: Any) -> list[int]:
    """Key-Type of every Key AVP in an answer."""
    types = []
    for avp in answer.avps:
        if avp.code == KEY and avp.vendor_id == 0:
            types += [m.value for m in avp.value if m.code == KEY_TYPE]
    return types


def mn_hk(node: MobileNode) -> mn.HandoverKey:
    master = mn.derive_master_key(dsrk=node.dsrk(REALM), emsk_name=node.emsk_name)
    return mn.derive_handover_key(master, PAR1)


def test_der_relayed_dsrk_consumed_and_stripped(agent: Agent) -> None:
    node = MobileNode("alice@home.test")
    agent.home.users[node.user_name] = node
    session_id = agent.nas.new_session_id()
    dea = agent.nas.der(node, session_id=session_id)

    assert dea.result_code == c.E_RESULT_CODE_DIAMETER_SUCCESS
    assert dea.session_id == session_id
    assert dea.origin_host == HOME.encode()  # a proxy does not rewrite Origin-Host
    assert dea.eap_payload == EAP_SUCCESS
    assert dea.eap_master_session_key is not None and len(dea.eap_master_session_key) == 64
    assert keys_in(dea) == [2]  # the DSRK (0) is gone, the rMSK (2) passes through
    assert node.dsrk(REALM) not in bytes(dea.as_bytes())

    der = agent.home.received[-1]
    assert der.route_record == [NAS.encode()]  # RFC 6733 §6.1.9
    assert der.origin_host == NAS.encode()

    hk = agent.ar1.handover_key(PAR1, calling_station_id=node.calling_station_id)
    assert hk.ok, hk
    assert hk.hk == mn_hk(node).hk
    assert hk.spi == mn_hk(node).spi
    assert hk.lifetime is not None and hk.lifetime <= 3600  # the Key-Lifetime the home server sent

    fbu = mn.build_fbu(mn_hk(node), sequence=1, lifetime_seconds=40, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    verdict = agent.ar1.verify_fbu(ar_address=PAR1, source=PCOA, mh=fbu)
    assert (verdict.result_code, verdict.verdict, verdict.ncoa) == (2001, "accepted", NCOA)


def _key_type(avp: bytes) -> int | None:
    """The Key-Type inside a Key AVP's octets (IETF, no Vendor-Id: members start at offset 8)."""
    members = b"\x00" * 20 + avp[8 : 8 + int.from_bytes(avp[5:8], "big") - 8]  # a pseudo-message to split
    return next((int.from_bytes(m[8:12], "big") for m in avps(members) if avp_code(m)[0] == KEY_TYPE), None)


def _last(messages: list[bytes], code: int, request: bool) -> bytes:
    found = [m for m in messages if command(m)[1] == code and bool(command(m)[0] & 0x80) == request]
    assert found, f"no {'request' if request else 'answer'} with command code {code} on the wire"
    return found[-1]


def test_relayed_avps_pass_byte_for_byte(redis_server: RedisServer, dictionary: DiameterDictionary) -> None:
    # What the NAS sent vs what the home server received, and what the home server sent vs what the NAS received,
    # read from the TCP streams themselves: identical AVP octets (flags, Vendor-Ids, order), except the
    # Route-Record the agent appends to the DER and the DSRK Key AVP it consumes from the DEA.
    a = start_agent(redis_server.url, dictionary, tapped=True)
    try:
        nas_side, home_side = a.taps
        node = MobileNode("tess@home.test")
        a.home.users[node.user_name] = node
        a.home.extra_avps = [
            Avp(999, 10415, b"\x00\x00\x00\x01", 0xC0),  # a 3GPP vendor AVP, V and M
            Avp(60999, 0, b"abc", 0x40),  # unknown to everyone, M bit: the NAS's business, not the agent's
            Avp(61000, 0, b"\x01", 0x00),
        ]
        dea = a.nas.der(node, extra_avps=(Avp(998, 10415, b"xy", 0xC0), Avp(60998, 0, b"q", 0x40)))
        assert dea.result_code == 2001

        der_sent = _last(nas_side.messages(CLIENT_TO_SERVER), 268, request=True)
        der_relayed = _last(home_side.messages(CLIENT_TO_SERVER), 268, request=True)
        assert avps(der_relayed)[:-1] == avps(der_sent)
        route_record = avps(der_relayed)[-1]
        assert avp_code(route_record) == (282, 0x40, 0) and route_record[8:22] == NAS.encode()
        assert any(x.startswith(bytes.fromhex("000001ce40")) for x in avps(der_relayed))  # EAP-Payload keeps M

        dea_sent = _last(home_side.messages(SERVER_TO_CLIENT), 268, request=False)
        dea_relayed = _last(nas_side.messages(SERVER_TO_CLIENT), 268, request=False)
        keys = [(x, _key_type(x)) for x in avps(dea_sent) if avp_code(x)[0] == KEY]
        assert sorted(t for _, t in keys if t is not None) == [0, 2]  # the DSRK and the rMSK were sent
        expected = [x for x in avps(dea_sent) if not (avp_code(x)[0] == KEY and _key_type(x) == 0)]
        assert avps(dea_relayed) == expected
        assert any(x.startswith(bytes.fromhex("000001ce40")) for x in avps(dea_relayed))  # EAP-Payload 0x40
        assert any(x.startswith(bytes.fromhex("000001d040")) for x in avps(dea_relayed))  # EAP-Master-Session-Key
        assert dea_relayed[4:12] == dea_sent[4:12]  # flags, command code, Application-Id
        assert dea_relayed[12:20] == der_sent[12:20]  # the NAS's Hop-by-Hop and End-to-End Identifiers
    finally:
        a.stop()


def test_multi_round_exchange(agent: Agent) -> None:
    node = MobileNode("mira@home.test")
    agent.home.users[node.user_name] = node
    agent.home.challenges[node.user_name] = 1
    session_id = agent.nas.new_session_id()
    first = agent.nas.der(node, session_id=session_id)
    assert first.result_code == c.E_RESULT_CODE_DIAMETER_MULTI_ROUND_AUTH
    assert first.eap_payload == EAP_TLS_START
    assert agent.ar1.handover_key(PAR1, spi=mn_hk(node).spi).result_code == 5030  # nothing stored yet
    second = agent.nas.der(node, session_id=session_id)
    assert second.result_code == 2001
    assert keys_in(second) == [2]
    assert agent.ar1.handover_key(PAR1, spi=mn_hk(node).spi).hk == mn_hk(node).hk


def test_str_revokes_and_is_relayed(agent: Agent) -> None:
    node = MobileNode("bob@home.test")
    agent.home.users[node.user_name] = node
    session_id = agent.nas.new_session_id()
    assert agent.nas.der(node, session_id=session_id).result_code == 2001
    spi = mn_hk(node).spi
    assert agent.ar1.handover_key(PAR1, spi=spi).ok

    sta = agent.nas.str_(session_id)
    assert sta.result_code == 2001
    assert sta.origin_host == HOME.encode()
    assert agent.home.received[-1].header.command_code == c.CMD_SESSION_TERMINATION
    assert agent.ar1.handover_key(PAR1, spi=spi).result_code == 5030


def test_str_with_base_application_id_revokes(agent: Agent) -> None:
    node = MobileNode("bea@home.test")
    agent.home.users[node.user_name] = node
    session_id = agent.nas.new_session_id()
    assert agent.nas.der(node, session_id=session_id).result_code == 2001
    sta = agent.nas.str_(session_id, application_id=0)
    assert sta.result_code == 2001
    assert agent.ar1.handover_key(PAR1, spi=mn_hk(node).spi).result_code == 5030


def test_asr_from_home_revokes_and_reaches_the_nas(agent: Agent) -> None:
    node = MobileNode("carol@home.test")
    agent.home.users[node.user_name] = node
    session_id = agent.nas.new_session_id()
    assert agent.nas.der(node, session_id=session_id).result_code == 2001
    assert agent.ar1.handover_key(PAR1, spi=mn_hk(node).spi).ok

    asa = agent.home.abort_session(session_id, NAS, REALM)
    assert asa.result_code == 2001
    assert asa.origin_host == NAS.encode()
    assert session_id in agent.nas.aborted
    assert agent.ar1.handover_key(PAR1, spi=mn_hk(node).spi).result_code == 5030


def test_rejected_der_stores_nothing(agent: Agent) -> None:
    node = MobileNode("mallory@home.test")  # unknown to the home server
    dea = agent.nas.der(node)
    assert dea.result_code == c.E_RESULT_CODE_DIAMETER_AUTHENTICATION_REJECTED
    assert keys_in(dea) == []
    assert agent.ar1.handover_key(PAR1, calling_station_id=node.calling_station_id).result_code == 5030


def test_store_down_still_lets_the_mn_in(private_redis: RedisServer, dictionary: DiameterDictionary) -> None:
    a = start_agent(private_redis.url, dictionary)
    try:
        node = MobileNode("dora@home.test")
        a.home.users[node.user_name] = node
        private_redis.stop()
        dea = a.nas.der(node)
        assert dea.result_code == 2001  # network access never depends on the handover-key store
        assert keys_in(dea) == [2]  # and the DSRK is stripped all the same
        errors = a.stack.metrics.render().decode()
        assert 'operation="ingest"' in errors.split("operation_errors_total", 1)[1]
    finally:
        a.stop()


def test_home_server_gone_is_3002(private_redis: RedisServer, dictionary: DiameterDictionary) -> None:
    a = start_agent(private_redis.url, dictionary)
    try:
        a.home.stop()
        assert a.stack.server.node is not None
        assert a.stack.server.node.wait_for_peer_closed(HOME, 5)
        dea = a.nas.der(MobileNode("erin@home.test"))
        assert dea.result_code == 3002
        assert dea.header.is_error
    finally:
        a.stop()


def test_dea_after_the_timeout_is_dropped_and_counted(
    redis_server: RedisServer, dictionary: DiameterDictionary
) -> None:
    a = start_agent(redis_server.url, dictionary, answer_timeout=0.5)
    try:
        node = MobileNode("lena@home.test")
        a.home.users[node.user_name] = node
        a.home.delay = 1.5  # the home server answers, but only after the agent has given up
        dea = a.nas.der(node)
        assert (dea.result_code, dea.header.is_error) == (3002, True)
        late = 'aaa_fmip_operation_errors_total{error="late_answer",interface="diameter",operation="relay"} 1.0'
        deadline = time.monotonic() + 10
        while late not in a.stack.metrics.render().decode() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert late in a.stack.metrics.render().decode()
        # Dropped: its DSRK was not stored (the NAS was told the authentication failed) ...
        assert a.ar1.handover_key(PAR1, spi=mn_hk(node).spi).result_code == 5030
        # ... and the agent relays the next exchange as usual.
        a.home.delay = 0
        assert a.nas.der(node).result_code == 2001
        assert a.ar1.handover_key(PAR1, spi=mn_hk(node).spi).ok
    finally:
        a.stop()


def test_key_avps_sorted_for_relay(dictionary: DiameterDictionary) -> None:
    codec = AvpCodec(dictionary)
    agent = EapAgent(EapAgentContext(None, dictionary, SERVICE, REALM, frozenset({NAS}), (HOME,)))
    dsrk = codec.grouped("Key", [codec.enum("Key-Type", "DSRK"), codec.new("Keying-Material", b"\x01" * 64)])
    rmsk = codec.grouped("Key", [codec.enum("Key-Type", "rMSK"), codec.new("Keying-Material", b"\x02" * 64)])
    garbage = Avp(KEY, 0, b"\x00\x00\x02\x46\x40\x00\x00\xff" + b"\x03" * 8, 0x40)  # Key-Type AVP overruns
    other = codec.new("Key-SPI", 7)
    wire = [WireAvp(a, a.as_bytes()) for a in (other, dsrk, rmsk, garbage)]
    kept, taken = agent._split_keys(wire)
    assert kept == [wire[0], wire[2]]
    assert taken == [dsrk]
