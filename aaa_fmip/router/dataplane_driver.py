"""The data plane's IO: capture at the PAR, IPv6-in-IPv6 between the routers, delivery and UNAs at the NAR.

Every decision is :class:`aaa_fmip.router.dataplane.DataPlane`'s; this adapter only moves packets and time.

* **Capture (PAR).** A TUN device (``[dataplane] tun_name``, IFF_TUN | IFF_NO_PI) and, per binding, a host
  route ``PCoA/128 dev <tun>`` (pyroute2) in a routing table of its own (``route_table``), looked up for
  forwarded packets only: two policy rules (``rule_priority`` and the next) send what this router sends itself
  (``iif lo``) to the main table first and everything else to the capture table. So the capture can be in place
  *before* the FBack leaves (RFC 5568 §3.1: the node may leave the link the moment it has the FBack) while the
  FBack itself, addressed to the PCoA, still goes out on the access link. The kernel forwards the PCoA's
  packets into the TUN (decrementing the Hop Limit, RFC 8200 §3); the adapter reads them. The TUN device is
  not persistent: it lives as long as this process holds its file descriptor, and the kernel removes it and
  every route through it when the process ends, however it ends, so no capture can outlive the agent. The two
  rules are removed on close; after a crash they stay (pointing at an empty table) until the next start
  replaces them.
* **Tunnel (RFC 2473).** A raw IPv6 socket for Next Header 41: the kernel writes the outer header (source =
  the PAR's address, set per datagram with ``IPV6_PKTINFO``; destination = the NAR), the payload is the inner
  packet unchanged. The NAR's raw socket for 41 receives the inner packet and the outer source. The TUN's MTU
  is 1460 (1500 less the 40 octets of the outer header, RFC 2473 §7.1), so the kernel answers bigger packets
  with Packet Too Big instead of the tunnel fragmenting them.
* **Kernel tunnels where the kernel has them.** ``mode = "auto"`` probes for ip6tnl at start (creating and
  deleting one device with pyroute2); with it the PAR encapsulates in the kernel: one ``ip6tnl`` device per NAR
  (``mode ip6ip6``, local = the PAR, remote = the NAR) and the host route of each PCoA through it. The NAR
  still receives with the raw socket (it must buffer). Those devices are persistent, so the adapter deletes
  them on close and deletes leftovers of its own prefix at start. This project's test kernel has no ip6tnl:
  that path is untested here (docs/router.md).
* **Delivery (NAR).** A packet socket (``AF_PACKET``, ``SOCK_DGRAM``, protocol 0 so it receives nothing)
  sends the inner packet on the node's access link to the node's link-layer address: the interface its UNA
  came in on, else the interface of the kernel's route to the NCoA. No route or neighbour entry is installed
  on the NAR, so nothing is left behind there either.
* **UNA (NAR).** A raw ICMPv6 socket filtered to type 136: Neighbor Advertisements with Hop Limit 255
  (RFC 4861 §7.1.2) are decoded (:func:`aaa_fmip.wire.icmpv6.decode_nd_message`) and reported as the node's arrival.

Needs CAP_NET_ADMIN (TUN, routes) and CAP_NET_RAW (raw and packet sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any, Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from aaa_fmip.errors import ConfigError, DecodeError
from aaa_fmip.router import core
from aaa_fmip.router.dataplane import (
    AddCapture,
    DataPlane,
    DataPlaneEffect,
    Deliver,
    Dropped,
    Encapsulate,
    RemoveCapture,
)
from aaa_fmip.wire import icmpv6

__all__ = ["DataPlaneAgent", "DataPlaneMetrics", "kernel_has_ip6tnl"]

log = logging.getLogger("aaa_fmip.router")

TUNSETIFF: Final = 0x400454CA  # <linux/if_tun.h>
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
IPPROTO_IPV6_IN_IPV6: Final = 41  # RFC 2473 §3: Next Header 41
ETH_P_IPV6: Final = 0x86DD
ICMP6_FILTER: Final = 1
TUNNEL_OVERHEAD: Final = 40  # RFC 2473 §7.1: the outer IPv6 header
_LINK_MTU: Final = 1500
_KERNEL_TUNNEL_PREFIX: Final = "fmipt"
_CMSG_SPACE: Final = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4)
_EOPNOTSUPP: Final = 95
_MAIN_TABLE: Final = 254  # RT_TABLE_MAIN
_SO_RCVBUFFORCE: Final = 33  # <asm-generic/socket.h>
_RECEIVE_BUFFER: Final = 4 << 20  # octets: a few thousand tunnelled packets while the agent is busy
_TUN_QUEUE: Final = 5000  # packets the kernel may queue for the agent in the TUN device (the default is 500)


class DataPlaneMetrics:
    """The data plane's Prometheus metrics, on the agent's registry (docs/router.md)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.packets = Counter(
            "aaa_fmip_router_dataplane_packets",
            "Packets handled by the handover data plane: tunnelled (PAR), delivered and buffered (NAR).",
            ["action"],
            registry=registry,
        )
        self.drops = Counter(
            "aaa_fmip_router_dataplane_drops",
            "Packets the data plane dropped, by reason.",
            ["reason"],
            registry=registry,
        )
        self.buffered = Gauge(
            "aaa_fmip_router_dataplane_buffered", "Packets waiting in NAR buffers now.", registry=registry
        )
        self.bindings = Gauge(
            "aaa_fmip_router_dataplane_bindings",
            "Forwarding bindings, by role (par, nar).",
            ["role"],
            registry=registry,
        )


def kernel_has_ip6tnl(ipr: Any) -> bool:
    """Whether this kernel makes ip6tnl devices (created and deleted once; EOPNOTSUPP: it has none)."""
    from pyroute2.netlink.exceptions import NetlinkError

    name = f"{_KERNEL_TUNNEL_PREFIX}probe"
    try:
        ipr.link("add", ifname=name, kind="ip6tnl", ip6tnl_local="::1", ip6tnl_remote="::1", ip6tnl_proto=41)
    except NetlinkError as exc:
        if exc.code == _EOPNOTSUPP:
            return False
        raise
    with contextlib.suppress(NetlinkError):
        ipr.link("del", ifname=name)
    return True


class _Netlink:
    """pyroute2's IPRoute on a thread of its own: the synchronous IPRoute of pyroute2 0.9 runs an event loop of
    its own and cannot be made inside a running one. Calls are few (a route per handover) and short, so the
    asyncio loop waits for each; that also keeps them in order."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._ipr: Any = None
        try:
            self._ipr = self.call(self._make)
        except BaseException:
            self._pool.shutdown(wait=False)
            raise

    @staticmethod
    def _make() -> Any:
        from pyroute2 import IPRoute

        return IPRoute()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._pool.submit(fn, *args, **kwargs).result(timeout=10)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._ipr, name)
        return lambda *args, **kwargs: self.call(method, *args, **kwargs)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self._ipr.close)
        self._pool.shutdown(wait=True)


def _large_receive_buffer(sock: socket.socket) -> None:
    """``_RECEIVE_BUFFER`` octets: SO_RCVBUFFORCE (CAP_NET_ADMIN, which the data plane has), else as much as
    net.core.rmem_max allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)


def _open_tun(name: str) -> tuple[int, str]:
    """A non-persistent TUN device (it goes away with the descriptor): (fd, the name the kernel gave it)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        ifr = fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    os.set_blocking(fd, False)
    return fd, ifr[:16].rstrip(b"\0").decode()


class DataPlaneAgent:
    """Runs one :class:`DataPlane` on a TUN device, raw sockets and netlink (module docstring)."""

    def __init__(
        self,
        plane: DataPlane,
        *,
        tun_name: str = "fmip0",
        mode: Literal["auto", "userspace", "kernel"] = "auto",
        route_table: int = 5568,
        rule_priority: int = 5568,
        metrics: DataPlaneMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plane = plane
        self.tun_name = tun_name
        self.mode = mode
        self.route_table = route_table
        self.rule_priority = rule_priority
        self._rules = False
        self.metrics = metrics or DataPlaneMetrics(CollectorRegistry())
        self.clock = clock
        self.kernel_tunnels = False
        self._ipr: Any = None
        self._tun_fd: int | None = None
        self._tun_index = 0
        self._raw: socket.socket | None = None
        self._packet: socket.socket | None = None
        self._icmp: socket.socket | None = None
        self._routes: dict[IPv6Address, int] = {}  # PCoA → oif of its capture route
        self._kernel_tunnels: dict[IPv6Address, int] = {}  # NAR → ip6tnl ifindex
        self._ifnames: dict[int, str] = {}
        self._route_oif: dict[IPv6Address, int] = {}  # NCoA → the interface of the route to it (node not seen yet)
        self._wake = asyncio.Event()
        self._planned: float | None = None
        self._enqueued = 0
        self._readers: list[int] = []

    # ---- lifecycle

    def open(self) -> None:
        """Set up sockets, the TUN device and netlink; raises OSError (permissions) or ConfigError."""
        from pyroute2.netlink.exceptions import NetlinkError

        self._ipr = _Netlink()
        try:
            available = kernel_has_ip6tnl(self._ipr) if self.mode != "userspace" else False
            if self.mode == "kernel" and not available:
                raise ConfigError("this kernel has no ip6tnl tunnels", key="dataplane.mode")
            self.kernel_tunnels = available
            self._raw = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_IPV6_IN_IPV6)
            self._packet = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            self._icmp = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            blocked = [0xFFFFFFFF] * 8  # RFC 3542 §3.2: a set bit blocks the type
            t = icmpv6.Icmpv6Type.NEIGHBOR_ADVERTISEMENT
            blocked[t >> 5] &= ~(1 << (t & 31))
            self._icmp.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("@8I", *blocked))
            self._icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            self._icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            for s in (self._raw, self._packet, self._icmp):
                s.setblocking(False)
            _large_receive_buffer(self._raw)  # a burst while the loop is busy elsewhere must not overflow it
            if not self.kernel_tunnels:
                self._tun_fd, self.tun_name = _open_tun(self.tun_name)
                # no link-local address on the TUN: nothing of the router's own (MLD) goes into the capture
                with (
                    contextlib.suppress(OSError),
                    open(f"/proc/sys/net/ipv6/conf/{self.tun_name}/addr_gen_mode", "w", encoding="ascii") as f,
                ):
                    f.write("1")
                self._tun_index = self._ipr.link_lookup(ifname=self.tun_name)[0]
                self._ipr.link(
                    "set", index=self._tun_index, mtu=_LINK_MTU - TUNNEL_OVERHEAD, txqlen=_TUN_QUEUE, state="up"
                )
            # after the TUN device, which only one process can hold: a second agent in this namespace fails
            # above, before it could touch the first one's rules
            self._delete_stale_tunnels()
            self._install_rules()
        except NetlinkError as exc:
            self.close()
            kind = PermissionError if exc.code == 1 else OSError  # EPERM: no CAP_NET_ADMIN
            raise kind(exc.code, f"netlink: {exc}") from None
        except BaseException:
            self.close()
            raise
        log.info(
            "data plane open",
            extra={
                "event": "dataplane.open",
                "encapsulation": "kernel ip6tnl" if self.kernel_tunnels else "userspace (TUN + raw protocol 41)",
                "tun": None if self.kernel_tunnels else self.tun_name,
            },
        )

    def close(self) -> None:
        """Remove every capture route and kernel tunnel, close everything (idempotent)."""
        with contextlib.suppress(Exception):
            self._apply(self.plane.close())
        loop = None
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
        for fd in self._readers:
            if loop is not None:
                loop.remove_reader(fd)
        self._readers = []
        for pcoa in list(self._routes):
            self._remove_route(pcoa)
        if self._ipr is not None and self._rules:
            self._delete_rules()
            self._rules = False
        if self._ipr is not None:
            for index in self._kernel_tunnels.values():
                with contextlib.suppress(Exception):
                    self._ipr.link("del", index=index)
            self._kernel_tunnels.clear()
        for s in (self._raw, self._packet, self._icmp):
            if s is not None:
                s.close()
        self._raw = self._packet = self._icmp = None
        if self._tun_fd is not None:
            os.close(self._tun_fd)  # the kernel deletes the device and the routes through it
            self._tun_fd = None
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        self.metrics.buffered.set(0)

    async def run(self) -> None:
        """Read the sockets and keep the data plane's time until cancelled."""
        loop = asyncio.get_running_loop()
        assert self._raw is not None and self._icmp is not None
        loop.add_reader(self._raw.fileno(), self._tunnel_readable)
        loop.add_reader(self._icmp.fileno(), self._icmp_readable)
        self._readers = [self._raw.fileno(), self._icmp.fileno()]
        if self._tun_fd is not None:
            loop.add_reader(self._tun_fd, self._tun_readable)
            self._readers.append(self._tun_fd)
        while True:
            deadline = self.plane.next_deadline()
            self._planned = deadline
            self._wake.clear()
            wait = (deadline - self.clock()) if deadline is not None else 3600.0
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            self._apply(self.plane.handle_timer(self.clock()))

    def observe(self, effect: core.Effect) -> None:
        """An effect of the router core (the agent calls this for each one)."""
        if isinstance(effect, core.HandoverFinished | core.HiAccepted):
            self._apply(self.plane.observe(effect, self.clock()))

    # ---- receive

    def _tun_readable(self) -> None:
        assert self._tun_fd is not None
        for _ in range(64):
            try:
                packet = os.read(self._tun_fd, 65535)
            except (BlockingIOError, InterruptedError):
                return
            self._apply(self.plane.captured(packet, self.clock()))

    def _tunnel_readable(self) -> None:
        assert self._raw is not None
        for _ in range(64):
            try:
                packet, peer = self._raw.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("tunnel receive failed", extra={"event": "dataplane.error", "errno": exc.errno})
                return
            source = IPv6Address(peer[0].split("%")[0])
            self._apply(self.plane.tunnelled(source, packet, self.clock()))

    def _icmp_readable(self) -> None:
        assert self._icmp is not None
        for _ in range(64):
            try:
                data, ancillary, _flags, peer = self._icmp.recvmsg(4096, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("ICMPv6 receive failed", extra={"event": "dataplane.error", "errno": exc.errno})
                return
            destination, ifindex, hop_limit = None, None, None
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 20:
                    destination, ifindex = IPv6Address(value[:16]), struct.unpack("@I", value[16:20])[0]
                elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
                    hop_limit = struct.unpack("@i", value[:4])[0]
            if hop_limit != 255 or destination is None:  # RFC 4861 §7.1.2: from on-link only
                continue
            source = IPv6Address(peer[0].split("%")[0])
            try:
                na = icmpv6.decode_nd_message(data, source=source, destination=destination)
            except DecodeError:
                self.metrics.drops.labels("malformed-na").inc()
                continue
            if not isinstance(na, icmpv6.NeighborAdvertisement):
                continue  # the socket's filter passes NAs only
            if na.solicited or na.router:
                continue  # an answer to someone's solicitation, or a router: not a node announcing itself
            self._apply(self.plane.node_attached(na.target, na.target_lla, ifindex, self.clock()))

    # ---- effects

    def _apply(self, effects: list[DataPlaneEffect]) -> None:
        for effect in effects:
            if isinstance(effect, Encapsulate):
                self._encapsulate(effect)
            elif isinstance(effect, Deliver):
                self._deliver(effect)
            elif isinstance(effect, Dropped):
                self.metrics.drops.labels(effect.reason).inc(effect.count)
            elif isinstance(effect, AddCapture):
                self._add_route(effect.pcoa)
            elif isinstance(effect, RemoveCapture):
                self._remove_route(effect.pcoa)
            elif isinstance(effect, core.Notice):
                log.info(effect.event, extra={"event": effect.event, **effect.fields})
        self.metrics.buffered.set(self.plane.buffered)
        if self.plane.enqueued > self._enqueued:
            self.metrics.packets.labels("buffered").inc(self.plane.enqueued - self._enqueued)
            self._enqueued = self.plane.enqueued
        self.metrics.bindings.labels("par").set(len(self.plane.par_bindings()))
        self.metrics.bindings.labels("nar").set(len(self.plane.nar_bindings()))
        deadline = self.plane.next_deadline()
        if deadline is not None and (self._planned is None or deadline < self._planned):
            self._wake.set()

    def _encapsulate(self, effect: Encapsulate) -> None:
        assert self._raw is not None
        pktinfo = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, effect.source.packed + struct.pack("@I", 0))
        try:
            self._raw.sendmsg([effect.packet], [pktinfo], 0, (str(effect.destination), 0))
        except OSError as exc:
            self.metrics.drops.labels("send-failed").inc()
            log.debug("tunnel send failed", extra={"event": "dataplane.error", "errno": exc.errno})
            return
        self.metrics.packets.labels("tunnelled").inc()

    def _deliver(self, effect: Deliver) -> None:
        assert self._packet is not None
        name = self._interface_name(effect.interface, effect.ncoa)
        if name is None:
            self.metrics.drops.labels("no-route").inc()
            return
        try:
            self._packet.sendto(effect.packet, (name, ETH_P_IPV6, 0, 0, effect.mn_lla))
        except OSError as exc:
            self.metrics.drops.labels("send-failed").inc()
            log.debug("delivery failed", extra={"event": "dataplane.error", "errno": exc.errno})
            return
        self.metrics.packets.labels("delivered").inc()

    def _interface_name(self, ifindex: int | None, ncoa: IPv6Address) -> str | None:
        if ifindex is None:
            ifindex = self._route_oif.get(ncoa)
        if ifindex is None:
            try:
                ifindex = int(self._ipr.route("get", dst=str(ncoa))[0].get_attr("RTA_OIF"))
            except Exception:
                return None
            if len(self._route_oif) > 4096:
                self._route_oif.clear()
            self._route_oif[ncoa] = ifindex
        name = self._ifnames.get(ifindex)
        if name is None:
            try:
                name = socket.if_indextoname(ifindex)
            except OSError:
                return None
            self._ifnames[ifindex] = name
        return name

    def _add_route(self, pcoa: IPv6Address) -> None:
        oif = self._tun_index
        if self.kernel_tunnels:
            nar = self.plane.par_bindings().get(pcoa)
            if nar is None:
                return
            oif = self._kernel_tunnel(nar)
        try:
            self._ipr.route(
                "replace", dst=str(pcoa), dst_len=128, family=socket.AF_INET6, oif=oif, table=self.route_table
            )
        except Exception as exc:
            log.warning(
                "capture route not added", extra={"event": "dataplane.error", "pcoa": str(pcoa), "error": str(exc)}
            )
            return
        self._routes[pcoa] = oif

    def _remove_route(self, pcoa: IPv6Address) -> None:
        oif = self._routes.pop(pcoa, None)
        if oif is None or self._ipr is None:
            return
        with contextlib.suppress(Exception):  # gone already when its device went
            self._ipr.route("del", dst=str(pcoa), dst_len=128, family=socket.AF_INET6, oif=oif, table=self.route_table)

    def _kernel_tunnel(self, nar: IPv6Address) -> int:
        """The ip6tnl device to ``nar`` (RFC 2473 ip6ip6), made on first use. Untested here (no ip6tnl)."""
        index = self._kernel_tunnels.get(nar)
        if index is None:
            name = f"{_KERNEL_TUNNEL_PREFIX}{len(self._kernel_tunnels)}"
            self._ipr.link(
                "add",
                ifname=name,
                kind="ip6tnl",
                ip6tnl_local=str(self.plane.address),
                ip6tnl_remote=str(nar),
                ip6tnl_proto=IPPROTO_IPV6_IN_IPV6,
            )
            index = int(self._ipr.link_lookup(ifname=name)[0])
            self._ipr.link("set", index=index, state="up")
            self._kernel_tunnels[nar] = index
        return index

    def _install_rules(self) -> None:
        """``iif lo lookup main`` then ``lookup <route_table>``: only forwarded packets meet a capture route."""
        self._delete_rules()  # an earlier run's, if it ended without closing
        self._ipr.rule("add", family=socket.AF_INET6, priority=self.rule_priority, iifname="lo", table=_MAIN_TABLE)
        self._rules = True
        self._ipr.rule("add", family=socket.AF_INET6, priority=self.rule_priority + 1, table=self.route_table)

    def _delete_rules(self) -> None:
        for priority in (self.rule_priority, self.rule_priority + 1):
            for rule in self._ipr.get_rules(family=socket.AF_INET6):
                if rule.get_attr("FRA_PRIORITY") == priority:
                    with contextlib.suppress(Exception):
                        self._ipr.rule(
                            "del", family=socket.AF_INET6, priority=priority, table=rule.get_attr("FRA_TABLE")
                        )

    def _delete_stale_tunnels(self) -> None:
        """ip6tnl devices of an earlier run that ended without closing (kernel mode only)."""
        if not self.kernel_tunnels:
            return
        for link in self._ipr.get_links():
            name = str(link.get_attr("IFLA_IFNAME") or "")
            if name.startswith(_KERNEL_TUNNEL_PREFIX):
                with contextlib.suppress(Exception):
                    self._ipr.link("del", index=link["index"])
