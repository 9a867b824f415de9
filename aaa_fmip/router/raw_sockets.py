"""The router agent's raw sockets (aaa_fmip.router.driver reads and writes them).

Sockets (architecture.md §8; facts checked on a kernel without ``CONFIG_IPV6_MIP6``):

* **MH with a Home Address option** (every RFC-conformant FBU): such a kernel drops the packet before any
  protocol-135 socket sees it (answering Parameter Problem), but a raw socket for protocol 60 (Destination
  Options) receives a copy first: extension headers and all, without the IPv6 header. The driver puts the
  addresses (from ``recvmsg`` and ``IPV6_PKTINFO``) back in front and parses the chain itself
  (:func:`aaa_fmip.wire.ipv6.parse_ipv6_packet`); the MH checksum is then checked with the home address as the
  pseudo-header source (architecture §3).
* **MH without it** (HI, HAck, a reactive FBU sent without the option): a raw protocol-135 socket, on which
  the kernel checks the checksum (``IPV6_CHECKSUM`` offset 4). The same socket sends every MH; the kernel fills
  the checksum. The source address is chosen per datagram with ``IPV6_PKTINFO``.
* **ICMPv6** (RtSolPr in, PrRtAdv out): a raw ICMPv6 socket filtered to type 154, Hop Limit 255 on send.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Final

from aaa_fmip.router.verify import ReceivedMh
from aaa_fmip.wire import ipv6 as ipv6wire

__all__ = [
    "FMIPV6_ICMP_TYPE",
    "IPPROTO_DSTOPTS",
    "IPPROTO_MH",
    "P2P_ND_TYPES",
    "Datagram",
    "RawSockets",
    "destination",
    "drain",
    "interface_addresses",
    "mh_from_dstopts",
    "pktinfo",
]

log = logging.getLogger("aaa_fmip.router")

IPPROTO_MH: Final = 135
IPPROTO_DSTOPTS: Final = 60
IPV6_CHECKSUM: Final = 7  # <netinet/in.h>; RFC 3542 §3.1
ICMP6_FILTER: Final = 1  # <netinet/icmp6.h>, level IPPROTO_ICMPV6
FMIPV6_ICMP_TYPE: Final = 154  # RFC 5568 §6.1
P2P_ND_TYPES: Final = (133, 136)  # RS and NA (the UNA) of nodes on per-node links (RFC 5568 §6.3)
CMSG_SPACE: Final = socket.CMSG_SPACE(20)


def pktinfo(address: IPv6Address, ifindex: int = 0) -> tuple[int, int, bytes]:
    return socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, address.packed + struct.pack("@I", ifindex)


def destination(ancillary: list[tuple[int, int, bytes]]) -> tuple[IPv6Address | None, int]:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            return IPv6Address(data[:16]), struct.unpack("@I", data[16:20])[0]
    return None, 0


def interface_addresses(name: str) -> tuple[IPv6Address | None, bytes]:
    """The fe80:: address and the MAC of interface ``name`` (from /proc and /sys; empty when absent)."""
    link_local = None
    with contextlib.suppress(OSError), open("/proc/net/if_inet6", encoding="ascii") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == name and fields[0].startswith("fe80"):
                link_local = IPv6Address(bytes.fromhex(fields[0]))
                break
    mac = b""
    with contextlib.suppress(OSError, ValueError), open(f"/sys/class/net/{name}/address", encoding="ascii") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    return link_local, mac


@dataclass
class RawSockets:
    """The three raw sockets, non-blocking (needs CAP_NET_RAW)."""

    mh: socket.socket
    dstopts: socket.socket
    icmp: socket.socket

    @classmethod
    def open(cls, *, per_node_links: bool = False) -> RawSockets:
        mh = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        mh.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 4)  # RFC 6275 §6.1.1: checksum at MH offset 4
        dstopts = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_DSTOPTS)
        icmp = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        blocked = [0xFFFFFFFF] * 8  # a set bit blocks the type (RFC 3542 §3.2, Linux layout)
        for kind in (FMIPV6_ICMP_TYPE, *(P2P_ND_TYPES if per_node_links else ())):
            blocked[kind >> 5] &= ~(1 << (kind & 31))
        icmp.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("@8I", *blocked))
        icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)  # RFC 5568 §6.1
        icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        for s in (mh, dstopts, icmp):
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            s.setblocking(False)
        return cls(mh, dstopts, icmp)

    def close(self) -> None:
        for s in (self.mh, self.dstopts, self.icmp):
            s.close()

    def send_mh(self, source: IPv6Address, destination: IPv6Address, mh: bytes) -> None:
        """One MH from ``source`` (the kernel fills the checksum); raises OSError."""
        self.mh.sendmsg([mh], [pktinfo(source)], 0, (str(destination), 0))

    def send_icmpv6(self, source: IPv6Address, destination: IPv6Address, message: bytes, interface: str | None) -> None:
        """One ICMPv6 message from ``source``, out of ``interface`` when named; raises OSError."""
        ifindex = 0
        if interface:
            with contextlib.suppress(OSError):
                ifindex = socket.if_nametoindex(interface)
        scope = ifindex if (destination.is_link_local or destination.is_multicast) else 0
        self.icmp.sendmsg([message], [pktinfo(source, ifindex)], 0, (str(destination), 0, 0, scope))


@dataclass(frozen=True)
class Datagram:
    """One datagram received on a raw socket, with the addresses from ``recvmsg`` and ``IPV6_PKTINFO``."""

    data: bytes
    source: IPv6Address
    destination: IPv6Address
    ifindex: int


def drain(sock: socket.socket, burst: int = 64) -> Iterator[Datagram]:
    """What waits on the non-blocking ``sock``, at most ``burst`` datagrams (then other work gets its turn).
    Datagrams without IPV6_PKTINFO are skipped; a receive error ends the burst (logged)."""
    for _ in range(burst):
        try:
            data, ancillary, _flags, peer = sock.recvmsg(65535, CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("receive failed", extra={"errno": exc.errno})
            return
        to, ifindex = destination(ancillary)
        if to is None:
            continue
        yield Datagram(data, IPv6Address(peer[0].split("%")[0]), to, ifindex)


def mh_from_dstopts(source: IPv6Address, to: IPv6Address, data: bytes) -> ReceivedMh | None:
    """An MH with a Home Address option, from the Destination Options copy (module docstring); None for anything
    else (MH without the option arrives on the protocol-135 socket). Raises DecodeError for a bad chain."""
    header = bytes((0x60, 0, 0, 0)) + len(data).to_bytes(2, "big") + bytes((IPPROTO_DSTOPTS, 64))
    parsed = ipv6wire.parse_ipv6_packet(header + source.packed + to.packed + data)
    if parsed.upper_next_header != IPPROTO_MH or parsed.home_address is None:
        return None
    return ReceivedMh(source, to, parsed.home_address, parsed.payload)
