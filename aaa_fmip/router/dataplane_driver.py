"""The data plane's IO: capture at the PAR, IPv6-in-IPv6 between the routers, delivery and UNAs at the NAR.

Every decision is :class:`aaa_fmip.router.dataplane.DataPlane`'s; this adapter only moves packets and time.
Its netlink side (capture routes, policy rules, kernel tunnels) is :mod:`~aaa_fmip.router.dataplane_netlink`.

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
from typing import Final, Literal

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
from aaa_fmip.router.dataplane_netlink import IPPROTO_IPV6_IN_IPV6, Forwarding, Netlink, kernel_has_ip6tnl
from aaa_fmip.wire import icmpv6

__all__ = ["DataPlaneAgent", "DataPlaneMetrics", "kernel_has_ip6tnl"]

log = logging.getLogger("aaa_fmip.router")

TUNSETIFF: Final = 0x400454CA  # <linux/if_tun.h>
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
ETH_P_IPV6: Final = 0x86DD
ICMP6_FILTER: Final = 1
TUNNEL_OVERHEAD: Final = 40  # RFC 2473 §7.1: the outer IPv6 header
_LINK_MTU: Final = 1500
_CMSG_SPACE: Final = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4)
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
        self.metrics = metrics or DataPlaneMetrics(CollectorRegistry())
        self.clock = clock
        self.kernel_tunnels = False
        self._forwarding: Forwarding | None = None
        self._tun_fd: int | None = None
        self._raw: socket.socket | None = None
        self._packet: socket.socket | None = None
        self._icmp: socket.socket | None = None
        self._wake = asyncio.Event()
        self._planned: float | None = None
        self._enqueued = 0
        self._readers: list[int] = []

    # ---- lifecycle

    def open(self) -> None:
        """Set up sockets, the TUN device and netlink; raises OSError (permissions) or ConfigError."""
        from pyroute2.netlink.exceptions import NetlinkError

        forwarding = Forwarding(
            Netlink(), route_table=self.route_table, rule_priority=self.rule_priority, local=self.plane.address
        )
        self._forwarding = forwarding
        try:
            available = kernel_has_ip6tnl(forwarding.ipr) if self.mode != "userspace" else False
            if self.mode == "kernel" and not available:
                raise ConfigError("this kernel has no ip6tnl tunnels", key="dataplane.mode")
            self.kernel_tunnels = forwarding.kernel_tunnels = available
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
                forwarding.tun_index = forwarding.ipr.link_lookup(ifname=self.tun_name)[0]
                forwarding.ipr.link(
                    "set", index=forwarding.tun_index, mtu=_LINK_MTU - TUNNEL_OVERHEAD, txqlen=_TUN_QUEUE, state="up"
                )
            # after the TUN device, which only one process can hold: a second agent in this namespace fails
            # above, before it could touch the first one's rules
            forwarding.delete_stale_tunnels()
            forwarding.install_rules()
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
        if self._forwarding is not None:
            self._forwarding.close()  # capture routes, rules, kernel tunnels; netlink closed
            self._forwarding = None
        for s in (self._raw, self._packet, self._icmp):
            if s is not None:
                s.close()
        self._raw = self._packet = self._icmp = None
        if self._tun_fd is not None:
            os.close(self._tun_fd)  # the kernel deletes the device and the routes through it
            self._tun_fd = None
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
                if self._forwarding is not None:
                    nar = self.plane.par_bindings().get(effect.pcoa) if self.kernel_tunnels else None
                    self._forwarding.add_capture(effect.pcoa, nar)
            elif isinstance(effect, RemoveCapture):
                if self._forwarding is not None:
                    self._forwarding.remove_capture(effect.pcoa)
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
        assert self._packet is not None and self._forwarding is not None
        name = self._forwarding.interface_name(effect.interface, effect.ncoa)
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
