"""The handover data plane on real links: a 1,000 packets/s UDP stream from a correspondent behind the PAR to
the node's PCoA while the node moves from the PAR's access link to the NAR's (tests/router/_dataplane_net.py).

The kernel's IPv6 stack forwards, the PAR's agent captures the PCoA's packets in its TUN device and tunnels
them over a raw protocol-41 socket (this kernel has no ip6tnl), the NAR's agent delivers or buffers them;
tshark reads the tunnel on the backbone. What must hold is asserted, never how fast: with FMIPv6 off the
stream never comes back to the node; with predictive FMIPv6 and buffering nothing is lost and nothing
reordered; predictive without buffering and reactive lose packets only around the move, then the tunnel
carries the stream to the end. Needs root (CI runs it).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv6Address

import pytest

from aaa_fmip.router.dataplane_driver import kernel_has_ip6tnl
from tests.router._dataplane_net import Lab
from tests.router._netns import METRICS_PORT, NAR, PAR, Capture, in_netns
from tests.support.pcap import tshark_fields
from tests.support.redis_server import RedisServer
from tests.support.service_proc import cli_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs these as root)"),
]


@pytest.fixture(scope="module")
def lab(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("dataplane"), redis_server.url).up()
    try:
        yield lab
    finally:
        lab.down()


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if wanted else ''} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _drops(lab: Lab) -> list[str]:
    """The data plane's drop counters of both agents (for failure messages)."""
    lines = []
    for agent in (lab.par, lab.nar):
        if agent is not None and agent.proc is not None:
            text = agent.metrics(METRICS_PORT)
            lines += [
                f"{agent.ns}: {line}" for line in text.splitlines() if line.startswith("aaa_fmip_router_dataplane")
            ]
    return lines


def _capture_routes(lab: Lab) -> str:
    return lab.topo.run_in(lab.topo.par, ["ip", "-6", "route", "show", "table", "5568"]).stdout


def _rules(lab: Lab) -> list[str]:
    text = lab.topo.run_in(lab.topo.par, ["ip", "-6", "rule", "show"]).stdout
    return [line for line in text.splitlines() if line.startswith(("5568:", "5569:"))]


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_packet_loss_across_a_handover_off_predictive_buffered_reactive(lab: Lab) -> None:
    results = {mode: lab.run(mode) for mode in ("off", "predictive", "predictive-buffered", "reactive")}
    off, predictive, buffered, reactive = (results[m] for m in ("off", "predictive", "predictive-buffered", "reactive"))
    last = off["sent"] - 1
    # without FMIPv6 nothing brings the PCoA's packets to the node's new link: the stream never comes back
    assert off["lost"] > 0 and off["last_received"] < last, off
    # predictive with buffering: the NAR held what came while the node moved, and flushed it in order
    assert buffered["fback_status"] == 0
    assert (buffered["lost"], buffered["duplicates"], buffered["reordered"]) == (0, 0, 0), (buffered, _drops(lab))
    # without buffering (and reactive) packets are lost around the move only; the tunnel carries the rest
    for result in (predictive, reactive):
        assert result["fback_status"] == 0 and result["last_received"] == last, result
        assert 0 < result["lost"] < off["lost"], result
        assert result["duplicates"] == 0, result
    nar = lab.nar.metrics(METRICS_PORT) if lab.nar else ""
    assert _metric(nar, "aaa_fmip_router_dataplane_packets_total", action="buffered") > 0
    assert _metric(nar, "aaa_fmip_router_dataplane_packets_total", action="delivered") > 0
    for reason in ("buffer-full", "buffer-expired", "no-binding", "not-neighbour", "malformed"):
        assert _metric(nar, "aaa_fmip_router_dataplane_drops_total", reason=reason) == 0, _drops(lab)
    par = lab.par.metrics(METRICS_PORT) if lab.par else ""
    assert _metric(par, "aaa_fmip_router_dataplane_packets_total", action="tunnelled") > 0
    assert _metric(par, "aaa_fmip_router_dataplane_drops_total", reason="no-binding") == 0, _drops(lab)


def test_the_tunnel_is_ipv6_in_ipv6_from_the_par_to_the_nar(lab: Lab) -> None:
    pcap = lab.workdir / "backbone-tunnel.pcap"
    access = Capture(lab.topo, lab.topo.nar, "br0", lab.workdir / "nar-access.pcap")
    try:
        result = lab.run("predictive-buffered", count=400, capture=pcap)
    finally:
        time.sleep(1.2)  # dumpcap hands packets over in blocks (1 s timeout)
        access.stop()
    assert result["lost"] == 0, (result, _drops(lab))
    frames = tshark_fields(pcap, ["ipv6.src", "ipv6.dst", "ipv6.nxt", "udp.dstport"], display_filter="ipv6.nxt == 41")
    assert frames, f"no IPv6-in-IPv6 packet crossed the backbone: {result}"
    pcoa = IPv6Address(result["pcoa"])
    for frame in frames:
        # RFC 2473: outer header PAR → NAR with Next Header 41, the inner packet unchanged (to the PCoA)
        assert IPv6Address(frame["ipv6.src"][0]) == PAR
        assert [IPv6Address(a) for a in frame["ipv6.dst"]] == [NAR, pcoa]
        assert frame["ipv6.nxt"][0] == "41" and frame["ipv6.nxt"][1] == "17"
    assert len(frames) >= 100  # the stream went through it from the FBack on
    # the node's UNA as tshark reads it (RFC 5568 §6.3: R=S=O=0, Target = NCoA, its MAC in the Target LLA)
    fields = ["icmpv6.checksum.status", "icmpv6.nd.na.flag.r", "icmpv6.nd.na.flag.s", "icmpv6.nd.na.flag.o"]
    fields += ["icmpv6.nd.na.target_address", "icmpv6.opt.linkaddr", "ipv6.hlim"]
    ncoa = IPv6Address(pcoa.packed[:2] + b"\x0d\xb8\x00\x02" + pcoa.packed[6:])
    unas = tshark_fields(access.path, fields, display_filter=f"icmpv6.nd.na.target_address == {ncoa}")
    assert len(unas) == 1, unas
    una = unas[0]
    assert una["icmpv6.checksum.status"] == ["1"] and una["ipv6.hlim"] == ["255"]
    assert (una["icmpv6.nd.na.flag.r"], una["icmpv6.nd.na.flag.s"], una["icmpv6.nd.na.flag.o"]) == (["0"], ["0"], ["0"])
    assert [IPv6Address(a) for a in una["icmpv6.nd.na.target_address"]] == [ncoa]
    assert una["icmpv6.opt.linkaddr"] == ["02:00:00:00:00:01"]


def test_the_capture_route_goes_when_the_binding_ends(lab: Lab) -> None:
    lab.set_buffering(False)
    hk, pcoa, ncoa = lab.session()
    assert lab.fbu(hk, pcoa, ncoa, predictive=True, lifetime=4) == 0  # 4 s: one Lifetime unit
    # the route follows the FBack by the time of one netlink call
    assert _wait(lambda: str(pcoa) in _capture_routes(lab), timeout=5), lab.par.logs()[-2000:] if lab.par else ""
    assert _wait(lambda: str(pcoa) not in _capture_routes(lab), timeout=15), _capture_routes(lab)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_no_tun_device_or_route_outlives_the_agent(lab: Lab, how: signal.Signals) -> None:
    assert lab.par is not None and lab.par.proc is not None
    hk, pcoa, ncoa = lab.session()
    assert lab.fbu(hk, pcoa, ncoa, predictive=True, lifetime=40) == 0
    assert _wait(lambda: str(pcoa) in _capture_routes(lab), timeout=5)
    proc = lab.par.proc
    try:
        proc.send_signal(how)
        proc.wait(timeout=15)
        lab.par.proc = None
        links = lab.topo.run_in(lab.topo.par, ["ip", "link", "show"]).stdout
        routes = lab.topo.run_in(lab.topo.par, ["ip", "-6", "route", "show", "table", "all"]).stdout
        assert "fmip0" not in links and str(pcoa) not in routes
        # the policy rules go with a clean stop; after a crash they stay, pointing at an empty table
        assert _rules(lab) == (
            [] if how == signal.SIGTERM else ["5568:\tfrom all iif lo lookup main", "5569:\tfrom all lookup 5568"]
        )
    finally:
        lab.par.start()
    assert len(_rules(lab)) == 2  # a fresh start replaces them, never adds more


def test_a_second_agent_fails_cleanly_and_leaves_the_first_ones_rules(lab: Lab) -> None:
    assert lab.par is not None
    before = _rules(lab)
    assert len(before) == 2
    env = {**lab.par.env, "AAA_FMIP_ROUTER_METRICS__LISTEN": "", "AAA_FMIP_ROUTER_LOG__LEVEL": "INFO"}
    result = lab.topo.run_in(
        lab.topo.par,
        ["env", *(f"{k}={v}" for k, v in env.items()), *cli_command("router", "--config", str(lab.par.config))],
        timeout=60,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "the data plane could not be set up" in result.stderr and "Traceback" not in result.stderr
    assert _rules(lab) == before


def test_ip6tnl_detection_agrees_with_iproute2() -> None:
    """``mode = "auto"`` asks the kernel the way iproute2 does; both must give the same answer (here: no ip6tnl)."""
    ns = "dp" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=20)
    try:
        made = subprocess.run(
            ["ip", "-n", ns, "link", "add", "t0", "type", "ip6tnl", "local", "::1", "remote", "::1"],
            capture_output=True,
            timeout=20,
            check=False,
        )
        with in_netns(ns):
            from pyroute2 import IPRoute

            ipr = IPRoute()
            try:
                if made.returncode == 0:
                    ipr.link("del", ifname="t0")
                assert kernel_has_ip6tnl(ipr) is (made.returncode == 0)
                assert not ipr.link_lookup(ifname="fmiptprobe")  # the probe leaves nothing behind
            finally:
                ipr.close()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)
