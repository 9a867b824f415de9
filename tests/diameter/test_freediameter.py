"""freeDiameter 1.2.1 as a real peer of our node: CER/CEA, DWR/DWA both ways, and as a relay for ARs.

freeDiameterd connects to the key service (peer role ``agent`` there); an AR client connects to freeDiameterd,
which relays the Handover-Key requests by Destination-Realm (our command code is not in its dictionary: it
relays it all the same). What went over the wire is read back from freeDiameter's own message dump.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from aaa_fmip import mn
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.diameter.client import HandoverKeyClient
from aaa_fmip.diameter.dictionary import DiameterDictionary
from aaa_fmip.diameter.server import PeerConfig
from aaa_fmip.model import SessionInfo, SessionRequest, VisitedKeys
from tests.diameter.peers import MobileNode
from tests.diameter.stack import AAA, NCOA, PAR1, PAR2, PCOA, REALM, SERVICE, Stack, start_stack
from tests.support.freediameter import FdMessage, FdPeer, FreeDiameter
from tests.support.redis_server import RedisServer

FD = "fd.fmip.test"
AR = "ar1.fmip.test"
CER, DWR, HKR = 257, 280, 16777214


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, dictionary: DiameterDictionary) -> Iterator[Stack]:
    peers = (PeerConfig(FD, "agent"), PeerConfig(AR, "ar"))
    s = start_stack(redis_server.url, dictionary, peers, watchdog_interval=30)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def fd(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreeDiameter]:
    daemon = FreeDiameter(
        Path(tmp_path_factory.mktemp("freediameter")),
        identity=FD,
        peers=(FdPeer(SERVICE, port=stack.port), FdPeer(AR)),
    )
    daemon.start()
    try:
        daemon.wait_open(SERVICE)
        yield daemon
    finally:
        daemon.stop()  # while our node still runs, so that it answers freeDiameter's DPR


@pytest.fixture(scope="module")
def ar(fd: FreeDiameter, dictionary: DiameterDictionary) -> Iterator[HandoverKeyClient]:
    client = HandoverKeyClient(
        origin_host=AR,
        origin_realm=REALM,
        peer=FD,
        host="127.0.0.1",
        port=fd.port,
        destination_realm=REALM,
        dictionary=dictionary,
    ).start()
    try:
        fd.wait_open(AR)
        yield client
    finally:
        client.stop()


def seen(fd: FreeDiameter, direction: str, peer: str, code: int, request: bool) -> list[FdMessage]:
    return [m for m in fd.messages() if (m.direction, m.peer, m.code, m.is_request) == (direction, peer, code, request)]


def ingest(stack: Stack, node: MobileNode) -> SessionInfo:
    info: SessionInfo = stack.service.ingest_session(
        AAA,
        SessionRequest(
            user_name=node.user_name, keys=VisitedKeys(SecretBytes(node.dsrk(REALM)), node.emsk_name), lifetime=600
        ),
    )
    return info


def mn_hk(node: MobileNode, par: object = PAR1) -> mn.HandoverKey:
    master = mn.derive_master_key(dsrk=node.dsrk(REALM), emsk_name=node.emsk_name)
    return mn.derive_handover_key(master, par)  # type: ignore[arg-type]


def test_capabilities_exchange(stack: Stack, fd: FreeDiameter) -> None:
    cer = seen(fd, "SND", SERVICE, CER, request=True)
    cea = seen(fd, "RCV", SERVICE, CER, request=False)
    assert cer and cer[0].name == "Capabilities-Exchange-Request"
    assert cea and cea[0].name == "Capabilities-Exchange-Answer"
    log = fd.log()
    cea_dump = log[log.index("RCV from 'keys.fmip.test'") :]
    assert re.search(r"'Result-Code'\(268\) l=12 f=-M val='DIAMETER_SUCCESS'", cea_dump)
    assert re.search(r"'Product-Name'\(269\) l=\d+ f=-- val=\"aaa-fmip\"", cea_dump)
    cea_dump = cea_dump[: cea_dump.index("\n", cea_dump.index("'Supported-Vendor-Id'")) + 400]
    # RFC 6733 §6.11: the vendor-specific application is advertised in a Vendor-Specific-Application-Id.
    assert re.search(
        r"'Vendor-Specific-Application-Id'\(260\) l=32 f=-M val=\(grouped\)\n[^'\n]*"
        r"'Vendor-Id'\(266\) l=12 f=-M val=32473 [^\n]*\n[^'\n]*"
        rf"'Auth-Application-Id'\(258\) l=12 f=-M val={stack.server.dictionary.application_id} ",
        cea_dump,
    ), cea_dump
    assert "'Supported-Vendor-Id'(265) l=12 f=-M val=32473" in cea_dump
    assert stack.server.node is not None and stack.server.node.peer_ready(FD)


def test_key_query_relayed_through_freediameter(stack: Stack, fd: FreeDiameter, ar: HandoverKeyClient) -> None:
    node = MobileNode("alice@home.test")
    info = ingest(stack, node)
    answer = ar.handover_key(PAR1, spi=info.spi)
    assert answer.ok, answer
    assert answer.hk == mn_hk(node).hk
    assert answer.hk_name == mn_hk(node).hk_name
    # Through the relay: AR → freeDiameter → key service → freeDiameter → AR.
    assert seen(fd, "RCV", AR, HKR, request=True)
    assert seen(fd, "SND", SERVICE, HKR, request=True)
    assert seen(fd, "RCV", SERVICE, HKR, request=False)
    assert seen(fd, "SND", AR, HKR, request=False)


def test_fbu_verify_relayed_through_freediameter(stack: Stack, ar: HandoverKeyClient) -> None:
    node = MobileNode("bob@home.test")
    ingest(stack, node)
    fbu = mn.build_fbu(mn_hk(node), sequence=3, lifetime_seconds=20, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    verdict = ar.verify_fbu(ar_address=PAR1, source=PCOA, mh=fbu)
    assert (verdict.result_code, verdict.verdict, verdict.sequence, verdict.lifetime) == (2001, "accepted", 3, 20)


def test_errors_relayed_through_freediameter(stack: Stack, ar: HandoverKeyClient) -> None:
    assert ar.handover_key(PAR1, spi=0x0BADF00D).result_code == 5030
    info = ingest(stack, MobileNode("carol@home.test"))
    assert ar.handover_key(PAR2, spi=info.spi).result_code == 5003  # PAR2 is not ar1's


def test_watchdog_both_directions(stack: Stack, fd: FreeDiameter) -> None:
    # RFC 3539: whoever hears nothing for its Tw sends DWR, and any message resets the other side's timer.
    # freeDiameter (Tw 6 s, with jitter) goes first while ours is 30 s; then ours drops to 1 s.
    node = stack.server.node
    assert node is not None
    fd.wait_for(lambda f: seen(f, "SND", SERVICE, DWR, request=True), 15, "DWR from freeDiameter")
    fd.wait_for(lambda f: seen(f, "RCV", SERVICE, DWR, request=False), 5, "DWA from our node")
    node.idle_timeout = 1
    fd.wait_for(lambda f: seen(f, "RCV", SERVICE, DWR, request=True), 10, "DWR from our node")
    fd.wait_for(lambda f: seen(f, "SND", SERVICE, DWR, request=False), 5, "DWA to our node")
    assert node.peer_ready(FD)
