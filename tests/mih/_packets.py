"""IPv6/UDP and IPv6/TCP packets around MIH frames, with correct checksums, for pcaps tshark reads."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from aaa_fmip.wire._buffer import internet_checksum, ipv6_pseudo_header
from aaa_fmip.wire.mih import MIH_PORT

MN_ADDRESS = IPv6Address("2001:db8:1::100")
MOS_ADDRESS = IPv6Address("2001:db8:ff::1")


def _ipv6(src: IPv6Address, dst: IPv6Address, next_header: int, upper: bytes) -> bytes:
    return struct.pack("!IHBB", 0x60000000, len(upper), next_header, 64) + src.packed + dst.packed + upper


def udp6(
    payload: bytes,
    *,
    src: IPv6Address = MN_ADDRESS,
    dst: IPv6Address = MOS_ADDRESS,
    sport: int = 40000,
    dport: int = MIH_PORT,
) -> bytes:
    header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    checksum = internet_checksum(ipv6_pseudo_header(src, dst, 8 + len(payload), 17) + header + payload) or 0xFFFF
    return _ipv6(src, dst, 17, header[:6] + struct.pack("!H", checksum) + payload)


def tcp6(
    payload: bytes,
    *,
    seq: int = 1,
    src: IPv6Address = MN_ADDRESS,
    dst: IPv6Address = MOS_ADDRESS,
    sport: int = 40000,
    dport: int = MIH_PORT,
) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, 0x18, 65535, 0, 0)  # PSH|ACK
    checksum = internet_checksum(ipv6_pseudo_header(src, dst, len(header) + len(payload), 6) + header + payload)
    return _ipv6(src, dst, 6, header[:16] + struct.pack("!H", checksum) + header[18:] + payload)
