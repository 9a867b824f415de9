"""Publishing a Mobility Server (MoS): dnsmasq configuration and a DNS zone-file snippet (RFC 5678, RFC 5679).

An operator describes the MoS once (:class:`MosPublication`); :func:`dnsmasq_config` gives the ``dhcp-option``
lines for DHCPv4 options 139/140 and DHCPv6 options 54/55 (values written by :mod:`aaa_fmip.mih.discovery`'s
encoders, as colon-separated hex) and the ``naptr-record`` / ``srv-host`` / ``host-record`` lines for DNS;
:func:`zone_snippet` gives the same DNS records for any authoritative server (BIND, Knot, NSD). Pure: text in,
text out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import dns.name

from aaa_fmip.mih import discovery as d

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Transport = Literal["tcp", "udp"]
_SERVICE_TAG: Final[dict[d.ServiceType, str]] = {
    d.ServiceType.IS: "MIHIS",
    d.ServiceType.CS: "MIHCS",
    d.ServiceType.ES: "MIHES",
}
_APP: Final[dict[Transport, str]] = {"tcp": "M2T", "udp": "M2U"}
_HOST_NAME: Final = re.compile(
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)


@dataclass(frozen=True)
class MosPublication:
    """One MoS: its host name and addresses, the services it offers, how to reach it, and the domain under which
    RFC 5679 clients look for it (the domain a node gets from DHCP option 140/55 or knows as its home domain)."""

    domain: str
    host: str
    addresses: tuple[IPAddress, ...]
    services: tuple[d.ServiceType, ...] = (d.ServiceType.IS,)
    transports: tuple[Transport, ...] = ("tcp", "udp")  # RFC 5677 §6: a MoS serves both; TCP preferred
    port: int = d.MIH_PORT
    priority: int = 10
    weight: int = 0
    ttl: int = 3600
    dhcp_domains: tuple[str, ...] = field(default=())  # names for option 140/55; default: (domain,)

    def __post_init__(self) -> None:
        for name in (self.domain, self.host, *self.dhcp_domains):
            d.encode_domain_list([name])  # raises ValueError for a name DNS cannot carry
            if not _HOST_NAME.match(name):
                raise ValueError(f"{name!r} is not a host or domain name (letters, digits, hyphens; RFC 1123 §2.1)")
        if not self.addresses:
            raise ValueError("a MoS needs at least one address")
        if not self.services or any(s not in _SERVICE_TAG for s in self.services):
            raise ValueError("services must be among IS, CS, ES")
        if not self.transports or any(t not in _APP for t in self.transports):
            raise ValueError('transports must be among "tcp", "udp"')
        for value, what, top in ((self.port, "port", 65535), (self.priority, "priority", 65535)):
            if not 0 < value <= top if what == "port" else not 0 <= value <= top:
                raise ValueError(f"{what} out of range")
        if not 0 <= self.weight <= 65535 or not 0 <= self.ttl <= 2**31 - 1:
            raise ValueError("weight or ttl out of range")

    @property
    def v4(self) -> tuple[ipaddress.IPv4Address, ...]:
        return tuple(a for a in self.addresses if isinstance(a, ipaddress.IPv4Address))

    @property
    def v6(self) -> tuple[ipaddress.IPv6Address, ...]:
        return tuple(a for a in self.addresses if isinstance(a, ipaddress.IPv6Address))

    def srv_name(self, service: d.ServiceType, transport: Transport) -> str:
        return f"_{_SERVICE_TAG[service]}._{transport}.{_bare(self.domain)}"


def _bare(name: str) -> str:
    return dns.name.from_text(name).to_text(omit_final_dot=True)


def _hex(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def dhcp_option_values(pub: MosPublication) -> dict[str, bytes]:
    """The option values (without code and length) for options 139, 140, 54 and 55; an option is left out when
    the MoS has no address of that family."""
    names = pub.dhcp_domains or (_bare(pub.domain),)
    out: dict[str, bytes] = {}
    if pub.v4:
        out["139"] = d.dhcpv4_options(d.encode_dhcpv4_mos_addresses([d.MosAddresses(s, pub.v4) for s in pub.services]))[
            139
        ]
    out["140"] = d.dhcpv4_options(d.encode_dhcpv4_mos_domains([d.MosDomains(s, names) for s in pub.services]))[140]
    if pub.v6:
        out["option6:54"] = d.encode_dhcpv6_mos_addresses([d.MosAddresses(s, pub.v6) for s in pub.services])[4:]
    out["option6:55"] = d.encode_dhcpv6_mos_domains([d.MosDomains(s, names) for s in pub.services])[4:]
    return out


def dnsmasq_config(pubs: Sequence[MosPublication]) -> str:
    """dnsmasq lines publishing ``pubs``: DHCP options (sent to clients that ask for them in their Parameter
    Request List / Option Request Option, as RFC 5678 §3 and §4 require clients to), NAPTR, SRV and address
    records. Several MoSes share the options: their sub-options are merged, in the order given."""
    lines = ["# Mobility Servers (RFC 5678 DHCP options, RFC 5679 NAPTR/SRV), generated by aaa-fmip"]
    merged: dict[str, bytes] = {}
    for pub in pubs:
        for code, value in dhcp_option_values(pub).items():
            merged[code] = merged.get(code, b"") + value
    for code, value in merged.items():
        if len(value) > 255 and not code.startswith("option6:"):
            # dnsmasq writes one option instance; RFC 3396 splitting is the client's to undo, dnsmasq's to do
            raise ValueError(f"option {code} would be {len(value)} octets: publish fewer servers by DHCP")
        lines.append(f"dhcp-option={code},{_hex(value)}")
    for pub in pubs:
        lines += _dnsmasq_dns(pub)
    return "\n".join(lines) + "\n"


def _dnsmasq_dns(pub: MosPublication) -> list[str]:
    lines: list[str] = []
    domain, host = _bare(pub.domain), _bare(pub.host)
    order = 10
    for service in pub.services:
        for transport in pub.transports:
            srv = pub.srv_name(service, transport)
            tag = f"{_SERVICE_TAG[service]}+{_APP[transport]}"
            # RFC 5679 §3: flags "s", empty regexp, the SRV owner as replacement
            lines.append(f"naptr-record={domain},{order},10,s,{tag},,{srv}")
            lines.append(f"srv-host={srv},{host},{pub.port},{pub.priority},{pub.weight}")
            order += 10
    lines.append(f"host-record={host}," + ",".join(str(a) for a in pub.addresses))
    return lines


def zone_snippet(pubs: Sequence[MosPublication]) -> str:
    """The NAPTR, SRV and A/AAAA records of ``pubs`` in zone-file syntax (RFC 1035 §5), absolute names."""
    lines = ["; Mobility Servers (RFC 5679), generated by aaa-fmip"]
    for pub in pubs:
        domain, host = _bare(pub.domain), _bare(pub.host)
        order = 10
        for service in pub.services:
            for transport in pub.transports:
                tag = f"{_SERVICE_TAG[service]}+{_APP[transport]}"
                srv = pub.srv_name(service, transport)
                lines.append(f'{domain}. {pub.ttl} IN NAPTR {order} 10 "s" "{tag}" "" {srv}.')
                lines.append(f"{srv}. {pub.ttl} IN SRV {pub.priority} {pub.weight} {pub.port} {host}.")
                order += 10
        for address in pub.addresses:
            rdtype = "A" if address.version == 4 else "AAAA"
            lines.append(f"{host}. {pub.ttl} IN {rdtype} {address}")
    return "\n".join(lines) + "\n"
