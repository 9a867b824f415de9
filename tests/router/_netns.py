"""Network namespaces for the router agent's end-to-end tests: a mobile node, two access routers, the service.

    mn ──wpar══apar─[br0 par]──bb══bb──[br0 nar]─anar══wnar── mn        (IPv6, the kernel's own stack)
                      │ svc                   │ svc
                      └──── root namespace ───┘  aaa-fmip serve on 10.N.1.1 (IPv4 veths, root side)

Each access link is a bridge in the router's namespace (the "access point"), so the router's interface stays
up when the node's end goes down. Everything is removed by :meth:`Topology.down`, also when ``up`` fails
half-way. :func:`in_netns` lets the test process open sockets inside a namespace (``setns`` on this thread);
the sockets stay there when the thread switches back.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from aaa_fmip import mn
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire.icmpv6 import LinkLayerAddressCode
from tests.support.service_proc import ServiceProcess, clean_env, cli_command

CLONE_NEWNET = 0x40000000
PAR = IPv6Address("2001:db8:1::1")
NAR = IPv6Address("2001:db8:2::1")
PAR_AP = "02:aa:00:00:00:01"
NAR_AP = "02:bb:00:00:00:01"
MN_MAC = "02:00:00:00:00:01"

_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


class Topology:
    def __init__(self) -> None:
        tag = "r" + secrets.token_hex(3)
        self.tag = tag
        self.mn, self.par, self.nar = f"{tag}-mn", f"{tag}-par", f"{tag}-nar"
        octet = 100 + secrets.randbelow(150)
        self.service_host = f"10.{octet}.1.1"
        self._svc_nets = (f"10.{octet}.1", f"10.{octet}.2")

    def sysctl(self, ns: str, *settings: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings], check=True, timeout=20)

    def up(self) -> Topology:
        try:
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _up(self) -> None:
        a, b = self._svc_nets
        for ns in (self.mn, self.par, self.nar):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            settings = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
            settings += ["net.ipv6.conf.all.keep_addr_on_down=1", "net.ipv6.conf.default.keep_addr_on_down=1"]
            if ns != self.mn:
                settings += ["net.ipv6.conf.all.forwarding=1"]
            self.sysctl(ns, *settings)
        for ns, mac, prefix in ((self.par, PAR_AP, PAR), (self.nar, NAR_AP, NAR)):
            _ip("-n", ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
            _ip("-n", ns, "link", "set", "br0", "address", mac, "up")
            _ip("-n", ns, "addr", "add", f"{prefix}/64", "dev", "br0", "nodad")
        for mn_end, ap_end, ns in (("wpar", "apar", self.par), ("wnar", "anar", self.nar)):
            _ip("link", "add", mn_end, "netns", self.mn, "type", "veth", "peer", "name", ap_end, "netns", ns)
            _ip("-n", ns, "link", "set", ap_end, "master", "br0", "up")
            _ip("-n", self.mn, "link", "set", mn_end, "address", MN_MAC)
        _ip("-n", self.mn, "link", "set", "wpar", "up")
        _ip("link", "add", "bb", "netns", self.par, "type", "veth", "peer", "name", "bb", "netns", self.nar)
        _ip("-n", self.par, "addr", "add", "2001:db8:ff::1/64", "dev", "bb", "nodad")
        _ip("-n", self.nar, "addr", "add", "2001:db8:ff::2/64", "dev", "bb", "nodad")
        for ns in (self.par, self.nar):
            _ip("-n", ns, "link", "set", "bb", "up")
        _ip("-n", self.par, "route", "add", "2001:db8:2::/64", "via", "2001:db8:ff::2")
        _ip("-n", self.nar, "route", "add", "2001:db8:1::/64", "via", "2001:db8:ff::1")
        for ns, net, side in ((self.par, a, "p"), (self.nar, b, "n")):
            root = f"{self.tag}{side}"
            _ip("link", "add", root, "type", "veth", "peer", "name", "svc", "netns", ns)
            _ip("addr", "add", f"{net}.1/30", "dev", root)
            _ip("link", "set", root, "up")
            _ip("-n", ns, "addr", "add", f"{net}.2/30", "dev", "svc")
            _ip("-n", ns, "link", "set", "svc", "up")
            if net == b:
                _ip("-n", ns, "route", "add", f"{self.service_host}/32", "via", f"{net}.1")
        _ip("-n", self.mn, "addr", "add", "2001:db8:1::100/64", "dev", "wpar", "nodad")
        self.mn_on_par()

    def mn_on_par(self) -> None:
        """The node on the PAR's link: wpar up with its PCoAs, default route to the PAR."""
        with contextlib.suppress(RuntimeError):
            _ip("-n", self.mn, "link", "set", "wnar", "down")
        _ip("-n", self.mn, "link", "set", "wpar", "up")
        _ip("-n", self.mn, "-6", "route", "replace", "default", "via", str(PAR), "dev", "wpar")

    def mn_on_nar(self, ncoa: IPv6Address) -> None:
        """The node moved: wpar down, wnar up with ``ncoa``, default route to the NAR."""
        _ip("-n", self.mn, "link", "set", "wpar", "down")
        _ip("-n", self.mn, "link", "set", "wnar", "up")
        with contextlib.suppress(RuntimeError):
            _ip("-n", self.mn, "addr", "add", f"{ncoa}/64", "dev", "wnar", "nodad")
        _ip("-n", self.mn, "-6", "route", "replace", "default", "via", str(NAR), "dev", "wnar")

    def add_address(self, address: IPv6Address, dev: str = "wpar") -> None:
        """Configure ``address`` on the node and let the PAR resolve it once (a just-configured address can
        miss the first Neighbor Solicitation, which costs the kernel's 1 s retransmission timer)."""
        with contextlib.suppress(RuntimeError):
            _ip("-n", self.mn, "addr", "add", f"{address}/64", "dev", dev, "nodad")
        if dev == "wpar":
            poke = f"import socket;socket.socket(socket.AF_INET6,socket.SOCK_DGRAM).sendto(b'',('{address}',9))"
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                self.run_in(self.par, ["python3", "-c", poke])
                state = self.run_in(self.par, ["ip", "-6", "neigh", "show", str(address)]).stdout
                if any(word in state for word in ("REACHABLE", "STALE", "DELAY", "PROBE")):
                    return
                time.sleep(0.1)

    def down(self) -> None:
        for ns in (self.mn, self.par, self.nar):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)
        for side in ("p", "n"):  # gone with their peers already, unless setup stopped in between
            subprocess.run(["ip", "link", "del", f"{self.tag}{side}"], capture_output=True, timeout=20, check=False)

    def popen(
        self, ns: str, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT, env=clean_env(env)
            )

    def run_in(self, ns: str, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )


METRICS_PORT = 9464


class NsService(ServiceProcess):
    """``aaa-fmip serve`` listening on the root side of the routers' service links."""

    def __init__(self, workdir: Path, host: str, **kwargs: object) -> None:
        self.host = host
        super().__init__(workdir, **kwargs)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        assert self.config_path is not None
        return cli_command("serve", "--listen", f"{self.host}:{self.port}", "--config", str(self.config_path))


def router_config(workdir: Path, name: str, service_url: str) -> Path:
    me, other = (PAR, NAR) if name == "par" else (NAR, PAR)
    my_net, other_net = (IPv6Network(f"{a}/64", strict=False) for a in (me, other))
    my_ap, other_ap = (PAR_AP, NAR_AP) if name == "par" else (NAR_AP, PAR_AP)
    text = f"""
[router]
addresses = ["{me}"]
access_prefixes = ["{my_net}"]
access_interfaces = ["br0"]
replay_state = "{workdir / (name + "-replay.journal")}"

[service]
url = "{service_url}"
timeout = 1.0

[metrics]
listen = "127.0.0.1:{METRICS_PORT}"

[log]
level = "DEBUG"

[[neighbours]]
ap = "{my_ap}"
nar_address = "{me}"
nar_prefix = "{my_net}"
local = true

[[neighbours]]
ap = "{other_ap}"
nar_address = "{other}"
nar_prefix = "{other_net}"
nar_lla = "{other_ap}"
"""
    path = workdir / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Agent:
    """``aaa-fmip router`` in a namespace, its log in ``workdir``."""

    def __init__(self, topo: Topology, ns: str, config: Path, env: dict[str, str]) -> None:
        self.topo, self.ns, self.config, self.env = topo, ns, config, env
        self.log = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Agent:
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = self.topo.popen(
            self.ns, cli_command("router", "--config", str(self.config)), log=self.log, env=self.env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router agent exited {self.proc.returncode}:\n{self.logs()[-3000:]}")
            if "router agent running" in self.logs()[offset:]:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"router agent not running within {timeout} s:\n{self.logs()[-3000:]}")

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=15)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def metrics(self, port: int) -> str:
        script = f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics',timeout=5).read().decode())"
        result = self.topo.run_in(self.ns, ["python3", "-c", script])
        return result.stdout


class Capture:
    """dumpcap on one interface of a namespace, to a pcap file."""

    def __init__(self, topo: Topology, ns: str, interface: str, path: Path) -> None:
        self.path = path
        self.err = path.with_suffix(".err")
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, "dumpcap", "-q", "-P", "-i", interface, "-w", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            # "Capturing on" comes before dumpcap opens the interface; the file's header only after it.
            if "Capturing on" in self.err.read_text(errors="replace") and path.exists() and path.stat().st_size >= 24:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dumpcap did not start: {self.err.read_text(errors='replace')}")

    def stop(self) -> Path:
        if self.proc.poll() is None:
            time.sleep(0.2)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.path


def read_pcap_ipv6(path: Path) -> list[bytes]:
    """The IPv6 packets of an Ethernet pcap written by dumpcap -P."""
    data = path.read_bytes()
    packets = []
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack("<I", data[pos + 8 : pos + 12])[0]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) > 14 and frame[12:14] == b"\x86\xdd":
            packets.append(frame[14:])
    return packets


class MobileNode:
    """The node's raw sockets in the ``mn`` namespace, driven with :mod:`aaa_fmip.mn`."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        with in_netns(topo.mn):
            self.raw = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.mh = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 135)
            self.icmp = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            self.ifindex = socket.if_nametoindex("wpar")
        self.icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        self.icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)

    def close(self) -> None:
        for s in (self.raw, self.mh, self.icmp):
            s.close()

    def rtsolpr(self, identifier: int, new_ap: str, mn_lla: bytes, timeout: float = 5.0) -> icmpv6.PrRtAdv | None:
        options = (
            icmpv6.LinkLayerAddress(LinkLayerAddressCode.SENDER, mn_lla),
            icmpv6.LinkLayerAddress(LinkLayerAddressCode.NEW_ACCESS_POINT, bytes.fromhex(new_ap.replace(":", ""))),
        )
        # The kernel fills the ICMPv6 checksum on raw ICMPv6 sockets (RFC 3542 §3.1); ours is for ::.
        message = icmpv6.encode_icmpv6(
            icmpv6.RtSolPr(identifier, options), source=IPv6Address("::"), destination=IPv6Address("ff02::2")
        )
        self.icmp.sendto(message, ("ff02::2", 0, 0, self.ifindex))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.icmp], [], [], left)
            if not ready:
                break
            data, _peer = self.icmp.recvfrom(4096)
            if data[:1] == b"\x9a" and data[4] == 3:
                decoded = icmpv6.decode_icmpv6(data)
                if isinstance(decoded, icmpv6.PrRtAdv) and decoded.identifier == identifier:
                    return decoded
        return None

    def send_fbu(self, packet: mn.FbuPacket) -> None:
        self.raw.sendto(packet.ipv6_packet(), (str(packet.destination), 0))

    def drain(self) -> None:
        while select.select([self.mh], [], [], 0)[0]:
            self.mh.recv(4096)

    def fback(self, sequence: int, timeout: float = 5.0) -> tuple[IPv6Address, bytes] | None:
        """The next FBack (MH type 9) with ``sequence``: (IPv6 source, MH), or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.mh], [], [], left)
            if not ready:
                break
            data, peer = self.mh.recvfrom(4096)
            if len(data) >= 10 and data[2] == 9 and int.from_bytes(data[8:10], "big") == sequence:
                return IPv6Address(peer[0].split("%")[0]), data
        return None
