"""Per-node prefixes on point-to-point links end to end (RFC 5568 §5.3, §6.3; RFC 5271 §5.1): the PAR and NAR
agents in network namespaces, a real key service, the real radvd started by the NAR agent, and the nodes'
kernels forming their addresses by SLAAC (addr_gen_mode eui64) on a veth of their own.

    mn ──wpar══apar─[br0 PAR]──bb══bb──[NAR]─pnpN══nN── node N (one veth per node, in the mn namespace)

The NAR is configured with the aggregate 2001:db8:2::/48 (what the PAR's neighbour table advertises) and a
pool of /64s in 2001:db8:2:100::/56. A node hands over with an NCoA formed from the aggregate; the FBack
tells it NCoA' (Status 1, Alternate CoA) and the test checks that NCoA' is the address its kernel then forms
from radvd's advertisement on its link. The 50-node variant is marked slow.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from aaa_fmip import mn
from aaa_fmip.keys import HandoverKey
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import mh as mhwire
from tests.router._netns import (
    NAR,
    NAR_AP,
    PAR,
    PAR_AP,
    Agent,
    Capture,
    MobileNode,
    NsService,
    Topology,
    _ip,
    in_netns,
)
from tests.support.pcap import tshark_fields
from tests.support.redis_server import RedisServer
from tests.support.service_proc import Credential, random_kek, render_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs these as root)")

AGGREGATE = IPv6Network("2001:db8:2::/48")
POOL = IPv6Network("2001:db8:2:100::/56")
METRICS_PORT = 9465


def _config(workdir: Path, name: str, service_url: str) -> Path:
    replay = workdir / f"{name}-replay.journal"
    if name == "par":
        own = f"""
[router]
addresses = ["{PAR}"]
access_prefixes = ["2001:db8:1::/64"]
access_interfaces = ["br0"]
replay_state = "{replay}"

[[neighbours]]
ap = "{PAR_AP}"
nar_address = "{PAR}"
nar_prefix = "2001:db8:1::/64"
local = true

[[neighbours]]
ap = "{NAR_AP}"
nar_address = "{NAR}"
nar_prefix = "{AGGREGATE}"
assigns_addresses = true
"""
    else:
        own = f"""
[router]
addresses = ["{NAR}"]
access_prefixes = ["2001:db8:2::/64"]
access_interfaces = ["br0"]
replay_state = "{replay}"

[prefixes]
aggregate = "{AGGREGATE}"
pool = "{POOL}"
interfaces = ["pnp*"]
hold = 60
radvd_directory = "{workdir / "radvd"}"
state_file = "{workdir / "prefixes.json"}"

[[neighbours]]
ap = "{NAR_AP}"
nar_address = "{NAR}"
nar_prefix = "{AGGREGATE}"
local = true

[[neighbours]]
ap = "{PAR_AP}"
nar_address = "{PAR}"
nar_prefix = "2001:db8:1::/64"
"""
    common = f"""
[service]
url = "{service_url}"
timeout = 1.0

[metrics]
listen = "127.0.0.1:{METRICS_PORT}"

[log]
level = "DEBUG"
"""
    path = workdir / f"{name}.toml"
    path.write_text(own + common, encoding="utf-8")
    return path


def node_mac(index: int) -> bytes:
    return bytes((0x02, 0, 0, 0, index >> 8, index & 0xFF))


@dataclass
class Node:
    index: int
    mac: bytes
    pcoa: IPv6Address
    hk: HandoverKey

    @property
    def ncoa_from_aggregate(self) -> IPv6Address:
        return IPv6Address(f"2001:db8:2::1:0:0:{self.index:x}")

    @property
    def link(self) -> str:
        return f"n{self.index}"


@dataclass
class PnpNet:
    topo: Topology
    service: NsService
    aaa: Credential
    par: Agent
    nar: Agent
    node: MobileNode
    workdir: Path

    def new_node(self, index: int) -> Node:
        """A fresh EAP session at the service for a node with MAC 02:00:00:00:hi:lo, and its PCoA on wpar."""
        emsk = secrets.token_bytes(64)
        session_id = b"\x0d" + secrets.token_bytes(64)
        mac = node_mac(index)
        body = {
            "emsk": emsk.hex(),
            "eap_session_id": session_id.hex(),
            "user_name": f"pnp{index}@example.net",
            "calling_station_id": "-".join(f"{b:02X}" for b in mac),
            "nas_identifier": "par",
            "lifetime": 3600,
        }
        with self.service.client(self.aaa) as client:
            response = client.post("/v1/sessions", json=body)
        assert response.status_code in (200, 201), response.text
        pcoa = IPv6Address(f"2001:db8:1::2:0:0:{index:x}")
        self.topo.add_address(pcoa)
        master = mn.derive_master_key(emsk=emsk, eap_session_id=session_id)
        return Node(index, mac, pcoa, mn.derive_handover_key(master, PAR))

    def fbu(self, node: Node) -> mn.FbuPacket:
        return mn.build_fbu_packet(
            node.hk,
            sequence=node.index,
            lifetime_seconds=40,
            pcoa=node.pcoa,
            ncoa=node.ncoa_from_aggregate,
            par=PAR,
            home_address_option=True,
            mh_lla=node.mac,
        )

    def fbacks(self, nodes: list[Node], timeout: float = 15.0) -> dict[int, mhwire.FBack]:
        """The FBack of every node (sequence number = node index), each verified with the node's HK."""
        by_sequence = {n.index: n for n in nodes}
        got: dict[int, mhwire.FBack] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(nodes) and (left := deadline - time.monotonic()) > 0:
            if not select.select([self.node.mh], [], [], left)[0]:
                break
            data = self.node.mh.recv(4096)
            if len(data) < 10 or data[2] != mhwire.MHType.FAST_BINDING_ACKNOWLEDGMENT:
                continue
            owner = by_sequence.get(int.from_bytes(data[8:10], "big"))
            if owner is not None:
                got[owner.index] = mn.verify_fback(owner.hk, data, par=PAR, destination=owner.pcoa)
        return got

    def attach(self, node: Node) -> None:
        """The node's own point-to-point link at the NAR: nN (its MAC, SLAAC with EUI-64) ══ pnpN."""
        _ip("link", "add", node.link, "netns", self.topo.mn, "type", "veth", "peer", "name", f"pnp{node.index}",
            "netns", self.topo.nar)  # fmt: skip
        mac = ":".join(f"{b:02x}" for b in node.mac)
        _ip("-n", self.topo.mn, "link", "set", node.link, "address", mac, "addrgenmode", "eui64")
        _ip("-n", self.topo.nar, "link", "set", f"pnp{node.index}", "up")
        _ip("-n", self.topo.mn, "link", "set", node.link, "up")

    def detach(self, node: Node) -> None:
        _ip("-n", self.topo.mn, "link", "del", node.link)

    def slaac(self, nodes: list[Node], timeout: float = 30.0) -> dict[int, IPv6Address]:
        """The global address each node's kernel formed on its link (waits until every node has one)."""
        by_link = {n.link: n for n in nodes}
        found: dict[int, IPv6Address] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.topo.run_in(self.topo.mn, ["ip", "-6", "-o", "addr", "show", "scope", "global"]).stdout
            for line in out.splitlines():
                fields = line.split()
                node = by_link.get(fields[1].split("@")[0]) if len(fields) > 3 else None
                if node is not None and fields[2] == "inet6":
                    found[node.index] = IPv6Address(fields[3].split("/")[0])
            if len(found) == len(nodes):
                break
            time.sleep(0.2)
        return found

    def metric(self, name: str) -> float:
        text = self.nar.metrics(METRICS_PORT)
        line = next((ln for ln in text.splitlines() if ln.startswith(name + " ")), None)
        assert line is not None, f"{name} not in the NAR's metrics"
        return float(line.split()[-1])

    def wait_metric(self, name: str, value: float, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.metric(name) != value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} is {self.metric(name)}, not {value}:\n{self.nar.logs()[-3000:]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def net(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PnpNet]:
    workdir = tmp_path_factory.mktemp("router-pnp")
    topo = Topology().up()
    agents: list[Agent] = []
    service: NsService | None = None
    node: MobileNode | None = None
    try:
        _ip("-n", topo.par, "route", "add", str(AGGREGATE), "via", "2001:db8:ff::2")
        creds = {
            "par": Credential.new("ar", "par", [str(PAR)]),
            "nar": Credential.new("ar", "nar", [str(NAR)]),
            "aaa": Credential.new("aaa", "radius1"),
        }
        config = render_config(
            store_url=redis_server.url, prefix="p" + secrets.token_hex(4), credentials=list(creds.values())
        )
        service = NsService(workdir / "service", topo.service_host, config=config, env={"AAA_FMIP_KEK": random_kek()})
        service.start()
        for name, ns in (("par", topo.par), ("nar", topo.nar)):
            path = _config(workdir, name, service.url)
            agents.append(Agent(topo, ns, path, {"AAA_FMIP_ROUTER_SERVICE__TOKEN": creds[name].token}).start())
        node = MobileNode(topo)
        yield PnpNet(topo, service, creds["aaa"], agents[0], agents[1], node, workdir)
    finally:
        if node is not None:
            node.close()
        for agent in agents:
            agent.stop()
        if service is not None:
            service.stop()
        topo.down()


def _radvd_running(directory: Path, timeout: float = 10.0) -> bool:
    """Whether a radvd runs on ``directory``/radvd.conf (its pid file names it, its command line the file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            pid = int((directory / "radvd.pid").read_text().strip())
            if str(directory / "radvd.conf").encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return True
        time.sleep(0.05)
    return False


def _in_pool(address: IPv6Address) -> IPv6Network:
    assert address in POOL, f"{address} is not from the pool {POOL}"
    return IPv6Network(f"{address}/64", strict=False)


def test_predicted_ncoa_is_the_address_slaac_forms_from_radvd(net: PnpNet) -> None:
    node = net.new_node(1)  # MAC 02:00:00:00:00:01
    captures = [
        Capture(net.topo, net.topo.nar, "bb", net.workdir / "pnp-backbone.pcap"),
        Capture(net.topo, net.topo.par, "br0", net.workdir / "pnp-par-access.pcap"),
    ]
    try:
        net.node.drain()
        net.node.send_fbu(net.fbu(node))
        fback = net.fbacks([node])[node.index]
    finally:
        time.sleep(1.2)  # dumpcap hands packets over in 1 s blocks
        pcaps = [c.stop() for c in captures]
    assert fback.status == mhwire.FBackStatus.ACCEPTED_NCOA_INVALID  # Status 1: use the Alternate CoA
    (alternate,) = [o.address for o in fback.options if isinstance(o, mhwire.AlternateCareOfAddress)]
    prefix = _in_pool(alternate)
    assert alternate == IPv6Address(f"{prefix.network_address}") + 0xFF_FE00_0001  # prefix::ff:fe00:1
    # tshark reads what crossed the backbone: HI S=1, HAck Code 2 with MH option 34 codes 2 (NCoA') and 4 (prefix)
    backbone = tshark_fields(
        pcaps[0],
        [
            "mip6.mhtype",
            "mip6.hi.s_flag",
            "mip6.hack.code",
            "mip6.mhipv6ap.opt_code",
            "mip6.mhipv6ap.ipv6_address",
            "mip6.mhipv6ap.ipv6_address_prefix",
        ],
    )
    hi = [f for f in backbone if f["mip6.mhtype"] == ["14"]]
    hack = [f for f in backbone if f["mip6.mhtype"] == ["15"]]
    assert hi and all(f["mip6.hi.s_flag"] == ["1"] for f in hi)
    assert hack and hack[0]["mip6.hack.code"] == ["2"] and hack[0]["mip6.mhipv6ap.opt_code"] == ["2", "4"]
    assert str(alternate) in hack[0]["mip6.mhipv6ap.ipv6_address"] + hack[0]["mip6.mhipv6ap.ipv6_address_prefix"]
    access = tshark_fields(pcaps[1], ["mip6.mhtype", "mip6.fback.status", "mip6.acoa.acoa"])
    assert {"mip6.mhtype": ["9"], "mip6.fback.status": ["1"], "mip6.acoa.acoa": [str(alternate)]} in access

    # the node attaches on its own link: its kernel's SLAAC address from radvd's RA is the predicted NCoA'
    net.attach(node)
    formed = net.slaac([node]).get(node.index)
    assert formed == alternate, net.nar.logs()[-3000:]
    route = net.topo.run_in(net.topo.nar, ["ip", "-6", "route", "show", str(prefix)]).stdout
    assert f"dev pnp{node.index}" in route
    # a datagram from the PAR reaches the node at NCoA': PAR → NAR (the aggregate) → the node's own link
    with in_netns(net.topo.mn):
        receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        receiver.bind((str(alternate), 0, 0, 0))
        port = receiver.getsockname()[1]
        probe = f"import socket;socket.socket(socket.AF_INET6,socket.SOCK_DGRAM).sendto(b'pnp',('{alternate}',{port}))"
        net.topo.run_in(net.topo.par, ["python3", "-c", probe])
        assert select.select([receiver], [], [], 5.0)[0], "nothing arrived at NCoA'"
        assert receiver.recv(16) == b"pnp"
    finally:
        receiver.close()
    assert net.metric("aaa_fmip_router_prefixes_allocated") == 1

    # the NAR agent restarts: the node keeps its prefix (from the state file), radvd advertises it again, and
    # the next node gets another one
    net.nar.stop()
    assert "pnp1" in (net.workdir / "prefixes.json").read_text()
    net.nar.start()
    net.wait_metric("aaa_fmip_router_prefixes_allocated", 1)
    assert _radvd_running(net.workdir / "radvd"), net.nar.logs()[-3000:]  # started again for the restored link
    assert f"prefix {prefix} {{" in (net.workdir / "radvd" / "radvd.conf").read_text()
    other = net.new_node(3)
    net.node.drain()
    net.node.send_fbu(net.fbu(other))
    other_fback = net.fbacks([other])[other.index]
    other_ncoa = next(o.address for o in other_fback.options if isinstance(o, mhwire.AlternateCareOfAddress))
    assert _in_pool(other_ncoa) != prefix

    # the binding ends with the link: the prefix goes back, the route and the radvd stanza go
    net.detach(node)
    net.wait_metric("aaa_fmip_router_prefixes_allocated", 1)  # node 3's, held until it attaches or hold ends
    assert net.metric("aaa_fmip_router_prefixes_free") == 255
    net.attach(other)
    assert net.slaac([other]).get(other.index) == other_ncoa
    net.detach(other)
    net.wait_metric("aaa_fmip_router_prefixes_allocated", 0)
    assert net.metric("aaa_fmip_router_prefixes_free") == 256
    assert "pnp1" not in (net.workdir / "radvd" / "radvd.conf").read_text()


def _recv_naack(sock: socket.socket, timeout: float = 5.0) -> bytes | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return None
        data = sock.recv(4096)
        if data[:1] == b"\x86" and bytes((20, 3)) in data:
            return data
    return None


def test_reactive_una_gets_ra_with_naack_status_2(net: PnpNet) -> None:
    node = net.new_node(2)
    baseline = net.metric("aaa_fmip_router_prefixes_allocated")  # e.g. a node announced but not attached yet
    net.attach(node)
    capture = Capture(net.topo, net.topo.nar, f"pnp{node.index}", net.workdir / "pnp-una.pcap")
    with in_netns(net.topo.mn):
        listen = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        send = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        ifindex = socket.if_nametoindex(node.link)
    try:
        listen.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, node.link.encode())
        # the UNA (RFC 5568 §6.3): R=S=O=0, source and Target the NCoA the node formed from the aggregate
        ncoa = node.ncoa_from_aggregate
        all_nodes = IPv6Address("ff02::1")
        una = icmpv6.encode_nd_message(
            icmpv6.NeighborAdvertisement(ncoa, (icmpv6.TargetLinkLayerAddress(node.mac),)),
            source=ncoa,
            destination=all_nodes,
        )
        header = bytes((0x60, 0, 0, 0)) + len(una).to_bytes(2, "big") + bytes((58, 255))
        send.sendto(header + ncoa.packed + all_nodes.packed + una, ("ff02::1", 0, 0, ifindex))
        ra = _recv_naack(listen)
    finally:
        listen.close()
        send.close()
        time.sleep(1.2)
        pcap = capture.stop()
    assert ra is not None, net.nar.logs()[-3000:]
    naack_at = ra.index(bytes((20, 3)))
    naack = ra[naack_at : naack_at + 24]
    assert naack[2:8] == bytes((0, 2, 0, 0, 0, 0))  # Option-Code 0, Status 2, Reserved
    supplied = IPv6Address(naack[8:24])  # the NCoA at octet 8 (architecture.md §9)
    prefix = _in_pool(supplied)
    assert supplied == IPv6Address(f"{prefix.network_address}") + 0xFF_FE00_0002
    # tshark 4.0 decodes Status 2 but reads the NCoA 4 octets early (docs/protocol.md §8): asserted as it is
    fields = tshark_fields(pcap, ["icmpv6.type", "icmpv6.opt.naack.status", "icmpv6.opt.naack.supplied_ncoa"])
    decoded = [f for f in fields if f["icmpv6.opt.naack.status"]]
    assert decoded and decoded[0]["icmpv6.opt.naack.status"] == ["2"]
    assert decoded[0]["icmpv6.opt.naack.supplied_ncoa"] == [str(IPv6Address(naack[4:20]))]
    # and the node's kernel forms exactly that address on its link
    assert net.slaac([node]).get(node.index) == supplied
    net.detach(node)
    net.wait_metric("aaa_fmip_router_prefixes_allocated", baseline)


@pytest.mark.slow
def test_fifty_nodes_at_once_get_fifty_prefixes_and_all_come_back(net: PnpNet) -> None:
    nodes = [net.new_node(100 + i) for i in range(50)]
    baseline = net.metric("aaa_fmip_router_prefixes_allocated")  # held by earlier tests' nodes, if any
    packets = [net.fbu(node) for node in nodes]
    net.node.drain()
    started = time.monotonic()
    for packet in packets:  # fifty FBUs back to back: fifty HIs with S=1 at the NAR at once
        net.node.send_fbu(packet)
    fbacks = net.fbacks(nodes, timeout=30.0)
    answered = time.monotonic() - started
    assert sorted(fbacks) == [n.index for n in nodes], net.par.logs()[-3000:]
    predicted: dict[int, IPv6Address] = {}
    for index, fback in fbacks.items():
        assert fback.status == mhwire.FBackStatus.ACCEPTED_NCOA_INVALID
        predicted[index] = next(o.address for o in fback.options if isinstance(o, mhwire.AlternateCareOfAddress))
    prefixes = {_in_pool(a) for a in predicted.values()}
    assert len(prefixes) == 50
    assert net.metric("aaa_fmip_router_prefixes_allocated") == baseline + 50
    try:
        for node in nodes:
            net.attach(node)
        attached = time.monotonic()
        formed = net.slaac(nodes, timeout=60.0)
        assert formed == predicted, net.nar.logs()[-3000:]
        print(f"50 FBUs to 50 FBacks: {answered * 1000:.0f} ms; 50 links up to 50 SLAAC addresses: "
              f"{time.monotonic() - attached:.1f} s")  # fmt: skip
    finally:
        for node in nodes:
            with contextlib.suppress(RuntimeError):
                net.detach(node)
    net.wait_metric("aaa_fmip_router_prefixes_allocated", baseline, timeout=20.0)
    assert net.metric("aaa_fmip_router_prefixes_free") == (POOL.num_addresses >> 64) - baseline
