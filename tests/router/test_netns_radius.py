"""A handover whose keys came from a real EAP authentication: eapol_test against FreeRADIUS (with the aaa-fmip
module) stores the session; the node derives its keys from the EMSK eapol_test printed; the PAR agent, in its
namespace, prefetches its HK from the service by the node's MAC and verifies the FBU locally."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from aaa_fmip import mn
from aaa_fmip.wire import mh as mhwire
from tests.radius._stack import AR_NAS_IDENTIFIER, StackConfig, next_mac
from tests.router._netns import NAR, NAR_AP, PAR, Agent, MobileNode, NsService, Topology, router_config
from tests.router.test_netns_e2e import _wait_log
from tests.support.freeradius import FreeRadius, make_pki, run_eapol_test
from tests.support.redis_server import RedisServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs these as root)"),
]


@dataclass
class RadiusNet:
    topo: Topology
    radius: FreeRadius
    par: Agent
    node: MobileNode
    workdir: Path


@pytest.fixture(scope="module")
def radius_net(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadiusNet]:
    base = tmp_path_factory.mktemp("router-radius")
    pki = make_pki(base / "pki")
    stack = StackConfig(base / "config", redis_server.url)  # ar1 owns 2001:db8:1::1, ar2 owns 2001:db8:2::1
    path = stack.write()
    topo = Topology().up()
    service = NsService(base / "serve", topo.service_host, config=path.read_text())
    radius = FreeRadius(base / "freeradius", pki, aaa_config=path, threaded=True)
    agents: list[Agent] = []
    node: MobileNode | None = None
    try:
        service.start()
        radius.start()
        for name, ns, credential in (("par", topo.par, stack.ar), ("nar", topo.nar, stack.other_ar)):
            config = router_config(base, name, service.url)
            agents.append(Agent(topo, ns, config, {"AAA_FMIP_ROUTER_SERVICE__TOKEN": credential.token}).start())
        node = MobileNode(topo)
        yield RadiusNet(topo, radius, agents[0], node, base)
    finally:
        if node is not None:
            node.close()
        for agent in agents:
            agent.stop()
        radius.stop()
        service.stop()
        topo.down()


def test_predictive_handover_with_keys_from_eap_tls(radius_net: RadiusNet) -> None:
    mac = next_mac()
    result = run_eapol_test(
        "TLS",
        radius_net.radius.pki,
        port=radius_net.radius.auth_port,
        work_dir=radius_net.workdir / "eapol",
        mac=mac,
        nas_identifier=AR_NAS_IDENTIFIER,
    )
    emsk, session_id = result.require_keys()
    master = mn.derive_master_key(emsk=emsk, eap_session_id=session_id)  # the node's side of the hierarchy
    hk = mn.derive_handover_key(master, PAR)
    lla = bytes.fromhex(mac.replace(":", ""))
    pcoa, ncoa = IPv6Address("2001:db8:1::3:0:0:1"), IPv6Address("2001:db8:2::3:0:0:1")
    radius_net.topo.add_address(pcoa)

    # the module stores the session behind the Access-Accept: the prefetch may need a second RtSolPr
    for identifier in range(1, 40):
        prrtadv = radius_net.node.rtsolpr(identifier, NAR_AP, lla)
        assert prrtadv is not None
        try:
            _wait_log(
                radius_net.par,
                lambda e: e.get("event") == "key.prefetched" and e.get("mn_lla") == lla.hex(":"),
                timeout=0.25,
            )
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("the PAR never prefetched the key:\n" + radius_net.par.logs()[-3000:])

    packet = mn.build_fbu_packet(
        hk, sequence=1, lifetime_seconds=60, pcoa=pcoa, ncoa=ncoa, par=PAR, home_address_option=True, mh_lla=lla
    )
    radius_net.node.drain()
    radius_net.node.send_fbu(packet)
    answer = radius_net.node.fback(1)
    assert answer is not None, radius_net.par.logs()[-3000:]
    fback = mn.verify_fback(hk, answer[1], par=PAR, destination=pcoa)
    assert fback.status == mhwire.FBackStatus.ACCEPTED
    verified = _wait_log(radius_net.par, lambda e: e.get("event") == "fbu.verified" and e.get("spi") == master.spi)
    assert verified["key_source"] == "prefetched"
    done = _wait_log(radius_net.par, lambda e: e.get("event") == "handover.finished" and e.get("spi") == master.spi)
    assert (done["outcome"], done["nar"]) == ("accepted", str(NAR))
