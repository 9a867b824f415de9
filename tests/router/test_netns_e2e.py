"""The router agent end to end: three network namespaces, the kernel's IPv6 stack, raw sockets, a real key
service on a real redis-server, and tshark reading what crossed the links.

The node is driven with aaa_fmip.mn over raw sockets in its namespace; each test uses a session of its own
(its own EMSK, Calling-Station-Id and PCoA), so the tests do not share replay state. Needs root (CI runs it).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from aaa_fmip import mn
from aaa_fmip.keys import HandoverKey
from aaa_fmip.wire import ipv6 as ipv6wire
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.icmpv6 import IPAddressPrefix, IPAddressPrefixCode, PrRtAdvCode
from tests.router._netns import (
    METRICS_PORT,
    NAR,
    NAR_AP,
    PAR,
    Agent,
    Capture,
    MobileNode,
    NsService,
    Topology,
    read_pcap_ipv6,
    router_config,
)
from tests.support.pcap import tshark_fields
from tests.support.redis_server import RedisServer
from tests.support.service_proc import Credential, random_kek, render_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs these as root)"),
]


@dataclass
class Net:
    topo: Topology
    service: NsService
    aaa: Credential
    par: Agent
    nar: Agent
    node: MobileNode
    workdir: Path
    auditor: Credential

    def session(self, index: int) -> tuple[HandoverKey, bytes, IPv6Address]:
        """A fresh EAP session ingested at the service: the node's HK for the PAR, its MAC, its PCoA."""
        emsk = secrets.token_bytes(64)
        session_id = b"\x0d" + secrets.token_bytes(64)
        mac = bytes((0x02, 0, 0, 0, 0x10, index))
        body = {
            "emsk": emsk.hex(),
            "eap_session_id": session_id.hex(),
            "user_name": f"mn{index}@example.net",
            "calling_station_id": "-".join(f"{b:02X}" for b in mac),
            "nas_identifier": "par",
            "lifetime": 3600,
        }
        with self.service.client(self.aaa) as client:
            response = client.post("/v1/sessions", json=body)
        assert response.status_code in (200, 201), response.text
        pcoa = IPv6Address(f"2001:db8:1::1:0:0:{index:x}")
        self.topo.add_address(pcoa)
        master = mn.derive_master_key(emsk=emsk, eap_session_id=session_id)
        return mn.derive_handover_key(master, PAR), mac, pcoa

    def revoke(self, mac: bytes) -> None:
        with self.service.client(self.aaa) as client:
            body = {"calling_station_id": "-".join(f"{b:02X}" for b in mac)}
            assert client.post("/v1/sessions/revoke", json=body).json()["revoked"] == 1


@pytest.fixture(scope="module")
def net(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    workdir = tmp_path_factory.mktemp("router-netns")
    topo = Topology().up()
    agents: list[Agent] = []
    service: NsService | None = None
    node: MobileNode | None = None
    try:
        creds = {
            "par": Credential.new("ar", "par", [str(PAR)]),
            "nar": Credential.new("ar", "nar", [str(NAR)]),
            "aaa": Credential.new("aaa", "radius1"),
            "auditor": Credential.new("auditor", "auditor1"),
        }
        config = render_config(
            store_url=redis_server.url, prefix="n" + secrets.token_hex(4), credentials=list(creds.values())
        )
        service = NsService(workdir / "service", topo.service_host, config=config, env={"AAA_FMIP_KEK": random_kek()})
        service.start()
        for name, ns in (("par", topo.par), ("nar", topo.nar)):
            path = router_config(workdir, name, service.url)
            agents.append(Agent(topo, ns, path, {"AAA_FMIP_ROUTER_SERVICE__TOKEN": creds[name].token}).start())
        node = MobileNode(topo)
        yield Net(topo, service, creds["aaa"], agents[0], agents[1], node, workdir, creds["auditor"])
    finally:
        if node is not None:
            node.close()
        for agent in agents:
            agent.stop()
        if service is not None:
            service.stop()
        topo.down()


def _log_events(agent: Agent) -> list[dict[str, object]]:
    events = []
    for line in agent.logs().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


def _wait_log(agent: Agent, predicate: object, timeout: float = 5.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in _log_events(agent):
            if predicate(event):  # type: ignore[operator]
                return event
        time.sleep(0.05)
    raise AssertionError(f"no such log line within {timeout} s:\n{agent.logs()[-3000:]}")


def _fbu(
    hk: HandoverKey, pcoa: IPv6Address, ncoa: IPv6Address, sequence: int, mac: bytes, **kw: object
) -> mn.FbuPacket:
    return mn.build_fbu_packet(
        hk,
        sequence=sequence,
        lifetime_seconds=40,
        pcoa=pcoa,
        ncoa=ncoa,
        par=PAR,
        home_address_option=True,
        mh_lla=mac,
        **kw,  # type: ignore[arg-type]
    )


def test_predictive_handover(net: Net) -> None:
    hk, mac, pcoa = net.session(1)
    ncoa = IPv6Address("2001:db8:2::1:0:0:1")
    captures = [
        Capture(net.topo, net.topo.par, "br0", net.workdir / "par-access.pcap"),
        Capture(net.topo, net.topo.par, "bb", net.workdir / "backbone.pcap"),
    ]
    try:
        prrtadv = net.node.rtsolpr(11, NAR_AP, mac)
        assert prrtadv is not None and prrtadv.code == PrRtAdvCode.NEW_ROUTER_INFO
        prefixes = [
            (o.option_code, o.address, o.prefix_length) for o in prrtadv.options if isinstance(o, IPAddressPrefix)
        ]
        assert prefixes == [
            (3, NAR, 128),
            (IPAddressPrefixCode.NEW_ACCESS_ROUTER_PREFIX, IPv6Address("2001:db8:2::"), 64),
        ]
        # the RtSolPr made the PAR fetch this node's key by its MAC (Calling-Station-Id) before the FBU
        _wait_log(net.par, lambda e: e.get("event") == "key.prefetched" and e.get("mn_lla") == mac.hex(":"))
        net.node.drain()
        net.node.send_fbu(_fbu(hk, pcoa, ncoa, 1, mac))
        answer = net.node.fback(1)
        assert answer is not None, net.par.logs()[-3000:]
        source, fback_mh = answer
        fback = mn.verify_fback(hk, fback_mh, par=PAR, destination=pcoa)  # BADF made with the same HK
        assert source == PAR and fback.status == mhwire.FBackStatus.ACCEPTED and fback.lifetime_seconds == 40
    finally:
        time.sleep(1.2)  # dumpcap hands packets over in blocks (1 s timeout): let the last block fill
        pcaps = [c.stop() for c in captures]
    finished = _wait_log(net.par, lambda e: e.get("event") == "handover.finished" and e.get("spi") == hk.spi)
    assert finished["outcome"] == "accepted" and finished["hi_transmissions"] == 1
    verified = _wait_log(net.par, lambda e: e.get("event") == "fbu.verified" and e.get("spi") == hk.spi)
    assert verified["key_source"] == "prefetched"  # the fast path never left the router
    # tshark, the independent decoder
    access = tshark_fields(pcaps[0], ["icmpv6.type", "icmpv6.checksum.status", "mip6.mhtype", "mip6.fback.status"])
    icmp = [f for f in access if f["icmpv6.type"][:1] == ["154"]]
    assert len(icmp) >= 2 and all(f["icmpv6.checksum.status"] == ["1"] for f in icmp)  # RtSolPr, PrRtAdv: Good
    assert ["0"] in [f["mip6.fback.status"] for f in access if f["mip6.mhtype"] == ["9"]]
    assert any(f["mip6.mhtype"] == ["8"] for f in access)
    backbone = tshark_fields(pcaps[1], ["mip6.mhtype", "mip6.hi.code", "mip6.hack.code", "mip6.hi.s_flag"])
    assert {"mip6.mhtype": ["14"], "mip6.hi.code": ["0"], "mip6.hack.code": [], "mip6.hi.s_flag": ["0"]} in backbone
    assert any(f["mip6.mhtype"] == ["15"] and f["mip6.hack.code"] == ["0"] for f in backbone)
    # MH checksums as captured (tshark 4.0 does not check them): pseudo-header source = the home address
    seen = 0
    for pcap in pcaps:
        for raw in read_pcap_ipv6(pcap):
            packet = ipv6wire.parse_ipv6_packet(raw)
            if packet.upper_next_header == 135:
                mhwire.decode_mh(
                    packet.payload, source=packet.home_address or packet.source, destination=packet.destination
                )
                seen += 1
    assert seen >= 4  # FBU, FBack, HI, HAck


def test_reactive_handover(net: Net) -> None:
    hk, mac, pcoa = net.session(2)
    ncoa = IPv6Address("2001:db8:2::1:0:0:2")
    net.topo.mn_on_nar(ncoa)
    try:
        net.node.drain()
        packet = _fbu(hk, pcoa, ncoa, 1, mac, alternate_coa=False)
        assert packet.source == ncoa and packet.home_address == pcoa
        net.node.send_fbu(packet)
        answer = net.node.fback(1)
        assert answer is not None, net.par.logs()[-3000:]
        fback = mn.verify_fback(hk, answer[1], par=PAR, destination=ncoa)
        assert fback.status == mhwire.FBackStatus.ACCEPTED
        hi = _wait_log(net.nar, lambda e: e.get("event") == "hi.answered" and e.get("hi_code") == 1)
        assert hi["hack_code"] == 0
        assert (
            _wait_log(net.par, lambda e: e.get("event") == "fbu.verified" and e.get("spi") == hk.spi)["key_source"]
            == "fetched"
        )
    finally:
        net.topo.mn_on_par()


def test_forged_and_replayed_fbus_get_no_fback(net: Net) -> None:
    hk, mac, pcoa = net.session(3)
    ncoa = IPv6Address("2001:db8:2::1:0:0:3")
    forged_key = HandoverKey(
        mn.derive_handover_key(mn.derive_master_key(emsk=bytes(64), eap_session_id=b"y" * 9), PAR).hk,
        hk.hk_name,
        hk.spi,
    )
    net.node.drain()
    net.node.send_fbu(_fbu(forged_key, pcoa, ncoa, 5, mac))
    assert net.node.fback(5, timeout=1.5) is None
    rejected = _wait_log(net.par, lambda e: e.get("event") == "fbu.rejected" and e.get("spi") == hk.spi)
    assert rejected["reason"] == "bad-authenticator"
    # the genuine FBU with the same number still works, then an older one is a replay
    old = _fbu(hk, pcoa, ncoa, 4, mac)
    net.node.send_fbu(_fbu(hk, pcoa, ncoa, 5, mac))
    assert net.node.fback(5) is not None
    net.node.send_fbu(old)
    assert net.node.fback(4, timeout=1.5) is None
    _wait_log(
        net.par, lambda e: e.get("event") == "fbu.rejected" and e.get("reason") == "replay" and e.get("sequence") == 4
    )


def test_replay_state_survives_an_agent_restart(net: Net) -> None:
    hk, mac, pcoa = net.session(4)
    ncoa = IPv6Address("2001:db8:2::1:0:0:4")
    first = _fbu(hk, pcoa, ncoa, 20, mac)
    net.node.drain()
    net.node.send_fbu(first)
    assert net.node.fback(20) is not None
    net.par.stop()
    net.par.start()
    net.node.send_fbu(_fbu(hk, pcoa, ncoa, 19, mac))  # older than one accepted before the restart
    assert net.node.fback(19, timeout=1.5) is None
    _wait_log(
        net.par, lambda e: e.get("event") == "fbu.rejected" and e.get("reason") == "replay" and e.get("sequence") == 19
    )


def test_revoked_session_gets_fback_129(net: Net) -> None:
    hk, mac, pcoa = net.session(5)
    net.revoke(mac)
    net.node.drain()
    net.node.send_fbu(_fbu(hk, pcoa, IPv6Address("2001:db8:2::1:0:0:5"), 1, mac))
    answer = net.node.fback(1)
    assert answer is not None
    fback = mhwire.decode_mh(answer[1], source=PAR, destination=pcoa)
    assert isinstance(fback, mhwire.FBack) and fback.status == mhwire.FBackStatus.ADMINISTRATIVELY_PROHIBITED


def test_hack_never_arriving_gives_fback_128_after_retries(net: Net) -> None:
    hk, mac, pcoa = net.session(6)
    net.nar.stop()
    try:
        net.node.drain()
        net.node.send_fbu(_fbu(hk, pcoa, IPv6Address("2001:db8:2::1:0:0:6"), 1, mac))
        answer = net.node.fback(1, timeout=6.0)
        assert answer is not None
        fback = mn.verify_fback(hk, answer[1], par=PAR, destination=pcoa)
        assert fback.status == mhwire.FBackStatus.REASON_UNSPECIFIED
        done = _wait_log(net.par, lambda e: e.get("event") == "handover.finished" and e.get("spi") == hk.spi)
        assert (done["outcome"], done["hi_transmissions"]) == ("no-hack", 4)
        metrics = net.par.metrics(METRICS_PORT)
        assert "aaa_fmip_router_hi_retransmissions_total" in metrics
        value = next(
            line for line in metrics.splitlines() if line.startswith("aaa_fmip_router_hi_retransmissions_total")
        )
        assert float(value.split()[-1]) >= 3
    finally:
        net.nar.start()


def test_unknown_spi_with_the_service_down(net: Net) -> None:
    hk, mac, pcoa = net.session(7)
    net.service.stop()
    try:
        net.node.drain()
        net.node.send_fbu(_fbu(hk, pcoa, IPv6Address("2001:db8:2::1:0:0:7"), 1, mac))
        answer = net.node.fback(1, timeout=6.0)
        assert answer is not None
        fback = mhwire.decode_mh(answer[1], source=PAR, destination=pcoa)
        assert isinstance(fback, mhwire.FBack) and fback.status == mhwire.FBackStatus.REASON_UNSPECIFIED
        rejected = _wait_log(net.par, lambda e: e.get("event") == "fbu.rejected" and e.get("spi") == hk.spi)
        assert rejected["reason"] == "key-unavailable" and "key service did not answer" in str(rejected["hint"])
        assert net.par.proc is not None and net.par.proc.poll() is None  # still running
        assert "Traceback" not in net.par.logs()
    finally:
        net.service.start()


def test_revocation_reaches_the_router(net: Net) -> None:
    hk, mac, pcoa = net.session(8)
    ncoa = IPv6Address("2001:db8:2::1:0:0:8")
    net.node.drain()
    net.node.send_fbu(_fbu(hk, pcoa, ncoa, 1, mac))
    assert net.node.fback(1) is not None  # the PAR now holds the key
    net.revoke(mac)
    revoked_at = time.monotonic()
    _wait_log(net.par, lambda e: e.get("event") == "key.revoked" and e.get("spi") == hk.spi, timeout=10.0)
    dropped_after = time.monotonic() - revoked_at
    net.node.send_fbu(_fbu(hk, pcoa, ncoa, 2, mac))
    answer = net.node.fback(2)
    assert answer is not None
    fback = mhwire.decode_mh(answer[1], source=PAR, destination=pcoa)
    assert isinstance(fback, mhwire.FBack) and fback.status == mhwire.FBackStatus.ADMINISTRATIVELY_PROHIBITED
    print(f"revocation to key dropped at the PAR: {dropped_after * 1000:.0f} ms")


def test_local_verdicts_are_reported_to_the_audit_trail(net: Net) -> None:
    hk, mac, pcoa = net.session(9)
    net.node.drain()
    net.node.send_fbu(_fbu(hk, pcoa, IPv6Address("2001:db8:2::1:0:0:9"), 1, mac))
    assert net.node.fback(1) is not None
    deadline = time.monotonic() + 10
    entries: list[dict[str, object]] = []
    with net.service.client(net.auditor) as auditor:
        while time.monotonic() < deadline and not entries:
            page = auditor.get("/v1/audit", params={"event": "fbu.verified", "spi": hk.spi}).json()
            entries = [e for e in page["entries"] if e["fields"].get("reported") == 1]
            time.sleep(0.2)
    assert entries, "the PAR's verdict never reached the audit trail"
    fields = entries[0]["fields"]
    assert isinstance(fields, dict) and (fields["ar"], fields["verdict"], fields["sequence"]) == ("par", "accepted", 1)


def test_verify_as_a_service_with_a_service_signed_fback(net: Net) -> None:
    hk, mac, pcoa = net.session(10)
    net.par.stop()
    saved = dict(net.par.env)
    net.par.env = {**saved, "AAA_FMIP_ROUTER_KEYS__MODE": "service"}
    try:
        net.par.start()
        net.node.drain()
        net.node.send_fbu(_fbu(hk, pcoa, IPv6Address("2001:db8:2::1:0:0:a"), 1, mac))
        answer = net.node.fback(1)
        assert answer is not None, net.par.logs()[-3000:]
        fback = mn.verify_fback(hk, answer[1], par=PAR, destination=pcoa)  # signed by the service for the PAR
        assert fback.status == mhwire.FBackStatus.ACCEPTED
        assert len(net.par.logs()) and "fback.unsigned" not in net.par.logs()
    finally:
        net.par.stop()
        net.par.env = saved
        net.par.start()
