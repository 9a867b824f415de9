"""A handover whose key the PAR fetched over Diameter (the Handover-Key application of ``aaa-fmip serve``), in the
namespaces of the end-to-end tests; the revocation feed and verdict reports still use REST."""

from __future__ import annotations

import os
import secrets
from ipaddress import IPv6Address

import pytest

from aaa_fmip import mn
from aaa_fmip.wire import mh as mhwire
from tests.router._netns import NAR, PAR, Agent, MobileNode, NsService, Topology, router_config
from tests.router.test_netns_e2e import _wait_log
from tests.support.redis_server import RedisServer, free_port
from tests.support.service_proc import Credential, random_kek, render_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs these as root)"),
]


def test_predictive_handover_with_the_key_over_diameter(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("router-diameter")
    topo = Topology().up()
    agents: list[Agent] = []
    node: MobileNode | None = None
    service: NsService | None = None
    try:
        par_cred = Credential.new("ar", "par", [str(PAR)], diameter_identity="par.example.net")
        nar_cred = Credential.new("ar", "nar", [str(NAR)])
        aaa = Credential.new("aaa", "radius1")
        port = free_port()
        diameter = (
            f'[diameter]\nlisten = "{topo.service_host}:{port}"\norigin_host = "keys.example.net"\n'
            'origin_realm = "example.net"\n\n[[diameter.peers]]\nidentity = "par.example.net"\nrole = "ar"\n'
        )
        config = render_config(
            store_url=redis_server.url,
            prefix="d" + secrets.token_hex(4),
            credentials=[par_cred, nar_cred, aaa],
            extra=diameter,
        )
        service = NsService(base / "service", topo.service_host, config=config, env={"AAA_FMIP_KEK": random_kek()})
        service.start()
        par_env = {
            "AAA_FMIP_ROUTER_SERVICE__TOKEN": par_cred.token,
            "AAA_FMIP_ROUTER_KEYS__SOURCE": "diameter",
            "AAA_FMIP_ROUTER_KEYS__PREFETCH": "false",
            "AAA_FMIP_ROUTER_DIAMETER__ORIGIN_HOST": "par.example.net",
            "AAA_FMIP_ROUTER_DIAMETER__ORIGIN_REALM": "example.net",
            "AAA_FMIP_ROUTER_DIAMETER__PEER": "keys.example.net",
            "AAA_FMIP_ROUTER_DIAMETER__HOST": topo.service_host,
            "AAA_FMIP_ROUTER_DIAMETER__PORT": str(port),
            "AAA_FMIP_ROUTER_DIAMETER__TIMEOUT": "2",
        }
        agents.append(Agent(topo, topo.par, router_config(base, "par", service.url), par_env).start())
        nar_env = {"AAA_FMIP_ROUTER_SERVICE__TOKEN": nar_cred.token}
        agents.append(Agent(topo, topo.nar, router_config(base, "nar", service.url), nar_env).start())
        node = MobileNode(topo)

        emsk, sid = secrets.token_bytes(64), b"\x0d" + secrets.token_bytes(64)
        with service.client(aaa) as client:
            body = {"emsk": emsk.hex(), "eap_session_id": sid.hex(), "user_name": "d@example.net", "lifetime": 600}
            assert client.post("/v1/sessions", json=body).status_code == 201
        master = mn.derive_master_key(emsk=emsk, eap_session_id=sid)
        hk = mn.derive_handover_key(master, PAR)
        pcoa, ncoa = IPv6Address("2001:db8:1::4:0:0:1"), IPv6Address("2001:db8:2::4:0:0:1")
        topo.add_address(pcoa)
        packet = mn.build_fbu_packet(
            hk, sequence=1, lifetime_seconds=60, pcoa=pcoa, ncoa=ncoa, par=PAR, home_address_option=True
        )
        node.drain()
        node.send_fbu(packet)
        answer = node.fback(1)
        assert answer is not None, agents[0].logs()[-3000:]
        assert mn.verify_fback(hk, answer[1], par=PAR, destination=pcoa).status == mhwire.FBackStatus.ACCEPTED
        verified = _wait_log(agents[0], lambda e: e.get("event") == "fbu.verified" and e.get("spi") == master.spi)
        assert verified["key_source"] == "fetched"
        assert '"route":"/v1/handover-keys"' not in service.logs()  # the key came over Diameter, not REST
    finally:
        if node is not None:
            node.close()
        for agent in agents:
            agent.stop()
        if service is not None:
            service.stop()
        topo.down()
