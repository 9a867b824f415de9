"""A handover under a steady UDP stream, in namespaces: what the data plane saves (test_netns_dataplane.py and
bench/bench_dataplane.py share it).

    cn ──[par: br0 + fmip0 (TUN)]══bb══[nar: br0]── mn      (+ the topology of _netns.py: routers, service)

A correspondent namespace ``cn`` hangs off the PAR; it streams UDP to the node's PCoA (1,000 packets/s). The
node moves from the PAR's access link to the NAR's: the PAR's access point drops it (its port goes down, so the
node's interface loses carrier and keeps its addresses, as a radio that lost its association does), a pause
stands for the link-layer switch, then the node comes up on the NAR's link with its NCoA and sends an
Unsolicited NA (RFC 5568 §6.3). Modes:

* ``off``: no FBU. Nothing forwards the PCoA's packets after the node left.
* ``predictive``: FBU from the PAR's link, FBack, then the move; HI without U (no buffering at the NAR).
* ``predictive-buffered``: the same with HI U=1: the NAR buffers until the UNA.
* ``reactive``: the move first, then the FBU from the NCoA through the NAR.

Both routers run ``aaa-fmip router`` with ``[dataplane] enable = true``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from aaa_fmip import mn
from aaa_fmip.wire.icmpv6 import NeighborAdvertisement, TargetLinkLayerAddress, encode_nd_message
from tests.router._netns import NAR, PAR, Agent, Capture, MobileNode, NsService, Topology, in_netns, router_config
from tests.router._stream import summarise
from tests.support.service_proc import Credential, clean_env, random_kek, render_config

MODES = ("off", "predictive", "predictive-buffered", "reactive")
CN = IPv6Address("2001:db8:cc::2")
MN_MAC = bytes.fromhex("020000000001")  # _netns.MN_MAC: the node's MAC on both links
PORT = 5000  # + the run's index: packets of an earlier run, queued in a kernel until the node came back, are
# not counted for a later one


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Lab:
    workdir: Path
    redis_url: str
    switch_seconds: float = 0.05  # the link-layer switch: from leaving the PAR's link to arriving at the NAR's
    topo: Topology = field(default_factory=Topology)
    service: NsService | None = None
    par: Agent | None = None
    nar: Agent | None = None
    node: MobileNode | None = None
    aaa: Credential | None = None
    buffering: bool | None = None
    _index: int = 0

    @property
    def cn(self) -> str:
        return f"{self.topo.tag}-cn"

    # ---- set up and tear down

    def up(self) -> Lab:
        try:
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _up(self) -> None:
        self.topo.up()
        # the node ignores routes through a link without carrier (the PAR's, once it left): its reactive FBU
        # then takes the default route through the NAR
        settings = [f"net.ipv6.conf.{i}.ignore_routes_with_linkdown=1" for i in ("all", "default", "wpar", "wnar")]
        self.topo.sysctl(self.topo.mn, *settings)
        _ip("netns", "add", self.cn)
        _ip("-n", self.cn, "link", "set", "lo", "up")
        self.topo.sysctl(self.cn, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        _ip("link", "add", "cn0", "netns", self.cn, "type", "veth", "peer", "name", "cn", "netns", self.topo.par)
        _ip("-n", self.cn, "addr", "add", f"{CN}/64", "dev", "cn0", "nodad")
        _ip("-n", self.topo.par, "addr", "add", "2001:db8:cc::1/64", "dev", "cn", "nodad")
        _ip("-n", self.cn, "link", "set", "cn0", "up")
        _ip("-n", self.topo.par, "link", "set", "cn", "up")
        _ip("-n", self.cn, "-6", "route", "add", "default", "via", "2001:db8:cc::1")
        creds = {
            "par": Credential.new("ar", "par", [str(PAR)]),
            "nar": Credential.new("ar", "nar", [str(NAR)]),
            "aaa": Credential.new("aaa", "radius1"),
        }
        self.aaa = creds["aaa"]
        config = render_config(
            store_url=self.redis_url, prefix="d" + secrets.token_hex(4), credentials=list(creds.values())
        )
        self.service = NsService(
            self.workdir / "service", self.topo.service_host, config=config, env={"AAA_FMIP_KEK": random_kek()}
        )
        self.service.start()
        agents = []
        for name, ns in (("par", self.topo.par), ("nar", self.topo.nar)):
            path = router_config(self.workdir, name, self.service.url)
            env = {
                "AAA_FMIP_ROUTER_SERVICE__TOKEN": creds[name].token,
                "AAA_FMIP_ROUTER_DATAPLANE__ENABLE": "true",
            }
            agents.append(Agent(self.topo, ns, path, env))
        self.par, self.nar = agents
        self.set_buffering(False)
        self.nar.start()
        self.node = MobileNode(self.topo)

    def set_buffering(self, on: bool) -> None:
        """(Re)start the PAR agent with HI U=``on``."""
        assert self.par is not None
        if self.buffering == on:
            return
        self.par.stop()
        self.par.env = {**self.par.env, "AAA_FMIP_ROUTER_ROUTER__REQUEST_BUFFERING": "true" if on else "false"}
        self.par.start()
        self.buffering = on

    def down(self) -> None:
        if self.node is not None:
            self.node.close()
        for agent in (self.par, self.nar):
            if agent is not None:
                agent.stop()
        if self.service is not None:
            self.service.stop()
        subprocess.run(["ip", "netns", "del", self.cn], capture_output=True, timeout=20, check=False)
        self.topo.down()

    # ---- the node

    def session(self) -> tuple[mn.HandoverKey, IPv6Address, IPv6Address]:
        """A fresh session at the service; the node's HK for the PAR, a PCoA on the PAR's link, an NCoA."""
        assert self.service is not None and self.aaa is not None
        self._index += 1
        emsk, sid = secrets.token_bytes(64), b"\x0d" + secrets.token_bytes(64)
        body = {
            "emsk": emsk.hex(),
            "eap_session_id": sid.hex(),
            "user_name": f"dp{self._index}@example.net",
            "calling_station_id": f"02-00-00-30-00-{self._index:02X}",
            "nas_identifier": "par",
            "lifetime": 3600,
        }
        with self.service.client(self.aaa) as client:
            response = client.post("/v1/sessions", json=body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"ingest failed: {response.status_code} {response.text}")
        suffix = f"3:0:0:{self._index:x}"
        pcoa, ncoa = IPv6Address(f"2001:db8:1::{suffix}"), IPv6Address(f"2001:db8:2::{suffix}")
        self.topo.add_address(pcoa)
        hk = mn.derive_handover_key(mn.derive_master_key(emsk=emsk, eap_session_id=sid), PAR)
        return hk, pcoa, ncoa

    def leave_par(self) -> None:
        _ip("-n", self.topo.par, "link", "set", "apar", "down")

    def arrive_at_nar(self, ncoa: IPv6Address) -> None:
        """Up on the NAR's link with the NCoA, default route to the NAR, and the UNA (RFC 5568 §6.3)."""
        _ip("-n", self.topo.mn, "link", "set", "wnar", "up")
        with contextlib.suppress(RuntimeError):
            _ip("-n", self.topo.mn, "addr", "add", f"{ncoa}/64", "dev", "wnar", "nodad")
        _ip("-n", self.topo.mn, "-6", "route", "replace", "default", "via", str(NAR), "dev", "wnar")
        assert self.node is not None
        with in_netns(self.topo.mn):
            ifindex = socket.if_nametoindex("wnar")
        all_nodes = IPv6Address("ff02::1")
        una = encode_nd_message(
            NeighborAdvertisement(ncoa, options=(TargetLinkLayerAddress(MN_MAC),)),
            source=ncoa,
            destination=all_nodes,
        )
        pktinfo = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, ncoa.packed + struct.pack("@I", ifindex))
        self.node.icmp.sendmsg([una], [pktinfo], 0, (str(all_nodes), 0, 0, ifindex))

    def back_to_par(self) -> None:
        _ip("-n", self.topo.mn, "link", "set", "wnar", "down")
        _ip("-n", self.topo.par, "link", "set", "apar", "up")
        _ip("-n", self.topo.mn, "-6", "route", "replace", "default", "via", str(PAR), "dev", "wpar")

    def fbu(self, hk: mn.HandoverKey, pcoa: IPv6Address, ncoa: IPv6Address, *, predictive: bool, lifetime: int) -> int:
        """Send the FBU and wait for its FBack (status returned)."""
        assert self.node is not None
        packet = mn.build_fbu_packet(
            hk,
            sequence=1,
            lifetime_seconds=lifetime,
            pcoa=pcoa,
            ncoa=ncoa,
            par=PAR,
            home_address_option=True,
            mh_lla=MN_MAC,
            alternate_coa=predictive,
        )
        self.node.drain()
        self.node.send_fbu(packet)
        answer = self.node.fback(1, timeout=5.0)
        if answer is None:
            raise RuntimeError(f"no FBack:\n{self.par.logs()[-3000:] if self.par else ''}")
        fback = mn.verify_fback(hk, answer[1], par=PAR, destination=pcoa if predictive else ncoa)
        return int(fback.status)

    # ---- one measured handover

    @staticmethod
    def _stream(ns: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.router._stream", *args]

    def run(
        self, mode: str, *, count: int = 2000, rate: float = 1000.0, lifetime: int = 40, capture: Path | None = None
    ) -> dict[str, Any]:
        """One stream of ``count`` packets across one handover in ``mode``; the summary of what arrived.
        ``capture``: also write what crossed the backbone (the tunnel) to this pcap."""
        if mode not in MODES:
            raise ValueError(f"mode is one of {', '.join(MODES)}")
        self.set_buffering(mode == "predictive-buffered")
        hk, pcoa, ncoa = self.session()
        out = self.workdir / f"arrivals-{mode}-{self._index}.json"
        port = str(PORT + self._index)
        recv = subprocess.Popen(
            self._stream(self.topo.mn, "recv", "--port", port, "--out", str(out)),
            stdout=subprocess.PIPE,
            env=clean_env(),
            text=True,
        )
        sender: subprocess.Popen[str] | None = None
        dumpcap = Capture(self.topo, self.topo.par, "bb", capture) if capture is not None else None
        try:
            assert recv.stdout is not None
            if recv.stdout.readline().strip() != "ready":
                raise RuntimeError("the receiver did not start")
            sender = subprocess.Popen(
                self._stream(
                    self.cn, "send", "--to", str(pcoa), "--port", port, "--count", str(count), "--rate", str(rate)
                ),
                stdout=subprocess.PIPE,
                env=clean_env(),
                text=True,
            )
            assert sender.stdout is not None
            if not select.select([sender.stdout], [], [], 30)[0] or sender.stdout.readline().strip() != "started":
                raise RuntimeError("the sender did not start")
            time.sleep(min(0.5, count / rate / 4))  # the stream flows to the node on the PAR's link
            status: int | None = None
            started = time.monotonic()
            if mode in ("predictive", "predictive-buffered"):
                status = self.fbu(hk, pcoa, ncoa, predictive=True, lifetime=lifetime)
            left = time.monotonic()
            self.leave_par()
            time.sleep(self.switch_seconds)
            self.arrive_at_nar(ncoa)
            arrived = time.monotonic()
            if mode == "reactive":
                status = self.fbu(hk, pcoa, ncoa, predictive=False, lifetime=lifetime)
            signalled = time.monotonic()
            out_text, _ = sender.communicate(timeout=count / rate + 30)
            sender_summary = json.loads(out_text)
            time.sleep(0.5)  # what is buffered or in flight arrives
        finally:
            if sender is not None and sender.poll() is None:
                sender.kill()
                sender.wait(timeout=10)
            if dumpcap is not None:
                dumpcap.stop()
            recv.send_signal(signal.SIGTERM)
            try:
                recv.wait(timeout=15)
            except subprocess.TimeoutExpired:
                recv.kill()
                recv.wait(timeout=10)
            self.back_to_par()
        arrivals = json.loads(out.read_text(encoding="utf-8")) if out.exists() else []
        summary = summarise(sender_summary, arrivals)
        first = float(sender_summary["first"])
        seen = {int(a[0]) for a in arrivals}
        summary.update(
            lost_sent_at_ms=[round(i / rate * 1000, 1) for i in range(count) if i not in seen][:20],
            left_at_ms=round((left - first) * 1000, 1),
            stream_seconds=round(float(sender_summary["last"]) - first, 3),  # the rate the sender kept
            arrived_at_ms=round((arrived - first) * 1000, 1),
            mode=mode,
            fback_status=status,
            switch_ms=round((arrived - left) * 1000, 1),
            signalling_ms=round(((left - started) if mode != "reactive" else (signalled - arrived)) * 1000, 1),
            pcoa=str(pcoa),
        )
        return summary
