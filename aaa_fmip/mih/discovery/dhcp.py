"""RFC 5678: the MoS options of DHCPv4 (139/140, RFC 3396 splitting) and DHCPv6 (54/55), DHCPINFORM and
Information-Request messages (pure), and the two asyncio exchanges that send them."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import dns.exception
import dns.name

from aaa_fmip.errors import DecodeError
from aaa_fmip.mih.discovery.types import (
    DHCPV4_MOS_ADDRESS,
    DHCPV4_MOS_FQDN,
    DHCPV6_MOS_ADDRESS,
    DHCPV6_MOS_DOMAIN_LIST,
    IPAddress,
    MosAddresses,
    MosDomains,
    ServiceType,
)
from aaa_fmip.wire._buffer import Reader, Writer

# ---------------------------------------------------------------------------------------- sub-options


def _service(value: int) -> ServiceType:
    return ServiceType(value)


def _check_service(service: int, wide: bool) -> None:
    limit = 0xFFFF if wide else 0xFF
    if isinstance(service, bool) or not isinstance(service, int) or not 0 <= service <= limit:
        raise ValueError(f"sub-option code must be 0..{limit}")


def _encode_sub_options(items: Iterable[tuple[int, bytes]], *, wide: bool) -> bytes:
    w = Writer()
    for code, value in items:
        _check_service(code, wide)
        if wide:
            if len(value) > 0xFFFF:
                raise ValueError("a DHCPv6 sub-option value is at most 65535 octets")
            w.push_u16(code)
            w.push_u16(len(value))
        else:
            if len(value) > 0xFF:
                raise ValueError("a DHCPv4 sub-option value is at most 255 octets")
            w.push_u8(code)
            w.push_u8(len(value))
        w.push_bytes(value)
    return w.getvalue()


def _decode_sub_options(data: bytes, *, wide: bool, field: str, base: int = 0) -> list[tuple[int, bytes, int]]:
    """(code, value, absolute offset of the value) of each sub-option."""
    r = Reader(data, base=base)
    out: list[tuple[int, bytes, int]] = []
    while not r.at_end():
        code = r.pull_u16(f"{field}.code") if wide else r.pull_u8(f"{field}.code")
        length = r.pull_u16(f"{field}.length") if wide else r.pull_u8(f"{field}.length")
        at = r.offset
        out.append((code, r.pull_bytes(length, f"{field}.value"), at))
    return out


def _addresses_value(addresses: Sequence[IPAddress], version: Literal[4, 6]) -> bytes:
    out = b""
    for address in addresses:
        if address.version != version:
            raise ValueError(f"an IPv{version} MoS option carries IPv{version} addresses only, not {address}")
        out += address.packed
    return out


def _parse_addresses(value: bytes, at: int, version: Literal[4, 6], field: str) -> tuple[IPAddress, ...]:
    size = 4 if version == 4 else 16
    if len(value) % size:
        raise DecodeError(
            f"{len(value)} octets is not a whole number of IPv{version} addresses", field=field, offset=at
        )
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return tuple(make(value[i : i + size]) for i in range(0, len(value), size))


def encode_domain_list(domains: Sequence[str]) -> bytes:
    """RFC 3315 §8 / RFC 8415 §10: each name uncompressed, fully qualified (a zero-length root label at the end)."""
    out = b""
    for text in domains:
        try:
            name = dns.name.from_text(text)
        except dns.exception.DNSException as exc:
            raise ValueError(f"not a domain name: {text!r} ({exc})") from None
        if name == dns.name.root:
            raise ValueError("the root is not a MoS domain name")
        wire = name.to_wire()  # no compression map given: uncompressed, as RFC 3315 §8 requires
        assert wire is not None
        out += wire
    return out


def decode_domain_list(value: bytes, *, base: int = 0, field: str = "domain-list") -> tuple[str, ...]:
    """The names of an RFC 3315 §8 list; compression pointers and partial names are DecodeErrors."""
    r = Reader(value, base=base)
    names: list[str] = []
    while not r.at_end():
        start = r.offset
        labels: list[bytes] = []
        total = 1
        while True:
            length = r.pull_u8(f"{field}.label-length")
            if length == 0:
                break
            if length > 63:  # RFC 1035 §4.1.4: 0xC0 is a pointer, which RFC 3315 §8 forbids; 0x40/0x80 reserved
                raise DecodeError(
                    f"label length {length:#x} (compression is not allowed)", field=field, offset=r.offset - 1
                )
            labels.append(r.pull_bytes(length, f"{field}.label"))
            total += length + 1
            if total > 255:  # RFC 1035 §2.3.4
                raise DecodeError("name longer than 255 octets", field=field, offset=start)
        if not labels:
            raise DecodeError("empty name", field=field, offset=start)
        try:
            name = dns.name.Name([*labels, b""])
            names.append(name.to_text(omit_final_dot=True))
        except dns.exception.DNSException as exc:
            raise DecodeError(f"not a domain name ({type(exc).__name__})", field=field, offset=start) from None
    return tuple(names)


# ---------------------------------------------------------------------------------------------- DHCPv4


def encode_dhcpv4_option(code: int, value: bytes) -> bytes:
    """One DHCPv4 option; a value over 255 octets is split into consecutive instances (RFC 3396 §6)."""
    if not 1 <= code <= 254:
        raise ValueError("DHCPv4 option code must be 1..254")
    if not value:
        return bytes((code, 0))
    return b"".join(
        bytes((code, len(chunk))) + chunk for chunk in (value[i : i + 255] for i in range(0, len(value), 255))
    )


def dhcpv4_options(data: bytes, *, base: int = 0) -> dict[int, bytes]:
    """The options field of a DHCPv4 message: code → value, every instance of a code concatenated in order
    (RFC 3396 §7). Pad (0) is skipped, End (255) stops; an overrun is a DecodeError."""
    r = Reader(data, base=base)
    out: dict[int, bytes] = {}
    while not r.at_end():
        code = r.pull_u8("dhcpv4.option.code")
        if code == 0:
            continue
        if code == 255:
            break
        length = r.pull_u8("dhcpv4.option.length")
        out[code] = out.get(code, b"") + r.pull_bytes(length, f"dhcpv4.option[{code}]")
    return out


def encode_dhcpv4_mos_addresses(items: Sequence[MosAddresses]) -> bytes:
    """Option 139 (with its code and length octets, split per RFC 3396 when long)."""
    value = _encode_sub_options(((i.service, _addresses_value(i.addresses, 4)) for i in items), wide=False)
    return encode_dhcpv4_option(DHCPV4_MOS_ADDRESS, value)


def encode_dhcpv4_mos_domains(items: Sequence[MosDomains]) -> bytes:
    """Option 140 (with its code and length octets, split per RFC 3396 when long)."""
    value = _encode_sub_options(((i.service, encode_domain_list(i.domains)) for i in items), wide=False)
    return encode_dhcpv4_option(DHCPV4_MOS_FQDN, value)


def decode_dhcpv4_mos_addresses(value: bytes) -> tuple[MosAddresses, ...]:
    """The (concatenated) value of option 139."""
    return tuple(
        MosAddresses(_service(code), _parse_addresses(v, at, 4, "option139.addresses"))
        for code, v, at in _decode_sub_options(value, wide=False, field="option139")
    )


def decode_dhcpv4_mos_domains(value: bytes) -> tuple[MosDomains, ...]:
    """The (concatenated) value of option 140."""
    return tuple(
        MosDomains(_service(code), decode_domain_list(v, base=at, field="option140.fqdn"))
        for code, v, at in _decode_sub_options(value, wide=False, field="option140")
    )


# ---------------------------------------------------------------------------------------------- DHCPv6


def encode_dhcpv6_option(code: int, value: bytes) -> bytes:
    if not 0 < code <= 0xFFFF or len(value) > 0xFFFF:
        raise ValueError("DHCPv6 option code must be 1..65535 and its value at most 65535 octets")
    return struct.pack("!HH", code, len(value)) + value


def dhcpv6_options(data: bytes, *, base: int = 0) -> list[tuple[int, bytes]]:
    """The options of a DHCPv6 message body (RFC 8415 §21.1), in order."""
    found = _decode_sub_options(data, wide=True, field="dhcpv6.option", base=base)
    return [(code, value) for code, value, _ in found]


def encode_dhcpv6_mos_addresses(items: Sequence[MosAddresses]) -> bytes:
    """OPTION_MoS_ADDRESS (54) with its code and length."""
    value = _encode_sub_options(((i.service, _addresses_value(i.addresses, 6)) for i in items), wide=True)
    return encode_dhcpv6_option(DHCPV6_MOS_ADDRESS, value)


def encode_dhcpv6_mos_domains(items: Sequence[MosDomains]) -> bytes:
    """OPTION_MoS_DOMAIN_NAME_LIST (55) with its code and length."""
    value = _encode_sub_options(((i.service, encode_domain_list(i.domains)) for i in items), wide=True)
    return encode_dhcpv6_option(DHCPV6_MOS_DOMAIN_LIST, value)


def decode_dhcpv6_mos_addresses(value: bytes) -> tuple[MosAddresses, ...]:
    return tuple(
        MosAddresses(_service(code), _parse_addresses(v, at, 6, "option54.addresses"))
        for code, v, at in _decode_sub_options(value, wide=True, field="option54")
    )


def decode_dhcpv6_mos_domains(value: bytes) -> tuple[MosDomains, ...]:
    return tuple(
        MosDomains(_service(code), decode_domain_list(v, base=at, field="option55.fqdn"))
        for code, v, at in _decode_sub_options(value, wide=True, field="option55")
    )


# ------------------------------------------------------------------------------------ DHCP messages


@dataclass(frozen=True)
class DhcpMosInfo:
    """What a DHCP answer said about Mobility Servers (empty tuples when an option was absent)."""

    addresses: tuple[MosAddresses, ...] = ()
    domains: tuple[MosDomains, ...] = ()

    def servers(self, service: ServiceType) -> tuple[IPAddress, ...]:
        return tuple(a for item in self.addresses if item.service == service for a in item.addresses)

    def domain_names(self, service: ServiceType) -> tuple[str, ...]:
        return tuple(d for item in self.domains if item.service == service for d in item.domains)


_MAGIC_COOKIE: Final = b"\x63\x82\x53\x63"  # RFC 2131 §3
_BOOTREQUEST: Final = 1
_BOOTREPLY: Final = 2
_DHCPACK: Final = 5
_DHCPINFORM: Final = 8
_BOOTP_FIXED: Final = 236  # op..file, RFC 2131 §2


def build_dhcpinform(xid: int, client_address: ipaddress.IPv4Address, hardware_address: bytes) -> bytes:
    """DHCPINFORM (RFC 2131 §3.4) asking for options 139 and 140 in the Parameter Request List."""
    if len(hardware_address) != 6:
        raise ValueError("hardware address must be 6 octets (Ethernet)")
    header = struct.pack("!BBBBIHH", _BOOTREQUEST, 1, 6, 0, xid, 0, 0)
    header += client_address.packed + bytes(12) + hardware_address + bytes(10) + bytes(64 + 128)
    options = bytes((53, 1, _DHCPINFORM)) + bytes((55, 2, DHCPV4_MOS_ADDRESS, DHCPV4_MOS_FQDN)) + b"\xff"
    return header + _MAGIC_COOKIE + options


def parse_dhcpv4_reply(message: bytes, xid: int) -> DhcpMosInfo | None:
    """The MoS options of a DHCPACK answering ``xid``; None for any other message. Malformed: DecodeError."""
    r = Reader(message)
    fixed = r.pull_bytes(_BOOTP_FIXED, "dhcpv4.header")
    if fixed[0] != _BOOTREPLY or struct.unpack_from("!I", fixed, 4)[0] != xid:
        return None
    if r.pull_bytes(4, "dhcpv4.magic-cookie") != _MAGIC_COOKIE:
        raise DecodeError("not a DHCP message (magic cookie)", field="dhcpv4.magic-cookie", offset=_BOOTP_FIXED)
    options = dhcpv4_options(r.pull_rest(), base=_BOOTP_FIXED + 4)
    if options.get(53) != bytes((_DHCPACK,)):
        return None
    return DhcpMosInfo(
        decode_dhcpv4_mos_addresses(options[DHCPV4_MOS_ADDRESS]) if DHCPV4_MOS_ADDRESS in options else (),
        decode_dhcpv4_mos_domains(options[DHCPV4_MOS_FQDN]) if DHCPV4_MOS_FQDN in options else (),
    )


_INFORMATION_REQUEST: Final = 11  # RFC 8415 §7.3
_REPLY: Final = 7
_OPTION_CLIENTID: Final = 1
_OPTION_ORO: Final = 6
_OPTION_ELAPSED_TIME: Final = 8


def build_information_request(xid: int, hardware_address: bytes) -> bytes:
    """Information-Request (RFC 8415 §18.2.6): Client Identifier (DUID-LL, §11.4), ORO with 54 and 55, Elapsed
    Time 0."""
    if not 0 <= xid <= 0xFFFFFF:
        raise ValueError("transaction-id is 24 bits")
    duid = struct.pack("!HH", 3, 1) + hardware_address  # DUID-LL, hardware type 1 (Ethernet)
    body = encode_dhcpv6_option(_OPTION_CLIENTID, duid)
    body += encode_dhcpv6_option(_OPTION_ORO, struct.pack("!HH", DHCPV6_MOS_ADDRESS, DHCPV6_MOS_DOMAIN_LIST))
    body += encode_dhcpv6_option(_OPTION_ELAPSED_TIME, b"\x00\x00")
    return bytes((_INFORMATION_REQUEST,)) + xid.to_bytes(3, "big") + body


def parse_dhcpv6_reply(message: bytes, xid: int) -> DhcpMosInfo | None:
    """The MoS options of a Reply to ``xid``; None for any other message. Malformed: DecodeError."""
    r = Reader(message)
    msg_type = r.pull_u8("dhcpv6.msg-type")
    if msg_type != _REPLY or int.from_bytes(r.pull_bytes(3, "dhcpv6.transaction-id"), "big") != xid:
        return None
    addresses: tuple[MosAddresses, ...] = ()
    domains: tuple[MosDomains, ...] = ()
    for code, value in dhcpv6_options(r.pull_rest(), base=4):
        if code == DHCPV6_MOS_ADDRESS:
            addresses += decode_dhcpv6_mos_addresses(value)
        elif code == DHCPV6_MOS_DOMAIN_LIST:
            domains += decode_dhcpv6_mos_domains(value)
    return DhcpMosInfo(addresses, domains)


# ------------------------------------------------------------------------------------ DHCP adapters


async def dhcpv4_inform(
    server: ipaddress.IPv4Address,
    client_address: ipaddress.IPv4Address,
    hardware_address: bytes,
    *,
    timeout: float = 4.0,
    attempts: int = 3,
) -> DhcpMosInfo:
    """Send DHCPINFORM from ``client_address`` (port 68) to ``server`` (port 67) and return the MoS options of its
    DHCPACK. Raises TimeoutError when no answer comes (each attempt waits ``timeout`` seconds)."""
    xid = int.from_bytes(os.urandom(4), "big")
    message = build_dhcpinform(xid, client_address, hardware_address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(client_address), 68))  # RFC 2131 §4.1: client port 68
        sock.setblocking(False)
        return await _exchange(
            sock, message, (str(server), 67), lambda m: parse_dhcpv4_reply(m, xid), timeout, attempts
        )


async def dhcpv6_information_request(
    interface: str, hardware_address: bytes, *, timeout: float = 4.0, attempts: int = 3
) -> DhcpMosInfo:
    """Multicast an Information-Request on ``interface`` to All_DHCP_Relay_Agents_and_Servers (ff02::1:2, port
    547) from port 546, and return the MoS options of the first Reply."""
    xid = int.from_bytes(os.urandom(3), "big")
    message = build_information_request(xid, hardware_address)
    index = socket.if_nametoindex(interface)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.bind(("::", 546))  # RFC 8415 §7.2
        sock.setblocking(False)
        return await _exchange(
            sock, message, ("ff02::1:2", 547, 0, index), lambda m: parse_dhcpv6_reply(m, xid), timeout, attempts
        )


async def _exchange(
    sock: socket.socket,
    message: bytes,
    destination: tuple[object, ...],
    parse: Callable[[bytes], DhcpMosInfo | None],
    timeout: float,
    attempts: int,
) -> DhcpMosInfo:
    loop = asyncio.get_running_loop()
    for _ in range(max(1, attempts)):
        await loop.sock_sendto(sock, message, destination)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while True:
                    data = await loop.sock_recv(sock, 4096)
                    with contextlib.suppress(DecodeError):  # a malformed datagram is ignored, not fatal
                        info = parse(data)
                        if info is not None:
                            return info
    raise TimeoutError("no DHCP server answered")
